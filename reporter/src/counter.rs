//! The loop that counts one stream exactly once (the argument is in the crate docs).

use crate::durable::{next_batch, open, sleep_or_cancel};
use std::time::Duration;

use async_nats::jetstream;
use maildrop_runtime::consume::retry_delay;
use maildrop_store::StatsStore;
use maildrop_store::series::Batch;
use tokio_util::sync::CancellationToken;

use crate::count::{Effects, Source, effects};

/// One fetched message, reduced to what counting needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub seq: u64,
    pub delivered: i64,
    /// The message's stream timestamp (ms): the bucket it counts in, the same on every replay.
    pub time_ms: u64,
    pub effects: Effects,
}

/// The stream timestamp of a message, in ms since the epoch.
pub fn stream_time_ms(info: &jetstream::message::Info<'_>) -> u64 {
    u64::try_from(info.published.unix_timestamp_nanos() / 1_000_000).unwrap_or(0)
}

/// The increments of a batch and the mark to record, given the mark recorded so far.
pub fn tally(applied: u64, items: &[Item]) -> (Batch, u64) {
    let mut increments = Batch::default();
    let mut reset = false;
    for item in items {
        let already_counted = item.seq <= applied && item.delivered > 1;
        if already_counted {
            continue;
        }
        reset |= item.seq <= applied;
        let effects = &item.effects;
        for (counter, by) in &effects.counters {
            increments.count(item.time_ms, counter.clone(), *by);
        }
        if let Some((ip, domain)) = &effects.rejected_source {
            increments.rejected_source(item.time_ms, ip, domain.as_deref());
        }
        if let Some(mailbox) = &effects.stored_in {
            increments.active(item.time_ms, mailbox);
        }
    }
    let highest = items.iter().map(|i| i.seq).max().unwrap_or(0);
    let mark = if reset { highest } else { highest.max(applied) };
    (increments, mark)
}

/// Counts `source` until `cancel` is cancelled. Verdicts (production and shadow) are also paired
/// by message id, kept `pair_ttl` waiting for the other side ([`maildrop_store::shadow`]).
pub async fn run(
    js: jetstream::Context,
    stats: StatsStore,
    source: Source,
    batch_size: u32,
    ack_wait: Duration,
    pair_ttl: Duration,
    cancel: CancellationToken,
) {
    let stream = source.stream();
    let Some(consumer) = open(
        &js,
        source.stream(),
        source.durable(),
        "",
        ack_wait,
        &cancel,
    )
    .await
    else {
        return;
    };
    tracing::info!(stream, "Counting.");
    while !cancel.is_cancelled() {
        let Some(messages) = next_batch(
            &consumer,
            batch_size as usize,
            Duration::from_secs(2),
            stream,
            &cancel,
        )
        .await
        else {
            break;
        };
        if messages.is_empty() {
            continue;
        }
        let items: Vec<Item> = messages
            .iter()
            .filter_map(|m| {
                let info = m.info().ok()?;
                Some(Item {
                    seq: info.stream_sequence,
                    delivered: info.delivered,
                    time_ms: stream_time_ms(&info),
                    effects: effects(source, m.headers.as_ref(), &m.payload),
                })
            })
            .collect();
        // Retry this batch in place until Redis takes it (see the crate docs for why).
        let mut attempt = 0i64;
        let written = loop {
            let result = async {
                // Pairing first: it is idempotent, so a retry after a failed write repeats it
                // harmlessly, whereas a retry after the mark was written would count again.
                for pair in items.iter().filter_map(|i| i.effects.pair.as_ref()) {
                    stats.pair(pair, pair_ttl).await?;
                }
                let applied = stats.applied(stream).await?;
                let (increments, mark) = tally(applied, &items);
                stats.apply(stream, mark, &increments).await
            }
            .await;
            match result {
                Ok(()) => break true,
                Err(e) => {
                    attempt += 1;
                    let wait = retry_delay(attempt);
                    tracing::warn!(stream, error = %e, retry_in = ?wait, "Cannot write counters; retrying the batch.");
                    if !sleep_or_cancel(&cancel, wait).await {
                        break false;
                    }
                }
            }
        };
        if !written {
            break;
        }
        for m in &messages {
            if let Err(e) = m.ack().await {
                tracing::warn!(stream, error = %e, "Ack failed; the message will come back and be skipped.");
            }
        }
        metrics::counter!("maildrop_reporter_events_total", "stream" => stream)
            .increment(messages.len() as u64);
        tracing::debug!(stream, count = messages.len(), "Batch counted.");
    }
    tracing::info!(stream, "Counting stopped.");
}

#[cfg(test)]
mod tests {
    use super::*;
    use maildrop_store::series::{Resolution, TopKind};
    use maildrop_store::stats::Counter;

    const T: u64 = 1_732_900_000_000;

    fn item(seq: u64, delivered: i64) -> Item {
        Item {
            seq,
            delivered,
            time_ms: T,
            effects: Effects {
                counters: vec![(Counter::Received, 1)],
                ..Effects::default()
            },
        }
    }

    #[test]
    fn skipped_redeliveries_move_no_bucket_top_or_mailbox() {
        let mut counted = item(11, 1);
        counted.effects.rejected_source = Some(("192.0.2.1".into(), None));
        counted.effects.stored_in = Some("bob".into());
        let mut skipped = counted.clone();
        skipped.seq = 10;
        skipped.delivered = 2;
        let (batch, _) = tally(10, &[skipped, counted]);
        let minute = (Resolution::Minute, Resolution::Minute.bucket(T));
        assert_eq!(batch.buckets[&minute][&Counter::Received], 1);
        let day = Resolution::Day.bucket(T);
        assert_eq!(batch.top[&(TopKind::Ip, day)]["192.0.2.1"], 1);
        assert_eq!(batch.active.len(), 2);
    }

    #[test]
    fn new_messages_count_and_raise_the_mark() {
        let (inc, mark) = tally(10, &[item(11, 1), item(12, 1)]);
        assert_eq!(inc.counters[&Counter::Received], 2);
        assert_eq!(mark, 12);
    }

    #[test]
    fn redeliveries_at_or_below_the_mark_are_skipped() {
        let (inc, mark) = tally(12, &[item(11, 2), item(12, 3), item(13, 2)]);
        assert_eq!(inc.counters[&Counter::Received], 1);
        assert_eq!(mark, 13);
    }

    #[test]
    fn a_recreated_stream_is_counted_from_its_start() {
        let (inc, mark) = tally(500, &[item(1, 1), item(2, 1)]);
        assert_eq!(inc.counters[&Counter::Received], 2);
        assert_eq!(mark, 2);
    }

    #[test]
    fn a_batch_of_old_redeliveries_never_lowers_the_mark() {
        let (inc, mark) = tally(50, &[item(40, 2)]);
        assert!(inc.is_empty());
        assert_eq!(mark, 50);
    }
}
