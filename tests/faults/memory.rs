//! The `memory` fault: demo-kv in a memory cgroup limited to what it uses
//! when the fault comes. The OOM killer kills it as the workload makes it
//! grow; with --fsync always nothing acknowledged is lost, the fault's
//! detail says the outage was an OOM kill, and no cgroup is left behind,
//! even by a killed harness.

use crate::common;

use common::{available, run, scenario};

fn cgroup_available() -> bool {
    // SAFETY: geteuid cannot fail.
    let root = unsafe { nix::libc::geteuid() } == 0;
    let own = crashlab::targets::cgroup::own_memory_cgroup();
    available(
        "cgroup",
        root && own.as_ref().is_ok_and(|p| p.join("memory.limit_in_bytes").exists()),
        "the memory fault makes a cgroup v1 memory cgroup (root, and the memory controller mounted)",
    )
}

fn ours_left() -> Vec<String> {
    let own = crashlab::targets::cgroup::own_memory_cgroup().unwrap();
    std::fs::read_dir(own)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(crashlab::targets::cgroup::PREFIX))
        .collect()
}

#[test]
fn an_oom_killed_store_with_fsync_always_loses_nothing_and_the_kill_is_told_as_oom() {
    if !cgroup_available() {
        return;
    }
    // Serial: the other test's cgroups would show in `ours_left`.
    let _serial = common::serial();
    let before = ours_left();
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
    assert_eq!(ours_left(), before, "every cgroup of the run is gone");
}

#[test]
fn cleanup_after_a_killed_harness_removes_the_cgroup() {
    if !cgroup_available() {
        return;
    }
    // Serial: the other test's cgroups would show in `ours_left`.
    let _serial = common::serial();
    let before = ours_left();
    let text = std::fs::read_to_string(scenario("memory-oom-fsync-always.toml")).unwrap();
    // A limit the store stays under: the cgroup lives until the end.
    let roomy = text.replace(r#"limit = "+0""#, r#"limit = "+512MiB""#);
    let tmp = tempfile::tempdir().unwrap();
    let path = common::write_scenario(tmp.path(), "roomy.toml", &roomy);
    let dir = tmp.path().join("run");
    let mut harness = common::spawn_run(&path, &dir);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !common::journal(&dir).iter().any(|e| e["op"] == "injected" || e["op"] == "cgroup") {
        assert!(std::time::Instant::now() < deadline, "no cgroup journaled");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    harness.kill().unwrap();
    harness.wait().unwrap();
    assert_ne!(ours_left(), before, "the killed harness left its cgroup");
    let out = common::crashlab().arg("cleanup").arg(&dir).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("removed 1 memory cgroup(s)"), "{stdout}");
    assert_eq!(ours_left(), before);
}
