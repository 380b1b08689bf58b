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

/// Live members of process group `pgid` that started no earlier than its
/// leader did (`since`): members of the group the run created, not of a
/// later group that happens to reuse the number.
pub fn group_members(pgid: i32, since: u64) -> Vec<Pid> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| stat(*pid).is_some_and(|s| s.pgrp == pgid && s.start_time >= since && s.is_alive()))
        .map(Pid::from_raw)
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
