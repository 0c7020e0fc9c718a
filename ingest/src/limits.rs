//! Per-client connection limits: how many connections one client may hold open, and how fast it may
//! open new ones.
//!
//! Pure bookkeeping with the time passed in, so every rule is a unit test with a fake clock; the
//! server keeps one [`IpLimits`] behind a mutex (every call is a hash lookup), calls
//! [`IpLimits::admit`] when a connection's client is known (after any PROXY header) and
//! [`IpLimits::release`] when it closes.
//!
//! - A "client" is an IPv4 address, or an IPv6 `/64`: one IPv6 host usually owns a whole `/64`, so
//!   counting single IPv6 addresses would limit nothing.
//! - The rate is a token bucket per client holding a minute's worth of connections and refilled
//!   continuously: `rate` connections in a burst, then `rate` per minute. Every attempt takes a
//!   token, including one then refused for concurrency, so a client that retries in a tight loop
//!   stays throttled.
//! - Memory is bounded. An entry that holds no open connection and a full bucket says nothing a new
//!   entry would not, so it is dropped on release, or by a sweep that runs when the table has
//!   doubled since the last one (amortised O(1) per admission). Past [`MAX_TRACKED`] clients, even
//!   partial buckets of idle clients are forgotten: under a flood from that many addresses the rate
//!   is no longer enforced for them, but memory stays bounded, and the global connection cap still
//!   holds. Entries with open connections are bounded by that cap.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

use maildrop_runtime::cidr::Cidr;

/// Clients tracked before idle ones are forgotten, bucket and all.
pub const MAX_TRACKED: usize = 65_536;
/// The table size below which no sweep runs.
const MIN_SWEEP: usize = 1024;

/// Why a connection is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The client already holds this many connections, the limit.
    TooManyConnections { open: u32 },
    /// The client opened connections faster than the rate allows.
    TooFast,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    open: u32,
    tokens: f64,
    updated: Instant,
}

/// The limits and the state of every client that has state.
#[derive(Debug)]
pub struct IpLimits {
    /// Open connections per client; 0 for no limit.
    max_open: u32,
    /// New connections per client and minute; 0 for no limit.
    rate_per_minute: u32,
    entries: HashMap<IpAddr, Entry>,
    sweep_at: usize,
}

impl IpLimits {
    pub fn new(max_open: u32, rate_per_minute: u32) -> Self {
        Self {
            max_open,
            rate_per_minute,
            entries: HashMap::new(),
            sweep_at: MIN_SWEEP,
        }
    }

    /// Whether any limit is set; when none is, the server need not call in at all.
    pub fn is_enabled(&self) -> bool {
        self.max_open > 0 || self.rate_per_minute > 0
    }

    /// The client an address counts as: itself for IPv4, its `/64` for IPv6.
    pub fn client(ip: IpAddr) -> IpAddr {
        let ip = ip.to_canonical();
        if ip.is_ipv4() {
            ip
        } else {
            Cidr::containing(ip, 64).addr()
        }
    }

    /// Counts a new connection from `ip` at `now`, or says why it is refused. Every `Ok` must be
    /// matched by one [`IpLimits::release`].
    pub fn admit(&mut self, ip: IpAddr, now: Instant) -> Result<(), Refusal> {
        if !self.is_enabled() {
            return Ok(());
        }
        if self.entries.len() >= self.sweep_at {
            self.sweep(now);
        }
        let capacity = f64::from(self.rate_per_minute);
        let entry = self.entries.entry(Self::client(ip)).or_insert(Entry {
            open: 0,
            tokens: capacity,
            updated: now,
        });
        refill(entry, self.rate_per_minute, now);
        if self.rate_per_minute > 0 {
            if entry.tokens < 1.0 {
                return Err(Refusal::TooFast);
            }
            entry.tokens -= 1.0;
        }
        if self.max_open > 0 && entry.open >= self.max_open {
            return Err(Refusal::TooManyConnections { open: entry.open });
        }
        entry.open += 1;
        Ok(())
    }

