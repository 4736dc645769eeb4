//! The PBX forwarder's e-mail fallback: when the clinic's webhook has failed its last attempt,
//! the SMS goes to the fallback address by e-mail, as the PBX provider does (PROTOCOLS.md §3).
//!
//! A small SMTP submission client instead of a mail crate, because it needs very little
//! (one message, one recipient) and must stay on the one TLS stack we already ship (rustls
//! with ring): EHLO, STARTTLS or TLS from the first byte, AUTH PLAIN or LOGIN, MAIL FROM,
//! RCPT TO, DATA with dot-stuffing, QUIT. Every read and write has a timeout and every reply
//! code is checked; an error names the step and quotes the server's reply, because that is
//! what the clinic's IT contact needs to fix it ("535 authentication failed" at AUTH).
//!
//! The message itself is composed in [`super::mail`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::InboundSms;
use super::mail::{BadAddress, check_address, compose_fallback_email};
use super::pbx::message_id;
use crate::config::{PbxForwarder, SmtpConfig, SmtpTls};

/// How long each read, write, connect or TLS handshake may take.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one whole mail may take, every step included: a server that answers each read just
/// in time (a line every few seconds) must not hold the fallback for ever.
pub const MAIL_TIMEOUT: Duration = Duration::from_secs(120);
/// Bounds on a server reply, so a broken server cannot make us buffer without end.
const MAX_REPLY_LINE: usize = 4096;
const MAX_REPLY_LINES: usize = 100;

/// The SMTP conversation step an error happened in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpStep {
    Connect,
    Greeting,
    Ehlo,
    StartTls,
    TlsHandshake,
    Auth,
    MailFrom,
    RcptTo,
    Data,
    Message,
}

impl fmt::Display for SmtpStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SmtpStep::Connect => "connect",
            SmtpStep::Greeting => "greeting",
            SmtpStep::Ehlo => "EHLO",
            SmtpStep::StartTls => "STARTTLS",
            SmtpStep::TlsHandshake => "TLS handshake",
            SmtpStep::Auth => "AUTH",
            SmtpStep::MailFrom => "MAIL FROM",
            SmtpStep::RcptTo => "RCPT TO",
            SmtpStep::Data => "DATA",
            SmtpStep::Message => "message transfer",
        })
    }
}

/// Why an e-mail was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SmtpError {
    #[error("SMTP {step}: no answer from {server} within {}s", .after.as_secs_f64())]
    Timeout { step: SmtpStep, server: String, after: Duration },
    #[error("SMTP {step}: {server} answered {code} {text:?}, expected {expected}")]
    Rejected { step: SmtpStep, server: String, code: u16, text: String, expected: &'static str },
    #[error("SMTP {step}: {server}: {reason}")]
    Failed { step: SmtpStep, server: String, reason: String },
    #[error("SMTP: {server} did not take the whole mail within {}s", .after.as_secs_f64())]
    Deadline { server: String, after: Duration },
    #[error("SMTP: {0}")]
    Refused(String),
}

impl From<BadAddress> for SmtpError {
    fn from(e: BadAddress) -> Self {
        SmtpError::Refused(e.to_string())
    }
}

impl SmtpError {
    /// A 5xx reply: the server says trying again will not help (bad address, bad credentials).
    /// The fallback still retries (the issue says until accepted), but this is worth a louder log.
    pub fn is_permanent(&self) -> bool {
        matches!(self, SmtpError::Rejected { code: 500..=599, .. })
    }
}

/// E-mails `msg` to `to` because the PBX webhook of `forwarder` failed `attempts` times.
pub async fn send_fallback_email(
    cfg: &SmtpConfig,
    to: &str,
    msg: &InboundSms,
    forwarder: &PbxForwarder,
    attempts: u32,
) -> Result<(), SmtpError> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    let mail = compose_fallback_email(&cfg.from, to, msg, forwarder, attempts, now)?;
    let id = message_id(&msg.uid);
    match send_mail(cfg, to, &mail, STEP_TIMEOUT).await {
        Ok(()) => {
            tracing::info!(forwarder = %forwarder.name, message_id = %id, smtp = %cfg.host, "fallback e-mail accepted");
            Ok(())
        }
        Err(e) => {
            tracing::warn!(forwarder = %forwarder.name, message_id = %id, smtp = %cfg.host, "fallback e-mail failed: {e}");
            Err(e)
        }
    }
}

