//! The harness's own life: locks, Ctrl-C, being killed, cleanup, targets that
//! never come back, reproducible schedules, offline analysis.

use crate::common;
use crashlab::reports::{RunReport, Verdict};

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{crashlab, journal, run, write_scenario};
use serde_json::Value;

fn bin() -> std::path::PathBuf {
    assert_cmd::cargo::cargo_bin("crashlab")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Starts demo-kv and waits until it says it is ready.
fn start_demo_kv(data_dir: &Path) -> Child {
    let mut child = Command::new(bin())
        .args(["demo-kv", "--port", &free_port().to_string(), "--data-dir"])
        .arg(data_dir)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert!(lines.any(|l| l.unwrap().starts_with("ready")), "demo-kv became ready");
    child
}

/// State letter of a process (R, S, T, Z...), or None once it is gone.
fn state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 2..].chars().next()
}

fn alive(pid: i32) -> bool {
    state(pid).is_some_and(|s| s != 'Z' && s != 'X')
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn target_pids(dir: &Path) -> Vec<i32> {
    journal(dir).iter().filter(|e| e["op"] == "target_started").map(|e| e["pid"].as_i64().unwrap() as i32).collect()
}

#[test]
fn a_second_demo_kv_refuses_a_data_dir_held_by_a_live_one() {
    let tmp = tempfile::tempdir().unwrap();
    let mut first = start_demo_kv(tmp.path());
    let out = Command::new(bin())
        .args(["demo-kv", "--port", &free_port().to_string(), "--data-dir"])
        .arg(tmp.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("is in use") && stderr.contains(&format!("locked by pid {}", first.id())), "{stderr}");

    // Once the holder is dead, its pid file no longer blocks anyone.
    first.kill().unwrap();
    first.wait().unwrap();
    let mut third = start_demo_kv(tmp.path());
    third.kill().unwrap();
    third.wait().unwrap();
}

const PAUSE_SCENARIO: &str = r#"
name = "long pause"
[target.kv]
command = ["crashlab", "demo-kv", "--port", "{port}", "--data-dir", "{data_dir}"]
probe = { kind = "demo-kv", interval = "10ms", timeout = "50ms" }
[workload]
kind = "demo-kv"
target = "kv"
rate = 50
duration = "1s"
[[fault]]
kind = "pause"
target = "kv"
at = "300ms"
duration = "60s"
"#;

/// Starts `crashlab run` on the long-pause scenario and waits for the pause.
fn run_until_paused(tmp: &Path) -> (Child, std::path::PathBuf, i32) {
    let path = write_scenario(tmp, "pause.toml", PAUSE_SCENARIO);
    let dir = tmp.join("run");
    let harness = Command::new(bin())
        .arg("run")
        .arg(&path)
        .arg("--out")
        .arg(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut pid = 0;
    wait_until("the pause to be journaled", Duration::from_secs(30), || {
        pid = journal(&dir).iter().find(|e| e["kind"] == "pause").map_or(0, |e| e["pid"].as_i64().unwrap() as i32);
        pid != 0
    });
    wait_until("the target to stop", Duration::from_secs(5), || state(pid) == Some('T'));
    (harness, dir, pid)
}

#[test]
fn cleanup_heals_what_a_killed_harness_left_behind() {
    // Adopt the orphans, as a CI runner or service manager does: without a
    // subreaper in the session, the kernel sends SIGHUP + SIGCONT to an
    // orphaned process group with a stopped member, and the pause would end
    // by accident rather than by cleanup.
    nix::sys::prctl::set_child_subreaper(true).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (mut harness, dir, paused) = run_until_paused(tmp.path());
    // The trial's history is on disk as it happens.
    let spool = dir.join("history.partial.jsonl");
    wait_until("the pause in the trial's spooled history", Duration::from_secs(5), || {
        std::fs::read_to_string(&spool).is_ok_and(|t| t.contains("fault_injected"))
    });
    harness.kill().unwrap(); // SIGKILL: no chance to heal anything.
    harness.wait().unwrap();
    assert_eq!(state(paused), Some('T'), "the target is left paused");

    let out = crashlab().arg("cleanup").arg(&dir).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("resumed 1 paused process group(s)"), "{stdout}");
    assert!(stdout.contains("kept the history of the trial the harness was killed in"), "{stdout}");
    assert!(!spool.exists());
    wait_until("every process of the run to end", Duration::from_secs(10), || {
        !target_pids(&dir).into_iter().any(alive)
    });

    // What the trial did until the kill is checked like any trial: the
    // writes acknowledged before the pause, the pause, and why it ended.
    let analyzed = crashlab().arg("analyze").arg(&dir).output().unwrap();
    assert_eq!(analyzed.status.code(), Some(4), "a killed trial proves nothing: unknown");
    let report = RunReport::from_json(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap();
    let trial = &report.trials[0];
    assert_eq!(trial.faults.len(), 1);
    assert_eq!(trial.faults[0].kind, "pause");
    assert!(
        trial.rpo.acked_writes >= 5,
        "{} writes acknowledged in the 300 ms before the pause",
        trial.rpo.acked_writes
    );
    let completed = trial.checks.iter().find(|c| c.name == "completed").expect("a completion check");
    assert_eq!((completed.verdict, completed.observed.as_str()), (Verdict::Unknown, "the harness was killed"));

    // Cleaning up twice is harmless.
    let again = crashlab().arg("cleanup").arg(&dir).output().unwrap();
    assert!(String::from_utf8_lossy(&again.stdout).contains("resumed 0 paused process group(s), stopped 0 process(es)"));
}

/// A harness killed between making its run directory and locking it left
/// an empty directory and nothing else: cleanup has nothing to heal there.
/// Anything else without a run's files is not cleanup's to touch.
#[test]
fn cleanup_of_an_empty_directory_heals_nothing_and_refuses_what_is_not_a_run() {
    let tmp = tempfile::tempdir().unwrap();
    let (empty, other, missing) = (tmp.path().join("empty"), tmp.path().join("other"), tmp.path().join("missing"));
    std::fs::create_dir(&empty).unwrap();
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("notes.txt"), "somebody's").unwrap();
    let out = crashlab().arg("cleanup").arg(&empty).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("removed 0 container(s)"));
    for (dir, why) in [(&other, "not a run directory"), (&missing, "no such directory")] {
        let out = crashlab().arg("cleanup").arg(dir).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{}", dir.display());
        assert!(String::from_utf8_lossy(&out.stderr).contains(why), "{}", String::from_utf8_lossy(&out.stderr));
    }
    assert_eq!(std::fs::read_to_string(other.join("notes.txt")).unwrap(), "somebody's");
}

