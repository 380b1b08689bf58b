//! Recovery time: from each fault to the first sustained healthy window.
//!
//! For a fault at `t_f` on target X, using X's probe samples that ended
//! after it (a failed one dated by the start of its attempt, or `t_f` if it
//! began before; a healthy one by its answer):
//! - time-to-detect: the first unhealthy sample at or after `t_f`;
//! - RTO: the start of the first run of `healthy_after` consecutive healthy
//!   samples after that unhealthy one, counting only samples begun after
//!   the fault and after the last failed one began (a slow sample begun
//!   before either may answer after it, and saw the service as it was). If
//!   no sample after `t_f` was
//!   unhealthy, the probe saw no outage, and RTO runs to the first such run
//!   of answers after `t_f` (a sample that waited for a paused service is
//!   dated by its answer, when the service thawed);
//! - restart: the start of X's next incarnation after `t_f`.
//!
//! A fault whose target never shows such a window has RTO `None`. What is
//! first seen after the next fault on the same target (an outage, a
//! restart, the procedure's end) belongs to that fault; if the target is
//! still down when the next fault comes, its window is the one after both.
//!
//! With a recovery procedure, the window also opens no earlier than the end
//! of its last step that acts (not a `wait` or a `check`): recovery is the procedure's
//! result, and a healthy moment before the procedure took the target down
//! is not it.

use crate::history::{Event, EventKind};
use crate::reports::FaultReport;

/// When the recovery procedure's last acting step ended, if it ran.
pub fn procedure_end(events: &[Event]) -> Option<f64> {
    let mut acting = std::collections::HashMap::new();
    let mut end = None;
    for e in events {
        match &e.kind {
            EventKind::RecoverStarted { step, action, .. } => {
                // Waiting and checking do not change the service.
                acting.insert(*step, action.acts());
            }
            EventKind::RecoverEnded { step, .. } if acting.get(step) == Some(&true) => end = Some(e.t_ms),
            _ => {}
        }
    }
    end
}

/// When the first event `is` picks happened at or after `t_f`.
fn first_after(events: &[Event], t_f: f64, is: impl Fn(&EventKind) -> bool) -> Option<f64> {
    events.iter().find(|e| e.t_ms >= t_f && is(&e.kind)).map(|e| e.t_ms)
}

