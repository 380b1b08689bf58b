//! The crashlab command line. Exit codes are a contract (see `--help`).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use clap::{Parser, Subcommand};

use crashlab::cancel::Cancel;
use crashlab::drill::{self, DrillLog};
use crashlab::exit::Exit;
use crashlab::reports::{self, render_text, RunReport};
use crashlab::runner::{self, Operator, RunOptions, TrialStop};
use crashlab::scenario::{self, LoadError};
use crashlab::{analyze, cleanup, demo, fault, run_dir, targets};

const EXIT_CODES: &str = "\
Exit codes:
  0  every expectation was met
  1  an expectation failed
  2  invalid scenario or usage (nothing was started)
  3  environment or infrastructure error (a target would not start, permission denied...)
  4  verdict unknown (a check could not decide, or the run was interrupted)
  5  aborted: an [abort] condition stopped the run (every fault healed at once)";

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
            shard: None,
        }
    }
}

/// What `run` and `bench` take to run one shard of a run.
#[derive(clap::Args)]
struct ShardArg {
    /// Run only shard K of N: the trials whose index modulo N is K-1, each
    /// with the seed it has in the whole run (so --seed is required, the
    /// same for every shard). `crashlab merge` puts the N run directories
    /// together into one run, as if it had not been sharded.
    #[arg(long, value_name = "K/N", value_parser = parse_shard)]
    shard: Option<(u32, u32)>,
}

fn parse_shard(text: &str) -> Result<(u32, u32), String> {
    let expected = || format!("`{text}`: expected K/N, two whole numbers with 1 <= K <= N, e.g. 2/3");
    let (k, n) = text.split_once('/').ok_or_else(expected)?;
    let (k, n): (u32, u32) = (k.trim().parse().map_err(|_| expected())?, n.trim().parse().map_err(|_| expected())?);
    if k == 0 || k > n {
        return Err(expected());
    }
    Ok((k, n))
}

