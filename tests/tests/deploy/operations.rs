//! The template's operations agree with the code: the attempts the queue allows are those the
//! worker allows, the worker has the queue it retries and re-queues on, the sweeper's schedule
//! invokes the worker, a parameter caps the worker's concurrency, and every metric an alarm or
//! the dashboard watches is one the functions emit (docs/operations.md, the runbook, names every
//! alarm).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_yaml::Value;
use shared::retry::RetrySchedule;
use shared::telemetry::METRIC_NAMESPACE;

use super::TEMPLATE;

const OPERATIONS: &str = include_str!("../../../docs/operations.md");

/// The bridge's own metrics the dashboard shows (the design's list), and the function whose EMF
/// lines carry each (the `FunctionName` dimension).
const OWN_METRICS: &[(&str, &str)] = &[
    ("Turns", "ConversationWorkerFunction"),
    ("TurnLatency", "ConversationWorkerFunction"),
    ("ReplyDelay", "ConversationWorkerFunction"),
    ("TurnFailures", "ConversationWorkerFunction"),
    ("AccountWideFailures", "ConversationWorkerFunction"),
    ("TemplatesSent", "ConversationWorkerFunction"),
    ("CarryOvers", "ConversationWorkerFunction"),
    ("OptOuts", "ConversationWorkerFunction"),
    ("SweeperRequeues", "ConversationWorkerFunction"),
    ("SweeperGaveUp", "ConversationWorkerFunction"),
    ("DeadlineReleases", "ConversationWorkerFunction"),
    ("OutreachHeld", "FormIntakeFunction"),
];

/// The values of `TurnFailures`' `Cause` dimension.
const CAUSES: &[&str] = &["transient", "account_wide", "permanent"];

/// The values of `AccountWideFailures`' `Problem` dimension.
const PROBLEMS: &[&str] = &[
    "whatsapp_token",
    "whatsapp_permission",
    "retell_key",
    "retell_billing",
    "store_key",
    "transcription_key",
    "transcription_billing",
];

/// The extra dimension a metric is also split by (besides `FunctionName` alone), and its values.
fn split_by(metric: &str) -> Option<(&'static str, &'static [&'static str])> {
    match metric {
        "TurnFailures" => Some(("Cause", CAUSES)),
        "AccountWideFailures" => Some(("Problem", PROBLEMS)),
        _ => None,
    }
}

fn template() -> Value {
    serde_yaml::from_str(TEMPLATE).expect("template.yaml is YAML")
}

/// `!Tag value` with a string value, as serde_yaml reads `!Ref X` or `!GetAtt X.Y`.
fn tagged<'a>(value: &'a Value, tag: &str) -> Option<&'a str> {
    match value {
        Value::Tagged(t) if t.tag == tag => t.value.as_str(),
        _ => None,
    }
}

fn is_ref(value: &Value, target: &str) -> bool {
    tagged(value, "Ref") == Some(target)
}

fn resources_of_type<'a>(template: &'a Value, kind: &str) -> Vec<(&'a str, &'a Value)> {
    template["Resources"]
        .as_mapping()
        .expect("Resources")
        .iter()
        .filter(|(_, resource)| resource["Type"].as_str() == Some(kind))
        .map(|(name, resource)| (name.as_str().expect("a resource name"), resource))
        .collect()
}

fn worker(template: &Value) -> &Value {
    &template["Resources"]["ConversationWorkerFunction"]["Properties"]
}

fn number(value: &Value) -> Option<u64> {
    value
        .as_u64()
        .or_else(|| value.as_str().and_then(|s| s.parse().ok()))
}

#[test]
fn the_queue_dead_letters_a_job_after_the_attempts_the_worker_allows() {
    let template = template();
    let parameter = &template["Parameters"]["TurnMaxAttempts"];
    assert_eq!(parameter["Type"].as_str(), Some("Number"));
    assert_eq!(number(&parameter["MinValue"]), Some(2));
    assert_eq!(number(&parameter["MaxValue"]), Some(10));
    assert_eq!(
        number(&parameter["Default"]),
        Some(RetrySchedule::DEFAULT_SECONDS.len() as u64),
        "by default a job is received once per delay of the retry schedule, the last included"
    );
    let redrive = &template["Resources"]["TurnQueue"]["Properties"]["RedrivePolicy"];
    assert!(
        is_ref(&redrive["maxReceiveCount"], "TurnMaxAttempts"),
        "the queue's maxReceiveCount is the parameter: {:?}",
        redrive["maxReceiveCount"]
    );
    assert_eq!(
        tagged(&redrive["deadLetterTargetArn"], "GetAtt"),
        Some("TurnDeadLetterQueue.Arn")
    );
    let attempts = &worker(&template)["Environment"]["Variables"]["TURN_MAX_ATTEMPTS"];
    assert!(
        is_ref(attempts, "TurnMaxAttempts"),
        "the worker's TURN_MAX_ATTEMPTS is the same parameter: {attempts:?}"
    );
}

