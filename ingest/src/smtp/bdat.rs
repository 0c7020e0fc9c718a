//! `BDAT <size> [LAST]` (RFC 3030 CHUNKING): the body in length-framed binary chunks.
//!
//! Framing is by length, so there is no dot-stuffing and no end marker to confuse: bare CR and LF
//! are ordinary bytes here (they cannot smuggle anything), while NUL and the size limit are
//! enforced as for `DATA`. The rule that keeps the stream in step: **once the size parses, exactly
//! that many octets are consumed, whatever the verdict.** A chunk with no transaction, without
//! recipients, with a bad `LAST` word, or over the size limit is read and dropped, and only then
//! answered. After a failed chunk the transaction is gone, so further chunks the client already
//! pipelined are dropped with `503`s (RFC 3030 §4.2 asks servers to expect them); those replies do
//! not count as bad commands, since a pipelining client cannot avoid them. Only a size that does
//! not parse leaves us unable to frame the chunk; then, like Postfix, we answer `501` and read on
//! as commands: only the client itself can send a malformed `BDAT`, so nothing foreign is smuggled.

use bytes::{Buf, BytesMut};

use super::body::BodySink;
use super::reply::{self, Reply};
use super::{Action, Input, Session};

const USAGE: &str = "BDAT count [LAST]";

/// Where a chunk's octets go.
#[derive(Debug)]
enum Destination {
    Body(BodySink),
    /// Dropped; the reply is sent once the chunk has been read.
    Discard(Reply),
}

#[derive(Debug)]
pub(super) struct ChunkReader {
    size: u64,
    remaining: u64,
    last: bool,
    destination: Destination,
}

/// Starts reading a chunk; a reply now only if the size cannot be parsed.
pub(super) fn bdat(s: &mut Session, args: &str) -> Option<Reply> {
    let mut words = args.split([' ', '\t']).filter(|w| !w.is_empty());
    let size = words
        .next()
        .filter(|w| w.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|w| w.parse::<u64>().ok());
    let Some(size) = size else {
        return Some(reply::syntax(USAGE));
    };
    let last = match (words.next(), words.next()) {
        (None, _) => Some(false),
        (Some(word), None) if word.eq_ignore_ascii_case("LAST") => Some(true),
        _ => None,
    };
    let destination = match (s.tx.as_mut(), last) {
        (_, None) => Destination::Discard(reply::syntax(USAGE)),
        (None, _) => Destination::Discard(reply::bad_sequence("need MAIL command")),
        (Some(tx), _) if tx.rcpt_to.is_empty() => {
            Destination::Discard(reply::no_valid_recipients())
        }
        (Some(tx), _) => Destination::Body(tx.chunks.take().unwrap_or_else(|| {
            BodySink::new(
                s.config.max_message_size,
                s.config.max_header_size,
                tx.declared_size,
            )
        })),
    };
    s.input = Input::Chunk(ChunkReader {
        size,
        remaining: size,
        last: last.unwrap_or(false),
        destination,
    });
    None
}

impl ChunkReader {
    /// Consumes chunk octets from `input`; `true` once the whole chunk is in.
    pub(super) fn read(&mut self, input: &mut BytesMut) -> bool {
        let take = usize::try_from(self.remaining).map_or(input.len(), |r| r.min(input.len()));
        if let Destination::Body(sink) = &mut self.destination {
            sink.push(&input[..take]);
        }
        input.advance(take);
        self.remaining -= take as u64;
        self.remaining == 0
    }
}

/// The chunk is in: refuse, acknowledge, or (after `LAST`) deliver.
pub(super) fn end_of_chunk(s: &mut Session, reader: ChunkReader) -> Action {
    s.input = Input::Command;
    let sink = match reader.destination {
        Destination::Discard(reply) => {
            s.tx = None;
            return Action::Reply(reply);
        }
        Destination::Body(sink) => sink,
    };
    if let Some(reply) = sink.refusal() {
        s.refused_tx = s.tx.take().map(|tx| (tx.mail_from, tx.rcpt_to));
        return Action::Reply(reply);
    }
    if reader.last {
        return match s.tx.take() {
            Some(draft) => s.deliver(draft, sink.into_bytes()),
            None => Action::Reply(reply::bad_sequence("need MAIL command")),
        };
    }
    if let Some(tx) = s.tx.as_mut() {
        tx.chunks = Some(sink);
    }
    Action::Reply(Reply::new(
        250,
        (2, 0, 0),
        format!("{} octets received", reader.size),
    ))
}
