//! The `[workload]` section: which client writes, how fast, and for the
//! `http` and `command` kinds, how a write is made and how the store is
//! read back. Every template is checked here, so a run never meets an
//! unknown placeholder or a client that does not exist.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::diagnostic::{self, Diagnostics};
use super::fields::{Fields, Span};
use super::plan::*;
use super::{target_ref, template};

pub const WORKLOAD_KEYS: &[&str] = &[
    "kind",
    "target",
    "via",
    "rate",
    "duration",
    "connections",
    "timeout",
    "quiet",
    "write",
    "read",
    "ack",
    "refused",
    "client",
    "refused_exit",
    "read_back",
    "url",
    "setup",
    "insert",
    "select",
    "transaction",
];
pub const WORKLOAD_KINDS: &[&str] = <WorkloadKind as strum::VariantNames>::VARIANTS;
/// The keys of an HTTP request template (`write`, `read`).
pub const HTTP_REQUEST_KEYS: &[&str] = &["method", "path", "headers", "body"];
/// The keys of `read` beyond the request: where the value is found.
pub const HTTP_READ_KEYS: &[&str] =
    &["method", "path", "headers", "body", "value", "contains", "list", "items", "key", "cursor", "base64"];
pub const LIST_FORMATS: &[&str] = <ListFormat as strum::VariantNames>::VARIANTS;

/// What a write's templates may name: the key and value in plain, base64
/// and JSON-string-escaped forms, and the write's sequence number.
pub const WRITE_PLACEHOLDERS: &[&str] = &["key", "value", "seq", "key_b64", "value_b64", "key_json", "value_json"];
/// What a per-key read's templates may name.
pub const READ_KEY_PLACEHOLDERS: &[&str] = &["key", "key_b64", "key_json"];

/// The keys only some kinds take, and those kinds.
const KIND_KEYS: &[(&str, &[WorkloadKind])] = &[
    ("write", &[WorkloadKind::Http, WorkloadKind::Command]),
    ("read", &[WorkloadKind::Http]),
    ("ack", &[WorkloadKind::Http]),
    ("refused", &[WorkloadKind::Http]),
    ("client", &[WorkloadKind::Command]),
    ("refused_exit", &[WorkloadKind::Command]),
    ("read_back", &[WorkloadKind::Command]),
    ("url", &[WorkloadKind::Sql]),
    ("setup", &[WorkloadKind::Sql]),
    ("insert", &[WorkloadKind::Sql]),
    ("select", &[WorkloadKind::Sql]),
    ("transaction", &[WorkloadKind::Sql]),
];

pub(super) fn compile_workload(
    f: &Fields,
    targets: &[&str],
    proxies: &[ProxyPlan],
    check_paths: bool,
    d: &mut Diagnostics,
) -> Option<WorkloadPlan> {
    let kind = match f.choice("kind", "workload kind", WORKLOAD_KINDS, d) {
        Some((kind, _)) => Some(kind.parse::<WorkloadKind>().expect("one of WORKLOAD_KINDS")),
        None if f.get("kind").is_none() => {
            let kinds = WORKLOAD_KINDS.join(", ");
            d.error(f.span.clone(), format!("missing key `kind` in [workload]; expected one of: {kinds}"));
            None
        }
        None => None,
    };
    if let Some(kind) = kind {
        for (key, kinds) in KIND_KEYS {
            if let (Some(value), false) = (f.get(key), kinds.contains(&kind)) {
                let names: Vec<String> = kinds.iter().map(|k| format!("\"{}\"", <&str>::from(k))).collect();
                d.error(value.span(), format!("`{key}` in [workload] is for kind = {} only", names.join(" or ")));
            }
        }
    }
    // Without a kind, the other keys are still checked: every error at once.
    let client = kind.and_then(|kind| match kind {
        WorkloadKind::DemoKv => Some(WorkloadClient::DemoKv),
        WorkloadKind::Redis => Some(WorkloadClient::Redis),
        WorkloadKind::Postgres => Some(WorkloadClient::Postgres),
        WorkloadKind::Http => http_workload(f, d).map(|h| WorkloadClient::Http(Box::new(h))),
        WorkloadKind::Command => command_workload(f, check_paths, d).map(WorkloadClient::Command),
        WorkloadKind::Sql => sql_workload(f, d).map(|s| WorkloadClient::Sql(Box::new(s))),
    });
    let target = target_ref(f, targets, d);
    let via = via(f, proxies, target.as_ref(), d);
    let rate = f.integer("rate", 1, 100_000, d).unwrap_or(100) as u32;
    let duration = if f.get("duration").is_none() {
        d.error(f.span.clone(), "missing key `duration` in [workload]; expected a duration such as `6s`");
        None
    } else {
        f.positive_duration(
            "duration",
            "the workload would send nothing, and a run with nothing acknowledged proves nothing",
            d,
        )
    };
    let connections = f.integer("connections", 1, 1024, d).unwrap_or(8) as u32;
    let timeout = f
        .positive_duration(
            "timeout",
            "no write could be acknowledged in time, and a run with nothing acknowledged proves nothing",
            d,
        )
        .unwrap_or(Duration::from_millis(500));
    let quiet = f.duration("quiet", d).unwrap_or(Duration::ZERO);
    Some(WorkloadPlan { client: client?, target: target?, via, rate, duration: duration?, connections, timeout, quiet })
}

