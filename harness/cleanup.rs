//! `crashlab cleanup RUN_DIR`: heals what a killed harness left behind, and
//! nothing else. The journal says what the run made; cleanup acts on a
//! thing only when it can also prove, from the thing itself, that it is the
//! run's own:
//!
//! - a process: its pid *and* start time are journaled (a group: its leader
//!   is, see [`procfs::group_members`]), or it carries the run's token in
//!   the environment it was started with;
//! - a file: it lies inside a data dir the run journaled, is reopened
//!   beneath it following no link, and has a single link; the saved bytes
//!   lie inside the run directory;
//! - a mount: it is mounted over a journaled data dir, and it is a
//!   `crashlab-unsynced` FUSE layer;
//! - a namespace or link: its name has the shape the run gives them;
//! - a container or compose project: it carries a label the run journaled
//!   before it created anything.
//!
//! So a journal edited by somebody else cannot steer cleanup into an
//! unrelated file, mount or process.

use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::journal::{self, Entry};
use crate::kinds::ClusterObjectKind;
use crate::scenario::SignalScope;
use crate::targets::procfs;
use crate::targets::stopping::{self, group_members, stop};

/// What cleanup did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Cleanup {
    /// Process groups that were still paused and were resumed.
    pub resumed: Vec<i32>,
    /// Processes of the run that were still running and were stopped.
    pub stopped: Vec<i32>,
    /// FUSE layers that were still mounted and were unmounted.
    pub unmounted: Vec<PathBuf>,
    /// Damaged files whose original bytes were put back.
    pub restored: Vec<PathBuf>,
    /// Damaged files left as they are, and why.
    pub not_restored: Vec<(PathBuf, String)>,
    /// Journal entries that named something the run cannot prove is its
    /// own, left alone.
    pub refused: Vec<String>,
    /// Network namespaces and links deleted.
    pub network_removed: usize,
    /// Containers of the run removed.
    pub containers_removed: usize,
    /// The engine networks of the run removed (its containers' fixed
    /// addresses).
    pub engine_networks_removed: usize,
    /// Compose projects of the run taken down.
    pub compose_projects_down: usize,
    /// libfaketime control files removed.
    pub clock_files_removed: usize,
    /// Cgroups of `memory` and `cpu` faults removed.
    pub cgroups_removed: usize,
    /// Partition rules of an agent's host (not in a namespace) removed.
    pub rules_removed: usize,
    /// What faults left in a cluster: each object (`NetworkPolicy
    /// shop/NAME`, `deployment/kv of namespace shop`), what was done to it
    /// (`deleted`, `scaled back to 1 replica(s):`), or why not.
    pub cluster_objects: Vec<(String, String, Result<(), String>)>,
    /// Each remote host of the run: what `crashlab cleanup` of its agent's
    /// run said there, or why it could not be run.
    pub hosts: Vec<(String, Result<String, String>)>,
    /// The trial the harness was killed in: how many of its events were
    /// appended to the history (`analyze` then checks it), or why not.
    pub history_kept: Option<Result<usize, String>>,
}

#[derive(Debug, thiserror::Error)]
pub enum CleanupError {
    #[error("{0}")]
    Journal(io::Error),
    #[error("not a run directory (no fault journal, no run.lock, no scenario.toml)")]
    NotARun,
    #[error("no such directory")]
    NoSuchDir,
    #[error("the run is still going: pid {pid} holds its lock (stop it with Ctrl-C or SIGTERM; it heals on its own)")]
    InUse { pid: i32 },
    #[error("{0}")]
    Unmount(io::Error),
    #[error("{0}")]
    Engine(String),
}

/// What the journal says the run owns.
struct Owned {
    tokens: Vec<String>,
    data_dirs: Vec<PathBuf>,
    labels: BTreeSet<String>,
    /// The engine they are in, when not the default (an agent's journal
    /// on a host whose `engine` is named).
    engine: Option<PathBuf>,
    run_dir: PathBuf,
}

