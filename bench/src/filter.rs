//! `scenario filter`: the filter's rules alone, messages per second through the full rule set.
//!
//! What one filter instance does per message short of NATS: parse, gather the Redis facts
//! (run-time blocklists, flood counts) and the DNS facts (6 DNSBL zones, 3 URI-blocklist zones per
//! linked domain, SPF, DKIM, DMARC) at once, and evaluate every rule; `MAILDROP_CONCURRENCY` (32)
//! messages at a time, as the consumer runs them. Publishing the verdict and acking are the
//! pipeline scenario's business and are left out, so this is the ceiling the rules put on a filter.
//!
//! DNS comes from testkit's DNS server on loopback (never the internet): a table of listings,
//! SPF, DKIM keys and DMARC policies for the generated traffic, with the built-in rule set's
//! number of zones. The first pass over the messages is *cold* (every name asked once, at loopback
//! speed, so far faster than real DNS); the measured pass is *warm*: the traffic's clients,
//! senders and links repeat, as a public inbox's spam does, and every answer comes from the
//! filter's DNS cache and the verdict cache. The DNS queries the warm pass still made are printed
//! (0 means fully cached). A third pass evaluates the same messages with facts gathered
//! beforehand: the pure rules' cost.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use mail_auth::common::crypto::Ed25519Key;
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::DkimSigner;
use maildrop_contract::{Envelope, Mailbox, MessageId};
use maildrop_filter::dns::{Dns, DnsArgs, Servers};
use maildrop_filter::facts::{Facts, RedisFacts};
use maildrop_filter::gather::DnsGatherer;
use maildrop_filter::handler::judge;
use maildrop_filter::rules::RuleSet;
use maildrop_filter::rules::dnsbl::Zone;
use maildrop_filter::ruleset::{Context, RuleSetFile};
use maildrop_filter::verdict_cache::VerdictCache;
use maildrop_testkit::RedisServer;
use maildrop_testkit::dns::{DnsServer, dnsbl_name};
use serde_json::json;

use crate::report::table;
use crate::rng::Rng;
use crate::scenario::{Machine, ScenarioReport};
use crate::stats::{Latency, histogram, record};

/// Distinct messages generated (each pass goes over all of them).
pub const MESSAGES: usize = 4000;
/// Messages judged at once (the filter's default `MAILDROP_CONCURRENCY`).
pub const CONCURRENCY: usize = 32;
const CLIENTS: u32 = 200;
const SENDER_DOMAINS: usize = 40;
const LINK_DOMAINS: usize = 100;
const DNSBL_ZONES: [&str; 6] = ["a.bl", "b.bl", "c.bl", "d.bl", "e.bl", "f.bl"];
const URIBL_ZONES: [&str; 3] = ["a.uribl", "b.uribl", "c.uribl"];
const DOMAIN: &str = "maildrop.bench";

struct Message {
    envelope: Envelope,
    raw: Vec<u8>,
}

/// The built-in rule set with the bench's zones in place of the public ones (as many of them).
fn rules() -> anyhow::Result<RuleSet> {
    let mut file = RuleSetFile::default();
    file.dnsbl.zones = DNSBL_ZONES.iter().map(|z| Zone::new(z, 2.5)).collect();
    file.uribl.zones = URIBL_ZONES.iter().map(|z| Zone::new(z, 3.0)).collect();
    Ok(file.build(&Context {
        domains: vec![DOMAIN.into()],
    })?)
}

fn client(i: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0xcb00_7100 + (i % 250) + ((i / 250) << 8))) // 203.0.113.x, …
}

/// DNS records for the traffic, and DKIM keys for the senders that sign.
fn publish(dns: &DnsServer) -> anyhow::Result<Vec<Option<Vec<u8>>>> {
    for i in 0..CLIENTS {
        // One client in ten is on one list, one in forty on three.
        if i % 10 == 0 {
            dns.add_a(
                &dnsbl_name(client(i), DNSBL_ZONES[0]),
                [127, 0, 0, 2].into(),
            );
        }
        if i % 40 == 0 {
            for zone in &DNSBL_ZONES[1..3] {
                dns.add_a(&dnsbl_name(client(i), zone), [127, 0, 0, 4].into());
            }
        }
    }
    for d in (0..LINK_DOMAINS).step_by(7) {
        dns.add_a(
            &format!("link{d}.com.{}", URIBL_ZONES[d % 3]),
            [127, 0, 1, 2].into(),
        );
    }
    let mut keys = Vec::new();
    for d in 0..SENDER_DOMAINS {
        let domain = format!("sender{d}.com");
        let all = if d % 2 == 0 { "-all" } else { "~all" };
        dns.add_txt(&domain, &format!("v=spf1 ip4:203.0.113.0/25 {all}"));
        if d % 3 == 0 {
            dns.add_txt(&format!("_dmarc.{domain}"), "v=DMARC1; p=reject");
        }
        keys.push(if d % 4 == 0 {
            let der = Ed25519Key::generate_pkcs8()?;
            let key = Ed25519Key::from_pkcs8_der(&der)?;
            dns.add_txt(
                &format!("sel._domainkey.{domain}"),
                &format!(
                    "v=DKIM1; k=ed25519; p={}",
                    crate::base64::encode(&key.public_key())
                ),
            );
            Some(der)
        } else {
            None
        });
    }
    Ok(keys)
}

