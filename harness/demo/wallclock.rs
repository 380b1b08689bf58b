//! `crashlab wallclock`: a fixture of the clock fault's tests that runs in
//! any image holding this binary. Every 20 ms it prints how far its wall
//! clock as libc tells it (where libfaketime acts) is from the real one,
//! read by a raw `clock_gettime` syscall (which libfaketime cannot reach):
//! `skew 3600.000`. It serves TCP on its port so that a probe sees it up.

use std::io::Write;
use std::net::{IpAddr, TcpListener};
use std::time::Duration;

use nix::libc;
use nix::sys::signal::{SigSet, Signal};

fn seconds(ts: &libc::timespec) -> f64 {
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

/// The wall clock through libc.
fn libc_time() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid timespec for the call to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    seconds(&ts)
}

/// The wall clock from the kernel, past any preloaded library.
fn real_time() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: the raw syscall fills `ts`, a valid timespec.
    unsafe { libc::syscall(libc::SYS_clock_gettime, libc::CLOCK_REALTIME, &mut ts as *mut libc::timespec) };
    seconds(&ts)
}

pub fn wallclock_main(host: IpAddr, port: u16) -> i32 {
    // SIGTERM ends it: as a container's first process it would otherwise
    // ignore it, and the stop would wait for the engine's SIGKILL.
    let mut stop = SigSet::empty();
    stop.add(Signal::SIGTERM);
    stop.add(Signal::SIGINT);
    if stop.thread_block().is_ok() {
        std::thread::spawn(move || {
            let _ = stop.wait();
            std::process::exit(0);
        });
    }
    let listener = match TcpListener::bind((host, port)) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("wallclock: cannot listen on {host}:{port}: {e}");
            return 1;
        }
    };
    std::thread::spawn(move || listener.incoming().for_each(drop));
    let mut out = std::io::stdout();
    loop {
        if writeln!(out, "skew {:.3}", libc_time() - real_time()).and_then(|()| out.flush()).is_err() {
            return 0;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
