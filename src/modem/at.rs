//! AT engine: byte framing apart from meaning.
//!
//! Two layers live here:
//!
//! * [`Digester`] is a pure, synchronous state machine (no I/O). It takes the modem's bytes in whatever
//!   chunks the serial port hands over and turns them into [`Event`]s: information lines of the command in
//!   flight, its final result, the `> ` prompt of `+CMGS`, and unsolicited result codes ([`Urc`]). It knows
//!   which command is in flight, because a line like `+CREG: 2,1` is the answer to `AT+CREG?` but an
//!   unsolicited registration change at any other time.
//! * [`AtClient`] is a handle to one actor task that owns the byte stream. The actor runs the digester,
//!   forwards URCs to a channel at all times (also in the middle of a response or while waiting for the
//!   prompt) and runs one command at a time with a timeout.
//!
//! What a response *means* (PIN states, registration, message lists) is the driver's business
//! (`driver.rs`); this module only frames.
//!
//! Rules that came from field reports (PROTOCOLS.md section 4): URCs arrive anywhere; `+CMT`/`+CDS` carry
//! their PDU on the next line, even in the middle of another command's response; the prompt is `\r\n> `
//! without a line end; lines end in `\r`, `\r\n` or `\n\r`; boot noise and garbage bytes appear at any time.
//! Nothing the modem says is dropped silently: unclassified text goes out as [`Urc::Other`] and is
//! counted; bytes that are not text are counted and logged at debug.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// A line longer than this is not something a modem says in PDU mode (a PDU line is at most ~360 hex
/// digits); it is flushed as a line on its own so a stream without line ends cannot grow memory forever.
const MAX_LINE: usize = 4096;

/// How many URCs may wait for the driver. The driver reads them between commands; if it ever falls this
/// far behind, further URCs are logged and dropped (the driver re-lists storage periodically, so a lost
/// `+CMTI` delays a message but does not lose it).
const URC_QUEUE: usize = 1024;

/// Unsolicited result codes, classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Urc {
    /// `+CMTI: "SM",3`: a message was stored at `index` of `mem`.
    Cmti { mem: String, index: u32 },
    /// `+CMT: ,23` plus its PDU line: a message delivered directly (not stored).
    Cmt { pdu: String },
    /// `+CDS: 25` plus its PDU line: a status report delivered directly.
    Cds { pdu: String },
    /// `+CDSI: "SR",2`: a status report was stored.
    Cdsi { mem: String, index: u32 },
    /// `RING`: an incoming call (we do not answer calls; logged only).
    Ring,
    /// `+CREG:`/`+CGREG:`/`+CEREG:` registration change.
    Registration { kind: RegKind, stat: u8 },
    /// `+CUSD: ...`, the text after the colon.
    Cusd(String),
    /// Anything else the modem said on its own: boot noise (`RDY`, `SMS Ready`, `+CPIN: READY`, ...),
    /// vendor URCs, late lines of a timed-out command.
    Other(String),
}

/// Which registration a [`Urc::Registration`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum RegKind {
    /// `+CREG`: circuit switched (GSM/UMTS).
    Creg,
    /// `+CGREG`: packet switched (GPRS/UMTS).
    Cgreg,
    /// `+CEREG`: EPS (LTE). On LTE-only modules this is the one that counts.
    Cereg,
}

/// `+CME ERROR` in numeric or verbose form (`AT+CMEE=1` or `=2`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CmeError {
    /// A numeric code, or a verbose text we know the code of.
    Code(u16),
    /// A verbose text we do not know; kept as the modem said it.
    Text(String),
}

impl CmeError {
    /// The numeric code where known.
    pub fn code(&self) -> Option<u16> {
        match self {
            CmeError::Code(c) => Some(*c),
            CmeError::Text(_) => None,
        }
    }
}

impl std::fmt::Display for CmeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CmeError::Code(c) => match CME_TEXTS.iter().find(|(code, _)| code == c) {
                Some((_, text)) => write!(f, "{c} ({text})"),
                None => write!(f, "{c}"),
            },
            CmeError::Text(t) => write!(f, "{t:?}"),
        }
    }
}

/// 27.007 §9.2 codes in verbose form (PROTOCOLS.md section 4, "27.007 basics"), used to map `AT+CMEE=2`
/// answers back to numbers. Compared case-insensitively.
const CME_TEXTS: &[(u16, &str)] = &[
    (0, "phone failure"),
    (3, "operation not allowed"),
    (4, "operation not supported"),
    (10, "SIM not inserted"),
    (11, "SIM PIN required"),
    (12, "SIM PUK required"),
    (13, "SIM failure"),
    (14, "SIM busy"),
    (15, "SIM wrong"),
    (16, "incorrect password"),
    (17, "SIM PIN2 required"),
    (18, "SIM PUK2 required"),
    (20, "memory full"),
    (21, "invalid index"),
    (22, "not found"),
    (23, "memory failure"),
    (30, "no network service"),
    (31, "network timeout"),
    (32, "network not allowed - emergency calls only"),
    (100, "unknown"),
];

/// 27.005 §3.2.5 codes in verbose form, for modems that answer `+CMS ERROR: <text>`.
const CMS_TEXTS: &[(u16, &str)] = &[
    (300, "ME failure"),
    (301, "SMS service of ME reserved"),
    (302, "operation not allowed"),
    (303, "operation not supported"),
    (304, "invalid PDU mode parameter"),
    (305, "invalid text mode parameter"),
    (310, "SIM not inserted"),
    (311, "SIM PIN required"),
    (313, "SIM failure"),
    (314, "SIM busy"),
    (316, "SIM PUK required"),
    (320, "memory failure"),
    (321, "invalid memory index"),
    (322, "memory full"),
    (330, "SMSC address unknown"),
    (331, "no network service"),
    (332, "network timeout"),
    (340, "no +CNMA acknowledgement expected"),
    (500, "unknown error"),
];

/// The line that ends a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FinalResult {
    Ok,
    Error,
    Cms(u16),
    Cme(CmeError),
    NoCarrier,
    Busy,
    NoAnswer,
    NoDialtone,
}

/// What the digester found in the byte stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// An information line of the command in flight (e.g. `+CSQ: 20,99`, or the PDU line after `+CMGR:`).
    Response(String),
    /// The command in flight ended.
    Final(FinalResult),
    /// The `> ` prompt of `AT+CMGS`.
    Prompt,
    /// An unsolicited result code.
    Urc(Urc),
}

/// The command the digester is framing a response for.
#[derive(Debug)]
struct Flight {
    command: String,
    /// `+CMGL` for `AT+CMGL=4`; `None` for commands without a `+`/`^` name (`AT`, `ATE0`, `ATI`).
    name: Option<String>,
    echo_pending: bool,
    want_prompt: bool,
    payload_echo: Option<String>,
}

