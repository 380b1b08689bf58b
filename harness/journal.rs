//! The run's fault journal: every target process and every injection is
//! written here *before* it takes effect, so that `crashlab cleanup RUN_DIR`
//! can heal what a killed harness left behind. An entry is in the file
//! once written, whatever kills the harness after; it is synced too, so
//! that it outlives a crash of the machine, unless what it records ends
//! with the machine anyway (a process: see [`Journal::note`]).

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::Path;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use std::path::PathBuf;

pub const FILE_NAME: &str = "faults.journal";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Entry {
    /// The first entry: every process the run starts carries this token in
    /// its environment (see [`RUN_TOKEN_VAR`]).
    Begun {
        token: String,
    },
    /// A remote host and the agent's directory there, journaled before the
    /// directory is made: cleanup reaches the host and runs `crashlab
    /// cleanup` on the agent's own run there.
    Host {
        host: String,
        /// How to reach it: the scenario's `[host.NAME]`, paths absolute.
        ssh: serde_json::Value,
        dir: String,
    },
    /// A target's data dir (canonical): the only place, with the run
    /// directory, where cleanup restores bytes or unmounts a layer.
    DataDir {
        trial: u32,
        target: String,
        path: std::path::PathBuf,
    },
    /// The `crashlab.run` label every container of the run will carry,
    /// journaled before the first one is created.
    ContainerLabel {
        run_label: String,
        /// The engine's socket, when not the default (a remote host's
        /// `engine`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        engine: Option<PathBuf>,
    },
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
        kind: crate::kinds::FaultName,
        target: String,
        pid: i32,
        start_time: u64,
    },
    Healed {
        trial: u32,
        fault: usize,
    },
    /// An object a fault creates in a cluster (a NetworkPolicy), labelled
    /// `crashlab.run=<the run's token>`, journaled before it is created:
    /// cleanup deletes it unless [`Entry::ClusterObjectDeleted`] follows,
    /// and only if it still carries that label.
    ClusterObjectCreated {
        trial: u32,
        fault: usize,
        #[serde(flatten)]
        cluster: ClusterRef,
        namespace: String,
        kind: crate::kinds::ClusterObjectKind,
        name: String,
    },
    ClusterObjectDeleted {
        namespace: String,
        kind: crate::kinds::ClusterObjectKind,
        name: String,
    },
    /// A workload a fault scales, from `from` replicas, journaled before
    /// the call: cleanup scales it back unless [`Entry::ScaleRestored`]
    /// follows.
    Scaled {
        trial: u32,
        fault: usize,
        #[serde(flatten)]
        cluster: ClusterRef,
        namespace: String,
        owner: crate::kinds::Owner,
        from: i32,
        to: i32,
    },
    ScaleRestored {
        namespace: String,
        owner: crate::kinds::Owner,
    },
    /// A pod a fault deletes through the Kubernetes API (nothing for
    /// cleanup to undo: its workload replaces it), journaled before the
    /// call, with the uid the deletion is conditioned on.
    PodDeleted {
        trial: u32,
        fault: usize,
        target: String,
        namespace: String,
        pod: String,
        uid: String,
    },
    /// A pod whose processes a fault stops (SIGSTOP, sent with exec),
    /// journaled before the call: cleanup sends them SIGCONT unless
    /// [`Entry::PodResumed`] follows, if the pod is still that uid.
    PodPaused {
        trial: u32,
        fault: usize,
        #[serde(flatten)]
        cluster: ClusterRef,
        namespace: String,
        pod: String,
        uid: String,
        container: Option<String>,
    },
    PodResumed {
        trial: u32,
        fault: usize,
    },
    /// Original bytes of a damaged file were saved; written before the damage.
    Corrupted {
        trial: u32,
        fault: usize,
        #[serde(flatten)]
        saved: SavedFile,
    },
    /// A process the fault started (a lock holder, an unrelated pid), to kill.
    HolderStarted {
        trial: u32,
        fault: usize,
        pid: i32,
        start_time: u64,
    },
    /// A command the run started for a target: a `before_start` or
    /// `after_stop` hook, a recovery step's `run`, a check; leader of its
    /// own process group.
    CommandStarted {
        trial: u32,
        target: String,
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
        names: NetworkNames,
    },
    NetworkDestroyed {
        #[serde(flatten)]
        names: NetworkNames,
    },
    /// A partition rule, journaled before it is added to the namespace.
    PartitionRule {
        trial: u32,
        fault: usize,
        namespace: String,
        rule: Vec<String>,
    },
    /// A netem qdisc on a target's link, journaled before it is added;
    /// like the rules, it vanishes with the namespace.
    NetemQdisc {
        trial: u32,
        fault: usize,
        namespace: String,
        link: String,
    },
    /// A libfaketime control file, journaled before it is made; cleanup
    /// removes it (the processes that read it are stopped first).
    ClockFile {
        trial: u32,
        target: String,
        path: PathBuf,
    },
    /// A memory cgroup of a `memory` fault, journaled before it is made.
    Cgroup {
        trial: u32,
        fault: usize,
        path: PathBuf,
    },
    /// The harness finished its own teardown.
    Finished,
}

