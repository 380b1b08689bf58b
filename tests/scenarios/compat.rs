//! `history.jsonl` and `report.json` are contracts: what a run wrote before
//! a change must read, check and render the same after it. The fixture under
//! `tests/fixtures/compat/recorded/` was written by `crashlab run` at 1d25d14
//! (before the refactor of issue 14): a seeded two-trial run with a backup, a
//! pause, an offline corruption and a five-step recovery procedure. Its
//! report.json and report.html were rendered again by `crashlab analyze`
//! when a fault's detail came to include what its heal said (issue 16):
//! the only difference, the corruption's detail; and report.html again
//! for the style of the `aborted` verdict.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::Value;

fn recorded(file: &str) -> String {
    std::fs::read_to_string(common::fixture("compat/recorded").join(file)).expect("a recorded file")
}

/// Every line of the recorded history parses into the history's types and
/// serializes back to the same bytes: no field renamed, reordered, added or
/// dropped.
#[test]
fn the_recorded_history_reads_and_writes_back_byte_for_byte() {
    let history = recorded("history.jsonl");
    let mut kinds = BTreeSet::new();
    for (n, line) in history.lines().enumerate() {
        let event: crashlab::history::Event =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("line {}: {e}: {line}", n + 1));
        assert_eq!(serde_json::to_string(&event).unwrap(), line, "line {}", n + 1);
        kinds.insert(serde_json::from_str::<Value>(line).unwrap()["event"].as_str().unwrap().to_string());
    }
    // The fixture is worth something only if it holds the common events.
    for kind in ["trial_started", "probe", "invoke", "complete", "fault_injected", "fault_healed", "backup_taken"] {
        assert!(kinds.contains(kind), "the fixture has no `{kind}` event: {kinds:?}");
    }
}

/// `crashlab analyze` checks the recorded history again and writes every
/// report format: each is byte-identical to what the run wrote then.
#[test]
fn analyze_reproduces_every_recorded_report_byte_for_byte() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    std::fs::create_dir(&dir).unwrap();
    for file in ["scenario.toml", "history.jsonl", "report.json"] {
        std::fs::write(dir.join(file), recorded(file)).unwrap();
    }
    let out = common::crashlab().arg("analyze").arg(&dir).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    for file in ["report.json", "junit.xml", "summary.md", "metrics.prom", "report.html"] {
        let now = std::fs::read_to_string(dir.join(file)).unwrap();
        let then = recorded(file);
        if now != then {
            let line = now.lines().zip(then.lines()).position(|(a, b)| a != b).unwrap_or(0);
            panic!(
                "{file} differs from the recorded one at line {}:\n now: {}\nthen: {}",
                line + 1,
                now.lines().nth(line).unwrap_or("<end>"),
                then.lines().nth(line).unwrap_or("<end>")
            );
        }
    }
}

/// Each field a JSON value holds, as a path with array indices folded, and
/// the JSON type found there.
fn shape(value: &Value, path: String, out: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                shape(v, format!("{path}.{k}"), out);
            }
        }
        Value::Array(items) => {
            for v in items {
                shape(v, format!("{path}[]"), out);
            }
        }
        Value::Null => {
            out.insert(format!("{path}: null"));
        }
        Value::Bool(_) => {
            out.insert(format!("{path}: bool"));
        }
        Value::Number(_) => {
            out.insert(format!("{path}: number"));
        }
        Value::String(_) => {
            out.insert(format!("{path}: string"));
        }
    }
}

/// Each field of a report and the types it holds, a null being a number or
/// string that was not measured this time (a TTD, an RTO that never came).
fn typed_paths(report: &Value) -> BTreeMap<String, BTreeSet<String>> {
    let mut fields = BTreeSet::new();
    shape(report, String::new(), &mut fields);
    let mut paths: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for field in fields {
        let (path, kind) = field.rsplit_once(": ").unwrap();
        let types = paths.entry(path.to_string()).or_default();
        if kind != "null" {
            types.insert(kind.to_string());
        }
    }
    paths
}

/// Per event kind, the fields its events carry.
fn event_shapes(history: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut shapes: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in history.lines() {
        let event: Value = serde_json::from_str(line).unwrap();
        let kind = event["event"].as_str().unwrap().to_string();
        shape(&event, String::new(), shapes.entry(kind).or_default());
    }
    shapes
}

