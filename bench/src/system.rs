//! The system under test, started by a scenario: real `nats-server` and `redis-server` from the
//! testkit, and the stages in this process through their libraries' `run` functions, as
//! `e2e/tests/common/mod.rs` does.
//!
//! The stages run on a runtime of their own, apart from the load generator's, so the two do not
//! share a task queue; they still share the machine's cores (and this process's CPU and memory
//! figures). Each stage's `Config` is parsed from flags with `try_parse_from`, so a stage also reads
//! its usual `MAILDROP_*` variables: set one to try a setting under load.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use maildrop_testkit::{NatsServer, RedisServer, wait_until};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::runtime::Runtime;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How long a stage may take to be ready, and to stop.
const READY: Duration = Duration::from_secs(20);
const STOP: Duration = Duration::from_secs(15);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Ingest,
    Filter,
    StoreWriter,
    Gateway,
    Reporter,
}

impl Stage {
    pub fn name(self) -> &'static str {
        match self {
            Self::Ingest => "ingest",
            Self::Filter => "filter",
            Self::StoreWriter => "store-writer",
            Self::Gateway => "gateway",
            Self::Reporter => "reporter",
        }
    }
}

pub const ALL: [Stage; 5] = [
    Stage::Ingest,
    Stage::Filter,
    Stage::StoreWriter,
    Stage::Reporter,
    Stage::Gateway,
];

/// The flags a stage is started with.
pub fn stage_args(stage: Stage, nats: &str, redis: Option<&str>, domain: &str) -> Vec<String> {
    let mut args = vec![
        format!("maildrop-{}", stage.name()),
        "--nats-url".to_owned(),
        nats.to_owned(),
    ];
    let redis = || {
        vec![
            "--redis-url".to_owned(),
            redis
                .expect("stages that use Redis get a Redis URL")
                .to_owned(),
        ]
    };
    if !matches!(stage, Stage::Gateway) {
        // Ops endpoints on a free port: a bench may run beside `make run` or the tests.
        args.extend(["--ops-addr".to_owned(), "127.0.0.1:0".to_owned()]);
    }
    match stage {
        Stage::Ingest | Stage::Filter => {
            args.extend(redis());
            args.extend(["--domains".to_owned(), domain.to_owned()]);
            if stage == Stage::Filter {
                // The pipeline scenarios measure the pipeline, never the internet's DNS; the
                // filter scenario measures the DNS rules against a server of its own.
                args.extend(["--dns-servers".to_owned(), "off".to_owned()]);
            }
        }
        Stage::StoreWriter | Stage::Reporter => args.extend(redis()),
        Stage::Gateway => {
            args.extend(redis());
            args.extend(["--domains".to_owned(), domain.to_owned()]);
            // The probes' WebSocket upgrades all come from 127.0.0.1; the per-IP request limit is
            // for the internet, not for our own instruments.
            args.extend(["--rate-limit".to_owned(), "off".to_owned()]);
        }
    }
    args
}

/// Whether `stage` talks to Redis (every stage does; the ingest for blocked IPs, greylisting and
/// aliases, the filter for its blocklists and flood counts).
pub fn uses_redis(_stage: Stage) -> bool {
    true
}

struct Running {
    stage: Stage,
    cancel: CancellationToken,
    handle: JoinHandle<Result<(), String>>,
}

/// Servers and stages, stopped by [`InProcess::stop`] (or killed on drop).
pub struct InProcess {
    pub nats: NatsServer,
    pub redis: Option<RedisServer>,
    pub smtp: SocketAddr,
    pub http: Option<SocketAddr>,
    runtime: Option<Runtime>,
    running: Vec<Running>,
}

