//! The turn queue: the SQS adapter against moto's SQS-compatible server (FIFO order per customer,
//! deduplication, the body), and the in-process queue end to end. One test binary shares one
//! moto server; each test has queues of its own.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_sqs::config::retry::RetryConfig;
use aws_sdk_sqs::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_sqs::types::{Message, MessageSystemAttributeName};
use sandbox::moto::MotoServer;
use shared::domain::{CustomerKey, SubmissionId};
use shared::queue::{
    InProcessQueue, InProcessSettings, JobDisposition, JobHandler, QueueError, Receipt, SqsQueue,
    TurnJob, TurnQueue,
};
use shared::retry::RetrySchedule;

mod reliability;

const CUSTOMERS: [&str; 3] = ["5215512345678", "5491112345678", "US.13491208655302741918"];

fn customer(raw: &str) -> CustomerKey {
    if raw.starts_with("US.") {
        CustomerKey::from_whatsapp_user_id(raw).unwrap()
    } else {
        CustomerKey::from_whatsapp_id(raw).unwrap()
    }
}

fn start(raw_customer: &str, n: u128) -> TurnJob {
    TurnJob::StartConversation {
        customer_key: customer(raw_customer),
        submission_id: SubmissionId(uuid::Uuid::from_u128(n)),
    }
}

fn number(job: &TurnJob) -> u128 {
    match job {
        TurnJob::StartConversation { submission_id, .. } => submission_id.0.as_u128(),
        TurnJob::TakeTurn { .. }
        | TurnJob::SendStaffMessage { .. }
        | TurnJob::DeliverOutcome { .. } => {
            panic!("not a numbered job: {job:?}")
        }
    }
}

/// A client of the shared moto server.
pub(crate) async fn moto_client() -> aws_sdk_sqs::Client {
    MotoServer::shared().sqs_client().await
}

/// A queue of this test's own on the shared server.
async fn fifo_queue(test: &str) -> (aws_sdk_sqs::Client, String) {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let moto = MotoServer::shared();
    let name = format!(
        "turns-{test}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    let url = moto.create_fifo_queue(&name).await;
    (moto.sqs_client().await, url)
}

/// Receives (ten at a time) and deletes until `expected` messages came or nothing more does,
/// in the order SQS handed them out.
async fn receive_all(client: &aws_sdk_sqs::Client, url: &str, expected: usize) -> Vec<Message> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut received = Vec::new();
    let mut empty_receives = 0;
    while Instant::now() < deadline && (received.len() < expected || empty_receives == 0) {
        let output = client
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .wait_time_seconds(if received.len() < expected { 1 } else { 0 })
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await
            .expect("receive_message");
        let messages = output.messages.unwrap_or_default();
        if messages.is_empty() {
            empty_receives += 1;
            continue;
        }
        for message in messages {
            client
                .delete_message()
                .queue_url(url)
                .receipt_handle(message.receipt_handle().expect("a receipt handle"))
                .send()
                .await
                .expect("delete_message");
            received.push(message);
        }
    }
    received
}

fn body(message: &Message) -> TurnJob {
    serde_json::from_str(message.body().expect("a body")).expect("the body is a TurnJob")
}

fn attribute(message: &Message, name: MessageSystemAttributeName) -> &str {
    message
        .attributes()
        .and_then(|attributes| attributes.get(&name))
        .map(String::as_str)
        .unwrap_or_else(|| panic!("no {name:?} on {message:?}"))
}

#[tokio::test]
async fn each_customer_is_a_fifo_group_in_enqueue_order() {
    let (client, url) = fifo_queue("order").await;
    let queue = SqsQueue::from_client(client.clone(), &url);
    // Interleaved: A0 B1 C2 A3 B4 C5 …
    let jobs: Vec<TurnJob> = (0..12)
        .map(|n| start(CUSTOMERS[n % 3], n as u128))
        .collect();
    for job in &jobs {
        queue
            .enqueue(job, &format!("submission-{}", number(job)))
            .await
            .unwrap();
    }

    let messages = receive_all(&client, &url, jobs.len()).await;
    assert_eq!(messages.len(), jobs.len());
    let mut per_group: HashMap<String, Vec<u128>> = HashMap::new();
    for message in &messages {
        let job = body(message);
        let group = attribute(message, MessageSystemAttributeName::MessageGroupId);
        assert_eq!(
            group,
            job.customer_key().as_str(),
            "the group is the customer key"
        );
        per_group
            .entry(group.to_owned())
            .or_default()
            .push(number(&job));
    }
    for (i, raw) in CUSTOMERS.iter().enumerate() {
        let expected: Vec<u128> = (0..12).filter(|n| n % 3 == i).map(|n| n as u128).collect();
        assert_eq!(
            per_group[customer(raw).as_str()],
            expected,
            "group of {raw}"
        );
    }
}

