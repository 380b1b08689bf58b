//! Known answers of the `http` and `command` workloads: written through an
//! HTTP front or the user's own client program, demo-kv must show the RPO
//! its native workload shows, trial for trial on the same seed.

use std::path::Path;

use crashlab::reports::RunReport;

use crate::common;

/// The fixture scenarios and the clients they run, copied side by side (a
/// scenario finds its programs beside it).
fn python3() -> bool {
    common::available(
        "python3",
        common::which("python3"),
        "the fixture services and clients are Python (Debian python3)",
    )
}

fn fixtures(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    for file in ["kv-http.toml", "kv-command.toml", "kv_http_front.py", "kv_client.py", "kv_put.sh"] {
        let to = dir.join(file);
        std::fs::copy(common::fixture(&format!("workloads/{file}")), &to).unwrap();
    }
}

/// How each workload reaches demo-kv: a scenario text from a fixture.
fn variants(dir: &Path) -> Vec<(&'static str, String)> {
    let http = std::fs::read_to_string(dir.join("kv-http.toml")).unwrap();
    let lines = std::fs::read_to_string(dir.join("kv-command.toml")).unwrap();
    let client = "client = [\"python3\", \"kv_client.py\", \"{host}\", \"{port}\", \"lines\"]";
    assert!(lines.contains(client), "the fixture's line client");
    let per_write = lines.replace(
        client,
        "write = [\"./kv_put.sh\", \"{host}\", \"{port}\", \"{key}\", \"{value}\"]\nrefused_exit = [3]",
    );
    let read_back = "read_back = [\"python3\", \"kv_client.py\", \"{host}\", \"{port}\", \"dump\"]\n";
    let native = lines.replace("kind = \"command\"", "kind = \"demo-kv\"").replace(client, "").replace(read_back, "");
    vec![
        ("native demo-kv", native),
        ("http", http),
        ("command, line protocol", lines),
        ("command, per write", per_write),
    ]
}

/// Runs a variant as a user would: from the directory above the scenario,
/// by a relative path, into the default run directory (a client's relative
/// program was once looked for relative to itself).
fn run_variant(dir: &Path, name: &str, text: &str) -> RunReport {
    let file = format!("{}.toml", name.replace([' ', ','], "-"));
    common::write_scenario(dir, &file, text);
    let (code, stdout, report) = run_from(
        dir.parent().unwrap(),
        &format!("{}/{file}", dir.file_name().unwrap().to_str().unwrap()),
        &["--seed", "7"],
    );
    assert_eq!(code, Some(0), "{name}: {stdout}");
    assert_eq!(report.trials.len(), 10, "{name}");
    report
}

/// `crashlab run SCENARIO ARGS` from `cwd`, into the default run directory:
/// its exit code, what it printed, and its report.
fn run_from(cwd: &Path, scenario: &str, args: &[&str]) -> (Option<i32>, String, RunReport) {
    let out = common::crashlab()
        .current_dir(cwd)
        .args(["run", scenario])
        .args(args)
        .timeout(std::time::Duration::from_secs(300))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let dir =
        stdout.lines().find_map(|l| l.strip_prefix("run directory: ")).unwrap_or_else(|| panic!("{stdout}\n{stderr}"));
    let report = std::fs::read_to_string(cwd.join(dir).join("report.json")).unwrap();
    (out.status.code(), format!("{stdout}\n{stderr}"), RunReport::from_json(&report).unwrap())
}

/// `--fsync never --flush-interval 700ms`, killed between 1.0 and 1.8 s:
/// every workload loses writes in most trials, never more than the 700 ms
/// since the last flush (760 ms with the timer's slack), and nothing it
/// reads back is corrupted or a phantom.
#[test]
fn http_and_command_workloads_measure_the_rpo_of_unflushed_writes() {
    if !python3() {
        return;
    }
    let _serial = common::serial();
    let tmp = tempfile::tempdir().unwrap();
    fixtures(&tmp.path().join("sc"));
    let mut table = Vec::new();
    for (name, text) in variants(&tmp.path().join("sc")) {
        let r = run_variant(&tmp.path().join("sc"), name, &text);
        let mut with_loss = 0;
        for t in &r.trials {
            common::assert_the_workload_ran(name, t);
            let window = t.rpo.window_ms.expect("read back");
            assert!(window <= 760.0, "{name}, trial {}: window {window} ms", t.index);
            assert_eq!((t.rpo.corrupted, t.rpo.phantom), (Some(0), Some(0)), "{name}, trial {}", t.index);
            with_loss += usize::from(t.rpo.lost_acked.unwrap() > 0);
        }
        assert!(with_loss >= 7, "{name}: only {with_loss} of 10 trials lost writes");
        table.push((name, r));
    }
    for (name, report) in &table {
        let lost: u64 = report.trials.iter().map(|t| t.rpo.lost_acked.unwrap()).sum();
        let acked: u64 = report.trials.iter().map(|t| t.rpo.acked_writes).sum();
        let window = report.trials.iter().map(|t| t.rpo.window_ms.unwrap()).fold(0.0, f64::max);
        eprintln!("{name:<24} acked {acked:>5}  lost {lost:>5}  window max {window:.1} ms");
    }
}

