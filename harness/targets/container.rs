//! The container backend: a target is a container of the local engine.
//!
//! A watcher thread looks at the engine's state of the container on each
//! of the engine's events about it (its main process's pid, exit code, OOM
//! kill, and the engine's dates of its start and exit); it polls only as a
//! safety net, or every 5 ms if the events stop coming. Each new
//! main process is an incarnation (started by the harness, or by the
//! engine's own `restart: always`), each stop an exit. With the harness's
//! policy the watcher starts the container again itself. The
//! target's port is published on 127.0.0.1 (on a remote host: on its
//! address) at the same number, its data
//! dir is a bind mount of the trial's data dir at `/data` (`{data_dir}` in
//! the container's command), so storage faults reach it from the host.

use std::fs;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::context::{run_hook, TargetContext};
use super::reaper;
use super::{procfs, CommandKind, HostProcess, Signalled, Target, TargetError};
use crate::engine::{ContainerEvents, ContainerSpec, ContainerState, Engine, Limits, RUN_LABEL};
use crate::journal::Entry;
use crate::scenario::{template, Reach, RestartPolicy, SignalScope, TargetPlan};

/// Where a container sees its data dir.
pub const CONTAINER_DATA_DIR: &str = "/data";
/// How often the watcher reads the engine's state without the engine's
/// events (their stream ended), as it did before it had them.
const POLL: Duration = Duration::from_millis(5);
/// And with them: a safety net for an event the engine did not send.
const POLL_WITH_EVENTS: Duration = Duration::from_millis(250);
/// The engine's default network, which containers of no run network join.
const DEFAULT_NETWORK: &str = "bridge";

pub struct ContainerTarget {
    inner: Arc<Inner>,
    watcher: Mutex<Option<Watcher>>,
}

/// The threads that follow a started container.
struct Watcher {
    watch: JoinHandle<()>,
    /// Wakes the watcher on each of the engine's events.
    listen: JoinHandle<()>,
    stop_listening: Arc<tokio::sync::Notify>,
}

struct Inner {
    plan: TargetPlan,
    ctx: TargetContext,
    engine: Arc<Engine>,
    image: String,
    run_label: String,
    /// A container someone else made (a compose service): attached to,
    /// stopped at the end, never created or removed by the target.
    attached: Option<String>,
    data_dir: PathBuf,
    /// Where its port is published: 127.0.0.1 here, a remote host's
    /// address there (see [`ContainerTarget::published_on`]).
    address: std::net::IpAddr,
    /// The run's network and the container's fixed address on it (none:
    /// the engine's default bridge, as a remote host's containers are).
    network: Option<(String, IpAddr)>,
    /// Whether `{host}`, probes and the workload take that address or the
    /// published port.
    reach: Reach,
    /// Template variables inside the container (its command and env).
    vars: Vec<(String, String)>,
    /// And on the harness's side (hooks, recovery steps, command probes).
    host_vars: Vec<(String, String)>,
    state: Mutex<State>,
    changed: Condvar,
    /// How many of the engine's events came since the watcher's last look:
    /// apart from the state, so that they come in while the watcher holds
    /// it (through a restart the engine takes 100-300 ms for).
    unseen_events: Mutex<u32>,
    /// Held through each look at the engine and what it records: one at a
    /// time, so that none records from a state older than one recorded.
    looking: Mutex<()>,
}

#[derive(Default)]
struct State {
    id: Option<String>,
    current: Option<HostProcess>,
    incarnations: u32,
    stopping: bool,
    held: bool,
    /// When the harness's policy may start the container again.
    restart_at: Option<Instant>,
    /// Whether the engine's events still come (the stream may end: then
    /// the watcher polls).
    listening: bool,
}

fn engine_err(target: &str) -> impl Fn(crate::engine::EngineError) -> TargetError + '_ {
    move |e| {
        let kind = if e.is_not_found() { std::io::ErrorKind::NotFound } else { std::io::ErrorKind::Other };
        TargetError::Io { target: target.to_string(), source: std::io::Error::new(kind, e.to_string()) }
    }
}