#[test]
fn the_worker_has_the_queue_it_retries_and_requeues_on() {
    let template = template();
    let worker = worker(&template);
    let url = &worker["Environment"]["Variables"]["TURN_QUEUE_URL"];
    assert!(is_ref(url, "TurnQueue"), "TURN_QUEUE_URL: {url:?}");
    let mut allowed = BTreeSet::new();
    for policy in worker["Policies"].as_sequence().expect("Policies") {
        for statement in policy["Statement"].as_sequence().into_iter().flatten() {
            if tagged(&statement["Resource"], "GetAtt") != Some("TurnQueue.Arn") {
                continue;
            }
            assert_eq!(statement["Effect"].as_str(), Some("Allow"));
            match &statement["Action"] {
                Value::String(action) => {
                    allowed.insert(action.clone());
                }
                Value::Sequence(actions) => {
                    allowed.extend(actions.iter().filter_map(|a| a.as_str().map(str::to_owned)))
                }
                other => panic!("an Action of {other:?}"),
            }
        }
    }
    for action in ["sqs:ChangeMessageVisibility", "sqs:SendMessage"] {
        assert!(
            allowed.contains(action),
            "the worker may not {action} on the turn queue: {allowed:?}"
        );
    }
    let poller = worker["Policies"]
        .as_sequence()
        .unwrap()
        .iter()
        .find_map(|policy| policy.get("SQSPollerPolicy"))
        .expect("the worker polls the queue (SQSPollerPolicy)");
    assert_eq!(
        tagged(&poller["QueueName"], "GetAtt"),
        Some("TurnQueue.QueueName")
    );
}

#[test]
fn the_sweeper_schedule_invokes_the_worker_every_minute_with_eventbridges_own_event() {
    let template = template();
    let mut schedules = Vec::new();
    for (name, function) in resources_of_type(&template, "AWS::Serverless::Function") {
        for event in function["Properties"]["Events"]
            .as_mapping()
            .into_iter()
            .flat_map(|events| events.values())
        {
            let kind = event["Type"].as_str().unwrap_or_default();
            if kind.starts_with("Schedule") {
                schedules.push((name, kind, &event["Properties"]));
            }
        }
    }
    assert_eq!(
        schedules.len(),
        1,
        "one schedule, the sweeper's: {schedules:?}"
    );
    let (function, kind, properties) = schedules[0];
    assert_eq!(function, "ConversationWorkerFunction");
    // Schedule: an EventBridge rule, whose event is {"source": "aws.events", "detail-type":
    // "Scheduled Event", ...}: what the worker tells from an SQS batch. An Input would replace it.
    assert_eq!(kind, "Schedule");
    assert_eq!(properties["Schedule"].as_str(), Some("rate(1 minute)"));
    assert!(
        properties.get("Input").is_none() && properties.get("InputPath").is_none(),
        "the worker gets EventBridge's scheduled event as it is: {properties:?}"
    );
    assert_ne!(properties["Enabled"].as_bool(), Some(false));
    assert!(
        resources_of_type(&template, "AWS::Events::Rule").is_empty()
            && resources_of_type(&template, "AWS::Scheduler::Schedule").is_empty(),
        "no other rule or schedule"
    );
    // A failed sweep is not retried: the next one runs a minute later.
    let invoke = &worker(&template)["EventInvokeConfig"];
    assert_eq!(number(&invoke["MaximumRetryAttempts"]), Some(0));

    // What such a rule delivers (AWS's example of a scheduled event) is a sweep to the worker.
    let scheduled = serde_json::json!({
        "version": "0",
        "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": "2026-11-30T16:53:06Z",
        "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/whatsapp-retell-bridge-Sweep"],
        "detail": {}
    });
    let event: conversation_worker::WorkerEvent =
        serde_json::from_value(scheduled).expect("the worker reads a scheduled event");
    assert!(
        matches!(event, conversation_worker::WorkerEvent::Schedule(_)),
        "a scheduled event is not a batch: {event:?}"
    );
}

