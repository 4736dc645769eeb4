//! The modem driver: what AT responses mean.
//!
//! One task owns the port (through an [`AtClient`]) and runs the modem's life: open, init (echo off,
//! numeric errors, PIN, registration, PDU mode, storage, new-message indications), drain stored messages,
//! send parts one `+CMGS` at a time, read messages announced by `+CMTI`, health checks, and recovery
//! (probe after a timeout, reopen after the device vanished). Everything else talks to it through a
//! [`ModemHandle`] and receives messages as [`InboundEvent`]s.
//!
//! Invariants:
//! * The PIN is entered at most once per rejection history: if the modem ever refused it (or the
//!   outcome of entering it is unknown), it is never sent again by this process. A PUK lock is a disaster.
//! * The driver never deletes a message on its own; the consumer calls [`ModemHandle::delete`] after it
//!   has stored the message.
//! * A send whose PDU was written but not acknowledged is [`SendError::Unknown`], never retried here.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use super::at::{self, AtClient, AtError, CmeError, RegKind, Urc, fields, response_fields};
use super::profile::{self, Profile, ProfileKind};

/// Settings of one modem.
#[derive(Debug, Clone)]
pub struct DriverConfig {
    /// Shown in logs and status (`[[modem]] name`).
    pub name: String,
    /// The SIM PIN, if the SIM has one. Entered at most once (see the module doc).
    pub pin: Option<String>,
    pub profile: ProfileKind,
    /// Timeout of ordinary commands.
    pub command_timeout: Duration,
    /// How long `AT+CMGS=<len>` may wait for the `> ` prompt. A live modem prompts within
    /// milliseconds (it needs no network for that); silence means it hung, and nothing was sent
    /// yet. Short, because the message waits in this modem's hands meanwhile: prompt wait plus
    /// one probe is the time a pool needs to move the message to another modem (≤ 15 s).
    pub prompt_timeout: Duration,
    /// How long the one `AT` probe after a timeout waits. A modem that answers anything answers
    /// `AT` at once; one silent probe is enough to call it hung (the old three probes only added
    /// 20 s before the reopen, and a reopen of a live port costs a re-init, nothing more).
    pub probe_timeout: Duration,
    /// Timeout of a `+CMGS` after the PDU was written; the profile's value is used when it is shorter
    /// (a SIM800 answers within 60 s or not at all).
    pub send_timeout: Duration,
    /// How long init waits for registration before it goes on (sending then waits for registration).
    pub registration_timeout: Duration,
    /// Period of the health check (+CSQ, registration, storage).
    pub health_interval: Duration,
    /// Pause between two sends (carriers flag machine-like bursts).
    pub min_send_interval: Duration,
    /// Upper bound of the reopen backoff after the device vanished.
    pub reopen_backoff_max: Duration,
}

impl Default for DriverConfig {
    fn default() -> Self {
        DriverConfig {
            name: "modem".into(),
            pin: None,
            profile: ProfileKind::Auto,
            command_timeout: Duration::from_secs(10),
            prompt_timeout: Duration::from_secs(5),
            probe_timeout: Duration::from_secs(5),
            send_timeout: Duration::from_secs(120),
            registration_timeout: Duration::from_secs(60),
            health_interval: Duration::from_secs(60),
            min_send_interval: Duration::ZERO,
            reopen_backoff_max: Duration::from_secs(60),
        }
    }
}

/// A byte stream to a modem: a serial port, a pty, or a test pipe.
pub trait ModemIo: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> ModemIo for T {}

/// Opens the device. Called at start and after every loss of the device, so it should open by a stable
/// path (`/dev/serial/by-id/...` or the udev symlink) that survives re-enumeration.
pub type Connector = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = io::Result<Box<dyn ModemIo>>> + Send>> + Send + Sync>;

mod acks;
mod init;
mod outcome;
mod status;
mod storage;
#[cfg(test)]
mod tests;

pub use acks::Ack;
pub use outcome::{ModemError, PERMANENT_CMS, SendError, TRANSIENT_CMS, classify_cms};
pub use status::{Identity, ModemState, ModemStatus, Registration, Storage};

