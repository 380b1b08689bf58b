//! A fault on a target on a remote host whose code must run there (it
//! damages files, holds a lock, limits a cgroup, starts stress-ng): the
//! host's agent injects it, with the same code as here, journals it in its
//! own journal and keeps its guard; this one asks it to look and to heal.
//! Its injection and heal reach the history as the agent's events, dated
//! within half the round trip to it.

use std::sync::Arc;

use super::{Fault, FaultContext, FaultError, FaultErrorKind, FaultGuard};
use crate::targets::Target;

/// `drawn`: a menu fault's kind and target, as the trial's seed drew them.
pub struct RemoteFault {
    pub drawn: Option<(usize, usize)>,
}

impl Fault for RemoteFault {
    fn inject(&self, ctx: &FaultContext) -> Result<FaultGuard, FaultError> {
        let remote = ctx.target.remote().ok_or_else(|| ctx.error(FaultErrorKind::Other("not on a host".into())))?;
        let (trial, fault) = (ctx.trial, ctx.index);
        remote
            .inject(fault, self.drawn, ctx.seed, ctx.scheduled_ms, ctx.chosen.clone())
            .map_err(|e| ctx.error(e.into()))?;
        let (looked, healed): (Arc<dyn Target>, Arc<dyn Target>) = (Arc::clone(&ctx.target), Arc::clone(&ctx.target));
        let guard = FaultGuard::new(move || {
            if let Some(remote) = healed.remote() {
                let _ = remote.heal(trial, fault);
            }
        });
        Ok(guard.looking_first(move || {
            if let Some(remote) = looked.remote() {
                let _ = remote.look(trial, fault);
            }
        }))
    }
}
