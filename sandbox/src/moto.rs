//! moto's SQS-compatible server (`moto_server`, from PyPI's `moto[server]`) on a free local port,
//! for the tests of the SQS adapter.
//!
//! A janitor process stops the server when its [`MotoServer`] is dropped or this process exits,
//! for whatever reason (a failed test included), as the local stack's does.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use aws_sdk_sqs::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_sqs::types::QueueAttributeName;

use crate::process::{Janitor, answers_http, free_port, shell_quote, which};

const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// moto takes any credentials; the SDK wants some to sign with.
const DUMMY_ACCESS_KEY: &str = "testing";
const DUMMY_SECRET_KEY: &str = "testing";
pub const REGION: &str = "us-east-1";

pub struct MotoServer {
    port: u16,
    dir: PathBuf,
    server: Child,
    janitor: Option<Janitor>,
}

impl MotoServer {
    /// The server this test process shares, started on first use. It lives until the process
    /// exits; give each test queues of its own.
    pub fn shared() -> &'static MotoServer {
        static SHARED: OnceLock<MotoServer> = OnceLock::new();
        SHARED.get_or_init(|| {
            Self::start().unwrap_or_else(|e| panic!("could not start moto's server: {e:#}"))
        })
    }

    /// Starts a server of one's own; dropping it stops it. Blocks until it answers HTTP
    /// (under a second here).
    pub fn start() -> Result<MotoServer> {
        let started = Instant::now();
        let program = moto_server_binary()?;
        let port = free_port()?;
        let dir = std::env::temp_dir().join(format!("bridge-moto-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        // The janitor first: from here on it owns the cleanup, whatever happens next.
        let quoted = shell_quote(&dir.display().to_string());
        let janitor = Janitor::spawn(
            &format!(
                "[ -f {quoted}/moto.pid ] && kill $(cat {quoted}/moto.pid) 2>/dev/null; rm -rf {quoted}"
            ),
            "moto_server",
        )?;
        let log = std::fs::File::create(dir.join("moto.log"))?;
        let server = Command::new(&program)
            .args(["-p", &port.to_string(), "-H", "127.0.0.1"])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", program.display()));
        let server = server?; // on error the janitor, dropped, removes the directory
        let mut moto = MotoServer {
            port,
            dir,
            server,
            janitor: Some(janitor),
        };
        // The janitor stops it by this pid.
        std::fs::write(moto.dir.join("moto.pid"), moto.server.id().to_string())?;
        moto.wait_until_up()?;
        eprintln!(
            "moto_server up in {:?} at {}",
            started.elapsed(),
            moto.endpoint_url()
        );
        Ok(moto)
    }

    /// The SQS endpoint, `http://127.0.0.1:<port>`.
    pub fn endpoint_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// An SQS client for this server: region `us-east-1`, static dummy credentials.
    pub async fn sqs_client(&self) -> aws_sdk_sqs::Client {
        let config = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::from_static(REGION))
            .credentials_provider(Credentials::new(
                DUMMY_ACCESS_KEY,
                DUMMY_SECRET_KEY,
                None,
                None,
                "moto",
            ))
            .endpoint_url(self.endpoint_url())
            .load()
            .await;
        aws_sdk_sqs::Client::new(&config)
    }

    /// Creates a FIFO queue (`.fifo` is appended to `name` when missing) with explicit
    /// deduplication ids (no content-based deduplication) and returns its URL. Panics, saying
    /// why, when moto refuses.
    pub async fn create_fifo_queue(&self, name: &str) -> String {
        let name = if name.ends_with(".fifo") {
            name.to_owned()
        } else {
            format!("{name}.fifo")
        };
        let output = self
            .sqs_client()
            .await
            .create_queue()
            .queue_name(&name)
            .attributes(QueueAttributeName::FifoQueue, "true")
            .attributes(QueueAttributeName::ContentBasedDeduplication, "false")
            .send()
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "creating the FIFO queue {name} on moto: {}",
                    aws_sdk_sqs::error::DisplayErrorContext(&e)
                )
            });
        output
            .queue_url()
            .unwrap_or_else(|| panic!("moto created {name} without answering its URL"))
            .to_owned()
    }

    fn wait_until_up(&mut self) -> Result<()> {
        let address = format!("127.0.0.1:{}", self.port);
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        while Instant::now() < deadline {
            if answers_http(&address, "/") {
                return Ok(());
            }
            if let Some(status) = self.server.try_wait()? {
                bail!(
                    "moto_server exited ({status}) before answering; its log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        bail!(
            "moto_server did not answer within {STARTUP_TIMEOUT:?}; its log:\n{}",
            self.log()
        )
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("moto.log")).unwrap_or_default()
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        drop(self.janitor.take()); // the janitor stops the server
        // Reap it; should it have ignored the janitor, stop it for good.
        let deadline = Instant::now() + Duration::from_secs(5);
        while matches!(self.server.try_wait(), Ok(None)) {
            if Instant::now() >= deadline {
                let _ = self.server.kill();
                let _ = self.server.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `MOTO_SERVER_BIN`, else `moto_server` on the PATH, else in Python's scripts directories
/// (the interpreter's and the user's, where `pip install --user` puts it).
fn moto_server_binary() -> Result<PathBuf> {
    if let Ok(bin) = std::env::var("MOTO_SERVER_BIN") {
        return Ok(PathBuf::from(bin));
    }
    which("moto_server")
        .or_else(|| {
            python_script_dirs()
                .into_iter()
                .map(|dir| dir.join("moto_server"))
                .find(|p| p.exists())
        })
        .context("moto's server `moto_server` was not found: run scripts/install-test-deps.sh")
}

fn python_script_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = Command::new("python3")
        .args([
            "-c",
            "import site, sysconfig; print(sysconfig.get_path('scripts')); print(site.getuserbase() + '/bin')",
        ])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|output| {
            String::from_utf8_lossy(&output.stdout)
                .lines()
                .map(PathBuf::from)
                .collect()
        })
        .unwrap_or_default();
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(PathBuf::from(home).join(".local/bin"));
    }
    dirs
}
