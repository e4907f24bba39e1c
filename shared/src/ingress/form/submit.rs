//! An accepted form, once: its idempotency key (the caller's `Idempotency-Key`, or one derived
//! from what was submitted), recorded with the store's decision on its outreach, its
//! conversation queued when the customer may be contacted, and the 202.
//!
//! The store decides atomically (see `record_form_submission`): a customer who opted out or
//! whom a person has taken over is skipped, so is one whose conversation is live (within the
//! cooldown), and past the day's limit forms are held. The answer is the same for every
//! outcome, so that the form cannot tell anyone who opted out; the outcome is in
//! `form_submissions` for staff. A held form is an ERROR line and an `OutreachHeld` metric.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::header::HeaderMap;
use http::{HeaderName, StatusCode};
use sha2::{Digest, Sha256};

use super::fields::ValidForm;
use super::{FormError, FormIntake};
use crate::domain::{CustomerKey, FormSubmission, IdempotencyKey, SubmissionStatus};
use crate::ingress::{Response, json_response};
use crate::queue::{QueueError, TurnJob, TurnQueue};
use crate::store::{SessionStore, StoreError};
use crate::telemetry;

/// The header a caller names its submission with: the same key is the same submission.
pub const IDEMPOTENCY_KEY_HEADER: HeaderName = HeaderName::from_static("idempotency-key");

/// The status every accepted form is answered with, whatever its outreach's outcome.
pub const ANSWERED_STATUS: &str = "accepted";

/// The metric (in [`telemetry::METRIC_NAMESPACE`]) counting forms held by the daily limit.
pub const OUTREACH_HELD_METRIC: &str = "OutreachHeld";

/// Submissions of the same form within one such period (aligned to the clock) are one
/// submission, when the caller sends no `Idempotency-Key`.
pub const DEDUPLICATION_PERIOD: Duration = Duration::from_secs(10 * 60);

/// The caller's `Idempotency-Key`, if it sent one: 1 to 200 visible characters once trimmed.
pub(super) fn client_key(headers: &HeaderMap) -> Result<Option<IdempotencyKey>, FormError> {
    let Some(value) = headers.get(&IDEMPOTENCY_KEY_HEADER) else {
        return Ok(None);
    };
    let text = value
        .to_str()
        .map_err(|_| FormError::InvalidIdempotencyKey)?;
    IdempotencyKey::parse(text.trim())
        .map(Some)
        .map_err(|_| FormError::InvalidIdempotencyKey)
}

/// The idempotency key of a submission sent without one: a SHA-256 of the customer, the name,
/// the extra fields (sorted, as the map keeps them) and the [`DEDUPLICATION_PERIOD`] `at` falls
/// in. Every part is length-prefixed, so no two different forms hash the same bytes.
pub fn derived_idempotency_key(
    customer: &CustomerKey,
    name: &str,
    fields: &BTreeMap<String, String>,
    at: SystemTime,
) -> IdempotencyKey {
    let period = at.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()
        / DEDUPLICATION_PERIOD.as_secs();
    let mut hasher = Sha256::new();
    let mut part = |bytes: &[u8]| {
        hasher.update((bytes.len() as u64).to_be_bytes());
        hasher.update(bytes);
    };
    part(b"form-intake/v1");
    part(customer.as_str().as_bytes());
    part(name.as_bytes());
    for (field, value) in fields {
        part(field.as_bytes());
        part(value.as_bytes());
    }
    part(&period.to_be_bytes());
    // Not input: 69 characters of "form-" and hex always make a key.
    IdempotencyKey::parse(format!("form-{}", hex::encode(hasher.finalize())))
        .expect("69 printable characters")
}

