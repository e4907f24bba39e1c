//! The whole bridge on one machine (`make dev`): both routes on one port, the worker in-process,
//! the store on the local stack, and Retell and WhatsApp either real (their credentials are set)
//! or stand-ins (the sandbox). The same assembly serves the end-to-end test.
//!
//! `GET /form` is the hosted form. Without `FORM_TURNSTILE_SITE_KEY` the sandbox runs the
//! Turnstile stand-in (its widget always passes) and fills in the page's configuration, so
//! http://127.0.0.1:3000/form works with no keys. `/form` answers CORS as the HTTP API's
//! `CorsConfiguration` does in AWS (template.yaml): preflights without calling the door,
//! `Access-Control-Allow-Origin` only for `FORM_ALLOWED_ORIGINS`, which here may also name
//! `http://` origins on this machine (the examples' pages).
//!
//! `POST /sandbox/staff`, `/sandbox/pause`, `/sandbox/resume` and `GET /sandbox/session` let
//! `make chat` play the staff: they do what the dashboard does (a row inserted into
//! `staff_messages` through the store's REST API, then delivered to the staff door as Supabase's
//! Database Webhook delivers it; the pause RPCs), with the local keys.
//!
//! Voice notes: with the WhatsApp stand-in and no `TRANSCRIBE_URL`, the transcription stand-in
//! transcribes them (it answers a fixed sentence); `POST /sandbox/media` (the bytes, their
//! `Content-Type`) puts a customer's media into the WhatsApp stand-in, as Meta holds the media of
//! a message, and answers its media id for the webhook `make chat` then sends.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::Router;
use axum::body::Bytes;
use axum::extract::connect_info::IntoMakeServiceWithConnectInfo;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{any, get, post};
use shared::bot_check::TurnstileClient;
use shared::config::{
    BrowserFormConfig, Env, FormConfig, StaffConfig, WebhookConfig, WhatsAppConfig, WorkerConfig,
};
use shared::engine::BridgeEngine;
use shared::ingress::form::{BrowserForms, FormIntake};
use shared::ingress::retell::RETELL_PATH;
use shared::ingress::staff::{FUNCTIONS_PATH, STAFF_PATH, StaffDoor};
use shared::ingress::whatsapp::WhatsAppWebhook;
use shared::ingress::{Response as DoorResponse, SourceIp};
use shared::notify::{NotifyError, StaffAlert, StaffNotifier, WebhookNotifier};
use shared::queue::{InProcessQueue, InProcessSettings};
use shared::store::PostgrestStore;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::{GraphStandIn, LocalStack, RetellStandIn, TranscribeStandIn, TurnstileStandIn};

/// The form secret of the sandbox, when `FORM_SHARED_SECRET` is not set.
pub const SANDBOX_FORM_SECRET: &str = "dev-form-secret-of-the-local-sandbox";

/// The Database Webhook's secret in the sandbox, when `STAFF_WEBHOOK_SECRET` is not set.
pub const SANDBOX_STAFF_SECRET: &str = "dev-staff-secret-of-the-local-sandbox";

/// The sandbox page's business, when `FORM_BUSINESS_NAME` is not set.
pub const SANDBOX_BUSINESS_NAME: &str = "Seguros Sandbox";

/// The sandbox page's WhatsApp number (the `wa.me` link), when `FORM_WHATSAPP_NUMBER` is not set.
pub const SANDBOX_WHATSAPP_NUMBER: &str = "15550000000";

/// Where the examples' pages are served from locally (examples/README.md), the sandbox's
/// `FORM_ALLOWED_ORIGINS` when it is not set.
pub const EXAMPLES_ORIGIN: &str = "http://127.0.0.1:8080";

type DevQueue = InProcessQueue<BridgeEngine>;

