//! Measurement truth: what the harness reports agrees with what happened to
//! the target (issue 13).

use crate::common;
use crashlab::reports::{RunReport, TrialReport, Verdict};

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
        // Steps count from 0 in the history: stop, run, start, wait. From
        // the run (the stop is done: a restart racing the stop's beginning
        // is stopped by it) to the start step. (This read the wait step as
        // the end, and so counted the start step's own start as a sneak
        // when it was recorded before the wait began: seen on a loaded CI
        // machine.)
        let step = |n: u64| move |e: &Value| e["event"] == "recover_started" && e["step"] == n;
        let stopped = time_of(&events, step(1)).expect("the stop step ended");
        let started = time_of(&events, step(2)).expect("the start step ran");
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
    assert_eq!(r.trials()[0].verdict, Verdict::Unknown);
    let failed =
        r.history(0).into_iter().find(|e| e["event"] == "fault_failed").expect("the fault is said to have failed");
    let error = failed["error"].as_str().unwrap();
    assert!(error.contains("the fault had no effect") && error.contains("changed nothing"), "{error}");
}

/// `crashlab ARGS` run from `cwd` as a user would, with no `--out`: the run
/// goes to `cwd/crashlab-runs/`. Returns the exit code and the report.
fn run_from(cwd: &std::path::Path, args: &[&str]) -> (i32, RunReport) {
    let out = std::process::Command::new(assert_cmd::cargo::cargo_bin("crashlab"))
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let dir = stdout.lines().find_map(|l| l.strip_prefix("run directory: ")).expect("the run directory is printed");
    assert!(dir.starts_with("crashlab-runs/"), "printed as the user would type it: {dir}");
    let report = std::fs::read_to_string(cwd.join(dir).join("report.json")).unwrap();
    (out.status.code().unwrap_or(-1), RunReport::from_json(&report).unwrap())
}

#[test]
fn storage_drill_and_runbook_scenarios_act_on_the_real_data_from_the_default_run_directory() {
    let tmp = tempfile::tempdir().unwrap();
    for name in ["lose-unsynced-fsync-never.toml", "corrupt-restore-backup.toml", "monthly-recovery-drill.toml"] {
        std::fs::copy(common::scenario(name), tmp.path().join(name)).unwrap();
    }
    // A power loss with fsync never loses what was acknowledged since the
    // start: it can only be 0 if the fault acted on an empty directory.
    if common::fuse_available() {
        let (code, report) =
            run_from(tmp.path(), &["run", "lose-unsynced-fsync-never.toml", "--trials", "1", "--seed", "3"]);
        assert_eq!(code, 0, "{report:?}");
        assert!(report.trials[0].rpo.lost_acked.unwrap() > 0, "{:?}", report.trials[0].rpo);
    }
    // The runbook restores a backup of the real data: files, not nothing.
    let (code, report) = run_from(tmp.path(), &["run", "corrupt-restore-backup.toml", "--trials", "1"]);
    assert_eq!(code, 0, "{report:?}");
    let restore = report.trials[0].recovery.iter().find(|s| s.action == "restore").unwrap();
    let files: u64 = restore.detail.split(' ').next().unwrap().parse().unwrap();
    assert!(files > 0, "{restore:?}");
    let (code, report) = run_from(tmp.path(), &["drill", "monthly-recovery-drill.toml", "--yes"]);
    assert_eq!(code, 0, "{report:?}");
    assert_eq!(report.verdict, Verdict::Pass);
}

