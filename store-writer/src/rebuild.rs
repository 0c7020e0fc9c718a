//! `maildrop-store-writer rebuild`: the mailboxes in Redis, rebuilt from the streams.
//!
//! Redis is a view: JetStream keeps the raw messages (`RECEIVED`), the decisions (`VERDICTS`) and
//! what readers did (`MAILBOX`). After losing Redis, or to repair it, this replays them:
//!
//! 1. **Removals.** The `deleted` and `cleared` events on `MAILBOX` are read into memory, in
//!    stream order, with their stream timestamps. (nats-server 2.9 allows one filter subject per
//!    consumer, so the consumer reads `maildrop.mailbox.>` and skips `stored` and `expired`.)
//! 2. **Stores.** The accepted verdicts on `VERDICTS` are replayed in order. Each raw message is
//!    fetched from `RECEIVED` by `received_seq` (one past `RECEIVED`'s retention is counted and
//!    skipped), prepared exactly as the consumer does (same attachment policy) and stored through
//!    the same [`MailStore::store`]. A message received longer than the mailbox retention ago is
//!    skipped: it would be gone already.
//! 3. Before each verdict, the removals older than it are applied: a `deleted` deletes its
//!    message, a `cleared` removes the messages received before the event's time. The rest are
//!    applied at the end, then the byte cap is enforced once.
//!
//! Removals are interleaved by time rather than applied after every store because a mailbox keeps
//! at most `max_messages`: whether a deleted message still held a place when the next one arrived
//! decides which older message was evicted, so only the live order reproduces the live result.
//!
//! **Idempotent.** A store is a no-op for an id the mailbox has seen, and a deleted id stays
//! seen, so running rebuild twice, or while the consumer runs, adds no duplicate and brings back
//! no deleted message.
//!
//! **Silent.** Rebuild publishes no `stored` (nor `deleted` for messages a full mailbox pushed
//! out): live watchers must not see a replay as new mail, and the events are in the stream
//! already. A page that was open during the rebuild shows what it had and is right again on
//! reload. Evictions for the byte cap at the end are real changes and are announced (`cleared`).
//!
//! **Bounded.** Both consumers are ephemeral and ordered (no ack, nothing left behind, the
//! production consumers untouched), start at now − retention (older verdicts would be skipped
//! anyway; a minute earlier for clock skew) and stop at the last sequence the stream had when the
//! rebuild began: what arrives later is the consumer's job. Memory holds the removal events of
//! that window. Until the end, Redis may hold more than the byte cap by what readers deleted.

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

use async_nats::jetstream::{self, consumer::DeliverPolicy, consumer::pull};
use futures::StreamExt;
use maildrop_contract::{Mailbox, MailboxEvent, MessageId, now_ms, subject};
use maildrop_store::{MailStore, StoreOutcome};
use tokio_util::sync::CancellationToken;

use crate::Error;
use crate::evict::Evictor;
use crate::handler::{FetchError, Poison, decode_verdict, fetch_raw};
use crate::prepare::{AttachmentPolicy, prepare};

/// Started this much before the retention horizon, for clocks that disagree.
const SKEW: Duration = Duration::from_secs(60);

/// What a rebuild did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RebuildReport {
    /// Accepted verdicts read.
    pub verdicts: u64,
    /// Messages put back in a mailbox (one per mailbox).
    pub restored: u64,
    /// Messages a mailbox had seen already (present, or deleted since).
    pub unchanged: u64,
    /// Messages older than every message their full mailbox keeps.
    pub over_mailbox_limit: u64,
    /// Verdicts whose message was received longer than the retention ago.
    pub skipped_expired: u64,
    /// Verdicts whose raw message `RECEIVED` no longer has.
    pub missing_raw: u64,
    /// Verdicts that cannot be read (not JSON, unknown version, no envelope).
    pub invalid: u64,
    /// `deleted` events that removed a message.
    pub deletes_applied: u64,
    /// `cleared` events that removed at least one message.
    pub clears_applied: u64,
    /// Mailboxes emptied at the end to get under the byte cap.
    pub evicted_mailboxes: u64,
}

impl fmt::Display for RebuildReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "rebuild: {} verdicts read; {} messages restored, {} unchanged, {} over their mailbox's limit; \
             skipped {} as expired, {} with the raw message gone, {} invalid; \
             applied {} deletes and {} clears; evicted {} mailboxes for the byte cap",
            self.verdicts,
            self.restored,
            self.unchanged,
            self.over_mailbox_limit,
            self.skipped_expired,
            self.missing_raw,
            self.invalid,
            self.deletes_applied,
            self.clears_applied,
            self.evicted_mailboxes,
        )
    }
}

