//! Prometheus metrics: one recorder per process, rendered by the ops server's `/metrics`.
//!
//! **Why the `metrics` facade.** Stages record with `metrics::counter!(…).increment(1)` wherever
//! the event happens, without threading a registry through every handler; the facade is a no-op
//! until a recorder is installed, so library code and unit tests pay nothing.
//! `metrics-exporter-prometheus` (same project, well kept, no HTTP server of its own here: its
//! default features are off) renders the Prometheus text format; the ops server serves it.
//!
//! [`install`] is idempotent: every stage of a test process that runs all five in-process shares
//! one recorder, which is also how a process with one stage behaves.
//!
//! **Naming.** Every metric starts with `maildrop_`; stage metrics with `maildrop_<stage>_`;
//! counters end in `_total`, durations are histograms in seconds ending in `_seconds`, sizes end
//! in `_bytes`. Labels are bounded sets known in the code (an outcome, a rule name, a route
//! template, a consumer name), never a mailbox, an address or an IP.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Buckets of every `_seconds` histogram: 0.5 ms to 30 s.
pub const SECONDS_BUCKETS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0,
    30.0,
];

/// How often histogram samples are folded into their buckets when nobody scrapes.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process's recorder (once) and returns the handle that renders it.
pub fn install() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &SECONDS_BUCKETS)
            .expect("the bucket list is not empty")
            .build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("Another metrics recorder is installed; /metrics will be empty.");
        }
        let upkeep = handle.clone();
        // A plain thread: the recorder outlives any one runtime (tests start several).
        let spawned = std::thread::Builder::new()
            .name("metrics-upkeep".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(UPKEEP_EVERY);
                    upkeep.run_upkeep();
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "Cannot start the metrics upkeep thread; histograms are folded at each scrape only.");
        }
        handle
    })
}

/// The metrics in the Prometheus text format (empty before [`install`]).
pub fn render() -> String {
    HANDLE
        .get()
        .map(PrometheusHandle::render)
        .unwrap_or_default()
}

/// A gauge that goes up when made and down when dropped: open sessions, open watchers.
pub struct Open(metrics::Gauge);

impl Open {
    pub fn new(gauge: metrics::Gauge) -> Self {
        gauge.increment(1.0);
        Self(gauge)
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_values_are_rendered_as_prometheus_text() {
        install();
        metrics::counter!("maildrop_test_things_total", "kind" => "a").increment(3);
        metrics::histogram!("maildrop_test_wait_seconds").record(0.003);
        {
            let _open = Open::new(metrics::gauge!("maildrop_test_open"));
            assert!(render().contains("maildrop_test_open 1"), "{}", render());
        }
        let text = render();
        assert!(
            text.contains("maildrop_test_things_total{kind=\"a\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("maildrop_test_wait_seconds_bucket{le=\"0.005\"} 1"),
            "{text}"
        );
        assert!(text.contains("maildrop_test_open 0"), "{text}");
    }
}
