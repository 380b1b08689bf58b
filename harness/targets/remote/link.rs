//! The control node's link to one host's agent, through a `crashlab
//! host-link` process (see [`super::relay`]): requests written as lines,
//! answers matched to them by id, events handed to their trial's recorder.
//! Events the agent reports are dated on its clock and brought onto this
//! one through an offset measured at connection: half the best of a few
//! round trips is the uncertainty of every time it reports.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::protocol::{agent_dir, monotonic_ns, Answer, Message, Op, Request, PROTOCOL};
use crate::history::{EventKind, Recorder};
use crate::journal::{Entry, Journal};
use crate::scenario::HostPlan;
use crate::targets::reaper;

/// How long a request may wait for its answer beyond what it asks for.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, thiserror::Error)]
#[error("host `{host}` ({destination}): {what}")]
pub struct LinkError {
    pub host: String,
    pub destination: String,
    pub what: String,
}

impl LinkError {
    fn new(host: &HostPlan, what: impl Into<String>) -> LinkError {
        LinkError { host: host.name.clone(), destination: host.destination(), what: what.into() }
    }
}

/// A live agent on one host.
pub struct AgentLink {
    pub host: HostPlan,
    /// The host's address, as targets on it are reached (`{host}`).
    pub address: std::net::IpAddr,
    /// The agent's directory there: its binary, and `run/` with its journal.
    pub dir: String,
    /// The best round trip to the agent, measured at connection; half of
    /// it bounds the error of every time the agent reports.
    pub round_trip: Duration,
    /// None once closed (the link's end).
    writer: Mutex<Option<ChildStdin>>,
    /// The `host-link` process's exit.
    exited: Mutex<Receiver<reaper::Exit>>,
    pending: Arc<Mutex<HashMap<u64, Sender<Answer>>>>,
    /// Where each trial's events go.
    recorders: Arc<Mutex<HashMap<u32, Recorder>>>,
    next_id: AtomicU64,
    /// This clock minus the agent's, in nanoseconds.
    offset_ns: Arc<AtomicI64>,
    /// `round_trip`, for the thread that dates the agent's events.
    round_trip_ns: Arc<AtomicU64>,
    /// Why the agent stopped answering, once it has.
    gone: Arc<Mutex<Option<String>>>,
}

impl AgentLink {
    /// Checks that `host` can be reached: its key known, the user let in.
    /// Nothing is made there.
    pub fn check(host: &HostPlan) -> Result<(), LinkError> {
        let mut command = relay_command(host, "-", true)?;
        let out =
            reaper::run(&mut command, Duration::from_secs(30)).map_err(|e| LinkError::new(host, e.to_string()))?;
        match out.exit {
            Some(exit) if exit.success() => Ok(()),
            _ if out.timed_out => Err(LinkError::new(host, "no answer in 30 s")),
            _ => Err(LinkError::new(host, out.stderr.trim())),
        }
    }

    /// Copies this binary into a directory of the run's on `host`
    /// (journaled before it is made), starts the agent there, and agrees
    /// on the protocol and the clocks. The agent's stderr goes to `log`.
    pub fn open(host: &HostPlan, token: &str, journal: &Journal, log: &Path) -> Result<AgentLink, LinkError> {
        let fail = |what: String| LinkError::new(host, what);
        let dir = agent_dir(token, &host.name);
        // Absolute paths, for a cleanup run from elsewhere.
        let absolute = |p: &Option<PathBuf>| p.as_ref().map(|p| std::path::absolute(p).unwrap_or_else(|_| p.clone()));
        let plan =
            HostPlan { identity: absolute(&host.identity), known_hosts: absolute(&host.known_hosts), ..host.clone() };
        journal
            .append(&Entry::Host {
                host: host.name.clone(),
                ssh: serde_json::to_value(&plan).expect("a host serializes"),
                dir: dir.clone(),
            })
            .map_err(|e| fail(format!("cannot journal the host: {e}")))?;
        let mut command = relay_command(&plan, &dir, false)?;
        let stderr = std::fs::File::create(log).map_err(|e| fail(format!("cannot create {}: {e}", log.display())))?;
        command.stderr(stderr);
        AgentLink::over(host, dir, command)
    }

