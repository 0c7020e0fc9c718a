//! What a run measured, as a readable table and as JSON.
//!
//! Tables are Markdown pipe tables with padded columns, so the same text reads well in a terminal
//! and can be pasted into `docs/benchmarks.md` unchanged.

use std::time::Duration;

use serde_json::{Value, json};

use crate::load::{Outcome, Plan};
use crate::resources::{self, Snapshot};
use crate::sample::ProcessUsage;
use crate::stats::{Latency, human_us, per_second};
use crate::track::ProbeSummary;

/// CPU and memory over one run.
#[derive(Debug, Clone)]
pub struct ResourceReport {
    /// This process: CPU during the run, peak RSS since it started.
    pub process: Option<(Duration, u64)>,
    /// Child processes (`nats-server`, `redis-server`): name, CPU during the run, peak RSS.
    pub children: Vec<(String, Duration, u64)>,
    /// Wall time the CPU figures cover.
    pub wall: Duration,
    /// All cores together: time busy and time in total over the run (from `/proc/stat`).
    pub machine: Option<(Duration, Duration)>,
    /// CPU of the stages' threads in this process (scenarios only; zero otherwise).
    pub stages: Duration,
    /// What this process is (e.g. "bench client and the ingest, in-process").
    pub note: Option<String>,
}

impl ResourceReport {
    pub fn between(
        before: &Snapshot,
        after: &Snapshot,
        wall: Duration,
        note: Option<String>,
    ) -> Self {
        let process = match (before.process, after.process) {
            (Some(b), Some(a)) => Some((resources::cpu_between(b, a), a.peak_rss_kib)),
            _ => None,
        };
        let children = after
            .children
            .iter()
            .map(|a| {
                let cpu = before
                    .children
                    .iter()
                    .find(|b| b.pid == a.pid)
                    .map_or(a.usage.cpu, |b| resources::cpu_between(b.usage, a.usage));
                (a.name.clone(), cpu, a.usage.peak_rss_kib)
            })
            .collect();
        let machine = match (before.machine, after.machine) {
            (Some(b), Some(a)) => Some((
                a.busy.saturating_sub(b.busy),
                a.total.saturating_sub(b.total),
            )),
            _ => None,
        };
        Self {
            process,
            children,
            wall,
            machine,
            stages: after.stage_threads.saturating_sub(before.stage_threads),
            note,
        }
    }

    /// CPU of this process and its children over the run.
    pub fn ours(&self) -> Duration {
        self.process.map_or(Duration::ZERO, |(cpu, _)| cpu)
            + self
                .children
                .iter()
                .map(|(_, cpu, _)| *cpu)
                .sum::<Duration>()
    }

    /// CPU that other processes on the machine used during the run (busy time not ours).
    pub fn others(&self) -> Option<Duration> {
        self.machine
            .map(|(busy, _)| busy.saturating_sub(self.ours()))
    }
}

/// Everything about one run.
#[derive(Debug, Clone)]
pub struct RunReport {
    pub title: String,
    pub plan: Plan,
    pub outcome: Outcome,
    pub e2e: Vec<ProbeSummary>,
    pub resyncs: u64,
    pub resources: Option<ResourceReport>,
    /// The processes sampled during the measured run (stages, servers, peers), in order.
    pub processes: Vec<ProcessUsage>,
}

impl RunReport {
    pub fn latency(&self) -> Latency {
        Latency::of(&self.outcome.latency)
    }

