//! `crashlab drill` and `crashlab history`: runbooks run as drills, timed
//! step by step against budgets, and kept in the drill log.

use crate::common;
use crashlab::reports::{RunReport, Verdict};

use common::{crashlab, scenario, write_scenario};

fn report(dir: &std::path::Path) -> RunReport {
    RunReport::from_json(&std::fs::read_to_string(dir.join("report.json")).expect("report.json")).unwrap()
}

#[test]
fn three_drills_are_listed_in_order_with_their_rtos() {
    let tmp = tempfile::tempdir().unwrap();
    let mut rtos = Vec::new();
    for i in 1..=3 {
        let dir = tmp.path().join(format!("drill-{i}"));
        let out = crashlab()
            .args(["drill", "--yes", "--seed", &i.to_string(), "--out"])
            .arg(&dir)
            .arg(scenario("monthly-recovery-drill.toml"))
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
        assert!(stdout.contains(&format!("drill #{i} recorded in")), "{stdout}");
        let r = report(&dir);
        assert_eq!(r.trials.len(), 1, "a drill is one trial");
        let steps = &r.trials[0].recovery;
        assert_eq!(steps.len(), 6);
        assert!(steps.iter().all(|s| s.ok && s.budget_ms.is_some()), "{steps:?}");
        assert_eq!(steps[5].detail, "confirmed by --yes");
        // The restored store was the backup: what was acknowledged after it is lost.
        assert!(r.trials[0].rpo.lost_acked.unwrap() > 0);
        rtos.push(r.trials[0].rto_ms.expect("recovered"));
    }
    let out = crashlab()
        .args(["history", "monthly-recovery-drill", "--db"])
        .arg(tmp.path().join("drills.sqlite"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let rows: Vec<&str> = stdout.lines().skip(1).take_while(|l| !l.starts_with("RTO trend")).collect();
    assert_eq!(rows.len(), 3, "{stdout}");
    for (i, (row, rto)) in rows.iter().zip(&rtos).enumerate() {
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cells[0], (i + 1).to_string(), "oldest first: {stdout}");
        assert_eq!(cells[2], "monthly-recovery-drill");
        assert_eq!(cells[3], "pass");
        assert_eq!(cells[4], format!("{rto:.1}ms"), "drill {} RTO: {stdout}", i + 1);
    }
    assert!(stdout.contains("RTO trend: "), "{stdout}");
    // The scenario's file names it as well as its name does.
    let by_file = crashlab()
        .arg("history")
        .arg(scenario("monthly-recovery-drill.toml"))
        .arg("--db")
        .arg(tmp.path().join("drills.sqlite"))
        .output()
        .unwrap();
    assert_eq!(by_file.status.code(), Some(0), "{}", String::from_utf8_lossy(&by_file.stderr));
    assert_eq!(String::from_utf8_lossy(&by_file.stdout), stdout, "the same listing");

    let out =
        crashlab().args(["history", "no-such-drill", "--db"]).arg(tmp.path().join("drills.sqlite")).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("scenarios with drills: monthly-recovery-drill"));
}

#[test]
fn manual_steps_without_a_terminal_need_yes() {
    let tmp = tempfile::tempdir().unwrap();
    let out = crashlab()
        .args(["drill", "--out"])
        .arg(tmp.path().join("run"))
        .arg(scenario("monthly-recovery-drill.toml"))
        .write_stdin("")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("1 manual step(s)") && stderr.contains("pass --yes"), "{stderr}");
    assert!(!tmp.path().join("run").exists(), "nothing was started");
}

const STEPS: &str = r#"
name = "drill-steps"

[target.kv]
command = ["crashlab", "demo-kv", "--port", "{port}", "--data-dir", "{data_dir}", "--fsync", "never"]
restart = { policy = "always", delay = "0ms" }
probe = { kind = "demo-kv", interval = "5ms", healthy_after = 3 }

[workload]
kind = "demo-kv"
target = "kv"
rate = 100
duration = "2s"

[[recover]]
action = "wait"
duration = "500ms"

[[recover]]
action = "fault"
kind = "kill"
target = "kv"
budget = "1s"

