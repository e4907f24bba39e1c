//! The worker's own time per turn: the real conversation-worker binary under the runtime API,
//! one SQS event per job, the stand-ins answering at once. A turn's own time is its wall time
//! minus the time the stand-ins spent answering it (measured inside them). The same for a turn
//! of a voice note: the media looked up and downloaded from the Graph stand-in, transcribed by
//! the transcription stand-in (both inside the stand-ins' time), the transcript saved, then the
//! completion and the reply. Then the database
//! round trips per job, counted by a proxy in front of the store in a pass of their own (so the
//! proxy's latency stays out of the timing), and the turns per second of several instances.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde::Serialize;
use serde_json::json;
use shared::domain::{
    CountryId, CustomerKey, CustomerName, FormSubmission, IdempotencyKey, InboundMessage,
    MessageId, OutreachLimits, PhoneNumber,
};
use shared::queue::TurnJob;
use shared::store::{PostgrestStore, SessionStore};

use super::{Bench, CONVERSATION_WORKER, Distribution, INIT_TIMEOUT, peak_rss_mb};
use crate::runtime_api::{Invocation, RuntimeApi};
use sandbox::standin::{Server, lock};

/// Instances for the throughput run.
const THROUGHPUT_INSTANCES: usize = 4;

#[derive(Debug, Serialize)]
pub struct WorkerReport {
    pub customers: usize,
    /// A turn (TakeTurn: claim, Retell completion, WhatsApp read receipt and reply, record).
    pub turn: JobTimes,
    /// A turn of one voice note (TakeTurn: claim, the media's URL and bytes, the transcription,
    /// the transcript saved, then as a text's turn).
    pub voice_turn: JobTimes,
    /// Voice notes the transcription stand-in transcribed, of `voice_turn.wall.count`: fewer
    /// means some turns took another path (the polite reply), and their times are not a
    /// transcription's.
    pub voice_notes_transcribed: usize,
    /// A form's conversation start (StartConversation: chat, opening, template).
    pub start: JobTimes,
    pub db_round_trips: RoundTrips,
    pub throughput: Throughput,
    /// The largest peak RSS (`VmHWM`) of the throughput run's instances, MiB.
    pub peak_rss_mb: f64,
}

#[derive(Debug, Serialize)]
pub struct JobTimes {
    /// Wall time minus the stand-ins' time: the bridge's own.
    pub own: Distribution,
    /// The invocation, from the event handed out to the answer.
    pub wall: Distribution,
    pub standins: Distribution,
    pub standin_requests_per_job: f64,
    /// CPU time of the worker process alone, per job.
    pub cpu_ms_per_job: f64,
    /// Jobs whose answer was not an empty `batchItemFailures`.
    pub failures: usize,
}

#[derive(Debug, Serialize)]
pub struct RoundTrips {
    pub jobs_counted: usize,
    pub per_start: f64,
    pub per_turn: f64,
    /// Per job, by REST path (`rpc/claim_turn`, `chat_sessions`, …).
    pub start_calls: BTreeMap<String, f64>,
    pub turn_calls: BTreeMap<String, f64>,
    /// Time in the store (postrust and PostgreSQL, from the proxy to its answer) per job: the
    /// part of "our own time" that is the database's.
    pub store_per_start: Distribution,
    pub store_per_turn: Distribution,
}

#[derive(Debug, Serialize)]
pub struct Throughput {
    pub instances: usize,
    pub turns: usize,
    pub failures: usize,
    pub seconds: f64,
    pub turns_per_s: f64,
}

