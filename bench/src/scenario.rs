//! The self-contained scenarios behind `make bench`: they start what they measure.
//!
//! - `ingest`: nats-server, redis-server and the ingest; the reference load (20 sessions, one
//!   message per connection) at 1 KiB, then at 20 KiB. Measures what a sender sees: accepted
//!   messages per second and the SMTP transaction latency, which includes the JetStream publish
//!   and its ack. The ingest gets its Redis because it asks it about every connection (blocked
//!   IPs): without one it would skip that work and look faster than it runs in production.
//! - `pipeline`: nats-server, redis-server and all five stages; the size mix, with latency from the
//!   `250` to the `stored` event on NATS and to the WebSocket push.
//!
//! Each run is bounded by the message count and the duration limit (50 s by default), so a scenario
//! ends by itself in about two minutes at most.

use std::time::Duration;

use serde_json::{Value, json};

use crate::cli::{LoadArgs, ProcessArgs, ScenarioName};
use crate::load::Plan;
use crate::measure::{self, Measurement};
use crate::probe::ProbeConfig;
use crate::report::{RunReport, summary_table, table};
use crate::resources::{mib, parse_status_kib};
use crate::size::SizeSpec;
use crate::system::{self, InProcess, Stage};
use crate::{compare, idle, push, soak};

/// What a scenario measured, and on what.
#[derive(Debug, Clone)]
pub struct ScenarioReport {
    pub name: &'static str,
    pub machine: Machine,
    pub runs: Vec<RunReport>,
    /// Tables of the scenario's own (comparisons, series), printed after the runs.
    pub sections: Vec<String>,
    /// The same in JSON, by name.
    pub extra: serde_json::Map<String, Value>,
    pub notes: Vec<String>,
}

impl ScenarioReport {
    pub fn text(&self) -> String {
        let mut out = format!("## maildrop-bench scenario {}\n\n", self.name);
        out.push_str(&self.machine.table());
        for run in &self.runs {
            out.push('\n');
            out.push_str(&run.table());
        }
        if self.runs.len() > 1 {
            out.push_str("\n### summary\n\n");
            out.push_str(&summary_table(&self.runs));
        }
        for section in &self.sections {
            out.push('\n');
            out.push_str(section);
        }
        out.push('\n');
        for note in &self.notes {
            out.push_str(&format!("- {note}\n"));
        }
        out
    }

    pub fn to_json(&self) -> Value {
        json!({
            "scenario": self.name,
            "machine": self.machine.to_json(),
            "runs": self.runs.iter().map(RunReport::to_json).collect::<Vec<_>>(),
            "results": self.extra,
            "notes": self.notes,
        })
    }
}

/// Runs scenario `name` (`all`: one after the other); `duration` bounds each load run.
pub async fn run(
    name: ScenarioName,
    duration: Duration,
    load: &LoadArgs,
    procs: &ProcessArgs,
) -> anyhow::Result<Vec<ScenarioReport>> {
    Ok(match name {
        ScenarioName::Ingest => vec![ingest(duration, load).await?],
        ScenarioName::Pipeline => vec![pipeline(duration, load).await?],
        ScenarioName::Peers => vec![compare::run(duration, load, procs).await?],
        ScenarioName::Push => vec![push::run(duration, load, procs).await?],
        ScenarioName::Connections => vec![idle::run(load, procs).await?],
        ScenarioName::Soak => vec![soak::run(load, procs).await?],
        ScenarioName::Filter => vec![crate::filter::run(load.seed).await?],
        ScenarioName::All => vec![
            compare::run(duration, load, procs).await?,
            push::run(duration, load, procs).await?,
            idle::run(load, procs).await?,
            soak::run(load, procs).await?,
            crate::filter::run(load.seed).await?,
        ],
    })
}

