//! Targets on remote hosts, through `crashlab agent` over SSH. The hosts
//! are network namespaces on a bridge of the tests' own, each with its own
//! sshd and a key made by the test (tests/fixtures/hosts/ssh-hosts.sh).

use crate::common;

use common::{crashlab, run, ssh_hosts_available, write_scenario, SshHosts};

/// demo-kv on host `h1`, reached at its address there; the workload and
/// probes run here.
fn scenario(hosts: &SshHosts, extra: &str, faults: &str) -> String {
    format!(
        r#"name = "on-a-host"
{tables}
[target.kv]
host = "h1"
command = ["crashlab", "demo-kv", "--host", "{{host}}", "--port", "{{port}}", "--data-dir", "{{data_dir}}", "--fsync", "always"{extra}]
restart = {{ policy = "always", delay = "0ms" }}
probe = {{ kind = "demo-kv", interval = "5ms", timeout = "200ms", healthy_after = 3 }}

[workload]
kind = "demo-kv"
target = "kv"
rate = 200
duration = "2500ms"

{faults}
[expect]
lost_acked = 0
"#,
        tables = hosts.tables(1)
    )
}

/// Where the agents' directories are: in the SSH user's (root's) home.
const AGENTS: &str = "/root/.crashlab-agents/";

/// The agents' directories of a run (named by its token) on the hosts,
/// less the host's name.
fn agent_dirs(r: &common::Run) -> String {
    agent_dirs_of(&r.dir)
}

fn agent_dirs_of(run_dir: &std::path::Path) -> String {
    let journal = std::fs::read_to_string(run_dir.join("faults.journal")).unwrap();
    let token = journal.split("\"token\":\"").nth(1).unwrap().split('"').next().unwrap();
    format!("{AGENTS}{}", &token[..12])
}

/// A kill, a pause and a restart of `kv` during a 2.5 s workload.
pub(crate) const KILL_PAUSE_RESTART: &str = r#"
[[fault]]
kind = "kill"
target = "kv"
at = "400ms"

[[fault]]
kind = "pause"
target = "kv"
duration = "300ms"
at = "1100ms"

[[fault]]
kind = "restart"
target = "kv"
at = "1900ms"
"#;

