//! Browsers' posts on the real stack: a Turnstile token checked by the real siteverify client
//! against its stand-in before anything is recorded, and the per-source limit in SQL. Without
//! a valid token nothing is recorded and neither Retell nor Graph hears of the form.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use http::header::{CONTENT_TYPE, HOST, RETRY_AFTER};
use http::{Method, Request};
use sandbox::turnstile_standin::SECRET as TURNSTILE_SECRET;
use sandbox::{LocalStack, RetellOperation, TurnstileStandIn};
use serde_json::{Value, json};
use shared::bot_check::TurnstileClient;
use shared::config::{BrowserFormConfig, Env};
use shared::domain::{
    BrowserRecording, CustomerKey, CustomerName, FormSubmission, IdempotencyKey, OutreachLimits,
    PhoneNumber, SourceLimit,
};
use shared::ingress::form::{BrowserForms, FormIntake, TURNSTILE_ACTION};
use shared::ingress::{Response, SourceIp};
use shared::store::{PostgrestStore, SessionStore};

use super::{Bridge, TestQueue, body, form, form_config, frozen_clock, post_json, unique_phone};

/// The host the page is served on: the request's `Host`, where the widget was solved.
const HOST_NAME: &str = "forms.example.com";

/// The form with browsers' posts, on the same stack, queue and stand-ins as [`Bridge`].
struct BrowserBridge {
    bridge: Bridge,
    turnstile: TurnstileStandIn,
    intake: FormIntake<PostgrestStore, TestQueue, TurnstileClient>,
}

impl BrowserBridge {
    fn new() -> BrowserBridge {
        let bridge = Bridge::new();
        let turnstile = TurnstileStandIn::start();
        let (verify_url, script_url) = (turnstile.verify_url(), turnstile.script_url());
        let env = Env::from_pairs([
            (
                "FORM_TURNSTILE_SITE_KEY",
                sandbox::turnstile_standin::SITE_KEY,
            ),
            ("FORM_TURNSTILE_SECRET", TURNSTILE_SECRET),
            ("FORM_TURNSTILE_VERIFY_URL", verify_url.as_str()),
            ("FORM_TURNSTILE_SCRIPT_URL", script_url.as_str()),
            ("FORM_BUSINESS_NAME", "Seguros Lupita"),
        ]);
        let config = BrowserFormConfig::from_env(&env)
            .expect("a valid configuration")
            .expect("browser forms configured");
        assert_eq!(config.limit_per_hour, 5, "the default");
        let bot_check = TurnstileClient::new(
            config.verify_url.as_str(),
            config.secret.clone(),
            shared::http::client(),
        );
        let intake = FormIntake::new(
            LocalStack::shared().store(),
            bridge.queue.clone(),
            form_config(),
        )
        .with_clock(frozen_clock)
        .with_browser_forms(BrowserForms { config, bot_check });
        BrowserBridge {
            bridge,
            turnstile,
            intake,
        }
    }

    /// A good token for this form's page.
    fn token(&self) -> String {
        self.turnstile.issue_token(HOST_NAME, TURNSTILE_ACTION)
    }

    /// Posts `form` as a browser does (JSON, no credentials) from `source`.
    async fn post(&self, form: &Value, source: IpAddr) -> Response {
        let request = Request::builder()
            .method(Method::POST)
            .uri("/form")
            .header(CONTENT_TYPE, "application/json")
            .header(HOST, HOST_NAME);
        self.send(request, form, source).await
    }

    async fn send(
        &self,
        request: http::request::Builder,
        form: &Value,
        source: IpAddr,
    ) -> Response {
        let mut request = request.body(form.to_string()).expect("a valid request");
        request.extensions_mut().insert(SourceIp(source));
        self.intake.handle(&request).await
    }

    /// Nobody was contacted: no Retell chat, no Graph request.
    async fn nobody_contacted(&self) {
        self.bridge.idle().await;
        assert!(self.bridge.retell.chats().is_empty());
        assert!(
            self.bridge
                .retell
                .requests(RetellOperation::CreateChat)
                .is_empty()
        );
        assert_eq!(self.bridge.graph.request_count(), 0);
    }
}

fn with_token(mut form: Value, token: &str) -> Value {
    form["cf-turnstile-response"] = json!(token);
    form
}

/// An address no other test of this run uses (from TEST-NET-3 and the process id).
fn unique_source() -> IpAddr {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id();
    IpAddr::V4(Ipv4Addr::new(10, (pid >> 8) as u8, pid as u8, n as u8))
}

