//! Session tests: whole conversations, driven the way the I/O loop drives a session.
//!
//! The [`Client`] harness plays the caller: it appends bytes, calls `next_action` until the session
//! needs more input, answers `Deliver` with an outcome, and checks the one promise the caller
//! relies on without looking: the buffer stays under `max_buffer()` whenever more input is asked
//! for.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use bytes::BytesMut;
use maildrop_contract::{Mailbox, MessageId};

use super::*;

const ID: &str = "01ARZ3NDEKTSV4RRFFQ69G5FAV";
const PEER: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7));

fn config() -> SessionConfig {
    SessionConfig {
        domains: vec!["maildrop.localhost".into(), "example.test".into()],
        ..SessionConfig::default()
    }
}

fn small(max_message_size: usize) -> SessionConfig {
    SessionConfig {
        max_message_size,
        ..config()
    }
}

fn with_tls() -> SessionConfig {
    SessionConfig {
        starttls_available: true,
        ..config()
    }
}

fn with_check() -> SessionConfig {
    SessionConfig {
        check_client: true,
        ..config()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Event {
    Reply(Reply),
    Deliver(Transaction),
    StartTls,
    CheckClient { client_ip: IpAddr, helo: String },
    Close,
}

struct Client {
    session: Session,
    buf: BytesMut,
    outcome: DeliveryOutcome,
    /// The answer to every `CheckClient`.
    verdict: ClientVerdict,
}

impl Client {
    fn new() -> Self {
        Self::with(config())
    }

    fn with(config: SessionConfig) -> Self {
        Self {
            session: Session::new(Arc::new(config), PEER),
            buf: BytesMut::new(),
            outcome: DeliveryOutcome::Accepted {
                id: ID.parse().unwrap(),
            },
            verdict: ClientVerdict::Accept,
        }
    }

    /// A client that has said `EHLO`.
    fn greeted(config: SessionConfig) -> Self {
        let mut client = Self::with(config);
        assert_eq!(codes(&client.send("EHLO client.example\r\n")), [250]);
        client
    }

    fn send(&mut self, input: impl AsRef<[u8]>) -> Vec<Event> {
        self.buf.extend_from_slice(input.as_ref());
        self.run()
    }

    fn run(&mut self) -> Vec<Event> {
        let mut events = Vec::new();
        loop {
            match self.session.next_action(&mut self.buf) {
                Action::NeedMoreInput => {
                    assert!(self.buf.len() < self.session.max_buffer(), "buffer grew");
                    return events;
                }
                Action::Reply(reply) => events.push(Event::Reply(reply)),
                Action::Deliver(tx) => {
                    events.push(Event::Deliver(tx));
                    let reply = self.session.delivered(self.outcome.clone());
                    events.push(Event::Reply(reply));
                }
                Action::StartTls => {
                    events.push(Event::StartTls);
                    return events;
                }
                Action::CheckClient { client_ip, helo } => {
                    events.push(Event::CheckClient { client_ip, helo });
                    let reply = self.session.client_checked(self.verdict.clone());
                    events.push(Event::Reply(reply));
                }
                Action::Close => {
                    events.push(Event::Close);
                    return events;
                }
            }
        }
    }

    /// What the caller does on `StartTls`: upgrade, drop the buffer, tell the session.
    fn upgrade(&mut self) -> Vec<Event> {
        self.buf.clear();
        self.session.tls_started();
        self.run()
    }
}

fn codes(events: &[Event]) -> Vec<u16> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Reply(r) => Some(r.code),
            _ => None,
        })
        .collect()
}

fn enhanced(events: &[Event]) -> Vec<Option<(u8, u16, u16)>> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Reply(r) => Some(r.enhanced),
            _ => None,
        })
        .collect()
}

fn deliveries(events: &[Event]) -> Vec<&Transaction> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Deliver(tx) => Some(tx),
            _ => None,
        })
        .collect()
}

fn last_reply(events: &[Event]) -> &Reply {
    events
        .iter()
        .rev()
        .find_map(|e| match e {
            Event::Reply(r) => Some(r),
            _ => None,
        })
        .expect("a reply")
}

const ENVELOPE: &str =
    "MAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@maildrop.localhost>\r\nDATA\r\n";

// --- Whole transactions -------------------------------------------------------------------------

#[test]
fn greeting_names_the_host() {
    let session = Session::new(Arc::new(config()), PEER);
    assert_eq!(
        &session.greeting().to_bytes()[..],
        b"220 maildrop.localhost ESMTP Maildrop\r\n"
    );
}

#[test]
fn a_full_transaction() {
    let mut c = Client::new();
    assert_eq!(codes(&c.send("EHLO client.example\r\n")), [250]);
    assert_eq!(codes(&c.send("MAIL FROM:<alice@example.org>\r\n")), [250]);
    assert_eq!(
        codes(&c.send("RCPT TO:<Bob@Maildrop.Localhost>\r\n")),
        [250]
    );
    let events = c.send("DATA\r\n");
    assert_eq!(
        events,
        [Event::Reply(Reply::plain(
            354,
            "End data with <CR><LF>.<CR><LF>"
        ))]
    );
    assert!(c.send("Subject: hi\r\n\r\nHello.\r\n").is_empty());
    let events = c.send(".\r\n");
    let tx = deliveries(&events)[0];
    assert_eq!(tx.client_ip, PEER);
    assert_eq!(tx.helo, "client.example");
    assert_eq!(tx.mail_from, "alice@example.org");
    assert_eq!(tx.rcpt_to, ["Bob@Maildrop.Localhost"]);
    assert_eq!(tx.mailboxes, [Mailbox::parse("bob").unwrap()]);
    assert_eq!(&tx.body[..], b"Subject: hi\r\n\r\nHello.\r\n");
    assert!(!tx.tls && !tx.body_8bit && !tx.smtputf8);
    assert_eq!(
        &last_reply(&events).to_bytes()[..],
        format!("250 2.0.0 Ok: queued as {ID}\r\n").as_bytes()
    );
    let events = c.send("QUIT\r\n");
    assert_eq!(codes(&events), [221]);
    assert_eq!(events.last(), Some(&Event::Close));
    assert_eq!(c.send("NOOP\r\n"), [Event::Close]);
}

