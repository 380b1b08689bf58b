//! `report.html`: one self-contained file (inline CSS and SVG, no script, no
//! external resource) that a drill's participants or a CI artifact viewer
//! open as is: the verdict, the expectations, the RTO histogram, the table of
//! trials and, per trial, an availability timeline with one band per fault
//! and the recovery procedure's steps against their budgets.

use std::fmt::Write;

use crate::{histogram, Availability, RunReport, Stats, StepReport, TrialReport, Verdict};

/// Trials whose details start unfolded (every failed trial is unfolded too).
const OPEN_TRIALS: u32 = 5;
/// The drawing width of the timelines and charts, in SVG units.
const WIDTH: f64 = 800.0;

const STYLE: &str = "\
body{font:14px/1.4 system-ui,sans-serif;margin:2em auto;max-width:900px;color:#222}\
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em}\
table{border-collapse:collapse;margin:.5em 0}td,th{padding:2px 8px;border-bottom:1px solid #ddd;text-align:right}\
td:first-child,th:first-child{text-align:left}\
.pass{color:#186a3b}.fail{color:#b03a2e}.unknown{color:#7d6608}.aborted{color:#6c3483}\
.badge{padding:1px 8px;border-radius:4px;color:#fff}.badge.pass{background:#27ae60}\
.badge.fail{background:#c0392b}.badge.unknown{background:#b7950b}.badge.aborted{background:#6c3483}\
svg{display:block;margin:.5em 0}svg text{font:11px system-ui,sans-serif;fill:#444}\
.ok{fill:#58d68d}.not-ok{fill:#ec7063}.fault-band{fill:#f5b041;fill-opacity:.35;stroke:#d68910}\
.probe-up{fill:#27ae60}.probe-down{fill:#c0392b}.recovered{stroke:#1f618d;stroke-dasharray:3 2}\
.bar{fill:#5dade2}.bar.never{fill:#c0392b}.step{fill:#5dade2}.step.failed{fill:#c0392b}\
.step.over{fill:#f39c12}.budget{stroke:#222;stroke-dasharray:2 2}.tick{stroke:#888}\
details{margin:.5em 0;border-left:3px solid #ddd;padding-left:.8em}summary{cursor:pointer}\
pre{background:#f6f6f6;padding:.5em;overflow-x:auto;font-size:12px}";

/// Escapes text for HTML content and attribute values.
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn ms(v: Option<f64>) -> String {
    v.map_or("–".into(), |v| format!("{v:.1}"))
}

/// A duration in ms for axis labels and captions: `850ms`, `2.4s`, `3.0min`.
fn human(ms: f64) -> String {
    if ms < 1000.0 {
        format!("{ms:.0}ms")
    } else if ms < 120_000.0 {
        format!("{:.1}s", ms / 1000.0)
    } else {
        format!("{:.1}min", ms / 60_000.0)
    }
}

fn verdict_badge(v: Verdict) -> String {
    format!("<span class=\"badge {0}\">{1}</span>", v.as_str(), v.as_str().to_uppercase())
}

pub fn render_html(report: &RunReport) -> String {
    let mut out = String::with_capacity(4096 + report.trials.len() * 2048);
    let title = format!("crashlab: {} — {}", report.scenario, report.verdict.as_str().to_uppercase());
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{}</title><style>{STYLE}</style></head><body>\n",
        esc(&title)
    );
    let _ =
        writeln!(out, "<h1>crashlab: <code>{}</code> {}</h1>", esc(&report.scenario), verdict_badge(report.verdict));
    let s = &report.summary;
    let _ = writeln!(
        out,
        "<p>{} trial(s), seed <code>{}</code>{}.</p>",
        s.trials,
        report.seed,
        if s.never_recovered > 0 { format!("; never recovered in {} trial(s)", s.never_recovered) } else { "".into() }
    );
    if let Some(error) = &report.error {
        let _ = writeln!(out, "<p class=\"fail\">Stopped early: {}</p>", esc(error));
    }
    summary_table(&mut out, s);
    expectations(&mut out, report);
    warnings(&mut out, report);
    rto_histogram(&mut out, report);
    trials_table(&mut out, report);
    out.push_str(
        "<h2 id=\"timelines\">Trials</h2>\n<p class=\"legend\">Per 100 ms: ops that succeeded (green, below) and \
         that failed or went unanswered (red, above), by the time they were sent. Orange bands, behind the ops: \
         each fault, from injection to its heal, or to recovery when nothing heals it before the trial ends. \
         Bottom strip: the health probe, down from detection to recovery. Dashed line: recovered (RTO). Below, on \
         the same time axis, the recovery procedure's steps: a dashed mark at a step's budget (an arrow when it \
         falls beyond the trial), orange when over it.</p>\n",
    );
    for t in &report.trials {
        trial_details(&mut out, t);
    }
    out.push_str("</body></html>\n");
    out
}

