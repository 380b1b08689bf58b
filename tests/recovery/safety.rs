//! The harness never harms what is not its own: cleanup proves a process or
//! a file is the run's before it acts, links never lead a fault or a
//! restore out of the data dir, a run directory is never shared, and an
//! interrupted trial is never called a failure.

use crate::common;
use crashlab::reports::{RunReport, Verdict};

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{crashlab, journal, write_scenario};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

fn bin() -> PathBuf {
    assert_cmd::cargo::cargo_bin("crashlab")
}

/// `(state, start time)` of a live process, from /proc/PID/stat.
fn stat(pid: i32) -> Option<(char, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some((fields[0].chars().next()?, fields[19].parse().ok()?))
}

fn alive(pid: i32) -> bool {
    stat(pid).is_some_and(|(s, _)| s != 'Z' && s != 'X')
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `crashlab run` in the background, its output in files beside the run.
fn spawn_run(scenario: &Path, dir: &Path) -> Child {
    let log = |name: &str| std::fs::File::create(dir.with_extension(name)).unwrap();
    Command::new(bin())
        .arg("run")
        .arg(scenario)
        .arg("--out")
        .arg(dir)
        .stdout(log("stdout"))
        .stderr(log("stderr"))
        .spawn()
        .unwrap()
}

/// Runs `scenario` into `tmp/name`, SIGKILLs the harness once `ready`
/// holds for the run directory, and returns the directory.
fn kill_harness_when(tmp: &Path, name: &str, scenario: &str, what: &str, ready: impl Fn(&Path) -> bool) -> PathBuf {
    let path = write_scenario(tmp, &format!("{name}.toml"), scenario);
    let dir = tmp.join(name);
    let mut harness = spawn_run(&path, &dir);
    wait_until(what, Duration::from_secs(30), || ready(&dir));
    harness.kill().unwrap();
    harness.wait().unwrap();
    dir
}

fn cleanup(dir: &Path) -> Output {
    Command::new(bin()).arg("cleanup").arg(dir).output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn entries(dir: &Path, op: &str) -> Vec<Value> {
    journal(dir).into_iter().filter(|e| e["op"] == op).collect()
}

fn root() -> bool {
    // SAFETY: geteuid cannot fail.
    common::available("root", unsafe { nix::libc::geteuid() } == 0, "the test writes ns_last_pid and mounts")
}

/// A demo-kv target whose first incarnation is killed at 300 ms, with a
/// long workload so that the run is still going when the test acts.
const KILLED_ONCE: &str = r#"
name = "killed-once"
[target.kv]
command = ["crashlab", "demo-kv", "--port", "{port}", "--data-dir", "{data_dir}"]
probe = { kind = "demo-kv", interval = "5ms", healthy_after = 2 }
[workload]
kind = "demo-kv"
target = "kv"
rate = 50
duration = "60s"
[[fault]]
kind = "kill"
target = "kv"
at = "300ms"
"#;

/// Makes the next process this test forks get `pid` (through
/// ns_last_pid): a real pid reuse, as the kernel would do it in time.
fn spawn_with_pid(pid: i32, argv: &[&str]) -> Option<Child> {
    for _ in 0..200 {
        std::fs::write("/proc/sys/kernel/ns_last_pid", (pid - 1).to_string()).ok()?;
        let mut child = Command::new(argv[0]).args(&argv[1..]).stdout(Stdio::null()).spawn().ok()?;
        if child.id() as i32 == pid {
            return Some(child);
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    None
}

#[test]
fn cleanup_never_signals_a_process_that_reused_a_pid_of_the_run() {
    if !root() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = kill_harness_when(tmp.path(), "run", KILLED_ONCE, "the second incarnation", |dir| {
        entries(dir, "target_started").len() >= 2
    });
    let started = entries(&dir, "target_started");
    let first = started[0]["pid"].as_i64().unwrap() as i32;
    let second = started[1]["pid"].as_i64().unwrap() as i32;
    // The live incarnation stops; the first one's pid is long free.
    let _ = kill(Pid::from_raw(-second), Signal::SIGKILL);
    wait_until("the second incarnation to end", Duration::from_secs(10), || !alive(second));
    assert!(!alive(first));

    // An unrelated session leader takes the first incarnation's pid: its
    // group has the journaled number and started after it.
    let mut stranger = spawn_with_pid(first, &["setsid", "sleep", "300"]).expect("the freed pid could be taken");
    let (_, stranger_start) = stat(first).unwrap();
    let out = cleanup(&dir);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    std::thread::sleep(Duration::from_millis(300));
    let survived = stat(first).is_some_and(|(s, t)| s != 'Z' && t == stranger_start);
    let _ = stranger.kill();
    let _ = stranger.wait();
    assert!(survived, "cleanup signalled an unrelated process that reused pid {first}: {}", text(&out.stdout));
}

/// A data dir with a file of 8 KiB that the target never writes, zeroed at
/// 300 ms for the rest of a long trial.
const ZEROED_BLOB: &str = r#"
name = "zeroed-blob"
[target.kv]
command = ["crashlab", "demo-kv", "--port", "{port}", "--data-dir", "{data_dir}"]
before_start = [["sh", "-c", "head -c 8192 /dev/urandom > {data_dir}/blob.dat"]]
probe = { kind = "demo-kv", interval = "5ms", healthy_after = 2 }
[workload]
kind = "demo-kv"
target = "kv"
rate = 50
duration = "60s"
[[fault]]
kind = "corrupt"
target = "kv"
path = "blob.dat"
mode = "zero"
offset = 0
length = 8192
at = "300ms"
"#;

#[test]
fn cleanup_restores_through_no_link_and_trusts_no_edited_journal() {
    if !root() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir =
        kill_harness_when(tmp.path(), "run", ZEROED_BLOB, "the damage", |dir| !entries(dir, "corrupted").is_empty());
    let damaged = PathBuf::from(entries(&dir, "corrupted")[0]["file"].as_str().unwrap());
    let data_dir = damaged.parent().unwrap().to_path_buf();

    // Somebody replaces the damaged file with a link to a file outside.
    let outside = tmp.path().join("precious.bin");
    std::fs::write(&outside, [7u8; 4096]).unwrap();
    std::fs::remove_file(&damaged).unwrap();
    std::os::unix::fs::symlink(&outside, &damaged).unwrap();

    // And edits the journal: a restore into a file outside any data dir, an
    // unmount of an unrelated tmpfs, a "target" that is an unrelated process
    // (start time 0, and a wrong one).
    let other = tmp.path().join("other");
    std::fs::create_dir(&other).unwrap();
    let victim = other.join("victim.bin");
    std::fs::write(&victim, [9u8; 100]).unwrap();
    let saved = entries(&dir, "corrupted")[0]["saved"].clone();
    let tmpfs = tmp.path().join("tmpfs");
    std::fs::create_dir(&tmpfs).unwrap();
    nix::mount::mount(Some("tmpfs"), &tmpfs, Some("tmpfs"), nix::mount::MsFlags::empty(), None::<&str>).unwrap();
    let mut bystander = Command::new("setsid").args(["sleep", "300"]).spawn().unwrap();
    let by = bystander.id() as i32;
    wait_until("the bystander", Duration::from_secs(5), || stat(by).is_some());
    let (_, by_start) = stat(by).unwrap();
    let forged = [
        serde_json::json!({"op": "corrupted", "trial": 0, "fault": 7, "data_dir": other, "file": victim,
            "saved": saved, "original_len": 8192, "ranges": [[0, 8192]], "deleted": false}),
        serde_json::json!({"op": "corrupted", "trial": 0, "fault": 8, "data_dir": data_dir, "file": data_dir.join("../../../../other/victim.bin"),
            "saved": saved, "original_len": 8192, "ranges": [[0, 8192]], "deleted": false}),
        serde_json::json!({"op": "mounted", "trial": 0, "target": "kv", "mountpoint": tmpfs}),
        serde_json::json!({"op": "target_started", "trial": 0, "target": "kv", "pid": by, "start_time": 0}),
        serde_json::json!({"op": "target_started", "trial": 0, "target": "kv", "pid": by, "start_time": by_start + 1}),
        serde_json::json!({"op": "holder_started", "trial": 0, "fault": 0, "pid": by, "start_time": by_start - 1}),
        serde_json::json!({"op": "network_created", "namespaces": ["eth0"], "host_link": "lo"}),
    ];
    let mut file = std::fs::OpenOptions::new().append(true).open(dir.join("faults.journal")).unwrap();
    for entry in forged {
        std::io::Write::write_all(&mut file, format!("{entry}\n").as_bytes()).unwrap();
    }

    let out = cleanup(&dir);
    let stdout = text(&out.stdout);
    let tmpfs_mounted =
        std::fs::read_to_string("/proc/self/mountinfo").unwrap().contains(&format!(" {} ", tmpfs.display()));
    let by_alive = alive(by);
    let _ = nix::mount::umount(&tmpfs);
    let _ = bystander.kill();
    let _ = bystander.wait();
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert_eq!(std::fs::read(&outside).unwrap(), vec![7u8; 4096], "written through a symlink: {stdout}");
    assert_eq!(std::fs::read(&victim).unwrap(), vec![9u8; 100], "an edited journal steered a restore: {stdout}");
    assert!(tmpfs_mounted, "an edited journal unmounted an unrelated tmpfs: {stdout}");
    assert!(by_alive, "an edited journal had an unrelated process signalled: {stdout}");
    assert!(stdout.contains("symlink"), "the refusal names the link: {stdout}");
    assert!(stdout.contains("not a data dir of the run"), "{stdout}");
    assert!(stdout.contains("left alone: network name `eth0`"), "{stdout}");
    assert!(Path::new("/sys/class/net/lo").exists());
}

#[test]
fn a_hard_link_out_of_the_data_dir_is_never_damaged() {
    let tmp = tempfile::tempdir().unwrap();
    let outside = tmp.path().join("precious.bin");
    std::fs::write(&outside, [7u8; 8192]).unwrap();
    let before = std::fs::metadata(&outside).unwrap();
    let scenario = ZEROED_BLOB
        .replace(
            "head -c 8192 /dev/urandom > {data_dir}/blob.dat",
            &format!("ln {} {{data_dir}}/blob.dat", outside.display()),
        )
        .replace("duration = \"60s\"", "duration = \"1s\"");
    let path = write_scenario(tmp.path(), "linked.toml", &scenario);
    let run = common::run(&path, &["--trials", "1"]);
    let after = std::fs::metadata(&outside).unwrap();
    assert_eq!(std::fs::read(&outside).unwrap(), vec![7u8; 8192]);
    assert_eq!(
        std::os::unix::fs::MetadataExt::mtime_nsec(&after),
        std::os::unix::fs::MetadataExt::mtime_nsec(&before),
        "the outside file was written (and restored later)"
    );
    // The fault could damage nothing: the trial says why, and is unknown.
    let failed = run.history(0).into_iter().find(|e| e["event"] == "fault_failed").expect("the fault failed");
    assert!(failed["error"].as_str().unwrap().contains("blob.dat: skipped: it has 2 hard links"), "{failed}");
    assert_eq!(run.report().verdict, Verdict::Unknown, "{}", run.stdout());
}

/// Whether a live process runs `sleep <seconds>` (a unique number marks
/// the test's own).
fn sleeping(seconds: &str) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == format!("sleep\0{seconds}\0").as_bytes())
                && alive(*pid)
        })
        .collect()
}

