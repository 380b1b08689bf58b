//! Workloads: clients that apply operations to a target and record every one
//! (`invoke`, then `ok` / `fail` / `unknown`). Acknowledged writes are the
//! evidence for RPO; a complete read-back after recovery says what survived.

pub mod demo_kv;
pub mod postgres;
pub mod redis;

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::history::{EventKind, Outcome, Recorder};
use crate::scenario::WorkloadKind;

/// The outcome of one write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteResult {
    Ok,
    /// Definitely not applied.
    Fail(String),
    /// May or may not have been applied.
    Unknown(String),
}

/// One connection's worth of client.
pub trait Client: Send {
    fn write(&mut self, key: &str, value: &str) -> WriteResult;
}

pub trait Workload: Send + Sync {
    /// A new client; it connects lazily and reconnects after errors.
    fn client(&self) -> Box<dyn Client>;
    /// Every key and value the store holds now.
    fn read_back(&self) -> io::Result<Vec<(String, String)>>;
}

/// The workload of a plan's kind, writing to `addr`.
pub fn build(kind: WorkloadKind, addr: SocketAddr, timeout: Duration) -> Box<dyn Workload> {
    match kind {
        WorkloadKind::DemoKv => Box::new(demo_kv::DemoKv { addr, timeout }),
        WorkloadKind::Redis => Box::new(redis::Redis { addr, timeout }),
        WorkloadKind::Postgres => Box::new(postgres::Postgres::new(addr, timeout)),
    }
}

/// The key of the `seq`-th write of a trial: unique, so each key is written once.
pub fn key_of(seq: u64) -> String {
    format!("k{seq:08}")
}

/// A value that encodes its own key and sequence number, with a checksum, so
/// that a read-back can tell a lost write from a corrupted or misplaced one.
pub fn value_of(key: &str, seq: u64) -> String {
    let crc = crc32fast::hash(format!("{key}.{seq}").as_bytes());
    format!("{key}.{seq}.{crc:08x}")
}

/// How fast to issue operations.
#[derive(Debug, Clone, Copy)]
pub enum Pace {
    /// Open loop: op `i` is due at `i / rate` seconds, whether or not earlier
    /// ops have finished (up to one in flight per connection).
    Rate(u32),
    /// Closed loop: each connection issues its next op as soon as the last
    /// one finished (for measuring capacity).
    AsFastAsPossible,
}

/// What a workload run did, in counts.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub invoked: u64,
    pub ok: u64,
    pub fail: u64,
    pub unknown: u64,
}

/// Drives writes for `duration` from `connections` threads. With a recorder,
/// every op is recorded; without one, only counted (to measure what
/// recording costs).
pub fn drive(
    workload: &dyn Workload,
    pace: Pace,
    duration: Duration,
    connections: u32,
    recorder: Option<&Recorder>,
    cancel: &crate::cancel::Cancel,
) -> Counts {
    let next = AtomicU64::new(0);
    let start = Instant::now();
    let end = start + duration;
    let totals: Vec<Counts> = thread::scope(|scope| {
        let workers: Vec<_> = (0..connections)
            .map(|_| {
                let mut client = workload.client();
                let next = &next;
                scope.spawn(move || {
                    let mut counts = Counts::default();
                    loop {
                        let seq = next.fetch_add(1, Ordering::Relaxed);
                        if let Pace::Rate(rate) = pace {
                            let due = start + Duration::from_secs_f64(seq as f64 / rate as f64);
                            if due >= end {
                                break;
                            }
                            let now = Instant::now();
                            if due > now {
                                thread::sleep(due - now);
                            }
                        }
                        if Instant::now() >= end || cancel.is_cancelled() {
                            break;
                        }
                        let key = key_of(seq);
                        let value = value_of(&key, seq);
                        if let Some(r) = recorder {
                            r.record(EventKind::Invoke { op: seq, key: key.clone(), value: value.clone() });
                        }
                        let result = client.write(&key, &value);
                        let (outcome, error) = match result {
                            WriteResult::Ok => (Outcome::Ok, None),
                            WriteResult::Fail(e) => (Outcome::Fail, Some(e)),
                            WriteResult::Unknown(e) => (Outcome::Unknown, Some(e)),
                        };
                        if let Some(r) = recorder {
                            r.record(EventKind::Complete { op: seq, outcome, error });
                        }
                        counts.invoked += 1;
                        match outcome {
                            Outcome::Ok => counts.ok += 1,
                            Outcome::Fail => counts.fail += 1,
                            Outcome::Unknown => counts.unknown += 1,
                        }
                    }
                    counts
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap_or_default()).collect()
    });
    totals.iter().fold(Counts::default(), |a, c| Counts {
        invoked: a.invoked + c.invoked,
        ok: a.ok + c.ok,
        fail: a.fail + c.fail,
        unknown: a.unknown + c.unknown,
    })
}
