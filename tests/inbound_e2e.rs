//! Inbound end to end: the real daemon on the simulator forwards received SMS to local HTTP
//! receivers written here (a Twilio one that checks the signature with its own HMAC code, PBX
//! ones that fail on purpose), falls back to e-mail, survives a SIGKILL mid-retry, keeps
//! malformed PDUs, and acts on STOP and HELP.

mod common;
use common::receiver::Receiver;
use common::smtp_sink::{SinkBehaviour, SmtpSink};
use common::*;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;

const AUTH_TOKEN: &str = "12345-test-auth-token";
const ACCOUNT_SID: &str = "AC0123456789abcdef0123456789abcdef";
const LONG: Duration = Duration::from_secs(120);

/// X-Twilio-Signature written from Twilio's documentation, independently of src/forward:
/// URL, then each parameter name and value sorted by name, HMAC-SHA1, base64.
fn twilio_signature(url: &str, form: &[(String, String)]) -> String {
    let mut sorted = form.to_vec();
    sorted.sort();
    let mut data = url.to_string();
    for (k, v) in &sorted {
        data.push_str(k);
        data.push_str(v);
    }
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, AUTH_TOKEN.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(ring::hmac::sign(&key, data.as_bytes()).as_ref())
}

const THANKS: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Message>Thanks!</Message></Response>";

/// A Twilio receiver: 403 for a bad signature, else `answer(n)`.
fn twilio_receiver(answer: impl Fn(usize) -> (u16, String) + Send + Sync + 'static) -> Receiver {
    let url = Arc::new(Mutex::new(String::new()));
    let u = url.clone();
    let r = Receiver::start(move |n, req| {
        let expected = twilio_signature(&u.lock().unwrap(), &req.form);
        if req.header("X-Twilio-Signature") != Some(expected.as_str()) {
            return (403, "text/plain", "bad signature".into());
        }
        let (status, body) = answer(n);
        (status, "application/xml", body)
    });
    *url.lock().unwrap() = r.url();
    r
}

fn twilio_forward(r: &Receiver) -> String {
    format!(
        "[[forward]]\nkind = \"twilio\"\nname = \"tw\"\nurl = \"{}\"\naccount_sid = \"{ACCOUNT_SID}\"\nauth_token = \"{AUTH_TOKEN}\"\n\
         to_number = \"+358401111111\"\nretry_initial_s = 1\nretry_max_s = 2\ngive_up_after_s = 600\n\n",
        r.url()
    )
}

fn pbx_forward(r: &Receiver, smtp: Option<&SmtpSink>) -> String {
    let mut s = format!(
        "[[forward]]\nkind = \"pbx\"\nname = \"pbx\"\nurl = \"{}\"\nservice_id = \"12345\"\nsms_number = \"+61412345678\"\n\
         max_attempts = 10\nretry_initial_s = 1\nretry_max_s = 2\n",
        r.url()
    );
    if let Some(sink) = smtp {
        s.push_str(&format!(
            "fallback_email = \"frontdesk@clinic.test\"\n\n[smtp]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\nfrom = \"smshub@clinic.test\"\n",
            sink.port()
        ));
    }
    s.push('\n');
    s
}

fn modem_config(dir: &TestDir, sim: &Sim, extra: &str) -> PathBuf {
    dir.config(&format!(
        "{extra}\n[[modem]]\nname = \"sim\"\ndevice = \"{}\"\nsend_timeout_s = 20\n\n[outbound]\nretry_initial_s = 1\nretry_max_s = 2\n",
        sim.link.display()
    ))
}

fn json(dir: &TestDir, cfg: &Path, args: &[&str]) -> serde_json::Value {
    let out = dir.smshub(cfg, args);
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    serde_json::from_str(&stdout(&out)).unwrap()
}

fn inbox(dir: &TestDir, cfg: &Path) -> Vec<serde_json::Value> {
    json(dir, cfg, &["inbox", "list", "--json"]).as_array().cloned().unwrap()
}

fn inbox_show(dir: &TestDir, cfg: &Path, id: i64) -> serde_json::Value {
    json(dir, cfg, &["inbox", "show", &id.to_string(), "--json"])
}

