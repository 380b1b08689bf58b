//! `[[fault]]` tables: process faults (kill, pause, restart) and storage
//! faults (corrupt, stale-lock, lose-unsynced).

use std::str::FromStr;

use nix::sys::signal::Signal;

use super::diagnostic::{self, Diagnostics};
use super::fields::Fields;
use super::plan::*;
use super::target_ref;
use crate::duration::format_duration;

pub const FAULT_KEYS: &[&str] = &[
    "kind", "target", "at", "signal", "duration", "path", "mode", "when", "bits", "offset", "length", "to", "bytes",
    "variant", "lock", "torn",
];
pub const FAULT_KINDS: &[&str] = &["kill", "pause", "restart", "corrupt", "stale-lock", "lose-unsynced"];
pub const CORRUPT_MODES: &[&str] = &["bitflip", "zero", "random", "truncate", "torn-tail", "delete", "swap"];
pub const STALE_LOCK_VARIANTS: &[&str] = &["leftover", "held", "pid-reused"];

/// The keys (beyond kind, target, at) that each fault kind, or corrupt mode, reads.
fn applicable(kind: &str, mode: Option<&str>) -> &'static [&'static str] {
    match (kind, mode) {
        ("kill", _) => &["signal"],
        ("pause", _) => &["duration"],
        ("corrupt", Some("bitflip")) => &["path", "mode", "when", "bits", "offset"],
        ("corrupt", Some("zero" | "random")) => &["path", "mode", "when", "offset", "length"],
        ("corrupt", Some("truncate")) => &["path", "mode", "when", "to"],
        ("corrupt", Some("torn-tail")) => &["path", "mode", "when", "bytes"],
        ("corrupt", Some("swap")) => &["path", "mode", "when", "length"],
        ("corrupt", _) => &["path", "mode", "when"],
        ("stale-lock", _) => &["variant", "path", "lock", "duration"],
        ("lose-unsynced", _) => &["torn"],
        _ => &[],
    }
}

pub fn compile_fault(
    f: &Fields,
    targets: &[&str],
    workload: Option<&WorkloadPlan>,
    d: &mut Diagnostics,
) -> Option<FaultPlan> {
    let kind = f.required_choice("kind", "fault kind", FAULT_KINDS, d).map(|(kind, _)| kind);
    let target = target_ref(f, targets, d);
    let at = match f.time_spec("at", d) {
        Some((at, span)) => {
            if let Some(w) = workload {
                if at.max > w.duration {
                    d.error(
                        span,
                        format!(
                            "`at` = {at} in {} is outside the workload's duration ({}); a fault must fall inside it",
                            f.what,
                            format_duration(w.duration)
                        ),
                    );
                }
            }
            Some(at)
        }
        None if f.get("at").is_none() => {
            d.error(
                f.span.clone(),
                format!("missing key `at` in {}; expected a time such as `2s` or a range `2s..4s`", f.what),
            );
            None
        }
        None => None,
    };
    let kind_name = kind?;
    let mode_name = f.get("mode").and_then(|v| v.get_ref().as_str());
    let applies = applicable(kind_name, mode_name);
    for key in FAULT_KEYS.iter().filter(|k| !["kind", "target", "at"].contains(k)) {
        if let (Some(value), false) = (f.get(key), applies.contains(key)) {
            let what = match (kind_name, mode_name) {
                ("corrupt", Some(mode)) if CORRUPT_MODES.contains(&mode) => {
                    format!("a `corrupt` fault in mode `{mode}`")
                }
                _ => format!("a `{kind_name}` fault"),
            };
            let keys = if applies.is_empty() { "none".to_string() } else { applies.join(", ") };
            d.error(value.span(), format!("`{key}` does not apply to {what} (its keys: {keys})"));
        }
    }
    let kind = match kind_name {
        "kill" => FaultKind::Kill { signal: signal(f, d)? },
        "pause" => {
            if f.get("duration").is_none() {
                d.error(
                    f.span.clone(),
                    format!("missing key `duration` in {}; a pause needs one, e.g. duration = \"2s\"", f.what),
                );
            }
            FaultKind::Pause { duration: f.duration("duration", d)? }
        }
        "restart" => FaultKind::Restart,
        "corrupt" => FaultKind::Corrupt(corrupt(f, d)?),
        "stale-lock" => FaultKind::StaleLock(stale_lock(f, d)?),
        _ => FaultKind::LoseUnsynced { torn: f.bool("torn", d).unwrap_or(false) },
    };
    Some(FaultPlan { kind, target: target?, at: at? })
}

fn signal(f: &Fields, d: &mut Diagnostics) -> Option<Signal> {
    let Some((text, span)) = f.str("signal", d) else {
        return Some(Signal::SIGKILL);
    };
    let upper = text.to_ascii_uppercase();
    let full = if upper.starts_with("SIG") { upper } else { format!("SIG{upper}") };
    let parsed = Signal::from_str(&full).ok();
    if parsed.is_none() {
        let names: Vec<&str> = Signal::iterator().map(|s| s.as_str()).collect();
        d.error(
            span,
            format!(
                "unknown signal `{text}` in {}{}; expected a name such as SIGKILL, SIGTERM or SIGSEGV",
                f.what,
                diagnostic::did_you_mean(&full, names)
            ),
        );
    }
    parsed
}