pub async fn measure(bench: &Bench) -> Result<WorkerReport> {
    let customers = if bench.quick() { 20 } else { 200 };
    let rounds = if bench.quick() { 1 } else { 5 };
    let world = World::new(bench, 0);

    let function = bench.function(CONVERSATION_WORKER, &bench.stack.rest_url);
    let mut api = RuntimeApi::start(&function, 1).await?;
    api.wait_until_initialized(INIT_TIMEOUT).await?;
    // One job untimed, so that opening the connections (store, Retell, Graph) is not a turn's.
    let warm_up = world.submit_form(customers).await?;
    api.invoke(sqs_event(&warm_up)).await?;
    let mut starts = Timings::default();
    let cpu_before = api.cpu_time();
    for customer in 0..customers {
        let job = world.submit_form(customer).await?;
        starts.add(bench, &api, &job).await?;
    }
    starts.cpu = api.cpu_time().saturating_sub(cpu_before);
    let mut turns = Timings::default();
    let cpu_before = api.cpu_time();
    for _ in 0..rounds {
        for customer in 0..customers {
            let job = world.customer_writes(customer).await?;
            turns.add(bench, &api, &job).await?;
        }
    }
    turns.cpu = api.cpu_time().saturating_sub(cpu_before);
    eprintln!(
        "bench:   {} turns, own time p50 {:.2} ms, p99 {:.2} ms",
        turns.wall.len(),
        turns.own_ms_p(50.0),
        turns.own_ms_p(99.0)
    );
    // A voice note from every customer, once (each is a download and a transcription more).
    let transcribed_before = bench.transcribe.requests().len();
    let mut voice_turns = Timings::default();
    let cpu_before = api.cpu_time();
    for customer in 0..customers {
        let job = world.customer_sends_voice_note(bench, customer).await?;
        voice_turns.add(bench, &api, &job).await?;
    }
    voice_turns.cpu = api.cpu_time().saturating_sub(cpu_before);
    let voice_notes_transcribed = bench.transcribe.requests().len() - transcribed_before;
    drop(api);
    eprintln!(
        "bench:   {} voice-note turns ({voice_notes_transcribed} transcribed), own time p50 {:.2} ms, p99 {:.2} ms",
        voice_turns.wall.len(),
        voice_turns.own_ms_p(50.0),
        voice_turns.own_ms_p(99.0)
    );

    let (throughput, peak_rss) = throughput(bench, &world, customers).await?;
    eprintln!(
        "bench:   {:.0} turns/s on {} instances",
        throughput.turns_per_s, throughput.instances
    );
    let db_round_trips = count_round_trips(bench, if bench.quick() { 5 } else { 20 }).await?;
    Ok(WorkerReport {
        customers,
        turn: turns.report(),
        voice_turn: voice_turns.report(),
        voice_notes_transcribed,
        start: starts.report(),
        db_round_trips,
        throughput,
        peak_rss_mb: peak_rss,
    })
}

/// The customers of one pass, and the jobs the queue would carry for them: forms recorded and
/// messages stored as the ingress functions do, straight into the store.
struct World {
    store: PostgrestStore,
    /// Keeps each pass's customers apart.
    first_customer: u64,
    next_message: std::sync::atomic::AtomicU64,
}

impl World {
    fn new(bench: &Bench, pass: u64) -> World {
        World {
            store: bench.stack.store(),
            first_customer: 50_000_000 + pass * 100_000,
            next_message: Default::default(),
        }
    }

    fn phone(&self, customer: usize) -> Result<PhoneNumber> {
        let number = format!("+52 81 {:08}", self.first_customer + customer as u64);
        PhoneNumber::parse(&number, CountryId::MX).with_context(|| format!("parsing {number}"))
    }

    fn customer(&self, customer: usize) -> Result<CustomerKey> {
        Ok(CustomerKey::from_phone(&self.phone(customer)?))
    }

    async fn submit_form(&self, customer: usize) -> Result<TurnJob> {
        let phone = self.phone(customer)?;
        let customer_key = CustomerKey::from_phone(&phone);
        let submission = FormSubmission {
            idempotency_key: IdempotencyKey::parse(format!("bench-form-{customer_key}"))?,
            customer_key: customer_key.clone(),
            phone,
            name: CustomerName::parse(&format!("Cliente {customer}"))?,
            fields: BTreeMap::from([("producto".to_owned(), "seguro de auto".to_owned())]),
        };
        let recorded = self
            .store
            // The engine's cost is measured here, not the outreach rules: no cooldown, no limit.
            .record_form_submission(
                &submission,
                OutreachLimits {
                    cooldown: Duration::ZERO,
                    daily_limit: u32::MAX,
                },
            )
            .await?;
        Ok(TurnJob::StartConversation {
            customer_key,
            submission_id: recorded.submission_id,
        })
    }