impl InProcess {
    /// Starts nats-server (and redis-server if a stage needs it), then `stages`, and waits until
    /// the ingest greets, the gateway answers and every stage is still running.
    ///
    /// The ingest starts first and alone: it creates the JetStream streams before it greets, so
    /// the other stages find them made. (Every stage makes sure the streams exist, and several
    /// creating the same stream at once can fail with "cannot create or update stream".)
    pub async fn start(stages: &[Stage], domain: &str) -> anyhow::Result<Self> {
        let needs_redis = stages.iter().any(|&s| uses_redis(s));
        eprintln!(
            "maildrop-bench: starting nats-server{}…",
            if needs_redis { " and redis-server" } else { "" }
        );
        let nats = NatsServer::start().await?;
        let redis = if needs_redis {
            Some(RedisServer::start().await?)
        } else {
            None
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .thread_name(crate::resources::STAGE_THREAD)
            .enable_all()
            .build()
            .context("cannot build the stages' runtime")?;
        let smtp_listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let http_listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let mut system = Self {
            nats,
            redis,
            smtp: smtp_listener.local_addr()?,
            http: None,
            runtime: Some(runtime),
            running: Vec::new(),
        };
        let mut order: Vec<Stage> = stages.to_vec();
        order.sort_by_key(|&s| s != Stage::Ingest);
        let mut listeners = (Some(smtp_listener), Some(http_listener));
        let outcome: anyhow::Result<()> = async {
            for stage in order {
                let listener = match stage {
                    Stage::Ingest => listeners.0.take(),
                    Stage::Gateway => {
                        let l = listeners.1.take();
                        system.http = l.as_ref().map(|l| l.local_addr()).transpose()?;
                        l
                    }
                    _ => None,
                };
                system.spawn(stage, listener, domain)?;
                if stage == Stage::Ingest {
                    system.wait_for_greeting().await?;
                }
            }
            system.ready().await
        }
        .await;
        match outcome {
            Ok(()) => {
                eprintln!(
                    "maildrop-bench: {} running in-process.",
                    stages
                        .iter()
                        .map(|s| s.name())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                Ok(system)
            }
            Err(e) => match system.stop().await {
                Ok(()) => Err(e),
                Err(why) => Err(e.context(format!("stages stopped: {why}"))),
            },
        }
    }

    /// Starts one stage on the stages' runtime.
    fn spawn(
        &mut self,
        stage: Stage,
        listener: Option<std::net::TcpListener>,
        domain: &str,
    ) -> anyhow::Result<()> {
        let runtime = self.runtime.as_ref().expect("started with a runtime");
        let redis = self.redis.as_ref().map(|r| r.url());
        let args = stage_args(stage, &self.nats.url(), redis.as_deref(), domain);
        let cancel = CancellationToken::new();
        let c = cancel.clone();
        let fail =
            move |e: &dyn std::error::Error| format!("{} stopped: {}", stage.name(), chain(e));
        let tokio_listener = move || -> Result<tokio::net::TcpListener, String> {
            let l = listener.expect("a listener for the stages that listen");
            l.set_nonblocking(true).map_err(|e| fail(&e))?;
            tokio::net::TcpListener::from_std(l).map_err(|e| fail(&e))
        };
        let handle = match stage {
            Stage::Ingest => {
                let config = maildrop_ingest::Config::try_parse_from(args)?;
                runtime.spawn(async move {
                    let listener = tokio_listener()?;
                    maildrop_ingest::run(config, listener, c)
                        .await
                        .map_err(|e| fail(&e))
                })
            }
            Stage::Filter => {
                let config = maildrop_filter::Config::try_parse_from(args)?;
                runtime.spawn(
                    async move { maildrop_filter::run(config, c).await.map_err(|e| fail(&e)) },
                )
            }
            Stage::StoreWriter => {
                let config = maildrop_store_writer::Config::try_parse_from(args)?;
                runtime.spawn(async move {
                    maildrop_store_writer::run(config, c)
                        .await
                        .map_err(|e| fail(&e))
                })
            }
            Stage::Reporter => {
                let config = maildrop_reporter::Config::try_parse_from(args)?;
                runtime.spawn(async move {
                    maildrop_reporter::run(config, c)
                        .await
                        .map_err(|e| fail(&e))
                })
            }
            Stage::Gateway => {
                let config = maildrop_gateway::Config::try_parse_from(args)?;
                runtime.spawn(async move {
                    let listener = tokio_listener()?;
                    maildrop_gateway::run(config, listener, c)
                        .await
                        .map_err(|e| fail(&e))
                })
            }
        };
        self.running.push(Running {
            stage,
            cancel,
            handle,
        });
        Ok(())
    }

    async fn wait_for_greeting(&self) -> anyhow::Result<()> {
        let addr = self.smtp;
        wait_until(READY, "the ingest to greet", || async move {
            let mut s = TcpStream::connect(addr).await.ok()?;
            let mut buf = [0u8; 3];
            s.read_exact(&mut buf).await.ok()?;
            (&buf == b"220").then_some(())
        })
        .await
    }

    /// Waits until the gateway (if any) answers `/healthz`, then checks that no stage has
    /// stopped.
    async fn ready(&self) -> anyhow::Result<()> {
        if let Some(addr) = self.http {
            wait_until(READY, "the gateway to answer /healthz", || async move {
                http_ok(addr, "/healthz").await.then_some(())
            })
            .await?;
        }
        let stopped: Vec<&str> = self
            .running
            .iter()
            .filter(|r| r.handle.is_finished())
            .map(|r| r.stage.name())
            .collect();
        anyhow::ensure!(
            stopped.is_empty(),
            "stopped while starting: {}",
            stopped.join(", ")
        );
        Ok(())
    }

    /// Cancels every stage and waits for it, then stops the servers.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        for r in &self.running {
            r.cancel.cancel();
        }
        let mut errors = Vec::new();
        for r in self.running.drain(..) {
            match tokio::time::timeout(STOP, r.handle).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => errors.push(e),
                Ok(Err(e)) => errors.push(format!("{} panicked: {e}", r.stage.name())),
                Err(_) => errors.push(format!("{} did not stop within {STOP:?}", r.stage.name())),
            }
        }
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
        self.nats.stop().await;
        if let Some(redis) = self.redis.as_mut() {
            redis.stop().await;
        }
        anyhow::ensure!(errors.is_empty(), "{}", errors.join("; "));
        Ok(())
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        // Dropping a runtime inside another one panics; let its threads end by themselves.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// An error and its sources, `outer: inner: innermost`.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

/// `GET path` answers 200.
pub(crate) async fn http_ok(addr: SocketAddr, path: &str) -> bool {
    let Ok(mut s) = TcpStream::connect(addr).await else {
        return false;
    };
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if s.write_all(request.as_bytes()).await.is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    s.read_exact(&mut head).await.is_ok() && head.starts_with(b"HTTP/1.1 200")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_shown_with_their_sources() {
        let e = anyhow::anyhow!("refused").context("cannot connect");
        let e: &dyn std::error::Error = e.as_ref();
        assert_eq!(chain(e), "cannot connect: refused");
    }

    #[test]
    fn every_stage_accepts_its_flags() {
        let nats = "nats://127.0.0.1:4222";
        let redis = Some("redis://127.0.0.1:6379");
        for stage in ALL {
            let args = stage_args(stage, nats, redis, "maildrop.localhost");
            let parsed = match stage {
                Stage::Ingest => maildrop_ingest::Config::try_parse_from(args).map(|_| ()),
                Stage::Filter => maildrop_filter::Config::try_parse_from(args).map(|_| ()),
                Stage::StoreWriter => {
                    maildrop_store_writer::Config::try_parse_from(args).map(|_| ())
                }
                Stage::Gateway => maildrop_gateway::Config::try_parse_from(args).map(|_| ()),
                Stage::Reporter => maildrop_reporter::Config::try_parse_from(args).map(|_| ()),
            };
            assert!(parsed.is_ok(), "{}: {parsed:?}", stage.name());
        }
    }

    #[test]
    fn the_ingest_gets_the_bench_domain_and_redis() {
        let args = stage_args(Stage::Ingest, "nats://x", Some("redis://y"), "bench.test");
        let config = maildrop_ingest::Config::try_parse_from(args).unwrap();
        assert_eq!(config.domains.domains, ["bench.test"]);
        assert_eq!(config.nats.url, "nats://x");
        assert_eq!(config.redis.url, "redis://y");
        assert!(uses_redis(Stage::Ingest) && uses_redis(Stage::Filter));
    }
}
