//! The chaos run (`make chaos`, and short ones in `make test`): many customers writing at once
//! through the real webhook and form endpoints, the store on a local stack behind a proxy that
//! can take it down, the engine behind the in-process turn queue with the production retry
//! schedule and the sweeper every second, while WhatsApp delivers twice and out of order,
//! Retell and the Graph API fail at random, workers are killed at any moment of a turn, and for
//! a while in the middle of the run the store is down, the queue refuses sends, WhatsApp
//! rejects the token (190) and Retell answers 402. At the end the database and the stand-ins'
//! records are checked: every message answered once, in order, each form started with one
//! template, nothing sent twice that a fault does not explain, no dead letters; and the report
//! says how long customers waited, and how long the bridge took to catch up after each outage.

mod check;
mod faults;
mod report;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use http::StatusCode;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use serde_json::json;
use shared::config::{EngineConfig, Env, FormConfig, RetellConfig, WhatsAppConfig, WorkerConfig};
use shared::domain::{AllowedFields, ChatStatus, CountryId};
use shared::ingress::form::FormIntake;
use shared::ingress::whatsapp::WhatsAppWebhook;
use shared::queue::{InProcessQueue, InProcessSettings};
use shared::retry::RetrySchedule;
use shared::store::PostgrestStore;
use shared::whatsapp::webhook::SIGNATURE_HEADER;

use sandbox::meta_webhook::{TextMessage, signature, text_delivery};
use sandbox::retell_standin::StandInChat;
use sandbox::{GraphFault, GraphStandIn, LocalStack, OutageProxy, RetellFault, RetellStandIn};

use faults::{KillingWorker, RefusingQueue};
pub use report::{
    ChaosReport, FormsReport, KillMoments, Latency, Resent, SweeperReport, Violations, Volume,
    WindowReport,
};

/// Something the run takes away for a while.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutageKind {
    /// Every store request (webhook, form, worker, sweeper) answered 503.
    Store,
    /// The turn queue refuses every send.
    Queue,
    /// Graph answers every request with code 190 (HTTP 401): the access token expired.
    WhatsAppToken,
    /// Retell answers every request 402: the account's credit ran out.
    RetellPayment,
}

impl fmt::Display for OutageKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Store => "store down (503)",
            Self::Queue => "queue refusing sends",
            Self::WhatsAppToken => "WhatsApp token rejected (190)",
            Self::RetellPayment => "Retell answering 402",
        })
    }
}

/// One outage of the plan, timed from the run's start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outage {
    pub kind: OutageKind,
    pub start: Duration,
    pub length: Duration,
}

impl Outage {
    /// The four outages, `length` each, one after the other from `first` with `gap` between.
    pub fn each_in_turn(first: Duration, length: Duration, gap: Duration) -> Vec<Outage> {
        [
            OutageKind::Store,
            OutageKind::Queue,
            OutageKind::WhatsAppToken,
            OutageKind::RetellPayment,
        ]
        .into_iter()
        .enumerate()
        .map(|(i, kind)| Outage {
            kind,
            start: first + (length + gap) * i as u32,
            length,
        })
        .collect()
    }
}

/// What the run does, and how hard.
#[derive(Debug, Clone)]
pub struct ChaosPlan {
    pub customers: usize,
    /// Customers who arrive together in the first two seconds; the others arrive one by one
    /// over `arrival`.
    pub rush: usize,
    pub arrival: Duration,
    /// Messages each customer writes, in bursts of 3–5 within a second.
    pub messages_per_customer: usize,
    /// Share of messages (and of forms) WhatsApp (the browser) delivers a second time, later.
    pub duplicate_rate: f64,
    /// Share of messages WhatsApp delivers only after the customer's next ones (1–4 s late).
    pub late_rate: f64,
    /// Share of customers who start with the web form before they write.
    pub form_rate: f64,
    /// Share of form clients that give up after their first 5xx; the others try again for as
    /// long as Meta does.
    pub form_give_up_rate: f64,
    /// Share of Retell requests that fail: 429, 500, or an answer after the client gave up.
    pub retell_failure_rate: f64,
    /// Share of Graph requests that fail: 130429, 131000, or (with `slow_graph_answers`) a send
    /// taken but answered after the client gave up.
    pub graph_failure_rate: f64,
    pub slow_graph_answers: bool,
    /// Share of receives whose worker is killed, at a moment drawn over the whole turn (a job's
    /// first and second receives only).
    pub kill_rate: f64,
    /// Share of customers whose chat Retell ends between two of their bursts.
    pub chat_end_rate: f64,
    /// The store, the queue, Graph and Retell taken away in turn, in the middle of the run.
    pub outages: Vec<Outage>,
    /// How long the run may take before what is unfinished counts as lost.
    pub deadline: Duration,
}

