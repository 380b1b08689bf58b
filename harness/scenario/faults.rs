//! `[[fault]]` tables: process faults (kill, pause, restart) and storage
//! faults (corrupt, stale-lock, lose-unsynced).

use std::str::FromStr;

use nix::sys::signal::Signal;

use super::diagnostic::{self, Diagnostics};
use super::fields::Fields;
use super::plan::*;
use super::target_ref;
use crate::duration::format_duration;
use crate::duration::TimeSpec;

pub const FAULT_KEYS: &[&str] = &[
    "kind",
    "target",
    "at",
    "signal",
    "duration",
    "path",
    "mode",
    "when",
    "bits",
    "offset",
    "length",
    "to",
    "bytes",
    "variant",
    "lock",
    "user",
    "scope",
    "setup",
    "torn",
    "proxy",
    "direction",
    "delay",
    "jitter",
    "rate",
    "size",
    "isolate",
    "groups",
    "one_way",
    "command",
    "ops",
    "errno",
    "disk_full",
    "every",
    "probability",
    "peers",
    "loss",
    "duplicate",
    "corrupt",
    "reorder",
    "draw",
    "limit",
    "cpus",
    "cpu",
    "memory",
    "io",
    "grace",
    "replicas",
    "chaos",
    "spec",
];
pub const FAULT_KINDS: &[&str] = <FaultName as strum::VariantNames>::VARIANTS;
pub const CORRUPT_MODES: &[&str] = <CorruptModeName as strum::VariantNames>::VARIANTS;
pub const STALE_LOCK_VARIANTS: &[&str] = <StaleLockVariantName as strum::VariantNames>::VARIANTS;

/// The keys (beyond kind, target, at) that each fault kind, or corrupt mode, reads.
pub(super) fn applicable(kind: FaultName, mode: Option<&str>) -> &'static [&'static str] {
    use FaultName::*;
    match (kind, mode) {
        (Kill, _) => &["signal", "scope"],
        (Pause, _) => &["duration"],
        (Restart, _) => &[],
        (Corrupt, Some("bitflip")) => &["path", "mode", "when", "bits", "offset"],
        (Corrupt, Some("zero" | "random")) => &["path", "mode", "when", "offset", "length"],
        (Corrupt, Some("truncate")) => &["path", "mode", "when", "to"],
        (Corrupt, Some("torn-tail")) => &["path", "mode", "when", "bytes"],
        (Corrupt, Some("swap")) => &["path", "mode", "when", "length"],
        (Corrupt, _) => &["path", "mode", "when"],
        (StaleLock, _) => &["variant", "path", "lock", "user", "duration"],
        (LoseUnsynced, _) => &["torn"],
        (Reset, _) => &["proxy"],
        (Refuse, _) => &["proxy", "duration"],
        (Blackhole, _) => &["proxy", "direction", "duration"],
        (Latency, _) => &["proxy", "direction", "duration", "delay", "jitter"],
        (Bandwidth, _) => &["proxy", "direction", "duration", "rate"],
        (SlowClose | Timeout, _) => &["proxy", "direction", "duration", "delay"],
        (Slice, _) => &["proxy", "direction", "duration", "size", "delay"],
        (LimitData, _) => &["proxy", "direction", "duration", "bytes"],
        (Partition, _) => &["isolate", "groups", "one_way", "duration"],
        (Disconnect, _) => &["duration"],
        (Command, _) => &["command"],
        (Io, _) => &["path", "ops", "errno", "delay", "jitter", "disk_full", "every", "probability", "duration"],
        (Packet, _) => super::packet::PACKET_KEYS,
        (Clock, _) => &["offset", "rate", "duration"],
        (Memory, _) => &["limit", "duration"],
        (Cpu, _) => &["cpus", "duration"],
        (Hog, _) => &["cpu", "memory", "io", "duration"],
        (DeletePod, _) => &["grace"],
        (EvictPod, _) => &[],
        (IsolatePod, _) => &["duration"],
        (Scale, _) => &["replicas", "duration"],
        (ChaosMesh, _) => &["chaos", "spec", "duration"],
    }
}

