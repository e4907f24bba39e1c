//! Who may post the form: whoever holds `FORM_SHARED_SECRET`, shown as a bearer token
//! (`Authorization: Bearer <secret>`) or as a signature of the raw body
//! (`X-Form-Signature: sha256=<hex HMAC-SHA256 of the body>`). Either is enough; both are
//! compared in constant time by [`crate::signature`].

use http::HeaderName;
use http::header::{AUTHORIZATION, HeaderMap};
use secrecy::{ExposeSecret, SecretString};

use crate::ingress::header_text;
use crate::signature::{secrets_match, verify_hmac_sha256};

/// The header that carries the body's signature.
pub const SIGNATURE_HEADER: HeaderName = HeaderName::from_static("x-form-signature");

/// Why a request is not the form's owner's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error(
        "send Authorization: Bearer <shared secret> or X-Form-Signature: sha256=<hex HMAC-SHA256 of the body>"
    )]
    Missing,
    #[error("the credentials are not valid")]
    Invalid,
}

/// A bearer token equal to the secret, or a valid signature of `body` with it.
pub(super) fn authenticate(
    secret: &SecretString,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), AuthError> {
    let secret = secret.expose_secret().as_bytes();
    let bearer = header_text(headers, &AUTHORIZATION).and_then(bearer_token);
    if bearer.is_some_and(|token| secrets_match(token.as_bytes(), secret)) {
        return Ok(());
    }
    let digest = header_text(headers, &SIGNATURE_HEADER).and_then(signature_digest);
    if digest.is_some_and(|digest| verify_hmac_sha256(secret, &[body], &digest)) {
        return Ok(());
    }
    if headers.contains_key(AUTHORIZATION) || headers.contains_key(SIGNATURE_HEADER) {
        Err(AuthError::Invalid)
    } else {
        Err(AuthError::Missing)
    }
}

/// `Bearer <token>` (the scheme in any case) → the token.
fn bearer_token(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// `sha256=<hex>` (the hex in any case) → the digest.
fn signature_digest(signature: &str) -> Option<Vec<u8>> {
    hex::decode(signature.trim().strip_prefix("sha256=")?).ok()
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;
    use crate::signature::hmac_sha256_hex;

    const SECRET: &str = "form-secret-3f9a";
    const BODY: &[u8] = br#"{"name":"Ana","phone":"5512345678","consent":true}"#;

    fn headers<const N: usize>(pairs: [(HeaderName, &str); N]) -> HeaderMap {
        pairs
            .into_iter()
            .map(|(name, value)| (name, HeaderValue::from_str(value).unwrap()))
            .collect()
    }

    fn check(headers: &HeaderMap) -> Result<(), AuthError> {
        authenticate(&SecretString::from(SECRET), headers, BODY)
    }

    fn sign(key: &str, body: &[u8]) -> String {
        format!("sha256={}", hmac_sha256_hex(key.as_bytes(), &[body]))
    }

    #[test]
    fn the_bearer_token_or_the_signature_is_enough() {
        let lower_scheme = format!("bearer  {SECRET} ");
        for given in [
            headers([(AUTHORIZATION, &format!("Bearer {SECRET}"))]),
            headers([(AUTHORIZATION, &lower_scheme)]),
            headers([(SIGNATURE_HEADER, &sign(SECRET, BODY))]),
        ] {
            assert_eq!(check(&given), Ok(()), "{given:?}");
        }
    }

    #[test]
    fn missing_or_wrong_credentials_get_401() {
        assert_eq!(check(&HeaderMap::new()), Err(AuthError::Missing));
        let bare_hex = sign(SECRET, BODY).replace("sha256=", "");
        for value in [
            format!("Bearer {SECRET}x"),
            format!("Bearer {}", &SECRET[..5]),
            "Bearer".to_owned(),
            format!("Basic {SECRET}"),
            SECRET.to_owned(),
        ] {
            let given = headers([(AUTHORIZATION, &value)]);
            assert_eq!(check(&given), Err(AuthError::Invalid), "{value}");
        }
        for value in [
            sign("another-secret", BODY),
            sign(SECRET, br#"{"name":"someone else"}"#),
            bare_hex,
            "sha256=not-hex".to_owned(),
        ] {
            let given = headers([(SIGNATURE_HEADER, &value)]);
            assert_eq!(check(&given), Err(AuthError::Invalid), "{value}");
        }
        // A value that is not visible ASCII is no credential, but was sent.
        let mut given = HeaderMap::new();
        given.insert(
            AUTHORIZATION,
            HeaderValue::from_bytes(b"Bearer \xff").unwrap(),
        );
        assert_eq!(check(&given), Err(AuthError::Invalid));
        assert!(!AuthError::Invalid.to_string().contains(SECRET));
    }

    #[test]
    fn a_valid_signature_is_enough_even_beside_a_wrong_bearer() {
        let signature = sign(SECRET, BODY)
            .to_uppercase()
            .replace("SHA256=", "sha256=");
        let given = headers([
            (AUTHORIZATION, "Bearer nope"),
            (SIGNATURE_HEADER, &signature),
        ]);
        assert_eq!(check(&given), Ok(()));
    }
}
