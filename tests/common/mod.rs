//! Helpers shared by the end-to-end tests: run the real binary, read what it wrote.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Output;

use assert_cmd::Command;
use crashlab::reports::{RunReport, TrialReport};
use serde_json::Value;

pub fn crashlab() -> Command {
    Command::cargo_bin("crashlab").expect("the crashlab binary is built")
}

pub fn scenario(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios").join(name)
}

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// A finished `crashlab run`: its exit code, report and run directory.
/// Tests read the report through its type ([`Run::report`]); the raw JSON
/// is there for the tests of the format itself (tests/scenarios/compat.rs).
pub struct Run {
    pub code: i32,
    /// report.json as written, `Null` when the run wrote none.
    pub json: Value,
    typed: Option<RunReport>,
    pub dir: PathBuf,
    pub output: Output,
    _tmp: tempfile::TempDir,
}

impl Run {
    /// The run's report.json, read as the report crate's type.
    pub fn report(&self) -> &RunReport {
        self.typed.as_ref().unwrap_or_else(|| panic!("no report.json (exit {}): {}", self.code, self.stderr()))
    }

    pub fn trials(&self) -> &[TrialReport] {
        &self.report().trials
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }

    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }

    /// The history events of one trial.
    pub fn history(&self, trial: u64) -> Vec<Value> {
        std::fs::read_to_string(self.dir.join("history.jsonl"))
            .expect("history.jsonl")
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).expect("a JSON line"))
            .filter(|e| e["trial"].as_u64() == Some(trial))
            .collect()
    }
}

/// Runs a scenario file into a fresh temporary run directory.
pub fn run(scenario: &Path, args: &[&str]) -> Run {
    let tmp = tempfile::tempdir().expect("a temp dir");
    // Targets that run as another user (PostgreSQL as `postgres`) must reach
    // their data dirs inside; tempdir makes the directory 0700.
    std::fs::set_permissions(tmp.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    let dir = tmp.path().join("run");
    let output = crashlab()
        .arg("run")
        .arg(scenario)
        .arg("--out")
        .arg(&dir)
        .args(args)
        .timeout(std::time::Duration::from_secs(300))
        .output()
        .expect("crashlab runs");
    let text = std::fs::read_to_string(dir.join("report.json")).ok();
    let json = text.as_deref().map_or(Value::Null, |t| serde_json::from_str(t).expect("report.json is JSON"));
    let typed = text.map(|t| RunReport::from_json(&t).expect("report.json is a RunReport"));
    Run { code: output.status.code().unwrap_or(-1), json, typed, dir, output, _tmp: tmp }
}

/// Writes a scenario into a temp dir and returns its path (kept alive by the dir).
pub fn write_scenario(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("scenario written");
    path
}

/// Whether a test may use `dependency`. Missing, the test is skipped with a
/// message saying why, unless `CRASHLAB_REQUIRE` (comma-separated, as CI
/// sets it) lists the dependency: then a missing one fails the test.
pub fn available(dependency: &str, present: bool, why: &str) -> bool {
    if present {
        return true;
    }
    let required = std::env::var("CRASHLAB_REQUIRE").unwrap_or_default();
    if required.split(',').any(|r| r.trim() == dependency || r.trim() == "all") {
        panic!("CRASHLAB_REQUIRE lists `{dependency}`, but it is missing: {why}");
    }
    // Straight to the stream, not through eprintln!: the test harness
    // captures the macros' output of a passing test, and a skip must show
    // in the run's output, next to the test's `ok`.
    let test = std::thread::current().name().unwrap_or("a test").to_string();
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED {test}: needs `{dependency}`: {why} (set CRASHLAB_REQUIRE={dependency} to make this a failure)"
    );
    false
}

/// FUSE: the device, and root (which mounts directly) or fusermount3.
pub fn fuse_available() -> bool {
    // SAFETY: geteuid cannot fail.
    let root = unsafe { nix::libc::geteuid() } == 0;
    available(
        "fuse",
        Path::new("/dev/fuse").exists() && (root || which("fusermount3")),
        "the lose-unsynced fault mounts a FUSE layer (/dev/fuse, and root or fusermount3 from the fuse3 package)",
    )
}

/// `fuser` from psmisc, which the stale-lock runbook uses to kill the holder.
pub fn psmisc_available() -> bool {
    available("psmisc", which("fuser"), "the stale-lock runbook runs `fuser -k` (Debian package psmisc)")
}