fn summary_table(out: &mut String, s: &crate::Summary) {
    out.push_str("<table id=\"summary\"><tr><th></th><th>min</th><th>p50</th><th>p95</th><th>p99</th><th>max</th>");
    out.push_str("<th>mean</th><th>n</th></tr>\n");
    let rows: [(&str, &Stats); 4] = [
        ("RTO ms", &s.rto_ms),
        ("TTD ms", &s.ttd_ms),
        ("lost acknowledged writes", &s.lost_acked),
        ("RPO window ms", &s.window_ms),
    ];
    for (name, st) in rows {
        let _ = writeln!(
            out,
            "<tr><td>{name}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            ms(st.min),
            ms(st.p50),
            ms(st.p95),
            ms(st.p99),
            ms(st.max),
            ms(st.mean),
            st.count
        );
    }
    out.push_str("</table>\n");
}

fn warnings(out: &mut String, report: &RunReport) {
    let warnings = report.all_warnings();
    if warnings.is_empty() {
        return;
    }
    out.push_str("<h2>Warnings</h2>\n<ul id=\"warnings\">\n");
    for w in &warnings {
        let _ = writeln!(out, "<li>{}</li>", esc(w));
    }
    out.push_str("</ul>\n");
}

fn expectations(out: &mut String, report: &RunReport) {
    if report.expectations.is_empty() {
        return;
    }
    out.push_str("<h2>Expectations</h2>\n<table id=\"expectations\"><tr><th>expectation</th><th>observed</th>");
    out.push_str("<th>verdict</th></tr>\n");
    for e in &report.expectations {
        let _ = writeln!(
            out,
            "<tr><td><code>{}</code></td><td>{}</td><td class=\"{2}\">{2}</td></tr>",
            esc(&e.expected),
            esc(&e.observed),
            e.verdict.as_str()
        );
    }
    out.push_str("</table>\n");
}

/// A bin edge with enough decimals that neighbouring edges differ.
fn edge(ms: f64, width: f64) -> String {
    match width {
        w if w >= 1000.0 => human(ms),
        w if w >= 10.0 => format!("{ms:.0}ms"),
        w if w >= 1.0 => format!("{ms:.1}ms"),
        _ => format!("{ms:.2}ms"),
    }
}

