//! The resource-pressure faults of a scenario: `memory` (a limit the OOM
//! killer enforces), `cpu` (a CFS quota) and `hog` (a noisy neighbour,
//! stress-ng, beside the target).

use super::diagnostic::Diagnostics;
use super::fields::Fields;
use super::plan::{FaultKind, HogPlan};

/// The most CPU workers or I/O workers a hog starts: more only queue.
const MAX_WORKERS: i64 = 256;

/// How long a fault lasts, when it names a `duration`; `why` says what a
/// zero would mean.
fn lasting(f: &Fields, why: &str, d: &mut Diagnostics) -> Option<Option<std::time::Duration>> {
    match f.get("duration") {
        Some(_) => Some(Some(f.positive_duration("duration", why, d)?)),
        None => Some(None),
    }
}

/// `limit = "64MiB"` or `"+0"`, and when it is lifted.
pub(super) fn memory(f: &Fields, d: &mut Diagnostics) -> Option<FaultKind> {
    if f.get("limit").is_none() {
        d.error(
            f.span.clone(),
            format!("missing key `limit` in {}; e.g. limit = \"64MiB\", or \"+0\": no more than now", f.what),
        );
    }
    let limit = super::io::size_limit(f, "limit", "the target's memory", d);
    let duration = lasting(f, "the limit would be lifted at once", d);
    Some(FaultKind::Memory { limit: limit?, duration: duration? })
}

/// `cpus = 0.2`: the CPU time the target may use, in CPUs.
pub(super) fn cpu(f: &Fields, d: &mut Diagnostics) -> Option<FaultKind> {
    if f.get("cpus").is_none() {
        d.error(
            f.span.clone(),
            format!("missing key `cpus` in {}; e.g. cpus = 0.2: a fifth of one CPU's time", f.what),
        );
        return None;
    }
    let expected = "a number of CPUs from 0.01 to 1024 (0.2: a fifth of one CPU's time, 2: two CPUs)";
    let cpus = f.number("cpus", 0.01..=1024.0, expected, d);
    let duration = lasting(f, "the quota would be lifted at once", d);
    Some(FaultKind::Cpu { cpus: cpus?, duration: duration? })
}

/// `cpu = N` workers spinning, `memory = "1GiB"` kept touched, `io = N`
/// workers writing and syncing; at least one of them.
pub(super) fn hog(f: &Fields, d: &mut Diagnostics) -> Option<FaultKind> {
    if ["cpu", "memory", "io"].iter().all(|k| f.get(k).is_none()) {
        d.error(
            f.span.clone(),
            format!(
                "a `hog` in {} needs something to hog: cpu = 2 (workers spinning), memory = \"1GiB\" (kept \
                 touched), io = 1 (workers writing and syncing)",
                f.what
            ),
        );
        return None;
    }
    let workers = |key: &str, d: &mut Diagnostics| match f.get(key) {
        Some(_) => f.integer(key, 1, MAX_WORKERS, d).map(|n| n as u32),
        None => Some(0),
    };
    let cpu = workers("cpu", d);
    let io = workers("io", d);
    let memory = match f.get("memory") {
        Some(_) => f.bytes("memory", d),
        None => Some(0),
    };
    let duration = lasting(f, "the hog would stop at once", d);
    Some(FaultKind::Hog(HogPlan { cpu: cpu?, memory: memory?, io: io?, duration: duration? }))
}
