//! The DNS facts of a message, looked up before its rules run.
//!
//! Rules are pure ([`crate::rules`]); what the DNS rules need is looked up here, all of one
//! message's lookups at once, and put into [`DnsFacts`] (the `dns` group of the message's
//! [`Facts`]):
//!
//! | facts | looked up | rule |
//! |---|---|---|
//! | [`DnsblFacts`] | each `[dnsbl]` zone about the client IP | `dnsbl` |
//! | [`UriblFacts`] | each `[uribl]` zone about each linked domain ([`links`]) | `uribl` |
//! | [`SpfFacts`] | SPF of the envelope sender (of the HELO name for `<>`) | `spf` |
//! | [`DkimFacts`] | every DKIM signature and its key | `dkim` |
//! | [`DmarcFacts`] | the `From` domain's DMARC policy, SPF and DKIM alignment | `dmarc` |
//!
//! Only the enabled rules' facts are looked up (DMARC needs SPF and DKIM, so those are looked up
//! for it even when their own rules are off). Everything goes through the one shared resolver
//! ([`crate::dns`]), and everything of one message must be answered by one deadline
//! (`MAILDROP_DNS_DEADLINE`): a lookup not answered by then, like one that timed out or failed,
//! is *unanswered*, and the message is judged on the rest. Gathering never fails and never
//! holds a message longer than the deadline.
//!
//! The client's DNSBL listings depend on nothing but its IP, so they go through the verdict
//! cache ([`VerdictCache`], keyed by client IP and HELO): a repeat sender's listings are not
//! asked again for its lifetime (24 h by default). Listings with an unanswered zone are not
//! cached; the next message asks again.

pub mod links;

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use futures::future::join_all;
use mail_auth::dmarc::verify::DmarcParameters;
use mail_auth::spf::verify::SpfParameters;
use mail_auth::{AuthenticatedMessage, DkimResult, DmarcResult, SpfResult};
use maildrop_contract::Envelope;
use serde::{Deserialize, Serialize};
use tokio::time::{Instant, timeout_at};

use crate::dns::{Answer, Dns};
use crate::facts::Facts;
use crate::rules::RuleSet;
use crate::rules::dnsbl::DnsblSettings;
use crate::rules::uribl::UriblSettings;
use crate::verdict_cache::VerdictCache;

/// Everything looked up in DNS about one message; each group `None` when not looked up (its rule
/// is off, DNS is off, the client is private, or the message could not be read).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DnsFacts {
    pub dnsbl: Option<DnsblFacts>,
    pub uribl: Option<UriblFacts>,
    pub spf: Option<SpfFacts>,
    pub dkim: Option<DkimFacts>,
    pub dmarc: Option<DmarcFacts>,
}

/// The client IP's DNS blocklist listings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DnsblFacts {
    pub listed: Vec<Listing>,
    /// Zones that gave no usable answer (timeout, failure, an error code).
    pub unanswered: Vec<String>,
}

/// One zone's listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listing {
    pub zone: String,
    /// The zone's answer: its code for why the IP is listed.
    pub answer: Ipv4Addr,
}

/// The linked domains' URI blocklist listings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UriblFacts {
    pub listed: Vec<UriListing>,
    /// Distinct domains looked up.
    pub checked: usize,
    /// Lookups without a usable answer.
    pub unanswered: usize,
}

/// One linked domain listed on one zone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UriListing {
    pub domain: String,
    pub zone: String,
    pub answer: Ipv4Addr,
}

/// The SPF result of the envelope sender's domain (or HELO name).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpfFacts {
    /// The domain whose policy was evaluated.
    pub domain: String,
    pub result: SpfVerdict,
}

/// An SPF result (RFC 7208 section 2.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SpfVerdict {
    Pass,
    Fail,
    SoftFail,
    Neutral,
    None,
    TempError,
    PermError,
}

impl fmt::Display for SpfVerdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Pass => "pass",
            Self::Fail => "fail",
            Self::SoftFail => "softfail",
            Self::Neutral => "neutral",
            Self::None => "none",
            Self::TempError => "temperror",
            Self::PermError => "permerror",
        })
    }
}

