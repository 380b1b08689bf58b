//! The `lose-unsynced` fault: a power loss. The target's data dir is covered
//! for the whole trial by the storage layer ([`super::layer`]), which
//! remembers what was written and not fsynced; the fault kills the
//! target and rolls every file back to its last fsynced contents (optionally
//! keeping a seeded prefix of the very last write: a torn write), then lets
//! the target start again, as after a reboot. This is what LazyFS does for
//! Jepsen.

use std::fs::OpenOptions;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use nix::sys::signal::Signal;
use rand::Rng;

use super::layer::StorageLayer;
use super::{Fault, FaultContext, FaultError, FaultErrorKind, FaultGuard};

/// What a power loss discarded.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Loss {
    pub files: u64,
    pub writes: u64,
    pub bytes: u64,
    /// `(file, bytes kept, of the write's bytes)` of a torn last write.
    pub torn: Option<(PathBuf, u64, u64)>,
}

impl StorageLayer {
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
}

pub struct LoseUnsynced {
    pub torn: bool,
    /// The FUSE layer over the target's data dir, mounted for the trial.
    pub layer: Arc<StorageLayer>,
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
