//! The chaos run (`make chaos`, and a short one in `make test`): many customers writing at
//! once through the real webhook and form endpoints, the store on the local stack, the engine
//! behind the in-process turn queue, while WhatsApp delivers twice and out of order, Retell and
//! the Graph API fail, and the worker is killed in the middle of turns. At the end the
//! database and the stand-ins' records are checked: nothing lost, nothing answered twice,
//! replies in order, one chat per customer, every message answered or failed with a reason.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
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
use shared::engine::BridgeEngine;
use shared::ingress::form::FormIntake;
use shared::ingress::whatsapp::WhatsAppWebhook;
use shared::queue::{InProcessQueue, InProcessSettings, JobDisposition, JobHandler, TurnJob};
use shared::store::PostgrestStore;
use shared::whatsapp::webhook::SIGNATURE_HEADER;

use sandbox::graph_standin::AcceptedMessage;
use sandbox::meta_webhook::{TextMessage, signature, text_delivery};
use sandbox::retell_standin::{RetellRequest, StandInChat};
use sandbox::{GraphFault, GraphStandIn, LocalStack, RetellFault, RetellOperation, RetellStandIn};

/// What the run does, and how hard.
#[derive(Debug, Clone)]
pub struct ChaosPlan {
    pub customers: usize,
    /// Messages each customer writes, in bursts of 3–5 within a second.
    pub messages_per_customer: usize,
    /// Share of messages (and of forms) WhatsApp (the browser) delivers a second time, later.
    pub duplicate_rate: f64,
    /// Share of messages WhatsApp delivers only after the customer's next ones (1–4 s late).
    pub late_rate: f64,
    /// Share of customers who start with the web form before they write.
    pub form_rate: f64,
    /// Share of Retell requests that fail: 429, 500, or an answer after the client gave up.
    pub retell_failure_rate: f64,
    /// Share of Graph requests that fail: 130429 or 500.
    pub graph_failure_rate: f64,
    /// Share of jobs whose worker is killed at a random moment of the turn.
    pub kill_rate: f64,
    /// Share of customers whose chat Retell ends between two of their bursts.
    pub chat_end_rate: f64,
    /// How long the run may take before what is unfinished counts as lost.
    pub deadline: Duration,
}

impl ChaosPlan {
    /// `make chaos`: 200 customers, thousands of deliveries, within 5 minutes.
    pub fn full() -> Self {
        Self {
            customers: 200,
            messages_per_customer: 12,
            duplicate_rate: 0.3,
            late_rate: 0.1,
            form_rate: 0.5,
            retell_failure_rate: 0.1,
            graph_failure_rate: 0.1,
            kill_rate: 0.1,
            chat_end_rate: 0.1,
            deadline: Duration::from_secs(270),
        }
    }

    /// The run inside `make test`: the same faults, fewer customers.
    pub fn short() -> Self {
        Self {
            customers: 24,
            messages_per_customer: 8,
            deadline: Duration::from_secs(50),
            ..Self::full()
        }
    }
}

/// How much happened.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Volume {
    pub customers: usize,
    pub messages: usize,
    /// Webhook POSTs made, duplicates and retries after a non-200 included.
    pub deliveries: usize,
    pub duplicate_deliveries: usize,
    /// Messages first delivered after later ones.
    pub late_deliveries: usize,
    pub forms: usize,
    /// Form POSTs, double submits included.
    pub form_posts: usize,
    pub jobs_run: usize,
    pub workers_killed: usize,
    pub chats_ended_by_retell: usize,
    pub retell_requests: usize,
    pub retell_failures: usize,
    pub graph_requests: usize,
    pub graph_failures: usize,
    /// Text replies WhatsApp accepted.
    pub replies: usize,
    pub seconds: f64,
}

