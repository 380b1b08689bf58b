//! The crashlab command line. Exit codes are a contract (see `--help`).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use clap::{Parser, Subcommand};

use crashlab::cancel::Cancel;
use crashlab::drill::{self, DrillLog};
use crashlab::reports::{render_text, RunReport, Verdict};
use crashlab::runner::{self, Operator, RunOptions, TrialStop};
use crashlab::scenario::{self, LoadError};
use crashlab::{check, cleanup, demo, exit, fault, history, run_dir, targets};

const EXIT_CODES: &str = "\
Exit codes:
  0  every expectation was met
  1  an expectation failed
  2  invalid scenario or usage (nothing was started)
  3  environment or infrastructure error (a target would not start, permission denied...)
  4  verdict unknown (a check could not decide, or the run was interrupted)";

/// Inject crashes into real services, measure RTO and RPO, assert recovery.
#[derive(Parser)]
#[command(name = "crashlab", version, after_help = EXIT_CODES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum ImageCommand {
    /// Build (or reuse) an image and print its name; no registry is needed.
    ///
    /// `demo-kv`: this binary and the shared libraries it links, in a root
    /// file system of its own, tagged by a hash of those files.
    /// `--debian PKG...`: a Debian root file system with those packages
    /// (mmdebstrap), as crashlab/debian-<pkgs>:<hash> and :latest.
    #[command(verbatim_doc_comment)]
    Build {
        /// The embedded image to build.
        #[arg(value_parser = ["demo-kv"], required_unless_present = "debian", conflicts_with = "debian")]
        what: Option<String>,
        /// Debian packages to install, e.g. `--debian redis-server`.
        #[arg(long, num_args = 1..)]
        debian: Vec<String>,
    },
}

/// What `run` and `bench` share.
#[derive(clap::Args)]
struct RunArgs {
    /// The scenario file (TOML).
    scenario: PathBuf,
    /// Number of trials (overrides `[trials] count`).
    #[arg(long)]
    trials: Option<u32>,
    /// Seed for the fault schedule; the same seed gives the same schedule.
    #[arg(long)]
    seed: Option<u64>,
    /// Run directory (default: a new one under ./crashlab-runs/).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Confirm the procedure's manual steps without asking (unattended
    /// drills); without it they are confirmed at the terminal.
    #[arg(long, short = 'y')]
    yes: bool,
    /// With --out: replace the finished run in that directory (a non-empty
    /// directory is otherwise refused, and one in use always is).
    #[arg(long, requires = "out")]
    replace: bool,
}

