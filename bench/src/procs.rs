//! The system under test as separate processes: the release binaries of the stages, each with its
//! own pid, so that each one's CPU and memory can be read from `/proc` (see [`crate::sample`]).
//!
//! `make bench` builds the binaries first (`cargo build --release --bins`); they are looked for
//! next to `maildrop-bench` itself (`target/release/`) unless `--bin-dir` says otherwise. Each run
//! gets a private `nats-server` and `redis-server` (the testkit's, on free ports in temporary
//! directories), the stages listen on free loopback ports and serve their operational endpoints on
//! a free port too (`MAILDROP_OPS_ADDR=127.0.0.1:0`), and their logs go to files in a temporary
//! directory, whose last lines are shown if a stage fails to start.
//!
//! Like the in-process scenarios, the stages read the `MAILDROP_*` variables of the environment, so
//! a setting can be tried under load. Two defaults differ here unless set: `MAILDROP_LOG` is
//! `warn`, as the Haraka peer logs warnings only (a log line per message is not what is being
//! compared), and `MAILDROP_RECEIVED_MAX_BYTES` is 2 GiB (see [`RECEIVED_MAX_BYTES`]).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context as _;
use maildrop_testkit::{NatsServer, RedisServer, free_port, wait_until};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

use crate::resources::children_of;
use crate::sample::Watched;
use crate::system::{Stage, http_ok, stage_args, uses_redis};

/// How long a process may take to be ready, and to stop after SIGTERM.
const READY: Duration = Duration::from_secs(30);
const STOP: Duration = Duration::from_secs(15);
/// Log level of the stages unless `MAILDROP_LOG` is set.
const DEFAULT_LOG: &str = "warn";
/// Cap of the raw-message stream unless `MAILDROP_RECEIVED_MAX_BYTES` is set: 2 GiB, more than
/// any scenario sends. nats-server refuses a stream whose cap exceeds what it may store (by
/// default 75 % of the free disk), so the stages' default of 8 GiB would stop every stage on a
/// machine with less than about 11 GiB free.
pub const RECEIVED_MAX_BYTES: &str = "2147483648";

/// Settings a scenario raises above the stages' defaults.
#[derive(Debug, Clone, Default)]
pub struct Limits {
    /// The ingest's `--max-connections`.
    pub smtp_connections: Option<u32>,
    /// The gateway's `--max-watchers` and `--max-watchers-per-ip` (all watchers are 127.0.0.1).
    pub watchers: Option<u32>,
}

/// The flags for `stage` beyond [`stage_args`]: its listener and raised limits.
pub fn extra_args(stage: Stage, listen: Option<SocketAddr>, limits: &Limits) -> Vec<String> {
    let mut args = Vec::new();
    match stage {
        Stage::Ingest => {
            if let Some(addr) = listen {
                args.extend(["--smtp-addr".to_owned(), addr.to_string()]);
            }
            if let Some(n) = limits.smtp_connections {
                args.extend(["--max-connections".to_owned(), n.to_string()]);
            }
        }
        Stage::Gateway => {
            if let Some(addr) = listen {
                args.extend(["--http-addr".to_owned(), addr.to_string()]);
            }
            if let Some(n) = limits.watchers {
                args.extend(["--max-watchers".to_owned(), n.to_string()]);
                args.extend(["--max-watchers-per-ip".to_owned(), n.to_string()]);
            }
        }
        Stage::Filter | Stage::StoreWriter | Stage::Reporter => {}
    }
    args
}

/// The directory of this executable: where `cargo build --release --bins` put the stages too.
pub fn default_bin_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_owned))
        .unwrap_or_else(|| PathBuf::from("target/release"))
}

struct StageChild {
    stage: Stage,
    child: Child,
    pid: u32,
    log: PathBuf,
}

/// nats-server, redis-server and stage processes, stopped by [`Fleet::stop`] (killed on drop).
pub struct Fleet {
    pub nats: NatsServer,
    pub redis: Option<RedisServer>,
    pub smtp: SocketAddr,
    pub http: Option<SocketAddr>,
    nats_pid: Option<u32>,
    redis_pid: Option<u32>,
    stages: Vec<StageChild>,
    dir: tempfile::TempDir,
}

