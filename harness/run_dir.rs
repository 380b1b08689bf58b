//! Run directories: `crashlab-runs/<scenario>-<UTC date>-<time>`, or the
//! one `--out` names. A run holds an exclusive lock on `run.lock` in its
//! directory for as long as it lives, so that two runs never share one and
//! `cleanup` never acts under a live run.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use nix::fcntl::{Flock, FlockArg};

/// Where run directories go unless `--out` says otherwise.
pub const RUNS_DIR: &str = "crashlab-runs";
pub const HISTORY_FILE: &str = "history.jsonl";
/// The trial in progress, as it happens; appended to the history when the
/// trial ends, or by `cleanup` after a killed harness.
pub const SPOOL_FILE: &str = "history.partial.jsonl";
pub const REPORT_FILE: &str = "report.json";
pub const SCENARIO_FILE: &str = "scenario.toml";

/// The lock file of a run directory; it holds the pid of the run.
pub const LOCK_FILE: &str = "run.lock";

/// The lock a live run holds on its directory (released on drop, and by the
/// kernel when the process dies, however it dies).
pub struct RunLock {
    _lock: Flock<File>,
}

#[derive(Debug, thiserror::Error)]
pub enum RunDirError {
    #[error("{what}: {source}")]
    Io { what: String, source: io::Error },
    #[error("{} is in use by another run (pid {pid}); choose another --out", dir.display())]
    InUse { dir: PathBuf, pid: i32 },
    #[error(
        "{} is not empty; choose another --out, or pass --replace to replace the finished run in it",
        dir.display()
    )]
    NotEmpty { dir: PathBuf },
    #[error("{} holds no finished run (no report.json, or its journal does not say the run finished); it is left as it is", dir.display())]
    NotAFinishedRun { dir: PathBuf },
}

fn io_err(what: String) -> impl FnOnce(io::Error) -> RunDirError {
    move |source| RunDirError::Io { what, source }
}

/// Takes the lock of `dir` (creating the lock file), or says who has it.
fn lock(dir: &Path) -> Result<RunLock, RunDirError> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(io_err(format!("cannot open {}", path.display())))?;
    let mut lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => lock,
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => {
            return Err(RunDirError::InUse { dir: dir.to_path_buf(), pid: holder(dir).unwrap_or(0) })
        }
        Err((_, e)) => return Err(io_err(format!("cannot lock {}", path.display()))(e.into())),
    };
    let pid = format!("{}\n", std::process::id());
    lock.set_len(0)
        .and_then(|()| lock.rewind())
        .and_then(|()| lock.write_all(pid.as_bytes()))
        .map_err(io_err(format!("cannot write {}", path.display())))?;
    Ok(RunLock { _lock: lock })
}

/// The pid of the live run that holds `dir`'s lock, if one does.
pub fn holder(dir: &Path) -> Option<i32> {
    let mut file = File::open(dir.join(LOCK_FILE)).ok()?;
    let mut pid = String::new();
    file.read_to_string(&mut pid).ok()?;
    match Flock::lock(file, FlockArg::LockSharedNonblock) {
        Ok(_) => None,
        Err(_) => Some(pid.trim().parse().unwrap_or(0)),
    }
}

/// The directory `--out` names, locked: created if missing; an empty one
/// is used; one holding a finished run is emptied only if `replace`; any
/// other is refused.
pub fn claim_out_dir(dir: &Path, replace: bool) -> Result<(PathBuf, RunLock), RunDirError> {
    std::fs::create_dir_all(dir).map_err(io_err(format!("cannot create {}", dir.display())))?;
    let dir = dir.canonicalize().map_err(io_err(format!("cannot resolve {}", dir.display())))?;
    if let Some(pid) = holder(&dir) {
        return Err(RunDirError::InUse { dir, pid });
    }
    // Judged before the lock file is made, so that a refused directory
    // (somebody else's) gets nothing written into it; again under the
    // lock, for a run that claimed it in between.
    replaceable(&dir, replace)?;
    let lock = lock(&dir)?;
    for path in replaceable(&dir, replace)? {
        // Neither follows a symlink: a link is removed, not its target.
        let removed = match std::fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => std::fs::remove_dir_all(&path),
            _ => std::fs::remove_file(&path),
        };
        removed.map_err(io_err(format!("cannot remove {}", path.display())))?;
    }
    Ok((dir, lock))
}

