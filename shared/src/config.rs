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
    /// Where each analysed chat's outcome is POSTed, when the business wants them.
    pub outcome_hook: Option<OutcomeHookConfig>,
    /// Where voice notes are transcribed (`TRANSCRIBE_URL`); unset, they get the polite reply.
    pub transcribe: Option<TranscribeConfig>,
}

impl WorkerConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            store: StoreConfig::from_env(env)?,
            retell: RetellConfig::from_env(env)?,
            whatsapp: WhatsAppConfig::from_env(env)?,
            engine: EngineConfig::from_env(env)?,
            outcome_hook: OutcomeHookConfig::from_env(env)?,
            transcribe: TranscribeConfig::from_env(env)?,
        })
    }
}

/// An OpenAI-compatible transcription API (OpenAI, Groq, a self-hosted Whisper server):
/// `TRANSCRIBE_URL` is its base URL as OpenAI clients take it (`https://api.openai.com/v1`), and
/// voice notes are posted to `<TRANSCRIBE_URL>/audio/transcriptions`.
#[derive(Debug, Clone)]
pub struct TranscribeConfig {
    /// The base URL, without a trailing slash.
    pub url: String,
    /// `TRANSCRIBE_API_KEY`, sent as a bearer token (optional: a self-hosted server may need none).
    pub api_key: Option<SecretString>,
    /// `TRANSCRIBE_MODEL`, default `whisper-1`.
    pub model: String,
    /// `TRANSCRIBE_LANGUAGE` (ISO-639-1): the language hint for every voice note; unset, it is
    /// taken from the customer's country code.
    pub language: Option<String>,
    /// `TRANSCRIBE_TIMEOUT_SECONDS`, default 60: how long one transcription may take.
    pub request_timeout: Duration,
    /// `VOICE_NOTE_MAX_BYTES`, default 16 MB (WhatsApp's own limit for audio).
    pub max_bytes: u64,
    /// `VOICE_NOTE_MAX_SECONDS`, default 300: longer notes get the polite reply.
    pub max_duration: Duration,
}

impl TranscribeConfig {
    /// `None` when `TRANSCRIBE_URL` is unset.
    pub fn from_env(env: &Env) -> Result<Option<Self>, ConfigError> {
        let Some(url) = env.url("TRANSCRIBE_URL")? else {
            return Ok(None);
        };
        Ok(Some(Self {
            url: without_trailing_slash(url),
            api_key: env
                .optional("TRANSCRIBE_API_KEY")
                .map(|key| SecretString::from(key.to_owned())),
            model: env
                .optional("TRANSCRIBE_MODEL")
                .unwrap_or("whisper-1")
                .to_owned(),
            language: env.optional("TRANSCRIBE_LANGUAGE").map(str::to_owned),
            request_timeout: Duration::from_secs(
                env.parsed("TRANSCRIBE_TIMEOUT_SECONDS")?.unwrap_or(60),
            ),
            max_bytes: env
                .parsed("VOICE_NOTE_MAX_BYTES")?
                .unwrap_or(16 * 1024 * 1024),
            max_duration: Duration::from_secs(env.parsed("VOICE_NOTE_MAX_SECONDS")?.unwrap_or(300)),
        }))
    }
}

/// The business's outcome hook ([`crate::outcome::OutcomeHook`]): `OUTCOME_WEBHOOK_URL` and
/// `OUTCOME_WEBHOOK_SECRET`, both set or neither.
#[derive(Debug, Clone)]
pub struct OutcomeHookConfig {
    pub url: Url,
    /// Signs each POST (`X-Bridge-Signature`); at least [`Self::MIN_SECRET_CHARS`] characters.
    pub secret: SecretString,
}

impl OutcomeHookConfig {
    pub const MIN_SECRET_CHARS: usize = 32;

