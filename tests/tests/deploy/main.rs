//! The SAM template and the code agree on configuration: each function gets every variable it
//! requires, sets none it does not read, and whatever it reads that the template leaves out is
//! documented as optional in `.env.example`. Secrets are in no function's environment: each reads
//! them from the one secret the template names (`BRIDGE_SECRET_ID`), which its role may read and
//! no other, taking the keys its configuration reads. `operations`: retries, the sweeper's
//! schedule, the concurrency cap, the alarms and the dashboard.

mod operations;

use std::collections::{BTreeMap, BTreeSet};

use serde_yaml::Value;
use shared::config::{ConfigError, Env};
use shared::secrets::{SECRET_ID_VARIABLE, SECRET_VARIABLES};

const TEMPLATE: &str = include_str!("../../../template.yaml");
const ENV_EXAMPLE: &str = include_str!("../../../.env.example");

/// A valid value for each variable the code knows, standing in for what AWS resolves.
fn sample(name: &str) -> Option<&'static str> {
    Some(match name {
        "SUPABASE_URL" | "SUPABASE_REST_URL" => "https://abcdefgh.supabase.co",
        "SUPABASE_SERVICE_ROLE_KEY" => "sb_secret_sample",
        "SUPABASE_TIMEOUT_MS"
        | "RETELL_TIMEOUT_MS"
        | "RETELL_COMPLETION_TIMEOUT_MS"
        | "WHATSAPP_TIMEOUT_MS" => "5000",
        "RETELL_API_KEY" => "key_sample",
        "RETELL_AGENT_ID" => "agent_sample",
        "RETELL_AGENT_VERSION" => "1",
        "RETELL_BASE_URL" => "https://api.retellai.com",
        "WHATSAPP_ACCESS_TOKEN" | "WHATSAPP_APP_SECRET" | "WHATSAPP_VERIFY_TOKEN" => "secret",
        "FORM_SHARED_SECRET" => "a-form-secret-of-at-least-32-characters",
        "WHATSAPP_PHONE_NUMBER_ID" => "106540352242922",
        "WHATSAPP_GRAPH_URL" => "https://graph.facebook.com",
        "WHATSAPP_API_VERSION" => "v23.0",
        "WHATSAPP_TEMPLATE_NAME" => "primer_contacto",
        "WHATSAPP_TEMPLATE_LANGUAGE" => "es_MX",
        "FORM_DEFAULT_COUNTRY" => "MX",
        "FORM_FIELDS" => "producto,utm_source",
        "FORM_MAX_BODY_BYTES" => "65536",
        "TURN_QUEUE_URL" => "https://sqs.us-east-1.amazonaws.com/123456789012/turns.fifo",
        "SQS_ENDPOINT_URL" => "http://127.0.0.1:5000",
        "OPT_OUT_WORDS" | "OPT_IN_WORDS" => "STOP",
        "OPT_OUT_CONFIRMATION"
        | "OPT_IN_CONFIRMATION"
        | "UNSUPPORTED_MESSAGE_REPLY"
        | "CUSTOMER_NAME_FALLBACK" => "ok",
        "FIRST_CONTACT_COMPLETION" => "empty",
        "TURN_LEASE_SECONDS" => "300",
        "TURN_MAX_ATTEMPTS" => "5",
        "CARRY_OVER_MESSAGES" => "10",
        "OUTREACH_COOLDOWN_HOURS" => "24",
        "OUTREACH_DAILY_LIMIT" => "500",
        "FORM_TURNSTILE_SITE_KEY" => "0x4AAAAAAAsample",
        "FORM_TURNSTILE_SECRET" => "0x4AAAAAAAsample-secret",
        "FORM_TURNSTILE_VERIFY_URL" => "https://challenges.cloudflare.com/turnstile/v0/siteverify",
        "FORM_TURNSTILE_SCRIPT_URL" => "https://challenges.cloudflare.com/turnstile/v0/api.js",
        "FORM_ALLOWED_ORIGINS" => "https://www.example.com,https://example.com",
        "FORM_BROWSER_LIMIT_PER_HOUR" => "5",
        "FORM_BUSINESS_NAME" => "Seguros Ejemplo",
        "FORM_BRAND_COLOR" => "#128c7e",
        "FORM_LOGO_URL" => "https://www.example.com/logo.png",
        "FORM_CONSENT_TEXT" => "Acepto que {business} me escriba por WhatsApp.",
        "FORM_WHATSAPP_NUMBER" => "5215512345678",
        "STAFF_WEBHOOK_SECRET" => "a-staff-secret-of-at-least-32-characters",
        "STAFF_ALERT_TOPIC_ARN" => "arn:aws:sns:us-east-1:123456789012:staff-alerts",
        "STAFF_ALERT_WEBHOOK_URL" => "https://hooks.example.com/services/T000/B000/XXXX",
        "SNS_ENDPOINT_URL" => "http://127.0.0.1:5000",
        "REQUEST_HUMAN_REPLY" => "Te atiende una persona en breve.",
        "PAUSE_DEFAULT_MINUTES" => "60",
        "RETELL_WEBHOOK_API_KEY" => "key_webhook_badge_sample",
        "OUTCOME_WEBHOOK_URL" => "https://crm.example.com/hooks/outcomes",
        "OUTCOME_WEBHOOK_SECRET" => "an-outcome-secret-of-at-least-32-characters",
        "CONTEXT_CUSTOMER_MARKER" => "[Cliente]",
        "CONTEXT_STAFF_MARKER" => "[Equipo]",
        "TRANSCRIBE_URL" => "https://api.openai.com/v1",
        "TRANSCRIBE_API_KEY" => "sk-sample",
        "TRANSCRIBE_MODEL" => "whisper-1",
        "TRANSCRIBE_LANGUAGE" => "es",
        "MEDIA_MARKERS" => "image=imagen,audio=nota de voz",
        "AGENT_MESSAGE_TYPES" => "text,audio",
        "RUST_LOG" | "AWS_LAMBDA_LOG_LEVEL" => "info",
        _ => return None,
    })
}

