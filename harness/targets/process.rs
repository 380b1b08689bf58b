//! The process backend: a target is a local program, supervised by a thread
//! that restarts it per policy. Each incarnation leads its own process group
//! (so signals reach everything it spawned) and writes its output to
//! `logs/<target>.<n>.log` in the trial directory.

use std::fs::{self, File};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

use super::context::{run_hook, TargetContext};
use super::reaper::{self, Exit};
use super::{procfs, CommandKind, HostProcess, Signalled, Target, TargetError};
use crate::scenario::template;
use crate::scenario::{RestartPolicy, SignalScope, TargetPlan};

/// Marks every process of one incarnation (`TRIAL.TARGET.N`), with the run's
/// token: how a process reparented to the harness is still known as part of
/// the incarnation's tree.
pub const INCARNATION_VAR: &str = "CRASHLAB_INCARNATION";

pub struct ProcessTarget {
    inner: Arc<Inner>,
    supervisor: Mutex<Option<JoinHandle<()>>>,
}

struct Inner {
    plan: TargetPlan,
    ctx: TargetContext,
    data_dir: PathBuf,
    log_dir: PathBuf,
    vars: Vec<(String, String)>,
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Default)]
struct State {
    current: Option<HostProcess>,
    incarnations: u32,
    stopping: bool,
    restart_requested: bool,
    /// Held down by a fault or a recovery step: no restarts until released.
    held: bool,
}

impl ProcessTarget {
    pub fn new(plan: &TargetPlan, ctx: TargetContext) -> Result<ProcessTarget, TargetError> {
        let mut vars = ctx.vars(plan);
        let data_dir = match &plan.data_dir {
            Some(dir) => PathBuf::from(template::render(dir, &vars)),
            None => ctx.trial_dir.join("data").join(&plan.name),
        };
        vars.push(("data_dir".to_string(), data_dir.display().to_string()));
        let log_dir = ctx.trial_dir.join("logs");
        let io = |source| TargetError::Io { target: plan.name.clone(), source };
        fs::create_dir_all(&data_dir).map_err(io)?;
        fs::create_dir_all(&log_dir).map_err(io)?;
        let inner = Inner {
            plan: plan.clone(),
            ctx,
            data_dir,
            log_dir,
            vars,
            state: Mutex::default(),
            changed: Condvar::new(),
        };
        Ok(ProcessTarget { inner: Arc::new(inner), supervisor: Mutex::new(None) })
    }
}

impl Inner {
    fn name(&self) -> &str {
        &self.plan.name
    }

    fn command(&self, argv: &[String]) -> Command {
        self.ctx.command(&self.plan, &self.vars, argv)
    }

    fn spawn(&self, state: &mut State) -> Result<Receiver<Exit>, TargetError> {
        let incarnation = state.incarnations + 1;
        let log_path = self.log_dir.join(format!("{}.{incarnation}.log", self.name()));
        let io = |source| TargetError::Io { target: self.name().to_string(), source };
        let log = File::create(&log_path).map_err(io)?;
        let mut command = self.command(&self.plan.command);
        command.env(INCARNATION_VAR, self.incarnation_mark(incarnation));
        if let Some((library, file)) = &self.ctx.faketime {
            super::faketime::preload(&mut command, library, file);
        }
        if let Some(ns) = &self.ctx.namespace {
            // `ip netns exec` enters the namespace and execs the target in
            // place: same pid, same process group.
            let mut wrapped = Command::new("ip");
            wrapped.args(["netns", "exec", ns]).arg(command.get_program()).args(command.get_args());
            wrapped.envs(command.get_envs().filter_map(|(k, v)| v.map(|v| (k.to_owned(), v.to_owned()))));
            if let Some(dir) = command.get_current_dir() {
                wrapped.current_dir(dir);
            }
            command = wrapped;
        }
        command.stdin(Stdio::null()).stdout(log.try_clone().map_err(io)?).stderr(log).process_group(0);
        // Dated when the spawn was asked for: it cannot have begun before,
        // and the spawn (fork, exec) takes about a millisecond.
        let asked = Instant::now();
        let (child, exited) = reaper::spawn(&mut command).map_err(|source| TargetError::Spawn {
            target: self.name().to_string(),
            program: self.plan.command[0].clone(),
            source,
        })?;
        // The journal entry lands just after the fork; if we are killed in
        // between, the run's token in its environment still marks it.
        crate::crash_point::reached("spawn");
        let process = self.ctx.record_start(self.name(), incarnation, child.id() as i32, asked);
        state.incarnations = incarnation;
        state.current = Some(process);
        self.changed.notify_all();
        Ok(exited)
    }

