//! Typed configuration, read once from the environment at start-up (Lambda INIT).
//!
//! Each function reads only the sections it needs. A missing or malformed variable is an error
//! that names it, so a bad deployment fails at INIT instead of mid-request. Secrets are wrapped
//! in [`SecretString`], whose `Debug` prints `[REDACTED]`.

use std::collections::{BTreeSet, HashMap};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use url::Url;

use crate::domain::{AllowedFields, CountryId, OutreachLimits};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{0} is not set")]
    Missing(&'static str),
    #[error("{name} is malformed: {reason}")]
    Malformed { name: &'static str, reason: String },
}

/// What the conversation worker reads, and what [`crate::engine::BridgeEngine::from_config`]
/// builds the engine from (the worker, the tests, `make dev` and the chaos run alike).
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub store: StoreConfig,
    pub retell: RetellConfig,
    pub whatsapp: WhatsAppConfig,
    pub engine: EngineConfig,
}

impl WorkerConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            store: StoreConfig::from_env(env)?,
            retell: RetellConfig::from_env(env)?,
            whatsapp: WhatsAppConfig::from_env(env)?,
            engine: EngineConfig::from_env(env)?,
        })
    }
}

/// The environment variables, read once; tests build one from pairs instead of touching the
/// process environment.
#[derive(Debug, Clone, Default)]
pub struct Env {
    values: HashMap<String, String>,
    /// Every name looked up, set or not: what a function reads, to check a deployment against.
    read: Arc<Mutex<BTreeSet<&'static str>>>,
}

impl Env {
    pub fn from_process() -> Self {
        Self {
            values: std::env::vars().collect(),
            read: Arc::default(),
        }
    }

    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self {
            values: pairs
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            read: Arc::default(),
        }
    }

    /// This environment with `values` set, over any of the same names: the secret's keys
    /// ([`crate::secrets::read_into`]).
    pub fn with_values(mut self, values: impl IntoIterator<Item = (String, String)>) -> Self {
        self.values.extend(values);
        self
    }

    /// A set, non-blank variable.
    pub fn optional(&self, name: &'static str) -> Option<&str> {
        self.read
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(name);
        self.values
            .get(name)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    }

    /// The names looked up so far, in order.
    pub fn names_read(&self) -> Vec<&'static str> {
        self.read
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .iter()
            .copied()
            .collect()
    }

    pub fn required(&self, name: &'static str) -> Result<&str, ConfigError> {
        self.optional(name).ok_or(ConfigError::Missing(name))
    }

    pub fn secret(&self, name: &'static str) -> Result<SecretString, ConfigError> {
        self.required(name)
            .map(|v| SecretString::from(v.to_owned()))
    }

    pub fn parsed<T>(&self, name: &'static str) -> Result<Option<T>, ConfigError>
    where
        T: FromStr,
        T::Err: std::fmt::Display,
    {
        self.optional(name)
            .map(|v| {
                v.parse().map_err(|e: T::Err| ConfigError::Malformed {
                    name,
                    reason: e.to_string(),
                })
            })
            .transpose()
    }

    pub fn url(&self, name: &'static str) -> Result<Option<Url>, ConfigError> {
        let Some(url) = self.parsed::<Url>(name)? else {
            return Ok(None);
        };
        if !matches!(url.scheme(), "http" | "https") {
            return Err(ConfigError::Malformed {
                name,
                reason: format!("{url} is not an http(s) URL"),
            });
        }
        Ok(Some(url))
    }

    /// A duration given in whole milliseconds.
    pub fn millis(&self, name: &'static str, default: Duration) -> Result<Duration, ConfigError> {
        Ok(self
            .parsed::<u64>(name)?
            .map_or(default, Duration::from_millis))
    }
}

/// Where the sessions live: a PostgREST API (Supabase's, or any compatible server).
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// The REST base URL, without a trailing slash: `<SUPABASE_URL>/rest/v1`, or
    /// `SUPABASE_REST_URL` when set.
    pub rest_url: String,
    pub service_role_key: SecretString,
    pub request_timeout: Duration,
}

