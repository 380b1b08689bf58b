//! Remote hosts: `[host.NAME]` tables (an SSH destination), and the process
//! and container targets that run on them (`host = "NAME"`), through the `crashlab
//! agent` the run copies there. What the agent does not do yet is refused
//! here, naming the line, rather than done on the wrong machine.

use std::path::PathBuf;

use super::diagnostic::Diagnostics;
use super::fields::Fields;
use super::plan::{
    BackupPlan, FaultKind, FaultPlan, HostPlan, NetworkPlan, RecoverStep, StepAction, TargetKind, TargetPlan,
};

pub const HOST_KEYS: &[&str] = &["address", "user", "port", "identity", "known_hosts", "engine"];

/// Every `[host.NAME]` table.
pub(super) fn compile_hosts(top: &Fields, d: &mut Diagnostics) -> Vec<HostPlan> {
    let Some((table, _)) = top.table("host", d) else { return Vec::new() };
    let base = d.path.parent().map(std::path::Path::to_path_buf).unwrap_or_default();
    let mut hosts = Vec::new();
    for (key, value) in table.iter() {
        let name = key.get_ref().to_string();
        let what = format!("[host.{name}]");
        if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            d.error(key.span(), format!("host name `{name}` may hold only letters, digits, `-` and `_`"));
        }
        let Some(t) = value.get_ref().as_table() else {
            d.error(value.span(), format!("{what} must be a table"));
            continue;
        };
        let f = Fields::new(t, value.span(), what, HOST_KEYS, d);
        let address = f.required_str("address", "the host's name or IP address, e.g. \"10.0.0.5\"", d);
        let user = f.str("user", d).map(|(s, _)| s.to_string());
        let port = f.integer("port", 1, 65535, d).map(|p| p as u16);
        // Relative to the scenario, as every path it names.
        let path = |key: &str, d: &mut Diagnostics| f.str(key, d).map(|(s, _)| base.join(s));
        let identity: Option<PathBuf> = path("identity", d);
        let known_hosts: Option<PathBuf> = path("known_hosts", d);
        let engine = f.str("engine", d).and_then(|(text, span)| engine_socket(text, span, d));
        if let Some((address, _)) = address {
            let address = address.to_string();
            hosts.push(HostPlan { name, address, user, port, identity, known_hosts, engine });
        }
    }
    hosts
}

/// `engine = "unix:///run/user/1000/docker.sock"` (or the bare path): the
/// socket of the host's Docker engine, a path on that host.
fn engine_socket(text: &str, span: std::ops::Range<usize>, d: &mut Diagnostics) -> Option<PathBuf> {
    let path = text.strip_prefix("unix://").unwrap_or(text);
    if !path.starts_with('/') {
        let expected = "the engine's unix socket on that host, e.g. \"unix:///run/user/1000/docker.sock\"";
        d.error(span, format!("`engine = \"{text}\"`: expected {expected}"));
        return None;
    }
    Some(PathBuf::from(path))
}

/// A target's `host` names a `[host.NAME]`, on a process target outside
/// `[network]` namespaces.
pub(super) fn check_targets(
    hosts: &[HostPlan],
    targets: &[TargetPlan],
    network: NetworkPlan,
    span_of: impl Fn(&str) -> std::ops::Range<usize>,
    d: &mut Diagnostics,
) {
    for t in targets {
        let Some(host) = &t.host else { continue };
        let span = span_of(&t.name);
        if !hosts.iter().any(|h| &h.name == host) {
            let known: Vec<&str> = hosts.iter().map(|h| h.name.as_str()).collect();
            d.error(
                span.clone(),
                format!(
                    "[target.{}] runs on host `{host}`, which no [host.{host}] table defines (hosts: {})",
                    t.name,
                    if known.is_empty() { "none".into() } else { known.join(", ") }
                ),
            );
        }
        if t.kind == TargetKind::Compose {
            let why = "a compose file's services come up here; name each as a kind = \"container\" target instead";
            d.error(
                span.clone(),
                format!("[target.{}]: `host` applies to process and container targets: {why}", t.name),
            );
        }
        if t.kind == TargetKind::Container && !t.mounts.is_empty() {
            let what = "`mounts` name paths of this machine, which a container on a host cannot bind";
            d.error(span.clone(), format!("[target.{}]: {what}", t.name));
        }
        if network == NetworkPlan::Namespaces {
            d.error(span, format!("[target.{}]: a target on a host cannot be in [network] namespaces", t.name));
        }
    }
}

/// Only faults that can reach a target on a host (see
/// [`super::FaultKind::on_a_host`]) are aimed at one.
pub(super) fn check_fault(
    fault: &FaultPlan,
    targets: &[TargetPlan],
    what: &str,
    span: std::ops::Range<usize>,
    d: &mut Diagnostics,
) {
    let (kinds, names) = (fault.kinds(), fault.target_names());
    let host_of = |name: &str| targets.iter().find(|t| t.name == name).and_then(|t| t.host.as_deref());
    let Some(target) = names.iter().find(|n| host_of(n).is_some()) else { return };
    for kind in kinds {
        let why = match kind {
            FaultKind::Partition(p) if p.isolate => Some(
                "isolating it would cut its agent's link too: partition it from the others with `groups`".to_string(),
            ),
            FaultKind::Partition(p) => p.groups[0].iter().find_map(|a| {
                let b = p.groups[1].iter().find(|b| host_of(b) == host_of(a))?;
                Some(format!("`{a}` and `{b}` run on the same host, which rules on that host cannot separate"))
            }),
            kind if kind.on_a_host().is_none() => {
                Some("its agent does not set up what it needs (namespaces, a preloaded clock) yet".to_string())
            }
            _ => None,
        };
        if let Some(why) = why {
            d.error(
                span.clone(),
                format!("{what}: a `{}` fault on target `{target}`, which runs on a host: {why}", kind.name()),
            );
        }
    }
}

/// Backups, restores and removals act on a data dir on this machine: on a
/// host target's they would act on nothing, so they are refused.
pub(super) fn check_steps(
    targets: &[TargetPlan],
    backups: &[BackupPlan],
    recover: &[RecoverStep],
    item_span: impl Fn(&str, usize) -> std::ops::Range<usize>,
    d: &mut Diagnostics,
) {
    let on_host = |name: &str| targets.iter().any(|t| t.name == name && t.host.is_some());
    for (i, b) in backups.iter().enumerate() {
        if on_host(&b.target) {
            d.error(
                item_span("backup", i),
                format!("[[backup]] `{}`: target `{}` runs on a host, whose data dir is not here", b.name, b.target),
            );
        }
    }
    for (i, step) in recover.iter().enumerate() {
        let target = match &step.action {
            StepAction::Restore { target, .. } | StepAction::Remove { target, .. } => target,
            _ => continue,
        };
        if on_host(target) {
            d.error(
                item_span("recover", i),
                format!(
                    "[[recover]] #{}: `{}` acts on a data dir here; target `{target}` runs on a host (a `run` step \
                     runs its command there)",
                    i + 1,
                    step.action.name()
                ),
            );
        }
    }
}
