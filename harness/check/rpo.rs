//! Recovery point: which acknowledged writes the recovered store lost.
//!
//! - lost: acknowledged, absent from the read-back;
//! - corrupted: present with a value other than the one written;
//! - phantom: present but never written, or written with a definite failure;
//! - window: `t_fault - t_ack` of the oldest lost write, against the first
//!   fault after its acknowledgement; a write acknowledged while the last
//!   fault was taking effect (e.g. during a graceful stop) counts 0, and
//!   without any fault the read-back stands in for it;
//! - unknown writes: no answer; whether they survive says nothing.

// foldhash rather than std's SipHash: keys are the workload's own, not an
// attacker's, and hashing them was a tenth of `analyze` at a million ops.
use foldhash::{HashMap, HashMapExt};

use crate::history::{Event, EventKind, Outcome};
use crate::reports::Rpo;

/// What was written under a key, and how and when the write ended.
type Written<'a> = (&'a str, Option<(Outcome, f64)>);

pub fn rpo(events: &[Event]) -> Rpo {
    let mut written: HashMap<&str, Written> = HashMap::with_capacity(events.len() / 2);
    let mut key_of_op: HashMap<u64, &str> = HashMap::with_capacity(events.len() / 2);
    let mut read_back: Option<(f64, HashMap<&str, &str>)> = None;
    let mut fault_times = Vec::new();
    for e in events {
        match &e.kind {
            EventKind::Invoke { op, key, value } => {
                written.insert(key, (value, None));
                key_of_op.insert(*op, key);
            }
            EventKind::Complete { op, outcome, .. } => {
                if let Some(w) = key_of_op.get(op).and_then(|k| written.get_mut(k)) {
                    w.1 = Some((*outcome, e.t_ms));
                }
            }
            EventKind::ReadBack { items, .. } => {
                read_back = Some((e.t_ms, items.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()));
            }
            EventKind::FaultInjected { .. } => fault_times.push(e.t_ms),
            _ => {}
        }
    }
    let acked = written.values().filter(|w| matches!(w.1, Some((Outcome::Ok, _)))).count() as u64;
    let unknown = written.values().filter(|w| !matches!(w.1, Some((Outcome::Ok | Outcome::Fail, _)))).count() as u64;
    let mut rpo = Rpo { acked_writes: acked, unknown_writes: unknown, ..Rpo::default() };
    let Some((read_at, store)) = read_back else {
        return rpo;
    };

    let mut lost = 0;
    let mut window: Option<f64> = None;
    let mut corrupted = 0;
    for (key, (value, outcome)) in &written {
        match (store.get(key), outcome) {
            (None, Some((Outcome::Ok, t_ack))) => {
                lost += 1;
                let fault =
                    fault_times.iter().copied().find(|t| t >= t_ack).or(fault_times.last().copied()).unwrap_or(read_at);
                let w = (fault - t_ack).max(0.0);
                window = Some(window.map_or(w, |old: f64| old.max(w)));
            }
            (Some(found), _) if found != value => corrupted += 1,
            _ => {}
        }
    }
    let phantom = store
        .keys()
        .filter(|k| match written.get(*k) {
            None => true,
            Some((_, outcome)) => matches!(outcome, Some((Outcome::Fail, _))),
        })
        .count() as u64;
    rpo.read_back = true;
    rpo.lost_acked = Some(lost);
    rpo.window_ms = Some(window.unwrap_or(0.0));
    rpo.corrupted = Some(corrupted);
    rpo.phantom = Some(phantom);
    rpo
}

#[cfg(test)]
mod tests {
    use super::*;

    // The checker knows nothing of the workload's formats: any distinct
    // keys and values do.
    fn key_of(seq: u64) -> String {
        format!("k{seq}")
    }

    fn value_of(key: &str, seq: u64) -> String {
        format!("{key}={seq}")
    }

    fn ev(t_ms: f64, kind: EventKind) -> Event {
        Event { trial: 0, t_ms, kind }
    }

    fn write(events: &mut Vec<Event>, seq: u64, t: f64, outcome: Outcome) {
        let key = key_of(seq);
        events.push(ev(t, EventKind::Invoke { op: seq, value: value_of(&key, seq), key }));
        events.push(ev(t + 1.0, EventKind::Complete { op: seq, outcome, error: None }));
    }

    #[test]
    fn counts_lost_corrupted_phantom_and_the_window() {
        let mut events = Vec::new();
        for seq in 0..10 {
            write(&mut events, seq, seq as f64 * 100.0, Outcome::Ok);
        }
        write(&mut events, 10, 1000.0, Outcome::Unknown);
        write(&mut events, 11, 1000.0, Outcome::Fail);
        events.push(ev(
            1050.0,
            EventKind::FaultInjected {
                fault: 0,
                kind: crate::kinds::FaultName::Kill,
                target: "kv".into(),
                scheduled_ms: 1050.0,
                detail: String::new(),
                uncertainty_ms: None,
            },
        ));
        // Survivors: 0..=6 intact except 3 corrupted; 7, 8, 9 lost; 11 phantom; 10 unknown absent.
        let mut items: Vec<(String, String)> = (0..7).map(|s| (key_of(s), value_of(&key_of(s), s))).collect();
        items[3].1 = "garbage".into();
        items.push((key_of(11), value_of(&key_of(11), 11)));
        items.push(("stranger".into(), "x".into()));
        events.push(ev(2000.0, EventKind::ReadBack { target: "kv".into(), items }));
        let r = rpo(&events);
        assert_eq!(r.acked_writes, 10);
        assert_eq!(r.unknown_writes, 1);
        assert_eq!(r.lost_acked, Some(3));
        assert_eq!(r.corrupted, Some(1));
        assert_eq!(r.phantom, Some(2));
        // Oldest lost write, seq 7, was acknowledged at 701 ms.
        assert_eq!(r.window_ms, Some(1050.0 - 701.0));
    }

    #[test]
    fn without_a_read_back_the_loss_is_unknown() {
        let mut events = Vec::new();
        write(&mut events, 0, 0.0, Outcome::Ok);
        let r = rpo(&events);
        assert_eq!((r.acked_writes, r.lost_acked, r.read_back), (1, None, false));
    }

    #[test]
    fn a_write_acknowledged_while_the_fault_took_effect_has_a_zero_window() {
        let fault = |t: f64| {
            ev(
                t,
                EventKind::FaultInjected {
                    fault: 0,
                    kind: crate::kinds::FaultName::Corrupt,
                    target: "kv".into(),
                    scheduled_ms: t,
                    detail: String::new(),
                    uncertainty_ms: None,
                },
            )
        };
        let mut events = vec![fault(100.0)];
        // Invoked at 99.5 ms, acknowledged at 100.5 ms, during the graceful
        // stop that the fault began: lost, but not 1.9 s before the read-back.
        write(&mut events, 0, 99.5, Outcome::Ok);
        events.push(ev(2000.0, EventKind::ReadBack { target: "kv".into(), items: Vec::new() }));
        let r = rpo(&events);
        assert_eq!((r.lost_acked, r.window_ms), (Some(1), Some(0.0)));
    }
}