fn generate(keys: &[Option<Vec<u8>>], seed: u64) -> anyhow::Result<Vec<Message>> {
    let mut rng = Rng::new(seed);
    let mut messages = Vec::with_capacity(MESSAGES);
    for n in 0..MESSAGES {
        let c = rng.below(u64::from(CLIENTS)) as u32;
        let d = rng.below(SENDER_DOMAINS as u64) as usize;
        let sender = format!("news{}@sender{d}.com", rng.below(5));
        let links: Vec<String> = (0..rng.range(0, 4))
            .map(|_| {
                format!(
                    "https://www.link{}.com/offer/{}",
                    rng.below(LINK_DOMAINS as u64),
                    rng.below(1000)
                )
            })
            .collect();
        let body = format!(
            "Hello,\r\n\r\nThis is message {n}. {}\r\n\r\nRegards\r\n",
            links.join(" ")
        );
        let mut raw = format!(
            "From: {sender}\r\nTo: box{}@{DOMAIN}\r\nSubject: Offer {}\r\n\
             Date: Sun, 29 Nov 2026 22:00:00 +0000\r\nMessage-ID: <{n}@sender{d}.com>\r\n\
             MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}",
            rng.below(1000),
            rng.below(50)
        )
        .into_bytes();
        if let Some(der) = &keys[d] {
            let signature = DkimSigner::from_key(Ed25519Key::from_pkcs8_der(der)?)
                .domain(format!("sender{d}.com"))
                .selector("sel")
                .headers(["From", "To", "Subject", "Date", "Message-ID"])
                .sign(&raw)?;
            let mut signed = signature.to_header().into_bytes();
            signed.extend_from_slice(&raw);
            raw = signed;
        }
        let envelope = Envelope {
            id: MessageId::new(),
            client_ip: client(c),
            helo: format!("mx{c}.sender{d}.com"),
            mail_from: sender,
            rcpt_to: vec![format!("box@{DOMAIN}")],
            mailboxes: vec![Mailbox::parse("box")?],
            received_ms: maildrop_contract::now_ms(),
            size: 0,
        };
        messages.push(Message { envelope, raw });
    }
    Ok(messages)
}

struct Pass {
    name: &'static str,
    elapsed: Duration,
    latency: Latency,
    rejected: usize,
    dns_queries: usize,
}

impl Pass {
    fn per_second(&self) -> f64 {
        MESSAGES as f64 / self.elapsed.as_secs_f64()
    }
}

