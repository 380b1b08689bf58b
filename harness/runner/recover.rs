//! Backups before the faults and the recovery procedure after them: a
//! runbook, executed and timed step by step.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use std::sync::Arc;
use std::time::Instant;

use nix::sys::signal::Signal;

use crate::confine;
use crate::drill::Operator;
use crate::history::{EventKind, Recorder};
use crate::probe::Sampler;
use crate::scenario::{BackupPlan, RecoverStep, RestoreSource, StepAction, TargetRef};
use crate::targets::Target;

/// Where a trial keeps a backup: a directory, or `<name>.tar.gz` beside it.
pub fn backup_dir(trial_dir: &Path, name: &str) -> PathBuf {
    trial_dir.join("backups").join(name)
}

fn backup_tarball(trial_dir: &Path, name: &str) -> PathBuf {
    trial_dir.join("backups").join(format!("{name}.tar.gz"))
}

/// Packs `from` into a gzipped tarball; returns (files, bytes packed).
fn pack_tree(from: &Path, to: &Path) -> io::Result<(u64, u64)> {
    let (files, bytes) = count_tree(from)?;
    let gz = flate2::write::GzEncoder::new(fs::File::create(to)?, flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    tar.append_dir_all(".", from)?;
    tar.into_inner()?.finish()?.sync_all()?;
    Ok((files, bytes))
}

fn count_tree(dir: &Path) -> io::Result<(u64, u64)> {
    let mut total = (0, 0);
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            let (f, b) = count_tree(&entry.path())?;
            total = (total.0 + f, total.1 + b);
        } else if kind.is_file() {
            total = (total.0 + 1, total.1 + entry.metadata()?.len());
        }
    }
    Ok(total)
}

/// Copies the target's data dir while the target is paused (SIGSTOP), so
/// that the copy is a consistent snapshot: no write is half done.
pub fn take_backup(plan: &BackupPlan, target: &dyn Target, trial_dir: &Path, recorder: &Recorder) {
    // The backup's moment is when the target stopped: what is acknowledged
    // after it (the copy's time included) is not in the backup.
    let mut taken_at = Instant::now();
    let result = (|| -> io::Result<(u64, u64)> {
        let from = target.data_dir().map_err(io::Error::other)?;
        let to = backup_dir(trial_dir, &plan.name);
        let _ = fs::remove_dir_all(&to);
        fs::create_dir_all(if plan.tarball { to.parent().expect("under backups/") } else { &to })?;
        let paused = target.pause().ok();
        taken_at = Instant::now();
        let copied =
            if plan.tarball { pack_tree(&from, &backup_tarball(trial_dir, &plan.name)) } else { copy_tree(&from, &to) };
        if let Some(p) = paused {
            let _ = target.resume(p);
        }
        match copied? {
            (0, _) => Err(io::Error::other(format!(
                "the data dir {} holds no file: a backup of nothing could restore nothing",
                from.display()
            ))),
            counts => Ok(counts),
        }
    })();
    recorder.record_at(
        taken_at,
        match result {
            Ok((files, bytes)) => {
                EventKind::BackupTaken { name: plan.name.clone(), target: plan.target.to_string(), files, bytes }
            }
            Err(e) => EventKind::BackupFailed {
                name: plan.name.clone(),
                target: plan.target.to_string(),
                error: e.to_string(),
            },
        },
    );
}

/// Copies the contents of `from` into `to`; returns (files, bytes).
fn copy_tree(from: &Path, to: &Path) -> io::Result<(u64, u64)> {
    let mut total = (0, 0);
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let dest = to.join(entry.file_name());
        if kind.is_dir() {
            fs::create_dir_all(&dest)?;
            let (f, b) = copy_tree(&entry.path(), &dest)?;
            total = (total.0 + f, total.1 + b);
        } else if kind.is_file() {
            total = (total.0 + 1, total.1 + fs::copy(entry.path(), &dest)?);
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(entry.path())?, &dest)?;
        }
    }
    Ok(total)
}