/// Everything `make dev` runs. Dropping it stops the stand-ins and the local stack.
pub struct DevBridge {
    pub router: Router,
    pub queue: DevQueue,
    /// Set when Retell is the stand-in.
    pub retell: Option<Arc<RetellStandIn>>,
    /// Set when WhatsApp is the stand-in.
    pub graph: Option<Arc<GraphStandIn>>,
    /// Set when the transcription API is the stand-in (WhatsApp's stand-in, no `TRANSCRIBE_URL`).
    pub transcribe: Option<Arc<TranscribeStandIn>>,
    /// Set when Turnstile is the stand-in (no `FORM_TURNSTILE_SITE_KEY`).
    pub turnstile: Option<Arc<TurnstileStandIn>>,
    /// The hosted form's configuration (the page and browser posts).
    pub browser_forms: BrowserFormConfig,
    pub whatsapp: WhatsAppConfig,
    pub form_secret: String,
    /// What runs where, one line each, for the person who started it.
    pub summary: Vec<String>,
    /// The sweeper's task, stopped with the bridge.
    sweeper: tokio::task::JoinHandle<()>,
    _stack: Option<LocalStack>,
}

impl Drop for DevBridge {
    fn drop(&mut self) {
        self.sweeper.abort();
    }
}

struct Routes {
    webhook: WhatsAppWebhook<PostgrestStore, DevQueue>,
    form: FormIntake<PostgrestStore, DevQueue, TurnstileClient>,
    graph: Option<Arc<GraphStandIn>>,
    turnstile: Option<Arc<TurnstileStandIn>>,
    staff: StaffDoor<PostgrestStore, DevQueue, DevAlerts>,
    /// What staff do in the dashboard, for `make chat`.
    dashboard: Dashboard,
    staff_secret: String,
}