/// A load plan against `target` with the shared load options.
pub fn plan_for(
    load: &LoadArgs,
    target: std::net::SocketAddr,
    size: SizeSpec,
    duration: Duration,
    salt: u64,
) -> Plan {
    Plan {
        target,
        sessions: load.sessions,
        per_connection: load.per_connection,
        messages: load.messages,
        duration,
        size,
        mailboxes: load.mailboxes,
        domain: load.domain.clone(),
        reply_timeout: load.reply_timeout,
        seed: load.seed,
        tag: measure::fresh_tag(salt),
        rate: None,
    }
}

/// Where the stage binaries are.
pub fn bin_dir(procs: &ProcessArgs) -> std::path::PathBuf {
    procs
        .bin_dir
        .clone()
        .unwrap_or_else(crate::procs::default_bin_dir)
}

fn plan(
    load: &LoadArgs,
    system: &InProcess,
    size: SizeSpec,
    duration: Duration,
    salt: u64,
) -> Plan {
    plan_for(load, system.smtp, size, duration, salt)
}

async fn ingest(duration: Duration, load: &LoadArgs) -> anyhow::Result<ScenarioReport> {
    let machine = Machine::probe();
    let system = InProcess::start(&[Stage::Ingest], &load.domain).await?;
    let mut runs = Vec::new();
    for (i, size) in [SizeSpec::Fixed(1024), SizeSpec::Fixed(20 * 1024)]
        .into_iter()
        .enumerate()
    {
        let m = Measurement {
            title: format!("ingest · {size}"),
            plan: plan(load, &system, size, duration, 10 + i as u64),
            probes: ProbeConfig::default(),
            warmup: load.warmup,
            settle: load.settle,
            process_note: Some("load generator + ingest, in this one process".into()),
            sample: vec![],
            sample_every: measure::SAMPLE_EVERY,
        };
        match measure::run(&m).await {
            Ok(r) => runs.push(r),
            Err(e) => {
                let _ = system.stop().await;
                return Err(e);
            }
        }
    }
    system.stop().await?;
    Ok(ScenarioReport {
        name: "ingest",
        machine,
        runs,
        sections: vec![],
        extra: Default::default(),
        notes: vec![
            "In-process: the load generator and the ingest share this process (on separate tokio runtimes) and the machine's cores, so the CPU and peak-RSS lines of this process are both together; nats-server and redis-server are separate processes with their own lines.".into(),
            "The ingest runs with its default settings and its Redis (a blocked-IP lookup per connection); 127.0.0.0/8 is exempt from its per-IP limits by default, as it is for a local relay.".into(),
            "SMTP latency runs from MAIL FROM to the 250 after DATA; the ingest answers 250 only after JetStream acknowledged the message (file storage), so it includes that publish.".into(),
            format!(
                "Each run follows a warm-up of {} messages that is not counted; the JetStream store keeps every message of every run (nothing consumes them in this scenario).",
                load.warmup
            ),
        ],
    })
}

async fn pipeline(duration: Duration, load: &LoadArgs) -> anyhow::Result<ScenarioReport> {
    let machine = Machine::probe();
    let system = InProcess::start(&system::ALL, &load.domain).await?;
    let http = system.http.expect("the pipeline runs the gateway");
    let m = Measurement {
        title: "pipeline · mix".into(),
        plan: plan(load, &system, SizeSpec::Mix, duration, 20),
        probes: ProbeConfig {
            nats_url: Some(system.nats.url()),
            redis_url: None,
            ws_url: Some(format!("ws://{http}")),
            ws_watchers: load.ws_watchers,
        },
        warmup: load.warmup,
        settle: load.settle,
        process_note: Some(
            "load generator + its probes + all five stages, in this one process".into(),
        ),
        sample: vec![],
        sample_every: measure::SAMPLE_EVERY,
    };
    let report = measure::run(&m).await;
    let stopped = system.stop().await;
    let report = report?;
    stopped?;
    Ok(ScenarioReport {
        name: "pipeline",
        machine,
        runs: vec![report],
        sections: vec![],
        extra: Default::default(),
        notes: vec![
            "In-process: the load generator, its NATS and WebSocket probes and all five stages (ingest, filter, store-writer, reporter, gateway) share this process and the machine's cores, so the CPU and peak-RSS lines of this process are all of them together; nats-server and redis-server are separate processes with their own lines.".into(),
            "250 → stored event: from the 250 to the store-writer's `stored` event on NATS, which it publishes after the message is in the mailbox's Redis index. 250 → WebSocket push: to the frame on a gateway WebSocket; only messages to watched mailboxes count, once per watcher.".into(),
            "Sessions do not wait for the pipeline: when the ingest accepts faster than the stages behind it store, the backlog queues in JetStream and end-to-end latency grows over the run; `end to end/s` is the rate the pipeline actually stored at.".into(),
            format!(
                "Stages run with their default settings (mailboxes keep 10 messages, so most stores also evict one). The run follows a warm-up of {} messages that is not counted.",
                load.warmup
            ),
        ],
    })
}

