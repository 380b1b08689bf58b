//! What the control node and a host's `crashlab agent` say to each other:
//! JSON lines over the agent's stdin and stdout, one request or answer a
//! line. Small and typed on purpose; the first exchange compares the
//! protocol versions, and a mismatch is refused with both named.

use serde::{Deserialize, Serialize};

use crate::history::EventKind;
use crate::scenario::SignalScope;
use crate::targets::HostProcess;

/// Bumped whenever a message changes shape or meaning.
pub const PROTOCOL: u32 = 1;

/// The agent's run directory, under its directory on the host: journal,
/// scenario, trial directories (targets' data and logs).
pub const RUN_SUBDIR: &str = "run";

/// Where the agents' directories are, relative to the SSH user's home
/// (where a session starts): not /tmp, where another user could own the
/// directory the binary is copied into and swap it before it runs.
pub const AGENTS_DIR: &str = ".crashlab-agents";

/// The agent's directory of run `token` on host `host`.
pub fn agent_dir(token: &str, host: &str) -> String {
    format!("{AGENTS_DIR}/{token}-{host}")
}

/// Whether `dir` has the shape [`agent_dir`] gives: what cleanup accepts
/// from a journal before it puts it into a command on the host.
pub fn is_agent_dir(dir: &str) -> bool {
    dir.strip_prefix(AGENTS_DIR)
        .and_then(|d| d.strip_prefix('/'))
        .is_some_and(|name| !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'))
}

/// A request from the control node; the agent answers each with a
/// [`Reply`] of the same `id`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Request {
    pub id: u64,
    #[serde(flatten)]
    pub op: Op,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// The first request: the control node's protocol and version.
    Hello {
        protocol: u32,
        version: String,
    },
    /// The agent's monotonic clock now, to date what it reports.
    Clock,
    /// Makes the target `target` of the scenario for trial `trial` (a
    /// process target, run by the agent as the control node would run it
    /// locally) and starts it.
    Start(Placement),
    Signal {
        trial: u32,
        target: String,
        signal: i32,
        scope: SignalScope,
    },
    Pause {
        trial: u32,
        target: String,
    },
    Resume {
        trial: u32,
        target: String,
        which: HostProcess,
    },
    Restart {
        trial: u32,
        target: String,
    },
    Hold {
        trial: u32,
        target: String,
        signal: i32,
    },
    Release {
        trial: u32,
        target: String,
    },
    /// Graceful stop; the target is forgotten.
    Stop {
        trial: u32,
        target: String,
    },
    Exec {
        trial: u32,
        target: String,
        argv: Vec<String>,
        timeout_ms: u64,
        step: bool,
    },
    Current {
        trial: u32,
        target: String,
    },
    Logs {
        trial: u32,
        target: String,
        lines: usize,
    },
    /// Injects a fault of the scenario there, with the fault code this
    /// node would run locally; its guard stays there until `heal`.
    Inject(Injection),
    /// Drops packets on this host (`iptables -I` of each rule, marked with
    /// the agent's token and the fault) for fault `fault`, a partition,
    /// until `unblock`.
    Block {
        trial: u32,
        fault: usize,
        rules: Vec<Vec<String>>,
    },
    /// Deletes the rules of `block`, saying how many packets they dropped.
    Unblock {
        trial: u32,
        fault: usize,
    },
    /// Reads what the heal of fault `fault` will report, while the target
    /// still runs.
    Look {
        trial: u32,
        fault: usize,
    },
    Heal {
        trial: u32,
        fault: usize,
    },
}

/// A target of the scenario to run there for a trial, with the values its
/// command's placeholders take (`{port}`, `{host}`, `{host.NAME}`,
/// `{port.NAME}`), as this node gave them.
#[derive(Debug, Serialize, Deserialize)]
pub struct Placement {
    pub trial: u32,
    /// The scenario's text, which the agent compiles as this node did.
    pub scenario: String,
    pub target: String,
    pub port: u16,
    pub host: std::net::IpAddr,
    pub hosts: Vec<(String, std::net::IpAddr)>,
    pub ports: Vec<(String, u16)>,
}

/// The scenario's fault `fault` (the menu's `drawn` kind and target, if
/// it is a menu) on `target`, as a trial injects it.
#[derive(Debug, Serialize, Deserialize)]
pub struct Injection {
    pub trial: u32,
    pub fault: usize,
    pub target: String,
    pub drawn: Option<(usize, usize)>,
    pub seed: u64,
    pub scheduled_ms: f64,
    pub chosen: Option<String>,
}

/// What the agent writes: an answer to a request, or an event of a trial
/// as it happens, dated on the agent's monotonic clock.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "message", rename_all = "snake_case")]
pub enum Message {
    Reply {
        id: u64,
        #[serde(flatten)]
        answer: Answer,
    },
    Event {
        trial: u32,
        /// CLOCK_MONOTONIC of the agent's host, in nanoseconds.
        at_ns: u64,
        kind: EventKind,
    },
    /// From `crashlab host-link`: the link could not be made (the copy or
    /// the agent's start failed); nothing follows.
    Failed { what: String },
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "answer", rename_all = "snake_case")]
pub enum Answer {
    Hello {
        protocol: u32,
        version: String,
        pid: i32,
        start_time: u64,
    },
    Clock {
        at_ns: u64,
    },
    Done,
    Process {
        process: Option<HostProcess>,
    },
    /// A signal's effect: the incarnation, when the last process got it
    /// (agent's clock), how many processes got it.
    Signalled {
        process: HostProcess,
        at_ns: u64,
        processes: Option<usize>,
    },
    Output {
        exit: Option<ExitStatus>,
        stdout: String,
        stderr: String,
        timed_out: bool,
    },
    Logs {
        lines: Vec<String>,
    },
    /// When a change took effect there (the agent's clock).
    At {
        at_ns: u64,
    },
    /// Packets a partition's rules dropped there.
    Dropped {
        packets: u64,
    },
    Error {
        error: String,
    },
}

/// How a command ended, as [`crate::targets::reaper::Exit`].
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExitStatus {
    Code(i32),
    Signal(i32),
}

/// CLOCK_MONOTONIC now, in nanoseconds: the clock `Instant` reads on Linux.
pub fn monotonic_ns() -> u64 {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).expect("CLOCK_MONOTONIC is always there");
    t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A journal names the agent's directory; cleanup puts it into a
    /// command on the host only if it has the shape the run gives it.
    #[test]
    fn only_an_agent_directory_passes_for_one() {
        assert!(is_agent_dir(&agent_dir("0a1b2c3d4e5f", "db-1")));
        for hostile in [
            ".crashlab-agents/x; rm -rf /",
            ".crashlab-agents/../etc",
            ".crashlab-agents/",
            "/tmp/crashlab-agents/x",
            ".crashlab-agents/x/y",
            ".crashlab-agents/$(reboot)",
        ] {
            assert!(!is_agent_dir(hostile), "{hostile}");
        }
    }
}