/// A message or report read from the modem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InboundEvent {
    /// A message stored at `mem`/`index`. Delete it with [`ModemHandle::delete`] once stored.
    Stored { mem: String, index: u32, pdu_hex: String },
    /// A status report; `stored` is where it sits on the modem (delete it likewise), `None` when it was
    /// delivered directly (`+CDS`): then call [`ModemHandle::acknowledge`] once it is recorded and synced.
    StatusReport { pdu_hex: String, stored: Option<(String, u32)> },
    /// A message delivered directly (`+CMT`, e.g. class 0 or a modem ignoring our +CNMI): it is not on
    /// the modem, so there is nothing to delete, and it will not come again unless it goes
    /// unacknowledged: call [`ModemHandle::acknowledge`] once it is stored and synced.
    Direct { pdu_hex: String },
}

enum Request {
    Send { hex: String, len: usize, reply: oneshot::Sender<Result<u8, SendError>> },
    Delete { mem: String, index: u32, reply: oneshot::Sender<Result<(), ModemError>> },
    Drain,
    Ack(Ack),
}

/// Handle to the driver task. Cheap to clone.
#[derive(Clone, Debug)]
pub struct ModemHandle {
    tx: mpsc::Sender<Request>,
    status: watch::Receiver<ModemStatus>,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Request::Send { len, .. } => write!(f, "Send({len} octets)"),
            Request::Delete { mem, index, .. } => write!(f, "Delete({mem},{index})"),
            Request::Drain => write!(f, "Drain"),
            Request::Ack(a) => write!(f, "Ack({a:?})"),
        }
    }
}

/// The far end of [`ModemHandle::detached`].
#[cfg(test)]
pub(crate) struct Detached(mpsc::Receiver<Request>);

#[cfg(test)]
impl Detached {
    /// The requests sent so far, as their `Debug` text (`Send(23 octets)`, …).
    pub(crate) fn requests(&mut self) -> Vec<String> {
        std::iter::from_fn(|| self.0.try_recv().ok()).map(|r| format!("{r:?}")).collect()
    }
}

impl ModemHandle {
    /// A handle with no driver behind it, in `state`, for tests of its callers: what it asks of
    /// the modem is seen through [`Detached::requests`].
    #[cfg(test)]
    pub(crate) fn detached(state: ModemState) -> (ModemHandle, Detached) {
        let (tx, requests) = mpsc::channel(8);
        let (_, status) = watch::channel(ModemStatus { state, ..ModemStatus::new() });
        (ModemHandle { tx, status }, Detached(requests))
    }

    /// Send one part (PDU hex with the leading SMSC field, TPDU length for `AT+CMGS`). Returns the
    /// TP-Message-Reference. One `+CMGS` at a time; `min_send_interval` is honoured.
    ///
    /// Dropping this future before it completes (e.g. under the caller's own timeout) means: if the
    /// driver had not started the `+CMGS` yet, the part is not sent at all; if it had, the outcome is
    /// unknown to the caller. Treat a dropped send as "outcome unknown", never as "not sent".
    pub async fn send_part(&self, part_hex: &str, tpdu_len: usize) -> Result<u8, SendError> {
        let (reply, answer) = oneshot::channel();
        let req = Request::Send { hex: part_hex.to_string(), len: tpdu_len, reply };
        if self.tx.send(req).await.is_err() {
            return Err(SendError::NotReady { state: "driver stopped".into() });
        }
        // If the driver vanished while holding the request we cannot know whether the PDU went out.
        answer.await.unwrap_or(Err(SendError::Unknown { reason: "modem driver stopped during the send".into() }))
    }

    /// Delete a message from the modem. Call only after the message is stored for good.
    pub async fn delete(&self, mem: &str, index: u32) -> Result<(), ModemError> {
        let (reply, answer) = oneshot::channel();
        let req = Request::Delete { mem: mem.to_string(), index, reply };
        self.tx.send(req).await.map_err(|_| ModemError::Stopped)?;
        answer.await.unwrap_or(Err(ModemError::Stopped))
    }

    /// The status, updated by the driver.
    pub fn status(&self) -> watch::Receiver<ModemStatus> {
        self.status.clone()
    }

