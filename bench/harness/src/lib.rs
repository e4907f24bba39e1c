//! `make bench`: the functions' release binaries run under a local Lambda Runtime API against
//! the local stack (PostgreSQL behind `postrust`), moto's SQS and the Retell, Graph and
//! transcription stand-ins, all on loopback. It measures ingress latency under load, the worker's
//! own time per turn (of a text, and of a voice note) and its database round trips, cold starts against a hello-world function, binary sizes
//! and peak memory, and reports them beside the product's targets. Benchmarks report; they
//! never fail on a missed target.

mod cold_start;
mod ingress;
mod instant_secrets;
mod instant_sqs;
pub mod report;
pub mod runtime_api;
pub mod worker;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use serde::Serialize;

use crate::runtime_api::LambdaFunction;
use instant_secrets::InstantSecrets;
use instant_sqs::InstantSqs;
use sandbox::moto::MotoServer;
use sandbox::{
    GraphStandIn, LocalStack, RetellStandIn, TranscribeStandIn, graph_standin, retell_standin,
    transcribe_standin,
};

pub use cold_start::ColdStartReport;
pub use report::Report;

/// The functions measured, as their binaries are named.
pub const WHATSAPP_INBOUND: &str = "whatsapp-inbound";
pub const FORM_INTAKE: &str = "form-intake";
pub const CONVERSATION_WORKER: &str = "conversation-worker";
/// The baseline of the cold starts: a hello-world `lambda_http` function.
pub const HELLO_LAMBDA: &str = "hello-lambda";

const APP_SECRET: &str = "bench-app-secret";
/// The token the verification fixture echoes.
const VERIFY_TOKEN: &str = "standin-verify-token";
const FORM_SECRET: &str = "bench-form-secret-of-32-characters";
/// The worker's Timeout in template.yaml: the time a turn plans its steps by (a voice note's
/// transcription gets what the completion and the reply leave of it).
const WORKER_TIMEOUT: Duration = Duration::from_secs(180);
/// Time for a process's INIT before it counts as failed.
const INIT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the binaries are and where the results go.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The release build of the functions and of `hello-lambda` (`target/release`).
    pub binaries: PathBuf,
    /// Cross-built Lambda bootstraps (`target/lambda`), reported when present.
    pub lambda_bootstraps: PathBuf,
    /// `report.json` and the functions' logs (`target/bench`).
    pub output: PathBuf,
    /// Fewer and shorter runs, to try the harness itself.
    pub quick: bool,
}

/// Everything the functions talk to, started once for the whole run.
pub struct Bench {
    settings: Settings,
    stack: LocalStack,
    retell: RetellStandIn,
    graph: GraphStandIn,
    transcribe: TranscribeStandIn,
    moto: MotoServer,
    _instant_sqs: InstantSqs,
    /// The FIFO queue of turns on moto, and on the instant SQS.
    queues: [TurnQueue; 2],
}

/// An SQS the ingress functions send their jobs to.
#[derive(Debug, Clone)]
pub struct TurnQueue {
    pub name: &'static str,
    pub queue_url: String,
    pub endpoint_url: String,
}

impl TurnQueue {
    fn is_moto(&self) -> bool {
        self.name == MOTO
    }
}

const MOTO: &str = "moto";
const INSTANT_SQS: &str = "instant";

impl Bench {
    pub async fn set_up(settings: Settings) -> Result<Bench> {
        prepare(&settings)?;
        let stack = LocalStack::start().context("starting the local stack")?;
        let moto = MotoServer::start().context("starting moto's SQS server")?;
        let instant_sqs = InstantSqs::start();
        let queues = [
            TurnQueue {
                name: MOTO,
                queue_url: moto.create_fifo_queue("bench-turns").await,
                endpoint_url: moto.endpoint_url(),
            },
            TurnQueue {
                name: INSTANT_SQS,
                queue_url: instant_sqs.queue_url(),
                endpoint_url: instant_sqs.endpoint_url(),
            },
        ];
        Ok(Bench {
            settings,
            stack,
            retell: RetellStandIn::start(),
            graph: GraphStandIn::start(),
            transcribe: TranscribeStandIn::start(),
            moto,
            _instant_sqs: instant_sqs,
            queues,
        })
    }