impl<S: SessionStore, Q: TurnQueue> FormIntake<S, Q> {
    /// Records the form once per idempotency key and queues its conversation while it is
    /// accepted and not started; answers 202 with the submission's id and `accepted`, whatever
    /// the outcome. Without a client key, the key is derived for the period `at` falls in.
    pub(super) async fn submit(
        &self,
        form: ValidForm,
        client_key: Option<IdempotencyKey>,
        at: SystemTime,
    ) -> Result<Response, FormError> {
        let span = tracing::Span::current();
        let customer_key = CustomerKey::from_phone(&form.phone);
        span.record("customer", tracing::field::display(customer_key.masked()));
        let key_source = if client_key.is_some() {
            "header"
        } else {
            "derived"
        };
        let idempotency_key = client_key.unwrap_or_else(|| {
            derived_idempotency_key(&customer_key, form.name.as_str(), &form.fields, at)
        });
        let submission = FormSubmission {
            idempotency_key,
            customer_key: customer_key.clone(),
            phone: form.phone,
            name: form.name,
            fields: form.fields,
        };
        let recorded = self
            .store
            .record_form_submission(&submission, self.config.outreach_limits())
            .await
            .map_err(|error| match error {
                StoreError::Conflict(_) => FormError::IdempotencyKeyReused {
                    from_header: key_source == "header",
                },
                StoreError::Unavailable(_) => FormError::Unavailable(error.into()),
                _ => FormError::Internal(error.into()),
            })?;
        let submission_id = recorded.submission_id;
        span.record("submission_id", tracing::field::display(submission_id));
        // Only an accepted outreach is queued. One still queued may be one whose job never
        // reached the queue (an earlier enqueue failed): queue it again. The queue drops a
        // repeat of the same id.
        if recorded.status == SubmissionStatus::Queued {
            let job = TurnJob::StartConversation {
                customer_key,
                submission_id,
            };
            self.queue
                .enqueue(&job, &submission_id.to_string())
                .await
                .map_err(|error| match error {
                    QueueError::Unavailable(_) => FormError::Unavailable(error.into()),
                    QueueError::Rejected(_) => FormError::Internal(error.into()),
                })?;
        }
        let status = status_name(recorded.status);
        let outcome_reason = recorded.outcome_reason.map(|reason| reason.as_str());
        tracing::info!(
            is_new = recorded.is_new,
            status,
            outcome_reason,
            key_source,
            "form submission accepted"
        );
        if recorded.is_new && recorded.status == SubmissionStatus::Held {
            let daily_limit = self.config.outreach_daily_limit;
            tracing::error!(
                daily_limit,
                "a form's outreach was held: the day's limit of outreaches is reached, the \
                 customer was not contacted (raise OUTREACH_DAILY_LIMIT, or contact them by hand)"
            );
            telemetry::emit_metric(
                OUTREACH_HELD_METRIC,
                1.0,
                "a form's outreach was held by the daily limit",
            );
        }
        let answer =
            serde_json::json!({ "submission_id": submission_id, "status": ANSWERED_STATUS });
        Ok(json_response(StatusCode::ACCEPTED, &answer))
    }
}