impl Owned {
    fn of(entries: &[Entry], run_dir: &Path) -> Owned {
        let mut owned = Owned {
            tokens: Vec::new(),
            data_dirs: Vec::new(),
            labels: BTreeSet::new(),
            engine: None,
            run_dir: run_dir.canonicalize().unwrap_or_else(|_| run_dir.to_path_buf()),
        };
        for entry in entries {
            match entry {
                Entry::Begun { token } if token.len() >= 32 => owned.tokens.push(token.clone()),
                Entry::DataDir { path, .. } if !crate::confine::is_system_dir(path) => {
                    owned.data_dirs.push(path.clone())
                }
                Entry::ContainerLabel { run_label, engine } if !run_label.is_empty() => {
                    owned.labels.insert(run_label.clone());
                    owned.engine = engine.clone();
                }
                Entry::ContainerCreated { run_label, .. } if !run_label.is_empty() => {
                    owned.labels.insert(run_label.clone());
                }
                _ => {}
            }
        }
        owned
    }

    fn token(&self) -> Option<&str> {
        self.tokens.last().map(String::as_str)
    }

    /// Every live process that carries one of the run's tokens.
    fn token_carriers(&self) -> Vec<Pid> {
        stopping::token_carriers(&self.tokens)
    }
}

/// Heals what the journal says may still be in effect and the run can
/// prove is its own (see the module's documentation).
pub fn cleanup(run_dir: &Path) -> Result<Cleanup, CleanupError> {
    if !run_dir.is_dir() {
        return Err(CleanupError::NoSuchDir);
    }
    if let Some(pid) = crate::run_dir::holder(run_dir) {
        return Err(CleanupError::InUse { pid });
    }
    if !run_dir.join(journal::FILE_NAME).exists() {
        // The journal is written before the run starts anything: a run
        // killed before it (even before its lock, in the empty directory
        // it had just made) left nothing to heal.
        let empty = std::fs::read_dir(run_dir).is_ok_and(|mut d| d.next().is_none());
        let a_run = empty
            || [crate::run_dir::LOCK_FILE, crate::run_dir::SCENARIO_FILE].iter().any(|f| run_dir.join(f).exists());
        return if a_run { Ok(Cleanup::default()) } else { Err(CleanupError::NotARun) };
    }
    let entries = journal::read(run_dir).map_err(CleanupError::Journal)?;
    let owned = Owned::of(&entries, run_dir);
    let mut done = Cleanup::default();
    resume_paused(&entries, &owned, &mut done);
    let groups: Vec<(i32, u64)> = entries
        .iter()
        .filter_map(|e| match e {
            Entry::TargetStarted { pid, start_time, .. }
            | Entry::HolderStarted { pid, start_time, .. }
            | Entry::CommandStarted { pid, start_time, .. } => Some((*pid, *start_time)),
            _ => None,
        })
        .collect();
    let members = || {
        let mut all = group_members(&groups, owned.token());
        all.extend(owned.token_carriers());
        all.sort();
        all.dedup();
        all
    };
    done.stopped = stop(members, Duration::from_secs(3));
    unmount_layers(&entries, &owned, &mut done)?;
    remove_containers(&entries, &owned, &mut done)?;
    remove_networks(&entries, &mut done);
    remove_host_rules(&entries, &owned, &mut done);
    restore_files(&entries, &owned, &mut done);
    remove_clock_files(&entries, &owned, &mut done);
    remove_cgroups(&entries, &owned, &mut done);
    clean_hosts(&entries, &mut done);
    delete_cluster_objects(&entries, &owned, &mut done);
    restore_scales(&entries, &mut done);
    resume_pods(&entries, &mut done);
    let spool = run_dir.join(crate::run_dir::SPOOL_FILE);
    done.history_kept = crate::history::complete_left_spool(&spool, &run_dir.join(crate::run_dir::HISTORY_FILE))
        .map_err(|e| format!("{}: {e}", spool.display()))
        .transpose();
    Ok(done)
}

/// The cluster a run reached, as it reached it, if that still leads to the
/// same API server.
fn reach(cluster: &journal::ClusterRef) -> Result<crate::cluster::Cluster, String> {
    let reached = crate::cluster::Cluster::connect(cluster.kubeconfig.as_deref(), cluster.context.as_deref())
        .map_err(|e| e.to_string())?;
    if reached.server() != cluster.server {
        return Err(format!(
            "the run's kubeconfig now leads to {}, not to {}, the API server the run used: another cluster's, left \
             alone",
            reached.server(),
            cluster.server
        ));
    }
    Ok(reached)
}

