//! Is a browser's form a person's? The port the form asks before it records a browser's post,
//! and its adapter for Cloudflare Turnstile's siteverify API. Another provider (hCaptcha,
//! reCAPTCHA) is another adapter of [`BotCheck`].
//!
//! The check fails closed: a token that cannot be verified (the provider down, slow, or
//! answering what we cannot read) is [`BotCheckError::Unavailable`], and the form records
//! nothing.

use std::future::Future;
use std::net::IpAddr;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// What the browser sent: the widget's token, and the address the request came from.
#[derive(Debug, Clone, Copy)]
pub struct Challenge<'a> {
    pub token: &'a str,
    pub remote_ip: Option<IpAddr>,
}

/// What a valid token must say: the action the widget was rendered with, and one of the
/// hostnames the form may be shown on (a host in lower case, without its port).
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    pub action: &'a str,
    pub hostnames: &'a [String],
}

/// Why a token was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BotCheckError {
    /// No token, or an empty one.
    #[error("no bot check token was sent")]
    Missing,
    /// The provider refused the token: its error codes (`invalid-input-response`,
    /// `timeout-or-duplicate`, …).
    #[error("the bot check refused the token: {}", .0.join(", "))]
    Refused(Vec<String>),
    /// The token was solved on a page of another host.
    #[error("the bot check token was solved on {0:?}, not on this form's host")]
    WrongHostname(String),
    /// The token was solved for another action.
    #[error("the bot check token is for the action {0:?}, not this form's")]
    WrongAction(String),
    /// The token could not be checked: the provider down, slow, refusing our secret, or
    /// answering what we cannot read. The form fails closed.
    #[error("the bot check could not be made: {0}")]
    Unavailable(String),
}

/// Verifies a browser's bot-check token. Each token is good once.
pub trait BotCheck: Send + Sync {
    fn verify(
        &self,
        challenge: &Challenge<'_>,
        expected: &Expected<'_>,
    ) -> impl Future<Output = Result<(), BotCheckError>> + Send;
}

/// No bot check configured: every token is refused as [`BotCheckError::Missing`], so no browser
/// post is ever taken.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoBotCheck;

impl BotCheck for NoBotCheck {
    async fn verify(&self, _: &Challenge<'_>, _: &Expected<'_>) -> Result<(), BotCheckError> {
        Err(BotCheckError::Missing)
    }
}

/// Cloudflare Turnstile's siteverify adapter: `POST <verify_url>` form-urlencoded with `secret`,
/// `response`, `remoteip` and an `idempotency_key` (a fresh UUID per token), answered
/// `{"success", "error-codes", "challenge_ts", "hostname", "action", "cdata"}`. A request that
/// could not connect is sent once more with the same idempotency key, which siteverify answers
/// as the first (a token is otherwise good once). Each attempt has [`TurnstileClient::TIMEOUT`].
#[derive(Clone)]
pub struct TurnstileClient {
    verify_url: String,
    secret: SecretString,
    client: reqwest::Client,
    timeout: Duration,
}

impl std::fmt::Debug for TurnstileClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TurnstileClient")
            .field("verify_url", &self.verify_url)
            .finish_non_exhaustive()
    }
}

/// Error codes that say the token was not checked because of us, not the browser: our secret
/// refused, a malformed request, or the provider's own failure. They fail closed as
/// [`BotCheckError::Unavailable`] (503, logged at ERROR), not as the browser's fault.
const OUR_FAULT_CODES: [&str; 4] = [
    "missing-input-secret",
    "invalid-input-secret",
    "bad-request",
    "internal-error",
];

/// The longest token siteverify takes (its documented limit).
const MAX_TOKEN_CHARS: usize = 2048;

/// siteverify's answer, as documented.
#[derive(Debug, Deserialize)]
struct Siteverify {
    success: bool,
    #[serde(default, rename = "error-codes")]
    error_codes: Vec<String>,
    #[serde(default)]
    hostname: Option<String>,
    #[serde(default)]
    action: Option<String>,
}

impl TurnstileClient {
    /// How long one siteverify request may take.
    pub const TIMEOUT: Duration = Duration::from_secs(5);

