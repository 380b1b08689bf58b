//! Bad scenarios: every error listed at once, at file:line:col, exit 2,
//! nothing started. And every scenario of the library is valid.

use crate::common;

use common::{crashlab, fixture};

/// Validates a fixture and returns its stderr, asserting exit code 2.
fn invalid(name: &str) -> String {
    let path = fixture(&format!("invalid/{name}"));
    let out = crashlab().arg("validate").arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{name} must be rejected with exit 2");
    String::from_utf8(out.stderr).unwrap()
}

fn assert_line(stderr: &str, name: &str, at: &str, message: &str) {
    let expected = format!("{}:{at}: {message}", fixture(&format!("invalid/{name}")).display());
    assert!(
        stderr.lines().any(|l| l.starts_with(&expected)),
        "expected a line starting with\n  {expected}\ngot:\n{stderr}"
    );
}

#[test]
fn bad_toml_points_at_the_syntax_error() {
    let e = invalid("bad_toml.toml");
    assert_line(&e, "bad_toml.toml", "3:11", "invalid TOML: unclosed table, expected `]`");
}

#[test]
fn unknown_key_suggests_the_nearest() {
    let e = invalid("unknown_key.toml");
    assert_line(
        &e,
        "unknown_key.toml",
        "5:25",
        "unknown key `intervall` in `probe` of [target.kv], did you mean `interval`?",
    );
}

#[test]
fn unknown_fault_kind_suggests_kill() {
    let e = invalid("unknown_fault_kind.toml");
    assert_line(
        &e,
        "unknown_fault_kind.toml",
        "13:8",
        "unknown fault kind `kil` in [[fault]] #1, did you mean `kill`?",
    );
}

#[test]
fn negative_and_malformed_durations_are_both_reported() {
    let e = invalid("bad_duration.toml");
    assert_line(&e, "bad_duration.toml", "5:36", "`interval` in `probe` of [target.kv]: unknown unit `parsecs`");
    assert_line(&e, "bad_duration.toml", "15:6", "`at` in [[fault]] #1: negative duration `-1s`");
}

#[test]
fn a_missing_target_reference_names_the_targets() {
    let e = invalid("missing_target.toml");
    assert_line(
        &e,
        "missing_target.toml",
        "14:10",
        "`target` in [[fault]] #1 names `kvv`, which is not a target of this scenario, did you mean `kv`?",
    );
}

#[test]
fn a_fault_outside_the_workload_is_rejected() {
    let e = invalid("at_outside_workload.toml");
    assert_line(
        &e,
        "at_outside_workload.toml",
        "15:6",
        "`at` = 2s..10s in [[fault]] #1 is outside the workload's duration (3s)",
    );
}

#[test]
fn all_errors_of_a_file_are_listed_at_once_in_source_order() {
    let e = invalid("several_errors.toml");
    let name = "several_errors.toml";
    assert_line(&e, name, "2:1", "unknown key `descripton` in the scenario, did you mean `description`?");
    assert_line(&e, name, "5:11", "unknown placeholder `{prot}`");
    assert_line(&e, name, "6:18", "unknown probe kind `htp` in `probe` of [target.kv], did you mean `http`?");
    assert_line(&e, name, "11:8", "`rate` in [workload] must be between 1 and 100000, found -5");
    assert_line(&e, name, "15:7", "[expect] rto: expected a bound such as \"<= 1s\"");
    assert_line(&e, name, "16:14", "[expect] window.p96: unknown statistic, did you mean `p95`?");
    assert_line(&e, name, "17:18", "[expect] lost_acked.max: `1s` is not a count");
    assert!(e.contains("7 error(s); nothing was started"), "{e}");
}

