//! The functions' secrets, read once at INIT from one Secrets Manager secret.
//!
//! When `BRIDGE_SECRET_ID` names a secret (as the deployment does), one `GetSecretValue` reads
//! it: its `SecretString` is a JSON object whose keys are the variables' usual names
//! (`SUPABASE_SERVICE_ROLE_KEY`, `RETELL_API_KEY`, …), and each function takes only the keys it
//! lists, over the environment's. Read at every cold start, so a rotated secret takes effect at
//! the next one, without a redeploy. When `BRIDGE_SECRET_ID` is unset (`make dev` with `.env`,
//! the tests) every variable comes from the environment.
//!
//! The client is built as the SQS one is ([`crate::aws::http_client`]), without
//! `aws_config::load`: the credentials Lambda hands the role over in (`AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`), the region the secret's ARN names, else
//! `AWS_REGION`, and `SECRETS_MANAGER_ENDPOINT_URL` when set (a local stand-in). An error names
//! the secret and the key, never a value.

use std::time::Duration;

use aws_sdk_secretsmanager::config::retry::RetryConfig;
use aws_sdk_secretsmanager::config::timeout::TimeoutConfig;
use aws_sdk_secretsmanager::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_secretsmanager::error::DisplayErrorContext;

use crate::aws::{CONNECT_TIMEOUT, FALLBACK_REGION, http_client};
use crate::config::{ConfigError, Env};

/// The variable naming the secret (a name or an ARN).
pub const SECRET_ID_VARIABLE: &str = "BRIDGE_SECRET_ID";
/// A Secrets Manager-compatible endpoint for local runs and the benchmarks.
pub const ENDPOINT_VARIABLE: &str = "SECRETS_MANAGER_ENDPOINT_URL";
/// Every variable the secret holds; each function reads some of them.
pub const SECRET_VARIABLES: [&str; 11] = [
    "SUPABASE_SERVICE_ROLE_KEY",
    "RETELL_API_KEY",
    "WHATSAPP_ACCESS_TOKEN",
    "WHATSAPP_APP_SECRET",
    "WHATSAPP_VERIFY_TOKEN",
    "FORM_SHARED_SECRET",
    "FORM_TURNSTILE_SECRET",
    "STAFF_WEBHOOK_SECRET",
    "RETELL_WEBHOOK_API_KEY",
    "OUTCOME_WEBHOOK_SECRET",
    "TRANSCRIBE_API_KEY",
];
/// Keys a secret may lack: the hosted form's Turnstile secret is needed only with its site key
/// (`FORM_TURNSTILE_SITE_KEY`), and the configuration says so when it is missing then; Retell's
/// webhook key is needed only when it is not `RETELL_API_KEY`, and the outcome hook's secret
/// only with `OUTCOME_WEBHOOK_URL`; the transcription key only with `TRANSCRIBE_URL`, and not
/// even then for a self-hosted server without one.
pub const OPTIONAL_SECRET_VARIABLES: [&str; 4] = [
    "FORM_TURNSTILE_SECRET",
    "RETELL_WEBHOOK_API_KEY",
    "OUTCOME_WEBHOOK_SECRET",
    "TRANSCRIBE_API_KEY",
];
/// The whole read, retries included: INIT has 10 s.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(6);

/// Why INIT stops. Its `Debug` is its message, which is what a `main` returning it prints.
#[derive(thiserror::Error)]
pub enum SecretError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("the secret {secret_id} could not be read: {reason}")]
    Unreadable { secret_id: String, reason: String },
    #[error("the secret {secret_id} has no key {key}")]
    MissingKey {
        secret_id: String,
        key: &'static str,
    },
    #[error("the secret {secret_id} is malformed: {reason}")]
    Malformed { secret_id: String, reason: String },
}

impl std::fmt::Debug for SecretError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

