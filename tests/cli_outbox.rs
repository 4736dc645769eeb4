//! `send` queues into the outbox and `outbox`/`inbox` show it, through the real binary.

mod common;
use common::*;

#[test]
fn send_queues_a_message_that_outbox_list_and_show_display() {
    let dir = TestDir::new();
    let cfg = dir.config("default_country = \"358\"\n");
    let out = dir.smshub(&cfg, &["send", "--to", "040 123 4567", "--text", "Your pet is ready", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["to"], "+358401234567");
    let id = v["id"].as_i64().unwrap();

    let out = dir.smshub(&cfg, &["outbox", "list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let table = stdout(&out);
    assert!(table.starts_with("ID"), "{table}");
    assert!(table.contains("+35840****567"), "numbers are masked in the table: {table}");
    assert!(table.contains("fetched"), "{table}");

    let out = dir.smshub(&cfg, &["outbox", "list", "--json"]);
    let rows: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 1);
    assert_eq!(rows[0]["id"], id);
    assert_eq!(rows[0]["state"], "fetched");

    let out = dir.smshub(&cfg, &["outbox", "show", &id.to_string(), "--json"]);
    let detail: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(detail["body"], "Your pet is ready");
    assert_eq!(detail["recipient"], "+358401234567");
}

#[test]
fn a_bad_number_is_refused_with_exit_2_and_nothing_is_queued() {
    let dir = TestDir::new();
    let cfg = dir.config("");
    let out = dir.smshub(&cfg, &["send", "--to", "040 123 4567", "--text", "hi"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--to: phone number \"040 123 4567\" is national"), "{}", stderr(&out));
    let out = dir.smshub(&cfg, &["send", "--to", "+358abc", "--text", "hi"]);
    assert_eq!(out.status.code(), Some(2));
    let out = dir.smshub(&cfg, &["outbox", "list", "--json"]);
    assert_eq!(stdout(&out).trim(), "[]");
}

#[test]
fn cancel_and_retry_follow_the_state_machine() {
    let dir = TestDir::new();
    let cfg = dir.config("");
    let out = dir.smshub(&cfg, &["send", "--to", "+358401234567", "--text", "x", "--json"]);
    let id = serde_json::from_str::<serde_json::Value>(&stdout(&out)).unwrap()["id"].as_i64().unwrap().to_string();

    let out = dir.smshub(&cfg, &["outbox", "retry", &id]);
    assert_eq!(out.status.code(), Some(2), "a queued message cannot be retried");
    assert!(stderr(&out).contains("is fetched; it cannot become fetched"), "{}", stderr(&out));

    let out = dir.smshub(&cfg, &["outbox", "cancel", &id, "--reason", "wrong client"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = dir.smshub(&cfg, &["outbox", "list", "--state", "failed", "--json"]);
    let rows: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(rows[0]["fail_reason"], "wrong client");

    let out = dir.smshub(&cfg, &["outbox", "retry", &id]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = dir.smshub(&cfg, &["outbox", "show", "999"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("outbox message 999 not found"));
    let out = dir.smshub(&cfg, &["outbox", "list", "--state", "bogus"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn inbox_list_is_empty_on_a_new_database() {
    let dir = TestDir::new();
    let cfg = dir.config("");
    let out = dir.smshub(&cfg, &["inbox", "list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "(none)");
}
