//! The `sql` workload: a write is the scenario's `insert`, its key, value
//! and sequence number bound as parameters (never spliced), through
//! PostgreSQL's driver (`postgres`) or MySQL's (`mysql`, which MariaDB
//! speaks); the read-back is its `select`. `setup` runs once per trial,
//! before the first write.
//!
//! | what happened | outcome |
//! |---|---|
//! | no connection, or the statement could not be prepared | not applied |
//! | autocommit: the insert answered | applied |
//! | autocommit: an error answer from the server (the statement rolled back) | not applied |
//! | transaction: an error before COMMIT was sent | not applied |
//! | transaction: COMMIT answered | applied |
//! | transaction: an error answer to COMMIT (rolled back) | not applied |
//! | anything else once the write was sent (a broken connection, a timeout, PostgreSQL's `FATAL`/`PANIC`) | unknown |

use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mysql::prelude::Queryable;

use super::{is_workload_key, Client, Workload, WriteResult};
use crate::scenario::{SqlEngine, SqlParam, SqlWorkload};

/// How long the read-back and setup may take.
const SLOW: Duration = Duration::from_secs(30);

pub struct Sql {
    pub plan: SqlWorkload,
    /// The URL with its placeholders filled in.
    pub url: String,
    pub timeout: Duration,
    /// Whether `setup` ran; the first client to connect runs it.
    set_up: Arc<Mutex<bool>>,
}

impl Sql {
    pub fn new(plan: SqlWorkload, url: String, timeout: Duration) -> Sql {
        Sql { plan, url, timeout, set_up: Arc::new(Mutex::new(false)) }
    }
}

/// One write's parameters, in the statement's order.
struct Params<'a> {
    key: &'a str,
    value: &'a str,
    seq: i64,
}

/// Where an error happened: before the write could have been applied, or
/// at the moment it would have been.
enum Stage {
    Before,
    Deciding,
}

/// A connection of either engine.
enum Conn {
    Postgres(Box<postgres::Client>, postgres::Statement),
    Mysql(Box<mysql::Conn>, mysql::Statement),
}

impl Workload for Sql {
    fn client(&self) -> Box<dyn Client> {
        Box::new(SqlClient {
            plan: self.plan.clone(),
            url: self.url.clone(),
            timeout: self.timeout,
            set_up: Arc::clone(&self.set_up),
            conn: None,
        })
    }

    fn read_back(&self, _written: u64) -> io::Result<Vec<(String, String)>> {
        let mut items = match self.plan.engine {
            SqlEngine::Postgres => {
                let mut conn = pg_connect(&self.url, SLOW).map_err(|e| io::Error::other(pg_message(&e)))?;
                let rows = conn.query(self.plan.select.as_str(), &[]).map_err(|e| io::Error::other(pg_message(&e)))?;
                let text = |row: &postgres::Row, i: usize| {
                    row.try_get::<_, String>(i)
                        .map_err(|e| io::Error::other(format!("`select` column {}: {e} (expected text)", i + 1)))
                };
                rows.iter().map(|r| Ok((text(r, 0)?, text(r, 1)?))).collect::<io::Result<Vec<_>>>()?
            }
            SqlEngine::Mysql => {
                let mut conn = my_connect(&self.url, SLOW).map_err(|e| io::Error::other(e.to_string()))?;
                let rows: Vec<mysql::Row> =
                    conn.query(self.plan.select.as_str()).map_err(|e| io::Error::other(e.to_string()))?;
                let text = |row: &mysql::Row, i: usize| {
                    row.get_opt::<String, _>(i)
                        .ok_or_else(|| io::Error::other("`select` must return two columns, key and value"))?
                        .map_err(|e| io::Error::other(format!("`select` column {}: {e}", i + 1)))
                };
                rows.iter().map(|r| Ok((text(r, 0)?, text(r, 1)?))).collect::<io::Result<Vec<_>>>()?
            }
        };
        items.retain(|(k, _)| is_workload_key(k));
        Ok(items)
    }
}

fn pg_connect(url: &str, timeout: Duration) -> Result<postgres::Client, postgres::Error> {
    let mut config: postgres::Config = url.parse()?;
    config.connect_timeout(timeout);
    // Bounds every statement, so that a stuck server is an unknown outcome.
    config.options(&format!("-c statement_timeout={}", timeout.as_millis()));
    config.connect(postgres::NoTls)
}

/// The server's own message when there is one ("db error" alone says
/// nothing), else the client's.
fn pg_message(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.severity(), db.message()),
        None => e.to_string(),
    }
}

/// Whether the server answered with an `ERROR` (the statement, or the
/// transaction at COMMIT, was rolled back), not `FATAL`/`PANIC` or a
/// broken connection.
fn pg_refused(e: &postgres::Error) -> bool {
    e.as_db_error().is_some_and(|db| match db.parsed_severity() {
        Some(severity) => severity == postgres::error::Severity::Error,
        None => db.severity() == "ERROR",
    })
}

fn my_connect(url: &str, timeout: Duration) -> Result<mysql::Conn, mysql::Error> {
    let url = url.replacen("mariadb://", "mysql://", 1);
    let opts = mysql::OptsBuilder::from_opts(mysql::Opts::from_url(&url)?)
        .tcp_connect_timeout(Some(timeout))
        .read_timeout(Some(timeout))
        .write_timeout(Some(timeout));
    mysql::Conn::new(opts)
}