#[derive(Subcommand)]
enum Command {
    /// Run a scenario: start its targets, drive the workload, inject the
    /// faults, wait for recovery, read back, and judge.
    ///
    /// Writes report.json, history.jsonl, the fault journal and the targets'
    /// logs into the run directory, and prints its path.
    #[command(after_help = EXIT_CODES)]
    Run {
        #[command(flatten)]
        run: RunArgs,
        #[command(flatten)]
        shard: ShardArg,
    },
    /// Run a scenario for many trials and report RTO and RPO distributions
    /// (percentiles, bootstrap 95% intervals, a histogram); with
    /// --baseline, say whether RTO improved, regressed or did not change
    /// (a regression exits 1). Writes bench.json into the run directory.
    #[command(after_help = EXIT_CODES)]
    Bench {
        #[command(flatten)]
        run: RunArgs,
        #[command(flatten)]
        shard: ShardArg,
        /// An earlier run to compare with: its run directory, or its
        /// report.json.
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
        /// Only the drills of this scenario: its `name`, or its file.
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
    /// Put the run directories of a sharded run (`run|bench --shard K/N`,
    /// one per shard) together into one run directory, as if the run had
    /// not been sharded: every trial as its shard judged it, one history,
    /// every report format, and the distributions and expectations over
    /// all trials; the exit code is the whole run's verdict.
    ///
    /// The shards must be of one run (the same scenario file, seed, trial
    /// count and shard count), each shard once and none missing. When
    /// every shard was a bench, the bench summary too (bench.json), and
    /// --baseline compares with an earlier run as `bench` does.
    #[command(verbatim_doc_comment, after_help = EXIT_CODES)]
    Merge {
        /// The shards' run directories, in any order.
        #[arg(required = true)]
        run_dirs: Vec<PathBuf>,
        /// The merged run directory (default: a new one under ./crashlab-runs/).
        #[arg(long)]
        out: Option<PathBuf>,
        /// With --out: replace the finished run in that directory.
        #[arg(long, requires = "out")]
        replace: bool,
        /// An earlier run to compare the merged bench with: its run
        /// directory, or its report.json.
        #[arg(long)]
        baseline: Option<PathBuf>,
    },
    /// Re-run the checkers on a stored run and rewrite its report.json.
    #[command(after_help = EXIT_CODES)]
    Analyze { run_dir: PathBuf },
    /// Heal what a run left behind if the harness itself was killed:
    /// resume paused targets, stop the run's processes (targets, hooks,
    /// recovery steps, lock holders, stress-ng hogs), unmount its FUSE
    /// layers, put back the original bytes of files its faults damaged,
    /// delete its network namespaces and links, remove its containers,
    /// take down its compose projects, remove its memory and cpu cgroups
    /// and clock control files, and reach each of its remote hosts over
    /// SSH to run the same cleanup on the agent's run there.
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
        #[arg(long, value_enum)]
        format: Option<Format>,
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
    /// (internal) Print how far the wall clock libc tells is from the
    /// real one, every 20 ms: a fixture of the clock fault's tests.
    #[command(hide = true)]
    Wallclock {
        #[arg(long, default_value = "127.0.0.1")]
        host: std::net::IpAddr,
        #[arg(long)]
        port: u16,
    },
    /// (internal) The agent a run starts on each `[host.NAME]` over SSH:
    /// it answers the control node on stdin and stdout, and keeps its
    /// journal in DIR/run.
    #[command(hide = true)]
    Agent { dir: PathBuf },
    /// (internal) The SSH end of a link to a host: connects (--check: only
    /// that), installs the agent in DIR there and passes lines to it.
    #[command(hide = true)]
    HostLink {
        /// The host, as JSON.
        #[arg(long)]
        host: String,
        #[arg(long)]
        dir: String,
        #[arg(long)]
        check: bool,
    },
    /// (internal) Hold a lock for a stale-lock fault.
    #[command(hide = true)]
    LockHolder {
        #[arg(long)]
        path: PathBuf,
        #[arg(long, value_enum)]
        lock: fault::stale_lock::HolderLock,
        /// Run as this user (root drops to it before touching the file).
        #[arg(long)]
        user: Option<String>,
    },
}

/// A report format `crashlab report --format` prints.
#[derive(Clone, Copy, clap::ValueEnum)]
enum Format {
    Json,
    Junit,
    Markdown,
    Prometheus,
    Html,
    Text,
}

impl Format {
    fn render(self, report: &RunReport) -> String {
        match self {
            Format::Json => report.to_json(),
            Format::Junit => reports::render_junit(report),
            Format::Markdown => reports::render_markdown(report),
            Format::Prometheus => reports::render_prometheus(report),
            Format::Html => reports::render_html(report),
            Format::Text => render_text(report),
        }
    }
}

/// Why a command ended early: the message to print (empty when it was
/// printed already, as diagnostics are) and the exit code it maps to.
#[derive(Debug)]
struct CliError {
    exit: Exit,
    message: String,
}

impl CliError {
    fn usage(message: impl std::fmt::Display) -> CliError {
        CliError { exit: Exit::Usage, message: message.to_string() }
    }

    fn environment(message: impl std::fmt::Display) -> CliError {
        CliError { exit: Exit::Environment, message: message.to_string() }
    }