pub fn compile_fault(
    f: &Fields,
    targets: &[&str],
    proxies: &[ProxyPlan],
    network: NetworkPlan,
    workload: Option<&WorkloadPlan>,
    in_procedure: bool,
    d: &mut Diagnostics,
) -> Option<FaultPlan> {
    let kind = f.required_choice("kind", "fault kind", FAULT_KINDS, d).and_then(|(kind, _)| kind.parse().ok());
    // A link fault names a proxy; its target is the one behind the proxy.
    let link = kind.is_some_and(FaultName::is_link);
    let proxy = if link { proxy_ref(f, proxies, d) } else { None };
    let partition = kind == Some(FaultName::Partition);
    let chosen_key = if partition { "isolate" } else { "target" };
    if f.get(chosen_key).is_some_and(|v| v.get_ref().as_table().is_some()) {
        return chosen_fault(f, chosen_key, kind?, targets, network, workload, in_procedure, d);
    }
    let target = match (link, &proxy) {
        (true, Some(p)) => Some(p.target.clone()),
        (true, None) => None,
        // A partition names its targets in `isolate` or `groups`.
        (false, _) if partition => None,
        (false, _) => target_ref(f, targets, d),
    };
    if let (true, Some(value)) = (link, f.get("target")) {
        d.error(
            value.span(),
            format!("a `{}` fault names a `proxy`, not a `target`", kind.map_or("", FaultName::as_str)),
        );
    }
    let at = if in_procedure {
        // The step's place in the procedure is its time.
        Some(TimeSpec::fixed(std::time::Duration::ZERO))
    } else {
        scheduled_at(f, workload, d)
    };
    let kind_name = kind?;
    // A fault that only sets up a condition (a long query, a pid file)
    // opens no recovery window of its own.
    let setup = f.bool("setup", d).unwrap_or(false);
    let mode_name = f.get("mode").and_then(|v| v.get_ref().as_str());
    check_applicable(f, kind_name, if kind_name == FaultName::Corrupt { mode_name } else { None }, d);
    let (kind, target) = match kind_name {
        FaultName::Partition => {
            let plan = partition_fault(f, targets, network, d)?;
            // RTO is measured on the isolated target, or the first of the far group.
            let name = plan.groups[1][0].clone();
            // (A name that is not a target was reported by partition_plan.)
            let index = targets.iter().position(|t| *t == name)?;
            (FaultKind::Partition(plan), TargetRef { index, name })
        }
        FaultName::Blackhole
        | FaultName::Refuse
        | FaultName::Reset
        | FaultName::Latency
        | FaultName::Bandwidth
        | FaultName::SlowClose
        | FaultName::Timeout
        | FaultName::Slice
        | FaultName::LimitData => (link_fault(kind_name, proxy, f, d)?, target?),
        FaultName::Packet => (FaultKind::Packet(super::packet::packet_plan(f, targets, network, d)?), target?),
        FaultName::Kill
        | FaultName::Pause
        | FaultName::Restart
        | FaultName::Command
        | FaultName::Corrupt
        | FaultName::StaleLock
        | FaultName::Disconnect
        | FaultName::Io
        | FaultName::Clock
        | FaultName::Memory
        | FaultName::Cpu
        | FaultName::Hog
        | FaultName::DeletePod
        | FaultName::EvictPod
        | FaultName::IsolatePod
        | FaultName::Scale
        | FaultName::ChaosMesh
        | FaultName::LoseUnsynced => (target_fault(kind_name, f, d)?, target?),
    };
    Some(FaultPlan { kind, target, chosen_by: None, at: at?, in_procedure, setup, menu: None })
}

