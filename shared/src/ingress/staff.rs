//! The doors of staff and of the agent asking for them (the staff-inbound function):
//!
//! - `POST /staff`: Supabase's Database Webhook on `staff_messages`, sent on each insert with
//!   `Authorization: Bearer <STAFF_WEBHOOK_SECRET>` and the row as Supabase sends it
//!   (`{"type", "table", "schema", "record", "old_record"}`). The bearer is checked, in constant
//!   time, before the body is read. An insert into `public.staff_messages` queues one
//!   [`TurnJob::SendStaffMessage`] in the customer's group, deduplicated by `staff:<id>`, and is
//!   answered 202: the worker sends it between the customer's turns, never inside one. Anything
//!   else (an update, another table, a row already sent) is answered 200 and ignored. The queue
//!   down: 503, and Supabase's webhook (or the sweeper, a minute later) tries again; a repeated
//!   delivery is sent once (the deduplication id, then `claim_staff_message`).
//! - `POST /retell/functions/request_human`: the agent's Retell custom function. Retell signs
//!   each call (`x-retell-signature`, checked over the raw body with `RETELL_API_KEY` before
//!   anything else) and sends `{"name", "call" (or "chat"), "args"}`. The customer is the
//!   chat's `metadata.customer_key`, which the bridge set when it created the chat. The
//!   customer is paused (by `agent`, the reason from `args.reason`), a `human_requested` event
//!   recorded, staff are told ([`StaffNotifier`]), and the answer is the text the agent says
//!   (`REQUEST_HUMAN_REPLY`), a JSON string as Retell's examples answer. An alert that fails is
//!   logged at ERROR and does not fail the call: the customer is paused either way, and
//!   `needs_attention` lists them.
//! - `POST /retell`: Retell's chat webhooks, [`super::retell`].

use std::time::{SystemTime, UNIX_EPOCH};

use http::header::AUTHORIZATION;
use http::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::Value;

use super::retell::{RETELL_PATH, RetellWebhooks};
use super::{DoorError, Response, header_text, json_response};
use crate::config::StaffConfig;
use crate::domain::CustomerKey;
use crate::notify::{StaffAlert, StaffNotifier};
use crate::queue::{TurnJob, TurnQueue};
use crate::retell::webhook::{RetellBodyError, RetellSignatureError, signed_body};
use crate::signature::secrets_match;
use crate::store::{SessionStore, StoreError};
use crate::whatsapp::webhook::nul_free;

/// The largest body either route reads: a Retell call carries its transcript so far.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The route of the Database Webhook.
pub const STAFF_PATH: &str = "/staff";

/// Where the agent's custom functions are called: `<prefix><name>`.
pub const FUNCTIONS_PATH: &str = "/retell/functions/";

/// The one function the agent may call: ask for a person.
pub const REQUEST_HUMAN: &str = "request_human";

/// The table whose inserts the Database Webhook sends.
const STAFF_TABLE: &str = "staff_messages";

/// Who the agent's pause is recorded as.
const BY_AGENT: &str = "agent";

/// The longest reason kept from the agent's arguments, in characters.
const MAX_REASON_CHARS: usize = 500;