impl StoreConfig {
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let rest_url = match env.url("SUPABASE_REST_URL")? {
            Some(url) => url,
            None => {
                let base = env
                    .url("SUPABASE_URL")?
                    .ok_or(ConfigError::Missing("SUPABASE_URL"))?;
                let joined = format!("{}/rest/v1", base.as_str().trim_end_matches('/'));
                Url::parse(&joined).map_err(|e| ConfigError::Malformed {
                    name: "SUPABASE_URL",
                    reason: e.to_string(),
                })?
            }
        };
        Ok(Self {
            rest_url: without_trailing_slash(rest_url),
            service_role_key: env.secret("SUPABASE_SERVICE_ROLE_KEY")?,
            request_timeout: env.millis("SUPABASE_TIMEOUT_MS", Self::DEFAULT_TIMEOUT)?,
        })
    }
}

/// The Retell chat agent.
#[derive(Debug, Clone)]
pub struct RetellConfig {
    pub api_key: SecretString,
    pub agent_id: String,
    pub agent_version: Option<u32>,
    pub base_url: String,
    /// For create, get and end chat.
    pub request_timeout: Duration,
    /// For a completion: the agent may call tools before it answers.
    pub completion_timeout: Duration,
}

impl RetellConfig {
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);
    pub const DEFAULT_COMPLETION_TIMEOUT: Duration = Duration::from_secs(120);

    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            api_key: env.secret("RETELL_API_KEY")?,
            agent_id: env.required("RETELL_AGENT_ID")?.to_owned(),
            agent_version: env.parsed("RETELL_AGENT_VERSION")?,
            base_url: without_trailing_slash(
                env.url("RETELL_BASE_URL")?
                    .unwrap_or_else(|| Url::parse("https://api.retellai.com").expect("valid URL")),
            ),
            request_timeout: env.millis("RETELL_TIMEOUT_MS", Self::DEFAULT_TIMEOUT)?,
            completion_timeout: env.millis(
                "RETELL_COMPLETION_TIMEOUT_MS",
                Self::DEFAULT_COMPLETION_TIMEOUT,
            )?,
        })
    }
}

/// The WhatsApp Cloud API number the bridge speaks from, and its webhook secrets.
#[derive(Debug, Clone)]
pub struct WhatsAppConfig {
    pub access_token: SecretString,
    pub phone_number_id: String,
    pub graph_url: String,
    pub api_version: String,
    pub template_name: String,
    pub template_language: String,
    /// For one Graph call.
    pub request_timeout: Duration,
}

impl WhatsAppConfig {
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let api_version = env
            .optional("WHATSAPP_API_VERSION")
            .unwrap_or("v23.0")
            .to_owned();
        if !api_version.starts_with('v') || api_version[1..].parse::<f32>().is_err() {
            return Err(ConfigError::Malformed {
                name: "WHATSAPP_API_VERSION",
                reason: format!("{api_version:?} is not a Graph API version like v23.0"),
            });
        }
        Ok(Self {
            access_token: env.secret("WHATSAPP_ACCESS_TOKEN")?,
            phone_number_id: env.required("WHATSAPP_PHONE_NUMBER_ID")?.to_owned(),
            graph_url: without_trailing_slash(
                env.url("WHATSAPP_GRAPH_URL")?.unwrap_or_else(|| {
                    Url::parse("https://graph.facebook.com").expect("valid URL")
                }),
            ),
            api_version,
            template_name: env.required("WHATSAPP_TEMPLATE_NAME")?.to_owned(),
            template_language: env.required("WHATSAPP_TEMPLATE_LANGUAGE")?.to_owned(),
            request_timeout: env.millis("WHATSAPP_TIMEOUT_MS", Self::DEFAULT_TIMEOUT)?,
        })
    }
}

