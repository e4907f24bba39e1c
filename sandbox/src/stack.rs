//! The local stack that tests, benchmarks and the local run share: a throwaway PostgreSQL with
//! Supabase's roles and default grants and our migrations, behind a PostgREST-compatible server
//! (`postrust`), with a service-role key and an anon key.
//!
//! When `SUPABASE_REST_URL` (or `SUPABASE_URL`) and `DATABASE_URL` point at a running stack
//! (for example `supabase start`), that stack is used instead, with `SUPABASE_SERVICE_ROLE_KEY`
//! and `SUPABASE_ANON_KEY`.
//!
//! Everything a stack starts is stopped and deleted by a janitor process that waits for its
//! parent to drop the stack or to exit, for whatever reason (a failed test included).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use shared::config::StoreConfig;
use shared::store::PostgrestStore;

use crate::process::{Janitor, answers_http, free_port, which};

const POSTGRES_USER: &str = "postgres";
/// Any 32+ character secret: the stack signs its own keys with it.
const JWT_SECRET: &str = "local-stack-jwt-secret-of-at-least-32-characters";
const PLATFORM_SQL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/stack/supabase_platform.sql");
const MIGRATIONS_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../supabase/migrations");
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

pub struct LocalStack {
    /// The PostgREST base URL (no trailing slash).
    pub rest_url: String,
    /// A superuser connection string, for tests that look behind the API.
    pub database_url: String,
    pub service_role_key: String,
    pub anon_key: String,
    /// The JWT secret the API trusts, when we know it (our own stacks).
    pub jwt_secret: Option<String>,
    owned: Option<OwnedProcesses>,
}

/// What a stack started itself.
struct OwnedProcesses {
    dir: PathBuf,
    pg_bin: PathBuf,
    as_postgres_user: bool,
    postgres_options: String,
    _janitor: Janitor,
}

