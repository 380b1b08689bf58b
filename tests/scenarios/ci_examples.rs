//! The CI examples in ci/: the recovery gate script closes on a failed
//! expectation, opens when everything passes, and leaves the JUnit files
//! and one Markdown summary that CI systems publish.

use crate::common;

use std::path::Path;

use common::write_scenario;

fn scenario(name: &str, rto: &str) -> String {
    format!(
        r#"name = "{name}"
[target.kv]
command = ["crashlab", "demo-kv", "--port", "{{port}}", "--data-dir", "{{data_dir}}", "--fsync", "never"]
probe = {{ kind = "demo-kv", interval = "5ms" }}
[workload]
kind = "demo-kv"
target = "kv"
rate = 100
duration = "1s"
[[fault]]
kind = "kill"
target = "kv"
at = "300ms"
[expect]
rto = "{rto}"
[trials]
count = 1
"#
    )
}

fn gate(out: &Path, summary: &Path, scenarios: &[&Path]) -> (i32, String) {
    let bin = assert_cmd::cargo::cargo_bin("crashlab");
    let path = format!("{}:{}", bin.parent().unwrap().display(), std::env::var("PATH").unwrap_or_default());
    let output = std::process::Command::new("bash")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("ci/recovery-gate.sh"))
        .arg(out)
        .args(scenarios)
        .args(["--", "--seed", "1"])
        .env("PATH", path)
        .env("GITHUB_STEP_SUMMARY", summary)
        .output()
        .unwrap();
    (output.status.code().unwrap_or(-1), String::from_utf8_lossy(&output.stderr).into_owned())
}

#[test]
fn the_recovery_gate_closes_on_a_failed_expectation() {
    let tmp = tempfile::tempdir().unwrap();
    let ok = write_scenario(tmp.path(), "gate-ok.toml", &scenario("gate-ok", "<= 10s"));
    let strict = write_scenario(tmp.path(), "gate-strict.toml", &scenario("gate-strict", "<= 1us"));
    let summary = tmp.path().join("step-summary.md");

    let (code, log) = gate(&tmp.path().join("open"), &summary, &[&ok]);
    assert_eq!(code, 0, "{log}");

    let out = tmp.path().join("closed");
    let (code, log) = gate(&out, &summary, &[&ok, &strict]);
    assert_eq!(code, 1, "{log}");
    assert!(log.contains("gate-ok: exit 0") && log.contains("gate-strict: exit 1"), "{log}");
    for name in ["gate-ok", "gate-strict"] {
        let junit = std::fs::read_to_string(out.join(name).join("junit.xml")).expect("a JUnit file per scenario");
        roxmltree::Document::parse(&junit).expect("well-formed JUnit");
    }
    let combined = std::fs::read_to_string(out.join("summary.md")).unwrap();
    assert!(combined.contains("`gate-ok` — PASS") && combined.contains("`gate-strict` — FAIL"), "{combined}");
    // GitHub's step summary got both runs (the first gate's and this one's).
    let step = std::fs::read_to_string(&summary).unwrap();
    assert_eq!(step.matches("`gate-ok` — PASS").count(), 2, "{step}");

    let (code, _) = gate(&tmp.path().join("invalid"), &summary, &[&tmp.path().join("missing.toml")]);
    assert_eq!(code, 2, "a scenario that cannot be read is a usage error");
}
