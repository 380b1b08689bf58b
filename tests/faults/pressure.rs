//! Resource pressure: the `memory`, `cpu` and `hog` faults. demo-kv in a
//! memory cgroup limited to what it uses when the fault comes is OOM-killed
//! as the workload makes it grow; with --fsync always nothing acknowledged
//! is lost, and the fault's detail says the outage was an OOM kill. A CPU
//! quota holds demo-kv to the CPU time it allows (a known answer:
//! unthrottled, the store uses about 0.2 CPUs under this workload;
//! throttled to 0.05 it uses no more than that), and loses nothing; a quota
//! the store never reaches makes the trial unknown. No cgroup is left
//! behind, even by a killed harness. A stress-ng hog does work beside the
//! store, stops at its heal, and a killed harness's hog is stopped by
//! `cleanup`.

use std::time::{Duration, Instant};

use crashlab::reports::Verdict;
use crashlab::targets::cgroup::{self, Controller};

use crate::common;
use common::{available, run, scenario, which, write_scenario};

/// Root, and cgroup v1's `controller` mounted with `file` in it.
fn cgroup_available(controller: Controller, file: &str) -> bool {
    // SAFETY: geteuid cannot fail.
    let root = unsafe { nix::libc::geteuid() } == 0;
    let own = cgroup::own(controller);
    available(
        "cgroup",
        root && own.as_ref().is_ok_and(|p| p.join(file).exists()),
        "the memory and cpu faults make cgroup v1 cgroups (root, and the memory and cpu controllers mounted)",
    )
}

fn cpu_cgroup_available() -> bool {
    cgroup_available(Controller::Cpu, "cpu.cfs_quota_us")
}

fn memory_cgroup_available() -> bool {
    cgroup_available(Controller::Memory, "memory.limit_in_bytes")
}

fn stress_ng_available() -> bool {
    available("stress-ng", which("stress-ng"), "the hog fault runs stress-ng (Debian package stress-ng)")
}

/// The run's cgroups (any run's) under the harness's own.
fn cgroups_left(controller: Controller) -> Vec<String> {
    std::fs::read_dir(cgroup::own(controller).unwrap())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(cgroup::PREFIX))
        .collect()
}

fn cpu_cgroups_left() -> Vec<String> {
    cgroups_left(Controller::Cpu)
}

/// Runs the scenario `text` in `tmp` until the journal holds an entry of
/// `op`, lets the fault act 300 ms, and SIGKILLs the harness; its run
/// directory.
fn run_then_kill_the_harness(tmp: &std::path::Path, text: &str, op: &str) -> std::path::PathBuf {
    let path = write_scenario(tmp, "scenario.toml", text);
    let dir = tmp.join("run");
    let mut harness = common::spawn_run(&path, &dir);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !common::journal(&dir).iter().any(|e| e["op"] == op) {
        assert!(Instant::now() < deadline, "no `{op}` journaled");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    harness.kill().unwrap();
    harness.wait().unwrap();
    dir
}

/// Runs `text` until its fault's cgroup is journaled, kills the harness,
/// and checks that `crashlab cleanup` removes the cgroup it left.
fn cleanup_removes_the_cgroup_of_a_killed_harness(text: &str, controller: Controller) {
    let before = cgroups_left(controller);
    let tmp = tempfile::tempdir().unwrap();
    let dir = run_then_kill_the_harness(tmp.path(), text, "cgroup");
    assert_ne!(cgroups_left(controller), before, "the killed harness left its cgroup");
    let out = common::crashlab().arg("cleanup").arg(&dir).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("removed 1 cgroup(s) (memory, cpu)"), "{stdout}");
    assert_eq!(cgroups_left(controller), before);
}

