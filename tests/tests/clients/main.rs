//! The Retell and WhatsApp clients against stand-ins that answer like the real services, and
//! Meta's own webhook examples through our parser.

mod graph;
mod retell;
mod standins_media;
mod transcribe;
mod webhooks;

pub use sandbox::FAST_RETRIES;
