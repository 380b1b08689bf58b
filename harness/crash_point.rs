//! Crash points, for the tests that kill the harness: with
//! `CRASHLAB_CRASH_AT=NAME` (or `NAME:N`) the harness sends itself SIGKILL
//! the first (or N-th) time it passes the point `NAME`, so that a test can
//! aim at a window between creating something and journaling it that a
//! random kill would rarely hit. Unset, a point costs one atomic load.
//!
//! Points: `spawn` (a target incarnation forked), `command` (a hook or a
//! recovery step started), `container-create` (the engine created a
//! container), `network-create` (the engine was asked for the run's
//! network and has not answered), `veth` (a veth pair exists in the
//! harness's namespace),
//! `mount` (a FUSE layer is mounted), `lock-holder` (a lock holder forked),
//! `corrupt` (a file was damaged).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

pub const VAR: &str = "CRASHLAB_CRASH_AT";

/// The point and the pass to die at, read once.
fn wanted() -> Option<&'static (String, u32)> {
    static WANTED: OnceLock<Option<(String, u32)>> = OnceLock::new();
    WANTED
        .get_or_init(|| {
            let value = std::env::var(VAR).ok()?;
            let (name, n) = value.split_once(':').unwrap_or((&value, "1"));
            Some((name.to_string(), n.parse().unwrap_or(1)))
        })
        .as_ref()
}

/// Dies here if the test asked for it.
pub fn reached(name: &str) {
    if due(name) {
        die();
    }
}

/// Whether the test asked to die at this pass of `name`: for a point that
/// must first set something going (a request the engine goes on with
/// after the harness died), then [`die`].
pub fn due(name: &str) -> bool {
    static PASSES: AtomicU32 = AtomicU32::new(0);
    wanted().is_some_and(|(wanted, n)| wanted == name && PASSES.fetch_add(1, Ordering::SeqCst) + 1 == *n)
}

pub fn die() -> ! {
    let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    unreachable!("SIGKILL cannot be caught")
}
