//! What the pod targets of a run share: the cluster (one connection per
//! kubeconfig and context), checked once before any trial: reachable, this
//! user allowed every call the run will make, each selector matching a
//! pod, each Service reachable from here (or a port-forward opened).

use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};

use crate::cluster::{Access, Cluster, ClusterError, PodInfo};
use crate::port_forward::PortForward;
use crate::scenario::{FaultKind, Plan, PodReach, TargetKind, TargetPlan};

/// A pod target's cluster, and where its pods are reached: a Service's
/// node port, or the local end of a port-forward.
pub(super) struct PodEndpoint {
    pub target: String,
    pub cluster: Arc<Cluster>,
    pub address: IpAddr,
    pub port: u16,
    /// The target's pods as its trials' watches last saw them (what a
    /// port-forward picks from).
    pub pods: Arc<Mutex<Vec<PodInfo>>>,
    _forward: Option<PortForward>,
}

pub(super) struct Pods {
    pub endpoints: Vec<PodEndpoint>,
}

impl Pods {
    pub(super) fn prepare(plan: &Plan) -> Result<Option<Pods>, String> {
        let wanted: Vec<&TargetPlan> = plan.targets.iter().filter(|t| t.kind == TargetKind::Pod).collect();
        if wanted.is_empty() {
            return Ok(None);
        }
        // One connection per kubeconfig and context.
        type Key = (Option<std::path::PathBuf>, Option<String>);
        let mut clusters: Vec<(Key, Arc<Cluster>)> = Vec::new();
        let mut endpoints = Vec::new();
        for t in wanted {
            let pod = t.pod.as_ref().expect("a pod target has a pod plan");
            let failed = |e: ClusterError| format!("target `{}`: {e}", t.name);
            let key = (pod.kubeconfig.clone(), pod.context.clone());
            let cluster = match clusters.iter().find(|(k, _)| *k == key) {
                Some((_, c)) => Arc::clone(c),
                None => {
                    let c = Arc::new(Cluster::connect(key.0.as_deref(), key.1.as_deref()).map_err(failed)?);
                    clusters.push((key, Arc::clone(&c)));
                    c
                }
            };
            chaos_mesh_served(plan, t, &cluster)?;
            cluster.check_access(&pod.namespace, &needs(plan, t)).map_err(failed)?;
            let (found, _) = cluster.pods(&pod.namespace, &pod.selector_text()).map_err(failed)?;
            if found.is_empty() {
                let server = cluster.server().to_string();
                let (namespace, selector) = (pod.namespace.clone(), pod.selector_text());
                return Err(failed(ClusterError::NoPod { server, namespace, selector }));
            }
            if let Some(container) = &pod.container {
                if let Some(p) = found.iter().find(|p| !p.containers.contains(container)) {
                    return Err(format!(
                        "target `{}`: pod `{}` has no container `{container}` (it has: {})",
                        t.name,
                        p.name,
                        p.containers.join(", ")
                    ));
                }
            }
            let pods = Arc::new(Mutex::new(found));
            let (address, port, forward) = match &pod.reach {
                PodReach::Service(service) => {
                    let (address, port, selector) = cluster.node_port(&pod.namespace, service, None).map_err(failed)?;
                    same_pods_behind_the_service(&cluster, t, service, &pods.lock().unwrap(), selector)?;
                    (address, port, None)
                }
                PodReach::PortForward(port) => {
                    let (namespace, pods) = (pod.namespace.clone(), Arc::clone(&pods));
                    let forward = PortForward::open(Arc::clone(&cluster), namespace, pods, *port)
                        .map_err(|e| format!("target `{}`: cannot listen for its port-forward: {e}", t.name))?;
                    (IpAddr::V4(Ipv4Addr::LOCALHOST), forward.port, Some(forward))
                }
            };
            endpoints.push(PodEndpoint { target: t.name.clone(), cluster, address, port, pods, _forward: forward });
        }
        Ok(Some(Pods { endpoints }))
    }

    pub(super) fn endpoint(&self, target: &str) -> Option<&PodEndpoint> {
        self.endpoints.iter().find(|e| e.target == target)
    }
}

/// The probe reaches the pods through the Service: it must select exactly
/// the target's pods, or the probe would measure pods the faults do not
/// act on (a fault that changed nothing would pass, a replacement be
/// missed).
fn same_pods_behind_the_service(
    cluster: &Cluster,
    t: &TargetPlan,
    service: &str,
    found: &[PodInfo],
    selector: Option<String>,
) -> Result<(), String> {
    let pod = t.pod.as_ref().expect("a pod target has a pod plan");
    let Some(selector) = selector else {
        return Err(format!(
            "target `{}`: Service `{service}` has no selector (its endpoints are set by hand): crashlab cannot tell \
             which pods answer its probe",
            t.name
        ));
    };
    let (behind, _) = cluster.pods(&pod.namespace, &selector).map_err(|e| format!("target `{}`: {e}", t.name))?;
    let names = |pods: &[PodInfo]| {
        let mut names: Vec<&str> = pods.iter().map(|p| p.name.as_str()).collect();
        names.sort();
        names.join(", ")
    };
    let (ours, theirs) = (names(found), names(&behind));
    if ours != theirs {
        return Err(format!(
            "target `{}`: Service `{service}` (selector {selector}) reaches pods {theirs}, the target's selector {} \
             selects {ours}: the probe would measure pods the faults do not act on; give the target the Service's \
             selector",
            t.name,
            pod.selector_text()
        ));
    }
    Ok(())
}

