//! The simulated modem's command interpreter: bytes from the client in, bytes to write back out.
//!
//! No I/O and no clock here: [`Modem::feed`] returns [`Out`] items (bytes, pauses, and events to
//! fire later) that the task in `task.rs` turns into writes and timers. That keeps the modem's
//! behaviour testable without a pty and makes every fault deterministic under a seed.

use std::collections::BTreeMap;
use std::time::Duration;

use super::Model;
use super::faults::{FaultUpdate, Faults};
use super::storage::{Stat, Storage};
use crate::pdu;

/// Something for the I/O task to do, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Out {
    /// Write these bytes to the client.
    Bytes(Vec<u8>),
    /// Wait before writing what follows (and read nothing meanwhile: the modem is busy).
    Delay(Duration),
    /// Fire `Event` after the duration, independent of the output order.
    Schedule(Duration, Event),
}

/// Work the modem does later by itself.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    StatusReport {
        message_ref: u8,
        recipient: String,
        status: u8,
    },
    /// The network's wait for the `+CNMA` of `+CDS` number `id` is over.
    CdsAckTimeout {
        id: u64,
    },
    /// The network delivers this report PDU again (its RP-ACK was lost).
    Redeliver {
        hex: String,
    },
}

/// A `+CDS` sent under `AT+CSMS=1`, waiting for `AT+CNMA`.
#[derive(Debug)]
struct CdsWaiting {
    id: u64,
    hex: String,
    resends: u32,
}

/// One accepted +CMGS, decoded, for the control channel's `sent` log.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SentRecord {
    pub mr: u8,
    pub to: String,
    pub text: String,
    pub encoding: &'static str,
    pub concat: Option<pdu::ConcatInfo>,
    pub status_report_requested: bool,
    pub pdu: String,
    /// Unix time in milliseconds when the modem accepted it.
    pub at: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PinState {
    Ready,
    NeedPin { tries: u8 },
    NeedPuk { tries: u8 },
    Blocked,
}

#[derive(Debug)]
enum Mode {
    Command,
    /// After `AT+CMGS=...`: collecting the PDU (or text) until Ctrl-Z or ESC.
    Prompt {
        len: usize,
        text_to: Option<String>,
        body: Vec<u8>,
    },
}

/// Longest command line kept; longer lines are cut (a real modem's buffer is smaller still).
const MAX_LINE: usize = 2048;
/// Longest PDU body accepted after the prompt (a 176-octet PDU is 352 hex digits).
const MAX_BODY: usize = 4096;
const CTRL_Z: u8 = 0x1a;
const ESC: u8 = 0x1b;
/// The PUK of the simulated SIM.
pub const PUK: &str = "12345678";
const IMEI: &str = "490154203237518";
const IMSI: &str = "244910000000001";

enum Reply {
    /// Information lines, then OK.
    Ok(Vec<String>),
    /// A final error line (ERROR / +CME ERROR / +CMS ERROR).
    Error(String),
    /// The `> ` prompt: the command continues with the body.
    Prompt,
}

/// Settings fixed at start (from [`super::SimOptions`]).
#[derive(Debug, Clone)]
pub struct ModemConfig {
    pub model: Model,
    pub echo: bool,
    pub pin: Option<String>,
    pub registered: bool,
    pub storage_slots: usize,
    pub storage_full: bool,
    pub seed: u64,
}

/// The whole state of the simulated modem and its SIM.
#[derive(Debug)]
pub struct Modem {
    pub faults: Faults,
    config: ModemConfig,
    echo: bool,
    cmee: u8,
    cmgf: u8,
    cscs: String,
    creg_n: [u8; 3],
    pub registered: bool,
    pub csq: u8,
    pin: Option<String>,
    pin_state: PinState,
    smsc: String,
    csms: u8,
    cnmi: [u8; 5],
    pub storage: Storage,
    next_mr: u8,
    pub sent: Vec<SentRecord>,
    pub stats: BTreeMap<String, u64>,
    pub commands_total: u64,
    pub sends_total: u64,
    line: Vec<u8>,
    mode: Mode,
    rng: fastrand::Rng,
    /// A `+CMT` under `AT+CSMS=1` waits for `AT+CNMA`.
    ack_pending: bool,
    /// The `+CDS` waiting for `AT+CNMA`; no other is sent meanwhile (27.005 §3.4.4) ...
    cds_waiting: Option<CdsWaiting>,
    /// ... they wait here, oldest first.
    cds_queue: std::collections::VecDeque<String>,
    next_cds_id: u64,
    /// Unsolicited output due after the current command line's final result.
    after_reply: Vec<Out>,
    next_concat_ref: u16,
}

