//! SIGKILL of the harness, then `crashlab cleanup`, for every fault family:
//! at seeded random moments of a run, and at crash points aimed at the
//! windows between creating something and journaling it (a target or
//! command forked, a container created, a veth pair made, a FUSE layer
//! mounted, a lock holder forked, a file damaged). After each, the run is
//! checked by its own identifiers, independently of cleanup's own logic:
//! no process with the run's token, a journaled identity, or a working
//! directory inside the run; no mount under the run or over its data dirs;
//! none of its namespaces, links or containers; and every damaged byte back.
//!
//! The fast tier (the default) makes about 30 kills; the slow tier
//! (`CRASHLAB_SLOW=1`, which CI sets) makes over 100; two runs at a time.
//! `CRASHLAB_KILL_SEED` draws other moments; `CRASHLAB_KILL_ONLY=kill,partition`
//! keeps only those families (and lowers the minimum number of kills to one).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use serde_json::Value;

fn bin() -> PathBuf {
    assert_cmd::cargo::cargo_bin("crashlab")
}

/// A fault family: a scenario, how long its run lasts (random kills fall
/// inside), the crash points it passes, and whether this machine has what
/// it needs.
struct Family {
    name: &'static str,
    scenario: String,
    lasts: Duration,
    points: &'static [&'static str],
    available: fn() -> bool,
}

fn shipped(name: &str) -> String {
    std::fs::read_to_string(common::scenario(name)).unwrap()
}

const PAUSE: &str = r#"
name = "pause"
[target.kv]
command = ["crashlab", "demo-kv", "--port", "{port}", "--data-dir", "{data_dir}"]
probe = { kind = "demo-kv", interval = "5ms", healthy_after = 2 }
[workload]
kind = "demo-kv"
target = "kv"
rate = 100
duration = "2s"
[[fault]]
kind = "pause"
target = "kv"
at = "300ms"
duration = "1s"
"#;

/// Hooks and a recovery step's command: the `command` crash point.
const COMMANDS: &str = r#"
name = "commands"
[target.kv]
command = ["crashlab", "demo-kv", "--port", "{port}", "--data-dir", "{data_dir}"]
before_start = [["sh", "-c", "setsid sleep 60 & sleep 0.2"]]
probe = { kind = "demo-kv", interval = "5ms", healthy_after = 2 }
[workload]
kind = "demo-kv"
target = "kv"
rate = 100
duration = "2s"
[[fault]]
kind = "kill"
target = "kv"
at = "300ms"
[[recover]]
action = "run"
target = "kv"
command = ["sleep", "1"]
"#;

fn always() -> bool {
    true
}

fn families() -> Vec<Family> {
    vec![
        Family {
            name: "kill",
            scenario: shipped("quickstart.toml"),
            lasts: Duration::from_millis(3500),
            points: &["spawn:1", "spawn:2"],
            available: always,
        },
        Family {
            name: "pause",
            scenario: PAUSE.into(),
            lasts: Duration::from_millis(2000),
            points: &[],
            available: always,
        },
        Family {
            name: "hooks and steps",
            scenario: COMMANDS.into(),
            lasts: Duration::from_millis(2500),
            points: &["command:1", "command:2"],
            available: always,
        },
        Family {
            name: "corrupt",
            scenario: shipped("corrupt-restore-backup.toml"),
            lasts: Duration::from_millis(2500),
            points: &["corrupt"],
            available: always,
        },
        Family {
            name: "lose-unsynced",
            scenario: shipped("lose-unsynced-fsync-never.toml"),
            lasts: Duration::from_millis(2000),
            points: &["mount"],
            available: common::fuse_available,
        },
        Family {
            name: "stale-lock",
            scenario: shipped("stale-lock-held-runbook.toml"),
            lasts: Duration::from_millis(2500),
            points: &["lock-holder", "command:1"],
            available: common::psmisc_available,
        },
        Family {
            name: "partition",
            scenario: shipped("partition-isolate.toml"),
            lasts: Duration::from_millis(5500),
            points: &["veth:1", "veth:3"],
            available: common::netns_available,
        },
        Family {
            name: "proxy",
            scenario: shipped("proxy-blackhole.toml"),
            lasts: Duration::from_millis(5500),
            points: &[],
            available: always,
        },
        Family {
            name: "container",
            scenario: shipped("container-kill.toml"),
            lasts: Duration::from_millis(4000),
            points: &["container-create", "network-create"],
            available: common::docker_available,
        },
    ]
}

