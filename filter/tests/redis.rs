//! The filter's Redis side against a real `redis-server`: the `block` admin command, gathering
//! list matches and flood counts into the facts, the feedback to the ingest's blocked-IP set, and
//! the verdict cache.

use std::time::Duration;

use clap::Parser;
use maildrop_contract::{Envelope, Mailbox, MessageId};
use maildrop_filter::Config;
use maildrop_filter::admin::{self, AdminError};
use maildrop_filter::config::Command;
use maildrop_filter::facts::{Facts, RedisFacts};
use maildrop_filter::feedback;
use maildrop_filter::handler::{Judgement, judge};
use maildrop_filter::rules::RuleSet;
use maildrop_filter::ruleset::{self, Context};
use maildrop_filter::verdict_cache::VerdictCache;
use maildrop_store::PolicyStore;
use maildrop_testkit::RedisServer;
use serde::{Deserialize, Serialize};

async fn conn(server: &RedisServer) -> anyhow::Result<maildrop_store::Redis> {
    Ok(maildrop_store::Redis::open(&server.url()).await?)
}

/// `maildrop-filter --redis-url <url> block …`, as the binary runs it; returns what it printed.
async fn block(server: &RedisServer, args: &[&str]) -> Result<String, AdminError> {
    let mut argv = vec!["maildrop-filter", "--redis-url"];
    let url = server.url();
    argv.push(&url);
    argv.push("block");
    argv.extend(args);
    let config = Config::try_parse_from(argv).expect("the command parses");
    let Some(Command::Block(args)) = &config.command else {
        panic!("not a block command")
    };
    let mut out = Vec::new();
    admin::run(&config.redis.url, args, &mut out).await?;
    Ok(String::from_utf8(out).unwrap())
}

#[tokio::test]
async fn the_block_command_adds_lists_and_removes_entries() -> anyhow::Result<()> {
    let server = RedisServer::start().await?;
    assert_eq!(
        block(&server, &["add", "ip", "203.0.113.0/24", "--ttl", "1h"]).await?,
        "blocked ip 203.0.113.0/24 for 1h\n"
    );
    assert_eq!(
        block(&server, &["add", "sender", "Spam@Example.COM"]).await?,
        "blocked sender spam@example.com until removed\n"
    );
    assert_eq!(
        block(&server, &["add", "subject", "  Cheap   PILLS "]).await?,
        "blocked subject cheap pills until removed\n"
    );
    let listed = block(&server, &["list"]).await?;
    let lines: Vec<&str> = listed.lines().collect();
    assert_eq!(lines.len(), 3, "{listed}");
    assert_eq!(lines[0], "sender\tspam@example.com\tnever");
    assert!(
        lines[1].starts_with("ip\t203.0.113.0/24\t20"),
        "{}",
        lines[1]
    );
    assert_eq!(lines[2], "subject\tcheap pills\tnever");
    assert_eq!(
        block(&server, &["list", "subject"]).await?,
        "subject\tcheap pills\tnever\n"
    );

    assert_eq!(
        block(&server, &["remove", "sender", "spam@example.com"]).await?,
        "unblocked sender spam@example.com\n"
    );
    assert_eq!(
        block(&server, &["remove", "sender", "spam@example.com"]).await?,
        "sender spam@example.com was not blocked\n"
    );

    // Bad input is refused with the reason, and nothing is written.
    let err = block(&server, &["add", "ip", "203.0.113.1/24"])
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "\"203.0.113.1/24\" has bits set after its prefix (did you mean 203.0.113.0/24?)"
    );
    assert!(block(&server, &["add", "sender", "nobody"]).await.is_err());
    assert_eq!(block(&server, &["list", "sender"]).await?, "");
    assert!(Config::try_parse_from(["maildrop-filter", "block", "add", "colour", "x"]).is_err());
    Ok(())
}

