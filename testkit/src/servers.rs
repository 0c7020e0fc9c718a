//! Real `nats-server` and `redis-server` processes for tests.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context as _;
use tokio::process::{Child, Command};

use crate::wait_until;

/// A free TCP port on 127.0.0.1 for a server a test starts, below the kernel's ephemeral range.
///
/// A port the OS picks (`bind` to port 0) comes from the ephemeral range, which every outgoing
/// connection also draws from: under a test's SMTP load (a connection per message) a client socket
/// can take the port before the server binds it, and the server then fails to start. Below the
/// range only servers bind, so the one window left is two tests choosing the same port between
/// this check and their bind; the start of the search differs per process and per call.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    const LOW: u32 = 10_000;
    let high = ephemeral_start().max(LOW + 1_000);
    let seed = std::process::id().wrapping_mul(7_919)
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
    for _ in 0..1_000 {
        let step = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = LOW + seed.wrapping_add(step.wrapping_mul(7_001)) % (high - LOW);
        if let Ok(listener) = TcpListener::bind(("127.0.0.1", port as u16)) {
            drop(listener);
            return port as u16;
        }
    }
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

/// The first port of the kernel's ephemeral range (Linux: `ip_local_port_range`; 32768 if unknown).
fn ephemeral_start() -> u32 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

/// `nats-server -js` with its store in a temporary directory.
pub struct NatsServer {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
}

impl NatsServer {
    /// Starts a server and waits until it accepts clients.
    pub async fn start() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let port = free_port();
        // Messages up to the SMTP size limit must fit in one NATS message (default max 1 MiB).
        // JetStream's default file-store limit is a share of the free disk, which would make the
        // stages' default stream sizes (RECEIVED: 8 GiB) fail on a nearly full disk; tests store
        // little, so the limit is set above any stream's.
        let config = format!(
            "listen: 127.0.0.1:{port}\nmax_payload: 33554432\njetstream {{\n  store_dir: {:?}\n  max_file_store: 1TB\n}}\n",
            dir.path().join("js")
        );
        std::fs::write(dir.path().join("nats.conf"), config)?;
        let mut server = Self {
            child: None,
            port,
            dir,
        };
        server.resume().await?;
        Ok(server)
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills the server (SIGKILL), keeping its data.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// Starts the server again on the same port with the same data.
    pub async fn resume(&mut self) -> anyhow::Result<()> {
        let log = std::fs::File::create(self.dir.path().join("nats.log"))?;
        let child = Command::new("nats-server")
            .arg("-c")
            .arg(self.dir.path().join("nats.conf"))
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .context("cannot run nats-server (is it installed? `make deps`)")?;
        self.child = Some(child);
        let url = self.url();
        wait_until(
            Duration::from_secs(20),
            "nats-server to accept clients",
            || jetstream_answers(url.clone()),
        )
        .await
    }
}

/// `Some` once the server at `url` accepts a client and its JetStream answers (only once it has
/// recovered its store, and in a cluster only once there is a meta leader). async-nats's own
/// account query cannot read nats-server 2.9's reply, so the API is asked directly.
pub(crate) async fn jetstream_answers(url: String) -> Option<()> {
    let client = async_nats::connect(&url).await.ok()?;
    let info = client.request("$JS.API.INFO", "".into()).await.ok()?;
    let text = String::from_utf8_lossy(&info.payload);
    (text.contains("account_info_response") && !text.contains("\"error\"")).then_some(())
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
    }
}

/// `redis-server` in a temporary directory: with no persistence (a restart empties it), or with an
/// append-only file synced on every write (a restart keeps everything acknowledged, as in
/// production).
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    persistent: bool,
}

impl RedisServer {
    pub async fn start() -> anyhow::Result<Self> {
        Self::launch(false).await
    }

    /// A server that keeps its data across [`stop`](Self::stop) and [`resume`](Self::resume).
    pub async fn start_persistent() -> anyhow::Result<Self> {
        Self::launch(true).await
    }

    async fn launch(persistent: bool) -> anyhow::Result<Self> {
        let mut server = Self {
            child: None,
            port: free_port(),
            dir: tempfile::tempdir()?,
            persistent,
        };
        server.resume().await?;
        Ok(server)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_owned()
    }

    /// A fresh connection (for assertions).
    pub async fn conn(&self) -> anyhow::Result<redis::aio::MultiplexedConnection> {
        Ok(redis::Client::open(self.url())?
            .get_multiplexed_async_connection()
            .await?)
    }

    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    pub async fn resume(&mut self) -> anyhow::Result<()> {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--save", ""])
            .args(if self.persistent {
                ["--appendonly", "yes", "--appendfsync", "always"]
            } else {
                ["--appendonly", "no", "--appendfsync", "no"]
            })
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("cannot run redis-server (is it installed? `make deps`)")?;
        self.child = Some(child);
        let url = self.url();
        wait_until(
            Duration::from_secs(20),
            "redis-server to answer PING",
            || {
                let url = url.clone();
                async move {
                    let mut conn = redis::Client::open(url)
                        .ok()?
                        .get_multiplexed_async_connection()
                        .await
                        .ok()?;
                    redis::cmd("PING")
                        .query_async::<String>(&mut conn)
                        .await
                        .ok()
                        .map(|_| ())
                }
            },
        )
        .await
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
    }
}
