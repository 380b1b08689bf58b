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

/// `bins` equal-width bins from the smallest to the largest value, each as
/// (upper edge, count); the largest value lands in the last bin.
pub fn histogram(values: &[f64], bins: usize) -> Vec<(f64, usize)> {
    let finite = || values.iter().copied().filter(|v| v.is_finite());
    let (Some(lo), Some(hi)) = (finite().reduce(f64::min), finite().reduce(f64::max)) else {
        return Vec::new();
    };
    let width = ((hi - lo) / bins as f64).max(f64::EPSILON);
    let mut counts = vec![0; bins];
    for v in finite() {
        counts[(((v - lo) / width) as usize).min(bins - 1)] += 1;
    }
    counts.into_iter().enumerate().map(|(i, n)| (lo + width * (i + 1) as f64, n)).collect()
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

    #[test]
    fn histogram_counts_every_finite_value_once() {
        let h = histogram(&[0.0, 1.0, 2.0, 9.99, 10.0, f64::INFINITY], 10);
        assert_eq!(h.len(), 10);
        assert_eq!(h.iter().map(|b| b.1).sum::<usize>(), 5);
        assert_eq!((h[0], h[1], h[2], h[9]), ((1.0, 1), (2.0, 1), (3.0, 1), (10.0, 2)));
        assert!(histogram(&[], 10).is_empty());
    }
}