    /// Already said on stderr.
    fn said(exit: Exit) -> CliError {
        CliError { exit, message: String::new() }
    }
}

type Outcome = Result<Exit, CliError>;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        // Programs of their own, with exit codes of their own.
        Command::DemoKv(options) => return ExitCode::from(demo::run(options) as u8),
        Command::SqliteApp(options) => return ExitCode::from(demo::sqlite_app::run(options) as u8),
        Command::Wallclock { host, port } => return ExitCode::from(demo::wallclock::wallclock_main(host, port) as u8),
        Command::HostLink { host, dir, check } => {
            return ExitCode::from(targets::remote::relay::relay_main(&host, &dir, check) as u8)
        }
        Command::Agent { dir } => return ExitCode::from(crashlab::agent::agent_main(&dir) as u8),
        Command::LockHolder { path, lock, user } => {
            return ExitCode::from(fault::stale_lock::lock_holder_main(&path, lock, user.as_deref()) as u8)
        }
        Command::Run { run, shard } => {
            execute(&run.scenario, RunOptions { shard: shard.shard, ..run.options() }).map(|o| outcome_exit(&o))
        }
        Command::Bench { run, shard, baseline } => {
            bench(&run.scenario, RunOptions { shard: shard.shard, ..run.options() }, baseline.as_deref())
        }
        Command::Drill { run, db } => drill(&run, db.as_deref()),
        Command::History { scenario, db } => history_of(scenario.as_deref(), db.as_deref()),
        Command::Validate { files } => Ok(validate(&files)),
        Command::Schema => {
            println!("{}", serde_json::to_string_pretty(&scenario::schema::schema()).expect("a schema serializes"));
            Ok(Exit::Pass)
        }
        Command::Analyze { run_dir } => analyze(&run_dir),
        Command::Merge { run_dirs, out, replace, baseline } => {
            merge(&run_dirs, out.as_deref(), replace, baseline.as_deref())
        }
        Command::Cleanup { run_dir } => cleanup(&run_dir),
        Command::Report { run_dir, format } => report(&run_dir, format),
        Command::Table { run_dirs } => table(&run_dirs),
        Command::Image(ImageCommand::Build { debian, .. }) => build_image(&debian),
    };
    let exit = outcome.unwrap_or_else(|e| {
        if !e.message.is_empty() {
            eprintln!("crashlab: {}", e.message);
        }
        e.exit
    });
    exit.into()
}

/// Loads a scenario, printing every error.
fn load(path: &Path) -> Result<(scenario::Plan, String), CliError> {
    match scenario::load(path) {
        Ok(plan) => Ok((plan, std::fs::read_to_string(path).unwrap_or_default())),
        Err(e) => Err(load_error(path, e)),
    }
}

fn load_error(path: &Path, e: LoadError) -> CliError {
    match e {
        LoadError::Invalid(d) => {
            eprint!("{d}");
            eprintln!("{}: {} error(s); nothing was started", path.display(), d.list.len());
            CliError::said(Exit::Usage)
        }
        e => CliError::usage(e),
    }
}

/// The exit code of a finished (or stopped) run.
fn outcome_exit(outcome: &runner::RunOutcome) -> Exit {
    match &outcome.stop {
        Some(TrialStop::Environment(e)) => {
            eprintln!("crashlab: {e}");
            Exit::Environment
        }
        Some(TrialStop::Interrupted) => Exit::Unknown,
        // The watch said why as it fired, and the report says it again.
        Some(TrialStop::Aborted(_)) => Exit::Aborted,
        None => outcome.report.verdict.into(),
    }
}

/// Refuses a procedure with manual steps when nobody can confirm them.
fn check_operator(path: &Path, plan: &scenario::Plan, operator: Operator) -> Result<(), CliError> {
    let manual: Vec<&str> = plan
        .recover
        .iter()
        .filter_map(|s| match &s.action {
            scenario::StepAction::Manual { instruction } => Some(instruction.as_str()),
            _ => None,
        })
        .collect();
    if manual.is_empty() || operator != Operator::Prompt || std::io::stdin().is_terminal() {
        return Ok(());
    }
    Err(CliError::usage(format!(
        "{}: the procedure has {} manual step(s) (\"{}\"...) and no terminal to confirm them on; run it at a \
         terminal, or pass --yes to confirm them unattended",
        path.display(),
        manual.len(),
        manual[0]
    )))
}

/// A bar on a terminal (not for one trial: a drill prompts there), a line
/// per trial otherwise, for CI logs.
fn progress(
    count: u32,
) -> (Option<indicatif::ProgressBar>, impl Fn(&Option<indicatif::ProgressBar>, &reports::TrialReport, u32)) {
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
    let report = |bar: &Option<indicatif::ProgressBar>, t: &reports::TrialReport, count: u32| {
        let rto = t.rto_ms.map_or("never".into(), |v| format!("{v:.1}ms"));
        let lost = t.rpo.lost_acked.map_or("?".into(), |v| v.to_string());
        let line = format!("{} (rto {rto}, lost {lost} of {} acked)", t.verdict.as_str(), t.rpo.acked_writes);
        match bar {
            Some(bar) => {
                bar.inc(1);
                bar.set_message(format!("last: {line}"));
            }
            None => eprintln!("trial {}/{count}: {line}", t.index + 1),
        }
    };
    (bar, report)
}

