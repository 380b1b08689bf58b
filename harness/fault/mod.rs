//! Faults: `inject` returns a [`FaultGuard`] that heals (explicitly, or on
//! drop as a backstop). Every injection is journaled, and synced, before it
//! takes effect, so that `crashlab cleanup` can heal after a killed harness.
//!
//! Guardrails, for every fault: it acts only on processes the run started
//! and on files inside the target's data dir (see [`confine`]).

mod chaos_mesh;
mod clock;
pub mod corrupt;
mod cpu;
pub mod hog;
pub mod io;
pub mod io_rules;
pub mod layer;
mod limits;
mod link;
mod memory;
mod packet;
mod partition;
mod passthrough;
mod pod;
pub mod pod_exec;
mod process;
pub mod remote;
pub mod stale_lock;
pub mod unsynced;

use std::path::PathBuf;
use std::sync::Arc;

use rand::SeedableRng;

use crate::history::{EventKind, Recorder};
use crate::journal::{Entry, Journal};
use crate::scenario::FaultKind;
use crate::targets::{Target, TargetError};
pub use process::ProcessFault;

/// Everything an injection needs to act and to leave a trace.
pub struct FaultContext {
    pub trial: u32,
    pub index: usize,
    /// The fault's kind, as its events and journal entries name it.
    pub kind: crate::kinds::FaultName,
    pub target: Arc<dyn Target>,
    pub journal: Arc<Journal>,
    pub recorder: Recorder,
    pub scheduled_ms: f64,
    /// The trial's seed: offsets and tears are drawn from it.
    pub seed: u64,
    /// Where the fault keeps what it needs to undo itself (original bytes).
    pub trial_dir: PathBuf,
    /// How its target was chosen at run time, if it was: said first in the
    /// injection's detail.
    pub chosen: Option<String>,
}

impl FaultContext {
    /// A generator private to this fault of this trial.
    pub fn rng(&self) -> rand_chacha::ChaCha8Rng {
        let stream = (self.index as u64 + 1).wrapping_mul(0xD1B5_4A32_D192_ED03);
        rand_chacha::ChaCha8Rng::seed_from_u64(self.seed ^ stream)
    }

    pub fn journal(&self, entry: &Entry) -> Result<(), FaultError> {
        self.journal.append(entry).map_err(|source| self.error(FaultErrorKind::Journal(source)))
    }

    pub fn error(&self, kind: FaultErrorKind) -> FaultError {
        FaultError { fault: self.index, target: self.target.name().to_string(), kind }
    }

    /// The guard of a fault that `heal` undoes; `heal` says how it went
    /// (or nothing), and the fault is marked healed in the history and the
    /// journal.
    pub fn heal_with(&self, heal: impl FnOnce() -> String + Send + 'static) -> FaultGuard {
        let (trial, fault, target) = (self.trial, self.index, self.target.name().to_string());
        let (recorder, journal) = (self.recorder.clone(), Arc::clone(&self.journal));
        FaultGuard::new(move || {
            let detail = heal();
            recorder.record(EventKind::FaultHealed { fault, target, detail });
            let _ = journal.append(&Entry::Healed { trial, fault });
        })
    }

    /// Records the injection in the history, with what exactly it did.
    pub fn injected(&self, detail: String) {
        self.injected_at(std::time::Instant::now(), detail);
    }

    /// The fault took effect at `at` (a signal to a whole tree is in effect
    /// once its last process got it, not when the fault began to look).
    pub fn injected_at(&self, at: std::time::Instant, detail: String) {
        self.injected_dated(at, detail, self.target.remote_clock());
    }

    /// `injected_at`, dated by a remote host's agent (or several: their
    /// names, and the largest uncertainty).
    pub fn injected_dated(
        &self,
        at: std::time::Instant,
        detail: String,
        remote: Option<(String, std::time::Duration)>,
    ) {
        let detail = match &remote {
            Some((host, uncertainty)) => crate::targets::remote::link::dated(&detail, host, *uncertainty),
            None => detail,
        };
        self.recorder.record_at(
            at,
            EventKind::FaultInjected {
                fault: self.index,
                kind: self.kind,
                target: self.target.name().to_string(),
                scheduled_ms: self.scheduled_ms,
                detail: match &self.chosen {
                    Some(chosen) => format!("{chosen}; {detail}"),
                    None => detail,
                },
                uncertainty_ms: remote.map(|(_, u)| ms(u)),
            },
        );
    }
}

fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[derive(Debug, thiserror::Error)]
#[error("fault #{} on `{target}`: {kind}", fault + 1)]
pub struct FaultError {
    pub fault: usize,
    pub target: String,
    pub kind: FaultErrorKind,
}

#[derive(Debug, thiserror::Error)]
pub enum FaultErrorKind {
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error("cannot journal the injection: {0}")]
    Journal(std::io::Error),
    #[error("{0}")]
    Refused(#[from] crate::confine::Refusal),
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    #[error("{0}")]
    Other(String),
}