    /// Ask the driver to list the storage again (messages not yet handed out are emitted).
    pub async fn request_drain(&self) {
        let _ = self.tx.send(Request::Drain).await;
    }

    /// The verdict on a directly delivered PDU ([`InboundEvent::StatusReport`] with `stored: None`,
    /// [`InboundEvent::Direct`]), given once per event after it is committed and synced (or found
    /// unusable). The driver answers the modem with `AT+CNMA` only when `AT+CSMS=1` made it wait for
    /// one; an event that is never judged is not acknowledged, and the network resends it.
    pub async fn acknowledge(&self, ack: Ack) {
        let _ = self.tx.send(Request::Ack(ack)).await;
    }
}

/// Start the driver task. It runs until `shutdown` becomes true (or its sender is dropped, or every
/// handle is dropped), finishing the exchange in flight first.
pub fn spawn(
    cfg: DriverConfig,
    connector: Connector,
    shutdown: watch::Receiver<bool>,
) -> (ModemHandle, mpsc::Receiver<InboundEvent>, tokio::task::JoinHandle<()>) {
    let (tx, requests) = mpsc::channel(32);
    let (inbound_tx, inbound_rx) = mpsc::channel(64);
    let (status_tx, status_rx) = watch::channel(ModemStatus::new());
    let driver = Driver {
        profile: cfg.profile.profile(),
        cfg,
        connector,
        shutdown,
        requests,
        inbound: inbound_tx,
        outbox: VecDeque::new(),
        status: status_tx,
        pin: PinHistory::NeverSent,
        pending: HashMap::new(),
        last_send: None,
        initialised_since_open: false,
        acks: acks::Acks::default(),
    };
    let join = tokio::spawn(driver.run());
    (ModemHandle { tx, status: status_rx }, inbound_rx, join)
}

