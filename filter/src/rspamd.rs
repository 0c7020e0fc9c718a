//! An optional second opinion: rspamd, asked over its HTTP check API.
//!
//! When `MAILDROP_RSPAMD_URL` is set, every message is posted, raw, to `<url>/checkv2` with the
//! envelope in rspamd's request headers (`IP`, `Helo`, `From`, one `Rcpt` per recipient,
//! `Queue-Id` = our message id, and `Password` if `MAILDROP_RSPAMD_PASSWORD` is set), and rspamd's
//! answer (its score, its own threshold, the action it would take and the symbols that scored) is
//! kept as the message's [`RspamdFacts`]. The `rspamd` rule ([`crate::rules::rspamd`]) turns those
//! facts into a hit; this module only asks.
//!
//! rspamd is an outside service that may be slow, down or misconfigured, and the filter must not
//! stop with it: the request is bounded by `MAILDROP_RSPAMD_TIMEOUT`, and a timeout, a refused
//! connection, an error status or a reply that is not rspamd's JSON is *no answer* — logged,
//! counted in `maildrop_filter_rspamd_unanswered_total{reason}`, and the message is judged on the
//! rest, like an unanswered DNS lookup ([`crate::gather`]). Asking never fails a message.

use std::cmp::Ordering;
use std::time::Duration;

use clap::Args;
use maildrop_contract::Envelope;
use maildrop_runtime::args::parse_duration;
use serde::{Deserialize, Serialize};

use crate::rules::RuleSet;

/// Default `MAILDROP_RSPAMD_TIMEOUT`.
pub const DEFAULT_TIMEOUT: &str = "5s";

/// The rspamd backend's settings.
#[derive(Debug, Clone, Args)]
pub struct RspamdArgs {
    /// rspamd's normal worker (`http://127.0.0.1:11333`); every message is checked at
    /// `<url>/checkv2` and the `[rspamd]` rule scores the answer. Unset: rspamd is not asked.
    #[arg(long, env = "MAILDROP_RSPAMD_URL")]
    pub rspamd_url: Option<String>,
    /// Sent as rspamd's `Password` header, for a worker that asks for one.
    #[arg(long, env = "MAILDROP_RSPAMD_PASSWORD", hide_env_values = true)]
    pub rspamd_password: Option<String>,
    /// How long one check may take, connecting included; a check not answered by then is no
    /// answer and the message is judged without it.
    #[arg(long, env = "MAILDROP_RSPAMD_TIMEOUT", default_value = DEFAULT_TIMEOUT, value_parser = parse_duration)]
    pub rspamd_timeout: Duration,
}

/// What rspamd said about one message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RspamdFacts {
    pub score: f64,
    /// rspamd's own reject score.
    pub required_score: f64,
    /// The action rspamd would take: `no action`, `greylist`, `add header`, `rewrite subject`,
    /// `soft reject` or `reject`.
    pub action: String,
    /// The symbols that matched, the heaviest (by absolute score) first.
    pub symbols: Vec<Symbol>,
    /// rspamd's message for the SMTP client, if it has one (`Gtube pattern`).
    pub message: Option<String>,
}

/// One rspamd symbol that matched, with its score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Symbol {
    pub name: String,
    pub score: f64,
}

/// rspamd's `/checkv2` reply, the parts we read.
#[derive(Debug, Deserialize)]
struct Reply {
    score: f64,
    required_score: f64,
    action: String,
    #[serde(default)]
    symbols: std::collections::HashMap<String, ReplySymbol>,
    #[serde(default)]
    messages: ReplyMessages,
}

#[derive(Debug, Default, Deserialize)]
struct ReplyMessages {
    smtp_message: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ReplySymbol {
    #[serde(default)]
    score: f64,
}

/// Why rspamd gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum RspamdError {
    #[error("rspamd did not answer in time")]
    Timeout,
    #[error("cannot reach rspamd")]
    Connect(#[source] reqwest::Error),
    #[error("rspamd answered HTTP {0}")]
    Status(u16),
    #[error("rspamd's answer is not a check result")]
    Reply(#[source] serde_json::Error),
    #[error("rspamd request failed")]
    Request(#[source] reqwest::Error),
}

impl RspamdError {
    /// A short label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Connect(_) => "connect",
            Self::Status(_) => "status",
            Self::Reply(_) => "reply",
            Self::Request(_) => "request",
        }
    }
}

/// Reads a `/checkv2` reply body.
pub fn parse_reply(body: &[u8]) -> Result<RspamdFacts, RspamdError> {
    let reply: Reply = serde_json::from_slice(body).map_err(RspamdError::Reply)?;
    let mut symbols: Vec<Symbol> = reply
        .symbols
        .into_iter()
        .map(|(name, s)| Symbol {
            name,
            score: s.score,
        })
        .collect();
    symbols.sort_by(|a, b| {
        b.score
            .abs()
            .partial_cmp(&a.score.abs())
            .unwrap_or(Ordering::Equal)
            .then_with(|| a.name.cmp(&b.name))
    });
    Ok(RspamdFacts {
        score: reply.score,
        required_score: reply.required_score,
        action: reply.action,
        symbols,
        message: reply.messages.smtp_message,
    })
}

/// A client of one rspamd worker.
#[derive(Clone)]
pub struct Rspamd {
    http: reqwest::Client,
    check_url: String,
    password: Option<String>,
    timeout: Duration,
}

impl std::fmt::Debug for Rspamd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rspamd")
            .field("check_url", &self.check_url)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Rspamd {
    /// The client the flags describe; `None` when no URL is set.
    pub fn from_args(args: &RspamdArgs) -> Option<Self> {
        let url = args.rspamd_url.as_deref()?.trim();
        if url.is_empty() {
            return None;
        }
        Some(Self::new(
            url,
            args.rspamd_password.clone(),
            args.rspamd_timeout,
        ))
    }

    pub fn new(url: &str, password: Option<String>, timeout: Duration) -> Self {
        Self {
            http: reqwest::Client::new(),
            check_url: format!("{}/checkv2", url.trim_end_matches('/')),
            password,
            timeout,
        }
    }

    /// Asks rspamd about one message.
    pub async fn check(&self, envelope: &Envelope, raw: &[u8]) -> Result<RspamdFacts, RspamdError> {
        let mut request = self
            .http
            .post(&self.check_url)
            .header("IP", envelope.client_ip.to_canonical().to_string())
            .header("Helo", header_value(&envelope.helo))
            .header("From", header_value(&envelope.mail_from))
            .header("Queue-Id", envelope.id.to_string())
            .body(raw.to_vec());
        for rcpt in &envelope.rcpt_to {
            request = request.header("Rcpt", header_value(rcpt));
        }
        if let Some(password) = &self.password {
            request = request.header("Password", header_value(password));
        }
        let ask = async {
            let response = request.send().await.map_err(|e| {
                if e.is_connect() {
                    RspamdError::Connect(e)
                } else {
                    RspamdError::Request(e)
                }
            })?;
            let status = response.status();
            if !status.is_success() {
                return Err(RspamdError::Status(status.as_u16()));
            }
            let body = response.bytes().await.map_err(RspamdError::Request)?;
            parse_reply(&body)
        };
        tokio::time::timeout(self.timeout, ask)
            .await
            .map_err(|_| RspamdError::Timeout)?
    }
}

/// A header value without the characters HTTP forbids (an envelope field is ASCII already; this
/// only keeps a stray control character from failing the request).
fn header_value(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_control() && c.is_ascii())
        .collect()
}

