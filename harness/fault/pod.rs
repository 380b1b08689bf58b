//! Faults on a pod target, through the Kubernetes API: a pod deleted or
//! evicted (its workload makes another), the pods cut off by a
//! NetworkPolicy, the owner scaled. What each makes or changes is
//! journaled before the call, for `cleanup`.

use rand::seq::IndexedRandom;

use super::{Fault, FaultContext, FaultErrorKind, FaultGuard};
use crate::history::EventKind;
use crate::journal::Entry;
use crate::kinds::ClusterObjectKind;
use crate::targets::TargetError;

/// The fault's target as a pod target (the scenario refuses these faults
/// on any other).
pub(super) fn pod_target(ctx: &FaultContext) -> Result<&crate::targets::pod::PodTarget, super::FaultError> {
    ctx.target.pod().ok_or_else(|| {
        let what = "a fault through the Kubernetes API";
        ctx.error(TargetError::Unsupported { target: ctx.target.name().to_string(), what }.into())
    })
}

/// The run's token, and the name of the object fault `ctx` creates in a
/// cluster (the run, the trial and the fault: unique within the run).
pub(super) fn object_name(ctx: &FaultContext) -> Result<(String, String), super::FaultError> {
    let token = crate::journal::run_token()
        .ok_or_else(|| ctx.error(FaultErrorKind::Other("the run has no token to label its objects with".into())))?;
    let name = format!("crashlab-{}-t{}-f{}", &token[..12.min(token.len())], ctx.trial, ctx.index);
    Ok((token, name))
}

/// How a pod is taken away.
pub enum Removal {
    /// Deleted; `None`: with the pod's own termination grace period.
    Delete(Option<std::time::Duration>),
    /// Evicted, as a node drain does: the API server refuses it when a
    /// PodDisruptionBudget would be broken, and the trial says so.
    Evict,
}

/// Deletes or evicts one of the target's ready pods (drawn with the
/// trial's seed when there are several), only while its uid is the one
/// seen.
pub struct RemovePod(pub Removal);

impl Fault for RemovePod {
    fn inject(&self, ctx: &FaultContext) -> Result<FaultGuard, super::FaultError> {
        let target = pod_target(ctx)?;
        let namespace = target.pod_plan().namespace.clone();
        let pods = target.live_pods();
        let pod = pods.choose(&mut ctx.rng()).cloned().ok_or_else(|| {
            let selector = target.pod_plan().selector_text();
            ctx.error(FaultErrorKind::Other(format!(
                "no ready pod of namespace `{namespace}` with labels {selector} to delete"
            )))
        })?;
        ctx.journal(&Entry::PodDeleted {
            trial: ctx.trial,
            fault: ctx.index,
            target: ctx.target.name().to_string(),
            namespace: namespace.clone(),
            pod: pod.name.clone(),
            uid: pod.uid.clone(),
        })?;
        let asked = std::time::Instant::now();
        let (done, how) = match self.0 {
            Removal::Delete(grace) => {
                let grace = grace.map(|g| g.as_secs() as u32);
                let how = grace.map_or("its own grace period".to_string(), |g| format!("grace {g}s"));
                (target.cluster().delete_pod(&namespace, &pod, grace), format!("deleted, {how}"))
            }
            Removal::Evict => (target.cluster().evict_pod(&namespace, &pod), "evicted".to_string()),
        };
        done.map_err(|e| {
            ctx.error(TargetError::Pod { target: ctx.target.name().to_string(), source: Box::new(e) }.into())
        })?;
        // In effect once the API server has accepted it: from then on the
        // pod is being deleted, whatever the kubelet takes to act.
        let accepted = std::time::Instant::now();
        let latency = accepted.duration_since(asked).as_secs_f64() * 1000.0;
        let detail = format!(
            "pod `{}` (uid {}) of namespace `{namespace}` {how}; the API server accepted it in {latency:.1} ms",
            pod.name, pod.uid
        );
        ctx.injected_at(accepted, detail);
        // Accepted is not done: a removal that had no effect by the end of
        // the trial (the pod not gone, no replacement, no probe failure)
        // changed nothing, and the trial says so.
        let (recorder, fault, target) = (ctx.recorder.clone(), ctx.index, ctx.target.name().to_string());
        Ok(FaultGuard::nothing().looking_first(move || {
            let effect = |k: &EventKind| match k {
                EventKind::PodGone { uid, .. } => *uid == pod.uid,
                EventKind::PodCreated { target: t, .. } | EventKind::Probe { target: t, healthy: false, .. } => {
                    *t == target
                }
                _ => false,
            };
            if recorder.saw_since(asked, effect) == Some(false) {
                let error = format!(
                    "the fault changed nothing: pod `{}` (uid {}) was still there at the end of the trial, no \
                     replacement was made and no probe failed (a finalizer, or a grace period longer than the trial?)",
                    pod.name, pod.uid
                );
                recorder.record(EventKind::FaultFailed { fault, target, error });
            }
        }))
    }
}

