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
use crate::domain::{
    BrowserRecording, CustomerKey, FormSubmission, IdempotencyKey, SourceLimit, SubmissionStatus,
};
use crate::ingress::{Response, json_response};
use crate::metrics::{Figures, Metric};
use crate::queue::{QueueError, TurnJob, TurnQueue};
use crate::store::{SessionStore, StoreError};

/// The header a caller names its submission with: the same key is the same submission.
pub const IDEMPOTENCY_KEY_HEADER: HeaderName = HeaderName::from_static("idempotency-key");

/// The status every accepted form is answered with, whatever its outreach's outcome.
pub const ANSWERED_STATUS: &str = "accepted";

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

impl<S: SessionStore, Q: TurnQueue, B> FormIntake<S, Q, B> {
    /// Records the form once per idempotency key and queues its conversation while it is
    /// accepted and not started; answers 202 with the submission's id and `accepted`, whatever
    /// the outcome. Without a client key, the key is derived for the period `at` falls in. A
    /// browser's form comes with its `source`, whose hourly limit the store applies first (429
    /// past it, nothing recorded).
    pub(super) async fn submit(
        &self,
        form: ValidForm,
        client_key: Option<IdempotencyKey>,
        at: SystemTime,
        source: Option<SourceLimit>,
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
        let limits = self.config.outreach_limits();
        let recorded = match &source {
            None => self.store.record_form_submission(&submission, limits).await,
            Some(source) => match self
                .store
                .record_browser_form_submission(&submission, limits, source)
                .await
            {
                Ok(BrowserRecording::Recorded(recorded)) => Ok(recorded),
                Ok(BrowserRecording::Limited { retry_after }) => {
                    tracing::warn!(
                        per_hour = source.per_hour,
                        retry_after_seconds = retry_after.as_secs(),
                        "a browser's form was not recorded: its source reached the hourly limit"
                    );
                    return Err(FormError::TooManyForms { retry_after });
                }
                Err(error) => Err(error),
            },
        };
        let recorded = recorded.map_err(|error| match error {
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
            Figures::new()
                .add(Metric::OutreachHeld, 1.0)
                .saying("a form's outreach was held by the daily limit")
                .emit();
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

/// The browser path: a bot-check token instead of credentials, checked after the fields and
/// before the store, and the per-source limit.
#[cfg(test)]
mod browser_tests {
    use std::net::{IpAddr, Ipv4Addr};

    use http::header::{AUTHORIZATION, CONTENT_TYPE, HOST, RETRY_AFTER};
    use serde_json::{Value, json};

    use super::super::testing::*;
    use super::super::{BrowserForms, SourceIp, TURNSTILE_ACTION};
    use super::*;
    use crate::bot_check::BotCheckError;
    use crate::config::{BrowserFormConfig, Env};
    use crate::fakes::{FakeBotCheck, FakeQueue, FakeStore};

    struct Browser {
        intake: FormIntake<FakeStore, FakeQueue, FakeBotCheck>,
        store: FakeStore,
        queue: FakeQueue,
        bot_check: FakeBotCheck,
    }

    fn browser_config(limit: &str) -> BrowserFormConfig {
        let env = Env::from_pairs([
            ("FORM_TURNSTILE_SITE_KEY", "1x00000000000000000000AA"),
            (
                "FORM_TURNSTILE_SECRET",
                "1x0000000000000000000000000000000AA",
            ),
            ("FORM_BUSINESS_NAME", "Seguros Ana"),
            ("FORM_ALLOWED_ORIGINS", "https://www.example.com"),
            ("FORM_BROWSER_LIMIT_PER_HOUR", limit),
        ]);
        BrowserFormConfig::from_env(&env).unwrap().unwrap()
    }

    fn browser_with(limit: &str) -> Browser {
        let (store, queue, bot_check) = (
            FakeStore::default(),
            FakeQueue::default(),
            FakeBotCheck::default(),
        );
        let intake = FormIntake::new(store.clone(), queue.clone(), config())
            .with_clock(noon)
            .with_browser_forms(BrowserForms {
                config: browser_config(limit),
                bot_check: bot_check.clone(),
            });
        Browser {
            intake,
            store,
            queue,
            bot_check,
        }
    }

    const IP: IpAddr = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 9));

    impl Browser {
        async fn post(&self, form: &Value, ip: Option<IpAddr>) -> Response {
            let mut request = post()
                .header(CONTENT_TYPE, "application/json")
                .header(HOST, "forms.example.com:443")
                .body(form.to_string().into_bytes())
                .unwrap();
            if let Some(ip) = ip {
                request.extensions_mut().insert(SourceIp(ip));
            }
            self.intake.handle(&request).await
        }

        fn nothing_recorded(&self) {
            assert!(self.store.recorded().is_empty());
            assert!(self.store.sources().is_empty(), "no store call");
            assert!(self.queue.jobs().is_empty());
        }
    }

    fn with_token(form: Value, token: &str) -> Value {
        with(form, "cf-turnstile-response", json!(token))
    }

    #[tokio::test]
    async fn a_browser_form_with_a_good_token_is_checked_recorded_with_its_source_and_queued() {
        let b = browser_with("5");
        let answer = b.post(&with_token(valid_json(), "tok-1"), Some(IP)).await;
        assert_eq!(answer.status(), 202, "{}", answer.body());
        assert_eq!(body(&answer)["status"], "accepted");
        let checked = b.bot_check.checked();
        assert_eq!(checked.len(), 1);
        assert_eq!(checked[0].token, "tok-1");
        assert_eq!(checked[0].remote_ip, Some(IP));
        assert_eq!(checked[0].action, TURNSTILE_ACTION);
        assert_eq!(
            checked[0].hostnames,
            ["www.example.com", "forms.example.com"],
            "the allowed origins' hosts and the request's own, without its port"
        );
        let sources = b.store.sources();
        assert_eq!(sources.len(), 1);
        assert_eq!(sources[0].per_hour, 5);
        let expected = crate::signature::hmac_sha256_hex(SECRET.as_bytes(), &[b"203.0.113.9"]);
        assert_eq!(
            sources[0].source_hash, expected,
            "keyed hash of the address"
        );
        assert!(!sources[0].source_hash.contains("203"));
        let recorded = b.store.recorded();
        assert_eq!(recorded.len(), 1);
        assert!(
            !recorded[0].fields.contains_key("cf-turnstile-response"),
            "the token is no field"
        );
        assert_eq!(b.queue.jobs().len(), 1);
    }

    #[tokio::test]
    async fn a_urlencoded_browser_form_with_the_widgets_field_is_taken() {
        let b = browser_with("5");
        let form = "name=Ana&phone=5512345678&consent=on&cf-turnstile-response=tok-2";
        let request = post()
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(HOST, "forms.example.com")
            .body(form.as_bytes().to_vec())
            .unwrap();
        let answer = b.intake.handle(&request).await;
        assert_eq!(answer.status(), 202, "{}", answer.body());
        assert_eq!(b.bot_check.checked()[0].token, "tok-2");
    }

    #[tokio::test]
    async fn a_refused_missing_or_foreign_token_is_403_and_nothing_reaches_the_store() {
        let b = browser_with("5");
        let missing = b.post(&with_token(valid_json(), ""), Some(IP)).await;
        assert_eq!(error(&missing), err(403, "bot_check_failed", None));
        for refusal in [
            BotCheckError::Refused(vec!["timeout-or-duplicate".into()]),
            BotCheckError::Refused(vec!["invalid-input-response".into()]),
            BotCheckError::WrongHostname("evil.example.net".into()),
            BotCheckError::WrongAction("login".into()),
        ] {
            b.bot_check.answer(Some(refusal.clone()));
            let answer = b.post(&with_token(valid_json(), "tok"), Some(IP)).await;
            assert_eq!(
                error(&answer),
                err(403, "bot_check_failed", None),
                "{refusal:?}"
            );
        }
        b.nothing_recorded();
    }

    #[tokio::test]
    async fn the_bot_check_down_is_503_with_retry_after_and_fails_closed() {
        let b = browser_with("5");
        b.bot_check.answer(Some(BotCheckError::Unavailable(
            "siteverify answered 503".into(),
        )));
        let answer = b.post(&with_token(valid_json(), "tok"), Some(IP)).await;
        assert_eq!(error(&answer), err(503, "bot_check_unavailable", None));
        assert_eq!(header(&answer, RETRY_AFTER), Some("5"));
        assert!(!answer.body().contains("siteverify"), "{}", answer.body());
        b.nothing_recorded();
    }

    #[tokio::test]
    async fn the_fields_are_checked_before_the_token_is_spent() {
        let b = browser_with("5");
        let bad = with_token(with(valid_json(), "phone", json!("5")), "tok");
        let answer = b.post(&bad, Some(IP)).await;
        assert_eq!(error(&answer), err(422, "invalid_field", Some("phone")));
        assert!(b.bot_check.checked().is_empty(), "the token is still good");
        b.nothing_recorded();
    }

    #[tokio::test]
    async fn past_the_sources_limit_a_browser_form_is_429_and_servers_never_are() {
        let b = browser_with("2");
        for n in 0..2 {
            let form = with_token(
                with(valid_json(), "producto", json!(format!("p{n}"))),
                "tok",
            );
            assert_eq!(b.post(&form, Some(IP)).await.status(), 202);
        }
        let third = with_token(with(valid_json(), "producto", json!("p2")), "tok");
        let answer = b.post(&third, Some(IP)).await;
        assert_eq!(error(&answer), err(429, "too_many_forms", None));
        assert_eq!(header(&answer, RETRY_AFTER), Some("3600"));
        assert_eq!(b.store.recorded().len(), 2, "the third was not recorded");
        assert_eq!(b.queue.jobs().len(), 2);
        // A repeat of a recorded form is answered as before.
        let again = with_token(with(valid_json(), "producto", json!("p0")), "tok");
        assert_eq!(b.post(&again, Some(IP)).await.status(), 202);
        // Another source has its own count.
        let other = Some(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1)));
        assert_eq!(b.post(&third, other).await.status(), 202);
        // A server, from anywhere, is never limited.
        let request = post_json()
            .header(HOST, "forms.example.com")
            .body(
                with(valid_json(), "producto", json!("p9"))
                    .to_string()
                    .into_bytes(),
            )
            .unwrap();
        assert_eq!(b.intake.handle(&request).await.status(), 202);
        assert_eq!(
            b.store.sources().len(),
            5,
            "the server's form has no source"
        );
    }

