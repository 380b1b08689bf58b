//! The `http` workload: a write is a request built from the scenario's
//! templates, sent with `ureq`; the read-back is one request per key, or a
//! listing of every key, page after page. The `http` probe uses the same
//! client ([`agent`]).
//!
//! What an answer means for a write:
//!
//! | answer                                              | outcome              |
//! |-----------------------------------------------------|----------------------|
//! | connection refused, or no connection in time        | not applied (`fail`) |
//! | a status in `ack` (default: any 2xx)                | applied (`ok`)       |
//! | a status in `refused`                               | not applied (`fail`) |
//! | any other 4xx but 408 and 429                       | not applied (`fail`) |
//! | a timeout or reset once the request was sent; 408,  | `unknown`            |
//! | 429, 5xx, any other status                          |                      |

use std::io::{self, ErrorKind};
use std::net::SocketAddr;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use serde_json::Value;
use ureq::http::Response;

use super::{is_workload_key, key_of, vars, Client, Workload, WriteResult};
use crate::scenario::{template, HttpRequest, HttpWorkload, ListFormat, ListRead, ReadShape, ValueAt};

/// The largest answer read (a listing page of a large store).
const MAX_BODY: u64 = 1 << 30;
/// A listing that has not ended after this many pages is going in circles.
const MAX_PAGES: usize = 1_000_000;

/// An HTTP client keeping up to `keep` idle connections: answers never
/// raise errors (the status decides), redirects are not followed, and each
/// phase of an exchange has `timeout`, so that a timeout says whether
/// anything was sent.
pub fn agent(timeout: Duration, keep: usize) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .max_idle_connections(keep)
        .max_idle_connections_per_host(keep)
        .timeout_resolve(Some(timeout))
        .timeout_connect(Some(timeout))
        .timeout_send_request(Some(timeout))
        .timeout_send_body(Some(timeout))
        .timeout_recv_response(Some(timeout))
        .timeout_recv_body(Some(timeout))
        .build()
        .into()
}

/// Whether an error came before anything was sent.
pub fn before_sending(e: &ureq::Error) -> bool {
    match e {
        ureq::Error::Io(e) => e.kind() == ErrorKind::ConnectionRefused,
        ureq::Error::Timeout(t) => matches!(t, ureq::Timeout::Resolve | ureq::Timeout::Connect),
        ureq::Error::ConnectionFailed | ureq::Error::HostNotFound => true,
        _ => false,
    }
}

pub struct Http {
    pub base: String,
    pub plan: HttpWorkload,
    pub timeout: Duration,
}

impl Http {
    pub fn new(addr: SocketAddr, plan: HttpWorkload, timeout: Duration) -> Http {
        Http { base: format!("http://{addr}"), plan, timeout }
    }
}

/// Sends a request template filled with `vars`; the answer's status and body.
fn send(
    agent: &ureq::Agent,
    base: &str,
    request: &HttpRequest,
    vars: &[(&str, String)],
) -> Result<(u16, Result<String, ureq::Error>), ureq::Error> {
    let uri = format!("{base}{}", template::render(&request.path, vars));
    let mut builder = ureq::http::Request::builder().method(request.method.as_str()).uri(uri);
    for (name, value) in &request.headers {
        builder = builder.header(name.as_str(), template::render(value, vars));
    }
    let response: Response<ureq::Body> = match &request.body {
        Some(body) => agent.run(builder.body(template::render(body, vars).into_bytes())?)?,
        None => agent.run(builder.body(())?)?,
    };
    let status = response.status().as_u16();
    let body = response.into_body().with_config().limit(MAX_BODY).read_to_string();
    Ok((status, body))
}