    async fn customer_writes(&self, customer: usize) -> Result<TurnJob> {
        let customer_key = self.customer(customer)?;
        let n = self
            .next_message
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let message = InboundMessage {
            wamid: MessageId::parse(format!("wamid.BENCHTURN.{customer_key}.{n}"))?,
            customer_key: customer_key.clone(),
            message_type: "text".into(),
            body: Some(format!("¿Y cuánto cuesta la cobertura amplia? ({n})")),
            payload: None,
            sent_at: Utc::now(),
            wa_id: Some(format!("521{}", &customer_key.as_str()[2..])),
            whatsapp_user_id: None,
            profile_name: Some("Cliente".into()),
        };
        // The path production takes: the webhook records a delivery with record_webhook.
        self.store.record_webhook(&[message], &[], &[], &[]).await?;
        Ok(TurnJob::TakeTurn { customer_key })
    }

    /// A voice note (the sandbox's fixture) as Meta delivers it: its media held by the Graph
    /// stand-in, the message recorded with its `audio` object.
    async fn customer_sends_voice_note(&self, bench: &Bench, customer: usize) -> Result<TurnJob> {
        let customer_key = self.customer(customer)?;
        let n = self
            .next_message
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let media_id = bench.graph.add_media(
            sandbox::VOICE_NOTE_OGG.to_vec(),
            sandbox::transcribe_standin::VOICE_NOTE_MIME_TYPE,
        );
        let wamid = format!("wamid.BENCHVOICE.{customer_key}.{n}");
        let wa_id = format!("521{}", &customer_key.as_str()[2..]);
        let sent_at = Utc::now();
        let payload = json!({
            "from": wa_id, "id": wamid, "timestamp": sent_at.timestamp().to_string(),
            "type": "audio",
            "audio": { "mime_type": sandbox::transcribe_standin::VOICE_NOTE_MIME_TYPE,
                       "sha256": "bench", "id": media_id, "voice": true },
        });
        let message = InboundMessage {
            wamid: MessageId::parse(wamid)?,
            customer_key: customer_key.clone(),
            message_type: "audio".into(),
            body: None,
            payload: Some(payload),
            sent_at,
            wa_id: Some(wa_id),
            whatsapp_user_id: None,
            profile_name: Some("Cliente".into()),
        };
        self.store.record_webhook(&[message], &[], &[], &[]).await?;
        Ok(TurnJob::TakeTurn { customer_key })
    }
}

/// Per job: the invocation's wall time and the stand-ins' share of it.
#[derive(Default)]
struct Timings {
    wall: Vec<Duration>,
    standins: Vec<Duration>,
    standin_requests: u64,
    failures: usize,
    /// The worker process's CPU time over all the jobs.
    cpu: Duration,
}

impl Timings {
    /// Runs `job` alone and times it.
    async fn add(&mut self, bench: &Bench, api: &RuntimeApi, job: &TurnJob) -> Result<()> {
        let before = standin_time(bench);
        let invocation = api.invoke(sqs_event(job)).await?;
        let after = standin_time(bench);
        if !batch_succeeded(&invocation) {
            self.failures += 1;
        }
        self.wall.push(invocation.service_time());
        self.standins.push(after.0 - before.0);
        self.standin_requests += after.1 - before.1;
        Ok(())
    }

    fn own(&self) -> impl Iterator<Item = Duration> + '_ {
        self.wall
            .iter()
            .zip(&self.standins)
            .map(|(wall, standins)| wall.saturating_sub(*standins))
    }

    fn own_ms_p(&self, p: f64) -> f64 {
        let own = Distribution::of(self.own());
        super::percentile(&own.samples_ms, p)
    }

    fn report(&self) -> JobTimes {
        JobTimes {
            own: Distribution::of(self.own()),
            wall: Distribution::of(self.wall.iter().copied()),
            standins: Distribution::of(self.standins.iter().copied()),
            standin_requests_per_job: self.standin_requests as f64 / self.wall.len().max(1) as f64,
            cpu_ms_per_job: super::millis(self.cpu) / self.wall.len().max(1) as f64,
            failures: self.failures,
        }
    }
}

/// The stand-ins' time answering so far (Retell, Graph with its media, the transcription), and
/// their requests.
fn standin_time(bench: &Bench) -> (Duration, u64) {
    let (retell, retell_requests) = bench.retell.service_time();
    let (graph, graph_requests) = bench.graph.service_time();
    let (transcribe, transcribe_requests) = bench.transcribe.service_time();
    (
        retell + graph + transcribe,
        retell_requests + graph_requests + transcribe_requests,
    )
}