/// Undoes a fault. Healing twice is harmless; dropping an unhealed guard heals.
pub struct FaultGuard {
    look: Option<Box<dyn FnOnce() + Send>>,
    heal: Option<Box<dyn FnOnce() + Send>>,
}

impl FaultGuard {
    /// A fault that needs no healing (a kill: recovery is the target's job).
    pub fn nothing() -> Self {
        FaultGuard { look: None, heal: None }
    }

    /// Has the fault read what its heal will report while its target still
    /// runs: the end of a trial stops the targets before it heals what
    /// lasts, and a stopped container's cgroups are gone.
    pub fn look(&mut self) {
        if let Some(look) = self.look.take() {
            look();
        }
    }

    /// `look` (see [`FaultGuard::look`]) runs before the heal, if it was
    /// not asked for earlier.
    pub fn looking_first(mut self, look: impl FnOnce() + Send + 'static) -> Self {
        self.look = Some(Box::new(look));
        self
    }

    pub fn heal(mut self) {
        self.heal_now();
    }

    fn heal_now(&mut self) {
        self.look();
        if let Some(heal) = self.heal.take() {
            heal();
        }
    }
}

impl Drop for FaultGuard {
    fn drop(&mut self) {
        self.heal_now();
    }
}

impl FaultGuard {
    pub fn new(heal: impl FnOnce() + Send + 'static) -> Self {
        FaultGuard { look: None, heal: Some(Box::new(heal)) }
    }
}

pub trait Fault: Send + Sync {
    fn inject(&self, ctx: &FaultContext) -> Result<FaultGuard, FaultError>;
}

/// What a trial's faults act on beyond their target, set up by the runner
/// and handed to each fault as it is built.
pub trait Resources {
    /// The storage layer (FUSE) over a target's data dir.
    fn layer(&self, target: &str) -> Option<Arc<layer::StorageLayer>>;
    fn proxy(&self, name: &str) -> Option<Arc<crate::proxy::Proxy>>;
    /// The targets' namespaces.
    fn network(&self) -> Option<Arc<crate::network::Network>>;
    /// The trial's targets (a partition between hosts finds theirs).
    fn targets(&self) -> Vec<Arc<dyn Target>> {
        Vec::new()
    }
}

/// The fault that a plan's kind describes, with the resources it acts on.
pub fn build(kind: &FaultKind, resources: &dyn Resources, target: &str) -> Result<Box<dyn Fault>, FaultErrorKind> {
    let missing = |what: &str| FaultErrorKind::Other(what.to_string());
    Ok(match kind {
        FaultKind::Kill { .. }
        | FaultKind::Pause { .. }
        | FaultKind::Restart
        | FaultKind::Disconnect { .. }
        | FaultKind::Command { .. } => Box::new(ProcessFault(kind.clone())),
        FaultKind::Corrupt(plan) => Box::new(corrupt::Corrupt(plan.clone())),
        FaultKind::StaleLock(plan) => Box::new(stale_lock::StaleLock(plan.clone())),
        FaultKind::LoseUnsynced { torn } => Box::new(unsynced::LoseUnsynced {
            torn: *torn,
            layer: resources.layer(target).ok_or_else(|| missing("no storage layer is mounted over the data dir"))?,
        }),
        FaultKind::Io(plan) => Box::new(io::IoFault {
            plan: plan.clone(),
            layer: resources.layer(target).ok_or_else(|| missing("no storage layer is mounted over the data dir"))?,
        }),
        FaultKind::Link { proxy, direction, toxic, .. } => Box::new(link::LinkFault {
            direction: *direction,
            toxic: *toxic,
            proxy: resources.proxy(proxy).ok_or_else(|| missing("the fault's proxy is not running"))?,
        }),
        FaultKind::Clock(plan) => Box::new(clock::ClockFault(*plan)),
        FaultKind::Memory { limit, .. } => Box::new(memory::MemoryFault(*limit)),
        FaultKind::Cpu { cpus, .. } => Box::new(cpu::CpuFault(*cpus)),
        FaultKind::Hog(plan) => Box::new(hog::Hog(*plan)),
        FaultKind::DeletePod { grace } => Box::new(pod::RemovePod(pod::Removal::Delete(*grace))),
        FaultKind::EvictPod => Box::new(pod::RemovePod(pod::Removal::Evict)),
        FaultKind::IsolatePod { .. } => Box::new(pod::IsolatePod),
        FaultKind::Scale { replicas, .. } => Box::new(pod::Scale(*replicas)),
        FaultKind::ChaosMesh(plan) => Box::new(chaos_mesh::ChaosMesh(plan.clone())),
        FaultKind::Packet(plan) => Box::new(packet::Packet {
            plan: plan.clone(),
            network: resources.network().ok_or_else(|| missing("the targets are not in network namespaces"))?,
        }),
        FaultKind::Partition(plan) => Box::new(partition::Partition {
            plan: plan.clone(),
            network: resources.network().ok_or_else(|| missing("the targets are not in network namespaces"))?,
        }),
    })
}
