//! `scenario connections`: many open SMTP sessions that do nothing. All five stages run as
//! processes; `--idle-connections` sessions (1,000 by default) connect to the ingest, read the
//! greeting, say `EHLO` and stay idle for `--idle-hold`. Then each says `NOOP`, to show it is still
//! being served, and the sessions close. Reported per process: RSS before, with every session
//! open, and the peak; the target is each stage under 50 MB.
//!
//! The ingest's `--max-connections` is raised above the count; loopback is exempt from its per-IP
//! limits by default, and its idle timeout (5 minutes) is longer than the hold.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::cli::{LoadArgs, ProcessArgs};
use crate::procs::{Fleet, Limits};
use crate::report::{human_duration, round1, table};
use crate::resources::mib;
use crate::sample::{ProcessUsage, Sampler, read};
use crate::scenario::{Machine, ScenarioReport, bin_dir};
use crate::smtp::parse_reply;
use crate::system;

/// Each stage's RSS with the sessions open must stay under this (50 MB).
pub const STAGE_RSS_TARGET_BYTES: u64 = 50_000_000;
/// Sessions connecting at once.
const CONNECTS_AT_ONCE: usize = 64;
const SAMPLE_EVERY: Duration = Duration::from_millis(250);

pub async fn run(load: &LoadArgs, procs: &ProcessArgs) -> anyhow::Result<ScenarioReport> {
    let machine = Machine::probe();
    let n = procs.idle_connections;
    let limits = Limits {
        smtp_connections: Some(n.saturating_add(1000)),
        ..Limits::default()
    };
    let mut fleet = Fleet::start(&system::ALL, &load.domain, &bin_dir(procs), &limits).await?;
    let watched = fleet.watched();
    let sampler = Sampler::start(watched.clone(), SAMPLE_EVERY);
    eprintln!("maildrop-bench: connections: opening {n} idle SMTP sessions…");
    let started = Instant::now();
    let smtp = fleet.smtp;
    let timeout = load.reply_timeout;
    let results: Vec<Option<Idle>> = futures::stream::iter(0..n)
        .map(|_| async move { Idle::open(smtp, timeout).await })
        .buffer_unordered(CONNECTS_AT_ONCE)
        .collect()
        .await;
    let opening = started.elapsed();
    let mut open: Vec<Idle> = results.into_iter().flatten().collect();
    let opened = open.len();
    eprintln!(
        "maildrop-bench: connections: {} of {n} open after {}; holding for {}…",
        open.len(),
        human_duration(opening),
        human_duration(procs.idle_hold)
    );
    tokio::time::sleep(procs.idle_hold).await;
    let at = started.elapsed();
    let held: Vec<Option<u64>> = watched
        .iter()
        .map(|w| read(w, at).map(|r| r.rss_kib))
        .collect();
    let mut alive = 0u32;
    for conn in &mut open {
        if conn.noop(timeout).await {
            alive += 1;
        }
    }
    drop(open);
    let usage = sampler.stop().await;
    let running = fleet.check_running();
    fleet.stop().await;
    running?;

    let rows: Vec<IdleRow> = usage
        .iter()
        .zip(&held)
        .map(|(u, held)| IdleRow::of(u, *held))
        .collect();
    let section = format!("### {n} idle SMTP sessions\n\n{}", idle_table(&rows));
    let mut extra = serde_json::Map::new();
    extra.insert(
        "connections".into(),
        json!({
            "asked": n,
            "opened": opened,
            "alive_after_hold": alive,
            "open_s": opening.as_secs_f64(),
            "hold_s": procs.idle_hold.as_secs_f64(),
            "processes": rows.iter().map(|r| json!({
                "name": r.name,
                "rss_before_mib": round1(mib(r.before_kib)),
                "rss_held_mib": r.held_kib.map(|k| round1(mib(k))),
                "peak_rss_mib": round1(mib(r.peak_kib)),
                "under_target": r.under_target(),
            })).collect::<Vec<_>>(),
        }),
    );
    Ok(ScenarioReport {
        name: "connections",
        machine,
        runs: vec![],
        sections: vec![section],
        extra,
        notes: vec![
            format!(
                "{n} sessions asked for, {opened} open after {} ({CONNECTS_AT_ONCE} connecting at once); held idle for {}; {alive} answered NOOP with 250 at the end.",
                human_duration(opening),
                human_duration(procs.idle_hold)
            ),
            "RSS before: the first reading, before any session; held: with every session open, after the hold; peak: VmHWM (highest since the process started). Target: each stage under 50 MB (47.7 MiB) held; nats-server and redis-server are shown for completeness.".into(),
            "All five stages run, but only the ingest holds the sessions; the others are idle here.".into(),
        ],
    })
}

