//! The `smtp_session` harness: bytes from a stranger, cut into pieces the way TCP may cut them, fed
//! to an SMTP [`Session`] exactly as the server's I/O loop feeds it, with the session's promises
//! checked after every step.
//!
//! This file is shared, included with `#[path]` by the fuzz target (`fuzz_targets/smtp_session.rs`)
//! and by `ingest/tests/fuzz_corpus.rs`, which replays the seed corpus through [`run`] on stable
//! Rust so that CI exercises it. It may therefore use only crates that both see:
//! `maildrop_ingest`, `maildrop_contract` and `bytes`.
//!
//! # Input layout
//!
//! Four header bytes, then the bytes the client sends (a shorter input is padded with zeros):
//!
//! - byte 0, configuration flags: `0x01` STARTTLS offered, `0x02` a 64-octet line limit, `0x04` a
//!   64-octet message limit, `0x08` three bad commands allowed, `0x10` sixteen commands allowed,
//!   `0x20` two recipients allowed, `0x40` the caller checks clients (greylisting). `0` is the
//!   production defaults (with a 64 KiB message limit);
//! - byte 1, the largest piece handed over in one read; `0` hands over everything at once;
//! - bytes 2 and 3, the seed for the piece lengths (each between 1 and byte 1).
//!
//! # What is checked
//!
//! - nothing panics, and the session never acts forever without consuming input;
//! - every reply is well-formed on the wire: a 3-digit code from 200 to 599, an enhanced code of
//!   the same class, `-` on every line but the last, at most 512 octets a line, each ending in
//!   CRLF and holding no other CR or LF;
//! - `next_action` never grows the buffer, and leaves it shorter than `max_buffer()` whenever it
//!   asks for more input;
//! - at most one `Deliver` for each `<LF>.<CRLF>` or `LAST` the client has sent so far, and every
//!   delivered transaction is complete, within the limits, free of NUL, and survives the trip
//!   through the envelope headers;
//! - a client check is asked for only at an `RCPT`, with our peer and its greeting, at most once
//!   per `EHLO`/`HELO` sent, and only when configured; its reply is `250` or `451`;
//! - a closed session stays closed;
//! - without STARTTLS, cutting the input into pieces changes nothing: the replies and deliveries
//!   are the same as when it all arrives at once. (With STARTTLS the cut matters by design: bytes
//!   that arrive with the `STARTTLS` line are plaintext and dropped, bytes after the upgrade are
//!   read.)
//!
//! Every `Deliver` is answered in turn with an acceptance, a temporary failure, a refusal whose
//! reason tries to inject a line, and a refusal without a reason; every `CheckClient` in turn with
//! an acceptance and a deferral whose reason tries to inject a line; every `StartTls` with a clear
//! buffer and `tls_started()`, as the server does.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use bytes::BytesMut;
use maildrop_contract::{Envelope, MessageId};
use maildrop_ingest::smtp::{
    Action, ClientVerdict, DEFAULT_MAX_BAD_COMMANDS, DEFAULT_MAX_COMMANDS, DEFAULT_MAX_HEADER_SIZE,
    DEFAULT_MAX_LINE_LENGTH, DEFAULT_MAX_RECIPIENTS, DeliveryOutcome, Reply, Session,
    SessionConfig, Transaction, Verb,
};

const PEER: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 25));
const ID: &str = "01ARZ3NDEKTSV4RRFFQ69G5FAV";
const HEADER: usize = 4;
/// RFC 5321 §4.5.3.1.5: a reply line, code and CRLF included.
const MAX_REPLY_LINE: usize = 512;

/// What the session did, in order: the replies (including those of `delivered`), the
/// transactions it delivered, upgrades and the close.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Reply(Reply),
    Deliver(Transaction),
    CheckClient { helo: String },
    StartTls,
    Close,
}

/// One replay of an input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub events: Vec<Event>,
}

