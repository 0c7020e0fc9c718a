//! The load generator against the real pipeline (in-process, real nats-server and redis-server):
//! every probe must see every message it should, so the end-to-end numbers of `make bench` are
//! numbers of messages that really arrived.

use std::time::Duration;

use maildrop_bench::load::{Plan, StopReason};
use maildrop_bench::measure::{self, Measurement};
use maildrop_bench::probe::ProbeConfig;
use maildrop_bench::size::SizeSpec;
use maildrop_bench::system::{self, InProcess, Stage};
use maildrop_bench::track::Probe;

const DOMAIN: &str = "bench.test";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_probe_sees_every_message_of_a_small_run() -> anyhow::Result<()> {
    let system = InProcess::start(&system::ALL, DOMAIN).await?;
    let http = system.http.expect("the gateway runs");
    let m = Measurement {
        title: "probes".into(),
        plan: Plan {
            target: system.smtp,
            sessions: 4,
            per_connection: 3,
            messages: 120,
            duration: Duration::from_secs(30),
            size: SizeSpec::Mix,
            // Fewer messages per mailbox than it keeps, so no message is evicted before the
            // Redis probe finds it.
            mailboxes: 40,
            domain: DOMAIN.into(),
            reply_timeout: Duration::from_secs(10),
            seed: 3,
            tag: measure::fresh_tag(99),
            rate: None,
        },
        probes: ProbeConfig {
            nats_url: Some(system.nats.url()),
            redis_url: system.redis.as_ref().map(|r| r.url()),
            ws_url: Some(format!("ws://{http}")),
            ws_watchers: 5,
        },
        warmup: 10,
        settle: Duration::from_secs(20),
        process_note: None,
        sample: vec![],
        sample_every: measure::SAMPLE_EVERY,
    };
    let report = measure::run(&m).await;
    system.stop().await?;
    let report = report?;

    assert_eq!(report.outcome.accepted, 120, "{}", report.table());
    assert_eq!(report.outcome.failures.total(), 0);
    assert_eq!(report.outcome.stopped_by, StopReason::Count);
    // Three messages per connection; a session's last connection may carry fewer.
    assert!((40..=44).contains(&report.outcome.connections));
    for probe in [Probe::Stored, Probe::Listed, Probe::Pushed] {
        let s = report
            .e2e
            .iter()
            .find(|s| s.probe == probe)
            .unwrap_or_else(|| panic!("{probe:?} reported"));
        assert_eq!(s.seen, s.expected, "{probe:?}: {}", report.table());
        assert!(s.seen > 0);
    }
    // Watchers on 5 of 40 mailboxes: 3 messages each.
    let pushed = report
        .e2e
        .iter()
        .find(|s| s.probe == Probe::Pushed)
        .unwrap();
    assert_eq!(pushed.expected, 15);
    assert!(report.table().contains("250 → WebSocket push"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ingest_alone_accepts_fixed_sizes() -> anyhow::Result<()> {
    let system = InProcess::start(&[Stage::Ingest], DOMAIN).await?;
    let m = Measurement {
        title: "ingest".into(),
        plan: Plan {
            target: system.smtp,
            sessions: 5,
            per_connection: 1,
            messages: 50,
            duration: Duration::from_secs(30),
            size: SizeSpec::Fixed(20 * 1024),
            mailboxes: 10,
            domain: DOMAIN.into(),
            reply_timeout: Duration::from_secs(10),
            seed: 1,
            tag: measure::fresh_tag(98),
            rate: None,
        },
        probes: ProbeConfig::default(),
        warmup: 0,
        settle: Duration::from_secs(1),
        process_note: None,
        sample: vec![],
        sample_every: measure::SAMPLE_EVERY,
    };
    let report = measure::run(&m).await;
    system.stop().await?;
    let report = report?;
    assert_eq!(report.outcome.accepted, 50, "{}", report.table());
    assert_eq!(report.outcome.bytes, 50 * 20 * 1024);
    assert_eq!(report.latency().count, 50);
    assert!(report.e2e.is_empty());
    Ok(())
}
