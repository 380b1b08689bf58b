//! Pod targets (`kind = "pod"`): pods of a Kubernetes namespace chosen by
//! a label selector, reached from outside the cluster through a NodePort
//! Service, and the faults that act on them through the API. The cluster
//! runs them: what would start, stop or touch them here (a command, an
//! image, a data dir, a host) is refused, naming the line, as is a fault
//! that cannot reach a pod yet.

use std::time::Duration;

use toml::de::DeValue;

use super::diagnostic::Diagnostics;
use super::fields::Fields;
use super::plan::{
    BackupPlan, ChaosPlan, FaultKind, FaultPlan, Owner, PodPlan, PodReach, RecoverStep, SignalScope, StepAction,
    TargetKind, TargetPlan,
};
use crate::kinds::ClusterObjectKind;

/// The keys only a pod target reads.
pub const POD_KEYS: &[&str] = &["namespace", "selector", "container", "kubeconfig", "context", "owner", "port_forward"];

/// The keys of a target that a pod target does not take, and why.
const NOT_FOR_PODS: &[(&str, &str)] = &[
    ("command", "the pod's command is in its spec"),
    ("image", "the pod's image is in its spec"),
    ("restart", "the cluster restarts the pod (its workload, its restartPolicy)"),
    ("stop_timeout", "crashlab does not stop a pod it did not start"),
    ("stop_signal", "crashlab does not stop a pod it did not start"),
    ("data_dir", "the pod's data is in its volumes, not here"),
    ("disposable", "the pod's data is in its volumes, not here"),
    ("mounts", "the pod's volumes are in its spec"),
    ("host", "the cluster places the pod"),
];

/// A pod target's own keys; the keys it may not have are refused, and a
/// pod key on another kind of target.
pub(super) fn compile_pod(f: &Fields, kind: TargetKind, check_paths: bool, d: &mut Diagnostics) -> Option<PodPlan> {
    if kind != TargetKind::Pod {
        for key in POD_KEYS {
            if let Some(value) = f.get(key) {
                d.error(value.span(), format!("`{key}` applies to kind = \"pod\" only, in {}", f.what));
            }
        }
        return None;
    }
    for (key, why) in NOT_FOR_PODS {
        if let Some(value) = f.get(key) {
            d.error(value.span(), format!("`{key}` does not apply to a pod target, in {}: {why}", f.what));
        }
    }
    let namespace = f.required_str("namespace", "the pods' namespace (none is guessed), e.g. \"shop\"", d);
    let reach = reach(f, d);
    let selector = selector(f, d);
    let container = f.str("container", d).map(|(s, _)| s.to_string());
    let base = d.path.parent().map(std::path::Path::to_path_buf).unwrap_or_default();
    let kubeconfig = f.str("kubeconfig", d).map(|(s, span)| (base.join(s), span));
    if let Some((path, span)) = &kubeconfig {
        if check_paths && !path.is_file() {
            d.error(span.clone(), format!("`kubeconfig` in {}: {} is not a file", f.what, path.display()));
        }
    }
    let context = f.str("context", d).map(|(s, _)| s.to_string());
    let owner = f.str("owner", d).and_then(|(text, span)| {
        let parsed = text.split_once('/').and_then(|(kind, name)| {
            let kind = kind.parse().ok()?;
            is_label_value(name).then(|| Owner { kind, name: name.to_string() })
        });
        if parsed.is_none() {
            let expected = "\"deployment/NAME\" or \"statefulset/NAME\"";
            d.error(span, format!("`owner = \"{text}\"` in {}: expected {expected}", f.what));
        }
        parsed
    });
    let (namespace, namespace_span) = namespace?;
    if !is_label_value(namespace) || namespace.is_empty() {
        d.error(namespace_span, format!("`namespace = \"{namespace}\"` in {} is not a namespace name", f.what));
    }
    Some(PodPlan {
        namespace: namespace.to_string(),
        selector: selector?,
        container,
        reach: reach?,
        kubeconfig: kubeconfig.map(|(p, _)| p),
        context,
        owner,
    })
}