/// What of `dir` a new run would remove: nothing if it is empty, the
/// finished run in it if `replace`; any other content is a refusal.
fn replaceable(dir: &Path, replace: bool) -> Result<Vec<PathBuf>, RunDirError> {
    let others: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io_err(format!("cannot read {}", dir.display())))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name() != Some(LOCK_FILE.as_ref()))
        .collect();
    if others.is_empty() {
        return Ok(others);
    }
    if !replace {
        return Err(RunDirError::NotEmpty { dir: dir.to_path_buf() });
    }
    let finished = dir.join(REPORT_FILE).is_file()
        && crate::journal::read(dir).is_ok_and(|entries| entries.last() == Some(&crate::journal::Entry::Finished));
    if !finished {
        return Err(RunDirError::NotAFinishedRun { dir: dir.to_path_buf() });
    }
    Ok(others)
}

/// A fresh directory under `base` (see [`new_run_dir`]), locked.
pub fn claim_new_run_dir(base: &Path, scenario: &str) -> Result<(PathBuf, RunLock), RunDirError> {
    let dir = new_run_dir(base, scenario).map_err(io_err("cannot create a run directory".into()))?;
    let dir = dir.canonicalize().map_err(io_err(format!("cannot resolve {}", dir.display())))?;
    let lock = lock(&dir)?;
    Ok((dir, lock))
}

/// Creates a fresh directory for a run; never reuses an existing one.
pub fn new_run_dir(base: &Path, scenario: &str) -> io::Result<PathBuf> {
    std::fs::create_dir_all(base)?;
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let stamp = utc_stamp(secs);
    let safe: String =
        scenario.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect();
    for n in 0.. {
        let name = if n == 0 { format!("{safe}-{stamp}") } else { format!("{safe}-{stamp}-{n}") };
        let dir = base.join(name);
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    unreachable!("some suffix is free")
}

/// `YYYYMMDD-HHMMSS` in UTC, from Unix seconds.
fn utc_stamp(secs: u64) -> String {
    let rfc3339 = humantime::format_rfc3339_seconds(UNIX_EPOCH + std::time::Duration::from_secs(secs)).to_string();
    let digits: String = rfc3339.chars().filter(char::is_ascii_digit).collect();
    format!("{}-{}", &digits[..8], &digits[8..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_locked_dir_is_refused_and_a_finished_one_replaced_only_on_request() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("out");
        let (claimed, lock) = claim_out_dir(&dir, false).unwrap();
        assert_eq!(holder(&claimed), Some(std::process::id() as i32));
        // flock locks belong to the open file: a second claim, even from
        // this process, is refused while the first lives.
        assert!(matches!(claim_out_dir(&dir, true), Err(RunDirError::InUse { .. })));
        std::fs::write(claimed.join("history.jsonl"), "x").unwrap();
        drop(lock);
        assert_eq!(holder(&claimed), None);
        assert!(matches!(claim_out_dir(&dir, false), Err(RunDirError::NotEmpty { .. })));
        assert!(matches!(claim_out_dir(&dir, true), Err(RunDirError::NotAFinishedRun { .. })));
        std::fs::write(claimed.join(super::REPORT_FILE), "{}").unwrap();
        let journal = crate::journal::Journal::create(&claimed).unwrap();
        journal.append(&crate::journal::Entry::Finished).unwrap();
        let (_, _lock) = claim_out_dir(&dir, true).unwrap();
        let left: Vec<_> = std::fs::read_dir(&claimed).unwrap().flatten().map(|e| e.file_name()).collect();
        assert_eq!(left, vec![std::ffi::OsString::from(LOCK_FILE)]);
    }

    #[test]
    fn stamps_known_dates() {
        assert_eq!(utc_stamp(0), "19700101-000000");
        assert_eq!(utc_stamp(1_795_307_990), "20261122-003950");
    }
}
