//! `scenario push`: the live path under many watchers. All five stages run as processes; for
//! each watcher count (1,000 and 10,000 by default) a fresh system gets that many WebSocket
//! watchers spread evenly over `--push-mailboxes` mailboxes, then messages (the size mix) to those
//! mailboxes at a fixed rate (`--push-rate`, 1,000 per second by default). Reported: latency from
//! the `250` to each WebSocket push (p50/p99; target p99 under 50 ms at 1,000 msg/s) and to the
//! `stored` event on NATS, and every process's CPU and memory, the gateway's above all.
//!
//! The gateway's watcher caps (per IP and in total) are raised to the watcher count, since every
//! watcher comes from 127.0.0.1; `maildrop-bench` raises its own open-file limit (and so that of
//! the stages it starts) to the hard limit.

use std::time::Duration;

use serde_json::json;

use crate::cli::{LoadArgs, ProcessArgs};
use crate::measure::{self, Measurement};
use crate::probe::ProbeConfig;
use crate::procs::{Fleet, Limits};
use crate::report::table;
use crate::resources::mib;
use crate::scenario::{Machine, ScenarioReport, bin_dir, plan_for};
use crate::size::SizeSpec;
use crate::stats::human_us;
use crate::system;
use crate::track::Probe;

/// The push target: p99 from 250 to the WebSocket frame.
pub const P99_TARGET_US: u64 = 50_000;

pub async fn run(
    duration: Duration,
    load: &LoadArgs,
    procs: &ProcessArgs,
) -> anyhow::Result<ScenarioReport> {
    let machine = Machine::probe();
    let bins = bin_dir(procs);
    let mut runs = Vec::new();
    for (i, &watchers) in procs.push_watchers.iter().enumerate() {
        let limits = Limits {
            watchers: Some(watchers.saturating_add(100)),
            ..Limits::default()
        };
        let fleet = Fleet::start(&system::ALL, &load.domain, &bins, &limits).await?;
        let http = fleet.http.expect("the pipeline runs the gateway");
        let mut plan = plan_for(load, fleet.smtp, SizeSpec::Mix, duration, 40 + i as u64);
        plan.mailboxes = procs.push_mailboxes;
        plan.messages = procs.push_messages;
        plan.rate = Some(f64::from(procs.push_rate));
        let m = Measurement {
            title: format!("push · {watchers} watchers · {} msg/s", procs.push_rate),
            plan,
            probes: ProbeConfig {
                nats_url: Some(fleet.nats.url()),
                redis_url: None,
                ws_url: Some(format!("ws://{http}")),
                ws_watchers: watchers,
            },
            warmup: load.warmup,
            settle: load.settle,
            process_note: Some("the load generator, its NATS probe and the watchers".into()),
            sample: fleet.watched(),
            sample_every: measure::SAMPLE_EVERY,
        };
        let r = measure::run(&m).await;
        fleet.stop().await;
        runs.push(r?);
    }
    let rows: Vec<Vec<String>> = runs
        .iter()
        .zip(&procs.push_watchers)
        .map(|(r, watchers)| {
            let pushed = r.e2e.iter().find(|s| s.probe == Probe::Pushed);
            let gateway = r.processes.iter().find(|p| p.name == "gateway");
            vec![
                watchers.to_string(),
                format!("{:.0}", r.outcome.accepted_per_second()),
                pushed.map_or("–".into(), |s| human_us(s.latency.p50_us)),
                pushed.map_or("–".into(), |s| human_us(s.latency.p99_us)),
                pushed.map_or("–".into(), |s| format!("{} of {}", s.seen, s.expected)),
                pushed.map_or("–".into(), |s| {
                    if s.latency.p99_us < P99_TARGET_US && s.seen == s.expected {
                        "met".into()
                    } else {
                        "missed".into()
                    }
                }),
                gateway.map_or("–".into(), |g| format!("{:.1} MiB", mib(g.peak_rss_kib))),
                gateway.map_or("–".into(), |g| format!("{:.2} s", g.cpu.as_secs_f64())),
                r.resyncs.to_string(),
            ]
        })
        .collect();
    let section = format!(
        "### push path\n\n{}",
        table(
            &[
                "watchers",
                "accepted/s",
                "250 → push p50",
                "250 → push p99",
                "pushes seen",
                "p99 < 50 ms",
                "gateway peak RSS",
                "gateway CPU",
                "resyncs",
            ],
            &rows,
        )
    );
    let mut extra = serde_json::Map::new();
    extra.insert(
        "push".into(),
        json!({ "rate": procs.push_rate, "mailboxes": procs.push_mailboxes, "p99_target_ms": P99_TARGET_US / 1000 }),
    );
    Ok(ScenarioReport {
        name: "push",
        machine,
        runs,
        sections: vec![section],
        extra,
        notes: vec![
            format!(
                "Each run: a fresh system (all five stages as processes), the watchers spread evenly over {} mailboxes, then {} messages of the size mix to those mailboxes, started at {} per second by {} sessions; a warm-up of {} messages first (with the NATS probe only).",
                procs.push_mailboxes, procs.push_messages, procs.push_rate, load.sessions, load.warmup
            ),
            "250 → push: from the 250 to the `stored` frame on a watcher's WebSocket, once per watcher of the message's mailbox; `pushes seen` counts them against those expected. A `resync` is a watcher the gateway told to reload because it fell behind.".into(),
            "The gateway's --max-watchers and --max-watchers-per-ip are raised to the watcher count plus 100 (all watchers are 127.0.0.1).".into(),
        ],
    })
}
