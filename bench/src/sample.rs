//! Memory and CPU of other processes over a run, sampled from `/proc` while it runs.
//!
//! The stages, nats-server, redis-server and the peers run as child processes; a [`Sampler`]
//! reads each one's `/proc/<pid>/status` (`VmRSS`, `VmHWM`) and `/proc/<pid>/stat`
//! (`utime + stime`) every interval, and at the end reports per process: CPU seconds over the
//! run, peak RSS and the RSS series (for the soak). A process that forks workers (Haraka with
//! `nodes=cpus`) is watched as a tree: its RSS and CPU are the sums over it and its descendants,
//! and its peak is the highest sampled sum (a tree has no `VmHWM` of its own).
//!
//! The arithmetic on samples (peak, CPU between the first and last sample, the slope of a series)
//! is pure and tested without processes.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::resources::{
    children_of, clock_ticks, parse_cpu_ticks, parse_status_kib, ticks_to_duration,
};

/// A process to watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watched {
    /// What the report calls it (`ingest`, `nats-server`, `Haraka`).
    pub name: String,
    pub pid: u32,
    /// Count its descendants too.
    pub tree: bool,
}

impl Watched {
    pub fn new(name: &str, pid: u32) -> Self {
        Self {
            name: name.to_owned(),
            pid,
            tree: false,
        }
    }

    pub fn tree(name: &str, pid: u32) -> Self {
        Self {
            tree: true,
            ..Self::new(name, pid)
        }
    }
}

/// One reading of one process (or tree).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reading {
    /// Since the sampler started.
    pub at: Duration,
    pub rss_kib: u64,
    /// `VmHWM` of a single process; for a tree, the sampled RSS.
    pub hwm_kib: u64,
    pub cpu_ticks: u64,
}

/// What one process did over the sampled time.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessUsage {
    pub name: String,
    pub pid: u32,
    pub cpu: Duration,
    pub peak_rss_kib: u64,
    pub last_rss_kib: u64,
    /// Every reading, for series over time.
    pub readings: Vec<Reading>,
}

impl ProcessUsage {
    /// Summarises `readings` (empty when the process was never read).
    pub fn from_readings(name: &str, pid: u32, readings: Vec<Reading>, tick_hz: u64) -> Self {
        let cpu_ticks = match (readings.first(), readings.last()) {
            (Some(a), Some(b)) => b.cpu_ticks.saturating_sub(a.cpu_ticks),
            _ => 0,
        };
        Self {
            name: name.to_owned(),
            pid,
            cpu: ticks_to_duration(cpu_ticks, tick_hz),
            peak_rss_kib: readings
                .iter()
                .map(|r| r.hwm_kib.max(r.rss_kib))
                .max()
                .unwrap_or(0),
            last_rss_kib: readings.last().map_or(0, |r| r.rss_kib),
            readings,
        }
    }

    /// RSS in MiB per minute over the readings from `from` on (least squares), if there are two.
    pub fn rss_slope_mib_per_min(&self, from: Duration) -> Option<f64> {
        let points: Vec<(f64, f64)> = self
            .readings
            .iter()
            .filter(|r| r.at >= from)
            .map(|r| (r.at.as_secs_f64() / 60.0, r.rss_kib as f64 / 1024.0))
            .collect();
        slope(&points)
    }
}

/// The least-squares slope of `points` (x, y); `None` with fewer than two distinct x.
pub fn slope(points: &[(f64, f64)]) -> Option<f64> {
    let n = points.len() as f64;
    if points.len() < 2 {
        return None;
    }
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    (sxx > 0.0).then(|| sxy / sxx)
}

/// Reads one process (or tree) now; `None` once it is gone.
pub fn read(w: &Watched, at: Duration) -> Option<Reading> {
    let one = |pid: u32| -> Option<(u64, u64, u64)> {
        let dir = format!("/proc/{pid}");
        let status = std::fs::read_to_string(Path::new(&dir).join("status")).ok()?;
        let stat = std::fs::read_to_string(Path::new(&dir).join("stat")).ok()?;
        Some((
            parse_status_kib(&status, "VmRSS").unwrap_or(0),
            parse_status_kib(&status, "VmHWM").unwrap_or(0),
            parse_cpu_ticks(&stat)?,
        ))
    };
    let (rss, hwm, cpu) = one(w.pid)?;
    if !w.tree {
        return Some(Reading {
            at,
            rss_kib: rss,
            hwm_kib: hwm,
            cpu_ticks: cpu,
        });
    }
    let (mut rss, mut cpu) = (rss, cpu);
    let mut stack = children_of(&w.pid.to_string());
    while let Some(pid) = stack.pop() {
        if let Some((r, _, c)) = one(pid) {
            rss += r;
            cpu += c;
        }
        stack.extend(children_of(&pid.to_string()));
    }
    Some(Reading {
        at,
        rss_kib: rss,
        hwm_kib: rss,
        cpu_ticks: cpu,
    })
}

