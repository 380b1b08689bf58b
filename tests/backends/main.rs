//! Target backends: containers and compose, the conformance suite, image builds.
//!
//! One test binary per area; each module below is one file of tests/backends/.

#[path = "../common/mod.rs"]
mod common;

mod conformance;
mod containers;
mod host_containers;
mod hosts;
mod images;
mod kubernetes;
