//! `make chaos`: the full chaos run on a local stack of its own. Prints what happened and the
//! counts that must be zero; exits non-zero if any is not.

use std::process::ExitCode;

use bridge_tests::chaos::{self, ChaosPlan};
use sandbox::LocalStack;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let stack = match LocalStack::start() {
        Ok(stack) => stack,
        Err(e) => {
            eprintln!("chaos: could not start the local stack: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let plan = ChaosPlan::full();
    println!("chaos: {plan:?}");
    match chaos::run(&plan, &stack).await {
        Ok(report) => {
            print!("{report}");
            if report.passed() {
                println!("chaos: every invariant held");
                ExitCode::SUCCESS
            } else {
                println!("chaos: {} violations", report.violations.total());
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("chaos: the run could not finish: {e:#}");
            ExitCode::FAILURE
        }
    }
}
