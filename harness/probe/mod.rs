//! Probes: what "healthy" means. RTO is defined by them: a sample is one
//! attempt, and a sustained healthy window is `healthy_after` consecutive
//! successes, dated by the start of its first attempt.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::demo::protocol::Client;
use crate::history::{EventKind, Recorder};
use crate::scenario::{PortRef, ProbeKind, ProbePlan};
use crate::targets::Target;

/// One attempt: `Ok` if healthy, otherwise why not. Attempts may overlap
/// (see [`Sampler`]), so a probe keeps no state between them.
pub trait Probe: Send + Sync {
    fn sample(&self) -> Result<(), String>;
}

struct TcpProbe {
    addr: SocketAddr,
    timeout: Duration,
    /// A request to send and a text the first line of its answer must contain.
    exchange: Option<(String, String)>,
}

impl Probe for TcpProbe {
    fn sample(&self) -> Result<(), String> {
        let mut stream = TcpStream::connect_timeout(&self.addr, self.timeout).map_err(|e| e.to_string())?;
        let Some((send, expect)) = &self.exchange else { return Ok(()) };
        let deadline = Instant::now() + self.timeout;
        stream.write_all(send.as_bytes()).map_err(|e| e.to_string())?;
        let mut answer = Vec::new();
        let mut buf = [0u8; 512];
        while !String::from_utf8_lossy(&answer).contains(expect.as_str()) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!("no `{expect}` within {:?}", self.timeout));
            }
            stream.set_read_timeout(Some(left)).map_err(|e| e.to_string())?;
            match stream.read(&mut buf) {
                Ok(0) => return Err(format!("closed without `{expect}`")),
                Ok(n) => answer.extend_from_slice(&buf[..n]),
                Err(e) => return Err(e.to_string()),
            }
            // A complete first line that lacks it is a different answer
            // (Redis's `-LOADING`): unhealthy now, not after the timeout.
            let text = String::from_utf8_lossy(&answer);
            if let Some((line, _)) = text.split_once('\n') {
                if !line.contains(expect.as_str()) {
                    return Err(format!("answered `{}`, not `{expect}`", line.trim_end()));
                }
            }
        }
        Ok(())
    }
}

struct DemoKvProbe {
    addr: SocketAddr,
    timeout: Duration,
}

impl Probe for DemoKvProbe {
    fn sample(&self) -> Result<(), String> {
        Client::connect(self.addr, self.timeout).and_then(|mut c| c.ping()).map_err(|e| e.to_string())
    }
}

/// A GET through the `http` workload's client: a status and, optionally,
/// a text the body must contain.
struct HttpProbe {
    agent: ureq::Agent,
    url: String,
    status: u16,
    body_contains: Option<String>,
}

impl Probe for HttpProbe {
    fn sample(&self) -> Result<(), String> {
        let response = self.agent.get(&self.url).call().map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        if status != self.status {
            return Err(format!("HTTP status {status}, expected {}", self.status));
        }
        if let Some(needle) = &self.body_contains {
            let body = response.into_body().with_config().limit(1 << 20).read_to_string().map_err(|e| e.to_string())?;
            if !body.contains(needle.as_str()) {
                return Err(format!("body does not contain `{needle}`"));
            }
        }
        Ok(())
    }
}

struct CommandProbe {
    target: Arc<dyn Target>,
    argv: Vec<String>,
    timeout: Duration,
}

impl Probe for CommandProbe {
    fn sample(&self) -> Result<(), String> {
        let out = self
            .target
            .exec(&self.argv, self.timeout, crate::targets::CommandKind::Probe)
            .map_err(|e| e.to_string())?;
        match out.exit {
            Some(exit) if exit.success() => Ok(()),
            Some(exit) => Err(format!("{exit}: {}", out.stderr.trim())),
            None => Err(format!("no answer within {:?}", self.timeout)),
        }
    }
}

