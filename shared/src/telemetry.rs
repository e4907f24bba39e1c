//! Logging for the functions: JSON lines (CloudWatch's format with `LoggingConfig.LogFormat:
//! JSON`), level from `RUST_LOG` or `AWS_LAMBDA_LOG_LEVEL`, `info` by default. Set up once, first
//! thing in `main`.

pub fn init() {
    let filter = std::env::var("RUST_LOG")
        .or_else(|_| std::env::var("AWS_LAMBDA_LOG_LEVEL").map(|level| level.to_lowercase()))
        .unwrap_or_else(|_| "info".into());
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_target(false)
        .without_time() // CloudWatch stamps every line
        .with_current_span(true)
        .init();
}
