//! `smshub store purge`: retention of texts and numbers, over the real binary.

mod common;
use common::*;

fn json(dir: &TestDir, cfg: &std::path::Path, args: &[&str]) -> serde_json::Value {
    let out = dir.smshub(cfg, args);
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    serde_json::from_str(&stdout(&out)).unwrap()
}

#[test]
fn purge_dry_run_counts_and_purge_erases_old_texts_and_numbers_only() {
    let dir = TestDir::new();
    let cfg = dir.config("");
    let old = json(&dir, &cfg, &["send", "--to", "+358401234567", "--text", "old and private", "--json"])["id"]
        .as_i64()
        .unwrap();
    let new = json(&dir, &cfg, &["send", "--to", "+358401234567", "--text", "new", "--json"])["id"].as_i64().unwrap();
    let long_ago = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
        - 91 * 86_400_000;
    {
        let db = rusqlite::Connection::open(dir.path().join("smshub.db")).unwrap();
        db.execute(
            "UPDATE outbox SET state = 'failed', outcome = 'failed', updated_at = ?1 WHERE id = ?2",
            rusqlite::params![long_ago, old],
        )
        .unwrap();
        db.execute("UPDATE outbox SET state = 'failed', outcome = 'failed' WHERE id = ?1", [new]).unwrap();
        db.execute(
            "INSERT INTO inbox (uid, modem, sender, body, received_at) VALUES ('u1', 'm', '+358409999999', 'hi vet', ?1)",
            [long_ago],
        )
        .unwrap();
    }
    let dry = json(&dir, &cfg, &["store", "purge", "--dry-run", "--json"]);
    assert_eq!(dry["counts"]["outbox_erased"], 1, "{dry}");
    assert_eq!(dry["counts"]["inbox_erased"], 1, "{dry}");
    assert_eq!(json(&dir, &cfg, &["outbox", "show", &old.to_string(), "--json"])["body"], "old and private");

    let out = dir.smshub(&cfg, &["store", "purge"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("1 outbox messages were erased"), "{}", stdout(&out));
    let shown = json(&dir, &cfg, &["outbox", "show", &old.to_string(), "--json"]);
    assert_eq!(shown["body"], serde_json::Value::Null, "{shown}");
    assert_eq!(shown["recipient"], serde_json::Value::Null, "{shown}");
    assert_eq!(shown["state"], "failed", "the row and its outcome stay");
    assert_eq!(json(&dir, &cfg, &["outbox", "show", &new.to_string(), "--json"])["body"], "new");
    let inbox = json(&dir, &cfg, &["inbox", "list", "--json"]);
    assert_eq!(inbox[0]["sender"], serde_json::Value::Null, "{inbox}");
    let again = json(&dir, &cfg, &["store", "purge", "--dry-run", "--json"]);
    assert_eq!(again["counts"]["outbox_erased"], 0);
}
