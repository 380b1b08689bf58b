//! Known answers for the storage faults: demo-kv's log is simple enough that
//! the true loss of each fault can be computed from the history alone, and
//! compared with what the harness measured.

use crate::common;

use std::collections::{HashMap, HashSet};

use common::{fuse_available, psmisc_available, run, scenario, Run};
use crashlab::reports::TrialReport;
use serde_json::Value;

/// The ops of one trial: (invoke time, key, value, outcome, complete time).
struct Op {
    invoked: f64,
    key: String,
    value: String,
    ok: bool,
}

fn ops(r: &Run, trial: u64) -> Vec<Op> {
    let events = r.history(trial);
    let outcomes: HashMap<u64, &Value> =
        events.iter().filter(|e| e["event"] == "complete").map(|e| (e["op"].as_u64().unwrap(), e)).collect();
    let mut ops: Vec<(u64, Op)> = events
        .iter()
        .filter(|e| e["event"] == "invoke")
        .map(|e| {
            let op = e["op"].as_u64().unwrap();
            (
                op,
                Op {
                    invoked: e["t_ms"].as_f64().unwrap(),
                    key: e["key"].as_str().unwrap().into(),
                    value: e["value"].as_str().unwrap().into(),
                    ok: outcomes.get(&op).is_some_and(|c| c["outcome"] == "ok"),
                },
            )
        })
        .collect();
    ops.sort_by_key(|(op, _)| *op);
    ops.into_iter().map(|(_, o)| o).collect()
}

fn fault_time(r: &Run, trial: u64) -> f64 {
    r.history(trial).iter().find(|e| e["event"] == "fault_injected").expect("the fault was injected")["t_ms"]
        .as_f64()
        .unwrap()
}

/// When the incarnation that the fault took down exited: every write it
/// acknowledged was invoked before then.
fn first_exit(r: &Run, trial: u64) -> f64 {
    r.history(trial).iter().find(|e| e["event"] == "target_exited").expect("the target went down")["t_ms"]
        .as_f64()
        .unwrap()
}

fn fault_detail(t: &TrialReport) -> String {
    t.faults[0].detail.clone()
}

fn lost(t: &TrialReport) -> u64 {
    t.rpo.lost_acked.expect("the store was read back")
}

