//! Memory cgroups (v1) of the `memory` fault: one per fault, a child of the
//! harness's own memory cgroup, named `crashlab-...` and journaled before it
//! is made. Removing one moves what is left in it back to the parent first;
//! `crashlab cleanup` removes those of a killed harness.

use std::io;
use std::path::{Path, PathBuf};

/// The prefix of every cgroup the harness makes: cleanup removes nothing
/// else.
pub const PREFIX: &str = "crashlab-";

/// The harness's own memory cgroup directory: where the memory controller
/// is mounted, plus the harness's path below the mount's root.
pub fn own_memory_cgroup() -> io::Result<PathBuf> {
    let missing = |what: &str| io::Error::new(io::ErrorKind::NotFound, what.to_string());
    let own = std::fs::read_to_string("/proc/self/cgroup")?;
    let path = own
        .lines()
        .filter_map(|l| {
            let mut fields = l.splitn(3, ':').skip(1);
            Some((fields.next()?, fields.next()?))
        })
        .find(|(controllers, _)| controllers.split(',').any(|c| c == "memory"))
        .map(|(_, path)| path.to_string())
        .ok_or_else(|| missing("no cgroup v1 memory controller (the memory fault needs one)"))?;
    let mounts = std::fs::read_to_string("/proc/self/mountinfo")?;
    for line in mounts.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let tail: Vec<&str> = line.split(" - ").nth(1).map_or(Vec::new(), |t| t.split(' ').collect());
        let memory =
            tail.first() == Some(&"cgroup") && tail.get(2).is_some_and(|o| o.split(',').any(|o| o == "memory"));
        if memory && fields.len() > 4 {
            let (root, mountpoint) = (fields[3], fields[4]);
            let below = path.strip_prefix(root).unwrap_or(&path).trim_start_matches('/');
            return Ok(Path::new(mountpoint).join(below));
        }
    }
    Err(missing("the cgroup v1 memory controller is not mounted"))
}

/// Whether `path` is a cgroup of ours: named with [`PREFIX`], directly
/// under a memory cgroup directory.
pub fn is_ours(path: &Path) -> bool {
    let named = path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(PREFIX));
    named && path.parent().is_some_and(|p| p.join("memory.limit_in_bytes").exists())
}

/// Makes the cgroup; whether the memory its processes already use will move
/// with them (recent kernels refuse: `move_charge_at_immigrate` is
/// deprecated, and only what they allocate from then on is counted).
/// The name of the cgroup of fault `fault` of trial `trial` of the run
/// whose token is `token`.
pub fn name(token: &str, trial: u32, fault: usize) -> String {
    format!("{PREFIX}{}-t{trial}-f{}", &token[..token.len().min(8)], fault + 1)
}

/// Whether `path`'s name is one [`name`] gives for the run of `token`.
pub fn named_for(path: &Path, token: &str) -> bool {
    let prefix = format!("{PREFIX}{}-", &token[..token.len().min(8)]);
    path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(&prefix))
}

pub fn create(path: &Path) -> io::Result<bool> {
    std::fs::create_dir(path)?;
    Ok(std::fs::write(path.join("memory.move_charge_at_immigrate"), "3").is_ok())
}

/// The resident memory of a process, in bytes.
pub fn resident(pid: i32) -> u64 {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).unwrap_or_default();
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|n| n.parse().ok()).unwrap_or(0);
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE).ok().flatten().unwrap_or(4096) as u64;
    pages * page
}

pub fn set_limit(path: &Path, bytes: u64) -> io::Result<()> {
    std::fs::write(path.join("memory.limit_in_bytes"), bytes.to_string())
}

pub fn usage(path: &Path) -> io::Result<u64> {
    read_number(&path.join("memory.usage_in_bytes"))
}

/// Moves a process (all its threads) into the cgroup.
pub fn add(path: &Path, pid: i32) -> io::Result<()> {
    std::fs::write(path.join("cgroup.procs"), pid.to_string())
}

/// How many processes the OOM killer killed in the cgroup.
pub fn oom_kills(path: &Path) -> u64 {
    let text = std::fs::read_to_string(path.join("memory.oom_control")).unwrap_or_default();
    text.lines().find_map(|l| l.strip_prefix("oom_kill ")).and_then(|n| n.trim().parse().ok()).unwrap_or(0)
}

/// Moves what is left back to the parent, then removes the cgroup.
pub fn remove(path: &Path) -> io::Result<()> {
    let parent = path.parent().ok_or_else(|| io::Error::other("a cgroup without a parent"))?;
    let procs = std::fs::read_to_string(path.join("cgroup.procs")).unwrap_or_default();
    for pid in procs.lines() {
        let _ = std::fs::write(parent.join("cgroup.procs"), pid);
    }
    std::fs::remove_dir(path)
}

fn read_number(path: &Path) -> io::Result<u64> {
    std::fs::read_to_string(path)?.trim().parse().map_err(io::Error::other)
}
