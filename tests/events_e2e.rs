//! Event webhooks end to end: the real daemon, the simulator, the fake Provet and local HTTP
//! receivers written here. Every event type comes from a real flow; the envelopes are checked
//! key by key in both versions, the signature is computed here with ring's HMAC (independently of
//! `src/events`), a receiver that fails twice gets the same envelope id three times, the call
//! log shows the attempts, and SIGKILLs during sending never give a sent message without its
//! `sms.sent` nor two envelope ids for one change.

mod common;
use common::receiver::{Receiver, Request};
use common::*;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use smshub::testbed::fake_provet::{FakeOptions, FakeProvet};

const SECRET_V2: &str = "v2-receiver-secret-0123456789";
const SECRET_V1: &str = "v1-receiver-secret-0123456789";
const TOKEN: &str = "0123456789abcdef0123";
const LONG: Duration = Duration::from_secs(90);

/// HMAC-SHA256 of the raw body, written from the documented rule.
fn expected_signature(secret: &str, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let tag = ring::hmac::sign(&key, body);
    format!("sha256={}", tag.as_ref().iter().map(|b| format!("{b:02x}")).collect::<String>())
}

/// A receiver that refuses a bad signature with 401 and otherwise answers `answer(k)`, where `k`
/// counts the requests carrying the same envelope id (1 for its first attempt).
fn signed_receiver(secret: &'static str, answer: impl Fn(usize) -> u16 + Send + Sync + 'static) -> Receiver {
    let seen: std::sync::Mutex<BTreeMap<String, usize>> = Default::default();
    Receiver::start(move |_, req| {
        if req.header("X-Smshub-Signature") != Some(expected_signature(secret, &req.body).as_str()) {
            return (401, "text/plain", "bad signature".into());
        }
        let id = req.header("X-Smshub-Delivery").unwrap_or_default().to_string();
        let k = {
            let mut seen = seen.lock().unwrap();
            let k = seen.entry(id).or_default();
            *k += 1;
            *k
        };
        (answer(k), "text/plain", format!("attempt {k}"))
    })
}

fn webhook_section(name: &str, r: &Receiver, secret: &str, extra: &str) -> String {
    format!(
        "[[event_webhook]]\nname = \"{name}\"\nurl = \"{}\"\nsecret = \"{secret}\"\nretry_initial_s = 1\nretry_max_s = 2\n{extra}\n",
        r.url()
    )
}

fn is_uuid_v4(s: &str) -> bool {
    let b = s.as_bytes();
    s.len() == 36
        && [8, 13, 18, 23].iter().all(|&i| b[i] == b'-')
        && s.chars().filter(|c| *c != '-').all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        && b[14] == b'4'
        && matches!(b[19], b'8' | b'9' | b'a' | b'b')
}

/// Checks the envelope and headers of one request; returns (type, envelope).
fn envelope(req: &Request, version: &str) -> (String, Value) {
    let v = req.json();
    let obj = v.as_object().expect("an object");
    let code_key = if version == "2.0" { "clinic_code" } else { "account_code" };
    let keys: BTreeSet<&str> = obj.keys().map(String::as_str).collect();
    assert_eq!(keys, BTreeSet::from(["version", "id", "type", "created", code_key, "data"]), "{v}");
    assert_eq!(v["version"], version);
    assert_eq!(v[code_key], "vet-test-1");
    let id = v["id"].as_str().unwrap();
    assert!(is_uuid_v4(id), "{id}");
    assert!(v["created"].as_i64().unwrap() > 1_700_000_000, "epoch seconds, an integer: {v}");
    assert!(v["data"].is_object());
    let ty = v["type"].as_str().unwrap().to_string();
    assert_eq!(req.header("X-Smshub-Event"), Some(ty.as_str()));
    assert_eq!(req.header("X-Smshub-Delivery"), Some(id));
    assert!(req.header("Content-Type").unwrap().starts_with("application/json"));
    (ty, v)
}

struct Rig {
    fake: FakeProvet,
    dir: TestDir,
    sim: Sim,
    cfg: PathBuf,
    daemon: Daemon,
    _rt: tokio::runtime::Runtime,
}