/// A run to kill: its family and scenario file, and when (a moment) or
/// where (a crash point) the harness dies.
type Attempt<'a> = (&'a Family, PathBuf, Option<Duration>, Option<&'static str>);

/// How one kill went.
struct Kill {
    family: &'static str,
    /// `random` or the crash point.
    window: String,
    /// What was left behind after cleanup (empty: the kill was survived).
    left: Vec<String>,
    /// Why the kill did not count: the harness had finished before it came,
    /// or had not yet made its run directory.
    missed: Option<&'static str>,
}

/// Runs the family's scenario and kills the harness: at `at`, or where
/// `point` makes it kill itself.
fn kill_once(family: &Family, scenario: &Path, dir: &Path, at: Option<Duration>, point: Option<&str>) -> Kill {
    let mut command = Command::new(bin());
    command.args(["run", "--trials", "1", "--seed", "1"]).arg(scenario).arg("--out").arg(dir);
    command.stdout(Stdio::null()).stderr(Stdio::null());
    if let Some(point) = point {
        command.env(crashlab::crash_point::VAR, point);
    }
    let mut harness = command.spawn().unwrap();
    let began = Instant::now();
    let status = match at {
        Some(at) => loop {
            if let Some(status) = harness.try_wait().unwrap() {
                break status;
            }
            if began.elapsed() >= at {
                harness.kill().unwrap();
                break harness.wait().unwrap();
            }
            std::thread::sleep(Duration::from_millis(2));
        },
        None => harness.wait().unwrap(),
    };
    let killed = std::os::unix::process::ExitStatusExt::signal(&status) == Some(9);
    let out = Command::new(bin()).arg("cleanup").arg(dir).output().unwrap();
    let mut left = Vec::new();
    if !out.status.success() && dir.exists() {
        left.push(format!("cleanup exited {:?}: {}", out.status.code(), String::from_utf8_lossy(&out.stderr)));
    }
    left.extend(remains(dir));
    // Killed before it made its run directory: there was no run yet.
    let missed = if !killed {
        Some("finished first")
    } else {
        (!dir.exists()).then_some("killed before its run directory existed")
    };
    Kill { family: family.name, window: point.map_or("random".into(), str::to_string), left, missed }
}

fn stat_start(pid: i32) -> Option<(char, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some((fields[0].chars().next()?, fields[19].parse().ok()?))
}