/// A reader's (or the byte cap's) removal, to replay.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Removal {
    Delete {
        mailbox: Mailbox,
        id: MessageId,
    },
    /// Messages received before `before_ms`.
    ClearBefore {
        mailbox: Mailbox,
        before_ms: u64,
    },
}

/// The removal a `MAILBOX` event at `at_ms` stands for, if any.
fn removal(event: MailboxEvent, at_ms: u64) -> Option<Removal> {
    match event {
        MailboxEvent::Deleted { mailbox, id, .. } => Some(Removal::Delete { mailbox, id }),
        MailboxEvent::Cleared { mailbox, .. } => Some(Removal::ClearBefore {
            mailbox,
            before_ms: at_ms,
        }),
        // Stores are replayed from the verdicts; an expired mailbox's messages are skipped as
        // expired.
        MailboxEvent::Stored { .. } | MailboxEvent::Expired { .. } => None,
    }
}

/// One stream read from a start time up to the last sequence it had when the read began.
struct Replay {
    stream: &'static str,
    messages: Option<pull::Ordered>,
    end: u64,
}

/// A message of a replay: its stream timestamp (ms) and the message.
struct Replayed {
    at_ms: u64,
    msg: jetstream::Message,
}

fn replay_error(
    stream: &'static str,
    source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
) -> Error {
    Error::Replay {
        stream,
        source: source.into(),
    }
}

impl Replay {
    async fn open(
        js: &jetstream::Context,
        stream: &'static str,
        filter: &str,
        start_ms: u64,
    ) -> Result<Self, Error> {
        let mut handle = js
            .get_stream(stream)
            .await
            .map_err(|e| replay_error(stream, e))?;
        let end = handle
            .info()
            .await
            .map_err(|e| replay_error(stream, e))?
            .state
            .last_sequence;
        let start = async_nats::datetime::from_nanos(i128::from(start_ms) * 1_000_000)
            .map_err(|e| replay_error(stream, e))?;
        let consumer = handle
            .create_consumer(pull::OrderedConfig {
                filter_subject: filter.to_owned(),
                deliver_policy: DeliverPolicy::ByStartTime { start_time: start },
                ..Default::default()
            })
            .await
            .map_err(|e| replay_error(stream, e))?;
        // An ordered consumer waits for new messages forever: do not start one with none to read.
        let messages = if consumer.cached_info().num_pending == 0 {
            None
        } else {
            Some(
                consumer
                    .messages()
                    .await
                    .map_err(|e| replay_error(stream, e))?,
            )
        };
        Ok(Self {
            stream,
            messages,
            end,
        })
    }

    /// The next message at or before the end; `None` once there.
    async fn next(&mut self, cancel: &CancellationToken) -> Result<Option<Replayed>, Error> {
        let Some(messages) = self.messages.as_mut() else {
            return Ok(None);
        };
        let next = tokio::select! {
            _ = cancel.cancelled() => return Err(Error::Interrupted),
            next = messages.next() => next,
        };
        let msg = match next {
            None => return Ok(None),
            Some(Err(e)) => return Err(replay_error(self.stream, e)),
            Some(Ok(msg)) => msg,
        };
        let (seq, pending, at_ms) = {
            let info = msg.info().map_err(|e| replay_error(self.stream, e))?;
            let at = info.published.unix_timestamp_nanos() / 1_000_000;
            (
                info.stream_sequence,
                info.pending,
                u64::try_from(at).unwrap_or(0),
            )
        };
        if seq >= self.end || pending == 0 {
            self.messages = None;
        }
        Ok((seq <= self.end).then_some(Replayed { at_ms, msg }))
    }
}

/// The counting and applying half of a rebuild, apart from the streams.
struct Rebuilder<'a> {
    store: &'a MailStore,
    report: RebuildReport,
}

impl Rebuilder<'_> {
    async fn apply(&mut self, removal: &Removal) -> Result<(), Error> {
        match removal {
            Removal::Delete { mailbox, id } => {
                if self.store.delete(mailbox, id).await? {
                    self.report.deletes_applied += 1;
                }
            }
            Removal::ClearBefore { mailbox, before_ms } => {
                if self.store.clear_before(mailbox, *before_ms).await? > 0 {
                    self.report.clears_applied += 1;
                }
            }
        }
        Ok(())
    }

    fn count(&mut self, outcome: &StoreOutcome) {
        let r = &mut self.report;
        match outcome {
            StoreOutcome::Stored { .. } => r.restored += 1,
            StoreOutcome::Duplicate { .. } => r.unchanged += 1,
            StoreOutcome::TooOld => r.over_mailbox_limit += 1,
            StoreOutcome::Expired => r.skipped_expired += 1,
        }
    }
}