/// `service = "kv"` (a NodePort Service) or `port_forward = 7000` (a port
/// of the pods, forwarded through the API): one of them.
fn reach(f: &Fields, d: &mut Diagnostics) -> Option<PodReach> {
    let service = f.str("service", d).map(|(s, _)| PodReach::Service(s.to_string()));
    let forward = f.get("port_forward").and_then(|_| f.integer("port_forward", 1, 65535, d));
    match (service, forward) {
        (Some(service), None) => Some(service),
        (None, Some(port)) => Some(PodReach::PortForward(port as u16)),
        (Some(_), Some(_)) => {
            let span = f.get("port_forward").map(|v| v.span()).unwrap_or(f.span.clone());
            d.error(span, format!("{} has both `service` and `port_forward`: the pods are reached one way", f.what));
            None
        }
        (None, None) if f.get("port_forward").is_some() => None,
        (None, None) => {
            let expected = "service = \"kv\" (a NodePort Service) or port_forward = 7000 (a port of the pods, \
                            forwarded through the Kubernetes API)";
            d.error(f.span.clone(), format!("{} reaches its pods through neither; expected {expected}", f.what));
            None
        }
    }
}

/// `selector = { app = "kv" }`: at least one label; an empty selector
/// would select every pod of the namespace.
fn selector(f: &Fields, d: &mut Diagnostics) -> Option<Vec<(String, String)>> {
    let example = "e.g. selector = { app = \"kv\" }";
    let Some((table, span)) = f.table("selector", d) else {
        if f.get("selector").is_none() {
            d.error(f.span.clone(), format!("missing key `selector` in {}: the pods' labels, {example}", f.what));
        }
        return None;
    };
    let mut labels = Vec::new();
    for (key, value) in table.iter() {
        let key = key.get_ref().to_string();
        match value.get_ref().as_str() {
            Some(v) if is_label_key(&key) && is_label_value(v) => labels.push((key, v.to_string())),
            Some(v) => d.error(value.span(), format!("`{key} = \"{v}\"` in `selector` of {} is not a label", f.what)),
            None => d.error(value.span(), format!("label values in `selector` of {} are strings", f.what)),
        }
    }
    if table.is_empty() {
        d.error(span, format!("`selector` of {} names no label: it would select every pod; {example}", f.what));
        return None;
    }
    Some(labels)
}

/// A label key: an optional DNS prefix and `/`, then a name.
fn is_label_key(key: &str) -> bool {
    let name = key.rsplit_once('/').map_or(key, |(prefix, name)| if prefix.is_empty() { "" } else { name });
    !name.is_empty() && name.len() <= 63 && is_label_value(name)
}

/// A label value (or name): letters, digits, `-`, `_`, `.`, alphanumeric
/// at both ends, at most 63 characters.
fn is_label_value(value: &str) -> bool {
    let edge = |c: Option<char>| c.is_none_or(|c| c.is_ascii_alphanumeric());
    value.len() <= 63
        && value.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        && edge(value.chars().next())
        && edge(value.chars().last())
}

/// A pod target takes only the faults that act through the API; such a
/// fault takes only a pod target.
pub(super) fn check_fault(
    fault: &FaultPlan,
    targets: &[TargetPlan],
    what: &str,
    span: std::ops::Range<usize>,
    d: &mut Diagnostics,
) {
    let (kinds, names) = (fault.kinds(), fault.target_names());
    let is_pod = |name: &&str| targets.iter().any(|t| t.name == *name && t.kind == TargetKind::Pod);
    for kind in kinds {
        let for_pods = matches!(
            kind,
            FaultKind::DeletePod { .. }
                | FaultKind::EvictPod
                | FaultKind::IsolatePod { .. }
                | FaultKind::Scale { .. }
                | FaultKind::ChaosMesh(_)
        );
        // Signals reach a pod's container through exec, so either kind.
        let by_exec = matches!(kind, FaultKind::Kill { .. } | FaultKind::Pause { .. } | FaultKind::Restart);
        let grouped = matches!(kind, FaultKind::Kill { scope: Some(SignalScope::Group), .. });
        if let Some(pod) = names.iter().find(|n| is_pod(n)).filter(|_| grouped) {
            d.error(
                span.clone(),
                format!(
                    "{what}: scope = \"group\" on target `{pod}`, a pod: a signal sent with exec reaches PID 1 \
                     (\"main\") or every process of the container (\"all\")"
                ),
            );
        }
        let ownerless =
            |name: &str| targets.iter().any(|t| t.name == name && t.pod.as_ref().is_some_and(|p| p.owner.is_none()));
        if let Some(pod) = names.iter().find(|n| ownerless(n)).filter(|_| matches!(kind, FaultKind::Scale { .. })) {
            let example = "e.g. owner = \"deployment/kv\"";
            d.error(
                span.clone(),
                format!("{what}: a `scale` fault scales target `{pod}`'s `owner`, which it has not; {example}"),
            );
        }
        if let Some(pod) = names.iter().find(|n| is_pod(n)).filter(|_| !for_pods && !by_exec) {
            d.error(
                span.clone(),
                format!(
                    "{what}: a `{}` fault on target `{pod}`, a pod: a pod is reached through the Kubernetes API \
                     only; use kind = \"delete-pod\", \"evict-pod\", \"isolate-pod\", \"scale\", \"chaos-mesh\", \
                     or \"kill\", \"pause\", \"restart\" (sent with exec)",
                    kind.name()
                ),
            );
        }
        if let Some(other) = names.iter().find(|n| !is_pod(n)).filter(|_| for_pods) {
            d.error(
                span.clone(),
                format!("{what}: a `{}` fault needs a kind = \"pod\" target; `{other}` is not", kind.name()),
            );
        }
    }
}

