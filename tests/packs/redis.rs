//! The Redis pack (scenarios/redis/) against Debian's redis-server as a local
//! process: the measured RPO must agree with what Redis documents for each
//! persistence setting. Three trials each here; the README's table comes
//! from `crashlab bench` over ten.

use crate::common;
use crashlab::reports::Verdict;

use std::collections::{HashMap, HashSet};

use common::{available, fuse_available, run, scenario, which, Run};
use crashlab::reports::TrialReport;

fn redis_available() -> bool {
    available(
        "redis",
        which("redis-server") && which("redis-check-aof"),
        "the Redis pack runs redis-server and redis-check-aof (Debian packages redis-server, redis-tools)",
    )
}

fn pack(name: &str) -> Run {
    run(&scenario(&format!("redis/{name}.toml")), &["--trials", "3", "--seed", "7"])
}

fn passes(r: &Run) {
    assert_eq!(r.code, 0, "{}\n{}", r.stdout(), r.stderr());
}

fn lost(t: &TrialReport) -> u64 {
    t.rpo.lost_acked.expect("read back")
}

#[test]
fn rdb_snapshots_lose_writes_but_never_more_than_the_save_interval() {
    if !redis_available() {
        return;
    }
    let r = pack("rdb-kill");
    passes(&r);
    for t in r.trials() {
        assert!(lost(t) >= 1, "RDB-only loses what came after the last snapshot: {t:?}");
        let window = t.rpo.window_ms.unwrap();
        // `save 1 1`: Redis counts whole seconds since the last save completed
        // (`>`), so up to 2 s between snapshots, plus the 100 ms cron tick and the fork.
        assert!(window <= 2200.0, "trial {}: lost writes acknowledged {window} ms before the kill", t.index);
        assert_eq!(t.rpo.corrupted, Some(0));
    }
}

#[test]
fn an_aof_loses_nothing_acknowledged_when_the_process_is_killed() {
    if !redis_available() {
        return;
    }
    for name in ["aof-always-kill", "aof-everysec-kill"] {
        let r = pack(name);
        passes(&r);
        for t in r.trials() {
            assert_eq!(lost(t), 0, "{name} trial {}", t.index);
            common::assert_the_workload_ran(name, t);
        }
    }
}

#[test]
fn on_power_loss_always_loses_nothing_and_everysec_at_most_about_a_second() {
    if !redis_available() || !fuse_available() {
        return;
    }
    let r = pack("aof-always-power-loss");
    passes(&r);
    for t in r.trials() {
        assert_eq!(lost(t), 0, "appendfsync always, trial {}", t.index);
    }
    let r = pack("aof-everysec-power-loss");
    passes(&r);
    for t in r.trials() {
        let window = t.rpo.window_ms.unwrap();
        assert!(window <= 2000.0, "everysec loses at most ~1-2 s: {window} ms");
    }
    // Something unsynced was there to lose: the layer discarded writes, and
    // the workload lost acknowledged ones, in some trial.
    assert!(r.trials().iter().any(|t| lost(t) > 0), "everysec lost nothing in any trial: {}", r.stdout());
}

#[test]
fn a_torn_aof_tail_is_truncated_and_loses_at_most_the_torn_write() {
    if !redis_available() {
        return;
    }
    let r = pack("aof-truncated-tail");
    passes(&r);
    for t in r.trials() {
        assert!(lost(t) <= 1, "trial {}: {}", t.index, lost(t));
        assert!(t.faults[0].detail.as_str().contains("incr.aof"), "{:?}", t.faults[0]);
    }
}

