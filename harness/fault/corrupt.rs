//! The `corrupt` fault: damage files of a target's data dir at offsets drawn
//! from the trial's seed, keeping the original bytes so that the damage can
//! be undone (at the end of the trial, or by `crashlab cleanup`).
//!
//! Order of work, so that a harness killed at any point leaves a restorable
//! file: save the original bytes and sync them, journal where they are, then
//! damage the file and sync it, then journal how the damage left it.

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::time::Instant;

use nix::fcntl::OFlag;
use nix::sys::signal::Signal;
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::{Fault, FaultContext, FaultError, FaultErrorKind, FaultGuard};
use crate::confine;
use crate::journal::Entry;
use crate::scenario::{CorruptMode, CorruptPlan, Offset, Size, When};

pub struct Corrupt(pub CorruptPlan);

pub use crate::journal::SavedFile;

/// Enough of a file's metadata to tell whether anything wrote to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamp {
    pub len: u64,
    pub ino: u64,
    pub mtime_ns: i128,
}

impl Stamp {
    pub fn of(path: &Path) -> Option<Stamp> {
        let m = fs::symlink_metadata(path).ok()?;
        Some(Stamp {
            len: m.len(),
            ino: m.ino(),
            mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
        })
    }
}

/// One change to a file.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Edit {
    Write { offset: u64, bytes: Vec<u8> },
    SetLen(u64),
    Delete,
}

impl SavedFile {
    /// Puts the original bytes back, unless the file changed since the
    /// damage (`after`, when known): then it is left as it is, since the
    /// target may have repaired or rewritten it.
    pub fn restore_if_unchanged(&self, after: Option<Stamp>) -> io::Result<()> {
        let now = Stamp::of(&self.file);
        if self.deleted {
            if now.is_some() {
                return Err(io::Error::other("the file exists again: the target recreated it"));
            }
            let mut file =
                confine::open_beneath(&self.data_dir, &self.file, OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL)?;
            io::copy(&mut File::open(&self.saved)?, &mut file)?;
            return file.sync_all();
        }
        if let Some(after) = after {
            if now != Some(after) {
                return Err(io::Error::other("the file changed after the damage: the target rewrote it"));
            }
        }
        self.restore_bytes()
    }

    fn restore_bytes(&self) -> io::Result<()> {
        let file = confine::open_beneath(&self.data_dir, &self.file, OFlag::O_WRONLY)?;
        let saved = File::open(&self.saved)?;
        let mut at = 0;
        let mut buf = vec![0; 1 << 20];
        for &(offset, len) in &self.ranges {
            let mut done = 0;
            while done < len {
                let n = (len - done).min(buf.len() as u64) as usize;
                saved.read_exact_at(&mut buf[..n], at + done)?;
                file.write_all_at(&buf[..n], offset + done)?;
                done += n as u64;
            }
            at += len;
        }
        file.set_len(self.original_len)?;
        file.sync_all()
    }

    /// For `crashlab cleanup`: restores with the stamp the journal has.
    pub fn restore(&self) -> io::Result<()> {
        self.restore_if_unchanged(None)
    }
}

/// Where damage starts in a file of `len` bytes, for a range of `span` bytes.
fn start(offset: Offset, len: u64, span: u64, rng: &mut impl Rng) -> u64 {
    let last = len.saturating_sub(span);
    match offset {
        Offset::Seeded => rng.random_range(0..=last),
        Offset::Bytes(n) => n.min(last),
        Offset::Fraction(x) => ((len as f64 * x) as u64).min(len.saturating_sub(1)),
    }
}