impl DevBridge {
    /// Builds the bridge from `env` (the process environment and `.env`): anything not set is
    /// provided locally.
    pub fn assemble(env: &HashMap<String, String>) -> Result<DevBridge> {
        let mut env = env.clone();
        let mut summary = Vec::new();
        let has = |env: &HashMap<String, String>, name: &str| {
            env.get(name).is_some_and(|v| !v.trim().is_empty())
        };

        let stack = if has(&env, "SUPABASE_REST_URL") || has(&env, "SUPABASE_URL") {
            summary
                .push("store: the Supabase/PostgREST at SUPABASE_URL / SUPABASE_REST_URL".into());
            None
        } else {
            let stack = LocalStack::start().context("starting the local stack")?;
            env.insert("SUPABASE_REST_URL".into(), stack.rest_url.clone());
            env.insert(
                "SUPABASE_SERVICE_ROLE_KEY".into(),
                stack.service_role_key.clone(),
            );
            summary.push(format!(
                "store: local PostgreSQL + PostgREST at {} ({})",
                stack.rest_url, stack.database_url
            ));
            Some(stack)
        };

        let retell = if has(&env, "RETELL_API_KEY") {
            summary.push("agent: Retell at RETELL_BASE_URL (real)".into());
            None
        } else {
            let standin = RetellStandIn::start();
            standin.label_replies();
            let config = standin.config();
            env.insert(
                "RETELL_API_KEY".into(),
                crate::retell_standin::API_KEY.into(),
            );
            env.insert("RETELL_AGENT_ID".into(), config.agent_id.clone());
            env.insert("RETELL_BASE_URL".into(), config.base_url.clone());
            // Its chat webhooks (chat_ended, chat_analyzed) go to this server's POST /retell,
            // signed with its key, as Retell's go to the deployment's.
            let port = env.get("DEV_PORT").map_or("3000", |port| port.trim());
            let webhook_url = format!("http://127.0.0.1:{port}{RETELL_PATH}");
            standin.send_webhooks_to(&webhook_url, crate::retell_standin::API_KEY);
            summary.push(format!(
                "agent: SANDBOX Retell stand-in at {} (replies name their chat and turn; \
                 its chat webhooks to {webhook_url} when a chat ends)",
                config.base_url
            ));
            Some(Arc::new(standin))
        };

        let graph = if has(&env, "WHATSAPP_ACCESS_TOKEN") {
            summary.push("WhatsApp: the Graph API at WHATSAPP_GRAPH_URL (real)".into());
            None
        } else {
            let standin = GraphStandIn::start();
            let config = standin.config();
            for (name, value) in [
                (
                    "WHATSAPP_ACCESS_TOKEN",
                    crate::graph_standin::ACCESS_TOKEN.to_owned(),
                ),
                ("WHATSAPP_PHONE_NUMBER_ID", config.phone_number_id.clone()),
                ("WHATSAPP_GRAPH_URL", config.graph_url.clone()),
                ("WHATSAPP_API_VERSION", config.api_version.clone()),
                ("WHATSAPP_TEMPLATE_NAME", config.template_name.clone()),
                (
                    "WHATSAPP_TEMPLATE_LANGUAGE",
                    config.template_language.clone(),
                ),
            ] {
                env.insert(name.into(), value);
            }
            env.entry("WHATSAPP_APP_SECRET".into())
                .or_insert_with(|| "standin-app-secret".into());
            env.entry("WHATSAPP_VERIFY_TOKEN".into())
                .or_insert_with(|| "standin-verify-token".into());
            summary.push(format!(
                "WhatsApp: SANDBOX Graph stand-in at {} (see what was sent: GET /sandbox/outbox)",
                config.graph_url
            ));
            Some(Arc::new(standin))
        };

        // Only the stand-in's voice notes go to the transcription stand-in: a real customer's
        // note must not be answered as if it said the stand-in's fixed sentence, so with the
        // real Graph API and no TRANSCRIBE_URL voice notes get the polite reply, as deployed.
        let transcribe = if has(&env, "TRANSCRIBE_URL") {
            summary.push("voice notes: transcribed by the API at TRANSCRIBE_URL (real)".into());
            None
        } else if graph.is_some() {
            let standin = TranscribeStandIn::start();
            let config = standin.config();
            env.insert("TRANSCRIBE_URL".into(), config.url.clone());
            env.insert(
                "TRANSCRIBE_API_KEY".into(),
                crate::transcribe_standin::API_KEY.into(),
            );
            env.insert("TRANSCRIBE_MODEL".into(), config.model.clone());
            summary.push(format!(
                "voice notes: SANDBOX transcription stand-in at {} (every note says {:?}; \
                 make chat: /voice)",
                config.url,
                crate::transcribe_standin::DEFAULT_TRANSCRIPT
            ));
            Some(Arc::new(standin))
        } else {
            summary
                .push("voice notes: not transcribed (no TRANSCRIBE_URL): the polite reply".into());
            None
        };
        let form_secret = env
            .entry("FORM_SHARED_SECRET".into())
            .or_insert_with(|| SANDBOX_FORM_SECRET.into())
            .clone();
        env.entry("FORM_DEFAULT_COUNTRY".into())
            .or_insert_with(|| "MX".into());
        let staff_secret = env
            .entry("STAFF_WEBHOOK_SECRET".into())
            .or_insert_with(|| SANDBOX_STAFF_SECRET.into())
            .clone();

        let turnstile = if has(&env, "FORM_TURNSTILE_SITE_KEY") {
            summary.push("bot check: Cloudflare Turnstile (real keys)".into());
            None
        } else {
            let standin = TurnstileStandIn::start();
            for (name, value) in [
                (
                    "FORM_TURNSTILE_SITE_KEY",
                    crate::turnstile_standin::SITE_KEY.to_owned(),
                ),
                (
                    "FORM_TURNSTILE_SECRET",
                    crate::turnstile_standin::SECRET.to_owned(),
                ),
                ("FORM_TURNSTILE_VERIFY_URL", standin.verify_url()),
                ("FORM_TURNSTILE_SCRIPT_URL", standin.script_url()),
            ] {
                env.insert(name.into(), value);
            }
            for (name, value) in [
                ("FORM_BUSINESS_NAME", SANDBOX_BUSINESS_NAME),
                ("FORM_WHATSAPP_NUMBER", SANDBOX_WHATSAPP_NUMBER),
                ("FORM_ALLOWED_ORIGINS", EXAMPLES_ORIGIN),
            ] {
                if !has(&env, name) {
                    env.insert(name.into(), value.into());
                }
            }
            summary.push(format!(
                "bot check: SANDBOX Turnstile stand-in at {} (its widget always passes)",
                standin.url()
            ));
            Some(Arc::new(standin))
        };
        // `FORM_ALLOWED_ORIGINS` takes https origins; here also http ones on this machine.
        let (local_origins, https_origins) =
            split_local_origins(env.get("FORM_ALLOWED_ORIGINS").map_or("", String::as_str));
        env.insert("FORM_ALLOWED_ORIGINS".into(), https_origins);

        let env = Env::from_pairs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let http = shared::http::client();
        let worker = WorkerConfig::from_env(&env)?;
        let mut browser_forms = BrowserFormConfig::from_env(&env)?
            .context("FORM_TURNSTILE_SITE_KEY is set, so the hosted form is configured")?;
        browser_forms.allowed_origins.extend(local_origins);
        summary.push(format!(
            "form page: GET /form ({}; may be embedded by and posted from {})",
            browser_forms.business_name,
            if browser_forms.allowed_origins.is_empty() {
                "no other site".to_owned()
            } else {
                browser_forms.allowed_origins.join(", ")
            }
        ));
        let cors = cors(&browser_forms.allowed_origins);
        let store_config = worker.store.clone();
        let whatsapp = worker.whatsapp.clone();
        let engine = BridgeEngine::from_config(&worker, http.clone());
        let http_for_dashboard = http.clone();
        let staff_config = StaffConfig::from_env(&env)?;
        summary.push(
            "staff: POST /staff (the Database Webhook, STAFF_WEBHOOK_SECRET) and \
             POST /retell/functions/request_human (alerts in this log), POST /retell (Retell's \
             chat webhooks); make chat plays the staff (/help)"
                .into(),
        );
        // The production schedule (2 s, 10 s, 30 s, …), as the worker sets it on SQS.
        let queue = InProcessQueue::new(Arc::new(engine), InProcessSettings::default());
        // The sweeper, every minute as EventBridge runs it in AWS.
        let sweeper_store = PostgrestStore::new(&store_config, http.clone());
        let sweeper_queue = queue.clone();
        let sweeper = tokio::spawn(async move {
            let mut every_minute = tokio::time::interval(Duration::from_secs(60));
            loop {
                every_minute.tick().await;
                if let Err(error) = shared::sweep::requeue_stranded_work(
                    &sweeper_store,
                    &sweeper_queue,
                    shared::sweep::GRACE,
                )
                .await
                {
                    tracing::warn!(%error, "the sweep failed");
                }
            }
        });
        let routes = Arc::new(Routes {
            webhook: WhatsAppWebhook::new(
                PostgrestStore::new(&store_config, http.clone()),
                queue.clone(),
                &WebhookConfig::from_env(&env)?,
            ),
            form: FormIntake::new(
                PostgrestStore::new(&store_config, http.clone()),
                queue.clone(),
                FormConfig::from_env(&env)?,
            )
            .with_browser_forms(BrowserForms {
                bot_check: TurnstileClient::new(
                    browser_forms.verify_url.as_str(),
                    browser_forms.secret.clone(),
                    http,
                ),
                config: browser_forms.clone(),
            }),
            graph: graph.clone(),
            turnstile: turnstile.clone(),
            staff: StaffDoor::new(
                PostgrestStore::new(&store_config, http_for_dashboard.clone()),
                queue.clone(),
                DevAlerts {
                    webhook: staff_config
                        .alert_webhook_url
                        .clone()
                        .map(|url| WebhookNotifier::new(url, http_for_dashboard.clone())),
                },
                &staff_config,
            ),
            dashboard: Dashboard::new(&store_config, http_for_dashboard),
            staff_secret,
        });
        let router = Router::new()
            .route("/whatsapp", any(whatsapp_door))
            .route("/form", any(form_door).layer(cors))
            .route(STAFF_PATH, any(staff_door))
            .route(&format!("{FUNCTIONS_PATH}{{name}}"), any(staff_door))
            .route(RETELL_PATH, any(staff_door))
            .route("/sandbox/outbox", get(outbox))
            .route("/sandbox/staff", post(sandbox_staff))
            .route("/sandbox/pause", post(sandbox_pause))
            .route("/sandbox/resume", post(sandbox_resume))
            .route("/sandbox/session", get(sandbox_session))
            .route(
                "/sandbox/media",
                // A voice note may be up to 16 MB, more than the doors take.
                post(sandbox_media).layer(DefaultBodyLimit::max(MAX_SANDBOX_MEDIA_BYTES)),
            )
            .route(crate::turnstile_standin::SCRIPT_PATH, get(turnstile_script))
            // The doors check the size themselves, as in AWS (Meta's deliveries reach 3 MB).
            .layer(DefaultBodyLimit::max(
                shared::ingress::whatsapp::MAX_BODY_BYTES,
            ))
            .with_state(routes);
        Ok(DevBridge {
            router,
            queue,
            retell,
            graph,
            transcribe,
            turnstile,
            browser_forms,
            whatsapp,
            form_secret,
            summary,
            sweeper,
            _stack: stack,
        })
    }
}

