//! A minimal local Lambda Runtime API (`/2018-06-01/runtime/...`, as documented for custom
//! runtimes), to run a function's real bootstrap binary on this machine as Lambda would: the
//! process is started with Lambda's environment, polls `invocation/next` for an event, and posts
//! the answer to `invocation/{id}/response` (or `/error`; `init/error` when INIT fails).
//!
//! One [`RuntimeApi`] is one function's queue of invocations. Each instance (process, Lambda's
//! execution environment) gets an endpoint of its own, as each sandbox has, and all poll the same
//! queue: several instances are Lambda's scale-out. The API records when each process was
//! started, when it first asked for an event (the end of INIT) and when it first answered, and
//! reads each process's peak RSS. Processes are killed when the API is dropped.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot};

/// The answer a caller waits for at most, as a function's timeout, unless the function has its
/// own ([`LambdaFunction::timeout`]).
const INVOCATION_TIMEOUT: Duration = Duration::from_secs(30);
const REGION: &str = "us-east-1";
const ACCOUNT: &str = "123456789012";

/// A function as Lambda runs it: its bootstrap binary and its own environment.
#[derive(Debug, Clone)]
pub struct LambdaFunction {
    pub name: String,
    pub binary: PathBuf,
    pub env: Vec<(String, String)>,
    /// Where the process's stdout and stderr (its logs) go, appended; else nowhere.
    pub log: Option<PathBuf>,
    /// Its deployed timeout (template.yaml), the deadline each invocation is handed: the
    /// worker plans a turn's steps by the time left. `None`: [`INVOCATION_TIMEOUT`].
    pub timeout: Option<Duration>,
}

/// One invocation, answered.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub body: Bytes,
    /// Whether the function posted to `/error` rather than `/response`.
    pub failed: bool,
    pub queued_at: Instant,
    /// When an instance took it from `invocation/next`.
    pub handed_out_at: Instant,
    pub answered_at: Instant,
}

impl Invocation {
    /// From the moment it was queued to its answer: what API Gateway would wait.
    pub fn latency(&self) -> Duration {
        self.answered_at - self.queued_at
    }

    /// The function's own part: from handing the event out to its answer.
    pub fn service_time(&self) -> Duration {
        self.answered_at - self.handed_out_at
    }
}

/// What one instance's start took.
#[derive(Debug, Clone, Copy)]
pub struct ColdStart {
    /// From exec to the first `invocation/next`: Lambda's INIT.
    pub init: Duration,
    /// From exec to the first answer (`/response` or `/error`), if there was one yet.
    pub first_answer: Option<Duration>,
}

struct QueuedEvent {
    request_id: String,
    event: Bytes,
    queued_at: Instant,
    answer: oneshot::Sender<Invocation>,
}

struct HandedOut {
    queued_at: Instant,
    handed_out_at: Instant,
    answer: oneshot::Sender<Invocation>,
}

/// What every endpoint of a function shares: the queue and the invocations handed out.
struct Invocations {
    function_arn: String,
    /// The function's timeout: each invocation's deadline, and how long a caller waits.
    timeout: Duration,
    /// One poller at a time waits on the queue; the tokio mutex hands it over in order.
    queue: tokio::sync::Mutex<mpsc::UnboundedReceiver<QueuedEvent>>,
    handed_out: Mutex<HashMap<String, HandedOut>>,
    init_errors: Mutex<Vec<String>>,
}

/// One instance's endpoint: its own server, and its moments.
struct Endpoint {
    invocations: Arc<Invocations>,
    /// When its process was started (or the endpoint opened, without one).
    started: OnceLock<Instant>,
    first_next: OnceLock<Instant>,
    first_answer: OnceLock<Instant>,
}

struct Instance {
    address: SocketAddr,
    endpoint: Arc<Endpoint>,
    server: tokio::task::JoinHandle<()>,
    process: Option<Child>,
    log: Option<PathBuf>,
}

pub struct RuntimeApi {
    invocations: Arc<Invocations>,
    queue: mpsc::UnboundedSender<QueuedEvent>,
    instances: Vec<Instance>,
    next_request: AtomicU64,
}

