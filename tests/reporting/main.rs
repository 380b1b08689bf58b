//! What a run tells: report formats, the HTML report, bench statistics, drills and their log.
//!
//! One test binary per area; each module below is one file of tests/reporting/.

#[path = "../common/mod.rs"]
mod common;

mod bench;
mod drills;
mod html_report;
mod reports;
mod shards;
