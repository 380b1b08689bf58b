//! Measurement truth: what the harness reports agrees with what happened to
//! the target (issue 13).

mod common;

use common::{run, write_scenario};
use serde_json::Value;

/// An offline corruption holds the target and lets it go again (a restart
/// is then pending); the runbook stops it at once, runs a long "fix" and
/// starts it. The pending restart must not sneak in during the fix.
const HELD: &str = r#"
name = "held-stays-down"
[target.kv]
command = ["crashlab", "demo-kv", "--port", "{port}", "--data-dir", "{data_dir}", "--on-corruption", "truncate"]
restart = { delay = "0ms" }
probe = { kind = "demo-kv", interval = "5ms", healthy_after = 2 }
[workload]
kind = "demo-kv"
target = "kv"
rate = 200
duration = "2s"
[[fault]]
kind = "corrupt"
target = "kv"
path = "wal.log"
mode = "bitflip"
when = "offline"
at = "500ms"
[[recover]]
action = "stop"
target = "kv"
[[recover]]
action = "run"
target = "kv"
command = ["sleep", "0.4"]
[[recover]]
action = "start"
target = "kv"
[[recover]]
action = "wait"
target = "kv"
"#;

fn time_of(events: &[Value], matches: impl Fn(&Value) -> bool) -> Option<f64> {
    events.iter().find(|e| matches(e)).and_then(|e| e["t_ms"].as_f64())
}

#[test]
fn a_held_target_stays_down_until_the_procedure_starts_it() {
    let tmp = tempfile::tempdir().unwrap();
    let path = write_scenario(tmp.path(), "held.toml", HELD);
    let r = run(&path, &["--trials", "8", "--seed", "5"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout(), r.stderr());
    for trial in 0..8 {
        let events = r.history(trial);
        let step = |n: u64| move |e: &Value| e["event"] == "recover_started" && e["step"] == n;
        let stopped = time_of(&events, step(1)).expect("the stop step ran");
        let started = time_of(&events, step(3)).expect("the start step ran");
        let sneaked: Vec<f64> = events
            .iter()
            .filter(|e| e["event"] == "target_started")
            .filter_map(|e| e["t_ms"].as_f64())
            .filter(|t| *t > stopped && *t < started)
            .collect();
        assert!(
            sneaked.is_empty(),
            "trial {trial}: the target started at {sneaked:?} ms, between the stop ({stopped:.1} ms) and the \
             start ({started:.1} ms) of the procedure"
        );
    }
}

#[test]
fn a_corruption_that_changed_nothing_leaves_the_trial_unknown() {
    let tmp = tempfile::tempdir().unwrap();
    // The file is zeros already: zeroing it damages nothing.
    let scenario = r#"
name = "zero-on-zeros"
[target.kv]
command = ["crashlab", "demo-kv", "--port", "{port}", "--data-dir", "{data_dir}"]
before_start = [["sh", "-c", "head -c 8192 /dev/zero > {data_dir}/zeros.dat"]]
probe = { kind = "demo-kv", interval = "5ms", healthy_after = 2 }
[workload]
kind = "demo-kv"
target = "kv"
rate = 100
duration = "1s"
[[fault]]
kind = "corrupt"
target = "kv"
path = "zeros.dat"
mode = "zero"
offset = 100
length = 64
at = "300ms"
"#;
    let path = write_scenario(tmp.path(), "zeros.toml", scenario);
    let r = run(&path, &["--trials", "1"]);
    assert_eq!(r.code, 4, "{}", r.stdout());
    assert_eq!(r.trials()[0]["verdict"], "unknown");
    let failed =
        r.history(0).into_iter().find(|e| e["event"] == "fault_failed").expect("the fault is said to have failed");
    let error = failed["error"].as_str().unwrap();
    assert!(error.contains("the fault had no effect") && error.contains("changed nothing"), "{error}");
}
