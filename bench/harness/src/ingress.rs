//! Ingress under load: signed WhatsApp deliveries to whatsapp-inbound and valid forms to
//! form-intake, sent open-loop (each request at its scheduled moment, whether or not earlier
//! ones were answered, so queueing shows in the latency), at fixed rates and then at rates
//! stepping up until p99 passes 50 ms. Each function runs twice: with moto (a Python SQS
//! server) behind it, and with an SQS that answers at once ([`super::instant_sqs`]), which
//! leaves the function's and the store's time alone. moto's SendMessage is timed alone too.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use axum::body::Bytes;
use serde::Serialize;
use serde_json::json;

use super::{
    APP_SECRET, Bench, Distribution, FORM_INTAKE, FORM_SECRET, INIT_TIMEOUT, TurnQueue,
    WHATSAPP_INBOUND, fixture, millis, peak_rss_mb, status_code,
};
use crate::runtime_api::RuntimeApi;
use sandbox::meta_webhook::{TextMessage, signature, text_delivery};
use shared::whatsapp::webhook::SIGNATURE_HEADER;

/// Instances of each function under load: Lambda's scale-out, here on two cores.
const INSTANCES: usize = 4;
const FIXED_RATES: [f64; 3] = [50.0, 200.0, 1000.0];
/// The step search starts here and multiplies by [`RATE_STEP`] while p99 stays under
/// [`P99_LIMIT_MS`], up to [`MAX_RATE`].
const FIRST_STEP_RATE: f64 = 50.0;
const RATE_STEP: f64 = 1.5;
const MAX_RATE: f64 = 20_000.0;
pub const P99_LIMIT_MS: f64 = 50.0;
/// No run sends more than this, whatever its rate and duration.
const MAX_REQUESTS_PER_RUN: usize = 6_000;

#[derive(Debug, Serialize)]
pub struct IngressReport {
    pub instances: usize,
    pub functions: Vec<FunctionUnderLoad>,
    /// moto's SendMessage alone, from the harness: the share of the latency that is moto's.
    pub moto_send_message: MotoShare,
}

#[derive(Debug, Serialize)]
pub struct FunctionUnderLoad {
    pub name: String,
    /// The SQS behind it: `moto`, or `instant` (answers at once, keeps nothing).
    pub queue: &'static str,
    pub fixed_rates: Vec<RateRun>,
    pub steps: Vec<RateRun>,
    /// The highest rate of the step search with p99 under 50 ms and no errors.
    pub highest_rate_under_p99_limit: Option<f64>,
    /// The largest peak RSS (`VmHWM`) of the instances after all runs, MiB.
    pub peak_rss_mb: f64,
}

#[derive(Debug, Serialize)]
pub struct RateRun {
    pub rate_per_s: f64,
    pub requests: usize,
    /// Not answered, answered with an error, or with an unexpected status.
    pub errors: usize,
    pub achieved_per_s: f64,
    /// From the scheduled send to the answer: what the caller waits.
    pub latency: Distribution,
    /// From the event handed to an instance to its answer: the function's own part.
    pub service: Distribution,
    /// CPU time of the function's processes alone, per request.
    pub cpu_ms_per_request: f64,
}

impl RateRun {
    fn holds(&self) -> bool {
        self.errors == 0 && self.latency.p99_ms < P99_LIMIT_MS
    }
}

#[derive(Debug, Serialize)]
pub struct MotoShare {
    /// One SendMessage at a time.
    pub sequential: Distribution,
    /// SendMessage calls per second with as many senders as function instances.
    pub concurrent_per_s: f64,
}

pub async fn measure(bench: &Bench) -> Result<IngressReport> {
    // First, while moto is fresh and nothing else runs.
    let moto_send_message = moto_share(bench).await?;
    eprintln!(
        "bench:   moto's SendMessage alone: p50 {:.2} ms, {:.0}/s with {INSTANCES} senders",
        moto_send_message.sequential.p50_ms, moto_send_message.concurrent_per_s
    );
    let mut functions = Vec::new();
    for queue in &bench.queues {
        for (name, expected_status) in [(WHATSAPP_INBOUND, 200), (FORM_INTAKE, 202)] {
            eprintln!(
                "bench:   {name}, {INSTANCES} instances, queue on {}",
                queue.name
            );
            functions.push(load(bench, name, expected_status, queue).await?);
        }
    }
    Ok(IngressReport {
        instances: INSTANCES,
        functions,
        moto_send_message,
    })
}

