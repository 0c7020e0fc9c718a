//! IP networks in CIDR notation and lists of them, for the flags that name trusted or exempt
//! clients.
//!
//! Small enough to own rather than pull in a crate: parse `addr/prefix` (or a bare address, which is
//! a host route), refuse host bits set past the prefix (`10.0.0.1/8` is almost always a typo, and a
//! silently widened trust list is the kind of mistake nobody sees), and test membership with a mask
//! on the address as an integer. Addresses are compared in canonical form, so an IPv4 client
//! reaching a dual-stack listener as `::ffff:192.0.2.1` matches `192.0.2.0/24`.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// One network: an address and the length of its prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

/// Why a network does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    #[error("{0:?} is not an IP address")]
    Address(String),
    #[error("{0:?} has a bad prefix length")]
    Prefix(String),
    #[error("{0:?} has bits set after its prefix (did you mean {1}?)")]
    HostBits(String, Cidr),
}

impl Cidr {
    pub fn new(addr: IpAddr, prefix: u8) -> Option<Self> {
        let addr = addr.to_canonical();
        (prefix <= max_prefix(addr)).then_some(Self { addr, prefix })
    }

    /// The network of `prefix` bits that holds `ip`.
    pub fn containing(ip: IpAddr, prefix: u8) -> Self {
        let ip = ip.to_canonical();
        let prefix = prefix.min(max_prefix(ip));
        Self {
            addr: mask(ip, prefix),
            prefix,
        }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        ip.is_ipv4() == self.addr.is_ipv4() && mask(ip, self.prefix) == self.addr
    }

    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }
}

fn max_prefix(ip: IpAddr) -> u8 {
    if ip.is_ipv4() { 32 } else { 128 }
}

fn mask(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let keep = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4((bits & keep).into())
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let keep = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6((bits & keep).into())
        }
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (s, None),
        };
        let written: IpAddr = addr.parse().map_err(|_| CidrError::Address(s.to_owned()))?;
        let addr = written.to_canonical();
        let prefix = match prefix {
            None => max_prefix(addr),
            Some(p) if !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()) => {
                let p: u8 = p.parse().map_err(|_| CidrError::Prefix(s.to_owned()))?;
                if written.is_ipv6() && addr.is_ipv4() {
                    // `::ffff:a.b.c.d/n` is the IPv4 network of n - 96 bits.
                    p.checked_sub(96)
                        .ok_or_else(|| CidrError::Prefix(s.to_owned()))?
                } else {
                    p
                }
            }
            Some(_) => return Err(CidrError::Prefix(s.to_owned())),
        };
        let cidr = Self::new(addr, prefix).ok_or_else(|| CidrError::Prefix(s.to_owned()))?;
        if mask(addr, prefix) != addr {
            return Err(CidrError::HostBits(
                s.to_owned(),
                Self::containing(addr, prefix),
            ));
        }
        Ok(cidr)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// A comma-separated list of networks; the empty string is the empty list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CidrList(Vec<Cidr>);

impl CidrList {
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|net| net.contains(ip))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn networks(&self) -> &[Cidr] {
        &self.0
    }
}

impl FromStr for CidrList {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.split(',')
            .map(str::trim)
            .filter(|part| !part.is_empty())
            .map(str::parse)
            .collect::<Result<_, _>>()
            .map(Self)
    }
}

impl fmt::Display for CidrList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, net) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{net}")?;
        }
        Ok(())
    }
}

/// For clap: a list of networks, with the error as text.
pub fn parse_list(s: &str) -> Result<CidrList, String> {
    s.parse().map_err(|e: CidrError| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn net(s: &str) -> Cidr {
        s.parse().unwrap()
    }

    #[test]
    fn ipv4_membership() {
        let n = net("192.0.2.0/24");
        assert!(n.contains(ip("192.0.2.0")));
        assert!(n.contains(ip("192.0.2.255")));
        assert!(!n.contains(ip("192.0.3.0")));
        assert!(!n.contains(ip("192.0.1.255")));
    }

    #[test]
    fn ipv6_membership() {
        let n = net("2001:db8::/32");
        assert!(n.contains(ip("2001:db8:ffff::1")));
        assert!(!n.contains(ip("2001:db9::1")));
        assert!(net("::1/128").contains(ip("::1")));
        assert!(!net("::1/128").contains(ip("::2")));
    }

    #[test]
    fn families_never_match_each_other() {
        assert!(!net("0.0.0.0/0").contains(ip("::1")));
        assert!(!net("::/0").contains(ip("127.0.0.1")));
    }

    #[test]
    fn zero_prefix_matches_its_whole_family() {
        assert!(net("0.0.0.0/0").contains(ip("203.0.113.9")));
        assert!(net("::/0").contains(ip("2001:db8::1")));
    }

    #[test]
    fn ipv4_mapped_clients_match_ipv4_networks() {
        assert!(net("127.0.0.1/32").contains(ip("::ffff:127.0.0.1")));
        assert!(net("::ffff:10.0.0.0/104").contains(ip("10.1.2.3")));
        assert_eq!(net("::ffff:10.0.0.0/104"), net("10.0.0.0/8"));
    }

    #[test]
    fn a_bare_address_is_a_host() {
        assert_eq!(net("192.0.2.1"), net("192.0.2.1/32"));
        assert_eq!(net("2001:db8::1"), net("2001:db8::1/128"));
    }

    #[test]
    fn bad_networks_are_refused() {
        for bad in [
            "",
            "10.0.0.0/",
            "10.0.0.0/33",
            "::/129",
            "10.0.0.0/+8",
            "10.0.0.0/8/8",
            "10.0.0/8",
            "banana",
            "10.0.0.0/ 8",
            "10.0.0.0/0008",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn host_bits_past_the_prefix_are_a_mistake() {
        let err = "10.0.0.1/8".parse::<Cidr>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "\"10.0.0.1/8\" has bits set after its prefix (did you mean 10.0.0.0/8?)"
        );
    }

    #[test]
    fn containing_masks_the_host_bits() {
        assert_eq!(Cidr::containing(ip("192.0.2.77"), 24), net("192.0.2.0/24"));
        assert_eq!(
            Cidr::containing(ip("2001:db8:1:2:3:4:5:6"), 64),
            net("2001:db8:1:2::/64")
        );
        assert_eq!(Cidr::containing(ip("192.0.2.77"), 64), net("192.0.2.77/32"));
    }

    #[test]
    fn lists() {
        let list = parse_list("127.0.0.1/32, ::1/128").unwrap();
        assert!(list.contains(ip("127.0.0.1")));
        assert!(list.contains(ip("::1")));
        assert!(!list.contains(ip("127.0.0.2")));
        assert_eq!(list.to_string(), "127.0.0.1/32,::1/128");
        assert!(parse_list("").unwrap().is_empty());
        assert!(!parse_list("").unwrap().contains(ip("127.0.0.1")));
        assert!(parse_list("127.0.0.1/32,nope").is_err());
    }
}
