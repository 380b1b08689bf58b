//! A fault whose target a command chooses when it is due
//! (`target = { command = [...] }`): the named target is hit and the choice
//! opens the fault's detail; a chooser that names no target fails the fault,
//! and the trial says so.

use crate::common;

fn scenario(chooser: &str) -> String {
    format!(
        r#"name = "chosen"
[target.a]
command = ["crashlab", "demo-kv", "--port", "{{port}}", "--data-dir", "{{data_dir}}"]
probe = {{ kind = "demo-kv", interval = "5ms" }}
[target.b]
command = ["crashlab", "demo-kv", "--port", "{{port}}", "--data-dir", "{{data_dir}}"]
probe = {{ kind = "demo-kv", interval = "5ms" }}
[workload]
kind = "demo-kv"
target = "a"
rate = 100
duration = "1s"
[[fault]]
kind = "kill"
target = {{ command = {chooser} }}
at = "500ms"
"#
    )
}

#[test]
fn the_chosen_target_is_hit_and_the_choice_is_recorded() {
    let tmp = tempfile::tempdir().unwrap();
    // The chooser sees the other targets' ports, as an etcd chooser would.
    let path = common::write_scenario(
        tmp.path(),
        "chosen.toml",
        &scenario(r#"["sh", "-c", "test {port.b} -gt 0 && echo b"]"#),
    );
    let r = common::run(&path, &["--trials", "2", "--seed", "1"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout(), r.stderr());
    for t in r.trials() {
        let fault = &t.faults[0];
        assert_eq!(fault.target, "b");
        assert!(fault.detail.starts_with("target chosen by `sh -c test "), "{}", fault.detail);
        assert!(fault.detail.contains("`: b; SIGKILL to pid"), "{}", fault.detail);
        assert!(fault.restart_ms.is_some(), "b was killed and restarted");
    }
}

#[test]
fn a_chooser_that_names_no_target_fails_the_fault() {
    let tmp = tempfile::tempdir().unwrap();
    let path = common::write_scenario(tmp.path(), "chosen.toml", &scenario(r#"["echo", "nobody"]"#));
    let r = common::run(&path, &["--trials", "1", "--seed", "1"]);
    assert_ne!(r.code, 0, "{}", r.stdout());
    let failed = r.history(0).into_iter().find(|e| e["event"] == "fault_failed").expect("the fault failed");
    let error = failed["error"].as_str().unwrap();
    assert!(error.contains("printed `nobody`, not a target (a, b)"), "{error}");
    assert_eq!(failed["target"], "(chosen at run time)");
}