/// The machine a scenario ran on.
#[derive(Debug, Clone, Default)]
pub struct Machine {
    pub cpus: usize,
    pub memory_kib: Option<u64>,
    pub kernel: Option<String>,
    /// `/proc/loadavg` (1, 5 and 15 minutes) when the scenario started.
    pub load_average: Option<String>,
    pub nats_server: Option<String>,
    pub redis_server: Option<String>,
}

impl Machine {
    pub fn probe() -> Self {
        Self {
            cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
            memory_kib: std::fs::read_to_string("/proc/meminfo")
                .ok()
                .and_then(|m| parse_status_kib(&m, "MemTotal")),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .ok()
                .map(|s| s.trim().to_owned()),
            load_average: std::fs::read_to_string("/proc/loadavg")
                .ok()
                .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" ")),
            nats_server: version_of("nats-server"),
            redis_server: version_of("redis-server"),
        }
    }

    pub fn table(&self) -> String {
        let unknown = || "unknown".to_owned();
        let rows = vec![
            vec!["CPUs".into(), self.cpus.to_string()],
            vec![
                "memory".into(),
                self.memory_kib
                    .map_or_else(unknown, |k| format!("{:.1} GiB", mib(k) / 1024.0)),
            ],
            vec!["Linux".into(), self.kernel.clone().unwrap_or_else(unknown)],
            vec![
                "load average at start".into(),
                self.load_average.clone().unwrap_or_else(unknown),
            ],
            vec![
                "nats-server".into(),
                self.nats_server.clone().unwrap_or_else(unknown),
            ],
            vec![
                "redis-server".into(),
                self.redis_server.clone().unwrap_or_else(unknown),
            ],
            vec![
                "maildrop-bench".into(),
                format!(
                    "{} ({} build)",
                    env!("CARGO_PKG_VERSION"),
                    if cfg!(debug_assertions) {
                        "debug"
                    } else {
                        "release"
                    }
                ),
            ],
        ];
        table(&["machine", "value"], &rows)
    }

    pub fn to_json(&self) -> Value {
        json!({
            "cpus": self.cpus,
            "memory_kib": self.memory_kib,
            "kernel": self.kernel,
            "load_average": self.load_average,
            "nats_server": self.nats_server,
            "redis_server": self.redis_server,
            "release_build": !cfg!(debug_assertions),
        })
    }
}

/// The first line `program --version` prints.
fn version_of(program: &str) -> Option<String> {
    let out = std::process::Command::new(program)
        .arg("--version")
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    first_line(&text)
}

fn first_line(text: &str) -> Option<String> {
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_the_first_line_printed() {
        assert_eq!(
            first_line("\nnats-server: v2.10.18\n"),
            Some("nats-server: v2.10.18".into())
        );
        assert_eq!(first_line("  \n"), None);
    }

    #[test]
    fn the_machine_table_says_what_it_does_not_know() {
        let t = Machine::default().table();
        assert!(t.contains("| memory                | unknown"), "{t}");
        assert!(t.contains("maildrop-bench"));
    }
}
