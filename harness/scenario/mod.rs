//! Scenario files: TOML -> spanned tables -> a validated, immutable [`Plan`].
//!
//! Every error in a file is collected (not just the first), each pointing at
//! `file:line:col` with the expected form and, for typos, the nearest valid
//! key or value.

pub mod abort;
pub mod diagnostic;
pub mod expect;
pub mod faults;
mod fields;
pub mod hosts;
pub mod io;
mod menu;
mod packet;
pub mod plan;
pub mod pods;
mod pressure;
mod recover;
pub mod schema;
pub mod template;
pub mod workload;

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use toml::de::DeTable;

pub use diagnostic::{Diagnostic, Diagnostics};
pub use fields::parse_bytes;
use fields::{Fields, Span};
pub use plan::*;

use crate::scenario::expect::{parse_expectation, Aggregate, Expectation, Metric};

/// Why a scenario could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read scenario {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{0}")]
    Invalid(Diagnostics),
    #[error("scenario {path} is {len} bytes; a scenario file is at most 1 MiB")]
    TooLarge { path: PathBuf, len: u64 },
}

/// Reads and compiles a scenario file.
pub fn load(path: &Path) -> Result<Plan, LoadError> {
    compile(path, &read_source(path)?).map_err(LoadError::Invalid)
}

/// The largest scenario file read: real ones are a few KiB, and a file far
/// larger is a mistake that would only take long to parse.
pub const MAX_SOURCE_BYTES: u64 = 1 << 20;

fn read_source(path: &Path) -> Result<String, LoadError> {
    let read = |source| LoadError::Read { path: path.to_path_buf(), source };
    let len = std::fs::metadata(path).map_err(read)?.len();
    if len > MAX_SOURCE_BYTES {
        return Err(LoadError::TooLarge { path: path.to_path_buf(), len });
    }
    std::fs::read_to_string(path).map_err(read)
}

/// Loads the copy of a scenario kept in a run directory, for `analyze`:
/// paths it names (backups to restore) were checked when it ran, and are
/// relative to where it was then, so they are not checked again.
pub fn load_stored(path: &Path) -> Result<Plan, LoadError> {
    compile_with(path, &read_source(path)?, false).map_err(LoadError::Invalid)
}

pub const TOP_KEYS: &[&str] = &[
    "name",
    "description",
    "target",
    "network",
    "proxy",
    "workload",
    "fault",
    "backup",
    "recover",
    "expect",
    "trials",
    "abort",
    "host",
];
pub const NETWORK_KEYS: &[&str] = &["kind"];
pub const PROXY_KEYS: &[&str] = &["target"];
pub const TARGET_KEYS: &[&str] = &[
    "kind",
    "reach",
    "command",
    "env",
    "restart",
    "stop_timeout",
    "stop_signal",
    "probe",
    "before_start",
    "after_stop",
    "data_dir",
    "disposable",
    "image",
    "file",
    "service",
    "mounts",
    "host",
    "namespace",
    "selector",
    "container",
    "kubeconfig",
    "context",
    "owner",
    "port_forward",
];
pub const TARGET_KINDS: &[&str] = <TargetKind as strum::VariantNames>::VARIANTS;
pub const RESTART_KEYS: &[&str] = &["policy", "delay"];
pub const PROBE_KEYS: &[&str] = &[
    "kind",
    "port",
    "path",
    "status",
    "body_contains",
    "command",
    "send",
    "expect",
    "interval",
    "timeout",
    "healthy_after",
];
pub const PROBE_KINDS: &[&str] = <ProbeKindName as strum::VariantNames>::VARIANTS;
pub use faults::{FAULT_KEYS, FAULT_KINDS};
pub use recover::{step_keys, BACKUP_KEYS, RECOVER_ACTIONS, RECOVER_KEYS};
pub use workload::{WORKLOAD_KEYS, WORKLOAD_KINDS};
pub const TRIALS_KEYS: &[&str] = &["count", "seed", "startup_timeout", "recovery_timeout"];

/// Compiles scenario source into a plan, or every problem found in it.
pub fn compile(path: &Path, source: &str) -> Result<Plan, Diagnostics> {
    compile_with(path, source, true)
}