impl ContainerTarget {
    pub fn new(
        plan: &TargetPlan,
        ctx: TargetContext,
        engine: Arc<Engine>,
        image: String,
        run_label: String,
    ) -> Result<ContainerTarget, TargetError> {
        let data_dir = ctx.trial_dir.join("data").join(&plan.name);
        for dir in [&data_dir, &ctx.trial_dir.join("logs")] {
            fs::create_dir_all(dir).map_err(|source| TargetError::Io { target: plan.name.clone(), source })?;
        }
        // Two views of the same target: its own command and env run inside
        // the container (listening on every address, the data dir bound at
        // /data); hooks, recovery steps and command probes run on the
        // harness's side, where the data dir is the bound host directory.
        let mut host_vars = ctx.vars(plan);
        host_vars.push(("data_dir".to_string(), data_dir.display().to_string()));
        let mut vars = ctx.vars(plan);
        vars.retain(|(name, _)| name != "host");
        vars.push(("host".to_string(), "0.0.0.0".to_string()));
        vars.push(("data_dir".to_string(), CONTAINER_DATA_DIR.to_string()));
        let inner = Inner {
            plan: plan.clone(),
            ctx,
            engine,
            image,
            run_label,
            attached: None,
            data_dir,
            address: std::net::IpAddr::from([127, 0, 0, 1]),
            network: None,
            reach: plan.reach,
            vars,
            host_vars,
            state: Mutex::default(),
            changed: Condvar::new(),
            unseen_events: Mutex::default(),
            looking: Mutex::default(),
        };
        Ok(ContainerTarget { inner: Arc::new(inner), watcher: Mutex::new(None) })
    }

    /// Ends the watcher and the listener of a started container; `false`
    /// if there were none.
    fn stop_watching(&self) -> bool {
        let Some(watcher) = self.watcher.lock().unwrap().take() else { return false };
        self.inner.state.lock().unwrap().stopping = true;
        self.inner.changed.notify_all();
        let _ = watcher.watch.join();
        watcher.stop_listening.notify_one();
        let _ = watcher.listen.join();
        true
    }

    /// A target on a container that already exists (a compose service's).
    pub fn attach(
        plan: &TargetPlan,
        ctx: TargetContext,
        engine: Arc<Engine>,
        id: String,
    ) -> Result<ContainerTarget, TargetError> {
        let mut target = ContainerTarget::new(plan, ctx, engine, String::new(), String::new())?;
        Arc::get_mut(&mut target.inner).expect("not shared yet").attached = Some(id);
        Ok(target)
    }

    /// Puts it on a network of the run at a fixed address, which `{host}`
    /// is unless the scenario chose the published port.
    pub fn on_network(mut self, name: String, address: IpAddr) -> ContainerTarget {
        Arc::get_mut(&mut self.inner).expect("not shared yet").network = Some((name, address));
        self
    }

    /// Publishes its port on `address` instead: on a remote host, the
    /// address the control node reaches that host at.
    pub fn published_on(mut self, address: std::net::IpAddr) -> ContainerTarget {
        Arc::get_mut(&mut self.inner).expect("not shared yet").address = address;
        self
    }
}

impl Inner {
    fn name(&self) -> &str {
        &self.plan.name
    }

    fn network_name(&self) -> &str {
        self.network.as_ref().map_or(DEFAULT_NETWORK, |(name, _)| name)
    }

    fn engine_restarts(&self) -> bool {
        self.plan.restart == RestartPolicy::Engine
    }

    fn spec(&self) -> ContainerSpec {
        let render = |s: &String| template::render(s, &self.vars);
        ContainerSpec {
            name: format!("{}-t{}-{}", self.run_label, self.ctx.trial, self.name()),
            image: self.image.clone(),
            command: self.plan.command.iter().map(render).collect(),
            env: self.plan.env.iter().map(|(k, v)| (k.clone(), render(v))).chain(self.faketime_env()).collect(),
            ports: vec![self.ctx.port],
            address: self.address.to_string(),
            binds: std::iter::once((self.data_dir.clone(), CONTAINER_DATA_DIR.to_string()))
                .chain(self.plan.mounts.iter().cloned())
                .chain(self.faketime_binds())
                .map(|(host, inside)| (host.display().to_string(), inside))
                .collect(),
            engine_restarts: self.engine_restarts(),
            labels: vec![
                (RUN_LABEL.to_string(), self.run_label.clone()),
                ("crashlab.target".to_string(), self.name().to_string()),
            ],
            network: self.network.clone(),
        }
    }

