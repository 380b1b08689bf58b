//! A trial's environment: what it sets up before its timeline (ports,
//! proxies, compose projects, targets with their FUSE layers and probes'
//! samplers) and what its faults leave in effect. Built one step at a time,
//! so that whatever step fails, [`TrialEnv::tear_down`] undoes exactly what
//! was done, in the order the type fixes.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::containers::compose_up;
use super::{EnvError, Trial, TrialStop};
use crate::compose;
use crate::fault::layer::StorageLayer;
use crate::fault::FaultGuard;
use crate::history::EventKind;
use crate::journal::Entry;
use crate::probe::{self, Sampler};
use crate::proxy::Proxy;
use crate::scenario::{FaultKind, Reach, TargetKind, TargetPlan, TargetRef};
use crate::targets::container::ContainerTarget;
use crate::targets::pod::PodTarget;
use crate::targets::remote::RemoteTarget;
use crate::targets::{free_port, probe_port_taken, ProcessTarget, Target, TargetContext};

/// A started target with its probe's sampler, or why it did not start.
type Started = Result<(Arc<dyn Target>, Sampler), EnvError>;

#[derive(Default)]
pub(super) struct TrialEnv {
    /// Each target's port, in the plan's order.
    pub ports: Vec<u16>,
    /// Where each target is reached: its namespace's address, or loopback.
    pub hosts: Vec<(String, IpAddr)>,
    pub proxies: Vec<(String, Arc<Proxy>)>,
    projects: Vec<compose::Project>,
    /// The started targets, in the plan's order, each with its sampler.
    pub targets: Vec<Arc<dyn Target>>,
    pub samplers: Vec<Sampler>,
    /// The storage layers of targets whose faults act through one.
    pub layers: Vec<(String, Arc<StorageLayer>)>,
    /// Guards of faults that stay in effect until the end of the trial.
    pub lasting: Mutex<Vec<FaultGuard>>,
}

impl TrialEnv {
    /// Sets up everything the trial needs, in order: ports first (proxies
    /// forward to targets' ports, and targets' commands may name proxies'
    /// ports), then proxies, compose projects, and the targets.
    pub fn set_up(&mut self, trial: &Trial) -> Result<(), TrialStop> {
        let env = TrialStop::Environment;
        for t in &trial.plan.targets {
            // A pod target is reached through its Service, on a node.
            if let Some(pod) = trial.run.pods.and_then(|p| p.endpoint(&t.name)) {
                self.ports.push(pod.port);
                self.hosts.push((t.name.clone(), pod.address));
                continue;
            }
            let port =
                free_port().map_err(|e| env(EnvError::Port { target: t.name.clone(), reason: e.to_string() }))?;
            self.ports.push(port);
            self.hosts.push((t.name.clone(), host_of(trial, &t.name)));
        }
        // Every port checked before any target starts: the check binds the
        // port for a moment, and a child spawned meanwhile by a target
        // starting beside it would hold that socket until its exec, so
        // that the target of that port could not bind it then.
        if trial.run.network.is_none() {
            for (t, &port) in trial.plan.targets.iter().zip(&self.ports) {
                let here = !matches!(t.kind, TargetKind::Compose | TargetKind::Pod) && t.host.is_none();
                if here {
                    check_port_free(t, port).map_err(env)?;
                }
            }
        }
        for p in &trial.plan.proxies {
            let upstream = SocketAddr::new(self.host(&p.target), self.port(trial, &p.target));
            let proxy = Proxy::start(upstream)
                .map_err(|e| env(EnvError::Proxy { proxy: p.name.clone(), reason: e.to_string() }))?;
            self.proxies.push((p.name.clone(), Arc::new(proxy)));
        }
        compose_up(trial, &self.ports, &mut self.projects).map_err(|e| env(EnvError::Compose(e)))?;
        // Side by side: a trial of many targets starts in the time of its
        // slowest, not of their sum. Each is probed from its start.
        let started: Vec<_> = std::thread::scope(|scope| {
            let this = &*self;
            let starts: Vec<_> = (trial.plan.targets.iter().zip(&this.ports))
                .map(|(t, &port)| scope.spawn(move || this.start_target(trial, t, port)))
                .collect();
            starts.into_iter().map(|s| s.join().expect("a target's start does not panic")).collect()
        });
        let mut failed = None;
        for (t, (layer, target)) in trial.plan.targets.iter().zip(started) {
            self.layers.extend(layer.map(|l| (t.name.clone(), l)));
            match target {
                Ok((target, sampler)) => {
                    self.targets.push(target);
                    self.samplers.push(sampler);
                }
                Err(e) => failed = failed.or(Some(e)),
            }
        }
        failed.map_or(Ok(()), |e| Err(env(e)))
    }

