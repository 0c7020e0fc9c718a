//! `maildrop-filter replay`: a candidate rule set judged on real history, without touching
//! production.
//!
//! The raw messages retained in `RECEIVED` from `--since` to `--until` are read by an ephemeral
//! ordered consumer (started at `--since` by time), judged by the rule set of `--rules`, and
//! compared with the verdicts production recorded for them (read the same way from `VERDICTS`,
//! matched by message id). Nothing is published, nothing is written to Redis: the replay only
//! reads streams.
//!
//! **Message-local rules only.** A replay judges with [`crate::handler::judge_raw`]: the facts
//! production gathered from Redis and DNS (blocklists, flood counts, DNSBL answers, SPF) are
//! those of the moment the mail came and are not recorded, and looking them up today would
//! answer a different question (and count floods twice). So rules that need facts never hit in a
//! replay; the comparison shows it honestly, rule by rule.
//!
//! [`Comparison`] is the pure part: it takes recorded and replayed verdicts one at a time and
//! renders the confusion table, the hit counts and example ids, as text or JSON.

use std::collections::{BTreeMap, HashMap};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;

use async_nats::jetstream::{self, consumer::DeliverPolicy, consumer::pull};
use clap::Args;
use futures::StreamExt;
use maildrop_contract::{Envelope, Verdict, subject};
use serde::Serialize;
use time::OffsetDateTime;

use crate::ruleset::{self, Context};

/// A point in time on the command line: RFC 3339 (`2026-11-29T12:00:00Z`) or a duration ago
/// (`2h`, `7d`).
pub fn parse_time(s: &str) -> Result<OffsetDateTime, String> {
    if let Ok(t) = OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339) {
        return Ok(t);
    }
    let ago = humantime::parse_duration(s)
        .map_err(|_| format!("{s:?} is neither an RFC 3339 time nor a duration such as 2h"))?;
    Ok(OffsetDateTime::now_utc() - ago)
}

/// The time window of a replay or an export.
#[derive(Debug, Clone, Args)]
pub struct Window {
    /// Start: an RFC 3339 time or a duration ago (`24h`).
    #[arg(long, value_parser = parse_time)]
    pub since: OffsetDateTime,
    /// End (inclusive); default now.
    #[arg(long, value_parser = parse_time)]
    pub until: Option<OffsetDateTime>,
}

impl Window {
    fn contains(&self, t: OffsetDateTime) -> bool {
        t >= self.since && self.until.is_none_or(|u| t <= u)
    }

    /// What a reader of `RECEIVED` does with `m`: stop once past `until`; skip it outside the
    /// window or without an envelope; else take it, with its stream info and envelope.
    pub(crate) fn sort(&self, m: &jetstream::Message) -> Retained {
        let Ok(info) = m.info() else {
            return Retained::Skip;
        };
        if self.until.is_some_and(|until| info.published > until) {
            return Retained::Stop;
        }
        if !self.contains(info.published) {
            return Retained::Skip;
        }
        let (published, seq) = (info.published, info.stream_sequence);
        match m
            .headers
            .as_ref()
            .and_then(|h| Envelope::from_headers(h).ok())
        {
            Some(envelope) => Retained::Take {
                published,
                seq,
                envelope,
            },
            None => Retained::Skip,
        }
    }
}

/// See [`Window::sort`].
pub(crate) enum Retained {
    Stop,
    Skip,
    Take {
        published: OffsetDateTime,
        seq: u64,
        envelope: Envelope,
    },
}

/// `maildrop-filter replay`.
#[derive(Debug, Clone, Args)]
pub struct ReplayArgs {
    #[command(flatten)]
    pub window: Window,
    /// The candidate rule set (TOML, like --rules of the running filter).
    #[arg(long = "rules", id = "replay_rules")]
    pub rules: PathBuf,
    /// Print the comparison as JSON instead of tables.
    #[arg(long)]
    pub json: bool,
    /// Example message ids shown per changed cell.
    #[arg(long, default_value_t = 5)]
    pub examples: usize,
}

