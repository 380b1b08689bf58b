//! Targets: the services under test. A [`Target`] starts, stops, signals and
//! supervises one service; teardown is idempotent. Process targets live in
//! [`process`]; every backend must pass the same conformance tests.

pub mod container;
pub mod process;
pub mod procfs;
pub mod reaper;

use std::path::PathBuf;

use nix::sys::signal::Signal;

pub use process::ProcessTarget;

/// A process the run started: pid plus start time, so it cannot be confused
/// with a later process that reuses the pid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
    #[error("target `{target}`: {what} is for container targets only")]
    Unsupported { target: String, what: &'static str },
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
    /// Sends a signal to the current incarnation's process group.
    fn signal(&self, signal: Signal) -> Result<HostProcess, TargetError>;
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
    /// Takes the target off its network (containers only), until
    /// [`Target::reconnect`].
    fn disconnect(&self) -> Result<(), TargetError> {
        Err(TargetError::Unsupported { target: self.name().to_string(), what: "network disconnect" })
    }
    fn reconnect(&self) -> Result<(), TargetError> {
        Err(TargetError::Unsupported { target: self.name().to_string(), what: "network reconnect" })
    }
    /// The last lines the target printed (stdout and stderr of its latest
    /// incarnations), for reports of failures.
    fn last_log_lines(&self, n: usize) -> Vec<String>;
}

/// Asks the kernel for a free port on loopback. Another process may take it
/// before the target binds it; the start-up probe would then fail loudly.
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}