#[tokio::test]
async fn a_repeated_deduplication_id_is_dropped() {
    let (client, url) = fifo_queue("dedup").await;
    let queue = SqsQueue::from_client(client.clone(), &url);
    let long_id = format!("form:{}", "x".repeat(200));
    for (customer, n, deduplication_id) in [
        (0, 1, "wamid.HBgL1"),
        // The same id for another job, even another customer's: dropped, as SQS does.
        (0, 2, "wamid.HBgL1"),
        (1, 3, "wamid.HBgL1"),
        // Ids SQS would refuse (too long, outside its alphabet) are hashed, and still deduplicate.
        (0, 4, long_id.as_str()),
        (0, 5, long_id.as_str()),
        (1, 6, "id with spaces ñ"),
        (1, 7, "id with spaces ñ"),
    ] {
        queue
            .enqueue(&start(CUSTOMERS[customer], n), deduplication_id)
            .await
            .unwrap();
    }

    let messages = receive_all(&client, &url, 3).await;
    let numbers: Vec<u128> = messages.iter().map(|m| number(&body(m))).collect();
    let mut sorted = numbers.clone();
    sorted.sort();
    assert_eq!(sorted, [1, 4, 6], "received {numbers:?}");
    for message in &messages {
        let id = attribute(message, MessageSystemAttributeName::MessageDeduplicationId);
        match number(&body(message)) {
            1 => assert_eq!(id, "wamid.HBgL1"),
            _ => assert!(
                id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()),
                "{id}"
            ),
        }
    }
}

#[tokio::test]
async fn the_body_is_the_jobs_json() {
    let (client, url) = fifo_queue("body").await;
    let queue = SqsQueue::from_client(client.clone(), &url);
    let jobs = [
        start(CUSTOMERS[0], 0x1234),
        TurnJob::TakeTurn {
            customer_key: customer(CUSTOMERS[0]),
        },
        TurnJob::TakeTurn {
            customer_key: customer(CUSTOMERS[2]),
        },
    ];
    for (i, job) in jobs.iter().enumerate() {
        queue.enqueue(job, &format!("job-{i}")).await.unwrap();
    }

    let messages = receive_all(&client, &url, jobs.len()).await;
    let mut received: Vec<TurnJob> = messages.iter().map(body).collect();
    received.sort_by_key(|job| format!("{job:?}"));
    let mut expected = jobs.to_vec();
    expected.sort_by_key(|job| format!("{job:?}"));
    assert_eq!(received, expected);
    let take_turn = messages
        .iter()
        .map(|m| m.body().unwrap())
        .find(|b| b.contains("take_turn"))
        .unwrap();
    let value: serde_json::Value = serde_json::from_str(take_turn).unwrap();
    assert_eq!(value["job"], "take_turn", "{take_turn}");
}

#[tokio::test]
async fn a_missing_queue_is_rejected_naming_it() {
    let moto = MotoServer::shared();
    let url = format!("{}/123456789012/no-such-queue.fifo", moto.endpoint_url());
    let queue = SqsQueue::from_client(moto.sqs_client().await, &url);
    let err = queue
        .enqueue(&start(CUSTOMERS[0], 1), "1")
        .await
        .unwrap_err();
    assert!(matches!(err, QueueError::Rejected(_)), "{err:?}");
    assert!(err.to_string().contains(&url), "{err}");
}

#[tokio::test]
async fn an_unreachable_queue_is_unavailable() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port(); // free, and nobody listens once the listener is dropped
    let endpoint = format!("http://127.0.0.1:{port}");
    let config = aws_sdk_sqs::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::from_static("us-east-1"))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "test"))
        .endpoint_url(&endpoint)
        .retry_config(RetryConfig::disabled())
        .build();
    let url = format!("{endpoint}/123456789012/turns.fifo");
    let queue = SqsQueue::from_client(aws_sdk_sqs::Client::from_conf(config), &url);
    let err = queue
        .enqueue(&start(CUSTOMERS[0], 1), "1")
        .await
        .unwrap_err();
    assert!(matches!(err, QueueError::Unavailable(_)), "{err:?}");
    assert!(err.to_string().contains(&url), "{err}");
}