/// Who owns the next line when it is a PDU.
#[derive(Debug)]
enum PduOwner {
    Cmt(String),
    Cds(String),
    Response,
}

/// The pure line digester. Feed it bytes; it appends [`Event`]s.
#[derive(Debug, Default)]
pub struct Digester {
    buf: Vec<u8>,
    flight: Option<Flight>,
    pdu_next: Option<PduOwner>,
    skip_space: bool,
    unknown_lines: u64,
    stray_bytes: u64,
    orphan_finals: u64,
}

impl Digester {
    pub fn new() -> Self {
        Self::default()
    }

    /// A command was written; frame what follows as its response. `want_prompt` is set for `AT+CMGS`.
    pub fn begin(&mut self, command: &str, want_prompt: bool) {
        let command = command.trim().to_string();
        self.flight = Some(Flight {
            name: command_name(&command),
            command,
            echo_pending: true,
            want_prompt,
            payload_echo: None,
        });
    }

    /// The PDU was written after the prompt; its echo (echo on) is not a response line.
    pub fn payload_written(&mut self, hex: &str) {
        if let Some(f) = self.flight.as_mut() {
            f.want_prompt = false;
            f.payload_echo = Some(hex.trim().to_string());
        }
    }

    /// The command timed out or was aborted: from now on its late lines are unsolicited text and its late
    /// final result is discarded, so it cannot be taken as the answer to the next command.
    pub fn abandon(&mut self) {
        if let Some(f) = self.flight.take() {
            tracing::debug!(command = %redact(&f.command), "AT command abandoned; late answers will be discarded");
        }
    }

    /// Whether a command is being framed.
    pub fn in_flight(&self) -> bool {
        self.flight.is_some()
    }

    /// Lines that were neither a response nor a known URC (sent out as [`Urc::Other`]).
    pub fn unknown_lines(&self) -> u64 {
        self.unknown_lines
    }

    /// Bytes dropped because they are not text (NUL, 0xFF line noise, control characters).
    pub fn stray_bytes(&self) -> u64 {
        self.stray_bytes
    }

    /// Final results that arrived with no command in flight (late answers after a timeout).
    pub fn orphan_finals(&self) -> u64 {
        self.orphan_finals
    }

    /// Digest a chunk of bytes. Lines may be split across chunks in any way.
    pub fn feed(&mut self, bytes: &[u8], out: &mut Vec<Event>) {
        for &b in bytes {
            if self.skip_space {
                self.skip_space = false;
                if b == b' ' {
                    continue;
                }
            }
            match b {
                b'\r' | b'\n' => self.end_line(out),
                b'\t' | 0x20..=0x7e | 0x80..=0xfd => {
                    self.buf.push(b);
                    if self.buf == b">" && self.flight.as_ref().is_some_and(|f| f.want_prompt) {
                        self.buf.clear();
                        self.skip_space = true;
                        if let Some(f) = self.flight.as_mut() {
                            f.want_prompt = false;
                        }
                        out.push(Event::Prompt);
                    } else if self.buf.len() >= MAX_LINE {
                        tracing::debug!(
                            len = self.buf.len(),
                            "AT line too long; flushing it as a line"
                        );
                        self.end_line(out);
                    }
                }
                _ => {
                    self.stray_bytes += 1;
                    tracing::debug!(
                        byte = b,
                        total = self.stray_bytes,
                        "stray byte from modem dropped"
                    );
                }
            }
        }
    }

    fn end_line(&mut self, out: &mut Vec<Event>) {
        if self.buf.is_empty() {
            return;
        }
        let raw = String::from_utf8_lossy(&self.buf).into_owned();
        self.buf.clear();
        let line = raw
            .trim_start_matches(|c: char| c == '\u{fffd}' || c.is_whitespace())
            .trim_end();
        if line.is_empty() {
            self.stray_bytes += raw.len() as u64;
            tracing::debug!(
                total = self.stray_bytes,
                "line of garbage bytes from modem dropped"
            );
            return;
        }
        self.classify(line, out);
    }

    fn classify(&mut self, line: &str, out: &mut Vec<Event>) {
        if let Some(owner) = self.pdu_next.take() {
            if is_pdu_hex(line) {
                let pdu = line.to_string();
                out.push(match owner {
                    PduOwner::Cmt(_) => Event::Urc(Urc::Cmt { pdu }),
                    PduOwner::Cds(_) => Event::Urc(Urc::Cds { pdu }),
                    PduOwner::Response => Event::Response(pdu),
                });
                return;
            }
            // The header promised a PDU that did not come: keep the header as text, then go on.
            if let PduOwner::Cmt(header) | PduOwner::Cds(header) = owner {
                self.other(header, out);
            }
        }

        if let Some(f) = self.flight.as_mut() {
            if f.echo_pending && line.eq_ignore_ascii_case(&f.command) {
                f.echo_pending = false;
                return;
            }
            if f.payload_echo.as_deref() == Some(line) {
                f.payload_echo = None;
                return;
            }
        }

        if let Some(fin) = parse_final(line) {
            match self.flight.take() {
                Some(_) => out.push(Event::Final(fin)),
                None => {
                    self.orphan_finals += 1;
                    tracing::debug!(
                        line,
                        total = self.orphan_finals,
                        "final result with no command in flight discarded"
                    );
                }
            }
            return;
        }

        let name = line_name(line);
        if let Some(f) = self.flight.as_ref()
            && name.is_some()
            && name == f.name.as_deref()
        {
            if matches!(name, Some("+CMGR") | Some("+CMGL")) {
                self.pdu_next = Some(PduOwner::Response);
            }
            out.push(Event::Response(line.to_string()));
            return;
        }

        if let Some(urc) = self.parse_urc(line, name) {
            out.push(Event::Urc(urc));
            return;
        }
        if self.pdu_next.is_some() {
            return; // +CMT/+CDS header: waits for its PDU line.
        }

        if self.flight.is_some() && name.is_none() && !is_boot_noise(line) {
            out.push(Event::Response(line.to_string()));
            return;
        }
        self.other(line.to_string(), out);
    }

    fn other(&mut self, line: String, out: &mut Vec<Event>) {
        self.unknown_lines += 1;
        tracing::debug!(line = %redact(&line), total = self.unknown_lines, "unsolicited text from modem");
        out.push(Event::Urc(Urc::Other(line)));
    }