/// One function at the fixed rates, then at rates stepping up.
async fn load(
    bench: &Bench,
    name: &'static str,
    expected_status: u16,
    queue: &TurnQueue,
) -> Result<FunctionUnderLoad> {
    let function = bench.function_on(name, &bench.stack.rest_url, queue);
    let mut api = RuntimeApi::start(&function, INSTANCES).await?;
    api.wait_until_initialized(INIT_TIMEOUT).await?;
    let api = Arc::new(api);
    let events = Events::new(name);
    let run = |rate: f64, seconds: f64| {
        let api = api.clone();
        let events = events.take(count(rate, seconds));
        async move {
            // moto scans its whole FIFO queue on every send: each run starts on an empty one.
            if queue.is_moto() {
                empty_moto_queue(bench, &queue.queue_url).await?;
            }
            open_loop(&api, rate, events, expected_status).await
        }
    };
    // Warm every instance's connections (database pool, SQS client) before measuring.
    run(100.0, 0.1 * INSTANCES as f64).await?;

    let seconds = if bench.quick() { 1.0 } else { 2.0 };
    let mut fixed_rates = Vec::new();
    for rate in FIXED_RATES {
        let result = run(rate, seconds).await?;
        eprintln!("bench:     {}", summary(&result));
        fixed_rates.push(result);
    }
    let mut steps = Vec::new();
    let mut rate = FIRST_STEP_RATE;
    while rate <= MAX_RATE {
        let mut result = run(rate, seconds).await?;
        eprintln!("bench:     step {}", summary(&result));
        result.latency.samples_ms.clear(); // the chart draws the fixed rates only
        result.service.samples_ms.clear();
        let holds = result.holds();
        steps.push(result);
        if !holds {
            break;
        }
        rate = (rate * RATE_STEP).round();
    }
    Ok(FunctionUnderLoad {
        name: name.to_owned(),
        queue: queue.name,
        highest_rate_under_p99_limit: steps
            .iter()
            .take_while(|run| run.holds())
            .map(|run| run.rate_per_s)
            .last(),
        fixed_rates,
        steps,
        peak_rss_mb: peak_rss_mb(&api.peak_rss()),
    })
}

fn count(rate: f64, seconds: f64) -> usize {
    ((rate * seconds) as usize).clamp(1, MAX_REQUESTS_PER_RUN)
}

fn summary(run: &RateRun) -> String {
    format!(
        "{:>6.0}/s: {} requests, {} errors, p50 {:.2} ms, p99 {:.2} ms (function's own p50 {:.2} ms)",
        run.rate_per_s,
        run.requests,
        run.errors,
        run.latency.p50_ms,
        run.latency.p99_ms,
        run.service.p50_ms
    )
}