#[test]
fn an_oom_killed_store_with_fsync_always_loses_nothing_and_the_kill_is_told_as_oom() {
    if !memory_cgroup_available() {
        return;
    }
    // Serial: another test's cgroups would show in `cgroups_left`.
    let _serial = common::serial();
    let before = cgroups_left(Controller::Memory);
    let r = run(&scenario("memory-oom-fsync-always.toml"), &["--trials", "2", "--seed", "19"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout(), r.stderr());
    for (i, t) in r.trials().iter().enumerate() {
        let detail = &t.faults[0].detail;
        assert!(detail.contains("healed: the OOM killer killed 1 process(es) of the target"), "{detail}");
        assert_eq!(t.incarnations["kv"], 2, "trial {i}: killed once, restarted once");
        assert_eq!(t.rpo.lost_acked, Some(0), "trial {i}");
        common::assert_the_workload_ran("memory-oom", t);
        let exit = r.history(i as u64).into_iter().find(|e| e["event"] == "target_exited").expect("it died");
        assert!(exit.to_string().contains("SIGKILL") || exit.to_string().contains("9"), "{exit}");
    }
    assert_eq!(cgroups_left(Controller::Memory), before, "every cgroup of the run is gone");
}

#[test]
fn a_memory_limit_the_store_never_reaches_makes_the_trial_unknown() {
    if !memory_cgroup_available() {
        return;
    }
    let _serial = common::serial();
    let text = std::fs::read_to_string(scenario("memory-oom-fsync-always.toml")).unwrap();
    let roomy = text.replace(r#"limit = "+0""#, r#"limit = "+512MiB""#);
    assert_ne!(roomy, text);
    let dir = tempfile::tempdir().unwrap();
    let r = run(&write_scenario(dir.path(), "roomy.toml", &roomy), &["--trials", "1"]);
    let t = &r.trials()[0];
    assert_eq!(t.verdict, Verdict::Unknown, "{}", r.stdout());
    let check = t.checks.iter().find(|c| c.name == "fault #1 injected").expect("the fault's check");
    assert!(check.observed.contains("never reached its memory limit"), "{}", check.observed);
}

#[test]
fn cleanup_after_a_killed_harness_removes_the_memory_cgroup() {
    if !memory_cgroup_available() {
        return;
    }
    let _serial = common::serial();
    let text = std::fs::read_to_string(scenario("memory-oom-fsync-always.toml")).unwrap();
    // A limit the store stays under: the cgroup lives until the end.
    let roomy = text.replace(r#"limit = "+0""#, r#"limit = "+512MiB""#);
    cleanup_removes_the_cgroup_of_a_killed_harness(&roomy, Controller::Memory);
}

/// The number after `before` in `text`.
fn number_after(text: &str, before: &str) -> f64 {
    let rest = &text[text.find(before).unwrap_or_else(|| panic!("no `{before}` in {text}")) + before.len()..];
    let end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
    rest[..end].parse().unwrap_or_else(|_| panic!("no number after `{before}` in {text}"))
}

#[test]
fn a_cpu_quota_holds_the_store_to_it_and_loses_nothing() {
    if !cpu_cgroup_available() {
        return;
    }
    // Serial: another test's cgroups would show in `cpu_cgroups_left`.
    let _serial = common::serial();
    let before = cpu_cgroups_left();
    let r = run(&scenario("cpu-throttle.toml"), &["--trials", "2", "--seed", "23"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout(), r.stderr());
    for (i, t) in r.trials().iter().enumerate() {
        let detail = &t.faults[0].detail;
        assert!(number_after(detail, "throttled in ") >= 1.0, "trial {i}: {detail}");
        // What the quota allows over the time the fault was in, plus one
        // period's share and a clock tick (the resolution of /proc's CPU
        // times): unthrottled, the store uses about four times as much.
        let (used, over) = (number_after(detail, "the target used "), number_after(detail, " ms of CPU in "));
        let allowed = 0.05 * over + 0.05 * 100.0 + 10.0;
        assert!(used <= allowed, "trial {i}: used {used} ms of CPU in {over} ms, over the quota: {detail}");
        assert_eq!(t.rpo.lost_acked, Some(0), "trial {i}");
        common::assert_the_workload_ran("cpu-throttle", t);
    }
    assert_eq!(cpu_cgroups_left(), before, "every cgroup of the run is gone");
}

#[test]
fn a_cpu_quota_the_store_never_reaches_makes_the_trial_unknown() {
    if !cpu_cgroup_available() {
        return;
    }
    let _serial = common::serial();
    let text = std::fs::read_to_string(scenario("cpu-throttle.toml")).unwrap();
    let roomy = text.replace("cpus = 0.05 ", "cpus = 64 ");
    assert_ne!(roomy, text);
    let dir = tempfile::tempdir().unwrap();
    let r = run(&write_scenario(dir.path(), "roomy.toml", &roomy), &["--trials", "1"]);
    let t = &r.trials()[0];
    assert_eq!(t.verdict, Verdict::Unknown, "{}", r.stdout());
    let check = t.checks.iter().find(|c| c.name == "fault #1 injected").expect("the fault's check");
    assert!(check.observed.contains("never used its quota"), "{}", check.observed);
    assert_ne!(r.code, 0, "an unknown run does not pass: {}", r.stdout());
}

#[test]
fn cleanup_after_a_killed_harness_removes_the_cpu_cgroup() {
    if !cpu_cgroup_available() {
        return;
    }
    let _serial = common::serial();
    let text = std::fs::read_to_string(scenario("cpu-throttle.toml")).unwrap();
    // No duration: the cgroup lives until the end of the trial.
    let lasting = text.replace("duration = \"1s\"\n", "");
    assert_ne!(lasting, text);
    cleanup_removes_the_cgroup_of_a_killed_harness(&lasting, Controller::Cpu);
}

/// stress-ng processes alive now (a zombie has exited: it only waits for
/// init to reap it, the harness that started it being dead).
fn hogs() -> Vec<String> {
    let out = std::process::Command::new("ps").args(["-C", "stress-ng", "-o", "pid=,stat="]).output().unwrap();
    let lines = String::from_utf8_lossy(&out.stdout).lines().map(str::trim).map(str::to_string).collect::<Vec<_>>();
    lines.into_iter().filter(|l| !l.split_whitespace().nth(1).is_some_and(|s| s.starts_with('Z'))).collect()
}

#[test]
fn a_hog_works_beside_the_store_and_stops_at_its_heal() {
    if !stress_ng_available() {
        return;
    }
    // Serial: another test's hog would show in `hogs`.
    let _serial = common::serial();
    let r = run(&scenario("hog-neighbour.toml"), &["--trials", "1", "--seed", "29"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout(), r.stderr());
    let t = &r.trials()[0];
    let detail = &t.faults[0].detail;
    for stressor in ["cpu ", "vm ", "hdd "] {
        assert!(number_after(detail, stressor) >= 1.0, "{stressor}did no work: {detail}");
    }
    // Its duration (2 s), as stress-ng itself measured it, not its timeout.
    let ran = number_after(detail, "stress-ng ran ");
    assert!((1.9..4.0).contains(&ran), "{detail}");
    assert_eq!(t.rpo.lost_acked, Some(0));
    common::assert_the_workload_ran("hog-neighbour", t);
    assert_eq!(hogs(), Vec::<String>::new(), "the hog is gone");
    let work_dir = r.dir.join("trial-000/hog-f1");
    let left: Vec<_> = std::fs::read_dir(&work_dir).unwrap().flatten().map(|e| e.file_name()).collect();
    assert_eq!(left, ["stress-ng.log"], "stress-ng removed its files");
}

#[test]
fn cleanup_after_a_killed_harness_stops_the_hog() {
    if !stress_ng_available() {
        return;
    }
    let _serial = common::serial();
    let text = std::fs::read_to_string(scenario("hog-neighbour.toml")).unwrap();
    // No duration: no timeout of its own either, only cleanup stops it.
    let endless = text.replace("duration = \"2s\"\n", "");
    assert_ne!(endless, text);
    let tmp = tempfile::tempdir().unwrap();
    let dir = run_then_kill_the_harness(tmp.path(), &endless, "holder_started");
    assert!(!hogs().is_empty(), "the killed harness left its hog");
    let out = common::crashlab().arg("cleanup").arg(&dir).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(hogs(), Vec::<String>::new(), "cleanup stopped every stress-ng process");
}

#[test]
fn a_hog_without_stress_ng_stops_the_run_before_any_trial() {
    // crashlab's own directory only: no stress-ng on PATH.
    let bin = assert_cmd::cargo::cargo_bin("crashlab");
    let tmp = tempfile::tempdir().unwrap();
    let out = common::crashlab()
        .env("PATH", bin.parent().unwrap())
        .arg("run")
        .arg(scenario("hog-neighbour.toml"))
        .arg("--out")
        .arg(tmp.path().join("run"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("a `hog` fault runs stress-ng (Debian package stress-ng)"), "{stderr}");
}