/// Waits until inbox message `id`'s delivery through `forwarder` is in `state`.
fn wait_delivery(dir: &TestDir, cfg: &Path, id: i64, forwarder: &str, state: &str) -> serde_json::Value {
    wait_for(LONG, || {
        let m = inbox_show(dir, cfg, id);
        let d = m["deliveries"].as_array()?.iter().find(|d| d["forwarder"] == forwarder)?.clone();
        (d["state"] == state).then_some(d)
    })
    .unwrap_or_else(|| panic!("delivery {forwarder} of {id} never became {state}: {}", inbox_show(dir, cfg, id)))
}

fn inject(sim: &Sim, from: &str, text: &str, order: Option<Vec<usize>>) {
    let mut req = serde_json::json!({"cmd": "inject", "from": from, "text": text});
    if let Some(o) = order {
        req["order"] = serde_json::json!(o);
    }
    let r = sim.request(req);
    assert_eq!(r["ok"], true, "{r}");
}

fn attempts_in_db(dir: &TestDir) -> Vec<(String, Option<i64>, Option<String>)> {
    let conn = rusqlite::Connection::open(dir.path().join("smshub.db")).unwrap();
    let mut stmt = conn.prepare("SELECT channel, http_status, error FROM delivery_attempts ORDER BY id").unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap().map(|r| r.unwrap()).collect()
}

#[test]
fn twilio_webhooks_are_signed_and_their_twiml_replies_reach_the_sender() {
    let dir = TestDir::new();
    let sim = Sim::start(dir.path(), &[]);
    let tw = twilio_receiver(|_| (200, THANKS.to_string()));
    let cfg = modem_config(&dir, &sim, &twilio_forward(&tw));
    let _d = Daemon::start(&cfg);

    let long = "Thank you for the reminder, we will come on Tuesday at 10. ".repeat(6); // 354 GSM-7 characters: three parts
    let emoji = "Kiitos! Tulemme tiistaina 🐕🐈 klo 10";
    inject(&sim, "+358409876543", "Hello vet", None);
    inject(&sim, "+358409876544", &long, Some(vec![3, 1, 2]));
    inject(&sim, "+358409876545", emoji, None);
    inject(&sim, "ExampleVet", "Your parcel is ready", None);

    let reqs = tw.wait_requests(4, LONG);
    for r in &reqs {
        assert_eq!(r.header("X-Twilio-Signature"), Some(twilio_signature(&tw.url(), &r.form).as_str()));
        assert_eq!(r.field("AccountSid"), Some(ACCOUNT_SID));
        assert_eq!(r.field("To"), Some("+358401111111"));
        assert_eq!(r.field("SmsStatus"), Some("received"));
        let sid = r.field("MessageSid").unwrap();
        assert!(sid.starts_with("SM") && sid.len() == 34, "{sid}");
    }
    let by_from = |from: &str| reqs.iter().find(|r| r.field("From") == Some(from)).unwrap().clone();
    assert_eq!(by_from("+358409876543").field("Body"), Some("Hello vet"));
    assert_eq!(by_from("+358409876544").field("Body"), Some(long.as_str()));
    assert_eq!(by_from("+358409876544").field("NumSegments"), Some("3"));
    assert_eq!(by_from("+358409876545").field("Body"), Some(emoji));
    assert_eq!(by_from("ExampleVet").field("Body"), Some("Your parcel is ready"));

    // Replies to the three numbers; none to the alphanumeric sender.
    let sent = sim.wait_sent(LONG, |s| s.len() >= 3);
    let mut to: Vec<&str> = sent.iter().map(|s| s["to"].as_str().unwrap()).collect();
    to.sort();
    assert_eq!(to, ["+358409876543", "+358409876544", "+358409876545"], "{sent:?}");
    assert!(sent.iter().all(|s| s["text"] == "Thanks!"), "{sent:?}");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(sim.sent().len(), 3, "nothing is replied twice");
    assert_eq!(tw.requests().len(), 4, "each message is forwarded once");
    let skipped = attempts_in_db(&dir);
    assert!(
        skipped.iter().any(
            |(_, status, e)| *status == Some(200) && e.as_deref().is_some_and(|e| e.contains("not a phone number"))
        ),
        "the skipped reply to ExampleVet is recorded: {skipped:?}"
    );
}