/// Loads and runs a scenario, printing progress and the summary; `Err`
/// when it could not run at all.
fn execute(path: &Path, options: RunOptions) -> Result<runner::RunOutcome, CliError> {
    let (plan, source) = load(path)?;
    check_operator(path, &plan, options.operator)?;
    targets::reaper::become_subreaper()
        .map_err(|e| CliError::environment(format!("cannot become a child subreaper: {e}")))?;
    // Ctrl-C and SIGTERM end the current trial cleanly: faults healed,
    // targets stopped, a partial report written.
    let interrupt = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&interrupt))
            .map_err(|e| CliError::environment(format!("cannot install a signal handler: {e}")))?;
    }
    let count = options.trials.unwrap_or(plan.trials.count);
    let (bar, report) =
        progress(options.shard.map_or(count, |(k, n)| (k - 1..count).step_by(n as usize).count() as u32));
    let cancel = Cancel::from_flag(Arc::clone(&interrupt));
    let result = runner::run(&plan, &source, &options, &cancel, |t, count| report(&bar, t, count));
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let outcome = result.map_err(|e| match e {
        runner::RunError::RunDir(
            run_dir::RunDirError::InUse { .. }
            | run_dir::RunDirError::NotEmpty { .. }
            | run_dir::RunDirError::NotAFinishedRun { .. },
        )
        | runner::RunError::Shard(_) => CliError::usage(e),
        _ => CliError::environment(e),
    })?;
    print!("{}", render_text(&outcome.report));
    // As the user would type it from here: relative when inside.
    let cwd = std::env::current_dir().unwrap_or_default();
    println!("run directory: {}", outcome.run_dir.strip_prefix(&cwd).unwrap_or(&outcome.run_dir).display());
    Ok(outcome)
}

fn bench(path: &Path, options: RunOptions, baseline: Option<&Path>) -> Outcome {
    let old = baseline.map(read_baseline).transpose()?;
    let started = std::time::Instant::now();
    let outcome = execute(path, options)?;
    let workload = scenario::load(path).ok().and_then(|p| p.workload.map(|w| w.duration)).unwrap_or_default();
    let summary = bench_summary(&outcome.report, &outcome.run_dir, started.elapsed(), workload, old.as_ref());
    Ok(match outcome_exit(&outcome) {
        Exit::Pass if summary.regressed() => Exit::Fail,
        exit => exit,
    })
}

/// A baseline given as a run directory or its report.json.
fn read_baseline(path: &Path) -> Result<RunReport, CliError> {
    let read = if path.is_dir() { stored_report(path) } else { read_report(path) };
    read.map_err(|e| CliError::usage(format!("baseline {e}")))
}

/// Prints the bench summary of `report` and writes its bench.json.
fn bench_summary(
    report: &RunReport,
    run_dir: &Path,
    wall: std::time::Duration,
    workload: std::time::Duration,
    old: Option<&RunReport>,
) -> crashlab::bench::BenchSummary {
    if let Some(old) = old.filter(|old| old.scenario != report.scenario) {
        eprintln!(
            "crashlab: warning: the baseline is a run of `{}`, this one of `{}`: the comparison is across scenarios",
            old.scenario, report.scenario
        );
    }
    let summary = crashlab::bench::BenchSummary::of(report, wall, workload, old);
    print!("{}", summary.render());
    let json = serde_json::to_string_pretty(&summary).expect("a summary serializes");
    let _ = std::fs::write(run_dir.join("bench.json"), json);
    summary
}

