//! Pod targets: pods of a Kubernetes namespace, chosen by label selector,
//! that the cluster runs. crashlab neither starts nor stops them: a trial
//! finds them, watches them (a replacement's creation and readiness go
//! into the history, the cluster's own signals beside the probe's), and
//! its faults act on them through the API (see `fault::pod`). A pod is
//! known by its uid, as a process by pid and start time: a pod is deleted
//! only on the precondition that its uid is still the one seen.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::Signal;

use super::context::TargetContext;
use super::{reaper, CommandKind, HostProcess, Signalled, Target, TargetError};
use crate::cluster::{Cluster, ClusterError, PodChange, PodInfo};
use crate::history::{EventKind, Recorder};
use crate::scenario::{template, PodPlan, SignalScope, TargetPlan};

pub struct PodTarget {
    plan: TargetPlan,
    ctx: TargetContext,
    cluster: Arc<Cluster>,
    /// The selected pods as last seen (the watch keeps it current).
    pods: Arc<Mutex<Vec<PodInfo>>>,
    watch: Mutex<Option<(tokio::task::JoinHandle<()>, Arc<AtomicBool>)>>,
    vars: Vec<(String, String)>,
}

impl PodTarget {
    /// `ctx.host` and `ctx.port` are where the pods are reached (a
    /// Service, a port-forward); `pods` is shared with the port-forward,
    /// which picks from what this target's watch sees.
    pub fn new(
        plan: &TargetPlan,
        ctx: TargetContext,
        cluster: Arc<Cluster>,
        pods: Arc<Mutex<Vec<PodInfo>>>,
    ) -> PodTarget {
        let vars = ctx.vars(plan);
        PodTarget { plan: plan.clone(), ctx, cluster, pods, watch: Mutex::new(None), vars }
    }

    pub fn pod_plan(&self) -> &PodPlan {
        self.plan.pod.as_ref().expect("a pod target has a pod plan")
    }

    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    /// The cluster as this target reaches it, for the journal.
    pub fn cluster_ref(&self) -> crate::journal::ClusterRef {
        let plan = self.pod_plan();
        let absolute = |p: &std::path::Path| p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
        crate::journal::ClusterRef {
            kubeconfig: plan.kubeconfig.as_deref().map(absolute),
            context: plan.context.clone(),
            server: self.cluster.server().to_string(),
        }
    }

    /// The cluster, for what outlives the call (a fault's heal).
    pub fn cluster_handle(&self) -> Arc<Cluster> {
        Arc::clone(&self.cluster)
    }

    /// The pods a fault may act on: selected, running, not being deleted,
    /// ready (a pod that is not serving yet is not the service's state).
    pub fn live_pods(&self) -> Vec<PodInfo> {
        self.pods.lock().unwrap().iter().filter(|p| p.ready && !p.terminating).cloned().collect()
    }

    fn no_pod(&self) -> TargetError {
        let pod = self.pod_plan();
        TargetError::Pod {
            target: self.plan.name.clone(),
            source: Box::new(ClusterError::NoPod {
                server: self.cluster.server().to_string(),
                namespace: pod.namespace.clone(),
                selector: pod.selector_text(),
            }),
        }
    }

    fn unsupported(&self, what: &'static str) -> TargetError {
        TargetError::NotForPods { target: self.plan.name.clone(), what }
    }
}

/// Keeps `pods` current with what the watch sees, and records in the
/// history each pod seen for the first time (a replacement), each restart
/// of its containers, each time it becomes ready and each pod's end.
fn on_change(target: String, recorder: &Recorder, pods: &Mutex<Vec<PodInfo>>, change: PodChange) {
    let mut pods = pods.lock().unwrap();
    let (pod, gone) = match change {
        PodChange::Seen(pod) => (pod, false),
        PodChange::Gone(pod) => (pod, true),
    };
    let known = pods.iter().position(|p| p.uid == pod.uid);
    let (name, uid) = (pod.name.clone(), pod.uid.clone());
    if gone {
        pods.retain(|p| p.uid != pod.uid);
        recorder.record(EventKind::PodGone { target, pod: name, uid });
        return;
    }
    let was_ready = known.is_some_and(|i| pods[i].ready);
    match known {
        None => recorder.record(EventKind::PodCreated { target: target.clone(), pod: name.clone(), uid: uid.clone() }),
        Some(i) if pod.restarts > pods[i].restarts => recorder.record(EventKind::ContainerRestarted {
            target: target.clone(),
            pod: name.clone(),
            uid: uid.clone(),
            restarts: pod.restarts,
        }),
        Some(_) => {}
    }
    if pod.ready && !was_ready {
        recorder.record(EventKind::PodReady { target, pod: name, uid });
    }
    match known {
        Some(i) => pods[i] = pod,
        None => pods.push(pod),
    }
}

