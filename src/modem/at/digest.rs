//! The pure AT line digester: bytes in, [`Event`]s out, no I/O.
//!
//! A small explicit state machine in the spirit of FactbirdHQ/atat's `digest.rs`, but it classifies by
//! the command in flight and by known URC prefixes, and it never drops text silently (see the `at`
//! module doc for the rules). Also home of the tiny response field splitter.

/// A line longer than this is not something a modem says in PDU mode (a PDU line is at most ~360 hex
/// digits); it is flushed as a line on its own so a stream without line ends cannot grow memory forever.
const MAX_LINE: usize = 4096;

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
        self.flight =
            Some(Flight { name: command_name(&command), command, echo_pending: true, want_prompt, payload_echo: None });
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
                        tracing::debug!(len = self.buf.len(), "AT line too long; flushing it as a line");
                        self.end_line(out);
                    }
                }
                _ => {
                    self.stray_bytes += 1;
                    tracing::debug!(byte = b, total = self.stray_bytes, "stray byte from modem dropped");
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
        let line = raw.trim_start_matches(|c: char| c == '\u{fffd}' || c.is_whitespace()).trim_end();
        if line.is_empty() {
            self.stray_bytes += raw.len() as u64;
            tracing::debug!(total = self.stray_bytes, "line of garbage bytes from modem dropped");
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
                Some(if name == "+CMTI" { Urc::Cmti { mem, index } } else { Urc::Cdsi { mem, index } })
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

/// `+CMGL` for `AT+CMGL=4`, `+CREG` for `AT+CREG?`, `None` for `AT`, `ATE0`. On a line of several
/// commands (`AT+CNMA;+CMGS=23`) the last one names the response: the ones before it answer no
/// information lines (the driver joins only `+CNMA` to a `+CMGS`).
fn command_name(command: &str) -> Option<String> {
    if !command.get(..2)?.eq_ignore_ascii_case("AT") {
        return None;
    }
    let rest = command.get(2..)?;
    let rest = rest.rsplit(';').next().unwrap_or(rest);
    if !(rest.starts_with('+') || rest.starts_with('^')) {
        return None;
    }
    let name: String = rest.chars().take_while(|c| !matches!(c, '=' | '?' | ';') && !c.is_whitespace()).collect();
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
        let code = rest.parse().ok().or_else(|| lookup(CMS_TEXTS, rest)).unwrap_or_else(|| {
            tracing::debug!(text = rest, "unknown verbose +CMS ERROR, taken as 500 (unknown error)");
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
    table.iter().find(|(_, t)| t.eq_ignore_ascii_case(text)).map(|(c, _)| *c)
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

#[cfg(test)]
mod tests {
    use super::*;

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
    type FramingCase = (&'static str, Option<(&'static str, bool)>, &'static [u8], Vec<Event>);

    #[test]
    fn framing_table_gives_the_same_events_for_every_chunk_size() {
        let cmti = Event::Urc(Urc::Cmti { mem: "SM".into(), index: 3 });
        let cds = Event::Urc(Urc::Cds { pdu: "0006D1".into() });
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
                "cds in the middle of another command's response",
                Some(("AT+CPMS?", false)),
                b"\r\n+CPMS: \"SM\",1,30\r\n+CDS: 3\r\n0006D1\r\n\r\nOK\r\n",
                vec![resp("+CPMS: \"SM\",1,30"), cds.clone(), OK],
            ),
            (
                "cds between a cmgr header's pdu and the final result",
                Some(("AT+CMGR=3", false)),
                b"+CMGR: 0,,24\r\n0791447728008000040C9144\r\n+CDS: 3\r\n0006D1\r\nOK\r\n",
                vec![resp("+CMGR: 0,,24"), resp("0791447728008000040C9144"), cds.clone(), OK],
            ),
            ("cds before the prompt", Some(("AT+CMGS=9", true)), b"\r\n+CDS: 3\r\n0006D1\r\n\r\n> ", vec![cds.clone(), Event::Prompt]),
            (
                "cds right after the prompt, then the answer of an ack joined to a send",
                Some(("AT+CNMA;+CMGS=9", true)),
                b"\r\n> \r\n+CDS: 3\r\n0006D1\r\n\r\n+CMGS: 7,\"26/12/05,00:00:00+08\"\r\n\r\nOK\r\n",
                vec![Event::Prompt, cds.clone(), resp("+CMGS: 7,\"26/12/05,00:00:00+08\""), OK],
            ),
            (
                "cds with a length that is not a number is judged by its pdu",
                None,
                b"+CDS: abc\r\n0006D1\r\n",
                vec![cds.clone()],
            ),
            (
                "cds with a huge length is judged by its pdu",
                None,
                b"+CDS: 99999999999999999999999\r\n0006D1\r\n",
                vec![cds.clone()],
            ),
            ("cds followed by text that is not hex", None, b"+CDS: 3\r\nHELLO\r\n", vec![other("+CDS: 3"), other("HELLO")]),
            (
                "cds with a truncated (odd) pdu keeps both lines as text",
                None,
                b"+CDS: 3\r\n0006D\r\n",
                vec![other("+CDS: 3"), other("0006D")],
            ),
            (
                "cds header with no pdu line before a final result",
                Some(("AT+CSQ", false)),
                b"\r\n+CDS: 3\r\n\r\nOK\r\n",
                vec![other("+CDS: 3"), OK],
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
                assert_eq!(digest(cmd, input, chunk), want, "case {name:?}, chunk size {chunk}");
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
        assert_eq!(digest(Some(("AT", false)), b"> x\r\nOK\r\n", 1), vec![resp("> x"), OK]);
    }

    #[test]
    fn urc_while_waiting_for_prompt_is_forwarded_and_prompt_still_seen() {
        let got = digest(Some(("AT+CMGS=9", true)), b"\r\n+CMTI: \"SM\",1\r\n\r\n> ", 1);
        assert_eq!(got, vec![Event::Urc(Urc::Cmti { mem: "SM".into(), index: 1 }), Event::Prompt]);
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
            ("1,0,,23", vec![B("1".into()), B("0".into()), B("".into()), B("23".into())]),
            ("\"a,b\",1", vec![Q("a,b".into()), B("1".into())]),
            (
                "\"SM\",1,30,\"SM\",1,30",
                vec![Q("SM".into()), B("1".into()), B("30".into()), Q("SM".into()), B("1".into()), B("30".into())],
            ),
            ("\"+358401234567\",145", vec![Q("+358401234567".into()), B("145".into())]),
            ("\"unterminated,1", vec![Q("unterminated,1".into())]),
            ("\"x\"junk,2", vec![Q("x".into()), B("2".into())]),
            ("1,", vec![B("1".into()), B("".into())]),
            ("\"\"", vec![Q("".into())]),
        ];
        for (input, want) in cases {
            assert_eq!(fields(input), want, "input {input:?}");
        }
        assert_eq!(response_fields("+CSQ: 20,99", "+CSQ").unwrap()[0].as_u32(), Some(20));
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
                    proptest::prelude::Just(b"+CDS: 3".to_vec()),
                    proptest::prelude::Just(b"+CDS: 99999999999".to_vec()),
                    proptest::prelude::Just(b"0006D".to_vec()),
                    proptest::collection::vec(proptest::prelude::any::<u8>(), 0..8),
                ],
                0..40,
            ),
            chunk in 1usize..9,
            cmd in 0usize..5,
        ) {
            let input: Vec<u8> = parts.concat();
            let command = [
                None,
                Some(("AT+CMGL=4", false)),
                Some(("AT+CMGS=5", true)),
                Some(("AT", false)),
                Some(("AT+CNMA;+CMGS=5", true)),
            ][cmd];
            proptest::prop_assert_eq!(digest(command, &input, input.len().max(1)), digest(command, &input, chunk));
        }
    }

    #[test]
    fn pin_commands_are_redacted_for_logs() {
        assert_eq!(redact("AT+CPIN=\"1234\""), "AT+CPIN=<redacted>");
        assert_eq!(redact("at+cpin=1234"), "AT+CPIN=<redacted>");
        assert_eq!(redact("AT+CPIN?"), "AT+CPIN?");
    }

    #[test]
    fn final_parser_table() {
        let cases = [
            ("OK", Some(FinalResult::Ok)),
            ("ERROR", Some(FinalResult::Error)),
            ("+CMS ERROR: 500", Some(FinalResult::Cms(500))),
            ("+CMS ERROR: gibberish", Some(FinalResult::Cms(500))),
            ("+CME ERROR: incorrect password", Some(FinalResult::Cme(CmeError::Code(16)))),
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
}
