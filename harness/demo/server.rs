//! The demo-kv server: thread per connection, one lock around the store.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use nix::fcntl::{Flock, FlockArg};

use super::checkpoints::Checkpoints;
use super::snapshots::{OnBadSnapshot, Snapshots};
use super::store::{io_refusal, PeriodicStore, Refusal, EXIT_CORRUPT, EXIT_LOCKED};
use super::{protocol, wal};
use crate::duration::clap_duration;

/// When the log is made durable with fdatasync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// Before every acknowledgement.
    Always,
    /// In the background, on a period.
    Every(Duration),
    /// Never: the page cache decides (a SIGKILL still loses nothing written).
    Never,
}

fn parse_fsync(text: &str) -> Result<FsyncPolicy, String> {
    match text {
        "always" => Ok(FsyncPolicy::Always),
        "never" => Ok(FsyncPolicy::Never),
        other => match other.strip_prefix("every:") {
            Some(period) => Ok(FsyncPolicy::Every(clap_duration(period)?)),
            None => Err(format!("expected `always`, `never` or `every:<duration>`, got `{other}`")),
        },
    }
}

/// What to do with a damaged log record at start. A bad last record with
/// nothing valid after it is a torn tail, not damage: it is dropped either
/// way, as write-ahead logs do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OnCorruption {
    /// Refuse to start and say where the damage is (exit 3).
    Refuse,
    /// Cut the log at the first damaged record and start with what precedes it.
    Truncate,
}

/// What to make of a pid file found at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PidfilePolicy {
    /// The flock on LOCK is the arbiter; a pid file is only informative.
    Ignore,
    /// Refuse to start while a pid file exists, as naive services do
    /// (their runbooks say "remove the stale pid file and restart").
    Refuse,
    /// Refuse only if the pid file names a live process, as PostgreSQL does.
    RefuseLive,
}

/// How demo-kv locks its data dir's LOCK file. The two never conflict on
/// Linux: a holder of one kind does not block a store that takes the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DirLock {
    /// flock(2): owned by the open file, so it survives in a child that
    /// inherited the descriptor (LevelDB, RocksDB, demo-kv's default).
    Flock,
    /// An fcntl(2) record lock: owned by the process, so it dies with the
    /// process that took it, even if a child keeps the descriptor (SQLite,
    /// PostgreSQL's data files).
    Fcntl,
}

/// How demo-kv keeps its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Engine {
    /// A CRC-checked write-ahead log (`wal.log`), synced per `--fsync`.
    Wal,
    /// An append-only file of full snapshots closed by a state-root anchor
    /// and END_SNAPSHOT, one every `--interval`; writes between are lost
    /// on a crash.
    Snapshots,
    /// An event log synced per write, plus checksummed checkpoints every
    /// `--interval`; bad checkpoints are quarantined, events replayed.
    Checkpoints,
}