impl ChaosPlan {
    /// `make chaos`: 200 customers, thousands of deliveries, four outages of 20 s.
    pub fn full() -> Self {
        Self {
            customers: 200,
            rush: 60,
            arrival: Duration::from_secs(150),
            messages_per_customer: 12,
            duplicate_rate: 0.3,
            late_rate: 0.1,
            form_rate: 0.5,
            form_give_up_rate: 0.5,
            retell_failure_rate: 0.1,
            graph_failure_rate: 0.1,
            slow_graph_answers: true,
            kill_rate: 0.1,
            chat_end_rate: 0.1,
            outages: Outage::each_in_turn(
                Duration::from_secs(25),
                Duration::from_secs(20),
                Duration::from_secs(10),
            ),
            deadline: Duration::from_secs(330),
        }
    }

    /// The run inside `make test`: the same faults, fewer customers, outages of 5 s.
    pub fn short() -> Self {
        Self {
            customers: 24,
            rush: 8,
            arrival: Duration::from_secs(26),
            messages_per_customer: 8,
            // Fewer jobs: more of them killed, so that kills fall in every part of a turn.
            kill_rate: 0.2,
            outages: Outage::each_in_turn(
                Duration::from_secs(5),
                Duration::from_secs(5),
                Duration::from_secs(3),
            ),
            deadline: Duration::from_secs(85),
            ..Self::full()
        }
    }

    /// The short run without kills, late Graph answers or outages: nothing may be sent twice.
    pub fn calm() -> Self {
        Self {
            kill_rate: 0.0,
            slow_graph_answers: false,
            outages: Vec::new(),
            deadline: Duration::from_secs(70),
            ..Self::short()
        }
    }
}

/// The client timeouts of the run: a slow answer from a stand-in outlasts them.
const CLIENT_TIMEOUT: Duration = Duration::from_millis(600);
const SLOW_ANSWER: Duration = Duration::from_millis(900);
const FORM_SECRET: &str = "chaos-form-secret-of-32-characters";
/// How long Meta (and a patient form client) keeps delivering: far less than Meta's days, far
/// more than any outage of the run.
const CLIENT_RETRIES_FOR: Duration = Duration::from_secs(120);
const FIRST_RETRY: Duration = Duration::from_millis(500);
const LONGEST_RETRY: Duration = Duration::from_secs(8);
/// The sweeper of the run: every second, for work stranded longer than this.
const SWEEP_EVERY: Duration = Duration::from_secs(1);
const SWEEP_GRACE: Duration = Duration::from_secs(3);
/// A killed turn holds its customer until its lease runs out: keep it short.
const TURN_LEASE_SECONDS: &str = "2";
/// What a worker invocation may take (the Lambda's timeout is 180 s; the run's turns are short).
const INVOCATION_TIMEOUT: Duration = Duration::from_secs(30);
/// The production redrive policy's `maxReceiveCount` and `TURN_MAX_ATTEMPTS`.
const MAX_RECEIVES: u32 = 5;

type ChaosQueue = RefusingQueue<InProcessQueue<KillingWorker>>;

struct World {
    started: Instant,
    retell: RetellStandIn,
    graph: GraphStandIn,
    store_proxy: OutageProxy,
    webhook: WhatsAppWebhook<PostgrestStore, ChaosQueue>,
    form: FormIntake<PostgrestStore, ChaosQueue>,
    queue: ChaosQueue,
    sweep_store: PostgrestStore,
    app_secret: String,
    deliveries: AtomicUsize,
    duplicate_deliveries: AtomicUsize,
    late_deliveries: AtomicUsize,
    form_posts: AtomicUsize,
    /// Each wamid's first delivery attempt.
    first_attempts: Mutex<HashMap<String, Instant>>,
    /// The wamids the webhook acknowledged with a 200 (Meta will not send them again), with
    /// when it first did.
    delivered: Mutex<HashMap<String, Instant>>,
    /// The wamids the webhook refused for as long as Meta's retries of the run last.
    not_taken: Mutex<HashSet<String>>,
    /// Each form customer's client, by customer key.
    forms: Mutex<HashMap<String, FormClient>>,
    chats_ended: Mutex<HashMap<String, usize>>,
    windows: Mutex<Vec<WindowReport>>,
    /// Each window as it happened: kind, start, end.
    window_times: Mutex<Vec<(OutageKind, Instant, Instant)>>,
    sweeper: Mutex<SweeperReport>,
    /// When the random faults and the kills stopped (the customers were done).
    faults_ended: Mutex<Option<Instant>>,
}

