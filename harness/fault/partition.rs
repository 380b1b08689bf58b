//! Kernel-level partitions: iptables rules inside the targets' network
//! namespaces (see [`crate::network`]), removed on heal. They drop packets,
//! so open connections are cut as well as new ones.

use std::sync::Arc;

use super::{Fault, FaultContext, FaultError, FaultErrorKind, FaultGuard};
use crate::journal::Entry;
use crate::network::Network;
use crate::scenario::PartitionPlan;

pub struct Partition {
    pub plan: PartitionPlan,
    pub network: Arc<Network>,
}

impl Partition {
    /// `(namespace, rule)` pairs that make the partition, given each
    /// target's `(namespace, address)` and the network's subnet.
    pub(super) fn rules(
        plan: &PartitionPlan,
        member: impl Fn(&str) -> (String, String),
        subnet: &str,
    ) -> Vec<(String, Vec<String>)> {
        let rule =
            |chain: &str, flag: &str, address: &str| [chain, flag, address, "-j", "DROP"].map(String::from).to_vec();
        let mut rules = Vec::new();
        if plan.isolate {
            let (ns, _) = member(&plan.groups[1][0]);
            rules.push((ns.clone(), rule("INPUT", "-s", subnet)));
            rules.push((ns, rule("OUTPUT", "-d", subnet)));
            return rules;
        }
        for a in &plan.groups[0] {
            for b in &plan.groups[1] {
                let ((a_ns, a_ip), (b_ns, b_ip)) = (member(a), member(b));
                if plan.one_way {
                    rules.push((b_ns, rule("INPUT", "-s", &a_ip)));
                } else {
                    rules.push((a_ns.clone(), rule("INPUT", "-s", &b_ip)));
                    rules.push((a_ns, rule("OUTPUT", "-d", &b_ip)));
                }
            }
        }
        rules
    }

    fn describe(&self) -> String {
        describe(&self.plan)
    }
}

/// What a partition separates, as its detail says it.
pub(super) fn describe(plan: &PartitionPlan) -> String {
    if plan.isolate {
        return format!("{} cut off from every other address of the network", plan.groups[1][0]);
    }
    let (a, b) = (plan.groups[0].join(", "), plan.groups[1].join(", "));
    if plan.one_way {
        format!("[{b}] receive nothing from [{a}]")
    } else {
        format!("[{a}] and [{b}] cannot reach each other")
    }
}

impl Fault for Partition {
    fn inject(&self, ctx: &FaultContext) -> Result<FaultGuard, FaultError> {
        let network = Arc::clone(&self.network);
        let member = |t: &str| {
            let m = network.member(t).expect("compile checked the targets");
            (m.namespace.clone(), m.address.to_string())
        };
        let rules = Partition::rules(&self.plan, member, &network.subnet());
        let mut added: Vec<(String, Vec<String>)> = Vec::new();
        for (namespace, rule) in rules {
            ctx.journal(&Entry::PartitionRule {
                trial: ctx.trial,
                fault: ctx.index,
                namespace: namespace.clone(),
                rule: rule.clone(),
            })?;
            if let Err(e) = network.rule(&namespace, "-I", &rule) {
                for (ns, r) in &added {
                    let _ = network.rule(ns, "-D", r);
                }
                return Err(ctx.error(FaultErrorKind::Other(e.to_string())));
            }
            added.push((namespace, rule));
        }
        // In effect once its last rule is: each takes an `ip netns exec`
        // (~10 ms), and until then packets still flow (an etcd leader went
        // on committing for 20 ms after a time taken before them).
        ctx.injected(self.describe());
        let recorder = ctx.recorder.clone();
        Ok(ctx.heal_with(move || {
            for (ns, rule) in &added {
                if let Err(e) = network.rule(ns, "-D", rule) {
                    recorder.warn(e.to_string());
                }
            }
            String::new()
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn rules(groups: [&[&str]; 2], isolate: bool, one_way: bool) -> Vec<String> {
        let plan = PartitionPlan {
            groups: groups.map(|g| g.iter().map(|s| s.to_string()).collect()),
            isolate,
            one_way,
            duration: Duration::from_secs(1),
        };
        let member = |t: &str| (format!("ns-{t}"), format!("10.0.0.{}", t.as_bytes()[0] - b'a' + 10));
        Partition::rules(&plan, member, "10.0.0.0/24")
            .into_iter()
            .map(|(ns, r)| format!("{ns}: {}", r.join(" ")))
            .collect()
    }

    #[test]
    fn each_shape_of_partition_drops_exactly_its_links() {
        assert_eq!(
            rules([&["a", "c"], &["b"]], true, false),
            ["ns-b: INPUT -s 10.0.0.0/24 -j DROP", "ns-b: OUTPUT -d 10.0.0.0/24 -j DROP"]
        );
        assert_eq!(
            rules([&["a"], &["b", "c"]], false, false),
            [
                "ns-a: INPUT -s 10.0.0.11 -j DROP",
                "ns-a: OUTPUT -d 10.0.0.11 -j DROP",
                "ns-a: INPUT -s 10.0.0.12 -j DROP",
                "ns-a: OUTPUT -d 10.0.0.12 -j DROP",
            ]
        );
        // One way: b and c no longer hear a; a still hears them.
        assert_eq!(
            rules([&["a"], &["b", "c"]], false, true),
            ["ns-b: INPUT -s 10.0.0.10 -j DROP", "ns-c: INPUT -s 10.0.0.10 -j DROP"]
        );
    }
}
