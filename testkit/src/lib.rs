//! The test harness: real servers on free ports, and typed helpers to talk to Maildrop.
//!
//! - [`NatsServer`] and [`RedisServer`] start `nats-server -js` and `redis-server` from `PATH` on
//!   free loopback ports with their data in a temporary directory; both can be stopped and started
//!   again on the same port and data (for outage tests) and are killed on drop.
//! - [`NatsCluster`]: three routed `nats-server -js` nodes, any of which can be killed and resumed.
//! - [`RedisCluster`]: three `redis-server` masters joined into a Redis Cluster.
//! - [`process`]: the stage binaries as child processes, for tests that SIGKILL a stage.
//! - [`dns`]: a DNS server of the test's own on loopback (a table of records, query counts, a
//!   mode that never answers), for the filter's DNS rules.
//! - [`rspamd`]: a real `rspamd` on a free port, configured in a temporary directory, its DNS on
//!   the test's own server, for the filter's rspamd backend.
//! - [`smtp`]: send mail with a real SMTP client (lettre).
//! - [`ws`]: a WebSocket client that reads JSON events.
//! - [`wait_until`]: poll a condition with a deadline instead of sleeping.

pub mod cluster;
pub mod dns;
pub mod process;
pub mod redis_cluster;
pub mod rspamd;
pub mod servers;
pub mod smtp;
pub mod ws;

use std::future::Future;
use std::time::Duration;

pub use cluster::NatsCluster;
pub use redis_cluster::RedisCluster;
pub use servers::{NatsServer, RedisServer, free_port};

/// Polls `check` every 25 ms until it returns `Some`, or fails after `timeout` with `what`.
pub async fn wait_until<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return Ok(v);
        }
        if tokio::time::Instant::now() >= deadline {
            anyhow::bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Logs from the code under test, once per test binary (`RUST_LOG` to filter).
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}
