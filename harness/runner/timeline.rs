//! A trial's timeline, from origin = 0 ms: the workload, backups and faults
//! on their schedule, the recovery procedure once the last timed fault is
//! in, all under one scope; then the wait for recovery and the read-back.

use std::net::{IpAddr, SocketAddr};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use super::env::TrialEnv;
use super::recover;
use super::Trial;
use crate::fault::layer::StorageLayer;
use crate::fault::remote::{HostPartition, RemoteFault};
use crate::fault::{self, FaultContext};
use crate::history::EventKind;
use crate::network::Network;
use crate::proxy::Proxy;
use crate::scenario::{FaultKind, OnAHost, TargetRef};
use crate::workload::{self, Pace, Workload};

/// When each fault and backup happens, and what each menu fault is,
/// drawn from the trial's seed.
pub(super) struct Schedule {
    pub faults: Vec<Duration>,
    pub backups: Vec<Duration>,
    /// For a menu fault: the indices of its kind and target in the menu.
    pub drawn: Vec<Option<(usize, usize)>>,
}

/// Injects a plan's faults into a trial's environment.
struct FaultInjector<'a> {
    trial: &'a Trial<'a>,
    env: &'a TrialEnv,
    drawn: &'a [Option<(usize, usize)>],
}

impl FaultInjector<'_> {
    /// Injects fault `i`, then heals it after its duration (holding the
    /// caller) or keeps its guard to the end of the trial. `injected` is
    /// told as soon as the fault is in, or failed.
    fn inject(&self, i: usize, scheduled: Duration, injected: &dyn Fn()) -> Result<(), String> {
        let (trial, env) = (self.trial, self.env);
        let planned = &trial.plan.faults[i];
        let (chosen, note) = match &planned.chosen_by {
            Some(argv) => match self.choose(argv) {
                Ok((target, note)) => (Some(planned.aimed_at(target, &trial.plan.targets)), Some(note)),
                Err(error) => {
                    injected();
                    eprintln!("crashlab: trial {}: fault #{}: {error}", trial.index, i + 1);
                    let target = planned.target_name();
                    trial.recorder.record(EventKind::FaultFailed { fault: i, target, error: error.clone() });
                    return Err(error);
                }
            },
            None => match self.drawn.get(i).copied().flatten() {
                Some((kind, target)) => {
                    let drawn = planned.drawn(kind, target, &trial.plan.targets);
                    let note = describe_draw(planned, &drawn);
                    (Some(drawn), Some(note))
                }
                None => (None, None),
            },
        };
        let f = chosen.as_ref().unwrap_or(planned);
        let ctx = FaultContext {
            chosen: note,
            trial: trial.index,
            index: i,
            kind: f.kind.name(),
            target: env.target(&f.target),
            journal: Arc::clone(trial.run.journal),
            recorder: trial.recorder.clone(),
            scheduled_ms: scheduled.as_secs_f64() * 1000.0,
            seed: trial.seed,
            trial_dir: trial.dir.clone(),
        };
        let on_a_host = ctx.target.remote().is_some().then(|| f.kind.on_a_host()).flatten();
        let fault = match (on_a_host, &f.kind) {
            (Some(OnAHost::Agent), _) => {
                Ok(Box::new(RemoteFault { drawn: self.drawn.get(i).copied().flatten() }) as Box<dyn fault::Fault>)
            }
            (Some(OnAHost::EachHost), FaultKind::Partition(plan)) => {
                Ok(Box::new(HostPartition { plan: plan.clone(), targets: fault::Resources::targets(self) }) as _)
            }
            _ => fault::build(&f.kind, self, &f.target).map_err(|kind| ctx.error(kind)),
        };
        let result = fault.and_then(|fault| fault.inject(&ctx));
        injected();
        let guard = result.map_err(|e| {
            let error = e.to_string();
            eprintln!("crashlab: trial {}: {error}", trial.index);
            let failed = EventKind::FaultFailed { fault: i, target: f.target_name(), error: error.clone() };
            ctx.recorder.record(failed);
            error
        })?;
        match f.kind.heal_after() {
            Some(duration) => {
                trial.cancel.sleep_until(Instant::now() + duration);
                guard.heal();
            }
            None => env.lasting.lock().unwrap().push(guard),
        }
        Ok(())
    }

    /// Runs a fault's chooser: the target it names, and what the fault's
    /// detail says of the choice.
    fn choose(&self, argv: &[String]) -> Result<(TargetRef, String), String> {
        let plan = &self.trial.plan;
        // Any target fills `{host.NAME}`, `{port.NAME}`, `{scenario_dir}`...
        // alike; the compiler refused the placeholders of one target alone.
        let argv = self.env.targets[0].render(argv);
        let shown = argv.join(" ");
        let dir = super::env::scenario_dir(&plan.source_path);
        let mut command = crate::workload::command::scenario_command(&argv, &dir);
        let out = crate::targets::reaper::run(&mut command, CHOOSER_TIMEOUT)
            .map_err(|e| format!("cannot run the target's chooser `{shown}`: {e}"))?;
        if !out.exit.is_some_and(crate::targets::reaper::Exit::success) {
            let how = out.exit.map_or(format!("no exit within {CHOOSER_TIMEOUT:?}"), |e| e.to_string());
            return Err(format!("the target's chooser `{shown}` failed ({how}): {}", out.stderr.trim()));
        }
        let name = out.stdout.trim();
        match plan.targets.iter().position(|t| t.name == name) {
            Some(index) => {
                Ok((TargetRef { index, name: name.to_string() }, format!("target chosen by `{shown}`: {name}")))
            }
            None => {
                let names: Vec<&str> = plan.targets.iter().map(|t| t.name.as_str()).collect();
                Err(format!("the target's chooser `{shown}` printed `{name}`, not a target ({})", names.join(", ")))
            }
        }
    }
}