/// Why a session (one open port) stopped.
#[derive(Debug)]
enum Exit {
    Shutdown,
    /// The device is gone: reopen through the connector.
    Gone(String),
    /// The modem answers AT but lost its setup or hung in a command: init again on the same port.
    Reinit(String),
    /// Setup failed in a way a retry later may fix (e.g. +CMGF=0 refused).
    Failed(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PinHistory {
    NeverSent,
    /// Sent; whether the SIM took it is not confirmed yet.
    Unconfirmed,
    Accepted,
    /// Refused, or unconfirmed at a later init: never send again.
    Rejected(String),
}

struct Driver {
    cfg: DriverConfig,
    profile: Profile,
    connector: Connector,
    shutdown: watch::Receiver<bool>,
    requests: mpsc::Receiver<Request>,
    inbound: mpsc::Sender<InboundEvent>,
    /// Events waiting for the consumer; flushed from the main loop so a slow consumer that calls
    /// `delete` cannot deadlock against a driver blocked on a full channel.
    outbox: VecDeque<InboundEvent>,
    status: watch::Sender<ModemStatus>,
    pin: PinHistory,
    /// Stored messages handed out and not yet deleted: (mem, index) → PDU. Not emitted again while the
    /// same PDU sits there.
    pending: HashMap<(String, u32), String>,
    last_send: Option<Instant>,
    /// Whether init completed on the current port (resets the reopen backoff).
    initialised_since_open: bool,
    /// `AT+CNMA` owed and ready for directly delivered PDUs (`acks.rs`).
    acks: acks::Acks,
}

type Step<T> = Result<T, Exit>;

impl Driver {
    async fn run(mut self) {
        let start_backoff = Duration::from_secs(1).min(self.cfg.reopen_backoff_max);
        let mut backoff = start_backoff;
        loop {
            if self.shutting_down() {
                break;
            }
            self.set_state(ModemState::Opening);
            let io = match (self.connector)().await {
                Ok(io) => io,
                Err(e) => {
                    tracing::warn!(modem = %self.cfg.name, error = %e, "cannot open modem");
                    self.status.send_modify(|s| {
                        s.state = ModemState::Unplugged;
                        s.last_error = Some(format!("cannot open the modem port: {e}"));
                    });
                    if self.idle(backoff).await.is_err() {
                        break;
                    }
                    backoff = (backoff * 2).min(self.cfg.reopen_backoff_max);
                    continue;
                }
            };
            tracing::info!(modem = %self.cfg.name, "modem port open");
            let (client, mut urcs) = at::spawn(io);
            let mut reinits = 0u32;
            let exit = loop {
                let exit = self.session(&client, &mut urcs, &mut reinits).await;
                match exit {
                    Exit::Reinit(why) if reinits < 3 => {
                        reinits += 1;
                        tracing::warn!(modem = %self.cfg.name, reason = %why, "re-initialising modem");
                        self.status.send_modify(|s| {
                            s.state = ModemState::Recovering;
                            s.last_error = Some(why);
                        });
                    }
                    Exit::Reinit(why) => {
                        break Exit::Gone(format!("{why} (re-init failed 3 times)"));
                    }
                    Exit::Failed(why) => {
                        tracing::error!(modem = %self.cfg.name, reason = %why, "modem setup failed");
                        self.set_state(ModemState::Failed(why));
                        if self.idle(self.cfg.reopen_backoff_max.max(Duration::from_secs(5))).await.is_err() {
                            break Exit::Shutdown;
                        }
                    }
                    other => break other,
                }
            };
            match exit {
                Exit::Gone(why) => {
                    tracing::warn!(modem = %self.cfg.name, reason = %why, "modem gone; reopening");
                    // A port that worked gets a quick reopen; one that fails right away backs off.
                    if std::mem::take(&mut self.initialised_since_open) {
                        backoff = start_backoff;
                    }
                    self.status.send_modify(|s| {
                        s.state = ModemState::Unplugged;
                        s.last_error = Some(why);
                    });
                    drop(client);
                    if self.idle(backoff).await.is_err() {
                        break;
                    }
                    backoff = (backoff * 2).min(self.cfg.reopen_backoff_max);
                }
                _ => break,
            }
        }
        tracing::info!(modem = %self.cfg.name, "modem driver stopped");
    }

    fn shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    fn set_state(&self, state: ModemState) {
        self.status.send_modify(|s| {
            if s.state != state {
                tracing::info!(modem = %self.cfg.name, state = %state, "modem state");
            }
            s.state = state;
            s.last_progress = std::time::Instant::now();
        });
    }

    fn state(&self) -> ModemState {
        self.status.borrow().state.clone()
    }

    /// Wait `dur`, answering requests with "not ready". `Err` on shutdown.
    async fn idle(&mut self, dur: Duration) -> Step<()> {
        let until = crate::deadline::tokio_in(dur);
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(until) => return Ok(()),
                changed = self.shutdown.changed() => {
                    if changed.is_err() || self.shutting_down() {
                        return Err(Exit::Shutdown);
                    }
                }
                req = self.requests.recv() => match req {
                    None => return Err(Exit::Shutdown),
                    Some(req) => self.refuse(req),
                },
            }
            self.status.send_modify(|s| s.last_progress = std::time::Instant::now());
        }
    }

    fn refuse(&self, req: Request) {
        let state = self.state().to_string();
        match req {
            Request::Send { reply, .. } => {
                let _ = reply.send(Err(SendError::NotReady { state }));
            }
            Request::Delete { reply, .. } => {
                let _ = reply.send(Err(ModemError::NotReady { state }));
            }
            Request::Drain | Request::Ack(_) => {}
        }
    }

    /// Run a command; `Err(Exit)` when the port is gone or the modem hung (after the AT probe).
    async fn at(&mut self, c: &AtClient, cmd: &str) -> Step<Result<Vec<String>, AtError>> {
        self.at_with(c, cmd, self.cfg.command_timeout).await
    }

    async fn at_with(&mut self, c: &AtClient, cmd: &str, timeout: Duration) -> Step<Result<Vec<String>, AtError>> {
        match c.command(cmd, timeout).await {
            Err(e) if e.is_device_gone() => Err(Exit::Gone(e.to_string())),
            Err(e @ AtError::Timeout { .. }) => Err(self.recover(c, &e.to_string()).await),
            other => Ok(other),
        }
    }

