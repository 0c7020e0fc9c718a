//! The DNS rules against a DNS server of the test's own (testkit's `DnsServer` on loopback):
//! blocklists of the client IP and of linked domains, SPF, DKIM and DMARC, a server that fails or
//! never answers, and the caches. Never the internet: every zone and domain here is served by the
//! test's server, which also counts the questions it gets.

use std::net::IpAddr;
use std::time::Duration;

use maildrop_contract::{Envelope, Mailbox, MessageId};
use maildrop_filter::dns::{Dns, DnsArgs, Servers};
use maildrop_filter::facts::Facts;
use maildrop_filter::gather::{DnsGatherer, SpfVerdict};
use maildrop_filter::handler::{Judgement, judge};
use maildrop_filter::rules::RuleSet;
use maildrop_filter::rules::dnsbl::Zone;
use maildrop_filter::ruleset::{Context, RuleSetFile};
use maildrop_filter::verdict_cache::VerdictCache;
use maildrop_testkit::dns::{DnsServer, Mode, dnsbl_name};

const LISTED: &str = "203.0.113.7";
const CLEAN: &str = "203.0.113.8";

fn args(server: &DnsServer, timeout: Duration, deadline: Duration) -> DnsArgs {
    DnsArgs {
        dns_servers: Servers::List(vec![server.addr()]),
        dns_timeout: timeout,
        dns_deadline: deadline,
        dns_cache_size: 1000,
    }
}

fn gatherer(server: &DnsServer) -> DnsGatherer {
    gatherer_with(server, VerdictCache::off())
}

fn gatherer_with(server: &DnsServer, cache: VerdictCache) -> DnsGatherer {
    let a = args(server, Duration::from_secs(2), Duration::from_secs(5));
    DnsGatherer::new(
        Dns::from_args(&a).unwrap(),
        cache,
        a.dns_deadline,
        "mx.maildrop.test",
    )
}

/// The built-in rule set with the test's zones in place of the public ones.
fn rules() -> RuleSet {
    let mut file = RuleSetFile::default();
    file.dnsbl.zones = vec![Zone::new("bl.test", 5.0), Zone::new("other-bl.test", 2.0)];
    file.uribl.zones = vec![Zone::new("uribl.test", 5.0)];
    file.build(&Context::default()).unwrap()
}

fn envelope(ip: &str, mail_from: &str) -> Envelope {
    Envelope {
        id: MessageId::new(),
        client_ip: ip.parse().unwrap(),
        helo: "client.example".into(),
        mail_from: mail_from.into(),
        rcpt_to: vec!["bob@maildrop.test".into()],
        mailboxes: vec![Mailbox::parse("bob").unwrap()],
        received_ms: 0,
        size: 0,
    }
}

fn message(from: &str, body: &str) -> Vec<u8> {
    format!(
        "From: {from}\r\nTo: bob@maildrop.test\r\nSubject: Hello\r\n\
         Date: Sun, 29 Nov 2026 22:00:00 +0000\r\nMessage-ID: <m1@example>\r\n\r\n{body}\r\n"
    )
    .into_bytes()
}

/// Gathers and judges one message: what the live handler does, without NATS.
async fn run(
    gatherer: &DnsGatherer,
    rules: &RuleSet,
    env: &Envelope,
    raw: &[u8],
) -> (Facts, Judgement) {
    let parsed = mail_parser::MessageParser::default().parse(raw);
    let mut facts = Facts::default();
    gatherer
        .gather(rules, env, raw, parsed.as_ref(), &mut facts)
        .await;
    let judgement = judge(rules, env, parsed.as_ref(), raw, 1, &facts);
    (facts, judgement)
}

fn hit<'a>(j: &'a Judgement, rule: &str) -> Option<&'a maildrop_contract::RuleHit> {
    j.verdict.hits.iter().find(|h| h.rule == rule)
}

