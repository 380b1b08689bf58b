//! Measurement truth and the harness's own behaviour: known answers, lifecycle, safety.
//!
//! One test binary per area; each module below is one file of tests/recovery/.

#[path = "../common/mod.rs"]
mod common;

mod abort;
mod known_answers;
mod lifecycle;
mod measurement;
mod safety;
mod workloads;