/// Submissions recorded for the phone as typed (a Guadalajara number).
async fn recorded_for(phone: &str) -> i64 {
    let e164 = format!("+52{}", phone.replace(' ', ""));
    let db = LocalStack::shared().database().await.unwrap();
    db.query_one(
        "select count(*) from public.form_submissions where phone_e164 = $1",
        &[&e164],
    )
    .await
    .unwrap()
    .get(0)
}

fn code(answer: &Response) -> (u16, String) {
    (
        answer.status().as_u16(),
        body(answer)["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    )
}

#[tokio::test]
async fn a_browser_form_with_a_good_token_is_recorded_with_its_source_and_reaches_the_customer() {
    let b = BrowserBridge::new();
    let phone = unique_phone();
    let answer = b
        .post(
            &with_token(form("Lupita Pérez", &phone), &b.token()),
            unique_source(),
        )
        .await;
    assert_eq!(answer.status(), 202, "{}", answer.body());
    assert_eq!(body(&answer)["status"], "accepted");

    let verified = b.turnstile.requests();
    assert_eq!(verified.len(), 1);
    assert_eq!(verified[0].secret.as_deref(), Some(TURNSTILE_SECRET));
    assert!(verified[0].idempotency_key.is_some());
    assert!(verified[0].remoteip.as_deref().unwrap().starts_with("10."));

    assert_eq!(recorded_for(&phone).await, 1);
    let db = LocalStack::shared().database().await.unwrap();
    let e164 = format!("+52{}", phone.replace(' ', ""));
    let hash: Option<String> = db
        .query_one(
            "select source_hash from public.form_submissions where phone_e164 = $1",
            &[&e164],
        )
        .await
        .unwrap()
        .get(0);
    let hash = hash.expect("a browser's form has its source");
    assert_eq!(hash.len(), 64);
    assert!(!hash.contains("10."), "the address itself is not stored");

    b.bridge.idle().await;
    let sent = b.bridge.graph.accepted();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].message_type, "template");
    assert!(
        sent[0].body["template"]["components"][0]["parameters"]
            .to_string()
            .contains("Lupita Pérez")
    );
    assert_eq!(b.bridge.retell.chats().len(), 1);
}

#[tokio::test]
async fn without_a_valid_token_nothing_is_recorded_and_nobody_is_contacted() {
    let b = BrowserBridge::new();
    let source = unique_source();
    // A form refused for its fields does not spend its token: the fields are checked first.
    let good = b.token();
    let bad_phone = with_token(form("Rita", "123"), &good);
    let answer = b.post(&bad_phone, source).await;
    assert_eq!(answer.status(), 422, "{}", answer.body());
    assert_eq!(
        b.turnstile.request_count(),
        0,
        "the token was not sent to siteverify"
    );
    let first = b
        .post(&with_token(form("Rita", &unique_phone()), &good), source)
        .await;
    assert_eq!(first.status(), 202, "{}", first.body());
    b.bridge.idle().await;
    let contacted = (
        b.bridge.retell.chats().len(),
        b.bridge.graph.accepted().len(),
    );
    assert_eq!(contacted, (1, 1));

    let cases: Vec<(&str, Value, (u16, &str))> = vec![
        ("missing", form("Ana", "0"), (401, "unauthorized")),
        (
            "empty",
            with_token(form("Ana", "0"), ""),
            (403, "bot_check_failed"),
        ),
        (
            "wrong",
            with_token(form("Ana", "0"), "fail-this-token"),
            (403, "bot_check_failed"),
        ),
        (
            "expired",
            with_token(
                form("Ana", "0"),
                &b.turnstile.issue_expired_token(HOST_NAME, TURNSTILE_ACTION),
            ),
            (403, "bot_check_failed"),
        ),
        (
            "reused",
            with_token(form("Ana", "0"), &good),
            (403, "bot_check_failed"),
        ),
        (
            "another host",
            with_token(
                form("Ana", "0"),
                &b.turnstile
                    .issue_token("evil.example.net", TURNSTILE_ACTION),
            ),
            (403, "bot_check_failed"),
        ),
        (
            "another action",
            with_token(
                form("Ana", "0"),
                &b.turnstile.issue_token(HOST_NAME, "login"),
            ),
            (403, "bot_check_failed"),
        ),
    ];
    for (case, mut refused, expected) in cases {
        let phone = unique_phone();
        refused["phone"] = json!(phone);
        let answer = b.post(&refused, source).await;
        assert_eq!(
            code(&answer),
            (expected.0, expected.1.to_owned()),
            "{case}: {}",
            answer.body()
        );
        assert_eq!(recorded_for(&phone).await, 0, "{case}");
    }

    // siteverify down: fail closed, 503 with Retry-After, nothing recorded.
    b.turnstile.fail_for(Duration::from_secs(60));
    let phone = unique_phone();
    let answer = b
        .post(&with_token(form("Ana", &phone), &b.token()), source)
        .await;
    assert_eq!(
        code(&answer),
        (503, "bot_check_unavailable".to_owned()),
        "{}",
        answer.body()
    );
    assert_eq!(answer.headers()[RETRY_AFTER], "5");
    assert_eq!(recorded_for(&phone).await, 0);

    b.bridge.idle().await;
    assert_eq!(
        (
            b.bridge.retell.chats().len(),
            b.bridge.graph.accepted().len()
        ),
        contacted,
        "no Retell chat or template for any refused form"
    );
    assert_eq!(
        b.bridge.retell.requests(RetellOperation::CreateChat).len(),
        1
    );
}

