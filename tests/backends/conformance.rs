//! Conformance: the same scenarios against demo-kv as a local process and
//! as a container must pass on both. Their RTOs differ (a container's start
//! goes through the engine); the test prints both, side by side, rather
//! than hiding the difference.

use crate::common;

use common::{docker_available, run, write_scenario};

const SCENARIOS: &[(&str, &str)] = &[
    (
        "kill",
        r#"
[[fault]]
kind = "kill"
target = "kv"
at = "500ms..1s"
"#,
    ),
    (
        "pause",
        r#"
[[fault]]
kind = "pause"
target = "kv"
duration = "500ms"
at = "500ms..1s"
"#,
    ),
    (
        "graceful-restart",
        r#"
[[fault]]
kind = "restart"
target = "kv"
at = "500ms..1s"
"#,
    ),
];

/// The scenario for one backend: only the target's kind and program differ.
fn scenario(name: &str, fault: &str, container: bool) -> String {
    let (kind, program) = if container {
        ("kind = \"container\"\nimage = \"crashlab/demo-kv\"\n", "/crashlab")
    } else {
        ("", "crashlab")
    };
    format!(
        r#"name = "conformance-{name}"
[target.kv]
{kind}command = ["{program}", "demo-kv", "--host", "{{host}}", "--port", "{{port}}", "--data-dir", "{{data_dir}}", "--fsync", "always"]
probe = {{ kind = "demo-kv", interval = "5ms", timeout = "100ms" }}
[workload]
kind = "demo-kv"
target = "kv"
rate = 200
duration = "2s"
{fault}
[expect]
lost_acked = 0
corrupted = 0
phantom = 0
[trials]
count = 3
"#
    )
}

#[test]
fn the_same_scenarios_pass_against_a_process_and_a_container() {
    if !docker_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut table = vec![format!("{:<18} {:>14} {:>16}", "scenario", "process rto p50", "container rto p50")];
    for (name, fault) in SCENARIOS {
        let mut p50 = Vec::new();
        for container in [false, true] {
            let file = format!("{name}-{}.toml", if container { "container" } else { "process" });
            let path = write_scenario(tmp.path(), &file, &scenario(name, fault, container));
            let r = run(&path, &["--seed", "40"]);
            assert_eq!(r.code, 0, "{file}:\n{}\n{}", r.stdout(), r.stderr());
            p50.push(r.report().summary.rto_ms.p50.unwrap_or(f64::NAN));
        }
        table.push(format!("{name:<18} {:>12.1}ms {:>14.1}ms", p50[0], p50[1]));
    }
    eprintln!("{}", table.join("\n"));
}

/// What a target's hooks, recovery steps and checks see is the same on
/// every backend: `{data_dir}` is the data dir on the harness's side (for a
/// container, the host directory bound at /data, never /data itself),
/// `{host.NAME}`, `{trial}` and `{target}` are filled in, the target's `env`
/// is set, a failing hook is reported in the same words, and a restart
/// policy of `never` leaves a killed target down on both.
#[test]
fn hooks_steps_env_and_restart_policies_behave_alike_on_a_process_and_a_container() {
    if !docker_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut seen = Vec::new();
    for container in [false, true] {
        let (kind, program) = if container {
            ("kind = \"container\"\nimage = \"crashlab/demo-kv\"\n", "/crashlab")
        } else {
            ("", "crashlab")
        };
        let text = format!(
            r#"name = "conformance-context"
[target.kv]
{kind}command = ["{program}", "demo-kv", "--host", "{{host}}", "--port", "{{port}}", "--data-dir", "{{data_dir}}", "--fsync", "always"]
env = {{ CONFORMANCE = "trial {{trial}} of {{target}}" }}
before_start = [["sh", "-c", "echo \"$CONFORMANCE {{data_dir}} {{host.kv}}\" >> {{run_dir}}/hooks.txt"]]
after_stop = [["sh", "-c", "echo the volume is busy >&2; exit 7"]]
restart = {{ delay = "20ms" }}
probe = {{ kind = "demo-kv", interval = "5ms", timeout = "100ms" }}
[workload]
kind = "demo-kv"
target = "kv"
rate = 100
duration = "1s"
[[fault]]
kind = "kill"
target = "kv"
at = "300ms"
[[recover]]
action = "wait"
target = "kv"
[[recover]]
action = "check"
target = "kv"
command = ["sh", "-c", "test -s {{data_dir}}/wal.log && test \"$CONFORMANCE\" = \"trial 0 of kv\""]
"#
        );
        let path = write_scenario(tmp.path(), &format!("context-{container}.toml"), &text);
        let r = run(&path, &["--seed", "1"]);
        assert_eq!(r.code, 0, "container {container}:\n{}\n{}", r.stdout(), r.stderr());
        let hooks = std::fs::read_to_string(r.dir.join("hooks.txt")).unwrap();
        let data_dir = r.dir.join("trial-000/data/kv").canonicalize().unwrap();
        // Hooks run when the trial starts the target, not on each restart;
        // `{host.kv}` is where the probes and workload reach it: a
        // container's own address on the run's network.
        let host = match r.trials()[0].reached.get("kv") {
            Some(at) if container => at.split(':').next().unwrap().to_string(),
            None if !container => "127.0.0.1".to_string(),
            other => panic!("container {container}: reached at {other:?}"),
        };
        assert!(!container || host != "127.0.0.1", "a container is reached at its own address");
        assert_eq!(hooks, format!("trial 0 of kv {} {host}\n", data_dir.display()), "container {container}");
        let warnings = r.trials()[0].warnings.clone();
        assert_eq!(warnings.len(), 1, "the failing after_stop hook, container {container}: {warnings:?}");
        seen.push(warnings[0].clone());

        // The same target, never restarted: down for good after the kill.
        let never = text.replace("restart = { delay = \"20ms\" }", "restart = { policy = \"never\" }");
        let never = never.split("[[recover]]").next().unwrap().to_string();
        let path = write_scenario(tmp.path(), &format!("never-{container}.toml"), &never);
        let r = run(&path, &["--seed", "1"]);
        assert_eq!(r.code, 1, "never restarted, container {container}:\n{}", r.stdout());
        assert!(r.trials()[0].rto_ms.is_none(), "container {container}");
    }
    assert_eq!(seen[0], seen[1], "a failing hook, in the same words on both backends");
    assert!(seen[0].contains("exit code 7: the volume is busy"), "{}", seen[0]);
}
