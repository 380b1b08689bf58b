//! `crashlab bench`: RTO and RPO distributions over many trials, with
//! bootstrap confidence intervals, and a verdict against a baseline run
//! (improved, regressed or unchanged), in the manner of criterion.

use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::reports::{RunReport, Stats};

/// Resamples for each bootstrap interval.
const RESAMPLES: usize = 2000;
/// A change of the median smaller than this fraction is noise.
pub const NOISE: f64 = 0.05;

#[derive(Debug, Clone, Serialize)]
pub struct Distribution {
    pub stats: Stats,
    /// 95% bootstrap interval of the mean.
    pub mean_ci: Option<(f64, f64)>,
    /// 95% bootstrap interval of the median.
    pub median_ci: Option<(f64, f64)>,
    /// Ten equal-width bins from min to max: `(upper bound, count)`.
    pub histogram: Vec<(f64, usize)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    Improved,
    Regressed,
    Unchanged,
}

#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub baseline_median: f64,
    pub median: f64,
    /// 95% bootstrap interval of `median - baseline_median`.
    pub difference_ci: (f64, f64),
    /// `median / baseline_median - 1`.
    pub relative: f64,
    pub change: Change,
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

fn resample(v: &[f64], rng: &mut impl Rng) -> Vec<f64> {
    (0..v.len()).map(|_| v[rng.random_range(0..v.len())]).collect()
}

/// The 2.5% and 97.5% points of `f` over bootstrap resamples of `v`.
fn interval(v: &[f64], rng: &mut impl Rng, f: impl Fn(&mut [f64]) -> f64) -> Option<(f64, f64)> {
    if v.len() < 2 {
        return None;
    }
    let mut estimates: Vec<f64> = (0..RESAMPLES).map(|_| f(&mut resample(v, rng))).collect();
    estimates.sort_by(f64::total_cmp);
    Some((estimates[RESAMPLES * 25 / 1000], estimates[RESAMPLES * 975 / 1000 - 1]))
}

pub fn distribution(values: &[f64], seed: u64) -> Distribution {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let stats = Stats::of(values.iter().copied());
    let histogram = crate::reports::histogram(values, 10);
    Distribution {
        stats,
        mean_ci: interval(values, &mut rng, |v| mean(v)),
        median_ci: interval(values, &mut rng, median),
        histogram,
    }
}