#[test]
fn a_damaged_aof_is_refused_and_redis_check_aof_recovers_a_prefix() {
    if !redis_available() {
        return;
    }
    // Without the fix step: Redis refuses to load, and the report says why.
    let r = run(&scenario("redis/aof-corrupt-refuses.toml"), &["--seed", "7"]);
    assert_eq!(r.code, 1, "{}", r.stdout());
    let t = &r.trials()[0];
    assert!(t.rto_ms.is_none());
    let check = &t.checks.iter().find(|c| c.verdict == Verdict::Fail).unwrap();
    assert!(check.observed.as_str().contains("Bad file format reading the append only file"), "{check:?}");

    // With it: recovery, and what the fault's incarnation acknowledged and
    // was lost is a suffix of its log, in the order the writes were
    // acknowledged (give or take the concurrent ones). Writes after the
    // recovery are kept.
    let r = pack("aof-corrupt-fix");
    passes(&r);
    for (i, t) in r.trials().iter().enumerate() {
        assert!(lost(t) > 0, "the fix truncates at the damaged command");
        let steps = &t.recovery;
        assert!(steps.iter().all(|s| s.ok), "{steps:?}");
        let events = r.history(i as u64);
        let read: HashSet<&str> = events.iter().find(|e| e["event"] == "read_back").unwrap()["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|kv| kv[0].as_str().unwrap())
            .collect();
        let keys: HashMap<u64, &str> = events
            .iter()
            .filter(|e| e["event"] == "invoke")
            .map(|e| (e["op"].as_u64().unwrap(), e["key"].as_str().unwrap()))
            .collect();
        let fault_at = t.faults[0].injected_at_ms;
        let acked: Vec<(f64, bool)> = events
            .iter()
            .filter(|e| e["event"] == "complete" && e["outcome"] == "ok" && e["t_ms"].as_f64().unwrap() < fault_at)
            .map(|e| (e["t_ms"].as_f64().unwrap(), read.contains(keys[&e["op"].as_u64().unwrap()])))
            .collect();
        let last_kept = acked.iter().filter(|(_, kept)| *kept).map(|(t, _)| *t).fold(f64::MIN, f64::max);
        let lost_before = acked.iter().filter(|(t, kept)| !kept && *t < last_kept).count();
        assert!(lost_before <= 8, "trial {i}: {lost_before} lost writes were acknowledged before a kept one");
    }
}

/// AOF writes failing with EIO (appendfsync everysec): Redis refuses writes
/// ("MISCONF Errors writing to the AOF file"), and PING with them, instead
/// of acknowledging them; it loses nothing and takes writes again after
/// the heal.
#[test]
fn an_aof_write_error_refuses_writes_loses_nothing_and_writes_resume_after_the_heal() {
    if !redis_available() || !fuse_available() {
        return;
    }
    let r = pack("aof-write-error");
    passes(&r);
    for (i, t) in r.trials().iter().enumerate() {
        let io = common::io_fault(t);
        let (injected, healed) = (io.injected_at_ms, io.healed_at_ms.unwrap());
        assert!(common::io_count(t, "write") > 0, "trial {i}: {}", io.detail);
        assert_eq!(lost(t), 0, "trial {i}");
        let events = r.history(i as u64);
        let refused: Vec<&serde_json::Value> = events
            .iter()
            .filter(|e| e["event"] == "complete" && e["outcome"] == "fail")
            .filter(|e| e["error"].as_str().unwrap_or("").contains("Errors writing to the AOF file"))
            .collect();
        assert!(!refused.is_empty(), "trial {i}: no write refused with MISCONF");
        let t_ms = |e: &serde_json::Value| e["t_ms"].as_f64().unwrap();
        assert!(refused.iter().all(|e| t_ms(e) > injected), "trial {i}: refused before the fault");
        // Once the first AOF write failed, every write until the heal is
        // refused: none sent after the first refusal and answered before
        // the heal was acknowledged.
        let first_refusal = refused.iter().map(|e| t_ms(e)).fold(f64::INFINITY, f64::min);
        let invokes: HashMap<u64, f64> =
            events.iter().filter(|e| e["event"] == "invoke").map(|e| (e["op"].as_u64().unwrap(), t_ms(e))).collect();
        let acked_inside = events
            .iter()
            .filter(|e| e["event"] == "complete" && e["outcome"] == "ok" && t_ms(e) < healed)
            .filter(|e| invokes[&e["op"].as_u64().unwrap()] > first_refusal)
            .count();
        assert_eq!(acked_inside, 0, "trial {i}: writes acknowledged while the AOF could not be written");
        let acked_after = events
            .iter()
            .filter(|e| e["event"] == "complete" && e["outcome"] == "ok" && t_ms(e) > healed + 200.0)
            .count();
        assert!(acked_after > 0, "trial {i}: no write acked after the heal");
        // The probe's PING is refused too: the outage is as long as the fault.
        let rto = io.rto_ms.expect("recovered");
        assert!(rto >= healed - injected, "trial {i}: rto {rto} ms, fault {} ms", healed - injected);
    }
}
