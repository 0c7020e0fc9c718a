//! A real Redis Cluster for tests: three `redis-server` masters with `cluster-enabled yes` on free
//! loopback ports, joined by `redis-cli --cluster create` (the 16,384 slots split three ways, no
//! replicas), each node's data and `nodes.conf` in one temporary directory.

use std::process::Stdio;
use std::time::Duration;

use anyhow::Context as _;
use tokio::process::{Child, Command};

use crate::{free_port, wait_until};

const NODES: usize = 3;

struct Node {
    port: u16,
    child: Child,
}

/// Three Redis Cluster masters; killed on drop.
pub struct RedisCluster {
    nodes: Vec<Node>,
    _dir: tempfile::TempDir,
}

impl RedisCluster {
    /// Starts the three nodes, joins them and waits until every node says `cluster_state:ok`.
    pub async fn start() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let mut nodes = Vec::with_capacity(NODES);
        for i in 0..NODES {
            let (port, bus) = (free_port(), free_port());
            let node_dir = dir.path().join(format!("node-{i}"));
            std::fs::create_dir_all(&node_dir)?;
            let child = Command::new("redis-server")
                .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
                .args([
                    "--cluster-enabled",
                    "yes",
                    "--cluster-port",
                    &bus.to_string(),
                ])
                .args(["--cluster-config-file", "nodes.conf"])
                .args(["--cluster-node-timeout", "5000"])
                .args(["--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(&node_dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .context("cannot run redis-server (is it installed? `make deps`)")?;
            nodes.push(Node { port, child });
        }
        let cluster = Self { nodes, _dir: dir };
        cluster.wait_every_node("PING", "PONG").await?;
        let addresses: Vec<String> = cluster
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .await
            .context("cannot run redis-cli (Debian package redis-tools; `make deps`)")?;
        anyhow::ensure!(
            out.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        cluster
            .wait_every_node("CLUSTER INFO", "cluster_state:ok")
            .await?;
        Ok(cluster)
    }

    /// Waits until every node's answer to `command` contains `expected`.
    async fn wait_every_node(&self, command: &str, expected: &str) -> anyhow::Result<()> {
        for url in self.node_urls() {
            let what = format!("{url} to answer {command} with {expected}");
            wait_until(Duration::from_secs(30), &what, || {
                let url = url.clone();
                async move { info(&url, command).await?.contains(expected).then_some(()) }
            })
            .await?;
        }
        Ok(())
    }

    /// The URL a stage takes: every node, comma-separated.
    pub fn url(&self) -> String {
        self.node_urls().join(",")
    }

    /// Each node's own URL (a plain connection to that node only, for assertions).
    pub fn node_urls(&self) -> Vec<String> {
        self.nodes.iter().map(|n| node_url(n.port)).collect()
    }

    /// How many keys each node holds (`DBSIZE`), in node order.
    pub async fn key_counts(&self) -> anyhow::Result<Vec<u64>> {
        let mut counts = Vec::with_capacity(self.nodes.len());
        for url in self.node_urls() {
            let mut conn = redis::Client::open(url)?
                .get_multiplexed_async_connection()
                .await?;
            counts.push(redis::cmd("DBSIZE").query_async(&mut conn).await?);
        }
        Ok(counts)
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            let _ = node.child.start_kill();
        }
    }
}

fn node_url(port: u16) -> String {
    format!("redis://127.0.0.1:{port}")
}

/// `command` (one word or two, e.g. `CLUSTER INFO`) sent to one node, its answer as text.
async fn info(url: &str, command: &str) -> Option<String> {
    let mut conn = redis::Client::open(url)
        .ok()?
        .get_multiplexed_async_connection()
        .await
        .ok()?;
    let mut words = command.split(' ');
    let mut cmd = redis::cmd(words.next()?);
    for w in words {
        cmd.arg(w);
    }
    cmd.query_async::<String>(&mut conn).await.ok()
}
