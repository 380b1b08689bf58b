//! The crashlab command line. Exit codes are a contract (see `--help`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use clap::{Parser, Subcommand};

use crashlab::reports::{render_text, RunReport, Verdict};
use crashlab::runner::{self, history, RunOptions, TrialStop};
use crashlab::scenario::{self, LoadError};
use crashlab::{check, demo, exit, fault, target};

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
}

impl RunArgs {
    fn options(&self) -> RunOptions {
        RunOptions { trials: self.trials, seed: self.seed, out: self.out.clone() }
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
    /// resume paused targets, stop the run's processes and lock holders,
    /// unmount its FUSE layers, put back the original bytes of files its
    /// faults damaged, delete its network namespaces, remove its containers
    /// and take down its compose projects (all from the run's fault journal).
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
    /// Run the reference key-value store (the embedded default target).
    DemoKv(demo::DemoKvOptions),
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
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Run(args) => run(&args.scenario, args.options()),
        Command::Bench { run, baseline } => bench(&run.scenario, run.options(), baseline.as_deref()),
        Command::Validate { files } => validate(&files),
        Command::Schema => {
            println!("{}", serde_json::to_string_pretty(&scenario::schema::schema()).expect("a schema serializes"));
            exit::PASS
        }
        Command::Analyze { run_dir } => analyze(&run_dir),
        Command::Cleanup { run_dir } => cleanup(&run_dir),
        Command::Report { run_dir, format } => report(&run_dir, format.as_deref()),
        Command::DemoKv(options) => demo::run(options),
        Command::Image(ImageCommand::Build { debian, .. }) => build_image(&debian),
        Command::LockHolder { path, lock } => fault::stale_lock::lock_holder_main(&path, &lock),
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
    if let Err(e) = target::reaper::become_subreaper() {
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
    let progress = |t: &crashlab::reports::TrialReport, count: u32| {
        let rto = t.rto_ms.map_or("never".into(), |v| format!("{v:.1}ms"));
        let lost = t.rpo.lost_acked.map_or("?".into(), |v| v.to_string());
        eprintln!(
            "trial {}/{count}: {} (rto {rto}, lost {lost} of {} acked)",
            t.index + 1,
            t.verdict.as_str(),
            t.rpo.acked_writes
        );
    };
    match runner::run(&plan, &source, &options, &interrupt, progress) {
        Ok(outcome) => {
            print!("{}", render_text(&outcome.report));
            println!("run directory: {}", outcome.run_dir.display());
            Ok(outcome)
        }
        Err(e) => {
            eprintln!("crashlab: {e}");
            Err(exit::ENVIRONMENT)
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
    let outcome = match execute(path, options) {
        Ok(outcome) => outcome,
        Err(code) => return code,
    };
    let report = &outcome.report;
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
    let json = serde_json::json!({ "rto_ms": rto, "lost_acked": lost, "baseline": comparison });
    let _ = std::fs::write(outcome.run_dir.join("bench.json"), serde_json::to_string_pretty(&json).unwrap());
    match (outcome_code(&outcome), comparison.map(|c| c.change)) {
        (exit::PASS, Some(Change::Regressed)) => exit::FAIL,
        (code, _) => code,
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
    let error = old.and_then(|r| r.error);
    let report = check::build_report(&plan, seed, reports, error);
    if let Err(e) = runner::write_reports(run_dir, &report) {
        eprintln!("crashlab: cannot write the report: {e}");
        return exit::ENVIRONMENT;
    }
    print!("{}", render_text(&report));
    verdict_code(report.verdict)
}

fn report(run_dir: &Path, format: Option<&str>) -> i32 {
    let path = run_dir.join(runner::REPORT_FILE);
    let report = match std::fs::read_to_string(&path)
        .map_err(|e| e.to_string())
        .and_then(|text| RunReport::from_json(&text).map_err(|e| format!("not a crashlab report: {e}")))
    {
        Ok(report) => report,
        Err(e) => {
            eprintln!("crashlab: {}: {e}", path.display());
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
    match fault::journal::cleanup(run_dir) {
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
            exit::PASS
        }
        Err(e) => {
            eprintln!("crashlab: cannot clean up {}: {e}", run_dir.display());
            exit::ENVIRONMENT
        }
    }
}
