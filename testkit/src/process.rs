//! The stages as real processes, for fault tests that kill one with SIGKILL and start it again.
//!
//! In-process stages (the e2e `Pipeline`) can be cancelled, but not killed: a cancelled stage still
//! finishes its work in hand. A crash is only real with a process, so these tests run the same
//! binaries `make run` runs. [`stage_binary`] builds them once per test process with the cargo
//! that runs the tests (a no-op when they are fresh: `make test` builds them before the tests) and
//! finds them in the test binary's own target directory.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::Context as _;
use tokio::process::{Child, Command};

/// The five stage binaries, as `cargo build --bins` names them.
pub const STAGES: [&str; 5] = [
    "maildrop-ingest",
    "maildrop-filter",
    "maildrop-store-writer",
    "maildrop-gateway",
    "maildrop-reporter",
];

/// The path of a stage binary (`maildrop-ingest`, …), built if needed.
pub fn stage_binary(name: &str) -> anyhow::Result<PathBuf> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let dir = BUILT
        .get_or_init(|| build().map_err(|e| format!("{e:#}")))
        .as_ref()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let path = dir.join(name);
    anyhow::ensure!(path.exists(), "{} was not built", path.display());
    Ok(path)
}

fn build() -> anyhow::Result<PathBuf> {
    // target/<profile>/deps/<test> → target/<profile>
    let exe = std::env::current_exe()?;
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .context("the test binary is not in target/<profile>/deps")?
        .to_owned();
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("testkit is not in the workspace")?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = std::process::Command::new(cargo);
    cmd.arg("build")
        .arg("--manifest-path")
        .arg(workspace.join("Cargo.toml"));
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        cmd.arg("--release");
    }
    // The same selection as `make test`'s own `cargo build --workspace --bins`, so both resolve
    // the same features and neither rebuilds what the other built.
    let status = cmd
        .args(["--workspace", "--bins"])
        .status()
        .context("cannot run cargo to build the stage binaries")?;
    anyhow::ensure!(status.success(), "building the stage binaries failed");
    Ok(profile_dir)
}

/// One stage binary run as a child process, with its log in a file.
pub struct StageProcess {
    name: String,
    bin: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    log: PathBuf,
    child: Option<Child>,
}

impl StageProcess {
    /// A stage that logs into `dir`; not started yet.
    pub fn new(name: &str, dir: &Path, args: &[&str]) -> anyhow::Result<Self> {
        Ok(Self {
            name: name.to_owned(),
            bin: stage_binary(name)?,
            args: args.iter().map(|s| (*s).to_owned()).collect(),
            env: Vec::new(),
            log: dir.join(format!("{name}.log")),
            child: None,
        })
    }

    /// Sets an environment variable for every later start.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Starts the process (appending to its log).
    pub fn start(&mut self) -> anyhow::Result<()> {
        anyhow::ensure!(self.child.is_none(), "{} is already running", self.name);
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let mut cmd = Command::new(&self.bin);
        // The developer's own MAILDROP_* settings must not leak into a test.
        for (key, _) in std::env::vars() {
            if key.starts_with("MAILDROP_") {
                cmd.env_remove(key);
            }
        }
        let child = cmd
            // Operational endpoints on a free port, never a fixed default shared between tests.
            .env("MAILDROP_OPS_ADDR", "127.0.0.1:0")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", self.bin.display()))?;
        self.child = Some(child);
        Ok(())
    }

    /// SIGKILL: no shutdown, no flush, work in hand lost as in a crash.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// SIGTERM, then waits up to `grace` for a clean exit; returns whether it exited successfully.
    pub async fn terminate(&mut self, grace: Duration) -> anyhow::Result<bool> {
        if self.child.is_none() {
            return Ok(true);
        }
        self.signal("TERM")?;
        Ok(self.wait_exit(grace).await?.success())
    }

    /// Sends `signal` (a `kill -s` name such as `TERM`) to the running process, without waiting.
    pub fn signal(&self, signal: &str) -> anyhow::Result<()> {
        let pid = self
            .child
            .as_ref()
            .and_then(Child::id)
            .with_context(|| format!("{} is not running", self.name))?;
        let status = std::process::Command::new("kill")
            .args(["-s", signal, &pid.to_string()])
            .status()?;
        anyhow::ensure!(status.success(), "kill -s {signal} {pid} failed");
        Ok(())
    }

    /// Waits up to `within` for the process to exit by itself and returns how it exited; past
    /// that it is killed and this fails.
    pub async fn wait_exit(&mut self, within: Duration) -> anyhow::Result<ExitStatus> {
        let mut child = self
            .child
            .take()
            .with_context(|| format!("{} is not running", self.name))?;
        match tokio::time::timeout(within, child.wait()).await {
            Ok(status) => Ok(status?),
            Err(_) => {
                let _ = child.kill().await;
                anyhow::bail!("{} did not exit within {within:?}", self.name)
            }
        }
    }

    /// The file the process logs into (stdout and stderr both).
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Whether the process is still running (false once it exited by itself).
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    /// The process's log so far (for a failing test's message).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// The domain the [`Stages`] receive mail for.
pub const DOMAIN: &str = "maildrop.test";

/// All five stages as processes on one NATS and one Redis: SMTP and HTTP on free loopback ports,
/// the filter asking no real DNS, the gateway without a rate limit, every log in one temporary
/// directory. Built by [`StagesBuilder`]; killed on drop.
pub struct Stages {
    dir: tempfile::TempDir,
    pub smtp: std::net::SocketAddr,
    pub http: std::net::SocketAddr,
    stages: Vec<StageProcess>,
}

/// What a [`Stages`] set runs with, beyond the defaults.
pub struct StagesBuilder {
    nats_url: String,
    ingest_nats_url: Option<String>,
    redis_url: String,
    all: Vec<String>,
    own: Vec<(String, Vec<String>)>,
    env: Vec<(String, String)>,
}

impl Stages {
    /// The five stages on `nats_url` and `redis_url`, logging at `info`.
    pub fn builder(nats_url: &str, redis_url: &str) -> StagesBuilder {
        StagesBuilder {
            nats_url: nats_url.to_owned(),
            ingest_nats_url: None,
            redis_url: redis_url.to_owned(),
            all: Vec::new(),
            own: Vec::new(),
            env: vec![("MAILDROP_LOG".to_owned(), "info".to_owned())],
        }
    }