/// Bars of RTO over the trials, plus one bar for trials that never recovered.
fn rto_histogram(out: &mut String, report: &RunReport) {
    let rtos: Vec<f64> = report.trials.iter().filter_map(|t| t.rto_ms).collect();
    let never = report.summary.never_recovered as usize;
    if rtos.is_empty() && never == 0 {
        return;
    }
    let bins = histogram(&rtos, if rtos.len() < 10 { rtos.len().max(1) } else { 20 });
    let columns = bins.len() + usize::from(never > 0);
    let tallest = bins.iter().map(|b| b.1).chain([never]).max().unwrap_or(1).max(1) as f64;
    let (height, top, bottom) = (140.0, 14.0, 30.0);
    let column = WIDTH / columns as f64;
    let _ = writeln!(
        out,
        "<h2>RTO histogram</h2>\n<svg class=\"histogram\" width=\"{WIDTH}\" height=\"{}\" viewBox=\"0 0 {WIDTH} {0}\" \
         role=\"img\" aria-label=\"RTO histogram\">",
        height + top + bottom
    );
    let lower = |i: usize| if i == 0 { rtos.iter().copied().fold(f64::INFINITY, f64::min) } else { bins[i - 1].0 };
    let bar = |out: &mut String, i: usize, n: usize, class: &str, label: String, tip: String| {
        let h = n as f64 / tallest * height;
        let x = i as f64 * column;
        let _ = writeln!(
            out,
            "<rect class=\"{class}\" x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{h:.1}\"><title>{}</title></rect>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            x + 1.0,
            top + height - h,
            (column - 2.0).max(1.0),
            esc(&tip),
            x + column / 2.0,
            top + height - h - 3.0,
            if n > 0 { n.to_string() } else { String::new() }
        );
        if !label.is_empty() {
            let _ = writeln!(
                out,
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
                x + column / 2.0,
                top + height + 16.0,
                esc(&label)
            );
        }
    };
    // Each label marks a bin's edge, under the edge (a bar lies between
    // two labels), about every 100 units of width so that they do not
    // overlap; the last edge closes the axis.
    let every = (100.0 / column).ceil().max(1.0) as usize;
    let width = bins.first().map_or(1.0, |b| b.0 - lower(0));
    for (i, (upper, n)) in bins.iter().enumerate() {
        let (from, to) = (edge(lower(i), width), edge(*upper, width));
        bar(out, i, *n, "bar", String::new(), format!("{n} trial(s) with RTO in [{from}, {to}]"));
    }
    for i in (0..=bins.len()).filter(|i| i % every == 0 || *i == bins.len()) {
        let value = if i == 0 { lower(0) } else { bins[i - 1].0 };
        let anchor = match i {
            0 => "start",
            i if i == bins.len() && never == 0 => "end",
            _ => "middle",
        };
        let _ = writeln!(
            out,
            "<line class=\"tick\" x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"{1:.1}\" y2=\"{2:.1}\"/>\
             <text class=\"edge\" x=\"{0:.1}\" y=\"{3:.1}\" text-anchor=\"{anchor}\">{4}</text>",
            i as f64 * column,
            top + height,
            top + height + 4.0,
            top + height + 16.0,
            esc(&edge(value, width))
        );
    }
    if never > 0 {
        bar(out, bins.len(), never, "bar never", "never".into(), format!("{never} trial(s) never recovered"));
    }
    out.push_str("</svg>\n");
}

fn trials_table(out: &mut String, report: &RunReport) {
    out.push_str("<h2>Table of trials</h2>\n<table id=\"trials\"><tr><th>trial</th><th>verdict</th><th>RTO ms</th>");
    out.push_str("<th>TTD ms</th><th>acked</th><th>lost</th><th>window ms</th><th>unknown</th><th>faults</th></tr>\n");
    for t in &report.trials {
        let faults: Vec<String> = t.faults.iter().map(|f| format!("{} {}", f.kind, f.target)).collect();
        let _ = writeln!(
            out,
            "<tr><td><a href=\"#trial-{0}\">{0}</a></td><td class=\"{1}\">{1}</td><td>{2}</td><td>{3}</td>\
             <td>{4}</td><td>{5}</td><td>{6}</td><td>{7}</td><td>{8}</td></tr>",
            t.index,
            t.verdict.as_str(),
            if t.never_recovered() { "never".into() } else { ms(t.rto_ms) },
            ms(t.ttd_ms),
            t.rpo.acked_writes,
            t.rpo.lost_acked.map_or("?".into(), |v| v.to_string()),
            ms(t.rpo.window_ms),
            t.rpo.unknown_writes,
            esc(&faults.join(", "))
        );
    }
    out.push_str("</table>\n");
}