/// What a write's answer means (the table at the top of this module).
pub fn write_outcome(plan: &HttpWorkload, status: u16) -> WriteResult {
    let acked = if plan.ack.is_empty() { (200..300).contains(&status) } else { plan.ack.contains(&status) };
    if acked {
        WriteResult::Ok
    } else if plan.refused.contains(&status) || ((400..500).contains(&status) && status != 408 && status != 429) {
        WriteResult::Fail(format!("HTTP {status}"))
    } else {
        WriteResult::Unknown(format!("HTTP {status}"))
    }
}

struct HttpClient {
    agent: ureq::Agent,
    base: String,
    plan: HttpWorkload,
}

impl Client for HttpClient {
    fn write(&mut self, seq: u64, key: &str, value: &str) -> WriteResult {
        match send(&self.agent, &self.base, &self.plan.write, &vars(key, Some((value, seq)))) {
            // The status decides, even if the body then failed to arrive.
            Ok((status, _)) => write_outcome(&self.plan, status),
            Err(e) if before_sending(&e) => WriteResult::Fail(e.to_string()),
            Err(e) => WriteResult::Unknown(e.to_string()),
        }
    }
}

impl Workload for Http {
    fn client(&self) -> Box<dyn Client> {
        Box::new(HttpClient { agent: agent(self.timeout, 1), base: self.base.clone(), plan: self.plan.clone() })
    }

    fn read_back(&self, written: u64) -> io::Result<Vec<(String, String)>> {
        let agent = agent(Duration::from_secs(10).max(self.timeout), 1);
        let read = &self.plan.read;
        let mut items = match &read.shape {
            ReadShape::PerKey(at) => return self.read_keys(written, at),
            ReadShape::List(list) => self.read_list(&agent, list)?,
        };
        if read.base64 {
            items = items.into_iter().map(|(k, v)| Ok((decode(&k)?, decode(&v)?))).collect::<io::Result<_>>()?;
        }
        items.retain(|(k, _)| is_workload_key(k));
        Ok(items)
    }
}

fn decode(text: &str) -> io::Result<String> {
    let bytes = BASE64.decode(text.trim()).map_err(|e| bad(format!("`{text}` is not base64: {e}")))?;
    String::from_utf8(bytes).map_err(|e| bad(format!("base64 `{text}` is not UTF-8: {e}")))
}

fn bad(message: String) -> io::Error {
    io::Error::new(ErrorKind::InvalidData, message)
}

impl Http {
    /// Every written key, asked for one by one from a few connections.
    fn read_keys(&self, written: u64, at: &ValueAt) -> io::Result<Vec<(String, String)>> {
        const READERS: u64 = 8;
        let timeout = Duration::from_secs(10).max(self.timeout);
        let found: Vec<io::Result<Vec<(String, String)>>> = std::thread::scope(|scope| {
            let readers: Vec<_> = (0..READERS)
                .map(|reader| {
                    scope.spawn(move || {
                        let agent = agent(timeout, 1);
                        let mut items = Vec::new();
                        for seq in (reader..written).step_by(READERS as usize) {
                            let key = key_of(seq);
                            if let Some(value) = self.read_key(&agent, &key, seq, at)? {
                                items.push((key, value));
                            }
                        }
                        Ok(items)
                    })
                })
                .collect();
            readers
                .into_iter()
                .map(|r| r.join().unwrap_or_else(|_| Err(io::Error::other("a reader panicked"))))
                .collect()
        });
        let mut items = Vec::new();
        for part in found {
            items.extend(part?);
        }
        items.sort();
        Ok(items)
    }

