//! Accounts for people and tokens for programs, end to end: users and tokens made with the CLI,
//! sign-in over real HTTP on the admin listener, CSRF and origin refusals, sessions that
//! survive a restart and expire, and hostile input answered with a clear 4xx.

mod common;
use common::*;
use std::path::PathBuf;
use std::time::Duration;

const PASSWORD: &str = "correct horse battery staple";

/// A config whose `[admin]` section gets `admin_extra`.
fn config(dir: &TestDir, admin_extra: &str) -> PathBuf {
    let text = format!(
        "[store]\npath = \"{}\"\n\n[http]\nlisten = \"127.0.0.1:0\"\n\n[admin]\nlisten = \"127.0.0.1:0\"\n{admin_extra}\n\n[logging]\nlevel = \"debug\"\nformat = \"stderr\"\n",
        dir.path().join("smshub.db").display()
    );
    dir.write("smshub.toml", &text, 0o600)
}

fn add_user(dir: &TestDir, cfg: &std::path::Path, name: &str, password: &str) {
    let out =
        dir.smshub_with_stdin(cfg, &["user", "add", name, "--password-stdin"], format!("{password}\n").as_bytes());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

fn origin(d: &Daemon) -> String {
    format!("http://{}", d.admin)
}

fn form_headers(origin: &str) -> Vec<(&'static str, String)> {
    vec![("Origin", origin.to_string()), ("Content-Type", "application/x-www-form-urlencoded".to_string())]
}

fn post_form(d: &Daemon, path: &str, extra: &[(&str, &str)], body: &str) -> HttpReply {
    let o = origin(d);
    let mut headers: Vec<(&str, &str)> = vec![("Origin", &o), ("Content-Type", "application/x-www-form-urlencoded")];
    headers.extend_from_slice(extra);
    http_with(&d.admin, "POST", path, &headers, body.as_bytes())
}

fn login(d: &Daemon, user: &str, password: &str) -> HttpReply {
    post_form(d, "/login", &[], &format!("username={user}&password={}", password.replace(' ', "+")))
}

/// The `name=value` part of the session cookie a login set.
fn session_cookie(reply: &HttpReply) -> String {
    let set = reply.header("set-cookie").unwrap_or_else(|| panic!("no Set-Cookie: {reply:?}"));
    set.split(';').next().unwrap().to_string()
}

fn home(d: &Daemon, cookie: &str) -> HttpReply {
    http_with(&d.admin, "GET", "/", &[("Cookie", cookie)], b"")
}

/// The CSRF token in the signed-in page's logout form.
fn csrf_token(page: &str) -> String {
    let at = page.find("name=\"csrf_token\" value=\"").expect("a CSRF field") + "name=\"csrf_token\" value=\"".len();
    page[at..].split('"').next().unwrap().to_string()
}

fn signed_in_as(reply: &HttpReply, name: &str) -> bool {
    reply.status == 200 && reply.body.contains(&format!("Signed in as <strong>{name}</strong>"))
}

#[test]
fn a_person_signs_in_sees_their_name_and_signs_out() {
    let dir = TestDir::new();
    let cfg = config(&dir, "");
    add_user(&dir, &cfg, "anna", PASSWORD);
    let d = Daemon::start(&cfg);

    let page = http_with(&d.admin, "GET", "/login", &[], b"");
    assert_eq!(page.status, 200);
    for needle in [
        "name=\"username\"",
        "name=\"password\"",
        "<label for=\"username\"",
        "<label for=\"password\"",
        "width=device-width",
    ] {
        assert!(page.body.contains(needle), "{needle} in {}", page.body);
    }
    assert_eq!(page.header("content-type"), Some("text/html; charset=utf-8"));

    let not_yet = http_with(&d.admin, "GET", "/", &[], b"");
    assert_eq!((not_yet.status, not_yet.header("location")), (303, Some("/login")));

    let wrong = login(&d, "anna", "not the password");
    assert_eq!(wrong.status, 401);
    assert!(wrong.body.contains("Wrong user name or password."), "{}", wrong.body);
    assert!(wrong.header("set-cookie").is_none());
    let nobody = login(&d, "nobody", PASSWORD);
    assert_eq!(nobody.status, 401, "an unknown user looks like a wrong password");
    assert!(nobody.body.contains("Wrong user name or password."));

    let ok = login(&d, "anna", PASSWORD);
    assert_eq!((ok.status, ok.header("location")), (303, Some("/")), "{ok:?}");
    let set = ok.header("set-cookie").unwrap();
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=43200"] {
        assert!(set.contains(flag), "{flag} in {set}");
    }
    assert!(!set.contains("Secure"), "no Secure on plain HTTP: {set}");
    let cookie = session_cookie(&ok);

    let me = home(&d, &cookie);
    assert!(signed_in_as(&me, "anna"), "{me:?}");
    assert_eq!(me.header("cache-control"), Some("no-store"));
    let csrf = csrf_token(&me.body);

    // A safe `next` is followed, a foreign one is not.
    let to_status =
        post_form(&d, "/login", &[], &format!("username=anna&password={}&next=%2Fstatus", PASSWORD.replace(' ', "+")));
    assert_eq!(to_status.header("location"), Some("/status"));
    let elsewhere = post_form(
        &d,
        "/login",
        &[],
        &format!("username=anna&password={}&next=%2F%2Fevil.example%2F", PASSWORD.replace(' ', "+")),
    );
    assert_eq!(elsewhere.header("location"), Some("/"));

    // Logout needs the form's CSRF token.
    let no_csrf = post_form(&d, "/logout", &[("Cookie", &cookie)], "");
    assert_eq!(no_csrf.status, 403, "{no_csrf:?}");
    let wrong_csrf = post_form(&d, "/logout", &[("Cookie", &cookie)], "csrf_token=AAAAAAAAAAAAAAAAAAAAAA");
    assert_eq!(wrong_csrf.status, 403);
    assert!(signed_in_as(&home(&d, &cookie), "anna"), "a refused logout leaves the session");

    let out = post_form(&d, "/logout", &[("Cookie", &cookie)], &format!("csrf_token={csrf}"));
    assert_eq!((out.status, out.header("location")), (303, Some("/login")), "{out:?}");
    assert!(out.header("set-cookie").unwrap().contains("Max-Age=0"));
    let after = home(&d, &cookie);
    assert_eq!((after.status, after.header("location")), (303, Some("/login")), "the old cookie is dead");

    let log = d.log();
    assert!(log.contains("signed in"), "{log}");
    assert!(!log.contains(PASSWORD) && !log.contains("correct+horse"), "the password never reaches the log:\n{log}");
    assert!(!log.contains(cookie.trim_start_matches("smshub_session=")), "nor the session id");
}