#[test]
fn the_transaction_becomes_an_envelope() {
    let mut c = Client::greeted(config());
    let events = c.send(format!("{ENVELOPE}abc\r\n.\r\n"));
    let id: MessageId = ID.parse().unwrap();
    let envelope = deliveries(&events)[0].envelope(id, 1_700_000_000_000);
    assert_eq!(envelope.id, id);
    assert_eq!(envelope.client_ip, PEER);
    assert_eq!(envelope.helo, "client.example");
    assert_eq!(envelope.mail_from, "alice@example.org");
    assert_eq!(envelope.rcpt_to, ["bob@maildrop.localhost"]);
    assert_eq!(envelope.mailboxes, [Mailbox::parse("bob").unwrap()]);
    assert_eq!(envelope.received_ms, 1_700_000_000_000);
    assert_eq!(envelope.size, 5);
}

#[test]
fn pipelined_commands_are_answered_in_order() {
    let mut c = Client::greeted(config());
    let events = c.send(
        "MAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@maildrop.localhost>\r\n\
         RCPT TO:<nobody@elsewhere.example>\r\nDATA\r\n",
    );
    assert_eq!(codes(&events), [250, 250, 550, 354]);
    let events = c.send("x\r\n.\r\nMAIL FROM:<>\r\nRCPT TO:<carol@example.test>\r\nDATA\r\n");
    assert_eq!(codes(&events), [250, 250, 250, 354]);
    assert_eq!(deliveries(&events)[0].rcpt_to, ["bob@maildrop.localhost"]);
}

/// A conversation with everything in it that a byte boundary could break.
const SCRIPT: &[u8] = b"EHLO client.example\r\n\
MAIL FROM:<alice@example.org> BODY=8BITMIME SIZE=40\r\n\
RCPT TO:<bob@maildrop.localhost>\r\n\
RCPT TO:<Bob+x@Example.Test>\r\n\
DATA\r\n\
Subject: hi\r\n\r\n..dots\r\n.\r\n\
MAIL FROM:<>\r\n\
RCPT TO:<carol@maildrop.localhost>\r\n\
BDAT 5\r\nab\r\nc\
BDAT 0 LAST\r\n\
NOOP\r\n\
FROB\r\n\
RSET\r\n\
QUIT\r\n";

#[test]
fn input_split_anywhere_gives_the_same_conversation() {
    let whole = Client::new().send(SCRIPT);
    assert_eq!(
        codes(&whole),
        [
            250, 250, 250, 250, 354, 250, 250, 250, 250, 250, 250, 500, 250, 221
        ]
    );
    let txs = deliveries(&whole);
    assert_eq!(&txs[0].body[..], b"Subject: hi\r\n\r\n.dots\r\n");
    assert!(txs[0].body_8bit);
    assert_eq!(txs[0].mailboxes.len(), 1);
    assert_eq!(&txs[1].body[..], b"ab\r\nc");
    assert_eq!(whole.last(), Some(&Event::Close));

    for size in [1, 2, 3, 5, 7, 64] {
        let mut c = Client::new();
        let mut events = Vec::new();
        for piece in SCRIPT.chunks(size) {
            events.extend(c.send(piece));
        }
        assert_eq!(events, whole, "pieces of {size}");
    }
}

// --- DATA bodies --------------------------------------------------------------------------------

#[test]
fn dots_are_unstuffed() {
    let mut c = Client::greeted(config());
    let events = c.send(format!(
        "{ENVELOPE}..leading\r\n.gone\r\n..\r\nmid.dle\r\n.\r\n"
    ));
    assert_eq!(
        &deliveries(&events)[0].body[..],
        b".leading\r\ngone\r\n.\r\nmid.dle\r\n"
    );
}

#[test]
fn the_end_of_data_may_arrive_in_pieces() {
    let mut c = Client::greeted(config());
    assert_eq!(codes(&c.send(format!("{ENVELOPE}body"))), [250, 250, 354]);
    for piece in ["\r", "\n", ".", "\r"] {
        assert!(c.send(piece).is_empty(), "ended early at {piece:?}");
    }
    let events = c.send("\n");
    assert_eq!(&deliveries(&events)[0].body[..], b"body\r\n");
}

#[test]
fn an_empty_message_is_delivered() {
    let mut c = Client::greeted(config());
    let events = c.send(format!("{ENVELOPE}.\r\n"));
    assert!(deliveries(&events)[0].body.is_empty());
}

#[test]
fn smuggled_ends_of_data_never_start_a_second_transaction() {
    for fake in [
        "\n.\n", "\r.\r", "\n.\r\n", "\r\n.\n", "\r\n.\r", "\r.\r\n", "\n.\r",
    ] {
        let mut c = Client::greeted(config());
        let events = c.send(format!(
            "{ENVELOPE}Subject: innocent\r\n\r\nhi{fake}\
             MAIL FROM:<ceo@bank.example>\r\nRCPT TO:<victim@maildrop.localhost>\r\nDATA\r\n\
             Subject: forged\r\n\r\nsmuggled\r\n.\r\nNOOP\r\n"
        ));
        assert!(
            deliveries(&events).is_empty(),
            "{fake:?} delivered something"
        );
        assert_eq!(codes(&events), [250, 250, 354, 550, 250], "{fake:?}");
        assert_eq!(enhanced(&events)[3], Some((5, 6, 11)), "{fake:?}");
        // The session is in step again and can take a clean message.
        let events = c.send(format!("{ENVELOPE}clean\r\n.\r\n"));
        assert_eq!(deliveries(&events).len(), 1);
    }
}

