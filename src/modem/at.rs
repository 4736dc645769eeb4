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

mod digest;

pub use digest::{
    CmeError, Digester, Event, Field, FinalResult, RegKind, Urc, fields, parse_final, redact, response_fields,
};

/// How many URCs may wait for the driver. The driver reads them between commands; if it ever falls this
/// far behind, further URCs are logged and dropped (the driver re-lists storage periodically, so a lost
/// `+CMTI` delays a message but does not lose it).
const URC_QUEUE: usize = 1024;

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
    /// A `+CMGS` joined to a command before it on one line (`AT+CNMA;+CMGS=23`) was answered with an
    /// error before the `> ` prompt: nothing was sent, and which of the two commands failed is not
    /// known (the line stops at the first error).
    #[error("the line {command:?} was refused before the > prompt ({error}); nothing was sent")]
    RefusedBeforePrompt { command: String, error: Box<AtError> },
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
    /// Another command precedes `+CMGS` on the line: an error before the prompt is
    /// [`AtError::RefusedBeforePrompt`].
    joined: bool,
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
        self.send_pdu_after(None, tpdu_len, pdu_hex, prompt_timeout, timeout).await
    }

    /// [`AtClient::send_pdu`] with `before` (an extended command without `AT`, e.g. `+CNMA`) on the
    /// same line: `AT+CNMA;+CMGS=<len>`. The modem runs the line left to right and stops at the first
    /// error, so reaching the prompt means `before` succeeded; an error before the prompt is
    /// [`AtError::RefusedBeforePrompt`] (nothing sent, `before` may or may not have run).
    pub async fn send_pdu_after(
        &self,
        before: Option<&str>,
        tpdu_len: usize,
        pdu_hex: &str,
        prompt_timeout: Duration,
        timeout: Duration,
    ) -> Result<u8, AtError> {
        let command = match before {
            Some(b) => format!("AT{b};+CMGS={tpdu_len}"),
            None => format!("AT+CMGS={tpdu_len}"),
        };
        let payload = Payload { hex: pdu_hex.trim().to_string(), prompt_timeout, joined: before.is_some() };
        let lines = self.request(command.clone(), Some(payload), timeout).await?;
        lines
            .iter()
            .find_map(|l| response_fields(l, "+CMGS"))
            .and_then(|f| f.first().and_then(Field::as_u32))
            .and_then(|mr| u8::try_from(mr).ok())
            .ok_or_else(|| AtError::BadResponse { command, detail: format!("no +CMGS: <mr> line in {lines:?}") })
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
            .send(Request { command, payload, timeout, reply })
            .await
            .map_err(|_| AtError::Closed { payload_sent: false })?;
        // If the engine dies mid-exchange the oneshot is dropped; whether the PDU was written is then
        // unknown, so a send must be reported as "outcome unknown".
        answer.await.unwrap_or(Err(AtError::Closed { payload_sent: sent_payload }))
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
        self.io.write_all(bytes).await.map_err(|e| AtError::Io(e.to_string()))?;
        self.io.flush().await.map_err(|e| AtError::Io(e.to_string()))
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
        let mut deadline = crate::deadline::tokio_in(payload.map_or(timeout, |p| p.prompt_timeout));
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
                            deadline = crate::deadline::tokio_in(timeout);
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
                let error = match f {
                    FinalResult::Ok => return Ok(lines),
                    FinalResult::Error => AtError::Error,
                    FinalResult::Cms(c) => AtError::Cms(c),
                    FinalResult::Cme(e) => AtError::Cme(e),
                    other => AtError::CallResult(other),
                };
                if payload.is_some_and(|p| p.joined) && !payload_sent {
                    return Err(AtError::RefusedBeforePrompt { command: shown, error: Box::new(error) });
                }
                return Err(error);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncBufReadExt, BufReader, DuplexStream};

    // ---- the engine over a duplex pipe ----

    /// The modem side of a duplex pipe: read one command line (up to CR), answer with raw bytes.
    struct FakePort {
        r: BufReader<tokio::io::ReadHalf<DuplexStream>>,
        w: tokio::io::WriteHalf<DuplexStream>,
    }

    impl FakePort {
        fn new(s: DuplexStream) -> Self {
            let (r, w) = tokio::io::split(s);
            FakePort { r: BufReader::new(r), w }
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
            for part in [&b"\r\n+CS"[..], b"Q: 17,99\r\n+CMT", b"I: \"SM\",4\r\n", b"\r\nOK\r\n"] {
                port.say(part).await;
                tokio::task::yield_now().await;
            }
            port
        });
        let lines = client.command("AT+CSQ", LONG).await.unwrap();
        assert_eq!(lines, vec!["+CSQ: 17,99"]);
        assert_eq!(urcs.recv().await, Some(Urc::Cmti { mem: "SM".into(), index: 4 }));
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
        assert_eq!(urcs.recv().await, Some(Urc::Registration { kind: RegKind::Creg, stat: 1 }));
        modem.await.unwrap();
    }

    #[tokio::test]
    async fn an_ack_joined_to_a_send_runs_on_one_line_and_a_refusal_before_the_prompt_says_so() {
        let (client, mut urcs, mut port) = pair();
        let modem = tokio::spawn(async move {
            assert_eq!(port.read_until(b'\r').await, "AT+CNMA;+CMGS=3\r");
            // The next report comes right after the prompt, before the answer.
            port.say(b"\r\n> ").await;
            assert_eq!(port.read_until(0x1a).await, "001100\x1a");
            port.say(b"\r\n+CDS: 3\r\n0006D1\r\n\r\n+CMGS: 9\r\n\r\nOK\r\n").await;
            assert_eq!(port.read_until(b'\r').await, "AT+CNMA;+CMGS=3\r");
            port.say(b"\r\n+CMS ERROR: 340\r\n").await;
            port
        });
        assert_eq!(client.send_pdu_after(Some("+CNMA"), 3, "001100", LONG, LONG).await, Ok(9));
        assert_eq!(urcs.recv().await, Some(Urc::Cds { pdu: "0006D1".into() }));
        let err = client.send_pdu_after(Some("+CNMA"), 3, "001100", LONG, LONG).await.unwrap_err();
        assert_eq!(
            err,
            AtError::RefusedBeforePrompt { command: "AT+CNMA;+CMGS=3".into(), error: Box::new(AtError::Cms(340)) }
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
            tokio::io::AsyncReadExt::read_exact(&mut port.r, &mut b).await.unwrap();
            b[0]
        });
        let err = client.send_pdu(12, "0011", Duration::from_millis(200), LONG).await.unwrap_err();
        assert_eq!(err, AtError::Timeout { command: "AT+CMGS=12".into(), payload_sent: false });
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
        let err = client.send_pdu(3, "001100", LONG, Duration::from_millis(200)).await.unwrap_err();
        assert_eq!(err, AtError::Timeout { command: "AT+CMGS=3".into(), payload_sent: true });
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
        let err = client.command("AT+CSQ", Duration::from_millis(200)).await.unwrap_err();
        assert!(matches!(err, AtError::Timeout { payload_sent: false, .. }));
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
        assert_eq!(client.command("AT+CPIN?", LONG).await, Err(AtError::Cme(CmeError::Code(11))));
        assert_eq!(client.command("AT+FOO", LONG).await, Err(AtError::Error));
        assert_eq!(client.send_pdu(1, "00", LONG, LONG).await, Err(AtError::Cms(38)));
        modem.await.unwrap();
    }

    #[tokio::test]
    async fn timeout_error_of_a_pin_command_does_not_contain_the_pin() {
        let (client, _urcs, port) = pair();
        let err = client.command("AT+CPIN=\"4321\"", Duration::from_millis(100)).await.unwrap_err();
        assert!(!err.to_string().contains("4321"), "{err}");
        drop(port);
    }
}