impl RuntimeApi {
    /// An API with no instance yet.
    pub fn new(function_name: &str) -> RuntimeApi {
        Self::with_timeout(function_name, INVOCATION_TIMEOUT)
    }

    fn with_timeout(function_name: &str, timeout: Duration) -> RuntimeApi {
        let (queue, events) = mpsc::unbounded_channel();
        RuntimeApi {
            invocations: Arc::new(Invocations {
                function_arn: format!("arn:aws:lambda:{REGION}:{ACCOUNT}:function:{function_name}"),
                timeout,
                queue: tokio::sync::Mutex::new(events),
                handed_out: Mutex::default(),
                init_errors: Mutex::default(),
            }),
            queue,
            instances: Vec::new(),
            next_request: AtomicU64::new(1),
        }
    }

    /// `instances` processes of `function`, started now, each with its own endpoint. Does not
    /// wait for their INIT: see [`Self::wait_until_initialized`].
    pub async fn start(function: &LambdaFunction, instances: usize) -> Result<RuntimeApi> {
        let timeout = function.timeout.unwrap_or(INVOCATION_TIMEOUT);
        let mut api = RuntimeApi::with_timeout(&function.name, timeout);
        for _ in 0..instances {
            api.spawn_instance(function).await?;
        }
        Ok(api)
    }

    /// An endpoint with no process behind it, for a runtime client of the caller's own (the
    /// tests): its `AWS_LAMBDA_RUNTIME_API` value, `127.0.0.1:<port>`.
    pub async fn open_endpoint(&mut self) -> Result<String> {
        let index = self.open_instance().await?;
        let instance = &self.instances[index];
        instance.endpoint.started.get_or_init(Instant::now);
        Ok(instance.address.to_string())
    }