    /// Runs until told to stop: waits for each incarnation's exit and starts
    /// the next one as the policy says.
    fn supervise(self: Arc<Self>, mut exited: Receiver<Exit>) {
        loop {
            let exit = exited.recv().ok();
            let at = Instant::now();
            let mut state = self.state.lock().unwrap();
            if let Some(process) = state.current.take() {
                let status = exit.map_or("unknown".into(), |e| e.to_string());
                self.ctx.record_exit(self.name(), process, status, at);
                // Whatever the leader left running in its group goes with it.
                kill_group(process, Signal::SIGKILL);
            }
            self.changed.notify_all();
            // Wait for the moment to start again, or for the end.
            let delay = match self.plan.restart {
                RestartPolicy::Always { delay } => Some(delay),
                RestartPolicy::Never | RestartPolicy::Engine => None,
            };
            let deadline = delay.map(|d| Instant::now() + d);
            loop {
                if state.stopping {
                    return;
                }
                // A hold beats everything else: a procedure that stopped
                // the target starts it itself.
                if state.held {
                    state = self.changed.wait(state).unwrap();
                    continue;
                }
                if state.restart_requested {
                    state.restart_requested = false;
                    break;
                }
                match deadline {
                    Some(at) if Instant::now() >= at => break,
                    Some(at) => state = self.changed.wait_timeout(state, at - Instant::now()).unwrap().0,
                    None => state = self.changed.wait(state).unwrap(),
                }
            }
            match self.spawn(&mut state) {
                Ok(rx) => exited = rx,
                Err(e) => {
                    // Keep trying per policy: the probe shows the outage.
                    self.ctx.recorder.warn(e.to_string());
                    drop(state);
                    thread::sleep(Duration::from_millis(100));
                    let (tx, rx) = std::sync::mpsc::channel();
                    drop(tx);
                    exited = rx;
                }
            }
        }
    }

    /// `first` (SIGTERM for a graceful stop), then SIGKILL after the stop
    /// timeout; returns once it exited.
    fn stop_current(&self, mut state: std::sync::MutexGuard<'_, State>, first: Signal) {
        let Some(process) = state.current else { return };
        let first = if first == Signal::SIGTERM { self.plan.stop_signal } else { first };
        // A paused process cannot act on SIGTERM.
        kill_group(process, Signal::SIGCONT);
        kill_group(process, first);
        let mut deadline = Instant::now() + self.plan.stop_timeout;
        let mut killed = false;
        while state.current == Some(process) {
            let now = Instant::now();
            if now >= deadline {
                if killed {
                    let warning = format!("target `{}` (pid {}) did not exit after SIGKILL", self.name(), process.pid);
                    self.ctx.recorder.warn(warning);
                    return;
                }
                // Said, because every such stop costs the trial the whole
                // timeout (an etcd leader waits in vain to hand over its
                // leadership to peers stopping beside it).
                let warning = format!(
                    "target `{}` (pid {}) did not exit within its stop_timeout ({}) of {}: killed with SIGKILL",
                    self.name(),
                    process.pid,
                    crate::duration::format_duration(self.plan.stop_timeout),
                    first.as_str()
                );
                self.ctx.recorder.warn(warning);
                kill_group(process, Signal::SIGKILL);
                killed = true;
                deadline = now + Duration::from_secs(5);
                continue;
            }
            state = self.changed.wait_timeout(state, deadline - now).unwrap().0;
        }
    }

    fn current(&self) -> Result<HostProcess, TargetError> {
        self.state.lock().unwrap().current.ok_or_else(|| TargetError::NotRunning { target: self.name().to_string() })
    }

    fn incarnation_mark(&self, incarnation: u32) -> String {
        format!("{}.{}.{incarnation}", self.ctx.trial, self.name())
    }

    fn signal(&self, signal: Signal, scope: SignalScope) -> Result<Signalled, TargetError> {
        let process = self.current()?;
        let err = |source| TargetError::Signal { target: self.name().to_string(), signal: signal.as_str(), source };
        let at = Instant::now();
        let (at, processes) = match scope {
            SignalScope::Main => (at, kill(Pid::from_raw(process.pid), signal).map(|()| Some(1)).map_err(err)?),
            SignalScope::Group => (at, killpg(Pid::from_raw(process.pid), signal).map(|()| None).map_err(err)?),
            SignalScope::All => {
                let mark = self.incarnation_mark(process.incarnation);
                let token = reaper::run_token().unwrap_or_default();
                let marks = [(reaper::RUN_TOKEN_VAR, token.as_str()), (INCARNATION_VAR, mark.as_str())];
                let walk = |visit: &mut dyn FnMut(i32, procfs::ProcStat)| {
                    procfs::walk_tree(process.pid, process.start_time, &marks, visit)
                };
                match super::signal_every(walk, signal, Some((process.pid, process.start_time))) {
                    (_, 0) => return Err(TargetError::NotRunning { target: self.name().to_string() }),
                    (at, n) => (at, Some(n)),
                }
            }
        };
        Ok(Signalled { process, at, processes })
    }
}

