//! Conformance: the same scenarios against demo-kv as a local process and
//! as a container must pass on both. Their RTOs differ (a container's start
//! goes through the engine); the test prints both, side by side, rather
//! than hiding the difference.

mod common;

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
            p50.push(r.report["summary"]["rto_ms"]["p50"].as_f64().unwrap_or(f64::NAN));
        }
        table.push(format!("{name:<18} {:>12.1}ms {:>14.1}ms", p50[0], p50[1]));
    }
    eprintln!("{}", table.join("\n"));
}
