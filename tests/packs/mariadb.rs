//! The MariaDB pack (scenarios/mariadb/) against Debian's mariadb-server,
//! run as the mysql user, written through the `sql` workload:
//! innodb_flush_log_at_trx_commit 1 / 2 / 0 crossed with SIGKILL and with
//! a power loss must lose what MariaDB documents, and nothing more.

use crate::common;

use common::{available, fuse_available, run, scenario, which, Run};

fn mariadb_available() -> bool {
    let user = std::fs::read_to_string("/etc/passwd").is_ok_and(|p| p.lines().any(|l| l.starts_with("mysql:")));
    available(
        "mariadb",
        user && which("mariadbd") && which("mariadb-install-db") && which("mariadb-admin") && which("setpriv"),
        "the MariaDB pack runs Debian's server as the mysql user (packages mariadb-server, util-linux)",
    )
}

fn pack(name: &str) -> Run {
    let r = run(&scenario(&format!("mariadb/{name}.toml")), &["--seed", "11"]);
    assert_eq!(r.code, 0, "{name}: {}\n{}", r.stdout(), r.stderr());
    assert_eq!(r.trials().len(), 5, "{name}");
    for t in r.trials() {
        common::assert_the_workload_ran(name, t);
        assert_eq!((t.rpo.corrupted, t.rpo.phantom), (Some(0), Some(0)), "{name}, trial {}", t.index);
    }
    r
}

/// The figures of the pack's table in the README.
fn table_line(name: &str, r: &Run) {
    let s = &r.report().summary;
    let n = |v: Option<f64>| v.unwrap_or(f64::NAN);
    let (rto, lost, window) = (&s.rto_ms, &s.lost_acked, &s.window_ms);
    eprintln!(
        "{name:<26} rto p50 {:>6.1} p95 {:>6.1} ms   lost p50 {:>5.0} max {:>5.0}   window max {:>6.1} ms",
        n(rto.p50),
        n(rto.p95),
        n(lost.p50),
        n(lost.max),
        n(window.max)
    );
}

/// 1 under both faults, and 2 under SIGKILL: not one acknowledged commit
/// lost in any trial.
#[test]
fn flushing_at_commit_or_to_the_os_at_commit_loses_nothing_the_fault_spares() {
    if !mariadb_available() {
        return;
    }
    let _serial = common::serial();
    let mut names = vec!["flush-1-kill", "flush-2-kill"];
    if fuse_available() {
        names.insert(1, "flush-1-power-loss");
    }
    for name in names {
        let r = pack(name);
        for t in r.trials() {
            assert_eq!(t.rpo.lost_acked, Some(0), "{name}, trial {}", t.index);
        }
        table_line(name, &r);
    }
}

/// 2 under a power loss, and 0 under either fault: up to about one second
/// of acknowledged commits lost, in most trials.
#[test]
fn flushing_once_a_second_loses_up_to_a_second() {
    if !mariadb_available() {
        return;
    }
    let _serial = common::serial();
    let mut names = vec!["flush-0-kill"];
    if fuse_available() {
        names.extend(["flush-2-power-loss", "flush-0-power-loss"]);
    }
    for name in names {
        let r = pack(name);
        let with_loss = r.trials().iter().filter(|t| t.rpo.lost_acked.unwrap() > 0).count();
        assert!(with_loss >= 3, "{name}: only {with_loss} of 5 trials lost commits");
        for t in r.trials() {
            let window = t.rpo.window_ms.unwrap();
            assert!(window <= 1200.0, "{name}, trial {}: window {window} ms", t.index);
        }
        table_line(name, &r);
    }
}