    fn parse_urc(&mut self, line: &str, name: Option<&str>) -> Option<Urc> {
        if line == "RING" {
            return Some(Urc::Ring);
        }
        let name = name?;
        let rest = line.get(name.len() + 1..).unwrap_or("").trim();
        match name {
            "+CMTI" | "+CDSI" => {
                let f = fields(rest);
                let mem = f.first()?.as_str().to_string();
                let index = f.get(1)?.as_u32()?;
                Some(if name == "+CMTI" {
                    Urc::Cmti { mem, index }
                } else {
                    Urc::Cdsi { mem, index }
                })
            }
            "+CMT" => {
                self.pdu_next = Some(PduOwner::Cmt(line.to_string()));
                None
            }
            "+CDS" => {
                self.pdu_next = Some(PduOwner::Cds(line.to_string()));
                None
            }
            "+CREG" | "+CGREG" | "+CEREG" => {
                let kind = match name {
                    "+CREG" => RegKind::Creg,
                    "+CGREG" => RegKind::Cgreg,
                    _ => RegKind::Cereg,
                };
                let f = fields(rest);
                // URC form is `<stat>[,<lac>,<ci>...]` (lac quoted); the query form `<n>,<stat>...` can
                // only show up here as a late answer, and then the second field is the bare stat.
                let stat = match f.get(1) {
                    Some(Field::Bare(s)) if !s.is_empty() => s.parse().ok()?,
                    _ => f.first()?.as_u32().and_then(|v| u8::try_from(v).ok())?,
                };
                Some(Urc::Registration { kind, stat })
            }
            "+CUSD" => Some(Urc::Cusd(rest.to_string())),
            _ => None,
        }
    }
}

/// Boot and power messages that some modules print on their own, without a `+` name; never a response.
/// (SIM800 manual "unsolicited result codes" list; Quectel/SIMCom print `RDY` after power-up.)
fn is_boot_noise(line: &str) -> bool {
    const NOISE: &[&str] = &[
        "RDY",
        "Call Ready",
        "SMS Ready",
        "PB DONE",
        "NORMAL POWER DOWN",
        "UNDER-VOLTAGE POWER DOWN",
        "UNDER-VOLTAGE WARNNING",
        "OVER-VOLTAGE POWER DOWN",
        "OVER-VOLTAGE WARNNING",
        "POWERED DOWN",
        "RING",
    ];
    NOISE.iter().any(|n| line.eq_ignore_ascii_case(n))
}

fn is_pdu_hex(line: &str) -> bool {
    !line.is_empty() && line.len().is_multiple_of(2) && line.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `+CMGL` for `+CMGL: 1,0,,23`; `^RSSI` for `^RSSI:12`; `None` for bare lines.
fn line_name(line: &str) -> Option<&str> {
    if !(line.starts_with('+') || line.starts_with('^')) {
        return None;
    }
    let end = line.find(':')?;
    let name = line.get(..end)?;
    (name.len() > 1 && name.bytes().skip(1).all(|b| b.is_ascii_alphanumeric())).then_some(name)
}

/// `+CMGL` for `AT+CMGL=4`, `+CREG` for `AT+CREG?`, `None` for `AT`, `ATE0`.
fn command_name(command: &str) -> Option<String> {
    let rest = command.get(2..)?;
    if !command.get(..2)?.eq_ignore_ascii_case("AT") {
        return None;
    }
    if !(rest.starts_with('+') || rest.starts_with('^')) {
        return None;
    }
    let name: String = rest
        .chars()
        .take_while(|c| !matches!(c, '=' | '?' | ';') && !c.is_whitespace())
        .collect();
    (name.len() > 1).then(|| name.to_ascii_uppercase())
}

/// A command as it may appear in logs and errors: PIN/PUK/password arguments are replaced.
pub fn redact(command: &str) -> String {
    const SECRET: &[&str] = &["AT+CPIN=", "AT+CLCK=", "AT+CPWD=", "AT+CPIN2="];
    let upper = command.trim().to_ascii_uppercase();
    match SECRET.iter().find(|p| upper.starts_with(*p)) {
        Some(p) => format!("{p}<redacted>"),
        None => command.trim().to_string(),
    }
}

/// Parse a final result line.
pub fn parse_final(line: &str) -> Option<FinalResult> {
    match line {
        "OK" => return Some(FinalResult::Ok),
        "ERROR" => return Some(FinalResult::Error),
        "NO CARRIER" => return Some(FinalResult::NoCarrier),
        "BUSY" => return Some(FinalResult::Busy),
        "NO ANSWER" => return Some(FinalResult::NoAnswer),
        "NO DIALTONE" | "NO DIAL TONE" => return Some(FinalResult::NoDialtone),
        _ => {}
    }
    if let Some(rest) = line.strip_prefix("+CMS ERROR:") {
        let rest = rest.trim();
        let code = rest
            .parse()
            .ok()
            .or_else(|| lookup(CMS_TEXTS, rest))
            .unwrap_or_else(|| {
                tracing::debug!(
                    text = rest,
                    "unknown verbose +CMS ERROR, taken as 500 (unknown error)"
                );
                500
            });
        return Some(FinalResult::Cms(code));
    }
    if let Some(rest) = line.strip_prefix("+CME ERROR:") {
        let rest = rest.trim();
        let err = match rest.parse() {
            Ok(code) => CmeError::Code(code),
            Err(_) => match lookup(CME_TEXTS, rest) {
                Some(code) => CmeError::Code(code),
                None => CmeError::Text(rest.to_string()),
            },
        };
        return Some(FinalResult::Cme(err));
    }
    None
}

fn lookup(table: &[(u16, &str)], text: &str) -> Option<u16> {
    table
        .iter()
        .find(|(_, t)| t.eq_ignore_ascii_case(text))
        .map(|(c, _)| *c)
}

/// One field of a response, as split by [`fields`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    /// `"SM"` without the quotes.
    Quoted(String),
    /// Unquoted text, trimmed; may be empty (`+CMGL: 1,0,,23` has an empty third field).
    Bare(String),
}

impl Field {
    /// The text, quoted or not.
    pub fn as_str(&self) -> &str {
        match self {
            Field::Quoted(s) | Field::Bare(s) => s,
        }
    }

    /// A bare non-negative number.
    pub fn as_u32(&self) -> Option<u32> {
        match self {
            Field::Bare(s) => s.parse().ok(),
            Field::Quoted(_) => None,
        }
    }
}

/// Split the parameters of a response (the text after `+NAME:`) at commas outside quotes.
/// No escapes exist inside 27.007 strings; an unterminated quote runs to the end of the line, and text
/// between a closing quote and the next comma is ignored.
pub fn fields(s: &str) -> Vec<Field> {
    let mut out = Vec::new();
    if s.trim().is_empty() {
        return out;
    }
    let mut rest = s;
    loop {
        let t = rest.trim_start_matches(' ');
        if let Some(q) = t.strip_prefix('"') {
            let (inner, after) = match q.find('"') {
                Some(i) => (q.get(..i).unwrap_or(""), q.get(i + 1..).unwrap_or("")),
                None => (q, ""),
            };
            out.push(Field::Quoted(inner.to_string()));
            match after.find(',') {
                Some(i) => rest = after.get(i + 1..).unwrap_or(""),
                None => break,
            }
        } else {
            match t.find(',') {
                Some(i) => {
                    out.push(Field::Bare(t.get(..i).unwrap_or("").trim().to_string()));
                    rest = t.get(i + 1..).unwrap_or("");
                }
                None => {
                    out.push(Field::Bare(t.trim().to_string()));
                    break;
                }
            }
        }
    }
    out
}