    /// libfaketime's environment, when a clock fault names the target.
    fn faketime_env(&self) -> Vec<(String, String)> {
        self.ctx.faketime.as_ref().map_or(Vec::new(), |(_, file)| super::faketime::container_env(file))
    }

    fn faketime_binds(&self) -> Vec<(PathBuf, String)> {
        let binds = |(library, file): &(PathBuf, PathBuf)| super::faketime::container_binds(library, file);
        self.ctx.faketime.as_ref().map_or(Vec::new(), binds)
    }

    /// Follows the container until the target stops: looks at it on each
    /// of the engine's events about it (or each poll), and starts it again
    /// by the harness's policy.
    fn watch(self: Arc<Self>) {
        loop {
            // Counted before the look, so that the look sees what they
            // tell; any that come later wake the next turn.
            *self.unseen_events.lock().unwrap() = 0;
            let stop_was_asked = self.state.lock().unwrap().stopping;
            let turn = self.looking.lock().unwrap();
            let (mut state, running) = self.look(&turn);
            if state.stopping {
                // The last look comes after the stop was asked: a restart
                // the engine made just before the trial's end is the
                // trial's (its service answered the probe 20 ms after).
                if stop_was_asked {
                    return;
                }
                continue;
            }
            if !running && !state.held && state.restart_at.is_some_and(|at| Instant::now() >= at) {
                state.restart_at = None;
                let id = state.id.clone().expect("created before the watcher starts");
                self.start_again(&mut state, &id);
            }
            drop(turn);
            if *self.unseen_events.lock().unwrap() > 0 {
                continue;
            }
            let poll = if state.listening { POLL_WITH_EVENTS } else { POLL };
            let wait = state.restart_at.map_or(poll, |at| at.saturating_duration_since(Instant::now()).min(poll));
            let _ = self.changed.wait_timeout(state, wait);
        }
    }

    /// Reads the engine's state of the container and records what changed
    /// since the last look, dated as the engine dated it; the caller holds
    /// `looking` (`_turn`). Returns the state and whether it runs.
    fn look(&self, _turn: &std::sync::MutexGuard<'_, ()>) -> (std::sync::MutexGuard<'_, State>, bool) {
        let id = self.state.lock().unwrap().id.clone();
        let seen = id.and_then(|id| self.engine.inspect(&id).ok());
        let mut state = self.state.lock().unwrap();
        let running = seen.as_ref().is_some_and(|s| s.running && s.pid > 0);
        // The engine dates a start once its process runs, an exit when the
        // runtime saw it; without a date, when it is seen.
        let started = |s: &ContainerState| s.started_at.unwrap_or_else(Instant::now);
        match (&seen, state.current) {
            (Some(s), Some(process)) if running && s.pid != process.pid => {
                // Gone and started again between two looks (the engine's
                // own restart): its exit is dated before the new start.
                let died = s.finished_at.filter(|at| *at <= started(s)).unwrap_or_else(|| started(s));
                self.exited(&mut state, process, "replaced".into(), died);
                self.started(&mut state, s.pid, started(s));
            }
            (Some(s), None) if running => {
                self.started(&mut state, s.pid, started(s));
                self.check_ports(s);
            }
            (s, Some(process)) if !running => {
                let status = match s {
                    None => "gone".into(),
                    Some(s) if s.oom_killed => format!("exit code {}, OOM-killed", s.exit_code),
                    Some(s) => format!("exit code {}", s.exit_code),
                };
                let died = s.as_ref().and_then(|s| s.finished_at).unwrap_or_else(Instant::now);
                self.exited(&mut state, process, status, died);
                if let RestartPolicy::Always { delay } = self.plan.restart {
                    state.restart_at = Some(Instant::now() + delay);
                }
            }
            _ => {}
        }
        (state, running)
    }

    /// Records what the engine did that no look has recorded yet (a
    /// restart of its own, or one of the harness's still being started).
    fn settle(&self) {
        let turn = self.looking.lock().unwrap();
        if self.state.lock().unwrap().id.is_some() {
            drop(self.look(&turn));
        }
    }