#[test]
fn a_bare_lf_or_cr_anywhere_refuses_the_message() {
    for body in [
        "line\nline\r\n",
        "line\rline\r\n",
        "ends with bare lf\n",
        "\r",
    ] {
        let mut c = Client::greeted(config());
        let events = c.send(format!("{ENVELOPE}{body}\r\n.\r\n"));
        assert!(deliveries(&events).is_empty(), "{body:?}");
        assert_eq!(last_reply(&events).code, 550, "{body:?}");
    }
}

#[test]
fn nul_bytes_refuse_the_message() {
    let mut c = Client::greeted(config());
    let events = c.send(format!("{ENVELOPE}a\0b\r\n.\r\n"));
    assert!(deliveries(&events).is_empty());
    assert_eq!(enhanced(&events).last(), Some(&Some((5, 6, 0))));
}

#[test]
fn long_body_lines_are_accepted_without_buffering_them() {
    let mut c = Client::greeted(config());
    c.send(ENVELOPE);
    let line = "x".repeat(5000);
    for _ in 0..4 {
        assert!(c.send(&line).is_empty());
        assert!(c.buf.is_empty());
    }
    let events = c.send("\r\n.\r\n");
    assert_eq!(deliveries(&events)[0].body.len(), 20_002);
}

#[test]
fn an_oversize_message_is_refused_and_the_next_one_goes_through() {
    let mut c = Client::greeted(small(100));
    let big = format!("{}\r\n", "y".repeat(98));
    let events = c.send(format!("{ENVELOPE}{big}..{big}.\r\n"));
    assert!(deliveries(&events).is_empty());
    assert_eq!(codes(&events), [250, 250, 354, 552]);
    assert_eq!(enhanced(&events)[3], Some((5, 3, 4)));
    let events = c.send(format!("{ENVELOPE}{big}.\r\n"));
    assert_eq!(deliveries(&events)[0].body.len(), 100);
    assert_eq!(c.session.bad_commands(), 0);
}

#[test]
fn a_declared_size_over_the_limit_is_refused_up_front() {
    let mut c = Client::greeted(small(100));
    let events =
        c.send("MAIL FROM:<a@example.org> SIZE=101\r\nMAIL FROM:<a@example.org> SIZE=100\r\n");
    assert_eq!(codes(&events), [552, 250]);
    assert_eq!(enhanced(&events)[0], Some((5, 3, 4)));
}

#[test]
fn delivery_outcomes_become_replies() {
    let cases = [
        (DeliveryOutcome::TemporaryFailure, 451, (4, 3, 0)),
        (
            DeliveryOutcome::Rejected {
                reason: "No thanks".into(),
            },
            554,
            (5, 7, 1),
        ),
    ];
    for (outcome, code, status) in cases {
        let mut c = Client::greeted(config());
        c.outcome = outcome;
        let events = c.send(format!("{ENVELOPE}x\r\n.\r\nNOOP\r\n"));
        assert_eq!(codes(&events), [250, 250, 354, code, 250]);
        assert_eq!(enhanced(&events)[3], Some(status));
    }
}

#[test]
fn parsing_waits_for_the_delivery_outcome() {
    let mut c = Client::greeted(config());
    let mut buf = BytesMut::from(format!("{ENVELOPE}x\r\n.\r\nQUIT\r\n").as_str());
    let mut actions = Vec::new();
    loop {
        match c.session.next_action(&mut buf) {
            Action::Deliver(_) => break,
            action => actions.push(action),
        }
    }
    assert_eq!(actions.len(), 3);
    assert_eq!(&buf[..], b"QUIT\r\n", "pipelined commands wait");
    // A caller that forgets delivered() is stopped rather than humoured.
    assert_eq!(c.session.next_action(&mut buf), Action::Close);
}

// --- Envelope rules -----------------------------------------------------------------------------

#[test]
fn commands_out_of_sequence() {
    let mut c = Client::new();
    let events = c.send(
        "MAIL FROM:<a@example.org>\r\nRCPT TO:<bob@maildrop.localhost>\r\nDATA\r\n\
         BDAT 6\r\nQUIT\r\nNOOP\r\nRSET\r\nVRFY bob\r\nHELP\r\nEXPN list\r\n",
    );
    assert_eq!(
        codes(&events),
        [503, 503, 503, 503, 250, 250, 252, 214, 502]
    );
    assert_eq!(enhanced(&events)[..4], [Some((5, 5, 1)); 4]);
    assert!(
        !events.contains(&Event::Close),
        "the QUIT inside the chunk was not executed"
    );

    let mut c = Client::greeted(config());
    let events = c.send(
        "MAIL FROM:<a@example.org>\r\nMAIL FROM:<b@example.org>\r\nDATA\r\n\
         RCPT TO:<bob@maildrop.localhost>\r\nDATA\r\n",
    );
    assert_eq!(codes(&events), [250, 503, 554, 250, 354]);
}

#[test]
fn rset_clears_the_transaction_but_not_the_greeting() {
    let mut c = Client::greeted(config());
    let events = c.send(
        "MAIL FROM:<a@example.org>\r\nRCPT TO:<bob@maildrop.localhost>\r\nRSET\r\n\
         RCPT TO:<bob@maildrop.localhost>\r\nRSET x\r\n",
    );
    assert_eq!(codes(&events), [250, 250, 250, 503, 501]);
    let events = c.send(
        "MAIL FROM:<b@example.org>\r\nRCPT TO:<carol@maildrop.localhost>\r\nDATA\r\nx\r\n.\r\n",
    );
    let tx = deliveries(&events)[0];
    assert_eq!(
        (tx.mail_from.as_str(), tx.helo.as_str()),
        ("b@example.org", "client.example")
    );
    assert_eq!(tx.rcpt_to, ["carol@maildrop.localhost"]);
}

