//! Logging for the functions: one JSON object per line, in the shape Lambda's JSON log format
//! reads (`LoggingConfig.LogFormat: JSON`), so that the function's `ApplicationLogLevel` filters
//! them and CloudWatch keeps our timestamps:
//!
//! ```json
//! {"timestamp":"2026-01-01T12:00:00.123456Z","level":"WARN","message":"retrying Retell",
//!  "requestId":"8f5c…","xrayTraceId":"Root=1-…","customer":"********5678","turn":"0b6e…",
//!  "method":"POST","path":"create-chat-completion","span":"retell","error":"…","retry":0}
//! ```
//!
//! (one line in the log; wrapped here)
//!
//! `timestamp` (RFC 3339, UTC), `level` (`TRACE` … `ERROR`, as Lambda names them) and `message`
//! come first; then the fields of every span the event is in, from the outermost (lambda_runtime's
//! `Lambda runtime invoke` span, which carries the invocation's `requestId`) inwards, then the
//! event's own, each key once: a field recorded again further in (a `customer` on the job's span
//! and on the store call's) keeps its first place and takes the innermost value. `span`, between
//! the spans' fields and the event's, names the innermost span.
//!
//! The level comes from `RUST_LOG` (any `EnvFilter` directives), else `AWS_LAMBDA_LOG_LEVEL` (what
//! Lambda sets from `ApplicationLogLevel`), else `info`. Set up once, first thing in `main`.

use std::fmt;
use std::io;

use serde_json::Value;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::filter::{EnvFilter, LevelFilter};
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormattedFields, MakeWriter};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::registry::LookupSpan;

/// Installs the subscriber for the process, writing to stdout.
pub fn init() {
    let directives = std::env::var("RUST_LOG").ok();
    let lambda_level = std::env::var("AWS_LAMBDA_LOG_LEVEL").ok();
    let subscriber = subscriber(
        &filter_directives(directives.as_deref(), lambda_level.as_deref()),
        io::stdout,
    );
    // Only fails when a subscriber is installed already (a test's): that one stays.
    let _ = tracing::subscriber::set_global_default(subscriber);
}

/// The subscriber [`init`] installs, writing each line to `writer` and keeping what `filter`
/// (`EnvFilter` directives, or a bare level) lets through.
pub fn subscriber<W>(filter: &str, writer: W) -> impl Subscriber + Send + Sync + 'static
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    // A bare level (the usual case, from AWS_LAMBDA_LOG_LEVEL) needs no EnvFilter: a
    // LevelFilter alone, which costs nothing per callsite.
    let (level, directives) = match filter.trim().parse::<LevelFilter>() {
        Ok(level) => (level, None),
        Err(_) => (LevelFilter::TRACE, Some(EnvFilter::new(filter))),
    };
    let format = tracing_subscriber::fmt::layer()
        .fmt_fields(JsonFields::new())
        .event_format(LambdaJson)
        .with_ansi(false)
        .with_writer(writer);
    tracing_subscriber::registry()
        .with(level)
        .with(directives)
        .with(format)
}

/// `RUST_LOG` as given, else Lambda's level in `EnvFilter`'s words (`FATAL` is `error`), else
/// `info`.
fn filter_directives(rust_log: Option<&str>, lambda_level: Option<&str>) -> String {
    if let Some(directives) = rust_log.filter(|d| !d.trim().is_empty()) {
        return directives.to_owned();
    }
    match lambda_level.map(|level| level.trim().to_ascii_lowercase()) {
        Some(level) if level == "fatal" => "error".to_owned(),
        Some(level) if !level.is_empty() => level,
        _ => "info".to_owned(),
    }
}

/// The event formatter: one flat JSON object per event (see the module's documentation).
struct LambdaJson;

/// The keys every line starts with, which no span or event field may replace.
const RESERVED: [&str; 4] = ["timestamp", "level", "message", "span"];