/// One side of the confusion table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Accepted,
    Rejected,
    /// No recorded verdict (the filter had not judged it, or it left VERDICTS' retention).
    Unrecorded,
}

impl Outcome {
    fn of(accepted: bool) -> Self {
        if accepted {
            Self::Accepted
        } else {
            Self::Rejected
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Rejected => "rejected",
            Self::Unrecorded => "unrecorded",
        }
    }
}

/// One cell of the confusion table: recorded → replayed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Cell {
    pub recorded: Outcome,
    pub replayed: Outcome,
    pub count: u64,
    /// Up to `--examples` message ids, in stream order (only for cells where the verdict changed).
    pub examples: Vec<String>,
}

/// Hits of one rule, recorded and replayed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RuleCount {
    pub recorded: u64,
    pub replayed: u64,
}

/// Everything a replay found.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Comparison {
    pub ruleset: String,
    pub messages: u64,
    /// Messages whose verdict changed (recorded accepted ↔ replayed rejected).
    pub changed: u64,
    pub cells: Vec<Cell>,
    pub rules: BTreeMap<String, RuleCount>,
    #[serde(skip)]
    examples: usize,
}

impl Comparison {
    pub fn new(ruleset: &str, examples: usize) -> Self {
        Self {
            ruleset: ruleset.to_owned(),
            examples,
            ..Self::default()
        }
    }

    /// Adds one message: what production recorded (if anything) and what the replay decided.
    pub fn add(&mut self, recorded: Option<&Verdict>, replayed: &Verdict) {
        self.messages += 1;
        let was = recorded.map_or(Outcome::Unrecorded, |v| Outcome::of(v.accepted));
        let now = Outcome::of(replayed.accepted);
        let changed = was != Outcome::Unrecorded && was != now;
        if changed {
            self.changed += 1;
        }
        let cell = match self
            .cells
            .iter_mut()
            .find(|c| c.recorded == was && c.replayed == now)
        {
            Some(cell) => cell,
            None => {
                self.cells.push(Cell {
                    recorded: was,
                    replayed: now,
                    count: 0,
                    examples: Vec::new(),
                });
                self.cells.sort_by_key(|c| (c.recorded, c.replayed));
                self.cells
                    .iter_mut()
                    .find(|c| c.recorded == was && c.replayed == now)
                    .expect("just inserted")
            }
        };
        cell.count += 1;
        if changed && cell.examples.len() < self.examples {
            cell.examples.push(replayed.id.to_string());
        }
        for hit in recorded.map(|v| v.hits.as_slice()).unwrap_or_default() {
            self.rules.entry(hit.rule.clone()).or_default().recorded += 1;
        }
        for hit in &replayed.hits {
            self.rules.entry(hit.rule.clone()).or_default().replayed += 1;
        }
    }

    /// The comparison as tables for a person.
    pub fn render(&self, out: &mut impl Write) -> std::io::Result<()> {
        writeln!(
            out,
            "Replayed {} messages with rule set {}: {} verdicts changed.",
            self.messages, self.ruleset, self.changed
        )?;
        writeln!(out)?;
        writeln!(
            out,
            "{:<12} {:<10} {:>8}  examples",
            "recorded", "replayed", "count"
        )?;
        for c in &self.cells {
            writeln!(
                out,
                "{:<12} {:<10} {:>8}  {}",
                c.recorded.as_str(),
                c.replayed.as_str(),
                c.count,
                c.examples.join(" ")
            )?;
        }
        writeln!(out)?;
        writeln!(out, "{:<24} {:>9} {:>9}", "rule", "recorded", "replayed")?;
        for (rule, n) in &self.rules {
            writeln!(out, "{rule:<24} {:>9} {:>9}", n.recorded, n.replayed)?;
        }
        Ok(())
    }
}

