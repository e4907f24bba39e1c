//! The bridge on one machine: the local stack (PostgreSQL + a PostgREST-compatible server with
//! Supabase's roles), moto's SQS-compatible server, the stand-ins for the services we cannot
//! reach from here (Retell, Meta's Graph API, a transcription API), checked against the vendored
//! specs, and the dev server of `make dev`. Used by `make dev`, `make chat`, the tests, chaos and
//! the benchmarks; never linked into a Lambda binary.

pub mod dev;
pub mod graph_standin;
pub mod meta_webhook;
pub mod moto;
pub mod outage_proxy;
mod process;
pub mod retell_standin;
pub mod schema;
pub mod stack;
pub mod standin;
pub mod transcribe_standin;
pub mod turnstile_standin;

pub use graph_standin::{GraphFault, GraphStandIn};
pub use outage_proxy::OutageProxy;
pub use retell_standin::{RetellFault, RetellOperation, RetellStandIn};
pub use stack::{LocalStack, sign_jwt};
pub use transcribe_standin::{
    TranscribeFault, TranscribeStandIn, TranscriptionRequest, VOICE_NOTE_OGG,
};
pub use turnstile_standin::TurnstileStandIn;

use std::time::Duration;

use shared::config::{EngineConfig, Env, RetellConfig, WhatsAppConfig, WorkerConfig};
use shared::engine::BridgeEngine;
use shared::retry::RetryPolicy;

/// Real retry counts with waits short enough for tests.
pub const FAST_RETRIES: RetryPolicy = RetryPolicy {
    max_retries: 2,
    base_delay: Duration::from_millis(1),
    max_delay: Duration::from_millis(20),
};

/// What a worker would read, pointed at `stack` (with the service-role key) and at the
/// stand-ins' configurations, with the engine's defaults.
pub fn worker_config(
    stack: &LocalStack,
    retell: RetellConfig,
    whatsapp: WhatsAppConfig,
) -> WorkerConfig {
    WorkerConfig {
        store: stack.store_config(&stack.service_role_key),
        retell,
        whatsapp,
        engine: EngineConfig::from_env(&Env::default()).expect("the engine's defaults are valid"),
        outcome_hook: None,
        transcribe: None,
    }
}

/// The engine as the worker builds it from `config` (new clients), retrying fast.
pub fn standin_engine(config: &WorkerConfig) -> BridgeEngine {
    BridgeEngine::from_config(config, shared::http::client())
        .with_retry_policy(FAST_RETRIES, Duration::from_millis(1))
}