#[test]
fn ctrl_c_heals_stops_and_writes_a_partial_report() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut harness, dir, paused) = run_until_paused(tmp.path());
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(harness.id() as i32), nix::sys::signal::Signal::SIGINT).unwrap();
    let status = harness.wait().unwrap();
    assert_eq!(status.code(), Some(4), "an interrupted run's verdict is unknown");
    assert!(!alive(paused), "the paused target was resumed and stopped");
    assert!(!target_pids(&dir).into_iter().any(alive));
    let report = RunReport::from_json(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap();
    assert_eq!(report.verdict, Verdict::Unknown);
    assert!(report.interrupted);
    let healed = journal(&dir).iter().any(|e| e["op"] == "healed");
    assert!(healed, "the pause was healed and journaled");
}

#[test]
fn a_target_that_never_recovers_fails_with_its_last_words() {
    let tmp = tempfile::tempdir().unwrap();
    let path = write_scenario(
        tmp.path(),
        "never.toml",
        r#"
name = "no restart"
[target.kv]
command = ["crashlab", "demo-kv", "--port", "{port}", "--data-dir", "{data_dir}"]
restart = { policy = "never" }
probe = { kind = "tcp", interval = "10ms" }
[workload]
kind = "demo-kv"
target = "kv"
rate = 50
duration = "600ms"
[[fault]]
kind = "kill"
target = "kv"
at = "200ms"
[[fault]]
kind = "kill"
target = "kv"
at = "400ms"
[expect]
rto = "<= 5s"
[trials]
recovery_timeout = "500ms"
"#,
    );
    let r = run(&path, &[]);
    assert_eq!(r.code, 1, "{}", r.stderr());
    let trial = &r.trials()[0];
    assert_eq!(trial.verdict, Verdict::Fail);
    assert!(trial.rto_ms.is_none());
    assert!(trial.faults[0].ttd_ms.is_some(), "the outage was detected");
    let logs = trial.target_logs.get("kv").expect("the target's last lines are in the report");
    assert!(logs.iter().any(|l| l.contains("ready port=")), "{logs:?}");
    assert_eq!(r.report().expectations[0].observed, "never recovered");
    // The second kill found nothing to kill: that is said, not passed over.
    let second = &trial.checks.iter().find(|c| c.name == "fault #2 injected").unwrap();
    assert_eq!(second.verdict, Verdict::Unknown);
    assert!(second.observed.contains("is not running"), "{second:?}");
    assert!(!target_pids(&r.dir).into_iter().any(alive));
}

