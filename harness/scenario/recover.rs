//! `[[backup]]` and `[[recover]]` tables: a runbook's recovery procedure.

use std::path::Path;
use std::time::Duration;

use super::diagnostic::{self, Diagnostics};
use super::faults::{compile_fault, FAULT_KEYS};
use super::fields::Fields;
use super::plan::*;
use super::{command, target_ref};

pub const BACKUP_KEYS: &[&str] = &["name", "target", "at", "format"];
/// A step's own keys; a `fault` step also takes a [[fault]]'s keys but `at`.
pub const RECOVER_KEYS: &[&str] =
    &["action", "target", "command", "timeout", "from", "path", "duration", "budget", "manual"];
pub const RECOVER_ACTIONS: &[&str] = <StepName as strum::VariantNames>::VARIANTS;

/// Every key a [[recover]] table may hold.
pub fn step_keys() -> Vec<&'static str> {
    let mut keys = RECOVER_KEYS.to_vec();
    keys.extend(FAULT_KEYS.iter().filter(|k| **k != "at" && !RECOVER_KEYS.contains(k)));
    keys
}

/// The keys (beyond action and budget) each action reads. A fault step's
/// keys are checked against its kind by the fault compiler.
fn applicable(action: StepName) -> Vec<&'static str> {
    match action {
        StepName::Run | StepName::Check => vec!["target", "command", "timeout"],
        StepName::Restore => vec!["target", "from"],
        StepName::Remove => vec!["target", "path"],
        StepName::Stop | StepName::Start => vec!["target"],
        StepName::Wait => vec!["target", "timeout", "duration"],
        StepName::Manual => vec!["manual"],
        StepName::Fault => FAULT_KEYS.iter().copied().filter(|k| *k != "at").collect(),
    }
}

/// What a `fault` step needs to compile its fault.
pub struct FaultScope<'p> {
    pub proxies: &'p [ProxyPlan],
    pub network: NetworkPlan,
    pub workload: Option<&'p WorkloadPlan>,
}

/// Each array-of-tables entry of `key`, opened as [`Fields`].
fn entries<'a, 'i>(top: &Fields<'a, 'i>, key: &str, known: &[&str], d: &mut Diagnostics) -> Vec<Fields<'a, 'i>> {
    let Some(value) = top.get(key) else { return Vec::new() };
    let Some(items) = value.get_ref().as_array() else {
        d.error(value.span(), format!("`{key}` must be an array of tables: write each as [[{key}]]"));
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        match item.get_ref().as_table() {
            Some(t) => out.push(Fields::new(t, item.span(), format!("[[{key}]] #{}", i + 1), known, d)),
            None => d.error(item.span(), format!("each [[{key}]] must be a table")),
        }
    }
    out
}

pub fn compile_backups(top: &Fields, targets: &[&str], faults: &[FaultPlan], d: &mut Diagnostics) -> Vec<BackupPlan> {
    let first_fault = faults.iter().filter(|f| !f.in_procedure).map(|f| f.at.min).min();
    let mut backups: Vec<BackupPlan> = Vec::new();
    for (i, f) in entries(top, "backup", BACKUP_KEYS, d).iter().enumerate() {
        let name = f.str("name", d).map_or_else(|| format!("backup-{}", i + 1), |(n, _)| n.to_string());
        if backups.iter().any(|b| b.name == name) {
            d.error(f.span.clone(), format!("two [[backup]] tables are named `{name}`"));
        }
        let target = target_ref(f, targets, d);
        let at = match f.time_spec("at", d) {
            Some((at, span)) => {
                if first_fault.is_some_and(|first| at.max >= first) {
                    d.error(span, format!("`at` = {at} in {}: a backup must be taken before the first fault", f.what));
                }
                Some(at)
            }
            None => {
                if f.get("at").is_none() {
                    d.error(f.span.clone(), format!("missing key `at` in {}; expected a time such as `1s`", f.what));
                }
                None
            }
        };
        let tarball = matches!(f.choice("format", "backup format", &["dir", "tar.gz"], d), Some(("tar.gz", _)));
        if let (Some(target), Some(at)) = (target, at) {
            backups.push(BackupPlan { name, target, at, tarball });
        }
    }
    backups
}

