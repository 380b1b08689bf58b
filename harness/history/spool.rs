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
use std::io::{self, BufRead, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{Event, EventKind, Pending, TrialHistory};

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
    /// spool. Returns the trial's history.
    pub fn finish(
        &self,
        origin: Instant,
        last: Vec<(Instant, EventKind)>,
        pending: &Pending,
    ) -> io::Result<TrialHistory> {
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
        let (trial, _) = complete(&self.path, &self.history, None)?;
        std::fs::remove_file(&self.path)?;
        Ok(trial)
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
/// Returns how many lines were kept.
pub fn complete_left_spool(spool: &Path, history: &Path) -> io::Result<Option<usize>> {
    if !spool.exists() {
        return Ok(None);
    }
    let killed = EventKind::TrialEnded { interrupted: true, error: Some("the harness was killed".into()) };
    let (_, lines) = complete(spool, history, Some(killed))?;
    std::fs::remove_file(spool)?;
    Ok(Some(lines))
}

/// Reads a spool into its trial's history and appends its lines, in time
/// order (stably), to `history`, with `end` last when given. A last line
/// cut short (a harness killed while writing it) is left out. Returns the
/// trial and how many lines it added.
///
/// Lines are copied as written, not written anew: to sort them, only each
/// one's time and place are held (20 bytes a line), and since a spool is
/// mostly in order already (only late-recorded lines go back in time),
/// they are copied in long runs.
fn complete(spool: &Path, history: &Path, end: Option<EventKind>) -> io::Result<(TrialHistory, usize)> {
    let mut trial = TrialHistory::default();
    let (mut times, mut starts) = (Vec::new(), vec![0u64]);
    let (mut number, mut unterminated) = (0, false);
    let mut reader = BufReader::with_capacity(1 << 16, File::open(spool)?);
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            break;
        }
        let (len, ends) = (line.len() as u64, line.ends_with('\n'));
        line.truncate(line.trim_end_matches('\n').len());
        match super::add_line(&mut line, |_| &mut trial) {
            Ok((n, t_ms)) => {
                times.push(t_ms);
                number = n;
                // Only the last can be: it is kept, given its newline.
                unterminated = !ends;
            }
            Err(_) if end.is_some() && reader.fill_buf()?.is_empty() => break,
            Err(e) => {
                let n = times.len() + 1;
                return Err(io::Error::new(io::ErrorKind::InvalidData, format!("{}:{n}: {e}", spool.display())));
            }
        }
        starts.push(starts[starts.len() - 1] + len);
    }
    trial.close();
    let mut order: Vec<u32> = (0..times.len() as u32).collect();
    if !times.is_sorted() {
        order.sort_unstable_by(|&a, &b| times[a as usize].total_cmp(&times[b as usize]).then(a.cmp(&b)));
    }
    let last_t = order.last().map(|&i| times[i as usize]);
    drop(times);

    let mut out = BufWriter::with_capacity(1 << 16, OpenOptions::new().create(true).append(true).open(history)?);
    let mut file = File::open(spool)?;
    let mut rest = &order[..];
    while let Some((&first, _)) = rest.split_first() {
        // The run of lines that follow each other in the spool too.
        let run = 1 + rest.windows(2).take_while(|w| w[1] == w[0] + 1).count();
        let last = first as usize + run - 1;
        file.seek(SeekFrom::Start(starts[first as usize]))?;
        io::copy(&mut (&mut file).take(starts[last + 1] - starts[first as usize]), &mut out)?;
        if unterminated && last + 2 == starts.len() {
            out.write_all(b"\n")?;
        }
        rest = &rest[run..];
    }
    let mut lines = order.len();
    if let (Some(kind), Some(t_ms)) = (end, last_t) {
        let event = Event { trial: number, t_ms, kind };
        serde_json::to_writer(&mut out, &event)?;
        out.write_all(b"\n")?;
        trial.push(event)?;
        lines += 1;
    }
    out.flush()?;
    Ok((trial, lines))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_reach_the_history_in_time_order_as_written_and_equal_times_keep_their_order() {
        let dir = tempfile::tempdir().unwrap();
        let (spool, history) = (dir.path().join("spool"), dir.path().join("history"));
        let line = |t: f64, message: &str| {
            let event = Event { trial: 4, t_ms: t, kind: EventKind::Warning { message: message.into() } };
            serde_json::to_string(&event).unwrap()
        };
        // Many, with long runs in order, lines going back in time and equal
        // times; the last whole but for its newline.
        let times: Vec<f64> = (0..3000u64).map(|i| if i % 97 == 0 { (i / 2) as f64 } else { i as f64 }).collect();
        let lines: Vec<String> = times.iter().enumerate().map(|(i, t)| line(*t, &i.to_string())).collect();
        std::fs::write(&spool, lines.join("\n")).unwrap();
        std::fs::write(&history, "earlier trial\n").unwrap();

        let (trial, added) = complete(&spool, &history, None).unwrap();
        let mut expected: Vec<(f64, String)> = times.iter().copied().zip(lines).collect();
        expected.sort_by(|a, b| a.0.total_cmp(&b.0));
        let text = std::fs::read_to_string(&history).unwrap();
        let written: Vec<&str> = text.lines().collect();
        assert_eq!(written[0], "earlier trial");
        assert_eq!(written[1..], expected.iter().map(|(_, l)| l.as_str()).collect::<Vec<_>>()[..]);
        assert!(text.ends_with('\n'));
        assert_eq!((added, trial.events.len()), (3000, 3000));
        assert!(trial.events.windows(2).all(|w| w[0].t_ms <= w[1].t_ms));
    }

    #[test]
    fn a_torn_last_line_is_left_out_and_the_end_follows_the_last_event() {
        let dir = tempfile::tempdir().unwrap();
        let (spool, history) = (dir.path().join("spool"), dir.path().join("history"));
        std::fs::write(&spool, "{\"trial\":1,\"t_ms\":7.5,\"event\":\"workload_started\"}\n{\"trial\":1,\"t_ms\":3.0,\"event\":\"workload_ended\"}\n{\"trial\":1,\"t_").unwrap();
        let killed = EventKind::TrialEnded { interrupted: true, error: None };
        let (trial, added) = complete(&spool, &history, Some(killed.clone())).unwrap();
        assert_eq!(added, 3);
        let kept: Vec<(f64, EventKind)> = trial.events.into_iter().map(|e| (e.t_ms, e.kind)).collect();
        assert_eq!(kept, [(3.0, EventKind::WorkloadEnded), (7.5, EventKind::WorkloadStarted), (7.5, killed)]);
        assert_eq!(std::fs::read_to_string(&history).unwrap().lines().count(), 3);
        assert!(complete(&spool, &history, None).is_err(), "torn, and not from a killed harness: an error");
    }
}