#[test]
fn a_target_that_cannot_start_is_an_environment_error() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = write_scenario(
        tmp.path(),
        "missing.toml",
        "name = \"missing program\"\n[target.x]\ncommand = [\"/nonexistent/program\"]\nprobe = { kind = \"tcp\" }\n",
    );
    let r = run(&missing, &[]);
    assert_eq!(r.code, 3);
    assert!(r.stderr().contains("cannot start `/nonexistent/program`"), "{}", r.stderr());

    let silent = write_scenario(
        tmp.path(),
        "silent.toml",
        "name = \"never healthy\"\n[target.x]\ncommand = [\"sleep\", \"30\"]\nprobe = { kind = \"tcp\" }\n[trials]\nstartup_timeout = \"300ms\"\n",
    );
    let r = run(&silent, &[]);
    assert_eq!(r.code, 3);
    assert!(r.stderr().contains("did not become healthy"), "{}", r.stderr());
    assert_eq!(r.report().verdict, Verdict::Unknown);
    assert!(!target_pids(&r.dir).into_iter().any(alive), "the sleeping target was stopped");

    // Why it is not healthy comes first, in the probe's own words: the
    // target's output need not say (a 404, a refused connection).
    let refusing = write_scenario(
        tmp.path(),
        "refusing.toml",
        "name = \"not ready\"\n[target.x]\ncommand = [\"sleep\", \"30\"]\n\
         probe = { kind = \"command\", command = [\"sh\", \"-c\", \"echo HTTP status 404, expected 200 >&2; exit 1\"] }\n\
         [trials]\nstartup_timeout = \"300ms\"\n",
    );
    let r = run(&refusing, &[]);
    assert_eq!(r.code, 3, "{}", r.stderr());
    let said = r.stderr();
    let reason = said.find("its probe's last failure: exit code 1: HTTP status 404, expected 200");
    let output = said.find("its last output");
    assert!(reason.is_some() && reason < output, "the probe's reason, then the target's output: {said}");
}

const SHORT_KILL: &str = r#"
name = "short kill"
[target.kv]
command = ["crashlab", "demo-kv", "--port", "{port}", "--data-dir", "{data_dir}"]
probe = { kind = "demo-kv", interval = "5ms" }
[workload]
kind = "demo-kv"
target = "kv"
rate = 200
duration = "500ms"
[[fault]]
kind = "kill"
target = "kv"
at = "100ms..400ms"
[expect]
lost_acked = 0
[trials]
count = 3
"#;

fn schedule(r: &common::Run) -> Vec<f64> {
    r.trials().iter().map(|t| t.faults[0].scheduled_at_ms).collect()
}

#[test]
fn the_same_seed_gives_the_same_schedule() {
    let tmp = tempfile::tempdir().unwrap();
    let path = write_scenario(tmp.path(), "short.toml", SHORT_KILL);
    let (a, b, c) = (run(&path, &["--seed", "7"]), run(&path, &["--seed", "7"]), run(&path, &["--seed", "8"]));
    assert_eq!(schedule(&a), schedule(&b));
    assert_ne!(schedule(&a), schedule(&c));
    assert_eq!(a.report().seed, 7);
    for s in schedule(&a) {
        assert!((100.0..=400.0).contains(&s));
    }
}

#[test]
fn analyze_reproduces_the_report_from_the_history() {
    let tmp = tempfile::tempdir().unwrap();
    let path = write_scenario(tmp.path(), "short.toml", SHORT_KILL);
    let r = run(&path, &["--seed", "9", "--trials", "2"]);
    assert_eq!(r.code, 0, "{}", r.stderr());
    std::fs::remove_file(r.dir.join("report.json")).unwrap();
    let out = crashlab().arg("analyze").arg(&r.dir).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let again: Value = serde_json::from_str(&std::fs::read_to_string(r.dir.join("report.json")).unwrap()).unwrap();
    // The raw JSON, field for field: what analyze writes is what the run wrote.
    assert_eq!(again["trials"], r.json["trials"]);
    assert_eq!(again["summary"], r.json["summary"]);
    assert_eq!(again["verdict"], "pass");
}

/// What goes wrong without stopping a trial (here an `after_stop` hook that
/// fails) reaches report.json, summary.md, report.html and the terminal,
/// not only stderr.
#[test]
fn a_warning_reaches_every_report() {
    let tmp = tempfile::tempdir().unwrap();
    let scenario = common::write_scenario(
        tmp.path(),
        "warn.toml",
        r#"
name = "warn"
[target.kv]
command = ["crashlab", "demo-kv", "--port", "{port}", "--data-dir", "{data_dir}"]
after_stop = [["sh", "-c", "echo the volume is still busy >&2; exit 3"]]
probe = { kind = "demo-kv", interval = "10ms" }
[workload]
kind = "demo-kv"
target = "kv"
rate = 100
duration = "200ms"
"#,
    );
    let r = common::run(&scenario, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr());
    let warnings = &r.trials()[0].warnings;
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    let warning = warnings[0].as_str();
    assert!(warning.contains("exit code 3") && warning.contains("the volume is still busy"), "{warning}");
    assert!(r.history(0).iter().any(|e| e["event"] == "warning"), "a history event");
    for file in ["summary.md", "report.html"] {
        let text = std::fs::read_to_string(r.dir.join(file)).unwrap();
        assert!(text.contains("the volume is still busy"), "{file}: {text}");
    }
    assert!(r.stdout().contains("warning: trial 0: "), "{}", r.stdout());
}

