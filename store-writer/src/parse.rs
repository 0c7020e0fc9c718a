//! From raw bytes to the document kept in Redis.
//!
//! Parsing never fails: bytes that mail-parser cannot read as a message (no header block, invalid
//! UTF-8, garbage) are kept as they are, shown as text, and still listed in the mailbox. A message
//! that cannot be read is still a message somebody was sent.

use mail_parser::Address;
use maildrop_contract::{Envelope, Mailbox, MessageSummary, Verdict};
use maildrop_store::{Headers, StoredEnvelope, StoredMessage, StoredVerdict};

/// Renders an address header as `Name <addr>, …`.
fn addresses(address: Option<&Address<'_>>) -> Option<String> {
    let list: Vec<String> = address?
        .iter()
        .map(|a| match (a.name.as_deref(), a.address.as_deref()) {
            (Some(name), Some(addr)) => format!("{name} <{addr}>"),
            (None, Some(addr)) => addr.to_owned(),
            (Some(name), None) => name.to_owned(),
            (None, None) => String::new(),
        })
        .filter(|s| !s.is_empty())
        .collect();
    (!list.is_empty()).then(|| list.join(", "))
}

/// What is left of HTML without its tags, trimmed: enough to tell an empty document
/// (`<html><body></body></html>`, as mail-parser makes from an empty text body) from a real one.
fn visible_text(html: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.trim().to_owned()
}

/// The document for `mailbox`.
pub fn stored_message(
    mailbox: &Mailbox,
    envelope: &Envelope,
    verdict: &Verdict,
    raw: &[u8],
) -> StoredMessage {
    let parsed = mail_parser::MessageParser::default().parse(raw);
    let (headers, text, html, attachments) = match &parsed {
        Some(m) => (
            Headers {
                from: addresses(m.from()),
                to: addresses(m.to()),
                cc: addresses(m.cc()),
                subject: m.subject().map(str::to_owned),
                date: m.date().map(|d| d.to_rfc822()),
                message_id: m.message_id().map(str::to_owned),
            },
            m.body_text(0).map(|t| t.into_owned()),
            m.body_html(0).map(|t| t.into_owned()),
            maildrop_store::attachment::list(m),
        ),
        None => (
            Headers::default(),
            Some(String::from_utf8_lossy(raw).into_owned()),
            None,
            Vec::new(),
        ),
    };
    // Bytes with no readable body (no header block, garbage): show them as they are.
    let blank = |s: &Option<String>| s.as_deref().is_none_or(|s| s.trim().is_empty());
    let (text, html) = if blank(&text) && html.as_deref().is_none_or(|h| visible_text(h).is_empty())
    {
        (Some(String::from_utf8_lossy(raw).into_owned()), None)
    } else {
        (text, html)
    };
    let from = headers
        .from
        .clone()
        .unwrap_or_else(|| envelope.mail_from.clone());
    StoredMessage {
        summary: MessageSummary {
            id: envelope.id,
            mailbox: mailbox.clone(),
            from,
            subject: headers.subject.clone().unwrap_or_default(),
            date: headers.date.clone(),
            received_ms: envelope.received_ms,
            size: envelope.size,
        },
        envelope: StoredEnvelope {
            client_ip: envelope.client_ip.to_string(),
            helo: envelope.helo.clone(),
            mail_from: envelope.mail_from.clone(),
            rcpt_to: envelope.rcpt_to.clone(),
            received_ms: envelope.received_ms,
            size: envelope.size,
        },
        headers,
        text,
        html,
        attachments,
        verdict: Some(StoredVerdict {
            score: verdict.score,
            threshold: verdict.threshold,
            hits: verdict.hits.clone(),
            ruleset: verdict.ruleset.clone(),
        }),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use maildrop_contract::{MessageId, event};

    /// A mailbox, an envelope and an accepting verdict, for the tests of this crate.
    pub(crate) fn fixtures() -> (Mailbox, Envelope, Verdict) {
        let mailbox = Mailbox::parse("bob").unwrap();
        let envelope = Envelope {
            id: MessageId::new(),
            client_ip: "192.0.2.1".parse().unwrap(),
            helo: "h".into(),
            mail_from: "env@example.org".into(),
            rcpt_to: vec!["bob@maildrop.localhost".into()],
            mailboxes: vec![mailbox.clone()],
            received_ms: 5,
            size: 10,
        };
        let verdict = Verdict {
            v: event::VERSION,
            id: envelope.id,
            received_seq: 1,
            mailboxes: vec![mailbox.clone()],
            accepted: true,
            score: 0.0,
            threshold: 5.0,
            hits: vec![],
            ruleset: "r".into(),
            client_ip: "192.0.2.1".into(),
            mail_from: "env@example.org".into(),
            size: 10,
            received_ms: 5,
        };
        (mailbox, envelope, verdict)
    }

    #[test]
    fn a_multipart_message_is_taken_apart() {
        let raw = b"From: Alice <alice@example.org>\r\nTo: bob@maildrop.localhost\r\n\
Subject: =?utf-8?q?Caf=C3=A9?=\r\nMessage-ID: <m1@example.org>\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\
Content-Type: multipart/alternative; boundary=a\r\n\r\n--a\r\nContent-Type: text/plain\r\n\r\nhello\r\n\
--a\r\nContent-Type: text/html\r\n\r\n<p>hello</p>\r\n--a--\r\n--b\r\nContent-Type: application/pdf\r\n\
Content-Disposition: attachment; filename=a.pdf\r\n\r\nPDFDATA\r\n--b--\r\n";
        let (mb, env, v) = fixtures();
        let m = stored_message(&mb, &env, &v, raw);
        assert_eq!(m.summary.from, "Alice <alice@example.org>");
        assert_eq!(m.summary.subject, "Café");
        assert_eq!(m.headers.message_id.as_deref(), Some("m1@example.org"));
        assert_eq!(m.text.as_deref().map(str::trim), Some("hello"));
        assert!(m.html.as_deref().unwrap().contains("<p>hello</p>"));
        assert_eq!(m.attachments.len(), 1);
        assert_eq!(m.attachments[0].name.as_deref(), Some("a.pdf"));
        assert_eq!(m.attachments[0].content_type, "application/pdf");
        assert_eq!((m.attachments[0].index, m.attachments[0].size), (0, 7));
        assert!(!m.attachments[0].stripped);
    }

    #[test]
    fn garbage_is_kept_and_shown_as_text() {
        let (mb, env, v) = fixtures();
        let m = stored_message(&mb, &env, &v, &[0xff, 0xfe, b'x']);
        assert_eq!(m.summary.from, "env@example.org");
        assert_eq!(m.summary.subject, "");
        assert!(m.text.unwrap().contains('x'));
    }

    #[test]
    fn a_message_without_a_header_block_is_shown_whole() {
        let (mb, env, v) = fixtures();
        let m = stored_message(&mb, &env, &v, b"\xff\xfe not a message\r\nsecond line\r\n");
        assert!(m.text.unwrap().contains("not a message"));
    }
}