impl LocalStack {
    /// The stack this test process shares: from the environment, or started on first use.
    pub fn shared() -> &'static LocalStack {
        static SHARED: OnceLock<LocalStack> = OnceLock::new();
        SHARED.get_or_init(|| {
            Self::from_env()
                .map_or_else(Self::start, Ok)
                .unwrap_or_else(|e| panic!("could not start the local stack: {e:#}"))
        })
    }

    /// A running stack named by the environment, if there is one.
    pub fn from_env() -> Option<LocalStack> {
        let rest_url = std::env::var("SUPABASE_REST_URL").ok().or_else(|| {
            std::env::var("SUPABASE_URL")
                .ok()
                .map(|u| format!("{}/rest/v1", u.trim_end_matches('/')))
        })?;
        Some(LocalStack {
            rest_url: rest_url.trim_end_matches('/').to_owned(),
            database_url: std::env::var("DATABASE_URL").ok()?,
            service_role_key: std::env::var("SUPABASE_SERVICE_ROLE_KEY").ok()?,
            anon_key: std::env::var("SUPABASE_ANON_KEY").ok()?,
            jwt_secret: std::env::var("SUPABASE_JWT_SECRET").ok(),
            owned: None,
        })
    }

    /// Starts a stack of one's own; dropping it stops and deletes it.
    pub fn start() -> Result<LocalStack> {
        let started = Instant::now();
        let pg_bin = postgres_bin_dir()?;
        let postrust = postrust_binary()?;
        let as_postgres_user = running_as_root()?;
        clean_up_abandoned_stacks(&pg_bin, as_postgres_user);
        let dir = std::env::temp_dir().join(format!(
            "bridge-stack-{}-{}",
            std::process::id(),
            free_port()?
        ));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        if as_postgres_user {
            // PostgreSQL refuses to run as root: the cluster belongs to the postgres user.
            run(Command::new("chown").arg(POSTGRES_USER).arg(&dir))?;
        }
        // From here on the janitor owns the cleanup, whatever happens next.
        let janitor = janitor(&dir, &pg_bin, as_postgres_user)?;
        let data = dir.join("data");
        let pg_port = free_port()?;
        let pg = |tool: &str| pg_command(&pg_bin, tool, as_postgres_user);

        run(pg("initdb")
            .args([
                "--no-sync",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "-U",
                POSTGRES_USER,
                "-D",
            ])
            .arg(&data))?;
        let options = format!(
            "-p {pg_port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off \
             -c full_page_writes=off -c max_connections=200",
            dir.display()
        );
        run(pg("pg_ctl")
            .arg("-D")
            .arg(&data)
            .args(["-w", "-t", "30", "-o", &options, "-l"])
            .arg(dir.join("postgres.log"))
            .arg("start"))?;

        let owned = OwnedProcesses {
            _janitor: janitor,
            postgres_options: options,
            dir,
            pg_bin,
            as_postgres_user,
        };
        let database_url = format!("postgres://{POSTGRES_USER}@127.0.0.1:{pg_port}/postgres");
        apply_sql(&owned.pg_bin, &database_url, Path::new(PLATFORM_SQL))?;
        for migration in migrations()? {
            apply_sql(&owned.pg_bin, &database_url, &migration)?;
        }

        let api_port = free_port()?;
        let log = std::fs::File::create(owned.dir.join("postrust.log"))?;
        let server = Command::new(&postrust)
            .env(
                "PGRST_DB_URI",
                format!("postgres://authenticator:authenticator@127.0.0.1:{pg_port}/postgres"),
            )
            .env("PGRST_DB_SCHEMAS", "public")
            .env("PGRST_DB_ANON_ROLE", "anon")
            .env("PGRST_JWT_SECRET", JWT_SECRET)
            .env("PGRST_SERVER_HOST", "127.0.0.1")
            .env("PGRST_SERVER_PORT", api_port.to_string())
            // Without it database errors are masked and single rows come back as arrays.
            .env("PGRST_COMPAT_MODE", "true")
            // Answer 5xx after a second without a database connection, as PostgREST does, rather
            // than hold the request for the default ten.
            .env("PGRST_DB_POOL_TIMEOUT", "1")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", postrust.display()))?;
        // The janitor stops it by this pid.
        std::fs::write(owned.dir.join("postrust.pid"), server.id().to_string())?;

        let api = format!("127.0.0.1:{api_port}");
        wait_for_http(&api, &owned.dir.join("postrust.log"))?;
        eprintln!(
            "local stack up in {:?}: API http://{api}/api, database port {pg_port}",
            started.elapsed()
        );
        Ok(LocalStack {
            rest_url: format!("http://{api}/api"),
            database_url,
            service_role_key: sign_jwt("service_role", JWT_SECRET),
            anon_key: sign_jwt("anon", JWT_SECRET),
            jwt_secret: Some(JWT_SECRET.to_owned()),
            owned: Some(owned),
        })
    }

    pub fn store_config(&self, key: &str) -> StoreConfig {
        StoreConfig {
            rest_url: self.rest_url.clone(),
            service_role_key: key.to_owned().into(),
            request_timeout: Duration::from_secs(10),
        }
    }

    /// A store with the service-role key and a new HTTP client, as a cold-started function has.
    pub fn store(&self) -> PostgrestStore {
        PostgrestStore::new(
            &self.store_config(&self.service_role_key),
            shared::http::client(),
        )
    }

    pub async fn database(&self) -> Result<tokio_postgres::Client> {
        let (client, connection) =
            tokio_postgres::connect(&self.database_url, tokio_postgres::NoTls)
                .await
                .context("connecting to the stack's database")?;
        tokio::spawn(connection);
        Ok(client)
    }

    /// Starts this stack's database again after [`Self::stop_database`].
    pub fn start_database(&self) -> Result<()> {
        let Some(owned) = &self.owned else {
            bail!("cannot start a database this process did not start")
        };
        run(pg_command(&owned.pg_bin, "pg_ctl", owned.as_postgres_user)
            .arg("-D")
            .arg(owned.dir.join("data"))
            .args(["-w", "-o", &owned.postgres_options, "-l"])
            .arg(owned.dir.join("postgres.log"))
            .arg("start"))
    }

    /// Stops this stack's database (a fast shutdown), leaving the API server up.
    pub fn stop_database(&self) -> Result<()> {
        let Some(owned) = &self.owned else {
            bail!("cannot stop a database this process did not start")
        };
        run(pg_command(&owned.pg_bin, "pg_ctl", owned.as_postgres_user)
            .arg("-D")
            .arg(owned.dir.join("data"))
            .args(["-m", "fast", "-w", "stop"]))
    }
}

/// A JWT (HS256) carrying a Supabase role, as Supabase's legacy API keys are.
pub fn sign_jwt(role: &str, secret: &str) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let claims = URL_SAFE_NO_PAD.encode(format!(
        r#"{{"iss":"supabase-local","role":"{role}","exp":4102444800}}"#
    ));
    let mut mac =
        Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(format!("{header}.{claims}").as_bytes());
    let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{header}.{claims}.{signature}")
}