    /// The harness's restart policy: starts the stopped container again.
    fn start_again(&self, state: &mut State, id: &str) {
        match self.engine.start(id).map(|()| Instant::now()) {
            // Running once the engine says so: seen now, not at the next
            // turn, which a recovery proven within a few samples can beat
            // to the trial's end. Dated as the engine dates its start (its
            // process began during the start, 100-300 ms, so not when the
            // start was asked for), or when the start returned.
            Ok(returned) => match self.engine.inspect(id) {
                Ok(s) if s.running && s.pid > 0 => {
                    self.started(state, s.pid, s.started_at.unwrap_or(returned));
                    self.check_ports(&s);
                }
                _ => {}
            },
            Err(e) => {
                self.ctx.recorder.warn(format!("target `{}`: {e}", self.name()));
                state.restart_at = Some(Instant::now() + Duration::from_millis(100));
            }
        }
    }

    /// Counts each of the engine's events for the watcher until they end.
    fn listen(self: Arc<Self>, events: ContainerEvents) {
        for _event in events {
            *self.unseen_events.lock().unwrap() += 1;
            // Through the state's lock, so that a watcher about to wait
            // is waiting when told.
            drop(self.state.lock().unwrap());
            self.changed.notify_all();
        }
        self.state.lock().unwrap().listening = false;
        self.changed.notify_all();
    }

    /// A new incarnation, begun at `at` (as the engine dated its start, or
    /// when it was seen).
    fn started(&self, state: &mut State, pid: i32, at: Instant) {
        state.incarnations += 1;
        state.current = Some(self.ctx.record_start(self.name(), state.incarnations, pid, at));
        self.changed.notify_all();
    }

    /// Re-reads the published ports of each new incarnation: `{port}` is
    /// published explicitly (on 127.0.0.1, or a remote host's address, by
    /// the harness; or by the compose file through CRASHLAB_PORT_<TARGET>),
    /// so it must still be published; if not, the probes would test the
    /// wrong port.
    fn check_ports(&self, seen: &crate::engine::ContainerState) {
        let port = self.ctx.port;
        if !seen.ports.iter().any(|(_, host)| *host == port) {
            self.ctx.recorder.warn(format!(
                "target `{}`: port {port} is published as {:?} after a restart, not at {port}",
                self.name(),
                seen.ports
            ));
        }
    }

    fn exited(&self, state: &mut State, process: HostProcess, status: String, at: Instant) {
        self.ctx.record_exit(self.name(), process, status, at);
        state.current = None;
        self.changed.notify_all();
    }

    fn id(&self) -> Result<String, TargetError> {
        self.state.lock().unwrap().id.clone().ok_or_else(|| TargetError::NotRunning { target: self.name().into() })
    }

    fn current(&self) -> Result<HostProcess, TargetError> {
        self.state.lock().unwrap().current.ok_or_else(|| TargetError::NotRunning { target: self.name().into() })
    }

    /// Waits until the watcher has seen the container stop.
    fn wait_down(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut state = self.state.lock().unwrap();
        while state.current.is_some() && Instant::now() < deadline {
            state = self.changed.wait_timeout(state, POLL).unwrap().0;
        }
    }
}

