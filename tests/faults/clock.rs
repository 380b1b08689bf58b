//! The `clock` fault through libfaketime, against a program that prints how
//! far its clock (as libc tells it) is from the real one (read by a raw
//! syscall, which libfaketime cannot reach): the skew is the fault's
//! offset while it lasts, grows at the fault's rate while it drifts, and is
//! zero again after each heal.

use crate::common;

use common::{available, fixture, run, which, write_scenario};

fn libfaketime_available() -> bool {
    available(
        "libfaketime",
        crashlab::targets::faketime::library().is_some(),
        "the clock fault preloads libfaketime (Debian package libfaketime)",
    ) && available("python3", which("python3"), "the clock fixture is a Python program")
}

#[test]
fn a_clock_jumps_by_its_offset_drifts_at_its_rate_and_comes_back_at_each_heal() {
    if !libfaketime_available() {
        return;
    }
    let _serial = common::serial();
    let r = run(&fixture("clock/clock-jump.toml"), &[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout(), r.stderr());
    let log = std::fs::read_to_string(r.dir.join("trial-000/logs/app.1.log")).unwrap();
    let skews = skews_of(&log);
    // In order: real time, 1 h ahead, real time, drifting from 0 at twice
    // the speed, real time. A drift begins with a step as large as the
    // error on when libfaketime started in the process (measured: within
    // 2 ms; 10 ms allowed to a loaded machine): back, or ahead.
    let phase = |s: f64| match s {
        s if (s - 3600.0).abs() < 0.1 => 'J',
        s if s > -0.010 && s < 0.005 => '0',
        s if s > 0.0 && s < 1.5 => 'D',
        _ => '?',
    };
    let mut phases: Vec<char> = skews.iter().map(|s| phase(*s)).collect();
    phases.dedup();
    let phases: String = phases.into_iter().collect();
    let logs: Vec<_> =
        std::fs::read_dir(r.dir.join("trial-000/logs")).unwrap().map(|e| e.unwrap().file_name()).collect();
    let events: Vec<String> = r.history(0).iter().filter(|e| e["event"] != "probe").map(|e| e.to_string()).collect();
    assert_eq!(phases, "0J0D0", "{skews:?}\nlogs: {logs:?}\n{}", events.join("\n"));
    let jumped = skews.iter().filter(|s| phase(**s) == 'J').count();
    assert!((25..=60).contains(&jumped), "{jumped} lines 20 ms apart during a 1 s jump");
    // A drift at rate 2 for 1 s ends about 1 s ahead, starting from 0.
    let drift: Vec<f64> = skews.iter().copied().filter(|s| phase(*s) == 'D').collect();
    let (first, last) = (drift[0], drift[drift.len() - 1]);
    assert!(first < 0.1 && (0.8..=1.2).contains(&last), "drift from {first} to {last} s");
    assert!(drift.windows(2).all(|w| w[1] >= w[0]), "the drift only moves ahead");
    let detail = &r.trials()[0].faults[0].detail;
    assert!(detail.starts_with("app's clocks now read real time +3600s (libfaketime"), "{detail}");
    assert!(r.dir.join("trial-000/faketime-app/clock").exists(), "the control file is in the trial's directory");
}

/// The skews a `skew N` log printed.
fn skews_of(log: &str) -> Vec<f64> {
    let skew = |s: &str| s.parse().unwrap_or_else(|e| panic!("{e}: `skew {s}` in the log:\n{log}"));
    log.lines().filter_map(|l| l.strip_prefix("skew ")).map(skew).collect()
}

/// The skews of a `skew N` log, as phases: `0` real time, `J` 1 h ahead.
fn jump_phases(log: &str) -> (String, usize) {
    let skews = skews_of(log);
    let phase = |s: f64| match s {
        s if (s - 3600.0).abs() < 0.1 => 'J',
        s if s.abs() < 0.005 => '0',
        _ => '?',
    };
    let jumped = skews.iter().filter(|s| phase(**s) == 'J').count();
    let mut phases: Vec<char> = skews.iter().map(|s| phase(*s)).collect();
    phases.dedup();
    (phases.into_iter().collect(), jumped)
}

/// A container target: the host's libfaketime, bind-mounted with the
/// control file's directory, is preloaded into the image's own program
/// (`crashlab wallclock`, in the demo-kv image that holds only crashlab and
/// its libraries); its clock jumps by the offset and comes back.
#[test]
fn a_containers_clock_jumps_through_the_hosts_libfaketime() {
    if !libfaketime_available() || !common::docker_available() {
        return;
    }
    let _serial = common::serial();
    let tmp = tempfile::tempdir().unwrap();
    let scenario = r#"
name = "clock-container"
[target.app]
kind = "container"
image = "crashlab/demo-kv"
command = ["/crashlab", "wallclock", "--host", "{host}", "--port", "{port}"]
probe = { kind = "tcp", interval = "10ms" }
[[fault]]
kind = "clock"
target = "app"
offset = "+1h"
duration = "1s"
at = "500ms"
"#;
    let r = run(&write_scenario(tmp.path(), "clock-container.toml", scenario), &[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout(), r.stderr());
    let log = std::fs::read_to_string(r.dir.join("trial-000/logs/app.log")).unwrap();
    let (phases, jumped) = jump_phases(&log);
    assert!(phases.ends_with("0J0"), "{phases}: {log}");
    assert!((25..=60).contains(&jumped), "{jumped} lines 20 ms apart during a 1 s jump");
}

/// The library crashlab preloads, with the environment it sets, keeps a
/// CPython program with two threads from freezing under an offset: its
/// main thread sleeps while a second one reads the clock without pause,
/// holding the interpreter's lock, which the sleeper then waits for with a
/// timeout computed on the faked clock. libfaketime's plain build rereads
/// its control file from both threads at once into one buffer, with no
/// lock, and the sleeper never woke again (6 runs in 6, cut at 10 s). The
/// build that locks, libfaketimeMT, does not freeze it.
#[test]
fn the_preloaded_libfaketime_keeps_a_two_thread_program_from_freezing_under_an_offset() {
    if !libfaketime_available() {
        return;
    }
    use crashlab::targets::faketime;
    // It keeps a CPU busy: not beside a timing test.
    let _serial = common::serial();
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("clock");
    faketime::set(&file, &faketime::spec(3_600_000, None)).unwrap();
    // The interpreter's lock changes hands every 0.2 ms, so that the
    // sleeper waits for it often.
    let program = r#"
import sys, threading, time
sys.setswitchinterval(0.0002)
def read_the_clock():
    while True:
        time.monotonic()
threading.Thread(target=read_the_clock, daemon=True).start()
for _ in range(1000):
    time.sleep(0.0005)
print(time.time())
"#;
    let mut python = std::process::Command::new("python3");
    python.args(["-c", program]).stdout(std::process::Stdio::piped());
    faketime::preload(&mut python, &faketime::library().unwrap(), &file);
    let mut child = python.spawn().unwrap();
    let started = std::time::Instant::now();
    // 1000 sleeps of 0.5 ms: 2 to 4 s here, each waiting for the lock the
    // other thread holds; 20 s allowed to a loaded machine.
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > std::time::Duration::from_secs(20) {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert!(status.is_some_and(|s| s.success()), "the program was still sleeping after 20 s: {status:?}");
    // Not a pass without the library: the program's clock was 1 h ahead.
    let mut printed = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut printed).unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    let skew = printed.trim().parse::<f64>().unwrap() - now;
    assert!((skew - 3600.0).abs() < 60.0, "the program's clock read real time {skew:+.0}s, not +3600s");
}

/// A program that does not load libfaketime (here: Python run with an
/// empty environment, so nothing is preloaded) would not feel the fault:
/// the fault fails, and the trial is unknown, never a silent pass.
#[test]
fn a_clock_fault_on_a_program_without_libfaketime_makes_the_trial_unknown() {
    if !libfaketime_available() {
        return;
    }
    let text = std::fs::read_to_string(fixture("clock/clock-jump.toml")).unwrap();
    let bare = text.replace(r#"command = ["python3","#, r#"command = ["env", "-i", "/usr/bin/python3","#);
    assert_ne!(bare, text);
    let tmp = tempfile::tempdir().unwrap();
    std::fs::copy(fixture("clock/wallclock.py"), tmp.path().join("wallclock.py")).unwrap();
    let r = run(&write_scenario(tmp.path(), "bare.toml", &bare), &[]);
    let t = &r.trials()[0];
    assert_eq!(t.verdict, crashlab::reports::Verdict::Unknown, "{}", r.stdout());
    let check = t.checks.iter().find(|c| c.name == "fault #1 injected").expect("the fault's check");
    assert!(check.observed.contains("libfaketime is not loaded"), "{}", check.observed);
}

/// Debian's redis-server links jemalloc, which libfaketime cannot be
/// preloaded with (libfaketime#130): the run stops before any fault, with
/// the target's own words naming libfaketime, not a silent no-op.
#[test]
fn a_program_libfaketime_cannot_preload_into_stops_the_run_saying_so() {
    if !libfaketime_available() || !available("redis", which("redis-server"), "Debian's redis-server") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let scenario = r#"
name = "clock-redis"
[target.redis]
command = ["redis-server", "--port", "{port}", "--bind", "127.0.0.1", "--save", "", "--dir", "{data_dir}"]
probe = { kind = "tcp", interval = "10ms" }
[trials]
startup_timeout = "3s"
[[fault]]
kind = "clock"
target = "redis"
offset = "+2h"
at = "0s"
"#;
    let r = run(&write_scenario(tmp.path(), "clock-redis.toml", scenario), &[]);
    assert_eq!(r.code, 3, "{}\n{}", r.stdout(), r.stderr());
    assert!(r.stderr().contains("libfaketime"), "{}", r.stderr());
}

/// The control file is journaled before it exists; after a killed harness,
/// `cleanup` stops the target that read it and removes it.
#[test]
fn cleanup_after_a_killed_harness_removes_the_clock_file() {
    if !libfaketime_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let mut harness = common::spawn_run(&fixture("clock/clock-jump.toml"), &dir);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let file = loop {
        let entries = common::journal(&dir);
        let clock = entries.iter().find(|e| e["op"] == "clock_file").map(|e| e["path"].as_str().unwrap().to_string());
        if let (Some(path), true) =
            (clock, entries.iter().any(|e| e["op"] == "injected" || e["op"] == "target_started"))
        {
            break std::path::PathBuf::from(path);
        }
        assert!(std::time::Instant::now() < deadline, "no clock file journaled: {entries:?}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    std::thread::sleep(std::time::Duration::from_millis(700));
    harness.kill().unwrap();
    harness.wait().unwrap();
    assert!(file.exists(), "the killed harness left its control file");
    let out = common::crashlab().arg("cleanup").arg(&dir).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("removed 1 clock control file(s)"), "{stdout}");
    assert!(stdout.contains("stopped 1 process(es)"), "{stdout}");
    assert!(!file.exists());
}
