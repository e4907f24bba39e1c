//! A stand-in for Retell's chat API: the real paths, bodies, statuses and error messages,
//! every request body checked against the operation's schema in Retell's OpenAPI spec, chats
//! kept with their status and history, and faults a test can queue, draw at random, or switch
//! on for a while (an outage).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use serde_json::{Value, json};
use shared::config::RetellConfig;
use shared::domain::ChatStatus;

use crate::schema::ApiSpec;
use crate::standin::{FaultQueue, Server, lock, unique_id};

pub const API_KEY: &str = "key_standin_retell";
pub const AGENT_ID: &str = "agent_standin";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RetellOperation {
    CreateChat,
    CreateChatCompletion,
    GetChat,
    EndChat,
}

impl RetellOperation {
    fn operation_id(self) -> &'static str {
        match self {
            Self::CreateChat => "createChat",
            Self::CreateChatCompletion => "createChatCompletion",
            Self::GetChat => "getChat",
            Self::EndChat => "endChat",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetellFault {
    /// 429 with `retry-after-ms`.
    RateLimited { retry_after_ms: u64 },
    /// 500, nothing done.
    ServerError,
    /// 402, as when a trial runs out.
    PaymentRequired,
    /// The request is carried out, but the answer comes only after this long: a client with a
    /// shorter timeout sees a timeout for something that happened.
    SlowAnswer(Duration),
}

/// A chat as the stand-in keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct StandInChat {
    pub chat_id: String,
    pub status: ChatStatus,
    pub metadata: Option<Value>,
    pub dynamic_variables: BTreeMap<String, String>,
    /// `message_with_tool_calls`: every user and agent message, in order.
    pub messages: Vec<Value>,
    start_ms: i64,
    end_ms: Option<i64>,
    last_activity: Instant,
    /// What Retell adds once it has analysed an ended chat (`chat_analysis`,
    /// `collected_dynamic_variables`): set by [`RetellStandIn::set_analysis`].
    analysed: serde_json::Map<String, Value>,
}

impl StandInChat {
    /// The contents of the messages of one role, in order.
    pub fn contents(&self, role: &str) -> Vec<String> {
        self.messages
            .iter()
            .filter(|m| m["role"] == role)
            .filter_map(|m| m["content"].as_str().map(str::to_owned))
            .collect()
    }

