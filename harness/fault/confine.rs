//! The guardrail on paths: a storage fault or a recovery step touches only
//! what lies inside its target's data dir. Paths are canonicalized, so a
//! symlink that leads out of the data dir is refused, not followed.

use std::path::{Path, PathBuf};

use crate::target::Target;

#[derive(Debug, thiserror::Error)]
#[error("refused: {0}")]
pub struct Refusal(pub String);

/// The target's data dir, canonical.
pub fn data_dir(target: &dyn Target) -> Result<PathBuf, Refusal> {
    let dir = target
        .data_dirs()
        .into_iter()
        .next()
        .ok_or_else(|| Refusal(format!("target `{}` has no data dir", target.name())))?;
    dir.canonicalize().map_err(|e| Refusal(format!("data dir {}: {e}", dir.display())))
}

/// Whether `path` (canonical) lies inside `dir` (canonical), or is `dir`.
fn inside(dir: &Path, path: &Path) -> bool {
    path.starts_with(dir)
}

/// The regular files inside `dir` that the glob `pattern` (relative to
/// `dir`) matches, canonical and sorted. Matches that resolve outside `dir`
/// are refused.
pub fn matches(dir: &Path, pattern: &str) -> Result<Vec<PathBuf>, Refusal> {
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
    Ok(out)
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

        assert_eq!(matches(&dir, "wal.log").unwrap(), vec![dir.join("wal.log")]);
        let err = matches(&dir, "*.log").unwrap_err().to_string();
        assert!(err.contains("leads outside the data dir"), "{err}");
        assert!(path_in(&dir, "escape.log").is_err());
        assert!(path_in(&dir, "new-file").is_ok());
        assert_eq!(std::fs::read(&outside).unwrap(), b"keep me");
    }
}
