//! Events and the history they make: every fault, op, probe sample and
//! target state change of a trial, on one monotonic timeline.
//!
//! Components timestamp an event where it happens (an [`Instant`]) and hand
//! it to the [`Recorder`]; the trial's origin (the moment the workload starts,
//! which is `0 ms` of the scenario's timeline) is fixed later, so events from
//! the start-up of targets carry negative times.

use std::fs::OpenOptions;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::kinds::{FaultName, StepName};

mod spool;

use spool::Spool;
pub use spool::{complete_left_spool, FLUSH_EVERY};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub trial: u32,
    pub t_ms: f64,
    #[serde(flatten)]
    pub kind: EventKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Ok,
    /// Definitely not applied (refused, rejected).
    Fail,
    /// No answer in time, or the connection broke after the request was sent.
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum EventKind {
    TrialStarted {
        seed: u64,
        scheduled_ms: Vec<f64>,
    },
    TargetStarted {
        target: String,
        incarnation: u32,
        pid: i32,
    },
    TargetExited {
        target: String,
        incarnation: u32,
        pid: i32,
        status: String,
    },
    /// Where the probes and the workload reach a container target, and by
    /// which path (`reach`): what the trial's figures measured.
    TargetReached {
        target: String,
        at: String,
        reach: crate::kinds::Reach,
    },
    /// A pod target's pod seen for the first time (a replacement), by the
    /// watch on the cluster's API: the cluster's own signal, beside the
    /// probe's.
    PodCreated {
        target: String,
        pod: String,
        uid: String,
    },
    /// A pod target's pod became ready, as the cluster says (its readiness
    /// probe).
    PodReady {
        target: String,
        pod: String,
        uid: String,
    },
    /// A container of a pod target's pod was restarted by its kubelet (its
    /// restart count went up to `restarts`): the pod's next incarnation.
    ContainerRestarted {
        target: String,
        pod: String,
        uid: String,
        restarts: u32,
    },
    /// A pod target's pod is gone (deleted).
    PodGone {
        target: String,
        pod: String,
        uid: String,
    },
    WorkloadStarted,
    WorkloadEnded,
    FaultInjected {
        fault: usize,
        kind: FaultName,
        target: String,
        scheduled_ms: f64,
        detail: String,
        /// How far off its time may be (a target on a remote host).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        uncertainty_ms: Option<f64>,
    },
    FaultHealed {
        fault: usize,
        target: String,
        /// How healing went, when there is something to say (a damaged
        /// file left as the target rewrote it).
        #[serde(default, skip_serializing_if = "String::is_empty")]
        detail: String,
    },
    /// A fault could not be injected (e.g. its target was down at that moment).
    FaultFailed {
        fault: usize,
        target: String,
        error: String,
    },
    /// A `[[backup]]` copied a target's data dir.
    BackupTaken {
        name: String,
        target: String,
        files: u64,
        bytes: u64,
    },
    BackupFailed {
        name: String,
        target: String,
        error: String,
    },
    /// A step of the recovery procedure began.
    RecoverStarted {
        step: usize,
        action: StepName,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        target: Option<String>,
    },
    RecoverEnded {
        step: usize,
        ok: bool,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        detail: String,
    },
    Probe {
        target: String,
        healthy: bool,
        latency_ms: f64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
    },
    Invoke {
        op: u64,
        key: String,
        value: String,
    },
    Complete {
        op: u64,
        outcome: Outcome,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    ReadBack {
        target: String,
        items: Vec<(String, String)>,
    },
    ReadBackFailed {
        target: String,
        error: String,
    },
    /// Something went wrong that did not stop the trial (a hook failed, a
    /// rule could not be removed): it reaches the reports, not only stderr.
    Warning {
        message: String,
    },
    TargetLog {
        target: String,
        lines: Vec<String>,
    },
    /// An `[abort]` condition fired: every fault heals, the run stops.
    Aborted {
        reason: String,
    },
    TrialEnded {
        interrupted: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
}

impl EventKind {
    /// Whether a trial may look back at it while it runs (has a fault
    /// changed something, when did a target last change): all but the
    /// ops and the bulk (read-back items, log lines), which a spooled
    /// recorder keeps only on disk.
    pub fn looked_back_at(&self) -> bool {
        use EventKind::*;
        !matches!(self, Invoke { .. } | Complete { .. } | ReadBack { .. } | TargetLog { .. })
    }

    /// Whether it changes what a target is (it started or ended, a fault
    /// acted or was healed, a recovery step ran): a recovery is proven by
    /// a sustained healthy window after the latest such event.
    pub fn changes_a_target(&self) -> bool {
        use EventKind::*;
        matches!(
            self,
            TargetStarted { .. }
                | TargetExited { .. }
                | PodCreated { .. }
                | ContainerRestarted { .. }
                | PodGone { .. }
                | FaultInjected { .. }
                | FaultHealed { .. }
                | BackupTaken { .. }
                | RecoverStarted { .. }
                | RecoverEnded { .. }
        )
    }
}

/// Events recorded and not yet handed on, with when they happened.
type Pending = Arc<Mutex<Vec<(Instant, EventKind)>>>;

/// Collects one trial's events from every thread.
#[derive(Clone)]
pub struct Recorder {
    trial: u32,
    /// Every event (kept in memory), or those not yet written (spooled).
    events: Pending,
    /// Spooled: the events the trial looks back at while it runs (see
    /// [`EventKind::looked_back_at`]); the rest are only on disk.
    kept: Pending,
    /// How often each warning was given: a repeat is counted, not recorded
    /// again (a target that cannot be spawned fails every 100 ms).
    warned: Arc<Mutex<std::collections::HashMap<String, u32>>>,
    /// Where events go instead, as they happen (an agent sends them to the
    /// control node).
    forward: Option<Forward>,
    spool: Option<Arc<Spool>>,
}

/// Receives each event as it is recorded.
pub type Forward = Arc<dyn Fn(Instant, EventKind) + Send + Sync>;

impl Recorder {
    /// A recorder that keeps every event in memory.
    pub fn new(trial: u32) -> Self {
        Recorder::holding(trial, Arc::new(Mutex::new(Vec::with_capacity(1 << 14))))
    }

    /// A recorder that writes events to `spool` as they happen, and at
    /// [`finish`](Self::finish) appends the trial to `history`.
    pub fn spooled(trial: u32, spool: PathBuf, history: PathBuf) -> io::Result<Self> {
        let events = Pending::default();
        let spool = Spool::start(trial, spool, history, Arc::clone(&events))?;
        Ok(Recorder { spool: Some(Arc::new(spool)), ..Recorder::holding(trial, events) })
    }

    /// A recorder that keeps nothing: each event goes to `forward`.
    pub fn forwarding(trial: u32, forward: Forward) -> Self {
        Recorder { forward: Some(forward), ..Recorder::holding(trial, Pending::default()) }
    }

    fn holding(trial: u32, events: Pending) -> Self {
        Recorder { trial, events, kept: Pending::default(), warned: Arc::default(), forward: None, spool: None }
    }

    /// The events that queries look back at.
    fn looked_back(&self) -> &Pending {
        if self.spool.is_some() {
            &self.kept
        } else {
            &self.events
        }
    }

    /// Whether an event `is` picks was recorded at or after `since`; none
    /// when events are forwarded (an agent's) and not kept here. `is` sees
    /// only events [`EventKind::looked_back_at`].
    pub fn saw_since(&self, since: Instant, is: impl Fn(&EventKind) -> bool) -> Option<bool> {
        if self.forward.is_some() {
            return None;
        }
        Some(self.looked_back().lock().unwrap().iter().any(|(at, kind)| *at >= since && is(kind)))
    }

    /// Records an event that happens now.
    pub fn record(&self, kind: EventKind) {
        self.record_at(Instant::now(), kind);
    }

    /// When the latest event `is` picks that happened before `before`
    /// happened (`None`: none was recorded, or the events go elsewhere, as
    /// an agent's do). By date, not by the order recorded: an event may be
    /// recorded after it happened (a container's restart, once its start
    /// returned).
    pub fn last_at(&self, before: Instant, is: impl Fn(&EventKind) -> bool) -> Option<Instant> {
        if self.forward.is_some() {
            return None;
        }
        let events = self.looked_back().lock().unwrap();
        events.iter().filter(|(at, kind)| *at < before && is(kind)).map(|(at, _)| *at).max()
    }

    /// A warning: printed at once, and kept in the history for the reports;
    /// the same warning again only counts (`... (N times)` in the history).
    pub fn warn(&self, message: impl Into<String>) {
        let message = message.into();
        let first = {
            let mut warned = self.warned.lock().unwrap();
            let count = warned.entry(message.clone()).or_insert(0);
            *count += 1;
            *count == 1
        };
        if first {
            eprintln!("crashlab: trial {}: {message}", self.trial);
            self.record(EventKind::Warning { message });
        }
    }

    /// Records an event observed at `at` (e.g. the start of a probe attempt).
    pub fn record_at(&self, at: Instant, kind: EventKind) {
        if let Some(forward) = &self.forward {
            return forward(at, kind);
        }
        if self.spool.is_some() && kind.looked_back_at() {
            self.kept.lock().unwrap().push((at, kind.clone()));
        }
        self.events.lock().unwrap().push((at, kind));
    }

    /// Fixes the trial's origin (`0 ms`): a spooled recorder writes events
    /// from then on.
    pub fn set_origin(&self, origin: Instant) {
        if let Some(spool) = &self.spool {
            spool.set_origin(origin);
        }
    }

    /// The trial's events, in time order, relative to `origin`; a spooled
    /// recorder has appended them to the history.
    pub fn finish(&self, origin: Instant) -> io::Result<Vec<Event>> {
        let Some(spool) = &self.spool else {
            let mut raw = std::mem::take(&mut *self.events.lock().unwrap());
            raw.sort_by_key(|(at, _)| *at);
            self.count_warnings(&mut raw);
            return Ok(raw
                .into_iter()
                .map(|(at, kind)| Event { trial: self.trial, t_ms: ms_since(origin, at), kind })
                .collect());
        };
        // The spool writes warnings only now, once their counts are known.
        let mut warnings: Vec<_> = std::mem::take(&mut *self.kept.lock().unwrap())
            .into_iter()
            .filter(|(_, kind)| matches!(kind, EventKind::Warning { .. }))
            .collect();
        self.count_warnings(&mut warnings);
        spool.finish(origin, warnings, &self.events)
    }

    /// `... (N times)` on each warning given more than once.
    fn count_warnings(&self, events: &mut [(Instant, EventKind)]) {
        let warned = self.warned.lock().unwrap();
        for (_, kind) in events {
            if let EventKind::Warning { message } = kind {
                if let Some(n) = warned.get(message.as_str()).filter(|n| **n > 1) {
                    *message = format!("{message} ({n} times)");
                }
            }
        }
    }
}

/// Milliseconds from `origin` to `at`, negative before it.
fn ms_since(origin: Instant, at: Instant) -> f64 {
    if at >= origin {
        (at - origin).as_secs_f64() * 1000.0
    } else {
        -((origin - at).as_secs_f64() * 1000.0)
    }
}

/// Appends events to a JSON Lines history file.
pub fn append(path: &Path, events: &[Event]) -> io::Result<()> {
    let file = OpenOptions::new().create(true).append(true).open(path)?;
    let mut out = BufWriter::new(file);
    for event in events {
        serde_json::to_writer(&mut out, event)?;
        out.write_all(b"\n")?;
    }
    out.flush()
}

/// The fields of the lines most of a history is made of, an op's invoke
/// and complete, and of its largest, the read-back, read straight into
/// place: serde reads an internally tagged, flattened enum (any other
/// line) by buffering all of it twice first, a read-back's million items
/// too.
#[derive(Deserialize)]
struct BulkLine<'a> {
    trial: u32,
    t_ms: f64,
    #[serde(borrow)]
    event: std::borrow::Cow<'a, str>,
    op: Option<u64>,
    key: Option<String>,
    value: Option<String>,
    outcome: Option<Outcome>,
    error: Option<String>,
    target: Option<String>,
    items: Option<Vec<(String, String)>>,
}

impl BulkLine<'_> {
    /// The event, if the line has exactly the fields of its kind.
    fn into_event(self) -> Option<Event> {
        let kind = match (&*self.event, self.op, self.key, self.value, self.outcome, self.target, self.items) {
            ("invoke", Some(op), Some(key), Some(value), None, None, None) if self.error.is_none() => {
                EventKind::Invoke { op, key, value }
            }
            ("complete", Some(op), None, None, Some(outcome), None, None) => {
                EventKind::Complete { op, outcome, error: self.error }
            }
            ("read_back", None, None, None, None, Some(target), Some(items)) if self.error.is_none() => {
                EventKind::ReadBack { target, items }
            }
            _ => return None,
        };
        Some(Event { trial: self.trial, t_ms: self.t_ms, kind })
    }
}