#[test]
fn hooks_and_recovery_steps_die_with_a_killed_harness_at_cleanup() {
    let tmp = tempfile::tempdir().unwrap();
    // A hook that hangs (and leaves its group), then a recovery step that
    // hangs; the seconds, unique to this test process, mark its sleeps.
    let base = 100_000 + std::process::id() * 10;
    let [a, b, c] = [base, base + 1, base + 2].map(|n| n.to_string());
    let hook = KILLED_ONCE.replace(
        "probe = {",
        &format!("before_start = [[\"sh\", \"-c\", \"setsid sleep {a} & sleep {b}\"]]\nprobe = {{"),
    );
    let step =
        format!("{KILLED_ONCE}\n[[recover]]\naction = \"run\"\ntarget = \"kv\"\ncommand = [\"sleep\", \"{c}\"]\n");
    for (name, scenario, sleeps) in [("hook", hook, vec![a, b]), ("step", step, vec![c])] {
        let dir = kill_harness_when(tmp.path(), name, &scenario, &format!("the {name}'s sleeps"), |_| {
            sleeps.iter().all(|s| !sleeping(s).is_empty())
        });
        let out = cleanup(&dir);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        for s in &sleeps {
            wait_until(&format!("`sleep {s}` of the {name} to be stopped"), Duration::from_secs(10), || {
                sleeping(s).is_empty()
            });
        }
    }
}