impl Summary {
    /// The transactions delivered.
    pub fn deliveries(&self) -> Vec<&Transaction> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Deliver(tx) => Some(tx),
                _ => None,
            })
            .collect()
    }

    /// The reply codes, in order.
    pub fn codes(&self) -> Vec<u16> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Reply(r) => Some(r.code),
                _ => None,
            })
            .collect()
    }
}

/// Replays `data` (header, then client bytes) and checks every invariant; panics on a violation.
pub fn run(data: &[u8]) -> Summary {
    let mut header = [0u8; HEADER];
    let head = data.len().min(HEADER);
    header[..head].copy_from_slice(&data[..head]);
    let smtp = &data[head..];
    let config = Arc::new(config(header[0]));
    let pieces = pieces(smtp, header[1], u16::from_le_bytes([header[2], header[3]]));
    let summary = replay(&config, &pieces);
    if !config.starttls_available && pieces.len() > 1 {
        let whole = replay(&config, &[smtp]);
        if summary != whole {
            let at = (summary.events.iter().zip(&whole.events))
                .position(|(a, b)| a != b)
                .unwrap_or(summary.events.len().min(whole.events.len()));
            panic!(
                "cutting the input into {} pieces changed the conversation at event {at}:\n \
                 in pieces: {:?}\n at once:    {:?}",
                pieces.len(),
                summary.events.get(at),
                whole.events.get(at)
            );
        }
    }
    summary
}

/// The session's limits from the flags byte.
pub fn config(flags: u8) -> SessionConfig {
    fn pick<T>(flags: u8, bit: u8, small: T, default: T) -> T {
        if flags & bit != 0 { small } else { default }
    }
    SessionConfig {
        hostname: "mx.maildrop.test".to_owned(),
        domains: vec!["maildrop.test".to_owned(), "example.test".to_owned()],
        starttls_available: flags & 0x01 != 0,
        max_line_length: pick(flags, 0x02, 64, DEFAULT_MAX_LINE_LENGTH),
        max_message_size: pick(flags, 0x04, 64, 64 * 1024),
        max_header_size: pick(flags, 0x04, 32, DEFAULT_MAX_HEADER_SIZE),
        max_bad_commands: pick(flags, 0x08, 3, DEFAULT_MAX_BAD_COMMANDS),
        max_commands: pick(flags, 0x10, 16, DEFAULT_MAX_COMMANDS),
        max_recipients: pick(flags, 0x20, 2, DEFAULT_MAX_RECIPIENTS),
        check_client: flags & 0x40 != 0,
    }
}

/// Cuts `input` into pieces of 1 to `max` octets, lengths drawn from `seed`; `max == 0` is one
/// piece.
fn pieces(input: &[u8], max: u8, seed: u16) -> Vec<&[u8]> {
    if max == 0 || input.is_empty() {
        return vec![input];
    }
    // xorshift32; never zero because bit 16 is set.
    let mut state = u32::from(seed) | 1 << 16;
    let mut out = Vec::new();
    let mut rest = input;
    while !rest.is_empty() {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let len = 1 + (state % u32::from(max)) as usize;
        let (piece, tail) = rest.split_at(len.min(rest.len()));
        out.push(piece);
        rest = tail;
    }
    out
}

/// The answer to the `n`th delivery (from 1).
fn outcome(n: usize) -> DeliveryOutcome {
    match n % 4 {
        1 => DeliveryOutcome::Accepted {
            id: ID.parse().expect("a valid message id"),
        },
        2 => DeliveryOutcome::TemporaryFailure,
        3 => DeliveryOutcome::Rejected {
            reason: "Spam\r\n250 2.0.0 Ok: queued as forged".to_owned(),
        },
        _ => DeliveryOutcome::Rejected {
            reason: String::new(),
        },
    }
}