    /// The link through `command` (which speaks the agent's side of the
    /// protocol on its stdin and stdout): hello, then the clocks.
    fn over(host: &HostPlan, dir: String, mut command: Command) -> Result<AgentLink, LinkError> {
        let fail = |what: String| LinkError::new(host, what);
        command.stdin(Stdio::piped()).stdout(Stdio::piped());
        let (mut child, exited) =
            reaper::spawn_for_the_run(&mut command).map_err(|e| fail(format!("cannot start ssh: {e}")))?;
        let mut link = AgentLink {
            host: host.clone(),
            address: resolve(&host.address).map_err(fail)?,
            dir,
            round_trip: Duration::ZERO,
            writer: Mutex::new(Some(child.stdin.take().expect("piped"))),
            exited: Mutex::new(exited),
            pending: Arc::default(),
            recorders: Arc::default(),
            next_id: AtomicU64::new(1),
            offset_ns: Arc::default(),
            round_trip_ns: Arc::default(),
            gone: Arc::default(),
        };
        link.read_answers(child.stdout.take().expect("piped"));
        link.hello()?;
        link.round_trip = link.measure_clock()?;
        link.round_trip_ns.store(link.round_trip.as_nanos() as u64, Ordering::Relaxed);
        Ok(link)
    }

    /// The agent's answers and events, as they come.
    fn read_answers(&self, stdout: std::process::ChildStdout) {
        let (pending, recorders, gone) =
            (Arc::clone(&self.pending), Arc::clone(&self.recorders), Arc::clone(&self.gone));
        let (offset, round_trip_ns) = (Arc::clone(&self.offset_ns), Arc::clone(&self.round_trip_ns));
        let host = self.host.name.clone();
        std::thread::spawn(move || {
            let mut why = "the agent ended (its connection closed)".to_string();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                match serde_json::from_str::<Message>(&line) {
                    Ok(Message::Reply { id, answer }) => {
                        if let Some(waiting) = pending.lock().unwrap().remove(&id) {
                            let _ = waiting.send(answer);
                        }
                    }
                    Ok(Message::Event { trial, at_ns, mut kind }) => {
                        // A fault the agent injected: dated on its clock.
                        if let EventKind::FaultInjected { detail, uncertainty_ms, .. } = &mut kind {
                            let uncertainty = Duration::from_nanos(round_trip_ns.load(Ordering::Relaxed) / 2);
                            *detail = dated(detail, &host, uncertainty);
                            *uncertainty_ms = Some(uncertainty.as_secs_f64() * 1000.0);
                        }
                        if let Some(recorder) = recorders.lock().unwrap().get(&trial) {
                            recorder.record_at(instant_of(at_ns, offset.load(Ordering::Relaxed)), kind);
                        }
                    }
                    Ok(Message::Failed { what }) => {
                        why = what;
                        break;
                    }
                    Err(e) => {
                        why = format!("the agent said something else than the protocol: {e}: {line}");
                        break;
                    }
                }
            }
            *gone.lock().unwrap() = Some(why);
            // Whoever still waits learns it now.
            pending.lock().unwrap().clear();
        });
    }

    fn hello(&self) -> Result<(), LinkError> {
        let version = env!("CARGO_PKG_VERSION").to_string();
        match self.call(Op::Hello { protocol: PROTOCOL, version: version.clone() }, Duration::ZERO)? {
            Answer::Hello { protocol, .. } if protocol == PROTOCOL => Ok(()),
            Answer::Hello { protocol, version: theirs, .. } => Err(self.error(format!(
                "the agent there speaks protocol {protocol} (crashlab {theirs}), this crashlab {PROTOCOL} (crashlab \
                 {version}): install the same version on both"
            ))),
            other => Err(self.error(format!("the agent answered hello with {other:?}"))),
        }
    }

    /// The offset between the agent's clock and this one, from the best
    /// of a few round trips (the agent read its clock within it: half of
    /// it is the uncertainty); returns that round trip.
    fn measure_clock(&self) -> Result<Duration, LinkError> {
        let mut best: Option<(u64, i64)> = None;
        for _ in 0..7 {
            let sent = monotonic_ns();
            let Answer::Clock { at_ns } = self.call(Op::Clock, Duration::ZERO)? else {
                return Err(self.error("the agent did not tell its clock".into()));
            };
            let back = monotonic_ns();
            let (trip, offset) = (back - sent, (sent / 2 + back / 2) as i64 - at_ns as i64);
            if best.is_none_or(|(t, _)| trip < t) {
                best = Some((trip, offset));
            }
        }
        let (trip, offset) = best.expect("measured");
        self.offset_ns.store(offset, Ordering::Relaxed);
        Ok(Duration::from_nanos(trip))
    }

    /// A time the agent reported (its CLOCK_MONOTONIC) on this clock.
    pub fn instant(&self, at_ns: u64) -> Instant {
        instant_of(at_ns, self.offset_ns.load(Ordering::Relaxed))
    }

    /// Events of `trial` the agent reports go to `recorder`.
    pub fn attach(&self, trial: u32, recorder: Recorder) {
        self.recorders.lock().unwrap().insert(trial, recorder);
    }

    /// Why the agent stopped answering, if it has.
    pub fn gone(&self) -> Option<LinkError> {
        self.gone.lock().unwrap().clone().map(|why| self.error(why))
    }

    pub fn error(&self, what: String) -> LinkError {
        LinkError::new(&self.host, what)
    }

    /// Sends `op` and waits for its answer (up to `extra` more than usual).
    pub fn call(&self, op: Op, extra: Duration) -> Result<Answer, LinkError> {
        if let Some(why) = self.gone.lock().unwrap().clone() {
            return Err(self.error(why));
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = channel();
        self.pending.lock().unwrap().insert(id, tx);
        let mut line = serde_json::to_string(&Request { id, op }).expect("a request serializes");
        line.push('\n');
        let written = match self.writer.lock().unwrap().as_mut() {
            Some(writer) => writer.write_all(line.as_bytes()).and_then(|()| writer.flush()),
            None => Err(std::io::Error::other("the link is closed")),
        };
        if let Err(e) = written {
            self.pending.lock().unwrap().remove(&id);
            return Err(self.error(format!("cannot write to the agent: {e}")));
        }
        match rx.recv_timeout(ANSWER_TIMEOUT + extra) {
            Ok(Answer::Error { error }) => Err(self.error(error)),
            Ok(answer) => Ok(answer),
            Err(e) => {
                self.pending.lock().unwrap().remove(&id);
                let why = self.gone.lock().unwrap().clone();
                Err(self.error(why.unwrap_or_else(|| format!("no answer: {e}"))))
            }
        }
    }
}

