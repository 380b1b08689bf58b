//! The PostgreSQL pack (scenarios/postgres/), against Debian's PostgreSQL
//! run as the `postgres` user: crash recovery loses no commit and keeps the
//! sequencer's invariants; stale pid files are handled as PostgreSQL's
//! source says; a damaged heap page is caught by data checksums.

use crate::common;
use crashlab::reports::Verdict;

use common::{available, run, scenario, which, write_scenario, Run};
use crashlab::reports::{StepReport, TrialReport};
use serde_json::Value;

fn postgres_available() -> bool {
    let server = std::fs::read_dir("/usr/lib/postgresql")
        .map(|versions| versions.flatten().any(|v| v.path().join("bin/initdb").exists()))
        .unwrap_or(false);
    let user = std::fs::read_to_string("/etc/passwd").is_ok_and(|p| p.lines().any(|l| l.starts_with("postgres:")));
    available(
        "postgres",
        server && user && which("psql") && which("pg_isready") && which("setpriv"),
        "the PostgreSQL pack runs Debian's server as the postgres user (packages postgresql, util-linux)",
    )
}

fn pack(name: &str, trials: &str) -> Run {
    run(&scenario(&format!("postgres/{name}.toml")), &["--trials", trials, "--seed", "5"])
}

fn steps(t: &TrialReport) -> &Vec<StepReport> {
    &t.recovery
}

#[test]
fn crash_recovery_loses_no_commit_and_keeps_the_sequences_whole() {
    let _serial = common::serial();
    if !postgres_available() {
        return;
    }
    for name in ["kill-postmaster", "stale-pid-leftover", "stale-pid-other-user"] {
        let r = pack(name, "2");
        assert_eq!(r.code, 0, "{name}\n{}\n{}", r.stdout(), r.stderr());
        for t in r.trials() {
            assert_eq!(t.rpo.lost_acked, Some(0), "{name}");
            common::assert_the_workload_ran(name, t);
            let checks: Vec<&StepReport> = steps(t).iter().filter(|s| s.action == "check").collect();
            assert_eq!(checks.len(), 2);
            assert!(checks.iter().all(|s| s.ok), "{name}: {checks:?}");
        }
        if name == "kill-postmaster" {
            let mut sent = 0;
            for trial in 0..2 {
                let (tried, acked) = acked_by_the_dead(&r.history(trial));
                assert_eq!(acked, 0, "no backend outlives the postmaster ({tried} writes sent to the dead server)");
                sent += tried;
            }
            assert!(sent > 0, "no write was sent between a kill and the restart: the check above proved nothing");
        } else {
            let detail = r.trials()[0].faults[0].detail.clone();
            assert!(detail.contains("postmaster.pid"), "{detail}");
        }
    }
}

/// Writes sent after the kill and before the next postmaster started, and
/// how many of them were acknowledged: a server that was killed whole
/// acknowledges none. A backend left out of the signal (they leave the
/// postmaster's process group) could.
fn acked_by_the_dead(events: &[Value]) -> (usize, usize) {
    let at = |e: &Value| e["t_ms"].as_f64().unwrap();
    let killed = events.iter().find(|e| e["event"] == "fault_injected").map(at).expect("the kill");
    let restarted = events.iter().filter(|e| e["event"] == "target_started").map(at).find(|t| *t > killed);
    let restarted = restarted.expect("a new postmaster");
    let sent: std::collections::HashSet<u64> = events
        .iter()
        .filter(|e| e["event"] == "invoke" && (killed..restarted).contains(&at(e)))
        .map(|e| e["op"].as_u64().unwrap())
        .collect();
    let acked = events
        .iter()
        .filter(|e| e["event"] == "complete" && e["outcome"] == "ok" && at(e) < restarted)
        .filter(|e| sent.contains(&e["op"].as_u64().unwrap()))
        .count();
    (sent.len(), acked)
}