impl From<SpfResult> for SpfVerdict {
    fn from(r: SpfResult) -> Self {
        match r {
            SpfResult::Pass => Self::Pass,
            SpfResult::Fail => Self::Fail,
            SpfResult::SoftFail => Self::SoftFail,
            SpfResult::Neutral => Self::Neutral,
            SpfResult::None => Self::None,
            SpfResult::TempError => Self::TempError,
            SpfResult::PermError => Self::PermError,
        }
    }
}

/// A DKIM or DMARC-alignment result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthVerdict {
    Pass,
    Fail,
    Neutral,
    None,
    TempError,
    PermError,
}

impl fmt::Display for AuthVerdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Pass => "pass",
            Self::Fail => "fail",
            Self::Neutral => "neutral",
            Self::None => "none",
            Self::TempError => "temperror",
            Self::PermError => "permerror",
        })
    }
}

/// Every DKIM signature of the message, verified.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DkimFacts {
    pub signatures: Vec<DkimSignature>,
}

/// One DKIM signature's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DkimSignature {
    /// The signing domain (`d=`).
    pub domain: String,
    /// `s=`.
    pub selector: String,
    pub result: AuthVerdict,
    /// Why, in mail-auth's words (`pass`, or the failure).
    pub detail: String,
}

/// The DMARC evaluation of the `From` domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DmarcFacts {
    /// The `From` domain.
    pub domain: String,
    pub policy: DmarcPolicy,
    /// SPF passed for an aligned domain.
    pub spf: AuthVerdict,
    /// A DKIM signature of an aligned domain verified.
    pub dkim: AuthVerdict,
}

/// What a domain's DMARC record asks for failing mail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DmarcPolicy {
    None,
    Quarantine,
    Reject,
    /// No DMARC record (or none could be fetched): DMARC does not apply.
    NoRecord,
}

impl fmt::Display for DmarcPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::None => "none",
            Self::Quarantine => "quarantine",
            Self::Reject => "reject",
            Self::NoRecord => "no record",
        })
    }
}

fn dmarc_verdict(r: &DmarcResult) -> AuthVerdict {
    match r {
        DmarcResult::Pass => AuthVerdict::Pass,
        DmarcResult::Fail(_) => AuthVerdict::Fail,
        DmarcResult::TempError(_) => AuthVerdict::TempError,
        DmarcResult::PermError(_) => AuthVerdict::PermError,
        DmarcResult::None => AuthVerdict::None,
    }
}

/// mail-auth's DKIM result as the rules see it. A body that does not match its signed hash is
/// `neutral` to mail-auth but a failure to us (RFC 6376 section 6.1.3 makes it a PERMFAIL): the
/// message was changed after it was signed, which is what a forger does.
fn dkim_verdict(r: &DkimResult) -> (AuthVerdict, String) {
    match r {
        DkimResult::Pass => (AuthVerdict::Pass, "pass".into()),
        DkimResult::Neutral(
            e @ mail_auth::Error::Dkim(mail_auth::dkim::DkimError::FailedBodyHashMatch),
        ) => (AuthVerdict::Fail, e.to_string()),
        DkimResult::Fail(e) => (AuthVerdict::Fail, e.to_string()),
        DkimResult::Neutral(e) => (AuthVerdict::Neutral, e.to_string()),
        DkimResult::PermError(e) => (AuthVerdict::PermError, e.to_string()),
        DkimResult::TempError(e) => (AuthVerdict::TempError, e.to_string()),
        DkimResult::None => (AuthVerdict::None, "none".into()),
    }
}

/// How a DNSBL answer reads (see the `dnsbl` rule's documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reading {
    Listed(Ipv4Addr),
    /// An error code or a stray answer: no usable answer.
    NoAnswer,
}

/// Reads a DNSBL's A records: listed if one of them is in `127.0.0.0/8` outside Spamhaus's
/// error range `127.255.255.0/24`.
pub fn read_dnsbl(answers: &[Ipv4Addr]) -> Reading {
    answers
        .iter()
        .find(|ip| {
            let [a, b, c, _] = ip.octets();
            a == 127 && (b, c) != (255, 255)
        })
        .map_or(Reading::NoAnswer, |ip| Reading::Listed(*ip))
}

