//! Cgroups (v1) of the `memory` and `cpu` faults: one per fault, a child of
//! the harness's own cgroup of that controller, named `crashlab-...` and
//! journaled before it is made. Removing one moves what is left in it back
//! to the parent first; `crashlab cleanup` removes those of a killed harness.

use std::io;
use std::path::{Path, PathBuf};

/// The prefix of every cgroup the harness makes: cleanup removes nothing
/// else.
pub const PREFIX: &str = "crashlab-";

/// The controllers whose limits the faults set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Controller {
    Memory,
    Cpu,
    /// CPU accounting: how much CPU time the cgroup used.
    Cpuacct,
}

impl std::fmt::Display for Controller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl Controller {
    fn name(self) -> &'static str {
        match self {
            Controller::Memory => "memory",
            Controller::Cpu => "cpu",
            Controller::Cpuacct => "cpuacct",
        }
    }
}

/// The harness's own cgroup directory of `controller`.
pub fn own(controller: Controller) -> io::Result<PathBuf> {
    of_process("self", controller)
}

/// The cgroup directory of `controller` that process `pid` (or "self") is
/// in: where the controller is mounted, plus the process's path below the
/// mount's root.
pub fn of_process(pid: &str, controller: Controller) -> io::Result<PathBuf> {
    let name = controller.name();
    let missing = |what: String| io::Error::new(io::ErrorKind::NotFound, what);
    let own = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))?;
    let path = own
        .lines()
        .filter_map(|l| {
            let mut fields = l.splitn(3, ':').skip(1);
            Some((fields.next()?, fields.next()?))
        })
        .find(|(controllers, _)| controllers.split(',').any(|c| c == name))
        .map(|(_, path)| path.to_string())
        .ok_or_else(|| missing(format!("no cgroup v1 {name} controller (the {name} fault needs one)")))?;
    let mounts = std::fs::read_to_string("/proc/self/mountinfo")?;
    for line in mounts.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let tail: Vec<&str> = line.split(" - ").nth(1).map_or(Vec::new(), |t| t.split(' ').collect());
        let mounted = tail.first() == Some(&"cgroup") && tail.get(2).is_some_and(|o| o.split(',').any(|o| o == name));
        if mounted && fields.len() > 4 {
            let (root, mountpoint) = (fields[3], fields[4]);
            let below = path.strip_prefix(root).unwrap_or(&path).trim_start_matches('/');
            return Ok(Path::new(mountpoint).join(below));
        }
    }
    Err(missing(format!("the cgroup v1 {name} controller is not mounted")))
}

/// Whether `path` is a cgroup of ours: named with [`PREFIX`], directly
/// under a directory of a cgroup v1 file system.
pub fn is_ours(path: &Path) -> bool {
    let named = path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(PREFIX));
    let cgroup_fs = |p: &Path| {
        nix::sys::statfs::statfs(p).is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::CGROUP_SUPER_MAGIC)
    };
    named && path.parent().is_some_and(|p| p.join("cgroup.procs").exists() && cgroup_fs(p))
}

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

pub fn create(path: &Path) -> io::Result<()> {
    std::fs::create_dir(path)
}

/// Asks that the memory the processes moved in already use moves with
/// them; whether it will (recent kernels refuse: `move_charge_at_immigrate`
/// is deprecated, and only what they allocate from then on is counted).
pub fn move_charges(path: &Path) -> bool {
    std::fs::write(path.join("memory.move_charge_at_immigrate"), "3").is_ok()
}