/// Each `chaos-mesh` fault on `t` needs its kind served by the cluster
/// (Chaos Mesh installed): else the error names the fault's line.
fn chaos_mesh_served(plan: &Plan, t: &TargetPlan, cluster: &Cluster) -> Result<(), String> {
    let chaos: Vec<(usize, &crate::scenario::ChaosPlan)> = plan
        .faults
        .iter()
        .enumerate()
        .filter(|(_, f)| f.may_be(&t.name, |_| true))
        .flat_map(|(i, f)| f.kinds().filter_map(move |k| chaos_of(k).map(|c| (i, c))))
        .collect();
    if chaos.is_empty() {
        return Ok(());
    }
    let served = cluster.chaos_kinds().map_err(|e| format!("target `{}`: {e}", t.name))?;
    match chaos.iter().find(|(_, c)| !served.contains(&c.kind)) {
        Some((i, c)) => Err(format!(
            "{}:{}: [[fault]] #{}: {} needs Chaos Mesh, and the cluster at {} does not serve it (chaos-mesh.org/\
             v1alpha1 {}): install Chaos Mesh, or remove the fault",
            plan.source_path.display(),
            c.line,
            i + 1,
            c.kind,
            cluster.server(),
            if served.is_empty() { "is not there".to_string() } else { format!("has only {served:?}") }
        )),
        None => Ok(()),
    }
}

fn chaos_of(kind: &FaultKind) -> Option<&crate::scenario::ChaosPlan> {
    match kind {
        FaultKind::ChaosMesh(plan) => Some(plan),
        _ => None,
    }
}

/// Every call the run makes on `t`'s pods, and what for.
fn needs(plan: &Plan, t: &TargetPlan) -> Vec<Access> {
    let need = |verb, resource, purpose: String| Access { verb, resource, purpose };
    let mut needs = vec![
        need("list", "pods", format!("finding target `{}`'s pods", t.name)),
        need("watch", "pods", format!("following target `{}`'s pods (their replacement and readiness)", t.name)),
    ];
    let pod = t.pod.as_ref().expect("a pod target has a pod plan");
    needs.push(match pod.reach {
        PodReach::Service(_) => need("get", "services", format!("reaching target `{}` through its Service", t.name)),
        PodReach::PortForward(_) => {
            need("create", "pods/portforward", format!("reaching target `{}` through a port-forward", t.name))
        }
    });
    let first = |is: fn(&FaultKind) -> bool| plan.faults.iter().position(|f| f.may_be(&t.name, is));
    if let Some(i) = first(|k| matches!(k, FaultKind::DeletePod { .. })) {
        needs.push(need("delete", "pods", format!("the `delete-pod` fault #{}", i + 1)));
    }
    if let Some(i) = first(|k| matches!(k, FaultKind::EvictPod)) {
        needs.push(need("create", "pods/eviction", format!("the `evict-pod` fault #{}", i + 1)));
    }
    if let (Some(i), Some(owner)) =
        (first(|k| matches!(k, FaultKind::Scale { .. })), t.pod.as_ref().and_then(|p| p.owner.as_ref()))
    {
        let resource = match owner.kind {
            crate::scenario::OwnerKind::Deployment => "deployments/scale",
            crate::scenario::OwnerKind::StatefulSet => "statefulsets/scale",
        };
        for verb in ["get", "patch"] {
            needs.push(need(verb, resource, format!("the `scale` fault #{}", i + 1)));
        }
    }
    if let Some(i) = first(|k| matches!(k, FaultKind::Kill { .. } | FaultKind::Pause { .. } | FaultKind::Restart)) {
        needs.push(need("create", "pods/exec", format!("fault #{} (a signal sent with exec)", i + 1)));
    }
    for (i, f) in plan.faults.iter().enumerate().filter(|(_, f)| f.may_be(&t.name, |_| true)) {
        for chaos in f.kinds().filter_map(chaos_of) {
            let (_, resource) = chaos.kind.resource();
            for verb in ["create", "get", "delete"] {
                needs.push(need(verb, resource, format!("the `chaos-mesh` fault #{} ({})", i + 1, chaos.kind)));
            }
        }
    }
    if let Some(i) = first(|k| matches!(k, FaultKind::IsolatePod { .. })) {
        for verb in ["create", "get", "delete"] {
            needs.push(need(verb, "networkpolicies", format!("the `isolate-pod` fault #{}", i + 1)));
        }
    }
    needs
}
