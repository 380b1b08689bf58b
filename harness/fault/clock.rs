//! The `clock` fault: the target's wall clock jumps by an offset, or runs
//! at a rate, until healed (see [`crate::targets::faketime`] for how, and
//! what it cannot reach). The target was started with libfaketime reading
//! its control file; the fault rewrites the file, the heal puts the real
//! time back.

use std::time::{Duration, Instant};

use super::{Fault, FaultContext, FaultError, FaultErrorKind, FaultGuard};
use crate::history::EventKind;
use crate::scenario::ClockPlan;
use crate::targets::{faketime, procfs, HostProcess};

pub struct ClockFault(pub ClockPlan);

impl Fault for ClockFault {
    fn inject(&self, ctx: &FaultContext) -> Result<FaultGuard, FaultError> {
        let target = ctx.target.name().to_string();
        let file = faketime::control_file(&ctx.trial_dir, &target);
        if !file.exists() {
            let why = format!("`{target}` was not started with libfaketime");
            return Err(ctx.error(FaultErrorKind::Other(why)));
        }
        // A program that is statically linked, or uses another libc, runs
        // without the library: the fault would change nothing.
        let process = ctx.target.host_process();
        if let Some(p) = process.filter(|p| !faketime::loaded_in(p.pid)) {
            let why = format!(
                "the fault changed nothing: libfaketime is not loaded in `{target}` (pid {}): a statically linked \
                 program, or one of another libc, cannot have it preloaded",
                p.pid
            );
            return Err(ctx.error(FaultErrorKind::Other(why)));
        }
        // libfaketime scales the time since it started in the process:
        // from the fault on is that minus what the rate would add to its
        // age so far.
        let age = process.and_then(|p| age(ctx, &target, p));
        let catch_up = match (self.0.rate, age) {
            (Some(rate), Some(age)) => -((rate - 1.0) * age.as_secs_f64() * 1000.0) as i64,
            _ => 0,
        };
        let spec = faketime::spec(self.0.offset_ms + catch_up, self.0.rate);
        let io = |what: &str, source| ctx.error(FaultErrorKind::Io { what: what.to_string(), source });
        faketime::set(&file, &spec).map_err(|e| io("cannot set the clock", e))?;
        ctx.injected(format!(
            "{target}'s clocks now read real time {spec} (libfaketime: what it asks of libc; not statically \
             linked code, not raw clock syscalls)"
        ));
        let recorder = ctx.recorder.clone();
        // `x1` said, not left out: libfaketime keeps the last rate it read.
        Ok(ctx.heal_with(move || match faketime::set(&file, &faketime::spec(0, Some(1.0))) {
            Ok(()) => String::new(),
            Err(e) => {
                recorder.warn(format!("cannot put {target}'s clock back: {e}"));
                format!("the clock could not be put back: {e}")
            }
        }))
    }
}

/// How long ago `process` started: from its start as recorded (dated at
/// the spawn, or by the engine for a container: libfaketime starts in it
/// a millisecond or so later), else from its start time in /proc, which
/// counts clock ticks (10 ms: a drift at twice the speed would begin with
/// a step of up to 10 ms).
fn age(ctx: &FaultContext, target: &str, process: HostProcess) -> Option<Duration> {
    let now = Instant::now();
    let this_start = |kind: &EventKind| {
        matches!(kind, EventKind::TargetStarted { target: t, incarnation, .. }
            if t == target && *incarnation == process.incarnation)
    };
    match ctx.recorder.last_at(now, this_start) {
        Some(started) => Some(now - started),
        None => procfs::age(process.start_time),
    }
}