/// The secrets of Meta's webhook, and the number it answers for: only the function that
/// receives it needs them.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// Signs every POST (`X-Hub-Signature-256`).
    pub app_secret: SecretString,
    /// Chosen by us, typed into Meta's dashboard, echoed in the verification handshake.
    pub verify_token: SecretString,
    /// Our business number (`WHATSAPP_PHONE_NUMBER_ID`): changes about any other number of the
    /// same app are kept as ignored, never answered.
    pub phone_number_id: String,
}

impl WebhookConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            app_secret: env.secret("WHATSAPP_APP_SECRET")?,
            verify_token: env.secret("WHATSAPP_VERIFY_TOKEN")?,
            phone_number_id: env.required("WHATSAPP_PHONE_NUMBER_ID")?.to_owned(),
        })
    }
}

/// The web form's authentication, phone parsing, extra fields and body limit.
#[derive(Debug, Clone)]
pub struct FormConfig {
    /// What servers posting the form hold (`FORM_SHARED_SECRET`): at least
    /// [`FormConfig::MIN_SECRET_CHARS`] characters.
    pub shared_secret: SecretString,
    /// The country of numbers entered without `+`.
    pub default_country: CountryId,
    /// The extra fields that reach the agent (`FORM_FIELDS`, comma-separated); every other one
    /// is dropped. Empty (the default): none.
    pub fields: AllowedFields,
    /// The largest body accepted (`FORM_MAX_BODY_BYTES`).
    pub max_body_bytes: usize,
    /// A customer who wrote, was written to, or had a form accepted this recently gets no new
    /// template and keeps their chat (`OUTREACH_COOLDOWN_HOURS`, default 24; 0: no cooldown).
    pub outreach_cooldown: Duration,
    /// Form outreaches per day (UTC) for the whole bridge; past it forms are held and the
    /// operator told (`OUTREACH_DAILY_LIMIT`, default 500; 0 holds every form).
    pub outreach_daily_limit: u32,
}

impl FormConfig {
    pub const DEFAULT_MAX_BODY_BYTES: usize = 64 * 1024;
    pub const DEFAULT_OUTREACH_COOLDOWN: Duration = OutreachLimits::DEFAULT.cooldown;
    pub const DEFAULT_OUTREACH_DAILY_LIMIT: u32 = OutreachLimits::DEFAULT.daily_limit;
    /// The longest cooldown, in hours: a year.
    pub const MAX_OUTREACH_COOLDOWN_HOURS: u64 = 366 * 24;
    /// The shortest form secret, in characters.
    pub const MIN_SECRET_CHARS: usize = 32;

