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

use serde::Serialize;
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
    /// Timeout of ordinary commands (and of the `> ` prompt).
    pub command_timeout: Duration,
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
pub type Connector = Arc<
    dyn Fn() -> Pin<Box<dyn Future<Output = io::Result<Box<dyn ModemIo>>> + Send>> + Send + Sync,
>;

/// Where the modem is in its life.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum ModemState {
    Opening,
    Initializing,
    WaitingForRegistration,
    Ready,
    Recovering,
    Unplugged,
    SimLocked(String),
    Failed(String),
}

impl std::fmt::Display for ModemState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ModemState::Opening => write!(f, "opening the modem port"),
            ModemState::Initializing => write!(f, "setting up the modem"),
            ModemState::WaitingForRegistration => write!(f, "waiting for the mobile network"),
            ModemState::Ready => write!(f, "ready"),
            ModemState::Recovering => write!(f, "modem stopped answering; recovering"),
            ModemState::Unplugged => {
                write!(f, "modem not connected (unplugged or restarting); retrying")
            }
            ModemState::SimLocked(why) => write!(f, "SIM card locked: {why}"),
            ModemState::Failed(why) => write!(f, "modem setup failed: {why}"),
        }
    }
}

/// What the modem reported about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Identity {
    pub manufacturer: Option<String>,
    pub model: Option<String>,
    pub imei: Option<String>,
    /// MCC+MNC kept, the rest masked.
    pub imsi_masked: Option<String>,
    pub profile: ProfileKind,
}

/// Registration stats (27.007: 1 home, 5 roaming count as registered).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Registration {
    /// `+CREG` stat (circuit switched).
    pub cs: Option<u8>,
    /// `+CEREG` stat (LTE).
    pub eps: Option<u8>,
}

impl Registration {
    /// Either counts: on LTE-only modules +CREG may say denied while +CEREG says registered.
    pub fn registered(&self) -> bool {
        [self.cs, self.eps]
            .iter()
            .any(|s| matches!(s, Some(1) | Some(5)))
    }
}

/// Message storage use (the receive store).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Storage {
    pub used: u32,
    pub total: u32,
}

/// Everything the rest of the program may know about the modem.
#[derive(Debug, Clone, Serialize)]
pub struct ModemStatus {
    pub state: ModemState,
    pub identity: Option<Identity>,
    pub signal_dbm: Option<i32>,
    pub registration: Option<Registration>,
    pub storage: Option<Storage>,
    pub smsc: Option<String>,
    pub last_error: Option<String>,
    /// Updated on every turn of the driver loop; the watchdog checks it.
    #[serde(skip)]
    pub last_progress: std::time::Instant,
}

impl ModemStatus {
    fn new() -> Self {
        ModemStatus {
            state: ModemState::Opening,
            identity: None,
            signal_dbm: None,
            registration: None,
            storage: None,
            smsc: None,
            last_error: None,
            last_progress: std::time::Instant::now(),
        }
    }
}

/// A message or report read from the modem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InboundEvent {
    /// A message stored at `mem`/`index`. Delete it with [`ModemHandle::delete`] once stored.
    Stored {
        mem: String,
        index: u32,
        pdu_hex: String,
    },
    /// A status report; `stored` is where it sits on the modem (delete it likewise), `None` when it was
    /// delivered directly (`+CDS`).
    StatusReport {
        pdu_hex: String,
        stored: Option<(String, u32)>,
    },
    /// A message delivered directly (`+CMT`, e.g. class 0 or a modem ignoring our +CNMI): it is not on
    /// the modem, so there is nothing to delete, and it will not come again.
    Direct { pdu_hex: String },
}

/// Why a part was not (certainly) sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The network or modem refused this message; sending it again will fail the same way.
    #[error("permanent send failure (+CMS ERROR: {code}): {reason}")]
    Permanent { code: u16, reason: String },
    /// Try again later.
    #[error("temporary send failure: {reason}")]
    Transient { reason: String },
    /// The PDU was written but no answer came: it may or may not have been sent. Never resend blindly.
    #[error("send outcome unknown: {reason}")]
    Unknown { reason: String },
    /// The modem is not ready; nothing was sent.
    #[error("modem not ready ({state}); nothing was sent")]
    NotReady { state: String },
}

/// Errors of non-send requests.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModemError {
    #[error("modem not ready ({state})")]
    NotReady { state: String },
    #[error(transparent)]
    At(#[from] AtError),
    #[error("the modem driver has stopped")]
    Stopped,
}

/// How `+CMS ERROR` codes of a send are treated (PROTOCOLS.md §4 "Retry policy", our classification,
/// not from a spec). Network causes 8 (operator barring), 10 (call barred), 21 (SM transfer rejected),
/// 29 (facility rejected), 30 (unknown subscriber) and 304/305 (invalid PDU/text parameter: the message
/// itself is wrong) are permanent. Everything else — 17, 22, 27, 38, 41, 42, 47, 314, 331, 332, 500, 513
/// and codes not listed — is transient: a retry later may work, and a wrong "permanent" would drop a
/// clinic's message for good.
pub const PERMANENT_CMS: &[(u16, &str)] = &[
    (8, "operator determined barring"),
    (10, "call barred"),
    (21, "short message transfer rejected"),
    (29, "facility rejected"),
    (30, "unknown subscriber"),
    (304, "invalid PDU mode parameter (malformed PDU or number)"),
    (305, "invalid text mode parameter"),
];

/// Descriptions of known transient codes (for the reason text only; unknown codes are transient too).
pub const TRANSIENT_CMS: &[(u16, &str)] = &[
    (17, "network failure"),
    (22, "congestion"),
    (27, "destination out of service"),
    (38, "network out of order"),
    (41, "temporary failure"),
    (42, "congestion"),
    (47, "resources unavailable"),
    (314, "SIM busy"),
    (322, "SIM memory full"),
    (331, "no network service"),
    (332, "network timeout"),
    (500, "unknown error"),
    (513, "lower layer failure"),
];

/// Classify a `+CMS ERROR` of a send.
pub fn classify_cms(code: u16) -> SendError {
    if let Some((_, why)) = PERMANENT_CMS.iter().find(|(c, _)| *c == code) {
        return SendError::Permanent {
            code,
            reason: (*why).to_string(),
        };
    }
    let why = TRANSIENT_CMS
        .iter()
        .find(|(c, _)| *c == code)
        .map_or("unclassified code", |(_, w)| *w);
    SendError::Transient {
        reason: format!("+CMS ERROR: {code} ({why})"),
    }
}

enum Request {
    Send {
        hex: String,
        len: usize,
        reply: oneshot::Sender<Result<u8, SendError>>,
    },
    Delete {
        mem: String,
        index: u32,
        reply: oneshot::Sender<Result<(), ModemError>>,
    },
    Drain,
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
        }
    }
}

