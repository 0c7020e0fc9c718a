//! What is kept of one message: the document `GET /api/mailboxes/{box}/messages/{id}` returns.

use maildrop_contract::{MessageSummary, RuleHit};
use serde::{Deserialize, Serialize};

use crate::attachment::StripReason;

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

impl StoredMessage {
    /// Sets every attachment's `index` to its position, which is what it is by construction;
    /// documents stored before `index` existed read as all zeros otherwise.
    pub fn number_attachments(&mut self) {
        for (i, a) in self.attachments.iter_mut().enumerate() {
            a.index = i;
        }
    }
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

/// One attachment, as listed in the message document.
///
/// `index` is the attachment's position among the message's attachments, the `{index}` of
/// `…/attachments/{index}`; [`crate::attachment::extract`] finds the same part by it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attachment {
    /// Documents written before this field existed lack it; [`StoredMessage::number_attachments`]
    /// fills it in from the position on read.
    #[serde(default)]
    pub index: usize,
    pub name: Option<String>,
    pub content_type: String,
    /// Decoded size in bytes, as received (also when the body was stripped).
    pub size: u64,
    /// The body was removed before storing (see [`crate::attachment`]): listed, not downloadable.
    #[serde(default)]
    pub stripped: bool,
    /// Why it was stripped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stripped_reason: Option<StripReason>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredVerdict {
    pub score: f64,
    pub threshold: f64,
    pub hits: Vec<RuleHit>,
    pub ruleset: String,
}
