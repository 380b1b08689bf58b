//! Human durations (`250ms`, `2s`, `1.5s`, `1m`) and ranges (`2s..4s`).

use std::fmt;
use std::time::Duration;

/// Why a duration did not parse; the message says what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DurationError(String);

const UNITS: &[(&str, f64)] = &[("us", 1e-6), ("ms", 1e-3), ("s", 1.0), ("m", 60.0), ("h", 3600.0)];

const EXPECTED: &str = "expected a duration such as `250ms`, `2s`, `1.5s` or `1m` (units: us, ms, s, m, h)";

/// Parses one duration. Zero must still carry a unit (`0ms`) so that a bare
/// number is never silently read as seconds or milliseconds.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let text = text.trim();
    if text.starts_with('-') {
        return Err(DurationError(format!(
            "negative duration `{text}`: durations count forward from the start of the trial; {EXPECTED}"
        )));
    }
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| DurationError(format!("`{text}` has no unit; {EXPECTED}")))?;
    let (number, unit) = text.split_at(split);
    let unit = unit.trim_start();
    let scale = UNITS
        .iter()
        .find(|(name, _)| *name == unit)
        .map(|(_, scale)| *scale)
        .ok_or_else(|| DurationError(format!("unknown unit `{unit}` in `{text}`; {EXPECTED}")))?;
    let value: f64 = number
        .parse()
        .map_err(|_| DurationError(format!("`{text}` is not a number followed by a unit; {EXPECTED}")))?;
    if !value.is_finite() {
        return Err(DurationError(format!("`{text}` is not finite; {EXPECTED}")));
    }
    match Duration::try_from_secs_f64(value * scale) {
        Ok(d) if d <= MAX => Ok(d),
        _ => Err(DurationError(format!(
            "`{text}` is longer than {}, the longest duration a scenario may give",
            format_duration(MAX)
        ))),
    }
}

/// The longest duration a scenario may give: a year, far beyond any trial,
/// and far within what a nanosecond count (and so a seeded draw) can hold.
pub const MAX: Duration = Duration::from_secs(365 * 24 * 3600);

/// A point in time or a range to draw uniformly from, with the trial's seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeSpec {
    pub min: Duration,
    pub max: Duration,
}

impl TimeSpec {
    pub fn fixed(at: Duration) -> Self {
        TimeSpec { min: at, max: at }
    }

    /// Picks a moment; a fixed time ignores the random source.
    pub fn sample(&self, rng: &mut impl rand::Rng) -> Duration {
        if self.min == self.max {
            return self.min;
        }
        let nanos = rng.random_range(self.min.as_nanos() as u64..=self.max.as_nanos() as u64);
        Duration::from_nanos(nanos)
    }
}

impl fmt::Display for TimeSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.min == self.max {
            write!(f, "{}", format_duration(self.min))
        } else {
            write!(f, "{}..{}", format_duration(self.min), format_duration(self.max))
        }
    }
}

/// Parses `2s` or `2s..4s`.
pub fn parse_time_spec(text: &str) -> Result<TimeSpec, DurationError> {
    match text.split_once("..") {
        None => Ok(TimeSpec::fixed(parse_duration(text)?)),
        Some((lo, hi)) => {
            let (min, max) = (parse_duration(lo)?, parse_duration(hi)?);
            if min > max {
                return Err(DurationError(format!(
                    "range `{text}` ends before it starts; write the earlier bound first"
                )));
            }
            Ok(TimeSpec { min, max })
        }
    }
}

/// Renders a duration the way a scenario would write it.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms >= 3_600_000.0 && (ms / 3_600_000.0).fract() == 0.0 {
        format!("{}h", ms / 3_600_000.0)
    } else if ms >= 60_000.0 && (ms / 60_000.0).fract() == 0.0 {
        format!("{}m", ms / 60_000.0)
    } else if ms >= 1000.0 && (ms / 1000.0).fract() == 0.0 {
        format!("{}s", ms / 1000.0)
    } else if ms.fract() == 0.0 {
        format!("{ms}ms")
    } else {
        format!("{}us", (ms * 1000.0).round())
    }
}

/// A value given to clap for `--fsync every:<dur>` and friends.
pub fn clap_duration(text: &str) -> Result<Duration, String> {
    parse_duration(text).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("1m").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_duration("100us").unwrap(), Duration::from_micros(100));
        assert_eq!(parse_duration("0ms").unwrap(), Duration::ZERO);
    }

    #[test]
    fn rejects_bad_input_with_a_reason() {
        assert!(parse_duration("-1s").unwrap_err().0.contains("negative"));
        assert!(parse_duration("5").unwrap_err().0.contains("no unit"));
        assert!(parse_duration("5 parsecs").unwrap_err().0.contains("unknown unit `parsecs`"));
        assert_eq!(parse_duration("5 s").unwrap(), Duration::from_secs(5));
        assert!(parse_duration("1.2.3s").is_err());
        assert!(parse_time_spec("4s..2s").unwrap_err().0.contains("ends before"));
        // Found by the mutation test: these panicked (2^64 s; a range
        // beyond what a nanosecond count holds).
        assert!(parse_duration("18446744073709551616s").unwrap_err().0.contains("longer than 8760h"));
        assert!(parse_time_spec("1s..600000h").unwrap_err().0.contains("longer than"));
        assert_eq!(parse_duration("8760h").unwrap(), MAX);
    }

    #[test]
    fn ranges_sample_inside_and_repeat_with_the_seed() {
        use rand::SeedableRng;
        let spec = parse_time_spec("2s..4s").unwrap();
        let mut a = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let mut b = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        for _ in 0..100 {
            let x = spec.sample(&mut a);
            assert!(x >= Duration::from_secs(2) && x <= Duration::from_secs(4));
            assert_eq!(x, spec.sample(&mut b));
        }
    }

    #[test]
    fn formats_round_trip() {
        for text in ["250ms", "2s", "1500ms", "100us"] {
            let d = parse_duration(text).unwrap();
            assert_eq!(parse_duration(&format_duration(d)).unwrap(), d);
        }
    }
}
