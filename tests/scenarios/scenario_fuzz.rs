//! A seeded mutation fuzzer for the scenario compiler: every file in
//! scenarios/ is mutated (bytes flipped, values swapped for extreme ones,
//! lines dropped, repeated or moved), compiled, and, when it compiles, its
//! seeded schedule drawn, as `crashlab run` would. No input may panic, and
//! none under 1 MiB may take a second. Inputs that once panicked are kept
//! in tests/fixtures/fuzz/ and replayed first.
//!
//! `CRASHLAB_FUZZ_SECS` (default 20) bounds the time; `CRASHLAB_FUZZ_SEED`
//! picks another sequence (the default is fixed, so CI is repeatable).

use crate::common;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};

/// Values that sit on the edges of what a key accepts.
const EXTREMES: &[&str] = &[
    "\"0ms\"",
    "\"0s\"",
    "\"18446744073709551616s\"",
    "\"99999999999999999999h\"",
    "\"1s..600000h\"",
    "\"8760h..8760h\"",
    "\"1e308s\"",
    "\"NaNs\"",
    "\"infs\"",
    "\"-1s\"",
    "\"..\"",
    "\"1s..\"",
    "\"{port}{port}{data_dir}\"",
    "\"{\"",
    "\"}\"",
    "\"\"",
    "\"/\"",
    "\"/etc\"",
    "\"../../..\"",
    "\"é\u{0301}\u{1F600}\"",
    "0",
    "-1",
    "9223372036854775807",
    "-9223372036854775808",
    "1.0e308",
    "nan",
    "inf",
    "true",
    "[]",
    "[[]]",
    "{}",
    "{ kind = \"tcp\" }",
    "[\"\"]",
    "\"p50\"",
    "\"<= 0ms\"",
    "\"<= 1e400\"",
    "\">= -1\"",
    "\"== 18446744073709551616\"",
];

fn scenario_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "toml") {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    for dir in ["scenarios", "examples", "tests/fixtures/workloads"] {
        walk(&Path::new(env!("CARGO_MANIFEST_DIR")).join(dir), &mut out);
    }
    out.sort();
    out
}

fn regression_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fuzz");
    let mut out: Vec<PathBuf> = std::fs::read_dir(&dir).map_or(Vec::new(), |d| d.flatten().map(|e| e.path()).collect());
    out.sort();
    out
}

/// One mutation of `text`.
fn mutate(text: &str, rng: &mut impl Rng) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    if lines.is_empty() {
        return text.to_string();
    }
    let i = rng.random_range(0..lines.len());
    match rng.random_range(0..7) {
        // A value replaced by an extreme one.
        0 | 1 => {
            if let Some((key, _)) = lines[i].split_once(" = ") {
                lines[i] = format!("{key} = {}", EXTREMES[rng.random_range(0..EXTREMES.len())]);
            }
        }
        // A byte flipped (the result may not be UTF-8: lossy, as a file would
        // fail to read as text).
        2 => {
            let mut bytes = lines[i].clone().into_bytes();
            if !bytes.is_empty() {
                let at = rng.random_range(0..bytes.len());
                bytes[at] ^= 1 << rng.random_range(0..8);
            }
            lines[i] = String::from_utf8_lossy(&bytes).into_owned();
        }
        3 => {
            lines.remove(i);
        }
        4 => {
            let line = lines[i].clone();
            lines.insert(rng.random_range(0..=lines.len()), line);
        }
        5 => {
            let j = rng.random_range(0..lines.len());
            lines.swap(i, j);
        }
        // A line cut short.
        _ => {
            let cut = rng.random_range(0..=lines[i].len());
            let cut = (0..=cut).rev().find(|c| lines[i].is_char_boundary(*c)).unwrap_or(0);
            lines[i].truncate(cut);
        }
    }
    lines.join("\n")
}

/// Compiles `text` and draws its schedule; `Err` if anything panicked.
fn exercise(path: &Path, text: &str) -> Result<(), String> {
    catch_unwind(AssertUnwindSafe(|| match crashlab::scenario::compile(path, text) {
        Ok(plan) => {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
            for f in &plan.faults {
                let _ = f.at.sample(&mut rng);
            }
            for b in &plan.backups {
                let _ = b.at.sample(&mut rng);
            }
        }
        Err(d) => {
            let _ = d.rendered();
        }
    }))
    .map_err(|panic| {
        panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "a panic".into())
    })
}