fn rig(hooks: &str) -> Rig {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let fake = rt.block_on(FakeProvet::start(FakeOptions::default())).unwrap();
    let dir = TestDir::new();
    let sim = Sim::start(dir.path(), &["--report-delay-ms", "200"]);
    let cfg = dir.config(&format!(
        "clinic_code = \"vet-test-1\"\n\n{hooks}\n\
         [[provet]]\nname = \"clinic\"\nbase_url = \"{}\"\ntoken_url = \"{}\"\nclient_id = \"{}\"\nclient_secret = \"{}\"\n\
         webhook_token = \"{TOKEN}\"\npoll_interval_s = 0\nretry_initial_s = 1\nretry_max_s = 2\nallow_insecure_http = true\n\n\
         [[modem]]\nname = \"sim\"\ndevice = \"{}\"\nsend_timeout_s = 20\n\n\
         [outbound]\nretry_initial_s = 1\nretry_max_s = 2\n\n\
         [keywords]\nstop_reply = \"Bye\"\nstart_reply = \"Welcome back\"\n",
        fake.base_url(),
        fake.token_url(),
        fake.options().client_id,
        fake.options().client_secret,
        sim.link.display(),
    ));
    let daemon = Daemon::start(&cfg);
    Rig { fake, dir, sim, cfg, daemon, _rt: rt }
}

