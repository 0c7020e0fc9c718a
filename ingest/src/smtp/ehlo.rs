//! `EHLO` and `HELO`: the client names itself and learns what we support.
//!
//! Both share one file because they differ only in the reply. Greeting (again) resets any
//! transaction, as RFC 5321 §4.1.4 requires. The name is stored as given: it is the client's claim,
//! recorded in the envelope, never trusted or used for a decision, so only its presence is checked.
//! The `EHLO` reply is the one place that lists our extensions; `STARTTLS` is offered only when the
//! caller can upgrade and has not already.

use super::Session;
use super::reply::{self, Reply};

pub(super) fn ehlo(s: &mut Session, args: &str) -> Reply {
    if args.is_empty() {
        return reply::syntax("EHLO hostname");
    }
    greeted(s, args);
    let mut lines = vec![
        s.config.hostname.clone(),
        "PIPELINING".to_owned(),
        format!("SIZE {}", s.config.max_message_size),
        "8BITMIME".to_owned(),
        "SMTPUTF8".to_owned(),
        "ENHANCEDSTATUSCODES".to_owned(),
        "CHUNKING".to_owned(),
    ];
    if s.config.starttls_available && !s.tls {
        lines.push("STARTTLS".to_owned());
    }
    Reply::multiline(250, None, lines)
}

pub(super) fn helo(s: &mut Session, args: &str) -> Reply {
    if args.is_empty() {
        return reply::syntax("HELO hostname");
    }
    greeted(s, args);
    Reply::plain(250, s.config.hostname.clone())
}

fn greeted(s: &mut Session, name: &str) {
    s.helo = Some(name.to_owned());
    s.tx = None;
    // A verdict on the client was about the name it gave; a new name is asked about afresh.
    s.client_verdict = None;
}
