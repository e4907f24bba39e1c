//! The turn queue on SQS FIFO: the customer key is the message group (one turn at a time per
//! customer), the caller's deduplication id the message deduplication id, the job's JSON the body.

use std::borrow::Cow;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use aws_config::SdkConfig;
use aws_sdk_sqs::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use sha2::{Digest, Sha256};
use tracing::Instrument;

use super::{QueueError, Redelivery, TurnJob, TurnQueue};
use crate::aws::{http_client, role_config};
use crate::config::QueueConfig;
use crate::retry::RetrySchedule;

/// The longest `MessageGroupId` / `MessageDeduplicationId` SQS accepts.
const MAX_ID_LEN: usize = 128;

/// [`TurnQueue`] on an SQS FIFO queue.
#[derive(Debug, Clone)]
pub struct SqsQueue {
    /// Built at the first job (shared by the clones), from `pending` when it is set.
    client: Arc<OnceLock<aws_sdk_sqs::Client>>,
    pending: Option<SdkConfig>,
    queue_url: String,
}

impl SqsQueue {
    /// A queue client from the configuration: the credentials Lambda hands the function's role
    /// over in (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`), the region
    /// the queue URL names (`sqs.<region>.amazonaws.com`), else `AWS_REGION`, else `us-east-1`,
    /// and `SQS_ENDPOINT_URL` when set. Nothing is sent until the first job: no network at
    /// construction, and no file read.
    ///
    /// The client itself is built at the first job, not at INIT: most invocations of the
    /// webhook (delivery statuses, the verification) and the form (preflights) queue nothing.
    /// It is built from [`role_config`], without `aws_config::load`.
    pub async fn from_config(config: &QueueConfig) -> SqsQueue {
        let queue_url = config.queue_url.as_str().to_owned();
        let endpoint = config.endpoint_url.as_ref().map(url::Url::as_str);
        let sqs_config = role_config(region_of_queue_url(&queue_url), endpoint).await;
        SqsQueue {
            client: Arc::default(),
            pending: Some(sqs_config),
            queue_url,
        }
    }

    /// A queue on a client built elsewhere (the tests', pointed at a local SQS).
    pub fn from_client(client: aws_sdk_sqs::Client, queue_url: impl Into<String>) -> SqsQueue {
        SqsQueue {
            client: Arc::new(OnceLock::from(client)),
            pending: None,
            queue_url: queue_url.into(),
        }
    }

    fn client(&self) -> &aws_sdk_sqs::Client {
        self.client.get_or_init(|| {
            let config = self
                .pending
                .as_ref()
                .expect("a queue without a client has its configuration");
            let config = aws_sdk_sqs::config::Builder::from(config)
                .http_client(http_client())
                .build();
            aws_sdk_sqs::Client::from_conf(config)
        })
    }

    pub fn queue_url(&self) -> &str {
        &self.queue_url
    }

    async fn send(&self, job: &TurnJob, deduplication_id: &str) -> Result<(), QueueError> {
        let body = serde_json::to_string(job).map_err(|e| {
            QueueError::Rejected(format!(
                "{}: the job did not serialize: {e}",
                self.queue_url
            ))
        })?;
        let output = self
            .client()
            .send_message()
            .queue_url(&self.queue_url)
            .message_group_id(sqs_id(job.customer_key().as_str()))
            .message_deduplication_id(sqs_id(deduplication_id))
            .message_body(body)
            .send()
            .await
            .map_err(|e| classify(&self.queue_url, e))?;
        tracing::debug!(message_id = output.message_id(), "job queued");
        Ok(())
    }
}

impl TurnQueue for SqsQueue {
    async fn enqueue(&self, job: &TurnJob, deduplication_id: &str) -> Result<(), QueueError> {
        let span = tracing::info_span!(
            "enqueue",
            queue = "sqs",
            customer = %job.customer_key().masked(),
            job = job_kind(job),
        );
        let result = self
            .send(job, deduplication_id)
            .instrument(span.clone())
            .await;
        // Unavailable: the caller answers 5xx and the sender retries. Rejected (no such queue,
        // no permission): a person must fix the deployment.
        match &result {
            Err(error @ QueueError::Unavailable(_)) => {
                span.in_scope(|| tracing::warn!(%error, "job not queued"))
            }
            Err(error) => span.in_scope(|| tracing::error!(%error, "job not queued")),
            Ok(()) => {}
        }
        result
    }
}

impl Redelivery for SqsQueue {
    async fn redeliver_after(
        &self,
        receipt_handle: &str,
        delay: Duration,
    ) -> Result<(), QueueError> {
        let seconds = delay.as_secs().min(RetrySchedule::MAX_DELAY.as_secs()) as i32;
        self.client()
            .change_message_visibility()
            .queue_url(&self.queue_url)
            .receipt_handle(receipt_handle)
            .visibility_timeout(seconds)
            .send()
            .await
            .map_err(|e| classify(&self.queue_url, e))?;
        Ok(())
    }
}

pub(super) fn job_kind(job: &TurnJob) -> &'static str {
    match job {
        TurnJob::StartConversation { .. } => "start_conversation",
        TurnJob::TakeTurn { .. } => "take_turn",
        TurnJob::SendStaffMessage { .. } => "send_staff_message",
        TurnJob::DeliverOutcome { .. } => "deliver_outcome",
    }
}

/// `id` itself when SQS takes it as a group or deduplication id (1 to 128 ASCII letters, digits
/// and punctuation), else its SHA-256 in hex, which SQS takes and which keeps distinct ids
/// distinct.
fn sqs_id(id: &str) -> Cow<'_, str> {
    let valid = (1..=MAX_ID_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b.is_ascii_punctuation());
    if valid {
        Cow::Borrowed(id)
    } else {
        Cow::Owned(hex::encode(Sha256::digest(id.as_bytes())))
    }
}

