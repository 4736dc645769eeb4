//! The Provet webhook over real HTTP: the id is committed before the 200, repeats are no-ops,
//! and a wrong token, a bad body or an oversized body leave nothing in the store.

mod common;
use common::*;

const TOKEN: &str = "0123456789abcdef0123";

fn setup(dir: &TestDir) -> (std::path::PathBuf, Daemon) {
    let text = format!(
        "[store]\npath = \"{}\"\n[http]\nlisten = \"127.0.0.1:0\"\nmax_body_bytes = 1024\n[admin]\nlisten = \"127.0.0.1:0\"\n\n[[provet]]\nname = \"hki\"\nbase_url = \"http://127.0.0.1:9/1/api/0.1/\"\nallow_insecure_http = true\nclient_id = \"id\"\nclient_secret = \"s\"\nwebhook_token = \"{TOKEN}\"\npoll_interval_s = 0\nretry_initial_s = 600\n",
        dir.path().join("smshub.db").display()
    );
    let cfg = dir.write("smshub.toml", &text, 0o600);
    let d = Daemon::start(&cfg);
    (cfg, d)
}

fn rows(dir: &TestDir, cfg: &std::path::Path) -> Vec<serde_json::Value> {
    let out = dir.smshub(cfg, &["outbox", "list", "--json"]);
    serde_json::from_str::<serde_json::Value>(&stdout(&out)).unwrap().as_array().cloned().unwrap()
}

#[test]
fn a_webhook_is_stored_before_the_200_and_a_repeat_is_a_no_op() {
    let dir = TestDir::new();
    let (cfg, d) = setup(&dir);
    let path = format!("/provet/hki/webhook/{TOKEN}");
    let (status, body) = http(&d.addr, "POST", &path, Some("application/json"), br#"{"external_sms_id": 123}"#);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"new\":true"), "{body}");
    // The 200 means it is durable: the CLI (another process) sees it at once.
    let r = rows(&dir, &cfg);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0]["external_id"], 123);
    assert_eq!(r[0]["instance"], "hki");

    let (status, body) =
        http(&d.addr, "POST", &path, Some("application/x-www-form-urlencoded"), b"external_sms_id=123");
    assert_eq!(status, 200);
    assert!(body.contains("\"new\":false"), "{body}");
    assert_eq!(rows(&dir, &cfg).len(), 1);
}

#[test]
fn wrong_tokens_bad_bodies_and_big_bodies_leave_nothing() {
    let dir = TestDir::new();
    let (cfg, d) = setup(&dir);
    let good = format!("/provet/hki/webhook/{TOKEN}");
    let cases: Vec<(String, Option<&str>, Vec<u8>, u16)> = vec![
        (
            "/provet/hki/webhook/wrong-token-0000000".into(),
            Some("application/json"),
            br#"{"external_sms_id": 1}"#.to_vec(),
            404,
        ),
        (
            format!("/provet/other/webhook/{TOKEN}"),
            Some("application/json"),
            br#"{"external_sms_id": 1}"#.to_vec(),
            404,
        ),
        (good.clone(), Some("application/json"), b"{not json".to_vec(), 400),
        (good.clone(), Some("application/json"), br#"{"external_sms_id": "x"}"#.to_vec(), 400),
        (good.clone(), Some("application/x-www-form-urlencoded"), b"nothing=here".to_vec(), 400),
        (good.clone(), None, b"".to_vec(), 400),
        (
            good.clone(),
            Some("application/json"),
            format!(r#"{{"external_sms_id": 1, "pad": "{}"}}"#, "x".repeat(2000)).into_bytes(),
            413,
        ),
    ];
    for (path, ct, body, expected) in cases {
        let (status, text) = http(&d.addr, "POST", &path, ct, &body);
        assert_eq!(status, expected, "{path} {:?}: {text}", String::from_utf8_lossy(&body[..body.len().min(60)]));
    }
    let (status, _) = http(&d.addr, "GET", &good, None, b"");
    assert_eq!(status, 405);
    assert!(rows(&dir, &cfg).is_empty(), "nothing stored");
}
