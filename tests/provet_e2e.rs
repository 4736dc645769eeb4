//! Provet end to end: the real daemon, the simulator (`smshub sim`, a process) and the fake
//! Provet (in this test process, on its own tokio runtime). A message goes from Provet through
//! the modem and is marked in Provet exactly once, whatever goes wrong in between.

mod common;
use common::*;
use std::path::PathBuf;
use std::time::Duration;

use smshub::provet::custom_integration::expected_hash;
use smshub::testbed::fake_provet::{Failure, FakeOptions, FakeProvet, Mark};

const TOKEN: &str = "0123456789abcdef0123";
const SALT: &str = "ci-salt-for-tests";
const LONG: Duration = Duration::from_secs(60);

struct Rig {
    fake: FakeProvet,
    dir: TestDir,
    sim: Sim,
    cfg: PathBuf,
    daemon: Daemon,
    // Last: the fake's server runs on it.
    _rt: tokio::runtime::Runtime,
}

/// `webhook`: whether the instance has a webhook token; `poll_s`: poll_interval_s.
fn rig(sim_args: &[&str], webhook: bool, poll_s: u64, setup: impl FnOnce(&FakeProvet)) -> Rig {
    rig_with(sim_args, webhook, poll_s, "", setup)
}

/// [`rig`] with `provet_extra` (TOML keys) added to the `[[provet]]` section.
fn rig_with(sim_args: &[&str], webhook: bool, poll_s: u64, provet_extra: &str, setup: impl FnOnce(&FakeProvet)) -> Rig {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let fake = rt.block_on(FakeProvet::start(FakeOptions::default())).unwrap();
    setup(&fake);
    let dir = TestDir::new();
    let sim = Sim::start(dir.path(), sim_args);
    let token = if webhook { format!("webhook_token = \"{TOKEN}\"\n") } else { String::new() };
    let cfg = dir.config(&format!(
        "[[provet]]\nname = \"clinic\"\nbase_url = \"{}\"\ntoken_url = \"{}\"\nclient_id = \"{}\"\nclient_secret = \"{}\"\n{token}\
         poll_interval_s = {poll_s}\n{provet_extra}retry_initial_s = 1\nretry_max_s = 2\nrequest_timeout_s = 3\nallow_insecure_http = true\n\n\
         [[modem]]\nname = \"sim\"\ndevice = \"{}\"\nsend_timeout_s = 20\n\n\
         [outbound]\nretry_initial_s = 1\nretry_max_s = 2\n\n\
         [custom_integration]\nsalt = \"{SALT}\"\n",
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
    fn webhook(&self, id: i64) -> (u16, String) {
        let body = format!("{{\"external_sms_id\": {id}}}");
        http(
            &self.daemon.addr,
            "POST",
            &format!("/provet/clinic/webhook/{TOKEN}"),
            Some("application/json"),
            body.as_bytes(),
        )
    }

    /// Waits until every id in `ids` has a mark of the final kind (successful/failed/sent).
    fn wait_marked(&self, ids: &[i64]) -> Vec<(i64, Mark)> {
        let done = wait_for(LONG, || {
            let marks = self.fake.marks();
            ids.iter()
                .all(|id| marks.iter().any(|(m, k)| m == id && !matches!(k, Mark::ExternalSending)))
                .then_some(marks)
        });
        done.unwrap_or_else(|| {
            panic!(
                "not all of {ids:?} were marked: {:?}\noutbox: {}\nlog:\n{}",
                self.fake.marks(),
                stdout(&self.dir.smshub(&self.cfg, &["outbox", "list", "--json"])),
                self.daemon.log()
            )
        })
    }

    fn outbox(&self) -> Vec<serde_json::Value> {
        let out = self.dir.smshub(&self.cfg, &["outbox", "list", "--json"]);
        serde_json::from_str::<serde_json::Value>(&stdout(&out)).unwrap().as_array().cloned().unwrap()
    }

    /// Joined text of the parts the simulator got for `to`.
    fn texts_to(&self, to: &str) -> Vec<String> {
        let mut by_ref: Vec<(Option<u64>, String)> = Vec::new();
        for p in self.sim.sent().iter().filter(|p| p["to"] == to) {
            let r = p["concat"]["ref"].as_u64();
            let t = p["text"].as_str().unwrap_or("").to_string();
            match by_ref.iter_mut().find(|(rr, _)| r.is_some() && *rr == r) {
                Some((_, acc)) => acc.push_str(&t),
                None => by_ref.push((r, t)),
            }
        }
        by_ref.into_iter().map(|(_, t)| t).collect()
    }
}

fn marks_of(marks: &[(i64, Mark)], id: i64) -> Vec<Mark> {
    marks.iter().filter(|(m, _)| *m == id).map(|(_, k)| k.clone()).collect()
}

#[test]
fn a_webhook_sends_the_sms_and_marks_it_successful_exactly_once_even_when_repeated() {
    let r = rig(&[], true, 0, |_| {});
    let id = r.fake.add_sms("+358401234567", "Rex is ready for pickup");
    for _ in 0..3 {
        let (status, body) = r.webhook(id);
        assert_eq!(status, 200, "{body}");
    }
    let marks = r.wait_marked(&[id]);
    let sent = r.sim.sent();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["to"], "+358401234567");
    assert_eq!(sent[0]["text"], "Rex is ready for pickup");
    // A late duplicate webhook changes nothing either.
    assert_eq!(r.webhook(id).0, 200);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(marks_of(&r.fake.marks(), id), [Mark::Successful], "{marks:?}");
    assert_eq!(r.sim.sent().len(), 1);
    let row = r.outbox().into_iter().find(|m| m["external_id"] == id).unwrap();
    assert_eq!(row["state"], "reported");
    assert_eq!(row["outcome"], "sent");
}

#[test]
fn poll_only_mode_sends_multipart_gsm7_and_ucs2_texts_and_refuses_webhooks() {
    let r = rig(&[], false, 1, |_| {});
    let gsm = "Muistutus: Rexin rokotus on huomenna klo 10. Tervetuloa! ".repeat(4); // > 160 GSM-7 chars
    let ucs2 = "Hyvää päivää 🐕! Muistathan huomisen ajan. ".repeat(3); // emoji: UCS-2, > 70 units
    let a = r.fake.add_sms("+358401111111", &gsm);
    let b = r.fake.add_sms("+358402222222", &ucs2);
    assert_eq!(r.webhook(a).0, 404, "no webhook token: the webhook does not exist");
    let marks = r.wait_marked(&[a, b]);
    assert_eq!(marks_of(&marks, a), [Mark::Successful]);
    assert_eq!(marks_of(&marks, b), [Mark::Successful]);
    assert_eq!(r.texts_to("+358401111111"), [gsm]);
    assert_eq!(r.texts_to("+358402222222"), [ucs2]);
    let sent = r.sim.sent();
    assert!(sent.iter().filter(|p| p["to"] == "+358402222222").all(|p| p["encoding"] == "ucs2"), "{sent:?}");
    assert!(sent.iter().filter(|p| p["to"] == "+358402222222").count() >= 2);
}

#[test]
fn a_permanent_cms_error_is_reported_with_mark_failed_and_the_reason() {
    let r = rig(&["--cms-error", "21", "--cms-error-on-send", "1"], true, 0, |_| {});
    let id = r.fake.add_sms("+358401234567", "x");
    assert_eq!(r.webhook(id).0, 200);
    let marks = r.wait_marked(&[id]);
    match marks_of(&marks, id).as_slice() {
        [Mark::Failed { reason: Some(reason), .. }] => {
            assert!(reason.contains("part 1 of 1") && reason.contains("+CMS ERROR: 21"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_unusable_number_is_reported_failed_without_touching_the_modem() {
    let r = rig(&[], true, 1, |fake| {
        fake.add_sms("not a number", "hello");
    });
    let marks = r.wait_marked(&[1]);
    match marks_of(&marks, 1).as_slice() {
        [Mark::Failed { reason: Some(reason), .. }] => assert!(reason.contains("phone number"), "{reason}"),
        other => panic!("{other:?}"),
    }
    assert!(r.sim.sent().is_empty());
}

#[test]
fn a_transient_cms_error_is_retried_and_then_sent() {
    let r = rig(&["--cms-error", "42", "--cms-error-on-send", "1"], true, 0, |_| {});
    let id = r.fake.add_sms("+358401234567", "retry me");
    assert_eq!(r.webhook(id).0, 200);
    let marks = r.wait_marked(&[id]);
    assert_eq!(marks_of(&marks, id), [Mark::Successful]);
    assert_eq!(r.texts_to("+358401234567"), ["retry me"]);
}

#[test]
fn provet_errors_token_expiry_and_rate_limits_are_outlasted() {
    let r = rig(&[], true, 0, |_| {});
    // 5xx on the next calls (the fetches), then a rate limit with Retry-After.
    r.fake.fail_next(3, Failure::Status(503));
    r.fake.fail_next(2, Failure::RateLimited { retry_after: Some("1".into()) });
    let a = r.fake.add_sms("+358401234567", "first");
    assert_eq!(r.webhook(a).0, 200);
    r.wait_marked(&[a]);
    let tokens_before = r.fake.tokens_issued();
    r.fake.expire_tokens();
    r.fake.fail_next(2, Failure::Status(502));
    let b = r.fake.add_sms("+358401234567", "second");
    assert_eq!(r.webhook(b).0, 200);
    let marks = r.wait_marked(&[b]);
    assert!(r.fake.tokens_issued() > tokens_before, "a new token was fetched after the old one expired");
    assert_eq!(marks_of(&marks, a), [Mark::Successful]);
    assert_eq!(marks_of(&marks, b), [Mark::Successful]);
    let statuses: Vec<u16> = r.fake.calls().iter().map(|c| c.status).collect();
    assert!(statuses.contains(&503) && statuses.contains(&429) && statuses.contains(&401), "{statuses:?}");
    assert_eq!(r.texts_to("+358401234567"), ["first", "second"]);
}

/// The daemon is still running and never panicked.
fn assert_alive(r: &mut Rig) {
    assert!(r.daemon.child.try_wait().unwrap().is_none(), "the daemon exited:\n{}", r.daemon.log());
    assert!(!r.daemon.log().contains("panicked"), "{}", r.daemon.log());
}

#[test]
fn a_retry_after_of_two_to_the_64_is_capped_and_later_work_is_still_sent() {
    // The first call (the poll at start) answers 429 with Retry-After 2^64-1.
    let mut r = rig(&[], true, 1, |fake| {
        fake.fail_next(1, Failure::RateLimited { retry_after: Some("18446744073709551615".into()) });
    });
    let hit = wait_for(LONG, || r.fake.calls().iter().any(|c| c.status == 429).then_some(()));
    assert!(hit.is_some(), "the poll got the 429: {:?}", r.fake.calls());
    let id = r.fake.add_sms("+358401234567", "after the storm");
    assert_eq!(r.webhook(id).0, 200);
    let marks = r.wait_marked(&[id]);
    assert_eq!(marks_of(&marks, id), [Mark::Successful]);
    assert_eq!(r.texts_to("+358401234567"), ["after the storm"]);
    assert_alive(&mut r);
}

#[test]
fn token_lifetimes_of_1e300_and_two_to_the_64_are_clamped_and_sending_goes_on() {
    let mut r = rig(&[], true, 0, |fake| fake.set_token_expires_in_json(Some(serde_json::json!(1e300))));
    let a = r.fake.add_sms("+358401234567", "one");
    assert_eq!(r.webhook(a).0, 200);
    r.wait_marked(&[a]);
    assert_alive(&mut r);

    // The next token says 2^64-1 seconds; the cached one is revoked so it must be fetched.
    r.fake.set_token_expires_in_json(Some(serde_json::json!(u64::MAX)));
    r.fake.expire_tokens();
    let before = r.fake.tokens_issued();
    let b = r.fake.add_sms("+358401234567", "two");
    assert_eq!(r.webhook(b).0, 200);
    let marks = r.wait_marked(&[b]);
    assert!(r.fake.tokens_issued() > before);
    assert_eq!(marks_of(&marks, b), [Mark::Successful]);
    assert_eq!(r.texts_to("+358401234567"), ["one", "two"]);
    assert_alive(&mut r);
}

#[test]
fn a_store_failure_after_the_modem_took_a_part_is_never_reported_as_sent() {
    let mut r = rig(&[], true, 0, |_| {});
    // The database refuses to record acknowledgements, as a full disk would.
    let admin = rusqlite::Connection::open(r.dir.path().join("smshub.db")).unwrap();
    admin
        .execute_batch(
            "CREATE TRIGGER refuse_ack BEFORE UPDATE OF state ON outbox_parts WHEN NEW.state = 'acked' \
             BEGIN SELECT RAISE(ABORT, 'disk full'); END;",
        )
        .unwrap();
    let id = r.fake.add_sms("+358401234567", "did it go?");
    assert_eq!(r.webhook(id).0, 200);
    let marks = r.wait_marked(&[id]);
    match marks_of(&marks, id).as_slice() {
        [Mark::Failed { reason: Some(reason), .. }] => {
            assert!(reason.contains("may or may not"), "{reason}")
        }
        other => panic!("a part whose ack was never recorded must not be reported sent: {other:?}"),
    }
    assert_eq!(r.texts_to("+358401234567"), ["did it go?"], "sent once, never resent blindly");
    let row = r.outbox().into_iter().find(|m| m["external_id"] == id).unwrap();
    assert_eq!(row["outcome"], "failed", "{row}");
    assert_alive(&mut r);
}

fn signed_form(ts: i64, hash_salt: &str, ids: &[i64]) -> String {
    let ts = ts.to_string();
    let mut body = format!("timestamp={ts}&verification={}", expected_hash(&ts, hash_salt));
    for id in ids {
        body.push_str(&format!("&id={id}"));
    }
    body
}

fn now_s() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

#[test]
fn reminders_from_the_button_are_sent_once_and_appointment_reminders_marked_sent() {
    let r = rig(&[], true, 0, |_| {});
    let appt = r.fake.add_appointment_reminder("+358403333333", "See you tomorrow at 10");
    let ext = r.fake.add_reminder("+358404444444", "Rex is due for his vaccination", 4);
    let form = Some("application/x-www-form-urlencoded");

    // A wrong salt and a stale timestamp are refused with the reason, and queue nothing.
    let (status, body) = http(
        &r.daemon.addr,
        "POST",
        "/provet/clinic/reminders",
        form,
        signed_form(now_s(), "wrong", &[appt]).as_bytes(),
    );
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("verification hash does not match"), "{body}");
    let stale = signed_form(now_s() - 13 * 3600, SALT, &[appt]);
    let (status, body) = http(&r.daemon.addr, "POST", "/provet/clinic/reminders", form, stale.as_bytes());
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("old"), "{body}");
    let (status, body) = http(
        &r.daemon.addr,
        "POST",
        "/provet/clinic/reminders?kind=sms",
        form,
        signed_form(now_s(), SALT, &[appt]).as_bytes(),
    );
    assert_eq!(status, 400, "{body}");
    // An unknown instance fails exactly like a wrong hash: instance names cannot be probed.
    let (status, unknown) =
        http(&r.daemon.addr, "POST", "/provet/nope/reminders", form, signed_form(now_s(), SALT, &[appt]).as_bytes());
    let (_, wrong) = http(
        &r.daemon.addr,
        "POST",
        "/provet/clinic/reminders",
        form,
        signed_form(now_s(), "wrong", &[appt]).as_bytes(),
    );
    assert_eq!((status, &unknown), (403, &wrong));
    // More than 500 reminders in one click: 413.
    let many: Vec<i64> = (1..=501).collect();
    let (status, body) =
        http(&r.daemon.addr, "POST", "/provet/clinic/reminders", form, signed_form(now_s(), SALT, &many).as_bytes());
    assert_eq!(status, 413, "{body}");
    assert!(r.outbox().is_empty(), "refused requests leave nothing in the store");

    let clicked = signed_form(now_s() - 1, SALT, &[appt]);
    let appt_path = "/provet/clinic/reminders?kind=appointment_reminder";
    let (status, body) = http(&r.daemon.addr, "POST", appt_path, form, clicked.as_bytes());
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["kind"], "appointment_reminder");
    assert_eq!(v["queued"], serde_json::json!([appt]));
    // Without `kind`, the ids are patient reminders (what the reminders page lists).
    let path = "/provet/clinic/reminders";
    // Provet buttons can also be set to GET: the same parameters in the query.
    let query = format!("{path}?{}", signed_form(now_s(), SALT, &[ext]));
    let (status, body) = http(&r.daemon.addr, "GET", &query, None, b"");
    assert_eq!(status, 200, "{body}");
    // The same request again (captured and replayed) is refused and queues nothing.
    let (status, body) = http(&r.daemon.addr, "POST", appt_path, form, clicked.as_bytes());
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("already accepted"), "{body}");

    let marks = r.wait_marked(&[appt]);
    assert_eq!(marks_of(&marks, appt), [Mark::ExternalSending, Mark::Sent], "mark_external_sending before the send");
    let done = wait_for(LONG, || (r.texts_to("+358404444444").len() == 1).then_some(()));
    assert!(done.is_some(), "the send_method-4 reminder was sent: {:?}\n{}", r.sim.sent(), r.daemon.log());
    assert_eq!(r.texts_to("+358403333333"), ["See you tomorrow at 10"]);
    assert_eq!(r.texts_to("+358404444444"), ["Rex is due for his vaccination"]);

    // A second click on the same reminders (a new request) sends nothing again.
    let (status, body) = http(&r.daemon.addr, "POST", path, form, signed_form(now_s() + 1, SALT, &[ext]).as_bytes());
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"new\":[]"), "{body}");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(r.sim.sent().len(), 2);
    let rows = r.outbox();
    assert!(rows.iter().all(|m| m["state"] == "reported"), "{rows:?}");
}

