//! `make dev`: the whole bridge on this machine, on one port (`DEV_PORT`, default 3000).
//! Reads `.env` if present; whatever is not configured runs locally (see `sandbox::dev`).

use anyhow::Context;
use sandbox::dev::DevBridge;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let env = sandbox::dev::environment();
    let filter = env
        .get("RUST_LOG")
        .cloned()
        .unwrap_or_else(|| "info".into());
    tracing_subscriber::fmt()
        .compact()
        .with_target(false)
        .with_env_filter(filter)
        .init();

    let port: u16 = env
        .get("DEV_PORT")
        .map_or(Ok(3000), |p| p.parse())
        .context("DEV_PORT is not a port")?;
    let bridge = DevBridge::assemble(&env)?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .with_context(|| format!("port {port} is taken: set DEV_PORT"))?;
    println!("whatsapp-retell-bridge, local run");
    for line in &bridge.summary {
        println!("  {line}");
    }
    println!("  worker: in-process, one turn at a time per customer");
    println!(
        "  routes: GET|POST http://127.0.0.1:{port}/whatsapp, GET|POST http://127.0.0.1:{port}/form"
    );
    println!("  the form page: open http://127.0.0.1:{port}/form in a browser");
    println!("  try: make form NAME=Ana PHONE=5512345678, then make chat PHONE=5215512345678");
    println!("  Ctrl-C stops everything.");
    axum::serve(listener, bridge.service())
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    drop(bridge);
    println!("stopped; the local stack and stand-ins are gone");
    Ok(())
}