#[test]
fn lose_unsynced_with_fsync_always_loses_nothing_acknowledged() {
    if !fuse_available() {
        return;
    }
    let r = run(&scenario("lose-unsynced-fsync-always.toml"), &["--seed", "11"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout(), r.stderr());
    assert_eq!(r.trials().len(), 10);
    for t in r.trials() {
        assert!(t.rpo.acked_writes >= 500, "trial {}: too few writes", t.index);
        assert_eq!(lost(t), 0, "trial {}: {}", t.index, fault_detail(t));
        assert!(fault_detail(t).contains("discarded"), "{}", fault_detail(t));
    }
}

/// With --fsync never, no write is ever synced: the power loss must take
/// exactly the writes the killed incarnation acknowledged, in every trial.
#[test]
fn lose_unsynced_with_fsync_never_loses_exactly_what_was_acknowledged_before_the_power_loss() {
    if !fuse_available() {
        return;
    }
    let r = run(&scenario("lose-unsynced-fsync-never.toml"), &["--seed", "12"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout(), r.stderr());
    assert_eq!(r.trials().len(), 10);
    for (i, t) in r.trials().iter().enumerate() {
        let at = first_exit(&r, i as u64);
        let expected = ops(&r, i as u64).iter().filter(|o| o.ok && o.invoked < at).count() as u64;
        assert!(expected > 100, "trial {i}: only {expected} writes before the power loss");
        assert_eq!(lost(t), expected, "trial {i}: {}", fault_detail(t));
        // The writes after the restart were kept: nothing else went missing.
        assert_eq!(t.rpo.corrupted, Some(0));
    }
}

/// Encoded size of one demo-kv log record (`len | crc | key_len | key | value`).
fn record_len(key: &str, value: &str) -> u64 {
    let mut out = Vec::new();
    crashlab::demo::wal::encode(key, value, &mut out);
    out.len() as u64
}

/// The byte a bitflip hit, from the fault's detail ("flipped byte N bit B").
fn flipped_byte(detail: &str) -> u64 {
    let after = detail.split("flipped byte ").nth(1).expect("a bitflip detail");
    after.split_whitespace().next().unwrap().parse().unwrap()
}

/// One connection, fsync always, target stopped gracefully before the damage:
/// the log holds the acknowledged writes in op order, so the record the flip
/// hit, and every acknowledged record from it on, are known.
#[test]
fn corrupt_mid_wal_with_truncate_loses_exactly_the_records_from_the_damaged_one() {
    let r = run(&scenario("corrupt-wal-truncate.toml"), &["--seed", "13"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout(), r.stderr());
    for (i, t) in r.trials().iter().enumerate() {
        // Writes acknowledged by the incarnation that the offline damage
        // stopped: it serves until SIGTERM ends it.
        let at = first_exit(&r, i as u64);
        let logged: Vec<Op> = ops(&r, i as u64).into_iter().filter(|o| o.ok && o.invoked < at).collect();
        let hit = flipped_byte(&fault_detail(t));
        let mut start = 0;
        let damaged = logged
            .iter()
            .position(|o| {
                let end = start + record_len(&o.key, &o.value);
                let inside = (start..end).contains(&hit);
                start = end;
                inside
            })
            .unwrap_or_else(|| panic!("trial {i}: byte {hit} is past the {start} bytes of acknowledged records"));
        let expected = (logged.len() - damaged) as u64;
        assert!(expected > 50, "trial {i}: the flip at 50% should cut about half the log");
        assert_eq!(lost(t), expected, "trial {i}: {}", fault_detail(t));
    }
}

#[test]
fn corrupt_mid_wal_with_refuse_never_recovers_and_names_the_refusal() {
    let r = run(&scenario("corrupt-wal-refuse.toml"), &["--seed", "14"]);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout(), r.stderr());
    let t = &r.trials()[0];
    assert!(t.rto_ms.is_none());
    let recovered = &t.checks.iter().find(|c| c.name == "recovered after fault #1 (corrupt kv)");
    let observed = recovered.unwrap().observed.as_str();
    assert!(observed.contains("checksum mismatch") && observed.contains("refusing to start"), "{observed}");
    // The damaged file was put back as it was once the trial ended.
    let healed = r.history(0).into_iter().find(|e| e["event"] == "fault_healed").unwrap();
    assert!(healed["detail"].as_str().unwrap().contains("original bytes restored"), "{healed}");
}

#[test]
fn torn_tail_loses_at_most_the_torn_record() {
    let r = run(&scenario("torn-tail-wal.toml"), &["--seed", "15"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout(), r.stderr());
    for (i, t) in r.trials().iter().enumerate() {
        assert!(fault_detail(t).contains("cut the last 17 bytes"), "{}", fault_detail(t));
        let at = first_exit(&r, i as u64);
        let last_acked = ops(&r, i as u64).into_iter().rfind(|o| o.ok && o.invoked < at).unwrap();
        let items: HashSet<String> = r.history(i as u64).iter().find(|e| e["event"] == "read_back").unwrap()["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p[0].as_str().unwrap().to_string())
            .collect();
        match lost(t) {
            // The torn record was the last acknowledged one...
            1 => assert!(!items.contains(&last_acked.key), "trial {i}: the lost write is the last one"),
            // ...or a write in flight when the target stopped, never acknowledged.
            0 => assert!(items.contains(&last_acked.key)),
            n => panic!("trial {i}: {n} writes lost to a 17-byte tear"),
        }
    }
}

#[test]
fn a_held_flock_blocks_until_the_runbook_kills_the_holder_and_rto_includes_the_procedure() {
    let _serial = common::serial();
    if !psmisc_available() {
        return;
    }
    let r = run(&scenario("stale-lock-held-runbook.toml"), &["--seed", "16"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout(), r.stderr());
    for t in r.trials() {
        let detail = fault_detail(t);
        assert!(detail.contains("keeps the lock"), "{detail}");
        let steps = &t.recovery;
        assert_eq!(steps.len(), 3);
        assert!(steps.iter().all(|s| s.ok), "{steps:?}");
        // The service stays down until the holder dies: RTO covers the
        // operator's 300 ms and the kill.
        let rto = t.rto_ms.unwrap();
        let kill_ended = steps[1].started_at_ms + steps[1].duration_ms.unwrap();
        let injected = t.faults[0].injected_at_ms;
        assert!(rto >= kill_ended - injected, "rto {rto} ms ends before the holder was killed");
        assert!((300.0..800.0).contains(&rto), "rto {rto} ms");
    }
    // demo-kv said why it would not start meanwhile.
    let logs = std::fs::read_dir(r.dir.join("trial-000/logs")).unwrap();
    let refused = logs.flatten().any(|f| std::fs::read_to_string(f.path()).unwrap_or_default().contains("is in use"));
    assert!(refused, "some incarnation refused the locked data dir");
}

/// The same crash with an fcntl lock: the lock dies with its owner even
/// though the forked child lives on, so there is no outage beyond the restart.
#[test]
fn a_held_fcntl_lock_dies_with_its_owner() {
    let _serial = common::serial();
    let tmp = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(scenario("stale-lock-held-runbook.toml"))
        .unwrap()
        .replace("lock = \"flock\"", "lock = \"fcntl\"\nduration = \"1s\"")
        // The store locks the way the holder did: a flock store would not
        // see an fcntl lock at all, whatever the fault did.
        .replace("\"{data_dir}\"", "\"{data_dir}\", \"--lock\", \"fcntl\"");
    assert!(text.contains("--lock\", \"fcntl\""), "{text}");
    let text = text[..text.find("[[recover]]").unwrap()].to_string() + "[trials]\ncount = 1\n";
    let path = common::write_scenario(tmp.path(), "fcntl.toml", &text);
    let r = run(&path, &["--seed", "17"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout(), r.stderr());
    let t = &r.trials()[0];
    assert!(fault_detail(t).contains("the lock died with the holder"), "{}", fault_detail(t));
    let rto = t.rto_ms.unwrap();
    assert!(rto < 200.0, "rto {rto} ms: the fcntl lock should not have outlived its owner");
}

#[test]
fn a_leftover_pid_file_blocks_a_naive_service_until_removed() {
    let r = run(&scenario("stale-pidfile-leftover.toml"), &["--seed", "18"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout(), r.stderr());
    for t in r.trials() {
        assert!(fault_detail(t).contains("naming dead pid"), "{}", fault_detail(t));
        let rto = t.rto_ms.unwrap();
        assert!(rto >= 200.0, "rto {rto} ms: the naive service waited for the runbook's 200 ms");
    }
}

/// The restore takes the store back to the backup: what is lost is exactly
/// the writes acknowledged after the backup and before the damage.
#[test]
fn restore_from_backup_loses_exactly_the_writes_after_the_backup() {
    let r = run(&scenario("corrupt-restore-backup.toml"), &["--seed", "19"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout(), r.stderr());
    for (i, t) in r.trials().iter().enumerate() {
        let events = r.history(i as u64);
        let backup_at = events.iter().find(|e| e["event"] == "backup_taken").unwrap()["t_ms"].as_f64().unwrap();
        let fault_at = fault_time(&r, i as u64);
        let restored_at = events.iter().find(|e| e["event"] == "recover_started" && e["action"] == "restore").unwrap()
            ["t_ms"]
            .as_f64()
            .unwrap();
        let ops = ops(&r, i as u64);
        // The backup pauses the target: writes invoked before it began are in
        // it; writes invoked after the backup and before the restore are not.
        // A write in flight across the backup's pause may fall either way.
        let certain = ops.iter().filter(|o| o.ok && o.invoked > backup_at + 5.0 && o.invoked < fault_at).count();
        let possible = ops.iter().filter(|o| o.ok && o.invoked > backup_at - 50.0 && o.invoked < restored_at).count();
        let lost = lost(t) as usize;
        assert!((certain..=possible).contains(&lost), "trial {i}: lost {lost}, expected {certain}..={possible}");
        assert!(possible - certain <= 25, "trial {i}: the answer is too loose: {certain}..={possible}");
        let steps: Vec<&str> = t.recovery.iter().map(|s| s.action.as_str()).collect();
        assert_eq!(steps, ["stop", "restore", "start", "wait"]);
    }
}

fn mounted(path: &std::path::Path) -> bool {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    info.lines().any(|l| l.split(' ').nth(4) == Some(&*path.display().to_string()))
}

/// The harness is SIGKILLed with its FUSE layer mounted and a file damaged:
/// `crashlab cleanup` must unmount it, stop the target and put back the
/// original bytes, checked against a copy the test kept.
#[test]
fn cleanup_after_a_killed_harness_unmounts_and_restores_the_damaged_file() {
    if !fuse_available() {
        return;
    }
    // Adopt the orphans (see lifecycle.rs): the killed harness's target must
    // not be re-parented to an init that does not reap.
    nix::sys::prctl::set_child_subreaper(true).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let original: Vec<u8> = (0..256 * 1024u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let fixture = tmp.path().join("static.bin");
    std::fs::write(&fixture, &original).unwrap();
    let text = format!(
        r#"
name = "killed-mid-trial"
[target.kv]
command = ["crashlab", "demo-kv", "--port", "{{port}}", "--data-dir", "{{data_dir}}", "--fsync", "never"]
before_start = [["cp", "{fixture}", "{{data_dir}}/static.bin"]]
probe = {{ kind = "demo-kv", interval = "5ms" }}
[workload]
kind = "demo-kv"
target = "kv"
rate = 100
duration = "60s"
[[fault]]
kind = "corrupt"
target = "kv"
path = "static.bin"
mode = "zero"
length = "64KiB"
when = "online"
at = "300ms"
[[fault]]
kind = "lose-unsynced"
target = "kv"
at = "50s"
"#,
        fixture = fixture.display()
    );
    let path = common::write_scenario(tmp.path(), "killed.toml", &text);
    let dir = tmp.path().join("run");
    let mut harness = common::spawn_run(&path, &dir);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !common::journal(&dir).iter().any(|e| e["op"] == "corrupted") {
        assert!(std::time::Instant::now() < deadline, "the corruption was never journaled");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
    harness.kill().unwrap();
    harness.wait().unwrap();

    let data_dir = dir.join("trial-000/data/kv").canonicalize().unwrap();
    assert!(mounted(&data_dir), "the FUSE layer is left mounted by the killed harness");
    let targets: Vec<i32> = common::journal(&dir)
        .iter()
        .filter(|e| e["op"] == "target_started")
        .map(|e| e["pid"].as_i64().unwrap() as i32)
        .collect();

    let out = common::crashlab().arg("cleanup").arg(&dir).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("unmounted 1 FUSE layer(s), restored 1 damaged file(s)"), "{stdout}");
    assert!(!mounted(&data_dir), "cleanup unmounted the layer");
    let restored = std::fs::read(data_dir.join("static.bin")).unwrap();
    assert_eq!(crc32fast::hash(&restored), crc32fast::hash(&original), "the original bytes are back");
    assert_eq!(restored, original);
    for pid in targets {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat.rfind(')').and_then(|i| stat[i + 2..].chars().next());
        assert!(matches!(state, None | Some('Z') | Some('X')), "target pid {pid} is still alive");
    }
}

/// The FUSE layer on its own: what survives a power loss is exactly what was
/// fsynced, byte for byte, seen through the mount and on the backing files.
#[test]
fn a_power_loss_keeps_exactly_the_fsynced_bytes() {
    use std::io::Write;
    use std::os::unix::fs::FileExt;
    if !fuse_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    std::fs::create_dir(&dir).unwrap();
    let dir = dir.canonicalize().unwrap();
    let journal = std::sync::Arc::new(crashlab::journal::Journal::create(tmp.path()).unwrap());
    let layer = crashlab::fault::layer::StorageLayer::mount(&dir, 0, "kv", journal).unwrap();

    // a: 100 synced bytes, then an unsynced append and an unsynced overwrite.
    let mut a = std::fs::File::create(dir.join("a.log")).unwrap();
    a.write_all(&[b'A'; 100]).unwrap();
    a.sync_data().unwrap();
    a.write_all(&[b'B'; 50]).unwrap();
    a.write_all_at(&[b'C'; 10], 10).unwrap();
    // b: never synced.
    std::fs::File::create(dir.join("b.log")).unwrap().write_all(&[b'X'; 30]).unwrap();
    // c: 10 synced bytes, then the very last write of all, unsynced.
    let mut c = std::fs::File::create(dir.join("c.log")).unwrap();
    c.write_all(&[b'D'; 10]).unwrap();
    c.sync_all().unwrap();
    c.write_all(&[b'E'; 40]).unwrap();
    drop((a, c));

    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(7);
    let loss = layer.power_loss(Some(&mut rng)).unwrap();
    assert_eq!((loss.files, loss.writes, loss.bytes), (3, 4, 130), "{loss:?}");
    let (torn_file, kept, of) = loss.torn.clone().expect("the last write was torn");
    assert_eq!((torn_file.to_str(), of), (Some("c.log"), 40));
    assert!(kept < 40);

    let expect = |name: &str, content: Vec<u8>| {
        assert_eq!(std::fs::read(dir.join(name)).unwrap(), content, "{name} through the mount");
    };
    expect("a.log", vec![b'A'; 100]);
    expect("b.log", Vec::new());
    let mut torn = vec![b'D'; 10];
    torn.extend(std::iter::repeat_n(b'E', kept as usize));
    expect("c.log", torn.clone());

    // After the layer is gone, the backing files say the same.
    layer.unmount().expect("the layer unmounts");
    assert_eq!(std::fs::read(dir.join("a.log")).unwrap(), vec![b'A'; 100]);
    assert_eq!(std::fs::read(dir.join("c.log")).unwrap(), torn);
    assert!(!crashlab::fault::layer::is_mounted(&dir));
}

/// PostgreSQL's rule (demo-kv --pidfile-policy refuse-live): a pid file
/// naming a dead pid is no obstacle, one naming a live process is, until
/// that process is gone.
#[test]
fn a_pid_file_blocks_a_careful_service_only_while_it_names_a_live_process() {
    let _serial = common::serial();
    let tmp = tempfile::tempdir().unwrap();
    let scenario = |variant: &str| {
        format!(
            r#"
name = "pidfile-{variant}"
[target.kv]
command = ["crashlab", "demo-kv", "--port", "{{port}}", "--data-dir", "{{data_dir}}", "--pidfile-policy", "refuse-live"]
restart = {{ delay = "20ms" }}
probe = {{ kind = "demo-kv", interval = "5ms" }}
[workload]
kind = "demo-kv"
target = "kv"
rate = 100
duration = "1500ms"
[[fault]]
kind = "stale-lock"
variant = "{variant}"
path = "demo-kv.pid"
duration = "500ms"
target = "kv"
at = "300ms"
"#
        )
    };
    let rto = |variant: &str| {
        let path = common::write_scenario(tmp.path(), &format!("{variant}.toml"), &scenario(variant));
        let r = run(&path, &["--seed", "20"]);
        assert_eq!(r.code, 0, "{}\n{}", r.stdout(), r.stderr());
        (r.trials()[0].rto_ms.unwrap(), fault_detail(&r.trials()[0]))
    };
    let (dead, detail) = rto("leftover");
    assert!(dead < 200.0, "a dead pid's file blocked for {dead} ms ({detail})");
    let (live, detail) = rto("pid-reused");
    assert!(detail.contains("a live process unrelated to the service"), "{detail}");
    assert!((500.0..900.0).contains(&live), "a live pid's file should block until healed at 500 ms, rto {live} ms");
}

/// demo-kv `--lock fcntl` is blocked by a live fcntl lock and not by a
/// flock, and `--lock flock` the other way round: the known answer that
/// makes the held-lock scenarios meaningful for each kind.
#[test]
fn a_store_is_blocked_only_by_a_lock_of_its_own_kind() {
    let tmp = tempfile::tempdir().unwrap();
    let lock_file =
        || std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(tmp.path().join("LOCK")).unwrap();
    let start = |kind: &str| {
        let port = common::free_port();
        let args = ["demo-kv", "--port", &port, "--lock", kind, "--data-dir"].map(std::ffi::OsStr::new);
        let (first, code, stderr) = common::first_line_of(&[&args[..], &[tmp.path().as_os_str()]].concat());
        (first.starts_with("ready") || first.starts_with("recovered"), code, stderr)
    };
    // An fcntl lock held by this (live) process.
    let held = lock_file();
    common::fcntl_lock(&held);
    let (started, code, stderr) = start("fcntl");
    assert!(!started && code == Some(2) && stderr.contains("is in use"), "{code:?} {stderr}");
    assert!(start("flock").0, "a flock store does not see an fcntl lock");
    drop(held);
    // A flock held by this process.
    let held = lock_file();
    common::flock(&held);
    let (started, code, stderr) = start("flock");
    assert!(!started && code == Some(2) && stderr.contains("is in use"), "{code:?} {stderr}");
    assert!(start("fcntl").0, "an fcntl store does not see a flock");
}

/// A power loss that tears the last write leaves a cut record at the end
/// of the log. demo-kv, even with `--on-corruption refuse`, starts from the
/// records before it, as every write-ahead log does: a torn tail is the
/// normal end of a log after a crash, not damage.
#[test]
fn a_torn_tail_after_a_power_loss_is_the_end_of_the_log_not_corruption() {
    if !common::fuse_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(scenario("lose-unsynced-fsync-never.toml"))
        .unwrap()
        .replace("\"--fsync\", \"never\"", "\"--fsync\", \"every:200ms\", \"--on-corruption\", \"refuse\"")
        .replace("at = \"500ms..1s\"", "at = \"500ms..1s\"\ntorn = true")
        .replace("count = 10", "count = 5")
        .replace("lost_acked = \"> 0\"", "");
    let path = common::write_scenario(tmp.path(), "torn.toml", &text);
    let r = run(&path, &["--seed", "21"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout(), r.stderr());
    let mut torn = 0;
    for (i, t) in r.trials().iter().enumerate() {
        assert!(t.rto_ms.is_some(), "trial {i} recovered");
        let detail = fault_detail(t);
        if detail.contains("torn after") && !detail.contains("torn after 0 of") {
            torn += 1;
            let logs: Vec<String> = r
                .history(i as u64)
                .iter()
                .filter(|e| e["event"] == "target_log")
                .flat_map(|e| e["lines"].as_array().unwrap().iter().map(|l| l.as_str().unwrap().to_string()))
                .collect();
            assert!(logs.iter().any(|l| l.contains("torn tail: dropped")), "trial {i}: {detail}\n{logs:?}");
        }
    }
    assert!(torn >= 3, "{torn} of 5 trials tore a write");
}

/// A power loss once the writes have stopped: with `--fsync every:100ms`
/// everything acknowledged was synced by then, so nothing is lost.
#[test]
fn a_power_loss_in_the_quiet_period_after_the_writes_loses_nothing_synced() {
    if !common::fuse_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(scenario("lose-unsynced-fsync-never.toml"))
        .unwrap()
        .replace("\"--fsync\", \"never\"", "\"--fsync\", \"every:100ms\"")
        .replace("duration = \"1500ms\"", "duration = \"1s\"\nquiet = \"1s\"")
        .replace("at = \"500ms..1s\"", "at = \"1500ms\"")
        .replace("count = 10", "count = 2")
        .replace("lost_acked = \"> 0\"", "lost_acked = 0");
    let path = common::write_scenario(tmp.path(), "quiet.toml", &text);
    let r = run(&path, &["--seed", "22"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout(), r.stderr());
    for t in r.trials() {
        assert!(t.faults[0].injected_at_ms >= 1500.0, "after the writes: {t:?}");
        common::assert_the_workload_ran("quiet", t);
    }
    // Without the quiet period the same `at` is refused, saying why.
    let refused = common::crashlab()
        .arg("validate")
        .arg(common::write_scenario(tmp.path(), "loud.toml", &text.replace("quiet = \"1s\"", "")))
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("add `quiet = \"2s\"` to [workload]"));
}