/// Waits until the outbox row of `external_id` is `reported` and returns it.
fn wait_reported(r: &Rig, external_id: i64) -> serde_json::Value {
    wait_for(LONG, || r.outbox().into_iter().find(|m| m["external_id"] == external_id && m["state"] == "reported"))
        .unwrap_or_else(|| panic!("row {external_id} not reported: {:?}\n{}", r.outbox(), r.daemon.log()))
}

#[test]
fn a_button_press_with_three_patient_reminders_sends_the_two_that_have_a_text() {
    let r = rig(&[], true, 0, |_| {});
    let clinic = r.fake.add_department("Kamu Vet");
    let helmut = r.fake.add_client("Helmut", "Eldridge", false, &[("+358401111111", false)]);
    let anna = r.fake.add_client("Anna", "Virtanen", false, &[("+358402222221", false), ("+358402222222", true)]);
    let rex = r.fake.add_patient("Rex");
    let tpl = r.fake.add_template("Hi [[client_name]], [[patient_name]] is due for a vaccination. [[clinic_name]]");
    // 1: the public fixture's case: empty sms_text, no template. Nothing to send.
    let empty = r
        .fake
        .add_reminder_with(serde_json::json!({"client": helmut, "patient": rex, "phone_number": "+358401111111"}));
    // 2: text from the template, number on the reminder.
    let templated = r.fake.add_reminder_with(serde_json::json!({"reminder_template": tpl, "text_manually": false,
        "client": helmut, "patient": rex, "department": clinic, "phone_number": "+358401111111"}));
    // 3: own text, `phone_number: ""`: the client's preferred number.
    let preferred = r.fake.add_reminder_with(serde_json::json!({"sms_text": "Bella is due for deworming.",
        "client": anna, "phone_number": ""}));
    let form = Some("application/x-www-form-urlencoded");
    let body = signed_form(now_s(), SALT, &[empty, templated, preferred]);
    let (status, answer) = http(&r.daemon.addr, "POST", "/provet/clinic/reminders", form, body.as_bytes());
    assert_eq!(status, 200, "{answer}");
    assert!(answer.contains("\"kind\":\"reminder\""), "{answer}");
    for id in [empty, templated, preferred] {
        wait_reported(&r, id);
    }
    assert_eq!(r.texts_to("+358401111111"), ["Hi Helmut Eldridge, Rex is due for a vaccination. Kamu Vet"]);
    assert_eq!(r.texts_to("+358402222222"), ["Bella is due for deworming."]);
    assert_eq!(r.sim.sent().len(), 2, "the empty reminder reached no modem: {:?}", r.sim.sent());
    let row = r.outbox().into_iter().find(|m| m["external_id"] == empty).unwrap();
    assert_eq!(row["outcome"], "failed", "{row}");
    let shown = stdout(&r.dir.smshub(&r.cfg, &["outbox", "show", &row["id"].to_string()]));
    assert!(shown.contains("sms_text is empty and it has no reminder template"), "{shown}");
    assert!(r.fake.calls().iter().all(|c| !c.path.contains("appointment_reminder")), "no appointment reminder touched");
}