/// Records the order it ran jobs in; slow enough that a wrong order would show.
#[derive(Default)]
struct Recorder {
    runs: Mutex<Vec<TurnJob>>,
    running: AtomicUsize,
    most_running: AtomicUsize,
    failed_once: Mutex<Vec<u128>>,
}

impl JobHandler for Recorder {
    async fn handle(&self, job: TurnJob, _receipt: Receipt) -> JobDisposition {
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_running.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(20)).await;
        self.running.fetch_sub(1, Ordering::SeqCst);
        let n = number(&job);
        // Job 0 fails once: its customer's later jobs must wait for its retry.
        if n == 0 && !self.failed_once.lock().unwrap().contains(&n) {
            self.failed_once.lock().unwrap().push(n);
            return JobDisposition::retry("the agent is busy");
        }
        self.runs.lock().unwrap().push(job);
        JobDisposition::Done
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_in_process_queue_runs_each_customer_in_order_and_customers_in_parallel() {
    let handler = Arc::new(Recorder::default());
    let queue = InProcessQueue::new(
        Arc::clone(&handler),
        InProcessSettings {
            schedule: RetrySchedule::new(vec![Duration::from_millis(30)]),
            ..InProcessSettings::default()
        },
    );
    let jobs: Vec<TurnJob> = (0..12)
        .map(|n| start(CUSTOMERS[n % 3], n as u128))
        .collect();
    for job in &jobs {
        queue
            .enqueue(job, &format!("submission-{}", number(job)))
            .await
            .unwrap();
    }
    // A webhook delivered twice: dropped.
    queue.enqueue(&jobs[4], "submission-4").await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), queue.idle())
        .await
        .expect("the queue became idle");

    let runs = handler.runs.lock().unwrap().clone();
    assert_eq!(runs.len(), jobs.len());
    for (i, raw) in CUSTOMERS.iter().enumerate() {
        let key = customer(raw);
        let order: Vec<u128> = runs
            .iter()
            .filter(|job| job.customer_key() == &key)
            .map(number)
            .collect();
        let expected: Vec<u128> = (0..12).filter(|n| n % 3 == i).map(|n| n as u128).collect();
        assert_eq!(order, expected, "order of {raw}");
    }
    assert!(
        handler.most_running.load(Ordering::SeqCst) > 1,
        "customers never ran in parallel"
    );
    let stats = queue.stats();
    assert_eq!(
        (stats.enqueued, stats.duplicates, stats.receives, stats.done),
        (12, 1, 13, 12)
    );
    assert!(queue.dead_letters().is_empty());
}

/// Handles jobs like the engine would, asking once to retry the first job of one customer.
#[derive(Default)]
struct FlakyOnce {
    retried: Mutex<bool>,
    handled: Mutex<Vec<TurnJob>>,
}

impl JobHandler for FlakyOnce {
    async fn handle(&self, job: TurnJob, _receipt: Receipt) -> JobDisposition {
        let mut retried = self.retried.lock().unwrap();
        if !*retried && job.customer_key() == &customer(CUSTOMERS[0]) {
            *retried = true;
            return JobDisposition::retry_after("the customer is busy", Duration::from_secs(1));
        }
        self.handled.lock().unwrap().push(job);
        JobDisposition::Done
    }
}

/// The worker's Lambda event for messages as SQS hands them out.
pub(crate) fn lambda_event(messages: &[Message]) -> aws_lambda_events::event::sqs::SqsEvent {
    let records: Vec<serde_json::Value> = messages
        .iter()
        .map(|m| {
            let attributes: HashMap<String, String> = m
                .attributes()
                .into_iter()
                .flatten()
                .map(|(name, value)| (name.as_str().to_owned(), value.clone()))
                .collect();
            serde_json::json!({
                "messageId": m.message_id(), "receiptHandle": m.receipt_handle(), "body": m.body(),
                "attributes": attributes, "messageAttributes": {}, "eventSource": "aws:sqs",
            })
        })
        .collect();
    serde_json::from_value(serde_json::json!({ "Records": records })).unwrap()
}

