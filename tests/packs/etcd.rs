//! The etcd pack (scenarios/etcd/): three members of Debian's etcd-server
//! in network namespaces, written through the `http` workload against the
//! JSON gateway, each fault's target chosen when it is due (the leader, or
//! a follower) by the pack's member.py.

use crate::common;

use common::{available, netns_available, run, scenario, which, Run};
use serde_json::Value;

fn etcd_available() -> bool {
    available("etcd", which("etcd"), "the etcd pack runs Debian's etcd-server")
        && netns_available()
        && available("python3", which("python3"), "the pack's member.py chooses the fault's target")
}

fn pack(name: &str) -> Run {
    let r = run(&scenario(&format!("etcd/{name}.toml")), &["--seed", "13"]);
    assert_eq!(r.code, 0, "{name}: {}\n{}", r.stdout(), r.stderr());
    assert_eq!(r.trials().len(), 5, "{name}");
    for t in r.trials() {
        common::assert_the_workload_ran(name, t);
        assert_eq!(t.rpo.lost_acked, Some(0), "{name}, trial {}", t.index);
        // A stop that outlasted its stop_timeout is warned of.
        assert!(t.warnings.is_empty(), "{name}, trial {}: {:?}", t.index, t.warnings);
        let detail = &t.faults[0].detail;
        assert!(detail.starts_with("target chosen by `python3 member.py"), "{detail}");
        assert!(t.faults[0].target != "e1", "{name}: the workload's own member was hit: {detail}");
    }
    r
}

/// From the fault to the first acknowledgement of a write sent after it:
/// how long writes through e1 stopped. (Its acknowledgement, not its
/// sending: a write sent during the outage waits in e1 for a leader. And
/// one sent after the fault: a write in flight may have been committed by
/// the old leader just before it died.)
fn writes_stopped_ms(events: &[Value]) -> f64 {
    let at = |e: &Value| e["t_ms"].as_f64().unwrap();
    let fault = events.iter().find(|e| e["event"] == "fault_injected").map(at).expect("the fault");
    let sent_after: std::collections::HashSet<u64> =
        events.iter().filter(|e| e["event"] == "invoke" && at(e) > fault).map(|e| e["op"].as_u64().unwrap()).collect();
    let acked = events.iter().filter(|e| e["event"] == "complete" && e["outcome"] == "ok");
    let first = acked.filter(|e| sent_after.contains(&e["op"].as_u64().unwrap())).map(at).fold(f64::INFINITY, f64::min);
    let last_sent = events.iter().filter(|e| e["event"] == "invoke").map(at).fold(0.0, f64::max);
    assert!(
        first.is_finite(),
        "no write sent after the fault (at {fault:.0} ms, chooser included) was acknowledged before the workload \
         ended (last write sent at {last_sent:.0} ms)"
    );
    first - fault
}

/// The longest a failover may take here: two randomized election timeouts
/// (a split vote between the two members left), each at most twice the
/// setting of 1000 ms, plus a heartbeat (100 ms). Seen in CI: 2528 and
/// 3249 ms (the scenario's own gate is this bound, not a tighter one).
const ELECTIONS: f64 = 2.0 * 2000.0 + 100.0;
/// How long the loss scenarios drop packets.
const LOSS: f64 = 3000.0;

fn table_line(name: &str, r: &Run) {
    let s = &r.report().summary;
    let n = |v: Option<f64>| v.unwrap_or(f64::NAN);
    let stopped: Vec<String> = (0..5).map(|i| format!("{:.0}", writes_stopped_ms(&r.history(i)))).collect();
    eprintln!(
        "{name:<16} rto p50 {:>7.1} p95 {:>7.1} ms  lost max {:>3.0}  writes stopped (ms): {}",
        n(s.rto_ms.p50),
        n(s.rto_ms.p95),
        n(s.lost_acked.max),
        stopped.join(" ")
    );
}

#[test]
fn the_etcd_cluster_fails_over_as_raft_says() {
    if !etcd_available() {
        return;
    }
    let _serial = common::serial();

    // A follower down: the leader and the other follower are a majority.
    let r = pack("kill-follower");
    for t in r.trials() {
        assert_eq!(t.errors_during_fault, Some(0.0), "trial {}: writes failed while a follower was down", t.index);
    }
    table_line("kill-follower", &r);

    // The leader down: no write until the others elect one, after the
    // election timeout (1000 ms from the last heartbeat, randomized up to
    // twice that by etcd); the killed member restarts at once and is
    // healthy when it knows the new leader. Two members left can split
    // their votes once (both candidates at once): then a second timeout.
    let r = pack("kill-leader");
    for t in r.trials() {
        let rto = t.rto_ms.unwrap();
        assert!((900.0..=ELECTIONS).contains(&rto), "trial {}: RTO {rto} ms, not an election's", t.index);
        let stopped = writes_stopped_ms(&r.history(t.index as u64));
        assert!((900.0..=ELECTIONS).contains(&stopped), "trial {}: writes stopped {stopped} ms", t.index);
    }
    table_line("kill-leader", &r);

    // The leader cut off for 3 s: the majority elects another within an
    // election timeout plus a heartbeat (a split vote: a second timeout);
    // the old leader rejoins after the heal.
    let r = pack("isolate-leader");
    for t in r.trials() {
        let stopped = writes_stopped_ms(&r.history(t.index as u64));
        assert!((900.0..=ELECTIONS).contains(&stopped), "trial {}: writes stopped {stopped} ms", t.index);
        let healed = t.faults[0].healed_at_ms.expect("the partition healed");
        let rejoined = t.faults[0].injected_at_ms + t.rto_ms.unwrap();
        assert!(rejoined > healed, "trial {}: the isolated leader was healthy before the heal", t.index);
    }
    table_line("isolate-leader", &r);
}

/// Packet loss (iptables `statistic` in the member's namespace): 30% of a
/// follower's packets dropped for 3 s changes nothing for the writes, and
/// 30% of the leader's either leaves it leading (TCP retransmits the
/// heartbeats, writes slow down) or costs an election, which stops writes
/// for as long as one takes. Nothing acknowledged is lost either way.
#[test]
fn packet_loss_on_a_follower_changes_nothing_and_on_the_leader_costs_at_most_an_election() {
    if !etcd_available() {
        return;
    }
    let _serial = common::serial();
    let r = pack("loss-follower");
    for t in r.trials() {
        assert!(t.faults[0].detail.contains("30.0% of e"), "{}", t.faults[0].detail);
        let errors = t.errors_during_fault.expect("writes were sent under the loss");
        assert!(errors <= 1.0, "trial {}: {errors}% of the writes failed under a follower's loss", t.index);
    }
    table_line("loss-follower", &r);

    let r = pack("loss-leader");
    let mut elections = 0;
    for t in r.trials() {
        let stopped = writes_stopped_ms(&r.history(t.index as u64));
        // Under 900 ms no election can have happened (a follower waits an
        // election timeout of silence first); past it, one may have. The
        // silence that starts one can come at any time within the 3 s of
        // loss (TCP's retransmissions back off: 0.2, 0.4, 0.8 s...), so
        // writes may stop from the fault until an election begun as late
        // as the heal has ended (CI: 5133 ms once, where an election
        // counted from the fault's start bounds it at 5100).
        if stopped >= 900.0 {
            elections += 1;
            assert!(stopped <= LOSS + ELECTIONS, "trial {}: writes stopped {stopped} ms", t.index);
        }
    }
    eprintln!("loss-leader: an election in {elections} of 5 trials");
    table_line("loss-leader", &r);
}
