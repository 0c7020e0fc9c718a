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
    match stage {
        Stage::Ingest => {
            args.extend(redis());
            args.extend(["--domains".to_owned(), domain.to_owned()]);
        }
        Stage::Filter => {}
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

/// Whether `stage` talks to Redis (the ingest does: blocked IPs, greylisting and aliases).
pub fn uses_redis(stage: Stage) -> bool {
    !matches!(stage, Stage::Filter)
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
    /// the ingest greets and the gateway answers.
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
        let smtp = smtp_listener.local_addr()?;
        let http = stages
            .contains(&Stage::Gateway)
            .then(|| http_listener.local_addr())
            .transpose()?;
        let mut system = Self {
            nats,
            redis,
            smtp,
            http,
            runtime: None,
            running: Vec::new(),
        };
        let mut listeners = (Some(smtp_listener), Some(http_listener));
        for &stage in stages {
            let args = stage_args(
                stage,
                &system.nats.url(),
                system.redis.as_ref().map(|r| r.url()).as_deref(),
                domain,
            );
            let cancel = CancellationToken::new();
            let c = cancel.clone();
            let fail = move |e: &dyn std::fmt::Display| format!("{} stopped: {e}", stage.name());
            let handle = match stage {
                Stage::Ingest => {
                    let config = maildrop_ingest::Config::try_parse_from(args)?;
                    let listener = listeners.0.take().expect("one ingest");
                    runtime.spawn(async move {
                        listener.set_nonblocking(true).map_err(|e| fail(&e))?;
                        let listener =
                            tokio::net::TcpListener::from_std(listener).map_err(|e| fail(&e))?;
                        maildrop_ingest::run(config, listener, c)
                            .await
                            .map_err(|e| fail(&e))
                    })
                }
                Stage::Filter => {
                    let config = maildrop_filter::Config::try_parse_from(args)?;
                    runtime.spawn(async move {
                        maildrop_filter::run(config, c).await.map_err(|e| fail(&e))
                    })
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
                    let listener = listeners.1.take().expect("one gateway");
                    runtime.spawn(async move {
                        listener.set_nonblocking(true).map_err(|e| fail(&e))?;
                        let listener =
                            tokio::net::TcpListener::from_std(listener).map_err(|e| fail(&e))?;
                        maildrop_gateway::run(config, listener, c)
                            .await
                            .map_err(|e| fail(&e))
                    })
                }
            };
            system.running.push(Running {
                stage,
                cancel,
                handle,
            });
        }
        system.runtime = Some(runtime);
        eprintln!(
            "maildrop-bench: started {} in-process; waiting until ready…",
            stages
                .iter()
                .map(|s| s.name())
                .collect::<Vec<_>>()
                .join(", ")
        );
        match system.ready(stages.contains(&Stage::Ingest)).await {
            Ok(()) => Ok(system),
            Err(e) => match system.stop().await {
                Ok(()) => Err(e),
                Err(why) => Err(e.context(format!("stages stopped: {why}"))),
            },
        }
    }

    /// Waits until the ingest greets and the gateway answers `/healthz`.
    async fn ready(&self, ingest: bool) -> anyhow::Result<()> {
        if ingest {
            let addr = self.smtp;
            wait_until(READY, "the ingest to greet", || async move {
                let mut s = TcpStream::connect(addr).await.ok()?;
                let mut buf = [0u8; 3];
                s.read_exact(&mut buf).await.ok()?;
                (&buf == b"220").then_some(())
            })
            .await?;
        }
        if let Some(addr) = self.http {
            wait_until(READY, "the gateway to answer /healthz", || async move {
                http_ok(addr, "/healthz").await.then_some(())
            })
            .await?;
        }
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

/// `GET path` answers 200.
async fn http_ok(addr: SocketAddr, path: &str) -> bool {
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
        assert!(uses_redis(Stage::Ingest) && !uses_redis(Stage::Filter));
    }
}
