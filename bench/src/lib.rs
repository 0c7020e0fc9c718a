//! `maildrop-bench`: an SMTP load generator for Maildrop, and the scenarios behind `make bench`.
//!
//! How the modules relate, from the wire up:
//!
//! - [`size`], [`rng`], [`base64`] and [`message`] make the mail: sizes as written on the command
//!   line, a seeded generator, and messages whose `Subject` carries a per-run token so they can be
//!   traced end to end.
//! - [`smtp`] is the client side of the protocol without I/O (replies out of a buffer, the `DATA`
//!   payload); [`session`] is the one place that touches the SMTP socket; [`load`] runs N sessions
//!   over a shared budget of messages and time, as fast as they go or at a fixed rate.
//! - [`track`] matches what the end-to-end probes see to the `250` it follows, without I/O;
//!   [`probe`] holds the probes themselves (NATS, Redis, WebSocket).
//! - [`stats`] summarises (HDR histograms, percentiles, rates, failures by reply code);
//!   [`resources`] reads CPU time and peak RSS from `/proc`; [`report`] prints tables and JSON.
//! - [`measure`] is one measured run (warm-up, probes, load, settle, and [`sample`]: other
//!   processes' RSS and CPU read from `/proc` while it runs); [`system`] starts servers and stages
//!   in-process, [`procs`] the stages' release binaries as processes, [`peer`] smtp-sink and
//!   Haraka; [`scenario`] puts these together: `ingest` and `pipeline` in-process, [`compare`]
//!   (`peers`), [`push`], [`idle`] (`connections`) and [`soak`] as processes.
//! - [`filter`] is `scenario filter`: the filter's rules alone, through testkit's DNS server.
//! - [`cli`] declares every option (each with a `MAILDROP_BENCH_*` variable); [`target`] keeps
//!   the generator on loopback.

pub mod base64;
pub mod cli;
pub mod compare;
pub mod filter;
pub mod idle;
pub mod load;
pub mod measure;
pub mod message;
pub mod peer;
pub mod probe;
pub mod procs;
pub mod push;
pub mod report;
pub mod resources;
pub mod rng;
pub mod sample;
pub mod scenario;
pub mod session;
pub mod size;
pub mod smtp;
pub mod soak;
pub mod stats;
pub mod system;
pub mod target;
pub mod track;

use cli::{Cli, Command};
use load::Plan;
use measure::Measurement;
use probe::ProbeConfig;

/// Raises this process's soft limit on open files to its hard limit (10,000 watchers and 1,000
/// idle SMTP sessions are a socket each; the stages started from here inherit the limit too).
fn raise_open_files() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => eprintln!("maildrop-bench: open-file limit {n}."),
        Err(e) => eprintln!("maildrop-bench: cannot raise the open-file limit: {e}"),
    }
}

/// Runs what the command line asks for and returns what to print on stdout.
pub async fn run(cli: Cli) -> anyhow::Result<String> {
    match cli.command {
        Some(Command::Scenario {
            name,
            duration,
            load,
            procs,
        }) => {
            raise_open_files();
            let reports = scenario::run(name, duration, &load, &procs).await?;
            Ok(if load.json {
                let json: Vec<_> = reports.iter().map(|r| r.to_json()).collect();
                match <[_; 1]>::try_from(json) {
                    Ok([one]) => format!("{one:#}\n"),
                    Err(all) => format!("{:#}\n", serde_json::Value::from(all)),
                }
            } else {
                reports
                    .iter()
                    .map(|r| r.text())
                    .collect::<Vec<_>>()
                    .join("\n")
            })
        }
        None => {
            let load = &cli.load;
            let m = Measurement {
                title: format!("load · {} · {}", cli.size, cli.smtp),
                plan: Plan {
                    target: cli.smtp,
                    sessions: load.sessions,
                    per_connection: load.per_connection,
                    messages: load.messages,
                    duration: cli.duration,
                    size: cli.size,
                    mailboxes: load.mailboxes,
                    domain: load.domain.clone(),
                    reply_timeout: load.reply_timeout,
                    seed: load.seed,
                    tag: measure::fresh_tag(0),
                    rate: None,
                },
                probes: ProbeConfig {
                    nats_url: cli.nats_url.clone(),
                    redis_url: cli.redis_url.clone(),
                    ws_url: cli.ws_url.clone(),
                    ws_watchers: load.ws_watchers,
                },
                warmup: load.warmup,
                settle: load.settle,
                process_note: Some("the load generator and its probes".into()),
                sample: vec![],
                sample_every: measure::SAMPLE_EVERY,
            };
            let report = measure::run(&m).await?;
            Ok(if load.json {
                format!("{:#}\n", report.to_json())
            } else {
                report.table()
            })
        }
    }
}
