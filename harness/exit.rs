//! The exit codes that CI relies on (DESIGN.md, "Contracts").

/// Every expectation was met.
pub const PASS: i32 = 0;
/// An expectation failed.
pub const FAIL: i32 = 1;
/// The scenario or the command line was invalid; nothing was started.
pub const USAGE: i32 = 2;
/// The environment failed us: a target would not start, permission denied...
pub const ENVIRONMENT: i32 = 3;
/// The verdict is unknown: a check could not decide, or the run was interrupted.
pub const UNKNOWN: i32 = 4;