#[tokio::test]
async fn a_listed_client_is_rejected_and_blocked_an_unlisted_one_passes() {
    let server = DnsServer::start().await.unwrap();
    server.add_a(
        &dnsbl_name(LISTED.parse().unwrap(), "bl.test"),
        [127, 0, 0, 2].into(),
    );
    let g = gatherer(&server);
    let rules = rules();
    let raw = message("a@sender.test", "hello");

    let (facts, j) = run(&g, &rules, &envelope(LISTED, "a@sender.test"), &raw).await;
    let dnsbl = facts.dns.dnsbl.as_ref().unwrap();
    assert_eq!(dnsbl.listed.len(), 1);
    assert!(dnsbl.unanswered.is_empty());
    assert!(!j.verdict.accepted);
    let h = hit(&j, "dnsbl").unwrap();
    assert_eq!(h.score, 5.0);
    assert_eq!(h.reason, "client 203.0.113.7 listed on bl.test (127.0.0.2)");
    let block = j.block_client.unwrap();
    assert_eq!(block.ttl, Duration::from_secs(3600));
    assert!(block.reason.contains("bl.test"), "{}", block.reason);

    let (facts, j) = run(&g, &rules, &envelope(CLEAN, "a@sender.test"), &raw).await;
    assert!(facts.dns.dnsbl.unwrap().listed.is_empty());
    assert!(hit(&j, "dnsbl").is_none());
    assert!(j.block_client.is_none());
    assert_eq!(
        server.queries_for(&dnsbl_name(CLEAN.parse().unwrap(), "other-bl.test")),
        1
    );
}

#[tokio::test]
async fn ipv6_clients_are_asked_by_nibbles() {
    let server = DnsServer::start().await.unwrap();
    let ip: IpAddr = "2001:db8::25".parse().unwrap();
    server.add_a(&dnsbl_name(ip, "bl.test"), [127, 0, 0, 3].into());
    let (_, j) = run(
        &gatherer(&server),
        &rules(),
        &envelope("2001:db8::25", "a@sender.test"),
        &message("a@sender.test", "hi"),
    )
    .await;
    assert_eq!(
        hit(&j, "dnsbl").unwrap().reason,
        "client 2001:db8::25 listed on bl.test (127.0.0.3)"
    );
}

#[tokio::test]
async fn a_spamhaus_error_code_is_no_answer_not_a_listing() {
    let server = DnsServer::start().await.unwrap();
    // "Your resolver is an open resolver": Spamhaus answers this for every name.
    server.add_a(
        &dnsbl_name(LISTED.parse().unwrap(), "bl.test"),
        [127, 255, 255, 254].into(),
    );
    let (facts, j) = run(
        &gatherer(&server),
        &rules(),
        &envelope(LISTED, "a@sender.test"),
        &message("a@sender.test", "hi"),
    )
    .await;
    let dnsbl = facts.dns.dnsbl.unwrap();
    assert!(dnsbl.listed.is_empty());
    assert_eq!(dnsbl.unanswered, ["bl.test"]);
    assert!(hit(&j, "dnsbl").is_none());
    assert!(j.verdict.accepted);
}

#[tokio::test]
async fn private_clients_are_not_looked_up_unless_asked() {
    let server = DnsServer::start().await.unwrap();
    let name = dnsbl_name("127.0.0.1".parse().unwrap(), "bl.test");
    server.add_a(&name, [127, 0, 0, 2].into());
    let env = envelope("127.0.0.1", "a@sender.test");
    let raw = message("a@sender.test", "hi");
    let (facts, _) = run(&gatherer(&server), &rules(), &env, &raw).await;
    assert_eq!(facts.dns.dnsbl, None);
    assert_eq!(server.queries_for(&name), 0);

    let mut file = RuleSetFile::default();
    file.dnsbl.zones = vec![Zone::new("bl.test", 5.0)];
    file.dnsbl.check_private = true;
    let loopback_too = file.build(&Context::default()).unwrap();
    let (_, j) = run(&gatherer(&server), &loopback_too, &env, &raw).await;
    assert!(hit(&j, "dnsbl").is_some());
}

#[tokio::test]
async fn a_linked_domain_on_a_uri_blocklist_is_a_hit() {
    let server = DnsServer::start().await.unwrap();
    server.add_a("spam-shop.com.uribl.test", [127, 0, 1, 2].into());
    let raw = message(
        "a@sender.test",
        "Cheap! https://www.spam-shop.com/buy and https://fine.example.org/",
    );
    let (facts, j) = run(
        &gatherer(&server),
        &rules(),
        &envelope(CLEAN, "a@sender.test"),
        &raw,
    )
    .await;
    let uribl = facts.dns.uribl.unwrap();
    assert_eq!(uribl.checked, 2);
    assert_eq!(uribl.listed.len(), 1);
    let h = hit(&j, "uribl").unwrap();
    assert_eq!(h.score, 5.0);
    assert_eq!(h.reason, "links to spam-shop.com (127.0.1.2) on uribl.test");
    assert_eq!(server.queries_for("example.org.uribl.test"), 1);
}

