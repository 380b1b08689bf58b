//! The runbook packs (scenarios/runbooks/): the aggregator/executor pack on
//! docker-compose, each scenario once, measuring what the runbook promises;
//! and no compose project left behind.

use crate::common;

use common::{compose_available, crashlab, docker_available, journal, labelled_containers, run, scenario, Run};
use serde_json::Value;

fn ponos(name: &str) -> Option<Run> {
    if !docker_available() || !compose_available() {
        return None;
    }
    // One compose project at a time: their figures are timings.
    let r = {
        let _serial = common::serial();
        run(&scenario(&format!("runbooks/ponos/{name}.toml")), &["--trials", "1", "--seed", "9"])
    };
    assert_eq!(r.code, 0, "{name}\n{}\n{}", r.stdout(), r.stderr());
    for project in journal(&r.dir).iter().filter(|e| e["op"] == "compose_up").map(|e| e["project"].as_str().unwrap()) {
        assert!(labelled_containers(&format!("com.docker.compose.project={project}")).is_empty(), "{name}");
    }
    Some(r)
}

fn probes<'a>(events: &'a [Value], target: &str) -> impl Iterator<Item = &'a Value> + 'a {
    let target = target.to_string();
    events.iter().filter(move |e| e["event"] == "probe" && e["target"] == target.as_str())
}

#[test]
fn a_crashed_aggregator_recovers_from_storage_within_a_minute_losing_nothing() {
    let Some(r) = ponos("crash-automatic-recovery") else { return };
    let t = &r.trials()[0];
    assert_eq!(t.rpo.lost_acked, Some(0));
    assert!(t.rto_ms.unwrap() < 60_000.0);
    let events = r.history(0);
    let fault = t.faults[0].injected_at_ms;
    let executor: Vec<&Value> = probes(&events, "executor").filter(|e| e["t_ms"].as_f64().unwrap() > fault).collect();
    assert!(executor.len() > 50 && executor.iter().all(|e| e["healthy"] == true), "the executor stayed up");
}

#[test]
fn a_corrupt_store_is_restored_from_the_tar_backup_losing_only_what_came_after_it() {
    let Some(r) = ponos("storage-corruption-restore") else { return };
    let t = &r.trials()[0];
    let steps = &t.recovery;
    assert!(steps[1].detail.as_str().contains("latest.tar.gz"), "{steps:?}");
    // Before the procedure, the damaged store kept the service down: once
    // the probe saw it down (stopping a container takes a while, longer on
    // a loaded machine), no sample saw it up until the runbook ran.
    let events = r.history(0);
    let procedure = steps[0].started_at_ms;
    let fault = t.faults[0].injected_at_ms;
    let at = |e: &Value| e["t_ms"].as_f64().unwrap();
    let after_fault: Vec<&Value> =
        probes(&events, "aggregator").filter(|e| (fault..procedure).contains(&at(e))).collect();
    let down: Vec<&&Value> = after_fault.iter().skip_while(|e| e["healthy"] == true).collect();
    assert!(!down.is_empty() && down.iter().all(|e| e["healthy"] == false), "refused until the runbook ran");
    // Lost: what was acknowledged after the backup (up to the stop the fault
    // began with, which takes a container a moment), nothing before it.
    let backup = events.iter().find(|e| e["event"] == "backup_taken").expect("a backup")["t_ms"].as_f64().unwrap();
    let after_backup = events
        .iter()
        .filter(|e| e["event"] == "complete" && e["outcome"] == "ok")
        .filter(|e| (backup..procedure).contains(&e["t_ms"].as_f64().unwrap()))
        .count() as u64;
    let lost = t.rpo.lost_acked.unwrap();
    assert!(lost > 0 && lost <= after_backup + 8, "lost {lost}, acknowledged after the backup {after_backup}");
    assert!(t.rpo.window_ms.unwrap() < 3_600_000.0);
}

#[test]
fn a_held_lock_blocks_until_the_runbook_removes_it() {
    let Some(r) = ponos("stale-lock-remove") else { return };
    let t = &r.trials()[0];
    // The operator's 300 ms reaction is part of the outage.
    assert!(t.rto_ms.unwrap() >= 300.0, "{:?}", t.rto_ms);
    assert_eq!(t.rpo.lost_acked, Some(0));
    assert!(t.faults[0].detail.as_str().contains("LOCK"));
}