impl DevBridge {
    /// The router as a service that knows each connection's address, which the form's browser
    /// path limits by (`SourceIp`, as API Gateway's `sourceIp` in AWS).
    pub fn service(&self) -> IntoMakeServiceWithConnectInfo<Router, SocketAddr> {
        self.router
            .clone()
            .into_make_service_with_connect_info::<SocketAddr>()
    }
}

/// Splits `FORM_ALLOWED_ORIGINS` into the `http://` origins on this machine (127.0.0.1,
/// localhost, [::1]), which only the dev server takes, and the rest, comma-separated.
fn split_local_origins(origins: &str) -> (Vec<String>, String) {
    let mut local = Vec::new();
    let mut rest = Vec::new();
    for origin in origins.split(',').map(str::trim).filter(|o| !o.is_empty()) {
        let loopback = url::Url::parse(origin).ok().filter(|url| {
            url.scheme() == "http"
                && matches!(url.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"))
        });
        match loopback {
            Some(url) => local.push(url.origin().ascii_serialization()),
            None => rest.push(origin),
        }
    }
    (local, rest.join(","))
}

/// What template.yaml's `CorsConfiguration` makes API Gateway do for `/form`.
fn cors(origins: &[String]) -> CorsLayer {
    let origins: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|origin| HeaderValue::from_str(origin).ok())
        .collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([Method::POST])
        .allow_headers([header::CONTENT_TYPE])
        .max_age(Duration::from_secs(600))
}

