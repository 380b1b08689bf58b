//! `[abort]` at run time. While a trial's timeline runs, a watch looks at
//! each target's probe and runs the scenario's check command; when one of
//! them says stop, it records why and cancels the trial, so that every
//! fault heals at once (their waits end on cancel) and the run ends
//! `aborted`. Lost acknowledged writes are only known once a trial has read
//! back: they are counted between trials.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::env::TrialEnv;
use super::Trial;
use crate::cancel::Cancel;
use crate::duration::format_duration;
use crate::history::{EventKind, Recorder};
use crate::probe::Health;
use crate::reports::TrialReport;
use crate::scenario::{AbortPlan, Plan};
use crate::targets::reaper;

/// How often the watch looks at the probes.
const TICK: Duration = Duration::from_millis(20);

pub(super) struct Watch {
    stop: Arc<AtomicBool>,
    fired: Arc<Mutex<Option<String>>>,
    thread: JoinHandle<()>,
}

/// What the watch's thread looks at and acts on.
struct Watched {
    plan: AbortPlan,
    healths: Vec<(String, Arc<Health>)>,
    /// The check command, placeholders filled, and where it runs.
    command: Option<(Vec<String>, std::path::PathBuf)>,
    cancel: Cancel,
    recorder: Recorder,
}

impl Watch {
    /// Starts watching a trial whose targets are up; `None` when nothing
    /// is to be watched while it runs.
    pub fn start(trial: &Trial, env: &TrialEnv) -> Option<Watch> {
        let plan = trial.plan.abort.clone().filter(|a| a.unhealthy_for.is_some() || a.command.is_some())?;
        let names = trial.plan.targets.iter().map(|t| t.name.clone());
        let healths = names.zip(env.samplers.iter().map(|s| Arc::clone(&s.health))).collect();
        // Any target fills `{host.NAME}`, `{port.NAME}`... alike.
        let dir = super::env::scenario_dir(&trial.plan.source_path);
        let command = plan.command.as_ref().map(|argv| (env.targets[0].render(argv), dir));
        let watched =
            Watched { plan, healths, command, cancel: trial.cancel.clone(), recorder: trial.recorder.clone() };
        let (stop, fired) = (Arc::new(AtomicBool::new(false)), Arc::new(Mutex::new(None)));
        let (stop_flag, fired_slot) = (Arc::clone(&stop), Arc::clone(&fired));
        let thread = thread::spawn(move || {
            if let Some(reason) = watched.watch(&stop_flag) {
                watched.recorder.record(EventKind::Aborted { reason: reason.clone() });
                eprintln!("crashlab: aborting: {reason}");
                *fired_slot.lock().unwrap() = Some(reason);
                watched.cancel.cancel();
            }
        });
        Some(Watch { stop, fired, thread })
    }

    /// Stops watching; why the trial was aborted, if it was.
    pub fn finish(self) -> Option<String> {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
        self.fired.lock().unwrap().take()
    }
}

impl Watched {
    /// Looks until stopped; the reason to abort, if one comes.
    fn watch(&self, stop: &AtomicBool) -> Option<String> {
        let mut next_check = Instant::now() + self.plan.interval;
        while !stop.load(Ordering::Relaxed) && !self.cancel.is_cancelled() {
            if let Some(reason) = self.unhealthy_too_long() {
                return Some(reason);
            }
            if self.command.is_some() && Instant::now() >= next_check {
                if let Some(reason) = self.check_fails() {
                    return Some(reason);
                }
                next_check = Instant::now() + self.plan.interval;
            }
            thread::sleep(TICK);
        }
        None
    }

    fn unhealthy_too_long(&self) -> Option<String> {
        let limit = self.plan.unhealthy_for?;
        self.healths.iter().find_map(|(name, health)| {
            let since = health.unhealthy_since()?;
            (since.elapsed() > limit).then(|| {
                let why = health.last_failure().unwrap_or_default();
                format!("target `{name}` unhealthy for more than {} ({why})", format_duration(limit))
            })
        })
    }

    /// Runs the check command once: why it failed, if it did.
    fn check_fails(&self) -> Option<String> {
        let (argv, dir) = self.command.as_ref()?;
        let shown = argv.join(" ");
        let timeout = self.plan.interval.max(Duration::from_secs(5));
        let mut command = crate::workload::command::scenario_command(argv, dir);
        match reaper::run(&mut command, timeout) {
            Err(e) => Some(format!("the abort check `{shown}` could not run: {e}")),
            Ok(out) => match out.exit {
                Some(exit) if exit.success() => None,
                Some(exit) => Some(format!("the abort check `{shown}` failed ({exit}): {}", out.stderr.trim())),
                None => Some(format!("the abort check `{shown}` did not exit within {}", format_duration(timeout))),
            },
        }
    }
}

/// Whether the trials so far lost more acknowledged writes than `[abort]`
/// allows: the reason to stop the run, if so.
pub(super) fn too_much_lost(plan: &Plan, trials: &[TrialReport]) -> Option<String> {
    let bound = plan.abort.as_ref()?.lost_acked?;
    let lost: u64 = trials.iter().filter_map(|t| t.rpo.lost_acked).sum();
    (lost > bound).then(|| {
        format!(
            "{lost} acknowledged write(s) lost over {} trial(s), more than [abort] lost_acked = {bound}",
            trials.len()
        )
    })
}