#[test]
fn a_port_held_by_another_process_or_a_start_up_crash_is_an_environment_error() {
    let tmp = tempfile::tempdir().unwrap();
    // Another process holds the fixed port the target and its probe use:
    // the target cannot bind it, and the probe would measure the other.
    // Every port is checked before any target starts (targets start side
    // by side, and a child between its fork and its exec holds whatever
    // socket the harness had open then): the first target is not started.
    let squatter = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = squatter.local_addr().unwrap().port();
    let scenario = format!(
        r#"
name = "port-taken"
[target.first]
command = ["crashlab", "demo-kv", "--port", "{{port}}", "--data-dir", "{{data_dir}}"]
probe = {{ kind = "demo-kv", interval = "5ms" }}
[target.kv]
command = ["crashlab", "demo-kv", "--port", "{port}", "--data-dir", "{{data_dir}}"]
probe = {{ kind = "tcp", port = {port}, interval = "5ms", healthy_after = 2 }}
[workload]
kind = "demo-kv"
target = "kv"
rate = 50
duration = "1s"
[[fault]]
kind = "kill"
target = "kv"
at = "300ms"
"#
    );
    let path = write_scenario(tmp.path(), "taken.toml", &scenario);
    let r = run(&path, &["--trials", "1"]);
    assert_eq!(r.code, 3, "{}{}", r.stdout(), r.stderr());
    assert!(r.stderr().contains(&format!("port {port} is already in use")), "{}", r.stderr());
    let started: Vec<_> = r.history(0).into_iter().filter(|e| e["event"] == "target_started").collect();
    assert!(started.is_empty(), "no target starts once a port is found taken: {started:?}");
    drop(squatter);

    // A target that dies once during start-up and then comes up.
    let flaky = r#"
name = "flaky-start"
[target.kv]
command = ["sh", "-c", "test -f {data_dir}/started && exec crashlab demo-kv --port {port} --data-dir {data_dir}; touch {data_dir}/started; echo 'cannot open config' >&2; exit 1"]
probe = { kind = "demo-kv", interval = "5ms", healthy_after = 2 }
[workload]
kind = "demo-kv"
target = "kv"
rate = 50
duration = "1s"
"#;
    let flaky = flaky.replace("exec crashlab", &format!("exec {}", assert_cmd::cargo::cargo_bin("crashlab").display()));
    let path = write_scenario(tmp.path(), "flaky.toml", &flaky);
    let r = run(&path, &["--trials", "1"]);
    assert_eq!(r.code, 3, "{}{}", r.stdout(), r.stderr());
    assert!(r.stderr().contains("exited during start-up (2 incarnations"), "{}", r.stderr());
    assert!(r.stderr().contains("cannot open config"), "its last words are quoted: {}", r.stderr());
}

#[test]
fn the_report_counts_each_targets_incarnations() {
    let r = run(&common::scenario("quickstart.toml"), &["--trials", "2"]);
    assert_eq!(r.code, 0, "{}", r.stdout());
    for t in r.trials() {
        assert_eq!(t.incarnations.get("kv"), Some(&2), "one start, one restart after the kill: {t:?}");
    }
}

