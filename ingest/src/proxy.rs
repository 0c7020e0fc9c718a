//! The PROXY protocol, versions 1 (text) and 2 (binary), as HAProxy specifies it: the header a
//! load balancer sends before the client's first byte, naming the client's address.
//!
//! A pure parser in the style of the SMTP session: bytes in, and out one of "need more bytes"
//! ([`Parse::Incomplete`]), a header with its length (the caller keeps whatever follows, which is
//! already the client's stream), or an error. It never reads a socket or a clock; the caller bounds
//! the wait. Nothing is accepted that the specification does not define, and the size of a header
//! is bounded before its end is seen, so a peer can make the caller neither wait for nor buffer
//! more than [`MAX_HEADER`] octets:
//!
//! - **v1**: one CRLF-terminated ASCII line of at most [`V1_MAX`] (107) octets, single spaces,
//!   `TCP4`/`TCP6` with addresses of that family and decimal ports without leading zeros, or
//!   `UNKNOWN` (anything after it is ignored, as the specification requires).
//! - **v2**: the 12-octet signature, version 2, command `LOCAL` or `PROXY`, and an address block of
//!   at most [`V2_MAX_LEN`] octets (a header of [`MAX_HEADER`] = 536 octets, the size the
//!   specification recommends a receiver read at once, enough for the largest address block, UNIX,
//!   plus TLVs). TLVs are skipped. Datagram transports are refused: this is a stream listener.
//!
//! `LOCAL`, `UNKNOWN`, `AF_UNSPEC` and `AF_UNIX` headers carry no client IP; they parse to
//! [`Header::Local`] and the caller uses the connection's own peer address (the specification's
//! rule; proxies send `LOCAL` for their own health checks).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The v2 signature; its `QUIT\n` makes a server that does not speak the protocol hang up.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// The longest v1 header, CRLF included.
pub const V1_MAX: usize = 107;
/// The longest v2 address block (with TLVs) we accept.
pub const V2_MAX_LEN: usize = 520;
/// The longest header of either version.
pub const MAX_HEADER: usize = 16 + V2_MAX_LEN;

const V1_PREFIX: &[u8] = b"PROXY ";

/// A complete header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Header {
    /// The connection is proxied for this client.
    Proxied {
        source: SocketAddr,
        destination: SocketAddr,
    },
    /// No client address was sent (health check, unknown or non-IP family): use the peer's.
    Local,
}

impl Header {
    /// The client's address, if the header names one.
    pub fn source(&self) -> Option<SocketAddr> {
        match self {
            Self::Proxied { source, .. } => Some(*source),
            Self::Local => None,
        }
    }
}

/// The outcome of [`parse`] on the bytes received so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parse {
    /// A valid start of a header; read more.
    Incomplete,
    /// A header of `len` octets; the bytes after it belong to the client.
    Complete { header: Header, len: usize },
}

/// Why the bytes are not a PROXY header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    #[error("no PROXY protocol signature")]
    NotProxy,
    #[error("PROXY v1 line longer than {V1_MAX} octets")]
    V1TooLong,
    #[error("bad PROXY v1 line: {0}")]
    V1Syntax(&'static str),
    #[error("PROXY v2 version {0} is not 2")]
    V2Version(u8),
    #[error("PROXY v2 command {0} is neither LOCAL nor PROXY")]
    V2Command(u8),
    #[error("PROXY v2 address family and transport 0x{0:02x} not supported")]
    V2Family(u8),
    #[error("PROXY v2 address block of {0} octets is longer than {V2_MAX_LEN}")]
    V2TooLong(usize),
    #[error("PROXY v2 address block too short for its family")]
    V2Truncated,
}

/// Parses the PROXY header at the start of `buf`.
pub fn parse(buf: &[u8]) -> Result<Parse, ProxyError> {
    if buf.starts_with(&V2_SIGNATURE) {
        return v2(buf);
    }
    if buf.starts_with(V1_PREFIX) {
        return v1(buf);
    }
    if V2_SIGNATURE.starts_with(buf) || V1_PREFIX.starts_with(buf) {
        return Ok(Parse::Incomplete);
    }
    Err(ProxyError::NotProxy)
}