impl Target for PodTarget {
    fn name(&self) -> &str {
        &self.plan.name
    }

    /// Finds the pods (none is an environment error: a fault would act on
    /// nothing) and watches them from the list's version on.
    fn start(&self) -> Result<(), TargetError> {
        let pod = self.pod_plan();
        let failed = |source| TargetError::Pod { target: self.plan.name.clone(), source: Box::new(source) };
        let (found, version) = self.cluster.pods(&pod.namespace, &pod.selector_text()).map_err(failed)?;
        if found.is_empty() {
            return Err(self.no_pod());
        }
        *self.pods.lock().unwrap() = found;
        let stop = Arc::new(AtomicBool::new(false));
        let (pods, target) = (Arc::clone(&self.pods), self.plan.name.clone());
        let recorder = self.ctx.recorder.clone();
        let handle = Arc::clone(&self.cluster).watch_pods(
            pod.namespace.clone(),
            pod.selector_text(),
            version,
            Arc::clone(&stop),
            move |change| on_change(target.clone(), &recorder, &pods, change),
        );
        *self.watch.lock().unwrap() = Some((handle, stop));
        Ok(())
    }

    fn signal(&self, _signal: Signal, _scope: SignalScope) -> Result<Signalled, TargetError> {
        Err(self.unsupported("a signal"))
    }

    fn default_scope(&self) -> SignalScope {
        SignalScope::Main
    }

    fn pause(&self) -> Result<HostProcess, TargetError> {
        Err(self.unsupported("a pause"))
    }

    fn resume(&self, _which: HostProcess) -> Result<(), TargetError> {
        Err(self.unsupported("a pause"))
    }

    fn restart(&self) -> Result<HostProcess, TargetError> {
        Err(self.unsupported("a restart"))
    }

    /// Nothing to hold: the cluster runs the pods.
    fn hold(&self, _signal: Signal) -> Option<HostProcess> {
        None
    }

    fn release(&self) {}

    /// Stops watching; the pods are the cluster's and stay as they are.
    fn stop(&self) {
        if let Some((handle, stop)) = self.watch.lock().unwrap().take() {
            stop.store(true, Ordering::Relaxed);
            handle.abort();
        }
    }

    /// A hook or a step runs here, on the control node (e.g. `kubectl`).
    fn exec(&self, argv: &[String], timeout: Duration, kind: CommandKind) -> Result<reaper::Output, TargetError> {
        let command = self.ctx.command(&self.plan, &self.vars, argv);
        self.ctx.run(self.name(), command, timeout, kind)
    }

    /// None: a pod's processes are on a node, not here.
    fn host_process(&self) -> Option<HostProcess> {
        None
    }

    fn port(&self) -> u16 {
        self.ctx.port
    }

    fn host(&self) -> IpAddr {
        self.ctx.host
    }

    fn render(&self, argv: &[String]) -> Vec<String> {
        argv.iter().map(|a| template::render(a, &self.vars)).collect()
    }

    fn data_dirs(&self) -> Vec<PathBuf> {
        Vec::new()
    }

    fn last_log_lines(&self, _n: usize) -> Vec<String> {
        Vec::new()
    }

    fn pod(&self) -> Option<&PodTarget> {
        Some(self)
    }
}

impl Drop for PodTarget {
    fn drop(&mut self) {
        self.stop();
    }
}