#[test]
fn an_interrupted_trial_is_unknown_everywhere() {
    let tmp = tempfile::tempdir().unwrap();
    // The target comes back only after 5 s: Ctrl-C lands in between.
    let scenario = KILLED_ONCE.replace("probe = {", "restart = { delay = \"5s\" }\nprobe = {");
    let path = write_scenario(tmp.path(), "slow.toml", &scenario);
    let dir = tmp.path().join("run");
    let harness = spawn_run(&path, &dir);
    wait_until("the kill", Duration::from_secs(30), || !entries(&dir, "injected").is_empty());
    std::thread::sleep(Duration::from_millis(200));
    kill(Pid::from_raw(harness.id() as i32), Signal::SIGINT).unwrap();
    let out = harness.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(4));
    let stdout = std::fs::read_to_string(dir.with_extension("stdout")).unwrap();
    let report = RunReport::from_json(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap();
    assert_eq!(report.verdict, Verdict::Unknown, "{stdout}");
    assert_eq!(report.trials[0].verdict, Verdict::Unknown, "{stdout}");
    assert!(stdout.contains("verdict: UNKNOWN"), "{stdout}");
    let junit = std::fs::read_to_string(dir.join("junit.xml")).unwrap();
    assert!(!junit.contains("<failure"), "{junit}");
}

