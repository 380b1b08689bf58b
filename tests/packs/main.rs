//! Scenario packs against real software: PostgreSQL, Redis, SQLite, and the runbooks.
//!
//! One test binary per area; each module below is one file of tests/packs/.

#[path = "../common/mod.rs"]
mod common;

mod etcd;
mod mariadb;
mod postgres;
mod redis;
mod runbooks;
mod sqlite;
