//! The run's fault journal: every target process and every injection is
//! written here, and synced, *before* it takes effect, so that
//! `crashlab cleanup RUN_DIR` can heal what a killed harness left behind.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::Path;
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use serde::{Deserialize, Serialize};

use crate::target::procfs;

pub const FILE_NAME: &str = "faults.journal";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Entry {
    /// A target incarnation, leader of its own process group (pgid == pid).
    TargetStarted {
        trial: u32,
        target: String,
        pid: i32,
        start_time: u64,
    },
    TargetExited {
        trial: u32,
        target: String,
        pid: i32,
    },
    Injected {
        trial: u32,
        fault: usize,
        kind: String,
        target: String,
        pid: i32,
        start_time: u64,
    },
    Healed {
        trial: u32,
        fault: usize,
    },
    /// Original bytes of a damaged file were saved; written before the damage.
    Corrupted {
        trial: u32,
        fault: usize,
        #[serde(flatten)]
        saved: super::corrupt::SavedFile,
    },
    /// A process the fault started (a lock holder, an unrelated pid), to kill.
    HolderStarted {
        trial: u32,
        fault: usize,
        pid: i32,
        start_time: u64,
    },
    /// A FUSE layer was mounted over a data dir.
    Mounted {
        trial: u32,
        target: String,
        mountpoint: std::path::PathBuf,
    },
    Unmounted {
        trial: u32,
        mountpoint: std::path::PathBuf,
    },
    /// A container the run created (removed by cleanup).
    ContainerCreated {
        trial: u32,
        target: String,
        id: String,
        run_label: String,
    },
    /// A compose project brought up by the run (taken down by cleanup).
    ComposeUp {
        trial: u32,
        project: String,
        file: std::path::PathBuf,
    },
    ComposeDown {
        trial: u32,
        project: String,
    },
    /// A namespaces network: names journaled before anything is created.
    NetworkCreated {
        #[serde(flatten)]
        names: crate::network::NetworkNames,
    },
    NetworkDestroyed {
        #[serde(flatten)]
        names: crate::network::NetworkNames,
    },
    /// A partition rule, journaled before it is added to the namespace.
    PartitionRule {
        trial: u32,
        fault: usize,
        namespace: String,
        rule: Vec<String>,
    },
    /// The harness finished its own teardown.
    Finished,
}

pub struct Journal {
    file: Mutex<File>,
}

impl Journal {
    pub fn create(run_dir: &Path) -> io::Result<Journal> {
        let path = run_dir.join(FILE_NAME);
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        Ok(Journal { file: Mutex::new(file) })
    }

    /// Appends and syncs one entry; returns only once it is on disk.
    pub fn append(&self, entry: &Entry) -> io::Result<()> {
        self.write(entry, true)
    }

    /// Appends an entry that cleanup can do without (a target's exit: its
    /// identity check already tells a dead process), unsynced, so that the
    /// restart path never waits for the disk.
    pub fn note(&self, entry: &Entry) -> io::Result<()> {
        self.write(entry, false)
    }

    fn write(&self, entry: &Entry, sync: bool) -> io::Result<()> {
        let mut line = serde_json::to_vec(entry)?;
        line.push(b'\n');
        let mut file = self.file.lock().unwrap();
        file.write_all(&line)?;
        if sync {
            file.sync_data()?;
        }
        Ok(())
    }
}

pub fn read(run_dir: &Path) -> io::Result<Vec<Entry>> {
    let path = run_dir.join(FILE_NAME);
    let file = File::open(&path).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    let mut entries = Vec::new();
    for line in BufReader::new(file).lines() {
        // A line torn by a killed harness is the last one; what precedes it counts.
        match serde_json::from_str(&line?) {
            Ok(entry) => entries.push(entry),
            Err(_) => break,
        }
    }
    Ok(entries)
}

/// What cleanup did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Cleanup {
    /// Process groups that were still paused and were resumed.
    pub resumed: Vec<i32>,
    /// Processes of the run that were still running and were stopped.
    pub stopped: Vec<i32>,
    /// FUSE layers that were still mounted and were unmounted.
    pub unmounted: Vec<std::path::PathBuf>,
    /// Damaged files whose original bytes were put back.
    pub restored: Vec<std::path::PathBuf>,
    /// Damaged files left as they are, and why.
    pub not_restored: Vec<(std::path::PathBuf, String)>,
    /// Network namespaces and links deleted.
    pub network_removed: usize,
    /// Containers of the run removed.
    pub containers_removed: usize,
    /// Compose projects of the run taken down.
    pub compose_projects_down: usize,
}

