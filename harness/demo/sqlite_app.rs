//! `crashlab sqlite-app`: an application that keeps its data in SQLite, for
//! the SQLite pack. It speaks demo-kv's protocol (so the demo-kv workload
//! and probe drive it) and commits each `SET` as its own transaction before
//! answering `OK`, with the journal mode and synchronous setting under test.
//! `--integrity-check` runs `PRAGMA integrity_check` on a database and exits
//! 0 only if SQLite answers `ok`: the pack's invariant after recovery.

use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::{io, thread};

use rusqlite::{params, Connection, OptionalExtension};

use super::protocol;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum JournalMode {
    Wal,
    Delete,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Synchronous {
    Full,
    Normal,
    Off,
}

#[derive(Debug, Clone, clap::Args)]
pub struct SqliteAppOptions {
    /// The database file.
    #[arg(long)]
    db: PathBuf,
    /// Where to listen (ignored with --integrity-check).
    #[arg(long, default_value_t = 0)]
    port: u16,
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    host: IpAddr,
    #[arg(long, value_enum, default_value = "wal")]
    journal_mode: JournalMode,
    #[arg(long, value_enum, default_value = "full")]
    synchronous: Synchronous,
    /// Check the database and exit: 0 if `PRAGMA integrity_check` says ok.
    #[arg(long)]
    integrity_check: bool,
}

struct Db(Mutex<Connection>);

fn other(e: rusqlite::Error) -> io::Error {
    io::Error::other(e)
}

impl protocol::Store for Db {
    fn set(&self, key: &str, value: &str) -> io::Result<()> {
        let db = self.0.lock().unwrap();
        db.execute("INSERT OR REPLACE INTO kv (key, value) VALUES (?1, ?2)", params![key, value]).map_err(other)?;
        Ok(())
    }

    fn get(&self, key: &str) -> io::Result<Option<String>> {
        let db = self.0.lock().unwrap();
        db.query_row("SELECT value FROM kv WHERE key = ?1", params![key], |r| r.get(0)).optional().map_err(other)
    }

    fn scan(&self) -> io::Result<Vec<(String, String)>> {
        let db = self.0.lock().unwrap();
        let mut query = db.prepare("SELECT key, value FROM kv").map_err(other)?;
        let rows = query.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).map_err(other)?;
        rows.collect::<Result<_, _>>().map_err(other)
    }
}

fn open(options: &SqliteAppOptions) -> rusqlite::Result<Connection> {
    let db = Connection::open(&options.db)?;
    let mode = match options.journal_mode {
        JournalMode::Wal => "WAL",
        JournalMode::Delete => "DELETE",
    };
    let sync = match options.synchronous {
        Synchronous::Full => "FULL",
        Synchronous::Normal => "NORMAL",
        Synchronous::Off => "OFF",
    };
    let applied: String = db.query_row(&format!("PRAGMA journal_mode = {mode}"), [], |r| r.get(0))?;
    db.execute_batch(&format!(
        "PRAGMA synchronous = {sync}; CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
    ))?;
    println!("opened {} journal_mode={applied} synchronous={sync}", options.db.display());
    Ok(db)
}

/// The integrity check's answer: `ok`, or SQLite's list of problems.
fn integrity(options: &SqliteAppOptions) -> rusqlite::Result<String> {
    let db = Connection::open_with_flags(&options.db, rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE)?;
    // The application may be writing: wait for its locks, do not fail.
    db.busy_timeout(std::time::Duration::from_secs(10))?;
    let mut query = db.prepare("PRAGMA integrity_check")?;
    let lines: Vec<String> = query.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?;
    Ok(lines.join("; "))
}

pub fn run(options: SqliteAppOptions) -> i32 {
    if options.integrity_check {
        return match integrity(&options) {
            Ok(answer) if answer == "ok" => {
                println!("integrity_check: ok");
                0
            }
            Ok(answer) => {
                eprintln!("sqlite-app: integrity_check of {}: {answer}", options.db.display());
                1
            }
            Err(e) => {
                eprintln!("sqlite-app: cannot check {}: {e}", options.db.display());
                1
            }
        };
    }
    let db = match open(&options) {
        Ok(db) => Arc::new(Db(Mutex::new(db))),
        Err(e) => {
            eprintln!("sqlite-app: cannot open {}: {e}", options.db.display());
            return 1;
        }
    };
    let listener = match TcpListener::bind((options.host, options.port)) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("sqlite-app: cannot listen on {}:{}: {e}", options.host, options.port);
            return 1;
        }
    };
    println!("ready port={}", options.port);
    for stream in listener.incoming().flatten() {
        let db = Arc::clone(&db);
        thread::spawn(move || {
            let _ = protocol::serve_connection(stream, db.as_ref());
        });
    }
    0
}
