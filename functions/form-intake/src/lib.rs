//! The form-intake Lambda's configuration. API Gateway's request (HTTP API, payload 2.0) goes
//! to [`shared::ingress::form::FormIntake::handle`] as `lambda_http` hands it over: an
//! `http::Request` with the base64 body already decoded, and the address it came from
//! (`requestContext.http.sourceIp`) in its extensions as [`SourceIp`], which the form limits
//! browsers' posts by.

use lambda_http::RequestExt;
use lambda_http::request::RequestContext;
use shared::ingress::SourceIp;

/// The keys of the deployment's secret the function takes ([`shared::secrets::read_into`]):
/// those its [`Config`] reads.
pub const SECRETS: &[&str] = &[
    "SUPABASE_SERVICE_ROLE_KEY",
    "FORM_SHARED_SECRET",
    "FORM_TURNSTILE_SECRET",
];

/// Puts the address API Gateway saw the request come from into its extensions, for the form.
/// Without one (not an HTTP API request, or an address that does not parse) nothing is put:
/// the form then counts the request as from an unknown source.
pub fn with_source_ip(mut request: lambda_http::Request) -> lambda_http::Request {
    let source_ip = match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(context)) => context.http.source_ip.as_deref(),
        #[allow(unreachable_patterns)]
        _ => None,
    };
    if let Some(ip) = source_ip.and_then(|ip| ip.trim().parse().ok()) {
        request.extensions_mut().insert(SourceIp(ip));
    }
    request
}

/// What the function reads from its environment at INIT.
#[derive(Debug)]
pub struct Config {
    pub store: shared::config::StoreConfig,
    pub queue: shared::config::QueueConfig,
    pub form: shared::config::FormConfig,
    /// The page and browsers' posts, when `FORM_TURNSTILE_SITE_KEY` is set.
    pub browser: Option<shared::config::BrowserFormConfig>,
}