/// What must be zero.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Violations {
    /// Delivered messages not stored, still waiting at the end, or marked answered with no
    /// reply carrying them.
    pub lost: usize,
    /// Messages the agent was given more than once, or that more than one reply answered.
    pub answered_twice: usize,
    /// Replies that reached a customer after a reply to a later turn.
    pub replies_out_of_order: usize,
    /// Chats carrying a customer's conversation beyond one (plus one for each chat Retell ended).
    pub extra_chats: usize,
    /// Forms whose conversation neither started nor failed with a reason.
    pub forms_unfinished: usize,
    /// Jobs the queue gave up on.
    pub dead_letters: usize,
}

impl Violations {
    /// Each count with what it counts.
    pub fn counts(&self) -> [(&'static str, usize); 6] {
        [
            ("inbound messages lost", self.lost),
            ("inbound messages answered twice", self.answered_twice),
            ("replies out of order", self.replies_out_of_order),
            ("conversation chats beyond one", self.extra_chats),
            ("forms neither started nor failed", self.forms_unfinished),
            ("jobs dead-lettered", self.dead_letters),
        ]
    }

    pub fn total(&self) -> usize {
        self.counts().iter().map(|(_, count)| count).sum()
    }
}

#[derive(Debug, Clone, Default)]
pub struct ChaosReport {
    pub volume: Volume,
    pub violations: Violations,
    /// Messages answered by the agent.
    pub answered: usize,
    /// Reply parts WhatsApp accepted twice. Graph's send has no idempotency key: a worker
    /// killed after Graph took a part and before the store recorded it sends the part again
    /// when the turn is retried (at least once, rather than maybe never). Zero without kills.
    pub parts_resent_after_kills: usize,
    /// Chats Retell created whose answer the worker never got (a create-chat that timed out, a
    /// worker killed before it attached the chat): nothing was ever sent to them, and Retell
    /// ends them when they stay silent. Retell's create-chat has no idempotency key either.
    pub empty_chats: usize,
    /// Messages failed for good, by reason.
    pub failed: BTreeMap<String, usize>,
    /// A few examples of each violation, for whoever has to find the cause.
    pub examples: Vec<String>,
}

impl ChaosReport {
    pub fn passed(&self) -> bool {
        self.violations.total() == 0
    }

    fn example(&mut self, text: String) {
        if self.examples.len() < 12 {
            self.examples.push(text);
        }
    }
}

impl fmt::Display for ChaosReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = &self.volume;
        writeln!(
            f,
            "volume: {} customers, {} messages, {} webhook deliveries ({} duplicates, {} late), {} forms ({} posts), {:.1} s",
            v.customers,
            v.messages,
            v.deliveries,
            v.duplicate_deliveries,
            v.late_deliveries,
            v.forms,
            v.form_posts,
            v.seconds
        )?;
        writeln!(
            f,
            "faults: {} workers killed mid-turn in {} jobs, {}/{} Retell requests failed, {}/{} Graph requests failed, {} chats ended by Retell",
            v.workers_killed,
            v.jobs_run,
            v.retell_failures,
            v.retell_requests,
            v.graph_failures,
            v.graph_requests,
            v.chats_ended_by_retell
        )?;
        let failed: usize = self.failed.values().sum();
        writeln!(
            f,
            "outcome: {} messages answered, {} failed with a reason, {} replies sent",
            self.answered, failed, v.replies
        )?;
        for (reason, count) in &self.failed {
            writeln!(f, "  failed ×{count}: {reason}")?;
        }
        writeln!(
            f,
            "reply parts sent again after a kill (Graph has no idempotency key): {}",
            self.parts_resent_after_kills
        )?;
        writeln!(
            f,
            "chats created whose answer was lost (left empty, never used): {}",
            self.empty_chats
        )?;
        for (name, count) in self.violations.counts() {
            writeln!(f, "{name:>34}: {count}")?;
        }
        for example in &self.examples {
            writeln!(f, "  e.g. {example}")?;
        }
        Ok(())
    }
}

type ChaosEngine = BridgeEngine;
type ChaosQueue = InProcessQueue<KillingWorker>;