impl<S, N> FormatEvent<S, N> for LambdaJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'w> tracing_subscriber::fmt::FormatFields<'w> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut line = Line::default();
        line.push(
            "timestamp",
            Value::String(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)),
        );
        line.push("level", Value::String(event.metadata().level().to_string()));
        let mut fields = EventFields::default();
        event.record(&mut fields);
        line.push(
            "message",
            Value::String(fields.message.take().unwrap_or_default()),
        );
        if let Some(scope) = ctx.event_scope() {
            let mut innermost = None;
            for span in scope.from_root() {
                innermost = Some(span.name());
                let extensions = span.extensions();
                let Some(recorded) = extensions.get::<FormattedFields<N>>() else {
                    continue;
                };
                // JsonFields keeps a span's fields as the text of one JSON object.
                if let Ok(Value::Object(span_fields)) =
                    serde_json::from_str::<Value>(&recorded.fields)
                {
                    for (key, value) in span_fields {
                        line.merge(key, value);
                    }
                }
            }
            if let Some(name) = innermost {
                line.push("span", Value::String(name.to_owned()));
            }
        }
        for (key, value) in fields.values {
            line.merge(key.to_owned(), value);
        }
        writeln!(writer, "{line}")
    }
}

/// A log line's keys in the order they are written, each once.
#[derive(Default)]
struct Line {
    entries: Vec<(String, Value)>,
}

impl Line {
    fn push(&mut self, key: &str, value: Value) {
        self.entries.push((key.to_owned(), value));
    }

    /// A span's or the event's field: the value replaces an earlier one of the same key (in its
    /// place); the reserved keys are never replaced.
    fn merge(&mut self, key: String, value: Value) {
        if RESERVED.contains(&key.as_str()) {
            return;
        }
        match self.entries.iter_mut().find(|(k, _)| *k == key) {
            Some((_, old)) => *old = value,
            None => self.entries.push((key, value)),
        }
    }
}

impl fmt::Display for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, (key, value)) in self.entries.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            // A String and a Value always serialize.
            let key = serde_json::to_string(key).map_err(|_| fmt::Error)?;
            write!(f, "{key}:{value}")?;
        }
        f.write_str("}")
    }
}

/// An event's message and fields, in the order they were written.
#[derive(Default)]
struct EventFields {
    message: Option<String>,
    values: Vec<(&'static str, Value)>,
}

impl EventFields {
    fn put(&mut self, field: &Field, value: Value) {
        let name = field.name();
        if name == "message" {
            self.message = Some(match value {
                Value::String(text) => text,
                other => other.to_string(),
            });
        } else {
            self.values
                .push((name.strip_prefix("r#").unwrap_or(name), value));
        }
    }
}

impl Visit for EventFields {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, Value::from(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, Value::from(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, Value::from(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, Value::from(value));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Value::from(value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, Value::String(format!("{value:?}")));
    }
}

/// The CloudWatch namespace of the bridge's own metrics ([`crate::metrics`]).
pub const METRIC_NAMESPACE: &str = "WhatsAppRetellBridge";

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// Every line the subscriber writes, kept in memory.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Buffer {
        fn lines(&self) -> Vec<String> {
            String::from_utf8(self.0.lock().unwrap().clone())
                .unwrap()
                .lines()
                .map(str::to_owned)
                .collect()
        }
    }

    /// What `filter` lets through of a few events, as production formats them.
    fn logged(filter: &str, events: impl FnOnce()) -> Vec<String> {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = subscriber(filter, move || writer.clone());
        tracing::subscriber::with_default(subscriber, events);
        buffer.lines()
    }

    /// The top-level keys of a JSON object's text, in order and as many times as they occur
    /// (serde_json keeps only the last of duplicate keys, so the text is scanned), checking that
    /// none occurs twice.
    fn raw_keys(line: &str) -> Vec<String> {
        let object: serde_json::Map<String, Value> = serde_json::from_str(line).unwrap();
        let mut keys = Vec::new();
        let (mut depth, mut in_string, mut escaped) = (0, false, false);
        let mut string_start = 0;
        let mut last_string = None;
        for (i, c) in line.char_indices() {
            if in_string {
                match c {
                    _ if escaped => escaped = false,
                    '\\' => escaped = true,
                    '"' => {
                        in_string = false;
                        last_string = Some(&line[string_start..=i]);
                    }
                    _ => {}
                }
                continue;
            }
            match c {
                '"' => (in_string, string_start) = (true, i),
                '{' | '[' => depth += 1,
                '}' | ']' => depth -= 1,
                ':' if depth == 1 => {
                    let key = last_string.expect("a key before ':'");
                    keys.push(serde_json::from_str::<String>(key).unwrap());
                }
                _ => {}
            }
            if c != ':' && !c.is_whitespace() && c != '"' {
                last_string = None;
            }
        }
        assert_eq!(keys.len(), object.len(), "duplicate keys in {line}");
        keys
    }

