//! Faults on a target's processes: kill, pause, restart, disconnect, and a
//! command run against it.

use std::sync::Arc;

use super::{Fault, FaultContext, FaultError, FaultGuard};
use crate::journal::Entry;
use crate::scenario::{FaultKind, SignalScope};
use crate::targets::TargetError;

/// Faults on a target's processes: kill, pause, restart.
pub struct ProcessFault(pub FaultKind);

impl Fault for ProcessFault {
    fn inject(&self, ctx: &FaultContext) -> Result<FaultGuard, FaultError> {
        if let Some(pod) = ctx.target.pod() {
            return super::pod_exec::inject(&self.0, pod, ctx);
        }
        let target_err = |source: TargetError| ctx.error(source.into());
        let process = ctx
            .target
            .host_process()
            .ok_or_else(|| target_err(TargetError::NotRunning { target: ctx.target.name().to_string() }))?;
        ctx.journal(&Entry::Injected {
            trial: ctx.trial,
            fault: ctx.index,
            kind: ctx.kind,
            target: ctx.target.name().to_string(),
            pid: process.pid,
            start_time: process.start_time,
        })?;
        let injected = |detail: String| ctx.injected(detail);
        match self.0 {
            FaultKind::Kill { signal, scope } => {
                let scope = scope.unwrap_or_else(|| ctx.target.default_scope());
                let sent = ctx.target.signal(signal, scope).map_err(target_err)?;
                let count = match sent.processes {
                    Some(n) if scope != SignalScope::Main => {
                        format!(" ({n} process{})", if n == 1 { "" } else { "es" })
                    }
                    _ => String::new(),
                };
                let detail = format!("{} to pid {} {}{count}", signal.as_str(), process.pid, scope.describe());
                ctx.injected_at(sent.at, detail);
                Ok(FaultGuard::nothing())
            }
            FaultKind::Restart => {
                injected(format!("graceful restart of pid {}", process.pid));
                ctx.target.restart().map_err(target_err)?;
                Ok(FaultGuard::nothing())
            }
            FaultKind::Pause { .. } => {
                // A container's freeze waits for processes in uninterruptible
                // sleep (see `Engine::pause`): it is in effect once it returns.
                let asked = std::time::Instant::now();
                let paused = ctx.target.pause().map_err(target_err)?;
                let waited = asked.elapsed().as_secs_f64() * 1e3;
                injected(format!("SIGSTOP to pid {} (in effect {waited:.1} ms after it was sent)", process.pid));
                let target = Arc::clone(&ctx.target);
                Ok(ctx.heal_with(move || {
                    let _ = target.resume(paused);
                    String::new()
                }))
            }
            FaultKind::Disconnect { .. } => {
                // The engine's call takes tens of milliseconds: the fault is
                // in effect once it returns, so that is when it is recorded.
                ctx.target.disconnect().map_err(target_err)?;
                injected("taken off its network".into());
                let target = Arc::clone(&ctx.target);
                Ok(ctx.heal_with(move || target.reconnect().err().map_or(String::new(), |e| e.to_string())))
            }
            FaultKind::Command { ref argv } => {
                // The detail says the command as it ran: placeholders filled.
                injected(format!("ran `{}`", ctx.target.render(argv).join(" ")));
                let out = ctx
                    .target
                    .exec(argv, std::time::Duration::from_secs(60), crate::targets::CommandKind::Step)
                    .map_err(target_err)?;
                match out.exit {
                    Some(exit) if exit.success() => Ok(FaultGuard::nothing()),
                    other => Err(ctx.error(super::FaultErrorKind::Other(format!(
                        "`{}` failed ({}): {}",
                        argv.join(" "),
                        other.map_or("timed out after 60s".into(), |e| e.to_string()),
                        out.stderr.trim()
                    )))),
                }
            }
            _ => unreachable!("build() gives storage faults their own types"),
        }
    }
}
