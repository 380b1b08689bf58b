//! The runner: runs a plan's trials. Targets, probes, workload and faults
//! all report into one [`history::Recorder`] per trial; the checkers then
//! judge the history alone.

mod recover;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use rand::SeedableRng;

use crate::check;
use crate::compose;
pub use crate::drill::Operator;
use crate::engine::{Engine, RUN_LABEL};
use crate::fault::unsynced::UnsyncedFs;
use crate::fault::{self, FaultContext, FaultGuard};
use crate::history::{self, EventKind, Recorder};
use crate::journal::{Entry, Journal};
use crate::network::Network;
use crate::probe::{self, Sampler};
use crate::proxy::Proxy;
use crate::reports::{RunReport, TrialReport};
use crate::run_dir;
pub use crate::run_dir::new_run_dir;
use crate::scenario::{FaultKind, NetworkPlan, Plan, PortRef, TargetKind, TargetPlan, WorkloadKind};
use crate::targets::container::ContainerTarget;
use crate::targets::process::ProcessContext;
use crate::targets::{free_port, ProcessTarget, Target};
use crate::workload::{self, demo_kv::DemoKv, postgres::Postgres, redis::Redis, Pace, Workload};

#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Overrides `[trials] count`.
    pub trials: Option<u32>,
    /// Overrides `[trials] seed`; without either, a random seed (printed).
    pub seed: Option<u64>,
    /// The run directory; by default a new one under `crashlab-runs/`.
    pub out: Option<PathBuf>,
    /// Who confirms manual steps of a recovery procedure.
    pub operator: Operator,
    /// Replace the finished run in a non-empty `out`.
    pub replace: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    #[error("{0}")]
    RunDir(#[from] run_dir::RunDirError),
}

/// Why a trial could not run to its end.
#[derive(Debug, Clone)]
pub enum TrialStop {
    Interrupted,
    /// The environment failed: a target would not start or become healthy.
    Environment(String),
}

/// A finished (or stopped) run.
pub struct RunOutcome {
    pub run_dir: PathBuf,
    pub report: RunReport,
    pub stop: Option<TrialStop>,
}

pub use crate::run_dir::{HISTORY_FILE, REPORT_FILE, RUNS_DIR, SCENARIO_FILE};

/// Writes `report.json` and every other format (JUnit, Markdown summary,
/// Prometheus metrics) into the run directory.
pub fn write_reports(run_dir: &Path, report: &RunReport) -> std::io::Result<()> {
    std::fs::write(run_dir.join(REPORT_FILE), report.to_json())?;
    for (file, render) in crate::reports::WRITERS {
        std::fs::write(run_dir.join(file), render(report))?;
    }
    Ok(())
}

/// Seeds stay below 2^53 so that every JSON reader keeps them exact.
const JSON_SAFE: u64 = (1 << 53) - 1;

/// The seed of trial `index`: distinct per trial, the same for the same run seed.
pub fn trial_seed(seed: u64, index: u32) -> u64 {
    // splitmix64 of the pair, so neighbouring seeds give unrelated schedules.
    let mut z = seed ^ (u64::from(index)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)) & JSON_SAFE
}

