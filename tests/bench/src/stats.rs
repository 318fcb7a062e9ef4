//! Summaries of timed samples.

use std::time::Duration;

use serde_json::{json, Value};

/// Percentiles of a set of latencies (nearest rank).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Latencies {
    pub count: usize,
    pub p50: Duration,
    pub p95: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl Latencies {
    pub fn of(mut samples: Vec<Duration>) -> Latencies {
        samples.sort();
        let rank = |p: usize| -> Duration {
            if samples.is_empty() {
                return Duration::ZERO;
            }
            // Nearest rank: the smallest sample with at least p% at or below it.
            let index = (p * samples.len()).div_ceil(100).max(1) - 1;
            samples[index.min(samples.len() - 1)]
        };
        Latencies {
            count: samples.len(),
            p50: rank(50),
            p95: rank(95),
            p99: rank(99),
            max: samples.last().copied().unwrap_or_default(),
        }
    }

    /// The percentiles by name, in milliseconds.
    pub fn named(&self) -> [(&'static str, f64); 4] {
        [
            ("p50", millis(self.p50)),
            ("p95", millis(self.p95)),
            ("p99", millis(self.p99)),
            ("max", millis(self.max)),
        ]
    }

    pub fn to_json(self) -> Value {
        let mut value = json!({ "count": self.count });
        for (name, ms) in self.named() {
            value[format!("{name}_ms")] = json!(round(ms, 2));
        }
        value
    }
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// `value` with `digits` decimals, for readable JSON.
pub fn round(value: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (value * scale).round() / scale
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let samples = (1..=100).map(Duration::from_millis).collect();
        let l = Latencies::of(samples);
        assert_eq!(
            (l.count, l.p50, l.p95, l.p99, l.max),
            (
                100,
                Duration::from_millis(50),
                Duration::from_millis(95),
                Duration::from_millis(99),
                Duration::from_millis(100)
            )
        );
        let one = Latencies::of(vec![Duration::from_millis(7)]);
        assert_eq!(
            (one.p50, one.p99),
            (Duration::from_millis(7), Duration::from_millis(7))
        );
        assert_eq!(Latencies::of(Vec::new()).max, Duration::ZERO);
    }
}
