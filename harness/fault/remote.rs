//! A fault on a target on a remote host whose code must run there (it
//! damages files, holds a lock, limits a cgroup, starts stress-ng): the
//! host's agent injects it, with the same code as here, journals it in its
//! own journal and keeps its guard; this one asks it to look and to heal.
//! Its injection and heal reach the history as the agent's events, dated
//! within half the round trip to it.

use std::sync::Arc;

use super::partition::Partition;
use super::{Fault, FaultContext, FaultError, FaultErrorKind, FaultGuard};
use crate::history::EventKind;
use crate::scenario::PartitionPlan;
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

/// An iptables rule, as its arguments.
type Rule = Vec<String>;

/// A partition between targets on remote hosts: iptables rules on each
/// host involved, set by its agent (the rules [`super::partition`] would
/// set in namespaces, with hosts' addresses). In effect once the last
/// host's are; its heal says how many packets they dropped, and a
/// partition no packet crossed changed nothing: the trial is unknown.
pub struct HostPartition {
    pub plan: PartitionPlan,
    /// The scenario's targets, to find each one's host.
    pub targets: Vec<Arc<dyn Target>>,
}

impl Fault for HostPartition {
    fn inject(&self, ctx: &FaultContext) -> Result<FaultGuard, FaultError> {
        let refused = |what: String| ctx.error(FaultErrorKind::Other(what));
        let remote = |name: &str| self.targets.iter().find(|t| t.name() == name).filter(|t| t.remote().is_some());
        if let Some(name) = self.plan.groups.iter().flatten().find(|n| remote(n).is_none()) {
            return Err(refused(format!("target `{name}` is not on a host")));
        }
        let member = |name: &str| {
            let r = remote(name).and_then(|t| t.remote()).expect("checked above");
            (r.host_name().to_string(), r.host().to_string())
        };
        let mut rules = Partition::rules(&self.plan, member, "");
        // A container's packets are routed through its host (the engine's
        // bridge, a published port's DNAT), past INPUT and OUTPUT: the same
        // rules go into FORWARD on the hosts that run one.
        let routing: Vec<String> = self
            .plan
            .groups
            .iter()
            .flatten()
            .filter_map(|n| remote(n)?.remote().filter(|r| r.is_container()).map(|r| r.host_name().to_string()))
            .collect();
        let forwarded: Vec<(String, Rule)> = rules
            .iter()
            .filter(|(host, _)| routing.contains(host))
            .map(|(host, rule)| {
                (host.clone(), std::iter::once("FORWARD".to_string()).chain(rule[1..].iter().cloned()).collect())
            })
            .collect();
        rules.extend(forwarded);
        // Each host's rules, through an agent of that host.
        let mut by_host: Vec<(Arc<dyn Target>, Vec<Rule>)> = Vec::new();
        for (host, rule) in rules {
            match by_host.iter_mut().find(|(t, _)| t.remote().is_some_and(|r| r.host_name() == host)) {
                Some((_, list)) => list.push(rule),
                None => {
                    let target = self.targets.iter().find(|t| t.remote().is_some_and(|r| r.host_name() == host));
                    by_host.push((Arc::clone(target.expect("a rule's host has a target")), vec![rule]));
                }
            }
        }
        let (trial, fault) = (ctx.trial, ctx.index);
        let mut blocked: Vec<Arc<dyn Target>> = Vec::new();
        let mut last = None;
        for (target, rules) in by_host {
            let remote = target.remote().expect("found by its host");
            match remote.block(trial, fault, rules) {
                Ok(at) => last = last.max(Some(at)),
                Err(e) => {
                    for t in &blocked {
                        let _ = t.remote().map(|r| r.unblock(trial, fault));
                    }
                    return Err(ctx.error(e.into()));
                }
            }
            blocked.push(target);
        }
        let clocks: Vec<(String, std::time::Duration)> = blocked.iter().filter_map(|t| t.remote_clock()).collect();
        // `dated` quotes the name: "on host `h1`, `h2`".
        let hosts = clocks.iter().map(|(h, _)| h.as_str()).collect::<Vec<_>>().join("`, `");
        let uncertainty = clocks.iter().map(|(_, u)| *u).max().unwrap_or_default();
        let at = last.unwrap_or_else(std::time::Instant::now);
        ctx.injected_dated(at, super::partition::describe(&self.plan), Some((hosts, uncertainty)));
        let (recorder, name) = (ctx.recorder.clone(), ctx.target.name().to_string());
        Ok(ctx.heal_with(move || {
            let dropped: u64 = blocked.iter().filter_map(|t| t.remote()?.unblock(trial, fault).ok()).sum();
            if dropped == 0 {
                let error = "the partition changed nothing: no packet crossed it while it held".to_string();
                recorder.record(EventKind::FaultFailed { fault, target: name, error: error.clone() });
                return error;
            }
            format!("the hosts' rules dropped {dropped} packet(s)")
        }))
    }
}
