//! The remote backend: a process or container target on a `[host.NAME]`,
//! run there by the host's `crashlab agent` with the process backend (or
//! the container backend, in that host's engine), driven from here.
//! The workload and the probes stay on the control node, so RTO and RPO
//! keep one clock; what the agent reports (a target's start, its exit, the
//! moment a signal reached it) is brought onto that clock, within half the
//! round trip measured to that agent.

pub mod link;
pub mod protocol;
pub mod relay;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::Signal;

use super::reaper::{self, Exit};
use super::{CommandKind, HostProcess, Signalled, Target, TargetError};
use crate::journal::Journal;
use crate::scenario::{Plan, SignalScope, TargetPlan};
use link::{AgentLink, LinkError};
use protocol::{Answer, ExitStatus, Injection, Op, Placement};

/// The agents of a run, one per host, started before the first trial.
pub struct Hosts {
    pub links: Vec<Arc<AgentLink>>,
}

impl Hosts {
    /// Reaches every host first (so that an unreachable host, a refused
    /// key or a host key mismatch stops the run before anything is made
    /// anywhere), then starts an agent on each.
    pub fn start(plan: &Plan, run_dir: &std::path::Path, journal: &Journal) -> Result<Option<Hosts>, LinkError> {
        if plan.hosts.is_empty() {
            return Ok(None);
        }
        // Side by side: each host is a connection (and a copy) of its own.
        let checked: Vec<_> = std::thread::scope(|scope| {
            let checks: Vec<_> = plan.hosts.iter().map(|h| scope.spawn(|| AgentLink::check(h))).collect();
            checks.into_iter().map(|c| c.join().expect("a check does not panic")).collect()
        });
        checked.into_iter().collect::<Result<Vec<()>, _>>()?;
        let token = reaper::run_token().unwrap_or_default();
        let token = &token[..token.len().min(12)];
        let opened: Vec<_> = std::thread::scope(|scope| {
            let opening: Vec<_> = plan
                .hosts
                .iter()
                .map(|host| {
                    let log = run_dir.join(format!("agent-{}.log", host.name));
                    scope.spawn(move || AgentLink::open(host, token, journal, &log))
                })
                .collect();
            opening.into_iter().map(|o| o.join().expect("an opening does not panic")).collect()
        });
        let links = opened.into_iter().map(|l| l.map(Arc::new)).collect::<Result<Vec<_>, _>>()?;
        Ok(Some(Hosts { links }))
    }

    /// The first agent that stopped answering, and why.
    pub fn gone(&self) -> Option<LinkError> {
        self.links.iter().find_map(|l| l.gone())
    }

    pub fn link(&self, host: &str) -> Option<&Arc<AgentLink>> {
        self.links.iter().find(|l| l.host.name == host)
    }
}

/// A process target on a host.
pub struct RemoteTarget {
    name: String,
    trial: u32,
    recorder: crate::history::Recorder,
    port: u16,
    scenario: String,
    /// Every target's address and port, for `{host.NAME}` and `{port.NAME}`.
    hosts: Vec<(String, std::net::IpAddr)>,
    ports: Vec<(String, u16)>,
    link: Arc<AgentLink>,
    container: bool,
}

impl RemoteTarget {
    /// `scenario`: the scenario's text, which the agent compiles as this
    /// node did.
    pub fn new(plan: &TargetPlan, ctx: &super::TargetContext, scenario: String, link: Arc<AgentLink>) -> RemoteTarget {
        let (trial, port, recorder) = (ctx.trial, ctx.port, ctx.recorder.clone());
        let (hosts, ports) = (ctx.hosts.clone(), ctx.ports.clone());
        let container = plan.kind == crate::scenario::TargetKind::Container;
        RemoteTarget { name: plan.name.clone(), trial, recorder, port, scenario, hosts, ports, link, container }
    }

    fn call(&self, op: Op, extra: Duration) -> Result<Answer, TargetError> {
        self.link.call(op, extra).map_err(|e| self.error(e.to_string()))
    }

    fn error(&self, what: String) -> TargetError {
        TargetError::Io { target: self.name.clone(), source: std::io::Error::other(what) }
    }

    fn process(&self, op: Op) -> Result<Option<HostProcess>, TargetError> {
        match self.call(op, Duration::ZERO)? {
            Answer::Process { process } => Ok(process),
            other => Err(self.error(format!("unexpected answer {other:?}"))),
        }
    }

    fn done(&self, op: Op) -> Result<(), TargetError> {
        self.call(op, Duration::ZERO).map(drop)
    }

    fn ids(&self) -> (u32, String) {
        (self.trial, self.name.clone())
    }

    /// Has the agent inject fault `fault` of the scenario into this target
    /// (see [`Injection`]).
    pub fn inject(
        &self,
        fault: usize,
        drawn: Option<(usize, usize)>,
        seed: u64,
        scheduled_ms: f64,
        chosen: Option<String>,
    ) -> Result<(), TargetError> {
        let (trial, target) = self.ids();
        self.done(Op::Inject(Injection { trial, fault, target, drawn, seed, scheduled_ms, chosen }))
    }

    /// Whether it is a container in its host's engine.
    pub fn is_container(&self) -> bool {
        self.container
    }

    /// The name of the host it runs on.
    pub fn host_name(&self) -> &str {
        &self.link.host.name
    }