/// "fsyncgate": a failed fsync of a data file during a checkpoint makes
/// PostgreSQL PANIC (data_sync_retry = off) and recover from the WAL, whose
/// own fsyncs never failed: no commit lost, the sequences whole.
#[test]
fn an_fsync_error_on_a_data_file_panics_and_wal_replay_loses_no_commit() {
    let _serial = common::serial();
    if !postgres_available() || !common::fuse_available() {
        return;
    }
    let r = pack("fsync-eio-checkpoint", "2");
    assert_eq!(r.code, 0, "{}\n{}", r.stdout(), r.stderr());
    for (i, t) in r.trials().iter().enumerate() {
        let failed = common::io_count(t, "fsync");
        assert!(failed >= 1, "trial {i}: {}", common::io_fault(t).detail);
        let log = std::fs::read_to_string(r.dir.join(format!("trial-{i:03}/logs/pg.1.log"))).unwrap();
        assert!(log.contains("PANIC:  could not fsync file \"base/"), "trial {i}: no PANIC in\n{log}");
        assert!(log.contains("redo done at"), "trial {i}: no WAL replay in\n{log}");
        assert_eq!(t.rpo.lost_acked, Some(0), "trial {i}");
        common::assert_the_workload_ran("fsync-eio-checkpoint", t);
        assert!(steps(t).iter().filter(|s| s.action == "check").all(|s| s.ok), "trial {i}: {:?}", steps(t));
    }
}

#[test]
fn a_gap_in_a_stream_fails_the_invariant() {
    if !postgres_available() {
        return;
    }
    // The same scenario, with one event deleted before the checks run: the
    // LAG query must find the gap, the counters stay consistent.
    let text = std::fs::read_to_string(scenario("postgres/kill-postmaster.toml")).unwrap().replacen(
        "[[recover]]\naction = \"check\"",
        "[[recover]]\naction = \"run\"\ntarget = \"pg\"\ncommand = [\"psql\", \"-h\", \"127.0.0.1\", \"-p\", \"{port}\", \
         \"-U\", \"postgres\", \"-c\", \"DELETE FROM events WHERE stream = 's1' AND sequence_number = 3\"]\n\n\
         [[recover]]\naction = \"check\"",
        1,
    );
    let tmp = tempfile::tempdir().unwrap();
    let r = run(&write_scenario(tmp.path(), "gap.toml", &text), &["--trials", "1", "--seed", "5"]);
    assert_eq!(r.code, 1, "{}", r.stdout());
    let s = steps(&r.trials()[0]);
    let gap = &s[2];
    assert_eq!((gap.action.as_str(), gap.ok), ("check", false), "{s:?}");
    assert!(gap.detail.contains("sequence gaps: s1|4|2"), "{gap:?}");
    assert!(s[3].ok, "the counters still match the highest sequence numbers");
}

#[test]
fn a_damaged_heap_page_is_caught_by_data_checksums() {
    if !postgres_available() {
        return;
    }
    let r = pack("heap-page-corruption", "1");
    assert_eq!(r.code, 1, "{}", r.stdout());
    let t = &r.trials()[0];
    assert!(t.rto_ms.is_some(), "the server itself starts");
    let failed: Vec<&StepReport> = steps(t).iter().filter(|s| !s.ok).collect();
    assert!(!failed.is_empty());
    let detail = failed[0].detail.as_str();
    assert!(
        detail.contains("page verification failed")
            && detail.contains("invalid page in block 0 of relation base/5/16384"),
        "{detail}"
    );
    assert!(t.faults[0].detail.as_str().contains("16384"));
}

