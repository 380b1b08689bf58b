//! `[expect]` thresholds: `rto = "<= 1s"`, `lost_acked = 0` (every trial), or
//! `rto.p95 = "<= 2s"` (a percentile over the run's trials).

use std::fmt;
use std::str::FromStr;

use toml::de::DeValue;

use crate::duration::parse_duration;

/// A measured quantity an expectation can bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Metric {
    /// Recovery time, ms (null = never recovered, which fails any bound).
    Rto,
    /// Time to detect, ms.
    Ttd,
    LostAcked,
    /// RPO window, ms.
    Window,
    UnknownWrites,
    Phantom,
    Corrupted,
    /// Percentage of the writes sent during a fault's outage that were not
    /// acknowledged.
    ErrorsDuringFault,
    /// Percentage of all the writes sent that were acknowledged.
    Availability,
}

impl Metric {
    pub const NAMES: &'static [&'static str] = &[
        "rto",
        "ttd",
        "lost_acked",
        "window",
        "unknown_writes",
        "phantom",
        "corrupted",
        "errors_during_fault",
        "availability",
    ];
    const ALL: [Metric; 9] = [
        Metric::Rto,
        Metric::Ttd,
        Metric::LostAcked,
        Metric::Window,
        Metric::UnknownWrites,
        Metric::Phantom,
        Metric::Corrupted,
        Metric::ErrorsDuringFault,
        Metric::Availability,
    ];

    pub fn name(self) -> &'static str {
        Self::NAMES[Self::ALL.iter().position(|m| *m == self).unwrap()]
    }

    /// Times are written as durations and compared in ms; the rest are counts.
    pub fn is_time(self) -> bool {
        matches!(self, Metric::Rto | Metric::Ttd | Metric::Window)
    }

    /// Percentages are written `"<= 1%"`.
    pub fn is_percentage(self) -> bool {
        matches!(self, Metric::ErrorsDuringFault | Metric::Availability)
    }

    /// Renders a value of this metric for people.
    pub fn show(self, value: Option<f64>) -> String {
        match value {
            None if self == Metric::Rto => "never recovered".into(),
            None => "n/a".into(),
            Some(v) if self.is_time() => format!("{v:.1}ms"),
            Some(v) if self.is_percentage() => format!("{v:.2}%"),
            Some(v) => format!("{v}"),
        }
    }
}

impl FromStr for Metric {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        Self::NAMES.iter().position(|n| *n == s).map(|i| Self::ALL[i]).ok_or(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Le,
    Lt,
    Ge,
    Gt,
    Eq,
}

impl CmpOp {
    fn symbol(self) -> &'static str {
        match self {
            CmpOp::Le => "<=",
            CmpOp::Lt => "<",
            CmpOp::Ge => ">=",
            CmpOp::Gt => ">",
            CmpOp::Eq => "==",
        }
    }

    pub fn holds(self, observed: f64, threshold: f64) -> bool {
        match self {
            CmpOp::Le => observed <= threshold,
            CmpOp::Lt => observed < threshold,
            CmpOp::Ge => observed >= threshold,
            CmpOp::Gt => observed > threshold,
            CmpOp::Eq => observed == threshold,
        }
    }
}

/// A statistic over the trials of a run, for `rto.p95 = "<= 2s"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregate {
    Min,
    P50,
    P95,
    P99,
    Max,
    Mean,
}