/// The checks of each trial: name and verdict (timings vary run to run).
fn checks(report: &Value) -> Vec<Vec<(String, String)>> {
    let trials = report["trials"].as_array().unwrap();
    trials
        .iter()
        .map(|t| {
            let checks = t["checks"].as_array().unwrap();
            checks.iter().map(|c| (c["name"].to_string(), c["verdict"].to_string())).collect()
        })
        .collect()
}

/// A fresh run of the same seeded scenario writes the same kinds of events
/// with the same fields, and a report of the same shape with the same checks
/// and verdicts: only timings (and what follows from them) differ.
#[test]
fn a_fresh_run_writes_what_the_recorded_run_wrote_but_timings() {
    let _serial = common::serial();
    let run = common::run(&common::fixture("compat/scenario.toml"), &[]);
    assert_eq!(run.code, 0, "{}", run.stderr());
    let history = std::fs::read_to_string(run.dir.join("history.jsonl")).unwrap();
    let (now, then) = (event_shapes(&history), event_shapes(&recorded("history.jsonl")));
    assert_eq!(now.keys().collect::<Vec<_>>(), then.keys().collect::<Vec<_>>(), "the kinds of events");
    for (kind, fields) in &now {
        let new: Vec<_> = fields.difference(&then[kind]).collect();
        assert!(new.is_empty(), "`{kind}` events carry fields the recorded run did not write: {new:?}");
    }
    let then: Value = serde_json::from_str(&recorded("report.json")).unwrap();
    let (now, then_paths) = (typed_paths(&run.json), typed_paths(&then));
    assert_eq!(now.keys().collect::<Vec<_>>(), then_paths.keys().collect::<Vec<_>>(), "report.json's fields");
    for (path, types) in &now {
        let recorded = &then_paths[path];
        let both_measured = !types.is_empty() && !recorded.is_empty();
        assert!(!both_measured || types == recorded, "report.json's {path}: {types:?}, recorded {recorded:?}");
    }
    assert_eq!(checks(&run.json), checks(&then), "each trial's checks and verdicts");
    assert_eq!(run.json["verdict"], then["verdict"]);
    assert!(Path::new(&run.dir.join("report.html")).exists());
}

/// Compares `now` with the snapshot file `name` under tests/fixtures/;
/// `CRASHLAB_UPDATE_SNAPSHOTS=1` rewrites it instead (then review the diff).
fn assert_snapshot(name: &str, now: &str) {
    let path = common::fixture(name);
    if std::env::var_os("CRASHLAB_UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&path, now).unwrap();
        return;
    }
    let then = std::fs::read_to_string(&path).unwrap();
    if now != then {
        let line = now.lines().zip(then.lines()).position(|(a, b)| a != b).unwrap_or(now.lines().count());
        panic!(
            "{name} differs at line {} (CRASHLAB_UPDATE_SNAPSHOTS=1 rewrites it):\n now: {}\nthen: {}",
            line + 1,
            now.lines().nth(line).unwrap_or("<end>"),
            then.lines().nth(line).unwrap_or("<end>")
        );
    }
}

/// The terminal summary `analyze` prints for the recorded run.
#[test]
fn the_terminal_summary_reads_as_recorded() {
    let tmp = tempfile::tempdir().unwrap();
    for file in ["scenario.toml", "history.jsonl", "report.json"] {
        std::fs::write(tmp.path().join(file), recorded(file)).unwrap();
    }
    let out = common::crashlab().arg("analyze").arg(tmp.path()).output().unwrap();
    assert_snapshot("compat/recorded/analyze.stdout", &String::from_utf8_lossy(&out.stdout));
}

/// Every diagnostic of the invalid fixtures, as `crashlab validate` prints
/// them from the fixtures' directory, with their exit codes.
#[test]
fn diagnostics_read_as_recorded() {
    let dir = common::fixture("");
    let mut files: Vec<_> = std::fs::read_dir(dir.join("invalid")).unwrap().map(|e| e.unwrap().file_name()).collect();
    files.sort();
    let mut text = String::new();
    for file in files {
        let relative = Path::new("invalid").join(&file);
        let out = common::crashlab().current_dir(&dir).arg("validate").arg(&relative).output().unwrap();
        text.push_str(&String::from_utf8_lossy(&out.stdout));
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        text.push_str(&format!("exit {}\n", out.status.code().unwrap_or(-1)));
    }
    assert_snapshot("snapshots/validate-invalid.txt", &text);
}