/// `check_paths`: whether paths the scenario names must exist now.
fn compile_with(path: &Path, source: &str, check_paths: bool) -> Result<Plan, Diagnostics> {
    let mut d = Diagnostics::new(path, source);
    let (root, errors) = DeTable::parse_recoverable(source);
    if !errors.is_empty() {
        // A syntax error leaves a partial table: checking it would only add
        // confusing "missing key" errors, so report the syntax alone.
        for e in errors {
            let span = e.span().unwrap_or(0..0);
            d.error(span, format!("invalid TOML: {}", e.message().trim()));
        }
        return Err(d);
    }
    let root_span = root.span();
    let root = root.get_ref();
    let top = Fields::new(root, root_span.start..root_span.start, "the scenario", TOP_KEYS, &mut d);

    let name = top.required_str("name", "a string naming the scenario", &mut d).map(|(s, _)| s.to_string());
    let description = top.str("description", &mut d).map(|(s, _)| s.to_string()).unwrap_or_default();

    let targets = compile_targets(&top, check_paths, &mut d);
    let hosts = hosts::compile_hosts(&top, &mut d);
    let target_names: Vec<&str> = root
        .get("target")
        .and_then(|t| t.get_ref().as_table())
        .map(|t| t.keys().map(|k| k.get_ref().as_ref()).collect())
        .unwrap_or_default();

    let proxies = compile_proxies(&top, &target_names, &mut d);
    check_proxy_refs(root, &targets, &proxies, &target_names, &mut d);
    let mut network = compile_network(&top, &mut d);
    // Targets all on remote hosts have addresses of their own.
    let declared = top.get("network").is_some();
    if !declared && !targets.is_empty() && targets.iter().all(|t| t.host.is_some()) {
        network = NetworkPlan::RemoteHosts;
    }
    let target_span = |name: &str| {
        let target = root.get("target").and_then(|t| t.get_ref().as_table()).and_then(|t| t.get(name));
        let host = target.and_then(|t| t.get_ref().as_table()).and_then(|t| t.get("host"));
        host.or(target).map_or(0..0, |v| v.span())
    };
    hosts::check_targets(&hosts, &targets, network, target_span, &mut d);
    let workload = top.table("workload", &mut d).and_then(|(t, span)| {
        let f = Fields::new(t, span, "[workload]", WORKLOAD_KEYS, &mut d);
        workload::compile_workload(&f, &target_names, &proxies, check_paths, &mut d)
    });

    let mut faults = compile_faults(&top, &targets, &target_names, &proxies, network, workload.as_ref(), &mut d);

    let backups = recover::compile_backups(&top, &target_names, &faults, &mut d);
    let scope = recover::FaultScope { proxies: &proxies, network, workload: workload.as_ref() };
    let recover = recover::compile_recover(&top, &target_names, &backups, &mut faults, &scope, check_paths, &mut d);
    let data_dir_span = |name: &str| {
        let target = root.get("target").and_then(|t| t.get_ref().as_table()).and_then(|t| t.get(name));
        let dir = target.and_then(|t| t.get_ref().as_table()).and_then(|t| t.get("data_dir"));
        dir.or(target).map_or(0..0, |v| v.span())
    };
    faults::check_disposable(&targets, &faults, &recover, data_dir_span, &mut d);
    let item_span = |table: &str, i: usize| {
        let items = root.get(table).and_then(|v| v.get_ref().as_array());
        items.and_then(|a| a.get(i)).map_or(0..0, |v| v.span())
    };
    hosts::check_steps(&targets, &backups, &recover, item_span, &mut d);
    pods::check_steps(&targets, &faults, &backups, &recover, item_span, &mut d);

    let expectations = compile_expectations(&top, &mut d);

    let trials = match top.table("trials", &mut d) {
        Some((t, span)) => compile_trials(&Fields::new(t, span, "[trials]", TRIALS_KEYS, &mut d), &mut d),
        None => TrialsPlan::default(),
    };
    let abort = top.table("abort", &mut d).and_then(|(t, span)| {
        abort::compile_abort(&Fields::new(t, span, "[abort]", abort::ABORT_KEYS, &mut d), &mut d)
    });

    match (d.is_empty(), name) {
        (true, Some(name)) => Ok(Plan {
            name,
            description,
            source_path: path.to_path_buf(),
            targets,
            hosts,
            proxies,
            network,
            workload,
            faults,
            backups,
            recover,
            expectations,
            trials,
            abort,
        }),
        _ => Err(d),
    }
}

/// Every `[target.NAME]` table.
fn compile_targets(top: &Fields, check_paths: bool, d: &mut Diagnostics) -> Vec<TargetPlan> {
    let mut targets = Vec::new();
    let Some((table, _)) = top.table("target", d) else {
        d.error(0..0, "missing `[target.<name>]`: a scenario needs at least one target");
        return targets;
    };
    for (key, value) in table.iter() {
        let name = key.get_ref().to_string();
        let what = format!("[target.{name}]");
        if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            d.error(key.span(), format!("target name `{name}` may hold only letters, digits, `-` and `_`"));
        }
        match value.get_ref().as_table() {
            Some(t) => {
                let f = Fields::new(t, value.span(), what, TARGET_KEYS, d);
                targets.extend(compile_target(name, &f, check_paths, d));
            }
            None => d.error(value.span(), format!("{what} must be a table")),
        }
    }
    targets
}

