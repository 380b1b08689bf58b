//! Faults on a pod target, through the Kubernetes API: a pod deleted (its
//! workload makes another).

use rand::seq::IndexedRandom;

use super::{Fault, FaultContext, FaultErrorKind, FaultGuard};
use crate::journal::Entry;
use crate::targets::TargetError;

/// Deletes one of the target's ready pods (drawn with the trial's seed
/// when there are several), only while its uid is the one seen;
/// `grace: None` is the pod's own termination grace period.
pub struct DeletePod {
    pub grace: Option<std::time::Duration>,
}

impl Fault for DeletePod {
    fn inject(&self, ctx: &FaultContext) -> Result<FaultGuard, super::FaultError> {
        let target = ctx.target.pod().ok_or_else(|| {
            let what = "a `delete-pod` fault";
            ctx.error(TargetError::Unsupported { target: ctx.target.name().to_string(), what }.into())
        })?;
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
        let grace = self.grace.map(|g| g.as_secs() as u32);
        let asked = std::time::Instant::now();
        target.cluster().delete_pod(&namespace, &pod, grace).map_err(|e| {
            ctx.error(TargetError::Pod { target: ctx.target.name().to_string(), source: Box::new(e) }.into())
        })?;
        // In effect once the API server has accepted it: from then on the
        // pod is being deleted, whatever the kubelet takes to act.
        let accepted = std::time::Instant::now();
        let grace = grace.map_or("its own grace period".to_string(), |g| format!("grace {g}s"));
        let latency = accepted.duration_since(asked).as_secs_f64() * 1000.0;
        let detail = format!(
            "deleted pod `{}` (uid {}) of namespace `{namespace}`, {grace}; the API server accepted it in {latency:.1} ms",
            pod.name, pod.uid
        );
        ctx.injected_at(accepted, detail);
        Ok(FaultGuard::nothing())
    }
}