#[test]
fn mutated_scenarios_never_panic_or_stall() {
    // It takes the CPU for its whole budget: the timing test waits.
    let _serial = common::serial();
    let budget =
        Duration::from_secs(std::env::var("CRASHLAB_FUZZ_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(20));
    let seed = std::env::var("CRASHLAB_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(1u64);
    // Panics are caught and counted; keep their messages off the output.
    std::panic::set_hook(Box::new(|_| {}));
    let mut failures = Vec::new();
    let mut slowest = (Duration::ZERO, String::new());
    let mut check = |name: String, text: &str, failures: &mut Vec<String>| {
        let began = Instant::now();
        if let Err(panic) = exercise(Path::new(&name), text) {
            failures.push(format!("{name}: panicked: {panic}\n--- input ---\n{text}\n---"));
        }
        let took = began.elapsed();
        if took > slowest.0 {
            slowest = (took, name.clone());
        }
        if took > Duration::from_secs(1) && text.len() < 1 << 20 {
            failures.push(format!("{name}: took {took:?} for {} bytes", text.len()));
        }
    };
    let regressions = regression_files();
    for path in &regressions {
        let text = String::from_utf8_lossy(&std::fs::read(path).unwrap()).into_owned();
        check(path.display().to_string(), &text, &mut failures);
    }
    let files: Vec<(PathBuf, String)> =
        scenario_files().into_iter().map(|p| (p.clone(), std::fs::read_to_string(&p).unwrap())).collect();
    assert!(files.len() > 20, "the scenario library is where the fuzzer starts");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let began = Instant::now();
    let mut executions = 0u64;
    while began.elapsed() < budget && failures.len() < 10 {
        let (path, text) = &files[rng.random_range(0..files.len())];
        let mut mutated = text.clone();
        for _ in 0..rng.random_range(1..=4) {
            mutated = mutate(&mutated, &mut rng);
        }
        check(format!("{} (mutation {executions})", path.display()), &mutated, &mut failures);
        executions += 1;
    }
    let _ = std::panic::take_hook();
    eprintln!(
        "fuzz: {executions} mutated inputs and {} regression files in {:?} (seed {seed}); slowest {:?} ({}); {} failure(s)",
        regressions.len(),
        began.elapsed(),
        slowest.0,
        slowest.1,
        failures.len()
    );
    assert!(executions > 100, "the fuzzer ran only {executions} inputs");
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// Two kinds of input that were slow, and the largest accepted file: every
/// one well under a second.
#[test]
fn many_errors_and_large_files_are_fast() {
    let _serial = common::serial();
    // N unknown keys, each its own error: rendering them must be linear in
    // N (it was quadratic: 35,000 took 7.3 s). Judged by how the time grows
    // from 5,000 to 20,000 errors (4x if linear, 16x if quadratic), which
    // a loaded machine slows alike, rather than by a fixed bound.
    let validate = |n: usize| {
        let mut text = String::from("name = \"x\"\n[workload]\n");
        for i in 0..n {
            text.push_str(&format!("unknown_key_{i} = 1\n"));
        }
        let began = Instant::now();
        let errors = crashlab::scenario::compile(Path::new("many.toml"), &text).unwrap_err();
        let rendered = errors.rendered();
        let took = began.elapsed();
        assert!(rendered.len() >= n, "{} errors", rendered.len());
        assert!(rendered[n - 1].contains("many.toml:"), "{}", rendered[n - 1]);
        eprintln!("validate: {} errors rendered in {took:?}", rendered.len());
        took.as_secs_f64()
    };
    let (small, large) = (validate(5_000), validate(20_000));
    assert!(large / small < 8.0, "5,000 errors: {small:.3} s, 20,000: {large:.3} s");

    // A file just under the 1 MiB limit, of comments and one long string.
    let mut big =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/quickstart.toml")).unwrap();
    while big.len() < (1 << 20) - 200 {
        big.push_str("# padding padding padding padding padding padding padding padding padding padding\n");
    }
    let began = Instant::now();
    crashlab::scenario::compile(Path::new("big.toml"), &big).unwrap();
    let took = began.elapsed();
    eprintln!("validate: {} bytes in {took:?}", big.len());
    assert!(took < Duration::from_secs(5), "{} bytes took {took:?}", big.len());
}
