//! demo-kv's `checkpoints` engine: the storage contract of an agent that
//! keeps an event log and periodic checkpoints of its state, each with a
//! SHA-256 checksum (runbook 003):
//!
//! - `events.log`: one `SET <key> <value>` line per write, synced before the
//!   write is acknowledged;
//! - `checkpoints/ckpt-NNNNNN.json`: `{"timestamp_ms", "version",
//!   "events_offset", "state", "checksum": "sha256:<hex>"}` every
//!   `--interval`, written to a temporary file, synced and renamed; the last
//!   three are kept.
//!
//! At start, a checkpoint whose checksum does not match is moved to
//! `quarantine/`; the newest valid one is restored, and the events logged
//! after its offset are replayed. So a damaged checkpoint costs replay time,
//! never data.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::protocol;
use super::store::{io_refusal, PeriodicStore, Refusal};

const EVENTS: &str = "events.log";
const DIR: &str = "checkpoints";
const QUARANTINE: &str = "quarantine";
const KEEP: usize = 3;

#[derive(Serialize, Deserialize)]
struct Checkpoint {
    timestamp_ms: u128,
    version: String,
    events_offset: u64,
    state: BTreeMap<String, String>,
    checksum: String,
}

fn checksum(offset: u64, state: &BTreeMap<String, String>) -> String {
    let canonical = serde_json::to_string(&(offset, state)).expect("strings serialize");
    format!("sha256:{:x}", Sha256::digest(canonical.as_bytes()))
}

struct Inner {
    events: File,
    offset: u64,
    state: BTreeMap<String, String>,
    next: u64,
}

pub struct Checkpoints {
    dir: PathBuf,
    inner: Mutex<Inner>,
}

/// Why a checkpoint file cannot be used, if it cannot.
fn verify(path: &Path) -> Result<Checkpoint, String> {
    let text = fs::read(path).map_err(|e| e.to_string())?;
    let c: Checkpoint = serde_json::from_slice(&text).map_err(|e| format!("unreadable: {e}"))?;
    let computed = checksum(c.events_offset, &c.state);
    if computed != c.checksum {
        return Err(format!("checksum mismatch: recorded {} computed {computed}", c.checksum));
    }
    Ok(c)
}

impl Checkpoints {
    pub fn open(dir: &Path) -> Result<Checkpoints, Refusal> {
        let ckpt_dir = dir.join(DIR);
        fs::create_dir_all(&ckpt_dir).map_err(io_refusal("cannot create", &ckpt_dir))?;
        let mut names: Vec<PathBuf> = fs::read_dir(&ckpt_dir)
            .map_err(io_refusal("cannot list", &ckpt_dir))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        names.sort();
        let next = names.last().map_or(1, |p| seq_of(p) + 1);
        let mut restored = None;
        let mut quarantined = 0;
        for path in names.iter().rev() {
            match verify(path) {
                Ok(c) => {
                    restored = Some((path.clone(), c));
                    break;
                }
                Err(why) => {
                    let quarantine = dir.join(QUARANTINE);
                    fs::create_dir_all(&quarantine).map_err(io_refusal("cannot create", &quarantine))?;
                    let to = quarantine.join(path.file_name().expect("a file"));
                    fs::rename(path, &to).map_err(io_refusal("cannot quarantine", path))?;
                    println!("quarantined {}: {why}", path.display());
                    quarantined += 1;
                }
            }
        }
        let (mut state, start) = match &restored {
            Some((path, c)) => {
                println!("restored checkpoint {} (events up to offset {})", path.display(), c.events_offset);
                (c.state.clone(), c.events_offset)
            }
            None => (BTreeMap::new(), 0),
        };
        // Replay the events logged after the checkpoint; a torn last line
        // (never acknowledged) is cut off.
        let events_path = dir.join(EVENTS);
        let bytes =
            fs::read(&events_path)
                .or_else(|e| if e.kind() == io::ErrorKind::NotFound { Ok(Vec::new()) } else { Err(e) });
        let bytes = bytes.map_err(io_refusal("cannot read", &events_path))?;
        let mut offset = start.min(bytes.len() as u64) as usize;
        let mut replayed = 0;
        while let Some(n) = bytes[offset..].iter().position(|b| *b == b'\n') {
            let line = String::from_utf8_lossy(&bytes[offset..offset + n]);
            if let ["SET", key, value] = line.split(' ').collect::<Vec<_>>().as_slice() {
                state.insert(key.to_string(), value.to_string());
                replayed += 1;
            }
            offset += n + 1;
        }
        let events = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&events_path)
            .map_err(io_refusal("cannot open", &events_path))?;
        if offset < bytes.len() {
            events.set_len(offset as u64).map_err(io_refusal("cannot truncate", &events_path))?;
        }
        println!("recovered quarantined={quarantined} replayed={replayed} keys={}", state.len());
        Ok(Checkpoints {
            dir: dir.to_path_buf(),
            inner: Mutex::new(Inner { events, offset: offset as u64, state, next }),
        })
    }
}

