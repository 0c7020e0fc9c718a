//! Process plumbing that every Maildrop stage shares, and nothing else.
//!
//! - [`args`]: the flags and `MAILDROP_*` variables common to all stages (NATS, Redis, streams, logs);
//! - [`cidr`]: IP networks and lists of them, for flags that name trusted clients;
//! - [`telemetry`]: one `tracing` set-up, text or JSON;
//! - [`shutdown`]: one [`CancellationToken`](tokio_util::sync::CancellationToken) cancelled on
//!   SIGINT or SIGTERM;
//! - [`connect`]: connecting to NATS and Redis, retried with backoff until they answer;
//! - [`streams`]: making sure the JetStream streams exist with the configured limits;
//! - [`consume`]: the one loop that runs a durable consumer, where the kind of a handler's error
//!   decides between ack, nak with delay, and dead-letter;
//! - [`ops`]: the `/healthz`, `/readyz` and `/metrics` endpoints of a stage (`MAILDROP_OPS_ADDR`);
//! - [`metrics`]: the process's Prometheus recorder, and the naming rules of every metric.
//!
//! Domain logic does not belong here: a stage's crate owns what it does with a message.

pub mod args;
pub mod cidr;
pub mod connect;
pub mod consume;
pub mod metrics;
pub mod ops;
pub mod shutdown;
pub mod streams;
pub mod telemetry;
