//! A Kubernetes cluster, through its API (`kube` with `k8s-openapi`): what
//! pod targets read (pods by label selector, a Service's node port, a
//! node's address) and what their faults do (a pod deleted, only while its
//! uid is the one crashlab saw). Access is asked of the API server itself
//! (SelfSubjectAccessReview) before a run, so that RBAC stops it before
//! any fault, naming the verb and the resource. Calls block on the shared
//! I/O runtime, as the container engine's do; each is counted, for the
//! API calls a trial costs.

use std::net::IpAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::authorization::v1::{ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec};
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicySpec};
use k8s_openapi::api::policy::v1::Eviction;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{self as meta, DeleteOptions};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::api::{
    Api, AttachParams, DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions, WatchEvent, WatchParams,
};

use crate::scenario::{Owner, OwnerKind};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use crate::proxy::runtime;

mod chaos;

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("Kubernetes: cannot read the cluster's configuration{from}: {reason}")]
    Config { from: String, reason: String },
    #[error("Kubernetes API at {server}: cannot {what}: {reason}")]
    Api { server: String, what: String, reason: String },
    #[error(
        "Kubernetes API at {server}: no pod of namespace `{namespace}` has the labels {selector}: a fault would act \
         on nothing; check the selector and the namespace (`kubectl get pods -n {namespace} -l {selector}`)"
    )]
    NoPod { server: String, namespace: String, selector: String },
    #[error(
        "Kubernetes API at {server}: this user may not {action}{why}; crashlab needs it for {purpose} (grant it \
         with a Role, or remove what needs it)"
    )]
    Forbidden { server: String, action: String, why: String, purpose: String },
}

/// The label every object a run creates in a cluster carries: the run's
/// token (as its processes carry it), journaled before the object exists.
pub const RUN_LABEL: &str = "crashlab.run";

/// What a run needs to be allowed to do, and why (for the message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    pub verb: &'static str,
    /// `pods`, `services`, or `pods/eviction`.
    pub resource: &'static str,
    pub purpose: String,
}

/// A pod as a target sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodInfo {
    pub name: String,
    /// Its identity: a replacement of the same name has another uid.
    pub uid: String,
    pub ready: bool,
    /// It is being deleted (it has a deletion timestamp).
    pub terminating: bool,
    /// The container names of its spec.
    pub containers: Vec<String>,
    /// Its containers' restarts, as the kubelet counts them.
    pub restarts: u32,
}

/// What a command run in a pod's container (`exec`) left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Execd {
    /// Its output's lines, each with the moment it arrived here (the
    /// kubelet streams them): what a line says happened, happened before.
    pub lines: Vec<(std::time::Instant, String)>,
    pub stderr: String,
    /// Why it did not succeed (the kubelet's Status: its exit code), or
    /// None when it exited 0.
    pub failure: Option<String>,
}

impl Execd {
    /// Its output, the lines joined again.
    pub fn stdout(&self) -> String {
        self.lines.iter().map(|(_, line)| format!("{line}\n")).collect()
    }
}

impl PodInfo {
    fn of(pod: &Pod) -> PodInfo {
        let meta = &pod.metadata;
        let ready = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        PodInfo {
            name: meta.name.clone().unwrap_or_default(),
            uid: meta.uid.clone().unwrap_or_default(),
            ready,
            terminating: meta.deletion_timestamp.is_some(),
            containers: pod
                .spec
                .as_ref()
                .map(|s| s.containers.iter().map(|c| c.name.clone()).collect())
                .unwrap_or_default(),
            restarts: pod
                .status
                .iter()
                .flat_map(|s| s.container_statuses.iter().flatten())
                .map(|c| c.restart_count.max(0) as u32)
                .sum(),
        }
    }
}

/// A change seen on a watch of a target's pods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodChange {
    Seen(PodInfo),
    Gone(PodInfo),
}

pub struct Cluster {
    client: Client,
    /// The API server's address, for messages.
    server: String,
    calls: AtomicU64,
}

impl Cluster {
    /// The cluster of `kubeconfig` (else `KUBECONFIG`, else
    /// ~/.kube/config, else the in-cluster service account), in `context`
    /// (else the file's current context).
    pub fn connect(kubeconfig: Option<&Path>, context: Option<&str>) -> Result<Cluster, ClusterError> {
        let from = kubeconfig.map_or(String::new(), |p| format!(" from {}", p.display()));
        let config_err = |reason: String| ClusterError::Config { from: from.clone(), reason };
        let options = KubeConfigOptions { context: context.map(str::to_string), ..Default::default() };
        let mut config = runtime().block_on(async {
            match kubeconfig {
                Some(path) => {
                    let file = Kubeconfig::read_from(path).map_err(|e| config_err(e.to_string()))?;
                    Config::from_custom_kubeconfig(file, &options).await.map_err(|e| config_err(e.to_string()))
                }
                None if context.is_some() => {
                    Config::from_kubeconfig(&options).await.map_err(|e| config_err(e.to_string()))
                }
                None => Config::infer().await.map_err(|e| config_err(e.to_string())),
            }
        })?;
        // One call per request: kube retries a 429 by default, and an
        // eviction's 429 is a PodDisruptionBudget's final word, not load (a
        // fault's call must also be dated once, not after a backoff).
        config.default_retry = false;
        // An API server that stops answering must not hold a fault (or a
        // Ctrl-C) for kube's default 295 s; an idle watch that times out
        // is watched again from its last version.
        config.connect_timeout = Some(std::time::Duration::from_secs(10));
        config.read_timeout = Some(std::time::Duration::from_secs(30));
        let server = config.cluster_url.to_string();
        let _entered = runtime().enter();
        let client = Client::try_from(config).map_err(|e| config_err(e.to_string()))?;
        Ok(Cluster::with_client(client, server))
    }

