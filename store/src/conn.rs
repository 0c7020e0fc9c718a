//! One Redis connection type for a single server and for a Redis Cluster.
//!
//! Every store type holds a [`Redis`], and a stage learns which kind it talks to from its URL
//! alone ([`RedisTarget::parse`]): one `redis://` URL is a single server; a comma-separated list of
//! node URLs, or one URL whose scheme is `redis+cluster://` (`rediss+cluster://` with TLS), is a
//! Redis Cluster whose other nodes the client discovers by itself.
//!
//! The key layout ([`crate::keys`]) is what makes the cluster work: every script and every
//! pipeline touches keys of one hash tag only (one mailbox, the usage index, the statistics, the
//! blocklists, one flood dimension), so each runs on one slot. The one command that is not about a
//! key, `SCAN`, goes to the node that owns the slot it scans ([`Redis::scan_slot`]).
//!
//! Both kinds reconnect by themselves: the single server's `ConnectionManager` on the next
//! command, the cluster client per node, re-reading the slot map when a node moves.

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, Slot, SlotAddr};
use redis::{Cmd, Pipeline, RedisFuture, RedisResult, Value};

/// How long a connection attempt may take, and how long one command may wait for its answer.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(5);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);

/// The scheme suffix that marks a single URL as a cluster's seed node.
const CLUSTER_SCHEME: &str = "+cluster://";

/// What a Redis URL names: a single server or a cluster.
#[derive(Debug, Clone)]
pub enum RedisTarget {
    Single(redis::Client),
    Cluster(Box<ClusterClient>),
}

impl RedisTarget {
    /// Reads `url`: one `redis://…` URL is a single server; `redis://a:7000,redis://b:7001` (any
    /// number of nodes) or `redis+cluster://a:7000` is a Redis Cluster.
    pub fn parse(url: &str) -> RedisResult<Self> {
        let nodes: Vec<&str> = url
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        let marked = nodes.iter().any(|n| n.contains(CLUSTER_SCHEME));
        match nodes.as_slice() {
            [single] if !marked => Ok(Self::Single(redis::Client::open(*single)?)),
            [] => redis::Client::open(url).map(Self::Single),
            _ => {
                let nodes: Vec<String> = nodes
                    .iter()
                    .map(|n| n.replacen(CLUSTER_SCHEME, "://", 1))
                    .collect();
                ClusterClientBuilder::new(nodes)
                    .connection_timeout(CONNECTION_TIMEOUT)
                    .response_timeout(RESPONSE_TIMEOUT)
                    .build()
                    .map(|client| Self::Cluster(Box::new(client)))
            }
        }
    }

    pub fn is_cluster(&self) -> bool {
        matches!(self, Self::Cluster(_))
    }

    /// Connects, for a stage: the single server's connection manager retries a few times with
    /// backoff (and so reconnects after an outage); the caller retries beyond that.
    pub async fn connect(&self) -> RedisResult<Redis> {
        self.connect_with(ConnectionManagerConfig::new()).await
    }

    /// Connects for a command an operator waits on: a single server with one attempt, without the
    /// connection manager's retries; a cluster as for a stage.
    pub async fn connect_once(&self) -> RedisResult<Redis> {
        self.connect_with(ConnectionManagerConfig::new().set_number_of_retries(1))
            .await
    }

    async fn connect_with(&self, config: ConnectionManagerConfig) -> RedisResult<Redis> {
        match self {
            Self::Single(client) => {
                let config = config
                    .set_connection_timeout(Some(CONNECTION_TIMEOUT))
                    .set_response_timeout(Some(RESPONSE_TIMEOUT));
                Ok(Redis::Single(
                    client.get_connection_manager_with_config(config).await?,
                ))
            }
            Self::Cluster(client) => Ok(Redis::Cluster(client.get_async_connection().await?)),
        }
    }
}

/// A reconnecting connection to a single Redis server or to a Redis Cluster; cheap to clone, and
/// clones share the connection.
#[derive(Clone)]
pub enum Redis {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl From<ConnectionManager> for Redis {
    fn from(conn: ConnectionManager) -> Self {
        Self::Single(conn)
    }
}

impl Redis {
    /// Connects once to `url` (see [`RedisTarget::parse`]).
    pub async fn open(url: &str) -> RedisResult<Self> {
        RedisTarget::parse(url)?.connect().await
    }

    /// One page of `SCAN cursor MATCH pattern COUNT count`, on the node that holds the slot of
    /// `tag_key`. In a cluster `SCAN` walks one node only, so a scan of keys that share a hash tag
    /// must go to that tag's node; on a single server this is plain `SCAN`.
    pub async fn scan_slot(
        &self,
        tag_key: &str,
        cursor: u64,
        pattern: &str,
        count: usize,
    ) -> RedisResult<(u64, Vec<String>)> {
        let mut cmd = redis::cmd("SCAN");
        cmd.arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(count);
        match self.clone() {
            Self::Single(mut conn) => cmd.query_async(&mut conn).await,
            Self::Cluster(mut conn) => {
                let route = Route::with_slot(Slot::for_key(tag_key), SlotAddr::Master);
                let value = conn
                    .route_command(
                        cmd,
                        RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route)),
                    )
                    .await?;
                Ok(redis::from_redis_value(value)?)
            }
        }
    }
}

impl ConnectionLike for Redis {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(conn) => conn.req_packed_command(cmd),
            Self::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(conn) => conn.req_packed_commands(cmd, offset, count),
            Self::Cluster(conn) => conn.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(conn) => conn.get_db(),
            Self::Cluster(conn) => conn.get_db(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::RedisTarget;

    #[test]
    fn one_url_is_a_single_server() {
        assert!(
            !RedisTarget::parse("redis://127.0.0.1:6379")
                .unwrap()
                .is_cluster()
        );
        assert!(
            !RedisTarget::parse(" redis://127.0.0.1:6379/2 ,")
                .unwrap()
                .is_cluster()
        );
    }

    #[test]
    fn a_list_or_the_cluster_scheme_is_a_cluster() {
        assert!(
            RedisTarget::parse("redis://127.0.0.1:7000, redis://127.0.0.1:7001")
                .unwrap()
                .is_cluster()
        );
        assert!(
            RedisTarget::parse("redis+cluster://127.0.0.1:7000")
                .unwrap()
                .is_cluster()
        );
    }

    #[test]
    fn a_bad_url_is_an_error_now() {
        assert!(RedisTarget::parse("http://127.0.0.1:6379").is_err());
        assert!(RedisTarget::parse("redis://a:1,http://b:2").is_err());
    }
}
