//! The fault proxy: a TCP proxy put in front of a target's port, whose
//! behaviour changes at run time, per direction, for new and existing
//! connections alike.
//!
//! Each proxy is an accept loop and, per connection, one task that pumps
//! both directions (see [`pump`]). All of them watch one [`Behavior`]; a
//! fault changes it with [`Proxy::update`] and every pump re-reads it at
//! once, even while blocked in a read. The proxies of a run share one small
//! tokio runtime; the rest of the harness stays on threads and talks to them
//! through the watch channel, which is synchronous on the sending side.

mod pump;

use std::io;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;
use tokio::sync::watch;

pub use crate::scenario::Direction;

/// What happens to the data of one direction.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Toxics {
    /// Nothing is read, so nothing is forwarded: a silent partition. What
    /// was sent waits in the kernel's buffers and flows after the heal, as
    /// TCP's retransmissions would deliver it.
    pub blackhole: bool,
    /// Each chunk is held `delay ± jitter` before it is forwarded.
    pub latency: Option<(Duration, Duration)>,
    /// Bytes per second.
    pub bandwidth: Option<u64>,
    /// Chunks cut into pieces of `size` bytes, `delay` apart.
    pub slice: Option<(usize, Duration)>,
    /// The connection is closed after this many more bytes.
    pub limit_data: Option<u64>,
    /// Nothing is forwarded, and the connection is closed after this long.
    pub timeout: Option<Duration>,
    /// The close (FIN) is passed on this much later.
    pub slow_close: Option<Duration>,
}

/// The whole behaviour of a proxy.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Behavior {
    pub up: Toxics,
    pub down: Toxics,
    /// New connections are refused (the listener is closed).
    pub refuse: bool,
    /// Bumped to reset (RST) every open connection.
    pub resets: u64,
    /// Bumped on every change, so that counters (limit-data) start afresh.
    pub generation: u64,
    pub stopped: bool,
}

impl Behavior {
    pub fn toxics(&self, direction: Direction) -> &Toxics {
        match direction {
            Direction::Down => &self.down,
            _ => &self.up,
        }
    }

    /// Applies `f` to the toxics of each direction `direction` covers.
    pub fn each(&mut self, direction: Direction, mut f: impl FnMut(&mut Toxics)) {
        if direction.includes(Direction::Up) {
            f(&mut self.up);
        }
        if direction.includes(Direction::Down) {
            f(&mut self.down);
        }
    }
}

/// The runtime the proxies (and the container engine client) run on.
pub(crate) fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("crashlab-io")
            .enable_all()
            .build()
            .expect("the I/O runtime starts")
    })
}

/// A running proxy; stops when dropped.
pub struct Proxy {
    port: u16,
    behavior: watch::Sender<Behavior>,
}

impl Proxy {
    /// Listens on a free port of 127.0.0.1 and forwards to `upstream`.
    pub fn start(upstream: SocketAddr) -> io::Result<Proxy> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let (behavior, watcher) = watch::channel(Behavior::default());
        let rt = runtime();
        let listener = {
            let _guard = rt.enter();
            TcpListener::from_std(listener)?
        };
        rt.spawn(accept_loop(listener, port, upstream, watcher));
        Ok(Proxy { port, behavior })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Changes the behaviour; every connection sees it at once.
    pub fn update(&self, f: impl FnOnce(&mut Behavior)) {
        self.behavior.send_modify(|b| {
            f(b);
            b.generation += 1;
        });
    }

    /// Closes the listener and every connection.
    pub fn stop(&self) {
        self.update(|b| b.stopped = true);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn accept_loop(listener: TcpListener, port: u16, upstream: SocketAddr, mut watcher: watch::Receiver<Behavior>) {
    let mut listener = Some(listener);
    loop {
        let (refuse, stopped) = {
            let b = watcher.borrow_and_update();
            (b.refuse, b.stopped)
        };
        if stopped {
            return;
        }
        if refuse {
            // Closed, the port answers a connect with RST: refused.
            listener = None;
        } else if listener.is_none() {
            match TcpListener::bind(("127.0.0.1", port)).await {
                Ok(l) => listener = Some(l),
                Err(e) => {
                    eprintln!("crashlab: proxy cannot listen on 127.0.0.1:{port} again: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            }
        }
        let Some(l) = &listener else {
            if watcher.changed().await.is_err() {
                return;
            }
            continue;
        };
        tokio::select! {
            accepted = l.accept() => {
                if let Ok((client, _)) = accepted {
                    tokio::spawn(connect(client, upstream, watcher.clone()));
                }
            }
            changed = watcher.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
    }
}

/// Connects a client to the upstream and pumps both ways until both close.
async fn connect(client: TcpStream, upstream: SocketAddr, watcher: watch::Receiver<Behavior>) {
    let server = match tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(upstream)).await {
        Ok(Ok(s)) => s,
        // The target is down: the client sees its connection closed, as
        // it would see a refusal.
        _ => return,
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    pump::connection(client, server, watcher).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{ErrorKind, Read, Write};

    fn echo_server() -> SocketAddr {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for mut stream in listener.incoming().flatten() {
                std::thread::spawn(move || {
                    let mut buf = [0u8; 1024];
                    while let Ok(n @ 1..) = stream.read(&mut buf) {
                        if stream.write_all(&buf[..n]).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    /// A pump woken at once by a blackhole and by data sent just after it
    /// (the runtime's thread, parked, is not yet running when the data
    /// arrives) must hold the data: CI saw an op sent inside a blackhole
    /// answered. Before the fix, the pump picked the read or the change at
    /// random, and this failed within the first few of its 100 tries.
    #[test]
    fn data_sent_after_a_blackhole_is_held_even_when_the_pump_wakes_late() {
        let proxy = Proxy::start(echo_server()).unwrap();
        for _ in 0..100 {
            let mut s = std::net::TcpStream::connect(("127.0.0.1", proxy.port())).unwrap();
            s.set_nodelay(true).unwrap();
            let mut buf = [0u8; 8];
            s.write_all(b"before").unwrap();
            s.read_exact(&mut buf[..6]).unwrap();
            std::thread::sleep(Duration::from_millis(2));
            proxy.update(|b| b.each(Direction::Up, |t| t.blackhole = true));
            s.write_all(b"inside").unwrap();
            s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
            let answered = s.read(&mut buf);
            s.set_read_timeout(None).unwrap();
            assert!(
                matches!(&answered, Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)),
                "data sent inside the blackhole was forwarded: {answered:?}"
            );
            proxy.update(|b| b.each(Direction::Up, |t| t.blackhole = false));
            s.read_exact(&mut buf[..6]).unwrap();
            assert_eq!(&buf[..6], b"inside", "held, then delivered at the heal");
        }
    }
}