    /// The limits each form's outreach is decided under.
    pub fn outreach_limits(&self) -> OutreachLimits {
        OutreachLimits {
            cooldown: self.outreach_cooldown,
            daily_limit: self.outreach_daily_limit,
        }
    }

    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let country = env.required("FORM_DEFAULT_COUNTRY")?;
        let default_country =
            country
                .to_ascii_uppercase()
                .parse()
                .map_err(|_| ConfigError::Malformed {
                    name: "FORM_DEFAULT_COUNTRY",
                    reason: format!("{country:?} is not a two-letter country code like MX"),
                })?;
        let max_body_bytes = env
            .parsed::<usize>("FORM_MAX_BODY_BYTES")?
            .unwrap_or(Self::DEFAULT_MAX_BODY_BYTES);
        if max_body_bytes == 0 {
            return Err(ConfigError::Malformed {
                name: "FORM_MAX_BODY_BYTES",
                reason: "a form needs a body: give a limit above 0".to_owned(),
            });
        }
        let shared_secret = env.secret("FORM_SHARED_SECRET")?;
        let secret_chars = shared_secret.expose_secret().chars().count();
        if secret_chars < Self::MIN_SECRET_CHARS {
            return Err(ConfigError::Malformed {
                name: "FORM_SHARED_SECRET",
                reason: format!(
                    "it has {secret_chars} characters; give at least {} (openssl rand -hex 32)",
                    Self::MIN_SECRET_CHARS
                ),
            });
        }
        let fields =
            AllowedFields::parse(env.optional("FORM_FIELDS").unwrap_or("")).map_err(|reason| {
                ConfigError::Malformed {
                    name: "FORM_FIELDS",
                    reason,
                }
            })?;
        let outreach_cooldown = match env.parsed::<u64>("OUTREACH_COOLDOWN_HOURS")? {
            None => Self::DEFAULT_OUTREACH_COOLDOWN,
            Some(hours) if hours <= Self::MAX_OUTREACH_COOLDOWN_HOURS => {
                Duration::from_secs(hours * 60 * 60)
            }
            Some(hours) => {
                return Err(ConfigError::Malformed {
                    name: "OUTREACH_COOLDOWN_HOURS",
                    reason: format!(
                        "{hours} hours is more than a year ({})",
                        Self::MAX_OUTREACH_COOLDOWN_HOURS
                    ),
                });
            }
        };
        let outreach_daily_limit = env
            .parsed::<u32>("OUTREACH_DAILY_LIMIT")?
            .unwrap_or(Self::DEFAULT_OUTREACH_DAILY_LIMIT);
        Ok(Self {
            outreach_cooldown,
            outreach_daily_limit,
            shared_secret,
            default_country,
            fields,
            max_body_bytes,
        })
    }
}

/// The FIFO queue of turns.
#[derive(Debug, Clone)]
pub struct QueueConfig {
    pub queue_url: Url,
    /// An SQS-compatible endpoint for local runs.
    pub endpoint_url: Option<Url>,
}

impl QueueConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let queue_url = env
            .url("TURN_QUEUE_URL")?
            .ok_or(ConfigError::Missing("TURN_QUEUE_URL"))?;
        if !queue_url.path().ends_with(".fifo") {
            return Err(ConfigError::Malformed {
                name: "TURN_QUEUE_URL",
                reason: "turns need a FIFO queue (its name ends in .fifo)".to_owned(),
            });
        }
        Ok(Self {
            queue_url,
            endpoint_url: env.url("SQS_ENDPOINT_URL")?,
        })
    }
}

/// How the conversation engine behaves: words, canned replies, the first contact.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Words that, alone in a message, opt the customer out (compared without case or accents).
    pub opt_out_words: Vec<String>,
    pub opt_in_words: Vec<String>,
    pub opt_out_confirmation: String,
    pub opt_in_confirmation: String,
    /// The one reply to a message the agent cannot read (a sticker, a voice note, …).
    pub unsupported_reply: String,
    /// Trigger the agent's opening with an empty first completion when a form starts a chat,
    /// so its transcript holds the question the template asked (see docs on agent set-up).
    pub open_with_empty_completion: bool,
    /// The name for the template when a customer gave none.
    pub name_fallback: String,
    /// How long a turn holds its customer before another worker may take over (at most until
    /// shortly after its invocation ends).
    pub turn_lease: Duration,
    /// How many turns may die holding a message before it is given up (`TURN_MAX_ATTEMPTS`,
    /// default 5): the queue's `maxReceiveCount`, so a job is dead-lettered when its messages
    /// are given up, not before and not after.
    pub max_attempts: u32,
    /// How many earlier messages carry over into a new chat when Retell ended the last one.
    pub carry_over_messages: usize,
}