/// A fault whose target a command names when it is due:
/// `target = { command = [...] }` (`isolate = { ... }` for a partition).
#[allow(clippy::too_many_arguments)]
fn chosen_fault(
    f: &Fields,
    key: &str,
    kind: FaultName,
    targets: &[&str],
    network: NetworkPlan,
    workload: Option<&WorkloadPlan>,
    in_procedure: bool,
    d: &mut Diagnostics,
) -> Option<FaultPlan> {
    let (table, span) = f.table(key, d)?;
    let chooser = Fields::new(table, span.clone(), format!("`{key}` in {}", f.what), &["command"], d);
    let argv = super::command(&chooser, "command", true, d)?;
    for arg in &argv {
        for name in super::template::names(arg) {
            let reference = ["host.", "port.", "proxy."].iter().any(|p| name.starts_with(p));
            if !(reference || ["scenario_dir", "run_dir", "trial"].contains(&name)) {
                d.error(
                    span.clone(),
                    format!(
                        "`{{{name}}}` in {}: a command that chooses the target runs before there is one; it may \
                         use {{host.NAME}}, {{port.NAME}}, {{proxy.NAME}}, {{scenario_dir}}, {{run_dir}}, {{trial}}",
                        chooser.what
                    ),
                );
            }
        }
    }
    let at = if in_procedure { Some(TimeSpec::fixed(std::time::Duration::ZERO)) } else { scheduled_at(f, workload, d) };
    check_applicable(f, kind, None, d);
    let stand_in = TargetRef { index: 0, name: targets.first()?.to_string() };
    let kind = match kind {
        FaultName::Kill | FaultName::Pause | FaultName::Restart => target_fault(kind, f, d)?,
        FaultName::Packet => FaultKind::Packet(super::packet::packet_plan(f, targets, network, d)?),
        FaultName::Partition => {
            if network != NetworkPlan::Namespaces {
                // An isolated host would lose its agent's link too.
                d.error(f.span.clone(), format!("a `partition` in {} needs [network] kind = \"namespaces\"", f.what));
            }
            let others = targets[1..].iter().map(|t| t.to_string()).collect();
            let duration = f.duration("duration", d);
            if f.get("duration").is_none() {
                d.error(f.span.clone(), format!("missing key `duration` in {}; a partition heals after it", f.what));
            }
            FaultKind::Partition(PartitionPlan {
                groups: [others, vec![stand_in.name.clone()]],
                isolate: true,
                one_way: false,
                duration: duration?,
            })
        }
        other => {
            d.error(
                span,
                format!(
                    "a `{other}` fault cannot have its target chosen at run time; `{key} = {{ command = [...] }}` is \
                     for kill, pause, restart, packet and partition (isolate)"
                ),
            );
            return None;
        }
    };
    let setup = f.bool("setup", d).unwrap_or(false);
    Some(FaultPlan { kind, target: stand_in, chosen_by: Some(argv), at: at?, in_procedure, setup, menu: None })
}

/// A partition between targets' namespaces.
fn partition_fault(f: &Fields, targets: &[&str], network: NetworkPlan, d: &mut Diagnostics) -> Option<PartitionPlan> {
    if !network.partitionable() {
        d.error(
            f.span.clone(),
            format!("a `partition` in {} needs the targets in namespaces: add [network] kind = \"namespaces\"", f.what),
        );
    }
    partition_plan(f, targets, d)
}

/// A fault of a proxy's links.
fn link_fault(kind: FaultName, proxy: Option<&ProxyPlan>, f: &Fields, d: &mut Diagnostics) -> Option<FaultKind> {
    let toxic = toxic(kind, f, d);
    let duration = if kind == FaultName::Reset {
        None
    } else if f.get("duration").is_none() {
        d.error(
            f.span.clone(),
            format!("missing key `duration` in {}; a `{kind}` heals after it, e.g. duration = \"2s\"", f.what),
        );
        return None;
    } else {
        Some(f.duration("duration", d)?)
    };
    let direction = match f.choice("direction", "direction", &["both", "up", "down"], d) {
        Some(("up", _)) => Direction::Up,
        Some(("down", _)) => Direction::Down,
        _ => Direction::Both,
    };
    Some(FaultKind::Link { proxy: proxy?.name.clone(), direction, toxic: toxic?, duration })
}