/// What a fault's detail says of its draw from a menu.
fn describe_draw(menu_fault: &crate::scenario::FaultPlan, drawn: &crate::scenario::FaultPlan) -> String {
    let menu = menu_fault.menu.as_ref().expect("a menu fault");
    let kinds: Vec<&str> = menu.kinds.iter().map(|k| k.name().as_str()).collect();
    let targets: Vec<&str> = menu.targets.iter().map(|t| t.name.as_str()).collect();
    format!(
        "drawn with the trial's seed from [{}] x [{}]: {} {}",
        kinds.join(", "),
        targets.join(", "),
        drawn.kind.name(),
        drawn.target
    )
}

/// How long a fault's chooser may take: it is due now.
const CHOOSER_TIMEOUT: Duration = Duration::from_secs(10);

impl fault::Resources for FaultInjector<'_> {
    fn layer(&self, target: &str) -> Option<Arc<StorageLayer>> {
        self.env.layer(target)
    }

    fn proxy(&self, name: &str) -> Option<Arc<Proxy>> {
        self.env.proxy(name)
    }

    fn network(&self) -> Option<Arc<Network>> {
        self.trial.run.network.cloned()
    }

    fn targets(&self) -> Vec<Arc<dyn crate::targets::Target>> {
        self.env.targets.clone()
    }
}

/// Runs the timeline from `origin`, then waits for every target to recover
/// and reads the store back.
pub(super) fn run(trial: &Trial, env: &TrialEnv, schedule: &Schedule, origin: Instant) {
    let workload = build_workload(trial, env);
    let mut written = workload::Counts::default();
    trial.recorder.record_at(origin, EventKind::WorkloadStarted);
    let injector = FaultInjector { trial, env, drawn: &schedule.drawn };
    thread::scope(|scope| {
        for (b, at) in trial.plan.backups.iter().zip(&schedule.backups) {
            let target = env.target(&b.target);
            scope.spawn(move || {
                if trial.cancel.sleep_until(origin + *at) {
                    recover::take_backup(b, target.as_ref(), &trial.dir, &trial.recorder);
                }
            });
        }
        // Each timed fault's thread reports once its fault is in (or
        // failed): the recovery procedure starts after the last one.
        let (injected_tx, injected_rx) = mpsc::channel::<()>();
        let timed: Vec<usize> = (0..trial.plan.faults.len()).filter(|i| !trial.plan.faults[*i].in_procedure).collect();
        for &i in &timed {
            let (at, injector, injected_tx) = (schedule.faults[i], &injector, injected_tx.clone());
            scope.spawn(move || {
                if trial.cancel.sleep_until(origin + at) {
                    let _ = injector.inject(i, at, &|| {
                        let _ = injected_tx.send(());
                    });
                }
            });
        }
        drop(injected_tx);
        if !trial.plan.recover.is_empty() {
            let (injector, count) = (&injector, timed.len());
            scope.spawn(move || {
                // All faults in (a cancelled trial ends the wait early).
                if injected_rx.iter().take(count).count() == count {
                    run_procedure(trial, env, origin, injector);
                }
            });
        }
        if let (Some(w), Some(plan_w)) = (&workload, &trial.plan.workload) {
            let pace = Pace::Rate(plan_w.rate);
            written = workload::drive(
                w.as_ref(),
                pace,
                plan_w.duration,
                plan_w.connections,
                Some(&trial.recorder),
                &trial.cancel,
            );
            trial.recorder.record(EventKind::WorkloadEnded);
        }
    });
    if !trial.cancel.is_cancelled() {
        await_recovery(trial, env, workload.as_deref(), written);
    }
}

