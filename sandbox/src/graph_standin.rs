//! A stand-in for the WhatsApp Cloud API's send endpoint (`POST /<version>/<phone-number-id>/
//! messages`): the bearer token required, every body checked against the send-message schema
//! of Meta's OpenAPI spec, each accepted message recorded under a new wamid, approved templates
//! enforced, and Graph errors a test can queue, draw at random or switch on for a while (an
//! expired token), with the real error object.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use shared::config::{WebhookConfig, WhatsAppConfig};

use crate::schema::ApiSpec;
use crate::standin::{FaultQueue, Server, lock, unique_id};

pub const ACCESS_TOKEN: &str = "EAAGstandin";
pub const PHONE_NUMBER_ID: &str = "106540352242922";
pub const API_VERSION: &str = "v23.0";
pub const TEMPLATE_NAME: &str = "primer_contacto";
pub const TEMPLATE_LANGUAGE: &str = "es_MX";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GraphFault {
    /// Answer with this Graph error code (and its usual HTTP status and message).
    Code(i64),
    /// Send the message, but answer only after this long.
    SlowAnswer(Duration),
    /// Wait this long before taking the message: a client that goes away meanwhile (a crash)
    /// leaves nothing sent.
    StallBeforeAccepting(Duration),
}

/// A message the stand-in accepted.
#[derive(Debug, Clone, PartialEq)]
pub struct AcceptedMessage {
    pub wamid: String,
    /// `to` as sent (`+52…`), or the `recipient` user id.
    pub to: String,
    pub message_type: String,
    /// The text body, or the template's name.
    pub text: String,
    pub body: Value,
    /// When the stand-in took it.
    pub accepted_at: Instant,
    /// How long its answer was held back (a `SlowAnswer` fault): a client that waited less saw
    /// a failure for a message that went out.
    pub answer_delay: Option<Duration>,
}

#[derive(Default)]
struct GraphState {
    accepted: Vec<AcceptedMessage>,
    read_receipts: Vec<Value>,
    rejected: Vec<(Value, Value)>,
    /// Keyed by "is it a read receipt": a test scripting a send's failure means the send.
    faults: FaultQueue<bool, GraphFault>,
    /// Until when every request answers this fault, queued and random faults notwithstanding.
    outage: Option<(Instant, GraphFault)>,
    templates: Vec<(String, String)>,
    requests: usize,
}

type Shared = Arc<Mutex<GraphState>>;

pub struct GraphStandIn {
    state: Shared,
    server: Server,
}

impl GraphStandIn {
    pub fn start() -> GraphStandIn {
        let state: Shared = Arc::new(Mutex::new(GraphState {
            templates: vec![(TEMPLATE_NAME.into(), TEMPLATE_LANGUAGE.into())],
            ..GraphState::default()
        }));
        let router = Router::new()
            .route("/{version}/{phone_number_id}/messages", post(messages))
            .with_state(state.clone());
        GraphStandIn {
            state,
            server: Server::start(router),
        }
    }

    /// Time spent answering requests since the stand-in started, and how many (see
    /// `Server::service_time`).
    pub fn service_time(&self) -> (Duration, u64) {
        self.server.service_time()
    }

    /// A configuration pointing the real client at this stand-in.
    pub fn config(&self) -> WhatsAppConfig {
        WhatsAppConfig {
            access_token: ACCESS_TOKEN.to_owned().into(),
            phone_number_id: PHONE_NUMBER_ID.into(),
            graph_url: self.server.url(),
            api_version: API_VERSION.into(),
            template_name: TEMPLATE_NAME.into(),
            template_language: TEMPLATE_LANGUAGE.into(),
            request_timeout: Duration::from_secs(5),
        }
    }

    /// The webhook secrets the sandbox and the tests sign and verify with.
    pub fn webhook_config(&self) -> WebhookConfig {
        WebhookConfig {
            app_secret: "standin-app-secret".to_owned().into(),
            verify_token: "standin-verify-token".to_owned().into(),
            phone_number_id: PHONE_NUMBER_ID.into(),
        }
    }

    /// The next message sent answers with this fault (several queue up, in order).
    pub fn fail_next(&self, fault: GraphFault) {
        lock(&self.state).faults.push(false, fault);
    }

    /// The next read receipt answers with this fault.
    pub fn fail_next_read_receipt(&self, fault: GraphFault) {
        lock(&self.state).faults.push(true, fault);
    }

    /// From now on a `rate` share of the requests (sends and read receipts) fail with one of
    /// `faults`, chosen at random (the chaos run).
    pub fn fail_at_random(&self, rate: f64, faults: Vec<GraphFault>) {
        lock(&self.state).faults.fail_at_random(rate, faults);
    }

    /// For the next `duration`, every request (sends and read receipts) answers `fault`,
    /// whatever else is queued: `GraphFault::Code(190)` is the access token expired or revoked,
    /// which Graph answers before it looks at the request. Returns when the outage ends.
    pub fn fail_for(&self, duration: Duration, fault: GraphFault) -> Instant {
        let until = Instant::now() + duration;
        lock(&self.state).outage = Some((until, fault));
        until
    }

    pub fn approve_template(&self, name: &str, language: &str) {
        lock(&self.state)
            .templates
            .push((name.into(), language.into()));
    }