/// The verdict on the `n`th client check (from 1).
fn verdict(n: usize) -> ClientVerdict {
    if n % 2 == 1 {
        ClientVerdict::Accept
    } else {
        ClientVerdict::Defer {
            reason: "Greylisted\r\n250 2.1.5 Ok".to_owned(),
        }
    }
}

fn replay(config: &Arc<SessionConfig>, pieces: &[&[u8]]) -> Summary {
    let mut session = Session::new(config.clone(), PEER);
    check_reply(&session.greeting());
    check_reply(&session.shutdown_reply());
    check_reply(&session.timeout_reply());
    let mut buf = BytesMut::new();
    let mut seen: Vec<u8> = Vec::new();
    let mut events = Vec::new();
    let mut deliveries = 0;
    let mut checks = 0;
    // Actions the session may take without asking for input: a few per octet received.
    let mut budget: usize = 16;
    'feed: for piece in pieces {
        buf.extend_from_slice(piece);
        seen.extend_from_slice(piece);
        budget += 4 * piece.len();
        loop {
            let before = buf.len();
            let action = session.next_action(&mut buf);
            assert!(buf.len() <= before, "next_action grew the buffer");
            if action == Action::NeedMoreInput {
                assert!(
                    buf.len() < session.max_buffer(),
                    "asked for more input with {} octets buffered (max_buffer {})",
                    buf.len(),
                    session.max_buffer()
                );
                break;
            }
            budget = budget
                .checked_sub(1)
                .expect("the session keeps acting without consuming input");
            match action {
                Action::NeedMoreInput => unreachable!("handled above"),
                Action::Reply(reply) => {
                    check_reply(&reply);
                    events.push(Event::Reply(reply));
                }
                Action::Deliver(tx) => {
                    deliveries += 1;
                    let ends = ends_of_message(&seen);
                    assert!(
                        deliveries <= ends,
                        "delivery {deliveries} with only {ends} ends of message sent"
                    );
                    check_transaction(config, &session, &tx);
                    events.push(Event::Deliver(tx));
                    let reply = session.delivered(outcome(deliveries));
                    check_reply(&reply);
                    events.push(Event::Reply(reply));
                }
                Action::CheckClient { client_ip, helo } => {
                    checks += 1;
                    assert!(config.check_client, "CheckClient without check_client");
                    assert_eq!(client_ip, PEER, "CheckClient for another client");
                    assert!(!helo.is_empty(), "CheckClient before a greeting");
                    assert_eq!(
                        session.answered(),
                        Some(Verb::Rcpt),
                        "CheckClient not at RCPT"
                    );
                    let greetings = greetings(&seen);
                    assert!(
                        checks <= greetings,
                        "client check {checks} with only {greetings} greetings sent"
                    );
                    events.push(Event::CheckClient { helo });
                    let verdict = verdict(checks);
                    let reply = session.client_checked(verdict.clone());
                    check_reply(&reply);
                    let expected = match verdict {
                        ClientVerdict::Accept => 250,
                        ClientVerdict::Defer { .. } => 451,
                    };
                    assert_eq!(reply.code, expected, "the reply to {verdict:?}");
                    events.push(Event::Reply(reply));
                }
                Action::StartTls => {
                    assert!(
                        config.starttls_available,
                        "StartTls without STARTTLS offered"
                    );
                    assert!(!session.is_tls(), "StartTls on an encrypted session");
                    buf.clear();
                    session.tls_started();
                    events.push(Event::StartTls);
                }
                Action::Close => {
                    events.push(Event::Close);
                    assert_eq!(
                        session.next_action(&mut buf),
                        Action::Close,
                        "a closed session came back to life"
                    );
                    break 'feed;
                }
            }
        }
    }
    Summary { events }
}

/// How many messages the client can have finished: each `<LF>.<CRLF>` (the end of `DATA`; the LF
/// may end a command line) and each `LAST` (of `BDAT`), in any case, overlapping allowed.
fn ends_of_message(seen: &[u8]) -> usize {
    let data = seen.windows(4).filter(|w| w == b"\n.\r\n").count();
    let bdat = seen
        .windows(4)
        .filter(|w| w.eq_ignore_ascii_case(b"LAST"))
        .count();
    data + bdat
}

