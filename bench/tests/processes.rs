//! The process scenarios against the real stage binaries (built by the testkit with the cargo that
//! runs the tests), with small counts: every stage is started, sampled and reported, and what the
//! scenario says it measured really arrived.

use std::path::PathBuf;

use clap::Parser;
use maildrop_bench::cli::Cli;

fn bin_dir() -> PathBuf {
    maildrop_testkit::process::stage_binary("maildrop-ingest")
        .expect("the stage binaries build")
        .parent()
        .expect("a binary is in a directory")
        .to_owned()
}

async fn scenario(args: &[&str]) -> serde_json::Value {
    let bins = bin_dir();
    let mut argv = vec!["maildrop-bench", "scenario"];
    argv.extend(args);
    argv.extend(["--bin-dir", bins.to_str().unwrap(), "--json"]);
    let cli = Cli::try_parse_from(argv).unwrap();
    let out = maildrop_bench::run(cli).await.expect("the scenario runs");
    serde_json::from_str(&out).expect("JSON output")
}

const STAGES: [&str; 5] = ["ingest", "filter", "store-writer", "reporter", "gateway"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sessions_are_held_and_every_process_is_sampled() {
    let report = scenario(&[
        "connections",
        "--idle-connections",
        "40",
        "--idle-hold",
        "1s",
    ])
    .await;
    let c = &report["results"]["connections"];
    assert_eq!(c["opened"], 40, "{report:#}");
    assert_eq!(c["alive_after_hold"], 40, "{report:#}");
    let processes = c["processes"].as_array().unwrap();
    let names: Vec<&str> = processes
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for stage in STAGES {
        assert!(names.contains(&stage), "{stage} missing: {names:?}");
    }
    assert!(names.contains(&"nats-server") && names.contains(&"redis-server"));
    for p in processes {
        assert!(p["peak_rss_mib"].as_f64().unwrap() > 0.0, "{p}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_watcher_gets_every_push_at_a_fixed_rate() {
    let report = scenario(&[
        "push",
        "--push-watchers",
        "30",
        "--push-mailboxes",
        "10",
        "--push-messages",
        "60",
        "--push-rate",
        "100",
        "--warmup",
        "0",
        "--settle",
        "20s",
    ])
    .await;
    let run = &report["runs"][0];
    assert_eq!(run["accepted"], 60, "{run:#}");
    assert_eq!(run["rate"], 100.0);
    // 60 messages started at 100 per second take at least 0.59 s.
    assert!(run["elapsed_s"].as_f64().unwrap() >= 0.59, "{run:#}");
    let pushed = &run["end_to_end"]["pushed_ws"];
    // 3 watchers on each of the 10 mailboxes: 3 pushes per message.
    assert_eq!(pushed["expected"], 180, "{run:#}");
    assert_eq!(pushed["seen"], 180, "{run:#}");
    let sampled: Vec<&str> = run["processes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for stage in STAGES {
        assert!(sampled.contains(&stage), "{stage} missing: {sampled:?}");
    }
}