/// The probe a plan describes; `proxy_port` gives the port of a proxy that
/// the probe goes through (`port = "{proxy.NAME}"`).
pub fn build(plan: &ProbePlan, target: Arc<dyn Target>, proxy_port: impl Fn(&str) -> u16) -> Box<dyn Probe> {
    let addr = |port: &PortRef| match port {
        PortRef::Allocated => SocketAddr::new(target.host(), target.port()),
        // Proxies listen on the harness's own loopback.
        PortRef::Proxy(name) => SocketAddr::from(([127, 0, 0, 1], proxy_port(name))),
        PortRef::Fixed(p) => SocketAddr::new(target.host(), *p),
    };
    let timeout = plan.timeout;
    match &plan.kind {
        ProbeKind::Tcp { port, send, expect } => {
            Box::new(TcpProbe { addr: addr(port), timeout, exchange: send.clone().zip(expect.clone()) })
        }
        ProbeKind::DemoKv { port } => Box::new(DemoKvProbe { addr: addr(port), timeout }),
        ProbeKind::Http { port, path, status, body_contains } => Box::new(HttpProbe {
            // A new connection each sample: a service that accepts none is
            // not healthy, whatever an old connection still answers.
            agent: crate::workload::http::agent(timeout, 0),
            url: format!("http://{}{path}", addr(port)),
            status: *status,
            body_contains: body_contains.clone(),
        }),
        ProbeKind::Command { argv } => Box::new(CommandProbe { target, argv: argv.clone(), timeout }),
    }
}

type Sample = (u64, Instant, bool);

/// The latest samples, for those waiting on health.
#[derive(Default)]
pub struct Health {
    /// The next sequence number, and the latest samples `(seq, start, healthy)`.
    samples: Mutex<(u64, VecDeque<Sample>)>,
    changed: Condvar,
    /// Why the latest failed sample failed, as the probe said it.
    last_failure: Mutex<Option<String>>,
    /// Some sample has been healthy (the target came up once).
    ever_healthy: AtomicBool,
}

const KEEP: usize = 4096;

impl Health {
    /// Why the probe's latest failed sample failed (`None`: none failed).
    pub fn last_failure(&self) -> Option<String> {
        self.last_failure.lock().unwrap().clone()
    }

    /// Since when every sample answered has failed: the start of the
    /// oldest failed sample after the latest healthy one (`None`: the
    /// latest answered was healthy, or none answered).
    pub fn unhealthy_since(&self) -> Option<Instant> {
        let s = self.samples.lock().unwrap();
        let failing = s.1.iter().rev().take_while(|(_, _, healthy)| !healthy);
        failing.map(|(_, at, _)| *at).min()
    }

    /// Whether the latest `n` samples answered were all healthy and all
    /// started at or after `after`: a sustained healthy window that still
    /// holds.
    pub fn holds_sustained(&self, after: Instant, n: u32) -> bool {
        let s = self.samples.lock().unwrap();
        let mut latest = s.1.iter().rev();
        (0..n).all(|_| latest.next().is_some_and(|(_, at, healthy)| *healthy && *at >= after))
    }

    fn push(&self, at: Instant, result: &Result<(), String>) {
        let healthy = result.is_ok();
        if healthy {
            self.ever_healthy.store(true, Ordering::Relaxed);
        }
        if let Err(why) = result {
            *self.last_failure.lock().unwrap() = Some(why.clone());
        }
        let mut s = self.samples.lock().unwrap();
        let seq = s.0;
        s.0 += 1;
        s.1.push_back((seq, at, healthy));
        if s.1.len() > KEEP {
            s.1.pop_front();
        }
        self.changed.notify_all();
    }

    /// Waits for `n` consecutive healthy samples that all started at or after
    /// `after`; returns the start of the first of them, or `None` at the
    /// deadline or on cancel.
    pub fn wait_sustained(
        &self,
        after: Instant,
        n: u32,
        deadline: Instant,
        cancel: &crate::cancel::Cancel,
    ) -> Option<Instant> {
        let (mut next, mut streak, mut start) = (0u64, 0u32, None);
        let mut guard = self.samples.lock().unwrap();
        loop {
            let from = next;
            for &(seq, at, healthy) in guard.1.iter().filter(|(seq, ..)| *seq >= from) {
                next = seq + 1;
                if at < after {
                    continue;
                }
                if !healthy {
                    streak = 0;
                    continue;
                }
                if streak == 0 {
                    start = Some(at);
                }
                streak += 1;
                if streak >= n {
                    return start;
                }
            }
            let now = Instant::now();
            if now >= deadline || cancel.is_cancelled() {
                return None;
            }
            guard = self.changed.wait_timeout(guard, (deadline - now).min(Duration::from_millis(50))).unwrap().0;
        }
    }
}

