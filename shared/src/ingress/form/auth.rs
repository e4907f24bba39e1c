//! Who posts the form: servers holding `FORM_SHARED_SECRET` (a website's backend, Zapier, Make,
//! n8n, a form builder's webhook), or browsers, which hold no secret but a bot-check token in
//! the body's `cf-turnstile-response` field (checked later, once the form's fields are: see
//! `super::FormIntake`). Credentials decide first: a request with an `Authorization` or
//! `X-Form-Signature` header is a server's, right or wrong. Servers show the secret as a bearer token
//! (`Authorization: Bearer <secret>`) or sign each request, as Stripe signs its webhooks:
//! `X-Form-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">`, accepted
//! within [`SIGNATURE_TOLERANCE`] of our clock either way. Either is enough; both are compared
//! in constant time by [`crate::signature`].
//!
//! A signed request replayed within the tolerance is answered as the first and recorded once:
//! its body is the same, so its derived idempotency key is too (see [`super::submit`]).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::HeaderName;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap};
use secrecy::{ExposeSecret, SecretString};

use crate::ingress::header_text;
use crate::signature::{DIGEST_BYTES, secrets_match, verify_hmac_sha256};

/// The header that carries the request's signature.
pub const SIGNATURE_HEADER: HeaderName = HeaderName::from_static("x-form-signature");

/// How far a signature's time may be from ours, either way.
pub const SIGNATURE_TOLERANCE: Duration = Duration::from_secs(5 * 60);

/// Why a request is not the form's owner's. Each is a 401.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error(
        "send Authorization: Bearer <shared secret> or X-Form-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of \"<t>.<body>\">"
    )]
    Missing,
    #[error("the credentials are not valid")]
    Invalid,
    #[error(
        "X-Form-Signature must be t=<unix seconds>,v1=<hex HMAC-SHA256 of \"<t>.<body>\"> (a signature without its time, sha256=<hex>, is not accepted)"
    )]
    MalformedSignature,
    /// Signed more than [`SIGNATURE_TOLERANCE`] ago: sent late, or replayed.
    #[error(
        "the signature is stale: signed {seconds} s ago, at most {} s are accepted; sign each request as it is sent",
        SIGNATURE_TOLERANCE.as_secs()
    )]
    Stale { seconds: u64 },
    /// Signed more than [`SIGNATURE_TOLERANCE`] ahead of our clock.
    #[error(
        "the signature is from the future: its time is {seconds} s ahead of ours, at most {} s are accepted; check the sender's clock",
        SIGNATURE_TOLERANCE.as_secs()
    )]
    FromTheFuture { seconds: u64 },
}

/// Who passed the credentials check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Caller {
    /// A server holding the secret as a bearer token.
    Bearer,
    /// A server that signed the body at `at` (the signature's `t`): a replay carries the same
    /// time, so it falls in the same deduplication period as the original.
    Signed { at: SystemTime },
    /// A browser: no credentials, and this bot-check token (perhaps empty) in the body, not
    /// verified yet.
    Browser { token: String },
}

/// A bearer token equal to the secret, or a signature of `body` with it, made within
/// [`SIGNATURE_TOLERANCE`] of `now`; without either header, a browser if the body (JSON or
/// urlencoded, as its `Content-Type` says) has a [`super::parse::BOT_CHECK_FIELD`].
pub(super) fn authenticate(
    secret: &SecretString,
    headers: &HeaderMap,
    body: &[u8],
    now: SystemTime,
) -> Result<Caller, AuthError> {
    let secret = secret.expose_secret().as_bytes();
    let bearer = header_text(headers, &AUTHORIZATION).and_then(bearer_token);
    if bearer.is_some_and(|token| secrets_match(token.as_bytes(), secret)) {
        return Ok(Caller::Bearer);
    }
    if headers.contains_key(SIGNATURE_HEADER) {
        let signature = header_text(headers, &SIGNATURE_HEADER)
            .and_then(Signature::parse)
            .ok_or(AuthError::MalformedSignature)?;
        signature.verify(secret, body, now)?;
        return Ok(Caller::Signed {
            at: UNIX_EPOCH + Duration::from_secs(signature.seconds),
        });
    }
    if headers.contains_key(AUTHORIZATION) {
        return Err(AuthError::Invalid);
    }
    let content_type = header_text(headers, &CONTENT_TYPE);
    match super::parse::bot_check_token(content_type, body) {
        Some(token) => Ok(Caller::Browser { token }),
        None => Err(AuthError::Missing),
    }
}

/// `Bearer <token>` (the scheme in any case) → the token.
fn bearer_token(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// `X-Form-Signature` as sent: its time, as written (it is what was signed), and its digests.
#[derive(Debug)]
struct Signature<'a> {
    timestamp: &'a str,
    seconds: u64,
    /// One or more `v1`: a sender changing its secret may sign with both.
    digests: Vec<[u8; DIGEST_BYTES]>,
}

