//! A mail transaction: the one being built from `MAIL`/`RCPT`, and the finished one handed to the
//! caller.
//!
//! The two are separate types so the caller only ever sees a complete transaction (a sender, at
//! least one recipient, a body), while the session keeps the bookkeeping it needs on the way
//! (declared size, a `BDAT` body in progress). The session never makes ids or reads the clock; the
//! caller does, when it turns a [`Transaction`] into an [`Envelope`].

use std::net::IpAddr;

use bytes::Bytes;
use maildrop_contract::{Envelope, Mailbox, MessageId};

use super::body::BodySink;

/// A message received in full, ready to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transaction {
    pub client_ip: IpAddr,
    /// The `EHLO`/`HELO` argument.
    pub helo: String,
    /// The reverse path without angle brackets; empty for the null sender `<>`.
    pub mail_from: String,
    /// Each accepted recipient as the client wrote it (`local@domain`, source route dropped).
    pub rcpt_to: Vec<String>,
    /// The distinct mailboxes the recipients resolve to, in the order first seen.
    pub mailboxes: Vec<Mailbox>,
    /// The message as received: after dot-unstuffing for `DATA`, the chunks joined for `BDAT`.
    pub body: Bytes,
    /// The client declared `BODY=8BITMIME`.
    pub body_8bit: bool,
    /// The client declared `SMTPUTF8`.
    pub smtputf8: bool,
    /// The message arrived over TLS.
    pub tls: bool,
}

impl Transaction {
    /// The body's size in octets.
    pub fn size(&self) -> u64 {
        self.body.len() as u64
    }

    /// The envelope to publish with the body; the caller supplies the id and the time.
    pub fn envelope(&self, id: MessageId, received_ms: u64) -> Envelope {
        Envelope {
            id,
            client_ip: self.client_ip,
            helo: self.helo.clone(),
            mail_from: self.mail_from.clone(),
            rcpt_to: self.rcpt_to.clone(),
            mailboxes: self.mailboxes.clone(),
            received_ms,
            size: self.size(),
        }
    }
}

/// What became of a delivered transaction; [`super::Session::delivered`] turns it into the reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// Stored durably under this id: `250 2.0.0`.
    Accepted { id: MessageId },
    /// Could not be stored now; the client should retry: `451 4.3.0`.
    TemporaryFailure,
    /// Will never be accepted: `554 5.7.1` with this reason (one line of text for the client).
    Rejected { reason: String },
}

/// The transaction being built.
#[derive(Debug)]
pub(super) struct Draft {
    pub mail_from: String,
    pub declared_size: Option<u64>,
    pub body_8bit: bool,
    pub smtputf8: bool,
    pub rcpt_to: Vec<String>,
    pub mailboxes: Vec<Mailbox>,
    /// The body so far once `BDAT` has started; `DATA` keeps its body in its reader instead.
    pub chunks: Option<BodySink>,
}

impl Draft {
    pub(super) fn new(mail_from: String) -> Self {
        Self {
            mail_from,
            declared_size: None,
            body_8bit: false,
            smtputf8: false,
            rcpt_to: Vec::new(),
            mailboxes: Vec::new(),
            chunks: None,
        }
    }

    pub(super) fn add_recipient(&mut self, raw: String, mailbox: Mailbox) {
        self.rcpt_to.push(raw);
        if !self.mailboxes.contains(&mailbox) {
            self.mailboxes.push(mailbox);
        }
    }
}