/// Signals every live member of a target incarnation's group.
fn kill_group(process: HostProcess, signal: Signal) {
    match killpg(Pid::from_raw(process.pid), signal) {
        // ESRCH: the group is empty. This runs on the restart path, so it
        // must not scan /proc when there is nothing left to signal.
        Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
        Err(_) => {
            for pid in procfs::group_members(process.pid, process.start_time, reaper::run_token().as_deref()) {
                let _ = nix::sys::signal::kill(pid, signal);
            }
        }
    }
}

impl Target for ProcessTarget {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn start(&self) -> Result<(), TargetError> {
        for hook in &self.inner.plan.before_start {
            run_hook(self, hook)?;
        }
        let exited = {
            let mut state = self.inner.state.lock().unwrap();
            state.stopping = false;
            state.held = false;
            self.inner.spawn(&mut state)?
        };
        let inner = Arc::clone(&self.inner);
        let handle = thread::Builder::new()
            .name(format!("supervise-{}", self.name()))
            .spawn(move || inner.supervise(exited))
            .map_err(|source| TargetError::Io { target: self.name().to_string(), source })?;
        *self.supervisor.lock().unwrap() = Some(handle);
        Ok(())
    }

    fn signal(&self, signal: Signal, scope: SignalScope) -> Result<Signalled, TargetError> {
        self.inner.signal(signal, scope)
    }

    /// The process group: what the target's stop and restart signal too. A
    /// service whose workers leave the group (PostgreSQL) needs `all` for
    /// a crash of the whole service.
    fn default_scope(&self) -> SignalScope {
        SignalScope::Group
    }

    fn pause(&self) -> Result<HostProcess, TargetError> {
        Ok(self.inner.signal(Signal::SIGSTOP, SignalScope::Group)?.process)
    }

    fn resume(&self, which: HostProcess) -> Result<(), TargetError> {
        kill_group(which, Signal::SIGCONT);
        Ok(())
    }

    fn restart(&self) -> Result<HostProcess, TargetError> {
        let process = self.inner.current()?;
        let mut state = self.inner.state.lock().unwrap();
        state.restart_requested = true;
        self.inner.stop_current(state, Signal::SIGTERM);
        Ok(process)
    }

    fn hold(&self, signal: Signal) -> Option<HostProcess> {
        let mut state = self.inner.state.lock().unwrap();
        state.held = true;
        // A restart that a release asked for and the supervisor has not
        // yet made is void: the holder decides when to start again.
        state.restart_requested = false;
        let process = state.current;
        self.inner.stop_current(state, signal);
        process
    }

    fn release(&self) {
        let mut state = self.inner.state.lock().unwrap();
        state.held = false;
        state.restart_requested = state.current.is_none();
        self.inner.changed.notify_all();
    }

    fn stop(&self) {
        let Some(handle) = self.supervisor.lock().unwrap().take() else {
            return;
        };
        let mut state = self.inner.state.lock().unwrap();
        state.stopping = true;
        self.inner.changed.notify_all();
        self.inner.stop_current(state, Signal::SIGTERM);
        let _ = handle.join();
        for hook in &self.inner.plan.after_stop {
            if let Err(e) = run_hook(self, hook) {
                self.inner.ctx.recorder.warn(e.to_string());
            }
        }
    }

    fn exec(&self, argv: &[String], timeout: Duration, kind: CommandKind) -> Result<reaper::Output, TargetError> {
        self.inner.ctx.run(self.name(), self.inner.command(argv), timeout, kind)
    }

    fn host_process(&self) -> Option<HostProcess> {
        self.inner.state.lock().unwrap().current
    }

    fn port(&self) -> u16 {
        self.inner.ctx.port
    }

    fn host(&self) -> std::net::IpAddr {
        self.inner.ctx.host
    }

    fn render(&self, argv: &[String]) -> Vec<String> {
        argv.iter().map(|a| template::render(a, &self.inner.vars)).collect()
    }

    fn data_dirs(&self) -> Vec<PathBuf> {
        vec![self.inner.data_dir.clone()]
    }

    fn last_log_lines(&self, n: usize) -> Vec<String> {
        let incarnations = self.inner.state.lock().unwrap().incarnations;
        let mut lines = Vec::new();
        for i in (1..=incarnations).rev() {
            let path = self.inner.log_dir.join(format!("{}.{i}.log", self.name()));
            let text = fs::read_to_string(&path).unwrap_or_default();
            let mut these: Vec<String> = text.lines().map(|l| format!("[{}.{i}] {l}", self.name())).collect();
            these.append(&mut lines);
            lines = these;
            if lines.len() >= n {
                break;
            }
        }
        let skip = lines.len().saturating_sub(n);
        lines.split_off(skip)
    }
}

impl Drop for ProcessTarget {
    /// The backstop: a target never outlives its handle.
    fn drop(&mut self) {
        self.stop();
    }
}
