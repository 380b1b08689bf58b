//! What a trial costs beyond the service's own work, as crashlab runs it:
//! `crashlab bench` (the release binary) on scenarios of the quickstart's
//! shape, phases read from each trial's history, against the floor (bare
//! spawns of as many demo-kv until each first accepts a connection)
//! measured in the same run. Start-up also proves health: `healthy_after`
//! samples at the probe's interval (3 at 5 ms: 10 ms beyond the floor).
//!
//!     cargo bench --bench trial_overhead
//!
//! `CRASHLAB_BENCH_BINARY=<path>` measures another build of crashlab (an
//! earlier commit's, for a before/after in the same session).
//!
//! Shapes: the quickstart's (one target killed in a 200 ms workload), and 1
//! / 4 / 16 demo-kv targets with a 200 ms workload on the first and no
//! fault (what each extra target adds to start-up and teardown). Phases,
//! medians over the trials:
//! - start-up: the trial's start to the workload's (targets started and
//!   proven healthy);
//! - recovery: the workload's end to the read-back (recovery proven);
//! - teardown: the read-back to the trial's end (targets stopped, logs
//!   kept, faults healed);
//! - overhead: the whole trial less the workload's duration.

use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The crashlab measured: this build, or the one the environment names.
fn crashlab() -> String {
    std::env::var("CRASHLAB_BENCH_BINARY").unwrap_or_else(|_| env!("CARGO_BIN_EXE_crashlab").to_string())
}
const TRIALS: u32 = 15;
const WORKLOAD_MS: f64 = 200.0;

fn target(name: &str) -> String {
    format!(
        "[target.{name}]\nkind = \"process\"\n\
         command = [\"crashlab\", \"demo-kv\", \"--port\", \"{{port}}\", \"--data-dir\", \"{{data_dir}}\", \"--fsync\", \"always\"]\n\
         restart = {{ policy = \"always\", delay = \"0ms\" }}\n\
         probe = {{ kind = \"demo-kv\", interval = \"5ms\", timeout = \"200ms\", healthy_after = 3 }}\n\n"
    )
}

/// `targets` demo-kv targets, the workload on the first; killed at 100 ms
/// if `kill`.
fn scenario(targets: usize, kill: bool) -> String {
    let mut s = format!("name = \"overhead\"\ndescription = \"{targets} target(s)\"\n\n");
    for i in 0..targets {
        s += &target(&format!("kv{i}"));
    }
    s += &format!("[workload]\nkind = \"demo-kv\"\ntarget = \"kv0\"\nrate = 500\nduration = \"{WORKLOAD_MS}ms\"\n\n");
    if kill {
        s += "[[fault]]\nkind = \"kill\"\ntarget = \"kv0\"\nsignal = \"SIGKILL\"\nat = \"100ms\"\n\n";
        s += "[expect]\nlost_acked = 0\n";
    }
    s
}

#[derive(Default)]
struct Phases {
    start_up: Vec<f64>,
    recovery: Vec<f64>,
    teardown: Vec<f64>,
    overhead: Vec<f64>,
}

/// Each trial's phases, from the events of its history.
fn phases(history: &Path) -> Phases {
    let mut trials: std::collections::BTreeMap<u64, Vec<(String, f64)>> = Default::default();
    for line in std::fs::read_to_string(history).unwrap().lines() {
        let e: serde_json::Value = serde_json::from_str(line).unwrap();
        let (Some(trial), Some(t), Some(event)) = (e["trial"].as_u64(), e["t_ms"].as_f64(), e["event"].as_str()) else {
            continue;
        };
        trials.entry(trial).or_default().push((event.to_string(), t));
    }
    let mut p = Phases::default();
    for events in trials.values() {
        let at = |name: &str| events.iter().find(|(e, _)| e == name).map(|(_, t)| *t).unwrap();
        let (start, ended) = (at("trial_started"), at("trial_ended"));
        let (workload_end, read_back) = (at("workload_ended"), at("read_back"));
        p.start_up.push(at("workload_started") - start);
        p.recovery.push(read_back - workload_end);
        p.teardown.push(ended - read_back);
        p.overhead.push(ended - start - WORKLOAD_MS);
    }
    p
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Runs `crashlab bench` on the scenario in a fresh directory, as a user
/// runs it (relative path, default run directory).
fn bench(name: &str, text: &str) -> Phases {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(name), text).unwrap();
    let out = Command::new(crashlab())
        .args(["bench", name, "--trials", &TRIALS.to_string(), "--seed", "1"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let said = || format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "crashlab bench {name}: {}\n{}", out.status, said());
    let runs = dir.path().join("crashlab-runs");
    let run = std::fs::read_dir(&runs).unwrap().flatten().find(|e| e.path().is_dir()).unwrap().path();
    phases(&run.join("history.jsonl"))
}

/// The physical floor of a start-up: spawn `n` demo-kv at once and connect
/// until every one of them first accepts.
fn floor_ms(n: usize) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let mut times = Vec::new();
    for trial in 0..TRIALS {
        let begin = Instant::now();
        let mut spawned = Vec::new();
        for i in 0..n {
            let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let child = Command::new(crashlab())
                .args(["demo-kv", "--port", &port.to_string(), "--data-dir"])
                .arg(dir.path().join(format!("d{trial}-{i}")))
                .args(["--fsync", "always"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            spawned.push((port, child));
        }
        for (port, _) in &spawned {
            while TcpStream::connect(("127.0.0.1", *port)).is_err() {
                assert!(begin.elapsed() < Duration::from_secs(10), "demo-kv never listened");
                std::thread::sleep(Duration::from_micros(100));
            }
        }
        times.push(begin.elapsed().as_secs_f64() * 1000.0);
        for (_, mut child) in spawned {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }
    median(&times)
}

fn main() {
    println!("crashlab: {}", crashlab());
    println!("floor: spawn n demo-kv at once -> each first accepts a connection; medians of {TRIALS} trials\n");
    println!(
        "| shape | floor | start-up | recovery | teardown | overhead | start-up / floor | start-up / 1 target's |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let mut start_up_of_one = None;
    for (label, targets, kill) in
        [("kill, 1 target", 1, true), ("1 target", 1, false), ("4 targets", 4, false), ("16 targets", 16, false)]
    {
        let floor = floor_ms(targets);
        let p = bench("overhead.toml", &scenario(targets, kill));
        let (s, r, t, o) = (median(&p.start_up), median(&p.recovery), median(&p.teardown), median(&p.overhead));
        let one = if kill { s } else { *start_up_of_one.get_or_insert(s) };
        println!(
            "| {label} | {floor:.1} ms | {s:.1} ms | {r:.1} ms | {t:.1} ms | {o:.1} ms | {:.2} | {:.2} |",
            s / floor,
            s / one
        );
    }
}