#[test]
fn a_pbx_receiver_failing_nine_times_gets_the_message_on_the_tenth_without_email() {
    let dir = TestDir::new();
    let sim = Sim::start(dir.path(), &[]);
    let sink = SmtpSink::start(SinkBehaviour::Accept);
    let pbx =
        Receiver::start(
            |n, _| if n < 10 { (503, "text/plain", "busy".into()) } else { (200, "text/plain", "OK".into()) },
        );
    let cfg = modem_config(&dir, &sim, &pbx_forward(&pbx, Some(&sink)));
    let _d = Daemon::start(&cfg);
    inject(&sim, "+61400111222", "Can we move Rex to Friday?", None);
    let id = wait_for(LONG, || inbox(&dir, &cfg).first().and_then(|m| m["id"].as_i64())).unwrap();
    let d = wait_delivery(&dir, &cfg, id, "pbx", "delivered");
    assert_eq!(d["attempts"], 10);
    let reqs = pbx.requests();
    assert_eq!(reqs.len(), 10);
    let ids: std::collections::BTreeSet<_> = reqs.iter().map(|r| r.field("message_id").unwrap().to_string()).collect();
    assert_eq!(ids.len(), 1, "every retry carries the same message_id");
    assert_eq!(reqs[9].field("body"), Some("Can we move Rex to Friday?"));
    assert_eq!(reqs[9].field("from"), Some("+61400111222"));
    std::thread::sleep(Duration::from_secs(3));
    assert!(sink.mails().is_empty(), "no e-mail for a delivered message");
    assert_eq!(pbx.requests().len(), 10);
}

#[test]
fn a_pbx_receiver_that_always_fails_gets_ten_attempts_then_one_email_with_the_text() {
    let dir = TestDir::new();
    let sim = Sim::start(dir.path(), &[]);
    let sink = SmtpSink::start(SinkBehaviour::Accept);
    let pbx = Receiver::start(|_, _| (500, "text/plain", "down".into()));
    let cfg = modem_config(&dir, &sim, &pbx_forward(&pbx, Some(&sink)));
    let _d = Daemon::start(&cfg);
    let text = "Rex ate a sock 🧦\n.hidden line\nPlease call back ASAP & bring the invoice";
    inject(&sim, "+61400111222", text, None);
    let id = wait_for(LONG, || inbox(&dir, &cfg).first().and_then(|m| m["id"].as_i64())).unwrap();
    let d = wait_delivery(&dir, &cfg, id, "pbx", "emailed");
    assert_eq!(d["attempts"], 10);
    let mails = sink.wait_for_mails(1, Duration::from_secs(10));
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(pbx.requests().len(), 10, "exactly ten webhook attempts");
    assert_eq!(sink.mails().len(), 1, "exactly one e-mail");
    assert_eq!(mails[0].rcpt_to, ["frontdesk@clinic.test"]);
    let body = mails[0].text_body();
    assert!(body.contains(text), "{body}");
    let attempts = attempts_in_db(&dir);
    assert_eq!(attempts.iter().filter(|a| a.0 == "http").count(), 10);
    assert_eq!(attempts.iter().filter(|a| a.0 == "email").count(), 1);
}

#[test]
fn a_daemon_killed_mid_retry_resumes_and_never_forwards_a_delivered_message_again() {
    let dir = TestDir::new();
    let sim = Sim::start(dir.path(), &[]);
    let tw = twilio_receiver(|_| (200, "<Response/>".to_string()));
    let pbx =
        Receiver::start(|n, _| if n <= 4 { (502, "text/plain", "".into()) } else { (200, "text/plain", "".into()) });
    let cfg = modem_config(&dir, &sim, &format!("{}{}", twilio_forward(&tw), pbx_forward(&pbx, None)));
    let mut daemon = Daemon::start(&cfg);
    inject(&sim, "+358409876543", "Is the clinic open on Sunday?", None);
    tw.wait_requests(1, LONG);
    pbx.wait_requests(2, LONG);
    daemon.signal(nix::sys::signal::Signal::SIGKILL);
    daemon.wait_exit(Duration::from_secs(10)).expect("killed");
    let before_restart = pbx.requests().len();
    assert!(before_restart < 5, "still retrying when killed");

    let _d = Daemon::start(&cfg);
    let id = inbox(&dir, &cfg)[0]["id"].as_i64().unwrap();
    wait_delivery(&dir, &cfg, id, "pbx", "delivered");
    wait_delivery(&dir, &cfg, id, "tw", "delivered");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(tw.requests().len(), 1, "the Twilio receiver answered 200 once and was never called again");
    let reqs = pbx.requests();
    assert_eq!(reqs.len(), 5, "retries resumed after the restart and stopped at the 200");
    assert!(reqs.iter().all(|r| r.field("body") == Some("Is the clinic open on Sunday?")));
    assert_eq!(inbox(&dir, &cfg).len(), 1, "nothing lost, nothing duplicated");
}