/// Makes `message` safe to send after DATA: CRLF line ends, a dot doubled at the start of a
/// line (RFC 5321 §4.5.2), and the terminating `CRLF.CRLF`.
pub fn dot_stuff(message: &str) -> String {
    let mut out = String::with_capacity(message.len() + 8);
    let normalised = message.replace("\r\n", "\n");
    let trimmed = normalised.strip_suffix('\n').unwrap_or(&normalised);
    for line in trimmed.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.starts_with('.') {
            out.push('.');
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str(".\r\n");
    out
}

/// A reply line's code, whether it is the last line of the reply, and its text.
fn parse_reply_line(line: &str) -> Option<(u16, bool, &str)> {
    let code_text = line.get(..3)?;
    if !code_text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let code: u16 = code_text.parse().ok()?;
    if !(200..=599).contains(&code) {
        return None;
    }
    match line.as_bytes().get(3) {
        None => Some((code, true, "")),
        Some(b' ') => Some((code, true, line.get(4..)?)),
        Some(b'-') => Some((code, false, line.get(4..)?)),
        Some(_) => None,
    }
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

struct Reply {
    code: u16,
    lines: Vec<String>,
}

impl Reply {
    fn text(&self) -> String {
        self.lines.join(" / ")
    }
}

struct Session {
    conn: BufReader<Box<dyn Stream>>,
    server: String,
    timeout: Duration,
}

impl Session {
    fn failed(&self, step: SmtpStep, reason: impl Into<String>) -> SmtpError {
        SmtpError::Failed { step, server: self.server.clone(), reason: reason.into() }
    }

    fn timed_out(&self, step: SmtpStep) -> SmtpError {
        SmtpError::Timeout { step, server: self.server.clone(), after: self.timeout }
    }

    async fn read_line(&mut self, step: SmtpStep) -> Result<String, SmtpError> {
        let mut line = Vec::new();
        loop {
            let chunk = match tokio::time::timeout(self.timeout, self.conn.fill_buf()).await {
                Err(_) => return Err(self.timed_out(step)),
                Ok(Err(e)) => return Err(self.failed(step, format!("reading the reply: {e}"))),
                Ok(Ok(chunk)) => chunk,
            };
            if chunk.is_empty() {
                return Err(self.failed(step, "the server closed the connection"));
            }
            let (take, done) = match chunk.iter().position(|&b| b == b'\n') {
                Some(i) => (i + 1, true),
                None => (chunk.len(), false),
            };
            line.extend_from_slice(&chunk[..take]);
            self.conn.consume(take);
            if line.len() > MAX_REPLY_LINE {
                return Err(self.failed(step, format!("reply line longer than {MAX_REPLY_LINE} bytes")));
            }
            if done {
                let text = String::from_utf8_lossy(&line);
                return Ok(text.trim_end_matches(['\r', '\n']).to_string());
            }
        }
    }

    async fn read_reply(&mut self, step: SmtpStep) -> Result<Reply, SmtpError> {
        let mut lines = Vec::new();
        let mut first_code = None;
        loop {
            let line = self.read_line(step).await?;
            let Some((code, last, text)) = parse_reply_line(&line) else {
                return Err(self.failed(step, format!("malformed reply line {line:?}")));
            };
            if *first_code.get_or_insert(code) != code {
                return Err(self.failed(step, format!("reply lines with different codes: {line:?}")));
            }
            lines.push(text.to_string());
            if last {
                return Ok(Reply { code, lines });
            }
            if lines.len() >= MAX_REPLY_LINES {
                return Err(self.failed(step, format!("reply longer than {MAX_REPLY_LINES} lines")));
            }
        }
    }

    async fn write(&mut self, step: SmtpStep, data: &[u8]) -> Result<(), SmtpError> {
        let stream = self.conn.get_mut();
        let result = tokio::time::timeout(self.timeout, async {
            stream.write_all(data).await?;
            stream.flush().await
        })
        .await;
        match result {
            Err(_) => Err(self.timed_out(step)),
            Ok(Err(e)) => Err(self.failed(step, format!("sending: {e}"))),
            Ok(Ok(())) => Ok(()),
        }
    }

    /// Reads a reply and checks its code is one of `expected`.
    async fn expect(&mut self, step: SmtpStep, expected: &[u16], label: &'static str) -> Result<Reply, SmtpError> {
        let reply = self.read_reply(step).await?;
        if expected.contains(&reply.code) {
            Ok(reply)
        } else {
            Err(SmtpError::Rejected {
                step,
                server: self.server.clone(),
                code: reply.code,
                text: reply.text(),
                expected: label,
            })
        }
    }

    async fn command(
        &mut self,
        step: SmtpStep,
        line: &str,
        expected: &[u16],
        label: &'static str,
    ) -> Result<Reply, SmtpError> {
        self.write(step, format!("{line}\r\n").as_bytes()).await?;
        self.expect(step, expected, label).await
    }
}

/// Sends `message` (headers and body, CRLF line ends) to `to` through the server of `cfg`,
/// with `step_timeout` on every read, write, connect and handshake, and [`MAIL_TIMEOUT`] for
/// the whole mail.
pub async fn send_mail(cfg: &SmtpConfig, to: &str, message: &str, step_timeout: Duration) -> Result<(), SmtpError> {
    send_mail_within(cfg, to, message, step_timeout, MAIL_TIMEOUT).await
}

/// [`send_mail`] with `overall` as the deadline of the whole mail.
pub async fn send_mail_within(
    cfg: &SmtpConfig,
    to: &str,
    message: &str,
    step_timeout: Duration,
    overall: Duration,
) -> Result<(), SmtpError> {
    let send = send_mail_trusting(cfg, to, message, step_timeout, crate::tls::client_config());
    match tokio::time::timeout(overall, send).await {
        Ok(result) => result,
        Err(_) => Err(SmtpError::Deadline { server: format!("{}:{}", cfg.host, cfg.port), after: overall }),
    }
}

/// [`send_mail`] with the given TLS config (tests use one trusting a throwaway CA).
async fn send_mail_trusting(
    cfg: &SmtpConfig,
    to: &str,
    message: &str,
    step_timeout: Duration,
    tls: Arc<rustls::ClientConfig>,
) -> Result<(), SmtpError> {
    check_address("from", &cfg.from)?;
    check_address("to", to)?;
    let server = format!("{}:{}", cfg.host, cfg.port);
    let tcp = match tokio::time::timeout(step_timeout, TcpStream::connect((cfg.host.as_str(), cfg.port))).await {
        Err(_) => return Err(SmtpError::Timeout { step: SmtpStep::Connect, server, after: step_timeout }),
        Ok(Err(e)) => return Err(SmtpError::Failed { step: SmtpStep::Connect, server, reason: e.to_string() }),
        Ok(Ok(tcp)) => tcp,
    };
    let helo_name = match tcp.local_addr() {
        Ok(std::net::SocketAddr::V4(a)) => format!("[{}]", a.ip()),
        Ok(std::net::SocketAddr::V6(a)) => format!("[IPv6:{}]", a.ip()),
        Err(_) => "localhost".to_string(),
    };
    let stream: Box<dyn Stream> = match cfg.tls {
        SmtpTls::Implicit => Box::new(tls_handshake(&cfg.host, tcp, &server, step_timeout, &tls).await?),
        SmtpTls::Starttls | SmtpTls::None => Box::new(tcp),
    };
    let mut s = Session { conn: BufReader::new(stream), server: server.clone(), timeout: step_timeout };
    s.expect(SmtpStep::Greeting, &[220], "220").await?;
    let mut ehlo = s.command(SmtpStep::Ehlo, &format!("EHLO {helo_name}"), &[250], "250").await?;

    if cfg.tls == SmtpTls::Starttls {
        if !has_extension(&ehlo, "STARTTLS") {
            return Err(SmtpError::Refused(format!(
                "{server} does not offer STARTTLS, and tls = \"starttls\" forbids sending mail or credentials in clear"
            )));
        }
        s.command(SmtpStep::StartTls, "STARTTLS", &[220], "220").await?;
        // Anything the server sent after its 220 would be read as if it came over TLS
        // (the STARTTLS command-injection flaw); refuse instead.
        if !s.conn.buffer().is_empty() {
            return Err(s.failed(SmtpStep::StartTls, "data after the STARTTLS reply, before the TLS handshake"));
        }
        let inner = s.conn.into_inner();
        let tls = tls_handshake(&cfg.host, inner, &server, step_timeout, &tls).await?;
        s = Session { conn: BufReader::new(Box::new(tls)), server: server.clone(), timeout: step_timeout };
        ehlo = s.command(SmtpStep::Ehlo, &format!("EHLO {helo_name}"), &[250], "250").await?;
    }

    if let Some(user) = &cfg.username {
        let password =
            cfg.password.as_ref().ok_or_else(|| SmtpError::Refused("[smtp] username is set but no password".into()))?;
        authenticate(&mut s, &ehlo, user, password.expose()).await?;
    }

    s.command(SmtpStep::MailFrom, &format!("MAIL FROM:<{}>", cfg.from), &[250], "250").await?;
    s.command(SmtpStep::RcptTo, &format!("RCPT TO:<{to}>"), &[250, 251], "250").await?;
    s.command(SmtpStep::Data, "DATA", &[354], "354").await?;
    s.write(SmtpStep::Message, dot_stuff(message).as_bytes()).await?;
    s.expect(SmtpStep::Message, &[250], "250").await?;
    // The server has taken the message; a failed QUIT changes nothing.
    if let Err(e) = s.command(SmtpStep::Message, "QUIT", &[221], "221").await {
        tracing::debug!("SMTP QUIT after an accepted message: {e}");
    }
    Ok(())
}

fn has_extension(ehlo: &Reply, name: &str) -> bool {
    ehlo.lines.iter().skip(1).any(|l| l.split_whitespace().next().is_some_and(|w| w.eq_ignore_ascii_case(name)))
}

/// The AUTH mechanisms of an EHLO reply (`AUTH PLAIN LOGIN`, or the old `AUTH=PLAIN LOGIN`).
fn auth_mechanisms(ehlo: &Reply) -> Vec<String> {
    let mut out = Vec::new();
    for line in ehlo.lines.iter().skip(1) {
        let mut words = line.split_whitespace();
        let Some(first) = words.next() else { continue };
        let upper = first.to_ascii_uppercase();
        if upper == "AUTH" {
            out.extend(words.map(|w| w.to_ascii_uppercase()));
        } else if let Some(m) = upper.strip_prefix("AUTH=") {
            out.push(m.to_string());
            out.extend(words.map(|w| w.to_ascii_uppercase()));
        }
    }
    out
}

async fn authenticate(s: &mut Session, ehlo: &Reply, user: &str, password: &str) -> Result<(), SmtpError> {
    let b64 = |v: &[u8]| base64::engine::general_purpose::STANDARD.encode(v);
    let mechanisms = auth_mechanisms(ehlo);
    if mechanisms.iter().any(|m| m == "PLAIN") {
        let token = b64(format!("\0{user}\0{password}").as_bytes());
        s.command(SmtpStep::Auth, &format!("AUTH PLAIN {token}"), &[235], "235").await?;
        Ok(())
    } else if mechanisms.iter().any(|m| m == "LOGIN") {
        s.command(SmtpStep::Auth, "AUTH LOGIN", &[334], "334").await?;
        s.command(SmtpStep::Auth, &b64(user.as_bytes()), &[334], "334").await?;
        s.command(SmtpStep::Auth, &b64(password.as_bytes()), &[235], "235").await?;
        Ok(())
    } else {
        Err(SmtpError::Refused(format!(
            "{} offers no AUTH PLAIN or LOGIN (it offers {:?}), but [smtp] has a username",
            s.server, mechanisms
        )))
    }
}

async fn tls_handshake<S: AsyncRead + AsyncWrite + Unpin>(
    host: &str,
    stream: S,
    server: &str,
    step_timeout: Duration,
    tls: &Arc<rustls::ClientConfig>,
) -> Result<tokio_rustls::client::TlsStream<S>, SmtpError> {
    let failed =
        |reason: String| SmtpError::Failed { step: SmtpStep::TlsHandshake, server: server.to_string(), reason };
    let name = rustls::pki_types::ServerName::try_from(host.to_string())
        .map_err(|e| failed(format!("{host:?} is not a valid TLS server name: {e}")))?;
    let connector = tokio_rustls::TlsConnector::from(tls.clone());
    match tokio::time::timeout(step_timeout, connector.connect(name, stream)).await {
        Err(_) => {
            Err(SmtpError::Timeout { step: SmtpStep::TlsHandshake, server: server.to_string(), after: step_timeout })
        }
        Ok(Err(e)) => Err(failed(e.to_string())),
        Ok(Ok(tls)) => Ok(tls),
    }
}

#[cfg(test)]
#[path = "../../tests/common/smtp_sink.rs"]
mod smtp_sink;

#[cfg(test)]
mod tests {
    use super::smtp_sink::{SinkBehaviour, SmtpSink};
    use super::*;
    use crate::config::Secret;

    fn smtp(port: u16, tls: SmtpTls) -> SmtpConfig {
        SmtpConfig {
            host: "127.0.0.1".into(),
            port,
            tls,
            username: None,
            password: None,
            from: "smshub@example-clinic.au".into(),
        }
    }

    use crate::forward::test_support::{AWKWARD, forwarder, sms};

    #[test]
    fn dot_stuffing_doubles_leading_dots_and_terminates() {
        let cases: &[(&str, &str)] = &[
            ("a\r\nb\r\n", "a\r\nb\r\n.\r\n"),
            ("a\nb", "a\r\nb\r\n.\r\n"),
            (".\r\n..x\r\n", "..\r\n...x\r\n.\r\n"),
            ("", "\r\n.\r\n"),
        ];
        for (input, expected) in cases {
            assert_eq!(dot_stuff(input), *expected, "{input:?}");
        }
    }

    #[test]
    fn reply_lines_are_parsed_strictly() {
        type Parsed = Option<(u16, bool, &'static str)>;
        let cases: &[(&str, Parsed)] = &[
            ("250 OK", Some((250, true, "OK"))),
            ("250-PIPELINING", Some((250, false, "PIPELINING"))),
            ("354", Some((354, true, ""))),
            ("550 5.1.1 <x@y> no such user", Some((550, true, "5.1.1 <x@y> no such user"))),
            ("25O OK", None),
            ("999 what", None),
            ("250_x", None),
            ("", None),
            ("ok", None),
        ];
        for (line, expected) in cases {
            assert_eq!(parse_reply_line(line), *expected, "{line:?}");
        }
    }

    #[tokio::test]
    async fn the_sink_receives_the_mail_with_the_body_intact() {
        let sink = SmtpSink::start(SinkBehaviour::Accept);
        let cfg = smtp(sink.port(), SmtpTls::None);
        send_fallback_email(&cfg, "frontdesk@example-clinic.au", &sms(AWKWARD), &forwarder(), 10).await.unwrap();
        let mails = sink.wait_for_mails(1, Duration::from_secs(10));
        assert_eq!(mails.len(), 1);
        let mail = &mails[0];
        assert_eq!(mail.mail_from, "smshub@example-clinic.au");
        assert_eq!(mail.rcpt_to, vec!["frontdesk@example-clinic.au".to_string()]);
        assert_eq!(mail.header("Subject").as_deref(), Some("SMS from +61400111222 (webhook failed 10 times)"));
        assert!(mail.text_body().contains(&format!("\r\n{AWKWARD}\r\n")), "{}", mail.text_body());
        assert_eq!(mail.auth, None);
    }

    #[tokio::test]
    async fn credentials_are_sent_with_auth_plain_when_configured() {
        let sink = SmtpSink::start(SinkBehaviour::Accept);
        let mut cfg = smtp(sink.port(), SmtpTls::None);
        cfg.username = Some("clinic".into());
        cfg.password = Some(Secret::new("p@ss wörd"));
        send_fallback_email(&cfg, "frontdesk@example-clinic.au", &sms("x"), &forwarder(), 10).await.unwrap();
        let mails = sink.wait_for_mails(1, Duration::from_secs(10));
        assert_eq!(mails[0].auth.as_deref(), Some("PLAIN clinic p@ss wörd"));
    }

    #[tokio::test]
    async fn a_rejected_recipient_is_a_clear_permanent_error() {
        let sink = SmtpSink::start(SinkBehaviour::RejectRcpt("550 5.1.1 <frontdesk@example-clinic.au>: no such user"));
        let cfg = smtp(sink.port(), SmtpTls::None);
        let err =
            send_fallback_email(&cfg, "frontdesk@example-clinic.au", &sms("x"), &forwarder(), 10).await.unwrap_err();
        assert_eq!(
            err,
            SmtpError::Rejected {
                step: SmtpStep::RcptTo,
                server: format!("127.0.0.1:{}", sink.port()),
                code: 550,
                text: "5.1.1 <frontdesk@example-clinic.au>: no such user".into(),
                expected: "250",
            }
        );
        assert!(err.is_permanent());
        assert!(err.to_string().starts_with("SMTP RCPT TO: 127.0.0.1:"), "{err}");
        assert!(sink.mails().is_empty());
    }

    #[tokio::test]
    async fn a_temporary_failure_then_success_delivers_once() {
        let sink = SmtpSink::start(SinkBehaviour::FailFirst(1));
        let cfg = smtp(sink.port(), SmtpTls::None);
        let err = send_fallback_email(&cfg, "a@b.fi", &sms("x"), &forwarder(), 10).await.unwrap_err();
        assert!(matches!(err, SmtpError::Rejected { step: SmtpStep::MailFrom, code: 451, .. }), "{err:?}");
        assert!(!err.is_permanent());
        send_fallback_email(&cfg, "a@b.fi", &sms("x"), &forwarder(), 10).await.unwrap();
        assert_eq!(sink.wait_for_mails(1, Duration::from_secs(10)).len(), 1);
    }

    #[tokio::test]
    async fn a_server_that_never_answers_times_out_at_the_greeting() {
        let sink = SmtpSink::start(SinkBehaviour::Silent);
        let cfg = smtp(sink.port(), SmtpTls::None);
        let mail = compose_fallback_email(&cfg.from, "a@b.fi", &sms("x"), &forwarder(), 10, 0).unwrap();
        let err = send_mail(&cfg, "a@b.fi", &mail, Duration::from_millis(300)).await.unwrap_err();
        assert_eq!(
            err,
            SmtpError::Timeout {
                step: SmtpStep::Greeting,
                server: format!("127.0.0.1:{}", sink.port()),
                after: Duration::from_millis(300)
            }
        );
    }

    #[tokio::test]
    async fn a_server_that_answers_each_read_in_time_still_meets_the_overall_deadline() {
        let sink = SmtpSink::start(SinkBehaviour::Drip);
        let cfg = smtp(sink.port(), SmtpTls::None);
        let mail = compose_fallback_email(&cfg.from, "a@b.fi", &sms("x"), &forwarder(), 10, 0).unwrap();
        let started = std::time::Instant::now();
        let err =
            send_mail_within(&cfg, "a@b.fi", &mail, Duration::from_secs(2), Duration::from_secs(1)).await.unwrap_err();
        assert!(matches!(err, SmtpError::Deadline { .. }), "{err:?}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn starttls_is_required_when_configured() {
        let sink = SmtpSink::start(SinkBehaviour::Accept);
        let cfg = smtp(sink.port(), SmtpTls::Starttls);
        let err = send_fallback_email(&cfg, "a@b.fi", &sms("x"), &forwarder(), 10).await.unwrap_err();
        assert!(matches!(&err, SmtpError::Refused(t) if t.contains("does not offer STARTTLS")), "{err:?}");
        assert!(sink.mails().is_empty());
    }

    #[tokio::test]
    async fn implicit_tls_against_a_plain_server_fails_in_the_handshake() {
        let sink = SmtpSink::start(SinkBehaviour::Accept);
        let cfg = smtp(sink.port(), SmtpTls::Implicit);
        let err = send_fallback_email(&cfg, "a@b.fi", &sms("x"), &forwarder(), 10).await.unwrap_err();
        assert!(matches!(err, SmtpError::Failed { step: SmtpStep::TlsHandshake, .. }), "{err:?}");
    }

    /// A throwaway CA and a certificate for 127.0.0.1 signed by it, made with the openssl
    /// command; `None` (and a printed reason) when openssl is missing.
    fn test_pki(dir: &std::path::Path) -> Option<Arc<rustls::ClientConfig>> {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let run = |args: &[&str]| {
            let out = std::process::Command::new("openssl").args(args).current_dir(dir).output();
            match out {
                Ok(o) if o.status.success() => Some(()),
                Ok(o) => panic!("openssl {args:?}: {}", String::from_utf8_lossy(&o.stderr)),
                Err(e) => {
                    eprintln!("SKIPPED: openssl is not available ({e}); the TLS path was not tested");
                    None
                }
            }
        };
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
        run(&[
            &["req", "-x509"][..],
            &ec,
            &["-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=smshub test CA"],
        ]
        .concat())?;
        run(&[&["req"][..], &ec, &["-keyout", "leaf.key", "-out", "leaf.csr", "-subj", "/CN=127.0.0.1"]].concat())?;
        std::fs::write(
            dir.join("leaf.ext"),
            "basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        run(&[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "leaf.ext",
            "-out",
            "leaf.pem",
        ])?;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from_pem_file(dir.join("ca.pem")).unwrap()).unwrap();
        Some(Arc::new(crate::tls::client_config_trusting(roots)))
    }

    #[tokio::test]
    async fn starttls_upgrades_then_authenticates_and_sends_over_tls() {
        let dir = tempfile::tempdir().unwrap();
        let Some(roots) = test_pki(dir.path()) else { return };
        for implicit in [false, true] {
            let sink = SmtpSink::start_with_tls(
                SinkBehaviour::Accept,
                &dir.path().join("leaf.pem"),
                &dir.path().join("leaf.key"),
                implicit,
            );
            let mut cfg = smtp(sink.port(), if implicit { SmtpTls::Implicit } else { SmtpTls::Starttls });
            cfg.username = Some("clinic".into());
            cfg.password = Some(Secret::new("s3cret"));
            let mail = compose_fallback_email(&cfg.from, "a@b.fi", &sms(AWKWARD), &forwarder(), 10, 0).unwrap();
            send_mail_trusting(&cfg, "a@b.fi", &mail, Duration::from_secs(20), roots.clone()).await.unwrap();
            let mails = sink.wait_for_mails(1, Duration::from_secs(10));
            assert_eq!(mails.len(), 1, "implicit={implicit}");
            assert!(mails[0].tls, "implicit={implicit}: the mail did not come over TLS");
            assert_eq!(mails[0].auth.as_deref(), Some("PLAIN clinic s3cret"));
            assert!(mails[0].text_body().contains(AWKWARD));
        }
    }

    #[tokio::test]
    async fn an_untrusted_certificate_fails_the_tls_handshake() {
        let dir = tempfile::tempdir().unwrap();
        if test_pki(dir.path()).is_none() {
            return;
        }
        let sink = SmtpSink::start_with_tls(
            SinkBehaviour::Accept,
            &dir.path().join("leaf.pem"),
            &dir.path().join("leaf.key"),
            false,
        );
        let cfg = smtp(sink.port(), SmtpTls::Starttls);
        // The real send_mail trusts only the public web roots, not our throwaway CA.
        let err = send_fallback_email(&cfg, "a@b.fi", &sms("x"), &forwarder(), 10).await.unwrap_err();
        let SmtpError::Failed { step: SmtpStep::TlsHandshake, reason, .. } = &err else { panic!("{err:?}") };
        assert!(reason.to_lowercase().contains("certificate"), "{reason}");
        assert!(sink.mails().is_empty());
    }

    #[tokio::test]
    async fn auth_login_is_used_when_plain_is_not_offered() {
        let sink = SmtpSink::start(SinkBehaviour::LoginOnly);
        let mut cfg = smtp(sink.port(), SmtpTls::None);
        cfg.username = Some("clinic@example.fi".into());
        cfg.password = Some(Secret::new("pw"));
        send_fallback_email(&cfg, "a@b.fi", &sms("x"), &forwarder(), 10).await.unwrap();
        assert_eq!(
            sink.wait_for_mails(1, Duration::from_secs(10))[0].auth.as_deref(),
            Some("LOGIN clinic@example.fi pw")
        );
    }

    #[tokio::test]
    async fn a_username_without_a_password_is_refused() {
        let sink = SmtpSink::start(SinkBehaviour::Accept);
        let mut cfg = smtp(sink.port(), SmtpTls::None);
        cfg.username = Some("clinic".into());
        let err = send_fallback_email(&cfg, "a@b.fi", &sms("x"), &forwarder(), 10).await.unwrap_err();
        assert!(matches!(&err, SmtpError::Refused(t) if t.contains("no password")), "{err:?}");
    }

    #[tokio::test]
    async fn a_refused_connection_names_the_connect_step() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let err =
            send_fallback_email(&smtp(port, SmtpTls::None), "a@b.fi", &sms("x"), &forwarder(), 10).await.unwrap_err();
        assert!(matches!(err, SmtpError::Failed { step: SmtpStep::Connect, .. }), "{err:?}");
    }
}
