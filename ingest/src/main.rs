use std::process::ExitCode;

use clap::Parser;
use maildrop_ingest::Config;
use maildrop_runtime::{shutdown, telemetry};

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::parse();
    if let Err(e) = telemetry::init(&config.log) {
        eprintln!("maildrop-ingest: {e}");
        return ExitCode::FAILURE;
    }
    let listener = match tokio::net::TcpListener::bind(config.smtp_addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!(
                "maildrop-ingest: cannot listen on MAILDROP_SMTP_ADDR={}: {e}",
                config.smtp_addr
            );
            return ExitCode::FAILURE;
        }
    };
    let cancel = shutdown::on_signal();
    // The server applies its own grace period to open connections; this is the backstop.
    let grace = config.shutdown_grace + std::time::Duration::from_secs(5);
    let run = tokio::spawn(maildrop_ingest::run(config, listener, cancel.clone()));
    match shutdown::join(run, &cancel, grace).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %telemetry::chain(&e), "maildrop-ingest stopped.");
            ExitCode::FAILURE
        }
    }
}
