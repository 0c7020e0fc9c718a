//! `RCPT TO:<forward-path>`: add a recipient, if it is a mailbox of ours and the client may send.
//!
//! [`resolve`] is the one function that decides what an address delivers to; an asynchronous alias
//! lookup will replace it, so it takes the parsed address and returns a mailbox or a [`Refusal`],
//! and knows nothing else about the session. The order of checks is: syntax (`501`), non-ASCII
//! without `SMTPUTF8` (`553 5.6.7`), the recipient limit (`452`), then resolution: a domain that is
//! not ours is `550 5.7.1` before anything is said about the local part, so a relay probe learns
//! nothing about our naming rules.
//!
//! Last comes the client check, only with [`SessionConfig::check_client`]: a recipient that passed
//! everything else waits for the caller's [`ClientVerdict`] (`Action::CheckClient`), asked once per
//! greeting. A deferred client gets `451 4.7.1` for this and every later recipient until it greets
//! again; a `4xx` is not a bad command, so a greylisted sender is not also tarpitted for it.

use maildrop_contract::Mailbox;
use maildrop_contract::mailbox::InvalidMailbox;
use thiserror::Error;

use super::parse::{self, Address};
use super::reply::{self, Reply};
use super::{Input, Session, SessionConfig};

/// RFC 5321 §4.5.3.1.1.
const MAX_LOCAL_PART: usize = 64;

/// Why an address is not one of our mailboxes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub(super) enum Refusal {
    #[error("Relay access denied")]
    Relay,
    #[error("Quoted local parts are not mailbox names")]
    Quoted,
    #[error("Local part longer than {MAX_LOCAL_PART} octets")]
    TooLong,
    #[error("Not a mailbox name: {0}")]
    Invalid(InvalidMailbox),
}

impl Refusal {
    fn reply(self) -> Reply {
        match self {
            Self::Relay => Reply::new(550, (5, 7, 1), self.to_string()),
            _ => Reply::new(553, (5, 1, 3), self.to_string()),
        }
    }
}

/// The mailbox an address delivers to.
pub(super) fn resolve(config: &SessionConfig, address: &Address<'_>) -> Result<Mailbox, Refusal> {
    let Some(domain) = address.domain else {
        // `<postmaster>` without a domain, which RFC 5321 §4.1.1.3 says we must accept.
        return Mailbox::parse("postmaster").map_err(Refusal::Invalid);
    };
    if !config.is_our_domain(domain) {
        return Err(Refusal::Relay);
    }
    if address.quoted {
        return Err(Refusal::Quoted);
    }
    if address.local.len() > MAX_LOCAL_PART {
        return Err(Refusal::TooLong);
    }
    Mailbox::from_local_part(address.local).map_err(Refusal::Invalid)
}

/// The caller's answer to `Action::CheckClient`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientVerdict {
    /// The client may send: recipients are accepted.
    Accept,
    /// Not now: recipients get `451 4.7.1` with this text (one line for the client).
    Defer { reason: String },
}

/// `None` when the recipient waits for the caller's verdict on the client.
pub(super) fn rcpt(s: &mut Session, args: &str) -> Option<Reply> {
    let (recipient, mailbox) = match recipient(s, args) {
        Ok(found) => found,
        Err(reply) => return Some(reply),
    };
    if !s.config.check_client {
        return Some(accept(s, recipient, mailbox));
    }
    match &s.client_verdict {
        Some(ClientVerdict::Accept) => Some(accept(s, recipient, mailbox)),
        Some(ClientVerdict::Defer { reason }) => Some(deferred(reason)),
        None => {
            s.input = Input::AwaitingCheck { recipient, mailbox };
            None
        }
    }
}

/// The reply to the recipient that waited for `verdict`; the verdict holds until the next greeting.
pub(super) fn client_checked(s: &mut Session, verdict: ClientVerdict) -> Reply {
    let Input::AwaitingCheck { recipient, mailbox } =
        std::mem::replace(&mut s.input, Input::Command)
    else {
        tracing::warn!(client_ip = %s.peer, "client_checked() called with no check pending.");
        return reply::bad_sequence("no recipient waiting");
    };
    let reply = match &verdict {
        ClientVerdict::Accept => accept(s, recipient, mailbox),
        ClientVerdict::Defer { reason } => {
            s.refused_rcpt = Some(recipient);
            deferred(reason)
        }
    };
    s.client_verdict = Some(verdict);
    reply
}

fn accept(s: &mut Session, recipient: String, mailbox: Mailbox) -> Reply {
    match s.tx.as_mut() {
        Some(tx) => {
            tx.add_recipient(recipient, mailbox);
            reply::ok((2, 1, 5))
        }
        None => reply::bad_sequence("need MAIL command"),
    }
}

/// The address of an `RCPT TO:<…>` line as far as it can be read, for the record of a refusal:
/// the text between the brackets (or after `TO:`), at most 320 characters.
pub(super) fn attempted(args: &str) -> String {
    let path = parse::after_keyword(args, "TO:").unwrap_or(args).trim();
    let path = path.split_whitespace().next().unwrap_or("");
    let path = path.trim_start_matches('<');
    let path = path.split('>').next().unwrap_or(path);
    path.chars().take(320).collect()
}

fn deferred(reason: &str) -> Reply {
    Reply::new(451, (4, 7, 1), reason)
}

/// Every check but the client's: the recipient as written and its mailbox, or the refusal.
fn recipient(s: &Session, args: &str) -> Result<(String, Mailbox), Reply> {
    let Some(tx) = s.tx.as_ref() else {
        return Err(reply::bad_sequence("need MAIL command"));
    };
    if tx.chunks.is_some() {
        return Err(reply::bad_sequence("RCPT after BDAT"));
    }
    let Some(path) = parse::after_keyword(args, "TO:") else {
        return Err(reply::syntax("RCPT TO:<address>"));
    };
    let (address, rest) = match parse::forward_path(path) {
        Ok(parsed) => parsed,
        Err(e) => {
            return Err(Reply::new(
                501,
                (5, 1, 3),
                format!("Bad recipient address syntax: {e}"),
            ));
        }
    };
    match parse::params(rest) {
        Err(e) => return Err(Reply::new(501, (5, 5, 4), e.to_string())),
        Ok(params) if !params.is_empty() => {
            return Err(Reply::new(
                555,
                (5, 5, 4),
                "RCPT TO parameters are not supported",
            ));
        }
        Ok(_) => {}
    }
    if address.non_ascii && !tx.smtputf8 {
        return Err(Reply::new(
            553,
            (5, 6, 7),
            "Non-ASCII address requires SMTPUTF8",
        ));
    }
    if tx.rcpt_to.len() >= s.config.max_recipients {
        return Err(Reply::new(452, (4, 5, 3), "Too many recipients"));
    }
    resolve(&s.config, &address)
        .map(|mailbox| (address.as_written(), mailbox))
        .map_err(Refusal::reply)
}