    /// Accepted messages (not read receipts), in order.
    pub fn accepted(&self) -> Vec<AcceptedMessage> {
        lock(&self.state).accepted.clone()
    }

    pub fn read_receipts(&self) -> Vec<Value> {
        lock(&self.state).read_receipts.clone()
    }

    /// Every request that reached the endpoint, whatever its answer.
    pub fn request_count(&self) -> usize {
        lock(&self.state).requests
    }

    /// Requests refused for their shape: (body, error answer).
    pub fn rejected(&self) -> Vec<(Value, Value)> {
        lock(&self.state).rejected.clone()
    }
}

/// Graph's error object, as the real API answers it.
fn graph_error(code: i64, details: &str) -> Response {
    let (status, message, kind) = match code {
        190 => (
            StatusCode::UNAUTHORIZED,
            "Invalid OAuth access token - Cannot parse access token",
            "OAuthException",
        ),
        100 => (
            StatusCode::BAD_REQUEST,
            "(#100) Invalid parameter",
            "OAuthException",
        ),
        130_429 => (
            StatusCode::BAD_REQUEST,
            "(#130429) Rate limit hit",
            "OAuthException",
        ),
        131_056 => (
            StatusCode::BAD_REQUEST,
            "(#131056) (Business Account, Consumer Account) pair rate limit hit",
            "OAuthException",
        ),
        131_047 => (
            StatusCode::BAD_REQUEST,
            "(#131047) Re-engagement message",
            "OAuthException",
        ),
        131_026 => (
            StatusCode::BAD_REQUEST,
            "(#131026) Message Undeliverable",
            "OAuthException",
        ),
        132_001 => (
            StatusCode::NOT_FOUND,
            "(#132001) Template name does not exist in the translation",
            "OAuthException",
        ),
        131_000 | 2 | 131_016 | 133_004 | 131_057 => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "(#131000) Something went wrong",
            "OAuthException",
        ),
        _ => (
            StatusCode::BAD_REQUEST,
            "(#131009) Parameter value is not valid",
            "OAuthException",
        ),
    };
    let body = json!({ "error": {
        "message": message, "type": kind, "code": code,
        "error_data": { "messaging_product": "whatsapp", "details": details },
        "fbtrace_id": "AStandInTraceId",
    }});
    (status, axum::Json(body)).into_response()
}

async fn messages(
    State(state): State<Shared>,
    Path((version, phone_number_id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let outage = {
        let mut state = lock(&state);
        state.requests += 1;
        state
            .outage
            .clone()
            .filter(|(until, _)| Instant::now() < *until)
            .map(|(_, fault)| fault)
    };
    if let Some(GraphFault::Code(code)) = outage {
        return graph_error(code, "Scripted by the test: an outage.");
    }
    let authorized = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Bearer {ACCESS_TOKEN}"));
    if !authorized {
        return graph_error(190, "The access token is missing or invalid.");
    }
    if version != API_VERSION || phone_number_id != PHONE_NUMBER_ID {
        return graph_error(
            100,
            &format!("Unsupported post request: /{version}/{phone_number_id}/messages"),
        );
    }
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return graph_error(100, "The request body is not JSON.");
    };
    if let Err(violations) = ApiSpec::whatsapp()
        .operation("sendMessage")
        .validate_request(&body)
    {
        let details = violations
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        let answer = graph_error(100, &details);
        lock(&state)
            .rejected
            .push((body, json!({ "code": 100, "details": details })));
        return answer;
    }

    let is_read_receipt = body["status"] == "read";
    let fault = outage.or_else(|| lock(&state).faults.take(&is_read_receipt));
    let delay = match fault {
        Some(GraphFault::Code(code)) => return graph_error(code, "Scripted by the test."),
        Some(GraphFault::SlowAnswer(delay)) => Some(delay),
        Some(GraphFault::StallBeforeAccepting(stall)) => {
            tokio::time::sleep(stall).await;
            None
        }
        None => None,
    };

    let answer = if is_read_receipt {
        lock(&state).read_receipts.push(body);
        json!({ "success": true })
    } else {
        let mut state = lock(&state);
        let message_type = body["type"].as_str().unwrap_or("text").to_owned();
        if message_type == "template" {
            let template = (
                body["template"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                body["template"]["language"]["code"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            );
            if !state.templates.contains(&template) {
                drop(state);
                return graph_error(
                    132_001,
                    &format!(
                        "template name ({}) does not exist in {}",
                        template.0, template.1
                    ),
                );
            }
        }
        let wamid = unique_id("wamid.STANDIN");
        let to = body["to"]
            .as_str()
            .or(body["recipient"].as_str())
            .unwrap_or_default()
            .to_owned();
        let text = match message_type.as_str() {
            "text" => body["text"]["body"].as_str().unwrap_or_default().to_owned(),
            "template" => body["template"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            _ => String::new(),
        };
        state.accepted.push(AcceptedMessage {
            wamid: wamid.clone(),
            to: to.clone(),
            message_type,
            text,
            body,
            accepted_at: Instant::now(),
            answer_delay: delay,
        });
        json!({
            "messaging_product": "whatsapp",
            "contacts": [{ "input": to, "wa_id": to.trim_start_matches('+') }],
            "messages": [{ "id": wamid }],
        })
    };
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    axum::Json(answer).into_response()
}