#[test]
fn malformed_pdus_are_kept_raw_and_bad_twiml_is_a_recorded_failure() {
    let dir = TestDir::new();
    let sim = Sim::start(dir.path(), &[]);
    let huge = format!("<Response><Message>{}</Message></Response>", "x".repeat(200 * 1024));
    let evil = "<?xml version=\"1.0\"?><!DOCTYPE r [<!ENTITY e SYSTEM \"file:///etc/passwd\">]><Response><Message>&e;</Message></Response>";
    let tw = twilio_receiver(move |n| match n {
        1 => (200, evil.to_string()),
        2 => (200, huge.clone()),
        _ => (200, THANKS.to_string()),
    });
    let cfg = modem_config(&dir, &sim, &twilio_forward(&tw));
    let daemon = Daemon::start(&cfg);
    // An SMS-DELIVER cut off inside the sender address.
    let truncated = "07917283010010F5040BC872";
    let r = sim.request(serde_json::json!({"cmd": "inject_pdu", "pdu": truncated}));
    assert_eq!(r["ok"], true, "{r}");
    let bad = wait_for(LONG, || inbox(&dir, &cfg).into_iter().find(|m| m["decode_error"].is_string()))
        .unwrap_or_else(|| panic!("the malformed PDU was not stored; log:\n{}", daemon.log()));
    let shown = inbox_show(&dir, &cfg, bad["id"].as_i64().unwrap());
    assert_eq!(shown["part_rows"][0]["pdu"].as_str().map(str::to_uppercase), Some(truncated.into()));
    let d = wait_delivery(&dir, &cfg, bad["id"].as_i64().unwrap(), "tw", "gave_up");
    assert!(d["last_error"].as_str().unwrap().contains("no part could be decoded"), "{d}");

    // The daemon keeps working: the next message is forwarded (after two refused answers).
    inject(&sim, "+358409876543", "Still there?", None);
    let good = wait_for(LONG, || inbox(&dir, &cfg).into_iter().find(|m| m["sender"] == "+358409876543")).unwrap();
    let d = wait_delivery(&dir, &cfg, good["id"].as_i64().unwrap(), "tw", "delivered");
    assert_eq!(d["attempts"], 3);
    let attempts = attempts_in_db(&dir);
    let failed: Vec<_> = attempts.iter().filter(|a| a.1 == Some(200) && a.2.is_some()).collect();
    assert_eq!(failed.len(), 2, "{attempts:?}");
    assert!(failed[0].2.as_deref().unwrap().contains("DOCTYPE"), "{attempts:?}");
    assert!(failed[1].2.as_deref().unwrap().contains("larger than"), "{attempts:?}");
    let sent = sim.wait_sent(LONG, |s| !s.is_empty());
    assert_eq!(sent.len(), 1, "only the good TwiML is answered: {sent:?}");
    assert_eq!(sent[0]["text"], "Thanks!");
}