impl<'a> Signature<'a> {
    /// `t=<digits>,v1=<64 hex digits>[,v1=…]`, in any order, with spaces around the parts;
    /// other schemes (`v0=`) are ignored. `None` unless there is one `t` and a `v1`.
    fn parse(header: &'a str) -> Option<Signature<'a>> {
        let mut timestamp = None;
        let mut digests = Vec::new();
        for part in header.split(',') {
            let (key, value) = part.trim().split_once('=')?;
            match key.trim() {
                "t" if timestamp.is_none() => timestamp = Some(value.trim()),
                "t" => return None,
                "v1" => {
                    let mut digest = [0; DIGEST_BYTES];
                    hex::decode_to_slice(value.trim(), &mut digest).ok()?;
                    digests.push(digest);
                }
                _ => {}
            }
        }
        let timestamp = timestamp.filter(|t| !t.is_empty() && t.len() <= 20)?;
        if !timestamp.bytes().all(|b| b.is_ascii_digit()) || digests.is_empty() {
            return None;
        }
        Some(Signature {
            timestamp,
            seconds: timestamp.parse().ok()?,
            digests,
        })
    }

    /// One digest is the HMAC of `<t>.<body>`, and `t` is within the tolerance of `now`. The
    /// time is judged only once the signature holds: only the secret's holder learns it.
    fn verify(&self, secret: &[u8], body: &[u8], now: SystemTime) -> Result<(), AuthError> {
        let signed = [self.timestamp.as_bytes(), b".", body];
        if !self
            .digests
            .iter()
            .any(|digest| verify_hmac_sha256(secret, &signed, digest))
        {
            return Err(AuthError::Invalid);
        }
        let now = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let tolerance = SIGNATURE_TOLERANCE.as_secs();
        if now.saturating_sub(self.seconds) > tolerance {
            Err(AuthError::Stale {
                seconds: now - self.seconds,
            })
        } else if self.seconds.saturating_sub(now) > tolerance {
            Err(AuthError::FromTheFuture {
                seconds: self.seconds - now,
            })
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::super::testing::{SECRET, noon, sign_at, unix};
    use super::*;

    const BODY: &[u8] = br#"{"name":"Ana","phone":"5512345678","consent":true}"#;

    fn headers<const N: usize>(pairs: [(HeaderName, &str); N]) -> HeaderMap {
        pairs
            .into_iter()
            .map(|(name, value)| (name, HeaderValue::from_str(value).unwrap()))
            .collect()
    }

    fn check(headers: &HeaderMap) -> Result<(), AuthError> {
        authenticate(&SecretString::from(SECRET), headers, BODY, noon()).map(drop)
    }

    #[test]
    fn a_signed_caller_is_known_by_the_time_it_signed_and_a_bearer_by_nothing() {
        let secret = SecretString::from(SECRET);
        let t = unix(noon()) - 120;
        let given = headers([(SIGNATURE_HEADER, &sign_at(SECRET, t, BODY))]);
        assert_eq!(
            authenticate(&secret, &given, BODY, noon()),
            Ok(Caller::Signed {
                at: UNIX_EPOCH + Duration::from_secs(t)
            })
        );
        let given = headers([(AUTHORIZATION, &format!("Bearer {SECRET}"))]);
        assert_eq!(
            authenticate(&secret, &given, BODY, noon()),
            Ok(Caller::Bearer)
        );
    }

    fn signed(signature: &str) -> Result<(), AuthError> {
        check(&headers([(SIGNATURE_HEADER, signature)]))
    }

    /// Signed `offset` seconds from now (negative: in the past).
    fn signed_at(offset: i64) -> String {
        let t = unix(noon()).checked_add_signed(offset).unwrap();
        sign_at(SECRET, t, BODY)
    }

    #[test]
    fn the_bearer_token_or_a_fresh_signature_is_enough() {
        let lower_scheme = format!("bearer  {SECRET} ");
        for given in [
            headers([(AUTHORIZATION, &format!("Bearer {SECRET}"))]),
            headers([(AUTHORIZATION, &lower_scheme)]),
            headers([(SIGNATURE_HEADER, &signed_at(0))]),
        ] {
            assert_eq!(check(&given), Ok(()), "{given:?}");
        }
        // The signature is over "<t>.<body>" exactly.
        let t = unix(noon());
        let digest = crate::signature::hmac_sha256_hex(
            SECRET.as_bytes(),
            &[format!("{t}.").as_bytes(), BODY],
        );
        assert_eq!(signed(&format!("t={t},v1={digest}")), Ok(()));
    }

    #[test]
    fn a_signature_is_accepted_within_five_minutes_either_way() {
        for offset in [-300, -299, -1, 1, 299, 300] {
            assert_eq!(signed(&signed_at(offset)), Ok(()), "{offset} s");
        }
    }

    #[test]
    fn a_stale_signature_is_refused_saying_so() {
        for (offset, seconds) in [(-301, 301), (-3600, 3600)] {
            let error = signed(&signed_at(offset)).unwrap_err();
            assert_eq!(error, AuthError::Stale { seconds }, "{offset} s");
            let message = error.to_string();
            assert!(message.contains("stale"), "{message}");
            assert!(message.contains(&format!("{seconds} s ago")), "{message}");
        }
        let ancient = sign_at(SECRET, 0, BODY);
        assert!(matches!(signed(&ancient), Err(AuthError::Stale { .. })));
    }

    #[test]
    fn a_signature_from_the_future_is_refused_saying_so() {
        for (offset, seconds) in [(301, 301), (86_400, 86_400)] {
            let error = signed(&signed_at(offset)).unwrap_err();
            assert_eq!(error, AuthError::FromTheFuture { seconds }, "{offset} s");
            assert!(error.to_string().contains("from the future"), "{error}");
        }
        let far = sign_at(SECRET, u64::MAX, BODY);
        assert!(matches!(signed(&far), Err(AuthError::FromTheFuture { .. })));
    }

    #[test]
    fn a_tampered_signature_is_invalid_whatever_its_time() {
        let t = unix(noon());
        let fresh = signed_at(0);
        let digest = fresh.split_once(",v1=").unwrap().1.to_owned();
        let mut flipped = digest.clone().into_bytes();
        flipped[0] = if flipped[0] == b'0' { b'1' } else { b'0' };
        let flipped = String::from_utf8(flipped).unwrap();
        for signature in [
            // Another body, another secret, another time than the one signed.
            sign_at(
                SECRET,
                t,
                br#"{"name":"Mallory","phone":"5512345678","consent":true}"#,
            ),
            sign_at("another-secret-of-at-least-32-chars", t, BODY),
            format!("t={},v1={digest}", t - 1),
            format!("t={},v1={digest}", t - 3600),
            format!("t={t},v1={flipped}"),
            format!("t={t},v1={}", "0".repeat(64)),
        ] {
            assert_eq!(signed(&signature), Err(AuthError::Invalid), "{signature}");
        }
        assert!(!AuthError::Invalid.to_string().contains(SECRET));
    }

    #[test]
    fn the_signature_header_is_read_like_stripes() {
        let t = unix(noon());
        let fresh = signed_at(0);
        let digest = fresh.split_once(",v1=").unwrap().1;
        let old = "a".repeat(64);
        for signature in [
            format!(" v1={digest} , t={t} "),
            format!("t={t},v1={old},v1={digest}"),
            format!("t={t},v0=whatever,v1={}", digest.to_uppercase()),
        ] {
            assert_eq!(signed(&signature), Ok(()), "{signature}");
        }
    }

    #[test]
    fn a_signature_without_its_time_or_malformed_is_refused_naming_the_scheme() {
        let t = unix(noon());
        let digest = signed_at(0).split_once(",v1=").unwrap().1.to_owned();
        let body_only = crate::signature::hmac_sha256_hex(SECRET.as_bytes(), &[BODY]);
        for signature in [
            // The old scheme: no time, so it could be replayed forever.
            format!("sha256={body_only}"),
            body_only.clone(),
            format!("v1={digest}"),
            format!("t={t}"),
            format!("t=,v1={digest}"),
            format!("t=-5,v1={digest}"),
            format!("t=1e9,v1={digest}"),
            format!("t={t},t={t},v1={digest}"),
            format!("t={t},v1={}", &digest[..62]),
            format!("t={t},v1=not-hex"),
            format!("t={t};v1={digest}"),
            String::new(),
        ] {
            assert_eq!(
                signed(&signature),
                Err(AuthError::MalformedSignature),
                "{signature:?}"
            );
        }
        let message = AuthError::MalformedSignature.to_string();
        assert!(message.contains("t=<unix seconds>,v1="), "{message}");
    }

    #[test]
    fn missing_or_wrong_bearer_tokens_get_401() {
        assert_eq!(check(&HeaderMap::new()), Err(AuthError::Missing));
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
        // A value that is not visible ASCII is no credential, but was sent.
        let mut given = HeaderMap::new();
        given.insert(
            AUTHORIZATION,
            HeaderValue::from_bytes(b"Bearer \xff").unwrap(),
        );
        assert_eq!(check(&given), Err(AuthError::Invalid));
        let mut given = HeaderMap::new();
        given.insert(
            SIGNATURE_HEADER,
            HeaderValue::from_bytes(b"t=1,v1=\xff").unwrap(),
        );
        assert_eq!(check(&given), Err(AuthError::MalformedSignature));
    }

    #[test]
    fn a_valid_bearer_is_enough_beside_a_bad_signature_and_a_valid_signature_beside_a_bad_bearer() {
        let given = headers([
            (AUTHORIZATION, &format!("Bearer {SECRET}")),
            (SIGNATURE_HEADER, "sha256=00"),
        ]);
        assert_eq!(check(&given), Ok(()));
        let given = headers([
            (AUTHORIZATION, "Bearer nope"),
            (SIGNATURE_HEADER, &signed_at(-10)),
        ]);
        assert_eq!(check(&given), Ok(()));
        let given = headers([
            (AUTHORIZATION, "Bearer nope"),
            (SIGNATURE_HEADER, &signed_at(-400)),
        ]);
        assert_eq!(check(&given), Err(AuthError::Stale { seconds: 400 }));
    }
}