fn merge(run_dirs: &[PathBuf], out: Option<&Path>, replace: bool, baseline: Option<&Path>) -> Outcome {
    let old = baseline.map(read_baseline).transpose()?;
    // Refused before a merged directory is made.
    if old.is_some() && run_dirs.iter().any(|d| !d.join("bench.json").is_file()) {
        return Err(CliError::usage("--baseline compares benches: some of these shards were runs, not benches"));
    }
    let merged = crashlab::merge::merge(run_dirs, out, replace).map_err(|e| match e {
        crashlab::merge::MergeError::Write { .. } => CliError::environment(e),
        crashlab::merge::MergeError::Scenario(e) => load_error(&run_dirs[0].join(runner::SCENARIO_FILE), e),
        e => CliError::usage(e),
    })?;
    print!("{}", render_text(&merged.report));
    let exit: Exit = merged.report.verdict.into();
    let regressed = match merged.bench_wall {
        Some(wall) => {
            let plan = scenario::load_stored(&merged.run_dir.join(runner::SCENARIO_FILE)).ok();
            let workload = plan.and_then(|p| p.workload.map(|w| w.duration)).unwrap_or_default();
            bench_summary(&merged.report, &merged.run_dir, wall, workload, old.as_ref()).regressed()
        }
        None => false,
    };
    let cwd = std::env::current_dir().unwrap_or_default();
    println!("run directory: {}", merged.run_dir.strip_prefix(&cwd).unwrap_or(&merged.run_dir).display());
    Ok(if exit == Exit::Pass && regressed { Exit::Fail } else { exit })
}

fn drill(args: &RunArgs, db: Option<&Path>) -> Outcome {
    let mut options = args.options();
    // A drill is one exercise of the runbook, unless asked for more.
    options.trials = options.trials.or(Some(1));
    let outcome = execute(&args.scenario, options)?;
    let exit = outcome_exit(&outcome);
    if outcome.report.trials.is_empty() {
        return Ok(exit);
    }
    let path =
        db.map_or_else(|| outcome.run_dir.parent().unwrap_or(Path::new(".")).join(drill::FILE), Path::to_path_buf);
    let id = DrillLog::open(&path)
        .and_then(|mut log| log.record(&outcome.report, &outcome.run_dir))
        .map_err(CliError::environment)?;
    println!("drill #{id} recorded in {}", path.display());
    Ok(exit)
}

fn history_of(scenario: Option<&str>, db: Option<&Path>) -> Outcome {
    // A scenario file stands for its name, which is what the log keeps.
    let named = match scenario.map(Path::new).filter(|p| p.is_file()) {
        Some(file) => Some(load(file)?.0.name),
        None => scenario.map(str::to_string),
    };
    let scenario = named.as_deref();
    let path = db.map_or_else(|| Path::new(runner::RUNS_DIR).join(drill::FILE), Path::to_path_buf);
    let log = DrillLog::open_existing(&path).map_err(CliError::environment)?.ok_or_else(|| {
        CliError::usage(format!("no drill log at {}: run `crashlab drill RUNBOOK` first, or pass --db", path.display()))
    })?;
    let list = log.list(scenario).map_err(CliError::environment)?;
    if list.is_empty() {
        let known = log.scenarios().unwrap_or_default();
        return Err(CliError::usage(format!(
            "no drills{} in {}; scenarios with drills: {}",
            scenario.map_or(String::new(), |s| format!(" of `{s}`")),
            path.display(),
            if known.is_empty() { "none".into() } else { known.join(", ") }
        )));
    }
    print!("{}", drill::render(&list));
    Ok(Exit::Pass)
}

fn validate(files: &[PathBuf]) -> Exit {
    let mut exit = Exit::Pass;
    for file in files {
        match load(file) {
            Ok((plan, _)) => {
                println!("{}: ok ({} target(s), {} fault(s))", file.display(), plan.targets.len(), plan.faults.len())
            }
            Err(e) => {
                if !e.message.is_empty() {
                    eprintln!("crashlab: {}", e.message);
                }
                exit = e.exit;
            }
        }
    }
    exit
}

fn analyze(run_dir: &Path) -> Outcome {
    let report = analyze::analyze(run_dir).map_err(|e| match e {
        analyze::AnalyzeError::Scenario(e) => load_error(&run_dir.join(runner::SCENARIO_FILE), e),
        analyze::AnalyzeError::History { .. } => CliError::usage(e),
        analyze::AnalyzeError::Write(_) => CliError::environment(e),
    })?;
    print!("{}", render_text(&report));
    Ok(report.verdict.into())
}

/// The report.json of a run directory, or a message saying why not.
fn stored_report(run_dir: &Path) -> Result<RunReport, String> {
    read_report(&run_dir.join(runner::REPORT_FILE))
}

