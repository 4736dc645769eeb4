//! The daemon answers /healthz over real HTTP and exits 0 on SIGTERM.

mod common;
use common::*;
use std::time::Duration;

#[test]
fn healthz_answers_and_sigterm_exits_cleanly() {
    let dir = TestDir::new();
    let cfg = dir.config("");
    let mut d = Daemon::start(&cfg);
    let (status, body) = http(&d.addr, "GET", "/healthz", None, b"");
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["healthy"], true);

    let (status, _) = http(&d.addr, "GET", "/nope", None, b"");
    assert_eq!(status, 404);
    let (status, _) = http(&d.addr, "POST", "/healthz", None, b"");
    assert_eq!(status, 405);
    assert_eq!(
        v.as_object().map(|o| o.len()),
        Some(1),
        "the public /healthz says healthy or not, nothing more: {body}"
    );
    // /status is for people and programs of the clinic: a token from the CLI.
    assert_eq!(http(&d.admin, "GET", "/status", None, b"").0, 401, "/status needs a session or a token");
    let created = dir.smshub(&cfg, &["token", "create", "lifecycle"]);
    assert_eq!(created.status.code(), Some(0), "{}", stderr(&created));
    let token = stdout(&created).lines().last().unwrap().to_string();
    let reply = http_with(&d.admin, "GET", "/status", &[("Authorization", &format!("Bearer {token}"))], b"");
    assert_eq!(reply.status, 200);
    assert!(reply.body.contains("\"version\""), "{}", reply.body);
    // Each surface answers only its own routes.
    assert_eq!(http(&d.addr, "GET", "/status", None, b"").0, 404, "/status is not public");
    assert_eq!(http(&d.admin, "GET", "/healthz", None, b"").0, 404, "public routes are not on the admin listener");
    assert_eq!(http(&d.admin, "POST", "/provet/x/webhook/y", None, b"").0, 404);

    d.signal(nix::sys::signal::Signal::SIGTERM);
    let exit = d.wait_exit(Duration::from_secs(30)).expect("the daemon must stop within 30 s");
    assert_eq!(exit.code(), Some(0), "log:\n{}", d.log());
    assert!(d.log().contains("stopped"), "{}", d.log());
}

#[test]
fn sigint_also_stops_the_daemon_with_code_0() {
    let dir = TestDir::new();
    let cfg = dir.config("");
    let mut d = Daemon::start(&cfg);
    d.signal(nix::sys::signal::Signal::SIGINT);
    let exit = d.wait_exit(Duration::from_secs(30)).expect("stops");
    assert_eq!(exit.code(), Some(0));
}

#[test]
fn a_port_in_use_is_a_clear_start_error() {
    let dir = TestDir::new();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let cfg = dir.write(
        "c.toml",
        &format!(
            "[store]\npath = \"{}\"\n[http]\nlisten = \"127.0.0.1:{port}\"\n[admin]\nlisten = \"127.0.0.1:0\"\n",
            dir.path().join("db").display()
        ),
        0o600,
    );
    let out = dir.smshub(&cfg, &["run"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains(&format!("cannot listen on 127.0.0.1:{port} (http.listen in")), "{}", stderr(&out));
}

/// `/status` from the admin listener with a fresh token (`smshub token create`).
fn admin_status(dir: &TestDir, cfg: &std::path::Path, d: &Daemon) -> String {
    let name = format!("t{}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos());
    let created = dir.smshub(cfg, &["token", "create", &name]);
    assert!(created.status.success(), "{}", stderr(&created));
    let token = stdout(&created).lines().last().unwrap().to_string();
    let reply = http_with(&d.admin, "GET", "/status", &[("Authorization", &format!("Bearer {token}"))], b"");
    assert_eq!(reply.status, 200, "{reply:?}");
    reply.body
}

fn wait_health(d: &Daemon, healthy: bool) -> String {
    wait_for(Duration::from_secs(30), || {
        let (status, body) = http(&d.addr, "GET", "/healthz", None, b"");
        (status == if healthy { 200 } else { 503 }).then_some(body)
    })
    .unwrap_or_else(|| panic!("/healthz never became {}: {}", if healthy { 200 } else { 503 }, d.log()))
}

#[test]
fn healthz_is_503_with_the_reason_while_the_database_refuses_writes() {
    let dir = TestDir::new();
    let cfg = dir.config("");
    let d = Daemon::start(&cfg);
    wait_health(&d, true);
    // Reads still work; writes fail, as on a full disk.
    let admin = rusqlite::Connection::open(dir.path().join("smshub.db")).unwrap();
    admin
        .execute_batch(
            "CREATE TRIGGER full_i BEFORE INSERT ON kv BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END;\
             CREATE TRIGGER full_u BEFORE UPDATE ON kv BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END;",
        )
        .unwrap();
    let body = wait_health(&d, false);
    assert_eq!(body.trim(), r#"{"healthy":false}"#, "the public /healthz says no more than that");
    let status = admin_status(&dir, &cfg, &d);
    assert!(status.contains("store: cannot write the database") && status.contains("disk is full"), "{status}");
    admin.execute_batch("DROP TRIGGER full_i; DROP TRIGGER full_u;").unwrap();
    wait_health(&d, true);
}

#[test]
fn healthz_doctor_and_status_report_too_little_free_space() {
    let dir = TestDir::new();
    let cfg = dir.write(
        "c.toml",
        &format!(
            "[store]\npath = \"{}\"\nmin_free_mb = 1000000000\n[http]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n",
            dir.path().join("db").display()
        ),
        0o600,
    );
    let d = Daemon::start(&cfg);
    wait_health(&d, false);
    let status = admin_status(&dir, &cfg, &d);
    let v: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(v["disk"]["min_free_mb"], 1_000_000_000u64, "{v}");
    assert!(v["disk"]["free_mb"].is_u64(), "{v}");
    assert!(v["health"]["problems"].to_string().contains("below [store] min_free_mb"), "{v}");
    let out = dir.smshub(&cfg, &["doctor", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let check = v["checks"].as_array().or(v.as_array()).unwrap().iter().find(|c| c["name"] == "free space").cloned();
    let check = check.unwrap_or_else(|| panic!("{v}"));
    assert_eq!(check["ok"], false, "{check}");
    assert!(check["detail"].as_str().unwrap().contains("below [store] min_free_mb"), "{check}");
}
