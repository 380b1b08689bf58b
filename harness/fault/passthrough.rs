//! A FUSE pass-through filesystem that remembers, per file, what was
//! written since the last fsync, so that a simulated power loss can discard
//! exactly that (see [`super::unsynced`]).
//!
//! Writes go straight to the backing file, and the bytes they overwrite are
//! kept in an undo log (appends keep nothing but their length). An fsync of
//! a file, or a write through a descriptor opened with O_SYNC/O_DSYNC, makes
//! everything written to it durable and empties its log. Metadata (create,
//! rename, unlink, mkdir) is treated as durable at once: the power loss
//! rolls back file contents and lengths, not directory entries.
//!
//! The backing directory is the data dir itself, opened before the mount
//! covers it and reached through `/proc/self/fd/<fd>`, so the target sees
//! the same path with or without the layer.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::io_rules::IoRules;
use crate::scenario::IoOp;
use fuser::{
    FileAttr, FileType, Filesystem, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry,
    ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow,
};
use nix::libc;

/// How long the kernel may cache attributes and names. Only the layer
/// writes to the backing files, except for a power loss, which invalidates
/// what it changed.
const TTL: Duration = Duration::from_secs(1);

/// The undo log of one file since its last fsync.
#[derive(Debug, Default)]
pub struct Pending {
    /// Length at the last fsync (or when the file was created: 0).
    pub synced_len: u64,
    /// Length now, as the writes through the layer made it.
    pub len: u64,
    /// In write order: `(offset, bytes that were there before)`.
    pub overwritten: Vec<(u64, Vec<u8>)>,
    pub writes: u64,
    pub bytes: u64,
}

/// What the layer shares with the fault: inode paths and undo logs.
#[derive(Default)]
pub struct Ledger {
    /// Inode -> path relative to the backing root ("" is the root).
    pub paths: HashMap<u64, PathBuf>,
    by_path: HashMap<PathBuf, u64>,
    next_ino: u64,
    pub pending: HashMap<u64, Pending>,
    /// The most recent unsynced write: `(inode, offset, data)`, for a tear.
    pub last_write: Option<(u64, u64, Vec<u8>)>,
}

impl Ledger {
    fn ino_of(&mut self, path: &Path) -> u64 {
        if let Some(ino) = self.by_path.get(path) {
            return *ino;
        }
        self.next_ino += 1;
        let ino = self.next_ino;
        self.paths.insert(ino, path.to_path_buf());
        self.by_path.insert(path.to_path_buf(), ino);
        ino
    }

    fn forget_path(&mut self, path: &Path) {
        if let Some(ino) = self.by_path.remove(path) {
            self.paths.remove(&ino);
        }
    }

    fn renamed(&mut self, from: &Path, to: &Path) {
        self.forget_path(to);
        let moved: Vec<(PathBuf, u64)> =
            self.by_path.iter().filter(|(p, _)| p.starts_with(from)).map(|(p, ino)| (p.clone(), *ino)).collect();
        for (old, ino) in moved {
            // Not `to.join("")` for the renamed path itself: that would add
            // a trailing slash, and opening `file/` fails with ENOTDIR.
            let rest = old.strip_prefix(from).expect("filtered by prefix");
            let new = if rest.as_os_str().is_empty() { to.to_path_buf() } else { to.join(rest) };
            self.by_path.remove(&old);
            self.by_path.insert(new.clone(), ino);
            self.paths.insert(ino, new);
        }
    }

    /// Everything written to `ino` is durable now.
    fn synced(&mut self, ino: u64) {
        self.pending.remove(&ino);
        if self.last_write.as_ref().is_some_and(|(i, _, _)| *i == ino) {
            self.last_write = None;
        }
    }
}

struct OpenFile {
    file: File,
    /// Opened with O_SYNC or O_DSYNC: each write is durable when it returns.
    sync: bool,
}

pub struct Passthrough {
    root: PathBuf,
    /// Keeps the backing directory open: `root` goes through it.
    _root_dir: File,
    ledger: Arc<Mutex<Ledger>>,
    rules: Arc<IoRules>,
    files: HashMap<u64, OpenFile>,
    next_fh: u64,
}

