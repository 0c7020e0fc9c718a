use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use maildrop_gateway::config::{Command, Config};
use maildrop_runtime::{shutdown, telemetry};

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::parse();
    if let Err(e) = telemetry::init(&config.log) {
        eprintln!("maildrop-gateway: {e}");
        return ExitCode::FAILURE;
    }
    let cancel = shutdown::on_signal();
    if let Some(Command::Watch(args)) = config.command.clone() {
        return match maildrop_gateway::watch::watch(args, cancel).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("maildrop-gateway watch: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let listener = match tokio::net::TcpListener::bind(config.http_addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!(
                "maildrop-gateway: cannot listen on MAILDROP_HTTP_ADDR={}: {e}",
                config.http_addr
            );
            return ExitCode::FAILURE;
        }
    };
    let run = tokio::spawn(maildrop_gateway::run(config, listener, cancel.clone()));
    match shutdown::join(run, &cancel, Duration::from_secs(30)).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %telemetry::chain(&e), "maildrop-gateway stopped.");
            ExitCode::FAILURE
        }
    }
}
