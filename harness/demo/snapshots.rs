//! demo-kv's `snapshots` engine: the storage contract of a node that keeps an
//! append-only file of full-state snapshots, each closed by an anchor with
//! the state root and an `END_SNAPSHOT` marker (runbook 004):
//!
//! ```text
//! SNAPSHOT v1
//! timestamp_ms <ms>
//! entries <n>
//! entry <key> <value>        (n lines, keys sorted)
//! anchor <state root> <ms> <hash of the lines above>
//! END_SNAPSHOT
//! ```
//!
//! Writes are acknowledged from memory and become durable with the next
//! snapshot (every `--interval`, fsynced): a crash loses what came after the
//! last complete one. At start the last complete snapshot is the recovery
//! point; an incomplete tail is cut off; a snapshot whose recomputed root
//! differs from its anchor is refused, or skipped for the previous valid
//! one (`--on-bad-snapshot fallback`). `--repair` cuts the file after its
//! last valid snapshot and exits, as the runbook's "restore from an earlier
//! snapshot" does.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use super::protocol;
use super::store::{io_refusal, PeriodicStore, Refusal, EXIT_CORRUPT};

pub const FILE: &str = "l2_snapshots.dat";

/// What to do when the latest complete snapshot fails verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OnBadSnapshot {
    /// Refuse to start (exit 3), naming the expected and computed roots.
    Refuse,
    /// Start from the latest snapshot that verifies.
    Fallback,
}

/// The state root: SHA-256 over `key=value\n` of the entries, sorted.
pub fn state_root(entries: &BTreeMap<String, String>) -> String {
    let mut hash = Sha256::new();
    for (k, v) in entries {
        hash.update(format!("{k}={v}\n").as_bytes());
    }
    format!("{:x}", hash.finalize())
}

/// The anchor's `hash`: SHA-256 over the snapshot's lines before the anchor,
/// so that damage outside the entries (timestamp, count) is caught too.
fn body_hash(body: &str) -> String {
    format!("{:x}", Sha256::digest(body.as_bytes()))
}

fn encode(entries: &BTreeMap<String, String>, now_ms: u128) -> String {
    let mut out = format!("SNAPSHOT v1\ntimestamp_ms {now_ms}\nentries {}\n", entries.len());
    for (k, v) in entries {
        out.push_str(&format!("entry {k} {v}\n"));
    }
    let hash = body_hash(&out);
    out.push_str(&format!("anchor {} {now_ms} {hash}\nEND_SNAPSHOT\n", state_root(entries)));
    out
}

/// A complete snapshot found in the file.
#[derive(Debug)]
pub struct Found {
    pub entries: BTreeMap<String, String>,
    /// Byte offset just past its END_SNAPSHOT line.
    pub end: usize,
    /// Why it does not verify, if it does not.
    pub bad: Option<String>,
}

