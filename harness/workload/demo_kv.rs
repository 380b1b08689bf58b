//! The demo-kv workload adapter.

use std::io::{self, ErrorKind};
use std::net::SocketAddr;
use std::time::Duration;

use super::{Client, Workload, WriteResult};
use crate::demo::protocol;

pub struct DemoKv {
    pub addr: SocketAddr,
    pub timeout: Duration,
}

struct DemoKvClient {
    addr: SocketAddr,
    timeout: Duration,
    conn: Option<protocol::Client>,
}

impl Client for DemoKvClient {
    fn write(&mut self, _seq: u64, key: &str, value: &str) -> WriteResult {
        if self.conn.is_none() {
            match protocol::Client::connect(self.addr, self.timeout) {
                Ok(c) => self.conn = Some(c),
                // Nothing was sent: certainly not applied.
                Err(e) => return WriteResult::Fail(format!("connect: {e}")),
            }
        }
        let conn = self.conn.as_mut().expect("connected above");
        match conn.set(key, value) {
            Ok(()) => WriteResult::Ok,
            Err(e) => {
                self.conn = None;
                match e.kind() {
                    // The server answered, and not OK: it refused the write.
                    ErrorKind::InvalidData => WriteResult::Fail(e.to_string()),
                    // Sent, but no answer: it may have been applied.
                    ErrorKind::WouldBlock | ErrorKind::TimedOut => WriteResult::Unknown("timeout".into()),
                    _ => WriteResult::Unknown(e.to_string()),
                }
            }
        }
    }
}

impl Workload for DemoKv {
    fn client(&self) -> Box<dyn Client> {
        Box::new(DemoKvClient { addr: self.addr, timeout: self.timeout, conn: None })
    }

    fn read_back(&self, _written: u64) -> io::Result<Vec<(String, String)>> {
        protocol::Client::connect(self.addr, Duration::from_secs(10))?.scan()
    }
}