/// The procedure's steps; a `fault` step's fault is appended to `faults`.
pub fn compile_recover(
    top: &Fields,
    targets: &[&str],
    backups: &[BackupPlan],
    faults: &mut Vec<FaultPlan>,
    scope: &FaultScope,
    check_paths: bool,
    d: &mut Diagnostics,
) -> Vec<RecoverStep> {
    // Relative `from` paths are relative to the scenario file.
    let base = d.path.parent().map(Path::to_path_buf);
    let on = TargetSteps { backups, base: base.as_deref(), check_paths };
    let mut steps = Vec::new();
    // Which targets a `stop` step has taken down so far (and not started again).
    let mut stopped: Vec<TargetRef> = Vec::new();
    let known = step_keys();
    for f in entries(top, "recover", &known, d) {
        // `manual = "..."` alone is a manual step.
        let action = match (f.get("action"), f.get("manual")) {
            (None, Some(_)) => StepName::Manual,
            _ => match f.required_choice("action", "recovery action", RECOVER_ACTIONS, d) {
                Some((action, _)) => action.parse().expect("one of RECOVER_ACTIONS"),
                None => continue,
            },
        };
        let applies = applicable(action);
        for key in known.iter().filter(|k| !["action", "budget"].contains(k)) {
            if let (Some(value), false) = (f.get(key), applies.contains(key)) {
                d.error(
                    value.span(),
                    format!("`{key}` does not apply to a `{action}` step (its keys: {})", applies.join(", ")),
                );
            }
        }
        let budget = f.duration("budget", d);
        let step = match action {
            StepName::Wait => wait_step(&f, targets, d),
            StepName::Manual => f
                .required_str("manual", "what the operator does, e.g. \"Point DNS at the DR site\"", d)
                .map(|(text, _)| StepAction::Manual { instruction: text.to_string() }),
            StepName::Fault => {
                compile_fault(&f, targets, scope.proxies, scope.network, scope.workload, true, d).map(|fault| {
                    faults.push(fault);
                    StepAction::Fault { fault: faults.len() - 1 }
                })
            }
            StepName::Run
            | StepName::Check
            | StepName::Stop
            | StepName::Start
            | StepName::Remove
            | StepName::Restore => {
                let Some(target) = target_ref(&f, targets, d) else { continue };
                on.step(action, target, &f, &mut stopped, d)
            }
        };
        steps.extend(step.map(|action| RecoverStep { action, budget }));
    }
    steps
}

/// A `wait` step: for a target to be healthy, or a fixed time.
fn wait_step(f: &Fields, targets: &[&str], d: &mut Diagnostics) -> Option<StepAction> {
    match (f.get("target"), f.get("duration")) {
        (Some(_), None) => target_ref(f, targets, d).map(|target| StepAction::WaitHealthy {
            target,
            timeout: f
                .positive_duration("timeout", "the target could never be seen healthy in time", d)
                .unwrap_or(Duration::from_secs(30)),
        }),
        (None, Some(_)) => f.duration("duration", d).map(|duration| StepAction::Sleep { duration }),
        _ => {
            d.error(
                f.span.clone(),
                format!(
                    "a `wait` step in {} needs either `target` (wait for it to be healthy) or `duration` \
                     (a fixed pause), not both",
                    f.what
                ),
            );
            None
        }
    }
}

/// What the steps that act on one target need to compile.
struct TargetSteps<'a> {
    backups: &'a [BackupPlan],
    /// The scenario file's directory.
    base: Option<&'a Path>,
    check_paths: bool,
}

impl TargetSteps<'_> {
    fn step(
        &self,
        action: StepName,
        target: TargetRef,
        f: &Fields,
        stopped: &mut Vec<TargetRef>,
        d: &mut Diagnostics,
    ) -> Option<StepAction> {
        match action {
            StepName::Run | StepName::Check => command(f, "command", true, d).map(|argv| {
                let timeout = f
                    .positive_duration("timeout", "the command would be killed before it could run", d)
                    .unwrap_or(Duration::from_secs(60));
                match action {
                    StepName::Run => StepAction::Run { target, argv, timeout },
                    _ => StepAction::Check { target, argv, timeout },
                }
            }),
            StepName::Stop => {
                stopped.push(target.clone());
                Some(StepAction::Stop { target })
            }
            StepName::Start => {
                stopped.retain(|t| *t != target);
                Some(StepAction::Start { target })
            }
            StepName::Remove => {
                let path = f.required_str("path", "a path relative to the target's data dir", d);
                path.and_then(|(p, span)| {
                    if Path::new(p).components().any(|c| !matches!(c, std::path::Component::Normal(_))) {
                        d.error(span, format!("`path` in {} must be relative to the data dir, without `..`", f.what));
                        return None;
                    }
                    Some(StepAction::Remove { target: target.clone(), path: p.to_string() })
                })
            }
            StepName::Restore => {
                if !stopped.contains(&target) {
                    d.error(
                        f.span.clone(),
                        format!(
                            "{}: `restore` would replace the data dir of `{target}` under the running service; put \
                             a step {{ action = \"stop\", target = \"{target}\" }} before it (and a `start` after it)",
                            f.what
                        ),
                    );
                }
                restore_source(f, self.backups, &target, self.base, self.check_paths, d)
                    .map(|from| StepAction::Restore { target, from })
            }
            other => unreachable!("`{other}` acts on no target"),
        }
    }
}

fn restore_source(
    f: &Fields,
    backups: &[BackupPlan],
    target: &str,
    base: Option<&Path>,
    check_paths: bool,
    d: &mut Diagnostics,
) -> Option<RestoreSource> {
    let (from, span) = f.required_str("from", "the name of a [[backup]], or a directory or .tar/.tar.gz file", d)?;
    if let Some(b) = backups.iter().find(|b| b.name == from) {
        if b.target != target {
            d.error(span, format!("backup `{from}` was taken of target `{}`, not `{target}`", b.target));
            return None;
        }
        return Some(RestoreSource::Backup(from.to_string()));
    }
    let path = base.map_or_else(|| Path::new(from).to_path_buf(), |b| b.join(from));
    if path.exists() || !check_paths {
        return Some(RestoreSource::Path(path));
    }
    d.error(
        span,
        format!(
            "`from` = \"{from}\" in {} is neither a [[backup]] of this scenario{} nor an existing path",
            f.what,
            diagnostic::did_you_mean(from, backups.iter().map(|b| b.name.as_str()))
        ),
    );
    None
}