    /// Waits until every target is healthy for the first time.
    pub fn await_start_up(&self, trial: &Trial) -> Result<(), TrialStop> {
        let timeout = trial.plan.trials.startup_timeout;
        let deadline = Instant::now() + timeout;
        for ((t, target), sampler) in trial.plan.targets.iter().zip(&self.targets).zip(&self.samplers) {
            await_start_up(t, target.as_ref(), sampler, (deadline, timeout), trial)?;
        }
        Ok(())
    }

    /// A target the plan refers to (in the plan's order, as started).
    pub fn target(&self, target: &TargetRef) -> Arc<dyn Target> {
        Arc::clone(&self.targets[target.index])
    }

    pub fn host(&self, name: &str) -> IpAddr {
        self.hosts.iter().find(|(n, _)| n == name).map_or(IpAddr::from([127, 0, 0, 1]), |(_, h)| *h)
    }

    fn port(&self, trial: &Trial, target: &str) -> u16 {
        trial.plan.targets.iter().position(|t| t.name == target).map_or(0, |i| self.ports[i])
    }

    pub fn proxy_port(&self, name: &str) -> u16 {
        self.proxies.iter().find(|(n, _)| n == name).map_or(0, |(_, p)| p.port())
    }

    pub fn proxy(&self, name: &str) -> Option<Arc<Proxy>> {
        self.proxies.iter().find(|(n, _)| n == name).map(|(_, p)| Arc::clone(p))
    }

    pub fn layer(&self, target: &str) -> Option<Arc<StorageLayer>> {
        self.layers.iter().find(|(n, _)| n == target).map(|(_, l)| Arc::clone(l))
    }

    /// Creates and starts one target: its backend, its data dirs checked and
    /// journaled before anything acts on them (the only places cleanup
    /// restores bytes or unmounts), and its FUSE layer if a fault needs one
    /// (returned even if the start failed after it: the tear-down unmounts
    /// it); then starts its probe's sampler.
    fn start_target(&self, trial: &Trial, t: &TargetPlan, port: u16) -> (Option<Arc<StorageLayer>>, Started) {
        let mut layer = None;
        let target = self.start_backend(trial, t, port, &mut layer).map(|target| {
            if t.kind == TargetKind::Container {
                let (target, at, reach) = (t.name.clone(), format!("{}:{port}", target.host()), t.reach);
                trial.recorder.record(EventKind::TargetReached { target, at, reach });
            }
            let probe = probe::build(&t.probe, Arc::clone(&target), |name: &str| self.proxy_port(name));
            let sampler = Sampler::start(&t.name, probe, &t.probe, trial.recorder.clone());
            (target, sampler)
        });
        (layer, target)
    }

