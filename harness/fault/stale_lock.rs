//! The `stale-lock` fault: the target crashes (SIGKILL) and, before it starts
//! again, its lock or pid file is left in one of three states that real
//! systems handle differently:
//!
//! - `leftover`: the file names a dead pid. flock/fcntl-based stores
//!   (RocksDB, LevelDB, Badger) ignore it, PostgreSQL starts over it;
//!   naive services refuse until someone removes it.
//! - `held`: the crashed process had forked a child that kept the lock's
//!   descriptor. An flock lock belongs to the open file, so it lives on in
//!   that child; an fcntl lock belongs to the process and dies with it. The
//!   harness plays this for real: a holder process takes the lock, forks,
//!   and exits, leaving the child.
//! - `pid-reused`: the file names a live process that has nothing to do with
//!   the service (its pid was reused). PostgreSQL refuses a pid file naming a
//!   live process of the same user.

use std::fs::{self, OpenOptions};
use std::io::{BufRead, BufReader};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::{Fault, FaultContext, FaultError, FaultErrorKind, FaultGuard};
use crate::confine;
use crate::journal::Entry;
use crate::scenario::{LockKind, StaleLockPlan, StaleLockVariant};
use crate::targets::stopping::stop_groups;
use crate::targets::{procfs, reaper};

pub struct StaleLock(pub StaleLockPlan);

/// A process group the fault started, to be stopped when healing.
struct Holder {
    pgid: i32,
    start_time: u64,
}

impl Fault for StaleLock {
    fn inject(&self, ctx: &FaultContext) -> Result<FaultGuard, FaultError> {
        let plan = &self.0;
        let began = Instant::now();
        let dir = ctx.target.data_dir().map_err(|r| ctx.error(r.into()))?;
        let path = confine::path_in(&dir, &plan.path).map_err(|r| ctx.error(r.into()))?;
        let crashed = ctx.target.hold(Signal::SIGKILL);
        let result = self.leave(ctx, &path);
        ctx.target.release();
        let (holder, what) = result?;
        let crashed = crashed.map_or("the target was down".into(), |p| format!("SIGKILL to pid {}", p.pid));
        ctx.injected_at(began, format!("{crashed}; {what}"));
        let Some(holder) = holder else { return Ok(FaultGuard::nothing()) };
        Ok(ctx.heal_with(move || {
            stop_groups(&[(holder.pgid, holder.start_time)], Duration::from_millis(500));
            String::new()
        }))
    }
}

impl StaleLock {
    /// Leaves the file as the variant says; returns the holder to stop on
    /// healing, if any, and what was done.
    fn leave(&self, ctx: &FaultContext, path: &Path) -> Result<(Option<Holder>, String), FaultError> {
        let name = &self.0.path;
        let write_pid = |pid: i32| {
            fs::write(path, format!("{pid}\n")).map_err(|source| {
                ctx.error(FaultErrorKind::Io { what: format!("cannot write {}", path.display()), source })
            })
        };
        match self.0.variant {
            StaleLockVariant::Leftover => {
                let dead = dead_pid().map_err(|e| ctx.error(FaultErrorKind::Other(e)))?;
                write_pid(dead)?;
                Ok((None, format!("{name} left behind naming dead pid {dead}")))
            }
            StaleLockVariant::PidReused => {
                let (holder, pid) = start_holder(ctx, path, None, self.0.user.as_deref())?;
                write_pid(pid)?;
                Ok((Some(holder), format!("{name} names pid {pid}, a live process unrelated to the service")))
            }
            StaleLockVariant::Held { lock } => {
                let (holder, child) = start_holder(ctx, path, Some(lock), self.0.user.as_deref())?;
                let what = match lock {
                    LockKind::Flock => format!(
                        "pid {child}, forked by a holder that took an flock lock on {name} and died, keeps the lock"
                    ),
                    LockKind::Fcntl => format!(
                        "pid {child}, forked by a holder that took an fcntl lock on {name} and died, survives; \
                         the lock died with the holder"
                    ),
                };
                Ok((Some(holder), what))
            }
        }
    }
}

/// The pid of a process that has exited and been reaped.
fn dead_pid() -> Result<i32, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut command = Command::new(exe);
    command.arg("--version").stdout(Stdio::null()).stderr(Stdio::null());
    let (child, exited) = reaper::spawn(&mut command).map_err(|e| format!("cannot start a process: {e}"))?;
    let _ = exited.recv();
    Ok(child.id() as i32)
}