/// Empties a directory without removing it (it may be a mount point).
fn empty_dir(dir: &Path) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            fs::remove_dir_all(entry.path())?;
        } else {
            fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

/// Replaces the data dir's contents with a backup directory or tarball.
fn restore(from: &Path, data_dir: &Path) -> io::Result<String> {
    let name = from.display().to_string();
    // A restore of nothing would empty the data dir and call it done: the
    // backup is checked before anything is touched.
    let files = if from.is_dir() { count_tree(from)?.0 } else { tarball_files(from)? };
    if files == 0 {
        return Err(io::Error::other(format!(
            "{name} holds no file, so nothing would be restored (was the backup taken of a data dir the target had \
             not written to?); the data dir is left as it is"
        )));
    }
    empty_dir(data_dir)?;
    if from.is_dir() {
        let (files, bytes) = copy_tree(from, data_dir)?;
        return Ok(format!("{files} files, {bytes} bytes from {name}"));
    }
    // `unpack` refuses entries that would land outside the directory.
    tar::Archive::new(tarball_reader(from)?).unpack(data_dir)?;
    Ok(format!("{files} files unpacked from {name}"))
}

fn tarball_reader(path: &Path) -> io::Result<Box<dyn io::Read>> {
    let file = fs::File::open(path)?;
    let name = path.display().to_string();
    Ok(if name.ends_with(".gz") || name.ends_with(".tgz") {
        Box::new(flate2::read::GzDecoder::new(file))
    } else {
        Box::new(file)
    })
}

/// The regular files a tarball holds.
fn tarball_files(path: &Path) -> io::Result<u64> {
    let mut archive = tar::Archive::new(tarball_reader(path)?);
    let mut files = 0;
    for entry in archive.entries()? {
        files += u64::from(entry?.header().entry_type().is_file());
    }
    Ok(files)
}

/// What a procedure step needs of the trial.
pub struct Procedure<'a> {
    pub steps: &'a [RecoverStep],
    pub targets: &'a [Arc<dyn Target>],
    pub samplers: &'a [Sampler],
    pub healthy_after: &'a dyn Fn(&str) -> u32,
    pub trial_dir: &'a Path,
    pub recorder: &'a Recorder,
    /// Injects the plan's fault of that index (a `fault` step).
    pub inject: &'a dyn Fn(usize) -> Result<(), String>,
    pub operator: Operator,
}

impl Procedure<'_> {
    fn target(&self, target: &TargetRef) -> &Arc<dyn Target> {
        &self.targets[target.index]
    }

    fn sampler(&self, target: &TargetRef) -> &Sampler {
        &self.samplers[target.index]
    }

    /// Runs the steps in order; stops at the first that fails, except that a
    /// failed `check` lets the procedure go on.
    pub fn run(&self, cancel: &crate::cancel::Cancel) {
        for (i, step) in self.steps.iter().enumerate() {
            if cancel.is_cancelled() {
                return;
            }
            let target = step.action.target().map(String::from);
            self.recorder.record(EventKind::RecoverStarted { step: i, action: step.action.name(), target });
            let (ok, detail) = match self.step(i, step, cancel) {
                Ok(detail) => (true, detail),
                Err(e) => (false, e.to_string()),
            };
            self.recorder.record(EventKind::RecoverEnded { step: i, ok, detail });
            if !ok && !matches!(step.action, StepAction::Check { .. }) {
                return;
            }
        }
    }

    fn step(&self, index: usize, step: &RecoverStep, cancel: &crate::cancel::Cancel) -> Result<String, StepError> {
        match &step.action {
            StepAction::Run { target, argv, timeout } | StepAction::Check { target, argv, timeout } => {
                let t = self.target(target);
                let out = t.exec(argv, *timeout, crate::targets::CommandKind::Step)?;
                let stderr = out.stderr.trim();
                // What went wrong first, then which command: a long one
                // would push the reason out of a report's line.
                let command = shorten(&argv.join(" "), 100);
                match out.exit {
                    Some(exit) if exit.success() => Ok(String::new()),
                    Some(exit) => Err(StepError::Failed(format!("{exit}{} (`{command}`)", tail(stderr)))),
                    None => Err(StepError::Failed(format!("did not finish within {timeout:?} (`{command}`)"))),
                }
            }
            StepAction::Restore { target, from } => {
                let t = self.target(target);
                let dir = t.data_dir()?;
                let from = match from {
                    RestoreSource::Backup(name) => match backup_tarball(self.trial_dir, name) {
                        tarball if tarball.exists() => tarball,
                        _ => backup_dir(self.trial_dir, name),
                    },
                    RestoreSource::Path(path) => path.clone(),
                };
                if !from.exists() {
                    return Err(StepError::Failed(format!(
                        "{} does not exist (was the backup taken?)",
                        from.display()
                    )));
                }
                restore(&from, &dir)
                    .map_err(|source| StepError::Io { what: format!("cannot restore {}", from.display()), source })
            }
            StepAction::Remove { target, path } => {
                let t = self.target(target);
                let dir = t.data_dir()?;
                let path = confine::path_in(&dir, path)?;
                let removed = match fs::symlink_metadata(&path) {
                    Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok("already absent".into()),
                    Err(e) => Err(e),
                    Ok(m) if m.is_dir() => fs::remove_dir_all(&path),
                    Ok(_) => fs::remove_file(&path),
                };
                removed
                    .map(|()| String::new())
                    .map_err(|source| StepError::Io { what: format!("cannot remove {}", path.display()), source })
            }
            StepAction::Stop { target } => {
                let stopped = self.target(target).hold(Signal::SIGTERM);
                Ok(stopped.map_or("was not running".into(), |p| format!("stopped pid {}", p.pid)))
            }
            StepAction::Start { target } => {
                self.target(target).release();
                Ok(String::new())
            }
            StepAction::WaitHealthy { target, timeout } => {
                let sampler = self.sampler(target);
                let now = Instant::now();
                match sampler.health.wait_sustained(now, (self.healthy_after)(target), now + *timeout, cancel) {
                    Some(_) => Ok(String::new()),
                    None => Err(StepError::Failed(format!("`{target}` not healthy within {timeout:?}"))),
                }
            }
            StepAction::Sleep { duration } => {
                cancel.sleep_until(Instant::now() + *duration);
                Ok(String::new())
            }
            StepAction::Fault { fault } => {
                (self.inject)(*fault).map(|()| format!("fault #{}", fault + 1)).map_err(StepError::Failed)
            }
            StepAction::Manual { instruction } => self
                .operator
                .confirm(index + 1, self.steps.len(), instruction, step.budget, cancel)
                .map_err(StepError::Failed),
        }
    }
}