    /// `client` is the process's shared HTTP client ([`crate::http::client`]).
    pub fn new(
        verify_url: impl Into<String>,
        secret: SecretString,
        client: reqwest::Client,
    ) -> Self {
        Self {
            verify_url: verify_url.into(),
            secret,
            client,
            timeout: Self::TIMEOUT,
        }
    }

    /// Another timeout per request (tests).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    async fn siteverify(&self, form: &[(&str, &str)]) -> Result<Siteverify, BotCheckError> {
        let unavailable = |what: String| BotCheckError::Unavailable(what);
        let mut retried = false;
        let response = loop {
            let sent = self
                .client
                .post(&self.verify_url)
                .timeout(self.timeout)
                .form(form)
                .send()
                .await;
            match sent {
                Err(error) if error.is_connect() && !retried => {
                    tracing::warn!(error = %crate::http::describe(&error), "siteverify: could not connect; once more");
                    retried = true;
                }
                Err(error) if error.is_timeout() => {
                    return Err(unavailable(format!(
                        "siteverify did not answer within {} s",
                        self.timeout.as_secs_f32()
                    )));
                }
                Err(error) => {
                    return Err(unavailable(format!(
                        "siteverify could not be reached: {}",
                        crate::http::describe(&error)
                    )));
                }
                Ok(response) => break response,
            }
        };
        let status = response.status();
        let body = response.bytes().await.map_err(|error| {
            unavailable(format!(
                "reading siteverify's answer: {}",
                crate::http::describe(&error)
            ))
        })?;
        if !status.is_success() {
            return Err(unavailable(format!("siteverify answered {status}")));
        }
        serde_json::from_slice(&body).map_err(|error| {
            unavailable(format!(
                "siteverify answered what we cannot read ({error}): {}",
                String::from_utf8_lossy(&body[..body.len().min(200)])
            ))
        })
    }
}

impl BotCheck for TurnstileClient {
    async fn verify(
        &self,
        challenge: &Challenge<'_>,
        expected: &Expected<'_>,
    ) -> Result<(), BotCheckError> {
        let token = challenge.token.trim();
        if token.is_empty() {
            return Err(BotCheckError::Missing);
        }
        if token.chars().count() > MAX_TOKEN_CHARS {
            // siteverify would refuse it the same way, after a round trip.
            return Err(BotCheckError::Refused(vec![
                "invalid-input-response".to_owned(),
            ]));
        }
        let idempotency_key = random_uuid().to_string();
        let remote_ip = challenge.remote_ip.map(|ip| ip.to_string());
        let mut form = vec![
            ("secret", self.secret.expose_secret()),
            ("response", token),
            ("idempotency_key", idempotency_key.as_str()),
        ];
        if let Some(ip) = &remote_ip {
            form.push(("remoteip", ip.as_str()));
        }
        let answer = self.siteverify(&form).await?;
        judge(answer, expected)
    }
}

/// siteverify's answer against what this form expects.
fn judge(answer: Siteverify, expected: &Expected<'_>) -> Result<(), BotCheckError> {
    if !answer.success {
        if let Some(code) = answer
            .error_codes
            .iter()
            .find(|code| OUR_FAULT_CODES.contains(&code.as_str()))
        {
            return Err(BotCheckError::Unavailable(format!(
                "siteverify could not check the token: {code} (check FORM_TURNSTILE_SECRET)"
            )));
        }
        let codes = if answer.error_codes.is_empty() {
            vec!["unsuccessful".to_owned()]
        } else {
            answer.error_codes
        };
        return Err(BotCheckError::Refused(codes));
    }
    let hostname = answer.hostname.unwrap_or_default();
    if !expected
        .hostnames
        .iter()
        .any(|allowed| allowed.eq_ignore_ascii_case(&hostname))
    {
        return Err(BotCheckError::WrongHostname(hostname));
    }
    let action = answer.action.unwrap_or_default();
    if action != expected.action {
        return Err(BotCheckError::WrongAction(action));
    }
    Ok(())
}

/// A random (version 4) UUID.
fn random_uuid() -> uuid::Uuid {
    let mut bytes = [0u8; 16];
    bytes.iter_mut().for_each(|b| *b = fastrand::u8(..));
    uuid::Builder::from_random_bytes(bytes).into_uuid()
}