/// Reads a URI blocklist's A records: listed if one of them is in `127.0.0.0/8`, but not
/// `127.0.0.1` (URIBL and SURBL's "refused"), `127.255.255.0/24` or `x.x.x.255` (Spamhaus's
/// error codes).
pub fn read_uribl(answers: &[Ipv4Addr]) -> Reading {
    answers
        .iter()
        .find(|ip| {
            let [a, b, c, d] = ip.octets();
            a == 127 && (b, c) != (255, 255) && d != 255 && **ip != Ipv4Addr::new(127, 0, 0, 1)
        })
        .map_or(Reading::NoAnswer, |ip| Reading::Listed(*ip))
}

/// Whether `ip` is worth asking a public blocklist about: not loopback, private (RFC 1918, IPv6
/// unique-local), link-local, CGNAT, unspecified or multicast.
pub fn is_public(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || (a == 100 && (64..128).contains(&b)))
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80)
        }
    }
}

/// The name a DNS blocklist is asked about `ip` under `zone`: reversed octets (IPv4) or nibbles
/// (IPv6), then the zone.
pub fn dnsbl_name(ip: IpAddr, zone: &str) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            format!("{d}.{c}.{b}.{a}.{zone}")
        }
        IpAddr::V6(v6) => {
            let mut name = String::with_capacity(64 + zone.len());
            for byte in v6.octets().iter().rev() {
                name.push_str(&format!("{:x}.{:x}.", byte & 0xf, byte >> 4));
            }
            name.push_str(zone);
            name
        }
    }
}

/// Looks up the DNS facts of messages.
#[derive(Clone)]
pub struct DnsGatherer {
    /// `None`: DNS is off, nothing is looked up.
    dns: Option<Dns>,
    cache: VerdictCache,
    deadline: Duration,
    /// Our own host name, for SPF's `%{r}` macro.
    host: String,
}

impl DnsGatherer {
    pub fn new(dns: Option<Dns>, cache: VerdictCache, deadline: Duration, host: &str) -> Self {
        Self {
            dns,
            cache,
            deadline,
            host: host.to_owned(),
        }
    }

    /// A gatherer that looks nothing up.
    pub fn off() -> Self {
        Self::new(None, VerdictCache::off(), Duration::ZERO, "localhost")
    }

    /// Looks up what `rules`' enabled DNS rules need about this message, by the deadline, and
    /// puts it into `facts.dns`. Never fails: what is not answered is left out.
    pub async fn gather(
        &self,
        rules: &RuleSet,
        envelope: &Envelope,
        raw: &[u8],
        message: Option<&mail_parser::Message<'_>>,
        facts: &mut Facts,
    ) {
        let Some(dns) = &self.dns else {
            return;
        };
        let settings = rules.settings();
        let deadline = Instant::now() + self.deadline;
        let dnsbl = async {
            if settings.dnsbl.enabled {
                self.dnsbl(dns, &settings.dnsbl, envelope, deadline).await
            } else {
                None
            }
        };
        let uribl = async {
            match message {
                Some(m) if settings.uribl.enabled => {
                    Some(uribl(dns, &settings.uribl, m, deadline).await)
                }
                _ => None,
            }
        };
        let want_spf = settings.spf.enabled || settings.dmarc.enabled;
        let want_dkim = settings.dkim.enabled || settings.dmarc.enabled;
        let auth = self.authenticate(
            dns,
            envelope,
            raw,
            (want_spf, want_dkim, settings.dmarc.enabled),
            deadline,
        );
        let (dnsbl, uribl, (spf, dkim, dmarc)) = tokio::join!(dnsbl, uribl, auth);
        let d = &mut facts.dns;
        d.dnsbl = dnsbl;
        d.uribl = uribl;
        d.spf = spf.filter(|_| settings.spf.enabled);
        d.dkim = dkim.filter(|_| settings.dkim.enabled);
        d.dmarc = dmarc;
    }