fn trial_details(out: &mut String, t: &TrialReport) {
    let open = t.verdict != Verdict::Pass || t.index < OPEN_TRIALS;
    let rto = if t.never_recovered() { "never recovered".into() } else { ms(t.rto_ms) + " ms" };
    let _ = writeln!(
        out,
        "<details id=\"trial-{0}\"{1}><summary>Trial {0} — <span class=\"{2}\">{2}</span>, RTO {3}, lost {4}</summary>",
        t.index,
        if open { " open" } else { "" },
        t.verdict.as_str(),
        rto,
        t.rpo.lost_acked.map_or("?".into(), |v| v.to_string())
    );
    timeline(out, t);
    if !t.faults.is_empty() {
        let ready = t.faults.iter().any(|f| f.ready_ms.is_some());
        let _ = write!(
            out,
            "<table class=\"faults\"><tr><th>fault</th><th>injected ms</th><th>TTD ms</th><th>restart ms</th>{}<th>RTO \
             ms</th></tr>",
            if ready { "<th>ready ms (cluster)</th>" } else { "" }
        );
        for (i, f) in t.faults.iter().enumerate() {
            let _ = write!(out, "<tr><td>{}</td>", esc(&f.label(i + 1)));
            for (_, v) in f.figures(ready) {
                let _ = write!(out, "<td>{}</td>", ms(v));
            }
            out.push_str("</tr>");
        }
        out.push_str("</table>\n");
    }
    steps_chart(out, &t.recovery, trial_end(t));
    let problems: Vec<_> = t.checks.iter().filter(|c| c.verdict != Verdict::Pass).collect();
    if !problems.is_empty() {
        out.push_str("<ul class=\"checks\">");
        for c in problems {
            let _ = write!(
                out,
                "<li class=\"{}\"><b>{}</b>: expected {}, observed {}</li>",
                c.verdict.as_str(),
                esc(&c.name),
                esc(&c.expected),
                esc(&c.observed)
            );
        }
        out.push_str("</ul>\n");
    }
    for (target, lines) in &t.target_logs {
        let _ =
            writeln!(out, "<p>Last output of <code>{}</code>:</p><pre>{}</pre>", esc(target), esc(&lines.join("\n")));
    }
    out.push_str("</details>\n");
}

/// Where a fault's band ends: at its heal, else when the target recovered,
/// else at the end of the timeline. A fault that heals only when the trial
/// ends (a stale lock, an offline corruption's bytes) heals after the
/// workload and after the recovery: its band ends at the recovery, and its
/// heal is told in the band's title. (`workload_end`: when the last op was
/// sent.)
fn band_end(f: &crate::FaultReport, end: f64, workload_end: f64) -> (f64, String) {
    let recovered = f.rto_ms.map(|rto| f.injected_at_ms + rto);
    match (f.healed_at_ms, recovered) {
        (Some(healed), Some(recovered)) if healed > recovered && healed > workload_end => {
            (recovered, format!("recovered (healed at the end of the trial, {})", human(healed)))
        }
        (Some(healed), _) => (healed, "healed".into()),
        (None, Some(recovered)) => (recovered, "recovered".into()),
        (None, None) => (end, "never recovered".into()),
    }
}

/// How far a trial's drawings reach: the last op, fault band and step,
/// with a margin. The timeline and the steps share it, and so their scale.
fn trial_end(t: &TrialReport) -> f64 {
    let ops_end = t.availability.as_ref().map_or(0.0, |a| a.ok.len() as f64 * a.bucket_ms);
    let fault_end = t.faults.iter().map(|f| band_end(f, 0.0, ops_end).0.max(f.injected_at_ms)).fold(0.0, f64::max);
    // Budgets do not stretch the scale: a 10-minute budget of a 2 ms step
    // would crush the trial into its first pixels (a mark beyond the end
    // says where the budget is).
    let step_end = t.recovery.iter().map(|s| s.started_at_ms + s.duration_ms.unwrap_or(0.0)).fold(0.0, f64::max);
    ops_end.max(fault_end).max(step_end).max(1.0) * 1.02
}

