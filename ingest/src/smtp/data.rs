//! `DATA`: `354`, then the body up to `<CRLF>.<CRLF>`, dot-unstuffed (RFC 5321 §4.1.1.4, §4.5.2).
//!
//! The body is read by [`DataReader`], a byte-level state machine rather than a line reader, for
//! two reasons:
//!
//! - **No line buffering.** Bytes move from the input buffer straight into the body (or are dropped
//!   once it is over the size limit), so a line of any length never makes the input buffer grow. We
//!   therefore **accept lines longer than 1000 octets**: RFC 5321 §4.5.3.1 asks servers to avoid
//!   length limits wherever they can, real senders (HTML mailers) exceed it, and nothing here needs
//!   the limit. A later stage may flag such messages.
//! - **Exact end-of-data.** Only CR LF `.` CR LF ends the body. A bare LF or a bare CR never ends a
//!   line, so `\n.\n`, `\r.\r`, `\n.\r\n`, `\r\n.\n` and friends are just body bytes, and a body
//!   that holds a bare CR or LF anywhere is read to its real end and then **refused** with
//!   `550 5.6.11` (SMTP smuggling, CVE-2023-51766: when an outbound server relays such a sequence
//!   as body text and the inbound server takes it for the end of data, the rest of the body is read
//!   as a second, forged transaction; we are the inbound server and never do). Refusing rather than
//!   normalising is what Postfix does with `smtpd_forbid_bare_newline = reject` (and sendmail with
//!   its `srv_features` flags `o`, `g`, `u`); RFC 5322 §2.3 does not allow bare line ends in a
//!   message anyway, so legitimate senders do not produce them, and a refusal is easier to reason
//!   about than a repair.
//!
//! Dot-unstuffing: a `.` at the start of a line is always removed (`..x` becomes `.x`, `.x` becomes
//! `x`), and a line of just `.` ends the body. The CRLF before the final `.` belongs to the
//! message.

use bytes::{Buf, BytesMut};

use super::body::BodySink;
use super::reply::{self, Reply};
use super::{Input, Session};

pub(super) fn data(s: &mut Session, args: &str) -> Reply {
    if !args.is_empty() {
        return reply::syntax("DATA");
    }
    let draft = match s.tx.take() {
        None => return reply::bad_sequence("need MAIL command"),
        Some(tx) if tx.chunks.is_some() => {
            s.tx = Some(tx);
            return reply::bad_sequence("DATA after BDAT");
        }
        Some(tx) if tx.rcpt_to.is_empty() => {
            s.tx = Some(tx);
            return reply::no_valid_recipients();
        }
        Some(tx) => tx,
    };
    let sink = BodySink::new(
        s.config.max_message_size,
        s.config.max_header_size,
        draft.declared_size,
    );
    s.input = Input::Data {
        draft,
        reader: DataReader::new(sink),
    };
    Reply::plain(354, "End data with <CR><LF>.<CR><LF>")
}

/// Where in a line the last byte left us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum At {
    /// After CR LF (or at the start of the body).
    LineStart,
    /// Inside a line.
    Text,
    /// After a CR inside a line.
    Cr,
    /// After a `.` at the start of a line (dropped).
    Dot,
    /// After `.` CR at the start of a line; the CR is held back until we know it is not the end.
    DotCr,
}

#[derive(Debug)]
pub(super) struct DataReader {
    at: At,
    sink: BodySink,
}

impl DataReader {
    pub(super) fn new(sink: BodySink) -> Self {
        Self {
            at: At::LineStart,
            sink,
        }
    }