/// Every `[[fault]]` table (a procedure's `fault` steps add theirs later).
fn compile_faults(
    top: &Fields,
    targets: &[TargetPlan],
    target_names: &[&str],
    proxies: &[ProxyPlan],
    network: NetworkPlan,
    workload: Option<&WorkloadPlan>,
    d: &mut Diagnostics,
) -> Vec<FaultPlan> {
    let mut faults = Vec::new();
    let Some(value) = top.get("fault") else { return faults };
    let Some(items) = value.get_ref().as_array() else {
        d.error(value.span(), "`fault` must be an array of tables: write each as [[fault]]");
        return faults;
    };
    for (i, item) in items.iter().enumerate() {
        let Some(t) = item.get_ref().as_table() else {
            d.error(item.span(), "each [[fault]] must be a table");
            continue;
        };
        let f = Fields::new(t, item.span(), format!("[[fault]] #{}", i + 1), FAULT_KEYS, d);
        if menu::is_menu(&f) {
            let menu = menu::menu_faults(&f, target_names, network, workload, d);
            for fault in &menu {
                hosts::check_fault(fault, targets, &f.what, item.span(), d);
                pods::check_fault(fault, targets, &f.what, item.span(), d);
            }
            faults.extend(menu);
            continue;
        }
        let fault = faults::compile_fault(&f, target_names, proxies, network, workload, false, d);
        if let Some(fault) = &fault {
            hosts::check_fault(fault, targets, &f.what, item.span(), d);
            pods::check_fault(fault, targets, &f.what, item.span(), d);
        }
        let on_process = |name: &str| targets.iter().any(|t| t.name == name && t.kind == TargetKind::Process);
        let of_kind = |name: &str, kind: TargetKind| targets.iter().any(|t| t.name == name && t.kind == kind);
        if let Some(FaultPlan { kind: FaultKind::Clock(_), target, .. }) = &fault {
            if of_kind(target, TargetKind::Compose) {
                d.error(
                    item.span(),
                    format!(
                        "[[fault]] #{}: a `clock` fault preloads libfaketime into a process or container target; \
                         `{target}` is a compose service, whose containers the compose file makes",
                        i + 1
                    ),
                );
            }
        }
        if let Some(FaultPlan { kind: FaultKind::Disconnect { .. }, target, .. }) = &fault {
            if on_process(target) {
                d.error(
                    item.span(),
                    format!(
                        "[[fault]] #{}: `disconnect` takes a container off its network; `{target}` is a process \
                         (partition process targets with [network] kind = \"namespaces\")",
                        i + 1
                    ),
                );
            }
        }
        faults.extend(fault);
    }
    faults
}

/// The `[expect]` table: per-trial bounds and statistics over the run.
fn compile_expectations(top: &Fields, d: &mut Diagnostics) -> Vec<Expectation> {
    let mut expectations = Vec::new();
    let Some((t, span)) = top.table("expect", d) else { return expectations };
    let f = Fields::new(t, span, "[expect]", Metric::NAMES, d);
    for (key, value) in f.table.iter() {
        let Ok(metric) = Metric::from_str(key.get_ref()) else {
            continue;
        };
        let key = key.get_ref();
        // `rto.p95 = "<= 2s"` is TOML for a table under `rto`.
        let Some(per_stat) = value.get_ref().as_table() else {
            match parse_expectation(metric, None, value.get_ref()) {
                Ok(e) => expectations.push(e),
                Err(message) => d.error(value.span(), format!("[expect] {key}: {message}")),
            }
            continue;
        };
        // `each` is the per-trial bound, for when both are wanted:
        // `rto = { each = "<= 1s", p95 = "<= 500ms" }`.
        for (stat, bound) in per_stat.iter() {
            let stat = stat.get_ref();
            let aggregate = Aggregate::from_str(stat).map(Some);
            let Ok(aggregate) = aggregate.or(if stat == "each" { Ok(None) } else { Err(()) }) else {
                d.error(
                    bound.span(),
                    format!(
                        "[expect] {key}.{stat}: unknown statistic{}; expected `each` (every trial) or one \
                         of: {}",
                        diagnostic::did_you_mean(stat, Aggregate::NAMES.iter().copied()),
                        Aggregate::NAMES.join(", ")
                    ),
                );
                continue;
            };
            match parse_expectation(metric, aggregate, bound.get_ref()) {
                Ok(e) => expectations.push(e),
                Err(message) => d.error(bound.span(), format!("[expect] {key}.{stat}: {message}")),
            }
        }
    }
    expectations
}