/// What the mode does to a file of `len` bytes, and its description.
fn edits(mode: CorruptMode, file: &File, len: u64, rng: &mut impl Rng) -> io::Result<(Vec<Edit>, String)> {
    let read = |offset: u64, n: u64| -> io::Result<Vec<u8>> {
        let mut buf = vec![0; n as usize];
        file.read_exact_at(&mut buf, offset)?;
        Ok(buf)
    };
    Ok(match mode {
        _ if len == 0 && !matches!(mode, CorruptMode::Delete) => (Vec::new(), "empty file, nothing to damage".into()),
        CorruptMode::Bitflip { bits, offset } => {
            // Distinct (byte, bit) pairs; a fixed offset keeps them in the
            // bytes that follow it.
            let total_bits = len.saturating_mul(8);
            let bits = u64::from(bits).min(total_bits);
            let mut chosen = std::collections::BTreeSet::new();
            while (chosen.len() as u64) < bits {
                let bit = match offset {
                    Offset::Seeded => rng.random_range(0..total_bits),
                    _ => {
                        let base = start(offset, len, 1, rng) * 8;
                        (base + rng.random_range(0..bits.max(8))).min(total_bits - 1)
                    }
                };
                chosen.insert(bit);
            }
            let mut edits: Vec<Edit> = Vec::new();
            let mut described = Vec::new();
            for bit in chosen {
                let (at, b) = (bit / 8, (bit % 8) as u8);
                described.push(format!("byte {at} bit {b}"));
                match edits.last_mut() {
                    Some(Edit::Write { offset, bytes }) if *offset == at => bytes[0] ^= 1 << b,
                    _ => {
                        let mut byte = read(at, 1)?;
                        byte[0] ^= 1 << b;
                        edits.push(Edit::Write { offset: at, bytes: byte });
                    }
                }
            }
            (edits, format!("flipped {}", described.join(", ")))
        }
        CorruptMode::Zero { offset, length } | CorruptMode::Random { offset, length } => {
            let length = length.min(len);
            let at = start(offset, len, length, rng);
            let length = length.min(len - at);
            let bytes = if matches!(mode, CorruptMode::Zero { .. }) {
                vec![0; length as usize]
            } else {
                let mut b = vec![0; length as usize];
                rng.fill(&mut b[..]);
                b
            };
            let what = if matches!(mode, CorruptMode::Zero { .. }) { "zeroed" } else { "overwrote with random bytes" };
            (vec![Edit::Write { offset: at, bytes }], format!("{what} bytes {at}..{}", at + length))
        }
        CorruptMode::Truncate { to } => {
            let to = match to {
                Size::Bytes(n) => n,
                Size::Fraction(x) => (len as f64 * x) as u64,
            };
            if to >= len {
                (Vec::new(), format!("already {len} bytes, not longer than {to}"))
            } else {
                (vec![Edit::SetLen(to)], format!("truncated from {len} to {to} bytes"))
            }
        }
        CorruptMode::TornTail { bytes } => {
            let cut = bytes.unwrap_or_else(|| rng.random_range(1..=len.min(512))).min(len);
            (vec![Edit::SetLen(len - cut)], format!("cut the last {cut} bytes ({len} -> {})", len - cut))
        }
        CorruptMode::Delete => (vec![Edit::Delete], format!("deleted ({len} bytes)")),
        CorruptMode::Swap { length } => {
            let length = length.min(len / 2);
            if length == 0 {
                (Vec::new(), "too short to swap blocks".into())
            } else {
                let a = rng.random_range(0..=len - 2 * length);
                let b = rng.random_range(a + length..=len - length);
                let (block_a, block_b) = (read(a, length)?, read(b, length)?);
                (
                    vec![Edit::Write { offset: a, bytes: block_b }, Edit::Write { offset: b, bytes: block_a }],
                    format!("swapped bytes {a}..{} with {b}..{}", a + length, b + length),
                )
            }
        }
    })
}

/// How many bytes of a file of `len` bytes the edits change: a zeroed range
/// that was zero already, or two equal blocks swapped, change nothing.
fn changed_bytes(edits: &[Edit], file: &File, len: u64) -> io::Result<u64> {
    let mut changed = 0;
    for edit in edits {
        changed += match edit {
            Edit::Write { offset, bytes } => {
                let mut before = vec![0; bytes.len()];
                file.read_exact_at(&mut before, *offset)?;
                before.iter().zip(bytes).filter(|(a, b)| a != b).count() as u64
            }
            Edit::SetLen(to) => len.saturating_sub(*to),
            // Even an empty file's existence is a change.
            Edit::Delete => len.max(1),
        };
    }
    Ok(changed)
}