fn v1(buf: &[u8]) -> Result<Parse, ProxyError> {
    let window = &buf[..buf.len().min(V1_MAX)];
    let Some(lf) = window.iter().position(|&b| b == b'\n') else {
        return if buf.len() >= V1_MAX {
            Err(ProxyError::V1TooLong)
        } else {
            Ok(Parse::Incomplete)
        };
    };
    let Some(line) = window[..lf].strip_suffix(b"\r") else {
        return Err(ProxyError::V1Syntax("line does not end in CRLF"));
    };
    let line = std::str::from_utf8(line)
        .ok()
        .filter(|l| l.bytes().all(|b| b.is_ascii_graphic() || b == b' '))
        .ok_or(ProxyError::V1Syntax("not printable ASCII"))?;
    let mut words = line.split(' ');
    words.next(); // "PROXY"
    let header = match words.next() {
        Some("UNKNOWN") => Header::Local,
        Some("TCP4") => v1_addresses(words, |s| s.parse::<Ipv4Addr>().ok().map(IpAddr::V4))?,
        Some("TCP6") => v1_addresses(words, |s| s.parse::<Ipv6Addr>().ok().map(IpAddr::V6))?,
        _ => {
            return Err(ProxyError::V1Syntax(
                "protocol is not TCP4, TCP6 or UNKNOWN",
            ));
        }
    };
    Ok(Parse::Complete {
        header,
        len: lf + 1,
    })
}

fn v1_addresses<'a>(
    mut words: impl Iterator<Item = &'a str>,
    ip: impl Fn(&str) -> Option<IpAddr>,
) -> Result<Header, ProxyError> {
    let mut next = || words.next().ok_or(ProxyError::V1Syntax("too few fields"));
    let src = ip(next()?).ok_or(ProxyError::V1Syntax("bad source address"))?;
    let dst = ip(next()?).ok_or(ProxyError::V1Syntax("bad destination address"))?;
    let sport = port(next()?).ok_or(ProxyError::V1Syntax("bad source port"))?;
    let dport = port(next()?).ok_or(ProxyError::V1Syntax("bad destination port"))?;
    if words.next().is_some() {
        return Err(ProxyError::V1Syntax("too many fields"));
    }
    Ok(Header::Proxied {
        source: SocketAddr::new(src, sport),
        destination: SocketAddr::new(dst, dport),
    })
}

/// A decimal port: digits only, no leading zero.
fn port(s: &str) -> Option<u16> {
    let digits = !s.is_empty() && s.len() <= 5 && s.bytes().all(|b| b.is_ascii_digit());
    (digits && (s == "0" || !s.starts_with('0')))
        .then(|| s.parse().ok())
        .flatten()
}

