//! `maildrop-filter block add|remove|list`: the operator's side of the run-time blocklists.
//!
//! ```text
//! maildrop-filter block add ip 203.0.113.0/24 --ttl 1h
//! maildrop-filter block add subject "cheap pills"
//! maildrop-filter block remove sender spam@example.com
//! maildrop-filter block list [sender|domain|ip|subject]
//! ```
//!
//! The lists live in Redis (`maildrop_store::blocklist`, which also says how each list matches);
//! every running filter sees a change with its next message, no reload needed. An entry is
//! written in its canonical form and echoed back that way, so the operator sees what will match.
//! Adding an entry that is listed already renews it with the new lifetime.

use std::io::Write;
use std::time::{Duration, UNIX_EPOCH};

use clap::{Args, Subcommand, ValueEnum};
use maildrop_runtime::args::parse_duration;
use maildrop_store::StoreError;
use maildrop_store::blocklist::{BlocklistStore, Entry, EntryError, List};

/// `maildrop-filter block …`.
#[derive(Debug, Clone, Args)]
pub struct BlockArgs {
    #[command(subcommand)]
    pub action: BlockAction,
}

#[derive(Debug, Clone, Subcommand)]
pub enum BlockAction {
    /// Add an entry (or renew it).
    Add {
        list: ListArg,
        /// sender: user@domain; domain: example.com (and below); ip: an address or a CIDR
        /// network; subject: text the subject contains (case and white space folded).
        value: String,
        /// How long the entry stays (e.g. 30m, 1h, 7d); without it, until removed.
        #[arg(long, value_parser = parse_duration)]
        ttl: Option<Duration>,
    },
    /// Remove an entry.
    Remove { list: ListArg, value: String },
    /// Show the live entries of one list, or of all.
    List { list: Option<ListArg> },
}

/// The lists, as named on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ListArg {
    Sender,
    Domain,
    Ip,
    Subject,
}

impl From<ListArg> for List {
    fn from(l: ListArg) -> Self {
        match l {
            ListArg::Sender => List::Sender,
            ListArg::Domain => List::Domain,
            ListArg::Ip => List::Ip,
            ListArg::Subject => List::Subject,
        }
    }
}

/// Why an admin command failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error(transparent)]
    Entry(#[from] EntryError),
    #[error("MAILDROP_REDIS_URL")]
    RedisUrl(#[source] redis::RedisError),
    #[error("cannot reach Redis")]
    Connect(#[source] redis::RedisError),
    #[error("no answer from Redis within {0:?}")]
    ConnectTimeout(Duration),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot write the answer")]
    Output(#[from] std::io::Error),
}

/// How long an admin command waits for Redis: an operator is waiting.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Connects to Redis at `redis_url` (a single server or a cluster; failing fast: an operator is waiting) and runs `args`,
/// writing the answer to `out`.
pub async fn run(
    redis_url: &str,
    args: &BlockArgs,
    out: &mut impl Write,
) -> Result<(), AdminError> {
    let target = maildrop_store::RedisTarget::parse(redis_url).map_err(AdminError::RedisUrl)?;
    let conn = tokio::time::timeout(CONNECT_TIMEOUT, target.connect_once())
        .await
        .map_err(|_| AdminError::ConnectTimeout(CONNECT_TIMEOUT))?
        .map_err(AdminError::Connect)?;
    execute(
        &BlocklistStore::new(conn),
        args,
        maildrop_contract::now_ms(),
        out,
    )
    .await
}

/// Runs `args` against `store` at time `now_ms`.
pub async fn execute(
    store: &BlocklistStore,
    args: &BlockArgs,
    now_ms: u64,
    out: &mut impl Write,
) -> Result<(), AdminError> {
    match &args.action {
        BlockAction::Add { list, value, ttl } => {
            let entry = Entry::parse((*list).into(), value)?;
            store.add(&entry, *ttl, now_ms).await?;
            let until = match ttl {
                Some(ttl) => format!("for {}", humantime::format_duration(*ttl)),
                None => "until removed".to_owned(),
            };
            writeln!(out, "blocked {} {} {until}", entry.list(), entry.value())?;
        }
        BlockAction::Remove { list, value } => {
            let entry = Entry::parse((*list).into(), value)?;
            if store.remove(&entry).await? {
                writeln!(out, "unblocked {} {}", entry.list(), entry.value())?;
            } else {
                writeln!(out, "{} {} was not blocked", entry.list(), entry.value())?;
            }
        }
        BlockAction::List { list } => {
            let lists = match list {
                Some(l) => vec![List::from(*l)],
                None => List::ALL.to_vec(),
            };
            for list in lists {
                for listed in store.list(list, now_ms).await? {
                    let expires = match listed.expires_ms {
                        Some(ms) => humantime::format_rfc3339_seconds(
                            UNIX_EPOCH + Duration::from_millis(ms),
                        )
                        .to_string(),
                        None => "never".to_owned(),
                    };
                    writeln!(out, "{list}\t{}\t{expires}", listed.value)?;
                }
            }
        }
    }
    Ok(())
}