/// `is_setup(i)`: whether the plan's fault `i` only sets up a condition;
/// such a fault gets no RTO of its own (its time to detect and restart are
/// still measured).
pub fn fault_reports(
    events: &[Event],
    healthy_after: impl Fn(&str) -> u32,
    is_setup: impl Fn(usize) -> bool,
) -> Vec<FaultReport> {
    let mut reports: Vec<FaultReport> = Vec::new();
    let procedure_end = procedure_end(events);
    for e in events {
        if let EventKind::FaultInjected { fault, kind, target, scheduled_ms, detail, uncertainty_ms } = &e.kind {
            let t_f = e.t_ms;
            let healed = events.iter().find_map(|h| match &h.kind {
                EventKind::FaultHealed { fault: f, detail, .. } if f == fault => Some((h.t_ms, detail)),
                _ => None,
            });
            let healed_at_ms = healed.map(|(t, _)| t);
            // What the fault did while it was in (operations an `io` fault
            // failed), as its heal tells it.
            let detail = match healed {
                Some((_, said)) if !said.is_empty() => format!("{detail}; healed: {said}"),
                _ => detail.clone(),
            };
            // A failed sample dates the outage from its start (or from the
            // fault, if it began before and failed after it); a healthy one
            // proves health only once its answer came, which matters when
            // the answer waited (a probe started inside a blackhole and
            // answered after the heal).
            let mut samples: Vec<Sample> = events
                .iter()
                .filter_map(|s| match &s.kind {
                    EventKind::Probe { target: t, healthy, latency_ms, .. } if t == target => {
                        let answered = s.t_ms + latency_ms;
                        let began = s.t_ms;
                        match healthy {
                            true if answered >= t_f => Some(Sample { at: answered, ok: true, began }),
                            false if answered >= t_f => Some(Sample { at: began.max(t_f), ok: false, began }),
                            _ => None,
                        }
                    }
                    _ => None,
                })
                .collect();
            samples.sort_by(|a, b| a.at.total_cmp(&b.at));
            // What happens after the next fault on the same target is that
            // fault's doing: an outage, a restart or a procedure seen only
            // then is not this fault's (a pause the probe never noticed is
            // not charged with the recovery from a corruption after it).
            let next = events.iter().find_map(|n| match &n.kind {
                EventKind::FaultInjected { target: t, .. } if t == target && n.t_ms > t_f => Some(n.t_ms),
                _ => None,
            });
            let before_next = |t: f64| next.is_none_or(|next| t < next);
            let first_bad = samples.iter().position(|s| !s.ok && before_next(s.at));
            let ttd_ms = first_bad.map(|i| samples[i].at - t_f);
            // A pod target's next incarnation is its replacement pod, or
            // its container restarted in place, and the cluster says when
            // that is ready.
            let restarted_at = first_after(events, t_f, |k| match k {
                EventKind::TargetStarted { target: t, .. }
                | EventKind::PodCreated { target: t, .. }
                | EventKind::ContainerRestarted { target: t, .. } => t == target,
                _ => false,
            })
            .filter(|t| before_next(*t));
            let ready_at =
                first_after(events, t_f, |k| matches!(k, EventKind::PodReady { target: t, .. } if t == target))
                    .filter(|t| before_next(*t));
            // The window opens after the outage: after the first failed
            // sample, and never before the new incarnation exists (an outage
            // shorter than the probe interval can fall between two samples).
            let opens = first_bad
                .map(|i| samples[i].at)
                .into_iter()
                .chain(restarted_at)
                .chain(procedure_end.filter(|end| *end >= t_f && next.is_none()))
                .reduce(f64::max);
            let window = match opens {
                // No outage seen: healthy from the first answers after the
                // fault (a sample that waited for a frozen service answers
                // only when it thaws).
                None => first_window(&samples, healthy_after(target), f64::NEG_INFINITY),
                // An outage was seen: a healthy answer to a sample begun
                // before the fault may be of the service as it was (its
                // answer late because the probe's own process was, on a
                // loaded machine).
                Some(from) => {
                    let start = samples.iter().position(|s| s.at >= from).unwrap_or(samples.len());
                    first_window(&samples[start..], healthy_after(target), t_f)
                }
            };
            let restart_ms = restarted_at.map(|t| t - t_f);
            let setup = is_setup(*fault);
            let window = window.filter(|_| !setup);
            reports.push(FaultReport {
                kind: kind.to_string(),
                target: target.clone(),
                detail,
                scheduled_at_ms: *scheduled_ms,
                injected_at_ms: t_f,
                injected_uncertainty_ms: *uncertainty_ms,
                healed_at_ms,
                ttd_ms,
                restart_ms,
                ready_ms: ready_at.map(|t| t - t_f),
                rto_ms: window.map(|w| w - t_f),
                rto_from_heal_ms: match (window, healed_at_ms) {
                    (Some(w), Some(h)) => Some((w - h).max(0.0)),
                    _ => None,
                },
                setup,
            });
        }
    }
    reports
}

/// A probe sample as recovery is judged from it.
struct Sample {
    /// A failed sample's start (or the fault's time), a healthy one's answer.
    at: f64,
    ok: bool,
    /// When the attempt began.
    began: f64,
}

