//! The keys of an `io` fault: which operations of the data dir it acts on
//! (`path`, `ops`), what it does to them (`errno`, `delay` + `jitter`,
//! `disk_full`), and how often (`every`, `probability`).

use std::time::Duration;

use super::diagnostic::{did_you_mean, Diagnostics};
use super::fields::{parse_bytes, Fields};
use super::plan::{IoAction, IoOp, IoPlan, IoTrigger, SizeLimit};

pub fn io_plan(f: &Fields, d: &mut Diagnostics) -> Option<IoPlan> {
    // Every key is checked, so that every mistake is reported at once.
    let path = match f.get("path") {
        Some(value) => f.data_path("path", "a glob relative to the data dir", d).and_then(|path| {
            glob::Pattern::new(&path)
                .map_err(|e| d.error(value.span(), format!("`path` in {}: not a glob: {e}", f.what)))
                .ok()
                .map(|_| path)
        }),
        None => Some("**".to_string()),
    };
    let ops = ops(f, d);
    let action = action(f, d);
    let trigger = action.and_then(|action| trigger(f, action, d));
    let duration = match f.get("duration") {
        Some(_) => f.positive_duration("duration", "the fault would heal as soon as it is in", d).map(Some),
        None => Some(None),
    };
    Some(IoPlan { path: path?, ops: ops?, action: action?, trigger: trigger?, duration: duration? })
}

fn ops(f: &Fields, d: &mut Diagnostics) -> Option<Vec<IoOp>> {
    if f.get("ops").is_none() {
        return Some(Vec::new());
    }
    let (names, span) = f.str_array("ops", d)?;
    let mut ops = Vec::new();
    for name in names {
        match name.parse::<IoOp>() {
            Ok(op) if !ops.contains(&op) => ops.push(op),
            Ok(_) => {}
            Err(_) => {
                d.error(
                    span.clone(),
                    format!(
                        "unknown operation `{name}` in `ops` of {}{}; expected some of: {}",
                        f.what,
                        did_you_mean(&name, IoOp::NAMES.iter().copied()),
                        IoOp::NAMES.join(", ")
                    ),
                );
                return None;
            }
        }
    }
    if ops.is_empty() {
        d.error(span, format!("`ops` in {} is empty; leave it out to act on every operation", f.what));
        return None;
    }
    Some(ops)
}

/// Exactly one of `errno`, `delay`, `disk_full`.
fn action(f: &Fields, d: &mut Diagnostics) -> Option<IoAction> {
    let given: Vec<&str> = ["errno", "delay", "disk_full"].into_iter().filter(|k| f.get(k).is_some()).collect();
    match given.as_slice() {
        ["errno"] => {
            let (name, span) = f.str("errno", d)?;
            match errno_named(name) {
                Some(errno) => Some(IoAction::Errno(errno)),
                None => {
                    let names = errno_names();
                    d.error(
                        span,
                        format!(
                            "unknown errno `{name}` in {}{}; expected a name such as EIO, ENOSPC, EDQUOT, EROFS, \
                             EACCES",
                            f.what,
                            did_you_mean(&name.to_uppercase(), names.iter().map(String::as_str)),
                        ),
                    );
                    None
                }
            }
        }
        ["delay"] => Some(IoAction::Delay {
            delay: f.duration("delay", d)?,
            jitter: f.duration("jitter", d).unwrap_or(Duration::ZERO),
        }),
        ["disk_full"] => Some(IoAction::DiskFull(size_limit(f, "disk_full", "the data dir", d)?)),
        [] => {
            d.error(
                f.span.clone(),
                format!(
                    "an `io` fault in {} needs what it does: errno = \"EIO\", delay = \"50ms\" or disk_full = \
                     \"64MiB\" (or \"+0\": no growth past the data dir's size when it is injected)",
                    f.what
                ),
            );
            None
        }
        both => {
            let value = f.get(both[1]).expect("present");
            d.error(value.span(), format!("`{}` and `{}` in {}: an `io` fault does one", both[0], both[1], f.what));
            None
        }
    }
}

/// `"64MiB"` in all, or `"+1MiB"` past the size at injection (`what`
/// names what is limited: "the data dir", "the target's memory").
pub fn size_limit(f: &Fields, key: &str, what: &str, d: &mut Diagnostics) -> Option<SizeLimit> {
    let value = f.get(key)?;
    let text = value.get_ref().as_str();
    let parsed = match text.map(str::trim) {
        Some(t) => match t.strip_prefix('+') {
            Some(rest) => parse_bytes(rest).map(SizeLimit::Headroom),
            None => parse_bytes(t).map(SizeLimit::Total),
        },
        None => f.bytes(key, d).map(SizeLimit::Total),
    };
    if parsed.is_none() && text.is_some() {
        d.error(
            value.span(),
            format!(
                "`{key}` in {}: cannot read `{}`; expected the size {what} may reach (\"64MiB\") or how much it may \
                 still grow (\"+1MiB\", \"+0\")",
                f.what,
                text.unwrap_or_default()
            ),
        );
    }
    parsed
}

fn trigger(f: &Fields, action: IoAction, d: &mut Diagnostics) -> Option<IoTrigger> {
    let every = f.get("every").is_some();
    let probability = f.get("probability");
    if let (IoAction::DiskFull(_), true) = (action, every || probability.is_some()) {
        let key = if every { "every" } else { "probability" };
        d.error(
            f.get(key).expect("present").span(),
            format!("`{key}` does not apply to a disk-full `io` fault in {}: a full disk refuses all growth", f.what),
        );
        return None;
    }
    match (every, probability) {
        (true, Some(p)) => {
            d.error(p.span(), format!("`every` and `probability` in {}: an `io` fault takes one", f.what));
            None
        }
        (true, None) => Some(IoTrigger::Every(f.integer("every", 1, i64::MAX, d)? as u64)),
        (false, Some(value)) => {
            let number = value.get_ref().as_float().and_then(|x| x.as_str().parse::<f64>().ok());
            match number {
                Some(p) if p > 0.0 && p <= 1.0 => Some(IoTrigger::Probability(p)),
                _ => {
                    d.error(
                        value.span(),
                        format!("`probability` in {} must be a number above 0 and at most 1, e.g. 0.3", f.what),
                    );
                    None
                }
            }
        }
        (false, None) => Some(IoTrigger::Always),
    }
}

/// The errno of this system named `name` (`EIO`), as the C library spells it.
pub fn errno_named(name: &str) -> Option<i32> {
    (1..200).find(|n| errno_name(*n).is_some_and(|known| known == name))
}

/// `EIO` for 5; `None` for a number that is no errno here.
pub fn errno_name(errno: i32) -> Option<String> {
    let name = format!("{:?}", nix::errno::Errno::from_raw(errno));
    name.starts_with('E').then_some(name)
}

fn errno_names() -> Vec<String> {
    (1..200).filter_map(errno_name).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_names_are_the_c_library_s() {
        assert_eq!(errno_named("EIO"), Some(nix::libc::EIO));
        assert_eq!(errno_named("ENOSPC"), Some(nix::libc::ENOSPC));
        assert_eq!(errno_named("EDQUOT"), Some(nix::libc::EDQUOT));
        assert_eq!(errno_name(nix::libc::EROFS).as_deref(), Some("EROFS"));
        assert_eq!(errno_named("EIOO"), None);
        assert_eq!(errno_named("UnknownErrno"), None);
    }
}