/// What of the run is still there, found by the run's own identifiers.
fn remains(dir: &Path) -> Vec<String> {
    let journal = common::journal(dir);
    let of = |op: &'static str| journal.iter().filter(move |e| e["op"] == op);
    let mut left = Vec::new();
    let run_dir = dir.canonicalize().unwrap_or(dir.to_path_buf());
    let token = of("begun").next().and_then(|e| e["token"].as_str()).map(|t| format!("CRASHLAB_RUN_TOKEN={t}"));
    let journaled: Vec<(i64, u64)> = ["target_started", "holder_started", "command_started"]
        .iter()
        .flat_map(|op| of(op).map(|e| (e["pid"].as_i64().unwrap(), e["start_time"].as_u64().unwrap())))
        .collect();
    // Processes: give the kernel a moment to finish what cleanup killed.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut found = Vec::new();
        for pid in
            std::fs::read_dir("/proc").unwrap().flatten().filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        {
            let Some((state, start)) = stat_start(pid) else { continue };
            if state == 'Z' || state == 'X' || pid == std::process::id() as i32 {
                continue;
            }
            let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            let marked = token.as_ref().is_some_and(|t| environ.split(|b| *b == 0).any(|v| v == t.as_bytes()));
            let cwd_inside = std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|c| c.starts_with(&run_dir));
            let named = journaled.iter().any(|(p, s)| *p == i64::from(pid) && *s == start);
            if marked || cwd_inside || named {
                let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                found.push(format!("process {pid} ({})", String::from_utf8_lossy(&cmdline).replace('\0', " ").trim()));
            }
        }
        if found.is_empty() || Instant::now() >= deadline {
            left.extend(found);
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // Mounts under the run directory or over a journaled data dir.
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let data_dirs: Vec<PathBuf> = of("data_dir").filter_map(|e| e["path"].as_str().map(PathBuf::from)).collect();
    for line in mountinfo.lines() {
        let point = PathBuf::from(line.split(' ').nth(4).unwrap_or_default().replace("\\040", " "));
        if point.starts_with(&run_dir) || data_dirs.contains(&point) {
            left.push(format!("mount {}", point.display()));
        }
    }
    // Namespaces and links.
    let netns =
        Command::new("ip").args(["netns", "list"]).output().map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
    for e in of("network_created") {
        let names = e["namespaces"].as_array().into_iter().flatten();
        for ns in names.filter_map(Value::as_str) {
            if netns.as_ref().is_ok_and(|list| list.lines().any(|l| l.split(' ').next() == Some(ns))) {
                left.push(format!("network namespace {ns}"));
            }
        }
        let links = e["links"].as_array().into_iter().flatten().chain(std::iter::once(&e["host_link"]));
        for link in links.filter_map(Value::as_str) {
            if Path::new("/sys/class/net").join(link).exists() {
                left.push(format!("link {link}"));
            }
        }
    }
    // The trial in progress, left for cleanup to append to the history.
    if dir.join("history.partial.jsonl").exists() {
        left.push("the trial's spooled history, not appended to history.jsonl".into());
    }
    // Containers and engine networks carrying the run's label.
    for e in of("container_label") {
        let label = format!("crashlab.run={}", e["run_label"].as_str().unwrap());
        for id in common::labelled_containers(&label) {
            left.push(format!("container {id}"));
        }
        for name in common::labelled_networks(&label) {
            left.push(format!("engine network {name}"));
        }
    }
    // Damaged bytes: each saved range is back, and the length.
    for e in of("corrupted") {
        let file = PathBuf::from(e["file"].as_str().unwrap());
        let saved = std::fs::read(e["saved"].as_str().unwrap()).unwrap_or_default();
        let now = std::fs::read(&file).unwrap_or_default();
        let mut at = 0usize;
        let mut intact = now.len() as u64 == e["original_len"].as_u64().unwrap();
        for range in e["ranges"].as_array().unwrap() {
            let (offset, len) = (range[0].as_u64().unwrap() as usize, range[1].as_u64().unwrap() as usize);
            intact &= now.get(offset..offset + len) == saved.get(at..at + len);
            at += len;
        }
        if !intact {
            left.push(format!("damaged bytes in {}", file.display()));
        }
    }
    left
}

/// The kills of each family, drawn family by family (so that a seed draws
/// the same kills), then taken in turn from each family.
fn draw<'a>(
    families: &'a [Family],
    rng: &mut impl Rng,
    dir: &Path,
    random_per_family: usize,
    passes_per_point: usize,
) -> Vec<Attempt<'a>> {
    let mut drawn: Vec<Vec<Attempt>> = Vec::new();
    for family in families {
        let scenario =
            common::write_scenario(dir, &format!("{}.toml", family.name.replace(' ', "-")), &family.scenario);
        let mut these = Vec::new();
        for _ in 0..random_per_family {
            let at = rng.random_range(20..family.lasts.as_millis() as u64);
            these.push((family, scenario.clone(), Some(Duration::from_millis(at)), None));
        }
        for point in family.points {
            for _ in 0..passes_per_point {
                these.push((family, scenario.clone(), None, Some(*point)));
            }
        }
        drawn.push(these);
    }
    let longest = drawn.iter().map(Vec::len).max().unwrap_or(0);
    (0..longest).flat_map(|i| drawn.iter().filter_map(move |f| f.get(i).cloned())).collect()
}

