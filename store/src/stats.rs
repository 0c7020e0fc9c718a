//! Counters: written by the reporter, read by the gateway's `/api/stats`.
//!
//! The reporter counts each stream in order and records, in the same `MULTI` as the increments, the
//! last stream sequence it counted (`md:{@stats}:applied`). A message redelivered after a crash is at
//! or below that mark and is not counted twice (see the reporter for the whole argument). The
//! time series, top lists and active mailboxes written with them are in [`crate::series`].

use std::collections::BTreeMap;

use crate::Redis;
use serde::{Deserialize, Serialize};

use crate::StoreError;
use crate::keys;
use crate::series::Batch;

/// One counter.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Counter {
    Received,
    BytesReceived,
    Accepted,
    Rejected,
    /// Rejected messages that this rule hit.
    RejectedBy(String),
    Stored,
    Deleted,
    Cleared,
    /// Mailboxes the store-writer's sweeper found past their retention.
    Expired,
    /// SMTP attempts the ingest refused.
    RejectedIngest,
    /// SMTP attempts the ingest refused for this reason.
    RejectedIngestBy(String),
}

const REJECTED_BY: &str = "rejected_by:";
const REJECTED_INGEST_BY: &str = "rejected_ingest_by:";

impl Counter {
    pub(crate) fn field(&self) -> String {
        match self {
            Self::Received => "received".into(),
            Self::BytesReceived => "bytes_received".into(),
            Self::Accepted => "accepted".into(),
            Self::Rejected => "rejected".into(),
            Self::RejectedBy(rule) => format!("{REJECTED_BY}{rule}"),
            Self::Stored => "stored".into(),
            Self::Deleted => "deleted".into(),
            Self::Cleared => "cleared".into(),
            Self::Expired => "expired".into(),
            Self::RejectedIngest => "rejected_ingest".into(),
            Self::RejectedIngestBy(reason) => format!("{REJECTED_INGEST_BY}{reason}"),
        }
    }
}

/// The counters as `/api/stats` shows them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    pub received: u64,
    pub bytes_received: u64,
    pub accepted: u64,
    pub rejected: u64,
    pub rejected_by_rule: BTreeMap<String, u64>,
    pub stored: u64,
    pub deleted: u64,
    pub cleared: u64,
    /// Added after the others: absent from documents written before it.
    #[serde(default)]
    pub expired: u64,
    /// SMTP attempts the ingest refused, in all and by reason (added later, like `expired`).
    #[serde(default)]
    pub rejected_ingest: u64,
    #[serde(default)]
    pub rejected_ingest_by_reason: BTreeMap<String, u64>,
}

impl Stats {
    fn from_fields(fields: BTreeMap<String, u64>) -> Self {
        let mut stats = Self::default();
        for (field, n) in fields {
            match field.as_str() {
                "received" => stats.received = n,
                "bytes_received" => stats.bytes_received = n,
                "accepted" => stats.accepted = n,
                "rejected" => stats.rejected = n,
                "stored" => stats.stored = n,
                "deleted" => stats.deleted = n,
                "cleared" => stats.cleared = n,
                "expired" => stats.expired = n,
                "rejected_ingest" => stats.rejected_ingest = n,
                other => {
                    if let Some(rule) = other.strip_prefix(REJECTED_BY) {
                        stats.rejected_by_rule.insert(rule.to_owned(), n);
                    } else if let Some(reason) = other.strip_prefix(REJECTED_INGEST_BY) {
                        stats.rejected_ingest_by_reason.insert(reason.to_owned(), n);
                    }
                }
            }
        }
        stats
    }
}

#[derive(Clone)]
pub struct StatsStore {
    pub(crate) conn: Redis,
}

impl StatsStore {
    pub fn new(conn: Redis) -> Self {
        Self { conn }
    }

    /// The last sequence of `stream` that was counted (0 if none).
    pub async fn applied(&self, stream: &str) -> Result<u64, StoreError> {
        let mut conn = self.conn.clone();
        let seq: Option<u64> = redis::cmd("HGET")
            .arg(keys::STATS_APPLIED)
            .arg(stream)
            .query_async(&mut conn)
            .await?;
        Ok(seq.unwrap_or(0))
    }

    /// Writes `batch` (counters, buckets, tops, mailboxes; see [`crate::series`]) and records
    /// `last_seq` of `stream` as counted, atomically.
    pub async fn apply(
        &self,
        stream: &str,
        last_seq: u64,
        batch: &Batch,
    ) -> Result<(), StoreError> {
        let mut pipe = redis::pipe();
        pipe.atomic();
        batch.write(&mut pipe);
        pipe.cmd("HSET")
            .arg(keys::STATS_APPLIED)
            .arg(stream)
            .arg(last_seq)
            .ignore();
        let mut conn = self.conn.clone();
        let () = pipe.query_async(&mut conn).await?;
        Ok(())
    }

    pub async fn read(&self) -> Result<Stats, StoreError> {
        let mut conn = self.conn.clone();
        let fields: BTreeMap<String, u64> = redis::cmd("HGETALL")
            .arg(keys::STATS)
            .query_async(&mut conn)
            .await?;
        Ok(Stats::from_fields(fields))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip_into_stats() {
        let fields = [
            Counter::Received,
            Counter::Accepted,
            Counter::RejectedBy("blocked_sender".into()),
        ]
        .into_iter()
        .enumerate()
        .map(|(i, c)| (c.field(), i as u64 + 1))
        .collect();
        let stats = Stats::from_fields(fields);
        assert_eq!(stats.received, 1);
        assert_eq!(stats.accepted, 2);
        assert_eq!(stats.rejected_by_rule["blocked_sender"], 3);
    }
}
