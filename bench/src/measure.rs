//! One measured run: warm up, connect the probes, send the load, wait for the last end-to-end
//! observations, and snapshot CPU and memory around it all.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::load::{self, Plan};
use crate::message::RunTag;
use crate::probe::{ProbeConfig, Probes};
use crate::report::{ResourceReport, RunReport};
use crate::resources::Snapshot;
use crate::sample::{Sampler, Watched};

/// Longest a warm-up may take, whatever the run's own limit.
const WARMUP_LIMIT: Duration = Duration::from_secs(20);

/// A run to measure.
#[derive(Debug, Clone)]
pub struct Measurement {
    pub title: String,
    pub plan: Plan,
    pub probes: ProbeConfig,
    pub warmup: u64,
    pub settle: Duration,
    /// What this process is, for the CPU line (e.g. "bench client + ingest, in-process").
    pub process_note: Option<String>,
    /// Other processes to sample during the measured run (not the warm-up), and how often.
    pub sample: Vec<Watched>,
    pub sample_every: Duration,
}

/// How often a run samples its processes unless a scenario says otherwise.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(250);

/// A tag no other run shares: the clock, the process id and a salt mixed together.
pub fn fresh_tag(salt: u64) -> RunTag {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    RunTag::from_u64(nanos ^ (u64::from(std::process::id()) << 20) ^ salt.rotate_left(40))
}

/// Runs `m` and reports it. Progress goes to stderr.
pub async fn run(m: &Measurement) -> anyhow::Result<RunReport> {
    if m.warmup > 0 {
        eprintln!(
            "maildrop-bench: {}: warming up with {} messages…",
            m.title, m.warmup
        );
        let warm = Plan {
            messages: m.warmup,
            duration: m.plan.duration.min(WARMUP_LIMIT),
            tag: fresh_tag(1),
            ..m.plan.clone()
        };
        // The warm-up waits for the NATS probe only: opening thousands of watchers twice would
        // make the warm-up the longest part of a push run.
        let warm_probes = ProbeConfig {
            ws_watchers: 0,
            ..m.probes.clone()
        };
        let probes = Probes::start(&warm_probes, &warm.tag, warm.mailboxes).await?;
        let _ = load::run(&warm, warm_probes.any().then(|| probes.tracker.clone())).await;
        // Let the pipeline drain the warm-up so it does not queue ahead of the measured run.
        probes.settle(m.settle.min(WARMUP_LIMIT)).await;
        probes.stop().await;
    }
    eprintln!(
        "maildrop-bench: {}: sending up to {} messages for at most {:?}…",
        m.title, m.plan.messages, m.plan.duration
    );
    let probes = Probes::start(&m.probes, &m.plan.tag, m.plan.mailboxes).await?;
    let tracker = m.probes.any().then(|| probes.tracker.clone());
    let sampler = Sampler::start(m.sample.clone(), m.sample_every);
    let before = Snapshot::take();
    let start = Instant::now();
    let outcome = load::run(&m.plan, tracker).await;
    if m.probes.any() && !probes.settle(m.settle).await {
        eprintln!(
            "maildrop-bench: {}: not every end-to-end observation arrived within {:?}; the missing ones are reported.",
            m.title, m.settle
        );
    }
    let after = Snapshot::take();
    let wall = start.elapsed();
    let processes = sampler.stop().await;
    let e2e = probes.tracker.summary(start);
    let resyncs = probes.tracker.resyncs();
    probes.stop().await;
    Ok(RunReport {
        title: m.title.clone(),
        plan: m.plan.clone(),
        outcome,
        e2e,
        resyncs,
        resources: Some(ResourceReport::between(
            &before,
            &after,
            wall,
            m.process_note.clone(),
        )),
        processes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_tags_differ() {
        assert_ne!(fresh_tag(1), fresh_tag(2));
        assert!(fresh_tag(0).as_str().starts_with("mdb-"));
    }
}