    /// `None` when neither variable is set; one without the other is an error.
    pub fn from_env(env: &Env) -> Result<Option<Self>, ConfigError> {
        let url = env.url("OUTCOME_WEBHOOK_URL")?;
        let secret = env.optional("OUTCOME_WEBHOOK_SECRET");
        let (url, secret) = match (url, secret) {
            (None, None) => return Ok(None),
            (Some(_), None) => return Err(ConfigError::Missing("OUTCOME_WEBHOOK_SECRET")),
            (None, Some(_)) => return Err(ConfigError::Missing("OUTCOME_WEBHOOK_URL")),
            (Some(url), Some(secret)) => (url, secret),
        };
        let chars = secret.chars().count();
        if chars < Self::MIN_SECRET_CHARS {
            return Err(ConfigError::Malformed {
                name: "OUTCOME_WEBHOOK_SECRET",
                reason: format!(
                    "it has {chars} characters; give at least {} (openssl rand -hex 32)",
                    Self::MIN_SECRET_CHARS
                ),
            });
        }
        Ok(Some(Self {
            url,
            secret: SecretString::from(secret.to_owned()),
        }))
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

/// The hosted form and the browser path of `POST /form` (Cloudflare Turnstile, the page's
/// branding, the per-source limit). Apart from [`FormConfig`]: without
/// `FORM_TURNSTILE_SITE_KEY` there is none, no page, and browser posts are refused.
#[derive(Debug, Clone)]
pub struct BrowserFormConfig {
    /// The widget's public key (`FORM_TURNSTILE_SITE_KEY`).
    pub site_key: String,
    /// What siteverify checks a token with (`FORM_TURNSTILE_SECRET`, a secret).
    pub secret: SecretString,
    /// Turnstile's siteverify endpoint (`FORM_TURNSTILE_VERIFY_URL`).
    pub verify_url: Url,
    /// The widget's script, the page's only request (`FORM_TURNSTILE_SCRIPT_URL`).
    pub script_url: Url,
    /// The https origins that may embed the page or post from their own
    /// (`FORM_ALLOWED_ORIGINS`, comma-separated), each as `https://host[:port]`; may be empty.
    pub allowed_origins: Vec<String>,
    /// Accepted browser forms per source address per hour (`FORM_BROWSER_LIMIT_PER_HOUR`).
    pub limit_per_hour: u32,
    /// Shown on the page and in the consent text (`FORM_BUSINESS_NAME`, required).
    pub business_name: String,
    /// The page's colour, `#rrggbb` in lower case (`FORM_BRAND_COLOR`).
    pub brand_color: String,
    /// An https image shown above the form (`FORM_LOGO_URL`).
    pub logo_url: Option<Url>,
    /// The consent checkbox's text, `{business}` standing for the business name
    /// (`FORM_CONSENT_TEXT`).
    pub consent_text: String,
    /// The business's WhatsApp number in digits, for the confirmation's `wa.me` link
    /// (`FORM_WHATSAPP_NUMBER`).
    pub whatsapp_number: Option<String>,
}

impl BrowserFormConfig {
    pub const DEFAULT_VERIFY_URL: &'static str =
        "https://challenges.cloudflare.com/turnstile/v0/siteverify";
    pub const DEFAULT_SCRIPT_URL: &'static str =
        "https://challenges.cloudflare.com/turnstile/v0/api.js";
    pub const DEFAULT_LIMIT_PER_HOUR: u32 = 5;
    pub const DEFAULT_BRAND_COLOR: &'static str = "#128c7e";
    pub const DEFAULT_CONSENT_TEXT: &'static str =
        "Acepto que {business} me contacte por WhatsApp sobre mi solicitud.";

    /// `None` when `FORM_TURNSTILE_SITE_KEY` is unset; every other variable is then unread.
    pub fn from_env(env: &Env) -> Result<Option<Self>, ConfigError> {
        let Some(site_key) = env.optional("FORM_TURNSTILE_SITE_KEY") else {
            return Ok(None);
        };
        let site_key = site_key.to_owned();
        let malformed = |name, reason: String| ConfigError::Malformed { name, reason };
        let url_or = |name, default: &str| -> Result<Url, ConfigError> {
            Ok(env
                .url(name)?
                .unwrap_or_else(|| Url::parse(default).expect("valid URL")))
        };
        let allowed_origins = env
            .optional("FORM_ALLOWED_ORIGINS")
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|origin| !origin.is_empty())
            .map(|origin| {
                https_origin(origin).ok_or_else(|| {
                    malformed(
                        "FORM_ALLOWED_ORIGINS",
                        format!("{origin:?} is not an https origin like https://www.example.com"),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let brand_color = match env.optional("FORM_BRAND_COLOR") {
            None => Self::DEFAULT_BRAND_COLOR.to_owned(),
            Some(color) if is_hex_color(color) => color.to_ascii_lowercase(),
            Some(color) => {
                return Err(malformed(
                    "FORM_BRAND_COLOR",
                    format!("{color:?} is not a colour like #128c7e"),
                ));
            }
        };
        let logo_url = match env.url("FORM_LOGO_URL")? {
            Some(url) if url.scheme() != "https" => {
                return Err(malformed(
                    "FORM_LOGO_URL",
                    format!("{url} is not an https URL"),
                ));
            }
            logo => logo,
        };
        let whatsapp_number = match env.optional("FORM_WHATSAPP_NUMBER") {
            None => None,
            Some(number) => {
                let digits: String = number
                    .trim_start_matches('+')
                    .chars()
                    .filter(|c| !matches!(c, ' ' | '-'))
                    .collect();
                if !(8..=15).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit())
                {
                    return Err(malformed(
                        "FORM_WHATSAPP_NUMBER",
                        format!("{number:?} is not a phone number in digits like 5215512345678"),
                    ));
                }
                Some(digits)
            }
        };
        Ok(Some(Self {
            site_key,
            secret: env.secret("FORM_TURNSTILE_SECRET")?,
            verify_url: url_or("FORM_TURNSTILE_VERIFY_URL", Self::DEFAULT_VERIFY_URL)?,
            script_url: url_or("FORM_TURNSTILE_SCRIPT_URL", Self::DEFAULT_SCRIPT_URL)?,
            allowed_origins,
            limit_per_hour: env
                .parsed("FORM_BROWSER_LIMIT_PER_HOUR")?
                .unwrap_or(Self::DEFAULT_LIMIT_PER_HOUR),
            business_name: env.required("FORM_BUSINESS_NAME")?.to_owned(),
            brand_color,
            logo_url,
            consent_text: env
                .optional("FORM_CONSENT_TEXT")
                .unwrap_or(Self::DEFAULT_CONSENT_TEXT)
                .to_owned(),
            whatsapp_number,
        }))
    }

    /// The hosts of [`Self::allowed_origins`], which a token's hostname may also be.
    pub fn allowed_hosts(&self) -> Vec<String> {
        self.allowed_origins
            .iter()
            .filter_map(|origin| Url::parse(origin).ok())
            .filter_map(|url| url.host_str().map(str::to_owned))
            .collect()
    }

    /// The consent text with the business name in place of `{business}`.
    pub fn consent(&self) -> String {
        self.consent_text.replace("{business}", &self.business_name)
    }
}

/// `https://host[:port]` when `text` is exactly an https origin (a trailing `/` allowed).
fn https_origin(text: &str) -> Option<String> {
    let url = Url::parse(text).ok()?;
    let bare = url.path() == "/" && url.query().is_none() && url.fragment().is_none();
    let plain = url.username().is_empty() && url.password().is_none();
    (url.scheme() == "https" && url.host().is_some() && bare && plain)
        .then(|| url.origin().ascii_serialization())
}

/// `#rrggbb`.
fn is_hex_color(text: &str) -> bool {
    text.len() == 7 && text.starts_with('#') && text[1..].bytes().all(|b| b.is_ascii_hexdigit())
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

/// The doors staff and the agent use (staff-inbound): Supabase's Database Webhook on
/// `staff_messages` (`POST /staff`) and the agent's Retell custom functions
/// (`POST /retell/functions/{name}`), and how staff are told that a customer wants a person.
#[derive(Debug, Clone)]
pub struct StaffConfig {
    /// What the Database Webhook sends as `Authorization: Bearer <secret>`
    /// (`STAFF_WEBHOOK_SECRET`): at least [`StaffConfig::MIN_SECRET_CHARS`] characters.
    pub webhook_secret: SecretString,
    /// What Retell signs its function calls with (`RETELL_API_KEY`, the key with the webhook
    /// badge).
    pub retell_api_key: SecretString,
    /// What Retell signs its chat webhooks (`POST /retell`) with (`RETELL_WEBHOOK_API_KEY`,
    /// the key with the webhook badge when it is not `RETELL_API_KEY`); unset: `RETELL_API_KEY`.
    pub retell_webhook_api_key: Option<SecretString>,
    /// Whether the business's outcome hook is configured (`OUTCOME_WEBHOOK_URL`): an analysed
    /// chat is queued for it only then.
    pub outcome_hook: bool,
    /// The SNS topic staff alerts go to (`STAFF_ALERT_TOPIC_ARN`); none: no SNS alert.
    pub alert_topic_arn: Option<String>,
    /// An SNS-compatible endpoint for local runs (`SNS_ENDPOINT_URL`).
    pub sns_endpoint_url: Option<Url>,
    /// An incoming webhook (Slack, Teams, …) that takes `{"text": …}`
    /// (`STAFF_ALERT_WEBHOOK_URL`); none: no such alert.
    pub alert_webhook_url: Option<Url>,
    /// What the agent tells the customer once a person has been asked for
    /// (`REQUEST_HUMAN_REPLY`).
    pub request_human_reply: String,
    /// How long `request_human` pauses the agent (`PAUSE_DEFAULT_MINUTES`); unset: the
    /// database's `bridge_settings.pause_default_minutes`.
    pub pause_minutes: Option<u32>,
}

impl StaffConfig {
    /// The shortest webhook secret, in characters.
    pub const MIN_SECRET_CHARS: usize = 32;
    /// The longest pause, in minutes: 30 days.
    pub const MAX_PAUSE_MINUTES: u32 = 43_200;
    pub const DEFAULT_REQUEST_HUMAN_REPLY: &'static str = "Listo, le pedí a una persona de nuestro equipo que continúe la conversación. Te escribirá por aquí en cuanto pueda.";

    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let webhook_secret = env.secret("STAFF_WEBHOOK_SECRET")?;
        let secret_chars = webhook_secret.expose_secret().chars().count();
        if secret_chars < Self::MIN_SECRET_CHARS {
            return Err(ConfigError::Malformed {
                name: "STAFF_WEBHOOK_SECRET",
                reason: format!(
                    "it has {secret_chars} characters; give at least {} (openssl rand -hex 32)",
                    Self::MIN_SECRET_CHARS
                ),
            });
        }
        let alert_topic_arn = match env.optional("STAFF_ALERT_TOPIC_ARN") {
            Some(arn) if arn.starts_with("arn:") && arn.split(':').nth(2) == Some("sns") => {
                Some(arn.to_owned())
            }
            Some(arn) => {
                return Err(ConfigError::Malformed {
                    name: "STAFF_ALERT_TOPIC_ARN",
                    reason: format!("{arn:?} is not an SNS topic ARN (arn:aws:sns:…)"),
                });
            }
            None => None,
        };
        let pause_minutes = match env.parsed::<u32>("PAUSE_DEFAULT_MINUTES")? {
            Some(minutes @ 1..=Self::MAX_PAUSE_MINUTES) => Some(minutes),
            None => None,
            Some(other) => {
                return Err(ConfigError::Malformed {
                    name: "PAUSE_DEFAULT_MINUTES",
                    reason: format!(
                        "{other} is not between 1 and {} (30 days)",
                        Self::MAX_PAUSE_MINUTES
                    ),
                });
            }
        };
        Ok(Self {
            webhook_secret,
            retell_api_key: env.secret("RETELL_API_KEY")?,
            retell_webhook_api_key: env
                .optional("RETELL_WEBHOOK_API_KEY")
                .map(|key| SecretString::from(key.to_owned())),
            outcome_hook: env.url("OUTCOME_WEBHOOK_URL")?.is_some(),
            alert_topic_arn,
            sns_endpoint_url: env.url("SNS_ENDPOINT_URL")?,
            alert_webhook_url: env.url("STAFF_ALERT_WEBHOOK_URL")?,
            request_human_reply: env
                .optional("REQUEST_HUMAN_REPLY")
                .unwrap_or(Self::DEFAULT_REQUEST_HUMAN_REPLY)
                .to_owned(),
            pause_minutes,
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
    /// What marks a held customer message when the agent hears of it after a pause
    /// (`CONTEXT_CUSTOMER_MARKER`, default `[Cliente]`).
    pub context_customer_marker: String,
    /// What marks a staff message when the agent hears of it (`CONTEXT_STAFF_MARKER`, default
    /// `[Equipo]`).
    pub context_staff_marker: String,
    /// What the agent reads for a message with no text of its own (`MEDIA_MARKERS`).
    pub media_markers: MediaMarkers,
    /// The message types that go to the agent (`AGENT_MESSAGE_TYPES`); the others get
    /// `unsupported_reply`. Reactions are never answered, whatever this says.
    pub agent_message_types: Vec<String>,
    /// How many turns may try to transcribe a voice note before it is taken as unhearable
    /// (`TRANSCRIBE_ATTEMPTS`, default 3, at most `TURN_MAX_ATTEMPTS`: the polite reply must go
    /// out before the message is given up).
    pub transcribe_attempts: u32,
    /// How often "typing…" is shown again while the agent thinks (`TYPING_RENEWAL_SECONDS`,
    /// default 20: WhatsApp drops it after 25 seconds).
    pub typing_renewal: Duration,
}

/// The message types [`EngineConfig::agent_message_types`] may name: those the engine can tell
/// the agent about.
pub const AGENT_MESSAGE_TYPES: [&str; 10] = [
    "text",
    "button",
    "interactive",
    "image",
    "video",
    "document",
    "sticker",
    "location",
    "contacts",
    "audio",
];

/// The word in brackets the agent reads for each kind of message without text of its own:
/// `[imagen] mi casa`, `[documento: contrato.pdf]`, `[nota de voz] <transcript>`.
/// `MEDIA_MARKERS` overrides any of them: `image=foto,audio=audio`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaMarkers {
    pub image: String,
    pub video: String,
    pub document: String,
    pub sticker: String,
    pub location: String,
    pub contacts: String,
    pub audio: String,
}

impl Default for MediaMarkers {
    fn default() -> Self {
        Self {
            image: "imagen".into(),
            video: "video".into(),
            document: "documento".into(),
            sticker: "sticker".into(),
            location: "ubicación".into(),
            contacts: "contacto".into(),
            audio: "nota de voz".into(),
        }
    }
}

impl MediaMarkers {
    /// The defaults with `overrides` (`type=word`, comma-separated) applied.
    fn parse(overrides: &str) -> Result<Self, String> {
        let mut markers = Self::default();
        for pair in overrides
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            let (kind, word) = pair
                .split_once('=')
                .map(|(kind, word)| (kind.trim(), word.trim()))
                .ok_or_else(|| format!("{pair:?} is not `type=word`"))?;
            if word.is_empty() || word.contains(['[', ']']) {
                return Err(format!(
                    "{kind}: give a word without brackets (they are added)"
                ));
            }
            let slot = match kind {
                "image" => &mut markers.image,
                "video" => &mut markers.video,
                "document" => &mut markers.document,
                "sticker" => &mut markers.sticker,
                "location" => &mut markers.location,
                "contacts" => &mut markers.contacts,
                "audio" => &mut markers.audio,
                other => {
                    return Err(format!(
                        "{other:?} is not one of image, video, document, sticker, location, \
                         contacts, audio"
                    ));
                }
            };
            *slot = word.to_owned();
        }
        Ok(markers)
    }
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
        let max_attempts = match env.parsed("TURN_MAX_ATTEMPTS")?.unwrap_or(5) {
            attempts @ 1..=100 => attempts,
            other => {
                return Err(ConfigError::Malformed {
                    name: "TURN_MAX_ATTEMPTS",
                    reason: format!("{other} is not between 1 and 100"),
                });
            }
        };
        let transcribe_attempts = match env.parsed("TRANSCRIBE_ATTEMPTS")?.unwrap_or(3) {
            attempts if (1..=max_attempts).contains(&attempts) => attempts,
            other => {
                return Err(ConfigError::Malformed {
                    name: "TRANSCRIBE_ATTEMPTS",
                    reason: format!(
                        "{other} is not between 1 and TURN_MAX_ATTEMPTS ({max_attempts}): a \
                         voice note must get the polite reply before it is given up"
                    ),
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
            max_attempts,
            carry_over_messages: env.parsed("CARRY_OVER_MESSAGES")?.unwrap_or(10),
            context_customer_marker: text("CONTEXT_CUSTOMER_MARKER", "[Cliente]"),
            context_staff_marker: text("CONTEXT_STAFF_MARKER", "[Equipo]"),
            media_markers: MediaMarkers::parse(env.optional("MEDIA_MARKERS").unwrap_or(""))
                .map_err(|reason| ConfigError::Malformed {
                    name: "MEDIA_MARKERS",
                    reason,
                })?,
            agent_message_types: agent_message_types(env)?,
            transcribe_attempts,
            typing_renewal: match env.parsed("TYPING_RENEWAL_SECONDS")?.unwrap_or(20) {
                seconds @ 1..=24 => Duration::from_secs(seconds),
                other => {
                    return Err(ConfigError::Malformed {
                        name: "TYPING_RENEWAL_SECONDS",
                        reason: format!(
                            "{other} is not between 1 and 24 (WhatsApp drops it after 25)"
                        ),
                    });
                }
            },
        })
    }
}

/// `AGENT_MESSAGE_TYPES`: the types that go to the agent, each one it can be told about.
fn agent_message_types(env: &Env) -> Result<Vec<String>, ConfigError> {
    let Some(listed) = env.optional("AGENT_MESSAGE_TYPES") else {
        return Ok(AGENT_MESSAGE_TYPES.map(str::to_owned).to_vec());
    };
    listed
        .split(',')
        .map(str::trim)
        .filter(|kind| !kind.is_empty())
        .map(|kind| {
            if AGENT_MESSAGE_TYPES.contains(&kind) {
                Ok(kind.to_owned())
            } else {
                Err(ConfigError::Malformed {
                    name: "AGENT_MESSAGE_TYPES",
                    reason: format!(
                        "{kind:?} is not one of {} (reactions are never answered, and \
                         `unsupported` keeps the fixed reply)",
                        AGENT_MESSAGE_TYPES.join(", ")
                    ),
                })
            }
        })
        .collect()
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
    fn the_outcome_hook_needs_its_url_and_a_long_secret_together() {
        let secret = "s".repeat(32);
        let read = |pairs: &[(&str, &str)]| {
            OutcomeHookConfig::from_env(&Env::from_pairs(pairs.iter().copied()))
        };
        assert!(read(&[]).unwrap().is_none());
        let url = ("OUTCOME_WEBHOOK_URL", "https://crm.example.com/hook");
        let hook = read(&[url, ("OUTCOME_WEBHOOK_SECRET", &secret)])
            .unwrap()
            .unwrap();
        assert_eq!(hook.url.as_str(), "https://crm.example.com/hook");
        assert_eq!(
            read(&[url]).unwrap_err(),
            ConfigError::Missing("OUTCOME_WEBHOOK_SECRET")
        );
        assert_eq!(
            read(&[("OUTCOME_WEBHOOK_SECRET", &secret)]).unwrap_err(),
            ConfigError::Missing("OUTCOME_WEBHOOK_URL")
        );
        assert!(matches!(
            read(&[url, ("OUTCOME_WEBHOOK_SECRET", &secret[1..])]),
            Err(ConfigError::Malformed {
                name: "OUTCOME_WEBHOOK_SECRET",
                ..
            })
        ));
    }

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

    fn browser(
        extra: &[(&'static str, &'static str)],
    ) -> Result<Option<BrowserFormConfig>, ConfigError> {
        let mut pairs = vec![
            ("FORM_TURNSTILE_SITE_KEY", "1x00000000000000000000AA"),
            (
                "FORM_TURNSTILE_SECRET",
                "1x0000000000000000000000000000000AA",
            ),
            ("FORM_BUSINESS_NAME", "Seguros Lupita"),
        ];
        pairs.extend_from_slice(extra);
        BrowserFormConfig::from_env(&store_env(&pairs))
    }

    #[test]
    fn browser_forms_are_off_without_a_site_key() {
        let env = store_env(&[("FORM_BUSINESS_NAME", "x"), ("FORM_BRAND_COLOR", "red")]);
        assert!(BrowserFormConfig::from_env(&env).unwrap().is_none());
    }

    #[test]
    fn browser_forms_have_defaults_and_read_every_variable() {
        let config = browser(&[]).unwrap().unwrap();
        assert_eq!(
            config.verify_url.as_str(),
            BrowserFormConfig::DEFAULT_VERIFY_URL
        );
        assert_eq!(
            config.script_url.as_str(),
            BrowserFormConfig::DEFAULT_SCRIPT_URL
        );
        assert!(config.allowed_origins.is_empty());
        assert_eq!(config.limit_per_hour, 5);
        assert_eq!(config.brand_color, "#128c7e");
        assert_eq!((config.logo_url, config.whatsapp_number), (None, None));
        assert!(!format!("{:?}", config.secret).contains("1x0000"));
        assert_eq!(config.consent_text, BrowserFormConfig::DEFAULT_CONSENT_TEXT);

        let config = browser(&[
            (
                "FORM_ALLOWED_ORIGINS",
                " https://www.example.com/ , https://shop.example.mx:8443,",
            ),
            ("FORM_BROWSER_LIMIT_PER_HOUR", "12"),
            ("FORM_BRAND_COLOR", "#FFAA00"),
            ("FORM_LOGO_URL", "https://cdn.example.com/logo.png"),
            ("FORM_CONSENT_TEXT", "Sí, que {business} me escriba."),
            ("FORM_WHATSAPP_NUMBER", "+52 1 55-1234-5678"),
            (
                "FORM_TURNSTILE_VERIFY_URL",
                "http://127.0.0.1:4010/turnstile/v0/siteverify",
            ),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(
            config.allowed_origins,
            ["https://www.example.com", "https://shop.example.mx:8443"]
        );
        assert_eq!(
            config.allowed_hosts(),
            ["www.example.com", "shop.example.mx"]
        );
        assert_eq!(config.limit_per_hour, 12);
        assert_eq!(config.brand_color, "#ffaa00");
        assert_eq!(config.consent(), "Sí, que Seguros Lupita me escriba.");
        assert_eq!(config.whatsapp_number.as_deref(), Some("5215512345678"));
        assert_eq!(config.verify_url.port(), Some(4010));
    }

    #[test]
    fn malformed_browser_variables_are_named() {
        for (name, value) in [
            ("FORM_BRAND_COLOR", "red"),
            ("FORM_BRAND_COLOR", "#12345"),
            ("FORM_BRAND_COLOR", "#12345g"),
            ("FORM_ALLOWED_ORIGINS", "http://www.example.com"),
            ("FORM_ALLOWED_ORIGINS", "https://www.example.com/form"),
            ("FORM_ALLOWED_ORIGINS", "www.example.com"),
            ("FORM_ALLOWED_ORIGINS", "https://a.example.com,*"),
            ("FORM_LOGO_URL", "http://cdn.example.com/logo.png"),
            ("FORM_LOGO_URL", "logo.png"),
            ("FORM_WHATSAPP_NUMBER", "55-CALL-NOW"),
            ("FORM_WHATSAPP_NUMBER", "123"),
            ("FORM_BROWSER_LIMIT_PER_HOUR", "-1"),
            ("FORM_BROWSER_LIMIT_PER_HOUR", "five"),
            ("FORM_TURNSTILE_SCRIPT_URL", "ftp://x/api.js"),
        ] {
            let err = browser(&[(name, value)]).unwrap_err();
            assert!(
                err.to_string().starts_with(&format!("{name} is malformed")),
                "{value}: {err}"
            );
        }
        let only_key = store_env(&[
            ("FORM_TURNSTILE_SITE_KEY", "k"),
            ("FORM_TURNSTILE_SECRET", "s"),
        ]);
        assert_eq!(
            BrowserFormConfig::from_env(&only_key).unwrap_err(),
            ConfigError::Missing("FORM_BUSINESS_NAME")
        );
        let no_secret = store_env(&[
            ("FORM_TURNSTILE_SITE_KEY", "k"),
            ("FORM_BUSINESS_NAME", "B"),
        ]);
        assert_eq!(
            BrowserFormConfig::from_env(&no_secret).unwrap_err(),
            ConfigError::Missing("FORM_TURNSTILE_SECRET")
        );
    }

    #[test]
    fn the_engine_marks_what_it_tells_the_agent_after_a_pause() {
        let engine = EngineConfig::from_env(&Env::default()).unwrap();
        assert_eq!(engine.context_customer_marker, "[Cliente]");
        assert_eq!(engine.context_staff_marker, "[Equipo]");
        let env = Env::from_pairs([
            ("CONTEXT_CUSTOMER_MARKER", "[Customer]"),
            ("CONTEXT_STAFF_MARKER", "[Staff]"),
        ]);
        let engine = EngineConfig::from_env(&env).unwrap();
        assert_eq!(engine.context_customer_marker, "[Customer]");
        assert_eq!(engine.context_staff_marker, "[Staff]");
    }

    #[test]
    fn media_markers_and_agent_types_have_defaults_and_are_checked() {
        let engine = EngineConfig::from_env(&Env::default()).unwrap();
        assert_eq!(engine.media_markers, MediaMarkers::default());
        assert_eq!(engine.media_markers.location, "ubicación");
        assert_eq!(engine.agent_message_types, AGENT_MESSAGE_TYPES.to_vec());
        assert_eq!(engine.transcribe_attempts, 3);
        assert_eq!(engine.typing_renewal, Duration::from_secs(20));

        let env = Env::from_pairs([
            ("MEDIA_MARKERS", "image=foto, audio = audio"),
            ("AGENT_MESSAGE_TYPES", "text, audio"),
            ("TRANSCRIBE_ATTEMPTS", "2"),
            ("TYPING_RENEWAL_SECONDS", "10"),
        ]);
        let engine = EngineConfig::from_env(&env).unwrap();
        assert_eq!(engine.media_markers.image, "foto");
        assert_eq!(engine.media_markers.audio, "audio");
        assert_eq!(
            engine.media_markers.video, "video",
            "the others keep their default"
        );
        assert_eq!(engine.agent_message_types, ["text", "audio"]);
        assert_eq!(engine.transcribe_attempts, 2);
        assert_eq!(engine.typing_renewal, Duration::from_secs(10));

        let refused = |pairs: &[(&'static str, &'static str)]| match EngineConfig::from_env(
            &Env::from_pairs(pairs.iter().copied()),
        ) {
            Err(ConfigError::Malformed { name, .. }) => name,
            other => panic!("{pairs:?}: {other:?}"),
        };
        assert_eq!(refused(&[("MEDIA_MARKERS", "gif=gif")]), "MEDIA_MARKERS");
        assert_eq!(
            refused(&[("MEDIA_MARKERS", "image=[foto]")]),
            "MEDIA_MARKERS"
        );
        assert_eq!(refused(&[("MEDIA_MARKERS", "image")]), "MEDIA_MARKERS");
        assert_eq!(
            refused(&[("AGENT_MESSAGE_TYPES", "text,reaction")]),
            "AGENT_MESSAGE_TYPES"
        );
        assert_eq!(
            refused(&[("TURN_MAX_ATTEMPTS", "2"), ("TRANSCRIBE_ATTEMPTS", "3")]),
            "TRANSCRIBE_ATTEMPTS"
        );
        assert_eq!(
            refused(&[("TYPING_RENEWAL_SECONDS", "25")]),
            "TYPING_RENEWAL_SECONDS"
        );
    }
}