impl Aggregate {
    pub const NAMES: &'static [&'static str] = &["min", "p50", "p95", "p99", "max", "mean"];
    const ALL: [Aggregate; 6] =
        [Aggregate::Min, Aggregate::P50, Aggregate::P95, Aggregate::P99, Aggregate::Max, Aggregate::Mean];

    pub fn name(self) -> &'static str {
        Self::NAMES[Self::ALL.iter().position(|a| *a == self).unwrap()]
    }

    /// The statistic over per-trial values, by the nearest-rank method (as
    /// the report's summary). A missing value (never recovered) ranks above
    /// every number, so `rto.p95` is `None` when more than 5% of the trials
    /// never recovered; `None` also for no values at all.
    pub fn of(self, values: &[Option<f64>]) -> Option<f64> {
        let mut v: Vec<f64> = values.iter().map(|v| v.unwrap_or(f64::INFINITY)).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let rank = |p: f64| v[((p / 100.0 * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
        let value = match self {
            Aggregate::Min => v[0],
            Aggregate::P50 => rank(50.0),
            Aggregate::P95 => rank(95.0),
            Aggregate::P99 => rank(99.0),
            Aggregate::Max => v[v.len() - 1],
            Aggregate::Mean => v.iter().sum::<f64>() / v.len() as f64,
        };
        value.is_finite().then_some(value)
    }
}

impl FromStr for Aggregate {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        Self::NAMES.iter().position(|n| *n == s).map(|i| Self::ALL[i]).ok_or(())
    }
}

/// One bound on one metric: checked in every trial, or, with an aggregate,
/// once over all the trials of the run.
#[derive(Debug, Clone, PartialEq)]
pub struct Expectation {
    pub metric: Metric,
    pub aggregate: Option<Aggregate>,
    pub op: CmpOp,
    /// In ms for times, a count otherwise.
    pub threshold: f64,
}

impl Expectation {
    /// Whether an observed value meets the bound. A missing value (never
    /// recovered) meets no bound.
    pub fn holds(&self, observed: Option<f64>) -> bool {
        observed.is_some_and(|v| self.op.holds(v, self.threshold))
    }

    /// The observation a run's line shows: of those that break the bound,
    /// the farthest from it (a missing value first); if none does, the
    /// nearest to it.
    pub fn worst(&self, values: &[Option<f64>]) -> Option<Option<f64>> {
        let distance = |v: &Option<f64>| v.map_or(f64::INFINITY, |v| (v - self.threshold).abs());
        let (broken, held): (Vec<_>, Vec<_>) = values.iter().copied().partition(|v| !self.holds(*v));
        match broken.is_empty() {
            false => broken.into_iter().max_by(|a, b| distance(a).total_cmp(&distance(b))),
            true => held.into_iter().min_by(|a, b| distance(a).total_cmp(&distance(b))),
        }
    }
}

impl Expectation {
    /// `rto` or `rto.p95`: the name checks and reports know it by.
    pub fn name(&self) -> String {
        match self.aggregate {
            Some(a) => format!("{}.{}", self.metric.name(), a.name()),
            None => self.metric.name().to_string(),
        }
    }
}

impl fmt::Display for Expectation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.metric.is_time() {
            let bound = crate::duration::format_duration(std::time::Duration::from_secs_f64(self.threshold / 1000.0));
            write!(f, "{} {} {bound}", self.name(), self.op.symbol())
        } else if self.metric.is_percentage() {
            write!(f, "{} {} {}%", self.name(), self.op.symbol(), self.threshold)
        } else {
            write!(f, "{} {} {}", self.name(), self.op.symbol(), self.threshold)
        }
    }
}