    /// Starts one more process of `function` on an endpoint of its own.
    pub async fn spawn_instance(&mut self, function: &LambdaFunction) -> Result<()> {
        let index = self.open_instance().await?;
        let instance = &mut self.instances[index];
        let mut command = Command::new(&function.binary);
        // Lambda's environment and the function's own, nothing of ours.
        command
            .env_clear()
            .envs(lambda_environment(&function.name, instance.address))
            .envs(function.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .kill_on_drop(true);
        match &function.log {
            Some(path) => {
                let log = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .with_context(|| format!("opening {}", path.display()))?;
                command.stdout(log.try_clone()?).stderr(log);
            }
            None => {
                command.stdout(Stdio::null()).stderr(Stdio::null());
            }
        }
        // The clock of its cold start starts at exec.
        instance.endpoint.started.get_or_init(Instant::now);
        let child = command
            .spawn()
            .with_context(|| format!("starting {}", function.binary.display()))?;
        instance.process = Some(child);
        instance.log = function.log.clone();
        Ok(())
    }

    async fn open_instance(&mut self) -> Result<usize> {
        let endpoint = Arc::new(Endpoint {
            invocations: self.invocations.clone(),
            started: OnceLock::new(),
            first_next: OnceLock::new(),
            first_answer: OnceLock::new(),
        });
        let (address, server) = serve(endpoint.clone()).await?;
        self.instances.push(Instance {
            address,
            endpoint,
            server,
            process: None,
            log: None,
        });
        Ok(self.instances.len() - 1)
    }

    /// Waits until every process has asked for its first event, and fails when one exits or
    /// reports an INIT error first.
    pub async fn wait_until_initialized(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(error) = self.invocations.init_errors.lock().unwrap().first() {
                bail!("INIT failed: {error}");
            }
            let mut waiting = false;
            for instance in &mut self.instances {
                if instance.endpoint.first_next.get().is_some() {
                    continue;
                }
                if let Some(process) = &mut instance.process {
                    if let Some(status) = process.try_wait()? {
                        let log = instance.log.as_ref().map_or(String::new(), |log| {
                            format!("; its output is in {}", log.display())
                        });
                        bail!("an instance exited ({status}) during INIT{log}");
                    }
                    waiting = true;
                }
            }
            if !waiting {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!("INIT took longer than {timeout:?}");
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
    }

    /// Queues `event` for the next instance that asks and waits for its answer.
    pub async fn invoke(&self, event: impl Into<Bytes>) -> Result<Invocation> {
        let (answer, answered) = oneshot::channel();
        let request_id = format!(
            "00000000-0000-4000-8000-{:012}",
            self.next_request.fetch_add(1, Ordering::Relaxed)
        );
        self.queue
            .send(QueuedEvent {
                request_id: request_id.clone(),
                event: event.into(),
                queued_at: Instant::now(),
                answer,
            })
            .context("the runtime API is gone")?;
        let timeout = self.invocations.timeout;
        match tokio::time::timeout(timeout, answered).await {
            Ok(Ok(invocation)) => Ok(invocation),
            Ok(Err(_)) => bail!("invocation {request_id} was dropped unanswered"),
            Err(_) => bail!("invocation {request_id} unanswered after {timeout:?}"),
        }
    }

    /// Each process's INIT and first answer, in the order they were started.
    pub fn cold_starts(&self) -> Vec<ColdStart> {
        self.instances
            .iter()
            .filter(|instance| instance.process.is_some())
            .filter_map(|instance| {
                let endpoint = &instance.endpoint;
                let started = *endpoint.started.get()?;
                Some(ColdStart {
                    init: *endpoint.first_next.get()? - started,
                    first_answer: endpoint.first_answer.get().map(|at| *at - started),
                })
            })
            .collect()
    }

    /// The peak resident set (`VmHWM`) of each live process, in bytes.
    pub fn peak_rss(&self) -> Vec<u64> {
        self.instances
            .iter()
            .filter_map(|instance| instance.process.as_ref()?.id())
            .filter_map(|pid| {
                let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
                let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
                let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
                Some(kib * 1024)
            })
            .collect()
    }

    /// The CPU time (user and system) the live processes have used so far, together: what the
    /// functions themselves cost, apart from the services they wait for.
    pub fn cpu_time(&self) -> Duration {
        let ticks: u64 = self
            .instances
            .iter()
            .filter_map(|instance| instance.process.as_ref()?.id())
            .filter_map(|pid| {
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
                // After the command name in parentheses: state is field 3, utime 14, stime 15.
                let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
                Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
            })
            .sum();
        // Linux counts in USER_HZ, 100 per second on every architecture it exposes to users.
        Duration::from_millis(ticks * 10)
    }

    /// The INIT errors the processes reported (`init/error`).
    pub fn init_errors(&self) -> Vec<String> {
        self.invocations.init_errors.lock().unwrap().clone()
    }
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        for instance in &mut self.instances {
            if let Some(process) = &mut instance.process {
                let _ = process.start_kill();
            }
            instance.server.abort();
        }
    }
}

/// What Lambda sets in every function's environment (dummy credentials: nothing here calls AWS
/// itself).
fn lambda_environment(function_name: &str, runtime_api: SocketAddr) -> Vec<(String, String)> {
    [
        ("AWS_LAMBDA_RUNTIME_API", runtime_api.to_string()),
        ("AWS_LAMBDA_FUNCTION_NAME", function_name.to_owned()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128".to_owned()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".to_owned()),
        (
            "AWS_LAMBDA_LOG_GROUP_NAME",
            format!("/aws/lambda/{function_name}"),
        ),
        (
            "AWS_LAMBDA_LOG_STREAM_NAME",
            "2026/01/01/[$LATEST]0123456789abcdef".to_owned(),
        ),
        ("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand".to_owned()),
        ("AWS_EXECUTION_ENV", "AWS_Lambda_provided.al2023".to_owned()),
        ("AWS_REGION", REGION.to_owned()),
        ("AWS_DEFAULT_REGION", REGION.to_owned()),
        ("AWS_ACCESS_KEY_ID", "ASIABENCHMARKDUMMY".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "benchmark-dummy-secret".to_owned()),
        ("AWS_SESSION_TOKEN", "benchmark-dummy-token".to_owned()),
        ("LAMBDA_TASK_ROOT", "/var/task".to_owned()),
        ("LAMBDA_RUNTIME_DIR", "/var/runtime".to_owned()),
        ("LANG", "en_US.UTF-8".to_owned()),
        ("TZ", ":UTC".to_owned()),
        ("PATH", "/usr/local/bin:/usr/bin:/bin".to_owned()),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_owned(), value))
    .collect()
}

