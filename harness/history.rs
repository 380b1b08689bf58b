//! Events and the history they make: every fault, op, probe sample and
//! target state change of a trial, on one monotonic timeline.
//!
//! Components timestamp an event where it happens (an [`Instant`]) and hand
//! it to the [`Recorder`]; the trial's origin (the moment the workload starts,
//! which is `0 ms` of the scenario's timeline) is fixed later, so events from
//! the start-up of targets carry negative times.

use std::borrow::Cow;
use std::fs::OpenOptions;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::kinds::{FaultName, StepName};

mod spool;
mod trial;

use spool::Spool;
pub use spool::{complete_left_spool, FLUSH_EVERY};
pub use trial::{Op, ReadBack, TrialHistory};

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

    /// The trial's history, in time order, relative to `origin`; a spooled
    /// recorder has appended it to the run's history file.
    pub fn finish(&self, origin: Instant) -> io::Result<TrialHistory> {
        let Some(spool) = &self.spool else {
            let mut raw = std::mem::take(&mut *self.events.lock().unwrap());
            raw.sort_by_key(|(at, _)| *at);
            self.count_warnings(&mut raw);
            let trial = self.trial;
            return TrialHistory::from_events(raw.into_iter().map(|(at, kind)| Event {
                trial,
                t_ms: ms_since(origin, at),
                kind,
            }));
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

/// Text read from a line, borrowed from it unless it had to be unescaped.
#[derive(Deserialize)]
struct Text<'a>(#[serde(borrow)] Cow<'a, str>);

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
    event: Text<'a>,
    op: Option<u64>,
    #[serde(borrow)]
    key: Option<Text<'a>>,
    #[serde(borrow)]
    value: Option<Text<'a>>,
    outcome: Option<Outcome>,
    #[serde(borrow)]
    error: Option<Text<'a>>,
    #[serde(borrow)]
    target: Option<Text<'a>>,
    #[serde(borrow)]
    items: Option<&'a RawValue>,
}

/// What a bulk line holds, if it has exactly the fields of its kind.
enum Bulk<'a> {
    Invoke { op: u64, key: Cow<'a, str>, value: Cow<'a, str> },
    Complete { op: u64, outcome: Outcome, error: Option<Cow<'a, str>> },
    ReadBack { target: Cow<'a, str>, items: &'a RawValue },
}

impl<'a> BulkLine<'a> {
    /// The line read by the fast path, if it is an op's or a read-back's;
    /// a line that only looks like one is for the full reader.
    fn parse(line: &'a str) -> Option<(u32, f64, Bulk<'a>)> {
        // Where serde writes the tag: after `trial` and `t_ms`, numbers
        // without a comma. A line in another order is for the full reader.
        fn after_comma(text: &str) -> Option<&str> {
            text.find(',').map(|at| &text[at + 1..])
        }
        let tag = after_comma(after_comma(line)?)?;
        let bulk_tags = [r#""event":"invoke""#, r#""event":"complete""#, r#""event":"read_back""#];
        if !bulk_tags.iter().any(|bulk| tag.starts_with(bulk)) {
            return None;
        }
        let l: BulkLine = serde_json::from_str(line).ok()?;
        let text = |t: Option<Text<'a>>| t.map(|t| t.0);
        let bulk = match (&*l.event.0, l.op, text(l.key), text(l.value), l.outcome, text(l.target), l.items) {
            ("invoke", Some(op), Some(key), Some(value), None, None, None) if l.error.is_none() => {
                Bulk::Invoke { op, key, value }
            }
            ("complete", Some(op), None, None, Some(outcome), None, None) => {
                Bulk::Complete { op, outcome, error: text(l.error) }
            }
            ("read_back", None, None, None, None, Some(target), Some(items)) if l.error.is_none() => {
                Bulk::ReadBack { target, items }
            }
            _ => return None,
        };
        Some((l.trial, l.t_ms, bulk))
    }
}

impl Bulk<'_> {
    fn into_kind(self) -> serde_json::Result<EventKind> {
        Ok(match self {
            Bulk::Invoke { op, key, value } => EventKind::Invoke { op, key: key.into(), value: value.into() },
            Bulk::Complete { op, outcome, error } => EventKind::Complete { op, outcome, error: error.map(Into::into) },
            Bulk::ReadBack { target, items } => {
                EventKind::ReadBack { target: target.into(), items: serde_json::from_str(items.get())? }
            }
        })
    }
}