impl Config {
    pub fn from_env(env: &shared::config::Env) -> Result<Self, shared::config::ConfigError> {
        Ok(Self {
            store: shared::config::StoreConfig::from_env(env)?,
            queue: shared::config::QueueConfig::from_env(env)?,
            form: shared::config::FormConfig::from_env(env)?,
            browser: shared::config::BrowserFormConfig::from_env(env)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use lambda_http::http::header::{
        ALLOW, AUTHORIZATION, CONTENT_TYPE, HeaderName, RETRY_AFTER, VARY, WWW_AUTHENTICATE,
    };
    use lambda_http::{Body, IntoResponse, Request};
    use serde_json::Value;
    use shared::config::FormConfig;
    use shared::domain::{AllowedFields, CountryId, CustomerKey};
    use shared::fakes::{FakeBotCheck, FakeQueue, FakeStore};
    use shared::ingress::form::{BrowserForms, FormIntake};
    use shared::ingress::{Response, SourceIp};
    use shared::queue::{QueueError, TurnJob};
    use shared::store::StoreError;

    /// The secret the fixtures' bearer tokens and signatures use.
    const SECRET: &str = "form-secret-3f9a-0c5e-4b7d-9a21-e8f6";

    struct Harness {
        intake: FormIntake<FakeStore, FakeQueue>,
        store: FakeStore,
        queue: FakeQueue,
    }

    fn harness_config(max_body_bytes: usize) -> FormConfig {
        FormConfig {
            shared_secret: SECRET.to_owned().into(),
            default_country: CountryId::MX,
            fields: AllowedFields::parse("producto,ciudad").unwrap(),
            max_body_bytes,
            outreach_cooldown: FormConfig::DEFAULT_OUTREACH_COOLDOWN,
            outreach_daily_limit: FormConfig::DEFAULT_OUTREACH_DAILY_LIMIT,
        }
    }

    fn harness_with(max_body_bytes: usize) -> Harness {
        let (store, queue) = (FakeStore::default(), FakeQueue::default());
        let config = harness_config(max_body_bytes);
        Harness {
            // A fixed clock, when the fixtures arrived (their `timeEpoch`, and the time the signed
            // ones were signed at): signatures are fresh, and the derived idempotency key's
            // period cannot turn mid-test.
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

    impl Harness {
        /// The fixture's request, answered as the Lambda answers it.
        async fn answer(&self, name: &str) -> Response {
            self.intake.handle(&fixture(name)).await
        }
    }

    fn header(response: &Response, name: HeaderName) -> Option<&str> {
        response.headers().get(name).map(|v| v.to_str().unwrap())
    }

    fn json_body(response: &Response) -> Value {
        serde_json::from_str(response.body()).unwrap()
    }

    /// The status, error code and field of an error response.
    fn error(response: &Response) -> (u16, String, Option<String>) {
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

    /// No answer tells a browser it may read it.
    fn assert_no_cors(response: &Response) {
        let cors: Vec<_> = response
            .headers()
            .keys()
            .filter(|name| name.as_str().starts_with("access-control-"))
            .collect();
        assert!(cors.is_empty(), "{cors:?}");
        assert_eq!(header(response, VARY), None);
    }

    #[tokio::test]
    async fn a_server_post_with_the_bearer_token_is_accepted() {
        let h = harness();
        let response = h.answer("post_json_bearer").await;
        assert_eq!(response.status(), 202);
        assert_eq!(header(&response, CONTENT_TYPE), Some("application/json"));
        assert_no_cors(&response);
        let body = json_body(&response);
        assert_eq!(body["status"], "accepted");
        let submission = &h.store.recorded()[0];
        assert_eq!(submission.name.as_str(), "Lupita Pérez");
        assert_eq!(submission.customer_key.as_str(), "525512345678");
        assert_eq!(submission.fields["producto"], "seguro de auto");
        assert!(
            !submission.fields.contains_key("utm_source"),
            "not an allowed field: {:?}",
            submission.fields
        );
        let jobs = h.queue.jobs();
        assert!(
            matches!(&jobs[..], [(TurnJob::StartConversation { submission_id, .. }, dedup)]
                if body["submission_id"] == submission_id.to_string() && *dedup == submission_id.to_string())
        );
    }

    #[tokio::test]
    async fn a_base64_encoded_urlencoded_body_is_decoded_before_its_signature_is_checked() {
        // Signed with `t=<timeEpoch>,v1=<HMAC-SHA256 of "<t>.<decoded body>">`.
        let h = harness();
        let request = fixture("post_urlencoded_base64_signed");
        assert!(
            matches!(request.body(), Body::Binary(_)),
            "lambda_http decoded the base64 body"
        );
        let response = h.intake.handle(&request).await;
        assert_eq!(response.status(), 202, "{}", response.body());
        let submission = &h.store.recorded()[0];
        assert_eq!(submission.name.as_str(), "José Luis García");
        assert_eq!(submission.customer_key.as_str(), "528123456789");
        assert_eq!(submission.fields["ciudad"], "Monterrey");
        assert_eq!(h.queue.jobs().len(), 1);
    }

    #[tokio::test]
    async fn the_same_fixture_twice_is_one_submission() {
        let h = harness();
        let first = json_body(&h.answer("post_json_bearer").await);
        let second = json_body(&h.answer("post_json_bearer").await);
        assert_eq!(first["submission_id"], second["submission_id"]);
    }

    #[tokio::test]
    async fn a_signed_request_replayed_within_five_minutes_is_recorded_once() {
        let h = harness();
        let first = json_body(&h.answer("post_urlencoded_base64_signed").await);
        let replayed = json_body(&h.answer("post_urlencoded_base64_signed").await);
        assert_eq!(first["submission_id"], replayed["submission_id"]);
        let recorded = h.store.recorded();
        assert!(
            recorded
                .iter()
                .all(|s| s.idempotency_key == recorded[0].idempotency_key),
            "one submission"
        );
    }

    #[tokio::test]
    async fn a_browsers_preflight_gets_405_and_no_cors() {
        // API Gateway answers preflights itself (CorsConfiguration): one reaching us is refused.
        let h = harness();
        let response = h.answer("options_preflight").await;
        assert_eq!(error(&response), err(405, "method_not_allowed", None));
        assert_eq!(header(&response, ALLOW), Some("GET, POST"));
        assert_no_cors(&response);
    }

    #[tokio::test]
    async fn each_refusal_has_its_status_and_names_the_field_at_fault() {
        let h = harness();
        for (name, expected) in [
            // No FORM_TURNSTILE_SITE_KEY: no page.
            ("get_form", err(404, "no_page", None)),
            ("post_unauthenticated", err(401, "unauthorized", None)),
            ("post_wrong_signature", err(401, "unauthorized", None)),
            ("post_stale_signature", err(401, "unauthorized", None)),
            ("post_old_signature_scheme", err(401, "unauthorized", None)),
            ("post_text_plain", err(415, "unsupported_media_type", None)),
            ("post_malformed_json", err(400, "malformed_body", None)),
            ("post_landline", err(422, "invalid_field", Some("phone"))),
        ] {
            let response = h.answer(name).await;
            assert_eq!(error(&response), expected, "{name}");
            assert_eq!(
                header(&response, CONTENT_TYPE),
                Some("application/json"),
                "{name}"
            );
        }
        let response = h.answer("post_unauthenticated").await;
        assert_eq!(header(&response, WWW_AUTHENTICATE), Some("Bearer"));
        assert_no_cors(&response);
        for (name, says) in [
            ("post_stale_signature", "stale: signed 600 s ago"),
            ("post_old_signature_scheme", "t=<unix seconds>,v1="),
        ] {
            let message = json_body(&h.answer(name).await)["error"]["message"].to_string();
            assert!(message.contains(says), "{name}: {message}");
        }
        assert!(h.store.recorded().is_empty());
        assert!(h.queue.jobs().is_empty());
    }

    #[test]
    fn the_source_address_goes_from_the_request_context_into_the_extensions() {
        let request = crate::with_source_ip(fixture("post_json_bearer"));
        assert_eq!(
            request.extensions().get::<SourceIp>(),
            Some(&SourceIp("189.203.48.17".parse().unwrap()))
        );
    }

    #[tokio::test]
    async fn a_browser_post_is_limited_by_the_keyed_hash_of_api_gateways_source_ip() {
        let (store, queue, bot_check) = (
            FakeStore::default(),
            FakeQueue::default(),
            FakeBotCheck::default(),
        );
        let env = shared::config::Env::from_pairs([
            ("FORM_TURNSTILE_SITE_KEY", "1x00000000000000000000AA"),
            (
                "FORM_TURNSTILE_SECRET",
                "1x0000000000000000000000000000000AA",
            ),
            ("FORM_BUSINESS_NAME", "Seguros Ana"),
        ]);
        let browser = shared::config::BrowserFormConfig::from_env(&env)
            .unwrap()
            .unwrap();
        let intake = FormIntake::new(store.clone(), queue.clone(), harness_config(1024))
            .with_browser_forms(BrowserForms {
                config: browser,
                bot_check: bot_check.clone(),
            });
        // The bearer fixture as a browser sends it: no credentials, the widget's token.
        let request = fixture("post_json_bearer");
        let (mut parts, _) = request.into_parts();
        parts.headers.remove(AUTHORIZATION);
        let form =
            r#"{"name":"Ana","phone":"5512345678","consent":true,"cf-turnstile-response":"tok"}"#;
        let request = Request::from_parts(parts, Body::from(form));
        let response = intake.handle(&crate::with_source_ip(request)).await;
        assert_eq!(response.status(), 202, "{}", response.body());
        let checked = bot_check.checked();
        assert_eq!(checked[0].remote_ip, Some("189.203.48.17".parse().unwrap()));
        let hash = shared::signature::hmac_sha256_hex(SECRET.as_bytes(), &[b"189.203.48.17"]);
        assert_eq!(store.sources()[0].source_hash, hash);
        assert_eq!(store.sources()[0].per_hour, 5);
    }

    #[tokio::test]
    async fn a_body_over_the_limit_gets_413() {
        let h = harness_with(64);
        let response = h.answer("post_json_bearer").await;
        assert_eq!(error(&response), err(413, "payload_too_large", None));
    }

    #[tokio::test]
    async fn a_reused_idempotency_key_for_another_phone_gets_409() {
        let h = harness();
        let response = h.answer("post_json_idempotency_key").await;
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
        let response = h.answer("post_json_idempotency_key").await;
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
        let response = h.answer("post_json_bearer").await;
        assert_eq!(error(&response), err(503, "unavailable", None));
        assert_eq!(header(&response, RETRY_AFTER), Some("5"));

        let h = harness();
        h.queue
            .fail_next(QueueError::Unavailable("SQS timed out".into()));
        let response = h.answer("post_json_bearer").await;
        assert_eq!(error(&response), err(503, "unavailable", None));
        assert_eq!(header(&response, RETRY_AFTER), Some("5"));
        assert_eq!(
            json_body(&response)["error"]["message"]
                .as_str()
                .map(|m| m.contains("retry")),
            Some(true)
        );
    }

    #[tokio::test]
    async fn the_answer_goes_back_to_api_gateway_as_text() {
        let h = harness();
        let accepted = h.answer("post_json_bearer").await.into_response().await;
        assert_eq!(accepted.status(), 202);
        assert!(
            matches!(accepted.body(), Body::Text(text) if text.contains("submission_id")),
            "{:?}",
            accepted.body()
        );
        let preflight = h.answer("options_preflight").await.into_response().await;
        assert_eq!(preflight.status(), 405);
        assert!(
            matches!(preflight.body(), Body::Text(text) if text.contains("method_not_allowed")),
            "{:?}",
            preflight.body()
        );
    }
}
