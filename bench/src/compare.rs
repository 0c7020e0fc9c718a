//! `scenario peers`: Maildrop against smtp-sink and Haraka, in one run on one machine, under one
//! load shape (by default the reference: 1 KiB, 20 sessions, one message per connection),
//! so the result is a ratio rather than two numbers from two harnesses.
//!
//! Four systems, one after another, each started fresh and stopped before the next, each
//! sampled for CPU and memory per process:
//!
//! 1. smtp-sink: accepts and discards (the ceiling);
//! 2. Haraka with its Redis queue plugin: 250 after the message is in Redis;
//! 3. the ingest alone, with nats-server and redis-server: 250 after JetStream stored it;
//! 4. the whole pipeline: all five stages, and a NATS probe for the rate at which messages
//!    reach their mailboxes (`stored` events).
//!
//! The ratios: ingest / smtp-sink by accepted messages per second (target 0.8 or more), and
//! pipeline / Haraka by messages per second *stored* (the pipeline's `stored` rate against
//! Haraka's accepted rate, since Haraka's 250 already means "in Redis"; target 5 or more).

use std::time::Duration;

use serde_json::{Value, json};

use crate::cli::{LoadArgs, ProcessArgs};
use crate::measure::{self, Measurement};
use crate::peer::Peer;
use crate::probe::ProbeConfig;
use crate::procs::{Fleet, Limits};
use crate::report::{RunReport, human_duration, round1, table};
use crate::resources::mib;
use crate::sample::Watched;
use crate::scenario::{Machine, ScenarioReport, bin_dir, plan_for};
use crate::size::SizeSpec;
use crate::stats::human_us;
use crate::system::{self, Stage};

/// Ingest / smtp-sink, accepted per second.
pub const INGEST_TARGET: f64 = 0.8;
/// Pipeline stored per second / Haraka accepted per second.
pub const PIPELINE_TARGET: f64 = 5.0;

const SMTP_SINK: &str = "smtp-sink";
const HARAKA: &str = "Haraka";
const INGEST: &str = "maildrop ingest";
const PIPELINE: &str = "maildrop pipeline";