/// A fault that acts on one target (its processes, files or network).
pub(super) fn target_fault(kind: FaultName, f: &Fields, d: &mut Diagnostics) -> Option<FaultKind> {
    let duration = |what: &str, d: &mut Diagnostics| {
        if f.get("duration").is_none() {
            d.error(f.span.clone(), format!("missing key `duration` in {}; {what}", f.what));
        }
        f.duration("duration", d)
    };
    Some(match kind {
        FaultName::Kill => FaultKind::Kill {
            signal: signal(f, d)?,
            scope: f
                .choice("scope", "signal scope", SignalScope::NAMES, d)
                .and_then(|(n, _)| SignalScope::from_name(n)),
        },
        FaultName::Pause => FaultKind::Pause { duration: duration("a pause needs one, e.g. duration = \"2s\"", d)? },
        FaultName::Restart => FaultKind::Restart,
        FaultName::Command => FaultKind::Command { argv: super::command(f, "command", true, d)? },
        FaultName::Corrupt => FaultKind::Corrupt(corrupt(f, d)?),
        FaultName::StaleLock => FaultKind::StaleLock(stale_lock(f, d)?),
        FaultName::Disconnect => FaultKind::Disconnect { duration: duration("a disconnect heals after it", d)? },
        FaultName::LoseUnsynced => FaultKind::LoseUnsynced { torn: f.bool("torn", d).unwrap_or(false) },
        FaultName::Io => FaultKind::Io(super::io::io_plan(f, d)?),
        FaultName::Clock => FaultKind::Clock(clock(f, d)?),
        FaultName::Memory => super::pressure::memory(f, d)?,
        FaultName::Cpu => super::pressure::cpu(f, d)?,
        FaultName::Hog => super::pressure::hog(f, d)?,
        FaultName::DeletePod => FaultKind::DeletePod { grace: grace(f, d) },
        FaultName::EvictPod => FaultKind::EvictPod,
        FaultName::Scale => {
            let replicas = f.integer("replicas", 0, 10_000, d);
            if f.get("replicas").is_none() {
                d.error(f.span.clone(), format!("missing key `replicas` in {}; e.g. replicas = 0", f.what));
            }
            FaultKind::Scale { replicas: replicas? as u32, duration: f.duration("duration", d) }
        }
        FaultName::IsolatePod => FaultKind::IsolatePod {
            duration: duration("a NetworkPolicy is deleted after it, e.g. duration = \"2s\"", d)?,
        },
        FaultName::ChaosMesh => FaultKind::ChaosMesh(super::pods::chaos_plan(
            f,
            duration("Chaos Mesh ends the fault after it, e.g. duration = \"2s\"", d),
            d,
        )?),
        other => unreachable!("`{other}` is not a target fault"),
    })
}

/// A `delete-pod`'s `grace`: whole seconds, as the API takes it.
fn grace(f: &Fields, d: &mut Diagnostics) -> Option<std::time::Duration> {
    let grace = f.duration("grace", d)?;
    if grace.subsec_nanos() != 0 {
        let span = f.get("grace").map_or(f.span.clone(), |v| v.span());
        d.error(span, format!("`grace` in {} is whole seconds (the API's unit), e.g. \"0s\" or \"30s\"", f.what));
    }
    Some(grace)
}

