//! The runner: runs a plan's trials. Targets, probes, workload and faults
//! all report into one [`history::Recorder`] per trial; the checkers then
//! judge the history alone.

mod abort;
mod containers;
mod env;
#[cfg(test)]
mod fake;
mod pods;
mod recover;
mod timeline;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use rand::SeedableRng;

use crate::cancel::Cancel;
use crate::check;
pub use crate::drill::Operator;
use crate::history::{self, EventKind, Recorder};
use crate::journal::{Entry, Journal};
use crate::network::Network;
use crate::reports::{RunReport, Shard, TrialReport};
use crate::run_dir;
pub use crate::run_dir::new_run_dir;
pub use crate::run_dir::{HISTORY_FILE, REPORT_FILE, RUNS_DIR, SCENARIO_FILE, SPOOL_FILE};
use crate::scenario::{FaultKind, NetworkPlan, Plan};
use crate::targets::remote::Hosts;
use containers::Containers;
use env::TrialEnv;
use pods::Pods;

#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Overrides `[trials] count`.
    pub trials: Option<u32>,
    /// Overrides `[trials] seed`; without either, a random seed (printed).
    pub seed: Option<u64>,
    /// The run directory; by default a new one under `crashlab-runs/`.
    pub out: Option<PathBuf>,
    /// Who confirms manual steps of a recovery procedure.
    pub operator: Operator,
    /// Replace the finished run in a non-empty `out`.
    pub replace: bool,
    /// Run only shard K of N (`--shard K/N`): (K, N), K from 1.
    pub shard: Option<(u32, u32)>,
}

impl RunOptions {
    /// The seed and trials this run has, and the shard it runs: refused
    /// before anything starts when the shards could not add up to the
    /// whole run (no seed they share, more shards than trials).
    fn seed_and_shard(&self, plan: &Plan) -> Result<(u64, u32, Option<Shard>), RunError> {
        let seed = self.seed.or(plan.trials.seed);
        let count = self.trials.unwrap_or(plan.trials.count);
        let Some((index, shards)) = self.shard else {
            return Ok((seed.unwrap_or_else(|| rand::random::<u64>() & JSON_SAFE), count, None));
        };
        let refuse = |why: String| Err(RunError::Shard(format!("--shard {index}/{shards}: {why}")));
        if index == 0 || index > shards {
            return refuse(format!("K must be from 1 to {shards}"));
        }
        if shards > count {
            return refuse(format!("{count} trial(s) cannot fill {shards} shards; use at most {count}"));
        }
        let Some(seed) = seed else {
            return refuse(
                "the shards of a run must share its seed, or they do not add up to it: pass --seed S (the same to \
                 every shard), or set [trials] seed"
                    .into(),
            );
        };
        Ok((seed, count, Some(Shard { index, count: shards, of_trials: count })))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    #[error("{0}")]
    RunDir(#[from] run_dir::RunDirError),
    /// A shard that cannot be part of the whole run (usage).
    #[error("{0}")]
    Shard(String),
}

/// Why a trial could not run to its end.
#[derive(Debug, Clone)]
pub enum TrialStop {
    Interrupted,
    /// An `[abort]` condition fired, for this reason (exit code 5).
    Aborted(String),
    /// The environment failed: a target would not start or become healthy.
    Environment(EnvError),
}

/// What the environment could not give a run or a trial (exit code 3).
#[derive(Debug, Clone, thiserror::Error)]
pub enum EnvError {
    #[error("{0}")]
    Network(String),
    /// A program a fault needs.
    #[error("{0}")]
    Missing(String),
    /// The container engine, or a target's image.
    #[error("{0}")]
    Containers(String),
    #[error("cannot allocate a port for target `{target}`: {reason}")]
    Port { target: String, reason: String },
    #[error("cannot start proxy `{proxy}`: {reason}")]
    Proxy { proxy: String, reason: String },
    #[error("{0}")]
    Compose(String),
    /// A remote host: unreachable, refused, or its agent.
    #[error("{0}")]
    Host(String),
    /// A Kubernetes cluster: unreachable, forbidden, or no pod selected.
    #[error("{0}")]
    Cluster(String),
    /// A target's backend, data dir, storage layer or first start.
    #[error("{0}")]
    Target(String),
    #[error(
        "target `{target}`: port {port} is already in use on 127.0.0.1 ({reason}): its probe would measure \
         whatever holds it, not the target; stop that process, or let crashlab allocate the port (`{{port}}`)"
    )]
    PortInUse { target: String, port: u16, reason: String },
    #[error(
        "target `{target}` exited during start-up ({incarnations} incarnations before it was healthy); its last \
         output:\n  {logs}"
    )]
    CrashedAtStart { target: String, incarnations: u32, logs: String },
    #[error("target `{target}` did not become healthy within {timeout:?}: {probe}; its last output:\n  {logs}")]
    NeverHealthy { target: String, timeout: std::time::Duration, probe: String, logs: String },
}

