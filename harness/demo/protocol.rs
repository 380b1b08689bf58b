//! The demo-kv wire protocol: one request per line, one reply per line.
//!
//! ```text
//! PING            -> PONG
//! SET <key> <val> -> OK            | ERR <reason>
//! GET <key>       -> VALUE <val>   | NONE
//! SCAN            -> ITEM <key> <val> (one per pair), then END <count>
//! ```
//! Keys and values are non-empty and hold no whitespace.

use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Whether a token can travel as a key or a value.
pub fn is_token(text: &str) -> bool {
    !text.is_empty() && !text.contains(char::is_whitespace)
}

/// What a server of this protocol stores into: demo-kv's log, or the SQLite
/// application's database.
pub trait Store: Sync {
    /// Durable as the store's settings make it when this returns.
    fn set(&self, key: &str, value: &str) -> io::Result<()>;
    fn get(&self, key: &str) -> io::Result<Option<String>>;
    fn scan(&self) -> io::Result<Vec<(String, String)>>;
}

/// Answers one client connection until it closes.
pub fn serve_connection(stream: TcpStream, store: &dyn Store) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut out = BufWriter::new(stream.try_clone()?);
    let mut lines = BufReader::new(stream);
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let mut words = line.split_whitespace();
        match (words.next(), words.next(), words.next(), words.next()) {
            (Some("PING"), None, ..) => writeln!(out, "PONG")?,
            (Some("SET"), Some(key), Some(value), None) if is_token(key) && is_token(value) => {
                match store.set(key, value) {
                    Ok(()) => writeln!(out, "OK")?,
                    Err(e) => writeln!(out, "ERR {}", e.to_string().replace('\n', " "))?,
                }
            }
            (Some("GET"), Some(key), None, _) => match store.get(key) {
                Ok(Some(value)) => writeln!(out, "VALUE {value}")?,
                Ok(None) => writeln!(out, "NONE")?,
                Err(e) => writeln!(out, "ERR {e}")?,
            },
            (Some("SCAN"), None, ..) => match store.scan() {
                Ok(items) => {
                    for (key, value) in &items {
                        writeln!(out, "ITEM {key} {value}")?;
                    }
                    writeln!(out, "END {}", items.len())?;
                }
                Err(e) => writeln!(out, "ERR {e}")?,
            },
            _ => writeln!(out, "ERR expected PING, SET <key> <value>, GET <key> or SCAN")?,
        }
        out.flush()?;
    }
}

/// A blocking client connection; every call has the connection's timeout.
pub struct Client {
    reader: BufReader<TcpStream>,
    line: String,
}

impl Client {
    pub fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<Client> {
        let stream = TcpStream::connect_timeout(&addr, timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        stream.set_nodelay(true)?;
        Ok(Client { reader: BufReader::new(stream), line: String::new() })
    }

    /// Sends one request line and reads one reply line.
    fn call(&mut self, request: &str) -> io::Result<&str> {
        let stream = self.reader.get_mut();
        stream.write_all(request.as_bytes())?;
        stream.write_all(b"\n")?;
        self.read_line()
    }

    fn read_line(&mut self) -> io::Result<&str> {
        self.line.clear();
        if self.reader.read_line(&mut self.line)? == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed"));
        }
        Ok(self.line.trim_end())
    }

    pub fn ping(&mut self) -> io::Result<()> {
        match self.call("PING")? {
            "PONG" => Ok(()),
            other => Err(unexpected("PONG", other)),
        }
    }

    pub fn set(&mut self, key: &str, value: &str) -> io::Result<()> {
        match self.call(&format!("SET {key} {value}"))? {
            "OK" => Ok(()),
            other => Err(unexpected("OK", other)),
        }
    }

    pub fn get(&mut self, key: &str) -> io::Result<Option<String>> {
        let reply = self.call(&format!("GET {key}"))?;
        if reply == "NONE" {
            return Ok(None);
        }
        match reply.strip_prefix("VALUE ") {
            Some(value) => Ok(Some(value.to_string())),
            None => Err(unexpected("VALUE or NONE", reply)),
        }
    }

    /// Reads back every pair the store holds.
    pub fn scan(&mut self) -> io::Result<Vec<(String, String)>> {
        let mut items = Vec::new();
        let mut reply = self.call("SCAN")?.to_string();
        loop {
            if let Some(count) = reply.strip_prefix("END ") {
                if count.parse::<usize>().ok() != Some(items.len()) {
                    return Err(unexpected(&format!("END {}", items.len()), &reply));
                }
                return Ok(items);
            }
            let pair = reply
                .strip_prefix("ITEM ")
                .and_then(|rest| rest.split_once(' '))
                .ok_or_else(|| unexpected("ITEM <key> <value>", &reply))?;
            items.push((pair.0.to_string(), pair.1.to_string()));
            reply = self.read_line()?.to_string();
        }
    }
}

fn unexpected(expected: &str, got: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("expected `{expected}`, got `{got}`"))
}
