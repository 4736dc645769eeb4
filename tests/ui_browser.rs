//! The web UI and the Provet side panel in a real browser: headless Chromium from Debian driven
//! over WebDriver (chromedriver), against the real daemon, the simulator and the fake Provet.
//! Ignored by a plain `cargo test` (they need `chromium` and `chromium-driver`); CI installs
//! both and runs them with `cargo test --test ui_browser -- --ignored`.
//!
//! `SMSHUB_SCREENSHOTS=<dir>` also saves the README's screenshots (dashboard, conversation,
//! panel; 1280×800 and 390×844) there.

mod common;
use common::ui::{CLIENT_NUMBERS, PASSWORD, USER, UiRig};
use common::webdriver::Browser;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

const LONG: Duration = Duration::from_secs(60);
const DESK: (u32, u32) = (1280, 800);
const PHONE: (u32, u32) = (390, 844);

/// Serves `html` to every request on 127.0.0.1 (another origin than the daemon's listeners);
/// returns its origin. The thread ends with the test process.
fn serve_page(listener: TcpListener, html: String) -> String {
    let origin = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut s) = conn else { continue };
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let reply = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{html}",
                html.len()
            );
            let _ = s.write_all(reply.as_bytes());
        }
    });
    origin
}

fn sign_in(b: &Browser, rig: &UiRig, password: &str) {
    b.goto(&format!("{}/login", rig.admin_origin()));
    b.type_into(&b.find("#username"), USER);
    b.type_into(&b.find("#password"), password);
    b.click(&b.find("main form button[type=submit]"));
}

/// Sets a text box's value the way typing does (ChromeDriver cannot type characters outside
/// the BMP, such as emoji) and fires `input`.
fn set_text(b: &Browser, css: &str, text: &str) {
    let script = format!(
        "var e = document.querySelector({}); e.value = {}; e.dispatchEvent(new Event('input', {{bubbles: true}})); return true;",
        serde_json::to_string(css).unwrap(),
        serde_json::to_string(text).unwrap()
    );
    assert_eq!(b.run(&script), serde_json::Value::Bool(true));
}

fn screenshot(b: &Browser, name: &str) {
    if let Ok(dir) = std::env::var("SMSHUB_SCREENSHOTS") {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(std::path::Path::new(&dir).join(format!("{name}.png")), b.screenshot()).unwrap();
    }
}

#[test]
#[ignore = "needs chromium and chromedriver"]
fn a_person_signs_in_sees_the_modem_sends_and_reads_the_reply() {
    let rig = UiRig::start("");
    let b = Browser::start(DESK.0, DESK.1);
    sign_in(&b, &rig, "wrong password");
    assert!(
        b.text(&b.wait_for("p.error", LONG, false)).contains("Wrong user name or password"),
        "a wrong password is refused"
    );
    assert!(b.url().contains("/login"));
    sign_in(&b, &rig, PASSWORD);
    // The dashboard shows the simulated modem registered, with its signal (it reloads itself).
    let modem = b.wait_for("[data-modem=main][data-state=registered][data-signal-dbm]", LONG, true);
    let dbm: i32 = b.attr(&modem, "data-signal-dbm").unwrap().parse().unwrap();
    assert!((-113..=-51).contains(&dbm), "{dbm}");
    assert!(b.text(&modem).contains("dBm"));

    b.goto(&format!("{}/send", rig.admin_origin()));
    b.type_into(&b.find("#to"), "+358401234567");
    set_text(&b, "#text", &format!("{}😀", "a".repeat(70)));
    assert_eq!(b.text(&b.find("#part-count")), "2 parts, UCS-2 — the 😀 forces UCS-2", "the live count");
    set_text(&b, "#text", "Rex is ready for pickup");
    assert_eq!(b.text(&b.find("#part-count")), "1 part, GSM-7");
    b.click(&b.find("main form button[type=submit]"));
    b.wait_url("/conversations/%2B358401234567", LONG);
    let sent = rig.sim.wait_sent(LONG, |s| !s.is_empty());
    assert_eq!(sent[0]["text"], "Rex is ready for pickup", "{sent:?}");
    rig.sim.request(serde_json::json!({"cmd": "inject", "from": "+358401234567", "text": "Thanks! On my way"}));
    let reply = b.wait_for("ol.thread li[data-direction=in]", LONG, true);
    assert!(b.text(&reply).contains("Thanks! On my way"));
    let newest = b.find("ol.thread li");
    assert!(b.text(&newest).contains("Thanks! On my way"), "newest first");
    screenshot(&b, "conversation-desktop");
    b.set_window_size(PHONE.0, PHONE.1);
    screenshot(&b, "conversation-phone");
    b.goto(&format!("{}/", rig.admin_origin()));
    b.wait_for("[data-health=healthy]", LONG, true);
    screenshot(&b, "dashboard-phone");
    b.set_window_size(DESK.0, DESK.1);
    b.goto(&format!("{}/", rig.admin_origin()));
    b.wait_for("[data-health=healthy]", LONG, true);
    screenshot(&b, "dashboard-desktop");
}