/// Why a step of the procedure failed; its words become the step's detail
/// in the history and the reports.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error(transparent)]
    Target(#[from] crate::targets::TargetError),
    /// A path outside the data dir, or no data dir.
    #[error("{0}")]
    Refused(#[from] confine::Refusal),
    #[error("{what}: {source}")]
    Io { what: String, source: io::Error },
    /// A command that failed, a target not healthy in time, a fault that
    /// could not be injected, an operator who said it failed.
    #[error("{0}")]
    Failed(String),
}

fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    text.chars().take(max - 1).chain(['…']).collect()
}

fn tail(stderr: &str) -> String {
    let last: Vec<&str> = stderr.lines().rev().take(3).collect::<Vec<_>>().into_iter().rev().collect();
    if last.is_empty() {
        String::new()
    } else {
        format!(": {}", last.join(" | "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restore_of_nothing_is_an_error_and_touches_nothing() {
        let root = tempfile::tempdir().unwrap();
        let (backup, data) = (root.path().join("backup"), root.path().join("data"));
        fs::create_dir_all(backup.join("empty-subdir")).unwrap();
        fs::create_dir(&data).unwrap();
        fs::write(data.join("wal.log"), b"live").unwrap();
        let err = restore(&backup, &data).unwrap_err().to_string();
        assert!(err.contains("holds no file"), "{err}");
        assert_eq!(fs::read(data.join("wal.log")).unwrap(), b"live");

        let tarball = root.path().join("empty.tar.gz");
        pack_tree(&backup, &tarball).unwrap();
        let err = restore(&tarball, &data).unwrap_err().to_string();
        assert!(err.contains("holds no file"), "{err}");
        assert_eq!(fs::read(data.join("wal.log")).unwrap(), b"live");

        fs::write(backup.join("wal.log"), b"saved").unwrap();
        pack_tree(&backup, &tarball).unwrap();
        assert_eq!(restore(&tarball, &data).unwrap(), format!("1 files unpacked from {}", tarball.display()));
        assert_eq!(fs::read(data.join("wal.log")).unwrap(), b"saved");
        assert!(restore(&backup, &data).unwrap().starts_with("1 files, 5 bytes"));
    }
}
