//! The `lose-unsynced` fault: a power loss. The target's data dir is covered
//! for the whole trial by a FUSE pass-through layer ([`super::passthrough`])
//! that remembers what was written and not fsynced; the fault kills the
//! target and rolls every file back to its last fsynced contents (optionally
//! keeping a seeded prefix of the very last write: a torn write), then lets
//! the target start again, as after a reboot. This is what LazyFS does for
//! Jepsen.

use std::fs::OpenOptions;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use nix::sys::signal::Signal;
use rand::Rng;

use super::passthrough::{Ledger, Passthrough};
use super::{Fault, FaultContext, FaultError, FaultErrorKind, FaultGuard};
use crate::journal::{Entry, Journal};

/// A mounted layer over one data dir.
pub struct UnsyncedFs {
    mountpoint: PathBuf,
    backing: PathBuf,
    ledger: Arc<Mutex<Ledger>>,
    session: Mutex<Option<fuser::BackgroundSession>>,
    notifier: fuser::Notifier,
    trial: u32,
    journal: Arc<Journal>,
}

/// What a power loss discarded.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Loss {
    pub files: u64,
    pub writes: u64,
    pub bytes: u64,
    /// `(file, bytes kept, of the write's bytes)` of a torn last write.
    pub torn: Option<(PathBuf, u64, u64)>,
}

impl UnsyncedFs {
    /// Mounts the layer over `dir`, journaled first so that `crashlab
    /// cleanup` unmounts it if the harness dies.
    pub fn mount(dir: &Path, trial: u32, target: &str, journal: Arc<Journal>) -> io::Result<UnsyncedFs> {
        if !Path::new("/dev/fuse").exists() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                "the lose-unsynced fault needs FUSE, and /dev/fuse is missing (load the fuse module; in a \
                 container, pass --device /dev/fuse)",
            ));
        }
        let ledger = Arc::new(Mutex::new(Ledger::default()));
        let fs = Passthrough::new(dir, Arc::clone(&ledger))?;
        let backing = fs.root();
        journal.append(&Entry::Mounted { trial, target: target.to_string(), mountpoint: dir.to_path_buf() })?;
        let mut options = vec![fuser::MountOption::FSName(FS_NAME.into()), fuser::MountOption::NoAtime];
        if nix::unistd::geteuid().is_root() {
            // A target running as its own user (PostgreSQL, MariaDB) reaches
            // its data dir, under the permissions of the files themselves.
            options.extend([fuser::MountOption::AllowOther, fuser::MountOption::DefaultPermissions]);
        }
        let session = fuser::spawn_mount2(fs, dir, &options).map_err(|e| {
            let _ = journal.append(&Entry::Unmounted { trial, mountpoint: dir.to_path_buf() });
            io::Error::new(
                e.kind(),
                format!(
                    "cannot mount the FUSE layer over {}: {e} (mounting needs root, or fusermount3 from the fuse3 \
                     package)",
                    dir.display()
                ),
            )
        })?;
        crate::crash_point::reached("mount");
        let notifier = session.notifier();
        Ok(UnsyncedFs {
            mountpoint: dir.to_path_buf(),
            backing,
            ledger,
            session: Mutex::new(Some(session)),
            notifier,
            trial,
            journal,
        })
    }

    /// Rolls every file back to what was last fsynced, keeping with `tear`
    /// a seeded prefix of the last write. The target must be dead: call
    /// after it was killed.
    pub fn power_loss(&self, mut tear: Option<&mut dyn rand::RngCore>) -> io::Result<Loss> {
        // A write the target issued just before it died may still be queued
        // in the kernel: a request of our own, answered in order by the
        // single-threaded layer, makes sure it has been applied first.
        let _ = std::fs::read_dir(&self.mountpoint).map(|d| d.count());
        let mut ledger = self.ledger.lock().unwrap();
        let pending = std::mem::take(&mut ledger.pending);
        let last = ledger.last_write.take();
        let mut loss = Loss::default();
        let mut changed = Vec::new();
        for (ino, file) in &pending {
            let Some(relative) = ledger.paths.get(ino).cloned() else { continue };
            let Ok(handle) = OpenOptions::new().write(true).open(self.backing.join(&relative)) else { continue };
            for (offset, before) in file.overwritten.iter().rev() {
                handle.write_all_at(before, *offset)?;
            }
            handle.set_len(file.synced_len)?;
            if let (Some(rng), Some((last_ino, offset, data))) = (tear.as_deref_mut(), &last) {
                if last_ino == ino && !data.is_empty() {
                    let kept = rng.random_range(0..data.len());
                    handle.write_all_at(&data[..kept], *offset)?;
                    loss.torn = Some((relative.clone(), kept as u64, data.len() as u64));
                }
            }
            handle.sync_all()?;
            loss.files += 1;
            loss.writes += file.writes;
            loss.bytes += file.bytes;
            changed.push(*ino);
        }
        // Outside the lock: the kernel may need the layer to answer while
        // it drops its caches.
        drop(ledger);
        for ino in changed {
            let _ = self.notifier.inval_inode(ino, 0, 0);
        }
        Ok(loss)
    }

    /// Unmounts (idempotent). The target must be stopped. An error is
    /// returned to be reported; the layer is detached and journaled anyway.
    pub fn unmount(&self) -> Result<(), String> {
        let mut outcome = Ok(());
        if let Some(session) = self.session.lock().unwrap().take() {
            // A lazy detach of our own first: fuser's plain umount fails
            // with EBUSY while a stray process keeps a file open, and
            // joining its loop would then wait forever. Detached, the layer
            // serves such a process until it lets go, and the session's
            // thread ends on its own.
            if let Err(e) = unmount(&self.mountpoint) {
                outcome = Err(e.to_string());
            }
            drop(session);
            let _ = self.journal.append(&Entry::Unmounted { trial: self.trial, mountpoint: self.mountpoint.clone() });
        }
        outcome
    }
}