#[tokio::test]
async fn spf_pass_fail_and_softfail() {
    let server = DnsServer::start().await.unwrap();
    server.add_txt("strict.test", "v=spf1 ip4:203.0.113.0/28 -all");
    server.add_txt("lenient.test", "v=spf1 ip4:203.0.113.0/28 ~all");
    let g = gatherer(&server);
    let rules = rules();
    let raw = message("a@strict.test", "hi");

    let (facts, j) = run(&g, &rules, &envelope(CLEAN, "a@strict.test"), &raw).await;
    assert_eq!(facts.dns.spf.unwrap().result, SpfVerdict::Pass);
    assert!(hit(&j, "spf").is_none());
    assert!(j.verdict.accepted);

    let outside = "198.51.100.9";
    let (facts, j) = run(&g, &rules, &envelope(outside, "a@strict.test"), &raw).await;
    assert_eq!(facts.dns.spf.unwrap().result, SpfVerdict::Fail);
    let h = hit(&j, "spf").unwrap();
    assert_eq!(h.score, 5.0);
    assert_eq!(h.reason, "SPF fail for strict.test from 198.51.100.9");
    assert!(!j.verdict.accepted, "the old service rejected on fail");

    let (facts, j) = run(&g, &rules, &envelope(outside, "a@lenient.test"), &raw).await;
    assert_eq!(facts.dns.spf.unwrap().result, SpfVerdict::SoftFail);
    assert_eq!(hit(&j, "spf").unwrap().score, 1.0);

    // No SPF record at all: `none`, nothing held against the sender.
    let (facts, j) = run(&g, &rules, &envelope(outside, "a@nospf.test"), &raw).await;
    assert_eq!(facts.dns.spf.unwrap().result, SpfVerdict::None);
    assert!(hit(&j, "spf").is_none());
}

mod dkim {
    use super::*;
    use mail_auth::common::crypto::Ed25519Key;
    use mail_auth::common::headers::HeaderWriter;
    use mail_auth::dkim::DkimSigner;

    pub fn base64(bytes: &[u8]) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    /// Signs `raw` as `domain` (selector `sel`) and publishes the key on `server`; returns the
    /// signed message.
    pub fn sign(server: &DnsServer, domain: &str, raw: &[u8]) -> Vec<u8> {
        let key = Ed25519Key::from_pkcs8_der(&Ed25519Key::generate_pkcs8().unwrap()).unwrap();
        server.add_txt(
            &format!("sel._domainkey.{domain}"),
            &format!("v=DKIM1; k=ed25519; p={}", base64(&key.public_key())),
        );
        let signature = DkimSigner::from_key(key)
            .domain(domain)
            .selector("sel")
            .headers(["From", "To", "Subject", "Date", "Message-ID"])
            .sign(raw)
            .unwrap();
        let mut signed = signature.to_header().into_bytes();
        signed.extend_from_slice(raw);
        signed
    }

    #[test]
    fn base64_is_standard() {
        assert_eq!(base64(b"M"), "TQ==");
        assert_eq!(base64(b"Ma"), "TWE=");
        assert_eq!(base64(b"Man"), "TWFu");
    }

    #[tokio::test]
    async fn a_valid_signature_passes_and_an_altered_message_fails() {
        let server = DnsServer::start().await.unwrap();
        let raw = message("a@signed.test", "The original body.");
        let signed = sign(&server, "signed.test", &raw);
        let g = gatherer(&server);
        let rules = rules();
        let env = envelope(CLEAN, "a@signed.test");

        let (facts, j) = run(&g, &rules, &env, &signed).await;
        let dkim = facts.dns.dkim.unwrap();
        assert_eq!(dkim.signatures.len(), 1, "{dkim:?}");
        assert_eq!(
            dkim.signatures[0].result,
            maildrop_filter::gather::AuthVerdict::Pass
        );
        assert_eq!(dkim.signatures[0].domain, "signed.test");
        assert!(hit(&j, "dkim").is_none());

        let altered = String::from_utf8(signed)
            .unwrap()
            .replace("The original body.", "Send money to this account.");
        let (facts, j) = run(&g, &rules, &env, altered.as_bytes()).await;
        assert_eq!(
            facts.dns.dkim.unwrap().signatures[0].result,
            maildrop_filter::gather::AuthVerdict::Fail
        );
        let h = hit(&j, "dkim").unwrap();
        assert_eq!(h.score, 2.0);
        assert!(
            h.reason.starts_with("DKIM fail: d=signed.test s=sel ("),
            "{}",
            h.reason
        );
    }
}

