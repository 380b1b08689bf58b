//! Targets: the services under test. A [`Target`] starts, stops, signals and
//! supervises one service; teardown is idempotent. Process targets live in
//! [`process`]; every backend must pass the same conformance tests.

pub mod cgroup;
pub mod container;
pub mod context;
pub mod faketime;
pub mod pod;
pub mod process;
pub mod procfs;
pub mod reaper;
pub mod remote;
pub mod stopping;

use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::time::Instant;

use nix::sys::signal::Signal;
use nix::unistd::Pid;

pub use container::ContainerTarget;
pub use context::TargetContext;
pub use process::ProcessTarget;

use crate::scenario::SignalScope;

/// A process the run started: pid plus start time, so it cannot be confused
/// with a later process that reuses the pid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HostProcess {
    pub pid: i32,
    pub start_time: u64,
    pub incarnation: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("target `{target}`: cannot start `{program}`: {source}")]
    Spawn { target: String, program: String, source: std::io::Error },
    #[error("target `{target}` is not running")]
    NotRunning { target: String },
    #[error("target `{target}`: cannot send {signal}: {source}")]
    Signal { target: String, signal: &'static str, source: nix::errno::Errno },
    #[error("target `{target}`: hook `{command}` failed: {detail}")]
    Hook { target: String, command: String, detail: String },
    #[error("target `{target}`: {source}")]
    Io { target: String, source: std::io::Error },
    #[error("target `{target}`: cannot signal {scope}: {why}")]
    Scope { target: String, scope: &'static str, why: String },
    #[error("target `{target}`: {what} is for container targets only")]
    Unsupported { target: String, what: &'static str },
    #[error("target `{target}`: {source}")]
    Pod { target: String, source: Box<crate::cluster::ClusterError> },
    #[error("target `{target}` is a pod: {what} does not reach it (faults on pods go through the Kubernetes API)")]
    NotForPods { target: String, what: &'static str },
}

/// What a signal reached: the incarnation, the moment the last process got
/// it (the fault's injection: a whole tree is found and signalled one
/// process at a time), and how many processes got it (`None`: a process
/// group, signalled whole).
#[derive(Debug, Clone, Copy)]
pub struct Signalled {
    pub process: HostProcess,
    pub at: Instant,
    pub processes: Option<usize>,
}

/// What a command run for a target is, which decides how it is tracked.
/// Every command carries the run's token (see [`reaper::RUN_TOKEN_VAR`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandKind {
    /// A hook, a recovery step or a command fault: journaled with its pid
    /// and start time before it can act.
    Step,
    /// A probe's sample: many a second, too many to journal; the token
    /// alone lets cleanup find one left behind.
    Probe,
}

pub trait Target: Send + Sync {
    fn name(&self) -> &str;
    /// Starts the first incarnation and supervision (restarts per policy).
    fn start(&self) -> Result<(), TargetError>;
    /// Sends a signal to the current incarnation's processes in `scope`.
    fn signal(&self, signal: Signal, scope: SignalScope) -> Result<Signalled, TargetError>;
    /// The scope of a kill fault that names none: what a crash of this kind
    /// of target usually takes down.
    fn default_scope(&self) -> SignalScope;
    /// Freezes the current incarnation (SIGSTOP) until [`Target::resume`].
    fn pause(&self) -> Result<HostProcess, TargetError>;
    fn resume(&self, which: HostProcess) -> Result<(), TargetError>;
    /// Graceful stop of the current incarnation, then a new one, whatever the
    /// restart policy.
    fn restart(&self) -> Result<HostProcess, TargetError>;
    /// Takes the target down (`signal` to its group: SIGTERM for a graceful
    /// stop, SIGKILL for a crash; SIGKILL after the stop timeout either way)
    /// and keeps it down, whatever the restart policy, until
    /// [`Target::release`]. Returns the incarnation it stopped, if one ran.
    fn hold(&self, signal: Signal) -> Option<HostProcess>;
    /// Ends a [`Target::hold`]: a new incarnation starts at once.
    fn release(&self);
    /// Graceful stop (SIGTERM, then SIGKILL after the stop timeout) and no
    /// more restarts. Idempotent.
    fn stop(&self);
    /// Records at once what the target went through and has not recorded
    /// yet: a restart still being made, or one its engine made and the
    /// watcher has not looked at (its service may already answer). Before
    /// recovery is judged over, so that the history holds every change the
    /// judged window must follow.
    fn settle(&self) {}
    /// Runs a command in the target's context (its environment, templating).
    fn exec(
        &self,
        argv: &[String],
        timeout: std::time::Duration,
        kind: CommandKind,
    ) -> Result<reaper::Output, TargetError>;
    fn host_process(&self) -> Option<HostProcess>;
    /// The port allocated to the target (`{port}`).
    fn port(&self) -> u16;
    /// The address the target is reached at (`{host}`).
    fn host(&self) -> std::net::IpAddr;
    fn data_dirs(&self) -> Vec<PathBuf>;

    /// A command of the target's (a hook, a step) with its placeholders
    /// filled in, as it runs: what messages about it show.
    fn render(&self, argv: &[String]) -> Vec<String> {
        argv.to_vec()
    }

    /// The target's (first) data dir, canonical: where faults and
    /// procedure steps act.
    fn data_dir(&self) -> Result<PathBuf, crate::confine::Refusal> {
        let dir = self
            .data_dirs()
            .into_iter()
            .next()
            .ok_or_else(|| crate::confine::Refusal(format!("target `{}` has no data dir", self.name())))?;
        dir.canonicalize().map_err(|e| crate::confine::Refusal(format!("data dir {}: {e}", dir.display())))
    }
    /// Takes the target off its network (containers only), until
    /// [`Target::reconnect`].
    fn disconnect(&self) -> Result<(), TargetError> {
        Err(TargetError::Unsupported { target: self.name().to_string(), what: "network disconnect" })
    }
    fn reconnect(&self) -> Result<(), TargetError> {
        Err(TargetError::Unsupported { target: self.name().to_string(), what: "network reconnect" })
    }
    /// The memory and CPU limits the container engine keeps for the target
    /// (containers only: a process target is limited through a cgroup).
    fn engine_limits(&self) -> Result<crate::engine::Limits, TargetError> {
        Err(TargetError::Unsupported { target: self.name().to_string(), what: "engine limits" })
    }
    /// Sets them; they hold across the container's restarts.
    fn set_engine_limits(&self, _limits: crate::engine::Limits) -> Result<(), TargetError> {
        Err(TargetError::Unsupported { target: self.name().to_string(), what: "engine limits" })
    }
    /// The last lines the target printed (stdout and stderr of its latest
    /// incarnations), for reports of failures.
    fn last_log_lines(&self, n: usize) -> Vec<String>;
    /// For a target on a remote host: the host, and how far off the times
    /// its agent reports may be on this node's clock.
    fn remote_clock(&self) -> Option<(String, std::time::Duration)> {
        None
    }
    /// The target as its host's agent runs it, for a target on a remote
    /// host: faults whose code runs there go through it.
    fn remote(&self) -> Option<&remote::RemoteTarget> {
        None
    }
    /// A pod target: faults through the Kubernetes API go through it.
    fn pod(&self) -> Option<&pod::PodTarget> {
        None
    }
}

/// Signals every process `walk` visits, walking again until it visits no
/// process not yet reached (one may fork meanwhile). Each is signalled as
/// soon as it is found, through a pidfd opened while its start time still
/// matched, so no signal reaches a process that reused its pid. `group` (a
/// group leader's pid and start time) is signalled first and at once
/// (`killpg` is atomic, and a child being forked gets it too), if the leader
/// is still that process; its members are not signalled twice. A SIGKILL
/// stops them all first, so that they die as at one instant: no PostgreSQL
/// backend commits after its postmaster died. Returns when the last of them
/// was signalled (the fault is in full effect from then on: found one by
/// one, the first may precede the last by milliseconds), and how many were
/// reached.
pub(crate) fn signal_every(
    walk: impl Fn(&mut dyn FnMut(i32, procfs::ProcStat)),
    signal: Signal,
    group: Option<(i32, u64)>,
) -> (Instant, usize) {
    let first = if signal == Signal::SIGKILL { Signal::SIGSTOP } else { signal };
    let group = group.filter(|(leader, start_time)| procfs::is_same_live_process(*leader, *start_time)).map(|g| g.0);
    let mut at = Instant::now();
    if let Some(group) = group {
        let _ = nix::sys::signal::killpg(Pid::from_raw(group), first);
    }
    let mut reached: Vec<((i32, u64), Option<OwnedFd>)> = Vec::new();
    for _ in 0..16 {
        let before = reached.len();
        walk(&mut |pid, s| {
            if reached.iter().any(|(p, _)| *p == (pid, s.start_time)) {
                return;
            }
            let fd = pidfd(pid, s.start_time);
            // A second SIGSTOP is harmless; a second SIGHUP may not be.
            if first == Signal::SIGSTOP || Some(s.pgrp) != group {
                send(fd.as_ref(), first);
            }
            at = Instant::now();
            reached.push(((pid, s.start_time), fd));
        });
        if reached.len() == before {
            break;
        }
    }
    if first != signal {
        // The leader is stopped, so its group id cannot have been reused.
        if let Some(group) = group {
            let _ = nix::sys::signal::killpg(Pid::from_raw(group), signal);
        }
        for (_, fd) in &reached {
            send(fd.as_ref(), signal);
        }
    }
    (at, reached.len())
}

/// A pidfd for `pid` if it is still the process that started at `start_time`
/// once the fd is open (from then on the fd names that process only).
fn pidfd(pid: i32, start_time: u64) -> Option<OwnedFd> {
    let fd = rustix::process::pidfd_open(rustix::process::Pid::from_raw(pid)?, rustix::process::PidfdFlags::empty());
    fd.ok().filter(|_| procfs::is_same_live_process(pid, start_time))
}

fn send(fd: Option<&OwnedFd>, signal: Signal) {
    if let (Some(fd), Some(signal)) = (fd, rustix::process::Signal::from_named_raw(signal as i32)) {
        let _ = rustix::process::pidfd_send_signal(fd, signal);
    }
}

/// The port target `t`'s probe reaches (`allocated` for `{port}`), if
/// something already holds it at `address`: the probe would measure that,
/// not the target. Here, and on a host by its agent.
pub fn probe_port_taken(
    t: &crate::scenario::TargetPlan,
    address: std::net::IpAddr,
    allocated: u16,
) -> Option<(u16, std::io::Error)> {
    use crate::scenario::PortRef;
    let port = match t.probe.kind.port() {
        Some(PortRef::Fixed(p)) => *p,
        Some(PortRef::Allocated) => allocated,
        Some(PortRef::Proxy(_)) | None => return None,
    };
    std::net::TcpListener::bind((address, port)).err().map(|e| (port, e))
}

/// A port free on loopback now, for a target to bind, outside the kernel's
/// ephemeral range: a port from that range can be taken by any outgoing
/// connection (a probe's or the workload's, many at once while targets
/// start side by side) between the moment it was found free and the
/// moment the target binds it; one outside it only by a process that binds
/// it on purpose. Ports are handed out in turn from a random start, so that
/// the targets of a trial never get the same one before binding it. Below
/// 10000 are the well-known services' ports.
pub fn free_port() -> std::io::Result<u16> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let (low, high) = ephemeral_range();
    let ranges: Vec<(u32, u32)> =
        [(10_000, low.saturating_sub(1)), (high + 1, 65_535)].into_iter().filter(|(a, b)| a <= b).collect();
    let total: u32 = ranges.iter().map(|(a, b)| b - a + 1).sum();
    if total > 0 {
        let _ = NEXT.compare_exchange(u32::MAX, rand::random::<u32>() % total, Ordering::SeqCst, Ordering::SeqCst);
        for _ in 0..total.min(1000) {
            let port = nth_port(&ranges, NEXT.fetch_add(1, Ordering::SeqCst) % total);
            if std::net::TcpListener::bind(("127.0.0.1", port as u16)).is_ok() {
                return Ok(port as u16);
            }
        }
    }
    // Every port outside the range is taken (or there is none): the kernel's
    // choice, as a last resort.
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The `n`th port of `ranges` (inclusive bounds), counted across them.
fn nth_port(ranges: &[(u32, u32)], mut n: u32) -> u32 {
    for (low, high) in ranges {
        let len = high - low + 1;
        if n < len {
            return low + n;
        }
        n -= len;
    }
    unreachable!("n is below the ranges' total")
}

/// The kernel's range of ports for outgoing connections (Linux's default
/// if it cannot be read).
fn ephemeral_range() -> (u32, u32) {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap_or_default();
    let mut bounds = text.split_whitespace().filter_map(|n| n.parse().ok());
    match (bounds.next(), bounds.next()) {
        (Some(low), Some(high)) if low <= high => (low, high),
        _ => (32_768, 60_999),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Target ports come from outside the range outgoing connections take
    /// theirs from, and a run never hands out the same one twice in a row
    /// of targets (the kernel's port 0 gave ports of that range, which a
    /// probe's connection could take before the target bound it).
    #[test]
    fn target_ports_are_outside_the_ephemeral_range_and_distinct() {
        let (low, high) = ephemeral_range();
        let ports: Vec<u16> = (0..64).map(|_| free_port().unwrap()).collect();
        for port in &ports {
            assert!(!(low..=high).contains(&(*port as u32)), "{port} is in {low}-{high}");
            assert!(*port >= 10_000, "{port}");
        }
        let distinct: std::collections::HashSet<_> = ports.iter().collect();
        assert_eq!(distinct.len(), ports.len(), "{ports:?}");
    }

    #[test]
    fn the_nth_port_counts_across_ranges() {
        let ranges = [(10, 12), (20, 21)];
        let all: Vec<u32> = (0..5).map(|n| nth_port(&ranges, n)).collect();
        assert_eq!(all, [10, 11, 12, 20, 21]);
    }
}