    /// Sets a partition's rules on this target's host; when they took
    /// effect, on this node's clock.
    pub fn block(&self, trial: u32, fault: usize, rules: Vec<Vec<String>>) -> Result<std::time::Instant, TargetError> {
        match self.call(Op::Block { trial, fault, rules }, Duration::ZERO)? {
            Answer::At { at_ns } => Ok(self.link.instant(at_ns)),
            other => Err(self.error(format!("unexpected answer {other:?}"))),
        }
    }

    /// Deletes them; how many packets they dropped.
    pub fn unblock(&self, trial: u32, fault: usize) -> Result<u64, TargetError> {
        match self.call(Op::Unblock { trial, fault }, Duration::ZERO)? {
            Answer::Dropped { packets } => Ok(packets),
            other => Err(self.error(format!("unexpected answer {other:?}"))),
        }
    }

    pub fn look(&self, trial: u32, fault: usize) -> Result<(), TargetError> {
        self.done(Op::Look { trial, fault })
    }

    /// Heals fault `fault` there (its heal can wait for a stop: a hog's).
    pub fn heal(&self, trial: u32, fault: usize) -> Result<(), TargetError> {
        self.call(Op::Heal { trial, fault }, Duration::from_secs(30)).map(drop)
    }
}

impl Target for RemoteTarget {
    fn name(&self) -> &str {
        &self.name
    }

    fn start(&self) -> Result<(), TargetError> {
        self.link.attach(self.trial, self.recorder.clone());
        let (trial, target) = self.ids();
        self.done(Op::Start(Placement {
            trial,
            scenario: self.scenario.clone(),
            target,
            port: self.port,
            host: self.host(),
            hosts: self.hosts.clone(),
            ports: self.ports.clone(),
        }))
    }

    fn signal(&self, signal: Signal, scope: SignalScope) -> Result<Signalled, TargetError> {
        let (trial, target) = self.ids();
        match self.call(Op::Signal { trial, target, signal: signal as i32, scope }, Duration::ZERO)? {
            Answer::Signalled { process, at_ns, processes } => {
                Ok(Signalled { process, at: self.link.instant(at_ns), processes })
            }
            other => Err(self.error(format!("unexpected answer {other:?}"))),
        }
    }

    /// As the backend there: a container's main process, a process's group.
    fn default_scope(&self) -> SignalScope {
        if self.container {
            SignalScope::Main
        } else {
            SignalScope::Group
        }
    }

    fn pause(&self) -> Result<HostProcess, TargetError> {
        let (trial, target) = self.ids();
        self.process(Op::Pause { trial, target })?.ok_or_else(|| TargetError::NotRunning { target: self.name.clone() })
    }

    fn resume(&self, which: HostProcess) -> Result<(), TargetError> {
        let (trial, target) = self.ids();
        self.done(Op::Resume { trial, target, which })
    }

    fn restart(&self) -> Result<HostProcess, TargetError> {
        let (trial, target) = self.ids();
        self.process(Op::Restart { trial, target })?
            .ok_or_else(|| TargetError::NotRunning { target: self.name.clone() })
    }

    fn hold(&self, signal: Signal) -> Option<HostProcess> {
        let (trial, target) = self.ids();
        self.process(Op::Hold { trial, target, signal: signal as i32 }).ok().flatten()
    }

    fn release(&self) {
        let (trial, target) = self.ids();
        let _ = self.done(Op::Release { trial, target });
    }

    fn stop(&self) {
        let (trial, target) = self.ids();
        let _ = self.done(Op::Stop { trial, target });
    }

    fn exec(&self, argv: &[String], timeout: Duration, kind: CommandKind) -> Result<reaper::Output, TargetError> {
        let (trial, target) = self.ids();
        let op = Op::Exec {
            trial,
            target,
            argv: argv.to_vec(),
            timeout_ms: timeout.as_millis() as u64,
            step: kind == CommandKind::Step,
        };
        match self.call(op, timeout)? {
            Answer::Output { exit, stdout, stderr, timed_out } => Ok(reaper::Output {
                exit: exit.map(|e| match e {
                    ExitStatus::Code(c) => Exit::Code(c),
                    ExitStatus::Signal(s) => Exit::Signal(s),
                }),
                stdout,
                stderr,
                timed_out,
            }),
            other => Err(self.error(format!("unexpected answer {other:?}"))),
        }
    }

    fn host_process(&self) -> Option<HostProcess> {
        let (trial, target) = self.ids();
        self.process(Op::Current { trial, target }).ok().flatten()
    }

    fn port(&self) -> u16 {
        self.port
    }

    fn host(&self) -> std::net::IpAddr {
        self.link.address
    }

    /// On the host, not here: nothing of this node's to damage.
    fn data_dirs(&self) -> Vec<PathBuf> {
        Vec::new()
    }

    fn remote(&self) -> Option<&RemoteTarget> {
        Some(self)
    }

    fn remote_clock(&self) -> Option<(String, Duration)> {
        Some((self.link.host.name.clone(), self.link.round_trip / 2))
    }

    fn last_log_lines(&self, n: usize) -> Vec<String> {
        let (trial, target) = self.ids();
        match self.call(Op::Logs { trial, target, lines: n }, Duration::ZERO) {
            Ok(Answer::Logs { lines }) => lines,
            _ => Vec::new(),
        }
    }
}
