use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use maildrop_filter::Config;
use maildrop_filter::config::Command;
use maildrop_runtime::{shutdown, telemetry};

fn research_exit(what: &str, done: Result<(), maildrop_filter::replay::ReplayError>) -> ExitCode {
    match done {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("maildrop-filter {what}: {}", telemetry::chain(&e));
            ExitCode::FAILURE
        }
    }
}

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
    match &config.command {
        Some(Command::Replay(args)) => {
            let done =
                maildrop_filter::replay::command(&config, args, &mut std::io::stdout()).await;
            return research_exit("replay", done.map(|_| ()));
        }
        Some(Command::Export(args)) => {
            let done = async {
                let js = maildrop_filter::replay::connect(&config).await?;
                let n = maildrop_filter::export::export(&js, args).await?;
                eprintln!(
                    "maildrop-filter export: {n} messages written to {}",
                    args.out.display()
                );
                Ok(())
            }
            .await;
            return research_exit("export", done);
        }
        _ => {}
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
