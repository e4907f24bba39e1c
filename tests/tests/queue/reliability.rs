//! Seconds-long retries, dead letters that answer, and the sweeper, end to end: the engine on
//! the local stack and the stand-ins, behind the in-process queue or moto's SQS driven as
//! Lambda's event source mapping drives the worker.
//!
//! The sweeper is global (it finds every customer's stranded work), so the tests of this file
//! take turns on the stack ([`one_at_a_time`]); no other test of this binary uses the stack.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use chrono::Utc;
use sandbox::retell_standin::RetellOperation::CreateChatCompletion;
use sandbox::{GraphStandIn, LocalStack, RetellFault, RetellStandIn};
use shared::domain::{CountryId, CustomerKey, InboundMessage, MessageId, PhoneNumber};
use shared::engine::BridgeEngine;
use shared::queue::{InProcessQueue, InProcessSettings, SqsQueue, TurnJob, TurnQueue};
use shared::retry::{RetryPolicy, RetrySchedule};
use shared::store::{PostgrestStore, SessionStore};
use shared::sweep::requeue_stranded_work;
use tokio::sync::{Mutex, MutexGuard};

/// The stack, one test at a time.
async fn one_at_a_time() -> MutexGuard<'static, ()> {
    static STACK: Mutex<()> = Mutex::const_new(());
    STACK.lock().await
}

/// One customer, the stand-ins, and an engine whose clients do not retry inside a turn: a
/// failed request fails the turn, and the queue's schedule is what brings the reply.
struct World {
    retell: RetellStandIn,
    graph: GraphStandIn,
    customer: CustomerKey,
    phone: PhoneNumber,
    engine: Arc<BridgeEngine>,
}

impl World {
    fn new(n: u32) -> World {
        let retell = RetellStandIn::start();
        let graph = GraphStandIn::start();
        let local = (std::process::id() % 10_000) * 100 + n;
        let phone = PhoneNumber::parse(&format!("+52 81 {local:08}"), CountryId::MX).unwrap();
        let config = sandbox::worker_config(LocalStack::shared(), retell.config(), graph.config());
        let no_retries = RetryPolicy {
            max_retries: 0,
            ..sandbox::FAST_RETRIES
        };
        let engine = BridgeEngine::from_config(&config, shared::http::client())
            .with_retry_policy(no_retries, Duration::from_millis(1));
        World {
            retell,
            graph,
            customer: CustomerKey::from_phone(&phone),
            phone,
            engine: Arc::new(engine),
        }
    }

    fn store(&self) -> PostgrestStore {
        LocalStack::shared().store()
    }

    /// The customer writes; recorded as the webhook records it (no job queued).
    async fn customer_writes(&self, n: u32, text: &str) {
        let message = InboundMessage {
            wamid: MessageId::parse(format!("wamid.REL.{}.{n}", self.customer)).unwrap(),
            customer_key: self.customer.clone(),
            message_type: "text".into(),
            body: Some(text.into()),
            payload: None,
            sent_at: Utc::now(),
            wa_id: Some(format!("521{}", &self.customer.as_str()[2..])),
            whatsapp_user_id: None,
            profile_name: None,
        };
        let recorded = self
            .store()
            .record_webhook(&[message], &[], &[], &[])
            .await
            .unwrap();
        assert!(recorded.messages[0].is_new);
    }

    /// The form is submitted: recorded as form-intake records it (no job queued).
    async fn submit_form(&self) -> shared::domain::SubmissionId {
        let submission = shared::domain::FormSubmission {
            idempotency_key: shared::domain::IdempotencyKey::parse(format!(
                "rel-form-{}",
                self.customer
            ))
            .unwrap(),
            customer_key: self.customer.clone(),
            phone: self.phone.clone(),
            name: shared::domain::CustomerName::parse("Ana").unwrap(),
            fields: Default::default(),
        };
        self.store()
            .record_form_submission(&submission, shared::domain::OutreachLimits::DEFAULT)
            .await
            .unwrap()
            .submission_id
    }

    fn job(&self) -> TurnJob {
        TurnJob::TakeTurn {
            customer_key: self.customer.clone(),
        }
    }