/// Why a request to staff-inbound was refused.
#[derive(Debug, thiserror::Error)]
pub enum StaffError {
    #[error("no such route: {0}")]
    NotFound(String),
    #[error("{0} is not POST")]
    MethodNotAllowed(Method),
    #[error("send Authorization: Bearer <STAFF_WEBHOOK_SECRET>")]
    MissingCredentials,
    #[error("the credentials are not valid")]
    InvalidCredentials,
    #[error(transparent)]
    Signature(#[from] RetellSignatureError),
    #[error("the body is over {MAX_BODY_BYTES} bytes")]
    PayloadTooLarge,
    #[error("the body is not the JSON expected: {0}")]
    MalformedBody(String),
    #[error("{field} is not valid: {reason}")]
    InvalidField { field: &'static str, reason: String },
    #[error("the agent has no function {0:?}; the bridge answers {REQUEST_HUMAN:?}")]
    UnknownFunction(String),
    /// The store or the queue is down: the sender retries, and nothing is done twice.
    #[error("could not {0}; retry")]
    Unavailable(&'static str),
    /// The store refused our key or its role (401/403): nothing can be recorded until the
    /// deployment is fixed.
    #[error("could not {0}: the store refused our key; retry")]
    StoreUnauthorized(&'static str),
    /// The store understood the request and refused it.
    #[error("the store refused to {what}: {why}")]
    Refused { what: &'static str, why: String },
}

impl From<RetellBodyError> for StaffError {
    fn from(error: RetellBodyError) -> Self {
        match error {
            RetellBodyError::Signature(error) => Self::Signature(error),
            RetellBodyError::TooLarge => Self::PayloadTooLarge,
        }
    }
}

impl DoorError for StaffError {
    fn status(&self) -> StatusCode {
        match self {
            Self::NotFound(_) | Self::UnknownFunction(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::MissingCredentials | Self::InvalidCredentials | Self::Signature(_) => {
                StatusCode::UNAUTHORIZED
            }
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::MalformedBody(_) => StatusCode::BAD_REQUEST,
            Self::InvalidField { .. } | Self::Refused { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Unavailable(_) | Self::StoreUnauthorized(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::NotFound(_) => "not_found",
            Self::MethodNotAllowed(_) => "method_not_allowed",
            Self::MissingCredentials | Self::InvalidCredentials => "unauthorized",
            Self::Signature(_) => "invalid_signature",
            Self::PayloadTooLarge => "payload_too_large",
            Self::MalformedBody(_) => "malformed_body",
            Self::InvalidField { .. } => "invalid_field",
            Self::UnknownFunction(_) => "unknown_function",
            Self::Unavailable(_) => "unavailable",
            Self::StoreUnauthorized(_) => "store_unauthorized",
            Self::Refused { .. } => "refused",
        }
    }

    fn field(&self) -> Option<&str> {
        match self {
            Self::InvalidField { field, .. } => Some(field),
            _ => None,
        }
    }

    fn add_headers(&self, headers: &mut http::HeaderMap) {
        match self {
            Self::MethodNotAllowed(_) => {
                headers.insert(http::header::ALLOW, http::HeaderValue::from_static("POST"));
            }
            Self::MissingCredentials | Self::InvalidCredentials => {
                headers.insert(
                    http::header::WWW_AUTHENTICATE,
                    http::HeaderValue::from_static("Bearer"),
                );
            }
            _ => {}
        }
    }
}

/// What a Database Webhook delivery says: Supabase's documented shape.
#[derive(Debug, Deserialize)]
struct DatabaseWebhook {
    #[serde(rename = "type")]
    kind: String,
    table: String,
    schema: String,
    record: Option<Value>,
}

/// A Retell custom function call: `{"name", "call", "args"}`; a chat agent's carries the chat
/// (Retell's docs name it `call`; `chat` is read too), and a function configured with
/// "arguments at root" has its arguments beside them.
#[derive(Debug, Deserialize)]
struct FunctionCall {
    name: Option<String>,
    call: Option<Value>,
    chat: Option<Value>,
    args: Option<Value>,
    /// At the root when the function sends its arguments there.
    reason: Option<Value>,
}

pub struct StaffDoor<S, Q, N> {
    store: S,
    queue: Q,
    notifier: N,
    webhook_secret: SecretString,
    retell_api_key: SecretString,
    request_human_reply: String,
    pause_minutes: Option<u32>,
    retell: RetellWebhooks,
}

impl<S: SessionStore, Q: TurnQueue, N: StaffNotifier> StaffDoor<S, Q, N> {
    pub fn new(store: S, queue: Q, notifier: N, config: &StaffConfig) -> Self {
        Self {
            store,
            queue,
            notifier,
            webhook_secret: config.webhook_secret.clone(),
            retell_api_key: config.retell_api_key.clone(),
            request_human_reply: config.request_human_reply.clone(),
            pause_minutes: config.pause_minutes,
            retell: RetellWebhooks::new(config),
        }
    }

    /// `POST /staff`, `POST /retell/functions/{name}` and `POST /retell`; anything else is
    /// refused.
    pub async fn handle<B: AsRef<[u8]>>(&self, request: &http::Request<B>) -> Response {
        let path = request.uri().path().trim_end_matches('/');
        let answer = if path.ends_with(STAFF_PATH) {
            self.staff(request).await
        } else if let Some((_, name)) = path.rsplit_once(FUNCTIONS_PATH) {
            self.function(name, request).await
        } else if path.ends_with(RETELL_PATH) {
            return self.retell.handle(&self.store, &self.queue, request).await;
        } else {
            Err(StaffError::NotFound(path.to_owned()))
        };
        answer.unwrap_or_else(|error| {
            match &error {
                // Logged at ERROR with their cause where they happen.
                StaffError::Unavailable(_) | StaffError::StoreUnauthorized(_) => {}
                refused => tracing::warn!(error = %refused, "staff-inbound refused"),
            }
            error.to_response()
        })
    }

    /// The Database Webhook: the bearer first, then the row.
    #[tracing::instrument(name = "staff_webhook", skip_all)]
    async fn staff<B: AsRef<[u8]>>(
        &self,
        request: &http::Request<B>,
    ) -> Result<Response, StaffError> {
        if request.method() != Method::POST {
            return Err(StaffError::MethodNotAllowed(request.method().clone()));
        }
        let token = header_text(request.headers(), AUTHORIZATION)
            .ok_or(StaffError::MissingCredentials)
            .and_then(|value| bearer_token(value).ok_or(StaffError::InvalidCredentials))?;
        if !secrets_match(
            token.as_bytes(),
            self.webhook_secret.expose_secret().as_bytes(),
        ) {
            return Err(StaffError::InvalidCredentials);
        }
        let body = request.body().as_ref();
        if body.len() > MAX_BODY_BYTES {
            return Err(StaffError::PayloadTooLarge);
        }
        let delivery: DatabaseWebhook =
            serde_json::from_slice(body).map_err(|e| StaffError::MalformedBody(e.to_string()))?;
        if delivery.kind != "INSERT" || delivery.table != STAFF_TABLE || delivery.schema != "public"
        {
            tracing::info!(
                kind = %delivery.kind, table = %delivery.table, schema = %delivery.schema,
                "not an insert into public.staff_messages: ignored"
            );
            return Ok(ignored("only inserts into public.staff_messages are sent"));
        }
        let record = delivery.record.ok_or(StaffError::InvalidField {
            field: "record",
            reason: "an insert carries the row".to_owned(),
        })?;
        let id = record
            .get("id")
            .and_then(Value::as_i64)
            .filter(|id| *id > 0)
            .ok_or_else(|| StaffError::InvalidField {
                field: "record.id",
                reason: "a staff message's id is a positive integer".to_owned(),
            })?;
        let customer_key = record
            .get("customer_key")
            .and_then(Value::as_str)
            .ok_or_else(|| "missing".to_owned())
            .and_then(|key| CustomerKey::try_from(key.to_owned()).map_err(|e| e.to_string()))
            .map_err(|reason| StaffError::InvalidField {
                field: "record.customer_key",
                reason,
            })?;
        // Rows the bridge itself inserts already sent (the business app's echoes) need nothing.
        if let Some(status) = record
            .get("status")
            .and_then(Value::as_str)
            .filter(|status| *status != "queued")
        {
            tracing::info!(id, status, "a staff message not queued: ignored");
            return Ok(ignored("the staff message is not queued"));
        }
        let job = TurnJob::SendStaffMessage {
            customer_key: customer_key.clone(),
            staff_message_id: id,
        };
        self.queue
            .enqueue(&job, &format!("staff:{id}"))
            .await
            .map_err(|error| {
                tracing::error!(%error, id, customer = %customer_key.masked(), "could not queue a staff message: the webhook or the sweeper tries again");
                StaffError::Unavailable("queue the staff message")
            })?;
        tracing::info!(id, customer = %customer_key.masked(), "staff message queued");
        Ok(json_response(
            StatusCode::ACCEPTED,
            &serde_json::json!({ "status": "queued", "staff_message_id": id }),
        ))
    }

    /// A Retell custom function: the signature over the raw body first, then the call.
    #[tracing::instrument(name = "retell_function", skip_all, fields(function = %name))]
    async fn function<B: AsRef<[u8]>>(
        &self,
        name: &str,
        request: &http::Request<B>,
    ) -> Result<Response, StaffError> {
        if request.method() != Method::POST {
            return Err(StaffError::MethodNotAllowed(request.method().clone()));
        }
        let body = signed_body(
            request,
            self.retell_api_key.expose_secret().as_bytes(),
            MAX_BODY_BYTES,
            now_ms(),
        )?;
        let call: FunctionCall =
            serde_json::from_slice(body).map_err(|e| StaffError::MalformedBody(e.to_string()))?;
        if name != REQUEST_HUMAN {
            return Err(StaffError::UnknownFunction(name.to_owned()));
        }
        if let Some(called) = call.name.as_deref().filter(|called| *called != name) {
            tracing::warn!(called, "the function's name in the body is not the route's");
        }
        self.request_human(call).await
    }

    /// Pauses the customer, records that a person was asked for, tells staff, and answers what
    /// the agent says.
    async fn request_human(&self, call: FunctionCall) -> Result<Response, StaffError> {
        let conversation = call.chat.as_ref().or(call.call.as_ref());
        let customer = conversation
            .and_then(|c| c.pointer("/metadata/customer_key"))
            .and_then(Value::as_str)
            .ok_or_else(|| "missing: the bridge's chats carry it".to_owned())
            .and_then(|key| CustomerKey::try_from(key.to_owned()).map_err(|e| e.to_string()))
            .map_err(|reason| StaffError::InvalidField {
                field: "chat.metadata.customer_key",
                reason,
            })?;
        let chat_id = conversation
            .and_then(|c| c.get("chat_id").or_else(|| c.get("call_id")))
            .and_then(Value::as_str)
            .map(str::to_owned);
        let reason = call
            .args
            .as_ref()
            .and_then(|args| args.get("reason"))
            .or(call.reason.as_ref())
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|reason| !reason.is_empty())
            .map(|reason| {
                let mut reason: String = reason.chars().take(MAX_REASON_CHARS).collect();
                nul_free(&mut reason);
                reason
            });
        let paused = self
            .store
            .request_human(&customer, self.pause_minutes, reason.as_deref(), BY_AGENT)
            .await
            .map_err(|error| store_failure(error, "pause the customer"))?;
        tracing::info!(customer = %customer.masked(), paused_until = ?paused, "a person was asked for: paused");
        let alert = StaffAlert {
            customer_key: customer.clone(),
            reason,
            chat_id,
            paused_until: Some(paused),
        };
        if let Err(error) = self.notifier.notify(&alert).await {
            tracing::error!(%error, customer = %customer.masked(), "staff were not told that a customer asks for a person; needs_attention lists them");
        }
        Ok(json_response(
            StatusCode::OK,
            &Value::String(self.request_human_reply.clone()),
        ))
    }
}

/// `{"status": "ignored", "reason": …}`, 200: Supabase does not send it again.
fn ignored(reason: &str) -> Response {
    json_response(
        StatusCode::OK,
        &serde_json::json!({ "status": "ignored", "reason": reason }),
    )
}

/// `Bearer <token>` (the scheme in any case) → the token.
fn bearer_token(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

fn store_failure(error: StoreError, what: &'static str) -> StaffError {
    match error {
        StoreError::Unauthorized(_) => {
            tracing::error!(%error, "the store refused our key: nothing recorded");
            StaffError::StoreUnauthorized(what)
        }
        StoreError::Rejected(answer) | StoreError::Conflict(answer) => StaffError::Refused {
            what,
            why: answer.message,
        },
        other => {
            tracing::error!(error = %other, "the store is unavailable: the caller retries");
            StaffError::Unavailable(what)
        }
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use serde_json::json;

    use super::*;
    use crate::config::Env;
    use crate::fakes::{FakeQueue, FakeStore};
    use crate::notify::NotifyError;
    use crate::queue::QueueError;
    use crate::signature::hmac_sha256_hex;

    const SECRET: &str = "a-staff-secret-of-at-least-32-characters";
    const RETELL_KEY: &str = "key_retell_webhook_badge";

    #[derive(Clone, Default)]
    struct Alerts(Arc<Mutex<Vec<StaffAlert>>>);

    impl StaffNotifier for Alerts {
        async fn notify(&self, alert: &StaffAlert) -> Result<(), NotifyError> {
            self.0.lock().unwrap().push(alert.clone());
            Ok(())
        }
    }

    fn door() -> (StaffDoor<FakeStore, FakeQueue, Alerts>, FakeQueue) {
        let env = Env::from_pairs([
            ("STAFF_WEBHOOK_SECRET", SECRET),
            ("RETELL_API_KEY", RETELL_KEY),
        ]);
        let config = StaffConfig::from_env(&env).unwrap();
        let queue = FakeQueue::default();
        let door = StaffDoor::new(
            FakeStore::default(),
            queue.clone(),
            Alerts::default(),
            &config,
        );
        (door, queue)
    }

    fn post(path: &str, headers: &[(&str, &str)], body: &Value) -> http::Request<Vec<u8>> {
        let mut request = http::Request::post(path);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.body(serde_json::to_vec(body).unwrap()).unwrap()
    }

    fn insert(record: Value) -> Value {
        json!({ "type": "INSERT", "table": "staff_messages", "schema": "public",
                "record": record, "old_record": null })
    }

    fn row(id: i64) -> Value {
        json!({ "id": id, "customer_key": "525512345678", "body": "Hola, soy Luis",
                "status": "queued", "created_by": "postgres" })
    }

    fn body(response: &Response) -> Value {
        serde_json::from_str(response.body()).unwrap()
    }

    #[tokio::test]
    async fn an_insert_with_the_secret_queues_its_message_deduplicated_by_its_id() {
        let (door, queue) = door();
        let bearer = format!("Bearer {SECRET}");
        let answer = door
            .handle(&post(
                "/staff",
                &[("authorization", &bearer)],
                &insert(row(7)),
            ))
            .await;
        assert_eq!(answer.status(), StatusCode::ACCEPTED, "{}", answer.body());
        assert_eq!(body(&answer)["staff_message_id"], 7);
        let customer_key = CustomerKey::from_whatsapp_id("525512345678").unwrap();
        assert_eq!(
            queue.jobs(),
            [(
                TurnJob::SendStaffMessage {
                    customer_key,
                    staff_message_id: 7
                },
                "staff:7".to_owned()
            )]
        );
    }

    #[tokio::test]
    async fn without_the_secret_nothing_is_read_and_nothing_queued() {
        let (door, queue) = door();
        for headers in [
            vec![],
            vec![("authorization", "Bearer not-the-secret")],
            vec![("authorization", SECRET)],
            vec![("authorization", "Basic YWxhZGRpbjpvcGVuc2VzYW1l")],
        ] {
            let mut request = http::Request::post("/staff");
            for (name, value) in &headers {
                request = request.header(*name, *value);
            }
            // The body is not even JSON: refused for the credentials, before it is read.
            let answer = door
                .handle(&request.body(b"{not json".to_vec()).unwrap())
                .await;
            assert_eq!(answer.status(), StatusCode::UNAUTHORIZED, "{headers:?}");
            assert_eq!(body(&answer)["error"]["code"], "unauthorized");
        }
        assert!(queue.jobs().is_empty());
    }

    #[tokio::test]
    async fn other_changes_are_ignored_and_bad_rows_refused() {
        let (door, queue) = door();
        let bearer = format!("Bearer {SECRET}");
        let auth = [("authorization", bearer.as_str())];
        let mut update = insert(row(7));
        update["type"] = json!("UPDATE");
        let mut other_table = insert(row(7));
        other_table["table"] = json!("chat_sessions");
        let mut sent = row(8);
        sent["status"] = json!("sent");
        for ignored in [update, other_table, insert(sent)] {
            let answer = door.handle(&post("/staff", &auth, &ignored)).await;
            assert_eq!(answer.status(), StatusCode::OK, "{ignored}");
            assert_eq!(body(&answer)["status"], "ignored");
        }
        let mut no_id = row(0);
        no_id["id"] = json!("7");
        let mut bad_key = row(9);
        bad_key["customer_key"] = json!("ana");
        for (bad, field) in [
            (insert(no_id), "record.id"),
            (insert(bad_key), "record.customer_key"),
            (insert(Value::Null), "record"),
        ] {
            let answer = door.handle(&post("/staff", &auth, &bad)).await;
            assert_eq!(answer.status(), StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
            assert_eq!(body(&answer)["error"]["field"], field);
        }
        let answer = door
            .handle(&post("/staff", &auth, &json!({ "record": {} })))
            .await;
        assert_eq!(answer.status(), StatusCode::BAD_REQUEST);
        assert!(queue.jobs().is_empty());

        queue.fail_next(QueueError::Unavailable("down".to_owned()));
        let answer = door.handle(&post("/staff", &auth, &insert(row(10)))).await;
        assert_eq!(answer.status(), StatusCode::SERVICE_UNAVAILABLE);
    }

    #[tokio::test]
    async fn a_function_call_needs_retells_signature_first() {
        let (door, queue) = door();
        let call = json!({ "name": "request_human", "args": { "reason": "x" },
                           "call": { "chat_id": "chat_1", "metadata": { "customer_key": "525512345678" } } });
        let path = "/retell/functions/request_human";
        let answer = door.handle(&post(path, &[], &call)).await;
        assert_eq!(answer.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(body(&answer)["error"]["code"], "invalid_signature");
        let now = now_ms().to_string();
        let bytes = serde_json::to_vec(&call).unwrap();
        let forged = format!(
            "v={now},d={}",
            hmac_sha256_hex(b"another key", &[&bytes, now.as_bytes()])
        );
        let answer = door
            .handle(&post(path, &[("x-retell-signature", &forged)], &call))
            .await;
        assert_eq!(answer.status(), StatusCode::UNAUTHORIZED);
        // FakeStore's request_human panics: reaching the store would fail the test.

        let signed = format!(
            "v={now},d={}",
            hmac_sha256_hex(RETELL_KEY.as_bytes(), &[&bytes, now.as_bytes()])
        );
        let answer = door
            .handle(&post(
                "/retell/functions/book_meeting",
                &[("x-retell-signature", &signed)],
                &call,
            ))
            .await;
        assert_eq!(answer.status(), StatusCode::NOT_FOUND);
        assert_eq!(body(&answer)["error"]["code"], "unknown_function");
        let mut anonymous = call.clone();
        anonymous["call"]["metadata"] = json!({});
        let bytes = serde_json::to_vec(&anonymous).unwrap();
        let signed = format!(
            "v={now},d={}",
            hmac_sha256_hex(RETELL_KEY.as_bytes(), &[&bytes, now.as_bytes()])
        );
        let answer = door
            .handle(&post(path, &[("x-retell-signature", &signed)], &anonymous))
            .await;
        assert_eq!(answer.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(
            body(&answer)["error"]["field"],
            "chat.metadata.customer_key"
        );
        assert!(queue.jobs().is_empty());
    }

    #[tokio::test]
    async fn other_routes_and_methods_are_refused() {
        let (door, _) = door();
        let answer = door
            .handle(&http::Request::get("/staff").body(Vec::new()).unwrap())
            .await;
        assert_eq!(answer.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(answer.headers()[http::header::ALLOW], "POST");
        let answer = door
            .handle(&http::Request::post("/whatsapp").body(Vec::new()).unwrap())
            .await;
        assert_eq!(answer.status(), StatusCode::NOT_FOUND);
    }
}