/// Reads one line of a history.
pub fn parse_line(line: &str) -> serde_json::Result<Event> {
    // Where serde writes the tag, after `trial` and `t_ms`; a line that
    // only looks like one of these is read in full below.
    let head = &line.as_bytes()[..line.len().min(64)];
    let tagged = |tag: &[u8]| head.windows(tag.len()).any(|w| w == tag);
    if [&br#""event":"invoke""#[..], br#""event":"complete""#, br#""event":"read_back""#].into_iter().any(tagged) {
        if let Some(event) = serde_json::from_str::<BulkLine>(line).ok().and_then(BulkLine::into_event) {
            return Ok(event);
        }
    }
    serde_json::from_str(line)
}

/// Reads a history file back, grouped by trial in trial order.
pub fn load(path: &Path) -> io::Result<Vec<Vec<Event>>> {
    let file = std::fs::File::open(path)?;
    let mut trials: Vec<Vec<Event>> = Vec::new();
    for (n, line) in BufReader::new(file).lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let event = parse_line(&line)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{}:{}: {e}", path.display(), n + 1)))?;
        let i = event.trial as usize;
        if trials.len() <= i {
            trials.resize_with(i + 1, Vec::new);
        }
        trials[i].push(event);
    }
    Ok(trials)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_warning_is_kept_once_with_its_count() {
        let recorder = Recorder::new(0);
        for _ in 0..3 {
            recorder.warn("cannot start `kv`");
        }
        recorder.warn("a hook failed");
        let warnings: Vec<String> = recorder
            .finish(Instant::now())
            .unwrap()
            .into_iter()
            .filter_map(|e| match e.kind {
                EventKind::Warning { message } => Some(message),
                _ => None,
            })
            .collect();
        assert_eq!(warnings, ["cannot start `kv` (3 times)", "a hook failed"]);
    }

    #[test]
    fn a_line_reads_back_as_it_was_written_by_the_fast_path_or_the_full_one() {
        let tricky = "a \"quoted\" \\ value,\n\u{e9}\u{1F600} \"event\":\"invoke\"";
        let kinds = [
            EventKind::Invoke { op: 7, key: "k7".into(), value: tricky.into() },
            EventKind::Complete { op: 7, outcome: Outcome::Ok, error: None },
            EventKind::Complete { op: 8, outcome: Outcome::Unknown, error: Some(tricky.into()) },
            EventKind::Warning { message: r#""event":"invoke""#.into() },
            EventKind::FaultFailed { fault: 0, target: "kv".into(), error: "op".into() },
            EventKind::ReadBack { target: "kv".into(), items: vec![("k7".into(), tricky.into())] },
            EventKind::ReadBack { target: "kv".into(), items: Vec::new() },
            EventKind::ReadBackFailed { target: "kv".into(), error: "refused".into() },
        ];
        for kind in kinds {
            let bulk =
                matches!(kind, EventKind::Invoke { .. } | EventKind::Complete { .. } | EventKind::ReadBack { .. });
            let event = Event { trial: 2, t_ms: -0.125, kind };
            let line = serde_json::to_string(&event).unwrap();
            assert_eq!(parse_line(&line).unwrap(), event, "{line}");
            let fast = serde_json::from_str::<BulkLine>(&line).ok().and_then(BulkLine::into_event);
            assert_eq!(fast.is_some(), bulk, "read by the fast path: {line}");
        }
        let not_an_invoke = r#"{"trial":0,"t_ms":1.0,"event":"invoke","op":1,"key":"k"}"#;
        assert!(parse_line(not_an_invoke).is_err(), "an invoke without its value is not one");
    }

    fn op(op: u64) -> EventKind {
        EventKind::Invoke { op, key: format!("k{op}"), value: format!("v{op}") }
    }

    fn probe(healthy: bool) -> EventKind {
        EventKind::Probe { target: "kv".into(), healthy, latency_ms: 0.1, detail: None }
    }

    fn lines(path: &Path) -> Vec<Event> {
        load(path).unwrap().into_iter().flatten().collect()
    }

    #[test]
    fn a_spooled_trial_reaches_the_history_in_time_order_and_keeps_only_what_it_looks_back_at() {
        let dir = tempfile::tempdir().unwrap();
        let (spool, history) = (dir.path().join("spool"), dir.path().join("history"));
        let recorder = Recorder::spooled(3, spool.clone(), history.clone()).unwrap();
        let before = Instant::now();
        recorder.record(EventKind::TrialStarted { seed: 1, scheduled_ms: Vec::new() });
        let origin = Instant::now();
        recorder.set_origin(origin);
        for n in 0..1000 {
            recorder.record(op(n));
        }
        recorder.warn("slow");
        recorder.warn("slow");
        // A sample dated at its start, recorded at its end.
        recorder.record_at(origin, probe(false));
        assert_eq!(recorder.saw_since(origin, |k| matches!(k, EventKind::Probe { healthy: false, .. })), Some(true));
        assert_eq!(
            recorder.saw_since(before, |k| matches!(k, EventKind::Invoke { .. })),
            Some(false),
            "ops: on disk only"
        );
        std::thread::sleep(FLUSH_EVERY * 5);
        let written = std::fs::read_to_string(&spool).unwrap();
        assert_eq!(written.lines().count(), 1002, "started, 1000 ops and the probe, on disk while the trial runs");
        assert!(!written.contains("slow"), "a warning waits for its count");

        let events = recorder.finish(origin).unwrap();
        assert!(!spool.exists());
        assert_eq!(lines(&history), events, "what the checks see is what the history holds");
        assert!(events.windows(2).all(|w| w[0].t_ms <= w[1].t_ms), "in time order");
        assert!(events[0].t_ms < 0.0 && matches!(events[0].kind, EventKind::TrialStarted { .. }));
        assert!(matches!(events[1].kind, EventKind::Probe { .. }), "the probe's line moved back to its start");
        let warned: Vec<_> = events.iter().filter(|e| matches!(e.kind, EventKind::Warning { .. })).collect();
        assert_eq!(warned.len(), 1);
        assert!(matches!(&warned[0].kind, EventKind::Warning { message } if message == "slow (2 times)"));
        assert!(events.iter().all(|e| e.trial == 3));
    }

    #[test]
    fn the_spool_of_a_killed_harness_is_completed_without_its_torn_last_line() {
        let dir = tempfile::tempdir().unwrap();
        let (spool, history) = (dir.path().join("spool"), dir.path().join("history"));
        let recorder = Recorder::spooled(0, spool.clone(), history.clone()).unwrap();
        let origin = Instant::now();
        recorder.set_origin(origin);
        recorder.record(op(1));
        recorder.record(op(2));
        std::thread::sleep(FLUSH_EVERY * 5);
        // What a harness killed in the middle of a line leaves.
        let left = dir.path().join("left");
        let mut text = std::fs::read_to_string(&spool).unwrap();
        text.push_str("{\"trial\":0,\"t_ms\":9");
        std::fs::write(&left, text).unwrap();

        assert_eq!(complete_left_spool(&left, &history).unwrap(), Some(3));
        assert!(!left.exists());
        let kept = lines(&history);
        assert_eq!(kept.len(), 3);
        assert!(matches!(kept[1].kind, EventKind::Invoke { op: 2, .. }));
        assert!(matches!(
            &kept[2].kind,
            EventKind::TrialEnded { interrupted: true, error: Some(e) } if e == "the harness was killed"
        ));
        assert_eq!(kept[2].t_ms, kept[1].t_ms, "ended at the last thing known");
        assert_eq!(complete_left_spool(&left, &history).unwrap(), None, "nothing left: nothing to do");
        drop(recorder);
    }
}