/// Kill, pause and restart, as the conformance suite injects them into a
/// local process, through the agent: each recovers, nothing acknowledged
/// is lost, each is dated within half the round trip to the agent, and
/// nothing of the run stays on the host.
#[test]
fn kill_pause_and_restart_act_on_a_target_on_a_host() {
    if !ssh_hosts_available() {
        return;
    }
    let _serial = common::serial();
    let hosts = SshHosts::up(1);
    let path = write_scenario(hosts.dir.path(), "host.toml", &scenario(&hosts, "", KILL_PAUSE_RESTART));
    let r = run(&path, &["--trials", "2", "--seed", "3"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout(), r.stderr());
    for t in r.trials() {
        assert_eq!(t.rpo.lost_acked, Some(0));
        assert!(t.rpo.acked_writes > 300, "{}", t.rpo.acked_writes);
        for (f, kind) in t.faults.iter().zip(["kill", "pause", "restart"]) {
            assert_eq!(f.kind, kind);
            assert!(f.rto_ms.is_some(), "{kind} recovered: {f:?}");
            let uncertainty = f.injected_uncertainty_ms.expect("dated by the agent");
            assert!(uncertainty > 0.0 && uncertainty < 50.0, "{kind}: ±{uncertainty} ms");
            assert!(f.detail.contains("on host `h1`, dated by its agent within ±"), "{}", f.detail);
        }
        // The kill's new incarnation came from the agent's supervisor. Its
        // time and the kill's are the agent's, the first failed probe this
        // node's: on one clock, the kill precedes both (the probes sample
        // every 5 ms).
        let kill = &t.faults[0];
        let slack = kill.injected_uncertainty_ms.unwrap();
        assert!(kill.restart_ms.is_some_and(|ms| ms > 0.0 && ms < 1000.0), "{kill:?}");
        assert!(kill.ttd_ms.is_some_and(|ms| ms > -slack && ms < 5.0 + 200.0), "{kill:?}");
        assert_eq!(t.incarnations.get("kv"), Some(&3), "started, killed, restarted: {:?}", t.incarnations);
    }
    let dir = agent_dirs(&r);
    let left = common::processes_with(&dir["/root/".len()..]);
    assert!(left.is_empty(), "left on the host: {left:?}");
    let journal = std::fs::read_to_string(format!("{dir}-h1/run/faults.journal")).unwrap();
    assert!(journal.contains("\"op\":\"target_started\"") && journal.ends_with("{\"op\":\"finished\"}\n"), "{journal}");
    assert!(!std::path::Path::new(&format!("{dir}-h1/crashlab")).exists(), "the agent's copy is removed");
}

/// The writes of a trial acknowledged before its fault: the log a flip cut.
fn acked_before_fault(r: &common::Run, trial: u64) -> u64 {
    let injected = r.trials()[trial as usize].faults[0].injected_at_ms;
    let history = r.history(trial);
    let ok = |e: &&serde_json::Value| e["event"] == "complete" && e["outcome"] == "ok";
    history.iter().filter(ok).filter(|e| e["t_ms"].as_f64().unwrap() < injected).count() as u64
}

/// A library scenario made to run its target on host `h1`.
fn on_host_h1(hosts: &SshHosts, name: &str) -> String {
    let text = std::fs::read_to_string(common::scenario(name)).unwrap();
    let text = text.replacen("[target.kv]\n", &format!("{}[target.kv]\nhost = \"h1\"\n", hosts.tables(1)), 1);
    text.replace("\"demo-kv\", \"--port\"", "\"demo-kv\", \"--host\", \"{host}\", \"--port\"")
}

/// Storage faults run by the agent, with the same code as here: a bit
/// flip in the middle of the WAL loses what the same seed loses locally,
/// the damage journaled on the host; a pid file left naming a dead pid
/// blocks the store until a `run` step removes it there.
#[test]
fn corruption_and_a_stale_lock_act_through_the_agent() {
    if !ssh_hosts_available() {
        return;
    }
    let _serial = common::serial();
    let hosts = SshHosts::up(1);
    let path = write_scenario(hosts.dir.path(), "corrupt.toml", &on_host_h1(&hosts, "corrupt-wal-truncate.toml"));
    let remote = run(&path, &["--trials", "2", "--seed", "5"]);
    assert_eq!(remote.code, 0, "{}\n{}", remote.stdout(), remote.stderr());
    let local = run(&common::scenario("corrupt-wal-truncate.toml"), &["--trials", "2", "--seed", "5"]);
    for (i, (r, l)) in remote.trials().iter().zip(local.trials()).enumerate() {
        let f = &r.faults[0];
        assert!(f.detail.starts_with("bitflip (offline): wal.log: flipped byte"), "{}", f.detail);
        assert!(f.injected_uncertainty_ms.is_some() && f.detail.contains("on host `h1`"), "{}", f.detail);
        // The same seed flips at the same fraction (half) of the log, there
        // as here: what is lost is the records after it, about half of the
        // writes acknowledged before the fault. How many those were depends
        // on when the fault reached the host (CI lost 175 there, 200 here).
        for (side, run, trial) in [("there", &remote, r), ("here", &local, l)] {
            let (lost, logged) = (trial.rpo.lost_acked.unwrap(), acked_before_fault(run, i as u64));
            assert!(
                logged > 100 && lost.abs_diff(logged / 2) <= logged / 10 + 2,
                "{side}: lost {lost} of the {logged} writes in the log"
            );
        }
    }
    let journal = std::fs::read_to_string(format!("{}-h1/run/faults.journal", agent_dirs(&remote))).unwrap();
    assert!(journal.contains("\"op\":\"corrupted\""), "the damage is journaled on the host: {journal}");

    let text = on_host_h1(&hosts, "stale-pidfile-leftover.toml").replace(
        "action = \"remove\"\ntarget = \"kv\"\npath = \"demo-kv.pid\"",
        "action = \"run\"\ntarget = \"kv\"\ncommand = [\"rm\", \"{data_dir}/demo-kv.pid\"]",
    );
    assert!(text.contains("command = [\"rm\""), "{text}");
    let path = write_scenario(hosts.dir.path(), "stale.toml", &text);
    let r = run(&path, &["--trials", "2", "--seed", "5"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout(), r.stderr());
    for t in r.trials() {
        assert!(t.faults[0].detail.contains("demo-kv.pid left behind naming dead pid"), "{}", t.faults[0].detail);
        // Blocked until the procedure's 200 ms wait and its removal.
        assert!(t.rto_ms.unwrap() >= 200.0, "rto {:?}", t.rto_ms);
        assert!(t.recovery.iter().all(|s| s.ok), "{:?}", t.recovery);
    }
}

/// Faults through the storage layer, which the agent mounts over the data
/// dir there before the target starts: a power loss with `--fsync never`
/// loses what the same seed loses here (the unsynced writes of the killed
/// incarnation), and a full disk refuses exactly the writes the workload
/// saw fail, there as here; the layers are unmounted after.
#[test]
fn a_power_loss_and_a_full_disk_act_through_the_agents_storage_layer() {
    if !ssh_hosts_available() || !common::fuse_available() {
        return;
    }
    let _serial = common::serial();
    let hosts = SshHosts::up(1);
    for name in ["lose-unsynced-fsync-never.toml", "io-disk-full.toml"] {
        let path = write_scenario(hosts.dir.path(), name, &on_host_h1(&hosts, name));
        let remote = run(&path, &["--trials", "3", "--seed", "4"]);
        assert_eq!(remote.code, 0, "{name}: {}\n{}", remote.stdout(), remote.stderr());
        let local = run(&common::scenario(name), &["--trials", "3", "--seed", "4"]);
        assert_eq!(local.code, 0, "{name}: {}", local.stdout());
        for (r, l) in remote.trials().iter().zip(local.trials()) {
            let (there, here) = (r.rpo.lost_acked.unwrap(), l.rpo.lost_acked.unwrap());
            assert!(there.abs_diff(here) <= 3, "{name} trial {}: lost {there} there, {here} here", r.index);
            let detail = &r.faults[0].detail;
            assert!(detail.contains("(on host `h1`, dated by its agent"), "{detail}");
            if name == "io-disk-full.toml" {
                let refused = |d: &str| -> u64 {
                    d.split("refused ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap()
                };
                // Each refused write is one write the workload saw fail, and
                // nothing else fails; how many fall in the window depends on
                // how long the heal took to reach the agent, so the two sides
                // are not compared with each other.
                for (side, trial) in [("there", r), ("here", l)] {
                    let refused = refused(&trial.faults[0].detail);
                    assert!(
                        refused > 0 && refused == trial.ops.fail,
                        "{side}: refused {refused}, the workload saw {} fail: {}",
                        trial.ops.fail,
                        trial.faults[0].detail
                    );
                }
            } else {
                assert!(there > 0 && detail.contains("unsynced writes"), "{detail}");
            }
        }
    }
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    assert!(!mounts.contains("/.crashlab-agents/"), "a layer is still mounted: {mounts}");
}

/// Resource faults run by the agent: a CPU quota holds the target there to
/// its share (its own cpuacct, read there), and stress-ng runs beside it
/// there and reports its work.
#[test]
fn a_cpu_quota_and_a_noisy_neighbour_act_through_the_agent() {
    let stress_ng = || common::available("stress-ng", common::which("stress-ng"), "the hog fault runs stress-ng");
    if !ssh_hosts_available() || !stress_ng() {
        return;
    }
    let _serial = common::serial();
    let hosts = SshHosts::up(1);
    for (name, said) in
        [("cpu-throttle.toml", "CPU limited to 0.05 CPUs"), ("hog-neighbour.toml", "stress-ng beside the target")]
    {
        let path = write_scenario(hosts.dir.path(), name, &on_host_h1(&hosts, name));
        let r = run(&path, &["--trials", "1", "--seed", "5"]);
        assert_eq!(r.code, 0, "{name}: {}\n{}", r.stdout(), r.stderr());
        let detail = &r.trials()[0].faults[0].detail;
        assert!(detail.starts_with(said) && detail.contains("(on host `h1`, dated by its agent"), "{detail}");
        if name == "cpu-throttle.toml" {
            let used: f64 =
                detail.split("the target used ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
            let over: f64 = detail.split(" ms of CPU in ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
            assert!(used <= 0.05 * over + 15.0, "used {used} ms of CPU in {over} ms: {detail}");
        } else {
            assert!(detail.contains("healed: stress-ng ran") && detail.contains("bogo ops: cpu "), "{detail}");
        }
    }
    assert!(common::processes_with("stress-ng").is_empty(), "{:?}", common::processes_with("stress-ng"));
}

/// The 400 ms calibration through an agent: from the restart (dated by the
/// agent) to readiness (seen here) is the 400 ms replay, within the bound
/// of the local calibration plus the round trip to the agent.
#[test]
fn the_400ms_calibration_holds_through_an_agent() {
    if !ssh_hosts_available() {
        return;
    }
    let _serial = common::serial();
    let hosts = SshHosts::up(1);
    let faults = "[[fault]]\nkind = \"kill\"\ntarget = \"kv\"\nat = \"300ms..900ms\"\n";
    let text = scenario(&hosts, r#", "--recovery-delay", "400ms""#, faults)
        .replace("\"--fsync\", \"always\"", "\"--fsync\", \"never\"");
    let path = write_scenario(hosts.dir.path(), "calibration.toml", &text);
    let r = run(&path, &["--trials", "5", "--seed", "1"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout(), r.stderr());
    for t in r.trials() {
        let f = &t.faults[0];
        let (rto, restart) = (f.rto_ms.unwrap(), f.restart_ms.unwrap());
        let round_trip = 2.0 * f.injected_uncertainty_ms.unwrap();
        let replay = rto - restart;
        assert!(
            (400.0 - round_trip..=460.0 + round_trip).contains(&replay),
            "trial {}: rto {rto} - restart {restart} = {replay} ms, outside [400, 460] ± {round_trip}",
            t.index
        );
    }
}

/// A host that cannot be reached, a key it refuses and a host key that
/// does not match: exit 3, naming the host, before anything is started
/// or made anywhere (the journal names no host).
#[test]
fn an_unreachable_or_untrusted_host_stops_the_run_before_anything() {
    if !ssh_hosts_available() {
        return;
    }
    let _serial = common::serial();
    let hosts = SshHosts::up(1);
    let dir = hosts.dir.path();
    let text = scenario(&hosts, "", "");
    let stranger = dir.join("stranger");
    let keygen = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&stranger)
        .status()
        .unwrap();
    assert!(keygen.success());
    let other_host_key = std::fs::read_to_string(dir.join("stranger.pub")).unwrap();
    let wrong_known = dir.join("wrong_known_hosts");
    let key: Vec<&str> = other_host_key.split_whitespace().take(2).collect();
    std::fs::write(&wrong_known, format!("10.231.7.11 {}\n", key.join(" "))).unwrap();
    let cases = [
        ("closed port", text.replace("user = \"root\"", "user = \"root\"\nport = 2222"), "Connection refused"),
        ("refused key", text.replace("id_ed25519", "stranger"), "Permission denied"),
        (
            "host key",
            text.replace(&format!("{}/known_hosts", dir.display()), wrong_known.to_str().unwrap()),
            "Host key verification failed",
        ),
    ];
    for (case, text, said) in cases {
        let path = write_scenario(dir, "unreachable.toml", &text);
        let r = run(&path, &["--trials", "1", "--seed", "1"]);
        assert_eq!(r.code, 3, "{case}: {}\n{}", r.stdout(), r.stderr());
        assert!(
            r.stderr().contains("host `h1` (root@10.231.7.11)") && r.stderr().contains(said),
            "{case}: {}",
            r.stderr()
        );
        let journal = std::fs::read_to_string(r.dir.join("faults.journal")).unwrap();
        assert!(!journal.contains("\"op\":\"host\""), "{case}: nothing made on the host: {journal}");
        assert!(r.trials().is_empty(), "{case}");
    }

    // A port held on the host by another process would answer the probes
    // in the target's place (a `sleep` here, which answers nothing): the
    // agent refuses to start the target, naming the port.
    let mut holder = std::process::Command::new("nsenter")
        .args(["--net=/run/netns/crl-ssh-1", "python3", "-c"])
        .arg("import socket, time\ns = socket.socket()\ns.bind(('10.231.7.11', 47011))\ns.listen()\ntime.sleep(60)")
        .spawn()
        .unwrap();
    let text = format!(
        "name = \"port-taken\"\n{}[target.app]\nhost = \"h1\"\ncommand = [\"sleep\", \"30\"]\n\
         probe = {{ kind = \"tcp\", port = 47011 }}\n",
        hosts.tables(1)
    );
    let path = write_scenario(dir, "port-taken.toml", &text);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !port_47011_held_on_h1() {
        assert!(std::time::Instant::now() < deadline, "the holder never listened");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let r = run(&path, &["--trials", "1"]);
    let _ = holder.kill();
    let _ = holder.wait();
    assert_eq!(r.code, 3, "{}\n{}", r.stdout(), r.stderr());
    assert!(
        r.stderr().contains("host `h1` (root@10.231.7.11): port 47011 is already in use on this host"),
        "{}",
        r.stderr()
    );
}

/// Whether something listens at 10.231.7.11:47011 (host h1).
fn port_47011_held_on_h1() -> bool {
    std::net::TcpStream::connect_timeout(&"10.231.7.11:47011".parse().unwrap(), std::time::Duration::from_millis(200))
        .is_ok()
}

/// A demo-kv on each of hosts 1..=n (`kv1` takes the workload), started
/// by `crashlab run` in the background into `out`; returns once every
/// target runs.
fn start_on_hosts(hosts: &SshHosts, n: u32, workload: &str, out: &std::path::Path) -> std::process::Child {
    let mut text = format!("name = \"{n}-hosts\"\n{}", hosts.tables(n));
    for k in 1..=n {
        text.push_str(&format!(
            "[target.kv{k}]\nhost = \"h{k}\"\ncommand = [\"crashlab\", \"demo-kv\", \"--host\", \"{{host}}\", \"--port\", \
             \"{{port}}\", \"--data-dir\", \"{{data_dir}}\"]\nprobe = {{ kind = \"demo-kv\", interval = \"5ms\" }}\n\n"
        ));
    }
    text.push_str(&format!("[workload]\nkind = \"demo-kv\"\ntarget = \"kv1\"\nrate = 100\n{workload}\n"));
    let path = write_scenario(hosts.dir.path(), &format!("{n}-hosts.toml"), &text);
    let harness = run_in_background(&path, out, std::process::Stdio::piped);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while targets_on_hosts().len() < n as usize {
        assert!(std::time::Instant::now() < deadline, "the targets never started");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    harness
}

/// `crashlab run PATH --out OUT`, not waited for; its stdout and stderr
/// as `stdio` makes them.
pub(crate) fn run_in_background(
    path: &std::path::Path,
    out: &std::path::Path,
    stdio: fn() -> std::process::Stdio,
) -> std::process::Child {
    std::process::Command::new(assert_cmd::cargo::cargo_bin("crashlab"))
        .arg("run")
        .arg(path)
        .arg("--out")
        .arg(out)
        .stdout(stdio())
        .stderr(stdio())
        .spawn()
        .unwrap()
}

fn targets_on_hosts() -> Vec<String> {
    common::processes_with("crashlab demo-kv --host 10.231.7.1")
}

/// SIGKILLs the agents (not the ssh clients that run them) on the host
/// named by `host_suffix` (e.g. "-h1/"), or on every host ("/").
fn kill_agents(host_suffix: &str) -> usize {
    let agents: Vec<String> = common::processes_with(&format!("{host_suffix}crashlab agent .crashlab-agents/"))
        .into_iter()
        .filter(|p| p.split(": ").nth(1).is_some_and(|cmdline| cmdline.starts_with(".crashlab-agents/")))
        .collect();
    for agent in &agents {
        let pid: i32 = agent.split(':').next().unwrap().parse().unwrap();
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).unwrap();
    }
    agents.len()
}

/// `crashlab cleanup` of a run directory: what it printed.
fn cleanup(out: &std::path::Path) -> String {
    let cleanup = crashlab().arg("cleanup").arg(out).output().unwrap();
    let said = String::from_utf8_lossy(&cleanup.stdout).into_owned();
    assert!(cleanup.status.success(), "{said}\n{}", String::from_utf8_lossy(&cleanup.stderr));
    said
}

/// The harness and every agent SIGKILLed while three hosts run a target
/// each (at moments drawn from a seed), then `crashlab cleanup RUN_DIR`:
/// it reaches every host and stops what the dead agents left; nothing of
/// the run stays anywhere.
#[test]
fn cleanup_after_a_killed_harness_and_agents_leaves_nothing_on_any_host() {
    if !ssh_hosts_available() {
        return;
    }
    let _serial = common::serial();
    let hosts = SshHosts::up(3);
    let mut rng = 0x9E37_79B9_u64;
    for round in 0..2 {
        let out = hosts.dir.path().join(format!("run-{round}"));
        let mut harness = start_on_hosts(&hosts, 3, "duration = \"30s\"", &out);
        rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        std::thread::sleep(std::time::Duration::from_millis(rng >> 54));
        assert_eq!(kill_agents("/"), 3);
        harness.kill().unwrap();
        harness.wait().unwrap();
        let left = targets_on_hosts();
        assert_eq!(left.len(), 3, "the dead agents left their targets running: {left:?}");

        let said = cleanup(&out);
        for k in 1..=3 {
            assert!(said.contains(&format!("host `h{k}`: .crashlab-agents/")), "{said}");
        }
        assert!(said.matches("stopped 1 process(es)").count() >= 3, "one target per host: {said}");
        let left = common::processes_with(".crashlab-agents/");
        assert!(left.is_empty(), "round {round}: left after cleanup: {left:?}");
        let dirs = agent_dirs_of(&out);
        for k in 1..=3 {
            let copy = std::path::PathBuf::from(format!("{dirs}-h{k}/crashlab"));
            assert!(!copy.exists(), "round {round}: the copy of crashlab stays on h{k}: {}", copy.display());
        }
    }
}

/// An agent that dies mid-trial: the trial it served is unknown and the
/// run stops (exit 3) naming the host; the target it left running there is
/// stopped by `cleanup`, which also reaches the other host.
#[test]
fn an_agent_that_dies_makes_its_trial_unknown_and_cleanup_heals_its_host() {
    if !ssh_hosts_available() {
        return;
    }
    let _serial = common::serial();
    let hosts = SshHosts::up(2);
    let out = hosts.dir.path().join("run");
    let harness = start_on_hosts(&hosts, 2, "duration = \"4s\"\n[trials]\ncount = 2", &out);
    std::thread::sleep(std::time::Duration::from_secs(1));
    assert_eq!(kill_agents("-h1/"), 1);
    let output = harness.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("host `h1` (root@10.231.7.11): the agent ended"), "{stderr}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["trials"].as_array().unwrap().len(), 1, "the run stops at the trial");
    assert_eq!(report["trials"][0]["verdict"], "unknown", "{report}");
    assert_eq!(report["verdict"], "unknown");

    let left = common::processes_with("-h1/crashlab demo-kv");
    assert_eq!(left.len(), 1, "the dead agent's target is still running: {left:?}");
    let said = cleanup(&out);
    assert!(said.contains("host `h1`: .crashlab-agents/") && said.contains("stopped 1 process(es)"), "{said}");
    assert!(said.contains("host `h2`: its agent ended well"), "{said}");
    let left = common::processes_with(".crashlab-agents/");
    assert!(left.is_empty(), "left after cleanup: {left:?}");
}

/// The agent's side of the version check: a control node of another
/// protocol gets the agent's hello (so that it can say both versions), and
/// the agent ends, naming both, having started nothing.
#[test]
fn an_agent_refuses_a_control_node_of_another_protocol() {
    let dir = tempfile::tempdir().unwrap();
    let out = crashlab()
        .arg("agent")
        .arg(dir.path())
        .write_stdin("{\"id\":1,\"op\":\"hello\",\"protocol\":99,\"version\":\"9.9.9\"}\n")
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(3), "{stdout}\n{stderr}");
    assert!(stdout.contains("\"answer\":\"hello\",\"protocol\":1,"), "{stdout}");
    assert!(stderr.contains("the control node speaks protocol 99 (crashlab 9.9.9), this agent 1"), "{stderr}");
    let journal = std::fs::read_to_string(dir.path().join("run/faults.journal")).unwrap();
    assert_eq!(journal.lines().count(), 1, "nothing but the run's token: {journal}");
}

/// Rules of the run on a test host (its namespace's iptables).
pub(crate) fn rules_on(k: u32) -> Vec<String> {
    let out = std::process::Command::new("nsenter")
        .arg(format!("--net=/run/netns/crl-ssh-{k}"))
        .args(["iptables", "-w", "-S"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).lines().filter(|l| l.contains("crashlab-")).map(String::from).collect()
}

/// A scenario: target `kv` (its `[target.kv]` table, on h1) partitioned
/// for `duration` from a peer on h2 that keeps connecting to it, while
/// the control node's workload writes to it.
pub(crate) fn partition_from_a_peer(tables: &str, kv: &str, duration: &str) -> String {
    format!(
        r#"name = "host-partition"
{tables}{kv}
[target.peer]
host = "h2"
command = ["bash", "-c", "while true; do (echo PING > /dev/tcp/{{host.kv}}/{{port.kv}}) 2>/dev/null; sleep 0.02; done"]
probe = {{ kind = "command", command = ["true"] }}

[workload]
kind = "demo-kv"
target = "kv"
rate = 200
duration = "2s"

[[fault]]
kind = "partition"
groups = [["kv"], ["peer"]]
duration = "{duration}"
at = "500ms"

[expect]
lost_acked = 0
"#
    )
}

/// Runs it: in each trial the hosts' rules dropped the peer's packets
/// (none would make the trial unknown) and none of the control node's;
/// the rules went at the heal.
pub(crate) fn partition_cuts_the_peer_only(path: &std::path::Path) -> common::Run {
    let r = run(path, &["--trials", "2", "--seed", "2"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout(), r.stderr());
    for t in r.trials() {
        let detail = &t.faults[0].detail;
        assert!(detail.starts_with("[kv] and [peer] cannot reach each other (on host `h1`"), "{detail}");
        let dropped: u64 =
            detail.split("rules dropped ").nth(1).and_then(|s| s.split(' ').next()).unwrap().parse().unwrap();
        assert!(dropped >= 1, "{detail}");
        assert_eq!((t.ops.fail, t.ops.unknown), (0, 0), "the control node's writes to kv are not cut: {:?}", t.ops);
    }
    assert!(rules_on(1).is_empty() && rules_on(2).is_empty(), "{:?} {:?}", rules_on(1), rules_on(2));
    r
}

/// A partition between targets on two hosts: rules on the hosts, set by
/// their agents, cut the peer on h2 off from kv on h1 (the packets they
/// dropped are counted; none would make the trial unknown) while the
/// control node's workload to kv goes on untouched; the rules go at the
/// heal, and after a killed harness and agents, `cleanup` deletes them.
#[test]
fn a_partition_between_hosts_cuts_them_and_not_the_control_node() {
    if !ssh_hosts_available() {
        return;
    }
    let _serial = common::serial();
    let hosts = SshHosts::up(2);
    let kv = r#"
[target.kv]
host = "h1"
command = ["crashlab", "demo-kv", "--host", "{host}", "--port", "{port}", "--data-dir", "{data_dir}", "--fsync", "always"]
probe = { kind = "demo-kv", interval = "5ms" }
"#;
    let text = partition_from_a_peer(&hosts.tables(2), kv, "DURATION");
    let path = write_scenario(hosts.dir.path(), "partition.toml", &text.replace("DURATION", "1200ms"));
    partition_cuts_the_peer_only(&path);

    // Killed while the partition holds: cleanup deletes the rules there.
    let path = write_scenario(hosts.dir.path(), "partition-long.toml", &text.replace("DURATION", "20s"));
    let out = hosts.dir.path().join("killed");
    let mut harness = run_in_background(&path, &out, std::process::Stdio::null);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    // Both of h1's rules in (the agent inserts them one after the other).
    while rules_on(1).len() < 2 {
        assert!(std::time::Instant::now() < deadline, "the partition never came");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(kill_agents("/"), 2);
    harness.kill().unwrap();
    harness.wait().unwrap();
    assert_eq!(rules_on(1).len(), 2, "the dead agent left its rules: {:?}", rules_on(1));
    let said = cleanup(&out);
    assert!(said.contains("removed 2 partition rule(s) of the host"), "{said}");
    assert!(rules_on(1).is_empty(), "{:?}", rules_on(1));
    assert!(common::processes_with(".crashlab-agents/").is_empty());
}
