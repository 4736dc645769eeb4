//! The real daemon against the real simulator over a pty: messages go out, come in, and
//! faults end in the right state with nothing lost.

mod common;
use common::*;
use std::time::Duration;

fn modem_config(dir: &TestDir, sim: &Sim, extra: &str) -> std::path::PathBuf {
    dir.config(&format!(
        "{extra}\n[[modem]]\nname = \"sim\"\ndevice = \"{}\"\nsend_timeout_s = 20\n\n[outbound]\nretry_initial_s = 1\nretry_max_s = 2\n",
        sim.link.display()
    ))
}

fn outbox(dir: &TestDir, cfg: &std::path::Path) -> Vec<serde_json::Value> {
    let out = dir.smshub(cfg, &["outbox", "list", "--json"]);
    serde_json::from_str::<serde_json::Value>(&stdout(&out)).unwrap().as_array().cloned().unwrap()
}

fn wait_state(dir: &TestDir, cfg: &std::path::Path, id: i64, state: &str) -> serde_json::Value {
    wait_for(Duration::from_secs(60), || outbox(dir, cfg).into_iter().find(|m| m["id"] == id && m["state"] == state))
        .unwrap_or_else(|| panic!("message {id} never reached {state}: {:?}", outbox(dir, cfg)))
}

