//! Checkers: from a plan and a trial's history alone, verdicts and metrics.
//! Fail beats unknown beats pass; what cannot be decided is unknown, never
//! pass. Because they read only the history, `crashlab analyze` can run them
//! again on a stored run.

pub mod rpo;
pub mod rto;

use std::collections::BTreeMap;
use std::time::Duration;

use crate::history::{Event, EventKind, Outcome, TrialHistory};
use crate::kinds::StepName;
use crate::reports::{
    Availability, CheckReport, ExpectationReport, OpCounts, RunReport, Stats, StepReport, Summary, TrialReport,
    Verdict, FORMAT_VERSION,
};
use crate::scenario::expect::Metric;
use crate::scenario::Plan;

/// The value of a metric in a trial (`None`: not measured, or never recovered).
fn observe(metric: Metric, t: &TrialReport) -> Option<f64> {
    match metric {
        Metric::Rto => t.rto_ms,
        Metric::Ttd => t.ttd_ms,
        Metric::LostAcked => t.rpo.lost_acked.map(|v| v as f64),
        Metric::Window => t.rpo.window_ms,
        Metric::UnknownWrites => Some(t.rpo.unknown_writes as f64),
        Metric::Phantom => t.rpo.phantom.map(|v| v as f64),
        Metric::Corrupted => t.rpo.corrupted.map(|v| v as f64),
        Metric::ErrorsDuringFault => t.errors_during_fault,
        Metric::Availability => (t.ops.invoked > 0).then(|| t.ops.ok as f64 * 100.0 / t.ops.invoked as f64),
    }
}

/// Whether a metric can be judged at all in this trial.
fn measurable(metric: Metric, t: &TrialReport) -> bool {
    match metric {
        Metric::Rto | Metric::Ttd => !t.faults.is_empty(),
        Metric::UnknownWrites => true,
        // No write sent during an outage: nothing to judge, not a pass.
        Metric::ErrorsDuringFault => t.errors_during_fault.is_some(),
        // No write sent: nothing was available or not.
        Metric::Availability => t.ops.invoked > 0,
        Metric::LostAcked | Metric::Window | Metric::Phantom | Metric::Corrupted => t.rpo.read_back,
    }
}

/// Checks one trial from its history.
pub fn check_trial(plan: &Plan, index: u32, history: &TrialHistory) -> TrialReport {
    let mut trial = measure(plan, index, history);
    if plan.expectations.iter().any(|e| e.metric == Metric::ErrorsDuringFault) {
        trial.errors_during_fault = errors_during_fault(&trial, history);
    }
    let events = &history.events[..];
    let ended = events.iter().find_map(|e| match &e.kind {
        EventKind::TrialEnded { interrupted, error } => Some((*interrupted, error.clone())),
        _ => None,
    });
    let mut checks = vec![];
    checks.extend(completion_check(&ended));
    checks.extend(failure_checks(events));
    checks.extend(procedure_checks(plan, &trial));
    checks.extend(recovery_checks(&trial, events));
    if plan.workload.is_some() {
        checks.extend(workload_checks(&trial, events));
    }
    checks.extend(expectation_checks(plan, &trial));
    trial.verdict = Verdict::all(checks.iter().map(|c| c.verdict));
    // A trial cut short says nothing either way: a fault that had no time
    // to heal is not a failure of the service.
    if !matches!(ended, Some((false, None))) {
        trial.verdict = Verdict::Unknown;
    }
    trial.checks = checks;
    if trial.verdict != Verdict::Pass {
        for e in events {
            if let EventKind::TargetLog { target, lines } = &e.kind {
                trial.target_logs.insert(target.clone(), lines.clone());
            }
        }
    }
    trial
}