/// Ops per 100 ms (succeeded below, failed or unknown above), a band per
/// fault from injection to heal (or to recovery), the probe's state derived
/// from each fault's detection and recovery, and the recovery moments.
fn timeline(out: &mut String, t: &TrialReport) {
    let empty = Availability::default();
    let a = t.availability.as_ref().unwrap_or(&empty);
    let ops_end = a.ok.len() as f64 * a.bucket_ms;
    let end = trial_end(t);
    let x = |ms: f64| ms / end * WIDTH;
    let (bars_top, bars_h, probe_y, axis_y) = (4.0, 60.0, 70.0, 84.0);
    let _ = writeln!(
        out,
        "<svg class=\"timeline\" data-trial=\"{}\" data-faults=\"{}\" width=\"{WIDTH}\" height=\"100\" \
         viewBox=\"0 0 {WIDTH} 100\" role=\"img\" aria-label=\"availability of trial {0}\">",
        t.index,
        t.faults.len()
    );
    // The bands first: behind the ops, so that what failed under a fault
    // shows in its own colour.
    for f in &t.faults {
        let (until, why) = band_end(f, end, ops_end);
        let _ = writeln!(
            out,
            "<rect class=\"fault-band\" data-kind=\"{}\" x=\"{:.1}\" y=\"0\" width=\"{:.1}\" height=\"{}\">\
             <title>{} on {} at {}, until {why} at {}{}</title></rect>",
            esc(&f.kind),
            x(f.injected_at_ms),
            (x(until) - x(f.injected_at_ms)).max(1.0),
            probe_y + 6.0,
            esc(&f.kind),
            esc(&f.target),
            human(f.injected_at_ms),
            human(until),
            if f.detail.is_empty() { String::new() } else { format!(": {}", esc(&f.detail)) }
        );
    }
    // Two paths, not a rect per bucket: a 1,000-trial report stays small.
    let (mut ok_path, mut bad_path) = (String::new(), String::new());
    let w = x(a.bucket_ms);
    for (i, (ok, bad)) in a.ok.iter().zip(&a.not_ok).enumerate() {
        let total = (ok + bad) as f64;
        if total == 0.0 {
            continue;
        }
        let left = x(i as f64 * a.bucket_ms);
        let ok_h = *ok as f64 / total * bars_h;
        if *ok > 0 {
            let _ = write!(ok_path, "M{left:.1} {:.1}h{w:.1}v{ok_h:.1}h-{w:.1}z", bars_top + bars_h - ok_h);
        }
        if *bad > 0 {
            let _ = write!(bad_path, "M{left:.1} {bars_top:.1}h{w:.1}v{:.1}h-{w:.1}z", bars_h - ok_h);
        }
    }
    let _ = writeln!(
        out,
        "<path class=\"ok\" d=\"{ok_path}\"><title>ops that succeeded</title></path>\
         <path class=\"not-ok\" d=\"{bad_path}\"><title>ops that failed or went unanswered</title></path>"
    );
    let _ = write!(out, "<rect class=\"probe-up\" x=\"0\" y=\"{probe_y}\" width=\"{WIDTH}\" height=\"6\"/>");
    for f in &t.faults {
        if let Some(ttd) = f.ttd_ms {
            let down = f.injected_at_ms + ttd;
            let up = f.rto_ms.map_or(end, |r| f.injected_at_ms + r);
            let _ = writeln!(
                out,
                "<rect class=\"probe-down\" x=\"{:.1}\" y=\"{probe_y}\" width=\"{:.1}\" height=\"6\">\
                 <title>probe: unhealthy from {} to {}</title></rect>",
                x(down),
                (x(up) - x(down)).max(1.0),
                human(down),
                human(up)
            );
        }
        if let Some(rto) = f.rto_ms {
            let at = x(f.injected_at_ms + rto);
            let _ = writeln!(
                out,
                "<line class=\"recovered\" x1=\"{at:.1}\" x2=\"{at:.1}\" y1=\"0\" y2=\"{}\">\
                 <title>recovered: RTO {}</title></line>",
                probe_y + 6.0,
                human(rto)
            );
        }
    }
    axis(out, end, axis_y, x);
    out.push_str("</svg>\n");
}

/// Tick marks at a round step so that about eight labels fit.
fn axis(out: &mut String, end: f64, y: f64, x: impl Fn(f64) -> f64) {
    let raw = end / 8.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * magnitude).find(|s| *s >= raw).unwrap_or(raw);
    let mut tick = 0.0;
    while tick <= end {
        let _ = write!(
            out,
            "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"{}\">{}</text>",
            x(tick),
            y + 10.0,
            match x(tick) {
                0.0 => "start",
                at if at > WIDTH - 30.0 => "end",
                _ => "middle",
            },
            human(tick)
        );
        tick += step;
    }
    out.push('\n');
}

