//! Chaos Mesh's custom resources, as dynamic objects (no Chaos Mesh types
//! are compiled in): whether the cluster serves them, one created on a
//! target's pods, read until Chaos Mesh says it is injected, and deleted
//! only while it is the run's.

use std::time::{Duration, Instant};

use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, PostParams};
use serde_json::json;

use super::{reason, Cluster, ClusterError, RUN_LABEL};
use crate::kinds::ClusterObjectKind;
use crate::scenario::ChaosPlan;

const VERSION: &str = "v1alpha1";

fn resource(kind: ClusterObjectKind) -> ApiResource {
    let (group, plural) = kind.resource();
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, VERSION, &kind.to_string()), plural)
}

/// What Chaos Mesh says of a resource: whether every selected container
/// got the fault (`AllInjected`), and its conditions, for a message.
pub struct Injection {
    pub injected: bool,
    pub conditions: String,
}

impl Cluster {
    fn chaos_api(&self, namespace: &str, kind: ClusterObjectKind) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), namespace, &resource(kind))
    }

    /// The Chaos Mesh kinds the API server serves (none: Chaos Mesh is not
    /// installed).
    pub fn chaos_kinds(&self) -> Result<Vec<ClusterObjectKind>, ClusterError> {
        let group = format!("chaos-mesh.org/{VERSION}");
        match self.call(self.client.list_api_group_resources(&group)) {
            Ok(list) => Ok(ClusterObjectKind::CHAOS
                .into_iter()
                .filter(|k| list.resources.iter().any(|r| r.name == k.resource().1))
                .collect()),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(Vec::new()),
            Err(e) => Err(ClusterError::Api {
                server: self.server.clone(),
                what: format!("ask whether it serves {group}"),
                reason: reason(&e),
            }),
        }
    }

    /// Creates `plan`'s resource, named `name` and labelled with the run's
    /// `token`, on the pods of `namespace` with labels `selector` (all of
    /// them, unless the spec says a `mode`); returns its uid.
    pub fn create_chaos(
        &self,
        namespace: &str,
        name: &str,
        token: &str,
        selector: &[(String, String)],
        plan: &ChaosPlan,
    ) -> Result<String, ClusterError> {
        let mut spec = plan.spec.clone();
        let labels: serde_json::Map<String, serde_json::Value> =
            selector.iter().map(|(k, v)| (k.clone(), v.clone().into())).collect();
        spec["selector"] = json!({ "namespaces": [namespace], "labelSelectors": labels });
        if spec.get("mode").is_none() {
            spec["mode"] = "all".into();
        }
        spec["duration"] = format!("{}ms", plan.duration.as_millis()).into();
        let object = json!({
            "apiVersion": format!("chaos-mesh.org/{VERSION}"),
            "kind": plan.kind.to_string(),
            "metadata": { "name": name, "namespace": namespace, "labels": { RUN_LABEL: token } },
            "spec": spec,
        });
        let object: DynamicObject = serde_json::from_value(object).expect("a resource is an object");
        let what = format!("create {} `{name}` in namespace `{namespace}`", plan.kind);
        let api = self.chaos_api(namespace, plan.kind);
        let made = self.call(api.create(&PostParams::default(), &object)).map_err(self.api_err(what))?;
        Ok(made.metadata.uid.unwrap_or_default())
    }

    /// Reads the resource until Chaos Mesh says every selected container
    /// got the fault, or `timeout`: what it said last.
    pub fn await_chaos(
        &self,
        namespace: &str,
        kind: ClusterObjectKind,
        name: &str,
        timeout: Duration,
    ) -> Result<Injection, ClusterError> {
        let api = self.chaos_api(namespace, kind);
        let what = format!("read {kind} `{name}` of namespace `{namespace}`");
        let deadline = Instant::now() + timeout;
        loop {
            let object = self.call(api.get(name)).map_err(self.api_err(what.clone()))?;
            let conditions = object.data["status"]["conditions"].as_array().cloned().unwrap_or_default();
            let injected = conditions.iter().any(|c| c["type"] == "AllInjected" && c["status"] == "True");
            if injected || Instant::now() >= deadline {
                let said: Vec<String> = conditions
                    .iter()
                    .map(|c| format!("{}={}", c["type"].as_str().unwrap_or("?"), c["status"].as_str().unwrap_or("?")))
                    .collect();
                let conditions = if said.is_empty() { "no conditions".into() } else { said.join(", ") };
                return Ok(Injection { injected, conditions });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Deletes the resource if it is the run's (its label, and its uid when
    /// known); `Ok(false)`: gone already (Chaos Mesh keeps an ended one
    /// until it is deleted, so this is the heal's own call).
    pub fn delete_chaos(
        &self,
        namespace: &str,
        kind: ClusterObjectKind,
        name: &str,
        token: &str,
        uid: Option<&str>,
    ) -> Result<bool, ClusterError> {
        let what = format!("delete {kind} `{name}` of namespace `{namespace}`");
        self.delete_owned(self.chaos_api(namespace, kind), what, name, token, uid)
    }
}
