//! The `cpu` fault: the target's processes moved into a cpu cgroup of their
//! own whose CFS quota lets them run `cpus` CPUs' worth of time per 100 ms
//! period (see [`crate::targets::cgroup`]); the rest of each period they
//! wait, as on an overcommitted host. The heal lifts it and says how often
//! the target was throttled and how much CPU it used, a figure to hold
//! against the quota; a target never throttled did not feel the fault,
//! which makes the trial unknown. Like the memory fault, it holds the
//! incarnation it found. A container target gets the engine's own quota
//! instead (see [`super::limits`]).

use std::time::{Duration, Instant};

use super::limits;
use super::{Fault, FaultContext, FaultError, FaultErrorKind, FaultGuard};
use crate::engine::Limits;
use crate::history::EventKind;
use crate::targets::cgroup::{self, Controller};
use crate::targets::{procfs, TargetError};

pub struct CpuFault(pub f64);

impl Fault for CpuFault {
    fn inject(&self, ctx: &FaultContext) -> Result<FaultGuard, FaultError> {
        match ctx.target.engine_limits() {
            Ok(before) => limit_container(ctx, before, self.0),
            Err(TargetError::Unsupported { .. }) => self.limit_process(ctx),
            Err(e) => Err(ctx.error(e.into())),
        }
    }
}

impl CpuFault {
    /// A process target: its tree moved into a cgroup of the fault's own.
    fn limit_process(&self, ctx: &FaultContext) -> Result<FaultGuard, FaultError> {
        let other = |why: String| ctx.error(FaultErrorKind::Other(why));
        let io = |what: &str, source| ctx.error(FaultErrorKind::Io { what: what.to_string(), source });
        let (process, path) = limits::fault_cgroup(ctx, Controller::Cpu)?;
        let undo = |e: FaultError| {
            let _ = cgroup::remove(&path);
            e
        };
        let quota = cgroup::set_cpu_quota(&path, self.0).map_err(|e| undo(io("cannot set the CPU quota", e)))?;
        let processes = cgroup::adopt_tree(&path, process.pid, process.start_time);
        if processes.is_empty() {
            return Err(undo(other("no process of the target could be moved into the cgroup".into())));
        }
        let (used_before, since) = (procfs::cpu_time(&processes), Instant::now());
        ctx.injected(format!(
            "CPU limited to {} CPUs ({quota} µs per {} µs period) for pid {} and its tree, {} process(es) in {}",
            self.0,
            cgroup::CPU_PERIOD_US,
            process.pid,
            processes.len(),
            path.display()
        ));
        let (recorder, fault, target) = (ctx.recorder.clone(), ctx.index, ctx.target.name().to_string());
        Ok(ctx.heal_with(move || {
            let throttling = cgroup::throttling(&path).unwrap_or_default();
            let used = procfs::cpu_time(&processes).saturating_sub(used_before);
            let elapsed = since.elapsed();
            let removed = cgroup::remove(&path).err().map_or(String::new(), |e| format!("; the cgroup stays: {e}"));
            if throttling.throttled == 0 {
                // A quota the target never reached proves nothing.
                let error = format!(
                    "the fault changed nothing: the target never used its quota (throttled in none of {} periods)",
                    throttling.periods
                );
                recorder.record(EventKind::FaultFailed { fault, target, error });
            }
            let figures = figures(throttling.throttled, throttling.periods, throttling.throttled_for, used, elapsed);
            format!("{figures}{removed}")
        }))
    }
}

/// What a heal says of a quota: how often it throttled the target, and how
/// much CPU the target used over how long (to hold against the quota).
pub(super) fn figures(throttled: u64, periods: u64, waited: Duration, used: Duration, elapsed: Duration) -> String {
    format!(
        "throttled in {throttled} of {periods} periods, {:.0} ms of waiting summed over the CPUs; the target used \
         {:.0} ms of CPU in {:.0} ms ({:.2} CPUs)",
        waited.as_secs_f64() * 1e3,
        used.as_secs_f64() * 1e3,
        elapsed.as_secs_f64() * 1e3,
        used.as_secs_f64() / elapsed.as_secs_f64().max(1e-9),
    )
}

/// A CPU quota on a container.
fn limit_container(ctx: &FaultContext, before: Limits, cpus: f64) -> Result<FaultGuard, FaultError> {
    let process = limits::running(ctx)?;
    let (cpu, acct) =
        (limits::cgroup_of(ctx, process, Controller::Cpu)?, limits::cgroup_of(ctx, process, Controller::Cpuacct)?);
    let period = cgroup::CPU_PERIOD_US as i64;
    let quota = ((cpus * period as f64).round() as i64).max(1000);
    let limits = Limits { cpu_period: period, cpu_quota: quota, ..before };
    let detail = format!(
        "CPU limited by the engine to {cpus} CPUs ({quota} µs per {period} µs period); it holds across the \
         container's restarts until the heal"
    );
    limits::limit(ctx, before, limits, detail, move || {
        let (used_before, since) = (cgroup::cpu_used(&acct).unwrap_or_default(), Instant::now());
        let throttled_before = cgroup::throttling(&cpu).unwrap_or_default();
        move || {
            let now = cgroup::throttling(&cpu)?;
            let periods = now.periods.saturating_sub(throttled_before.periods);
            let throttled = now.throttled.saturating_sub(throttled_before.throttled);
            let used = cgroup::cpu_used(&acct).unwrap_or_default().saturating_sub(used_before);
            let elapsed = since.elapsed();
            if throttled == 0 {
                return Some(Err(format!(
                    "the fault changed nothing: the container never used its quota (throttled in none of {periods} \
                     periods)"
                )));
            }
            let waited = now.throttled_for.saturating_sub(throttled_before.throttled_for);
            Some(Ok(figures(throttled, periods, waited, used, elapsed)))
        }
    })
}
