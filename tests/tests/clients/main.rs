//! The Retell and WhatsApp clients against stand-ins that answer like the real services, and
//! Meta's own webhook examples through our parser.

mod graph;
mod retell;
mod webhooks;

pub use sandbox::FAST_RETRIES;