/// Why a replay or an export failed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("cannot reach NATS")]
    Connect(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error(transparent)]
    Rules(#[from] ruleset::LoadError),
    #[error("cannot read stream {stream}: {source}")]
    Stream {
        stream: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
}

fn stream_error(
    stream: &'static str,
) -> impl Fn(Box<dyn std::error::Error + Send + Sync>) -> ReplayError {
    move |source| ReplayError::Stream { stream, source }
}

/// Reads `stream` (optionally one subject) from `since` up to the last message there was when the
/// read began, handing each message to `each`. Ephemeral and ordered: it leaves nothing behind.
pub async fn read_stream(
    js: &jetstream::Context,
    stream: &'static str,
    since: OffsetDateTime,
    mut each: impl FnMut(jetstream::Message) -> Result<bool, ReplayError>,
) -> Result<(), ReplayError> {
    let err = stream_error(stream);
    let consumer = js
        .get_stream(stream)
        .await
        .map_err(|e| err(e.into()))?
        .create_consumer(pull::OrderedConfig {
            deliver_policy: DeliverPolicy::ByStartTime { start_time: since },
            ..Default::default()
        })
        .await
        .map_err(|e| err(e.into()))?;
    let pending = consumer.cached_info().num_pending;
    if pending == 0 {
        return Ok(());
    }
    let mut messages = consumer
        .messages()
        .await
        .map_err(|e| err(e.into()))?
        .take(pending as usize);
    while let Some(m) = tokio::time::timeout(Duration::from_secs(30), messages.next())
        .await
        .map_err(|e| err(e.into()))?
    {
        if !each(m.map_err(|e| err(e.into()))?)? {
            break;
        }
    }
    Ok(())
}

/// The verdicts recorded from `since` on, by message id.
pub async fn recorded_verdicts(
    js: &jetstream::Context,
    since: OffsetDateTime,
) -> Result<HashMap<String, Verdict>, ReplayError> {
    let mut verdicts = HashMap::new();
    read_stream(js, subject::VERDICTS_STREAM, since, |m| {
        if let Ok(v) = serde_json::from_slice::<Verdict>(&m.payload) {
            verdicts.insert(v.id.to_string(), v);
        }
        Ok(true)
    })
    .await?;
    Ok(verdicts)
}

/// A progress bar on stderr, drawn only when stderr is a terminal.
pub fn progress(len: u64) -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} {pos}/{len} messages [{bar:40}] {per_sec} eta {eta}",
        )
        .expect("a valid template"),
    );
    bar
}

/// How long a replay or an export tries to reach NATS before giving up.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Connects to NATS for a replay or an export (nothing else: no stream set-up, no Redis), giving
/// up after [`CONNECT_TIMEOUT`]: a command line should not wait for ever.
pub async fn connect(config: &crate::Config) -> Result<jetstream::Context, ReplayError> {
    let cancel = tokio_util::sync::CancellationToken::new();
    let _stop = cancel.clone().drop_guard();
    let connect =
        maildrop_runtime::connect::nats(&config.nats.url, "maildrop-filter-research", &cancel);
    let client = tokio::time::timeout(CONNECT_TIMEOUT, connect)
        .await
        .map_err(|e| ReplayError::Connect(e.into()))?
        .map_err(|e| ReplayError::Connect(e.into()))?;
    Ok(jetstream::new(client))
}

/// `maildrop-filter replay`: runs it and prints the comparison to `out`.
pub async fn command(
    config: &crate::Config,
    args: &ReplayArgs,
    out: &mut impl Write,
) -> Result<Comparison, ReplayError> {
    let js = connect(config).await?;
    let context = Context {
        domains: config.domains.domains.clone(),
    };
    let comparison = replay(&js, args, &context).await?;
    if args.json {
        serde_json::to_writer_pretty(&mut *out, &comparison).map_err(std::io::Error::from)?;
        writeln!(out)?;
    } else {
        comparison.render(out)?;
    }
    Ok(comparison)
}