/// An io::Error that says which file and what was being done.
fn context(what: &str, path: &Path) -> impl FnOnce(io::Error) -> io::Error {
    let message = format!("{what} {}", path.display());
    move |e| io::Error::new(e.kind(), format!("{message}: {e}"))
}

/// Damages one file (inside the canonical `dir`) as `mode` says, with
/// offsets from `rng`. The original bytes go to `saved_path` (synced) and
/// `journal` is called with the record before the file is touched; then the
/// file is damaged and synced. Returns the record, or `None` if there was
/// nothing to damage, and what was done.
pub fn corrupt_file(
    dir: &Path,
    path: &Path,
    mode: CorruptMode,
    saved_path: &Path,
    rng: &mut impl Rng,
    journal: impl FnOnce(&SavedFile) -> io::Result<()>,
) -> io::Result<(Option<SavedFile>, String)> {
    let file = confine::open_beneath(dir, path, OFlag::O_RDWR).map_err(context("cannot open", path))?;
    let len = file.metadata().map_err(context("cannot stat", path))?.len();
    let (edits, what) = edits(mode, &file, len, rng).map_err(context("cannot read", path))?;
    let changed = changed_bytes(&edits, &file, len).map_err(context("cannot read", path))?;
    if changed == 0 {
        return Ok((None, format!("{what}: changed nothing, the bytes were already so")));
    }
    let what = format!("{what} ({changed} byte(s) changed)");
    let mut ranges = Vec::new();
    let mut deleted = false;
    for edit in &edits {
        match edit {
            Edit::Write { offset, bytes } => ranges.push((*offset, (bytes.len() as u64).min(len - offset))),
            Edit::SetLen(to) => ranges.push((*to, len - to)),
            Edit::Delete => deleted = true,
        }
    }
    if let Some(parent) = saved_path.parent() {
        fs::create_dir_all(parent).map_err(context("cannot create", parent))?;
    }
    if deleted {
        let mut out = File::create(saved_path).map_err(context("cannot create", saved_path))?;
        io::copy(&mut (&file), &mut out).map_err(context("cannot save", path))?;
        ranges = vec![(0, len)];
    } else {
        let mut out = File::create(saved_path).map_err(context("cannot create", saved_path))?;
        let mut buf = vec![0; 1 << 20];
        for &(offset, n) in &ranges {
            let mut done = 0;
            while done < n {
                let chunk = (n - done).min(buf.len() as u64) as usize;
                file.read_exact_at(&mut buf[..chunk], offset + done).map_err(context("cannot read", path))?;
                out.write_all(&buf[..chunk]).map_err(context("cannot write", saved_path))?;
                done += chunk as u64;
            }
        }
    }
    File::open(saved_path).and_then(|f| f.sync_all()).map_err(context("cannot sync", saved_path))?;
    let saved = SavedFile {
        data_dir: dir.to_path_buf(),
        file: path.to_path_buf(),
        saved: saved_path.to_path_buf(),
        original_len: len,
        ranges,
        deleted,
    };
    journal(&saved)?;

    if deleted {
        confine::remove_beneath(dir, path).map_err(context("cannot delete", path))?;
        return Ok((Some(saved), what));
    }
    for edit in &edits {
        match edit {
            Edit::Write { offset, bytes } => file.write_all_at(bytes, *offset),
            Edit::SetLen(to) => file.set_len(*to),
            Edit::Delete => Ok(()),
        }
        .map_err(context("cannot damage", path))?;
    }
    file.sync_all().map_err(context("cannot sync", path))?;
    crate::crash_point::reached("corrupt");
    Ok((Some(saved), what))
}