    /// After a timeout: probe with one `AT` (see [`DriverConfig::probe_timeout`]). Answers →
    /// re-init; silence → treat as gone (reopen).
    async fn recover(&mut self, c: &AtClient, why: &str) -> Exit {
        self.set_state(ModemState::Recovering);
        match c.command("AT", self.cfg.probe_timeout).await {
            Ok(_) => Exit::Reinit(why.to_string()),
            Err(e) if e.is_device_gone() => Exit::Gone(e.to_string()),
            Err(e) => {
                tracing::warn!(modem = %self.cfg.name, error = %e, "AT probe failed");
                Exit::Gone(format!("{why}; modem does not answer AT"))
            }
        }
    }

    /// Init then serve until something ends the session.
    async fn session(&mut self, c: &AtClient, urcs: &mut mpsc::Receiver<Urc>, reinits: &mut u32) -> Exit {
        // Whatever the modem waited for on the last session is gone with its settings.
        self.acks = acks::Acks::default();
        if let Err(exit) = self.init(c).await {
            return exit;
        }
        *reinits = 0;
        self.initialised_since_open = true;
        // Boot noise queued before or during init ("RDY", "+CPIN: SIM PIN" at power-up) is stale now
        // that init has run; taking it for a fresh restart would re-init for nothing. Everything else
        // (+CMTI, +CDS, registration) is still handled.
        while let Ok(urc) = urcs.try_recv() {
            match urc {
                Urc::Other(line) => {
                    tracing::debug!(modem = %self.cfg.name, line = %line, "stale URC from before init ignored")
                }
                urc => {
                    if let Err(exit) = self.on_urc(c, urc).await {
                        return exit;
                    }
                }
            }
        }
        match self.serve(c, urcs).await {
            Err(exit) => exit,
            Ok(()) => Exit::Shutdown,
        }
    }

    async fn serve(&mut self, c: &AtClient, urcs: &mut mpsc::Receiver<Urc>) -> Step<()> {
        let mut health = tokio::time::interval(self.cfg.health_interval);
        health.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        health.tick().await; // the first tick is immediate; init just did the rest of it
        // The signal now, not a health period later: the dashboard shows it from the start.
        self.read_signal(c).await?;
        // A clone, so the permit future does not borrow `self` while another branch's handler runs.
        let inbound = self.inbound.clone();
        loop {
            self.status.send_modify(|s| s.last_progress = std::time::Instant::now());
            let ack_due = self.acks.due;
            tokio::select! {
                changed = self.shutdown.changed() => {
                    if changed.is_err() || self.shutting_down() {
                        return Ok(());
                    }
                }
                permit = inbound.reserve(), if !self.outbox.is_empty() => {
                    match (permit, self.outbox.pop_front()) {
                        (Ok(p), Some(ev)) => p.send(ev),
                        (Err(_), _) => {
                            tracing::warn!(modem = %self.cfg.name, "inbound consumer gone; messages stay on the modem");
                            self.outbox.clear();
                        }
                        (Ok(_), None) => {}
                    }
                }
                req = self.requests.recv() => match req {
                    None => return Ok(()),
                    Some(req) => self.handle(c, req).await?,
                },
                urc = urcs.recv() => match urc {
                    None => return Err(Exit::Gone("modem port closed".into())),
                    Some(urc) => self.on_urc(c, urc).await?,
                },
                _ = health.tick() => self.health(c).await?,
                _ = tokio::time::sleep_until(ack_due.unwrap_or_else(Instant::now)), if ack_due.is_some() => {
                    self.flush_acks(c).await?
                }
            }
        }
    }

