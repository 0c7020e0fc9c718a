//! `RCPT TO:<forward-path>`: add a recipient, if it is a mailbox of ours.
//!
//! [`resolve`] is the one function that decides what an address delivers to; an asynchronous alias
//! lookup will replace it, so it takes the parsed address and returns a mailbox or a [`Refusal`],
//! and knows nothing else about the session. The order of checks is: syntax (`501`), non-ASCII
//! without `SMTPUTF8` (`553 5.6.7`), the recipient limit (`452`), then resolution: a domain that is
//! not ours is `550 5.7.1` before anything is said about the local part, so a relay probe learns
//! nothing about our naming rules.

use maildrop_contract::Mailbox;
use maildrop_contract::mailbox::InvalidMailbox;
use thiserror::Error;

use super::parse::{self, Address};
use super::reply::{self, Reply};
use super::{Session, SessionConfig};

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

pub(super) fn rcpt(s: &mut Session, args: &str) -> Reply {
    let Some(tx) = s.tx.as_mut() else {
        return reply::bad_sequence("need MAIL command");
    };
    if tx.chunks.is_some() {
        return reply::bad_sequence("RCPT after BDAT");
    }
    let Some(path) = parse::after_keyword(args, "TO:") else {
        return reply::syntax("RCPT TO:<address>");
    };
    let (address, rest) = match parse::forward_path(path) {
        Ok(parsed) => parsed,
        Err(e) => {
            return Reply::new(501, (5, 1, 3), format!("Bad recipient address syntax: {e}"));
        }
    };
    match parse::params(rest) {
        Err(e) => return Reply::new(501, (5, 5, 4), e.to_string()),
        Ok(params) if !params.is_empty() => {
            return Reply::new(555, (5, 5, 4), "RCPT TO parameters are not supported");
        }
        Ok(_) => {}
    }
    if address.non_ascii && !tx.smtputf8 {
        return Reply::new(553, (5, 6, 7), "Non-ASCII address requires SMTPUTF8");
    }
    if tx.rcpt_to.len() >= s.config.max_recipients {
        return Reply::new(452, (4, 5, 3), "Too many recipients");
    }
    match resolve(&s.config, &address) {
        Ok(mailbox) => {
            tx.add_recipient(address.as_written(), mailbox);
            reply::ok((2, 1, 5))
        }
        Err(refusal) => refusal.reply(),
    }
}
