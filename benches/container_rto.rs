//! A container target's RTO as crashlab measures it, against a raw loop
//! probed the same way, in the same run: the loop kills demo-kv's container
//! through the engine, waits until the engine says it stopped, starts it,
//! and samples it meanwhile as crashlab's probe does (every 5 ms, 500 ms
//! timeout, as many samples in flight as crashlab's probe, recovered at the first of 3
//! consecutive healthy samples). What crashlab adds beyond the engine's own
//! kill → start and the host's network is the ratio's excess over 1.
//!
//!     cargo bench --bench container_rto
//!
//! Both paths to the container, each against the loop on the same path:
//! its own address (crashlab's default: a network of the run; the loop's
//! container is on the engine's default bridge) and its port as published
//! on 127.0.0.1 (`reach = "published"`). Besides the RTO (the start of the
//! first sample of the recovered window), when that sample was answered:
//! a sample that waits (a connection the host holds until it has re-learned
//! the container's link-layer address) is dated at its start, so the RTO
//! of either can be earlier than any answer by up to the probe's timeout.
//! Needs a Docker engine; says SKIPPED without one.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crashlab::engine::{ContainerSpec, Engine};

const TRIALS: usize = 8;
const INTERVAL: Duration = Duration::from_millis(5);
const TIMEOUT: Duration = Duration::from_millis(500);
/// As crashlab's probe: a sample per interval while the others wait.
const IN_FLIGHT: usize = crashlab::probe::MAX_IN_FLIGHT;
const HEALTHY_AFTER: usize = 3;

fn crashlab() -> Command {
    Command::new(env!("CARGO_BIN_EXE_crashlab"))
}

const SCENARIO: &str = r#"name = "container-rto"
[target.kv]
kind = "container"
image = "crashlab/demo-kv"
reach = "REACH"
command = ["/crashlab", "demo-kv", "--host", "{host}", "--port", "{port}", "--data-dir", "{data_dir}", "--fsync", "always"]
probe = { kind = "demo-kv", interval = "5ms", timeout = "500ms", healthy_after = 3 }
[workload]
kind = "demo-kv"
target = "kv"
rate = 200
duration = "2500ms"
[[fault]]
kind = "kill"
target = "kv"
at = "500ms"
[expect]
lost_acked = 0
"#;

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Each trial of `crashlab bench` on the scenario,
/// run as a user runs it (relative path, default run directory).
fn crashlab_trials(reach: &str) -> Vec<Trial> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("container.toml"), SCENARIO.replace("REACH", reach)).unwrap();
    let out = crashlab()
        .args(["bench", "container.toml", "--trials", &TRIALS.to_string(), "--seed", "1"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "crashlab bench: {}\n{said}", out.status);
    let runs = dir.path().join("crashlab-runs");
    let run = std::fs::read_dir(&runs).unwrap().flatten().find(|e| e.path().is_dir()).unwrap().path();
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("report.json")).unwrap()).unwrap();
    let history = std::fs::read_to_string(run.join("history.jsonl")).unwrap();
    let events: Vec<serde_json::Value> = history.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let trials = report["trials"].as_array().unwrap();
    trials
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let f = &t["faults"][0];
            let killed = f["injected_at_ms"].as_f64().unwrap();
            let rto = f["rto_ms"].as_f64().expect("recovered");
            // The first healthy sample of the recovered window, answered.
            let window = events
                .iter()
                .filter(|e| e["trial"] == i && e["event"] == "probe" && e["healthy"] == true)
                .filter_map(|e| Some((e["t_ms"].as_f64()?, e["latency_ms"].as_f64()?)))
                .find(|(at, _)| *at >= killed + rto - 0.01)
                .expect("the window's first sample");
            Trial { restart: f["restart_ms"].as_f64().expect("restarted"), rto, answered: window.0 + window.1 - killed }
        })
        .collect()
}

/// A trial's figures, in ms from the kill: the container running again,
/// the RTO (the start of the first sample of the recovered window), and
/// when that sample was answered.
struct Trial {
    restart: f64,
    rto: f64,
    answered: f64,
}

/// One demo-kv PING, as crashlab's probe sends it.
fn ping(addr: SocketAddr) -> bool {
    let exchange = || -> std::io::Result<bool> {
        let mut s = TcpStream::connect_timeout(&addr, TIMEOUT)?;
        s.set_read_timeout(Some(TIMEOUT))?;
        s.write_all(b"PING\n")?;
        let mut answer = [0u8; 5];
        s.read_exact(&mut answer)?;
        Ok(&answer == b"PONG\n")
    };
    exchange().unwrap_or(false)
}

