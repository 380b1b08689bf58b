//! libfaketime for a process or container target whose scenario has a
//! `clock` fault: the target runs with the library preloaded (into a
//! container, the host's, bind-mounted) and reading its time offset from
//! a control file, which the fault rewrites while the target runs (with
//! caching off, every call reads it). What it cannot reach: statically
//! linked programs (nothing to preload into), and programs that read the
//! clock without libc (a raw `clock_gettime` syscall or vDSO call, Go's
//! runtime, hence etcd), and programs linked with jemalloc (Debian's
//! redis-server), which libfaketime cannot be preloaded into (libfaketime
//! #130: their start fails, saying so). The monotonic clock moves with the
//! wall clock: libfaketime 0.9.10 breaks `clock_nanosleep` (Python's
//! `time.sleep`) when told to leave it alone.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Where Debian's libfaketime package puts the library, and elsewhere.
const DIRS: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu/faketime",
    "/usr/lib/aarch64-linux-gnu/faketime",
    "/usr/lib/faketime",
    "/usr/local/lib/faketime",
];

/// The build that takes a lock around its clock calls first. The plain
/// build rereads the control file into one static buffer from every
/// thread at once: a thread can see an offset half read, and a wait
/// converted with it lasts seconds, or an hour (a CPython program whose
/// second thread reads the clock stopped for good under "+3600s": see
/// tests/faults/clock.rs).
const NAMES: &[&str] = &["libfaketimeMT.so.1", "libfaketime.so.1"];

/// The library, if installed.
pub fn library() -> Option<PathBuf> {
    NAMES.iter().flat_map(|name| DIRS.iter().map(move |dir| Path::new(dir).join(name))).find(|p| p.exists())
}

/// The control file of `target` in a trial's directory, alone in a
/// directory of its own: a container sees it through a bind mount of that
/// directory (a file's own mount would keep the inode it had before the
/// fault renamed a new one over it).
pub fn control_file(trial_dir: &Path, target: &str) -> PathBuf {
    trial_dir.join(format!("faketime-{target}")).join("clock")
}

/// Where a container sees the library and the control file's directory.
const IN_CONTAINER: &str = "/.crashlab-faketime";

/// The bind mounts (host path, path inside) that bring the host's library
/// and the control file into a container: its image needs none of its own,
/// only a glibc dynamic loader.
pub fn container_binds(library: &Path, file: &Path) -> Vec<(PathBuf, String)> {
    let dir = file.parent().unwrap_or(file).to_path_buf();
    vec![(library.to_path_buf(), format!("{IN_CONTAINER}/libfaketime.so.1")), (dir, format!("{IN_CONTAINER}/control"))]
}

/// The environment that preloads the library in a container.
pub fn container_env(file: &Path) -> Vec<(String, String)> {
    let name = file.file_name().map_or("clock".into(), |n| n.to_string_lossy().into_owned());
    vec![
        ("LD_PRELOAD".into(), format!("{IN_CONTAINER}/libfaketime.so.1")),
        ("FAKETIME_TIMESTAMP_FILE".into(), format!("{IN_CONTAINER}/control/{name}")),
        ("FAKETIME_NO_CACHE".into(), "1".into()),
    ]
}

/// Whether the process `pid` has libfaketime loaded: a program that is
/// statically linked, or uses another libc, runs without it.
pub fn loaded_in(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/maps")).is_ok_and(|maps| maps.contains("libfaketime"))
}

/// What the clock reads, in libfaketime's relative format: `+7200s`, or
/// `-30s x2` (30 s behind, running twice as fast).
pub fn spec(offset_ms: i64, rate: Option<f64>) -> String {
    let sign = if offset_ms < 0 { "-" } else { "+" };
    let seconds = offset_ms.unsigned_abs() as f64 / 1000.0;
    match rate {
        Some(rate) => format!("{sign}{seconds}s x{rate}"),
        None => format!("{sign}{seconds}s"),
    }
}

/// Sets what the clock reads: written beside, then renamed over, so that
/// a read never sees half a file.
pub fn set(file: &Path, spec: &str) -> std::io::Result<()> {
    let next = file.with_extension("next");
    std::fs::write(&next, format!("{spec}\n"))?;
    std::fs::rename(&next, file)
}

/// Preloads the library into `command`, reading `file`.
pub fn preload(command: &mut Command, library: &Path, file: &Path) {
    command.env("LD_PRELOAD", library).env("FAKETIME_TIMESTAMP_FILE", file).env("FAKETIME_NO_CACHE", "1");
}

#[cfg(test)]
mod tests {
    #[test]
    fn specs_are_libfaketime_s_relative_format() {
        assert_eq!(super::spec(7_200_000, None), "+7200s");
        assert_eq!(super::spec(-30_000, Some(2.0)), "-30s x2");
        assert_eq!(super::spec(1500, Some(0.5)), "+1.5s x0.5");
    }
}
