//! The filter's one DNS resolver: shared by every DNS rule, caching, bounded in time.
//!
//! Blocklist operators limit and ban clients that ask too often, and a public inbox sees the same
//! spam sources over and over: so every lookup of the filter (DNS blocklists of the client IP, URI
//! blocklists, SPF, DKIM keys, DMARC policies) goes through one hickory resolver with one cache.
//! hickory keeps answers for their TTL, negative answers (`NXDOMAIN`, the usual "not listed") for
//! the TTL of their SOA, up to `MAILDROP_DNS_CACHE_SIZE` entries.
//!
//! mail-auth, which does SPF, DKIM and DMARC, is given *the same* resolver: its
//! [`MessageAuthenticator`] is a thin wrapper around a hickory `TokioResolver`, and a clone of the
//! resolver shares its cache and its connections. (mail-auth's own per-record-type caches are not
//! used: one cache for everything is simpler and is what keeps the blocklist servers unflooded.)
//!
//! A lookup that times out (`MAILDROP_DNS_TIMEOUT`, one attempt per server) or fails (`SERVFAIL`,
//! `REFUSED`, no route) is [`Answer::NoAnswer`]: the rule that wanted it has nothing to say, and
//! the message goes on. Never an error that could hold up or fail a message; the overall bound on
//! a message's lookups is the gather deadline ([`crate::gather`]).
//!
//! `MAILDROP_DNS_SERVERS` names the servers (`ip` or `ip:port`, comma-separated); `system` (the
//! default) reads `/etc/resolv.conf`; `off` makes no lookups at all, and the DNS rules never
//! hit (tests and installations without a resolver they trust).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use clap::Args;
use hickory_resolver::TokioResolver;
use hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::net::NetError;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;
use mail_auth::MessageAuthenticator;
use maildrop_runtime::args::parse_duration;

/// Default `MAILDROP_DNS_TIMEOUT`: one query to one server.
pub const DEFAULT_TIMEOUT: &str = "2s";
/// Default `MAILDROP_DNS_DEADLINE`: all of one message's lookups.
pub const DEFAULT_DEADLINE: &str = "5s";
/// Default `MAILDROP_DNS_CACHE_SIZE`, in answers.
pub const DEFAULT_CACHE_SIZE: u64 = 50_000;

/// The DNS resolver's settings.
#[derive(Debug, Clone, Args)]
pub struct DnsArgs {
    /// DNS servers for the DNS rules: `system` (from /etc/resolv.conf), `off` (no DNS lookups:
    /// the DNS rules never hit), or addresses `ip` / `ip:port` / `[ipv6]:port`, comma-separated.
    #[arg(long, env = "MAILDROP_DNS_SERVERS", default_value = "system", value_parser = parse_servers)]
    pub dns_servers: Servers,
    /// Longest wait for one DNS answer; then the lookup counts as unanswered.
    #[arg(long, env = "MAILDROP_DNS_TIMEOUT", default_value = DEFAULT_TIMEOUT, value_parser = parse_duration)]
    pub dns_timeout: Duration,
    /// Longest time all DNS lookups of one message may take together; what is not answered by
    /// then counts as unanswered, and the message is judged on the rest.
    #[arg(long, env = "MAILDROP_DNS_DEADLINE", default_value = DEFAULT_DEADLINE, value_parser = parse_duration)]
    pub dns_deadline: Duration,
    /// DNS answers kept in the shared cache (each for its TTL).
    #[arg(long, env = "MAILDROP_DNS_CACHE_SIZE", default_value_t = DEFAULT_CACHE_SIZE)]
    pub dns_cache_size: u64,
}

/// Where the DNS rules' questions go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Servers {
    /// The system's resolvers (`/etc/resolv.conf`).
    System,
    /// No lookups.
    Off,
    /// These servers, over UDP (TCP for long answers).
    List(Vec<SocketAddr>),
}

/// Parses `MAILDROP_DNS_SERVERS`.
pub fn parse_servers(s: &str) -> Result<Servers, String> {
    match s.trim() {
        "system" => return Ok(Servers::System),
        "off" => return Ok(Servers::Off),
        _ => {}
    }
    let mut list = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let addr = part
            .parse::<SocketAddr>()
            .or_else(|_| part.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
            .map_err(|_| {
                format!("{part:?} is not a DNS server address (ip, ip:port or [ipv6]:port)")
            })?;
        list.push(addr);
    }
    if list.is_empty() {
        return Err("expected `system`, `off`, or server addresses".into());
    }
    Ok(Servers::List(list))
}

/// The resolver could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum DnsSetupError {
    #[error("cannot read the system's DNS configuration (set MAILDROP_DNS_SERVERS)")]
    SystemConf(#[source] NetError),
    #[error("cannot build the DNS resolver")]
    Build(#[source] NetError),
}

/// The answer to one lookup, as the rules see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer<T> {
    /// The name has records of the asked type.
    Found(Vec<T>),
    /// The name does not exist, or has no records of the type (`NXDOMAIN`, NODATA).
    NotFound,
    /// No usable answer: timeout, `SERVFAIL`, `REFUSED`, unreachable server. Never cached.
    NoAnswer(String),
}

/// The shared, caching resolver. Cloning is cheap and shares the cache.
#[derive(Clone)]
pub struct Dns {
    resolver: TokioResolver,
    auth: MessageAuthenticator,
}

