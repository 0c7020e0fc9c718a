use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use maildrop_filter::Config;
use maildrop_filter::config::Command;
use maildrop_runtime::{shutdown, telemetry};

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::parse();
    if let Some(Command::Block(args)) = &config.command {
        return match maildrop_filter::admin::run(&config.redis.url, args, &mut std::io::stdout())
            .await
        {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("maildrop-filter block: {}", telemetry::chain(&e));
                ExitCode::FAILURE
            }
        };
    }
    if let Err(e) = telemetry::init(&config.log) {
        eprintln!("maildrop-filter: {e}");
        return ExitCode::FAILURE;
    }
    let cancel = shutdown::on_signal();
    let run = tokio::spawn(maildrop_filter::run(config, cancel.clone()));
    match shutdown::join(run, &cancel, Duration::from_secs(30)).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %telemetry::chain(&e), "maildrop-filter stopped.");
            ExitCode::FAILURE
        }
    }
}