/// Cuts the target's pods off, ingress and egress, with a NetworkPolicy
/// that selects them and allows nothing; deleted at the heal (or by
/// `cleanup`: it is labelled with the run's token and journaled before it
/// is created).
pub struct IsolatePod;

impl Fault for IsolatePod {
    fn inject(&self, ctx: &FaultContext) -> Result<FaultGuard, super::FaultError> {
        let target = pod_target(ctx)?;
        let (token, name) = object_name(ctx)?;
        let plan = target.pod_plan().clone();
        ctx.journal(&Entry::ClusterObjectCreated {
            trial: ctx.trial,
            fault: ctx.index,
            cluster: target.cluster_ref(),
            namespace: plan.namespace.clone(),
            kind: ClusterObjectKind::NetworkPolicy,
            name: name.clone(),
        })?;
        let failed =
            |e| ctx.error(TargetError::Pod { target: ctx.target.name().to_string(), source: Box::new(e) }.into());
        let uid = target.cluster().deny_all(&plan.namespace, &name, &plan.selector, &token).map_err(failed)?;
        let since = std::time::Instant::now();
        ctx.injected_at(
            since,
            format!(
                "NetworkPolicy `{name}` denies every packet to and from the pods of namespace `{}` with labels {}",
                plan.namespace,
                plan.selector_text()
            ),
        );
        let (journal, cluster) = (std::sync::Arc::clone(&ctx.journal), target.cluster_handle());
        let (recorder, fault, target_name) = (ctx.recorder.clone(), ctx.index, ctx.target.name().to_string());
        Ok(ctx.heal_with(move || {
            // A policy the network plugin does not enforce cuts nothing: the
            // probe, which goes through the Service, is the witness.
            let cut =
                |k: &EventKind| matches!(k, EventKind::Probe { target, healthy: false, .. } if *target == target_name);
            if recorder.saw_since(since, cut) == Some(false) {
                let error = format!(
                    "the fault changed nothing: no probe of `{target_name}` failed while NetworkPolicy `{name}` held \
                     (does the cluster's network plugin enforce NetworkPolicies?)"
                );
                recorder.record(EventKind::FaultFailed { fault, target: target_name.clone(), error });
            }
            match cluster.delete_policy(&plan.namespace, &name, &token, Some(&uid)) {
                Ok(_) => {
                    let (namespace, kind) = (plan.namespace.clone(), ClusterObjectKind::NetworkPolicy);
                    let _ = journal.append(&Entry::ClusterObjectDeleted { namespace, kind, name: name.clone() });
                    format!("NetworkPolicy `{name}` deleted")
                }
                Err(e) => format!("NetworkPolicy `{name}` not deleted ({e}); `crashlab cleanup` deletes it"),
            }
        }))
    }
}

/// Scales the target's workload (its `owner`) to so many replicas, and
/// back to what it was at the heal (or by `cleanup`: the scale it had is
/// journaled before the call).
pub struct Scale(pub u32);

impl Fault for Scale {
    fn inject(&self, ctx: &FaultContext) -> Result<FaultGuard, super::FaultError> {
        let target = pod_target(ctx)?;
        let plan = target.pod_plan().clone();
        let owner =
            plan.owner.clone().ok_or_else(|| ctx.error(FaultErrorKind::Other("the target has no `owner`".into())))?;
        let failed =
            |e| ctx.error(TargetError::Pod { target: ctx.target.name().to_string(), source: Box::new(e) }.into());
        let from = target.cluster().replicas(&plan.namespace, &owner).map_err(failed)?;
        let to = self.0 as i32;
        if from == to {
            let why = format!(
                "the fault changed nothing: {owner} of namespace `{}` has {to} replica(s) already",
                plan.namespace
            );
            return Err(ctx.error(FaultErrorKind::Other(why)));
        }
        ctx.journal(&Entry::Scaled {
            trial: ctx.trial,
            fault: ctx.index,
            cluster: target.cluster_ref(),
            namespace: plan.namespace.clone(),
            owner: owner.clone(),
            from,
            to,
        })?;
        target.cluster().scale(&plan.namespace, &owner, to).map_err(failed)?;
        ctx.injected(format!("{owner} of namespace `{}` scaled from {from} to {to} replica(s)", plan.namespace));
        let (journal, cluster) = (std::sync::Arc::clone(&ctx.journal), target.cluster_handle());
        Ok(ctx.heal_with(move || match cluster.scale(&plan.namespace, &owner, from) {
            Ok(()) => {
                let _ =
                    journal.append(&Entry::ScaleRestored { namespace: plan.namespace.clone(), owner: owner.clone() });
                format!("{owner} scaled back to {from} replica(s)")
            }
            Err(e) => format!("{owner} not scaled back to {from} ({e}); `crashlab cleanup` scales it back"),
        }))
    }
}