impl Fault for Corrupt {
    fn inject(&self, ctx: &FaultContext) -> Result<FaultGuard, FaultError> {
        let plan = &self.0;
        let began = Instant::now();
        let dir = ctx.target.data_dir().map_err(|r| ctx.error(r.into()))?;
        if plan.when == When::Offline {
            ctx.target.hold(Signal::SIGTERM);
        }
        let result = self.damage_all(ctx, &dir);
        if plan.when == When::Offline {
            ctx.target.release();
        }
        let (records, detail) = result?;
        let when = if plan.when == When::Offline { "offline" } else { "online" };
        ctx.injected_at(began, format!("{} ({when}): {detail}", plan.mode.name()));
        Ok(ctx.heal_with(move || {
            let outcomes: Vec<String> = records
                .iter()
                .rev()
                .map(|(saved, after)| {
                    let name = saved.file.file_name().unwrap_or_default().to_string_lossy();
                    match saved.restore_if_unchanged(*after) {
                        Ok(()) => format!("{name}: original bytes restored"),
                        Err(e) => format!("{name}: left as it is ({e})"),
                    }
                })
                .collect();
            outcomes.join("; ")
        }))
    }
}

impl Corrupt {
    #[allow(clippy::type_complexity)]
    fn damage_all(
        &self,
        ctx: &FaultContext,
        dir: &Path,
    ) -> Result<(Vec<(SavedFile, Option<Stamp>)>, String), FaultError> {
        let plan = &self.0;
        let found = confine::matches(dir, &plan.path).map_err(|r| ctx.error(r.into()))?;
        let skipped: Vec<String> = found
            .skipped
            .iter()
            .map(|(path, why)| format!("{}: {why}", path.strip_prefix(dir).unwrap_or(path).display()))
            .collect();
        let files = found.files;
        if files.is_empty() {
            let also = if skipped.is_empty() { String::new() } else { format!(" ({})", skipped.join("; ")) };
            return Err(ctx.error(FaultErrorKind::Other(format!(
                "no file in {} matches `{}`{also}",
                dir.display(),
                plan.path
            ))));
        }
        let mut rng = ctx.rng();
        let mut records = Vec::new();
        let mut described = Vec::new();
        for (n, path) in files.iter().enumerate() {
            let saved_path = ctx.trial_dir.join("faults").join(format!("fault-{}.{}.orig", ctx.index + 1, n + 1));
            let journal = |saved: &SavedFile| {
                let entry = Entry::Corrupted { trial: ctx.trial, fault: ctx.index, saved: saved.clone() };
                ctx.journal.append(&entry)
            };
            let (saved, what) = corrupt_file(dir, path, plan.mode, &saved_path, &mut rng, journal)
                .map_err(|source| ctx.error(FaultErrorKind::Io { what: "corrupt".into(), source }))?;
            described.push(format!("{}: {what}", path.strip_prefix(dir).unwrap_or(path).display()));
            if let Some(saved) = saved {
                records.push((saved, Stamp::of(path)));
            }
        }
        described.extend(skipped);
        if records.is_empty() {
            return Err(ctx.error(FaultErrorKind::Other(format!("the fault had no effect: {}", described.join("; ")))));
        }
        Ok((records, described.join("; ")))
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    /// Each mode changes exactly what it says, and restoring gives back the
    /// original file, byte for byte.
    #[test]
    fn every_mode_damages_what_it_says_and_restores_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let original: Vec<u8> = (0..10_000u32).map(|i| (i * 7 + i / 13) as u8).collect();
        let modes = [
            CorruptMode::Bitflip { bits: 3, offset: Offset::Seeded },
            CorruptMode::Bitflip { bits: 1, offset: Offset::Fraction(0.5) },
            CorruptMode::Zero { offset: Offset::Bytes(100), length: 50 },
            CorruptMode::Random { offset: Offset::Seeded, length: 64 },
            CorruptMode::Truncate { to: Size::Fraction(0.25) },
            CorruptMode::TornTail { bytes: Some(17) },
            CorruptMode::Delete,
            CorruptMode::Swap { length: 100 },
        ];
        for (i, mode) in modes.into_iter().enumerate() {
            let path = dir.path().join(format!("file-{i}"));
            fs::write(&path, &original).unwrap();
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(i as u64);
            let mut journaled = None;
            let saved_path = dir.path().join(format!("saved-{i}"));
            let journal = |s: &SavedFile| {
                journaled = Some(s.clone());
                Ok(())
            };
            let (saved, what) = corrupt_file(dir.path(), &path, mode, &saved_path, &mut rng, journal).unwrap();
            let saved = saved.unwrap();
            assert_eq!(journaled.as_ref(), Some(&saved), "journaled before the damage");
            let damaged = fs::read(&path).unwrap_or_default();
            match mode {
                CorruptMode::Bitflip { bits, .. } => {
                    let flipped: u32 = damaged.iter().zip(&original).map(|(a, b)| (a ^ b).count_ones()).sum();
                    assert_eq!(flipped, bits, "{what}");
                }
                CorruptMode::Zero { .. } => {
                    assert_eq!(&damaged[100..150], &[0; 50][..], "{what}");
                    assert_eq!((&damaged[..100], &damaged[150..]), (&original[..100], &original[150..]));
                }
                CorruptMode::Random { .. } => {
                    let differ = damaged.iter().zip(&original).filter(|(a, b)| a != b).count();
                    assert!((40..=64).contains(&differ), "{what}: {differ} bytes differ");
                }
                CorruptMode::Truncate { .. } => assert_eq!(damaged, &original[..2500], "{what}"),
                CorruptMode::TornTail { .. } => assert_eq!(damaged, &original[..original.len() - 17], "{what}"),
                CorruptMode::Delete => assert!(!path.exists(), "{what}"),
                CorruptMode::Swap { .. } => {
                    let differ = damaged.iter().zip(&original).filter(|(a, b)| a != b).count();
                    assert!(differ > 100 && damaged.len() == original.len(), "{what}");
                    let mut a = damaged.clone();
                    let mut b = original.clone();
                    a.sort_unstable();
                    b.sort_unstable();
                    assert_eq!(a, b, "a swap moves bytes, it changes none");
                }
            }
            saved.restore_if_unchanged(if mode == CorruptMode::Delete { None } else { Stamp::of(&path) }).unwrap();
            assert_eq!(fs::read(&path).unwrap(), original, "mode {} restored", mode.name());
        }
    }

