//! The whatsapp-inbound function: what it reads at INIT. API Gateway's request goes straight to
//! [`shared::ingress::whatsapp::WhatsAppWebhook::handle`].

use shared::config::{ConfigError, Env, QueueConfig, StoreConfig, WebhookConfig};

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