impl Drop for UnsyncedFs {
    fn drop(&mut self) {
        // Only a layer that tear-down never reached gets here.
        if let Err(e) = self.unmount() {
            eprintln!("crashlab: {e}");
        }
    }
}

/// Whether something is mounted at `path` (from /proc/self/mountinfo).
pub fn is_mounted(path: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else { return false };
    let wanted = path.display().to_string();
    info.lines().filter_map(|l| l.split(' ').nth(4)).any(|m| unescape(m) == wanted)
}

/// The name the layer mounts under: how cleanup tells it from any other
/// mount at the same place.
const FS_NAME: &str = "crashlab-unsynced";

/// Whether what is mounted at `path` is a layer of ours: a FUSE mount named
/// [`FS_NAME`].
pub fn is_our_layer(path: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else { return false };
    let wanted = path.display().to_string();
    info.lines().any(|line| {
        let mountpoint = line.split(' ').nth(4).map(unescape);
        // After the optional fields: ` - fstype source super-options`.
        let tail: Vec<&str> = line.split(" - ").nth(1).map_or(Vec::new(), |t| t.split(' ').collect());
        mountpoint.as_deref() == Some(wanted.as_str())
            && tail.first().is_some_and(|fstype| fstype.starts_with("fuse"))
            && tail.get(1) == Some(&FS_NAME)
    })
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape(field: &str) -> String {
    field.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")
}

/// Detaches a mount whose daemon may be gone ("transport endpoint is not
/// connected"): a lazy unmount needs no answer from it.
pub fn unmount(path: &Path) -> io::Result<()> {
    nix::mount::umount2(path, nix::mount::MntFlags::MNT_DETACH)
        .map_err(|e| io::Error::new(io::Error::from(e).kind(), format!("cannot unmount {}: {e}", path.display())))
}

pub struct LoseUnsynced {
    pub torn: bool,
    /// The FUSE layer over the target's data dir, mounted for the trial.
    pub layer: Arc<UnsyncedFs>,
}

impl Fault for LoseUnsynced {
    fn inject(&self, ctx: &FaultContext) -> Result<FaultGuard, FaultError> {
        let fs = &self.layer;
        let began = Instant::now();
        let crashed = ctx.target.hold(Signal::SIGKILL);
        let mut rng = ctx.rng();
        let loss = fs.power_loss(if self.torn { Some(&mut rng) } else { None });
        ctx.target.release();
        let loss = loss.map_err(|source| ctx.error(FaultErrorKind::Io { what: "power loss".into(), source }))?;
        let torn = loss.torn.as_ref().map_or(String::new(), |(file, kept, of)| {
            format!("; the last write to {} torn after {kept} of {of} bytes", file.display())
        });
        ctx.injected_at(
            began,
            format!(
                "{}; discarded {} unsynced writes ({} bytes) in {} files{torn}",
                crashed.map_or("the target was down".into(), |p| format!("SIGKILL to pid {}", p.pid)),
                loss.writes,
                loss.bytes,
                loss.files
            ),
        );
        Ok(FaultGuard::nothing())
    }
}
