//! What /proc says about a process: enough to tell a process the run started
//! from an unrelated one that reused its pid.

use std::fs;

use nix::unistd::Pid;

/// Fields of /proc/PID/stat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    pub state: char,
    pub pgrp: i32,
    /// Start time in clock ticks since boot: with the pid, a process identity.
    pub start_time: u64,
}

impl ProcStat {
    /// A zombie has exited; it only waits to be reaped.
    pub fn is_alive(&self) -> bool {
        !matches!(self.state, 'Z' | 'X')
    }
}

pub fn stat(pid: i32) -> Option<ProcStat> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: split after it.
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(ProcStat {
        state: fields.first()?.chars().next()?,
        pgrp: fields.get(2)?.parse().ok()?,
        start_time: fields.get(19)?.parse().ok()?,
    })
}

/// Whether `pid` is still the live process that started at `start_time`.
pub fn is_same_live_process(pid: i32, start_time: u64) -> bool {
    stat(pid).is_some_and(|s| s.start_time == start_time && s.is_alive())
}

/// Every process there is now, with its stat.
pub fn all() -> Vec<(i32, ProcStat)> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| Some((pid, stat(pid)?)))
        .collect()
}

/// Whether the environment `pid` was started with holds `var=value`: the
/// run's token, which only processes the run started (and what they
/// started) inherit.
pub fn carries(pid: i32, var: &str, value: &str) -> bool {
    let Ok(environ) = fs::read(format!("/proc/{pid}/environ")) else {
        return false;
    };
    let wanted = format!("{var}={value}");
    environ.split(|b| *b == 0).any(|entry| entry == wanted.as_bytes())
}

/// Live members of the process group that the run created with a leader
/// started at `leader_start`; none when that cannot be proved.
///
/// The kernel frees a pid only once no process uses it as pid, group or
/// session id. So a live leader with another start time means our group
/// emptied and the number was reused: nothing in it is ours. With the
/// leader gone, a member is ours only if it carries the run's `token` in
/// its environment. A start time of 0 (never read) proves nothing.
pub fn group_members(pgid: i32, leader_start: u64, token: Option<&str>) -> Vec<Pid> {
    if leader_start == 0 || pgid <= 1 {
        return Vec::new();
    }
    let leader_is_ours = match stat(pgid) {
        Some(leader) if leader.start_time != leader_start => return Vec::new(),
        Some(_) => true,
        None => false,
    };
    all()
        .into_iter()
        .filter(|(pid, s)| {
            s.pgrp == pgid
                && s.is_alive()
                && (leader_is_ours
                    || (s.start_time >= leader_start
                        && token.is_some_and(|t| carries(*pid, super::reaper::RUN_TOKEN_VAR, t))))
        })
        .map(|(pid, _)| Pid::from_raw(pid))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let me = stat(std::process::id() as i32).unwrap();
        assert!(me.is_alive());
        assert!(is_same_live_process(std::process::id() as i32, me.start_time));
        assert!(!is_same_live_process(std::process::id() as i32, me.start_time + 1));
    }
}
