//! The exit codes that CI relies on (DESIGN.md, "Contracts"): one enum,
//! kept with the reports whose verdicts map to it.

pub use crate::reports::Exit;
