//! A Chaos Mesh resource on a pod target's pods: what only an agent on the
//! node can do (NetworkChaos, IOChaos, TimeChaos, StressChaos), created
//! through the API as a dynamic object, labelled with the run's token and
//! journaled before it exists, its selector the target's pods only. It is
//! in effect when Chaos Mesh says every selected container got it
//! (`AllInjected`), and deleted at the heal (or by `cleanup`); Chaos Mesh
//! also ends it after the fault's duration on its own, should crashlab die.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::pod::{object_name, pod_target};
use super::{Fault, FaultContext, FaultErrorKind, FaultGuard};
use crate::journal::Entry;
use crate::scenario::ChaosPlan;
use crate::targets::TargetError;

/// How long Chaos Mesh may take to inject a fault before the trial says it
/// changed nothing (or the fault's own duration, if shorter: Chaos Mesh
/// ends it then).
const INJECTION_TIMEOUT: Duration = Duration::from_secs(30);

pub struct ChaosMesh(pub ChaosPlan);

impl Fault for ChaosMesh {
    fn inject(&self, ctx: &FaultContext) -> Result<FaultGuard, super::FaultError> {
        let target = pod_target(ctx)?;
        let (token, name) = object_name(ctx)?;
        let (plan, kind) = (target.pod_plan().clone(), self.0.kind);
        ctx.journal(&Entry::ClusterObjectCreated {
            trial: ctx.trial,
            fault: ctx.index,
            cluster: target.cluster_ref(),
            namespace: plan.namespace.clone(),
            kind,
            name: name.clone(),
        })?;
        let failed =
            |e| ctx.error(TargetError::Pod { target: ctx.target.name().to_string(), source: Box::new(e) }.into());
        let cluster = target.cluster_handle();
        let asked = Instant::now();
        let uid = cluster.create_chaos(&plan.namespace, &name, &token, &plan.selector, &self.0).map_err(failed)?;
        let journal = Arc::clone(&ctx.journal);
        let (namespace, object) = (plan.namespace.clone(), name.clone());
        let heal = move || match cluster.delete_chaos(&namespace, kind, &object, &token, Some(&uid)) {
            Ok(_) => {
                let _ = journal.append(&Entry::ClusterObjectDeleted { namespace, kind, name: object.clone() });
                format!("{kind} `{object}` deleted")
            }
            Err(e) => format!("{kind} `{object}` not deleted ({e}); `crashlab cleanup` deletes it"),
        };
        let timeout = INJECTION_TIMEOUT.min(self.0.duration);
        let seen = target.cluster().await_chaos(&plan.namespace, kind, &name, timeout);
        match seen {
            Ok(seen) if seen.injected => {
                let at = Instant::now();
                let after = at.duration_since(asked).as_secs_f64() * 1000.0;
                let detail = format!(
                    "{kind} `{name}` on the pods of namespace `{}` with labels {}: injected, Chaos Mesh said {after:.1} \
                     ms after the create (read every 20 ms)",
                    plan.namespace,
                    plan.selector_text()
                );
                ctx.injected_at(at, detail);
                Ok(ctx.heal_with(heal))
            }
            Ok(seen) => {
                let healed = heal();
                Err(ctx.error(FaultErrorKind::Other(format!(
                    "the fault changed nothing: Chaos Mesh did not inject {kind} `{name}` within {:?} ({}); {healed}",
                    timeout, seen.conditions
                ))))
            }
            Err(e) => {
                heal();
                Err(failed(e))
            }
        }
    }
}
