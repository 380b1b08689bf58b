//! A trial's events written to disk as they happen, so that a killed
//! harness keeps what its trial did up to the last batch, and a running one
//! holds in memory only the events it looks back at, not the ops.
//!
//! A background thread takes the recorded events every [`FLUSH_EVERY`]
//! and appends them to the spool file, in history lines whose times are
//! already the trial's (events before the trial's origin wait for it).
//! Batches are each in time order, but a probe sample is dated at its
//! start and recorded at its end, so lines of the spool may go back in
//! time. At the trial's end, the spool is read back, sorted and appended to
//! the run's history, and removed. A spool left by a killed harness is
//! completed the same way by `crashlab cleanup` ([`complete_left_spool`]).

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{append, Event, EventKind, Pending};

/// How much a killed harness may lose of its trial's end.
pub const FLUSH_EVERY: Duration = Duration::from_millis(20);

pub(super) struct Spool {
    path: PathBuf,
    history: PathBuf,
    shared: Arc<Shared>,
    flusher: Mutex<Option<JoinHandle<()>>>,
}

/// What the spool's thread shares with the recorder.
struct Shared {
    trial: u32,
    origin: OnceLock<Instant>,
    stop: AtomicBool,
    out: Mutex<BufWriter<File>>,
    /// The first write that failed: the trial's history is incomplete.
    failed: Mutex<Option<io::Error>>,
}

impl Spool {
    /// Creates (truncates) the spool file and starts its thread, which
    /// takes the recorder's `pending` events.
    pub fn start(trial: u32, path: PathBuf, history: PathBuf, pending: Pending) -> io::Result<Spool> {
        let file = OpenOptions::new().create(true).write(true).truncate(true).open(&path)?;
        let shared = Arc::new(Shared {
            trial,
            origin: OnceLock::new(),
            stop: AtomicBool::new(false),
            out: Mutex::new(BufWriter::with_capacity(1 << 16, file)),
            failed: Mutex::new(None),
        });
        let thread = Arc::clone(&shared);
        let flusher =
            std::thread::Builder::new().name(format!("crashlab-spool-{trial}")).spawn(move || thread.run(&pending))?;
        Ok(Spool { path, history, shared, flusher: Mutex::new(Some(flusher)) })
    }

    /// Fixes the trial's origin: from now on, events are written.
    pub fn set_origin(&self, origin: Instant) {
        let _ = self.shared.origin.set(origin);
    }

    /// Writes what is left and `last` (the warnings, with their counts),
    /// appends the trial, in time order, to the history, and removes the
    /// spool. Returns the trial's events.
    pub fn finish(
        &self,
        origin: Instant,
        last: Vec<(Instant, EventKind)>,
        pending: &Pending,
    ) -> io::Result<Vec<Event>> {
        self.set_origin(origin);
        self.shared.stop.store(true, Ordering::Release);
        if let Some(flusher) = self.flusher.lock().unwrap().take() {
            flusher.thread().unpark();
            let _ = flusher.join();
        }
        // Whatever the thread had not taken when it stopped.
        self.shared.write(pending, false);
        self.shared.write(&Mutex::new(last), true);
        if let Some(e) = self.shared.failed.lock().unwrap().take() {
            return Err(e);
        }
        let events = complete(&self.path, &self.history, None)?;
        std::fs::remove_file(&self.path)?;
        Ok(events)
    }
}

/// A recorder dropped without finishing (a test's, a bench's) stops its
/// thread, which writes what it has first.
impl Drop for Spool {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(flusher) = self.flusher.get_mut().unwrap().take() {
            flusher.thread().unpark();
        }
    }
}

impl Shared {
    fn run(&self, pending: &Pending) {
        loop {
            let stopping = self.stop.load(Ordering::Acquire);
            self.write(pending, false);
            if stopping {
                return;
            }
            std::thread::park_timeout(FLUSH_EVERY);
        }
    }