/// Point-in-time recovery (the sequencer runbook's Level 3): after an
/// accidental DELETE, the base backup plus the WAL replayed to a time noted
/// just before it. The deleted stream is back, the sequences are whole, and
/// what is lost is what was acknowledged after the target time. The target
/// is noted when the disaster begins (at the fault, or later on a loaded
/// machine: psql has to start), and the DELETE follows it by 200 ms, after
/// which the runbook stops the server: so everything acknowledged in the
/// last 200 ms before the stop is certainly lost, and at most what was
/// acknowledged after the fault, give or take one per connection.
#[test]
fn point_in_time_recovery_brings_back_what_was_deleted_and_loses_what_followed() {
    let _serial = common::serial();
    if !postgres_available() {
        return;
    }
    let r = run(&scenario("runbooks/sequencer/pitr.toml"), &["--trials", "1", "--seed", "5"]);
    assert_point_in_time_recovery(&r);
}

/// The same recovery when the server's WAL was not archived by the stop
/// (the archiver lagging, or its command failing): the archive is emptied
/// into the WAL the runbook kept aside, so the segment that runs past the
/// target time exists only there. restore_command must fetch it from there;
/// put into the restored pg_wal, as the scenario once did, PostgreSQL
/// replays it whole as crash recovery and refuses to start ("requested
/// recovery stop point is before consistent recovery point"), which is
/// what failed now and then when the archiver had not yet recycled it.
#[test]
fn point_in_time_recovery_reads_the_wal_kept_aside_when_the_archive_lacks_it() {
    let _serial = common::serial();
    if !postgres_available() {
        return;
    }
    let keep = "cp -a {data_dir}/pg_wal {data_dir}.wal";
    let text = std::fs::read_to_string(scenario("runbooks/sequencer/pitr.toml")).unwrap();
    assert!(text.contains(keep), "the runbook's step that keeps the WAL aside");
    let unarchived = format!("{keep} && ls {{data_dir}}.archive/0* && mv {{data_dir}}.archive/0* {{data_dir}}.wal/");
    let tmp = tempfile::tempdir().unwrap();
    let path = write_scenario(tmp.path(), "pitr-unarchived.toml", &text.replace(keep, &unarchived));
    let r = run(&path, &["--trials", "1", "--seed", "5"]);
    assert_point_in_time_recovery(&r);
    let log = std::fs::read_dir(r.dir.join("trial-000/logs"))
        .unwrap()
        .flatten()
        .map(|f| std::fs::read_to_string(f.path()).unwrap_or_default())
        .collect::<String>();
    assert!(
        log.contains("restored log file \"000000010000000000000001\" from archive"),
        "the first segment came through restore_command, from the WAL kept aside"
    );
}

/// The deleted stream is back, every check step passed, and the lost
/// writes are those acknowledged after the target time (see above).
fn assert_point_in_time_recovery(r: &Run) {
    assert_eq!(r.code, 0, "{}\n{}", r.stdout(), r.stderr());
    let t = &r.trials()[0];
    assert!(steps(t).iter().all(|s| s.ok), "{:?}", steps(t));
    let fault = t.faults[0].injected_at_ms;
    let events = r.history(0);
    // Until the runbook stopped the server: what came after the recovery stays.
    let stop = steps(t)[0].started_at_ms;
    let acked_after = |from: f64| {
        events
            .iter()
            .filter(|e| e["event"] == "complete" && e["outcome"] == "ok")
            .filter(|e| (from..stop).contains(&e["t_ms"].as_f64().unwrap()))
            .count() as u64
    };
    let lost = t.rpo.lost_acked.unwrap();
    let (most, least) = (acked_after(fault), acked_after(stop - 200.0));
    assert!(
        least > 0 && (least..=most + 8).contains(&lost),
        "lost {lost}, acked after the fault {most}, in the 200 ms before the stop {least}"
    );
}

