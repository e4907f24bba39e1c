//! The staff-inbound function: what it reads at INIT. API Gateway's request goes straight to
//! [`shared::ingress::staff::StaffDoor::handle`].

use shared::config::{ConfigError, Env, QueueConfig, StaffConfig, StoreConfig};

/// The keys of the deployment's secret the function takes ([`shared::secrets::read_into`]):
/// those its [`Config`] reads.
pub const SECRETS: &[&str] = &[
    "SUPABASE_SERVICE_ROLE_KEY",
    "RETELL_API_KEY",
    "STAFF_WEBHOOK_SECRET",
    "RETELL_WEBHOOK_API_KEY",
];

/// What the function reads from its environment at INIT.
#[derive(Debug)]
pub struct Config {
    pub store: StoreConfig,
    pub queue: QueueConfig,
    pub staff: StaffConfig,
}

impl Config {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            store: StoreConfig::from_env(env)?,
            queue: QueueConfig::from_env(env)?,
            staff: StaffConfig::from_env(env)?,
        })
    }
}