fn via(f: &Fields, proxies: &[ProxyPlan], target: Option<&TargetRef>, d: &mut Diagnostics) -> Option<String> {
    let (name, span) = f.str("via", d)?;
    match proxies.iter().find(|p| p.name == name) {
        Some(p) if Some(&p.target) != target => {
            let message = format!(
                "`via` = \"{name}\" in [workload]: that proxy leads to `{}`, not the workload's target",
                p.target
            );
            d.error(span, message);
            None
        }
        Some(_) => Some(name.to_string()),
        None => {
            let names: Vec<&str> = proxies.iter().map(|p| p.name.as_str()).collect();
            d.error(
                span,
                format!(
                    "`via` in [workload] names `{name}`, which is not a proxy of this scenario{}",
                    diagnostic::did_you_mean(name, names.iter().copied())
                ),
            );
            None
        }
    }
}

fn http_workload(f: &Fields, d: &mut Diagnostics) -> Option<HttpWorkload> {
    let write = match f.table("write", d) {
        Some((t, span)) => {
            let w = Fields::new(t, span, "[workload].write", HTTP_REQUEST_KEYS, d);
            http_request(&w, "PUT", WRITE_PLACEHOLDERS, d)
        }
        None if f.get("write").is_none() => {
            d.error(
                f.span.clone(),
                "missing key `write` in [workload] (kind = \"http\"); expected a request such as \
                 write = { method = \"PUT\", path = \"/items/{key}\", body = \"{value}\" }",
            );
            None
        }
        None => None,
    };
    let ack = statuses(f, "ack", 100, d);
    let refused = statuses(f, "refused", 400, d);
    if let (Some(ack), Some(refused)) = (&ack, &refused) {
        if let Some(both) = ack.iter().find(|s| refused.contains(s)) {
            let span = f.get("refused").map_or(f.span.clone(), |v| v.span());
            d.error(span, format!("status {both} is both in `ack` and in `refused` in [workload]"));
        }
    }
    let read = match f.table("read", d) {
        Some((t, span)) => http_read(&Fields::new(t, span, "[workload].read", HTTP_READ_KEYS, d), d),
        None if f.get("read").is_none() => {
            d.error(
                f.span.clone(),
                "missing key `read` in [workload] (kind = \"http\"): without a read-back nothing says what \
                 survived; expected e.g. read = { path = \"/items/{key}\" } (one request per key) or \
                 read = { path = \"/items\", list = \"json\" }",
            );
            None
        }
        None => None,
    };
    Some(HttpWorkload {
        write: write?,
        ack: ack.unwrap_or_default(),
        refused: refused.unwrap_or_default(),
        read: read?,
    })
}

/// A list of HTTP statuses; given, it must not be empty.
fn statuses(f: &Fields, key: &str, min: i64, d: &mut Diagnostics) -> Option<Vec<u16>> {
    let Some(value) = f.get(key) else { return Some(Vec::new()) };
    let items = match value.get_ref().as_array() {
        Some(items) if !items.is_empty() => items,
        Some(_) => {
            d.error(value.span(), format!("`{key}` in [workload] is empty; name at least one HTTP status"));
            return None;
        }
        None => {
            d.error(value.span(), format!("`{key}` in [workload] must be an array of HTTP statuses, e.g. [200, 201]"));
            return None;
        }
    };
    let mut out = Vec::new();
    for item in items.iter() {
        match item.get_ref().as_integer().and_then(|i| i.as_str().parse::<i64>().ok()) {
            Some(s) if (min..=599).contains(&s) => out.push(s as u16),
            _ => {
                d.error(item.span(), format!("`{key}` in [workload] holds HTTP statuses from {min} to 599"));
                return None;
            }
        }
    }
    Some(out)
}