/// A finished (or stopped) run.
pub struct RunOutcome {
    pub run_dir: PathBuf,
    pub report: RunReport,
    pub stop: Option<TrialStop>,
}

/// Writes `report.json` and every other format (JUnit, Markdown summary,
/// Prometheus metrics) into the run directory.
pub fn write_reports(run_dir: &Path, report: &RunReport) -> std::io::Result<()> {
    std::fs::write(run_dir.join(REPORT_FILE), report.to_json())?;
    for (file, render) in crate::reports::WRITERS {
        std::fs::write(run_dir.join(file), render(report))?;
    }
    Ok(())
}

/// Seeds stay below 2^53 so that every JSON reader keeps them exact.
const JSON_SAFE: u64 = (1 << 53) - 1;

/// The seed of trial `index`: distinct per trial, the same for the same run seed.
pub fn trial_seed(seed: u64, index: u32) -> u64 {
    // splitmix64 of the pair, so neighbouring seeds give unrelated schedules.
    let mut z = seed ^ (u64::from(index)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)) & JSON_SAFE
}

/// Runs every trial, writes `history.jsonl` and `report.json`, and returns
/// the report. `on_trial` is told about each trial as it ends.
pub fn run(
    plan: &Plan,
    source: &str,
    options: &RunOptions,
    interrupt: &Cancel,
    mut on_trial: impl FnMut(&TrialReport, u32),
) -> Result<RunOutcome, RunError> {
    let io = |what: String| move |source| RunError::Io { what, source };
    let (seed, count, shard) = options.seed_and_shard(plan)?;
    let (run_dir, _lock) = match &options.out {
        Some(dir) => run_dir::claim_out_dir(dir, options.replace)?,
        None => run_dir::claim_new_run_dir(Path::new(RUNS_DIR), &plan.name)?,
    };
    std::fs::write(run_dir.join(SCENARIO_FILE), source)
        .map_err(io(format!("cannot write into {}", run_dir.display())))?;
    let history_path = run_dir.join(HISTORY_FILE);
    let _ = std::fs::remove_file(&history_path);
    let journal = Arc::new(Journal::create(&run_dir).map_err(io("cannot create the fault journal".into()))?);

    if let Err(e) = programs_present(plan) {
        return Ok(stopped_before_any_trial(plan, seed, run_dir, &journal, e));
    }
    let indices: Vec<u32> = match &shard {
        Some(shard) => shard.trials().collect(),
        None => (0..count).collect(),
    };
    // A namespaces network lives for the whole run; its partitions come and
    // go with the faults.
    let network = match plan.network {
        NetworkPlan::Host | NetworkPlan::RemoteHosts => None,
        NetworkPlan::Namespaces => {
            let names: Vec<&str> = plan.targets.iter().map(|t| t.name.as_str()).collect();
            let needs_netem = plan.faults.iter().any(|f| matches!(&f.kind, FaultKind::Packet(p) if p.netem.is_some()));
            // A kernel without netem refuses such a fault before any trial.
            let created =
                Network::create(&names, &journal)
                    .and_then(|n| if needs_netem { n.has_netem().map(|()| n) } else { Ok(n) });
            match created {
                Ok(n) => Some(Arc::new(n)),
                Err(e) => {
                    return Ok(stopped_before_any_trial(
                        plan,
                        seed,
                        run_dir,
                        &journal,
                        EnvError::Network(e.to_string()),
                    ))
                }
            }
        }
    };
    let mut warnings = Vec::new();
    let containers = match Containers::prepare(plan, &run_dir, &journal, &mut warnings) {
        Ok(c) => c,
        Err(e) => return Ok(stopped_before_any_trial(plan, seed, run_dir, &journal, EnvError::Containers(e))),
    };
    let pods = match Pods::prepare(plan) {
        Ok(p) => p,
        Err(e) => return Ok(stopped_before_any_trial(plan, seed, run_dir, &journal, EnvError::Cluster(e))),
    };
    let hosts = match Hosts::start(plan, &run_dir, &journal) {
        Ok(h) => h,
        Err(e) => return Ok(stopped_before_any_trial(plan, seed, run_dir, &journal, EnvError::Host(e.to_string()))),
    };
    let mut trials = Vec::new();
    let mut stop = None;
    for index in indices {
        if interrupt.is_cancelled() {
            stop = Some(TrialStop::Interrupted);
            break;
        }
        let shared = RunShared {
            run_dir: &run_dir,
            journal: &journal,
            network: network.as_ref(),
            containers: containers.as_ref(),
            hosts: hosts.as_ref(),
            pods: pods.as_ref(),
            source,
            cancel: interrupt,
            operator: options.operator,
        };
        let (history, trial_stop) = run_trial(plan, index, trial_seed(seed, index), shared)
            .map_err(io(format!("cannot write {}", history_path.display())))?;
        let report = check::check_trial(plan, index, &history);
        on_trial(&report, count);
        trials.push(report);
        if trial_stop.is_some() {
            stop = trial_stop;
            break;
        }
        if let Some(reason) = abort::too_much_lost(plan, &trials) {
            stop = Some(TrialStop::Aborted(reason));
            break;
        }
    }
    if let Some(network) = &network {
        network.destroy();
    }
    let _ = journal.append(&Entry::Finished);
    let error = stop.as_ref().map(|s| match s {
        TrialStop::Interrupted => "interrupted".to_string(),
        TrialStop::Aborted(reason) => format!("aborted: {reason}"),
        TrialStop::Environment(e) => e.to_string(),
    });
    let mut report = check::build_report(plan, seed, trials, error);
    if let Some(TrialStop::Aborted(_)) = &stop {
        report.verdict = crate::reports::Verdict::Aborted;
    }
    report.warnings = warnings;
    report.shard = shard;
    write_reports(&run_dir, &report).map_err(io(format!("cannot write the reports into {}", run_dir.display())))?;
    Ok(RunOutcome { run_dir, report, stop })
}