/// PostgreSQL in a container made here from Debian's package: a SIGKILL
/// through the host pid, a restart by the harness, crash recovery, and the
/// same promise as a local process: no commit lost, sequences whole.
#[test]
fn in_a_container_crash_recovery_loses_no_commit() {
    if !postgres_available() || !common::docker_available() || !common::mmdebstrap_available() {
        return;
    }
    let build = common::crashlab().args(["image", "build", "--debian", "postgresql"]).output().unwrap();
    assert!(build.status.success(), "{}", String::from_utf8_lossy(&build.stderr));
    let r = pack("container-kill", "2");
    assert_eq!(r.code, 0, "{}\n{}", r.stdout(), r.stderr());
    for t in r.trials() {
        assert_eq!(t.rpo.lost_acked, Some(0));
        common::assert_the_workload_ran("container-kill", t);
        assert!(t.faults[0].restart_ms.is_some(), "the container was started again");
        assert!(steps(t).iter().filter(|s| s.action == "check").all(|s| s.ok), "{:?}", steps(t));
    }
}

/// The case that matters of a reused pid: the pid file names a live process
/// of PostgreSQL's own user, which CreateLockFile cannot tell from a running
/// postmaster (kill(pid, 0) succeeds). It refuses for as long as that
/// process lives, and the report quotes why, not the HINT after it.
#[test]
fn a_pid_file_naming_a_live_process_of_its_own_user_blocks_postgresql() {
    if !postgres_available() {
        return;
    }
    let text = std::fs::read_to_string(scenario("postgres/stale-pid-other-user.toml"))
        .unwrap()
        .replace("variant = \"pid-reused\"", "variant = \"pid-reused\"\nuser = \"postgres\"");
    let text = text[..text.find("[[recover]]").unwrap()].to_string() + "[trials]\nrecovery_timeout = \"3s\"\n";
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path = write_scenario(tmp.path(), "same-user.toml", &text);
    let r = run(&path, &["--trials", "1", "--seed", "5"]);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout(), r.stderr());
    let t = &r.trials()[0];
    assert!(t.rto_ms.is_none(), "PostgreSQL started over its own user's live pid");
    let check = &t.checks.iter().find(|c| c.verdict == Verdict::Fail).unwrap();
    let observed = check.observed.as_str();
    assert!(observed.contains("FATAL:  lock file \"postmaster.pid\" already exists"), "{observed}");
}

/// The `sql` workload against PostgreSQL, in both of its modes: a table of
/// the scenario's own (made by `setup`), written by autocommit INSERTs and
/// by a transaction per write, SIGKILLed as in kill-postmaster. PostgreSQL
/// with fsync and synchronous_commit on loses no commit either way.
#[test]
fn the_sql_workload_loses_no_commit_of_postgres() {
    let _serial = common::serial();
    if !postgres_available() {
        return;
    }
    let pack = std::fs::read_to_string(scenario("postgres/kill-postmaster.toml")).unwrap();
    let target = &pack[pack.find("[target.pg]").unwrap()..pack.find("[workload]").unwrap()];
    let tmp = tempfile::tempdir().unwrap();
    for transaction in [false, true] {
        let text = format!(
            r#"name = "postgres-sql-kill"
{target}
[workload]
kind = "sql"
target = "pg"
url = "postgres://postgres@{{host}}:{{port}}/postgres"
setup = ["CREATE TABLE IF NOT EXISTS kv (k TEXT PRIMARY KEY, v TEXT NOT NULL, n BIGINT NOT NULL)"]
insert = "INSERT INTO kv (k, v, n) VALUES ({{key}}, {{value}}, {{seq}})"
select = "SELECT k, v FROM kv"
transaction = {transaction}
rate = 200
duration = "4s"

[[fault]]
kind = "kill"
target = "pg"
scope = "all"
at = "2s..3s"

[expect]
lost_acked = 0
corrupted = 0
phantom = 0
"#
        );
        let path = write_scenario(tmp.path(), "sql.toml", &text);
        let r = run(&path, &["--trials", "2", "--seed", "5"]);
        assert_eq!(r.code, 0, "transaction = {transaction}\n{}\n{}", r.stdout(), r.stderr());
        for t in r.trials() {
            common::assert_the_workload_ran("postgres sql", t);
            assert_eq!(t.rpo.lost_acked, Some(0), "transaction = {transaction}");
            assert!(t.rpo.acked_writes > 0);
        }
    }
}