/// One process's memory in the connections scenario.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdleRow {
    pub name: String,
    pub before_kib: u64,
    pub held_kib: Option<u64>,
    pub peak_kib: u64,
}

impl IdleRow {
    pub fn of(u: &ProcessUsage, held_kib: Option<u64>) -> Self {
        Self {
            name: u.name.clone(),
            before_kib: u.readings.first().map_or(0, |r| r.rss_kib),
            held_kib,
            peak_kib: u.peak_rss_kib,
        }
    }

    fn is_stage(&self) -> bool {
        system::ALL.iter().any(|s| s.name() == self.name)
    }

    /// `Some(under)` for a stage, `None` for the servers (no target).
    pub fn under_target(&self) -> Option<bool> {
        self.is_stage()
            .then(|| self.held_kib.unwrap_or(self.peak_kib) * 1024 < STAGE_RSS_TARGET_BYTES)
    }
}

pub fn idle_table(rows: &[IdleRow]) -> String {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.name.clone(),
                format!("{:.1} MiB", mib(r.before_kib)),
                r.held_kib
                    .map_or_else(|| "gone".to_owned(), |k| format!("{:.1} MiB", mib(k))),
                format!("{:.1} MiB", mib(r.peak_kib)),
                match r.under_target() {
                    Some(true) => "yes".to_owned(),
                    Some(false) => "no".to_owned(),
                    None => "–".to_owned(),
                },
            ]
        })
        .collect();
    table(
        &["process", "RSS before", "RSS held", "peak RSS", "< 50 MB"],
        &rows,
    )
}

/// One idle session after `EHLO`.
struct Idle {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Idle {
    async fn open(addr: SocketAddr, timeout: Duration) -> Option<Self> {
        let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .ok()?
            .ok()?;
        let mut s = Self {
            stream,
            buf: Vec::with_capacity(512),
        };
        (s.reply(timeout).await? == 220).then_some(())?;
        s.stream
            .write_all(b"EHLO idle.bench.maildrop.localhost\r\n")
            .await
            .ok()?;
        (s.reply(timeout).await? == 250).then_some(s)
    }

    async fn noop(&mut self, timeout: Duration) -> bool {
        self.stream.write_all(b"NOOP\r\n").await.is_ok() && self.reply(timeout).await == Some(250)
    }

    async fn reply(&mut self, timeout: Duration) -> Option<u16> {
        loop {
            if let Some((reply, used)) = parse_reply(&self.buf).ok()? {
                self.buf.drain(..used);
                return Some(reply.code);
            }
            let n = tokio::time::timeout(timeout, self.stream.read_buf(&mut self.buf))
                .await
                .ok()?
                .ok()?;
            if n == 0 {
                return None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_stages_have_a_memory_target() {
        let row = |name: &str, held_mib: u64| IdleRow {
            name: name.into(),
            before_kib: 1024,
            held_kib: Some(held_mib * 1024),
            peak_kib: held_mib * 1024,
        };
        assert_eq!(row("ingest", 20).under_target(), Some(true));
        assert_eq!(row("gateway", 48).under_target(), Some(false));
        assert_eq!(row("nats-server", 300).under_target(), None);
        let t = idle_table(&[row("ingest", 20), row("redis-server", 9)]);
        assert!(
            t.contains("| ingest       | 1.0 MiB    | 20.0 MiB | 20.0 MiB | yes"),
            "{t}"
        );
        assert!(t.contains("| –"), "{t}");
    }
}