#[tokio::test]
async fn dmarc_passes_when_aligned_and_fails_by_the_domain_s_policy() {
    let server = DnsServer::start().await.unwrap();
    server.add_txt("_dmarc.bank.test", "v=DMARC1; p=reject");
    server.add_txt("bank.test", "v=spf1 ip4:203.0.113.0/28 -all");
    server.add_txt("bulk.test", "v=spf1 ip4:198.51.100.0/24 -all");
    let g = gatherer(&server);
    let rules = rules();

    // Aligned: SPF passes for bank.test, and From is bank.test.
    let raw = message("Bank <alerts@bank.test>", "Your statement.");
    let (facts, j) = run(&g, &rules, &envelope(CLEAN, "bounce@bank.test"), &raw).await;
    let dmarc = facts.dns.dmarc.unwrap();
    assert_eq!(dmarc.domain, "bank.test");
    assert_eq!(dmarc.spf, maildrop_filter::gather::AuthVerdict::Pass);
    assert!(hit(&j, "dmarc").is_none());
    assert!(j.verdict.accepted);

    // Not aligned: SPF passes, but for bulk.test; From claims bank.test; no DKIM.
    let (facts, j) = run(&g, &rules, &envelope("198.51.100.20", "x@bulk.test"), &raw).await;
    assert_eq!(facts.dns.spf.unwrap().result, SpfVerdict::Pass);
    let h = hit(&j, "dmarc").unwrap();
    assert_eq!(h.score, 5.0);
    assert!(
        h.reason.starts_with("DMARC fail for bank.test (p=reject;"),
        "{}",
        h.reason
    );
    assert!(!j.verdict.accepted);

    // Not aligned by SPF, but signed by bank.test: DKIM alignment passes.
    let signed = dkim::sign(&server, "bank.test", &raw);
    let (_, j) = run(
        &g,
        &rules,
        &envelope("198.51.100.20", "x@bulk.test"),
        &signed,
    )
    .await;
    assert!(hit(&j, "dmarc").is_none(), "{:?}", j.verdict.hits);
}

#[tokio::test]
async fn a_server_that_never_answers_degrades_the_rules_within_the_deadline() {
    let server = DnsServer::silent().await.unwrap();
    let deadline = Duration::from_millis(800);
    let a = args(&server, Duration::from_millis(300), deadline);
    let g = DnsGatherer::new(
        Dns::from_args(&a).unwrap(),
        VerdictCache::off(),
        deadline,
        "mx.maildrop.test",
    );
    let raw = message("a@strict.test", "See https://spam-shop.com/");
    let env = envelope(LISTED, "a@strict.test");
    // Generous: the gather itself stops at `deadline`; this only keeps a broken build from
    // hanging the test run.
    let (facts, j) = tokio::time::timeout(deadline * 10, run(&g, &rules(), &env, &raw))
        .await
        .expect("the verdict arrives even though DNS never answers");
    assert!(j.verdict.accepted, "{:?}", j.verdict.hits);
    let dnsbl = facts.dns.dnsbl.unwrap();
    assert_eq!(dnsbl.unanswered, ["bl.test", "other-bl.test"]);
    assert!(dnsbl.listed.is_empty());
    assert!(facts.dns.uribl.unwrap().unanswered >= 1);
    let spf = facts.dns.spf.map(|s| s.result);
    assert!(matches!(spf, None | Some(SpfVerdict::TempError)), "{spf:?}");
    for rule in ["dnsbl", "uribl", "spf", "dkim", "dmarc"] {
        assert!(hit(&j, rule).is_none(), "{rule}");
    }
    assert!(server.queries() > 0, "the questions were asked");
}

#[tokio::test]
async fn servfail_is_no_answer() {
    let server = DnsServer::start().await.unwrap();
    server.add_a(
        &dnsbl_name(LISTED.parse().unwrap(), "bl.test"),
        [127, 0, 0, 2].into(),
    );
    server.set_mode(Mode::ServFail);
    let (facts, j) = run(
        &gatherer(&server),
        &rules(),
        &envelope(LISTED, "a@sender.test"),
        &message("a@sender.test", "hi"),
    )
    .await;
    assert_eq!(
        facts.dns.dnsbl.unwrap().unanswered,
        ["bl.test", "other-bl.test"]
    );
    assert!(j.verdict.accepted);
}

