//! The benchmark's results: `target/bench/report.json` (every figure, and the machine they were
//! taken on) and the table printed beside the product's targets and the n8n flow it replaces.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};
use serde::Serialize;

use super::cold_start::ColdStartReport;
use super::ingress::{IngressReport, P99_LIMIT_MS};
use super::worker::WorkerReport;
use super::{CONVERSATION_WORKER, FORM_INTAKE, HELLO_LAMBDA, WHATSAPP_INBOUND};

/// What the product promises (issue 7).
#[derive(Debug, Clone, Serialize)]
pub struct Targets {
    pub webhook_ack_p99_ms: f64,
    pub own_time_per_turn_ms: f64,
    pub turns_per_s_on_2_cores: f64,
    pub memory_per_function_mb: f64,
}

pub const TARGETS: Targets = Targets {
    webhook_ack_p99_ms: 20.0,
    own_time_per_turn_ms: 10.0,
    turns_per_s_on_2_cores: 300.0,
    memory_per_function_mb: 40.0,
};

/// The n8n flow the bridge replaces, as measured before it.
#[derive(Debug, Clone, Serialize)]
pub struct N8nBaseline {
    pub time_per_turn_ms: f64,
    pub turns_per_s: f64,
    pub memory_mb: f64,
}

pub const N8N: N8nBaseline = N8nBaseline {
    time_per_turn_ms: 39.0,
    turns_per_s: 30.0,
    memory_mb: 800.0,
};

#[derive(Debug, Serialize)]
pub struct Machine {
    pub date: String,
    pub cores: usize,
    pub cpu: String,
    pub memory_gib: f64,
    pub kernel: String,
    pub rustc: String,
}