/// What a customer's form client saw.
#[derive(Debug, Clone)]
struct FormClient {
    first_attempt: Instant,
    /// Answered 202 at least once.
    accepted: bool,
    /// Gave up after a 5xx without ever getting a 202.
    abandoned: bool,
}

/// A customer of the run: a Mexican mobile, in the form's and WhatsApp's spellings.
#[derive(Debug, Clone)]
struct Customer {
    index: usize,
    /// The folded key (`52` + 10 digits).
    key: String,
    /// `521` + 10 digits, as WhatsApp sends it.
    wa_id: String,
    /// `+52 …`, as typed on the form.
    phone: String,
}

impl Customer {
    fn new(run: usize, index: usize) -> Self {
        // Monterrey (81) numbers, unique to this run: 4 digits of run, 4 of customer.
        let local = format!("{:04}{:04}", run % 10_000, index);
        Self {
            index,
            key: format!("5281{local}"),
            wa_id: format!("52181{local}"),
            phone: format!("+52 81 {local}"),
        }
    }

    /// The token that names message `n` of this customer in every text that carries it.
    fn token(&self, n: usize) -> String {
        format!("[c{}m{}]", self.index, n)
    }

    fn wamid(&self, n: usize) -> String {
        format!("wamid.chaos.{}.{n}", self.key)
    }

    /// Graph's `to` for this customer.
    fn recipient(&self) -> String {
        format!("+{}", self.key)
    }
}

/// Runs the plan against `stack` and reports; the stack's tables keep what the run wrote.
///
/// The run's sweeper sweeps the whole database: give the run a stack of its own.
pub async fn run(plan: &ChaosPlan, stack: &LocalStack) -> Result<ChaosReport> {
    let world = Arc::new(assemble(plan, stack)?);
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    let run_id = std::process::id() as usize * 31 + RUNS.fetch_add(1, Ordering::Relaxed);
    let customers: Vec<Customer> = (0..plan.customers)
        .map(|i| Customer::new(run_id, i))
        .collect();

    let sweeper = AbortOnDrop(tokio::spawn(sweep(Arc::clone(&world))));
    let outages: Vec<_> = plan
        .outages
        .iter()
        .map(|outage| tokio::spawn(take_away(Arc::clone(&world), *outage)))
        .collect();
    let mut tasks = Vec::new();
    for customer in &customers {
        let world = Arc::clone(&world);
        let plan = plan.clone();
        let customer = customer.clone();
        let arrives = if customer.index < plan.rush {
            Duration::from_millis(fastrand::u64(0..2_000))
        } else {
            plan.arrival.mul_f64(fastrand::f64())
        };
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(arrives).await;
            customer_writes(&world, &plan, &customer).await
        }));
    }
    for task in tasks {
        task.await.context("a customer's task panicked")??;
    }
    for outage in outages {
        outage.await.context("an outage's task panicked")?;
    }
    // The customers are done and so are the faults: what is left must drain.
    world.retell.fail_at_random(0.0, Vec::new());
    world.graph.fail_at_random(0.0, Vec::new());
    world.queue.inner().handler().spare();
    *lock(&world.faults_ended) = Some(Instant::now());
    let keys: Vec<&str> = customers.iter().map(|c| c.key.as_str()).collect();
    let deadline = world.started + plan.deadline;
    check::settle(&world, stack, &keys, deadline).await?;
    drop(sweeper);

    check::check(&world, stack, &customers).await
}