#[test]
fn a_torn_journal_line_split_inside_a_character_does_not_stop_cleanup() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = kill_harness_when(tmp.path(), "run", KILLED_ONCE, "the second incarnation", |dir| {
        entries(dir, "target_started").len() >= 2
    });
    let live = entries(&dir, "target_started")[1]["pid"].as_i64().unwrap() as i32;
    let mut file = std::fs::OpenOptions::new().append(true).open(dir.join("faults.journal")).unwrap();
    std::io::Write::write_all(
        &mut file,
        "{\"op\":\"data_dir\",\"path\":\"/tmp/donn\u{e9}".as_bytes().split_last().unwrap().1,
    )
    .unwrap();
    let out = cleanup(&dir);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    wait_until("the live incarnation to be stopped", Duration::from_secs(10), || !alive(live));
}

#[test]
fn a_run_directory_is_never_shared_nor_silently_reused() {
    let tmp = tempfile::tempdir().unwrap();
    let scenario = write_scenario(tmp.path(), "killed.toml", &KILLED_ONCE.replace("\"60s\"", "\"2s\""));
    let dir = tmp.path().join("run");
    let mut first = spawn_run(&scenario, &dir);
    wait_until("the first run", Duration::from_secs(30), || !entries(&dir, "target_started").is_empty());
    let second = crashlab().arg("run").arg(&scenario).arg("--out").arg(&dir).output().unwrap();
    assert_eq!(second.status.code(), Some(2), "{}", text(&second.stderr));
    assert!(text(&second.stderr).contains("in use by another run (pid"), "{}", text(&second.stderr));
    // Nor may cleanup act under a live run.
    let early = cleanup(&dir);
    assert_eq!(early.status.code(), Some(2), "{}", text(&early.stderr));
    assert!(text(&early.stderr).contains("still going"), "{}", text(&early.stderr));
    assert_eq!(first.wait().unwrap().code(), Some(0));

    let again = crashlab().arg("run").arg(&scenario).arg("--out").arg(&dir).output().unwrap();
    assert_eq!(again.status.code(), Some(2));
    assert!(text(&again.stderr).contains("not empty"), "{}", text(&again.stderr));
    let replaced = crashlab().arg("run").arg(&scenario).arg("--out").arg(&dir).arg("--replace").output().unwrap();
    assert_eq!(replaced.status.code(), Some(0), "{}", text(&replaced.stderr));
    let history = std::fs::read_to_string(dir.join("history.jsonl")).unwrap();
    let trials = history.lines().filter(|l| l.contains("\"trial_started\"")).count();
    assert_eq!(trials, 1, "the replaced run's history is gone");

    // A directory that holds anything but a finished run is never replaced.
    let foreign = tmp.path().join("foreign");
    std::fs::create_dir(&foreign).unwrap();
    std::fs::write(foreign.join("notes.txt"), "mine").unwrap();
    let refused = crashlab().arg("run").arg(&scenario).arg("--out").arg(&foreign).arg("--replace").output().unwrap();
    assert_eq!(refused.status.code(), Some(2));
    assert_eq!(std::fs::read_to_string(foreign.join("notes.txt")).unwrap(), "mine");
    let contents: Vec<_> = std::fs::read_dir(&foreign).unwrap().flatten().map(|e| e.file_name()).collect();
    assert_eq!(contents, vec![std::ffi::OsString::from("notes.txt")], "nothing written into a refused directory");
}

