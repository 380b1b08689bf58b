//! Known answers for the `io` fault against demo-kv, whose writes each wait
//! for an fdatasync of its log (`--fsync always`): what the storage layer
//! failed or delayed is counted in the fault's detail, and must agree with
//! the outcomes of the writes the workload sent meanwhile.

use crate::common;

use common::{fuse_available, io_count, io_fault, run, scenario, write_scenario, Run};
use crashlab::reports::{TrialReport, Verdict};
use serde_json::Value;

/// A write of the history: when it was sent and answered, and whether it was
/// acknowledged.
struct Write {
    invoked: f64,
    completed: f64,
    ok: bool,
}

fn writes(r: &Run, trial: u64) -> Vec<Write> {
    let events = r.history(trial);
    let complete: std::collections::HashMap<u64, &Value> =
        events.iter().filter(|e| e["event"] == "complete").map(|e| (e["op"].as_u64().unwrap(), e)).collect();
    events
        .iter()
        .filter(|e| e["event"] == "invoke")
        .filter_map(|e| {
            let c = complete.get(&e["op"].as_u64()?)?;
            Some(Write { invoked: e["t_ms"].as_f64()?, completed: c["t_ms"].as_f64()?, ok: c["outcome"] == "ok" })
        })
        .collect()
}

/// `(injected, healed)` of the trial's io fault, from its report.
fn io_window(t: &TrialReport) -> (f64, f64) {
    let io = io_fault(t);
    (io.injected_at_ms, io.healed_at_ms.expect("the io fault healed"))
}

fn io_detail(t: &TrialReport) -> &str {
    &io_fault(t).detail
}