    /// Takes every pending event and writes it (none before the origin is
    /// known). Warnings are written only by [`Spool::finish`], with their
    /// counts.
    fn write(&self, pending: &Mutex<Vec<(Instant, EventKind)>>, warnings: bool) {
        let Some(&origin) = self.origin.get() else { return };
        let mut batch = std::mem::take(&mut *pending.lock().unwrap());
        batch.sort_by_key(|(at, _)| *at);
        let mut out = self.out.lock().unwrap();
        let written = batch
            .drain(..)
            .filter(|(_, kind)| warnings || !matches!(kind, EventKind::Warning { .. }))
            .try_for_each(|(at, kind)| {
                let event = Event { trial: self.trial, t_ms: super::ms_since(origin, at), kind };
                serde_json::to_writer(&mut *out, &event)?;
                out.write_all(b"\n")
            })
            // To the kernel at each batch: a killed harness keeps it.
            .and_then(|()| out.flush());
        if let Err(e) = written {
            self.failed.lock().unwrap().get_or_insert(e);
        }
    }
}

/// Completes the spool `crashlab` left in `run_dir` when it was killed, if
/// it left one: the trial's events up to the kill are appended to the
/// history, ended by an interruption that says so, and the spool removed.
/// Returns how many events were kept.
pub fn complete_left_spool(spool: &Path, history: &Path) -> io::Result<Option<usize>> {
    if !spool.exists() {
        return Ok(None);
    }
    let killed = EventKind::TrialEnded { interrupted: true, error: Some("the harness was killed".into()) };
    let events = complete(spool, history, Some(killed))?;
    std::fs::remove_file(spool)?;
    Ok(Some(events.len()))
}

/// Reads a spool, sorts it by time (stably), appends it to `history`, with
/// `end` last when given, and returns its events. A last line cut short
/// (a harness killed while writing it) is left out.
fn complete(spool: &Path, history: &Path, end: Option<EventKind>) -> io::Result<Vec<Event>> {
    let mut events = Vec::new();
    let mut lines = BufReader::new(File::open(spool)?).lines().enumerate().peekable();
    while let Some((n, line)) = lines.next() {
        let line = line?;
        match super::parse_line(&line) {
            Ok(event) => events.push(event),
            Err(_) if lines.peek().is_none() && end.is_some() => break,
            Err(e) => {
                return Err(io::Error::new(io::ErrorKind::InvalidData, format!("{}:{}: {e}", spool.display(), n + 1)))
            }
        }
    }
    sort_by_time(&mut events);
    if let (Some(kind), Some(last)) = (end, events.last()) {
        let (trial, t_ms) = (last.trial, last.t_ms);
        events.push(Event { trial, t_ms, kind });
    }
    append(history, &events)?;
    Ok(events)
}

/// Sorts events by time, keeping the order of equal times, in place: a
/// stable sort's scratch space would be half the trial's events again
/// (~100 bytes an op at the trial's end), the order here 4 bytes an event.
fn sort_by_time(events: &mut [Event]) {
    if events.is_sorted_by(|a, b| a.t_ms <= b.t_ms) {
        return;
    }
    // order[k]: where the event that belongs at k is now.
    let mut order: Vec<u32> = (0..events.len() as u32).collect();
    order.sort_unstable_by(|&a, &b| events[a as usize].t_ms.total_cmp(&events[b as usize].t_ms).then(a.cmp(&b)));
    // Each cycle of the permutation, by swaps; a place done points at itself.
    for start in 0..events.len() {
        let mut at = start;
        loop {
            let from = order[at] as usize;
            order[at] = at as u32;
            if from == start || from == at {
                break;
            }
            events.swap(at, from);
            at = from;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorting_by_time_keeps_the_order_of_equal_times() {
        let few = [5.0, 1.0, 3.0, 1.0, -2.0, 5.0, 0.0, 3.0, 3.0, 9.0, -2.0];
        // Many, with long cycles and many equal times.
        let many: Vec<f64> = (0..5000u64).map(|i| (i * 7919 % 1013) as f64 - 500.0).collect();
        for times in [&few[..], &many] {
            let mut events: Vec<Event> = times
                .iter()
                .enumerate()
                .map(|(i, t)| Event { trial: 0, t_ms: *t, kind: EventKind::Warning { message: i.to_string() } })
                .collect();
            let mut expected = events.clone();
            expected.sort_by(|a, b| a.t_ms.total_cmp(&b.t_ms));
            sort_by_time(&mut events);
            assert_eq!(events, expected);
        }
    }
}