/// `env` with the secret's `keys` set when it names a secret (`BRIDGE_SECRET_ID`); `env` as it
/// is otherwise. Every key listed must be in the secret, a string, but those of
/// [`OPTIONAL_SECRET_VARIABLES`], which may be absent.
pub async fn read_into(env: Env, keys: &[&'static str]) -> Result<Env, SecretError> {
    let Some(secret_id) = env.optional(SECRET_ID_VARIABLE).map(str::to_owned) else {
        return Ok(env);
    };
    let secret_string = get_secret_string(&env, &secret_id).await?;
    let values = pick(&secret_id, &secret_string, keys)?;
    Ok(env.with_values(values))
}

/// The secret's keys `keys`, from its `SecretString`.
fn pick(
    secret_id: &str,
    secret_string: &str,
    keys: &[&'static str],
) -> Result<Vec<(String, String)>, SecretError> {
    let malformed = |reason: String| SecretError::Malformed {
        secret_id: secret_id.to_owned(),
        reason,
    };
    // serde_json's error names a line and column, never the text.
    let object: serde_json::Map<String, serde_json::Value> = serde_json::from_str(secret_string)
        .map_err(|e| malformed(format!("its SecretString is not a JSON object ({e})")))?;
    keys.iter()
        .filter(|&&key| object.contains_key(key) || !OPTIONAL_SECRET_VARIABLES.contains(&key))
        .map(|&key| match object.get(key) {
            None => Err(SecretError::MissingKey {
                secret_id: secret_id.to_owned(),
                key,
            }),
            Some(serde_json::Value::String(value)) => Ok((key.to_owned(), value.clone())),
            Some(_) => Err(malformed(format!("{key} is not a string"))),
        })
        .collect()
}

async fn get_secret_string(env: &Env, secret_id: &str) -> Result<String, SecretError> {
    let unreadable = |reason: String| SecretError::Unreadable {
        secret_id: secret_id.to_owned(),
        reason,
    };
    let credentials = Credentials::new(
        env.required("AWS_ACCESS_KEY_ID")?,
        env.required("AWS_SECRET_ACCESS_KEY")?,
        env.optional("AWS_SESSION_TOKEN").map(str::to_owned),
        None,
        "environment",
    );
    let region = region_of_arn(secret_id)
        .or_else(|| env.optional("AWS_REGION").map(str::to_owned))
        .unwrap_or_else(|| FALLBACK_REGION.to_owned());
    let mut config = aws_sdk_secretsmanager::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region))
        .credentials_provider(credentials)
        .retry_config(RetryConfig::standard())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .operation_timeout(OPERATION_TIMEOUT)
                .build(),
        )
        .http_client(http_client());
    if let Some(endpoint) = env.url(ENDPOINT_VARIABLE)? {
        config = config.endpoint_url(endpoint.as_str().trim_end_matches('/'));
    }
    let client = aws_sdk_secretsmanager::Client::from_conf(config.build());
    let output = client
        .get_secret_value()
        .secret_id(secret_id)
        .send()
        .await
        .map_err(|e| unreadable(DisplayErrorContext(&e).to_string()))?;
    output
        .secret_string
        .ok_or_else(|| unreadable("it has no SecretString (a binary secret?)".to_owned()))
}

/// `eu-west-1` in `arn:aws:secretsmanager:eu-west-1:123456789012:secret:name-AbCdEf`.
fn region_of_arn(secret_id: &str) -> Option<String> {
    let mut parts = secret_id.strip_prefix("arn:")?.split(':');
    let (_partition, service, region) = (parts.next()?, parts.next()?, parts.next()?);
    (service == "secretsmanager" && !region.is_empty()).then(|| region.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_keys_listed_are_taken() {
        let secret = r#"{"RETELL_API_KEY": "key_x", "FORM_SHARED_SECRET": "f", "OTHER": 1}"#;
        let values = pick("bridge", secret, &["RETELL_API_KEY"]).unwrap();
        assert_eq!(values, [("RETELL_API_KEY".to_owned(), "key_x".to_owned())]);
    }

    #[test]
    fn a_missing_or_malformed_key_is_named_and_no_value_shown() {
        let secret = r#"{"RETELL_API_KEY": 42, "FORM_SHARED_SECRET": "hunter2"}"#;
        let err = pick("bridge", secret, &["WHATSAPP_APP_SECRET"]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the secret bridge has no key WHATSAPP_APP_SECRET"
        );
        let err = pick("bridge", secret, &["RETELL_API_KEY"]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the secret bridge is malformed: RETELL_API_KEY is not a string"
        );
        let err = pick("bridge", "hunter2", &["RETELL_API_KEY"]).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("the secret bridge is malformed")
        );
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    #[test]
    fn the_turnstile_secret_may_be_absent_and_is_taken_when_present() {
        let keys = ["FORM_SHARED_SECRET", "FORM_TURNSTILE_SECRET"];
        let without = r#"{"FORM_SHARED_SECRET": "s"}"#;
        assert_eq!(
            pick("bridge", without, &keys).unwrap(),
            [("FORM_SHARED_SECRET".to_owned(), "s".to_owned())]
        );
        let with = r#"{"FORM_SHARED_SECRET": "s", "FORM_TURNSTILE_SECRET": "t"}"#;
        assert_eq!(pick("bridge", with, &keys).unwrap().len(), 2);
    }

    #[test]
    fn the_region_comes_from_an_arn() {
        assert_eq!(
            region_of_arn("arn:aws:secretsmanager:eu-west-1:123456789012:secret:bridge-AbCdEf")
                .as_deref(),
            Some("eu-west-1")
        );
        assert_eq!(region_of_arn("whatsapp-retell-bridge"), None);
    }

    #[tokio::test]
    async fn without_a_secret_id_the_environment_is_kept() {
        let env = Env::from_pairs([("RETELL_API_KEY", "key_env")]);
        let env = read_into(env, &["RETELL_API_KEY"]).await.unwrap();
        assert_eq!(env.optional("RETELL_API_KEY"), Some("key_env"));
    }
}
