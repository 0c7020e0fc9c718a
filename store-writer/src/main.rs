use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use maildrop_runtime::{shutdown, telemetry};
use maildrop_store_writer::{Command, Config};

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::parse();
    if let Err(e) = telemetry::init(&config.log) {
        eprintln!("maildrop-store-writer: {e}");
        return ExitCode::FAILURE;
    }
    let cancel = shutdown::on_signal();
    if let Some(Command::Rebuild(_)) = config.command {
        return match maildrop_store_writer::rebuild(config, cancel).await {
            Ok(report) => {
                println!("{report}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                tracing::error!(error = %e, "Rebuild failed.");
                ExitCode::FAILURE
            }
        };
    }
    let run = tokio::spawn(maildrop_store_writer::run(config, cancel.clone()));
    match shutdown::join(run, &cancel, Duration::from_secs(30)).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %telemetry::chain(&e), "maildrop-store-writer stopped.");
            ExitCode::FAILURE
        }
    }
}
