//! The SMTP envelope, carried in NATS headers next to the raw message.
//!
//! The payload of a `maildrop.received` message is the raw RFC 5322 bytes exactly as the client sent
//! them (after dot-unstuffing); everything that SMTP knew about the transaction rides in these
//! headers, so a stage can route and count without parsing the message.

use std::net::IpAddr;

use async_nats::HeaderMap;

use crate::id::MessageId;
use crate::mailbox::Mailbox;

/// Header names. `Nats-Msg-Id` is set to the message id too, for JetStream's duplicate window.
pub mod header {
    pub const ID: &str = "Maildrop-Id";
    pub const CLIENT_IP: &str = "Maildrop-Client-Ip";
    pub const HELO: &str = "Maildrop-Helo";
    pub const MAIL_FROM: &str = "Maildrop-Mail-From";
    /// One value per recipient, as the client wrote it.
    pub const RCPT_TO: &str = "Maildrop-Rcpt-To";
    /// One value per distinct mailbox the recipients resolve to.
    pub const MAILBOX: &str = "Maildrop-Mailbox";
    pub const RECEIVED_MS: &str = "Maildrop-Received-Ms";
    pub const SIZE: &str = "Maildrop-Size";
    /// On dead letters: which stage gave up, and why.
    pub const DEADLETTER_STAGE: &str = "Maildrop-Deadletter-Stage";
    pub const DEADLETTER_REASON: &str = "Maildrop-Deadletter-Reason";
    pub const DEADLETTER_SUBJECT: &str = "Maildrop-Deadletter-Subject";
}

/// What SMTP knew about one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub id: MessageId,
    pub client_ip: IpAddr,
    pub helo: String,
    /// The reverse path without angle brackets; empty for the null sender `<>`.
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    pub mailboxes: Vec<Mailbox>,
    pub received_ms: u64,
    pub size: u64,
}

/// A header set that is not a Maildrop envelope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("header {0} is missing")]
    Missing(&'static str),
    #[error("header {0} has an invalid value")]
    Invalid(&'static str),
}

/// Header values may not hold line breaks; anything below a space becomes `?`.
fn clean(value: &str) -> std::borrow::Cow<'_, str> {
    // Nearly always nothing to replace: no copy then.
    if value.bytes().all(|b| b >= 0x20 && b != 0x7f) {
        return std::borrow::Cow::Borrowed(value);
    }
    value
        .chars()
        .map(|c| {
            if (c as u32) < 0x20 || c == '\x7f' {
                '?'
            } else {
                c
            }
        })
        .collect::<String>()
        .into()
}

impl Envelope {
    pub fn to_headers(&self) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ID, self.id.to_string().as_str());
        h.insert(header::CLIENT_IP, self.client_ip.to_string().as_str());
        h.insert(header::HELO, clean(&self.helo).as_ref());
        h.insert(header::MAIL_FROM, clean(&self.mail_from).as_ref());
        for rcpt in &self.rcpt_to {
            h.append(header::RCPT_TO, clean(rcpt).as_ref());
        }
        for mailbox in &self.mailboxes {
            h.append(header::MAILBOX, mailbox.as_str());
        }
        h.insert(header::RECEIVED_MS, self.received_ms.to_string().as_str());
        h.insert(header::SIZE, self.size.to_string().as_str());
        h
    }

    pub fn from_headers(h: &HeaderMap) -> Result<Self, EnvelopeError> {
        fn one<'a>(h: &'a HeaderMap, name: &'static str) -> Result<&'a str, EnvelopeError> {
            h.get(name)
                .map(|v| v.as_str())
                .ok_or(EnvelopeError::Missing(name))
        }
        fn all(h: &HeaderMap, name: &'static str) -> Vec<String> {
            h.get_all(name).map(|v| v.as_str().to_owned()).collect()
        }
        fn number(h: &HeaderMap, name: &'static str) -> Result<u64, EnvelopeError> {
            one(h, name)?
                .parse()
                .map_err(|_| EnvelopeError::Invalid(name))
        }
        let mailboxes = all(h, header::MAILBOX)
            .iter()
            .map(|m| Mailbox::parse(m).map_err(|_| EnvelopeError::Invalid(header::MAILBOX)))
            .collect::<Result<Vec<_>, _>>()?;
        if mailboxes.is_empty() {
            return Err(EnvelopeError::Missing(header::MAILBOX));
        }
        Ok(Self {
            id: one(h, header::ID)?
                .parse()
                .map_err(|_| EnvelopeError::Invalid(header::ID))?,
            client_ip: one(h, header::CLIENT_IP)?
                .parse()
                .map_err(|_| EnvelopeError::Invalid(header::CLIENT_IP))?,
            helo: one(h, header::HELO)?.to_owned(),
            mail_from: one(h, header::MAIL_FROM)?.to_owned(),
            rcpt_to: all(h, header::RCPT_TO),
            mailboxes,
            received_ms: number(h, header::RECEIVED_MS)?,
            size: number(h, header::SIZE)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Envelope {
        Envelope {
            id: MessageId::new(),
            client_ip: "192.0.2.7".parse().unwrap(),
            helo: "mx.example.org".into(),
            mail_from: "alice@example.org".into(),
            rcpt_to: vec![
                "bob@maildrop.localhost".into(),
                "Bob+x@maildrop.localhost".into(),
            ],
            mailboxes: vec![Mailbox::parse("bob").unwrap()],
            received_ms: 1_700_000_000_000,
            size: 1234,
        }
    }

    #[test]
    fn round_trips_through_headers() {
        let env = sample();
        assert_eq!(Envelope::from_headers(&env.to_headers()).unwrap(), env);
    }

    #[test]
    fn null_sender_survives() {
        let mut env = sample();
        env.mail_from.clear();
        assert_eq!(
            Envelope::from_headers(&env.to_headers()).unwrap().mail_from,
            ""
        );
    }

    #[test]
    fn line_breaks_cannot_reach_a_header() {
        let mut env = sample();
        env.helo = "evil\r\nMaildrop-Mailbox: root".into();
        let back = Envelope::from_headers(&env.to_headers()).unwrap();
        assert_eq!(back.helo, "evil??Maildrop-Mailbox: root");
        assert_eq!(back.mailboxes, env.mailboxes);
    }

    #[test]
    fn missing_and_bad_headers_are_named() {
        let mut h = sample().to_headers();
        h.insert(header::SIZE, "lots");
        assert_eq!(
            Envelope::from_headers(&h),
            Err(EnvelopeError::Invalid(header::SIZE))
        );
        assert_eq!(
            Envelope::from_headers(&HeaderMap::new()),
            Err(EnvelopeError::Missing(header::MAILBOX))
        );
    }
}
