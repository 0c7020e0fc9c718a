//! What is kept of one message: the document `GET /api/mailboxes/{box}/messages/{id}` returns.

use maildrop_contract::{MessageSummary, RuleHit};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredMessage {
    #[serde(flatten)]
    pub summary: MessageSummary,
    pub envelope: StoredEnvelope,
    pub headers: Headers,
    pub text: Option<String>,
    pub html: Option<String>,
    pub attachments: Vec<Attachment>,
    pub verdict: Option<StoredVerdict>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredEnvelope {
    pub client_ip: String,
    pub helo: String,
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    pub received_ms: u64,
    pub size: u64,
}

/// The headers a reader wants to see, decoded (RFC 2047) and as written otherwise.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Headers {
    pub from: Option<String>,
    pub to: Option<String>,
    pub cc: Option<String>,
    pub subject: Option<String>,
    pub date: Option<String>,
    pub message_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attachment {
    pub name: Option<String>,
    pub content_type: String,
    pub size: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredVerdict {
    pub score: f64,
    pub threshold: f64,
    pub hits: Vec<RuleHit>,
    pub ruleset: String,
}
