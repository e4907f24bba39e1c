//! Cold starts: fresh processes of each function and of a hello-world `lambda_http` function,
//! from exec to the first `invocation/next` (INIT) and to the answer of a trivially cheap first
//! event, taken in turns so that the machine's moods spread over all of them alike. Each function
//! starts twice: with its secrets in the environment, and reading them at INIT from a Secrets
//! Manager stand-in (`BRIDGE_SECRET_ID`, as deployed), so the read's cost shows apart.

use std::time::Duration;

use anyhow::{Context, Result};
use axum::body::Bytes;
use serde::Serialize;

use super::{
    CONVERSATION_WORKER, Distribution, FORM_INTAKE, HELLO_LAMBDA, INIT_TIMEOUT, WHATSAPP_INBOUND,
    fixture,
};
use crate::runtime_api::{LambdaFunction, RuntimeApi};

#[derive(Debug, Serialize)]
pub struct ColdStartReport {
    pub starts_per_function: usize,
    pub functions: Vec<FunctionColdStart>,
}

#[derive(Debug, Serialize)]
pub struct FunctionColdStart {
    pub name: String,
    /// Whether it read its secrets at INIT from the Secrets Manager stand-in.
    pub secret_read: bool,
    /// What the first event was.
    pub first_event: &'static str,
    pub init: Distribution,
    pub first_answer: Distribution,
    /// Medians over hello-lambda's.
    pub init_ratio_to_hello: f64,
    pub first_answer_ratio_to_hello: f64,
    /// With the secret read: the median INIT over the same function's without it.
    pub secret_read_init_cost_ms: Option<f64>,
}

/// `function` gives each function's binary and environment by name, and whether it reads its
/// secrets from the Secrets Manager stand-in.
pub async fn measure(
    quick: bool,
    function: impl Fn(&str, bool) -> LambdaFunction,
) -> Result<ColdStartReport> {
    let starts = if quick { 5 } else { 40 };
    let plain = [
        (
            HELLO_LAMBDA,
            "OPTIONS /form (any HTTP API event)",
            first_http_event("functions/form-intake/tests/fixtures/options_preflight.json")?,
        ),
        (
            WHATSAPP_INBOUND,
            "GET /whatsapp verification",
            first_http_event("functions/whatsapp-inbound/tests/fixtures/get-whatsapp-verify.json")?,
        ),
        (
            FORM_INTAKE,
            "OPTIONS /form preflight",
            first_http_event("functions/form-intake/tests/fixtures/options_preflight.json")?,
        ),
        (
            CONVERSATION_WORKER,
            "an empty SQS batch",
            Bytes::from_static(br#"{"Records":[]}"#),
        ),
    ];
    // (name, reads the secret, first event, event): each function without, then with, the read.
    let functions: Vec<_> = plain
        .iter()
        .map(|(name, what, event)| (*name, false, *what, event.clone()))
        .chain(
            plain
                .iter()
                .filter(|(name, ..)| *name != HELLO_LAMBDA)
                .map(|(name, what, event)| (*name, true, *what, event.clone())),
        )
        .collect();
    let mut inits = vec![Vec::new(); functions.len()];
    let mut first_answers = vec![Vec::new(); functions.len()];
    for _ in 0..starts {
        for (i, (name, secret_read, _, event)) in functions.iter().enumerate() {
            let function = function(name, *secret_read);
            let mut api = RuntimeApi::start(&function, 1).await?;
            api.wait_until_initialized(INIT_TIMEOUT)
                .await
                .with_context(|| format!("starting {name}"))?;
            api.invoke(event.clone()).await?;
            let cold_start = api.cold_starts()[0];
            inits[i].push(cold_start.init);
            first_answers[i].extend(cold_start.first_answer);
        }
    }
    let mut report = ColdStartReport {
        starts_per_function: starts,
        functions: Vec::new(),
    };
    for (i, (name, secret_read, first_event, _)) in functions.iter().enumerate() {
        report.functions.push(FunctionColdStart {
            name: (*name).to_owned(),
            secret_read: *secret_read,
            first_event,
            init: Distribution::of(inits[i].iter().copied()),
            first_answer: Distribution::of(first_answers[i].iter().copied()),
            init_ratio_to_hello: 0.0,
            first_answer_ratio_to_hello: 0.0,
            secret_read_init_cost_ms: None,
        });
    }
    let hello_answer = report.functions[0].first_answer.p50_ms;
    let without_secret: Vec<(String, f64)> = report
        .functions
        .iter()
        .filter(|f| !f.secret_read)
        .map(|f| (f.name.clone(), f.init.p50_ms))
        .collect();
    for (i, function) in report.functions.iter_mut().enumerate() {
        function.init_ratio_to_hello = paired_median_ratio(&inits[i], &inits[0]);
        function.first_answer_ratio_to_hello = function.first_answer.p50_ms / hello_answer;
        if function.secret_read {
            function.secret_read_init_cost_ms = without_secret
                .iter()
                .find(|(name, _)| *name == function.name)
                .map(|(_, init)| function.init.p50_ms - init);
        }
    }
    Ok(report)
}

/// The median of each round's INIT divided by hello-world's INIT in the same round. Every round
/// starts each function once, back to back, so the load of the machine, which drifts from round
/// to round at this scale of milliseconds, weighs on both sides of a ratio alike.
fn paired_median_ratio(samples: &[Duration], hello: &[Duration]) -> f64 {
    let mut ratios: Vec<f64> = samples
        .iter()
        .zip(hello)
        .map(|(sample, hello)| sample.as_secs_f64() / hello.as_secs_f64().max(f64::EPSILON))
        .collect();
    ratios.sort_by(f64::total_cmp);
    match ratios.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => ratios[n / 2],
        n => (ratios[n / 2 - 1] + ratios[n / 2]) / 2.0,
    }
}

