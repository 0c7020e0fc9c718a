//! Connecting to NATS and Redis, retried with exponential backoff until they answer or the stage is
//! shutting down.
//!
//! A stage that starts before its servers waits for them (and says so in the log) instead of
//! crashing into a restart loop. After the first connection both clients reconnect by themselves:
//! async-nats with unlimited reconnects, [`Redis`] on the next command (a single server) or per
//! node (a cluster).

use std::time::Duration;

use backoff::ExponentialBackoff;
use backoff::backoff::Backoff;
use maildrop_store::{Redis, RedisTarget};
use tokio_util::sync::CancellationToken;

/// Connecting was abandoned.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("shutting down before {0} answered")]
    Cancelled(&'static str),
    #[error("invalid Redis URL: {0}")]
    RedisUrl(#[source] redis::RedisError),
}

fn forever() -> ExponentialBackoff {
    ExponentialBackoff {
        initial_interval: Duration::from_millis(100),
        max_interval: Duration::from_secs(5),
        max_elapsed_time: None,
        ..ExponentialBackoff::default()
    }
}

/// Connects to NATS as `name` (shown in the server's connection list). `url` may list the nodes
/// of a cluster, comma-separated: the first that answers is used, and the client fails over to the
/// others (and to those the cluster announces) when it goes away.
pub async fn nats(
    url: &str,
    name: &str,
    cancel: &CancellationToken,
) -> Result<async_nats::Client, ConnectError> {
    let servers = servers(url);
    let mut backoff = forever();
    loop {
        let options = async_nats::ConnectOptions::new()
            .name(name)
            .max_reconnects(None)
            .event_callback(|event| async move {
                match event {
                    async_nats::Event::Connected => {
                        tracing::info!("NATS connection (re)established.")
                    }
                    async_nats::Event::Disconnected => {
                        tracing::warn!("NATS connection lost; reconnecting.")
                    }
                    other => tracing::info!(event = %other, "NATS event."),
                }
            });
        let attempt = tokio::select! {
            _ = cancel.cancelled() => return Err(ConnectError::Cancelled("NATS")),
            r = options.connect(servers.as_slice()) => r,
        };
        match attempt {
            Ok(client) => {
                tracing::info!(url, "Connected to NATS.");
                return Ok(client);
            }
            Err(e) => {
                let wait = backoff.next_backoff().unwrap_or(Duration::from_secs(5));
                tracing::warn!(url, error = %e, retry_in = ?wait, "NATS not reachable yet.");
                tokio::select! {
                    _ = cancel.cancelled() => return Err(ConnectError::Cancelled("NATS")),
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
}

/// The servers of a comma-separated list of NATS URLs.
fn servers(url: &str) -> Vec<&str> {
    url.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect()
}

/// Connects to Redis and returns a reconnecting connection handle. `url` names a single server or
/// a Redis Cluster (see [`maildrop_store::RedisTarget::parse`]).
pub async fn redis(url: &str, cancel: &CancellationToken) -> Result<Redis, ConnectError> {
    let target = RedisTarget::parse(url).map_err(ConnectError::RedisUrl)?;
    let kind = if target.is_cluster() {
        "Redis Cluster"
    } else {
        "Redis"
    };
    let mut backoff = forever();
    loop {
        let attempt = tokio::select! {
            _ = cancel.cancelled() => return Err(ConnectError::Cancelled("Redis")),
            r = target.connect() => r,
        };
        match attempt {
            Ok(conn) => {
                tracing::info!(kind, "Connected to Redis.");
                return Ok(conn);
            }
            Err(e) => {
                let wait = backoff.next_backoff().unwrap_or(Duration::from_secs(5));
                tracing::warn!(kind, error = %e, retry_in = ?wait, "Redis not reachable yet.");
                tokio::select! {
                    _ = cancel.cancelled() => return Err(ConnectError::Cancelled("Redis")),
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_cluster_is_a_comma_separated_list() {
        assert_eq!(
            super::servers("nats://a:4222, nats://b:4222,"),
            ["nats://a:4222", "nats://b:4222"]
        );
        assert_eq!(super::servers("nats://a:4222"), ["nats://a:4222"]);
    }
}