fn seq_of(path: &Path) -> u64 {
    path.file_stem()
        .and_then(|s| s.to_str())
        .and_then(|s| s.strip_prefix("ckpt-"))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

impl protocol::Store for Checkpoints {
    fn set(&self, key: &str, value: &str) -> io::Result<()> {
        let mut inner = self.inner.lock().unwrap();
        let line = format!("SET {key} {value}\n");
        inner.events.write_all(line.as_bytes())?;
        inner.events.sync_data()?;
        inner.offset += line.len() as u64;
        inner.state.insert(key.to_string(), value.to_string());
        Ok(())
    }

    fn get(&self, key: &str) -> io::Result<Option<String>> {
        Ok(self.inner.lock().unwrap().state.get(key).cloned())
    }

    fn scan(&self) -> io::Result<Vec<(String, String)>> {
        Ok(self.inner.lock().unwrap().state.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
    }
}

impl PeriodicStore for Checkpoints {
    /// Writes a checkpoint (temporary file, sync, rename) and keeps the last three.
    fn persist(&self) -> io::Result<()> {
        let (checkpoint, seq) = {
            let mut inner = self.inner.lock().unwrap();
            let c = Checkpoint {
                timestamp_ms: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis()),
                version: "2.0".into(),
                events_offset: inner.offset,
                checksum: checksum(inner.offset, &inner.state),
                state: inner.state.clone(),
            };
            inner.next += 1;
            (c, inner.next - 1)
        };
        let dir = self.dir.join(DIR);
        let temp = dir.join(format!(".ckpt-{seq:06}.tmp"));
        let mut file = File::create(&temp)?;
        file.write_all(&serde_json::to_vec(&checkpoint).expect("a checkpoint serializes"))?;
        file.sync_all()?;
        fs::rename(&temp, dir.join(format!("ckpt-{seq:06}.json")))?;
        File::open(&dir)?.sync_all()?;
        let mut names: Vec<PathBuf> = fs::read_dir(&dir)?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        names.sort();
        for old in names.iter().take(names.len().saturating_sub(KEEP)) {
            let _ = fs::remove_file(old);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_checkpoint_is_quarantined_and_the_events_replayed_from_the_last_good_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = Checkpoints::open(dir.path()).unwrap();
        use protocol::Store;
        store.set("a", "1").unwrap();
        store.persist().unwrap();
        store.set("b", "2").unwrap();
        store.persist().unwrap();
        store.set("c", "3").unwrap();
        drop(store);
        // Damage the newest checkpoint's state without fixing its checksum.
        let newest = dir.path().join(DIR).join("ckpt-000002.json");
        let text = fs::read_to_string(&newest).unwrap().replace("\"2\"", "\"9\"");
        fs::write(&newest, text).unwrap();

        let store = Checkpoints::open(dir.path()).unwrap();
        let mut items = store.scan().unwrap();
        items.sort();
        let want: Vec<(String, String)> =
            [("a", "1"), ("b", "2"), ("c", "3")].iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        assert_eq!(items, want, "nothing lost: the events since the good checkpoint were replayed");
        assert!(dir.path().join(QUARANTINE).join("ckpt-000002.json").exists());
    }
}