    fn start_backend(
        &self,
        trial: &Trial,
        t: &TargetPlan,
        port: u16,
        layer: &mut Option<Arc<StorageLayer>>,
    ) -> Result<Arc<dyn Target>, EnvError> {
        let (run_dir, journal) = (trial.run.run_dir, trial.run.journal);
        let failed = |e: String| EnvError::Target(format!("target `{}`: {e}", t.name));
        let ctx = TargetContext {
            trial: trial.index,
            run_dir: run_dir.to_path_buf(),
            trial_dir: trial.dir.clone(),
            port,
            recorder: trial.recorder.clone(),
            journal: Arc::clone(journal),
            proxy_ports: self.proxies.iter().map(|(n, p)| (n.clone(), p.port())).collect(),
            namespace: trial.run.network.and_then(|n| n.member(&t.name)).map(|m| m.namespace.clone()),
            host: self.host(&t.name),
            hosts: self.hosts.clone(),
            ports: trial.plan.targets.iter().map(|t| t.name.clone()).zip(self.ports.iter().copied()).collect(),
            scenario_dir: scenario_dir(&trial.plan.source_path),
            faketime: if trial.plan.faults.iter().any(|f| f.target == t.name && matches!(f.kind, FaultKind::Clock(_))) {
                Some(faketime_for(trial, &t.name).map_err(failed)?)
            } else {
                None
            },
        };
        let target = self.backend(trial, t, ctx).map_err(EnvError::Target)?;
        let mut data_dirs = Vec::new();
        for dir in target.data_dirs() {
            let dir = dir.canonicalize().map_err(|e| failed(format!("data dir {}: {e}", dir.display())))?;
            crate::confine::check_data_dir(&dir, run_dir).map_err(|e| failed(e.to_string()))?;
            let entry = Entry::DataDir { trial: trial.index, target: t.name.clone(), path: dir.clone() };
            journal.note(&entry).map_err(|e| EnvError::Target(format!("cannot journal a data dir: {e}")))?;
            data_dirs.push(dir);
        }
        // A target on a host gets its layer there, from its agent.
        let needs_layer =
            t.host.is_none() && trial.plan.faults.iter().any(|f| f.target == t.name && f.kind.needs_layer());
        if needs_layer {
            let mounted = StorageLayer::mount(&data_dirs[0], trial.index, &t.name, Arc::clone(journal))
                .map_err(|e| failed(e.to_string()))?;
            *layer = Some(Arc::new(mounted));
        }
        target.start().map_err(|e| EnvError::Target(e.to_string()))?;
        Ok(target)
    }

    /// The backend that runs a target of this kind.
    fn backend(&self, trial: &Trial, t: &TargetPlan, ctx: TargetContext) -> Result<Arc<dyn Target>, String> {
        let containers = trial.run.containers;
        if let Some(host) = &t.host {
            let link = trial.run.hosts.and_then(|h| h.link(host)).ok_or("its host has no agent")?;
            return Ok(Arc::new(RemoteTarget::new(t, &ctx, trial.run.source.to_string(), Arc::clone(link))));
        }
        if let Some(pod) = trial.run.pods.and_then(|p| p.endpoint(&t.name)) {
            return Ok(Arc::new(PodTarget::new(t, ctx, Arc::clone(&pod.cluster), Arc::clone(&pod.pods))));
        }
        Ok(match (t.kind, containers) {
            (TargetKind::Compose, Some(c)) => {
                let (file, service) = t.compose.as_ref().expect("compile checked");
                let project = self.projects.iter().find(|p| &p.file == file).ok_or("compose project not up")?;
                let id = project.container(&c.engine, service).map_err(|e| e.to_string())?;
                Arc::new(ContainerTarget::attach(t, ctx, Arc::clone(&c.engine), id).map_err(|e| e.to_string())?)
            }
            (TargetKind::Container, Some(c)) => {
                let image = c.images.iter().find(|(n, _)| *n == t.name).map(|(_, i)| i.clone()).unwrap_or_default();
                let mut target = ContainerTarget::new(t, ctx, Arc::clone(&c.engine), image, c.label.clone())
                    .map_err(|e| e.to_string())?;
                if let Some((network, address)) = c.network.as_ref().and_then(|n| Some((n, n.address(&t.name)?))) {
                    target = target.on_network(network.name.clone(), address);
                }
                Arc::new(target)
            }
            _ => Arc::new(ProcessTarget::new(t, ctx).map_err(|e| e.to_string())?),
        })
    }