/// Runs every trial, writes `history.jsonl` and `report.json`, and returns
/// the report. `on_trial` is told about each trial as it ends.
pub fn run(
    plan: &Plan,
    source: &str,
    options: &RunOptions,
    interrupt: &Arc<AtomicBool>,
    mut on_trial: impl FnMut(&TrialReport, u32),
) -> Result<RunOutcome, RunError> {
    let io = |what: String| move |source| RunError::Io { what, source };
    let (run_dir, _lock) = match &options.out {
        Some(dir) => run_dir::claim_out_dir(dir, options.replace)?,
        None => run_dir::claim_new_run_dir(Path::new(RUNS_DIR), &plan.name)?,
    };
    std::fs::write(run_dir.join(SCENARIO_FILE), source)
        .map_err(io(format!("cannot write into {}", run_dir.display())))?;
    let history_path = run_dir.join(HISTORY_FILE);
    let _ = std::fs::remove_file(&history_path);
    let journal = Arc::new(Journal::create(&run_dir).map_err(io("cannot create the fault journal".into()))?);
    let seed = options.seed.or(plan.trials.seed).unwrap_or_else(|| rand::random::<u64>() & JSON_SAFE);
    let count = options.trials.unwrap_or(plan.trials.count);

    // A namespaces network lives for the whole run; its partitions come and
    // go with the faults.
    let network = match plan.network {
        NetworkPlan::Host => None,
        NetworkPlan::Namespaces => {
            let names: Vec<&str> = plan.targets.iter().map(|t| t.name.as_str()).collect();
            match Network::create(&names, &journal) {
                Ok(n) => Some(Arc::new(n)),
                Err(e) => {
                    let report = check::build_report(plan, seed, Vec::new(), Some(e.to_string()));
                    let _ = journal.append(&Entry::Finished);
                    let _ = std::fs::write(run_dir.join(REPORT_FILE), report.to_json());
                    return Ok(RunOutcome { run_dir, report, stop: Some(TrialStop::Environment(e.to_string())) });
                }
            }
        }
    };
    let containers = match Containers::prepare(plan, &run_dir, &journal) {
        Ok(c) => c,
        Err(e) => {
            let report = check::build_report(plan, seed, Vec::new(), Some(e.clone()));
            let _ = journal.append(&Entry::Finished);
            let _ = std::fs::write(run_dir.join(REPORT_FILE), report.to_json());
            return Ok(RunOutcome { run_dir, report, stop: Some(TrialStop::Environment(e)) });
        }
    };
    let mut trials = Vec::new();
    let mut stop = None;
    for index in 0..count {
        if interrupt.load(Ordering::Relaxed) {
            stop = Some(TrialStop::Interrupted);
            break;
        }
        let shared = RunShared {
            run_dir: &run_dir,
            journal: &journal,
            network: network.as_ref(),
            containers: containers.as_ref(),
            interrupt,
            operator: options.operator,
        };
        let (events, trial_stop) = run_trial(plan, index, trial_seed(seed, index), &shared);
        history::append(&history_path, &events).map_err(io(format!("cannot write {}", history_path.display())))?;
        let report = check::check_trial(plan, index, &events);
        on_trial(&report, count);
        trials.push(report);
        if trial_stop.is_some() {
            stop = trial_stop;
            break;
        }
    }
    if let Some(network) = &network {
        network.destroy();
    }
    let _ = journal.append(&Entry::Finished);
    let error = stop.as_ref().map(|s| match s {
        TrialStop::Interrupted => "interrupted".to_string(),
        TrialStop::Environment(e) => e.clone(),
    });
    let report = check::build_report(plan, seed, trials, error);
    write_reports(&run_dir, &report).map_err(io(format!("cannot write the reports into {}", run_dir.display())))?;
    Ok(RunOutcome { run_dir, report, stop })
}

/// What every trial of a run shares.
#[derive(Clone, Copy)]
struct RunShared<'a> {
    run_dir: &'a Path,
    journal: &'a Arc<Journal>,
    network: Option<&'a Arc<Network>>,
    containers: Option<&'a Containers>,
    interrupt: &'a Arc<AtomicBool>,
    operator: Operator,
}

/// Brings up each compose file of the plan once, with the per-trial values
/// its services read (see [`compose`]).
fn compose_up(
    plan: &Plan,
    index: u32,
    ports: &[u16],
    trial_dir: &Path,
    journal: &Journal,
    containers: Option<&Containers>,
    projects: &mut Vec<compose::Project>,
) -> Result<(), String> {
    let mut files: Vec<&PathBuf> = plan.targets.iter().filter_map(|t| t.compose.as_ref().map(|c| &c.0)).collect();
    files.dedup();
    let Some(c) = containers else { return Ok(()) };
    let mut env = Vec::new();
    for (t, port) in plan.targets.iter().zip(ports) {
        let data_dir = trial_dir.join("data").join(&t.name);
        std::fs::create_dir_all(&data_dir).map_err(|e| format!("cannot create {}: {e}", data_dir.display()))?;
        env.push((compose::variable("PORT", &t.name), port.to_string()));
        env.push((compose::variable("DATA_DIR", &t.name), data_dir.display().to_string()));
    }
    if let Some(image) = &c.demo_image {
        env.push(("CRASHLAB_DEMO_KV_IMAGE".to_string(), image.clone()));
    }
    for (i, file) in files.into_iter().enumerate() {
        // Compose project names are lower case.
        let name = format!("{}-t{index}-{i}", c.label).to_ascii_lowercase();
        let _ = journal.append(&Entry::ComposeUp { trial: index, project: name.clone(), file: file.clone() });
        match compose::Project::up(&name, file, env.clone()) {
            Ok(project) => projects.push(project),
            Err(e) => {
                // Whatever came up before the failure goes down with it.
                let _ = compose::down(&name, file);
                let _ = journal.append(&Entry::ComposeDown { trial: index, project: name });
                return Err(e.to_string());
            }
        }
    }
    Ok(())
}