fn keys(value: &Value) -> BTreeSet<String> {
    value["Environment"]["Variables"]
        .as_mapping()
        .map(|m| {
            m.keys()
                .filter_map(|k| k.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The variables the template gives each function, by the function's folder name.
fn template_environments() -> BTreeMap<String, BTreeSet<String>> {
    let template: Value = serde_yaml::from_str(TEMPLATE).expect("template.yaml is YAML");
    let global = keys(&template["Globals"]["Function"]);
    let mut functions = BTreeMap::new();
    for resource in template["Resources"]
        .as_mapping()
        .expect("Resources")
        .values()
    {
        if resource["Type"].as_str() != Some("AWS::Serverless::Function") {
            continue;
        }
        let code = resource["Properties"]["CodeUri"]
            .as_str()
            .expect("a CodeUri");
        let name = code
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap()
            .to_owned();
        let mut variables = global.clone();
        variables.extend(keys(&resource["Properties"]));
        functions.insert(name, variables);
    }
    functions
}

/// Runs a function's configuration on exactly the template's variables and the keys it takes
/// from the secret (`secrets`, its `SECRETS`).
fn check(function: &str, secrets: &[&str], configure: fn(&Env) -> Result<(), ConfigError>) {
    let environments = template_environments();
    let mut variables = environments
        .get(function)
        .unwrap_or_else(|| panic!("template.yaml has no {function}"))
        .clone();
    assert!(
        variables.remove(SECRET_ID_VARIABLE),
        "{function}: the template gives it no {SECRET_ID_VARIABLE}"
    );
    for secret in secrets {
        assert!(
            SECRET_VARIABLES.contains(secret),
            "{function}: takes {secret} from the secret, which holds no such key"
        );
        assert!(
            !variables.contains(*secret),
            "{function}: the template puts the secret {secret} in its environment"
        );
    }
    let from_secret: BTreeSet<String> = secrets.iter().map(|s| (*s).to_owned()).collect();
    let variables: &BTreeSet<String> = &variables.union(&from_secret).cloned().collect();
    let pairs: Vec<(&str, &str)> = variables
        .iter()
        .map(|name| {
            (
                name.as_str(),
                sample(name).unwrap_or_else(|| {
                    panic!("{function}: template sets {name}, which no code reads")
                }),
            )
        })
        .collect();
    let env = Env::from_pairs(pairs);
    configure(&env).unwrap_or_else(|e| panic!("{function}: with the template's variables, {e}"));
    let read: BTreeSet<String> = env.names_read().into_iter().map(str::to_owned).collect();
    let unread: Vec<_> = variables.difference(&read).collect();
    assert!(
        unread.is_empty(),
        "{function}: the template sets {unread:?}, which the function does not read"
    );
    let undocumented: Vec<_> = read
        .difference(variables)
        .filter(|name| {
            !ENV_EXAMPLE.lines().any(|line| {
                line.trim_start_matches("# ")
                    .starts_with(&format!("{name}="))
            })
        })
        .collect();
    assert!(
        undocumented.is_empty(),
        "{function}: reads {undocumented:?}, neither set by the template nor in .env.example"
    );
    let secrets_read: BTreeSet<&str> = read
        .iter()
        .map(String::as_str)
        .filter(|name| SECRET_VARIABLES.contains(name))
        .collect();
    assert_eq!(
        secrets_read,
        secrets.iter().copied().collect(),
        "{function}: its SECRETS are not the secrets its configuration reads"
    );
}

#[test]
fn whatsapp_inbound_and_the_template_agree() {
    check("whatsapp-inbound", whatsapp_inbound::SECRETS, |env| {
        whatsapp_inbound::Config::from_env(env).map(drop)
    });
}

#[test]
fn form_intake_and_the_template_agree() {
    check("form-intake", form_intake::SECRETS, |env| {
        form_intake::Config::from_env(env).map(drop)
    });
}

#[test]
fn the_conversation_worker_and_the_template_agree() {
    check("conversation-worker", conversation_worker::SECRETS, |env| {
        conversation_worker::Config::from_env(env).map(drop)
    });
}

#[test]
fn staff_inbound_and_the_template_agree() {
    check("staff-inbound", staff_inbound::SECRETS, |env| {
        staff_inbound::Config::from_env(env).map(drop)
    });
}

/// staff-inbound answers the Database Webhook's and the agent's functions' routes, may publish
/// to the staff alert topic only, and the topic mails `StaffAlertEmail` when it is set.
#[test]
fn staff_inbound_has_its_routes_and_publishes_to_the_staff_topic_only() {
    let template: Value = serde_yaml::from_str(TEMPLATE).unwrap();
    let function = &template["Resources"]["StaffInboundFunction"]["Properties"];
    let routes: BTreeSet<(String, String)> = function["Events"]
        .as_mapping()
        .expect("staff-inbound's events")
        .values()
        .map(|event| {
            assert_eq!(event["Type"].as_str(), Some("HttpApi"));
            let properties = &event["Properties"];
            (
                properties["Method"].as_str().unwrap().to_owned(),
                properties["Path"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        routes,
        BTreeSet::from([
            (
                "POST".to_owned(),
                shared::ingress::staff::STAFF_PATH.to_owned()
            ),
            (
                "POST".to_owned(),
                format!("{}{{name}}", shared::ingress::staff::FUNCTIONS_PATH)
            ),
            (
                "POST".to_owned(),
                shared::ingress::retell::RETELL_PATH.to_owned()
            ),
        ])
    );
    let policies = serde_yaml::to_string(&function["Policies"]).unwrap();
    let publish: Vec<Value> = serde_yaml::from_value::<Vec<Value>>(function["Policies"].clone())
        .unwrap()
        .iter()
        .flat_map(|policy| {
            policy["Statement"]
                .as_sequence()
                .cloned()
                .unwrap_or_default()
        })
        .filter(|statement| serde_yaml::to_string(statement).unwrap().contains("sns:"))
        .collect();
    let [statement] = publish.as_slice() else {
        panic!("one statement about SNS: {policies}");
    };
    assert_eq!(statement["Action"].as_str(), Some("sns:Publish"));
    assert!(
        matches!(&statement["Resource"], Value::Tagged(t) if t.tag == "Ref" && t.value.as_str() == Some("StaffAlertTopic")),
        "{policies}"
    );
    let topic = serde_yaml::to_string(&template["Resources"]["StaffAlertTopic"]).unwrap();
    assert!(
        topic.contains("HasStaffAlertEmail")
            && topic.contains("StaffAlertEmail")
            && topic.contains("email"),
        "{topic}"
    );
    assert_eq!(
        template["Parameters"]["StaffAlertEmail"]["Default"].as_str(),
        Some("")
    );
    let variables = &function["Environment"]["Variables"];
    for (name, parameter) in [
        ("STAFF_ALERT_WEBHOOK_URL", "StaffAlertWebhookUrl"),
        ("REQUEST_HUMAN_REPLY", "RequestHumanReply"),
        ("PAUSE_DEFAULT_MINUTES", "PauseDefaultMinutes"),
        ("OUTCOME_WEBHOOK_URL", "OutcomeWebhookUrl"),
    ] {
        assert!(
            matches!(&variables[name], Value::Tagged(t) if t.tag == "Ref" && t.value.as_str() == Some(parameter)),
            "{name}: {:?}",
            variables[name]
        );
        assert!(
            template["Parameters"].get(parameter).is_some(),
            "{parameter}"
        );
    }
}

/// The hosted form's configuration (`BrowserFormConfig`) gets every variable it reads from
/// the template's parameters, except its secret (from the secret) and the Turnstile endpoints
/// (Cloudflare's by default; stand-ins only locally).
#[test]
fn every_browser_form_variable_is_a_parameter_of_form_intake() {
    let everything: Vec<(&str, &str)> = [
        "FORM_TURNSTILE_SITE_KEY",
        "FORM_TURNSTILE_SECRET",
        "FORM_TURNSTILE_VERIFY_URL",
        "FORM_TURNSTILE_SCRIPT_URL",
        "FORM_ALLOWED_ORIGINS",
        "FORM_BROWSER_LIMIT_PER_HOUR",
        "FORM_BUSINESS_NAME",
        "FORM_BRAND_COLOR",
        "FORM_LOGO_URL",
        "FORM_CONSENT_TEXT",
        "FORM_WHATSAPP_NUMBER",
    ]
    .into_iter()
    .map(|name| (name, sample(name).unwrap()))
    .collect();
    let env = Env::from_pairs(everything);
    shared::config::BrowserFormConfig::from_env(&env)
        .expect("the samples configure the hosted form")
        .expect("FORM_TURNSTILE_SITE_KEY turns it on");
    let template: Value = serde_yaml::from_str(TEMPLATE).unwrap();
    let variables =
        &template["Resources"]["FormIntakeFunction"]["Properties"]["Environment"]["Variables"];
    let not_from_parameters = [
        "FORM_TURNSTILE_SECRET",
        "FORM_TURNSTILE_VERIFY_URL",
        "FORM_TURNSTILE_SCRIPT_URL",
    ];
    let read = env.names_read();
    assert!(read.contains(&"FORM_TURNSTILE_SECRET"));
    assert!(
        SECRET_VARIABLES.contains(&"FORM_TURNSTILE_SECRET"),
        "the Turnstile secret is a key of the secret"
    );
    for name in read {
        if not_from_parameters.contains(&name) {
            assert!(
                variables.get(name).is_none(),
                "form-intake: the template sets {name}"
            );
            continue;
        }
        let parameter = match &variables[name] {
            Value::Tagged(tagged) if tagged.tag == "Ref" => tagged.value.as_str(),
            _ => None,
        }
        .unwrap_or_else(|| panic!("form-intake: {name} is not set from a parameter"));
        assert!(
            template["Parameters"].get(parameter).is_some(),
            "{name}: no parameter {parameter}"
        );
    }
}

/// `GET /form` reaches form-intake, and the HTTP API's CORS (answered by API Gateway, so a
/// preflight never invokes a function) allows the `FormAllowedOrigins` to POST JSON.
#[test]
fn the_hosted_form_has_its_route_and_cors_comes_from_the_allowed_origins() {
    let template: Value = serde_yaml::from_str(TEMPLATE).unwrap();
    let events = template["Resources"]["FormIntakeFunction"]["Properties"]["Events"]
        .as_mapping()
        .expect("form-intake's events");
    let routes: BTreeSet<(String, String)> = events
        .values()
        .filter(|event| event["Type"].as_str() == Some("HttpApi"))
        .map(|event| {
            let properties = &event["Properties"];
            (
                properties["Method"].as_str().unwrap().to_owned(),
                properties["Path"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        routes,
        BTreeSet::from([
            ("GET".to_owned(), "/form".to_owned()),
            ("POST".to_owned(), "/form".to_owned())
        ]),
        "form-intake's routes"
    );
    let cors = &template["Resources"]["HttpApi"]["Properties"]["CorsConfiguration"];
    assert_eq!(
        cors["AllowMethods"],
        serde_yaml::from_str::<Value>("[POST]").unwrap()
    );
    assert_eq!(
        cors["AllowHeaders"],
        serde_yaml::from_str::<Value>("[content-type]").unwrap()
    );
    assert!(
        cors["MaxAge"].as_u64().is_some_and(|age| age > 0),
        "{cors:?}"
    );
    assert!(
        cors.get("AllowCredentials").is_none(),
        "the browser path sends no cookies"
    );
    let origins = serde_yaml::to_string(&cors["AllowOrigins"]).unwrap();
    assert!(
        origins.contains("FormAllowedOrigins") && origins.contains("HasFormAllowedOrigins"),
        "AllowOrigins comes from FormAllowedOrigins (none when empty): {origins}"
    );
    assert!(!origins.contains('*'), "no wildcard origin: {origins}");
    let parameter = &template["Parameters"]["FormAllowedOrigins"];
    assert_eq!(parameter["Default"].as_str(), Some(""));
    let pattern = parameter["AllowedPattern"].as_str().unwrap();
    assert!(
        pattern.contains("https://"),
        "https origins only: {pattern}"
    );
    let condition =
        serde_yaml::to_string(&template["Conditions"]["HasFormAllowedOrigins"]).unwrap();
    assert!(condition.contains("FormAllowedOrigins"), "{condition}");
}

/// The functions' roles: every statement about Secrets Manager (in each function's `Policies`)
/// allows only `GetSecretValue`, on the one secret `SecretName` names.
#[test]
fn no_secret_is_resolved_into_an_environment_and_each_role_reads_the_one_secret() {
    assert!(
        !TEMPLATE.contains("resolve:secretsmanager"),
        "template.yaml resolves a secret at deploy time"
    );
    let template: Value = serde_yaml::from_str(TEMPLATE).expect("template.yaml is YAML");
    for (function, variables) in template_environments() {
        let leaked: Vec<_> = variables
            .iter()
            .filter(|name| SECRET_VARIABLES.contains(&name.as_str()))
            .collect();
        assert!(
            leaked.is_empty(),
            "{function}: {leaked:?} in its environment"
        );
    }
    let secret_arn = "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:${SecretName}-??????";
    // serde_yaml reads `!Ref SecretName` as a tagged value.
    let secret_id =
        &template["Globals"]["Function"]["Environment"]["Variables"][SECRET_ID_VARIABLE];
    assert!(
        matches!(secret_id, Value::Tagged(t) if t.tag == "Ref" && t.value.as_str() == Some("SecretName")),
        "every function reads the secret SecretName names: {secret_id:?}"
    );
    let mut functions = 0;
    for (name, resource) in template["Resources"].as_mapping().expect("Resources") {
        if resource["Type"].as_str() != Some("AWS::Serverless::Function") {
            continue;
        }
        functions += 1;
        let name = name.as_str().unwrap();
        let text = serde_yaml::to_string(&resource["Properties"]["Policies"]).unwrap();
        let policies: Vec<Value> =
            serde_yaml::from_value(resource["Properties"]["Policies"].clone()).unwrap_or_default();
        let mut grants = 0;
        for policy in &policies {
            for statement in policy["Statement"].as_sequence().into_iter().flatten() {
                let statement_text = serde_yaml::to_string(statement).unwrap();
                if !statement_text.contains("secretsmanager") {
                    continue;
                }
                assert_eq!(
                    statement["Action"].as_str(),
                    Some("secretsmanager:GetSecretValue"),
                    "{name}: {statement_text}"
                );
                let resource = match &statement["Resource"] {
                    Value::Tagged(tagged) if tagged.tag == "Sub" => tagged.value.as_str(),
                    _ => None,
                };
                assert_eq!(resource, Some(secret_arn), "{name}: {statement_text}");
                grants += 1;
            }
        }
        assert_eq!(grants, 1, "{name}: one grant on the secret, in {text}");
        assert!(
            !text.contains("SecretsManagerReadWrite") && !text.contains("AWSSecretsManager"),
            "{name}: a broader managed policy: {text}"
        );
    }
    assert_eq!(functions, 4);
}