    /// Undoes the set-up, whatever happened: targets first, then what the
    /// faults left (damaged files, lock holders), then the FUSE layers,
    /// proxies and compose projects; last, whatever the trial started and
    /// left running (a daemon a hook left behind, out of every group).
    pub fn tear_down(self, trial: &Trial) {
        let TrialEnv { proxies, projects, targets, mut samplers, layers, lasting, .. } = self;
        for sampler in &mut samplers {
            sampler.begin_stop();
        }
        for sampler in &mut samplers {
            sampler.stop();
        }
        let mut lasting = lasting.into_inner().unwrap();
        for guard in &mut lasting {
            guard.look();
        }
        // Side by side: a trial of many targets waits for its slowest
        // stop, not for the sum of them.
        std::thread::scope(|scope| {
            for target in &targets {
                scope.spawn(|| target.stop());
            }
        });
        for target in &targets {
            let lines = target.last_log_lines(20);
            trial.recorder.record(EventKind::TargetLog { target: target.name().to_string(), lines });
        }
        for guard in lasting.into_iter().rev() {
            guard.heal();
        }
        for (_, layer) in &layers {
            if let Err(e) = layer.unmount() {
                trial.recorder.warn(e);
            }
        }
        for (_, proxy) in &proxies {
            proxy.stop();
        }
        for project in &projects {
            if let Err(e) = project.down() {
                trial.recorder.warn(e.to_string());
            }
            let _ = trial.run.journal.append(&Entry::ComposeDown { trial: trial.index, project: project.name.clone() });
        }
        let stragglers = crate::targets::stopping::stop_stragglers(Duration::from_secs(3));
        if !stragglers.is_empty() {
            let count = stragglers.len();
            trial.recorder.warn(format!("stopped {count} process(es) it had started and left running: {stragglers:?}"));
        }
    }
}

/// libfaketime and a fresh control file (the real time) for a target with
/// a `clock` fault: journaled before the file exists.
fn faketime_for(trial: &Trial, target: &str) -> Result<(std::path::PathBuf, std::path::PathBuf), String> {
    use crate::targets::faketime;
    let library = faketime::library().ok_or(
        "a `clock` fault needs libfaketime (Debian package libfaketime): no libfaketimeMT.so.1 or libfaketime.so.1 found in its usual places",
    )?;
    let file = faketime::control_file(&trial.dir, target);
    let entry = Entry::ClockFile { trial: trial.index, target: target.to_string(), path: file.clone() };
    trial.run.journal.append(&entry).map_err(|e| format!("cannot journal the clock's control file: {e}"))?;
    std::fs::create_dir_all(file.parent().unwrap_or(&trial.dir))
        .and_then(|()| faketime::set(&file, &faketime::spec(0, None)))
        .map_err(|e| format!("cannot write the clock's control file {}: {e}", file.display()))?;
    Ok((library, file))
}

/// Where a target is reached: its namespace's address, or loopback.
fn host_of(trial: &Trial, name: &str) -> IpAddr {
    let on_host = trial.plan.targets.iter().find(|t| t.name == name).and_then(|t| t.host.as_deref());
    if let Some(link) = on_host.and_then(|h| trial.run.hosts?.link(h)) {
        return link.address;
    }
    let member = trial.run.network.and_then(|n| n.member(name));
    if let Some(m) = member {
        return IpAddr::V4(m.address);
    }
    // A container the run created here, at its own address unless the
    // scenario chose its published port.
    let reached_at_its_address = trial.plan.targets.iter().any(|t| t.name == name && t.reach == Reach::Address);
    let own = trial.run.containers.and_then(|c| c.network.as_ref()?.address(name));
    match own {
        Some(address) if reached_at_its_address => address,
        _ => IpAddr::from([127, 0, 0, 1]),
    }
}

/// The port a target's probe reaches must be free before the target starts:
/// if another process holds it, the probe would measure that process (a
/// target that cannot bind it restarts in a loop, unseen, while the other
/// answers healthy).
fn check_port_free(t: &TargetPlan, allocated: u16) -> Result<(), EnvError> {
    match probe_port_taken(t, IpAddr::from([127, 0, 0, 1]), allocated) {
        None => Ok(()),
        Some((port, e)) => Err(EnvError::PortInUse { target: t.name.clone(), port, reason: e.to_string() }),
    }
}