#[tokio::test]
async fn an_unreachable_redis_fails_fast() {
    let port = maildrop_testkit::free_port();
    let config = Config::try_parse_from([
        "maildrop-filter",
        "--redis-url",
        &format!("redis://127.0.0.1:{port}"),
        "block",
        "list",
    ])
    .unwrap();
    let Some(Command::Block(args)) = &config.command else {
        panic!()
    };
    let err = admin::run(&config.redis.url, args, &mut Vec::new())
        .await
        .unwrap_err();
    assert!(matches!(err, AdminError::Connect(_)), "{err:?}");
}

fn envelope(ip: &str, received_ms: u64) -> Envelope {
    Envelope {
        id: MessageId::new(),
        client_ip: ip.parse().unwrap(),
        helo: "bulk.example".into(),
        mail_from: "offers@bulk.example".into(),
        rcpt_to: vec!["x@maildrop.test".into()],
        mailboxes: vec![Mailbox::parse("x").unwrap()],
        received_ms,
        size: 0,
    }
}

const RAW: &[u8] =
    b"From: offers@bulk.example\r\nTo: x@maildrop.test\r\nSubject: Limited offer\r\n\
    Date: Fri, 29 Nov 2024 18:00:00 +0000\r\nMessage-ID: <1@bulk.example>\r\n\r\nBuy now\r\n";

async fn gather_and_judge(facts: &RedisFacts, rules: &RuleSet, env: &Envelope) -> Judgement {
    let parsed = mail_parser::MessageParser::default().parse(RAW);
    let mut found = Facts::default();
    facts
        .gather(rules, env, parsed.as_ref(), &mut found)
        .await
        .unwrap();
    judge(rules, env, parsed.as_ref(), RAW, 1, &found)
}

#[tokio::test]
async fn messages_past_the_flood_limit_are_rejected_once_counted_and_the_ip_is_blocked()
-> anyhow::Result<()> {
    let server = RedisServer::start().await?;
    let conn = conn(&server).await?;
    let facts = RedisFacts::new(conn.clone());
    let policy = PolicyStore::new(conn);
    let rules = ruleset::from_text(
        "[flood]\nip_limit = 5\nsubject_limit = 0\n",
        &Context::default(),
    )?;
    let t0 = 1_732_903_200_000;

    let mut envelopes = Vec::new();
    let mut accepted = Vec::new();
    for i in 0..8 {
        let env = envelope("203.0.113.7", t0 + i);
        let j = gather_and_judge(&facts, &rules, &env).await;
        if let Some(block) = &j.block_client {
            feedback::block_client(&policy, env.client_ip, block).await?;
        }
        accepted.push(j.verdict.accepted);
        envelopes.push(env);
    }
    assert_eq!(
        accepted,
        [true, true, true, true, true, false, false, false]
    );
    // Blocked at the ingest for the IP ban, with the count that asked for it as the reason (a
    // later rejection renews the block, so which count is named depends on the clock).
    let reason = policy.is_blocked("203.0.113.7".parse()?).await?.unwrap();
    assert!(
        reason.starts_with("flood: client 203.0.113.7 sent ")
            && reason.ends_with(" messages in 2m (limit 5)"),
        "{reason}"
    );
    let mut redis = server.conn().await?;
    let ttl: i64 = redis::cmd("PTTL")
        .arg(maildrop_store::keys::blocked_ip("203.0.113.7".parse()?))
        .query_async(&mut redis)
        .await?;
    assert!(ttl > 290_000 && ttl <= 300_000, "{ttl}");

    // A redelivered message is not counted again: its verdict is what it was.
    let again = gather_and_judge(&facts, &rules, &envelopes[2]).await;
    assert!(again.verdict.accepted);
    let again = gather_and_judge(&facts, &rules, &envelopes[6]).await;
    assert!(!again.verdict.accepted);

    // Another client is not affected; loopback is never counted.
    assert!(
        gather_and_judge(&facts, &rules, &envelope("198.51.100.1", t0 + 9))
            .await
            .verdict
            .accepted
    );
    for i in 0..10 {
        let j = gather_and_judge(&facts, &rules, &envelope("127.0.0.1", t0 + 10 + i)).await;
        assert!(j.verdict.accepted);
    }
    Ok(())
}