impl ModemHandle {
    /// Send one part (PDU hex with the leading SMSC field, TPDU length for `AT+CMGS`). Returns the
    /// TP-Message-Reference. One `+CMGS` at a time; `min_send_interval` is honoured.
    pub async fn send_part(&self, part_hex: &str, tpdu_len: usize) -> Result<u8, SendError> {
        let (reply, answer) = oneshot::channel();
        let req = Request::Send {
            hex: part_hex.to_string(),
            len: tpdu_len,
            reply,
        };
        if self.tx.send(req).await.is_err() {
            return Err(SendError::NotReady {
                state: "driver stopped".into(),
            });
        }
        // If the driver vanished while holding the request we cannot know whether the PDU went out.
        answer.await.unwrap_or(Err(SendError::Unknown {
            reason: "modem driver stopped during the send".into(),
        }))
    }

    /// Delete a message from the modem. Call only after the message is stored for good.
    pub async fn delete(&self, mem: &str, index: u32) -> Result<(), ModemError> {
        let (reply, answer) = oneshot::channel();
        let req = Request::Delete {
            mem: mem.to_string(),
            index,
            reply,
        };
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
}

/// Start the driver task. It runs until `shutdown` becomes true (or its sender is dropped, or every
/// handle is dropped), finishing the exchange in flight first.
pub fn spawn(
    cfg: DriverConfig,
    connector: Connector,
    shutdown: watch::Receiver<bool>,
) -> (
    ModemHandle,
    mpsc::Receiver<InboundEvent>,
    tokio::task::JoinHandle<()>,
) {
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
    };
    let join = tokio::spawn(driver.run());
    (
        ModemHandle {
            tx,
            status: status_rx,
        },
        inbound_rx,
        join,
    )
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
                        if self
                            .idle(self.cfg.reopen_backoff_max.max(Duration::from_secs(5)))
                            .await
                            .is_err()
                        {
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
        let until = Instant::now() + dur;
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
            self.status
                .send_modify(|s| s.last_progress = std::time::Instant::now());
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
            Request::Drain => {}
        }
    }

    /// Run a command; `Err(Exit)` when the port is gone or the modem hung (after the AT probe).
    async fn at(&mut self, c: &AtClient, cmd: &str) -> Step<Result<Vec<String>, AtError>> {
        self.at_with(c, cmd, self.cfg.command_timeout).await
    }

    async fn at_with(
        &mut self,
        c: &AtClient,
        cmd: &str,
        timeout: Duration,
    ) -> Step<Result<Vec<String>, AtError>> {
        match c.command(cmd, timeout).await {
            Err(e) if e.is_device_gone() => Err(Exit::Gone(e.to_string())),
            Err(e @ AtError::Timeout { .. }) => Err(self.recover(c, &e.to_string()).await),
            other => Ok(other),
        }
    }

    /// After a timeout: probe with `AT` up to 3 times. Answers → re-init; silence → treat as gone.
    async fn recover(&mut self, c: &AtClient, why: &str) -> Exit {
        self.set_state(ModemState::Recovering);
        for attempt in 1..=3 {
            match c.command("AT", self.cfg.command_timeout).await {
                Ok(_) => return Exit::Reinit(why.to_string()),
                Err(e) if e.is_device_gone() => return Exit::Gone(e.to_string()),
                Err(e) => {
                    tracing::warn!(modem = %self.cfg.name, attempt, error = %e, "AT probe failed")
                }
            }
        }
        Exit::Gone(format!("{why}; modem does not answer AT"))
    }

    /// Init then serve until something ends the session.
    async fn session(
        &mut self,
        c: &AtClient,
        urcs: &mut mpsc::Receiver<Urc>,
        reinits: &mut u32,
    ) -> Exit {
        if let Err(exit) = self.init(c).await {
            return exit;
        }
        *reinits = 0;
        self.initialised_since_open = true;
        match self.serve(c, urcs).await {
            Err(exit) => exit,
            Ok(()) => Exit::Shutdown,
        }
    }

    async fn init(&mut self, c: &AtClient) -> Step<()> {
        self.set_state(ModemState::Initializing);
        // A modem just plugged in may swallow the first command; echo may be on.
        let _ = self.at(c, "AT").await?;
        if let Err(e) = self.at(c, "ATE0").await? {
            tracing::warn!(modem = %self.cfg.name, error = %e, "ATE0 refused; continuing with echo");
        }
        if let Err(e) = self.at(c, "AT+CMEE=1").await? {
            tracing::warn!(modem = %self.cfg.name, error = %e, "AT+CMEE=1 refused; errors will be plain ERROR");
        }
        let manufacturer = self
            .at(c, "AT+CGMI")
            .await?
            .ok()
            .and_then(|l| profile::first_value(&l, "+CGMI"));
        let model = self
            .at(c, "AT+CGMM")
            .await?
            .ok()
            .and_then(|l| profile::first_value(&l, "+CGMM"));
        let imei = self
            .at(c, "AT+CGSN")
            .await?
            .ok()
            .and_then(|l| profile::first_value(&l, "+CGSN"));
        let kind = match self.cfg.profile {
            ProfileKind::Auto => profile::detect(
                manufacturer.as_deref().unwrap_or(""),
                model.as_deref().unwrap_or(""),
            ),
            k => k,
        };
        self.profile = kind.profile();
        tracing::info!(modem = %self.cfg.name, ?manufacturer, ?model, profile = ?kind, "modem identified");
        self.status.send_modify(|s| {
            s.identity = Some(Identity {
                manufacturer,
                model,
                imei,
                imsi_masked: None,
                profile: kind,
            });
        });
        for extra in self.profile.init_extras {
            if let Err(e) = self.at(c, extra).await? {
                tracing::warn!(modem = %self.cfg.name, command = extra, error = %e, "profile init command refused");
            }
        }

        self.unlock_sim(c).await?;

        let imsi = self
            .at(c, "AT+CIMI")
            .await?
            .ok()
            .and_then(|l| profile::first_value(&l, "+CIMI"));
        self.status.send_modify(|s| {
            if let Some(id) = s.identity.as_mut() {
                id.imsi_masked = imsi.map(|i| profile::mask_imsi(&i));
            }
        });

        self.set_state(ModemState::WaitingForRegistration);
        let deadline = Instant::now() + self.cfg.registration_timeout;
        while !self.poll_registration(c).await?.registered() {
            if Instant::now() >= deadline {
                tracing::warn!(modem = %self.cfg.name, "not registered yet; going on (sends wait for registration)");
                self.status.send_modify(|s| {
                    s.last_error = Some("not registered to the mobile network".into())
                });
                break;
            }
            self.idle(Duration::from_secs(1).min(self.cfg.registration_timeout))
                .await?;
        }

        if let Err(e) = self.at(c, "AT+CMGF=0").await? {
            return Err(Exit::Failed(format!(
                "the modem refused PDU mode (AT+CMGF=0): {e}"
            )));
        }
        match self.at(c, self.profile.cpms).await? {
            Ok(lines) => self.note_storage(&lines),
            Err(e) => {
                return Err(Exit::Failed(format!(
                    "the modem refused the SIM message store ({}): {e}",
                    self.profile.cpms
                )));
            }
        }
        if let Err(e) = self.at(c, self.profile.cnmi).await? {
            tracing::warn!(modem = %self.cfg.name, command = self.profile.cnmi, error = %e, "CNMI refused; trying without status reports");
            if let Err(e) = self.at(c, "AT+CNMI=2,1,0,0,0").await? {
                return Err(Exit::Failed(format!(
                    "the modem refused new-message indications (AT+CNMI): {e}"
                )));
            }
        }
        let smsc = match self.at(c, "AT+CSCA?").await? {
            Ok(lines) => lines
                .iter()
                .find_map(|l| response_fields(l, "+CSCA"))
                .and_then(|f| f.first().map(|x| x.as_str().to_string()))
                .filter(|s| !s.is_empty()),
            Err(_) => None,
        };
        if smsc.is_none() {
            tracing::warn!(modem = %self.cfg.name, "no SMS service centre (+CSCA) on the SIM");
        }
        self.status.send_modify(|s| {
            if smsc.is_none() {
                s.last_error = Some(
                    "no SMS service centre number (AT+CSCA) on the SIM: sending will likely fail"
                        .into(),
                );
            }
            s.smsc = smsc;
        });

        self.drain(c).await?;
        self.update_ready();
        Ok(())
    }

    fn update_ready(&self) {
        let registered = self
            .status
            .borrow()
            .registration
            .is_some_and(|r| r.registered());
        let state = self.state();
        if matches!(
            state,
            ModemState::Ready
                | ModemState::WaitingForRegistration
                | ModemState::Initializing
                | ModemState::Recovering
        ) {
            self.set_state(if registered {
                ModemState::Ready
            } else {
                ModemState::WaitingForRegistration
            });
        }
    }

    /// `+CPIN?` and, if asked and allowed, the PIN — once.
    async fn unlock_sim(&mut self, c: &AtClient) -> Step<()> {
        let mut busy_tries = 0;
        loop {
            let answer = match self.at(c, "AT+CPIN?").await? {
                Ok(lines) => profile::first_value(&lines, "+CPIN").unwrap_or_default(),
                Err(AtError::Cme(CmeError::Code(14))) if busy_tries < 10 => {
                    busy_tries += 1;
                    self.idle(Duration::from_secs(1)).await?;
                    continue;
                }
                Err(AtError::Cme(CmeError::Code(10))) => {
                    return self.sim_locked(c, "no SIM card inserted".into()).await;
                }
                Err(e) => {
                    return self
                        .sim_locked(c, format!("SIM state query failed: {e}"))
                        .await;
                }
            };
            match answer.as_str() {
                "READY" => {
                    if self.pin == PinHistory::Unconfirmed {
                        self.pin = PinHistory::Accepted;
                        tracing::info!(modem = %self.cfg.name, "SIM PIN accepted");
                    }
                    return Ok(());
                }
                "SIM PIN" => {
                    let why = match (&self.pin, &self.cfg.pin) {
                        (PinHistory::Rejected(why), _) => Some(why.clone()),
                        (PinHistory::Unconfirmed, _) => {
                            let why = "the SIM still asks for its PIN after the configured PIN was entered; it is not entered again".to_string();
                            self.pin = PinHistory::Rejected(why.clone());
                            Some(why)
                        }
                        (_, None) => {
                            Some("the SIM asks for a PIN and none is configured".to_string())
                        }
                        (_, Some(_)) => None,
                    };
                    if let Some(why) = why {
                        return self.sim_locked(c, why).await;
                    }
                    let pin = self.cfg.pin.clone().unwrap_or_default();
                    // Recorded before the write: if we never learn the outcome, it counts as refused.
                    self.pin = PinHistory::Unconfirmed;
                    tracing::info!(modem = %self.cfg.name, "entering the SIM PIN (once)");
                    match self.at(c, &format!("AT+CPIN=\"{pin}\"")).await? {
                        Ok(_) => {
                            // The SIM takes a moment after the PIN; +CPIN? again (SIM busy is retried).
                            self.idle(Duration::from_millis(500)).await?;
                        }
                        Err(e) => {
                            let why = format!(
                                "the SIM refused the configured PIN ({e}); it will not be tried again — fix the PIN in the configuration and restart smshub (too many wrong PINs lock the SIM with its PUK)"
                            );
                            tracing::error!(modem = %self.cfg.name, "{why}");
                            self.pin = PinHistory::Rejected(why.clone());
                            return self.sim_locked(c, why).await;
                        }
                    }
                }
                other if other.contains("PUK") => {
                    return self
                        .sim_locked(
                            c,
                            format!("the SIM needs its PUK ({other}); unlock it in a phone"),
                        )
                        .await;
                }
                other => {
                    return self
                        .sim_locked(c, format!("the SIM is not ready ({other:?})"))
                        .await;
                }
            }
        }
    }

    /// Stay in SimLocked, checking read-only whether someone unlocked the SIM (e.g. in a phone and put
    /// back). Never enters a PIN.
    async fn sim_locked(&mut self, c: &AtClient, why: String) -> Step<()> {
        tracing::error!(modem = %self.cfg.name, reason = %why, "SIM locked");
        self.status
            .send_modify(|s| s.last_error = Some(why.clone()));
        self.set_state(ModemState::SimLocked(why));
        loop {
            self.idle(self.cfg.health_interval).await?;
            if let Ok(lines) = self.at(c, "AT+CPIN?").await?
                && profile::first_value(&lines, "+CPIN").as_deref() == Some("READY")
            {
                tracing::info!(modem = %self.cfg.name, "SIM is ready now");
                self.set_state(ModemState::Initializing);
                return Ok(());
            }
        }
    }

    async fn poll_registration(&mut self, c: &AtClient) -> Step<Registration> {
        let mut reg = Registration::default();
        if let Ok(l) = self.at(c, "AT+CREG?").await? {
            reg.cs = profile::registration_stat(&l, "+CREG");
        }
        if let Ok(l) = self.at(c, "AT+CEREG?").await? {
            reg.eps = profile::registration_stat(&l, "+CEREG");
        }
        self.status.send_modify(|s| s.registration = Some(reg));
        Ok(reg)
    }

    fn note_storage(&self, lines: &[String]) {
        if let Some((_, used, total)) = profile::parse_cpms_query(lines) {
            self.status
                .send_modify(|s| s.storage = Some(Storage { used, total }));
        }
    }

    /// The receive store of the profile's +CPMS (first quoted value), e.g. "SM".
    fn read_mem(&self) -> String {
        let args = self.profile.cpms.split_once('=').map_or("", |(_, a)| a);
        fields(args)
            .first()
            .map_or_else(|| "SM".to_string(), |f| f.as_str().to_string())
    }

    /// List everything stored and hand out what is not pending yet.
    async fn drain(&mut self, c: &AtClient) -> Step<()> {
        let mem = self.read_mem();
        let lines = match self
            .at_with(c, "AT+CMGL=4", self.cfg.command_timeout * 3)
            .await?
        {
            Ok(lines) => lines,
            Err(e) => {
                tracing::warn!(modem = %self.cfg.name, error = %e, "listing stored messages failed");
                return Ok(());
            }
        };
        let mut it = lines.iter().peekable();
        let mut listed = 0usize;
        while let Some(line) = it.next() {
            let Some(f) = response_fields(line, "+CMGL") else {
                continue;
            };
            let (Some(index), Some(stat)) = (
                f.first().and_then(|x| x.as_u32()),
                f.get(1).and_then(|x| x.as_u32()),
            ) else {
                tracing::warn!(modem = %self.cfg.name, line = %line, "unreadable +CMGL line");
                continue;
            };
            let Some(pdu) = it.next_if(|l| !l.starts_with('+')) else {
                continue;
            };
            listed += 1;
            if stat == 2 || stat == 3 {
                continue; // stored outgoing messages (not ours to hand out)
            }
            self.hand_out(&mem, index, pdu);
        }
        tracing::debug!(modem = %self.cfg.name, listed, pending = self.pending.len(), "storage listed");
        Ok(())
    }

    fn hand_out(&mut self, mem: &str, index: u32, pdu: &str) {
        let key = (mem.to_string(), index);
        if self.pending.get(&key).map(String::as_str) == Some(pdu) {
            return;
        }
        let ev = match tpdu_type(pdu) {
            Some(0) => InboundEvent::Stored {
                mem: mem.to_string(),
                index,
                pdu_hex: pdu.to_string(),
            },
            Some(2) => InboundEvent::StatusReport {
                pdu_hex: pdu.to_string(),
                stored: Some(key.clone()),
            },
            other => {
                tracing::debug!(modem = %self.cfg.name, mem, index, mti = ?other, "stored PDU is not inbound; left alone");
                return;
            }
        };
        self.pending.insert(key, pdu.to_string());
        self.outbox.push_back(ev);
    }

    /// Read one stored message (`+CMTI`/`+CDSI`), switching the read store if it is another one.
    async fn read_stored(&mut self, c: &AtClient, mem: &str, index: u32) -> Step<()> {
        let lines = self.in_store(c, mem, &format!("AT+CMGR={index}")).await?;
        let lines = match lines {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(modem = %self.cfg.name, mem, index, error = %e, "reading a stored message failed; the next drain retries");
                return Ok(());
            }
        };
        let mut it = lines.iter();
        while let Some(line) = it.next() {
            if response_fields(line, "+CMGR").is_some()
                && let Some(pdu) = it.next()
            {
                self.hand_out(mem, index, pdu);
            }
        }
        Ok(())
    }

    /// Run `cmd` with `mem` as the read/delete store, switching there and back when it is not ours.
    async fn in_store(
        &mut self,
        c: &AtClient,
        mem: &str,
        cmd: &str,
    ) -> Step<Result<Vec<String>, AtError>> {
        let ours = self.read_mem();
        if mem == ours {
            return self.at(c, cmd).await;
        }
        if let Err(e) = self.at(c, &format!("AT+CPMS=\"{mem}\"")).await? {
            return Ok(Err(e));
        }
        let result = self.at(c, cmd).await?;
        if let Err(e) = self.at(c, &format!("AT+CPMS=\"{ours}\"")).await? {
            tracing::warn!(modem = %self.cfg.name, error = %e, "switching back to the receive store failed; re-init");
            return Err(Exit::Reinit("could not restore the message store".into()));
        }
        Ok(result)
    }

    async fn serve(&mut self, c: &AtClient, urcs: &mut mpsc::Receiver<Urc>) -> Step<()> {
        let mut health = tokio::time::interval(self.cfg.health_interval);
        health.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        health.tick().await; // the first tick is immediate; init just did all of it
        // A clone, so the permit future does not borrow `self` while another branch's handler runs.
        let inbound = self.inbound.clone();
        loop {
            self.status
                .send_modify(|s| s.last_progress = std::time::Instant::now());
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
            }
        }
    }

    async fn handle(&mut self, c: &AtClient, req: Request) -> Step<()> {
        match req {
            Request::Send { hex, len, reply } => {
                let (result, exit) = self.send(c, &hex, len).await;
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
                    Err(exit) => (
                        Err(ModemError::NotReady {
                            state: format!("{exit:?}"),
                        }),
                        Err(exit),
                    ),
                };
                let _ = reply.send(answer);
                step?;
            }
            Request::Drain => self.drain(c).await?,
        }
        Ok(())
    }

    /// One `+CMGS`. Returns the answer for the caller and, when the session must end, why.
    async fn send(
        &mut self,
        c: &AtClient,
        hex: &str,
        len: usize,
    ) -> (Result<u8, SendError>, Option<Exit>) {
        let state = self.state();
        if state != ModemState::Ready {
            return (
                Err(SendError::NotReady {
                    state: state.to_string(),
                }),
                None,
            );
        }
        if let Some(last) = self.last_send {
            tokio::time::sleep_until(last + self.cfg.min_send_interval).await;
        }
        let timeout = self.cfg.send_timeout.min(self.profile.send_timeout);
        let result = c
            .send_pdu(len, hex, self.cfg.command_timeout, timeout)
            .await;
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
            Err(AtError::Cme(e)) => (
                Err(SendError::Transient {
                    reason: format!("+CME ERROR: {e}"),
                }),
                None,
            ),
            Err(AtError::Error) => (
                Err(SendError::Transient {
                    reason: "the modem answered ERROR to AT+CMGS".into(),
                }),
                None,
            ),
            Err(
                e @ AtError::Timeout {
                    payload_sent: true, ..
                },
            )
            | Err(e @ AtError::Closed { payload_sent: true }) => {
                let exit = if e.is_device_gone() {
                    Exit::Gone(e.to_string())
                } else {
                    self.recover(c, &e.to_string()).await
                };
                (
                    Err(SendError::Unknown {
                        reason: e.to_string(),
                    }),
                    Some(exit),
                )
            }
            Err(e @ AtError::Timeout { .. }) => {
                let exit = self.recover(c, &e.to_string()).await;
                (
                    Err(SendError::Transient {
                        reason: e.to_string(),
                    }),
                    Some(exit),
                )
            }
            Err(e @ AtError::BadResponse { .. }) => (
                Err(SendError::Unknown {
                    reason: e.to_string(),
                }),
                None,
            ),
            Err(e) if e.is_device_gone() => (
                Err(SendError::Transient {
                    reason: format!("{e} before the PDU was written"),
                }),
                Some(Exit::Gone(e.to_string())),
            ),
            Err(e) => (
                Err(SendError::Transient {
                    reason: e.to_string(),
                }),
                None,
            ),
        }
    }

    async fn on_urc(&mut self, c: &AtClient, urc: Urc) -> Step<()> {
        match urc {
            Urc::Cmti { mem, index } => self.read_stored(c, &mem, index).await?,
            Urc::Cdsi { mem, index } => self.read_stored(c, &mem, index).await?,
            Urc::Cmt { pdu } => self.outbox.push_back(InboundEvent::Direct { pdu_hex: pdu }),
            Urc::Cds { pdu } => self.outbox.push_back(InboundEvent::StatusReport {
                pdu_hex: pdu,
                stored: None,
            }),
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
                let restarted =
                    line == "RDY" || (line.starts_with("+CPIN:") && !line.contains("READY"));
                if restarted {
                    return Err(Exit::Reinit(format!(
                        "the modem restarted on its own ({line})"
                    )));
                }
            }
        }
        Ok(())
    }

    async fn health(&mut self, c: &AtClient) -> Step<()> {
        if let Ok(lines) = self.at(c, "AT+CSQ").await? {
            let dbm = lines
                .iter()
                .find_map(|l| response_fields(l, "+CSQ"))
                .and_then(|f| f.first().and_then(|x| x.as_u32()))
                .and_then(profile::rssi_to_dbm);
            self.status.send_modify(|s| s.signal_dbm = dbm);
        }
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

/// TP-MTI of a PDU that starts with the SMSC field: 0 deliver, 1 submit, 2 status report.
fn tpdu_type(pdu_hex: &str) -> Option<u8> {
    let smsc_len = usize::from(u8::from_str_radix(pdu_hex.get(0..2)?, 16).ok()?);
    let at = 2 + smsc_len * 2;
    let first = u8::from_str_radix(pdu_hex.get(at..at + 2)?, 16).ok()?;
    Some(first & 0x03)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

    /// SMS-DELIVER "How are you?" with SMSC field (the classic example PDU from the dreamfabric pages).
    const DELIVER: &str =
        "07911326040000F0040B911346610089F60000208062917314080CC8F71D14969741F977FD07";
    /// SMS-STATUS-REPORT with an empty SMSC field (first TPDU octet 0x06: MTI 2).
    const REPORT: &str = "0006D60B911326880736F4111011719551401110117195714000";

    /// What the fake modem's SIM and network look like. Shared across reconnects, like a real SIM.
    #[derive(Default)]
    struct FakeSim {
        pin: Option<String>,
        unlocked: bool,
        creg_after: u32,
        creg_queries: u32,
        store: BTreeMap<u32, String>,
        total: u32,
        log: Vec<String>,
        next_mr: u8,
        cms_on_send: Option<u16>,
        hang_after_pdu: bool,
        no_prompt: bool,
    }

    impl FakeSim {
        fn new() -> Self {
            FakeSim {
                total: 30,
                unlocked: true,
                next_mr: 40,
                ..Default::default()
            }
        }
        fn count(&self, prefix: &str) -> usize {
            self.log.iter().filter(|l| l.starts_with(prefix)).count()
        }
        fn answer(&mut self, cmd: &str) -> String {
            const OK: &str = "\r\nOK\r\n";
            let ok = |body: &str| format!("\r\n{body}\r\n{OK}");
            let cpms = |s: &FakeSim| {
                let n = s.store.len();
                format!("{n},{t},{n},{t},{n},{t}", t = s.total)
            };
            match cmd {
                "AT" | "ATE0" | "AT+CMEE=1" | "AT+CSCLK=0" | "AT+CMGF=0" | "AT+CNMI=2,1,0,2,0" => {
                    OK.into()
                }
                "AT+CGMI" => ok("SIMCOM_Ltd"),
                "AT+CGMM" => ok("SIMCOM_SIM800L"),
                "AT+CGSN" => ok("861234567890123"),
                "AT+CIMI" if self.unlocked => ok("244911234567890"),
                "AT+CIMI" => "\r\n+CME ERROR: 11\r\n".into(),
                "AT+CPIN?" if self.unlocked => ok("+CPIN: READY"),
                "AT+CPIN?" => ok("+CPIN: SIM PIN"),
                "AT+CREG?" => {
                    self.creg_queries += 1;
                    let stat = if self.creg_queries > self.creg_after {
                        1
                    } else {
                        2
                    };
                    ok(&format!("+CREG: 0,{stat}"))
                }
                "AT+CSQ" => ok("+CSQ: 20,99"),
                "AT+CSCA?" => ok("+CSCA: \"+358405202000\",145"),
                "AT+CPMS?" => ok(&format!(
                    "+CPMS: \"SM\",{0},{1},\"SM\",{0},{1},\"SM\",{0},{1}",
                    self.store.len(),
                    self.total
                )),
                "AT+CMGL=4" => {
                    let mut s = String::new();
                    for (i, pdu) in &self.store {
                        s.push_str(&format!("\r\n+CMGL: {i},1,,{}\r\n{pdu}", pdu.len() / 2 - 8));
                    }
                    format!("{s}\r\n{OK}")
                }
                c if c.starts_with("AT+CPMS=") => ok(&format!("+CPMS: {}", cpms(self))),
                c if c.starts_with("AT+CPIN=") => {
                    let given = c.trim_start_matches("AT+CPIN=").trim_matches('"');
                    if Some(given) == self.pin.as_deref() {
                        self.unlocked = true;
                        OK.into()
                    } else {
                        "\r\n+CME ERROR: 16\r\n".into()
                    }
                }
                c if c.starts_with("AT+CMGR=") => {
                    let i: u32 = c.trim_start_matches("AT+CMGR=").parse().unwrap();
                    match self.store.get(&i) {
                        Some(pdu) => ok(&format!("+CMGR: 0,,{}\r\n{pdu}", pdu.len() / 2 - 8)),
                        None => OK.into(),
                    }
                }
                c if c.starts_with("AT+CMGD=") => {
                    let i: u32 = c.trim_start_matches("AT+CMGD=").parse().unwrap();
                    self.store.remove(&i);
                    OK.into()
                }
                _ => "\r\nERROR\r\n".into(),
            }
        }
    }

    type Shared = Arc<Mutex<FakeSim>>;

    enum Ctl {
        /// Write these bytes (a URC).
        Say(String),
        /// Close the port like a USB unplug.
        Unplug,
    }

    /// The modem end of a duplex pipe: answers commands from `sim`, the `> ` flow included.
    async fn fake_modem(io: DuplexStream, sim: Shared, mut ctl: mpsc::UnboundedReceiver<Ctl>) {
        let (mut r, mut w) = tokio::io::split(io);
        let mut line = Vec::new();
        let mut in_pdu = false;
        let mut byte = [0u8; 1];
        loop {
            tokio::select! {
                c = ctl.recv() => match c {
                    Some(Ctl::Say(s)) => { let _ = w.write_all(s.as_bytes()).await; }
                    Some(Ctl::Unplug) | None => return,
                },
                n = r.read(&mut byte) => {
                    if !matches!(n, Ok(1)) { return; }
                    let b = byte[0];
                    let reply = match b {
                        b'\r' if !in_pdu => {
                            let cmd = String::from_utf8_lossy(&line).trim().to_string();
                            line.clear();
                            if cmd.is_empty() { continue; }
                            let mut s = sim.lock().unwrap();
                            s.log.push(cmd.clone());
                            if cmd.starts_with("AT+CMGS=") {
                                if s.no_prompt { continue; }
                                in_pdu = true;
                                "\r\n> ".to_string()
                            } else {
                                s.answer(&cmd)
                            }
                        }
                        0x1a if in_pdu => {
                            in_pdu = false;
                            let pdu = String::from_utf8_lossy(&line).to_string();
                            line.clear();
                            let mut s = sim.lock().unwrap();
                            s.log.push(format!("PDU {pdu}"));
                            if s.hang_after_pdu { continue; }
                            match s.cms_on_send {
                                Some(code) => format!("\r\n+CMS ERROR: {code}\r\n"),
                                None => {
                                    s.next_mr = s.next_mr.wrapping_add(1);
                                    format!("\r\n+CMGS: {}\r\n\r\nOK\r\n", s.next_mr)
                                }
                            }
                        }
                        0x1b => {
                            in_pdu = false;
                            line.clear();
                            sim.lock().unwrap().log.push("ESC".into());
                            "\r\nOK\r\n".to_string()
                        }
                        b'\n' => continue,
                        _ => { line.push(b); continue; }
                    };
                    if w.write_all(reply.as_bytes()).await.is_err() { return; }
                }
            }
        }
    }

    struct Harness {
        handle: ModemHandle,
        inbound: mpsc::Receiver<InboundEvent>,
        join: tokio::task::JoinHandle<()>,
        shutdown: watch::Sender<bool>,
        ctls: mpsc::UnboundedReceiver<mpsc::UnboundedSender<Ctl>>,
        ctl: Option<mpsc::UnboundedSender<Ctl>>,
        connects: Arc<AtomicUsize>,
        sim: Shared,
    }

    fn config() -> DriverConfig {
        DriverConfig {
            name: "test".into(),
            command_timeout: Duration::from_secs(5),
            send_timeout: Duration::from_secs(5),
            registration_timeout: Duration::from_secs(15),
            health_interval: Duration::from_secs(3600),
            reopen_backoff_max: Duration::from_millis(100),
            ..DriverConfig::default()
        }
    }

    fn start(sim: FakeSim, cfg: DriverConfig) -> Harness {
        let sim = Arc::new(Mutex::new(sim));
        let connects = Arc::new(AtomicUsize::new(0));
        let (ctl_tx, ctls) = mpsc::unbounded_channel();
        let (s2, c2) = (sim.clone(), connects.clone());
        let connector: Connector = Arc::new(move || {
            let (sim, connects, ctl_tx) = (s2.clone(), c2.clone(), ctl_tx.clone());
            Box::pin(async move {
                connects.fetch_add(1, Ordering::SeqCst);
                let (ours, theirs) = tokio::io::duplex(8192);
                let (tx, rx) = mpsc::unbounded_channel();
                let _ = ctl_tx.send(tx);
                tokio::spawn(fake_modem(theirs, sim, rx));
                Ok(Box::new(ours) as Box<dyn ModemIo>)
            })
        });
        let (shutdown, shutdown_rx) = watch::channel(false);
        let (handle, inbound, join) = spawn(cfg, connector, shutdown_rx);
        Harness {
            handle,
            inbound,
            join,
            shutdown,
            ctls,
            ctl: None,
            connects,
            sim,
        }
    }

    const WAIT: Duration = Duration::from_secs(30);

    impl Harness {
        async fn wait_state(&self, want: impl Fn(&ModemState) -> bool) -> ModemState {
            let mut rx = self.handle.status();
            let s = tokio::time::timeout(WAIT, rx.wait_for(|s| want(&s.state)))
                .await
                .expect("state not reached in time")
                .unwrap();
            s.state.clone()
        }
        async fn ctl(&mut self) -> mpsc::UnboundedSender<Ctl> {
            // Always the newest connection's control.
            while let Ok(c) = self.ctls.try_recv() {
                self.ctl = Some(c);
            }
            if self.ctl.is_none() {
                self.ctl = self.ctls.recv().await;
            }
            self.ctl.clone().unwrap()
        }
        async fn next_event(&mut self) -> InboundEvent {
            tokio::time::timeout(WAIT, self.inbound.recv())
                .await
                .expect("no inbound event")
                .unwrap()
        }
        fn sim(&self) -> std::sync::MutexGuard<'_, FakeSim> {
            self.sim.lock().unwrap()
        }
    }

    #[tokio::test]
    async fn init_reaches_ready_and_drains_stored_messages_on_start() {
        let mut sim = FakeSim::new();
        sim.store.insert(1, DELIVER.into());
        sim.store.insert(2, REPORT.into());
        let mut h = start(sim, config());
        h.wait_state(|s| *s == ModemState::Ready).await;
        assert_eq!(
            h.next_event().await,
            InboundEvent::Stored {
                mem: "SM".into(),
                index: 1,
                pdu_hex: DELIVER.into()
            }
        );
        assert_eq!(
            h.next_event().await,
            InboundEvent::StatusReport {
                pdu_hex: REPORT.into(),
                stored: Some(("SM".into(), 2))
            }
        );
        let status = h.handle.status().borrow().clone();
        let id = status.identity.unwrap();
        assert_eq!(id.profile, ProfileKind::Sim800);
        assert_eq!(id.imsi_masked.as_deref(), Some("24491**********"));
        assert_eq!(status.smsc.as_deref(), Some("+358405202000"));
        assert_eq!(status.storage, Some(Storage { used: 2, total: 30 }));
        let sim = h.sim();
        for cmd in [
            "ATE0",
            "AT+CMEE=1",
            "AT+CSCLK=0",
            "AT+CMGF=0",
            "AT+CNMI=2,1,0,2,0",
            "AT+CMGL=4",
        ] {
            assert_eq!(sim.count(cmd), 1, "{cmd} in {:?}", sim.log);
        }
        assert_eq!(sim.count("AT+CPIN="), 0);
        assert_eq!(
            sim.count("AT+CMGD"),
            0,
            "the driver must never delete on its own"
        );
    }

    #[tokio::test]
    async fn correct_pin_is_entered_once_and_modem_becomes_ready() {
        let mut sim = FakeSim::new();
        sim.pin = Some("1234".into());
        sim.unlocked = false;
        let h = start(
            sim,
            DriverConfig {
                pin: Some("1234".into()),
                ..config()
            },
        );
        h.wait_state(|s| *s == ModemState::Ready).await;
        assert_eq!(h.sim().count("AT+CPIN="), 1);
    }

    #[tokio::test]
    async fn wrong_pin_locks_the_driver_and_is_never_sent_again_even_after_replug() {
        let mut sim = FakeSim::new();
        sim.pin = Some("1234".into());
        sim.unlocked = false;
        let cfg = DriverConfig {
            pin: Some("0000".into()),
            health_interval: Duration::from_millis(100),
            ..config()
        };
        let mut h = start(sim, cfg);
        let state = h
            .wait_state(|s| matches!(s, ModemState::SimLocked(_)))
            .await;
        assert!(
            state.to_string().contains("refused the configured PIN"),
            "{state}"
        );
        // Let the locked loop re-check +CPIN? a few times, then unplug and replug.
        tokio::time::sleep(Duration::from_millis(400)).await;
        h.ctl().await.send(Ctl::Unplug).unwrap();
        tokio::time::timeout(WAIT, async {
            while h.connects.load(Ordering::SeqCst) < 2 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .unwrap();
        h.wait_state(|s| matches!(s, ModemState::SimLocked(_)))
            .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let sim = h.sim();
        assert_eq!(sim.count("AT+CPIN="), 1, "{:?}", sim.log);
        assert!(sim.count("AT+CPIN?") >= 3);
    }

    #[tokio::test]
    async fn sim_pin_without_configured_pin_is_locked_and_sends_are_refused() {
        let mut sim = FakeSim::new();
        sim.pin = Some("1234".into());
        sim.unlocked = false;
        let h = start(sim, config());
        let state = h
            .wait_state(|s| matches!(s, ModemState::SimLocked(_)))
            .await;
        assert!(state.to_string().contains("none is configured"), "{state}");
        let err = h.handle.send_part("0011", 1).await.unwrap_err();
        assert!(matches!(err, SendError::NotReady { .. }), "{err:?}");
        assert_eq!(h.sim().count("AT+CPIN="), 0);
        assert_eq!(h.sim().count("AT+CMGS"), 0);
    }

    #[tokio::test]
    async fn registration_is_waited_for_before_ready() {
        let mut sim = FakeSim::new();
        sim.creg_after = 3;
        let h = start(sim, config());
        h.wait_state(|s| *s == ModemState::Ready).await;
        assert!(h.sim().count("AT+CREG?") >= 4);
        let reg = h.handle.status().borrow().registration.unwrap();
        assert!(reg.registered());
    }

    #[tokio::test]
    async fn not_registered_after_timeout_goes_on_but_refuses_sends() {
        let mut sim = FakeSim::new();
        sim.creg_after = u32::MAX;
        let h = start(
            sim,
            DriverConfig {
                registration_timeout: Duration::from_millis(300),
                ..config()
            },
        );
        h.wait_state(|s| *s == ModemState::WaitingForRegistration)
            .await;
        // Init went on to the storage setup anyway.
        tokio::time::timeout(WAIT, async {
            while h.sim().count("AT+CMGL=4") == 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .unwrap();
        let err = h.handle.send_part("0011", 1).await.unwrap_err();
        assert!(matches!(err, SendError::NotReady { .. }), "{err:?}");
        // A registration URC makes it ready.
        let mut h = h;
        h.ctl()
            .await
            .send(Ctl::Say("\r\n+CREG: 5\r\n".into()))
            .unwrap();
        h.wait_state(|s| *s == ModemState::Ready).await;
    }

    #[tokio::test]
    async fn cmti_is_read_and_deleted_only_on_request() {
        let mut h = start(FakeSim::new(), config());
        h.wait_state(|s| *s == ModemState::Ready).await;
        h.sim().store.insert(5, DELIVER.into());
        h.ctl()
            .await
            .send(Ctl::Say("\r\n+CMTI: \"SM\",5\r\n".into()))
            .unwrap();
        assert_eq!(
            h.next_event().await,
            InboundEvent::Stored {
                mem: "SM".into(),
                index: 5,
                pdu_hex: DELIVER.into()
            }
        );
        assert_eq!(h.sim().count("AT+CMGD"), 0);
        // Not emitted again while it waits for deletion, even when the storage is listed again.
        h.handle.request_drain().await;
        h.handle.delete("SM", 5).await.unwrap();
        assert!(h.inbound.try_recv().is_err(), "pending index emitted twice");
        assert_eq!(h.sim().count("AT+CMGD=5"), 1);
        assert!(h.sim().store.is_empty());
    }

    #[tokio::test]
    async fn cds_status_report_and_cmt_are_handed_out_directly() {
        let mut h = start(FakeSim::new(), config());
        h.wait_state(|s| *s == ModemState::Ready).await;
        let ctl = h.ctl().await;
        ctl.send(Ctl::Say(format!("\r\n+CDS: 25\r\n{REPORT}\r\n")))
            .unwrap();
        assert_eq!(
            h.next_event().await,
            InboundEvent::StatusReport {
                pdu_hex: REPORT.into(),
                stored: None
            }
        );
        ctl.send(Ctl::Say(format!("\r\n+CMT: ,30\r\n{DELIVER}\r\n")))
            .unwrap();
        assert_eq!(
            h.next_event().await,
            InboundEvent::Direct {
                pdu_hex: DELIVER.into()
            }
        );
    }

    #[tokio::test]
    async fn send_returns_the_reference_and_cms_errors_are_classified() {
        let h = start(FakeSim::new(), config());
        h.wait_state(|s| *s == ModemState::Ready).await;
        assert_eq!(h.handle.send_part("0011000B91", 10).await, Ok(41));
        assert_eq!(h.sim().count("PDU 0011000B91"), 1);
        h.sim().cms_on_send = Some(304);
        assert!(matches!(
            h.handle.send_part("0011", 1).await,
            Err(SendError::Permanent { code: 304, .. })
        ));
        h.sim().cms_on_send = Some(38);
        assert!(matches!(
            h.handle.send_part("0011", 1).await,
            Err(SendError::Transient { .. })
        ));
        assert_eq!(h.handle.status().borrow().state, ModemState::Ready);
    }

    #[tokio::test]
    async fn sends_are_spaced_by_the_minimum_interval() {
        let h = start(
            FakeSim::new(),
            DriverConfig {
                min_send_interval: Duration::from_millis(300),
                ..config()
            },
        );
        h.wait_state(|s| *s == ModemState::Ready).await;
        let t0 = Instant::now();
        h.handle.send_part("00", 1).await.unwrap();
        h.handle.send_part("00", 1).await.unwrap();
        assert!(t0.elapsed() >= Duration::from_millis(300));
    }

    #[tokio::test]
    async fn timeout_after_the_pdu_is_unknown_and_the_modem_is_reinitialised() {
        let mut sim = FakeSim::new();
        sim.hang_after_pdu = true;
        let h = start(
            sim,
            DriverConfig {
                send_timeout: Duration::from_millis(300),
                ..config()
            },
        );
        h.wait_state(|s| *s == ModemState::Ready).await;
        let err = h.handle.send_part("0011", 1).await.unwrap_err();
        assert!(matches!(err, SendError::Unknown { .. }), "{err:?}");
        h.wait_state(|s| *s == ModemState::Ready).await;
        let sim = h.sim();
        assert_eq!(sim.count("PDU 0011"), 1, "never resent: {:?}", sim.log);
        assert_eq!(
            sim.count("ATE0"),
            2,
            "re-init after the probe: {:?}",
            sim.log
        );
    }

    #[tokio::test]
    async fn missing_prompt_aborts_with_esc_and_nothing_is_sent() {
        let mut sim = FakeSim::new();
        sim.no_prompt = true;
        let h = start(
            sim,
            DriverConfig {
                command_timeout: Duration::from_millis(500),
                ..config()
            },
        );
        h.wait_state(|s| *s == ModemState::Ready).await;
        let err = h.handle.send_part("0011", 1).await.unwrap_err();
        match &err {
            SendError::Transient { reason } => {
                assert!(reason.contains("nothing was sent"), "{reason}")
            }
            other => panic!("expected transient, got {other:?}"),
        }
        h.wait_state(|s| *s == ModemState::Ready).await;
        let sim = h.sim();
        assert_eq!(sim.count("ESC"), 1);
        assert_eq!(sim.count("PDU"), 0);
    }

    #[tokio::test]
    async fn unplug_goes_unplugged_then_reconnects_and_drains_again() {
        let mut h = start(FakeSim::new(), config());
        h.wait_state(|s| *s == ModemState::Ready).await;
        let mut status = h.handle.status();
        h.sim().store.insert(7, DELIVER.into());
        h.ctl().await.send(Ctl::Unplug).unwrap();
        tokio::time::timeout(WAIT, status.wait_for(|s| s.state == ModemState::Unplugged))
            .await
            .unwrap()
            .unwrap();
        h.wait_state(|s| *s == ModemState::Ready).await;
        assert!(h.connects.load(Ordering::SeqCst) >= 2);
        assert_eq!(
            h.next_event().await,
            InboundEvent::Stored {
                mem: "SM".into(),
                index: 7,
                pdu_hex: DELIVER.into()
            }
        );
    }

    #[tokio::test]
    async fn connector_failures_back_off_and_retry() {
        let attempts = Arc::new(AtomicUsize::new(0));
        let a = attempts.clone();
        let connector: Connector = Arc::new(move || {
            let a = a.clone();
            Box::pin(async move {
                a.fetch_add(1, Ordering::SeqCst);
                Err(io::Error::new(io::ErrorKind::NotFound, "no /dev/ttyUSB2"))
            })
        });
        let (shutdown, rx) = watch::channel(false);
        let (handle, _inbound, join) = spawn(config(), connector, rx);
        let mut st = handle.status();
        tokio::time::timeout(WAIT, st.wait_for(|s| s.state == ModemState::Unplugged))
            .await
            .unwrap()
            .unwrap();
        tokio::time::timeout(WAIT, async {
            while attempts.load(Ordering::SeqCst) < 3 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .unwrap();
        assert!(
            handle
                .status()
                .borrow()
                .last_error
                .as_deref()
                .unwrap()
                .contains("no /dev/ttyUSB2")
        );
        shutdown.send(true).unwrap();
        tokio::time::timeout(WAIT, join).await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn modem_restart_announced_by_rdy_triggers_reinit() {
        let mut h = start(FakeSim::new(), config());
        h.wait_state(|s| *s == ModemState::Ready).await;
        h.ctl().await.send(Ctl::Say("\r\nRDY\r\n".into())).unwrap();
        tokio::time::timeout(WAIT, async {
            while h.sim().count("ATE0") < 2 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .unwrap();
        h.wait_state(|s| *s == ModemState::Ready).await;
    }

    #[tokio::test]
    async fn health_check_reports_signal_and_catches_a_lost_cmti() {
        let mut h = start(
            FakeSim::new(),
            DriverConfig {
                health_interval: Duration::from_millis(200),
                ..config()
            },
        );
        h.wait_state(|s| *s == ModemState::Ready).await;
        // A message arrives but its +CMTI is lost (no URC sent).
        h.sim().store.insert(9, DELIVER.into());
        assert_eq!(
            h.next_event().await,
            InboundEvent::Stored {
                mem: "SM".into(),
                index: 9,
                pdu_hex: DELIVER.into()
            }
        );
        assert_eq!(h.handle.status().borrow().signal_dbm, Some(-73));
        // Handed out once only, although every later health check sees it still stored.
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert!(h.inbound.try_recv().is_err());
    }

    #[tokio::test]
    async fn storage_full_on_send_hands_out_stored_messages() {
        let mut h = start(FakeSim::new(), config());
        h.wait_state(|s| *s == ModemState::Ready).await;
        h.sim().store.insert(3, DELIVER.into());
        h.sim().cms_on_send = Some(322);
        let err = h.handle.send_part("0011", 1).await.unwrap_err();
        assert!(matches!(err, SendError::Transient { .. }), "{err:?}");
        assert_eq!(
            h.next_event().await,
            InboundEvent::Stored {
                mem: "SM".into(),
                index: 3,
                pdu_hex: DELIVER.into()
            }
        );
    }

    #[tokio::test]
    async fn shutdown_stops_the_driver() {
        let h = start(FakeSim::new(), config());
        h.wait_state(|s| *s == ModemState::Ready).await;
        h.shutdown.send(true).unwrap();
        tokio::time::timeout(WAIT, h.join).await.unwrap().unwrap();
    }

    #[test]
    fn cms_classification_table() {
        let permanent = [8, 10, 21, 29, 30, 304, 305];
        let transient = [
            17, 22, 27, 38, 41, 42, 47, 314, 322, 331, 332, 500, 513, 1, 999,
        ];
        for code in permanent {
            assert!(
                matches!(classify_cms(code), SendError::Permanent { code: c, .. } if c == code),
                "{code}"
            );
        }
        for code in transient {
            assert!(
                matches!(classify_cms(code), SendError::Transient { .. }),
                "{code}"
            );
        }
    }

    #[test]
    fn tpdu_type_table() {
        assert_eq!(tpdu_type(DELIVER), Some(0));
        assert_eq!(tpdu_type(REPORT), Some(2));
        assert_eq!(tpdu_type("0011000B91"), Some(1));
        assert_eq!(tpdu_type("07911326"), None);
        assert_eq!(tpdu_type("ZZ"), None);
        assert_eq!(tpdu_type(""), None);
    }

    #[test]
    fn state_words_are_for_people() {
        assert_eq!(
            ModemState::Unplugged.to_string(),
            "modem not connected (unplugged or restarting); retrying"
        );
        assert!(
            ModemState::SimLocked("x".into())
                .to_string()
                .starts_with("SIM card locked")
        );
    }
}