    async fn handle(&mut self, c: &AtClient, req: Request) -> Step<()> {
        match req {
            Request::Send { hex, len, reply } => {
                let (result, exit) = self.send(c, &hex, len, &reply).await;
                let _ = reply.send(result);
                if let Some(exit) = exit {
                    return Err(exit);
                }
            }
            Request::Delete { mem, index, reply } => {
                let result = self.in_store(c, &mem, &format!("AT+CMGD={index}")).await;
                let (answer, step) = match result {
                    Ok(Ok(_)) | Ok(Err(AtError::Cms(321))) => {
                        self.pending.remove(&(mem.clone(), index));
                        (Ok(()), Ok(()))
                    }
                    Ok(Err(e)) => (Err(ModemError::At(e)), Ok(())),
                    Err(exit) => (Err(ModemError::NotReady { state: format!("{exit:?}") }), Err(exit)),
                };
                let _ = reply.send(answer);
                step?;
            }
            Request::Drain => self.drain(c).await?,
            Request::Ack(ack) => {
                if !self.acks.judged(ack) {
                    tracing::trace!(modem = %self.cfg.name, ?ack, "no acknowledgement owed");
                }
            }
        }
        Ok(())
    }

    /// One `+CMGS`. Returns the answer for the caller and, when the session must end, why.
    async fn send(
        &mut self,
        c: &AtClient,
        hex: &str,
        len: usize,
        reply: &oneshot::Sender<Result<u8, SendError>>,
    ) -> (Result<u8, SendError>, Option<Exit>) {
        let state = self.state();
        if state != ModemState::Ready {
            return (Err(SendError::NotReady { state: state.to_string() }), None);
        }
        if let Some(last) = self.last_send {
            tokio::time::sleep_until(last + self.cfg.min_send_interval).await;
        }
        // A caller that stopped waiting (dropped its future, e.g. its own timeout) would never learn
        // the outcome: sending now could only produce a duplicate when it retries.
        if reply.is_closed() {
            tracing::info!(modem = %self.cfg.name, "send request abandoned by its caller before it was written; not sent");
            return (Err(SendError::NotReady { state: "the caller gave up before the send started".into() }), None);
        }
        let timeout = self.cfg.send_timeout.min(self.profile.send_timeout);
        let before = self.acks.take_for_send();
        let mut result = c.send_pdu_after(before, len, hex, self.cfg.prompt_timeout, timeout).await;
        if let Err(AtError::RefusedBeforePrompt { error, .. }) = &result {
            // Either the ack or the +CMGS was refused; nothing was sent. The ack on its own line
            // (a +CMS ERROR: 340 there is harmless), then the send once more on its own.
            tracing::info!(modem = %self.cfg.name, error = %error, "a send with an acknowledgement on its line was refused before the prompt; sending them apart");
            match self.ack_line(c, Ack::Stored).await {
                // Taken alone, so the joined line never ran it: this modem does not join them.
                Ok(true) => {
                    tracing::info!(modem = %self.cfg.name, "the modem takes AT+CNMA alone but not before AT+CMGS on one line; acknowledging on separate lines from now on");
                    self.acks.no_joining = true;
                }
                Ok(false) => {}
                Err(exit) => {
                    return (
                        Err(SendError::NotReady { state: "the modem stopped answering before the send".into() }),
                        Some(exit),
                    );
                }
            }
            result = c.send_pdu(len, hex, self.cfg.prompt_timeout, timeout).await;
        }
        self.last_send = Some(Instant::now());
        match result {
            Ok(mr) => (Ok(mr), None),
            Err(AtError::Cms(322)) => {
                // Storage full also blocks sending on some modules: hand out what is stored so the
                // consumer can store and delete it; the caller retries.
                if let Err(exit) = self.drain(c).await {
                    return (Err(classify_cms(322)), Some(exit));
                }
                (Err(classify_cms(322)), None)
            }
            Err(AtError::Cms(code)) => (Err(classify_cms(code)), None),
            Err(AtError::Cme(e)) => (Err(SendError::Transient { reason: format!("+CME ERROR: {e}") }), None),
            Err(AtError::Error) => {
                (Err(SendError::Transient { reason: "the modem answered ERROR to AT+CMGS".into() }), None)
            }
            Err(e @ AtError::Timeout { payload_sent: true, .. }) | Err(e @ AtError::Closed { payload_sent: true }) => {
                let exit =
                    if e.is_device_gone() { Exit::Gone(e.to_string()) } else { self.recover(c, &e.to_string()).await };
                (Err(SendError::Unknown { reason: e.to_string() }), Some(exit))
            }
            Err(e @ AtError::Timeout { .. }) => {
                let exit = self.recover(c, &e.to_string()).await;
                (Err(SendError::Transient { reason: e.to_string() }), Some(exit))
            }
            Err(e @ AtError::BadResponse { .. }) => (Err(SendError::Unknown { reason: e.to_string() }), None),
            Err(e) if e.is_device_gone() => (
                Err(SendError::Transient { reason: format!("{e} before the PDU was written") }),
                Some(Exit::Gone(e.to_string())),
            ),
            Err(e) => (Err(SendError::Transient { reason: e.to_string() }), None),
        }
    }

