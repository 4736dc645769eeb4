//! A GSM modem simulator on a pseudo-terminal: our serial loopback rig.
//!
//! `smshub sim` (CLI, [`run`]) or [`start`] (in-process, for tests) creates a pty and answers on
//! it like a modem in PDU mode (text mode for the basics too): the driver opens the pty's slave
//! path with [`crate::modem::tty::open_serial`] exactly as it opens a real `/dev/ttyUSB2`.
//! Besides answering commands it has a SIM store of configurable size, a "network" that
//! delivers injected messages and status reports, and faults injected by flag or at runtime.
//!
//! Parts: `at_server` (the command interpreter: pure, bytes in, bytes out), `storage` (SIM
//! slots and the network queue), `faults` (what can go wrong), `task` (the one task that owns
//! the pty, timers and state), `control` (the JSON control channel, [`SimControl`] and
//! [`SimClient`]).
//!
//! # What it answers
//! AT, ATE0/ATE1, ATZ, AT&F, ATI, AT+CMEE=0|1|2 (then `+CME ERROR: <n>` or the verbose text;
//! +CMS ERROR follows CMEE as on SIMCom modules), AT+CPIN?/=, AT+CREG/+CGREG/+CEREG ?/=n,
//! AT+CSQ, AT+CGMI/+CGMM/+CGMR/+CGSN/+CIMI (per `--model`), AT+CFUN, AT+CSCS, AT+CMGF,
//! AT+CSCA, AT+CPMS, AT+CNMI, AT+CSMS, AT+CMGS, AT+CMGL, AT+CMGR, AT+CMGD, AT+CNMA; `=?` test
//! forms of those with OK; several commands per line joined with `;`. Anything else: ERROR.
//! Responses are framed `\r\n<line>\r\n` … `\r\nOK\r\n`; echo (when on) is byte for byte.
//!
//! AT+CMGS=<len> prompts `\r\n> `, reads hex up to Ctrl-Z (ESC aborts with OK), checks that
//! `<len>` equals the TPDU octets after the SMSC field and that the PDU decodes as an
//! SMS-SUBMIT (else `+CMS ERROR: 304`), refuses with 331 when not registered, then after the
//! send latency answers `+CMS ERROR` (injected) or `+CMGS: <mr>` with mr counting mod 256. A
//! requested status report arrives after `report_delay` as `+CDS` (CNMI ds=1) or is stored with
//! `+CDSI: "SM",<i>` (ds=2); ds=0 drops it, as modems do.
//!
//! Acknowledgements (27.005 §3.4.4): `AT+CSMS=1` answers `+CSMS: 1,1,1` (with `--no-csms1`,
//! `+CMS ERROR: 303`, a phase 2 modem). Under service 1 each `+CDS` waits for `AT+CNMA` (or
//! `AT+CNMA=0|1|2`; 2 is a negative ack) and no second `+CDS` is sent meanwhile (later reports
//! queue and follow the ack's OK). Not acknowledged within `cds_ack_timeout_ms` (15 s), the network
//! resends it, up to `cds_resends` (2) times, then the modem stores it and says `+CDSI`. `AT+CNMA`
//! with nothing to acknowledge answers `+CMS ERROR: 340`. A `+CMT` (mt=2) under service 1 expects
//! one `AT+CNMA` too (not resent). `lose_acks: N` (control `set`) loses the next N acks on the
//! radio path: `AT+CNMA` answers OK, and the network delivers the same report again after
//! `cds_ack_timeout_ms` (counted as `(ack lost)`). Several commands on one line (`AT+CNMA;+CMGS=23`) run left to
//! right and stop at the first error. `stats` counts `(report acknowledged)`, `(report resent)`,
//! `(report stored after no ack)` and `(unexpected +CNMA)` among the commands.
//!
//! Inbound messages go to storage with `+CMTI: "SM",<i>` (CNMI mt=1, the default here; mt=0
//! stores silently, mt=2 sends `+CMT: ,<len>` + PDU directly). When the store is full the
//! network holds them and delivers them as soon as the client deletes something. Indices start
//! at 1, except `--model ec25` (Quectel counts from 0).
//!
//! PIN: with `--pin`, SMS and SIM commands fail with 311 / CME 11 until `AT+CPIN="<pin>"`. Three
//! wrong PINs lock the SIM (`+CPIN: SIM PUK`); `AT+CPIN="12345678","<new pin>"` unlocks it; ten
//! wrong PUKs block it for good. A replug powers the modem off: the PIN is asked again, the
//! retry counter stays.
//!
//! # Control channel
//! A Unix socket (`--control PATH`), or in process through [`SimHandle::control`]. One JSON
//! object per line in, one JSON line out; every answer has `"ok": true|false` and `"error"`
//! when false. Commands (`cmd`):
//!
//! | command | answer |
//! |---|---|
//! | `{"cmd":"inject","from":"+358401234567","text":"…","order":[2,1,3],"timestamp":1700000000}` (order, timestamp optional) | `{"ok":true,"parts":3,"indices":[1,2,null]}` (null: queued in the network or sent as +CMT) |
//! | `{"cmd":"inject_pdu","pdu":"07911…"}`: any hex, stored as is (for malformed PDUs) | `{"ok":true,"indices":[4]}` |
//! | `{"cmd":"report","message_ref":5,"status":0,"to":"+3584…"}` (`to` defaults to the recipient of that mr; status is TP-ST) | `{"ok":true}` |
//! | `{"cmd":"sent"}` | `{"ok":true,"sent":[{"mr","to","text","encoding","concat":{"ref","total","seq"}\|null,"status_report_requested","pdu","at"(unix ms)}]}` |
//! | `{"cmd":"storage"}` | `{"ok":true,"capacity","used","queued","messages":[{"index","stat","pdu"}]}` |
//! | `{"cmd":"unplug"}` | `{"ok":true,"was_plugged":true}`: pty closed, link removed |
//! | `{"cmd":"replug"}` | `{"ok":true,"pty":"/dev/pts/9"}`: new pty, link repointed, modem power-cycled |
//! | `{"cmd":"set", …}` with any of `send_latency_ms, cms_error, cms_error_rate, cms_error_on_send (null clears), hang_after (more commands; null = answer again), garbage_rate, interleave_urcs, auto_report, report_delay_ms, registered, csq, cds_ack_timeout_ms, cds_resends, csms1, lose_acks` | `{"ok":true}` |
//! | `{"cmd":"stats"}` | `{"ok":true,"commands":{"AT+CPIN=":2,…},"total","sends","sent","hung","plugged"}` |
//!
//! Try it by hand: `smshub sim --control /tmp/sim.sock` then
//! `echo '{"cmd":"inject","from":"+358401234567","text":"hi"}' | socat - UNIX:/tmp/sim.sock`.
//!
//! # Tried with gammu (Debian 12, gammu 1.42)
//! Against `--model sim800 --echo` through a `--link` symlink, `connection = at115200`:
//! `gammu identify` printed the SIM800 identity, IMEI and IMSI; `gammu sendsms TEXT` got
//! "message reference=0" and the sent log showed the decoded text (a 400-character
//! `-len 400` send went out as 3 parts, mr 0..2, concat ref/seq/total as gammu set them) (gammu embeds the SMSC it read
//! with AT+CSCA? into the PDU, which the length check handles); `gammu getallsms` showed an
//! injected UCS-2 message with an emoji and a 3-part GSM-7 message from an alphanumeric sender
//! injected out of order, with the right UDH part numbers. `gammu-smsd` (files backend) sent an
//! outbox file and stored every inbound part in its inbox, then deleted them from the SIM
//! (storage empty afterwards). Found and fixed on the way: `AT+CPMS=?` first advertised "ME"
//! as well, and gammu then listed each message twice (ME is an alias of SM here). Commands
//! gammu sends that the simulator answers with ERROR, which gammu tolerates: AT+MODE, AT+CPROT,
//! AT+SYNCML, AT$TSSPCSW, AT+CHUP, AT+CMMS, AT+CBC, AT+CGATT?, AT+CUSD. Reproduce with the
//! ignored test `manual_simulator` (see tests.rs) and a gammurc pointing at its link.
//!
//! # Limits
//! Text mode covers sending one-part messages and reading; no +CMGW/+CMSS, no +CSCB, no USSD.
//! The pty buffers what the client does not read (a few KiB). When a client stops reading and
//! the buffer is full, further output queues up to 256 KiB and is then dropped (logged), so the
//! control channel and shutdown never hang behind a stuck client.