impl Target for ContainerTarget {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn start(&self) -> Result<(), TargetError> {
        let inner = &self.inner;
        for hook in &inner.plan.before_start {
            run_hook(self, hook)?;
        }
        let id = match &inner.attached {
            Some(id) => id.clone(),
            None => {
                let id = inner.engine.create(&inner.spec()).map_err(engine_err(self.name()))?;
                crate::crash_point::reached("container-create");
                let _ = inner.ctx.journal.append(&Entry::ContainerCreated {
                    trial: inner.ctx.trial,
                    target: self.name().to_string(),
                    id: id.clone(),
                    run_label: inner.run_label.clone(),
                });
                id
            }
        };
        {
            let mut state = inner.state.lock().unwrap();
            state.id = Some(id.clone());
            state.stopping = false;
            state.held = false;
            state.listening = true;
        }
        // Asked for before the start, so that the start is among them.
        let (events, stop_listening) = inner.engine.container_events(&id);
        let spawn = |what: &str, work: Box<dyn FnOnce() + Send>| {
            thread::Builder::new()
                .name(format!("{what}-{}", self.name()))
                .spawn(work)
                .map_err(|source| TargetError::Io { target: self.name().to_string(), source })
        };
        let listened = Arc::clone(inner);
        let listen = spawn("events", Box::new(move || listened.listen(events)))?;
        let watched = Arc::clone(inner);
        let watch = spawn("watch", Box::new(move || watched.watch())).inspect_err(|_| {
            stop_listening.notify_one();
        })?;
        *self.watcher.lock().unwrap() = Some(Watcher { watch, listen, stop_listening });
        if !inner.engine.inspect(&id).is_ok_and(|s| s.running) {
            if let Err(e) = inner.engine.start(&id) {
                // Never ran: no stop, no last words, no after_stop hooks
                // (as a process that could not be spawned); the container
                // this target created goes.
                self.stop_watching();
                if inner.attached.is_none() {
                    let _ = inner.engine.remove(&id);
                }
                return Err(engine_err(self.name())(e));
            }
        }
        Ok(())
    }

