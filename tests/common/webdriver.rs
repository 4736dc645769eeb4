//! A small W3C WebDriver client (JSON over HTTP/1.1 on std), enough for the browser tests:
//! chromedriver as a child process, a headless Chromium session, navigate, find, click, type,
//! run a script, switch frames, size the window, screenshot. Every call has a deadline.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// A running chromedriver.
pub struct Driver {
    child: Child,
    port: u16,
}

/// One browser session.
pub struct Browser {
    driver: Driver,
    session: String,
}

/// An element found on the page.
#[derive(Debug, Clone)]
pub struct Element(String);

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// One HTTP exchange with chromedriver: (status, JSON body).
fn call(port: u16, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let mut s =
        TcpStream::connect(("127.0.0.1", port)).unwrap_or_else(|e| panic!("chromedriver is not reachable: {e}"));
    s.set_read_timeout(Some(CALL_TIMEOUT)).unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body.as_bytes()).unwrap();
    // chromedriver may keep the connection open: read the head, then exactly the body.
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let split = loop {
        if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = s.read(&mut buf).unwrap_or_else(|e| panic!("{method} {path}: no answer from chromedriver: {e}"));
        assert!(n > 0, "{method} {path}: chromedriver closed the connection");
        raw.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let mut body = raw[split + 4..].to_vec();
    let length =
        head.lines().find_map(|l| l.strip_prefix("content-length:")).and_then(|v| v.trim().parse::<usize>().ok());
    let chunked = head.contains("transfer-encoding: chunked");
    loop {
        let complete = match length {
            Some(n) => body.len() >= n,
            None if chunked => body.windows(5).any(|w| w == b"0\r\n\r\n"),
            None => false,
        };
        if complete {
            break;
        }
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => body.extend_from_slice(&buf[..n]),
            Err(e) => panic!("{method} {path}: the answer stopped: {e}"),
        }
    }
    if chunked {
        body = dechunk(&body);
    }
    let status = head.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(line_end) = b.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(String::from_utf8_lossy(&b[..line_end]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = line_end + 2;
        out.extend_from_slice(&b[start..(start + size).min(b.len())]);
        b = &b[(start + size + 2).min(b.len())..];
    }
    out
}