/// `offset = "+2h"` (or `"-30s"`), `rate = 2.0`, and when it heals.
fn clock(f: &Fields, d: &mut Diagnostics) -> Option<ClockPlan> {
    let offset_ms = match f.str("offset", d) {
        Some((text, span)) => {
            let (sign, magnitude) = match text.trim().strip_prefix('-') {
                Some(rest) => (-1, rest),
                None => (1, text.trim().strip_prefix('+').unwrap_or(text.trim())),
            };
            match crate::duration::parse_duration(magnitude) {
                Ok(d) => Some(sign * d.as_millis() as i64),
                Err(e) => {
                    d.error(span, format!("`offset` in {}: {e} (a signed duration: \"+2h\", \"-30s\")", f.what));
                    None
                }
            }
        }
        None if f.get("offset").is_some() => None,
        None => Some(0),
    };
    let rate = match f.get("rate") {
        Some(value) => match value.get_ref() {
            toml::de::DeValue::Float(x) => x.as_str().parse::<f64>().ok().filter(|r| *r > 0.0).map(Some),
            toml::de::DeValue::Integer(i) => i.as_str().parse::<f64>().ok().filter(|r| *r > 0.0).map(Some),
            _ => None,
        }
        .or_else(|| {
            d.error(value.span(), format!("`rate` in {} must be a number above 0 (2.0: twice as fast)", f.what));
            None
        }),
        None => Some(None),
    };
    if f.get("offset").is_none() && f.get("rate").is_none() {
        d.error(
            f.span.clone(),
            format!("a `clock` fault in {} needs offset = \"+1h\" (a jump) or rate = 2.0 (a drift), or both", f.what),
        );
        return None;
    }
    let duration = match f.get("duration") {
        Some(_) => Some(f.positive_duration("duration", "the clock would be back at once", d)?),
        None => None,
    };
    Some(ClockPlan { offset_ms: offset_ms?, rate: rate?, duration })
}

/// A timeline fault's `at`, which must fall inside the workload or the
/// quiet period after it.
pub(super) fn scheduled_at(f: &Fields, workload: Option<&WorkloadPlan>, d: &mut Diagnostics) -> Option<TimeSpec> {
    match f.time_spec("at", d) {
        Some((at, span)) => {
            if let Some(w) = workload {
                if at.max > w.duration + w.quiet {
                    d.error(
                        span,
                        format!(
                            "`at` = {at} in {} is outside the workload's duration ({}) and its quiet period ({}); \
                             a fault must fall inside them (a fault after the writes stop: add `quiet = \"2s\"` \
                             to [workload])",
                            f.what,
                            format_duration(w.duration),
                            format_duration(w.quiet)
                        ),
                    );
                }
            }
            Some(at)
        }
        None if f.get("at").is_none() => {
            d.error(
                f.span.clone(),
                format!("missing key `at` in {}; expected a time such as `2s` or a range `2s..4s`", f.what),
            );
            None
        }
        None => None,
    }
}

/// Reports every key that the kind (or corrupt mode) does not read.
fn check_applicable(f: &Fields, kind: FaultName, mode: Option<&str>, d: &mut Diagnostics) {
    let applies = applicable(kind, mode);
    for key in FAULT_KEYS.iter().filter(|k| !["kind", "target", "at", "setup"].contains(k)) {
        if let (Some(value), false) = (f.get(key), applies.contains(key)) {
            let what = match (kind, mode) {
                (FaultName::Corrupt, Some(mode)) if CORRUPT_MODES.contains(&mode) => {
                    format!("a `corrupt` fault in mode `{mode}`")
                }
                _ => format!("a `{kind}` fault"),
            };
            let keys = if applies.is_empty() { "none".to_string() } else { applies.join(", ") };
            d.error(value.span(), format!("`{key}` does not apply to {what} (its keys: {keys})"));
        }
    }
}

fn proxy_ref<'p>(f: &Fields, proxies: &'p [ProxyPlan], d: &mut Diagnostics) -> Option<&'p ProxyPlan> {
    let (name, span) = f.required_str("proxy", "the name of a [proxy.<name>]", d)?;
    let found = proxies.iter().find(|p| p.name == name);
    if found.is_none() {
        let names: Vec<&str> = proxies.iter().map(|p| p.name.as_str()).collect();
        let known = if names.is_empty() {
            "(none: declare one as [proxy.<name>] with target = \"...\")".to_string()
        } else {
            names.join(", ")
        };
        d.error(
            span,
            format!(
                "`proxy` in {} names `{name}`, which is not a proxy of this scenario{}; proxies: {known}",
                f.what,
                diagnostic::did_you_mean(name, names.iter().copied()),
            ),
        );
    }
    found
}

