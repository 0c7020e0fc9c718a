//! Matching end-to-end observations to the `250` they follow, without I/O.
//!
//! The sessions report each accepted message ([`Tracker::accepted`]); the probes in
//! [`crate::probe`] report when they see it again ([`Tracker::observed`]): as a `stored` event on
//! NATS, listed in its mailbox's Redis index, or pushed on a WebSocket. Either can come first: a
//! `stored` event may arrive before the session has read its `250` off the socket, so an early
//! observation waits in its entry and is counted (as 0 or more) when the `250` is recorded.
//!
//! `stored` and `listed` count once per message; `pushed` counts every delivery, since several
//! watchers may watch one mailbox.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::stats::{self, Latency};

/// Where a message is seen again after its `250`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// The store-writer's `stored` event on NATS.
    Stored,
    /// The message id in the mailbox's Redis index.
    Listed,
    /// A WebSocket watcher's `stored` frame.
    Pushed,
}

pub const PROBES: [Probe; 3] = [Probe::Stored, Probe::Listed, Probe::Pushed];

impl Probe {
    fn index(self) -> usize {
        match self {
            Self::Stored => 0,
            Self::Listed => 1,
            Self::Pushed => 2,
        }
    }

    /// Counted once per message rather than once per delivery.
    fn once(self) -> bool {
        !matches!(self, Self::Pushed)
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::Stored => "250 → stored event (NATS)",
            Self::Listed => "250 → listed (Redis index)",
            Self::Pushed => "250 → WebSocket push",
        }
    }

    pub fn key(self) -> &'static str {
        match self {
            Self::Stored => "stored_nats",
            Self::Listed => "listed_redis",
            Self::Pushed => "pushed_ws",
        }
    }
}

/// A message the Redis probe still has to find.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub seq: u64,
    pub mailbox_index: u32,
    pub id: String,
}

/// What one probe saw over a run.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeSummary {
    pub probe: Probe,
    pub latency: Latency,
    /// Observations matched to a `250`.
    pub seen: u64,
    /// Observations there should have been.
    pub expected: u64,
    /// Observations per second, from the start of the load to the last one.
    pub per_second: f64,
}

#[derive(Debug, Default)]
struct Entry {
    accepted: Option<Instant>,
    counted: [bool; 3],
    early: Vec<(Probe, Instant)>,
}

struct Inner {
    entries: HashMap<u64, Entry>,
    latency: [Histogram<u64>; 3],
    seen: [u64; 3],
    expected: [u64; 3],
    last_seen: [Option<Instant>; 3],
    resyncs: u64,
    redis_pending: BTreeMap<u64, (u32, String)>,
}

impl Inner {
    /// An observation at `seen` of a message accepted at `accepted`.
    fn matched(&mut self, probe: Probe, accepted: Instant, seen: Instant) {
        let i = probe.index();
        stats::record(
            &mut self.latency[i],
            seen.saturating_duration_since(accepted),
        );
        self.seen[i] += 1;
        self.last_seen[i] = Some(self.last_seen[i].map_or(seen, |t| t.max(seen)));
    }
}

/// Shared by the sessions and the probes of one run.
pub struct Tracker {
    enabled: [bool; 3],
    /// WebSocket watchers per mailbox index.
    watchers: Vec<u32>,
    inner: Mutex<Inner>,
}

impl Tracker {
    /// A tracker for the probes in `enabled`; `watchers[i]` watchers watch mailbox `i`.
    pub fn new(enabled: &[Probe], watchers: Vec<u32>) -> Self {
        let mut on = [false; 3];
        for p in enabled {
            on[p.index()] = true;
        }
        Self {
            enabled: on,
            watchers,
            inner: Mutex::new(Inner {
                entries: HashMap::new(),
                latency: [stats::histogram(), stats::histogram(), stats::histogram()],
                seen: [0; 3],
                expected: [0; 3],
                last_seen: [None; 3],
                resyncs: 0,
                redis_pending: BTreeMap::new(),
            }),
        }
    }

