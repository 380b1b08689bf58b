//! Fault families: storage (FUSE layer, corruption, stale locks), network partitions, the fault proxy.
//!
//! One test binary per area; each module below is one file of tests/faults/.

#[path = "../common/mod.rs"]
mod common;

mod chosen_target;
mod clock;
mod io_faults;
mod menus;
mod network_faults;
mod pressure;
mod proxy;
mod storage_faults;
