//! Spam-source reports: what is posted to the webhook, built from a rejected verdict or a refused
//! SMTP attempt. Pure; [`crate::webhook`] posts them.
//!
//! A batch is `{"v": 1, "reports": [...]}`. Delivery is at least once (a batch is acked on the
//! stream only after the webhook answered 2xx, and retried until then), so each report carries an
//! `id` to deduplicate on: the message id of a rejected message, the event id of a refused
//! attempt. Both are ULIDs and never repeat.

use maildrop_contract::{IngestRejection, Verdict, event};
use serde::{Deserialize, Serialize};

/// Which stream a report comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReportKind {
    /// The filter rejected a received message.
    RejectedMessage,
    /// The ingest refused an SMTP attempt before a message existed.
    RefusedAttempt,
}

/// One spam source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The key to deduplicate on.
    pub id: String,
    pub kind: ReportKind,
    pub client_ip: String,
    pub helo: Option<String>,
    /// The envelope sender; empty for `<>`, absent when the client never sent `MAIL`.
    pub mail_from: Option<String>,
    /// Recipients (refused attempts) or mailboxes (rejected messages).
    pub recipients: Vec<String>,
    /// The rules that hit (rejected messages) or the ingest's reason (refused attempts).
    pub reasons: Vec<String>,
    /// The filter's score, for rejected messages.
    pub score: Option<f64>,
    pub time_ms: u64,
}

/// What one POST carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportBatch {
    pub v: u32,
    pub reports: Vec<Report>,
}

impl ReportBatch {
    pub fn new(reports: Vec<Report>) -> Self {
        Self {
            v: event::VERSION,
            reports,
        }
    }
}

/// The report of a rejected verdict; `None` for an accepted one.
pub fn from_verdict(v: Verdict) -> Option<Report> {
    (!v.accepted).then(|| Report {
        id: v.id.to_string(),
        kind: ReportKind::RejectedMessage,
        client_ip: v.client_ip,
        helo: None,
        mail_from: Some(v.mail_from),
        recipients: v.mailboxes.iter().map(|m| m.as_str().to_owned()).collect(),
        reasons: v.hits.into_iter().map(|h| h.rule).collect(),
        score: Some(v.score),
        time_ms: v.received_ms,
    })
}

/// The report of a refused attempt.
pub fn from_rejection(r: IngestRejection) -> Report {
    Report {
        id: r.id.to_string(),
        kind: ReportKind::RefusedAttempt,
        client_ip: r.client_ip,
        helo: r.helo,
        mail_from: r.mail_from,
        recipients: r.rcpt,
        reasons: vec![r.reason.as_str().to_owned()],
        score: None,
        time_ms: r.time_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rejected_verdict_reports_its_rules() {
        let v: Verdict =
            serde_json::from_str(include_str!("../../contract/fixtures/verdict.v1.json")).unwrap();
        let r = from_verdict(v.clone()).unwrap();
        assert_eq!(r.id, v.id.to_string());
        assert_eq!(r.kind, ReportKind::RejectedMessage);
        assert_eq!(r.reasons, ["blocked_sender"]);
        assert_eq!(r.recipients, ["bob"]);
        assert_eq!(r.score, Some(10.0));
        let accepted = Verdict {
            accepted: true,
            ..v
        };
        assert!(from_verdict(accepted).is_none());
    }

    #[test]
    fn a_refused_attempt_reports_its_reason() {
        let e: IngestRejection = serde_json::from_str(include_str!(
            "../../contract/fixtures/rejected-ingest.v1.json"
        ))
        .unwrap();
        let r = from_rejection(e);
        assert_eq!(r.kind, ReportKind::RefusedAttempt);
        assert_eq!(r.reasons, ["relay_denied"]);
        assert_eq!(r.helo.as_deref(), Some("mx.spammer.example"));
        let json = serde_json::to_value(ReportBatch::new(vec![r])).unwrap();
        assert_eq!(json["v"], 1);
        assert_eq!(json["reports"][0]["kind"], "refused_attempt");
    }
}