/// `us-east-1` in `https://sqs.us-east-1.amazonaws.com/123/turns.fifo` (or the legacy
/// `https://us-east-1.queue.amazonaws.com/…`).
fn region_of_queue_url(queue_url: &str) -> Option<String> {
    let host = url::Url::parse(queue_url).ok()?.host_str()?.to_owned();
    let region = host
        .strip_prefix("sqs.")
        .and_then(|rest| rest.split_once('.'))
        .map(|(region, _)| region)
        .or_else(|| {
            host.split_once(".queue.amazonaws.com")
                .map(|(region, _)| region)
        })?;
    let plausible = !region.is_empty()
        && region.contains('-')
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    plausible.then(|| region.to_owned())
}

/// Throttling, 5xx, timeouts and failed connections may pass: `Unavailable`, so the caller has the
/// job retried. Everything else (a missing queue, a bad request, no permission): `Rejected`.
fn classify<E>(queue_url: &str, error: SdkError<E>) -> QueueError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let detail = DisplayErrorContext(&error);
    let transient = match &error {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            status >= 500 || status == 429 || service.err().code().is_some_and(is_throttling_code)
        }
        // Built without being sent: a configuration fault a retry cannot fix.
        _ => false,
    };
    if transient {
        QueueError::Unavailable(format!("{queue_url}: {detail}"))
    } else {
        QueueError::Rejected(format!("{queue_url}: {detail}"))
    }
}

fn is_throttling_code(code: &str) -> bool {
    matches!(
        code,
        "Throttling"
            | "ThrottlingException"
            | "ThrottledException"
            | "RequestThrottled"
            | "RequestThrottledException"
            | "KmsThrottled"
            | "TooManyRequestsException"
            | "RequestLimitExceeded"
            | "SlowDown"
            | "ServiceUnavailable"
            | "InternalError"
            | "InternalFailure"
            | "KMS.ThrottlingException"
    ) || code.ends_with(".RequestThrottled")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sqs_takes_pass_unchanged() {
        assert_eq!(
            sqs_id("wamid.HBgLMTU1NTEyMzQ1NjcVAgASGBQ="),
            "wamid.HBgLMTU1NTEyMzQ1NjcVAgASGBQ="
        );
        assert_eq!(sqs_id("5215512345678"), "5215512345678");
        assert_eq!(sqs_id("US.13491208655302741918"), "US.13491208655302741918");
        let punctuation = r##"!"#$%&'()*+,-./:;<=>?@[\]^_`{|}~"##;
        assert_eq!(sqs_id(punctuation), punctuation);
        let longest = "a".repeat(MAX_ID_LEN);
        assert_eq!(sqs_id(&longest), longest);
    }

    #[test]
    fn other_ids_become_their_sha256() {
        for id in [
            "",
            "with space",
            "ñandú",
            "tab\there",
            &"a".repeat(MAX_ID_LEN + 1),
        ] {
            let mapped = sqs_id(id);
            assert_eq!(mapped.len(), 64, "{id:?}");
            assert!(mapped.bytes().all(|b| b.is_ascii_hexdigit()), "{id:?}");
            assert_eq!(mapped, sqs_id(id), "stable for {id:?}");
        }
        assert_eq!(
            sqs_id(""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_ne!(sqs_id("a b"), sqs_id("a  b"));
    }

    #[test]
    fn region_comes_from_the_queue_url() {
        assert_eq!(
            region_of_queue_url("https://sqs.eu-west-1.amazonaws.com/123456789012/turns.fifo")
                .as_deref(),
            Some("eu-west-1")
        );
        assert_eq!(
            region_of_queue_url("https://us-east-2.queue.amazonaws.com/123456789012/turns.fifo")
                .as_deref(),
            Some("us-east-2")
        );
        assert_eq!(
            region_of_queue_url("http://127.0.0.1:5000/123456789012/turns.fifo"),
            None
        );
        assert_eq!(
            region_of_queue_url("http://localhost:4566/000000000000/turns.fifo"),
            None
        );
        assert_eq!(region_of_queue_url("not a url"), None);
    }

    #[test]
    fn throttling_codes_are_transient() {
        assert!(is_throttling_code(
            "AWS.SimpleQueueService.RequestThrottled"
        ));
        assert!(is_throttling_code("ThrottlingException"));
        assert!(!is_throttling_code(
            "AWS.SimpleQueueService.NonExistentQueue"
        ));
        assert!(!is_throttling_code("InvalidParameterValue"));
    }

    #[tokio::test]
    async fn construction_needs_no_network() {
        use aws_config::Region;
        use aws_config::retry::RetryConfig;

        use crate::aws::CONNECT_TIMEOUT;

        let config = QueueConfig {
            queue_url: "https://sqs.eu-west-1.amazonaws.com/123456789012/turns.fifo"
                .parse()
                .unwrap(),
            endpoint_url: Some("http://127.0.0.1:9/".parse().unwrap()),
        };
        let started = std::time::Instant::now();
        let queue = SqsQueue::from_config(&config).await;
        assert!(
            started.elapsed() < std::time::Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(queue.queue_url(), config.queue_url.as_str());
        let sqs_config = queue.client().config();
        assert_eq!(sqs_config.region().map(Region::as_ref), Some("eu-west-1"));
        // What aws_config::load would have set.
        assert_eq!(
            sqs_config
                .timeout_config()
                .and_then(|t| t.connect_timeout()),
            Some(CONNECT_TIMEOUT)
        );
        assert_eq!(
            sqs_config.retry_config().map(|r| r.max_attempts()),
            Some(RetryConfig::standard().max_attempts())
        );
        assert!(sqs_config.http_client().is_some());
    }
}