impl Modem {
    pub fn new(config: ModemConfig, faults: Faults, now_unix: i64) -> Self {
        let first_index = if config.model == Model::Ec25 { 0 } else { 1 };
        let mut storage = Storage::new(config.storage_slots, first_index);
        if config.storage_full {
            let ts = pdu::Timestamp::from_unix(now_unix, 0);
            storage.fill(|n| {
                pdu::encode_deliver("+358400000000", &format!("filler {n}"), &ts, 0)
                    .ok()
                    .and_then(|parts| parts.into_iter().next())
                    .unwrap_or_else(|| "00".to_string())
            });
        }
        let rng = fastrand::Rng::with_seed(config.seed);
        let pin_state = if config.pin.is_some() { PinState::NeedPin { tries: 3 } } else { PinState::Ready };
        Self {
            faults,
            echo: config.echo,
            cmee: 0,
            cmgf: 0,
            cscs: "GSM".into(),
            creg_n: [0; 3],
            registered: config.registered,
            csq: 20,
            pin: config.pin.clone(),
            pin_state,
            smsc: "+358405202000".into(),
            csms: 0,
            cnmi: [2, 1, 0, 0, 0],
            storage,
            next_mr: 0,
            sent: Vec::new(),
            stats: BTreeMap::new(),
            commands_total: 0,
            sends_total: 0,
            line: Vec::new(),
            mode: Mode::Command,
            rng,
            ack_pending: false,
            cds_waiting: None,
            cds_queue: std::collections::VecDeque::new(),
            next_cds_id: 0,
            after_reply: Vec::new(),
            next_concat_ref: 1,
            config,
        }
    }

    /// What a power cycle (unplug + replug) resets: volatile settings and the PIN unlock. The
    /// SIM keeps its messages and its PIN retry counter.
    pub fn power_cycle(&mut self) {
        self.reset_settings();
        if self.pin.is_some() && self.pin_state == PinState::Ready {
            self.pin_state = PinState::NeedPin { tries: 3 };
        }
        self.line.clear();
        self.mode = Mode::Command;
        // Reports routed to the old session are gone with it (the network would store them
        // later; ds is 0 after the power cycle).
        self.cds_waiting = None;
        self.cds_queue.clear();
        self.ack_pending = false;
        self.after_reply.clear();
    }

    /// ATZ / AT&F: back to the start profile (echo as configured, CMEE 0, PDU mode, ...).
    fn reset_settings(&mut self) {
        self.echo = self.config.echo;
        self.cmee = 0;
        self.cmgf = 0;
        self.cscs = "GSM".into();
        self.creg_n = [0; 3];
        self.cnmi = [2, 1, 0, 0, 0];
        self.csms = 0;
    }

    pub fn hung(&self) -> bool {
        self.faults.hang_at.is_some_and(|h| self.commands_total >= h)
    }

    pub fn apply(&mut self, u: &FaultUpdate) {
        if let Some(ms) = u.send_latency_ms {
            self.faults.send_latency = Duration::from_millis(ms);
        }
        if let Some(c) = u.cms_error {
            self.faults.cms_error = c;
        }
        if let Some(r) = u.cms_error_rate {
            self.faults.cms_error_rate = r;
        }
        if let Some(n) = u.cms_error_on_send {
            self.faults.cms_error_on_send = n;
        }
        if let Some(h) = u.hang_after {
            self.faults.hang_at = h.map(|n| self.commands_total.saturating_add(n));
        }
        if let Some(r) = u.garbage_rate {
            self.faults.garbage_rate = r;
        }
        if let Some(b) = u.interleave_urcs {
            self.faults.interleave_urcs = b;
        }
        if let Some(b) = u.auto_report {
            self.faults.auto_report = b;
        }
        if let Some(ms) = u.report_delay_ms {
            self.faults.report_delay = Duration::from_millis(ms);
        }
        if let Some(c) = u.csq {
            self.csq = c;
        }
        if let Some(ms) = u.cds_ack_timeout_ms {
            self.faults.cds_ack_timeout = Duration::from_millis(ms);
        }
        if let Some(n) = u.cds_resends {
            self.faults.cds_resends = n;
        }
        if let Some(b) = u.csms1 {
            self.faults.csms1 = b;
        }
        if let Some(n) = u.lose_acks {
            self.faults.lose_acks = n;
        }
    }