#[test]
fn the_sixth_failed_login_in_a_minute_is_refused_with_retry_after() {
    let dir = TestDir::new();
    let cfg = config(&dir, "");
    add_user(&dir, &cfg, "anna", PASSWORD);
    let d = Daemon::start(&cfg);
    for i in 0..5 {
        assert_eq!(login(&d, "anna", &format!("guess number {i}")).status, 401, "attempt {}", i + 1);
    }
    let sixth = login(&d, "anna", "guess number 6");
    assert_eq!(sixth.status, 429, "{sixth:?}");
    let wait: u64 = sixth.header("retry-after").expect("Retry-After").parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    assert_eq!(login(&d, "anna", PASSWORD).status, 429, "even the right password waits: it is not checked");
    assert_eq!(login(&d, "ben", PASSWORD).status, 429, "the address is throttled for every name");

    let log = d.log();
    assert!(!log.contains("guess number"), "no password in the log:\n{log}");
    let lines = log.lines().filter(|l| l.contains("failed login")).count();
    assert!((1..=2).contains(&lines), "failed logins are summarised, not logged one by one ({lines} lines):\n{log}");
}

#[test]
fn a_session_survives_a_restart_of_the_daemon() {
    let dir = TestDir::new();
    let cfg = config(&dir, "");
    add_user(&dir, &cfg, "anna", PASSWORD);
    let mut d = Daemon::start(&cfg);
    let cookie = session_cookie(&login(&d, "anna", PASSWORD));
    d.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(d.wait_exit(Duration::from_secs(30)).and_then(|s| s.code()), Some(0));
    let d = Daemon::start(&cfg);
    assert!(signed_in_as(&home(&d, &cookie), "anna"), "the session lives in the database");

    // Signing in again from the same browser replaces its session.
    let body = format!("username=anna&password={}", PASSWORD.replace(' ', "+"));
    let again = post_form(&d, "/login", &[("Cookie", &cookie)], &body);
    let fresh = session_cookie(&again);
    assert_ne!(fresh, cookie);
    assert!(signed_in_as(&home(&d, &fresh), "anna"));
    assert_eq!(home(&d, &cookie).status, 303, "the replaced session ended");
}