fn read_report(path: &Path) -> Result<RunReport, String> {
    std::fs::read_to_string(path)
        .map_err(|e| e.to_string())
        .and_then(|text| RunReport::from_json(&text).map_err(|e| format!("not a crashlab report: {e}")))
        .map_err(|e| format!("{}: {e}", path.display()))
}

fn table(run_dirs: &[PathBuf]) -> Outcome {
    let reports = run_dirs.iter().map(|d| stored_report(d)).collect::<Result<Vec<_>, _>>().map_err(CliError::usage)?;
    print!("{}", reports::render_table(&reports));
    Ok(Exit::Pass)
}

fn report(run_dir: &Path, format: Option<Format>) -> Outcome {
    let report = stored_report(run_dir).map_err(CliError::usage)?;
    match format {
        Some(format) => print!("{}", format.render(&report)),
        None => {
            runner::write_reports(run_dir, &report)
                .map_err(|e| CliError::environment(format!("cannot write into {}: {e}", run_dir.display())))?;
            let files: Vec<&str> = reports::WRITERS.iter().map(|(name, _)| *name).collect();
            println!("wrote report.json, {} into {}", files.join(", "), run_dir.display());
        }
    }
    Ok(Exit::Pass)
}

fn build_image(debian: &[String]) -> Outcome {
    let started = std::time::Instant::now();
    let built = crashlab::engine::Engine::connect().map_err(crashlab::image::ImageError::from).and_then(|engine| {
        if debian.is_empty() {
            crashlab::image::demo_kv(&engine)
        } else {
            crashlab::image::debian(&engine, debian)
        }
    });
    let (image, fresh) = built.map_err(CliError::environment)?;
    let how = if fresh { "built" } else { "cached" };
    println!("{image} ({how}, {:.2} s)", started.elapsed().as_secs_f64());
    Ok(Exit::Pass)
}

fn cleanup(run_dir: &Path) -> Outcome {
    let done = cleanup::cleanup(run_dir).map_err(|e| {
        let message = format!("cannot clean up {}: {e}", run_dir.display());
        match e {
            cleanup::CleanupError::InUse { .. } | cleanup::CleanupError::NotARun | cleanup::CleanupError::NoSuchDir => {
                CliError::usage(message)
            }
            _ => CliError::environment(message),
        }
    })?;
    println!(
        "{}: resumed {} paused process group(s), stopped {} process(es), unmounted {} FUSE layer(s), restored {} \
         damaged file(s), removed {} network namespace(s) and link(s), removed {} container(s), took down {} compose \
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
    if done.engine_networks_removed > 0 {
        println!("  removed {} container network(s) of the run", done.engine_networks_removed);
    }
    if done.cgroups_removed > 0 {
        println!("  removed {} cgroup(s) (memory, cpu)", done.cgroups_removed);
    }
    if done.rules_removed > 0 {
        println!("  removed {} partition rule(s) of the host", done.rules_removed);
    }
    for (object, action, said) in &done.cluster_objects {
        match said {
            Ok(()) => println!("  {action} {object}"),
            Err(e) => println!("  left {object}: {e}"),
        }
    }
    if done.clock_files_removed > 0 {
        println!("  removed {} clock control file(s) (libfaketime)", done.clock_files_removed);
    }
    for (host, said) in &done.hosts {
        match said {
            Ok(text) => println!("  host `{host}`: {}", text.replace('\n', "\n    ")),
            Err(why) => println!("  host `{host}`: not cleaned: {}", why.replace('\n', "\n    ")),
        }
    }
    match &done.history_kept {
        Some(Ok(events @ 1..)) => println!(
            "  kept the history of the trial the harness was killed in ({events} event(s)): `crashlab analyze` checks it"
        ),
        Some(Err(why)) => println!("  the history of the trial the harness was killed in was not kept: {why}"),
        // Killed before its workload began: nothing of it was written.
        Some(Ok(0)) | None => {}
    }
    for (file, why) in &done.not_restored {
        println!("  not restored: {}: {why}", file.display());
    }
    for why in &done.refused {
        println!("  left alone: {why}");
    }
    Ok(Exit::Pass)
}
