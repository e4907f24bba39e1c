//! The form-intake entry point: API Gateway's request (HTTP API, payload 2.0) in, the form's
//! answer out. Everything the form decides is in [`shared::ingress::form`].

use lambda_http::{Body, Request, Response};
use shared::ingress::form::FormIntake;
use shared::queue::TurnQueue;
use shared::store::SessionStore;

/// What the function reads from its environment at INIT.
#[derive(Debug)]
pub struct Config {
    pub store: shared::config::StoreConfig,
    pub queue: shared::config::QueueConfig,
    pub form: shared::config::FormConfig,
}

impl Config {
    pub fn from_env(env: &shared::config::Env) -> Result<Self, shared::config::ConfigError> {
        Ok(Self {
            store: shared::config::StoreConfig::from_env(env)?,
            queue: shared::config::QueueConfig::from_env(env)?,
            form: shared::config::FormConfig::from_env(env)?,
        })
    }
}

/// Hands the method, the headers and the raw body (API Gateway's base64 already decoded) to
/// the form, and its answer back.
pub async fn handle_request<S: SessionStore, Q: TurnQueue>(
    intake: &FormIntake<S, Q>,
    request: Request,
) -> Response<Body> {
    // A header value that is not visible ASCII cannot be a credential, a type or an origin.
    let headers: Vec<(&str, &str)> = request
        .headers()
        .iter()
        .filter_map(|(name, value)| Some((name.as_str(), value.to_str().ok()?)))
        .collect();
    let answer = intake
        .handle(request.method().as_str(), &headers, request.body().as_ref())
        .await;
    answer.into_http()
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use serde_json::Value;
    use shared::config::FormConfig;
    use shared::domain::{CountryId, CustomerKey};
    use shared::fakes::{FakeQueue, FakeStore};
    use shared::queue::{QueueError, TurnJob};
    use shared::store::StoreError;

    use super::*;

    /// The secret the fixtures' bearer tokens and signatures use.
    const SECRET: &str = "form-secret-3f9a";

    struct Harness {
        intake: FormIntake<FakeStore, FakeQueue>,
        store: FakeStore,
        queue: FakeQueue,
    }

    fn harness_with(max_body_bytes: usize) -> Harness {
        let (store, queue) = (FakeStore::default(), FakeQueue::default());
        let config = FormConfig {
            shared_secret: SECRET.to_owned().into(),
            default_country: CountryId::MX,
            allowed_origins: vec!["https://www.example.com".into()],
            max_body_bytes,
        };
        Harness {
            // A fixed clock: the derived idempotency key's period cannot turn mid-test.
            intake: FormIntake::new(store.clone(), queue.clone(), config)
                .with_clock(|| UNIX_EPOCH + Duration::from_secs(1_795_608_030)),
            store,
            queue,
        }
    }

    fn harness() -> Harness {
        harness_with(FormConfig::DEFAULT_MAX_BODY_BYTES)
    }

    /// A fixture as Lambda hands it to `lambda_http`.
    fn fixture(name: &str) -> Request {
        let path = format!("{}/tests/fixtures/{name}.json", env!("CARGO_MANIFEST_DIR"));
        let event = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        lambda_http::request::from_str(&event).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn header<'a>(response: &'a Response<Body>, name: &str) -> Option<&'a str> {
        response.headers().get(name).map(|v| v.to_str().unwrap())
    }

    fn json_body(response: &Response<Body>) -> Value {
        match response.body() {
            Body::Text(text) => serde_json::from_str(text).unwrap(),
            other => panic!("not a JSON text body: {other:?}"),
        }
    }

    /// The status, error code and field of an error response.
    fn error(response: &Response<Body>) -> (u16, String, Option<String>) {
        let body = json_body(response);
        (
            response.status().as_u16(),
            body["error"]["code"].as_str().unwrap().to_owned(),
            body["error"]["field"].as_str().map(str::to_owned),
        )
    }

    fn err(status: u16, code: &str, field: Option<&str>) -> (u16, String, Option<String>) {
        (status, code.to_owned(), field.map(str::to_owned))
    }

    #[tokio::test]
    async fn a_browser_post_with_the_bearer_token_is_accepted_with_cors() {
        let h = harness();
        let response = handle_request(&h.intake, fixture("post_json_bearer")).await;
        assert_eq!(response.status(), 202);
        assert_eq!(header(&response, "content-type"), Some("application/json"));
        assert_eq!(
            header(&response, "access-control-allow-origin"),
            Some("https://www.example.com")
        );
        let body = json_body(&response);
        assert_eq!(body["status"], "queued");
        let submission = &h.store.recorded()[0];
        assert_eq!(submission.name, "Lupita Pérez");
        assert_eq!(submission.customer_key.as_str(), "525512345678");
        assert_eq!(submission.fields["utm_source"], "google");
        let jobs = h.queue.jobs();
        assert!(
            matches!(&jobs[..], [(TurnJob::StartConversation { submission_id, .. }, dedup)]
                if body["submission_id"] == submission_id.to_string() && *dedup == submission_id.to_string())
        );
    }

    #[tokio::test]
    async fn a_base64_encoded_urlencoded_body_is_decoded_before_its_signature_is_checked() {
        let h = harness();
        let request = fixture("post_urlencoded_base64_signed");
        assert!(
            matches!(request.body(), Body::Binary(_)),
            "lambda_http decoded the base64 body"
        );
        let response = handle_request(&h.intake, request).await;
        assert_eq!(response.status(), 202, "{:?}", response.body());
        let submission = &h.store.recorded()[0];
        assert_eq!(submission.name, "José Luis García");
        assert_eq!(submission.customer_key.as_str(), "528123456789");
        assert_eq!(submission.fields["ciudad"], "Monterrey");
        assert_eq!(h.queue.jobs().len(), 1);
    }

    #[tokio::test]
    async fn the_same_fixture_twice_is_one_submission() {
        let h = harness();
        let first = json_body(&handle_request(&h.intake, fixture("post_json_bearer")).await);
        let second = json_body(&handle_request(&h.intake, fixture("post_json_bearer")).await);
        assert_eq!(first["submission_id"], second["submission_id"]);
    }

    #[tokio::test]
    async fn a_preflight_gets_204_with_cors_headers() {
        let h = harness();
        let response = handle_request(&h.intake, fixture("options_preflight")).await;
        assert_eq!(response.status(), 204);
        assert!(response.body().as_ref().is_empty(), "a 204 has no body");
        assert_eq!(
            header(&response, "access-control-allow-origin"),
            Some("https://www.example.com")
        );
        assert_eq!(
            header(&response, "access-control-allow-methods"),
            Some("POST, OPTIONS")
        );
        assert!(
            header(&response, "access-control-allow-headers")
                .unwrap()
                .contains("idempotency-key")
        );
        assert_eq!(header(&response, "vary"), Some("origin"));
    }

    #[tokio::test]
    async fn each_refusal_has_its_status_and_names_the_field_at_fault() {
        let h = harness();
        for (name, expected) in [
            ("get_form", err(405, "method_not_allowed", None)),
            ("post_unauthenticated", err(401, "unauthorized", None)),
            ("post_wrong_signature", err(401, "unauthorized", None)),
            ("post_text_plain", err(415, "unsupported_media_type", None)),
            ("post_malformed_json", err(400, "malformed_body", None)),
            ("post_landline", err(422, "invalid_field", Some("phone"))),
        ] {
            let response = handle_request(&h.intake, fixture(name)).await;
            assert_eq!(error(&response), expected, "{name}");
            assert_eq!(
                header(&response, "content-type"),
                Some("application/json"),
                "{name}"
            );
        }
        let response = handle_request(&h.intake, fixture("post_unauthenticated")).await;
        assert_eq!(
            header(&response, "access-control-allow-origin"),
            Some("https://www.example.com"),
            "a browser can read the refusal"
        );
        assert_eq!(header(&response, "www-authenticate"), Some("Bearer"));
        assert!(h.store.recorded().is_empty());
        assert!(h.queue.jobs().is_empty());
    }

    #[tokio::test]
    async fn a_body_over_the_limit_gets_413() {
        let h = harness_with(64);
        let response = handle_request(&h.intake, fixture("post_json_bearer")).await;
        assert_eq!(error(&response), err(413, "payload_too_large", None));
    }

    #[tokio::test]
    async fn a_reused_idempotency_key_for_another_phone_gets_409() {
        let h = harness();
        let response = handle_request(&h.intake, fixture("post_json_idempotency_key")).await;
        assert_eq!(response.status(), 202);
        assert_eq!(
            h.store.recorded()[0].idempotency_key.as_str(),
            "lead-2026-11-25-0042"
        );
        // The same key, now for another customer.
        h.store.claim_key(
            "lead-2026-11-25-0042",
            CustomerKey::from_whatsapp_id("5215599998888").unwrap(),
        );
        let response = handle_request(&h.intake, fixture("post_json_idempotency_key")).await;
        assert_eq!(
            error(&response),
            err(409, "idempotency_key_reused", Some("Idempotency-Key"))
        );
    }

    #[tokio::test]
    async fn store_or_queue_down_gets_503_with_retry_after() {
        let h = harness();
        h.store
            .fail_next(StoreError::Unavailable("connection refused".into()));
        let response = handle_request(&h.intake, fixture("post_json_bearer")).await;
        assert_eq!(error(&response), err(503, "unavailable", None));
        assert_eq!(header(&response, "retry-after"), Some("5"));

        let h = harness();
        h.queue
            .fail_next(QueueError::Unavailable("SQS timed out".into()));
        let response = handle_request(&h.intake, fixture("post_json_bearer")).await;
        assert_eq!(error(&response), err(503, "unavailable", None));
        assert_eq!(header(&response, "retry-after"), Some("5"));
        assert_eq!(
            json_body(&response)["error"]["message"]
                .as_str()
                .map(|m| m.contains("retry")),
            Some(true)
        );
    }
}