// The doors take and give `http` types: axum's request parts and body pass straight through.

async fn whatsapp_door(
    State(routes): State<Arc<Routes>>,
    parts: Parts,
    body: Bytes,
) -> DoorResponse {
    let request = axum::http::Request::from_parts(parts, body);
    routes.webhook.handle(&request).await
}

async fn staff_door(State(routes): State<Arc<Routes>>, parts: Parts, body: Bytes) -> DoorResponse {
    let request = axum::http::Request::from_parts(parts, body);
    routes.staff.handle(&request).await
}

/// Staff alerts in the sandbox: in the log, and to `STAFF_ALERT_WEBHOOK_URL` when it is set
/// (the SNS topic is AWS's).
struct DevAlerts {
    webhook: Option<WebhookNotifier>,
}

impl StaffNotifier for DevAlerts {
    async fn notify(&self, alert: &StaffAlert) -> Result<(), NotifyError> {
        tracing::warn!(subject = %alert.subject(), "staff alert:\n{}", alert.text());
        match &self.webhook {
            Some(webhook) => webhook.notify(alert).await,
            None => Ok(()),
        }
    }
}

async fn form_door(
    State(routes): State<Arc<Routes>>,
    mut parts: Parts,
    body: Bytes,
) -> DoorResponse {
    // The connection's address, where the form-intake function has API Gateway's sourceIp.
    if let Some(ConnectInfo(address)) = parts.extensions.get::<ConnectInfo<SocketAddr>>().copied() {
        parts.extensions.insert(SourceIp(address.ip()));
    }
    let request = axum::http::Request::from_parts(parts, body);
    routes.form.handle(&request).await
}

/// The stand-in's widget script, also at the bridge's own address, for pages that load it
/// from there (examples/own-page.html).
async fn turnstile_script(State(routes): State<Arc<Routes>>) -> Response {
    match &routes.turnstile {
        Some(standin) => Redirect::temporary(&standin.script_url()).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            "the Turnstile stand-in runs only in the sandbox (no FORM_TURNSTILE_SITE_KEY)",
        )
            .into_response(),
    }
}

/// What the WhatsApp stand-in accepted, oldest first: `?to=+52…` for one customer, `&after=N`
/// to skip the first N.
async fn outbox(
    State(routes): State<Arc<Routes>>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let Some(graph) = &routes.graph else {
        return (
            StatusCode::NOT_FOUND,
            "the outbox exists only in the sandbox (no WHATSAPP_ACCESS_TOKEN)",
        )
            .into_response();
    };
    let after: usize = query.get("after").and_then(|n| n.parse().ok()).unwrap_or(0);
    let messages: Vec<serde_json::Value> = graph
        .accepted()
        .into_iter()
        .filter(|m| query.get("to").is_none_or(|to| &m.to == to))
        .skip(after)
        .map(|m| serde_json::json!({ "wamid": m.wamid, "to": m.to, "type": m.message_type, "text": m.text }))
        .collect();
    axum::Json(messages).into_response()
}

