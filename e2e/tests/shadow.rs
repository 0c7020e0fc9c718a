//! Shadow mode on live traffic: a second filter with a stricter candidate rule set judges every
//! message again, publishes only to the SHADOW stream, and `/api/stats` shows exactly how it would
//! have differed. Its rejections never reach a mailbox or VERDICTS.

mod common;

use std::collections::BTreeSet;
use std::io::Write as _;
use std::time::Duration;

use common::Pipeline;
use maildrop_contract::{Verdict, subject};
use maildrop_testkit::{smtp, wait_until};

/// The verdicts in `stream`, with their subjects, in stream order.
async fn verdicts(
    js: &async_nats::jetstream::Context,
    stream: &str,
) -> anyhow::Result<Vec<(String, Verdict)>> {
    let mut s = js.get_stream(stream).await?;
    let state = s.info().await?.state.clone();
    let mut out = Vec::new();
    for seq in state.first_sequence..=state.last_sequence {
        let msg = s.direct_get(seq).await?;
        out.push((
            msg.subject.to_string(),
            serde_json::from_slice(&msg.payload)?,
        ));
    }
    Ok(out)
}

#[tokio::test]
async fn a_shadow_filter_publishes_only_to_its_stream_and_stats_show_the_difference()
-> anyhow::Result<()> {
    let mut candidate = tempfile::NamedTempFile::new()?;
    writeln!(
        candidate,
        "[blocked_sender]\nsenders = [\"@promo.example\"]"
    )?;
    let mut p = Pipeline::start().await?;
    let rules = candidate.path().display().to_string();
    p.start_extra_filter(&["--shadow", "--rules", &rules])
        .await?;

    let mut ids = BTreeSet::new();
    for (i, from) in [
        "friend@ok.example",
        "deals@promo.example",
        "friend@ok.example",
        "deals@promo.example",
        "friend@ok.example",
    ]
    .into_iter()
    .enumerate()
    {
        let reply =
            smtp::send_mail(p.smtp, from, &p.address("bob"), &format!("m{i}"), "hi").await?;
        ids.insert(reply.rsplit(' ').next().unwrap().to_owned());
    }

    // Production accepted all five: every one is in the mailbox.
    let inbox = p.wait_for_inbox("bob", 5, Duration::from_secs(30)).await?;
    assert_eq!(inbox.len(), 5);
    let stats = p
        .wait_for_stats("every message paired", |s| {
            let shadow = &s["shadow"];
            shadow["agree_accepted"] == 3 && shadow["accepted_now_rejected"] == 2
        })
        .await?;
    assert_eq!(stats["accepted"], 5, "{stats}");
    assert_eq!(stats["rejected"], 0, "{stats}");
    assert_eq!(stats["stored"], 5, "{stats}");
    let shadow = &stats["shadow"];
    assert_eq!(shadow["agree_rejected"], 0, "{stats}");
    assert_eq!(shadow["rejected_now_accepted"], 0, "{stats}");

    let js = async_nats::jetstream::new(async_nats::connect(p.nats.url()).await?);
    // SHADOW holds exactly one verdict per message, the candidate's; it is the ruleset shown.
    let shadowed = wait_until(Duration::from_secs(10), "five shadow verdicts", || {
        let js = js.clone();
        async move {
            let v = verdicts(&js, subject::SHADOW_STREAM).await.ok()?;
            (v.len() >= 5).then_some(v)
        }
    })
    .await?;
    assert_eq!(shadowed.len(), 5);
    let shadow_ids: BTreeSet<String> = shadowed.iter().map(|(_, v)| v.id.to_string()).collect();
    assert_eq!(shadow_ids, ids);
    for (subj, v) in &shadowed {
        let promo = v.mail_from.ends_with("@promo.example");
        assert_eq!(v.accepted, !promo, "{v:?}");
        assert_eq!(subj, subject::shadow_verdict(v.accepted));
        assert_eq!(shadow["ruleset"], v.ruleset.as_str(), "{stats}");
    }

    // VERDICTS holds production's five, all accepted, none of the shadow's.
    let production = verdicts(&js, subject::VERDICTS_STREAM).await?;
    assert_eq!(production.len(), 5);
    for (subj, v) in &production {
        assert_eq!(subj, subject::VERDICT_ACCEPTED, "{v:?}");
        assert_ne!(v.ruleset, shadowed[0].1.ruleset);
    }
    Ok(())
}