    fn to_json(&self) -> Value {
        let mut chat = json!({
            "chat_id": self.chat_id,
            "agent_id": AGENT_ID,
            "chat_status": self.status,
            "chat_type": "api_chat",
            "start_timestamp": self.start_ms,
            "transcript": self.messages.iter()
                .map(|m| format!("{}: {}\n", if m["role"] == "agent" { "Agent" } else { "User" }, m["content"].as_str().unwrap_or("")))
                .collect::<String>(),
            "message_with_tool_calls": self.messages,
            "retell_llm_dynamic_variables": self.dynamic_variables,
        });
        if let Some(end) = self.end_ms {
            chat["end_timestamp"] = json!(end);
        }
        if let Some(metadata) = &self.metadata {
            chat["metadata"] = metadata.clone();
        }
        for (name, value) in &self.analysed {
            chat[name] = value.clone();
        }
        chat
    }
}

/// A request that reached the stand-in, accepted or not.
#[derive(Debug, Clone, PartialEq)]
pub struct RetellRequest {
    pub operation: RetellOperation,
    pub chat_id: Option<String>,
    pub body: Value,
    /// The status answered; 0 when the client stopped waiting first.
    pub status: u16,
    /// When the request arrived.
    pub received_at: Instant,
}

#[derive(Default)]
struct RetellState {
    chats: BTreeMap<String, StandInChat>,
    faults: FaultQueue<RetellOperation, RetellFault>,
    /// Until when every request answers this fault, queued and random faults notwithstanding.
    outage: Option<(Instant, RetellFault)>,
    requests: Vec<RetellRequest>,
    begin_message: String,
    scripted_replies: VecDeque<Vec<String>>,
    end_after_silence: Option<Duration>,
    label_replies: bool,
    /// Where chat webhooks go when a chat ends: [`RetellStandIn::send_webhooks_to`].
    webhooks: Option<WebhookTarget>,
}

/// A webhook URL and the key its deliveries are signed with.
#[derive(Debug, Clone)]
struct WebhookTarget {
    url: String,
    key: String,
}

type Shared = Arc<Mutex<RetellState>>;

pub struct RetellStandIn {
    state: Shared,
    server: Server,
}

impl RetellStandIn {
    pub fn start() -> RetellStandIn {
        let state: Shared = Arc::new(Mutex::new(RetellState {
            begin_message: "¡Hola! ¿Me comunico con {{customer_name}}?".into(),
            ..RetellState::default()
        }));
        let router = Router::new()
            .route("/create-chat", post(create_chat))
            .route("/create-chat-completion", post(create_chat_completion))
            .route("/get-chat/{chat_id}", get(get_chat))
            .route("/end-chat/{chat_id}", patch(end_chat))
            .layer(axum::middleware::from_fn_with_state(
                state.clone(),
                record_request,
            ))
            .with_state(state.clone());
        RetellStandIn {
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
    pub fn config(&self) -> RetellConfig {
        RetellConfig {
            api_key: API_KEY.to_owned().into(),
            agent_id: AGENT_ID.into(),
            agent_version: None,
            base_url: self.server.url(),
            request_timeout: Duration::from_secs(5),
            completion_timeout: Duration::from_secs(5),
        }
    }

    pub fn fail_next(&self, operation: RetellOperation, fault: RetellFault) {
        lock(&self.state).faults.push(operation, fault);
    }

    /// From now on a `rate` share of the requests, of every operation, fail with one of
    /// `faults`, chosen at random (the chaos run).
    pub fn fail_at_random(&self, rate: f64, faults: Vec<RetellFault>) {
        lock(&self.state).faults.fail_at_random(rate, faults);
    }

    /// For the next `duration`, every request of every operation answers `fault` (say 402, as
    /// when the account's credit runs out), whatever else is queued: an outage of the account.
    /// Returns when the outage ends.
    pub fn fail_for(&self, duration: Duration, fault: RetellFault) -> Instant {
        let until = Instant::now() + duration;
        lock(&self.state).outage = Some((until, fault));
        until
    }

    /// The agent's messages for the next completion (default: one message echoing the user).
    pub fn script_reply(&self, messages: &[&str]) {
        lock(&self.state)
            .scripted_replies
            .push_back(messages.iter().map(|m| m.to_string()).collect());
    }

    /// The agent's opening, sent for an empty first completion (`{{var}}` filled in).
    pub fn set_begin_message(&self, message: &str) {
        lock(&self.state).begin_message = message.into();
    }

    /// Like the agent's `end_chat_after_silence_ms`: a chat idle this long is ended.
    pub fn end_chats_after_silence(&self, silence: Duration) {
        lock(&self.state).end_after_silence = Some(silence);
    }

    /// Default replies name their chat and turn, so continuity shows at a glance (the sandbox).
    pub fn label_replies(&self) {
        lock(&self.state).label_replies = true;
    }

    /// From now on, when a chat ends (here, by end-chat, or after silence), POST Retell's
    /// `chat_ended` and then `chat_analyzed` (a summary made from the transcript, unless
    /// [`RetellStandIn::set_analysis`] gave one) to `url`, signed with `key` as Retell signs
    /// (`x-retell-signature: v=<ms>,d=<hex HMAC-SHA256(key, body ++ ms)>`), on a background
    /// task.
    pub fn send_webhooks_to(&self, url: &str, key: &str) {
        lock(&self.state).webhooks = Some(WebhookTarget {
            url: url.to_owned(),
            key: key.to_owned(),
        });
    }

    /// Ends a chat as Retell would (idle timeout, end tool).
    pub fn end(&self, chat_id: &str) {
        let mut state = lock(&self.state);
        let RetellState {
            chats, webhooks, ..
        } = &mut *state;
        if let Some(chat) = chats.get_mut(chat_id) {
            let was_ongoing = chat.status == ChatStatus::Ongoing;
            chat.status = ChatStatus::Ended;
            chat.end_ms = Some(now_ms());
            if was_ongoing {
                announce_end(webhooks.as_ref(), chat);
            }
        }
    }

    /// Ends a chat and gives it Retell's post-chat analysis (`chat_analysis`) and what the agent
    /// collected (`collected_dynamic_variables`), as get-chat then returns them.
    pub fn set_analysis(&self, chat_id: &str, analysis: Value, collected: Value) {
        // The analysis first: the webhooks sent as the chat ends carry it.
        if let Some(chat) = lock(&self.state).chats.get_mut(chat_id) {
            chat.analysed.insert("chat_analysis".into(), analysis);
            chat.analysed
                .insert("collected_dynamic_variables".into(), collected);
        }
        self.end(chat_id);
    }

    pub fn chat(&self, chat_id: &str) -> Option<StandInChat> {
        let mut state = lock(&self.state);
        expire_silent_chats(&mut state);
        state.chats.get(chat_id).cloned()
    }

    pub fn chats(&self) -> Vec<StandInChat> {
        lock(&self.state).chats.values().cloned().collect()
    }

    /// Every request of one operation, in arrival order.
    pub fn requests(&self, operation: RetellOperation) -> Vec<RetellRequest> {
        lock(&self.state)
            .requests
            .iter()
            .filter(|r| r.operation == operation)
            .cloned()
            .collect()
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn error(status: StatusCode, message: &str) -> Response {
    (
        status,
        axum::Json(json!({ "status": "error", "message": message })),
    )
        .into_response()
}

fn expire_silent_chats(state: &mut RetellState) {
    let Some(silence) = state.end_after_silence else {
        return;
    };
    for chat in state.chats.values_mut() {
        if chat.status == ChatStatus::Ongoing && chat.last_activity.elapsed() >= silence {
            chat.status = ChatStatus::Ended;
            chat.end_ms = Some(now_ms());
            announce_end(state.webhooks.as_ref(), chat);
        }
    }
}

/// Sends the ended chat's webhooks, when a target is set, on a background task.
fn announce_end(target: Option<&WebhookTarget>, chat: &StandInChat) {
    let Some(target) = target.cloned() else {
        return;
    };
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        tracing::warn!(chat_id = %chat.chat_id, "no runtime to send the chat's webhooks from");
        return;
    };
    runtime.spawn(send_chat_webhooks(target, chat.to_json()));
}

/// `chat_ended` (the chat without its analysis), then `chat_analyzed` (with it), in order.
async fn send_chat_webhooks(target: WebhookTarget, mut chat: Value) {
    let analysis = chat
        .as_object_mut()
        .and_then(|chat| chat.remove("chat_analysis"))
        .unwrap_or_else(|| summarise(&chat));
    let collected = chat
        .as_object_mut()
        .and_then(|chat| chat.remove("collected_dynamic_variables"))
        .unwrap_or_else(|| json!({}));
    let http = reqwest::Client::new();
    post_webhook(
        &http,
        &target,
        &json!({ "event": "chat_ended", "chat": chat }),
    )
    .await;
    chat["chat_analysis"] = analysis;
    chat["collected_dynamic_variables"] = collected;
    post_webhook(
        &http,
        &target,
        &json!({ "event": "chat_analyzed", "chat": chat }),
    )
    .await;
}

/// The stand-in's post-chat analysis: how many messages, and what the customer said last.
fn summarise(chat: &Value) -> Value {
    let messages = chat["message_with_tool_calls"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let said: Vec<&str> = messages
        .iter()
        .filter(|m| m["role"] == "user")
        .filter_map(|m| m["content"].as_str())
        .collect();
    let summary = match said.last() {
        Some(last) => format!(
            "Conversación de {} mensajes; el cliente escribió {} y por último: «{last}».",
            messages.len(),
            said.len()
        ),
        None => format!(
            "Conversación de {} mensajes; el cliente no escribió.",
            messages.len()
        ),
    };
    json!({
        "chat_summary": summary,
        "user_sentiment": if said.is_empty() { "Unknown" } else { "Neutral" },
        "chat_successful": !said.is_empty(),
        "custom_analysis_data": { "customer_messages": said.len() },
    })
}

async fn post_webhook(http: &reqwest::Client, target: &WebhookTarget, payload: &Value) {
    let body = payload.to_string();
    let at = now_ms().to_string();
    let digest = shared::signature::hmac_sha256_hex(
        target.key.as_bytes(),
        &[body.as_bytes(), at.as_bytes()],
    );
    let sent = http
        .post(&target.url)
        .header("content-type", "application/json")
        .header("x-retell-signature", format!("v={at},d={digest}"))
        .timeout(Duration::from_secs(10))
        .body(body)
        .send()
        .await;
    match sent {
        Ok(answer) if answer.status().is_success() => {}
        Ok(answer) => {
            tracing::warn!(status = %answer.status(), event = %payload["event"], "the stand-in's webhook was refused")
        }
        Err(error) => {
            tracing::warn!(%error, event = %payload["event"], "the stand-in's webhook was not delivered")
        }
    }
}

/// What every operation does first, as Retell does: the key, then the body's shape, then any
/// fault the test queued. Returns the parsed body, or the answer to give instead.
async fn admit(
    state: &Shared,
    operation: RetellOperation,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(Value, Option<Duration>), Response> {
    let parsed: Result<Value, _> = if body.is_empty() {
        Ok(Value::Null)
    } else {
        serde_json::from_slice(body)
    };
    let authorized = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Bearer {API_KEY}"));
    if !authorized {
        return Err(error(
            StatusCode::UNAUTHORIZED,
            "API key is missing or invalid.",
        ));
    }
    let Ok(body) = parsed else {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "Invalid request format, please check API reference.",
        ));
    };
    if let Err(violations) = ApiSpec::retell()
        .operation(operation.operation_id())
        .validate_request(&body)
    {
        let details: Vec<String> = violations.iter().map(ToString::to_string).collect();
        let message = format!(
            "Invalid request format, please check API reference. {}",
            details.join("; ")
        );
        return Err(error(StatusCode::BAD_REQUEST, &message));
    }
    let fault = {
        let mut state = lock(state);
        match &state.outage {
            Some((until, fault)) if Instant::now() < *until => Some(fault.clone()),
            _ => state.faults.take(&operation),
        }
    };
    match fault {
        None => Ok((body, None)),
        Some(RetellFault::SlowAnswer(delay)) => Ok((body, Some(delay))),
        Some(RetellFault::RateLimited { retry_after_ms }) => Err((
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after-ms", retry_after_ms.to_string())],
            axum::Json(json!({ "status": "error", "message": "Account rate limited, please throttle your requests." })),
        )
            .into_response()),
        Some(RetellFault::ServerError) => {
            Err(error(StatusCode::INTERNAL_SERVER_ERROR, "An unexpected server error occurred."))
        }
        Some(RetellFault::PaymentRequired) => {
            Err(error(StatusCode::PAYMENT_REQUIRED, "Trial has ended, please add payment method."))
        }
    }
}

/// Keeps every request with the status it got, for tests to inspect.
async fn record_request(
    State(state): State<Shared>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    let path = parts.uri.path().to_owned();
    let mut segments = path.trim_start_matches('/').splitn(2, '/');
    let operation = match segments.next() {
        Some("create-chat") => RetellOperation::CreateChat,
        Some("create-chat-completion") => RetellOperation::CreateChatCompletion,
        Some("get-chat") => RetellOperation::GetChat,
        Some("end-chat") => RetellOperation::EndChat,
        _ => {
            return next
                .run(axum::extract::Request::from_parts(
                    parts,
                    axum::body::Body::from(bytes),
                ))
                .await;
        }
    };
    let chat_id = segments.next().map(str::to_owned);
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    // Recorded before it is handled, with status 0 until answered: a client that gives up
    // waiting drops the handler, and the request must still show.
    let index = {
        let mut state = lock(&state);
        state.requests.push(RetellRequest {
            operation,
            chat_id,
            body,
            status: 0,
            received_at: Instant::now(),
        });
        state.requests.len() - 1
    };
    let request = axum::extract::Request::from_parts(parts, axum::body::Body::from(bytes));
    let response = next.run(request).await;
    lock(&state).requests[index].status = response.status().as_u16();
    response
}

/// Answers after the delay a `SlowAnswer` fault asked for.
async fn answer(delay: Option<Duration>, response: Response) -> Response {
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    response
}

fn fill_in(template: &str, variables: &BTreeMap<String, String>) -> String {
    variables
        .iter()
        .fold(template.to_owned(), |text, (name, value)| {
            text.replace(&format!("{{{{{name}}}}}"), value)
        })
}

async fn create_chat(State(state): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let (body, delay) = match admit(&state, RetellOperation::CreateChat, &headers, &body).await {
        Ok(admitted) => admitted,
        Err(response) => return response,
    };
    if body["agent_id"] != AGENT_ID {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Cannot find requested asset under given api key.",
        );
    }
    let dynamic_variables = match body.get("retell_llm_dynamic_variables") {
        None => BTreeMap::new(),
        Some(variables) => match serde_json::from_value(variables.clone()) {
            Ok(variables) => variables,
            Err(_) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "retell_llm_dynamic_variables must map strings to strings",
                );
            }
        },
    };
    let chat = {
        let mut state = lock(&state);
        let chat = StandInChat {
            chat_id: unique_id("chat_standin"),
            status: ChatStatus::Ongoing,
            metadata: body.get("metadata").cloned(),
            dynamic_variables,
            messages: Vec::new(),
            start_ms: now_ms(),
            end_ms: None,
            last_activity: Instant::now(),
            analysed: serde_json::Map::new(),
        };
        state.chats.insert(chat.chat_id.clone(), chat.clone());
        chat
    };
    answer(
        delay,
        (StatusCode::CREATED, axum::Json(chat.to_json())).into_response(),
    )
    .await
}

async fn create_chat_completion(
    State(state): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (body, delay) = match admit(
        &state,
        RetellOperation::CreateChatCompletion,
        &headers,
        &body,
    )
    .await
    {
        Ok(admitted) => admitted,
        Err(response) => return response,
    };
    let chat_id = body["chat_id"].as_str().unwrap_or_default().to_owned();
    let content = body["content"].as_str().unwrap_or_default().to_owned();
    let new_messages = {
        let mut state = lock(&state);
        expire_silent_chats(&mut state);
        let scripted = state.scripted_replies.pop_front();
        let begin_message = state.begin_message.clone();
        let label_replies = state.label_replies;
        let Some(chat) = state.chats.get_mut(&chat_id) else {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Cannot find requested asset under given api key.",
            );
        };
        if chat.status != ChatStatus::Ongoing {
            return error(StatusCode::BAD_REQUEST, "Chat already ended");
        }
        let replies = if content.is_empty() && chat.messages.is_empty() {
            // An empty first turn asks for the agent's opening; it adds no user message.
            scripted.unwrap_or_else(|| vec![fill_in(&begin_message, &chat.dynamic_variables)])
        } else {
            chat.messages.push(message("user", &content));
            let turn = chat.contents("user").len();
            scripted.unwrap_or_else(|| match label_replies {
                true => vec![format!(
                    "[{} · turno {turn}] Recibido: {content}",
                    chat.chat_id
                )],
                false => vec![format!("Recibido: {content}")],
            })
        };
        let new_messages: Vec<Value> = replies
            .iter()
            .map(|reply| message("agent", reply))
            .collect();
        chat.messages.extend(new_messages.iter().cloned());
        chat.last_activity = Instant::now();
        new_messages
    };
    answer(
        delay,
        (
            StatusCode::CREATED,
            axum::Json(json!({ "messages": new_messages })),
        )
            .into_response(),
    )
    .await
}