/// Backups and the steps that act on a target crashlab runs (its data dir,
/// its stop and start) have nothing to act on in a pod target, and a
/// procedure's `fault` steps take the faults a pod takes.
pub(super) fn check_steps(
    targets: &[TargetPlan],
    faults: &[FaultPlan],
    backups: &[BackupPlan],
    recover: &[RecoverStep],
    item_span: impl Fn(&str, usize) -> std::ops::Range<usize>,
    d: &mut Diagnostics,
) {
    let is_pod = |name: &str| targets.iter().any(|t| t.name == name && t.kind == TargetKind::Pod);
    for (i, b) in backups.iter().enumerate().filter(|(_, b)| is_pod(&b.target.name)) {
        let why = "a backup copies a data dir here; a pod's data is in its volumes";
        d.error(item_span("backup", i), format!("[[backup]] `{}`: target `{}` is a pod: {why}", b.name, b.target));
    }
    for (i, step) in recover.iter().enumerate() {
        let what = format!("[[recover]] #{}", i + 1);
        let target = match &step.action {
            StepAction::Fault { fault } => {
                check_fault(&faults[*fault], targets, &what, item_span("recover", i), d);
                continue;
            }
            StepAction::Restore { target, .. }
            | StepAction::Remove { target, .. }
            | StepAction::Stop { target }
            | StepAction::Start { target } => target,
            _ => continue,
        };
        if is_pod(&target.name) {
            d.error(
                item_span("recover", i),
                format!(
                    "{what}: `{}` acts on a target crashlab runs; `{target}` is a pod the cluster runs (a `fault` \
                     step with kind = \"scale\", or a `run` step with kubectl, acts on it)",
                    step.action.name()
                ),
            );
        }
    }
}

/// `chaos = "NetworkChaos"`, `spec = { action = "partition", ... }`: the
/// kind and the spec of a Chaos Mesh resource. Its selector is the
/// target's, never the scenario's (a spec that selects pods itself could
/// reach pods the trial does not watch), and its duration the fault's.
pub(super) fn chaos_plan(f: &Fields, duration: Option<Duration>, d: &mut Diagnostics) -> Option<ChaosPlan> {
    let names: Vec<&'static str> = ClusterObjectKind::CHAOS.iter().map(|k| k.into()).collect();
    let kind = f.required_choice("chaos", "Chaos Mesh kind", &names, d).and_then(|(k, _)| k.parse().ok());
    let spec = match f.table("spec", d) {
        Some((table, span)) => {
            let spec = super::fields::to_json(&DeValue::Table(table.clone()));
            let owned = [("selector", "to the target's pods"), ("duration", "to the fault's `duration`")];
            for (key, to) in owned.into_iter().filter(|(key, _)| spec.get(key).is_some()) {
                d.error(span.clone(), format!("`spec.{key}` in {}: crashlab sets it {to}", f.what));
            }
            Some(spec)
        }
        None if f.get("spec").is_none() => {
            let example = "e.g. spec = { action = \"partition\", direction = \"both\" }";
            d.error(f.span.clone(), format!("missing key `spec` in {}; the resource's spec, {example}", f.what));
            None
        }
        None => None,
    };
    let line = d.line_col(f.span.start).0;
    Some(ChaosPlan { kind: kind?, spec: spec?, duration: duration?, line })
}