#[test]
fn a_second_greeting_resets_the_transaction() {
    let mut c = Client::greeted(config());
    let events = c.send(
        "MAIL FROM:<a@example.org>\r\nRCPT TO:<bob@maildrop.localhost>\r\nHELO again.example\r\nDATA\r\n",
    );
    assert_eq!(codes(&events), [250, 250, 250, 503]);
    let events = c.send(format!("{ENVELOPE}x\r\n.\r\n"));
    assert_eq!(deliveries(&events)[0].helo, "again.example");
}

#[test]
fn ehlo_advertises_extensions() {
    let mut c = Client::with(with_tls());
    let events = c.send("EHLO client.example\r\nHELO\r\nEHLO\r\nHELO client.example\r\n");
    assert_eq!(
        String::from_utf8(last_reply(&events[..1]).to_bytes().to_vec()).unwrap(),
        "250-maildrop.localhost\r\n250-PIPELINING\r\n250-SIZE 10485760\r\n250-8BITMIME\r\n\
         250-SMTPUTF8\r\n250-ENHANCEDSTATUSCODES\r\n250-CHUNKING\r\n250 STARTTLS\r\n"
    );
    assert_eq!(codes(&events), [250, 501, 501, 250]);
    assert_eq!(
        &last_reply(&events).to_bytes()[..],
        b"250 maildrop.localhost\r\n"
    );

    let events = Client::new().send("EHLO client.example\r\n");
    assert!(!last_reply(&events).lines.contains(&"STARTTLS".to_owned()));
}

#[test]
fn the_null_sender_is_allowed() {
    let mut c = Client::greeted(config());
    let events =
        c.send("MAIL FROM:<>\r\nRCPT TO:<bob@maildrop.localhost>\r\nDATA\r\nbounce\r\n.\r\n");
    assert_eq!(deliveries(&events)[0].mail_from, "");
}

#[test]
fn mail_parameters() {
    let mut c = Client::greeted(config());
    let cases = [
        (
            "MAIL FROM:<a@example.org> SIZE=10 BODY=7BIT",
            250,
            (2, 1, 0),
        ),
        ("MAIL FROM:<a@example.org> SIZE=ten", 501, (5, 5, 4)),
        ("MAIL FROM:<a@example.org> SIZE=+10", 501, (5, 5, 4)),
        ("MAIL FROM:<a@example.org> SIZE", 501, (5, 5, 4)),
        ("MAIL FROM:<a@example.org> BODY=BINARYMIME", 555, (5, 5, 4)),
        ("MAIL FROM:<a@example.org> SMTPUTF8=yes", 501, (5, 5, 4)),
        ("MAIL FROM:<a@example.org> RET=HDRS", 555, (5, 5, 4)),
        ("MAIL FROM:<a@example.org> BAD=", 501, (5, 5, 4)),
        ("MAIL FROM:a@example.org", 501, (5, 1, 7)),
        ("MAIL FROM:<a@>", 501, (5, 1, 7)),
        ("MAIL TO:<a@example.org>", 501, (5, 5, 4)),
        ("MAIL FROM: <a@example.org>", 250, (2, 1, 0)),
        (
            "mail from:<a@example.org> body=8bitmime smtputf8",
            250,
            (2, 1, 0),
        ),
    ];
    for (line, code, status) in cases {
        let events = c.send(format!("{line}\r\n"));
        assert_eq!(
            (codes(&events), enhanced(&events)),
            (vec![code], vec![Some(status)]),
            "{line}"
        );
        c.send("RSET\r\n");
    }
    let events = c.send(
        "MAIL FROM:<a@example.org> BODY=8BITMIME SMTPUTF8\r\nRCPT TO:<bob@maildrop.localhost>\r\nDATA\r\nx\r\n.\r\n",
    );
    let tx = deliveries(&events)[0];
    assert!(tx.body_8bit && tx.smtputf8);
}

#[test]
fn rcpt_parameters_are_refused() {
    let mut c = Client::greeted(config());
    let events = c.send(
        "MAIL FROM:<a@example.org>\r\nRCPT TO:<bob@maildrop.localhost> NOTIFY=NEVER\r\n\
         RCPT TO:<bob@maildrop.localhost> =\r\nRCPT <bob@maildrop.localhost>\r\n",
    );
    assert_eq!(codes(&events), [250, 555, 501, 501]);
}