/// Gathers and judges every message, `CONCURRENCY` at a time.
async fn gather_and_judge(
    name: &'static str,
    messages: &[Message],
    rules: &RuleSet,
    redis: &RedisFacts,
    dns: &DnsGatherer,
    server: &DnsServer,
) -> anyhow::Result<Pass> {
    let before = server.queries();
    let started = Instant::now();
    let results: Vec<anyhow::Result<(Duration, bool)>> = futures::stream::iter(messages)
        .map(|m| async move {
            let t = Instant::now();
            let parsed = mail_parser::MessageParser::default().parse(&m.raw[..]);
            let mut facts = Facts::default();
            let mut dns_facts = Facts::default();
            let (r, ()) = tokio::join!(
                redis.gather(rules, &m.envelope, parsed.as_ref(), &mut facts),
                dns.gather(rules, &m.envelope, &m.raw, parsed.as_ref(), &mut dns_facts),
            );
            r?;
            facts.dns = dns_facts.dns;
            let j = judge(rules, &m.envelope, parsed.as_ref(), &m.raw, 1, &facts);
            Ok((t.elapsed(), j.verdict.accepted))
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let elapsed = started.elapsed();
    let mut h = histogram();
    let mut rejected = 0;
    for r in results {
        let (d, accepted) = r?;
        record(&mut h, d);
        rejected += usize::from(!accepted);
    }
    Ok(Pass {
        name,
        elapsed,
        latency: Latency::of(&h),
        rejected,
        dns_queries: server.queries() - before,
    })
}

/// Evaluates every message on facts gathered beforehand: the rules alone.
async fn rules_only(
    messages: &[Message],
    rules: &RuleSet,
    dns: &DnsGatherer,
) -> anyhow::Result<Pass> {
    let mut facts = Vec::with_capacity(messages.len());
    for m in messages {
        let parsed = mail_parser::MessageParser::default().parse(&m.raw[..]);
        let mut f = Facts::default();
        dns.gather(rules, &m.envelope, &m.raw, parsed.as_ref(), &mut f)
            .await;
        facts.push(f);
    }
    let mut h = histogram();
    let mut rejected = 0;
    let started = Instant::now();
    for (m, f) in messages.iter().zip(&facts) {
        let t = Instant::now();
        let parsed = mail_parser::MessageParser::default().parse(&m.raw[..]);
        let j = judge(rules, &m.envelope, parsed.as_ref(), &m.raw, 1, f);
        record(&mut h, t.elapsed());
        rejected += usize::from(!j.verdict.accepted);
    }
    Ok(Pass {
        name: "parse + rules only (facts given, one core)",
        elapsed: started.elapsed(),
        latency: Latency::of(&h),
        rejected,
        dns_queries: 0,
    })
}

fn ms(us: u64) -> String {
    if us < 1000 {
        format!("{us} µs")
    } else {
        format!("{:.2} ms", us as f64 / 1000.0)
    }
}

pub async fn run(seed: u64) -> anyhow::Result<ScenarioReport> {
    let machine = Machine::probe();
    let redis_server = RedisServer::start().await?;
    let server = DnsServer::start().await?;
    let keys = publish(&server)?;
    let messages = generate(&keys, seed)?;
    let rules = Arc::new(rules()?);

    let conn = maildrop_store::Redis::open(&redis_server.url()).await?;
    let args = DnsArgs {
        dns_servers: Servers::List(vec![server.addr()]),
        dns_timeout: Duration::from_secs(2),
        dns_deadline: Duration::from_secs(5),
        dns_cache_size: maildrop_filter::dns::DEFAULT_CACHE_SIZE,
    };
    let gatherer = DnsGatherer::new(
        Dns::from_args(&args)?,
        VerdictCache::new(conn.clone(), Duration::from_secs(86_400)),
        args.dns_deadline,
        DOMAIN,
    );
    let redis = RedisFacts::new(conn);

    let cold = gather_and_judge(
        "cold: first pass, every name asked once",
        &messages,
        &rules,
        &redis,
        &gatherer,
        &server,
    )
    .await?;
    let warm = gather_and_judge(
        "warm: full rule set, cached DNS",
        &messages,
        &rules,
        &redis,
        &gatherer,
        &server,
    )
    .await?;
    let pure = rules_only(&messages, &rules, &gatherer).await?;

    let rows: Vec<Vec<String>> = [&cold, &warm, &pure]
        .iter()
        .map(|p| {
            vec![
                p.name.to_owned(),
                format!("{:.0}", p.per_second()),
                ms(p.latency.p50_us),
                ms(p.latency.p99_us),
                p.rejected.to_string(),
                p.dns_queries.to_string(),
            ]
        })
        .collect();
    let section = format!(
        "### filter: {MESSAGES} messages per pass, {CONCURRENCY} at a time\n\n{}",
        table(
            &[
                "pass",
                "messages/s",
                "p50",
                "p99",
                "rejected",
                "DNS queries"
            ],
            &rows
        )
    );
    let pass_json = |p: &Pass| {
        json!({
            "messages_per_second": p.per_second(),
            "latency": p.latency.to_json(),
            "rejected": p.rejected,
            "dns_queries": p.dns_queries,
        })
    };
    let mut extra = serde_json::Map::new();
    extra.insert("cold".into(), pass_json(&cold));
    extra.insert("warm".into(), pass_json(&warm));
    extra.insert("rules_only".into(), pass_json(&pure));
    Ok(ScenarioReport {
        name: "filter",
        machine,
        runs: vec![],
        sections: vec![section],
        extra,
        notes: vec![
            format!(
                "Traffic: {CLIENTS} client IPs (one in ten listed), {SENDER_DOMAINS} sender domains with SPF (half -all, half ~all), a third with DMARC p=reject, a quarter DKIM-signing (Ed25519), up to 3 links each over {LINK_DOMAINS} domains."
            ),
            "Per message: parse, Redis facts (blocklists, flood counts) and DNS facts (6 DNSBL zones, 3 URIBL zones per linked domain, SPF, DKIM, DMARC) at once, then every rule. No NATS: verdicts are not published.".into(),
            "DNS from testkit's server on loopback; the warm pass is answered by the filter's DNS cache and the verdict cache (its DNS-queries column counts what still reached the server).".into(),
            "The flood rule counts in this scenario's Redis like in production; clients past its limit are rejected, which is part of the rejected column.".into(),
        ],
    })
}
