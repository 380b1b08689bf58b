//! Waiting for child processes, as a child subreaper.
//!
//! The harness marks itself `PR_SET_CHILD_SUBREAPER`, so whatever its targets
//! spawn and abandon is re-parented to it instead of to init. One thread then
//! reaps every child with `waitpid(-1)`: an unreaped zombie still answers
//! `kill(pid, 0)` and looks alive to the next incarnation's lock checks.
//! Exit statuses of the processes the harness started are handed to whoever
//! waits for them; those of orphans are simply collected.
//!
//! Code that shares its process with other child-spawning code (a test
//! binary) must not reap everything; without [`become_subreaper`] each child
//! gets a thread of its own that waits for that pid only.

use std::collections::HashMap;
use std::io::{self, Read};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::{Condvar, Mutex, OnceLock, RwLock};
use std::thread;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
}

impl Exit {
    fn from_status(status: WaitStatus) -> Option<(Pid, Exit)> {
        match status {
            WaitStatus::Exited(pid, code) => Some((pid, Exit::Code(code))),
            WaitStatus::Signaled(pid, sig, _) => Some((pid, Exit::Signal(sig as i32))),
            _ => None,
        }
    }

    pub fn success(self) -> bool {
        self == Exit::Code(0)
    }
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exit::Code(c) => write!(f, "exit code {c}"),
            Exit::Signal(s) => match nix::sys::signal::Signal::try_from(*s) {
                Ok(sig) => write!(f, "killed by {}", sig.as_str()),
                Err(_) => write!(f, "killed by signal {s}"),
            },
        }
    }
}

struct Global {
    waiting: Mutex<HashMap<i32, Sender<Exit>>>,
    has_children: Condvar,
    /// Held shared by each spawn from before its fork to its registration
    /// in `waiting`, exclusively by the reaper before it looks a reaped pid
    /// up: a child that dies at once is still found, and targets started
    /// side by side spawn side by side (a spawn waits for its child's exec,
    /// a millisecond or more on a busy machine).
    spawning: RwLock<()>,
}

static GLOBAL: OnceLock<Global> = OnceLock::new();

pub use crate::journal::{run_token, RUN_TOKEN_VAR};

/// Makes this process a child subreaper and starts the one reaping thread.
/// Call once, early, from a binary that owns all of its children.
pub fn become_subreaper() -> io::Result<()> {
    nix::sys::prctl::set_child_subreaper(true).map_err(io::Error::from)?;
    let mut started = false;
    GLOBAL.get_or_init(|| {
        started = true;
        Global { waiting: Mutex::new(HashMap::new()), has_children: Condvar::new(), spawning: RwLock::new(()) }
    });
    if started {
        thread::Builder::new().name("reaper".into()).spawn(reap_forever)?;
    }
    Ok(())
}

fn reap_forever() {
    let global = GLOBAL.get().expect("set before the thread starts");
    loop {
        match waitpid(Pid::from_raw(-1), None) {
            Ok(status) => {
                if let Some((pid, exit)) = Exit::from_status(status) {
                    // Every spawn that forked before this reap has
                    // registered its child once this is held.
                    let registered = global.spawning.write().unwrap_or_else(|poisoned| poisoned.into_inner());
                    let tx = global.waiting.lock().unwrap().remove(&pid.as_raw());
                    drop(registered);
                    if let Some(tx) = tx {
                        let _ = tx.send(exit);
                    }
                }
            }
            Err(Errno::ECHILD) => {
                let waiting = global.waiting.lock().unwrap();
                let _ = global.has_children.wait_timeout(waiting, Duration::from_millis(200));
            }
            Err(Errno::EINTR) => {}
            Err(e) => {
                eprintln!("crashlab: waitpid failed: {e}");
                thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// Starts a command and returns it with a channel that yields its exit.
pub fn spawn(command: &mut Command) -> io::Result<(Child, Receiver<Exit>)> {
    if let Some(token) = run_token() {
        command.env(RUN_TOKEN_VAR, token);
    }
    spawn_as_is(command)
}

/// [`spawn`] for a process that lives as long as the run, not a trial:
/// without the run's token, so that the sweep at the end of each trial
/// leaves it (a link to a remote host). It must end by itself when the
/// harness does: when its stdin closes.
pub fn spawn_for_the_run(command: &mut Command) -> io::Result<(Child, Receiver<Exit>)> {
    command.env_remove(RUN_TOKEN_VAR);
    spawn_as_is(command)
}

fn spawn_as_is(command: &mut Command) -> io::Result<(Child, Receiver<Exit>)> {
    let (tx, rx) = channel();
    match GLOBAL.get() {
        Some(global) => {
            let spawning = global.spawning.read().unwrap_or_else(|poisoned| poisoned.into_inner());
            let child = command.spawn()?;
            global.waiting.lock().unwrap().insert(child.id() as i32, tx);
            drop(spawning);
            global.has_children.notify_all();
            Ok((child, rx))
        }
        None => {
            let child = command.spawn()?;
            let pid = Pid::from_raw(child.id() as i32);
            thread::spawn(move || loop {
                match waitpid(pid, None) {
                    Ok(status) => {
                        if let Some((_, exit)) = Exit::from_status(status) {
                            let _ = tx.send(exit);
                            return;
                        }
                    }
                    Err(Errno::EINTR) => {}
                    Err(_) => return,
                }
            });
            Ok((child, rx))
        }
    }
}

/// What a short command printed and how it ended.
#[derive(Debug, Clone)]
pub struct Output {
    pub exit: Option<Exit>,
    pub stdout: String,
    pub stderr: String,
    pub timed_out: bool,
}

/// Runs a command to completion (or kills it at `timeout`), capturing output.
pub fn run(command: &mut Command, timeout: Duration) -> io::Result<Output> {
    run_noting(command, timeout, |_| {})
}

/// [`run`], telling `started` the pid of the command (the leader of its
/// own process group) as soon as it exists, to journal it.
pub fn run_noting(command: &mut Command, timeout: Duration, started: impl FnOnce(i32)) -> io::Result<Output> {
    use std::os::unix::process::CommandExt;
    // Its own group, so that a timeout also ends whatever it started (which
    // would otherwise hold the pipes open).
    command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).process_group(0);
    let (mut child, exited) = spawn(command)?;
    started(child.id() as i32);
    let read = |mut pipe: Box<dyn Read + Send>| {
        thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let stdout = read(Box::new(child.stdout.take().expect("piped")));
    let stderr = read(Box::new(child.stderr.take().expect("piped")));
    let (exit, timed_out) = match exited.recv_timeout(timeout) {
        Ok(exit) => (Some(exit), false),
        Err(RecvTimeoutError::Timeout) => {
            let _ = nix::sys::signal::killpg(Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGKILL);
            (exited.recv().ok(), true)
        }
        Err(RecvTimeoutError::Disconnected) => (None, false),
    };
    Ok(Output { exit, stdout: stdout.join().unwrap_or_default(), stderr: stderr.join().unwrap_or_default(), timed_out })
}
