//! WhatsApp Cloud API: the Graph client that sends (the [`crate::messenger::Messenger`]
//! adapter) and the webhook Meta calls.

mod client;
mod text;
pub mod webhook;

pub use client::GraphClient;
pub use text::{MAX_TEXT_CHARS, split_text};