    pub fn is_enabled(&self, probe: Probe) -> bool {
        self.enabled[probe.index()]
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the counters inconsistent enough to matter.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Message `seq` to mailbox `mailbox_index` got its `250` at `at` (with the server's id).
    pub fn accepted(&self, seq: u64, mailbox_index: u32, id: Option<&str>, at: Instant) {
        let watchers = self
            .watchers
            .get(mailbox_index as usize)
            .copied()
            .unwrap_or(0);
        let mut inner = self.lock();
        let inner = &mut *inner;
        for p in PROBES {
            if self.enabled[p.index()] {
                inner.expected[p.index()] += if p.once() { 1 } else { u64::from(watchers) };
            }
        }
        let entry = inner.entries.entry(seq).or_default();
        entry.accepted = Some(at);
        let early = std::mem::take(&mut entry.early);
        // Without an id in the reply the index cannot be asked; the message shows as missing.
        if let Some(id) = id
            && self.enabled[Probe::Listed.index()]
            && !entry.counted[Probe::Listed.index()]
        {
            inner
                .redis_pending
                .insert(seq, (mailbox_index, id.to_owned()));
        }
        for (probe, seen_at) in early {
            inner.matched(probe, at, seen_at);
        }
    }

    /// A probe saw message `seq` at `at`.
    pub fn observed(&self, probe: Probe, seq: u64, at: Instant) {
        let i = probe.index();
        let mut inner = self.lock();
        let inner = &mut *inner;
        let entry = inner.entries.entry(seq).or_default();
        if probe.once() {
            if entry.counted[i] {
                return;
            }
            entry.counted[i] = true;
        }
        if probe == Probe::Listed {
            inner.redis_pending.remove(&seq);
        }
        match entry.accepted {
            Some(accepted) => inner.matched(probe, accepted, at),
            None => entry.early.push((probe, at)),
        }
    }

    /// A watcher was told to resync (it fell behind and lost events).
    pub fn resynced(&self) {
        self.lock().resyncs += 1;
    }

    pub fn resyncs(&self) -> u64 {
        self.lock().resyncs
    }

    /// Up to `max` messages the Redis probe has not found yet, oldest first.
    pub fn redis_pending(&self, max: usize) -> Vec<Pending> {
        self.lock()
            .redis_pending
            .iter()
            .take(max)
            .map(|(&seq, (mailbox_index, id))| Pending {
                seq,
                mailbox_index: *mailbox_index,
                id: id.clone(),
            })
            .collect()
    }

    /// Every enabled probe has seen everything it should have.
    pub fn complete(&self) -> bool {
        let inner = self.lock();
        PROBES
            .iter()
            .filter(|p| self.enabled[p.index()])
            .all(|p| inner.seen[p.index()] >= inner.expected[p.index()])
    }

    /// Latencies and counts of the enabled probes; rates are measured from `start`.
    pub fn summary(&self, start: Instant) -> Vec<ProbeSummary> {
        let inner = self.lock();
        PROBES
            .iter()
            .filter(|p| self.enabled[p.index()])
            .map(|&p| {
                let i = p.index();
                let span = inner.last_seen[i].map_or(Duration::ZERO, |t| t - start);
                ProbeSummary {
                    probe: p,
                    latency: Latency::of(&inner.latency[i]),
                    seen: inner.seen[i],
                    expected: inner.expected[i],
                    per_second: stats::per_second(inner.seen[i], span),
                }
            })
            .collect()
    }
}

/// How many of `watchers` watchers watch each of `mailboxes` mailboxes (watcher `w` watches
/// mailbox `w % mailboxes`).
pub fn spread_watchers(watchers: u32, mailboxes: u32) -> Vec<u32> {
    let mailboxes = mailboxes.max(1);
    (0..mailboxes)
        .map(|m| watchers / mailboxes + u32::from(m < watchers % mailboxes))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn latency_runs_from_the_250_to_the_observation() {
        let t = Tracker::new(&[Probe::Stored], vec![]);
        let t0 = Instant::now();
        t.accepted(1, 0, Some("A"), t0);
        assert!(!t.complete());
        t.observed(Probe::Stored, 1, t0 + ms(5));
        assert!(t.complete());
        let s = &t.summary(t0)[0];
        assert_eq!((s.seen, s.expected), (1, 1));
        assert!((4_990..=5_010).contains(&s.latency.p50_us), "{s:?}");
    }

    #[test]
    fn an_observation_before_the_250_is_counted_when_it_arrives() {
        let t = Tracker::new(&[Probe::Stored], vec![]);
        let t0 = Instant::now();
        t.observed(Probe::Stored, 7, t0 + ms(3));
        assert!(t.complete(), "nothing was expected yet");
        t.accepted(7, 0, None, t0 + ms(1));
        let s = &t.summary(t0)[0];
        assert_eq!((s.seen, s.expected, s.latency.count), (1, 1, 1));
        assert!((1_990..=2_010).contains(&s.latency.p50_us), "{s:?}");
        // Later than the 250 it follows: clamped to the smallest value, never negative.
        t.observed(Probe::Stored, 8, t0);
        t.accepted(8, 0, None, t0 + ms(1));
        assert_eq!(t.summary(t0)[0].latency.count, 2);
    }

    #[test]
    fn stored_counts_once_but_every_watcher_push_counts() {
        // Two watchers on mailbox 0, none on mailbox 1.
        let t = Tracker::new(&[Probe::Stored, Probe::Pushed], vec![2, 0]);
        let t0 = Instant::now();
        t.accepted(0, 0, None, t0);
        t.accepted(1, 1, None, t0);
        for _ in 0..2 {
            t.observed(Probe::Stored, 0, t0 + ms(1));
            t.observed(Probe::Pushed, 0, t0 + ms(2));
        }
        let s = t.summary(t0);
        assert_eq!((s[0].seen, s[0].expected), (1, 2));
        assert_eq!((s[1].seen, s[1].expected), (2, 2));
        assert!(!t.complete());
        t.observed(Probe::Stored, 1, t0 + ms(4));
        assert!(t.complete());
        // 2 stored over the 4 ms from the start to the last one.
        assert_eq!(t.summary(t0)[0].per_second, 500.0);
    }

    #[test]
    fn the_redis_probe_is_handed_ids_until_it_finds_them() {
        let t = Tracker::new(&[Probe::Listed], vec![]);
        let t0 = Instant::now();
        t.accepted(2, 5, Some("ID2"), t0);
        t.accepted(1, 4, Some("ID1"), t0);
        t.accepted(3, 6, None, t0);
        let pending = t.redis_pending(10);
        assert_eq!(
            pending,
            [
                Pending {
                    seq: 1,
                    mailbox_index: 4,
                    id: "ID1".into()
                },
                Pending {
                    seq: 2,
                    mailbox_index: 5,
                    id: "ID2".into()
                }
            ]
        );
        assert_eq!(t.redis_pending(1).len(), 1);
        t.observed(Probe::Listed, 1, t0 + ms(1));
        assert_eq!(t.redis_pending(10).len(), 1);
        let s = &t.summary(t0)[0];
        assert_eq!((s.seen, s.expected), (1, 3));
    }

    #[test]
    fn disabled_probes_are_not_reported_or_waited_for() {
        let t = Tracker::new(&[], vec![]);
        t.accepted(1, 0, Some("x"), Instant::now());
        assert!(t.complete());
        assert!(t.summary(Instant::now()).is_empty());
        assert!(t.redis_pending(10).is_empty());
        assert!(!t.is_enabled(Probe::Stored));
    }

    #[test]
    fn watchers_are_spread_evenly() {
        assert_eq!(spread_watchers(10, 4), [3, 3, 2, 2]);
        assert_eq!(spread_watchers(2, 4), [1, 1, 0, 0]);
        assert_eq!(spread_watchers(0, 3), [0, 0, 0]);
        assert_eq!(spread_watchers(3, 0), [3]);
    }
}
