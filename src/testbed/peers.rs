//! What the bench and the soak share: a webhook caller playing Provet, a receiver playing the
//! clinic's software, and the daemon as a child process.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// POSTs a webhook for Provet instance `instance` and returns the status code.
pub async fn post_webhook_to(addr: &str, instance: &str, token: &str, id: i64) -> anyhow::Result<u16> {
    let body = format!("{{\"external_sms_id\": {id}}}");
    post_json(addr, &format!("/provet/{instance}/webhook/{token}"), "", &body).await
}

/// POSTs the JSON `body` to `path` (with `headers`, each ending in CRLF) on one connection and
/// returns the status code.
pub async fn post_json(addr: &str, path: &str, headers: &str, body: &str) -> anyhow::Result<u16> {
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\n{headers}Connection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(req.as_bytes()).await?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).await?;
    let text = String::from_utf8_lossy(&resp);
    Ok(text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0))
}

/// One request a [`start_receiver`] receiver read.
#[derive(Debug, Clone)]
pub struct Arrival {
    /// The request line and headers.
    pub head: String,
    pub body: Vec<u8>,
    /// When its first byte was read.
    pub at: Instant,
}

impl Arrival {
    /// A form field of the body (PBX-style forwards).
    pub fn field(&self, name: &str) -> Option<String> {
        form_urlencoded::parse(&self.body).find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
    }

    /// A header's value (name case-insensitive).
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }
}

/// Shared list of what a receiver got.
pub type Arrivals = Arc<std::sync::Mutex<Vec<Arrival>>>;

/// A receiver playing the clinic's software (a PBX-style forward target, an event webhook):
/// records each request with the instant of its first byte, answers 200 and closes the
/// connection (so every POST opens a new one and its first read is the request's first byte).
pub async fn start_receiver() -> anyhow::Result<(String, Arrivals)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let arrivals: Arrivals = Arc::default();
    let log = arrivals.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let mut first = None;
                loop {
                    let Ok(n) = stream.read(&mut chunk).await else { return };
                    if n == 0 {
                        return;
                    }
                    first.get_or_insert_with(Instant::now);
                    buf.extend_from_slice(&chunk[..n]);
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else { continue };
                    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                    let len = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_string())
                        })
                        .and_then(|v| v.parse::<usize>().ok())
                        .unwrap_or(0);
                    let body = &buf[end + 4..];
                    if body.len() < len {
                        continue;
                    }
                    if let (Ok(mut l), Some(at)) = (log.lock(), first) {
                        l.push(Arrival { head, body: body.to_vec(), at });
                    }
                    let _ =
                        stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nOK").await;
                    return;
                }
            });
        }
    });
    Ok((format!("http://{addr}/in"), arrivals))
}

/// The daemon as a child process.
pub struct DaemonProcess {
    pub child: Option<Child>,
    cfg: PathBuf,
    log: PathBuf,
    /// The public listener, host:port.
    pub addr: String,
}

impl DaemonProcess {
    /// A daemon on config `cfg`, logging to `log`, whose public listener is `addr` (not started).
    pub fn new(cfg: PathBuf, log: PathBuf, addr: String) -> DaemonProcess {
        DaemonProcess { child: None, cfg, log, addr }
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn start(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log)?;
        let exe = std::env::current_exe()?;
        // A profiler to run the daemon under (`contrib/idle-code/profile.sh`): the bench then measures it
        // under that tool, so its figures are not the daemon's own.
        let wrapper = std::env::var("SMSHUB_BENCH_WRAPPER").unwrap_or_default();
        let mut words = wrapper.split_whitespace();
        let mut command = match words.next() {
            Some(tool) => {
                eprintln!(
                    "bench: the daemon runs under `{wrapper}` (SMSHUB_BENCH_WRAPPER): its figures are not its own"
                );
                let mut c = Command::new(tool);
                c.args(words).arg(&exe);
                c
            }
            None => Command::new(&exe),
        };
        let child = command
            .arg("--config")
            .arg(&self.cfg)
            .arg("run")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("JOURNAL_STREAM")
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .context("starting the daemon")?;
        self.child = Some(child);
        Ok(())
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill(); // SIGKILL
            let _ = c.wait();
        }
    }

    /// Whether the daemon exited on its own (a crash): its status.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }
}

impl Drop for DaemonProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