/// The worker, killed now and then at a random moment of a job: its future is dropped
/// mid-flight, as a Lambda that dies takes its requests with it, and the job comes back after
/// the queue's retry delay, as SQS makes it visible again.
struct KillingWorker {
    engine: ChaosEngine,
    kill_rate: f64,
    kills: AtomicUsize,
}

impl JobHandler for KillingWorker {
    async fn handle(&self, job: TurnJob) -> JobDisposition {
        if fastrand::f64() >= self.kill_rate {
            return self.engine.handle(job).await;
        }
        let kill_after = Duration::from_micros(fastrand::u64(0..40_000));
        tokio::select! {
            disposition = self.engine.handle(job) => disposition,
            () = tokio::time::sleep(kill_after) => {
                self.kills.fetch_add(1, Ordering::Relaxed);
                JobDisposition::RetryLater("the worker was killed mid-turn".into())
            }
        }
    }
}

/// The client timeouts of the run: a slow answer from a stand-in outlasts them.
const CLIENT_TIMEOUT: Duration = Duration::from_millis(600);
const SLOW_ANSWER: Duration = Duration::from_millis(900);
const FORM_SECRET: &str = "chaos-form-secret-of-32-characters";

struct World {
    retell: RetellStandIn,
    graph: GraphStandIn,
    webhook: WhatsAppWebhook<PostgrestStore, ChaosQueue>,
    form: FormIntake<PostgrestStore, ChaosQueue>,
    queue: ChaosQueue,
    app_secret: String,
    deliveries: AtomicUsize,
    duplicate_deliveries: AtomicUsize,
    late_deliveries: AtomicUsize,
    form_posts: AtomicUsize,
    /// The wamids the webhook acknowledged with a 200: Meta will not send them again.
    delivered: Mutex<HashSet<String>>,
    chats_ended: Mutex<HashMap<String, usize>>,
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
}

