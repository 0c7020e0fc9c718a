//! A real `rspamd` for tests of the filter's rspamd backend.
//!
//! Debian's `rspamd` is started in the foreground with its own configuration overrides
//! (`LOCAL_CONFDIR`), database, run and log directories in a temporary directory, so it never
//! touches the system's: one normal worker on a free loopback port, the controller, proxy and
//! fuzzy workers off, logging to the console at `error`. Its DNS goes to the nameserver the test
//! gives (testkit's [`DnsServer`](crate::dns::DnsServer), or a loopback port where nothing
//! answers), never the internet; its blocklist lookups then fail fast and count for nothing, and
//! its content rules (GTUBE, missing headers) still score. Running as root needs `--insecure`,
//! and `-u`/`-g` name the current user and group (from `id`).
//!
//! rspamd forks its workers, so it runs in a process group of its own, and stopping sends
//! SIGTERM (through `kill`) to the whole group: the main process shuts its workers down.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context as _;
use tokio::process::{Child, Command};

use crate::{free_port, wait_until};

/// `rspamd -f` with its configuration and data in a temporary directory.
pub struct RspamdServer {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
}

impl RspamdServer {
    /// Starts rspamd, its DNS pointed at `nameserver`, and waits until it answers `/ping`.
    pub async fn start(nameserver: SocketAddr) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let port = free_port();
        let root = dir.path();
        for sub in ["local.d", "db", "run", "log"] {
            std::fs::create_dir(root.join(sub))?;
        }
        let local = root.join("local.d");
        let files = [
            (
                "worker-normal.inc",
                format!("bind_socket = \"127.0.0.1:{port}\";\ncount = 1;\n"),
            ),
            ("worker-controller.inc", "enabled = false;\n".to_owned()),
            ("worker-proxy.inc", "enabled = false;\n".to_owned()),
            ("worker-fuzzy.inc", "enabled = false;\n".to_owned()),
            (
                "logging.inc",
                "type = \"console\";\nlevel = \"error\";\n".to_owned(),
            ),
            (
                "options.inc",
                format!(
                    "dns {{\n  nameserver = [\"{nameserver}\"];\n  timeout = 0.5s;\n  retransmits = 1;\n}}\n"
                ),
            ),
        ];
        for (name, text) in files {
            std::fs::write(local.join(name), text)?;
        }
        let user = id("-un").await?;
        let group = id("-gn").await?;
        let log = std::fs::File::create(root.join("rspamd.out"))?;
        let var = |name: &str, path: &std::path::Path| format!("--var={name}={}", path.display());
        let child = Command::new("rspamd")
            .args(["-f", "-u", &user, "-g", &group, "--insecure"])
            .arg(var("LOCAL_CONFDIR", root))
            .arg(var("DBDIR", &root.join("db")))
            .arg(var("RUNDIR", &root.join("run")))
            .arg(var("LOGDIR", &root.join("log")))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .context(
                "cannot run rspamd (is it installed? `make deps` or apt-get install rspamd)",
            )?;
        let server = Self {
            child: Some(child),
            port,
            dir,
        };
        let ping = format!("{}/ping", server.url());
        let http = reqwest::Client::new();
        wait_until(Duration::from_secs(90), "rspamd to answer /ping", || {
            let (http, ping) = (http.clone(), ping.clone());
            async move {
                let r = http.get(&ping).send().await.ok()?;
                r.status().is_success().then_some(())
            }
        })
        .await
        .with_context(|| {
            let out =
                std::fs::read_to_string(server.dir.path().join("rspamd.out")).unwrap_or_default();
            format!("rspamd did not start; its output:\n{out}")
        })?;
        Ok(server)
    }

    /// The normal worker's base URL (`MAILDROP_RSPAMD_URL`).
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops rspamd and its workers (SIGTERM to the group) and waits until its port is closed.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        terminate_group(&child);
        if tokio::time::timeout(Duration::from_secs(15), child.wait())
            .await
            .is_err()
        {
            let _ = child.kill().await;
        }
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        wait_until(
            Duration::from_secs(15),
            "rspamd's port to close",
            || async {
                tokio::net::TcpStream::connect(addr)
                    .await
                    .is_err()
                    .then_some(())
            },
        )
        .await
    }
}

impl Drop for RspamdServer {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            terminate_group(child);
            let _ = child.start_kill();
        }
    }
}

/// SIGTERM to the child's process group (its id, as it leads the group), through `kill(1)`.
fn terminate_group(child: &Child) {
    if let Some(pid) = child.id() {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", "--", &format!("-{pid}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// `id <flag>`: the current user or group name, without unsafe code.
async fn id(flag: &str) -> anyhow::Result<String> {
    let out = Command::new("id")
        .arg(flag)
        .output()
        .await
        .context("cannot run id")?;
    anyhow::ensure!(out.status.success(), "id {flag} failed");
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}