#[test]
fn a_session_ends_after_its_configured_lifetime() {
    let dir = TestDir::new();
    let cfg = config(&dir, "session_lifetime_s = 3");
    add_user(&dir, &cfg, "anna", PASSWORD);
    let d = Daemon::start(&cfg);
    let ok = login(&d, "anna", PASSWORD);
    assert!(ok.header("set-cookie").unwrap().contains("Max-Age=3"));
    let cookie = session_cookie(&ok);
    assert!(signed_in_as(&home(&d, &cookie), "anna"));
    std::thread::sleep(Duration::from_millis(3500));
    let expired = home(&d, &cookie);
    assert_eq!((expired.status, expired.header("location")), (303, Some("/login")));
    let users = dir.smshub(&cfg, &["user", "list", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&users)).unwrap();
    assert_eq!(v[0]["sessions"], 0, "an expired session is not counted: {v}");
}

#[test]
fn a_cross_origin_post_is_refused() {
    let dir = TestDir::new();
    let cfg = config(&dir, "");
    add_user(&dir, &cfg, "anna", PASSWORD);
    let d = Daemon::start(&cfg);
    let body = format!("username=anna&password={}", PASSWORD.replace(' ', "+"));
    let form = ("Content-Type", "application/x-www-form-urlencoded");

    // The public listener's port on the same host is another origin.
    let other = format!("http://{}", d.addr);
    let refused = http_with(&d.admin, "POST", "/login", &[("Origin", &other), form], body.as_bytes());
    assert_eq!(refused.status, 403, "{refused:?}");
    assert!(refused.header("set-cookie").is_none());
    let evil = http_with(&d.admin, "POST", "/login", &[("Origin", "http://evil.example"), form], body.as_bytes());
    assert_eq!(evil.status, 403);
    let https = format!("https://{}", d.admin);
    assert_eq!(http_with(&d.admin, "POST", "/login", &[("Origin", &https), form], body.as_bytes()).status, 403);
    assert_eq!(
        http_with(&d.admin, "POST", "/login", &[form], body.as_bytes()).status,
        403,
        "neither Origin nor Referer"
    );
    let referer = format!("http://{}/login", d.admin);
    assert_eq!(
        http_with(&d.admin, "POST", "/login", &[("Referer", &referer), form], body.as_bytes()).status,
        303,
        "a same-origin Referer will do without Origin"
    );

    // A signed-in person's logout form, posted from elsewhere, is refused even with its token.
    let cookie = session_cookie(&login(&d, "anna", PASSWORD));
    let csrf = csrf_token(&home(&d, &cookie).body);
    let headers = form_headers(&other);
    let forged = http_with(
        &d.admin,
        "POST",
        "/logout",
        &[(headers[0].0, &headers[0].1), (headers[1].0, &headers[1].1), ("Cookie", &cookie)],
        format!("csrf_token={csrf}").as_bytes(),
    );
    assert_eq!(forged.status, 403);
    assert!(signed_in_as(&home(&d, &cookie), "anna"));
}

