//! From an accepted message to what is stored: its document and its raw bytes, with the
//! attachment policy applied.
//!
//! Pure, and shared by the consumer and `rebuild`, so a rebuilt mailbox holds exactly what the
//! live writer stored. The policy: with `strip`, no attachment body is kept; with `keep`, bodies
//! larger than the maximum are not. A stripped attachment stays in the document (name, type,
//! size, `stripped`, `stripped_reason`) and its part stays in the raw message with an empty body
//! and an `X-Maildrop-Stripped` header (see `maildrop_store::attachment` for why the raw message
//! is rewritten rather than kept whole).

use std::borrow::Cow;

use maildrop_contract::{Envelope, Mailbox, Verdict};
use maildrop_store::attachment::{self, StripReason};
use maildrop_store::{Attachment, StoredMessage};

use crate::config::AttachmentMode;
use crate::parse::stored_message;

/// What happens to attachment bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttachmentPolicy {
    pub mode: AttachmentMode,
    /// Largest decoded size kept with `keep`.
    pub max_size: u64,
}

impl AttachmentPolicy {
    /// The attachments that lose their body, and why.
    pub fn plan(&self, attachments: &[Attachment]) -> Vec<(usize, StripReason)> {
        attachments
            .iter()
            .filter_map(|a| match self.mode {
                AttachmentMode::Strip => Some((a.index, StripReason::Policy)),
                AttachmentMode::Keep if a.size > self.max_size => {
                    Some((a.index, StripReason::TooLarge))
                }
                AttachmentMode::Keep => None,
            })
            .collect()
    }
}

/// One message, ready to store in each of its mailboxes.
#[derive(Debug, Clone)]
pub struct Prepared<'a> {
    raw: Cow<'a, [u8]>,
    doc: StoredMessage,
}

impl Prepared<'_> {
    /// The raw bytes to store (as received, unless an attachment was stripped).
    pub fn raw(&self) -> &[u8] {
        &self.raw
    }

    /// The document for `mailbox`.
    pub fn document(&self, mailbox: &Mailbox) -> StoredMessage {
        let mut doc = self.doc.clone();
        doc.summary.mailbox = mailbox.clone();
        doc
    }
}

/// Parses `raw` once and applies `policy`; `mailbox` is any of the message's mailboxes.
pub fn prepare<'a>(
    mailbox: &Mailbox,
    envelope: &Envelope,
    verdict: &Verdict,
    raw: &'a [u8],
    policy: &AttachmentPolicy,
) -> Prepared<'a> {
    let mut doc = stored_message(mailbox, envelope, verdict, raw);
    let plan = policy.plan(&doc.attachments);
    if plan.is_empty() {
        return Prepared {
            raw: Cow::Borrowed(raw),
            doc,
        };
    }
    let stripped = attachment::strip(raw, &plan);
    for (index, reason) in &stripped.stripped {
        if let Some(a) = doc.attachments.get_mut(*index) {
            a.stripped = true;
            a.stripped_reason = Some(*reason);
        }
    }
    Prepared {
        raw: Cow::Owned(stripped.raw),
        doc,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attachment(index: usize, size: u64) -> Attachment {
        Attachment {
            index,
            name: None,
            content_type: "application/octet-stream".into(),
            size,
            stripped: false,
            stripped_reason: None,
        }
    }

    #[test]
    fn keep_strips_only_what_is_too_large_and_strip_strips_everything() {
        let list = [attachment(0, 10), attachment(1, 11), attachment(2, 0)];
        let keep = AttachmentPolicy {
            mode: AttachmentMode::Keep,
            max_size: 10,
        };
        assert_eq!(keep.plan(&list), [(1, StripReason::TooLarge)]);
        let strip = AttachmentPolicy {
            mode: AttachmentMode::Strip,
            max_size: 10,
        };
        assert_eq!(
            strip.plan(&list),
            [
                (0, StripReason::Policy),
                (1, StripReason::Policy),
                (2, StripReason::Policy)
            ]
        );
    }

    use crate::parse::tests::fixtures;

    const RAW: &[u8] = b"From: a@example.org\r\nSubject: s\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nbody\r\n\
--b\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=big.bin\r\n\
\r\n0123456789ABCDEF\r\n--b\r\nContent-Type: application/octet-stream\r\n\
Content-Disposition: attachment; filename=small.bin\r\n\r\n0123\r\n--b--\r\n";

    #[test]
    fn a_large_attachment_is_stripped_from_the_raw_and_marked_in_the_document() {
        let (mb, env, v) = fixtures();
        let policy = AttachmentPolicy {
            mode: AttachmentMode::Keep,
            max_size: 8,
        };
        let prepared = prepare(&mb, &env, &v, RAW, &policy);
        let doc = prepared.document(&Mailbox::parse("other").unwrap());
        assert_eq!(doc.summary.mailbox.as_str(), "other");
        assert_eq!(doc.text.as_deref().map(str::trim), Some("body"));
        let big = &doc.attachments[0];
        assert_eq!(big.name.as_deref(), Some("big.bin"));
        assert!(big.stripped);
        assert_eq!(big.stripped_reason, Some(StripReason::TooLarge));
        assert_eq!(big.size, 16, "the size as received");
        assert!(!doc.attachments[1].stripped);
        let raw = String::from_utf8(prepared.raw().to_vec()).unwrap();
        assert!(!raw.contains("0123456789ABCDEF"));
        assert!(raw.contains("X-Maildrop-Stripped: too_large; size=16"));
        assert!(raw.contains("\r\n\r\n0123\r\n--b--"));
    }

    #[test]
    fn without_anything_to_strip_the_raw_is_not_copied() {
        let (mb, env, v) = fixtures();
        let policy = AttachmentPolicy {
            mode: AttachmentMode::Keep,
            max_size: 1 << 20,
        };
        let prepared = prepare(&mb, &env, &v, RAW, &policy);
        assert!(matches!(prepared.raw, Cow::Borrowed(_)));
        assert!(prepared.doc.attachments.iter().all(|a| !a.stripped));
    }
}
