//! Cancellation: one token per scope, cancelled by its owner or by any
//! token it was made from (a trial's token by the run's Ctrl-C).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Default)]
pub struct Cancel {
    flag: Arc<AtomicBool>,
    /// The flags of the tokens this one was made from.
    parents: Vec<Arc<AtomicBool>>,
}

impl Cancel {
    pub fn new() -> Cancel {
        Cancel::default()
    }

    /// A token cancelled when `flag` is set (a signal handler's flag).
    pub fn from_flag(flag: Arc<AtomicBool>) -> Cancel {
        Cancel { flag, parents: Vec::new() }
    }

    /// A token of its own, also cancelled when this one is.
    pub fn child(&self) -> Cancel {
        let mut parents = self.parents.clone();
        parents.push(Arc::clone(&self.flag));
        Cancel { flag: Arc::default(), parents }
    }

    pub fn cancel(&self) {
        self.flag.store(true, Ordering::Relaxed);
    }

    pub fn is_cancelled(&self) -> bool {
        self.flag.load(Ordering::Relaxed) || self.parents.iter().any(|p| p.load(Ordering::Relaxed))
    }

    /// Whether a token this one was made from is cancelled (the run was
    /// interrupted, rather than this scope ended by its owner).
    pub fn is_parent_cancelled(&self) -> bool {
        self.parents.iter().any(|p| p.load(Ordering::Relaxed))
    }

    /// Sleeps until `at`, waking early (and returning false) on cancel.
    pub fn sleep_until(&self, at: Instant) -> bool {
        loop {
            if self.is_cancelled() {
                return false;
            }
            let now = Instant::now();
            if now >= at {
                return true;
            }
            thread::sleep((at - now).min(Duration::from_millis(20)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_is_cancelled_by_its_parent_and_not_the_other_way() {
        let run = Cancel::new();
        let trial = run.child();
        let step = trial.child();
        trial.cancel();
        assert!(trial.is_cancelled() && step.is_cancelled() && step.is_parent_cancelled());
        assert!(!run.is_cancelled() && !trial.is_parent_cancelled());
        run.cancel();
        assert!(trial.is_parent_cancelled());
        assert!(Cancel::new().child().sleep_until(Instant::now() + Duration::from_millis(1)));
        assert!(!trial.sleep_until(Instant::now() + Duration::from_secs(60)));
    }
}