    /// Consumes body bytes from `input`. Returns `true` once `<CRLF>.<CRLF>` has been consumed,
    /// leaving whatever follows it (pipelined commands) in `input`.
    pub(super) fn read(&mut self, input: &mut BytesMut) -> bool {
        let bytes = &input[..];
        // Bytes from `run` to `i` are body text not yet handed to the sink.
        let mut run = 0;
        let mut i = 0;
        let mut done = false;
        while i < bytes.len() {
            match self.at {
                At::Text => match memchr::memchr2(b'\r', b'\n', &bytes[i..]) {
                    None => i = bytes.len(),
                    Some(offset) => {
                        i += offset;
                        if bytes[i] == b'\r' {
                            self.at = At::Cr;
                        } else {
                            self.sink.bare_newline();
                        }
                        i += 1;
                    }
                },
                At::LineStart if bytes[i] == b'.' => {
                    self.sink.push(&bytes[run..i]);
                    i += 1;
                    run = i;
                    self.at = At::Dot;
                }
                At::LineStart => self.at = At::Text,
                At::Cr if bytes[i] == b'\n' => {
                    i += 1;
                    self.at = At::LineStart;
                }
                At::Cr => {
                    self.sink.bare_newline();
                    self.at = At::Text;
                }
                At::Dot if bytes[i] == b'\r' => {
                    self.sink.push(&bytes[run..i]);
                    i += 1;
                    run = i;
                    self.at = At::DotCr;
                }
                At::Dot => self.at = At::Text,
                At::DotCr if bytes[i] == b'\n' => {
                    i += 1;
                    run = i;
                    done = true;
                    break;
                }
                At::DotCr => {
                    // `.` CR and then not LF: the CR was a bare one, and body text.
                    self.sink.push(b"\r");
                    self.sink.bare_newline();
                    self.at = At::Text;
                }
            }
        }
        self.sink.push(&bytes[run..i]);
        input.advance(i);
        done
    }

    pub(super) fn into_sink(self) -> BodySink {
        self.sink
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `parts` one after another; the body, and what was left after the end.
    fn read(parts: &[&[u8]]) -> (Option<Vec<u8>>, Vec<u8>, bool) {
        let mut reader = DataReader::new(BodySink::new(1 << 20, usize::MAX, None));
        let mut input = BytesMut::new();
        for part in parts {
            input.extend_from_slice(part);
            if reader.read(&mut input) {
                let sink = reader.into_sink();
                let refused = sink.refusal().is_some();
                return (Some(sink.into_bytes().to_vec()), input.to_vec(), refused);
            }
            assert!(input.is_empty(), "an unfinished body leaves nothing behind");
        }
        (None, input.to_vec(), false)
    }

    #[test]
    fn ends_at_crlf_dot_crlf_and_keeps_the_rest() {
        let (body, rest, refused) = read(&[b"a\r\nb\r\n.\r\nQUIT\r\n"]);
        assert_eq!(body.unwrap(), b"a\r\nb\r\n");
        assert_eq!(rest, b"QUIT\r\n");
        assert!(!refused);
    }

    #[test]
    fn empty_body() {
        assert_eq!(read(&[b".\r\n"]).0.unwrap(), b"");
    }

    #[test]
    fn unstuffs_dots() {
        let (body, _, _) = read(&[b"..a\r\n.b\r\n..\r\n...\r\nx.\r\n.\r\n"]);
        assert_eq!(body.unwrap(), b".a\r\nb\r\n.\r\n..\r\nx.\r\n");
    }

    #[test]
    fn the_end_may_be_split_anywhere() {
        let whole: &[u8] = b"x\r\n..y\r\n.\r\n";
        for cut in 0..whole.len() {
            let (body, rest, _) = read(&[&whole[..cut], &whole[cut..]]);
            assert_eq!(body.unwrap(), b"x\r\n.y\r\n", "cut at {cut}");
            assert!(rest.is_empty());
        }
        let (body, _, _) = read(&[b"x\r", b"\n", b".", b"\r", b"\n"]);
        assert_eq!(body.unwrap(), b"x\r\n");
    }

    #[test]
    fn bare_line_ends_never_end_the_body() {
        for fake in [
            &b"\n.\n"[..],
            b"\r.\r",
            b"\n.\r\n",
            b"\r\n.\n",
            b"\r\n.\r",
            b"\r.\r\n",
        ] {
            let mut first = b"a".to_vec();
            first.extend_from_slice(fake);
            first.extend_from_slice(b"MAIL FROM:<x@y>\r\n");
            let (body, _, _) = read(&[&first]);
            assert_eq!(body, None, "{fake:?} ended the body");
            let (body, rest, refused) = read(&[&first, b"\r\n.\r\nNOOP\r\n"]);
            assert!(body.is_some() && refused, "{fake:?}");
            assert_eq!(rest, b"NOOP\r\n");
        }
    }

    #[test]
    fn a_dot_cr_that_is_not_the_end_keeps_its_cr() {
        let (body, _, refused) = read(&[b"\r\n.\rx\r\n.\r\n"]);
        assert_eq!(body.unwrap(), b"\r\n\rx\r\n");
        assert!(refused);
    }
}
