//! The whatsapp-inbound function: what it reads at INIT. API Gateway's request goes straight to
//! [`shared::ingress::whatsapp::WhatsAppWebhook::handle`].

use shared::config::{ConfigError, Env, QueueConfig, StoreConfig, WebhookConfig};

/// The keys of the deployment's secret the function takes ([`shared::secrets::read_into`]):
/// those its [`Config`] reads.
pub const SECRETS: &[&str] = &[
    "SUPABASE_SERVICE_ROLE_KEY",
    "WHATSAPP_APP_SECRET",
    "WHATSAPP_VERIFY_TOKEN",
];

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