#[test]
fn run_refuses_an_invalid_scenario_before_starting_anything() {
    let tmp = tempfile::tempdir().unwrap();
    let out = crashlab()
        .arg("run")
        .arg(fixture("invalid/unknown_fault_kind.toml"))
        .arg("--out")
        .arg(tmp.path().join("run"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(!tmp.path().join("run").exists(), "no run directory for an invalid scenario");
}

#[test]
fn every_scenario_in_the_library_is_valid() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<_> = SHIPPED
        .iter()
        .flat_map(|dir| walk(&root.join(dir)))
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 4, "the library has scenarios");
    let out = crashlab().arg("validate").args(&files).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Where scenarios ship: the library, the examples, and the workload
/// fixtures that the known-answer tests run.
const SHIPPED: &[&str] = &["scenarios", "examples", "tests/fixtures/workloads"];

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[test]
fn schema_is_json_schema_for_the_scenario_format() {
    let out = crashlab().arg("schema").output().unwrap();
    assert!(out.status.success());
    let schema: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(schema["additionalProperties"], false);
    let kind = &schema["properties"]["fault"]["items"]["properties"]["kind"];
    // The compiler's own list: every kind it accepts, and only those, alone
    // or as a menu.
    let kinds = &kind["oneOf"][0]["enum"];
    assert_eq!(kinds, &serde_json::json!(crashlab::scenario::FAULT_KINDS));
    assert_eq!(kind["oneOf"][1]["items"]["enum"], *kinds);
    assert!(kinds.as_array().unwrap().len() >= 16, "process, storage, link and partition faults");
}

#[test]
fn storage_faults_and_runbooks_are_checked_before_anything_runs() {
    let name = "storage_mistakes.toml";
    let e = invalid(name);
    assert_line(&e, name, "5:12", "[target.kv] has data_dir = \"/var/lib/precious\", which is not marked disposable");
    assert_line(&e, name, "11:8", "`path` in [[fault]] #1 must be a path relative to the target's data dir");
    assert_line(&e, name, "13:8", "`bits` does not apply to a `corrupt` fault in mode `zero`");
    assert_line(&e, name, "20:8", "`lock` in [[fault]] #2 applies only to variant `held`");
    assert_line(&e, name, "24:1", "[[recover]] #1: `restore` would replace the data dir of `kv` under the running");
    assert_line(&e, name, "27:8", "`from` = \"nightly\" in [[recover]] #1 is neither a [[backup]]");
    assert_line(&e, name, "29:1", "a `wait` step in [[recover]] #2 needs either `target`");
    assert!(e.contains("7 error(s); nothing was started"), "{e}");
}

#[test]
fn proxies_and_partitions_are_checked_before_anything_runs() {
    let name = "network_mistakes.toml";
    let e = invalid(name);
    assert_line(
        &e,
        name,
        "3:1",
        "[target.kv] uses `{proxy.upstrem}`, but no [proxy.upstrem] is declared; proxies: front",
    );
    assert_line(
        &e,
        name,
        "13:7",
        "`via` in [workload] names `frnt`, which is not a proxy of this scenario, did you mean `front`?",
    );
    assert_line(&e, name, "16:1", "missing key `delay` in [[fault]] #1; a `latency` needs it");
    assert_line(&e, name, "19:10", "a `latency` fault names a `proxy`, not a `target`");
    assert_line(&e, name, "23:1", "a `partition` in [[fault]] #2 needs the targets in namespaces");
    assert_line(&e, name, "25:11", "`kvv` in [[fault]] #2 is not a target of this scenario, did you mean `kv`?");
}

#[test]
fn a_disconnect_needs_a_container() {
    let name = "network_mistakes.toml";
    assert_line(
        &invalid(name),
        name,
        "29:1",
        "[[fault]] #3: `disconnect` takes a container off its network; `kv` is a process",
    );
}

#[test]
fn a_kill_scope_is_one_of_three_and_only_for_a_kill() {
    let e = invalid("bad_signal_scope.toml");
    assert_line(
        &e,
        "bad_signal_scope.toml",
        "15:9",
        "unknown signal scope `tree` in [[fault]] #1; expected one of: main, group, all",
    );
    assert_line(&e, "bad_signal_scope.toml", "22:9", "`scope` does not apply to a `pause` fault (its keys: duration)");
}

#[test]
fn a_container_command_cannot_name_another_targets_harness_side_address() {
    let name = "container_host_of_another.toml";
    let e = invalid(name);
    assert_line(
        &e,
        name,
        "7:1",
        "[target.app] is a container: its command and env run inside it, where `{host.db}` (the address the harness \
         reaches `db` at) leads nowhere",
    );
    assert_eq!(e.lines().filter(|l| l.contains("host.db")).count(), 1, "the hook's use is fine: {e}");
    assert_line(
        &e,
        name,
        "7:1",
        "[target.app] is a container: its command and env run inside it, where `{proxy.front}` (a port the harness \
         listens on at 127.0.0.1) leads nowhere",
    );
}

#[test]
fn an_rpo_expectation_points_to_the_two_numbers_that_measure_it() {
    let name = "rpo_expectation.toml";
    let e = invalid(name);
    assert_line(&e, name, "9:1", "unknown key `rpo` in [expect]: RPO is two numbers here: `lost_acked`");
    assert!(!e.contains("did you mean `rto`"), "a near spelling would mislead: {e}");
}

/// `crashlab schema` is what editors check scenarios with: every scenario
/// this repository ships must be valid against it, as it is for the
/// compiler.
#[test]
fn every_shipped_scenario_is_valid_against_the_json_schema() {
    let out = crashlab().arg("schema").output().unwrap();
    let schema: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let validator = jsonschema::validator_for(&schema).expect("the schema is a JSON Schema");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    let mut dirs: Vec<_> = SHIPPED.iter().map(|dir| root.join(dir)).collect();
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "toml") {
                files.push(path);
            }
        }
    }
    assert!(files.len() > 40, "the library: {} files", files.len());
    let mut invalid = Vec::new();
    for file in &files {
        let value: serde_json::Value = toml::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
        for error in validator.iter_errors(&value) {
            invalid.push(format!("{}: {} at {}", file.display(), error, error.instance_path));
        }
    }
    assert!(invalid.is_empty(), "{} scenario(s) the schema rejects:\n{}", invalid.len(), invalid.join("\n"));
}