/// The fields of a response line that starts with `name` (e.g. `+CSQ`), or `None` for another line.
pub fn response_fields(line: &str, name: &str) -> Option<Vec<Field>> {
    let rest = line.strip_prefix(name)?.strip_prefix(':')?;
    Some(fields(rest))
}

/// What can go wrong with one AT exchange.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AtError {
    /// No final result in time. `payload_sent: false` means nothing reached the network (for `+CMGS`:
    /// the prompt never came and the exchange was aborted with ESC). `payload_sent: true` means the PDU
    /// was written and the outcome is unknown: never resend blindly.
    #[error("{command:?} timed out ({})", if *payload_sent { "the PDU was written: outcome unknown" } else { "nothing was sent" })]
    Timeout { command: String, payload_sent: bool },
    /// `+CMS ERROR: n` (27.005 message service error).
    #[error("modem answered +CMS ERROR: {0}")]
    Cms(u16),
    /// `+CME ERROR: n` (27.007 equipment error).
    #[error("modem answered +CME ERROR: {0}")]
    Cme(CmeError),
    /// Plain `ERROR` (with `AT+CMEE=1` in effect this usually means a syntax error or an unsupported command).
    #[error("modem answered ERROR")]
    Error,
    /// A call-related final result (`NO CARRIER`, `BUSY`, ...), which no SMS command should produce.
    #[error("modem answered {0:?}")]
    CallResult(FinalResult),
    /// The device is gone (EOF on the port, or the engine task ended). `payload_sent: true` when a PDU had
    /// been written before: outcome unknown.
    #[error("modem port closed (device gone){}", if *payload_sent { "; the PDU was written: outcome unknown" } else { "" })]
    Closed { payload_sent: bool },
    /// An I/O error on the port (on a tty this is what a USB unplug looks like, too).
    #[error("modem port I/O error: {0}")]
    Io(String),
    /// The command ended with OK but the answer lacked what it must contain.
    #[error("{command:?} answered OK but the response was not understood: {detail}")]
    BadResponse { command: String, detail: String },
}

impl AtError {
    /// Whether the device is gone and must be reopened.
    pub fn is_device_gone(&self) -> bool {
        matches!(self, AtError::Closed { .. } | AtError::Io(_))
    }
}

struct Payload {
    hex: String,
    prompt_timeout: Duration,
}

struct Request {
    command: String,
    payload: Option<Payload>,
    timeout: Duration,
    reply: oneshot::Sender<Result<Vec<String>, AtError>>,
}

/// Handle to the AT engine task. Cloning is cheap; all clones share the one port, and the task runs one
/// command at a time in the order requests arrive.
#[derive(Clone, Debug)]
pub struct AtClient {
    tx: mpsc::Sender<Request>,
}

/// Start the engine task on `io`. URCs go to the returned receiver, which ends (returns `None`) when the
/// port is closed or fails: the driver takes that as "device gone".
pub fn spawn<S>(io: S) -> (AtClient, mpsc::Receiver<Urc>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (tx, rx) = mpsc::channel(16);
    let (urc_tx, urc_rx) = mpsc::channel(URC_QUEUE);
    let engine = Engine {
        io,
        requests: rx,
        urcs: urc_tx,
        digester: Digester::new(),
        events: Vec::new(),
        dropped_urcs: 0,
        resync: false,
    };
    tokio::spawn(engine.run());
    (AtClient { tx }, urc_rx)
}

impl AtClient {
    /// Run `cmd` (without the trailing CR). Returns the information lines on `OK`.
    pub async fn command(&self, cmd: &str, timeout: Duration) -> Result<Vec<String>, AtError> {
        self.request(cmd.to_string(), None, timeout).await
    }

    /// `AT+CMGS=<tpdu_len>`, wait for `> ` (up to `prompt_timeout`), write the PDU hex and Ctrl-Z, then wait
    /// up to `timeout` for `+CMGS: <mr>`. If the prompt does not come, ESC aborts the exchange and the
    /// error says nothing was sent.
    pub async fn send_pdu(
        &self,
        tpdu_len: usize,
        pdu_hex: &str,
        prompt_timeout: Duration,
        timeout: Duration,
    ) -> Result<u8, AtError> {
        let command = format!("AT+CMGS={tpdu_len}");
        let payload = Payload {
            hex: pdu_hex.trim().to_string(),
            prompt_timeout,
        };
        let lines = self
            .request(command.clone(), Some(payload), timeout)
            .await?;
        lines
            .iter()
            .find_map(|l| response_fields(l, "+CMGS"))
            .and_then(|f| f.first().and_then(Field::as_u32))
            .and_then(|mr| u8::try_from(mr).ok())
            .ok_or_else(|| AtError::BadResponse {
                command,
                detail: format!("no +CMGS: <mr> line in {lines:?}"),
            })
    }

    async fn request(
        &self,
        command: String,
        payload: Option<Payload>,
        timeout: Duration,
    ) -> Result<Vec<String>, AtError> {
        let (reply, answer) = oneshot::channel();
        let sent_payload = payload.is_some();
        self.tx
            .send(Request {
                command,
                payload,
                timeout,
                reply,
            })
            .await
            .map_err(|_| AtError::Closed {
                payload_sent: false,
            })?;
        // If the engine dies mid-exchange the oneshot is dropped; whether the PDU was written is then
        // unknown, so a send must be reported as "outcome unknown".
        answer.await.unwrap_or(Err(AtError::Closed {
            payload_sent: sent_payload,
        }))
    }
}

struct Engine<S> {
    io: S,
    requests: mpsc::Receiver<Request>,
    urcs: mpsc::Sender<Urc>,
    digester: Digester,
    events: Vec<Event>,
    dropped_urcs: u64,
    /// Set after a timeout: before the next command, wait for the line to go quiet so a late answer
    /// of the old command is discarded instead of being taken for the new one.
    resync: bool,
}

