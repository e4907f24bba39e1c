//! A stand-in for the WhatsApp Cloud API's send endpoint (`POST /<version>/<phone-number-id>/
//! messages`): the bearer token required, every body checked against the send-message schema
//! of Meta's OpenAPI spec, each accepted message recorded under a new wamid, approved templates
//! enforced, and Graph errors a test can queue, draw at random or switch on for a while (an
//! expired token), with the real error object.
//!
//! And the media a customer sends (a voice note): `GET /<version>/<media-id>` answers a
//! short-lived download URL (checked against `retrieveMediaUrl` of the spec), which serves the
//! bytes to the bearer token only, and answers 404 once expired, as Graph's CDN does.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
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

/// What a request is, for the faults a test queues for one kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Request {
    Send,
    ReadReceipt,
    /// `GET /<version>/<media-id>`.
    MediaUrl,
}

/// Media Graph holds for a customer's message.
struct Media {
    bytes: Vec<u8>,
    mime_type: String,
}

/// How long a media URL works: Graph's, 5 minutes.
const MEDIA_URL_TTL: Duration = Duration::from_secs(5 * 60);

#[derive(Default)]
struct GraphState {
    accepted: Vec<AcceptedMessage>,
    read_receipts: Vec<(Value, Instant)>,
    rejected: Vec<(Value, Value)>,
    faults: FaultQueue<Request, GraphFault>,
    /// Until when every request answers this fault, queued and random faults notwithstanding.
    outage: Option<(Instant, GraphFault)>,
    templates: Vec<(String, String)>,
    requests: usize,
    media: BTreeMap<String, Media>,
    /// Download URL token -> (media id, when the URL was handed out).
    media_urls: BTreeMap<String, (String, Instant)>,
    /// `None`: [`MEDIA_URL_TTL`].
    media_url_ttl: Option<Duration>,
    media_downloads: usize,
    /// This server's URL, for the download URLs.
    url: String,
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
        // Matched by their number of segments: a media id never clashes with `…/messages`.
        let router = Router::new()
            .route("/{version}/{phone_number_id}/messages", post(messages))
            .route("/{version}/{media_id}", get(media_url))
            .route("/media-download/{token}", get(media_download))
            .with_state(state.clone());
        let server = Server::start(router);
        lock(&state).url = server.url();
        GraphStandIn { state, server }
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
        lock(&self.state).faults.push(Request::Send, fault);
    }

    /// The next read receipt answers with this fault.
    pub fn fail_next_read_receipt(&self, fault: GraphFault) {
        lock(&self.state).faults.push(Request::ReadReceipt, fault);
    }

    /// The next `GET /<version>/<media-id>` answers with this fault (`SlowAnswer` and
    /// `StallBeforeAccepting` both delay the answer).
    pub fn fail_next_media(&self, fault: GraphFault) {
        lock(&self.state).faults.push(Request::MediaUrl, fault);
    }

    /// Media a customer sent, as Graph keeps it for their message; returns its media id (the
    /// `id` of the webhook's `audio`, `image`, ... object).
    pub fn add_media(&self, bytes: Vec<u8>, mime_type: &str) -> String {
        let id = unique_id("media").replace(|c: char| !c.is_ascii_digit(), "");
        // Graph's media ids are numeric; the unique suffix keeps them apart across tests.
        let id = format!("90{id}");
        lock(&self.state).media.insert(
            id.clone(),
            Media {
                bytes,
                mime_type: mime_type.into(),
            },
        );
        id
    }

    /// How long a download URL works once handed out (default: 5 minutes, Graph's), for every
    /// URL, checked when it is used.
    pub fn set_media_url_ttl(&self, ttl: Duration) {
        lock(&self.state).media_url_ttl = Some(ttl);
    }

    /// Media bytes served (successful downloads).
    pub fn media_downloads(&self) -> usize {
        lock(&self.state).media_downloads
    }

    /// From now on a `rate` share of the requests (sends, read receipts, media lookups) fail
    /// with one of `faults`, chosen at random (the chaos run).
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
        lock(&self.state)
            .read_receipts
            .iter()
            .map(|(body, _)| body.clone())
            .collect()
    }

    /// Read receipts (with their typing indicator) and when each arrived, in order: to tell a
    /// renewal sent after the reply from one sent before.
    pub fn read_receipts_at(&self) -> Vec<(Value, Instant)> {
        lock(&self.state).read_receipts.clone()
    }

    /// Every request that reached the stand-in (sends, read receipts, media lookups and
    /// downloads), whatever its answer.
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

