//! A three-node NATS JetStream cluster of real `nats-server` processes, for tests that kill a node.
//!
//! Every node listens for clients and routes on its own free loopback ports, knows the other two as
//! routes, and keeps its JetStream store in the cluster's temporary directory, so a killed node can
//! come back with its data, as a restarted machine would.

use std::process::Stdio;
use std::time::Duration;

use anyhow::Context as _;
use tokio::process::{Child, Command};

use crate::{free_port, wait_until};

struct Node {
    name: String,
    client_port: u16,
    child: Option<Child>,
}

/// Three routed `nats-server -js` nodes (cluster name `maildrop-test`).
pub struct NatsCluster {
    nodes: Vec<Node>,
    dir: tempfile::TempDir,
}

impl NatsCluster {
    /// Starts three nodes and waits until JetStream has a meta leader.
    pub async fn start() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
        let mut nodes = Vec::new();
        // As for the single server: the file-store limit above any stream's, whatever the disk.
        for (i, (client, route)) in ports.iter().enumerate() {
            let name = format!("n{}", i + 1);
            let routes: Vec<String> = ports
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, (_, r))| format!("nats-route://127.0.0.1:{r}"))
                .collect();
            let config = format!(
                "server_name: {name}\nlisten: 127.0.0.1:{client}\nmax_payload: 33554432\n\
                 jetstream {{\n  store_dir: {:?}\n  max_file_store: 1TB\n}}\n\
                 cluster {{\n  name: maildrop-test\n  listen: 127.0.0.1:{route}\n  routes: [{}]\n}}\n",
                dir.path().join(&name),
                routes.join(", ")
            );
            std::fs::write(dir.path().join(format!("{name}.conf")), config)?;
            nodes.push(Node {
                name,
                client_port: *client,
                child: None,
            });
        }
        let mut cluster = Self { nodes, dir };
        for i in 0..3 {
            cluster.spawn(i)?;
        }
        for i in 0..3 {
            cluster.wait_ready(i).await?;
        }
        Ok(cluster)
    }

    /// Every node's client URL, comma-separated: what a stage's `--nats-url` takes.
    pub fn url(&self) -> String {
        (0..self.nodes.len())
            .map(|i| self.node_url(i))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// One node's client URL.
    pub fn node_url(&self, i: usize) -> String {
        format!("nats://127.0.0.1:{}", self.nodes[i].client_port)
    }

    /// The node's server name (`n1`, `n2`, `n3`), as JetStream reports leaders.
    pub fn name(&self, i: usize) -> &str {
        &self.nodes[i].name
    }

    /// The index of the node called `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }

    /// Kills node `i` (SIGKILL), keeping its data.
    pub async fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill().await;
        }
    }

    /// Starts node `i` again with its data and waits until JetStream answers through it.
    pub async fn resume(&mut self, i: usize) -> anyhow::Result<()> {
        self.spawn(i)?;
        self.wait_ready(i).await
    }

    fn spawn(&mut self, i: usize) -> anyhow::Result<()> {
        let node = &mut self.nodes[i];
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("{}.log", node.name)))?;
        let child = Command::new("nats-server")
            .arg("-c")
            .arg(self.dir.path().join(format!("{}.conf", node.name)))
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .context("cannot run nats-server (is it installed? `make deps`)")?;
        node.child = Some(child);
        Ok(())
    }

    async fn wait_ready(&self, i: usize) -> anyhow::Result<()> {
        let url = self.node_url(i);
        wait_until(
            // Generous: on a busy machine, electing a meta leader can take a while.
            Duration::from_secs(90),
            "a cluster node's JetStream to answer",
            || crate::servers::jetstream_answers(url.clone()),
        )
        .await
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(child) = node.child.as_mut() {
                let _ = child.start_kill();
            }
        }
    }
}