#[test]
fn a_due_reminder_found_by_the_poll_is_sent_once_across_a_restart() {
    let mut r = rig_with(&[], false, 0, "reminder_poll_s = 1\n", |fake| {
        fake.add_reminder("+358404444444", "Rex is due for his vaccination", 4);
        fake.add_reminder_with(serde_json::json!({"sms_text": "long ago", "phone_number": "+358405555555",
            "planned_sending_date": "2001-01-01"}));
        fake.add_reminder("+358406666666", "Provet sends this one itself", 1);
    });
    r.sim.wait_sent(LONG, |s| !s.is_empty());
    let lists = || r.fake.calls().iter().filter(|c| c.path.contains("reminder/?send_method__is=4")).count();
    r.daemon.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(r.daemon.wait_exit(LONG).is_some(), "{}", r.daemon.log());
    let before = lists();
    r.daemon = Daemon::start(&r.cfg);
    assert!(wait_for(LONG, || (lists() >= before + 3).then_some(())).is_some(), "{}", r.daemon.log());
    assert_eq!(r.texts_to("+358404444444"), ["Rex is due for his vaccination"]);
    assert_eq!(r.sim.sent().len(), 1, "{:?}", r.sim.sent());
    let calls = r.fake.calls();
    let list = calls.iter().find(|c| c.path.contains("reminder/?")).unwrap();
    assert!(list.path.contains("planned_sending_date__lte="), "{}", list.path);
    assert!(calls.iter().all(|c| c.status != 400), "every filter was accepted: {calls:?}");
}

#[test]
fn an_old_external_sms_after_an_outage_is_marked_failed_too_old_and_never_sent() {
    let r = rig(&[], true, 1, |fake| {
        fake.add_sms_created("+358401234567", "Your appointment is tomorrow", "2020-01-01");
    });
    let fresh = r.fake.add_sms("+358401234568", "Fresh news");
    let marks = r.wait_marked(&[1, fresh]);
    match marks_of(&marks, 1).as_slice() {
        [Mark::Failed { reason: Some(reason), .. }] => {
            assert_eq!(reason, "too old to send (queued 2020-01-01, smshub was offline)")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(marks_of(&marks, fresh), [Mark::Successful]);
    let sent = r.sim.sent();
    assert!(sent.iter().all(|p| p["to"] != "+358401234567"), "the old SMS never reached the modem: {sent:?}");
    let row = r.outbox().into_iter().find(|m| m["external_id"] == 1).unwrap();
    let shown = stdout(&r.dir.smshub(&r.cfg, &["outbox", "show", &row["id"].to_string()]));
    assert!(shown.contains("too old to send (queued 2020-01-01"), "{shown}");
}