/// `crashlab demo-kv`: the reference key-value store.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoKvOptions {
    /// TCP port to listen on.
    #[arg(long)]
    pub port: u16,
    /// Address to listen on (a target in a network namespace listens on
    /// its own address there: `--host {host}`).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: std::net::IpAddr,
    /// Directory for the log, the LOCK and the pid file; created if missing.
    #[arg(long)]
    pub data_dir: PathBuf,
    /// When to fdatasync the log: `always` (before each acknowledgement),
    /// `every:<duration>` (in the background) or `never`.
    #[arg(long, default_value = "always", value_parser = parse_fsync)]
    pub fsync: FsyncPolicy,
    /// Acknowledge writes from memory and write them to the log only every
    /// interval, like a periodic snapshot: a crash loses what was not flushed.
    #[arg(long, value_parser = clap_duration)]
    pub flush_interval: Option<Duration>,
    /// Extra time spent "replaying" before listening, so that the true
    /// recovery time is known.
    #[arg(long, value_parser = clap_duration, default_value = "0ms")]
    pub recovery_delay: Duration,
    /// What to do with a damaged log record found at start: one followed by
    /// a valid record. A bad last record (a torn tail after a crash
    /// mid-append) is dropped whatever this says, as PostgreSQL, SQLite,
    /// RocksDB and Redis (`aof-load-truncated`) do.
    #[arg(long, value_enum, default_value = "refuse")]
    pub on_corruption: OnCorruption,
    /// Print the keys of every flush (`flush n=<count> keys=<k1,k2,...>`), so a
    /// test can compare what was lost with what was never flushed.
    #[arg(long)]
    pub log_flushes: bool,
    /// What to make of a pid file left in the data dir: `ignore` (the LOCK
    /// flock decides), `refuse` (any pid file blocks the start) or
    /// `refuse-live` (one naming a live process blocks it).
    #[arg(long, value_enum, default_value = "ignore")]
    pub pidfile_policy: PidfilePolicy,
    /// How the data is kept: `wal` (default), `snapshots` or `checkpoints`.
    #[arg(long, value_enum, default_value = "wal")]
    pub engine: Engine,
    /// How the LOCK file is locked: `flock` (default) or `fcntl`. A stale
    /// lock fault only blocks a store that locks the same way.
    #[arg(long, value_enum, default_value = "flock")]
    pub lock: DirLock,
    /// Snapshots and checkpoints engines: how often state is persisted.
    #[arg(long, value_parser = clap_duration, default_value = "1s")]
    pub interval: Duration,
    /// Snapshots engine: when the latest snapshot fails verification,
    /// `refuse` to start or `fallback` to the latest valid one.
    #[arg(long, value_enum, default_value = "refuse")]
    pub on_bad_snapshot: OnBadSnapshot,
    /// Snapshots engine: keep the file up to its last valid snapshot, then
    /// exit (the runbook's "restore from an earlier snapshot").
    #[arg(long)]
    pub repair: bool,
    /// What a failed fdatasync of the log does to the write that waited for
    /// it: `fail` it (default), or `ignore` the error and acknowledge it, as
    /// programs did before "fsyncgate" (a calibrated bug: the write may be
    /// lost although acknowledged).
    #[arg(long, value_enum, default_value = "fail")]
    pub on_fsync_error: OnFsyncError,
    /// Keep this many bytes (touched) in memory for every write it
    /// acknowledges, like a cache that never evicts: a memory limit then
    /// provokes the OOM killer at a rate the workload sets. 0: none.
    #[arg(long, value_parser = parse_size, default_value = "0")]
    pub grow_per_write: usize,
}