    /// A connection admitted for `ip` has closed.
    pub fn release(&mut self, ip: IpAddr, now: Instant) {
        let client = Self::client(ip);
        let rate = self.rate_per_minute;
        if let Some(entry) = self.entries.get_mut(&client) {
            entry.open = entry.open.saturating_sub(1);
            if is_idle(entry, rate, now) {
                self.entries.remove(&client);
            }
        }
    }

    /// Clients with state (for tests and metrics).
    pub fn tracked(&self) -> usize {
        self.entries.len()
    }

    fn sweep(&mut self, now: Instant) {
        let rate = self.rate_per_minute;
        self.entries.retain(|_, e| !is_idle(e, rate, now));
        if self.entries.len() >= MAX_TRACKED {
            self.entries.retain(|_, e| e.open > 0);
        }
        self.sweep_at = (self.entries.len() * 2).max(MIN_SWEEP);
    }
}

fn refill(entry: &mut Entry, rate_per_minute: u32, now: Instant) {
    let elapsed = now.saturating_duration_since(entry.updated).as_secs_f64();
    let capacity = f64::from(rate_per_minute);
    entry.tokens = (entry.tokens + elapsed * capacity / 60.0).min(capacity);
    entry.updated = entry.updated.max(now);
}

/// No open connection and a full bucket: the entry can go.
fn is_idle(entry: &mut Entry, rate_per_minute: u32, now: Instant) -> bool {
    refill(entry, rate_per_minute, now);
    entry.open == 0 && entry.tokens >= f64::from(rate_per_minute)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    const A: &str = "192.0.2.1";
    const B: &str = "192.0.2.2";

    #[test]
    fn concurrent_connections_are_capped_per_client() {
        let t = Instant::now();
        let mut l = IpLimits::new(2, 0);
        assert_eq!(l.admit(ip(A), t), Ok(()));
        assert_eq!(l.admit(ip(A), t), Ok(()));
        assert_eq!(
            l.admit(ip(A), t),
            Err(Refusal::TooManyConnections { open: 2 })
        );
        assert_eq!(l.admit(ip(B), t), Ok(()), "other clients are not affected");
        l.release(ip(A), t);
        assert_eq!(l.admit(ip(A), t), Ok(()));
    }

    #[test]
    fn the_rate_allows_a_burst_then_refills_over_time() {
        let t = Instant::now();
        let mut l = IpLimits::new(0, 3);
        for _ in 0..3 {
            assert_eq!(l.admit(ip(A), t), Ok(()));
            l.release(ip(A), t);
        }
        assert_eq!(l.admit(ip(A), t), Err(Refusal::TooFast));
        assert_eq!(l.admit(ip(B), t), Ok(()));
        // 3 per minute: one token every 20 s.
        assert_eq!(
            l.admit(ip(A), t + Duration::from_secs(19)),
            Err(Refusal::TooFast)
        );
        assert_eq!(l.admit(ip(A), t + Duration::from_secs(20)), Ok(()));
        assert_eq!(
            l.admit(ip(A), t + Duration::from_secs(21)),
            Err(Refusal::TooFast)
        );
        // After a long pause the bucket is full again, but no fuller.
        let later = t + Duration::from_secs(3600);
        for _ in 0..3 {
            assert_eq!(l.admit(ip(A), later), Ok(()));
        }
        assert_eq!(l.admit(ip(A), later), Err(Refusal::TooFast));
    }

    #[test]
    fn refused_attempts_still_cost_a_token() {
        let t = Instant::now();
        let mut l = IpLimits::new(1, 3);
        assert_eq!(l.admit(ip(A), t), Ok(()));
        assert_eq!(
            l.admit(ip(A), t),
            Err(Refusal::TooManyConnections { open: 1 })
        );
        assert_eq!(
            l.admit(ip(A), t),
            Err(Refusal::TooManyConnections { open: 1 })
        );
        l.release(ip(A), t);
        assert_eq!(l.admit(ip(A), t), Err(Refusal::TooFast));
    }

    #[test]
    fn an_ipv6_client_is_its_slash_64() {
        let t = Instant::now();
        let mut l = IpLimits::new(1, 0);
        assert_eq!(l.admit(ip("2001:db8:1:2::1"), t), Ok(()));
        assert_eq!(
            l.admit(ip("2001:db8:1:2:ffff::9"), t),
            Err(Refusal::TooManyConnections { open: 1 })
        );
        assert_eq!(l.admit(ip("2001:db8:1:3::1"), t), Ok(()));
        l.release(ip("2001:db8:1:2:aaaa::"), t);
        assert_eq!(l.admit(ip("2001:db8:1:2::1"), t), Ok(()));
    }

    #[test]
    fn ipv4_mapped_addresses_count_as_ipv4() {
        let t = Instant::now();
        let mut l = IpLimits::new(1, 0);
        assert_eq!(l.admit(ip("::ffff:192.0.2.1"), t), Ok(()));
        assert!(l.admit(ip(A), t).is_err());
    }

    #[test]
    fn no_limits_keep_no_state() {
        let t = Instant::now();
        let mut l = IpLimits::new(0, 0);
        assert!(!l.is_enabled());
        for _ in 0..1000 {
            assert_eq!(l.admit(ip(A), t), Ok(()));
        }
        assert_eq!(l.tracked(), 0);
    }

    #[test]
    fn idle_clients_are_forgotten_on_release() {
        let t = Instant::now();
        let mut l = IpLimits::new(5, 0);
        l.admit(ip(A), t).unwrap();
        assert_eq!(l.tracked(), 1);
        l.release(ip(A), t);
        assert_eq!(l.tracked(), 0);
        // With a rate, the entry stays until its bucket has refilled.
        let mut l = IpLimits::new(5, 60);
        l.admit(ip(A), t).unwrap();
        l.release(ip(A), t);
        assert_eq!(l.tracked(), 1);
        l.admit(ip(A), t + Duration::from_secs(2)).unwrap();
        l.release(ip(A), t + Duration::from_secs(4));
        assert_eq!(l.tracked(), 0);
    }

    #[test]
    fn memory_stays_bounded_under_a_flood_of_addresses() {
        let t = Instant::now();
        let mut l = IpLimits::new(20, 60);
        let mut held = Vec::new();
        for i in 0..200_000u32 {
            // All at one instant, so no bucket refills and only the hard cap can forget anyone.
            let a = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            l.admit(a, t).unwrap();
            // Every 1000th client keeps its connection open; the others close at once.
            if i % 1000 == 0 {
                held.push(a);
            } else {
                l.release(a, t);
            }
            assert!(l.tracked() <= MAX_TRACKED + held.len(), "at {i}");
        }
        // Held connections are never forgotten: their clients are still limited.
        let end = t + Duration::from_secs(200);
        for a in &held {
            for _ in 1..20 {
                l.admit(*a, end).unwrap();
            }
            assert_eq!(
                l.admit(*a, end),
                Err(Refusal::TooManyConnections { open: 20 })
            );
        }
    }

    #[test]
    fn a_sweep_drops_refilled_entries() {
        let t = Instant::now();
        let mut l = IpLimits::new(0, 60);
        for i in 0..MIN_SWEEP as u32 {
            let a = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            l.admit(a, t).unwrap();
            l.release(a, t);
        }
        assert_eq!(l.tracked(), MIN_SWEEP);
        // A minute later every bucket is full; the next admission sweeps them.
        l.admit(ip(A), t + Duration::from_secs(60)).unwrap();
        assert_eq!(l.tracked(), 1);
    }
}