/// Scales back each workload a fault scaled and did not scale back, to the
/// replicas it had (journaled before the fault's call), if it still has
/// the replicas the fault gave it: one scaled since by someone else is
/// theirs, and left alone.
fn restore_scales(entries: &[Entry], done: &mut Cleanup) {
    for entry in entries {
        let Entry::Scaled { cluster, namespace, owner, from, to, .. } = entry else { continue };
        let restored = entries
            .iter()
            .any(|e| matches!(e, Entry::ScaleRestored { namespace: ns, owner: o } if ns == namespace && o == owner));
        if restored {
            continue;
        }
        let object = format!("{owner} of namespace `{namespace}`");
        // `Ok(false)`: it has its replicas back already (an earlier cleanup).
        let result =
            reach(cluster).and_then(|cluster| match cluster.replicas(namespace, owner).map_err(|e| e.to_string())? {
                now if now == *to => cluster.scale(namespace, owner, *from).map(|()| true).map_err(|e| e.to_string()),
                now if now == *from => Ok(false),
                now => Err(format!("it has {now} replica(s), not the {to} the run set: scaled since by someone else")),
            });
        if result != Ok(false) {
            done.cluster_objects.push((object, format!("scaled back to {from} replica(s):"), result.map(|_| ())));
        }
    }
}

/// Sends SIGCONT into each pod a fault paused and did not resume, if it is
/// still the pod of the journaled uid (a pod gone or replaced has nothing
/// of ours stopped). A pod with no stopped process is not mentioned.
fn resume_pods(entries: &[Entry], done: &mut Cleanup) {
    use crate::fault::pod_exec::{script, Seen};
    for entry in entries {
        let Entry::PodPaused { trial, fault, cluster, namespace, pod, uid, container } = entry else { continue };
        if entries.iter().any(|e| matches!(e, Entry::PodResumed { trial: t, fault: f } if t == trial && f == fault)) {
            continue;
        }
        let argv = ["/bin/sh".to_string(), "-c".into(), script(nix::sys::signal::Signal::SIGCONT, SignalScope::All)];
        let result = reach(cluster).and_then(|cluster| {
            match cluster.pod(namespace, pod).map_err(|e| e.to_string())? {
                Some(now) if now.uid == *uid => {}
                _ => return Ok(0),
            }
            let done = cluster
                .exec(namespace, pod, container.as_deref(), &argv, Duration::from_secs(30))
                .map_err(|e| e.to_string())?;
            Ok(Seen::parse(&done.stdout()).was_stopped)
        });
        if result != Ok(0) {
            let object = format!("pod {namespace}/{pod}");
            let action = format!("resumed ({} stopped process(es) sent SIGCONT)", result.as_ref().unwrap_or(&0));
            done.cluster_objects.push((object, action, result.map(|_| ())));
        }
    }
}

/// Deletes each object a fault created in a cluster and did not delete,
/// if it still carries the run's token as its label (and only then: an
/// object of that name that is not the run's is left alone). One already
/// gone is not mentioned.
fn delete_cluster_objects(entries: &[Entry], owned: &Owned, done: &mut Cleanup) {
    for entry in entries {
        let Entry::ClusterObjectCreated { cluster, namespace, kind, name, .. } = entry else { continue };
        let deleted = entries.iter().any(|e| {
            matches!(e, Entry::ClusterObjectDeleted { namespace: ns, kind: k, name: n }
                if ns == namespace && k == kind && n == name)
        });
        if deleted {
            continue;
        }
        let Some(token) = owned.token() else { continue };
        let object = format!("{kind} {namespace}/{name}");
        let result = reach(cluster).and_then(|cluster| match kind {
            ClusterObjectKind::NetworkPolicy => {
                cluster.delete_policy(namespace, name, token, None).map_err(|e| e.to_string())
            }
            chaos => cluster.delete_chaos(namespace, *chaos, name, token, None).map_err(|e| e.to_string()),
        });
        if result != Ok(false) {
            done.cluster_objects.push((object, "deleted".into(), result.map(|_| ())));
        }
    }
}

/// Runs `crashlab cleanup` on each remote host's agent run, through the
/// copy of crashlab the run put there. An agent that outlived the control
/// node stops its targets when its link closes: its run is in use until
/// then, so a refusal is tried again for a while.
fn clean_hosts(entries: &[Entry], done: &mut Cleanup) {
    for entry in entries {
        let Entry::Host { host: name, ssh, dir } = entry else { continue };
        let host: crate::scenario::HostPlan = match serde_json::from_value(ssh.clone()) {
            Ok(host) => host,
            Err(e) => {
                done.hosts.push((name.clone(), Err(format!("the journal's entry is not a host: {e}"))));
                continue;
            }
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let result = loop {
            let result = crate::proxy::runtime().block_on(crate::targets::remote::relay::cleanup_on(&host, dir));
            match &result {
                Err(text) if text.contains("still going") && std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(500))
                }
                _ => break result,
            }
        };
        done.hosts.push((host.name.clone(), result));
    }
}

