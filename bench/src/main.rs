//! `maildrop-bench`: parse the command line, run, print. Everything else is in the library.

use std::process::ExitCode;

use clap::Parser;
use maildrop_bench::cli::Cli;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match maildrop_bench::run(cli).await {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("maildrop-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}