fn assemble(plan: &ChaosPlan, stack: &LocalStack) -> Result<World> {
    let retell = RetellStandIn::start();
    retell.label_replies();
    retell.fail_at_random(
        plan.retell_failure_rate,
        vec![
            RetellFault::RateLimited { retry_after_ms: 5 },
            RetellFault::ServerError,
            RetellFault::SlowAnswer(SLOW_ANSWER),
        ],
    );
    let graph = GraphStandIn::start();
    let mut graph_faults = vec![GraphFault::Code(130_429), GraphFault::Code(131_000)];
    if plan.slow_graph_answers {
        graph_faults.push(GraphFault::SlowAnswer(SLOW_ANSWER));
    }
    graph.fail_at_random(plan.graph_failure_rate, graph_faults);
    let retell_config = RetellConfig {
        request_timeout: CLIENT_TIMEOUT,
        completion_timeout: CLIENT_TIMEOUT,
        ..retell.config()
    };
    let whatsapp = WhatsAppConfig {
        request_timeout: CLIENT_TIMEOUT,
        ..graph.config()
    };
    // Every store of the run goes through the proxy that takes it down.
    let store_proxy = OutageProxy::start(&stack.rest_url)?;
    let store_config = shared::config::StoreConfig {
        rest_url: store_proxy.url(),
        ..stack.store_config(&stack.service_role_key)
    };
    let new_store = || PostgrestStore::new(&store_config, shared::http::client());
    let max_receives = MAX_RECEIVES.to_string();
    let engine_config = EngineConfig::from_env(&Env::from_pairs([
        ("TURN_LEASE_SECONDS", TURN_LEASE_SECONDS),
        ("TURN_MAX_ATTEMPTS", max_receives.as_str()),
    ]))?;
    let engine = sandbox::standin_engine(&WorkerConfig {
        engine: engine_config,
        store: store_config.clone(),
        ..sandbox::worker_config(stack, retell_config, whatsapp.clone())
    });
    let queue = RefusingQueue::new(InProcessQueue::new(
        Arc::new(KillingWorker::new(engine, plan.kill_rate)),
        InProcessSettings {
            schedule: RetrySchedule::default(),
            max_receives: MAX_RECEIVES,
            deduplication_window: Duration::from_secs(5 * 60),
            invocation_timeout: INVOCATION_TIMEOUT,
        },
    ));
    let webhook_config = graph.webhook_config();
    let app_secret = secrecy::ExposeSecret::expose_secret(&webhook_config.app_secret).to_owned();
    Ok(World {
        started: Instant::now(),
        webhook: WhatsAppWebhook::new(new_store(), queue.clone(), &webhook_config),
        form: FormIntake::new(
            new_store(),
            queue.clone(),
            FormConfig {
                shared_secret: FORM_SECRET.to_owned().into(),
                default_country: CountryId::MX,
                fields: AllowedFields::parse("producto").expect("a field name"),
                max_body_bytes: FormConfig::DEFAULT_MAX_BODY_BYTES,
                outreach_cooldown: FormConfig::DEFAULT_OUTREACH_COOLDOWN,
                outreach_daily_limit: FormConfig::DEFAULT_OUTREACH_DAILY_LIMIT,
            },
        ),
        sweep_store: new_store(),
        queue,
        store_proxy,
        retell,
        graph,
        app_secret,
        deliveries: AtomicUsize::new(0),
        duplicate_deliveries: AtomicUsize::new(0),
        late_deliveries: AtomicUsize::new(0),
        form_posts: AtomicUsize::new(0),
        first_attempts: Mutex::new(HashMap::new()),
        delivered: Mutex::new(HashMap::new()),
        not_taken: Mutex::new(HashSet::new()),
        forms: Mutex::new(HashMap::new()),
        chats_ended: Mutex::new(HashMap::new()),
        windows: Mutex::new(Vec::new()),
        window_times: Mutex::new(Vec::new()),
        sweeper: Mutex::new(SweeperReport::default()),
        faults_ended: Mutex::new(None),
    })
}

/// A background task of the run, stopped when the run ends, however it ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The sweeper, as the scheduled rule runs it in AWS (every minute there, every second here).
async fn sweep(world: Arc<World>) {
    loop {
        tokio::time::sleep(SWEEP_EVERY).await;
        let outcome =
            shared::sweep::requeue_stranded_work(&world.sweep_store, &world.queue, SWEEP_GRACE)
                .await;
        let mut report = lock(&world.sweeper);
        report.runs += 1;
        match outcome {
            Ok(swept) => {
                report.turns += swept.turns;
                report.submissions += swept.submissions;
                report.gave_up += swept.gave_up;
                if swept.not_queued > 0 {
                    report.failed_runs += 1;
                }
            }
            Err(_) => report.failed_runs += 1,
        }
    }
}

