//! The concise terminal summary of a run.

use std::fmt::Write;

use crate::{RunReport, Stats, StepReport, Verdict};

fn ms(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.1}"))
}

fn count(v: Option<u64>) -> String {
    v.map_or("?".into(), |v| v.to_string())
}

/// At most 60 marks, one per span of buckets, from `·` (no op sent) and
/// `_` (none succeeded) up to `█` (all succeeded).
fn sparkline(a: &crate::Availability) -> (String, f64) {
    const LEVELS: [char; 8] = ['_', '▁', '▂', '▃', '▄', '▅', '▆', '█'];
    let per = a.ok.len().div_ceil(60).max(1);
    let marks =
        a.ok.chunks(per)
            .zip(a.not_ok.chunks(per))
            .map(|(ok, not)| {
                let (ok, not): (u32, u32) = (ok.iter().sum(), not.iter().sum());
                if ok + not == 0 {
                    '·'
                } else {
                    LEVELS[(ok as usize * (LEVELS.len() - 1)).div_ceil((ok + not) as usize)]
                }
            })
            .collect();
    (marks, per as f64 * a.bucket_ms)
}

/// A budget as written in runbooks: `90s`, `5m`, `1.5h`.
fn human(ms: f64) -> String {
    match ms {
        ms if ms >= 3_600_000.0 => format!("{}h", ms / 3_600_000.0),
        ms if ms >= 60_000.0 => format!("{}m", ms / 60_000.0),
        ms if ms >= 1000.0 => format!("{}s", ms / 1000.0),
        ms => format!("{ms}ms"),
    }
}

/// " FAILED", " OVER BUDGET" or nothing.
fn outcome(s: &StepReport) -> &'static str {
    match (s.ok, s.duration_ms.is_some(), s.over_budget()) {
        (false, true, _) => " FAILED",
        (true, _, true) => " OVER BUDGET",
        _ => "",
    }
}

/// A drill's procedure, a row per step: what it took against its budget.
fn procedure_table(out: &mut String, steps: &[StepReport]) {
    let _ = writeln!(
        out,
        "procedure:\n{:>4}  {:<8}  {:<10}  {:>10}  {:>10}  {:>6}  result",
        "step", "action", "target", "took_ms", "budget", "of_rto"
    );
    for s in steps {
        let _ = writeln!(
            out,
            "{:>4}  {:<8}  {:<10}  {:>10}  {:>10}  {:>6}  {}{}",
            s.step,
            s.action,
            s.target.as_deref().unwrap_or("-"),
            s.duration_ms.map_or("cut short".into(), |d| format!("{d:.1}")),
            s.budget_ms.map_or("-".into(), human),
            s.share_of_rto.map_or("-".into(), |r| format!("{:.0}%", r * 100.0)),
            if s.ok { "ok" } else { "failed" },
            match (outcome(s), s.detail.is_empty()) {
                (" OVER BUDGET", _) => " (over budget)".to_string(),
                (_, true) => String::new(),
                (_, false) => format!(": {}", s.detail),
            }
        );
    }
}

/// A table of trials, the summary percentiles and the expectations.
/// Which trials of the run a report holds, when a shard's or a merge's.
pub(crate) fn part_of_run(report: &RunReport) -> String {
    match (&report.shard, report.merged_from.len()) {
        (Some(shard), _) => format!("  {shard}"),
        (None, 0) => String::new(),
        (None, n) => format!("  merged from {n} run directories"),
    }
}

/// A pod target's faults: the cluster's own signals beside the probe's.
fn cluster_signals(out: &mut String, report: &RunReport) {
    for t in &report.trials {
        for (i, f) in t.faults.iter().enumerate().filter(|(_, f)| f.ready_ms.is_some()) {
            // A signal sent with exec restarts the container in place; the
            // other pod faults make the workload create another pod.
            let back = match f.kind.as_str() {
                "kill" | "pause" | "restart" => "container restarted",
                _ => "replacement pod created",
            };
            let _ = writeln!(
                out,
                "trial {} fault {}: {back} {} ms, ready (the cluster says) {} ms, healthy (the probe says) {} ms \
                 after the fault",
                t.index,
                f.label(i + 1),
                ms(f.restart_ms),
                ms(f.ready_ms),
                ms(f.rto_ms)
            );
        }
    }
}

