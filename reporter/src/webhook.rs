//! Posting spam-source reports to `MAILDROP_REPORT_WEBHOOK_URL`, acknowledged on the stream only
//! once the webhook has accepted them.
//!
//! Two durable consumers, one per source: `reports-verdicts` (rejected verdicts only) and
//! `reports-rejected` (the ingest's refused attempts). Each loop fetches up to
//! `MAILDROP_REPORT_BATCH` messages, waiting at most `MAILDROP_REPORT_MAX_WAIT` for them, posts
//! them as one JSON batch, and retries a failed POST (a non-2xx answer, a timeout, no connection)
//! with exponential backoff and jitter (`backon`) until it succeeds. While it retries it marks
//! the batch's messages in progress, so JetStream does not hand them out again meanwhile; only
//! after a 2xx are they acked (and the ack confirmed). A reporter that dies before acking posts
//! the batch again after restart: at least once, so every report carries an `id` to deduplicate
//! on. A message that does not decode is acked without a report (it is no spam source) and
//! logged.

use crate::durable::{next_batch, open, sleep_or_cancel};
use std::time::Duration;

use async_nats::jetstream::{self, AckKind};
use backon::{BackoffBuilder, ExponentialBuilder};
use maildrop_contract::{IngestRejection, Verdict, consumer, subject};
use tokio_util::sync::CancellationToken;

use crate::config::ReportArgs;
use crate::reports::{self, Report, ReportBatch};

/// A stream reports come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportSource {
    Verdicts,
    Rejected,
}

impl ReportSource {
    pub const ALL: [ReportSource; 2] = [Self::Verdicts, Self::Rejected];

    pub fn stream(self) -> &'static str {
        match self {
            Self::Verdicts => subject::VERDICTS_STREAM,
            Self::Rejected => subject::REJECTED_STREAM,
        }
    }

    pub fn durable(self) -> &'static str {
        match self {
            Self::Verdicts => consumer::REPORTS_VERDICTS,
            Self::Rejected => consumer::REPORTS_REJECTED,
        }
    }

    fn filter(self) -> &'static str {
        match self {
            Self::Verdicts => subject::VERDICT_REJECTED,
            Self::Rejected => subject::REJECTED_INGEST,
        }
    }

    /// The report in `payload`, if it decodes and is one.
    pub fn report(self, payload: &[u8]) -> Option<Report> {
        match self {
            Self::Verdicts => serde_json::from_slice::<Verdict>(payload)
                .ok()
                .and_then(reports::from_verdict),
            Self::Rejected => serde_json::from_slice::<IngestRejection>(payload)
                .ok()
                .map(reports::from_rejection),
        }
    }
}

/// Why a POST did not count as accepted.
#[derive(Debug, thiserror::Error)]
pub enum PostError {
    #[error("webhook unreachable: {0}")]
    Http(#[from] reqwest::Error),
    #[error("webhook answered {0}")]
    Status(reqwest::StatusCode),
}

/// Posts one batch once.
pub async fn post(
    http: &reqwest::Client,
    url: &reqwest::Url,
    batch: &ReportBatch,
    timeout: Duration,
) -> Result<(), PostError> {
    let response = http
        .post(url.clone())
        .json(batch)
        .timeout(timeout)
        .send()
        .await?;
    if response.status().is_success() {
        Ok(())
    } else {
        Err(PostError::Status(response.status()))
    }
}

/// Posts the reports of `source` to `url` until `cancel` is cancelled.
pub async fn run(
    js: jetstream::Context,
    url: reqwest::Url,
    args: ReportArgs,
    source: ReportSource,
    ack_wait: Duration,
    cancel: CancellationToken,
) {
    let stream = source.stream();
    let http = reqwest::Client::new();
    let Some(consumer) = open(
        &js,
        source.stream(),
        source.durable(),
        source.filter(),
        ack_wait,
        &cancel,
    )
    .await
    else {
        return;
    };
    tracing::info!(stream, webhook = %url.host_str().unwrap_or(""), "Reporting spam sources.");
    while !cancel.is_cancelled() {
        let Some(messages) = next_batch(
            &consumer,
            args.report_batch as usize,
            args.report_max_wait,
            stream,
            &cancel,
        )
        .await
        else {
            break;
        };
        if messages.is_empty() {
            continue;
        }
        let reports: Vec<Report> = messages
            .iter()
            .filter_map(|m| {
                let report = source.report(&m.payload);
                if report.is_none() {
                    tracing::warn!(stream, subject = %m.subject, "Undecodable event; no report for it.");
                }
                report
            })
            .collect();
        if !reports.is_empty() {
            let batch = ReportBatch::new(reports);
            if !deliver(&http, &url, &batch, &args, &messages, ack_wait, &cancel).await {
                // Cancelled while retrying: not acked, so the next reporter posts the batch.
                break;
            }
            metrics::counter!("maildrop_reporter_reports_posted_total")
                .increment(batch.reports.len() as u64);
            tracing::debug!(
                stream,
                reports = batch.reports.len(),
                "Reports accepted by the webhook."
            );
        }
        for m in &messages {
            if let Err(e) = m.double_ack().await {
                tracing::warn!(stream, error = %e, "Ack failed; the report may be posted again.");
            }
        }
    }
    tracing::info!(stream, "Reporting stopped.");
}

/// Posts `batch` until the webhook accepts it (`true`) or `cancel` (`false`).
async fn deliver(
    http: &reqwest::Client,
    url: &reqwest::Url,
    batch: &ReportBatch,
    args: &ReportArgs,
    messages: &[jetstream::Message],
    ack_wait: Duration,
    cancel: &CancellationToken,
) -> bool {
    let mut delays = ExponentialBuilder::new()
        .with_min_delay(args.report_retry_min)
        .with_max_delay(args.report_retry_max)
        .with_jitter()
        .without_max_times()
        .build();
    loop {
        match post(http, url, batch, args.report_timeout).await {
            Ok(()) => return true,
            Err(e) => {
                let wait = delays.next().unwrap_or(args.report_retry_max);
                metrics::counter!("maildrop_reporter_report_failures_total").increment(1);
                tracing::warn!(error = %e, reports = batch.reports.len(), retry_in = ?wait, "Webhook did not accept the reports; retrying.");
                if !wait_holding(messages, wait, ack_wait, cancel).await {
                    return false;
                }
            }
        }
    }
}

/// Waits `wait`, telling JetStream every half `ack_wait` that the messages are still being worked
/// on, so they are not handed out again while we retry. `false` if cancelled.
async fn wait_holding(
    messages: &[jetstream::Message],
    wait: Duration,
    ack_wait: Duration,
    cancel: &CancellationToken,
) -> bool {
    let step = (ack_wait / 2).max(Duration::from_millis(100));
    let until = tokio::time::Instant::now() + wait;
    loop {
        for m in messages {
            if let Err(e) = m.ack_with(AckKind::Progress).await {
                tracing::debug!(error = %e, "Progress ack failed; the message may come back.");
            }
        }
        let left = until.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            return true;
        }
        if !sleep_or_cancel(cancel, left.min(step)).await {
            return false;
        }
    }
}
