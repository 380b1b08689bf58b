//! Where the `memory` and `cpu` faults set their limits. A process target
//! gets a cgroup (v1) of the fault's own, under the harness's, journaled
//! before it is made; its tree is moved into it, and the heal removes it.
//! A container target gets the engine's own limits (`docker update`), set
//! at injection and put back at the heal. Unlike a cgroup of the fault's,
//! they hold across the container's restarts until then, as a real limit
//! does. Nothing is journaled for them: the container itself is journaled
//! and removed by cleanup, limits and all. Their figures come from the
//! container's cgroups, for the incarnation the fault found; if it ended
//! during the fault, its exit in the history says whether the OOM killer
//! killed it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{FaultContext, FaultError, FaultErrorKind, FaultGuard};
use crate::engine::Limits;
use crate::history::EventKind;
use crate::journal::Entry;
use crate::targets::cgroup::{self, Controller};
use crate::targets::{reaper, HostProcess, TargetError};

/// Sets `limits` over the ones the container has; the guard puts those
/// back and says how it went. `start`, called once the engine applied the
/// limits, reads the cgroups' counters then and returns what reads them
/// again at the end: the figures of the incarnation the fault found (an
/// error: the fault changed nothing; none: the cgroups are gone, the
/// incarnation ended), read while the container still runs.
pub(super) fn limit<F>(
    ctx: &FaultContext,
    before: Limits,
    limits: Limits,
    detail: String,
    start: impl FnOnce() -> F,
) -> Result<FaultGuard, FaultError>
where
    F: FnOnce() -> Option<Result<String, String>> + Send + 'static,
{
    let process = running(ctx)?;
    ctx.target.set_engine_limits(limits).map_err(|e| ctx.error(e.into()))?;
    let figures = start();
    ctx.injected(detail);
    let seen = Arc::new(Mutex::new(None));
    let (target, recorder, fault) = (ctx.target.clone(), ctx.recorder.clone(), ctx.index);
    let look = {
        let (target, seen) = (target.clone(), Arc::clone(&seen));
        move || {
            let same =
                target.host_process().is_some_and(|p| p.pid == process.pid && p.start_time == process.start_time);
            *seen.lock().unwrap() = Some(if same { figures() } else { None });
        }
    };
    let guard = ctx.heal_with(move || {
        let restored = match put_back(|| target.set_engine_limits(before), RETRY) {
            Ok(()) => "the engine's limits put back".to_string(),
            // The end of the trial removed the container, limits and all.
            Err(e) if is_gone(&e) => format!("the container is gone, its limits with it ({e})"),
            Err(e) => format!("the engine's limits stay: {e}"),
        };
        match seen.lock().unwrap().take().flatten() {
            Some(Ok(figures)) => format!("{figures}; {restored}"),
            Some(Err(error)) => {
                let shown = target.name().to_string();
                recorder.record(EventKind::FaultFailed { fault, target: shown, error: error.clone() });
                format!("{error}; {restored}")
            }
            None => format!(
                "the incarnation it limited (pid {}) ended during the fault: its exit says whether the OOM killer \
                 killed it; {restored}",
                process.pid
            ),
        }
    });
    Ok(guard.looking_first(look))
}

/// Puts the limits back. The engine refuses an update in the moment
/// between a container's death and its record of it ("cannot update a
/// stopped container", while it still reads as running), and while it
/// restarts: tries again every `retry` for up to 20 times it, unless the
/// container is gone.
fn put_back(set: impl Fn() -> Result<(), TargetError>, retry: Duration) -> Result<(), TargetError> {
    let mut result = set();
    for _ in 0..20 {
        match &result {
            Err(e) if !is_gone(e) => std::thread::sleep(retry),
            _ => break,
        }
        result = set();
    }
    result
}

const RETRY: Duration = Duration::from_millis(100);

/// The container was removed: the harness holds no id for it, or the
/// engine no longer knows it.
fn is_gone(e: &TargetError) -> bool {
    match e {
        TargetError::NotRunning { .. } => true,
        TargetError::Io { source, .. } => source.kind() == std::io::ErrorKind::NotFound,
        _ => false,
    }
}

pub(super) fn running(ctx: &FaultContext) -> Result<HostProcess, FaultError> {
    ctx.target.host_process().ok_or_else(|| ctx.error(FaultErrorKind::Other("the target is not running".into())))
}

pub(super) fn cgroup_of(
    ctx: &FaultContext,
    process: HostProcess,
    controller: Controller,
) -> Result<std::path::PathBuf, FaultError> {
    cgroup::of_process(&process.pid.to_string(), controller)
        .map_err(|source| ctx.error(FaultErrorKind::Io { what: "cannot find the container's cgroup".into(), source }))
}

/// A cgroup of `controller` of the fault's own for a running process
/// target, journaled before it is made: the target's process and the path.
pub(super) fn fault_cgroup(
    ctx: &FaultContext,
    controller: Controller,
) -> Result<(HostProcess, std::path::PathBuf), FaultError> {
    let io = |what: String, source| ctx.error(FaultErrorKind::Io { what, source });
    let process = running(ctx)?;
    let parent =
        cgroup::own(controller).map_err(|e| io(format!("no {controller} cgroup to limit the target in"), e))?;
    let token = reaper::run_token().unwrap_or_default();
    let path = parent.join(cgroup::name(&token, ctx.trial, ctx.index));
    ctx.journal(&Entry::Cgroup { trial: ctx.trial, fault: ctx.index, path: path.clone() })?;
    cgroup::create(&path).map_err(|e| io(format!("cannot make the cgroup {}", path.display()), e))?;
    Ok((process, path))
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    fn io(kind: std::io::ErrorKind) -> TargetError {
        TargetError::Io { target: "kv".into(), source: std::io::Error::new(kind, "engine") }
    }

    /// Docker's "cannot update a stopped container" in the moment after
    /// an OOM kill passes: the limits are put back once it has.
    #[test]
    fn a_refused_update_is_tried_again_until_it_passes() {
        let tries = Cell::new(0);
        let set = || {
            tries.set(tries.get() + 1);
            if tries.get() < 4 {
                Err(io(std::io::ErrorKind::Other))
            } else {
                Ok(())
            }
        };
        assert!(put_back(set, Duration::ZERO).is_ok());
        assert_eq!(tries.get(), 4);
    }

    #[test]
    fn a_removed_container_is_not_tried_again() {
        for gone in [io(std::io::ErrorKind::NotFound), TargetError::NotRunning { target: "kv".into() }] {
            let tries = Cell::new(0);
            let error = Cell::new(Some(gone));
            let set = || {
                tries.set(tries.get() + 1);
                Err(error.take().unwrap_or_else(|| io(std::io::ErrorKind::Other)))
            };
            assert!(put_back(set, Duration::ZERO).is_err_and(|e| is_gone(&e)));
            assert_eq!(tries.get(), 1);
        }
    }
}
