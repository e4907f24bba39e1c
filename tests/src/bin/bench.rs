//! `bench [--quick]`: the benchmarks of `make bench` (see `test_support::bench`). Prints the
//! table, writes `target/bench/report.json`. Exits non-zero only when it could not run: a
//! missed target is reported, not failed.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use test_support::bench::{Bench, Settings};

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
        || PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target")),
        PathBuf::from,
    );
    let settings = Settings {
        binaries: std::env::var_os("BENCH_BINARIES")
            .map_or_else(|| target.join("release"), PathBuf::from),
        lambda_bootstraps: target.join("lambda"),
        output: target.join("bench"),
        quick: std::env::args().any(|arg| arg == "--quick"),
    };
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
