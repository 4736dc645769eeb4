//! The web UI and the Provet side panel over plain HTTP, with the real daemon, the simulator and
//! the fake Provet: who may see what, CSRF, headers (CSP, frame-ancestors), sends that reach the
//! simulator, and hostile input answered with a clear 4xx. The browser tests are in
//! `ui_browser.rs`.

mod common;
use common::ui::{CLIENT_NUMBERS, UiRig, enc, hidden};
use common::*;
use std::time::Duration;

const PAGES: [&str; 10] = [
    "/",
    "/outbox",
    "/inbox",
    "/conversations",
    "/send",
    "/optouts",
    "/events",
    "/settings",
    "/doctor",
    "/doctor?run=1",
];

fn assert_admin_headers(r: &HttpReply, path: &str) {
    let csp = r.header("content-security-policy").unwrap_or_else(|| panic!("{path}: no CSP"));
    assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
    assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"), "{path}: {csp}");
    assert_eq!(r.header("x-frame-options"), Some("DENY"), "{path}");
    assert_eq!(r.header("cache-control"), Some("no-store"), "{path}");
    assert!(
        r.body.contains(r#"<meta name="viewport" content="width=device-width, initial-scale=1">"#),
        "{path}: no viewport meta"
    );
}

#[test]
fn every_page_needs_a_session_and_renders_with_the_safe_headers() {
    let rig = UiRig::start("");
    for path in PAGES {
        let r = rig.get(None, path);
        assert_eq!(r.status, 303, "{path} without a session: {r:?}");
        let location = r.header("location").unwrap();
        assert!(location.starts_with("/login"), "{path}: {location}");
    }
    assert_eq!(
        rig.get(None, "/outbox?state=failed").header("location"),
        Some("/login?next=%2Foutbox%3Fstate%3Dfailed")
    );
    let cookie = rig.login();
    for path in PAGES {
        let r = rig.get(Some(&cookie), path);
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        assert_admin_headers(&r, path);
    }
    // The dashboard finds the simulated modem registered, with its signal, by data attributes.
    let dash = wait_for(Duration::from_secs(30), || {
        let r = rig.get(Some(&cookie), "/");
        (r.body.contains(r#"data-modem="main" data-state="registered""#) && r.body.contains("data-signal-dbm="))
            .then_some(r)
    })
    .unwrap_or_else(|| panic!("the modem never showed as registered: {}", rig.get(Some(&cookie), "/").body));
    assert!(dash.body.contains("data-signal-dbm=\"-"), "{}", dash.body);
    assert!(dash.body.contains(r#"data-count="sent""#) && dash.body.contains(r#"http-equiv="refresh""#));
    // The doctor page judges the modem by the running driver (the daemon holds its port).
    let doctor = rig.get(Some(&cookie), "/doctor?run=1");
    assert!(doctor.body.contains(r#"data-check="modem main" data-ok="true""#), "{}", doctor.body);
    // Settings: the effective config with the salt masked.
    let settings = rig.get(Some(&cookie), "/settings");
    assert!(!settings.body.contains(common::ui::SALT) && settings.body.contains("****"), "{}", settings.body);
    // The UI is not on the public listener; the assets are on both.
    let public = http_with(&rig.daemon.addr, "GET", "/outbox", &[], b"");
    assert_eq!(public.status, 404);
    for addr in [&rig.daemon.addr, &rig.daemon.admin] {
        let css = http_with(addr, "GET", "/assets/smshub.css", &[], b"");
        assert_eq!((css.status, css.header("content-type")), (200, Some("text/css; charset=utf-8")));
    }
}

#[test]
fn a_send_from_the_ui_reaches_the_simulator_and_a_reply_joins_the_conversation() {
    let rig = UiRig::start("");
    let cookie = rig.login();
    let form = rig.get(Some(&cookie), "/send");
    let token = hidden(&form.body, "csrf_token");
    let text = "Rex is ready 😀";
    let r =
        rig.post(Some(&cookie), "/send", &format!("csrf_token={token}&to={}&text={}", enc("+358401234567"), enc(text)));
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(r.header("location"), Some("/conversations/%2B358401234567?done=queued"));
    let sent = rig.sim.wait_sent(Duration::from_secs(60), |s| !s.is_empty());
    assert_eq!((sent[0]["to"].as_str(), sent[0]["text"].as_str()), (Some("+358401234567"), Some(text)), "{sent:?}");
    let inject =
        rig.sim.request(serde_json::json!({"cmd": "inject", "from": "+358401234567", "text": "Thanks, on my way"}));
    assert_eq!(inject["ok"], true, "{inject}");
    let thread = wait_for(Duration::from_secs(60), || {
        let r = rig.get(Some(&cookie), "/conversations/%2B358401234567");
        r.body.contains("Thanks, on my way").then_some(r.body)
    })
    .expect("the reply never appeared in the conversation");
    let (reply_at, sent_at) = (thread.find("Thanks, on my way").unwrap(), thread.find("Rex is ready").unwrap());
    assert!(reply_at < sent_at, "newest first");
    assert!(thread.contains("data-direction=\"in\"") && thread.contains("data-direction=\"out\""));
    // The part count is the encoder's: the emoji forces UCS-2.
    let counted = rig.get(Some(&cookie), "/send");
    assert!(counted.body.contains("1 part, GSM-7"), "{}", counted.body);
    // Who did it is on the settings page.
    let settings = rig.get(Some(&cookie), "/settings");
    assert!(
        settings.body.contains("user:anna") && settings.body.contains("data-audit-action=\"send\""),
        "{}",
        settings.body
    );
}

#[test]
fn forms_without_the_token_or_from_another_origin_change_nothing() {
    let rig = UiRig::start("");
    let cookie = rig.login();
    let token = hidden(&rig.get(Some(&cookie), "/send").body, "csrf_token");
    let body = format!("to={}&text=hello", enc("+358401234567"));
    assert_eq!(rig.post(Some(&cookie), "/send", &body).status, 403, "no token");
    assert_eq!(rig.post(Some(&cookie), "/send", &format!("csrf_token=AAAAAAAAAAAAAAAAAAAAAA&{body}")).status, 403);
    let with_token = format!("csrf_token={token}&{body}");
    for origin in ["http://evil.example", "null", &format!("http://{}", rig.daemon.addr)] {
        let r = http_with(
            &rig.daemon.admin,
            "POST",
            "/send",
            &[("Origin", origin), ("Cookie", &cookie), ("Content-Type", "application/x-www-form-urlencoded")],
            with_token.as_bytes(),
        );
        assert_eq!(r.status, 403, "from {origin}: {}", r.body);
    }
    let bare = http_with(
        &rig.daemon.admin,
        "POST",
        "/optouts",
        &[("Cookie", &cookie), ("Content-Type", "application/x-www-form-urlencoded")],
        format!("csrf_token={token}&number=%2B358401234567").as_bytes(),
    );
    assert_eq!(bare.status, 403, "neither Origin nor Referer");
    let outbox = stdout(&rig.dir.smshub(&rig.cfg, &["outbox", "list", "--json"]));
    assert_eq!(outbox.trim(), "[]", "nothing was queued");
    assert!(!rig.get(Some(&cookie), "/optouts").body.contains("data-optout="), "nothing was added");
}

#[test]
fn opt_outs_are_added_and_removed_and_refuse_sends_in_words() {
    let rig = UiRig::start("");
    let cookie = rig.login();
    let token = hidden(&rig.get(Some(&cookie), "/optouts").body, "csrf_token");
    let r = rig.post(Some(&cookie), "/optouts", &format!("csrf_token={token}&number={}", enc("040 123 4567x")));
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("is not a phone number"));
    let r = rig.post(Some(&cookie), "/optouts", &format!("csrf_token={token}&number={}", enc("+358401234567")));
    assert_eq!((r.status, r.header("location")), (303, Some("/optouts?done=optout_added")));
    assert!(rig.get(Some(&cookie), "/optouts").body.contains(r#"data-optout="+358401234567""#));
    let refused = rig.post(Some(&cookie), "/send", &format!("csrf_token={token}&to={}&text=hi", enc("+358401234567")));
    assert_eq!(refused.status, 422, "{}", refused.body);
    assert!(refused.body.contains("opt-out list"), "{}", refused.body);
    let r = rig.post(Some(&cookie), "/optouts/remove", &format!("csrf_token={token}&number={}", enc("+358401234567")));
    assert_eq!((r.status, r.header("location")), (303, Some("/optouts?done=optout_removed")));
    assert!(!rig.get(Some(&cookie), "/optouts").body.contains(r#"data-optout="+358401234567""#));
    let audit = rig.get(Some(&cookie), "/settings").body;
    assert!(
        audit.contains(r#"data-audit-action="optout.add""#) && audit.contains(r#"data-audit-action="optout.remove""#)
    );
}

#[test]
fn a_waiting_message_is_cancelled_and_retried_from_its_page() {
    let rig = UiRig::start("");
    let cookie = rig.login();
    // The modem unplugged: the message waits.
    assert_eq!(rig.sim.request(serde_json::json!({"cmd": "unplug"}))["ok"], true);
    wait_for(Duration::from_secs(30), || {
        rig.get(Some(&cookie), "/").body.contains(r#"data-state="unplugged""#).then_some(())
    })
    .expect("the dashboard never showed the modem unplugged");
    let token = hidden(&rig.get(Some(&cookie), "/send").body, "csrf_token");
    let r = rig.post(Some(&cookie), "/send", &format!("csrf_token={token}&to={}&text=later", enc("+358401234567")));
    assert_eq!(r.status, 303, "{}", r.body);
    let detail = rig.get(Some(&cookie), "/outbox/1");
    assert!(detail.body.contains(r#"action="/outbox/1/cancel""#), "{}", detail.body);
    let r = rig.post(Some(&cookie), "/outbox/1/cancel", &format!("csrf_token={token}"));
    assert_eq!((r.status, r.header("location")), (303, Some("/outbox/1?done=cancelled")), "{}", r.body);
    let detail = rig.get(Some(&cookie), "/outbox/1?done=cancelled").body;
    assert!(detail.contains(r#"data-outbox-state="failed""#) && detail.contains("cancelled by anna"), "{detail}");
    let again = rig.post(Some(&cookie), "/outbox/1/cancel", &format!("csrf_token={token}"));
    assert_eq!(again.status, 409, "a failed message cannot be cancelled: {}", again.body);
    assert_eq!(rig.sim.request(serde_json::json!({"cmd": "replug"}))["ok"], true);
    let r = rig.post(Some(&cookie), "/outbox/1/retry", &format!("csrf_token={token}"));
    assert_eq!((r.status, r.header("location")), (303, Some("/outbox/1?done=retried")));
    let sent = rig.sim.wait_sent(Duration::from_secs(60), |s| !s.is_empty());
    assert_eq!(sent[0]["text"], "later", "{sent:?}");
    assert_eq!(rig.post(Some(&cookie), "/outbox/1/retry", &format!("csrf_token={token}")).status, 409);
}

#[test]
fn hostile_input_gets_a_clear_4xx_and_is_shown_escaped() {
    let rig = UiRig::start("");
    let cookie = rig.login();
    let token = hidden(&rig.get(Some(&cookie), "/send").body, "csrf_token");
    for (path, status) in [
        ("/outbox?state=bogus", 400),
        ("/outbox?number=%FF%FE", 400),
        ("/outbox/abc", 404),
        ("/outbox/99999999999999999999999", 404),
        ("/outbox/42", 404),
        ("/inbox/-1", 404),
        ("/events/1", 404),
        ("/events?type=%3Cscript%3E", 400),
        ("/conversations/%00%01", 404),
        (&format!("/conversations/{}", "9".repeat(100)), 404),
        ("/nope", 404),
    ] {
        let r = rig.get(Some(&cookie), path);
        assert_eq!(r.status, status, "{path}: {}", r.body);
    }
    // A number filter with SQL-ish text is a plain search.
    assert_eq!(rig.get(Some(&cookie), "/outbox?number=%27%20OR%201%3D1%20--&source=%25").status, 200);
    let evil = "<script>alert(1)</script>";
    let r = rig.post(Some(&cookie), "/send", &format!("csrf_token={token}&to={}&text={}", enc(evil), enc(evil)));
    assert_eq!(r.status, 400);
    assert!(!r.body.contains(evil) && r.body.contains("&lt;script&gt;"), "{}", r.body);
    let long = "x".repeat(1601);
    let r = rig.post(Some(&cookie), "/send", &format!("csrf_token={token}&to=%2B358401234567&text={long}"));
    assert_eq!(r.status, 400, "too long");
    assert!(r.body.contains("at most 10 are allowed"), "{}", r.body);
    let r = rig.post(Some(&cookie), "/send", &format!("csrf_token={token}&to=%2B358401234567&text=%20%20"));
    assert_eq!(r.status, 400, "empty");
    let huge = format!("csrf_token={token}&to=%2B358401234567&text={}", "y".repeat(200_000));
    assert_eq!(rig.post(Some(&cookie), "/send", &huge).status, 413);
    let r = rig.post(Some(&cookie), "/send", &format!("csrf_token={token}&to=%2B358401234567&text=%FF%FE"));
    assert_eq!(r.status, 400, "not UTF-8");
    let raw = http_with(
        &rig.daemon.admin,
        "POST",
        "/send",
        &[("Origin", &rig.admin_origin()), ("Cookie", &cookie), ("Content-Type", "text/plain")],
        b"to=1",
    );
    assert_eq!(raw.status, 415);
    assert_eq!(rig.get(Some(&cookie), "/send").status, 200, "still serving");
    assert_eq!(stdout(&rig.dir.smshub(&rig.cfg, &["outbox", "list", "--json"])).trim(), "[]", "nothing was queued");
}

#[test]
fn the_side_panel_is_verified_frameable_by_provet_only_and_sends_only_to_its_client() {
    let rig = UiRig::start("");
    let path = rig.panel_path("client", rig.client_id, 60);
    let r = http_with(&rig.daemon.addr, "GET", &path, &[], b"");
    assert_eq!(r.status, 200, "{}", r.body);
    let csp = r.header("content-security-policy").unwrap();
    assert!(csp.ends_with(&format!("frame-ancestors {}", rig.provet_origin())), "{csp}");
    assert_eq!(r.header("x-frame-options"), None);
    assert!(r.header("set-cookie").is_none(), "no cookies");
    assert!(r.body.contains("Anna Virtanen"), "{}", r.body);
    let (first, second) = (r.body.find(CLIENT_NUMBERS[1]).unwrap(), r.body.find(CLIENT_NUMBERS[0]).unwrap());
    assert!(first < second, "the preferred number first");
    let token = hidden(&r.body, "panel_token");
    // An old but valid URL (11 h) still opens; the patient variant shows the owner.
    assert_eq!(
        http_with(&rig.daemon.addr, "GET", &rig.panel_path("client", rig.client_id, 11 * 3600), &[], b"").status,
        200
    );
    // An integration set to POST sends the same parameters as form data.
    let (route, params) = path.split_once('?').unwrap();
    let posted = http_with(
        &rig.daemon.addr,
        "POST",
        route,
        &[("Content-Type", "application/x-www-form-urlencoded")],
        params.as_bytes(),
    );
    assert!(posted.status == 200 && posted.body.contains("Anna Virtanen"), "{}", posted.body);
    let patient = http_with(&rig.daemon.addr, "GET", &rig.panel_path("patient", rig.patient_id, 0), &[], b"");
    assert!(patient.status == 200 && patient.body.contains("Anna Virtanen"), "{}", patient.body);

    let send = |body: String| {
        http_with(
            &rig.daemon.addr,
            "POST",
            "/provet/clinic/panel/send",
            &[("Content-Type", "application/x-www-form-urlencoded")],
            body.as_bytes(),
        )
    };
    let ok = send(format!(
        "panel_token={}&number={}&text={}",
        enc(&token),
        enc(CLIENT_NUMBERS[1]),
        enc("Your dog is ready")
    ));
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert!(
        ok.body.contains(&format!("data-sent-reload-origins=\"{}\"", rig.provet_origin()))
            && ok.body.contains("Queued"),
        "{}",
        ok.body
    );
    assert!(ok.header("content-security-policy").unwrap().contains(&rig.provet_origin()), "the answer is frameable");
    let sent = rig.sim.wait_sent(Duration::from_secs(60), |s| !s.is_empty());
    assert_eq!(
        (sent[0]["to"].as_str(), sent[0]["text"].as_str()),
        (Some(CLIENT_NUMBERS[1]), Some("Your dog is ready"))
    );
    let other = send(format!("panel_token={}&number={}&text=x", enc(&token), enc("+358409999999")));
    assert_eq!(other.status, 403, "another client's number: {}", other.body);
    let forged = token.replacen('.', "x.", 1);
    assert_eq!(send(format!("panel_token={}&number={}&text=x", enc(&forged), enc(CLIENT_NUMBERS[1]))).status, 403);
    assert_eq!(send(format!("number={}&text=x", enc(CLIENT_NUMBERS[1]))).status, 403, "no token");
    assert_eq!(send("panel_token=%FF&text=x".into()).status, 400);

    for (path, status, words) in [
        (path.replace("verification=", "verification=0"), 403, "verification salt"),
        (rig.panel_path("client", rig.client_id, 13 * 3600), 403, "Reload the page in Provet"),
        (rig.panel_path("client", rig.client_id, -600), 403, "clock"),
        (rig.panel_path("client", 999_999, 0), 404, "Provet has no client 999999"),
        (rig.panel_path("client", rig.client_id, 0).replace("/clinic/", "/other/"), 403, "verification salt"),
        (rig.panel_path("client", rig.client_id, 0).replace("id=", "x="), 400, "client id"),
        ("/provet/clinic/panel/client?id=1&timestamp=%FF".to_string(), 400, "UTF-8"),
    ] {
        let r = http_with(&rig.daemon.addr, "GET", &path, &[], b"");
        assert_eq!(r.status, status, "{path}: {}", r.body);
        assert!(r.body.contains(words), "{path}: {}", r.body);
        assert!(r.body.contains("name=\"viewport\""), "a page in words");
    }
    let outbox: serde_json::Value =
        serde_json::from_str(&stdout(&rig.dir.smshub(&rig.cfg, &["outbox", "list", "--json"]))).unwrap();
    assert_eq!(outbox.as_array().map(Vec::len), Some(1), "only the one send: {outbox}");
    assert_eq!(outbox[0]["source"], "panel");
}