#[tokio::test]
async fn siteverify_down_from_the_start_contacts_nobody() {
    let b = BrowserBridge::new();
    b.turnstile.fail_for(Duration::from_secs(60));
    let phone = unique_phone();
    let answer = b
        .post(
            &with_token(form("Ana", &phone), &b.token()),
            unique_source(),
        )
        .await;
    assert_eq!(code(&answer), (503, "bot_check_unavailable".to_owned()));
    assert_eq!(recorded_for(&phone).await, 0);
    b.nobody_contacted().await;
}

#[tokio::test]
async fn the_sixth_browser_form_from_one_source_within_the_hour_is_429_and_servers_are_never_limited()
 {
    let b = BrowserBridge::new();
    let source = unique_source();
    for n in 0..5 {
        let answer = b
            .post(
                &with_token(form(&format!("Cliente {n}"), &unique_phone()), &b.token()),
                source,
            )
            .await;
        assert_eq!(answer.status(), 202, "form {n}: {}", answer.body());
    }
    let phone = unique_phone();
    let sixth = b
        .post(&with_token(form("Sexta", &phone), &b.token()), source)
        .await;
    assert_eq!(
        code(&sixth),
        (429, "too_many_forms".to_owned()),
        "{}",
        sixth.body()
    );
    let retry_after: u64 = sixth.headers()[RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((3000..=3600).contains(&retry_after), "{retry_after}");
    assert_eq!(recorded_for(&phone).await, 0);

    // Another source has its own count.
    let other = b
        .post(
            &with_token(form("Otra", &unique_phone()), &b.token()),
            unique_source(),
        )
        .await;
    assert_eq!(other.status(), 202, "{}", other.body());

    // A server posting from the same address, however often, is never limited.
    for n in 0..3 {
        let phone = unique_phone();
        let answer = b
            .send(post_json(), &form(&format!("Servidor {n}"), &phone), source)
            .await;
        assert_eq!(answer.status(), 202, "{}", answer.body());
        assert_eq!(recorded_for(&phone).await, 1);
    }
    b.bridge.idle().await;
    assert_eq!(b.bridge.graph.accepted().len(), 5 + 1 + 3);
}

#[tokio::test]
async fn concurrent_browser_forms_from_one_source_never_exceed_the_limit() {
    let store = LocalStack::shared().store();
    let hash = shared::signature::hmac_sha256_hex(
        b"concurrency",
        &[format!("{}-{:?}", std::process::id(), std::time::SystemTime::now()).as_bytes()],
    );
    let source = SourceLimit {
        source_hash: hash,
        per_hour: 5,
    };
    let calls = (0..12).map(|n| {
        let (store, source) = (store.clone(), source.clone());
        async move {
            let phone = format!("+5281{:08}", (std::process::id() % 100_000) * 100 + n);
            let e164 = PhoneNumber::parse(&phone, shared::domain::CountryId::MX).unwrap();
            let submission = FormSubmission {
                idempotency_key: IdempotencyKey::parse(format!("browser-{}", phone)).unwrap(),
                customer_key: CustomerKey::from_phone(&e164),
                phone: e164,
                name: CustomerName::parse("Concurrente").unwrap(),
                fields: Default::default(),
            };
            store
                .record_browser_form_submission(&submission, OutreachLimits::DEFAULT, &source)
                .await
                .unwrap()
        }
    });
    let answers = futures::future::join_all(calls).await;
    let recorded = answers
        .iter()
        .filter(|a| matches!(a, BrowserRecording::Recorded(_)))
        .count();
    assert_eq!(recorded, 5, "{answers:?}");
    assert!(answers.iter().all(|a| match a {
        BrowserRecording::Limited { retry_after } => retry_after.as_secs() > 3500,
        BrowserRecording::Recorded(r) => r.is_new,
    }));
}