/// The submission's status as stored, for the log.
fn status_name(status: SubmissionStatus) -> &'static str {
    match status {
        SubmissionStatus::Queued => "queued",
        SubmissionStatus::Started => "started",
        SubmissionStatus::Failed => "failed",
        SubmissionStatus::Skipped => "skipped",
        SubmissionStatus::Held => "held",
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;
    use serde_json::json;

    use super::super::testing::*;
    use super::*;
    use crate::config::FormConfig;
    use crate::domain::{OutcomeReason, OutreachLimits, SubmissionId};
    use crate::store::PostgrestError;

    #[test]
    fn the_derived_key_is_the_same_for_the_same_form_in_the_same_period() {
        let customer = CustomerKey::from_whatsapp_id("525512345678").unwrap();
        let fields = BTreeMap::from([("producto".to_owned(), "auto".to_owned())]);
        let at = noon();
        let key = derived_idempotency_key(&customer, "Ana", &fields, at);
        assert_eq!(key.as_str().len(), 5 + 64);
        assert_eq!(
            key,
            derived_idempotency_key(&customer, "Ana", &fields, at + Duration::from_secs(60)),
            "a minute later, same period"
        );
        let field = |name: &str, value: &str| BTreeMap::from([(name.to_owned(), value.to_owned())]);
        let other_customer = CustomerKey::from_whatsapp_id("525512345679").unwrap();
        let different = [
            derived_idempotency_key(&other_customer, "Ana", &fields, at),
            derived_idempotency_key(&customer, "Ana María", &fields, at),
            derived_idempotency_key(&customer, "Ana", &field("producto", "moto"), at),
            derived_idempotency_key(&customer, "Ana", &BTreeMap::new(), at),
            derived_idempotency_key(&customer, "Ana", &fields, at + DEDUPLICATION_PERIOD),
            // Shifting bytes between parts changes the key (length-prefixed parts).
            derived_idempotency_key(&customer, "Ana", &field("producto", "aut"), at),
            derived_idempotency_key(&customer, "Ana", &field("productoa", "uto"), at),
        ];
        for other in &different {
            assert_ne!(key, *other);
        }
    }

    #[test]
    fn the_idempotency_key_header_is_trimmed_and_bounded() {
        let key = |value: &[u8]| {
            let mut headers = HeaderMap::new();
            headers.insert(
                IDEMPOTENCY_KEY_HEADER,
                HeaderValue::from_bytes(value).unwrap(),
            );
            client_key(&headers).map(|key| key.map(String::from))
        };
        assert_eq!(client_key(&HeaderMap::new()).unwrap(), None);
        assert_eq!(key(b" lead-7f3c ").unwrap().as_deref(), Some("lead-7f3c"));
        let longest = "k".repeat(200);
        assert_eq!(key(longest.as_bytes()).unwrap(), Some(longest));
        for bad in [
            &b""[..],
            b"  ",
            "k".repeat(201).as_bytes(),
            // Not visible ASCII (control characters cannot reach here: `http` refuses them).
            b"cl\xc3\xa9",
        ] {
            let error = key(bad).unwrap_err();
            assert_eq!(
                refusal(&error),
                (
                    400,
                    "invalid_idempotency_key".into(),
                    Some("Idempotency-Key".into())
                ),
                "{bad:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_bad_idempotency_key_gets_400_naming_the_header() {
        let h = harness();
        let request = post_json().header(IDEMPOTENCY_KEY_HEADER, "k".repeat(201));
        let response = h.send(request, valid_json().to_string()).await;
        assert_eq!(
            error(&response),
            err(400, "invalid_idempotency_key", Some("Idempotency-Key"))
        );
        let request = post_json().header(IDEMPOTENCY_KEY_HEADER, "k".repeat(200));
        let response = h.send(request, valid_json().to_string()).await;
        assert_eq!(response.status(), 202);
    }

    #[tokio::test]
    async fn the_same_form_twice_is_one_submission_and_one_job() {
        let h = harness();
        let first = h.json(&valid_json()).await;
        // The same form, in another order, phone written otherwise: the same submission.
        let again = json!({
            "cliente_nuevo": false, "edad": 34, "producto": "seguro de auto",
            "consent": true, "phone": "+52 1 55 1234 5678", "name": "Lupita Pérez",
        });
        let second = h.json(&again).await;
        assert_eq!([first.status(), second.status()], [202, 202]);
        assert_eq!(
            body(&first)["submission_id"],
            body(&second)["submission_id"]
        );
        let recorded = h.store.recorded();
        assert_eq!(recorded[0].idempotency_key, recorded[1].idempotency_key);
        // Queued still: queued again with the same deduplication id (the queue drops it).
        let jobs = h.queue.jobs();
        assert_eq!(jobs.len(), 2);
        assert_eq!(jobs[0], jobs[1]);

        // Once started (or failed), a repeat queues nothing, and answers as before.
        let id = body(&first)["submission_id"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        let id = SubmissionId(id);
        h.store.set_status(id, SubmissionStatus::Started);
        let third = h.json(&valid_json()).await;
        assert_eq!(body(&third), body(&first));
        assert_eq!(h.queue.jobs().len(), 2);
        h.store.set_status(id, SubmissionStatus::Failed);
        let fourth = h.json(&valid_json()).await;
        assert_eq!(
            (fourth.status().as_u16(), body(&fourth)),
            (202, body(&first))
        );
        assert_eq!(h.queue.jobs().len(), 2);
    }

    #[tokio::test]
    async fn skipped_and_held_forms_queue_nothing_and_are_answered_as_an_accepted_one() {
        let h = harness();
        let accepted = h.json(&valid_json()).await;
        assert_eq!(h.queue.jobs().len(), 1);
        let shape = |response: &Response| {
            let mut answer = body(response);
            let id = answer["submission_id"].take();
            assert!(id.as_str().unwrap().parse::<uuid::Uuid>().is_ok(), "{id}");
            (
                response.status(),
                response.headers().clone(),
                answer,
                response.body().len(),
            )
        };
        assert_eq!(
            body(&accepted)["status"],
            "accepted",
            "not the stored status"
        );
        for (n, (status, reason)) in [
            (SubmissionStatus::Skipped, OutcomeReason::OptedOut),
            (SubmissionStatus::Skipped, OutcomeReason::Paused),
            (SubmissionStatus::Skipped, OutcomeReason::ConversationLive),
            (SubmissionStatus::Held, OutcomeReason::DailyLimit),
        ]
        .into_iter()
        .enumerate()
        {
            h.store.decide(Some((status, reason)));
            let form = with(valid_json(), "producto", json!(format!("otro {n}")));
            let answer = h.json(&form).await;
            assert_eq!(shape(&answer), shape(&accepted), "{reason}");
            // Repeated, too.
            assert_eq!(shape(&h.json(&form).await), shape(&accepted), "{reason}");
        }
        assert_eq!(h.queue.jobs().len(), 1, "only the accepted form was queued");
    }

    #[tokio::test]
    async fn the_configured_limits_go_to_the_store() {
        let h = harness_with(FormConfig {
            outreach_cooldown: Duration::from_secs(3 * 3600),
            outreach_daily_limit: 42,
            ..config()
        });
        assert_eq!(h.json(&valid_json()).await.status(), 202);
        assert_eq!(
            h.store.limits(),
            [OutreachLimits {
                cooldown: Duration::from_secs(3 * 3600),
                daily_limit: 42
            }]
        );
        let defaults = harness();
        defaults.json(&valid_json()).await;
        assert_eq!(defaults.store.limits(), [OutreachLimits::DEFAULT]);
    }

    #[tokio::test]
    async fn a_different_field_is_another_submission() {
        let h = harness();
        let first = h.json(&valid_json()).await;
        let second = h
            .json(&with(valid_json(), "producto", json!("seguro de moto")))
            .await;
        assert_ne!(
            body(&first)["submission_id"],
            body(&second)["submission_id"]
        );
        let recorded = h.store.recorded();
        assert_ne!(recorded[0].idempotency_key, recorded[1].idempotency_key);
        assert_eq!(h.queue.jobs().len(), 2);
    }

    #[tokio::test]
    async fn the_idempotency_key_header_wins_and_its_reuse_for_another_phone_is_409() {
        let h = harness();
        let keyed = || post_json().header(IDEMPOTENCY_KEY_HEADER, "lead-7f3c");
        let first = h.send(keyed(), valid_json().to_string()).await;
        assert_eq!(first.status(), 202);
        assert_eq!(h.store.recorded()[0].idempotency_key.as_str(), "lead-7f3c");
        // Another form with the same key and customer: the first submission.
        let other_form = with(valid_json(), "producto", json!("otro"));
        let second = h.send(keyed(), other_form.to_string()).await;
        assert_eq!(
            body(&first)["submission_id"],
            body(&second)["submission_id"]
        );
        // The same key for another phone.
        let other_phone = with(valid_json(), "phone", json!("81 2345 6789"));
        let response = h.send(keyed(), other_phone.to_string()).await;
        assert_eq!(
            error(&response),
            err(409, "idempotency_key_reused", Some("Idempotency-Key"))
        );
        assert_eq!(h.queue.jobs().len(), 2, "nothing queued for the conflict");
    }

    #[tokio::test]
    async fn a_derived_key_reused_for_another_phone_is_409_naming_no_header() {
        let h = harness();
        let customer = CustomerKey::from_whatsapp_id("5215599998888").unwrap();
        let form = json!({"name": "Ana", "phone": "5512345678", "consent": true});
        let own = CustomerKey::from_whatsapp_id("525512345678").unwrap();
        let key = derived_idempotency_key(&own, "Ana", &BTreeMap::new(), noon());
        h.store.claim_key(key.as_str(), customer);
        let response = h.json(&form).await;
        assert_eq!(error(&response), err(409, "idempotency_key_reused", None));
    }

    #[tokio::test]
    async fn store_unavailable_is_503_with_retry_after_and_other_errors_500_without_internals() {
        let h = harness();
        h.store.fail_next(StoreError::Unavailable(
            "connection refused to 10.0.0.7".into(),
        ));
        let response = h.json(&valid_json()).await;
        assert_eq!(error(&response), err(503, "unavailable", None));
        assert_eq!(header(&response, http::header::RETRY_AFTER), Some("5"));
        assert!(!response.body().contains("10.0.0.7"));

        h.store
            .fail_next(StoreError::Rejected(PostgrestError::from_body(
            400,
            br#"{"code":"22P02","message":"invalid input syntax for type uuid: secret-internal"}"#,
        )));
        let response = h.json(&valid_json()).await;
        assert_eq!(error(&response), err(500, "internal_error", None));
        assert!(!response.body().contains("secret-internal"));
        assert!(!response.body().contains("22P02"));
        assert!(h.queue.jobs().is_empty());
    }

    #[tokio::test]
    async fn queue_unavailable_is_503_and_the_retry_queues_the_recorded_submission() {
        let h = harness();
        h.queue
            .fail_next(QueueError::Unavailable("sqs timed out".into()));
        let response = h.json(&valid_json()).await;
        assert_eq!(error(&response), err(503, "unavailable", None));
        assert_eq!(header(&response, http::header::RETRY_AFTER), Some("5"));
        assert!(
            body(&response)["error"]["message"]
                .as_str()
                .unwrap()
                .contains("retry")
        );
        assert_eq!(
            h.store.recorded().len(),
            1,
            "recorded before the queue failed"
        );
        assert!(h.queue.jobs().is_empty());

        let retry = h.json(&valid_json()).await;
        assert_eq!(retry.status(), 202, "{}", retry.body());
        let jobs = h.queue.jobs();
        assert_eq!(jobs.len(), 1);
        assert_eq!(body(&retry)["submission_id"], jobs[0].1);

        h.queue.fail_next(QueueError::Rejected("too big".into()));
        let response = h.json(&with(valid_json(), "producto", json!("otro"))).await;
        assert_eq!(error(&response), err(500, "internal_error", None));
        assert!(!response.body().contains("too big"));
    }
}
