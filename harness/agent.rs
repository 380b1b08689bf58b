//! `crashlab agent DIR`: the host-local half of a remote target. The run
//! copies this very binary to each `[host.NAME]` and runs it there over
//! SSH; it answers the control node's requests on stdin/stdout (see
//! [`crate::targets::remote::protocol`]) by doing locally what crashlab
//! does locally: it runs each process target with the same backend (and
//! each container target in this host's engine),
//! journals what it starts in its own journal (`DIR/run/faults.journal`,
//! so that `crashlab cleanup DIR/run` on the host heals after it), and
//! sends the targets' events back as they happen, dated on its clock.
//! When its stdin closes (the control node ended or died), it stops every
//! target it runs.

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::engine::Engine;
use crate::fault::layer::StorageLayer;
use crate::fault::{self, FaultContext, FaultGuard};
use crate::history::{EventKind, Recorder};
use crate::journal::{Entry, Journal};
use crate::scenario::{self, Plan, TargetKind, TargetPlan};
use crate::targets::remote::protocol::{
    monotonic_ns, Answer, ExitStatus, Injection, Message, Op, Placement, Request, PROTOCOL, RUN_SUBDIR,
};
use crate::targets::{procfs, reaper, CommandKind, ContainerTarget, ProcessTarget, Target, TargetContext};

struct Agent {
    run_dir: PathBuf,
    journal: Arc<Journal>,
    out: Arc<Mutex<std::io::Stdout>>,
    plan: Mutex<Option<(String, Arc<Plan>)>>,
    targets: Mutex<HashMap<(u32, String), Arc<dyn Target>>>,
    /// This host's engine and the label of the containers made in it, once
    /// a container target asked for them; each target's image in it.
    engine: Mutex<Option<(Arc<Engine>, String)>>,
    images: Mutex<HashMap<String, String>>,
    /// Faults in effect, until the control node heals them.
    guards: Mutex<HashMap<(u32, usize), FaultGuard>>,
    recorders: Mutex<HashMap<u32, Recorder>>,
    /// Partitions' rules in effect on this host, until unblocked.
    blocks: Mutex<HashMap<(u32, usize), Vec<Rule>>>,
    /// Storage layers (FUSE) over targets' data dirs, for the faults that
    /// act through one.
    layers: Mutex<HashMap<(u32, String), Arc<StorageLayer>>>,
}

/// Serves one control node until its stdin closes; the exit code.
pub fn agent_main(dir: &Path) -> i32 {
    match serve(dir) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("crashlab agent: {e}");
            3
        }
    }
}

fn serve(dir: &Path) -> Result<(), String> {
    reaper::become_subreaper().map_err(|e| format!("cannot become a child subreaper: {e}"))?;
    let (run_dir, _lock) = crate::run_dir::claim_out_dir(&dir.join(RUN_SUBDIR), false).map_err(|e| e.to_string())?;
    let journal = Arc::new(Journal::create(&run_dir).map_err(|e| format!("cannot create the journal: {e}"))?);
    let agent = Arc::new(Agent {
        run_dir,
        journal,
        out: Arc::new(Mutex::new(std::io::stdout())),
        plan: Mutex::default(),
        targets: Mutex::default(),
        engine: Mutex::default(),
        images: Mutex::default(),
        guards: Mutex::default(),
        recorders: Mutex::default(),
        blocks: Mutex::default(),
        layers: Mutex::default(),
    });
    let mut lines = std::io::stdin().lock().lines();
    let hello = lines.next().ok_or("stdin closed before the first request")?.map_err(|e| e.to_string())?;
    let hello: Request = serde_json::from_str(&hello).map_err(|e| format!("not a request: {e}"))?;
    let Op::Hello { protocol, version } = hello.op else { return Err("the first request must be hello".into()) };
    let pid = std::process::id() as i32;
    let start_time = procfs::stat(pid).map_or(0, |s| s.start_time);
    let mine = env!("CARGO_PKG_VERSION").to_string();
    agent.send(&Message::Reply {
        id: hello.id,
        answer: Answer::Hello { protocol: PROTOCOL, version: mine.clone(), pid, start_time },
    });
    if protocol != PROTOCOL {
        return Err(format!("the control node speaks protocol {protocol} (crashlab {version}), this agent {PROTOCOL}"));
    }
    for line in lines {
        let Ok(line) = line else { break };
        let request: Request = match serde_json::from_str(&line) {
            Ok(r) => r,
            Err(e) => return Err(format!("not a request: {e}: {line}")),
        };
        // Requests run side by side: a restart waits for a stop, an exec
        // for its command, while signals must go at once.
        let agent = Arc::clone(&agent);
        std::thread::spawn(move || {
            let answer = agent.handle(request.op).unwrap_or_else(|error| Answer::Error { error });
            agent.send(&Message::Reply { id: request.id, answer });
        });
    }
    // The control node is gone: nothing of ours stays in effect.
    let guards: Vec<_> = agent.guards.lock().unwrap().drain().map(|(_, g)| g).collect();
    for guard in guards {
        guard.heal();
    }
    let blocks: Vec<_> = agent.blocks.lock().unwrap().drain().collect();
    for ((trial, fault), rules) in blocks {
        agent.unblock(trial, fault, &rules);
    }
    let targets: Vec<_> = agent.targets.lock().unwrap().drain().map(|(_, t)| t).collect();
    for target in targets {
        target.stop();
    }
    let layers: Vec<_> = agent.layers.lock().unwrap().drain().map(|(_, l)| l).collect();
    for layer in layers {
        if let Err(e) = layer.unmount() {
            eprintln!("crashlab agent: {e}");
        }
    }
    let _ = agent.journal.append(&Entry::Finished);
    Ok(())
}

