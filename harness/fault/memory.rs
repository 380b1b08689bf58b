//! The `memory` fault: the target's processes moved into a memory cgroup of
//! their own with a limit, which the OOM killer enforces (see
//! [`crate::targets::cgroup`]). The heal lifts it and says how many processes the
//! OOM killer killed, so that an outage it caused is told as an OOM kill.
//! It holds the incarnation it found: one the harness restarts after an
//! OOM kill runs outside it. A container target gets the engine's own limit
//! instead (see [`super::limits`]).

use super::limits;
use super::{Fault, FaultContext, FaultError, FaultErrorKind, FaultGuard};
use crate::engine::Limits;
use crate::history::EventKind;
use crate::scenario::SizeLimit;
use crate::targets::cgroup::{self, Controller};
use crate::targets::TargetError;

pub struct MemoryFault(pub SizeLimit);

impl Fault for MemoryFault {
    fn inject(&self, ctx: &FaultContext) -> Result<FaultGuard, FaultError> {
        match ctx.target.engine_limits() {
            Ok(before) => limit_container(ctx, before, self.0),
            Err(TargetError::Unsupported { .. }) => self.limit_process(ctx),
            Err(e) => Err(ctx.error(e.into())),
        }
    }
}

impl MemoryFault {
    /// A process target: its tree moved into a cgroup of the fault's own.
    fn limit_process(&self, ctx: &FaultContext) -> Result<FaultGuard, FaultError> {
        let other = |why: String| ctx.error(FaultErrorKind::Other(why));
        let io = |what: &str, source| ctx.error(FaultErrorKind::Io { what: what.to_string(), source });
        let (process, path) = limits::fault_cgroup(ctx, Controller::Memory)?;
        let charges_move = cgroup::move_charges(&path);
        // The main process's tree only: an orphan reparented to the harness
        // carries the run's token whichever target started it.
        let pids = cgroup::adopt_tree(&path, process.pid, process.start_time);
        let (moved, resident) = (pids.len(), pids.iter().map(|&(pid, _)| cgroup::resident(pid)).sum::<u64>());
        // What the target uses now: its charges, moved with it; or, where
        // the kernel moves none, its resident memory, while the cgroup
        // counts only what it allocates from now on.
        let limit_once = || {
            cgroup::usage(&path).and_then(|charged| {
                let used = if charges_move { charged } else { resident };
                let allowed = match self.0 {
                    SizeLimit::Total(bytes) => bytes.checked_sub(used).ok_or_else(|| {
                        std::io::Error::other(format!("the target uses {used} bytes already, more than {bytes}"))
                    })?,
                    SizeLimit::Headroom(room) => room,
                };
                cgroup::set_limit(&path, charged + allowed).map(|()| (used, used + allowed))
            })
        };
        // The kernel refuses (EBUSY) a limit below what the cgroup holds and
        // cannot reclaim: the target grew between reading its usage and the
        // write. The usage is read again, a few times, before that is an
        // error (a CI run's trial went unknown on the first refusal).
        let mut limited = limit_once();
        for _ in 0..5 {
            match &limited {
                Err(e) if e.raw_os_error() == Some(nix::libc::EBUSY) => limited = limit_once(),
                _ => break,
            }
        }
        let (used, limit) = match (moved, limited) {
            (0, _) => Err(other("no process of the target could be moved into the cgroup".into())),
            (_, Err(e)) => Err(io("cannot set the memory limit", e)),
            (_, Ok(figures)) => Ok(figures),
        }
        .inspect_err(|_| {
            let _ = cgroup::remove(&path);
        })?;
        ctx.injected(format!(
            "memory limited to {limit} bytes (the target used {used}) for pid {} and its tree, {moved} process(es) in \
             {}",
            process.pid,
            path.display()
        ));
        let (recorder, fault, target) = (ctx.recorder.clone(), ctx.index, ctx.target.name().to_string());
        let (charged, limit) = (cgroup::usage(&path).unwrap_or(0), cgroup::limit(&path).unwrap_or(u64::MAX));
        let _ = cgroup::reset_peak(&path);
        let before = cgroup::MemoryCounters::read(&path).unwrap_or_default();
        Ok(ctx.heal_with(move || {
            let now = cgroup::MemoryCounters::read(&path).unwrap_or_default();
            let removed = cgroup::remove(&path).err().map_or(String::new(), |e| format!("; the cgroup stays: {e}"));
            let pressed = now.pressed(&before, charged, limit);
            let kills = now.oom_kills.saturating_sub(before.oom_kills);
            pressure_detail(kills, pressed, &removed).unwrap_or_else(|error| {
                recorder.record(EventKind::FaultFailed { fault, target, error: error.clone() });
                error
            })
        }))
    }
}

/// A memory limit (memory and swap alike) on a container.
fn limit_container(ctx: &FaultContext, before: Limits, size: SizeLimit) -> Result<FaultGuard, FaultError> {
    let process = limits::running(ctx)?;
    let path = limits::cgroup_of(ctx, process, Controller::Memory)?;
    let used = cgroup::usage(&path).map_err(|source| {
        ctx.error(FaultErrorKind::Io { what: "cannot read the container's memory use".into(), source })
    })?;
    let bytes = match size {
        SizeLimit::Total(bytes) => bytes,
        SizeLimit::Headroom(room) => used + room,
    };
    let limits = Limits { memory: bytes as i64, memory_swap: bytes as i64, ..before };
    let detail = format!(
        "memory limited by the engine to {bytes} bytes, swap included (the container used {used}); it holds across \
         the container's restarts until the heal"
    );
    limits::limit(ctx, before, limits, detail, move || {
        let _ = cgroup::reset_peak(&path);
        let counters = cgroup::MemoryCounters::read(&path).unwrap_or_default();
        move || {
            let now = cgroup::MemoryCounters::read(&path)?;
            let kills = now.oom_kills.saturating_sub(counters.oom_kills);
            Some(pressure_detail(kills, now.pressed(&counters, used, bytes), ""))
        }
    })
}

/// What the heal says: how many processes the OOM killer killed, or that the
/// limit pressed without a kill; an error if it never pressed (a limit the
/// target never reached proves nothing).
fn pressure_detail(kills: u64, pressed: bool, tail: &str) -> Result<String, String> {
    match (kills, pressed) {
        (0, false) => Err(format!("the fault changed nothing: the target never reached its memory limit{tail}")),
        (0, true) => Ok(format!("no process was OOM-killed; the target used memory up to its limit{tail}")),
        (n, _) => Ok(format!("the OOM killer killed {n} process(es) of the target{tail}")),
    }
}