/// Bytes per second: `"100KB/s"`, `"1MiB/s"`, or a number.
fn rate(f: &Fields, d: &mut Diagnostics) -> Option<u64> {
    let value = f.get("rate")?;
    let Some(text) = value.get_ref().as_str() else {
        return f.bytes("rate", d).filter(|r| *r > 0);
    };
    let parsed = super::fields::parse_bytes(text.strip_suffix("/s").unwrap_or(text)).filter(|r| *r > 0);
    if parsed.is_none() {
        d.error(
            value.span(),
            format!("`rate` in {}: expected bytes per second such as \"100KB/s\" or \"1MiB/s\"", f.what),
        );
    }
    parsed
}

fn toxic(kind: FaultName, f: &Fields, d: &mut Diagnostics) -> Option<Toxic> {
    let required = |key: &str, example: &str, d: &mut Diagnostics| {
        let present = f.get(key).is_some();
        if !present {
            d.error(f.span.clone(), format!("missing key `{key}` in {}; a `{kind}` needs it, e.g. {example}", f.what));
        }
        present
    };
    Some(match kind {
        FaultName::Blackhole => Toxic::Blackhole,
        FaultName::Refuse => Toxic::Refuse,
        FaultName::Reset => Toxic::Reset,
        FaultName::Latency => {
            let present = required("delay", "delay = \"100ms\"", d);
            let jitter = f.duration("jitter", d).unwrap_or(std::time::Duration::ZERO);
            if !present {
                return None;
            }
            Toxic::Latency { delay: f.duration("delay", d)?, jitter }
        }
        FaultName::Bandwidth => {
            if !required("rate", "rate = \"100KB/s\"", d) {
                return None;
            }
            Toxic::Bandwidth { bytes_per_second: rate(f, d)? }
        }
        FaultName::SlowClose | FaultName::Timeout => {
            if !required("delay", "delay = \"1s\"", d) {
                return None;
            }
            let delay = f.duration("delay", d)?;
            if kind == FaultName::Timeout {
                Toxic::Timeout { delay }
            } else {
                Toxic::SlowClose { delay }
            }
        }
        FaultName::Slice => {
            let present = required("size", "size = 64", d);
            let delay = f.duration("delay", d).unwrap_or(std::time::Duration::ZERO);
            if !present {
                return None;
            }
            Toxic::Slice { size: f.bytes("size", d).filter(|s| *s > 0)?, delay }
        }
        FaultName::LimitData => {
            if !required("bytes", "bytes = 1000", d) {
                return None;
            }
            Toxic::LimitData { bytes: f.bytes("bytes", d)? }
        }
        other => unreachable!("`{other}` is not a link fault"),
    })
}

fn signal(f: &Fields, d: &mut Diagnostics) -> Option<Signal> {
    signal_at(f, "signal", Signal::SIGKILL, d)
}

/// A signal name (`SIGINT` or `INT`) under `key`, or `default` without one.
pub fn signal_at(f: &Fields, key: &str, default: Signal, d: &mut Diagnostics) -> Option<Signal> {
    let Some((text, span)) = f.str(key, d) else {
        return Some(default);
    };
    let upper = text.to_ascii_uppercase();
    let full = if upper.starts_with("SIG") { upper } else { format!("SIG{upper}") };
    let parsed = Signal::from_str(&full).ok();
    if parsed.is_none() {
        let names: Vec<&str> = Signal::iterator().map(|s| s.as_str()).collect();
        d.error(
            span,
            format!(
                "unknown signal `{text}` in {}{}; expected a name such as SIGKILL, SIGTERM or SIGSEGV",
                f.what,
                diagnostic::did_you_mean(&full, names)
            ),
        );
    }
    parsed
}

fn offset(f: &Fields, d: &mut Diagnostics) -> Option<Offset> {
    match f.get("offset") {
        None => Some(Offset::Seeded),
        Some(v) if v.get_ref().as_str() == Some("seeded") => Some(Offset::Seeded),
        Some(_) => match f.bytes_or_fraction("offset", true, d)? {
            Size::Bytes(n) => Some(Offset::Bytes(n)),
            Size::Fraction(x) => Some(Offset::Fraction(x)),
        },
    }
}

