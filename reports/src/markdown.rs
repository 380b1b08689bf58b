//! `summary.md`: a CI job summary (GitHub's `$GITHUB_STEP_SUMMARY`, GitLab's
//! report pages): the verdict, the expectations and the trials.

use std::fmt::Write;

use crate::{RunReport, Verdict};

fn ms(v: Option<f64>) -> String {
    v.map_or("–".into(), |v| format!("{v:.1}"))
}

pub fn render_markdown(report: &RunReport) -> String {
    let mut out = String::new();
    let verdict = report.verdict.as_str().to_uppercase();
    let _ = writeln!(out, "## crashlab: `{}` — {verdict}\n", report.scenario);
    let s = &report.summary;
    let _ = writeln!(
        out,
        "{} trial(s), seed `{}`{}; RTO p50 {} ms, p95 {} ms, max {} ms; lost acknowledged writes max {}{}\n",
        s.trials,
        report.seed,
        crate::text::part_of_run(report).replace("  ", "; "),
        ms(s.rto_ms.p50),
        ms(s.rto_ms.p95),
        ms(s.rto_ms.max),
        s.lost_acked.max.map_or("–".into(), |v| format!("{v:.0}")),
        if s.never_recovered > 0 {
            format!("; never recovered in {} trial(s)", s.never_recovered)
        } else {
            String::new()
        }
    );
    if !report.expectations.is_empty() {
        out.push_str("| expectation | observed (worst) | verdict |\n|---|---|---|\n");
        for e in &report.expectations {
            let _ = writeln!(out, "| `{}` | {} | {} |", e.expected, e.observed, e.verdict.as_str());
        }
        out.push('\n');
    }
    out.push_str("| trial | verdict | RTO ms | TTD ms | acked | lost | window ms | unknown |\n");
    out.push_str("|---:|---|---:|---:|---:|---:|---:|---:|\n");
    for t in &report.trials {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            t.index,
            t.verdict.as_str(),
            if t.never_recovered() { "never".into() } else { ms(t.rto_ms) },
            ms(t.ttd_ms),
            t.rpo.acked_writes,
            t.rpo.lost_acked.map_or("?".into(), |v| v.to_string()),
            ms(t.rpo.window_ms),
            t.rpo.unknown_writes
        );
    }
    if report.trials.iter().any(|t| !t.faults.is_empty()) {
        let ready = report.has_ready();
        let (head, rule) = if ready { ("ready ms (cluster) | ", "---:|") } else { ("", "") };
        let _ = writeln!(out, "\n| trial | fault | injected ms | TTD ms | restart ms | {head}RTO ms |");
        let _ = writeln!(out, "|---:|---|---:|---:|---:|{rule}---:|");
        for t in &report.trials {
            for (i, f) in t.faults.iter().enumerate() {
                let figures: Vec<String> = f.figures(ready).iter().map(|(_, v)| ms(*v)).collect();
                let _ = writeln!(out, "| {} | {} | {} |", t.index, f.label(i + 1), figures.join(" | "));
            }
        }
    }
    let failures: Vec<String> = report
        .trials
        .iter()
        .flat_map(|t| {
            t.checks.iter().filter(|c| c.verdict != Verdict::Pass).map(move |c| {
                format!(
                    "- trial {}: **{}** {}: expected {}, observed {}",
                    t.index,
                    c.name,
                    c.verdict.as_str(),
                    c.expected,
                    c.observed
                )
            })
        })
        .collect();
    if !failures.is_empty() {
        out.push_str("\n### What did not pass\n\n");
        out.push_str(&failures.join("\n"));
        out.push('\n');
    }
    let warnings = report.all_warnings();
    if !warnings.is_empty() {
        out.push_str("\n### Warnings\n\n");
        for w in &warnings {
            let _ = writeln!(out, "- {w}");
        }
    }
    if let Some(error) = &report.error {
        let _ = writeln!(out, "\nStopped early: {error}");
    }
    out
}

/// One row per run: the scenario's RTO and RPO over its trials, for a table
/// of packs in a README (`crashlab table RUN_DIR...`).
pub fn render_table(reports: &[RunReport]) -> String {
    let mut out = String::from(
        "| scenario | trials | verdict | RTO p50 ms | RTO p95 ms | lost acked p50 / max | RPO window max ms |\n\
         |---|---:|---|---:|---:|---:|---:|\n",
    );
    for r in reports {
        let s = &r.summary;
        let never = if s.never_recovered > 0 { format!(" ({} never)", s.never_recovered) } else { String::new() };
        let count = |v: Option<f64>| v.map_or("–".into(), |v| format!("{v:.0}"));
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {}{never} | {} | {} / {} | {} |",
            r.scenario,
            s.trials,
            r.verdict.as_str(),
            ms(s.rto_ms.p50),
            ms(s.rto_ms.p95),
            count(s.lost_acked.p50),
            count(s.lost_acked.max),
            ms(s.window_ms.max)
        );
    }
    out
}