/// How long the line must be silent after a timeout before the next command is written.
const RESYNC_QUIET: Duration = Duration::from_millis(300);
/// Upper bound of that wait (a modem spewing URCs must not block commands forever).
const RESYNC_MAX: Duration = Duration::from_secs(3);

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Engine<S> {
    async fn run(mut self) {
        let mut buf = [0u8; 512];
        loop {
            tokio::select! {
                req = self.requests.recv() => {
                    let Some(req) = req else {
                        tracing::debug!("all AT clients dropped; engine stops");
                        return;
                    };
                    let result = self.exchange(&req.command, req.payload.as_ref(), req.timeout).await;
                    let fatal = result.as_ref().is_err_and(AtError::is_device_gone);
                    let _ = req.reply.send(result);
                    if fatal {
                        return;
                    }
                }
                read = self.io.read(&mut buf) => match read {
                    Ok(0) => {
                        tracing::info!("modem port closed (EOF)");
                        return;
                    }
                    Ok(n) => {
                        self.digester.feed(buf.get(..n).unwrap_or_default(), &mut self.events);
                        self.route_idle();
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "modem port read failed");
                        return;
                    }
                },
            }
        }
    }

    /// Events while no command runs: only URCs can come out of the digester then.
    fn route_idle(&mut self) {
        for ev in std::mem::take(&mut self.events) {
            match ev {
                Event::Urc(u) => self.forward(u),
                other => {
                    tracing::debug!(event = ?other, "AT event with no command in flight ignored")
                }
            }
        }
    }

    fn forward(&mut self, urc: Urc) {
        if let Err(e) = self.urcs.try_send(urc) {
            self.dropped_urcs += 1;
            tracing::warn!(total = self.dropped_urcs, urc = ?e.into_inner(), "URC queue full or closed; URC dropped");
        }
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), AtError> {
        self.io
            .write_all(bytes)
            .await
            .map_err(|e| AtError::Io(e.to_string()))?;
        self.io
            .flush()
            .await
            .map_err(|e| AtError::Io(e.to_string()))
    }

    /// Read and route (as idle) until nothing arrived for [`RESYNC_QUIET`], at most [`RESYNC_MAX`].
    async fn wait_quiet(&mut self) -> Result<(), AtError> {
        let give_up = Instant::now() + RESYNC_MAX;
        let mut buf = [0u8; 512];
        loop {
            let quiet_until = (Instant::now() + RESYNC_QUIET).min(give_up);
            tokio::select! {
                _ = tokio::time::sleep_until(quiet_until) => return Ok(()),
                read = self.io.read(&mut buf) => match read {
                    Ok(0) => return Err(AtError::Closed { payload_sent: false }),
                    Ok(n) => {
                        self.digester.feed(buf.get(..n).unwrap_or_default(), &mut self.events);
                        self.route_idle();
                    }
                    Err(e) => return Err(AtError::Io(e.to_string())),
                },
            }
        }
    }

    async fn exchange(
        &mut self,
        command: &str,
        payload: Option<&Payload>,
        timeout: Duration,
    ) -> Result<Vec<String>, AtError> {
        if std::mem::take(&mut self.resync) {
            self.wait_quiet().await?;
        }
        // The PIN must never reach a log or an error message.
        let shown = redact(command);
        tracing::debug!(command = %shown, "AT >");
        self.digester.begin(command, payload.is_some());
        if let Err(e) = self.write(format!("{command}\r").as_bytes()).await {
            self.digester.abandon();
            return Err(e);
        }
        let mut lines = Vec::new();
        let mut payload_sent = false;
        let mut deadline = Instant::now() + payload.map_or(timeout, |p| p.prompt_timeout);
        let mut buf = [0u8; 512];
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => {
                    self.digester.abandon();
                    self.resync = true;
                    if payload.is_some() && !payload_sent {
                        tracing::warn!(command = %shown, "no > prompt; aborting with ESC, nothing was sent");
                        self.write(&[0x1b]).await?;
                    } else {
                        tracing::warn!(command = %shown, payload_sent, "AT command timed out");
                    }
                    return Err(AtError::Timeout { command: shown, payload_sent });
                }
                read = self.io.read(&mut buf) => match read {
                    Ok(0) => {
                        self.digester.abandon();
                        return Err(AtError::Closed { payload_sent });
                    }
                    Ok(n) => self.digester.feed(buf.get(..n).unwrap_or_default(), &mut self.events),
                    Err(e) => {
                        self.digester.abandon();
                        return Err(if payload_sent {
                            AtError::Closed { payload_sent }
                        } else {
                            AtError::Io(e.to_string())
                        });
                    }
                },
            }
            let mut outcome = None;
            for ev in std::mem::take(&mut self.events) {
                match ev {
                    Event::Response(l) if outcome.is_none() => lines.push(l),
                    Event::Prompt if outcome.is_none() => {
                        if let (Some(p), false) = (payload, payload_sent) {
                            self.digester.payload_written(&p.hex);
                            let mut bytes = p.hex.clone().into_bytes();
                            bytes.push(0x1a);
                            self.write(&bytes).await.map_err(|e| match e {
                                AtError::Io(_) => AtError::Closed { payload_sent: true },
                                other => other,
                            })?;
                            payload_sent = true;
                            deadline = Instant::now() + timeout;
                        }
                    }
                    Event::Final(f) if outcome.is_none() => outcome = Some(f),
                    Event::Urc(u) => self.forward(u),
                    other => {
                        tracing::debug!(event = ?other, "AT event after the final result ignored")
                    }
                }
            }
            if let Some(f) = outcome {
                tracing::debug!(command = %shown, result = ?f, lines = lines.len(), "AT <");
                return match f {
                    FinalResult::Ok => Ok(lines),
                    FinalResult::Error => Err(AtError::Error),
                    FinalResult::Cms(c) => Err(AtError::Cms(c)),
                    FinalResult::Cme(e) => Err(AtError::Cme(e)),
                    other => Err(AtError::CallResult(other)),
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncBufReadExt, BufReader, DuplexStream};

    /// Feed `input` in chunks of `chunk` bytes with `command` in flight (if any).
    fn digest(command: Option<(&str, bool)>, input: &[u8], chunk: usize) -> Vec<Event> {
        let mut d = Digester::new();
        if let Some((c, prompt)) = command {
            d.begin(c, prompt);
        }
        let mut out = Vec::new();
        for part in input.chunks(chunk) {
            d.feed(part, &mut out);
        }
        out
    }

    fn resp(s: &str) -> Event {
        Event::Response(s.to_string())
    }
    fn other(s: &str) -> Event {
        Event::Urc(Urc::Other(s.to_string()))
    }
    const OK: Event = Event::Final(FinalResult::Ok);

    /// (case name, command in flight and whether it expects a prompt, bytes, expected events)
    type FramingCase = (
        &'static str,
        Option<(&'static str, bool)>,
        &'static [u8],
        Vec<Event>,
    );

    #[test]
    fn framing_table_gives_the_same_events_for_every_chunk_size() {
        let cmti = Event::Urc(Urc::Cmti {
            mem: "SM".into(),
            index: 3,
        });
        let cases: Vec<FramingCase> = vec![
            ("plain ok", Some(("AT", false)), b"\r\nOK\r\n", vec![OK]),
            ("bare cr line ends", Some(("AT+CSQ", false)), b"+CSQ: 20,99\rOK\r", vec![resp("+CSQ: 20,99"), OK]),
            ("lf cr line ends", Some(("AT+CSQ", false)), b"\n\r+CSQ: 20,99\n\rOK\n\r", vec![resp("+CSQ: 20,99"), OK]),
            ("echo is dropped", Some(("AT+CSQ", false)), b"AT+CSQ\r\r\n+CSQ: 5,0\r\n\r\nOK\r\n", vec![resp("+CSQ: 5,0"), OK]),
            (
                "urc in the middle of a response",
                Some(("AT+CPMS?", false)),
                b"\r\n+CPMS: \"SM\",1,30\r\n+CMTI: \"SM\",3\r\n\r\nOK\r\n",
                vec![resp("+CPMS: \"SM\",1,30"), cmti.clone(), OK],
            ),
            (
                "creg is the answer to creg query",
                Some(("AT+CREG?", false)),
                b"\r\n+CREG: 2,1\r\n\r\nOK\r\n",
                vec![resp("+CREG: 2,1"), OK],
            ),
            (
                "creg is a urc while another command runs",
                Some(("AT+CSQ", false)),
                b"\r\n+CREG: 5\r\n+CSQ: 9,99\r\nOK\r\n",
                vec![
                    Event::Urc(Urc::Registration { kind: RegKind::Creg, stat: 5 }),
                    resp("+CSQ: 9,99"),
                    OK,
                ],
            ),
            (
                "cereg urc with location fields",
                None,
                b"\r\n+CEREG: 1,\"00C3\",\"0000A13F\",7\r\n",
                vec![Event::Urc(Urc::Registration { kind: RegKind::Cereg, stat: 1 })],
            ),
            (
                "cmt pdu line inside cmgl output belongs to the urc",
                Some(("AT+CMGL=4", false)),
                b"\r\n+CMGL: 1,0,,5\r\n07911326040000F0\r\n+CMT: ,23\r\n0791AA\r\n+CMGL: 2,1,,5\r\n0791BB\r\n\r\nOK\r\n",
                vec![
                    resp("+CMGL: 1,0,,5"),
                    resp("07911326040000F0"),
                    Event::Urc(Urc::Cmt { pdu: "0791AA".into() }),
                    resp("+CMGL: 2,1,,5"),
                    resp("0791BB"),
                    OK,
                ],
            ),
            (
                "cds with pdu while idle",
                None,
                b"\r\n+CDS: 25\r\n0006D1\r\n",
                vec![Event::Urc(Urc::Cds { pdu: "0006D1".into() })],
            ),
            ("cdsi", None, b"+CDSI: \"SR\",2\r\n", vec![Event::Urc(Urc::Cdsi { mem: "SR".into(), index: 2 })]),
            ("ring", None, b"\r\nRING\r\n", vec![Event::Urc(Urc::Ring)]),
            ("cusd", None, b"+CUSD: 0,\"Saldo 5 EUR\",15\r\n", vec![Event::Urc(Urc::Cusd("0,\"Saldo 5 EUR\",15".into()))]),
            (
                "boot noise is other, never a response",
                Some(("AT+CGMM", false)),
                b"\r\nRDY\r\n+CFUN: 1\r\n+CPIN: READY\r\nCall Ready\r\nSMS Ready\r\nPB DONE\r\nSIMCOM_SIM800L\r\nOK\r\n",
                vec![
                    other("RDY"),
                    other("+CFUN: 1"),
                    other("+CPIN: READY"),
                    other("Call Ready"),
                    other("SMS Ready"),
                    other("PB DONE"),
                    resp("SIMCOM_SIM800L"),
                    OK,
                ],
            ),
            ("garbage bytes are dropped", Some(("AT", false)), b"\x00\xff\xff\r\n\x00OK\r\n", vec![OK]),
            ("garbage before a line is trimmed", Some(("AT", false)), b"\xff\xfeOK\r\n", vec![OK]),
            ("final without command is discarded", None, b"\r\nOK\r\n\r\nERROR\r\n", vec![]),
            ("unknown text while idle is other", None, b"+QIND: SMS DONE\r\n", vec![other("+QIND: SMS DONE")]),
            (
                "cms numeric",
                Some(("AT+CMGS=23", false)),
                b"\r\n+CMS ERROR: 304\r\n",
                vec![Event::Final(FinalResult::Cms(304))],
            ),
            (
                "cms verbose known text",
                Some(("AT+CMGS=23", false)),
                b"\r\n+CMS ERROR: memory full\r\n",
                vec![Event::Final(FinalResult::Cms(322))],
            ),
            (
                "cme verbose known text maps to its code",
                Some(("AT+CPIN?", false)),
                b"\r\n+CME ERROR: SIM PIN required\r\n",
                vec![Event::Final(FinalResult::Cme(CmeError::Code(11)))],
            ),
            (
                "cme verbose unknown text is kept",
                Some(("AT+CPIN?", false)),
                b"\r\n+CME ERROR: flux capacitor\r\n",
                vec![Event::Final(FinalResult::Cme(CmeError::Text("flux capacitor".into())))],
            ),
            ("cme numeric", Some(("AT+CPIN=1234", false)), b"+CME ERROR: 16\r\n", vec![Event::Final(FinalResult::Cme(CmeError::Code(16)))]),
            ("no carrier", Some(("ATD1;", false)), b"NO CARRIER\r\n", vec![Event::Final(FinalResult::NoCarrier)]),
            (
                "prompt then urc then cmgs",
                Some(("AT+CMGS=9", true)),
                b"\r\n> ",
                vec![Event::Prompt],
            ),
            (
                "cmgr header and its pdu line are the response",
                Some(("AT+CMGR=3", false)),
                b"+CMGR: 0,,24\r\n0791447728008000040C9144\r\nOK\r\n",
                vec![resp("+CMGR: 0,,24"), resp("0791447728008000040C9144"), OK],
            ),
            (
                "cmt header without pdu keeps the header",
                None,
                b"+CMT: ,23\r\nRING\r\n",
                vec![other("+CMT: ,23"), Event::Urc(Urc::Ring)],
            ),
        ];
        for (name, cmd, input, want) in cases {
            for chunk in [1, 2, 3, 5, 7, 64] {
                assert_eq!(
                    digest(cmd, input, chunk),
                    want,
                    "case {name:?}, chunk size {chunk}"
                );
            }
        }
    }

    #[test]
    fn response_split_mid_line_is_not_mistaken_for_echo_or_final() {
        // "O" + "K" arrive in two reads; "+CS" + "Q: 1,2" too.
        let mut d = Digester::new();
        d.begin("AT+CSQ", false);
        let mut out = Vec::new();
        for part in [&b"\r\n+CS"[..], b"Q: 1,2\r", b"\nO", b"K", b"\r\n"] {
            d.feed(part, &mut out);
        }
        assert_eq!(out, vec![resp("+CSQ: 1,2"), OK]);
    }

    #[test]
    fn prompt_is_not_taken_when_no_prompt_is_expected() {
        assert_eq!(
            digest(Some(("AT", false)), b"> x\r\nOK\r\n", 1),
            vec![resp("> x"), OK]
        );
    }

    #[test]
    fn urc_while_waiting_for_prompt_is_forwarded_and_prompt_still_seen() {
        let got = digest(
            Some(("AT+CMGS=9", true)),
            b"\r\n+CMTI: \"SM\",1\r\n\r\n> ",
            1,
        );
        assert_eq!(
            got,
            vec![
                Event::Urc(Urc::Cmti {
                    mem: "SM".into(),
                    index: 1
                }),
                Event::Prompt
            ]
        );
    }

    #[test]
    fn payload_echo_after_prompt_is_dropped() {
        let mut d = Digester::new();
        d.begin("AT+CMGS=9", true);
        let mut out = Vec::new();
        d.feed(b"AT+CMGS=9\r\r\n> ", &mut out);
        d.payload_written("0011AB");
        d.feed(b"0011AB\x1a\r\n+CMGS: 7\r\n\r\nOK\r\n", &mut out);
        assert_eq!(out, vec![Event::Prompt, resp("+CMGS: 7"), OK]);
    }

    #[test]
    fn abandoned_command_late_answer_becomes_other_and_final_is_discarded() {
        let mut d = Digester::new();
        d.begin("AT+CSQ", false);
        d.abandon();
        let mut out = Vec::new();
        d.feed(b"\r\n+CSQ: 9,9\r\n\r\nOK\r\n", &mut out);
        assert_eq!(out, vec![other("+CSQ: 9,9")]);
        assert_eq!(d.orphan_finals(), 1);
    }

    #[test]
    fn endless_line_without_terminator_is_flushed_not_grown() {
        let mut d = Digester::new();
        let mut out = Vec::new();
        d.feed(&vec![b'A'; MAX_LINE * 3], &mut out);
        assert_eq!(out.len(), 3);
        assert!(d.buf.len() < MAX_LINE);
    }

    #[test]
    fn field_splitter_table() {
        use Field::{Bare as B, Quoted as Q};
        let cases: Vec<(&str, Vec<Field>)> = vec![
            ("", vec![]),
            (" 20,99", vec![B("20".into()), B("99".into())]),
            ("\"SM\",3", vec![Q("SM".into()), B("3".into())]),
            (
                "1,0,,23",
                vec![B("1".into()), B("0".into()), B("".into()), B("23".into())],
            ),
            ("\"a,b\",1", vec![Q("a,b".into()), B("1".into())]),
            (
                "\"SM\",1,30,\"SM\",1,30",
                vec![
                    Q("SM".into()),
                    B("1".into()),
                    B("30".into()),
                    Q("SM".into()),
                    B("1".into()),
                    B("30".into()),
                ],
            ),
            (
                "\"+358401234567\",145",
                vec![Q("+358401234567".into()), B("145".into())],
            ),
            ("\"unterminated,1", vec![Q("unterminated,1".into())]),
            ("\"x\"junk,2", vec![Q("x".into()), B("2".into())]),
            ("1,", vec![B("1".into()), B("".into())]),
            ("\"\"", vec![Q("".into())]),
        ];
        for (input, want) in cases {
            assert_eq!(fields(input), want, "input {input:?}");
        }
        assert_eq!(
            response_fields("+CSQ: 20,99", "+CSQ").unwrap()[0].as_u32(),
            Some(20)
        );
        assert_eq!(response_fields("+CSQ: 20,99", "+CREG"), None);
    }

    proptest::proptest! {
        /// Arbitrary bytes (biased towards AT-ish text) in arbitrary chunks give the same events as
        /// the whole input at once, and never panic. The fuzz target at_lines checks the same on raw bytes.
        #[test]
        fn chunking_never_changes_the_events(
            parts in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::prelude::Just(b"\r\n".to_vec()),
                    proptest::prelude::Just(b"OK".to_vec()),
                    proptest::prelude::Just(b"> ".to_vec()),
                    proptest::prelude::Just(b"+CMT: ,5".to_vec()),
                    proptest::prelude::Just(b"+CMGL: 1,0,,5".to_vec()),
                    proptest::prelude::Just(b"+CMTI: \"SM\",1".to_vec()),
                    proptest::prelude::Just(b"0791AB".to_vec()),
                    proptest::collection::vec(proptest::prelude::any::<u8>(), 0..8),
                ],
                0..40,
            ),
            chunk in 1usize..9,
            cmd in 0usize..4,
        ) {
            let input: Vec<u8> = parts.concat();
            let command = [None, Some(("AT+CMGL=4", false)), Some(("AT+CMGS=5", true)), Some(("AT", false))][cmd];
            proptest::prop_assert_eq!(digest(command, &input, input.len().max(1)), digest(command, &input, chunk));
        }
    }

    #[test]
    fn pin_commands_are_redacted_for_logs() {
        assert_eq!(redact("AT+CPIN=\"1234\""), "AT+CPIN=<redacted>");
        assert_eq!(redact("at+cpin=1234"), "AT+CPIN=<redacted>");
        assert_eq!(redact("AT+CPIN?"), "AT+CPIN?");
    }

    #[tokio::test]
    async fn timeout_error_of_a_pin_command_does_not_contain_the_pin() {
        let (client, _urcs, port) = pair();
        let err = client
            .command("AT+CPIN=\"4321\"", Duration::from_millis(100))
            .await
            .unwrap_err();
        assert!(!err.to_string().contains("4321"), "{err}");
        drop(port);
    }

    #[test]
    fn final_parser_table() {
        let cases = [
            ("OK", Some(FinalResult::Ok)),
            ("ERROR", Some(FinalResult::Error)),
            ("+CMS ERROR: 500", Some(FinalResult::Cms(500))),
            ("+CMS ERROR: gibberish", Some(FinalResult::Cms(500))),
            (
                "+CME ERROR: incorrect password",
                Some(FinalResult::Cme(CmeError::Code(16))),
            ),
            ("+CME ERROR: 10", Some(FinalResult::Cme(CmeError::Code(10)))),
            ("BUSY", Some(FinalResult::Busy)),
            ("NO ANSWER", Some(FinalResult::NoAnswer)),
            ("NO DIALTONE", Some(FinalResult::NoDialtone)),
            ("OKAY", None),
            ("+CMS ERRO", None),
        ];
        for (line, want) in cases {
            assert_eq!(parse_final(line), want, "line {line:?}");
        }
    }

    // ---- the engine over a duplex pipe ----

    /// The modem side of a duplex pipe: read one command line (up to CR), answer with raw bytes.
    struct FakePort {
        r: BufReader<tokio::io::ReadHalf<DuplexStream>>,
        w: tokio::io::WriteHalf<DuplexStream>,
    }

    impl FakePort {
        fn new(s: DuplexStream) -> Self {
            let (r, w) = tokio::io::split(s);
            FakePort {
                r: BufReader::new(r),
                w,
            }
        }
        async fn read_until(&mut self, end: u8) -> String {
            let mut v = Vec::new();
            self.r.read_until(end, &mut v).await.unwrap();
            String::from_utf8_lossy(&v).into_owned()
        }
        async fn say(&mut self, bytes: &[u8]) {
            self.w.write_all(bytes).await.unwrap();
        }
    }

    fn pair() -> (AtClient, mpsc::Receiver<Urc>, FakePort) {
        let (a, b) = tokio::io::duplex(4096);
        let (client, urcs) = spawn(a);
        (client, urcs, FakePort::new(b))
    }

    const LONG: Duration = Duration::from_secs(20);

    #[tokio::test]
    async fn command_returns_lines_and_urc_in_the_middle_goes_to_the_urc_stream() {
        let (client, mut urcs, mut port) = pair();
        let modem = tokio::spawn(async move {
            assert_eq!(port.read_until(b'\r').await, "AT+CSQ\r");
            for part in [
                &b"\r\n+CS"[..],
                b"Q: 17,99\r\n+CMT",
                b"I: \"SM\",4\r\n",
                b"\r\nOK\r\n",
            ] {
                port.say(part).await;
                tokio::task::yield_now().await;
            }
            port
        });
        let lines = client.command("AT+CSQ", LONG).await.unwrap();
        assert_eq!(lines, vec!["+CSQ: 17,99"]);
        assert_eq!(
            urcs.recv().await,
            Some(Urc::Cmti {
                mem: "SM".into(),
                index: 4
            })
        );
        modem.await.unwrap();
    }

    #[tokio::test]
    async fn cmgs_waits_for_prompt_sends_pdu_with_ctrl_z_and_returns_the_reference() {
        let (client, mut urcs, mut port) = pair();
        let modem = tokio::spawn(async move {
            assert_eq!(port.read_until(b'\r').await, "AT+CMGS=12\r");
            port.say(b"\r\n+CREG: 1\r\n\r\n> ").await;
            assert_eq!(port.read_until(0x1a).await, "0011000B91\x1a");
            port.say(b"\r\n+CMGS: 201\r\n\r\nOK\r\n").await;
            port
        });
        let mr = client.send_pdu(12, "0011000B91", LONG, LONG).await.unwrap();
        assert_eq!(mr, 201);
        assert_eq!(
            urcs.recv().await,
            Some(Urc::Registration {
                kind: RegKind::Creg,
                stat: 1
            })
        );
        modem.await.unwrap();
    }

    #[tokio::test]
    async fn missing_prompt_sends_esc_and_reports_nothing_sent() {
        let (client, _urcs, mut port) = pair();
        let modem = tokio::spawn(async move {
            assert_eq!(port.read_until(b'\r').await, "AT+CMGS=12\r");
            // Say nothing; the next byte must be ESC, and no PDU.
            let mut b = [0u8; 1];
            tokio::io::AsyncReadExt::read_exact(&mut port.r, &mut b)
                .await
                .unwrap();
            b[0]
        });
        let err = client
            .send_pdu(12, "0011", Duration::from_millis(200), LONG)
            .await
            .unwrap_err();
        assert_eq!(
            err,
            AtError::Timeout {
                command: "AT+CMGS=12".into(),
                payload_sent: false
            }
        );
        assert_eq!(modem.await.unwrap(), 0x1b);
    }

    #[tokio::test]
    async fn timeout_after_payload_is_outcome_unknown() {
        let (client, _urcs, mut port) = pair();
        let modem = tokio::spawn(async move {
            port.read_until(b'\r').await;
            port.say(b"\r\n> ").await;
            port.read_until(0x1a).await;
            port // keeps the port open, answers nothing
        });
        let err = client
            .send_pdu(3, "001100", LONG, Duration::from_millis(200))
            .await
            .unwrap_err();
        assert_eq!(
            err,
            AtError::Timeout {
                command: "AT+CMGS=3".into(),
                payload_sent: true
            }
        );
        drop(modem.await.unwrap());
    }

    #[tokio::test]
    async fn late_answer_after_timeout_is_not_the_answer_to_the_next_command() {
        let (client, mut urcs, mut port) = pair();
        let modem = tokio::spawn(async move {
            assert_eq!(port.read_until(b'\r').await, "AT+CSQ\r");
            // The answer comes after the client gave up (200 ms), well inside the quiet window (300 ms) ...
            tokio::time::sleep(Duration::from_millis(350)).await;
            port.say(b"\r\n+CSQ: 3,3\r\n\r\nOK\r\n").await;
            // ... and the next command must only be written after it.
            assert_eq!(port.read_until(b'\r').await, "AT+CGMI\r");
            port.say(b"\r\nSIMCOM_Ltd\r\n\r\nOK\r\n").await;
            port
        });
        let err = client
            .command("AT+CSQ", Duration::from_millis(200))
            .await
            .unwrap_err();
        assert!(matches!(
            err,
            AtError::Timeout {
                payload_sent: false,
                ..
            }
        ));
        let lines = client.command("AT+CGMI", LONG).await.unwrap();
        assert_eq!(lines, vec!["SIMCOM_Ltd"]);
        assert_eq!(urcs.recv().await, Some(Urc::Other("+CSQ: 3,3".into())));
        modem.await.unwrap();
    }

    #[tokio::test]
    async fn eof_gives_closed_and_ends_the_urc_stream() {
        let (client, mut urcs, port) = pair();
        drop(port);
        assert_eq!(urcs.recv().await, None);
        let err = client.command("AT", LONG).await.unwrap_err();
        assert!(err.is_device_gone(), "{err:?}");
    }

    #[tokio::test]
    async fn error_results_map_to_error_kinds() {
        let (client, _urcs, mut port) = pair();
        let modem = tokio::spawn(async move {
            port.read_until(b'\r').await;
            port.say(b"\r\n+CME ERROR: SIM PIN required\r\n").await;
            port.read_until(b'\r').await;
            port.say(b"\r\nERROR\r\n").await;
            port.read_until(b'\r').await;
            port.say(b"\r\n> ").await;
            port.read_until(0x1a).await;
            port.say(b"\r\n+CMS ERROR: 38\r\n").await;
            port
        });
        assert_eq!(
            client.command("AT+CPIN?", LONG).await,
            Err(AtError::Cme(CmeError::Code(11)))
        );
        assert_eq!(client.command("AT+FOO", LONG).await, Err(AtError::Error));
        assert_eq!(
            client.send_pdu(1, "00", LONG, LONG).await,
            Err(AtError::Cms(38))
        );
        modem.await.unwrap();
    }
}