pub async fn run(
    duration: Duration,
    load: &LoadArgs,
    procs: &ProcessArgs,
) -> anyhow::Result<ScenarioReport> {
    let machine = Machine::probe();
    let size = SizeSpec::Fixed(1024);
    let mut runs = Vec::new();
    let mut notes = Vec::new();
    let measurement =
        |title: &str, target, watched: Vec<Watched>, probes: ProbeConfig, salt| Measurement {
            title: title.to_owned(),
            plan: plan_for(load, target, size, duration, salt),
            probes,
            warmup: load.warmup,
            settle: load.settle,
            process_note: Some("the load generator and its probes".into()),
            sample: watched,
            sample_every: measure::SAMPLE_EVERY,
        };

    match Peer::smtp_sink().await {
        Ok(peer) => {
            let m = measurement(
                SMTP_SINK,
                peer.smtp,
                peer.watched(),
                ProbeConfig::default(),
                30,
            );
            let r = measure::run(&m).await;
            peer.stop().await;
            runs.push(r?);
        }
        Err(e) => notes.push(format!("smtp-sink was not run: {e:#}")),
    }
    match Peer::haraka(&procs.haraka_dir, &procs.haraka_nodes, &load.domain).await {
        Ok(peer) => {
            let m = measurement(
                HARAKA,
                peer.smtp,
                peer.watched(),
                ProbeConfig::default(),
                31,
            );
            let r = measure::run(&m).await;
            peer.stop().await;
            runs.push(r?);
        }
        Err(e) => notes.push(format!("Haraka was not run: {e:#}")),
    }
    let bins = bin_dir(procs);
    for (title, stages, salt) in [
        (INGEST, &[Stage::Ingest][..], 32),
        (PIPELINE, &system::ALL[..], 33),
    ] {
        let fleet = Fleet::start(stages, &load.domain, &bins, &Limits::default()).await?;
        let probes = ProbeConfig {
            nats_url: (title == PIPELINE).then(|| fleet.nats.url()),
            ..ProbeConfig::default()
        };
        let m = measurement(title, fleet.smtp, fleet.watched(), probes, salt);
        let r = measure::run(&m).await;
        fleet.stop().await;
        runs.push(r?);
    }

    let rows: Vec<Contender> = runs.iter().map(Contender::of).collect();
    let find = |name: &str| rows.iter().find(|c| c.name == name);
    let ratios = vec![
        Ratio::new(
            "ingest / smtp-sink, accepted/s",
            find(INGEST).map(|c| c.accepted_per_s),
            find(SMTP_SINK).map(|c| c.accepted_per_s),
            INGEST_TARGET,
        ),
        Ratio::new(
            "pipeline stored/s / Haraka accepted/s",
            find(PIPELINE).and_then(|c| c.stored_per_s),
            find(HARAKA).map(|c| c.accepted_per_s),
            PIPELINE_TARGET,
        ),
        Ratio::new(
            "pipeline / Haraka, accepted/s",
            find(PIPELINE).map(|c| c.accepted_per_s),
            find(HARAKA).map(|c| c.accepted_per_s),
            PIPELINE_TARGET,
        ),
    ];
    let mut extra = serde_json::Map::new();
    extra.insert(
        "comparison".into(),
        rows.iter()
            .map(Contender::to_json)
            .collect::<Vec<_>>()
            .into(),
    );
    extra.insert(
        "ratios".into(),
        ratios.iter().map(Ratio::to_json).collect::<Vec<_>>().into(),
    );
    notes.extend([
        format!(
            "Same load for all four: {}, {} sessions, {} per connection, up to {} messages or {} per run, after a warm-up of {} messages; each system started fresh, alone on the machine with the load generator.",
            size,
            load.sessions,
            load.per_connection,
            load.messages,
            human_duration(duration),
            load.warmup
        ),
        "smtp-sink accepts and discards every message; Haraka answers 250 after its queue plugin stored the message in Redis; the ingest answers 250 after JetStream stored it (file storage). `stored/s` is the rate at which the pipeline's messages reached their mailboxes in Redis (the store-writer's `stored` events), from the start of the load to the last one.".into(),
        "RSS is the sum of the peaks of the system's processes (stages, nats-server, redis-server; Haraka's master and workers and its redis-server), an upper bound on the simultaneous total; CPU is their CPU time over the measured run.".into(),
        format!("Haraka ran with nodes={} and log level warn; the stages with MAILDROP_LOG=warn unless set. {}", procs.haraka_nodes, peer_versions(&procs.haraka_dir)),
    ]);
    Ok(ScenarioReport {
        name: "peers",
        machine,
        runs,
        sections: vec![comparison_table(&rows), ratio_table(&ratios)],
        extra,
        notes,
    })
}

/// One system's line in the comparison.
#[derive(Debug, Clone, PartialEq)]
pub struct Contender {
    pub name: String,
    pub accepted_per_s: f64,
    pub stored_per_s: Option<f64>,
    pub p50_us: u64,
    pub p99_us: u64,
    pub failed: u64,
    pub rss_kib: u64,
    pub cpu: Duration,
    pub accepted: u64,
}

impl Contender {
    pub fn of(r: &RunReport) -> Self {
        let lat = r.latency();
        Self {
            name: r.title.clone(),
            accepted_per_s: r.outcome.accepted_per_second(),
            stored_per_s: r.e2e.first().map(|s| s.per_second),
            p50_us: lat.p50_us,
            p99_us: lat.p99_us,
            failed: r.outcome.failures.total(),
            rss_kib: r.processes.iter().map(|p| p.peak_rss_kib).sum(),
            cpu: r.processes.iter().map(|p| p.cpu).sum(),
            accepted: r.outcome.accepted,
        }
    }

    fn to_json(&self) -> Value {
        json!({
            "name": self.name,
            "accepted_per_second": round1(self.accepted_per_s),
            "stored_per_second": self.stored_per_s.map(round1),
            "smtp_p50_ms": self.p50_us as f64 / 1000.0,
            "smtp_p99_ms": self.p99_us as f64 / 1000.0,
            "failed": self.failed,
            "peak_rss_mib": round1(mib(self.rss_kib)),
            "cpu_s": self.cpu.as_secs_f64(),
        })
    }
}