/// Rebuilds the mailboxes from the streams (see the module docs), until done or `cancel`.
pub async fn rebuild(
    js: &jetstream::Context,
    store: &MailStore,
    evictor: &Evictor,
    policy: &AttachmentPolicy,
    progress_every: u64,
    cancel: &CancellationToken,
) -> Result<RebuildReport, Error> {
    let limits = store.limits();
    let started = now_ms();
    let start_ms = limits
        .cutoff(started)
        .saturating_sub(SKEW.as_millis() as u64);
    let received = js
        .get_stream(subject::RECEIVED_STREAM)
        .await
        .map_err(Error::Received)?;

    let mut removals = VecDeque::new();
    let mut events =
        Replay::open(js, subject::MAILBOX_STREAM, subject::MAILBOX_ALL, start_ms).await?;
    while let Some(Replayed { at_ms, msg }) = events.next(cancel).await? {
        if let Some(r) = serde_json::from_slice::<MailboxEvent>(&msg.payload)
            .ok()
            .and_then(|e| removal(e, at_ms))
        {
            removals.push_back((at_ms, r));
        }
    }
    tracing::info!(
        removals = removals.len(),
        "Rebuild: read the deletes and clears to replay."
    );

    let mut work = Rebuilder {
        store,
        report: RebuildReport::default(),
    };
    let mut verdicts = Replay::open(
        js,
        subject::VERDICTS_STREAM,
        subject::VERDICT_ACCEPTED,
        start_ms,
    )
    .await?;
    while let Some(Replayed { at_ms, msg }) = verdicts.next(cancel).await? {
        while let Some((_, r)) = removals.pop_front_if(|(at, _)| *at <= at_ms) {
            work.apply(&r).await?;
        }
        work.report.verdicts += 1;
        if work.report.verdicts.is_multiple_of(progress_every) {
            tracing::info!(report = %work.report, "Rebuild in progress.");
        }
        let verdict = match decode_verdict(&msg.payload) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, "Rebuild: skipped a verdict that cannot be read.");
                work.report.invalid += 1;
                continue;
            }
        };
        let Some(first) = verdict.mailboxes.first() else {
            continue;
        };
        if limits.expired(verdict.received_ms, now_ms()) {
            work.report.skipped_expired += 1;
            continue;
        }
        let (envelope, raw) = match fetch_raw(&received, &verdict).await {
            Ok(fetched) => fetched,
            Err(FetchError::Poison(Poison::RawGone(_))) => {
                work.report.missing_raw += 1;
                continue;
            }
            Err(FetchError::Poison(e)) => {
                tracing::warn!(msg_id = %verdict.id, error = %e, "Rebuild: skipped a message that cannot be read.");
                work.report.invalid += 1;
                continue;
            }
            Err(e @ (FetchError::Bus { .. } | FetchError::Leader { .. })) => {
                return Err(Error::Fetch(e));
            }
        };
        let prepared = prepare(first, &envelope, &verdict, &raw.payload, policy);
        for mailbox in &verdict.mailboxes {
            let report = store
                .store(&prepared.document(mailbox), prepared.raw())
                .await?;
            work.count(&report.outcome);
        }
    }
    for (_, r) in removals {
        work.apply(&r).await?;
    }
    let evicted = evictor.enforce(&[]).await?;
    work.report.evicted_mailboxes = evicted.evicted;
    let report = work.report;
    tracing::info!(%report, took_ms = now_ms().saturating_sub(started), "Rebuild done.");
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use maildrop_contract::event;

    #[test]
    fn deletes_and_clears_are_removals_and_the_rest_is_not() {
        let mailbox = Mailbox::parse("bob").unwrap();
        let id = MessageId::new();
        let deleted = MailboxEvent::Deleted {
            v: event::VERSION,
            mailbox: mailbox.clone(),
            id,
        };
        assert_eq!(
            removal(deleted, 7),
            Some(Removal::Delete {
                mailbox: mailbox.clone(),
                id
            })
        );
        let cleared = MailboxEvent::Cleared {
            v: event::VERSION,
            mailbox: mailbox.clone(),
        };
        assert_eq!(
            removal(cleared, 7),
            Some(Removal::ClearBefore {
                mailbox: mailbox.clone(),
                before_ms: 7
            })
        );
        let expired = MailboxEvent::Expired {
            v: event::VERSION,
            mailbox,
        };
        assert_eq!(removal(expired, 7), None);
    }

    #[test]
    fn the_report_reads_as_a_sentence() {
        let report = RebuildReport {
            verdicts: 3,
            restored: 2,
            missing_raw: 1,
            deletes_applied: 1,
            ..Default::default()
        };
        let text = report.to_string();
        assert!(text.contains("2 messages restored"), "{text}");
        assert!(text.contains("1 with the raw message gone"), "{text}");
        assert!(text.contains("applied 1 deletes"), "{text}");
    }
}
