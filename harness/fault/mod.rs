//! Faults: `inject` returns a [`FaultGuard`] that heals (explicitly, or on
//! drop as a backstop). Every injection is journaled, and synced, before it
//! takes effect, so that `crashlab cleanup` can heal after a killed harness.

pub mod journal;

use std::sync::Arc;

use crate::runner::history::{EventKind, Recorder};
use crate::scenario::FaultKind;
use crate::target::{Target, TargetError};
use journal::{Entry, Journal};

/// Everything an injection needs to act and to leave a trace.
pub struct FaultContext {
    pub trial: u32,
    pub index: usize,
    pub target: Arc<dyn Target>,
    pub journal: Arc<Journal>,
    pub recorder: Recorder,
    pub scheduled_ms: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum FaultError {
    #[error("{kind} fault #{index}: {source}")]
    Target { kind: &'static str, index: usize, source: TargetError },
    #[error("{kind} fault #{index}: cannot journal the injection: {source}")]
    Journal { kind: &'static str, index: usize, source: std::io::Error },
}

/// Undoes a fault. Healing twice is harmless; dropping an unhealed guard heals.
pub struct FaultGuard {
    heal: Option<Box<dyn FnOnce() + Send>>,
}

impl FaultGuard {
    /// A fault that needs no healing (a kill: recovery is the target's job).
    pub fn nothing() -> Self {
        FaultGuard { heal: None }
    }

    pub fn heal(mut self) {
        if let Some(heal) = self.heal.take() {
            heal();
        }
    }
}

impl Drop for FaultGuard {
    fn drop(&mut self) {
        if let Some(heal) = self.heal.take() {
            heal();
        }
    }
}

pub trait Fault: Send + Sync {
    fn inject(&self, ctx: &FaultContext) -> Result<FaultGuard, FaultError>;
}

/// Faults on a target's processes: kill, pause, restart.
pub struct ProcessFault(pub FaultKind);

impl Fault for ProcessFault {
    fn inject(&self, ctx: &FaultContext) -> Result<FaultGuard, FaultError> {
        let kind = self.0.name();
        let target_err = |source| FaultError::Target { kind, index: ctx.index, source };
        let process = ctx
            .target
            .host_process()
            .ok_or_else(|| target_err(TargetError::NotRunning { target: ctx.target.name().to_string() }))?;
        ctx.journal
            .append(&Entry::Injected {
                trial: ctx.trial,
                fault: ctx.index,
                kind: kind.to_string(),
                target: ctx.target.name().to_string(),
                pid: process.pid,
                start_time: process.start_time,
            })
            .map_err(|source| FaultError::Journal { kind, index: ctx.index, source })?;
        let injected = |detail: String| {
            ctx.recorder.record(EventKind::FaultInjected {
                fault: ctx.index,
                kind: kind.to_string(),
                target: ctx.target.name().to_string(),
                scheduled_ms: ctx.scheduled_ms,
                detail,
            })
        };
        match self.0 {
            FaultKind::Kill { signal } => {
                injected(format!("{} to pid {}", signal.as_str(), process.pid));
                ctx.target.signal(signal).map_err(target_err)?;
                Ok(FaultGuard::nothing())
            }
            FaultKind::Restart => {
                injected(format!("graceful restart of pid {}", process.pid));
                ctx.target.restart().map_err(target_err)?;
                Ok(FaultGuard::nothing())
            }
            FaultKind::Pause { .. } => {
                injected(format!("SIGSTOP to pid {}", process.pid));
                let paused = ctx.target.pause().map_err(target_err)?;
                let (target, journal, recorder) =
                    (Arc::clone(&ctx.target), Arc::clone(&ctx.journal), ctx.recorder.clone());
                let (trial, fault) = (ctx.trial, ctx.index);
                Ok(FaultGuard {
                    heal: Some(Box::new(move || {
                        let _ = target.resume(paused);
                        recorder.record(EventKind::FaultHealed { fault, target: target.name().to_string() });
                        let _ = journal.append(&Entry::Healed { trial, fault });
                    })),
                })
            }
        }
    }
}
