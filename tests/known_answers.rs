//! Known-answer tests: services whose true recovery time and loss are known,
//! measured by the real binary. Each asserts the number, not just success.

mod common;

use std::collections::HashSet;

use common::{run, scenario};

#[test]
fn rto_of_a_400ms_recovery_is_measured_within_60ms() {
    let r = run(&scenario("calibration-rto-400ms.toml"), &["--seed", "1"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout(), r.stderr());
    assert_eq!(r.trials().len(), 10);
    for t in r.trials() {
        let rto = t["rto_ms"].as_f64().expect("every trial recovered");
        assert!((400.0..=460.0).contains(&rto), "trial {}: rto {rto} ms outside [400, 460]", t["index"]);
        let restart = t["faults"][0]["restart_ms"].as_f64().unwrap();
        assert!(restart < rto, "the restart ({restart} ms) precedes readiness ({rto} ms)");
    }
}

#[test]
fn fsync_always_never_loses_an_acknowledged_write() {
    let r = run(&scenario("fsync-always-kill.toml"), &["--seed", "2"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout(), r.stderr());
    for t in r.trials() {
        let rpo = &t["rpo"];
        let acked = rpo["acked_writes"].as_u64().unwrap();
        // At least 500 writes/s were acknowledged over the 2 s workload.
        assert!(acked >= 1000, "trial {}: only {acked} writes acknowledged", t["index"]);
        assert_eq!(rpo["lost_acked"].as_u64(), Some(0), "trial {}", t["index"]);
        assert_eq!(rpo["corrupted"].as_u64(), Some(0), "trial {}", t["index"]);
        assert_eq!(rpo["phantom"].as_u64(), Some(0), "trial {}", t["index"]);
    }
    // Check the read-back ourselves: every acknowledged value is there, intact.
    for trial in 0..r.trials().len() as u64 {
        let events = r.history(trial);
        let read: std::collections::HashMap<String, String> =
            events.iter().find(|e| e["event"] == "read_back").expect("a read-back")["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| (p[0].as_str().unwrap().to_string(), p[1].as_str().unwrap().to_string()))
                .collect();
        let acked_ops: HashSet<u64> = events
            .iter()
            .filter(|e| e["event"] == "complete" && e["outcome"] == "ok")
            .map(|e| e["op"].as_u64().unwrap())
            .collect();
        for e in events.iter().filter(|e| e["event"] == "invoke") {
            if acked_ops.contains(&e["op"].as_u64().unwrap()) {
                assert_eq!(read.get(e["key"].as_str().unwrap()).map(String::as_str), e["value"].as_str());
            }
        }
    }
}

/// With `--flush-interval 1s`, what is lost must be exactly the writes that
/// the killed incarnation acknowledged but never flushed. demo-kv logs the
/// keys of each flush (`--log-flushes`), which gives the true answer.
#[test]
fn flush_interval_loses_exactly_what_was_not_flushed() {
    let r = run(&scenario("flush-interval-kill.toml"), &["--seed", "3"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout(), r.stderr());
    let mut trials_with_loss = 0;
    for (i, t) in r.trials().iter().enumerate() {
        let lost = t["rpo"]["lost_acked"].as_u64().unwrap();
        let window = t["rpo"]["window_ms"].as_f64().unwrap();
        assert!(window <= 1100.0, "trial {i}: window {window} ms");
        if lost > 0 {
            trials_with_loss += 1;
        }

        let log = std::fs::read_to_string(r.dir.join(format!("trial-{i:03}/logs/kv.1.log"))).unwrap();
        let flushed: HashSet<&str> = log
            .lines()
            .filter_map(|l| l.strip_prefix("flush n="))
            .flat_map(|l| l.split_once(" keys=").unwrap().1.split(','))
            .collect();
        let events = r.history(i as u64);
        // The first incarnation acknowledged writes until it died, which
        // under load can be a little after the kill was recorded.
        let kill_at = events.iter().find(|e| e["event"] == "target_exited").unwrap()["t_ms"].as_f64().unwrap();
        let acked: HashSet<u64> = events
            .iter()
            .filter(|e| e["event"] == "complete" && e["outcome"] == "ok")
            .map(|e| e["op"].as_u64().unwrap())
            .collect();
        // Writes sent before its exit went to the first incarnation.
        let expected = events
            .iter()
            .filter(|e| e["event"] == "invoke" && e["t_ms"].as_f64().unwrap() < kill_at)
            .filter(|e| acked.contains(&e["op"].as_u64().unwrap()))
            .filter(|e| !flushed.contains(e["key"].as_str().unwrap()))
            .count() as u64;
        assert_eq!(lost, expected, "trial {i}: lost_acked disagrees with demo-kv's own flush log");
    }
    assert!(trials_with_loss >= 8, "only {trials_with_loss} of 10 trials lost writes");
}