/// Lambda's event for one message of the FIFO queue of turns.
fn sqs_event(job: &TurnJob) -> Bytes {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let now_ms = Utc::now().timestamp_millis().to_string();
    let body = serde_json::to_string(job).expect("a job serializes");
    Bytes::from(
        json!({ "Records": [{
            "messageId": format!("bench-{n:08}"),
            "receiptHandle": format!("AQEBbench{n}"),
            "body": body,
            "attributes": {
                "ApproximateReceiveCount": "1",
                "SentTimestamp": now_ms,
                "SequenceNumber": format!("188494964604676{n:05}"),
                "MessageGroupId": job.customer_key().as_str(),
                "SenderId": "AIDAIENQZJOLO23YVJ4VO",
                "MessageDeduplicationId": format!("bench-{n}"),
                "ApproximateFirstReceiveTimestamp": now_ms,
            },
            "messageAttributes": {},
            "md5OfBody": "e4e68fb7bd0e697a0ae8f1bb342846b3",
            "eventSource": "aws:sqs",
            "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:turns.fifo",
            "awsRegion": "us-east-1",
        }]})
        .to_string(),
    )
}

/// Whether the worker answered with no record to retry.
fn batch_succeeded(invocation: &Invocation) -> bool {
    !invocation.failed
        && serde_json::from_slice::<serde_json::Value>(&invocation.body)
            .ok()
            .and_then(|answer| answer["batchItemFailures"].as_array().map(Vec::is_empty))
            .unwrap_or(false)
}

/// Several instances taking turns for different customers at once (each customer one turn at a
/// time, as their FIFO group allows), as fast as they go.
async fn throughput(bench: &Bench, world: &World, customers: usize) -> Result<(Throughput, f64)> {
    let rounds = if bench.quick() { 1 } else { 5 };
    let function = bench.function(CONVERSATION_WORKER, &bench.stack.rest_url);
    let mut api = RuntimeApi::start(&function, THROUGHPUT_INSTANCES).await?;
    api.wait_until_initialized(INIT_TIMEOUT).await?;
    let api = Arc::new(api);
    let mut busy = Duration::ZERO;
    let mut turns = 0;
    let mut failures = 0;
    for _ in 0..rounds {
        let mut jobs = Vec::with_capacity(customers);
        for customer in 0..customers {
            jobs.push(world.customer_writes(customer).await?);
        }
        let started = Instant::now();
        let invocations: Vec<_> = jobs
            .iter()
            .map(|job| {
                let api = api.clone();
                let event = sqs_event(job);
                tokio::spawn(async move { api.invoke(event).await })
            })
            .collect();
        for invocation in invocations {
            turns += 1;
            match invocation.await? {
                Ok(invocation) if batch_succeeded(&invocation) => {}
                _ => failures += 1,
            }
        }
        busy += started.elapsed();
    }
    let peak_rss = peak_rss_mb(&api.peak_rss());
    Ok((
        Throughput {
            instances: THROUGHPUT_INSTANCES,
            turns,
            failures,
            seconds: busy.as_secs_f64(),
            turns_per_s: turns as f64 / busy.as_secs_f64(),
        },
        peak_rss,
    ))
}

/// Starts and turns of new customers, with the worker's store calls going through a counting
/// proxy.
async fn count_round_trips(bench: &Bench, customers: usize) -> Result<RoundTrips> {
    let proxy = CountingProxy::start(&bench.stack.rest_url)?;
    let function = bench.function(CONVERSATION_WORKER, &proxy.rest_url);
    let mut api = RuntimeApi::start(&function, 1).await?;
    api.wait_until_initialized(INIT_TIMEOUT).await?;
    let world = World::new(bench, 1);
    let (mut start_calls, mut turn_calls) = (BTreeMap::new(), BTreeMap::new());
    let (mut start_store, mut turn_store) = (Vec::new(), Vec::new());
    for customer in 0..customers {
        let job = world.submit_form(customer).await?;
        start_store.push(proxy.count_calls(&api, &job, &mut start_calls).await?);
        let job = world.customer_writes(customer).await?;
        turn_store.push(proxy.count_calls(&api, &job, &mut turn_calls).await?);
    }
    let per_job = |calls: BTreeMap<String, u64>| -> BTreeMap<String, f64> {
        calls
            .into_iter()
            .map(|(call, n)| (call, n as f64 / customers as f64))
            .collect()
    };
    let (start_calls, turn_calls) = (per_job(start_calls), per_job(turn_calls));
    Ok(RoundTrips {
        jobs_counted: customers,
        per_start: start_calls.values().sum(),
        per_turn: turn_calls.values().sum(),
        start_calls,
        turn_calls,
        store_per_start: Distribution::of(start_store),
        store_per_turn: Distribution::of(turn_store),
    })
}

