//! The `packet` fault: a target's packets lost with a probability (iptables
//! `statistic --mode random` rules in its namespace), or delayed,
//! duplicated, corrupted and reordered by a netem qdisc on its link, for a
//! duration. Like a partition, it acts only inside the namespaces of the
//! run's own network: the host's firewall and links are never touched.

use std::sync::Arc;

use super::{Fault, FaultContext, FaultError, FaultErrorKind, FaultGuard};
use crate::journal::Entry;
use crate::network::Network;
use crate::scenario::{Netem, PacketDirection, PacketPlan};

pub struct Packet {
    pub plan: PacketPlan,
    pub network: Arc<Network>,
}

/// The iptables rules of a loss: one per direction and peer (`peers`: the
/// addresses, or the network's subnet).
fn loss_rules(loss: f64, direction: PacketDirection, peers: &[String]) -> Vec<Vec<String>> {
    let chains: &[(&str, &str)] = match direction {
        PacketDirection::In => &[("INPUT", "-s")],
        PacketDirection::Out => &[("OUTPUT", "-d")],
        PacketDirection::Both => &[("INPUT", "-s"), ("OUTPUT", "-d")],
    };
    let mut rules = Vec::new();
    for (chain, flag) in chains {
        for peer in peers {
            let rule = [*chain, *flag, peer.as_str(), "-m", "statistic", "--mode", "random", "--probability"];
            let mut rule: Vec<String> = rule.map(String::from).to_vec();
            rule.extend([format!("{loss:.5}"), "-j".into(), "DROP".into()]);
            rules.push(rule);
        }
    }
    rules
}

/// `tc qdisc add dev LINK root netem ...`'s parameters.
fn netem_args(n: &Netem) -> Vec<String> {
    let mut args = vec!["delay".to_string(), format!("{}us", n.delay.as_micros())];
    if !n.jitter.is_zero() {
        args.push(format!("{}us", n.jitter.as_micros()));
    }
    for (name, share) in [("duplicate", n.duplicate), ("corrupt", n.corrupt), ("reorder", n.reorder)] {
        if share > 0.0 {
            args.extend([name.to_string(), format!("{:.3}%", share * 100.0)]);
        }
    }
    args
}

impl Packet {
    fn describe(&self, target: &str, peers: &[String]) -> String {
        let plan = &self.plan;
        let whom = if plan.peers.is_empty() { "every address".to_string() } else { plan.peers.join(", ") };
        let mut parts = Vec::new();
        if let Some(loss) = plan.loss {
            let way = match plan.direction {
                PacketDirection::Both => "to and from",
                PacketDirection::In => "from",
                PacketDirection::Out => "to",
            };
            parts.push(format!(
                "{:.1}% of {target}'s packets {way} {whom} ({}) dropped",
                loss * 100.0,
                peers.join(", ")
            ));
        }
        if let Some(n) = &plan.netem {
            parts.push(format!("netem on what {target} sends: {}", netem_args(n).join(" ")));
        }
        parts.join("; ")
    }
}

impl Fault for Packet {
    fn inject(&self, ctx: &FaultContext) -> Result<FaultGuard, FaultError> {
        let network = Arc::clone(&self.network);
        let target = ctx.target.name().to_string();
        let member = network.member(&target).ok_or_else(|| {
            ctx.error(FaultErrorKind::Other(format!("`{target}` is not in the run's network namespaces")))
        })?;
        let (namespace, link) = (member.namespace.clone(), member.link.clone());
        let peers: Vec<String> = if self.plan.peers.is_empty() {
            vec![network.subnet()]
        } else {
            let others = self.plan.peers.iter().filter(|p| **p != target);
            others.filter_map(|p| network.member(p)).map(|m| m.address.to_string()).collect()
        };
        let failed = |e: crate::network::NetworkError| ctx.error(FaultErrorKind::Other(e.to_string()));
        let mut added: Vec<Vec<String>> = Vec::new();
        let undo = |added: &[Vec<String>]| {
            for rule in added {
                let _ = network.rule(&namespace, "-D", rule);
            }
        };
        for rule in self.plan.loss.map_or(vec![], |loss| loss_rules(loss, self.plan.direction, &peers)) {
            let entry = Entry::PartitionRule { trial: ctx.trial, fault: ctx.index, namespace: namespace.clone(), rule };
            ctx.journal(&entry)?;
            let Entry::PartitionRule { rule, .. } = entry else { unreachable!() };
            if let Err(e) = network.rule(&namespace, "-I", &rule) {
                undo(&added);
                return Err(failed(e));
            }
            added.push(rule);
        }
        let qdisc = match &self.plan.netem {
            Some(n) => {
                let entry = Entry::NetemQdisc {
                    trial: ctx.trial,
                    fault: ctx.index,
                    namespace: namespace.clone(),
                    link: link.clone(),
                };
                ctx.journal(&entry)?;
                let args = netem_args(n);
                let mut all = vec!["qdisc", "add", "dev", link.as_str(), "root", "netem"];
                all.extend(args.iter().map(String::as_str));
                if let Err(e) = network.tc(&namespace, &all) {
                    undo(&added);
                    return Err(failed(e));
                }
                true
            }
            None => false,
        };
        ctx.injected(self.describe(&target, &peers));
        let recorder = ctx.recorder.clone();
        let (fault, shown) = (ctx.index, ctx.target.name().to_string());
        Ok(ctx.heal_with(move || {
            // A loss that dropped nothing (peers that never talked) proves
            // nothing; netem cannot be counted so, and is taken as in effect.
            let dropped = if added.is_empty() { None } else { network.random_drops(&namespace).ok() };
            if dropped == Some(0) && !qdisc {
                let error = "the fault changed nothing: its rules dropped no packet".to_string();
                recorder.record(crate::history::EventKind::FaultFailed { fault, target: shown, error });
            }
            for rule in &added {
                if let Err(e) = network.rule(&namespace, "-D", rule) {
                    recorder.warn(e.to_string());
                }
            }
            if qdisc {
                if let Err(e) = network.tc(&namespace, &["qdisc", "del", "dev", &link, "root"]) {
                    recorder.warn(e.to_string());
                }
            }
            dropped.map_or(String::new(), |n| format!("dropped {n} packets"))
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_loss_drops_each_direction_of_each_peer_with_its_probability() {
        let rules: Vec<String> = loss_rules(0.3, PacketDirection::Both, &["10.0.0.11".into(), "10.0.0.12".into()])
            .into_iter()
            .map(|r| r.join(" "))
            .collect();
        let rule = |chain: &str, flag: &str, ip: &str| {
            format!("{chain} {flag} {ip} -m statistic --mode random --probability 0.30000 -j DROP")
        };
        assert_eq!(
            rules,
            [
                rule("INPUT", "-s", "10.0.0.11"),
                rule("INPUT", "-s", "10.0.0.12"),
                rule("OUTPUT", "-d", "10.0.0.11"),
                rule("OUTPUT", "-d", "10.0.0.12")
            ]
        );
        assert_eq!(loss_rules(1.0, PacketDirection::In, &["10.0.0.0/24".into()]).len(), 1);
    }

    #[test]
    fn netem_gets_only_what_was_asked() {
        let n = Netem {
            delay: Duration::from_millis(50),
            jitter: Duration::from_millis(10),
            reorder: 0.25,
            ..Default::default()
        };
        assert_eq!(netem_args(&n).join(" "), "delay 50000us 10000us reorder 25.000%");
    }
}