fn http_request(f: &Fields, method: &str, allowed: &[&str], d: &mut Diagnostics) -> Option<HttpRequest> {
    let method = match f.str("method", d) {
        Some((m, span)) if m.is_empty() || !m.bytes().all(|b| b.is_ascii_alphabetic()) => {
            d.error(span, format!("`method` in {} must be an HTTP method such as \"PUT\"", f.what));
            return None;
        }
        Some((m, _)) => m.to_ascii_uppercase(),
        None => method.to_string(),
    };
    let (path, path_span) = f.required_str("path", "a URL path such as \"/items/{key}\"", d)?;
    if !path.starts_with('/') {
        d.error(path_span.clone(), format!("`path` in {} must start with `/`: it follows http://HOST:PORT", f.what));
    }
    check_placeholders(path, &path_span, &f.what, allowed, d);
    let mut headers = Vec::new();
    if let Some((t, _)) = f.table("headers", d) {
        for (name, value) in t.iter() {
            match value.get_ref().as_str() {
                Some(v) => {
                    check_placeholders(v, &value.span(), &f.what, allowed, d);
                    headers.push((name.get_ref().to_string(), v.to_string()));
                }
                None => d.error(value.span(), format!("header `{}` in {} must be a string", name.get_ref(), f.what)),
            }
        }
    }
    let body = f.str("body", d).map(|(b, span)| {
        check_placeholders(b, &span, &f.what, allowed, d);
        b.to_string()
    });
    Some(HttpRequest { method, path: path.to_string(), headers, body })
}

fn http_read(f: &Fields, d: &mut Diagnostics) -> Option<HttpRead> {
    let base64 = f.bool("base64", d).unwrap_or(false);
    let list = f.choice("list", "list format", LIST_FORMATS, d);
    let pointer = |key: &str, default: &str, d: &mut Diagnostics| -> Option<String> {
        match f.str(key, d) {
            Some((p, span)) if !(p.is_empty() || p.starts_with('/')) => {
                d.error(span, format!("`{key}` in {} is a JSON pointer: empty or starting with `/`", f.what));
                None
            }
            Some((p, _)) => Some(p.to_string()),
            None => Some(default.to_string()),
        }
    };
    let (request, shape) = match list {
        Some((format, _)) => {
            let format = format.parse::<ListFormat>().expect("one of LIST_FORMATS");
            if let Some(v) = f.get("contains") {
                d.error(v.span(), format!("`contains` in {} is for a per-key read (no `list`)", f.what));
            }
            let cursor = f.get("cursor").and_then(|_| pointer("cursor", "", d));
            if cursor.is_some() && format != ListFormat::Json {
                d.error(f.span.clone(), format!("`cursor` in {} needs list = \"json\"", f.what));
            }
            let allowed: &[&str] = if cursor.is_some() { &["cursor"] } else { &[] };
            let request = http_request(f, "GET", allowed, d)?;
            let list = ListRead {
                format,
                items: pointer("items", "", d)?,
                key: pointer("key", "/key", d)?,
                value: pointer("value", "/value", d)?,
                cursor,
            };
            (request, ReadShape::List(list))
        }
        None if f.get("list").is_some() => return None,
        None => {
            for key in ["items", "key", "cursor"] {
                if let Some(v) = f.get(key) {
                    d.error(v.span(), format!("`{key}` in {} is for a list read (`list = \"json\"`...)", f.what));
                }
            }
            let request = http_request(f, "GET", READ_KEY_PLACEHOLDERS, d)?;
            if !names_a_key(&request) {
                d.error(
                    f.span.clone(),
                    format!(
                        "{} reads one key per request, but names no key: put `{{key}}` (or `{{key_b64}}`) in its \
                         path or body, or set `list` to read every key at once",
                        f.what
                    ),
                );
            }
            let at = match (f.bool("contains", d).unwrap_or(false), f.get("value")) {
                (true, Some(v)) => {
                    d.error(v.span(), format!("`value` and `contains` exclude each other in {}", f.what));
                    ValueAt::Contains
                }
                (true, None) => ValueAt::Contains,
                (false, Some(_)) => ValueAt::Pointer(pointer("value", "", d)?),
                (false, None) => ValueAt::Body,
            };
            (request, ReadShape::PerKey(at))
        }
    };
    Some(HttpRead { request, shape, base64 })
}