#[test]
fn status_needs_a_session_or_a_valid_unrevoked_token() {
    let dir = TestDir::new();
    let cfg = config(&dir, "");
    add_user(&dir, &cfg, "anna", PASSWORD);
    let d = Daemon::start(&cfg);

    let none = http_with(&d.admin, "GET", "/status", &[], b"");
    assert_eq!(none.status, 401);
    assert_eq!(none.header("www-authenticate"), Some("Bearer realm=\"smshub\""));
    let bad = http_with(&d.admin, "GET", "/status", &[("Authorization", "Bearer smshub_not-a-real-token")], b"");
    assert_eq!(bad.status, 401);
    assert_eq!(bad.header("www-authenticate"), Some("Bearer realm=\"smshub\", error=\"invalid_token\""));
    assert_eq!(http_with(&d.admin, "GET", "/status", &[("Authorization", "Basic YTpi")], b"").status, 401);

    let created = dir.smshub(&cfg, &["token", "create", "nagios"]);
    assert_eq!(created.status.code(), Some(0), "{}", stderr(&created));
    let token = stdout(&created).lines().last().unwrap().to_string();
    assert!(token.starts_with("smshub_") && token.len() > 40, "the last line is the token: {token}");
    let bearer = format!("Bearer {token}");
    let good = http_with(&d.admin, "GET", "/status", &[("Authorization", &bearer)], b"");
    assert_eq!(good.status, 200, "{good:?}");
    assert!(good.body.contains("\"version\""));
    // A well-formed token that was never issued.
    let forged = format!("Bearer smshub_{}", "A".repeat(token.len() - "smshub_".len()));
    assert_eq!(http_with(&d.admin, "GET", "/status", &[("Authorization", &forged)], b"").status, 401);

    let again = dir.smshub(&cfg, &["token", "create", "nagios"]);
    assert_eq!(again.status.code(), Some(2), "one valid token per name");
    let list = dir.smshub(&cfg, &["token", "list", "--json"]);
    assert!(!stdout(&list).contains(&token), "list never shows a token");

    // A person's session will do as well.
    let cookie = session_cookie(&login(&d, "anna", PASSWORD));
    assert_eq!(http_with(&d.admin, "GET", "/status", &[("Cookie", &cookie)], b"").status, 200);
    // An Authorization header is judged alone: a wrong token fails even with a session.
    let both = http_with(&d.admin, "GET", "/status", &[("Cookie", &cookie), ("Authorization", &forged)], b"");
    assert_eq!(both.status, 401);

    let revoked = dir.smshub(&cfg, &["token", "revoke", "nagios"]);
    assert_eq!(revoked.status.code(), Some(0), "{}", stderr(&revoked));
    let after = http_with(&d.admin, "GET", "/status", &[("Authorization", &bearer)], b"");
    assert_eq!(after.status, 401, "a revoked token is refused at once");
    let list: serde_json::Value =
        serde_json::from_str(&stdout(&dir.smshub(&cfg, &["token", "list", "--json"]))).unwrap();
    assert!(list[0]["revoked_at"].is_i64(), "{list}");
    assert_eq!(dir.smshub(&cfg, &["token", "revoke", "nagios"]).status.code(), Some(2));

    // Programs post without Origin, with their token (the CSRF layer lets them through).
    let post = http_with(&d.admin, "POST", "/status", &[("Authorization", &bearer)], b"");
    assert_eq!(post.status, 405, "past the origin check, to the route's own answer");

    let log = d.log();
    assert!(!log.contains(&token), "the token never reaches the log");
    assert!(log.contains("wrong or revoked API token"), "{log}");
}