    /// Changes registration; returns the URCs a modem with +CREG/+CEREG/+CGREG=1|2 would send.
    pub fn set_registered(&mut self, registered: bool) -> Vec<Out> {
        self.registered = registered;
        if self.hung() {
            return Vec::new();
        }
        let stat = self.reg_stat();
        let mut out = Vec::new();
        for (i, name) in ["+CREG", "+CGREG", "+CEREG"].iter().enumerate() {
            if self.creg_n.get(i).is_some_and(|n| *n > 0) {
                out.push(Out::Bytes(format!("\r\n{name}: {stat}\r\n").into_bytes()));
            }
        }
        out
    }

    fn reg_stat(&self) -> u8 {
        if self.registered { 1 } else { 2 }
    }

    /// Feeds bytes from the client. `now_ms` is Unix time in milliseconds.
    pub fn feed(&mut self, bytes: &[u8], now_ms: u64) -> Vec<Out> {
        let mut out = Vec::new();
        let mut echo = Vec::new();
        for &b in bytes {
            if self.echo && !self.hung() {
                echo.push(b);
            }
            match &mut self.mode {
                Mode::Command => {
                    if b == b'\r' || b == b'\n' {
                        let line = std::mem::take(&mut self.line);
                        if !line.iter().all(u8::is_ascii_whitespace) {
                            flush_echo(&mut echo, &mut out);
                            self.command_line(&line, &mut out);
                        }
                    } else if self.line.len() < MAX_LINE {
                        self.line.push(b);
                    }
                }
                Mode::Prompt { body, .. } => {
                    if b == CTRL_Z {
                        flush_echo(&mut echo, &mut out);
                        self.finish_send(now_ms, &mut out);
                    } else if b == ESC {
                        flush_echo(&mut echo, &mut out);
                        self.mode = Mode::Command;
                        self.final_result(Vec::new(), "OK", &mut out);
                    } else if body.len() < MAX_BODY {
                        body.push(b);
                    }
                }
            }
        }
        flush_echo(&mut echo, &mut out);
        if matches!(self.mode, Mode::Command) {
            out.append(&mut self.after_reply);
        }
        out
    }

    fn command_line(&mut self, raw: &[u8], out: &mut Vec<Out>) {
        let text = String::from_utf8_lossy(raw);
        // Real modems skip anything before "AT" (stray bytes, a leftover Ctrl-Z).
        let upper = text.to_ascii_uppercase();
        let Some(start) = upper.find("AT") else {
            self.count("(garbage)");
            return;
        };
        let cmd = text.get(start..).unwrap_or("").trim_end();
        self.commands_total += 1;
        self.count(&stats_key(cmd));
        if self.faults.hang_at.is_some_and(|h| self.commands_total > h) {
            return;
        }
        let body = cmd.get(2..).unwrap_or("");
        let mut info = Vec::new();
        for sub in split_commands(body) {
            match self.execute(&sub) {
                Reply::Ok(lines) => info.extend(lines),
                Reply::Error(e) => return self.final_result(info, &e, out),
                Reply::Prompt => return self.prompt(out),
            }
        }
        self.final_result(info, "OK", out);
    }

    fn count(&mut self, key: &str) {
        *self.stats.entry(key.to_string()).or_insert(0) += 1;
    }

    fn garbage(&mut self) -> Vec<u8> {
        if self.faults.garbage_rate > 0.0 && self.rng.f64() < self.faults.garbage_rate {
            const STRAY: &[u8] = &[0x00, 0xff, 0x7f, 0x11, 0x13, b'~', 0x80, 0xfe];
            let n = self.rng.usize(1..=4);
            (0..n).map(|_| STRAY.get(self.rng.usize(..STRAY.len())).copied().unwrap_or(0)).collect()
        } else {
            Vec::new()
        }
    }