fn names_a_key(request: &HttpRequest) -> bool {
    std::iter::once(&request.path)
        .chain(request.body.iter())
        .chain(request.headers.iter().map(|(_, v)| v))
        .any(|t| template::names(t).any(|n| READ_KEY_PLACEHOLDERS.contains(&n)))
}

fn command_workload(f: &Fields, check_paths: bool, d: &mut Diagnostics) -> Option<CommandWorkload> {
    // Absolute: a relative program is found from it after the client's
    // working directory changed to it (`crashlab run sc/kv.toml` would
    // otherwise look for sc/sc/client).
    let dir = d.path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let argv = |key: &str, allowed: &[&str], d: &mut Diagnostics| -> Option<Vec<String>> {
        let (argv, span) = f.str_array(key, d)?;
        if argv.is_empty() || argv[0].is_empty() {
            d.error(span, format!("`{key}` in [workload] is empty; expected [\"program\", \"arg\", ...]"));
            return None;
        }
        let placeholders: Vec<&str> = template::PLACEHOLDERS.iter().chain(allowed).copied().collect();
        for arg in &argv {
            check_placeholders(arg, &span, &format!("`{key}` in [workload]"), &placeholders, d);
        }
        if check_paths {
            if let Err(why) = find_program(&argv[0], &dir) {
                d.error(span, format!("`{key}` in [workload]: {why}"));
                return None;
            }
        }
        Some(argv)
    };
    let mode = match (f.get("write"), f.get("client")) {
        (Some(_), Some(v)) => {
            d.error(v.span(), "`write` (a command per write) and `client` (a line protocol) exclude each other");
            None
        }
        (Some(_), None) => {
            let refused_exit = exit_codes(f, d);
            argv("write", WRITE_PLACEHOLDERS, d).map(|argv| CommandMode::PerWrite { argv, refused_exit })
        }
        (None, Some(_)) => argv("client", &[], d).map(|argv| CommandMode::Lines { argv }),
        (None, None) => {
            d.error(
                f.span.clone(),
                "[workload] (kind = \"command\") needs `write = [\"./client\", \"put\", \"{key}\", \"{value}\"]` \
                 (one run per write) or `client = [\"./client\", \"--lines\"]` (a line protocol on stdin)",
            );
            None
        }
    };
    if f.get("refused_exit").is_some() && f.get("client").is_some() {
        d.error(f.get("refused_exit").unwrap().span(), "`refused_exit` is for `write`; a `client` answers FAIL");
    }
    let read_back = match f.get("read_back") {
        Some(_) => argv("read_back", &[], d),
        None => {
            d.error(
                f.span.clone(),
                "missing key `read_back` in [workload] (kind = \"command\"): a command that prints `key<TAB>value` \
                 for every key the store holds; without it nothing says what survived",
            );
            None
        }
    };
    Some(CommandWorkload { mode: mode?, read_back: read_back?, dir })
}

