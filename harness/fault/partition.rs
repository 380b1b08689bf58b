//! Kernel-level partitions: iptables rules inside the targets' network
//! namespaces (see [`crate::network`]), removed on heal. They drop packets,
//! so open connections are cut as well as new ones.

use std::sync::Arc;

use super::journal::Entry;
use super::{healed, Fault, FaultContext, FaultError, FaultErrorKind, FaultGuard};
use crate::network::Network;
use crate::scenario::PartitionPlan;

pub struct Partition(pub PartitionPlan);

impl Partition {
    /// `(namespace, rule)` pairs that make the partition.
    fn rules(&self, network: &Network) -> Vec<(String, Vec<String>)> {
        let plan = &self.0;
        let rule = |chain: &str, flag: &str, address: String| {
            vec![chain.to_string(), flag.to_string(), address, "-j".into(), "DROP".into()]
        };
        let member = |t: &String| network.member(t).expect("compile checked the targets");
        let mut rules = Vec::new();
        if plan.isolate {
            let m = member(&plan.groups[1][0]);
            rules.push((m.namespace.clone(), rule("INPUT", "-s", network.subnet())));
            rules.push((m.namespace.clone(), rule("OUTPUT", "-d", network.subnet())));
            return rules;
        }
        for a in &plan.groups[0] {
            for b in &plan.groups[1] {
                let (a, b) = (member(a), member(b));
                if plan.one_way {
                    rules.push((b.namespace.clone(), rule("INPUT", "-s", a.address.to_string())));
                } else {
                    rules.push((a.namespace.clone(), rule("INPUT", "-s", b.address.to_string())));
                    rules.push((a.namespace.clone(), rule("OUTPUT", "-d", b.address.to_string())));
                }
            }
        }
        rules
    }

    fn describe(&self) -> String {
        let plan = &self.0;
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
}

impl Fault for Partition {
    fn inject(&self, ctx: &FaultContext) -> Result<FaultGuard, FaultError> {
        let Some(network) = ctx.network.clone() else {
            return Err(ctx.error(FaultErrorKind::Other("the targets are not in network namespaces".into())));
        };
        let rules = self.rules(&network);
        ctx.injected("partition", self.describe());
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
        let (trial, fault, target) = (ctx.trial, ctx.index, Arc::clone(&ctx.target));
        let (recorder, journal) = (ctx.recorder.clone(), Arc::clone(&ctx.journal));
        Ok(FaultGuard::new(move || {
            for (ns, rule) in &added {
                if let Err(e) = network.rule(ns, "-D", rule) {
                    eprintln!("crashlab: {e}");
                }
            }
            healed(trial, fault, target.name(), String::new(), &recorder, &journal);
        }))
    }
}
