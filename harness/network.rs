//! Kernel-level networks for process targets: each target runs in a
//! network namespace of its own, joined to the others by a bridge that
//! lives in a namespace of its own too (the hub), on a private /24 that
//! exists only inside this machine. The harness reaches the targets through
//! one more veth from its own namespace to the hub.
//!
//! Nothing is added to the host's own firewall: the bridge is in the hub,
//! whose (empty) ruleset forwards everything, so a host FORWARD policy of
//! DROP (Docker's) does not matter. Partitions are iptables rules inside the
//! targets' namespaces and vanish with them. Every name is journaled before
//! it is created; `destroy` (and `crashlab cleanup`) delete the namespaces
//! and the host-side link.

use std::net::Ipv4Addr;
use std::process::Command;

use std::time::Duration;

use crate::journal::{Entry, Journal};
use crate::targets::reaper;

#[derive(Debug, thiserror::Error)]
#[error("network: `{command}` failed: {detail}")]
pub struct NetworkError {
    pub command: String,
    pub detail: String,
}

pub use crate::journal::NetworkNames;

impl NetworkNames {
    /// Whether every name has the shape [`Network::create`] gives it
    /// (`cl` + 6 hex digits + a suffix): cleanup deletes nothing else.
    pub fn check(&self) -> Result<(), String> {
        let ours = |name: &str| {
            name.len() > 8
                && name.starts_with("cl")
                && name[2..8].chars().all(|c| c.is_ascii_hexdigit())
                && name[8..].chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        };
        let all = self.namespaces.iter().chain(&self.links).chain(std::iter::once(&self.host_link));
        match all.into_iter().find(|n| !ours(n)) {
            Some(name) => Err(format!("network name `{name}`: not a name the run gives")),
            None => Ok(()),
        }
    }
}

pub struct Member {
    pub target: String,
    pub namespace: String,
    pub address: Ipv4Addr,
    /// Its end of the veth to the hub, inside its namespace.
    pub link: String,
}

/// A namespaces network; destroyed when dropped, so that no early return
/// of the run leaves it behind.
pub struct Network {
    names: NetworkNames,
    pub members: Vec<Member>,
    subnet: [u8; 3],
    journal: std::sync::Arc<Journal>,
    destroyed: std::sync::atomic::AtomicBool,
}

/// Runs a command (through the reaper: the harness reaps every child) and
/// returns what it printed; its stderr is the error.
fn output(args: &[&str]) -> Result<String, NetworkError> {
    let failed = |detail: String| NetworkError { command: args.join(" "), detail };
    let mut command = Command::new(args[0]);
    command.args(&args[1..]);
    let out = reaper::run(&mut command, Duration::from_secs(30))
        .map_err(|e| failed(format!("{e} (the namespaces network needs iproute2 and iptables, and root)")))?;
    match out.exit {
        Some(exit) if exit.success() => Ok(out.stdout),
        Some(exit) => Err(failed(format!("{exit}: {}", out.stderr.trim()))),
        None => Err(failed("did not finish within 30 s".into())),
    }
}

fn run(args: &[&str]) -> Result<(), NetworkError> {
    output(args).map(|_| ())
}

/// A third octet of 10.213.X.0/24 that no route of this host uses yet.
fn free_subnet() -> Result<u8, NetworkError> {
    let routes = output(&["ip", "-4", "route", "show", "table", "all"])?;
    let start: u8 = rand::random();
    (0..=255u8)
        .map(|i| start.wrapping_add(i))
        .find(|x| !routes.contains(&format!("10.213.{x}.")))
        .ok_or_else(|| NetworkError { command: "ip route".into(), detail: "no free 10.213.X.0/24 left".into() })
}

impl Network {
    /// Creates the hub, one namespace per target and the host's link.
    pub fn create(targets: &[&str], journal: &std::sync::Arc<Journal>) -> Result<Network, NetworkError> {
        let id = format!("{:06x}", rand::random::<u32>() & 0xff_ffff);
        let x = free_subnet()?;
        let hub = format!("cl{id}-hub");
        let members: Vec<Member> = targets
            .iter()
            .enumerate()
            .map(|(i, t)| Member {
                target: t.to_string(),
                namespace: format!("cl{id}-{t}"),
                address: Ipv4Addr::new(10, 213, x, 10 + i as u8),
                link: format!("cl{id}v{i}"),
            })
            .collect();
        let names = NetworkNames {
            namespaces: std::iter::once(hub.clone()).chain(members.iter().map(|m| m.namespace.clone())).collect(),
            host_link: format!("cl{id}h"),
            links: (0..members.len())
                .flat_map(|i| [format!("cl{id}v{i}"), format!("cl{id}p{i}")])
                .chain(std::iter::once(format!("cl{id}g")))
                .collect(),
        };
        journal
            .append(&Entry::NetworkCreated { names: names.clone() })
            .map_err(|e| NetworkError { command: "journal".into(), detail: e.to_string() })?;
        let network = Network {
            names,
            members,
            subnet: [10, 213, x],
            journal: std::sync::Arc::clone(journal),
            destroyed: Default::default(),
        };
        // On failure, dropping it removes what was built.
        network.build(&id, &hub)?;
        Ok(network)
    }

