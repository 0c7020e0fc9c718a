//! Time series, top rejected sources and active mailboxes: what the reporter adds to its counters.
//!
//! Every counted event lands in three places: the all-time counters (`md:{@stats}`), a per-minute
//! bucket and a per-hour bucket (`md:{@stats}:min:<t>`, `md:{@stats}:hour:<t>`, hashes of the same
//! fields, `<t>` the bucket's start in Unix seconds). A rejection also scores its client IP and
//! its sender's domain in the day's sorted sets (`md:{@stats}:top:ip:<day>`, `…:domain:<day>`), and a
//! stored message adds its mailbox to the hour's and the day's HyperLogLog
//! (`md:{@stats}:active:hour:<t>`, `…:day:<t>`).
//!
//! The time of an event is its **stream timestamp**, not the time it was counted, so replaying the
//! streams (`maildrop-reporter recount`) puts every event in the same bucket again. Every key
//! expires at its bucket's end plus its retention (`EXPIREAT`), also on a recount, so a minute
//! bucket lives a day, an hour bucket and a day's tops and mailboxes a month.
//!
//! A [`Batch`] gathers one batch's increments; [`StatsStore::apply`] writes it in the same `MULTI`
//! as the counting mark, so buckets and tops are exactly-once like the counters. `PFADD` is
//! idempotent anyway.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::stats::{Counter, StatsStore};
use crate::{StoreError, keys};

/// The size of a bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Resolution {
    Minute,
    Hour,
    Day,
}

const DAY_SECS: u64 = 86_400;

impl Resolution {
    pub fn secs(self) -> u64 {
        match self {
            Self::Minute => 60,
            Self::Hour => 3_600,
            Self::Day => DAY_SECS,
        }
    }

    /// How long a bucket is kept after it ends.
    pub fn keep_secs(self) -> u64 {
        match self {
            Self::Minute => DAY_SECS,
            Self::Hour | Self::Day => 31 * DAY_SECS,
        }
    }

    /// The most buckets a reader may ask for: as many as are kept.
    pub fn max_points(self) -> usize {
        (self.keep_secs() / self.secs()) as usize
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Minute => "min",
            Self::Hour => "hour",
            Self::Day => "day",
        }
    }

    /// The start (Unix seconds) of the bucket holding `time_ms`.
    pub fn bucket(self, time_ms: u64) -> u64 {
        let secs = time_ms / 1000;
        secs - secs % self.secs()
    }

    fn expire_at(self, start: u64) -> u64 {
        start + self.secs() + self.keep_secs()
    }
}

/// What the top lists rank.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TopKind {
    /// Client IPs of rejected mail and refused attempts.
    Ip,
    /// Sender domains (of the envelope's `MAIL FROM`) of rejected mail and refused attempts.
    Domain,
}

impl TopKind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Ip => "ip",
            Self::Domain => "domain",
        }
    }
}

/// One batch's increments, gathered before they are written at once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    pub counters: BTreeMap<Counter, u64>,
    pub buckets: BTreeMap<(Resolution, u64), BTreeMap<Counter, u64>>,
    pub top: BTreeMap<(TopKind, u64), BTreeMap<String, u64>>,
    pub active: BTreeMap<(Resolution, u64), BTreeSet<String>>,
}

impl Batch {
    /// Adds `by` to `counter`, all-time and in the buckets of `time_ms`.
    pub fn count(&mut self, time_ms: u64, counter: Counter, by: u64) {
        for res in [Resolution::Minute, Resolution::Hour] {
            *self
                .buckets
                .entry((res, res.bucket(time_ms)))
                .or_default()
                .entry(counter.clone())
                .or_insert(0) += by;
        }
        *self.counters.entry(counter).or_insert(0) += by;
    }

    /// Scores a rejected message's or attempt's source in the day's top lists.
    pub fn rejected_source(&mut self, time_ms: u64, ip: &str, domain: Option<&str>) {
        let day = Resolution::Day.bucket(time_ms);
        let mut score = |kind, name: &str| {
            *self
                .top
                .entry((kind, day))
                .or_default()
                .entry(name.to_owned())
                .or_insert(0) += 1;
        };
        if !ip.is_empty() {
            score(TopKind::Ip, ip);
        }
        if let Some(domain) = domain.filter(|d| !d.is_empty()) {
            score(TopKind::Domain, &domain.to_ascii_lowercase());
        }
    }