impl Rig {
    fn json(&self, args: &[&str]) -> Value {
        let out = self.dir.smshub(&self.cfg, args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        serde_json::from_str(&stdout(&out)).unwrap()
    }

    fn send(&self, to: &str, text: &str) -> i64 {
        self.json(&["send", "--to", to, "--text", text, "--json"])["id"].as_i64().unwrap()
    }

    fn inject(&self, from: &str, text: &str) {
        let r = self.sim.request(serde_json::json!({"cmd": "inject", "from": from, "text": text}));
        assert_eq!(r["ok"], true, "{r}");
    }

    fn sim_set(&self, settings: Value) {
        let mut req = settings;
        req["cmd"] = "set".into();
        assert_eq!(self.sim.request(req)["ok"], true);
    }

    /// Waits until `r` has a request of event type `ty` whose `data` satisfies `pred`.
    fn wait_event(&self, r: &Receiver, version: &str, ty: &str, pred: impl Fn(&Value) -> bool) -> Value {
        wait_for(LONG, || {
            r.requests().iter().map(|q| envelope(q, version)).find(|(t, v)| t == ty && pred(&v["data"])).map(|(_, v)| v)
        })
        .unwrap_or_else(|| {
            let seen: Vec<String> =
                r.requests().iter().map(|q| String::from_utf8_lossy(&q.body).into_owned()).collect();
            panic!("no {ty} event arrived; the receiver got {seen:#?}\nlog:\n{}", self.daemon.log())
        })
    }
}

#[test]
fn every_event_type_comes_from_a_real_flow_signed_in_both_envelopes_and_retried_with_the_same_id() {
    let v2 = signed_receiver(SECRET_V2, |_| 200);
    // Fails the first two attempts of every event, then accepts it.
    let v1 = signed_receiver(SECRET_V1, |k| if k <= 2 { 500 } else { 200 });
    let hooks = format!(
        "{}{}",
        webhook_section("clinic-app", &v2, SECRET_V2, ""),
        webhook_section("legacy", &v1, SECRET_V1, "version = \"1.0\"\ntypes = [\"sms.sent\"]\n"),
    );
    let r = rig(&hooks);

    // modem.online: the modem came up at start.
    r.wait_event(&v2, "2.0", "modem.online", |d| d["modem"] == "sim");

    // Provet work: sms.sent names the instance and the external id; the status report (the
    // simulator answers each requested report with "delivered") gives sms.delivered.
    let provet_id = r.fake.add_sms("+358401234567", "Rex is ready for pickup");
    let (status, body) = http(
        &r.daemon.addr,
        "POST",
        &format!("/provet/clinic/webhook/{TOKEN}"),
        Some("application/json"),
        format!("{{\"external_sms_id\": {provet_id}}}").as_bytes(),
    );
    assert_eq!(status, 200, "{body}");
    let sent = r.wait_event(&v2, "2.0", "sms.sent", |d| d["source"] == "provet");
    let d = &sent["data"];
    assert_eq!(d["provet_instance"], "clinic");
    assert_eq!(d["external_sms_id"], provet_id);
    assert_eq!(d["to"], "+358401234567");
    assert_eq!(d["parts"], 1);
    assert!(d["id"].is_i64() && d["sent_at"].is_i64() && d["created_at"].is_i64(), "{d}");
    let provet_outbox_id = d["id"].clone();
    r.wait_event(&v2, "2.0", "sms.delivered", |d| d["id"] == provet_outbox_id);

    // A CLI send: sms.sent with source cli.
    let cli_id = r.send("+358407654321", "Your cat's vaccination is due");
    r.wait_event(&v2, "2.0", "sms.sent", |d| d["id"] == cli_id && d["source"] == "cli");

    // Inbound, then STOP and START from the same number.
    r.inject("+358409876543", "Hello vet");
    let got = r.wait_event(&v2, "2.0", "sms.received", |d| d["body"] == "Hello vet");
    assert_eq!(got["data"]["from"], "+358409876543");
    assert_eq!(got["data"]["modem"], "sim");
    assert_eq!(got["data"]["parts"], 1);
    r.inject("+358409876543", "STOP");
    let added = r.wait_event(&v2, "2.0", "optout.added", |d| d["number"] == "+358409876543");
    assert_eq!(added["data"]["source"], "sms");
    r.inject("+358409876543", "START");
    r.wait_event(&v2, "2.0", "optout.removed", |d| d["number"] == "+358409876543");

    // A permanent CMS error on the next send: sms.failed with the reason.
    let sends = r.sim.request(serde_json::json!({"cmd": "stats"}))["sends"].as_u64().unwrap();
    r.sim_set(serde_json::json!({"cms_error": 21, "cms_error_on_send": sends + 1}));
    let failing = r.send("+358401112223", "This one is refused by the network");
    let failed = r.wait_event(&v2, "2.0", "sms.failed", |d| d["id"] == failing);
    let reason = failed["data"]["reason"].as_str().unwrap();
    assert!(reason.contains("+CMS ERROR: 21"), "{reason}");
    r.sim_set(serde_json::json!({"cms_error_on_send": null}));

    // A status report saying the network gave up: sms.undelivered.
    r.sim_set(serde_json::json!({"auto_report": false}));
    let undelivered = r.send("+358405556667", "Nobody gets this");
    let mr = wait_for(LONG, || r.sim.sent().iter().find(|s| s["to"] == "+358405556667").and_then(|s| s["mr"].as_i64()))
        .expect("sent to the simulator");
    r.wait_event(&v2, "2.0", "sms.sent", |d| d["id"] == undelivered);
    assert_eq!(r.sim.request(serde_json::json!({"cmd": "report", "message_ref": mr, "status": 65}))["ok"], true);
    let und = r.wait_event(&v2, "2.0", "sms.undelivered", |d| d["id"] == undelivered);
    assert_eq!(und["data"]["status"], 65);

    // Unplug and replug: offline, then online again.
    assert_eq!(r.sim.request(serde_json::json!({"cmd": "unplug"}))["ok"], true);
    r.wait_event(&v2, "2.0", "modem.offline", |d| d["modem"] == "sim");
    assert_eq!(r.sim.request(serde_json::json!({"cmd": "replug"}))["ok"], true);
    wait_for(LONG, || {
        let online = v2.requests().iter().filter(|q| envelope(q, "2.0").0 == "modem.online").count();
        (online >= 2).then_some(())
    })
    .expect("online again after the replug");

    // Every type arrived at the receiver that wants all of them, each change with one id.
    let all: Vec<(String, Value)> = v2.requests().iter().map(|q| envelope(q, "2.0")).collect();
    let types: BTreeSet<&str> = all.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(
        types,
        BTreeSet::from([
            "sms.received",
            "sms.sent",
            "sms.failed",
            "sms.delivered",
            "sms.undelivered",
            "optout.added",
            "optout.removed",
            "modem.online",
            "modem.offline",
        ])
    );
    let mut ids_per_change: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for (t, v) in &all {
        if t.starts_with("sms.") {
            let key = (t.clone(), v["data"]["id"].to_string());
            ids_per_change.entry(key).or_default().insert(v["id"].as_str().unwrap().to_string());
        }
    }
    assert!(ids_per_change.values().all(|ids| ids.len() == 1), "{ids_per_change:?}");

    // The v1 receiver wants only sms.sent: numbers inside data are strings, account_code is
    // there, and the first event came three times (two failures) with the same id.
    // The first request is the Provet message's sms.sent; other events may arrive between its
    // retries (each delivery has its own schedule).
    let first_id =
        wait_for(LONG, || v1.requests().first().map(|q| envelope(q, "1.0").1["id"].as_str().unwrap().to_string()))
            .expect("the legacy receiver was called");
    let attempts = wait_for(LONG, || {
        let same: Vec<(String, Value)> =
            v1.requests().iter().map(|q| envelope(q, "1.0")).filter(|(_, v)| v["id"] == first_id.as_str()).collect();
        (same.len() >= 3).then_some(same)
    })
    .expect("three attempts of the first event at the legacy receiver");
    assert_eq!(attempts.len(), 3, "two failures, then delivered: {attempts:?}");
    let data = &attempts[0].1["data"];
    assert_eq!(
        (data["source"].as_str(), data["parts"].as_str()),
        (Some("provet"), Some("1")),
        "numbers as strings: {data}"
    );
    assert_eq!(data["external_sms_id"], provet_id.to_string());
    assert!(attempts.iter().all(|(_, v)| v["data"] == *data), "the same envelope every time");
    assert!(v1.requests().iter().all(|q| envelope(q, "1.0").0 == "sms.sent"), "types = [\"sms.sent\"] only");
    let uid = first_id;

    // The call log shows the three attempts, with their statuses and the answer bodies.
    let shown = r.json(&["events", "show", &uid, "--json"]);
    let calls: Vec<&Value> = shown["calls"].as_array().unwrap().iter().filter(|c| c["webhook"] == "legacy").collect();
    let statuses: Vec<i64> = calls.iter().map(|c| c["status"].as_i64().unwrap()).collect();
    assert_eq!(statuses, [500, 500, 200]);
    assert_eq!(calls[0]["response_body"], "attempt 1");
    assert!(calls[0]["request_headers"].as_str().unwrap().contains("X-Smshub-Delivery: "));
    let legacy_delivery = shown["deliveries"].as_array().unwrap().iter().find(|d| d["webhook"] == "legacy").unwrap();
    assert_eq!((legacy_delivery["state"].as_str(), legacy_delivery["attempts"].as_i64()), (Some("delivered"), Some(3)));
    // The list filters by type, and a replay sends the same id once more.
    let bad = r.dir.smshub(&r.cfg, &["events", "list", "--state", "lost"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr(&bad).contains("use one of pending, delivered, gave_up"), "{}", stderr(&bad));
    let listed = r.json(&["events", "list", "--type", "sms.failed", "--json"]);
    assert!(
        listed.as_array().unwrap().iter().all(|e| e["type"] == "sms.failed") && !listed.as_array().unwrap().is_empty()
    );
    let before = v1.requests().len();
    let out = r.dir.smshub(&r.cfg, &["events", "replay", &uid, "--webhook", "legacy"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("the running daemon was told"), "{}", stdout(&out));
    // Told through its socket, the daemon posts it at once (the minute's sweep is the fallback).
    // Another event's retry may arrive first on a slow machine (seen under qemu): look at all new ones.
    let again = wait_for(LONG, || {
        v1.requests()
            .iter()
            .skip(before)
            .any(|q| envelope(q, "1.0").1["id"].as_str() == Some(uid.as_str()))
            .then_some(())
    });
    assert!(again.is_some(), "the replayed event {uid} never reached the legacy webhook");

    // Logs at info and above hold no body and no full number.
    let log = r.daemon.log();
    assert!(!log.contains("Hello vet") && !log.contains("+358409876543"), "{log}");
}

fn count_sent_events(db: &Path) -> (BTreeMap<i64, Vec<String>>, BTreeMap<i64, String>) {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut stmt = conn.prepare("SELECT uid, data FROM events WHERE type = 'sms.sent'").unwrap();
    let mut events: BTreeMap<i64, Vec<String>> = BTreeMap::new();
    for row in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))).unwrap() {
        let (uid, data) = row.unwrap();
        let data: Value = serde_json::from_str(&data).unwrap();
        events.entry(data["id"].as_i64().unwrap()).or_default().push(uid);
    }
    let mut stmt = conn.prepare("SELECT id, state FROM outbox").unwrap();
    let states = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(|r| r.unwrap()).collect();
    (events, states)
}

