//! The storage layer: a FUSE pass-through filesystem ([`super::passthrough`])
//! mounted over a target's data dir for a whole trial when one of its faults
//! acts through it (`lose-unsynced`, `io`). The target sees the same path
//! with or without it.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::io_rules::IoRules;
use super::passthrough::{Ledger, Passthrough};
use crate::journal::{Entry, Journal};

/// A mounted layer over one data dir.
pub struct StorageLayer {
    pub(super) mountpoint: PathBuf,
    /// The data dir itself, reached without the layer.
    pub(super) backing: PathBuf,
    pub(super) ledger: Arc<Mutex<Ledger>>,
    /// What the `io` faults armed on it do to the target's operations.
    pub(super) rules: Arc<IoRules>,
    session: Mutex<Option<fuser::BackgroundSession>>,
    pub(super) notifier: fuser::Notifier,
    trial: u32,
    journal: Arc<Journal>,
}

impl StorageLayer {
    /// Mounts the layer over `dir`, journaled first so that `crashlab
    /// cleanup` unmounts it if the harness dies.
    pub fn mount(dir: &Path, trial: u32, target: &str, journal: Arc<Journal>) -> io::Result<StorageLayer> {
        if !Path::new("/dev/fuse").exists() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                "the lose-unsynced and io faults need FUSE, and /dev/fuse is missing (load the fuse module; in a \
                 container, pass --device /dev/fuse)",
            ));
        }
        let ledger = Arc::new(Mutex::new(Ledger::default()));
        let rules = Arc::new(IoRules::default());
        let fs = Passthrough::new(dir, Arc::clone(&ledger), Arc::clone(&rules))?;
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
        Ok(StorageLayer {
            mountpoint: dir.to_path_buf(),
            backing,
            ledger,
            rules,
            session: Mutex::new(Some(session)),
            notifier,
            trial,
            journal,
        })
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

impl Drop for StorageLayer {
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

impl StorageLayer {
    /// The `io` faults' rules, armed and disarmed while the layer serves.
    pub fn rules(&self) -> &Arc<IoRules> {
        &self.rules
    }

    /// The data dir, reached without the layer.
    pub fn backing(&self) -> &Path {
        &self.backing
    }
}