pub fn render_text(report: &RunReport) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "scenario {}  seed {}{}", report.scenario, report.seed, part_of_run(report));
    let _ = writeln!(
        out,
        "{:>5}  {:>7}  {:>10}  {:>8}  {:>10}  {:>6}  {:>7}  {:>9}  {:>7}",
        "trial", "verdict", "rto_ms", "ttd_ms", "restart_ms", "acked", "lost", "window_ms", "unknown"
    );
    for t in &report.trials {
        let restart = t.faults.iter().filter_map(|f| f.restart_ms).reduce(f64::max);
        let rto = if t.never_recovered() { "never".into() } else { ms(t.rto_ms) };
        let _ = writeln!(
            out,
            "{:>5}  {:>7}  {:>10}  {:>8}  {:>10}  {:>6}  {:>7}  {:>9}  {:>7}",
            t.index,
            t.verdict.as_str(),
            rto,
            ms(t.ttd_ms),
            ms(restart),
            t.rpo.acked_writes,
            count(t.rpo.lost_acked),
            ms(t.rpo.window_ms),
            t.rpo.unknown_writes,
        );
    }
    // Each fault's own figures, where a trial has more than one.
    for t in report.trials.iter().filter(|t| t.faults.len() > 1) {
        for (i, f) in t.faults.iter().enumerate() {
            // The cluster's readiness has a line of its own below.
            let figures: Vec<String> = f.figures(false).iter().map(|(name, v)| format!("{name} {}", ms(*v))).collect();
            let _ = writeln!(out, "trial {} fault {}: {}", t.index, f.label(i + 1), figures.join("  "));
        }
    }
    cluster_signals(&mut out, report);
    // The path the figures measured: the same in every trial.
    if let Some(first) = report.trials.first() {
        for (target, at) in &first.reached {
            let _ = writeln!(out, "target {target} reached at {at}");
        }
    }
    for t in &report.trials {
        // More starts than the faults explain: a crash loop.
        for (target, n) in &t.incarnations {
            let faults = t.faults.iter().filter(|f| &f.target == target).count() as u32;
            if *n > faults + 2 {
                let _ = writeln!(out, "trial {}: target {target} was started {n} times ({faults} fault(s))", t.index);
            }
        }
        if let Some(a) = &t.availability {
            if a.not_ok.iter().any(|n| *n > 0) {
                let (marks, per) = sparkline(a);
                let _ = writeln!(out, "trial {} availability {marks} ({per:.0} ms a mark)", t.index);
            }
        }
    }
    let single = report.trials.len() == 1;
    for t in report.trials.iter().filter(|t| !t.recovery.is_empty()) {
        if single {
            procedure_table(&mut out, &t.recovery);
            continue;
        }
        let steps: Vec<String> = t
            .recovery
            .iter()
            .map(|s| {
                let took = s.duration_ms.map_or("cut short".into(), |d| format!("{d:.1}ms"));
                format!("{} {took}{}", s.action, outcome(s))
            })
            .collect();
        let _ = writeln!(out, "trial {} recovery: {}", t.index, steps.join(", "));
    }
    if report.trials.len() > 1 {
        let line = |name: &str, s: &Stats| {
            format!(
                "{name:<11} min {}  p50 {}  p95 {}  p99 {}  max {}\n",
                ms(s.min),
                ms(s.p50),
                ms(s.p95),
                ms(s.p99),
                ms(s.max)
            )
        };
        out.push_str(&line("rto_ms", &report.summary.rto_ms));
        out.push_str(&line("lost_acked", &report.summary.lost_acked));
        out.push_str(&line("window_ms", &report.summary.window_ms));
        if report.summary.never_recovered > 0 {
            let _ = writeln!(out, "never recovered in {} trial(s)", report.summary.never_recovered);
        }
    }
    for e in &report.expectations {
        let _ = writeln!(out, "expect {:<28} observed {:<18} {}", e.expected, e.observed, e.verdict.as_str());
    }
    for t in report.trials.iter().filter(|t| t.verdict != Verdict::Pass) {
        for c in t.checks.iter().filter(|c| c.verdict != Verdict::Pass) {
            let _ = writeln!(
                out,
                "trial {}: {} {}: expected {}, observed {}",
                t.index,
                c.name,
                c.verdict.as_str(),
                c.expected,
                c.observed
            );
        }
    }
    for w in report.all_warnings() {
        let _ = writeln!(out, "warning: {w}");
    }
    if let Some(error) = &report.error {
        let _ = writeln!(out, "stopped early: {error}");
    }
    let _ = writeln!(out, "verdict: {}", report.verdict.as_str().to_uppercase());
    out
}