fn v2(buf: &[u8]) -> Result<Parse, ProxyError> {
    let Some(fixed) = buf.get(..16) else {
        return Ok(Parse::Incomplete);
    };
    let version = fixed[12] >> 4;
    let command = fixed[12] & 0x0f;
    let family = fixed[13];
    let len = usize::from(u16::from_be_bytes([fixed[14], fixed[15]]));
    if version != 2 {
        return Err(ProxyError::V2Version(version));
    }
    if command > 1 {
        return Err(ProxyError::V2Command(command));
    }
    if len > V2_MAX_LEN {
        return Err(ProxyError::V2TooLong(len));
    }
    let Some(block) = buf.get(16..16 + len) else {
        return Ok(Parse::Incomplete);
    };
    let header = if command == 0 {
        // LOCAL: the proxy speaking for itself; the address block is ignored.
        Header::Local
    } else {
        match family {
            0x00 | 0x31 => Header::Local,
            0x11 => {
                let a = block.get(..12).ok_or(ProxyError::V2Truncated)?;
                let ip =
                    |at: usize| IpAddr::V4(Ipv4Addr::new(a[at], a[at + 1], a[at + 2], a[at + 3]));
                Header::Proxied {
                    source: SocketAddr::new(ip(0), u16::from_be_bytes([a[8], a[9]])),
                    destination: SocketAddr::new(ip(4), u16::from_be_bytes([a[10], a[11]])),
                }
            }
            0x21 => {
                let a = block.get(..36).ok_or(ProxyError::V2Truncated)?;
                let ip = |at: usize| {
                    let mut octets = [0u8; 16];
                    octets.copy_from_slice(&a[at..at + 16]);
                    IpAddr::V6(Ipv6Addr::from(octets))
                };
                Header::Proxied {
                    source: SocketAddr::new(ip(0), u16::from_be_bytes([a[32], a[33]])),
                    destination: SocketAddr::new(ip(16), u16::from_be_bytes([a[34], a[35]])),
                }
            }
            other => return Err(ProxyError::V2Family(other)),
        }
    };
    Ok(Parse::Complete {
        header,
        len: 16 + len,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(buf: &[u8]) -> (Header, usize) {
        match parse(buf) {
            Ok(Parse::Complete { header, len }) => (header, len),
            other => panic!("{buf:?}: {other:?}"),
        }
    }

    fn proxied(src: &str, dst: &str) -> Header {
        Header::Proxied {
            source: src.parse().unwrap(),
            destination: dst.parse().unwrap(),
        }
    }

    /// Every strict prefix of a valid header asks for more bytes.
    fn every_prefix_is_incomplete(header: &[u8]) {
        for n in 0..header.len() {
            assert_eq!(
                parse(&header[..n]),
                Ok(Parse::Incomplete),
                "prefix of {n} octets"
            );
        }
    }

    fn v2_header(command: u8, family: u8, block: &[u8]) -> Vec<u8> {
        let mut h = V2_SIGNATURE.to_vec();
        h.push(0x20 | command);
        h.push(family);
        h.extend_from_slice(&(block.len() as u16).to_be_bytes());
        h.extend_from_slice(block);
        h
    }

    // --- v1 --------------------------------------------------------------------------------------

    #[test]
    fn v1_tcp4() {
        let line = b"PROXY TCP4 198.51.100.22 203.0.113.7 35646 25\r\n";
        assert_eq!(
            complete(line),
            (proxied("198.51.100.22:35646", "203.0.113.7:25"), line.len())
        );
        every_prefix_is_incomplete(line);
    }

    #[test]
    fn v1_tcp6() {
        let line = b"PROXY TCP6 2001:db8::1 2001:db8::2 65535 0\r\n";
        assert_eq!(
            complete(line).0,
            proxied("[2001:db8::1]:65535", "[2001:db8::2]:0")
        );
    }

    #[test]
    fn v1_unknown_ignores_the_rest_of_the_line() {
        assert_eq!(complete(b"PROXY UNKNOWN\r\n"), (Header::Local, 15));
        assert_eq!(
            complete(b"PROXY UNKNOWN ffff:f...f:ffff 1.2.3.4 1 2\r\n").0,
            Header::Local
        );
    }

    #[test]
    fn v1_leaves_the_client_bytes_after_the_header() {
        let mut buf = b"PROXY TCP4 192.0.2.1 192.0.2.2 1000 25\r\n".to_vec();
        let header_len = buf.len();
        buf.extend_from_slice(b"EHLO x\r\n");
        assert_eq!(complete(&buf).1, header_len);
    }

    #[test]
    fn v1_the_longest_line_fits_and_one_more_octet_does_not() {
        let longest = format!(
            "PROXY UNKNOWN {a} {a} 65535 65535\r\n",
            a = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
        );
        assert_eq!(longest.len(), V1_MAX);
        assert!(matches!(
            parse(longest.as_bytes()),
            Ok(Parse::Complete { .. })
        ));
        let mut endless = b"PROXY UNKNOWN ".to_vec();
        endless.resize(V1_MAX - 1, b'x');
        assert_eq!(parse(&endless), Ok(Parse::Incomplete));
        endless.push(b'x');
        assert_eq!(parse(&endless), Err(ProxyError::V1TooLong));
        endless.extend_from_slice(b"\r\n");
        assert_eq!(parse(&endless), Err(ProxyError::V1TooLong));
    }

    #[test]
    fn v1_refuses_what_the_spec_does_not_define() {
        for bad in [
            &b"PROXY TCP4 198.51.100.22 203.0.113.7 35646 25\n"[..],
            b"PROXY TCP4 198.51.100.22 203.0.113.7 35646\r\n",
            b"PROXY TCP4 198.51.100.22 203.0.113.7 35646 25 7\r\n",
            b"PROXY TCP4  198.51.100.22 203.0.113.7 35646 25\r\n",
            b"PROXY TCP4 198.51.100.22 203.0.113.7 35646 25 \r\n",
            b"PROXY TCP4 2001:db8::1 203.0.113.7 35646 25\r\n",
            b"PROXY TCP6 198.51.100.22 2001:db8::2 35646 25\r\n",
            b"PROXY TCP4 198.51.100.256 203.0.113.7 35646 25\r\n",
            b"PROXY TCP4 198.51.100.22 203.0.113.7 65536 25\r\n",
            b"PROXY TCP4 198.51.100.22 203.0.113.7 +1 25\r\n",
            b"PROXY TCP4 198.51.100.22 203.0.113.7 025 25\r\n",
            b"PROXY TCP4 198.51.100.22 203.0.113.7 -1 25\r\n",
            b"PROXY tcp4 198.51.100.22 203.0.113.7 35646 25\r\n",
            b"PROXY UDP4 198.51.100.22 203.0.113.7 35646 25\r\n",
            b"PROXY \r\n",
            b"PROXY TCP4 198.51.100.22\t203.0.113.7 35646 25\r\n",
            b"PROXY TCP4 198.51.100.22 203.0.113.7 35646 25\r\r\n",
            b"PROXY UNKNOWN \xff\r\n",
        ] {
            assert!(
                matches!(parse(bad), Err(ProxyError::V1Syntax(_))),
                "{:?}: {:?}",
                String::from_utf8_lossy(bad),
                parse(bad)
            );
        }
    }

    // --- neither ---------------------------------------------------------------------------------

    #[test]
    fn smtp_and_garbage_are_not_proxy_headers() {
        for bad in [
            &b"EHLO mx.example.org\r\n"[..],
            b"proxy TCP4 1.2.3.4 1.2.3.4 1 2\r\n",
            b"PROXYTCP4",
            b"\r\n\r\n\0\r\nQUIX\n",
            b"\r\nX",
            b"\x16\x03\x01\x02\x00",
            b"GET / HTTP/1.1\r\n",
        ] {
            assert_eq!(parse(bad), Err(ProxyError::NotProxy), "{bad:?}");
        }
        assert_eq!(parse(b""), Ok(Parse::Incomplete));
        assert_eq!(parse(b"PRO"), Ok(Parse::Incomplete));
        assert_eq!(parse(b"\r\n\r\n"), Ok(Parse::Incomplete));
    }

    // --- v2 --------------------------------------------------------------------------------------

    #[test]
    fn v2_tcp4() {
        let block = [198, 51, 100, 22, 203, 0, 113, 7, 0x8b, 0x3e, 0, 25];
        let header = v2_header(1, 0x11, &block);
        assert_eq!(
            complete(&header),
            (proxied("198.51.100.22:35646", "203.0.113.7:25"), 28)
        );
        every_prefix_is_incomplete(&header);
    }

    #[test]
    fn v2_tcp6() {
        let src: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let dst: Ipv6Addr = "2001:db8::2".parse().unwrap();
        let mut block = src.octets().to_vec();
        block.extend_from_slice(&dst.octets());
        block.extend_from_slice(&[0x30, 0x39, 0, 25]);
        let header = v2_header(1, 0x21, &block);
        assert_eq!(
            complete(&header),
            (proxied("[2001:db8::1]:12345", "[2001:db8::2]:25"), 52)
        );
    }

    #[test]
    fn v2_skips_tlvs_and_leaves_the_client_bytes() {
        let mut block = vec![192, 0, 2, 1, 192, 0, 2, 2, 0, 1, 0, 25];
        // PP2_TYPE_AUTHORITY "mx", then PP2_TYPE_NOOP of 3 octets.
        block.extend_from_slice(&[0x02, 0, 2, b'm', b'x', 0x04, 0, 3, 0, 0, 0]);
        let mut buf = v2_header(1, 0x11, &block);
        let header_len = buf.len();
        buf.extend_from_slice(b"EHLO x\r\n");
        assert_eq!(
            complete(&buf),
            (proxied("192.0.2.1:1", "192.0.2.2:25"), header_len)
        );
    }

    #[test]
    fn v2_local_and_non_ip_families_use_the_real_peer() {
        // LOCAL ignores whatever follows, even an IPv4 block.
        let block = [198, 51, 100, 22, 203, 0, 113, 7, 0, 1, 0, 25];
        assert_eq!(complete(&v2_header(0, 0x11, &block)).0, Header::Local);
        assert_eq!(complete(&v2_header(0, 0x00, &[])).0, Header::Local);
        assert_eq!(complete(&v2_header(1, 0x00, &[])).0, Header::Local);
        assert_eq!(complete(&v2_header(1, 0x31, &[0; 216])).0, Header::Local);
    }

    #[test]
    fn v2_refusals() {
        let block = [198, 51, 100, 22, 203, 0, 113, 7, 0, 1, 0, 25];
        let mut wrong_version = v2_header(1, 0x11, &block);
        wrong_version[12] = 0x11;
        assert_eq!(parse(&wrong_version), Err(ProxyError::V2Version(1)));
        assert_eq!(
            parse(&v2_header(2, 0x11, &block)),
            Err(ProxyError::V2Command(2))
        );
        for datagram in [0x12, 0x22, 0x32, 0x10, 0x41] {
            assert_eq!(
                parse(&v2_header(1, datagram, &block)),
                Err(ProxyError::V2Family(datagram))
            );
        }
        assert_eq!(
            parse(&v2_header(1, 0x11, &block[..11])),
            Err(ProxyError::V2Truncated)
        );
        assert_eq!(
            parse(&v2_header(1, 0x21, &[0; 35])),
            Err(ProxyError::V2Truncated)
        );
    }

    #[test]
    fn v2_oversized_headers_are_refused_before_they_arrive() {
        let mut fixed = v2_header(1, 0x11, &[]);
        fixed[14..16].copy_from_slice(&((V2_MAX_LEN + 1) as u16).to_be_bytes());
        assert_eq!(parse(&fixed), Err(ProxyError::V2TooLong(V2_MAX_LEN + 1)));
        fixed[14..16].copy_from_slice(&u16::MAX.to_be_bytes());
        assert_eq!(
            parse(&fixed),
            Err(ProxyError::V2TooLong(usize::from(u16::MAX)))
        );
        let largest = v2_header(1, 0x31, &[0; V2_MAX_LEN]);
        assert_eq!(largest.len(), MAX_HEADER);
        assert_eq!(complete(&largest), (Header::Local, MAX_HEADER));
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_never_claim_more_than_they_hold() {
        // A small deterministic fuzz: xorshift over lengths and bytes, seeded with both signatures.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for round in 0..20_000 {
            let len = (next() % 64) as usize;
            let mut buf: Vec<u8> = match round % 3 {
                0 => V2_SIGNATURE.to_vec(),
                1 => V1_PREFIX.to_vec(),
                _ => Vec::new(),
            };
            buf.extend((0..len).map(|_| next() as u8));
            if let Ok(Parse::Complete { len, .. }) = parse(&buf) {
                assert!(len <= buf.len() && len <= MAX_HEADER);
            }
        }
    }
}