/// The recovery procedure as a Gantt chart on the timeline's own scale and
/// origin (`end`: [`trial_end`]), with its axis: one row per step, its
/// duration, and a dashed mark at its budget. A step's name and time sit
/// right of its bar, or left of it where the bar reaches far right.
fn steps_chart(out: &mut String, steps: &[StepReport], end: f64) {
    if steps.is_empty() {
        return;
    }
    let row = 20.0;
    let x = |ms: f64| ms / end * WIDTH;
    let axis_y = steps.len() as f64 * row + 2.0;
    let height = axis_y + 16.0;
    let _ = writeln!(
        out,
        "<svg class=\"steps\" width=\"{WIDTH}\" height=\"{height}\" viewBox=\"0 0 {WIDTH} {height}\" role=\"img\" \
         aria-label=\"recovery steps\">"
    );
    for (i, s) in steps.iter().enumerate() {
        let y = i as f64 * row;
        let (start, stop) = (s.started_at_ms, s.started_at_ms + s.duration_ms.unwrap_or(0.0));
        let class = if !s.ok {
            "step failed"
        } else if s.over_budget() {
            "step over"
        } else {
            "step"
        };
        let name = match &s.target {
            Some(target) => format!("{}. {} {}", s.step, s.action, target),
            None => format!("{}. {}", s.step, s.action),
        };
        let took = s.duration_ms.map_or("did not end".into(), human);
        let budget = s.budget_ms.map_or(String::new(), |b| format!(" (budget {})", human(b)));
        let caption = format!("{} — {took}", truncate(&name, 34));
        let (text_x, anchor) = if x(stop) < WIDTH * 0.65 { (x(stop) + 4.0, "start") } else { (x(start) - 4.0, "end") };
        let _ = writeln!(
            out,
            "<rect class=\"{class}\" x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{}\"><title>{}: {took}{budget}{}\
             </title></rect><text x=\"{text_x:.1}\" y=\"{:.1}\" text-anchor=\"{anchor}\">{}</text>",
            x(start),
            y + 3.0,
            (x(stop) - x(start)).max(1.0),
            row - 6.0,
            esc(&name),
            if s.detail.is_empty() { String::new() } else { format!(" — {}", esc(&s.detail)) },
            y + 14.0,
            esc(&caption),
        );
        match s.budget_ms.map(|b| (b, start + b)) {
            Some((_, due)) if due <= end => {
                let _ = writeln!(
                    out,
                    "<line class=\"budget\" x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"{1:.1}\" y2=\"{2:.1}\"/>",
                    x(due),
                    y + 1.0,
                    y + row - 1.0
                );
            }
            Some((budget, _)) => {
                let _ = writeln!(
                    out,
                    "<text class=\"budget-beyond\" x=\"{WIDTH}\" y=\"{:.1}\" text-anchor=\"end\">budget {} →</text>",
                    y + 14.0,
                    human(budget)
                );
            }
            None => {}
        }
    }
    axis(out, end, axis_y, x);
    out.push_str("</svg>\n");
}

fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    text.chars().take(max - 1).chain(['…']).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_in_names_and_details() {
        assert_eq!(esc("<a href=\"x\">&'"), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;");
    }

    /// A 3 s trial: a kill at 800 ms recovered at 1.2 s, a stale lock at
    /// 2 s recovered at 2.4 s and healed only when the trial ended (3.5 s),
    /// a `wait` step from 2.0 to 3.0 s, and red ops under the first band.
    fn trial() -> TrialReport {
        let fault = |kind: &str, at: f64, rto: f64, healed: Option<f64>| {
            serde_json::json!({ "kind": kind, "target": "kv", "scheduled_at_ms": at, "injected_at_ms": at,
                "healed_at_ms": healed, "ttd_ms": 3.0, "restart_ms": 4.0, "rto_ms": rto, "rto_from_heal_ms": null })
        };
        let mut ok = vec![30u32; 30];
        let mut not_ok = vec![0u32; 30];
        for i in 8..12 {
            (ok[i], not_ok[i]) = (0, 30);
        }
        serde_json::from_value(serde_json::json!({
            "index": 0, "seed": 1, "verdict": "pass", "rto_ms": 400.0, "ttd_ms": 3.0,
            "faults": [fault("kill", 800.0, 400.0, None), fault("stale-lock", 2000.0, 400.0, Some(3500.0))],
            "rpo": { "acked_writes": 900, "unknown_writes": 0, "read_back": true },
            "ops": { "invoked": 900, "ok": 780, "fail": 120, "unknown": 0 },
            "checks": [],
            "availability": { "bucket_ms": 100.0, "ok": ok, "not_ok": not_ok },
            "recovery": [{ "step": 1, "action": "wait", "target": "kv", "started_at_ms": 2000.0,
                "duration_ms": 1000.0, "ok": true, "detail": "", "budget_ms": 60000.0 }],
        }))
        .unwrap()
    }

    /// The x of the first `<tag class="class"` in `svg`, as drawn.
    fn x_of(svg: &str, class: &str) -> f64 {
        let at = svg.find(&format!("class=\"{class}\"")).unwrap_or_else(|| panic!("no {class} in {svg}"));
        let rest = &svg[at..];
        let x = &rest[rest.find(" x=\"").unwrap() + 4..];
        x[..x.find('"').unwrap()].parse().unwrap()
    }

    #[test]
    fn steps_are_drawn_on_the_timelines_scale_and_origin() {
        let t = trial();
        let mut out = String::new();
        trial_details(&mut out, &t);
        let (timeline, steps) = out.split_at(out.find("class=\"steps\"").unwrap());
        // The stale lock's band and the wait step both begin at 2.0 s.
        let band = timeline.match_indices("class=\"fault-band\"").nth(1).unwrap().0;
        assert_eq!(x_of(&timeline[band..], "fault-band"), x_of(steps, "step"));
        assert!(steps.contains(">2.0s<"), "the steps have the timeline's axis: {steps}");
        assert!(steps.contains("budget 60.0s →"), "a budget beyond the trial is an arrow: {steps}");
    }

    #[test]
    fn fault_bands_lie_behind_the_ops_and_end_at_recovery_when_healed_only_at_the_end() {
        let t = trial();
        let mut out = String::new();
        timeline(&mut out, &t);
        let (last_band, ops) = (out.rfind("class=\"fault-band\"").unwrap(), out.find("class=\"not-ok\"").unwrap());
        assert!(last_band < ops, "bands are drawn first, under the failed ops");
        let end = trial_end(&t);
        let band = &out[last_band..];
        let width: f64 = band[band.find("width=\"").unwrap() + 7..].split('"').next().unwrap().parse().unwrap();
        let expected = 400.0 / end * WIDTH;
        assert!((width - expected).abs() < 0.2, "the stale lock's band ends at recovery: {width} vs {expected}");
        assert!(band.contains("healed at the end of the trial, 3.5s"), "{band}");
    }

    #[test]
    fn histogram_labels_mark_the_edges_around_each_bar() {
        let mut report: RunReport = serde_json::from_value(serde_json::json!({
            "format_version": 1, "scenario": "h", "seed": 1, "verdict": "pass", "interrupted": false, "error": null,
            "trials": [], "expectations": [],
            "summary": { "trials": 0, "never_recovered": 0, "rto_ms": {"count": 0}, "ttd_ms": {"count": 0},
                "lost_acked": {"count": 0}, "window_ms": {"count": 0} }
        }))
        .unwrap();
        for (i, rto) in [400.0, 473.0, 581.0, 700.0, 900.0].iter().enumerate() {
            let mut t = trial();
            (t.index, t.rto_ms) = (i as u32, Some(*rto));
            report.trials.push(t);
        }
        let mut out = String::new();
        rto_histogram(&mut out, &report);
        // Five bins of 100 ms from 400: 581 ms is drawn in the second bar,
        // between the edges labelled 500ms and 600ms, under its edges (it
        // was drawn under a label of its bar's start alone, centred).
        let label_x = |text: &str| x_of(&out[out.find(&format!(">{text}<")).unwrap() - 60..], "edge");
        let column = WIDTH / 5.0;
        assert_eq!((label_x("600ms") - label_x("500ms")), column);
        assert_eq!(label_x("500ms"), column);
        let second_bar = out.match_indices("class=\"bar\"").nth(1).unwrap().0;
        assert!(out[second_bar..].starts_with("class=\"bar\" x=\"161.0\""), "{}", &out[second_bar..second_bar + 60]);
    }

    #[test]
    fn axis_ticks_are_round() {
        let mut out = String::new();
        axis(&mut out, 2500.0, 0.0, |ms| ms);
        assert!(out.contains(">500ms<") && out.contains(">2.5s<") && !out.contains(">3.0s<"), "{out}");
    }
}
