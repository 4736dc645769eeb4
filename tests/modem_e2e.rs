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
