//! The `hog` fault: a noisy neighbour on the target's machine, stress-ng
//! (Debian's package) with CPU workers spinning, memory kept touched and
//! I/O workers writing and syncing, until the heal stops it. It carries the
//! run's token and is journaled as a process the fault started, so cleanup
//! stops it after a killed harness; with a duration it also stops itself a
//! little after it. Its own metrics (bogo operations per stressor) go in
//! the heal detail: a hog that did no work, or died before the heal, did
//! not press on the target, and the trial is unknown.

use std::process::{Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use super::{Fault, FaultContext, FaultError, FaultErrorKind, FaultGuard};
use crate::history::EventKind;
use crate::journal::Entry;
use crate::scenario::HogPlan;
use crate::targets::{procfs, reaper, stopping};

/// The program the fault runs.
pub const STRESS_NG: &str = "stress-ng";

/// How much each I/O worker writes before it starts over.
const IO_BYTES: &str = "64M";

/// How long after its duration a hog stops by itself, should the harness
/// die before it heals.
const SELF_STOP_MARGIN: Duration = Duration::from_secs(10);

pub struct Hog(pub HogPlan);

impl Hog {
    fn args(&self, work_dir: &std::path::Path) -> Vec<String> {
        let plan = &self.0;
        let mut args = Vec::new();
        if plan.cpu > 0 {
            args.extend(["--cpu".into(), plan.cpu.to_string()]);
        }
        if plan.memory > 0 {
            args.extend(["--vm".into(), "1".into(), "--vm-bytes".into(), plan.memory.to_string(), "--vm-keep".into()]);
        }
        if plan.io > 0 {
            args.extend(["--hdd".into(), plan.io.to_string(), "--hdd-bytes".into(), IO_BYTES.into()]);
        }
        args.extend(["--temp-path".into(), work_dir.display().to_string(), "--metrics-brief".into()]);
        if let Some(duration) = plan.duration {
            args.extend(["--timeout".into(), format!("{}s", (duration + SELF_STOP_MARGIN).as_secs())]);
        }
        args
    }

    fn describe(&self) -> String {
        let plan = &self.0;
        let mut parts = Vec::new();
        if plan.cpu > 0 {
            parts.push(format!("{} CPU worker(s) spinning", plan.cpu));
        }
        if plan.memory > 0 {
            parts.push(format!("{} kept touched", bytes(plan.memory)));
        }
        if plan.io > 0 {
            parts.push(format!("{} I/O worker(s) writing and syncing", plan.io));
        }
        parts.join(", ")
    }
}

impl Fault for Hog {
    fn inject(&self, ctx: &FaultContext) -> Result<FaultGuard, FaultError> {
        let other = |why: String| ctx.error(FaultErrorKind::Other(why));
        let work_dir = ctx.trial_dir.join(format!("hog-f{}", ctx.index + 1));
        std::fs::create_dir_all(&work_dir).map_err(|e| {
            ctx.error(FaultErrorKind::Io { what: format!("cannot make {}", work_dir.display()), source: e })
        })?;
        let log_path = work_dir.join("stress-ng.log");
        let log = std::fs::File::create(&log_path).map_err(|e| {
            ctx.error(FaultErrorKind::Io { what: format!("cannot make {}", log_path.display()), source: e })
        })?;
        let mut command = Command::new(STRESS_NG);
        command.args(self.args(&work_dir)).stdin(Stdio::null()).stdout(
            log.try_clone()
                .map_err(|e| ctx.error(FaultErrorKind::Io { what: "cannot share the hog's log".into(), source: e }))?,
        );
        command.stderr(log);
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        // It carries the run's token from its first instruction: cleanup
        // finds it by that before the journal names it.
        let (child, exited) = reaper::spawn(&mut command)
            .map_err(|e| other(format!("cannot start {STRESS_NG} (Debian package stress-ng): {e}")))?;
        let pgid = child.id() as i32;
        let start_time = procfs::stat(pgid).map_or(0, |s| s.start_time);
        ctx.journal(&Entry::HolderStarted { trial: ctx.trial, fault: ctx.index, pid: pgid, start_time })?;
        let since = Instant::now();
        ctx.injected(format!("{STRESS_NG} beside the target (pid {pgid}): {}", self.describe()));
        let (recorder, fault, target) = (ctx.recorder.clone(), ctx.index, ctx.target.name().to_string());
        Ok(ctx.heal_with(move || {
            let early = exited.try_recv().ok();
            let ran = since.elapsed();
            if early.is_none() {
                stop(pgid, start_time, &exited);
            }
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            let work = bogo_ops(&log);
            let failure = match early {
                Some(exit) => Some(format!("{STRESS_NG} ended before the heal ({exit}): {}", last_lines(&log))),
                None if work.iter().all(|(_, ops)| *ops == 0) => {
                    Some(format!("the fault changed nothing: {STRESS_NG} did no work: {}", last_lines(&log)))
                }
                None => None,
            };
            if let Some(error) = failure {
                recorder.record(EventKind::FaultFailed { fault, target, error });
            }
            let work: Vec<String> = work.iter().map(|(stressor, ops)| format!("{stressor} {ops}")).collect();
            format!("{STRESS_NG} ran {:.1} s; bogo ops: {}", ran.as_secs_f64(), work.join(", "))
        }))
    }
}

/// SIGTERM to stress-ng itself, which stops its workers and prints its
/// metrics; then the group, should anything be left.
fn stop(pgid: i32, start_time: u64, exited: &Receiver<reaper::Exit>) {
    if procfs::is_same_live_process(pgid, start_time) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pgid), nix::sys::signal::Signal::SIGTERM);
    }
    let _ = exited.recv_timeout(Duration::from_secs(5));
    stopping::stop_groups(&[(pgid, start_time)], Duration::from_secs(1));
}

