//! `crashlab schema`: a JSON Schema of the scenario format, for editors
//! (e.g. Even Better TOML / Taplo). The key lists are the compiler's own, and
//! a test keeps each table's properties equal to them.

use serde_json::{json, Map, Value};

use super::*;
use crate::scenario::expect::{Aggregate, Metric};

/// `schema`, and `then` or `otherwise` as `condition` holds or not.
fn with_condition(mut schema: Value, condition: Value, then: Value, otherwise: Value) -> Value {
    let object = schema.as_object_mut().expect("an object schema");
    object.insert("if".into(), condition);
    object.insert("then".into(), then);
    object.insert("else".into(), otherwise);
    schema
}

/// The properties of `a` and `b` in one object.
fn merged(mut a: Value, b: Value) -> Value {
    if let (Some(a), Value::Object(b)) = (a.as_object_mut(), b) {
        a.extend(b);
    }
    a
}

fn object(keys: &[&str], props: Value, required: &[&str]) -> Value {
    let props = props.as_object().cloned().unwrap_or_default();
    debug_assert!(keys.iter().all(|k| props.contains_key(*k)), "a key lacks a schema");
    json!({ "type": "object", "additionalProperties": false, "properties": props, "required": required })
}

const DURATION: &str = r"^[0-9]+(\.[0-9]+)?(us|ms|s|m|h)$";
const TIME: &str = r"^[0-9]+(\.[0-9]+)?(us|ms|s|m|h)(\.\.[0-9]+(\.[0-9]+)?(us|ms|s|m|h))?$";

fn duration(description: &str) -> Value {
    json!({ "type": "string", "pattern": DURATION, "description": description })
}

fn command(description: &str) -> Value {
    json!({ "type": "array", "items": { "type": "string" }, "minItems": 1, "description": description })
}