/// Samples `addr` every interval (a new sample only while fewer than
/// IN_FLIGHT wait) until `done`; each sample's start and answer.
fn sample_until(addr: SocketAddr, done: impl Fn() -> bool) -> Vec<Sample> {
    let samples = Arc::new(Mutex::new(Vec::new()));
    let in_flight = Arc::new(AtomicUsize::new(0));
    let mut next = Instant::now();
    while !done() {
        if in_flight.load(Ordering::SeqCst) < IN_FLIGHT {
            in_flight.fetch_add(1, Ordering::SeqCst);
            let (samples, in_flight) = (Arc::clone(&samples), Arc::clone(&in_flight));
            std::thread::spawn(move || {
                let at = Instant::now();
                let ok = ping(addr);
                samples.lock().unwrap().push(Sample { at, answered: Instant::now(), ok });
                in_flight.fetch_sub(1, Ordering::SeqCst);
            });
        }
        next += INTERVAL;
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    while in_flight.load(Ordering::SeqCst) > 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut samples = std::mem::take(&mut *samples.lock().unwrap());
    samples.sort_by_key(|s| s.at);
    samples
}

/// The first run of HEALTHY_AFTER healthy samples after the first
/// unhealthy one (crashlab's RTO is its start), after `from`: its first
/// sample's start and answer.
fn recovered_at(samples: &[Sample], from: Instant) -> Option<(Instant, Instant)> {
    let after: Vec<_> = samples.iter().filter(|s| s.at >= from).collect();
    let down = after.iter().position(|s| !s.ok)?;
    after[down..].windows(HEALTHY_AFTER).find(|w| w.iter().all(|s| s.ok)).map(|w| (w[0].at, w[0].answered))
}

struct Sample {
    at: Instant,
    answered: Instant,
    ok: bool,
}

/// Each trial of the raw loop, probing the container's published port or
/// its own address.
fn raw_trials(engine: &Engine, image: &str, own_address: bool) -> Vec<Trial> {
    let port = crashlab::targets::free_port().unwrap();
    let spec = ContainerSpec {
        name: format!("crashlab-bench-rto-{}-{port}", std::process::id()),
        image: image.to_string(),
        command: ["/crashlab", "demo-kv", "--host", "0.0.0.0", "--port", &port.to_string(), "--data-dir", "/tmp"]
            .map(String::from)
            .to_vec(),
        ports: vec![port],
        address: "127.0.0.1".into(),
        labels: vec![("crashlab.bench".into(), "container_rto".into())],
        ..Default::default()
    };
    let id = engine.create(&spec).unwrap();
    struct Removed<'a>(&'a Engine, String);
    impl Drop for Removed<'_> {
        fn drop(&mut self) {
            let _ = self.0.remove(&self.1);
        }
    }
    let _removed = Removed(engine, id.clone());
    engine.start(&id).unwrap();
    let addr = if own_address {
        SocketAddr::new(engine.address(&id).unwrap().expect("an address on the bridge"), port)
    } else {
        SocketAddr::from(([127, 0, 0, 1], port))
    };
    let mut trials = Vec::new();
    for _ in 0..TRIALS {
        let ready = Instant::now();
        while !ping(addr) {
            assert!(ready.elapsed() < Duration::from_secs(10), "demo-kv never answered on {addr}");
            std::thread::sleep(INTERVAL);
        }
        std::thread::sleep(Duration::from_millis(300));
        let restarted = Mutex::new(None);
        let (killed, samples) = std::thread::scope(|s| {
            let killed = Instant::now();
            let engine_side = s.spawn(|| {
                engine.kill(&id, "SIGKILL").unwrap();
                while engine.inspect(&id).unwrap().running {
                    std::thread::sleep(INTERVAL);
                }
                engine.start(&id).unwrap();
                *restarted.lock().unwrap() = Some(Instant::now());
            });
            let samples = sample_until(addr, || {
                let back = *restarted.lock().unwrap();
                back.is_some_and(|_| killed.elapsed() > Duration::from_secs(3))
            });
            engine_side.join().unwrap();
            (killed, samples)
        });
        let ms = |at: Instant| (at - killed).as_secs_f64() * 1e3;
        let (rto, answered) = recovered_at(&samples, killed).expect("recovered within the trial");
        let trial =
            Trial { restart: ms(restarted.into_inner().unwrap().unwrap()), rto: ms(rto), answered: ms(answered) };
        eprintln!(
            "raw loop ({addr}): restart {:.1} ms, RTO {:.1} ms, answered {:.1} ms",
            trial.restart, trial.rto, trial.answered
        );
        trials.push(trial);
    }
    trials
}

fn main() {
    let answers = Command::new("docker").args(["version", "--format", "{{.Server.Version}}"]).output();
    if !answers.is_ok_and(|o| o.status.success()) {
        println!("SKIPPED: container_rto needs a Docker engine");
        println!("| container RTO | SKIPPED: no Docker engine |\n|---|---|");
        return;
    }
    let built = crashlab().args(["image", "build", "demo-kv"]).output().unwrap();
    assert!(built.status.success(), "{}", String::from_utf8_lossy(&built.stderr));
    let said = String::from_utf8_lossy(&built.stdout);
    let image = said.split_whitespace().next().expect("the image's name").to_string();
    let engine = Engine::connect().unwrap();
    println!("image {image}; {TRIALS} trials each; medians; RTO and restart from the kill");
    let by_address = crashlab_trials("address");
    let by_port = crashlab_trials("published");
    let published = raw_trials(&engine, &image, false);
    let own = raw_trials(&engine, &image, true);
    let p50 = |trials: &[Trial], figure: fn(&Trial) -> f64| median(&trials.iter().map(figure).collect::<Vec<_>>());
    println!("\n| path | restart: raw loop / crashlab | RTO: raw loop | crashlab | ratio | first sample answered: raw loop | crashlab | ratio |");
    println!("|---|---|---|---|---|---|---|---|");
    for (path, raw, ours) in
        [("container's address (default)", &own, &by_address), ("published port", &published, &by_port)]
    {
        let (raw_rto, rto) = (p50(raw, |t| t.rto), p50(ours, |t| t.rto));
        let (raw_answered, answered) = (p50(raw, |t| t.answered), p50(ours, |t| t.answered));
        println!(
            "| {path} | {:.1} / {:.1} ms | {raw_rto:.1} ms | {rto:.1} ms | {:.2} | {raw_answered:.1} ms | {answered:.1} ms | {:.2} |",
            p50(raw, |t| t.restart),
            p50(ours, |t| t.restart),
            rto / raw_rto,
            answered / raw_answered
        );
    }
}