/// Sends `events` at `rate` per second, each at its own scheduled moment, and measures each
/// from that moment to its answer.
async fn open_loop(
    api: &Arc<RuntimeApi>,
    rate: f64,
    events: Vec<Bytes>,
    expected_status: u16,
) -> Result<RateRun> {
    let requests = events.len();
    let period = Duration::from_secs_f64(1.0 / rate);
    let cpu_before = api.cpu_time();
    let start = Instant::now() + Duration::from_millis(20);
    let sends: Vec<_> = events
        .into_iter()
        .enumerate()
        .map(|(i, event)| {
            let scheduled = start + period.mul_f64(i as f64);
            let api = api.clone();
            tokio::spawn(async move {
                tokio::time::sleep_until(scheduled.into()).await;
                (scheduled, api.invoke(event).await)
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(requests);
    let mut service = Vec::with_capacity(requests);
    let mut errors = 0;
    let mut last_answer = start;
    for send in sends {
        let (scheduled, invocation) = send.await?;
        let Ok(invocation) = invocation else {
            errors += 1;
            continue;
        };
        if invocation.failed || status_code(&invocation.body) != expected_status {
            errors += 1;
        }
        latencies.push(invocation.answered_at - scheduled);
        service.push(invocation.service_time());
        last_answer = last_answer.max(invocation.answered_at);
    }
    let cpu = api.cpu_time().saturating_sub(cpu_before);
    Ok(RateRun {
        rate_per_s: rate,
        requests,
        cpu_ms_per_request: millis(cpu) / requests.max(1) as f64,
        errors,
        achieved_per_s: requests as f64 / (last_answer - start).as_secs_f64().max(1e-9),
        latency: Distribution::of(latencies),
        service: Distribution::of(service),
    })
}

/// The function's events, each a new message or form from one of many customers.
struct Events {
    function: &'static str,
    template: serde_json::Value,
    next: AtomicU64,
}

/// How many distinct customers the requests cycle through.
const CUSTOMERS: u64 = 2_000;

impl Events {
    fn new(function: &'static str) -> Events {
        let fixture_path = if function == WHATSAPP_INBOUND {
            "functions/whatsapp-inbound/tests/fixtures/post-whatsapp.json"
        } else {
            "functions/form-intake/tests/fixtures/post_json_bearer.json"
        };
        Events {
            function,
            template: fixture(fixture_path).expect("the functions' fixtures are readable"),
            next: AtomicU64::new(0),
        }
    }

    /// The next `n` events, made (and signed) ahead of the run so that making them is not timed.
    fn take(&self, n: usize) -> Vec<Bytes> {
        (0..n)
            .map(|_| self.next.fetch_add(1, Ordering::Relaxed))
            .map(|i| self.event(i))
            .collect()
    }

    fn event(&self, i: u64) -> Bytes {
        let mut event = self.template.clone();
        let customer = i % CUSTOMERS;
        let body = if self.function == WHATSAPP_INBOUND {
            let body = text_delivery(&[TextMessage {
                // Mexican mobiles in WhatsApp's 521 form.
                wa_id: format!("52181{:08}", 30_000_000 + customer),
                wamid: format!("wamid.BENCH{i:012}"),
                timestamp: chrono::Utc::now().timestamp(),
                text: "Hola, ¿me pueden cotizar un seguro de auto?".into(),
            }]);
            event["headers"][SIGNATURE_HEADER] = json!(signature(body.as_bytes(), APP_SECRET));
            body
        } else {
            event["headers"]["authorization"] = json!(format!("Bearer {FORM_SECRET}"));
            json!({
                "name": format!("Cliente {customer}"),
                "phone": format!("81 {:08}", 40_000_000 + customer),
                "consent": true,
                "producto": "seguro de auto",
                "intento": i,
            })
            .to_string()
        };
        event["headers"]["content-length"] = json!(body.len().to_string());
        event["body"] = json!(body);
        Bytes::from(event.to_string())
    }
}

/// moto's SendMessage on its own: one at a time, then as many senders as function instances.
async fn moto_share(bench: &Bench) -> Result<MotoShare> {
    let client = bench.moto.sqs_client().await;
    let queue_url = bench.moto.create_fifo_queue("bench-moto-alone").await;
    let sent = Arc::new(AtomicU64::new(0));
    // A job as the functions send it: its own group and deduplication id.
    let send = {
        let queue_url = queue_url.clone();
        move || {
            let n = sent.fetch_add(1, Ordering::Relaxed);
            client
                .send_message()
                .queue_url(&queue_url)
                .message_group_id(format!("group-{}", n % CUSTOMERS))
                .message_deduplication_id(format!("dedup-{n}"))
                .message_body(r#"{"job":"take_turn","customer_key":"528130000000"}"#)
                .send()
        }
    };
    // moto imports and sets up on its first requests: not timed.
    for _ in 0..20 {
        send().await?;
    }
    // As many as the functions' lowest-rate run sends, on a queue as empty as theirs: moto's
    // sends slow down as its FIFO queue grows.
    empty_moto_queue(bench, &queue_url).await?;
    let mut sequential = Vec::new();
    for _ in 0..if bench.quick() { 50 } else { 100 } {
        let started = Instant::now();
        send().await?;
        sequential.push(started.elapsed());
    }
    empty_moto_queue(bench, &queue_url).await?;
    let window = Duration::from_secs(if bench.quick() { 1 } else { 2 });
    let started = Instant::now();
    let mut senders = tokio::task::JoinSet::new();
    for _ in 0..INSTANCES {
        let send = send.clone();
        senders.spawn(async move {
            let mut sent = 0u64;
            while started.elapsed() < window {
                send().await?;
                sent += 1;
            }
            anyhow::Ok(sent)
        });
    }
    let mut total = 0;
    while let Some(sent) = senders.join_next().await {
        total += sent??;
    }
    Ok(MotoShare {
        sequential: Distribution::of(sequential),
        concurrent_per_s: total as f64 / started.elapsed().as_secs_f64(),
    })
}

/// Drops every message of a moto queue (moto purges at once, and as often as asked).
async fn empty_moto_queue(bench: &Bench, queue_url: &str) -> Result<()> {
    bench
        .moto
        .sqs_client()
        .await
        .purge_queue()
        .queue_url(queue_url)
        .send()
        .await
        .context("purging moto's queue")?;
    Ok(())
}