    /// A cluster reached through `client` (the tests' mock service).
    pub fn with_client(client: Client, server: String) -> Cluster {
        Cluster { client, server: server.trim_end_matches('/').to_string(), calls: AtomicU64::new(0) }
    }

    pub fn server(&self) -> &str {
        &self.server
    }

    /// API calls made so far (a watch counts once, however long it lasts).
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    fn api_err(&self, what: impl Into<String>) -> impl FnOnce(kube::Error) -> ClusterError + '_ {
        let what = what.into();
        move |e| ClusterError::Api { server: self.server.clone(), what, reason: reason(&e) }
    }

    fn call<T>(&self, f: impl std::future::Future<Output = T>) -> T {
        self.calls.fetch_add(1, Ordering::Relaxed);
        runtime().block_on(f)
    }

    /// Asks the API server whether this user may do each of `needs` in
    /// `namespace`; the first it may not is the error.
    pub fn check_access(&self, namespace: &str, needs: &[Access]) -> Result<(), ClusterError> {
        let reviews: Api<SelfSubjectAccessReview> = Api::all(self.client.clone());
        for need in needs {
            let (resource, subresource) = match need.resource.split_once('/') {
                Some((r, s)) => (r, Some(s.to_string())),
                None => (need.resource, None),
            };
            let review = SelfSubjectAccessReview {
                spec: SelfSubjectAccessReviewSpec {
                    resource_attributes: Some(ResourceAttributes {
                        group: Some(api_group(resource).to_string()),
                        namespace: Some(namespace.to_string()),
                        verb: Some(need.verb.to_string()),
                        resource: Some(resource.to_string()),
                        subresource,
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                ..Default::default()
            };
            let what = format!("ask whether it may {} {}", need.verb, need.resource);
            let answer = self.call(reviews.create(&PostParams::default(), &review)).map_err(self.api_err(what))?;
            let status = answer.status.unwrap_or_default();
            if !status.allowed {
                let why = status.reason.filter(|r| !r.is_empty()).map_or(String::new(), |r| format!(" ({r})"));
                return Err(ClusterError::Forbidden {
                    server: self.server.clone(),
                    action: format!("{} {} in namespace `{namespace}`", need.verb, need.resource),
                    why,
                    purpose: need.purpose.clone(),
                });
            }
        }
        Ok(())
    }

    /// The pods of `namespace` that `selector` selects, and the list's
    /// resource version (a watch from it sees every later change).
    pub fn pods(&self, namespace: &str, selector: &str) -> Result<(Vec<PodInfo>, String), ClusterError> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let what = format!("list the pods of namespace `{namespace}` with labels {selector}");
        let list = self.call(pods.list(&ListParams::default().labels(selector))).map_err(self.api_err(what))?;
        let version = list.metadata.resource_version.clone().unwrap_or_default();
        Ok((list.items.iter().map(PodInfo::of).collect(), version))
    }

    /// A connection to `port` of pod `pod`, through the API's port-forward
    /// (one WebSocket per connection: the protocol carries one stream per
    /// port). Counted as a call; async, for the forwarder's tasks.
    pub async fn forward(
        &self,
        namespace: &str,
        pod: &str,
        port: u16,
    ) -> Result<tokio::io::DuplexStream, ClusterError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let what = || format!("forward port {port} of pod `{pod}` of namespace `{namespace}`");
        let mut forwarder = pods.portforward(pod, &[port]).await.map_err(|e| ClusterError::Api {
            server: self.server.clone(),
            what: what(),
            reason: reason(&e),
        })?;
        forwarder.take_stream(port).ok_or_else(|| ClusterError::Api {
            server: self.server.clone(),
            what: what(),
            reason: "no stream for the port".into(),
        })
    }

    /// Pod `name` of `namespace`, if there is one.
    pub fn pod(&self, namespace: &str, name: &str) -> Result<Option<PodInfo>, ClusterError> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let what = format!("get pod `{name}` of namespace `{namespace}`");
        Ok(self.call(pods.get_opt(name)).map_err(self.api_err(what))?.as_ref().map(PodInfo::of))
    }

    /// Where a NodePort Service is reached from outside the cluster: a
    /// node's internal address and the service's node port (its first, or
    /// the one whose port is `port`); and the service's label selector
    /// (`app=kv,...`; none: its endpoints are set by hand).
    pub fn node_port(
        &self,
        namespace: &str,
        service: &str,
        port: Option<u16>,
    ) -> Result<(IpAddr, u16, Option<String>), ClusterError> {
        let services: Api<Service> = Api::namespaced(self.client.clone(), namespace);
        let what = format!("get service `{service}` of namespace `{namespace}`");
        let found = self.call(services.get(service)).map_err(self.api_err(what.clone()))?;
        let spec = found.spec.unwrap_or_default();
        let selector = spec.selector.as_ref().filter(|s| !s.is_empty()).map(|s| {
            let terms: Vec<String> = s.iter().map(|(k, v)| format!("{k}={v}")).collect();
            terms.join(",")
        });
        let problem = |reason: String| ClusterError::Api { server: self.server.clone(), what: what.clone(), reason };
        let ports = spec.ports.unwrap_or_default();
        let chosen = ports.iter().find(|p| port.is_none_or(|n| p.port == i32::from(n)));
        let node_port = chosen.and_then(|p| p.node_port).ok_or_else(|| {
            problem(format!(
                "it has no node port{} (type {}): crashlab reaches a pod from outside the cluster through a \
                 NodePort service",
                port.map_or(String::new(), |p| format!(" for port {p}")),
                spec.type_.as_deref().unwrap_or("ClusterIP")
            ))
        })?;
        let nodes: Api<Node> = Api::all(self.client.clone());
        let list = self.call(nodes.list(&ListParams::default())).map_err(self.api_err("list the nodes"))?;
        let address = list
            .items
            .iter()
            .flat_map(|n| n.status.iter().flat_map(|s| s.addresses.iter().flatten()))
            .filter(|a| a.type_ == "InternalIP" || a.type_ == "ExternalIP")
            .find_map(|a| a.address.parse::<IpAddr>().ok())
            .ok_or_else(|| problem("no node has an InternalIP or ExternalIP address".into()))?;
        Ok((address, node_port as u16, selector))
    }

    /// Deletes `pod` if it is still that pod (its uid a precondition: a
    /// replacement of the same name is not ours to delete); `grace: None`
    /// is the pod's own termination grace period.
    pub fn delete_pod(&self, namespace: &str, pod: &PodInfo, grace: Option<u32>) -> Result<(), ClusterError> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let params = DeleteParams {
            grace_period_seconds: grace,
            preconditions: Some(Preconditions { uid: Some(pod.uid.clone()), resource_version: None }),
            ..Default::default()
        };
        let what = format!("delete pod `{}` (uid {}) of namespace `{namespace}`", pod.name, pod.uid);
        self.call(pods.delete(&pod.name, &params)).map(|_| ()).map_err(self.api_err(what))
    }

    /// Creates NetworkPolicy `name`, labelled with the run's `token`, that
    /// selects the pods with `labels` and allows them no ingress and no
    /// egress; returns its uid.
    pub fn deny_all(
        &self,
        namespace: &str,
        name: &str,
        labels: &[(String, String)],
        token: &str,
    ) -> Result<String, ClusterError> {
        let policies: Api<NetworkPolicy> = Api::namespaced(self.client.clone(), namespace);
        let policy = NetworkPolicy {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                labels: Some([(RUN_LABEL.to_string(), token.to_string())].into()),
                ..Default::default()
            },
            spec: Some(NetworkPolicySpec {
                pod_selector: Some(LabelSelector {
                    match_labels: Some(labels.iter().cloned().collect()),
                    ..Default::default()
                }),
                policy_types: Some(vec!["Ingress".into(), "Egress".into()]),
                ..Default::default()
            }),
        };
        let what = format!("create NetworkPolicy `{name}` in namespace `{namespace}`");
        let made = self.call(policies.create(&PostParams::default(), &policy)).map_err(self.api_err(what))?;
        Ok(made.metadata.uid.unwrap_or_default())
    }

    /// Deletes NetworkPolicy `name` if it is the run's: labelled with
    /// `token` and, when known, of uid `uid`. `Ok(false)`: it was gone
    /// already; an object of that name that is not the run's is refused.
    /// (`delete_owned`, as every object a fault creates.)
    pub fn delete_policy(
        &self,
        namespace: &str,
        name: &str,
        token: &str,
        uid: Option<&str>,
    ) -> Result<bool, ClusterError> {
        let policies: Api<NetworkPolicy> = Api::namespaced(self.client.clone(), namespace);
        let what = format!("delete NetworkPolicy `{name}` of namespace `{namespace}`");
        self.delete_owned(policies, what, name, token, uid)
    }

    /// Deletes object `name` of `api` if it carries the run's `token` as
    /// its label and, when known, is of uid `uid` (the uid the API's
    /// precondition, so that one made since under that name is not
    /// deleted). `Ok(false)`: it was gone already.
    fn delete_owned<K>(
        &self,
        api: Api<K>,
        what: String,
        name: &str,
        token: &str,
        uid: Option<&str>,
    ) -> Result<bool, ClusterError>
    where
        K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    {
        let found = match self.call(api.get_opt(name)).map_err(self.api_err(what.clone()))? {
            Some(found) => found,
            None => return Ok(false),
        };
        let label = found.meta().labels.as_ref().and_then(|l| l.get(RUN_LABEL)).cloned();
        let found_uid = found.meta().uid.clone().unwrap_or_default();
        if label.as_deref() != Some(token) || uid.is_some_and(|u| u != found_uid) {
            let reason = format!("it is not this run's (label {RUN_LABEL}={label:?}, uid {found_uid}): left alone");
            return Err(ClusterError::Api { server: self.server.clone(), what, reason });
        }
        let params = DeleteParams {
            preconditions: Some(Preconditions { uid: Some(found_uid), resource_version: None }),
            ..Default::default()
        };
        self.call(api.delete(name, &params)).map_err(self.api_err(what))?;
        Ok(true)
    }

    /// Evicts `pod` (the Eviction API, as a node drain does) if it is still
    /// that pod; a PodDisruptionBudget's refusal is the error. The Eviction
    /// is k8s-openapi's own type: kube's `evict` writes its delete options
    /// as `delete_options`, a field the API server ignores, which would
    /// drop the uid precondition.
    pub fn evict_pod(&self, namespace: &str, pod: &PodInfo) -> Result<(), ClusterError> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let eviction = Eviction {
            metadata: ObjectMeta {
                name: Some(pod.name.clone()),
                namespace: Some(namespace.to_string()),
                ..Default::default()
            },
            delete_options: Some(DeleteOptions {
                preconditions: Some(meta::Preconditions { uid: Some(pod.uid.clone()), resource_version: None }),
                ..Default::default()
            }),
        };
        let what = format!("evict pod `{}` (uid {}) of namespace `{namespace}`", pod.name, pod.uid);
        let post = PostParams::default();
        let created = pods.create_subresource::<_, serde_json::Value>("eviction", &pod.name, &post, &eviction);
        self.call(created).map(|_| ()).map_err(self.api_err(what))
    }

    /// Runs `argv` in `container` (None: the pod's only one) of pod `pod`,
    /// through the exec subresource, to its end or `timeout`.
    pub fn exec(
        &self,
        namespace: &str,
        pod: &str,
        container: Option<&str>,
        argv: &[String],
        timeout: std::time::Duration,
    ) -> Result<Execd, ClusterError> {
        use tokio::io::{AsyncBufReadExt, AsyncReadExt};
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let params = AttachParams { container: container.map(str::to_string), ..Default::default() };
        let what = format!("exec `{}` in pod `{pod}` of namespace `{namespace}`", argv.join(" "));
        let run = async {
            let mut attached = pods.exec(pod, argv.to_vec(), &params).await?;
            let (mut stdout, mut stderr) = (attached.stdout(), attached.stderr());
            let status = attached.take_status();
            let (mut out, mut err) = (Vec::new(), Vec::new());
            let read_out = async {
                if let Some(s) = stdout.take() {
                    let mut lines = tokio::io::BufReader::new(s).lines();
                    while let Ok(Some(line)) = lines.next_line().await {
                        out.push((std::time::Instant::now(), line));
                    }
                }
            };
            let read_err = async {
                if let Some(s) = stderr.as_mut() {
                    let _ = s.read_to_end(&mut err).await;
                }
            };
            tokio::join!(read_out, read_err);
            let status = match status {
                Some(status) => status.await,
                None => None,
            };
            Ok::<_, kube::Error>((out, err, status))
        };
        let (out, err, status) = self
            .call(async { tokio::time::timeout(timeout, run).await })
            .map_err(|_| ClusterError::Api {
                server: self.server.clone(),
                what: what.clone(),
                reason: format!("no answer in {timeout:?}"),
            })?
            .map_err(self.api_err(what))?;
        let failure = match status {
            Some(s) if s.status.as_deref() == Some("Success") => None,
            Some(s) => Some(s.message.filter(|m| !m.is_empty()).or(s.reason).unwrap_or_else(|| "failed".into())),
            None => Some("the stream ended without the command's status (its container stopped?)".into()),
        };
        let text = |b: Vec<u8>| String::from_utf8_lossy(&b).into_owned();
        Ok(Execd { lines: out, stderr: text(err), failure })
    }

    /// The replicas `owner` is scaled to (its scale subresource).
    pub fn replicas(&self, namespace: &str, owner: &Owner) -> Result<i32, ClusterError> {
        let what = format!("read the scale of {owner} in namespace `{namespace}`");
        let scale = match owner.kind {
            OwnerKind::Deployment => {
                self.call(Api::<Deployment>::namespaced(self.client.clone(), namespace).get_scale(&owner.name))
            }
            OwnerKind::StatefulSet => {
                self.call(Api::<StatefulSet>::namespaced(self.client.clone(), namespace).get_scale(&owner.name))
            }
        };
        Ok(scale.map_err(self.api_err(what))?.spec.and_then(|s| s.replicas).unwrap_or(0))
    }

    /// Scales `owner` to `replicas`.
    pub fn scale(&self, namespace: &str, owner: &Owner, replicas: i32) -> Result<(), ClusterError> {
        let what = format!("scale {owner} in namespace `{namespace}` to {replicas}");
        let patch = Patch::Merge(serde_json::json!({ "spec": { "replicas": replicas } }));
        let params = PatchParams::default();
        let done = match owner.kind {
            OwnerKind::Deployment => self.call(
                Api::<Deployment>::namespaced(self.client.clone(), namespace).patch_scale(&owner.name, &params, &patch),
            ),
            OwnerKind::StatefulSet => {
                self.call(Api::<StatefulSet>::namespaced(self.client.clone(), namespace).patch_scale(
                    &owner.name,
                    &params,
                    &patch,
                ))
            }
        };
        done.map(|_| ()).map_err(self.api_err(what))
    }

    /// Watches the pods of `selector` from resource `version` (watching
    /// again from the last version seen when the server ends a watch),
    /// calling `seen` with each change, until `stop` is set or the API
    /// server fails.
    pub fn watch_pods(
        self: Arc<Self>,
        namespace: String,
        selector: String,
        mut version: String,
        stop: Arc<std::sync::atomic::AtomicBool>,
        seen: impl Fn(PodChange) + Send + 'static,
    ) -> tokio::task::JoinHandle<()> {
        runtime().spawn(async move {
            let pods: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
            while !stop.load(Ordering::Relaxed) {
                self.calls.fetch_add(1, Ordering::Relaxed);
                let params = WatchParams::default().labels(&selector).timeout(290);
                let Ok(stream) = pods.watch(&params, &version).await else {
                    // The API server did not answer: try again, without
                    // hammering it.
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                    continue;
                };
                let mut stream = stream.boxed();
                while let Some(Ok(event)) = stream.next().await {
                    let (pod, change): (&Pod, fn(PodInfo) -> PodChange) = match &event {
                        WatchEvent::Added(p) | WatchEvent::Modified(p) => (p, PodChange::Seen),
                        WatchEvent::Deleted(p) => (p, PodChange::Gone),
                        WatchEvent::Bookmark(b) => {
                            version = b.metadata.resource_version.clone();
                            continue;
                        }
                        // 410 Gone: the version is too old to watch from; the
                        // state as it is now (every pod ADDED again: known
                        // ones change nothing, a new one is a replacement).
                        WatchEvent::Error(_) => {
                            version = "0".into();
                            break;
                        }
                    };
                    if let Some(v) = &pod.metadata.resource_version {
                        version = v.clone();
                    }
                    seen(change(PodInfo::of(pod)));
                }
            }
        })
    }
}