#[test]
fn a_parameter_caps_the_workers_concurrency_and_the_webhooks_keep_the_rest() {
    let template = template();
    let parameter = &template["Parameters"]["WorkerMaxConcurrency"];
    assert_eq!(parameter["Type"].as_str(), Some("Number"));
    // SQS event sources take a maximum concurrency from 2 to 1000.
    assert_eq!(number(&parameter["MinValue"]), Some(2));
    assert_eq!(number(&parameter["MaxValue"]), Some(1000));
    assert!(number(&parameter["Default"]).is_some_and(|d| (2..=1000).contains(&d)));
    let mappings = resources_of_type(&template, "AWS::Lambda::EventSourceMapping");
    assert_eq!(mappings.len(), 1, "one event source, the turn queue");
    let mapping = &mappings[0].1["Properties"];
    assert!(is_ref(
        &mapping["FunctionName"],
        "ConversationWorkerFunction"
    ));
    assert_eq!(
        tagged(&mapping["EventSourceArn"], "GetAtt"),
        Some("TurnQueue.Arn")
    );
    assert_eq!(number(&mapping["BatchSize"]), Some(1));
    let cap = &mapping["ScalingConfig"]["MaximumConcurrency"];
    assert!(
        is_ref(cap, "WorkerMaxConcurrency"),
        "MaximumConcurrency: {cap:?}"
    );
    // The cap leaves the account's concurrency to the webhooks without reserving any of it.
    for (name, function) in resources_of_type(&template, "AWS::Serverless::Function") {
        assert!(
            function["Properties"]
                .get("ReservedConcurrentExecutions")
                .is_none(),
            "{name} reserves concurrency; docs/operations.md says why none does"
        );
    }
}

/// A metric an alarm or a widget watches: namespace, name and dimensions (values as the template
/// names them: `ConversationWorkerFunction`, `TurnQueue.QueueName`, ...).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Watched {
    namespace: String,
    name: String,
    dimensions: BTreeMap<String, String>,
    stat: Option<String>,
}

