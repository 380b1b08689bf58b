//! The crashlab `RunReport` schema and its writers.
//!
//! A writer formats a report; it never decides a verdict. The JSON form is a
//! contract (DESIGN.md): fields are added, never renamed or removed, without a
//! new `format_version`.

mod html;
mod junit;
mod markdown;
mod prom;
mod stats;
mod text;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use html::render_html;
pub use junit::render_junit;
pub use markdown::{render_markdown, render_table};
pub use prom::render_prometheus;
pub use stats::{histogram, Stats};
pub use text::render_text;

/// A writer: one format of a report.
pub type Writer = fn(&RunReport) -> String;

/// The files a run directory holds besides `report.json`, and their writers.
pub const WRITERS: &[(&str, Writer)] = &[
    ("junit.xml", render_junit),
    ("summary.md", render_markdown),
    ("metrics.prom", render_prometheus),
    ("report.html", render_html),
];

/// Bumped when a field changes meaning or disappears.
pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Pass,
    Fail,
    Unknown,
    /// The run stopped itself: an `[abort]` condition fired (a run's verdict
    /// only; the trial it cut short is unknown).
    Aborted,
}

impl Verdict {
    /// Aborted beats fail beats unknown beats pass.
    pub fn combine(self, other: Verdict) -> Verdict {
        use Verdict::*;
        match (self, other) {
            (Aborted, _) | (_, Aborted) => Aborted,
            (Fail, _) | (_, Fail) => Fail,
            (Unknown, _) | (_, Unknown) => Unknown,
            _ => Pass,
        }
    }

    pub fn all(verdicts: impl IntoIterator<Item = Verdict>) -> Verdict {
        verdicts.into_iter().fold(Verdict::Pass, Verdict::combine)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
            Verdict::Unknown => "unknown",
            Verdict::Aborted => "aborted",
        }
    }
}

/// The exit codes CI relies on (DESIGN.md, "Contracts"), as `--help`
/// lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Every expectation was met.
    Pass = 0,
    /// An expectation failed.
    Fail = 1,
    /// The scenario or the command line was invalid; nothing was started.
    Usage = 2,
    /// The environment failed: a target would not start, permission denied...
    Environment = 3,
    /// The verdict is unknown: a check could not decide, or the run was interrupted.
    Unknown = 4,
    /// An `[abort]` condition stopped the run (every fault healed at once).
    Aborted = 5,
}

impl Exit {
    pub fn code(self) -> u8 {
        self as u8
    }
}

impl From<Verdict> for Exit {
    fn from(verdict: Verdict) -> Exit {
        match verdict {
            Verdict::Pass => Exit::Pass,
            Verdict::Fail => Exit::Fail,
            Verdict::Unknown => Exit::Unknown,
            Verdict::Aborted => Exit::Aborted,
        }
    }
}

impl From<Exit> for std::process::ExitCode {
    fn from(exit: Exit) -> Self {
        std::process::ExitCode::from(exit.code())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunReport {
    pub format_version: u32,
    pub scenario: String,
    pub seed: u64,
    pub verdict: Verdict,
    /// The run stopped early (Ctrl-C, or the harness hit an error).
    pub interrupted: bool,
    /// Why the run stopped early, if it did.
    pub error: Option<String>,
    pub trials: Vec<TrialReport>,
    pub summary: Summary,
    pub expectations: Vec<ExpectationReport>,
    /// What went wrong for the whole run without stopping it (containers
    /// of earlier runs left behind...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// The part of a sharded run this report holds (`--shard K/N`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<Shard>,
    /// The run directories `crashlab merge` put together into this one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub merged_from: Vec<String>,
}

/// Shard `index` (from 1) of `count`: the trials whose index modulo
/// `count` is `index - 1`, of the `of_trials` the whole run has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
    pub of_trials: u32,
}

impl Shard {
    /// Whether trial `trial` (from 0) belongs to this shard.
    pub fn holds(&self, trial: u32) -> bool {
        trial % self.count == self.index - 1
    }