impl EngineConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let words = |name: &'static str, default: &str| -> Vec<String> {
            env.optional(name)
                .unwrap_or(default)
                .split(',')
                .map(|w| w.trim().to_owned())
                .filter(|w| !w.is_empty())
                .collect()
        };
        let text =
            |name: &'static str, default: &str| env.optional(name).unwrap_or(default).to_owned();
        let open_with_empty_completion =
            match env.optional("FIRST_CONTACT_COMPLETION").unwrap_or("empty") {
                "empty" => true,
                "none" => false,
                other => {
                    return Err(ConfigError::Malformed {
                        name: "FIRST_CONTACT_COMPLETION",
                        reason: format!("{other:?} is neither `empty` nor `none`"),
                    });
                }
            };
        Ok(Self {
            opt_out_words: words("OPT_OUT_WORDS", "STOP,BAJA,CANCELAR,UNSUBSCRIBE"),
            opt_in_words: words("OPT_IN_WORDS", "START,ALTA,REANUDAR"),
            opt_out_confirmation: text(
                "OPT_OUT_CONFIRMATION",
                "Listo, no te enviaremos más mensajes. Escribe ALTA si quieres volver a hablar con nosotros.",
            ),
            opt_in_confirmation: text(
                "OPT_IN_CONFIRMATION",
                "¡Bienvenido de vuelta! ¿En qué te podemos ayudar?",
            ),
            unsupported_reply: text(
                "UNSUPPORTED_MESSAGE_REPLY",
                "Por ahora solo puedo leer mensajes de texto. ¿Me lo podrías escribir?",
            ),
            open_with_empty_completion,
            name_fallback: text("CUSTOMER_NAME_FALLBACK", "cliente"),
            turn_lease: Duration::from_secs(env.parsed("TURN_LEASE_SECONDS")?.unwrap_or(300)),
            max_attempts: match env.parsed("TURN_MAX_ATTEMPTS")?.unwrap_or(5) {
                attempts @ 1..=100 => attempts,
                other => {
                    return Err(ConfigError::Malformed {
                        name: "TURN_MAX_ATTEMPTS",
                        reason: format!("{other} is not between 1 and 100"),
                    });
                }
            },
            carry_over_messages: env.parsed("CARRY_OVER_MESSAGES")?.unwrap_or(10),
        })
    }
}

