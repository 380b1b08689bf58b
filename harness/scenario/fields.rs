//! Typed reads from a spanned TOML table, collecting every error.
//!
//! Each table is read through [`Fields`], which knows the keys that table
//! accepts: unknown keys are reported at once (with the nearest known key),
//! and each getter reports a wrong type or a bad value at the value's span.

use std::ops::Range;
use std::time::Duration;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::diagnostic::{did_you_mean, Diagnostics};
use super::plan::Size;
use crate::duration::{parse_duration, parse_time_spec, TimeSpec};

pub type Span = Range<usize>;
pub type Value<'i> = Spanned<DeValue<'i>>;

/// Words users reach for that name no key, the keys that measure the same
/// thing, and how to say so: a near spelling (`rpo` → `rto`) would mislead.
const MEANT: &[(&str, &[&str], &str)] = &[(
    "rpo",
    &["lost_acked", "window"],
    "RPO is two numbers here: `lost_acked` (acknowledged writes lost) and `window` (how long before the fault \
     the oldest of them was acknowledged), e.g. lost_acked = 0 and window = \"<= 1s\"",
)];

pub struct Fields<'a, 'i> {
    pub table: &'a DeTable<'i>,
    /// Where the table is, for "missing key" messages.
    pub span: Span,
    /// How the user knows this table, e.g. `[target.kv]`.
    pub what: String,
}

impl<'a, 'i> Fields<'a, 'i> {
    /// Opens a table and reports every key it does not know.
    pub fn new(
        table: &'a DeTable<'i>,
        span: Span,
        what: impl Into<String>,
        known: &[&str],
        d: &mut Diagnostics,
    ) -> Self {
        let what = what.into();
        for key in table.keys() {
            let name = key.get_ref().as_ref();
            if known.contains(&name) {
                continue;
            }
            let meant = MEANT
                .iter()
                .find(|(word, keys, _)| name.eq_ignore_ascii_case(word) && keys.iter().all(|k| known.contains(k)));
            let message = match meant {
                Some((_, _, explained)) => format!("unknown key `{name}` in {what}: {explained}"),
                None => format!(
                    "unknown key `{name}` in {what}{}; expected one of: {}",
                    did_you_mean(name, known.iter().copied()),
                    known.join(", ")
                ),
            };
            d.error(key.span(), message);
        }
        Fields { table, span, what }
    }

    pub fn get(&self, key: &str) -> Option<&'a Value<'i>> {
        self.table.get(key)
    }

    fn missing(&self, key: &str, expected: &str, d: &mut Diagnostics) {
        d.error(self.span.clone(), format!("missing key `{key}` in {}; expected {expected}", self.what));
    }

    fn wrong_type(&self, key: &str, value: &Value<'i>, expected: &str, d: &mut Diagnostics) {
        d.error(
            value.span(),
            format!("`{key}` in {} must be {expected}, found {}", self.what, value.get_ref().type_str()),
        );
    }

    pub fn str(&self, key: &str, d: &mut Diagnostics) -> Option<(&'a str, Span)> {
        let value = self.get(key)?;
        match value.get_ref().as_str() {
            Some(s) => Some((s, value.span())),
            None => {
                self.wrong_type(key, value, "a string", d);
                None
            }
        }
    }

    pub fn required_str(&self, key: &str, expected: &str, d: &mut Diagnostics) -> Option<(&'a str, Span)> {
        if self.get(key).is_none() {
            self.missing(key, expected, d);
            return None;
        }
        self.str(key, d)
    }