    /// The trials of the whole run this shard runs, in order.
    pub fn trials(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.of_trials).filter(|t| self.holds(*t))
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "shard {}/{} of {} trial(s)", self.index, self.count, self.of_trials)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrialReport {
    pub index: u32,
    pub seed: u64,
    pub verdict: Verdict,
    pub faults: Vec<FaultReport>,
    /// Worst recovery time of the trial's faults; null if one never recovered.
    pub rto_ms: Option<f64>,
    pub ttd_ms: Option<f64>,
    pub rpo: Rpo,
    pub ops: OpCounts,
    pub checks: Vec<CheckReport>,
    /// Op outcomes over the trial's timeline, by the time each op was sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub availability: Option<Availability>,
    /// The recovery procedure's steps, timed, when the scenario has one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recovery: Vec<StepReport>,
    /// Last lines of each target's output, kept when the trial did not pass.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub target_logs: BTreeMap<String, Vec<String>>,
    /// How many times each target was started in the trial (the harness's
    /// incarnations): one more than its crashes, so a crash loop shows.
    #[serde(default)]
    pub incarnations: BTreeMap<String, u32>,
    /// Where the probes and workload reached each container target, and by
    /// which path: `172.18.0.2:27115 (its own address)`, or `127.0.0.1:27115
    /// (its published port)`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub reached: BTreeMap<String, String>,
    /// What went wrong without stopping the trial (history `warning` events).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Of the writes sent while a fault's outage lasted (from its injection
    /// to the start of the sustained healthy window), the percentage not
    /// acknowledged; present when `[expect]` bounds it, and null when no
    /// write was sent then (nothing to judge).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errors_during_fault: Option<f64>,
}

impl TrialReport {
    /// A fault struck and the target never recovered (as opposed to no
    /// RTO because nothing was injected).
    pub fn never_recovered(&self) -> bool {
        self.rto_ms.is_none() && self.faults.iter().any(|f| !f.setup)
    }
}

/// Availability over time: per bucket of `bucket_ms` from 0 ms, how many
/// ops sent in it succeeded and how many did not (failed or unknown).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Availability {
    pub bucket_ms: f64,
    pub ok: Vec<u32>,
    pub not_ok: Vec<u32>,
}

impl Availability {
    pub const BUCKET_MS: f64 = 100.0;

    /// Buckets `(start_ms, outcome ok)` of ops into [`Self::BUCKET_MS`] slots.
    pub fn of(ops: impl IntoIterator<Item = (f64, bool)>) -> Option<Availability> {
        let mut a = Availability { bucket_ms: Self::BUCKET_MS, ..Default::default() };
        for (at, ok) in ops {
            let i = (at.max(0.0) / a.bucket_ms) as usize;
            if a.ok.len() <= i {
                a.ok.resize(i + 1, 0);
                a.not_ok.resize(i + 1, 0);
            }
            if ok {
                a.ok[i] += 1;
            } else {
                a.not_ok[i] += 1;
            }
        }
        (!a.ok.is_empty()).then_some(a)
    }
}

/// One step of a recovery procedure.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepReport {
    /// 1-based, in the scenario's order.
    pub step: usize,
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    pub started_at_ms: f64,
    /// Null if the step never ended (the trial was cut short).
    pub duration_ms: Option<f64>,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
    /// `duration_ms / rto_ms` of the trial: the step's share of the outage.
    pub share_of_rto: Option<f64>,
    /// The time the runbook allows this step, if it names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_ms: Option<f64>,
}

