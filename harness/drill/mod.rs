//! Drills: runbooks run with people in the loop and kept in a log. The
//! steps themselves are executed by the runner's procedure
//! (`runner::recover`); here are who confirms the manual ones and the
//! drill log that `crashlab history` reads.

pub mod log;
mod operator;

pub use log::{render, Drill, DrillLog, DrillLogError, FILE};
pub use operator::Operator;
