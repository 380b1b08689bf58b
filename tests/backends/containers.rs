//! Container targets on the local Docker engine, with the demo-kv image the
//! harness builds itself (no registry). Each test checks that its run left
//! no container behind.

use crate::common;
use crashlab::reports::{CheckReport, Verdict};

use std::time::{Duration, Instant};

use common::{docker_available, labelled_containers, run, scenario, Run};
use serde_json::Value;

/// The `crashlab.run` label of a run's containers, from its journal.
fn label_of(dir: &std::path::Path) -> Option<String> {
    common::journal(dir)
        .into_iter()
        .find(|e| e["op"] == "container_created")
        .map(|e| format!("crashlab.run={}", e["run_label"].as_str().unwrap()))
}

fn label(r: &Run) -> String {
    label_of(&r.dir).expect("the run created a container")
}

fn check_restarted_and_nothing_lost(r: &Run) {
    assert_eq!(r.code, 0, "{}\n{}", r.stdout(), r.stderr());
    for t in r.trials() {
        let f = &t.faults[0];
        let rto = t.rto_ms.expect("recovered");
        let restart = f.restart_ms.expect("the container's process came back");
        assert!(restart < rto, "restart {restart} ms precedes readiness {rto} ms");
        assert!(f.detail.as_str().starts_with("SIGKILL to pid"), "{f:?}");
        assert_eq!(t.rpo.lost_acked, Some(0), "trial {}", t.index);
        common::assert_the_workload_ran("container kill", t);
    }
    assert!(labelled_containers(&label(r)).is_empty(), "the run's containers are gone");
}

#[test]
fn a_container_killed_through_its_host_pid_is_restarted_by_the_harness() {
    if !docker_available() {
        return;
    }
    // Serial: the scenario bounds the RTO, and the memory test's
    // container thrashes at its limit.
    let _serial = common::serial();
    let r = run(&scenario("container-kill.toml"), &["--seed", "31"]);
    check_restarted_and_nothing_lost(&r);
}

#[test]
fn a_container_killed_through_its_host_pid_is_restarted_by_the_engines_own_policy() {
    if !docker_available() {
        return;
    }
    // Serial: the scenario bounds the RTO, and the memory test's
    // container thrashes at its limit.
    let _serial = common::serial();
    let r = run(&scenario("container-kill-engine-restart.toml"), &["--seed", "32"]);
    check_restarted_and_nothing_lost(&r);
}

/// `scope = "all"` signals every process in the container's pid namespace
/// (the default, `main`, is its main process, whose death takes the rest).
#[test]
fn a_kill_of_every_process_in_a_container_is_a_crash_the_harness_recovers_from() {
    if !docker_available() {
        return;
    }
    // Serial: the scenario bounds the RTO, and the memory test's
    // container thrashes at its limit.
    let _serial = common::serial();
    let tmp = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(scenario("container-kill.toml")).unwrap().replacen(
        "kind = \"kill\"\n",
        "kind = \"kill\"\nscope = \"all\"\n",
        1,
    );
    let r = run(&common::write_scenario(tmp.path(), "all.toml", &text), &["--seed", "33", "--trials", "2"]);
    check_restarted_and_nothing_lost(&r);
    for t in r.trials() {
        let detail = t.faults[0].detail.as_str();
        assert!(detail.contains("and every process the target started ("), "{detail}");
    }
}

/// The container's data dir is a bind mount of the trial's: a storage fault
/// reaches it from the host while the container is stopped.
#[test]
fn a_file_in_a_containers_bind_mounted_data_dir_is_corrupted_while_it_is_stopped() {
    if !docker_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(scenario("container-kill.toml"))
        .unwrap()
        .replace("\"--fsync\", \"always\"]", "\"--fsync\", \"always\", \"--on-corruption\", \"refuse\"]")
        .replace(
            "kind = \"kill\"\ntarget = \"kv\"\nat = \"500ms..1500ms\"",
            "kind = \"corrupt\"\ntarget = \"kv\"\npath = \"wal.log\"\nmode = \"bitflip\"\noffset = \"50%\"\nat = \"1s\"",
        )
        .replace("count = 3", "count = 1\nrecovery_timeout = \"3s\"");
    let path = common::write_scenario(tmp.path(), "corrupt.toml", &text);
    let r = run(&path, &["--seed", "33"]);
    assert_eq!(r.code, 1, "the refusing store never recovers: {}\n{}", r.stdout(), r.stderr());
    let t = &r.trials()[0];
    assert!(t.faults[0].detail.as_str().contains("bitflip (offline): wal.log: flipped byte"));
    let observed: Vec<&CheckReport> = t.checks.iter().filter(|c| c.verdict == Verdict::Fail).collect();
    assert!(
        observed.iter().any(|c| c.observed.as_str().contains("checksum mismatch")),
        "the report quotes the container's refusal: {observed:?}"
    );
    assert!(labelled_containers(&label(&r)).is_empty());
}

