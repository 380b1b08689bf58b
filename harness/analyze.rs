//! `crashlab analyze`: the checkers run again on a stored run, from its
//! scenario and history alone, and every report rewritten.

use std::path::Path;

use crate::check;
use crate::history;
use crate::reports::RunReport;
use crate::run_dir::{HISTORY_FILE, REPORT_FILE, SCENARIO_FILE};
use crate::scenario::{self, LoadError};

#[derive(Debug, thiserror::Error)]
pub enum AnalyzeError {
    #[error("{0}")]
    Scenario(#[from] LoadError),
    #[error("cannot read the history of {dir}: {source}")]
    History { dir: String, source: std::io::Error },
    #[error("cannot write the report: {0}")]
    Write(std::io::Error),
}

/// Checks the stored history of `run_dir` again and rewrites its reports.
/// The seed, the error that stopped the run and run-level warnings come
/// from the stored report.json, when there is one.
pub fn analyze(run_dir: &Path) -> Result<RunReport, AnalyzeError> {
    let plan = scenario::load_stored(&run_dir.join(SCENARIO_FILE))?;
    let old: Option<RunReport> =
        std::fs::read_to_string(run_dir.join(REPORT_FILE)).ok().and_then(|text| RunReport::from_json(&text).ok());
    let trials = history::load_trials(&run_dir.join(HISTORY_FILE))
        .map_err(|source| AnalyzeError::History { dir: run_dir.display().to_string(), source })?;
    // A shard's history holds only its own trials.
    let reports = trials
        .iter()
        .enumerate()
        .filter(|(_, trial)| !trial.events.is_empty())
        .map(|(i, trial)| check::check_trial(&plan, i as u32, trial))
        .collect();
    let seed = old.as_ref().map_or(0, |r| r.seed);
    let aborted = old.as_ref().is_some_and(|r| r.verdict == crate::reports::Verdict::Aborted);
    let (error, warnings, shard, merged_from) =
        old.map_or((None, Vec::new(), None, Vec::new()), |r| (r.error, r.warnings, r.shard, r.merged_from));
    let mut report = check::build_report(&plan, seed, reports, error);
    (report.shard, report.merged_from) = (shard, merged_from);
    // An `[abort]` stopped the run: that stays its verdict.
    if aborted {
        report.verdict = crate::reports::Verdict::Aborted;
    }
    report.warnings = warnings;
    crate::runner::write_reports(run_dir, &report).map_err(AnalyzeError::Write)?;
    Ok(report)
}
