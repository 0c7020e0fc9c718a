//! `scenario soak`: a steady, moderate load for minutes, to see whether memory stays flat. All
//! five stages run as processes; messages of the size mix go out at `--soak-rate` per second
//! (200 by default) for `--soak-duration` (3 minutes by default), with the NATS probe and
//! `--ws-watchers` WebSocket watchers following them, and every process's RSS is read every
//! `--soak-every` (5 s). Reported per process: RSS at the start, the middle and the end of the
//! run, the peak, and the slope of RSS over the second half (MiB per minute, least squares): a
//! stage whose memory stays flat has a slope near zero once it has warmed up.

use std::time::Duration;

use serde_json::json;

use crate::cli::{LoadArgs, ProcessArgs};
use crate::measure::{self, Measurement};
use crate::probe::ProbeConfig;
use crate::procs::{Fleet, Limits};
use crate::report::{human_duration, round1, table};
use crate::resources::mib;
use crate::sample::{ProcessUsage, Reading};
use crate::scenario::{Machine, ScenarioReport, bin_dir, plan_for};
use crate::size::SizeSpec;
use crate::system;

pub async fn run(load: &LoadArgs, procs: &ProcessArgs) -> anyhow::Result<ScenarioReport> {
    let machine = Machine::probe();
    let fleet = Fleet::start(
        &system::ALL,
        &load.domain,
        &bin_dir(procs),
        &Limits::default(),
    )
    .await?;
    let http = fleet.http.expect("the pipeline runs the gateway");
    let length = procs.soak_duration;
    let mut plan = plan_for(load, fleet.smtp, SizeSpec::Mix, length, 50);
    plan.rate = Some(f64::from(procs.soak_rate));
    // The clock ends the soak, not the count.
    plan.messages = (length.as_secs_f64() * f64::from(procs.soak_rate)).ceil() as u64 + 1;
    let m = Measurement {
        title: format!(
            "soak · {} msg/s for {}",
            procs.soak_rate,
            human_duration(length)
        ),
        plan,
        probes: ProbeConfig {
            nats_url: Some(fleet.nats.url()),
            redis_url: None,
            ws_url: Some(format!("ws://{http}")),
            ws_watchers: load.ws_watchers,
        },
        warmup: load.warmup,
        settle: load.settle,
        process_note: Some("the load generator and its probes".into()),
        sample: fleet.watched(),
        sample_every: procs.soak_every,
    };
    let r = measure::run(&m).await;
    fleet.stop().await;
    let r = r?;
    let rows: Vec<SoakRow> = r.processes.iter().map(SoakRow::of).collect();
    let mut extra = serde_json::Map::new();
    extra.insert(
        "soak".into(),
        json!({
            "rate": procs.soak_rate,
            "duration_s": length.as_secs_f64(),
            "sample_every_s": procs.soak_every.as_secs_f64(),
            "processes": r.processes.iter().map(|p| json!({
                "name": p.name,
                "rss_mib": p.readings.iter().map(|x| json!([round1(x.at.as_secs_f64()), round1(mib(x.rss_kib))])).collect::<Vec<_>>(),
                "slope_mib_per_min": SoakRow::of(p).slope,
            })).collect::<Vec<_>>(),
        }),
    );
    let section = format!("### memory over the soak\n\n{}", soak_table(&rows));
    Ok(ScenarioReport {
        name: "soak",
        machine,
        runs: vec![r],
        sections: vec![section],
        extra,
        notes: vec![
            format!(
                "All five stages as processes; the size mix at {} messages per second for {} over {} mailboxes (each keeps its newest 10 by default, so what Redis holds is bounded), {} WebSocket watchers; RSS of every process read every {}.",
                procs.soak_rate,
                human_duration(length),
                load.mailboxes,
                load.ws_watchers,
                human_duration(procs.soak_every)
            ),
            "start, middle, end: the reading nearest the start, the middle and the end of the run; slope: least squares over the second half, in MiB per minute. nats-server keeps every message in its streams (7 days by default), so its memory may grow with the data it holds.".into(),
        ],
    })
}

/// One process's memory over the soak.
#[derive(Debug, Clone, PartialEq)]
pub struct SoakRow {
    pub name: String,
    pub start_kib: Option<u64>,
    pub middle_kib: Option<u64>,
    pub end_kib: Option<u64>,
    pub peak_kib: u64,
    pub slope: Option<f64>,
}

impl SoakRow {
    pub fn of(p: &ProcessUsage) -> Self {
        let span = p.readings.last().map_or(Duration::ZERO, |r| r.at);
        let nearest = |at: Duration| -> Option<u64> {
            p.readings
                .iter()
                .min_by_key(|r| r.at.abs_diff(at))
                .map(|r: &Reading| r.rss_kib)
        };
        Self {
            name: p.name.clone(),
            start_kib: nearest(Duration::ZERO),
            middle_kib: nearest(span / 2),
            end_kib: nearest(span),
            peak_kib: p.peak_rss_kib,
            slope: p
                .rss_slope_mib_per_min(span / 2)
                .map(|s| (s * 100.0).round() / 100.0),
        }
    }
}

pub fn soak_table(rows: &[SoakRow]) -> String {
    let show = |k: Option<u64>| k.map_or_else(|| "–".to_owned(), |k| format!("{:.1} MiB", mib(k)));
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.name.clone(),
                show(r.start_kib),
                show(r.middle_kib),
                show(r.end_kib),
                format!("{:.1} MiB", mib(r.peak_kib)),
                r.slope
                    .map_or_else(|| "–".to_owned(), |s| format!("{s:+.2} MiB/min")),
            ]
        })
        .collect();
    table(
        &[
            "process",
            "RSS start",
            "RSS middle",
            "RSS end",
            "peak RSS",
            "slope, 2nd half",
        ],
        &rows,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_series_is_read_at_its_start_middle_and_end() {
        let readings = (0..=10)
            .map(|i| Reading {
                at: Duration::from_secs(i * 6),
                rss_kib: 10_240 + if i >= 5 { (i - 5) * 1024 } else { 0 },
                hwm_kib: 0,
                cpu_ticks: 0,
            })
            .collect();
        let p = ProcessUsage::from_readings("ingest", 1, readings, 100);
        let row = SoakRow::of(&p);
        assert_eq!(row.start_kib, Some(10_240));
        assert_eq!(row.middle_kib, Some(10_240));
        assert_eq!(row.end_kib, Some(15 * 1024));
        // 1 MiB per 6 s over the second half: 10 MiB per minute.
        assert_eq!(row.slope, Some(10.0));
        let t = soak_table(&[row]);
        assert!(
            t.contains("| ingest  | 10.0 MiB  | 10.0 MiB   | 15.0 MiB | 15.0 MiB | +10.00 MiB/min"),
            "{t}"
        );
    }
}
