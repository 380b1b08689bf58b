//! Order statistics over trials.

use serde::{Deserialize, Serialize};

/// min / p50 / p95 / p99 / max by the nearest-rank method (every value is one
/// that was observed), and the number of values.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    pub count: usize,
    pub min: Option<f64>,
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
    pub max: Option<f64>,
    pub mean: Option<f64>,
}

impl Stats {
    pub fn of(values: impl IntoIterator<Item = f64>) -> Stats {
        let mut v: Vec<f64> = values.into_iter().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return Stats::default();
        }
        v.sort_by(f64::total_cmp);
        let rank = |p: f64| v[((p / 100.0 * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
        Stats {
            count: v.len(),
            min: Some(v[0]),
            p50: Some(rank(50.0)),
            p95: Some(rank(95.0)),
            p99: Some(rank(99.0)),
            max: Some(v[v.len() - 1]),
            mean: Some(v.iter().sum::<f64>() / v.len() as f64),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let s = Stats::of((1..=100).map(f64::from));
        assert_eq!((s.min, s.p50, s.p95, s.p99, s.max), (Some(1.0), Some(50.0), Some(95.0), Some(99.0), Some(100.0)));
        let s = Stats::of([3.0, 1.0, 2.0]);
        assert_eq!((s.p50, s.p99, s.mean), (Some(2.0), Some(3.0), Some(2.0)));
        assert_eq!(Stats::of([]).count, 0);
    }
}