#[test]
fn values_that_can_only_fail_or_mislead_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let cases = [
        ("interval = \"5ms\"", "interval = \"0ms\"", "`interval` in `probe` of [target.kv] must be more than 0"),
        (
            "healthy_after = 2",
            "timeout = \"0ms\", healthy_after = 2",
            "`timeout` in `probe` of [target.kv] must be more than 0",
        ),
        ("rate = 50", "rate = 50\ntimeout = \"0ms\"", "`timeout` in [workload] must be more than 0"),
        ("[workload]", "[trials]\nstartup_timeout = \"0s\"\n[workload]", "`startup_timeout`"),
        ("probe = {", "data_dir = \"/etc\"\ndisposable = true\nprobe = {", "/etc, a system directory"),
        ("probe = {", "data_dir = \"/usr/\"\ndisposable = true\nprobe = {", "a system directory"),
    ];
    for (from, to, message) in cases {
        let path = write_scenario(tmp.path(), "bad.toml", &KILLED_ONCE.replace(from, to));
        let out = crashlab().arg("validate").arg(&path).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{to}: {}", text(&out.stdout));
        assert!(text(&out.stderr).contains(message), "{to}: {}", text(&out.stderr));
    }
    // Known only once rendered: the run directory's parent.
    let path = write_scenario(
        tmp.path(),
        "parent.toml",
        &KILLED_ONCE.replace("probe = {", "data_dir = \"{run_dir}/..\"\ndisposable = true\nprobe = {"),
    );
    let run = common::run(&path, &["--trials", "1"]);
    assert_eq!(run.code, 3, "{}", run.stderr());
    assert!(run.stderr().contains("holds the run directory"), "{}", run.stderr());
}

#[test]
fn a_run_that_acknowledged_nothing_never_passes() {
    if !common::available("redis", common::which("redis-server"), "the test refuses writes with a Redis setting") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    // Redis refuses every write (NOREPLICAS: no replica to write to) but
    // reads fine: nothing is acknowledged, the read-back works, and without
    // the check every durability bound would hold.
    let scenario = r#"
name = "nothing-acked"
[target.redis]
command = ["redis-server", "--port", "{port}", "--bind", "127.0.0.1", "--dir", "{data_dir}", "--save", "", "--appendonly", "no", "--min-replicas-to-write", "1"]
probe = { kind = "tcp", port = "{port}", send = "PING\r\n", expect = "+PONG", interval = "5ms", healthy_after = 2 }
[workload]
kind = "redis"
target = "redis"
rate = 100
duration = "1s"
[[fault]]
kind = "kill"
target = "redis"
at = "500ms"
[expect]
lost_acked = 0
"#;
    let path = write_scenario(tmp.path(), "nothing.toml", scenario);
    let run = common::run(&path, &["--trials", "1"]);
    let trial = &run.trials()[0];
    assert_eq!(trial.rpo.acked_writes, 0, "{}", run.stdout());
    assert!(trial.ops.fail > 50, "the writes were refused: {:?}", trial.ops);
    assert!(trial.rpo.read_back, "{}", run.stdout());
    assert_eq!(trial.verdict, Verdict::Unknown, "{}", run.stdout());
    assert_eq!(run.code, 4, "{}", run.stdout());
    let check = &trial.checks.iter().find(|c| c.name == "acknowledged writes").unwrap();
    assert_eq!(check.verdict, Verdict::Unknown);
}

#[test]
fn a_daemon_a_hook_left_running_ends_with_its_trial() {
    let tmp = tempfile::tempdir().unwrap();
    let seconds = (200_000 + std::process::id() * 10).to_string();
    let scenario = KILLED_ONCE.replace("\"60s\"", "\"1s\"").replace(
        "probe = {",
        &format!("before_start = [[\"sh\", \"-c\", \"setsid sleep {seconds} > /dev/null 2>&1 &\"]]\nprobe = {{"),
    );
    let path = write_scenario(tmp.path(), "daemon.toml", &scenario);
    let r = common::run(&path, &["--trials", "1"]);
    assert_eq!(r.code, 0, "{}", r.stderr());
    assert!(sleeping(&seconds).is_empty(), "the hook's daemon outlived its trial");
    assert!(r.stderr().contains("stopped 1 process(es) it had started and left running"), "{}", r.stderr());
}

#[test]
fn cleanup_of_a_run_killed_before_it_started_anything_heals_nothing_and_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    // Killed between claiming its directory and writing its journal.
    let dir = tmp.path().join("run");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("run.lock"), "4242\n").unwrap();
    let out = cleanup(&dir);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("stopped 0 process(es)"), "{}", text(&out.stdout));
    // A directory that is no run at all, or none: a usage error.
    for wrong in [tmp.path().to_path_buf(), tmp.path().join("typo")] {
        let out = cleanup(&wrong);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    }
}