fn compile_network(top: &Fields, d: &mut Diagnostics) -> NetworkPlan {
    let Some((t, span)) = top.table("network", d) else { return NetworkPlan::Host };
    let f = Fields::new(t, span, "[network]", NETWORK_KEYS, d);
    match f.required_choice("kind", "network kind", &["host", "namespaces"], d) {
        Some(("namespaces", _)) => NetworkPlan::Namespaces,
        _ => NetworkPlan::Host,
    }
}

impl Default for TrialsPlan {
    fn default() -> Self {
        TrialsPlan {
            count: 1,
            seed: None,
            startup_timeout: Duration::from_secs(30),
            recovery_timeout: Duration::from_secs(30),
        }
    }
}

fn check_templates(argv: &[String], span: &Span, what: &str, d: &mut Diagnostics) {
    for arg in argv {
        match template::placeholders(arg) {
            Ok(names) => {
                for name in names {
                    // `{proxy.NAME}`, `{host.TARGET}` and `{port.TARGET}`
                    // are checked once proxies and targets are known.
                    if !template::PLACEHOLDERS.contains(&name)
                        && !name.starts_with("proxy.")
                        && !name.starts_with("host.")
                        && !name.starts_with("port.")
                    {
                        d.error(
                            span.clone(),
                            format!(
                                "unknown placeholder `{{{name}}}` in {what}{}; expected one of: {}",
                                diagnostic::did_you_mean(name, template::PLACEHOLDERS.iter().copied()),
                                template::PLACEHOLDERS
                                    .iter()
                                    .map(|p| format!("{{{p}}}"))
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                        );
                    }
                }
            }
            Err(e) => d.error(span.clone(), format!("{what}: {e}")),
        }
    }
}

pub(crate) fn command(f: &Fields, key: &str, required: bool, d: &mut Diagnostics) -> Option<Vec<String>> {
    if required && f.get(key).is_none() {
        d.error(
            f.span.clone(),
            format!("missing key `{key}` in {}; expected an array such as [\"program\", \"arg\"]", f.what),
        );
        return None;
    }
    let (argv, span) = f.str_array(key, d)?;
    if argv.is_empty() {
        d.error(span, format!("`{key}` in {} must name a program", f.what));
        return None;
    }
    check_templates(&argv, &span, &format!("`{key}` in {}", f.what), d);
    Some(argv)
}

fn hooks(f: &Fields, key: &str, d: &mut Diagnostics) -> Vec<Vec<String>> {
    let Some(value) = f.get(key) else {
        return Vec::new();
    };
    let Some(items) = value.get_ref().as_array() else {
        d.error(
            value.span(),
            format!("`{key}` in {} must be an array of commands, e.g. [[\"sh\", \"-c\", \"...\"]]", f.what),
        );
        return Vec::new();
    };
    let mut out = Vec::new();
    for item in items.iter() {
        let argv: Option<Vec<String>> = item
            .get_ref()
            .as_array()
            .and_then(|a| a.iter().map(|s| s.get_ref().as_str().map(str::to_string)).collect());
        match argv {
            Some(argv) if !argv.is_empty() => {
                check_templates(&argv, &item.span(), &format!("`{key}` in {}", f.what), d);
                out.push(argv);
            }
            _ => d.error(item.span(), format!("each of `{key}` in {} must be a command: an array of strings", f.what)),
        }
    }
    out
}

/// `image = "NAME"`, or `image = { debian = ["PACKAGE", ...] }`.
fn image(f: &Fields, d: &mut Diagnostics) -> Option<ImagePlan> {
    let value = f.get("image")?;
    if let Some(name) = value.get_ref().as_str() {
        return Some(ImagePlan::Named(name.to_string()));
    }
    let (table, span) = f.table("image", d)?;
    let image = Fields::new(table, span.clone(), format!("`image` of {}", f.what), &["debian"], d);
    let (packages, span) = image.str_array("debian", d).or_else(|| {
        d.error(span, format!("`image` of {} as a table needs `debian = [\"PACKAGE\", ...]`", f.what));
        None
    })?;
    let valid = |p: &String| {
        !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+-.".contains(&b))
    };
    match packages.iter().find(|p| !valid(p)) {
        _ if packages.is_empty() => d.error(span, "`debian` names no package; e.g. debian = [\"redis-server\"]"),
        Some(bad) => d.error(span, format!("`{bad}` is not a Debian package name")),
        None => return Some(ImagePlan::Debian(packages)),
    }
    None
}

fn compile_target(name: String, f: &Fields, check_paths: bool, d: &mut Diagnostics) -> Option<TargetPlan> {
    let kind = target_kind(f, d);
    let image = image(f, d);
    match (kind, &image, f.get("image")) {
        (TargetKind::Container, None, None) => d.error(
            f.span.clone(),
            format!(
                "missing key `image` in {}; a container needs one, e.g. image = \"crashlab/demo-kv\", or \
                 image = {{ debian = [\"redis-server\"] }} (built here on demand)",
                f.what
            ),
        ),
        (TargetKind::Process | TargetKind::Compose, _, Some(value)) => {
            d.error(value.span(), format!("`image` applies to kind = \"container\" only, in {}", f.what))
        }
        _ => {}
    }
    let compose = compose_service(f, kind, check_paths, d);
    let pod = pods::compile_pod(f, kind, check_paths, d);
    // A compose service's command is in its compose file.
    let command = match kind {
        // A pod's is in its spec (refused by `compile_pod`).
        TargetKind::Pod => Some(Vec::new()),
        TargetKind::Compose => {
            if let Some(value) = f.get("command") {
                d.error(value.span(), format!("a compose target's command is in its compose file, not in {}", f.what));
            }
            Some(Vec::new())
        }
        _ => command(f, "command", true, d),
    };
    let mut env = Vec::new();
    if let Some((table, _)) = f.table("env", d) {
        for (key, value) in table.iter() {
            match value.get_ref().as_str() {
                Some(v) => env.push((key.get_ref().to_string(), v.to_string())),
                None => d.error(value.span(), format!("env values in {} must be strings", f.what)),
            }
        }
    }
    let restart = restart_policy(f, kind, d);
    let stop_timeout = f.duration("stop_timeout", d).unwrap_or(Duration::from_secs(5));
    let stop_signal = faults::signal_at(f, "stop_signal", nix::sys::signal::Signal::SIGTERM, d);
    let probe = match f.table("probe", d) {
        Some((t, span)) => compile_probe(&Fields::new(t, span, format!("`probe` of {}", f.what), PROBE_KEYS, d), d),
        None => {
            d.error(
                f.span.clone(),
                format!(
                    "missing key `probe` in {}; expected e.g. probe = {{ kind = \"tcp\", port = \"{{port}}\" }}",
                    f.what
                ),
            );
            None
        }
    };
    let before_start = hooks(f, "before_start", d);
    let after_stop = hooks(f, "after_stop", d);
    let data_dir = data_dir(f, d);
    let mounts = mounts(f, kind, check_paths, d);
    // The harness's own per-trial data dirs are disposable by construction.
    let disposable = f.bool("disposable", d).unwrap_or(data_dir.is_none());
    let host = f.str("host", d).map(|(s, _)| s.to_string());
    let reach = reach(f, kind, host.is_some(), d);
    Some(TargetPlan {
        name,
        kind,
        image,
        compose,
        command: command?,
        env,
        restart: restart?,
        stop_timeout,
        stop_signal: stop_signal?,
        probe: probe?,
        before_start,
        after_stop,
        data_dir,
        disposable,
        mounts,
        host,
        pod: if kind == TargetKind::Pod { Some(pod?) } else { None },
        reach,
    })
}

/// `reach = "address" | "published"`: a container crashlab creates on this
/// machine is reached at its own address unless the scenario says
/// otherwise; every other target where it listens (a host's containers
/// through that host's address, a compose service through its published
/// port).
fn reach(f: &Fields, kind: TargetKind, on_a_host: bool, d: &mut Diagnostics) -> Reach {
    let ours_here = kind == TargetKind::Container && !on_a_host;
    let Some((name, span)) = f.choice("reach", "reach", Reach::NAMES, d) else {
        return if ours_here { Reach::Address } else { Reach::Published };
    };
    let reach: Reach = name.parse().expect("one of the names");
    if reach == Reach::Address && !ours_here {
        d.error(
            span,
            format!(
                "reach = \"address\" applies to a container crashlab creates on this machine (kind = \"container\", \
                 no `host`), not to {}",
                f.what
            ),
        );
    }
    reach
}

/// A container target's `mounts = ["./app:/app", "/srv/conf:/etc/app:ro"]`:
/// host paths relative to the scenario, which must exist (unless a stored
/// scenario is analyzed), bound at absolute paths inside.
fn mounts(f: &Fields, kind: TargetKind, check_paths: bool, d: &mut Diagnostics) -> Vec<(PathBuf, String)> {
    let Some(value) = f.get("mounts") else { return Vec::new() };
    if kind != TargetKind::Container {
        d.error(value.span(), format!("`mounts` applies to kind = \"container\" only, in {}", f.what));
        return Vec::new();
    }
    let Some((items, span)) = f.str_array("mounts", d) else { return Vec::new() };
    let base = d.path.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut mounts = Vec::new();
    for item in items {
        let parts: Vec<&str> = item.split(':').collect();
        let (host, inside) = match parts[..] {
            [host, inside] | [host, inside, "ro"] if inside.starts_with('/') && !host.is_empty() => (host, inside),
            _ => {
                d.error(
                    span.clone(),
                    format!(
                        "`mounts` in {}: `{item}` is not HOST:/PATH or HOST:/PATH:ro (e.g. \"./app:/app:ro\")",
                        f.what
                    ),
                );
                continue;
            }
        };
        let mut host = base.join(host);
        if check_paths {
            // The engine binds absolute paths only.
            match host.canonicalize() {
                Ok(absolute) => host = absolute,
                Err(e) => {
                    d.error(span.clone(), format!("`mounts` in {}: {}: {e}", f.what, host.display()));
                    continue;
                }
            }
        }
        let inside = if parts.len() == 3 { format!("{inside}:ro") } else { inside.to_string() };
        mounts.push((host, inside));
    }
    mounts
}

/// A target's `kind`; an unknown one is reported and read as a process.
fn target_kind(f: &Fields, d: &mut Diagnostics) -> TargetKind {
    let mut kind = TargetKind::Process;
    if let Some((text, span)) = f.str("kind", d) {
        match text.parse::<TargetKind>() {
            Ok(parsed) => kind = parsed,
            Err(_) => {
                let later = ["external"].contains(&text);
                d.error(
                    span,
                    if later {
                        format!(
                            "target kind `{text}` is not supported by this version yet; expected `process`, \
                             `container`, `compose` or `pod`"
                        )
                    } else {
                        format!(
                            "unknown target kind `{text}`{}; expected `process`, `container`, `compose` or `pod`",
                            diagnostic::did_you_mean(text, TARGET_KINDS.iter().copied())
                        )
                    },
                );
            }
        }
    }
    kind
}

/// A target's `restart` table: its policy and delay.
fn restart_policy(f: &Fields, kind: TargetKind, d: &mut Diagnostics) -> Option<RestartPolicy> {
    if kind == TargetKind::Pod {
        // The cluster's own (a `restart` table is refused by `compile_pod`).
        return Some(RestartPolicy::Engine);
    }
    match f.table("restart", d) {
        None => Some(RestartPolicy::Always { delay: Duration::ZERO }),
        Some((t, span)) => {
            let r = Fields::new(t, span, format!("`restart` of {}", f.what), RESTART_KEYS, d);
            let delay = r.duration("delay", d).unwrap_or(Duration::ZERO);
            match r.choice("policy", "restart policy", &["always", "never", "engine"], d) {
                Some(("never", _)) => Some(RestartPolicy::Never),
                Some(("engine", span)) if kind == TargetKind::Process => {
                    d.error(span, "restart policy `engine` (the container engine's own) applies to containers only");
                    None
                }
                Some(("engine", _)) => Some(RestartPolicy::Engine),
                Some(_) => Some(RestartPolicy::Always { delay }),
                None if r.get("policy").is_none() => Some(RestartPolicy::Always { delay }),
                None => None,
            }
        }
    }
}

/// A target's own `data_dir` (by default the harness makes one per trial).
fn data_dir(f: &Fields, d: &mut Diagnostics) -> Option<String> {
    f.str("data_dir", d).map(|(dir, span)| {
        check_templates(&[dir.to_string()], &span, &format!("`data_dir` of {}", f.what), d);
        if dir.starts_with('/') && crate::confine::is_system_dir(Path::new(dir)) {
            d.error(
                span,
                format!(
                    "`data_dir` of {} is {dir}, a system directory: crashlab never uses one as a data dir, \
                     whatever `disposable` says; give the service a directory of its own",
                    f.what
                ),
            );
        }
        dir.to_string()
    })
}

fn port(f: &Fields, d: &mut Diagnostics) -> Option<PortRef> {
    let Some(value) = f.get("port") else {
        return Some(PortRef::Allocated);
    };
    if let Some(text) = value.get_ref().as_str() {
        if text == "{port}" {
            return Some(PortRef::Allocated);
        }
        if let Some(name) = text.strip_prefix("{proxy.").and_then(|t| t.strip_suffix('}')) {
            return Some(PortRef::Proxy(name.to_string()));
        }
        d.error(
            value.span(),
            format!("`port` in {} must be \"{{port}}\" (the target's allocated port) or a number", f.what),
        );
        return None;
    }
    f.integer("port", 1, 65535, d).map(|p| PortRef::Fixed(p as u16))
}

fn compile_probe(f: &Fields, d: &mut Diagnostics) -> Option<ProbePlan> {
    let kind = match f.choice("kind", "probe kind", PROBE_KINDS, d) {
        Some((kind, _)) => kind,
        None if f.get("kind").is_none() => {
            d.error(
                f.span.clone(),
                format!("missing key `kind` in {}; expected one of: {}", f.what, PROBE_KINDS.join(", ")),
            );
            return None;
        }
        None => return None,
    };
    let kind = match kind.parse::<ProbeKindName>().expect("one of PROBE_KINDS") {
        ProbeKindName::Tcp => {
            let send = f.str("send", d).map(|(s, _)| s.replace("\\r", "\r").replace("\\n", "\n"));
            let expect = f.str("expect", d).map(|(s, _)| s.to_string());
            if send.is_some() != expect.is_some() {
                d.error(f.span.clone(), format!("`send` and `expect` go together in {}", f.what));
            }
            ProbeKind::Tcp { port: port(f, d)?, send, expect }
        }
        ProbeKindName::DemoKv => ProbeKind::DemoKv { port: port(f, d)? },
        ProbeKindName::Http => ProbeKind::Http {
            port: port(f, d)?,
            path: f.str("path", d).map(|(s, _)| s.to_string()).unwrap_or_else(|| "/".into()),
            status: f.integer("status", 100, 599, d).unwrap_or(200) as u16,
            body_contains: f.str("body_contains", d).map(|(s, _)| s.to_string()),
        },
        ProbeKindName::Command => ProbeKind::Command { argv: command(f, "command", true, d)? },
    };
    let interval = f
        .positive_duration("interval", "the probe would sample without pause, starving the service", d)
        .unwrap_or(Duration::from_millis(10));
    let timeout = f
        .positive_duration("timeout", "no sample could ever answer in time, so the target would never be healthy", d)
        .unwrap_or(Duration::from_millis(500));
    let healthy_after = f.integer("healthy_after", 1, 10_000, d).unwrap_or(3) as u32;
    Some(ProbePlan { kind, interval, timeout, healthy_after })
}

pub(crate) fn target_ref(f: &Fields, targets: &[&str], d: &mut Diagnostics) -> Option<TargetRef> {
    let (name, span) = f.required_str("target", "the name of a [target.<name>]", d)?;
    if let Some(index) = targets.iter().position(|t| *t == name) {
        return Some(TargetRef { index, name: name.to_string() });
    }
    d.error(
        span,
        format!(
            "`target` in {} names `{name}`, which is not a target of this scenario{}; targets: {}",
            f.what,
            diagnostic::did_you_mean(name, targets.iter().copied()),
            if targets.is_empty() { "(none)".to_string() } else { targets.join(", ") }
        ),
    );
    None
}

/// A compose target's `file` (relative to the scenario) and `service`.
fn compose_service(f: &Fields, kind: TargetKind, check_paths: bool, d: &mut Diagnostics) -> Option<(PathBuf, String)> {
    if kind != TargetKind::Compose {
        // A pod target's `service` is its NodePort Service.
        let keys: &[&str] = if kind == TargetKind::Pod { &["file"] } else { &["file", "service"] };
        for key in keys {
            if let Some(value) = f.get(key) {
                d.error(value.span(), format!("`{key}` applies to kind = \"compose\" only, in {}", f.what));
            }
        }
        return None;
    }
    let file = f.required_str("file", "the compose file, relative to the scenario", d);
    let service = f.required_str("service", "the service's name in the compose file", d);
    let (file, span) = file?;
    let path = d.path.parent().map_or_else(|| PathBuf::from(file), |dir| dir.join(file));
    if check_paths && !path.is_file() {
        d.error(span, format!("compose file {} does not exist", path.display()));
    }
    Some((path, service?.0.to_string()))
}

/// `[proxy.NAME]` tables: each forwards to a target's `{port}`.
fn compile_proxies(top: &Fields, targets: &[&str], d: &mut Diagnostics) -> Vec<ProxyPlan> {
    let mut proxies = Vec::new();
    let Some((table, _)) = top.table("proxy", d) else { return proxies };
    for (key, value) in table.iter() {
        let name = key.get_ref().to_string();
        let what = format!("[proxy.{name}]");
        match value.get_ref().as_table() {
            Some(t) => {
                let f = Fields::new(t, value.span(), what, PROXY_KEYS, d);
                if let Some(target) = target_ref(&f, targets, d) {
                    proxies.push(ProxyPlan { name, target });
                }
            }
            None => d.error(value.span(), format!("{what} must be a table, e.g. [proxy.{name}] target = \"kv\"")),
        }
    }
    proxies
}

/// Every `{proxy.NAME}` in a target's command, env, hooks or data dir, and
/// every probe port, must name a declared proxy.
fn check_proxy_refs(
    root: &DeTable,
    targets: &[TargetPlan],
    proxies: &[ProxyPlan],
    target_names: &[&str],
    d: &mut Diagnostics,
) {
    let names: Vec<&str> = proxies.iter().map(|p| p.name.as_str()).collect();
    for t in targets {
        let texts = t
            .command
            .iter()
            .chain(t.env.iter().map(|(_, v)| v))
            .chain(t.before_start.iter().flatten())
            .chain(t.after_stop.iter().flatten())
            .chain(t.data_dir.iter());
        let placeholders: Vec<&str> = texts.flat_map(|text| template::placeholders(text).unwrap_or_default()).collect();
        let span = root
            .get("target")
            .and_then(|v| v.get_ref().as_table())
            .and_then(|v| v.get(t.name.as_str()))
            .map_or(0..0, |v| v.span());
        // A container's own command and env run inside it, where another
        // target's address as the harness reaches it leads nowhere.
        if t.kind != TargetKind::Process {
            let inside = t.command.iter().chain(t.env.iter().map(|(_, v)| v));
            let inside: Vec<&str> = inside.flat_map(|text| template::placeholders(text).unwrap_or_default()).collect();
            if let Some(p) = inside.iter().find(|p| **p == "scenario_dir") {
                d.error(
                    span.clone(),
                    format!(
                        "[target.{}] is a container: `{{{p}}}` is a path on the harness's host, not inside the \
                         container; mount what it needs with mounts = [\"HOST:/PATH\"]",
                        t.name
                    ),
                );
            }
            for (kind, what) in [
                ("host", "the address the harness reaches `NAME` at"),
                ("port", "the port the harness reaches `NAME` at"),
                ("proxy", "a port the harness listens on at 127.0.0.1"),
            ] {
                let prefix = format!("{kind}.");
                if let Some(name) = inside.iter().find_map(|p| p.strip_prefix(prefix.as_str())) {
                    let what = what.replace("NAME", name);
                    d.error(
                        span.clone(),
                        format!(
                            "[target.{}] is a container: its command and env run inside it, where `{{{kind}.{name}}}` \
                             ({what}) leads nowhere; only its hooks, recovery steps and checks, which run on the \
                             harness's side, may use it",
                            t.name
                        ),
                    );
                }
            }
        }
        for (which, other) in
            placeholders.iter().filter_map(|p| p.split_once('.')).filter(|(w, _)| ["host", "port"].contains(w))
        {
            if !target_names.contains(&other) {
                d.error(
                    span.clone(),
                    format!(
                        "[target.{}] uses `{{{which}.{other}}}`, but there is no [target.{other}]{}",
                        t.name,
                        diagnostic::did_you_mean(other, target_names.iter().copied())
                    ),
                );
            }
        }
        let mut unknown: Vec<String> = placeholders
            .iter()
            .filter_map(|p| p.strip_prefix("proxy."))
            .filter(|p| !names.contains(p))
            .map(|p| p.to_string())
            .collect();
        if let ProbeKind::Tcp { port: PortRef::Proxy(p), .. }
        | ProbeKind::DemoKv { port: PortRef::Proxy(p) }
        | ProbeKind::Http { port: PortRef::Proxy(p), .. } = &t.probe.kind
        {
            if !names.contains(&p.as_str()) {
                unknown.push(p.clone());
            }
        }
        unknown.dedup();
        for name in unknown {
            d.error(
                span.clone(),
                format!(
                    "[target.{}] uses `{{proxy.{name}}}`, but no [proxy.{name}] is declared{}; proxies: {}",
                    t.name,
                    diagnostic::did_you_mean(&name, names.iter().copied()),
                    if names.is_empty() { "(none)".to_string() } else { names.join(", ") }
                ),
            );
        }
    }
}

fn compile_trials(f: &Fields, d: &mut Diagnostics) -> TrialsPlan {
    let default = TrialsPlan::default();
    TrialsPlan {
        count: f.integer("count", 1, 1_000_000, d).unwrap_or(1) as u32,
        seed: f.integer("seed", 0, i64::MAX, d).map(|s| s as u64),
        startup_timeout: f
            .positive_duration("startup_timeout", "no target could become healthy in time", d)
            .unwrap_or(default.startup_timeout),
        recovery_timeout: f
            .positive_duration("recovery_timeout", "no target could recover in time", d)
            .unwrap_or(default.recovery_timeout),
    }
}
