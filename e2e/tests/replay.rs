//! Research on recorded history: verdicts recorded with one rule set, replayed with a stricter one,
//! and the differences reported exactly; the export writes exactly the messages it was asked for.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::io::Write as _;

use clap::Parser;
use common::{DOMAIN, Pipeline, Stage};
use maildrop_filter::replay::Outcome;
use maildrop_testkit::smtp;

fn rule_file(senders: &[&str]) -> anyhow::Result<tempfile::NamedTempFile> {
    let mut file = tempfile::NamedTempFile::new()?;
    let list: Vec<String> = senders.iter().map(|s| format!("{s:?}")).collect();
    writeln!(file, "[blocked_sender]\nsenders = [{}]", list.join(", "))?;
    Ok(file)
}

/// The queued id in an SMTP `250` reply text.
fn queued(reply: &str) -> String {
    reply.rsplit(' ').next().unwrap().to_owned()
}

fn filter_config(p: &Pipeline, command: &[&str]) -> anyhow::Result<maildrop_filter::Config> {
    let url = p.nats.url();
    let mut args = vec!["maildrop-filter", "--nats-url", &url, "--domains", DOMAIN];
    args.extend_from_slice(command);
    Ok(maildrop_filter::Config::try_parse_from(args)?)
}

#[tokio::test]
async fn a_stricter_replay_reports_exactly_what_changes_and_export_selects_by_verdict()
-> anyhow::Result<()> {
    let recorded_rules = rule_file(&["@spam.example"])?;
    let stricter = rule_file(&["@spam.example", "@promo.example"])?;
    let flags = HashMap::from([(
        Stage::Filter,
        vec![
            "--rules".to_owned(),
            recorded_rules.path().display().to_string(),
        ],
    )]);
    let p = Pipeline::start_with(flags, &common::ALL).await?;

    let mut ids = HashMap::new();
    for (name, from) in [
        ("ham1", "friend@ok.example"),
        ("ham2", "friend@ok.example"),
        ("spam", "boss@spam.example"),
        ("promo1", "deals@promo.example"),
        ("promo2", "deals@promo.example"),
    ] {
        let reply = smtp::send_mail(p.smtp, from, &p.address("bob"), name, "hello").await?;
        ids.insert(name, queued(&reply));
    }
    p.wait_for_stats("five verdicts recorded", |s| {
        s["accepted"] == 4 && s["rejected"] == 1 && s["stored"] == 4
    })
    .await?;

    let rules_path = stricter.path().display().to_string();
    let config = filter_config(
        &p,
        &["replay", "--since", "1h", "--rules", &rules_path, "--json"],
    )?;
    let Some(maildrop_filter::config::Command::Replay(args)) = &config.command else {
        panic!("replay parses as the replay command");
    };
    let mut out = Vec::new();
    let comparison = maildrop_filter::replay::command(&config, args, &mut out).await?;
    let printed: serde_json::Value = serde_json::from_slice(&out)?;
    assert_eq!(printed["changed"], 2, "{printed}");

    assert_eq!(comparison.messages, 5);
    assert_eq!(comparison.changed, 2);
    let cells: Vec<_> = comparison
        .cells
        .iter()
        .map(|c| (c.recorded, c.replayed, c.count))
        .collect();
    assert_eq!(
        cells,
        [
            (Outcome::Accepted, Outcome::Accepted, 2),
            (Outcome::Accepted, Outcome::Rejected, 2),
            (Outcome::Rejected, Outcome::Rejected, 1),
        ]
    );
    let changed: BTreeSet<_> = comparison.cells[1].examples.iter().cloned().collect();
    assert_eq!(
        changed,
        BTreeSet::from([ids["promo1"].clone(), ids["promo2"].clone()])
    );
    let blocked = &comparison.rules["blocked_sender"];
    assert_eq!((blocked.recorded, blocked.replayed), (1, 3));
    for (rule, n) in &comparison.rules {
        if rule != "blocked_sender" {
            assert_eq!(
                n.recorded, n.replayed,
                "{rule}: the same rule, the same hits"
            );
        }
    }
    // A replay publishes nothing: still five verdicts, four stored.
    let (_, stats) = p.get_json("/api/stats").await?;
    assert_eq!(
        (stats["accepted"].as_u64(), stats["rejected"].as_u64()),
        (Some(4), Some(1))
    );

    // Export: the rejected one as .eml, the accepted ones as an mbox.
    let dir = tempfile::tempdir()?;
    let eml = dir.path().join("rejected");
    let eml_path = eml.display().to_string();
    let config = filter_config(
        &p,
        &[
            "export",
            "--since",
            "1h",
            "--verdict",
            "rejected",
            "--format",
            "eml",
            "--out",
            &eml_path,
        ],
    )?;
    let Some(maildrop_filter::config::Command::Export(args)) = &config.command else {
        panic!("export parses as the export command");
    };
    let js = maildrop_filter::replay::connect(&config).await?;
    assert_eq!(maildrop_filter::export::export(&js, args).await?, 1);
    let files: Vec<_> = std::fs::read_dir(&eml)?
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(files, [format!("{}.eml", ids["spam"])]);
    let spam = std::fs::read(eml.join(&files[0]))?;
    assert!(spam.windows(13).any(|w| w == b"Subject: spam"));

    let mbox = dir.path().join("accepted.mbox");
    let mbox_path = mbox.display().to_string();
    let config = filter_config(
        &p,
        &[
            "export",
            "--since",
            "1h",
            "--verdict",
            "accepted",
            "--out",
            &mbox_path,
        ],
    )?;
    let Some(maildrop_filter::config::Command::Export(args)) = &config.command else {
        panic!("export parses as the export command");
    };
    assert_eq!(maildrop_filter::export::export(&js, args).await?, 4);
    let text = std::fs::read(&mbox)?;
    let raw = p.raw("bob", &ids["ham1"]).await?;
    assert!(
        text.windows(raw.len()).any(|w| w == &raw[..]),
        "the mbox holds the message's bytes unchanged"
    );
    let entries = text
        .split(|&b| b == b'\n')
        .filter(|l| {
            l.starts_with(b"From friend@ok.example ") || l.starts_with(b"From deals@promo.example ")
        })
        .count();
    assert_eq!(entries, 4);
    Ok(())
}
