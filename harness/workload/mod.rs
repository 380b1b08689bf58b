//! Workloads: clients that apply operations to a target and record every one
//! (`invoke`, then `ok` / `fail` / `unknown`). Acknowledged writes are the
//! evidence for RPO; a complete read-back after recovery says what survived.

pub mod command;
pub mod demo_kv;
pub mod http;
pub mod postgres;
pub mod redis;
pub mod sql;

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;

use crate::history::{EventKind, Outcome, Recorder};
use crate::scenario::{template, CommandMode, WorkloadClient, WorkloadPlan};

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
    /// Writes `value` under `key`, the `seq`-th write of the trial.
    fn write(&mut self, seq: u64, key: &str, value: &str) -> WriteResult;
}

pub trait Workload: Send + Sync {
    /// A new client; it connects lazily and reconnects after errors.
    fn client(&self) -> Box<dyn Client>;
    /// Every workload key and its value the store holds now. `written`:
    /// the writes were numbered below it (a store that can only be asked
    /// key by key is asked for those).
    fn read_back(&self, written: u64) -> io::Result<Vec<(String, String)>>;
}

/// The workload of a plan, writing to `addr`; `render` fills the target's
/// placeholders in a client command (`{host}` and `{port}` are `addr`'s).
pub fn build(plan: &WorkloadPlan, addr: SocketAddr, render: &dyn Fn(&[String]) -> Vec<String>) -> Box<dyn Workload> {
    let timeout = plan.timeout;
    // `{host}` and `{port}` are where the clients go (a proxy, with `via`).
    let reach = [("host", addr.ip().to_string()), ("port", addr.port().to_string())];
    let fill = |argv: &[String]| -> Vec<String> {
        render(&argv.iter().map(|a| template::render(a, &reach)).collect::<Vec<_>>())
    };
    match &plan.client {
        WorkloadClient::DemoKv => Box::new(demo_kv::DemoKv { addr, timeout }),
        WorkloadClient::Redis => Box::new(redis::Redis { addr, timeout }),
        WorkloadClient::Postgres => Box::new(postgres::Postgres::new(addr, timeout)),
        WorkloadClient::Http(http) => Box::new(http::Http::new(addr, (**http).clone(), timeout)),
        WorkloadClient::Sql(sql) => {
            let url = fill(std::slice::from_ref(&sql.url)).remove(0);
            Box::new(sql::Sql::new((**sql).clone(), url, timeout))
        }
        WorkloadClient::Command(c) => {
            let mode = match &c.mode {
                CommandMode::PerWrite { argv, refused_exit } => {
                    CommandMode::PerWrite { argv: fill(argv), refused_exit: refused_exit.clone() }
                }
                CommandMode::Lines { argv } => CommandMode::Lines { argv: fill(argv) },
            };
            Box::new(command::CommandWorkload { mode, read_back: fill(&c.read_back), dir: c.dir.clone(), timeout })
        }
    }
}

/// The template variables of a key (and its value, for a write): the
/// placeholders of `http` and `command` templates (`scenario::workload`).
pub fn vars(key: &str, value: Option<(&str, u64)>) -> Vec<(&'static str, String)> {
    let json = |s: &str| serde_json::to_string(s).expect("a string serializes").trim_matches('"').to_string();
    let mut vars = vec![("key", key.to_string()), ("key_b64", BASE64.encode(key)), ("key_json", json(key))];
    if let Some((value, seq)) = value {
        vars.extend([
            ("value", value.to_string()),
            ("value_b64", BASE64.encode(value)),
            ("value_json", json(value)),
            ("seq", seq.to_string()),
        ]);
    }
    vars
}

/// Whether a key is of the form [`key_of`] gives: a read-back leaves out
/// whatever else a store holds.
pub fn is_workload_key(key: &str) -> bool {
    key.strip_prefix('k').is_some_and(|digits| digits.len() >= 8 && digits.bytes().all(|b| b.is_ascii_digit()))
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
    /// Sequence numbers handed out: every write was numbered below it.
    pub issued: u64,
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
    // Made before the clock starts: a client may start a process.
    let clients: Vec<Box<dyn Client>> = (0..connections).map(|_| workload.client()).collect();
    let start = Instant::now();
    let end = start + duration;
    let totals: Vec<Counts> = thread::scope(|scope| {
        let workers: Vec<_> = clients
            .into_iter()
            .map(|mut client| {
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
                        let result = client.write(seq, &key, &value);
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
    totals.iter().fold(Counts { issued: next.load(Ordering::Relaxed), ..Counts::default() }, |a, c| Counts {
        issued: a.issued,
        invoked: a.invoked + c.invoked,
        ok: a.ok + c.ok,
        fail: a.fail + c.fail,
        unknown: a.unknown + c.unknown,
    })
}