pub fn schema() -> Value {
    let port = json!({ "description": "\"{port}\" (the target's allocated port), \"{proxy.<name>}\" (through a proxy) or a number",
        "oneOf": [ { "type": "string", "pattern": "^\\{(port|proxy\\.[A-Za-z0-9_-]+)\\}$" }, { "type": "integer", "minimum": 1, "maximum": 65535 } ] });
    let probe = object(
        PROBE_KEYS,
        json!({
            "kind": { "enum": PROBE_KINDS },
            "port": port,
            "path": { "type": "string", "description": "HTTP path (http)" },
            "status": { "type": "integer", "description": "expected HTTP status (http), default 200" },
            "body_contains": { "type": "string", "description": "text the HTTP body must contain (http)" },
            "command": command("command that exits 0 when healthy (command)"),
            "send": { "type": "string", "description": "tcp: a request to send (\\r\\n allowed), e.g. \"PING\\r\\n\"" },
            "expect": { "type": "string", "description": "tcp: text the answer must contain, e.g. \"+PONG\"" },
            "interval": duration("time between samples, default 10ms"),
            "timeout": duration("time one sample may take, default 500ms"),
            "healthy_after": { "type": "integer", "minimum": 1, "description": "consecutive successes that make a sustained healthy window, default 3" },
        }),
        &["kind"],
    );
    let restart = object(
        RESTART_KEYS,
        json!({ "policy": { "enum": ["always", "never", "engine"], "description": "engine: the container engine's own restart: always" }, "delay": duration("wait before restarting, default 0ms") }),
        &[],
    );
    let target = object(
        TARGET_KEYS,
        json!({
            "kind": { "enum": TARGET_KINDS },
            "command": command("program and arguments; {port}, {data_dir}, {run_dir}, {trial}, {target} are filled in; `crashlab` is this binary"),
            "env": { "type": "object", "additionalProperties": { "type": "string" } },
            "restart": restart,
            "stop_timeout": duration("how long a graceful stop waits before SIGKILL, default 5s"),
            "stop_signal": { "type": "string", "description": "process targets: what a graceful stop sends first, default SIGTERM (PostgreSQL: SIGINT, its fast shutdown)" },
            "probe": probe,
            "before_start": { "type": "array", "items": command("a command") },
            "after_stop": { "type": "array", "items": command("a command") },
            "file": { "type": "string", "description": "compose: the compose file, relative to the scenario" },
            "service": { "type": "string", "description": "compose: the service; pod: the NodePort Service that reaches the pods ({host}, {port}); or port_forward" },
            "port_forward": { "type": "integer", "minimum": 1, "maximum": 65535, "description": "pod: a port of the pods that crashlab forwards through the Kubernetes API, each connection to a ready pod ({host} = 127.0.0.1, {port} = the local port); instead of service" },
            "namespace": { "type": "string", "description": "pod: the pods' namespace (never guessed; kube-system only if written here)" },
            "selector": { "type": "object", "minProperties": 1, "additionalProperties": { "type": "string" }, "description": "pod: the labels the pods carry, e.g. { app = \"kv\" }" },
            "container": { "type": "string", "description": "pod: the container the service runs in, default the pod's first" },
            "kubeconfig": { "type": "string", "description": "pod: the kubeconfig, relative to the scenario; default KUBECONFIG, else ~/.kube/config" },
            "context": { "type": "string", "description": "pod: the kubeconfig's context, default its current one" },
            "owner": { "type": "string", "pattern": "^(deployment|statefulset)/[A-Za-z0-9._-]+$", "description": "pod: the workload that owns the pods, for `scale` faults: deployment/NAME or statefulset/NAME" },
            "image": { "description": "container: the image (crashlab/demo-kv is built here, without a registry), or { debian = [\"PACKAGE\", ...] }: a Debian image built here on demand",
                "oneOf": [ { "type": "string" }, { "type": "object", "additionalProperties": false, "required": ["debian"],
                    "properties": { "debian": { "type": "array", "items": { "type": "string" }, "minItems": 1 } } } ] },
            "data_dir": { "type": "string", "description": "the data dir ({data_dir}); default: a fresh one per trial in the run directory" },
            "disposable": { "type": "boolean", "description": "whether storage faults may damage a data_dir of your choosing (the default ones always are)" },
            "mounts": { "type": "array", "items": { "type": "string", "pattern": "^[^:]+:/[^:]*(:ro)?$" }, "description": "container: extra bind mounts, HOST:/PATH or HOST:/PATH:ro, the host path relative to the scenario" },
            "reach": { "enum": crate::scenario::Reach::NAMES, "description": "container: how {host}:{port}, probes and the workload reach it: \"address\" (default for a container crashlab creates here: its own address on a network of the run) or \"published\" (its port published on 127.0.0.1, through the engine's forwarding)" },
            "host": { "type": "string", "description": "process, container: the [host.<name>] it runs on, through crashlab's agent there (a container in that host's engine); default this machine" },
        }),
        &["probe"],
    );
    // A compose target's command is in its compose file.
    let target = with_condition(
        target,
        json!({ "properties": { "kind": { "const": "compose" } }, "required": ["kind"] }),
        json!({ "required": ["file", "service"] }),
        // A pod's command is in its spec.
        with_condition(
            json!({}),
            json!({ "properties": { "kind": { "const": "pod" } }, "required": ["kind"] }),
            json!({ "required": ["namespace", "selector"] }),
            json!({ "required": ["command"] }),
        ),
    );
    let http_request = json!({
        "method": { "type": "string", "description": "default PUT for a write, GET for a read" },
        "path": { "type": "string", "description": "appended to http://{host}:{port}" },
        "headers": { "type": "object", "additionalProperties": { "type": "string" } },
        "body": { "type": "string", "description": "braces around anything but a placeholder name are literal (JSON)" },
    });
    let mut http_read = http_request.clone();
    http_read.as_object_mut().expect("an object").extend(
        json!({
            "value": { "type": "string", "description": "per key: a JSON pointer to the value in the answer (default: the whole body)" },
            "contains": { "type": "boolean", "description": "per key: the write survived if the answer contains its value" },
            "list": { "enum": workload::LIST_FORMATS, "description": "read every key at once: json (an array of items or an object of key to value), ndjson, lines (key<TAB>value)" },
            "items": { "type": "string", "description": "list json: a JSON pointer to the array or object (default: the whole body)" },
            "key": { "type": "string", "description": "list json, ndjson: a JSON pointer to an item's key (default /key)" },
            "cursor": { "type": "string", "description": "list json: a JSON pointer to the next page's cursor, filled into {cursor}" },
            "base64": { "type": "boolean", "description": "keys and values come base64-encoded (etcd)" },
        })
        .as_object()
        .cloned()
        .unwrap_or_default(),
    );
    let statuses = |description: &str| json!({ "type": "array", "items": { "type": "integer", "minimum": 100, "maximum": 599 }, "minItems": 1, "description": description });
    let workload = object(
        WORKLOAD_KEYS,
        json!({
            "kind": { "enum": WORKLOAD_KINDS },
            "target": { "type": "string" },
            "via": { "type": "string", "description": "a [proxy.<name>] in front of the target that the clients go through" },
            "rate": { "type": "integer", "minimum": 1, "description": "operations per second, open loop" },
            "duration": duration("how long the workload runs; faults fall inside it"),
            "connections": { "type": "integer", "minimum": 1, "description": "concurrent connections, default 8" },
            "quiet": { "type": "string", "description": "a period after the workload with no writes, in which faults may still fall (default 0ms)" },
            "timeout": duration("an op with no answer by then is unknown, default 500ms"),
            "write": { "description": "http: the request of a write (method, path, headers, body; placeholders {key} {value} {seq} {key_b64} {value_b64} {key_json} {value_json}); command: the client run once per write, e.g. [\"./client\", \"put\", \"{key}\", \"{value}\"]",
                "oneOf": [ object(workload::HTTP_REQUEST_KEYS, http_request.clone(), &["path"]), command("") ] },
            "read": object(workload::HTTP_READ_KEYS, http_read, &["path"]),
            "ack": statuses("http: the statuses that acknowledge a write; default every 2xx"),
            "refused": statuses("http: statuses the service answers only when it did not apply the write (408, 429 and 5xx are otherwise unknown)"),
            "client": command("command: a client started once per connection that reads `PUT <key> <value>` lines and answers OK, FAIL <reason> or UNKNOWN <reason>"),
            "refused_exit": { "type": "array", "items": { "type": "integer", "minimum": 1, "maximum": 255 }, "minItems": 1, "description": "command with write: the exit codes that mean the write was refused (other non-zero exits are unknown)" },
            "read_back": command("command: prints key<TAB>value for every key the store holds"),
            "url": { "type": "string", "description": "sql: postgres://USER@{host}:{port}/DB or mysql://USER@{host}:{port}/DB (also mariadb://)" },
            "setup": { "type": "array", "items": { "type": "string" }, "description": "sql: statements run once per trial before the first write (CREATE TABLE IF NOT EXISTS ...)" },
            "insert": { "type": "string", "description": "sql: the write; {key}, {value} and {seq} become bind parameters" },
            "select": { "type": "string", "description": "sql: the read-back, rows of (key, value)" },
            "transaction": { "type": "boolean", "description": "sql: each write is BEGIN, insert, COMMIT (default: autocommit)" },
        }),
        &["kind", "target", "duration"],
    );
    // kill, pause, restart, packet: a target's name, or a command that prints it
    // when the fault is due.
    let chooser = json!({ "type": "object", "additionalProperties": false, "required": ["command"],
        "properties": { "command": command("prints the name of the target, e.g. the member that leads now") } });
    let chosen = json!({ "oneOf": [ { "type": "string" }, chooser.clone() ] });
    // The io, packet and pressure keys: one json! of every key would pass the
    // macro's recursion limit.
    let more_keys = json!({
        "limit": { "description": "memory: the target's memory limit, \"64MiB\" in all or \"+0\": no more than it uses when the fault comes", "oneOf": [ { "type": "integer", "minimum": 0 }, { "type": "string" } ] },
        "cpus": { "type": "number", "minimum": 0.01, "maximum": 1024, "description": "cpu: the CPU time the target may use, in CPUs (0.2: a fifth of one CPU's time per 100 ms period)" },
        "cpu": { "type": "integer", "minimum": 1, "maximum": 256, "description": "hog: stress-ng workers spinning on the CPU" },
        "memory": { "description": "hog: bytes stress-ng keeps allocated and touched (\"1GiB\")", "oneOf": [ { "type": "integer", "minimum": 0 }, { "type": "string" } ] },
        "io": { "type": "integer", "minimum": 1, "maximum": 256, "description": "hog: stress-ng workers writing and syncing files (in the trial's directory)" },
        "draw": { "type": "integer", "minimum": 1, "maximum": 100, "description": "menus: how many faults to draw, each at its own time from `at`; default 1" },
            "ops": { "type": "array", "items": { "enum": IoOp::NAMES }, "minItems": 1, "description": "io: the operations it acts on, default all" },
            "errno": { "type": "string", "pattern": "^E[A-Z0-9]+$", "description": "io: the operations fail with this error (EIO, ENOSPC, EDQUOT, EROFS, ...)" },
            "disk_full": { "description": "io: ENOSPC on growth past this size of the data dir (\"64MiB\"), or past its size at injection plus this (\"+1MiB\", \"+0\")", "oneOf": [ { "type": "integer", "minimum": 0 }, { "type": "string" } ] },
            "every": { "type": "integer", "minimum": 1, "description": "io errno, delay: only every Nth matching operation" },
            "probability": { "type": "number", "exclusiveMinimum": 0, "maximum": 1, "description": "io errno, delay: each matching operation with this probability, drawn from the trial's seed" },
            "peers": { "type": "array", "items": { "type": "string" }, "description": "packet: the targets whose packets to and from the target are hit, default every address of the network" },
            "loss": { "type": "number", "exclusiveMinimum": 0, "maximum": 1, "description": "packet: each packet dropped with this probability (iptables statistic)" },
            "duplicate": { "type": "number", "exclusiveMinimum": 0, "maximum": 1, "description": "packet (netem): share of what the target sends that is duplicated" },
            "corrupt": { "type": "number", "exclusiveMinimum": 0, "maximum": 1, "description": "packet (netem): share of what the target sends that is corrupted" },
            "reorder": { "type": "number", "exclusiveMinimum": 0, "maximum": 1, "description": "packet (netem): share of what the target sends that is sent at once, ahead of delayed packets" },
    });
    let fault = object(
        FAULT_KEYS,
        merged(
            json!({
                "kind": { "description": "a fault kind, or a list of them: a menu, drawn from with each trial's seed", "oneOf": [ { "enum": FAULT_KINDS }, { "type": "array", "items": { "enum": FAULT_KINDS }, "minItems": 1 } ] },
                "target": { "oneOf": [ { "type": "string" }, chooser.clone(), { "type": "array", "items": { "type": "string" }, "minItems": 1, "description": "a menu of targets, drawn from with each trial's seed" } ] },
                "at": { "type": "string", "pattern": TIME, "description": "a time (2s) or a range drawn with the trial's seed (2s..4s), from the start of the workload" },
                "signal": { "type": "string", "description": "kill: the signal, default SIGKILL" },
                "replicas": { "type": "integer", "minimum": 0, "description": "scale: the replicas the owner is scaled to (back to what it was after `duration`, or at the end of the trial)" },
                "grace": duration("delete-pod: the grace period, whole seconds (0s: at once); default the pod's own"),
                "chaos": { "enum": ["NetworkChaos", "IOChaos", "TimeChaos", "StressChaos"], "description": "chaos-mesh: the kind of Chaos Mesh resource created on the target's pods" },
                "spec": { "type": "object", "description": "chaos-mesh: the resource's spec as Chaos Mesh documents it (action, delay, loss...); crashlab sets its selector (the target's pods), its duration (the fault's) and, unless written, mode = \"all\"" },
                "scope": { "enum": SignalScope::NAMES, "description": "kill: which processes the signal reaches: main (the main process only), group (its process group), all (every process the target started); default group for a process target, main for a container or a pod (PID 1 of its container, sent with exec; group is refused there)" },
                "duration": duration("pause, link faults, packet, isolate-pod, chaos-mesh: how long; stale-lock, io, clock, memory, cpu, hog: heal after this long (default: at the end of the trial)"),
                "path": { "type": "string", "description": "corrupt: a file or glob relative to the data dir; stale-lock: the lock or pid file; io: a glob of the paths it acts on (* within a directory, ** across), default every path" },
                "mode": { "enum": faults::CORRUPT_MODES, "description": "corrupt: what to do to the file" },
                "when": { "enum": ["offline", "online"], "description": "corrupt: with the target stopped (default) or running" },
                "bits": { "type": "integer", "minimum": 1, "description": "bitflip: how many bits, default 1" },
                "offset": { "description": "bitflip, zero, random: where; bytes, \"50%\" of the file, or \"seeded\" (default); clock: how far the clock jumps, \"+2h\" ahead or \"-30s\" behind", "oneOf": [ { "type": "integer", "minimum": 0 }, { "type": "string" } ] },
                "length": { "description": "zero, random, swap: bytes (4096, \"1MiB\"), default 4096", "oneOf": [ { "type": "integer", "minimum": 1 }, { "type": "string" } ] },
                "to": { "description": "truncate: the new length, bytes or \"50%\"", "oneOf": [ { "type": "integer", "minimum": 0 }, { "type": "string" } ] },
                "bytes": { "description": "torn-tail: how many bytes to cut, default seeded 1..512; limit-data: close after this many bytes", "oneOf": [ { "type": "integer", "minimum": 0 }, { "type": "string" } ] },
                "variant": { "enum": faults::STALE_LOCK_VARIANTS, "description": "stale-lock: leftover (names a dead pid), held (a surviving child keeps the lock), pid-reused (names a live unrelated process)" },
                "lock": { "enum": ["flock", "fcntl"], "description": "stale-lock held: the lock kind, default flock" },
                "setup": { "type": "boolean", "description": "only sets up a condition for the faults after it: no RTO of its own; the trial's RTO and TTD are the other faults'" },
                "user": { "type": "string", "description": "stale-lock held, pid-reused: the user the holder or the unrelated live process runs as (default: the harness's)" },
                "torn": { "type": "boolean", "description": "lose-unsynced: keep a seeded prefix of the last unsynced write" },
                "proxy": { "type": "string", "description": "link faults (blackhole, refuse, reset, latency, bandwidth, slow-close, timeout, slice, limit-data): the [proxy.<name>]" },
                "direction": { "enum": ["both", "up", "down", "in", "out"], "description": "link faults: up = client to target, down = target to client; packet: in (what the target receives), out (what it sends); default both" },
                "delay": duration("latency: per chunk; slow-close, timeout: how long; slice: between pieces; io: per operation; packet (netem): per packet sent"),
                "jitter": duration("latency: uniform ± around the delay, default 0; io: up to this much more per operation (seeded)"),
                "rate": { "description": "bandwidth: bytes per second (\"100KB/s\"); clock: how fast the target's clock runs from the fault on (2.0: twice as fast)", "oneOf": [ { "type": "number", "exclusiveMinimum": 0 }, { "type": "string" } ] },
                "size": { "description": "slice: bytes per piece", "oneOf": [ { "type": "integer", "minimum": 1 }, { "type": "string" } ] },
                "isolate": { "description": "partition: the target cut off from every other address, or a command that names it when the fault is due", "oneOf": [ { "type": "string" }, chooser.clone() ] },
                "groups": { "type": "array", "items": { "type": "array", "items": { "type": "string" } }, "minItems": 2, "maxItems": 2, "description": "partition: two groups of targets that cannot reach each other" },
                "one_way": { "type": "boolean", "description": "partition with groups: only what the first group sends to the second is dropped" },
                "command": command("command: the disaster as a command run against the target (must exit 0)"),
            }),
            more_keys,
        ),
        &["kind", "at"],
    );
    // A link fault names a proxy (its target is the one behind it), a
    // partition its targets in `isolate` or `groups`; others one target.
    let mut aimed: Vec<&str> = FaultName::link_names();
    aimed.push(FaultName::Partition.as_str());
    let fault = with_condition(
        fault,
        json!({ "properties": { "kind": { "enum": aimed } }, "required": ["kind"] }),
        json!({}),
        json!({ "required": ["target"] }),
    );
    let backup = object(
        BACKUP_KEYS,
        json!({
            "name": { "type": "string", "description": "what `restore` steps call it, default backup-N" },
            "target": chosen.clone(),
            "at": { "type": "string", "pattern": TIME, "description": "when, before the first fault" },
            "format": { "enum": ["dir", "tar.gz"], "description": "a copy of the data dir (default) or a .tar.gz of it" },
        }),
        &["target", "at"],
    );
    // A `fault` step takes a [[fault]]'s keys, but not `at`.
    let mut step_props = fault["properties"].as_object().cloned().unwrap_or_default();
    step_props.remove("at");
    let own = json!({
        "action": { "enum": RECOVER_ACTIONS, "description": "may be left out when `manual` is given" },
        "target": { "type": "string" },
        "command": command("run, check: the command, templated like the target's; fault: as in [[fault]]"),
        "timeout": duration("run, check: default 60s; wait: default 30s"),
        "from": { "type": "string", "description": "restore: a [[backup]] name, or a directory or .tar/.tar.gz (relative to the scenario)" },
        "path": { "type": "string", "description": "remove: a path relative to the data dir; fault: as in [[fault]]" },
        "duration": duration("wait: a fixed pause instead of waiting for health; fault: as in [[fault]]"),
        "budget": duration("any step: the time the runbook allows it; a step over budget fails the trial"),
        "manual": { "type": "string", "description": "manual: what the operator does, confirmed at a prompt or by --yes" },
    });
    step_props.extend(own.as_object().cloned().unwrap_or_default());
    let recover = object(&step_keys(), Value::Object(step_props), &[]);
    let mut expect_props = Map::new();
    for name in Metric::NAMES {
        let metric: Metric = name.parse().expect("listed names parse");
        let bound = if metric.is_time() {
            json!({ "type": "string", "description": "a bound such as \"<= 1s\"" })
        } else if metric.is_percentage() {
            json!({ "type": "string", "pattern": "%\\s*$", "description": "a bound such as \"<= 1%\" of the writes sent during the outage" })
        } else {
            json!({ "oneOf": [ { "type": "integer" }, { "type": "string" } ], "description": "a count (0) or a bound (\"<= 5\")" })
        };
        // `rto.p95 = "<= 2s"`: a statistic over the trials; `each` = every trial.
        let mut stats = Map::new();
        for stat in std::iter::once("each").chain(Aggregate::NAMES.iter().copied()) {
            stats.insert(stat.to_string(), bound.clone());
        }
        let per_stat = json!({ "type": "object", "additionalProperties": false, "properties": stats });
        expect_props.insert(name.to_string(), json!({ "oneOf": [bound, per_stat] }));
    }
    let expect = object(Metric::NAMES, Value::Object(expect_props), &[]);
    let trials = object(
        TRIALS_KEYS,
        json!({
            "count": { "type": "integer", "minimum": 1 },
            "seed": { "type": "integer", "minimum": 0 },
            "startup_timeout": duration("default 30s"),
            "recovery_timeout": duration("default 30s"),
        }),
        &[],
    );
    let abort = object(
        abort::ABORT_KEYS,
        json!({
            "unhealthy_for": duration("a target whose every probe sample failed for longer than this stops the run"),
            "lost_acked": { "type": "integer", "minimum": 0, "description": "more acknowledged writes lost than this, over the trials so far, stops the run" },
            "command": command("a check (an SLO query) run every `interval` while a trial runs; exiting non-zero stops the run"),
            "interval": duration("how often the command runs, default 1s"),
        }),
        &[],
    );
    let mut root = object(
        TOP_KEYS,
        json!({
            "name": { "type": "string" },
            "description": { "type": "string" },
            "target": { "type": "object", "additionalProperties": target, "minProperties": 1 },
            "proxy": { "type": "object", "additionalProperties": object(PROXY_KEYS, json!({ "target": { "type": "string", "description": "the target whose {port} it forwards to; it listens on {proxy.<name>}" } }), &["target"]) },
            "network": object(NETWORK_KEYS, json!({ "kind": { "enum": ["host", "namespaces"], "description": "namespaces: each target in a network namespace of its own ({host} is its address), for partitions" } }), &["kind"]),
            "workload": workload,
            "fault": { "type": "array", "items": fault },
            "backup": { "type": "array", "items": backup },
            "recover": { "type": "array", "items": recover },
            "expect": expect,
            "trials": trials,
            "abort": abort,
            "host": { "type": "object", "additionalProperties": object(hosts::HOST_KEYS, json!({
                "address": { "type": "string", "description": "the host's name or IP address (reached over SSH; {host} of its targets)" },
                "user": { "type": "string", "description": "the SSH user; default as ssh decides (your ssh config)" },
                "port": { "type": "integer", "minimum": 1, "maximum": 65535, "description": "the SSH port, default 22 (or your ssh config's)" },
                "identity": { "type": "string", "description": "private key file (ssh -i), relative to the scenario" },
                "known_hosts": { "type": "string", "description": "known_hosts file to check the host's key against (default: yours); a mismatch is refused" },
                "engine": { "type": "string", "description": "unix socket of the host's Docker engine, for its container targets, e.g. unix:///run/user/1000/docker.sock (default: the host's DOCKER_HOST, else /var/run/docker.sock)" },
            }), &["address"]) },
        }),
        &["name", "target"],
    );
    root["$schema"] = json!("https://json-schema.org/draft/2020-12/schema");
    root["title"] = json!("crashlab scenario");
    root
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(v: &Value) -> Vec<String> {
        let mut k: Vec<String> = v["properties"].as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    }

    fn sorted(list: &[&str]) -> Vec<String> {
        let mut k: Vec<String> = list.iter().map(|s| s.to_string()).collect();
        k.sort();
        k
    }

    #[test]
    fn every_table_lists_exactly_the_compilers_keys() {
        let s = schema();
        let target = &s["properties"]["target"]["additionalProperties"];
        assert_eq!(keys(&s), sorted(TOP_KEYS));
        assert_eq!(keys(target), sorted(TARGET_KEYS));
        assert_eq!(keys(&target["properties"]["probe"]), sorted(PROBE_KEYS));
        assert_eq!(keys(&target["properties"]["restart"]), sorted(RESTART_KEYS));
        assert_eq!(keys(&s["properties"]["workload"]), sorted(WORKLOAD_KEYS));
        assert_eq!(keys(&s["properties"]["network"]), sorted(NETWORK_KEYS));
        assert_eq!(keys(&s["properties"]["proxy"]["additionalProperties"]), sorted(PROXY_KEYS));
        assert_eq!(keys(&s["properties"]["fault"]["items"]), sorted(FAULT_KEYS));
        assert_eq!(keys(&s["properties"]["backup"]["items"]), sorted(BACKUP_KEYS));
        assert_eq!(keys(&s["properties"]["recover"]["items"]), sorted(&step_keys()));
        assert_eq!(keys(&s["properties"]["expect"]), sorted(Metric::NAMES));
        assert_eq!(keys(&s["properties"]["trials"]), sorted(TRIALS_KEYS));
        assert_eq!(keys(&s["properties"]["abort"]), sorted(abort::ABORT_KEYS));
        assert_eq!(keys(&s["properties"]["host"]["additionalProperties"]), sorted(hosts::HOST_KEYS));
    }
}