/// Stops the stacks of test processes that are gone and whose janitor went with them (a whole
/// process group killed, as by a timeout), and deletes their directories.
fn clean_up_abandoned_stacks(pg_bin: &Path, as_postgres_user: bool) {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for dir in entries.flatten().map(|entry| entry.path()) {
        let Some(owner) = dir.file_name().and_then(|name| {
            name.to_str()?
                .strip_prefix("bridge-stack-")?
                .split('-')
                .next()?
                .parse::<u32>()
                .ok()
        }) else {
            continue;
        };
        if Path::new(&format!("/proc/{owner}")).exists() {
            continue;
        }
        if let Ok(pid) = std::fs::read_to_string(dir.join("postrust.pid")) {
            let _ = Command::new("kill")
                .arg(pid.trim())
                .stderr(Stdio::null())
                .status();
        }
        let _ = pg_command(pg_bin, "pg_ctl", as_postgres_user)
            .arg("-D")
            .arg(dir.join("data"))
            .args(["-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// Stops the API server and the database and deletes the stack's directory when the stack is
/// dropped or this process exits (a janitor waits for that).
fn janitor(dir: &Path, pg_bin: &Path, as_postgres_user: bool) -> Result<Janitor> {
    let run_as = if as_postgres_user {
        format!("runuser -u {POSTGRES_USER} -- ")
    } else {
        String::new()
    };
    let script = format!(
        "[ -f {dir}/postrust.pid ] && kill $(cat {dir}/postrust.pid) 2>/dev/null; {run_as}{pg_ctl} -D {data} -m immediate stop >/dev/null 2>&1; rm -rf {dir}",
        pg_ctl = pg_bin.join("pg_ctl").display(),
        data = dir.join("data").display(),
        dir = dir.display(),
    );
    Janitor::spawn(&script, "the local stack")
}

fn pg_command(pg_bin: &Path, tool: &str, as_postgres_user: bool) -> Command {
    let program = pg_bin.join(tool);
    if as_postgres_user {
        let mut command = Command::new("runuser");
        command.args(["-u", POSTGRES_USER, "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

fn apply_sql(pg_bin: &Path, database_url: &str, file: &Path) -> Result<()> {
    run(Command::new(pg_bin.join("psql"))
        .args([
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            database_url,
            "-f",
        ])
        .arg(file))
    .with_context(|| format!("applying {}", file.display()))
}

/// Our migrations in the order their timestamps give.
pub fn migrations() -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(MIGRATIONS_DIR)
        .with_context(|| format!("reading {MIGRATIONS_DIR}"))?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<std::io::Result<_>>()?;
    files.retain(|path| path.extension().is_some_and(|ext| ext == "sql"));
    files.sort();
    Ok(files)
}

fn run(command: &mut Command) -> Result<()> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {command:?}"))?;
    ensure!(
        output.status.success(),
        "{command:?} failed ({}): {}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

/// `PG_BIN`, else the newest `/usr/lib/postgresql/<major>/bin` (Debian's layout), else the
/// directory of `pg_ctl` on the PATH.
fn postgres_bin_dir() -> Result<PathBuf> {
    if let Ok(dir) = std::env::var("PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let mut majors: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            Some((
                entry.file_name().to_str()?.parse().ok()?,
                entry.path().join("bin"),
            ))
        })
        .filter(|(_, bin): &(u32, PathBuf)| bin.join("initdb").exists())
        .collect();
    majors.sort();
    if let Some((_, bin)) = majors.pop() {
        return Ok(bin);
    }
    which("pg_ctl")
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .context("PostgreSQL's server binaries were not found: install postgresql or set PG_BIN")
}

/// `POSTRUST_BIN`, else `postrust` on the PATH or in cargo's bin directory.
fn postrust_binary() -> Result<PathBuf> {
    if let Ok(bin) = std::env::var("POSTRUST_BIN") {
        return Ok(PathBuf::from(bin));
    }
    which("postrust")
        .or_else(|| {
            let cargo_home = std::env::var_os("CARGO_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")))?;
            Some(cargo_home.join("bin/postrust")).filter(|p| p.exists())
        })
        .context("the PostgREST-compatible server `postrust` was not found: run scripts/install-test-deps.sh")
}

fn running_as_root() -> Result<bool> {
    let output = Command::new("id")
        .arg("-u")
        .output()
        .context("running id -u")?;
    Ok(String::from_utf8_lossy(&output.stdout).trim() == "0")
}

/// Waits until the server answers HTTP, showing its log if it never does.
fn wait_for_http(address: &str, log: &Path) -> Result<()> {
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    while Instant::now() < deadline {
        if answers_http(address, "/api/") {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    bail!(
        "the API server did not answer within {STARTUP_TIMEOUT:?}; its log:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    )
}