    /// One key's value, or `None` if the store does not have it (404, or a
    /// pointer that finds nothing in the answer).
    fn read_key(&self, agent: &ureq::Agent, key: &str, seq: u64, at: &ValueAt) -> io::Result<Option<String>> {
        let request = &self.plan.read.request;
        let (status, body) = send(agent, &self.base, request, &vars(key, None)).map_err(io::Error::other)?;
        let what = || format!("{} {} for `{key}`", request.method, template::render(&request.path, &vars(key, None)));
        if status == 404 {
            return Ok(None);
        }
        if !(200..300).contains(&status) {
            return Err(bad(format!("{} answered HTTP {status}", what())));
        }
        let body = body.map_err(|e| bad(format!("{}: {e}", what())))?;
        let found = match at {
            ValueAt::Body => Some(body.trim().to_string()),
            ValueAt::Pointer(pointer) => {
                let json: Value =
                    serde_json::from_str(&body).map_err(|e| bad(format!("{} is not JSON: {e}", what())))?;
                json.pointer(pointer).filter(|v| !v.is_null()).map(text_of)
            }
            ValueAt::Contains => {
                let expected = super::value_of(key, seq);
                match body.contains(&expected) {
                    true => Some(expected),
                    false if body.trim().is_empty() => None,
                    false => Some(body.trim().to_string()),
                }
            }
        };
        match (found, self.plan.read.base64) {
            (Some(v), true) => decode(&v).map(Some),
            (found, _) => Ok(found),
        }
    }

    /// Every item of every page of a listing.
    fn read_list(&self, agent: &ureq::Agent, list: &ListRead) -> io::Result<Vec<(String, String)>> {
        let request = &self.plan.read.request;
        let mut items = Vec::new();
        let mut cursor = String::new();
        for _ in 0..MAX_PAGES {
            let vars = [("cursor", cursor.clone())];
            let what = format!("{} {}", request.method, template::render(&request.path, &vars));
            let (status, body) = send(agent, &self.base, request, &vars).map_err(io::Error::other)?;
            if !(200..300).contains(&status) {
                return Err(bad(format!("{what} answered HTTP {status}")));
            }
            let body = body.map_err(|e| bad(format!("{what}: {e}")))?;
            let next = parse_page(&body, list, &mut items).map_err(|e| bad(format!("{what}: {e}")))?;
            match next {
                Some(next) if next == cursor => return Err(bad(format!("{what}: the cursor did not move"))),
                Some(next) => cursor = next,
                None => return Ok(items),
            }
        }
        Err(bad(format!("the listing did not end after {MAX_PAGES} pages")))
    }
}