#[test]
fn recipients_are_checked() {
    let mut c = Client::greeted(config());
    c.send("MAIL FROM:<a@example.org>\r\n");
    let long = "a".repeat(65);
    let ok = "b".repeat(64);
    let cases = [
        ("<bob@maildrop.localhost>".to_owned(), 250, (2, 1, 5)),
        ("<BOB@MAILDROP.LOCALHOST>".to_owned(), 250, (2, 1, 5)),
        ("<Bob+GitHub@example.test>".to_owned(), 250, (2, 1, 5)),
        (
            "<@relay.example,@other.example:carol@maildrop.localhost>".to_owned(),
            250,
            (2, 1, 5),
        ),
        ("<Postmaster>".to_owned(), 250, (2, 1, 5)),
        ("<bob@elsewhere.example>".to_owned(), 550, (5, 7, 1)),
        (
            "<bob@maildrop.localhost.elsewhere.example>".to_owned(),
            550,
            (5, 7, 1),
        ),
        ("<bob@[127.0.0.1]>".to_owned(), 550, (5, 7, 1)),
        (
            "<\"john doe\"@maildrop.localhost>".to_owned(),
            553,
            (5, 1, 3),
        ),
        (
            "<\"john doe\"@elsewhere.example>".to_owned(),
            550,
            (5, 7, 1),
        ),
        (format!("<{long}@maildrop.localhost>"), 553, (5, 1, 3)),
        (format!("<{ok}@maildrop.localhost>"), 250, (2, 1, 5)),
        ("<bob*x@maildrop.localhost>".to_owned(), 553, (5, 1, 3)),
        ("<+tag@maildrop.localhost>".to_owned(), 553, (5, 1, 3)),
        ("<bob>".to_owned(), 501, (5, 1, 3)),
        ("<>".to_owned(), 501, (5, 1, 3)),
        ("bob@maildrop.localhost".to_owned(), 501, (5, 1, 3)),
        ("<bøb@maildrop.localhost>".to_owned(), 553, (5, 6, 7)),
    ];
    for (path, code, status) in &cases {
        let events = c.send(format!("RCPT TO:{path}\r\n"));
        assert_eq!(
            (codes(&events), enhanced(&events)),
            (vec![*code], vec![Some(*status)]),
            "{path}"
        );
    }
    let events = c.send("DATA\r\nx\r\n.\r\n");
    let tx = deliveries(&events)[0];
    assert_eq!(
        tx.rcpt_to,
        [
            "bob@maildrop.localhost",
            "BOB@MAILDROP.LOCALHOST",
            "Bob+GitHub@example.test",
            "carol@maildrop.localhost",
            "Postmaster",
            &format!("{ok}@maildrop.localhost"),
        ]
    );
    let names: Vec<&str> = tx.mailboxes.iter().map(|m| m.as_str()).collect();
    assert_eq!(names, ["bob", "carol", "postmaster", ok.as_str()]);
}

#[test]
fn smtputf8_addresses() {
    let mut c = Client::greeted(config());
    let events = c.send(
        "MAIL FROM:<jøran@bücher.example>\r\n\
         MAIL FROM:<jøran@bücher.example> SMTPUTF8\r\n\
         RCPT TO:<bøb@maildrop.localhost>\r\n\
         RCPT TO:<bob@maildrop.localhost>\r\nDATA\r\nx\r\n.\r\n",
    );
    assert_eq!(codes(&events), [553, 250, 553, 250, 354, 250]);
    assert_eq!(enhanced(&events)[0], Some((5, 6, 7)));
    assert_eq!(
        enhanced(&events)[2],
        Some((5, 1, 3)),
        "not a mailbox name, even under SMTPUTF8"
    );
    let tx = deliveries(&events)[0];
    assert_eq!(tx.mail_from, "jøran@bücher.example");
    assert!(tx.smtputf8);
}

#[test]
fn quoted_senders_are_recorded_as_written() {
    let mut c = Client::greeted(config());
    let events = c.send(
        "MAIL FROM:<\"john doe\"@example.org>\r\nRCPT TO:<bob@maildrop.localhost>\r\nDATA\r\nx\r\n.\r\n",
    );
    assert_eq!(deliveries(&events)[0].mail_from, "\"john doe\"@example.org");
}

#[test]
fn the_101st_recipient_is_deferred() {
    let mut c = Client::greeted(config());
    let mut input = String::from("MAIL FROM:<a@example.org>\r\n");
    for i in 0..101 {
        input.push_str(&format!("RCPT TO:<r{i}@maildrop.localhost>\r\n"));
    }
    let events = c.send(&input);
    let codes = codes(&events);
    assert_eq!(codes.len(), 102);
    assert!(codes[..101].iter().all(|&c| c == 250));
    assert_eq!(
        last_reply(&events),
        &Reply::new(452, (4, 5, 3), "Too many recipients")
    );
    let events = c.send("DATA\r\nx\r\n.\r\n");
    let tx = deliveries(&events)[0];
    assert_eq!((tx.rcpt_to.len(), tx.mailboxes.len()), (100, 100));
    assert_eq!(c.session.bad_commands(), 0);
}

// --- Command lines and limits -------------------------------------------------------------------

#[test]
fn commands_ignore_case() {
    let mut c = Client::new();
    let events = c.send(
        "ehlo x\r\nmAiL fRoM:<a@example.org>\r\nrcpt to:<bob@maildrop.localhost>\r\ndata\r\nx\r\n.\r\nquit\r\n",
    );
    assert_eq!(codes(&events), [250, 250, 250, 354, 250, 221]);
}

#[test]
fn command_lines_may_end_in_a_bare_lf() {
    let mut c = Client::new();
    let events = c.send(
        "EHLO x\nMAIL FROM:<a@example.org>\nRCPT TO:<bob@maildrop.localhost>\nDATA\nx\r\n.\r\n",
    );
    assert_eq!(deliveries(&events).len(), 1);
}

#[test]
fn control_characters_and_bad_utf8_in_commands_are_refused() {
    let mut c = Client::greeted(config());
    let events = c.send(b"NOOP\rRSET\r\nMAIL FROM:<\xff@example.org>\r\nVRFY \0\r\n");
    assert_eq!(codes(&events), [500, 500, 500]);
    assert_eq!(enhanced(&events), [Some((5, 5, 2)); 3]);
}

#[test]
fn unknown_commands_and_simple_verbs() {
    let mut c = Client::new();
    let events = c.send("HELP\r\n");
    assert!(!last_reply(&events).text().contains("STARTTLS"));
    let events =
        c.send("FROB\r\n\r\nNOOP anything\r\nVRFY\r\nVRFY bob\r\nEXPN staff\r\nHELP me\r\n");
    assert_eq!(codes(&events), [500, 500, 250, 501, 252, 502, 214]);
    assert_eq!(enhanced(&events)[0], Some((5, 5, 1)));
    assert_eq!(enhanced(&events)[4], Some((2, 5, 0)));
    assert_eq!(c.session.bad_commands(), 4);
}