/// A read-back's `[key, value]` items, found where they are in `line`,
/// with the text of those that had to be unescaped.
struct ItemsIn<'l> {
    line: &'l str,
}

impl<'de> serde::de::DeserializeSeed<'de> for ItemsIn<'_> {
    type Value = (Vec<trial::Item>, String);

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> serde::de::Visitor<'de> for ItemsIn<'_> {
    type Value = (Vec<trial::Item>, String);

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a list of [key, value] pairs")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let (line, mut extra) = (self.line, String::new());
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        // Where a string is: in the line (borrowed from it), or else
        // (unescaped) after it.
        let in_line = |s: &str| {
            let at = (s.as_ptr() as usize).checked_sub(line.as_ptr() as usize)?;
            (at + s.len() <= line.len()).then_some(at)
        };
        let mut place = |text: Cow<str>| match in_line(&text) {
            Some(at) => (at, text.len()),
            None => {
                extra.push_str(&text);
                (line.len() + extra.len() - text.len(), text.len())
            }
        };
        while let Some((key, value)) = seq.next_element::<(Text, Text)>()? {
            items.push(trial::Item::at(place(key.0), place(value.0)).map_err(serde::de::Error::custom)?);
        }
        Ok((items, extra))
    }
}

/// Reads one line of a history.
pub fn parse_line(line: &str) -> serde_json::Result<Event> {
    if let Some((trial, t_ms, bulk)) = BulkLine::parse(line) {
        return Ok(Event { trial, t_ms, kind: bulk.into_kind()? });
    }
    serde_json::from_str(line)
}

/// Reads a history file back, grouped by trial in trial order.
pub fn load(path: &Path) -> io::Result<Vec<Vec<Event>>> {
    let mut trials: Vec<Vec<Event>> = Vec::new();
    for_each_line(path, 0..u64::MAX, |line| {
        let event = parse_line(line)?;
        trial_at(&mut trials, event.trial).push(event);
        Ok(())
    })?;
    Ok(trials)
}

/// Reads a history file back as the checks read it, grouped by trial in
/// trial order: the ops and read-backs go straight into their compact
/// form, never made events. Its two halves are read side by side: reading
/// lines is most of what `analyze` does.
pub fn load_trials(path: &Path) -> io::Result<Vec<TrialHistory>> {
    let size = std::fs::metadata(path)?.len();
    let half = if size < 1 << 20 { size } else { line_start_from(path, size / 2)? };
    let read = |lines: std::ops::Range<u64>| {
        let mut trials: Vec<TrialHistory> = Vec::new();
        for_each_line(path, lines, |line| add_line(line, |n| trial_at(&mut trials, n)).map(drop))?;
        Ok::<_, io::Error>(trials)
    };
    let (first, second) = std::thread::scope(|scope| {
        let second =
            std::thread::Builder::new().name("crashlab-read".into()).spawn_scoped(scope, || read(half..u64::MAX));
        let first = read(0..half);
        // Without a second thread, the second half is read after the first.
        let second = match second {
            Ok(reading) => reading.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            Err(_) => read(half..u64::MAX),
        };
        (first, second)
    });
    let mut trials = first?;
    for (n, later) in second?.into_iter().enumerate() {
        trial_at(&mut trials, n as u32).append(later)?;
    }
    trials.iter_mut().for_each(TrialHistory::close);
    Ok(trials)
}

/// Reads one line of a history (without its newline) into the trial
/// `trial_of` gives for its number; returns that number and the line's
/// time. A read-back takes the line, which holds its items' text.
fn add_line<'t>(line: &mut String, trial_of: impl FnOnce(u32) -> &'t mut TrialHistory) -> io::Result<(u32, f64)> {
    if let Some((n, t_ms, bulk)) = BulkLine::parse(line) {
        // Straight into place, never made an event.
        match bulk {
            Bulk::Invoke { op, key, value } => trial_of(n).invoke(op, t_ms, &key, &value)?,
            Bulk::Complete { op, outcome, .. } => trial_of(n).complete(op, outcome, t_ms),
            Bulk::ReadBack { target, items } => {
                let target = target.into_owned();
                let (found, extra) = {
                    let mut json = serde_json::Deserializer::from_str(items.get());
                    serde::de::DeserializeSeed::deserialize(ItemsIn { line }, &mut json)?
                };
                let read = trial::ReadBack::in_line(t_ms, target, std::mem::take(line), &extra, found);
                trial_of(n).read_backs.push(read);
            }
        }
        return Ok((n, t_ms));
    }
    let event: Event = serde_json::from_str(line)?;
    let (n, t_ms) = (event.trial, event.t_ms);
    trial_of(n).push(event)?;
    Ok((n, t_ms))
}