mod at_server;
mod control;
mod faults;
mod storage;
mod task;

use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::{mpsc, watch};

pub use control::{SimClient, SimControl};

use at_server::{Modem, ModemConfig};
use faults::{Faults, parse_rate};

/// Modem families whose identity (+CGMI/+CGMM/+CGMR, ATI) the simulator imitates.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Model {
    Sim800,
    Sim7600,
    Ec25,
    E3372,
    #[default]
    Generic,
}

/// Options of `smshub sim`.
#[derive(clap::Args, Debug, Clone)]
pub struct SimOptions {
    /// Create a symlink at PATH to the pty (like a udev by-id link); a stale link is replaced
    /// atomically, a non-link file is never touched.
    #[arg(long, value_name = "PATH")]
    pub link: Option<PathBuf>,
    /// Listen for control commands (JSON lines) on a Unix socket at PATH.
    #[arg(long, value_name = "PATH")]
    pub control: Option<PathBuf>,
    /// Number of message slots on the simulated SIM.
    #[arg(long, value_name = "N", default_value_t = 30)]
    pub storage_slots: usize,
    /// Milliseconds between Ctrl-Z and the +CMGS answer.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub send_latency_ms: u64,
    /// The +CMS ERROR code that injected send failures report.
    #[arg(long, value_name = "CODE", default_value_t = 500)]
    pub cms_error: u16,
    /// Chance (0..1) that any send fails with --cms-error.
    #[arg(long, value_name = "F", default_value_t = 0.0, value_parser = parse_rate)]
    pub cms_error_rate: f64,
    /// The Nth send (1-based) fails with --cms-error.
    #[arg(long, value_name = "N")]
    pub cms_error_on_send: Option<u64>,
    /// Answer N commands, then stop answering (responses dropped) until told otherwise.
    #[arg(long, value_name = "N")]
    pub hang_after: Option<u64>,
    /// Chance (0..1) that stray bytes precede a response.
    #[arg(long, value_name = "F", default_value_t = 0.0, value_parser = parse_rate)]
    pub garbage_rate: f64,
    /// Put URCs (RING, +CREG, +CEREG, ^RSSI) inside responses and next to the "> " prompt.
    #[arg(long)]
    pub interleave_urcs: bool,
    /// Require this SIM PIN (three wrong tries lock the SIM: PUK 12345678).
    #[arg(long, value_name = "PIN")]
    pub pin: Option<String>,
    /// Start not registered (+CREG stat 2, searching); sends fail with +CMS ERROR: 331.
    #[arg(long)]
    pub not_registered: bool,
    /// Start with every storage slot filled (read messages), so deliveries queue.
    #[arg(long)]
    pub storage_full: bool,
    /// Start with command echo on, as real modems do after power-up.
    #[arg(long)]
    pub echo: bool,
    /// Which modem family to imitate in identity answers.
    #[arg(long, value_enum, default_value_t = Model::Generic)]
    pub model: Model,
    /// Seed for the random faults (garbage, error rate, URC choice); random when not given.
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// Milliseconds before an automatic status report (when a sent PDU asked for one).
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub report_delay_ms: u64,
    /// With AT+CSMS=1: milliseconds a +CDS waits for AT+CNMA before the network resends it.
    #[arg(long, value_name = "N", default_value_t = 15_000)]
    pub cds_ack_timeout_ms: u64,
    /// Resends of an unacknowledged +CDS before the report is stored (+CDSI) instead.
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub cds_resends: u32,
    /// Imitate a phase 2 modem: AT+CSMS=1 is refused (+CMS ERROR: 303), so reports cannot be acknowledged.
    #[arg(long)]
    pub no_csms1: bool,
}

