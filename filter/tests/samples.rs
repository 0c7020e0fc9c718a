//! Every rule on real-looking messages (`tests/samples/*.eml`, ham and spam), judged the way the
//! live filter judges them: parsed, with the facts a gatherer would have found, by a rule set built
//! from a rule file. No servers: the rules are pure.

use std::path::Path;

use maildrop_contract::{Envelope, Mailbox, MessageId};
use maildrop_filter::facts::{Facts, FloodCount, FloodFacts, ListMatches};
use maildrop_filter::handler::{Judgement, judge};
use maildrop_filter::rules::RuleSet;
use maildrop_filter::ruleset::{self, Context};

const DOMAIN: &str = "maildrop.test";

fn sample(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/samples")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn envelope(mail_from: &str) -> Envelope {
    Envelope {
        id: MessageId::new(),
        client_ip: "198.51.100.20".parse().unwrap(),
        helo: "mail.example.org".into(),
        mail_from: mail_from.into(),
        rcpt_to: vec![format!("bob@{DOMAIN}")],
        mailboxes: vec![Mailbox::parse("bob").unwrap()],
        received_ms: 1_732_903_200_000,
        size: 0,
    }
}

fn rules(text: &str) -> RuleSet {
    ruleset::from_text(
        text,
        &Context {
            domains: vec![DOMAIN.into()],
        },
    )
    .unwrap()
}

fn run(rules: &RuleSet, name: &str, mail_from: &str, facts: &Facts) -> Judgement {
    let raw = sample(name);
    let parsed = mail_parser::MessageParser::default().parse(&raw[..]);
    judge(rules, &envelope(mail_from), parsed.as_ref(), &raw, 1, facts)
}

fn hit<'a>(j: &'a Judgement, rule: &str) -> Option<&'a maildrop_contract::RuleHit> {
    j.verdict.hits.iter().find(|h| h.rule == rule)
}

#[test]
fn every_sample_is_checked() {
    let mut names: Vec<String> =
        std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/samples"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "ham-newsletter.eml",
            "ham-reply.eml",
            "spam-bulk-no-date.eml",
            "spam-forged-own-domain.eml",
            "spam-malformed-headers.eml",
        ],
        "a new sample needs its expectations in this file"
    );
}

#[test]
fn ham_passes_every_default_rule() {
    let rules = rules("");
    for (name, from) in [
        ("ham-newsletter.eml", "bounces+1234@mail.news.example.org"),
        ("ham-reply.eml", "alice@example.org"),
    ] {
        let j = run(&rules, name, from, &Facts::default());
        assert!(j.verdict.accepted, "{name}: {:?}", j.verdict.hits);
        assert!(j.verdict.hits.is_empty(), "{name}: {:?}", j.verdict.hits);
        assert_eq!(j.verdict.score, 0.0);
    }
}

#[test]
fn header_sanity_on_bulk_spam_names_what_is_missing() {
    let j = run(
        &rules(""),
        "spam-bulk-no-date.eml",
        "winner@lucky-draw.example",
        &Facts::default(),
    );
    let h = hit(&j, "header_sanity").unwrap();
    assert_eq!(h.score, 2.0);
    assert_eq!(h.reason, "no Date; no Message-ID");
    // Two missing headers alone do not reject with the defaults...
    assert!(j.verdict.accepted);
    // ...but do under a stricter rule set, whose version the verdict records.
    let strict = rules("threshold = 2.0\n");
    let j = run(
        &strict,
        "spam-bulk-no-date.eml",
        "winner@lucky-draw.example",
        &Facts::default(),
    );
    assert!(!j.verdict.accepted);
    assert_eq!(j.verdict.ruleset, strict.version());
    assert_eq!(j.verdict.threshold, 2.0);
}

#[test]
fn a_from_in_our_own_domain_is_rejected_as_forged() {
    let j = run(
        &rules(""),
        "spam-forged-own-domain.eml",
        "bounce@phish.example",
        &Facts::default(),
    );
    assert!(!j.verdict.accepted);
    let h = hit(&j, "header_sanity").unwrap();
    assert_eq!(h.reason, "From support@maildrop.test claims our own domain");
    assert_eq!(j.block_client, None, "header findings never block a client");
}