fn healed(entries: &[Entry], trial: u32, fault: usize) -> bool {
    entries.iter().any(|e| matches!(e, Entry::Healed { trial: t, fault: f } if *t == trial && *f == fault))
}

fn resume_paused(entries: &[Entry], owned: &Owned, done: &mut Cleanup) {
    for entry in entries {
        if let Entry::Injected { trial, fault, kind, pid, start_time, .. } = entry {
            if *kind == crate::kinds::FaultName::Pause && !healed(entries, *trial, *fault) {
                let members = procfs::group_members(*pid, *start_time, owned.token());
                for member in &members {
                    let _ = kill(*member, Signal::SIGCONT);
                }
                if !members.is_empty() {
                    done.resumed.push(*pid);
                }
            }
        }
    }
}

fn unmount_layers(entries: &[Entry], owned: &Owned, done: &mut Cleanup) -> Result<(), CleanupError> {
    for entry in entries {
        if let Entry::Mounted { trial, mountpoint, .. } = entry {
            let unmounted = entries
                .iter()
                .any(|e| matches!(e, Entry::Unmounted { trial: t, mountpoint: m } if t == trial && m == mountpoint));
            if unmounted || !crate::fault::layer::is_mounted(mountpoint) {
                continue;
            }
            if !owned.data_dirs.contains(mountpoint) || !crate::fault::layer::is_our_layer(mountpoint) {
                done.refused.push(format!(
                    "mount {}: not a crashlab-unsynced layer over a data dir of the run",
                    mountpoint.display()
                ));
                continue;
            }
            crate::fault::layer::unmount(mountpoint).map_err(CleanupError::Unmount)?;
            done.unmounted.push(mountpoint.clone());
        }
    }
    Ok(())
}

/// How long the engine must show nothing of the run before cleanup trusts
/// that no create of the killed harness is still under way (a network's
/// takes ~100 ms, more on a loaded machine), and how long it waits at most.
const ENGINE_QUIET: Duration = Duration::from_secs(1);
const ENGINE_PATIENCE: Duration = Duration::from_secs(10);

/// Removes the containers, then the networks, that carry a label of the
/// run; returns how many it found.
fn remove_labelled(
    engine: &crate::engine::Engine,
    labels: &BTreeSet<String>,
    done: &mut Cleanup,
) -> Result<usize, CleanupError> {
    let mut found = 0;
    for label in labels {
        let filter = format!("{}={label}", crate::engine::RUN_LABEL);
        let containers = engine.labelled(&filter).map_err(|e| CleanupError::Engine(e.to_string()))?;
        found += containers.len();
        for (id, ..) in containers {
            if engine.remove(&id).is_ok() {
                done.containers_removed += 1;
            }
        }
        // The run's network, once no container of the run is on it.
        let networks = engine.labelled_networks(&filter).map_err(|e| CleanupError::Engine(e.to_string()))?;
        found += networks.len();
        for name in networks {
            if engine.remove_network(&name).is_ok() {
                done.engine_networks_removed += 1;
            }
        }
    }
    Ok(found)
}