/// What a trial measured: faults with their RTOs, RPO, ops, availability,
/// the recovery procedure's steps and each target's incarnations.
fn measure(plan: &Plan, index: u32, history: &TrialHistory) -> TrialReport {
    let events = &history.events[..];
    let healthy_after = |name: &str| plan.target(name).map_or(1, |t| t.probe.healthy_after);
    let is_setup = |i: usize| plan.faults.get(i).is_some_and(|f| f.setup);
    let faults = rto::fault_reports(events, healthy_after, is_setup);
    let worst = |values: Vec<Option<f64>>| -> Option<f64> {
        values.into_iter().try_fold(None, |acc: Option<f64>, v| v.map(|v| Some(acc.map_or(v, |a| a.max(v)))))?
    };
    // The trial's RTO and TTD are those of its disruptive faults.
    let disruptive = || faults.iter().filter(|f| !f.setup);
    let rto_ms = worst(disruptive().map(|f| f.rto_ms).collect());
    let ttd_ms = disruptive().filter_map(|f| f.ttd_ms).reduce(f64::max);
    let mut ops = OpCounts { invoked: history.ops.len() as u64, ..OpCounts::default() };
    for op in &history.ops {
        match op.completed {
            Some((Outcome::Ok, _)) => ops.ok += 1,
            Some((Outcome::Fail, _)) => ops.fail += 1,
            Some((Outcome::Unknown, _)) => ops.unknown += 1,
            None => {}
        }
    }
    let mut seed = 0;
    let mut incarnations = BTreeMap::new();
    let mut reached = BTreeMap::new();
    for e in events {
        match &e.kind {
            EventKind::TrialStarted { seed: s, .. } => seed = *s,
            EventKind::TargetStarted { target, .. } => *incarnations.entry(target.clone()).or_default() += 1,
            EventKind::TargetReached { target, at, reach } => {
                let path = match reach {
                    crate::kinds::Reach::Address => "its own address",
                    crate::kinds::Reach::Published => "its published port",
                };
                reached.insert(target.clone(), format!("{at} ({path})"));
            }
            _ => {}
        }
    }
    let mut recovery = recovery_steps(events, rto_ms);
    for s in &mut recovery {
        s.budget_ms = plan.recover.get(s.step - 1).and_then(|p| p.budget).map(|b| b.as_secs_f64() * 1000.0);
    }
    TrialReport {
        index,
        seed,
        verdict: Verdict::Pass,
        faults,
        rto_ms,
        ttd_ms,
        rpo: rpo::rpo(history),
        ops,
        checks: Vec::new(),
        availability: availability(history),
        recovery,
        target_logs: BTreeMap::new(),
        incarnations,
        reached,
        warnings: events
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::Warning { message } => Some(message.clone()),
                _ => None,
            })
            .collect(),
        errors_during_fault: None,
    }
}

/// Of the writes sent while a disruptive fault's outage lasted (from its
/// injection to its recovery, or to the end if it never recovered), the
/// percentage not acknowledged; `None` when none was sent then.
fn errors_during_fault(trial: &TrialReport, history: &TrialHistory) -> Option<f64> {
    let outages: Vec<(f64, f64)> = trial
        .faults
        .iter()
        .filter(|f| !f.setup)
        .map(|f| (f.injected_at_ms, f.rto_ms.map_or(f64::INFINITY, |rto| f.injected_at_ms + rto)))
        .collect();
    let during = |t: f64| outages.iter().any(|(from, to)| (*from..=*to).contains(&t));
    let sent = history.ops.iter().filter(|op| during(op.invoked_ms));
    let (sent, failed) = sent.fold((0, 0), |(sent, failed), op| {
        (sent + 1, failed + usize::from(!matches!(op.completed, Some((Outcome::Ok, _)))))
    });
    (sent > 0).then(|| failed as f64 * 100.0 / sent as f64)
}

/// Whether the trial ran to its end (`ended`: its `trial_ended` event).
fn completion_check(ended: &Option<(bool, Option<String>)>) -> Option<CheckReport> {
    let observed = match ended.clone() {
        Some((false, None)) => return None,
        Some((interrupted, error)) => {
            error.unwrap_or_else(|| if interrupted { "interrupted".into() } else { "stopped".into() })
        }
        None => "the history ends early".into(),
    };
    Some(CheckReport {
        name: "completed".into(),
        verdict: Verdict::Unknown,
        expected: "the trial runs to its end".into(),
        observed,
    })
}

