//! Container targets on the local Docker engine, with the demo-kv image the
//! harness builds itself (no registry). Each test checks that its run left
//! no container behind.

use crate::common;
use crashlab::reports::{CheckReport, Verdict};

use std::time::{Duration, Instant};

use common::{docker_available, labelled_containers, labelled_networks, run, scenario, Run};
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
        let (started, answered) = restart_and_first_answer(&r.history(t.index as u64));
        assert!(
            started <= answered,
            "trial {}: the new incarnation is dated at {started:.1} ms, after it answered at {answered:.1} ms",
            t.index
        );
    }
    assert!(labelled_containers(&label(r)).is_empty(), "the run's containers are gone");
    assert!(labelled_networks(&label(r)).is_empty(), "and its network");
}

/// When the next incarnation after the kill was dated to have begun, and
/// when it first answered healthy (the first healthy answer to a sample
/// begun after the first failed one). It cannot answer before it began: a
/// start dated after that answer was dated when it was seen, not when it
/// happened (dated by the engine's `StartedAt`, Redis's restart in a
/// container was dated a median 23-27 ms before its answer, 9.6 ms at the
/// least under stress-ng).
fn restart_and_first_answer(events: &[Value]) -> (f64, f64) {
    let at = |e: &Value| e["t_ms"].as_f64().unwrap();
    let kill = events.iter().find(|e| e["event"] == "fault_injected").map(at).expect("a fault");
    let started = events.iter().find(|e| e["event"] == "target_started" && at(e) > kill).map(at).expect("a restart");
    let probes = || events.iter().filter(|e| e["event"] == "probe" && at(e) >= kill);
    let down = probes().find(|e| e["healthy"] == false).map(at).expect("the probe saw the outage");
    let answered = probes()
        .filter(|e| e["healthy"] == true && at(e) > down)
        .map(|e| at(e) + e["latency_ms"].as_f64().unwrap())
        .fold(f64::INFINITY, f64::min);
    (started, answered)
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
    assert_eq!(labelled_networks(label).len(), 1, "and the run's network");
    let out = common::crashlab().arg("cleanup").arg(&dir).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("removed 1 container(s)"), "{stdout}");
    assert!(stdout.contains("removed 1 container network(s) of the run"), "{stdout}");
    assert!(labelled_containers(label).is_empty());
    assert!(labelled_networks(label).is_empty());
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