fn run_procedure(trial: &Trial, env: &TrialEnv, origin: Instant, injector: &FaultInjector) {
    let healthy_after = |name: &str| trial.plan.target(name).map_or(1, |t| t.probe.healthy_after);
    recover::Procedure {
        steps: &trial.plan.recover,
        targets: &env.targets,
        samplers: &env.samplers,
        healthy_after: &healthy_after,
        trial_dir: &trial.dir,
        recorder: &trial.recorder,
        inject: &|i| injector.inject(i, origin.elapsed(), &|| {}),
        operator: trial.run.operator,
    }
    .run(&trial.cancel);
}

/// The plan's workload, aimed at its target (or the proxy it goes through).
fn build_workload(trial: &Trial, env: &TrialEnv) -> Option<Box<dyn Workload>> {
    let w = trial.plan.workload.as_ref()?;
    let addr = match &w.via {
        Some(proxy) => SocketAddr::new(IpAddr::from([127, 0, 0, 1]), env.proxy_port(proxy)),
        None => SocketAddr::new(env.host(&w.target), env.target(&w.target).port()),
    };
    let target = env.target(&w.target);
    Some(workload::build(w, addr, &|argv| target.render(argv)))
}

/// Each target must show a sustained healthy window after the last change
/// to any target; then the store is read back. A window that began after
/// the latest change and still holds has proven it already: it is not
/// proven again. A change that happened after the window began but was
/// recorded only once the window was seen (a container's restart, dated
/// by its engine, recorded once its start returned: its service may answer
/// before) needs a window after it, as the checks will. One that happens
/// later (a crash loop) is not waited out.
fn await_recovery(trial: &Trial, env: &TrialEnv, workload: Option<&dyn Workload>, written: workload::Counts) {
    let now = Instant::now();
    let deadline = now + trial.plan.trials.recovery_timeout;
    for ((t, sampler), target) in trial.plan.targets.iter().zip(&env.samplers).zip(&env.targets) {
        let n = t.probe.healthy_after;
        target.settle();
        let changed = trial.recorder.last_at(Instant::now(), EventKind::changes_a_target);
        if changed.is_some_and(|since| sampler.health.holds_sustained(since, n)) {
            continue;
        }
        let mut after = now;
        while let Some(window) = sampler.health.wait_sustained(after, n, deadline, &trial.cancel) {
            let seen = Instant::now();
            target.settle();
            match trial.recorder.last_at(seen, EventKind::changes_a_target) {
                Some(change) if change > window => after = change,
                _ => break,
            }
        }
    }
    if let (Some(w), Some(plan_w)) = (workload, &trial.plan.workload) {
        let target = plan_w.target.to_string();
        match read_back(w, written.issued) {
            Ok(items) => {
                if items.is_empty() && written.ok > 0 {
                    trial.recorder.warn(format!(
                        "the read-back found none of the {} acknowledged writes: all of them were lost, or the \
                         read-back looks in the wrong place (its `select`, `read` or `read_back`)",
                        written.ok
                    ));
                }
                trial.recorder.record(EventKind::ReadBack { target, items })
            }
            Err(e) => trial.recorder.record(EventKind::ReadBackFailed { target, error: e.to_string() }),
        }
    }
}

