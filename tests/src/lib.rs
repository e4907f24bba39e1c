//! Test support shared by the integration tests, the benchmarks and the local run: the local
//! stack (PostgreSQL + a PostgREST-compatible server) and the stand-ins for the services we
//! cannot reach from here. Never linked into a Lambda binary.

pub mod bench;
pub mod chaos;
pub mod dev;
pub mod graph_standin;
pub mod meta_webhook;
pub mod moto;
mod process;
pub mod retell_standin;
pub mod runtime_api;
pub mod schema;
pub mod stack;
mod standin;

pub use graph_standin::{GraphFault, GraphStandIn};
pub use retell_standin::{RetellFault, RetellOperation, RetellStandIn};
pub use stack::{LocalStack, sign_jwt};

use std::time::Duration;

use shared::config::{EngineConfig, Env, RetellConfig, WhatsAppConfig};
use shared::engine::{Engine, TemplateConfig};
use shared::retell::RetellClient;
use shared::retry::RetryPolicy;
use shared::store::PostgrestStore;
use shared::whatsapp::GraphClient;

/// Real retry counts with waits short enough for tests.
pub const FAST_RETRIES: RetryPolicy = RetryPolicy {
    max_retries: 2,
    base_delay: Duration::from_millis(1),
    max_delay: Duration::from_millis(20),
};

pub type StandInEngine = Engine<PostgrestStore, RetellClient, GraphClient>;

/// The engine as a function builds it (new clients, default settings), its clients pointed at
/// the stand-ins' configurations and retrying fast.
pub fn standin_engine(
    store: PostgrestStore,
    retell: &RetellConfig,
    whatsapp: &WhatsAppConfig,
) -> StandInEngine {
    let http = shared::http::client();
    Engine::new(
        store,
        RetellClient::new(retell, http.clone()).with_retry_policy(FAST_RETRIES),
        GraphClient::new(whatsapp, http).with_retry_policy(FAST_RETRIES, Duration::from_millis(1)),
        EngineConfig::from_env(&Env::default()).expect("the engine's defaults are valid"),
        TemplateConfig {
            name: whatsapp.template_name.clone(),
            language: whatsapp.template_language.clone(),
        },
    )
}