/// Samples a probe on a fixed period until stopped, recording every sample.
///
/// A sample starts every interval whether or not the previous one has
/// answered: a connect that hangs (sent as the old listener went away) must
/// not blind the probe for its whole timeout, or RTO's resolution would be
/// the timeout instead of the interval. Up to [`MAX_IN_FLIGHT`] samples run
/// at once; each is dated by its own start and answer.
pub struct Sampler {
    pub health: Arc<Health>,
    /// When sampling began (after the target was started): every sample
    /// is of the target, from then on.
    pub started: Instant,
    /// Dropped to stop: the ticker wakes at once, not at its next tick.
    stop: Option<std::sync::mpsc::Sender<()>>,
    threads: Vec<JoinHandle<()>>,
}

/// Samples of one probe that may be waiting for an answer at once: one per
/// interval through the whole timeout at the defaults (101 at 5 ms and
/// 500 ms). A connect sent to a container's address as its link went away
/// is dropped, not refused, and hangs until its timeout: with 8, as it was,
/// those 8 hung samples hid the container's return for ~200 ms (`cargo
/// bench --bench container_rto`). Workers are started only when every one
/// is waiting, so a target that answers costs one.
pub const MAX_IN_FLIGHT: usize = 128;

/// Samples of a command probe that may be in flight at once. Each is a
/// process, not a thread waiting on a socket: with 128, `pg_isready` every
/// 20 ms through a 2 s timeout kept ~100 of them running on 2 cores, each
/// took 1-2 s to answer on an idle machine, and under CI's load every one
/// outlived its timeout, so a PostgreSQL that was up never looked healthy.
/// 8 is what every probe ran with before.
pub const MAX_COMMANDS_IN_FLIGHT: usize = 8;

/// How many samples of a probe of `kind` may wait for an answer at once.
fn most_in_flight(kind: &ProbeKind) -> usize {
    match kind {
        ProbeKind::Command { .. } => MAX_COMMANDS_IN_FLIGHT,
        ProbeKind::Tcp { .. } | ProbeKind::Http { .. } | ProbeKind::DemoKv { .. } => MAX_IN_FLIGHT,
    }
}

/// The probe's first period while the target has not answered healthy
/// yet; it doubles at each tick up to the probe's interval, so that a
/// target up in a few milliseconds is seen then, and one that takes
/// seconds (a database replaying its log) gets a handful more samples, not
/// a thousand a second.
const START_UP_TICK: Duration = Duration::from_millis(1);

impl Sampler {
    pub fn start(target: &str, probe: Box<dyn Probe>, plan: &ProbePlan, recorder: Recorder) -> Sampler {
        let (health, started) = (Arc::new(Health::default()), Instant::now());
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        // Enough workers to start one sample per interval while the others
        // wait out their timeout; one when they never overlap.
        let most = (plan.timeout.as_nanos() / plan.interval.as_nanos().max(1) + 1)
            .clamp(1, most_in_flight(&plan.kind) as u128);
        let (ticks, jobs) = std::sync::mpsc::channel::<()>();
        let pool = Workers {
            target: target.to_string(),
            probe: Arc::from(probe),
            health: Arc::clone(&health),
            recorder,
            jobs: Arc::new(Mutex::new(jobs)),
            idle: Arc::default(),
        };
        let (interval, up) = (plan.interval, Arc::clone(&health));
        let ticker = move || {
            // Workers are started when a tick finds every one of them
            // waiting on an answer: a target that answers within the
            // interval costs one thread, not one per sample that could be
            // in flight.
            let mut workers = Vec::new();
            let (mut next, mut start_up) = (Instant::now(), START_UP_TICK);
            loop {
                let mut claimed =
                    pool.idle.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
                if !claimed && workers.len() < most as usize {
                    workers.push(pool.spawn(workers.len()));
                    claimed = true;
                }
                // A tick with every worker waiting on an answer is skipped.
                if claimed && ticks.send(()).is_err() {
                    break;
                }
                // Until the target first answers, ticks come faster: its
                // readiness is seen as soon as it is there.
                next += if up.ever_healthy.load(Ordering::Relaxed) { interval } else { interval.min(start_up) };
                start_up = start_up.saturating_mul(2);
                let now = Instant::now();
                let wait = next.saturating_duration_since(now);
                if wait.is_zero() {
                    next = now;
                }
                // The tick's wait; the stop (its sender dropped) ends it.
                if stopped.recv_timeout(wait) != Err(std::sync::mpsc::RecvTimeoutError::Timeout) {
                    break;
                }
            }
            // Closing the channel ends the workers, once their sample has.
            drop(ticks);
            for worker in workers {
                let _ = worker.join();
            }
        };
        let name = format!("probe-{target}");
        let threads = vec![thread::Builder::new().name(name).spawn(ticker).expect("a probe thread can be started")];
        Sampler { health, started, stop: Some(stop), threads }
    }

