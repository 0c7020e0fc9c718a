//! Generated test messages, each traceable end to end.
//!
//! Every message carries a token `[<run>-<seq>]` in its `Subject`: `<run>` is unique to one run of
//! the load generator ([`RunTag`]) and `<seq>` numbers its messages from 0. The end-to-end probes
//! find the token again in the summary of a `stored` event or a WebSocket frame, and so know which
//! `250` the event belongs to. Message `seq` goes to mailbox `seq % mailboxes`, so the load is spread
//! evenly over the mailboxes and every probe can tell a message's mailbox from its number.
//!
//! Bodies are plain 7-bit text with CRLF line ends (the ingest refuses bare CR and LF), lines of at
//! most 78 characters, none starting with a dot.

use crate::base64;
use crate::rng::Rng;
use crate::size::SizeSpec;

/// The envelope sender and `From` of every message.
pub const SENDER: &str = "bench@example.org";

/// Messages in the mix of at least this size sometimes carry an attachment.
const ATTACHMENT_MIN_MESSAGE: usize = 6 * 1024;
/// Percent of those messages that do.
const ATTACHMENT_PERCENT: u64 = 25;
/// Largest encoded attachment.
const ATTACHMENT_MAX_ENCODED: usize = 32 * 1024;

const WORDS: [&str; 32] = [
    "mail", "inbox", "relay", "queue", "server", "message", "stream", "token", "header", "body",
    "latency", "sender", "domain", "verdict", "filter", "store", "gateway", "socket", "reply",
    "session", "envelope", "subject", "summary", "event", "mailbox", "delivery", "receipt",
    "payload", "buffer", "channel", "watcher", "report",
];

/// The tag that makes one run's subjects unique: `mdb-` and 8 hex digits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunTag(String);

impl RunTag {
    /// A tag from any number (the caller mixes the clock and the process id into it).
    pub fn from_u64(n: u64) -> Self {
        Self(format!("mdb-{:08x}", (n ^ (n >> 32)) as u32))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `mdb-1a2b3c4d-42`.
    pub fn token(&self, seq: u64) -> String {
        format!("{}-{seq}", self.0)
    }

    /// The message number in a subject carrying this run's token, if any.
    pub fn seq_in(&self, subject: &str) -> Option<u64> {
        let open = format!("[{}-", self.0);
        let start = subject.find(&open)? + open.len();
        let rest = &subject[start..];
        let end = rest.find(']')?;
        rest[..end].parse().ok()
    }
}

/// A mailbox's name: `bench-<index>`.
pub fn mailbox_name(index: u32) -> String {
    format!("bench-{index}")
}

/// The mailbox index message `seq` is sent to.
pub fn mailbox_of(seq: u64, mailboxes: u32) -> u32 {
    (seq % u64::from(mailboxes.max(1))) as u32
}

/// One generated message.
#[derive(Debug, Clone)]
pub struct Message {
    pub seq: u64,
    pub mailbox_index: u32,
    pub recipient: String,
    /// The RFC 5322 message (not yet dot-stuffed).
    pub bytes: Vec<u8>,
}

/// Makes messages; one per session, so no locking.
#[derive(Debug, Clone)]
pub struct Generator {
    tag: RunTag,
    domain: String,
    mailboxes: u32,
    size: SizeSpec,
    rng: Rng,
}

impl Generator {
    pub fn new(tag: RunTag, domain: &str, mailboxes: u32, size: SizeSpec, seed: u64) -> Self {
        Self {
            tag,
            domain: domain.to_owned(),
            mailboxes: mailboxes.max(1),
            size,
            rng: Rng::new(seed),
        }
    }