/// The bogo operations per stressor in stress-ng's `--metrics-brief` lines
/// (`stress-ng: metrc: [pid] cpu  1556  2.01 ...`).
fn bogo_ops(log: &str) -> Vec<(String, u64)> {
    log.lines()
        .filter_map(|line| {
            let rest = line.split_once("] ")?.1;
            let mut fields = rest.split_whitespace();
            let stressor = fields.next()?;
            let ops = fields.next()?.parse::<u64>().ok()?;
            // The miscellaneous metrics carry a rate, not a count, second.
            fields.next()?.parse::<f64>().ok()?;
            line.contains("metrc:").then(|| (stressor.to_string(), ops))
        })
        .collect()
}

fn bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 20 && n % (1 << 20) == 0 => format!("{} MiB", n >> 20),
        n => format!("{n} bytes"),
    }
}

fn last_lines(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(3)..].join(" / ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_metrics_give_each_stressors_bogo_ops() {
        let log = "stress-ng: info:  [6909] dispatching hogs: 1 cpu, 1 vm, 1 hdd
stress-ng: metrc: [6909] stressor       bogo ops real time  usr time  sys time   bogo ops/s     bogo ops/s
stress-ng: metrc: [6909]                           (secs)    (secs)    (secs)   (real time) (usr+sys time)
stress-ng: metrc: [6909] cpu                1556      2.01      1.38      0.01       774.87        1123.35
stress-ng: metrc: [6909] vm                76177      2.01      1.22      0.15     37879.55       55705.79
stress-ng: metrc: [6909] miscellaneous metrics:
stress-ng: metrc: [6909] hdd                 3852.06 MB/sec read rate (geometic mean of 1 instances)
stress-ng: info:  [6909] successful run completed in 2.03s";
        assert_eq!(bogo_ops(log), [("cpu".to_string(), 1556), ("vm".to_string(), 76177)]);
    }

    #[test]
    fn a_hog_with_a_duration_stops_itself_after_it() {
        let plan = HogPlan { cpu: 2, memory: 1 << 20, io: 0, duration: Some(Duration::from_secs(3)) };
        let args = Hog(plan).args(std::path::Path::new("/run/x")).join(" ");
        assert_eq!(
            args,
            "--cpu 2 --vm 1 --vm-bytes 1048576 --vm-keep --temp-path /run/x --metrics-brief --timeout 13s"
        );
    }
}