fn errno(e: &std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(libc::EIO)
}

fn time(secs: i64, nsecs: i64) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::new(secs as u64, nsecs as u32)
    } else {
        UNIX_EPOCH
    }
}

fn attr(ino: u64, m: &fs::Metadata) -> FileAttr {
    let kind = match m.mode() & libc::S_IFMT {
        libc::S_IFDIR => FileType::Directory,
        libc::S_IFLNK => FileType::Symlink,
        libc::S_IFIFO => FileType::NamedPipe,
        libc::S_IFSOCK => FileType::Socket,
        libc::S_IFCHR => FileType::CharDevice,
        libc::S_IFBLK => FileType::BlockDevice,
        _ => FileType::RegularFile,
    };
    FileAttr {
        ino,
        size: m.size(),
        blocks: m.blocks(),
        atime: time(m.atime(), m.atime_nsec()),
        mtime: time(m.mtime(), m.mtime_nsec()),
        ctime: time(m.ctime(), m.ctime_nsec()),
        crtime: time(m.ctime(), m.ctime_nsec()),
        kind,
        perm: (m.mode() & 0o7777) as u16,
        nlink: m.nlink() as u32,
        uid: m.uid(),
        gid: m.gid(),
        rdev: m.rdev() as u32,
        blksize: m.blksize() as u32,
        flags: 0,
    }
}

impl Passthrough {
    /// Opens `dir` as the backing root. Call before mounting over `dir`.
    pub fn new(dir: &Path, ledger: Arc<Mutex<Ledger>>, rules: Arc<IoRules>) -> std::io::Result<Passthrough> {
        let root_dir = OpenOptions::new().read(true).custom_flags(libc::O_DIRECTORY).open(dir)?;
        let root = PathBuf::from(format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&root_dir)));
        {
            let mut l = ledger.lock().unwrap();
            // FUSE's root inode is 1.
            l.next_ino = 1;
            l.paths.insert(1, PathBuf::new());
            l.by_path.insert(PathBuf::new(), 1);
        }
        Ok(Passthrough { root, _root_dir: root_dir, ledger, rules, files: HashMap::new(), next_fh: 0 })
    }

    /// The backing root, for the fault to reach files without the layer.
    pub fn root(&self) -> PathBuf {
        self.root.clone()
    }

    /// What the armed `io` faults say of `op` on `paths` (relative): go
    /// on, or answer with an errno. Free while none is armed.
    fn check(&self, op: IoOp, paths: &[&Path], growth: impl FnOnce() -> u64) -> Result<(), i32> {
        if !self.rules.any() {
            return Ok(());
        }
        self.rules.check(op, paths, growth)
    }

    /// [`Passthrough::check`] for an operation on an inode.
    fn check_ino(&self, op: IoOp, ino: u64, growth: impl FnOnce() -> u64) -> Result<(), i32> {
        if !self.rules.any() {
            return Ok(());
        }
        let relative = self.ledger.lock().unwrap().paths.get(&ino).cloned().unwrap_or_default();
        self.rules.check(op, &[&relative], growth)
    }

    fn path(&self, ino: u64) -> Option<PathBuf> {
        self.ledger.lock().unwrap().paths.get(&ino).map(|p| self.root.join(p))
    }

    fn child(&self, parent: u64, name: &OsStr) -> Option<PathBuf> {
        self.ledger.lock().unwrap().paths.get(&parent).map(|p| p.join(name))
    }

    fn entry(&mut self, relative: &Path, reply: ReplyEntry) {
        match fs::symlink_metadata(self.root.join(relative)) {
            Ok(m) => {
                let ino = self.ledger.lock().unwrap().ino_of(relative);
                reply.entry(&TTL, &attr(ino, &m), 0);
            }
            Err(e) => reply.error(errno(&e)),
        }
    }

    /// What removing `relative` gives back to a disk-full fault: its length,
    /// if it is the file's last name.
    fn freed_by_removing(&self, relative: &Path) -> u64 {
        if !self.rules.any() {
            return 0;
        }
        fs::symlink_metadata(self.root.join(relative)).map_or(0, |m| {
            if m.is_file() && m.nlink() == 1 {
                m.len()
            } else {
                0
            }
        })
    }

    fn open_fh(&mut self, file: File, flags: i32) -> u64 {
        self.next_fh += 1;
        let sync = flags & (libc::O_SYNC | libc::O_DSYNC) != 0;
        self.files.insert(self.next_fh, OpenFile { file, sync });
        self.next_fh
    }

    fn open_options(flags: i32) -> OpenOptions {
        let mut o = OpenOptions::new();
        match flags & libc::O_ACCMODE {
            // Writable descriptors also read: a write first keeps the bytes
            // it overwrites.
            libc::O_WRONLY | libc::O_RDWR => o.read(true).write(true),
            _ => o.read(true),
        };
        // The kernel hands explicit offsets, also for O_APPEND; pwrite on
        // a descriptor with O_APPEND would ignore them.
        o.custom_flags(flags & !(libc::O_ACCMODE | libc::O_APPEND | libc::O_CREAT | libc::O_EXCL | libc::O_TRUNC));
        o
    }
}