    /// A message was stored in `mailbox` at `time_ms`.
    pub fn active(&mut self, time_ms: u64, mailbox: &str) {
        for res in [Resolution::Hour, Resolution::Day] {
            self.active
                .entry((res, res.bucket(time_ms)))
                .or_default()
                .insert(mailbox.to_owned());
        }
    }

    pub fn is_empty(&self) -> bool {
        self.counters.is_empty() && self.top.is_empty() && self.active.is_empty()
    }

    /// The commands that write this batch, for a `MULTI`.
    pub(crate) fn write(&self, pipe: &mut redis::Pipeline) {
        for (counter, by) in &self.counters {
            pipe.cmd("HINCRBY")
                .arg(keys::STATS)
                .arg(counter.field())
                .arg(*by)
                .ignore();
        }
        for ((res, start), counters) in &self.buckets {
            let key = keys::stats_bucket(res.name(), *start);
            for (counter, by) in counters {
                pipe.cmd("HINCRBY")
                    .arg(&key)
                    .arg(counter.field())
                    .arg(*by)
                    .ignore();
            }
            pipe.cmd("EXPIREAT")
                .arg(&key)
                .arg(res.expire_at(*start))
                .ignore();
        }
        for ((kind, day), scores) in &self.top {
            let key = keys::stats_top(kind.name(), *day);
            for (name, by) in scores {
                pipe.cmd("ZINCRBY").arg(&key).arg(*by).arg(name).ignore();
            }
            pipe.cmd("EXPIREAT")
                .arg(&key)
                .arg(Resolution::Day.expire_at(*day))
                .ignore();
        }
        for ((res, start), mailboxes) in &self.active {
            let key = keys::stats_active(res.name(), *start);
            pipe.cmd("PFADD").arg(&key).arg(mailboxes).ignore();
            pipe.cmd("EXPIREAT")
                .arg(&key)
                .arg(res.expire_at(*start))
                .ignore();
        }
    }
}

/// One bucket of a series, as `/api/stats` shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Point {
    /// The bucket's start, ms since the epoch.
    pub t: u64,
    pub received: u64,
    pub bytes_received: u64,
    pub accepted: u64,
    pub rejected: u64,
    pub rejected_ingest: u64,
    pub stored: u64,
    pub deleted: u64,
}

impl Point {
    fn from_fields(t: u64, fields: &BTreeMap<String, u64>) -> Self {
        let get = |c: Counter| fields.get(&c.field()).copied().unwrap_or(0);
        Self {
            t,
            received: get(Counter::Received),
            bytes_received: get(Counter::BytesReceived),
            accepted: get(Counter::Accepted),
            rejected: get(Counter::Rejected),
            rejected_ingest: get(Counter::RejectedIngest),
            stored: get(Counter::Stored),
            deleted: get(Counter::Deleted),
        }
    }
}

/// One entry of a top list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ranked {
    pub name: String,
    pub count: u64,
}

/// Distinct mailboxes that received mail in the current hour and day (estimates, ±1%).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Active {
    pub hour: u64,
    pub day: u64,
}

impl StatsStore {
    /// The last `count` buckets of `res` up to the one holding `now_ms`, oldest first; buckets
    /// without events are zeros.
    pub async fn series(
        &self,
        res: Resolution,
        count: usize,
        now_ms: u64,
    ) -> Result<Vec<Point>, StoreError> {
        let count = count.min(res.max_points());
        let last = res.bucket(now_ms);
        let starts: Vec<u64> = (0..count as u64)
            .rev()
            .filter_map(|i| last.checked_sub(i * res.secs()))
            .collect();
        if starts.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for start in &starts {
            pipe.cmd("HGETALL")
                .arg(keys::stats_bucket(res.name(), *start));
        }
        let mut conn = self.conn.clone();
        let buckets: Vec<BTreeMap<String, u64>> = pipe.query_async(&mut conn).await?;
        Ok(starts
            .iter()
            .zip(&buckets)
            .map(|(start, fields)| Point::from_fields(start * 1000, fields))
            .collect())
    }