fn message(role: &str, content: &str) -> Value {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let id = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    json!({ "message_id": format!("msg_{id}"), "role": role, "content": content, "created_timestamp": now_ms() })
}

async fn get_chat(
    State(state): State<Shared>,
    Path(chat_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let (_, delay) = match admit(&state, RetellOperation::GetChat, &headers, b"").await {
        Ok(admitted) => admitted,
        Err(response) => return response,
    };
    let chat = {
        let mut state = lock(&state);
        expire_silent_chats(&mut state);
        state.chats.get(&chat_id).map(StandInChat::to_json)
    };
    match chat {
        Some(chat) => answer(delay, axum::Json(chat).into_response()).await,
        None => error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Cannot find requested asset under given api key.",
        ),
    }
}

async fn end_chat(
    State(state): State<Shared>,
    Path(chat_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let (_, delay) = match admit(&state, RetellOperation::EndChat, &headers, b"").await {
        Ok(admitted) => admitted,
        Err(response) => return response,
    };
    let found = {
        let mut state = lock(&state);
        let RetellState {
            chats, webhooks, ..
        } = &mut *state;
        chats.get_mut(&chat_id).map(|chat| {
            let was_ongoing = chat.status == ChatStatus::Ongoing;
            chat.status = ChatStatus::Ended;
            chat.end_ms.get_or_insert_with(now_ms);
            if was_ongoing {
                announce_end(webhooks.as_ref(), chat);
            }
        })
    };
    match found {
        Some(()) => answer(delay, StatusCode::NO_CONTENT.into_response()).await,
        None => error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Cannot find requested asset under given api key.",
        ),
    }
}