    /// A string that must be one of `choices`; `noun` names it in messages
    /// ("fault kind").
    pub fn choice(
        &self,
        key: &str,
        noun: &str,
        choices: &[&'static str],
        d: &mut Diagnostics,
    ) -> Option<(&'static str, Span)> {
        let (text, span) = self.str(key, d)?;
        match choices.iter().find(|c| **c == text) {
            Some(c) => Some((c, span)),
            None => {
                d.error(
                    span,
                    format!(
                        "unknown {noun} `{text}` in {}{}; expected one of: {}",
                        self.what,
                        did_you_mean(text, choices.iter().copied()),
                        choices.join(", ")
                    ),
                );
                None
            }
        }
    }

    /// [`Fields::choice`] for a key that must be there.
    pub fn required_choice(
        &self,
        key: &str,
        noun: &str,
        choices: &[&'static str],
        d: &mut Diagnostics,
    ) -> Option<(&'static str, Span)> {
        if self.get(key).is_none() {
            self.missing(key, &format!("one of: {}", choices.join(", ")), d);
            return None;
        }
        self.choice(key, noun, choices, d)
    }

    pub fn integer(&self, key: &str, min: i64, max: i64, d: &mut Diagnostics) -> Option<i64> {
        let value = self.get(key)?;
        let number = value.get_ref().as_integer().and_then(|i| i64::from_str_radix(i.as_str(), i.radix()).ok());
        match number {
            Some(n) if (min..=max).contains(&n) => Some(n),
            Some(n) => {
                d.error(value.span(), format!("`{key}` in {} must be between {min} and {max}, found {n}", self.what));
                None
            }
            None => {
                self.wrong_type(key, value, "an integer", d);
                None
            }
        }
    }

    /// A number (integer or float) in `range`; `expected` says what it
    /// means in the error.
    pub fn number(
        &self,
        key: &str,
        range: std::ops::RangeInclusive<f64>,
        expected: &str,
        d: &mut Diagnostics,
    ) -> Option<f64> {
        let value = self.get(key)?;
        let number = match value.get_ref() {
            toml::de::DeValue::Float(x) => x.as_str().parse::<f64>().ok(),
            toml::de::DeValue::Integer(i) => i.as_str().parse::<f64>().ok(),
            _ => None,
        };
        let in_range = number.filter(|n| range.contains(n));
        if in_range.is_none() {
            d.error(value.span(), format!("`{key}` in {} must be {expected}", self.what));
        }
        in_range
    }

    pub fn duration(&self, key: &str, d: &mut Diagnostics) -> Option<Duration> {
        let (text, span) = self.str(key, d)?;
        parse_duration(text).map_err(|e| d.error(span, format!("`{key}` in {}: {e}", self.what))).ok()
    }

    /// A duration that must be more than zero: `why` says what a zero
    /// would do.
    pub fn positive_duration(&self, key: &str, why: &str, d: &mut Diagnostics) -> Option<Duration> {
        let value = self.duration(key, d)?;
        if value.is_zero() {
            let (_, span) = self.str(key, d)?;
            d.error(span, format!("`{key}` in {} must be more than 0: {why}", self.what));
            return None;
        }
        Some(value)
    }

    pub fn time_spec(&self, key: &str, d: &mut Diagnostics) -> Option<(TimeSpec, Span)> {
        let (text, span) = self.str(key, d)?;
        match parse_time_spec(text) {
            Ok(spec) => Some((spec, span)),
            Err(e) => {
                d.error(span, format!("`{key}` in {}: {e} (or a range such as `2s..4s`)", self.what));
                None
            }
        }
    }

    /// A path inside the data dir: relative, and never climbing out of it.
    pub fn data_path(&self, key: &str, expected: &str, d: &mut Diagnostics) -> Option<String> {
        let (path, span) = self.required_str(key, expected, d)?;
        let climbs = std::path::Path::new(path).components().any(|c| {
            matches!(
                c,
                std::path::Component::ParentDir | std::path::Component::RootDir | std::path::Component::Prefix(_)
            )
        });
        if climbs || path.is_empty() {
            d.error(
                span,
                format!("`{key}` in {} must be a path relative to the target's data dir, without `..`", self.what),
            );
            return None;
        }
        Some(path.to_string())
    }

    /// An array of strings, e.g. a command line.
    pub fn str_array(&self, key: &str, d: &mut Diagnostics) -> Option<(Vec<String>, Span)> {
        let value = self.get(key)?;
        let items = match value.get_ref().as_array() {
            Some(items) => items,
            None => {
                self.wrong_type(key, value, "an array of strings", d);
                return None;
            }
        };
        let mut out = Vec::new();
        for item in items.iter() {
            match item.get_ref().as_str() {
                Some(s) => out.push(s.to_string()),
                None => {
                    d.error(item.span(), format!("`{key}` in {} must hold only strings", self.what));
                    return None;
                }
            }
        }
        Some((out, value.span()))
    }

    /// A sub-table (inline or not).
    pub fn table(&self, key: &str, d: &mut Diagnostics) -> Option<(&'a DeTable<'i>, Span)> {
        let value = self.get(key)?;
        match value.get_ref().as_table() {
            Some(t) => Some((t, value.span())),
            None => {
                self.wrong_type(key, value, "a table", d);
                None
            }
        }
    }

    pub fn bool(&self, key: &str, d: &mut Diagnostics) -> Option<bool> {
        let value = self.get(key)?;
        match value.get_ref() {
            DeValue::Boolean(b) => Some(*b),
            _ => {
                self.wrong_type(key, value, "true or false", d);
                None
            }
        }
    }

    /// A number of bytes: an integer, or a string such as `"4KiB"`, `"1MiB"`.
    pub fn bytes(&self, key: &str, d: &mut Diagnostics) -> Option<u64> {
        match self.bytes_or_fraction(key, false, d)? {
            Size::Bytes(n) => Some(n),
            Size::Fraction(_) => None,
        }
    }

    /// Bytes, or with `fraction_ok` a percentage of a file (`"50%"`).
    pub fn bytes_or_fraction(&self, key: &str, fraction_ok: bool, d: &mut Diagnostics) -> Option<Size> {
        let value = self.get(key)?;
        if let Some(i) = value.get_ref().as_integer() {
            return match u64::from_str_radix(i.as_str(), i.radix()) {
                Ok(n) => Some(Size::Bytes(n)),
                Err(_) => {
                    d.error(value.span(), format!("`{key}` in {} must be a number of bytes >= 0", self.what));
                    None
                }
            };
        }
        let expected = if fraction_ok {
            "a number of bytes (4096, \"4KiB\", \"1MiB\") or a percentage of the file (\"50%\")"
        } else {
            "a number of bytes (4096, \"4KiB\", \"1MiB\")"
        };
        let Some(text) = value.get_ref().as_str() else {
            self.wrong_type(key, value, expected, d);
            return None;
        };
        let parsed = match text.strip_suffix('%') {
            Some(pct) if fraction_ok => {
                pct.trim().parse::<f64>().ok().filter(|p| (0.0..=100.0).contains(p)).map(|p| Size::Fraction(p / 100.0))
            }
            Some(_) => None,
            None => parse_bytes(text).map(Size::Bytes),
        };
        if parsed.is_none() {
            d.error(value.span(), format!("`{key}` in {}: cannot read `{text}`; expected {expected}", self.what));
        }
        parsed
    }
}

/// `"512"`, `"4KiB"`, `"1MiB"`, `"1GiB"` (also KB/MB/GB as powers of 1024).
pub fn parse_bytes(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let scale: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" | "KB" | "K" => 1 << 10,
        "MiB" | "MB" | "M" => 1 << 20,
        "GiB" | "GB" | "G" => 1 << 30,
        _ => return None,
    };
    number.parse::<u64>().ok()?.checked_mul(scale)
}

/// A TOML value as JSON (a table passed through to an API as it was
/// written, e.g. a Chaos Mesh `spec`); a date-time becomes its text.
pub fn to_json(value: &DeValue) -> serde_json::Value {
    use serde_json::Value as Json;
    match value {
        DeValue::String(s) => Json::String(s.to_string()),
        DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix()).map_or(Json::Null, Json::from),
        DeValue::Float(x) => x.as_str().parse::<f64>().map_or(Json::Null, Json::from),
        DeValue::Boolean(b) => Json::Bool(*b),
        DeValue::Datetime(d) => Json::String(d.to_string()),
        DeValue::Array(items) => Json::Array(items.iter().map(|v| to_json(v.get_ref())).collect()),
        DeValue::Table(table) => {
            Json::Object(table.iter().map(|(k, v)| (k.get_ref().to_string(), to_json(v.get_ref()))).collect())
        }
    }
}