/// A path inside the data dir: relative, and never climbing out of it.
fn data_path(f: &Fields, key: &str, expected: &str, d: &mut Diagnostics) -> Option<String> {
    let (path, span) = f.required_str(key, expected, d)?;
    let climbs = std::path::Path::new(path).components().any(|c| {
        matches!(c, std::path::Component::ParentDir | std::path::Component::RootDir | std::path::Component::Prefix(_))
    });
    if climbs || path.is_empty() {
        d.error(span, format!("`{key}` in {} must be a path relative to the target's data dir, without `..`", f.what));
        return None;
    }
    Some(path.to_string())
}

fn offset(f: &Fields, d: &mut Diagnostics) -> Option<Offset> {
    match f.get("offset") {
        None => Some(Offset::Seeded),
        Some(v) if v.get_ref().as_str() == Some("seeded") => Some(Offset::Seeded),
        Some(_) => match f.bytes_or_fraction("offset", true, d)? {
            Size::Bytes(n) => Some(Offset::Bytes(n)),
            Size::Fraction(x) => Some(Offset::Fraction(x)),
        },
    }
}

fn corrupt(f: &Fields, d: &mut Diagnostics) -> Option<CorruptPlan> {
    let path = data_path(f, "path", "a file (or glob) relative to the target's data dir, e.g. \"wal.log\"", d);
    if let Some(p) = &path {
        if let Err(e) = glob::Pattern::new(p) {
            d.error(f.get("path").map_or(f.span.clone(), |v| v.span()), format!("`path` in {}: {e}", f.what));
        }
    }
    let when = match f.choice("when", "time of corruption", &["offline", "online"], d) {
        Some(("online", _)) => When::Online,
        _ => When::Offline,
    };
    let (mode, _) = f.required_choice("mode", "corrupt mode", CORRUPT_MODES, d)?;
    let length = |d: &mut Diagnostics| match f.get("length") {
        None => Some(4096),
        Some(_) => f.bytes("length", d).filter(|n| *n > 0).or_else(|| {
            d.error(f.get("length").unwrap().span(), format!("`length` in {} must be at least 1 byte", f.what));
            None
        }),
    };
    let mode = match mode {
        "bitflip" => {
            CorruptMode::Bitflip { bits: f.integer("bits", 1, 1 << 20, d).unwrap_or(1) as u32, offset: offset(f, d)? }
        }
        "zero" => CorruptMode::Zero { offset: offset(f, d)?, length: length(d)? },
        "random" => CorruptMode::Random { offset: offset(f, d)?, length: length(d)? },
        "truncate" => {
            if f.get("to").is_none() {
                d.error(
                    f.span.clone(),
                    format!("missing key `to` in {}; expected a length (1024, \"4KiB\") or \"50%\"", f.what),
                );
            }
            CorruptMode::Truncate { to: f.bytes_or_fraction("to", true, d)? }
        }
        "torn-tail" => CorruptMode::TornTail {
            bytes: match f.get("bytes") {
                None => None,
                Some(_) => Some(f.bytes("bytes", d)?),
            },
        },
        "delete" => CorruptMode::Delete,
        _ => CorruptMode::Swap { length: length(d)? },
    };
    Some(CorruptPlan { path: path?, mode, when })
}

fn stale_lock(f: &Fields, d: &mut Diagnostics) -> Option<StaleLockPlan> {
    let (variant, _) = f.required_choice("variant", "stale-lock variant", STALE_LOCK_VARIANTS, d)?;
    let path = data_path(f, "path", "the lock or pid file, relative to the data dir, e.g. \"LOCK\"", d);
    let lock = match f.choice("lock", "lock kind", &["flock", "fcntl"], d) {
        Some(("fcntl", _)) => LockKind::Fcntl,
        _ => LockKind::Flock,
    };
    if variant != "held" {
        if let Some(value) = f.get("lock") {
            d.error(value.span(), format!("`lock` in {} applies only to variant `held`", f.what));
        }
    }
    let variant = match variant {
        "leftover" => StaleLockVariant::Leftover,
        "held" => StaleLockVariant::Held { lock },
        _ => StaleLockVariant::PidReused,
    };
    Some(StaleLockPlan { variant, path: path?, duration: f.duration("duration", d) })
}

/// Storage faults and data-dir steps may only touch a data dir that the
/// scenario marks disposable (the harness's own per-trial ones always are).
/// `span_of(target)` places the message at the target's `data_dir`.
pub fn check_disposable(
    targets: &[TargetPlan],
    faults: &[FaultPlan],
    recover: &[RecoverStep],
    span_of: impl Fn(&str) -> std::ops::Range<usize>,
    d: &mut Diagnostics,
) {
    let touched = faults.iter().filter(|f| f.kind.is_storage()).map(|f| (f.target.as_str(), f.kind.name())).chain(
        recover.iter().filter_map(|s| match s {
            RecoverStep::Restore { target, .. } | RecoverStep::Remove { target, .. } => {
                Some((target.as_str(), s.action()))
            }
            _ => None,
        }),
    );
    let mut reported = Vec::new();
    for (name, what) in touched {
        let Some(target) = targets.iter().find(|t| t.name == name) else { continue };
        if !target.disposable && !reported.contains(&name) {
            reported.push(name);
            d.error(
                span_of(name),
                format!(
                    "[target.{name}] has data_dir = \"{}\", which is not marked disposable, and a `{what}` would \
                     damage it; add `disposable = true` to [target.{name}] if its contents may be destroyed",
                    target.data_dir.as_deref().unwrap_or_default()
                ),
            );
        }
    }
}