/// Where the first line that begins at or after `at` begins.
fn line_start_from(path: &Path, at: u64) -> io::Result<u64> {
    let mut file = BufReader::new(std::fs::File::open(path)?);
    file.seek(io::SeekFrom::Start(at.saturating_sub(1)))?;
    let skipped = file.skip_until(b'\n')? as u64;
    Ok(at.saturating_sub(1) + skipped)
}

/// Calls `each` on every line of a history that begins within `lines`
/// (byte offsets, each a line's start or the end) but the blank ones; an
/// error names the file and the line.
fn for_each_line(
    path: &Path,
    lines: std::ops::Range<u64>,
    mut each: impl FnMut(&mut String) -> io::Result<()>,
) -> io::Result<()> {
    let mut reader = BufReader::with_capacity(1 << 16, std::fs::File::open(path)?);
    reader.seek(io::SeekFrom::Start(lines.start))?;
    let (mut line, mut at) = (String::new(), lines.start);
    while at < lines.end {
        line.clear();
        let read = reader.read_line(&mut line)?;
        if read == 0 {
            return Ok(());
        }
        line.truncate(line.trim_end_matches('\n').trim_end_matches('\r').len());
        if !line.trim().is_empty() {
            each(&mut line).map_err(|e| {
                let n = line_number(path, at).map_or_else(|_| format!("byte {at}"), |n| n.to_string());
                io::Error::new(io::ErrorKind::InvalidData, format!("{}:{n}: {e}", path.display()))
            })?;
        }
        at += read as u64;
    }
    Ok(())
}

/// The number of the line that begins at byte `at` (counted only for an
/// error: a part of a history is read without knowing where it began).
fn line_number(path: &Path, at: u64) -> io::Result<u64> {
    let mut before = BufReader::new(std::fs::File::open(path)?).take(at);
    let mut n = 1;
    while before.skip_until(b'\n')? > 0 {
        n += 1;
    }
    Ok(n)
}