    /// Signals the container's processes through their host pids, as a
    /// crash or an OOM kill would: the engine sees its process die (and its
    /// own restart policy applies), where `docker kill` would count as a
    /// manual stop that `restart: always` leaves alone.
    fn signal(&self, signal: Signal, scope: SignalScope) -> Result<Signalled, TargetError> {
        let process = self.inner.current()?;
        if !procfs::is_same_live_process(process.pid, process.start_time) {
            return Err(TargetError::NotRunning { target: self.name().to_string() });
        }
        if scope == SignalScope::Main {
            let at = Instant::now();
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(process.pid), signal).map_err(|source| {
                TargetError::Signal { target: self.name().to_string(), signal: signal.as_str(), source }
            })?;
            return Ok(Signalled { process, at, processes: Some(1) });
        }
        // Every process in the container shares its main process's pid
        // namespace; a container that shares the host's has no "all".
        if procfs::namespace_members(process.pid).is_empty() {
            return Err(TargetError::Scope {
                target: self.name().to_string(),
                scope: scope.name(),
                why: "the container shares the host's pid namespace (pid: host), where it would reach every process \
                      of the host; use scope = \"main\""
                    .into(),
            });
        }
        let group = procfs::stat(process.pid).map(|s| s.pgrp);
        let walk = |visit: &mut dyn FnMut(i32, procfs::ProcStat)| {
            for (pid, s) in procfs::namespace_members(process.pid) {
                if scope == SignalScope::All || Some(s.pgrp) == group {
                    visit(pid, s);
                }
            }
        };
        let (at, n) = super::signal_every(walk, signal, None);
        Ok(Signalled { process, at, processes: Some(n) })
    }

    /// The main process: when it dies, the kernel kills every other process
    /// in the container's pid namespace, as a crash of the service would.
    fn default_scope(&self) -> SignalScope {
        SignalScope::Main
    }

    fn pause(&self) -> Result<HostProcess, TargetError> {
        let process = self.inner.current()?;
        self.inner.engine.pause(&self.inner.id()?).map_err(engine_err(self.name()))?;
        Ok(process)
    }

    fn resume(&self, _which: HostProcess) -> Result<(), TargetError> {
        self.inner.engine.unpause(&self.inner.id()?).map_err(engine_err(self.name()))
    }

    fn hold(&self, signal: Signal) -> Option<HostProcess> {
        let inner = &self.inner;
        let process = {
            let mut state = inner.state.lock().unwrap();
            state.held = true;
            state.restart_at = None;
            state.current
        };
        let id = inner.id().ok()?;
        // `stop` is a manual stop: the engine's own restart policy leaves it
        // down, as the hold requires; a SIGKILL hold is a crash first.
        if signal != Signal::SIGTERM {
            let _ = inner.engine.kill(&id, signal.as_str());
        }
        let _ = inner.engine.stop(&id, inner.plan.stop_timeout);
        inner.wait_down(inner.plan.stop_timeout + Duration::from_secs(5));
        process
    }

    fn release(&self) {
        let inner = &self.inner;
        inner.state.lock().unwrap().held = false;
        if let Ok(id) = inner.id() {
            if let Err(e) = inner.engine.start(&id) {
                inner.ctx.recorder.warn(format!("target `{}`: {e}", self.name()));
            }
        }
        inner.changed.notify_all();
    }

    fn restart(&self) -> Result<HostProcess, TargetError> {
        let process = self.inner.current()?;
        self.hold(Signal::SIGTERM);
        self.release();
        Ok(process)
    }

    fn stop(&self) {
        if !self.stop_watching() {
            return;
        }
        let inner = &self.inner;
        if let Ok(id) = inner.id() {
            let _ = inner.engine.stop(&id, inner.plan.stop_timeout);
            let mut state = inner.state.lock().unwrap();
            if let Some(process) = state.current {
                inner.exited(&mut state, process, "stopped".into(), Instant::now());
            }
            drop(state);
            // Keep the last words for the report before the container goes.
            let lines = inner.engine.logs(&id, 200);
            let _ = fs::write(inner.ctx.trial_dir.join("logs").join(format!("{}.log", self.name())), lines.join("\n"));
            if inner.attached.is_none() {
                let _ = inner.engine.remove(&id);
            }
        }
        for hook in &inner.plan.after_stop {
            if let Err(e) = run_hook(self, hook) {
                inner.ctx.recorder.warn(e.to_string());
            }
        }
    }

    fn settle(&self) {
        if self.watcher.lock().unwrap().is_some() {
            self.inner.settle();
        }
    }

    fn exec(&self, argv: &[String], timeout: Duration, kind: CommandKind) -> Result<reaper::Output, TargetError> {
        let inner = &self.inner;
        inner.ctx.run(self.name(), inner.ctx.command(&inner.plan, &inner.host_vars, argv), timeout, kind)
    }

    fn disconnect(&self) -> Result<(), TargetError> {
        self.inner.engine.disconnect(&self.inner.id()?, self.inner.network_name()).map_err(engine_err(self.name()))
    }

    fn reconnect(&self) -> Result<(), TargetError> {
        let address = self.inner.network.as_ref().map(|(_, address)| *address);
        let (engine, id) = (&self.inner.engine, self.inner.id()?);
        engine.connect_network(&id, self.inner.network_name(), address).map_err(engine_err(self.name()))
    }

    fn engine_limits(&self) -> Result<Limits, TargetError> {
        self.inner.engine.limits(&self.inner.id()?).map_err(engine_err(self.name()))
    }

    fn set_engine_limits(&self, limits: Limits) -> Result<(), TargetError> {
        self.inner.engine.set_limits(&self.inner.id()?, limits).map_err(engine_err(self.name()))
    }

    fn host_process(&self) -> Option<HostProcess> {
        self.inner.state.lock().unwrap().current
    }

    fn port(&self) -> u16 {
        self.inner.ctx.port
    }

    fn host(&self) -> std::net::IpAddr {
        match (&self.inner.network, self.inner.reach) {
            (Some((_, own)), Reach::Address) => *own,
            _ => self.inner.address,
        }
    }

    fn render(&self, argv: &[String]) -> Vec<String> {
        argv.iter().map(|a| template::render(a, &self.inner.host_vars)).collect()
    }

    fn data_dirs(&self) -> Vec<PathBuf> {
        vec![self.inner.data_dir.clone()]
    }

    fn last_log_lines(&self, n: usize) -> Vec<String> {
        let Ok(id) = self.inner.id() else { return Vec::new() };
        let mut lines = self.inner.engine.logs(&id, n);
        if lines.is_empty() {
            let path = self.inner.ctx.trial_dir.join("logs").join(format!("{}.log", self.name()));
            lines = fs::read_to_string(path).unwrap_or_default().lines().map(str::to_string).collect();
            let skip = lines.len().saturating_sub(n);
            lines.drain(..skip);
        }
        lines.into_iter().map(|l| format!("[{}] {l}", self.name())).collect()
    }
}

impl Drop for ContainerTarget {
    fn drop(&mut self) {
        self.stop();
    }
}