/// The runtime API for one instance, on a port of its own.
async fn serve(endpoint: Arc<Endpoint>) -> Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding the runtime API to a loopback port")?;
    let address = listener.local_addr()?;
    let router = Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next_invocation))
        .route(
            "/2018-06-01/runtime/invocation/{request_id}/response",
            post(invocation_response),
        )
        .route(
            "/2018-06-01/runtime/invocation/{request_id}/error",
            post(invocation_error),
        )
        .route("/2018-06-01/runtime/init/error", post(init_error))
        .with_state(endpoint);
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Ok((address, server))
}

async fn next_invocation(State(endpoint): State<Arc<Endpoint>>) -> Response {
    endpoint.first_next.get_or_init(Instant::now);
    let queued = {
        let mut queue = endpoint.invocations.queue.lock().await;
        loop {
            match queue.recv().await {
                // Its caller stopped waiting (timed out): nobody wants it run any more.
                Some(queued) if queued.answer.is_closed() => continue,
                queued => break queued,
            }
        }
    };
    let Some(queued) = queued else {
        return (StatusCode::GONE, "the runtime API is shutting down").into_response();
    };
    let handed_out_at = Instant::now();
    let deadline_ms = (SystemTime::now() + endpoint.invocations.timeout)
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    let trace_id = format!(
        "Root=1-{:08x}-{:024x};Parent={:016x};Sampled=0",
        deadline_ms / 1000,
        fastrand::u128(..) >> 32,
        fastrand::u64(..)
    );
    let mut headers = HeaderMap::new();
    for (name, value) in [
        ("lambda-runtime-aws-request-id", queued.request_id.clone()),
        ("lambda-runtime-deadline-ms", deadline_ms.to_string()),
        (
            "lambda-runtime-invoked-function-arn",
            endpoint.invocations.function_arn.clone(),
        ),
        ("lambda-runtime-trace-id", trace_id),
        ("content-type", "application/json".to_owned()),
    ] {
        headers.insert(name, value.parse().expect("a valid header value"));
    }
    endpoint.invocations.handed_out.lock().unwrap().insert(
        queued.request_id,
        HandedOut {
            queued_at: queued.queued_at,
            handed_out_at,
            answer: queued.answer,
        },
    );
    (headers, queued.event).into_response()
}

async fn invocation_response(
    State(endpoint): State<Arc<Endpoint>>,
    Path(request_id): Path<String>,
    body: Bytes,
) -> Response {
    answer(&endpoint, &request_id, body, false)
}

async fn invocation_error(
    State(endpoint): State<Arc<Endpoint>>,
    Path(request_id): Path<String>,
    body: Bytes,
) -> Response {
    answer(&endpoint, &request_id, body, true)
}

