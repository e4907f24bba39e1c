//! The functions' secrets read at INIT from Secrets Manager (`shared::secrets`), against moto's
//! server: each function's configuration is built from the secret with only the keys it lists, a
//! key the secret lacks is named, an unreadable secret stops INIT naming it (never a value), and
//! a changed secret is what the next read (the next cold start) gets.

use std::sync::atomic::{AtomicUsize, Ordering};

use aws_sdk_secretsmanager::config::{BehaviorVersion, Credentials, Region};
use sandbox::moto::{MotoServer, REGION};
use secrecy::ExposeSecret;
use shared::config::Env;
use shared::secrets::{
    ENDPOINT_VARIABLE, SECRET_ID_VARIABLE, SECRET_VARIABLES, SecretError, read_into,
};

/// Each key's value in the secret: its name, lowercased, and long enough for the form's.
fn value_of(key: &str) -> String {
    format!("{}-from-the-secret-0123456789", key.to_ascii_lowercase())
}

/// What the environment gives besides the secret, as the template does.
const NOT_SECRET: &[(&str, &str)] = &[
    ("SUPABASE_URL", "https://abcdefgh.supabase.co"),
    (
        "TURN_QUEUE_URL",
        "https://sqs.us-east-1.amazonaws.com/123456789012/turns.fifo",
    ),
    ("WHATSAPP_PHONE_NUMBER_ID", "106540352242922"),
    ("FORM_DEFAULT_COUNTRY", "MX"),
    ("RETELL_AGENT_ID", "agent_sample"),
    ("WHATSAPP_TEMPLATE_NAME", "primer_contacto"),
    ("WHATSAPP_TEMPLATE_LANGUAGE", "es_MX"),
    (
        "OUTCOME_WEBHOOK_URL",
        "https://crm.example.com/hooks/outcomes",
    ),
];

async fn client(moto: &MotoServer) -> aws_sdk_secretsmanager::Client {
    let config = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::from_static(REGION))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "moto"))
        .endpoint_url(moto.endpoint_url())
        .load()
        .await;
    aws_sdk_secretsmanager::Client::new(&config)
}

/// A secret of this test's own holding `keys`, and its name.
async fn create_secret(keys: &[&str]) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let name = format!(
        "bridge-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    let object: serde_json::Map<String, serde_json::Value> = keys
        .iter()
        .map(|k| ((*k).to_owned(), value_of(k).into()))
        .collect();
    client(MotoServer::shared())
        .await
        .create_secret()
        .name(&name)
        .secret_string(serde_json::Value::Object(object).to_string())
        .send()
        .await
        .expect("moto creates the secret");
    name
}

/// A function's environment at INIT in AWS: the variables that are not secret, the secret's
/// name, the credentials of its role, and a stale value of every secret variable, which the
/// secret's keys replace.
fn lambda_env(secret_id: &str) -> Env {
    let moto = MotoServer::shared().endpoint_url();
    let mut pairs: Vec<(String, String)> = NOT_SECRET
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    pairs.extend(
        [
            (SECRET_ID_VARIABLE, secret_id),
            (ENDPOINT_VARIABLE, &moto),
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_SESSION_TOKEN", "testing"),
            ("AWS_REGION", REGION),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );
    Env::from_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
}

/// Reads `secret_id` for a function taking `keys`, and checks it took those and no other.
async fn read_for(secret_id: &str, keys: &[&'static str]) -> Env {
    let env = read_into(lambda_env(secret_id), keys)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for key in SECRET_VARIABLES {
        let expected = keys.contains(&key).then(|| value_of(key));
        assert_eq!(env.optional(key).map(str::to_owned), expected, "{key}");
    }
    env
}

#[tokio::test]
async fn each_function_is_configured_from_the_secret_with_only_its_keys() {
    let secret = create_secret(&SECRET_VARIABLES).await;

    let env = read_for(&secret, whatsapp_inbound::SECRETS).await;
    let config = whatsapp_inbound::Config::from_env(&env).unwrap();
    assert_eq!(
        config.webhook.app_secret.expose_secret(),
        value_of("WHATSAPP_APP_SECRET")
    );
    assert_eq!(
        config.webhook.verify_token.expose_secret(),
        value_of("WHATSAPP_VERIFY_TOKEN")
    );
    assert_eq!(
        config.store.service_role_key.expose_secret(),
        value_of("SUPABASE_SERVICE_ROLE_KEY")
    );

    let env = read_for(&secret, form_intake::SECRETS).await;
    let config = form_intake::Config::from_env(&env).unwrap();
    assert_eq!(
        config.form.shared_secret.expose_secret(),
        value_of("FORM_SHARED_SECRET")
    );

    let env = read_for(&secret, conversation_worker::SECRETS).await;
    let config = conversation_worker::Config::from_env(&env).unwrap();
    assert_eq!(
        config.worker.retell.api_key.expose_secret(),
        value_of("RETELL_API_KEY")
    );
    assert_eq!(
        config.worker.whatsapp.access_token.expose_secret(),
        value_of("WHATSAPP_ACCESS_TOKEN")
    );
}

#[tokio::test]
async fn a_key_the_secret_lacks_is_named() {
    let without_verify_token: Vec<&str> = SECRET_VARIABLES
        .into_iter()
        .filter(|k| *k != "WHATSAPP_VERIFY_TOKEN")
        .collect();
    let secret = create_secret(&without_verify_token).await;
    let err = read_into(lambda_env(&secret), whatsapp_inbound::SECRETS)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, SecretError::MissingKey { key: "WHATSAPP_VERIFY_TOKEN", secret_id } if *secret_id == secret),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        format!("the secret {secret} has no key WHATSAPP_VERIFY_TOKEN")
    );
    // The functions that do not take it start.
    read_for(&secret, form_intake::SECRETS).await;
    read_for(&secret, conversation_worker::SECRETS).await;
}