fn corrupt(f: &Fields, d: &mut Diagnostics) -> Option<CorruptPlan> {
    let path = f.data_path("path", "a file (or glob) relative to the target's data dir, e.g. \"wal.log\"", d);
    if let Some(p) = &path {
        if let Err(e) = glob::Pattern::new(p) {
            d.error(f.get("path").map_or(f.span.clone(), |v| v.span()), format!("`path` in {}: {e}", f.what));
        }
    }
    let when = match f.choice("when", "time of corruption", &["offline", "online"], d) {
        Some(("online", _)) => When::Online,
        _ => When::Offline,
    };
    let (mode, _) = f.required_choice("mode", "corrupt mode", CORRUPT_MODES, d)?;
    let length = |d: &mut Diagnostics| match f.get("length") {
        None => Some(4096),
        Some(_) => f.bytes("length", d).filter(|n| *n > 0).or_else(|| {
            d.error(f.get("length").unwrap().span(), format!("`length` in {} must be at least 1 byte", f.what));
            None
        }),
    };
    let mode = match mode.parse::<CorruptModeName>().expect("one of CORRUPT_MODES") {
        CorruptModeName::Bitflip => {
            CorruptMode::Bitflip { bits: f.integer("bits", 1, 1 << 20, d).unwrap_or(1) as u32, offset: offset(f, d)? }
        }
        CorruptModeName::Zero => CorruptMode::Zero { offset: offset(f, d)?, length: length(d)? },
        CorruptModeName::Random => CorruptMode::Random { offset: offset(f, d)?, length: length(d)? },
        CorruptModeName::Truncate => {
            if f.get("to").is_none() {
                d.error(
                    f.span.clone(),
                    format!("missing key `to` in {}; expected a length (1024, \"4KiB\") or \"50%\"", f.what),
                );
            }
            CorruptMode::Truncate { to: f.bytes_or_fraction("to", true, d)? }
        }
        CorruptModeName::TornTail => CorruptMode::TornTail {
            bytes: match f.get("bytes") {
                None => None,
                Some(_) => Some(f.bytes("bytes", d)?),
            },
        },
        CorruptModeName::Delete => CorruptMode::Delete,
        CorruptModeName::Swap => CorruptMode::Swap { length: length(d)? },
    };
    Some(CorruptPlan { path: path?, mode, when })
}

fn stale_lock(f: &Fields, d: &mut Diagnostics) -> Option<StaleLockPlan> {
    let (variant, _) = f.required_choice("variant", "stale-lock variant", STALE_LOCK_VARIANTS, d)?;
    let variant: StaleLockVariantName = variant.parse().expect("one of STALE_LOCK_VARIANTS");
    let path = f.data_path("path", "the lock or pid file, relative to the data dir, e.g. \"LOCK\"", d);
    let lock = match f.choice("lock", "lock kind", &["flock", "fcntl"], d) {
        Some(("fcntl", _)) => LockKind::Fcntl,
        _ => LockKind::Flock,
    };
    if variant != StaleLockVariantName::Held {
        if let Some(value) = f.get("lock") {
            d.error(value.span(), format!("`lock` in {} applies only to variant `held`", f.what));
        }
    }
    // The stand-in's user matters: PostgreSQL starts over a pid file naming
    // another user's live process, and refuses one of its own user's.
    let user = f.str("user", d).and_then(|(name, span)| {
        if variant == StaleLockVariantName::Leftover {
            d.error(span, format!("`user` in {} applies only to variants `held` and `pid-reused`", f.what));
            return None;
        }
        if nix::unistd::User::from_name(name).ok().flatten().is_none() {
            d.error(span, format!("`user` in {}: there is no user `{name}` on this machine", f.what));
            return None;
        }
        Some(name.to_string())
    });
    let variant = match variant {
        StaleLockVariantName::Leftover => StaleLockVariant::Leftover,
        StaleLockVariantName::Held => StaleLockVariant::Held { lock },
        StaleLockVariantName::PidReused => StaleLockVariant::PidReused,
    };
    Some(StaleLockPlan { variant, path: path?, user, duration: f.duration("duration", d) })
}

