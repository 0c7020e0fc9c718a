//! The peers Maildrop is compared with, run on this machine in the same scenario.
//!
//! - **smtp-sink** (Postfix's test server, Debian's `postfix` package): accepts every message and
//!   throws it away, so it is the ceiling for an SMTP receiver on this machine. Run as
//!   `smtp-sink [-u nobody] 127.0.0.1:<port> 1024` (it refuses to run as root without `-u`).
//! - **Haraka** (npm, pinned in `bench/peers/haraka/package-lock.json`, installed by `npm ci`) with
//!   the minimal queue plugin `bench/peers/haraka/plugins/queue_redis.js`: it accepts the bench
//!   domain at RCPT and answers 250 to DATA only after its own redis-server stored the message.
//!   Each run copies Haraka's default configuration, then `bench/peers/haraka/config/` over it,
//!   into a temporary directory, and writes `smtp.ini` (listen address, `nodes`) and
//!   `queue_redis.ini` (Redis URL, domains) there. Haraka runs as a tree of processes (a master and
//!   `nodes` workers), which is sampled as one.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context as _;
use maildrop_testkit::{RedisServer, free_port};
use tokio::process::{Child, Command};

use crate::procs::{tail, terminate, wait_for_greeting};
use crate::resources::children_of;
use crate::sample::Watched;

/// How long a peer may take to greet, and to stop.
const READY: Duration = Duration::from_secs(30);
const STOP: Duration = Duration::from_secs(10);
/// smtp-sink's listen backlog.
const BACKLOG: &str = "1024";
/// The unprivileged user smtp-sink switches to when started as root.
const SINK_USER: &str = "nobody";

/// Which peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerKind {
    SmtpSink,
    Haraka,
}

impl PeerKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::SmtpSink => "smtp-sink",
            Self::Haraka => "Haraka",
        }
    }
}

/// A running peer.
pub struct Peer {
    pub kind: PeerKind,
    pub smtp: SocketAddr,
    child: Child,
    pid: u32,
    redis: Option<RedisServer>,
    redis_pid: Option<u32>,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

/// Where smtp-sink is: on `PATH`, or in `/usr/sbin` (not on a normal user's `PATH`).
pub fn find_smtp_sink() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
        .map(|d| d.join("smtp-sink"))
        .find(|p| p.is_file())
}

/// Whether the real user id in the text of `/proc/self/status` is root's.
pub fn is_root(status: &str) -> bool {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|rest| rest.split_whitespace().next())
        == Some("0")
}

/// smtp-sink's arguments.
pub fn smtp_sink_args(addr: SocketAddr, root: bool) -> Vec<String> {
    let mut args = Vec::new();
    if root {
        args.extend(["-u".to_owned(), SINK_USER.to_owned()]);
    }
    args.extend([addr.to_string(), BACKLOG.to_owned()]);
    args
}

/// Haraka's `smtp.ini` for a run.
pub fn haraka_smtp_ini(addr: SocketAddr, nodes: &str) -> String {
    format!("; written by maildrop-bench\nlisten={addr}\nnodes={nodes}\n")
}

/// The queue plugin's `queue_redis.ini`.
pub fn haraka_queue_ini(redis_url: &str, domain: &str) -> String {
    format!("; written by maildrop-bench\nurl={redis_url}\ndomains={domain}\n")
}

impl Peer {
    /// Starts smtp-sink on a free port.
    pub async fn smtp_sink() -> anyhow::Result<Self> {
        let bin = find_smtp_sink().context(
            "smtp-sink not found (Debian's postfix package; scripts/bench-deps.sh installs it)",
        )?;
        let root = std::fs::read_to_string("/proc/self/status").is_ok_and(|s| is_root(&s));
        let smtp = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let dir = tempfile::tempdir()?;
        let mut cmd = Command::new(&bin);
        cmd.args(smtp_sink_args(smtp, root));
        Self::spawn(PeerKind::SmtpSink, cmd, smtp, None, dir).await
    }

    /// Starts Haraka from `haraka_dir` (where `npm ci` ran) with `nodes` workers and its own
    /// redis-server.
    pub async fn haraka(haraka_dir: &Path, nodes: &str, domain: &str) -> anyhow::Result<Self> {
        let modules = haraka_dir.join("node_modules");
        let core = modules.join("Haraka");
        anyhow::ensure!(
            core.join("bin/haraka").is_file(),
            "Haraka is not installed in {} (run `npm ci` there; `make bench` does)",
            haraka_dir.display()
        );
        let before = children_of("self");
        let redis = RedisServer::start().await?;
        let redis_pid = crate::procs::new_child(&before, "redis-server");
        let dir = tempfile::tempdir()?;
        let config = dir.path().join("config");
        copy_dir(&core.join("config"), &config)?;
        copy_dir(&haraka_dir.join("config"), &config)?;
        copy_dir(&haraka_dir.join("plugins"), &dir.path().join("plugins"))?;
        std::os::unix::fs::symlink(&modules, dir.path().join("node_modules"))?;
        let smtp = SocketAddr::from(([127, 0, 0, 1], free_port()));
        std::fs::write(config.join("smtp.ini"), haraka_smtp_ini(smtp, nodes))?;
        std::fs::write(
            config.join("queue_redis.ini"),
            haraka_queue_ini(&redis.url(), domain),
        )?;
        let mut cmd = Command::new("node");
        cmd.arg(core.join("bin/haraka")).arg("-c").arg(dir.path());
        Self::spawn(PeerKind::Haraka, cmd, smtp, Some((redis, redis_pid)), dir).await
    }