    /// The directory with every stage's log (`<binary>.log`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn all(&self) -> &[StageProcess] {
        &self.stages
    }

    pub fn stage(&mut self, name: &str) -> &mut StageProcess {
        self.stages
            .iter_mut()
            .find(|s| s.name() == name)
            .expect("a known stage")
    }

    /// Waits until the gateway answers HTTP and the ingest greets; on a timeout the error holds
    /// the end of every stage's log (a stage that could not start says why there).
    pub async fn wait_serving(&self) -> anyhow::Result<()> {
        self.wait_serving_inner().await.map_err(|e| {
            let tails: Vec<String> = self
                .stages
                .iter()
                .map(|s| {
                    let log = s.log();
                    let lines: Vec<&str> = log.lines().collect();
                    let from = lines.len().saturating_sub(10);
                    format!(
                        "--- {} (last lines)\n{}",
                        s.name(),
                        lines[from..].join("\n")
                    )
                })
                .collect();
            anyhow::anyhow!("{e}\n{}", tails.join("\n"))
        })
    }

    async fn wait_serving_inner(&self) -> anyhow::Result<()> {
        use tokio::io::AsyncReadExt;
        let url = format!("http://{}/healthz", self.http);
        let client = reqwest::Client::new();
        crate::wait_until(Duration::from_secs(60), "the gateway to serve", || {
            let (url, client) = (url.clone(), client.clone());
            async move { client.get(url).send().await.ok().map(|_| ()) }
        })
        .await?;
        let smtp = self.smtp;
        crate::wait_until(
            Duration::from_secs(60),
            "the ingest to greet",
            || async move {
                let mut s = tokio::net::TcpStream::connect(smtp).await.ok()?;
                let mut buf = [0u8; 3];
                s.read_exact(&mut buf).await.ok()?;
                (&buf == b"220").then_some(())
            },
        )
        .await
    }

    /// The last warnings and errors each stage logged (what a failing test needs to explain).
    pub fn warnings(&self) -> String {
        self.stages
            .iter()
            .map(|s| {
                let log = s.log();
                let mut lines: Vec<&str> = log
                    .lines()
                    .rev()
                    .filter(|l| l.contains("WARN") || l.contains("ERROR"))
                    .take(25)
                    .collect();
                lines.reverse();
                format!(
                    "--- {} (warnings and errors)\n{}",
                    s.name(),
                    lines.join("\n")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl StagesBuilder {
    /// Flags every stage gets (stream settings, say).
    pub fn all(mut self, args: &[&str]) -> Self {
        self.all.extend(args.iter().map(|a| (*a).to_owned()));
        self
    }

    /// Flags `stage` (a binary name, `maildrop-filter`) gets besides its defaults.
    pub fn args(mut self, stage: &str, args: &[&str]) -> Self {
        self.own.push((
            stage.to_owned(),
            args.iter().map(|a| (*a).to_owned()).collect(),
        ));
        self
    }

    /// Another NATS URL for the ingest (a proxy in front of the same server).
    pub fn ingest_nats_url(mut self, url: &str) -> Self {
        self.ingest_nats_url = Some(url.to_owned());
        self
    }

    /// An environment variable for every stage.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Starts the five stages and waits until they serve.
    pub async fn start(self) -> anyhow::Result<Stages> {
        crate::init_tracing();
        let dir = tempfile::tempdir()?;
        let smtp: std::net::SocketAddr = format!("127.0.0.1:{}", crate::free_port()).parse()?;
        let http: std::net::SocketAddr = format!("127.0.0.1:{}", crate::free_port()).parse()?;
        let (smtp_s, http_s) = (smtp.to_string(), http.to_string());
        let mut stages = Vec::new();
        for name in STAGES {
            let domains = ["--domains", DOMAIN];
            let defaults: Vec<&str> = match name {
                "maildrop-ingest" => [&domains[..], &["--smtp-addr", &smtp_s]].concat(),
                // Never the machine's resolver: tests ask no real DNS.
                "maildrop-filter" => [&domains[..], &["--dns-servers", "off"]].concat(),
                "maildrop-gateway" => [
                    &domains[..],
                    &["--http-addr", &http_s, "--rate-limit", "off"],
                ]
                .concat(),
                _ => Vec::new(),
            };
            let nats = match (name, &self.ingest_nats_url) {
                ("maildrop-ingest", Some(url)) => url,
                _ => &self.nats_url,
            };
            let mut args: Vec<&str> = vec!["--nats-url", nats, "--redis-url", &self.redis_url];
            args.extend(self.all.iter().map(String::as_str));
            args.extend(defaults);
            for (_, own) in self.own.iter().filter(|(stage, _)| stage == name) {
                args.extend(own.iter().map(String::as_str));
            }
            let mut stage = StageProcess::new(name, dir.path(), &args)?;
            for (key, value) in &self.env {
                stage = stage.env(key, value);
            }
            stage.start()?;
            stages.push(stage);
        }
        let stages = Stages {
            dir,
            smtp,
            http,
            stages,
        };
        stages.wait_serving().await?;
        Ok(stages)
    }
}