impl Agent {
    fn send(&self, message: &Message) {
        let mut line = serde_json::to_string(message).expect("a message serializes");
        line.push('\n');
        let mut out = self.out.lock().unwrap();
        let _ = out.write_all(line.as_bytes()).and_then(|()| out.flush());
    }

    fn target(&self, trial: u32, name: &str) -> Result<Arc<dyn Target>, String> {
        let targets = self.targets.lock().unwrap();
        targets.get(&(trial, name.to_string())).cloned().ok_or_else(|| format!("no target `{name}` in trial {trial}"))
    }

    fn handle(self: &Arc<Self>, op: Op) -> Result<Answer, String> {
        let text = |e: crate::targets::TargetError| e.to_string();
        let process = |p| Ok(Answer::Process { process: p });
        match op {
            Op::Hello { .. } => Err("hello again".into()),
            Op::Clock => Ok(Answer::Clock { at_ns: monotonic_ns() }),
            Op::Start(placement) => {
                self.start(placement)?;
                Ok(Answer::Done)
            }
            Op::Signal { trial, target, signal, scope } => {
                let signal = Signal::try_from(signal).map_err(|e| e.to_string())?;
                let s = self.target(trial, &target)?.signal(signal, scope).map_err(text)?;
                Ok(Answer::Signalled { process: s.process, at_ns: ns_of(s.at), processes: s.processes })
            }
            Op::Pause { trial, target } => process(Some(self.target(trial, &target)?.pause().map_err(text)?)),
            Op::Resume { trial, target, which } => {
                self.target(trial, &target)?.resume(which).map_err(text)?;
                Ok(Answer::Done)
            }
            Op::Restart { trial, target } => process(Some(self.target(trial, &target)?.restart().map_err(text)?)),
            Op::Hold { trial, target, signal } => {
                let signal = Signal::try_from(signal).map_err(|e| e.to_string())?;
                process(self.target(trial, &target)?.hold(signal))
            }
            Op::Release { trial, target } => {
                self.target(trial, &target)?.release();
                Ok(Answer::Done)
            }
            Op::Stop { trial, target } => {
                self.target(trial, &target)?.stop();
                let layer = self.layers.lock().unwrap().remove(&(trial, target));
                match layer.map(|l| l.unmount()) {
                    Some(Err(e)) => Err(e),
                    _ => Ok(Answer::Done),
                }
            }
            Op::Exec { trial, target, argv, timeout_ms, step } => {
                let kind = if step { CommandKind::Step } else { CommandKind::Probe };
                let target = self.target(trial, &target)?;
                let out = target.exec(&argv, Duration::from_millis(timeout_ms), kind).map_err(text)?;
                let exit = out.exit.map(|e| match e {
                    reaper::Exit::Code(c) => ExitStatus::Code(c),
                    reaper::Exit::Signal(s) => ExitStatus::Signal(s),
                });
                Ok(Answer::Output { exit, stdout: out.stdout, stderr: out.stderr, timed_out: out.timed_out })
            }
            Op::Current { trial, target } => process(self.target(trial, &target)?.host_process()),
            Op::Logs { trial, target, lines } => {
                Ok(Answer::Logs { lines: self.target(trial, &target)?.last_log_lines(lines) })
            }
            Op::Inject(injection) => {
                self.inject(injection)?;
                Ok(Answer::Done)
            }
            Op::Block { trial, fault, rules } => {
                let rules = self.block(trial, fault, rules)?;
                self.blocks.lock().unwrap().insert((trial, fault), rules);
                Ok(Answer::At { at_ns: monotonic_ns() })
            }
            Op::Unblock { trial, fault } => {
                let rules = self.blocks.lock().unwrap().remove(&(trial, fault)).unwrap_or_default();
                Ok(Answer::Dropped { packets: self.unblock(trial, fault, &rules) })
            }
            Op::Look { trial, fault } => {
                if let Some(guard) = self.guards.lock().unwrap().get_mut(&(trial, fault)) {
                    guard.look();
                }
                Ok(Answer::Done)
            }
            Op::Heal { trial, fault } => {
                let guard = self.guards.lock().unwrap().remove(&(trial, fault));
                if let Some(guard) = guard {
                    guard.heal();
                }
                Ok(Answer::Done)
            }
        }
    }