#[test]
#[ignore = "needs chromium and chromedriver"]
fn cancel_retry_and_opt_outs_work_by_clicking() {
    let rig = UiRig::start("");
    let b = Browser::start(DESK.0, DESK.1);
    sign_in(&b, &rig, PASSWORD);
    b.wait_for("[data-modem=main][data-state=registered]", LONG, true);
    rig.sim.request(serde_json::json!({"cmd": "unplug"}));
    b.wait_for("[data-modem=main][data-state=unplugged]", LONG, true);
    b.goto(&format!("{}/send", rig.admin_origin()));
    b.type_into(&b.find("#to"), "+358401234567");
    set_text(&b, "#text", "see you at 10");
    b.click(&b.find("main form button[type=submit]"));
    b.wait_url("/conversations/", LONG);
    b.goto(&format!("{}/outbox/1", rig.admin_origin()));
    b.click(&b.find("form[action='/outbox/1/cancel'] button"));
    b.wait_url("done=cancelled", LONG);
    b.find("[data-outbox-state=failed]");
    assert!(b.text(&b.find("p.notice")).contains("cancelled"));
    rig.sim.request(serde_json::json!({"cmd": "replug"}));
    b.click(&b.find("form[action='/outbox/1/retry'] button"));
    b.wait_url("done=retried", LONG);
    assert!(b.text(&b.find("p.notice")).contains("sent again"));
    let sent = rig.sim.wait_sent(LONG, |s| !s.is_empty());
    assert_eq!(sent[0]["text"], "see you at 10");
    b.wait_for("[data-outbox-state=sent]", LONG, true);

    b.goto(&format!("{}/optouts", rig.admin_origin()));
    b.type_into(&b.find("#number"), "+358405555555");
    b.click(&b.find("main form button[type=submit]"));
    b.wait_url("done=optout_added", LONG);
    b.find("tr[data-optout='+358405555555']");
    b.click(&b.find("tr[data-optout='+358405555555'] button"));
    b.wait_url("done=optout_removed", LONG);
    let notice = b.find("p.notice");
    assert!(b.text(&notice).contains("removed"), "{}", b.text(&notice));
    assert!(b.try_find("tr[data-optout='+358405555555']").is_none(), "removed");
}

