//! What the AWS SDK clients (SQS, SNS, Secrets Manager) share: one HTTP client construction,
//! and the configuration, built by hand instead of by `aws_config::load`, for a fast INIT.

use std::sync::OnceLock;
use std::time::Duration;

use aws_config::environment::{
    EnvironmentVariableCredentialsProvider, EnvironmentVariableRegionProvider,
};
use aws_config::meta::region::RegionProviderChain;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_sqs::config::{SharedCredentialsProvider, SharedHttpClient};

/// Where nothing names a region (a local endpoint) and the environment names none either.
pub(crate) const FALLBACK_REGION: &str = "us-east-1";
/// The connect timeout `aws_config` gives every SDK client (a client built without it has none).
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_millis(3100);

/// What a client of the role's resources is built from: the credentials Lambda hands the
/// function's role over in (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`),
/// the region the resource names (a queue URL's, a topic ARN's), else `AWS_REGION`, else
/// `us-east-1`, and `endpoint` (a local stand-in) when given; what `aws_config` would set besides
/// is set as it would be: standard retries, a 3.1 s connect timeout. No network, no file read:
/// not the default region chain, which asks the instance metadata service when the environment
/// names no region, nor the default credential chain (profile files, web identity, ECS, IMDS),
/// which finds the environment's in Lambda anyway. The HTTP client is added by each client when it
/// is first used ([`http_client`]).
pub(crate) async fn role_config(region: Option<String>, endpoint: Option<&str>) -> SdkConfig {
    let region = RegionProviderChain::first_try(region.map(Region::new))
        .or_else(EnvironmentVariableRegionProvider::new())
        .or_else(Region::from_static(FALLBACK_REGION));
    let mut config = SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(region.region().await)
        .credentials_provider(SharedCredentialsProvider::new(
            EnvironmentVariableCredentialsProvider::new(),
        ))
        .retry_config(RetryConfig::standard())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .build(),
        );
    if let Some(endpoint) = endpoint {
        config = config.endpoint_url(endpoint.trim_end_matches('/'));
    }
    config.build()
}

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
