//! The report writers on a real run: JUnit XML with the structure CI
//! systems read, the Markdown summary, the Prometheus metrics, and
//! `crashlab report` re-rendering them.

use crate::common;

use common::{crashlab, run, scenario, write_scenario};

#[test]
fn a_failed_expectation_is_a_failed_junit_testcase_with_observed_and_expected() {
    let tmp = tempfile::tempdir().unwrap();
    // The calibration service recovers in ~400 ms: a 100 ms bound must fail.
    let text = std::fs::read_to_string(scenario("calibration-rto-400ms.toml")).unwrap().replace("<= 460ms", "<= 100ms");
    let path = write_scenario(tmp.path(), "too-strict.toml", &text);
    let r = run(&path, &["--trials", "2", "--seed", "50"]);
    assert_eq!(r.code, 1, "{}", r.stdout());

    let xml = std::fs::read_to_string(r.dir.join("junit.xml")).unwrap();
    let doc = roxmltree::Document::parse(&xml).expect("junit.xml is well-formed XML");
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "testsuites");
    let suites: Vec<_> = root.children().filter(|n| n.has_tag_name("testsuite")).collect();
    assert_eq!(suites.len(), 1);
    let suite = suites[0];
    assert_eq!(suite.attribute("name"), Some("calibration-rto-400ms"));
    let cases: Vec<_> = suite.children().filter(|n| n.has_tag_name("testcase")).collect();
    // Two expectations and two trials, each a testcase with a name and a classname.
    assert_eq!(cases.len(), 4);
    assert_eq!(suite.attribute("tests"), Some("4"));
    assert!(cases.iter().all(|c| c.attribute("name").is_some() && c.attribute("classname").is_some()));
    let rto = cases.iter().find(|c| c.attribute("name") == Some("expect rto <= 100ms")).expect("the rto testcase");
    let failure = rto.children().find(|n| n.has_tag_name("failure")).expect("a failure element");
    let message = failure.attribute("message").unwrap();
    assert!(message.starts_with("expected rto <= 100ms, observed 4"), "{message}");
    let lost = cases.iter().find(|c| c.attribute("name") == Some("expect lost_acked == 0")).unwrap();
    assert!(lost.children().all(|n| !n.has_tag_name("failure")), "the met expectation passes");
    let failures: usize = suite.attribute("failures").unwrap().parse().unwrap();
    assert_eq!(failures, 3, "the rto expectation and both trials failed");
    let property = |name: &str| {
        suite.descendants().find(|n| n.has_tag_name("property") && n.attribute("name") == Some(name)).is_some()
    };
    assert!(property("rto_ms.p50") && property("seed"));

    let md = std::fs::read_to_string(r.dir.join("summary.md")).unwrap();
    assert!(md.contains("— FAIL") && md.contains("| `rto <= 100ms` |") && md.contains("### What did not pass"), "{md}");

    let prom = std::fs::read_to_string(r.dir.join("metrics.prom")).unwrap();
    for line in prom.lines().filter(|l| !l.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ').unwrap();
        assert!(value.parse::<f64>().is_ok(), "{line}");
        assert!(series.starts_with("crashlab_") && series.contains("{scenario=\"calibration-rto-400ms\""), "{line}");
    }
    assert!(prom.contains("crashlab_passed{scenario=\"calibration-rto-400ms\"} 0"));

    // Re-rendered from report.json alone, the files come out the same.
    std::fs::remove_file(r.dir.join("junit.xml")).unwrap();
    let out = crashlab().arg("report").arg(&r.dir).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(std::fs::read_to_string(r.dir.join("junit.xml")).unwrap(), xml);
    let printed = crashlab().args(["report", "--format", "markdown"]).arg(&r.dir).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&printed.stdout), md);
}