fn answer(endpoint: &Endpoint, request_id: &str, body: Bytes, failed: bool) -> Response {
    let answered_at = Instant::now();
    endpoint.first_answer.get_or_init(|| answered_at);
    let Some(handed_out) = endpoint
        .invocations
        .handed_out
        .lock()
        .unwrap()
        .remove(request_id)
    else {
        return (StatusCode::BAD_REQUEST, "unknown request id").into_response();
    };
    // The caller may have stopped waiting; the answer is then simply dropped.
    let _ = handed_out.answer.send(Invocation {
        body,
        failed,
        queued_at: handed_out.queued_at,
        handed_out_at: handed_out.handed_out_at,
        answered_at,
    });
    (StatusCode::ACCEPTED, r#"{"status":"OK"}"#).into_response()
}

async fn init_error(State(endpoint): State<Arc<Endpoint>>, body: Bytes) -> Response {
    endpoint
        .invocations
        .init_errors
        .lock()
        .unwrap()
        .push(String::from_utf8_lossy(&body).into_owned());
    (StatusCode::ACCEPTED, r#"{"status":"OK"}"#).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The protocol, with reqwest as the runtime client a bootstrap has.
    #[tokio::test]
    async fn an_event_goes_out_on_next_and_its_answer_comes_back() {
        let mut api = RuntimeApi::new("hello");
        let runtime = api.open_endpoint().await.unwrap();
        let base = format!("http://{runtime}/2018-06-01/runtime");
        let client = reqwest::Client::new();
        let api = Arc::new(api);

        let invoking = tokio::spawn({
            let api = api.clone();
            async move { api.invoke(r#"{"hello":"world"}"#).await }
        });
        let next = client
            .get(format!("{base}/invocation/next"))
            .send()
            .await
            .unwrap();
        assert_eq!(next.status(), 200);
        let header = |name: &str| next.headers()[name].to_str().unwrap().to_owned();
        let request_id = header("lambda-runtime-aws-request-id");
        assert!(header("lambda-runtime-deadline-ms").parse::<u64>().unwrap() > 0);
        assert_eq!(
            header("lambda-runtime-invoked-function-arn"),
            "arn:aws:lambda:us-east-1:123456789012:function:hello"
        );
        assert!(header("lambda-runtime-trace-id").starts_with("Root=1-"));
        assert_eq!(next.text().await.unwrap(), r#"{"hello":"world"}"#);

        let posted = client
            .post(format!("{base}/invocation/{request_id}/response"))
            .body("hi")
            .send()
            .await
            .unwrap();
        assert_eq!(posted.status(), 202);
        let invocation = invoking.await.unwrap().unwrap();
        assert_eq!(&invocation.body[..], b"hi");
        assert!(!invocation.failed);
        assert!(invocation.latency() >= invocation.service_time());

        // An error answer is an answer too; an unknown id is refused.
        let invoking = tokio::spawn({
            let api = api.clone();
            async move { api.invoke("{}").await }
        });
        let next = client
            .get(format!("{base}/invocation/next"))
            .send()
            .await
            .unwrap();
        let request_id = next.headers()["lambda-runtime-aws-request-id"]
            .to_str()
            .unwrap()
            .to_owned();
        let unknown = client
            .post(format!("{base}/invocation/not-a-request/response"))
            .send()
            .await
            .unwrap();
        assert_eq!(unknown.status(), 400);
        client
            .post(format!("{base}/invocation/{request_id}/error"))
            .body(r#"{"errorType":"Oops","errorMessage":"no"}"#)
            .send()
            .await
            .unwrap();
        assert!(invoking.await.unwrap().unwrap().failed);

        client
            .post(format!("{base}/init/error"))
            .body(r#"{"errorType":"Runtime.InitError","errorMessage":"SUPABASE_URL is not set"}"#)
            .send()
            .await
            .unwrap();
        assert!(api.init_errors()[0].contains("SUPABASE_URL"));
    }

    /// A process started with Lambda's environment: `env` standing in for a bootstrap prints
    /// what it was given and exits; its INIT never ends, and waiting for it says so.
    #[tokio::test]
    async fn a_process_that_exits_during_init_is_reported() {
        let dir = std::env::temp_dir().join(format!("runtime-api-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("env.log");
        let function = LambdaFunction {
            name: "printenv".into(),
            binary: PathBuf::from("/usr/bin/env"),
            env: vec![("OWN_SETTING".into(), "yes".into())],
            log: Some(log.clone()),
            timeout: None,
        };
        let mut api = RuntimeApi::start(&function, 1).await.unwrap();
        let error = api
            .wait_until_initialized(Duration::from_secs(10))
            .await
            .unwrap_err();
        assert!(error.to_string().contains("exited"), "{error:#}");
        let env = std::fs::read_to_string(&log).unwrap();
        assert!(env.contains("AWS_LAMBDA_RUNTIME_API=127.0.0.1:"), "{env}");
        assert!(env.contains("AWS_LAMBDA_FUNCTION_NAME=printenv"), "{env}");
        assert!(env.contains("OWN_SETTING=yes"), "{env}");
        assert!(
            !env.contains("CARGO"),
            "the harness's environment leaked: {env}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