/// Trial `i` of `trials`, made (with any before it) if new.
fn trial_at<T: Default>(trials: &mut Vec<T>, i: u32) -> &mut T {
    let i = i as usize;
    if trials.len() <= i {
        trials.resize_with(i + 1, T::default);
    }
    &mut trials[i]
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
            .events
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
            assert_eq!(BulkLine::parse(&line).is_some(), bulk, "read by the fast path: {line}");
        }
        let not_an_invoke = r#"{"trial":0,"t_ms":1.0,"event":"invoke","op":1,"key":"k"}"#;
        assert!(parse_line(not_an_invoke).is_err(), "an invoke without its value is not one");
    }

    #[test]
    fn a_history_loads_compact_as_its_events_would_build_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.jsonl");
        let tricky = "a \"quoted\" \\ value,\n\u{e9}";
        let mut events = Vec::new();
        for trial in [0, 2] {
            let kinds = [
                EventKind::TrialStarted { seed: 1, scheduled_ms: vec![5.0] },
                EventKind::Invoke { op: 0, key: "k0".into(), value: tricky.into() },
                EventKind::Invoke { op: 1, key: tricky.into(), value: "v1".into() },
                EventKind::Complete { op: 1, outcome: Outcome::Ok, error: None },
                EventKind::Complete { op: 0, outcome: Outcome::Unknown, error: Some(tricky.into()) },
                EventKind::ReadBack {
                    target: "kv".into(),
                    items: vec![(tricky.into(), "v1".into()), ("x".into(), "".into())],
                },
                EventKind::TrialEnded { interrupted: false, error: None },
            ];
            events.extend(kinds.into_iter().enumerate().map(|(i, kind)| Event { trial, t_ms: i as f64 - 0.5, kind }));
        }
        append(&path, &events).unwrap();
        let loaded = load_trials(&path).unwrap();
        let built: Vec<TrialHistory> =
            load(&path).unwrap().into_iter().map(|t| TrialHistory::from_events(t).unwrap()).collect();
        assert_eq!(loaded.len(), 3);
        assert!(loaded[1].events.is_empty() && loaded[1].ops.is_empty(), "trial 1 is not in this history");
        for (loaded, built) in loaded.iter().zip(&built) {
            assert_eq!(view(loaded), view(built));
        }
        assert_eq!(loaded[2].written(&loaded[2].ops[1]), (tricky, "v1"));
        assert_eq!(loaded[2].ops[0].completed, Some((Outcome::Unknown, 3.5)));
        assert_eq!(loaded[2].events.len(), 2, "started and ended");

        std::fs::write(
            &path,
            "{\"trial\":0,\"t_ms\":1.0,\"event\":\"read_back\",\"target\":\"kv\",\"items\":[[\"k\"]]}\n",
        )
        .unwrap();
        let error = load_trials(&path).unwrap_err().to_string();
        assert!(error.contains("history.jsonl:1: "), "{error}");
    }

    #[test]
    fn a_history_read_in_two_halves_is_the_history_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.jsonl");
        let mut events = Vec::new();
        // Three trials: the middle one is cut in two.
        for trial in 0..3 {
            let mut t = 0.0;
            let mut at = |kind| {
                t += 0.25;
                Event { trial, t_ms: t, kind }
            };
            events.push(at(EventKind::TrialStarted { seed: 1, scheduled_ms: Vec::new() }));
            // Answers come 50 ops late: some cross from one half to the other.
            for n in 0..20_050u64 {
                if n < 20_000 {
                    events.push(at(EventKind::Invoke { op: n, key: format!("k{n}"), value: format!("v{n}.{trial}") }));
                }
                if n >= 50 {
                    let outcome = if n % 3 == 0 { Outcome::Unknown } else { Outcome::Ok };
                    events.push(at(EventKind::Complete { op: n - 50, outcome, error: None }));
                }
            }
            events.push(at(EventKind::Complete { op: 99_999, outcome: Outcome::Ok, error: None }));
            let items = (0..20_000).map(|n| (format!("k{n}"), format!("v{n}.{trial}"))).collect();
            events.push(at(EventKind::ReadBack { target: "kv".into(), items }));
        }
        append(&path, &events).unwrap();
        assert!(std::fs::metadata(&path).unwrap().len() > 2 << 20, "large enough to be read in halves");
        let halves = load_trials(&path).unwrap();
        let whole: Vec<TrialHistory> =
            load(&path).unwrap().into_iter().map(|t| TrialHistory::from_events(t).unwrap()).collect();
        assert_eq!(halves.len(), 3);
        for (halves, whole) in halves.iter().zip(&whole) {
            assert_eq!(view(halves), view(whole));
            assert_eq!(halves.ops.len(), 20_000);
            assert!(halves.ops.iter().all(|op| op.completed.is_some()), "every answer found its op");
        }

        // A bad line in the second half is named by its number in the file.
        let mut text = std::fs::read_to_string(&path).unwrap();
        let lines = text.lines().count();
        text.push_str("{\"trial\":1,\"t_ms\":1.0,\"event\":\"invoke\",\"op\":1}\n");
        std::fs::write(&path, text).unwrap();
        let error = load_trials(&path).unwrap_err().to_string();
        assert!(error.contains(&format!("history.jsonl:{}: ", lines + 1)), "{error}");
    }

    fn op(op: u64) -> EventKind {
        EventKind::Invoke { op, key: format!("k{op}"), value: format!("v{op}") }
    }

    fn probe(healthy: bool) -> EventKind {
        EventKind::Probe { target: "kv".into(), healthy, latency_ms: 0.1, detail: None }
    }

    /// All a trial's history holds, to compare.
    fn view(t: &TrialHistory) -> String {
        let ops: Vec<_> = t.ops.iter().map(|op| (op.invoked_ms, t.written(op), op.completed)).collect();
        let reads: Vec<_> =
            t.read_backs.iter().map(|r| (r.t_ms, r.target.clone(), r.items().collect::<Vec<_>>())).collect();
        format!("{:?} {ops:?} {reads:?}", t.events)
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

        let trial = recorder.finish(origin).unwrap();
        assert!(!spool.exists());
        let events = lines(&history);
        let held = TrialHistory::from_events(events.clone()).unwrap();
        assert_eq!(view(&held), view(&trial), "what the checks see is what the history holds");
        assert_eq!(trial.ops.len(), 1000);
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