fn remove_containers(entries: &[Entry], owned: &Owned, done: &mut Cleanup) -> Result<(), CleanupError> {
    // Found by the run's label, journaled before the first create, so
    // that none escapes even if its own creation was not journaled.
    if !owned.labels.is_empty() {
        let engine = crate::engine::Engine::connect_at(owned.engine.as_deref())
            .map_err(|e| CleanupError::Engine(e.to_string()))?;
        // A create the killed harness had sent goes on in the engine
        // without it, and may complete after a first listing (a network
        // left so in CI): the engine is listed again until it has shown
        // nothing of the run for a while.
        let (begun, mut quiet_since) = (Instant::now(), Instant::now());
        while quiet_since.elapsed() < ENGINE_QUIET && begun.elapsed() < ENGINE_PATIENCE {
            if remove_labelled(&engine, &owned.labels, done)? > 0 {
                quiet_since = Instant::now();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    for entry in entries {
        if let Entry::ComposeUp { project, file, .. } = entry {
            let down = entries.iter().any(|e| matches!(e, Entry::ComposeDown { project: p, .. } if p == project));
            if down {
                continue;
            }
            if !owned.labels.iter().any(|l| project.starts_with(&l.to_ascii_lowercase())) {
                done.refused.push(format!("compose project {project}: its name carries no label of the run"));
                continue;
            }
            if crate::compose::down(project, file).is_ok() {
                done.compose_projects_down += 1;
            }
        }
    }
    Ok(())
}

/// Namespaces take their partition rules with them.
fn remove_networks(entries: &[Entry], done: &mut Cleanup) {
    for entry in entries {
        if let Entry::NetworkCreated { names } = entry {
            let destroyed = entries.iter().any(|e| matches!(e, Entry::NetworkDestroyed { names: n } if n == names));
            if destroyed {
                continue;
            }
            match names.check() {
                Ok(()) => done.network_removed += crate::network::destroy(names),
                Err(why) => done.refused.push(why),
            }
        }
    }
}

/// Deletes the partition rules an agent set on its own host (a namespace's
/// vanish with it) that were not healed: only a rule that carries one of
/// the run's tokens in its comment, as the agent marks them.
fn remove_host_rules(entries: &[Entry], owned: &Owned, done: &mut Cleanup) {
    for entry in entries {
        let Entry::PartitionRule { trial, fault, namespace, rule } = entry else { continue };
        if !namespace.is_empty() || healed(entries, *trial, *fault) {
            continue;
        }
        let ours = owned.tokens.iter().any(|t| rule.ends_with(&crate::agent::marked(t, *trial, *fault)));
        if !ours {
            done.refused.push(format!("rule `{}`: not marked with the run's token", rule.join(" ")));
        } else if crate::agent::iptables("-D", rule).is_ok() {
            done.rules_removed += 1;
        }
    }
}

/// Removes the clock faults' control files left in the run directory (the
/// processes that read them were stopped before).
fn remove_clock_files(entries: &[Entry], owned: &Owned, done: &mut Cleanup) {
    for entry in entries {
        let Entry::ClockFile { path, .. } = entry else { continue };
        let inside = path.parent().and_then(|p| p.canonicalize().ok()).is_some_and(|p| p.starts_with(&owned.run_dir));
        if !inside {
            done.refused.push(format!("clock file {}: not inside the run directory", path.display()));
        } else if std::fs::remove_file(path).is_ok() {
            done.clock_files_removed += 1;
        }
    }
}

/// Removes the memory cgroups of `memory` faults that were not healed:
/// only cgroups of ours (see [`crate::targets::cgroup::is_ours`]).
fn remove_cgroups(entries: &[Entry], owned: &Owned, done: &mut Cleanup) {
    for entry in entries {
        let Entry::Cgroup { trial, fault, path } = entry else { continue };
        if healed(entries, *trial, *fault) || !path.exists() {
            continue;
        }
        // Its name carries the run's token: a cgroup of another run is not ours.
        let named = owned.token().is_some_and(|t| crate::targets::cgroup::named_for(path, t));
        if !named || !crate::targets::cgroup::is_ours(path) {
            done.refused.push(format!("cgroup {}: not one the run makes", path.display()));
        } else if crate::targets::cgroup::remove(path).is_ok() {
            done.cgroups_removed += 1;
        }
    }
}

/// Newest damage first, so that two faults on one file unwind in order.
fn restore_files(entries: &[Entry], owned: &Owned, done: &mut Cleanup) {
    for entry in entries.iter().rev() {
        let Entry::Corrupted { trial, fault, saved } = entry else { continue };
        if healed(entries, *trial, *fault) {
            continue;
        }
        let saved_inside = saved.saved.canonicalize().is_ok_and(|s| s.starts_with(&owned.run_dir));
        let refusal = if !owned.data_dirs.contains(&saved.data_dir) {
            Some(format!("{} is not a data dir of the run", saved.data_dir.display()))
        } else if !saved.file.starts_with(&saved.data_dir) {
            Some(format!("not inside the data dir {}", saved.data_dir.display()))
        } else if !saved_inside {
            Some(format!("the saved bytes {} are not inside the run directory", saved.saved.display()))
        } else {
            None
        };
        if let Some(why) = refusal {
            done.not_restored.push((saved.file.clone(), format!("refused: {why}")));
            continue;
        }
        match saved.restore() {
            Ok(()) => done.restored.push(saved.file.clone()),
            Err(why) => done.not_restored.push((saved.file.clone(), why.to_string())),
        }
    }
}
