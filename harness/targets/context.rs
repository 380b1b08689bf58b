//! What every backend shares: the context a target lives in for one
//! trial, its template variables, and how commands on the harness's side
//! (hooks, recovery steps, command faults and probes) are built, journaled
//! and judged. A backend implements only what differs.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::reaper::{self, Exit};
use super::{procfs, CommandKind, HostProcess, Target, TargetError};
use crate::history::{EventKind, Recorder};
use crate::journal::{Entry, Journal};
use crate::scenario::{template, TargetPlan};

/// Where a target lives in one trial.
pub struct TargetContext {
    pub trial: u32,
    pub run_dir: PathBuf,
    pub trial_dir: PathBuf,
    pub port: u16,
    pub recorder: Recorder,
    pub journal: Arc<Journal>,
    /// The port of each proxy of the trial, for `{proxy.NAME}`.
    pub proxy_ports: Vec<(String, u16)>,
    /// The target's network namespace, if it has one of its own.
    pub namespace: Option<String>,
    /// Where the target is reached (`{host}`), and the other targets
    /// (`{host.NAME}`).
    pub host: std::net::IpAddr,
    pub hosts: Vec<(String, std::net::IpAddr)>,
    /// Every target's port (`{port.NAME}`).
    pub ports: Vec<(String, u16)>,
    /// The scenario's directory (`{scenario_dir}`).
    pub scenario_dir: PathBuf,
    /// libfaketime and the control file a `clock` fault rewrites, when the
    /// scenario has one on this target.
    pub faketime: Option<(PathBuf, PathBuf)>,
}

impl TargetContext {
    /// Journals and records a new incarnation of `target`, begun at `at`
    /// (taken by the caller before this: the journal's fsync may take
    /// milliseconds on a busy disk, and the incarnation is not that late);
    /// returns it.
    pub(crate) fn record_start(&self, target: &str, incarnation: u32, pid: i32, at: Instant) -> HostProcess {
        let start_time = procfs::stat(pid).map_or(0, |s| s.start_time);
        let _ = self.journal.note(&Entry::TargetStarted { trial: self.trial, target: target.into(), pid, start_time });
        self.recorder.record_at(at, EventKind::TargetStarted { target: target.into(), incarnation, pid });
        HostProcess { pid, start_time, incarnation }
    }

    /// Journals a command started for `target` (a hook, a recovery step),
    /// so that cleanup stops it and its group if the harness dies.
    pub(crate) fn record_command(&self, target: &str, pid: i32) {
        let start_time = procfs::stat(pid).map_or(0, |s| s.start_time);
        let _ = self.journal.note(&Entry::CommandStarted { trial: self.trial, target: target.into(), pid, start_time });
    }

    /// Records the end of an incarnation, at `at` (journaled unsynced: see
    /// [`Journal::note`]).
    pub(crate) fn record_exit(&self, target: &str, process: HostProcess, status: String, at: Instant) {
        let (incarnation, pid) = (process.incarnation, process.pid);
        self.recorder.record_at(at, EventKind::TargetExited { target: target.into(), incarnation, pid, status });
        let _ = self.journal.note(&Entry::TargetExited { trial: self.trial, target: target.into(), pid });
    }

    /// The template variables of a target, as commands on the harness's
    /// side see them (`{data_dir}` is added by the backend, which knows
    /// where it is).
    pub(crate) fn vars(&self, plan: &TargetPlan) -> Vec<(String, String)> {
        let mut vars = vec![
            ("port".to_string(), self.port.to_string()),
            ("run_dir".to_string(), self.run_dir.display().to_string()),
            ("trial".to_string(), self.trial.to_string()),
            ("target".to_string(), plan.name.clone()),
            ("host".to_string(), self.host.to_string()),
            ("scenario_dir".to_string(), self.scenario_dir.display().to_string()),
        ];
        vars.extend(self.hosts.iter().map(|(name, ip)| (format!("host.{name}"), ip.to_string())));
        vars.extend(self.ports.iter().map(|(name, port)| (format!("port.{name}"), port.to_string())));
        // `{proxy.NAME}`: the ports of the run's proxies.
        vars.extend(self.proxy_ports.iter().map(|(name, port)| (format!("proxy.{name}"), port.to_string())));
        vars
    }

    /// A command on the harness's side for a target (its program, a hook,
    /// a recovery step, a command probe or fault): templated with `vars`,
    /// `crashlab` resolved to this very binary (so scenarios work from
    /// `cargo run` and after `cargo install` alike), the target's `env`
    /// set, run from the trial directory.
    pub(crate) fn command(&self, plan: &TargetPlan, vars: &[(String, String)], argv: &[String]) -> Command {
        let argv: Vec<String> = argv.iter().map(|a| template::render(a, vars)).collect();
        let program = if argv[0] == "crashlab" {
            std::env::current_exe().unwrap_or_else(|_| PathBuf::from("crashlab"))
        } else {
            PathBuf::from(&argv[0])
        };
        let mut command = Command::new(program);
        command.args(&argv[1..]).envs(plan.env.iter().map(|(k, v)| (k, template::render(v, vars))));
        command.current_dir(&self.trial_dir);
        command
    }

    /// Runs a command for `target` until it exits or `timeout`; a step (a
    /// hook, a recovery step, a command fault) is journaled with its pid
    /// before it can act.
    pub(crate) fn run(
        &self,
        target: &str,
        mut command: Command,
        timeout: Duration,
        kind: CommandKind,
    ) -> Result<reaper::Output, TargetError> {
        let program = command.get_program().to_string_lossy().into_owned();
        let journal = |pid| {
            if kind == CommandKind::Step {
                crate::crash_point::reached("command");
                self.record_command(target, pid)
            }
        };
        reaper::run_noting(&mut command, timeout, journal).map_err(|source| TargetError::Spawn {
            target: target.to_string(),
            program,
            source,
        })
    }
}

/// How long a `before_start` or `after_stop` hook may take.
pub const HOOK_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs a hook of `target`; a failure names the command, how it ended and
/// what it printed on stderr, whatever the backend.
pub fn run_hook(target: &dyn Target, argv: &[String]) -> Result<(), TargetError> {
    let output = target.exec(argv, HOOK_TIMEOUT, CommandKind::Step)?;
    if output.exit.is_some_and(Exit::success) {
        return Ok(());
    }
    let stderr = output.stderr.trim();
    Err(TargetError::Hook {
        target: target.name().to_string(),
        command: target.render(argv).join(" "),
        detail: format!(
            "{}{}",
            output.exit.map_or("did not finish".into(), |e| e.to_string()),
            if stderr.is_empty() { String::new() } else { format!(": {stderr}") }
        ),
    })
}
