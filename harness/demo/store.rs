//! What demo-kv's engines share: how a store refuses to start, and the
//! exit codes runbooks and tests read. The engines (log, snapshots,
//! checkpoints) depend on this, not on each other.

use std::io;
use std::path::Path;

use super::protocol;

/// Exit codes of demo-kv itself, for runbooks and tests.
pub const EXIT_LOCKED: i32 = 2;
pub const EXIT_CORRUPT: i32 = 3;

/// Why the server will not start: its exit code and a message.
pub type Refusal = (i32, String);

/// Maps an I/O error on `path` to a refusal (exit 1) that names it.
pub fn io_refusal(what: &str, path: &Path) -> impl Fn(io::Error) -> Refusal {
    let message = format!("{what} {}", path.display());
    move |e| (1, format!("{message}: {e}"))
}

/// A store persisted on a period (snapshots, checkpoints) rather than per write.
pub trait PeriodicStore: protocol::Store + Send + Sync {
    fn persist(&self) -> io::Result<()>;
}