/// Waits until `target` is healthy for the first time. A target that exits
/// before that is an environment error at once (what answered the probe
/// meanwhile may not have been the target), not after a start-up timeout
/// spent in a crash loop.
fn await_start_up(
    t: &TargetPlan,
    target: &dyn Target,
    sampler: &Sampler,
    (deadline, timeout): (Instant, Duration),
    trial: &Trial,
) -> Result<(), TrialStop> {
    // Every sample since the sampler began is of this target: a window
    // that held while an earlier target was awaited proves this one ready
    // (targets start up side by side, not one after another).
    let begin = sampler.started;
    let restarted = || target.host_process().is_some_and(|p| p.incarnation > 1);
    let healthy = loop {
        let slice = deadline.min(Instant::now() + Duration::from_millis(50));
        let healthy = sampler.health.wait_sustained(begin, t.probe.healthy_after, slice, &trial.cancel);
        if healthy.is_some() || restarted() || Instant::now() >= deadline || trial.cancel.is_cancelled() {
            break healthy;
        }
    };
    if restarted() {
        let starts = target.host_process().map_or(2, |p| p.incarnation);
        let logs = target.last_log_lines(10).join("\n  ");
        return Err(TrialStop::Environment(EnvError::CrashedAtStart {
            target: t.name.clone(),
            incarnations: starts,
            logs,
        }));
    }
    match healthy {
        Some(_) => Ok(()),
        None if trial.cancel.is_cancelled() => Err(TrialStop::Interrupted),
        None => {
            let logs = target.last_log_lines(10).join("\n  ");
            // What the probe said first: the target's output may not say
            // why it is not healthy (a 404, a refused connection).
            let probe = sampler
                .health
                .last_failure()
                .map_or("its probe got no answer".into(), |why| format!("its probe's last failure: {why}"));
            Err(TrialStop::Environment(EnvError::NeverHealthy { target: t.name.clone(), timeout, probe, logs }))
        }
    }
}

/// The directory of the scenario file, absolute (`{scenario_dir}`): where a
/// scenario keeps the programs it runs.
pub(super) fn scenario_dir(source: &std::path::Path) -> std::path::PathBuf {
    let dir = source.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::fake::{with_trial, FakeTarget, Log};

    const SCENARIO: &str = r#"
name = "fake"
[target.a]
command = ["true"]
probe = { kind = "tcp" }
[target.b]
command = ["true"]
probe = { kind = "tcp" }
"#;

    /// The order is the type's: every target stops (side by side; their
    /// last words are kept) before what the faults left in effect is healed, so that a
    /// restored file is never rewritten by a target still running.
    #[test]
    fn tear_down_stops_every_target_before_healing_what_faults_left() {
        with_trial(SCENARIO, |trial| {
            let log = Log::default();
            let mut env = TrialEnv::default();
            for name in ["a", "b"] {
                env.targets.push(Arc::new(FakeTarget { name: name.into(), log: Arc::clone(&log), on_settle: None }));
            }
            let healer = Arc::clone(&log);
            env.lasting.lock().unwrap().push(FaultGuard::new(move || healer.lock().unwrap().push("heal".into())));
            env.tear_down(trial);
            // The targets stop side by side, in either order.
            let mut done = log.lock().unwrap().clone();
            done[..2].sort();
            assert_eq!(done, ["stop a", "stop b", "heal"]);
            let events = trial.recorder.finish(Instant::now()).unwrap().events;
            let logs: Vec<_> = events
                .iter()
                .filter_map(|e| match &e.kind {
                    EventKind::TargetLog { target, lines } => Some((target.as_str(), lines[0].as_str())),
                    _ => None,
                })
                .collect();
            assert_eq!(logs, [("a", "the last words of a"), ("b", "the last words of b")]);
        });
    }
}
