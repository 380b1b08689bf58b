//! Container targets on remote hosts: each test host (a namespace with an
//! sshd, tests/fixtures/hosts/ssh-hosts.sh) gets a Docker engine of its own,
//! started in its namespace, so that its bridge, its published ports and
//! its iptables rules are that host's. The host's agent runs the container
//! there; the workload and probes stay here.

use std::path::Path;

use crate::common;

use common::{crashlab, docker_available, run, ssh_hosts_available, write_scenario, SshHosts};

/// demo-kv in a container on host `h1`, published on h1's address.
const KV_ON_H1: &str = r#"
[target.kv]
kind = "container"
host = "h1"
image = "crashlab/demo-kv"
command = ["crashlab", "demo-kv", "--host", "{host}", "--port", "{port}", "--data-dir", "{data_dir}", "--fsync", "always"]
restart = { policy = "always", delay = "0ms" }
probe = { kind = "demo-kv", interval = "5ms", timeout = "200ms", healthy_after = 3 }
"#;

fn available() -> bool {
    ssh_hosts_available() && docker_available()
}

/// `docker -H unix://SOCKET ARGS...`: what it printed.
fn docker_on(socket: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("docker")
        .arg("-H")
        .arg(format!("unix://{}", socket.display()))
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "docker {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The agent's journal of a run on host `h1`.
fn agent_journal(run_dir: &Path) -> String {
    let journal = std::fs::read_to_string(run_dir.join("faults.journal")).unwrap();
    let token = journal.split("\"token\":\"").nth(1).unwrap().split('"').next().unwrap();
    std::fs::read_to_string(format!("/root/.crashlab-agents/{}-h1/run/faults.journal", &token[..12])).unwrap()
}

/// Kill, pause and restart of a container in host h1's engine, through
/// h1's agent: each recovers, nothing acknowledged is lost, each is dated
/// within half the round trip; the image was made in h1's engine, the
/// containers carried a label journaled on h1 before the first, and none
/// is left there. Then a harness and agents SIGKILLed while the container
/// runs: `cleanup` reaches h1 and removes it from h1's engine.
#[test]
fn a_container_on_a_host_runs_in_that_hosts_engine_and_cleanup_removes_it() {
    if !available() {
        return;
    }
    let _serial = common::serial();
    let hosts = SshHosts::up(1);
    hosts.engine(1);
    let engine = hosts.engine_socket(1);
    let workload = "[workload]\nkind = \"demo-kv\"\ntarget = \"kv\"\nrate = 200\nduration = \"DURATION\"\n";
    let faults = crate::hosts::KILL_PAUSE_RESTART;
    let text = format!(
        "name = \"container-on-a-host\"\n{}{KV_ON_H1}{workload}{faults}\n[expect]\nlost_acked = 0\n",
        hosts.tables(1)
    );
    let path = write_scenario(hosts.dir.path(), "kv.toml", &text.replace("DURATION", "2500ms"));
    let r = run(&path, &["--trials", "2", "--seed", "3"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout(), r.stderr());
    for t in r.trials() {
        assert_eq!(t.rpo.lost_acked, Some(0));
        assert!(t.rpo.acked_writes > 300, "{}", t.rpo.acked_writes);
        for (f, kind) in t.faults.iter().zip(["kill", "pause", "restart"]) {
            assert_eq!(f.kind, kind);
            assert!(f.rto_ms.is_some(), "{kind} recovered: {f:?}");
            assert!(f.detail.contains("on host `h1`, dated by its agent within ±"), "{}", f.detail);
        }
        assert_eq!(t.incarnations.get("kv"), Some(&3), "started, killed, restarted: {:?}", t.incarnations);
    }
    let journal = agent_journal(&r.dir);
    let label = "{\"op\":\"container_label\",\"run_label\":\"crashlab-";
    assert!(journal.contains(label) && journal.contains(&format!("\"engine\":\"{}\"", engine.display())), "{journal}");
    assert_eq!(journal.matches("\"op\":\"container_created\"").count(), 2, "{journal}");
    let here = std::fs::read_to_string(r.dir.join("faults.journal")).unwrap();
    assert!(!here.contains("container_label"), "the control node made no container: {here}");
    assert!(docker_on(&engine, &["images", "-q", "crashlab/demo-kv"]).trim().len() >= 12, "built in h1's engine");
    assert_eq!(docker_on(&engine, &["ps", "-aq"]).trim(), "", "no container left in h1's engine");

    // Killed, agents and all, while the container runs.
    let out = hosts.dir.path().join("killed");
    // No fault in this one: a kill of the harness while a fault of its own
    // has the container down would leave nothing running to find.
    let long =
        format!("name = \"container-on-a-host\"\n{}{KV_ON_H1}{}", hosts.tables(1), workload.replace("DURATION", "30s"));
    let path = write_scenario(hosts.dir.path(), "kv-long.toml", &long);
    let mut harness = crate::hosts::run_in_background(&path, &out, std::process::Stdio::null);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while docker_on(&engine, &["ps", "-q"]).trim().is_empty() {
        assert!(std::time::Instant::now() < deadline, "the container never started");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::thread::sleep(std::time::Duration::from_millis(500));
    // The agents themselves, not the ssh clients that started them.
    for agent in common::processes_with("-h1/crashlab agent .crashlab-agents/") {
        if !agent.split(": ").nth(1).is_some_and(|cmdline| cmdline.starts_with(".crashlab-agents/")) {
            continue;
        }
        let pid: i32 = agent.split(':').next().unwrap().parse().unwrap();
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
    }
    harness.kill().unwrap();
    harness.wait().unwrap();
    assert_eq!(docker_on(&engine, &["ps", "-q"]).lines().count(), 1, "the dead agent left its container running");
    let cleanup = crashlab().arg("cleanup").arg(&out).output().unwrap();
    let said = String::from_utf8_lossy(&cleanup.stdout);
    assert!(cleanup.status.success(), "{said}\n{}", String::from_utf8_lossy(&cleanup.stderr));
    assert!(said.contains("host `h1`: .crashlab-agents/") && said.contains("removed 1 container(s)"), "{said}");
    assert_eq!(docker_on(&engine, &["ps", "-aq"]).trim(), "", "cleanup removed it from h1's engine");
}

/// A partition between a container on h1 and a process on h2. The
/// engine publishes the container's port through DNAT, so the peer's
/// packets are routed (FORWARD), never delivered to h1 (INPUT): the rules
/// set in INPUT and OUTPUT alone drop nothing (the trial would be unknown),
/// and those the agent also sets in FORWARD cut them. The control node's
/// workload to the container goes on; the rules go at the heal (both
/// checked as for processes on hosts).
#[test]
fn a_partition_cuts_a_container_on_a_host_where_its_packets_are_routed() {
    if !available() {
        return;
    }
    let _serial = common::serial();
    let hosts = SshHosts::up(2);
    hosts.engine(1);
    let text = crate::hosts::partition_from_a_peer(&hosts.tables(2), KV_ON_H1, "1200ms");
    let path = write_scenario(hosts.dir.path(), "partition.toml", &text);
    let r = crate::hosts::partition_cuts_the_peer_only(&path);
    let journal = agent_journal(&r.dir);
    assert!(journal.contains("\"rule\":[\"FORWARD\",\"-s\",\"10.231.7.12\""), "{journal}");
}

/// Faults the agent runs with the fault's own code on a container there:
/// an engine memory limit (set through h1's engine, its figures read from
/// the container's cgroups on h1), then a power loss through the storage
/// layer the agent mounted over the data dir it binds into the container.
/// With `--fsync never` the power loss loses the acknowledged writes it
/// discarded, and no other, as it does here.
#[test]
fn a_memory_limit_and_a_power_loss_act_on_a_container_on_a_host() {
    if !available() {
        return;
    }
    let _serial = common::serial();
    let hosts = SshHosts::up(1);
    hosts.engine(1);
    let kv = KV_ON_H1.replace("\"--fsync\", \"always\"]", "\"--fsync\", \"never\", \"--grow-per-write\", \"256KiB\"]");
    let text = format!(
        r#"name = "container-on-a-host-storage"
{tables}{kv}
[workload]
kind = "demo-kv"
target = "kv"
rate = 400
duration = "2500ms"

[[fault]]
kind = "memory"
target = "kv"
limit = "+8MiB"
duration = "500ms"
at = "300ms"

[[fault]]
kind = "lose-unsynced"
target = "kv"
at = "1500ms"

[expect]
lost_acked = "> 0"
"#,
        tables = hosts.tables(1)
    );
    let path = write_scenario(hosts.dir.path(), "storage.toml", &text);
    let r = run(&path, &["--trials", "2", "--seed", "4"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout(), r.stderr());
    for t in r.trials() {
        let (memory, power) = (&t.faults[0].detail, &t.faults[1].detail);
        assert!(memory.starts_with("memory limited by the engine to ") && memory.contains("on host `h1`"), "{memory}");
        let discarded: u64 = power
            .split("discarded ")
            .nth(1)
            .and_then(|s| s.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{power}"));
        let lost = t.rpo.lost_acked.unwrap();
        // Every write lost was discarded; a discarded write not lost was
        // never acknowledged (in flight as it struck) or not a write of the
        // workload's (demo-kv's own files).
        assert!(lost > 0 && lost <= discarded && discarded - lost <= discarded / 50 + 5, "lost {lost}: {power}");
    }
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    assert!(!mounts.contains(".crashlab-agents/"), "the layers are unmounted: {mounts}");
}