    /// Runs the fault as this binary runs it on a local target, here.
    fn inject(&self, i: Injection) -> Result<(), String> {
        let plan = self.plan.lock().unwrap().as_ref().map(|(_, p)| Arc::clone(p)).ok_or("no scenario yet")?;
        let planned = plan.faults.get(i.fault).ok_or_else(|| format!("no fault #{}", i.fault + 1))?;
        let kind = match i.drawn {
            Some((kind, target)) => planned.drawn(kind, target, &plan.targets).kind,
            None => planned.kind.clone(),
        };
        let target = self.target(i.trial, &i.target)?;
        let recorder = self.recorders.lock().unwrap().get(&i.trial).cloned().ok_or("the trial has no target here")?;
        let ctx = FaultContext {
            trial: i.trial,
            index: i.fault,
            kind: kind.name(),
            target,
            journal: Arc::clone(&self.journal),
            recorder,
            scheduled_ms: i.scheduled_ms,
            seed: i.seed,
            trial_dir: self.run_dir.join(format!("trial-{:03}", i.trial)),
            chosen: i.chosen,
        };
        let layer = self.layers.lock().unwrap().get(&(i.trial, i.target.clone())).cloned();
        let guard = fault::build(&kind, &HostResources { layer }, &i.target)
            .map_err(|kind| ctx.error(kind))
            .and_then(|fault| fault.inject(&ctx))
            .map_err(|e| e.to_string())?;
        self.guards.lock().unwrap().insert((i.trial, i.fault), guard);
        Ok(())
    }

    /// A partition's rules on this host, each journaled before it is
    /// inserted and marked with this run's token and the fault (what
    /// `cleanup` checks before it deletes one).
    fn block(&self, trial: u32, fault: usize, rules: Vec<Rule>) -> Result<Vec<Rule>, String> {
        let token = reaper::run_token().ok_or("no run token")?;
        let mut added: Vec<Rule> = Vec::new();
        for rule in rules {
            let rule: Rule = rule.into_iter().chain(marked(&token, trial, fault)).collect();
            let entry = Entry::PartitionRule { trial, fault, namespace: String::new(), rule: rule.clone() };
            let inserted = self
                .journal
                .append(&entry)
                .map_err(|e| format!("cannot journal a rule: {e}"))
                .and_then(|()| iptables("-I", &rule));
            if let Err(e) = inserted {
                self.unblock(trial, fault, &added);
                return Err(e);
            }
            added.push(rule);
        }
        Ok(added)
    }

    /// Deletes a partition's rules, after reading how many packets they
    /// dropped (iptables' counters, by the fault's mark).
    fn unblock(&self, trial: u32, fault: usize, rules: &[Rule]) -> u64 {
        let token = reaper::run_token().unwrap_or_default();
        let mark = format!("/* {} */", marked(&token, trial, fault)[3]);
        let mut dropped = 0;
        for chain in ["INPUT", "OUTPUT", "FORWARD"] {
            let mut list = std::process::Command::new("iptables");
            list.args(["-w", "-nvxL", chain]);
            let listing = reaper::run(&mut list, Duration::from_secs(10)).map(|o| o.stdout).unwrap_or_default();
            let ours = listing.lines().filter(|l| l.contains(&mark));
            dropped += ours.filter_map(|l| l.split_whitespace().next()?.parse::<u64>().ok()).sum::<u64>();
        }
        let mut all_gone = true;
        for rule in rules {
            if let Err(e) = iptables("-D", rule) {
                eprintln!("crashlab agent: {e}");
                all_gone = false;
            }
        }
        // A rule still there stays in the journal's care: cleanup deletes it.
        if all_gone {
            let _ = self.journal.append(&Entry::Healed { trial, fault });
        }
        dropped
    }

