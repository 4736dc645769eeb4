//! The simulator's control channel: commands as JSON, over a Unix socket ([`SimClient`]) or
//! in-process ([`SimControl`]). Both go to the same handler in the simulator task, so a test
//! that uses one sees exactly what the demo sees with the other. The protocol is documented in
//! the parent module.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, oneshot, watch};

use super::faults::FaultUpdate;

/// A control command as it arrives, and where its answer goes.
pub(super) type ControlRequest = (Value, oneshot::Sender<Value>);

/// The commands of the control protocol.
#[derive(Debug, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case", deny_unknown_fields)]
pub(super) enum Command {
    Inject {
        from: String,
        text: String,
        #[serde(default)]
        order: Option<Vec<usize>>,
        #[serde(default)]
        timestamp: Option<i64>,
    },
    InjectPdu {
        pdu: String,
    },
    Report {
        message_ref: u8,
        #[serde(default)]
        status: u8,
        #[serde(default)]
        to: Option<String>,
    },
    Sent,
    Storage,
    Unplug,
    Replug,
    Stats,
    Set(FaultUpdate),
}

/// Longest control line accepted; an inject of a very long text stays far below this.
const MAX_REQUEST: usize = 1 << 20;
/// How long a client waits for an answer. The simulator answers control commands at once,
/// even while a send is "in the network", so this only trips when it is stuck or gone.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

fn error_value(msg: impl Into<String>) -> Value {
    json!({"ok": false, "error": msg.into()})
}

pub(super) fn parse(v: Value) -> Result<Command, Value> {
    serde_json::from_value(v).map_err(|e| error_value(format!("bad control command: {e}")))
}

/// Turns `{"ok": false, "error": ...}` into an io::Error, so helpers can use `?`.
fn check(v: Value) -> io::Result<Value> {
    if v.get("ok").and_then(Value::as_bool) == Some(true) {
        Ok(v)
    } else {
        let msg = v.get("error").and_then(Value::as_str).unwrap_or("simulator refused the command").to_string();
        Err(io::Error::other(msg))
    }
}

fn with_cmd(cmd: &str, fields: Value) -> Value {
    let mut v = match fields {
        Value::Object(m) => m,
        _ => serde_json::Map::new(),
    };
    v.insert("cmd".into(), Value::String(cmd.into()));
    Value::Object(v)
}

fn sent_list(v: Value) -> Vec<Value> {
    match v.get("sent") {
        Some(Value::Array(a)) => a.clone(),
        _ => Vec::new(),
    }
}

fn pty_of(v: &Value) -> io::Result<PathBuf> {
    v.get("pty")
        .and_then(Value::as_str)
        .map(PathBuf::from)
        .ok_or_else(|| io::Error::other("replug answer without a pty path"))
}

/// In-process control of a simulator started with [`super::start`]. Cheap to clone.
#[derive(Debug, Clone)]
pub struct SimControl {
    tx: mpsc::Sender<ControlRequest>,
}

impl SimControl {
    pub(super) fn new(tx: mpsc::Sender<ControlRequest>) -> Self {
        Self { tx }
    }

    /// Sends one command (see the protocol in the module doc) and returns the answer as is.
    pub async fn request(&self, req: Value) -> io::Result<Value> {
        let (reply_tx, reply_rx) = oneshot::channel();
        self.tx
            .send((req, reply_tx))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "simulator has stopped"))?;
        match tokio::time::timeout(ANSWER_TIMEOUT, reply_rx).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(_)) => Err(io::Error::new(io::ErrorKind::BrokenPipe, "simulator stopped before answering")),
            Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "simulator did not answer the control command")),
        }
    }

    /// Delivers a text from `from` as the network would (split into parts as needed).
    pub async fn inject(&self, from: &str, text: &str) -> io::Result<Value> {
        check(self.request(json!({"cmd": "inject", "from": from, "text": text})).await?)
    }

    /// The decoded log of every accepted +CMGS.
    pub async fn sent(&self) -> io::Result<Vec<Value>> {
        Ok(sent_list(check(self.request(json!({"cmd": "sent"})).await?)?))
    }

    /// Closes the pty: the client sees EOF or EIO.
    pub async fn unplug(&self) -> io::Result<()> {
        check(self.request(json!({"cmd": "unplug"})).await?).map(drop)
    }

    /// Opens a new pty (and repoints the link); returns the new pty path.
    pub async fn replug(&self) -> io::Result<PathBuf> {
        pty_of(&check(self.request(json!({"cmd": "replug"})).await?)?)
    }
    /// Stores a raw PDU hex (e.g. a malformed one) as if delivered.
    pub async fn inject_pdu(&self, hex: &str) -> io::Result<Value> {
        check(self.request(json!({"cmd": "inject_pdu", "pdu": hex})).await?)
    }

    /// Sends a status report (TP-ST `status`) for a sent message reference.
    pub async fn report(&self, message_ref: u8, status: u8) -> io::Result<()> {
        check(self.request(json!({"cmd": "report", "message_ref": message_ref, "status": status})).await?).map(drop)
    }

    /// Changes faults at runtime: `fields` is the `set` object without `cmd`.
    pub async fn set(&self, fields: Value) -> io::Result<()> {
        check(self.request(with_cmd("set", fields)).await?).map(drop)
    }

    pub async fn storage(&self) -> io::Result<Value> {
        check(self.request(json!({"cmd": "storage"})).await?)
    }

    pub async fn stats(&self) -> io::Result<Value> {
        check(self.request(json!({"cmd": "stats"})).await?)
    }
}