    #[test]
    fn lines_are_flat_json_with_lambdas_keys_and_each_field_once() {
        let lines = logged("info", || {
            let invoke = tracing::info_span!("Lambda runtime invoke", requestId = "req-1");
            let _invoke = invoke.enter();
            let job = tracing::info_span!("job", customer = "********5678");
            let _job = job.enter();
            let turn = tracing::info_span!(
                "take_turn",
                customer = "********5678",
                turn = tracing::field::Empty
            );
            let _turn = turn.enter();
            turn.record("turn", 42);
            tracing::warn!(customer = "********5678", retry = 1, "retrying Retell");
            tracing::debug!("not at info");
            tracing::error!(error = %"boom", "the turn failed for good");
        });
        assert_eq!(lines.len(), 2, "{lines:#?}");
        for line in &lines {
            let keys = raw_keys(line);
            assert_eq!(
                keys[..4],
                ["timestamp", "level", "message", "requestId"],
                "{line}"
            );
            let value: Value = serde_json::from_str(line).unwrap();
            let timestamp = value["timestamp"].as_str().unwrap();
            chrono::DateTime::parse_from_rfc3339(timestamp).unwrap();
            assert!(timestamp.ends_with('Z'), "{timestamp}");
            assert_eq!(value["requestId"], "req-1");
            assert_eq!(value["customer"], "********5678");
            assert_eq!(value["turn"], 42);
            assert_eq!(value["span"], "take_turn");
        }
        let warn: Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(warn["level"], "WARN");
        assert_eq!(warn["message"], "retrying Retell");
        assert_eq!(warn["retry"], 1);
        let error: Value = serde_json::from_str(&lines[1]).unwrap();
        assert_eq!(error["level"], "ERROR");
        assert_eq!(error["error"], "boom");
    }

    #[test]
    fn the_innermost_value_wins_and_reserved_keys_stay() {
        let lines = logged("info", || {
            let outer = tracing::info_span!("outer", job = "start", level = "sneaky");
            let _outer = outer.enter();
            let inner = tracing::info_span!("inner", job = "take_turn");
            let _inner = inner.enter();
            tracing::info!(message_count = 2, "done");
        });
        let value: Value = serde_json::from_str(&lines[0]).unwrap();
        raw_keys(&lines[0]);
        assert_eq!(value["job"], "take_turn");
        assert_eq!(value["level"], "INFO");
        assert_eq!(value["message"], "done");
        assert_eq!(value["message_count"], 2);
    }

    #[test]
    fn events_outside_spans_and_env_filter_directives() {
        let lines = logged("warn,shared=debug", || {
            tracing::info!(target: "other", "left out");
            tracing::debug!(target: "shared::engine", "kept");
            tracing::warn!(target: "other", "kept too");
        });
        assert_eq!(lines.len(), 2, "{lines:#?}");
        assert_eq!(
            raw_keys(&lines[0]),
            ["timestamp", "level", "message"],
            "{}",
            lines[0]
        );
        let value: Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(value["level"], "DEBUG");
    }

    #[test]
    #[should_panic(expected = "duplicate keys")]
    fn the_key_check_sees_duplicates() {
        raw_keys(r#"{"customer":"****1","nested":{"customer":1},"customer":"****1"}"#);
    }

    #[test]
    fn the_level_comes_from_rust_log_else_lambda() {
        assert_eq!(
            filter_directives(Some("debug,hyper=warn"), Some("ERROR")),
            "debug,hyper=warn"
        );
        assert_eq!(filter_directives(None, Some("WARN")), "warn");
        assert_eq!(filter_directives(Some(" "), Some("DEBUG")), "debug");
        assert_eq!(filter_directives(None, Some("FATAL")), "error");
        assert_eq!(filter_directives(None, None), "info");
    }
}
