//! One load run: N sessions over a shared budget of messages and time.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::message::{Generator, RunTag};
use crate::session::{self, Shared};
use crate::size::SizeSpec;
use crate::stats::{self, Failures};
use crate::track::Tracker;

/// What to send, where, and for how long.
#[derive(Debug, Clone)]
pub struct Plan {
    pub target: SocketAddr,
    pub sessions: u32,
    pub per_connection: u32,
    pub messages: u64,
    pub duration: Duration,
    pub size: SizeSpec,
    pub mailboxes: u32,
    pub domain: String,
    pub reply_timeout: Duration,
    pub seed: u64,
    pub tag: RunTag,
    /// Messages per second to start, all sessions together (`None`: as fast as the sessions go).
    /// Message `n` is started no earlier than `n / rate` seconds into the run.
    pub rate: Option<f64>,
}

/// What ended the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    Count,
    Duration,
}

impl StopReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Count => "message count",
            Self::Duration => "duration limit",
        }
    }
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub sent: u64,
    pub accepted: u64,
    pub failures: Failures,
    /// SMTP transaction latency (MAIL to the 250 after DATA) of accepted messages, µs.
    pub latency: Histogram<u64>,
    /// Message bytes sent (before dot-stuffing).
    pub bytes: u64,
    pub connections: u64,
    /// From the first connect to the last session's end.
    pub elapsed: Duration,
    pub stopped_by: StopReason,
}

impl Outcome {
    pub fn accepted_per_second(&self) -> f64 {
        stats::per_second(self.accepted, self.elapsed)
    }
}

/// Runs `plan` to its end, reporting accepted messages to `tracker`.
pub async fn run(plan: &Plan, tracker: Option<Arc<Tracker>>) -> Outcome {
    let start = Instant::now();
    let shared = Arc::new(Shared {
        target: plan.target,
        per_connection: plan.per_connection.max(1),
        messages: plan.messages,
        start,
        rate: plan.rate.filter(|r| *r > 0.0),
        deadline: start + plan.duration,
        reply_timeout: plan.reply_timeout,
        tracker,
        next: AtomicU64::new(0),
    });
    let sessions: Vec<_> = (0..plan.sessions.max(1))
        .map(|i| {
            let generator = Generator::new(
                plan.tag.clone(),
                &plan.domain,
                plan.mailboxes,
                plan.size,
                session_seed(plan.seed, i),
            );
            tokio::spawn(session::run(shared.clone(), generator))
        })
        .collect();
    let mut outcome = Outcome {
        sent: 0,
        accepted: 0,
        failures: Failures::default(),
        latency: stats::histogram(),
        bytes: 0,
        connections: 0,
        elapsed: Duration::ZERO,
        stopped_by: StopReason::Count,
    };
    for s in sessions {
        let r = s.await.expect("a session does not panic");
        outcome.sent += r.sent;
        outcome.accepted += r.accepted;
        outcome.failures.merge(&r.failures);
        outcome
            .latency
            .add(&r.latency)
            .expect("histograms of the same bounds add");
        outcome.bytes += r.bytes;
        outcome.connections += r.connections;
    }
    outcome.elapsed = start.elapsed();
    outcome.stopped_by = stop_reason(outcome.sent, plan.messages);
    outcome
}

/// The count ends a run that sent everything; anything less was cut by the clock.
pub fn stop_reason(sent: u64, messages: u64) -> StopReason {
    if sent >= messages {
        StopReason::Count
    } else {
        StopReason::Duration
    }
}

/// Distinct generator seeds per session from one run seed.
fn session_seed(seed: u64, session: u32) -> u64 {
    seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ u64::from(session)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_count_means_the_clock_stopped_the_run() {
        assert_eq!(stop_reason(20_000, 20_000), StopReason::Count);
        assert_eq!(stop_reason(12_345, 20_000), StopReason::Duration);
        assert_eq!(StopReason::Duration.as_str(), "duration limit");
    }

    #[test]
    fn sessions_get_different_seeds() {
        assert_ne!(session_seed(1, 0), session_seed(1, 1));
        assert_ne!(session_seed(1, 0), session_seed(2, 0));
    }

    #[test]
    fn the_rate_is_accepted_messages_over_the_run() {
        let o = Outcome {
            sent: 110,
            accepted: 100,
            failures: Failures::default(),
            latency: stats::histogram(),
            bytes: 0,
            connections: 0,
            elapsed: Duration::from_millis(500),
            stopped_by: StopReason::Count,
        };
        assert_eq!(o.accepted_per_second(), 200.0);
    }
}