/// Reads `"<= 1s"`, `"2s"` (meaning `<=`), `0` or `"< 5"`.
pub fn parse_expectation(metric: Metric, aggregate: Option<Aggregate>, value: &DeValue) -> Result<Expectation, String> {
    let expected = if metric.is_time() {
        "a bound such as \"<= 1s\" (<=, <, >=, > or ==, then a duration)"
    } else if metric.is_percentage() {
        "a bound such as \"<= 1%\" (a percentage of the writes)"
    } else {
        "a count such as 0 or a bound such as \"<= 5\""
    };
    let text = match value {
        DeValue::Integer(i) if !metric.is_time() && !metric.is_percentage() => {
            let n = i64::from_str_radix(i.as_str(), i.radix()).map_err(|_| format!("expected {expected}"))?;
            return Ok(Expectation { metric, aggregate, op: CmpOp::Eq, threshold: n as f64 });
        }
        DeValue::String(s) => s.trim().to_string(),
        _ => return Err(format!("expected {expected}, found {}", value.type_str())),
    };
    let (op, rest) = [("<=", CmpOp::Le), (">=", CmpOp::Ge), ("==", CmpOp::Eq), ("<", CmpOp::Lt), (">", CmpOp::Gt)]
        .iter()
        .find_map(|(sym, op)| text.strip_prefix(sym).map(|rest| (*op, rest.trim())))
        .unwrap_or((CmpOp::Le, text.as_str()));
    let threshold = if metric.is_time() {
        parse_duration(rest).map_err(|e| format!("{e}; expected {expected}"))?.as_secs_f64() * 1000.0
    } else if metric.is_percentage() {
        let percent = rest.strip_suffix('%').and_then(|p| p.trim().parse::<f64>().ok());
        percent.filter(|p| (0.0..=100.0).contains(p)).ok_or_else(|| format!("`{rest}`: expected {expected}"))?
    } else {
        rest.parse::<u64>().map_err(|_| format!("`{rest}` is not a count; expected {expected}"))? as f64
    };
    Ok(Expectation { metric, aggregate, op, threshold })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(metric: Metric, toml_value: &str) -> Result<Expectation, String> {
        let v = DeValue::parse(toml_value).unwrap();
        parse_expectation(metric, None, v.get_ref())
    }

    /// A run's line shows the worst trial: 297 of 236, 279, 297 lost (it
    /// showed the first failing trial's 236), a trial that never recovered
    /// before any number, and among passing trials the nearest the bound.
    #[test]
    fn the_worst_observation_is_the_farthest_past_the_bound() {
        let lost = parse(Metric::LostAcked, "0").unwrap();
        assert_eq!(lost.worst(&[Some(236.0), Some(279.0), Some(297.0), Some(0.0)]), Some(Some(297.0)));
        let rto = parse(Metric::Rto, "\"<= 1s\"").unwrap();
        assert_eq!(rto.worst(&[Some(1500.0), None, Some(3000.0)]), Some(None));
        assert_eq!(rto.worst(&[Some(10.0), Some(900.0), Some(20.0)]), Some(Some(900.0)));
        let some = parse(Metric::LostAcked, "\"> 0\"").unwrap();
        assert_eq!(some.worst(&[Some(40.0), Some(3.0), Some(90.0)]), Some(Some(3.0)));
        assert_eq!(some.worst(&[]), None);
    }

    #[test]
    fn reads_bounds() {
        let e = parse(Metric::Rto, "\"<= 1s\"").unwrap();
        assert_eq!((e.op, e.threshold), (CmpOp::Le, 1000.0));
        let e = parse(Metric::Rto, "\"250ms\"").unwrap();
        assert_eq!((e.op, e.threshold), (CmpOp::Le, 250.0));
        let e = parse(Metric::LostAcked, "0").unwrap();
        assert_eq!((e.op, e.threshold), (CmpOp::Eq, 0.0));
        let e = parse(Metric::LostAcked, "\"> 3\"").unwrap();
        assert_eq!((e.op, e.threshold), (CmpOp::Gt, 3.0));
        assert!(parse(Metric::Rto, "5").is_err());
        let e = parse(Metric::Availability, "\">= 99.5%\"").unwrap();
        assert_eq!((e.op, e.threshold, e.to_string()), (CmpOp::Ge, 99.5, "availability >= 99.5%".to_string()));
        let e = parse(Metric::ErrorsDuringFault, "\"<= 1%\"").unwrap();
        assert_eq!((e.op, e.threshold, e.to_string()), (CmpOp::Le, 1.0, "errors_during_fault <= 1%".to_string()));
        assert!(
            parse(Metric::ErrorsDuringFault, "1").is_err() && parse(Metric::ErrorsDuringFault, "\"<= 150%\"").is_err()
        );
        assert!(parse(Metric::LostAcked, "\"<= 1s\"").is_err());
    }

    #[test]
    fn aggregates_rank_never_recovered_last() {
        let v = |xs: &[Option<f64>]| xs.to_vec();
        let twenty: Vec<Option<f64>> = (1..=20).map(|i| Some(f64::from(i) * 100.0)).collect();
        assert_eq!(Aggregate::P95.of(&twenty), Some(1900.0));
        assert_eq!(Aggregate::P50.of(&twenty), Some(1000.0));
        assert_eq!(Aggregate::Mean.of(&twenty), Some(1050.0));
        // One of twenty never recovered: p95 is still a number, max is not.
        let mut one_lost = twenty.clone();
        one_lost[3] = None;
        assert_eq!(Aggregate::P95.of(&one_lost), Some(2000.0));
        assert_eq!(Aggregate::Max.of(&one_lost), None);
        assert_eq!(Aggregate::Min.of(&v(&[None, Some(5.0)])), Some(5.0));
        assert_eq!(Aggregate::P50.of(&[]), None);
    }

    #[test]
    fn never_recovered_meets_no_bound() {
        let e = parse(Metric::Rto, "\"<= 1h\"").unwrap();
        assert!(!e.holds(None));
        assert!(e.holds(Some(10.0)));
        assert!(!e.holds(Some(3_600_001.0)));
    }
}