    async fn on_urc(&mut self, c: &AtClient, urc: Urc) -> Step<()> {
        match urc {
            Urc::Cmti { mem, index } => self.read_stored(c, &mem, index).await?,
            Urc::Cdsi { mem, index } => self.read_stored(c, &mem, index).await?,
            Urc::Cmt { pdu } => {
                self.acks.delivered();
                self.outbox.push_back(InboundEvent::Direct { pdu_hex: pdu });
            }
            Urc::Cds { pdu } => {
                self.acks.delivered();
                self.outbox.push_back(InboundEvent::StatusReport { pdu_hex: pdu, stored: None });
            }
            Urc::Other(line) if line.starts_with("+CDS:") || line.starts_with("+CMT:") => {
                // The digester keeps a header whose PDU line never came (or was not hex) as text.
                // Nothing to record: no ack, so the network resends it; the modem may switch routing
                // off meanwhile (27.005 §3.4.4), so the next health check sets +CNMI again.
                tracing::warn!(modem = %self.cfg.name, header = %line, "a directly delivered report or message came without a readable PDU; not acknowledged (the network resends it)");
                self.acks.rearm = self.acks.required;
            }
            Urc::Registration { kind, stat } => {
                self.status.send_modify(|s| {
                    let reg = s.registration.get_or_insert_with(Registration::default);
                    match kind {
                        RegKind::Creg => reg.cs = Some(stat),
                        RegKind::Cereg => reg.eps = Some(stat),
                        RegKind::Cgreg => {}
                    }
                });
                self.update_ready();
            }
            Urc::Ring => tracing::info!(modem = %self.cfg.name, "incoming call ignored"),
            Urc::Cusd(_) => tracing::debug!(modem = %self.cfg.name, "USSD answer ignored"),
            Urc::Other(line) => {
                // A modem that restarted on its own (brown-out, firmware watchdog) announces it; its
                // settings (echo, PDU mode, CNMI) are gone.
                let restarted = line == "RDY" || line.strip_prefix("+CPIN:").is_some_and(|v| v.trim() != "READY");
                if restarted {
                    return Err(Exit::Reinit(format!("the modem restarted on its own ({line})")));
                }
            }
        }
        Ok(())
    }

    async fn read_signal(&mut self, c: &AtClient) -> Step<()> {
        if let Ok(lines) = self.at(c, "AT+CSQ").await? {
            let dbm = lines
                .iter()
                .find_map(|l| response_fields(l, "+CSQ"))
                .and_then(|f| f.first().and_then(|x| x.as_u32()))
                .and_then(profile::rssi_to_dbm);
            self.status.send_modify(|s| s.signal_dbm = dbm);
        }
        Ok(())
    }

    async fn health(&mut self, c: &AtClient) -> Step<()> {
        self.rearm_indications(c).await?;
        self.read_signal(c).await?;
        self.poll_registration(c).await?;
        self.update_ready();
        if let Ok(lines) = self.at(c, "AT+CPMS?").await? {
            self.note_storage(&lines);
        }
        // Safety net for a lost +CMTI (URC queue overflow, a modem that forgot CNMI): when the store
        // holds more than we handed out, list it.
        let used = self.status.borrow().storage.map_or(0, |s| s.used);
        let mem = self.read_mem();
        let handed_out = self.pending.keys().filter(|(m, _)| *m == mem).count();
        if usize::try_from(used).unwrap_or(usize::MAX) > handed_out {
            self.drain(c).await?;
        }
        Ok(())
    }
}