#[test]
#[ignore = "needs chromium and chromedriver"]
fn a_cross_origin_auto_submitting_form_is_refused() {
    let rig = UiRig::start("");
    let b = Browser::start(DESK.0, DESK.1);
    sign_in(&b, &rig, PASSWORD);
    b.wait_for("[data-modem=main]", LONG, false);
    // Another port on the same host: another origin, the same site (the cookie is sent).
    let attack = format!(
        "<!doctype html><form action=\"{}/optouts\" method=\"post\"><input name=\"number\" value=\"+358406666666\"></form>\
         <script>document.forms[0].submit()</script>",
        rig.admin_origin()
    );
    let evil = serve_page(TcpListener::bind("127.0.0.1:0").unwrap(), attack);
    b.goto(&evil);
    let heading = b.wait_for("h1", LONG, false);
    assert_eq!(b.text(&heading), "Refused", "{}", b.url());
    b.goto(&format!("{}/optouts", rig.admin_origin()));
    assert!(b.try_find("tr[data-optout]").is_none(), "nothing was added");
}

#[test]
#[ignore = "needs chromium and chromedriver"]
fn no_page_scrolls_sideways_on_a_phone() {
    let rig = UiRig::start("");
    let b = Browser::start(PHONE.0, PHONE.1);
    sign_in(&b, &rig, PASSWORD);
    b.wait_for("[data-modem=main]", LONG, false);
    // Content that is long and unbreakable: a long word, a raw PDU on the inbox page.
    b.goto(&format!("{}/send", rig.admin_origin()));
    b.type_into(&b.find("#to"), "+358401234567");
    set_text(&b, "#text", &"Pitkäsanainenviestiilmanvälilyöntejä".repeat(8));
    b.click(&b.find("main form button[type=submit]"));
    b.wait_url("/conversations/", LONG);
    rig.sim.wait_sent(LONG, |s| !s.is_empty());
    rig.sim.request(serde_json::json!({"cmd": "inject", "from": "+358401234567", "text": "x".repeat(300)}));
    let o = rig.admin_origin();
    let mut pages: Vec<String> = [
        "/",
        "/conversations",
        "/conversations/%2B358401234567",
        "/send",
        "/outbox",
        "/outbox/1",
        "/inbox",
        "/optouts",
        "/events",
        "/settings",
        "/doctor?run=1",
        "/login",
    ]
    .iter()
    .map(|p| format!("{o}{p}"))
    .collect();
    b.goto(&format!("{o}/inbox"));
    b.wait_for("tr[data-inbox-id]", LONG, true);
    pages.push(format!("{o}/inbox/1"));
    pages.push(format!("{}{}", rig.public_origin(), rig.panel_path("client", rig.client_id, 0)));
    pages.push(format!("{}{}", rig.public_origin(), rig.panel_path("client", rig.client_id, 99_999)));
    for url in &pages {
        b.goto(url);
        assert!(b.try_find("meta[name=viewport]").is_some(), "{url}");
        assert!(!b.scrolls_sideways(), "{url} scrolls sideways at {}x{}", PHONE.0, PHONE.1);
    }
}