/// Faults that could not be injected and backups that could not be taken:
/// what follows them cannot be judged.
fn failure_checks(events: &[Event]) -> Vec<CheckReport> {
    let faults = events.iter().filter_map(|e| match &e.kind {
        EventKind::FaultFailed { fault, target, error } => Some(CheckReport {
            name: format!("fault #{} injected", fault + 1),
            verdict: Verdict::Unknown,
            expected: format!("the fault reaches target `{target}`"),
            observed: error.clone(),
        }),
        _ => None,
    });
    let backups = events.iter().filter_map(|e| match &e.kind {
        EventKind::BackupFailed { name, target, error } => Some(CheckReport {
            name: format!("backup {name}"),
            verdict: Verdict::Unknown,
            expected: format!("a copy of the data dir of `{target}`"),
            observed: error.clone(),
        }),
        _ => None,
    });
    faults.chain(backups).collect()
}

/// The recovery procedure as a whole, each failed `check` step, and each
/// step's budget.
fn procedure_checks(plan: &Plan, trial: &TrialReport) -> Vec<CheckReport> {
    let mut checks = Vec::new();
    if !plan.recover.is_empty() && !trial.faults.is_empty() {
        // A failed `check` is reported on its own below; the procedure went on.
        let is_check = |s: &StepReport| s.action == StepName::Check.as_str();
        let failed = trial.recovery.iter().find(|s| !s.ok && s.duration_ms.is_some() && !is_check(s));
        let done = trial.recovery.iter().filter(|s| s.ok || (is_check(s) && s.duration_ms.is_some())).count();
        checks.push(CheckReport {
            name: "recovery procedure".into(),
            verdict: match failed {
                Some(_) => Verdict::Fail,
                None if done == plan.recover.len() => Verdict::Pass,
                None => Verdict::Unknown,
            },
            expected: format!("all {} steps succeed", plan.recover.len()),
            observed: match failed {
                Some(s) => format!("step {} ({}) failed: {}", s.step, s.action, s.detail),
                None => format!("{done} of {} steps done", plan.recover.len()),
            },
        });
    }
    for s in &trial.recovery {
        if s.action == StepName::Check.as_str() && !s.ok && s.duration_ms.is_some() {
            checks.push(CheckReport {
                name: format!("step {} (check)", s.step),
                verdict: Verdict::Fail,
                expected: "the check command succeeds".into(),
                observed: s.detail.clone(),
            });
        }
        if let (Some(budget), Some(took)) = (s.budget_ms, s.duration_ms) {
            checks.push(CheckReport {
                name: format!("step {} ({}) within budget", s.step, s.action),
                verdict: if s.over_budget() { Verdict::Fail } else { Verdict::Pass },
                expected: format!("<= {}", crate::duration::format_duration(Duration::from_secs_f64(budget / 1000.0))),
                observed: format!("{took:.1}ms"),
            });
        }
    }
    checks
}

/// A sustained healthy window after each disruptive fault.
fn recovery_checks(trial: &TrialReport, events: &[Event]) -> Vec<CheckReport> {
    let disruptive = trial.faults.iter().enumerate().filter(|(_, f)| !f.setup);
    disruptive
        .map(|(i, f)| CheckReport {
            name: format!("recovered after fault #{} ({} {})", i + 1, f.kind, f.target),
            verdict: if f.rto_ms.is_some() { Verdict::Pass } else { Verdict::Fail },
            expected: "a sustained healthy window".into(),
            observed: f.rto_ms.map_or_else(
                || match telling_lines(events, &f.target) {
                    lines if lines.is_empty() => "never recovered".into(),
                    lines => format!("never recovered; its output: {}", lines.join(" | ")),
                },
                |v| format!("after {v:.1}ms"),
            ),
        })
        .collect()
}

/// The store was read back, and something was acknowledged: nothing
/// acknowledged, nothing to lose, and every durability bound would hold
/// vacuously.
fn workload_checks(trial: &TrialReport, events: &[Event]) -> [CheckReport; 2] {
    let failure = events.iter().find_map(|e| match &e.kind {
        EventKind::ReadBackFailed { error, .. } => Some(error.clone()),
        _ => None,
    });
    [
        CheckReport {
            name: "read_back".into(),
            verdict: if trial.rpo.read_back { Verdict::Pass } else { Verdict::Unknown },
            expected: "the store can be read back after recovery".into(),
            observed: if trial.rpo.read_back { "read".into() } else { failure.unwrap_or_else(|| "not read".into()) },
        },
        CheckReport {
            name: "acknowledged writes".into(),
            verdict: if trial.rpo.acked_writes > 0 { Verdict::Pass } else { Verdict::Unknown },
            expected: "the workload got at least one write acknowledged".into(),
            observed: format!("{} acknowledged of {} sent", trial.rpo.acked_writes, trial.ops.invoked),
        },
    ]
}

