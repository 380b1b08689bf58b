//! Events and the history they make: every fault, op, probe sample and
//! target state change of a trial, on one monotonic timeline.
//!
//! Components timestamp an event where it happens (an [`Instant`]) and hand
//! it to the [`Recorder`]; the trial's origin (the moment the workload starts,
//! which is `0 ms` of the scenario's timeline) is fixed later, so events from
//! the start-up of targets carry negative times.

use std::fs::OpenOptions;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::kinds::{FaultName, StepName};

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

/// Collects one trial's events from every thread.
#[derive(Clone)]
pub struct Recorder {
    trial: u32,
    events: Arc<Mutex<Vec<(Instant, EventKind)>>>,
    /// How often each warning was given: a repeat is counted, not recorded
    /// again (a target that cannot be spawned fails every 100 ms).
    warned: Arc<Mutex<std::collections::HashMap<String, u32>>>,
    /// Where events go instead, as they happen (an agent sends them to the
    /// control node).
    forward: Option<Forward>,
}

/// Receives each event as it is recorded.
pub type Forward = Arc<dyn Fn(Instant, EventKind) + Send + Sync>;

impl Recorder {
    pub fn new(trial: u32) -> Self {
        Recorder {
            trial,
            events: Arc::new(Mutex::new(Vec::with_capacity(1 << 14))),
            warned: Arc::default(),
            forward: None,
        }
    }

    /// A recorder that keeps nothing: each event goes to `forward`.
    pub fn forwarding(trial: u32, forward: Forward) -> Self {
        Recorder { trial, events: Arc::default(), warned: Arc::default(), forward: Some(forward) }
    }

    /// Records an event that happens now.
    /// Whether an event `is` picks was recorded at or after `since`; none
    /// when events are forwarded (an agent's) and not kept here.
    pub fn saw_since(&self, since: Instant, is: impl Fn(&EventKind) -> bool) -> Option<bool> {
        if self.forward.is_some() {
            return None;
        }
        Some(self.events.lock().unwrap().iter().any(|(at, kind)| *at >= since && is(kind)))
    }

    pub fn record(&self, kind: EventKind) {
        self.record_at(Instant::now(), kind);
    }

    /// When the latest event `is` picks was recorded (`None`: none was, or
    /// the events go elsewhere, as an agent's do).
    pub fn last_at(&self, is: impl Fn(&EventKind) -> bool) -> Option<Instant> {
        if self.forward.is_some() {
            return None;
        }
        self.events.lock().unwrap().iter().rev().find(|(_, kind)| is(kind)).map(|(at, _)| *at)
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
        match &self.forward {
            Some(forward) => forward(at, kind),
            None => self.events.lock().unwrap().push((at, kind)),
        }
    }

    /// The trial's events, in time order, relative to `origin`.
    pub fn finish(&self, origin: Instant) -> Vec<Event> {
        let mut raw = std::mem::take(&mut *self.events.lock().unwrap());
        raw.sort_by_key(|(at, _)| *at);
        let warned = self.warned.lock().unwrap();
        for (_, kind) in &mut raw {
            if let EventKind::Warning { message } = kind {
                if let Some(n) = warned.get(message.as_str()).filter(|n| **n > 1) {
                    *message = format!("{message} ({n} times)");
                }
            }
        }
        raw.into_iter()
            .map(|(at, kind)| {
                let t_ms = if at >= origin {
                    (at - origin).as_secs_f64() * 1000.0
                } else {
                    -((origin - at).as_secs_f64() * 1000.0)
                };
                Event { trial: self.trial, t_ms, kind }
            })
            .collect()
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

/// Reads a history file back, grouped by trial in trial order.
pub fn load(path: &Path) -> io::Result<Vec<Vec<Event>>> {
    let file = std::fs::File::open(path)?;
    let mut trials: Vec<Vec<Event>> = Vec::new();
    for (n, line) in BufReader::new(file).lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let event: Event = serde_json::from_str(&line)
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
            .into_iter()
            .filter_map(|e| match e.kind {
                EventKind::Warning { message } => Some(message),
                _ => None,
            })
            .collect();
        assert_eq!(warnings, ["cannot start `kv` (3 times)", "a hook failed"]);
    }
}