#[test]
fn too_many_bad_commands_close_the_connection() {
    let mut c = Client::greeted(config());
    let events = c.send("FROB\r\n".repeat(20));
    assert_eq!(codes(&events), [500; 20]);
    assert_eq!(c.session.bad_commands(), 20);
    let events = c.send("FROB\r\nNOOP\r\n");
    assert_eq!(
        events,
        [
            Event::Reply(Reply::new(
                421,
                (4, 7, 0),
                "maildrop.localhost Error: too many errors"
            )),
            Event::Close
        ]
    );
    assert_eq!(c.session.bad_commands(), 21);
    assert_eq!(c.send("NOOP\r\n"), [Event::Close]);
}

#[test]
fn too_many_commands_close_the_connection() {
    let mut c = Client::with(SessionConfig {
        max_commands: 3,
        ..config()
    });
    let events = c.send("NOOP\r\n".repeat(4));
    assert_eq!(codes(&events), [250, 250, 250, 421]);
    assert_eq!(events.last(), Some(&Event::Close));
}

#[test]
fn long_command_lines_are_skipped() {
    let mut c = Client::greeted(config());
    let exact = format!("NOOP {}\r\n", "x".repeat(505));
    assert_eq!(exact.len(), 512);
    assert_eq!(codes(&c.send(&exact)), [250]);
    let over = format!("NOOP {}\r\n", "x".repeat(506));
    assert_eq!(codes(&c.send(format!("{over}NOOP\r\n"))), [500, 250]);

    // A line that arrives in pieces with no end in sight is dropped as it comes.
    assert!(c.send(format!("RCPT TO:<{}", "a".repeat(1000))).is_empty());
    assert!(c.buf.is_empty());
    assert!(c.send("b".repeat(10_000)).is_empty());
    let events = c.send(">\r\nNOOP\r\n");
    assert_eq!(codes(&events), [500, 250]);
    assert_eq!(enhanced(&events)[0], Some((5, 5, 2)));
    assert_eq!(c.session.bad_commands(), 2);
}

#[test]
fn http_on_the_smtp_port_is_hung_up_on() {
    let mut c = Client::new();
    let events = c.send("POST / HTTP/1.1\r\nHost: x\r\n\r\nMAIL FROM:<a@b.example>\r\n");
    assert_eq!(codes(&events), [421]);
    assert_eq!(events.last(), Some(&Event::Close));
}

#[test]
fn a_proxy_header_inside_the_session_is_hung_up_on() {
    let mut c = Client::new();
    let events = c.send("PROXY TCP4 198.51.100.1 192.0.2.1 4000 25\r\nEHLO x\r\n");
    assert_eq!(codes(&events), [421]);
    assert_eq!(enhanced(&events), [Some((4, 7, 0))]);
    assert_eq!(events.last(), Some(&Event::Close));

    // Also after a greeting: a client behind a trusted proxy sending its own header.
    let mut c = Client::greeted(config());
    let events = c.send("PROXY TCP4 198.51.100.1 192.0.2.1 4000 25\r\n");
    assert_eq!(codes(&events), [421]);
}

#[test]
fn a_proxy_v2_header_inside_the_session_ends_in_quit() {
    let mut c = Client::new();
    let mut header = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    header.extend_from_slice(&[
        0x21, 0x11, 0, 12, 198, 51, 100, 1, 192, 0, 2, 1, 0, 1, 0, 25,
    ]);
    let events = c.send(header);
    assert_eq!(events.last(), Some(&Event::Close));
    assert_eq!(codes(&events).last(), Some(&221));
}

#[test]
fn closing_replies() {
    let session = Session::new(Arc::new(config()), PEER);
    assert_eq!(
        (
            session.shutdown_reply().code,
            session.shutdown_reply().enhanced
        ),
        (421, Some((4, 3, 2)))
    );
    assert_eq!(
        (
            session.timeout_reply().code,
            session.timeout_reply().enhanced
        ),
        (421, Some((4, 4, 2)))
    );
}

// --- BDAT ---------------------------------------------------------------------------------------

const MAIL_RCPT: &str = "MAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@maildrop.localhost>\r\n";

#[test]
fn bdat_chunks_are_binary_and_joined() {
    let mut c = Client::greeted(config());
    let events = c.send(format!(
        "{MAIL_RCPT}BDAT 9\r\nab\r\n.\r\nxyBDAT 6 LAST\r\n\nz\r.\r\n"
    ));
    assert_eq!(codes(&events), [250, 250, 250, 250]);
    assert_eq!(
        events[2],
        Event::Reply(Reply::new(250, (2, 0, 0), "9 octets received"))
    );
    assert_eq!(&deliveries(&events)[0].body[..], b"ab\r\n.\r\nxy\nz\r.\r\n");
}

#[test]
fn bdat_zero_last() {
    let mut c = Client::greeted(config());
    let events = c.send(format!("{MAIL_RCPT}BDAT 0 LAST\r\n"));
    assert!(deliveries(&events)[0].body.is_empty());
    let events = c.send(format!("{MAIL_RCPT}BDAT 3\r\nabcBDAT 0\r\nBDAT 0 last\r\n"));
    assert_eq!(codes(&events), [250, 250, 250, 250, 250]);
    assert_eq!(&deliveries(&events)[0].body[..], b"abc");
}

#[test]
fn a_bdat_chunk_may_arrive_in_pieces() {
    let mut c = Client::greeted(config());
    assert_eq!(
        codes(&c.send(format!("{MAIL_RCPT}BDAT 10 LAST\r\nabc"))),
        [250, 250]
    );
    assert!(c.buf.is_empty());
    let events = c.send("defghijNOOP\r\n");
    assert_eq!(&deliveries(&events)[0].body[..], b"abcdefghij");
    assert_eq!(codes(&events), [250, 250]);
}

