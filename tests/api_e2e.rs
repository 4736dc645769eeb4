//! The local API and `/metrics` end to end: the real daemon on the modem simulator, a token
//! made with `smshub token create` while it runs, and requests over real HTTP (the std client
//! of `tests/common`, not the code under test).

mod common;
use common::*;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

const LONG: Duration = Duration::from_secs(120);
const NUMBER: &str = "+358401234567";

fn modem_config(dir: &TestDir, sim: &Sim, extra: &str) -> PathBuf {
    dir.config(&format!(
        "{extra}\n[[modem]]\nname = \"sim\"\ndevice = \"{}\"\nsend_timeout_s = 20\n\n[outbound]\nretry_initial_s = 1\nretry_max_s = 2\n",
        sim.link.display()
    ))
}

/// `smshub token create NAME`: the token is the last line.
fn token(dir: &TestDir, cfg: &Path, name: &str) -> String {
    let out = dir.smshub(cfg, &["token", "create", name]);
    assert!(out.status.success(), "{}", stderr(&out));
    format!("Bearer {}", stdout(&out).lines().last().unwrap())
}

/// An API call with a token and, for a body, `Content-Type: application/json`.
fn call(d: &Daemon, auth: &str, method: &str, path: &str, body: Option<&str>) -> HttpReply {
    let mut headers = vec![("Authorization", auth)];
    if body.is_some() {
        headers.push(("Content-Type", "application/json"));
    }
    http_with(&d.admin, method, path, &headers, body.unwrap_or("").as_bytes())
}

fn body(r: &HttpReply) -> serde_json::Value {
    serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("not JSON ({e}): {r:?}"))
}

/// Asserts the API error shape: `status`, JSON `{"error", "reason"}` and nothing else.
fn assert_error(r: &HttpReply, status: u16, reason_has: &str) -> serde_json::Value {
    assert_eq!(r.status, status, "{r:?}");
    assert_eq!(r.header("content-type"), Some("application/json"), "{r:?}");
    let v = body(r);
    let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["error", "reason"], "{v}");
    let reason = v["reason"].as_str().unwrap();
    assert!(reason.contains(reason_has), "{status}: {reason:?} does not say {reason_has:?}");
    v
}

fn send(d: &Daemon, auth: &str, json: serde_json::Value) -> HttpReply {
    call(d, auth, "POST", "/api/v1/messages", Some(&json.to_string()))
}

/// A strict check of the text exposition format (Prometheus text 0.0.4 / OpenMetrics 1.0):
/// every line is `# HELP`, `# TYPE`, `# UNIT`, `# EOF` (last, once) or a sample of a declared
/// family, with well-formed labels and a number; no series twice. Returns (series, value).
fn parse_exposition(text: &str) -> Vec<(String, f64)> {
    fn is_name(s: &str) -> bool {
        let mut chars = s.chars();
        chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    }
    /// Parses `{a="x",b="y"}` (escapes \\ \" \n), returning the rest after `}`.
    fn labels(s: &str) -> (Vec<(String, String)>, &str) {
        let mut out = Vec::new();
        let mut rest = s.strip_prefix('{').unwrap();
        loop {
            if let Some(r) = rest.strip_prefix('}') {
                return (out, r);
            }
            let eq = rest.find('=').expect("label without =");
            let name = &rest[..eq];
            assert!(is_name(name), "bad label name {name:?}");
            rest = rest[eq + 1..].strip_prefix('"').expect("label value not quoted");
            let mut value = String::new();
            let mut chars = rest.char_indices();
            let end = loop {
                match chars.next().expect("unterminated label value") {
                    (_, '\\') => match chars.next().expect("dangling escape").1 {
                        'n' => value.push('\n'),
                        c @ ('\\' | '"') => value.push(c),
                        c => panic!("bad escape \\{c}"),
                    },
                    (i, '"') => break i,
                    (_, c) => value.push(c),
                }
            };
            assert!(!out.iter().any(|(n, _)| n == name), "label {name} twice");
            out.push((name.to_string(), value));
            rest = &rest[end + 1..];
            rest = rest.strip_prefix(',').unwrap_or(rest);
        }
    }
    let mut types: Vec<(String, String)> = Vec::new();
    let mut seen = BTreeSet::new();
    let mut samples = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(text.matches("# EOF").count(), 1, "one # EOF");
    assert_eq!(lines.last(), Some(&"# EOF"), "# EOF is the last line");
    for line in &lines[..lines.len() - 1] {
        if let Some(rest) = line.strip_prefix("# ") {
            let (kind, rest) = rest.split_once(' ').expect("comment without a name");
            let (name, arg) = rest.split_once(' ').unwrap_or((rest, ""));
            assert!(is_name(name), "bad family name in {line:?}");
            match kind {
                "HELP" | "UNIT" => {}
                "TYPE" => {
                    let known = ["counter", "gauge", "histogram", "summary", "info", "stateset", "unknown"];
                    assert!(known.contains(&arg), "unknown type in {line:?}");
                    assert!(!types.iter().any(|(n, _)| n == name), "TYPE of {name} twice");
                    types.push((name.to_string(), arg.to_string()));
                }
                _ => panic!("unknown comment {line:?}"),
            }
            continue;
        }
        let name_end = line.find(['{', ' ']).unwrap_or_else(|| panic!("sample without a value: {line:?}"));
        let name = &line[..name_end];
        assert!(is_name(name), "bad metric name in {line:?}");
        let (label_set, rest) =
            if line[name_end..].starts_with('{') { labels(&line[name_end..]) } else { (vec![], &line[name_end..]) };
        let mut fields = rest.trim_start_matches(' ').split(' ');
        let value = fields.next().unwrap();
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("bad value in {line:?}")),
        };
        assert!(fields.next().is_none_or(|ts| ts.parse::<f64>().is_ok()), "bad timestamp in {line:?}");
        let family = types
            .iter()
            .filter(|(f, _)| {
                name == f
                    || ["_total", "_bucket", "_count", "_sum", "_created"].iter().any(|s| *name == format!("{f}{s}"))
            })
            .max_by_key(|(f, _)| f.len());
        assert!(family.is_some(), "sample {name} has no TYPE before it");
        let series =
            format!("{name}{{{}}}", label_set.iter().map(|(k, v)| format!("{k}={v:?}")).collect::<Vec<_>>().join(","));
        assert!(seen.insert(series.clone()), "series twice: {series}");
        samples.push((series, value));
    }
    samples
}