/// A reverse proxy in front of the store's REST API that forwards every request and counts
/// them by path.
struct CountingProxy {
    /// What the function is given as `SUPABASE_REST_URL`.
    rest_url: String,
    forwarded: Arc<Mutex<Forwarded>>,
    _server: Server,
}

/// What the proxy forwarded since it was last reset.
#[derive(Default)]
struct Forwarded {
    /// Requests by REST path.
    calls: BTreeMap<String, u64>,
    /// From sending each request upstream to having its whole answer, summed.
    upstream_time: Duration,
}

struct ProxyState {
    upstream: String,
    /// The REST base path (`/api`), left out of the counted names.
    base_path: String,
    http: reqwest::Client,
    forwarded: Arc<Mutex<Forwarded>>,
}

impl CountingProxy {
    fn start(rest_url: &str) -> Result<CountingProxy> {
        let url = url::Url::parse(rest_url).context("parsing the REST URL")?;
        let upstream = url.origin().ascii_serialization();
        let base_path = url.path().trim_end_matches('/').to_owned();
        let forwarded = Arc::new(Mutex::new(Forwarded::default()));
        let state = Arc::new(ProxyState {
            upstream,
            base_path: base_path.clone(),
            http: reqwest::Client::new(),
            forwarded: forwarded.clone(),
        });
        let server = Server::start(Router::new().fallback(forward).with_state(state));
        Ok(CountingProxy {
            rest_url: format!("{}{base_path}", server.url()),
            forwarded,
            _server: server,
        })
    }

    /// Runs `job` alone, adds the store calls it made to `into` and returns the time the store
    /// took to answer them.
    async fn count_calls(
        &self,
        api: &RuntimeApi,
        job: &TurnJob,
        into: &mut BTreeMap<String, u64>,
    ) -> Result<Duration> {
        *lock(&self.forwarded) = Forwarded::default();
        let invocation = api.invoke(sqs_event(job)).await?;
        ensure!(
            batch_succeeded(&invocation),
            "the worker failed a job while counting: {}",
            String::from_utf8_lossy(&invocation.body)
        );
        let forwarded = lock(&self.forwarded);
        for (call, n) in &forwarded.calls {
            *into.entry(call.clone()).or_default() += n;
        }
        Ok(forwarded.upstream_time)
    }
}

async fn forward(
    State(proxy): State<Arc<ProxyState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let call = uri
        .path()
        .strip_prefix(&proxy.base_path)
        .unwrap_or(uri.path())
        .trim_start_matches('/')
        .to_owned();
    *lock(&proxy.forwarded).calls.entry(call).or_default() += 1;
    let started = Instant::now();

    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let method = reqwest::Method::from_bytes(method.as_str().as_bytes()).expect("an HTTP method");
    let mut request = proxy
        .http
        .request(method, format!("{}{path}", proxy.upstream));
    for (name, value) in &headers {
        if !matches!(name.as_str(), "host" | "connection" | "content-length") {
            request = request.header(name.as_str(), value.as_bytes());
        }
    }
    let answer = match request.body(body.to_vec()).send().await {
        Ok(answer) => answer,
        Err(error) => return (StatusCode::BAD_GATEWAY, error.to_string()).into_response(),
    };
    let status = StatusCode::from_u16(answer.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut response_headers = HeaderMap::new();
    for (name, value) in answer.headers() {
        if matches!(
            name.as_str(),
            "connection" | "content-length" | "transfer-encoding"
        ) {
            continue;
        }
        if let (Ok(name), Ok(value)) = (
            axum::http::HeaderName::from_bytes(name.as_str().as_bytes()),
            axum::http::HeaderValue::from_bytes(value.as_bytes()),
        ) {
            response_headers.append(name, value);
        }
    }
    let body = answer.bytes().await.unwrap_or_default();
    lock(&proxy.forwarded).upstream_time += started.elapsed();
    (status, response_headers, body.to_vec()).into_response()
}