    /// Runs every measurement, printing progress on stderr.
    pub async fn run(&self) -> Result<Report> {
        let machine = report::Machine::describe();
        eprintln!("bench: ingress under load");
        let ingress = ingress::measure(self).await?;
        eprintln!("bench: the worker's own time per turn");
        let worker = worker::measure(self).await?;
        eprintln!("bench: cold starts");
        let services = Services {
            rest_url: &self.stack.rest_url,
            service_role_key: &self.stack.service_role_key,
            queue: &self.queues[0],
            retell: self.retell.config(),
            whatsapp: self.graph.config(),
            transcribe: self.transcribe.config(),
        };
        let secrets = InstantSecrets::start(services.secret_string());
        let cold_starts = cold_start::measure(self.quick(), |name, with_secret| {
            let secret = with_secret.then_some(&secrets);
            lambda_function(&self.settings, name, &services, secret)
        })
        .await?;
        let sizes = report::Sizes::read(&self.settings.binaries, &self.settings.lambda_bootstraps);
        Ok(Report::new(machine, ingress, worker, cold_starts, sizes))
    }

    /// The worker's figures alone (`bench --worker-only`).
    pub async fn measure_worker(&self) -> Result<worker::WorkerReport> {
        worker::measure(self).await
    }

    /// `name`'s release binary with the environment its deployment gives it, pointed at the
    /// local services: `rest_url` for the store (the stack's, or a proxy in front of it), and
    /// moto for the queue.
    fn function(&self, name: &str, rest_url: &str) -> LambdaFunction {
        self.function_on(name, rest_url, &self.queues[0])
    }

    /// [`Self::function`] with the ingress functions sending to `queue`.
    fn function_on(&self, name: &str, rest_url: &str, queue: &TurnQueue) -> LambdaFunction {
        let services = Services {
            rest_url,
            service_role_key: &self.stack.service_role_key,
            queue,
            retell: self.retell.config(),
            whatsapp: self.graph.config(),
            transcribe: self.transcribe.config(),
        };
        lambda_function(&self.settings, name, &services, None)
    }

    fn quick(&self) -> bool {
        self.settings.quick
    }
}

/// `bench --cold-start-only`: the cold starts alone, without the local stack or moto. INIT
/// reaches no network, and the first events (a verification GET, a preflight, an empty batch)
/// touch neither the store nor the queue, so the functions are pointed at an address nothing
/// answers; the Retell, Graph and transcription stand-ins (in-process) give the worker its
/// configuration. Each
/// function starts twice: with its secrets in the environment, and reading them from a Secrets
/// Manager stand-in (`BRIDGE_SECRET_ID`), as deployed.
pub async fn measure_cold_starts(settings: &Settings) -> Result<ColdStartReport> {
    prepare(settings)?;
    let (retell, graph, transcribe) = (
        RetellStandIn::start(),
        GraphStandIn::start(),
        TranscribeStandIn::start(),
    );
    let queue = TurnQueue {
        name: "none",
        queue_url: format!("http://{NOTHING_ANSWERS}/123456789012/bench-turns.fifo"),
        endpoint_url: format!("http://{NOTHING_ANSWERS}"),
    };
    let rest_url = format!("http://{NOTHING_ANSWERS}/rest/v1");
    let services = Services {
        rest_url: &rest_url,
        // A JWT's shape, as the stack's key has: the store client treats it alike.
        service_role_key: "eyJhbGciOiJIUzI1NiJ9.eyJyb2xlIjoic2VydmljZV9yb2xlIn0.bm90LWEta2V5",
        queue: &queue,
        retell: retell.config(),
        whatsapp: graph.config(),
        transcribe: transcribe.config(),
    };
    let secrets = InstantSecrets::start(services.secret_string());
    cold_start::measure(settings.quick, |name, with_secret| {
        lambda_function(settings, name, &services, with_secret.then_some(&secrets))
    })
    .await
}

/// The discard port: nothing listens there.
const NOTHING_ANSWERS: &str = "127.0.0.1:9";