    /// A recorder that sends trial `trial`'s events to the control node as
    /// they happen, dated on this host's clock.
    fn recorder_for(&self, trial: u32) -> Recorder {
        let out = Arc::clone(&self.out);
        let forward = Arc::new(move |at: Instant, kind: EventKind| {
            let mut line =
                serde_json::to_string(&Message::Event { trial, at_ns: ns_of(at), kind }).expect("serializes");
            line.push('\n');
            let mut out = out.lock().unwrap();
            let _ = out.write_all(line.as_bytes()).and_then(|()| out.flush());
        });
        let recorder = Recorder::forwarding(trial, forward);
        self.recorders.lock().unwrap().insert(trial, recorder.clone());
        recorder
    }

    /// As the runner does on its own machine: the target's data dirs
    /// checked and journaled before anything acts on them, and the storage
    /// layer mounted over the first, for the whole trial, if a fault acts
    /// through one.
    fn prepare_data_dir(&self, plan: &Plan, target: &dyn Target, trial: u32) -> Result<(), String> {
        let name = target.name();
        let mut data_dirs = Vec::new();
        for dir in target.data_dirs() {
            let dir = dir.canonicalize().map_err(|e| format!("data dir {}: {e}", dir.display()))?;
            crate::confine::check_data_dir(&dir, &self.run_dir).map_err(|e| e.to_string())?;
            let entry = Entry::DataDir { trial, target: name.to_string(), path: dir.clone() };
            self.journal.note(&entry).map_err(|e| format!("cannot journal a data dir: {e}"))?;
            data_dirs.push(dir);
        }
        if plan.faults.iter().any(|f| f.target == name && f.kind.needs_layer()) {
            let dir = data_dirs.first().ok_or("no data dir to mount a storage layer over")?;
            let layer = StorageLayer::mount(dir, trial, name, Arc::clone(&self.journal)).map_err(|e| e.to_string())?;
            self.layers.lock().unwrap().insert((trial, name.to_string()), Arc::new(layer));
        }
        Ok(())
    }

    /// The scenario as the control node compiled it, kept beside the
    /// journal (as a run directory keeps it).
    fn plan(&self, text: &str) -> Result<Arc<Plan>, String> {
        let mut cached = self.plan.lock().unwrap();
        if let Some((_, plan)) = cached.as_ref().filter(|(known, _)| known == text) {
            return Ok(Arc::clone(plan));
        }
        let path = self.run_dir.join(crate::run_dir::SCENARIO_FILE);
        std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        let plan = Arc::new(scenario::load_stored(&path).map_err(|e| e.to_string())?);
        *cached = Some((text.to_string(), Arc::clone(&plan)));
        Ok(plan)
    }

    /// This host's engine (the `[host.NAME]`'s `engine`, else its default),
    /// connected at the first container target, and the label its
    /// containers carry: journaled before any carries it, so that cleanup
    /// on this host finds them all.
    fn engine(&self, plan: &Plan, t: &TargetPlan) -> Result<(Arc<Engine>, String), String> {
        let mut engine = self.engine.lock().unwrap();
        if let Some((engine, label)) = engine.as_ref() {
            return Ok((Arc::clone(engine), label.clone()));
        }
        let socket = plan.hosts.iter().find(|h| t.host.as_ref() == Some(&h.name)).and_then(|h| h.engine.clone());
        let connected = Engine::connect_at(socket.as_deref()).map_err(|e| format!("{e} (on this host)"))?;
        // The agent's directory name: this run's token and the host's name.
        let label = self.run_dir.parent().and_then(Path::file_name).map_or("crashlab".into(), |n| n.to_string_lossy());
        let label = format!("crashlab-{label}");
        let entry = Entry::ContainerLabel { run_label: label.clone(), engine: socket };
        self.journal.append(&entry).map_err(|e| format!("cannot journal the containers' label: {e}"))?;
        *engine = Some((Arc::new(connected), label.clone()));
        Ok((Arc::clone(&engine.as_ref().expect("just set").0), label))
    }

    /// Target `t`'s image in this host's engine, found (or built) once.
    fn image(&self, engine: &Engine, t: &TargetPlan) -> Result<String, String> {
        let mut images = self.images.lock().unwrap();
        if let Some(image) = images.get(&t.name) {
            return Ok(image.clone());
        }
        let image = crate::image::for_target(engine, t)?;
        images.insert(t.name.clone(), image.clone());
        Ok(image)
    }