#[test]
fn after_a_network_blackhole_the_service_catches_up_losing_nothing() {
    let Some(r) = ponos("rpc-unreachable") else { return };
    let t = &r.trials()[0];
    assert_eq!(t.rpo.lost_acked, Some(0));
    let from_heal = t.faults[0].rto_from_heal_ms.unwrap();
    assert!(from_heal < 500.0, "answered {from_heal} ms after the heal");
}

#[test]
fn the_monthly_drill_runs_unattended_and_is_logged() {
    if !docker_available() || !compose_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let out = crashlab()
        .args(["drill", "--yes", "--seed", "9", "--out"])
        .arg(tmp.path().join("drill"))
        .arg(scenario("runbooks/ponos/monthly-drill.toml"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("drill #1 recorded"), "{stdout}");
    assert!(stdout.contains("manual") && stdout.contains("confirmed by --yes"), "{stdout}");
}

/// Every line the target printed in trial 0, over all its incarnations.
fn target_output(r: &Run, target: &str) -> String {
    let logs = r.dir.join("trial-000/logs");
    let mut text = String::new();
    for entry in std::fs::read_dir(&logs).unwrap().flatten() {
        if entry.file_name().to_string_lossy().starts_with(&format!("{target}.")) {
            text.push_str(&std::fs::read_to_string(entry.path()).unwrap_or_default());
        }
    }
    text
}

fn process_pack(path: &str) -> Run {
    let r = run(&scenario(&format!("runbooks/{path}.toml")), &["--trials", "2", "--seed", "4"]);
    assert_eq!(r.code, 0, "{path}\n{}\n{}", r.stdout(), r.stderr());
    r
}

#[test]
fn a_node_recovers_from_its_last_complete_and_valid_snapshot() {
    // Crash: at most one 200 ms interval of writes lost, and some are.
    let r = process_pack("node/crash");
    for t in r.trials() {
        assert!(t.rpo.window_ms.unwrap() <= 400.0, "{:?}", t.rpo);
    }
    assert!(r.trials().iter().any(|t| t.rpo.lost_acked.unwrap() > 0), "writes since the anchor go");

    let r = process_pack("node/torn-snapshot");
    assert!(target_output(&r, "node").contains("ignored an incomplete snapshot"));

    let r = process_pack("node/bad-root-fallback");
    let out = target_output(&r, "node");
    assert!(out.contains("failed verification") && out.contains("falling back to an earlier one"), "{out}");

    // Refused until the runbook kept the latest valid snapshot.
    let r = process_pack("node/restore-earlier-snapshot");
    assert!(target_output(&r, "node").contains("the latest snapshot failed verification"));
    let t = &r.trials()[0];
    let steps = &t.recovery;
    assert!(steps.iter().all(|s| s.ok), "{steps:?}");
    let repaired = steps[2].started_at_ms + steps[2].duration_ms.unwrap();
    let fault = t.faults[0].injected_at_ms;
    assert!(fault + t.rto_ms.unwrap() >= repaired, "recovery came after the repair");

    let r = process_pack("node/reorg-db-lock");
    assert!(r.trials().iter().all(|t| t.rto_ms.unwrap() < 1000.0), "a dead holder's LOCK does not block");
}

#[test]
fn an_agent_quarantines_bad_checkpoints_and_replays_its_events() {
    for name in ["agent/crash", "agent/checkpoint-corruption"] {
        let r = process_pack(name);
        for t in r.trials() {
            assert_eq!(t.rpo.lost_acked, Some(0), "{name}");
        }
        if name.ends_with("corruption") {
            let out = target_output(&r, "agent");
            assert!(out.contains("checksum mismatch") || out.contains("unreadable"), "{out}");
            let quarantine = r.dir.join("trial-000/data/agent/quarantine");
            assert!(std::fs::read_dir(&quarantine).unwrap().count() >= 1, "checkpoints moved to quarantine/");
            assert!(out.lines().any(|l| l.starts_with("recovered quarantined=") && !l.contains("replayed=0")), "{out}");
        }
    }
}
