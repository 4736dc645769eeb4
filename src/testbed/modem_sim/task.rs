//! The simulator's one task: owns the pty, the [`Modem`] state and the timers, and answers the
//! control channel. One owner means no locks, and the order of bytes on the wire is exactly the
//! order in which the modem produced them.

use std::collections::VecDeque;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::at_server::{Event, Modem, Out};
use super::control::{self, Command, ControlRequest};
use super::faults::check_rate;
use crate::modem::tty::{TtyStream, open_pty_pair};

/// The "plugged in" modem: the pty master we talk through and the slave fd we keep open (see
/// [`open_pty_pair`] for why).
struct Device {
    master: TtyStream,
    _slave: OwnedFd,
}

pub(super) struct SimTask {
    pub modem: Modem,
    device: Option<Device>,
    link: Option<PathBuf>,
    /// Bytes waiting for their time (after a simulated latency) in wire order.
    outq: VecDeque<(Instant, Vec<u8>)>,
    /// Bytes of the front of `outq` already written.
    written: usize,
    timers: Vec<(Instant, Event)>,
    ctrl_rx: mpsc::Receiver<ControlRequest>,
    pty_tx: watch::Sender<PathBuf>,
}

/// Most output bytes queued for a client that does not read.
const MAX_PENDING: usize = 256 * 1024;

pub(super) fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

fn now_unix() -> i64 {
    (now_ms() / 1000) as i64
}

/// Points `link` at `target`, atomically: a new symlink under a temporary name renamed over the
/// old one, so a client never sees the link missing or half-made. Refuses to replace anything
/// that is not a symlink (a typo in --link must not delete a real file).
pub(super) fn update_link(link: &Path, target: &Path) -> io::Result<()> {
    if let Ok(meta) = std::fs::symlink_metadata(link)
        && !meta.file_type().is_symlink()
    {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{}: exists and is not a symlink; choose another --link path", link.display()),
        ));
    }
    let name = link.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "link".into());
    let tmp = link.with_file_name(format!(".{name}.tmp{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: cannot create symlink: {e}", tmp.display())))?;
    std::fs::rename(&tmp, link)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: cannot replace symlink: {e}", link.display())))
}

/// Opens a new pty pair and points the link at it; returns the device and the slave's path.
fn plug(link: Option<&Path>) -> io::Result<(Device, PathBuf)> {
    let (master, path, slave) = open_pty_pair()?;
    if let Some(l) = link {
        update_link(l, &path)?;
    }
    Ok((Device { master, _slave: slave }, path))
}

enum Io {
    Read(io::Result<usize>),
    Wrote(io::Result<usize>),
}

/// One I/O step on the pty: write `out` if given, else read. Both are cancel-safe single
/// operations, so the task's select loop stays responsive to control and shutdown.
async fn device_io(device: &mut Option<Device>, buf: &mut [u8], out: Option<&[u8]>) -> Io {
    match (device, out) {
        (Some(d), Some(bytes)) => Io::Wrote(d.master.write(bytes).await),
        (Some(d), None) => Io::Read(d.master.read(buf).await),
        (None, _) => std::future::pending().await,
    }
}