/// How many times the client can have greeted: each `EHLO` or `HELO`, in any case.
fn greetings(seen: &[u8]) -> usize {
    seen.windows(4)
        .filter(|w| w.eq_ignore_ascii_case(b"EHLO") || w.eq_ignore_ascii_case(b"HELO"))
        .count()
}

fn check_reply(reply: &Reply) {
    assert!(
        (200..600).contains(&reply.code),
        "reply code {} out of range",
        reply.code
    );
    if let Some((class, _, _)) = reply.enhanced {
        assert!(
            matches!(class, 2 | 4 | 5) && u16::from(class) == reply.code / 100,
            "enhanced code class {class} on a {} reply",
            reply.code
        );
    }
    let wire = reply.to_bytes();
    let mut batched = BytesMut::from(&b"prefix"[..]);
    reply.write_to(&mut batched);
    assert_eq!(&batched[6..], &wire[..], "write_to and to_bytes differ");
    assert!(
        wire.ends_with(b"\r\n"),
        "reply not CRLF-terminated: {wire:?}"
    );
    let text = std::str::from_utf8(&wire).expect("replies are UTF-8");
    let lines: Vec<&str> = text.split_terminator("\r\n").collect();
    assert_eq!(
        lines.len(),
        reply.lines.len().max(1),
        "line count of {text:?}"
    );
    let code = format!("{:03}", reply.code);
    for (i, line) in lines.iter().enumerate() {
        assert!(
            !line.contains(['\r', '\n']),
            "a bare CR or LF in reply line {line:?}"
        );
        assert!(
            line.len() + 2 <= MAX_REPLY_LINE,
            "reply line of {} octets",
            line.len() + 2
        );
        assert!(line.starts_with(&code), "line {line:?} of a {code} reply");
        let separator = line.as_bytes().get(3).copied();
        if i + 1 < lines.len() {
            assert_eq!(separator, Some(b'-'), "continuation line {line:?}");
        } else {
            assert!(matches!(separator, None | Some(b' ')), "last line {line:?}");
        }
    }
}

fn check_transaction(config: &SessionConfig, session: &Session, tx: &Transaction) {
    assert!(!tx.rcpt_to.is_empty(), "delivered without recipients");
    assert!(
        !tx.mailboxes.is_empty() && tx.mailboxes.len() <= tx.rcpt_to.len(),
        "{} mailboxes for {} recipients",
        tx.mailboxes.len(),
        tx.rcpt_to.len()
    );
    assert!(
        tx.rcpt_to.len() <= config.max_recipients,
        "{} recipients",
        tx.rcpt_to.len()
    );
    assert!(!tx.helo.is_empty(), "delivered without a greeting");
    assert!(
        tx.body.len() <= config.max_message_size,
        "a body of {} octets",
        tx.body.len()
    );
    assert!(!tx.body.contains(&0), "a body with NUL");
    assert_eq!(tx.tls, session.is_tls(), "the transaction's TLS flag");
    let id: MessageId = ID.parse().expect("a valid message id");
    let envelope = tx.envelope(id, 1);
    let headers = envelope.to_headers();
    let back = Envelope::from_headers(&headers).expect("the envelope headers parse");
    assert_eq!(back.id, envelope.id);
    assert_eq!(back.mailboxes, envelope.mailboxes);
    assert_eq!(back.rcpt_to.len(), envelope.rcpt_to.len());
    assert_eq!(back.size, tx.body.len() as u64);
    for value in [&back.helo, &back.mail_from]
        .into_iter()
        .chain(&back.rcpt_to)
    {
        assert!(
            !value.contains(['\r', '\n', '\0']),
            "a line break in an envelope header: {value:?}"
        );
    }
}
