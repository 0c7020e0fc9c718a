//! [`Session::attempt`]: what a refusal is recorded with (the ingest's rejection events).

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use bytes::BytesMut;

use super::*;

const PEER: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7));

fn session(config: SessionConfig) -> Session {
    Session::new(
        Arc::new(SessionConfig {
            domains: vec!["maildrop.test".into()],
            ..config
        }),
        PEER,
    )
}

/// Feeds `input` and returns each reply with the attempt as it was right after it.
fn drive(s: &mut Session, input: &[u8]) -> Vec<(Reply, Attempt)> {
    let mut buf = BytesMut::from(input);
    let mut out = Vec::new();
    loop {
        match s.next_action(&mut buf) {
            Action::Reply(r) => out.push((r, s.attempt())),
            Action::CheckClient { .. } => {
                let r = s.client_checked(ClientVerdict::Defer {
                    reason: "Greylisted".into(),
                });
                out.push((r, s.attempt()));
            }
            Action::NeedMoreInput | Action::Close => return out,
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[test]
fn a_refused_recipient_is_recorded_with_the_transaction() {
    let mut s = session(SessionConfig::default());
    let replies = drive(
        &mut s,
        b"EHLO mx.example\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<bob@maildrop.test>\r\nRCPT TO:<x@elsewhere.example> \r\n",
    );
    let (reply, attempt) = replies.last().unwrap();
    assert_eq!(reply.code, 550);
    assert_eq!(
        attempt,
        &Attempt {
            helo: Some("mx.example".into()),
            mail_from: Some("a@example.org".into()),
            rcpt_to: vec!["bob@maildrop.test".into(), "x@elsewhere.example".into()],
        }
    );
    // The next command's attempt no longer carries the refused recipient.
    let replies = drive(&mut s, b"NOOP\r\n");
    assert_eq!(replies[0].1.rcpt_to, ["bob@maildrop.test"]);
}

#[test]
fn a_refused_body_keeps_its_envelope_for_the_record() {
    let mut s = session(SessionConfig {
        max_message_size: 10,
        ..SessionConfig::default()
    });
    let replies = drive(
        &mut s,
        b"EHLO h\r\nMAIL FROM:<>\r\nRCPT TO:<bob@maildrop.test>\r\nDATA\r\nSubject: far too long\r\n\r\nbody\r\n.\r\n",
    );
    let (reply, attempt) = replies.last().unwrap();
    assert_eq!(reply.code, 552);
    assert_eq!(attempt.mail_from.as_deref(), Some(""));
    assert_eq!(attempt.rcpt_to, ["bob@maildrop.test"]);
}

#[test]
fn a_deferred_recipient_is_recorded() {
    let mut s = session(SessionConfig {
        check_client: true,
        ..SessionConfig::default()
    });
    let replies = drive(
        &mut s,
        b"EHLO h\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<bob@maildrop.test>\r\n",
    );
    let (reply, attempt) = replies.last().unwrap();
    assert_eq!(reply.code, 451);
    assert_eq!(attempt.rcpt_to, ["bob@maildrop.test"]);
}
