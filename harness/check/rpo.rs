//! Recovery point: which acknowledged writes the recovered store lost.
//!
//! - lost: acknowledged, absent from the read-back;
//! - corrupted: present with a value other than the one written;
//! - phantom: present but never written, or written with a definite failure;
//! - window: `t_fault - t_ack` of the oldest lost write, against the first
//!   fault after its acknowledgement; a write acknowledged while the last
//!   fault was taking effect (e.g. during a graceful stop) counts 0, and
//!   without any fault the read-back stands in for it;
//! - unknown writes: no answer; whether they survive says nothing;
//! - a key written more than once is judged by its latest write (the one
//!   sent last) and that write's own answer.

use std::hash::BuildHasher;

// foldhash rather than std's SipHash: keys are the workload's own, not an
// attacker's, and hashing them was a tenth of `analyze` at a million ops.
use foldhash::HashSet;
use hashbrown::hash_table::{Entry, HashTable};

use crate::history::{EventKind, Op, Outcome, TrialHistory};
use crate::reports::Rpo;

/// What became of a write: the store held its value, another, or nothing
/// under its key; or a later write under the same key superseded it.
#[derive(Clone, Copy, PartialEq)]
enum Found {
    Absent,
    Written,
    Other,
    Superseded,
}

pub fn rpo(trial: &TrialHistory) -> Rpo {
    // The latest write under each key (the op sent last), by its place in
    // the trial's ops: the key is the op's, not held again. What is known
    // of each op is kept by its place too, and read in that order: the
    // table's own order would jump through the ops at random.
    let state = foldhash::fast::FixedState::default();
    let hash = |key: &str| state.hash_one(key);
    let key_of = |i: u32| trial.written(&trial.ops[i as usize]).0;
    let mut found = vec![Found::Absent; trial.ops.len()];
    let mut latest: HashTable<u32> = HashTable::with_capacity(trial.ops.len());
    for (i, op) in trial.ops.iter().enumerate() {
        let key = trial.written(op).0;
        match latest.entry(hash(key), |&j| key_of(j) == key, |&j| hash(key_of(j))) {
            Entry::Occupied(mut place) => {
                found[std::mem::replace(place.get_mut(), i as u32) as usize] = Found::Superseded
            }
            Entry::Vacant(place) => {
                place.insert(i as u32);
            }
        }
    }
    let acked = writes(trial, &found).filter(|(op, _)| matches!(op.completed, Some((Outcome::Ok, _)))).count();
    let unknown =
        writes(trial, &found).filter(|(op, _)| !matches!(op.completed, Some((Outcome::Ok | Outcome::Fail, _))));
    let unknown = unknown.count();
    let mut rpo = Rpo { acked_writes: acked as u64, unknown_writes: unknown as u64, ..Rpo::default() };
    // The last read-back is the store's.
    let Some(read) = trial.read_backs.last() else {
        return rpo;
    };

    // What the store holds under each written key (its last item under
    // that key), and the keys it holds that were never written.
    let mut strangers = HashSet::default();
    for (key, value) in read.items() {
        match latest.find(hash(key), |&j| key_of(j) == key) {
            Some(&i) => {
                let written = trial.written(&trial.ops[i as usize]).1 == value;
                found[i as usize] = if written { Found::Written } else { Found::Other };
            }
            None => {
                strangers.insert(key);
            }
        }
    }
    drop(latest);
    let fault_times: Vec<f64> =
        trial.events.iter().filter(|e| matches!(e.kind, EventKind::FaultInjected { .. })).map(|e| e.t_ms).collect();
    let (mut lost, mut corrupted, mut phantom) = (0, 0, strangers.len() as u64);
    let mut window: Option<f64> = None;
    for (op, found) in writes(trial, &found) {
        match (found, op.completed) {
            (Found::Absent, Some((Outcome::Ok, t_ack))) => {
                lost += 1;
                let fault = fault_times
                    .iter()
                    .copied()
                    .find(|t| *t >= t_ack)
                    .or(fault_times.last().copied())
                    .unwrap_or(read.t_ms);
                let w = (fault - t_ack).max(0.0);
                window = Some(window.map_or(w, |old: f64| old.max(w)));
            }
            (Found::Absent, _) => {}
            (found, outcome) => {
                corrupted += u64::from(*found == Found::Other);
                // Present, though its write definitely failed.
                phantom += u64::from(matches!(outcome, Some((Outcome::Fail, _))));
            }
        }
    }
    rpo.read_back = true;
    rpo.lost_acked = Some(lost);
    rpo.window_ms = Some(window.unwrap_or(0.0));
    rpo.corrupted = Some(corrupted);
    rpo.phantom = Some(phantom);
    rpo
}

/// Each op not superseded, with what became of it, in the order sent.
fn writes<'a>(trial: &'a TrialHistory, found: &'a [Found]) -> impl Iterator<Item = (&'a Op, &'a Found)> {
    trial.ops.iter().zip(found).filter(|(_, found)| **found != Found::Superseded)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Event;

    fn rpo(events: &[Event]) -> Rpo {
        super::rpo(&TrialHistory::from_events(events.iter().cloned()).unwrap())
    }

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

    #[test]
    fn a_key_the_store_lists_twice_is_judged_by_its_last_item_and_counted_once() {
        let mut events = Vec::new();
        write(&mut events, 0, 0.0, Outcome::Ok);
        write(&mut events, 1, 10.0, Outcome::Fail);
        let item = |k: &str, v: &str| (k.to_string(), v.to_string());
        let (k0, v0, k1, v1) = (key_of(0), value_of(&key_of(0), 0), key_of(1), value_of(&key_of(1), 1));
        let items =
            vec![item(&k0, "old"), item(&k0, &v0), item(&k1, &v1), item(&k1, &v1), item("s", "x"), item("s", "y")];
        events.push(ev(100.0, EventKind::ReadBack { target: "kv".into(), items }));
        let r = rpo(&events);
        assert_eq!((r.lost_acked, r.corrupted, r.phantom), (Some(0), Some(0), Some(2)));
    }

    #[test]
    fn a_key_written_again_is_judged_by_its_latest_write_and_that_writes_answer() {
        let mut events = Vec::new();
        let key = key_of(0);
        events.push(ev(0.0, EventKind::Invoke { op: 0, key: key.clone(), value: "first".into() }));
        events.push(ev(1.0, EventKind::Invoke { op: 1, key: key.clone(), value: "second".into() }));
        // The first write's acknowledgement is not the second's: the second
        // had no answer.
        events.push(ev(2.0, EventKind::Complete { op: 0, outcome: Outcome::Ok, error: None }));
        events.push(ev(100.0, EventKind::ReadBack { target: "kv".into(), items: Vec::new() }));
        let r = rpo(&events);
        assert_eq!((r.acked_writes, r.unknown_writes, r.lost_acked), (0, 1, Some(0)));
    }
}
