//! The keys of a `packet` fault: which packets of the target's namespace
//! (`peers`, `direction`), lost with a probability (`loss`) or, through
//! netem, delayed, duplicated, corrupted or reordered, for `duration`.

use std::time::Duration;

use super::diagnostic::{did_you_mean, Diagnostics};
use super::fields::Fields;
use super::plan::{Netem, NetworkPlan, PacketDirection, PacketPlan};

pub const PACKET_KEYS: &[&str] =
    &["peers", "direction", "loss", "delay", "jitter", "duplicate", "corrupt", "reorder", "duration"];

pub fn packet_plan(f: &Fields, targets: &[&str], network: NetworkPlan, d: &mut Diagnostics) -> Option<PacketPlan> {
    if network != NetworkPlan::Namespaces {
        d.error(
            f.span.clone(),
            format!(
                "a `packet` fault in {} needs the targets in namespaces: add [network] kind = \"namespaces\"",
                f.what
            ),
        );
    }
    let peers = peers(f, targets, d);
    let direction = match f.get("direction") {
        Some(_) => f
            .choice("direction", "packet direction", &["both", "in", "out"], d)
            .and_then(|(name, _)| name.parse::<PacketDirection>().ok()),
        None => Some(PacketDirection::Both),
    };
    let loss = probability(f, "loss", d);
    let netem = netem(f, d);
    let duration = if f.get("duration").is_none() {
        d.error(f.span.clone(), format!("missing key `duration` in {}; a `packet` fault heals after it", f.what));
        None
    } else {
        f.positive_duration("duration", "the fault would heal as soon as it is in", d)
    };
    let (loss, netem) = (loss?, netem?);
    if loss.is_none() && netem.is_none() {
        d.error(
            f.span.clone(),
            format!(
                "a `packet` fault in {} needs what it does: loss = 0.3, or netem's delay, duplicate, corrupt, reorder",
                f.what
            ),
        );
        return None;
    }
    let (peers, direction) = (peers?, direction?);
    if netem.is_some() && (!peers.is_empty() || direction == PacketDirection::In) {
        let key = if peers.is_empty() { "direction" } else { "peers" };
        d.error(
            f.get(key).expect("present").span(),
            format!(
                "`{key}` in {}: netem (delay, duplicate, corrupt, reorder) acts on everything the target sends; \
                 `peers` and `direction = \"in\"` apply to `loss` only",
                f.what
            ),
        );
        return None;
    }
    Some(PacketPlan { peers, direction, loss, netem, duration: duration? })
}

fn peers(f: &Fields, targets: &[&str], d: &mut Diagnostics) -> Option<Vec<String>> {
    if f.get("peers").is_none() {
        return Some(Vec::new());
    }
    let (names, span) = f.str_array("peers", d)?;
    for name in &names {
        if !targets.contains(&name.as_str()) {
            d.error(
                span.clone(),
                format!(
                    "`{name}` in `peers` of {} is not a target of this scenario{}",
                    f.what,
                    did_you_mean(name, targets.iter().copied())
                ),
            );
            return None;
        }
    }
    Some(names)
}

/// A probability above 0 and at most 1, if the key is there.
fn probability(f: &Fields, key: &str, d: &mut Diagnostics) -> Option<Option<f64>> {
    let Some(value) = f.get(key) else { return Some(None) };
    let number = match value.get_ref() {
        toml::de::DeValue::Float(x) => x.as_str().parse::<f64>().ok(),
        toml::de::DeValue::Integer(i) => i.as_str().parse::<f64>().ok(),
        _ => None,
    };
    match number {
        Some(p) if p > 0.0 && p <= 1.0 => Some(Some(p)),
        _ => {
            d.error(
                value.span(),
                format!("`{key}` in {} must be a probability above 0 and at most 1, e.g. 0.3", f.what),
            );
            None
        }
    }
}

fn netem(f: &Fields, d: &mut Diagnostics) -> Option<Option<Netem>> {
    let given = ["delay", "jitter", "duplicate", "corrupt", "reorder"].iter().any(|k| f.get(k).is_some());
    if !given {
        return Some(None);
    }
    let delay = f.get("delay").map_or(Some(Duration::ZERO), |_| f.duration("delay", d));
    let jitter = f.get("jitter").map_or(Some(Duration::ZERO), |_| f.duration("jitter", d));
    let share = |key: &str, d: &mut Diagnostics| probability(f, key, d).map(|p| p.unwrap_or(0.0));
    let (duplicate, corrupt, reorder) = (share("duplicate", d), share("corrupt", d), share("reorder", d));
    Some(Some(Netem { delay: delay?, jitter: jitter?, duplicate: duplicate?, corrupt: corrupt?, reorder: reorder? }))
}
