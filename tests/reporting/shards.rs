//! Sharded runs: `bench --shard K/N` in three run directories, merged by
//! `crashlab merge`, equal the unsharded bench trial for trial: the same
//! seeds, the same fault schedules, the same verdicts of the deterministic
//! checks. Run as a user would: from a working directory, into the default
//! `crashlab-runs/`, merged by the relative paths the runs printed.

use std::path::Path;

use serde_json::Value;

use crate::common::{crashlab, write_scenario};

/// demo-kv with fsync always, killed at a time drawn from each trial's
/// seed: nothing acknowledged is lost, in every trial.
const SCENARIO: &str = r#"name = "sharded"
[target.kv]
command = ["crashlab", "demo-kv", "--port", "{port}", "--data-dir", "{data_dir}", "--fsync", "always"]
probe = { kind = "demo-kv", interval = "5ms", timeout = "200ms" }
[workload]
kind = "demo-kv"
target = "kv"
rate = 200
duration = "600ms"
[[fault]]
kind = "kill"
target = "kv"
at = "100ms..400ms"
[expect]
lost_acked = 0
rto.p95 = "<= 5s"
[trials]
count = 6
"#;

/// Runs crashlab in `cwd`: exit code, stdout, stderr.
fn crashlab_in(cwd: &Path, args: &[&str]) -> (i32, String, String) {
    let out = crashlab().current_dir(cwd).args(args).output().unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

/// The run directory a command printed, as it printed it.
fn run_dir(stdout: &str) -> String {
    stdout.lines().find_map(|l| l.strip_prefix("run directory: ")).expect("a run directory").to_string()
}

/// A trial as the shards must reproduce it: its seed, its fault schedule
/// and the verdicts of its checks (name, verdict).
type Trial = (u64, Value, Vec<(String, String)>);

/// The trials of a run, in index order.
fn trials(dir: &Path) -> Vec<Trial> {
    let report: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap();
    let history = std::fs::read_to_string(dir.join("history.jsonl")).unwrap();
    let started: Vec<Value> = history
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["event"] == "trial_started")
        .collect();
    report["trials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let start = started.iter().find(|e| e["trial"] == t["index"]).expect("the trial's start in the history");
            assert_eq!(start["seed"], t["seed"]);
            let checks = t["checks"].as_array().unwrap();
            let verdicts = checks.iter().map(|c| (c["name"].to_string(), c["verdict"].to_string())).collect();
            (t["seed"].as_u64().unwrap(), start["scheduled_ms"].clone(), verdicts)
        })
        .collect()
}

#[test]
fn three_shards_merged_are_the_unsharded_bench_trial_for_trial() {
    let _serial = crate::common::serial();
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    write_scenario(cwd, "sharded.toml", SCENARIO);
    let (code, out, err) = crashlab_in(cwd, &["bench", "sharded.toml", "--seed", "11"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let whole = run_dir(&out);

    let mut shards = Vec::new();
    for k in 1..=3 {
        let (code, out, err) =
            crashlab_in(cwd, &["bench", "sharded.toml", "--seed", "11", "--shard", &format!("{k}/3")]);
        assert_eq!(code, 0, "{out}\n{err}");
        assert!(out.contains(&format!("shard {k}/3 of 6 trial(s)")), "{out}");
        shards.push(run_dir(&out));
    }
    // Shard 2 of 3 holds trials 1 and 4.
    let second: Vec<u64> = trials(&cwd.join(&shards[1])).iter().map(|t| t.0).collect();
    assert_eq!(second, [1, 4].map(|i| trials(&cwd.join(&whole))[i].0));

    // Given in any order.
    let mut args = vec!["merge", &shards[2], &shards[0], &shards[1]];
    let (code, out, err) = crashlab_in(cwd, &args);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("merged from 3 run directories") && out.contains("wall "), "{out}");
    let merged = cwd.join(run_dir(&out));
    assert_eq!(trials(&merged), trials(&cwd.join(&whole)), "the merge is the unsharded run, trial for trial");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(merged.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["summary"]["trials"], 6);
    assert_eq!(report["merged_from"].as_array().unwrap().len(), 3);
    let bench: Value = serde_json::from_str(&std::fs::read_to_string(merged.join("bench.json")).unwrap()).unwrap();
    assert_eq!(bench["rto_ms"]["stats"]["count"], 6, "{bench}");
    for file in ["junit.xml", "summary.md", "metrics.prom", "report.html"] {
        assert!(merged.join(file).is_file(), "{file}");
    }
    // `analyze` of the merge judges the same.
    let (code, out, _) = crashlab_in(cwd, &["analyze", merged.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");

    // The merge is a gate: compared with a baseline, a regression exits 1.
    args.extend(["--baseline", &whole]);
    let (code, out, err) = crashlab_in(cwd, &args);
    assert!(
        out.contains("rto against the baseline: median"),
        "{out}
{err}"
    );
    assert_eq!(code == 1, out.contains("REGRESSED"), "exit {code}: {out}");
}

#[test]
fn a_merge_refuses_what_is_not_the_whole_run() {
    let _serial = crate::common::serial();
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    write_scenario(cwd, "sharded.toml", &SCENARIO.replace("count = 6", "count = 3"));

    // No seed the shards share: refused before anything is made.
    let (code, _, err) = crashlab_in(cwd, &["run", "sharded.toml", "--shard", "1/3"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("pass --seed S (the same to every shard)"), "{err}");
    let (code, _, err) = crashlab_in(cwd, &["run", "sharded.toml", "--seed", "1", "--shard", "1/4"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("3 trial(s) cannot fill 4 shards"), "{err}");
    let (code, _, err) = crashlab_in(cwd, &["run", "sharded.toml", "--seed", "1", "--shard", "0/3"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("expected K/N"), "{err}");
    assert!(!cwd.join("crashlab-runs").exists(), "nothing was started");

    let shard = |k: u32, seed: &str| {
        let (code, out, err) = crashlab_in(cwd, &["run", "sharded.toml", "--seed", seed, "--shard", &format!("{k}/3")]);
        assert_eq!(code, 0, "{out}\n{err}");
        run_dir(&out)
    };
    let (one, two, three, other_seed) = (shard(1, "5"), shard(2, "5"), shard(3, "5"), shard(3, "6"));
    let (code, out, _) = crashlab_in(cwd, &["run", "sharded.toml", "--seed", "5"]);
    assert_eq!(code, 0, "{out}");
    let unsharded = run_dir(&out);

    let refused = |dirs: &[&str], why: &str| {
        let mut args = vec!["merge"];
        args.extend(dirs);
        let (code, out, err) = crashlab_in(cwd, &args);
        assert_eq!(code, 2, "merge {dirs:?}: {out}\n{err}");
        assert!(err.contains(why), "merge {dirs:?}: {err}");
    };
    refused(&[&one, &two], "shard(s) 3 of 3 missing");
    refused(&[&one, &two, &three, &one], "shard 1/3 is given twice");
    refused(&[&one, &two, &other_seed], "seed 6, not 5");
    refused(&[&one, &two, &unsharded], "not a shard of a run");
    refused(&[&one, "no-such-dir"], "cannot read report.json");
    refused(&[&one, &two, &three, "--baseline", &unsharded], "--baseline compares benches");
    let runs = std::fs::read_dir(cwd.join("crashlab-runs")).unwrap().count();
    assert_eq!(runs, 5, "a refused merge makes no run directory");
    let (code, out, err) = crashlab_in(cwd, &["merge", &one, &two, &three]);
    assert_eq!(code, 0, "{out}\n{err}");
}