/// Makes each kill, two runs at a time (of different families as far as
/// they go): each run has its own directory and identifiers, and the
/// checks look for those alone. The test takes about half as long on 2
/// CPUs.
fn kill_each(attempts: &[Attempt], dir: &Path) -> Vec<Kill> {
    let next = AtomicUsize::new(0);
    let kills = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some((family, scenario, at, point)) = attempts.get(i) else { break };
                let n = i + 1;
                let kill = kill_once(family, scenario, &dir.join(format!("run-{n}")), *at, *point);
                let outcome = match (&kill.missed, kill.left.is_empty()) {
                    (Some(why), _) => why.to_string(),
                    (None, true) => "survived".into(),
                    (None, false) => kill.left.join("; "),
                };
                let when = point.map_or_else(|| format!("{:?}", at.unwrap()), str::to_string);
                eprintln!("kill {n}: {} at {when} -> {outcome}", kill.family);
                kills.lock().unwrap().push(kill);
            });
        }
    });
    kills.into_inner().unwrap()
}

#[test]
fn every_kill_of_the_harness_is_healed_by_cleanup() {
    let slow = std::env::var("CRASHLAB_SLOW").is_ok_and(|v| v == "1");
    let (random_per_family, passes_per_point) = if slow { (11, 2) } else { (2, 1) };
    let seed = std::env::var("CRASHLAB_KILL_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(12u64);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let tmp = tempfile::tempdir().unwrap();
    // Targets that run as other users reach into the run directory.
    std::fs::set_permissions(tmp.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let only = std::env::var("CRASHLAB_KILL_ONLY").ok();
    let wanted = |name: &str| only.as_deref().is_none_or(|o| o.split(',').any(|w| w.trim() == name));
    let families: Vec<Family> = families().into_iter().filter(|f| wanted(f.name) && (f.available)()).collect();
    let attempts = draw(&families, &mut rng, tmp.path(), random_per_family, passes_per_point);
    let kills = kill_each(&attempts, tmp.path());
    // The figures: survived / total per family and per window.
    let mut by_family: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut by_window: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for k in kills.iter().filter(|k| k.missed.is_none()) {
        for (map, key) in [(&mut by_family, k.family.to_string()), (&mut by_window, k.window.clone())] {
            let (ok, total) = map.entry(key).or_default();
            *total += 1;
            *ok += usize::from(k.left.is_empty());
        }
    }
    let counted: Vec<&Kill> = kills.iter().filter(|k| k.missed.is_none()).collect();
    let survived = counted.iter().filter(|k| k.left.is_empty()).count();
    eprintln!(
        "kills survived: {survived}/{} (seed {seed}, {} finished before their kill or came before the run)",
        counted.len(),
        kills.len() - counted.len()
    );
    for (name, (ok, total)) in &by_family {
        eprintln!("  family {name}: {ok}/{total}");
    }
    for (name, (ok, total)) in &by_window {
        eprintln!("  window {name}: {ok}/{total}");
    }
    let minimum = match (&only, slow) {
        (Some(_), _) => 1,
        (None, true) => 100,
        (None, false) => 20,
    };
    assert!(counted.len() >= minimum, "only {} kills landed (want {minimum})", counted.len());
    let failed: Vec<String> = counted
        .iter()
        .filter(|k| !k.left.is_empty())
        .map(|k| format!("{} at {}: {}", k.family, k.window, k.left.join("; ")))
        .collect();
    assert!(failed.is_empty(), "left behind:\n{}", failed.join("\n"));
}
