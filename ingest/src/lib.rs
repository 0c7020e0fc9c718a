//! The ingest stage: the SMTP server that faces the internet.
//!
//! - [`smtp`]: the protocol as a state machine without I/O (every rule unit-tested, fuzzable);
//! - [`server`]: the listener and the per-connection loop that only moves bytes, and applies the
//!   connection policy in order (global cap, PROXY header, per-client limits, blocked IPs, then the
//!   session with its tarpits, greylisting and STARTTLS);
//! - [`publish`]: handing a finished message to JetStream; `250` only after its acknowledgement.
//! - [`rejections`]: every refused attempt (blocked, greylisted, relay, too large, …) as an event on
//!   `maildrop.rejected.ingest`, through a bounded buffer that drops rather than waits.
//!
//! The policy is in pure modules the server calls, each unit-tested with its inputs (and the time)
//! passed in: [`proxy`] (the PROXY protocol parser), [`limits`] (per-client concurrency and rate),
//! [`tarpit`] (how long to hold a reply); trusted and exempt networks are
//! `maildrop_runtime::cidr` lists, shared with the gateway. The one
//! part that needs Redis, [`policy`] (blocked IPs and greylisting, stored by
//! `maildrop_store::policy`), fails open. [`tls`] loads the `STARTTLS` certificate.

pub mod config;
pub mod limits;
pub mod policy;
pub mod proxy;
pub mod publish;
pub mod rejections;
pub mod server;
pub mod smtp;
pub mod tarpit;
pub mod tls;

use std::sync::{Arc, Mutex};

pub use config::Config;

use maildrop_runtime::streams;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub const STAGE: &str = "ingest";

/// Room left in a NATS message for the envelope headers.
const HEADER_ROOM: usize = 64 * 1024;

/// Why the stage could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error(transparent)]
    RedisUrl(#[from] policy::RedisUrlError),
    #[error(transparent)]
    Setup(#[from] streams::SetupError),
    #[error(transparent)]
    Ops(#[from] maildrop_runtime::ops::OpsError),
}

/// Serves SMTP on `listener` until `cancel` is cancelled.
pub async fn run(
    config: Config,
    listener: TcpListener,
    cancel: CancellationToken,
) -> Result<(), Error> {
    // Everything that can be wrong with the configuration fails here, before any waiting.
    config.validate()?;
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Some(tls::acceptor(cert, key)?),
        _ => None,
    };
    // The background Redis connection ends with this function, whichever way it returns.
    let policy_cancel = cancel.child_token();
    let _stop_policy = policy_cancel.clone().drop_guard();
    let policy = policy::Policy::connect(
        &config.redis.url,
        config.policy_timeout,
        config.greylist_settings(),
        &policy_cancel,
    )?;
    // Ready means NATS is connected: every 250 depends on it. Redis is not part of it: its checks
    // fail open (see `policy`), so a Redis outage must not take the ingest out of rotation.
    let readiness = maildrop_runtime::ops::Readiness::nats();
    let _ops = maildrop_runtime::ops::start(&config.ops, STAGE, readiness.clone(), &cancel).await?;
    let (client, mut js) =
        streams::connect(&config.nats, &config.streams, "maildrop-ingest", &cancel).await?;
    readiness.set_nats(&client);
    js.set_timeout(config.publish_timeout);
    let max_payload = client.server_info().max_payload;
    let mut max_size = config.max_message_size;
    if max_size + HEADER_ROOM > max_payload {
        max_size = max_payload.saturating_sub(HEADER_ROOM);
        tracing::warn!(
            configured = config.max_message_size,
            nats_max_payload = max_payload,
            max_message_size = max_size,
            "MAILDROP_MAX_MESSAGE_SIZE does not fit in the NATS server's max_payload; lowered. Raise max_payload in the NATS server's configuration to accept larger messages."
        );
    }
    let shared_js = js.clone();
    let shared = Arc::new(server::Shared {
        session: Arc::new(config.session(max_size)),
        js,
        idle_timeout: config.idle_timeout,
        session_timeout: config.session_timeout,
        publish_timeout: config.publish_timeout,
        tls,
        proxy_trusted: config.proxy_protocol.then(|| config.proxy_trusted.clone()),
        exempt: config.exempt_networks.clone(),
        limits: Mutex::new(limits::IpLimits::new(
            config.max_connections_per_ip,
            config.connection_rate_per_ip,
        )),
        policy,
        tarpit: config.tarpit(),
        rejections: rejections::Rejections::spawn(
            shared_js,
            config.rejection_buffer,
            config.publish_timeout,
        ),
    });
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(
            %addr,
            max_message_size = max_size,
            domains = ?config.domains.domains,
            starttls = shared.tls.is_some(),
            proxy_trusted = ?shared.proxy_trusted.as_ref().map(ToString::to_string),
            greylist = config.greylist,
            "SMTP listening."
        );
    }
    server::serve(
        listener,
        shared,
        config.max_connections,
        config.shutdown_grace,
        cancel,
    )
    .await;
    Ok(())
}