/// What Graph checks before it looks at a request, counting it: an outage's error code, then the
/// access token. Admitted: the outage in force that is not an error code (a slow answer), if any.
fn admit(state: &Shared, headers: &HeaderMap) -> Result<Option<GraphFault>, Box<Response>> {
    let outage = count_request(state);
    if let Some(GraphFault::Code(code)) = outage {
        return Err(Box::new(graph_error(
            code,
            "Scripted by the test: an outage.",
        )));
    }
    if !authorized(headers) {
        return Err(Box::new(graph_error(
            190,
            "The access token is missing or invalid.",
        )));
    }
    Ok(outage)
}

/// The outage in force, if any, counting the request.
fn count_request(state: &Shared) -> Option<GraphFault> {
    let mut state = lock(state);
    state.requests += 1;
    state
        .outage
        .clone()
        .filter(|(until, _)| Instant::now() < *until)
        .map(|(_, fault)| fault)
}

fn authorized(headers: &HeaderMap) -> bool {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Bearer {ACCESS_TOKEN}"))
}

#[derive(serde::Deserialize)]
struct MediaQuery {
    phone_number_id: Option<String>,
}

/// `GET /<version>/<media-id>`: the media's short-lived URL, size and hash.
async fn media_url(
    State(state): State<Shared>,
    Path((version, media_id)): Path<(String, String)>,
    Query(query): Query<MediaQuery>,
    headers: HeaderMap,
) -> Response {
    let outage = match admit(&state, &headers) {
        Ok(outage) => outage,
        Err(refused) => return *refused,
    };
    let fault = outage.or_else(|| lock(&state).faults.take(&Request::MediaUrl));
    match fault {
        Some(GraphFault::Code(code)) => return graph_error(code, "Scripted by the test."),
        Some(GraphFault::SlowAnswer(delay) | GraphFault::StallBeforeAccepting(delay)) => {
            tokio::time::sleep(delay).await;
        }
        None => {}
    }
    let unknown = || {
        graph_error(
            100,
            &format!(
                "Unsupported get request. Object with ID '{media_id}' does not exist, cannot be \
                 loaded due to missing permissions, or does not support this operation."
            ),
        )
    };
    // `phone_number_id`, when given, must be the number the media came to.
    if version != API_VERSION
        || query
            .phone_number_id
            .as_deref()
            .is_some_and(|id| id != PHONE_NUMBER_ID)
    {
        return unknown();
    }
    let mut state = lock(&state);
    let Some(media) = state.media.get(&media_id) else {
        drop(state);
        return unknown();
    };
    // Each lookup hands out a URL of its own, as Graph's signed CDN URLs are.
    let token = unique_id("dl");
    let body = json!({
        "messaging_product": "whatsapp",
        "url": format!("{}/media-download/{token}", state.url),
        "mime_type": media.mime_type,
        "sha256": hex::encode(Sha256::digest(&media.bytes)),
        // A string, as the spec has it.
        "file_size": media.bytes.len().to_string(),
        "id": media_id,
    });
    state.media_urls.insert(token, (media_id, Instant::now()));
    drop(state);
    if let Err(violations) = ApiSpec::whatsapp()
        .operation("retrieveMediaUrl")
        .validate_response(200, &body)
    {
        panic!("the Graph stand-in's media answer breaks the spec: {violations:?}");
    }
    axum::Json(body).into_response()
}

/// `GET /media-download/<token>`: the bytes, to the access token only, while the URL works.
async fn media_download(
    State(state): State<Shared>,
    Path(token): Path<String>,
    headers: HeaderMap,
) -> Response {
    count_request(&state);
    if !authorized(&headers) {
        return (StatusCode::UNAUTHORIZED, "Unauthorized").into_response();
    }
    let mut state = lock(&state);
    let ttl = state.media_url_ttl.unwrap_or(MEDIA_URL_TTL);
    let media = state
        .media_urls
        .get(&token)
        .filter(|(_, issued)| issued.elapsed() < ttl)
        .and_then(|(media_id, _)| state.media.get(media_id))
        .map(|media| (media.bytes.clone(), media.mime_type.clone()));
    let Some((bytes, mime_type)) = media else {
        // An unknown or expired URL: Graph's CDN answers 404.
        return (StatusCode::NOT_FOUND, "URL signature expired").into_response();
    };
    state.media_downloads += 1;
    ([(header::CONTENT_TYPE, mime_type)], bytes).into_response()
}

async fn messages(
    State(state): State<Shared>,
    Path((version, phone_number_id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let outage = match admit(&state, &headers) {
        Ok(outage) => outage,
        Err(refused) => return *refused,
    };
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
    let kind = if is_read_receipt {
        Request::ReadReceipt
    } else {
        Request::Send
    };
    let fault = outage.or_else(|| lock(&state).faults.take(&kind));
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
        lock(&state).read_receipts.push((body, Instant::now()));
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