fn parse_size(text: &str) -> Result<usize, String> {
    crate::scenario::parse_bytes(text)
        .map(|n| n as usize)
        .ok_or_else(|| format!("`{text}` is not a size such as 64KiB"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OnFsyncError {
    Fail,
    Ignore,
}

const LOG_FILE: &str = "wal.log";
const LOCK_FILE: &str = "LOCK";
const PID_FILE: &str = "demo-kv.pid";

struct Store {
    map: HashMap<String, String>,
    log: File,
    /// Records acknowledged but not yet written (flush-interval mode).
    pending: Vec<u8>,
    pending_keys: Vec<String>,
}

struct Shared {
    store: Mutex<Store>,
    /// A second handle on the log, so fdatasync runs outside the store lock:
    /// concurrent writers then share one sync (group commit by the kernel).
    sync_handle: File,
    options: DemoKvOptions,
}

/// Runs the server until SIGTERM/SIGINT (graceful: flush, sync, exit 0) or a
/// kill. Returns the process exit code on a refusal.
pub fn run(options: DemoKvOptions) -> i32 {
    match serve(options) {
        Ok(()) => 0,
        Err((code, message)) => {
            eprintln!("demo-kv: {message}");
            code
        }
    }
}

fn serve(options: DemoKvOptions) -> Result<(), Refusal> {
    let dir = options.data_dir.clone();
    fs::create_dir_all(&dir).map_err(io_refusal("cannot create data dir", &dir))?;
    if options.repair {
        return match Snapshots::repair(&dir) {
            Ok(done) => {
                println!("repaired: {done}");
                Ok(())
            }
            Err(e) => Err((1, e)),
        };
    }
    check_pid_file(&dir, options.pidfile_policy)?;
    let _lock = lock_data_dir(&dir, options.lock)?;
    match options.engine {
        Engine::Wal => {}
        Engine::Snapshots => {
            return serve_periodic(Arc::new(Snapshots::open(&dir, options.on_bad_snapshot)?), &options)
        }
        Engine::Checkpoints => return serve_periodic(Arc::new(Checkpoints::open(&dir)?), &options),
    }

    let log_path = dir.join(LOG_FILE);
    let mut bytes = Vec::new();
    if log_path.exists() {
        File::open(&log_path)
            .and_then(|mut f| f.read_to_end(&mut bytes))
            .map_err(io_refusal("cannot read", &log_path))?;
    }
    let replay = wal::replay(&bytes);
    let log =
        OpenOptions::new().create(true).append(true).open(&log_path).map_err(io_refusal("cannot open", &log_path))?;
    if let Some(bad) = replay.bad.as_ref().filter(|_| replay.torn_tail) {
        // A crash mid-append: every write-ahead log starts from here.
        log.set_len(replay.good_len as u64).map_err(io_refusal("cannot truncate", &log_path))?;
        log.sync_all().map_err(io_refusal("cannot sync", &log_path))?;
        println!("torn tail: dropped {} bytes ({bad}), nothing valid after it", bytes.len() - replay.good_len);
    } else if let Some(bad) = &replay.bad {
        match options.on_corruption {
            OnCorruption::Refuse => {
                return Err((
                    EXIT_CORRUPT,
                    format!(
                        "{}: {bad}; refusing to start ({} good records before it; \
                         --on-corruption truncate would drop the damaged tail)",
                        log_path.display(),
                        replay.records.len()
                    ),
                ))
            }
            OnCorruption::Truncate => {
                log.set_len(replay.good_len as u64).map_err(io_refusal("cannot truncate", &log_path))?;
                log.sync_all().map_err(io_refusal("cannot sync", &log_path))?;
                println!("truncated {} damaged bytes ({bad})", bytes.len() - replay.good_len);
            }
        }
    }
    let records = replay.records.len();
    let map: HashMap<String, String> = replay.records.into_iter().collect();
    println!("recovered records={records} keys={}", map.len());
    thread::sleep(options.recovery_delay);

    let sync_handle = log.try_clone().map_err(io_refusal("cannot reopen", &log_path))?;
    let shared = Arc::new(Shared {
        store: Mutex::new(Store { map, log, pending: Vec::new(), pending_keys: Vec::new() }),
        sync_handle,
        options: options.clone(),
    });
    start_background(&shared);
    listen(&options, shared)
}

/// Listens, then answers each connection on a thread of its own.
fn listen<S: protocol::Store + Send + 'static>(options: &DemoKvOptions, store: Arc<S>) -> Result<(), Refusal> {
    let listener = TcpListener::bind((options.host, options.port))
        .map_err(|e| (1, format!("cannot listen on {}:{}: {e}", options.host, options.port)))?;
    println!("ready port={}", options.port);
    let store = Arc::new(Growing { inner: store, per_write: options.grow_per_write, kept: Mutex::new(Vec::new()) });
    for stream in listener.incoming().flatten() {
        let store = Arc::clone(&store);
        thread::spawn(move || {
            let _ = protocol::serve_connection(stream, store.as_ref());
        });
    }
    Ok(())
}

/// A store that keeps `per_write` bytes for each write it acknowledges
/// (`--grow-per-write`).
struct Growing<S> {
    inner: Arc<S>,
    per_write: usize,
    kept: Mutex<Vec<Vec<u8>>>,
}

impl<S: protocol::Store + Send> protocol::Store for Growing<S> {
    fn set(&self, key: &str, value: &str) -> io::Result<()> {
        self.inner.set(key, value)?;
        if self.per_write > 0 {
            // Written, so that the pages are really charged to the process.
            self.kept.lock().unwrap().push(vec![1u8; self.per_write]);
        }
        Ok(())
    }

    fn get(&self, key: &str) -> io::Result<Option<String>> {
        self.inner.get(key)
    }

    fn scan(&self) -> io::Result<Vec<(String, String)>> {
        self.inner.scan()
    }
}

/// Applies the pid file policy before anything else is touched.
fn check_pid_file(dir: &Path, policy: PidfilePolicy) -> Result<(), Refusal> {
    let path = dir.join(PID_FILE);
    let Ok(text) = fs::read_to_string(&path) else { return Ok(()) };
    let pid = text.trim().parse::<i32>().ok();
    let live = pid.is_some_and(|pid| {
        pid != std::process::id() as i32 && nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
    });
    let named = pid.map_or("no valid pid".to_string(), |p| format!("pid {p}"));
    match policy {
        PidfilePolicy::Ignore => Ok(()),
        PidfilePolicy::RefuseLive if !live => Ok(()),
        PidfilePolicy::RefuseLive => {
            Err((EXIT_LOCKED, format!("pid file {} names {named}, which is alive; refusing to start", path.display())))
        }
        PidfilePolicy::Refuse => Err((
            EXIT_LOCKED,
            format!(
                "pid file {} exists ({named}{}); refusing to start: if no demo-kv runs on this data dir, remove it",
                path.display(),
                if live { ", alive" } else { ", not running" }
            ),
        )),
    }
}

/// The lock demo-kv holds on its data dir while it lives.
enum HeldLock {
    Flock {
        _lock: Flock<File>,
    },
    /// The fcntl lock lives as long as this descriptor stays open.
    Fcntl {
        _file: File,
    },
}

/// Takes the data dir's LOCK and writes the pid file. The lock is the
/// arbiter: it dies with its holder, so a pid file left by a dead process
/// never blocks a restart, but a live holder always does.
fn lock_data_dir(dir: &Path, kind: DirLock) -> Result<HeldLock, Refusal> {
    let lock_path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io_refusal("cannot open", &lock_path))?;
    let locked = match kind {
        DirLock::Flock => {
            Flock::lock(file, FlockArg::LockExclusiveNonblock).map(|l| HeldLock::Flock { _lock: l }).map_err(|(_, e)| e)
        }
        DirLock::Fcntl => {
            // SAFETY: a zeroed flock struct is valid; its fields are set below.
            let mut spec: nix::libc::flock = unsafe { std::mem::zeroed() };
            spec.l_type = nix::libc::F_WRLCK as i16;
            spec.l_whence = nix::libc::SEEK_SET as i16;
            nix::fcntl::fcntl(&file, nix::fcntl::FcntlArg::F_SETLK(&spec)).map(|_| HeldLock::Fcntl { _file: file })
        }
    };
    let lock = locked.map_err(|errno| {
        let holder = fs::read_to_string(dir.join(PID_FILE)).unwrap_or_default();
        let holder = holder.trim();
        let holder = if holder.is_empty() { "another process".to_string() } else { format!("pid {holder}") };
        (
            EXIT_LOCKED,
            format!(
                "data dir {} is in use: {} is locked by {holder} ({errno}); refusing to start \
                 while it lives",
                dir.display(),
                lock_path.display()
            ),
        )
    })?;
    let pid_path = dir.join(PID_FILE);
    fs::write(&pid_path, format!("{}\n", std::process::id())).map_err(io_refusal("cannot write", &pid_path))?;
    Ok(lock)
}

/// Serves a periodically persisted store: persists every interval, and once
/// more on a graceful stop.
fn serve_periodic<S: PeriodicStore + 'static>(store: Arc<S>, options: &DemoKvOptions) -> Result<(), Refusal> {
    thread::sleep(options.recovery_delay);
    let periodic = Arc::clone(&store);
    let interval = options.interval;
    thread::spawn(move || loop {
        thread::sleep(interval);
        if let Err(e) = periodic.persist() {
            eprintln!("demo-kv: cannot persist: {e}");
        }
    });
    let last = Arc::clone(&store);
    let pid_file = options.data_dir.join(PID_FILE);
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT])
        .expect("signal handlers can be installed");
    thread::spawn(move || {
        if signals.forever().next().is_some() {
            let _ = last.persist();
            let _ = fs::remove_file(&pid_file);
            println!("stopped gracefully");
            std::process::exit(0);
        }
    });
    listen(options, store)
}

