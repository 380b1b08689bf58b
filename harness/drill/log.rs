//! The drill log: every `crashlab drill` appended to a SQLite database kept
//! next to the run directories, so that "did our RTO get worse since last
//! month?" is one query (`crashlab history`).

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use rusqlite::{params, Connection, OptionalExtension};

use crate::reports::{RunReport, Verdict};

/// The database file, by default beside the run directories.
pub const FILE: &str = "drills.sqlite";

#[derive(Debug, thiserror::Error)]
#[error("drill log {path}: {source}")]
pub struct DrillLogError {
    pub path: PathBuf,
    #[source]
    pub source: rusqlite::Error,
}

/// One recorded drill.
#[derive(Debug, Clone, PartialEq)]
pub struct Drill {
    pub id: i64,
    pub scenario: String,
    /// RFC 3339, UTC, to the second.
    pub finished_at: String,
    pub run_dir: String,
    pub verdict: String,
    pub rto_ms: Option<f64>,
    pub lost_acked: Option<u64>,
    pub window_ms: Option<f64>,
    pub steps: u32,
    pub steps_over_budget: u32,
    /// "expected: verdict" for each expectation of the scenario.
    pub expectations: Vec<String>,
}

pub struct DrillLog {
    path: PathBuf,
    db: Connection,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS drills (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    scenario TEXT NOT NULL,
    finished_at TEXT NOT NULL,
    run_dir TEXT NOT NULL,
    verdict TEXT NOT NULL,
    rto_ms REAL,
    lost_acked INTEGER,
    window_ms REAL,
    steps INTEGER NOT NULL,
    steps_over_budget INTEGER NOT NULL,
    expectations TEXT NOT NULL,
    report TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS drill_steps (
    drill_id INTEGER NOT NULL REFERENCES drills(id),
    step INTEGER NOT NULL,
    action TEXT NOT NULL,
    target TEXT,
    duration_ms REAL,
    budget_ms REAL,
    ok INTEGER NOT NULL,
    detail TEXT NOT NULL,
    PRIMARY KEY (drill_id, step)
);
CREATE INDEX IF NOT EXISTS drills_by_scenario ON drills (scenario, id);
";

impl DrillLog {
    /// Opens the log, creating the file and its tables if needed.
    pub fn open(path: &Path) -> Result<DrillLog, DrillLogError> {
        let fail = |source| DrillLogError { path: path.to_path_buf(), source };
        let db = Connection::open(path).map_err(fail)?;
        db.execute_batch(SCHEMA).map_err(fail)?;
        Ok(DrillLog { path: path.to_path_buf(), db })
    }

    /// Opens an existing log without creating one; `None` if there is none.
    pub fn open_existing(path: &Path) -> Result<Option<DrillLog>, DrillLogError> {
        if !path.exists() {
            return Ok(None);
        }
        Self::open(path).map(Some)
    }

    fn fail(&self, source: rusqlite::Error) -> DrillLogError {
        DrillLogError { path: self.path.clone(), source }
    }

    /// Appends a drill (its one trial, or the worst of several) and its
    /// steps, in one transaction; returns its id.
    pub fn record(&mut self, report: &RunReport, run_dir: &Path) -> Result<i64, DrillLogError> {
        let finished_at = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
        let rto = if report.summary.never_recovered > 0 { None } else { report.summary.rto_ms.max };
        let steps: Vec<_> = report.trials.iter().flat_map(|t| &t.recovery).collect();
        let expectations: Vec<String> =
            report.expectations.iter().map(|e| format!("{}: {}", e.expected, e.verdict.as_str())).collect();
        let path = self.path.clone();
        let fail = |source| DrillLogError { path: path.clone(), source };
        let tx = self.db.transaction().map_err(fail)?;
        tx.execute(
            "INSERT INTO drills (scenario, finished_at, run_dir, verdict, rto_ms, lost_acked, window_ms, steps, \
             steps_over_budget, expectations, report) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            params![
                report.scenario,
                finished_at,
                run_dir.display().to_string(),
                report.verdict.as_str(),
                rto,
                report.summary.lost_acked.max.map(|v| v as i64),
                report.summary.window_ms.max,
                steps.len() as i64,
                steps.iter().filter(|s| s.over_budget()).count() as i64,
                serde_json::to_string(&expectations).expect("strings serialize"),
                report.to_json(),
            ],
        )
        .map_err(fail)?;
        let id = tx.last_insert_rowid();
        // Several trials: the steps of the first (a drill is usually one).
        let first = report.trials.first().map(|t| t.recovery.as_slice()).unwrap_or_default();
        for s in first {
            tx.execute(
                "INSERT INTO drill_steps (drill_id, step, action, target, duration_ms, budget_ms, ok, detail) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![id, s.step as i64, s.action, s.target, s.duration_ms, s.budget_ms, s.ok, s.detail],
            )
            .map_err(fail)?;
        }
        tx.commit().map_err(fail)?;
        Ok(id)
    }

    /// Drills, oldest first; of one scenario, or all.
    pub fn list(&self, scenario: Option<&str>) -> Result<Vec<Drill>, DrillLogError> {
        let mut query = self
            .db
            .prepare(
                "SELECT id, scenario, finished_at, run_dir, verdict, rto_ms, lost_acked, window_ms, steps, \
                 steps_over_budget, expectations FROM drills WHERE ?1 IS NULL OR scenario = ?1 ORDER BY id",
            )
            .map_err(|e| self.fail(e))?;
        let rows = query
            .query_map(params![scenario], |row| {
                let expectations: String = row.get(10)?;
                Ok(Drill {
                    id: row.get(0)?,
                    scenario: row.get(1)?,
                    finished_at: row.get(2)?,
                    run_dir: row.get(3)?,
                    verdict: row.get(4)?,
                    rto_ms: row.get(5)?,
                    lost_acked: row.get::<_, Option<i64>>(6)?.map(|v| v as u64),
                    window_ms: row.get(7)?,
                    steps: row.get(8)?,
                    steps_over_budget: row.get(9)?,
                    expectations: serde_json::from_str(&expectations).unwrap_or_default(),
                })
            })
            .map_err(|e| self.fail(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.fail(e))
    }

    /// The scenarios with at least one drill, for "did you mean".
    pub fn scenarios(&self) -> Result<Vec<String>, DrillLogError> {
        let mut query =
            self.db.prepare("SELECT DISTINCT scenario FROM drills ORDER BY scenario").map_err(|e| self.fail(e))?;
        let rows = query.query_map([], |row| row.get(0)).map_err(|e| self.fail(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.fail(e))
    }

    /// The stored report of a drill.
    pub fn report(&self, id: i64) -> Result<Option<RunReport>, DrillLogError> {
        let text: Option<String> = self
            .db
            .query_row("SELECT report FROM drills WHERE id = ?1", params![id], |row| row.get(0))
            .optional()
            .map_err(|e| self.fail(e))?;
        Ok(text.and_then(|t| RunReport::from_json(&t).ok()))
    }
}

/// A table of drills, oldest first, and the RTO trend.
pub fn render(drills: &[Drill]) -> String {
    use std::fmt::Write;
    let ms = |v: Option<f64>| v.map_or("-".into(), human);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:>4}  {:<20}  {:<24}  {:<7}  {:>9}  {:>5}  {:>9}  {:>11}  expectations",
        "#", "finished (UTC)", "scenario", "verdict", "RTO", "lost", "window", "over budget"
    );
    for d in drills {
        let _ = writeln!(
            out,
            "{:>4}  {:<20}  {:<24}  {:<7}  {:>9}  {:>5}  {:>9}  {:>11}  {}",
            d.id,
            d.finished_at,
            d.scenario,
            d.verdict,
            if d.rto_ms.is_none() && d.verdict != Verdict::Pass.as_str() { "never".into() } else { ms(d.rto_ms) },
            d.lost_acked.map_or("?".into(), |v| v.to_string()),
            ms(d.window_ms),
            format!("{}/{}", d.steps_over_budget, d.steps),
            d.expectations.join("; ")
        );
    }
    let rtos: Vec<f64> = drills.iter().filter_map(|d| d.rto_ms).collect();
    if rtos.len() >= 2 {
        let shown: Vec<String> = rtos.iter().rev().take(10).rev().map(|v| human(*v)).collect();
        let (last, previous) = (rtos[rtos.len() - 1], rtos[rtos.len() - 2]);
        let _ = writeln!(
            out,
            "RTO trend{}: {} (last vs previous: {:+.1}%)",
            if rtos.len() > 10 { " (last 10)" } else { "" },
            shown.join(" → "),
            (last - previous) / previous * 100.0
        );
    }
    out
}

fn human(ms: f64) -> String {
    if ms < 1000.0 {
        format!("{ms:.1}ms")
    } else if ms < 120_000.0 {
        format!("{:.2}s", ms / 1000.0)
    } else {
        format!("{:.1}min", ms / 60_000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reports::{Stats, Summary, FORMAT_VERSION};

    fn report(scenario: &str, rto: f64) -> RunReport {
        RunReport {
            format_version: FORMAT_VERSION,
            scenario: scenario.into(),
            seed: 1,
            verdict: Verdict::Pass,
            interrupted: false,
            error: None,
            trials: Vec::new(),
            summary: Summary { trials: 1, rto_ms: Stats::of([rto]), ..Default::default() },
            expectations: Vec::new(),
            warnings: Vec::new(),
            shard: None,
            merged_from: Vec::new(),
        }
    }

    #[test]
    fn drills_come_back_in_order_per_scenario() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE);
        let mut log = DrillLog::open(&path).unwrap();
        for (scenario, rto) in [("a", 100.0), ("b", 5.0), ("a", 150.0), ("a", 120.0)] {
            log.record(&report(scenario, rto), dir.path()).unwrap();
        }
        drop(log);
        let log = DrillLog::open_existing(&path).unwrap().expect("the file exists");
        let a = log.list(Some("a")).unwrap();
        assert_eq!(a.iter().map(|d| d.rto_ms.unwrap()).collect::<Vec<_>>(), [100.0, 150.0, 120.0]);
        assert_eq!(log.list(None).unwrap().len(), 4);
        assert_eq!(log.scenarios().unwrap(), ["a", "b"]);
        assert_eq!(log.report(a[1].id).unwrap().unwrap().summary.rto_ms.max, Some(150.0));
        let table = render(&a);
        assert!(table.contains("RTO trend: 100.0ms → 150.0ms → 120.0ms (last vs previous: -20.0%)"), "{table}");
        assert!(DrillLog::open_existing(&dir.path().join("none.sqlite")).unwrap().is_none());
    }
}
