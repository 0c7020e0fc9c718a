//! `STARTTLS` (RFC 3207): `220`, then [`super::Action::StartTls`], then a fresh session.
//!
//! Plaintext that a client pipelined after `STARTTLS` must never be executed inside the encrypted
//! session (CVE-2011-0411, the command injection Wietse Venema found in Postfix and others). The
//! buffer is cleared here, as soon as the command is accepted, and again when `StartTls` is handed
//! out; until the caller reports `tls_started()` the session parses nothing. `STARTTLS` inside a
//! transaction is refused, so no half-built transaction can straddle the upgrade.

use bytes::BytesMut;

use super::reply::{self, Reply};
use super::{Action, Input, Session, discard_plaintext};

pub(super) fn starttls(s: &mut Session, args: &str, input: &mut BytesMut) -> Reply {
    if !args.is_empty() {
        return reply::syntax("STARTTLS");
    }
    if s.tls {
        return reply::bad_sequence("TLS already active");
    }
    if !s.config.starttls_available {
        return Reply::new(502, (5, 5, 1), "Error: command not implemented");
    }
    if s.tx.is_some() {
        return reply::bad_sequence("MAIL transaction in progress");
    }
    discard_plaintext(s.peer, input);
    s.helo = None;
    s.input = Input::AwaitingTls;
    s.pending = Some(Action::StartTls);
    Reply::new(220, (2, 0, 0), "Ready to start TLS")
}
