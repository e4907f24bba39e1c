//! Test support shared by the integration tests, the benchmarks and the local run: the local
//! stack (PostgreSQL + a PostgREST-compatible server) and the stand-ins for the services we
//! cannot reach from here. Never linked into a Lambda binary.

pub mod stack;

pub use stack::{LocalStack, sign_jwt};