    #[tokio::test]
    async fn without_a_source_address_forms_share_the_unknown_sources_limit() {
        let b = browser_with("1");
        assert_eq!(
            b.post(&with_token(valid_json(), "tok"), None)
                .await
                .status(),
            202
        );
        let unknown = crate::signature::hmac_sha256_hex(SECRET.as_bytes(), &[b"unknown"]);
        assert_eq!(b.store.sources()[0].source_hash, unknown);
        assert_eq!(b.bot_check.checked()[0].remote_ip, None);
        let second = with_token(with(valid_json(), "producto", json!("otro")), "tok");
        assert_eq!(b.post(&second, None).await.status(), 429);
    }

    #[tokio::test]
    async fn credentials_decide_first_and_without_browser_forms_a_browser_post_is_403() {
        let b = browser_with("5");
        // A wrong bearer beside a token is a server that got its secret wrong.
        let request = post()
            .header(CONTENT_TYPE, "application/json")
            .header(AUTHORIZATION, "Bearer nope")
            .body(with_token(valid_json(), "tok").to_string().into_bytes())
            .unwrap();
        let answer = b.intake.handle(&request).await;
        assert_eq!(error(&answer), err(401, "unauthorized", None));
        // No credentials, no token: 401 as before.
        let answer = b.post(&valid_json(), Some(IP)).await;
        assert_eq!(error(&answer), err(401, "unauthorized", None));
        assert!(b.bot_check.checked().is_empty());

        let servers_only = harness();
        let request = post()
            .header(CONTENT_TYPE, "application/json")
            .body(with_token(valid_json(), "tok").to_string().into_bytes())
            .unwrap();
        let answer = servers_only.intake.handle(&request).await;
        assert_eq!(error(&answer), err(403, "browser_forms_disabled", None));
        assert!(servers_only.store.recorded().is_empty());
    }
}