/// Storage faults and data-dir steps may only touch a data dir that the
/// scenario marks disposable (the harness's own per-trial ones always are).
/// `span_of(target)` places the message at the target's `data_dir`.
pub fn check_disposable(
    targets: &[TargetPlan],
    faults: &[FaultPlan],
    recover: &[RecoverStep],
    span_of: impl Fn(&str) -> std::ops::Range<usize>,
    d: &mut Diagnostics,
) {
    let touched = faults.iter().filter(|f| f.kind.is_storage()).map(|f| (&*f.target, f.kind.name().as_str())).chain(
        recover.iter().filter_map(|s| match &s.action {
            StepAction::Restore { target, .. } | StepAction::Remove { target, .. } => {
                Some((&**target, s.action.name().as_str()))
            }
            _ => None,
        }),
    );
    let mut reported = Vec::new();
    for (name, what) in touched {
        let Some(target) = targets.iter().find(|t| t.name == name) else { continue };
        if !target.disposable && !reported.contains(&name) {
            reported.push(name);
            d.error(
                span_of(name),
                format!(
                    "[target.{name}] has data_dir = \"{}\", which is not marked disposable, and a `{what}` would \
                     damage it; add `disposable = true` to [target.{name}] if its contents may be destroyed",
                    target.data_dir.as_deref().unwrap_or_default()
                ),
            );
        }
    }
}

fn partition_plan(f: &Fields, targets: &[&str], d: &mut Diagnostics) -> Option<PartitionPlan> {
    let duration = if f.get("duration").is_none() {
        d.error(f.span.clone(), format!("missing key `duration` in {}; a partition heals after it", f.what));
        None
    } else {
        f.duration("duration", d)
    };
    let one_way = f.bool("one_way", d).unwrap_or(false);
    let check = |name: &str, span: &std::ops::Range<usize>, d: &mut Diagnostics| {
        let known = targets.contains(&name);
        if !known {
            d.error(
                span.clone(),
                format!(
                    "`{name}` in {} is not a target of this scenario{}",
                    f.what,
                    diagnostic::did_you_mean(name, targets.iter().copied())
                ),
            );
        }
        known
    };
    match (f.str("isolate", d), f.get("groups")) {
        (Some((name, span)), None) => {
            if one_way {
                d.error(span.clone(), format!("`one_way` in {} applies to `groups`, not `isolate`", f.what));
            }
            let others: Vec<String> = targets.iter().filter(|t| **t != name).map(|t| t.to_string()).collect();
            let known = check(name, &span, d);
            let plan = PartitionPlan {
                groups: [others, vec![name.to_string()]],
                isolate: true,
                one_way: false,
                duration: duration?,
            };
            known.then_some(plan)
        }
        (None, Some(value)) => {
            type Named = (String, std::ops::Range<usize>);
            let groups: Option<Vec<Vec<Named>>> = value.get_ref().as_array().and_then(|groups| {
                groups
                    .iter()
                    .map(|g| {
                        g.get_ref().as_array().and_then(|names| {
                            names.iter().map(|n| n.get_ref().as_str().map(|s| (s.to_string(), n.span()))).collect()
                        })
                    })
                    .collect()
            });
            let Some(groups) = groups.filter(|g| g.len() == 2 && g.iter().all(|g| !g.is_empty())) else {
                d.error(
                    value.span(),
                    format!("`groups` in {} must be two lists of target names, e.g. [[\"a\"], [\"b\", \"c\"]]", f.what),
                );
                return None;
            };
            let mut known = true;
            for (name, span) in groups.iter().flatten() {
                known &= check(name, span, d);
            }
            let names = |i: usize| groups[i].iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
            let plan = PartitionPlan { groups: [names(0), names(1)], isolate: false, one_way, duration: duration? };
            known.then_some(plan)
        }
        _ => {
            d.error(
                f.span.clone(),
                format!("a `partition` in {} needs either `isolate = \"target\"` or `groups = [[...], [...]]`", f.what),
            );
            None
        }
    }
}