/// Compares the medians of `new` and `old`: a change counts when the 95%
/// interval of the difference excludes zero and the median moved by more
/// than [`NOISE`].
pub fn compare(new: &[f64], old: &[f64], seed: u64) -> Option<Comparison> {
    if new.len() < 2 || old.len() < 2 {
        return None;
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut differences: Vec<f64> =
        (0..RESAMPLES).map(|_| median(&mut resample(new, &mut rng)) - median(&mut resample(old, &mut rng))).collect();
    differences.sort_by(f64::total_cmp);
    let ci = (differences[RESAMPLES * 25 / 1000], differences[RESAMPLES * 975 / 1000 - 1]);
    let (m_new, m_old) = (median(&mut new.to_vec()), median(&mut old.to_vec()));
    let relative = if m_old == 0.0 { 0.0 } else { m_new / m_old - 1.0 };
    let change = if ci.1 < 0.0 && relative < -NOISE {
        Change::Improved
    } else if ci.0 > 0.0 && relative > NOISE {
        Change::Regressed
    } else {
        Change::Unchanged
    };
    Some(Comparison { baseline_median: m_old, median: m_new, difference_ci: ci, relative, change })
}

/// The RTOs of a report's recovered trials.
pub fn rtos(report: &RunReport) -> Vec<f64> {
    report.trials.iter().filter_map(|t| t.rto_ms).collect()
}

pub fn lost(report: &RunReport) -> Vec<f64> {
    report.trials.iter().filter_map(|t| t.rpo.lost_acked.map(|v| v as f64)).collect()
}

/// What `crashlab bench` reports of a run: the distributions, the harness's
/// cost per trial, and the comparison with a baseline.
#[derive(Debug, Clone, Serialize)]
/// (Fields in bench.json's order, which is alphabetical.)
pub struct BenchSummary {
    pub baseline: Option<Comparison>,
    #[serde(rename = "lost_acked")]
    pub lost: Distribution,
    /// What the harness adds to each trial beyond the workload's own time:
    /// starting targets, readiness, read-back, teardown, checks.
    pub overhead_ms_per_trial: f64,
    #[serde(rename = "rto_ms")]
    pub rto: Distribution,
    pub wall_ms_per_trial: f64,
    #[serde(skip)]
    pub wall: std::time::Duration,
    #[serde(skip)]
    pub trials: usize,
    #[serde(skip)]
    pub workload: std::time::Duration,
}

impl BenchSummary {
    /// `wall`: the run's time, of which `workload` a trial is the workload's.
    pub fn of(
        report: &RunReport,
        wall: std::time::Duration,
        workload: std::time::Duration,
        baseline: Option<&RunReport>,
    ) -> BenchSummary {
        let trials = report.trials.len();
        let wall_ms_per_trial = wall.as_secs_f64() * 1000.0 / trials.max(1) as f64;
        BenchSummary {
            baseline: baseline.and_then(|old| compare(&rtos(report), &rtos(old), report.seed)),
            lost: distribution(&lost(report), report.seed),
            overhead_ms_per_trial: wall_ms_per_trial - workload.as_secs_f64() * 1000.0,
            rto: distribution(&rtos(report), report.seed),
            wall_ms_per_trial,
            wall,
            trials,
            workload,
        }
    }

    pub fn regressed(&self) -> bool {
        self.baseline.as_ref().is_some_and(|c| c.change == Change::Regressed)
    }

    /// The lines `crashlab bench` prints after the run's summary.
    pub fn render(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "wall {:.1}s for {} trial(s): {:.0} ms a trial, of which the workload's {} and {:.0} ms the harness's \
             (start, readiness, recovery wait, read-back, teardown, checks)",
            self.wall.as_secs_f64(),
            self.trials,
            self.wall_ms_per_trial,
            crate::duration::format_duration(self.workload),
            self.overhead_ms_per_trial
        );
        let ci = |c: Option<(f64, f64)>| c.map_or("-".into(), |(lo, hi)| format!("[{lo:.1}, {hi:.1}]"));
        let (rto, lost) = (&self.rto, &self.lost);
        let _ = writeln!(
            out,
            "rto_ms      mean {:.1} (95% CI {}), median 95% CI {}",
            rto.stats.mean.unwrap_or(f64::NAN),
            ci(rto.mean_ci),
            ci(rto.median_ci)
        );
        let _ =
            writeln!(out, "lost_acked  mean {:.1} (95% CI {})", lost.stats.mean.unwrap_or(f64::NAN), ci(lost.mean_ci));
        let most = rto.histogram.iter().map(|b| b.1).max().unwrap_or(1).max(1);
        for (upper, n) in &rto.histogram {
            let _ = writeln!(out, "  rto <= {upper:>9.1} ms {:<40} {n}", "#".repeat(n * 40 / most));
        }
        if let Some(c) = &self.baseline {
            let _ = writeln!(
                out,
                "rto against the baseline: median {:.1} -> {:.1} ms ({:+.1}%), difference 95% CI [{:.1}, {:.1}] ms: {}",
                c.baseline_median,
                c.median,
                c.relative * 100.0,
                c.difference_ci.0,
                c.difference_ci.1,
                match c.change {
                    Change::Improved => "IMPROVED",
                    Change::Regressed => "REGRESSED",
                    Change::Unchanged => "no change (within noise)",
                }
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clear_shift_is_a_change_and_noise_is_not() {
        let old: Vec<f64> = (0..10).map(|i| 400.0 + i as f64).collect();
        let faster: Vec<f64> = (0..10).map(|i| 200.0 + i as f64).collect();
        let same: Vec<f64> = (0..10).map(|i| 401.0 + i as f64 * 0.9).collect();
        assert_eq!(compare(&faster, &old, 1).unwrap().change, Change::Improved);
        assert_eq!(compare(&old, &faster, 1).unwrap().change, Change::Regressed);
        assert_eq!(compare(&same, &old, 1).unwrap().change, Change::Unchanged);
        let d = distribution(&old, 1);
        let (lo, hi) = d.mean_ci.unwrap();
        assert!(lo <= 404.5 && 404.5 <= hi, "the mean 404.5 lies in its interval ({lo}, {hi})");
        assert_eq!(d.histogram.iter().map(|b| b.1).sum::<usize>(), 10);
    }
}
