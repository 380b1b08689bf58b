//! The Redis workload adapter: `SET key value` through the `redis` crate,
//! and a read-back of every workload key by `SCAN` + `MGET`.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use redis::{Commands, RedisError};

use super::{Client, Workload, WriteResult};

pub struct Redis {
    pub addr: SocketAddr,
    pub timeout: Duration,
}

impl Redis {
    fn connect(&self, timeout: Duration) -> redis::RedisResult<redis::Connection> {
        let client = redis::Client::open(format!("redis://{}/", self.addr))?;
        let conn = client.get_connection_with_timeout(timeout)?;
        conn.set_read_timeout(Some(timeout))?;
        conn.set_write_timeout(Some(timeout))?;
        Ok(conn)
    }
}

struct RedisClient {
    addr: SocketAddr,
    timeout: Duration,
    conn: Option<redis::Connection>,
}

/// Whether the server answered with an error reply (`-ERR`, `-LOADING`,
/// `-READONLY`, `-NOREPLICAS`...: the write was refused), as opposed to
/// anything else after the command was sent (a dropped connection, a
/// timeout, an answer that did not parse), when it may have been applied.
fn refused(e: &RedisError) -> bool {
    e.code().is_some()
}

impl Client for RedisClient {
    fn write(&mut self, _seq: u64, key: &str, value: &str) -> WriteResult {
        if self.conn.is_none() {
            match (Redis { addr: self.addr, timeout: self.timeout }).connect(self.timeout) {
                Ok(c) => self.conn = Some(c),
                // Nothing was sent: certainly not applied.
                Err(e) => return WriteResult::Fail(format!("connect: {e}")),
            }
        }
        let conn = self.conn.as_mut().expect("connected above");
        match conn.set::<_, _, ()>(key, value) {
            Ok(()) => WriteResult::Ok,
            // LOADING, MISCONF, READONLY...: the server said no.
            Err(e) if refused(&e) => WriteResult::Fail(e.to_string()),
            Err(e) => {
                self.conn = None;
                WriteResult::Unknown(e.to_string())
            }
        }
    }
}

impl Workload for Redis {
    fn client(&self) -> Box<dyn Client> {
        Box::new(RedisClient { addr: self.addr, timeout: self.timeout, conn: None })
    }

    fn read_back(&self, _written: u64) -> io::Result<Vec<(String, String)>> {
        let mut conn = self.connect(Duration::from_secs(10)).map_err(io::Error::other)?;
        // The workload's keys are `k` and eight digits (workload::key_of).
        let keys: Vec<String> = conn.scan_match::<_, String>("k????????").map_err(io::Error::other)?.collect();
        let mut items = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(500) {
            let values: Vec<Option<String>> =
                redis::cmd("MGET").arg(chunk).query(&mut conn).map_err(io::Error::other)?;
            items.extend(chunk.iter().cloned().zip(values).filter_map(|(k, v)| v.map(|v| (k, v))));
        }
        Ok(items)
    }
}