    fn start(self: &Arc<Self>, placement: Placement) -> Result<(), String> {
        let Placement { trial, scenario, target: name, port, host, hosts, ports } = placement;
        let name = name.as_str();
        let plan = self.plan(&scenario)?;
        let t = plan.targets.iter().find(|t| t.name == name).ok_or_else(|| format!("no target `{name}`"))?;
        let trial_dir = self.run_dir.join(format!("trial-{trial:03}"));
        std::fs::create_dir_all(&trial_dir).map_err(|e| format!("cannot create {}: {e}", trial_dir.display()))?;
        if plan.faults.iter().any(|f| f.may_hog(name)) {
            let program = crate::fault::hog::STRESS_NG;
            crate::scenario::workload::find_program(program, Path::new("."))
                .map_err(|e| format!("a `hog` fault runs {program} (Debian package stress-ng) on this host: {e}"))?;
        }
        // Ports are allocated on the control node: one taken here would
        // answer the probes in the target's place.
        if let Some((port, e)) = crate::targets::probe_port_taken(t, host, port) {
            return Err(format!(
                "port {port} is already in use on this host at {host} ({e}): the probes would measure whatever \
                 holds it, not target `{name}`; stop that process, or let crashlab allocate the port (`{{port}}`)"
            ));
        }
        let recorder = self.recorder_for(trial);
        let ctx = TargetContext {
            trial,
            run_dir: self.run_dir.clone(),
            trial_dir,
            port,
            recorder,
            journal: Arc::clone(&self.journal),
            proxy_ports: Vec::new(),
            namespace: None,
            host,
            hosts,
            ports,
            scenario_dir: self.run_dir.clone(),
            faketime: None,
        };
        let target: Arc<dyn Target> = match t.kind {
            TargetKind::Container => {
                let (engine, label) = self.engine(&plan, t)?;
                let image = self.image(&engine, t)?;
                let target = ContainerTarget::new(t, ctx, engine, image, label).map_err(|e| e.to_string())?;
                Arc::new(target.published_on(host))
            }
            _ => Arc::new(ProcessTarget::new(t, ctx).map_err(|e| e.to_string())?),
        };
        self.prepare_data_dir(&plan, target.as_ref(), trial)?;
        let mut targets = self.targets.lock().unwrap();
        // Those of earlier trials are stopped and done with.
        targets.retain(|(t, _), _| *t >= trial);
        self.recorders.lock().unwrap().retain(|t, _| *t >= trial);
        targets.insert((trial, name.to_string()), Arc::clone(&target));
        drop(targets);
        target.start().map_err(|e| e.to_string())
    }
}

/// What the agent has for a fault: the storage layer over its target's
/// data dir, if the scenario asked for one. It runs no proxy and no
/// namespaces (yet): faults that need them are refused when the scenario
/// is read.
struct HostResources {
    layer: Option<Arc<StorageLayer>>,
}

impl fault::Resources for HostResources {
    fn layer(&self, _: &str) -> Option<Arc<StorageLayer>> {
        self.layer.clone()
    }
    fn proxy(&self, _: &str) -> Option<Arc<crate::proxy::Proxy>> {
        None
    }
    fn network(&self) -> Option<Arc<crate::network::Network>> {
        None
    }
}

/// An iptables rule, as its arguments (`INPUT -s ADDRESS -j DROP ...`).
type Rule = Vec<String>;

/// The comment that marks a rule as the run's (its token) and a fault's.
pub fn marked(token: &str, trial: u32, fault: usize) -> [String; 4] {
    ["-m", "comment", "--comment", &format!("crashlab-{token}-t{trial}f{fault}")].map(String::from)
}

/// `iptables -w OP RULE...` on this host.
pub fn iptables(op: &str, rule: &[String]) -> Result<(), String> {
    let mut command = std::process::Command::new("iptables");
    command.arg("-w").arg(op).args(rule);
    let out = reaper::run(&mut command, Duration::from_secs(10)).map_err(|e| format!("cannot run iptables: {e}"))?;
    match out.exit {
        Some(exit) if exit.success() => Ok(()),
        _ => Err(format!("iptables {op} {}: {}", rule.join(" "), out.stderr.trim())),
    }
}

/// An instant of this process as CLOCK_MONOTONIC nanoseconds.
fn ns_of(at: Instant) -> u64 {
    let (now, mono) = (Instant::now(), monotonic_ns());
    match now.checked_duration_since(at) {
        Some(ago) => mono.saturating_sub(ago.as_nanos() as u64),
        None => mono + (at - now).as_nanos() as u64,
    }
}
