//! Helpers shared by the end-to-end tests: a temp dir with a config, the real binary, and a
//! tiny HTTP/1.1 client over std (so the tests do not depend on the code they test).
#![allow(dead_code)]

pub mod receiver;
pub mod smtp_sink;
pub mod ui;
pub mod webdriver;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_smshub");

/// A command that runs the smshub binary. Under ARM emulation in CI the kernel cannot execute
/// an aarch64 binary by itself (no binfmt_misc in a container), so `SMSHUB_TEST_RUNNER` names
/// the emulator to put in front, e.g. `qemu-aarch64-static -L /usr/aarch64-linux-gnu`.
pub fn smshub_command() -> Command {
    match std::env::var("SMSHUB_TEST_RUNNER").ok().filter(|r| !r.trim().is_empty()) {
        Some(runner) => {
            let mut words = runner.split_whitespace();
            let mut cmd = Command::new(words.next().unwrap_or("env"));
            cmd.args(words).arg(BIN);
            cmd
        }
        None => Command::new(BIN),
    }
}

pub struct TestDir {
    pub dir: tempfile::TempDir,
}

impl TestDir {
    pub fn new() -> TestDir {
        TestDir { dir: tempfile::tempdir().unwrap() }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `name` with `content` and `mode`, returning its path.
    pub fn write(&self, name: &str, content: &str, mode: u32) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, content).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    /// A minimal valid config using this dir's database, with `extra` TOML put first (so it
    /// may hold top-level keys as well as tables).
    pub fn config(&self, extra: &str) -> PathBuf {
        let text = format!(
            "{extra}\n[store]\npath = \"{}\"\n\n[http]\nlisten = \"127.0.0.1:0\"\n\n[admin]\nlisten = \"127.0.0.1:0\"\n\n[logging]\nlevel = \"debug\"\nformat = \"stderr\"\n",
            self.path().join("smshub.db").display()
        );
        self.write("smshub.toml", &text, 0o600)
    }

    /// `smshub --config CONFIG ARGS…` with the environment of a clean shell.
    pub fn command(&self, config: &Path, args: &[&str]) -> Command {
        let mut cmd = smshub_command();
        cmd.arg("--config")
            .arg(config)
            .args(args)
            .env_remove("RUST_LOG")
            .env_remove("CREDENTIALS_DIRECTORY")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("JOURNAL_STREAM");
        cmd
    }

    pub fn smshub(&self, config: &Path, args: &[&str]) -> Output {
        self.command(config, args).output().unwrap()
    }
}

impl TestDir {
    /// Runs smshub with `input` on its stdin (e.g. `user add NAME --password-stdin`).
    pub fn smshub_with_stdin(&self, config: &Path, args: &[&str], input: &[u8]) -> Output {
        let mut child = self
            .command(config, args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The child may refuse before reading: a broken pipe is its answer, not ours.
        let _ = child.stdin.take().unwrap().write_all(input);
        child.wait_with_output().unwrap()
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A running `smshub run` whose stderr is collected on a thread.
pub struct Daemon {
    pub child: Child,
    /// The public listener, host:port.
    pub addr: String,
    /// The admin listener, host:port.
    pub admin: String,
    pub log: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Daemon {
    /// Starts the daemon and waits (up to 30 s) for its "listening on" line.
    pub fn start(config: &Path) -> Daemon {
        Daemon::start_command(Daemon::command(config))
    }

    /// The command [`Daemon::start`] runs, to adjust before [`Daemon::start_command`].
    pub fn command(config: &Path) -> Command {
        let mut cmd = smshub_command();
        cmd.arg("--config")
            .arg(config)
            .arg("run")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("JOURNAL_STREAM")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        cmd
    }

    /// Starts `cmd` (from [`Daemon::command`]) and waits for its "listening on" line.
    pub fn start_command(mut cmd: Command) -> Daemon {
        let mut child = cmd.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let log2 = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                {
                    let mut l = log2.lock().unwrap();
                    l.push_str(&line);
                    l.push('\n');
                }
                // Logged first, so the log holds the line once start() returns.
                let host_port = |rest: &str| {
                    rest.strip_prefix("http://").or_else(|| rest.strip_prefix("https://")).map(str::to_string)
                };
                if let Some(addr) = line.strip_prefix("smshub: admin on ").and_then(host_port) {
                    let _ = tx.send((true, addr));
                }
                if let Some(addr) = line.strip_prefix("smshub: listening on ").and_then(host_port) {
                    let _ = tx.send((false, addr));
                }
            }
        });
        let (mut addr, mut admin) = (None, None);
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while addr.is_none() {
            match rx.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now())) {
                Ok((true, a)) => admin = Some(a),
                Ok((false, a)) => addr = Some(a),
                Err(_) => {
                    let _ = child.kill();
                    panic!("daemon did not start; log:\n{}", log.lock().unwrap());
                }
            }
        }
        let (Some(addr), Some(admin)) = (addr, admin) else {
            let _ = child.kill();
            panic!("the daemon did not say where its admin listener is; log:\n{}", log.lock().unwrap());
        };
        Daemon { child, addr, admin, log }
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), sig).unwrap();
    }

    /// Waits up to `limit` for the process to exit and returns its status.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request; returns (status, body).
