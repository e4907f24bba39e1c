//! The bridge's figures for CloudWatch, as Embedded Metric Format log lines (no API call, no
//! metric filter): one line per event, carrying every metric of that event. The template's
//! alarms and dashboard read them by these names (`tests/tests/deploy` checks they agree).
//!
//! Outside Lambda (`AWS_LAMBDA_FUNCTION_NAME` unset: the tests, `make dev`) the figures go to the
//! debug log instead of stdout.

use std::io::{self, Write as _};

use serde_json::{Map, Value, json};

use crate::domain::{AccountProblem, FailureCause};
use crate::telemetry::METRIC_NAMESPACE;

/// One figure the bridge reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// A turn answered (by the agent, a fixed reply, or held).
    Turns,
    /// Our time for a turn, from its claim to its completion (milliseconds).
    TurnLatency,
    /// From the customer's oldest answered message to the reply (milliseconds).
    ReplyDelay,
    /// A failed turn or conversation start, with the dimension `Cause`.
    TurnFailures,
    /// A failure of the whole account (a token, a permission, billing), with the dimension
    /// `Problem`; the template's alarm watches it.
    AccountWideFailures,
    /// Templates sent (first contact, or outside the 24-hour window).
    TemplatesSent,
    /// New chats started because Retell had ended the customer's chat.
    CarryOvers,
    /// Customers who opted out.
    OptOuts,
    /// Stranded work the sweeper queued again.
    SweeperRequeues,
    /// Work the sweeper gave up on (waiting longer than it may).
    SweeperGaveUp,
    /// Turns put back because the invocation had no time left for them.
    DeadlineReleases,
    /// Messages staff wrote in `staff_messages` that went out on WhatsApp.
    StaffMessagesSent,
    /// A form's outreach held by the daily limit (form-intake); the template's alarm watches it.
    OutreachHeld,
    /// Voice notes transcribed.
    Transcriptions,
    /// Downloading and transcribing one voice note (milliseconds).
    TranscriptionLatency,
    /// Voice notes given up on (too long, refused, or failing past `TRANSCRIBE_ATTEMPTS`): the
    /// customer got the polite reply, or the agent a marker.
    UnheardVoiceNotes,
}

impl Metric {
    pub fn name(self) -> &'static str {
        match self {
            Self::Turns => "Turns",
            Self::TurnLatency => "TurnLatency",
            Self::ReplyDelay => "ReplyDelay",
            Self::TurnFailures => "TurnFailures",
            Self::AccountWideFailures => "AccountWideFailures",
            Self::TemplatesSent => "TemplatesSent",
            Self::CarryOvers => "CarryOvers",
            Self::OptOuts => "OptOuts",
            Self::SweeperRequeues => "SweeperRequeues",
            Self::SweeperGaveUp => "SweeperGaveUp",
            Self::DeadlineReleases => "DeadlineReleases",
            Self::StaffMessagesSent => "StaffMessagesSent",
            Self::OutreachHeld => "OutreachHeld",
            Self::Transcriptions => "Transcriptions",
            Self::TranscriptionLatency => "TranscriptionLatency",
            Self::UnheardVoiceNotes => "UnheardVoiceNotes",
        }
    }

    fn unit(self) -> &'static str {
        match self {
            Self::TurnLatency | Self::ReplyDelay | Self::TranscriptionLatency => "Milliseconds",
            _ => "Count",
        }
    }
}

/// One event's figures, written by [`Figures::emit`].
#[derive(Debug, Default)]
pub struct Figures {
    values: Vec<(Metric, f64)>,
    /// The line's `message` (default `metrics`).
    message: Option<&'static str>,
    /// An extra dimension (`Cause`, `Problem`), besides `FunctionName`.
    dimension: Option<(&'static str, &'static str)>,
}

impl Figures {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(mut self, metric: Metric, value: f64) -> Self {
        self.values.push((metric, value));
        self
    }

    /// The line's `message`, for whoever reads the log rather than the metric.
    pub fn saying(mut self, message: &'static str) -> Self {
        self.message = Some(message);
        self
    }

    /// A failure of a job: `TurnFailures` by cause, and `AccountWideFailures` by problem.
    pub fn failure(cause: FailureCause) -> [Figures; 2] {
        let by_cause = Figures {
            values: vec![(Metric::TurnFailures, 1.0)],
            dimension: Some(("Cause", cause.name())),
            message: None,
        };
        let by_problem = match cause {
            FailureCause::AccountWide(problem) => Figures::account_wide(problem),
            _ => Figures::new(),
        };
        [by_cause, by_problem]
    }

    fn account_wide(problem: AccountProblem) -> Figures {
        Figures {
            values: vec![(Metric::AccountWideFailures, 1.0)],
            dimension: Some(("Problem", problem.name())),
            message: None,
        }
    }

    /// Writes the line on stdout (in Lambda), else to the debug log.
    pub fn emit(self) {
        if self.values.is_empty() {
            return;
        }
        match std::env::var("AWS_LAMBDA_FUNCTION_NAME") {
            Ok(function) => {
                let line = self.line(&function, chrono::Utc::now());
                // A lost figure must not fail the work it measures.
                let _ = writeln!(io::stdout().lock(), "{line}");
            }
            Err(_) => {
                tracing::debug!(figures = ?self.values, dimension = ?self.dimension, "metrics")
            }
        }
    }