/// demo-kv fails every write whose fsync failed; the power loss in the
/// middle of the errors then takes only writes it never acknowledged.
#[test]
fn an_fsync_error_is_never_an_acknowledgement_and_a_power_loss_in_it_takes_nothing_acknowledged() {
    if !fuse_available() {
        return;
    }
    let r = run(&scenario("io-fsync-eio-power-loss.toml"), &["--seed", "16", "--trials", "3"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout(), r.stderr());
    for (i, t) in r.trials().iter().enumerate() {
        let (injected, healed) = io_window(t);
        let detail = io_detail(t);
        let failed_fsyncs = io_count(t, "fsync");
        assert!(failed_fsyncs > 0 && detail.contains("with EIO"), "trial {i}: {detail}");
        let writes = writes(&r, i as u64);
        let inside = |w: &&Write| w.invoked > injected && w.completed < healed;
        let acked_inside = writes.iter().filter(inside).filter(|w| w.ok).count();
        let failed_inside = writes.iter().filter(inside).filter(|w| !w.ok).count();
        assert_eq!(acked_inside, 0, "trial {i}: a write sent and answered while every fsync failed was acked");
        assert!(failed_inside > 100, "trial {i}: only {failed_inside} writes failed under the fault");
        assert_eq!(t.rpo.lost_acked, Some(0), "trial {i}");
        assert_eq!(t.verdict, Verdict::Pass, "trial {i}");
    }
}

/// The calibrated bug: with `--on-fsync-error ignore` demo-kv acknowledges
/// the writes whose fsync failed, and the power loss takes exactly those
/// sent between the first failed fsync and the crash.
#[test]
fn a_store_that_ignores_fsync_errors_loses_what_it_acknowledged_while_they_failed() {
    if !fuse_available() {
        return;
    }
    let text = std::fs::read_to_string(scenario("io-fsync-eio-power-loss.toml")).unwrap();
    let buggy = text.replace(r#""--fsync", "always"]"#, r#""--fsync", "always", "--on-fsync-error", "ignore"]"#);
    assert_ne!(buggy, text);
    let dir = tempfile::tempdir().unwrap();
    let r = run(&write_scenario(dir.path(), "ignore.toml", &buggy), &["--seed", "16", "--trials", "2"]);
    assert_eq!(r.code, 1, "lost_acked = 0 fails: {}\n{}", r.stdout(), r.stderr());
    for (i, t) in r.trials().iter().enumerate() {
        let (injected, _) = io_window(t);
        let crash = t.faults.iter().find(|f| f.kind == "lose-unsynced").unwrap().injected_at_ms;
        let writes = writes(&r, i as u64);
        // Acked after the errors began and sent before the crash: unsynced.
        let expected = writes.iter().filter(|w| w.ok && w.invoked > injected && w.invoked < crash).count() as u64;
        let lost = t.rpo.lost_acked.unwrap();
        assert!(expected > 150, "trial {i}: only {expected} writes acknowledged under the fault");
        // Writes already in flight when the errors began (at most one per
        // connection) were acked unsynced as well.
        assert!((expected..=expected + 8).contains(&lost), "trial {i}: lost {lost}, expected {expected} (+ 8)");
    }
}

/// A full disk fails exactly the writes that would grow the log, none is
/// acknowledged meanwhile, and writes resume once room comes back.
#[test]
fn a_full_disk_fails_every_growing_write_while_it_lasts_and_writes_resume_after() {
    if !fuse_available() {
        return;
    }
    let r = run(&scenario("io-disk-full.toml"), &["--seed", "17", "--trials", "2"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout(), r.stderr());
    for (i, t) in r.trials().iter().enumerate() {
        let (injected, healed) = io_window(t);
        let detail = io_detail(t);
        assert!(detail.contains("disk full: ENOSPC past"), "{detail}");
        let refused = io_count(t, "write");
        let writes = writes(&r, i as u64);
        let failed = writes.iter().filter(|w| !w.ok).count() as u64;
        // Each failed write is one refused append: the counts agree.
        assert_eq!(failed, refused, "trial {i}: {detail}");
        assert!(refused > 100, "trial {i}: {detail}");
        assert!(writes.iter().all(|w| w.ok || (w.completed > injected && w.invoked < healed)), "trial {i}");
        let after = writes.iter().filter(|w| w.ok && w.invoked > healed).count();
        assert!(after > 100, "trial {i}: only {after} writes acked after the heal");
        assert_eq!(t.rpo.lost_acked, Some(0));
    }
}

/// A slow fsync: every write acknowledged under the fault waited at least
/// the delay, and what the layer says it waited agrees.
#[test]
fn a_delayed_fsync_slows_every_write_that_waits_for_it() {
    if !fuse_available() {
        return;
    }
    let _serial = common::serial();
    let r = run(&scenario("io-fsync-delay.toml"), &["--seed", "18", "--trials", "1"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout(), r.stderr());
    let t = &r.trials()[0];
    let (injected, healed) = io_window(t);
    let detail = io_detail(t);
    let delayed = io_count(t, "fsync");
    let waited: f64 = detail.split("by ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
    assert!(delayed > 5 && waited >= 20.0 * delayed as f64 && waited <= 25.0 * delayed as f64, "{detail}");
    let writes = writes(&r, 0);
    let inside: Vec<&Write> = writes.iter().filter(|w| w.invoked > injected && w.completed < healed).collect();
    assert!(inside.len() >= 5, "{} writes under the fault", inside.len());
    for w in &inside {
        assert!(w.ok && w.completed - w.invoked >= 20.0, "a write took {} ms", w.completed - w.invoked);
    }
}

/// A fault that acted on no operation changed nothing: the trial proves
/// nothing about the fault, and says so.
#[test]
fn an_io_fault_that_matched_no_operation_makes_the_trial_unknown() {
    if !fuse_available() {
        return;
    }
    let text = std::fs::read_to_string(scenario("io-fsync-delay.toml")).unwrap();
    let nothing = text.replace(r#"path = "wal.log""#, r#"path = "no-such-file""#);
    assert_ne!(nothing, text);
    let dir = tempfile::tempdir().unwrap();
    let r = run(&write_scenario(dir.path(), "nothing.toml", &nothing), &["--trials", "1"]);
    let t = &r.trials()[0];
    assert_eq!(t.verdict, Verdict::Unknown, "{}", r.stdout());
    let check = t.checks.iter().find(|c| c.name == "fault #1 injected").expect("the fault's check");
    assert!(check.observed.contains("changed nothing"), "{}", check.observed);
    assert_ne!(r.code, 0, "an unknown run does not pass: {}", r.stdout());
}