    /// The run as a two-column table under a `### title` line.
    pub fn table(&self) -> String {
        let p = &self.plan;
        let o = &self.outcome;
        let lat = self.latency();
        let mut rows: Vec<[String; 2]> = vec![
            ["target".into(), format!("{} (SMTP)", p.target)],
            [
                "load".into(),
                format!(
                    "{} sessions, {} per connection{}",
                    p.sessions,
                    plural(u64::from(p.per_connection), "message"),
                    if p.per_connection > 1 {
                        " (RSET between)"
                    } else {
                        ""
                    }
                ),
            ],
            ["message size".into(), p.size.to_string()],
            [
                "pace".into(),
                p.rate.map_or_else(
                    || "as fast as the sessions go".to_owned(),
                    |r| format!("{r:.0} messages/s started"),
                ),
            ],
            [
                "recipients".into(),
                format!("{} mailboxes at {}", p.mailboxes, p.domain),
            ],
            [
                "limits".into(),
                format!(
                    "{} messages or {}; stopped by {}",
                    p.messages,
                    human_duration(p.duration),
                    o.stopped_by.as_str()
                ),
            ],
            ["elapsed".into(), human_duration(o.elapsed)],
            ["sent".into(), o.sent.to_string()],
            ["accepted (250)".into(), o.accepted.to_string()],
            [
                "failed".into(),
                if o.failures.total() == 0 {
                    "0".into()
                } else {
                    format!("{} ({})", o.failures.total(), o.failures.summary())
                },
            ],
            [
                "**accepted/s**".into(),
                format!("**{:.0}**", o.accepted_per_second()),
            ],
            [
                "throughput".into(),
                format!(
                    "{:.1} MiB/s of message data, {} connections",
                    per_second(o.bytes, o.elapsed) / (1024.0 * 1024.0),
                    o.connections
                ),
            ],
            [
                "SMTP latency p50 / p99 / max".into(),
                format!(
                    "{} / {} / {} (MAIL FROM → 250 after DATA)",
                    human_us(lat.p50_us),
                    human_us(lat.p99_us),
                    human_us(lat.max_us)
                ),
            ],
        ];
        for s in &self.e2e {
            rows.push([
                format!("{} p50 / p99 / max", s.probe.label()),
                format!(
                    "{} / {} / {} ({} of {} seen)",
                    human_us(s.latency.p50_us),
                    human_us(s.latency.p99_us),
                    human_us(s.latency.max_us),
                    s.seen,
                    s.expected
                ),
            ]);
        }
        if let Some(stored) = self.e2e.first() {
            rows.push([
                "end to end/s".into(),
                format!(
                    "{:.0} ({} seen per second, from the start of the load to the last one)",
                    stored.per_second,
                    stored.probe.key()
                ),
            ]);
        }
        if self.resyncs > 0 {
            rows.push([
                "WebSocket resyncs".into(),
                format!("{} (a watcher fell behind)", self.resyncs),
            ]);
        }
        if let Some(r) = &self.resources {
            if let Some((cpu, peak)) = r.process {
                rows.push([
                    "CPU, this process".into(),
                    format!(
                        "{} ({:.0} % of one core over {}) — {}",
                        human_duration(cpu),
                        100.0 * cpu.as_secs_f64() / r.wall.as_secs_f64().max(1e-9),
                        human_duration(r.wall),
                        r.note.as_deref().unwrap_or("this process"),
                    ),
                ]);
                if !r.stages.is_zero() {
                    rows.push([
                        "… of which the stages".into(),
                        format!(
                            "{} ({} per accepted message; threads `{}`)",
                            human_duration(r.stages),
                            human_us(per_message_us(r.stages, o.accepted)),
                            resources::STAGE_THREAD,
                        ),
                    ]);
                    rows.push([
                        "… of which the load generator".into(),
                        format!(
                            "{} (SMTP client, message generation, probes)",
                            human_duration(cpu.saturating_sub(r.stages))
                        ),
                    ]);
                }
                rows.push([
                    "peak RSS, this process".into(),
                    format!("{:.1} MiB (VmHWM, since start)", resources::mib(peak)),
                ]);
            }
            if let (Some((busy, total)), Some(others)) = (r.machine, r.others()) {
                rows.push([
                    "machine CPU during the run".into(),
                    format!(
                        "{:.0} % of all cores busy; other processes used {} ({:.0} % of one core)",
                        100.0 * busy.as_secs_f64() / total.as_secs_f64().max(1e-9),
                        human_duration(others),
                        100.0 * others.as_secs_f64() / r.wall.as_secs_f64().max(1e-9),
                    ),
                ]);
            }
            // With sampled processes, their table below says it better (and per stage).
            for (name, cpu, peak) in r.children.iter().filter(|_| self.processes.is_empty()) {
                rows.push([
                    format!("{name} (child process)"),
                    format!(
                        "CPU {} ({} per accepted message), peak RSS {:.1} MiB",
                        human_duration(*cpu),
                        human_us(per_message_us(*cpu, o.accepted)),
                        resources::mib(*peak)
                    ),
                ]);
            }
        }
        let rows: Vec<Vec<String>> = rows.into_iter().map(Vec::from).collect();
        let mut out = format!(
            "### {}\n\n{}",
            self.title,
            table(&["metric", "value"], &rows)
        );
        if !self.processes.is_empty() {
            out.push('\n');
            out.push_str(&process_table(&self.processes, o.elapsed, o.accepted));
        }
        out
    }

