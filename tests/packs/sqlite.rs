//! The SQLite pack (scenarios/sqlite/): an application committing each write
//! as its own transaction, in WAL and rollback-journal mode, synchronous FULL
//! and OFF, under SIGKILL and under power loss. SQLite is linked into the
//! binary (rusqlite, bundled), so only the power-loss half needs anything
//! (FUSE).

use crate::common;

use common::{crashlab, fuse_available, run, scenario, Run};

fn pack(name: &str) -> Run {
    let r = run(&scenario(&format!("sqlite/{name}.toml")), &["--trials", "2", "--seed", "3"]);
    assert_eq!(r.code, 0, "{name}\n{}\n{}", r.stdout(), r.stderr());
    r
}

/// Writes the killed incarnation acknowledged: those acknowledged before the
/// fault, and up to one per connection answered as it struck.
fn acked_before_fault(r: &Run, trial: u64) -> u64 {
    let events = r.history(trial);
    let fault = events.iter().find(|e| e["event"] == "fault_injected").unwrap()["t_ms"].as_f64().unwrap();
    events
        .iter()
        .filter(|e| e["event"] == "complete" && e["outcome"] == "ok" && e["t_ms"].as_f64().unwrap() < fault)
        .count() as u64
}

#[test]
fn a_killed_application_loses_no_committed_transaction_in_any_mode() {
    for name in ["wal-full-kill", "wal-off-kill", "delete-full-kill", "delete-off-kill"] {
        let r = pack(name);
        for t in r.trials() {
            assert_eq!(t.rpo.lost_acked, Some(0), "{name}");
            common::assert_the_workload_ran(name, t);
            let check = &t.recovery.iter().find(|s| s.action == "check").unwrap();
            assert!(check.ok, "{name}: PRAGMA integrity_check: {check:?}");
        }
    }
}

#[test]
fn power_loss_keeps_every_commit_with_full_and_none_with_off() {
    if !fuse_available() {
        return;
    }
    for name in ["wal-full-power-loss", "delete-full-power-loss"] {
        let r = pack(name);
        for t in r.trials() {
            assert_eq!(t.rpo.lost_acked, Some(0), "{name}");
            let check = &t.recovery.iter().find(|s| s.action == "check").unwrap();
            assert!(check.ok, "{name}: PRAGMA integrity_check: {check:?}");
        }
    }
    // synchronous=OFF never syncs: the power loss takes the database back
    // to before its first write, so exactly what the killed incarnation
    // acknowledged is lost (a known answer), and the older file is intact.
    for name in ["wal-off-power-loss", "delete-off-power-loss"] {
        let r = pack(name);
        for (i, t) in r.trials().iter().enumerate() {
            let lost = t.rpo.lost_acked.unwrap();
            let before = acked_before_fault(&r, i as u64);
            assert!(before > 100 && (before..=before + 8).contains(&lost), "{name} trial {i}: lost {lost} of {before}");
            let db = r.dir.join(format!("trial-{i:03}/data/app/app.db"));
            let out = crashlab().args(["sqlite-app", "--integrity-check", "--db"]).arg(&db).output().unwrap();
            assert_eq!(out.status.code(), Some(0), "{name}: {}", String::from_utf8_lossy(&out.stderr));
        }
    }
}

/// The same application in a container (the demo-kv image carries it):
/// nothing committed lost, and the database it leaves passes the check.
#[test]
fn in_a_container_too_a_kill_loses_no_commit() {
    if !common::docker_available() {
        return;
    }
    let r = run(&scenario("sqlite/container-wal-full-kill.toml"), &["--trials", "1", "--seed", "3"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout(), r.stderr());
    let t = &r.trials()[0];
    assert_eq!(t.rpo.lost_acked, Some(0));
    common::assert_the_workload_ran("container-wal-full-kill", t);
    let db = r.dir.join("trial-000/data/app/app.db");
    let out = crashlab().args(["sqlite-app", "--integrity-check", "--db"]).arg(&db).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
}

/// SQLite locks with fcntl: a live process holding an fcntl lock on the
/// database keeps the application from opening it ("database is locked"),
/// a flock does not. The control that makes the held-lock known answers
/// below mean something.
#[test]
fn sqlite_is_blocked_by_a_live_fcntl_lock_and_not_by_a_flock() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("app.db");
    let open_db = || std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&db).unwrap();
    let start = || {
        let port = common::free_port();
        let args = ["sqlite-app", "--port", &port, "--db"].map(std::ffi::OsStr::new);
        let (first, _, stderr) = common::first_line_of(&[&args[..], &[db.as_os_str()]].concat());
        (first.starts_with("opened"), stderr)
    };
    let held = open_db();
    common::fcntl_lock(&held);
    let (opened, stderr) = start();
    assert!(!opened && stderr.contains("database is locked"), "{stderr}");
    drop(held);
    let held = open_db();
    common::flock(&held);
    let (opened, stderr) = start();
    assert!(opened, "SQLite does not see a flock: {stderr}");
}