/// The largest media `POST /sandbox/media` takes: WhatsApp's limit for audio and video.
const MAX_SANDBOX_MEDIA_BYTES: usize = 16 * 1024 * 1024;

/// A customer's media into the WhatsApp stand-in (the body, with its `Content-Type`, default a
/// voice note's): `{"id": <media id>}` for the webhook's `audio`/`image`/... object.
async fn sandbox_media(
    State(routes): State<Arc<Routes>>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Response {
    let Some(graph) = &routes.graph else {
        return (
            StatusCode::NOT_FOUND,
            "media can be added only in the sandbox (no WHATSAPP_ACCESS_TOKEN)",
        )
            .into_response();
    };
    if body.is_empty() {
        return (StatusCode::BAD_REQUEST, "no media in the body").into_response();
    }
    let mime_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or(crate::transcribe_standin::VOICE_NOTE_MIME_TYPE);
    let id = graph.add_media(body.to_vec(), mime_type);
    axum::Json(serde_json::json!({ "id": id, "mime_type": mime_type })).into_response()
}

/// What staff do in Supabase's dashboard, done through the store's REST API with the service
/// key (the Table Editor and the SQL editor act as `postgres`; to PostgREST the service role).
struct Dashboard {
    rest_url: String,
    key: String,
    http: reqwest::Client,
}

impl Dashboard {
    fn new(config: &shared::config::StoreConfig, http: reqwest::Client) -> Self {
        use secrecy::ExposeSecret as _;
        Self {
            rest_url: config.rest_url.clone(),
            key: config.service_role_key.expose_secret().to_owned(),
            http,
        }
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let request = self
            .http
            .request(method, format!("{}/{path}", self.rest_url))
            .header("apikey", &self.key);
        // A JWT key is also the bearer PostgREST reads the role from; `sb_secret_…` keys are not.
        match self.key.split('.').count() == 3 {
            true => request.bearer_auth(&self.key),
            false => request,
        }
    }

    async fn read(request: reqwest::RequestBuilder) -> Result<serde_json::Value> {
        let answer = request.send().await?;
        let status = answer.status();
        let body = answer.text().await?;
        anyhow::ensure!(status.is_success(), "the store answered {status}: {body}");
        Ok(serde_json::from_str(&body)?)
    }

    /// A row in `staff_messages`, as the Table Editor inserts it: the whole row back.
    async fn insert_staff_message(&self, customer: &str, text: &str) -> Result<serde_json::Value> {
        let rows = Self::read(
            self.request(reqwest::Method::POST, "staff_messages")
                .header("prefer", "return=representation")
                .json(&serde_json::json!({ "customer_key": customer, "body": text })),
        )
        .await?;
        rows.get(0).cloned().context("the insert returned no row")
    }

    async fn staff_message(&self, id: i64) -> Result<serde_json::Value> {
        let rows = Self::read(self.request(
            reqwest::Method::GET,
            &format!("staff_messages?id=eq.{id}&select=id,status,status_reason,wamid"),
        ))
        .await?;
        rows.get(0).cloned().context("no such staff message")
    }

    async fn rpc(&self, function: &str, args: serde_json::Value) -> Result<serde_json::Value> {
        Self::read(
            self.request(reqwest::Method::POST, &format!("rpc/{function}"))
                .json(&args),
        )
        .await
    }

    async fn session(&self, customer: &str) -> Result<serde_json::Value> {
        let rows = Self::read(self.request(
            reqwest::Method::GET,
            &format!("chat_sessions?customer_key=eq.{customer}&select=customer_key,paused_until,opted_out_at"),
        ))
        .await?;
        Ok(rows.get(0).cloned().unwrap_or_default())
    }
}

#[derive(serde::Deserialize)]
struct StaffRequest {
    customer_key: shared::domain::CustomerKey,
    #[serde(default)]
    text: String,
    #[serde(default)]
    minutes: Option<u32>,
}

fn failed(error: anyhow::Error) -> Response {
    (StatusCode::BAD_GATEWAY, format!("{error:#}")).into_response()
}

/// Staff write to the customer: the row is inserted as the dashboard does, delivered to the
/// staff door as the Database Webhook does, and the answer is the row once the job is done with
/// it (sent, or refused with the reason).
async fn sandbox_staff(
    State(routes): State<Arc<Routes>>,
    axum::Json(request): axum::Json<StaffRequest>,
) -> Response {
    let record = match routes
        .dashboard
        .insert_staff_message(request.customer_key.as_str(), &request.text)
        .await
    {
        Ok(record) => record,
        Err(error) => return failed(error),
    };
    let Some(id) = record["id"].as_i64() else {
        return failed(anyhow::anyhow!("the row has no id: {record}"));
    };
    let delivered = deliver_staff_webhook(&routes, &record).await;
    if !delivered.status().is_success() {
        return delivered.into_response();
    }
    let started = std::time::Instant::now();
    loop {
        match routes.dashboard.staff_message(id).await {
            Ok(row) if !matches!(row["status"].as_str(), Some("queued" | "sending")) => {
                return axum::Json(row).into_response();
            }
            Ok(row) if started.elapsed() > Duration::from_secs(30) => {
                return axum::Json(row).into_response();
            }
            Ok(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(error) => return failed(error),
        }
    }
}

/// The Database Webhook's delivery of an insert into `staff_messages`, as Supabase sends it.
async fn deliver_staff_webhook(routes: &Routes, record: &serde_json::Value) -> DoorResponse {
    let body = serde_json::json!({
        "type": "INSERT", "table": "staff_messages", "schema": "public",
        "record": record, "old_record": null,
    })
    .to_string();
    let request = axum::http::Request::post("/staff")
        .header(header::CONTENT_TYPE, "application/json")
        .header(
            header::AUTHORIZATION,
            format!("Bearer {}", routes.staff_secret),
        )
        .body(Bytes::from(body))
        .expect("a valid request");
    routes.staff.handle(&request).await
}

async fn sandbox_pause(
    State(routes): State<Arc<Routes>>,
    axum::Json(request): axum::Json<StaffRequest>,
) -> Response {
    let args = serde_json::json!({
        "p_customer_key": request.customer_key, "p_minutes": request.minutes,
        "p_reason": "make chat", "p_by": "make chat",
    });
    match routes.dashboard.rpc("pause_conversation", args).await {
        Ok(answer) => axum::Json(answer).into_response(),
        Err(error) => failed(error),
    }
}

async fn sandbox_resume(
    State(routes): State<Arc<Routes>>,
    axum::Json(request): axum::Json<StaffRequest>,
) -> Response {
    let args = serde_json::json!({ "p_customer_key": request.customer_key, "p_by": "make chat" });
    match routes.dashboard.rpc("resume_conversation", args).await {
        Ok(answer) => axum::Json(answer).into_response(),
        Err(error) => failed(error),
    }
}

/// The customer's session as staff see it: `?customer_key=52…`.
async fn sandbox_session(
    State(routes): State<Arc<Routes>>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let Some(customer) = query.get("customer_key") else {
        return (StatusCode::BAD_REQUEST, "?customer_key=").into_response();
    };
    match routes.dashboard.session(customer).await {
        Ok(session) => axum::Json(session).into_response(),
        Err(error) => failed(error),
    }
}

/// The process environment, and `.env` (in the working directory) for what it leaves unset.
pub fn environment() -> HashMap<String, String> {
    let mut env: HashMap<String, String> = std::env::vars().collect();
    if let Ok(text) = std::fs::read_to_string(".env") {
        for (name, value) in read_dotenv(&text) {
            env.entry(name).or_insert(value);
        }
    }
    env
}

/// `KEY=VALUE` lines of a `.env` file (comments and blank lines skipped, quotes removed).
pub fn read_dotenv(text: &str) -> HashMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(|line| {
            let (name, value) = line.trim_start_matches("export ").split_once('=')?;
            let value = value.trim();
            let value = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(value);
            Some((name.trim().to_owned(), value.to_owned()))
        })
        .collect()
}