/// The environment variable that marks every process a run starts: its
/// value, the run's random token, is journaled before anything is started,
/// so `crashlab cleanup` can prove a process is the run's own even if the
/// harness died between a fork and the journal entry naming its pid.
pub const RUN_TOKEN_VAR: &str = "CRASHLAB_RUN_TOKEN";

static RUN_TOKEN: Mutex<Option<String>> = Mutex::new(None);

/// Marks every process started from now on with `token` (see
/// [`RUN_TOKEN_VAR`]).
pub fn mark_children(token: &str) {
    *RUN_TOKEN.lock().unwrap() = Some(token.to_string());
}

/// The token children are marked with now, if any.
pub fn run_token() -> Option<String> {
    RUN_TOKEN.lock().unwrap().clone()
}

/// A cluster as a run reached it: how (kubeconfig, absolute, and context)
/// and where (the API server's address). `cleanup` reaches it the same way
/// and acts only if that leads to the same server: a kubeconfig that
/// leads elsewhere since is another cluster's business.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterRef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubeconfig: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    pub server: String,
}

/// Records the journal keeps. Their behaviour lives with what makes them:
/// [`SavedFile`]'s restore with the corrupt fault, [`NetworkNames`]'s
/// checks with the network.
/// A damaged file and where its original bytes are kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedFile {
    /// The target's canonical data dir, which `file` lies inside: the file
    /// is reopened beneath it, following no link.
    #[serde(default)]
    pub data_dir: PathBuf,
    pub file: PathBuf,
    /// The original bytes of `ranges`, one after the other.
    pub saved: PathBuf,
    pub original_len: u64,
    /// `(offset, length)` of each saved range.
    pub ranges: Vec<(u64, u64)>,
    pub deleted: bool,
}

/// Names of everything a network is made of, as journaled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkNames {
    pub namespaces: Vec<String>,
    /// The veth end in the harness's own namespace.
    pub host_link: String,
    /// Every veth end that is created in the harness's namespace before it
    /// moves into a namespace: left behind if the harness dies in between.
    #[serde(default)]
    pub links: Vec<String>,
}

pub struct Journal {
    file: Mutex<File>,
}

impl Journal {
    /// Creates the run's journal and marks every process started from now
    /// on with a fresh token, journaled first.
    pub fn create(run_dir: &Path) -> io::Result<Journal> {
        let path = run_dir.join(FILE_NAME);
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        let journal = Journal { file: Mutex::new(file) };
        let token = format!("{:032x}", rand::random::<u128>());
        journal.append(&Entry::Begun { token: token.clone() })?;
        mark_children(&token);
        Ok(journal)
    }

    /// Appends and syncs one entry; returns only once it is on disk.
    pub fn append(&self, entry: &Entry) -> io::Result<()> {
        self.write(entry, true)
    }

    /// Appends an entry without syncing it: what it records ends with the
    /// machine (a process started or exited), or it only matters beside a
    /// synced entry that follows it (a data dir, where cleanup restores
    /// bytes or unmounts only what a fault journaled there; that entry's
    /// sync carries this one too). So targets start side by side, and
    /// restart, without waiting for the disk.
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

/// The entries of a run's journal, up to the first line that does not
/// parse: a line torn by a killed harness is the last one (it may end in
/// the middle of a character), and what precedes it counts.
pub fn read(run_dir: &Path) -> io::Result<Vec<Entry>> {
    let path = run_dir.join(FILE_NAME);
    let file = File::open(&path).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    let mut entries = Vec::new();
    for line in BufReader::new(file).split(b'\n') {
        match serde_json::from_slice(&line?) {
            Ok(entry) => entries.push(entry),
            Err(_) => break,
        }
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_torn_last_line_is_ignored_even_mid_character() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::create(dir.path()).unwrap();
        journal.append(&Entry::Finished).unwrap();
        let mut torn =
            serde_json::to_vec(&Entry::DataDir { trial: 0, target: "kv".into(), path: "/tmp/donn\u{e9}es".into() })
                .unwrap();
        // Cut inside the two bytes of `é`.
        let cut = torn.iter().position(|b| *b == 0xc3).unwrap() + 1;
        torn.truncate(cut);
        let mut file = OpenOptions::new().append(true).open(dir.path().join(FILE_NAME)).unwrap();
        file.write_all(&torn).unwrap();
        let entries = read(dir.path()).unwrap();
        assert_eq!(entries.len(), 2);
        assert!(matches!(entries[0], Entry::Begun { .. }));
        assert_eq!(entries[1], Entry::Finished);
    }
}
