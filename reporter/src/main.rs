use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use maildrop_reporter::Config;
use maildrop_runtime::{shutdown, telemetry};

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::parse();
    if let Err(e) = telemetry::init(&config.log) {
        eprintln!("maildrop-reporter: {e}");
        return ExitCode::FAILURE;
    }
    let cancel = shutdown::on_signal();
    let run = tokio::spawn(maildrop_reporter::run(config, cancel.clone()));
    match shutdown::join(run, &cancel, Duration::from_secs(30)).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %telemetry::chain(&e), "maildrop-reporter stopped.");
            ExitCode::FAILURE
        }
    }
}
