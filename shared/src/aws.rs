//! What the AWS SDK clients (SQS, Secrets Manager) share: one HTTP client construction, built
//! by hand instead of by `aws_config::load`, for a fast INIT.

use std::sync::OnceLock;
use std::time::Duration;

use aws_sdk_sqs::config::SharedHttpClient;

/// Where nothing names a region (a local endpoint) and the environment names none either.
pub(crate) const FALLBACK_REGION: &str = "us-east-1";
/// The connect timeout `aws_config` gives every SDK client (a client built without it has none).
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_millis(3100);

/// The SDK's own HTTP client (hyper 0.14, rustls 0.21 with ring, HTTP/1.1 and 2, the same cipher
/// suites) trusting the Mozilla roots compiled into `webpki-roots`, as reqwest does for our other
/// services. The SDK's default trusts the system's roots, which it reads and parses from the
/// certificate bundle (200 kB of PEM) when the client is built: most of a millisecond.
///
/// Built once per process and shared: the secret read at INIT and the queue's first job use the
/// same client (and its connection pool) instead of building the TLS configuration twice.
pub(crate) fn http_client() -> SharedHttpClient {
    static CLIENT: OnceLock<SharedHttpClient> = OnceLock::new();
    CLIENT.get_or_init(build_http_client).clone()
}

fn build_http_client() -> SharedHttpClient {
    use rustls::cipher_suite::*;
    let mut roots = rustls::RootCertStore::empty();
    roots.add_trust_anchors(webpki_roots::TLS_SERVER_ROOTS.iter().map(|anchor| {
        rustls::OwnedTrustAnchor::from_subject_spki_name_constraints(
            anchor.subject,
            anchor.spki,
            anchor.name_constraints,
        )
    }));
    let tls = rustls::ClientConfig::builder()
        .with_cipher_suites(&[
            TLS13_AES_256_GCM_SHA384,
            TLS13_AES_128_GCM_SHA256,
            TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
            TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
            TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        ])
        .with_safe_default_kx_groups()
        .with_safe_default_protocol_versions()
        .expect("rustls takes its own safe defaults")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .build();
    // The hyper 0.14 client is the one the SDK's `rustls` feature builds too.
    #[allow(deprecated)]
    aws_smithy_http_client::hyper_014::HyperClientBuilder::new().build(connector)
}
