//! `local-stack [COMMAND ARGS...]`: starts the local stack, runs COMMAND with the stack in its
//! environment (`DATABASE_URL`, `SUPABASE_REST_URL`, `SUPABASE_SERVICE_ROLE_KEY`,
//! `SUPABASE_ANON_KEY`, `SUPABASE_JWT_SECRET`), then stops the stack and exits with COMMAND's
//! status. Without a command it prints the environment and serves until interrupted.

use std::process::{Command, ExitCode};

use sandbox::LocalStack;

fn main() -> ExitCode {
    let stack = match LocalStack::start() {
        Ok(stack) => stack,
        Err(e) => {
            eprintln!("local-stack: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let env = [
        ("DATABASE_URL", stack.database_url.clone()),
        ("SUPABASE_REST_URL", stack.rest_url.clone()),
        ("SUPABASE_SERVICE_ROLE_KEY", stack.service_role_key.clone()),
        ("SUPABASE_ANON_KEY", stack.anon_key.clone()),
        (
            "SUPABASE_JWT_SECRET",
            stack.jwt_secret.clone().unwrap_or_default(),
        ),
    ];
    let mut args = std::env::args().skip(1);
    let Some(program) = args.next() else {
        for (name, value) in &env {
            println!("export {name}='{value}'");
        }
        eprintln!("local-stack: serving; Ctrl-C stops and deletes it");
        loop {
            std::thread::park();
        }
    };
    let status = Command::new(&program).args(args).envs(env).status();
    drop(stack);
    match status {
        Ok(status) if status.success() => ExitCode::SUCCESS,
        Ok(status) => {
            eprintln!("local-stack: {program} exited with {status}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("local-stack: could not run {program}: {e}");
            ExitCode::FAILURE
        }
    }
}
