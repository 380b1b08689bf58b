//! A target that only records what is done to it, and a trial to run it
//! in: each phase of the lifecycle is tested against these, without
//! processes, containers or a probe.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::{RunShared, Trial};
use crate::cancel::Cancel;
use crate::history::Recorder;
use crate::journal::Journal;
use crate::scenario::{Plan, SignalScope};
use crate::targets::{reaper, CommandKind, HostProcess, Signalled, Target, TargetError};

/// What was done, to which target, in order.
pub type Log = Arc<Mutex<Vec<String>>>;

pub struct FakeTarget {
    pub name: String,
    pub log: Log,
    /// What it records when settled, and at the latest when stopped, as a
    /// container records a restart its engine made.
    pub on_settle: Option<Box<dyn Fn() + Send + Sync>>,
}

impl FakeTarget {
    fn note(&self, what: &str) {
        self.log.lock().unwrap().push(format!("{what} {}", self.name));
    }

    const PROCESS: HostProcess = HostProcess { pid: 1, start_time: 1, incarnation: 1 };
}

impl Target for FakeTarget {
    fn name(&self) -> &str {
        &self.name
    }
    fn start(&self) -> Result<(), TargetError> {
        self.note("start");
        Ok(())
    }
    fn signal(&self, signal: Signal, _scope: SignalScope) -> Result<Signalled, TargetError> {
        self.note(signal.as_str());
        Ok(Signalled { process: Self::PROCESS, at: Instant::now(), processes: None })
    }
    fn default_scope(&self) -> SignalScope {
        SignalScope::Group
    }
    fn pause(&self) -> Result<HostProcess, TargetError> {
        self.note("pause");
        Ok(Self::PROCESS)
    }
    fn resume(&self, _: HostProcess) -> Result<(), TargetError> {
        self.note("resume");
        Ok(())
    }
    fn restart(&self) -> Result<HostProcess, TargetError> {
        self.note("restart");
        Ok(Self::PROCESS)
    }
    fn hold(&self, _: Signal) -> Option<HostProcess> {
        self.note("hold");
        Some(Self::PROCESS)
    }
    fn release(&self) {
        self.note("release");
    }
    fn stop(&self) {
        self.settle();
        self.note("stop");
    }
    fn settle(&self) {
        if let Some(settle) = &self.on_settle {
            settle();
        }
    }
    fn exec(&self, argv: &[String], _: Duration, _: CommandKind) -> Result<reaper::Output, TargetError> {
        self.note(&format!("exec {}", argv.join(" ")));
        Err(TargetError::NotRunning { target: self.name.clone() })
    }
    fn host_process(&self) -> Option<HostProcess> {
        Some(Self::PROCESS)
    }
    fn port(&self) -> u16 {
        0
    }
    fn host(&self) -> IpAddr {
        IpAddr::from([127, 0, 0, 1])
    }
    fn data_dirs(&self) -> Vec<PathBuf> {
        Vec::new()
    }
    fn last_log_lines(&self, _: usize) -> Vec<String> {
        vec![format!("the last words of {}", self.name)]
    }
}

/// Runs `body` with trial 0 of the scenario `text` in a temporary run
/// directory (with its journal), as the runner would.
pub fn with_trial(text: &str, body: impl FnOnce(&Trial)) {
    let dir = tempfile::tempdir().unwrap();
    let plan: Plan = crate::scenario::compile(Path::new("fake.toml"), text).expect("a valid scenario");
    let journal = Arc::new(Journal::create(dir.path()).unwrap());
    let cancel = Cancel::new();
    let run = RunShared {
        run_dir: dir.path(),
        journal: &journal,
        network: None,
        containers: None,
        hosts: None,
        pods: None,
        source: text,
        cancel: &cancel,
        operator: crate::drill::Operator::AssumeYes,
    };
    let trial = Trial {
        plan: &plan,
        index: 0,
        seed: 1,
        dir: dir.path().join("trial-000"),
        recorder: Recorder::new(0),
        cancel: cancel.child(),
        run,
    };
    body(&trial);
}
