//! The process's one HTTP client: built once at start-up and cloned (cheaply) into every
//! adapter, so connections and TLS sessions are shared.

use std::time::Duration;

/// Connecting takes at most this long; each adapter sets its own whole-request timeout.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .pool_idle_timeout(Duration::from_secs(50))
        .tcp_nodelay(true)
        .user_agent(concat!(
            "whatsapp-retell-bridge/",
            env!("CARGO_PKG_VERSION")
        ))
        .build()
        .expect("the HTTP client's settings are valid")
}

/// `Authorization: Bearer <token>`, marked sensitive so it never shows in debug output. A token
/// that cannot be a header value yields one the service will refuse, with a 401 that says so.
pub fn bearer(token: &str) -> reqwest::header::HeaderValue {
    let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
        .unwrap_or_else(|_| reqwest::header::HeaderValue::from_static("Bearer invalid-token"));
    value.set_sensitive(true);
    value
}

/// A request's error and its causes, without the URL (ours, long, and possibly carrying a key).
pub fn describe(error: &reqwest::Error) -> String {
    let mut message = error.to_string();
    if let Some(url) = error.url() {
        message = message.replace(&format!(" for url ({url})"), "");
    }
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        message.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    message
}