    /// The EMF line: `FunctionName` always, and the extra dimension when there is one (both
    /// dimension sets, so the alarm can read the total and the dashboard the split). Lambda
    /// filters log lines by `level`: failures are WARN and account-wide ones ERROR, so that a
    /// `LogLevel` of WARN keeps the alarms' figures; the others are INFO.
    pub fn line(&self, function: &str, at: chrono::DateTime<chrono::Utc>) -> Value {
        let level = if self.has(Metric::AccountWideFailures) || self.has(Metric::OutreachHeld) {
            "ERROR"
        } else if self.has(Metric::TurnFailures) || self.has(Metric::SweeperGaveUp) {
            "WARN"
        } else {
            "INFO"
        };
        let mut dimensions = vec![json!(["FunctionName"])];
        if let Some((name, _)) = self.dimension {
            dimensions.push(json!(["FunctionName", name]));
        }
        let metrics: Vec<Value> = self
            .values
            .iter()
            .map(|(metric, _)| json!({ "Name": metric.name(), "Unit": metric.unit() }))
            .collect();
        let mut line = Map::new();
        line.insert(
            "timestamp".into(),
            json!(at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)),
        );
        line.insert("level".into(), json!(level));
        line.insert("message".into(), json!(self.message.unwrap_or("metrics")));
        line.insert(
            "_aws".into(),
            json!({
                "Timestamp": at.timestamp_millis(),
                "CloudWatchMetrics": [{
                    "Namespace": METRIC_NAMESPACE,
                    "Dimensions": dimensions,
                    "Metrics": metrics,
                }],
            }),
        );
        line.insert("FunctionName".into(), json!(function));
        if let Some((name, value)) = self.dimension {
            line.insert(name.into(), json!(value));
        }
        for (metric, value) in &self.values {
            line.insert(metric.name().into(), json!(value));
        }
        Value::Object(line)
    }

    fn has(&self, metric: Metric) -> bool {
        self.values.iter().any(|(m, _)| *m == metric)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_turns_figures_share_one_line_in_the_bridges_namespace() {
        let at = chrono::DateTime::from_timestamp_millis(1_795_953_600_500).unwrap();
        let line = Figures::new()
            .add(Metric::Turns, 1.0)
            .add(Metric::TurnLatency, 7.5)
            .line("worker", at);
        let directive = &line["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "WhatsAppRetellBridge");
        assert_eq!(directive["Dimensions"], json!([["FunctionName"]]));
        assert_eq!(
            directive["Metrics"],
            json!([{"Name": "Turns", "Unit": "Count"}, {"Name": "TurnLatency", "Unit": "Milliseconds"}])
        );
        assert_eq!(
            (line["Turns"].as_f64(), line["TurnLatency"].as_f64()),
            (Some(1.0), Some(7.5))
        );
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["_aws"]["Timestamp"], 1_795_953_600_500_i64);
    }

    #[test]
    fn a_held_outreach_is_one_emf_line_at_error_level() {
        let at = chrono::DateTime::parse_from_rfc3339("2026-11-29T12:00:00.5Z")
            .unwrap()
            .to_utc();
        let line = Figures::new()
            .add(Metric::OutreachHeld, 1.0)
            .saying("held")
            .line("stack-form-intake", at)
            .to_string();
        assert!(!line.contains('\n'));
        let value: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["level"], "ERROR");
        assert_eq!(value["message"], "held");
        assert_eq!(value["timestamp"], "2026-11-29T12:00:00.500000Z");
        assert_eq!(value["_aws"]["Timestamp"], 1_795_953_600_500_i64);
        let directive = &value["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "WhatsAppRetellBridge");
        assert_eq!(directive["Dimensions"], json!([["FunctionName"]]));
        assert_eq!(
            directive["Metrics"],
            json!([{ "Name": "OutreachHeld", "Unit": "Count" }])
        );
        // Every dimension and metric named is a member of the line, as EMF requires.
        assert_eq!(value["FunctionName"], "stack-form-intake");
        assert_eq!(value["OutreachHeld"], 1.0);
    }

    #[test]
    fn an_account_wide_failure_names_its_problem_at_error_level() {
        let at = chrono::Utc::now();
        let [by_cause, by_problem] =
            Figures::failure(FailureCause::AccountWide(AccountProblem::WhatsAppToken));
        let cause = by_cause.line("worker", at);
        assert_eq!(cause["Cause"], "account_wide");
        assert_eq!(cause["level"], "WARN");
        let problem = by_problem.line("worker", at);
        assert_eq!(problem["Problem"], "whatsapp_token");
        assert_eq!(problem["AccountWideFailures"], 1.0);
        assert_eq!(problem["level"], "ERROR");
        assert_eq!(
            problem["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["FunctionName"], ["FunctionName", "Problem"]])
        );
        let [_, none] = Figures::failure(FailureCause::Permanent);
        assert!(none.values.is_empty());
    }
}
