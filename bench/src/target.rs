//! Where the load generator may point: loopback only.
//!
//! A load generator aimed at someone else's server is an attack; every address and URL it takes
//! is checked to be on this machine before anything is sent.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// An SMTP address on loopback: `127.0.0.1:2525`, `[::1]:2525` or `localhost:2525`.
pub fn parse_loopback_addr(s: &str) -> Result<SocketAddr, String> {
    let addr: SocketAddr = match s.strip_prefix("localhost:") {
        Some(port) => {
            let port: u16 = port
                .parse()
                .map_err(|_| format!("{s:?}: {port:?} is not a port"))?;
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)
        }
        None => s
            .parse()
            .map_err(|_| format!("{s:?} is not an address like 127.0.0.1:2525"))?,
    };
    if !addr.ip().is_loopback() {
        return Err(format!(
            "{s:?} is not a loopback address: maildrop-bench only loads this machine"
        ));
    }
    Ok(addr)
}

/// A URL (`nats://`, `redis://`, `ws://`) whose host is loopback.
pub fn parse_loopback_url(s: &str) -> Result<String, String> {
    let host =
        url_host(s).ok_or_else(|| format!("{s:?} is not a URL like nats://127.0.0.1:4222"))?;
    if !is_loopback_host(host) {
        return Err(format!(
            "{s:?}: host {host:?} is not loopback: maildrop-bench only loads this machine"
        ));
    }
    Ok(s.to_owned())
}

/// The host of `scheme://[user[:pass]@]host[:port][/path]`, without brackets for IPv6.
pub fn url_host(url: &str) -> Option<&str> {
    let (_scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(v6) = host_port.strip_prefix('[') {
        v6.split_once(']')?.0
    } else {
        host_port.split(':').next()?
    };
    (!host.is_empty()).then_some(host)
}

fn is_loopback_host(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_addresses_pass() {
        for ok in [
            "127.0.0.1:2525",
            "127.1.2.3:25",
            "[::1]:2525",
            "localhost:2525",
        ] {
            assert!(parse_loopback_addr(ok).is_ok(), "{ok}");
        }
        assert_eq!(
            parse_loopback_addr("localhost:2525").unwrap(),
            "127.0.0.1:2525".parse().unwrap()
        );
    }

    #[test]
    fn anything_else_is_refused() {
        for bad in [
            "10.0.0.1:25",
            "0.0.0.0:25",
            "example.org:25",
            "127.0.0.1",
            "localhost:x",
        ] {
            assert!(parse_loopback_addr(bad).is_err(), "{bad}");
        }
        assert!(
            parse_loopback_addr("192.168.1.1:25")
                .unwrap_err()
                .contains("loopback")
        );
    }

    #[test]
    fn url_hosts_are_found_behind_userinfo_and_ports() {
        assert_eq!(url_host("nats://127.0.0.1:4222"), Some("127.0.0.1"));
        assert_eq!(
            url_host("redis://:secret@localhost:6379/0"),
            Some("localhost")
        );
        assert_eq!(url_host("ws://[::1]:8080/x"), Some("::1"));
        assert_eq!(url_host("ws://127.0.0.1"), Some("127.0.0.1"));
        assert_eq!(url_host("127.0.0.1:4222"), None);
        assert_eq!(url_host("ws://"), None);
    }

    #[test]
    fn only_loopback_urls_pass() {
        assert!(parse_loopback_url("nats://127.0.0.1:4222").is_ok());
        assert!(parse_loopback_url("ws://localhost:8080").is_ok());
        assert!(parse_loopback_url("redis://[::1]:6379").is_ok());
        assert!(parse_loopback_url("nats://demo.nats.io:4222").is_err());
        assert!(parse_loopback_url("redis://user:pw@10.1.1.1:6379").is_err());
        assert!(parse_loopback_url("nonsense").is_err());
    }
}
