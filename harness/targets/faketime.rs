//! libfaketime for a process target whose scenario has a `clock` fault: the
//! target runs with the library preloaded and reading its time offset from
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
const CANDIDATES: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/faketime/libfaketime.so.1",
    "/usr/local/lib/faketime/libfaketime.so.1",
];

/// The library, if installed.
pub fn library() -> Option<PathBuf> {
    CANDIDATES.iter().map(PathBuf::from).find(|p| p.exists())
}

/// The control file of `target` in a trial's directory.
pub fn control_file(trial_dir: &Path, target: &str) -> PathBuf {
    trial_dir.join(format!("faketime-{target}"))
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
