//! `[expect]` thresholds: `rto = "<= 1s"`, `lost_acked = 0`.

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
}

impl Metric {
    pub const NAMES: &'static [&'static str] =
        &["rto", "ttd", "lost_acked", "window", "unknown_writes", "phantom", "corrupted"];
    const ALL: [Metric; 7] = [
        Metric::Rto,
        Metric::Ttd,
        Metric::LostAcked,
        Metric::Window,
        Metric::UnknownWrites,
        Metric::Phantom,
        Metric::Corrupted,
    ];

    pub fn name(self) -> &'static str {
        Self::NAMES[Self::ALL.iter().position(|m| *m == self).unwrap()]
    }

    /// Times are written as durations and compared in ms; the rest are counts.
    pub fn is_time(self) -> bool {
        matches!(self, Metric::Rto | Metric::Ttd | Metric::Window)
    }

    /// Renders a value of this metric for people.
    pub fn show(self, value: Option<f64>) -> String {
        match value {
            None if self == Metric::Rto => "never recovered".into(),
            None => "n/a".into(),
            Some(v) if self.is_time() => format!("{v:.1}ms"),
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

/// One bound on one metric, checked in every trial.
#[derive(Debug, Clone, PartialEq)]
pub struct Expectation {
    pub metric: Metric,
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
}

impl fmt::Display for Expectation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.metric.is_time() {
            let bound = crate::duration::format_duration(std::time::Duration::from_secs_f64(self.threshold / 1000.0));
            write!(f, "{} {} {bound}", self.metric.name(), self.op.symbol())
        } else {
            write!(f, "{} {} {}", self.metric.name(), self.op.symbol(), self.threshold)
        }
    }
}

/// Reads `"<= 1s"`, `"2s"` (meaning `<=`), `0` or `"< 5"`.
pub fn parse_expectation(metric: Metric, value: &DeValue) -> Result<Expectation, String> {
    let expected = if metric.is_time() {
        "a bound such as \"<= 1s\" (<=, <, >=, > or ==, then a duration)"
    } else {
        "a count such as 0 or a bound such as \"<= 5\""
    };
    let text = match value {
        DeValue::Integer(i) if !metric.is_time() => {
            let n = i64::from_str_radix(i.as_str(), i.radix()).map_err(|_| format!("expected {expected}"))?;
            return Ok(Expectation { metric, op: CmpOp::Eq, threshold: n as f64 });
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
    } else {
        rest.parse::<u64>().map_err(|_| format!("`{rest}` is not a count; expected {expected}"))? as f64
    };
    Ok(Expectation { metric, op, threshold })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(metric: Metric, toml_value: &str) -> Result<Expectation, String> {
        let v = DeValue::parse(toml_value).unwrap();
        parse_expectation(metric, v.get_ref())
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
        assert!(parse(Metric::LostAcked, "\"<= 1s\"").is_err());
    }

    #[test]
    fn never_recovered_meets_no_bound() {
        let e = parse(Metric::Rto, "\"<= 1h\"").unwrap();
        assert!(!e.holds(None));
        assert!(e.holds(Some(10.0)));
        assert!(!e.holds(Some(3_600_001.0)));
    }
}