#[test]
fn io_faults_are_checked_key_by_key_with_suggestions() {
    let name = "io_mistakes.toml";
    let e = invalid(name);
    assert_line(&e, name, "10:9", "unknown errno `EIOO` in [[fault]] #1, did you mean `EIO`?");
    assert_line(&e, name, "11:7", "unknown operation `fsyn` in `ops` of [[fault]] #1, did you mean `fsync`?");
    assert_line(&e, name, "18:9", "`errno` and `delay` in [[fault]] #2: an `io` fault does one");
    assert_line(&e, name, "24:8", "`path` in [[fault]] #3 must be a path relative to the target's data dir");
    assert_line(&e, name, "26:9", "`every` does not apply to a disk-full `io` fault in [[fault]] #3");
    assert_line(&e, name, "33:15", "`probability` in [[fault]] #4 must be a number above 0 and at most 1");
    assert_line(&e, name, "36:1", "an `io` fault in [[fault]] #5 needs what it does: errno = \"EIO\"");
    assert!(e.contains("7 error(s); nothing was started"), "{e}");
}

#[test]
fn packet_faults_need_namespaces_probabilities_and_known_peers() {
    let name = "packet_mistakes.toml";
    let e = invalid(name);
    assert_line(&e, name, "11:1", "a `packet` fault in [[fault]] #1 needs the targets in namespaces");
    assert_line(&e, name, "11:1", "missing key `duration` in [[fault]] #1; a `packet` fault heals after it");
    assert_line(&e, name, "14:8", "`loss` in [[fault]] #1 must be a probability above 0 and at most 1");
    assert_line(
        &e,
        name,
        "15:9",
        "`bb` in `peers` of [[fault]] #1 is not a target of this scenario, did you mean `b`?",
    );
    assert_line(&e, name, "22:9", "`peers` in [[fault]] #2: netem (delay, duplicate, corrupt, reorder) acts on");
    assert!(e.contains("6 error(s); nothing was started"), "{e}");
}

#[test]
fn abort_conditions_are_checked_before_anything_runs() {
    let name = "abort_mistakes.toml";
    let e = invalid(name);
    assert_line(&e, name, "8:11", "`{port}` in `command` of [abort]: it may use {host.NAME}, {port.NAME}");
    assert_line(&e, name, "9:12", "`interval` in [abort] must be more than 0");
    assert_line(&e, name, "10:17", "`unhealthy_for` in [abort]: unknown unit `soon`");
    assert!(e.contains("3 error(s); nothing was started"), "{e}");
}

#[test]
fn fault_menus_hold_only_targeted_kinds_known_targets_and_their_keys() {
    let name = "menu_mistakes.toml";
    let e = invalid(name);
    assert_line(&e, name, "8:8", "a `corrupt` fault cannot be drawn from a menu in [[fault]] #1");
    assert_line(&e, name, "14:10", "unknown target `bb` in `target` of [[fault]] #2; known: a");
    assert_line(&e, name, "18:1", "a `partition` in the menu of [[fault]] #3 needs [network] kind = \"namespaces\"");
    assert_line(&e, name, "21:8", "`torn` applies to none of the menu's kinds (kill, partition) in [[fault]] #3");
    assert_line(&e, name, "23:8", "`draw` in [[fault]] #3 must be between 1 and 100, found 0");
    assert!(e.contains("5 error(s); nothing was started"), "{e}");
}

