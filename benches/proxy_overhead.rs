//! What the fault proxy costs when no fault is active, side by side in one
//! run on loopback: straight to an echo server, through the crashlab proxy,
//! and through haproxy (`mode tcp`, Debian's package) when it is installed.
//!
//!     cargo bench --bench proxy_overhead
//!
//! The whole process, haproxy included, is pinned to CPU 0: unpinned
//! latency on these small VMs is bimodal and says nothing. Figures: 64-byte
//! request/response round trips on one connection (p50, p99) and the
//! streaming throughput of one connection into a sink.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crashlab::proxy::Proxy;

const ROUND_TRIPS: usize = 20_000;
const STREAM_FOR: Duration = Duration::from_secs(2);

fn pin_to_cpu0() {
    // SAFETY: a plain syscall on a zeroed cpu_set_t for this process.
    unsafe {
        let mut set: nix::libc::cpu_set_t = std::mem::zeroed();
        nix::libc::CPU_SET(0, &mut set);
        assert_eq!(nix::libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set), 0, "pin to CPU 0");
    }
}

/// Echo server: 64-byte messages back. Sink server: reads and drops.
fn server(echo: bool) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            thread::spawn(move || {
                let mut s = stream;
                s.set_nodelay(true).unwrap();
                let mut buf = vec![0u8; 256 * 1024];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 || (echo && s.write_all(&buf[..n]).is_err()) {
                        return;
                    }
                }
            });
        }
    });
    addr
}

fn round_trips(addr: SocketAddr) -> (f64, f64) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_nodelay(true).unwrap();
    let msg = [42u8; 64];
    let mut buf = [0u8; 64];
    for _ in 0..1000 {
        s.write_all(&msg).unwrap();
        s.read_exact(&mut buf).unwrap();
    }
    let mut us: Vec<f64> = (0..ROUND_TRIPS)
        .map(|_| {
            let start = Instant::now();
            s.write_all(&msg).unwrap();
            s.read_exact(&mut buf).unwrap();
            start.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    us.sort_by(f64::total_cmp);
    (us[us.len() / 2], us[us.len() * 99 / 100])
}

fn stream(addr: SocketAddr) -> f64 {
    let mut s = TcpStream::connect(addr).unwrap();
    let chunk = vec![7u8; 128 * 1024];
    let start = Instant::now();
    let mut sent = 0u64;
    while start.elapsed() < STREAM_FOR {
        s.write_all(&chunk).unwrap();
        sent += chunk.len() as u64;
    }
    sent as f64 / start.elapsed().as_secs_f64() / 1e6
}

fn haproxy(backend: SocketAddr, dir: &std::path::Path) -> Option<(Child, SocketAddr)> {
    let port = crashlab::targets::free_port().ok()?;
    let config = dir.join(format!("haproxy-{}.cfg", backend.port()));
    std::fs::write(
        &config,
        format!(
            "global\n  nbthread 1\n  maxconn 100\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 60s\n  \
             timeout server 60s\nfrontend f\n  bind 127.0.0.1:{port}\n  default_backend b\nbackend b\n  server s \
             {backend}\n"
        ),
    )
    .ok()?;
    let child = Command::new("haproxy")
        .arg("-db")
        .arg("-f")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    for _ in 0..100 {
        if TcpStream::connect(addr).is_ok() {
            return Some((child, addr));
        }
        thread::sleep(Duration::from_millis(20));
    }
    None
}

fn main() {
    pin_to_cpu0();
    let tmp = tempfile::tempdir().unwrap();
    let (echo, sink) = (server(true), server(false));
    let (echo_proxy, sink_proxy) = (Proxy::start(echo).unwrap(), Proxy::start(sink).unwrap());
    let port = |p: &Proxy| SocketAddr::from(([127, 0, 0, 1], p.port()));
    let mut paths: Vec<(&str, SocketAddr, SocketAddr)> =
        vec![("direct", echo, sink), ("crashlab proxy", port(&echo_proxy), port(&sink_proxy))];
    let mut children = Vec::new();
    match (haproxy(echo, tmp.path()), haproxy(sink, tmp.path())) {
        (Some((a, echo_h)), Some((b, sink_h))) => {
            children.extend([a, b]);
            paths.push(("haproxy", echo_h, sink_h));
        }
        _ => println!("haproxy not found or did not start: its column is skipped"),
    }
    let mut results = Vec::new();
    for round in 0..3 {
        for (name, echo, sink) in &paths {
            let (p50, p99) = round_trips(*echo);
            let mbps = stream(*sink);
            println!("round {round} {name:<15} rtt p50 {p50:>6.1} us  p99 {p99:>6.1} us  stream {mbps:>7.0} MB/s");
            results.push((*name, p50, p99, mbps));
        }
    }
    let median = |name: &str, f: fn(&(&str, f64, f64, f64)) -> f64| {
        let mut v: Vec<f64> = results.iter().filter(|r| r.0 == name).map(f).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let direct = (median("direct", |r| r.1), median("direct", |r| r.2), median("direct", |r| r.3));
    for (name, ..) in &paths {
        let (p50, p99, mbps) = (median(name, |r| r.1), median(name, |r| r.2), median(name, |r| r.3));
        println!(
            "median {name:<15} rtt p50 {p50:>6.1} us (+{:>5.1})  p99 {p99:>6.1} us (+{:>5.1})  stream {mbps:>7.0} MB/s ({:.0}% of direct)",
            p50 - direct.0,
            p99 - direct.1,
            100.0 * mbps / direct.2
        );
    }
    println!("\n| path | round trip p50 | p99 | one-connection stream | stream / direct |");
    println!("|---|---|---|---|---|");
    for (name, ..) in &paths {
        let (p50, p99, mbps) = (median(name, |r| r.1), median(name, |r| r.2), median(name, |r| r.3));
        println!("| {name} | {p50:.1} us | {p99:.1} us | {mbps:.0} MB/s | {:.2} |", mbps / direct.2);
    }
    for mut child in children {
        let _ = child.kill();
        let _ = child.wait();
    }
}