/// Whether the server answered with an error (the statement, or the
/// transaction at COMMIT, was rolled back), not a broken connection.
fn my_refused(e: &mysql::Error) -> bool {
    matches!(e, mysql::Error::MySqlError(_))
}

struct SqlClient {
    plan: SqlWorkload,
    url: String,
    timeout: Duration,
    set_up: Arc<Mutex<bool>>,
    conn: Option<Conn>,
}

impl SqlClient {
    /// A connection with the insert prepared, `setup` run first if no
    /// client has run it yet.
    fn connect(&self) -> Result<Conn, String> {
        let mut set_up = self.set_up.lock().unwrap();
        let insert = self.plan.insert.text.as_str();
        let conn = match self.plan.engine {
            SqlEngine::Postgres => {
                let mut conn =
                    pg_connect(&self.url, self.timeout).map_err(|e| format!("connect: {}", pg_message(&e)))?;
                if !*set_up {
                    for statement in &self.plan.setup {
                        conn.batch_execute(statement)
                            .map_err(|e| format!("setup `{statement}`: {}", pg_message(&e)))?;
                    }
                }
                let prepared = conn.prepare(insert).map_err(|e| format!("prepare: {}", pg_message(&e)))?;
                Conn::Postgres(Box::new(conn), prepared)
            }
            SqlEngine::Mysql => {
                let mut conn = my_connect(&self.url, self.timeout).map_err(|e| format!("connect: {e}"))?;
                if !*set_up {
                    for statement in &self.plan.setup {
                        conn.query_drop(statement).map_err(|e| format!("setup `{statement}`: {e}"))?;
                    }
                }
                let prepared = conn.prep(insert).map_err(|e| format!("prepare: {e}"))?;
                Conn::Mysql(Box::new(conn), prepared)
            }
        };
        *set_up = true;
        Ok(conn)
    }
}

/// Runs one write on a connection; an error carries where it happened.
fn write(conn: &mut Conn, plan: &SqlWorkload, p: &Params) -> Result<(), (Stage, String, bool)> {
    match conn {
        Conn::Postgres(conn, insert) => {
            let key: &(dyn postgres::types::ToSql + Sync) = &p.key;
            let value: &(dyn postgres::types::ToSql + Sync) = &p.value;
            let seq: &(dyn postgres::types::ToSql + Sync) = &p.seq;
            let params: Vec<_> = plan
                .insert
                .params
                .iter()
                .map(|param| match param {
                    SqlParam::Key => key,
                    SqlParam::Value => value,
                    SqlParam::Seq => seq,
                })
                .collect();
            let fail = |stage| move |e: postgres::Error| (stage, pg_message(&e), pg_refused(&e));
            if !plan.transaction {
                return conn.execute(insert, &params).map(|_| ()).map_err(fail(Stage::Deciding));
            }
            let mut tx = conn.transaction().map_err(fail(Stage::Before))?;
            tx.execute(insert, &params).map_err(fail(Stage::Before))?;
            tx.commit().map_err(fail(Stage::Deciding))
        }
        Conn::Mysql(conn, insert) => {
            let params: Vec<mysql::Value> = plan
                .insert
                .params
                .iter()
                .map(|param| match param {
                    SqlParam::Key => p.key.into(),
                    SqlParam::Value => p.value.into(),
                    SqlParam::Seq => p.seq.into(),
                })
                .collect();
            let fail = |stage| move |e: mysql::Error| (stage, e.to_string(), my_refused(&e));
            if !plan.transaction {
                return conn.exec_drop(&*insert, params).map_err(fail(Stage::Deciding));
            }
            conn.query_drop("BEGIN").map_err(fail(Stage::Before))?;
            conn.exec_drop(&*insert, params).map_err(fail(Stage::Before))?;
            conn.query_drop("COMMIT").map_err(fail(Stage::Deciding))
        }
    }
}

impl Client for SqlClient {
    fn write(&mut self, seq: u64, key: &str, value: &str) -> WriteResult {
        if self.conn.is_none() {
            match self.connect() {
                Ok(conn) => self.conn = Some(conn),
                // Nothing was sent for this write: certainly not applied.
                Err(e) => return WriteResult::Fail(e),
            }
        }
        let conn = self.conn.as_mut().expect("connected above");
        let params = Params { key, value, seq: seq as i64 };
        match write(conn, &self.plan, &params) {
            Ok(()) => WriteResult::Ok,
            Err((stage, message, refused)) => {
                // A transaction left open, or a connection in doubt, is not
                // reused.
                self.conn = None;
                match (stage, refused) {
                    (Stage::Before, _) | (Stage::Deciding, true) => WriteResult::Fail(message),
                    (Stage::Deciding, false) => WriteResult::Unknown(message),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::scenario::workload::bind;
    use crate::scenario::{SqlEngine, SqlParam};

    #[test]
    fn placeholders_become_bind_parameters() {
        let text = "INSERT INTO kv (k, v, n, note) VALUES ({key}, {value}, {seq}, '{kept}')";
        let pg = bind(text, SqlEngine::Postgres);
        assert_eq!(pg.text, "INSERT INTO kv (k, v, n, note) VALUES ($1, $2, $3, '{kept}')");
        assert_eq!(pg.params, [SqlParam::Key, SqlParam::Value, SqlParam::Seq]);
        let my = bind("REPLACE INTO t VALUES ({value}, {key})", SqlEngine::Mysql);
        assert_eq!(my.text, "REPLACE INTO t VALUES (?, ?)");
        assert_eq!(my.params, [SqlParam::Value, SqlParam::Key]);
    }
}