#[tokio::test]
async fn a_secret_that_cannot_be_read_stops_init_naming_it() {
    let err = read_into(lambda_env("no-such-secret"), form_intake::SECRETS)
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(
        matches!(&err, SecretError::Unreadable { secret_id, .. } if secret_id == "no-such-secret"),
        "{message}"
    );
    assert!(
        message.starts_with("the secret no-such-secret could not be read: "),
        "{message}"
    );
    assert!(message.contains("ResourceNotFound"), "{message}");

    // Nothing answers: the same, within INIT's time.
    let started = std::time::Instant::now();
    let env = lambda_env("whatsapp-retell-bridge").with_values([(
        ENDPOINT_VARIABLE.to_owned(),
        "http://127.0.0.1:9".to_owned(),
    )]);
    let err = read_into(env, form_intake::SECRETS).await.unwrap_err();
    assert!(
        err.to_string()
            .starts_with("the secret whatsapp-retell-bridge could not be read: "),
        "{err}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(8));
}

#[tokio::test]
async fn a_changed_secret_is_what_the_next_cold_start_reads() {
    let secret = create_secret(&SECRET_VARIABLES).await;
    let before = read_for(&secret, form_intake::SECRETS).await;
    assert_eq!(
        before.optional("FORM_SHARED_SECRET"),
        Some(value_of("FORM_SHARED_SECRET").as_str())
    );
    let mut rotated: serde_json::Map<String, serde_json::Value> = SECRET_VARIABLES
        .iter()
        .map(|k| ((*k).to_owned(), value_of(k).into()))
        .collect();
    rotated.insert(
        "FORM_SHARED_SECRET".to_owned(),
        "rotated-form-secret-of-at-least-32-characters".into(),
    );
    client(MotoServer::shared())
        .await
        .put_secret_value()
        .secret_id(&secret)
        .secret_string(serde_json::Value::Object(rotated).to_string())
        .send()
        .await
        .expect("moto takes the new value");
    let after = read_into(lambda_env(&secret), form_intake::SECRETS)
        .await
        .unwrap();
    let config = form_intake::Config::from_env(&after).unwrap();
    assert_eq!(
        config.form.shared_secret.expose_secret(),
        "rotated-form-secret-of-at-least-32-characters"
    );
}

#[tokio::test]
async fn without_a_secret_id_the_environment_gives_every_variable() {
    let mut pairs: Vec<(&str, String)> = NOT_SECRET
        .iter()
        .map(|(k, v)| (*k, (*v).to_owned()))
        .collect();
    pairs.extend(SECRET_VARIABLES.map(|k| (k, format!("{}-from-dot-env-0123456789abcdef", k))));
    let env = Env::from_pairs(pairs.iter().map(|(k, v)| (*k, v.as_str())));
    let env = read_into(env, form_intake::SECRETS).await.unwrap();
    let config = form_intake::Config::from_env(&env).unwrap();
    assert_eq!(
        config.form.shared_secret.expose_secret(),
        "FORM_SHARED_SECRET-from-dot-env-0123456789abcdef"
    );
}