impl Fleet {
    /// Starts the servers, then the ingest (which makes the streams) and, once it greets, the
    /// other `stages`; waits for the gateway's `/healthz` and checks that none has exited.
    pub async fn start(
        stages: &[Stage],
        domain: &str,
        bin_dir: &Path,
        limits: &Limits,
    ) -> anyhow::Result<Self> {
        for stage in stages {
            let bin = bin_dir.join(binary(*stage));
            anyhow::ensure!(
                bin.exists(),
                "{} not found: build the stages first (`cargo build --release --bins`, as `make bench` does) or pass --bin-dir",
                bin.display()
            );
        }
        eprintln!(
            "maildrop-bench: starting nats-server, redis-server and {} as processes (binaries from {})…",
            names(stages),
            bin_dir.display()
        );
        let before = children_of("self");
        let nats = NatsServer::start().await?;
        let nats_pid = new_child(&before, "nats-server");
        let before = children_of("self");
        let needs_redis = stages.iter().any(|&s| uses_redis(s));
        let redis = if needs_redis {
            Some(RedisServer::start().await?)
        } else {
            None
        };
        let redis_pid = new_child(&before, "redis-server");
        let mut fleet = Self {
            nats,
            redis,
            smtp: SocketAddr::from(([127, 0, 0, 1], free_port())),
            http: None,
            nats_pid,
            redis_pid,
            stages: Vec::new(),
            dir: tempfile::tempdir()?,
        };
        let mut order = stages.to_vec();
        order.sort_by_key(|&s| s != Stage::Ingest);
        let started: anyhow::Result<()> = async {
            for stage in order {
                let listen = match stage {
                    Stage::Ingest => Some(fleet.smtp),
                    Stage::Gateway => {
                        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
                        fleet.http = Some(addr);
                        Some(addr)
                    }
                    _ => None,
                };
                fleet.spawn(stage, domain, bin_dir, listen, limits)?;
                if stage == Stage::Ingest {
                    let addr = fleet.smtp;
                    fleet
                        .wait_or_explain(Stage::Ingest, "the ingest to greet", move || async move {
                            greets(addr).await.then_some(())
                        })
                        .await?;
                }
            }
            if let Some(addr) = fleet.http {
                fleet
                    .wait_or_explain(
                        Stage::Gateway,
                        "the gateway's /healthz",
                        move || async move { http_ok(addr, "/healthz").await.then_some(()) },
                    )
                    .await?;
            }
            fleet.check_running()
        }
        .await;
        match started {
            Ok(()) => Ok(fleet),
            Err(e) => {
                fleet.stop().await;
                Err(e)
            }
        }
    }

