//! `junit.xml`: what CI systems show as test results. Each expectation is a
//! test case (failed: observed against expected; unknown: an error, since
//! nothing was decided), each trial one more, failing with the checks it
//! failed; RTO and RPO figures are properties of the suite.

use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};

use crate::{RunReport, Stats, Verdict};

fn status(verdict: Verdict, message: String) -> TestCaseStatus {
    let kind = match verdict {
        Verdict::Pass => return TestCaseStatus::success(),
        Verdict::Fail => NonSuccessKind::Failure,
        Verdict::Unknown | Verdict::Aborted => NonSuccessKind::Error,
    };
    let mut status = TestCaseStatus::non_success(kind);
    status.set_message(message);
    status
}

fn stat_properties(suite: &mut TestSuite, name: &str, s: &Stats) {
    for (stat, value) in [("p50", s.p50), ("p95", s.p95), ("max", s.max)] {
        if let Some(v) = value {
            suite.add_property((format!("{name}.{stat}"), format!("{v:.3}")));
        }
    }
}

pub fn render_junit(report: &RunReport) -> String {
    let mut suite = TestSuite::new(report.scenario.clone());
    suite.add_property(("seed", report.seed.to_string().as_str()));
    suite.add_property(("verdict", report.verdict.as_str()));
    stat_properties(&mut suite, "rto_ms", &report.summary.rto_ms);
    stat_properties(&mut suite, "lost_acked", &report.summary.lost_acked);
    stat_properties(&mut suite, "window_ms", &report.summary.window_ms);
    for e in &report.expectations {
        let message = format!("expected {}, observed {} (worst trial)", e.expected, e.observed);
        let mut case = TestCase::new(format!("expect {}", e.expected), status(e.verdict, message));
        case.set_classname(report.scenario.clone());
        suite.add_test_case(case);
    }
    for t in &report.trials {
        let failed: Vec<String> = t
            .checks
            .iter()
            .filter(|c| c.verdict != Verdict::Pass)
            .map(|c| format!("{} {}: expected {}, observed {}", c.name, c.verdict.as_str(), c.expected, c.observed))
            .collect();
        let mut case =
            TestCase::new(format!("trial {} (seed {})", t.index, t.seed), status(t.verdict, failed.join("; ")));
        case.set_classname(report.scenario.clone());
        if let Some(rto) = t.rto_ms {
            case.add_property(("rto_ms", format!("{rto:.3}").as_str()));
        }
        for (i, f) in t.faults.iter().enumerate() {
            for (name, value) in f.figures(true).iter().filter_map(|(n, v)| v.map(|v| (n, v))) {
                case.add_property((format!("fault.{}.{name}", i + 1).as_str(), format!("{value:.3}").as_str()));
            }
        }
        if let Some(lost) = t.rpo.lost_acked {
            case.add_property(("lost_acked", lost.to_string().as_str()));
        }
        if !t.target_logs.is_empty() {
            let logs: Vec<String> = t.target_logs.values().flatten().cloned().collect();
            case.set_system_out(logs.join("\n"));
        }
        suite.add_test_case(case);
    }
    if let Some(error) = &report.error {
        suite.set_system_err(error.clone());
    }
    let mut junit = Report::new(format!("crashlab {}", report.scenario));
    junit.add_test_suite(suite);
    junit.to_string().expect("a report serializes")
}