#[test]
fn clock_faults_take_a_signed_offset_a_positive_rate_and_a_process_or_container_target() {
    let name = "clock_mistakes.toml";
    let e = invalid(name);
    assert_line(&e, name, "12:10", "`offset` in [[fault]] #1: unknown unit `hours` in `2 hours`");
    assert_line(&e, name, "13:8", "`rate` in [[fault]] #1 must be a number above 0 (2.0: twice as fast)");
    let compose = "[[fault]] #2: a `clock` fault preloads libfaketime into a process or container target; `kv` is a \
                   compose service";
    assert_line(&e, name, "16:1", compose);
    assert!(e.contains("3 error(s); nothing was started"), "{e}");
}

#[test]
fn host_mistakes_name_the_host_and_what_the_agent_does() {
    let e = invalid("host_mistakes.toml");
    let f = "host_mistakes.toml";
    let partition = "a `partition` fault on target `remote`, which runs on a host";
    assert_line(&e, f, "8:1", "missing key `address` in [host.db1]");
    assert_line(&e, f, "13:8", "`port` in [host.db2] must be between 1 and 65535, found 70000");
    assert_line(&e, f, "14:10", "`engine = \"docker.sock\"`: expected the engine's unix socket on that host");
    assert_line(&e, f, "17:8", "[target.kv] runs on host `db3`, which no [host.db3] table defines (hosts: db2)");
    assert_line(&e, f, "24:8", "[target.app]: `mounts` name paths of this machine, which a container on a host cannot");
    assert_line(&e, f, "33:8", "[target.web]: `host` applies to process and container targets");
    assert_line(&e, f, "41:1", "[[fault]] #1: a `clock` fault on target `remote`, which runs on a host");
    assert_line(&e, f, "47:1", "[[recover]] #1: `remove` acts on a data dir here; target `remote` runs on a host");
    assert!(!e.contains("[[fault]] #2"), "a kill goes through the agent: {e}");
    assert_line(&e, f, "57:1", &format!("[[fault]] #3: {partition}: isolating it would cut its agent's link too"));
    assert_line(&e, f, "63:1", &format!("[[fault]] #4: {partition}: `app` and `remote` run on the same host"));
}

#[test]
fn pod_mistakes_name_the_line_and_what_a_pod_takes() {
    let e = invalid("pod_mistakes.toml");
    let f = "pod_mistakes.toml";
    assert_line(&e, f, "9:11", "`command` does not apply to a pod target, in [target.kv]: the pod's command is in");
    assert_line(&e, f, "12:1", "missing key `namespace` in [target.nameless]; expected the pods' namespace (none is");
    assert_line(&e, f, "14:12", "`selector` of [target.nameless] names no label: it would select every pod");
    assert_line(&e, f, "20:13", "`namespace` applies to kind = \"pod\" only, in [target.local]");
    assert_line(&e, f, "26:20", "`app = \"k v\"` in `selector` of [target.badlabel] is not a label");
    assert_line(&e, f, "30:1", "[[fault]] #1: scope = \"group\" on target `kv`, a pod: a signal sent with exec");
    assert_line(&e, f, "36:1", "[[fault]] #2: a `delete-pod` fault needs a kind = \"pod\" target; `local` is not");
    assert_line(&e, f, "44:9", "`grace` in [[fault]] #3 is whole seconds (the API's unit)");
    assert_line(&e, f, "47:1", "missing key `duration` in [[fault]] #4; a NetworkPolicy is deleted after it");
    assert_line(&e, f, "52:1", "[[fault]] #5: a `scale` fault scales target `kv`'s `owner`, which it has not");
    assert_line(&e, f, "58:1", "[[recover]] #1: `stop` acts on a target crashlab runs; `kv` is a pod the cluster runs");
    assert_line(&e, f, "62:1", "[[recover]] #2: a `disconnect` fault on target `kv`, a pod: a pod is reached");
    assert_line(&e, f, "74:16", "[target.both] has both `service` and `port_forward`: the pods are reached one way");
    assert_line(&e, f, "77:1", "[target.neither] reaches its pods through neither; expected service = \"kv\"");
    assert_line(&e, f, "86:9", "unknown Chaos Mesh kind `PodChaos` in [[fault]] #6; expected one of: NetworkChaos,");
    assert_line(&e, f, "87:8", "`spec.selector` in [[fault]] #6: crashlab sets it to the target's pods");
}