/// Takes away what `outage` names for its length, at its time, and records the window.
async fn take_away(world: Arc<World>, outage: Outage) {
    tokio::time::sleep_until((world.started + outage.start).into()).await;
    let refused = |world: &World| match outage.kind {
        OutageKind::Store => world.store_proxy.refused(),
        OutageKind::Queue => world.queue.refused(),
        OutageKind::WhatsAppToken => world.graph.request_count(),
        // Retell's requests are counted from its records below.
        OutageKind::RetellPayment => 0,
    };
    let before = refused(&world);
    let start = Instant::now();
    let end = match outage.kind {
        OutageKind::Store => world.store_proxy.fail_for(outage.length),
        OutageKind::Queue => world.queue.outage().fail_for(outage.length),
        OutageKind::WhatsAppToken => world.graph.fail_for(outage.length, GraphFault::Code(190)),
        OutageKind::RetellPayment => world
            .retell
            .fail_for(outage.length, RetellFault::PaymentRequired),
    };
    tokio::time::sleep_until(end.into()).await;
    let refused = match outage.kind {
        OutageKind::RetellPayment => check::retell_requests(&world.retell)
            .iter()
            .filter(|r| r.status == 402)
            .count(),
        _ => refused(&world) - before,
    };
    lock(&world.window_times).push((outage.kind, start, end));
    lock(&world.windows).push(WindowReport {
        kind: outage.kind,
        from: start - world.started,
        to: end - world.started,
        refused,
        caught_up_after: None,
    });
}

/// One customer: maybe the form (sometimes twice), then bursts of 3–5 messages within a second,
/// each burst delivered in shuffled order, some messages only after later ones, some again.
async fn customer_writes(world: &Arc<World>, plan: &ChaosPlan, customer: &Customer) -> Result<()> {
    if fastrand::f64() < plan.form_rate {
        let patient = fastrand::f64() >= plan.form_give_up_rate;
        post_form(world, customer, patient).await?;
        if fastrand::f64() < plan.duplicate_rate {
            post_form(world, customer, patient).await?;
        }
        // The customer answers the template a little later.
        tokio::time::sleep(Duration::from_millis(fastrand::u64(200..1_500))).await;
    }
    let ends_chat_after = (fastrand::f64() < plan.chat_end_rate).then(|| fastrand::usize(1..3));
    let mut later = Vec::new();
    let mut sent = 0;
    let mut burst_number = 0;
    while sent < plan.messages_per_customer {
        let size = fastrand::usize(3..=5).min(plan.messages_per_customer - sent);
        let now = chrono::Utc::now().timestamp();
        let mut burst: Vec<TextMessage> = (sent..sent + size)
            .map(|n| TextMessage {
                wa_id: customer.wa_id.clone(),
                wamid: customer.wamid(n),
                timestamp: now,
                text: format!("hola {}", customer.token(n)),
            })
            .collect();
        sent += size;
        burst_number += 1;
        fastrand::shuffle(&mut burst);
        for message in burst {
            let late = fastrand::f64() < plan.late_rate;
            if late {
                let delay = Duration::from_millis(fastrand::u64(1_000..4_000));
                later.push(deliver_later(world, &message, delay, |w| {
                    &w.late_deliveries
                }));
            }
            if fastrand::f64() < plan.duplicate_rate {
                let delay = Duration::from_millis(fastrand::u64(100..6_000));
                later.push(deliver_later(world, &message, delay, |w| {
                    &w.duplicate_deliveries
                }));
            }
            if !late {
                deliver(world, &message).await?;
            }
            tokio::time::sleep(Duration::from_millis(fastrand::u64(0..200))).await;
        }
        if ends_chat_after == Some(burst_number) {
            // Retell ends the chat (silence, the agent's end tool) while the customer is away.
            tokio::time::sleep(Duration::from_millis(1_500)).await;
            end_current_chat(world, customer);
        }
        tokio::time::sleep(Duration::from_millis(fastrand::u64(500..2_500))).await;
    }
    for delivery in later {
        delivery.await.context("a later delivery panicked")??;
    }
    Ok(())
}