fn send(dir: &TestDir, cfg: &std::path::Path, to: &str, text: &str) -> i64 {
    let out = dir.smshub(cfg, &["send", "--to", to, "--text", text, "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_str::<serde_json::Value>(&stdout(&out)).unwrap()["id"].as_i64().unwrap()
}

#[test]
fn a_queued_sms_reaches_the_simulator_with_its_text_and_number() {
    let dir = TestDir::new();
    let sim = Sim::start(dir.path(), &[]);
    let cfg = modem_config(&dir, &sim, "");
    let _d = Daemon::start(&cfg);
    let id = send(&dir, &cfg, "+358401234567", "Rex is ready for pickup");
    wait_state(&dir, &cfg, id, "sent");
    let sent = sim.sent();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["to"], "+358401234567");
    assert_eq!(sent[0]["text"], "Rex is ready for pickup");
    assert_eq!(sent[0]["encoding"], "gsm7");
}

#[test]
fn long_unicode_text_is_sent_as_joined_parts_with_one_reference() {
    let dir = TestDir::new();
    let sim = Sim::start(dir.path(), &[]);
    let cfg = modem_config(&dir, &sim, "");
    let _d = Daemon::start(&cfg);
    let text = "Hyvää päivää 🐕! ".repeat(10); // UCS-2 (emoji), more than 70 units
    let id = send(&dir, &cfg, "+358401234567", &text);
    wait_state(&dir, &cfg, id, "sent");
    let sent = sim.sent();
    assert!(sent.len() >= 3, "{sent:?}");
    let reference = &sent[0]["concat"]["ref"];
    let mut joined = String::new();
    for (i, p) in sent.iter().enumerate() {
        assert_eq!(p["encoding"], "ucs2");
        assert_eq!(&p["concat"]["ref"], reference);
        assert_eq!(p["concat"]["seq"], i as u64 + 1);
        joined.push_str(p["text"].as_str().unwrap());
    }
    assert_eq!(joined, text);
}

#[test]
fn a_permanent_cms_error_fails_the_message_with_the_part_number() {
    let dir = TestDir::new();
    let sim = Sim::start(dir.path(), &["--cms-error", "21", "--cms-error-on-send", "1"]);
    let cfg = modem_config(&dir, &sim, "");
    let _d = Daemon::start(&cfg);
    let id = send(&dir, &cfg, "+358401234567", "x");
    let m = wait_state(&dir, &cfg, id, "failed");
    let reason = m["fail_reason"].as_str().unwrap();
    assert!(reason.contains("part 1 of 1") && reason.contains("+CMS ERROR: 21"), "{reason}");
}

#[test]
fn a_transient_cms_error_is_retried_and_then_sent_without_resending_acked_parts() {
    let dir = TestDir::new();
    // The second +CMGS (part 2 of 3) fails with 42 (congestion): transient.
    let sim = Sim::start(dir.path(), &["--cms-error", "42", "--cms-error-on-send", "2"]);
    let cfg = modem_config(&dir, &sim, "");
    let _d = Daemon::start(&cfg);
    let text = "A".repeat(153 * 2 + 20); // three GSM-7 parts
    let id = send(&dir, &cfg, "+358401234567", &text);
    wait_state(&dir, &cfg, id, "sent");
    let sent = sim.sent();
    let seqs: Vec<u64> = sent.iter().map(|p| p["concat"]["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, [1, 2, 3], "part 1 was acked and never sent again: {sent:?}");
    let reference = &sent[0]["concat"]["ref"];
    assert!(sent.iter().all(|p| &p["concat"]["ref"] == reference), "same reference after the retry");
}

#[test]
fn received_sms_are_stored_joined_and_deleted_from_the_modem() {
    let dir = TestDir::new();
    let sim = Sim::start(dir.path(), &[]);
    let cfg = modem_config(&dir, &sim, "");
    let _d = Daemon::start(&cfg);
    let long = "Thank you for the reminder, we will come on Tuesday at 10. ".repeat(9); // 531 GSM-7 characters: four parts
    let r =
        sim.request(serde_json::json!({"cmd": "inject", "from": "+358409876543", "text": long, "order": [3, 1, 4, 2]}));
    assert_eq!(r["ok"], true, "{r}");
    let r = sim.request(serde_json::json!({"cmd": "inject", "from": "ExampleVet", "text": "Hei 🐈"}));
    assert_eq!(r["ok"], true, "{r}");
    let rows = wait_for(Duration::from_secs(60), || {
        let out = dir.smshub(&cfg, &["inbox", "list", "--json"]);
        let v: serde_json::Value = serde_json::from_str(&stdout(&out)).ok()?;
        (v.as_array()?.len() == 2).then_some(v)
    })
    .expect("both messages stored");
    let ids: Vec<i64> = rows.as_array().unwrap().iter().map(|r| r["id"].as_i64().unwrap()).collect();
    let bodies: Vec<String> = ids
        .iter()
        .map(|id| {
            let out = dir.smshub(&cfg, &["inbox", "show", &id.to_string(), "--json"]);
            serde_json::from_str::<serde_json::Value>(&stdout(&out)).unwrap()["body"].as_str().unwrap().to_string()
        })
        .collect();
    assert!(bodies.contains(&long), "{bodies:?}");
    assert!(bodies.contains(&"Hei 🐈".to_string()), "{bodies:?}");
    let storage = wait_for(Duration::from_secs(20), || {
        let s = sim.request(serde_json::json!({"cmd": "storage"}));
        (s["used"] == 0).then_some(s)
    });
    assert!(storage.is_some(), "messages are deleted from the SIM once stored");
}

#[test]
fn a_pdu_too_broken_to_read_its_type_is_kept_raw_and_removed_from_the_sim() {
    let dir = TestDir::new();
    let sim = Sim::start(dir.path(), &[]);
    let cfg = modem_config(&dir, &sim, "");
    let _d = Daemon::start(&cfg);
    let r = sim.request(serde_json::json!({"cmd": "inject_pdu", "pdu": "0791FFFF00"}));
    assert_eq!(r["ok"], true, "{r}");
    let row = wait_for(Duration::from_secs(60), || {
        let out = dir.smshub(&cfg, &["inbox", "list", "--json"]);
        let v: serde_json::Value = serde_json::from_str(&stdout(&out)).ok()?;
        v.as_array()?.first().cloned()
    })
    .expect("the broken PDU is stored");
    assert!(row["decode_error"].as_str().is_some_and(|e| !e.is_empty()), "{row}");
    let emptied = wait_for(Duration::from_secs(20), || {
        let s = sim.request(serde_json::json!({"cmd": "storage"}));
        (s["used"] == 0).then_some(())
    });
    assert!(emptied.is_some(), "deleted from the SIM once stored");
}

/// The parts of an outbox message (`outbox show --json`).
fn parts(dir: &TestDir, cfg: &std::path::Path, id: i64) -> Vec<serde_json::Value> {
    let out = dir.smshub(cfg, &["outbox", "show", &id.to_string(), "--json"]);
    serde_json::from_str::<serde_json::Value>(&stdout(&out)).unwrap()["part_rows"].as_array().cloned().unwrap()
}

/// Waits until every part of message `id` has a status report recorded; returns the parts.
fn wait_reported(dir: &TestDir, cfg: &std::path::Path, id: i64) -> Vec<serde_json::Value> {
    wait_for(Duration::from_secs(60), || {
        let p = parts(dir, cfg, id);
        (!p.is_empty() && p.iter().all(|p| !p["delivery_status"].is_null())).then_some(p)
    })
    .unwrap_or_else(|| panic!("no status report recorded for message {id}: {:?}", parts(dir, cfg, id)))
}

/// How often the simulator counted `key` (a command such as `AT+CMGR=`, or an event such as
/// `(report acknowledged)`).
fn sim_count(sim: &Sim, key: &str) -> u64 {
    sim.request(serde_json::json!({"cmd": "stats"}))["commands"][key].as_u64().unwrap_or(0)
}

/// Waits until the simulator counted `key` at least `n` times; returns the count.
fn wait_sim_count(sim: &Sim, key: &str, n: u64) -> u64 {
    wait_for(Duration::from_secs(60), || Some(sim_count(sim, key)).filter(|c| *c >= n))
        .unwrap_or_else(|| panic!("the simulator counted {key} {} times, not {n}", sim_count(sim, key)))
}

#[test]
fn a_status_report_comes_as_cds_is_recorded_and_acknowledged_once() {
    let dir = TestDir::new();
    let sim = Sim::start(dir.path(), &["--report-delay-ms", "200"]);
    let cfg = modem_config(&dir, &sim, "");
    let d = Daemon::start(&cfg);
    let id = send(&dir, &cfg, "+358401234567", "Rex is ready for pickup");
    let p = wait_reported(&dir, &cfg, id);
    assert_eq!(p[0]["delivery_status"], 0, "{p:?}");
    assert_eq!(wait_sim_count(&sim, "(report acknowledged)", 1), 1);
    // A second message: its send may carry the first ack, or the ack goes alone; either way the
    // count of acks equals the count of reports, and none was unexpected.
    let id2 = send(&dir, &cfg, "+358401234568", "Mirri is ready too");
    wait_reported(&dir, &cfg, id2);
    assert_eq!(wait_sim_count(&sim, "(report acknowledged)", 2), 2);
    // Quiet for longer than the ack hold: still exactly one ack per report.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(sim_count(&sim, "(report acknowledged)"), 2);
    assert_eq!(sim_count(&sim, "(unexpected +CNMA)"), 0);
    assert_eq!(sim_count(&sim, "(report resent)"), 0);
    assert_eq!(sim_count(&sim, "AT+CMGR="), 0, "no report was read from storage");
    assert_eq!(sim_count(&sim, "AT+CSMS="), 1);
    assert!(d.log().contains("status reports come directly"), "{}", d.log());
}

#[test]
fn a_report_whose_ack_was_lost_is_delivered_again_recorded_once_and_acknowledged_twice() {
    let dir = TestDir::new();
    // The network's wait (5 s) is well above the driver's ack hold (1 s), as on a real network
    // (12 to 20 s), so only the lost ack causes the redelivery.
    let sim = Sim::start(dir.path(), &["--report-delay-ms", "200", "--cds-ack-timeout-ms", "5000"]);
    assert_eq!(sim.request(serde_json::json!({"cmd": "set", "lose_acks": 1}))["ok"], true);
    let cfg = modem_config(&dir, &sim, "");
    let d = Daemon::start(&cfg);
    let id = send(&dir, &cfg, "+358401234567", "Your pet's vaccination is due");
    let first = wait_reported(&dir, &cfg, id);
    wait_sim_count(&sim, "(ack lost)", 1);
    // The network delivers the same report again; it is acknowledged again.
    assert_eq!(wait_sim_count(&sim, "(report acknowledged)", 2), 2);
    let again = parts(&dir, &cfg, id);
    assert_eq!(again[0]["delivery_status"], first[0]["delivery_status"]);
    assert_eq!(again[0]["delivered_at"], first[0]["delivered_at"], "the repeat changed nothing");
    assert_eq!(sim_count(&sim, "(unexpected +CNMA)"), 0, "{}", d.log());
}

#[test]
fn a_modem_that_refuses_csms1_keeps_reports_in_storage_and_they_are_still_recorded() {
    let dir = TestDir::new();
    // A modem that refuses AT+CSMS=1 at the daemon's init: reports go to storage (the fallback).
    let sim = Sim::start(dir.path(), &["--report-delay-ms", "200", "--no-csms1"]);
    let cfg = modem_config(&dir, &sim, "");
    let d = Daemon::start(&cfg);
    let id = send(&dir, &cfg, "+358401234567", "See you on Tuesday");
    let p = wait_reported(&dir, &cfg, id);
    assert_eq!(p[0]["delivery_status"], 0);
    assert!(sim_count(&sim, "AT+CMGR=") >= 1, "read from storage");
    let emptied = wait_for(Duration::from_secs(20), || {
        (sim.request(serde_json::json!({"cmd": "storage"}))["used"] == 0).then_some(())
    });
    assert!(emptied.is_some(), "the stored report is deleted once recorded");
    assert_eq!(sim_count(&sim, "AT+CNMA"), 0);
    assert_eq!(sim_count(&sim, "(report acknowledged)"), 0);
    assert_eq!(sim_count(&sim, "AT+CNMI="), 1);
    assert!(d.log().contains("AT+CSMS=1 refused"), "{}", d.log());
}