impl StepReport {
    /// Whether the step took longer than its budget.
    pub fn over_budget(&self) -> bool {
        matches!((self.duration_ms, self.budget_ms), (Some(d), Some(b)) if d > b)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FaultReport {
    pub kind: String,
    pub target: String,
    /// What exactly the fault did (signal and pid, offsets, bytes discarded).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
    /// When the schedule asked for it (from the seed).
    pub scheduled_at_ms: f64,
    pub injected_at_ms: f64,
    /// How far off `injected_at_ms` may be: on a remote host, half the
    /// round trip to its agent (the agent dates the fault on its clock).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub injected_uncertainty_ms: Option<f64>,
    pub healed_at_ms: Option<f64>,
    /// Fault to the first failed probe.
    pub ttd_ms: Option<f64>,
    /// Fault to the start of the target's next incarnation (if it
    /// restarted; for a pod target, its replacement pod's creation, or its
    /// container's restart, as the cluster's API shows it).
    pub restart_ms: Option<f64>,
    /// Fault to the replacement's readiness as the cluster reports it (pod
    /// targets): the cluster's view, beside the probe's `rto_ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_ms: Option<f64>,
    /// Fault to the start of the first sustained healthy window.
    pub rto_ms: Option<f64>,
    /// Heal to the start of the first sustained healthy window (transient faults).
    pub rto_from_heal_ms: Option<f64>,
    /// A setup step (`setup = true`): no recovery window of its own; the
    /// trial's RTO and TTD are those of its other faults.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub setup: bool,
}

impl FaultReport {
    /// `#2 kill kv`, or `#1 command pg (setup)`: how every writer names a
    /// fault (`n` counts from 1).
    pub fn label(&self, n: usize) -> String {
        format!("#{n} {} {}{}", self.kind, self.target, if self.setup { " (setup)" } else { "" })
    }

    /// Each figure of the fault by name, milliseconds, `None` where not
    /// measured: what every writer shows beside the fault; with `ready`,
    /// the cluster's readiness too (a report with pod targets), before the
    /// probe's RTO.
    pub fn figures(&self, ready: bool) -> Vec<(&'static str, Option<f64>)> {
        let mut figures =
            vec![("injected_ms", Some(self.injected_at_ms)), ("ttd_ms", self.ttd_ms), ("restart_ms", self.restart_ms)];
        if ready {
            figures.push(("ready_ms", self.ready_ms));
        }
        figures.push(("rto_ms", self.rto_ms));
        figures
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Rpo {
    /// Whether the store could be read back; if not, the counts are unknown.
    pub read_back: bool,
    pub acked_writes: u64,
    pub lost_acked: Option<u64>,
    /// `t_fault - t_ack` of the oldest lost acknowledged write.
    pub window_ms: Option<f64>,
    pub unknown_writes: u64,
    pub phantom: Option<u64>,
    pub corrupted: Option<u64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct OpCounts {
    pub invoked: u64,
    pub ok: u64,
    pub fail: u64,
    pub unknown: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckReport {
    pub name: String,
    pub verdict: Verdict,
    pub expected: String,
    pub observed: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Summary {
    pub trials: u32,
    pub never_recovered: u32,
    pub rto_ms: Stats,
    pub ttd_ms: Stats,
    pub lost_acked: Stats,
    pub window_ms: Stats,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExpectationReport {
    pub name: String,
    pub expected: String,
    /// The worst value over the trials.
    pub observed: String,
    pub verdict: Verdict,
}

impl RunReport {
    /// Whether a fault has the cluster's readiness (pod targets): the
    /// fault tables then show it, beside the probe's RTO.
    pub fn has_ready(&self) -> bool {
        self.trials.iter().flat_map(|t| &t.faults).any(|f| f.ready_ms.is_some())
    }

    /// Every warning of the run, then of each trial (`trial N: ...`).
    pub fn all_warnings(&self) -> Vec<String> {
        let trials = self.trials.iter().flat_map(|t| t.warnings.iter().map(move |w| format!("trial {}: {w}", t.index)));
        self.warnings.iter().cloned().chain(trials).collect()
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report serializes")
    }

    pub fn from_json(text: &str) -> serde_json::Result<RunReport> {
        serde_json::from_str(text)
    }
}
