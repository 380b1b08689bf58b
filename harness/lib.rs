//! crashlab: a chaos and recovery test harness.
//!
//! Data flows one way: [`scenario::compile`] makes a validated [`scenario::Plan`];
//! the [`runner`] starts targets, drives the workload, samples probes and injects
//! faults, all reporting timestamped events into one [`history::History`];
//! the [`check`]ers turn that history into verdicts and metrics; the report crate
//! renders them. A stored history can be checked again offline (`crashlab analyze`).

pub mod agent;
pub mod analyze;
pub mod bench;
pub mod cancel;
pub mod check;
pub mod cleanup;
pub mod cluster;
pub mod compose;
pub mod confine;
pub mod crash_point;
pub mod demo;
pub mod drill;
pub mod duration;
pub mod engine;
pub mod exit;
pub mod fault;
pub mod history;
pub mod image;
pub mod journal;
pub mod kinds;
pub mod merge;
pub mod network;
pub mod port_forward;
pub mod probe;
pub mod proxy;
pub mod run_dir;
pub mod runner;
pub mod scenario;
pub mod targets;
pub mod workload;

pub use crashlab_reports as reports;