#[cfg(test)]
mod tests {
    //! The answers' reading; the adapter against siteverify's stand-in is tested in
    //! `sandbox::turnstile_standin` (the sandbox depends on this crate).
    use super::*;

    fn hosts() -> Vec<String> {
        vec!["forms.example.com".to_owned(), "www.example.com".to_owned()]
    }

    fn answer(json: serde_json::Value) -> Result<(), BotCheckError> {
        let hostnames = hosts();
        let expected = Expected {
            action: "lead-form",
            hostnames: &hostnames,
        };
        judge(serde_json::from_value(json).unwrap(), &expected)
    }

    #[test]
    fn a_successful_answer_for_our_host_and_action_passes() {
        for host in ["forms.example.com", "WWW.example.com"] {
            let ok = answer(serde_json::json!({
                "success": true, "error-codes": [], "challenge_ts": "2026-12-01T10:00:00.000Z",
                "hostname": host, "action": "lead-form", "cdata": ""
            }));
            assert_eq!(ok, Ok(()), "{host}");
        }
    }

    #[test]
    fn another_host_or_action_is_refused_naming_it() {
        let wrong_host = answer(serde_json::json!({
            "success": true, "hostname": "evil.example.net", "action": "lead-form"
        }));
        assert_eq!(
            wrong_host,
            Err(BotCheckError::WrongHostname("evil.example.net".into()))
        );
        let wrong_action = answer(serde_json::json!({
            "success": true, "hostname": "forms.example.com", "action": "login"
        }));
        assert_eq!(
            wrong_action,
            Err(BotCheckError::WrongAction("login".into()))
        );
        let no_action = answer(serde_json::json!({
            "success": true, "hostname": "forms.example.com"
        }));
        assert_eq!(no_action, Err(BotCheckError::WrongAction(String::new())));
    }

    #[test]
    fn a_refused_token_keeps_its_codes_and_our_faults_fail_closed_as_unavailable() {
        let refused = answer(serde_json::json!({
            "success": false, "error-codes": ["timeout-or-duplicate"]
        }));
        assert_eq!(
            refused,
            Err(BotCheckError::Refused(vec!["timeout-or-duplicate".into()]))
        );
        let bare = answer(serde_json::json!({ "success": false }));
        assert_eq!(
            bare,
            Err(BotCheckError::Refused(vec!["unsuccessful".into()]))
        );
        for code in OUR_FAULT_CODES {
            let ours = answer(serde_json::json!({ "success": false, "error-codes": [code] }));
            assert!(
                matches!(&ours, Err(BotCheckError::Unavailable(m)) if m.contains(code)),
                "{ours:?}"
            );
        }
    }

    #[tokio::test]
    async fn without_a_bot_check_every_token_is_refused() {
        let hostnames = hosts();
        let expected = Expected {
            action: "lead-form",
            hostnames: &hostnames,
        };
        let challenge = Challenge {
            token: "anything",
            remote_ip: None,
        };
        assert_eq!(
            NoBotCheck.verify(&challenge, &expected).await,
            Err(BotCheckError::Missing)
        );
    }

    #[tokio::test]
    async fn an_empty_token_is_missing_without_a_request_and_a_dead_endpoint_is_unavailable() {
        // Nothing listens on port 9 of the loopback: connecting fails, twice.
        let client = TurnstileClient::new(
            "http://127.0.0.1:9/turnstile/v0/siteverify",
            SecretString::from("secret"),
            crate::http::client(),
        );
        let hostnames = hosts();
        let expected = Expected {
            action: "lead-form",
            hostnames: &hostnames,
        };
        let empty = Challenge {
            token: "  ",
            remote_ip: None,
        };
        assert_eq!(
            client.verify(&empty, &expected).await,
            Err(BotCheckError::Missing)
        );
        let token = Challenge {
            token: "XXXX.DUMMY.TOKEN",
            remote_ip: None,
        };
        let down = client.verify(&token, &expected).await;
        assert!(
            matches!(&down, Err(BotCheckError::Unavailable(m)) if m.contains("could not be reached")),
            "{down:?}"
        );
    }

    #[test]
    fn the_idempotency_key_is_a_version_4_uuid() {
        let (a, b) = (random_uuid(), random_uuid());
        assert_eq!(a.get_version_num(), 4);
        assert_ne!(a, b);
    }
}