#[tokio::test]
async fn a_subject_flood_bans_the_subject_from_every_client() -> anyhow::Result<()> {
    let server = RedisServer::start().await?;
    let facts = RedisFacts::new(conn(&server).await?);
    let rules = ruleset::from_text(
        "[flood]\nip_limit = 0\nsubject_limit = 3\n",
        &Context::default(),
    )?;
    let t0 = 1_732_903_200_000;
    let mut accepted = Vec::new();
    for i in 0..5u64 {
        let ip = format!("198.51.100.{}", i + 1);
        let j = gather_and_judge(&facts, &rules, &envelope(&ip, t0 + i)).await;
        accepted.push(j.verdict.accepted);
        assert_eq!(j.block_client, None, "a subject flood blocks no client");
    }
    assert_eq!(accepted, [true, true, true, false, false]);
    // Long after the window, still inside the one-hour ban.
    let late = gather_and_judge(&facts, &rules, &envelope("192.0.2.1", t0 + 600_000)).await;
    assert!(!late.verdict.accepted);
    assert!(late.verdict.hits[0].reason.contains("with this subject"));
    Ok(())
}

#[tokio::test]
async fn list_entries_added_at_run_time_apply_to_the_next_message() -> anyhow::Result<()> {
    let server = RedisServer::start().await?;
    let facts = RedisFacts::new(conn(&server).await?);
    let rules = ruleset::defaults(&Context::default());
    let env = envelope("203.0.113.50", 1_732_903_200_000);
    assert!(
        gather_and_judge(&facts, &rules, &env)
            .await
            .verdict
            .accepted
    );

    block(&server, &["add", "domain", "bulk.example"]).await?;
    let j = gather_and_judge(&facts, &rules, &envelope("203.0.113.50", 1_732_903_200_001)).await;
    assert!(!j.verdict.accepted);
    assert_eq!(j.verdict.hits[0].rule, "blocklist");
    assert_eq!(j.verdict.hits[0].reason, "blocked: domain bulk.example");
    assert_eq!(
        j.block_client, None,
        "a list match rejects the message, not the client"
    );

    block(&server, &["remove", "domain", "bulk.example"]).await?;
    let j = gather_and_judge(&facts, &rules, &envelope("203.0.113.50", 1_732_903_200_002)).await;
    assert!(j.verdict.accepted);

    // A disabled rule is not even looked up.
    let off = ruleset::from_text(
        "[blocklist]\nenabled = false\n[flood]\nenabled = false\n",
        &Context::default(),
    )?;
    let mut found = Facts::default();
    facts.gather(&off, &env, None, &mut found).await?;
    assert_eq!(found, Facts::default());
    Ok(())
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct ClientFacts {
    listed_on: Vec<String>,
}

#[tokio::test]
async fn the_verdict_cache_answers_only_under_the_same_settings() -> anyhow::Result<()> {
    let server = RedisServer::start().await?;
    let cache = VerdictCache::new(conn(&server).await?, Duration::from_secs(60));
    let ip = "203.0.113.7".parse()?;
    assert!(cache.is_on());
    assert_eq!(
        cache.get::<ClientFacts>(ip, "mx.example", "zones=a").await,
        None
    );
    let facts = ClientFacts {
        listed_on: vec!["zen.example".into()],
    };
    cache.put(ip, "MX.Example", "zones=a", &facts).await;
    assert_eq!(cache.get(ip, "mx.example", "zones=a").await, Some(facts));
    assert_eq!(
        cache.get::<ClientFacts>(ip, "mx.example", "zones=b").await,
        None
    );
    assert_eq!(
        cache
            .get::<ClientFacts>(ip, "other.example", "zones=a")
            .await,
        None
    );

    let mut redis = server.conn().await?;
    let ttl: i64 = redis::cmd("PTTL")
        .arg(maildrop_store::keys::verdict_cache(ip, "mx.example"))
        .query_async(&mut redis)
        .await?;
    assert!(ttl > 50_000 && ttl <= 60_000, "{ttl}");

    let off = VerdictCache::new(conn(&server).await?, Duration::ZERO);
    assert!(!off.is_on());
    assert_eq!(
        off.get::<ClientFacts>(ip, "mx.example", "zones=a").await,
        None
    );
    Ok(())
}