#[test]
fn malformed_and_repeated_headers_each_count() {
    let j = run(
        &rules(""),
        "spam-malformed-headers.eml",
        "x@pharma.example",
        &Facts::default(),
    );
    let h = hit(&j, "header_sanity").unwrap();
    assert_eq!(h.score, 4.0, "{}", h.reason);
    for part in [
        "Date does not parse",
        "From does not parse",
        "Subject appears 2 times",
    ] {
        assert!(h.reason.contains(part), "{part}: {}", h.reason);
    }
    let off = rules("[header_sanity]\nenabled = false\n");
    let j = run(
        &off,
        "spam-malformed-headers.eml",
        "x@pharma.example",
        &Facts::default(),
    );
    assert!(j.verdict.hits.is_empty());
}

#[test]
fn the_static_sender_list_of_the_rule_file() {
    let rules = rules("[blocked_sender]\nsenders = [\"@lucky-draw.example\"]\n");
    let j = run(
        &rules,
        "spam-bulk-no-date.eml",
        "Winner@Lucky-Draw.example",
        &Facts::default(),
    );
    assert!(!j.verdict.accepted);
    assert_eq!(
        hit(&j, "blocked_sender").unwrap().reason,
        "sender domain lucky-draw.example is blocked"
    );
    let j = run(
        &rules,
        "ham-reply.eml",
        "alice@example.org",
        &Facts::default(),
    );
    assert!(j.verdict.accepted);
}

#[test]
fn run_time_blocklist_matches_reject_with_the_entry_named() {
    let facts = Facts {
        lists: Some(ListMatches {
            subject: Some("cheap pills".into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let j = run(
        &rules(""),
        "spam-malformed-headers.eml",
        "x@pharma.example",
        &facts,
    );
    assert!(!j.verdict.accepted);
    assert_eq!(
        hit(&j, "blocklist").unwrap().reason,
        "blocked: subject \"cheap pills\""
    );
    assert_eq!(j.verdict.score, 14.0);
    // Weighted 0, a list is looked up and says nothing.
    let quiet = rules("[blocklist]\nsubject = 0.0\n");
    let j = run(
        &quiet,
        "spam-malformed-headers.eml",
        "x@pharma.example",
        &facts,
    );
    assert_eq!(hit(&j, "blocklist").unwrap().score, 0.0);
    assert!(j.verdict.accepted);
}

#[test]
fn a_flooding_client_is_rejected_and_blocked_for_the_ip_ban() {
    let facts = Facts {
        flood: Some(FloodFacts {
            ip: Some(FloodCount {
                count: 21,
                banned_since_ms: Some(1_732_903_200_000),
            }),
            subject: Some(FloodCount {
                count: 21,
                banned_since_ms: Some(1_732_903_200_000),
            }),
        }),
        ..Default::default()
    };
    let j = run(
        &rules(""),
        "ham-newsletter.eml",
        "weekly@news.example.org",
        &facts,
    );
    assert!(!j.verdict.accepted);
    let block = j.block_client.unwrap();
    assert_eq!(block.ttl, std::time::Duration::from_secs(300));
    assert!(
        block
            .reason
            .starts_with("flood: client 198.51.100.20 sent 21"),
        "{}",
        block.reason
    );

    // A rule set with a longer ban asks for a longer block; a weight too low to reject blocks
    // nobody.
    let long = rules("[flood]\nip_ban = \"1h\"\n");
    let j = run(
        &long,
        "ham-newsletter.eml",
        "weekly@news.example.org",
        &facts,
    );
    assert_eq!(
        j.block_client.unwrap().ttl,
        std::time::Duration::from_secs(3600)
    );
    let light = rules("[flood]\nweight = 1.0\n");
    let j = run(
        &light,
        "ham-newsletter.eml",
        "weekly@news.example.org",
        &facts,
    );
    assert!(j.verdict.accepted);
    assert_eq!(j.block_client, None);
}