#[test]
fn cleanup_removes_the_containers_of_a_killed_harness() {
    if !docker_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(scenario("container-kill.toml"))
        .unwrap()
        .replace("duration = \"2s\"", "duration = \"60s\"");
    let path = common::write_scenario(tmp.path(), "long.toml", &text);
    let dir = tmp.path().join("killed");
    let mut harness = common::spawn_run(&path, &dir);
    let deadline = Instant::now() + Duration::from_secs(60);
    let label = loop {
        if let Some(label) = label_of(&dir).filter(|l| !labelled_containers(l).is_empty()) {
            break label;
        }
        assert!(Instant::now() < deadline, "no container was started");
        std::thread::sleep(Duration::from_millis(50));
    };
    let label = label.as_str();
    std::thread::sleep(Duration::from_millis(500));
    harness.kill().unwrap();
    harness.wait().unwrap();
    assert_eq!(labelled_containers(label).len(), 1, "a killed harness leaves its container");
    let out = common::crashlab().arg("cleanup").arg(&dir).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("removed 1 container(s)"), "{stdout}");
    assert!(labelled_containers(label).is_empty());
}

#[test]
fn a_container_taken_off_its_network_fails_ops_meanwhile_and_recovers_after() {
    if !docker_available() {
        return;
    }
    let r = run(&scenario("container-disconnect.toml"), &["--seed", "34"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout(), r.stderr());
    let t = &r.trials()[0];
    let f = &t.faults[0];
    let (from, to) = (f.injected_at_ms, f.healed_at_ms.unwrap());
    let events = r.history(0);
    let sent: std::collections::HashMap<u64, f64> = events
        .iter()
        .filter(|e| e["event"] == "invoke")
        .map(|e| (e["op"].as_u64().unwrap(), e["t_ms"].as_f64().unwrap()))
        .collect();
    let inside: Vec<&Value> = events
        .iter()
        .filter(|e| e["event"] == "complete")
        .filter(|e| {
            let at = sent[&e["op"].as_u64().unwrap()];
            at > from + 5.0 && at < to - 500.0
        })
        .collect();
    assert!(inside.len() > 50, "only {} ops inside the disconnect", inside.len());
    assert!(inside.iter().all(|e| e["outcome"] != "ok"), "an op succeeded while the container was off its network");
    let rto = t.rto_ms.expect("recovered");
    assert!(rto >= 1900.0, "recovered at {rto} ms, before the 2 s disconnect ended");
    assert!(f.rto_from_heal_ms.unwrap() <= 500.0);
    assert_eq!(t.rpo.lost_acked, Some(0));
    assert!(labelled_containers(&label(&r)).is_empty());
}

#[test]
fn killing_one_compose_service_leaves_the_other_healthy_throughout() {
    if !docker_available() || !common::compose_available() {
        return;
    }
    let r = run(&scenario("compose-two-services.toml"), &["--seed", "35"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout(), r.stderr());
    let t = &r.trials()[0];
    assert!(t.faults[0].restart_ms.is_some(), "kv1's container came back");
    assert_eq!(t.rpo.lost_acked, Some(0));
    let events = r.history(0);
    let kv2: Vec<&Value> = events
        .iter()
        .filter(|e| e["event"] == "probe" && e["target"] == "kv2" && e["t_ms"].as_f64().unwrap() >= 0.0)
        .collect();
    assert!(kv2.len() > 100, "kv2 was probed throughout ({} samples)", kv2.len());
    assert!(kv2.iter().all(|e| e["healthy"] == true), "kv2 had an unhealthy sample while kv1 was down");
    let kv1_down = events.iter().any(|e| e["event"] == "probe" && e["target"] == "kv1" && e["healthy"] == false);
    assert!(kv1_down, "kv1 was seen down");
    // The project is gone: no container of it remains.
    let journal = std::fs::read_to_string(r.dir.join("faults.journal")).unwrap();
    let project = journal
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|e| e["op"] == "compose_up")
        .map(|e| e["project"].as_str().unwrap().to_string())
        .expect("the project was journaled");
    assert!(labelled_containers(&format!("com.docker.compose.project={project}")).is_empty());
}

/// A missing image names the command that makes it.
#[test]
fn a_missing_image_says_how_to_build_it() {
    if !docker_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let text = r#"name = "missing-image"
[target.db]
kind = "container"
image = "crashlab/debian-no-such-package:latest"
command = ["sleep", "30"]
probe = { kind = "tcp" }
"#;
    let r = run(&common::write_scenario(tmp.path(), "missing.toml", text), &[]);
    assert_eq!(r.code, 3, "{}", r.stderr());
    assert!(r.stderr().contains("build it with `crashlab image build --debian no-such-package`"), "{}", r.stderr());
}

/// `mounts` puts the user's own files into a container target, read-only
/// when asked, beside the data dir.
#[test]
fn a_container_target_gets_the_mounts_it_names() {
    if !docker_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join("app")).unwrap();
    std::fs::write(tmp.path().join("app/settings.conf"), "fsync = always\n").unwrap();
    let text = r#"name = "mounts"
[target.mounted]
kind = "container"
image = "crashlab/demo-kv"
command = ["/crashlab", "demo-kv", "--host", "{host}", "--port", "{port}", "--data-dir", "{data_dir}"]
mounts = ["./app:/app:ro"]
probe = { kind = "demo-kv" }
[[recover]]
action = "check"
target = "mounted"
command = ["sh", "-c", "docker inspect $(docker ps -q --filter label=crashlab.target=mounted) | tr -d ' ' | grep -A6 '\"Destination\":\"/app\"' | grep -q '\"RW\":false'"]
"#;
    let r = run(&common::write_scenario(tmp.path(), "mounts.toml", text), &[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout(), r.stderr());
    assert!(r.trials()[0].recovery.iter().all(|s| s.ok), "{:?}", r.trials()[0].recovery);

    let bad = text.replace("./app:/app:ro", "./nowhere:/app");
    let out =
        common::crashlab().arg("validate").arg(common::write_scenario(tmp.path(), "bad.toml", &bad)).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nowhere: No such file or directory"));
}

/// The engine's memory limit on a container (`docker update`): under it
/// the growing store is either OOM-killed, which its exit records, or held
/// thrashing at the limit until the heal; either way the limit pressed on
/// it (without the engine's limit the trial would be unknown: the fault
/// changed nothing), nothing acknowledged is lost, and the limit is put
/// back.
#[test]
fn a_container_memory_limit_presses_through_the_engine_and_loses_nothing() {
    if !docker_available() {
        return;
    }
    let _serial = common::serial();
    let r = run(&scenario("container-memory-oom.toml"), &["--trials", "2", "--seed", "37"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout(), r.stderr());
    for (i, t) in r.trials().iter().enumerate() {
        let detail = &t.faults[0].detail;
        assert!(detail.contains("memory limited by the engine to"), "{detail}");
        let pressed = ["the OOM killer killed", "used memory up to its limit", "ended during the fault"];
        assert!(pressed.iter().any(|p| detail.contains(p)), "trial {i}: {detail}");
        assert!(detail.ends_with("the engine's limits put back"), "trial {i}: {detail}");
        assert_eq!(t.rpo.lost_acked, Some(0), "trial {i}");
        for exit in r.history(i as u64).into_iter().filter(|e| e["event"] == "target_exited") {
            let status = exit["status"].as_str().unwrap();
            assert!(!status.contains("137") || status.ends_with("OOM-killed"), "a kill the engine saw as OOM: {exit}");
        }
    }
    assert!(labelled_containers(&label(&r)).is_empty(), "the run's containers are gone");
}

/// The engine's CPU quota on a container: throttled, and the CPU time it
/// used (the container's cpuacct) within the quota.
#[test]
fn a_container_cpu_quota_holds_it_to_the_quota() {
    if !docker_available() {
        return;
    }
    let _serial = common::serial();
    let text = std::fs::read_to_string(scenario("cpu-throttle.toml")).unwrap().replacen(
        r#"command = ["crashlab", "demo-kv", "--port""#,
        "kind = \"container\"\nimage = \"crashlab/demo-kv\"\ncommand = [\"/crashlab\", \"demo-kv\", \"--host\", \"{host}\", \"--port\"",
        1,
    );
    assert!(text.contains("kind = \"container\""));
    let tmp = tempfile::tempdir().unwrap();
    let r = run(&common::write_scenario(tmp.path(), "cpu.toml", &text), &["--trials", "1", "--seed", "41"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout(), r.stderr());
    let detail = &r.trials()[0].faults[0].detail;
    assert!(detail.contains("CPU limited by the engine to 0.05 CPUs") && detail.contains("throttled in "), "{detail}");
    let used: f64 = detail.split("the target used ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
    let over: f64 = detail.split(" ms of CPU in ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
    assert!(used <= 0.05 * over + 0.05 * 100.0 + 10.0, "used {used} ms of CPU in {over} ms: {detail}");
    assert_eq!(r.trials()[0].rpo.lost_acked, Some(0));
    assert!(labelled_containers(&label(&r)).is_empty(), "the run's containers are gone");
}