fn metric(samples: &[(String, f64)], series: &str) -> f64 {
    samples.iter().find(|(s, _)| s == series).map(|(_, v)| *v).unwrap_or_else(|| panic!("no {series}"))
}

#[test]
fn an_api_send_is_sent_once_per_key_through_the_simulator_and_moves_the_metrics() {
    let dir = TestDir::new();
    let sim = Sim::start(dir.path(), &[]);
    let cfg = modem_config(&dir, &sim, "");
    let d = Daemon::start(&cfg);
    // Made while the daemon runs: it works at once.
    let auth = token(&dir, &cfg, "crm");

    let before = http_with(&d.admin, "GET", "/metrics", &[("Authorization", &auth)], b"");
    assert_eq!(before.status, 200, "{before:?}");
    assert!(before.header("content-type").unwrap().starts_with("application/openmetrics-text"));
    let before = parse_exposition(&before.body);
    assert_eq!(metric(&before, "smshub_messages_sent_total{}"), 0.0);

    let req = serde_json::json!({"to": NUMBER, "text": "Rex is ready for pick-up", "idempotency_key": "visit-4711"});
    let first = send(&d, &auth, req.clone());
    assert_eq!(first.status, 202, "{first:?}");
    let id = body(&first)["id"].as_i64().unwrap();
    assert_eq!(body(&first)["state"], "fetched");
    let again = send(&d, &auth, req.clone());
    assert_eq!(again.status, 202, "{again:?}");
    assert_eq!(body(&again)["id"], id, "the same key is the same message");
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    let other = send(&d, &auth, serde_json::json!({"to": NUMBER, "text": "other", "idempotency_key": "visit-4711"}));
    assert_error(&other, 409, &format!("message {id}"));

    let done = wait_for(LONG, || {
        let m = body(&call(&d, &auth, "GET", &format!("/api/v1/messages/{id}"), None));
        (m["state"] == "sent").then_some(m)
    })
    .unwrap_or_else(|| panic!("never sent; log:\n{}", d.log()));
    assert_eq!((done["to"].as_str(), done["source"].as_str()), (Some(NUMBER), Some("api")));
    assert_eq!(done["text"], "Rex is ready for pick-up");
    let parts = done["parts"].as_array().unwrap();
    assert_eq!(parts.len(), 1);
    assert_eq!((parts[0]["state"].as_str(), parts[0]["modem"].as_str()), (Some("acked"), Some("sim")));
    assert!(parts[0]["message_ref"].is_i64() && done["sent_at"].is_i64() && done["created_at"].is_i64(), "{done}");
    let sent = sim.wait_sent(Duration::from_secs(5), |s| !s.is_empty());
    let ours: Vec<_> = sent.iter().filter(|s| s["text"] == "Rex is ready for pick-up").collect();
    assert_eq!(ours.len(), 1, "sent once: {sent:?}");

    let listed = body(&call(&d, &auth, "GET", "/api/v1/messages?state=sent&limit=10", None));
    assert_eq!(listed["messages"].as_array().unwrap().iter().map(|m| m["id"].as_i64()).collect::<Vec<_>>(), [Some(id)]);

    assert_eq!(http_with(&d.admin, "GET", "/no/such/page", &[], b"").status, 404);
    // 200 or, this early after the start, 503 until the first health tick: counted either way.
    let healthz = http(&d.addr, "GET", "/healthz", None, b"").0;
    let after = http_with(&d.admin, "GET", "/metrics", &[("Authorization", &auth)], b"");
    let after = parse_exposition(&after.body);
    assert_eq!(metric(&after, "smshub_messages_sent_total{}"), 1.0);
    assert_eq!(metric(&after, "smshub_parts_sent_total{}"), 1.0);
    assert_eq!(metric(&after, "smshub_send_duration_seconds_count{}"), 1.0);
    assert_eq!(metric(&after, "smshub_outbox_pending{}"), 0.0);
    assert_eq!(metric(&after, "smshub_modem_registered{modem=\"sim\"}"), 1.0);
    assert!(metric(&after, "smshub_db_free_bytes{}") > 0.0);
    let route = |status: u16| {
        format!(
            "smshub_http_requests_total{{listener=\"admin\",route=\"/api/v1/messages/{{id}}\",status=\"{status}\"}}"
        )
    };
    assert!(metric(&after, &route(200)) >= 1.0, "the route template, not the path");
    assert!(!after.iter().any(|(s, _)| s.contains(&format!("/api/v1/messages/{id}"))), "no raw path as a label");
    assert!(!after.iter().any(|(s, _)| s.contains("/no/such/page")), "no raw path as a label");
    assert!(metric(&after, "smshub_http_requests_total{listener=\"admin\",route=\"unmatched\",status=\"404\"}") >= 1.0);
    let public = format!("smshub_http_requests_total{{listener=\"public\",route=\"/healthz\",status=\"{healthz}\"}}");
    assert!(metric(&after, &public) >= 1.0);

    // The audit list names the token.
    let conn = rusqlite::Connection::open(dir.path().join("smshub.db")).unwrap();
    let audit: Vec<(String, String, String)> = conn
        .prepare("SELECT actor, action, subject FROM audit ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(audit, [("token:crm".to_string(), "send".to_string(), id.to_string())]);

    // The counters start from the store after a restart.
    drop(d);
    let d = Daemon::start(&cfg);
    let restarted = parse_exposition(&http_with(&d.admin, "GET", "/metrics", &[("Authorization", &auth)], b"").body);
    assert_eq!(metric(&restarted, "smshub_messages_sent_total{}"), 1.0);
    assert_eq!(metric(&restarted, "smshub_parts_sent_total{}"), 1.0);
}

#[test]
fn metrics_and_the_api_need_a_valid_unrevoked_token() {
    let dir = TestDir::new();
    let cfg = dir.config("");
    let d = Daemon::start(&cfg);
    let none = http_with(&d.admin, "GET", "/metrics", &[], b"");
    assert_eq!(none.status, 401);
    let none = http_with(&d.admin, "GET", "/api/v1/messages", &[], b"");
    assert_error(&none, 401, "token");
    assert_eq!(none.header("www-authenticate"), Some("Bearer realm=\"smshub\""));
    let wrong = call(&d, "Bearer smshub_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "GET", "/api/v1/inbox", None);
    assert_error(&wrong, 401, "wrong or revoked");
    assert_eq!(wrong.header("www-authenticate"), Some("Bearer realm=\"smshub\", error=\"invalid_token\""));
    let post = send(&d, "Basic YTpi", serde_json::json!({"to": NUMBER, "text": "x"}));
    assert_error(&post, 401, "token");
    // A browser's cross-site POST (no token) is refused by the origin check, in JSON too.
    let forged = http_with(
        &d.admin,
        "POST",
        "/api/v1/optouts",
        &[("Origin", "http://evil.example"), ("Content-Type", "application/json")],
        br#"{"number": "+358401234567"}"#,
    );
    assert_error(&forged, 403, "another site");

    let auth = token(&dir, &cfg, "crm");
    assert_eq!(call(&d, &auth, "GET", "/api/v1/optouts", None).status, 200);
    let revoked = dir.smshub(&cfg, &["token", "revoke", "crm"]);
    assert!(revoked.status.success(), "{}", stderr(&revoked));
    assert_error(&call(&d, &auth, "GET", "/api/v1/optouts", None), 401, "wrong or revoked");
    assert_eq!(http_with(&d.admin, "GET", "/metrics", &[("Authorization", &auth)], b"").status, 401);
    // The document needs no token; the API is not on the public listener.
    let doc = http_with(&d.admin, "GET", "/api/v1/openapi.json", &[], b"");
    assert_eq!(doc.status, 200);
    assert!(body(&doc)["openapi"].as_str().unwrap().starts_with("3."));
    assert_eq!(http_with(&d.addr, "GET", "/api/v1/openapi.json", &[], b"").status, 404);
    assert_eq!(http_with(&d.addr, "GET", "/metrics", &[], b"").status, 404);
}

#[test]
fn what_the_api_cannot_read_is_a_json_400_and_hostile_requests_do_no_harm() {
    let dir = TestDir::new();
    let cfg = dir.config("default_country = \"358\"\n");
    let d = Daemon::start(&cfg);
    let auth = token(&dir, &cfg, "crm");
    let post = |raw: &str| call(&d, &auth, "POST", "/api/v1/messages", Some(raw));

    assert_error(&post("{"), 400, "not the JSON expected");
    assert_error(&post("[]"), 400, "not the JSON expected");
    assert_error(&post(r#"{"text": "hi"}"#), 400, "missing field `to`");
    assert_error(&post(r#"{"to": "+358401234567"}"#), 400, "missing field `text`");
    assert_error(&post(r#"{"to": "+358401234567", "text": "hi", "priority": 1}"#), 400, "unknown field `priority`");
    assert_error(&post(r#"{"to": 358401234567, "text": "hi"}"#), 400, "invalid type");
    assert_error(&post(r#"{"to": "not a number", "text": "hi"}"#), 400, "to:");
    assert_error(&post(r#"{"to": "+358401234567", "text": "   "}"#), 400, "text is empty");
    let long = serde_json::json!({"to": NUMBER, "text": "a".repeat(1531)}).to_string();
    assert_error(&post(&long), 400, "11 SMS parts");
    let key = serde_json::json!({"to": NUMBER, "text": "hi", "idempotency_key": "k".repeat(201)}).to_string();
    assert_error(&post(&key), 400, "idempotency_key");
    let deep = format!("{}{}", "[".repeat(1000), "]".repeat(1000));
    assert_error(&post(&deep), 400, "not the JSON expected");
    let deep_field = format!(r#"{{"to": "+358401234567", "text": {}"x"{}}}"#, "[".repeat(1000), "]".repeat(1000));
    assert_error(&post(&deep_field), 400, "invalid type");
    // Not UTF-8.
    let raw = [&br#"{"to": "+358401234567", "text": ""#[..], &[0xff, 0xfe], &br#""}"#[..]].concat();
    let r = http_with(
        &d.admin,
        "POST",
        "/api/v1/messages",
        &[("Authorization", &auth), ("Content-Type", "application/json")],
        &raw,
    );
    assert_error(&r, 400, "not the JSON expected");
    // Another content type.
    let form = http_with(
        &d.admin,
        "POST",
        "/api/v1/messages",
        &[("Authorization", &auth), ("Content-Type", "text/plain")],
        b"to=1",
    );
    assert_error(&form, 415, "application/json");
    // Too large, declared and sent.
    let huge = vec![b' '; 20 * 1024];
    let big = http_with(
        &d.admin,
        "POST",
        "/api/v1/messages",
        &[("Authorization", &auth), ("Content-Type", "application/json")],
        &huge,
    );
    assert_error(&big, 413, "larger than");

    // Query parameters and ids.
    for path in [
        "/api/v1/messages?limit=-1",
        "/api/v1/messages?limit=0",
        "/api/v1/messages?limit=501",
        "/api/v1/messages?limit=99999999999999999999999999",
        "/api/v1/messages?state=lost",
        "/api/v1/messages?bogus=1",
        "/api/v1/inbox?since=-5",
        "/api/v1/inbox?since=abc",
        "/api/v1/inbox?limit=1&limit=2",
        "/api/v1/messages/99999999999999999999999",
        "/api/v1/messages/-1",
        "/api/v1/messages/%00",
        "/api/v1/messages/%FF%FE",
        "/api/v1/optouts?x=1",
    ] {
        assert_error(&call(&d, &auth, "GET", path, None), 400, "");
    }
    assert_error(&call(&d, &auth, "GET", "/api/v1/messages/4242", None), 404, "no message 4242");
    assert_error(&call(&d, &auth, "GET", "/api/v1/nothing", None), 404, "not found");
    let wrong_method = call(&d, &auth, "PUT", "/api/v1/messages", Some("{}"));
    assert_error(&wrong_method, 405, "GET, POST");
    assert_eq!(wrong_method.header("allow"), Some("GET, POST"));
    assert_eq!(call(&d, &auth, "GET", "/api/v1/messages?limit=500", None).status, 200);

    // None of it queued anything, and the daemon is still answering.
    let conn = rusqlite::Connection::open(dir.path().join("smshub.db")).unwrap();
    let n: i64 = conn.query_row("SELECT count(*) FROM outbox", [], |r| r.get(0)).unwrap();
    assert_eq!(n, 0);
    assert_eq!(call(&d, &auth, "GET", "/api/v1/optouts", None).status, 200);
    // A national number is read with default_country.
    let ok = send(&d, &auth, serde_json::json!({"to": "0401234567", "text": "hi"}));
    assert_eq!(ok.status, 202, "{ok:?}");
    let id = body(&ok)["id"].as_i64().unwrap();
    assert_eq!(body(&call(&d, &auth, "GET", &format!("/api/v1/messages/{id}"), None))["to"], NUMBER);
}

#[test]
fn opted_out_numbers_are_refused_with_422_and_the_list_is_managed_through_the_api() {
    let dir = TestDir::new();
    let cfg = dir.config("");
    let d = Daemon::start(&cfg);
    let auth = token(&dir, &cfg, "crm");
    let add = call(&d, &auth, "POST", "/api/v1/optouts", Some(&serde_json::json!({"number": NUMBER}).to_string()));
    assert_eq!(add.status, 201, "{add:?}");
    assert_eq!(body(&add)["added"], true);
    let twice = call(&d, &auth, "POST", "/api/v1/optouts", Some(&serde_json::json!({"number": NUMBER}).to_string()));
    assert_eq!((twice.status, body(&twice)["added"].as_bool()), (200, Some(false)));
    assert_error(&call(&d, &auth, "POST", "/api/v1/optouts", Some(r#"{"number": "x"}"#)), 400, "number:");
    let list = body(&call(&d, &auth, "GET", "/api/v1/optouts", None));
    assert_eq!(list["optouts"][0]["number"], NUMBER);
    assert_eq!(list["optouts"][0]["source"], "api");

    let refused = send(&d, &auth, serde_json::json!({"to": NUMBER, "text": "Reminder"}));
    assert_error(&refused, 422, "opt-out list");

    let removed = call(&d, &auth, "DELETE", &format!("/api/v1/optouts/{NUMBER}"), None);
    assert_eq!((removed.status, body(&removed)["removed"].as_bool()), (200, Some(true)), "{removed:?}");
    assert_error(
        &call(&d, &auth, "DELETE", &format!("/api/v1/optouts/{NUMBER}"), None),
        404,
        "not on the opt-out list",
    );
    assert_eq!(send(&d, &auth, serde_json::json!({"to": NUMBER, "text": "Reminder"})).status, 202);

    let conn = rusqlite::Connection::open(dir.path().join("smshub.db")).unwrap();
    let actions: Vec<String> = conn
        .prepare("SELECT action FROM audit WHERE actor = 'token:crm' ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(actions, ["optout.add", "optout.remove", "send"]);
}

#[test]
fn over_the_hourly_limit_the_api_answers_429_with_retry_after() {
    let dir = TestDir::new();
    let cfg = dir.config("[api]\nper_hour = 2\n");
    let d = Daemon::start(&cfg);
    let auth = token(&dir, &cfg, "crm");
    let keyed = serde_json::json!({"to": NUMBER, "text": "m0", "idempotency_key": "batch-1"});
    let first = send(&d, &auth, keyed.clone());
    assert_eq!(first.status, 202);
    assert_eq!(send(&d, &auth, serde_json::json!({"to": NUMBER, "text": "m1"})).status, 202);
    let over = send(&d, &auth, serde_json::json!({"to": NUMBER, "text": "m2"}));
    assert_error(&over, 429, "per_hour is 2");
    let retry: u64 = over.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=3600).contains(&retry), "{retry}");
    // A repeated key is not a new message: it is answered even over the limit.
    let repeated = send(&d, &auth, keyed);
    assert_eq!((repeated.status, body(&repeated)["id"].clone()), (202, body(&first)["id"].clone()));
    let conn = rusqlite::Connection::open(dir.path().join("smshub.db")).unwrap();
    let n: i64 = conn.query_row("SELECT count(*) FROM outbox", [], |r| r.get(0)).unwrap();
    assert_eq!(n, 2);
}

#[test]
fn the_inbox_lists_a_received_sms_and_since_is_a_cursor() {
    let dir = TestDir::new();
    let sim = Sim::start(dir.path(), &[]);
    let cfg = modem_config(&dir, &sim, "");
    let d = Daemon::start(&cfg);
    let auth = token(&dir, &cfg, "crm");
    let r = sim.request(serde_json::json!({"cmd": "inject", "from": "+358409876543", "text": "Can we come at 10?"}));
    assert_eq!(r["ok"], true, "{r}");
    let listed = wait_for(LONG, || {
        let v = body(&call(&d, &auth, "GET", "/api/v1/inbox", None));
        (!v["messages"].as_array()?.is_empty()).then_some(v)
    })
    .unwrap_or_else(|| panic!("nothing received; log:\n{}", d.log()));
    let m = &listed["messages"][0];
    assert_eq!((m["from"].as_str(), m["text"].as_str()), (Some("+358409876543"), Some("Can we come at 10?")));
    let id = m["id"].as_i64().unwrap();
    assert_eq!(listed["next_since"], id);
    let after = body(&call(&d, &auth, "GET", &format!("/api/v1/inbox?since={id}"), None));
    assert_eq!(after["messages"].as_array().unwrap().len(), 0);
    assert_eq!(after["next_since"], id, "the cursor stays where it was");
    let from_start = body(&call(&d, &auth, "GET", "/api/v1/inbox?since=0&limit=1", None));
    assert_eq!(from_start["messages"][0]["id"], id);
    let metrics = http_with(&d.admin, "GET", "/metrics", &[("Authorization", &auth)], b"");
    assert_eq!(metric(&parse_exposition(&metrics.body), "smshub_messages_received_total{}"), 1.0);
}

#[test]
fn smshub_send_hands_the_message_to_a_running_daemon_and_queues_it_in_the_database_when_it_is_down() {
    let dir = TestDir::new();
    let sim = Sim::start(dir.path(), &[]);
    let cfg = modem_config(&dir, &sim, "");
    let send_cli = |text: &str| {
        let out = dir.smshub(&cfg, &["send", "--to", NUMBER, "--text", text, "--json"]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        serde_json::from_str::<serde_json::Value>(&stdout(&out)).unwrap()
    };

    // Down: written to the database, sent once the daemon starts.
    let queued = send_cli("while you were away");
    assert_eq!(queued["via"], "database", "{queued}");
    let human = dir.smshub(&cfg, &["send", "--to", NUMBER, "--text", "second"]);
    assert!(stdout(&human).contains("the daemon is not running"), "{}", stdout(&human));
    assert!(sim.sent().is_empty());
    let d = Daemon::start(&cfg);
    let sent = sim.wait_sent(LONG, |s| s.len() >= 2);
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert!(dir.path().join("smshub.sock").exists(), "the socket sits beside the database");

    // Up: handed over the socket.
    let handed = send_cli("the daemon is up");
    assert_eq!(handed["via"], "daemon", "{handed}");
    let sent = sim.wait_sent(LONG, |s| s.iter().any(|m| m["text"] == "the daemon is up"));
    assert_eq!(sent.iter().filter(|m| m["text"] == "the daemon is up").count(), 1, "{sent:?}");
    assert!(d.log().contains("message queued by smshub send"), "{}", d.log());
    // Bad input is still refused by the CLI with exit 2, before anything is sent.
    assert_eq!(dir.smshub(&cfg, &["send", "--to", "nonsense", "--text", "x"]).status.code(), Some(2));

    // A stopped daemon removes its socket; the CLI falls back again.
    d.signal(nix::sys::signal::Signal::SIGTERM);
    let mut d = d;
    assert!(d.wait_exit(Duration::from_secs(30)).is_some());
    assert!(!dir.path().join("smshub.sock").exists());
    assert_eq!(send_cli("after the stop")["via"], "database");
}