    /// An unsolicited result code that is safe to put into the response to `avoid` (a +CREG
    /// URC inside the answer to AT+CREG? would be ambiguous even for a careful client).
    fn random_urc(&mut self) -> String {
        let stat = self.reg_stat();
        let choices =
            ["RING".to_string(), format!("+CREG: {stat}"), format!("+CEREG: {stat}"), "^RSSI: 17".to_string()];
        let i = self.rng.usize(..choices.len());
        choices.get(i).cloned().unwrap_or_else(|| "RING".into())
    }

    fn final_result(&mut self, info: Vec<String>, final_line: &str, out: &mut Vec<Out>) {
        let mut bytes = self.garbage();
        let urc = if self.faults.interleave_urcs {
            let u = self.random_urc();
            let reg_answer = info.iter().any(|l| l.starts_with("+CREG:") || l.starts_with("+CEREG:"));
            (!reg_answer || u == "RING" || u.starts_with('^')).then_some(u)
        } else {
            None
        };
        let urc_first = self.rng.bool();
        if let Some(u) = &urc
            && urc_first
        {
            bytes.extend_from_slice(format!("\r\n{u}\r\n").as_bytes());
        }
        if !info.is_empty() {
            bytes.extend_from_slice(format!("\r\n{}\r\n", info.join("\r\n")).as_bytes());
        }
        if let Some(u) = &urc
            && !urc_first
        {
            bytes.extend_from_slice(format!("\r\n{u}\r\n").as_bytes());
        }
        bytes.extend_from_slice(format!("\r\n{final_line}\r\n").as_bytes());
        out.push(Out::Bytes(bytes));
    }

    fn prompt(&mut self, out: &mut Vec<Out>) {
        let mut bytes = b"\r\n> ".to_vec();
        if self.faults.interleave_urcs {
            let u = self.random_urc();
            bytes.extend_from_slice(format!("\r\n{u}\r\n").as_bytes());
        }
        out.push(Out::Bytes(bytes));
    }

    fn cme(&self, code: u16) -> Reply {
        Reply::Error(match self.cmee {
            0 => "ERROR".into(),
            1 => format!("+CME ERROR: {code}"),
            _ => format!("+CME ERROR: {}", cme_text(code)),
        })
    }

    fn cms(&self, code: u16) -> String {
        match self.cmee {
            0 => "ERROR".into(),
            1 => format!("+CMS ERROR: {code}"),
            _ => match cms_text(code) {
                Some(t) => format!("+CMS ERROR: {t}"),
                None => format!("+CMS ERROR: {code}"),
            },
        }
    }

    /// The SIM state check of SMS commands (27.005 errors) ...
    fn sim_ready_cms(&self) -> Option<Reply> {
        match self.pin_state {
            PinState::Ready => None,
            PinState::NeedPin { .. } => Some(Reply::Error(self.cms(311))),
            PinState::NeedPuk { .. } => Some(Reply::Error(self.cms(316))),
            PinState::Blocked => Some(Reply::Error(self.cms(313))),
        }
    }

    /// ... and of 27.007 commands.
    fn sim_ready_cme(&self) -> Option<Reply> {
        match self.pin_state {
            PinState::Ready => None,
            PinState::NeedPin { .. } => Some(self.cme(11)),
            PinState::NeedPuk { .. } => Some(self.cme(12)),
            PinState::Blocked => Some(self.cme(13)),
        }
    }

    fn execute(&mut self, sub: &str) -> Reply {
        let upper = sub.to_ascii_uppercase();
        if !(upper.starts_with('+') || upper.starts_with('^') || upper.starts_with('$')) {
            return self.basic(&upper);
        }
        let (name, kind) = match upper.find(['=', '?']) {
            None => (upper.as_str(), Kind::Exec),
            Some(i) => {
                let name = upper.get(..i).unwrap_or("");
                let rest = sub.get(i..).unwrap_or("");
                if rest == "?" {
                    (name, Kind::Read)
                } else if rest == "=?" {
                    (name, Kind::Test)
                } else if let Some(args) = rest.strip_prefix('=') {
                    (name, Kind::Set(split_args(args)))
                } else {
                    return Reply::Error("ERROR".into());
                }
            }
        };
        let name = name.to_string();
        if matches!(kind, Kind::Test) {
            return self.test_form(&name);
        }
        self.extended(&name, kind)
    }