/// Checks that the binaries are built and makes the output directory.
fn prepare(settings: &Settings) -> Result<()> {
    for name in [
        WHATSAPP_INBOUND,
        FORM_INTAKE,
        CONVERSATION_WORKER,
        HELLO_LAMBDA,
    ] {
        let binary = settings.binaries.join(name);
        ensure!(
            binary.exists(),
            "{} is missing: build it first (cargo build --release -p {name})",
            binary.display()
        );
    }
    std::fs::create_dir_all(settings.output.join("logs"))
        .with_context(|| format!("creating {}", settings.output.display()))
}

/// What a function's environment points it at.
struct Services<'a> {
    rest_url: &'a str,
    service_role_key: &'a str,
    queue: &'a TurnQueue,
    retell: shared::config::RetellConfig,
    whatsapp: shared::config::WhatsAppConfig,
    transcribe: shared::config::TranscribeConfig,
}

impl Services<'_> {
    /// The deployment's secret: every function's secrets, by their variables' names.
    fn secret_string(&self) -> String {
        serde_json::json!({
            "SUPABASE_SERVICE_ROLE_KEY": self.service_role_key,
            "RETELL_API_KEY": retell_standin::API_KEY,
            "WHATSAPP_ACCESS_TOKEN": graph_standin::ACCESS_TOKEN,
            "WHATSAPP_APP_SECRET": APP_SECRET,
            "WHATSAPP_VERIFY_TOKEN": VERIFY_TOKEN,
            "FORM_SHARED_SECRET": FORM_SECRET,
            "TRANSCRIBE_API_KEY": transcribe_standin::API_KEY,
        })
        .to_string()
    }
}

/// `name`'s release binary with the environment its deployment gives it, pointed at `services`.
/// With `secret`, its secrets are not in the environment: it reads them at INIT from that
/// stand-in, as deployed (`BRIDGE_SECRET_ID`).
fn lambda_function(
    settings: &Settings,
    name: &str,
    services: &Services<'_>,
    secret: Option<&InstantSecrets>,
) -> LambdaFunction {
    let mut env: Vec<(&str, String)> = vec![
        ("SUPABASE_REST_URL", services.rest_url.to_owned()),
        (
            "SUPABASE_SERVICE_ROLE_KEY",
            services.service_role_key.to_owned(),
        ),
        // What Lambda sets from the template's LogLevel (default INFO).
        ("AWS_LAMBDA_LOG_LEVEL", "INFO".to_owned()),
    ];
    let queue = [
        ("TURN_QUEUE_URL", services.queue.queue_url.clone()),
        ("SQS_ENDPOINT_URL", services.queue.endpoint_url.clone()),
    ];
    match name {
        WHATSAPP_INBOUND => {
            env.extend(queue);
            env.push(("WHATSAPP_APP_SECRET", APP_SECRET.to_owned()));
            env.push(("WHATSAPP_VERIFY_TOKEN", VERIFY_TOKEN.to_owned()));
            env.push((
                "WHATSAPP_PHONE_NUMBER_ID",
                graph_standin::PHONE_NUMBER_ID.to_owned(),
            ));
        }
        FORM_INTAKE => {
            env.extend(queue);
            env.push(("FORM_SHARED_SECRET", FORM_SECRET.to_owned()));
            env.push(("FORM_DEFAULT_COUNTRY", "MX".to_owned()));
            env.push(("FORM_FIELDS", "producto".to_owned()));
            // Every form accepted and queued, as the path measured has always been: no cooldown
            // (the run cycles through its customers), and a limit the run cannot reach.
            env.push(("OUTREACH_COOLDOWN_HOURS", "0".to_owned()));
            env.push(("OUTREACH_DAILY_LIMIT", "1000000000".to_owned()));
        }
        CONVERSATION_WORKER => {
            let (retell, whatsapp) = (services.retell.clone(), services.whatsapp.clone());
            let transcribe = services.transcribe.clone();
            // Where it gives failed records back and the sweeper queues.
            env.extend(queue);
            env.extend([
                ("RETELL_API_KEY", retell_standin::API_KEY.to_owned()),
                ("RETELL_AGENT_ID", retell.agent_id),
                ("RETELL_BASE_URL", retell.base_url),
                (
                    "WHATSAPP_ACCESS_TOKEN",
                    graph_standin::ACCESS_TOKEN.to_owned(),
                ),
                ("WHATSAPP_PHONE_NUMBER_ID", whatsapp.phone_number_id),
                ("WHATSAPP_GRAPH_URL", whatsapp.graph_url),
                ("WHATSAPP_API_VERSION", whatsapp.api_version),
                ("WHATSAPP_TEMPLATE_NAME", whatsapp.template_name),
                ("WHATSAPP_TEMPLATE_LANGUAGE", whatsapp.template_language),
                // Voice notes transcribed, as a deployment that sets TRANSCRIBE_URL does.
                ("TRANSCRIBE_URL", transcribe.url),
                ("TRANSCRIBE_API_KEY", transcribe_standin::API_KEY.to_owned()),
                ("TRANSCRIBE_MODEL", transcribe.model),
            ]);
        }
        _ => env.clear(), // hello-lambda reads nothing
    }
    if let Some(secret) = secret.filter(|_| !env.is_empty()) {
        env.retain(|(name, _)| !shared::secrets::SECRET_VARIABLES.contains(name));
        env.extend([
            (
                shared::secrets::SECRET_ID_VARIABLE,
                instant_secrets::SECRET_ID.to_owned(),
            ),
            (shared::secrets::ENDPOINT_VARIABLE, secret.endpoint_url()),
            // What Lambda hands the role's credentials and the region over in.
            ("AWS_ACCESS_KEY_ID", "ASIABENCHBENCHBENCH0".to_owned()),
            (
                "AWS_SECRET_ACCESS_KEY",
                "bench-secret-access-key".to_owned(),
            ),
            ("AWS_SESSION_TOKEN", "bench-session-token".to_owned()),
            ("AWS_REGION", "us-east-1".to_owned()),
        ]);
    }
    LambdaFunction {
        name: name.to_owned(),
        binary: settings.binaries.join(name),
        env: env
            .into_iter()
            .map(|(name, value)| (name.to_owned(), value))
            .collect(),
        log: Some(settings.output.join("logs").join(format!("{name}.log"))),
        timeout: (name == CONVERSATION_WORKER).then_some(WORKER_TIMEOUT),
    }
}