/// Every complete snapshot, in file order. Lines that belong to no complete
/// snapshot (a torn tail) are skipped.
pub fn scan(bytes: &[u8]) -> Vec<Found> {
    /// A snapshot being read: its entries, its anchor (root, hash), the
    /// text of its lines so far, and the first problem seen.
    type Open = (BTreeMap<String, String>, Option<(String, String)>, String, Option<String>);
    let mut found = Vec::new();
    let mut current: Option<Open> = None;
    let mut offset = 0;
    for raw in bytes.split_inclusive(|b| *b == b'\n') {
        offset += raw.len();
        if raw.last() != Some(&b'\n') {
            break; // a torn last line
        }
        let line = String::from_utf8_lossy(&raw[..raw.len() - 1]);
        let words: Vec<&str> = line.split(' ').collect();
        match (words.as_slice(), current.as_mut()) {
            (["SNAPSHOT", "v1"], _) => current = Some((BTreeMap::new(), None, format!("{line}\n"), None)),
            (["timestamp_ms", _] | ["entries", _], Some((_, _, body, _))) => body.push_str(&format!("{line}\n")),
            (["entry", key, value], Some((entries, _, body, _))) => {
                entries.insert(key.to_string(), value.to_string());
                body.push_str(&format!("{line}\n"));
            }
            (["anchor", root, ms, hash], Some((_, anchor, body, malformed))) => {
                // The anchor's time is the snapshot's: a change to it is damage too.
                if body.lines().nth(1).is_none_or(|l| l.strip_prefix("timestamp_ms ") != Some(*ms)) {
                    malformed.get_or_insert_with(|| format!("anchor time {ms} differs from the snapshot's"));
                }
                *anchor = Some((root.to_string(), hash.to_string()))
            }
            (["END_SNAPSHOT"], Some(_)) => {
                let (entries, anchor, body, malformed) = current.take().expect("matched Some");
                let computed = state_root(&entries);
                let bad = malformed.or_else(|| match anchor {
                    None => Some("no anchor line".into()),
                    Some((a, _)) if a != computed => {
                        Some(format!("anchor state root mismatch: expected={a} computed={computed}"))
                    }
                    Some((_, h)) if h != body_hash(&body) => {
                        Some("anchor hash mismatch: the snapshot's lines changed".into())
                    }
                    Some(_) => None,
                });
                found.push(Found { entries, end: offset, bad });
            }
            (_, Some((_, _, _, malformed))) => {
                malformed
                    .get_or_insert_with(|| format!("unexpected line `{}`", line.chars().take(60).collect::<String>()));
            }
            (_, None) => {}
        }
    }
    found
}

pub struct Snapshots {
    path: PathBuf,
    file: Mutex<File>,
    entries: Mutex<BTreeMap<String, String>>,
}

impl Snapshots {
    /// Recovers from the file in `dir`, or refuses.
    pub fn open(dir: &Path, on_bad: OnBadSnapshot) -> Result<Snapshots, Refusal> {
        let path = dir.join(FILE);
        let bytes =
            fs::read(&path).or_else(|e| if e.kind() == io::ErrorKind::NotFound { Ok(Vec::new()) } else { Err(e) });
        let bytes = bytes.map_err(io_refusal("cannot read", &path))?;
        let found = scan(&bytes);
        let (entries, keep) = match found.last() {
            None => (BTreeMap::new(), 0),
            Some(last) if last.bad.is_none() => (last.entries.clone(), last.end),
            Some(last) => {
                let why = last.bad.clone().unwrap_or_default();
                match (on_bad, found.iter().rev().find(|f| f.bad.is_none())) {
                    (OnBadSnapshot::Fallback, Some(good)) => {
                        println!(
                            "snapshot {} of {} failed verification ({why}); falling back to an earlier one",
                            found.len(),
                            found.len()
                        );
                        (good.entries.clone(), last.end)
                    }
                    _ => {
                        return Err((
                            EXIT_CORRUPT,
                            format!(
                                "{}: the latest snapshot failed verification: {why}; refusing to start \
                                 (`--repair` keeps the file up to the last valid snapshot)",
                                path.display()
                            ),
                        ))
                    }
                }
            }
        };
        let file =
            OpenOptions::new().create(true).append(true).open(&path).map_err(io_refusal("cannot open", &path))?;
        if keep < bytes.len() {
            // An incomplete snapshot at the end is ignored, and cut off so
            // that the next one starts on a line of its own.
            file.set_len(keep as u64).and_then(|()| file.sync_all()).map_err(io_refusal("cannot truncate", &path))?;
            println!("ignored an incomplete snapshot: cut {} bytes", bytes.len() - keep);
        }
        println!("recovered snapshots={} entries={}", found.len(), entries.len());
        Ok(Snapshots { path, file: Mutex::new(file), entries: Mutex::new(entries) })
    }

