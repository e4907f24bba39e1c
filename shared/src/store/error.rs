use std::fmt;

use serde::Deserialize;

/// PostgREST's error body: `{"code", "message", "details", "hint"}`, with the HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PostgrestError {
    #[serde(skip)]
    pub status: u16,
    /// A SQLSTATE (`23505`) or PostgREST's own code (`PGRST301`).
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub details: Option<String>,
    #[serde(default)]
    pub hint: Option<String>,
}

impl PostgrestError {
    /// Reads an error body; a body that is not PostgREST's JSON (a gateway's HTML page, say)
    /// is kept as the message.
    pub(crate) fn from_body(status: u16, body: &[u8]) -> Self {
        serde_json::from_slice::<Self>(body)
            .map(|error| Self { status, ..error })
            .unwrap_or_else(|_| Self {
                status,
                code: String::new(),
                message: String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned(),
                details: None,
                hint: None,
            })
    }
}

impl fmt::Display for PostgrestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HTTP {}", self.status)?;
        if !self.code.is_empty() {
            write!(f, " {}", self.code)?;
        }
        write!(f, ": {}", self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, " (hint: {hint})")?;
        }
        Ok(())
    }
}

/// What can go wrong talking to the store, by what the caller should do about it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The request clashes with stored data (HTTP 409: a unique key, a reused idempotency key).
    #[error("the store refused a conflicting write: {0}")]
    Conflict(PostgrestError),
    /// The key was refused, or its role may not do this (HTTP 401/403): a deployment problem,
    /// not something a retry fixes.
    #[error(
        "the store refused our key or its role (check SUPABASE_SERVICE_ROLE_KEY and the migrations): {0}"
    )]
    Unauthorized(PostgrestError),
    /// The store could not be reached or could not answer (timeouts, connection errors, 5xx).
    /// Retry later; every step is safe to repeat.
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    /// The store understood the request and rejected it (4xx): bad input or a broken invariant.
    #[error("the store rejected the request: {0}")]
    Rejected(PostgrestError),
    /// The store answered 2xx with something we cannot read: a schema mismatch.
    #[error("the store answered something unexpected")]
    Unexpected(#[source] anyhow::Error),
}

impl StoreError {
    /// Worth trying again later (the word every error type of the bridge uses).
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }

    /// Classifies a non-2xx answer.
    pub(crate) fn from_response(error: PostgrestError) -> Self {
        match error.status {
            409 => Self::Conflict(error),
            401 | 403 => Self::Unauthorized(error),
            500..=599 => Self::Unavailable(error.to_string()),
            _ => Self::Rejected(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_what_the_caller_should_do() {
        let body = br#"{"code":"23505","message":"duplicate key","details":null,"hint":null}"#;
        assert!(
            matches!(StoreError::from_response(PostgrestError::from_body(409, body)), StoreError::Conflict(e) if e.code == "23505")
        );
        let body = br#"{"code":"PGRST301","message":"JWT invalid","details":null,"hint":null}"#;
        assert!(matches!(
            StoreError::from_response(PostgrestError::from_body(401, body)),
            StoreError::Unauthorized(_)
        ));
        let body = br#"{"code":"42501","message":"permission denied","details":null,"hint":null}"#;
        assert!(matches!(
            StoreError::from_response(PostgrestError::from_body(403, body)),
            StoreError::Unauthorized(_)
        ));
        let body = br#"{"code":"23514","message":"check","details":null,"hint":null}"#;
        assert!(
            matches!(StoreError::from_response(PostgrestError::from_body(400, body)), StoreError::Rejected(e) if e.code == "23514")
        );
        let err =
            StoreError::from_response(PostgrestError::from_body(502, b"<html>Bad Gateway</html>"));
        assert!(err.is_transient());
        assert!(
            err.to_string().contains("HTTP 502: <html>Bad Gateway"),
            "{err}"
        );
    }
}
