//! `crashlab bench` against a baseline: a service that recovers in 200 ms
//! instead of 400 ms is reported as improved; the same settings, run again
//! with another seed, as unchanged.

use crate::common;

use common::{crashlab, write_scenario};

fn scenario(delay: &str) -> String {
    format!(
        r#"name = "bench-{delay}"
[target.kv]
command = ["crashlab", "demo-kv", "--port", "{{port}}", "--data-dir", "{{data_dir}}", "--fsync", "never", "--recovery-delay", "{delay}"]
probe = {{ kind = "tcp", interval = "5ms", timeout = "100ms" }}
[workload]
kind = "demo-kv"
target = "kv"
rate = 100
duration = "1s"
[[fault]]
kind = "kill"
target = "kv"
at = "300ms"
[trials]
count = 5
"#
    )
}

fn bench(dir: &std::path::Path, file: &str, seed: &str, baseline: Option<&std::path::Path>) -> (i32, String, String) {
    let mut command = crashlab();
    command.arg("bench").arg(dir.join(file)).args(["--seed", seed, "--out"]).arg(dir.join(format!("{file}-{seed}")));
    if let Some(b) = baseline {
        command.arg("--baseline").arg(b);
    }
    let out = command.output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), stdout.into_owned(), stderr.into_owned())
}

#[test]
fn bench_tells_an_improvement_from_noise() {
    let tmp = tempfile::tempdir().unwrap();
    write_scenario(tmp.path(), "slow.toml", &scenario("400ms"));
    write_scenario(tmp.path(), "fast.toml", &scenario("200ms"));
    let (code, out, _) = bench(tmp.path(), "slow.toml", "1", None);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("rto_ms      mean") && out.contains("95% CI"), "{out}");
    let baseline = tmp.path().join("slow.toml-1/report.json");

    let (code, out, err) = bench(tmp.path(), "fast.toml", "2", Some(&baseline));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("IMPROVED"), "200 ms against 400 ms:\n{out}");
    assert!(err.contains("the baseline is a run of `bench-400ms`, this one of `bench-200ms`"), "{err}");

    // A run directory serves as the baseline as well as its report.json.
    let (code, out, err) = bench(tmp.path(), "slow.toml", "3", Some(baseline.parent().unwrap()));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("no change (within noise)"), "the same settings again:\n{out}");
    assert!(!err.contains("the baseline is a run of"), "the same scenario: {err}");

    // And the other way round, a regression fails the gate.
    let faster = tmp.path().join("fast.toml-2/report.json");
    let (code, out, _) = bench(tmp.path(), "slow.toml", "4", Some(&faster));
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("REGRESSED"), "{out}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tmp.path().join("slow.toml-4/bench.json")).unwrap()).unwrap();
    assert_eq!(json["baseline"]["change"], "regressed");
}
