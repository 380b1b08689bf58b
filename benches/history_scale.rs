//! The recorded history at scale: what recording costs in memory per op
//! while a trial runs, on disk per op, and what `crashlab analyze` (the
//! release binary) takes in time and peak memory to check a trial of about
//! a million ops again.
//!
//!     cargo bench --bench history_scale
//!
//! demo-kv runs with `--fsync never` and 8 connections write as fast as it
//! answers, through the same recorder a trial uses (spooled to disk as it
//! happens), until about
//! `CRASHLAB_BENCH_OPS` ops (default 1,000,000) were recorded; the trial's
//! history (its start, the workload, the read-back of the store) is then
//! written as a run directory, read back for the checks as a run's trial is,
//! and analyzed. Issue 19's goals are printed beside the figures: <= 100
//! bytes per op while running, analyze in <= 1 s and <= 200 MB.
//! `CRASHLAB_BENCH_BINARY=<path>` analyzes the same run directory with
//! another build of crashlab too, for a before/after in the same run.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::DemoKvServer;
use crashlab::cancel::Cancel;
use crashlab::history::{EventKind, Recorder};
use crashlab::workload::{drive, Pace, Workload};

const CONNECTIONS: u32 = 8;

const SCENARIO: &str = r#"name = "history-scale"
description = "demo-kv written as fast as it answers, no fault"

[target.kv]
command = ["crashlab", "demo-kv", "--port", "{port}", "--data-dir", "{data_dir}", "--fsync", "never"]
probe = { kind = "demo-kv" }

[workload]
kind = "demo-kv"
target = "kv"
duration = "10s"
"#;

/// This process's resident memory, in bytes.
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

/// `crashlab analyze` of a run directory given later. It is started at
/// once, while this process is small, and waits: a child's peak memory as
/// the kernel reports it includes the peak of the process it was started
/// from (recorded when it execs), and this one's holds a recorded trial.
struct Analyzer {
    binary: String,
    child: std::process::Child,
}

impl Analyzer {
    fn start(binary: &str) -> Self {
        let child = Command::new("sh")
            .args(["-c", r#"read -r dir && exec "$0" analyze "$dir""#, binary])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        Analyzer { binary: binary.to_string(), child }
    }

    /// Analyzes `dir`: the wall time in seconds and the peak resident
    /// memory in MB of the analysis alone (from `wait4`).
    fn run(mut self, dir: &std::path::Path) -> (f64, f64) {
        let started = Instant::now();
        writeln!(self.child.stdin.take().unwrap(), "{}", dir.display()).unwrap();
        let pid = self.child.id() as i32;
        // SAFETY: waits for this process's own child, filling a zeroed
        // status and rusage; the child is not waited for again.
        let (status, usage) = unsafe {
            let (mut status, mut usage): (i32, nix::libc::rusage) = (0, std::mem::zeroed());
            assert_eq!(nix::libc::wait4(pid, &mut status, 0, &mut usage), pid);
            (status, usage)
        };
        let seconds = started.elapsed().as_secs_f64();
        // Every acknowledged write is read back: the checks pass.
        let passed = nix::libc::WIFEXITED(status) && nix::libc::WEXITSTATUS(status) == 0;
        assert!(passed, "{} analyze: {status:#x}", self.binary);
        (seconds, usage.ru_maxrss as f64 * 1024.0 / 1e6)
    }
}

fn main() {
    let ops_wanted: u64 = std::env::var("CRASHLAB_BENCH_OPS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let crashlab = env!("CARGO_BIN_EXE_crashlab");
    let analyzer = Analyzer::start(crashlab);
    let other = std::env::var("CRASHLAB_BENCH_BINARY").ok().map(|binary| Analyzer::start(&binary));
    let server = DemoKvServer::start();
    let workload = &server.workload;
    let cancel = Cancel::new();

    // How long to write for: the rate of a short unrecorded run.
    let probe = drive(workload, Pace::AsFastAsPossible, Duration::from_secs(1), CONNECTIONS, None, &cancel);
    let seconds = (ops_wanted as f64 / probe.invoked as f64).clamp(1.0, 120.0);

    let run = tempfile::tempdir().unwrap();
    std::fs::write(run.path().join("scenario.toml"), SCENARIO).unwrap();
    let history_path = run.path().join("history.jsonl");
    // Spooled to disk as it happens, as a run's trial is.
    let recorder = Recorder::spooled(0, run.path().join("history.partial.jsonl"), history_path.clone()).unwrap();
    recorder.record(EventKind::TrialStarted { seed: 0, scheduled_ms: Vec::new() });
    let before = rss();
    let origin = Instant::now();
    recorder.set_origin(origin);
    recorder.record(EventKind::WorkloadStarted);
    let counts = drive(
        workload,
        Pace::AsFastAsPossible,
        Duration::from_secs_f64(seconds),
        CONNECTIONS,
        Some(&recorder),
        &cancel,
    );
    recorder.record(EventKind::WorkloadEnded);
    let per_op_running = rss().saturating_sub(before) as f64 / counts.invoked as f64;
    let items = workload.read_back(counts.issued).unwrap();
    recorder.record(EventKind::ReadBack { target: "kv".into(), items });
    recorder.record(EventKind::TrialEnded { interrupted: false, error: None });
    // The trial's end: the spool sorted into the history, read back for
    // the checks, as the runner does.
    let ended = Instant::now();
    let history = recorder.finish(origin).unwrap();
    let end_s = ended.elapsed().as_secs_f64();
    let per_op_at_end = rss().saturating_sub(before) as f64 / counts.invoked as f64;
    let on_disk = std::fs::metadata(&history_path).unwrap().len() as f64 / counts.invoked as f64;
    drop(history);
    drop(server);

    let (analyze_s, analyze_mb) = analyzer.run(run.path());
    let other = other.map(|other| (other.binary.clone(), other.run(run.path())));

    let ops = counts.invoked;
    println!("{ops} ops recorded in {seconds:.1} s ({} acknowledged)\n", counts.ok);
    println!("| figure | measured | goal | measured / goal |");
    println!("|---|---|---|---|");
    println!("| memory per op while running | {per_op_running:.0} B | 100 B | {:.2} |", per_op_running / 100.0);
    println!("| history on disk per op | {on_disk:.0} B | | |");
    println!("| memory per op at the trial's end (its history read back for the checks) | {per_op_at_end:.0} B | | |");
    println!("| the trial's end (spool sorted into the history, read back) | {end_s:.2} s | | |");
    let per_million = 1e6 / ops as f64;
    println!("| analyze, per 1M ops | {:.2} s | 1 s | {:.2} |", analyze_s * per_million, analyze_s * per_million / 1.0);
    println!("| analyze peak memory ({ops} ops) | {analyze_mb:.0} MB | 200 MB | {:.2} |", analyze_mb / 200.0);
    if let Some((binary, (other_s, other_mb))) = other {
        println!("\nanalyze with {binary}, same run directory:\n");
        println!("| figure | this build | other build | this / other |");
        println!("|---|---|---|---|");
        println!("| analyze | {analyze_s:.2} s | {other_s:.2} s | {:.2} |", analyze_s / other_s);
        println!("| analyze peak memory | {analyze_mb:.0} MB | {other_mb:.0} MB | {:.2} |", analyze_mb / other_mb);
    }
}
