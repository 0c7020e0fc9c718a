//! CPU time and peak memory of this process and its child processes, from Linux's `/proc`.
//!
//! - CPU time: `utime + stime` (fields 14 and 15 of `/proc/<pid>/stat`), in clock ticks, summed
//!   over all threads; a run's CPU time is the difference of two snapshots.
//! - Peak RSS: `VmHWM` of `/proc/<pid>/status`, the high-water mark since the process started
//!   (not per run).
//! - Children: the pids in `/proc/self/task/*/children`, here the `nats-server` and
//!   `redis-server` a scenario started.
//! - The stages' share of this process: the CPU of the threads named [`STAGE_THREAD`] (the
//!   runtime a scenario runs the stages on), from `/proc/self/task/<tid>/stat`. A thread that ended
//!   during the run takes its CPU time with it, so this share can only be too small, never too large.
//! - The whole machine: busy and total time of all cores from the `cpu` line of `/proc/stat`, so
//!   a report can say how much CPU *other* processes took during the run (a build running next to a
//!   benchmark changes its numbers).
//!
//! On a system without `/proc` the snapshot is empty and the report says "not available".

use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

/// CPU time and peak RSS of one process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub cpu: Duration,
    pub peak_rss_kib: u64,
}

/// One process in a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Process {
    pub pid: u32,
    pub name: String,
    pub usage: Usage,
}

/// The name of the threads the stages run on in a scenario.
pub const STAGE_THREAD: &str = "maildrop-stage";

/// Time all cores together spent busy, and in total, since boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MachineTime {
    pub busy: Duration,
    pub total: Duration,
}

/// This process, its children and the machine at one moment.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub process: Option<Usage>,
    pub children: Vec<Process>,
    pub machine: Option<MachineTime>,
    /// CPU of this process's live [`STAGE_THREAD`] threads.
    pub stage_threads: Duration,
}

impl Snapshot {
    pub fn take() -> Self {
        let children = child_pids()
            .into_iter()
            .filter_map(|pid| {
                let dir = format!("/proc/{pid}");
                let name = std::fs::read_to_string(format!("{dir}/comm")).ok()?;
                Some(Process {
                    pid,
                    name: name.trim().to_owned(),
                    usage: usage(Path::new(&dir))?,
                })
            })
            .collect();
        let machine = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|stat| parse_machine_ticks(&stat))
            .map(|(busy, total)| MachineTime {
                busy: ticks_to_duration(busy, clock_ticks()),
                total: ticks_to_duration(total, clock_ticks()),
            });
        Self {
            process: usage(Path::new("/proc/self")),
            children,
            machine,
            stage_threads: threads_cpu(STAGE_THREAD),
        }
    }
}

/// CPU of this process's threads named `name`.
fn threads_cpu(name: &str) -> Duration {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Duration::ZERO;
    };
    let ticks: u64 = tasks
        .flatten()
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm")).is_ok_and(|comm| comm.trim() == name)
        })
        .filter_map(|t| std::fs::read_to_string(t.path().join("stat")).ok())
        .filter_map(|stat| parse_cpu_ticks(&stat))
        .sum();
    ticks_to_duration(ticks, clock_ticks())
}

/// Busy and total ticks of all cores from the text of `/proc/stat`: busy is user, nice, system,
/// irq, softirq and steal; total adds idle and iowait. (Guest time is already inside user.)
pub fn parse_machine_ticks(stat: &str) -> Option<(u64, u64)> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    let field = |i: usize| v.get(i).copied().unwrap_or(0);
    let busy = field(0) + field(1) + field(2) + field(5) + field(6) + field(7);
    let total = busy + field(3) + field(4);
    (v.len() >= 4).then_some((busy, total))
}

/// CPU used between two snapshots of one process (zero if the clock went backwards).
pub fn cpu_between(before: Usage, after: Usage) -> Duration {
    after.cpu.saturating_sub(before.cpu)
}