    /// `AT+X=?`: the supported ranges, which clients such as gammu parse to pick memories and
    /// modes.
    fn test_form(&self, name: &str) -> Reply {
        let line = match name {
            // Only the SIM store exists. Advertising "ME" too made gammu list every message
            // twice (once per memory), since ME and MT are accepted as aliases of SM.
            "+CPMS" => r#"+CPMS: ("SM"),("SM"),("SM")"#,
            "+CSCS" => r#"+CSCS: ("GSM","UCS2","IRA")"#,
            "+CMGF" => "+CMGF: (0,1)",
            "+CNMI" => "+CNMI: (0-3),(0-3),(0-3),(0-2),(0,1)",
            "+CMGL" if self.cmgf == 1 => r#"+CMGL: ("REC UNREAD","REC READ","STO UNSENT","STO SENT","ALL")"#,
            "+CMGL" => "+CMGL: (0-4)",
            "+CMEE" => "+CMEE: (0-2)",
            "+CREG" | "+CGREG" | "+CEREG" => return Reply::Ok(vec![format!("{name}: (0-2)")]),
            "+CSMS" => "+CSMS: (0,1)",
            "+CMGD" => "+CMGD: (1-255),(0-4)",
            "+CSQ" => "+CSQ: (0-31,99),(0-7,99)",
            n if KNOWN.contains(&n) => return Reply::Ok(Vec::new()),
            _ => return Reply::Error("ERROR".into()),
        };
        Reply::Ok(vec![line.to_string()])
    }