[[recover]]
action = "wait"
duration = "300ms"
budget = "100ms"

[[recover]]
action = "check"
target = "kv"
command = ["sh", "-c", "echo no such table >&2; exit 3"]

[[recover]]
action = "wait"
target = "kv"
"#;

/// A fault injected by a step, a step over its budget, a failing check that
/// does not stop the procedure: each is in the report, and each fails.
#[test]
fn fault_steps_budgets_and_checks() {
    let _serial = common::serial();
    let tmp = tempfile::tempdir().unwrap();
    let path = write_scenario(tmp.path(), "steps.toml", STEPS);
    let r = common::run(&path, &["--seed", "5", "--trials", "1"]);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout(), r.stderr());
    let trial = &r.trials()[0];
    let fault = &trial.faults[0];
    assert_eq!(fault.kind, "kill");
    let injected = fault.injected_at_ms;
    assert!((500.0..700.0).contains(&injected), "the fault step came after the 500 ms wait: {injected}");
    assert!(trial.rto_ms.is_some(), "the killed target recovered");

    let steps = &trial.recovery;
    assert_eq!(steps.len(), 5, "the failed check did not stop the procedure: {steps:?}");
    assert_eq!(steps[1].action, "fault");
    assert_eq!(steps[2].budget_ms, Some(100.0));
    let waited = steps[2].duration_ms.unwrap();
    assert!(waited >= 300.0);
    assert!(!steps[3].ok);
    assert!(steps[3].detail.contains("no such table"), "{:?}", steps[3]);
    assert!(steps[4].ok);

    let checks = &trial.checks;
    let check = |name: &str| checks.iter().find(|c| c.name == name).unwrap_or_else(|| panic!("{name}: {checks:?}"));
    assert_eq!(check("step 3 (wait) within budget").verdict, Verdict::Fail);
    assert_eq!(check("step 3 (wait) within budget").expected, "<= 100ms");
    assert_eq!(check("step 3 (wait) within budget").observed, format!("{waited:.1}ms"));
    assert_eq!(check("step 2 (fault) within budget").verdict, Verdict::Pass);
    assert_eq!(check("step 4 (check)").verdict, Verdict::Fail);
    assert_eq!(check("recovery procedure").verdict, Verdict::Pass, "every acting step succeeded");
    assert!(r.stdout().contains("(over budget)"), "{}", r.stdout());
}

/// The prompt, on a terminal (`script` gives the drill a pseudo-terminal):
/// the operator's `fail <reason>` fails the step and the drill, with the
/// reason in the report, and the time the operator took counts in the RTO.
#[test]
fn an_operator_answers_the_manual_step_at_a_terminal() {
    use std::io::{Read, Write};
    if !common::available("script", common::which("script"), "a pseudo-terminal for the prompt (util-linux `script`)") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let bin = assert_cmd::cargo::cargo_bin("crashlab");
    let dir = tmp.path().join("drill");
    let command = format!(
        "{} drill {} --seed 3 --out {} --db {}",
        bin.display(),
        scenario("monthly-recovery-drill.toml").display(),
        dir.display(),
        tmp.path().join("drills.sqlite").display()
    );
    let mut child = std::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env("PATH", format!("{}:{}", bin.parent().unwrap().display(), std::env::var("PATH").unwrap_or_default()))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    while !seen.contains("type `fail` and a reason") {
        let n = stdout.read(&mut buf).unwrap();
        assert!(n > 0, "the drill ended without prompting: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(seen.contains(">>> step 6/6 (manual, budget 10m): Look at the aggregator's dashboard"), "{seen}");
    std::thread::sleep(std::time::Duration::from_millis(300));
    child.stdin.as_mut().unwrap().write_all(b"fail the dashboard is blank\r").unwrap();
    let _ = stdout.read_to_string(&mut seen);
    assert_eq!(child.wait().unwrap().code(), Some(1), "{seen}");
    let r = report(&dir);
    let step = &r.trials[0].recovery[5];
    assert!(!step.ok);
    assert_eq!(step.detail, "the operator reported a failure: the dashboard is blank");
    assert!(step.duration_ms.unwrap() >= 300.0, "the operator's time is measured: {step:?}");
}