/// The container engine and images of a run with container targets.
struct Containers {
    engine: Arc<Engine>,
    /// `(target, image)`.
    images: Vec<(String, String)>,
    /// The `crashlab.run` label of this run's containers.
    label: String,
    /// The demo-kv image, when a compose file asks for it.
    demo_image: Option<String>,
}

impl Containers {
    fn prepare(plan: &Plan, run_dir: &Path, journal: &Journal) -> Result<Option<Containers>, String> {
        let wanted: Vec<&TargetPlan> = plan.targets.iter().filter(|t| t.kind == TargetKind::Container).collect();
        let compose_files: Vec<&PathBuf> =
            plan.targets.iter().filter_map(|t| t.compose.as_ref().map(|c| &c.0)).collect();
        if wanted.is_empty() && compose_files.is_empty() {
            return Ok(None);
        }
        let engine = Engine::connect().map_err(|e| format!("{e} (container targets need a Docker engine)"))?;
        // The run's directory name as the engine allows it in container
        // names, made unique: two runs may share a directory name.
        let name: String = run_dir
            .file_name()
            .map(|n| {
                n.to_string_lossy()
                    .chars()
                    .map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '-' })
                    .collect()
            })
            .unwrap_or_else(|| "crashlab".into());
        let label = format!("{name}-{:06x}", rand::random::<u32>() & 0xff_ffff);
        // Before anything carries it: cleanup removes whatever does.
        journal
            .append(&Entry::ContainerLabel { run_label: label.clone() })
            .map_err(|e| format!("cannot journal the containers' label: {e}"))?;
        if let Ok(left) = engine.labelled(RUN_LABEL) {
            let others: Vec<&str> =
                left.iter().filter(|(.., run)| *run != label).map(|(_, name, _)| name.as_str()).collect();
            if !others.is_empty() {
                eprintln!(
                    "crashlab: warning: {} container(s) of earlier runs remain ({}); `crashlab cleanup RUN_DIR` removes them",
                    others.len(),
                    others.join(", ")
                );
            }
        }
        let mut images = Vec::new();
        for t in wanted {
            let image = t.image.clone().unwrap_or_default();
            let image = if image == crate::image::DEMO_KV_REPO {
                crate::image::demo_kv(&engine).map_err(|e| e.to_string())?.0
            } else if engine.image_exists(&image) {
                image
            } else {
                return Err(format!(
                    "target `{}`: image `{image}` is not in the local engine, and none can be pulled here; build it \
                     (`crashlab image build demo-kv` makes crashlab/demo-kv)",
                    t.name
                ));
            };
            images.push((t.name.clone(), image));
        }
        let wants_demo = compose_files
            .iter()
            .any(|f| std::fs::read_to_string(f).unwrap_or_default().contains("CRASHLAB_DEMO_KV_IMAGE"));
        let demo_image =
            if wants_demo { Some(crate::image::demo_kv(&engine).map_err(|e| e.to_string())?.0) } else { None };
        Ok(Some(Containers { engine: Arc::new(engine), images, label, demo_image }))
    }
}

/// The port a target's probe reaches must be free before the target starts:
/// if another process holds it, the probe would measure that process (a
/// target that cannot bind it restarts in a loop, unseen, while the other
/// answers healthy).
fn check_port_free(t: &TargetPlan, allocated: u16) -> Result<(), String> {
    let port = match t.probe.kind.port() {
        Some(PortRef::Fixed(p)) => *p,
        Some(PortRef::Allocated) => allocated,
        Some(PortRef::Proxy(_)) | None => return Ok(()),
    };
    match std::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, port)) {
        Ok(_) => Ok(()),
        Err(e) => Err(format!(
            "target `{}`: port {port} is already in use on 127.0.0.1 ({e}): its probe would measure whatever holds \
             it, not the target; stop that process, or let crashlab allocate the port (`{{port}}`)",
            t.name
        )),
    }
}