    pub fn to_json(&self) -> Value {
        let p = &self.plan;
        let o = &self.outcome;
        let e2e: serde_json::Map<String, Value> = self
            .e2e
            .iter()
            .map(|s| {
                let mut v = s.latency.to_json();
                v["seen"] = s.seen.into();
                v["expected"] = s.expected.into();
                v["per_second"] = round1(s.per_second).into();
                (s.probe.key().to_owned(), v)
            })
            .collect();
        let resources = self.resources.as_ref().map(|r| {
            json!({
                "note": r.note,
                "wall_s": r.wall.as_secs_f64(),
                "stages_cpu_s": r.stages.as_secs_f64(),
                "machine_busy_s": r.machine.map(|(busy, _)| busy.as_secs_f64()),
                "machine_total_s": r.machine.map(|(_, total)| total.as_secs_f64()),
                "others_cpu_s": r.others().map(|d| d.as_secs_f64()),
                "process": r.process.map(|(cpu, peak)| json!({
                    "cpu_s": cpu.as_secs_f64(),
                    "peak_rss_mib": round1(resources::mib(peak)),
                })),
                "children": r.children.iter().map(|(name, cpu, peak)| json!({
                    "name": name,
                    "cpu_s": cpu.as_secs_f64(),
                    "peak_rss_mib": round1(resources::mib(*peak)),
                })).collect::<Vec<_>>(),
            })
        });
        json!({
            "title": self.title,
            "target": p.target.to_string(),
            "sessions": p.sessions,
            "per_connection": p.per_connection,
            "size": p.size.to_string(),
            "mailboxes": p.mailboxes,
            "domain": p.domain,
            "limit_messages": p.messages,
            "limit_duration_s": p.duration.as_secs_f64(),
            "stopped_by": o.stopped_by.as_str(),
            "elapsed_s": o.elapsed.as_secs_f64(),
            "sent": o.sent,
            "accepted": o.accepted,
            "failed": o.failures.total(),
            "failures": o.failures.to_json(),
            "accepted_per_second": round1(o.accepted_per_second()),
            "bytes": o.bytes,
            "connections": o.connections,
            "smtp_latency": self.latency().to_json(),
            "end_to_end": e2e,
            "ws_resyncs": self.resyncs,
            "rate": p.rate,
            "resources": resources,
            "processes": self.processes.iter().map(process_json).collect::<Vec<_>>(),
        })
    }
}

