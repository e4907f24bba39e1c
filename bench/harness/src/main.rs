//! `bench [--quick] [--cold-start-only | --worker-only]`: the benchmarks of `make bench` (see the
//! `bench_harness` library). Prints the table, writes `target/bench/report.json` (with
//! `--cold-start-only`, only the cold starts, without the local stack, to
//! `target/bench/cold-starts.json`; with `--worker-only`, only the worker's figures, to
//! `target/bench/worker.json`, to try a change to the worker without the whole run). Exits non-zero only when it could not run: a missed target is
//! reported, not failed.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use bench_harness::{Bench, Settings};

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench: could not run: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../target")),
        PathBuf::from,
    );
    let settings = Settings {
        binaries: std::env::var_os("BENCH_BINARIES")
            .map_or_else(|| target.join("release"), PathBuf::from),
        lambda_bootstraps: target.join("lambda"),
        output: target.join("bench"),
        quick: std::env::args().any(|arg| arg == "--quick"),
    };
    if std::env::args().any(|arg| arg == "--cold-start-only") {
        let report = bench_harness::measure_cold_starts(&settings).await?;
        let path = settings.output.join("cold-starts.json");
        std::fs::write(&path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
        print!("{}", report.table());
        eprintln!(
            "bench: every figure in {}",
            path.canonicalize()
                .context("locating the report")?
                .display()
        );
        return Ok(());
    }
    if std::env::args().any(|arg| arg == "--worker-only") {
        let path = settings.output.join("worker.json");
        let bench = Bench::set_up(settings).await?;
        let worker = bench.measure_worker().await?;
        drop(bench);
        std::fs::write(&path, serde_json::to_vec_pretty(&worker)?)
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("bench: the worker's figures in {}", path.display());
        return Ok(());
    }
    let report_path = settings.output.join("report.json");
    let bench = Bench::set_up(settings).await?;
    let report = bench.run().await?;
    drop(bench);
    report.write_json(&report_path)?;
    println!("{}", report.table());
    eprintln!(
        "bench: every figure in {}",
        report_path
            .canonicalize()
            .context("locating the report")?
            .display()
    );
    Ok(())
}
