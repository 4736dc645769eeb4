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