#[test]
fn hostile_input_gets_a_clear_4xx_and_never_a_panic() {
    let dir = TestDir::new();
    let cfg = config(&dir, "");
    add_user(&dir, &cfg, "anna", PASSWORD);
    let d = Daemon::start(&cfg);

    let huge_name = format!("username={}&password=x", "a".repeat(10_000));
    assert_eq!(post_form(&d, "/login", &[], &huge_name).status, 401, "a name that cannot exist");
    let too_big = format!("username={}&password=x", "a".repeat(20_000));
    assert_eq!(post_form(&d, "/login", &[], &too_big).status, 413);
    assert_eq!(post_form(&d, "/login", &[], "username=%FF%FE&password=x").status, 400, "not UTF-8");
    let o = origin(&d);
    let raw_bytes = http_with(
        &d.admin,
        "POST",
        "/login",
        &[("Origin", &o), ("Content-Type", "application/x-www-form-urlencoded")],
        b"username=\xff\xfe&password=\xc3",
    );
    assert_eq!(raw_bytes.status, 400);
    assert_eq!(post_form(&d, "/login", &[], "username=anna").status, 400, "no password field");
    assert_eq!(post_form(&d, "/login", &[], "").status, 400);
    assert_eq!(post_form(&d, "/login", &[], "&&&===&").status, 400);
    let json = http_with(
        &d.admin,
        "POST",
        "/login",
        &[("Origin", &o), ("Content-Type", "application/json")],
        br#"{"username":"anna"}"#,
    );
    assert_eq!(json.status, 415);
    assert_eq!(post_form(&d, "/login", &[], "username=%3Cscript%3E&password=x").status, 401);

    // Cookie garbage is no session.
    let port = d.admin.clone();
    for cookie in [
        b"smshub_session=\xff\xfe\xfd".as_slice(),
        b"smshub_session=../../etc/passwd",
        b"smshub_session=AAAAAAAAAAAAAAAAAAAAAA",
        b";;;=;smshub_session",
    ] {
        let mut raw = format!("GET / HTTP/1.1\r\nHost: {port}\r\nConnection: close\r\nCookie: ").into_bytes();
        raw.extend_from_slice(cookie);
        raw.extend_from_slice(b"\r\n\r\n");
        let reply = http_raw(&d.admin, &raw);
        assert_eq!((reply.status, reply.header("location")), (303, Some("/login")), "{cookie:?}");
    }
    let long = format!("smshub_session={}", "A".repeat(8000));
    assert_eq!(http_with(&d.admin, "GET", "/status", &[("Cookie", &long)], b"").status, 401);
    for auth in ["Bearer", "Bearer ", "Bearer smshub_ä", "bearer smshub_", &format!("Bearer {}", "x".repeat(4000))] {
        assert_eq!(http_with(&d.admin, "GET", "/status", &[("Authorization", auth)], b"").status, 401, "{auth:?}");
    }
    // A control character in a header is refused by hyper before any handler.
    assert_eq!(http_with(&d.admin, "GET", "/status", &[("Authorization", "Bearer smshub_\u{7f}")], b"").status, 400);
    // A login page with a hostile next= escapes it.
    let page = http_with(&d.admin, "GET", "/login?next=%2F%22%3E%3Cscript%3E", &[], b"");
    assert_eq!(page.status, 200);
    assert!(!page.body.contains("<script>") && page.body.contains("&quot;&gt;&lt;script&gt;"), "{}", page.body);

    assert_eq!(http(&d.addr, "GET", "/healthz", None, b"").0, 200, "still alive");
    assert!(!d.log().contains("panicked"), "{}", d.log());
}

#[test]
fn users_and_tokens_are_managed_from_the_command_line() {
    let dir = TestDir::new();
    let cfg = config(&dir, "");
    let add = |name: &str, input: &[u8]| dir.smshub_with_stdin(&cfg, &["user", "add", name, "--password-stdin"], input);

    let empty = add("anna", b"\n");
    assert_eq!(empty.status.code(), Some(2));
    assert!(stderr(&empty).contains("the password is empty"), "{}", stderr(&empty));
    let nothing = add("anna", b"");
    assert_eq!(nothing.status.code(), Some(2), "{}", stderr(&nothing));
    let short = add("anna", b"short\n");
    assert_eq!(short.status.code(), Some(2));
    assert!(stderr(&short).contains("shorter than 10 characters"), "{}", stderr(&short));
    let bad_name = add("anna/x", b"long enough password\n");
    assert_eq!(bad_name.status.code(), Some(2));
    assert!(stderr(&bad_name).contains("user name \"anna/x\""), "{}", stderr(&bad_name));
    let no_flag = dir.smshub(&cfg, &["user", "add", "anna"]);
    assert_eq!(no_flag.status.code(), Some(2), "the password only comes from stdin");

    assert_eq!(add("anna", b"long enough password\r\n").status.code(), Some(0), "a CRLF line ending is not part of it");
    assert_eq!(add("anna", b"another long password\n").status.code(), Some(2), "the name is taken");
    assert_eq!(add("ben", b"long enough password\n").status.code(), Some(0));
    let list: serde_json::Value =
        serde_json::from_str(&stdout(&dir.smshub(&cfg, &["user", "list", "--json"]))).unwrap();
    assert_eq!(list.as_array().map(|a| a.len()), Some(2));
    assert_eq!(list[0]["name"], "anna");
    for file in ["smshub.db", "smshub.db-wal"] {
        let bytes = std::fs::read(dir.path().join(file)).unwrap_or_default();
        assert!(!bytes.windows(b"long enough".len()).any(|w| w == b"long enough"), "only hashes are stored ({file})");
    }

    // Removing a user ends its sessions.
    let d = Daemon::start(&cfg);
    let cookie = session_cookie(&login(&d, "anna", "long enough password"));
    assert!(signed_in_as(&home(&d, &cookie), "anna"));
    let removed = dir.smshub(&cfg, &["user", "remove", "anna"]);
    assert_eq!(removed.status.code(), Some(0), "{}", stderr(&removed));
    assert!(stdout(&removed).contains("1 session(s) ended"), "{}", stdout(&removed));
    assert_eq!(home(&d, &cookie).status, 303);
    assert_eq!(dir.smshub(&cfg, &["user", "remove", "anna"]).status.code(), Some(2));
    assert!(stdout(&dir.smshub(&cfg, &["user", "list"])).contains("ben"));

    assert_eq!(dir.smshub(&cfg, &["token", "create", "no spaces"]).status.code(), Some(2));
    assert_eq!(dir.smshub(&cfg, &["token", "revoke", "never-made"]).status.code(), Some(2));
}

