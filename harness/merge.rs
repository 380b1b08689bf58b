//! `crashlab merge`: the run directories of a sharded run (`--shard K/N`)
//! put together into one run directory, as if the run had not been
//! sharded: every trial as its shard judged it, the history of all of
//! them, and the distributions and expectations over all trials. The
//! shards must be of one run: the same scenario text, seed, trial count
//! and shard count, each shard once, none missing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::check;
use crate::history::{self, Event};
use crate::journal::{Entry, Journal};
use crate::reports::{RunReport, TrialReport, Verdict};
use crate::run_dir::{self, HISTORY_FILE, REPORT_FILE, RUNS_DIR, SCENARIO_FILE};
use crate::scenario::{self, LoadError};

#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error("{dir}: {why}")]
    Read { dir: PathBuf, why: String },
    #[error("{dir}: not a shard of a run (its report has no shard; it was run without --shard K/N)")]
    NotAShard { dir: PathBuf },
    #[error("{dir} is not of the same run as {first}: {what}")]
    Mismatch { dir: PathBuf, first: PathBuf, what: String },
    #[error("shard {index}/{count} is given twice: {a} and {b}")]
    Twice { index: u32, count: u32, a: PathBuf, b: PathBuf },
    #[error("shard(s) {missing} of {count} missing: the merge would not be the whole run")]
    Missing { missing: String, count: u32 },
    #[error("{0}")]
    Scenario(#[from] LoadError),
    #[error("{0}")]
    RunDir(#[from] run_dir::RunDirError),
    #[error("cannot write {what}: {source}")]
    Write { what: String, source: std::io::Error },
}

/// One shard's run directory, read.
struct ShardRun {
    dir: PathBuf,
    report: RunReport,
    scenario: String,
    history: Vec<Vec<Event>>,
    /// `wall_ms_per_trial` of its bench.json, for a bench's shard.
    bench_wall_ms_per_trial: Option<f64>,
}

/// The merged run: its directory and report, and, when every shard was a
/// bench, the wall time the shards took together.
pub struct Merged {
    pub run_dir: PathBuf,
    pub report: RunReport,
    pub bench_wall: Option<std::time::Duration>,
}

/// Merges the shards in `dirs` into `out` (by default a new run directory
/// under `crashlab-runs/`).
pub fn merge(dirs: &[PathBuf], out: Option<&Path>, replace: bool) -> Result<Merged, MergeError> {
    let shards = dirs.iter().map(|d| read(d)).collect::<Result<Vec<_>, _>>()?;
    same_run(&shards)?;
    let first = &shards[0];
    let plan = scenario::load_stored(&first.dir.join(SCENARIO_FILE))?;

    let (run_dir, _lock) = match out {
        Some(dir) => run_dir::claim_out_dir(dir, replace)?,
        None => run_dir::claim_new_run_dir(Path::new(RUNS_DIR), &plan.name)?,
    };
    let write = |what: &Path| {
        let what = what.display().to_string();
        move |source| MergeError::Write { what, source }
    };
    let journal = Journal::create(&run_dir).map_err(write(&run_dir))?;
    std::fs::write(run_dir.join(SCENARIO_FILE), &first.scenario).map_err(write(&run_dir.join(SCENARIO_FILE)))?;

    let mut trials: Vec<TrialReport> = shards.iter().flat_map(|s| s.report.trials.iter().cloned()).collect();
    trials.sort_by_key(|t| t.index);
    let mut events: BTreeMap<u32, &Vec<Event>> = BTreeMap::new();
    for shard in &shards {
        for trial in shard.history.iter().filter(|e| !e.is_empty()) {
            events.insert(trial[0].trial, trial);
        }
    }
    let history_path = run_dir.join(HISTORY_FILE);
    for trial in events.values() {
        history::append(&history_path, trial).map_err(write(&history_path))?;
    }

    // A shard cut short leaves the whole run cut short.
    let errors: Vec<String> =
        shards.iter().filter_map(|s| Some(format!("{}: {}", s.report.shard?, s.report.error.as_ref()?))).collect();
    let mut report =
        check::build_report(&plan, first.report.seed, trials, (!errors.is_empty()).then(|| errors.join("; ")));
    if shards.iter().any(|s| s.report.verdict == Verdict::Aborted) {
        report.verdict = Verdict::Aborted;
    }
    // Each warning once, in the order the shards gave them.
    let mut warnings: Vec<String> = Vec::new();
    for warning in shards.iter().flat_map(|s| &s.report.warnings) {
        if !warnings.contains(warning) {
            warnings.push(warning.clone());
        }
    }
    report.warnings = warnings;
    report.merged_from =
        shards.iter().map(|s| s.dir.canonicalize().unwrap_or_else(|_| s.dir.clone()).display().to_string()).collect();
    crate::runner::write_reports(&run_dir, &report).map_err(write(&run_dir))?;
    journal.append(&Entry::Finished).map_err(write(&run_dir))?;

    let bench_wall = shards
        .iter()
        .map(|s| s.bench_wall_ms_per_trial.map(|ms| ms * s.report.trials.len() as f64))
        .sum::<Option<f64>>()
        .map(|ms| std::time::Duration::from_secs_f64(ms / 1000.0));
    Ok(Merged { run_dir, report, bench_wall })
}

fn read(dir: &Path) -> Result<ShardRun, MergeError> {
    let fail = |why: String| MergeError::Read { dir: dir.to_path_buf(), why };
    let text = |file: &str| {
        std::fs::read_to_string(dir.join(file))
            .map_err(|e| fail(format!("cannot read {file}: {e} (not a run directory?)")))
    };
    let report = RunReport::from_json(&text(REPORT_FILE)?).map_err(|e| fail(format!("not a crashlab report: {e}")))?;
    if report.shard.is_none() {
        return Err(MergeError::NotAShard { dir: dir.to_path_buf() });
    }
    let scenario = text(SCENARIO_FILE)?;
    // A shard stopped before its first trial has no history.
    let history = match history::load(&dir.join(HISTORY_FILE)) {
        Ok(history) => history,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && report.trials.is_empty() => Vec::new(),
        Err(e) => return Err(fail(format!("cannot read {HISTORY_FILE}: {e}"))),
    };
    let bench_wall_ms_per_trial = std::fs::read_to_string(dir.join("bench.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v["wall_ms_per_trial"].as_f64());
    Ok(ShardRun { dir: dir.to_path_buf(), report, scenario, history, bench_wall_ms_per_trial })
}

/// The shards are of one run, each once, and all of it.
fn same_run(shards: &[ShardRun]) -> Result<(), MergeError> {
    let first = &shards[0];
    let whole = first.report.shard.expect("read() keeps shards only");
    let mut seen: BTreeMap<u32, &Path> = BTreeMap::new();
    for s in shards {
        let shard = s.report.shard.expect("read() keeps shards only");
        let differs =
            |what: &str, this: String, that: String| (this != that).then(|| format!("{what} {this}, not {that}"));
        let mismatch = differs("scenario", s.report.scenario.clone(), first.report.scenario.clone())
            .or_else(|| (s.scenario != first.scenario).then(|| format!("its {SCENARIO_FILE} differs")))
            .or_else(|| differs("seed", s.report.seed.to_string(), first.report.seed.to_string()))
            .or_else(|| differs("shards", shard.count.to_string(), whole.count.to_string()))
            .or_else(|| differs("trials", shard.of_trials.to_string(), whole.of_trials.to_string()));
        if let Some(what) = mismatch {
            return Err(MergeError::Mismatch { dir: s.dir.clone(), first: first.dir.clone(), what });
        }
        if let Some(other) = seen.insert(shard.index, &s.dir) {
            return Err(MergeError::Twice {
                index: shard.index,
                count: shard.count,
                a: other.to_path_buf(),
                b: s.dir.clone(),
            });
        }
    }
    let missing: Vec<String> = (1..=whole.count).filter(|k| !seen.contains_key(k)).map(|k| k.to_string()).collect();
    if !missing.is_empty() {
        return Err(MergeError::Missing { missing: missing.join(", "), count: whole.count });
    }
    Ok(())
}
