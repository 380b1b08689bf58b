//! How much full history recording costs the workload: the same closed-loop
//! client drives demo-kv on loopback with and without a recorder, alternating,
//! and the ratio of throughputs is printed.
//!
//!     cargo bench --bench workload_throughput
//!
//! demo-kv runs with `--fsync never` so that the disk does not hide the
//! harness's own cost.

mod common;

use std::time::{Duration, Instant};

use common::DemoKvServer;
use crashlab::cancel::Cancel;
use crashlab::history::Recorder;
use crashlab::workload::{drive, Pace};

fn main() {
    let server = DemoKvServer::start();
    let workload = &server.workload;
    let cancel = Cancel::new();
    let duration = Duration::from_secs(3);
    let (mut with, mut without) = (Vec::new(), Vec::new());
    for round in 0..3 {
        for record in [true, false] {
            // Spooled to disk as a run's trial is.
            let dir = tempfile::tempdir().unwrap();
            let recorder =
                Recorder::spooled(round, dir.path().join("history.partial.jsonl"), dir.path().join("history.jsonl"))
                    .unwrap();
            let start = Instant::now();
            recorder.set_origin(start);
            let counts = drive(workload, Pace::AsFastAsPossible, duration, 8, record.then_some(&recorder), &cancel);
            let rate = counts.ok as f64 / start.elapsed().as_secs_f64();
            let history = recorder.finish(start).unwrap();
            let events = history.events.len() + history.ops.len() * 2;
            println!(
                "round {round}: {:<18} {rate:>9.0} acked writes/s ({events} events)",
                if record { "with recording" } else { "without recording" }
            );
            if record {
                with.push(rate)
            } else {
                without.push(rate)
            }
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (w, wo) = (median(&mut with), median(&mut without));
    println!("median: with {w:.0}/s, without {wo:.0}/s, ratio {:.3}", w / wo);
    println!("\n| demo-kv, 8 connections, closed loop | acked writes/s | with / without |");
    println!("|---|---|---|");
    println!("| without recording | {wo:.0} | |");
    println!("| with every op recorded | {w:.0} | {:.3} |", w / wo);
}