    #[test]
    fn a_file_the_target_rewrote_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal.log");
        fs::write(&path, [7u8; 1000]).unwrap();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let mode = CorruptMode::TornTail { bytes: Some(10) };
        let (saved, _) =
            corrupt_file(dir.path(), &path, mode, &dir.path().join("saved"), &mut rng, |_| Ok(())).unwrap();
        let after = Stamp::of(&path);
        std::thread::sleep(std::time::Duration::from_millis(10));
        fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(b"repaired").unwrap();
        let err = saved.unwrap().restore_if_unchanged(after).unwrap_err();
        assert!(err.to_string().contains("changed after the damage"), "{err}");
        assert!(fs::read(&path).unwrap().ends_with(b"repaired"));
    }

    #[test]
    fn a_damage_that_changes_nothing_is_said_and_not_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("zeros.dat");
        let mut original = vec![0u8; 4096];
        original[4000] = 1;
        fs::write(&path, &original).unwrap();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let saved = dir.path().join("saved");
        let zero = CorruptMode::Zero { offset: Offset::Bytes(0), length: 100 };
        let (record, what) = corrupt_file(dir.path(), &path, zero, &saved, &mut rng, |_| Ok(())).unwrap();
        assert!(record.is_none() && what.contains("changed nothing"), "{what}");
        let swap = CorruptMode::Swap { length: 100 };
        let (record, what) = corrupt_file(dir.path(), &path, swap, &saved, &mut rng, |_| Ok(())).unwrap();
        assert!(record.is_none() && what.contains("changed nothing"), "{what}");
        assert_eq!(fs::read(&path).unwrap(), original);
        // What does change is counted.
        let zero = CorruptMode::Zero { offset: Offset::Bytes(3990), length: 20 };
        let (record, what) = corrupt_file(dir.path(), &path, zero, &saved, &mut rng, |_| Ok(())).unwrap();
        assert!(record.is_some() && what.ends_with("(1 byte(s) changed)"), "{what}");
    }
}
