//! Test support shared by the integration tests, the benchmarks and the local run: the local
//! stack (PostgreSQL + a PostgREST-compatible server) and the stand-ins for the services we
//! cannot reach from here. Never linked into a Lambda binary.

pub mod dev;
pub mod graph_standin;
pub mod moto;
mod process;
pub mod retell_standin;
pub mod schema;
pub mod stack;
mod standin;

pub use graph_standin::{GraphFault, GraphStandIn};
pub use retell_standin::{RetellFault, RetellOperation, RetellStandIn};
pub use stack::{LocalStack, sign_jwt};
