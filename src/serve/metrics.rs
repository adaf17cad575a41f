//! The service's metrics, written in the Prometheus text exposition format (version 0.0.4):
//! request counts by endpoint and status, latency histograms per endpoint, reloads, the
//! index generation and the user states held.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds (seconds) of the latency histogram buckets.
const BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// The endpoints measured, as they are labelled.
pub const ENDPOINTS: [&str; 9] = [
    "search",
    "recommend",
    "events",
    "recommendations",
    "livez",
    "readyz",
    "metrics",
    "reload",
    "other",
];

#[derive(Default)]
struct Histogram {
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// Requests by (endpoint, status) and latency by endpoint, under one lock.
#[derive(Default)]
struct Counts {
    requests: BTreeMap<(&'static str, u16), u64>,
    latency: BTreeMap<&'static str, Histogram>,
}

/// Counters and histograms, shared by every request.
#[derive(Default)]
pub struct Metrics {
    counts: Mutex<Counts>,
    reloads_ok: AtomicU64,
    reloads_failed: AtomicU64,
    evicted: AtomicU64,
}

impl Metrics {
    /// Records one request to `endpoint` answered with `status` after `elapsed`.
    pub fn record(&self, endpoint: &'static str, status: u16, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        let mut c = self.counts();
        *c.requests.entry((endpoint, status)).or_default() += 1;
        let h = c.latency.entry(endpoint).or_default();
        for (i, &b) in BUCKETS.iter().enumerate() {
            if secs <= b {
                h.buckets[i] += 1;
            }
        }
        h.count += 1;
        h.sum += secs;
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a reload's outcome.
    pub fn reload(&self, ok: bool) {
        if ok {
            self.reloads_ok.fetch_add(1, Ordering::Relaxed);
        } else {
            self.reloads_failed.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Records user states evicted to stay within the bound.
    pub fn evicted(&self, n: u64) {
        self.evicted.fetch_add(n, Ordering::Relaxed);
    }

    /// The requests answered so far with `status` (all endpoints).
    pub fn requests_with_status(&self, status: u16) -> u64 {
        self.counts()
            .requests
            .iter()
            .filter(|((_, s), _)| *s == status)
            .map(|(_, n)| n)
            .sum()
    }

    /// The Prometheus text of every metric; `generation`, `items` and `users` are the current
    /// values of the gauges.
    pub fn render(&self, generation: u64, items: usize, users: usize, ready: bool) -> String {
        let mut s = String::new();
        s.push_str("# HELP mrl_requests_total HTTP requests answered, by endpoint and status.\n");
        s.push_str("# TYPE mrl_requests_total counter\n");
        let c = self.counts();
        let errors: u64;
        {
            let r = &c.requests;
            for ((endpoint, status), n) in r.iter() {
                let _ = writeln!(
                    s,
                    "mrl_requests_total{{endpoint=\"{endpoint}\",status=\"{status}\"}} {n}"
                );
            }
            errors = r
                .iter()
                .filter(|((_, status), _)| *status >= 400)
                .map(|(_, n)| n)
                .sum();
        }
        s.push_str("# HELP mrl_request_errors_total Requests answered with a 4xx or 5xx status.\n");
        s.push_str("# TYPE mrl_request_errors_total counter\n");
        let _ = writeln!(s, "mrl_request_errors_total {errors}");
        s.push_str(
            "# HELP mrl_request_duration_seconds Time from the request to its answer, by endpoint.\n",
        );
        s.push_str("# TYPE mrl_request_duration_seconds histogram\n");
        {
            for (endpoint, h) in c.latency.iter() {
                for (i, b) in BUCKETS.iter().enumerate() {
                    let _ = writeln!(
                        s,
                        "mrl_request_duration_seconds_bucket{{endpoint=\"{endpoint}\",le=\"{b}\"}} {}",
                        h.buckets[i]
                    );
                }
                let _ = writeln!(
                    s,
                    "mrl_request_duration_seconds_bucket{{endpoint=\"{endpoint}\",le=\"+Inf\"}} {}",
                    h.count
                );
                let _ = writeln!(
                    s,
                    "mrl_request_duration_seconds_sum{{endpoint=\"{endpoint}\"}} {}",
                    h.sum
                );
                let _ = writeln!(
                    s,
                    "mrl_request_duration_seconds_count{{endpoint=\"{endpoint}\"}} {}",
                    h.count
                );
            }
        }
        let gauge = |s: &mut String, name: &str, help: &str, v: String| {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        };
        let counter = |s: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
        };
        gauge(
            &mut s,
            "mrl_index_generation",
            "Generation of the index being served.",
            generation.to_string(),
        );
        gauge(
            &mut s,
            "mrl_index_items",
            "Items in the index being served.",
            items.to_string(),
        );
        gauge(
            &mut s,
            "mrl_user_states",
            "Streaming user states held in memory.",
            users.to_string(),
        );
        gauge(
            &mut s,
            "mrl_ready",
            "1 when serving, 0 while loading or draining.",
            u8::from(ready).to_string(),
        );
        counter(
            &mut s,
            "mrl_user_states_evicted_total",
            "User states evicted (least recently used) to stay within --max-users.",
            self.evicted.load(Ordering::Relaxed),
        );
        let _ = writeln!(
            s,
            "# HELP mrl_reloads_total Index reloads, by outcome.\n# TYPE mrl_reloads_total counter\n\
             mrl_reloads_total{{result=\"ok\"}} {}\nmrl_reloads_total{{result=\"failed\"}} {}",
            self.reloads_ok.load(Ordering::Relaxed),
            self.reloads_failed.load(Ordering::Relaxed)
        );
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counts_histograms_and_gauges() {
        let m = Metrics::default();
        m.record("search", 200, Duration::from_micros(300));
        m.record("search", 200, Duration::from_millis(2));
        m.record("search", 400, Duration::from_micros(50));
        m.reload(true);
        m.evicted(3);
        let t = m.render(7, 100, 2, true);
        assert!(
            t.contains("mrl_requests_total{endpoint=\"search\",status=\"200\"} 2"),
            "{t}"
        );
        assert!(
            t.contains("mrl_requests_total{endpoint=\"search\",status=\"400\"} 1"),
            "{t}"
        );
        assert!(t.contains("mrl_request_errors_total 1"), "{t}");
        // 50 µs and 300 µs are ≤ 0.0005; all three ≤ 0.0025
        assert!(
            t.contains("mrl_request_duration_seconds_bucket{endpoint=\"search\",le=\"0.0005\"} 2"),
            "{t}"
        );
        assert!(
            t.contains("mrl_request_duration_seconds_bucket{endpoint=\"search\",le=\"0.0025\"} 3"),
            "{t}"
        );
        assert!(
            t.contains("mrl_request_duration_seconds_count{endpoint=\"search\"} 3"),
            "{t}"
        );
        assert!(t.contains("mrl_index_generation 7"), "{t}");
        assert!(t.contains("mrl_user_states 2"), "{t}");
        assert!(t.contains("mrl_user_states_evicted_total 3"), "{t}");
        assert!(t.contains("mrl_reloads_total{result=\"ok\"} 1"), "{t}");
        assert_eq!(m.requests_with_status(400), 1);
    }
}