#[test]
fn the_session_lifetime_is_an_admin_key_in_range() {
    let dir = TestDir::new();
    let cases = [
        ("[http]\nsession_lifetime_s = 60\n", "http.session_lifetime_s: belongs in [admin]"),
        ("[admin]\nsession_lifetime_s = 0\n", "admin.session_lifetime_s: 0 is out of range"),
        ("[admin]\nsession_lifetime_s = 99999999\n", "out of range"),
    ];
    for (text, expected) in cases {
        let cfg = dir.write("bad.toml", text, 0o600);
        let out = dir.smshub(&cfg, &["config", "check"]);
        assert_eq!(out.status.code(), Some(2), "{text}");
        assert!(stderr(&out).contains(expected), "{expected:?} in {}", stderr(&out));
    }
    let ok = dir.write("ok.toml", "[admin]\nsession_lifetime_s = 3600\n", 0o600);
    let out = dir.smshub(&ok, &["config", "check", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("\"session_lifetime_s\":3600"), "{}", stdout(&out));
}

#[test]
fn failed_logins_count_per_user_across_addresses_and_a_tls_proxy_gets_secure_cookies() {
    let dir = TestDir::new();
    // The test client plays a reverse proxy on 127.0.0.1 that names the real client.
    let cfg = config(&dir, "trusted_proxies = [\"127.0.0.1\"]");
    add_user(&dir, &cfg, "anna", PASSWORD);
    add_user(&dir, &cfg, "ben", PASSWORD);
    let d = Daemon::start(&cfg);
    let from = |client: &str, user: &str, password: &str| {
        let o = origin(&d);
        let body = format!("username={user}&password={}", password.replace(' ', "+"));
        http_with(
            &d.admin,
            "POST",
            "/login",
            &[("Origin", &o), ("Content-Type", "application/x-www-form-urlencoded"), ("X-Forwarded-For", client)],
            body.as_bytes(),
        )
    };
    for i in 0..5 {
        // Five addresses, one guess each: no address is throttled, the name is.
        assert_eq!(from(&format!("203.0.113.{i}"), "anna", "wrong guess").status, 401);
    }
    let sixth = from("198.51.100.7", "anna", PASSWORD);
    assert_eq!(sixth.status, 429, "per user, whatever the address");
    assert!(sixth.header("retry-after").is_some());
    assert_eq!(from("198.51.100.7", "ben", PASSWORD).status, 303, "another user from that address is not slowed");

    // Behind a proxy that terminates TLS the origin is https and the cookie is Secure.
    let https = format!("https://{}", d.admin);
    let body = format!("username=ben&password={}", PASSWORD.replace(' ', "+"));
    let tls = http_with(
        &d.admin,
        "POST",
        "/login",
        &[("Origin", &https), ("Content-Type", "application/x-www-form-urlencoded"), ("X-Forwarded-Proto", "https")],
        body.as_bytes(),
    );
    assert_eq!(tls.status, 303, "{tls:?}");
    assert!(tls.header("set-cookie").unwrap().ends_with("; Secure"), "{tls:?}");
}