/// Sleeps until `at`, waking early (and returning false) on cancel.
pub(crate) fn sleep_until(at: Instant, cancel: &AtomicBool) -> bool {
    loop {
        if cancel.load(Ordering::Relaxed) {
            return false;
        }
        let now = Instant::now();
        if now >= at {
            return true;
        }
        thread::sleep((at - now).min(Duration::from_millis(20)));
    }
}

/// One trial, start to teardown. Returns its events and, if it could not run
/// to its end, why.
fn run_trial(plan: &Plan, index: u32, seed: u64, shared: &RunShared) -> (Vec<history::Event>, Option<TrialStop>) {
    let RunShared { run_dir, journal, network, containers, interrupt, operator } = *shared;
    let recorder = Recorder::new(index);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let schedule: Vec<Duration> = plan.faults.iter().map(|f| f.at.sample(&mut rng)).collect();
    let backup_schedule: Vec<Duration> = plan.backups.iter().map(|b| b.at.sample(&mut rng)).collect();
    recorder.record(EventKind::TrialStarted {
        seed,
        scheduled_ms: schedule.iter().map(|d| d.as_secs_f64() * 1000.0).collect(),
    });
    let trial_dir = run_dir.join(format!("trial-{index:03}"));

    // Ports first: proxies forward to targets' ports, and targets' commands
    // may name proxies' ports.
    let mut stop = None;
    let ports: Vec<u16> = match plan.targets.iter().map(|t| free_port().map_err(|e| (t, e))).collect() {
        Ok(ports) => ports,
        Err((t, e)) => {
            stop = Some(TrialStop::Environment(format!("cannot allocate a port for target `{}`: {e}", t.name)));
            Vec::new()
        }
    };
    // Where each target is reached: its namespace's address, or loopback.
    let host_of = |name: &str| -> IpAddr {
        network.and_then(|n| n.member(name)).map_or(IpAddr::from([127, 0, 0, 1]), |m| IpAddr::V4(m.address))
    };
    let hosts: Vec<(String, IpAddr)> = plan.targets.iter().map(|t| (t.name.clone(), host_of(&t.name))).collect();
    let mut proxies: Vec<(String, Arc<Proxy>)> = Vec::new();
    if stop.is_none() {
        for p in &plan.proxies {
            let port = plan.targets.iter().position(|t| t.name == p.target).map(|i| ports[i]).expect("checked");
            match Proxy::start(SocketAddr::new(host_of(&p.target), port)) {
                Ok(proxy) => proxies.push((p.name.clone(), Arc::new(proxy))),
                Err(e) => {
                    stop = Some(TrialStop::Environment(format!("cannot start proxy `{}`: {e}", p.name)));
                    break;
                }
            }
        }
    }
    let proxy_ports: Vec<(String, u16)> = proxies.iter().map(|(n, p)| (n.clone(), p.port())).collect();
    let proxy_port = |name: &str| proxy_ports.iter().find(|(n, _)| n == name).map_or(0, |(_, p)| *p);

    // Compose projects, one per file, before the targets that attach to
    // their services.
    let mut projects: Vec<compose::Project> = Vec::new();
    if stop.is_none() {
        if let Err(e) = compose_up(plan, index, &ports, &trial_dir, journal, containers, &mut projects) {
            stop = Some(TrialStop::Environment(e));
        }
    }

    // Targets, the FUSE layers under them, and their probes.
    let mut targets: Vec<Arc<dyn Target>> = Vec::new();
    let mut layers: Vec<(String, Arc<UnsyncedFs>)> = Vec::new();
    let mut samplers: Vec<Sampler> = Vec::new();
    for (t, port) in plan.targets.iter().zip(ports.iter().copied()) {
        if stop.is_some() {
            break;
        }
        let needs_layer =
            plan.faults.iter().any(|f| f.target == t.name && matches!(f.kind, FaultKind::LoseUnsynced { .. }));
        let ctx = ProcessContext {
            trial: index,
            run_dir: run_dir.to_path_buf(),
            trial_dir: trial_dir.clone(),
            port,
            recorder: recorder.clone(),
            journal: Arc::clone(journal),
            proxy_ports: proxy_ports.clone(),
            namespace: network.and_then(|n| n.member(&t.name)).map(|m| m.namespace.clone()),
            host: host_of(&t.name),
            hosts: hosts.clone(),
        };
        let started = (|| {
            let target: Arc<dyn Target> = match (t.kind, containers) {
                (TargetKind::Compose, Some(c)) => {
                    let (file, service) = t.compose.as_ref().expect("compile checked");
                    let project = projects.iter().find(|p| &p.file == file).ok_or("compose project not up")?;
                    let id = project.container(&c.engine, service).map_err(|e| e.to_string())?;
                    Arc::new(ContainerTarget::attach(t, ctx, Arc::clone(&c.engine), id).map_err(|e| e.to_string())?)
                }
                (TargetKind::Container, Some(c)) => {
                    let image = c.images.iter().find(|(n, _)| *n == t.name).map(|(_, i)| i.clone()).unwrap_or_default();
                    let target = ContainerTarget::new(t, ctx, Arc::clone(&c.engine), image, c.label.clone());
                    Arc::new(target.map_err(|e| e.to_string())?)
                }
                _ => Arc::new(ProcessTarget::new(t, ctx).map_err(|e| e.to_string())?),
            };
            // The data dirs, canonical, before anything acts on them: the
            // only places where cleanup restores bytes or unmounts.
            let mut data_dirs = Vec::new();
            for dir in target.data_dirs() {
                let dir =
                    dir.canonicalize().map_err(|e| format!("target `{}`: data dir {}: {e}", t.name, dir.display()))?;
                crate::confine::check_data_dir(&dir, run_dir).map_err(|e| format!("target `{}`: {e}", t.name))?;
                journal
                    .append(&Entry::DataDir { trial: index, target: t.name.clone(), path: dir.clone() })
                    .map_err(|e| format!("cannot journal a data dir: {e}"))?;
                data_dirs.push(dir);
            }
            if needs_layer {
                let dir = &data_dirs[0];
                let layer = UnsyncedFs::mount(dir, index, &t.name, Arc::clone(journal))
                    .map_err(|e| format!("target `{}`: {e}", t.name))?;
                layers.push((t.name.clone(), Arc::new(layer)));
            }
            if network.is_none() && t.kind != TargetKind::Compose {
                check_port_free(t, port)?;
            }
            target.start().map_err(|e| e.to_string())?;
            Ok::<_, String>(target)
        })();
        match started {
            Ok(target) => {
                let probe = probe::build(&t.probe, Arc::clone(&target), proxy_port);
                samplers.push(Sampler::start(&t.name, probe, &t.probe, recorder.clone()));
                targets.push(target);
            }
            Err(e) => {
                stop = Some(TrialStop::Environment(e));
                break;
            }
        }
    }
    if stop.is_none() {
        let deadline = Instant::now() + plan.trials.startup_timeout;
        for ((t, target), sampler) in plan.targets.iter().zip(&targets).zip(&samplers) {
            if let Err(e) =
                await_start_up(t, target.as_ref(), sampler, (deadline, plan.trials.startup_timeout), interrupt)
            {
                stop = Some(e);
                break;
            }
        }
    }

    // Guards of faults that stay in effect until the end of the trial.
    let lasting: Mutex<Vec<FaultGuard>> = Mutex::new(Vec::new());
    let target_of =
        |name: &str| Arc::clone(targets.iter().find(|t| t.name() == name).expect("compile checked the name"));

    // The timeline: workload, backups, faults and the recovery procedure,
    // from origin = 0 ms.
    let origin = Instant::now();
    if stop.is_none() {
        let cancel = Arc::new(AtomicBool::new(false));
        let watcher_cancel = Arc::clone(&cancel);
        let watch_interrupt = Arc::clone(interrupt);
        let watcher = thread::spawn(move || {
            while !watcher_cancel.load(Ordering::Relaxed) {
                if watch_interrupt.load(Ordering::Relaxed) {
                    watcher_cancel.store(true, Ordering::Relaxed);
                }
                thread::sleep(Duration::from_millis(10));
            }
        });
        let workload: Option<Box<dyn Workload>> = plan.workload.as_ref().map(|w| {
            let port = match &w.via {
                Some(proxy) => proxy_port(proxy),
                None => targets.iter().find(|t| t.name() == w.target).map_or(0, |t| t.port()),
            };
            let host = if w.via.is_some() { IpAddr::from([127, 0, 0, 1]) } else { host_of(&w.target) };
            match w.kind {
                WorkloadKind::DemoKv => {
                    Box::new(DemoKv { addr: SocketAddr::new(host, port), timeout: w.timeout }) as Box<dyn Workload>
                }
                WorkloadKind::Redis => Box::new(Redis { addr: SocketAddr::new(host, port), timeout: w.timeout }),
                WorkloadKind::Postgres => Box::new(Postgres::new(SocketAddr::new(host, port), w.timeout)),
            }
        });
        let healthy_after = |name: &str| plan.target(name).map_or(1, |t| t.probe.healthy_after);
        recorder.record_at(origin, EventKind::WorkloadStarted);
        // Injects fault `i`, then heals it after its duration (holding
        // the caller) or keeps its guard to the end of the trial.
        // `injected` is told as soon as the fault is in, or failed.
        let fire = |i: usize, scheduled: Duration, injected: &dyn Fn()| -> Result<(), String> {
            let f = &plan.faults[i];
            let ctx = FaultContext {
                trial: index,
                index: i,
                target: target_of(&f.target),
                journal: Arc::clone(journal),
                recorder: recorder.clone(),
                scheduled_ms: scheduled.as_secs_f64() * 1000.0,
                seed,
                trial_dir: trial_dir.clone(),
                unsynced: layers.iter().find(|(n, _)| *n == f.target).map(|(_, l)| Arc::clone(l)),
                proxy: match &f.kind {
                    FaultKind::Link { proxy, .. } => {
                        proxies.iter().find(|(n, _)| n == proxy).map(|(_, p)| Arc::clone(p))
                    }
                    _ => None,
                },
                network: network.cloned(),
            };
            let result = fault::build(&f.kind).inject(&ctx);
            injected();
            let guard = result.map_err(|e| {
                let error = e.to_string();
                eprintln!("crashlab: trial {index}: {error}");
                ctx.recorder.record(EventKind::FaultFailed {
                    fault: i,
                    target: f.target.clone(),
                    error: error.clone(),
                });
                error
            })?;
            match f.kind.heal_after() {
                Some(duration) => {
                    sleep_until(Instant::now() + duration, &cancel);
                    guard.heal();
                }
                None => lasting.lock().unwrap().push(guard),
            }
            Ok(())
        };
        thread::scope(|scope| {
            for (b, at) in plan.backups.iter().zip(&backup_schedule) {
                let (target, recorder, cancel, trial_dir) = (target_of(&b.target), &recorder, &cancel, &trial_dir);
                scope.spawn(move || {
                    if sleep_until(origin + *at, cancel) {
                        recover::take_backup(b, target.as_ref(), trial_dir, recorder);
                    }
                });
            }
            // Each timeline fault's thread reports once its fault is in (or
            // failed): the recovery procedure starts after the last one.
            let (injected_tx, injected_rx) = std::sync::mpsc::channel::<()>();
            let timed: Vec<usize> = (0..plan.faults.len()).filter(|i| !plan.faults[*i].in_procedure).collect();
            let faults: Vec<_> = timed
                .iter()
                .map(|&i| {
                    let (at, cancel, fire, injected_tx) = (schedule[i], &cancel, &fire, injected_tx.clone());
                    scope.spawn(move || {
                        if sleep_until(origin + at, cancel) {
                            let _ = fire(i, at, &|| {
                                let _ = injected_tx.send(());
                            });
                        }
                    })
                })
                .collect();
            drop(injected_tx);
            let procedure = (!plan.recover.is_empty()).then(|| {
                let (cancel, targets, samplers, trial_dir, recorder, fire) =
                    (&cancel, &targets, &samplers, &trial_dir, &recorder, &fire);
                let count = timed.len();
                scope.spawn(move || {
                    // All faults in (a cancelled trial ends the wait early).
                    if injected_rx.iter().take(count).count() < count {
                        return;
                    }
                    recover::Procedure {
                        steps: &plan.recover,
                        targets,
                        samplers,
                        healthy_after: &healthy_after,
                        trial_dir,
                        recorder,
                        inject: &|i| fire(i, origin.elapsed(), &|| {}),
                        operator,
                    }
                    .run(cancel);
                })
            });
            if let (Some(w), Some(plan_w)) = (&workload, &plan.workload) {
                workload::drive(
                    w.as_ref(),
                    Pace::Rate(plan_w.rate),
                    plan_w.duration,
                    plan_w.connections,
                    Some(&recorder),
                    &cancel,
                );
                recorder.record(EventKind::WorkloadEnded);
            }
            for f in faults {
                let _ = f.join();
            }
            if let Some(p) = procedure {
                let _ = p.join();
            }
        });
        if interrupt.load(Ordering::Relaxed) {
            stop = Some(TrialStop::Interrupted);
        }

        // Recovery: each target must show a sustained healthy window after
        // the last fault on it, then the store is read back.
        if stop.is_none() {
            let now = Instant::now();
            let deadline = now + plan.trials.recovery_timeout;
            for (t, sampler) in plan.targets.iter().zip(&samplers) {
                let _ = sampler.health.wait_sustained(now, t.probe.healthy_after, deadline, &cancel);
            }
            if let (Some(w), Some(plan_w)) = (&workload, &plan.workload) {
                match read_back(w.as_ref()) {
                    Ok(items) => recorder.record(EventKind::ReadBack { target: plan_w.target.clone(), items }),
                    Err(e) => recorder
                        .record(EventKind::ReadBackFailed { target: plan_w.target.clone(), error: e.to_string() }),
                }
            }
            if interrupt.load(Ordering::Relaxed) {
                stop = Some(TrialStop::Interrupted);
            }
        }
        cancel.store(true, Ordering::Relaxed);
        let _ = watcher.join();
    }

    // Teardown, whatever happened: targets first, then what the faults left
    // (damaged files, lock holders), then the FUSE layers.
    for sampler in &mut samplers {
        sampler.stop();
    }
    for target in &targets {
        target.stop();
        recorder.record(EventKind::TargetLog { target: target.name().to_string(), lines: target.last_log_lines(20) });
    }
    for guard in lasting.into_inner().unwrap().into_iter().rev() {
        guard.heal();
    }
    for (_, layer) in &layers {
        layer.unmount();
    }
    for (_, proxy) in &proxies {
        proxy.stop();
    }
    for project in &projects {
        if let Err(e) = project.down() {
            eprintln!("crashlab: {e}");
        }
        let _ = journal.append(&Entry::ComposeDown { trial: index, project: project.name.clone() });
    }
    // What the trial started and is still alive (a daemon a hook left
    // behind, out of every target's group) goes with the trial.
    let stragglers = crate::targets::stopping::stop_stragglers(Duration::from_secs(3));
    if !stragglers.is_empty() {
        eprintln!(
            "crashlab: trial {index}: stopped {} process(es) it had started and left running: {stragglers:?}",
            stragglers.len()
        );
    }
    recorder.record(EventKind::TrialEnded {
        interrupted: matches!(stop, Some(TrialStop::Interrupted)),
        error: match &stop {
            Some(TrialStop::Environment(e)) => Some(e.clone()),
            _ => None,
        },
    });
    (recorder.finish(origin), stop)
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
    interrupt: &AtomicBool,
) -> Result<(), TrialStop> {
    let begin = Instant::now();
    let restarted = || target.host_process().is_some_and(|p| p.incarnation > 1);
    let healthy = loop {
        let slice = deadline.min(Instant::now() + Duration::from_millis(50));
        let healthy = sampler.health.wait_sustained(begin, t.probe.healthy_after, slice, interrupt);
        if healthy.is_some() || restarted() || Instant::now() >= deadline || interrupt.load(Ordering::Relaxed) {
            break healthy;
        }
    };
    if restarted() {
        let starts = target.host_process().map_or(2, |p| p.incarnation);
        let logs = target.last_log_lines(10).join("\n  ");
        return Err(TrialStop::Environment(format!(
            "target `{}` exited during start-up ({starts} incarnations before it was healthy); its last output:\n  \
             {logs}",
            t.name
        )));
    }
    match healthy {
        Some(_) => Ok(()),
        None if interrupt.load(Ordering::Relaxed) => Err(TrialStop::Interrupted),
        None => {
            let logs = target.last_log_lines(10).join("\n  ");
            Err(TrialStop::Environment(format!(
                "target `{}` did not become healthy within {:?}; its last output:\n  {logs}",
                t.name, timeout
            )))
        }
    }
}

/// Reads the store back, retrying briefly: a target that just became healthy
/// may still drop the first connection.
fn read_back(workload: &dyn Workload) -> std::io::Result<Vec<(String, String)>> {
    let mut last = None;
    for _ in 0..3 {
        match workload.read_back() {
            Ok(items) => return Ok(items),
            Err(e) => last = Some(e),
        }
        thread::sleep(Duration::from_millis(100));
    }
    Err(last.expect("tried at least once"))
}