impl Drop for AgentLink {
    /// Closes the link: the agent stops its targets and ends, the
    /// `host-link` process removes the agent's copy and ends; waited for,
    /// so that nothing of the run outlives it.
    fn drop(&mut self) {
        drop(self.writer.lock().unwrap().take());
        let _ = self.exited.lock().unwrap().recv_timeout(LINK_CLOSE_TIMEOUT);
    }
}

/// How long the end of a run waits for a link to close.
const LINK_CLOSE_TIMEOUT: Duration = Duration::from_secs(20);

/// This binary's `host-link` for `host`.
fn relay_command(host: &HostPlan, dir: &str, check: bool) -> Result<Command, LinkError> {
    let exe = std::env::current_exe().map_err(|e| LinkError::new(host, format!("cannot find this binary: {e}")))?;
    let mut command = Command::new(exe);
    let json = serde_json::to_string(host).expect("a host serializes");
    command.args(["host-link", "--host", &json, "--dir", dir]);
    if check {
        command.arg("--check");
    }
    Ok(command)
}

/// A fault's detail, saying which host it acted on and how far off its
/// time may be.
pub fn dated(detail: &str, host: &str, uncertainty: Duration) -> String {
    format!(
        "{detail} (on host `{host}`, dated by its agent within ±{:.2} ms: half the round trip to it)",
        uncertainty.as_secs_f64() * 1000.0
    )
}

/// The agent's CLOCK_MONOTONIC nanoseconds as an instant of this clock.
fn instant_of(at_ns: u64, offset_ns: i64) -> Instant {
    let (now, mono) = (Instant::now(), monotonic_ns());
    match mono.checked_sub(at_ns.saturating_add_signed(offset_ns)) {
        Some(ago) => now - Duration::from_nanos(ago),
        None => now,
    }
}

fn resolve(address: &str) -> Result<std::net::IpAddr, String> {
    use std::net::ToSocketAddrs;
    (address, 22)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .map(|a| a.ip())
        .ok_or_else(|| format!("cannot resolve `{address}`"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> HostPlan {
        HostPlan {
            name: "h1".into(),
            address: "127.0.0.1".into(),
            user: None,
            port: None,
            identity: None,
            known_hosts: None,
            engine: None,
        }
    }

    /// An agent of another protocol is refused, both versions named.
    #[test]
    fn an_agent_of_another_protocol_is_refused() {
        let reply =
            r#"{"message":"reply","id":1,"answer":"hello","protocol":99,"version":"9.9.9","pid":1,"start_time":1}"#;
        let mut agent = Command::new("sh");
        agent.args(["-c", &format!("read request; echo '{reply}'; read more")]);
        let e = AgentLink::over(&host(), "/nowhere".into(), agent).err().expect("refused");
        let said = e.to_string();
        assert!(
            said.starts_with("host `h1` (127.0.0.1): the agent there speaks protocol 99 (crashlab 9.9.9)"),
            "{said}"
        );
        assert!(said.contains(&format!("this crashlab {PROTOCOL} (crashlab {})", env!("CARGO_PKG_VERSION"))), "{said}");
    }
}
