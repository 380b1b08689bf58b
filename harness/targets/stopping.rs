//! Stopping processes the run can prove it started: by process group (leader
//! pid and start time) or by the run's token in their environment.

use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::{procfs, reaper};

/// Every live process but this one that carries one of `tokens`.
pub fn token_carriers(tokens: &[String]) -> Vec<Pid> {
    let me = std::process::id() as i32;
    procfs::all()
        .into_iter()
        .filter(|(pid, s)| {
            *pid != me && s.is_alive() && tokens.iter().any(|t| procfs::carries(*pid, reaper::RUN_TOKEN_VAR, t))
        })
        .map(|(pid, _)| Pid::from_raw(pid))
        .collect()
}

pub fn group_members(groups: &[(i32, u64)], token: Option<&str>) -> Vec<Pid> {
    groups.iter().flat_map(|(pgid, since)| procfs::group_members(*pgid, *since, token)).collect()
}

/// SIGCONT + SIGTERM to every live member of the groups (leader pid, leader
/// start time), SIGKILL to those still there after `grace`. Returns the
/// pids that were signalled.
pub fn stop_groups(groups: &[(i32, u64)], grace: Duration) -> Vec<i32> {
    let token = reaper::run_token();
    stop(|| group_members(groups, token.as_deref()), grace)
}

/// Stops every live process that carries the current run's token: at the
/// end of a run, whatever its commands left running.
pub fn stop_stragglers(grace: Duration) -> Vec<i32> {
    let Some(token) = reaper::run_token() else { return Vec::new() };
    let tokens = [token];
    stop(|| token_carriers(&tokens), grace)
}

pub fn stop(members: impl Fn() -> Vec<Pid>, grace: Duration) -> Vec<i32> {
    let first = members();
    for pid in &first {
        let _ = kill(*pid, Signal::SIGCONT);
        let _ = kill(*pid, Signal::SIGTERM);
    }
    let deadline = Instant::now() + grace;
    while !first.is_empty() && !members().is_empty() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    if !first.is_empty() {
        for pid in members() {
            let _ = kill(pid, Signal::SIGKILL);
        }
    }
    first.iter().map(|p| p.as_raw()).collect()
}