/// The `held` stale lock on the database: the crashed owner forked a child
/// that kept the descriptor. SQLite's fcntl lock died with its owner, and a
/// flock never concerned it: either way the application comes back at once
/// and no incarnation finds the database locked.
#[test]
fn a_held_lock_left_by_a_crashed_owner_does_not_block_sqlite() {
    let tmp = tempfile::tempdir().unwrap();
    for lock in ["fcntl", "flock"] {
        let text = std::fs::read_to_string(scenario("sqlite/wal-full-kill.toml")).unwrap().replacen(
            "kind = \"kill\"\ntarget = \"app\"\n",
            &format!(
                "kind = \"stale-lock\"\ntarget = \"app\"\nvariant = \"held\"\npath = \"app.db\"\nlock = \"{lock}\"\n"
            ),
            1,
        );
        assert!(text.contains("stale-lock"), "{text}");
        let r =
            run(&common::write_scenario(tmp.path(), &format!("{lock}.toml"), &text), &["--trials", "2", "--seed", "4"]);
        assert_eq!(r.code, 0, "{lock}\n{}\n{}", r.stdout(), r.stderr());
        for t in r.trials() {
            let detail = t.faults[0].detail.as_str();
            let said = if lock == "fcntl" { "the lock died with the holder" } else { "keeps the lock" };
            assert!(detail.contains(said), "{detail}");
            assert_eq!(t.rpo.lost_acked, Some(0), "{lock}");
            common::assert_the_workload_ran(lock, t);
            let logs = r.dir.join(format!("trial-{:03}/logs", t.index));
            for log in std::fs::read_dir(&logs).unwrap().flatten() {
                let text = std::fs::read_to_string(log.path()).unwrap();
                assert!(!text.contains("locked"), "{lock}: {}: {text}", log.path().display());
            }
        }
    }
}

/// A full disk (rollback journal, synchronous=FULL): a commit that needs
/// room fails with SQLITE_FULL, none acknowledged is lost, integrity_check
/// passes, and commits resume after.
#[test]
fn a_full_disk_fails_every_commit_with_sqlite_full_and_loses_nothing() {
    if !fuse_available() {
        return;
    }
    let r = pack("delete-full-disk-full");
    for (i, t) in r.trials().iter().enumerate() {
        let io = common::io_fault(t);
        let (injected, healed) = (io.injected_at_ms, io.healed_at_ms.unwrap());
        let refused = common::io_count(t, "write");
        let events = r.history(i as u64);
        let t_ms = |e: &serde_json::Value| e["t_ms"].as_f64().unwrap();
        let failed: Vec<&serde_json::Value> =
            events.iter().filter(|e| e["event"] == "complete" && e["outcome"] == "fail").collect();
        assert!(!failed.is_empty(), "trial {i}: no commit failed under the full disk");

        for e in &failed {
            assert!(e["error"].as_str().unwrap().contains("database or disk is full"), "{e}");
            assert!(t_ms(e) > injected && t_ms(e) < healed + 100.0, "trial {i}: failed outside the fault: {e}");
        }
        // A commit fails only where the layer refused it room (a journal
        // to grow, a page to add); one that fit in what the files held
        // goes through, as on a real full disk.
        assert!(refused >= failed.len() as u64, "trial {i}: {} failed commits: {}", failed.len(), io.detail);
        assert_eq!(t.rpo.lost_acked, Some(0), "trial {i}");
        let ok_after = events.iter().filter(|e| e["outcome"] == "ok" && t_ms(e) > healed).count();
        assert!(ok_after > 0, "trial {i}: no commit after the heal");
        let check = t.recovery.iter().find(|s| s.action == "check").unwrap();
        assert!(check.ok, "PRAGMA integrity_check: {check:?}");
    }
}