    pub fn message(&mut self, seq: u64) -> Message {
        let mailbox_index = mailbox_of(seq, self.mailboxes);
        let recipient = format!("{}@{}", mailbox_name(mailbox_index), self.domain);
        let target = self.size.sample(&mut self.rng);
        let token = self.tag.token(seq);
        let bytes = match self.size {
            SizeSpec::Fixed(_) => plain(&token, &recipient, target, &mut self.rng),
            SizeSpec::Mix => {
                let attachment =
                    if target >= ATTACHMENT_MIN_MESSAGE && self.rng.chance(ATTACHMENT_PERCENT) {
                        let max_encoded = (target / 3).min(ATTACHMENT_MAX_ENCODED);
                        let max = (max_encoded * base64::BYTES_PER_LINE / 78).max(512);
                        let mut data = vec![0u8; self.rng.range(512, max as u64) as usize];
                        self.rng.fill(&mut data);
                        Some(data)
                    } else {
                        None
                    };
                multipart(
                    &token,
                    &recipient,
                    target,
                    attachment.as_deref(),
                    &mut self.rng,
                )
            }
        };
        Message {
            seq,
            mailbox_index,
            recipient,
            bytes,
        }
    }
}

fn headers(out: &mut Vec<u8>, token: &str, recipient: &str, content_type: &str) {
    let text = format!(
        "From: Maildrop Bench <{SENDER}>\r\n\
         To: <{recipient}>\r\n\
         Subject: [{token}] load test message\r\n\
         Message-ID: <{token}@bench.maildrop.localhost>\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: {content_type}\r\n"
    );
    out.extend_from_slice(text.as_bytes());
}

/// A single `text/plain` part, exactly `size` bytes when the headers fit.
fn plain(token: &str, recipient: &str, size: usize, rng: &mut Rng) -> Vec<u8> {
    let mut out = Vec::with_capacity(size);
    headers(
        &mut out,
        token,
        recipient,
        "text/plain; charset=us-ascii\r\nContent-Transfer-Encoding: 7bit",
    );
    out.extend_from_slice(b"\r\n");
    let body = size.saturating_sub(out.len()).max(2);
    filler(&mut out, body, false, rng);
    out
}

/// `multipart/alternative` (text and HTML), inside `multipart/mixed` with an attachment when one
/// is given; about `size` bytes (exactly, unless the structure alone is larger).
fn multipart(
    token: &str,
    recipient: &str,
    size: usize,
    attachment: Option<&[u8]>,
    rng: &mut Rng,
) -> Vec<u8> {
    let alt = format!("=_{token}_alt");
    let mixed = format!("=_{token}_mix");
    // The message in pieces; `None` marks where the text and HTML fillers go.
    let mut pieces: Vec<Option<String>> = Vec::new();
    let mut head = Vec::new();
    match attachment {
        Some(_) => headers(
            &mut head,
            token,
            recipient,
            &format!("multipart/mixed; boundary=\"{mixed}\""),
        ),
        None => headers(
            &mut head,
            token,
            recipient,
            &format!("multipart/alternative; boundary=\"{alt}\""),
        ),
    }
    head.extend_from_slice(b"\r\n");
    pieces.push(Some(String::from_utf8(head).expect("headers are ASCII")));
    if attachment.is_some() {
        pieces.push(Some(format!(
            "--{mixed}\r\nContent-Type: multipart/alternative; boundary=\"{alt}\"\r\n\r\n"
        )));
    }
    pieces.push(Some(format!(
        "--{alt}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 7bit\r\n\r\n"
    )));
    pieces.push(None);
    pieces.push(Some(format!(
        "--{alt}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: 7bit\r\n\r\n<!doctype html>\r\n<html><body>\r\n"
    )));
    pieces.push(None);
    pieces.push(Some(format!("</body></html>\r\n--{alt}--\r\n")));
    let encoded = attachment.map(base64::encode_lines);
    if let Some(encoded) = &encoded {
        pieces.push(Some(format!(
            "--{mixed}\r\nContent-Type: application/octet-stream; name=\"{token}.bin\"\r\n\
             Content-Disposition: attachment; filename=\"{token}.bin\"\r\n\
             Content-Transfer-Encoding: base64\r\n\r\n"
        )));
        pieces.push(Some(encoded.clone()));
        pieces.push(Some(format!("--{mixed}--\r\n")));
    }
    let fixed: usize = pieces.iter().flatten().map(String::len).sum();
    let budget = size.saturating_sub(fixed).max(4);
    let text = (budget * 2 / 5).max(2);
    let mut fills = [text, budget - text].into_iter();
    let mut out = Vec::with_capacity(fixed + budget);
    for piece in pieces {
        match piece {
            Some(s) => out.extend_from_slice(s.as_bytes()),
            None => {
                let n = fills.next().expect("two fillers");
                let html = fills.len() == 0;
                filler(&mut out, n, html, rng);
            }
        }
    }
    out
}

/// Exactly `n` bytes of lines of words, each line ending in CRLF (for `n >= 2`); HTML lines are
/// wrapped in `<p>…</p>` where they are long enough.
fn filler(out: &mut Vec<u8>, n: usize, html: bool, rng: &mut Rng) {
    let mut remaining = n;
    while remaining > 0 {
        let mut len = rng.range(60, 76) as usize + 2;
        if remaining <= 78 {
            len = remaining;
        } else if remaining - len == 1 {
            // Never leave a single byte: it could not end in CRLF.
            len -= 1;
        }
        if len < 2 {
            out.push(b' ');
            break;
        }
        let text = len - 2;
        if html && text >= 8 {
            out.extend_from_slice(b"<p>");
            words(out, text - 7, rng);
            out.extend_from_slice(b"</p>");
        } else {
            words(out, text, rng);
        }
        out.extend_from_slice(b"\r\n");
        remaining -= len;
    }
}

/// Exactly `n` bytes of words separated by spaces (a word may be cut at the end).
fn words(out: &mut Vec<u8>, n: usize, rng: &mut Rng) {
    let end = out.len() + n;
    let mut i = rng.below(WORDS.len() as u64) as usize;
    while out.len() < end {
        if out.len() + 1 < end && !out.ends_with(b"\n") && !out.ends_with(b">") {
            out.push(b' ');
        }
        let word = WORDS[i % WORDS.len()].as_bytes();
        let take = word.len().min(end - out.len());
        out.extend_from_slice(&word[..take]);
        i += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generator(size: SizeSpec) -> Generator {
        Generator::new(RunTag::from_u64(0xabc), "maildrop.localhost", 100, size, 1)
    }

    fn is_clean(bytes: &[u8]) -> bool {
        let text = std::str::from_utf8(bytes).unwrap();
        // CRLF only, short lines, no line starting with a dot, ends with CRLF.
        text.ends_with("\r\n")
            && !text.replace("\r\n", "").contains(['\r', '\n'])
            && text
                .split("\r\n")
                .all(|l| l.len() <= 998 && !l.starts_with('.'))
    }

    #[test]
    fn fixed_sizes_are_exact() {
        for size in [512, 1024, 1025, 4000, 20 * 1024, 100 * 1024] {
            let mut g = generator(SizeSpec::Fixed(size));
            for seq in 0..20 {
                let m = g.message(seq);
                assert_eq!(m.bytes.len(), size, "size {size}, seq {seq}");
                assert!(is_clean(&m.bytes));
            }
        }
    }

    #[test]
    fn every_message_carries_its_token_and_mailbox() {
        let mut g = generator(SizeSpec::Fixed(1024));
        let tag = RunTag::from_u64(0xabc);
        let m = g.message(342);
        assert_eq!(m.mailbox_index, 42);
        assert_eq!(m.recipient, "bench-42@maildrop.localhost");
        let text = String::from_utf8(m.bytes).unwrap();
        let subject = text
            .lines()
            .find_map(|l| l.strip_prefix("Subject: "))
            .unwrap();
        assert_eq!(tag.seq_in(subject), Some(342));
        assert!(text.contains("To: <bench-42@maildrop.localhost>"));
    }

    #[test]
    fn tokens_are_found_only_for_their_own_run() {
        let tag = RunTag::from_u64(0x1234);
        assert_eq!(tag.as_str(), "mdb-00001234");
        assert_eq!(tag.seq_in("[mdb-00001234-7] load test message"), Some(7));
        assert_eq!(tag.seq_in("Re: [mdb-00001234-19999] x"), Some(19_999));
        assert_eq!(tag.seq_in("[mdb-00001235-7] other run"), None);
        assert_eq!(tag.seq_in("[mdb-00001234-x] bad"), None);
        assert_eq!(tag.seq_in("[mdb-00001234-7 no bracket"), None);
        assert_eq!(tag.seq_in("hello"), None);
    }

    #[test]
    fn mailboxes_are_used_in_turn() {
        assert_eq!(mailbox_of(0, 100), 0);
        assert_eq!(mailbox_of(199, 100), 99);
        assert_eq!(mailbox_of(5, 0), 0);
        assert_eq!(mailbox_name(7), "bench-7");
    }

    #[test]
    fn the_mix_is_multipart_text_and_html_of_the_sampled_size() {
        let mut g = generator(SizeSpec::Mix);
        let mut with_attachment = 0;
        let mut sizes = Vec::new();
        for seq in 0..400 {
            let m = g.message(seq);
            let text = std::str::from_utf8(&m.bytes).unwrap();
            assert!(is_clean(&m.bytes), "seq {seq}");
            assert!(text.contains("Content-Type: multipart/alternative;"));
            assert!(text.contains("Content-Type: text/plain;"));
            assert!(text.contains("Content-Type: text/html;"));
            assert!(text.contains("<p>"));
            if text.contains("Content-Transfer-Encoding: base64") {
                with_attachment += 1;
                assert!(text.contains("Content-Type: multipart/mixed;"));
                assert!(m.bytes.len() >= ATTACHMENT_MIN_MESSAGE);
            }
            assert!(
                (1024..=100 * 1024).contains(&m.bytes.len()),
                "{}",
                m.bytes.len()
            );
            sizes.push(m.bytes.len());
        }
        assert!((10..100).contains(&with_attachment), "{with_attachment}");
        // Same seed, same sizes: a run's mix can be reproduced.
        let mut again = generator(SizeSpec::Mix);
        assert!((0..400).all(|seq| again.message(seq).bytes.len() == sizes[seq as usize]));
    }

    #[test]
    fn the_mix_hits_the_sampled_size() {
        let mut rng = Rng::new(3);
        for target in [1024, 3000, 7000, 50_000, 100 * 1024] {
            let m = multipart("mdb-0-1", "a@b.c", target, None, &mut rng);
            assert_eq!(m.len(), target);
            let m = multipart(
                "mdb-0-1",
                "a@b.c",
                target.max(6144),
                Some(&[1, 2, 3]),
                &mut rng,
            );
            assert_eq!(m.len(), target.max(6144));
        }
    }

    #[test]
    fn fillers_are_exact_for_every_small_length() {
        let mut rng = Rng::new(11);
        for n in 2..400 {
            for html in [false, true] {
                let mut out = Vec::new();
                filler(&mut out, n, html, &mut rng);
                assert_eq!(out.len(), n, "n {n} html {html}");
                assert!(is_clean(&out), "n {n}: {:?}", String::from_utf8_lossy(&out));
            }
        }
    }
}
