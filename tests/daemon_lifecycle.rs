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
    let (status, body) = http(&d.addr, "GET", "/status", None, b"");
    assert_eq!(status, 200);
    assert!(body.contains("\"version\""), "{body}");

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
        &format!("[store]\npath = \"{}\"\n[http]\nlisten = \"127.0.0.1:{port}\"\n", dir.path().join("db").display()),
        0o600,
    );
    let out = dir.smshub(&cfg, &["run"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains(&format!("cannot listen on 127.0.0.1:{port} (http.listen in")), "{}", stderr(&out));
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
    assert!(body.contains("store: cannot write the database") && body.contains("disk is full"), "{body}");
    let (_, status) = http(&d.addr, "GET", "/status", None, b"");
    assert!(status.contains("cannot write the database"), "/status tells the reason: {status}");
    admin.execute_batch("DROP TRIGGER full_i; DROP TRIGGER full_u;").unwrap();
    wait_health(&d, true);
}

#[test]
fn healthz_doctor_and_status_report_too_little_free_space() {
    let dir = TestDir::new();
    let cfg = dir.write(
        "c.toml",
        &format!(
            "[store]\npath = \"{}\"\nmin_free_mb = 1000000000\n[http]\nlisten = \"127.0.0.1:0\"\n",
            dir.path().join("db").display()
        ),
        0o600,
    );
    let d = Daemon::start(&cfg);
    let body = wait_health(&d, false);
    assert!(body.contains("disk: ") && body.contains("below [store] min_free_mb = 1000000000"), "{body}");
    let (_, status) = http(&d.addr, "GET", "/status", None, b"");
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
