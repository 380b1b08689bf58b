//! `[abort]`: when a run stops itself. A target unhealthy for too long, too
//! many acknowledged writes lost, or a user's check (an SLO query) that
//! fails: every fault heals at once and the run ends `aborted` (exit 5).

use super::diagnostic::Diagnostics;
use super::fields::Fields;
use super::plan::AbortPlan;

pub const ABORT_KEYS: &[&str] = &["unhealthy_for", "lost_acked", "command", "interval"];

/// What an abort command may name: it runs beside every target.
const COMMAND_PLACEHOLDERS: &str = "{host.NAME}, {port.NAME}, {proxy.NAME}, {scenario_dir}, {run_dir}, {trial}";

pub fn compile_abort(f: &Fields, d: &mut Diagnostics) -> Option<AbortPlan> {
    // Every key is read before any is given up on: all mistakes at once.
    let unhealthy_for =
        f.get("unhealthy_for").map(|_| f.positive_duration("unhealthy_for", "every outage would abort the run", d));
    let lost_acked = f.get("lost_acked").map(|_| f.integer("lost_acked", 0, i64::MAX, d).map(|n| n as u64));
    let command = f.get("command").map(|_| command(f, d));
    let interval = f.get("interval").map(|_| f.positive_duration("interval", "the command would run without pause", d));
    if unhealthy_for.is_none() && lost_acked.is_none() && command.is_none() {
        d.error(
            f.span.clone(),
            "[abort] names no condition: unhealthy_for = \"30s\", lost_acked = 0, or command = [...] (an SLO check \
             that must keep exiting 0)",
        );
        return None;
    }
    Some(AbortPlan {
        unhealthy_for: unhealthy_for.map_or(Some(None), |v| v.map(Some))?,
        lost_acked: lost_acked.map_or(Some(None), |v| v.map(Some))?,
        command: command.map_or(Some(None), |v| v.map(Some))?,
        interval: interval.unwrap_or(Some(std::time::Duration::from_secs(1)))?,
    })
}

fn command(f: &Fields, d: &mut Diagnostics) -> Option<Vec<String>> {
    let argv = super::command(f, "command", true, d)?;
    for name in argv.iter().flat_map(|arg| super::template::names(arg)) {
        let reference = ["host.", "port.", "proxy."].iter().any(|p| name.starts_with(p));
        if !(reference || ["scenario_dir", "run_dir", "trial"].contains(&name)) {
            let span = f.get("command").expect("present").span();
            d.error(span, format!("`{{{name}}}` in `command` of [abort]: it may use {COMMAND_PLACEHOLDERS}"));
            return None;
        }
    }
    Some(argv)
}