/// Gives a new file, directory or link to the process that made it, as a
/// filesystem would: the layer itself runs as root, and a target running
/// as its own user (PostgreSQL, MariaDB) must own what it creates.
fn owned_by(path: &Path, req: &Request<'_>) -> std::io::Result<()> {
    if nix::unistd::geteuid().is_root() {
        std::os::unix::fs::lchown(path, Some(req.uid()), Some(req.gid()))?;
    }
    Ok(())
}

impl Filesystem for Passthrough {
    fn lookup(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEntry) {
        match self.child(parent, name) {
            Some(p) => match self.check(IoOp::Stat, &[&p], || 0) {
                Ok(()) => self.entry(&p, reply),
                Err(errno) => reply.error(errno),
            },
            None => reply.error(libc::ENOENT),
        }
    }

    fn getattr(&mut self, _req: &Request<'_>, ino: u64, fh: Option<u64>, reply: ReplyAttr) {
        if let Err(errno) = self.check_ino(IoOp::Stat, ino, || 0) {
            return reply.error(errno);
        }
        let meta = match fh.and_then(|fh| self.files.get(&fh)) {
            Some(f) => f.file.metadata(),
            None => match self.path(ino) {
                Some(p) => fs::symlink_metadata(p),
                None => return reply.error(libc::ENOENT),
            },
        };
        match meta {
            Ok(m) => reply.attr(&TTL, &attr(ino, &m)),
            Err(e) => reply.error(errno(&e)),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn setattr(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<u64>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<u32>,
        reply: ReplyAttr,
    ) {
        let Some(path) = self.path(ino) else { return reply.error(libc::ENOENT) };
        let len_now = || fs::metadata(&path).map_or(0, |m| m.len());
        if let Some(size) = size {
            if let Err(errno) = self.check_ino(IoOp::Truncate, ino, || size.saturating_sub(len_now())) {
                return reply.error(errno);
            }
            self.rules.shrunk(len_now().saturating_sub(size));
        }
        let result = (|| -> std::io::Result<()> {
            if let Some(mode) = mode {
                fs::set_permissions(&path, fs::Permissions::from_mode(mode & 0o7777))?;
            }
            if uid.is_some() || gid.is_some() {
                std::os::unix::fs::lchown(&path, uid, gid)?;
            }
            if let Some(size) = size {
                let file = OpenOptions::new().read(true).write(true).open(&path)?;
                let len = file.metadata()?.len();
                let mut ledger = self.ledger.lock().unwrap();
                let pending =
                    ledger.pending.entry(ino).or_insert_with(|| Pending { synced_len: len, len, ..Default::default() });
                if size < pending.len {
                    // The cut bytes come back on a power loss.
                    let keep = (len.min(pending.len) - size) as usize;
                    let mut cut = vec![0; keep];
                    file.read_exact_at(&mut cut, size)?;
                    pending.overwritten.push((size, cut));
                }
                pending.len = size;
                drop(ledger);
                file.set_len(size)?;
            }
            if atime.is_some() || mtime.is_some() {
                let to_spec = |t: Option<TimeOrNow>| match t {
                    None => nix::sys::time::TimeSpec::new(0, libc::UTIME_OMIT),
                    Some(TimeOrNow::Now) => nix::sys::time::TimeSpec::new(0, libc::UTIME_NOW),
                    Some(TimeOrNow::SpecificTime(t)) => {
                        let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
                        nix::sys::time::TimeSpec::new(d.as_secs() as i64, d.subsec_nanos() as i64)
                    }
                };
                nix::sys::stat::utimensat(
                    nix::fcntl::AT_FDCWD,
                    &path,
                    &to_spec(atime),
                    &to_spec(mtime),
                    nix::sys::stat::UtimensatFlags::NoFollowSymlink,
                )?;
            }
            Ok(())
        })();
        match result.and_then(|()| fs::symlink_metadata(&path)) {
            Ok(m) => reply.attr(&TTL, &attr(ino, &m)),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn readlink(&mut self, _req: &Request<'_>, ino: u64, reply: ReplyData) {
        match self.path(ino).map(fs::read_link) {
            Some(Ok(target)) => reply.data(target.as_os_str().as_encoded_bytes()),
            Some(Err(e)) => reply.error(errno(&e)),
            None => reply.error(libc::ENOENT),
        }
    }

    fn mkdir(&mut self, req: &Request<'_>, parent: u64, name: &OsStr, mode: u32, umask: u32, reply: ReplyEntry) {
        let Some(rel) = self.child(parent, name) else { return reply.error(libc::ENOENT) };
        if let Err(errno) = self.check(IoOp::Mkdir, &[&rel], || 0) {
            return reply.error(errno);
        }
        let path = self.root.join(&rel);
        match fs::DirBuilder::new().mode(mode & !umask).create(&path).and_then(|()| owned_by(&path, req)) {
            Ok(()) => self.entry(&rel, reply),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn unlink(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEmpty) {
        let Some(rel) = self.child(parent, name) else { return reply.error(libc::ENOENT) };
        if let Err(errno) = self.check(IoOp::Unlink, &[&rel], || 0) {
            return reply.error(errno);
        }
        let freed = self.freed_by_removing(&rel);
        match fs::remove_file(self.root.join(&rel)) {
            Ok(()) => {
                self.rules.shrunk(freed);
                self.ledger.lock().unwrap().forget_path(&rel);
                reply.ok()
            }
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn rmdir(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEmpty) {
        let Some(rel) = self.child(parent, name) else { return reply.error(libc::ENOENT) };
        if let Err(errno) = self.check(IoOp::Rmdir, &[&rel], || 0) {
            return reply.error(errno);
        }
        match fs::remove_dir(self.root.join(&rel)) {
            Ok(()) => {
                self.ledger.lock().unwrap().forget_path(&rel);
                reply.ok()
            }
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn symlink(&mut self, req: &Request<'_>, parent: u64, link_name: &OsStr, target: &Path, reply: ReplyEntry) {
        let Some(rel) = self.child(parent, link_name) else { return reply.error(libc::ENOENT) };
        let path = self.root.join(&rel);
        match std::os::unix::fs::symlink(target, &path).and_then(|()| owned_by(&path, req)) {
            Ok(()) => self.entry(&rel, reply),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn rename(
        &mut self,
        _req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        newparent: u64,
        newname: &OsStr,
        _flags: u32,
        reply: ReplyEmpty,
    ) {
        let (Some(from), Some(to)) = (self.child(parent, name), self.child(newparent, newname)) else {
            return reply.error(libc::ENOENT);
        };
        if let Err(errno) = self.check(IoOp::Rename, &[&from, &to], || 0) {
            return reply.error(errno);
        }
        let freed = self.freed_by_removing(&to);
        match fs::rename(self.root.join(&from), self.root.join(&to)) {
            Ok(()) => {
                self.rules.shrunk(freed);
                self.ledger.lock().unwrap().renamed(&from, &to);
                reply.ok()
            }
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn open(&mut self, _req: &Request<'_>, ino: u64, flags: i32, reply: ReplyOpen) {
        let Some(path) = self.path(ino) else { return reply.error(libc::ENOENT) };
        if let Err(errno) = self.check_ino(IoOp::Open, ino, || 0) {
            return reply.error(errno);
        }
        match Self::open_options(flags).open(path) {
            Ok(file) => {
                let fh = self.open_fh(file, flags);
                reply.opened(fh, 0)
            }
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn create(
        &mut self,
        req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let Some(rel) = self.child(parent, name) else { return reply.error(libc::ENOENT) };
        if let Err(errno) = self.check(IoOp::Create, &[&rel], || 0) {
            return reply.error(errno);
        }
        let mut options = Self::open_options(flags);
        options.create(true).mode(mode & !umask);
        if flags & libc::O_EXCL != 0 {
            options.create_new(true);
        }
        if flags & libc::O_ACCMODE == libc::O_RDONLY {
            options.write(true);
        }
        let path = self.root.join(&rel);
        let opened = options.open(&path).and_then(|f| {
            owned_by(&path, req)?;
            let m = f.metadata()?;
            Ok((f, m))
        });
        match opened {
            Ok((file, m)) => {
                let ino = self.ledger.lock().unwrap().ino_of(&rel);
                let fh = self.open_fh(file, flags);
                reply.created(&TTL, &attr(ino, &m), 0, fh, 0)
            }
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn read(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        fh: u64,
        offset: i64,
        size: u32,
        _flags: i32,
        _lock_owner: Option<u64>,
        reply: ReplyData,
    ) {
        if let Err(errno) = self.check_ino(IoOp::Read, ino, || 0) {
            return reply.error(errno);
        }
        let Some(f) = self.files.get(&fh) else { return reply.error(libc::EBADF) };
        let mut buf = vec![0; size as usize];
        let mut filled = 0;
        while filled < buf.len() {
            match f.file.read_at(&mut buf[filled..], offset as u64 + filled as u64) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return reply.error(errno(&e)),
            }
        }
        reply.data(&buf[..filled])
    }

    fn write(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        fh: u64,
        offset: i64,
        data: &[u8],
        _write_flags: u32,
        _flags: i32,
        _lock_owner: Option<u64>,
        reply: ReplyWrite,
    ) {
        let Some(f) = self.files.get(&fh) else { return reply.error(libc::EBADF) };
        let offset = offset as u64;
        let end = offset + data.len() as u64;
        let growth = || end.saturating_sub(f.file.metadata().map_or(0, |m| m.len()));
        if let Err(errno) = self.check_ino(IoOp::Write, ino, growth) {
            return reply.error(errno);
        }
        if f.sync {
            // The sync of an O_SYNC write is an fsync the target asked for.
            if let Err(errno) = self.check_ino(IoOp::Fsync, ino, || 0) {
                return reply.error(errno);
            }
        }
        if !f.sync {
            let mut ledger = self.ledger.lock().unwrap();
            let pending = match ledger.pending.entry(ino) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => {
                    let len = match f.file.metadata() {
                        Ok(m) => m.len(),
                        Err(e) => return reply.error(errno(&e)),
                    };
                    e.insert(Pending { synced_len: len, len, ..Default::default() })
                }
            };
            // Keep what this write covers of the existing bytes.
            let kept_end = end.min(pending.len);
            if offset < kept_end {
                let mut before = vec![0; (kept_end - offset) as usize];
                if let Err(e) = f.file.read_exact_at(&mut before, offset) {
                    return reply.error(errno(&e));
                }
                pending.overwritten.push((offset, before));
            }
            pending.len = pending.len.max(end);
            pending.writes += 1;
            pending.bytes += data.len() as u64;
            ledger.last_write = Some((ino, offset, data.to_vec()));
        }
        match f.file.write_all_at(data, offset) {
            Ok(()) => {
                if f.sync {
                    if let Err(e) = f.file.sync_data() {
                        return reply.error(errno(&e));
                    }
                    self.ledger.lock().unwrap().synced(ino);
                }
                reply.written(data.len() as u32)
            }
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn flush(&mut self, _req: &Request<'_>, _ino: u64, _fh: u64, _lock_owner: u64, reply: ReplyEmpty) {
        // close() does not make data durable.
        reply.ok()
    }

    fn release(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        fh: u64,
        _flags: i32,
        _lock_owner: Option<u64>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.files.remove(&fh);
        reply.ok()
    }

    fn fsync(&mut self, _req: &Request<'_>, ino: u64, fh: u64, datasync: bool, reply: ReplyEmpty) {
        if let Err(errno) = self.check_ino(IoOp::Fsync, ino, || 0) {
            return reply.error(errno);
        }
        let Some(f) = self.files.get(&fh) else { return reply.error(libc::EBADF) };
        let result = if datasync { f.file.sync_data() } else { f.file.sync_all() };
        match result {
            Ok(()) => {
                self.ledger.lock().unwrap().synced(ino);
                reply.ok()
            }
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn opendir(&mut self, _req: &Request<'_>, _ino: u64, _flags: i32, reply: ReplyOpen) {
        reply.opened(0, 0)
    }

    fn readdir(&mut self, _req: &Request<'_>, ino: u64, _fh: u64, offset: i64, mut reply: ReplyDirectory) {
        let Some(rel) = self.ledger.lock().unwrap().paths.get(&ino).cloned() else {
            return reply.error(libc::ENOENT);
        };
        if let Err(errno) = self.check(IoOp::Readdir, &[&rel], || 0) {
            return reply.error(errno);
        }
        let entries = match fs::read_dir(self.root.join(&rel)) {
            Ok(entries) => entries,
            Err(e) => return reply.error(errno(&e)),
        };
        let mut all: Vec<(u64, FileType, std::ffi::OsString)> =
            vec![(ino, FileType::Directory, ".".into()), (1, FileType::Directory, "..".into())];
        for entry in entries.flatten() {
            let kind = match entry.file_type() {
                Ok(t) if t.is_dir() => FileType::Directory,
                Ok(t) if t.is_symlink() => FileType::Symlink,
                _ => FileType::RegularFile,
            };
            let child = self.ledger.lock().unwrap().ino_of(&rel.join(entry.file_name()));
            all.push((child, kind, entry.file_name()));
        }
        for (i, (ino, kind, name)) in all.into_iter().enumerate().skip(offset as usize) {
            if reply.add(ino, (i + 1) as i64, kind, name) {
                break;
            }
        }
        reply.ok()
    }

    fn fsyncdir(&mut self, _req: &Request<'_>, _ino: u64, _fh: u64, _datasync: bool, reply: ReplyEmpty) {
        reply.ok()
    }

    fn statfs(&mut self, _req: &Request<'_>, _ino: u64, reply: ReplyStatfs) {
        // Under a disk-full fault, no more room than the fault leaves.
        let room = self.rules.disk().map(|(used, limit)| limit.saturating_sub(used));
        match nix::sys::statvfs::statvfs(&self.root) {
            Ok(s) => reply.statfs(
                s.blocks(),
                room.map_or(s.blocks_free(), |r| s.blocks_free().min(r / s.fragment_size().max(1))),
                room.map_or(s.blocks_available(), |r| s.blocks_available().min(r / s.fragment_size().max(1))),
                s.files(),
                s.files_free(),
                s.block_size() as u32,
                s.name_max() as u32,
                s.fragment_size() as u32,
            ),
            Err(e) => reply.error(e as i32),
        }
    }

    fn access(&mut self, _req: &Request<'_>, _ino: u64, _mask: i32, reply: ReplyEmpty) {
        reply.ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_renamed_file_keeps_its_inode_under_the_exact_new_path() {
        let mut ledger = Ledger::default();
        let temp = ledger.ino_of(Path::new("temp-rewriteaof-1.aof"));
        let dir = ledger.ino_of(Path::new("d"));
        let inside = ledger.ino_of(Path::new("d/x"));
        ledger.renamed(Path::new("temp-rewriteaof-1.aof"), Path::new("appendonlydir/base.rdb"));
        assert_eq!(ledger.paths[&temp].as_os_str(), "appendonlydir/base.rdb", "no trailing slash");
        ledger.renamed(Path::new("d"), Path::new("e"));
        assert_eq!(ledger.paths[&dir].as_os_str(), "e");
        assert_eq!(ledger.paths[&inside].as_os_str(), "e/x");
    }
}