impl Dns {
    /// The resolver `args` describe; `None` when DNS is `off`.
    pub fn from_args(args: &DnsArgs) -> Result<Option<Self>, DnsSetupError> {
        let (config, mut opts) = match &args.dns_servers {
            Servers::Off => return Ok(None),
            Servers::System => hickory_resolver::system_conf::read_system_conf()
                .map_err(DnsSetupError::SystemConf)?,
            Servers::List(list) => {
                let servers = list
                    .iter()
                    .map(|addr| {
                        let mut udp = ConnectionConfig::udp();
                        udp.port = addr.port();
                        let mut tcp = ConnectionConfig::tcp();
                        tcp.port = addr.port();
                        NameServerConfig::new(addr.ip(), true, vec![udp, tcp])
                    })
                    .collect();
                (
                    ResolverConfig::from_name_servers(servers),
                    ResolverOpts::default(),
                )
            }
        };
        opts.timeout = args.dns_timeout;
        // One try per server: the rules would rather have no answer than a late one, and the
        // deadline bounds the whole message anyway.
        opts.attempts = 1;
        opts.cache_size = args.dns_cache_size;
        // Blocklist names are never in /etc/hosts; a stray entry there must not list anybody.
        opts.use_hosts_file = ResolveHosts::Never;
        // Every name the filter asks is fully qualified: no search-list expansions.
        opts.ndots = 0;
        let resolver = TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
            .with_options(opts)
            .build()
            .map_err(DnsSetupError::Build)?;
        Ok(Some(Self {
            auth: MessageAuthenticator(resolver.clone()),
            resolver,
        }))
    }

    /// mail-auth's authenticator, on the same resolver and cache.
    pub fn authenticator(&self) -> &MessageAuthenticator {
        &self.auth
    }

    /// The A records of `name` (fully qualified; a final dot is added).
    pub async fn a(&self, name: &str) -> Answer<Ipv4Addr> {
        let fqdn = fqdn(name);
        match self.resolver.ipv4_lookup(fqdn.as_str()).await {
            Ok(lookup) => {
                let ips: Vec<Ipv4Addr> = lookup
                    .answers()
                    .iter()
                    .filter_map(|r| match &r.data {
                        RData::A(a) => Some(a.0),
                        _ => None,
                    })
                    .collect();
                if ips.is_empty() {
                    Answer::NotFound
                } else {
                    Answer::Found(ips)
                }
            }
            Err(e) if e.is_no_records_found() => Answer::NotFound,
            Err(e) => {
                tracing::debug!(name = %fqdn, error = %e, "DNS lookup unanswered.");
                Answer::NoAnswer(e.to_string())
            }
        }
    }
}

fn fqdn(name: &str) -> String {
    if name.ends_with('.') {
        name.to_owned()
    } else {
        format!("{name}.")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_lists_parse_with_and_without_ports() {
        assert_eq!(parse_servers("system").unwrap(), Servers::System);
        assert_eq!(parse_servers("off").unwrap(), Servers::Off);
        assert_eq!(
            parse_servers("127.0.0.1:5353, 192.0.2.1,[::1]:53,::2").unwrap(),
            Servers::List(vec![
                "127.0.0.1:5353".parse().unwrap(),
                "192.0.2.1:53".parse().unwrap(),
                "[::1]:53".parse().unwrap(),
                "[::2]:53".parse().unwrap(),
            ])
        );
        assert!(
            parse_servers("resolver.example")
                .unwrap_err()
                .contains("resolver.example")
        );
        assert!(parse_servers(",").is_err());
    }

    #[derive(clap::Parser)]
    struct Flags {
        #[command(flatten)]
        dns: DnsArgs,
    }

    #[test]
    fn defaults_and_bad_values_name_their_variable() {
        use clap::Parser;
        let f = Flags::try_parse_from(["x"]).unwrap().dns;
        assert_eq!(f.dns_servers, Servers::System);
        assert_eq!(f.dns_timeout, Duration::from_secs(2));
        assert_eq!(f.dns_deadline, Duration::from_secs(5));
        assert_eq!(f.dns_cache_size, DEFAULT_CACHE_SIZE);
        let f = Flags::try_parse_from(["x", "--dns-servers", "off"])
            .unwrap()
            .dns;
        assert!(
            Dns::from_args(&f).unwrap().is_none(),
            "off: no resolver at all"
        );
        let err = Flags::try_parse_from(["x", "--dns-servers", "ns.example"])
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("--dns-servers") && err.contains("ns.example"),
            "{err}"
        );
        assert!(Flags::try_parse_from(["x", "--dns-timeout", "soon"]).is_err());
    }

    #[tokio::test]
    async fn a_listed_server_list_builds_a_resolver() {
        let f = DnsArgs {
            dns_servers: parse_servers("127.0.0.1:5353").unwrap(),
            dns_timeout: Duration::from_millis(100),
            dns_deadline: Duration::from_millis(500),
            dns_cache_size: 10,
        };
        let dns = Dns::from_args(&f).unwrap().unwrap();
        assert_eq!(dns.resolver.options().timeout, Duration::from_millis(100));
        assert_eq!(dns.resolver.options().attempts, 1);
        assert_eq!(dns.resolver.options().cache_size, 10);
    }

    #[test]
    fn names_are_made_fully_qualified_once() {
        assert_eq!(fqdn("a.example"), "a.example.");
        assert_eq!(fqdn("a.example."), "a.example.");
    }
}