/// Per process: CPU over the run, peak and last RSS.
pub fn process_table(processes: &[ProcessUsage], wall: Duration, accepted: u64) -> String {
    let rows: Vec<Vec<String>> = processes
        .iter()
        .map(|p| {
            vec![
                p.name.clone(),
                format!("{:.2} s", p.cpu.as_secs_f64()),
                format!(
                    "{:.0} %",
                    100.0 * p.cpu.as_secs_f64() / wall.as_secs_f64().max(1e-9)
                ),
                human_us(per_message_us(p.cpu, accepted)),
                format!("{:.1} MiB", resources::mib(p.peak_rss_kib)),
                format!("{:.1} MiB", resources::mib(p.last_rss_kib)),
            ]
        })
        .collect();
    table(
        &[
            "process",
            "CPU",
            "of one core",
            "CPU per message",
            "peak RSS",
            "RSS at end",
        ],
        &rows,
    )
}

pub fn process_json(p: &ProcessUsage) -> Value {
    json!({
        "name": p.name,
        "pid": p.pid,
        "cpu_s": p.cpu.as_secs_f64(),
        "peak_rss_mib": round1(resources::mib(p.peak_rss_kib)),
        "last_rss_mib": round1(resources::mib(p.last_rss_kib)),
    })
}

/// One line per run: the comparison at a glance.
pub fn summary_table(reports: &[RunReport]) -> String {
    let rows: Vec<Vec<String>> = reports
        .iter()
        .map(|r| {
            let lat = r.latency();
            vec![
                r.title.clone(),
                r.plan.size.to_string(),
                format!("{} × {}", r.plan.sessions, r.plan.per_connection),
                r.outcome.accepted.to_string(),
                r.outcome.failures.total().to_string(),
                format!("{:.0}", r.outcome.accepted_per_second()),
                human_us(lat.p50_us),
                human_us(lat.p99_us),
                human_us(lat.max_us),
            ]
        })
        .collect();
    table(
        &[
            "run",
            "size",
            "sessions × msgs/conn",
            "accepted",
            "failed",
            "accepted/s",
            "p50",
            "p99",
            "max",
        ],
        &rows,
    )
}

/// A Markdown pipe table with every column padded to its widest cell.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let width = |s: &str| s.chars().count();
    let mut widths: Vec<usize> = headers.iter().map(|h| width(h).max(3)).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(width(cell));
            }
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let padded: Vec<String> = cells
            .zip(&widths)
            .map(|(c, &w)| format!("{c}{}", " ".repeat(w - width(c))))
            .collect();
        format!("| {} |\n", padded.join(" | "))
    };
    let mut out = line(&mut headers.iter().copied());
    let rule: Vec<String> = widths.iter().map(|&w| "-".repeat(w)).collect();
    out.push_str(&format!("|-{}-|\n", rule.join("-|-")));
    for row in rows {
        out.push_str(&line(&mut row.iter().map(String::as_str)));
    }
    out
}

/// `850 ms`, `4.21 s`, `1 min 30 s`.
pub fn human_duration(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs < 1.0 {
        format!("{} ms", d.as_millis())
    } else if secs < 60.0 {
        format!("{secs:.2} s")
    } else {
        let whole = d.as_secs();
        match whole % 60 {
            0 => format!("{} min", whole / 60),
            s => format!("{} min {s} s", whole / 60),
        }
    }
}

