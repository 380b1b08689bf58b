//! The guardrail on paths: a storage fault or a recovery step touches only
//! what lies inside its target's data dir. Paths are canonicalized, so a
//! symlink that leads out of the data dir is refused, not followed; files
//! are opened with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`, so a
//! link put in place after the check is refused too; and a file with more
//! than one hard link is left alone, since another name of it may lie
//! outside the data dir.

use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::Mode;

#[derive(Debug, thiserror::Error)]
#[error("refused: {0}")]
pub struct Refusal(pub String);

/// Directories that are never a data dir, whatever `disposable` says: a
/// storage fault or a restore there would damage the system.
const SYSTEM_DIRS: &[&str] = &[
    "/",
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/home",
    "/lib",
    "/lib32",
    "/lib64",
    "/opt",
    "/proc",
    "/root",
    "/run",
    "/sbin",
    "/srv",
    "/sys",
    "/tmp",
    "/usr",
    "/usr/local",
    "/var",
    "/var/lib",
    "/var/tmp",
];

/// Whether `path` (absolute; compared without following links, with `.`,
/// `..` and repeated slashes folded) is a system directory or the user's
/// home.
pub fn is_system_dir(path: &Path) -> bool {
    let folded = fold(path);
    let home = std::env::var_os("HOME").map(|h| fold(Path::new(&h)));
    SYSTEM_DIRS.iter().any(|d| folded == Path::new(d)) || home.is_some_and(|h| h == folded)
}

/// `path` with `.` and `..` folded lexically.
fn fold(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for part in path.components() {
        match part {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::Normal(p) => out.push(p),
            _ => {}
        }
    }
    out
}

/// Refuses a data dir (canonical) that is a system directory, the user's
/// home, or the run directory or one of its parents.
pub fn check_data_dir(dir: &Path, run_dir: &Path) -> Result<(), Refusal> {
    if is_system_dir(dir) {
        return Err(Refusal(format!("{} is a system directory, never a data dir", dir.display())));
    }
    if run_dir.starts_with(dir) {
        return Err(Refusal(format!(
            "{} holds the run directory {}; a data dir must not",
            dir.display(),
            run_dir.display()
        )));
    }
    Ok(())
}

/// Whether `path` (canonical) lies inside `dir` (canonical), or is `dir`.
fn inside(dir: &Path, path: &Path) -> bool {
    path.starts_with(dir)
}

/// What a glob found inside a data dir.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Matches {
    /// Regular files with a single link, canonical and sorted.
    pub files: Vec<PathBuf>,
    /// Files left alone, and why (more than one hard link).
    pub skipped: Vec<(PathBuf, String)>,
}

/// The regular files inside `dir` that the glob `pattern` (relative to
/// `dir`) matches. Matches that resolve outside `dir` are refused; files
/// with other hard links are skipped.
pub fn matches(dir: &Path, pattern: &str) -> Result<Matches, Refusal> {
    let full = format!("{}/{}", glob::Pattern::escape(&dir.display().to_string()), pattern);
    let paths = glob::glob(&full).map_err(|e| Refusal(format!("bad pattern `{pattern}`: {e}")))?;
    let mut out = Vec::new();
    for path in paths.flatten() {
        let real = path.canonicalize().map_err(|e| Refusal(format!("{}: {e}", path.display())))?;
        if !inside(dir, &real) {
            return Err(Refusal(format!(
                "{} leads outside the data dir {} (to {})",
                path.display(),
                dir.display(),
                real.display()
            )));
        }
        if real.is_file() && !out.contains(&real) {
            out.push(real);
        }
    }
    out.sort();
    let mut found = Matches::default();
    for path in out {
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.nlink() > 1 => found.skipped.push((path, hard_links(m.nlink()))),
            _ => found.files.push(path),
        }
    }
    Ok(found)
}

fn hard_links(n: u64) -> String {
    format!("skipped: it has {n} hard links, and another may lie outside the data dir")
}

/// Opens `path` (inside the canonical `dir`) with `flags`, resolving
/// neither a symlink in `dir`'s own path nor one below it, nor anything
/// that leads out of `dir`; an existing file must have a single link. The
/// check and the open are one step: nothing can be swapped in between.
pub fn open_beneath(dir: &Path, path: &Path, flags: OFlag) -> io::Result<File> {
    let relative = path.strip_prefix(dir).map_err(|_| {
        io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("{} is not inside the data dir {}", path.display(), dir.display()),
        )
    })?;
    let strict = ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS;
    let root = File::open("/")?;
    let below_root =
        dir.strip_prefix("/").map_err(|_| io::Error::other(format!("{} is not absolute", dir.display())))?;
    let dir_fd = openat2(
        &root,
        below_root,
        OpenHow::new().flags(OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC).resolve(strict),
    )
    .map_err(|e| refused_open(dir, e))?;
    let mut how = OpenHow::new().flags(flags | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW).resolve(strict);
    if flags.contains(OFlag::O_CREAT) {
        // openat2 refuses a mode without O_CREAT.
        how = how.mode(Mode::from_bits_truncate(0o600));
    }
    let relative = if relative.as_os_str().is_empty() { Path::new(".") } else { relative };
    let fd = openat2(&dir_fd, relative, how).map_err(|e| refused_open(path, e))?;
    let file = File::from(fd);
    let meta = file.metadata()?;
    let links = meta.nlink();
    if links > 1 && !meta.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("{}: {}", path.display(), hard_links(links)),
        ));
    }
    Ok(file)
}