impl Driver {
    /// Starts `chromedriver` on a free port and waits (30 s) until it is ready.
    pub fn start() -> Driver {
        let port = free_port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver must be installed (Debian: apt-get install chromium chromium-driver)");
        let driver = Driver { child, port };
        let start = Instant::now();
        loop {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                let (status, v) = call(port, "GET", "/status", None);
                if status == 200 && v["value"]["ready"] == true {
                    return driver;
                }
            }
            assert!(start.elapsed() < Duration::from_secs(30), "chromedriver did not become ready");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Browser {
    /// A new headless Chromium session, `width`×`height`.
    pub fn start(width: u32, height: u32) -> Browser {
        let driver = Driver::start();
        let binary = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .unwrap_or("/usr/bin/chromium");
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": binary,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--hide-scrollbars", format!("--window-size={width},{height}"), "--lang=en-US"]
            }
        }}});
        let (status, v) = call(driver.port, "POST", "/session", Some(&caps));
        assert_eq!(status, 200, "no browser session: {v}");
        let session = v["value"]["sessionId"].as_str().expect("a session id").to_string();
        let b = Browser { driver, session };
        b.set_window_size(width, height);
        b
    }

    fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let full = format!("/session/{}{path}", self.session);
        let (status, v) = call(self.driver.port, method, &full, body.as_ref());
        assert_eq!(status, 200, "{method} {path}: {v}");
        v["value"].clone()
    }

    pub fn goto(&self, url: &str) {
        self.cmd("POST", "/url", Some(json!({"url": url})));
    }

    pub fn url(&self) -> String {
        self.cmd("GET", "/url", None).as_str().unwrap_or_default().to_string()
    }

    /// The first element matching `css`, or None.
    pub fn try_find(&self, css: &str) -> Option<Element> {
        let full = format!("/session/{}/element", self.session);
        let (status, v) = call(self.driver.port, "POST", &full, Some(&json!({"using": "css selector", "value": css})));
        (status == 200).then(|| Element(v["value"][ELEMENT_KEY].as_str().unwrap_or_default().to_string()))
    }

    pub fn find(&self, css: &str) -> Element {
        self.try_find(css).unwrap_or_else(|| panic!("no element {css:?} on {}", self.url()))
    }

    /// Waits up to `limit` for `css`, reloading the page between looks when `reload`.
    pub fn wait_for(&self, css: &str, limit: Duration, reload: bool) -> Element {
        let start = Instant::now();
        loop {
            if let Some(e) = self.try_find(css) {
                return e;
            }
            assert!(start.elapsed() < limit, "{css:?} never appeared on {}", self.url());
            std::thread::sleep(Duration::from_millis(300));
            if reload {
                self.cmd("POST", "/refresh", Some(json!({})));
            }
        }
    }

    /// Waits up to `limit` until the address contains `part` (a click's navigation is done).
    pub fn wait_url(&self, part: &str, limit: Duration) {
        let start = Instant::now();
        while !self.url().contains(part) {
            assert!(start.elapsed() < limit, "never reached {part:?}; at {}", self.url());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn click(&self, e: &Element) {
        self.cmd("POST", &format!("/element/{}/click", e.0), Some(json!({})));
    }

    pub fn type_into(&self, e: &Element, text: &str) {
        self.cmd("POST", &format!("/element/{}/value", e.0), Some(json!({"text": text})));
    }

    pub fn text(&self, e: &Element) -> String {
        self.cmd("GET", &format!("/element/{}/text", e.0), None).as_str().unwrap_or_default().to_string()
    }

    pub fn attr(&self, e: &Element, name: &str) -> Option<String> {
        self.cmd("GET", &format!("/element/{}/attribute/{name}", e.0), None).as_str().map(str::to_string)
    }

    /// Runs `script` (a function body) and returns its value.
    pub fn run(&self, script: &str) -> Value {
        self.cmd("POST", "/execute/sync", Some(json!({"script": script, "args": []})))
    }

    /// Into the frame `e` (an `<iframe>` element), or back to the top with None.
    pub fn frame(&self, e: Option<&Element>) {
        let id = match e {
            Some(e) => json!({ELEMENT_KEY: e.0}),
            None => Value::Null,
        };
        self.cmd("POST", "/frame", Some(json!({"id": id})));
    }

    /// The handles of the open windows (tabs).
    pub fn windows(&self) -> Vec<String> {
        self.cmd("GET", "/window/handles", None)
            .as_array()
            .map(|a| a.iter().filter_map(|h| h.as_str().map(str::to_string)).collect())
            .unwrap_or_default()
    }

    pub fn window(&self) -> String {
        self.cmd("GET", "/window", None).as_str().unwrap_or_default().to_string()
    }

    pub fn switch_to_window(&self, handle: &str) {
        self.cmd("POST", "/window", Some(json!({"handle": handle})));
    }

    pub fn set_window_size(&self, width: u32, height: u32) {
        self.cmd("POST", "/window/rect", Some(json!({"width": width, "height": height})));
    }

    /// A PNG of the viewport.
    pub fn screenshot(&self) -> Vec<u8> {
        use base64::Engine;
        let b64 = self.cmd("GET", "/screenshot", None);
        base64::engine::general_purpose::STANDARD.decode(b64.as_str().unwrap_or_default()).unwrap()
    }

    /// Whether the page is wider than the window (horizontal scrolling).
    pub fn scrolls_sideways(&self) -> bool {
        self.run("return document.documentElement.scrollWidth > window.innerWidth;") == Value::Bool(true)
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = call(self.driver.port, "DELETE", &format!("/session/{}", self.session), None);
    }
}