impl Machine {
    pub fn describe() -> Machine {
        let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
        let cpuinfo = read("/proc/cpuinfo");
        let meminfo = read("/proc/meminfo");
        let field = |text: &str, name: &str| {
            text.lines()
                .find(|line| line.starts_with(name))
                .and_then(|line| line.split_once(':'))
                .map(|(_, value)| value.trim().to_owned())
                .unwrap_or_default()
        };
        let memory_kib: f64 = field(&meminfo, "MemTotal")
            .trim_end_matches("kB")
            .trim()
            .parse()
            .unwrap_or(0.0);
        Machine {
            date: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
            cpu: field(&cpuinfo, "model name"),
            memory_gib: memory_kib / (1024.0 * 1024.0),
            kernel: read("/proc/sys/kernel/osrelease").trim().to_owned(),
            rustc: Command::new("rustc")
                .arg("--version")
                .output()
                .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
                .unwrap_or_default(),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Sizes {
    /// `target/release/<name>`: this machine's build, the one measured.
    pub host: Vec<BinarySize>,
    /// `target/lambda/<name>/bootstrap` from `make build`, when present.
    pub lambda: Vec<BinarySize>,
    /// The architecture of the Lambda bootstraps (`target/lambda/ARCHITECTURE`).
    pub lambda_architecture: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct BinarySize {
    pub name: String,
    pub bytes: u64,
}

impl Sizes {
    pub fn read(binaries: &Path, lambda_bootstraps: &Path) -> Sizes {
        let size = |name: &str, path: &Path| {
            let bytes = std::fs::metadata(path).ok()?.len();
            Some(BinarySize {
                name: name.to_owned(),
                bytes,
            })
        };
        let names = [
            WHATSAPP_INBOUND,
            FORM_INTAKE,
            CONVERSATION_WORKER,
            HELLO_LAMBDA,
        ];
        Sizes {
            host: names
                .iter()
                .filter_map(|name| size(name, &binaries.join(name)))
                .collect(),
            lambda: names
                .iter()
                .filter_map(|name| size(name, &lambda_bootstraps.join(name).join("bootstrap")))
                .collect(),
            lambda_architecture: std::fs::read_to_string(lambda_bootstraps.join("ARCHITECTURE"))
                .ok()
                .map(|arch| arch.trim().to_owned()),
        }
    }

    fn bytes(list: &[BinarySize], name: &str) -> Option<u64> {
        list.iter().find(|b| b.name == name).map(|b| b.bytes)
    }
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub machine: Machine,
    pub targets: Targets,
    pub n8n: N8nBaseline,
    pub ingress: IngressReport,
    pub worker: WorkerReport,
    pub cold_starts: ColdStartReport,
    pub sizes: Sizes,
    /// What the figures leave out, in words.
    pub notes: Vec<String>,
}

impl Report {
    pub fn new(
        machine: Machine,
        ingress: IngressReport,
        worker: WorkerReport,
        cold_starts: ColdStartReport,
        sizes: Sizes,
    ) -> Report {
        let notes = vec![
            format!(
                "Everything runs on this one machine ({} cores): the functions, PostgreSQL, postrust, moto, the stand-ins and the harness share the CPU.",
                machine.cores
            ),
            "The ingress functions run twice: with moto (a Python SQS server) behind them, and with an instant SQS stand-in that answers SendMessage at once, so their own time shows apart from moto's. moto takes milliseconds per SendMessage and scans its whole FIFO queue on each, so it is emptied before every run.".into(),
            "The worker's own time is the invocation's wall time minus the time spent inside the Retell, Graph and transcription stand-ins' handlers; loopback HTTP to them counts as ours. A voice-note turn's own time leaves out the media's lookup and download (the Graph stand-in's) and the transcription (the transcription stand-in's), and counts the duration check and the saved transcript.".into(),
            "Binaries are this machine's release build (x86_64); the Lambda bootstraps are listed when make build left them in target/lambda.".into(),
        ];
        Report {
            machine,
            targets: TARGETS,
            n8n: N8N,
            ingress,
            worker,
            cold_starts,
            sizes,
            notes,
        }
    }

    pub fn write_json(&self, path: &Path) -> Result<()> {
        let json = serde_json::to_string_pretty(self).context("serializing the report")?;
        std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))
    }

    /// The table for a person: figures, targets, the n8n flow.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let m = &self.machine;
        let _ = writeln!(
            out,
            "make bench, {}: {} cores ({}), {:.0} GiB, Linux {}, {}",
            m.date, m.cores, m.cpu, m.memory_gib, m.kernel, m.rustc
        );
        self.ingress_table(&mut out);
        self.worker_table(&mut out);
        let _ = write!(out, "\n{}", self.cold_starts.table());
        self.size_table(&mut out);
        let _ = writeln!(out, "\nNotes:");
        for note in &self.notes {
            let _ = writeln!(out, "- {note}");
        }
        out
    }

    fn ingress_table(&self, out: &mut String) {
        let ingress = &self.ingress;
        let _ = writeln!(
            out,
            "\nINGRESS: open-loop load, {} instances per function; latency from the scheduled send to the answer",
            ingress.instances
        );
        let _ = writeln!(
            out,
            "{:<18} {:<8} {:>7} {:>6} {:>5} {:>8} {:>8} {:>8} {:>8} {:>10} {:>10}   target",
            "function",
            "queue",
            "rate/s",
            "sent",
            "err",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "max ms",
            "own p50 ms",
            "CPU ms/req"
        );
        for function in &ingress.functions {
            for run in &function.fixed_rates {
                let target = if function.name == WHATSAPP_INBOUND {
                    verdict(
                        run.latency.p99_ms <= TARGETS.webhook_ack_p99_ms,
                        &format!("ack p99 <= {} ms", TARGETS.webhook_ack_p99_ms),
                    )
                } else {
                    String::new()
                };
                let _ = writeln!(
                    out,
                    "{:<18} {:<8} {:>7.0} {:>6} {:>5} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>10.2} {:>10.2}   {target}",
                    function.name,
                    function.queue,
                    run.rate_per_s,
                    run.requests,
                    run.errors,
                    run.latency.p50_ms,
                    run.latency.p90_ms,
                    run.latency.p99_ms,
                    run.latency.max_ms,
                    run.service.p50_ms,
                    run.cpu_ms_per_request,
                );
            }
        }
        for function in &ingress.functions {
            let steps: Vec<String> = function
                .steps
                .iter()
                .map(|run| {
                    format!(
                        "{:.0}/s p99 {:.1} ms{}",
                        run.rate_per_s,
                        run.latency.p99_ms,
                        if run.errors > 0 {
                            format!(" ({} err)", run.errors)
                        } else {
                            String::new()
                        }
                    )
                })
                .collect();
            let _ = writeln!(
                out,
                "highest rate with p99 < {P99_LIMIT_MS} ms, {} on {}: {} (steps: {})",
                function.name,
                function.queue,
                function
                    .highest_rate_under_p99_limit
                    .map_or("none".into(), |rate| format!("{rate:.0}/s")),
                steps.join(", ")
            );
        }
        let moto = &ingress.moto_send_message;
        let _ = writeln!(
            out,
            "moto's SendMessage alone, from the harness: p50 {:.2} ms, p99 {:.2} ms one at a time; {:.0}/s with {} senders",
            moto.sequential.p50_ms,
            moto.sequential.p99_ms,
            moto.concurrent_per_s,
            ingress.instances
        );
        // The same function at the lowest rate on both queues: the difference is moto's.
        for name in [WHATSAPP_INBOUND, FORM_INTAKE] {
            let own_p50 = |queue: &str| {
                ingress
                    .functions
                    .iter()
                    .find(|f| f.name == name && f.queue == queue)
                    .and_then(|f| f.fixed_rates.first())
                    .map(|run| run.service.p50_ms)
            };
            if let (Some(moto), Some(instant)) = (own_p50("moto"), own_p50("instant")) {
                let _ = writeln!(
                    out,
                    "{name} at the lowest rate, own p50: {moto:.2} ms on moto, {instant:.2} ms on the instant SQS: moto's share {:.2} ms",
                    moto - instant
                );
            }
        }
    }

    fn worker_table(&self, out: &mut String) {
        let worker = &self.worker;
        let _ = writeln!(
            out,
            "\nWORKER: conversation-worker, one instance, one job per SQS event, {} customers; stand-ins answer at once",
            worker.customers
        );
        let _ = writeln!(
            out,
            "{:<30} {:>6} {:>8} {:>8} {:>8}   {:<22} n8n",
            "", "jobs", "p50 ms", "p99 ms", "max ms", "target"
        );
        let turn_target = verdict(
            worker.turn.own.p99_ms <= TARGETS.own_time_per_turn_ms,
            &format!("p99 <= {} ms", TARGETS.own_time_per_turn_ms),
        );
        let n8n_turn = format!("{} ms", N8N.time_per_turn_ms);
        let rows = [
            (
                "turn: our own time",
                &worker.turn.own,
                turn_target.as_str(),
                n8n_turn.as_str(),
            ),
            ("turn: wall", &worker.turn.wall, "", ""),
            ("turn: inside the stand-ins", &worker.turn.standins, "", ""),
            (
                "voice-note turn: our own time",
                &worker.voice_turn.own,
                "",
                "",
            ),
            ("voice-note turn: wall", &worker.voice_turn.wall, "", ""),
            (
                "voice-note turn: in stand-ins",
                &worker.voice_turn.standins,
                "",
                "",
            ),
            ("start: our own time", &worker.start.own, "", ""),
            ("start: wall", &worker.start.wall, "", ""),
        ];
        for (label, distribution, target, n8n) in rows {
            let _ = writeln!(
                out,
                "{label:<30} {:>6} {:>8.2} {:>8.2} {:>8.2}   {target:<22} {n8n}",
                distribution.count, distribution.p50_ms, distribution.p99_ms, distribution.max_ms
            );
        }
        let _ = writeln!(
            out,
            "CPU time of the worker process alone: {:.2} ms per turn, {:.2} ms per start",
            worker.turn.cpu_ms_per_job, worker.start.cpu_ms_per_job
        );
        let _ = writeln!(
            out,
            "failed jobs: {} turns, {} starts; stand-in requests per turn {:.1}, per start {:.1}",
            worker.turn.failures,
            worker.start.failures,
            worker.turn.standin_requests_per_job,
            worker.start.standin_requests_per_job
        );
        let _ = writeln!(
            out,
            "voice-note turns: {} failed, {} of {} transcribed, stand-in requests per turn {:.1}, CPU {:.2} ms per turn",
            worker.voice_turn.failures,
            worker.voice_notes_transcribed,
            worker.voice_turn.wall.count,
            worker.voice_turn.standin_requests_per_job,
            worker.voice_turn.cpu_ms_per_job
        );
        let trips = &worker.db_round_trips;
        let calls = |calls: &std::collections::BTreeMap<String, f64>| {
            calls
                .iter()
                .map(|(call, n)| format!("{call} {n:.1}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(
            out,
            "database round trips (counted over {} jobs each): per turn {:.1} ({}); per start {:.1} ({})",
            trips.jobs_counted,
            trips.per_turn,
            calls(&trips.turn_calls),
            trips.per_start,
            calls(&trips.start_calls)
        );
        let _ = writeln!(
            out,
            "of our own time, the store's (postrust + PostgreSQL, timed at the proxy): per turn p50 {:.2} ms, p99 {:.2} ms; per start p50 {:.2} ms, p99 {:.2} ms",
            trips.store_per_turn.p50_ms,
            trips.store_per_turn.p99_ms,
            trips.store_per_start.p50_ms,
            trips.store_per_start.p99_ms
        );
        let throughput = &worker.throughput;
        let _ = writeln!(
            out,
            "throughput: {:.0} turns/s with {} instances ({} turns, {} failed)   target >= {} turns/s: {}   n8n {} turns/s",
            throughput.turns_per_s,
            throughput.instances,
            throughput.turns,
            throughput.failures,
            TARGETS.turns_per_s_on_2_cores,
            if throughput.turns_per_s >= TARGETS.turns_per_s_on_2_cores {
                "met"
            } else {
                "MISSED"
            },
            N8N.turns_per_s
        );
    }

    fn size_table(&self, out: &mut String) {
        let sizes = &self.sizes;
        let arch = sizes.lambda_architecture.as_deref().unwrap_or("none");
        let _ = writeln!(out, "\nSIZE AND MEMORY (MB = MiB, as Lambda counts memory)");
        let _ = writeln!(
            out,
            "{:<20} {:>14} {:>18} {:>13}   {:<20} n8n",
            "function",
            "host binary MB",
            format!("{arch} bootstrap MB"),
            "peak RSS MB",
            "target (memory)"
        );
        let mib = |bytes: Option<u64>| {
            bytes.map_or("-".to_owned(), |b| format!("{:.2}", b as f64 / 1048576.0))
        };
        // The most any instance held over every run of the function.
        let ingress_peak = |name: &str| {
            self.ingress
                .functions
                .iter()
                .filter(|f| f.name == name)
                .map(|f| f.peak_rss_mb)
                .reduce(f64::max)
        };
        let peaks = [
            (WHATSAPP_INBOUND, ingress_peak(WHATSAPP_INBOUND)),
            (FORM_INTAKE, ingress_peak(FORM_INTAKE)),
            (CONVERSATION_WORKER, Some(self.worker.peak_rss_mb)),
            (HELLO_LAMBDA, None),
        ];
        for (name, peak) in peaks {
            let target = peak.map_or(String::new(), |peak| {
                verdict(
                    peak <= TARGETS.memory_per_function_mb,
                    &format!("peak <= {} MB", TARGETS.memory_per_function_mb),
                )
            });
            let _ = writeln!(
                out,
                "{name:<20} {:>14} {:>18} {:>13}   {target:<20} {}",
                mib(Sizes::bytes(&sizes.host, name)),
                mib(Sizes::bytes(&sizes.lambda, name)),
                peak.map_or("-".to_owned(), |p| format!("{p:.1}")),
                if peak.is_some() {
                    format!("{} GB", N8N.memory_mb / 1000.0)
                } else {
                    String::new()
                }
            );
        }
    }
}

fn verdict(met: bool, target: &str) -> String {
    format!("{target}: {}", if met { "met" } else { "MISSED" })
}