    /// Waits up to `limit` for `count` messages accepted by WhatsApp; returns when the last came.
    async fn replies(&self, count: usize, limit: Duration) -> Option<Instant> {
        let started = Instant::now();
        while started.elapsed() < limit {
            if self.graph.accepted().len() >= count {
                return Some(Instant::now());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }

    async fn db_value(&self, sql: &str) -> String {
        let db = LocalStack::shared().database().await.unwrap();
        db.query_one(sql, &[&self.customer.as_str()])
            .await
            .unwrap()
            .get(0)
    }

    /// The agent saw `text` as this many user messages.
    fn times_given_to_agent(&self, text: &str) -> usize {
        self.retell
            .chats()
            .iter()
            .flat_map(|chat| chat.contents("user"))
            .filter(|content| content == text)
            .count()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_retell_fails_once_the_reply_goes_out_within_15_s_in_process() {
    let _stack = one_at_a_time().await;
    let world = World::new(1);
    world.customer_writes(0, "hola").await;
    world
        .retell
        .fail_next(CreateChatCompletion, RetellFault::ServerError);
    // The production schedule: the retry comes 2 s after the failure.
    let queue = InProcessQueue::new(Arc::clone(&world.engine), InProcessSettings::default());
    let started = Instant::now();
    queue.enqueue(&world.job(), "rel-1").await.unwrap();
    let replied = world.replies(1, Duration::from_secs(20)).await;
    let took = replied.expect("the reply went out").duration_since(started);
    assert!(took < Duration::from_secs(15), "the reply took {took:?}");
    assert!(
        took >= Duration::from_secs(2),
        "the retry waited its schedule: {took:?}"
    );
    queue.idle().await;
    assert_eq!(world.graph.accepted().len(), 1, "answered once");
    assert_eq!(world.times_given_to_agent("hola"), 1);
    assert_eq!(queue.stats().receives, 2);
}

/// A FIFO queue on moto as the template makes it: the visibility timeout of the deployed queue
/// (so only the worker's `ChangeMessageVisibility` brings a record back in seconds) and a
/// dead-letter queue after `max_receives`.
async fn deployed_queue(name: &str, max_receives: u32) -> (aws_sdk_sqs::Client, String, String) {
    let client = crate::moto_client().await;
    let create = |queue: String, attributes: Vec<(QueueAttributeName, String)>| {
        let client = client.clone();
        async move {
            let mut request = client
                .create_queue()
                .queue_name(queue)
                .attributes(QueueAttributeName::FifoQueue, "true");
            for (name, value) in attributes {
                request = request.attributes(name, value);
            }
            request.send().await.unwrap().queue_url.unwrap()
        }
    };
    let unique = format!("{name}-{}", std::process::id());
    let dead_letters = create(format!("{unique}-dlq.fifo"), vec![]).await;
    let dlq_arn = client
        .get_queue_attributes()
        .queue_url(&dead_letters)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap()[&QueueAttributeName::QueueArn]
        .clone();
    let redrive =
        serde_json::json!({ "deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receives });
    let turns = create(
        format!("{unique}.fifo"),
        vec![
            (QueueAttributeName::VisibilityTimeout, "1080".into()),
            (QueueAttributeName::RedrivePolicy, redrive.to_string()),
        ],
    )
    .await;
    (client, turns, dead_letters)
}

/// Lambda's event source mapping, once, one record at a time (the template's batch size): how
/// many records it received.
async fn poll_once(
    client: &aws_sdk_sqs::Client,
    url: &str,
    engine: &BridgeEngine,
    schedule: &RetrySchedule,
) -> usize {
    crate::run_worker_once(client, url, engine, schedule, 1)
        .await
        .0
        .len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_retell_fails_once_the_reply_goes_out_within_15_s_through_sqs() {
    let _stack = one_at_a_time().await;
    let world = World::new(2);
    let (client, url, _) = deployed_queue("retry-once", 5).await;
    world.customer_writes(0, "hola").await;
    world
        .retell
        .fail_next(CreateChatCompletion, RetellFault::ServerError);
    let started = Instant::now();
    SqsQueue::from_client(client.clone(), &url)
        .enqueue(&world.job(), "rel-2")
        .await
        .unwrap();
    let schedule = RetrySchedule::default();
    let mut receives = 0;
    while world.graph.accepted().is_empty() && started.elapsed() < Duration::from_secs(20) {
        receives += poll_once(&client, &url, &world.engine, &schedule).await;
    }
    let took = started.elapsed();
    assert_eq!(world.graph.accepted().len(), 1, "answered once");
    assert!(took < Duration::from_secs(15), "the reply took {took:?}");
    assert_eq!(receives, 2, "failed once, then answered");
    assert_eq!(world.times_given_to_agent("hola"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_lettered_turn_answers_its_message_once_when_redriven() {
    let _stack = one_at_a_time().await;
    let world = World::new(3);
    let max_receives = 5;
    let (client, url, dead_letters) = deployed_queue("redrive", max_receives).await;
    world.customer_writes(0, "¿me ayudan?").await;
    // Retell fails every completion until the job is dead-lettered.
    world
        .retell
        .fail_at_random(1.0, vec![RetellFault::ServerError]);
    SqsQueue::from_client(client.clone(), &url)
        .enqueue(&world.job(), "rel-3")
        .await
        .unwrap();
    // Retried at once, to get there quickly.
    let schedule = RetrySchedule::new(vec![Duration::ZERO]);
    let mut receives = 0;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(30) {
        let got = poll_once(&client, &url, &world.engine, &schedule).await;
        receives += got;
        if got == 0 && receives >= max_receives as usize {
            break;
        }
    }
    assert_eq!(receives, max_receives as usize);
    assert_eq!(
        world
            .db_value("select state from whatsapp_messages where customer_key = $1 and direction = 'inbound'")
            .await,
        "pending",
        "the message waits: its failures were Retell's"
    );
    let dead = client
        .receive_message()
        .queue_url(&dead_letters)
        .max_number_of_messages(10)
        .message_system_attribute_names(MessageSystemAttributeName::All)
        .send()
        .await
        .unwrap()
        .messages
        .unwrap_or_default();
    assert_eq!(dead.len(), 1, "the job is in the dead-letter queue");

    // Retell recovers and the operator redrives the dead-letter queue: the message moves back
    // to the queue of turns (a new deduplication id, as a move outside the 5-minute window).
    world.retell.fail_at_random(0.0, vec![]);
    let record = &dead[0];
    client
        .send_message()
        .queue_url(&url)
        .message_body(record.body().unwrap())
        .message_group_id(world.customer.as_str())
        .message_deduplication_id("redriven-rel-3")
        .send()
        .await
        .unwrap();
    client
        .delete_message()
        .queue_url(&dead_letters)
        .receipt_handle(record.receipt_handle().unwrap())
        .send()
        .await
        .unwrap();
    let started = Instant::now();
    while world.graph.accepted().is_empty() && started.elapsed() < Duration::from_secs(20) {
        poll_once(&client, &url, &world.engine, &schedule).await;
    }
    assert_eq!(world.graph.accepted().len(), 1, "answered once");
    assert_eq!(world.times_given_to_agent("¿me ayudan?"), 1);
    assert_eq!(
        world
            .db_value("select state from whatsapp_messages where customer_key = $1 and direction = 'inbound'")
            .await,
        "answered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweeper_answers_stranded_work_of_each_kind_and_queues_nothing_twice() {
    let _stack = one_at_a_time().await;
    let fast = InProcessSettings {
        schedule: RetrySchedule::new(vec![Duration::from_millis(50)]),
        ..InProcessSettings::default()
    };
    let grace = Duration::from_secs(1);

    // A message recorded whose job never reached the queue (Meta gave up on a 503).
    let never_queued = World::new(4);
    never_queued.customer_writes(0, "¿siguen ahí?").await;
    // A turn whose worker died holding the customer: its lease runs out.
    let died = World::new(5);
    died.customer_writes(0, "quiero una cita").await;
    let claim = died
        .store()
        .claim_turn(&died.customer, Duration::from_secs(1), 5)
        .await
        .unwrap();
    assert!(matches!(claim, shared::domain::TurnClaim::Claimed(_)));
    // A job dead-lettered: the in-process queue gives up after 2 receives while Retell fails.
    let dead_lettered = World::new(6);
    dead_lettered.customer_writes(0, "hola de nuevo").await;
    dead_lettered
        .retell
        .fail_at_random(1.0, vec![RetellFault::ServerError]);
    let dying = InProcessQueue::new(
        Arc::clone(&dead_lettered.engine),
        InProcessSettings {
            max_receives: 2,
            ..fast.clone()
        },
    );
    dying.enqueue(&dead_lettered.job(), "rel-6").await.unwrap();
    dying.idle().await;
    assert_eq!(dying.dead_letters().len(), 1);
    dead_lettered.retell.fail_at_random(0.0, vec![]);
    // Its last failure told the sweeper to wait a minute past the retry it expected; that
    // minute passes.
    LocalStack::shared()
        .database()
        .await
        .unwrap()
        .execute(
            "update chat_sessions set sweep_after = now() where customer_key = $1",
            &[&dead_lettered.customer.as_str()],
        )
        .await
        .unwrap();

    // The dead turn's lease runs out, then the sweeper's grace (its least: 1 s).
    tokio::time::sleep(Duration::from_millis(2_200)).await;
    // One sweep finds all three; each world's queue runs its own customer's job.
    let worlds = [&never_queued, &died, &dead_lettered];
    let queues: Vec<_> = worlds
        .iter()
        .map(|world| {
            let queue = InProcessQueue::new(Arc::clone(&world.engine), fast.clone());
            (world.customer.clone(), queue)
        })
        .collect();
    let report = requeue_stranded_work(&never_queued.store(), &RoutingQueue(&queues), grace)
        .await
        .unwrap();
    assert!(report.turns >= 3, "{report:?}");
    for (world, (_, queue)) in worlds.iter().zip(&queues) {
        queue.idle().await;
        assert!(
            world.replies(1, Duration::from_secs(10)).await.is_some(),
            "answered after the sweep"
        );
    }
    for world in [&never_queued, &died, &dead_lettered] {
        assert_eq!(world.graph.accepted().len(), 1, "answered once");
        assert_eq!(
            world
                .retell
                .chats()
                .iter()
                .map(|c| c.contents("user").len())
                .sum::<usize>(),
            1
        );
    }

    // A form whose client did not retry the 503 of a queue that was down: recorded, not queued.
    let form = World::new(7);
    let submission = form.submit_form().await;
    tokio::time::sleep(Duration::from_millis(1_100)).await; // the grace
    let queues = [(
        form.customer.clone(),
        InProcessQueue::new(Arc::clone(&form.engine), fast.clone()),
    )];
    let report = requeue_stranded_work(&form.store(), &RoutingQueue(&queues), grace)
        .await
        .unwrap();
    assert!(report.submissions >= 1, "{report:?}");
    queues[0].1.idle().await;
    let templates: Vec<_> = form
        .graph
        .accepted()
        .into_iter()
        .filter(|m| m.message_type == "template")
        .collect();
    assert_eq!(templates.len(), 1, "the lead got its one template");
    assert_eq!(
        form.db_value("select status from form_submissions where customer_key = $1")
            .await,
        "started",
        "{submission:?}"
    );

    // Swept twice in a row: the second sweep does not return what the first queued.
    let twice = World::new(8);
    twice.customer_writes(0, "¿hola?").await;
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let store = twice.store();
    let first = store
        .sweep_stranded_work(Duration::from_secs(1))
        .await
        .unwrap();
    let second = store
        .sweep_stranded_work(Duration::from_secs(1))
        .await
        .unwrap();
    assert!(first.turns.contains(&twice.customer), "{first:?}");
    assert!(!second.turns.contains(&twice.customer), "{second:?}");
}

/// Queues each job on the queue of its customer's world; drops others (no world's here).
struct RoutingQueue<'q, Q>(&'q [(CustomerKey, Q)]);

impl<Q: TurnQueue> TurnQueue for RoutingQueue<'_, Q> {
    async fn enqueue(
        &self,
        job: &TurnJob,
        deduplication_id: &str,
    ) -> Result<(), shared::queue::QueueError> {
        match self
            .0
            .iter()
            .find(|(customer, _)| customer == job.customer_key())
        {
            Some((_, queue)) => queue.enqueue(job, deduplication_id).await,
            None => Ok(()),
        }
    }
}
