//! The whole bridge on one machine (`make dev`): both routes on one port, the worker in-process,
//! the store on the local stack, and Retell and WhatsApp either real (their credentials are set)
//! or stand-ins (the sandbox). The same assembly serves the end-to-end test.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use shared::config::{Env, FormConfig, WebhookConfig, WhatsAppConfig, WorkerConfig};
use shared::engine::BridgeEngine;
use shared::ingress::Response as DoorResponse;
use shared::ingress::form::FormIntake;
use shared::ingress::whatsapp::WhatsAppWebhook;
use shared::queue::{InProcessQueue, InProcessSettings};
use shared::store::PostgrestStore;

use crate::{GraphStandIn, LocalStack, RetellStandIn};

/// The form secret of the sandbox, when `FORM_SHARED_SECRET` is not set.
pub const SANDBOX_FORM_SECRET: &str = "dev-form-secret-of-the-local-sandbox";

type DevQueue = InProcessQueue<BridgeEngine>;

/// Everything `make dev` runs. Dropping it stops the stand-ins and the local stack.
pub struct DevBridge {
    pub router: Router,
    pub queue: DevQueue,
    /// Set when Retell is the stand-in.
    pub retell: Option<Arc<RetellStandIn>>,
    /// Set when WhatsApp is the stand-in.
    pub graph: Option<Arc<GraphStandIn>>,
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
    form: FormIntake<PostgrestStore, DevQueue>,
    graph: Option<Arc<GraphStandIn>>,
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
            summary.push(format!(
                "agent: SANDBOX Retell stand-in at {} (replies name their chat and turn)",
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
        let form_secret = env
            .entry("FORM_SHARED_SECRET".into())
            .or_insert_with(|| SANDBOX_FORM_SECRET.into())
            .clone();
        env.entry("FORM_DEFAULT_COUNTRY".into())
            .or_insert_with(|| "MX".into());

        let env = Env::from_pairs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let http = shared::http::client();
        let worker = WorkerConfig::from_env(&env)?;
        let store_config = worker.store.clone();
        let whatsapp = worker.whatsapp.clone();
        let engine = BridgeEngine::from_config(&worker, http.clone());
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
                PostgrestStore::new(&store_config, http),
                queue.clone(),
                FormConfig::from_env(&env)?,
            ),
            graph: graph.clone(),
        });
        let router = Router::new()
            .route("/whatsapp", any(whatsapp_door))
            .route("/form", any(form_door))
            .route("/sandbox/outbox", get(outbox))
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
            whatsapp,
            form_secret,
            summary,
            sweeper,
            _stack: stack,
        })
    }
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

async fn form_door(State(routes): State<Arc<Routes>>, parts: Parts, body: Bytes) -> DoorResponse {
    let request = axum::http::Request::from_parts(parts, body);
    routes.form.handle(&request).await
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