    async fn dnsbl(
        &self,
        dns: &Dns,
        settings: &DnsblSettings,
        envelope: &Envelope,
        deadline: Instant,
    ) -> Option<DnsblFacts> {
        let ip = envelope.client_ip.to_canonical();
        if !settings.check_private && !is_public(ip) {
            return None;
        }
        let key = settings.cache_key();
        if let Ok(Some(cached)) = timeout_at(
            deadline,
            self.cache.get::<DnsblFacts>(ip, &envelope.helo, &key),
        )
        .await
        {
            tracing::debug!(client_ip = %ip, "DNSBL listings from the verdict cache.");
            return Some(cached);
        }
        let answers = join_all(settings.zones.iter().map(|zone| async move {
            let name = dnsbl_name(ip, &zone.zone);
            let answer = timeout_at(deadline, dns.a(&name)).await;
            (zone.zone.clone(), answer)
        }))
        .await;
        let mut facts = DnsblFacts::default();
        for (zone, answer) in answers {
            match answer {
                Ok(Answer::Found(ips)) => match read_dnsbl(&ips) {
                    Reading::Listed(answer) => facts.listed.push(Listing { zone, answer }),
                    Reading::NoAnswer => {
                        tracing::warn!(zone = %zone, answers = ?ips, "DNSBL answered an error code; counted as no answer.");
                        facts.unanswered.push(zone);
                    }
                },
                Ok(Answer::NotFound) => {}
                Ok(Answer::NoAnswer(_)) | Err(_) => facts.unanswered.push(zone),
            }
        }
        if facts.unanswered.is_empty() {
            // Bounded by the deadline like the rest; a slow cache only loses the caching.
            let _ = timeout_at(deadline, self.cache.put(ip, &envelope.helo, &key, &facts)).await;
        }
        Some(facts)
    }

    /// SPF, DKIM and DMARC: `(spf, dkim, dmarc)` as wanted.
    async fn authenticate(
        &self,
        dns: &Dns,
        envelope: &Envelope,
        raw: &[u8],
        (want_spf, want_dkim, want_dmarc): (bool, bool, bool),
        deadline: Instant,
    ) -> (Option<SpfFacts>, Option<DkimFacts>, Option<DmarcFacts>) {
        let auth = dns.authenticator();
        let ip = envelope.client_ip.to_canonical();
        let helo = envelope.helo.as_str();
        let sender = envelope.mail_from.as_str();
        let message = AuthenticatedMessage::parse(raw);

        let spf = async {
            if !want_spf {
                return None;
            }
            let params = if sender.is_empty() {
                SpfParameters::verify_ehlo(ip, helo, &self.host)
            } else {
                SpfParameters::verify_mail_from(ip, helo, &self.host, sender)
            };
            timeout_at(deadline, auth.verify_spf(params)).await.ok()
        };
        let dkim = async {
            match &message {
                Some(m) if want_dkim => timeout_at(deadline, auth.verify_dkim(m)).await.ok(),
                _ => None,
            }
        };
        let (spf, dkim) = tokio::join!(spf, dkim);

        let dmarc = match (&message, &spf, &dkim) {
            (Some(m), Some(spf), Some(dkim)) if want_dmarc => {
                let mail_from_domain = sender.rsplit_once('@').map_or(helo, |(_, d)| d);
                let params = DmarcParameters {
                    message: m,
                    dkim_output: dkim,
                    dkim2_output: None,
                    rfc5321_mail_from_domain: mail_from_domain,
                    spf_output: spf,
                };
                timeout_at(deadline, auth.verify_dmarc(params))
                    .await
                    .ok()
                    .filter(|out| !out.domain().is_empty())
                    .map(|out| DmarcFacts {
                        domain: out.domain().to_owned(),
                        policy: match out.dmarc_record() {
                            None => DmarcPolicy::NoRecord,
                            Some(_) => match out.policy() {
                                mail_auth::dmarc::Policy::Reject => DmarcPolicy::Reject,
                                mail_auth::dmarc::Policy::Quarantine => DmarcPolicy::Quarantine,
                                _ => DmarcPolicy::None,
                            },
                        },
                        spf: dmarc_verdict(out.spf_result()),
                        dkim: dmarc_verdict(out.dkim_result()),
                    })
            }
            _ => None,
        };

        let spf = spf.map(|out| SpfFacts {
            domain: out.domain().to_owned(),
            result: out.result().into(),
        });
        let dkim = dkim.map(|outputs| DkimFacts {
            signatures: outputs
                .iter()
                .map(|out| {
                    let (result, detail) = dkim_verdict(out.result());
                    let (domain, selector) = out
                        .signature()
                        .map(|s| (s.d.clone(), s.s.clone()))
                        .unwrap_or_default();
                    DkimSignature {
                        domain,
                        selector,
                        result,
                        detail,
                    }
                })
                .collect(),
        });
        (spf, dkim, dmarc)
    }
}

