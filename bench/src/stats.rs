//! Counting and summarising: latency histograms, percentiles, rates, failures by reply code.
//!
//! Latencies are recorded in microseconds in an HDR histogram with three significant digits
//! (a recorded value is within 0.1 % of the real one), from 1 µs to an hour.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use hdrhistogram::Histogram;

/// Highest latency a histogram can hold, in microseconds (one hour).
const MAX_US: u64 = 3_600_000_000;

/// A latency histogram in microseconds.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_US, 3).expect("valid histogram bounds")
}

/// Records `d` (clamped to the histogram's range).
pub fn record(h: &mut Histogram<u64>, d: Duration) {
    let us = u64::try_from(d.as_micros())
        .unwrap_or(MAX_US)
        .clamp(1, MAX_US);
    h.record(us).expect("value clamped into range");
}

/// What a latency histogram says, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Latency {
    pub count: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}

impl Latency {
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self {
                count: 0,
                p50_us: 0,
                p99_us: 0,
                max_us: 0,
            };
        }
        Self {
            count: h.len(),
            p50_us: h.value_at_quantile(0.50),
            p99_us: h.value_at_quantile(0.99),
            max_us: h.max(),
        }
    }

    pub fn to_json(self) -> serde_json::Value {
        serde_json::json!({
            "count": self.count,
            "p50_ms": ms(self.p50_us),
            "p99_ms": ms(self.p99_us),
            "max_ms": ms(self.max_us),
        })
    }
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// `850 µs`, `3.21 ms`, `45.2 ms`, `1.84 s`: three significant figures, people's units.
pub fn human_us(us: u64) -> String {
    if us < 1000 {
        format!("{us} µs")
    } else if us < 1_000_000 {
        let ms = us as f64 / 1000.0;
        if ms < 10.0 {
            format!("{ms:.2} ms")
        } else if ms < 100.0 {
            format!("{ms:.1} ms")
        } else {
            format!("{ms:.0} ms")
        }
    } else {
        format!("{:.2} s", us as f64 / 1e6)
    }
}

/// Events per second over `elapsed` (0 when nothing was measured).
pub fn per_second(count: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs <= 0.0 {
        0.0
    } else {
        count as f64 / secs
    }
}

/// Why a transaction did not end in `250`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Failure {
    /// The server answered this code where another was expected.
    Code(u16),
    /// Could not connect.
    Connect,
    /// No (complete) reply within the reply timeout.
    Timeout,
    /// The connection broke.
    Io,
    /// The server said something that is not SMTP.
    BadReply,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Code(code) => write!(f, "{code}"),
            Self::Connect => f.write_str("connect error"),
            Self::Timeout => f.write_str("timeout"),
            Self::Io => f.write_str("connection lost"),
            Self::BadReply => f.write_str("bad reply"),
        }
    }
}

/// Failures counted by kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Failures(BTreeMap<Failure, u64>);

impl Failures {
    pub fn add(&mut self, f: Failure) {
        *self.0.entry(f).or_default() += 1;
    }

    pub fn merge(&mut self, other: &Failures) {
        for (f, n) in &other.0 {
            *self.0.entry(f.clone()).or_default() += n;
        }
    }

    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }

    /// `451: 3, timeout: 1`, or `none`.
    pub fn summary(&self) -> String {
        if self.0.is_empty() {
            return "none".into();
        }
        self.0
            .iter()
            .map(|(f, n)| format!("{f}: {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub fn to_json(&self) -> serde_json::Value {
        self.0
            .iter()
            .map(|(f, n)| (f.to_string(), serde_json::Value::from(*n)))
            .collect::<serde_json::Map<_, _>>()
            .into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_known_distribution() {
        let mut h = histogram();
        for ms in 1..=100 {
            record(&mut h, Duration::from_millis(ms));
        }
        let l = Latency::of(&h);
        assert_eq!(l.count, 100);
        // Three significant digits: within 0.1 %.
        assert!((49_950..=50_050).contains(&l.p50_us), "{l:?}");
        assert!((98_900..=99_100).contains(&l.p99_us), "{l:?}");
        assert!((99_900..=100_100).contains(&l.max_us), "{l:?}");
    }

    #[test]
    fn an_empty_histogram_reports_zeros() {
        assert_eq!(Latency::of(&histogram()).count, 0);
        assert_eq!(Latency::of(&histogram()).p99_us, 0);
    }

    #[test]
    fn out_of_range_values_are_clamped_not_lost() {
        let mut h = histogram();
        record(&mut h, Duration::ZERO);
        record(&mut h, Duration::from_secs(10 * 3600));
        assert_eq!(h.len(), 2);
        assert_eq!(h.min(), 1);
    }

    #[test]
    fn latencies_read_in_people_units() {
        assert_eq!(human_us(850), "850 µs");
        assert_eq!(human_us(3_210), "3.21 ms");
        assert_eq!(human_us(45_240), "45.2 ms");
        assert_eq!(human_us(450_000), "450 ms");
        assert_eq!(human_us(1_840_000), "1.84 s");
    }

    #[test]
    fn rates_per_second() {
        assert_eq!(per_second(20_000, Duration::from_secs(4)), 5000.0);
        assert_eq!(per_second(1, Duration::from_millis(250)), 4.0);
        assert_eq!(per_second(10, Duration::ZERO), 0.0);
    }

    #[test]
    fn failures_are_counted_by_kind_in_a_stable_order() {
        let mut a = Failures::default();
        assert_eq!(a.summary(), "none");
        a.add(Failure::Timeout);
        a.add(Failure::Code(451));
        let mut b = Failures::default();
        b.add(Failure::Code(451));
        b.add(Failure::Code(421));
        a.merge(&b);
        assert_eq!(a.total(), 4);
        assert_eq!(a.summary(), "421: 1, 451: 2, timeout: 1");
        assert_eq!(a.to_json()["451"], 2);
    }

    #[test]
    fn json_latencies_are_in_milliseconds() {
        let l = Latency {
            count: 3,
            p50_us: 1234,
            p99_us: 5000,
            max_us: 9,
        };
        let j = l.to_json();
        assert_eq!(j["p50_ms"], 1.234);
        assert_eq!(j["max_ms"], 0.009);
    }
}