/// Start time of the first run of `n` consecutive healthy samples. A
/// healthy sample begun before a failed one began, or before `outage_began`,
/// is no evidence of recovery from that failure: it may have seen the
/// service before it.
fn first_window(samples: &[Sample], n: u32, outage_began: f64) -> Option<f64> {
    let mut streak = 0;
    let mut start = 0.0;
    let mut last_failure_began = outage_began;
    for s in samples {
        if !s.ok {
            streak = 0;
            last_failure_began = last_failure_began.max(s.began);
            continue;
        }
        if s.began < last_failure_began {
            continue;
        }
        if streak == 0 {
            start = s.at;
        }
        streak += 1;
        if streak >= n {
            return Some(start);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(t_ms: f64, kind: EventKind) -> Event {
        Event { trial: 0, t_ms, kind }
    }

    fn probe(t: f64, healthy: bool) -> Event {
        ev(t, EventKind::Probe { target: "kv".into(), healthy, latency_ms: 0.0, detail: None })
    }

    fn fault(t: f64) -> Event {
        ev(
            t,
            EventKind::FaultInjected {
                fault: 0,
                kind: crate::kinds::FaultName::Kill,
                target: "kv".into(),
                scheduled_ms: t,
                detail: String::new(),
                uncertainty_ms: None,
            },
        )
    }

    #[test]
    fn rto_is_the_start_of_the_first_sustained_window() {
        let mut events =
            vec![probe(95.0, true), fault(100.0), probe(100.5, true), probe(105.0, false), probe(110.0, false)];
        // A single healthy blip does not count as recovery with healthy_after = 3.
        events.push(probe(115.0, true));
        events.push(probe(120.0, false));
        events.extend([probe(500.0, true), probe(505.0, true), probe(510.0, true)]);
        events.push(ev(130.0, EventKind::TargetStarted { target: "kv".into(), incarnation: 2, pid: 1 }));
        events.sort_by(|a, b| a.t_ms.total_cmp(&b.t_ms));
        let r = &fault_reports(&events, |_| 3, |_| false)[0];
        assert_eq!(r.ttd_ms, Some(5.0));
        assert_eq!(r.rto_ms, Some(400.0));
        assert_eq!(r.restart_ms, Some(30.0));
    }

    #[test]
    fn an_outage_between_two_samples_still_counts_from_the_restart() {
        let events = vec![
            probe(95.0, true),
            fault(100.0),
            ev(103.0, EventKind::TargetStarted { target: "kv".into(), incarnation: 2, pid: 1 }),
            probe(106.0, true),
            probe(111.0, true),
            probe(116.0, true),
        ];
        let r = &fault_reports(&events, |_| 3, |_| false)[0];
        assert_eq!(r.ttd_ms, None, "the probe never saw the outage");
        assert_eq!(r.rto_ms, Some(6.0));
        assert_eq!(r.restart_ms, Some(3.0));
    }

    #[test]
    fn never_recovered_is_none_and_no_outage_counts_from_the_first_answers() {
        let events = vec![fault(100.0), probe(105.0, false), probe(110.0, true), probe(115.0, true)];
        assert_eq!(fault_reports(&events, |_| 3, |_| false)[0].rto_ms, None);
        let events = vec![fault(100.0), probe(105.0, true), probe(110.0, true), probe(115.0, true)];
        assert_eq!(fault_reports(&events, |_| 3, |_| false)[0].rto_ms, Some(5.0));
        // A pause of 100 ms that samples waited out: healthy once they answered.
        let waited = |t: f64, latency_ms: f64| {
            ev(t, EventKind::Probe { target: "kv".into(), healthy: true, latency_ms, detail: None })
        };
        let events = vec![fault(100.0), waited(101.0, 99.0), waited(121.0, 79.5), probe(205.0, true)];
        assert_eq!(fault_reports(&events, |_| 2, |_| false)[0].rto_ms, Some(100.0));
    }

    #[test]
    fn a_later_faults_outage_is_not_charged_to_an_earlier_one() {
        let kill = |t: f64, fault: usize| {
            ev(
                t,
                EventKind::FaultInjected {
                    fault,
                    kind: crate::kinds::FaultName::Kill,
                    target: "kv".into(),
                    scheduled_ms: t,
                    detail: String::new(),
                    uncertainty_ms: None,
                },
            )
        };
        // A pause at 100 ms that no sample saw, then a kill at 300 ms:
        // down from 305, restarted at 310, healthy from 330.
        let mut events = vec![kill(100.0, 0), probe(150.0, true), probe(200.0, true), kill(300.0, 1)];
        events.extend([probe(305.0, false), probe(320.0, false), probe(330.0, true), probe(340.0, true)]);
        events.push(ev(310.0, EventKind::TargetStarted { target: "kv".into(), incarnation: 2, pid: 1 }));
        events.sort_by(|a, b| a.t_ms.total_cmp(&b.t_ms));
        let r = fault_reports(&events, |_| 2, |_| false);
        assert_eq!((r[0].ttd_ms, r[0].restart_ms, r[0].rto_ms), (None, None, Some(50.0)), "the first saw no outage");
        assert_eq!((r[1].ttd_ms, r[1].restart_ms, r[1].rto_ms), (Some(5.0), Some(10.0), Some(30.0)));
        // Still down when the second came: the first recovers with it.
        let mut events = vec![kill(100.0, 0), probe(150.0, false), kill(300.0, 1), probe(320.0, false)];
        events.extend([probe(330.0, true), probe(340.0, true)]);
        let r = fault_reports(&events, |_| 2, |_| false);
        assert_eq!((r[0].ttd_ms, r[0].rto_ms), (Some(50.0), Some(230.0)));
    }

    #[test]
    fn a_healthy_answer_that_waited_counts_from_when_it_came() {
        // A probe started at 190 ms inside a blackhole, answered when it
        // healed at 300 ms: recovery is at 300 ms, not 190.
        let waited =
            ev(190.0, EventKind::Probe { target: "kv".into(), healthy: true, latency_ms: 110.0, detail: None });
        let events = vec![fault(100.0), probe(105.0, false), probe(150.0, false), waited, probe(305.0, true)];
        let r = &fault_reports(&events, |_| 2, |_| false)[0];
        assert_eq!(r.rto_ms, Some(200.0));
    }

    #[test]
    fn a_slow_healthy_sample_begun_before_a_failure_does_not_prove_recovery_from_it() {
        // Slow probes (PostgreSQL's pg_isready on a loaded machine, 200 ms
        // each): samples begun at 60 and 80 ms, before the outage, answer
        // healthy at 260 and 268 ms, after the failed one begun at 140 ms.
        // They saw the service before it failed; recovery is the pair begun
        // after it, answered at 400 and 420 ms.
        let slow = |t: f64, healthy: bool, latency_ms: f64| {
            ev(t, EventKind::Probe { target: "kv".into(), healthy, latency_ms, detail: None })
        };
        let mut events = vec![slow(60.0, true, 200.0), slow(80.0, true, 188.0), fault(100.0)];
        events.extend([slow(140.0, false, 230.0), slow(200.0, true, 200.0), slow(220.0, true, 200.0)]);
        let r = &fault_reports(&events, |_| 2, |_| false)[0];
        assert_eq!(r.ttd_ms, Some(40.0));
        assert_eq!(r.rto_ms, Some(300.0));
    }

    #[test]
    fn a_healthy_answer_late_after_a_restart_to_a_sample_begun_before_the_kill_is_no_recovery() {
        // A loaded machine (CI; the probes of pg_isready late by seconds):
        // samples begun at 20 and 30 ms saw the service before the kill at
        // 100 ms, and their answers came at 260 and 262 ms, after the
        // restart at 200 ms; the failures begun at 40 and 60 ms are dated
        // at the kill. Recovery is the pair begun after the kill.
        let slow = |t: f64, healthy: bool, latency_ms: f64| {
            ev(t, EventKind::Probe { target: "kv".into(), healthy, latency_ms, detail: None })
        };
        let mut events = vec![slow(20.0, true, 240.0), slow(30.0, true, 232.0), slow(40.0, false, 300.0)];
        let started = EventKind::TargetStarted { target: "kv".into(), incarnation: 2, pid: 1 };
        events.extend([slow(60.0, false, 280.0), fault(100.0), ev(200.0, started)]);
        events.extend([slow(250.0, true, 30.0), slow(260.0, true, 30.0)]);
        let r = &fault_reports(&events, |_| 2, |_| false)[0];
        assert_eq!((r.ttd_ms, r.restart_ms), (Some(0.0), Some(100.0)));
        assert_eq!(r.rto_ms, Some(180.0));
    }

    #[test]
    fn a_sample_in_flight_when_the_fault_hit_detects_it() {
        // Started at 99 ms, timed out at 199 ms: the fault at 100 ms was
        // detected at once, not by the next sample at 199 ms.
        let in_flight =
            ev(99.0, EventKind::Probe { target: "kv".into(), healthy: false, latency_ms: 100.0, detail: None });
        let events = vec![probe(90.0, true), in_flight, fault(100.0), probe(199.0, false), probe(300.0, true)];
        let r = &fault_reports(&events, |_| 1, |_| false)[0];
        assert_eq!(r.ttd_ms, Some(0.0));
        assert_eq!(r.rto_ms, Some(200.0));
    }
}