/// Samples a set of processes every `every` until stopped.
pub struct Sampler {
    watched: Vec<Watched>,
    readings: Arc<Mutex<Vec<Vec<Reading>>>>,
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

impl Sampler {
    /// Takes a first reading of each process at once, then one every `every`.
    pub fn start(watched: Vec<Watched>, every: Duration) -> Self {
        let readings = Arc::new(Mutex::new(vec![Vec::new(); watched.len()]));
        let cancel = CancellationToken::new();
        let start = Instant::now();
        let take = {
            let watched = watched.clone();
            let readings = readings.clone();
            move || {
                let at = start.elapsed();
                let now: Vec<Option<Reading>> = watched.iter().map(|w| read(w, at)).collect();
                let mut all = readings.lock().unwrap_or_else(|e| e.into_inner());
                for (series, r) in all.iter_mut().zip(now) {
                    series.extend(r);
                }
            }
        };
        take();
        let c = cancel.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = c.cancelled() => break,
                    _ = tick.tick() => take(),
                }
            }
            take();
        });
        Self {
            watched,
            readings,
            cancel,
            task,
        }
    }

    /// Stops sampling (after one last reading) and summarises each process.
    pub async fn stop(self) -> Vec<ProcessUsage> {
        self.cancel.cancel();
        let _ = self.task.await;
        let readings =
            std::mem::take(&mut *self.readings.lock().unwrap_or_else(|e| e.into_inner()));
        self.watched
            .iter()
            .zip(readings)
            .map(|(w, r)| ProcessUsage::from_readings(&w.name, w.pid, r, clock_ticks()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(secs: u64, rss_mib: u64, hwm_mib: u64, ticks: u64) -> Reading {
        Reading {
            at: Duration::from_secs(secs),
            rss_kib: rss_mib * 1024,
            hwm_kib: hwm_mib * 1024,
            cpu_ticks: ticks,
        }
    }

    #[test]
    fn usage_is_cpu_between_the_first_and_last_reading_and_the_highest_mark() {
        let u = ProcessUsage::from_readings(
            "ingest",
            7,
            vec![
                reading(0, 10, 12, 100),
                reading(5, 30, 31, 250),
                reading(10, 20, 31, 400),
            ],
            100,
        );
        assert_eq!(u.cpu, Duration::from_secs(3));
        assert_eq!(u.peak_rss_kib, 31 * 1024);
        assert_eq!(u.last_rss_kib, 20 * 1024);
        let none = ProcessUsage::from_readings("gone", 8, vec![], 100);
        assert_eq!((none.cpu, none.peak_rss_kib), (Duration::ZERO, 0));
    }

    #[test]
    fn the_slope_is_the_least_squares_line() {
        assert_eq!(slope(&[(0.0, 1.0), (1.0, 3.0), (2.0, 5.0)]), Some(2.0));
        assert_eq!(slope(&[(0.0, 4.0), (1.0, 4.0)]), Some(0.0));
        assert_eq!(slope(&[(1.0, 4.0)]), None);
        assert_eq!(slope(&[(1.0, 4.0), (1.0, 5.0)]), None);
        // 1 MiB more every minute, readings every 30 s; the first minute left out.
        let u = ProcessUsage::from_readings(
            "x",
            1,
            (0..6).map(|i| reading(i * 30, 100 + i, 0, 0)).collect(),
            100,
        );
        let s = u.rss_slope_mib_per_min(Duration::from_secs(60)).unwrap();
        assert!((s - 2.0).abs() < 1e-9, "{s}");
    }

    #[tokio::test]
    async fn this_process_can_be_sampled() {
        if !Path::new("/proc/self/status").exists() {
            return;
        }
        let me = Watched::tree("bench", std::process::id());
        let s = Sampler::start(vec![me], Duration::from_millis(10));
        tokio::time::sleep(Duration::from_millis(50)).await;
        let u = s.stop().await;
        assert_eq!(u.len(), 1);
        assert!(u[0].readings.len() >= 3, "{:?}", u[0].readings);
        assert!(u[0].peak_rss_kib > 0);
    }
}
