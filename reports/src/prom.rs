//! `metrics.prom`: the Prometheus text exposition format, for a textfile
//! collector or a push gateway: RTO and RPO of the run, per scenario.

use std::fmt::Write;

use crate::{RunReport, Stats, Verdict};

/// A label value with `\`, `"` and newlines escaped.
fn label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn stats(out: &mut String, name: &str, help: &str, scenario: &str, s: &Stats) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
    for (stat, value) in
        [("min", s.min), ("p50", s.p50), ("p95", s.p95), ("p99", s.p99), ("max", s.max), ("mean", s.mean)]
    {
        if let Some(v) = value {
            let _ = writeln!(out, "{name}{{scenario=\"{scenario}\",stat=\"{stat}\"}} {v}");
        }
    }
}

pub fn render_prometheus(report: &RunReport) -> String {
    let scenario = label(&report.scenario);
    let mut out = String::new();
    let s = &report.summary;
    stats(&mut out, "crashlab_rto_milliseconds", "Recovery time over the run's trials.", &scenario, &s.rto_ms);
    stats(&mut out, "crashlab_ttd_milliseconds", "Time to detect over the run's trials.", &scenario, &s.ttd_ms);
    stats(&mut out, "crashlab_lost_acked_writes", "Acknowledged writes lost, per trial.", &scenario, &s.lost_acked);
    stats(
        &mut out,
        "crashlab_rpo_window_milliseconds",
        "Age of the oldest lost write at the fault.",
        &scenario,
        &s.window_ms,
    );
    let gauges = [
        ("crashlab_trials", "Trials run.", f64::from(s.trials)),
        ("crashlab_never_recovered_trials", "Trials in which a target never recovered.", f64::from(s.never_recovered)),
        (
            "crashlab_passed",
            "1 if every expectation was met, else 0.",
            if report.verdict == Verdict::Pass { 1.0 } else { 0.0 },
        ),
        ("crashlab_seed", "The run's seed, to reproduce it.", report.seed as f64),
    ];
    for (name, help, value) in gauges {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name}{{scenario=\"{scenario}\"}} {value}");
    }
    out
}
