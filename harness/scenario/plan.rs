//! The validated, immutable plan of a scenario. Only [`super::compile`] makes one.

use std::path::PathBuf;
use std::time::Duration;

use crate::check::expect::Expectation;
use crate::duration::TimeSpec;

#[derive(Debug, Clone)]
pub struct Plan {
    pub name: String,
    pub description: String,
    /// Where the scenario came from (for messages and for `analyze`).
    pub source_path: PathBuf,
    pub targets: Vec<TargetPlan>,
    pub workload: Option<WorkloadPlan>,
    pub faults: Vec<FaultPlan>,
    pub expectations: Vec<Expectation>,
    pub trials: TrialsPlan,
}

impl Plan {
    pub fn target(&self, name: &str) -> Option<&TargetPlan> {
        self.targets.iter().find(|t| t.name == name)
    }
}

#[derive(Debug, Clone)]
pub struct TargetPlan {
    pub name: String,
    /// Program and arguments; `{port}`, `{data_dir}`, `{run_dir}` and
    /// `{trial}` are filled in per trial. A program named `crashlab` is this
    /// very binary.
    pub command: Vec<String>,
    pub env: Vec<(String, String)>,
    pub restart: RestartPolicy,
    /// How long a graceful stop waits after SIGTERM before SIGKILL.
    pub stop_timeout: Duration,
    pub probe: ProbePlan,
    /// Commands run once per trial before the first start / after the last stop.
    pub before_start: Vec<Vec<String>>,
    pub after_stop: Vec<Vec<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartPolicy {
    /// The harness's supervisor starts the target again after it exits.
    Always { delay: Duration },
    /// An exit is final (only a `restart` fault starts it again).
    Never,
}

#[derive(Debug, Clone)]
pub struct ProbePlan {
    pub kind: ProbeKind,
    pub interval: Duration,
    pub timeout: Duration,
    /// Consecutive successes that make a sustained healthy window.
    pub healthy_after: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeKind {
    /// A TCP connect succeeds.
    Tcp { port: PortRef },
    /// An HTTP GET answers with `status` (and a body containing a text).
    Http { port: PortRef, path: String, status: u16, body_contains: Option<String> },
    /// A command exits 0.
    Command { argv: Vec<String> },
    /// demo-kv answers PING with PONG.
    DemoKv { port: PortRef },
}

/// A port: the target's allocated `{port}` or a fixed number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortRef {
    Allocated,
    Fixed(u16),
}

#[derive(Debug, Clone)]
pub struct WorkloadPlan {
    pub kind: WorkloadKind,
    pub target: String,
    /// Operations per second, open loop: issued on schedule whether or not
    /// earlier ones have finished (up to `connections` in flight).
    pub rate: u32,
    pub duration: Duration,
    pub connections: u32,
    /// An op that has no answer by then has an unknown outcome.
    pub timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkloadKind {
    DemoKv,
}

#[derive(Debug, Clone)]
pub struct FaultPlan {
    pub kind: FaultKind,
    pub target: String,
    pub at: TimeSpec,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// Send a signal to the target's process group.
    Kill { signal: nix::sys::signal::Signal },
    /// SIGSTOP, then SIGCONT after `duration`.
    Pause { duration: Duration },
    /// Graceful stop, then start (whatever the restart policy).
    Restart,
}

impl FaultKind {
    pub fn name(&self) -> &'static str {
        match self {
            FaultKind::Kill { .. } => "kill",
            FaultKind::Pause { .. } => "pause",
            FaultKind::Restart => "restart",
        }
    }
}

#[derive(Debug, Clone)]
pub struct TrialsPlan {
    pub count: u32,
    pub seed: Option<u64>,
    /// How long a target may take to become healthy at the start of a trial.
    pub startup_timeout: Duration,
    /// How long after the last fault (or the end of the workload) the harness
    /// waits for sustained health before it declares "never recovered".
    pub recovery_timeout: Duration,
}
