//! Figures for the storage faults, each against a baseline measured in the
//! same run:
//!
//! 1. demo-kv write latency (one client, closed loop) with its data dir on
//!    the lose-unsynced FUSE layer, against the bare file system;
//! 2. write + fdatasync, and plain write, throughput of 4 KiB records
//!    through the layer, and through the layer with an `io` fault armed
//!    that matches no operation (every operation pays its check), against
//!    the bare file system;
//! 3. time to corrupt and to restore a 1 GiB file (one bit flipped, 1 MiB
//!    zeroed), against copying the whole file.
//!
//!     cargo bench --bench storage_faults
//!
//! Needs FUSE (root and /dev/fuse) for 1 and 2; 3 runs anywhere.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crashlab::demo::protocol::Client;
use crashlab::fault::corrupt::corrupt_file;
use crashlab::fault::io_rules::Armed;
use crashlab::fault::layer::StorageLayer;
use crashlab::journal::Journal;
use crashlab::scenario::{CorruptMode, IoAction, IoPlan, IoTrigger, Offset};
use rand::SeedableRng;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// SET latencies (ms) of one closed-loop client against demo-kv on `dir`.
fn demo_kv_latencies(dir: &Path, fsync: &str, ops: usize) -> Vec<f64> {
    let port = crashlab::targets::free_port().unwrap();
    let mut server = Command::new(env!("CARGO_BIN_EXE_crashlab"))
        .args(["demo-kv", "--fsync", fsync, "--port", &port.to_string(), "--data-dir"])
        .arg(dir)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(server.stdout.take().unwrap()).lines();
    assert!(lines.any(|l| l.unwrap().starts_with("ready")));
    let mut client = Client::connect(SocketAddr::from(([127, 0, 0, 1], port)), Duration::from_secs(5)).unwrap();
    let mut latencies = Vec::with_capacity(ops);
    for i in 0..ops {
        let key = crashlab::workload::key_of(i as u64);
        let value = crashlab::workload::value_of(&key, i as u64);
        let start = Instant::now();
        client.set(&key, &value).unwrap();
        latencies.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(server.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    server.wait().unwrap();
    latencies.sort_by(f64::total_cmp);
    latencies
}

/// 4 KiB write + fdatasync per op, for `duration`; returns ops/s.
fn fsync_rate(dir: &Path, duration: Duration) -> f64 {
    let path = dir.join("fsync.bench");
    let file = OpenOptions::new().create(true).truncate(true).write(true).open(&path).unwrap();
    let block = vec![0x5a; 4096];
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < duration {
        file.write_all_at(&block, n * 4096).unwrap();
        file.sync_data().unwrap();
        n += 1;
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    drop(file);
    std::fs::remove_file(path).unwrap();
    rate
}

/// Ops/s of a loop of file operations in a directory, for a duration.
type Rate = fn(&Path, Duration) -> f64;

/// 4 KiB writes (no sync) for `duration`, over a 64 MiB file; returns ops/s.
fn write_rate(dir: &Path, duration: Duration) -> f64 {
    let path = dir.join("write.bench");
    let file = OpenOptions::new().create(true).truncate(true).write(true).open(&path).unwrap();
    let block = vec![0x5a; 4096];
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < duration {
        file.write_all_at(&block, (n % 16384) * 4096).unwrap();
        n += 1;
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    drop(file);
    std::fs::remove_file(path).unwrap();
    rate
}

fn with_layer<T>(f: impl FnOnce(&Path) -> T) -> T {
    with_layer_armed(false, f)
}

/// Through the layer; with `armed`, an `io` fault is in that fails EIO on
/// every operation of a path that never comes: the cost of the check alone.
fn with_layer_armed<T>(armed: bool, f: impl FnOnce(&Path) -> T) -> T {
    let root = tempfile::tempdir_in(".").unwrap();
    let dir = root.path().join("data");
    std::fs::create_dir(&dir).unwrap();
    let journal = Arc::new(Journal::create(root.path()).unwrap());
    let layer = StorageLayer::mount(&dir.canonicalize().unwrap(), 0, "bench", journal).unwrap();
    if armed {
        let plan = IoPlan {
            path: "never/**".into(),
            ops: vec![],
            action: IoAction::Errno(nix::libc::EIO),
            trigger: IoTrigger::Always,
            duration: None,
        };
        let rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        layer.rules().arm(Arc::new(Armed::new(&plan, rng, 0)));
    }
    let out = f(&dir);
    layer.unmount().expect("the layer unmounts");
    out
}

fn bare<T>(f: impl FnOnce(&Path) -> T) -> T {
    let root = tempfile::tempdir_in(".").unwrap();
    f(root.path())
}

/// Rows of the Markdown table printed at the end.
type Rows = Vec<String>;

fn layer_figures(rows: &mut Rows) {
    for fsync in ["always", "never"] {
        let (mut bare_p50, mut bare_p99, mut fuse_p50, mut fuse_p99) = (vec![], vec![], vec![], vec![]);
        for round in 0..3 {
            let b = bare(|d| demo_kv_latencies(d, fsync, 5000));
            let l = with_layer(|d| demo_kv_latencies(d, fsync, 5000));
            println!(
                "demo-kv --fsync {fsync:<6} round {round}: bare p50 {:.3} p99 {:.3} ms | FUSE p50 {:.3} p99 {:.3} ms",
                percentile(&b, 0.5),
                percentile(&b, 0.99),
                percentile(&l, 0.5),
                percentile(&l, 0.99)
            );
            bare_p50.push(percentile(&b, 0.5));
            bare_p99.push(percentile(&b, 0.99));
            fuse_p50.push(percentile(&l, 0.5));
            fuse_p99.push(percentile(&l, 0.99));
        }
        let (b50, b99, f50, f99) = (median(bare_p50), median(bare_p99), median(fuse_p50), median(fuse_p99));
        println!(
            "demo-kv --fsync {fsync:<6} median: p50 {b50:.3} -> {f50:.3} ms (+{:.3}, x{:.2}), p99 {b99:.3} -> {f99:.3} ms (+{:.3}, x{:.2})",
            f50 - b50,
            f50 / b50,
            f99 - b99,
            f99 / b99
        );
        rows.push(format!("| demo-kv write p50, --fsync {fsync} | {b50:.3} ms | {f50:.3} ms | {:.2} |", f50 / b50));
        rows.push(format!("| demo-kv write p99, --fsync {fsync} | {b99:.3} ms | {f99:.3} ms | {:.2} |", f99 / b99));
    }
    let rates: [(&str, Rate); 2] = [("write+fdatasync", fsync_rate), ("write", write_rate)];
    for (name, rate) in rates {
        let (mut bare_rates, mut fuse_rates, mut armed_rates) = (vec![], vec![], vec![]);
        for round in 0..3 {
            let b = bare(|d| rate(d, Duration::from_secs(2)));
            let l = with_layer(|d| rate(d, Duration::from_secs(2)));
            let a = with_layer_armed(true, |d| rate(d, Duration::from_secs(2)));
            println!("{name} 4 KiB round {round}: bare {b:.0}/s, FUSE {l:.0}/s, FUSE + io fault armed {a:.0}/s");
            bare_rates.push(b);
            fuse_rates.push(l);
            armed_rates.push(a);
        }
        let (b, l, a) = (median(bare_rates), median(fuse_rates), median(armed_rates));
        println!(
            "{name} 4 KiB median: bare {b:.0}/s, FUSE {l:.0}/s (x{:.3} of bare), armed {a:.0}/s (x{:.3} of bare, \
             x{:.3} of FUSE)",
            l / b,
            a / b,
            a / l
        );
        rows.push(format!("| {name} 4 KiB, per second | {b:.0} | {l:.0} | {:.3} |", l / b));
        rows.push(format!("| {name} 4 KiB, per second, io fault armed | {b:.0} | {a:.0} | {:.3} |", a / b));
    }
}

fn big_file_figures(rows: &mut Rows) {
    let root = tempfile::tempdir_in(".").unwrap();
    let dir = root.path().canonicalize().unwrap();
    let path = dir.join("big.bin");
    let mut file = File::create(&path).unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let mut chunk = vec![0u8; 1 << 20];
    for _ in 0..1024 {
        rand::RngCore::fill_bytes(&mut rng, &mut chunk);
        file.write_all(&chunk).unwrap();
    }
    file.sync_all().unwrap();
    drop(file);
    let checksum = || crc32fast::hash(&std::fs::read(&path).unwrap());
    let original = checksum();

    let start = Instant::now();
    let copy = root.path().join("copy.bin");
    std::fs::copy(&path, &copy).unwrap();
    File::open(&copy).unwrap().sync_all().unwrap();
    let copy_ms = start.elapsed().as_secs_f64() * 1000.0;
    std::fs::remove_file(&copy).unwrap();
    println!("1 GiB: full copy + sync (baseline) {copy_ms:.1} ms");

    let modes = [
        ("bitflip 1 bit", CorruptMode::Bitflip { bits: 1, offset: Offset::Seeded }),
        ("zero 1 MiB", CorruptMode::Zero { offset: Offset::Seeded, length: 1 << 20 }),
    ];
    for (name, mode) in modes {
        let (mut corrupts, mut restores) = (vec![], vec![]);
        for round in 0..3 {
            let saved = root.path().join(format!("saved-{round}"));
            let start = Instant::now();
            let (record, what) = corrupt_file(&dir, &path, mode, &saved, &mut rng, |_| Ok(())).unwrap();
            let corrupt_ms = start.elapsed().as_secs_f64() * 1000.0;
            assert_ne!(checksum(), original, "{what}");
            let start = Instant::now();
            record.unwrap().restore().unwrap();
            let restore_ms = start.elapsed().as_secs_f64() * 1000.0;
            assert_eq!(checksum(), original, "restored");
            println!(
                "1 GiB {name:<13} round {round}: corrupt {corrupt_ms:.2} ms, restore {restore_ms:.2} ms \
                 ({:.4} and {:.4} of a full copy) [{what}]",
                corrupt_ms / copy_ms,
                restore_ms / copy_ms
            );
            corrupts.push(corrupt_ms);
            restores.push(restore_ms);
        }
        let (c, r) = (median(corrupts), median(restores));
        rows.push(format!(
            "| 1 GiB file, {name}: corrupt | {copy_ms:.1} ms (a copy) | {c:.2} ms | {:.4} |",
            c / copy_ms
        ));
        rows.push(format!(
            "| 1 GiB file, {name}: restore | {copy_ms:.1} ms (a copy) | {r:.2} ms | {:.4} |",
            r / copy_ms
        ));
    }
}

fn main() {
    let mut rows = Rows::new();
    let root = unsafe { nix::libc::geteuid() } == 0;
    if Path::new("/dev/fuse").exists() && root {
        layer_figures(&mut rows);
    } else {
        println!("FUSE figures skipped: they need /dev/fuse and root");
    }
    big_file_figures(&mut rows);
    println!("\n| figure | baseline (bare file system, or a full copy) | crashlab | ratio |");
    println!("|---|---|---|---|");
    for row in rows {
        println!("{row}");
    }
}