fn start_background(shared: &Arc<Shared>) {
    if let Some(interval) = shared.options.flush_interval {
        let shared = Arc::clone(shared);
        thread::spawn(move || loop {
            thread::sleep(interval);
            flush(&shared);
        });
    }
    if let FsyncPolicy::Every(period) = shared.options.fsync {
        let shared = Arc::clone(shared);
        thread::spawn(move || loop {
            thread::sleep(period);
            let _ = shared.sync_handle.sync_data();
        });
    }
    // Graceful stop: flush what is pending, sync, and leave.
    let shared = Arc::clone(shared);
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT])
        .expect("signal handlers can be installed");
    thread::spawn(move || {
        if signals.forever().next().is_some() {
            flush(&shared);
            let _ = shared.sync_handle.sync_all();
            // A clean stop leaves no pid file behind; only a crash does.
            let _ = fs::remove_file(shared.options.data_dir.join(PID_FILE));
            println!("stopped gracefully");
            std::process::exit(0);
        }
    });
}

/// Writes the pending records of flush-interval mode to the log.
fn flush(shared: &Shared) {
    let mut store = shared.store.lock().unwrap();
    if store.pending.is_empty() {
        return;
    }
    let pending = std::mem::take(&mut store.pending);
    let keys = std::mem::take(&mut store.pending_keys);
    if let Err(e) = store.log.write_all(&pending) {
        eprintln!("demo-kv: flush failed: {e}");
        return;
    }
    if shared.options.fsync != FsyncPolicy::Never {
        let _ = store.log.sync_data();
    }
    if shared.options.log_flushes {
        println!("flush n={} keys={}", keys.len(), keys.join(","));
    }
}