/// Gathers [`RspamdFacts`] for the rule set's `[rspamd]` rule.
#[derive(Debug, Clone, Default)]
pub struct RspamdGatherer {
    client: Option<Rspamd>,
}

impl RspamdGatherer {
    pub fn new(client: Option<Rspamd>) -> Self {
        Self { client }
    }

    /// A gatherer that asks nothing.
    pub fn off() -> Self {
        Self { client: None }
    }

    /// rspamd's answer, when a URL is configured and the `[rspamd]` rule is enabled; `None` when
    /// not asked or not answered (logged and counted). Never fails.
    pub async fn gather(
        &self,
        rules: &RuleSet,
        envelope: &Envelope,
        raw: &[u8],
    ) -> Option<RspamdFacts> {
        let client = self.client.as_ref()?;
        if !rules.settings().rspamd.enabled {
            return None;
        }
        match client.check(envelope, raw).await {
            Ok(facts) => {
                tracing::debug!(
                    msg_id = %envelope.id,
                    score = facts.score,
                    action = %facts.action,
                    "rspamd answered."
                );
                Some(facts)
            }
            Err(e) => {
                tracing::warn!(
                    msg_id = %envelope.id,
                    error = %e,
                    cause = ?std::error::Error::source(&e).map(ToString::to_string),
                    "rspamd gave no answer; the message is judged without it."
                );
                metrics::counter!("maildrop_filter_rspamd_unanswered_total", "reason" => e.kind())
                    .increment(1);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_is_read_with_the_heaviest_symbols_first() {
        let body = br#"{"is_skipped":false,"score":8.5,"required_score":15.0,"action":"add header",
            "symbols":{"MISSING_DATE":{"name":"MISSING_DATE","score":1.0,"metric_score":1.0},
                       "MISSING_MID":{"name":"MISSING_MID","score":2.5},
                       "R_SPF_NA":{"name":"R_SPF_NA","score":0.0},
                       "HAM_ISH":{"name":"HAM_ISH","score":-3.0}},
            "messages":{"smtp_message":"Gtube pattern"},"milter":{}}"#;
        let facts = parse_reply(body).unwrap();
        assert_eq!(facts.score, 8.5);
        assert_eq!(facts.required_score, 15.0);
        assert_eq!(facts.action, "add header");
        assert_eq!(facts.message.as_deref(), Some("Gtube pattern"));
        let names: Vec<&str> = facts.symbols.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            ["HAM_ISH", "MISSING_MID", "MISSING_DATE", "R_SPF_NA"]
        );
    }

    #[test]
    fn a_reply_without_a_score_is_no_answer() {
        for body in [&b"not json"[..], br#"{"error":"bad request"}"#, b""] {
            assert!(matches!(parse_reply(body), Err(RspamdError::Reply(_))));
        }
    }

    #[test]
    fn no_url_no_client_and_the_url_gets_checkv2() {
        let mut args = RspamdArgs {
            rspamd_url: None,
            rspamd_password: None,
            rspamd_timeout: Duration::from_secs(5),
        };
        assert!(Rspamd::from_args(&args).is_none());
        args.rspamd_url = Some("  ".into());
        assert!(Rspamd::from_args(&args).is_none());
        args.rspamd_url = Some("http://127.0.0.1:11333/".into());
        let client = Rspamd::from_args(&args).unwrap();
        assert_eq!(client.check_url, "http://127.0.0.1:11333/checkv2");
    }

    #[test]
    fn header_values_lose_control_characters() {
        assert_eq!(header_value("a@b.example\r\nX: y"), "a@b.exampleX: y");
    }
}