#[test]
fn data_and_bdat_do_not_mix() {
    let mut c = Client::greeted(config());
    let events = c.send(format!("{MAIL_RCPT}BDAT 2\r\nabDATA\r\nRCPT TO:<carol@maildrop.localhost>\r\nMAIL FROM:<>\r\nBDAT 1 LAST\r\nc"));
    assert_eq!(codes(&events), [250, 250, 250, 503, 503, 503, 250]);
    assert_eq!(&deliveries(&events)[0].body[..], b"abc");
    assert_eq!(deliveries(&events)[0].rcpt_to.len(), 1);
}

#[test]
fn bdat_over_the_limit_is_read_dropped_and_refused() {
    let mut c = Client::greeted(small(100));
    let chunk = "z".repeat(60);
    let events = c.send(format!(
        "{MAIL_RCPT}BDAT 60\r\n{chunk}BDAT 60\r\n{chunk}BDAT 12 LAST\r\nQUIT\r\nQUIT\r\n"
    ));
    assert_eq!(codes(&events), [250, 250, 250, 552, 503]);
    assert!(deliveries(&events).is_empty());
    assert_eq!(
        c.session.bad_commands(),
        0,
        "pipelined leftovers are not held against the client"
    );
    let events = c.send(format!("{MAIL_RCPT}BDAT 100 LAST\r\n{}", "z".repeat(100)));
    assert_eq!(deliveries(&events)[0].body.len(), 100);
}

#[test]
fn bdat_with_nul_is_refused() {
    let mut c = Client::greeted(config());
    let events = c.send(format!("{MAIL_RCPT}BDAT 3\r\na\0bBDAT 1 LAST\r\nc"));
    assert_eq!(codes(&events), [250, 250, 550, 503]);
    assert_eq!(enhanced(&events)[2], Some((5, 6, 0)));
}

#[test]
fn bdat_syntax_errors() {
    let mut c = Client::greeted(config());
    let events = c.send(format!(
        "{MAIL_RCPT}BDAT\r\nBDAT x\r\nBDAT -1\r\nBDAT 3 FIRST\r\nabcNOOP\r\nDATA\r\n"
    ));
    assert_eq!(codes(&events), [250, 250, 501, 501, 501, 501, 250, 503]);
    let events = c.send("MAIL FROM:<a@example.org>\r\nBDAT 3 LAST\r\nabcNOOP\r\n");
    assert_eq!(codes(&events), [250, 554, 250]);
}

// --- STARTTLS -----------------------------------------------------------------------------------

#[test]
fn starttls_discards_pipelined_plaintext_and_starts_over() {
    let mut c = Client::greeted(with_tls());
    let events =
        c.send("STARTTLS\r\nMAIL FROM:<evil@example.org>\r\nRCPT TO:<bob@maildrop.localhost>\r\n");
    assert_eq!(
        events,
        [
            Event::Reply(Reply::new(220, (2, 0, 0), "Ready to start TLS")),
            Event::StartTls
        ]
    );
    assert!(c.buf.is_empty(), "the session dropped the plaintext itself");
    assert!(c.upgrade().is_empty());
    assert!(c.session.is_tls());

    let events = c.send("MAIL FROM:<a@example.org>\r\nEHLO client.example\r\nSTARTTLS\r\n");
    assert_eq!(codes(&events), [503, 250, 503]);
    assert!(
        !last_reply(&events[..2])
            .lines
            .contains(&"STARTTLS".to_owned())
    );
    let events = c.send(format!("{ENVELOPE}x\r\n.\r\n"));
    assert!(deliveries(&events)[0].tls);
}

#[test]
fn the_session_waits_for_the_upgrade() {
    let mut c = Client::greeted(with_tls());
    c.send("STARTTLS\r\n");
    // Plaintext that arrives before the caller reports the upgrade is never parsed.
    let mut buf = BytesMut::from("NOOP\r\n");
    assert_eq!(c.session.next_action(&mut buf), Action::Close);
    assert!(buf.is_empty());
}

#[test]
fn plaintext_read_between_the_220_and_the_upgrade_is_dropped_too() {
    let mut c = Client::greeted(with_tls());
    let mut buf = BytesMut::from("STARTTLS\r\n");
    assert_eq!(
        c.session.next_action(&mut buf),
        Action::Reply(Reply::new(220, (2, 0, 0), "Ready to start TLS"))
    );
    buf.extend_from_slice(b"RCPT TO:<bob@maildrop.localhost>\r\n");
    assert_eq!(c.session.next_action(&mut buf), Action::StartTls);
    assert!(buf.is_empty());
}

#[test]
fn starttls_refusals() {
    let mut c = Client::greeted(config());
    assert_eq!(codes(&c.send("STARTTLS\r\n")), [502]);

    let mut c = Client::greeted(with_tls());
    assert!(
        last_reply(&c.send("HELP\r\n"))
            .text()
            .ends_with(" STARTTLS")
    );
    let events = c.send(format!("STARTTLS now\r\n{MAIL_RCPT}STARTTLS\r\nRSET\r\n"));
    assert_eq!(codes(&events), [501, 250, 250, 503, 250]);
}

#[test]
fn implicit_tls_is_a_session_that_starts_encrypted() {
    let mut c = Client::new();
    c.session.tls_started();
    let events = c.send(format!("EHLO x\r\n{ENVELOPE}x\r\n.\r\n"));
    assert!(deliveries(&events)[0].tls);
}

// --- What a reply answers ----------------------------------------------------------------------