/// Runs the plan against `stack` and reports; the stack's tables keep what the run wrote.
pub async fn run(plan: &ChaosPlan, stack: &LocalStack) -> Result<ChaosReport> {
    let started = Instant::now();
    let world = Arc::new(assemble(plan, stack)?);
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    let run_id = std::process::id() as usize * 31 + RUNS.fetch_add(1, Ordering::Relaxed);
    let customers: Vec<Customer> = (0..plan.customers)
        .map(|i| Customer::new(run_id, i))
        .collect();

    let mut tasks = Vec::new();
    for customer in &customers {
        let world = Arc::clone(&world);
        let plan = plan.clone();
        let customer = customer.clone();
        tasks.push(tokio::spawn(async move {
            customer_writes(&world, &plan, &customer).await
        }));
    }
    let mut forms = 0;
    for task in tasks {
        forms += usize::from(task.await.context("a customer's task panicked")??);
    }
    let remaining = plan.deadline.saturating_sub(started.elapsed());
    let _ = tokio::time::timeout(remaining, world.queue.idle()).await;

    check(&world, stack, &customers, forms, started).await
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
    graph.fail_at_random(
        plan.graph_failure_rate,
        vec![GraphFault::Code(130_429), GraphFault::Code(131_000)],
    );
    let retell_config = RetellConfig {
        request_timeout: CLIENT_TIMEOUT,
        completion_timeout: CLIENT_TIMEOUT,
        ..retell.config()
    };
    let whatsapp = WhatsAppConfig {
        request_timeout: CLIENT_TIMEOUT,
        ..graph.config()
    };
    // A killed turn holds its customer until its lease runs out: keep it short.
    let engine_config = EngineConfig::from_env(&Env::from_pairs([("TURN_LEASE_SECONDS", "2")]))?;
    let engine = sandbox::standin_engine(&WorkerConfig {
        engine: engine_config,
        ..sandbox::worker_config(stack, retell_config, whatsapp.clone())
    });
    let queue = InProcessQueue::new(
        Arc::new(KillingWorker {
            engine,
            kill_rate: plan.kill_rate,
            kills: AtomicUsize::new(0),
        }),
        // Enough receives to outlast a killed turn's lease several times over.
        InProcessSettings {
            retry_delay: Duration::from_millis(400),
            max_receives: 40,
            ..InProcessSettings::default()
        },
    );
    let webhook_config = graph.webhook_config();
    let app_secret = secrecy::ExposeSecret::expose_secret(&webhook_config.app_secret).to_owned();
    Ok(World {
        webhook: WhatsAppWebhook::new(stack.store(), queue.clone(), &webhook_config),
        form: FormIntake::new(
            stack.store(),
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
        queue,
        retell,
        graph,
        app_secret,
        deliveries: AtomicUsize::new(0),
        duplicate_deliveries: AtomicUsize::new(0),
        late_deliveries: AtomicUsize::new(0),
        form_posts: AtomicUsize::new(0),
        delivered: Mutex::new(HashSet::new()),
        chats_ended: Mutex::new(HashMap::new()),
    })
}

/// One customer: maybe the form (sometimes twice), then bursts of 3–5 messages within a second,
/// each burst delivered in shuffled order, some messages only after later ones, some again.
/// Returns whether the customer sent the form.
async fn customer_writes(
    world: &Arc<World>,
    plan: &ChaosPlan,
    customer: &Customer,
) -> Result<bool> {
    // Customers do not all arrive at once.
    tokio::time::sleep(Duration::from_millis(fastrand::u64(0..2_000))).await;
    let sends_form = fastrand::f64() < plan.form_rate;
    if sends_form {
        post_form(world, customer).await?;
        if fastrand::f64() < plan.duplicate_rate {
            post_form(world, customer).await?;
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
                wamid: format!("wamid.chaos.{}.{n}", customer.key),
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
    Ok(sends_form)
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

/// One webhook POST, repeated as Meta does until it gets a 200.
async fn deliver(world: &World, message: &TextMessage) -> Result<()> {
    let body = text_delivery(std::slice::from_ref(message));
    let signature = signature(body.as_bytes(), &world.app_secret);
    let request = http::Request::post("/whatsapp")
        .header(SIGNATURE_HEADER, signature)
        .body(body)?;
    for _ in 0..30 {
        world.deliveries.fetch_add(1, Ordering::Relaxed);
        let answer = world.webhook.handle(&request).await;
        if answer.status() == StatusCode::OK {
            lock(&world.delivered).insert(message.wamid.clone());
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    anyhow::bail!("the webhook never took {}", message.wamid)
}

async fn post_form(world: &World, customer: &Customer) -> Result<()> {
    let body = json!({ "name": format!("Cliente {}", customer.index), "phone": customer.phone,
                       "consent": true, "producto": "seguro de auto" })
    .to_string();
    let request = http::Request::post("/form")
        .header(CONTENT_TYPE, "application/json")
        .header(AUTHORIZATION, format!("Bearer {FORM_SECRET}"))
        .body(body)?;
    for _ in 0..30 {
        world.form_posts.fetch_add(1, Ordering::Relaxed);
        let answer = world.form.handle(&request).await;
        if answer.status() == StatusCode::ACCEPTED {
            return Ok(());
        }
        anyhow::ensure!(
            answer.status().is_server_error(),
            "the form was refused: {} {}",
            answer.status(),
            answer.body()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    anyhow::bail!("the form of customer {} was never taken", customer.index)
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

/// The label the Retell stand-in puts on a reply: `[chat · turno N]`.
fn reply_label(text: &str) -> Option<(&str, usize)> {
    let label = text.strip_prefix('[')?.split(']').next()?;
    let (chat, turn) = label.split_once(" · turno ")?;
    Some((chat, turn.parse().ok()?))
}

/// What the run left behind: the database's rows and the stand-ins' records.
struct Records {
    /// Inbound messages by wamid: (state, failure reason).
    stored: HashMap<String, (String, String)>,
    chats: Vec<StandInChat>,
    accepted: Vec<AcceptedMessage>,
    delivered: HashSet<String>,
    chats_ended: HashMap<String, usize>,
    /// Form submissions neither started nor failed.
    forms_unfinished: usize,
}

impl Records {
    async fn read(world: &World, stack: &LocalStack, keys: &[&str]) -> Result<Records> {
        let db = stack.database().await?;
        let rows = db
            .query(
                "select wamid, state, coalesce(failure_reason, '') from public.whatsapp_messages \
                 where direction = 'inbound' and customer_key::text = any($1)",
                &[&keys],
            )
            .await
            .context("reading the inbound messages")?;
        let forms_unfinished = db
            .query(
                "select 1 from public.form_submissions \
                 where customer_key::text = any($1) and status not in ('started', 'failed')",
                &[&keys],
            )
            .await
            .context("reading the form submissions")?
            .len();
        Ok(Records {
            stored: rows
                .iter()
                .map(|row| (row.get(0), (row.get(1), row.get(2))))
                .collect(),
            chats: world.retell.chats(),
            accepted: world.graph.accepted(),
            delivered: lock(&world.delivered).clone(),
            chats_ended: lock(&world.chats_ended).clone(),
            forms_unfinished,
        })
    }

    fn chats_of<'r>(&'r self, customer: &'r Customer) -> impl Iterator<Item = &'r StandInChat> {
        self.chats
            .iter()
            .filter(|chat| chat_customer(chat) == Some(customer.key.as_str()))
    }
}

async fn check(
    world: &World,
    stack: &LocalStack,
    customers: &[Customer],
    forms: usize,
    started: Instant,
) -> Result<ChaosReport> {
    let keys: Vec<&str> = customers.iter().map(|c| c.key.as_str()).collect();
    let records = Records::read(world, stack, &keys).await?;
    let mut report = ChaosReport::default();
    report.violations.forms_unfinished = records.forms_unfinished;
    report.violations.dead_letters = world.queue.dead_letters().len();
    let mut messages = 0;
    let mut replies = 0;
    for customer in customers {
        let customer_replies: Vec<&str> = records
            .accepted
            .iter()
            .filter(|m| m.to == format!("+{}", customer.key) && m.message_type == "text")
            .map(|m| m.text.as_str())
            .collect();
        replies += customer_replies.len();
        messages += check_messages(&mut report, &records, customer, &customer_replies);
        check_reply_order(&mut report, &records, customer, &customer_replies);
        check_chats(&mut report, &records, customer);
    }

    let retell_requests: Vec<RetellRequest> = [
        RetellOperation::CreateChat,
        RetellOperation::CreateChatCompletion,
        RetellOperation::GetChat,
        RetellOperation::EndChat,
    ]
    .into_iter()
    .flat_map(|op| world.retell.requests(op))
    .collect();
    let graph_requests = world.graph.request_count();
    report.volume = Volume {
        customers: customers.len(),
        messages,
        deliveries: world.deliveries.load(Ordering::Relaxed),
        duplicate_deliveries: world.duplicate_deliveries.load(Ordering::Relaxed),
        late_deliveries: world.late_deliveries.load(Ordering::Relaxed),
        forms,
        form_posts: world.form_posts.load(Ordering::Relaxed),
        jobs_run: world.queue.stats().receives,
        workers_killed: world.queue.handler().kills.load(Ordering::Relaxed),
        chats_ended_by_retell: records.chats_ended.values().sum(),
        retell_requests: retell_requests.len(),
        // Status 0: the client gave up waiting.
        retell_failures: retell_requests
            .iter()
            .filter(|r| !matches!(r.status, 200 | 201 | 204))
            .count(),
        graph_requests,
        graph_failures: graph_requests
            .saturating_sub(records.accepted.len() + world.graph.read_receipts().len()),
        replies,
        seconds: started.elapsed().as_secs_f64(),
    };
    Ok(report)
}

/// Each message the webhook acknowledged: stored, answered by exactly one reply (or failed
/// with a reason), given to the agent once. Returns how many there were.
fn check_messages(
    report: &mut ChaosReport,
    records: &Records,
    customer: &Customer,
    replies: &[&str],
) -> usize {
    // Each text the agent was given, with the chat it went to (to tell a retry from a restart).
    let user_turns: Vec<(String, &str)> = records
        .chats_of(customer)
        .flat_map(|chat| {
            let chat_id = chat.chat_id.as_str();
            chat.contents("user").into_iter().map(move |t| (t, chat_id))
        })
        .collect();
    let wamid_prefix = format!("wamid.chaos.{}.", customer.key);
    let written: Vec<usize> = records
        .delivered
        .iter()
        .filter_map(|w| w.strip_prefix(&wamid_prefix)?.parse().ok())
        .collect();
    for n in &written {
        let token = customer.token(*n);
        let Some((state, reason)) = records.stored.get(&format!("{wamid_prefix}{n}")) else {
            report.violations.lost += 1;
            report.example(format!("{token} was acknowledged but never stored"));
            continue;
        };
        let given_to_agent: Vec<&(String, &str)> = user_turns
            .iter()
            .filter(|(text, _)| text.contains(&token))
            .collect();
        let answers: BTreeSet<&str> = replies
            .iter()
            .copied()
            .filter(|r| r.contains(&token))
            .collect();
        match state.as_str() {
            "answered" if answers.is_empty() => {
                report.violations.lost += 1;
                report.example(format!("{token} is answered but no reply carries it"));
            }
            "answered" => report.answered += 1,
            "failed" => *report.failed.entry(reason.clone()).or_default() += 1,
            other => {
                report.violations.lost += 1;
                report.example(format!("{token} is still {other}"));
            }
        }
        if given_to_agent.len() > 1 || answers.len() > 1 {
            report.violations.answered_twice += 1;
            report.example(format!(
                "{token} went to the agent as {given_to_agent:?} (text, chat) and into {} replies; \
                 the customer's chats: {:?}",
                answers.len(),
                records
                    .chats_of(customer)
                    .map(|chat| (&chat.chat_id, &chat.status))
                    .collect::<Vec<_>>()
            ));
        }
    }
    written.len()
}

/// Replies reach the customer in the order of their turns: (the chat's place, the turn in it),
/// as the Retell stand-in labels them. A part accepted again is counted, not judged.
fn check_reply_order(
    report: &mut ChaosReport,
    records: &Records,
    customer: &Customer,
    replies: &[&str],
) {
    let mut last: Option<(usize, usize)> = None;
    let mut seen = HashSet::new();
    for reply in replies {
        let Some((chat, turn)) = reply_label(reply) else {
            continue;
        };
        if !seen.insert(*reply) {
            report.parts_resent_after_kills += 1;
            continue;
        }
        // Chat ids grow with creation: their order is the chats' order.
        let chat_place = records.chats.iter().position(|c| c.chat_id == chat);
        let position = (chat_place.unwrap_or(usize::MAX), turn);
        if last.is_some_and(|last| position < last) {
            report.violations.replies_out_of_order += 1;
            report.example(format!(
                "out of order for customer {}: {reply}",
                customer.index
            ));
        }
        last = Some(position);
    }
}

/// One chat carries the conversation, and one more for each chat Retell ended. An empty chat is
/// a create-chat whose answer never came back (a timeout, a kill): nothing ever went to it.
fn check_chats(report: &mut ChaosReport, records: &Records, customer: &Customer) {
    let (conversation, empty): (Vec<_>, Vec<_>) = records
        .chats_of(customer)
        .partition(|chat| !chat.messages.is_empty());
    report.empty_chats += empty.len();
    let allowed = 1 + records.chats_ended.get(&customer.key).copied().unwrap_or(0);
    if conversation.len() > allowed {
        report.violations.extra_chats += conversation.len() - allowed;
        report.example(format!(
            "customer {} has {} chats",
            customer.index,
            conversation.len()
        ));
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
