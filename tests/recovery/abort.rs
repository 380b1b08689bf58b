//! `[abort]`: the run stops itself, every fault healed at once, verdict
//! `aborted`, exit 5. Each condition is shown firing, and not firing when
//! its bound holds.

use crate::common;

use common::{run, write_scenario};
use crashlab::reports::Verdict;
use serde_json::Value;

/// demo-kv paused for 5 s (SIGSTOP): its probe fails from the pause on.
const PAUSED: &str = r#"
name = "abort-test"
[target.kv]
command = ["crashlab", "demo-kv", "--port", "{port}", "--data-dir", "{data_dir}"]
probe = { kind = "demo-kv", interval = "10ms", timeout = "100ms" }
[workload]
kind = "demo-kv"
target = "kv"
rate = 100
duration = "6s"
[[fault]]
kind = "pause"
target = "kv"
duration = "5s"
at = "500ms"
[trials]
count = 3
"#;

fn event_time(events: &[Value], kind: &str) -> f64 {
    events.iter().find(|e| e["event"] == kind).unwrap_or_else(|| panic!("no `{kind}` event"))["t_ms"].as_f64().unwrap()
}

/// A target unhealthy longer than `unhealthy_for`: the pause is healed at
/// once, not after its 5 s, the trial is unknown, and no further trial runs.
#[test]
fn a_target_unhealthy_too_long_aborts_the_run_and_heals_the_fault_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let scenario = format!("{PAUSED}[abort]\nunhealthy_for = \"300ms\"\n");
    let r = run(&write_scenario(tmp.path(), "abort.toml", &scenario), &[]);
    assert_eq!(r.code, 5, "{}\n{}", r.stdout(), r.stderr());
    let report = r.report();
    assert_eq!(report.verdict, Verdict::Aborted);
    assert_eq!(report.trials.len(), 1, "no trial after the abort");
    assert_eq!(report.trials[0].verdict, Verdict::Unknown);
    let error = report.error.as_deref().unwrap();
    assert!(error.starts_with("aborted: target `kv` unhealthy for more than 300ms"), "{error}");
    let events = r.history(0);
    let (paused, aborted, healed) =
        (event_time(&events, "fault_injected"), event_time(&events, "aborted"), event_time(&events, "fault_healed"));
    // The probe fails within its 100 ms timeout of the pause; the bound is
    // counted from the first failed sample's start.
    assert!(aborted - paused >= 300.0 && aborted - paused < 1000.0, "aborted {} ms after the pause", aborted - paused);
    assert!(healed - aborted < 200.0, "healed {} ms after the abort, not at once", healed - aborted);
    assert!(r.stderr().contains("crashlab: aborting: target `kv` unhealthy"), "{}", r.stderr());
    // Checked again from its history, the run stays aborted.
    let out = common::crashlab().arg("analyze").arg(&r.dir).output().unwrap();
    assert_eq!(out.status.code(), Some(5), "{}", String::from_utf8_lossy(&out.stderr));
}

/// The same bound, longer than the outage: nothing aborts.
#[test]
fn an_outage_shorter_than_the_bound_does_not_abort() {
    let tmp = tempfile::tempdir().unwrap();
    let scenario = format!("{PAUSED}[abort]\nunhealthy_for = \"8s\"\n").replace("count = 3", "count = 1");
    let r = run(&write_scenario(tmp.path(), "abort.toml", &scenario), &[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout(), r.stderr());
    assert!(r.history(0).iter().all(|e| e["event"] != "aborted"));
}

/// A check command that exits non-zero: the run aborts with its words.
#[test]
fn a_failing_check_command_aborts_the_run_with_its_words() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("slo.sh"), "echo \"p99 over budget at {}\" >&2; exit 1\n").unwrap();
    let scenario = format!("{PAUSED}[abort]\ncommand = [\"sh\", \"slo.sh\", \"{{port.kv}}\"]\ninterval = \"200ms\"\n");
    let r = run(&write_scenario(tmp.path(), "abort.toml", &scenario), &[]);
    assert_eq!(r.code, 5, "{}\n{}", r.stdout(), r.stderr());
    let error = r.report().error.clone().unwrap();
    assert!(error.contains("the abort check `sh slo.sh ") && error.contains("p99 over budget"), "{error}");
    let events = r.history(0);
    let aborted = event_time(&events, "aborted");
    assert!((200.0..1500.0).contains(&aborted), "the first check runs one interval in: {aborted} ms");
}

/// Lost acknowledged writes over the bound, counted between trials: the run
/// stops after the trial that crossed it, which keeps its own verdict.
#[test]
fn lost_acknowledged_writes_over_the_bound_stop_the_run_after_the_trial_that_lost_them() {
    if !common::fuse_available() {
        return;
    }
    let text = std::fs::read_to_string(common::scenario("lose-unsynced-fsync-never.toml")).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let r = run(&write_scenario(tmp.path(), "lossy.toml", &format!("{text}\n[abort]\nlost_acked = 0\n")), &[]);
    assert_eq!(r.code, 5, "{}\n{}", r.stdout(), r.stderr());
    let report = r.report();
    assert_eq!(report.trials.len(), 1, "the first trial lost writes; no second ran");
    let lost = report.trials[0].rpo.lost_acked.unwrap();
    assert!(lost > 0);
    assert_eq!(report.trials[0].verdict, Verdict::Pass, "the trial itself expected the loss");
    let error = report.error.as_deref().unwrap();
    assert_eq!(
        error,
        format!("aborted: {lost} acknowledged write(s) lost over 1 trial(s), more than [abort] lost_acked = 0")
    );
}