impl SimTask {
    /// Creates the first pty; returns the task and the pty path.
    pub fn new(
        modem: Modem,
        link: Option<PathBuf>,
        ctrl_rx: mpsc::Receiver<ControlRequest>,
    ) -> io::Result<(Self, PathBuf, watch::Receiver<PathBuf>)> {
        let (device, path) = plug(link.as_deref())?;
        let (pty_tx, pty_rx) = watch::channel(path.clone());
        Ok((
            Self {
                modem,
                device: Some(device),
                link,
                outq: VecDeque::new(),
                written: 0,
                timers: Vec::new(),
                ctrl_rx,
                pty_tx,
            },
            path,
            pty_rx,
        ))
    }

    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut buf = [0u8; 1024];
        let mut control_open = true;
        loop {
            let now = Instant::now();
            let front_due = self.outq.front().is_some_and(|(t, _)| *t <= now);
            let next_out = self.outq.front().map(|(t, _)| *t).filter(|_| !front_due);
            let next_timer = self.timers.iter().map(|(t, _)| *t).min();
            let wake = next_out.into_iter().chain(next_timer).min();
            // Output that is due goes first; while output waits (a send "in the network") the
            // modem reads nothing more, like a real one busy with the network.
            let to_write = self.outq.front().filter(|_| front_due).and_then(|(_, b)| b.get(self.written..));
            let io_enabled = self.device.is_some() && (front_due || self.outq.is_empty());
            tokio::select! {
                r = shutdown.changed() => {
                    if r.is_err() || *shutdown.borrow() {
                        break;
                    }
                }
                req = self.ctrl_rx.recv(), if control_open => match req {
                    Some((v, reply)) => {
                        let answer = self.control(v);
                        let _ = reply.send(answer);
                    }
                    None => control_open = false,
                },
                io = device_io(&mut self.device, &mut buf, to_write), if io_enabled => match io {
                    Io::Read(Ok(n)) if n > 0 => {
                        let outs = self.modem.feed(buf.get(..n).unwrap_or(&[]), now_ms());
                        self.push(outs);
                        let more = self.modem.retry_network_queue();
                        self.push(more);
                    }
                    // We keep a slave fd open, so this only happens if the pty broke.
                    Io::Read(_) => {
                        tracing::warn!("sim: pty master read failed or hit EOF; unplugging");
                        self.unplug();
                    }
                    Io::Wrote(Ok(n)) => self.wrote(n),
                    Io::Wrote(Err(e)) => {
                        tracing::warn!("sim: write to pty failed: {e}; unplugging");
                        self.unplug();
                    }
                },
                _ = tokio::time::sleep_until(wake.unwrap_or(now)), if wake.is_some() => {
                    self.fire_timers();
                }
            }
        }
        self.unplug();
    }

    fn wrote(&mut self, n: usize) {
        self.written += n;
        if self.outq.front().is_some_and(|(_, b)| self.written >= b.len()) {
            self.outq.pop_front();
            self.written = 0;
        }
    }

    /// Queues the modem's output. A client that stops reading fills the pty buffer and then this
    /// queue; past [`MAX_PENDING`] bytes new output is dropped, as a UART overruns, so memory
    /// stays bounded while control and shutdown keep working.
    fn push(&mut self, outs: Vec<Out>) {
        let now = Instant::now();
        let mut pending: usize = self.outq.iter().map(|(_, b)| b.len()).sum();
        let mut cursor = self.outq.back().map(|(t, _)| *t).unwrap_or(now).max(now);
        for o in outs {
            match o {
                Out::Bytes(b) if pending + b.len() > MAX_PENDING => {
                    tracing::warn!("sim: client is not reading; dropped {} bytes", b.len());
                }
                Out::Bytes(b) => {
                    pending += b.len();
                    self.outq.push_back((cursor, b));
                }
                Out::Delay(d) => cursor += d,
                Out::Schedule(d, e) => self.timers.push((now + d, e)),
            }
        }
    }

    fn fire_timers(&mut self) {
        let now = Instant::now();
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.timers).into_iter().partition(|(t, _)| *t <= now);
        self.timers = later;
        for (_, event) in due {
            match event {
                Event::StatusReport { message_ref, recipient, status } => {
                    match self.modem.status_report(message_ref, &recipient, status, now_unix()) {
                        Ok(outs) => self.push(outs),
                        Err(e) => tracing::warn!("sim: cannot build status report: {e}"),
                    }
                }
                Event::CdsAckTimeout { id } => {
                    let outs = self.modem.cds_ack_timeout(id);
                    self.push(outs);
                }
                Event::Redeliver { hex } => {
                    let outs = self.modem.route_report(hex);
                    self.push(outs);
                }
            }
        }
    }

    fn unplug(&mut self) -> bool {
        let was = self.device.take().is_some();
        self.outq.clear();
        self.written = 0;
        if let Some(l) = &self.link {
            // A real by-id link disappears with the device.
            let _ = std::fs::remove_file(l);
        }
        was
    }

    fn control(&mut self, v: Value) -> Value {
        let cmd = match control::parse(v) {
            Ok(c) => c,
            Err(e) => return e,
        };
        match cmd {
            Command::Inject { from, text, order, timestamp } => self.inject(&from, &text, order, timestamp),
            Command::InjectPdu { pdu } => {
                if pdu.is_empty() || !pdu.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return json!({"ok": false, "error": "pdu must be non-empty hex"});
                }
                let (idx, outs) = self.modem.deliver(vec![pdu.to_ascii_uppercase()]);
                self.push(outs);
                json!({"ok": true, "indices": idx})
            }
            Command::Report { message_ref, status, to } => {
                let Some(recipient) = to.or_else(|| self.modem.recipient_of(message_ref)) else {
                    return json!({"ok": false, "error": format!("no sent message with message_ref {message_ref}; give \"to\"")});
                };
                match self.modem.status_report(message_ref, &recipient, status, now_unix()) {
                    Ok(outs) => {
                        self.push(outs);
                        json!({"ok": true})
                    }
                    Err(e) => {
                        json!({"ok": false, "error": format!("cannot encode status report: {e}")})
                    }
                }
            }
            Command::Sent => json!({"ok": true, "sent": self.modem.sent}),
            Command::Storage => {
                let s = &self.modem.storage;
                let messages: Vec<Value> = s
                    .snapshot()
                    .into_iter()
                    .map(|(i, m)| json!({"index": i, "stat": m.stat.code(), "pdu": m.pdu}))
                    .collect();
                json!({"ok": true, "capacity": s.capacity(), "used": s.used(), "queued": s.queued(), "messages": messages})
            }
            Command::Unplug => {
                let was = self.unplug();
                json!({"ok": true, "was_plugged": was})
            }
            Command::Replug => {
                self.unplug();
                match plug(self.link.as_deref()) {
                    Ok((device, path)) => {
                        self.device = Some(device);
                        self.modem.power_cycle();
                        let _ = self.pty_tx.send(path.clone());
                        json!({"ok": true, "pty": path})
                    }
                    Err(e) => json!({"ok": false, "error": e.to_string()}),
                }
            }
            Command::Stats => json!({
                "ok": true,
                "commands": self.modem.stats,
                "total": self.modem.commands_total,
                "sends": self.modem.sends_total,
                "sent": self.modem.sent.len(),
                "hung": self.modem.hung(),
                "plugged": self.device.is_some(),
            }),
            Command::Set(u) => {
                for r in [u.cms_error_rate, u.garbage_rate].into_iter().flatten() {
                    if let Err(e) = check_rate(r) {
                        return json!({"ok": false, "error": e});
                    }
                }
                self.modem.apply(&u);
                if let Some(r) = u.registered {
                    let outs = self.modem.set_registered(r);
                    self.push(outs);
                }
                json!({"ok": true})
            }
        }
    }

    fn inject(&mut self, from: &str, text: &str, order: Option<Vec<usize>>, timestamp: Option<i64>) -> Value {
        let ts = timestamp.unwrap_or_else(now_unix);
        let parts = match self.modem.encode_inbound(from, text, ts) {
            Ok(p) => p,
            Err(e) => return json!({"ok": false, "error": format!("cannot encode: {e}")}),
        };
        let n = parts.len();
        let order = order.unwrap_or_else(|| (1..=n).collect());
        let mut sorted = order.clone();
        sorted.sort_unstable();
        if sorted != (1..=n).collect::<Vec<_>>() {
            return json!({"ok": false, "error": format!("order must list each part 1..={n} once")});
        }
        let pdus: Vec<String> = order.iter().filter_map(|i| parts.get(i.wrapping_sub(1)).cloned()).collect();
        let (idx, outs) = self.modem.deliver(pdus);
        self.push(outs);
        json!({"ok": true, "parts": n, "indices": idx})
    }
}