/// The API group of a resource (RBAC rules name it): NetworkPolicies are
/// `networking.k8s.io`'s, Deployments and StatefulSets `apps`', the rest
/// the core group's.
fn api_group(resource: &str) -> &'static str {
    match resource {
        "networkpolicies" => "networking.k8s.io",
        "deployments" | "statefulsets" => "apps",
        "networkchaos" | "iochaos" | "timechaos" | "stresschaos" => "chaos-mesh.org",
        _ => "",
    }
}

/// What the API server said, without kube's debug dump.
fn reason(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(status) if !status.message.is_empty() => {
            format!("{} ({} {})", status.message, status.code, status.reason)
        }
        other => other.to_string(),
    }
}

/// Every API interaction against kube's mock service: the method, path,
/// query and body the API server gets, answered as it would answer.
#[cfg(test)]
mod tests {
    use super::*;
    use http::{Request, Response};
    use kube::client::Body;
    use serde_json::{json, Value};

    type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

    fn mock() -> (Arc<Cluster>, Handle) {
        let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let _entered = runtime().enter();
        let client = Client::new(service, "default");
        (Arc::new(Cluster::with_client(client, "https://cluster.test/".into())), handle)
    }

    /// Answers the next request with `status` and `answer`; returns the
    /// request's method, path and query, and body as JSON (Null if none).
    async fn answer(handle: &mut Handle, status: u16, answer: Value) -> (String, String, Value) {
        let (request, send) = handle.next_request().await.expect("a request");
        let (method, uri) = (request.method().to_string(), request.uri().to_string());
        let bytes = request.into_body().collect_bytes().await.unwrap();
        let body = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap() };
        let response = Response::builder().status(status).body(Body::from(answer.to_string().into_bytes()));
        send.send_response(response.unwrap());
        (method, uri, body)
    }

    fn pod(name: &str, uid: &str, ready: bool) -> Value {
        let ready = if ready { "True" } else { "False" };
        json!({ "apiVersion": "v1", "kind": "Pod",
            "metadata": { "name": name, "namespace": "shop", "uid": uid, "resourceVersion": "7" },
            "spec": { "containers": [{ "name": "kv", "image": "kv:1" }] },
            "status": { "phase": "Running", "conditions": [{ "type": "Ready", "status": ready }] } })
    }

    fn in_background<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> std::thread::JoinHandle<T> {
        std::thread::spawn(f)
    }

    #[test]
    fn pods_are_listed_by_label_selector_in_the_named_namespace() {
        let (cluster, mut handle) = mock();
        let call = in_background(move || cluster.pods("shop", "app=kv,tier=db"));
        let list = json!({ "apiVersion": "v1", "kind": "PodList", "metadata": { "resourceVersion": "42" },
            "items": [pod("kv-1", "u-1", true), pod("kv-2", "u-2", false)] });
        let (method, uri, _) = runtime().block_on(answer(&mut handle, 200, list));
        assert_eq!(method, "GET");
        assert_eq!(uri, "/api/v1/namespaces/shop/pods?&labelSelector=app%3Dkv%2Ctier%3Ddb");
        let (pods, version) = call.join().unwrap().unwrap();
        assert_eq!(version, "42");
        assert_eq!((pods[0].name.as_str(), pods[0].uid.as_str(), pods[0].ready), ("kv-1", "u-1", true));
        assert!(!pods[1].ready && !pods[1].terminating && pods[1].containers == ["kv"]);
    }

    #[test]
    fn a_pod_is_deleted_only_while_its_uid_is_the_one_seen() {
        let (cluster, mut handle) = mock();
        let seen = PodInfo::of(&serde_json::from_value(pod("kv-1", "u-1", true)).unwrap());
        let call = in_background(move || cluster.delete_pod("shop", &seen, Some(0)));
        let (method, uri, body) = runtime().block_on(answer(&mut handle, 200, pod("kv-1", "u-1", true)));
        assert_eq!((method.as_str(), uri.as_str()), ("DELETE", "/api/v1/namespaces/shop/pods/kv-1?"));
        assert_eq!(body["gracePeriodSeconds"], 0);
        assert_eq!(body["preconditions"], json!({ "uid": "u-1" }));
        call.join().unwrap().unwrap();

        // A replacement of the same name: the API server refuses, and so
        // does the fault, naming the uid.
        let (cluster, mut handle) = mock();
        let seen = PodInfo::of(&serde_json::from_value(pod("kv-1", "u-1", true)).unwrap());
        let call = in_background(move || cluster.delete_pod("shop", &seen, None));
        let conflict = json!({ "kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Conflict",
            "code": 409, "message": "Precondition failed: UID in precondition: u-1, UID in object meta: u-9" });
        let (_, _, body) = runtime().block_on(answer(&mut handle, 409, conflict));
        assert!(body.get("gracePeriodSeconds").is_none(), "no grace given: the pod's own: {body}");
        let e = call.join().unwrap().unwrap_err().to_string();
        assert!(e.contains("delete pod `kv-1` (uid u-1)") && e.contains("UID in object meta: u-9"), "{e}");
    }

    #[test]
    fn an_eviction_carries_the_uid_and_a_disruption_budgets_refusal_is_final() {
        let (cluster, mut handle) = mock();
        let seen = PodInfo::of(&serde_json::from_value(pod("kv-1", "u-1", true)).unwrap());
        let call = in_background(move || cluster.evict_pod("shop", &seen));
        let refused = json!({ "kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "TooManyRequests",
            "code": 429, "message": "Cannot evict pod as it would violate the pod's disruption budget." });
        let (method, uri, body) = runtime().block_on(answer(&mut handle, 429, refused));
        assert_eq!((method.as_str(), uri.as_str()), ("POST", "/api/v1/namespaces/shop/pods/kv-1/eviction?"));
        assert_eq!((&body["apiVersion"], &body["kind"]), (&json!("policy/v1"), &json!("Eviction")));
        assert_eq!(body["deleteOptions"]["preconditions"], json!({ "uid": "u-1" }));
        let e = call.join().unwrap().unwrap_err().to_string();
        assert!(e.contains("evict pod `kv-1` (uid u-1)") && e.contains("disruption budget"), "{e}");
    }

    #[test]
    fn a_workload_is_scaled_through_its_scale_subresource() {
        let (cluster, mut handle) = mock();
        let owner = Owner { kind: OwnerKind::Deployment, name: "kv".into() };
        let c = Arc::clone(&cluster);
        let o = owner.clone();
        let call = in_background(move || c.replicas("shop", &o));
        let scale = |n: i32| {
            json!({ "apiVersion": "autoscaling/v1", "kind": "Scale", "metadata": { "name": "kv" },
                "spec": { "replicas": n }, "status": { "replicas": n } })
        };
        let (method, uri, _) = runtime().block_on(answer(&mut handle, 200, scale(3)));
        assert_eq!((method.as_str(), uri.as_str()), ("GET", "/apis/apps/v1/namespaces/shop/deployments/kv/scale"));
        assert_eq!(call.join().unwrap().unwrap(), 3);
        let call = in_background(move || cluster.scale("shop", &owner, 0));
        let (method, uri, body) = runtime().block_on(answer(&mut handle, 200, scale(0)));
        assert_eq!((method.as_str(), uri.as_str()), ("PATCH", "/apis/apps/v1/namespaces/shop/deployments/kv/scale?"));
        assert_eq!(body, json!({ "spec": { "replicas": 0 } }));
        call.join().unwrap().unwrap();
    }

    #[test]
    fn access_is_asked_per_verb_and_a_refusal_names_verb_resource_and_purpose() {
        let (cluster, mut handle) = mock();
        let needs = vec![
            Access { verb: "list", resource: "pods", purpose: "finding its pods".into() },
            Access { verb: "create", resource: "pods/eviction", purpose: "the `evict` fault #2".into() },
        ];
        let call = in_background(move || cluster.check_access("shop", &needs));
        let review = |allowed: bool, reason: &str| {
            json!({ "apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview", "spec": {},
                "status": { "allowed": allowed, "reason": reason } })
        };
        let (method, uri, body) = runtime().block_on(answer(&mut handle, 201, review(true, "")));
        assert_eq!(
            (method.as_str(), uri.as_str()),
            ("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews?")
        );
        let asked = &body["spec"]["resourceAttributes"];
        assert_eq!(asked, &json!({ "group": "", "namespace": "shop", "verb": "list", "resource": "pods" }));
        let (_, _, body) = runtime().block_on(answer(&mut handle, 201, review(false, "no RBAC rule")));
        assert_eq!(body["spec"]["resourceAttributes"]["subresource"], "eviction");
        let e = call.join().unwrap().unwrap_err().to_string();
        assert!(
            e.contains("this user may not create pods/eviction in namespace `shop` (no RBAC rule)")
                && e.contains("for the `evict` fault #2"),
            "{e}"
        );
    }

    #[test]
    fn a_services_node_port_is_reached_at_a_nodes_address() {
        let (cluster, mut handle) = mock();
        let call = in_background(move || cluster.node_port("shop", "kv", None));
        let service = json!({ "apiVersion": "v1", "kind": "Service", "metadata": { "name": "kv" },
            "spec": { "type": "NodePort", "selector": { "app": "kv" }, "ports": [{ "port": 7000, "nodePort": 31000 }] } });
        let (_, uri, _) = runtime().block_on(answer(&mut handle, 200, service));
        assert_eq!(uri, "/api/v1/namespaces/shop/services/kv");
        let nodes = json!({ "apiVersion": "v1", "kind": "NodeList", "metadata": {}, "items": [{ "metadata": { "name": "n1" },
            "status": { "addresses": [{ "type": "Hostname", "address": "n1" }, { "type": "InternalIP", "address": "10.0.0.7" }] } }] });
        let (_, uri, _) = runtime().block_on(answer(&mut handle, 200, nodes));
        assert_eq!(uri, "/api/v1/nodes?");
        assert_eq!(call.join().unwrap().unwrap(), ("10.0.0.7".parse().unwrap(), 31000, Some("app=kv".into())));

        // A ClusterIP service cannot be reached from outside: said so.
        let (cluster, mut handle) = mock();
        let call = in_background(move || cluster.node_port("shop", "kv", None));
        let service = json!({ "apiVersion": "v1", "kind": "Service", "metadata": { "name": "kv" },
            "spec": { "type": "ClusterIP", "ports": [{ "port": 7000 }] } });
        runtime().block_on(answer(&mut handle, 200, service));
        let e = call.join().unwrap().unwrap_err().to_string();
        assert!(e.contains("it has no node port (type ClusterIP)"), "{e}");
    }

    #[test]
    fn a_chaos_mesh_resource_selects_the_targets_pods_and_is_read_until_injected() {
        use crate::kinds::ClusterObjectKind;
        let (cluster, mut handle) = mock();
        // Chaos Mesh absent: its group is not served, and that is no error.
        let c = Arc::clone(&cluster);
        let call = in_background(move || c.chaos_kinds());
        let missing = json!({ "kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 404,
            "reason": "NotFound", "message": "the server could not find the requested resource" });
        let (method, uri, _) = runtime().block_on(answer(&mut handle, 404, missing));
        assert_eq!((method.as_str(), uri.as_str()), ("GET", "/apis/chaos-mesh.org/v1alpha1"));
        assert_eq!(call.join().unwrap().unwrap(), vec![]);

        let plan = crate::scenario::ChaosPlan {
            kind: ClusterObjectKind::NetworkChaos,
            spec: json!({ "action": "delay", "delay": { "latency": "100ms" } }),
            duration: std::time::Duration::from_millis(1500),
            line: 7,
        };
        let c = Arc::clone(&cluster);
        let labels = vec![("app".to_string(), "kv".to_string())];
        let call = in_background(move || c.create_chaos("shop", "crashlab-abc-t0-f1", "abc", &labels, &plan));
        let made = json!({ "apiVersion": "chaos-mesh.org/v1alpha1", "kind": "NetworkChaos",
            "metadata": { "name": "crashlab-abc-t0-f1", "uid": "c-1", "labels": { "crashlab.run": "abc" } }, "spec": {} });
        let (method, uri, body) = runtime().block_on(answer(&mut handle, 201, made.clone()));
        assert_eq!(
            (method.as_str(), uri.as_str()),
            ("POST", "/apis/chaos-mesh.org/v1alpha1/namespaces/shop/networkchaos?")
        );
        assert_eq!(body["metadata"]["labels"], json!({ "crashlab.run": "abc" }));
        assert_eq!(
            body["spec"],
            json!({ "action": "delay", "delay": { "latency": "100ms" }, "mode": "all", "duration": "1500ms",
                    "selector": { "namespaces": ["shop"], "labelSelectors": { "app": "kv" } } })
        );
        assert_eq!(call.join().unwrap().unwrap(), "c-1");

        // Read until AllInjected: the first answer is not yet.
        let c = Arc::clone(&cluster);
        let wait = std::time::Duration::from_secs(5);
        let call =
            in_background(move || c.await_chaos("shop", ClusterObjectKind::NetworkChaos, "crashlab-abc-t0-f1", wait));
        let mut status = made.clone();
        status["status"] = json!({ "conditions": [{ "type": "AllInjected", "status": "False" }] });
        let (method, uri, _) = runtime().block_on(answer(&mut handle, 200, status.clone()));
        assert_eq!(
            (method.as_str(), uri.as_str()),
            ("GET", "/apis/chaos-mesh.org/v1alpha1/namespaces/shop/networkchaos/crashlab-abc-t0-f1")
        );
        status["status"]["conditions"][0]["status"] = "True".into();
        runtime().block_on(answer(&mut handle, 200, status));
        let seen = call.join().unwrap().unwrap();
        assert!(seen.injected && seen.conditions == "AllInjected=True", "{}", seen.conditions);
    }

    #[test]
    fn an_isolating_policy_is_labelled_with_the_run_and_deleted_only_if_it_is_the_runs() {
        let (cluster, mut handle) = mock();
        let c = Arc::clone(&cluster);
        let labels = vec![("app".to_string(), "kv".to_string())];
        let call = in_background(move || c.deny_all("shop", "crashlab-abc-t0-f1", &labels, "abc"));
        let made = json!({ "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": { "name": "crashlab-abc-t0-f1", "uid": "p-1", "labels": { "crashlab.run": "abc" } }, "spec": {} });
        let (method, uri, body) = runtime().block_on(answer(&mut handle, 201, made.clone()));
        assert_eq!(
            (method.as_str(), uri.as_str()),
            ("POST", "/apis/networking.k8s.io/v1/namespaces/shop/networkpolicies?")
        );
        assert_eq!(body["metadata"]["labels"], json!({ "crashlab.run": "abc" }));
        assert_eq!(
            body["spec"],
            json!({ "podSelector": { "matchLabels": { "app": "kv" } }, "policyTypes": ["Ingress", "Egress"] })
        );
        assert_eq!(call.join().unwrap().unwrap(), "p-1");

        // Deleted with its uid as a precondition, once it is seen to be the run's.
        let c = Arc::clone(&cluster);
        let call = in_background(move || c.delete_policy("shop", "crashlab-abc-t0-f1", "abc", Some("p-1")));
        let (method, uri, _) = runtime().block_on(answer(&mut handle, 200, made.clone()));
        assert_eq!(
            (method.as_str(), uri.as_str()),
            ("GET", "/apis/networking.k8s.io/v1/namespaces/shop/networkpolicies/crashlab-abc-t0-f1")
        );
        let (method, _, body) = runtime().block_on(answer(&mut handle, 200, made));
        assert_eq!((method.as_str(), &body["preconditions"]), ("DELETE", &json!({ "uid": "p-1" })));
        assert!(call.join().unwrap().unwrap());

        // Another owner's policy of that name: no delete is sent.
        let c = Arc::clone(&cluster);
        let call = in_background(move || c.delete_policy("shop", "crashlab-abc-t0-f1", "abc", None));
        let foreign = json!({ "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": { "name": "crashlab-abc-t0-f1", "uid": "p-9", "labels": { "team": "db" } }, "spec": {} });
        runtime().block_on(answer(&mut handle, 200, foreign));
        let e = call.join().unwrap().unwrap_err().to_string();
        assert!(e.contains("it is not this run's") && e.contains("uid p-9"), "{e}");
        assert_eq!(cluster.calls(), 4, "no delete after the refusal");
    }

    #[test]
    fn the_watch_reports_each_change_and_goes_on_from_the_last_version() {
        let (cluster, mut handle) = mock();
        let (sender, changes) = std::sync::mpsc::channel();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let watch =
            Arc::clone(&cluster).watch_pods("shop".into(), "app=kv".into(), "42".into(), Arc::clone(&stop), move |c| {
                let _ = sender.send(c);
            });
        let events = [("DELETED", pod("kv-1", "u-1", true)), ("ADDED", pod("kv-2", "u-2", false))];
        let lines: String = events.iter().map(|(t, o)| json!({ "type": t, "object": o }).to_string() + "\n").collect();
        let (method, uri, _) = runtime().block_on(async {
            let (request, send) = handle.next_request().await.expect("a watch");
            let head = (request.method().to_string(), request.uri().to_string(), Value::Null);
            send.send_response(Response::builder().body(Body::from(lines.into_bytes())).unwrap());
            head
        });
        assert_eq!(method, "GET");
        assert!(
            uri.contains("watch=true") && uri.contains("resourceVersion=42") && uri.contains("labelSelector=app%3Dkv"),
            "{uri}"
        );
        let first = changes.recv_timeout(std::time::Duration::from_secs(5)).unwrap();
        assert!(matches!(first, PodChange::Gone(ref p) if p.uid == "u-1"), "{first:?}");
        let second = changes.recv_timeout(std::time::Duration::from_secs(5)).unwrap();
        assert!(matches!(second, PodChange::Seen(ref p) if p.uid == "u-2" && !p.ready), "{second:?}");
        // The server ended that watch: the next goes on from the last
        // version; told that version is too old (410 Gone), from the state
        // as it is.
        let gone = json!({ "type": "ERROR", "object": { "kind": "Status", "apiVersion": "v1", "status": "Failure",
            "code": 410, "reason": "Expired", "message": "too old resource version: 7 (9)" } });
        let (second, uri, unanswered) = runtime().block_on(async {
            let (request, send) = handle.next_request().await.expect("a second watch");
            let second = request.uri().to_string();
            send.send_response(Response::builder().body(Body::from(format!("{gone}\n").into_bytes())).unwrap());
            let (request, send) = handle.next_request().await.expect("a watch from the state as it is");
            (second, request.uri().to_string(), send)
        });
        assert!(second.contains("resourceVersion=7"), "{second}");
        assert!(uri.contains("resourceVersion=0"), "after 410 Gone: {uri}");
        stop.store(true, Ordering::Relaxed);
        watch.abort();
        drop(unanswered);
        assert_eq!(cluster.calls(), 3, "each watch is one call");
    }
}