fn usage(dir: &Path) -> Option<Usage> {
    let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
    let status = std::fs::read_to_string(dir.join("status")).ok()?;
    Some(Usage {
        cpu: ticks_to_duration(parse_cpu_ticks(&stat)?, clock_ticks()),
        peak_rss_kib: parse_status_kib(&status, "VmHWM")?,
    })
}

fn child_pids() -> Vec<u32> {
    children_of("self")
}

/// The child processes of process `pid` (`self` for this one), from `/proc/<pid>/task/*/children`.
pub fn children_of(pid: &str) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut pids: Vec<u32> = tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|s| {
            s.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect();
    pids.sort_unstable();
    pids.dedup();
    pids
}

/// `utime + stime` in clock ticks from the text of `/proc/<pid>/stat`.
pub fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    // The command name (field 2) is in parentheses and may hold spaces and parentheses itself;
    // the fields after the last `)` start with field 3 (state).
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// A `kB` value such as `VmHWM:    12345 kB` from the text of `/proc/<pid>/status`.
pub fn parse_status_kib(status: &str, key: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(key)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

pub fn ticks_to_duration(ticks: u64, per_second: u64) -> Duration {
    Duration::from_secs_f64(ticks as f64 / per_second.max(1) as f64)
}

/// `sysconf(_SC_CLK_TCK)` without `libc`: asked of `getconf` once; 100 (Linux's value on every
/// common architecture) if that fails.
pub fn clock_ticks() -> u64 {
    static TICKS: OnceLock<u64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100)
    })
}

/// Mebibytes from kibibytes, for reports.
pub fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "4242 (tokio (rt) x) S 1 4242 4242 0 -1 4194560 2543 0 0 0 \
                        150 37 0 0 20 0 9 0 12345 1000000 3000 18446744073709551615";

    #[test]
    fn cpu_ticks_are_read_past_a_tricky_command_name() {
        assert_eq!(parse_cpu_ticks(STAT), Some(187));
        assert_eq!(parse_cpu_ticks("1 (x) S 1 2"), None);
        assert_eq!(parse_cpu_ticks("garbage"), None);
    }

    #[test]
    fn machine_time_is_read_from_the_cpu_line() {
        let stat = "cpu  100 5 50 1000 20 3 2 1 40 0\ncpu0 50 2 25 500 10 1 1 0 20 0\n";
        assert_eq!(parse_machine_ticks(stat), Some((161, 1181)));
        assert_eq!(parse_machine_ticks("cpu0 1 2 3 4\n"), None);
        assert_eq!(parse_machine_ticks("cpu  1 x 3 4\n"), None);
    }

    #[test]
    fn status_values_are_read_by_key() {
        let status = "Name:\tbench\nVmPeak:\t  900 kB\nVmHWM:\t   81234 kB\nVmRSS:\t 80000 kB\n";
        assert_eq!(parse_status_kib(status, "VmHWM"), Some(81_234));
        assert_eq!(parse_status_kib(status, "VmRSS"), Some(80_000));
        assert_eq!(parse_status_kib(status, "VmSwap"), None);
    }

    #[test]
    fn ticks_become_durations() {
        assert_eq!(ticks_to_duration(250, 100), Duration::from_millis(2500));
        assert_eq!(mib(2048), 2.0);
        let a = Usage {
            cpu: Duration::from_secs(3),
            peak_rss_kib: 1,
        };
        let b = Usage {
            cpu: Duration::from_secs(5),
            peak_rss_kib: 1,
        };
        assert_eq!(cpu_between(a, b), Duration::from_secs(2));
        assert_eq!(cpu_between(b, a), Duration::ZERO);
    }

    #[test]
    fn this_process_can_be_measured_on_linux() {
        if Path::new("/proc/self/stat").exists() {
            let s = Snapshot::take();
            assert!(s.process.unwrap().peak_rss_kib > 0);
        }
    }
}