fn sql_workload(f: &Fields, d: &mut Diagnostics) -> Option<SqlWorkload> {
    let (url, url_span) =
        f.required_str("url", "a database URL such as \"postgres://postgres@{host}:{port}/postgres\"", d)?;
    let engine = match url.split_once("://").map(|(scheme, _)| scheme) {
        Some("postgres" | "postgresql") => Some(SqlEngine::Postgres),
        Some("mysql" | "mariadb") => Some(SqlEngine::Mysql),
        _ => {
            d.error(url_span.clone(), "`url` in [workload] must start with postgres:// or mysql:// (also mariadb://)");
            None
        }
    };
    check_placeholders(url, &url_span, "`url` in [workload]", template::PLACEHOLDERS, d);
    let setup = f.str_array("setup", d).map(|(s, _)| s).unwrap_or_default();
    let insert = f.required_str("insert", "a statement such as \"INSERT INTO kv (k, v) VALUES ({key}, {value})\"", d);
    let insert = insert.and_then(|(text, span)| {
        let statement = engine.map(|e| bind(text, e));
        for name in template::names(text).filter(|n| !["key", "value", "seq"].contains(n)) {
            d.error(
                span.clone(),
                format!("unknown placeholder `{{{name}}}` in `insert` in [workload]; expected {{key}}, {{value}}, {{seq}} (bound as parameters)"),
            );
        }
        let statement = statement?;
        for (needed, what) in [(SqlParam::Key, "{key}"), (SqlParam::Value, "{value}")] {
            if !statement.params.contains(&needed) {
                d.error(span.clone(), format!("`insert` in [workload] must store the write's {what}: the read-back checks it"));
            }
        }
        Some(statement)
    });
    let select = f.required_str("select", "a query returning (key, value) rows, such as \"SELECT k, v FROM kv\"", d);
    let transaction = f.bool("transaction", d).unwrap_or(false);
    Some(SqlWorkload {
        engine: engine?,
        url: url.to_string(),
        setup,
        insert: insert?,
        select: select?.0.to_string(),
        transaction,
    })
}

/// Replaces `{key}`, `{value}` and `{seq}` by the engine's bind parameters,
/// so that no value is ever spliced into SQL.
pub fn bind(text: &str, engine: SqlEngine) -> SqlStatement {
    let mut out = String::new();
    let mut params = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let param = after.find('}').and_then(|close| match &after[..close] {
            "key" => Some((SqlParam::Key, close)),
            "value" => Some((SqlParam::Value, close)),
            "seq" => Some((SqlParam::Seq, close)),
            _ => None,
        });
        match param {
            Some((param, close)) => {
                out.push_str(&rest[..open]);
                params.push(param);
                match engine {
                    SqlEngine::Postgres => out.push_str(&format!("${}", params.len())),
                    SqlEngine::Mysql => out.push('?'),
                }
                rest = &after[close + 1..];
            }
            None => {
                out.push_str(&rest[..=open]);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    SqlStatement { text: out, params }
}

fn exit_codes(f: &Fields, d: &mut Diagnostics) -> Vec<i32> {
    let Some(value) = f.get("refused_exit") else { return Vec::new() };
    let codes: Option<Vec<i32>> = value.get_ref().as_array().and_then(|items| {
        items
            .iter()
            .map(|i| {
                i.get_ref().as_integer().and_then(|i| i.as_str().parse::<i32>().ok()).filter(|c| (1..=255).contains(c))
            })
            .collect()
    });
    match codes {
        Some(codes) if !codes.is_empty() => codes,
        _ => {
            d.error(value.span(), "`refused_exit` in [workload] must be exit codes from 1 to 255, e.g. [3]");
            Vec::new()
        }
    }
}

/// Where a client program is: a name with a `/` is relative to the
/// scenario's directory; a bare name is looked up on `PATH`.
pub fn find_program(program: &str, dir: &Path) -> Result<PathBuf, String> {
    if program.contains('{') {
        return Ok(PathBuf::from(program)); // filled in per trial
    }
    if program.contains('/') {
        let path = dir.join(program.strip_prefix("./").unwrap_or(program));
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!(
                "program `{program}` does not exist beside the scenario (a path with `/` is relative to its directory)"
            ))
        };
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|p| p.join(program))
        .find(|p| p.is_file())
        .ok_or_else(|| format!("program `{program}` is not on PATH"))
}

/// Checks the `{name}` placeholders of a template against `allowed` (and a
/// target reference `{host.NAME}`, `{port.NAME}`, checked elsewhere).
/// Braces around anything but a name (JSON bodies) are literal.
fn check_placeholders(text: &str, span: &Span, what: &str, allowed: &[&str], d: &mut Diagnostics) {
    for name in template::names(text) {
        let reference = ["host.", "port.", "proxy."].iter().any(|p| name.starts_with(p));
        if !allowed.contains(&name) && !reference {
            let list: Vec<String> = allowed.iter().map(|p| format!("{{{p}}}")).collect();
            d.error(
                span.clone(),
                format!(
                    "unknown placeholder `{{{name}}}` in {what}{}; expected one of: {}",
                    diagnostic::did_you_mean(name, allowed.iter().copied()),
                    if list.is_empty() { "(none here)".to_string() } else { list.join(", ") }
                ),
            );
        }
    }
}