/// The programs the plan's faults run here (a hog's stress-ng, beside a
/// target of this machine; a host's agent looks for its own), found
/// before any trial: missing, the run stops with an environment error.
fn programs_present(plan: &Plan) -> Result<(), EnvError> {
    let here = plan.targets.iter().filter(|t| t.host.is_none());
    if here.into_iter().any(|t| plan.faults.iter().any(|f| f.may_hog(&t.name))) {
        let program = crate::fault::hog::STRESS_NG;
        crate::scenario::workload::find_program(program, Path::new("."))
            .map_err(|e| EnvError::Missing(format!("a `hog` fault runs {program} (Debian package stress-ng): {e}")))?;
    }
    Ok(())
}

/// A run whose environment failed before its first trial: its report says
/// why, and the journal that the run is over.
fn stopped_before_any_trial(plan: &Plan, seed: u64, run_dir: PathBuf, journal: &Journal, e: EnvError) -> RunOutcome {
    let report = check::build_report(plan, seed, Vec::new(), Some(e.to_string()));
    let _ = journal.append(&Entry::Finished);
    let _ = std::fs::write(run_dir.join(REPORT_FILE), report.to_json());
    RunOutcome { run_dir, report, stop: Some(TrialStop::Environment(e)) }
}

/// What every trial of a run shares.
#[derive(Clone, Copy)]
struct RunShared<'a> {
    pub run_dir: &'a Path,
    pub journal: &'a Arc<Journal>,
    pub network: Option<&'a Arc<Network>>,
    pub containers: Option<&'a Containers>,
    /// The agents of the run's remote hosts.
    pub hosts: Option<&'a Hosts>,
    /// The clusters of the run's pod targets.
    pub pods: Option<&'a Pods>,
    /// The scenario's text, which agents compile as this node did.
    pub source: &'a str,
    pub cancel: &'a Cancel,
    pub operator: Operator,
}