impl protocol::Store for Shared {
    fn set(&self, key: &str, value: &str) -> io::Result<()> {
        set(self, key, value)
    }

    fn get(&self, key: &str) -> io::Result<Option<String>> {
        Ok(self.store.lock().unwrap().map.get(key).cloned())
    }

    fn scan(&self) -> io::Result<Vec<(String, String)>> {
        Ok(self.store.lock().unwrap().map.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
    }
}

fn set(shared: &Shared, key: &str, value: &str) -> io::Result<()> {
    {
        let mut store = shared.store.lock().unwrap();
        let mut record = Vec::new();
        wal::encode(key, value, &mut record);
        if shared.options.flush_interval.is_some() {
            store.pending.extend_from_slice(&record);
            store.pending_keys.push(key.to_string());
        } else {
            store.log.write_all(&record)?;
        }
        store.map.insert(key.to_string(), value.to_string());
    }
    // Outside the lock: a sync that starts after our write covers it, and
    // writers that arrive together share it.
    if shared.options.fsync == FsyncPolicy::Always && shared.options.flush_interval.is_none() {
        match shared.sync_handle.sync_data() {
            Err(e) if shared.options.on_fsync_error == OnFsyncError::Fail => return Err(e),
            _ => {}
        }
    }
    Ok(())
}