impl RunArgs {
    fn options(&self) -> RunOptions {
        RunOptions {
            trials: self.trials,
            seed: self.seed,
            out: self.out.clone(),
            operator: if self.yes { Operator::AssumeYes } else { Operator::Prompt },
            replace: self.replace,
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run a scenario: start its targets, drive the workload, inject the
    /// faults, wait for recovery, read back, and judge.
    ///
    /// Writes report.json, history.jsonl, the fault journal and the targets'
    /// logs into the run directory, and prints its path.
    #[command(after_help = EXIT_CODES)]
    Run(RunArgs),
    /// Run a scenario for many trials and report RTO and RPO distributions
    /// (percentiles, bootstrap 95% intervals, a histogram); with
    /// --baseline, say whether RTO improved, regressed or did not change
    /// (a regression exits 1). Writes bench.json into the run directory.
    #[command(after_help = EXIT_CODES)]
    Bench {
        #[command(flatten)]
        run: RunArgs,
        /// A report.json of an earlier run to compare with.
        #[arg(long)]
        baseline: Option<PathBuf>,
    },
    /// Run a runbook as a drill: one trial whose recovery procedure is timed
    /// step by step against each step's budget, manual steps confirmed at
    /// the terminal (or with --yes), then appended to the drill log.
    ///
    /// The drill's RTO runs from the disaster (the first fault, or a `fault`
    /// step) to the service being healthy after the last acting step; its
    /// RPO is what the workload lost. The log is drills.sqlite beside the run
    /// directory (./crashlab-runs/ by default), or --db.
    #[command(after_help = EXIT_CODES)]
    Drill {
        #[command(flatten)]
        run: RunArgs,
        /// The drill log to append to.
        #[arg(long)]
        db: Option<PathBuf>,
    },
    /// List past drills, oldest first, with their RTO and RPO against the
    /// scenario's expectations, and the RTO trend.
    History {
        /// Only the drills of this scenario (its `name`).
        scenario: Option<String>,
        /// The drill log (default ./crashlab-runs/drills.sqlite).
        #[arg(long)]
        db: Option<PathBuf>,
    },
    /// Check scenario files and list every error as file:line:col: message.
    Validate {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Print a JSON Schema of the scenario format, for editors.
    Schema,
    /// Re-run the checkers on a stored run and rewrite its report.json.
    #[command(after_help = EXIT_CODES)]
    Analyze { run_dir: PathBuf },
    /// Heal what a run left behind if the harness itself was killed:
    /// resume paused targets, stop the run's processes (targets, hooks,
    /// recovery steps, lock holders), unmount its FUSE layers, put back the
    /// original bytes of files its faults damaged, delete its network
    /// namespaces and links, remove its containers and take down its
    /// compose projects.
    ///
    /// It reads the run's fault journal, and acts on a thing only if the
    /// thing itself proves it is the run's: a process by its pid and exact
    /// start time, or the run's token in its environment; a file by lying
    /// inside a data dir the run journaled, reached without following a
    /// link; a mount by being the run's FUSE layer; a container by the run's
    /// label. What fails the proof is listed as "left alone". A run that is
    /// still going is refused (exit 2).
    #[command(verbatim_doc_comment)]
    Cleanup { run_dir: PathBuf },
    /// Render a run's report.json again: into junit.xml, summary.md,
    /// metrics.prom and report.html beside it, or one format to stdout with
    /// --format.
    Report {
        run_dir: PathBuf,
        /// Print this format to stdout instead of writing the files.
        #[arg(long, value_parser = ["json", "junit", "markdown", "prometheus", "html", "text"])]
        format: Option<String>,
    },
    /// Print a Markdown table of runs: scenario, trials, verdict, RTO p50
    /// and p95, lost acknowledged writes, RPO window (one row per run
    /// directory, in the order given).
    Table {
        #[arg(required = true)]
        run_dirs: Vec<PathBuf>,
    },
    /// Run the reference key-value store (the embedded default target).
    DemoKv(demo::DemoKvOptions),
    /// Run an application that keeps its data in SQLite (the SQLite pack's
    /// target; it speaks demo-kv's protocol), or check a database with
    /// --integrity-check.
    SqliteApp(demo::sqlite_app::SqliteAppOptions),
    /// Build container images without a registry.
    #[command(subcommand)]
    Image(ImageCommand),
    /// (internal) Hold a lock for a stale-lock fault.
    #[command(hide = true)]
    LockHolder {
        #[arg(long)]
        path: PathBuf,
        #[arg(long, value_parser = ["flock", "fcntl", "none"])]
        lock: String,
        /// Run as this user (root drops to it before touching the file).
        #[arg(long)]
        user: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Run(args) => run(&args.scenario, args.options()),
        Command::Bench { run, baseline } => bench(&run.scenario, run.options(), baseline.as_deref()),
        Command::Drill { run, db } => drill(&run, db.as_deref()),
        Command::History { scenario, db } => history_of(scenario.as_deref(), db.as_deref()),
        Command::Validate { files } => validate(&files),
        Command::Schema => {
            println!("{}", serde_json::to_string_pretty(&scenario::schema::schema()).expect("a schema serializes"));
            exit::PASS
        }
        Command::Analyze { run_dir } => analyze(&run_dir),
        Command::Cleanup { run_dir } => cleanup(&run_dir),
        Command::Report { run_dir, format } => report(&run_dir, format.as_deref()),
        Command::Table { run_dirs } => table(&run_dirs),
        Command::DemoKv(options) => demo::run(options),
        Command::SqliteApp(options) => demo::sqlite_app::run(options),
        Command::Image(ImageCommand::Build { debian, .. }) => build_image(&debian),
        Command::LockHolder { path, lock, user } => fault::stale_lock::lock_holder_main(&path, &lock, user.as_deref()),
    };
    ExitCode::from(code as u8)
}

fn verdict_code(verdict: Verdict) -> i32 {
    match verdict {
        Verdict::Pass => exit::PASS,
        Verdict::Fail => exit::FAIL,
        Verdict::Unknown => exit::UNKNOWN,
    }
}

/// Loads a scenario, printing every error; `Err` holds the exit code.
fn load(path: &Path) -> Result<(scenario::Plan, String), i32> {
    load_with(path, scenario::load)
}

fn load_with(
    path: &Path,
    loader: fn(&Path) -> Result<scenario::Plan, LoadError>,
) -> Result<(scenario::Plan, String), i32> {
    match loader(path) {
        Ok(plan) => Ok((plan, std::fs::read_to_string(path).unwrap_or_default())),
        Err(LoadError::Invalid(d)) => {
            eprint!("{d}");
            eprintln!("{}: {} error(s); nothing was started", path.display(), d.list.len());
            Err(exit::USAGE)
        }
        Err(e) => {
            eprintln!("crashlab: {e}");
            Err(exit::USAGE)
        }
    }
}

fn run(path: &Path, options: RunOptions) -> i32 {
    match execute(path, options) {
        Ok(outcome) => outcome_code(&outcome),
        Err(code) => code,
    }
}

/// The exit code of a finished (or stopped) run.
fn outcome_code(outcome: &runner::RunOutcome) -> i32 {
    match &outcome.stop {
        Some(TrialStop::Environment(e)) => {
            eprintln!("crashlab: {e}");
            exit::ENVIRONMENT
        }
        Some(TrialStop::Interrupted) => exit::UNKNOWN,
        None => verdict_code(outcome.report.verdict),
    }
}

/// Loads and runs a scenario, printing progress and the summary; `Err`
/// holds the exit code when it could not run at all.
fn execute(path: &Path, options: RunOptions) -> Result<runner::RunOutcome, i32> {
    let (plan, source) = load(path)?;
    let manual: Vec<&str> = plan
        .recover
        .iter()
        .filter_map(|s| match &s.action {
            scenario::StepAction::Manual { instruction } => Some(instruction.as_str()),
            _ => None,
        })
        .collect();
    if !manual.is_empty() && options.operator == Operator::Prompt && !std::io::stdin().is_terminal() {
        eprintln!(
            "crashlab: {}: the procedure has {} manual step(s) (\"{}\"...) and no terminal to confirm them on; \
             run it at a terminal, or pass --yes to confirm them unattended",
            path.display(),
            manual.len(),
            manual[0]
        );
        return Err(exit::USAGE);
    }
    if let Err(e) = targets::reaper::become_subreaper() {
        eprintln!("crashlab: cannot become a child subreaper: {e}");
        return Err(exit::ENVIRONMENT);
    }
    // Ctrl-C and SIGTERM end the current trial cleanly: faults healed,
    // targets stopped, a partial report written.
    let interrupt = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        if let Err(e) = signal_hook::flag::register(signal, Arc::clone(&interrupt)) {
            eprintln!("crashlab: cannot install a signal handler: {e}");
            return Err(exit::ENVIRONMENT);
        }
    }
    // A bar on a terminal (not for one trial: a drill prompts there), a
    // line per trial otherwise, for CI logs.
    let count = options.trials.unwrap_or(plan.trials.count);
    let bar = (std::io::stderr().is_terminal() && count > 1).then(|| {
        let bar = indicatif::ProgressBar::new(u64::from(count));
        let style = indicatif::ProgressStyle::with_template(
            "{spinner} trial {pos}/{len} [{bar:30}] {elapsed} elapsed, eta {eta}  {msg}",
        )
        .expect("a valid template");
        bar.set_style(style.progress_chars("=> "));
        bar.enable_steady_tick(std::time::Duration::from_millis(200));
        bar
    });
    let progress = |t: &crashlab::reports::TrialReport, count: u32| {
        let rto = t.rto_ms.map_or("never".into(), |v| format!("{v:.1}ms"));
        let lost = t.rpo.lost_acked.map_or("?".into(), |v| v.to_string());
        let line = format!("{} (rto {rto}, lost {lost} of {} acked)", t.verdict.as_str(), t.rpo.acked_writes);
        match &bar {
            Some(bar) => {
                bar.inc(1);
                bar.set_message(format!("last: {line}"));
            }
            None => eprintln!("trial {}/{count}: {line}", t.index + 1),
        }
    };
    let result = runner::run(&plan, &source, &options, &Cancel::from_flag(Arc::clone(&interrupt)), progress);
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    match result {
        Ok(outcome) => {
            print!("{}", render_text(&outcome.report));
            // As the user would type it from here: relative when inside.
            let cwd = std::env::current_dir().unwrap_or_default();
            println!("run directory: {}", outcome.run_dir.strip_prefix(&cwd).unwrap_or(&outcome.run_dir).display());
            Ok(outcome)
        }
        Err(e) => {
            eprintln!("crashlab: {e}");
            match e {
                runner::RunError::RunDir(
                    run_dir::RunDirError::InUse { .. }
                    | run_dir::RunDirError::NotEmpty { .. }
                    | run_dir::RunDirError::NotAFinishedRun { .. },
                ) => Err(exit::USAGE),
                _ => Err(exit::ENVIRONMENT),
            }
        }
    }
}

fn bench(path: &Path, options: RunOptions, baseline: Option<&Path>) -> i32 {
    use crashlab::bench::{self, Change};
    let old = match baseline.map(|p| {
        std::fs::read_to_string(p)
            .map_err(|e| e.to_string())
            .and_then(|t| RunReport::from_json(&t).map_err(|e| format!("not a crashlab report: {e}")))
    }) {
        Some(Err(e)) => {
            eprintln!("crashlab: baseline {}: {e}", baseline.unwrap().display());
            return exit::USAGE;
        }
        other => other.map(Result::unwrap),
    };
    let started = std::time::Instant::now();
    let outcome = match execute(path, options) {
        Ok(outcome) => outcome,
        Err(code) => return code,
    };
    let wall = started.elapsed();
    let report = &outcome.report;
    // What the harness adds to each trial beyond the timeline the scenario
    // asks for: starting targets, readiness, read-back, teardown, checks.
    let timeline = scenario::load(path).ok().and_then(|p| p.workload.map(|w| w.duration)).unwrap_or_default();
    let trials = report.trials.len().max(1) as f64;
    let per_trial_ms = wall.as_secs_f64() * 1000.0 / trials;
    let overhead_ms = per_trial_ms - timeline.as_secs_f64() * 1000.0;
    println!(
        "wall {:.1}s for {} trial(s): {per_trial_ms:.0} ms a trial, of which the workload's {} and {overhead_ms:.0} ms \
         the harness's (start, readiness, recovery wait, read-back, teardown, checks)",
        wall.as_secs_f64(),
        report.trials.len(),
        crashlab::duration::format_duration(timeline)
    );
    let rto = bench::distribution(&bench::rtos(report), report.seed);
    let lost = bench::distribution(&bench::lost(report), report.seed);
    let ci = |c: Option<(f64, f64)>| c.map_or("-".into(), |(lo, hi)| format!("[{lo:.1}, {hi:.1}]"));
    println!(
        "rto_ms      mean {:.1} (95% CI {}), median 95% CI {}",
        rto.stats.mean.unwrap_or(f64::NAN),
        ci(rto.mean_ci),
        ci(rto.median_ci)
    );
    println!("lost_acked  mean {:.1} (95% CI {})", lost.stats.mean.unwrap_or(f64::NAN), ci(lost.mean_ci));
    let most = rto.histogram.iter().map(|b| b.1).max().unwrap_or(1).max(1);
    for (upper, n) in &rto.histogram {
        println!("  rto <= {upper:>9.1} ms {:<40} {n}", "#".repeat(n * 40 / most));
    }
    let comparison = old.as_ref().and_then(|old| bench::compare(&bench::rtos(report), &bench::rtos(old), report.seed));
    if let Some(c) = &comparison {
        println!(
            "rto against the baseline: median {:.1} -> {:.1} ms ({:+.1}%), difference 95% CI [{:.1}, {:.1}] ms: {}",
            c.baseline_median,
            c.median,
            c.relative * 100.0,
            c.difference_ci.0,
            c.difference_ci.1,
            match c.change {
                Change::Improved => "IMPROVED",
                Change::Regressed => "REGRESSED",
                Change::Unchanged => "no change (within noise)",
            }
        );
    }
    let json = serde_json::json!({
        "rto_ms": rto,
        "lost_acked": lost,
        "baseline": comparison,
        "wall_ms_per_trial": per_trial_ms,
        "overhead_ms_per_trial": overhead_ms,
    });
    let _ = std::fs::write(outcome.run_dir.join("bench.json"), serde_json::to_string_pretty(&json).unwrap());
    match (outcome_code(&outcome), comparison.map(|c| c.change)) {
        (exit::PASS, Some(Change::Regressed)) => exit::FAIL,
        (code, _) => code,
    }
}

fn drill(args: &RunArgs, db: Option<&Path>) -> i32 {
    let mut options = args.options();
    // A drill is one exercise of the runbook, unless asked for more.
    options.trials = options.trials.or(Some(1));
    let outcome = match execute(&args.scenario, options) {
        Ok(outcome) => outcome,
        Err(code) => return code,
    };
    let code = outcome_code(&outcome);
    if outcome.report.trials.is_empty() {
        return code;
    }
    let path =
        db.map_or_else(|| outcome.run_dir.parent().unwrap_or(Path::new(".")).join(drill::FILE), Path::to_path_buf);
    match DrillLog::open(&path).and_then(|mut log| log.record(&outcome.report, &outcome.run_dir)) {
        Ok(id) => {
            println!("drill #{id} recorded in {}", path.display());
            code
        }
        Err(e) => {
            eprintln!("crashlab: {e}");
            exit::ENVIRONMENT
        }
    }
}

fn history_of(scenario: Option<&str>, db: Option<&Path>) -> i32 {
    let path = db.map_or_else(|| Path::new(runner::RUNS_DIR).join(drill::FILE), Path::to_path_buf);
    let log = match DrillLog::open_existing(&path) {
        Ok(Some(log)) => log,
        Ok(None) => {
            eprintln!("crashlab: no drill log at {}: run `crashlab drill RUNBOOK` first, or pass --db", path.display());
            return exit::USAGE;
        }
        Err(e) => {
            eprintln!("crashlab: {e}");
            return exit::ENVIRONMENT;
        }
    };
    match log.list(scenario) {
        Ok(list) if list.is_empty() => {
            let known = log.scenarios().unwrap_or_default();
            eprintln!(
                "crashlab: no drills{} in {}; scenarios with drills: {}",
                scenario.map_or(String::new(), |s| format!(" of `{s}`")),
                path.display(),
                if known.is_empty() { "none".into() } else { known.join(", ") }
            );
            exit::USAGE
        }
        Ok(list) => {
            print!("{}", drill::render(&list));
            exit::PASS
        }
        Err(e) => {
            eprintln!("crashlab: {e}");
            exit::ENVIRONMENT
        }
    }
}

fn validate(files: &[PathBuf]) -> i32 {
    let mut code = exit::PASS;
    for file in files {
        match load(file) {
            Ok((plan, _)) => {
                println!("{}: ok ({} target(s), {} fault(s))", file.display(), plan.targets.len(), plan.faults.len())
            }
            Err(c) => code = c,
        }
    }
    code
}

fn analyze(run_dir: &Path) -> i32 {
    let (plan, _) = match load_with(&run_dir.join(runner::SCENARIO_FILE), scenario::load_stored) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    let old: Option<RunReport> = std::fs::read_to_string(run_dir.join(runner::REPORT_FILE))
        .ok()
        .and_then(|text| RunReport::from_json(&text).ok());
    let trials = match history::load(&run_dir.join(runner::HISTORY_FILE)) {
        Ok(trials) => trials,
        Err(e) => {
            eprintln!("crashlab: cannot read the history of {}: {e}", run_dir.display());
            return exit::USAGE;
        }
    };
    let reports = trials.iter().enumerate().map(|(i, events)| check::check_trial(&plan, i as u32, events)).collect();
    let seed = old.as_ref().map_or(0, |r| r.seed);
    let (error, warnings) = old.map_or((None, Vec::new()), |r| (r.error, r.warnings));
    let mut report = check::build_report(&plan, seed, reports, error);
    report.warnings = warnings;
    if let Err(e) = runner::write_reports(run_dir, &report) {
        eprintln!("crashlab: cannot write the report: {e}");
        return exit::ENVIRONMENT;
    }
    print!("{}", render_text(&report));
    verdict_code(report.verdict)
}

/// The report.json of a run directory, or a message saying why not.
fn stored_report(run_dir: &Path) -> Result<RunReport, String> {
    let path = run_dir.join(runner::REPORT_FILE);
    std::fs::read_to_string(&path)
        .map_err(|e| e.to_string())
        .and_then(|text| RunReport::from_json(&text).map_err(|e| format!("not a crashlab report: {e}")))
        .map_err(|e| format!("{}: {e}", path.display()))
}

fn table(run_dirs: &[PathBuf]) -> i32 {
    match run_dirs.iter().map(|d| stored_report(d)).collect::<Result<Vec<_>, _>>() {
        Ok(reports) => {
            print!("{}", crashlab::reports::render_table(&reports));
            exit::PASS
        }
        Err(e) => {
            eprintln!("crashlab: {e}");
            exit::USAGE
        }
    }
}

fn report(run_dir: &Path, format: Option<&str>) -> i32 {
    let report = match stored_report(run_dir) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("crashlab: {e}");
            return exit::USAGE;
        }
    };
    let rendered = match format {
        None => {
            return match runner::write_reports(run_dir, &report) {
                Ok(()) => {
                    let files: Vec<&str> = crashlab::reports::WRITERS.iter().map(|(name, _)| *name).collect();
                    println!("wrote report.json, {} into {}", files.join(", "), run_dir.display());
                    exit::PASS
                }
                Err(e) => {
                    eprintln!("crashlab: cannot write into {}: {e}", run_dir.display());
                    exit::ENVIRONMENT
                }
            };
        }
        Some("json") => report.to_json(),
        Some("junit") => crashlab::reports::render_junit(&report),
        Some("markdown") => crashlab::reports::render_markdown(&report),
        Some("prometheus") => crashlab::reports::render_prometheus(&report),
        Some("html") => crashlab::reports::render_html(&report),
        _ => render_text(&report),
    };
    print!("{rendered}");
    exit::PASS
}