pub fn comparison_table(rows: &[Contender]) -> String {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|c| {
            vec![
                c.name.clone(),
                format!("{:.0}", c.accepted_per_s),
                c.stored_per_s
                    .map_or_else(|| "–".to_owned(), |s| format!("{s:.0}")),
                human_us(c.p50_us),
                human_us(c.p99_us),
                c.failed.to_string(),
                format!("{:.1} MiB", mib(c.rss_kib)),
                format!("{:.2} s", c.cpu.as_secs_f64()),
                human_us(crate::report::per_message_us(c.cpu, c.accepted)),
            ]
        })
        .collect();
    format!(
        "### peers\n\n{}",
        table(
            &[
                "system",
                "accepted/s",
                "stored/s",
                "SMTP p50",
                "SMTP p99",
                "failed",
                "peak RSS",
                "CPU",
                "CPU per message",
            ],
            &rows,
        )
    )
}

/// A ratio of two rates against its target.
#[derive(Debug, Clone, PartialEq)]
pub struct Ratio {
    pub what: &'static str,
    pub value: Option<f64>,
    pub target: f64,
}

impl Ratio {
    pub fn new(what: &'static str, ours: Option<f64>, theirs: Option<f64>, target: f64) -> Self {
        let value = match (ours, theirs) {
            (Some(a), Some(b)) if b > 0.0 => Some(a / b),
            _ => None,
        };
        Self {
            what,
            value,
            target,
        }
    }

    pub fn verdict(&self) -> &'static str {
        match self.value {
            None => "not measured",
            Some(v) if v >= self.target => "met",
            Some(_) => "missed",
        }
    }

    fn to_json(&self) -> Value {
        json!({
            "ratio": self.what,
            "value": self.value.map(|v| (v * 100.0).round() / 100.0),
            "target": self.target,
            "verdict": self.verdict(),
        })
    }
}

pub fn ratio_table(ratios: &[Ratio]) -> String {
    let rows: Vec<Vec<String>> = ratios
        .iter()
        .map(|r| {
            vec![
                r.what.to_owned(),
                r.value
                    .map_or_else(|| "–".to_owned(), |v| format!("{v:.2}")),
                format!("≥ {}", r.target),
                r.verdict().to_owned(),
            ]
        })
        .collect();
    format!(
        "### ratios\n\n{}",
        table(&["ratio", "value", "target", "verdict"], &rows)
    )
}

/// node, Haraka (from the lock file) and Postfix (from dpkg) versions, as far as known.
fn peer_versions(haraka_dir: &std::path::Path) -> String {
    let node = command_line("node", &["--version"]);
    let haraka = std::fs::read_to_string(haraka_dir.join("package-lock.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .and_then(|v| {
            v["packages"]["node_modules/Haraka"]["version"]
                .as_str()
                .map(str::to_owned)
        });
    let postfix = command_line("dpkg-query", &["-W", "-f", "${Version}", "postfix"]);
    let show = |v: Option<String>| v.unwrap_or_else(|| "unknown".into());
    format!(
        "Versions: Haraka {}, node {}, postfix (smtp-sink) {}.",
        show(haraka),
        show(node),
        show(postfix)
    )
}

fn command_line(program: &str, args: &[&str]) -> Option<String> {
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (out.status.success() && !text.is_empty()).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_say_whether_the_target_was_met() {
        let r = Ratio::new("x", Some(900.0), Some(1000.0), 0.8);
        assert_eq!(r.value, Some(0.9));
        assert_eq!(r.verdict(), "met");
        assert_eq!(
            Ratio::new("x", Some(700.0), Some(1000.0), 0.8).verdict(),
            "missed"
        );
        assert_eq!(
            Ratio::new("x", None, Some(1000.0), 0.8).verdict(),
            "not measured"
        );
        assert_eq!(Ratio::new("x", Some(1.0), Some(0.0), 0.8).value, None);
        let t = ratio_table(&[r]);
        assert!(t.contains("| x     | 0.90  | ≥ 0.8  | met     |"), "{t}");
    }

    #[test]
    fn the_comparison_shows_a_dash_where_nothing_was_stored() {
        let c = Contender {
            name: "smtp-sink".into(),
            accepted_per_s: 7400.4,
            stored_per_s: None,
            p50_us: 1500,
            p99_us: 3000,
            failed: 0,
            rss_kib: 2048,
            cpu: Duration::from_secs(2),
            accepted: 20_000,
        };
        let t = comparison_table(&[c]);
        assert!(t.contains("| smtp-sink | 7400"), "{t}");
        assert!(t.contains("| –  "), "{t}");
        assert!(t.contains("2.0 MiB") && t.contains("100 µs"), "{t}");
    }
}