/// A container the engine cannot start (its command does not exist) stops
/// the run with the engine's reason, and the container that was created
/// for it goes: it was left behind, "Created", before.
#[test]
fn a_container_that_cannot_start_says_why_and_is_not_left_behind() {
    if !docker_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let text = r#"name = "cannot-start"
[target.kv]
kind = "container"
image = "crashlab/demo-kv"
command = ["/no-such-binary", "{port}"]
probe = { kind = "demo-kv" }
"#;
    let r = run(&common::write_scenario(tmp.path(), "cannot-start.toml", text), &[]);
    assert_eq!(r.code, 3, "{}", r.stderr());
    assert!(r.stderr().contains("/no-such-binary"), "{}", r.stderr());
    let label = label_of(&r.dir).expect("a container was created");
    assert!(labelled_containers(&label).is_empty(), "its container is gone");
    assert!(labelled_networks(&label).is_empty(), "and its network");
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

/// A container paused while its store waits on a slow fsync: the runtime
/// cannot freeze a process in uninterruptible sleep and gives up after its
/// own ~200 ms of tries ("unable to freeze", which made a CI run's pause
/// trial unknown). The pause keeps trying and is in effect once the fsync
/// returns; it is dated then, so no write is acknowledged while it holds.
#[test]
fn a_pause_waits_for_a_slow_fsync_and_holds_from_when_it_froze() {
    if !docker_available() || !common::fuse_available() {
        return;
    }
    let _serial = common::serial();
    let tmp = tempfile::tempdir().unwrap();
    let text = r#"name = "pause-in-slow-fsync"
[target.kv]
kind = "container"
image = "crashlab/demo-kv"
command = ["/crashlab", "demo-kv", "--host", "{host}", "--port", "{port}", "--data-dir", "{data_dir}", "--fsync", "always"]
probe = { kind = "demo-kv", interval = "5ms", timeout = "100ms" }
[workload]
kind = "demo-kv"
target = "kv"
rate = 200
duration = "2500ms"
[[fault]]
kind = "io"
target = "kv"
path = "wal.log"
ops = ["fsync"]
delay = "300ms"
at = "400ms"
duration = "600ms"
[[fault]]
kind = "pause"
target = "kv"
duration = "500ms"
at = "700ms"
[expect]
lost_acked = 0
"#;
    let r = run(&common::write_scenario(tmp.path(), "pause.toml", text), &["--seed", "41", "--trials", "2"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout(), r.stderr());
    for (i, t) in r.trials().iter().enumerate() {
        let pause = t.faults.iter().find(|f| f.kind == "pause").expect("a pause");
        let healed = pause.healed_at_ms.expect("the pause healed");
        eprintln!("trial {i}: {} (at {:.1} ms, healed {healed:.1} ms)", pause.detail, pause.injected_at_ms);
        assert!(pause.detail.contains("in effect"), "trial {i}: {pause:?}");
        // A write sent once the freeze took cannot be answered before the
        // thaw (one sent before may be, its answer already on its way).
        let events = r.history(i as u64);
        let sent: std::collections::HashMap<u64, f64> = events
            .iter()
            .filter(|e| e["event"] == "invoke")
            .map(|e| (e["op"].as_u64().unwrap(), e["t_ms"].as_f64().unwrap()))
            .collect();
        // The thaw is asked for at the pause's duration (500 ms) after it
        // took, and recorded once the engine did it: an answer may come
        // just before that record, never before the thaw was asked for.
        let thaw_asked = pause.injected_at_ms + 500.0;
        assert!(thaw_asked <= healed, "trial {i}: healed at {healed:.1} ms, before its 500 ms");
        let acked_while_frozen: Vec<(f64, f64)> = events
            .iter()
            .filter(|e| e["event"] == "complete" && e["outcome"] == "ok")
            .map(|e| (sent[&e["op"].as_u64().unwrap()], e["t_ms"].as_f64().unwrap()))
            .filter(|&(sent, answered)| sent > pause.injected_at_ms && answered < thaw_asked)
            .collect();
        assert!(
            acked_while_frozen.is_empty(),
            "trial {i}: writes sent while frozen ({:.1} to {thaw_asked:.1} ms) were acknowledged before the \
             thaw (sent, answered): {acked_while_frozen:?}",
            pause.injected_at_ms
        );
        assert_eq!(t.verdict, Verdict::Pass, "trial {i}");
    }
    assert!(labelled_containers(&label(&r)).is_empty(), "the run's containers are gone");
}

/// A container the run creates is reached at its own address on a network
/// of the run: the same address in every trial and after a restart (fixed,
/// so nothing else can be given it meanwhile), and the report says so;
/// `reach = "published"` takes its published port instead. Both recover.
/// At its address, samples sent as its link went away hang until their
/// timeout (1 s here): the probe keeps sampling past them, so the recovery
/// is seen soon after the container's return (a few ms here; the bound
/// leaves room for a loaded machine's slower start), not when the hung
/// samples give up (~650 ms after it with 8 samples in flight at most).
#[test]
fn a_container_is_reached_at_its_own_fixed_address_or_at_its_published_port() {
    if !docker_available() {
        return;
    }
    let _serial = common::serial();
    let tmp = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(scenario("container-kill.toml"))
        .unwrap()
        .replace("interval = \"5ms\",", "interval = \"5ms\", timeout = \"1s\",");
    assert!(text.contains("timeout = \"1s\""));
    let mut addresses = Vec::new();
    for reach in ["address", "published"] {
        let chosen =
            text.replace("image = \"crashlab/demo-kv\"", &format!("image = \"crashlab/demo-kv\"\nreach = \"{reach}\""));
        let r = run(
            &common::write_scenario(tmp.path(), &format!("{reach}.toml"), &chosen),
            &["--seed", "35", "--trials", "2"],
        );
        check_restarted_and_nothing_lost(&r);
        let reached: Vec<&String> = r.trials().iter().map(|t| &t.reached["kv"]).collect();
        let at = |i: usize| reached[i].split(':').next().unwrap().to_string();
        assert_eq!(at(0), at(1), "{reach}: the same address in every trial: {reached:?}");
        let path = if reach == "address" { "(its own address)" } else { "(its published port)" };
        assert!(reached.iter().all(|r| r.ends_with(path)), "{reach}: {reached:?}");
        assert!(r.stdout().contains(&format!("target kv reached at {}", reached[0])), "{}", r.stdout());
        addresses.push(at(0));
        if reach == "address" {
            for t in r.trials() {
                let f = &t.faults[0];
                let (restart, rto) = (f.restart_ms.unwrap(), f.rto_ms.unwrap());
                assert!(rto - restart <= 400.0, "trial {}: back at {restart:.1} ms, seen at {rto:.1} ms", t.index);
            }
        }
    }
    assert_ne!(addresses[0], "127.0.0.1");
    assert!(addresses[0].parse::<std::net::Ipv4Addr>().is_ok_and(|a| a.is_private()), "{addresses:?}");
    assert_eq!(addresses[1], "127.0.0.1");
}
