//! The outcome hook: each chat Retell analysed is POSTed as JSON to the business's
//! `OUTCOME_WEBHOOK_URL` (a CRM, Zapier, n8n), signed like the form's signature:
//! `X-Bridge-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
//! The receiver recomputes the HMAC over the raw body and rejects stale timestamps.

use std::time::Duration;

use chrono::Utc;
use secrecy::ExposeSecret as _;
use url::Url;

use crate::config::OutcomeHookConfig;
use crate::signature::hmac_sha256_hex;

/// The header that carries the signature.
pub const SIGNATURE_HEADER: &str = "X-Bridge-Signature";

/// The signature header's value for `body` sent at `timestamp` (Unix seconds).
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let t = timestamp.to_string();
    let digest = hmac_sha256_hex(secret, &[t.as_bytes(), b".", body]);
    format!("t={t},v1={digest}")
}

#[derive(Debug, thiserror::Error)]
pub enum OutcomeHookError {
    /// Worth another try later: the receiver failed (5xx), is limiting us (429), did not
    /// answer in time, or could not be reached.
    #[error("the outcome hook failed for now: {0}")]
    Transient(String),
    /// The receiver refused the outcome (another 4xx): sending it again changes nothing.
    #[error("the outcome hook refused the outcome (HTTP {status}): {message}")]
    Refused { status: u16, message: String },
}

impl OutcomeHookError {
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Transient(_))
    }
}

/// The client of the business's outcome hook.
#[derive(Clone)]
pub struct OutcomeHook {
    url: Url,
    secret: secrecy::SecretString,
    timeout: Duration,
    http: reqwest::Client,
}

impl std::fmt::Debug for OutcomeHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutcomeHook")
            .field("url", &self.url.as_str())
            .finish_non_exhaustive()
    }
}

impl OutcomeHook {
    /// The whole request, the receiver's answer included, takes at most this long.
    pub const TIMEOUT: Duration = Duration::from_secs(10);

    pub fn new(config: &OutcomeHookConfig, http: reqwest::Client) -> Self {
        Self {
            url: config.url.clone(),
            secret: config.secret.clone(),
            timeout: Self::TIMEOUT,
            http,
        }
    }

    /// POSTs `outcome` as JSON, signed now.
    pub async fn deliver(&self, outcome: &serde_json::Value) -> Result<(), OutcomeHookError> {
        let body = serde_json::to_vec(outcome)
            .map_err(|e| OutcomeHookError::Transient(format!("could not encode: {e}")))?;
        let signature = sign(
            self.secret.expose_secret().as_bytes(),
            Utc::now().timestamp(),
            &body,
        );
        let response = self
            .http
            .post(self.url.clone())
            .timeout(self.timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, signature)
            .body(body)
            .send()
            .await
            .map_err(|error| {
                let what = if error.is_timeout() {
                    "no answer in time"
                } else if error.is_connect() {
                    "could not connect"
                } else {
                    "the request failed"
                };
                OutcomeHookError::Transient(format!("{what}: {error}"))
            })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let message: String = response
            .text()
            .await
            .unwrap_or_default()
            .chars()
            .take(300)
            .collect();
        if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            return Err(OutcomeHookError::Transient(format!(
                "HTTP {}: {message}",
                status.as_u16()
            )));
        }
        Err(OutcomeHookError::Refused {
            status: status.as_u16(),
            message,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_the_hmac_of_the_timestamp_a_dot_and_the_body() {
        let header = sign(b"secret", 1_700_000_000, b"{\"a\":1}");
        let expected = hmac_sha256_hex(b"secret", &[b"1700000000.{\"a\":1}"]);
        assert_eq!(header, format!("t=1700000000,v1={expected}"));
    }
}
