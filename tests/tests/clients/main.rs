//! The Retell and WhatsApp clients against stand-ins that answer like the real services, and
//! Meta's own webhook examples through our parser.

mod graph;
mod retell;
mod webhooks;

use std::time::Duration;

use shared::retry::RetryPolicy;

/// Real retry counts with waits short enough for tests.
pub const FAST_RETRIES: RetryPolicy = RetryPolicy {
    max_retries: 2,
    base_delay: Duration::from_millis(1),
    max_delay: Duration::from_millis(20),
};