/// A latency distribution: percentiles, and the samples for the chart.
#[derive(Debug, Clone, Serialize)]
pub struct Distribution {
    pub count: usize,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
    /// Every sample, sorted, in milliseconds.
    pub samples_ms: Vec<f64>,
}

impl Distribution {
    pub fn of(samples: impl IntoIterator<Item = Duration>) -> Distribution {
        let mut samples_ms: Vec<f64> = samples.into_iter().map(millis).collect();
        samples_ms.sort_by(f64::total_cmp);
        let count = samples_ms.len();
        let mean_ms = if count == 0 {
            0.0
        } else {
            samples_ms.iter().sum::<f64>() / count as f64
        };
        Distribution {
            count,
            p50_ms: percentile(&samples_ms, 50.0),
            p90_ms: percentile(&samples_ms, 90.0),
            p99_ms: percentile(&samples_ms, 99.0),
            max_ms: samples_ms.last().copied().unwrap_or(0.0),
            mean_ms,
            samples_ms,
        }
    }
}

/// The nearest-rank percentile of sorted samples (0 for none).
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// An API Gateway (HTTP API, payload 2.0) event from one of the functions' test fixtures.
fn fixture(path: &str) -> Result<serde_json::Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// The status code of a `lambda_http` answer (`{"statusCode": 200, …}`), 0 if it has none.
fn status_code(body: &[u8]) -> u16 {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|answer| answer["statusCode"].as_u64())
        .map_or(0, |status| status as u16)
}

/// The peak of the processes' resident sets in MB as Lambda counts them (MiB, its "Max Memory
/// Used").
fn peak_rss_mb(peaks: &[u64]) -> f64 {
    peaks.iter().copied().max().unwrap_or(0) as f64 / (1024.0 * 1024.0)
}