#[tokio::test]
async fn a_second_message_is_answered_from_the_cache() {
    let server = DnsServer::start().await.unwrap();
    let listed = dnsbl_name(LISTED.parse().unwrap(), "bl.test");
    server.add_a(&listed, [127, 0, 0, 2].into());
    server.add_txt("strict.test", "v=spf1 ip4:203.0.113.0/28 -all");
    let g = gatherer(&server);
    let rules = rules();
    let raw = message("a@strict.test", "https://spam-shop.com/");

    let (first, _) = run(&g, &rules, &envelope(LISTED, "a@strict.test"), &raw).await;
    let asked = server.queries();
    assert!(server.queries_for(&listed) == 1 && server.queries_for("strict.test") >= 1);
    let (second, j) = run(&g, &rules, &envelope(LISTED, "b@strict.test"), &raw).await;
    assert_eq!(server.queries(), asked, "nothing asked twice");
    assert_eq!(first.dns.dnsbl, second.dns.dnsbl);
    assert!(hit(&j, "dnsbl").is_some());
    // Negative answers too: other-bl.test said NXDOMAIN once, and is not asked again.
    assert_eq!(
        server.queries_for(&dnsbl_name(LISTED.parse().unwrap(), "other-bl.test")),
        1
    );
}

#[tokio::test]
async fn the_verdict_cache_keeps_a_client_s_listings_across_resolvers() {
    let redis = maildrop_testkit::RedisServer::start().await.unwrap();
    let conn = maildrop_store::Redis::open(&redis.url()).await.unwrap();
    let cache = VerdictCache::new(conn, Duration::from_secs(60));
    let server = DnsServer::start().await.unwrap();
    let listed = dnsbl_name(LISTED.parse().unwrap(), "bl.test");
    server.add_a(&listed, [127, 0, 0, 2].into());
    let rules = rules();
    let raw = message("a@sender.test", "hi");
    let env = envelope(LISTED, "a@sender.test");

    let (first, _) = run(&gatherer_with(&server, cache.clone()), &rules, &env, &raw).await;
    assert_eq!(server.queries_for(&listed), 1);
    // A new resolver (another filter instance: an empty DNS cache) finds the client's listings
    // in the verdict cache, and the blocklists are not asked again.
    let (second, j) = run(&gatherer_with(&server, cache.clone()), &rules, &env, &raw).await;
    assert_eq!(server.queries_for(&listed), 1);
    assert_eq!(first.dns.dnsbl, second.dns.dnsbl);
    assert!(hit(&j, "dnsbl").is_some());

    // Other zones are other settings: asked anew.
    let mut file = RuleSetFile::default();
    file.dnsbl.zones = vec![Zone::new("bl.test", 5.0)];
    let fewer = file.build(&Context::default()).unwrap();
    run(&gatherer_with(&server, cache), &fewer, &env, &raw).await;
    assert_eq!(server.queries_for(&listed), 2);
}

fn sample(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/samples")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[tokio::test]
async fn the_ham_and_spam_samples_through_the_dns_rules() {
    let server = DnsServer::start().await.unwrap();
    // The newsletter's sender publishes SPF for its bounce domain and a DMARC policy; its relaxed
    // alignment (mail.news.example.org and news.example.org share example.org) passes.
    server.add_txt("mail.news.example.org", "v=spf1 ip4:198.51.100.0/24 -all");
    server.add_txt("_dmarc.news.example.org", "v=DMARC1; p=reject");
    // The prize spam comes from a listed client, for a domain whose SPF allows nobody.
    server.add_txt("lucky-draw.example", "v=spf1 -all");
    server.add_a(
        &dnsbl_name(LISTED.parse().unwrap(), "bl.test"),
        [127, 0, 0, 2].into(),
    );
    let g = gatherer(&server);
    let rules = rules();

    let ham = sample("ham-newsletter.eml");
    let env = envelope("198.51.100.20", "bounces+1234@mail.news.example.org");
    let (facts, j) = run(&g, &rules, &env, &ham).await;
    assert!(j.verdict.accepted, "{:?}", j.verdict.hits);
    assert_eq!(facts.dns.spf.unwrap().result, SpfVerdict::Pass);
    let dmarc = facts.dns.dmarc.unwrap();
    assert_eq!(dmarc.domain, "news.example.org");
    assert_eq!(dmarc.spf, maildrop_filter::gather::AuthVerdict::Pass);
    // Its links were looked up (example.org, once) and are not listed.
    let uribl = facts.dns.uribl.unwrap();
    assert_eq!((uribl.checked, uribl.listed.len()), (1, 0));
    for rule in ["dnsbl", "uribl", "spf", "dkim", "dmarc"] {
        assert!(hit(&j, rule).is_none(), "{rule}");
    }

    let spam = sample("spam-bulk-no-date.eml");
    let env = envelope(LISTED, "winner@lucky-draw.example");
    let (_, j) = run(&g, &rules, &env, &spam).await;
    assert!(!j.verdict.accepted);
    assert_eq!(
        hit(&j, "spf").unwrap().reason,
        "SPF fail for lucky-draw.example from 203.0.113.7"
    );
    assert!(hit(&j, "dnsbl").is_some());
    assert!(j.block_client.is_some());
}