#[test]
fn stop_opts_the_sender_out_and_help_is_answered_once_per_interval() {
    let dir = TestDir::new();
    let sim = Sim::start(dir.path(), &[]);
    let keywords = "[keywords]\nhelp_reply = \"Example Vet: call 09 123 456\"\nstop_reply = \"Bye\"\nreply_min_interval_s = 3600\n";
    let cfg = modem_config(&dir, &sim, keywords);
    let _d = Daemon::start(&cfg);
    inject(&sim, "+358409876543", "Help?", None);
    inject(&sim, "+358409876543", "help", None);
    inject(&sim, "ExampleVet", "HELP", None);
    let sent = sim.wait_sent(LONG, |s| !s.is_empty());
    assert_eq!(sent[0]["to"], "+358409876543");
    assert_eq!(sent[0]["text"], "Example Vet: call 09 123 456");

    inject(&sim, "+358409876543", " STOP! ", None);
    let listed = wait_for(LONG, || {
        let list = json(&dir, &cfg, &["optout", "list", "--json"]);
        list.as_array().unwrap().iter().any(|o| o["number"] == "+358409876543" && o["source"] == "sms").then_some(list)
    });
    assert!(listed.is_some(), "the number is on the opt-out list");
    let keyword =
        wait_for(LONG, || inbox(&dir, &cfg).into_iter().find(|m| m["keyword"] == "STOP").map(|m| m["keyword"].clone()));
    assert!(keyword.is_some());

    let out = dir.smshub(&cfg, &["send", "--to", "+358409876543", "--text", "Vaccination reminder", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let id = serde_json::from_str::<serde_json::Value>(&stdout(&out)).unwrap()["id"].as_i64().unwrap();
    let failed = wait_for(LONG, || {
        json(&dir, &cfg, &["outbox", "list", "--json"])
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["id"] == id && m["state"] == "failed")
            .cloned()
    })
    .expect("the send to an opted-out number fails");
    assert_eq!(failed["fail_reason"], "recipient opted out");
    let sent = sim.wait_sent(LONG, |s| s.len() >= 2);
    let texts: Vec<&str> = sent.iter().map(|s| s["text"].as_str().unwrap()).collect();
    assert_eq!(
        texts,
        ["Example Vet: call 09 123 456", "Bye"],
        "one HELP reply (rate-limited), none to ExampleVet, the STOP confirmation, and nothing after it"
    );
}

#[test]
fn the_optout_command_adds_lists_and_removes_numbers() {
    let dir = TestDir::new();
    let cfg = dir.config("default_country = \"358\"\n");
    let out = dir.smshub(&cfg, &["optout", "add", "040 123 4567"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let list = json(&dir, &cfg, &["optout", "list", "--json"]);
    assert_eq!(list[0]["number"], "+358401234567");
    assert_eq!(list[0]["source"], "cli");
    let out = dir.smshub(&cfg, &["optout", "add", "not a number"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let out = dir.smshub(&cfg, &["optout", "remove", "+358401234567"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(json(&dir, &cfg, &["optout", "list", "--json"]), serde_json::json!([]));
    let out = dir.smshub(&cfg, &["optout", "remove", "+358401234567"]);
    assert_eq!(out.status.code(), Some(2), "removing a number that is not listed is bad input");
    assert!(stdout(&dir.smshub(&cfg, &["optout", "list"])).contains("(none)"));
}

#[test]
fn twilio_gives_up_after_its_horizon_and_pbx_without_fallback_after_max_attempts() {
    let dir = TestDir::new();
    let sim = Sim::start(dir.path(), &[]);
    let tw = twilio_receiver(|_| (500, "".to_string()));
    let pbx = Receiver::start(|_, _| (404, "text/plain", "".into()));
    let twilio = twilio_forward(&tw).replace("give_up_after_s = 600", "give_up_after_s = 3");
    let pbx_cfg = pbx_forward(&pbx, None).replace("max_attempts = 10", "max_attempts = 2");
    let cfg = modem_config(&dir, &sim, &format!("{twilio}{pbx_cfg}"));
    let mut daemon = Daemon::start(&cfg);
    inject(&sim, "+358409876543", "Anyone there?", None);
    let id = wait_for(LONG, || inbox(&dir, &cfg).first().and_then(|m| m["id"].as_i64())).unwrap();
    let t = wait_delivery(&dir, &cfg, id, "tw", "gave_up");
    assert!(t["last_error"].as_str().unwrap().contains("gave up after"), "{t}");
    assert!(t["attempts"].as_i64().unwrap() >= 2, "{t}");
    let p = wait_delivery(&dir, &cfg, id, "pbx", "gave_up");
    assert_eq!(p["attempts"], 2);
    assert!(p["last_error"].as_str().unwrap().contains("no fallback_email"), "{p}");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(pbx.requests().len(), 2, "no attempt after giving up");
    let n = tw.requests().len();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(tw.requests().len(), n, "no attempt after giving up");
    daemon.signal(nix::sys::signal::Signal::SIGTERM);
    let status =
        daemon.wait_exit(Duration::from_secs(25)).expect("the daemon stops on SIGTERM with forwarders running");
    assert!(status.success(), "{status:?}");
}

#[test]
fn two_identical_sms_in_the_same_second_are_two_messages_and_two_forwards() {
    let dir = TestDir::new();
    let sim = Sim::start(dir.path(), &[]);
    let tw = twilio_receiver(|_| (200, "<Response/>".to_string()));
    let cfg = modem_config(&dir, &sim, &twilio_forward(&tw));
    let _d = Daemon::start(&cfg);
    // The same sender, text and timestamp: byte-identical PDUs in two SIM slots.
    for _ in 0..2 {
        let r = sim.request(
            serde_json::json!({"cmd": "inject", "from": "+358409876543", "text": "Yes", "timestamp": 1_767_225_600}),
        );
        assert_eq!(r["ok"], true, "{r}");
    }
    let reqs = tw.wait_requests(2, LONG);
    assert!(reqs.iter().all(|r| r.field("Body") == Some("Yes")), "{reqs:?}");
    assert_ne!(reqs[0].field("MessageSid"), reqs[1].field("MessageSid"), "two messages, not one forwarded twice");
    assert_eq!(inbox(&dir, &cfg).len(), 2);
    let conn = rusqlite::Connection::open(dir.path().join("smshub.db")).unwrap();
    let pdus: Vec<String> = conn
        .prepare("SELECT pdu FROM inbox_parts")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(pdus.len(), 2);
    assert_eq!(pdus[0], pdus[1], "the PDUs really were identical");
    let emptied = wait_for(LONG, || (sim.request(serde_json::json!({"cmd": "storage"}))["used"] == 0).then_some(()));
    assert!(emptied.is_some(), "both slots deleted after both were stored");
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(tw.requests().len(), 2);
}

fn outbox_rows(dir: &TestDir, cfg: &Path) -> Vec<serde_json::Value> {
    json(dir, cfg, &["outbox", "list", "--json"]).as_array().cloned().unwrap()
}

#[test]
fn twiml_replies_to_other_numbers_short_codes_or_oversized_are_refused_and_recorded() {
    let dir = TestDir::new();
    let sim = Sim::start(dir.path(), &[]);
    let huge = "x".repeat(30_000);
    let answer = format!(
        "<Response><Message to=\"+19005550123\">premium</Message><Message to=\"+882123456789\">sat</Message>\
         <Message>{huge}</Message><Message>ok</Message></Response>"
    );
    let tw = Receiver::start(move |_, req| {
        let body = if req.field("From") == Some("16400") {
            "<Response><Message>Thanks</Message></Response>".to_string()
        } else {
            answer.clone()
        };
        (200, "text/xml", body)
    });
    let cfg = modem_config(&dir, &sim, &format!("default_country = \"358\"\n{}", twilio_forward(&tw)));
    let _d = Daemon::start(&cfg);
    inject(&sim, "+358409876543", "Hello", None);
    inject(&sim, "16400", "Your code is 1234", None);
    tw.wait_requests(2, LONG);
    let sent = sim.wait_sent(LONG, |s| !s.is_empty());
    std::thread::sleep(Duration::from_secs(3));
    let sent_now = sim.sent();
    assert_eq!(sent_now.len(), 1, "only the short reply to the sender: {sent:?}");
    assert_eq!(sent_now[0]["to"], "+358409876543");
    assert_eq!(sent_now[0]["text"], "ok");
    let rows = outbox_rows(&dir, &cfg);
    let refused: Vec<(String, String)> = rows
        .iter()
        .filter(|r| r["state"] == "refused")
        .map(|r| {
            (r["recipient"].as_str().unwrap_or("").to_string(), r["fail_reason"].as_str().unwrap_or("").to_string())
        })
        .collect();
    assert_eq!(refused.len(), 4, "{rows:#?}");
    assert!(
        refused.iter().any(|(to, why)| to == "+19005550123" && why.contains("allowed_destinations")),
        "{refused:?}"
    );
    assert!(
        refused.iter().any(|(to, why)| to == "+882123456789" && why.contains("allowed_destinations")),
        "{refused:?}"
    );
    assert!(refused.iter().any(|(_, why)| why.contains("197 parts; [replies] max_parts is 3")), "{refused:?}");
    assert!(
        refused.iter().any(|(to, why)| to == "16400" && why.contains("short code")),
        "never +35816400: {refused:?}"
    );
    assert!(!rows.iter().any(|r| r["recipient"] == "+35816400"), "{rows:#?}");
    // `inbox show` lists the replies of each message, refused ones with their reason.
    let hello = inbox(&dir, &cfg).into_iter().find(|m| m["sender"] == "+358409876543").unwrap();
    let shown = inbox_show(&dir, &cfg, hello["id"].as_i64().unwrap());
    let states: Vec<&str> = shown["replies"].as_array().unwrap().iter().map(|r| r["state"].as_str().unwrap()).collect();
    assert_eq!(states.iter().filter(|s| **s == "refused").count(), 3, "{shown}");
    let out = dir.smshub(&cfg, &["inbox", "show", &hello["id"].to_string()]);
    assert!(stdout(&out).contains("allowed_destinations"), "{}", stdout(&out));
}

#[test]
fn an_exchange_with_an_auto_responder_ends_at_the_per_number_limit() {
    let dir = TestDir::new();
    let sim = Sim::start(dir.path(), &[]);
    let tw = twilio_receiver(|_| (200, THANKS.to_string()));
    let cfg = modem_config(&dir, &sim, &format!("[replies]\nper_number_per_hour = 3\n\n{}", twilio_forward(&tw)));
    let _d = Daemon::start(&cfg);
    let robot = "+358405550000";
    inject(&sim, robot, "Auto-reply: I am away", None);
    // The robot answers every SMS it gets, as an out-of-office responder does.
    let mut answered = 0;
    let quiet = wait_for(LONG, || {
        let to_robot = sim.sent().iter().filter(|s| s["to"] == robot).count();
        if to_robot > answered {
            answered = to_robot;
            inject(&sim, robot, "Auto-reply: I am away", None);
            return None;
        }
        // No new SMS to the robot for a while after its last answer was forwarded: the loop ended.
        let forwarded = tw.requests().len();
        (forwarded == answered + 1 && to_robot == answered && answered >= 3).then_some(())
    });
    assert!(quiet.is_some(), "the exchange did not settle: {} sent", sim.sent().len());
    std::thread::sleep(Duration::from_secs(3));
    let to_robot = sim.sent().iter().filter(|s| s["to"] == robot).count();
    assert_eq!(to_robot, 3, "per_number_per_hour = 3 ends the loop");
    let rows = outbox_rows(&dir, &cfg);
    let refused = rows.iter().filter(|r| r["state"] == "refused").count();
    assert!(refused >= 1, "the reply over the limit is recorded as refused: {rows:#?}");
    assert!(
        rows.iter().any(|r| r["state"] == "refused"
            && r["fail_reason"].as_str().is_some_and(|w| w.contains("per_number_per_hour is 3"))),
        "{rows:#?}"
    );
}

#[test]
fn inbox_show_escapes_terminal_control_sequences_in_a_received_sms() {
    let dir = TestDir::new();
    let sim = Sim::start(dir.path(), &[]);
    let cfg = modem_config(&dir, &sim, "");
    let _d = Daemon::start(&cfg);
    let hostile = "\u{1b}]0;pwned\u{7}\u{1b}[2Jhello\r\nFORGED ROW";
    inject(&sim, "+358409876543", hostile, None);
    let id = wait_for(LONG, || inbox(&dir, &cfg).first().and_then(|m| m["id"].as_i64())).unwrap();
    assert_eq!(inbox_show(&dir, &cfg, id)["body"], hostile, "stored as received; JSON escapes it");
    for args in [vec!["inbox", "show", &id.to_string()], vec!["inbox", "list"]] {
        let out = dir.smshub(&cfg, &args.iter().map(|s| s.as_ref()).collect::<Vec<&str>>());
        assert!(out.status.success(), "{}", stderr(&out));
        let text = stdout(&out);
        assert!(!text.chars().any(|c| c.is_control() && c != '\n'), "{text:?}");
        if args[1] == "show" {
            assert!(text.contains("\\u{1b}]0;pwned\\u{7}\\u{1b}[2Jhello\\r\\nFORGED ROW"), "{text}");
            assert!(!text.lines().any(|l| l.starts_with("FORGED")), "{text}");
        }
    }
}