fn build_image(debian: &[String]) -> i32 {
    let started = std::time::Instant::now();
    let built = crashlab::engine::Engine::connect().map_err(crashlab::image::ImageError::from).and_then(|engine| {
        if debian.is_empty() {
            crashlab::image::demo_kv(&engine)
        } else {
            crashlab::image::debian(&engine, debian)
        }
    });
    match built {
        Ok((image, fresh)) => {
            let how = if fresh { "built" } else { "cached" };
            println!("{image} ({how}, {:.2} s)", started.elapsed().as_secs_f64());
            exit::PASS
        }
        Err(e) => {
            eprintln!("crashlab: {e}");
            exit::ENVIRONMENT
        }
    }
}

fn cleanup(run_dir: &Path) -> i32 {
    match cleanup::cleanup(run_dir) {
        Ok(done) => {
            println!(
                "{}: resumed {} paused process group(s), stopped {} process(es), unmounted {} FUSE layer(s), \
                 restored {} damaged file(s), removed {} network namespace(s) and link(s), removed {} container(s), took down {} compose \
                 project(s)",
                run_dir.display(),
                done.resumed.len(),
                done.stopped.len(),
                done.unmounted.len(),
                done.restored.len(),
                done.network_removed,
                done.containers_removed,
                done.compose_projects_down
            );
            for (file, why) in &done.not_restored {
                println!("  not restored: {}: {why}", file.display());
            }
            for why in &done.refused {
                println!("  left alone: {why}");
            }
            exit::PASS
        }
        Err(e) => {
            eprintln!("crashlab: cannot clean up {}: {e}", run_dir.display());
            match e {
                cleanup::CleanupError::InUse { .. } | cleanup::CleanupError::NotARun => exit::USAGE,
                _ => exit::ENVIRONMENT,
            }
        }
    }
}