/// Lambda's event source mapping, once: receives up to `batch` records (waiting up to 1 s), runs
/// the worker on them as the function does, and deletes those it did not give back. Returns
/// the records received and the ids of those given back.
pub(crate) async fn run_worker_once<H: JobHandler>(
    client: &aws_sdk_sqs::Client,
    url: &str,
    handler: &H,
    schedule: &RetrySchedule,
    batch: i32,
) -> (Vec<Message>, Vec<String>) {
    let received = client
        .receive_message()
        .queue_url(url)
        .max_number_of_messages(batch)
        .wait_time_seconds(1)
        .message_system_attribute_names(MessageSystemAttributeName::All)
        .send()
        .await
        .unwrap()
        .messages
        .unwrap_or_default();
    if received.is_empty() {
        return (received, Vec::new());
    }
    let queue = SqsQueue::from_client(client.clone(), url);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
    let response = conversation_worker::handle_batch(
        handler,
        &queue,
        schedule,
        lambda_event(&received),
        deadline,
    )
    .await;
    let returned: Vec<String> = response
        .batch_item_failures
        .into_iter()
        .map(|f| f.item_identifier)
        .collect();
    for message in &received {
        if !returned
            .iter()
            .any(|id| Some(id.as_str()) == message.message_id())
        {
            client
                .delete_message()
                .queue_url(url)
                .receipt_handle(message.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
        }
    }
    (received, returned)
}

/// The conversation worker's batch handling, fed from moto as Lambda's event source mapping
/// would: a record to retry holds back the later records of its customer in the same batch,
/// every returned record comes back after the delay the worker set on it (the queue's own
/// visibility timeout is the deployed 1,080 s), and in the end each job ran once. (The order of
/// records that come back after a retry is SQS's guarantee; moto does not keep it, so it is not
/// checked.)
#[tokio::test]
async fn the_worker_consumes_batches_and_returns_failures_to_the_queue() {
    let (client, url) = fifo_queue("worker").await;
    // The deployed visibility timeout: only the worker's ChangeMessageVisibility brings a
    // returned record back in seconds.
    client
        .set_queue_attributes()
        .queue_url(&url)
        .attributes(
            aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout,
            "1080",
        )
        .send()
        .await
        .unwrap();
    let queue = SqsQueue::from_client(client.clone(), &url);
    let jobs: Vec<TurnJob> = (0..6).map(|n| start(CUSTOMERS[n % 2], n as u128)).collect();
    for job in &jobs {
        queue
            .enqueue(job, &format!("submission-{}", number(job)))
            .await
            .unwrap();
    }
    queue.enqueue(&jobs[0], "submission-0").await.unwrap(); // a repeat: dropped by SQS

    let worker = FlakyOnce::default();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut first_batch_returned: Option<Vec<u128>> = None;
    while worker.handled.lock().unwrap().len() < jobs.len() {
        assert!(
            Instant::now() < deadline,
            "handled only {:?}",
            worker.handled.lock().unwrap()
        );
        let (received, returned) =
            run_worker_once(&client, &url, &worker, &RetrySchedule::default(), 10).await;
        if received.is_empty() {
            continue;
        }
        first_batch_returned.get_or_insert_with(|| {
            received
                .iter()
                .filter(|m| {
                    returned
                        .iter()
                        .any(|id| Some(id.as_str()) == m.message_id())
                })
                .map(|m| number(&body(m)))
                .collect()
        });
    }

    let returned = first_batch_returned.unwrap();
    assert_eq!(
        returned.first(),
        Some(&0),
        "the job that asked to retry was returned"
    );
    let held_back: Vec<u128> = jobs
        .iter()
        .filter(|j| j.customer_key() == &customer(CUSTOMERS[0]))
        .map(number)
        .collect();
    assert!(
        held_back.iter().all(|n| returned.contains(n)),
        "its customer's later jobs were returned unrun: {returned:?}"
    );
    let mut handled: Vec<u128> = worker.handled.lock().unwrap().iter().map(number).collect();
    handled.sort_unstable();
    assert_eq!(
        handled,
        [0, 1, 2, 3, 4, 5],
        "each job ran once, the repeat was dropped"
    );
}
