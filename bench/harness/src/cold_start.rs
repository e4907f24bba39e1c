//! Cold starts: fresh processes of each function and of a hello-world `lambda_http` function,
//! from exec to the first `invocation/next` (INIT) and to the answer of a trivially cheap first
//! event, taken in turns so that the machine's moods spread over all of them alike.

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
    /// What the first event was.
    pub first_event: &'static str,
    pub init: Distribution,
    pub first_answer: Distribution,
    /// Medians over hello-lambda's.
    pub init_ratio_to_hello: f64,
    pub first_answer_ratio_to_hello: f64,
}

/// `function` gives each function's binary and environment by name.
pub async fn measure(
    quick: bool,
    function: impl Fn(&str) -> LambdaFunction,
) -> Result<ColdStartReport> {
    let starts = if quick { 5 } else { 20 };
    let functions = [
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
    let mut inits = vec![Vec::new(); functions.len()];
    let mut first_answers = vec![Vec::new(); functions.len()];
    for _ in 0..starts {
        for (i, (name, _, event)) in functions.iter().enumerate() {
            let function = function(name);
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
    for (i, (name, first_event, _)) in functions.iter().enumerate() {
        report.functions.push(FunctionColdStart {
            name: (*name).to_owned(),
            first_event,
            init: Distribution::of(inits[i].iter().copied()),
            first_answer: Distribution::of(first_answers[i].iter().copied()),
            init_ratio_to_hello: 0.0,
            first_answer_ratio_to_hello: 0.0,
        });
    }
    let (hello_init, hello_answer) = (
        report.functions[0].init.p50_ms,
        report.functions[0].first_answer.p50_ms,
    );
    for function in &mut report.functions {
        function.init_ratio_to_hello = function.init.p50_ms / hello_init;
        function.first_answer_ratio_to_hello = function.first_answer.p50_ms / hello_answer;
    }
    Ok(report)
}

impl ColdStartReport {
    /// The cold starts' table, as `make bench` prints it.
    pub fn table(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "COLD START: {} fresh processes each under the local runtime API; median (p90)",
            self.starts_per_function
        );
        let _ = writeln!(
            out,
            "{:<20} {:>18} {:>22} {:>12} {:>12}   first event",
            "function", "INIT ms", "exec->answer ms", "INIT/hello", "answer/hello"
        );
        for function in &self.functions {
            let _ = writeln!(
                out,
                "{:<20} {:>18} {:>22} {:>12.2} {:>12.2}   {}",
                function.name,
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
        out
    }
}

fn first_http_event(path: &str) -> Result<Bytes> {
    Ok(Bytes::from(fixture(path)?.to_string()))
}