    fn basic(&mut self, s: &str) -> Reply {
        let mut lines = Vec::new();
        let mut chars = s.chars().peekable();
        while let Some(c) = chars.next() {
            let mut cmd = String::from(c);
            if c == '&'
                && let Some(n) = chars.next()
            {
                cmd.push(n);
            }
            while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                cmd.push(*d);
                chars.next();
            }
            match cmd.as_str() {
                "E" | "E0" => self.echo = false,
                "E1" => self.echo = true,
                "Z" | "Z0" | "&F" | "&F0" => self.reset_settings(),
                "V1" | "Q0" | "&W" | "&W0" | "X4" | "&C1" | "&D2" | "S0" => {}
                "I" | "I0" => {
                    let (m, model, rev) = self.identity();
                    lines.extend([m.to_string(), model.to_string(), rev.to_string()]);
                }
                _ => return Reply::Error("ERROR".into()),
            }
        }
        Reply::Ok(lines)
    }

    fn identity(&self) -> (&'static str, &'static str, &'static str) {
        match self.config.model {
            Model::Sim800 => ("SIMCOM_Ltd", "SIMCOM_SIM800L", "Revision:1418B04SIM800L24"),
            Model::Sim7600 => ("SIMCOM INCORPORATED", "SIMCOM_SIM7600E-H", "LE20B04SIM7600M22"),
            Model::Ec25 => ("Quectel", "EC25", "EC25EFAR06A06M4G"),
            Model::E3372 => ("huawei", "E3372", "22.315.01.00.00"),
            Model::Generic => ("smshub", "smshub simulated modem", "sim-1"),
        }
    }

    fn extended(&mut self, name: &str, kind: Kind) -> Reply {
        let ok = || Reply::Ok(Vec::new());
        let one = |l: String| Reply::Ok(vec![l]);
        match (name, kind) {
            ("+CMEE", Kind::Read) => one(format!("+CMEE: {}", self.cmee)),
            ("+CMEE", Kind::Set(a)) => match num_arg(&a, 0).filter(|n| *n <= 2) {
                Some(n) => {
                    self.cmee = n as u8;
                    ok()
                }
                None => self.cme(3),
            },
            ("+CPIN", Kind::Read) => one(match self.pin_state {
                PinState::Ready => "+CPIN: READY",
                PinState::NeedPin { .. } => "+CPIN: SIM PIN",
                PinState::NeedPuk { .. } => "+CPIN: SIM PUK",
                PinState::Blocked => return self.cme(13),
            }
            .to_string()),
            ("+CPIN", Kind::Set(a)) => self.enter_pin(&a),
            ("+CREG" | "+CGREG" | "+CEREG", Kind::Read) => {
                let n = self.creg_n.get(reg_slot(name)).copied().unwrap_or(0);
                let stat = self.reg_stat();
                if n == 2 && self.registered {
                    one(format!("{name}: {n},{stat},\"00A1\",\"01B2C3D4\",7"))
                } else {
                    one(format!("{name}: {n},{stat}"))
                }
            }
            ("+CREG" | "+CGREG" | "+CEREG", Kind::Set(a)) => match num_arg(&a, 0).filter(|n| *n <= 2) {
                Some(n) => {
                    if let Some(slot) = self.creg_n.get_mut(reg_slot(name)) {
                        *slot = n as u8;
                    }
                    ok()
                }
                None => self.cme(3),
            },
            ("+CSQ", Kind::Exec) => one(format!("+CSQ: {},99", self.csq)),
            ("+CGMI" | "+GMI", Kind::Exec) => one(self.identity().0.into()),
            ("+CGMM" | "+GMM", Kind::Exec) => one(self.identity().1.into()),
            ("+CGMR" | "+GMR", Kind::Exec) => one(self.identity().2.into()),
            ("+CGSN" | "+GSN", Kind::Exec) => one(IMEI.into()),
            ("+CIMI", Kind::Exec) => match self.sim_ready_cme() {
                Some(e) => e,
                None => one(IMSI.into()),
            },
            ("+CFUN", Kind::Read) => one("+CFUN: 1".into()),
            ("+CFUN", Kind::Set(_)) => ok(),
            ("+CSCS", Kind::Read) => one(format!("+CSCS: \"{}\"", self.cscs)),
            ("+CSCS", Kind::Set(a)) => {
                self.cscs = unquote(a.first().map(String::as_str).unwrap_or("GSM"));
                ok()
            }
            ("+CMGF", Kind::Read) => one(format!("+CMGF: {}", self.cmgf)),
            ("+CMGF", Kind::Set(a)) => match num_arg(&a, 0).filter(|n| *n <= 1) {
                Some(n) => {
                    self.cmgf = n as u8;
                    ok()
                }
                None => Reply::Error(self.cms(302)),
            },
            ("+CSMS", Kind::Read) => one(format!("+CSMS: {},1,1,1", self.csms)),
            ("+CSMS", Kind::Set(a)) => match num_arg(&a, 0).filter(|n| *n <= 1) {
                Some(1) if !self.faults.csms1 => Reply::Error(self.cms(303)),
                Some(n) => {
                    self.csms = n as u8;
                    one("+CSMS: 1,1,1".into())
                }
                None => Reply::Error(self.cms(302)),
            },
            ("+CSCA", Kind::Read) => match self.sim_ready_cms() {
                Some(e) => e,
                None => one(format!("+CSCA: \"{}\",145", self.smsc)),
            },
            ("+CSCA", Kind::Set(a)) => match (self.sim_ready_cms(), a.first()) {
                (Some(e), _) => e,
                (None, Some(s)) if !unquote(s).is_empty() => {
                    self.smsc = unquote(s);
                    ok()
                }
                _ => Reply::Error(self.cms(304)),
            },
            ("+CPMS", Kind::Read) => match self.sim_ready_cms() {
                Some(e) => e,
                None => {
                    let (u, t) = (self.storage.used(), self.storage.capacity());
                    one(format!("+CPMS: \"SM\",{u},{t},\"SM\",{u},{t},\"SM\",{u},{t}"))
                }
            },
            ("+CPMS", Kind::Set(a)) => {
                if let Some(e) = self.sim_ready_cms() {
                    return e;
                }
                let known = a.iter().all(|m| matches!(unquote(m).as_str(), "SM" | "ME" | "MT"));
                if a.is_empty() || !known {
                    return Reply::Error(self.cms(302));
                }
                let (u, t) = (self.storage.used(), self.storage.capacity());
                one(format!("+CPMS: {u},{t},{u},{t},{u},{t}"))
            }
            ("+CNMI", Kind::Read) => {
                let c = self.cnmi;
                one(format!("+CNMI: {},{},{},{},{}", c[0], c[1], c[2], c[3], c[4]))
            }
            ("+CNMI", Kind::Set(a)) => {
                let limits = [3u64, 3, 3, 2, 1];
                for (i, limit) in limits.iter().enumerate() {
                    if let Some(arg) = a.get(i).filter(|s| !s.is_empty()) {
                        match arg.trim().parse::<u64>().ok().filter(|n| n <= limit) {
                            Some(n) => {
                                if let Some(slot) = self.cnmi.get_mut(i) {
                                    *slot = n as u8;
                                }
                            }
                            None => return Reply::Error(self.cms(302)),
                        }
                    }
                }
                ok()
            }
            ("+CNMA", Kind::Exec) => self.acknowledge(0),
            ("+CNMA", Kind::Set(a)) => match (num_arg(&a, 0).filter(|n| *n <= 2), a.get(1).map(|l| l.trim())) {
                // An RP-ACK/RP-ERROR with a PDU of its own (length > 0) is not simulated.
                (Some(n), None | Some("") | Some("0")) => self.acknowledge(n as u8),
                _ => Reply::Error(self.cms(304)),
            },
            ("+CMGS", Kind::Set(a)) => self.start_send(&a),
            ("+CMGL", k @ (Kind::Exec | Kind::Set(_))) => self.list(k),
            ("+CMGR", Kind::Set(a)) => self.read(&a),
            ("+CMGD", Kind::Set(a)) => self.delete(&a),
            _ => Reply::Error("ERROR".into()),
        }
    }

    fn enter_pin(&mut self, a: &[String]) -> Reply {
        let first = a.first().map(|s| unquote(s)).unwrap_or_default();
        match self.pin_state {
            PinState::Ready => self.cme(3),
            PinState::Blocked => self.cme(13),
            PinState::NeedPin { tries } => {
                if self.pin.as_deref() == Some(first.as_str()) {
                    self.pin_state = PinState::Ready;
                    Reply::Ok(Vec::new())
                } else {
                    self.pin_state = if tries <= 1 {
                        PinState::NeedPuk { tries: 10 }
                    } else {
                        PinState::NeedPin { tries: tries - 1 }
                    };
                    self.cme(16)
                }
            }
            PinState::NeedPuk { tries } => {
                let new_pin = a.get(1).map(|s| unquote(s));
                match new_pin {
                    Some(p) if first == PUK && !p.is_empty() => {
                        self.pin = Some(p);
                        self.pin_state = PinState::Ready;
                        Reply::Ok(Vec::new())
                    }
                    _ => {
                        self.pin_state =
                            if tries <= 1 { PinState::Blocked } else { PinState::NeedPuk { tries: tries - 1 } };
                        self.cme(16)
                    }
                }
            }
        }
    }
}

#[derive(Debug)]
enum Kind {
    Exec,
    Read,
    Test,
    Set(Vec<String>),
}

/// Extended commands whose test form (`=?`) answers a bare OK (no ranges worth listing).
const KNOWN: &[&str] = &[
    "+CMEE", "+CPIN", "+CREG", "+CGREG", "+CEREG", "+CSQ", "+CGMI", "+CGMM", "+CGMR", "+CGSN", "+CIMI", "+CFUN",
    "+CSCS", "+CMGF", "+CSMS", "+CSCA", "+CPMS", "+CNMI", "+CNMA", "+CMGS", "+CMGL", "+CMGR", "+CMGD",
];

fn reg_slot(name: &str) -> usize {
    match name {
        "+CREG" => 0,
        "+CGREG" => 1,
        _ => 2,
    }
}

fn flush_echo(echo: &mut Vec<u8>, out: &mut Vec<Out>) {
    if !echo.is_empty() {
        out.push(Out::Bytes(std::mem::take(echo)));
    }
}

mod sms;
mod syntax;

#[cfg(test)]
use syntax::tpdu_len;
use syntax::{cme_text, cms_text, num_arg, split_args, split_commands, stats_key, unquote};

#[cfg(test)]
mod tests;