/// A connection to a running simulator's control socket (`--control PATH`).
#[derive(Debug)]
pub struct SimClient {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
}

impl SimClient {
    pub async fn connect(path: &Path) -> io::Result<Self> {
        let stream = UnixStream::connect(path).await.map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "{}: cannot connect to the simulator's control socket: {e} (is `smshub sim --control` running?)",
                    path.display()
                ),
            )
        })?;
        let (r, w) = stream.into_split();
        Ok(Self { reader: BufReader::new(r), writer: w })
    }

    /// Sends one command and reads its one-line answer.
    pub async fn request(&mut self, req: Value) -> io::Result<Value> {
        let mut line = serde_json::to_string(&req).map_err(io::Error::other)?;
        line.push('\n');
        self.writer.write_all(line.as_bytes()).await?;
        let mut answer = String::new();
        let n = tokio::time::timeout(ANSWER_TIMEOUT, self.reader.read_line(&mut answer))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "simulator did not answer"))??;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "simulator closed the control connection"));
        }
        serde_json::from_str(&answer)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("simulator answered with bad JSON: {e}")))
    }

    pub async fn inject(&mut self, from: &str, text: &str) -> io::Result<Value> {
        check(self.request(json!({"cmd": "inject", "from": from, "text": text})).await?)
    }

    pub async fn sent(&mut self) -> io::Result<Vec<Value>> {
        Ok(sent_list(check(self.request(json!({"cmd": "sent"})).await?)?))
    }

    pub async fn unplug(&mut self) -> io::Result<()> {
        check(self.request(json!({"cmd": "unplug"})).await?).map(drop)
    }

    pub async fn replug(&mut self) -> io::Result<PathBuf> {
        pty_of(&check(self.request(json!({"cmd": "replug"})).await?)?)
    }
    pub async fn inject_pdu(&mut self, hex: &str) -> io::Result<Value> {
        check(self.request(json!({"cmd": "inject_pdu", "pdu": hex})).await?)
    }

    pub async fn report(&mut self, message_ref: u8, status: u8) -> io::Result<()> {
        check(self.request(json!({"cmd": "report", "message_ref": message_ref, "status": status})).await?).map(drop)
    }

    pub async fn set(&mut self, fields: Value) -> io::Result<()> {
        check(self.request(with_cmd("set", fields)).await?).map(drop)
    }

    pub async fn storage(&mut self) -> io::Result<Value> {
        check(self.request(json!({"cmd": "storage"})).await?)
    }

    pub async fn stats(&mut self) -> io::Result<Value> {
        check(self.request(json!({"cmd": "stats"})).await?)
    }
}

/// Binds the control socket, replacing a stale socket file (but never any other kind of file).
pub(super) fn bind(path: &Path) -> io::Result<tokio::net::UnixListener> {
    use std::os::unix::fs::FileTypeExt;
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if meta.file_type().is_socket() {
            std::fs::remove_file(path)?;
        } else {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{}: exists and is not a socket; choose another --control path", path.display()),
            ));
        }
    }
    tokio::net::UnixListener::bind(path)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: cannot bind control socket: {e}", path.display())))
}

/// Accepts control connections until shutdown; one task per connection.
pub(super) async fn serve(
    listener: tokio::net::UnixListener,
    control: SimControl,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            r = shutdown.changed() => {
                if r.is_err() || *shutdown.borrow() {
                    break;
                }
            }
            conn = listener.accept() => match conn {
                Ok((stream, _)) => {
                    tokio::spawn(connection(stream, control.clone(), shutdown.clone()));
                }
                Err(e) => {
                    tracing::warn!("sim control socket accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

async fn connection(stream: UnixStream, control: SimControl, mut shutdown: watch::Receiver<bool>) {
    let (r, mut w) = stream.into_split();
    let mut reader = BufReader::new(r);
    let mut line = String::new();
    loop {
        line.clear();
        let mut limited = (&mut reader).take(MAX_REQUEST as u64);
        let n = tokio::select! {
            _ = shutdown.changed() => return,
            n = limited.read_line(&mut line) => n,
        };
        let answer = match n {
            Ok(0) | Err(_) => return,
            Ok(_) if !line.ends_with('\n') && line.len() >= MAX_REQUEST => error_value("control line too long"),
            Ok(_) if line.trim().is_empty() => continue,
            Ok(_) => match serde_json::from_str::<Value>(&line) {
                Ok(v) => match control.request(v).await {
                    Ok(a) => a,
                    Err(e) => error_value(e.to_string()),
                },
                Err(e) => error_value(format!("bad JSON: {e}")),
            },
        };
        let mut out = answer.to_string();
        out.push('\n');
        if w.write_all(out.as_bytes()).await.is_err() {
            return;
        }
    }
}