pub fn http(addr: &str, method: &str, path: &str, content_type: Option<&str>, body: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req =
        format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    if let Some(ct) = content_type {
        req.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).unwrap();
    let resp = String::from_utf8_lossy(&resp).into_owned();
    let status = resp.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = resp.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

/// An HTTP answer with its headers (names lowercased).
#[derive(Debug, Clone)]
pub struct HttpReply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpReply {
    /// The first header called `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 request with extra headers; `Host`, `Connection: close` and `Content-Length`
/// are added.
pub fn http_with(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> HttpReply {
    let mut head =
        format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let mut raw = head.into_bytes();
    raw.extend_from_slice(body);
    http_raw(addr, &raw)
}

/// Sends `raw` bytes as they are (for malformed requests) and reads the answer.
pub fn http_raw(addr: &str, raw: &[u8]) -> HttpReply {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(raw).unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).unwrap();
    let resp = String::from_utf8_lossy(&resp).into_owned();
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((resp.as_str(), ""));
    let mut lines = head.split("\r\n");
    let status = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|c| c.parse().ok()).unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    HttpReply { status, headers, body: body.to_string() }
}

/// A `smshub sim` process with its control socket and pty link.
pub struct Sim {
    pub child: Child,
    pub link: PathBuf,
    pub control: PathBuf,
}

impl Sim {
    /// Starts `smshub sim` with `args`, waiting for its `pty:` line.
    pub fn start(dir: &Path, args: &[&str]) -> Sim {
        let link = dir.join("modem");
        let control = dir.join("sim.sock");
        let mut child = smshub_command()
            .arg("sim")
            .arg("--link")
            .arg(&link)
            .arg("--control")
            .arg(&control)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let first = lines.next().and_then(|l| l.ok()).unwrap_or_default();
        assert!(first.starts_with("pty: "), "simulator did not start: {first:?}");
        std::thread::spawn(move || for _ in lines {});
        let start = Instant::now();
        while !control.exists() && start.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(20));
        }
        Sim { child, link, control }
    }

    /// One control request (a JSON line) and its answer.
    pub fn request(&self, req: serde_json::Value) -> serde_json::Value {
        let mut s = std::os::unix::net::UnixStream::connect(&self.control).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s.write_all(format!("{req}\n").as_bytes()).unwrap();
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line).unwrap();
        serde_json::from_str(&line).unwrap()
    }

    /// The decoded log of what the simulator was asked to send.
    pub fn sent(&self) -> Vec<serde_json::Value> {
        self.request(serde_json::json!({"cmd": "sent"}))["sent"].as_array().cloned().unwrap_or_default()
    }

    /// Waits up to `limit` until `pred` holds for the sent log.
    pub fn wait_sent(&self, limit: Duration, pred: impl Fn(&[serde_json::Value]) -> bool) -> Vec<serde_json::Value> {
        let start = Instant::now();
        loop {
            let sent = self.sent();
            if pred(&sent) || start.elapsed() > limit {
                return sent;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `f` every 100 ms until it returns Some or `limit` passes.
pub fn wait_for<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if start.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