/// One trial: its plan, seed, directory, recorder and cancellation, and
/// what it shares with the run.
struct Trial<'a> {
    pub plan: &'a Plan,
    pub index: u32,
    pub seed: u64,
    pub dir: PathBuf,
    pub recorder: Recorder,
    /// Cancelled when the run is interrupted.
    pub cancel: Cancel,
    pub run: RunShared<'a>,
}

/// One trial, start to teardown: its events, written to the history as
/// they happen, and, if it could not run to its end, why.
fn run_trial(
    plan: &Plan,
    index: u32,
    seed: u64,
    run: RunShared,
) -> std::io::Result<(history::TrialHistory, Option<TrialStop>)> {
    let dir = run.run_dir.join(format!("trial-{index:03}"));
    let recorder = Recorder::spooled(index, run.run_dir.join(SPOOL_FILE), run.run_dir.join(HISTORY_FILE))?;
    let cancel = run.cancel.child();
    let trial = Trial { plan, index, seed, dir, recorder, cancel, run };
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let schedule = timeline::Schedule {
        faults: plan.faults.iter().map(|f| f.at.sample(&mut rng)).collect(),
        backups: plan.backups.iter().map(|b| b.at.sample(&mut rng)).collect(),
        // Drawn after the times, so that a seed keeps its times whether or
        // not the scenario has menus.
        drawn: plan
            .faults
            .iter()
            .map(|f| {
                let mut pick = |n: usize| rand::Rng::random_range(&mut rng, 0..n);
                f.menu.as_ref().map(|m| (pick(m.kinds.len()), pick(m.targets.len())))
            })
            .collect(),
    };
    let scheduled_ms = schedule.faults.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    trial.recorder.record(EventKind::TrialStarted { seed, scheduled_ms });

    let mut env = TrialEnv::default();
    let mut stop = env.set_up(&trial).and_then(|()| env.await_start_up(&trial)).err();
    let origin = Instant::now();
    trial.recorder.set_origin(origin);
    if stop.is_none() {
        let watch = abort::Watch::start(&trial, &env);
        timeline::run(&trial, &env, &schedule, origin);
        if let Some(reason) = watch.and_then(abort::Watch::finish) {
            stop = Some(TrialStop::Aborted(reason));
        } else if trial.cancel.is_cancelled() {
            stop = Some(TrialStop::Interrupted);
        } else if let Some(gone) = trial.run.hosts.and_then(Hosts::gone) {
            // What the trial saw of that host's targets, faults and
            // events is incomplete: it proves nothing either way.
            stop = Some(TrialStop::Environment(EnvError::Host(format!("{gone}: the trial's figures are incomplete"))));
        }
    }
    env.tear_down(&trial);
    trial.recorder.record(EventKind::TrialEnded {
        interrupted: matches!(stop, Some(TrialStop::Interrupted)),
        error: match &stop {
            Some(TrialStop::Environment(e)) => Some(e.to_string()),
            Some(TrialStop::Aborted(reason)) => Some(format!("aborted: {reason}")),
            _ => None,
        },
    });
    Ok((trial.recorder.finish(origin)?, stop))
}