/// Starts `crashlab lock-holder` in a process group of its own, journaled
/// before it can act; returns it and the pid that ends up holding (or, for
/// `None`, simply living).
fn start_holder(
    ctx: &FaultContext,
    path: &Path,
    lock: Option<LockKind>,
    user: Option<&str>,
) -> Result<(Holder, i32), FaultError> {
    let fail = |what: String| ctx.error(FaultErrorKind::Other(what));
    let exe = std::env::current_exe().map_err(|e| fail(e.to_string()))?;
    let mut command = Command::new(exe);
    let held = match lock {
        Some(LockKind::Flock) => HolderLock::Flock,
        Some(LockKind::Fcntl) => HolderLock::Fcntl,
        None => HolderLock::None,
    };
    let held = clap::ValueEnum::to_possible_value(&held).expect("no variant is skipped");
    command.arg("lock-holder").arg("--path").arg(path).arg("--lock").arg(held.get_name());
    if let Some(user) = user {
        command.arg("--user").arg(user);
    }
    command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let (mut child, exited) =
        reaper::spawn(&mut command).map_err(|e| fail(format!("cannot start a lock holder: {e}")))?;
    let pgid = child.id() as i32;
    crate::crash_point::reached("lock-holder");
    // The leader waits for its stdin to close, so it is alive (and its
    // identity readable) until it is journaled.
    let start_time = procfs::stat(pgid).map_or(0, |s| s.start_time);
    ctx.journal(&Entry::HolderStarted { trial: ctx.trial, fault: ctx.index, pid: pgid, start_time })?;
    let holder = Holder { pgid, start_time };
    let mut line = String::new();
    let stdout = child.stdout.take().expect("piped");
    let read = BufReader::new(stdout).read_line(&mut line);
    let pid = line.trim().strip_prefix("holding pid=").and_then(|p| p.parse::<i32>().ok());
    let Some(pid) = pid.filter(|_| read.is_ok()) else {
        let mut err = String::new();
        if let Some(mut stderr) = child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut stderr, &mut err);
        }
        stop_groups(&[(pgid, start_time)], Duration::from_millis(200));
        return Err(fail(format!("the lock holder failed: {}", err.trim())));
    };
    drop(child.stdin.take());
    if lock.is_some() {
        // The leader exits now (the "crashed" owner); its child stays.
        let _ = exited.recv_timeout(Duration::from_secs(5));
    }
    Ok((holder, pid))
}

/// Drops every id (real, effective, saved; groups too) to `name`'s, so that
/// a service checking the holder with kill(pid, 0) sees that user's process.
fn become_user(name: &str) -> Result<(), String> {
    use nix::unistd::{setgroups, setresgid, setresuid, User};
    let user = User::from_name(name).map_err(|e| e.to_string())?.ok_or_else(|| format!("no user `{name}`"))?;
    setgroups(&[user.gid]).map_err(|e| format!("setgroups: {e}"))?;
    setresgid(user.gid, user.gid, user.gid).map_err(|e| format!("setresgid: {e}"))?;
    setresuid(user.uid, user.uid, user.uid).map_err(|e| format!("setresuid: {e}"))
}

/// `crashlab lock-holder`: takes a lock on `path` (or none), forks a child
/// that keeps the descriptor, prints `holding pid=<child>`, waits for stdin
/// to close and exits, leaving the child behind until it is killed. With no
/// lock it prints its own pid and lives until killed.
/// What `crashlab lock-holder --lock` holds on the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum HolderLock {
    Flock,
    Fcntl,
    /// No lock: a live process whose pid a pid file names.
    None,
}

pub fn lock_holder_main(path: &Path, lock: HolderLock, user: Option<&str>) -> i32 {
    use std::io::{Read, Write};
    if let Some(user) = user {
        if let Err(e) = become_user(user) {
            eprintln!("lock-holder: cannot run as {user}: {e}");
            return 1;
        }
    }
    let wait_for_stdin = || {
        let mut sink = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut sink);
    };
    if lock == HolderLock::None {
        println!("holding pid={}", std::process::id());
        let _ = std::io::stdout().flush();
        wait_for_stdin();
        loop {
            nix::unistd::pause();
        }
    }
    let file = match OpenOptions::new().create(true).truncate(false).write(true).open(path) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("lock-holder: cannot open {}: {e}", path.display());
            return 1;
        }
    };
    let locked = match lock {
        // Not `nix::fcntl::Flock`: it unlocks when dropped, and the point
        // here is a lock that outlives this process in its child.
        // SAFETY: a plain syscall on a descriptor we own.
        HolderLock::Flock => nix::errno::Errno::result(unsafe {
            nix::libc::flock(file.as_raw_fd(), nix::libc::LOCK_EX | nix::libc::LOCK_NB)
        })
        .map(|_| ()),
        HolderLock::Fcntl | HolderLock::None => {
            let mut spec: nix::libc::flock = unsafe { std::mem::zeroed() };
            spec.l_type = nix::libc::F_WRLCK as i16;
            spec.l_whence = nix::libc::SEEK_SET as i16;
            nix::fcntl::fcntl(&file, nix::fcntl::FcntlArg::F_SETLK(&spec)).map(|_| ())
        }
    };
    if let Err(e) = locked {
        eprintln!("lock-holder: cannot lock {}: {e}", path.display());
        return 1;
    }
    // SAFETY: the child only sleeps in pause(), which is async-signal-safe.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Child) => loop {
            nix::unistd::pause();
        },
        Ok(nix::unistd::ForkResult::Parent { child }) => {
            println!("holding pid={child}");
            let _ = std::io::stdout().flush();
            wait_for_stdin();
            drop(file);
            0
        }
        Err(e) => {
            eprintln!("lock-holder: fork failed: {e}");
            1
        }
    }
}