/// Heals what the journal says may still be in effect: resumes paused
/// process groups, stops every process of the run's target groups and the
/// holders its faults started, unmounts FUSE layers, and restores damaged
/// files that nothing changed since. Only processes whose identity (pid and
/// start time) matches the journal are signalled.
pub fn cleanup(run_dir: &Path) -> io::Result<Cleanup> {
    let entries = read(run_dir)?;
    let mut done = Cleanup::default();
    let healed = |trial: u32, fault: usize| {
        entries.iter().any(|e| matches!(e, Entry::Healed { trial: t, fault: f } if *t == trial && *f == fault))
    };
    for entry in &entries {
        if let Entry::Injected { trial, fault, kind, pid, start_time, .. } = entry {
            if kind == "pause" && !healed(*trial, *fault) {
                let members = procfs::group_members(*pid, *start_time);
                for member in &members {
                    let _ = kill(*member, Signal::SIGCONT);
                }
                if !members.is_empty() {
                    done.resumed.push(*pid);
                }
            }
        }
    }
    let groups: Vec<(i32, u64)> = entries
        .iter()
        .filter_map(|e| match e {
            Entry::TargetStarted { pid, start_time, .. } => Some((*pid, *start_time)),
            Entry::HolderStarted { pid, start_time, .. } => Some((*pid, *start_time)),
            _ => None,
        })
        .collect();
    done.stopped = stop_groups(&groups, Duration::from_secs(3));
    for entry in &entries {
        if let Entry::Mounted { trial, mountpoint, .. } = entry {
            let unmounted = entries
                .iter()
                .any(|e| matches!(e, Entry::Unmounted { trial: t, mountpoint: m } if t == trial && m == mountpoint));
            if !unmounted && super::unsynced::is_mounted(mountpoint) {
                super::unsynced::unmount(mountpoint)?;
                done.unmounted.push(mountpoint.clone());
            }
        }
    }
    // Containers: found by the run's label, so that none escapes even if
    // its creation was not journaled.
    let labels: std::collections::BTreeSet<&str> = entries
        .iter()
        .filter_map(|e| match e {
            Entry::ContainerCreated { run_label, .. } => Some(run_label.as_str()),
            _ => None,
        })
        .collect();
    if !labels.is_empty() {
        let engine = crate::engine::Engine::connect().map_err(io::Error::other)?;
        for label in labels {
            for (id, ..) in
                engine.labelled(&format!("{}={label}", crate::engine::RUN_LABEL)).map_err(io::Error::other)?
            {
                if engine.remove(&id).is_ok() {
                    done.containers_removed += 1;
                }
            }
        }
    }
    for entry in &entries {
        if let Entry::ComposeUp { project, file, .. } = entry {
            let down = entries.iter().any(|e| matches!(e, Entry::ComposeDown { project: p, .. } if p == project));
            if !down && crate::compose::down(project, file).is_ok() {
                done.compose_projects_down += 1;
            }
        }
    }
    // Namespaces take their partition rules with them.
    for entry in &entries {
        if let Entry::NetworkCreated { names } = entry {
            let destroyed = entries.iter().any(|e| matches!(e, Entry::NetworkDestroyed { names: n } if n == names));
            if !destroyed {
                done.network_removed += crate::network::destroy(names);
            }
        }
    }
    // Newest damage first, so that two faults on one file unwind in order.
    for entry in entries.iter().rev() {
        if let Entry::Corrupted { trial, fault, saved } = entry {
            if healed(*trial, *fault) {
                continue;
            }
            match saved.restore() {
                Ok(()) => done.restored.push(saved.file.clone()),
                Err(why) => done.not_restored.push((saved.file.clone(), why.to_string())),
            }
        }
    }
    Ok(done)
}

/// SIGCONT + SIGTERM to every live member of the groups, SIGKILL to those
/// still there after `grace`. Returns the pids that were signalled.
pub fn stop_groups(groups: &[(i32, u64)], grace: Duration) -> Vec<i32> {
    let members = || -> Vec<nix::unistd::Pid> {
        groups.iter().flat_map(|(pgid, since)| procfs::group_members(*pgid, *since)).collect()
    };
    let first = members();
    for pid in &first {
        let _ = kill(*pid, Signal::SIGCONT);
        let _ = kill(*pid, Signal::SIGTERM);
    }
    let deadline = Instant::now() + grace;
    while !members().is_empty() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    for pid in members() {
        let _ = kill(pid, Signal::SIGKILL);
    }
    first.iter().map(|p| p.as_raw()).collect()
}