impl ColdStartReport {
    /// The cold starts' table, as `make bench` prints it.
    pub fn table(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "COLD START: {} fresh processes each under the local runtime API; median (p90); \
             INIT/hello is the median of each round's ratio",
            self.starts_per_function
        );
        let _ = writeln!(
            out,
            "{:<32} {:>18} {:>22} {:>12} {:>12}   first event",
            "function", "INIT ms", "exec->answer ms", "INIT/hello", "answer/hello"
        );
        for function in &self.functions {
            let name = if function.secret_read {
                format!("{} +secret read", function.name)
            } else {
                function.name.clone()
            };
            let _ = writeln!(
                out,
                "{:<32} {:>18} {:>22} {:>12.2} {:>12.2}   {}",
                name,
                format!("{:.2} ({:.2})", function.init.p50_ms, function.init.p90_ms),
                format!(
                    "{:.2} ({:.2})",
                    function.first_answer.p50_ms, function.first_answer.p90_ms
                ),
                function.init_ratio_to_hello,
                function.first_answer_ratio_to_hello,
                function.first_event
            );
        }
        let costs: Vec<String> = self
            .functions
            .iter()
            .filter_map(|f| {
                f.secret_read_init_cost_ms
                    .map(|cost| format!("{} {cost:+.2} ms", f.name))
            })
            .collect();
        if !costs.is_empty() {
            let _ = writeln!(
                out,
                "secret read at INIT (one GetSecretValue from a local stand-in; Secrets Manager's own latency comes on top), median INIT over the same function without it: {}",
                costs.join(", ")
            );
        }
        out
    }
}

fn first_http_event(path: &str) -> Result<Bytes> {
    Ok(Bytes::from(fixture(path)?.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ratio_to_hello_world_is_taken_within_each_round() {
        let ms = Duration::from_millis;
        // The machine slows down threefold halfway: each round's ratio is still 1.5.
        let hello = [ms(2), ms(2), ms(6), ms(6)];
        let function = [ms(3), ms(3), ms(9), ms(9)];
        assert_eq!(paired_median_ratio(&function, &hello), 1.5);
        assert_eq!(
            paired_median_ratio(&[ms(3), ms(4), ms(5)], &[ms(2), ms(2), ms(2)]),
            2.0
        );
        assert!(paired_median_ratio(&[], &[]).is_nan());
    }
}