/// A probe sample that hangs (here: on purpose, for 2 s, right after the
/// crash) must not blind the probe: the others go on every interval, and
/// RTO is the restart plus demo-kv's known 300 ms of replay, not the hang.
#[test]
fn a_hanging_probe_sample_does_not_blind_the_probe() {
    let _serial = common::serial();
    if !common::which("bash") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let scenario = r#"
name = "hanging-probe"
[target.kv]
command = ["crashlab", "demo-kv", "--port", "{port}", "--data-dir", "{data_dir}", "--recovery-delay", "300ms"]
probe = { kind = "command", command = ["bash", "-c", "if rm {data_dir}/hang 2>/dev/null; then sleep 2; exit 1; fi; exec 3<>/dev/tcp/127.0.0.1/{port}"], interval = "10ms", timeout = "3s", healthy_after = 2 }
[workload]
kind = "demo-kv"
target = "kv"
rate = 50
duration = "3s"
[[fault]]
kind = "command"
target = "kv"
command = ["sh", "-c", "touch {data_dir}/hang && kill -9 $(cat {data_dir}/demo-kv.pid)"]
at = "500ms"
[trials]
startup_timeout = "10s"
"#;
    let path = write_scenario(tmp.path(), "hang.toml", scenario);
    let r = run(&path, &["--trials", "2", "--seed", "9"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout(), r.stderr());
    for (i, t) in r.trials().iter().enumerate() {
        let fault = &t.faults[0];
        let (rto, restart) = (fault.rto_ms.unwrap(), fault.restart_ms.unwrap());
        let hung = r
            .history(i as u64)
            .iter()
            .any(|e| e["event"] == "probe" && e["latency_ms"].as_f64().unwrap() > 1900.0 && e["healthy"] == false);
        assert!(hung, "trial {i}: a sample hung for 2 s");
        // Ready 300 ms after the restart; the rest is the probe's interval
        // (two healthy samples) and a loaded machine's slack, far under the
        // 2 s hang.
        assert!(
            rto >= restart + 300.0 && rto < restart + 300.0 + 600.0,
            "trial {i}: rto {rto:.1} ms, restart {restart:.1} ms"
        );
    }
}

/// A fault marked `setup` (here a command run 700 ms before the kill)
/// opens no recovery window: the trial's RTO is the kill's own, not the
/// kill's plus the 700 ms since the setup; and each fault's figures are in
/// every report.
#[test]
fn a_setup_fault_adds_nothing_to_the_trials_rto() {
    let _serial = common::serial();
    let tmp = tempfile::tempdir().unwrap();
    let scenario = r#"
name = "setup-then-kill"
[target.kv]
command = ["crashlab", "demo-kv", "--port", "{port}", "--data-dir", "{data_dir}"]
probe = { kind = "demo-kv", interval = "5ms", healthy_after = 2 }
[workload]
kind = "demo-kv"
target = "kv"
rate = 100
duration = "2s"
[[fault]]
kind = "command"
target = "kv"
command = ["sh", "-c", "echo {port} > {data_dir}/condition"]
setup = true
at = "300ms"
[[fault]]
kind = "kill"
target = "kv"
at = "1s"
"#;
    let path = write_scenario(tmp.path(), "setup.toml", scenario);
    let r = run(&path, &["--trials", "1"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout(), r.stderr());
    let t = &r.trials()[0];
    let (setup, kill) = (&t.faults[0], &t.faults[1]);
    assert_eq!((setup.setup, kill.setup), (true, false));
    assert!(setup.rto_ms.is_none(), "{setup:?}");
    assert_eq!(t.rto_ms, kill.rto_ms, "{t:?}");
    assert!(t.rto_ms.unwrap() < 500.0, "{t:?}");
    assert!(!&t.checks.iter().any(|c| c.name.as_str().contains("#1")));
    // Each fault's own figures, in every format.
    assert!(r.stdout().contains("trial 0 fault #1 command kv (setup): injected_ms"), "{}", r.stdout());
    let summary = std::fs::read_to_string(r.dir.join("summary.md")).unwrap();
    assert!(summary.contains("| 0 | #2 kill kv |"), "{summary}");
    let junit = std::fs::read_to_string(r.dir.join("junit.xml")).unwrap();
    assert!(junit.contains("fault.2.restart_ms"), "{junit}");
    let html = std::fs::read_to_string(r.dir.join("report.html")).unwrap();
    assert!(html.contains("<td>#1 command kv (setup)</td>"), "an html row per fault");
}

/// demo-kv led by a shell that first starts three watchers, once: one in
/// its process group, one in a session of its own (`setsid`, as PostgreSQL's
/// backends do), and one in a session of its own whose parent exits at
/// once, so that it is reparented to the harness. Each notes a SIGCONT (which
/// harms no process, so nothing restarts) in a file; `check` steps then say
/// which ones the kill fault reached.
fn scope_scenario(signal: &str, scope: &str) -> String {
    let watcher = |name: &str| {
        format!("sh -c \\\"trap 'touch {{data_dir}}/{name}.got' CONT; while :; do sleep 0.05; done # scope-watcher\\\"")
    };
    let spawn = format!(
        "if ! test -f {{data_dir}}/spawned; then touch {{data_dir}}/spawned; {} & setsid {} & (setsid {} &); fi; \
         exec {} demo-kv --port {{port}} --data-dir {{data_dir}}",
        watcher("group"),
        watcher("session"),
        watcher("orphan"),
        // A shell does not know `crashlab` (only a target's own argv[0] does).
        assert_cmd::cargo::cargo_bin("crashlab").display()
    );
    let check = |name: &str| {
        format!("[[recover]]\naction = \"check\"\ntarget = \"kv\"\ncommand = [\"test\", \"-f\", \"{{data_dir}}/{name}.got\"]\n")
    };
    let scope_line = if scope == "default" { String::new() } else { format!("scope = \"{scope}\"\n") };
    format!(
        r#"name = "signal-scope-{scope}"
[target.kv]
command = ["sh", "-c", "{spawn}"]
restart = {{ delay = "0ms" }}
probe = {{ kind = "demo-kv", interval = "5ms", healthy_after = 2 }}
[workload]
kind = "demo-kv"
target = "kv"
rate = 100
duration = "1500ms"
[[fault]]
kind = "kill"
target = "kv"
signal = "{signal}"
{scope_line}at = "500ms"
[[recover]]
action = "wait"
target = "kv"
[[recover]]
action = "run"
target = "kv"
command = ["sleep", "0.2"]
{}{}{}"#,
        check("group"),
        check("session"),
        check("orphan"),
    )
}

fn checks_passed(trial: &TrialReport) -> Vec<bool> {
    let steps = &trial.recovery;
    steps.iter().filter(|s| s.action == "check").map(|s| s.ok).collect()
}

fn watchers_left() -> String {
    let left = std::process::Command::new("pgrep").args(["-f", "scope-watcher"]).output().unwrap();
    String::from_utf8_lossy(&left.stdout).into_owned()
}

#[test]
fn a_kill_reaches_the_main_process_its_group_or_everything_the_target_started() {
    let tmp = tempfile::tempdir().unwrap();
    // Which watcher got the signal: group, session, orphan.
    let cases = [
        ("main", [false, false, false], "only"),
        ("group", [true, false, false], "and its process group"),
        ("default", [true, false, false], "and its process group"),
        ("all", [true, true, true], "and every process the target started"),
    ];
    for (scope, reached, said) in cases {
        let path = write_scenario(tmp.path(), &format!("{scope}.toml"), &scope_scenario("SIGCONT", scope));
        let r = run(&path, &["--trials", "1", "--seed", "1"]);
        assert!(r.json["trials"].is_array(), "scope {scope}: {}{}", r.stdout(), r.stderr());
        let trial = &r.trials()[0];
        assert_eq!(checks_passed(trial), reached, "scope {scope}: {}\n{}", r.stdout(), r.stderr());
        let detail = trial.faults[0].detail.as_str();
        assert!(detail.starts_with("SIGCONT to pid") && detail.contains(said), "{detail}");
        // The watchers end with the trial, whoever the fault reached.
        assert!(r.stderr().contains("left running"), "{}", r.stderr());
        assert_eq!(watchers_left(), "", "scope {scope}");
    }
    // A SIGKILL to all leaves nothing of the incarnation running; to the
    // group, the two watchers in sessions of their own survive it.
    for (scope, survivors) in [("all", false), ("group", true)] {
        let path = write_scenario(tmp.path(), &format!("kill-{scope}.toml"), &scope_scenario("SIGKILL", scope));
        let r = run(&path, &["--trials", "1", "--seed", "1"]);
        assert_eq!(r.code, 1, "the checks fail: nothing was signalled with SIGCONT\n{}", r.stdout());
        assert_eq!(r.stderr().contains("left running"), survivors, "scope {scope}: {}", r.stderr());
        assert_eq!(watchers_left(), "", "scope {scope}");
    }
}

/// `errors_during_fault`: the share of the writes sent during a fault's
/// outage that were not acknowledged. A 100 ms pause under a 500 ms op
/// timeout fails none of them; a kill whose restart takes 300 ms fails
/// nearly all of them (refused connections).
#[test]
fn errors_during_fault_tell_a_pause_from_a_crash() {
    let _serial = common::serial();
    let tmp = tempfile::tempdir().unwrap();
    let scenario = |fault: &str| {
        format!(
            r#"name = "errors-during-fault"
[target.kv]
command = ["crashlab", "demo-kv", "--port", "{{port}}", "--data-dir", "{{data_dir}}", "--recovery-delay", "300ms"]
probe = {{ kind = "demo-kv", interval = "5ms", timeout = "100ms" }}
[workload]
kind = "demo-kv"
target = "kv"
rate = 200
duration = "1500ms"
{fault}
[expect]
errors_during_fault = "<= 1%"
availability.min = ">= 99%"
[trials]
count = 2
"#
        )
    };
    let pause = "[[fault]]\nkind = \"pause\"\ntarget = \"kv\"\nduration = \"100ms\"\nat = \"500ms\"\n";
    let r = run(&write_scenario(tmp.path(), "pause.toml", &scenario(pause)), &["--seed", "1"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout(), r.stderr());
    for t in r.trials() {
        assert_eq!(t.errors_during_fault, Some(0.0), "writes delayed by a pause are acknowledged: {t:?}");
        assert_eq!(t.ops.ok, t.ops.invoked, "every write acknowledged: availability 100%");
    }

    let kill = "[[fault]]\nkind = \"kill\"\ntarget = \"kv\"\nat = \"500ms\"\n";
    let r = run(&write_scenario(tmp.path(), "kill.toml", &scenario(kill)), &["--seed", "1"]);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout(), r.stderr());
    for t in r.trials() {
        let share = t.errors_during_fault.expect("writes were sent during the outage");
        assert!(share > 80.0, "a 300 ms restart refuses the writes sent meanwhile: {share}%");
        let check = t.checks.iter().find(|c| c.name == "errors_during_fault").unwrap();
        assert_eq!((check.expected.as_str(), check.verdict), ("errors_during_fault <= 1%", Verdict::Fail));
    }
    // Availability over the whole trial: the worst trial's share of writes
    // acknowledged, below 99% with 300 ms of 1500 refused.
    let worst = r.trials().iter().map(|t| t.ops.ok as f64 * 100.0 / t.ops.invoked as f64).fold(100.0, f64::min);
    assert!(worst < 90.0, "{worst}%");
    let e = r.report().expectations.iter().find(|e| e.name == "availability.min").unwrap();
    assert_eq!(e.verdict, Verdict::Fail);
    assert_eq!(e.observed, format!("{worst:.2}% over 2 trials"));
}

/// A recovery proven during the trial is not proven again after it: the
/// target recovered from a kill early in the workload and stayed healthy,
/// so the read-back follows the workload's end before `healthy_after` new
/// probe samples have begun (the harness used to wait for that many, ~3
/// intervals of every trial). Until the first healthy answer the probe
/// ticks faster than its interval (1 ms, doubling): the target is seen
/// ready within one interval of its start. What is waited on is read from the
/// trial's own history, not from a clock.
#[test]
fn a_recovery_already_proven_is_not_waited_for_again() {
    let _serial = common::serial();
    let tmp = tempfile::tempdir().unwrap();
    let scenario = r#"
name = "proven"
[target.kv]
command = ["crashlab", "demo-kv", "--port", "{port}", "--data-dir", "{data_dir}"]
probe = { kind = "demo-kv", interval = "20ms", healthy_after = 3 }
[workload]
kind = "demo-kv"
target = "kv"
rate = 100
duration = "1s"
[[fault]]
kind = "kill"
target = "kv"
at = "200ms"
"#;
    let path = write_scenario(tmp.path(), "proven.toml", scenario);
    let r = run(&path, &["--trials", "2"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout(), r.stderr());
    for trial in 0..2 {
        let events = r.history(trial);
        let at = |name: &str| events.iter().find(|e| e["event"] == name).map(|e| e["t_ms"].as_f64().unwrap());
        let (ended, read) = (at("workload_ended").unwrap(), at("read_back").unwrap());
        let between = events
            .iter()
            .filter(|e| e["event"] == "probe" && (ended..read).contains(&e["t_ms"].as_f64().unwrap()))
            .count();
        assert!(between < 3, "trial {trial}: {between} probe samples between the workload's end and the read-back");
        // Start-up: the first healthy sample after the target started, no
        // later than the start plus one 20 ms interval (the ticks come 1,
        // 2, 4, 8, 16 ms apart until then).
        let started = at("target_started").unwrap();
        let first_healthy = events
            .iter()
            .find(|e| e["event"] == "probe" && e["healthy"] == true)
            .map(|e| e["t_ms"].as_f64().unwrap())
            .unwrap();
        let fast =
            events.iter().filter(|e| e["event"] == "probe" && e["t_ms"].as_f64().unwrap() < first_healthy).count();
        eprintln!(
            "trial {trial}: first healthy {:.1} ms after the start, {fast} samples before it",
            first_healthy - started
        );
        assert!(fast == 0 || first_healthy - started < 20.0, "trial {trial}: {events:?}");
    }
}

/// Targets start up side by side: a trial waits for the last of them to
/// prove itself healthy (`healthy_after` samples in a row), not for each
/// to prove itself again, one after another, once the one before it has.
/// Read from the trial's own history: once the last target's window is
/// proven, the workload starts before the probes sample again (it used to
/// take three more samples per target after the first).
#[test]
fn targets_start_up_side_by_side() {
    let _serial = common::serial();
    let tmp = tempfile::tempdir().unwrap();
    let mut scenario = String::from("name = \"side-by-side\"\n");
    for i in 0..4 {
        scenario += &format!(
            "[target.kv{i}]\ncommand = [\"crashlab\", \"demo-kv\", \"--port\", \"{{port}}\", \"--data-dir\", \"{{data_dir}}\"]\n\
             probe = {{ kind = \"demo-kv\", interval = \"100ms\", healthy_after = 3 }}\n"
        );
    }
    scenario += "[workload]\nkind = \"demo-kv\"\ntarget = \"kv0\"\nrate = 100\nduration = \"100ms\"\n";
    let path = write_scenario(tmp.path(), "side-by-side.toml", &scenario);
    let r = run(&path, &["--trials", "2"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout(), r.stderr());
    for trial in 0..2 {
        let events = r.history(trial);
        let t = |e: &serde_json::Value| e["t_ms"].as_f64().unwrap();
        let began = events.iter().find(|e| e["event"] == "workload_started").map(t).unwrap();
        let probes: Vec<_> = events.iter().filter(|e| e["event"] == "probe" && t(e) < began).collect();
        // When each target's first window of 3 healthy samples was proven:
        // the third one's answer.
        let proven = (0..4).map(|i| {
            let mine = probes.iter().filter(|e| e["target"] == format!("kv{i}").as_str());
            let mut streak = 0;
            mine.map(|e| {
                streak = if e["healthy"] == true { streak + 1 } else { 0 };
                (streak, t(e) + e["latency_ms"].as_f64().unwrap())
            })
            .find(|(streak, _)| *streak == 3)
            .map(|(_, at)| at)
            .unwrap_or_else(|| panic!("trial {trial}: kv{i} never proven before the workload"))
        });
        let last = proven.fold(f64::MIN, f64::max);
        let after = probes.iter().filter(|e| t(e) > last).count();
        eprintln!(
            "trial {trial}: last target proven {:.1} ms before the workload, {after} samples between",
            began - last
        );
        assert!(after <= 4, "trial {trial}: {after} samples between the last proof of health and the workload");
    }
}