/// Moves the tree of the process `root` (started at `root_start`) into the
/// cgroup; the processes it moved, pid and start time.
pub fn adopt_tree(path: &Path, root: i32, root_start: u64) -> Vec<(i32, u64)> {
    let mut moved = Vec::new();
    super::procfs::walk_tree(root, root_start, &[], &mut |pid, stat| {
        if add(path, pid).is_ok() {
            moved.push((pid, stat.start_time));
        }
    });
    moved
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

/// The cgroup's memory limit, as the kernel keeps it.
pub fn limit(path: &Path) -> io::Result<u64> {
    read_number(&path.join("memory.limit_in_bytes"))
}

/// The memory the cgroup's processes use (charged to it).
pub fn usage(path: &Path) -> io::Result<u64> {
    read_number(&path.join("memory.usage_in_bytes"))
}

/// Moves a process (all its threads) into the cgroup.
pub fn add(path: &Path, pid: i32) -> io::Result<()> {
    std::fs::write(path.join("cgroup.procs"), pid.to_string())
}

/// The CFS period the cpu fault sets: a quota is a share of it.
pub const CPU_PERIOD_US: u64 = 100_000;

/// Lets the cgroup's processes run `cpus` CPUs' worth of time per period.
pub fn set_cpu_quota(path: &Path, cpus: f64) -> io::Result<u64> {
    let quota = ((cpus * CPU_PERIOD_US as f64).round() as u64).max(1000);
    std::fs::write(path.join("cpu.cfs_period_us"), CPU_PERIOD_US.to_string())?;
    std::fs::write(path.join("cpu.cfs_quota_us"), quota.to_string())?;
    Ok(quota)
}

/// What `cpu.stat` says: how many periods the cgroup ran in, in how many it
/// was throttled, and for how long in all.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Throttling {
    pub periods: u64,
    pub throttled: u64,
    pub throttled_for: std::time::Duration,
}

/// The cgroup's throttling; none once the cgroup is gone.
pub fn throttling(path: &Path) -> Option<Throttling> {
    let text = std::fs::read_to_string(path.join("cpu.stat")).ok()?;
    let field = |name: &str| {
        text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse::<u64>().ok()).unwrap_or(0)
    };
    Some(Throttling {
        periods: field("nr_periods"),
        throttled: field("nr_throttled"),
        throttled_for: std::time::Duration::from_nanos(field("throttled_time")),
    })
}

/// What a memory cgroup's counters say of its limit, read at a fault's
/// injection and again at its heal (see [`MemoryCounters::pressed`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryCounters {
    /// Charges refused at the limit (memory, and memory + swap).
    pub failed: u64,
    /// The highest use since the last [`reset_peak`].
    pub peak: u64,
    pub oom_kills: u64,
}

/// How much the kernel charges at once (64 pages): a use within this of the
/// limit has reached it.
const CHARGE_BATCH: u64 = 64 * 4096;

impl MemoryCounters {
    /// The counters; none once the cgroup is gone (a container's, when it
    /// stops).
    pub fn read(path: &Path) -> Option<MemoryCounters> {
        let number = |file: &str| read_number(&path.join(file)).unwrap_or(0);
        Some(MemoryCounters {
            peak: read_number(&path.join("memory.max_usage_in_bytes")).ok()?,
            failed: number("memory.failcnt") + number("memory.memsw.failcnt"),
            oom_kills: oom_kills(path),
        })
    }

    /// Whether, since `before` (when the cgroup used `used`), the limit
    /// pressed on the cgroup: charges refused, the use grown up to it
    /// (some kernels count no refusal), or an OOM kill.
    pub fn pressed(&self, before: &MemoryCounters, used: u64, limit: u64) -> bool {
        let grew_to_limit = self.peak > used && self.peak + CHARGE_BATCH >= limit;
        self.failed > before.failed || grew_to_limit || self.oom_kills > before.oom_kills
    }
}

/// Forgets the cgroup's highest use so far: it restarts from the current one.
pub fn reset_peak(path: &Path) -> io::Result<()> {
    std::fs::write(path.join("memory.max_usage_in_bytes"), "0")
}

/// The CPU time the cgroup's processes used (a cpuacct cgroup).
pub fn cpu_used(path: &Path) -> io::Result<std::time::Duration> {
    read_number(&path.join("cpuacct.usage")).map(std::time::Duration::from_nanos)
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
