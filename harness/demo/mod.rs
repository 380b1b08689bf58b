//! `crashlab demo-kv`: the reference service and calibration instrument.
//!
//! A TCP key-value store with a CRC-checked write-ahead log whose durability
//! and recovery time are knobs, so that the harness can be checked against
//! known answers: with `--fsync always` a SIGKILL loses nothing; with
//! `--flush-interval 1s` it loses exactly what was not yet flushed (and says
//! which keys it flushed, with `--log-flushes`); with `--recovery-delay 400ms`
//! its true recovery time is 400 ms plus replay.

pub mod checkpoints;
pub mod protocol;
pub mod server;
pub mod snapshots;
pub mod sqlite_app;
pub mod store;
pub mod wal;
pub mod wallclock;

pub use server::{run, DemoKvOptions, FsyncPolicy, OnCorruption};