pub fn which(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// Remote hosts as network namespaces with an sshd each: root, iproute2,
/// OpenSSH's server and client.
pub fn ssh_hosts_available() -> bool {
    // SAFETY: geteuid cannot fail.
    let root = unsafe { nix::libc::geteuid() } == 0;
    available(
        "ssh",
        root && which("ip") && which("ssh") && which("ssh-keygen") && Path::new("/usr/sbin/sshd").is_file(),
        "remote hosts are namespaces with an sshd each (root, iproute2, openssh-server, openssh-client)",
    )
}

/// Remote hosts for a test: `n` namespaces on a bridge of the tests', each
/// with an sshd at 10.231.7.1K (tests/fixtures/hosts/ssh-hosts.sh); the
/// client key and known_hosts in `dir`. Taken down when dropped.
pub struct SshHosts {
    pub dir: tempfile::TempDir,
}

impl SshHosts {
    pub fn up(n: u32) -> SshHosts {
        let dir = tempfile::tempdir().unwrap();
        let out = std::process::Command::new("bash")
            .arg(fixture("hosts/ssh-hosts.sh"))
            .args(["up", dir.path().to_str().unwrap(), &n.to_string()])
            .output()
            .unwrap();
        assert!(out.status.success(), "hosts up: {}", String::from_utf8_lossy(&out.stderr));
        SshHosts { dir }
    }

    /// Starts a Docker engine of host `k`'s own, in its namespace (its
    /// bridge and published ports that host's); stopped with the hosts.
    pub fn engine(&self, k: u32) {
        let out = std::process::Command::new("bash")
            .arg(fixture("hosts/ssh-hosts.sh"))
            .args(["engine", self.dir.path().to_str().unwrap(), &k.to_string()])
            .output()
            .unwrap();
        assert!(out.status.success(), "engine up: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Host `k`'s engine socket (see [`SshHosts::engine`]).
    pub fn engine_socket(&self, k: u32) -> PathBuf {
        self.dir.path().join(format!("engine.{k}/docker.sock"))
    }

    /// `[host.hK]` tables for hosts 1..=n, with the test's key and
    /// known_hosts, and the host's engine if it has one.
    pub fn tables(&self, n: u32) -> String {
        (1..=n)
            .map(|k| {
                let socket = self.engine_socket(k);
                let engine =
                    if socket.exists() { format!("engine = \"unix://{}\"\n", socket.display()) } else { String::new() };
                format!(
                    "[host.h{k}]\naddress = \"10.231.7.1{k}\"\nuser = \"root\"\nidentity = \"{dir}/id_ed25519\"\n\
                     known_hosts = \"{dir}/known_hosts\"\n{engine}\n",
                    dir = self.dir.path().display()
                )
            })
            .collect()
    }
}

impl Drop for SshHosts {
    fn drop(&mut self) {
        let _ = std::process::Command::new("bash")
            .arg(fixture("hosts/ssh-hosts.sh"))
            .args(["down", self.dir.path().to_str().unwrap()])
            .output();
    }
}

/// Live processes whose command line contains `text`.
pub fn processes_with(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(text) && !cmdline.contains("pgrep") {
            found.push(format!("{}: {cmdline}", entry.file_name().to_string_lossy()));
        }
    }
    found
}

/// Network namespaces, veth, bridges and iptables: root, iproute2, iptables.
pub fn netns_available() -> bool {
    // SAFETY: geteuid cannot fail.
    let root = unsafe { nix::libc::geteuid() } == 0;
    available(
        "netns",
        root && which("ip") && which("iptables"),
        "partitions run targets in network namespaces (root, iproute2 and iptables)",
    )
}

/// A Docker engine that answers on the local socket.
pub fn docker_available() -> bool {
    let answers = std::process::Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .output()
        .is_ok_and(|o| o.status.success());
    available(
        "docker",
        answers,
        "container targets need a Docker engine (docker.io) that answers on /var/run/docker.sock",
    )
}

/// Containers (any state) that carry `label`.
pub fn labelled_containers(label: &str) -> Vec<String> {
    let out = std::process::Command::new("docker")
        .args(["ps", "-a", "-q", "--filter", &format!("label={label}")])
        .output()
        .expect("docker runs");
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
}

/// Engine networks that carry `label`.
pub fn labelled_networks(label: &str) -> Vec<String> {
    let out = std::process::Command::new("docker")
        .args(["network", "ls", "-q", "--filter", &format!("label={label}")])
        .output()
        .expect("docker runs");
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
}

/// A compose CLI: the `docker compose` plugin or Debian's docker-compose.
pub fn compose_available() -> bool {
    let works =
        |argv: &[&str]| std::process::Command::new(argv[0]).args(&argv[1..]).output().is_ok_and(|o| o.status.success());
    available(
        "compose",
        works(&["docker", "compose", "version"]) || works(&["docker-compose", "version"]),
        "compose targets need `docker compose` or `docker-compose` (Debian package docker-compose)",
    )
}

/// The fault journal of a run directory, as JSON values (torn last line skipped).
pub fn journal(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("faults.journal"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// `crashlab run SCENARIO --out DIR` in the background, output discarded.
pub fn spawn_run(scenario: &Path, dir: &Path) -> std::process::Child {
    std::process::Command::new(assert_cmd::cargo::cargo_bin("crashlab"))
        .arg("run")
        .arg(scenario)
        .arg("--out")
        .arg(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("crashlab starts")
}

/// mmdebstrap, which makes Debian root file systems for images.
pub fn mmdebstrap_available() -> bool {
    available(
        "mmdebstrap",
        which("mmdebstrap"),
        "Debian-based images are made with mmdebstrap (Debian package mmdebstrap)",
    )
}

/// Writes acknowledged before the trial's first fault and after its recovery,
/// read from the trial's own availability timeline. "The workload ran" is
/// judged by these, not by a count that a loaded machine may not reach.
pub fn acked_around_the_fault(trial: &TrialReport) -> (u64, u64) {
    let fault = trial.faults.first().expect("the fault fired");
    let injected = fault.injected_at_ms;
    let recovered = injected + fault.rto_ms.unwrap_or(0.0);
    let timeline = trial.availability.as_ref().expect("a timeline");
    let (mut before, mut after) = (0, 0);
    for (i, n) in timeline.ok.iter().enumerate() {
        let (start, end) = (i as f64 * timeline.bucket_ms, (i + 1) as f64 * timeline.bucket_ms);
        if end <= injected {
            before += u64::from(*n);
        } else if start >= recovered {
            after += u64::from(*n);
        }
    }
    (before, after)
}

/// The workload acknowledged writes before the fault: a loss of zero is then
/// a finding, not an idle workload.
pub fn assert_the_workload_ran(name: &str, trial: &TrialReport) {
    let (before, after) = acked_around_the_fault(trial);
    assert!(before > 0, "{name}: the workload ran: {before} acked before the fault, {after} after recovery");
}

static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Held by a test whose figures are timings: the test binary's other
/// timing tests wait, so that no two of them share the CPU. A test without
/// it may still run beside one. (Test binaries run one after another; the
/// tests in one run in parallel, on as many threads as CPUs, in name
/// order: a timing test waiting here holds one of those threads.)
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Starts `crashlab ARGS`, reads the first line it prints and kills it:
/// that line, its exit code (`None` if it was still running), and what it
/// wrote to stderr.
pub fn first_line_of(args: &[&std::ffi::OsStr]) -> (String, Option<i32>, String) {
    use std::io::{BufRead, Read};
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("crashlab"))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
    let _ = child.kill();
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    (first, status.code(), stderr)
}

/// A port nothing listens on now.
pub fn free_port() -> String {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port().to_string()
}

/// Takes an fcntl write lock on the whole of `file`, held until the file is
/// closed: what SQLite and demo-kv `--lock fcntl` see.
pub fn fcntl_lock(file: &std::fs::File) {
    // SAFETY: a zeroed flock struct is valid; its fields are set below.
    let mut spec: nix::libc::flock = unsafe { std::mem::zeroed() };
    spec.l_type = nix::libc::F_WRLCK as i16;
    spec.l_whence = nix::libc::SEEK_SET as i16;
    nix::fcntl::fcntl(file, nix::fcntl::FcntlArg::F_SETLK(&spec)).unwrap();
}

/// Takes an exclusive flock on `file`, held until the file is closed.
pub fn flock(file: &std::fs::File) {
    use std::os::fd::AsRawFd;
    // SAFETY: a plain syscall on a descriptor the caller owns.
    assert_eq!(unsafe { nix::libc::flock(file.as_raw_fd(), nix::libc::LOCK_EX | nix::libc::LOCK_NB) }, 0);
}

/// The trial's `io` fault.
pub fn io_fault(t: &TrialReport) -> &crashlab::reports::FaultReport {
    t.faults.iter().find(|f| f.kind == "io").expect("an io fault")
}

/// How many `op` operations the trial's `io` fault failed or delayed, from
/// its heal detail (`...: write 3, fsync 345`); 0 if none.
pub fn io_count(t: &TrialReport, op: &str) -> u64 {
    let detail = &io_fault(t).detail;
    let Some(counts) = detail.split("healed: ").nth(1).and_then(|h| h.rsplit(": ").next()) else { return 0 };
    counts.split(", ").find_map(|c| c.strip_prefix(&format!("{op} "))).map_or(0, |n| n.parse().expect("a count"))
}