    /// The `n` highest-scoring entries of the day holding `now_ms`.
    pub async fn top(
        &self,
        kind: TopKind,
        now_ms: u64,
        n: usize,
    ) -> Result<Vec<Ranked>, StoreError> {
        if n == 0 {
            return Ok(Vec::new());
        }
        let key = keys::stats_top(kind.name(), Resolution::Day.bucket(now_ms));
        let mut conn = self.conn.clone();
        let ranked: Vec<(String, f64)> = redis::cmd("ZRANGE")
            .arg(&key)
            .arg(0)
            .arg(n - 1)
            .arg("REV")
            .arg("WITHSCORES")
            .query_async(&mut conn)
            .await?;
        Ok(ranked
            .into_iter()
            .map(|(name, score)| Ranked {
                name,
                count: score as u64,
            })
            .collect())
    }

    /// Distinct mailboxes with mail in the hour and the day holding `now_ms`.
    pub async fn active(&self, now_ms: u64) -> Result<Active, StoreError> {
        let mut pipe = redis::pipe();
        for res in [Resolution::Hour, Resolution::Day] {
            pipe.cmd("PFCOUNT")
                .arg(keys::stats_active(res.name(), res.bucket(now_ms)));
        }
        let mut conn = self.conn.clone();
        let (hour, day): (u64, u64) = pipe.query_async(&mut conn).await?;
        Ok(Active { hour, day })
    }

    /// Deletes every statistics key (counters, marks, buckets, tops, mailboxes): the first step of a
    /// recount. Returns how many keys went.
    pub async fn reset(&self) -> Result<u64, StoreError> {
        let mut conn = self.conn.clone();
        let mut cursor: u64 = 0;
        let mut deleted = 0;
        loop {
            let (next, found) = conn
                .scan_slot(keys::STATS, cursor, keys::STATS_ALL, 1000)
                .await?;
            if !found.is_empty() {
                let n: u64 = redis::cmd("UNLINK")
                    .arg(&found)
                    .query_async(&mut conn)
                    .await?;
                deleted += n;
            }
            if next == 0 {
                return Ok(deleted);
            }
            cursor = next;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2024-11-29T17:06:40Z
    const T: u64 = 1_732_900_000_000;

    #[test]
    fn buckets_start_on_their_boundary() {
        assert_eq!(Resolution::Minute.bucket(T), 1_732_899_960);
        assert_eq!(Resolution::Hour.bucket(T), 1_732_899_600);
        assert_eq!(Resolution::Day.bucket(T), 1_732_838_400);
        assert_eq!(Resolution::Minute.max_points(), 1_440);
        assert_eq!(Resolution::Hour.max_points(), 744);
    }

    #[test]
    fn a_batch_counts_into_totals_and_both_buckets() {
        let mut b = Batch::default();
        b.count(T, Counter::Received, 1);
        b.count(T + 60_000, Counter::Received, 2);
        assert_eq!(b.counters[&Counter::Received], 3);
        let minute = |t| &b.buckets[&(Resolution::Minute, Resolution::Minute.bucket(t))];
        assert_eq!(minute(T)[&Counter::Received], 1);
        assert_eq!(minute(T + 60_000)[&Counter::Received], 2);
        assert_eq!(
            b.buckets[&(Resolution::Hour, Resolution::Hour.bucket(T))][&Counter::Received],
            3
        );
    }

    #[test]
    fn sources_are_scored_per_day_with_domains_lower_cased() {
        let mut b = Batch::default();
        b.rejected_source(T, "192.0.2.7", Some("Spam.Example"));
        b.rejected_source(T, "192.0.2.7", Some("spam.example"));
        b.rejected_source(T, "192.0.2.8", None);
        let day = Resolution::Day.bucket(T);
        assert_eq!(b.top[&(TopKind::Ip, day)]["192.0.2.7"], 2);
        assert_eq!(b.top[&(TopKind::Ip, day)]["192.0.2.8"], 1);
        assert_eq!(b.top[&(TopKind::Domain, day)]["spam.example"], 2);
        assert_eq!(b.top[&(TopKind::Domain, day)].len(), 1);
    }

    #[test]
    fn points_read_their_fields() {
        let fields = [
            ("received".to_owned(), 4),
            ("rejected_ingest".to_owned(), 2),
        ]
        .into_iter()
        .collect();
        let p = Point::from_fields(5, &fields);
        assert_eq!(
            (p.t, p.received, p.rejected_ingest, p.accepted),
            (5, 4, 2, 0)
        );
    }
}