fn plural(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

pub fn per_message_us(cpu: Duration, messages: u64) -> u64 {
    if messages == 0 {
        0
    } else {
        (cpu.as_micros() / u128::from(messages)) as u64
    }
}

pub fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::StopReason;
    use crate::message::RunTag;
    use crate::size::SizeSpec;
    use crate::stats::{self, Failure, Failures};

    fn report() -> RunReport {
        let mut latency = stats::histogram();
        for ms in [2, 3, 4] {
            stats::record(&mut latency, Duration::from_millis(ms));
        }
        let mut failures = Failures::default();
        failures.add(Failure::Code(451));
        RunReport {
            title: "ingest · 1 KiB".into(),
            plan: Plan {
                target: "127.0.0.1:2525".parse().unwrap(),
                sessions: 20,
                per_connection: 1,
                messages: 4,
                duration: Duration::from_secs(60),
                size: SizeSpec::Fixed(1024),
                mailboxes: 100,
                domain: "maildrop.localhost".into(),
                reply_timeout: Duration::from_secs(30),
                seed: 1,
                tag: RunTag::from_u64(1),
                rate: None,
            },
            outcome: Outcome {
                sent: 4,
                accepted: 3,
                failures,
                latency,
                bytes: 4096,
                connections: 4,
                elapsed: Duration::from_millis(1500),
                stopped_by: StopReason::Count,
            },
            e2e: vec![],
            resyncs: 0,
            resources: Some(ResourceReport {
                process: Some((Duration::from_millis(300), 2048)),
                children: vec![("nats-server".into(), Duration::from_millis(150), 4096)],
                wall: Duration::from_secs(3),
                machine: Some((Duration::from_millis(3000), Duration::from_secs(6))),
                stages: Duration::from_millis(210),
                note: Some("client and ingest".into()),
            }),
            processes: vec![],
        }
    }

    #[test]
    fn tables_are_aligned_markdown() {
        let t = table(
            &["a", "value"],
            &[
                vec!["µs".into(), "1".into()],
                vec!["long key".into(), "22".into()],
            ],
        );
        assert_eq!(
            t,
            "| a        | value |\n\
             |----------|-------|\n\
             | µs       | 1     |\n\
             | long key | 22    |\n"
        );
    }

    #[test]
    fn the_run_table_has_the_headline_numbers() {
        let t = report().table();
        assert!(t.starts_with("### ingest · 1 KiB\n\n| metric"));
        assert!(t.contains("| **2**"), "3 accepted in 1.5 s:\n{t}");
        assert!(t.contains("1 (451: 1)"), "{t}");
        assert!(t.contains("20 sessions, 1 message per connection"), "{t}");
        assert!(t.contains("stopped by message count"), "{t}");
        assert!(t.contains("3.00 ms / 4.00 ms / 4.00 ms"), "{t}");
        assert!(t.contains("300 ms (10 % of one core over 3.00 s)"), "{t}");
        assert!(t.contains("210 ms (70.0 ms per accepted message"), "{t}");
        assert!(t.contains("90 ms (SMTP client"), "{t}");
        assert!(t.contains("client and ingest"), "{t}");
        assert!(t.contains("nats-server (child process)"), "{t}");
        assert!(t.contains("peak RSS 4.0 MiB"), "{t}");
        // 3 s busy of 6 s of two cores; 0.3 + 0.15 s of it ours.
        assert!(
            t.contains("50 % of all cores busy; other processes used 2.55 s (85 % of one core)"),
            "{t}"
        );
    }

    #[test]
    fn json_has_the_same_numbers() {
        let j = report().to_json();
        assert_eq!(j["accepted"], 3);
        assert_eq!(j["failures"]["451"], 1);
        assert_eq!(j["accepted_per_second"], 2.0);
        assert_eq!(j["smtp_latency"]["count"], 3);
        assert_eq!(j["resources"]["children"][0]["name"], "nats-server");
        assert_eq!(j["resources"]["process"]["peak_rss_mib"], 2.0);
        assert_eq!(j["resources"]["others_cpu_s"], 2.55);
    }

    #[test]
    fn the_summary_has_one_line_per_run() {
        let s = summary_table(&[report(), report()]);
        assert_eq!(s.lines().count(), 4);
        assert!(s.contains("| 20 × 1 "));
    }

    #[test]
    fn durations_for_people() {
        assert_eq!(human_duration(Duration::from_millis(850)), "850 ms");
        assert_eq!(human_duration(Duration::from_millis(4213)), "4.21 s");
        assert_eq!(human_duration(Duration::from_secs(90)), "1 min 30 s");
        assert_eq!(human_duration(Duration::from_secs(120)), "2 min");
        assert_eq!(plural(2, "message"), "2 messages");
    }
}
