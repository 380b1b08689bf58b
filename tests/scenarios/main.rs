//! Scenario files: diagnostics, the fuzzer, the history and report contracts, the code's shape, the CI examples.
//!
//! One test binary per area; each module below is one file of tests/scenarios/.

#[path = "../common/mod.rs"]
mod common;

mod ci_examples;
mod code_shape;
mod compat;
mod scenario_errors;
mod scenario_fuzz;
