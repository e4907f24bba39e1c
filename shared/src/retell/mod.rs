//! Retell AI: the chat API client (the [`crate::agent::ChatAgent`] adapter) and the webhook
//! Retell calls.

mod client;
pub mod webhook;

pub use client::RetellClient;