/// Reads the store back, retrying briefly: a target that just became healthy
/// may still drop the first connection.
fn read_back(workload: &dyn Workload, written: u64) -> std::io::Result<Vec<(String, String)>> {
    let mut last = None;
    for _ in 0..3 {
        match workload.read_back(written) {
            Ok(items) => return Ok(items),
            Err(e) => last = Some(e),
        }
        thread::sleep(Duration::from_millis(100));
    }
    Err(last.expect("tried at least once"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::Sampler;
    use crate::runner::fake::{with_trial, FakeTarget, Log};
    use std::sync::Mutex;

    /// The timeline injects each fault at its time through the target's
    /// interface, records it, heals a fault with a duration after it, and
    /// runs the procedure as soon as the last timed fault is in (here while
    /// the pause still holds): all against a fake.
    #[test]
    fn faults_and_the_procedure_reach_the_target_in_order_and_on_time() {
        let scenario = r#"
name = "fake"
[target.kv]
command = ["true"]
probe = { kind = "tcp" }
[[fault]]
kind = "kill"
target = "kv"
at = "20ms"
[[fault]]
kind = "pause"
target = "kv"
duration = "30ms"
at = "60ms"
[[recover]]
action = "stop"
target = "kv"
[[recover]]
action = "start"
target = "kv"
"#;
        with_trial(scenario, |trial| {
            let log = Log::default();
            let mut env = TrialEnv::default();
            env.targets.push(Arc::new(FakeTarget { name: "kv".into(), log: Arc::clone(&log), on_settle: None }));
            let schedule = Schedule {
                faults: vec![Duration::from_millis(20), Duration::from_millis(60)],
                backups: Vec::new(),
                drawn: Vec::new(),
            };
            let origin = Instant::now();
            run(trial, &env, &schedule, origin);
            let done = origin.elapsed();
            assert_eq!(*log.lock().unwrap(), ["SIGKILL kv", "pause kv", "hold kv", "release kv", "resume kv"]);
            assert!(done >= Duration::from_millis(90), "the timeline lasts until the pause healed: {done:?}");
            let events = trial.recorder.finish(origin).unwrap().events;
            let injected: Vec<f64> = events
                .iter()
                .filter_map(|e| matches!(e.kind, EventKind::FaultInjected { .. }).then_some(e.t_ms))
                .collect();
            assert_eq!(injected.len(), 2);
            assert!(injected[0] >= 20.0 && injected[1] >= 60.0, "on schedule, never early: {injected:?}");
            assert!(events.iter().any(|e| matches!(e.kind, EventKind::FaultHealed { fault: 1, .. })));
        });
    }

    /// Down until a set time, then healthy.
    struct DownUntil(Instant);

    impl crate::probe::Probe for DownUntil {
        fn sample(&self) -> Result<(), String> {
            if Instant::now() < self.0 {
                return Err("refused".into());
            }
            Ok(())
        }
    }

    /// A restart recorded only after the probe's window was seen, dated
    /// after it began (a container's, dated by its engine once its start
    /// had returned, on a loaded machine): the trial goes on until a
    /// window follows it, so that the RTO check finds one. Without it the
    /// target stopped with no sample after the restart: "never recovered",
    /// as CI once saw of Redis in a container.
    #[test]
    fn a_restart_recorded_after_the_window_began_is_followed_by_a_window_before_the_end() {
        let scenario = r#"
name = "fake"
[target.kv]
command = ["true"]
probe = { kind = "tcp", interval = "5ms" }
"#;
        with_trial(scenario, |trial| {
            let origin = Instant::now();
            let up = origin + Duration::from_millis(40);
            let recorder = trial.recorder.clone();
            let restarted = Arc::new(Mutex::new(None));
            let record = Arc::clone(&restarted);
            let on_settle = move || {
                let mut restarted = record.lock().unwrap();
                if restarted.is_none() && Instant::now() >= up {
                    // Dated a moment before it is recorded, as the engine
                    // dates a start that has returned.
                    let at = Instant::now() - Duration::from_millis(1);
                    recorder.record_at(at, EventKind::TargetStarted { target: "kv".into(), incarnation: 2, pid: 2 });
                    *restarted = Some((at - origin).as_secs_f64() * 1000.0);
                }
            };
            let mut env = TrialEnv::default();
            let target = FakeTarget { name: "kv".into(), log: Log::default(), on_settle: Some(Box::new(on_settle)) };
            env.targets.push(Arc::new(target));
            let probe = &trial.plan.targets[0].probe;
            env.samplers.push(Sampler::start("kv", Box::new(DownUntil(up)), probe, trial.recorder.clone()));
            let fault = EventKind::FaultInjected {
                fault: 0,
                kind: crate::kinds::FaultName::Kill,
                target: "kv".into(),
                scheduled_ms: 10.0,
                detail: String::new(),
                uncertainty_ms: None,
            };
            trial.recorder.record_at(origin + Duration::from_millis(10), fault);
            thread::sleep(Duration::from_millis(10));

            await_recovery(trial, &env, None, workload::Counts::default());
            // Teardown: each target stops before its sampler (the stop is
            // no outage), then the checks read the history.
            env.targets[0].stop();
            env.samplers[0].stop();
            let events = trial.recorder.finish(origin).unwrap().events;
            let restarted = restarted.lock().unwrap().expect("recorded when settled or stopped");
            let report = &crate::check::rto::fault_reports(&events, |_| 3, |_| false)[0];
            let rto = report.rto_ms.map(|rto| rto + 10.0);
            assert!(rto.is_some_and(|window| window >= restarted), "window at {rto:?}, restart at {restarted:.1}");
        });
    }
}