    /// Asks the sampler to stop without waiting for it (a sample in flight
    /// still ends): a trial stopping many samplers waits once, not once
    /// per interval each.
    pub fn begin_stop(&mut self) {
        self.stop = None;
    }

    pub fn stop(&mut self) {
        self.begin_stop();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// What a sampler's workers share: each takes a tick, samples, records.
struct Workers {
    target: String,
    probe: Arc<dyn Probe>,
    health: Arc<Health>,
    recorder: Recorder,
    jobs: Arc<Mutex<std::sync::mpsc::Receiver<()>>>,
    /// Workers waiting for a tick.
    idle: Arc<std::sync::atomic::AtomicUsize>,
}

impl Workers {
    /// Starts worker `n`, busy with the tick that made it.
    fn spawn(&self, n: usize) -> JoinHandle<()> {
        let (probe, health, idle, jobs, recorder) = (
            Arc::clone(&self.probe),
            Arc::clone(&self.health),
            Arc::clone(&self.idle),
            Arc::clone(&self.jobs),
            self.recorder.clone(),
        );
        let target = self.target.clone();
        let worker = move || {
            // Each tick is one sample; the channel closes at the stop.
            while jobs.lock().unwrap().recv().is_ok() {
                let at = Instant::now();
                let result = probe.sample();
                let latency_ms = at.elapsed().as_secs_f64() * 1000.0;
                health.push(at, &result);
                let (healthy, detail) = (result.is_ok(), result.err());
                recorder.record_at(at, EventKind::Probe { target: target.clone(), healthy, latency_ms, detail });
                idle.fetch_add(1, Ordering::SeqCst);
            }
        };
        let name = format!("probe-{}-{n}", self.target);
        thread::Builder::new().name(name).spawn(worker).expect("a probe thread can be started")
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod sustained_tests {
    use super::*;

    #[test]
    fn a_sustained_window_holds_only_while_its_latest_samples_are_healthy_and_recent() {
        let health = Health::default();
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        for (ms, ok) in [(0, false), (5, true), (10, true), (15, true)] {
            health.push(at(ms), &if ok { Ok(()) } else { Err("refused".into()) });
        }
        assert!(health.holds_sustained(at(1), 3), "three healthy samples since 1 ms");
        assert!(!health.holds_sustained(at(6), 3), "one of them began before 6 ms");
        assert!(!health.holds_sustained(at(1), 4), "only three");
        health.push(at(20), &Err("refused".into()));
        assert!(!health.holds_sustained(at(1), 3), "the latest failed: no longer healthy");
    }
}

#[cfg(test)]
mod in_flight_tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// A sample that takes 200 ms, counting how many run at once.
    struct Slow {
        now: Arc<AtomicUsize>,
        most: Arc<AtomicUsize>,
    }

    impl Probe for Slow {
        fn sample(&self) -> Result<(), String> {
            let n = self.now.fetch_add(1, Ordering::SeqCst) + 1;
            self.most.fetch_max(n, Ordering::SeqCst);
            thread::sleep(Duration::from_millis(200));
            self.now.fetch_sub(1, Ordering::SeqCst);
            Ok(())
        }
    }

    fn most_at_once(kind: ProbeKind) -> usize {
        let (now, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let plan =
            ProbePlan { kind, interval: Duration::from_millis(5), timeout: Duration::from_secs(2), healthy_after: 1 };
        let probe = Box::new(Slow { now, most: Arc::clone(&most) });
        let mut sampler = Sampler::start("t", probe, &plan, Recorder::new(0));
        thread::sleep(Duration::from_millis(600));
        sampler.stop();
        most.load(Ordering::SeqCst)
    }

    #[test]
    fn a_command_probe_runs_at_most_8_processes_at_once_a_socket_probe_many_more() {
        let command = most_at_once(ProbeKind::Command { argv: vec!["true".into()] });
        assert!((2..=MAX_COMMANDS_IN_FLIGHT).contains(&command), "{command} command samples at once");
        let tcp = most_at_once(ProbeKind::Tcp { port: PortRef::Allocated, send: None, expect: None });
        assert!(tcp > 2 * MAX_COMMANDS_IN_FLIGHT, "{tcp} tcp samples at once: a hung connect must not blind it");
    }
}
