//! The PostgreSQL workload adapter, written as an event sequencer: each
//! write is one transaction that takes the next sequence number of its
//! stream from a counter row and inserts the event under it. After any
//! recovery, a correct database has no gap in any stream's sequence and each
//! counter equals its stream's highest sequence number (the invariants of
//! the sequencer pack, checked by SQL in its scenarios).

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use postgres::{Client as PgClient, NoTls};

use super::{Client, Workload, WriteResult};

/// Events spread over this many streams, by sequence number of the op.
const STREAMS: u64 = 4;

/// `events` first: in a fresh cluster it gets the first relation file number,
/// 16384, which the page-corruption scenario damages.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events (
    stream TEXT NOT NULL,
    sequence_number BIGINT NOT NULL,
    key TEXT NOT NULL UNIQUE,
    value TEXT NOT NULL,
    PRIMARY KEY (stream, sequence_number)
);
CREATE TABLE IF NOT EXISTS stream_counters (stream TEXT PRIMARY KEY, last_seq BIGINT NOT NULL);
INSERT INTO stream_counters (stream, last_seq)
    SELECT 's' || n, 0 FROM generate_series(0, 3) AS n ON CONFLICT DO NOTHING;
";

pub struct Postgres {
    pub addr: SocketAddr,
    pub timeout: Duration,
    /// Whether the schema exists; the first client to connect creates it.
    schema: Arc<Mutex<bool>>,
}

impl Postgres {
    pub fn new(addr: SocketAddr, timeout: Duration) -> Postgres {
        Postgres { addr, timeout, schema: Arc::new(Mutex::new(false)) }
    }
}

/// The server's own message when there is one ("db error" alone says
/// nothing), else the client's.
fn message(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.severity(), db.message()),
        None => e.to_string(),
    }
}

fn connect(addr: SocketAddr, timeout: Duration) -> Result<PgClient, postgres::Error> {
    let mut config = postgres::Config::new();
    config
        .host(&addr.ip().to_string())
        .port(addr.port())
        .user("postgres")
        .dbname("postgres")
        .connect_timeout(timeout)
        // Bounds every statement, so that a stuck server is an unknown outcome.
        .options(&format!("-c statement_timeout={}", timeout.as_millis()));
    config.connect(NoTls)
}

/// The outcome table of this adapter (README, "RTO and RPO"):
///
/// | what happened | outcome |
/// |---|---|
/// | COMMIT answered | applied |
/// | any error before COMMIT was sent (the server rolls the transaction back) | not applied |
/// | an `ERROR` answer to COMMIT (serialization failure, deferred constraint: rolled back) | not applied |
/// | anything else at COMMIT: `FATAL`/`PANIC` (`terminating connection due to unexpected postmaster exit` arrives for commits already durable), a broken connection, a timeout | unknown |
fn outcome(at_commit: bool, e: &postgres::Error) -> WriteResult {
    // The non-localized severity (PostgreSQL 9.6 and later), else the text.
    let refused_at_commit = e.as_db_error().is_some_and(|db| match db.parsed_severity() {
        Some(severity) => severity == postgres::error::Severity::Error,
        None => db.severity() == "ERROR",
    });
    if !at_commit || refused_at_commit {
        WriteResult::Fail(message(e))
    } else {
        WriteResult::Unknown(message(e))
    }
}

struct PostgresClient {
    addr: SocketAddr,
    timeout: Duration,
    schema: Arc<Mutex<bool>>,
    conn: Option<PgClient>,
}

impl PostgresClient {
    fn connected(&mut self) -> Result<&mut PgClient, String> {
        if self.conn.is_none() {
            let mut conn = connect(self.addr, self.timeout).map_err(|e| format!("connect: {}", message(&e)))?;
            let mut ready = self.schema.lock().unwrap();
            if !*ready {
                conn.batch_execute(SCHEMA).map_err(|e| format!("schema: {}", message(&e)))?;
                *ready = true;
            }
            self.conn = Some(conn);
        }
        Ok(self.conn.as_mut().expect("connected above"))
    }
}

/// The op's sequence number, from its key (`k` and eight digits).
fn stream_of(key: &str) -> String {
    let seq: u64 = key.trim_start_matches('k').parse().unwrap_or(0);
    format!("s{}", seq % STREAMS)
}

impl Client for PostgresClient {
    fn write(&mut self, _seq: u64, key: &str, value: &str) -> WriteResult {
        let conn = match self.connected() {
            Ok(conn) => conn,
            // Nothing was sent for this write: certainly not applied.
            Err(e) => return WriteResult::Fail(e),
        };
        let stream = stream_of(key);
        let before_commit = |e| (false, e);
        let result = (|| {
            let mut tx = conn.transaction().map_err(before_commit)?;
            let row = tx
                .query_one(
                    "UPDATE stream_counters SET last_seq = last_seq + 1 WHERE stream = $1 RETURNING last_seq",
                    &[&stream],
                )
                .map_err(before_commit)?;
            let seq: i64 = row.get(0);
            tx.execute(
                "INSERT INTO events (stream, sequence_number, key, value) VALUES ($1, $2, $3, $4)",
                &[&stream, &seq, &key, &value],
            )
            .map_err(before_commit)?;
            tx.commit().map_err(|e| (true, e))
        })();
        match result {
            Ok(()) => WriteResult::Ok,
            Err((at_commit, e)) => {
                self.conn = None;
                outcome(at_commit, &e)
            }
        }
    }
}

impl Workload for Postgres {
    fn client(&self) -> Box<dyn Client> {
        Box::new(PostgresClient {
            addr: self.addr,
            timeout: self.timeout,
            schema: Arc::clone(&self.schema),
            conn: None,
        })
    }

    fn read_back(&self, _written: u64) -> io::Result<Vec<(String, String)>> {
        let failed = |e: postgres::Error| io::Error::other(message(&e));
        let mut conn = connect(self.addr, Duration::from_secs(10)).map_err(failed)?;
        let rows = conn.query("SELECT key, value FROM events", &[]).map_err(failed)?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }
}
