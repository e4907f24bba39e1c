//! The library every function of the WhatsApp ↔ Retell bridge uses: domain types, ports (traits),
//! their adapters, and typed configuration. Binaries only wire these together.

pub mod agent;
mod aws;
pub mod bot_check;
pub mod config;
pub mod domain;
pub mod engine;
#[cfg(any(test, feature = "fakes"))]
pub mod fakes;
pub mod http;
pub mod ingress;
pub mod messenger;
pub mod metrics;
pub mod notify;
pub mod outcome;
pub mod queue;
pub mod retell;
pub mod retry;
pub mod secrets;
pub mod signature;
pub mod store;
pub mod sweep;
pub mod telemetry;
pub mod transcribe;
pub mod whatsapp;