    /// `--repair`: keeps the file up to its last valid snapshot.
    pub fn repair(dir: &Path) -> Result<String, String> {
        let path = dir.join(FILE);
        let bytes = fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let found = scan(&bytes);
        let keep = found.iter().rev().find(|f| f.bad.is_none()).map_or(0, |f| f.end);
        let file = OpenOptions::new().write(true).open(&path).map_err(|e| e.to_string())?;
        file.set_len(keep as u64).and_then(|()| file.sync_all()).map_err(|e| e.to_string())?;
        let dropped = found.iter().filter(|f| f.end > keep).count();
        Ok(format!("kept {keep} bytes; dropped {dropped} snapshot(s) after the last valid one"))
    }
}

impl protocol::Store for Snapshots {
    fn set(&self, key: &str, value: &str) -> io::Result<()> {
        self.entries.lock().unwrap().insert(key.to_string(), value.to_string());
        Ok(())
    }

    fn get(&self, key: &str) -> io::Result<Option<String>> {
        Ok(self.entries.lock().unwrap().get(key).cloned())
    }

    fn scan(&self) -> io::Result<Vec<(String, String)>> {
        Ok(self.entries.lock().unwrap().iter().map(|(k, v)| (k.clone(), v.clone())).collect())
    }
}

impl PeriodicStore for Snapshots {
    /// Appends a snapshot of the current state and syncs it.
    fn persist(&self) -> io::Result<()> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
        let text = encode(&self.entries.lock().unwrap(), now);
        let mut file = self.file.lock().unwrap();
        file.write_all(text.as_bytes())?;
        file.sync_data().map_err(|e| io::Error::new(e.kind(), format!("cannot sync {}: {e}", self.path.display())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_latest_snapshot_is_refused_or_skipped_and_repair_keeps_the_valid_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let first = encode(&map(&[("a", "1")]), 1);
        let second = encode(&map(&[("a", "1"), ("b", "2")]), 2).replace("entry b 2", "entry b 3");
        fs::write(dir.path().join(FILE), format!("{first}{second}")).unwrap();
        let refused = Snapshots::open(dir.path(), OnBadSnapshot::Refuse).err().expect("refused");
        assert_eq!(refused.0, EXIT_CORRUPT);
        assert!(refused.1.contains("anchor state root mismatch"), "{}", refused.1);
        let fallback = Snapshots::open(dir.path(), OnBadSnapshot::Fallback).expect("falls back");
        assert_eq!(protocol::Store::scan(&fallback).unwrap(), vec![("a".to_string(), "1".to_string())]);
        drop(fallback);
        Snapshots::repair(dir.path()).unwrap();
        assert_eq!(fs::read_to_string(dir.path().join(FILE)).unwrap(), first);
    }

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn the_last_complete_valid_snapshot_is_the_recovery_point() {
        let first = encode(&map(&[("a", "1")]), 1);
        let second = encode(&map(&[("a", "1"), ("b", "2")]), 2);
        let torn = &encode(&map(&[("c", "3")]), 3)[..20];
        let found = scan(format!("{first}{second}{torn}").as_bytes());
        assert_eq!(found.len(), 2, "the torn one is not complete");
        assert!(found.iter().all(|f| f.bad.is_none()));
        assert_eq!(found[1].end, first.len() + second.len());

        // A changed value no longer matches the anchor.
        let damaged = second.replace("entry b 2", "entry b 3");
        let found = scan(format!("{first}{damaged}").as_bytes());
        assert!(found[1].bad.as_deref().unwrap().starts_with("anchor state root mismatch"), "{:?}", found[1].bad);
        assert!(found[0].bad.is_none());

        // Outside the entries, the anchor's hash catches it.
        let recounted = second.replacen("entries 2", "entries 3", 1);
        let found = scan(recounted.as_bytes());
        assert_eq!(found[0].bad.as_deref(), Some("anchor hash mismatch: the snapshot's lines changed"));
        let reanchored = second.replacen(" 2 ", " 7 ", 1);
        assert!(
            reanchored.contains(" 7 ") && scan(reanchored.as_bytes())[0].bad.is_some(),
            "the anchor's time is checked"
        );
    }
}