/// Runs a replay and returns its comparison.
pub async fn replay(
    js: &jetstream::Context,
    args: &ReplayArgs,
    context: &Context,
) -> Result<Comparison, ReplayError> {
    let rules = ruleset::load(&args.rules, context)?;
    let recorded = recorded_verdicts(js, args.window.since).await?;
    let mut comparison = Comparison::new(rules.version(), args.examples);
    let total = js
        .get_stream(subject::RECEIVED_STREAM)
        .await
        .ok()
        .map(|s| s.cached_info().state.messages)
        .unwrap_or(0);
    let bar = progress(total);
    read_stream(js, subject::RECEIVED_STREAM, args.window.since, |m| {
        bar.inc(1);
        let (seq, envelope) = match args.window.sort(&m) {
            Retained::Stop => return Ok(false),
            Retained::Skip => return Ok(true),
            Retained::Take { seq, envelope, .. } => (seq, envelope),
        };
        let replayed = crate::handler::judge_raw(&rules, &envelope, &m.payload, seq);
        comparison.add(recorded.get(&envelope.id.to_string()), &replayed);
        Ok(true)
    })
    .await?;
    bar.finish_and_clear();
    Ok(comparison)
}

#[cfg(test)]
mod tests {
    use maildrop_contract::RuleHit;

    use super::*;

    fn verdict(id: &str, accepted: bool, rules: &[&str]) -> Verdict {
        let mut v: Verdict =
            serde_json::from_str(include_str!("../../contract/fixtures/verdict.v1.json")).unwrap();
        v.id = id.parse().unwrap();
        v.accepted = accepted;
        v.hits = rules
            .iter()
            .map(|r| RuleHit {
                rule: (*r).into(),
                score: 1.0,
                reason: String::new(),
            })
            .collect();
        v
    }

    const A: &str = "01JDQ3M7V9G8W2Z1X5K4T6R0YA";
    const B: &str = "01JDQ3M7V9G8W2Z1X5K4T6R0YB";
    const C: &str = "01JDQ3M7V9G8W2Z1X5K4T6R0YC";

    #[test]
    fn the_table_counts_changes_and_keeps_examples() {
        let mut c = Comparison::new("v2", 1);
        c.add(Some(&verdict(A, true, &[])), &verdict(A, false, &["x"]));
        c.add(Some(&verdict(B, true, &[])), &verdict(B, false, &["x"]));
        c.add(Some(&verdict(C, false, &["y"])), &verdict(C, false, &["x"]));
        c.add(None, &verdict(A, true, &[]));
        assert_eq!(c.messages, 4);
        assert_eq!(c.changed, 2);
        let cells: Vec<_> = c
            .cells
            .iter()
            .map(|c| (c.recorded, c.replayed, c.count, c.examples.len()))
            .collect();
        assert_eq!(
            cells,
            [
                (Outcome::Accepted, Outcome::Rejected, 2, 1),
                (Outcome::Rejected, Outcome::Rejected, 1, 0),
                (Outcome::Unrecorded, Outcome::Accepted, 1, 0),
            ]
        );
        assert_eq!(
            c.rules["x"],
            RuleCount {
                recorded: 0,
                replayed: 3
            }
        );
        assert_eq!(
            c.rules["y"],
            RuleCount {
                recorded: 1,
                replayed: 0
            }
        );
        let mut text = Vec::new();
        c.render(&mut text).unwrap();
        let text = String::from_utf8(text).unwrap();
        assert!(text.contains("2 verdicts changed"), "{text}");
        assert!(text.contains(A), "{text}");
        let json = serde_json::to_value(&c).unwrap();
        assert_eq!(json["cells"][0]["examples"][0], A);
    }

    #[test]
    fn times_are_rfc3339_or_durations_ago() {
        let t = parse_time("2026-11-29T12:00:00Z").unwrap();
        assert_eq!(t.unix_timestamp(), 1_795_953_600);
        let ago = parse_time("2h").unwrap();
        let diff = OffsetDateTime::now_utc() - ago;
        assert!(diff.whole_minutes() >= 119 && diff.whole_minutes() <= 121);
        assert!(parse_time("yesterday-ish").is_err());
    }
}