impl Default for SimOptions {
    fn default() -> Self {
        Self {
            link: None,
            control: None,
            storage_slots: 30,
            send_latency_ms: 0,
            cms_error: 500,
            cms_error_rate: 0.0,
            cms_error_on_send: None,
            hang_after: None,
            garbage_rate: 0.0,
            interleave_urcs: false,
            pin: None,
            not_registered: false,
            storage_full: false,
            echo: false,
            model: Model::Generic,
            seed: None,
            report_delay_ms: 1000,
            cds_ack_timeout_ms: 15_000,
            cds_resends: 2,
            no_csms1: false,
        }
    }
}

/// A running simulator (from [`start`]). Dropping it stops the simulator too (without waiting);
/// [`SimHandle::stop`] waits until the pty is closed.
#[derive(Debug)]
pub struct SimHandle {
    pty_path: PathBuf,
    current: watch::Receiver<PathBuf>,
    control: SimControl,
    control_path: Option<PathBuf>,
    seed: u64,
    shutdown: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl SimHandle {
    /// The pty slave path at start. After a replug see [`SimHandle::current_pty_path`].
    pub fn pty_path(&self) -> &Path {
        &self.pty_path
    }

    /// The pty slave path now (changes on replug).
    pub fn current_pty_path(&self) -> PathBuf {
        self.current.borrow().clone()
    }

    pub fn control(&self) -> SimControl {
        self.control.clone()
    }

    pub fn control_path(&self) -> Option<&Path> {
        self.control_path.as_deref()
    }

    /// The seed in use, to reproduce a run with `--seed`.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Stops the simulator: the pty closes, the link and the control socket are removed.
    pub async fn stop(mut self) {
        let _ = self.shutdown.send(true);
        for t in std::mem::take(&mut self.tasks) {
            let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
        }
        if let Some(p) = &self.control_path {
            let _ = std::fs::remove_file(p);
        }
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

/// Starts a simulator in this tokio runtime.
pub async fn start(opts: SimOptions) -> io::Result<SimHandle> {
    for r in [opts.cms_error_rate, opts.garbage_rate] {
        faults::check_rate(r).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    }
    let seed = opts.seed.unwrap_or_else(|| fastrand::u64(..));
    let faults = Faults {
        send_latency: Duration::from_millis(opts.send_latency_ms),
        cms_error: opts.cms_error,
        cms_error_rate: opts.cms_error_rate,
        cms_error_on_send: opts.cms_error_on_send,
        hang_at: opts.hang_after,
        garbage_rate: opts.garbage_rate,
        interleave_urcs: opts.interleave_urcs,
        auto_report: true,
        report_delay: Duration::from_millis(opts.report_delay_ms),
        cds_ack_timeout: Duration::from_millis(opts.cds_ack_timeout_ms),
        cds_resends: opts.cds_resends,
        csms1: !opts.no_csms1,
        lose_acks: 0,
    };
    let config = ModemConfig {
        model: opts.model,
        echo: opts.echo,
        pin: opts.pin.clone(),
        registered: !opts.not_registered,
        storage_slots: opts.storage_slots,
        storage_full: opts.storage_full,
        seed,
    };
    let modem = Modem::new(config, faults, (task::now_ms() / 1000) as i64);
    let (ctrl_tx, ctrl_rx) = mpsc::channel(16);
    let control = SimControl::new(ctrl_tx);
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let listener = opts.control.as_deref().map(control::bind).transpose()?;
    let (sim, pty_path, current) = task::SimTask::new(modem, opts.link.clone(), ctrl_rx)?;
    let mut tasks = vec![tokio::spawn(sim.run(shutdown_rx.clone()))];
    if let Some(l) = listener {
        tasks.push(tokio::spawn(control::serve(l, control.clone(), shutdown_rx)));
    }
    tracing::info!(pty = %pty_path.display(), seed, "modem simulator started");
    Ok(SimHandle { pty_path, current, control, control_path: opts.control, seed, shutdown: shutdown_tx, tasks })
}

/// `smshub sim`: starts the simulator, prints `pty: <path>` as the first stdout line (then
/// `control: <path>` and `link: <path>` when set, and `seed: <n>`), and runs until `shutdown`.
pub async fn run(opts: SimOptions, mut shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
    let link = opts.link.clone();
    let handle = start(opts).await?;
    {
        let mut out = io::stdout().lock();
        writeln!(out, "pty: {}", handle.pty_path().display())?;
        if let Some(c) = handle.control_path() {
            writeln!(out, "control: {}", c.display())?;
        }
        if let Some(l) = &link {
            writeln!(out, "link: {}", l.display())?;
        }
        writeln!(out, "seed: {}", handle.seed())?;
        out.flush()?;
    }
    while !*shutdown.borrow() {
        if shutdown.changed().await.is_err() {
            break;
        }
    }
    handle.stop().await;
    Ok(())
}

#[cfg(test)]
mod tests;
