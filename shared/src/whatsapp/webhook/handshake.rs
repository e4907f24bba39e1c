//! Meta's GET verification handshake (`hub.mode`, `hub.verify_token`, `hub.challenge`).

use crate::signature::secrets_match;

/// The query of Meta's GET handshake: `hub.mode`, `hub.verify_token` and `hub.challenge`, each
/// absent when the request lacks it. No `Debug`: the token may be the real one.
#[derive(Clone, Copy, Default)]
pub struct SubscriptionQuery<'a> {
    pub mode: Option<&'a str>,
    pub verify_token: Option<&'a str>,
    pub challenge: Option<&'a str>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubscriptionError {
    #[error("the verification request has no hub.{0}")]
    MissingParameter(&'static str),
    #[error("hub.mode must be `subscribe`, got {0:?}")]
    WrongMode(String),
    #[error("hub.verify_token does not match the configured verify token")]
    WrongToken,
}

/// Checks Meta's subscription handshake and returns the challenge to echo back, unchanged, as
/// the plain-text body of a 200.
pub fn verify_subscription(
    query: SubscriptionQuery<'_>,
    expected_token: &str,
) -> Result<String, SubscriptionError> {
    let mode = query
        .mode
        .ok_or(SubscriptionError::MissingParameter("mode"))?;
    if mode != "subscribe" {
        return Err(SubscriptionError::WrongMode(mode.to_owned()));
    }
    let token = query
        .verify_token
        .ok_or(SubscriptionError::MissingParameter("verify_token"))?;
    if !tokens_match(token, expected_token) {
        return Err(SubscriptionError::WrongToken);
    }
    query
        .challenge
        .map(str::to_owned)
        .ok_or(SubscriptionError::MissingParameter("challenge"))
}

/// Compares two tokens in constant time, whatever their lengths.
fn tokens_match(given: &str, expected: &str) -> bool {
    secrets_match(given.as_bytes(), expected.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handshake<'a>(mode: &'a str, token: &'a str) -> SubscriptionQuery<'a> {
        SubscriptionQuery {
            mode: Some(mode),
            verify_token: Some(token),
            challenge: Some("1158201444"),
        }
    }

    #[test]
    fn the_handshake_echoes_the_challenge_for_the_right_token() {
        assert_eq!(
            verify_subscription(handshake("subscribe", "my token"), "my token"),
            Ok("1158201444".to_owned())
        );
    }

    #[test]
    fn the_handshake_refuses_a_wrong_token() {
        for token in ["my tokeN", "my toke", "my token ", ""] {
            assert_eq!(
                verify_subscription(handshake("subscribe", token), "my token"),
                Err(SubscriptionError::WrongToken),
                "{token:?}"
            );
        }
    }

    #[test]
    fn the_handshake_refuses_a_wrong_mode_or_missing_parameters() {
        assert_eq!(
            verify_subscription(handshake("unsubscribe", "my token"), "my token"),
            Err(SubscriptionError::WrongMode("unsubscribe".to_owned()))
        );
        let no_challenge = SubscriptionQuery {
            challenge: None,
            ..handshake("subscribe", "my token")
        };
        assert_eq!(
            verify_subscription(no_challenge, "my token"),
            Err(SubscriptionError::MissingParameter("challenge"))
        );
        let err = verify_subscription(SubscriptionQuery::default(), "my token").unwrap_err();
        assert_eq!(err.to_string(), "the verification request has no hub.mode");
    }

    // --- Events ---
}