#[test]
fn sigkill_during_sending_never_gives_a_sent_message_without_its_event_nor_two_ids() {
    let hook = signed_receiver(SECRET_V2, |_| 200);
    let dir = TestDir::new();
    // Slow sends widen the window in which a kill lands mid-message.
    let sim = Sim::start(dir.path(), &["--send-latency-ms", "700"]);
    let cfg = dir.config(&format!(
        "clinic_code = \"vet-test-1\"\n\n{}\n[[modem]]\nname = \"sim\"\ndevice = \"{}\"\nsend_timeout_s = 20\n\n\
         [outbound]\nretry_initial_s = 1\nretry_max_s = 2\non_unknown_outcome = \"mark_failed\"\n",
        webhook_section("hook", &hook, SECRET_V2, "types = [\"sms.sent\", \"sms.failed\"]\n"),
        sim.link.display()
    ));
    let long = "Muistutus: Rexin rokotus on huomenna klo 10. Tervetuloa! ".repeat(4); // two parts
    let mut ids = Vec::new();
    for i in 0..8 {
        let text = if i % 2 == 0 { long.clone() } else { format!("Short reminder {i}") };
        let out = dir.smshub(&cfg, &["send", "--to", &format!("+35840100000{i}"), "--text", &text, "--json"]);
        assert!(out.status.success(), "{}", stderr(&out));
        ids.push(serde_json::from_str::<Value>(&stdout(&out)).unwrap()["id"].as_i64().unwrap());
    }
    let db = dir.path().join("smshub.db");
    for round in 0..4 {
        let daemon = Daemon::start(&cfg);
        // Kill at a different point of the batch each round: after 1, 3, 5, 7 parts went out.
        let target = 1 + 2 * round;
        wait_for(LONG, || (sim.sent().len() >= target).then_some(()))
            .unwrap_or_else(|| panic!("round {round}: {target} parts never went out; log:\n{}", daemon.log()));
        daemon.signal(nix::sys::signal::Signal::SIGKILL);
        drop(daemon);
    }
    let daemon = Daemon::start(&cfg);
    let settled = wait_for(LONG, || {
        let (_, states) = count_sent_events(&db);
        ids.iter().all(|id| matches!(states.get(id).map(String::as_str), Some("sent" | "failed"))).then_some(())
    });
    assert!(settled.is_some(), "every message settles; log:\n{}", daemon.log());
    let (events, states) = count_sent_events(&db);
    eprintln!("outcomes after the kills: {states:?}");
    for id in &ids {
        let uids = events.get(id).cloned().unwrap_or_default();
        match states[id].as_str() {
            "sent" => assert_eq!(uids.len(), 1, "message {id} is sent: exactly one sms.sent, got {uids:?}"),
            _ => assert!(uids.is_empty(), "message {id} failed: no sms.sent, got {uids:?}"),
        }
    }
    // What reached the receiver: one envelope id per sent message (repeats of the same id are
    // allowed: at least once).
    wait_for(LONG, || {
        let got: BTreeSet<String> = hook
            .requests()
            .iter()
            .filter(|q| envelope(q, "2.0").0 == "sms.sent")
            .map(|q| envelope(q, "2.0").1["id"].as_str().unwrap().to_string())
            .collect();
        let expected: BTreeSet<String> = events.values().flatten().cloned().collect();
        (got == expected).then_some(())
    })
    .unwrap_or_else(|| panic!("the receiver did not get exactly the stored sms.sent ids; log:\n{}", daemon.log()));
}
