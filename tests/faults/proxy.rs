//! The fault proxy on its own, against small servers whose behaviour is
//! known: each fault's effect is measured on live connections.

use crate::common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use crashlab::proxy::{Direction, Proxy};

/// An echo server on loopback; returns its address.
fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            thread::spawn(move || {
                let mut stream = stream;
                let mut buf = [0u8; 16 * 1024];
                while let Ok(n) = stream.read(&mut buf) {
                    if n == 0 || stream.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// A server that sends `bytes` bytes to each connection, then closes.
fn source_server(bytes: usize) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            thread::spawn(move || {
                let mut stream = stream;
                let _ = stream.write_all(&vec![7u8; bytes]);
            });
        }
    });
    addr
}

fn connect(proxy: &Proxy) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", proxy.port())).unwrap();
    s.set_nodelay(true).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// One 64-byte round trip, in milliseconds.
fn round_trip(s: &mut TcpStream) -> f64 {
    let start = Instant::now();
    s.write_all(&[1u8; 64]).unwrap();
    let mut buf = [0u8; 64];
    s.read_exact(&mut buf).unwrap();
    start.elapsed().as_secs_f64() * 1000.0
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[test]
fn latency_adds_its_delay_to_an_open_connection_and_leaves_with_the_heal() {
    let _serial = common::serial();
    let proxy = Proxy::start(echo_server()).unwrap();
    let mut s = connect(&proxy);
    let before = median((0..20).map(|_| round_trip(&mut s)).collect());
    proxy.update(|b| b.each(Direction::Down, |t| t.latency = Some((Duration::from_millis(100), Duration::ZERO))));
    let during = median((0..5).map(|_| round_trip(&mut s)).collect());
    proxy.update(|b| b.each(Direction::Down, |t| t.latency = None));
    let after = median((0..20).map(|_| round_trip(&mut s)).collect());
    assert!((during - before - 100.0).abs() <= 10.0, "before {before:.2} ms, during {during:.2} ms");
    assert!((after - before).abs() < 5.0, "before {before:.2} ms, after {after:.2} ms");
}

#[test]
fn bandwidth_paces_a_transfer() {
    let _serial = common::serial();
    // 200 KiB at 100 KiB/s: 2 s.
    let proxy = Proxy::start(source_server(200 * 1024)).unwrap();
    proxy.update(|b| b.each(Direction::Down, |t| t.bandwidth = Some(100 * 1024)));
    let mut s = connect(&proxy);
    let start = Instant::now();
    let mut got = Vec::new();
    s.read_to_end(&mut got).unwrap();
    let took = start.elapsed().as_secs_f64();
    assert_eq!(got.len(), 200 * 1024);
    assert!((1.8..=2.2).contains(&took), "200 KiB at 100 KiB/s took {took:.3} s");
}

#[test]
fn a_blackhole_stalls_open_connections_until_healed_and_loses_nothing() {
    let proxy = Proxy::start(echo_server()).unwrap();
    let mut s = connect(&proxy);
    round_trip(&mut s);
    proxy.update(|b| b.each(Direction::Both, |t| t.blackhole = true));
    s.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    s.write_all(b"held").unwrap();
    let mut buf = [0u8; 4];
    let stalled = s.read_exact(&mut buf).unwrap_err();
    assert!(matches!(stalled.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut), "{stalled}");
    let healed_at = Instant::now();
    proxy.update(|b| b.each(Direction::Both, |t| t.blackhole = false));
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    s.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"held", "what waited in the blackhole arrives after the heal");
    assert!(healed_at.elapsed() < Duration::from_millis(100));
}

#[test]
fn reset_breaks_open_connections_and_refuse_turns_new_ones_away() {
    let proxy = Proxy::start(echo_server()).unwrap();
    let mut s = connect(&proxy);
    round_trip(&mut s);
    proxy.update(|b| b.resets += 1);
    thread::sleep(Duration::from_millis(50));
    let mut buf = [0u8; 1];
    let broken = s.write_all(&[1]).and_then(|()| s.read_exact(&mut buf)).unwrap_err();
    assert!(
        matches!(broken.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe),
        "an open connection is reset: {broken:?}"
    );
    // New connections still work after a reset.
    round_trip(&mut connect(&proxy));

    proxy.update(|b| b.refuse = true);
    thread::sleep(Duration::from_millis(50));
    let refused = TcpStream::connect(("127.0.0.1", proxy.port())).unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::ConnectionRefused);
    proxy.update(|b| b.refuse = false);
    thread::sleep(Duration::from_millis(50));
    round_trip(&mut connect(&proxy));
}

#[test]
fn limit_data_closes_after_the_limit_and_timeout_after_the_delay() {
    let _serial = common::serial();
    let proxy = Proxy::start(source_server(10_000)).unwrap();
    proxy.update(|b| b.each(Direction::Down, |t| t.limit_data = Some(1000)));
    let mut got = Vec::new();
    connect(&proxy).read_to_end(&mut got).unwrap();
    assert_eq!(got.len(), 1000);

    let proxy = Proxy::start(echo_server()).unwrap();
    let mut s = connect(&proxy);
    round_trip(&mut s);
    let start = Instant::now();
    proxy.update(|b| b.each(Direction::Both, |t| t.timeout = Some(Duration::from_millis(300))));
    s.write_all(b"x").unwrap();
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    let took = start.elapsed().as_secs_f64() * 1000.0;
    assert!(rest.is_empty(), "nothing is forwarded during a timeout");
    assert!((280.0..600.0).contains(&took), "closed after {took:.0} ms");
}

#[test]
fn slice_and_slow_close_delay_as_configured() {
    let _serial = common::serial();
    // 1000 bytes in 100-byte slices 20 ms apart: 9 gaps, ~180 ms.
    let proxy = Proxy::start(source_server(1000)).unwrap();
    proxy.update(|b| {
        b.each(Direction::Down, |t| {
            t.slice = Some((100, Duration::from_millis(20)));
            t.slow_close = Some(Duration::from_millis(300));
        })
    });
    let mut s = connect(&proxy);
    let start = Instant::now();
    let mut buf = [0u8; 1000];
    s.read_exact(&mut buf).unwrap();
    let sliced = start.elapsed().as_secs_f64() * 1000.0;
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    let closed = start.elapsed().as_secs_f64() * 1000.0;
    assert!((170.0..400.0).contains(&sliced), "sliced transfer took {sliced:.0} ms");
    assert!(closed - sliced >= 280.0, "the close came {:.0} ms after the data", closed - sliced);
}