/// Delivers `message` after `delay`, counted where `counter` says (a duplicate, a late one).
fn deliver_later(
    world: &Arc<World>,
    message: &TextMessage,
    delay: Duration,
    counter: fn(&World) -> &AtomicUsize,
) -> tokio::task::JoinHandle<Result<()>> {
    let world = Arc::clone(world);
    let message = message.clone();
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        counter(&world).fetch_add(1, Ordering::Relaxed);
        deliver(&world, &message).await
    })
}

/// The wait before retry `n` (0-based) of a client that backs off as Meta does, with jitter.
fn backoff(n: u32) -> Duration {
    let wait = FIRST_RETRY
        .saturating_mul(2u32.saturating_pow(n))
        .min(LONGEST_RETRY);
    wait.mul_f64(0.75 + 0.5 * fastrand::f64())
}

/// One webhook POST, repeated as Meta does until it gets a 200 (for the run's two minutes).
async fn deliver(world: &World, message: &TextMessage) -> Result<()> {
    let body = text_delivery(std::slice::from_ref(message));
    let signature = signature(body.as_bytes(), &world.app_secret);
    let request = http::Request::post("/whatsapp")
        .header(SIGNATURE_HEADER, signature)
        .body(body)?;
    let first = Instant::now();
    lock(&world.first_attempts)
        .entry(message.wamid.clone())
        .or_insert(first);
    for retry in 0.. {
        world.deliveries.fetch_add(1, Ordering::Relaxed);
        let answer = world.webhook.handle(&request).await;
        if answer.status() == StatusCode::OK {
            lock(&world.delivered)
                .entry(message.wamid.clone())
                .or_insert_with(Instant::now);
            return Ok(());
        }
        anyhow::ensure!(
            answer.status().is_server_error(),
            "the webhook refused {}: {} {}",
            message.wamid,
            answer.status(),
            answer.body()
        );
        if first.elapsed() >= CLIENT_RETRIES_FOR {
            break;
        }
        tokio::time::sleep(backoff(retry)).await;
    }
    lock(&world.not_taken).insert(message.wamid.clone());
    Ok(())
}

/// The form, posted until it is taken; an impatient client gives up after the first 5xx.
async fn post_form(world: &World, customer: &Customer, patient: bool) -> Result<()> {
    let body = json!({ "name": format!("Cliente {}", customer.index), "phone": customer.phone,
                       "consent": true, "producto": "seguro de auto" })
    .to_string();
    let request = http::Request::post("/form")
        .header(CONTENT_TYPE, "application/json")
        .header(AUTHORIZATION, format!("Bearer {FORM_SECRET}"))
        .body(body)?;
    let first = Instant::now();
    lock(&world.forms)
        .entry(customer.key.clone())
        .or_insert(FormClient {
            first_attempt: first,
            accepted: false,
            abandoned: false,
        });
    for retry in 0.. {
        world.form_posts.fetch_add(1, Ordering::Relaxed);
        let answer = world.form.handle(&request).await;
        if answer.status() == StatusCode::ACCEPTED {
            let mut forms = lock(&world.forms);
            let client = forms.get_mut(&customer.key).expect("recorded above");
            client.accepted = true;
            client.abandoned = false;
            return Ok(());
        }
        anyhow::ensure!(
            answer.status().is_server_error(),
            "the form was refused: {} {}",
            answer.status(),
            answer.body()
        );
        if !patient || first.elapsed() >= CLIENT_RETRIES_FOR {
            break;
        }
        tokio::time::sleep(backoff(retry)).await;
    }
    let mut forms = lock(&world.forms);
    let client = forms.get_mut(&customer.key).expect("recorded above");
    client.abandoned = !client.accepted;
    Ok(())
}

fn end_current_chat(world: &World, customer: &Customer) {
    let ongoing: Vec<String> = world
        .retell
        .chats()
        .into_iter()
        .filter(|chat| chat_customer(chat) == Some(customer.key.as_str()))
        .filter(|chat| chat.status == ChatStatus::Ongoing && !chat.messages.is_empty())
        .map(|chat| chat.chat_id)
        .collect();
    for chat_id in ongoing {
        world.retell.end(&chat_id);
        *lock(&world.chats_ended)
            .entry(customer.key.clone())
            .or_default() += 1;
    }
}

fn chat_customer(chat: &StandInChat) -> Option<&str> {
    chat.metadata.as_ref()?.get("customer_key")?.as_str()
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
