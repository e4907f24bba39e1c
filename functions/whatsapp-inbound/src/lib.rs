//! The whatsapp-inbound entry point: API Gateway's request in, the webhook's answer out.

use lambda_http::{Body, Request, Response};
use shared::config::{ConfigError, Env, QueueConfig, StoreConfig, WebhookConfig};
use shared::ingress::HttpAnswer;
use shared::ingress::whatsapp::WhatsAppWebhook;
use shared::queue::TurnQueue;
use shared::store::SessionStore;

/// What the function reads from its environment at INIT.
#[derive(Debug)]
pub struct Config {
    pub store: StoreConfig,
    pub queue: QueueConfig,
    pub webhook: WebhookConfig,
}

impl Config {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            store: StoreConfig::from_env(env)?,
            queue: QueueConfig::from_env(env)?,
            webhook: WebhookConfig::from_env(env)?,
        })
    }
}

pub async fn handle_request<S: SessionStore, Q: TurnQueue>(
    webhook: &WhatsAppWebhook<S, Q>,
    request: Request,
) -> Response<Body> {
    let answer = match request.method().as_str() {
        "GET" => webhook.verify(request.uri().query().unwrap_or("")),
        "POST" => {
            let signature = request
                .headers()
                .get("x-hub-signature-256")
                .and_then(|v| v.to_str().ok());
            webhook.receive(signature, request.body().as_ref()).await
        }
        other => HttpAnswer::error(
            405,
            "method_not_allowed",
            &format!("{other} is not GET or POST"),
            None,
        ),
    };
    answer.into_http()
}
