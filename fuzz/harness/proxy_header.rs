//! The `proxy_header` harness: arbitrary bytes at the start of a connection, through the PROXY
//! protocol parser, checking the promises the listener relies on.
//!
//! Shared like `smtp_session.rs`: included with `#[path]` by the fuzz target and by
//! `ingest/tests/fuzz_corpus.rs`, which replays the seed corpus through [`run`] on stable Rust.
//! The whole input is the connection's first bytes; there is no header.
//!
//! # What is checked
//!
//! - nothing panics;
//! - a complete header is never longer than the input nor than `MAX_HEADER`;
//! - the wait is bounded: `MAX_HEADER` octets are always enough for an answer;
//! - more bytes never change an answer: for every prefix that is already complete or refused, the
//!   whole input gets the same answer, so a caller that reads byte by byte decides exactly as one
//!   that reads everything at once;
//! - a complete header depends only on its own octets (parsing just those gives the same header);
//! - a v1 header is printable ASCII ending in CRLF, and a proxied v1 header written back out in
//!   the specification's form parses to the same addresses; source and destination are of one
//!   family.

use maildrop_ingest::proxy::{Header, MAX_HEADER, Parse, ProxyError, V2_SIGNATURE, parse};

/// Parses `data` and every prefix of it; panics on a violation. Returns the answer for the whole.
pub fn run(data: &[u8]) -> Result<Parse, ProxyError> {
    let whole = parse(data);
    if data.len() >= MAX_HEADER {
        assert_ne!(
            whole,
            Ok(Parse::Incomplete),
            "still incomplete after {} octets",
            data.len()
        );
    }
    // Prefixes beyond MAX_HEADER are decided, and equal to `whole`, by the check above.
    for n in 0..data.len().min(MAX_HEADER + 1) {
        let early = parse(&data[..n]);
        if early != Ok(Parse::Incomplete) {
            assert_eq!(
                early, whole,
                "the answer after {n} octets changed when more arrived"
            );
        }
    }
    if let Ok(Parse::Complete { header, len }) = whole {
        assert!(
            len <= data.len() && len <= MAX_HEADER,
            "a header of {len} octets"
        );
        assert_eq!(
            parse(&data[..len]),
            whole,
            "the header depends on bytes after it"
        );
        if let Header::Proxied {
            source,
            destination,
        } = header
        {
            assert_eq!(
                source.is_ipv4(),
                destination.is_ipv4(),
                "mixed address families"
            );
        }
        if !data.starts_with(&V2_SIGNATURE) {
            check_v1(&data[..len], header);
        }
    }
    whole
}

fn check_v1(line: &[u8], header: Header) {
    assert!(line.ends_with(b"\r\n"), "a v1 header without CRLF");
    assert!(
        line[..line.len() - 2]
            .iter()
            .all(|&b| b.is_ascii_graphic() || b == b' '),
        "a v1 header that is not printable ASCII"
    );
    if let Header::Proxied {
        source,
        destination,
    } = header
    {
        let family = if source.is_ipv4() { "TCP4" } else { "TCP6" };
        let written = format!(
            "PROXY {family} {} {} {} {}\r\n",
            source.ip(),
            destination.ip(),
            source.port(),
            destination.port()
        );
        assert_eq!(
            parse(written.as_bytes()),
            Ok(Parse::Complete {
                header,
                len: written.len()
            }),
            "{written:?} does not parse back"
        );
    }
}