/// Removes `path` (inside the canonical `dir`) through its parent opened
/// beneath `dir`: the name removed is the one inside, never a link's target.
pub fn remove_beneath(dir: &Path, path: &Path) -> io::Result<()> {
    let parent = path.parent().unwrap_or(dir);
    let name = path.file_name().ok_or_else(|| io::Error::other(format!("{} names no file", path.display())))?;
    let parent = open_beneath(dir, parent, OFlag::O_PATH | OFlag::O_DIRECTORY)?;
    nix::unistd::unlinkat(&parent, name, nix::unistd::UnlinkatFlags::NoRemoveDir).map_err(io::Error::from)
}

fn refused_open(path: &Path, e: nix::errno::Errno) -> io::Error {
    let why = match e {
        nix::errno::Errno::ELOOP => "a symlink is in the way (refused, not followed)".to_string(),
        nix::errno::Errno::EXDEV => "it leads outside the data dir".to_string(),
        other => other.desc().to_string(),
    };
    io::Error::new(io::Error::from(e).kind(), format!("{}: {why}", path.display()))
}

/// `relative` inside `dir`, which need not exist yet: its parent must be
/// inside `dir`, and if it exists it must not lead out of `dir`.
pub fn path_in(dir: &Path, relative: &str) -> Result<PathBuf, Refusal> {
    let joined = dir.join(relative);
    let refuse = |real: &Path| {
        Refusal(format!("{} leads outside the data dir {} (to {})", joined.display(), dir.display(), real.display()))
    };
    let parent = joined.parent().unwrap_or(dir);
    let parent = parent.canonicalize().map_err(|e| Refusal(format!("{}: {e}", parent.display())))?;
    if !inside(dir, &parent) {
        return Err(refuse(&parent));
    }
    let name = joined.file_name().ok_or_else(|| Refusal(format!("`{relative}` names no file")))?;
    let path = parent.join(name);
    if let Ok(real) = path.canonicalize() {
        if !inside(dir, &real) {
            return Err(refuse(&real));
        }
    }
    if let Ok(m) = std::fs::symlink_metadata(&path) {
        if m.nlink() > 1 && !m.is_dir() {
            return Err(Refusal(format!("{}: {}", path.display(), hard_links(m.nlink()))));
        }
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlinks_out_of_the_data_dir_are_refused() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("data");
        std::fs::create_dir(&dir).unwrap();
        let outside = root.path().join("precious");
        std::fs::write(&outside, b"keep me").unwrap();
        std::fs::write(dir.join("wal.log"), b"x").unwrap();
        std::os::unix::fs::symlink(&outside, dir.join("escape.log")).unwrap();
        let dir = dir.canonicalize().unwrap();

        assert_eq!(matches(&dir, "wal.log").unwrap().files, vec![dir.join("wal.log")]);
        let err = matches(&dir, "*.log").unwrap_err().to_string();
        assert!(err.contains("leads outside the data dir"), "{err}");
        assert!(path_in(&dir, "escape.log").is_err());
        assert!(path_in(&dir, "new-file").is_ok());
        assert_eq!(std::fs::read(&outside).unwrap(), b"keep me");
    }

    #[test]
    fn hard_links_and_late_symlinks_are_refused() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("data");
        std::fs::create_dir(&dir).unwrap();
        let outside = root.path().join("precious");
        std::fs::write(&outside, b"keep me").unwrap();
        std::fs::hard_link(&outside, dir.join("linked.log")).unwrap();
        std::fs::write(dir.join("own.log"), b"x").unwrap();
        let dir = dir.canonicalize().unwrap();

        let found = matches(&dir, "*.log").unwrap();
        assert_eq!(found.files, vec![dir.join("own.log")]);
        assert_eq!(found.skipped.len(), 1, "{found:?}");
        assert!(found.skipped[0].1.contains("2 hard links"), "{found:?}");
        assert!(path_in(&dir, "linked.log").is_err());
        let err = open_beneath(&dir, &dir.join("linked.log"), OFlag::O_WRONLY).unwrap_err();
        assert!(err.to_string().contains("hard links"), "{err}");

        // A symlink swapped in after the glob: the open refuses it.
        std::fs::remove_file(dir.join("own.log")).unwrap();
        std::os::unix::fs::symlink(&outside, dir.join("own.log")).unwrap();
        let err = open_beneath(&dir, &dir.join("own.log"), OFlag::O_WRONLY).unwrap_err();
        assert!(err.to_string().contains("symlink"), "{err}");
        // A symlinked parent of the data dir is refused as well.
        std::os::unix::fs::symlink(&dir, root.path().join("alias")).unwrap();
        let alias = root.path().join("alias");
        assert!(open_beneath(&alias, &alias.join("x"), OFlag::O_RDONLY).is_err());
        assert_eq!(std::fs::read(&outside).unwrap(), b"keep me");
    }
}