    fn spawn(
        &mut self,
        stage: Stage,
        domain: &str,
        bin_dir: &Path,
        listen: Option<SocketAddr>,
        limits: &Limits,
    ) -> anyhow::Result<()> {
        let redis = self.redis.as_ref().map(RedisServer::url);
        let mut args = stage_args(stage, &self.nats.url(), redis.as_deref(), domain);
        args.remove(0); // the program name
        args.extend(extra_args(stage, listen, limits));
        let log = self.dir.path().join(format!("{}.log", stage.name()));
        let file = std::fs::File::create(&log)?;
        let bin = bin_dir.join(binary(stage));
        let mut cmd = Command::new(&bin);
        cmd.args(&args)
            // Operational endpoints on a free port, never a default another Maildrop may hold.
            .env("MAILDROP_OPS_ADDR", "127.0.0.1:0")
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .kill_on_drop(true);
        for (key, value) in [
            ("MAILDROP_LOG", DEFAULT_LOG),
            ("MAILDROP_RECEIVED_MAX_BYTES", RECEIVED_MAX_BYTES),
        ] {
            if std::env::var_os(key).is_none() {
                cmd.env(key, value);
            }
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        let pid = child.id().context("a just-started stage has a pid")?;
        self.stages.push(StageChild {
            stage,
            child,
            pid,
            log,
        });
        Ok(())
    }

    /// Waits for `check`; if it times out or the stage exits first, says so with its log.
    async fn wait_or_explain<F, Fut>(
        &mut self,
        stage: Stage,
        what: &str,
        mut check: F,
    ) -> anyhow::Result<()>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<()>>,
    {
        let deadline = tokio::time::Instant::now() + READY;
        loop {
            if check().await.is_some() {
                return Ok(());
            }
            self.check_running()?;
            if tokio::time::Instant::now() >= deadline {
                anyhow::bail!(
                    "timed out after {READY:?} waiting for {what}; its log ends:\n{}",
                    self.log_tail(stage)
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Fails, with the stage's log, if any stage has exited.
    pub fn check_running(&mut self) -> anyhow::Result<()> {
        for s in &mut self.stages {
            if let Ok(Some(status)) = s.child.try_wait() {
                anyhow::bail!(
                    "{} exited ({status}); its log ends:\n{}",
                    s.stage.name(),
                    tail(&std::fs::read_to_string(&s.log).unwrap_or_default(), 20)
                );
            }
        }
        Ok(())
    }

    fn log_tail(&self, stage: Stage) -> String {
        self.stages
            .iter()
            .find(|s| s.stage == stage)
            .map(|s| tail(&std::fs::read_to_string(&s.log).unwrap_or_default(), 20))
            .unwrap_or_default()
    }

    /// Every process of the system, for the sampler: the stages, then the servers.
    pub fn watched(&self) -> Vec<Watched> {
        let mut w: Vec<Watched> = self
            .stages
            .iter()
            .map(|s| Watched::new(s.stage.name(), s.pid))
            .collect();
        w.extend(self.nats_pid.map(|pid| Watched::new("nats-server", pid)));
        w.extend(self.redis_pid.map(|pid| Watched::new("redis-server", pid)));
        w
    }

    /// SIGTERM to every stage, a wait for each, then the servers.
    pub async fn stop(mut self) {
        for s in &self.stages {
            terminate(s.pid);
        }
        for s in &mut self.stages {
            if tokio::time::timeout(STOP, s.child.wait()).await.is_err() {
                eprintln!(
                    "maildrop-bench: {} did not stop within {STOP:?} of SIGTERM; killed.",
                    s.stage.name()
                );
                let _ = s.child.kill().await;
            }
        }
        self.nats.stop().await;
        if let Some(redis) = self.redis.as_mut() {
            redis.stop().await;
        }
    }
}

/// The binary of `stage`.
pub fn binary(stage: Stage) -> String {
    format!("maildrop-{}", stage.name())
}

fn names(stages: &[Stage]) -> String {
    stages
        .iter()
        .map(|s| s.name())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The child of this process named `comm` that was not in `before`.
pub fn new_child(before: &[u32], comm: &str) -> Option<u32> {
    children_of("self").into_iter().find(|pid| {
        !before.contains(pid)
            && std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == comm)
    })
}

/// Sends SIGTERM with `kill(1)` (the workspace has no unsafe code for `kill(2)`).
pub fn terminate(pid: u32) {
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The server at `addr` sends an SMTP greeting.
pub async fn greets(addr: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect(addr).await else {
        return false;
    };
    let mut buf = [0u8; 3];
    matches!(
        tokio::time::timeout(Duration::from_secs(2), s.read_exact(&mut buf)).await,
        Ok(Ok(_))
    ) && &buf == b"220"
}

/// Waits up to `timeout` for a server at `addr` to greet.
pub async fn wait_for_greeting(
    addr: SocketAddr,
    timeout: Duration,
    what: &str,
) -> anyhow::Result<()> {
    wait_until(
        timeout,
        what,
        || async move { greets(addr).await.then_some(()) },
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn raised_limits_are_flags_the_stages_accept() {
        let limits = Limits {
            smtp_connections: Some(3000),
            watchers: Some(12_000),
        };
        let addr: SocketAddr = "127.0.0.1:2600".parse().unwrap();
        let mut args = stage_args(Stage::Ingest, "nats://x", Some("redis://y"), "b.test");
        args.extend(extra_args(Stage::Ingest, Some(addr), &limits));
        let ingest = maildrop_ingest::Config::try_parse_from(args).unwrap();
        assert_eq!((ingest.max_connections, ingest.smtp_addr), (3000, addr));
        let mut args = stage_args(Stage::Gateway, "nats://x", Some("redis://y"), "b.test");
        args.extend(extra_args(Stage::Gateway, Some(addr), &limits));
        let gateway = maildrop_gateway::Config::try_parse_from(args).unwrap();
        assert_eq!(gateway.http_addr, addr);
        assert_eq!(
            (gateway.max_watchers, gateway.max_watchers_per_ip),
            (12_000, 12_000)
        );
        assert!(extra_args(Stage::Filter, None, &limits).is_empty());
    }

    #[test]
    fn a_log_is_shown_by_its_last_lines() {
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail("a", 5), "a");
        assert_eq!(tail("", 5), "");
    }
}
