//! Known answers for link faults through the fault proxy, measured by the
//! real binary on demo-kv.

mod common;

use std::collections::HashMap;

use common::{run, scenario, Run};
use serde_json::Value;

/// (invoke time, latency, outcome) of every op of trial 0.
fn ops(r: &Run) -> Vec<(f64, f64, String)> {
    let events = r.history(0);
    let invoked: HashMap<u64, f64> = events
        .iter()
        .filter(|e| e["event"] == "invoke")
        .map(|e| (e["op"].as_u64().unwrap(), e["t_ms"].as_f64().unwrap()))
        .collect();
    events
        .iter()
        .filter(|e| e["event"] == "complete")
        .map(|e| {
            let at = invoked[&e["op"].as_u64().unwrap()];
            (at, e["t_ms"].as_f64().unwrap() - at, e["outcome"].as_str().unwrap().to_string())
        })
        .collect()
}

fn p50(mut v: Vec<f64>) -> f64 {
    assert!(!v.is_empty());
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn fault(r: &Run) -> &Value {
    &r.trials()[0]["faults"][0]
}

#[test]
fn latency_on_the_client_link_adds_100ms_while_it_lasts() {
    let r = run(&scenario("proxy-latency.toml"), &["--seed", "21"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout(), r.stderr());
    let (from, to) = (fault(&r)["injected_at_ms"].as_f64().unwrap(), fault(&r)["healed_at_ms"].as_f64().unwrap());
    let ops = ops(&r);
    let latency = |lo: f64, hi: f64| p50(ops.iter().filter(|(at, ..)| *at > lo && *at < hi).map(|o| o.1).collect());
    let before = latency(0.0, from);
    // Ops begun just before the fault, or just before the heal, straddle it.
    let during = latency(from + 150.0, to - 150.0);
    let after = latency(to + 150.0, f64::MAX);
    assert!((during - before - 100.0).abs() <= 10.0, "p50 before {before:.2} ms, during {during:.2} ms");
    assert!((after - before).abs() <= 5.0, "p50 before {before:.2} ms, after {after:.2} ms");
    assert!(ops.iter().all(|o| o.2 == "ok"), "latency alone fails no op");
}

#[test]
fn a_2s_blackhole_fails_the_ops_inside_it_and_recovers_at_the_heal_losing_nothing() {
    let r = run(&scenario("proxy-blackhole.toml"), &["--seed", "22"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout(), r.stderr());
    let t = &r.trials()[0];
    let (from, to) = (fault(&r)["injected_at_ms"].as_f64().unwrap(), fault(&r)["healed_at_ms"].as_f64().unwrap());
    assert!((to - from - 2000.0).abs() < 50.0);
    // An op sent inside the blackhole has no answer within its 500 ms
    // timeout, unless it was sent in the last 500 ms and the heal came first.
    let inside: Vec<_> = ops(&r).into_iter().filter(|(at, ..)| *at > from + 1.0 && *at < to - 500.0).collect();
    assert!(inside.len() > 100, "only {} ops inside the blackhole", inside.len());
    assert!(inside.iter().all(|o| o.2 != "ok"), "an op inside the blackhole succeeded");
    let from_heal = fault(&r)["rto_from_heal_ms"].as_f64().unwrap();
    assert!(from_heal <= 200.0, "healthy {from_heal} ms after the heal");
    let rto = t["rto_ms"].as_f64().unwrap();
    assert!(rto >= 2000.0, "recovered ({rto} ms) before the blackhole was healed");
    assert_eq!(t["rpo"]["lost_acked"].as_u64(), Some(0));
    assert!(fault(&r)["ttd_ms"].as_f64().unwrap() <= 120.0, "the probe saw the outage within its timeout");
}