/// A base URL to append paths to: `https://host/rest/v1`, never `https://host/rest/v1/`.
fn without_trailing_slash(url: Url) -> String {
    url.as_str().trim_end_matches('/').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store_env(extra: &[(&'static str, &'static str)]) -> Env {
        Env::from_pairs(extra.iter().copied())
    }

    #[test]
    fn rest_url_defaults_to_supabase_url_plus_rest_v1() {
        let env = store_env(&[
            ("SUPABASE_URL", "https://abc.supabase.co/"),
            ("SUPABASE_SERVICE_ROLE_KEY", "sb_secret_x"),
        ]);
        let config = StoreConfig::from_env(&env).unwrap();
        assert_eq!(config.rest_url, "https://abc.supabase.co/rest/v1");
        assert_eq!(config.request_timeout, StoreConfig::DEFAULT_TIMEOUT);
    }

    #[test]
    fn rest_url_override_wins_and_loses_its_trailing_slash() {
        let env = store_env(&[
            ("SUPABASE_URL", "https://abc.supabase.co"),
            ("SUPABASE_REST_URL", "http://127.0.0.1:3000/api/"),
            ("SUPABASE_SERVICE_ROLE_KEY", "k"),
            ("SUPABASE_TIMEOUT_MS", "250"),
        ]);
        let config = StoreConfig::from_env(&env).unwrap();
        assert_eq!(config.rest_url, "http://127.0.0.1:3000/api");
        assert_eq!(config.request_timeout, Duration::from_millis(250));
    }

    #[test]
    fn missing_and_malformed_variables_are_named() {
        let err =
            StoreConfig::from_env(&store_env(&[("SUPABASE_SERVICE_ROLE_KEY", "k")])).unwrap_err();
        assert_eq!(err, ConfigError::Missing("SUPABASE_URL"));
        let err = StoreConfig::from_env(&store_env(&[("SUPABASE_URL", "https://x.supabase.co")]))
            .unwrap_err();
        assert_eq!(err.to_string(), "SUPABASE_SERVICE_ROLE_KEY is not set");
        let err =
            StoreConfig::from_env(&store_env(&[("SUPABASE_URL", "abc.supabase.co")])).unwrap_err();
        assert!(
            err.to_string().starts_with("SUPABASE_URL is malformed"),
            "{err}"
        );
        let err = StoreConfig::from_env(&store_env(&[
            ("SUPABASE_URL", "https://x.supabase.co"),
            ("SUPABASE_SERVICE_ROLE_KEY", "k"),
            ("SUPABASE_TIMEOUT_MS", "soon"),
        ]))
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("SUPABASE_TIMEOUT_MS is malformed"),
            "{err}"
        );
        let err =
            FormConfig::from_env(&store_env(&[("FORM_DEFAULT_COUNTRY", "Mexico")])).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("FORM_DEFAULT_COUNTRY is malformed"),
            "{err}"
        );
        let err = QueueConfig::from_env(&store_env(&[("TURN_QUEUE_URL", "https://sqs.x/1/turns")]))
            .unwrap_err();
        assert!(err.to_string().contains("FIFO"), "{err}");
    }

    #[test]
    fn blank_counts_as_missing() {
        let err = RetellConfig::from_env(&store_env(&[("RETELL_API_KEY", "  ")])).unwrap_err();
        assert_eq!(err, ConfigError::Missing("RETELL_API_KEY"));
    }

    /// A form secret of 32 characters, the shortest accepted.
    const FORM_SECRET: &str = "hunter2-very-secret-of-32-chars!";

    #[test]
    fn secrets_never_print() {
        let env = store_env(&[
            ("FORM_SHARED_SECRET", FORM_SECRET),
            ("FORM_DEFAULT_COUNTRY", "mx"),
        ]);
        let config = FormConfig::from_env(&env).unwrap();
        assert_eq!(config.default_country, CountryId::MX);
        assert!(!format!("{config:?}").contains("hunter2"));
        assert_eq!(config.shared_secret.expose_secret(), FORM_SECRET);
        assert!(config.fields.is_empty(), "no extra field by default");
        assert_eq!(config.max_body_bytes, 65536);
    }

    #[test]
    fn outreach_limits_default_to_a_day_and_500_and_are_checked() {
        let form = |extra: &[(&'static str, &'static str)]| {
            let mut pairs = vec![
                ("FORM_SHARED_SECRET", FORM_SECRET),
                ("FORM_DEFAULT_COUNTRY", "MX"),
            ];
            pairs.extend_from_slice(extra);
            FormConfig::from_env(&store_env(&pairs))
        };
        let limits = form(&[]).unwrap().outreach_limits();
        assert_eq!(
            (limits.cooldown, limits.daily_limit),
            (Duration::from_secs(24 * 3600), 500)
        );
        let config = form(&[
            ("OUTREACH_COOLDOWN_HOURS", "72"),
            ("OUTREACH_DAILY_LIMIT", "40"),
        ])
        .unwrap();
        assert_eq!(config.outreach_cooldown, Duration::from_secs(72 * 3600));
        assert_eq!(config.outreach_daily_limit, 40);
        let off = form(&[
            ("OUTREACH_COOLDOWN_HOURS", "0"),
            ("OUTREACH_DAILY_LIMIT", "0"),
        ])
        .unwrap()
        .outreach_limits();
        assert_eq!((off.cooldown, off.daily_limit), (Duration::ZERO, 0));
        for (name, value) in [
            ("OUTREACH_COOLDOWN_HOURS", "1.5"),
            ("OUTREACH_COOLDOWN_HOURS", "-1"),
            ("OUTREACH_COOLDOWN_HOURS", "9000"),
            ("OUTREACH_DAILY_LIMIT", "-5"),
            ("OUTREACH_DAILY_LIMIT", "lots"),
        ] {
            let err = form(&[(name, value)]).unwrap_err();
            assert!(
                err.to_string().starts_with(&format!("{name} is malformed")),
                "{value}: {err}"
            );
        }
    }

    #[test]
    fn a_form_secret_shorter_than_32_characters_stops_init() {
        let short = &FORM_SECRET[..31];
        let env = store_env(&[
            ("FORM_SHARED_SECRET", short),
            ("FORM_DEFAULT_COUNTRY", "MX"),
        ]);
        let err = FormConfig::from_env(&env).unwrap_err();
        assert!(
            matches!(err, ConfigError::Malformed { name: "FORM_SHARED_SECRET", ref reason }
                if reason.contains("31 characters") && reason.contains("at least 32")),
            "{err}"
        );
        assert!(!err.to_string().contains(short), "the secret is not shown");
        // Counted in characters, once trimmed.
        let padded = format!("  {short}  ");
        let env = Env::from_pairs([
            ("FORM_SHARED_SECRET", padded.as_str()),
            ("FORM_DEFAULT_COUNTRY", "MX"),
        ]);
        assert!(FormConfig::from_env(&env).is_err());
        let thirty_two = "ñ".repeat(32);
        let env = Env::from_pairs([
            ("FORM_SHARED_SECRET", thirty_two.as_str()),
            ("FORM_DEFAULT_COUNTRY", "MX"),
        ]);
        assert!(FormConfig::from_env(&env).is_ok());
    }

    #[test]
    fn form_fields_and_body_limit_are_read_and_checked() {
        let env = store_env(&[
            ("FORM_SHARED_SECRET", FORM_SECRET),
            ("FORM_DEFAULT_COUNTRY", "MX"),
            ("FORM_FIELDS", " producto, utm_source ,,"),
            ("FORM_MAX_BODY_BYTES", "1024"),
        ]);
        let config = FormConfig::from_env(&env).unwrap();
        let fields: Vec<&str> = config.fields.names().map(|n| n.as_str()).collect();
        assert_eq!(fields, ["producto", "utm_source"]);
        assert_eq!(config.max_body_bytes, 1024);

        for (name, value) in [
            ("FORM_FIELDS", "producto,Ciudad"),
            ("FORM_FIELDS", "customer_name"),
            ("FORM_FIELDS", "name"),
            ("FORM_MAX_BODY_BYTES", "0"),
            ("FORM_MAX_BODY_BYTES", "64k"),
        ] {
            let env = store_env(&[
                ("FORM_SHARED_SECRET", FORM_SECRET),
                ("FORM_DEFAULT_COUNTRY", "MX"),
                (name, value),
            ]);
            let err = FormConfig::from_env(&env).unwrap_err();
            assert!(
                err.to_string().starts_with(&format!("{name} is malformed")),
                "{value}: {err}"
            );
        }
    }

    #[test]
    fn every_section_reads_a_complete_environment() {
        let env = store_env(&[
            ("RETELL_API_KEY", "key_x"),
            ("RETELL_AGENT_ID", "agent_x"),
            ("RETELL_AGENT_VERSION", "3"),
            ("WHATSAPP_ACCESS_TOKEN", "EAAG"),
            ("WHATSAPP_PHONE_NUMBER_ID", "106540352242922"),
            ("WHATSAPP_APP_SECRET", "s"),
            ("WHATSAPP_VERIFY_TOKEN", "v"),
            ("WHATSAPP_TEMPLATE_NAME", "first_contact"),
            ("WHATSAPP_TEMPLATE_LANGUAGE", "es_MX"),
            (
                "TURN_QUEUE_URL",
                "https://sqs.us-east-1.amazonaws.com/1/turns.fifo",
            ),
        ]);
        let retell = RetellConfig::from_env(&env).unwrap();
        assert_eq!(
            (retell.agent_version, retell.base_url.as_str()),
            (Some(3), "https://api.retellai.com")
        );
        let whatsapp = WhatsAppConfig::from_env(&env).unwrap();
        assert_eq!(whatsapp.api_version, "v23.0");
        assert_eq!(whatsapp.graph_url, "https://graph.facebook.com");
        assert!(QueueConfig::from_env(&env).unwrap().endpoint_url.is_none());
    }
}
