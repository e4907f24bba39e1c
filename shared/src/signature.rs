//! HMAC-SHA256 and constant-time comparison, the one implementation every door uses to check
//! who is calling: Meta's `X-Hub-Signature-256`, Retell's `x-retell-signature`, the form's
//! `X-Form-Signature` and bearer token, and Meta's verify token. Each door parses its own header
//! format; the cryptography and the comparisons live here.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The length of an HMAC-SHA256 digest, in bytes.
pub const DIGEST_BYTES: usize = 32;

/// HMAC-SHA256 of the concatenation of `parts` under `key` (any length).
pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; DIGEST_BYTES] {
    mac_of(key, parts).finalize().into_bytes().into()
}

/// HMAC-SHA256 of `parts` under `key`, as lowercase hex: what the signature headers carry.
pub fn hmac_sha256_hex(key: &[u8], parts: &[&[u8]]) -> String {
    hex::encode(hmac_sha256(key, parts))
}

/// Whether `digest` is the HMAC-SHA256 of `parts` under `key`, compared in constant time.
pub fn verify_hmac_sha256(key: &[u8], parts: &[&[u8]], digest: &[u8]) -> bool {
    mac_of(key, parts).verify_slice(digest).is_ok()
}

/// Whether two secrets (tokens, passwords) are equal, in time that does not depend on where they
/// differ or on the given one's length: both are MACed under the expected one and the
/// fixed-length tags compared in constant time.
pub fn secrets_match(given: &[u8], expected: &[u8]) -> bool {
    let expected_tag = hmac_sha256(expected, &[expected]);
    verify_hmac_sha256(expected, &[given], &expected_tag)
}

fn mac_of(key: &[u8], parts: &[&[u8]]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes a key of any length");
    for part in parts {
        mac.update(part);
    }
    mac
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_is_rfc_4231_test_case_2() {
        // RFC 4231, test case 2: key "Jefe", data "what do ya want for nothing?".
        assert_eq!(
            hmac_sha256_hex(b"Jefe", &[b"what do ya want ", b"for nothing?"]),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn a_digest_verifies_only_for_its_key_and_message() {
        let digest = hmac_sha256(b"key", &[b"body", b"1700000000000"]);
        assert!(verify_hmac_sha256(b"key", &[b"body1700000000000"], &digest));
        assert!(!verify_hmac_sha256(
            b"key",
            &[b"body1700000000001"],
            &digest
        ));
        assert!(!verify_hmac_sha256(
            b"other",
            &[b"body1700000000000"],
            &digest
        ));
        assert!(!verify_hmac_sha256(
            b"key",
            &[b"body1700000000000"],
            &digest[..31]
        ));
    }

    #[test]
    fn secrets_match_only_when_equal() {
        assert!(secrets_match(b"s3cret-token", b"s3cret-token"));
        assert!(!secrets_match(b"s3cret-toke", b"s3cret-token"));
        assert!(!secrets_match(b"s3cret-tokenn", b"s3cret-token"));
        assert!(!secrets_match(b"", b"s3cret-token"));
    }
}