#[test]
#[ignore = "needs chromium and chromedriver"]
fn the_panel_renders_and_sends_inside_an_allowed_frame_and_is_blocked_elsewhere() {
    let allowed_listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let allowed_origin = format!("http://{}", allowed_listener.local_addr().unwrap());
    let rig = UiRig::start(&format!("frame_ancestors = [\"{allowed_origin}\"]\n"));
    let panel = format!("{}{}", rig.public_origin(), rig.panel_path("client", rig.client_id, 0));
    let frame_page = |title: &str| {
        format!(
            "<!doctype html><html><head><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{title}</title>\
             <style>body{{margin:0;font-family:sans-serif}}header{{background:#0a6b5d;color:#fff;padding:8px}}\
             iframe{{border:0;width:100%;height:700px}}</style></head><body><header>Provet Cloud · client</header>\
             <iframe id=\"panel\" src=\"{panel}\"></iframe></body></html>"
        )
    };
    serve_page(allowed_listener, frame_page("Provet"));
    let elsewhere = serve_page(TcpListener::bind("127.0.0.1:0").unwrap(), frame_page("Elsewhere"));

    let b = Browser::start(DESK.0, DESK.1);
    b.goto(&allowed_origin);
    let frame = b.find("#panel");
    b.frame(Some(&frame));
    let heading = b.wait_for("h1", LONG, false);
    assert_eq!(b.text(&heading), "Anna Virtanen");
    assert!(b.try_find(&format!("[data-number='{}']", CLIENT_NUMBERS[0])).is_some());
    b.frame(None);
    screenshot(&b, "panel-desktop");
    b.frame(Some(&b.find("#panel")));
    set_text(&b, "#text", "Rex can go home today");
    b.click(&b.find("form[action$='/panel/send'] button[type=submit]"));
    let queued = b.wait_for("p.notice", LONG, false);
    assert!(b.text(&queued).contains("Queued"));
    let sent = rig.sim.wait_sent(LONG, |s| !s.is_empty());
    assert_eq!(
        (sent[0]["to"].as_str(), sent[0]["text"].as_str()),
        (Some(CLIENT_NUMBERS[1]), Some("Rex can go home today"))
    );
    b.frame(None);
    b.set_window_size(PHONE.0, PHONE.1);
    b.goto(&panel);
    screenshot(&b, "panel-phone");
    b.set_window_size(DESK.0, DESK.1);

    // From an origin that is not allowed the browser refuses to show it.
    b.goto(&elsewhere);
    b.frame(Some(&b.find("#panel")));
    std::thread::sleep(Duration::from_secs(2));
    // (Chromium shows its own error page in the frame instead.)
    assert!(b.try_find("[data-number]").is_none(), "the panel must not render in a frame of {elsewhere}");
    assert!(b.try_find("form[action$='/panel/send']").is_none());
    b.frame(None);

    // A bad hash: the refusal page in words.
    b.goto(&panel.replace("verification=", "verification=0"));
    assert_eq!(b.text(&b.find("h1")), "The link could not be verified");
    assert!(b.text(&b.find("p.refused")).contains("verification salt"));
}

#[test]
#[ignore = "needs chromium and chromedriver"]
fn a_send_from_the_panel_in_a_new_window_tells_the_provet_page_to_reload() {
    let provet_listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let provet_origin = format!("http://{}", provet_listener.local_addr().unwrap());
    let rig = UiRig::start(&format!("frame_ancestors = [\"{provet_origin}\"]\n"));
    let panel = format!("{}{}", rig.public_origin(), rig.panel_path("client", rig.client_id, 0));
    // What Provet's page does with "Open in new window", plus a listener for seed 001's message.
    let page = format!(
        "<!doctype html><title>Provet</title><button id=\"open\" onclick=\"window.open('{panel}', 'smshub')\">SMS</button>\
         <script>window.addEventListener('message', function (e) {{ document.title = 'got ' + e.data + ' from ' + e.origin; }});</script>"
    );
    serve_page(provet_listener, page);
    let b = Browser::start(DESK.0, DESK.1);
    b.goto(&provet_origin);
    let provet_window = b.window();
    b.click(&b.find("#open"));
    let start = std::time::Instant::now();
    while b.windows().len() < 2 {
        assert!(start.elapsed() < LONG, "the panel window never opened");
        std::thread::sleep(Duration::from_millis(100));
    }
    let panel_window = b.windows().into_iter().find(|h| *h != provet_window).unwrap();
    b.switch_to_window(&panel_window);
    b.wait_for("form[action$='/panel/send']", LONG, false);
    set_text(&b, "#text", "Rex's results are in");
    b.click(&b.find("form[action$='/panel/send'] button[type=submit]"));
    b.wait_for("p.notice", LONG, false);
    b.switch_to_window(&provet_window);
    let start = std::time::Instant::now();
    loop {
        let title = b.run("return document.title;");
        if title == serde_json::Value::String(format!("got reload from {}", rig.public_origin())) {
            break;
        }
        assert!(start.elapsed() < LONG, "the Provet page got no reload message: {title}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let sent = rig.sim.wait_sent(LONG, |s| !s.is_empty());
    assert_eq!(sent[0]["text"], "Rex's results are in");
}