/// The scenario's per-trial expectations.
fn expectation_checks(plan: &Plan, trial: &TrialReport) -> Vec<CheckReport> {
    let per_trial = plan.expectations.iter().filter(|e| e.aggregate.is_none());
    per_trial
        .map(|e| {
            let verdict = if !measurable(e.metric, trial) {
                Verdict::Unknown
            } else if e.holds(observe(e.metric, trial)) {
                Verdict::Pass
            } else {
                Verdict::Fail
            };
            CheckReport {
                name: e.metric.name().into(),
                verdict,
                expected: e.to_string(),
                observed: e.metric.show(observe(e.metric, trial)),
            }
        })
        .collect()
}

/// Which answered ops, by the time they were sent, succeeded.
fn availability(history: &TrialHistory) -> Option<Availability> {
    let answered = history.ops.iter().filter_map(|op| op.completed.map(|(outcome, _)| (op.invoked_ms, outcome)));
    Availability::of(answered.map(|(at, outcome)| (at, outcome == Outcome::Ok)))
}

/// The last line a target printed, as kept at the end of the trial.
/// What a target's last output says of why it never recovered: the last
/// two distinct lines that sound like a failure (a FATAL line says more
/// than the HINT after it, or the shutdown notice of the last incarnation),
/// then the very last line.
fn telling_lines<'a>(events: &'a [Event], target: &str) -> Vec<&'a str> {
    const TELLING: &[&str] =
        &["fatal", "panic", "error", "refus", "bad ", "corrupt", "invalid", "failed", "cannot", "can't", "denied"];
    let lines = events.iter().rev().find_map(|e| match &e.kind {
        EventKind::TargetLog { target: t, lines } if t == target => Some(lines),
        _ => None,
    });
    let Some(lines) = lines else { return Vec::new() };
    let mut seen = std::collections::HashSet::new();
    let mut chosen: Vec<&str> = Vec::new();
    for line in lines.iter().rev() {
        let lower = line.to_lowercase();
        // The same message from two incarnations differs only in numbers.
        let shape: String = lower.chars().filter(|c| !c.is_ascii_digit()).collect();
        if TELLING.iter().any(|w| lower.contains(w)) && seen.insert(shape) {
            chosen.insert(0, line);
            if chosen.len() == 2 {
                break;
            }
        }
    }
    if let Some(last) = lines.last().filter(|l| !chosen.contains(&l.as_str())) {
        chosen.push(last);
    }
    chosen
}

/// The procedure's steps from their start and end events.
fn recovery_steps(events: &[Event], rto_ms: Option<f64>) -> Vec<StepReport> {
    let mut steps: Vec<StepReport> = Vec::new();
    for e in events {
        match &e.kind {
            EventKind::RecoverStarted { step, action, target } => steps.push(StepReport {
                step: step + 1,
                action: action.to_string(),
                target: target.clone(),
                started_at_ms: e.t_ms,
                duration_ms: None,
                ok: false,
                detail: String::new(),
                share_of_rto: None,
                budget_ms: None,
            }),
            EventKind::RecoverEnded { step, ok, detail } => {
                if let Some(s) = steps.iter_mut().find(|s| s.step == step + 1) {
                    let duration = e.t_ms - s.started_at_ms;
                    s.duration_ms = Some(duration);
                    s.ok = *ok;
                    s.detail = detail.clone();
                    s.share_of_rto = rto_ms.filter(|r| *r > 0.0).map(|r| duration / r);
                }
            }
            _ => {}
        }
    }
    steps
}