/// `--fsync always`: not one acknowledged write lost in 10 trials, through
/// every workload.
#[test]
fn http_and_command_workloads_lose_nothing_under_fsync_always() {
    if !python3() {
        return;
    }
    let _serial = common::serial();
    let tmp = tempfile::tempdir().unwrap();
    fixtures(&tmp.path().join("sc"));
    for (name, text) in variants(&tmp.path().join("sc")).into_iter().skip(1) {
        let flags = "\"--fsync\", \"never\", \"--flush-interval\", \"700ms\"";
        assert!(text.contains(flags) && text.contains("window = \"<= 760ms\""), "{name}");
        let text = text.replace(flags, "\"--fsync\", \"always\"").replace("window = \"<= 760ms\"", "lost_acked = 0");
        let r = run_variant(&tmp.path().join("sc"), name, &text);
        for t in &r.trials {
            common::assert_the_workload_ran(name, t);
            assert_eq!(t.rpo.lost_acked, Some(0), "{name}, trial {}", t.index);
        }
    }
}

/// The README's "Test your own service", as a user follows it: from a
/// checkout, `crashlab run examples/notes/notes.toml` into the default run
/// directory. Without fsync a power loss takes acknowledged notes (the run
/// fails, exit 1, and says how many and how old); with `--fsync` added to
/// the service's command, nothing is lost in any trial.
#[test]
fn the_notes_example_loses_notes_until_fsync_is_on() {
    if !python3() || !common::fuse_available() {
        return;
    }
    let _serial = common::serial();
    let tmp = tempfile::tempdir().unwrap();
    let example = tmp.path().join("examples/notes");
    std::fs::create_dir_all(&example).unwrap();
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/notes");
    for file in ["notes.py", "notes.toml"] {
        std::fs::copy(source.join(file), example.join(file)).unwrap();
    }
    let run = || run_from(tmp.path(), "examples/notes/notes.toml", &[]);
    let (code, stdout, report) = run();
    assert_eq!(code, Some(1), "{stdout}");
    for t in &report.trials {
        common::assert_the_workload_ran("notes", t);
        assert!(t.rpo.lost_acked.unwrap() > 0, "trial {}: a power loss without fsync lost nothing", t.index);
    }
    assert!(stdout.contains("expect lost_acked == 0") && stdout.contains("verdict: FAIL"), "{stdout}");

    let scenario = example.join("notes.toml");
    let text = std::fs::read_to_string(&scenario).unwrap();
    let command = "\"--data-dir\", \"{data_dir}\"]";
    assert!(text.contains(command), "the guide's edit applies");
    std::fs::write(&scenario, text.replace(command, "\"--data-dir\", \"{data_dir}\", \"--fsync\"]")).unwrap();
    let (code, stdout, report) = run();
    assert_eq!(code, Some(0), "{stdout}");
    for t in &report.trials {
        common::assert_the_workload_ran("notes --fsync", t);
        assert_eq!(t.rpo.lost_acked, Some(0), "trial {}", t.index);
    }
}

/// A read-back that fails (a listing answered 404) leaves the durability
/// checks unknown; one that finds nothing (a pointer to where the notes
/// are not) loses every acknowledged write and says where to look. Neither
/// passes.
#[test]
fn a_read_back_that_fails_or_finds_nothing_never_passes() {
    if !python3() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/notes");
    std::fs::copy(source.join("notes.py"), tmp.path().join("notes.py")).unwrap();
    let text = std::fs::read_to_string(source.join("notes.toml")).unwrap();
    let read = r#"read = { path = "/notes", list = "json", key = "/id", value = "/text" }"#;
    let power_loss = "kind = \"lose-unsynced\"";
    assert!(text.contains(read) && text.contains(power_loss));
    // A kill: the notes survive it (they reach the kernel before the answer).
    let text = text.replace(power_loss, "kind = \"kill\"").replace("count = 3", "count = 1");

    let failing = text.replace(read, r#"read = { path = "/nowhere", list = "json" }"#);
    let r = common::run(&common::write_scenario(tmp.path(), "failing.toml", &failing), &["--seed", "1"]);
    assert_eq!(r.report().verdict, crashlab::reports::Verdict::Unknown, "{}", r.stdout());
    let check = r.trials()[0].checks.iter().find(|c| c.name == "lost_acked").unwrap();
    assert_eq!(check.verdict, crashlab::reports::Verdict::Unknown);
    assert!(r.stdout().contains("answered HTTP 404"), "{}", r.stdout());

    let empty = text.replace(read, r#"read = { path = "/notes", list = "json", items = "/notes" }"#);
    let r = common::run(&common::write_scenario(tmp.path(), "empty.toml", &empty), &["--seed", "1"]);
    assert_eq!(r.code, 1, "{}", r.stdout());
    let t = &r.trials()[0];
    assert_eq!(t.rpo.lost_acked, Some(t.rpo.acked_writes));
    assert!(t.warnings.iter().any(|w| w.contains("the read-back found none of the")), "{:?}", t.warnings);
}
