//! Run directories: `crashlab-runs/<scenario>-<UTC date>-<time>`.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// Creates a fresh directory for a run; never reuses an existing one.
pub fn new_run_dir(base: &Path, scenario: &str) -> io::Result<PathBuf> {
    std::fs::create_dir_all(base)?;
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let stamp = utc_stamp(secs);
    let safe: String =
        scenario.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect();
    for n in 0.. {
        let name = if n == 0 { format!("{safe}-{stamp}") } else { format!("{safe}-{stamp}-{n}") };
        let dir = base.join(name);
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    unreachable!("some suffix is free")
}

/// `YYYYMMDD-HHMMSS` in UTC, from Unix seconds.
fn utc_stamp(secs: u64) -> String {
    let rfc3339 = humantime::format_rfc3339_seconds(UNIX_EPOCH + std::time::Duration::from_secs(secs)).to_string();
    let digits: String = rfc3339.chars().filter(char::is_ascii_digit).collect();
    format!("{}-{}", &digits[..8], &digits[8..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_known_dates() {
        assert_eq!(utc_stamp(0), "19700101-000000");
        assert_eq!(utc_stamp(1_795_307_990), "20261122-003950");
    }
}
