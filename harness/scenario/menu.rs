//! Seeded fault menus: a `[[fault]]` whose `kind` or `target` is a list.
//! Each trial's seed draws one kind and one target from it (`draw = N`:
//! N such faults, each at its own time from `at`), and the draw opens the
//! fault's detail, so the same seed reproduces it.

use super::diagnostic::Diagnostics;
use super::faults::{applicable, scheduled_at, target_fault, FAULT_KEYS, FAULT_KINDS};
use super::fields::Fields;
use super::packet::packet_plan;
use super::plan::{FaultKind, FaultMenu, FaultName, FaultPlan, NetworkPlan, PartitionPlan, TargetRef, WorkloadPlan};

/// The kinds a menu may hold: those that act on one target by its name.
const MENU_KINDS: &[FaultName] =
    &[FaultName::Kill, FaultName::Pause, FaultName::Restart, FaultName::Partition, FaultName::Packet];

/// Whether a `[[fault]]` is a menu: its kind or target is a list.
pub fn is_menu(f: &Fields) -> bool {
    ["kind", "target"].iter().any(|k| f.get(k).is_some_and(|v| v.get_ref().as_array().is_some()))
}

/// The faults a menu makes: `draw` of them, each drawn per trial.
pub fn menu_faults(
    f: &Fields,
    targets: &[&str],
    network: NetworkPlan,
    workload: Option<&WorkloadPlan>,
    d: &mut Diagnostics,
) -> Vec<FaultPlan> {
    let kinds = names(f, "kind", "fault kind", FAULT_KINDS, d).map(|names| {
        names.iter().filter_map(|n| n.parse::<FaultName>().ok()).filter(|k| menu_kind(*k, f, d)).collect::<Vec<_>>()
    });
    let menu_targets = names(f, "target", "target", targets, d)
        .map(|names| names.iter().filter_map(|n| target_ref(n, targets)).collect::<Vec<_>>());
    let draw = match f.get("draw") {
        Some(_) => f.integer("draw", 1, 100, d),
        None => Some(1),
    };
    let at = scheduled_at(f, workload, d);
    let (Some(kinds), Some(menu_targets)) = (kinds, menu_targets) else { return Vec::new() };
    check_keys(f, &kinds, d);
    let compiled: Vec<FaultKind> =
        kinds.iter().filter_map(|k| menu_fault(*k, f, targets, &menu_targets, network, d)).collect();
    if compiled.len() != kinds.len() || kinds.is_empty() || menu_targets.is_empty() {
        return Vec::new();
    }
    let (Some(draw), Some(at)) = (draw, at) else { return Vec::new() };
    let setup = f.bool("setup", d).unwrap_or(false);
    let menu = FaultMenu { kinds: compiled, targets: menu_targets };
    let plan = FaultPlan {
        kind: menu.kinds[0].clone(),
        target: menu.targets[0].clone(),
        chosen_by: None,
        at,
        in_procedure: false,
        setup,
        menu: Some(menu),
    };
    vec![plan; draw as usize]
}

/// A string or a list of strings, each one of `known`.
fn names(f: &Fields, key: &str, noun: &str, known: &[&str], d: &mut Diagnostics) -> Option<Vec<String>> {
    let Some(value) = f.get(key) else {
        d.error(f.span.clone(), format!("missing key `{key}` in {}", f.what));
        return None;
    };
    let list = match value.get_ref().as_str() {
        Some(one) => vec![one.to_string()],
        None => f.str_array(key, d)?.0,
    };
    let unknown: Vec<&String> = list.iter().filter(|n| !known.contains(&n.as_str())).collect();
    if let Some(name) = unknown.first() {
        let hint = super::diagnostic::did_you_mean(name, known.iter().copied());
        d.error(
            value.span(),
            format!("unknown {noun} `{name}` in `{key}` of {}{hint}; known: {}", f.what, known.join(", ")),
        );
        return None;
    }
    if list.is_empty() {
        d.error(value.span(), format!("`{key}` in {} is an empty list: a menu needs something to draw", f.what));
        return None;
    }
    Some(list)
}

fn menu_kind(kind: FaultName, f: &Fields, d: &mut Diagnostics) -> bool {
    let ok = MENU_KINDS.contains(&kind);
    if !ok {
        let kinds: Vec<&str> = MENU_KINDS.iter().map(|k| k.as_str()).collect();
        d.error(
            f.get("kind").expect("present").span(),
            format!("a `{kind}` fault cannot be drawn from a menu in {}; a menu holds {}", f.what, kinds.join(", ")),
        );
    }
    ok
}

fn target_ref(name: &str, targets: &[&str]) -> Option<TargetRef> {
    targets.iter().position(|t| *t == name).map(|index| TargetRef { index, name: name.to_string() })
}

/// Every key must apply to one of the menu's kinds at least (a partition
/// drawn from a menu isolates the drawn target: it takes only `duration`).
fn check_keys(f: &Fields, kinds: &[FaultName], d: &mut Diagnostics) {
    let reads = |key: &str| {
        kinds.iter().any(|k| match k {
            FaultName::Partition => key == "duration",
            k => applicable(*k, None).contains(&key),
        })
    };
    for key in FAULT_KEYS.iter().filter(|k| !["kind", "target", "at", "setup", "draw"].contains(k)) {
        if let (Some(value), false) = (f.get(key), reads(key)) {
            let kinds: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
            d.error(
                value.span(),
                format!("`{key}` applies to none of the menu's kinds ({}) in {}", kinds.join(", "), f.what),
            );
        }
    }
}

/// One kind of the menu, with the keys that it reads.
fn menu_fault(
    kind: FaultName,
    f: &Fields,
    all: &[&str],
    targets: &[TargetRef],
    network: NetworkPlan,
    d: &mut Diagnostics,
) -> Option<FaultKind> {
    match kind {
        FaultName::Partition if !network.partitionable() => {
            d.error(
                f.span.clone(),
                format!("a `{kind}` in the menu of {} needs [network] kind = \"namespaces\"", f.what),
            );
            None
        }
        FaultName::Packet if network != NetworkPlan::Namespaces => {
            d.error(
                f.span.clone(),
                format!("a `{kind}` in the menu of {} needs [network] kind = \"namespaces\"", f.what),
            );
            None
        }
        FaultName::Partition => {
            if f.get("duration").is_none() {
                d.error(f.span.clone(), format!("missing key `duration` in {}; a partition heals after it", f.what));
            }
            Some(FaultKind::Partition(PartitionPlan {
                groups: [Vec::new(), vec![targets.first()?.name.clone()]],
                isolate: true,
                one_way: false,
                duration: f.duration("duration", d)?,
            }))
        }
        FaultName::Packet => Some(FaultKind::Packet(packet_plan(f, all, network, d)?)),
        kind => target_fault(kind, f, d),
    }
}