/// A target that outlives its stop_timeout after the graceful signal is
/// killed, and the run says so: each such stop costs the trial the whole
/// timeout (an etcd leader cost 5 s a trial so, unseen).
#[test]
fn a_target_that_ignores_the_graceful_stop_is_killed_after_its_stop_timeout_and_it_is_said() {
    let tmp = tempfile::tempdir().unwrap();
    // The shell and its sleeps ignore SIGTERM; demo-kv, beside them in the
    // group, installs its own handler and stops.
    let deaf = format!(
        "trap '' TERM; {} demo-kv --port {{port}} --data-dir {{data_dir}} & while :; do sleep 0.05; done",
        assert_cmd::cargo::cargo_bin("crashlab").display()
    );
    let scenario = common::write_scenario(
        tmp.path(),
        "deaf.toml",
        &format!(
            r#"
name = "deaf"
[target.kv]
command = ["sh", "-c", "{deaf}"]
stop_timeout = "300ms"
probe = {{ kind = "demo-kv", interval = "10ms" }}
[workload]
kind = "demo-kv"
target = "kv"
rate = 100
duration = "200ms"
"#
        ),
    );
    let r = common::run(&scenario, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr());
    let warnings = &r.trials()[0].warnings;
    let said = "did not exit within its stop_timeout (300ms) of SIGTERM: killed with SIGKILL";
    assert!(warnings.iter().any(|w| w.starts_with("target `kv` (pid ") && w.ends_with(said)), "{warnings:?}");
    let exits: Vec<_> = r.history(0).into_iter().filter(|e| e["event"] == "target_exited").collect();
    assert_eq!(exits.len(), 1, "{exits:?}");
    assert_eq!(exits[0]["status"], "killed by SIGKILL");
}

/// `{port.NAME}` is another target's port (here a hook of `app` sees the
/// port `db` itself was given), and a failing hook's message shows the
/// command as it ran, placeholders filled in.
#[test]
fn targets_reach_each_other_by_port_and_hooks_are_quoted_as_they_ran() {
    let tmp = tempfile::tempdir().unwrap();
    let text = r#"
name = "references"
[target.db]
command = ["crashlab", "demo-kv", "--port", "{port}", "--data-dir", "{data_dir}"]
before_start = [["sh", "-c", "echo {port} > {run_dir}/db-own-port"]]
probe = { kind = "demo-kv", interval = "10ms" }
[target.app]
command = ["crashlab", "demo-kv", "--port", "{port}", "--data-dir", "{data_dir}"]
before_start = [["sh", "-c", "echo {port.db} > {run_dir}/db-port-seen-by-app"]]
probe = { kind = "demo-kv", interval = "10ms" }
[workload]
kind = "demo-kv"
target = "app"
rate = 50
duration = "200ms"
"#;
    let r = run(&write_scenario(tmp.path(), "references.toml", text), &[]);
    assert_eq!(r.code, 0, "{}", r.stderr());
    let own = std::fs::read_to_string(r.dir.join("db-own-port")).unwrap();
    let seen = std::fs::read_to_string(r.dir.join("db-port-seen-by-app")).unwrap();
    assert_eq!(seen, own, "{{port.db}} is db's port");

    let failing = text.replace("echo {port.db} > {run_dir}/db-port-seen-by-app", "exit 4; {data_dir}");
    let r = run(&write_scenario(tmp.path(), "failing.toml", &failing), &[]);
    assert_eq!(r.code, 3, "{}", r.stderr());
    let data_dir = r.dir.join("trial-000/data/app");
    let quoted = format!("hook `sh -c exit 4; {}` failed: exit code 4", data_dir.display());
    assert!(r.stderr().contains(&quoted), "expected {quoted} in:\n{}", r.stderr());

    let unknown = text.replace("{port.db}", "{port.dbb}");
    let out = crashlab().arg("validate").arg(write_scenario(tmp.path(), "unknown.toml", &unknown)).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("uses `{port.dbb}`, but there is no [target.dbb], did you mean `db`?"), "{said}");
}
