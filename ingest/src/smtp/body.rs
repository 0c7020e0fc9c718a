//! Where a message body accumulates, for `DATA` and `BDAT` alike.
//!
//! The body is copied exactly once, from the input buffer into one `BytesMut` that is frozen into
//! the delivered `Bytes`. The sink enforces the size limit as it goes: once a body is over the
//! limit its bytes are dropped (memory stays bounded by `max_message_size`) but the reader keeps
//! reading to the end of the message, so the client gets a `552` and the connection stays in step.
//! It also remembers what makes a body unacceptable, so the verdict is given once, at the end:
//!
//! - a bare CR or LF in `DATA` (set by the `data` reader, which knows where lines end);
//! - a header block (everything before the first empty line) larger than its limit;
//! - a NUL anywhere. We do not advertise `BINARYMIME`, so a body must be 7bit or 8bit text, which
//!   RFC 6152 and RFC 5322 say contains no NUL; NULs also truncate strings in tools a stored mail
//!   may meet later. Refusing (`550 5.6.0`) is simpler to reason about than storing them.

use bytes::{Bytes, BytesMut};

use super::reply::{self, Reply};

/// A body that announces no size starts with this much room.
const INITIAL_CAPACITY: usize = 8 * 1024;
/// A `SIZE=` declaration reserves at most this much up front, so a client cannot make us allocate
/// the whole limit by announcing a large message and then sending nothing.
const MAX_PREALLOCATION: usize = 1024 * 1024;

#[derive(Debug)]
pub(super) struct BodySink {
    buf: BytesMut,
    limit: usize,
    header_limit: usize,
    /// Whether the end of the header block was seen (or the block was found too large).
    headers_done: bool,
    header_too_large: bool,
    oversize: bool,
    nul: bool,
    bare_newline: bool,
}

impl BodySink {
    pub(super) fn new(limit: usize, header_limit: usize, declared_size: Option<u64>) -> Self {
        let capacity = declared_size
            .map_or(INITIAL_CAPACITY, |size| {
                usize::try_from(size).unwrap_or(usize::MAX)
            })
            .min(MAX_PREALLOCATION)
            .min(limit);
        Self {
            buf: BytesMut::with_capacity(capacity),
            limit,
            header_limit,
            headers_done: false,
            header_too_large: false,
            oversize: false,
            nul: false,
            bare_newline: false,
        }
    }

    /// Appends body bytes, or drops them once the body is over the limit.
    pub(super) fn push(&mut self, bytes: &[u8]) {
        // NUL is looked for even past the size limit: the verdict must not depend on where the
        // network split the body (found by the fuzzer).
        if bytes.contains(&0) {
            self.nul = true;
        }
        if bytes.is_empty() || self.oversize {
            return;
        }
        if bytes.len() > self.limit - self.buf.len() {
            self.oversize = true;
            self.buf = BytesMut::new();
            return;
        }
        let scanned = self.buf.len();
        self.buf.extend_from_slice(bytes);
        if !self.headers_done {
            self.look_for_header_end(scanned);
        }
    }

    /// Looks for the empty line that ends the header block in what arrived since `scanned`.
    fn look_for_header_end(&mut self, scanned: usize) {
        if self.buf.starts_with(b"\r\n") {
            self.headers_done = true;
            return;
        }
        let from = scanned.saturating_sub(3);
        let end = self.buf[from..]
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map(|at| from + at + 2);
        // The block is too large if it ended past the limit, or has not ended by it.
        let length = end.unwrap_or(self.buf.len());
        if length > self.header_limit {
            self.headers_done = true;
            self.header_too_large = true;
        } else if end.is_some() {
            self.headers_done = true;
        }
    }

    /// Records a CR not followed by LF, or an LF not preceded by CR.
    pub(super) fn bare_newline(&mut self) {
        self.bare_newline = true;
    }

    /// Why the body must be refused, if it must.
    pub(super) fn refusal(&self) -> Option<Reply> {
        if self.bare_newline {
            Some(Reply::new(
                550,
                (5, 6, 11),
                "Bare CR or LF not allowed in message",
            ))
        } else if self.nul {
            Some(Reply::new(
                550,
                (5, 6, 0),
                "NUL characters not allowed in message",
            ))
        } else if self.oversize {
            Some(reply::message_too_big())
        } else if self.header_too_large {
            Some(Reply::new(552, (5, 3, 4), "Message header block too large"))
        } else {
            None
        }
    }

    pub(super) fn into_bytes(self) -> Bytes {
        self.buf.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_bytes_up_to_the_limit() {
        let mut sink = BodySink::new(10, usize::MAX, None);
        sink.push(b"12345");
        sink.push(b"67890");
        assert_eq!(sink.refusal(), None);
        assert_eq!(&sink.into_bytes()[..], b"1234567890");
    }

    #[test]
    fn drops_everything_past_the_limit() {
        let mut sink = BodySink::new(10, usize::MAX, Some(5));
        sink.push(b"12345");
        sink.push(b"678901");
        sink.push(b"more");
        assert!(sink.buf.is_empty());
        assert_eq!(sink.refusal().unwrap().code, 552);
    }

    #[test]
    fn refuses_nul_and_bare_newlines() {
        let mut sink = BodySink::new(10, usize::MAX, None);
        sink.push(b"a\0b");
        assert_eq!(sink.refusal().unwrap().enhanced, Some((5, 6, 0)));
        sink.bare_newline();
        assert_eq!(sink.refusal().unwrap().enhanced, Some((5, 6, 11)));
    }

    #[test]
    fn a_header_block_over_its_limit_is_refused_however_it_arrives() {
        let message = b"Subject: x\r\nX-Long: 0123456789\r\n\r\nbody";
        for piece in 1..message.len() {
            let mut sink = BodySink::new(1000, 20, None);
            message.chunks(piece).for_each(|c| sink.push(c));
            assert_eq!(
                sink.refusal().map(|r| r.code),
                Some(552),
                "pieces of {piece}"
            );
            let mut roomy = BodySink::new(1000, 40, None);
            message.chunks(piece).for_each(|c| roomy.push(c));
            assert_eq!(roomy.refusal(), None, "pieces of {piece}");
        }
        // A long body after a short header block is fine.
        let mut sink = BodySink::new(1000, 20, None);
        sink.push(b"A: b\r\n\r\n");
        sink.push(&[b'x'; 500]);
        assert_eq!(sink.refusal(), None);
    }

    #[test]
    fn a_huge_declared_size_does_not_preallocate_it() {
        let sink = BodySink::new(usize::MAX, usize::MAX, Some(u64::MAX));
        assert!(sink.buf.capacity() <= MAX_PREALLOCATION);
    }
}
