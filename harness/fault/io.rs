//! The `io` fault: errors, delays and a full disk on the operations a target
//! makes in its data dir. The storage layer ([`super::layer`]) asks its
//! [`super::io_rules::IoRules`] before each operation; a fault arms a rule there and disarms
//! it when it heals. Every operation a rule failed or delayed is counted,
//! by kind, in the fault's heal detail; a rule that acted on nothing made
//! the fault change nothing, which makes the trial unknown.
//!
//! An error is answered before the operation reaches the data dir: a failed
//! write writes nothing, a failed fsync syncs nothing (what was written
//! stays unsynced, and a power loss after it discards it). The layer
//! serves one operation at a time, so a delay holds every operation behind
//! it, as a saturated disk would.

use std::path::Path;
use std::sync::Arc;

use super::io_rules::Armed;
use super::layer::StorageLayer;
use super::{Fault, FaultContext, FaultError, FaultGuard};
use crate::history::EventKind;
use crate::scenario::{IoAction, IoPlan};

/// The sum of the lengths of the files under `dir`, links not followed.
fn used_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => used_bytes(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map_or(0, |m| m.len()),
            _ => 0,
        })
        .sum()
}

pub struct IoFault {
    pub plan: IoPlan,
    pub layer: Arc<StorageLayer>,
}

impl Fault for IoFault {
    fn inject(&self, ctx: &FaultContext) -> Result<FaultGuard, FaultError> {
        let used = match self.plan.action {
            IoAction::DiskFull(_) => used_bytes(self.layer.backing()),
            _ => 0,
        };
        let rule = Arc::new(Armed::new(&self.plan, ctx.rng(), used));
        let rules = Arc::clone(self.layer.rules());
        rules.arm(Arc::clone(&rule));
        ctx.injected(rule.describe());
        let (recorder, fault, target) = (ctx.recorder.clone(), ctx.index, ctx.target.name().to_string());
        Ok(ctx.heal_with(move || {
            rules.disarm(&rule);
            rule.summary().unwrap_or_else(|| {
                // A fault that changed nothing proves nothing.
                let error = format!(
                    "the fault changed nothing: no operation it acts on ({}) came while it was in",
                    rule.describe()
                );
                recorder.record(EventKind::FaultFailed { fault, target, error });
                "changed nothing".to_string()
            })
        }))
    }
}