/// The dashboard's JSON with each `${X}` of its `!Sub` replaced: by `X` inside a JSON string, by
/// 0 outside one (a number such as `${WorkerMaxConcurrency}`).
fn substitute(body: &str) -> String {
    let mut out = String::with_capacity(body.len());
    let mut in_string = false;
    let mut escaped = false;
    let mut rest = body;
    while let Some(c) = rest.chars().next() {
        if c == '$' && rest.starts_with("${") {
            let end = rest.find('}').expect("a closed ${...}");
            if in_string {
                out.push_str(&rest[2..end]);
            } else {
                out.push('0');
            }
            rest = &rest[end + 1..];
            continue;
        }
        // `escaped` is only ever set inside a string.
        if c == '"' && !escaped {
            in_string = !in_string;
        }
        escaped = in_string && !escaped && c == '\\';
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

fn dashboard_metrics(template: &Value) -> Vec<Watched> {
    let dashboards = resources_of_type(template, "AWS::CloudWatch::Dashboard");
    assert_eq!(dashboards.len(), 1, "one dashboard");
    let body = tagged(&dashboards[0].1["Properties"]["DashboardBody"], "Sub")
        .expect("DashboardBody: !Sub with the JSON");
    let body: serde_json::Value =
        serde_json::from_str(&substitute(body)).expect("the dashboard's body is JSON");
    let mut watched = Vec::new();
    for widget in body["widgets"].as_array().expect("widgets") {
        let properties = &widget["properties"];
        let mut previous: Vec<String> = Vec::new();
        for metric in properties["metrics"].as_array().into_iter().flatten() {
            let items = metric.as_array().expect("a metric is an array");
            let options = items.last().filter(|item| item.is_object());
            let mut parts: Vec<String> = items
                .iter()
                .filter_map(|item| item.as_str().map(str::to_owned))
                .collect();
            // "." repeats the metric above's part at the same place.
            for (i, part) in parts.iter_mut().enumerate() {
                if part == "." {
                    *part = previous.get(i).cloned().expect("a '.' under a metric");
                }
            }
            previous = parts.clone();
            assert!(parts.len() >= 2 && parts.len() % 2 == 0, "{metric}");
            let stat = options
                .and_then(|o| o["stat"].as_str())
                .or_else(|| properties["stat"].as_str())
                .map(str::to_owned);
            watched.push(Watched {
                namespace: parts[0].clone(),
                name: parts[1].clone(),
                dimensions: parts[2..]
                    .chunks(2)
                    .map(|pair| (pair[0].clone(), pair[1].clone()))
                    .collect(),
                stat,
            });
        }
    }
    watched
}

fn alarm_metrics(template: &Value) -> Vec<(String, Watched, &Value)> {
    resources_of_type(template, "AWS::CloudWatch::Alarm")
        .into_iter()
        .map(|(name, alarm)| {
            let properties = &alarm["Properties"];
            let dimensions = properties["Dimensions"]
                .as_sequence()
                .into_iter()
                .flatten()
                .map(|d| {
                    let value = &d["Value"];
                    let value = tagged(value, "Ref")
                        .or_else(|| tagged(value, "GetAtt"))
                        .or_else(|| value.as_str())
                        .expect("a dimension's value");
                    (d["Name"].as_str().unwrap().to_owned(), value.to_owned())
                })
                .collect();
            let watched = Watched {
                namespace: properties["Namespace"]
                    .as_str()
                    .expect("a Namespace")
                    .to_owned(),
                name: properties["MetricName"]
                    .as_str()
                    .expect("a MetricName")
                    .to_owned(),
                dimensions,
                stat: properties["Statistic"].as_str().map(str::to_owned),
            };
            (name.to_owned(), watched, properties)
        })
        .collect()
}

/// The functions' source, test modules left out (each file's `#[cfg(test)]` part).
fn product_sources() -> Vec<(PathBuf, String)> {
    fn walk(dir: &Path, into: &mut Vec<(PathBuf, String)>) {
        for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, into);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                let product = text.split("#[cfg(test)]").next().unwrap().to_owned();
                into.push((path, product));
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut sources = Vec::new();
    walk(&root.join("shared/src"), &mut sources);
    for function in std::fs::read_dir(root.join("functions")).unwrap() {
        let source = function.unwrap().path().join("src");
        if source.is_dir() {
            walk(&source, &mut sources);
        }
    }
    assert!(
        sources.len() > 10,
        "found the sources under {}",
        root.display()
    );
    sources
}

#[test]
fn every_metric_the_alarms_and_the_dashboard_watch_is_one_the_code_emits() {
    let template = template();
    let dashboard = dashboard_metrics(&template);
    let alarms = alarm_metrics(&template);
    let own: Vec<&Watched> = dashboard
        .iter()
        .chain(alarms.iter().map(|(_, watched, _)| watched))
        .filter(|w| w.namespace == METRIC_NAMESPACE)
        .collect();
    let emitters: BTreeMap<&str, &str> = OWN_METRICS.iter().copied().collect();
    for watched in &own {
        let emitter = emitters.get(watched.name.as_str()).unwrap_or_else(|| {
            panic!(
                "the template watches {}, which is not among the bridge's metrics",
                watched.name
            )
        });
        let extra: Vec<&str> = watched
            .dimensions
            .keys()
            .map(String::as_str)
            .filter(|d| *d != "FunctionName")
            .collect();
        assert!(
            watched.dimensions.contains_key("FunctionName"),
            "{watched:?}"
        );
        match (extra.as_slice(), split_by(&watched.name)) {
            ([], _) => {}
            ([dimension], Some((split, values))) if *dimension == split => assert!(
                values.contains(&watched.dimensions[split].as_str()),
                "{watched:?}"
            ),
            _ => panic!("{} is not split by {extra:?}", watched.name),
        }
        assert_eq!(
            watched.dimensions["FunctionName"], *emitter,
            "{} comes from {emitter}'s lines: {watched:?}",
            watched.name
        );
    }
    let shown: BTreeSet<&str> = dashboard
        .iter()
        .filter(|w| w.namespace == METRIC_NAMESPACE)
        .map(|w| w.name.as_str())
        .collect();
    let missing: Vec<_> = emitters.keys().filter(|n| !shown.contains(*n)).collect();
    assert!(missing.is_empty(), "the dashboard leaves out {missing:?}");
    for metric in ["TurnFailures", "AccountWideFailures"] {
        let (split, values) = split_by(metric).unwrap();
        let shown: BTreeSet<&str> = dashboard
            .iter()
            .filter(|w| w.name == metric)
            .filter_map(|w| w.dimensions.get(split).map(String::as_str))
            .collect();
        assert_eq!(
            shown,
            values.iter().copied().collect(),
            "the dashboard shows {metric} by every {split}"
        );
    }
    for percentiles in ["TurnLatency", "ReplyDelay"] {
        let stats: BTreeSet<Option<&str>> = dashboard
            .iter()
            .filter(|w| w.name == percentiles)
            .map(|w| w.stat.as_deref())
            .collect();
        assert_eq!(
            stats,
            [Some("p50"), Some("p99")].into_iter().collect(),
            "{percentiles}"
        );
    }

    // The code emits each of them: its name (and each cause and problem) is a string in the
    // functions' code, test modules left out.
    let sources = product_sources();
    let names: BTreeSet<&str> = own
        .iter()
        .map(|w| w.name.as_str())
        .chain(CAUSES.iter().copied())
        .chain(PROBLEMS.iter().copied())
        .collect();
    let unemitted: Vec<&str> = names
        .into_iter()
        .filter(|name| {
            let quoted = format!("\"{name}\"");
            !sources.iter().any(|(_, text)| text.contains(&quoted))
        })
        .collect();
    assert!(
        unemitted.is_empty(),
        "the template watches {unemitted:?}, which no code under shared/src or functions/*/src names"
    );
}

#[test]
fn the_alarms_cover_errors_init_the_api_the_queue_dead_letters_and_account_wide_failures() {
    let template = template();
    let alarms = alarm_metrics(&template);
    let find = |namespace: &str, name: &str, dimension: (&str, &str)| {
        alarms
            .iter()
            .find(|(_, w, _)| {
                w.namespace == namespace
                    && w.name == name
                    && w.dimensions.get(dimension.0).map(String::as_str) == Some(dimension.1)
            })
            .unwrap_or_else(|| panic!("no alarm on {namespace} {name} {dimension:?}"))
    };
    let threshold = |properties: &Value| properties["Threshold"].as_f64().expect("a Threshold");
    // Errors (INIT failures included) of every function.
    for (function, _) in resources_of_type(&template, "AWS::Serverless::Function") {
        let (_, watched, properties) = find("AWS/Lambda", "Errors", ("FunctionName", function));
        assert_eq!(watched.stat.as_deref(), Some("Sum"));
        assert_eq!(threshold(properties), 0.0);
        assert_eq!(
            properties["ComparisonOperator"].as_str(),
            Some("GreaterThanThreshold")
        );
    }
    let (_, _, api) = find("AWS/ApiGateway", "5xx", ("ApiId", "HttpApi"));
    assert_eq!(threshold(api), 0.0);
    let (_, age, properties) = find(
        "AWS/SQS",
        "ApproximateAgeOfOldestMessage",
        ("QueueName", "TurnQueue.QueueName"),
    );
    assert_eq!(age.stat.as_deref(), Some("Maximum"));
    assert_eq!(threshold(properties), 120.0, "a turn older than 2 minutes");
    find(
        "AWS/SQS",
        "ApproximateNumberOfMessagesVisible",
        ("QueueName", "TurnDeadLetterQueue.QueueName"),
    );
    let (_, _, account) = find(
        METRIC_NAMESPACE,
        "AccountWideFailures",
        ("FunctionName", "ConversationWorkerFunction"),
    );
    assert_eq!(threshold(account), 1.0);
    assert_eq!(number(&account["Period"]), Some(60));
    assert_eq!(
        account["ComparisonOperator"].as_str(),
        Some("GreaterThanOrEqualToThreshold")
    );
    find(
        METRIC_NAMESPACE,
        "SweeperGaveUp",
        ("FunctionName", "ConversationWorkerFunction"),
    );

    // Every alarm mails the topic, has an output, and is in the runbook.
    let outputs = template["Outputs"].as_mapping().expect("Outputs");
    for (name, _, properties) in &alarms {
        for actions in ["AlarmActions", "OKActions"] {
            let text = serde_yaml::to_string(&properties[actions]).unwrap();
            assert!(
                text.contains("HasAlarmEmail") && text.contains("AlarmTopic"),
                "{name}: {actions} {text}"
            );
        }
        assert!(
            outputs
                .values()
                .any(|output| is_ref(&output["Value"], name)),
            "{name} has no output"
        );
        assert!(
            OPERATIONS.contains(name.as_str()),
            "docs/operations.md's runbook does not name {name}"
        );
    }
    for problem in PROBLEMS {
        assert!(
            OPERATIONS.contains(&format!("`{problem}`")),
            "docs/operations.md's runbook does not say what to do about {problem}"
        );
    }
    let (dashboard, _) = resources_of_type(&template, "AWS::CloudWatch::Dashboard")[0];
    assert!(
        outputs
            .values()
            .any(|output| is_ref(&output["Value"], dashboard))
    );
}

#[test]
fn the_dashboards_substitution_keeps_strings_and_numbers_apart() {
    assert_eq!(
        substitute(r#"{"a": "${X}", "b": ${N}, "c": "(${AWS::StackName}) \"${Y}\""}"#),
        r#"{"a": "X", "b": 0, "c": "(AWS::StackName) \"Y\""}"#
    );
}