    fn build(&self, id: &str, hub: &str) -> Result<(), NetworkError> {
        let [a, b, x] = self.subnet;
        run(&["ip", "netns", "add", hub])?;
        run(&["ip", "-n", hub, "link", "set", "lo", "up"])?;
        run(&["ip", "-n", hub, "link", "add", "br0", "type", "bridge"])?;
        run(&["ip", "-n", hub, "link", "set", "br0", "up"])?;
        for (i, m) in self.members.iter().enumerate() {
            let (inside, outside) = (format!("cl{id}v{i}"), format!("cl{id}p{i}"));
            let ns = m.namespace.as_str();
            run(&["ip", "netns", "add", ns])?;
            run(&["ip", "-n", ns, "link", "set", "lo", "up"])?;
            run(&["ip", "link", "add", &inside, "type", "veth", "peer", "name", &outside])?;
            crate::crash_point::reached("veth");
            run(&["ip", "link", "set", &inside, "netns", ns])?;
            run(&["ip", "link", "set", &outside, "netns", hub])?;
            run(&["ip", "-n", hub, "link", "set", &outside, "master", "br0", "up"])?;
            run(&["ip", "-n", ns, "addr", "add", &format!("{}/24", m.address), "dev", &inside])?;
            run(&["ip", "-n", ns, "link", "set", &inside, "up"])?;
        }
        let (host, peer) = (self.names.host_link.as_str(), format!("cl{id}g"));
        run(&["ip", "link", "add", host, "type", "veth", "peer", "name", &peer])?;
        run(&["ip", "link", "set", &peer, "netns", hub])?;
        run(&["ip", "-n", hub, "link", "set", &peer, "master", "br0", "up"])?;
        run(&["ip", "addr", "add", &format!("{a}.{b}.{x}.254/24"), "dev", host])?;
        run(&["ip", "link", "set", host, "up"])?;
        Ok(())
    }

    pub fn member(&self, target: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.target == target)
    }

    pub fn subnet(&self) -> String {
        let [a, b, x] = self.subnet;
        format!("{a}.{b}.{x}.0/24")
    }

    /// Adds (`-I`) or deletes (`-D`) one iptables rule in a namespace.
    pub fn rule(&self, namespace: &str, op: &str, rule: &[String]) -> Result<(), NetworkError> {
        let mut args = vec!["ip", "netns", "exec", namespace, "iptables", "-w", op];
        args.extend(rule.iter().map(String::as_str));
        run(&args)
    }

    /// Packets dropped so far by the namespace's random-loss rules (those of
    /// `packet` faults), from iptables' counters.
    pub fn random_drops(&self, namespace: &str) -> Result<u64, NetworkError> {
        let mut dropped = 0;
        for chain in ["INPUT", "OUTPUT"] {
            let listing = output(&["ip", "netns", "exec", namespace, "iptables", "-w", "-nvxL", chain])?;
            let ours = listing.lines().filter(|l| l.contains("statistic mode random"));
            dropped += ours.filter_map(|l| l.split_whitespace().next()?.parse::<u64>().ok()).sum::<u64>();
        }
        Ok(dropped)
    }

    /// Runs `tc ARGS` in a namespace (a netem qdisc on its link).
    pub fn tc(&self, namespace: &str, args: &[&str]) -> Result<(), NetworkError> {
        let mut all = vec!["ip", "netns", "exec", namespace, "tc"];
        all.extend(args);
        run(&all)
    }

    /// Whether this kernel has netem: a netem qdisc is added to, then
    /// removed from, the loopback of the hub's namespace (nothing else
    /// goes through it).
    pub fn has_netem(&self) -> Result<(), NetworkError> {
        let hub = &self.names.namespaces[0];
        self.tc(hub, &["qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"]).map_err(|e| NetworkError {
            command: e.command,
            detail: format!(
                "{} (delay, duplicate, corrupt and reorder need the kernel's netem, sch_netem; loss works without it)",
                e.detail
            ),
        })?;
        self.tc(hub, &["qdisc", "del", "dev", "lo", "root"])
    }

    /// Deletes the namespaces (with their links and rules) and the host
    /// link. Idempotent.
    pub fn destroy(&self) {
        if self.destroyed.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        destroy(&self.names);
        let _ = self.journal.append(&Entry::NetworkDestroyed { names: self.names.clone() });
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        self.destroy();
    }
}

/// Deletes what `names` lists, whatever of it still exists. The host link
/// is deleted explicitly: its peer's namespace going away removes it only
/// later, asynchronously.
pub fn destroy(names: &NetworkNames) -> usize {
    let mut removed = 0;
    if run(&["ip", "link", "del", &names.host_link]).is_ok() {
        removed += 1;
    }
    // A veth end still in this namespace: the harness died before it
    // moved. One listing, so that a normal teardown runs no extra command.
    let here = output(&["ip", "-o", "link", "show"]).unwrap_or_default();
    let present = |name: &str| {
        here.lines().any(|l| l.split(':').nth(1).is_some_and(|n| n.trim().split('@').next() == Some(name)))
    };
    for link in names.links.iter().filter(|l| present(l)) {
        if run(&["ip", "link", "del", link]).is_ok() {
            removed += 1;
        }
    }
    for ns in names.namespaces.iter().rev() {
        if run(&["ip", "netns", "del", ns]).is_ok() {
            removed += 1;
        }
    }
    removed
}