    async fn spawn(
        kind: PeerKind,
        mut cmd: Command,
        smtp: SocketAddr,
        redis: Option<(RedisServer, Option<u32>)>,
        dir: tempfile::TempDir,
    ) -> anyhow::Result<Self> {
        eprintln!("maildrop-bench: starting {} at {smtp}…", kind.name());
        let log = dir.path().join("peer.log");
        let file = std::fs::File::create(&log)?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", kind.name()))?;
        let pid = child.id().context("a just-started peer has a pid")?;
        let (redis, redis_pid) = match redis {
            Some((r, pid)) => (Some(r), pid),
            None => (None, None),
        };
        let peer = Self {
            kind,
            smtp,
            child,
            pid,
            redis,
            redis_pid,
            log,
            _dir: dir,
        };
        let what = format!("{} to greet", kind.name());
        if let Err(e) = wait_for_greeting(smtp, READY, &what).await {
            let log = tail(&std::fs::read_to_string(&peer.log).unwrap_or_default(), 20);
            peer.stop().await;
            return Err(e.context(format!("its log ends:\n{log}")));
        }
        Ok(peer)
    }

    /// The peer (as a tree) and its redis-server, for the sampler.
    pub fn watched(&self) -> Vec<Watched> {
        let mut w = vec![Watched::tree(self.kind.name(), self.pid)];
        w.extend(self.redis_pid.map(|pid| Watched::new("redis-server", pid)));
        w
    }

    /// SIGTERM, then SIGKILL to whatever of the tree is left 10 s later.
    pub async fn stop(mut self) {
        let mut tree = vec![self.pid];
        let mut i = 0;
        while i < tree.len() {
            tree.extend(children_of(&tree[i].to_string()));
            i += 1;
        }
        terminate(self.pid);
        if tokio::time::timeout(STOP, self.child.wait()).await.is_err() {
            let _ = self.child.kill().await;
        }
        for pid in tree.into_iter().skip(1) {
            if Path::new(&format!("/proc/{pid}")).exists() {
                let _ = std::process::Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .stderr(Stdio::null())
                    .status();
            }
        }
        if let Some(redis) = self.redis.as_mut() {
            redis.stop().await;
        }
    }
}

/// Copies the files of `from` into `to` (made if missing), over what is there; one level deep
/// and its subdirectories, as Haraka's configuration is.
fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in
        std::fs::read_dir(from).with_context(|| format!("cannot read {}", from.display()))?
    {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smtp_sink_drops_root_for_nobody() {
        let addr: SocketAddr = "127.0.0.1:2600".parse().unwrap();
        assert_eq!(
            smtp_sink_args(addr, true),
            ["-u", "nobody", "127.0.0.1:2600", "1024"]
        );
        assert_eq!(smtp_sink_args(addr, false), ["127.0.0.1:2600", "1024"]);
    }

    #[test]
    fn root_is_read_from_the_real_uid() {
        assert!(is_root("Name:\tx\nUid:\t0\t0\t0\t0\n"));
        assert!(!is_root("Name:\tx\nUid:\t1000\t0\t1000\t1000\n"));
        assert!(!is_root("Name:\tx\n"));
    }

    #[test]
    fn haraka_is_configured_for_the_run() {
        let addr: SocketAddr = "127.0.0.1:2600".parse().unwrap();
        let ini = haraka_smtp_ini(addr, "cpus");
        assert!(ini.contains("\nlisten=127.0.0.1:2600\n") && ini.contains("\nnodes=cpus\n"));
        let q = haraka_queue_ini("redis://127.0.0.1:7", "maildrop.localhost");
        assert!(
            q.contains("url=redis://127.0.0.1:7\n") && q.contains("domains=maildrop.localhost\n")
        );
    }

    #[test]
    fn the_haraka_peer_ships_its_plugin_and_pinned_versions() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("peers/haraka");
        let plugins = std::fs::read_to_string(dir.join("config/plugins")).unwrap();
        let listed: Vec<&str> = plugins
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect();
        assert_eq!(listed, ["queue_redis"]);
        assert!(dir.join("plugins/queue_redis.js").is_file());
        let lock: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("package-lock.json")).unwrap())
                .unwrap();
        assert!(lock["packages"]["node_modules/Haraka"]["version"].is_string());
    }
}