/// Puts the trials together: summary percentiles, expectations over all
/// trials (observed = the worst value), and the run's verdict.
pub fn build_report(plan: &Plan, seed: u64, trials: Vec<TrialReport>, error: Option<String>) -> RunReport {
    let stats = |f: &dyn Fn(&TrialReport) -> Option<f64>| Stats::of(trials.iter().filter_map(f));
    let summary = Summary {
        trials: trials.len() as u32,
        never_recovered: trials.iter().filter(|t| t.faults.iter().any(|f| !f.setup && f.rto_ms.is_none())).count()
            as u32,
        rto_ms: stats(&|t| t.rto_ms),
        ttd_ms: stats(&|t| t.ttd_ms),
        lost_acked: stats(&|t| t.rpo.lost_acked.map(|v| v as f64)),
        window_ms: stats(&|t| t.rpo.window_ms),
    };
    let expectations: Vec<ExpectationReport> = plan
        .expectations
        .iter()
        .map(|e| {
            let name = e.name();
            let values: Vec<Option<f64>> =
                trials.iter().filter(|t| measurable(e.metric, t)).map(|t| observe(e.metric, t)).collect();
            if let Some(aggregate) = e.aggregate {
                let value = aggregate.of(&values);
                let verdict = match (values.is_empty(), e.holds(value)) {
                    (true, _) => Verdict::Unknown,
                    (false, true) => Verdict::Pass,
                    (false, false) => Verdict::Fail,
                };
                return ExpectationReport {
                    name,
                    expected: e.to_string(),
                    observed: format!("{} over {} trials", e.metric.show(value), values.len()),
                    verdict,
                };
            }
            let verdict =
                Verdict::all(trials.iter().flat_map(|t| t.checks.iter().filter(|c| c.name == name).map(|c| c.verdict)));
            let worst = e.worst(&values);
            ExpectationReport {
                name,
                expected: e.to_string(),
                observed: worst.map_or("n/a".into(), |v| e.metric.show(v)),
                verdict: if trials.is_empty() { Verdict::Unknown } else { verdict },
            }
        })
        .collect();
    // A percentile bound can fail a run whose every trial passed.
    let mut verdict = Verdict::all(trials.iter().map(|t| t.verdict).chain(
        plan.expectations.iter().zip(&expectations).filter(|(e, _)| e.aggregate.is_some()).map(|(_, r)| r.verdict),
    ));
    // A run cut short (interrupted, or its environment failed) is unknown,
    // whatever its finished trials said: that is what its exit code says.
    if trials.is_empty() || error.is_some() {
        verdict = Verdict::Unknown;
    }
    RunReport {
        format_version: FORMAT_VERSION,
        scenario: plan.name.clone(),
        seed,
        verdict,
        interrupted: error.is_some(),
        error,
        trials,
        summary,
        expectations,
        warnings: Vec::new(),
        shard: None,
        merged_from: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(target: &str, lines: &[&str]) -> Vec<Event> {
        let lines = lines.iter().map(|l| l.to_string()).collect();
        vec![Event { trial: 0, t_ms: 0.0, kind: EventKind::TargetLog { target: target.into(), lines } }]
    }

    #[test]
    fn the_reason_is_quoted_before_the_last_words() {
        // PostgreSQL says why, then gives a HINT; the HINT alone says nothing.
        let events = log(
            "pg",
            &[
                "[pg.1] LOG:  starting PostgreSQL 15",
                "[pg.1] FATAL:  lock file \"postmaster.pid\" already exists",
                "[pg.1] HINT:  Is another postmaster (PID 4242) running in data directory?",
            ],
        );
        assert_eq!(
            telling_lines(&events, "pg"),
            vec![
                "[pg.1] FATAL:  lock file \"postmaster.pid\" already exists",
                "[pg.1] HINT:  Is another postmaster (PID 4242) running in data directory?"
            ]
        );
        // A crash loop repeats its reason: quoted once; the last incarnation's
        // shutdown notice comes last.
        let events = log(
            "r",
            &[
                "[r.1] 11:M Bad file format reading the append only file",
                "[r.2] 12:M Bad file format reading the append only file",
                "[r.3] 13:signal-handler Received SIGTERM scheduling shutdown...",
            ],
        );
        assert_eq!(
            telling_lines(&events, "r"),
            vec![
                "[r.2] 12:M Bad file format reading the append only file",
                "[r.3] 13:signal-handler Received SIGTERM scheduling shutdown..."
            ]
        );
        assert!(telling_lines(&events, "other").is_empty());
    }
}