#[test]
fn answered_names_the_command_of_each_reply() {
    let mut c = Client::new();
    let mut seen = Vec::new();
    c.buf.extend_from_slice(
        format!("EHLO x\r\nNOPE\r\n\x01\r\n{ENVELOPE}body\r\n.\r\nQUIT\r\n").as_bytes(),
    );
    loop {
        let action = c.session.next_action(&mut c.buf);
        seen.push(c.session.answered());
        match action {
            Action::Deliver(_) => {
                c.session.delivered(c.outcome.clone());
            }
            Action::Close | Action::NeedMoreInput => break,
            _ => {}
        }
    }
    assert_eq!(
        seen,
        [
            Some(Verb::Ehlo),
            Some(Verb::Unknown),
            None, // a line that does not parse answers no command
            Some(Verb::Mail),
            Some(Verb::Rcpt),
            Some(Verb::Data),
            None, // the delivery answers the body
            Some(Verb::Quit),
            None, // the Close after QUIT's reply
        ]
    );
}

// --- Client checks (greylisting) ----------------------------------------------------------------

fn checks(events: &[Event]) -> usize {
    events
        .iter()
        .filter(|e| matches!(e, Event::CheckClient { .. }))
        .count()
}

fn greylisted() -> ClientVerdict {
    ClientVerdict::Defer {
        reason: "Greylisted, please try again in 300 seconds".into(),
    }
}

#[test]
fn without_check_client_nothing_is_asked() {
    let mut c = Client::greeted(config());
    let events = c.send(format!("{ENVELOPE}x\r\n.\r\n"));
    assert_eq!(checks(&events), 0);
    assert_eq!(deliveries(&events).len(), 1);
}

#[test]
fn the_first_good_recipient_asks_once_per_greeting() {
    let mut c = Client::with(with_check());
    c.send("EHLO mx.example.org\r\n");
    let events = c.send(
        "MAIL FROM:<a@example.org>\r\nRCPT TO:<x@elsewhere.example>\r\n\
         RCPT TO:<a@maildrop.localhost>\r\nRCPT TO:<b@maildrop.localhost>\r\nDATA\r\nx\r\n.\r\n",
    );
    assert_eq!(
        events[2],
        Event::CheckClient {
            client_ip: PEER,
            helo: "mx.example.org".into()
        },
        "a relay attempt costs no lookup; the first good recipient asks"
    );
    assert_eq!(checks(&events), 1);
    assert_eq!(codes(&events), [250, 550, 250, 250, 354, 250]);
    assert_eq!(deliveries(&events)[0].rcpt_to.len(), 2);

    // Next transaction, same greeting: the verdict holds.
    let events = c.send(format!("{ENVELOPE}x\r\n.\r\n"));
    assert_eq!(checks(&events), 0);
    // A new greeting asks again, about the new name.
    let events = c.send(format!("EHLO other.example\r\n{ENVELOPE}x\r\n.\r\n"));
    assert_eq!(checks(&events), 1);
}

#[test]
fn a_deferred_client_gets_451_for_every_recipient_and_no_message() {
    let mut c = Client::with(with_check());
    c.verdict = greylisted();
    c.send("EHLO mx.example.org\r\n");
    let events = c.send(
        "MAIL FROM:<a@example.org>\r\nRCPT TO:<a@maildrop.localhost>\r\n\
         RCPT TO:<b@maildrop.localhost>\r\nDATA\r\n",
    );
    assert_eq!(checks(&events), 1);
    assert_eq!(codes(&events), [250, 451, 451, 554]);
    assert_eq!(
        &last_reply(&events[..3]).to_bytes()[..],
        b"451 4.7.1 Greylisted, please try again in 300 seconds\r\n"
    );
    assert_eq!(
        c.session.bad_commands(),
        0,
        "a deferral is not the client's error"
    );
    assert!(deliveries(&events).is_empty());
}

#[test]
fn pipelined_commands_wait_for_the_verdict() {
    let mut c = Client::with(with_check());
    c.send("EHLO x\r\n");
    c.buf
        .extend_from_slice(format!("{ENVELOPE}x\r\n.\r\n").as_bytes());
    assert_eq!(
        c.session.next_action(&mut c.buf),
        Action::Reply(reply::ok((2, 1, 0)))
    );
    assert!(matches!(
        c.session.next_action(&mut c.buf),
        Action::CheckClient { .. }
    ));
    assert_eq!(c.session.answered(), Some(Verb::Rcpt));
    let rest = c.buf.len();
    assert_eq!(
        c.session.client_checked(ClientVerdict::Accept),
        reply::ok((2, 1, 5))
    );
    assert_eq!(c.buf.len(), rest, "nothing was parsed while waiting");
    assert_eq!(codes(&c.run()), [354, 250]);
}

#[test]
fn next_action_before_the_verdict_is_a_caller_bug_and_closes() {
    let mut c = Client::with(with_check());
    c.send("EHLO x\r\nMAIL FROM:<a@example.org>\r\n");
    let mut buf = BytesMut::from("RCPT TO:<a@maildrop.localhost>\r\nNOOP\r\n");
    assert!(matches!(
        c.session.next_action(&mut buf),
        Action::CheckClient { .. }
    ));
    assert_eq!(c.session.next_action(&mut buf), Action::Close);
}

#[test]
fn a_verdict_nobody_asked_for_changes_nothing() {
    let mut c = Client::greeted(with_check());
    assert_eq!(c.session.client_checked(ClientVerdict::Accept).code, 503);
    let events = c.send(format!("{ENVELOPE}x\r\n.\r\n"));
    assert_eq!(checks(&events), 1);
}

#[test]
fn starttls_forgets_the_verdict() {
    let mut c = Client::with(SessionConfig {
        starttls_available: true,
        ..with_check()
    });
    c.verdict = greylisted();
    c.send(format!("EHLO x\r\n{MAIL_RCPT}RSET\r\nSTARTTLS\r\n"));
    c.upgrade();
    c.verdict = ClientVerdict::Accept;
    let events = c.send(format!("EHLO x\r\n{ENVELOPE}x\r\n.\r\n"));
    assert_eq!(checks(&events), 1);
    assert_eq!(deliveries(&events).len(), 1);
}
