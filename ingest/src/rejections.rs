//! Ingest-time rejections as events on `maildrop.rejected.ingest`, so research and the reporter see
//! every refused attempt, not only the messages that reached the filter.
//!
//! [`classify`] is pure: which SMTP replies count as a rejection, and why. [`Rejections`] publishes
//! them **without ever slowing a session**: the connection only `try_send`s into a bounded buffer;
//! a full buffer (a flood of refusals, a slow bus) drops the event and counts the drop. One
//! background task empties the buffer, publishing with a bounded number of acknowledgements in
//! flight. It ends when the last connection lets go of its sender, that is, after the server has
//! stopped. The event id is its `Nats-Msg-Id`.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::jetstream::{self, message::PublishMessage};
use maildrop_contract::{IngestRejection, MessageId, RejectReason, event, now_ms, subject};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::smtp::{Attempt, Reply, Verb};

/// Publishes waiting for their acknowledgement at once.
const IN_FLIGHT: usize = 64;

/// The rejection a reply to `verb` (`None`: the end of a body or chunk, or no command) stands for,
/// if it is one worth recording. Syntax errors and temporary failures of our own are not.
pub fn classify(verb: Option<Verb>, reply: &Reply) -> Option<RejectReason> {
    if reply.code < 400 {
        return None;
    }
    let enhanced = reply.enhanced?;
    let rcpt = verb == Some(Verb::Rcpt);
    Some(match (reply.code, enhanced) {
        (451, (4, 7, 1)) if rcpt => RejectReason::Greylisted,
        (550, (5, 7, 1)) if rcpt => RejectReason::RelayDenied,
        (553, (5, 1, 3)) if rcpt => RejectReason::InvalidRecipient,
        (452, (4, 5, 3)) if rcpt => RejectReason::TooManyRecipients,
        (552, (5, 3, 4)) => RejectReason::TooLarge,
        (550, (5, 6, _)) => RejectReason::BadInput,
        _ => return None,
    })
}

/// Builds the event for a refusal.
pub fn event(
    client: IpAddr,
    attempt: Attempt,
    reason: RejectReason,
    reply: &Reply,
) -> IngestRejection {
    IngestRejection {
        v: event::VERSION,
        id: MessageId::new(),
        client_ip: client.to_string(),
        helo: attempt.helo,
        mail_from: attempt.mail_from,
        rcpt: attempt.rcpt_to,
        reason,
        code: reply.code,
        enhanced: reply.enhanced.map(|(c, s, d)| format!("{c}.{s}.{d}")),
        time_ms: now_ms(),
    }
}

/// How many events went where, since start.
#[derive(Debug, Default)]
pub struct Counts {
    pub published: AtomicU64,
    /// Dropped because the buffer was full.
    pub dropped: AtomicU64,
    /// The publish failed or was not acknowledged in time.
    pub failed: AtomicU64,
}

/// The sending half, shared by every connection.
#[derive(Debug, Clone)]
pub struct Rejections {
    tx: Option<mpsc::Sender<IngestRejection>>,
    counts: Arc<Counts>,
}

impl Rejections {
    /// Starts the publishing task with a buffer of `capacity` events; 0 turns events off.
    pub fn spawn(js: jetstream::Context, capacity: usize, timeout: Duration) -> Self {
        let counts = Arc::new(Counts::default());
        if capacity == 0 {
            return Self { tx: None, counts };
        }
        let (tx, rx) = mpsc::channel(capacity);
        tokio::spawn(publish_all(js, rx, timeout, counts.clone()));
        Self {
            tx: Some(tx),
            counts,
        }
    }

    /// Events not published at all.
    pub fn disabled() -> Self {
        Self {
            tx: None,
            counts: Arc::default(),
        }
    }

    pub fn counts(&self) -> &Counts {
        &self.counts
    }

    /// Records the reply to `verb` if it is a rejection; never waits.
    pub fn observe(
        &self,
        client: IpAddr,
        verb: Option<Verb>,
        reply: &Reply,
        attempt: impl FnOnce() -> Attempt,
    ) {
        let Some(reason) = classify(verb, reply) else {
            return;
        };
        count(reason, reply);
        if self.tx.is_some() {
            self.record(event(client, attempt(), reason, reply));
        }
    }

    /// Records a refusal before any session (blocked, rate-limited); never waits.
    pub fn connection(&self, client: IpAddr, reason: RejectReason, reply: &Reply) {
        count(reason, reply);
        metrics::counter!("maildrop_ingest_connections_total", "result" => "refused", "reason" => reason.as_str())
            .increment(1);
        if self.tx.is_some() {
            self.record(event(client, Attempt::default(), reason, reply));
        }
    }

    fn record(&self, rejection: IngestRejection) {
        let Some(tx) = &self.tx else { return };
        if tx.try_send(rejection).is_err() {
            let dropped = self.counts.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            metrics::counter!("maildrop_ingest_rejection_events_dropped_total").increment(1);
            // Once, then every 1,000th: a flood must not flood the log too.
            if dropped == 1 || dropped.is_multiple_of(1000) {
                tracing::warn!(dropped, "Rejection event buffer full; events dropped.");
            }
        }
    }
}

