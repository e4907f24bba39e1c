//! The `X-Hub-Signature-256` check of Meta's POSTs.

use crate::signature::verify_hmac_sha256;

/// The header Meta signs each POST with: `sha256=<hex HMAC-SHA256(app secret, raw body)>`.
pub const SIGNATURE_HEADER: &str = "x-hub-signature-256";

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the X-Hub-Signature-256 header is missing")]
    Missing,
    #[error("the X-Hub-Signature-256 header is not `sha256=<64 hex digits>`: {0}")]
    Malformed(&'static str),
    #[error("the X-Hub-Signature-256 signature does not match the body")]
    Mismatch,
}

/// Checks `X-Hub-Signature-256` against the body exactly as received: re-serialised JSON
/// differs from Meta's bytes (escaped accents and emoji), so only the raw bytes verify.
/// The hex digest is accepted in either case; Meta sends lowercase.
pub fn verify_signature(
    app_secret: &[u8],
    raw_body: &[u8],
    header: Option<&str>,
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let hex_digest = header
        .trim()
        .strip_prefix("sha256=")
        .ok_or(SignatureError::Malformed("no `sha256=` prefix"))?;
    let digest = hex::decode(hex_digest)
        .map_err(|_| SignatureError::Malformed("the digest is not hexadecimal"))?;
    if digest.len() != 32 {
        return Err(SignatureError::Malformed(
            "the digest is not 32 bytes (64 hex digits)",
        ));
    }
    // Compared in constant time.
    if verify_hmac_sha256(app_secret, &[raw_body], &digest) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signature::hmac_sha256_hex;
    use serde_json::Value;

    const SECRET: &[u8] = b"app-secret";

    fn signature_header(secret: &[u8], body: &[u8]) -> String {
        format!("sha256={}", hmac_sha256_hex(secret, &[body]))
    }

    #[test]
    fn a_signature_over_the_body_verifies() {
        let body = br#"{"object":"whatsapp_business_account","entry":[]}"#;
        let header = signature_header(SECRET, body);
        assert_eq!(verify_signature(SECRET, body, Some(&header)), Ok(()));
        let uppercase = format!("sha256={}", header["sha256=".len()..].to_uppercase());
        assert_eq!(verify_signature(SECRET, body, Some(&uppercase)), Ok(()));
    }

    #[test]
    fn a_missing_signature_is_refused() {
        assert_eq!(
            verify_signature(SECRET, b"{}", None),
            Err(SignatureError::Missing)
        );
    }

    #[test]
    fn malformed_signatures_are_refused_saying_what_is_wrong() {
        let body = b"{}";
        let digest = signature_header(SECRET, body)["sha256=".len()..].to_owned();
        for (header, what) in [
            (digest.clone(), "prefix"),
            (format!("sha1={digest}"), "prefix"),
            (format!("sha256={}", "zz".repeat(32)), "hexadecimal"),
            (format!("sha256={}", &digest[..62]), "32 bytes"),
            (format!("sha256={digest}00"), "32 bytes"),
            ("sha256=".to_owned(), "32 bytes"),
        ] {
            let err = verify_signature(SECRET, body, Some(&header)).unwrap_err();
            assert!(matches!(err, SignatureError::Malformed(_)), "{header}");
            assert!(err.to_string().contains(what), "{header}: {err}");
        }
    }

    #[test]
    fn a_body_changed_by_one_byte_or_another_secret_does_not_verify() {
        let body = br#"{"entry":[{"id":"1"}]}"#.to_vec();
        let header = signature_header(SECRET, &body);
        let mut changed = body.clone();
        changed[12] ^= 1;
        assert_eq!(
            verify_signature(SECRET, &changed, Some(&header)),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_signature(b"another secret", &body, Some(&header)),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn accents_and_emoji_verify_over_the_raw_bytes_not_a_reserialisation() {
        let body = r#"{"text":{"body":"¿Dónde está? 😀"}}"#.as_bytes();
        let header = signature_header(SECRET, body);
        assert_eq!(verify_signature(SECRET, body, Some(&header)), Ok(()));
        // The same JSON with its characters escaped, as a re-serialiser may write it.
        let escaped = br#"{"text":{"body":"\u00bfD\u00f3nde est\u00e1? \ud83d\ude00"}}"#;
        assert_eq!(
            serde_json::from_slice::<Value>(escaped).unwrap(),
            serde_json::from_slice::<Value>(body).unwrap()
        );
        assert_eq!(
            verify_signature(SECRET, escaped, Some(&header)),
            Err(SignatureError::Mismatch)
        );
    }
}
