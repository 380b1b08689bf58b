//! What /proc says about a process: enough to tell a process the run started
//! from an unrelated one that reused its pid.

use std::fs;

use nix::unistd::Pid;

/// Fields of /proc/PID/stat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    pub state: char,
    pub ppid: i32,
    pub pgrp: i32,
    /// Start time in clock ticks since boot: with the pid, a process identity.
    pub start_time: u64,
    /// CPU time used so far, user and system, by all its threads, in clock
    /// ticks.
    pub cpu_ticks: u64,
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
        ppid: fields.get(1)?.parse().ok()?,
        pgrp: fields.get(2)?.parse().ok()?,
        start_time: fields.get(19)?.parse().ok()?,
        cpu_ticks: fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?,
    })
}

/// The CPU time the live processes among `processes` (pid, start time) have
/// used so far (resolution: a clock tick, 10 ms).
pub fn cpu_time(processes: &[(i32, u64)]) -> std::time::Duration {
    let ticks: u64 = processes
        .iter()
        .filter_map(|&(pid, start)| stat(pid).filter(|s| s.start_time == start))
        .map(|s| s.cpu_ticks)
        .sum();
    let per_second = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok().flatten().unwrap_or(100).max(1);
    std::time::Duration::from_secs_f64(ticks as f64 / per_second as f64)
}

/// Whether `pid` is still the live process that started at `start_time`.
/// How long ago a process started, from its start time in clock ticks
/// since boot (resolution: a tick, 10 ms).
pub fn age(start_time: u64) -> Option<std::time::Duration> {
    let uptime: f64 = std::fs::read_to_string("/proc/uptime").ok()?.split_whitespace().next()?.parse().ok()?;
    let ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok()??.max(1) as f64;
    Some(std::time::Duration::from_secs_f64((uptime - start_time as f64 / ticks).max(0.0)))
}

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
    carries_all(pid, &[(var, value)])
}

/// Whether the environment `pid` was started with holds every `var=value`.
pub fn carries_all(pid: i32, marks: &[(&str, &str)]) -> bool {
    let Ok(environ) = fs::read(format!("/proc/{pid}/environ")) else {
        return false;
    };
    marks.iter().all(|(var, value)| {
        let wanted = format!("{var}={value}");
        environ.split(|b| *b == 0).any(|entry| entry == wanted.as_bytes())
    })
}

/// Visits the live processes of the tree a process the run started at
/// `root_start` leads, each as soon as it is found: the root (if it is still
/// that process), its descendants, then any child of this process (the
/// harness, a subreaper, inherits a process whose parent died) that carries
/// `marks` in its environment, with its own descendants. Nothing started
/// before the root belongs to it.
///
/// The tree is walked through `/proc/PID/task/TID/children`, not by reading
/// every process's stat: a fault reaches a service's processes one by one
/// as they are found, where a scan of /proc first would take milliseconds
/// on a busy host, and the service would run on meanwhile.
pub fn walk_tree(root: i32, root_start: u64, marks: &[(&str, &str)], visit: &mut dyn FnMut(i32, ProcStat)) {
    if root_start == 0 || root <= 1 {
        return;
    }
    let mut seen: Vec<(i32, ProcStat)> = Vec::new();
    let mut found = |pid: i32, s: ProcStat, seen: &mut Vec<(i32, ProcStat)>| {
        if !seen.iter().any(|(p, _)| *p == pid) {
            visit(pid, s);
            seen.push((pid, s));
        }
    };
    if let Some(s) = stat(root).filter(|s| s.start_time == root_start && s.is_alive()) {
        found(root, s, &mut seen);
    }
    let mut i = 0;
    let mut orphans_looked_for = false;
    loop {
        if i == seen.len() {
            // The root's tree is done: now what was reparented to us.
            if orphans_looked_for || marks.is_empty() {
                break;
            }
            orphans_looked_for = true;
            for pid in children(std::process::id() as i32).into_iter().filter(|p| *p != root) {
                if let Some(s) = stat(pid).filter(|s| s.start_time >= root_start && s.is_alive()) {
                    if carries_all(pid, marks) {
                        found(pid, s, &mut seen);
                    }
                }
            }
            continue;
        }
        let (parent, parent_stat) = seen[i];
        for pid in children(parent) {
            // A child starts after its parent: a reused pid is not one.
            if let Some(s) = stat(pid).filter(|s| s.ppid == parent && s.start_time >= parent_stat.start_time) {
                if s.is_alive() {
                    found(pid, s, &mut seen);
                }
            }
        }
        i += 1;
    }
}

/// The children of every thread of `pid` (empty if it is gone).
fn children(pid: i32) -> Vec<i32> {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|task| fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|list| list.split_whitespace().filter_map(|p| p.parse().ok()).collect::<Vec<i32>>())
        .collect()
}

/// The pid namespace `pid` lives in, as the kernel names it (`pid:[4026…]`).
pub fn pid_namespace(pid: i32) -> Option<String> {
    fs::read_link(format!("/proc/{pid}/ns/pid")).ok().map(|l| l.to_string_lossy().into_owned())
}

/// Live processes in the pid namespace of `pid` (a container's main
/// process, seen from the host); none if that namespace is the harness's
/// own, where "every process" would mean the whole host.
pub fn namespace_members(pid: i32) -> Vec<(i32, ProcStat)> {
    let Some(ns) = pid_namespace(pid) else {
        return Vec::new();
    };
    if pid_namespace(std::process::id() as i32).as_ref() == Some(&ns) {
        return Vec::new();
    }
    all().into_iter().filter(|(p, s)| s.is_alive() && pid_namespace(*p).as_ref() == Some(&ns)).collect()
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

    fn tree(root: i32, root_start: u64) -> Vec<i32> {
        let mut pids = Vec::new();
        walk_tree(root, root_start, &[], &mut |pid, _| pids.push(pid));
        pids
    }

    #[test]
    fn a_tree_holds_descendants_but_not_the_parent_or_a_stranger() {
        let me = std::process::id() as i32;
        let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        let child_pid = child.id() as i32;
        let all_of_me = tree(me, stat(me).unwrap().start_time);
        assert_eq!(all_of_me[0], me, "the root first");
        assert!(all_of_me.contains(&child_pid), "{all_of_me:?}");
        assert!(!all_of_me.contains(&stat(me).unwrap().ppid), "the parent is not in the tree");
        assert_eq!(tree(child_pid, stat(child_pid).unwrap().start_time), vec![child_pid]);
        assert!(tree(child_pid, 1).is_empty(), "another start time: not ours");
        // The harness's own namespace is never "a container".
        assert!(namespace_members(me).is_empty());
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