/// `maildrop_ingest_rejections_total{reason, class}`: every refusal, whether or not its event is
/// published (`class` is the reply's `4xx` or `5xx`).
fn count(reason: RejectReason, reply: &Reply) {
    let class = if reply.code >= 500 { "5xx" } else { "4xx" };
    metrics::counter!("maildrop_ingest_rejections_total", "reason" => reason.as_str(), "class" => class)
        .increment(1);
}

async fn publish_all(
    js: jetstream::Context,
    mut rx: mpsc::Receiver<IngestRejection>,
    timeout: Duration,
    counts: Arc<Counts>,
) {
    let mut acks = JoinSet::new();
    while let Some(rejection) = rx.recv().await {
        while acks.len() >= IN_FLIGHT {
            settle(acks.join_next().await, &counts);
        }
        let js = js.clone();
        acks.spawn(async move {
            let payload = serde_json::to_vec(&rejection).expect("an event serialises");
            let message = PublishMessage::build()
                .payload(payload.into())
                .message_id(rejection.id.to_string());
            let publish = async {
                js.send_publish(subject::REJECTED_INGEST, message)
                    .await?
                    .await?;
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
            };
            match tokio::time::timeout(timeout, publish).await {
                Ok(Ok(())) => true,
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "Rejection event not published.");
                    false
                }
                Err(_) => false,
            }
        });
    }
    while let Some(done) = acks.join_next().await {
        settle(Some(done), &counts);
    }
}

fn settle(done: Option<Result<bool, tokio::task::JoinError>>, counts: &Counts) {
    match done {
        Some(Ok(true)) => counts.published.fetch_add(1, Ordering::Relaxed),
        Some(_) => counts.failed.fetch_add(1, Ordering::Relaxed),
        None => 0,
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_that_count_and_replies_that_do_not() {
        let r = |code, e| Reply::new(code, e, "x");
        let rcpt = Some(Verb::Rcpt);
        assert_eq!(
            classify(rcpt, &r(550, (5, 7, 1))),
            Some(RejectReason::RelayDenied)
        );
        assert_eq!(
            classify(rcpt, &r(451, (4, 7, 1))),
            Some(RejectReason::Greylisted)
        );
        assert_eq!(
            classify(rcpt, &r(553, (5, 1, 3))),
            Some(RejectReason::InvalidRecipient)
        );
        assert_eq!(
            classify(rcpt, &r(452, (4, 5, 3))),
            Some(RejectReason::TooManyRecipients)
        );
        assert_eq!(
            classify(None, &r(552, (5, 3, 4))),
            Some(RejectReason::TooLarge)
        );
        assert_eq!(
            classify(Some(Verb::Mail), &r(552, (5, 3, 4))),
            Some(RejectReason::TooLarge)
        );
        assert_eq!(
            classify(None, &r(550, (5, 6, 11))),
            Some(RejectReason::BadInput)
        );
        // Not rejections of traffic: success, syntax, sequence, our own temporary failure.
        assert_eq!(classify(rcpt, &r(250, (2, 1, 5))), None);
        assert_eq!(classify(rcpt, &r(501, (5, 1, 3))), None);
        assert_eq!(classify(Some(Verb::Data), &r(503, (5, 5, 1))), None);
        assert_eq!(classify(None, &r(451, (4, 3, 0))), None);
        // A 550 5.7.1 to anything but RCPT is not a relay attempt.
        assert_eq!(classify(Some(Verb::Mail), &r(550, (5, 7, 1))), None);
        assert_eq!(classify(None, &Reply::plain(554, "no")), None);
    }

    #[test]
    fn events_carry_the_attempt_and_the_reply() {
        let attempt = Attempt {
            helo: Some("h".into()),
            mail_from: Some("a@b.example".into()),
            rcpt_to: vec!["x@y.example".into()],
        };
        let reply = Reply::new(550, (5, 7, 1), "Relay access denied");
        let e = event(
            "192.0.2.1".parse().unwrap(),
            attempt,
            RejectReason::RelayDenied,
            &reply,
        );
        assert_eq!(e.client_ip, "192.0.2.1");
        assert_eq!(e.enhanced.as_deref(), Some("5.7.1"));
        assert_eq!(e.code, 550);
        assert_eq!(e.rcpt, ["x@y.example"]);
        assert!(e.time_ms > 0);
    }

    #[tokio::test]
    async fn a_full_buffer_drops_and_counts_without_waiting() {
        let (tx, _rx) = mpsc::channel(1);
        let r = Rejections {
            tx: Some(tx),
            counts: Arc::default(),
        };
        let reply = Reply::new(552, (5, 3, 4), "too big");
        for _ in 0..3 {
            r.observe("192.0.2.1".parse().unwrap(), None, &reply, Attempt::default);
        }
        assert_eq!(r.counts().dropped.load(Ordering::Relaxed), 2);
    }
}
