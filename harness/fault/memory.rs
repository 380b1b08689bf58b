//! The `memory` fault: the target's processes moved into a memory cgroup of
//! their own with a limit, which the OOM killer enforces (see
//! [`crate::targets::cgroup`]). The heal lifts it and says how many processes the
//! OOM killer killed, so that an outage it caused is told as an OOM kill.
//! It holds the incarnation it found: one the harness restarts after an
//! OOM kill runs outside it.

use super::{Fault, FaultContext, FaultError, FaultErrorKind, FaultGuard};
use crate::journal::Entry;
use crate::scenario::SizeLimit;
use crate::targets::cgroup;
use crate::targets::{procfs, reaper};

pub struct MemoryFault(pub SizeLimit);

impl Fault for MemoryFault {
    fn inject(&self, ctx: &FaultContext) -> Result<FaultGuard, FaultError> {
        let other = |why: String| ctx.error(FaultErrorKind::Other(why));
        let io = |what: &str, source| ctx.error(FaultErrorKind::Io { what: what.to_string(), source });
        let process = ctx.target.host_process().ok_or_else(|| other("the target is not running".into()))?;
        let parent = cgroup::own_memory_cgroup().map_err(|e| io("no memory cgroup to limit the target in", e))?;
        let token = reaper::run_token().unwrap_or_default();
        let path = parent.join(cgroup::name(&token, ctx.trial, ctx.index));
        ctx.journal(&Entry::Cgroup { trial: ctx.trial, fault: ctx.index, path: path.clone() })?;
        let charges_move =
            cgroup::create(&path).map_err(|e| io(&format!("cannot make the cgroup {}", path.display()), e))?;
        let (mut moved, mut resident) = (0, 0);
        // The main process's tree only: an orphan reparented to the harness
        // carries the run's token whichever target started it.
        procfs::walk_tree(process.pid, process.start_time, &[], &mut |pid, _| {
            if cgroup::add(&path, pid).is_ok() {
                moved += 1;
                resident += cgroup::resident(pid);
            }
        });
        // What the target uses now: its charges, moved with it; or, where
        // the kernel moves none, its resident memory, while the cgroup
        // counts only what it allocates from now on.
        let limited = cgroup::usage(&path).and_then(|charged| {
            let used = if charges_move { charged } else { resident };
            let allowed = match self.0 {
                SizeLimit::Total(bytes) => bytes.checked_sub(used).ok_or_else(|| {
                    std::io::Error::other(format!("the target uses {used} bytes already, more than {bytes}"))
                })?,
                SizeLimit::Headroom(room) => room,
            };
            cgroup::set_limit(&path, charged + allowed).map(|()| (used, used + allowed))
        });
        let (used, limit) = match (moved, limited) {
            (0, _) => Err(other("no process of the target could be moved into the cgroup".into())),
            (_, Err(e)) => Err(io("cannot set the memory limit", e)),
            (_, Ok(figures)) => Ok(figures),
        }
        .inspect_err(|_| {
            let _ = cgroup::remove(&path);
        })?;
        ctx.injected(format!(
            "memory limited to {limit} bytes (the target used {used}) for pid {} and its tree, {moved} process(es) in \
             {}",
            process.pid,
            path.display()
        ));
        Ok(ctx.heal_with(move || {
            let kills = cgroup::oom_kills(&path);
            let removed = cgroup::remove(&path).err().map_or(String::new(), |e| format!("; the cgroup stays: {e}"));
            match kills {
                0 => format!("no process was OOM-killed{removed}"),
                n => format!("the OOM killer killed {n} process(es) of the target{removed}"),
            }
        }))
    }
}