/// A JSON value as the text a store holds: a string as it is, anything
/// else as JSON.
fn text_of(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Adds a page's items; returns the next page's cursor, if any.
fn parse_page(body: &str, list: &ListRead, items: &mut Vec<(String, String)>) -> Result<Option<String>, String> {
    let item = |json: &Value, n: usize| -> Result<(String, String), String> {
        let at = |pointer: &str, what: &str| {
            json.pointer(pointer).map(text_of).ok_or_else(|| format!("item {n} has no {what} at `{pointer}`"))
        };
        Ok((at(&list.key, "key")?, at(&list.value, "value")?))
    };
    match list.format {
        ListFormat::Lines => {
            for (n, line) in body.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
                let (k, v) =
                    line.split_once('\t').ok_or_else(|| format!("line {} is not `key<TAB>value`: `{line}`", n + 1))?;
                items.push((k.to_string(), v.trim_end_matches('\r').to_string()));
            }
            Ok(None)
        }
        ListFormat::Ndjson => {
            for (n, line) in body.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
                let json: Value = serde_json::from_str(line).map_err(|e| format!("line {} is not JSON: {e}", n + 1))?;
                items.push(item(&json, n + 1)?);
            }
            Ok(None)
        }
        ListFormat::Json => {
            let json: Value = serde_json::from_str(body).map_err(|e| format!("not JSON: {e}"))?;
            match json.pointer(&list.items) {
                Some(Value::Array(array)) => {
                    for (n, entry) in array.iter().enumerate() {
                        items.push(item(entry, n + 1)?);
                    }
                }
                Some(Value::Object(map)) => items.extend(map.iter().map(|(k, v)| (k.clone(), text_of(v)))),
                // etcd leaves `kvs` out when nothing matched.
                None | Some(Value::Null) => {}
                Some(other) => return Err(format!("`{}` is {other}, not an array or an object", list.items)),
            }
            let next = list.cursor.as_ref().and_then(|c| json.pointer(c)).filter(|v| !v.is_null()).map(text_of);
            Ok(next.filter(|c| !c.is_empty()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(ack: Vec<u16>, refused: Vec<u16>) -> HttpWorkload {
        let request = HttpRequest { method: "PUT".into(), path: "/{key}".into(), headers: Vec::new(), body: None };
        let read = crate::scenario::HttpRead {
            request: request.clone(),
            shape: ReadShape::PerKey(ValueAt::Body),
            base64: false,
        };
        HttpWorkload { write: request, ack, refused, read }
    }

    /// The documented table, status by status.
    #[test]
    fn statuses_map_to_outcomes_as_documented() {
        let default = plan(Vec::new(), Vec::new());
        let kind = |p: &HttpWorkload, s| match write_outcome(p, s) {
            WriteResult::Ok => "ok",
            WriteResult::Fail(_) => "fail",
            WriteResult::Unknown(_) => "unknown",
        };
        for (status, expected) in
            [(200, "ok"), (204, "ok"), (301, "unknown"), (400, "fail"), (404, "fail"), (408, "unknown")]
        {
            assert_eq!(kind(&default, status), expected, "{status}");
        }
        for (status, expected) in [(409, "fail"), (429, "unknown"), (500, "unknown"), (503, "unknown")] {
            assert_eq!(kind(&default, status), expected, "{status}");
        }
        let strict = plan(vec![201], vec![503]);
        assert_eq!(kind(&strict, 201), "ok");
        assert_eq!(kind(&strict, 200), "unknown", "a 2xx not in `ack` says nothing definite");
        assert_eq!(kind(&strict, 503), "fail");
        assert_eq!(kind(&strict, 502), "unknown");
    }

    #[test]
    fn pages_parse_in_every_format_and_follow_the_cursor() {
        let list = |format, items: &str, cursor: Option<&str>| ListRead {
            format,
            items: items.into(),
            key: "/key".into(),
            value: "/value".into(),
            cursor: cursor.map(str::to_string),
        };
        let mut items = Vec::new();
        let next = parse_page(
            r#"{"items": [{"key": "k1", "value": "v1"}], "next": "c2"}"#,
            &list(ListFormat::Json, "/items", Some("/next")),
            &mut items,
        );
        assert_eq!(next, Ok(Some("c2".into())));
        let next = parse_page(r#"{"k2": "v2"}"#, &list(ListFormat::Json, "", Some("/next")), &mut items);
        assert_eq!(next, Ok(None));
        parse_page("{\"key\":\"k3\",\"value\":3}\n\n", &list(ListFormat::Ndjson, "", None), &mut items).unwrap();
        parse_page("k4\tv4\r\n", &list(ListFormat::Lines, "", None), &mut items).unwrap();
        let pairs: Vec<(&str, &str)> = items.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(pairs, [("k1", "v1"), ("k2", "v2"), ("k3", "3"), ("k4", "v4")]);
        let err = parse_page("k5 v5\n", &list(ListFormat::Lines, "", None), &mut items).unwrap_err();
        assert!(err.contains("line 1 is not `key<TAB>value`"), "{err}");
        let err = parse_page(r#"[{"id": 1}]"#, &list(ListFormat::Json, "", None), &mut items).unwrap_err();
        assert!(err.contains("item 1 has no key at `/key`"), "{err}");
    }

    #[test]
    fn placeholders_carry_the_key_and_value_in_every_form() {
        let vars = vars("k\"1", Some(("v 1", 7)));
        let get = |name| vars.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str());
        assert_eq!(get("key_b64"), Some("ayIx"));
        assert_eq!(get("key_json"), Some("k\\\"1"));
        assert_eq!(get("value_b64"), Some("diAx"));
        assert_eq!(get("seq"), Some("7"));
    }
}