async fn uribl(
    dns: &Dns,
    settings: &UriblSettings,
    message: &mail_parser::Message<'_>,
    deadline: Instant,
) -> UriblFacts {
    let domains = links::linked_domains(message, settings.max_lookups);
    let lookups = domains.iter().flat_map(|domain| {
        settings.zones.iter().map(move |zone| async move {
            let name = format!("{domain}.{}", zone.zone);
            (domain, zone, timeout_at(deadline, dns.a(&name)).await)
        })
    });
    let mut facts = UriblFacts {
        checked: domains.len(),
        ..UriblFacts::default()
    };
    for (domain, zone, answer) in join_all(lookups).await {
        match answer {
            Ok(Answer::Found(ips)) => match read_uribl(&ips) {
                Reading::Listed(answer) => facts.listed.push(UriListing {
                    domain: domain.clone(),
                    zone: zone.zone.clone(),
                    answer,
                }),
                Reading::NoAnswer => facts.unanswered += 1,
            },
            Ok(Answer::NotFound) => {}
            Ok(Answer::NoAnswer(_)) | Err(_) => facts.unanswered += 1,
        }
    }
    facts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ips(list: &[[u8; 4]]) -> Vec<Ipv4Addr> {
        list.iter().map(|o| Ipv4Addr::from(*o)).collect()
    }

    #[test]
    fn dnsbl_answers_in_127_are_listings_but_spamhaus_errors_are_not() {
        assert_eq!(
            read_dnsbl(&ips(&[[127, 0, 0, 2]])),
            Reading::Listed([127, 0, 0, 2].into())
        );
        assert_eq!(
            read_dnsbl(&ips(&[[127, 0, 4, 40]])),
            Reading::Listed([127, 0, 4, 40].into())
        );
        assert_eq!(read_dnsbl(&ips(&[[127, 255, 255, 254]])), Reading::NoAnswer);
        assert_eq!(read_dnsbl(&ips(&[[127, 255, 255, 252]])), Reading::NoAnswer);
        assert_eq!(read_dnsbl(&ips(&[[198, 51, 100, 1]])), Reading::NoAnswer);
        assert_eq!(
            read_dnsbl(&ips(&[[127, 255, 255, 254], [127, 0, 0, 10]])),
            Reading::Listed([127, 0, 0, 10].into())
        );
    }

    #[test]
    fn uribl_refusals_and_error_codes_are_not_listings() {
        assert_eq!(
            read_uribl(&ips(&[[127, 0, 1, 2]])),
            Reading::Listed([127, 0, 1, 2].into())
        );
        for code in [
            [127, 0, 0, 1],
            [127, 0, 1, 255],
            [127, 255, 255, 254],
            [10, 0, 0, 1],
        ] {
            assert_eq!(read_uribl(&ips(&[code])), Reading::NoAnswer, "{code:?}");
        }
    }

    #[test]
    fn only_public_clients_are_looked_up() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.0.1",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in [
            "203.0.113.7",
            "8.8.8.8",
            "2001:db8::1",
            "::ffff:203.0.113.7",
        ] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }

    #[test]
    fn dnsbl_names() {
        assert_eq!(
            dnsbl_name("203.0.113.7".parse().unwrap(), "zen.spamhaus.org"),
            "7.113.0.203.zen.spamhaus.org"
        );
        assert_eq!(
            dnsbl_name("::ffff:203.0.113.7".parse().unwrap(), "z.test"),
            "7.113.0.203.z.test"
        );
        assert_eq!(
            dnsbl_name("2001:db8:1:2::abcd".parse().unwrap(), "z.test"),
            "d.c.b.a.0.0.0.0.0.0.0.0.0.0.0.0.2.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2.z.test"
        );
    }

    #[test]
    fn facts_round_trip_through_json_for_the_cache() {
        let facts = DnsblFacts {
            listed: vec![Listing {
                zone: "zen.spamhaus.org".into(),
                answer: [127, 0, 0, 2].into(),
            }],
            unanswered: vec![],
        };
        let json = serde_json::to_string(&facts).unwrap();
        assert_eq!(serde_json::from_str::<DnsblFacts>(&json).unwrap(), facts);
        assert_eq!(
            serde_json::to_string(&SpfVerdict::SoftFail).unwrap(),
            "\"softfail\""
        );
    }
}
