//! A local SMTP sink for tests: listens on 127.0.0.1, speaks just enough SMTP for a mail
//! client (EHLO/HELO, AUTH PLAIN/LOGIN, MAIL, RCPT, DATA, RSET, NOOP, QUIT), and records every
//! accepted message. It offers no STARTTLS. Plain std threads, so it works from unit tests
//! (included with `#[path]`) and from end-to-end tests alike.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;

/// How the sink behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkBehaviour {
    /// Accept every message.
    Accept,
    /// Answer RCPT TO with this full reply line (e.g. "550 5.1.1 no such user").
    RejectRcpt(&'static str),
    /// Answer "451" to MAIL FROM in the first N sessions, then accept.
    FailFirst(usize),
    /// Accept connections and never say anything.
    Silent,
    /// Greet with continuation lines, one every 200 ms, for a minute: each read is quick, the
    /// greeting never ends.
    Drip,
    /// Accept, but offer only AUTH LOGIN.
    LoginOnly,
}

/// One accepted message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMail {
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    /// "PLAIN user pass" or "LOGIN user pass", when the client authenticated.
    pub auth: Option<String>,
    /// Whether the message came over TLS (after STARTTLS).
    pub tls: bool,
    /// The message after DATA, dot-unstuffed, CRLF line ends, without the final ".".
    pub data: String,
}

impl ReceivedMail {
    /// A header's value (unfolded, as sent).
    pub fn header(&self, name: &str) -> Option<String> {
        let head = self.data.split("\r\n\r\n").next().unwrap_or("");
        let mut value: Option<String> = None;
        for line in head.split("\r\n") {
            if let Some(v) = value.as_mut() {
                if line.starts_with(' ') || line.starts_with('\t') {
                    v.push_str(line);
                    continue;
                }
                break;
            }
            if let Some((n, v)) = line.split_once(':')
                && n.eq_ignore_ascii_case(name)
            {
                value = Some(v.trim().to_string());
            }
        }
        value
    }

    /// The text body, base64 decoded when the message says it is base64.
    pub fn text_body(&self) -> String {
        let body = self.data.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
        let is_b64 = self.header("Content-Transfer-Encoding").is_some_and(|v| v.eq_ignore_ascii_case("base64"));
        if is_b64 {
            let joined: String = body.split_whitespace().collect();
            let bytes = base64::engine::general_purpose::STANDARD.decode(joined).expect("body is not base64");
            String::from_utf8(bytes).expect("body is not UTF-8")
        } else {
            body.to_string()
        }
    }
}

pub struct SmtpSink {
    port: u16,
    mails: Arc<Mutex<Vec<ReceivedMail>>>,
    sessions: Arc<Mutex<usize>>,
}

impl SmtpSink {
    /// Starts the sink on 127.0.0.1 at a free port.
    pub fn start(behaviour: SinkBehaviour) -> SmtpSink {
        SmtpSink::start_inner(behaviour, None, false)
    }

    /// Like [`SmtpSink::start`], with the PEM certificate chain and key: TLS from the first
    /// byte when `implicit` (port 465 style), else offered through STARTTLS.
    pub fn start_with_tls(
        behaviour: SinkBehaviour,
        cert_pem: &std::path::Path,
        key_pem: &std::path::Path,
        implicit: bool,
    ) -> SmtpSink {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_file_iter(cert_pem).expect("read cert").map(|c| c.expect("cert")).collect();
        let key = PrivateKeyDer::from_pem_file(key_pem).expect("read key");
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("server cert");
        SmtpSink::start_inner(behaviour, Some(Arc::new(config)), implicit)
    }

    fn start_inner(behaviour: SinkBehaviour, tls: Option<Arc<rustls::ServerConfig>>, implicit: bool) -> SmtpSink {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the SMTP sink");
        let port = listener.local_addr().expect("sink address").port();
        let mails = Arc::new(Mutex::new(Vec::new()));
        let sessions = Arc::new(Mutex::new(0usize));
        let (m, s) = (mails.clone(), sessions.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                let session = {
                    let mut n = s.lock().unwrap();
                    *n += 1;
                    *n
                };
                let m = m.clone();
                let tls = tls.clone();
                std::thread::spawn(move || {
                    let _ = serve(conn, behaviour, session, &m, tls, implicit);
                });
            }
        });
        SmtpSink { port, mails, sessions }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// How many connections the sink has seen.
    pub fn sessions(&self) -> usize {
        *self.sessions.lock().unwrap()
    }

    pub fn mails(&self) -> Vec<ReceivedMail> {
        self.mails.lock().unwrap().clone()
    }

    /// Waits until at least `n` mails arrived (or `timeout` passed) and returns them all.
    pub fn wait_for_mails(&self, n: usize, timeout: Duration) -> Vec<ReceivedMail> {
        let deadline = Instant::now() + timeout;
        loop {
            let mails = self.mails();
            if mails.len() >= n || Instant::now() >= deadline {
                return mails;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The connection, plain or upgraded by STARTTLS.
enum Conn {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ServerConnection, TcpStream>>),
}

impl Conn {
    /// One line, read byte by byte so nothing is buffered past it (STARTTLS must switch
    /// exactly at the line end).
    fn read_line(&mut self) -> std::io::Result<Option<String>> {
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        loop {
            let n = match self {
                Conn::Plain(s) => s.read(&mut byte)?,
                Conn::Tls(s) => s.read(&mut byte)?,
            };
            if n == 0 {
                return Ok(if line.is_empty() { None } else { Some(String::from_utf8_lossy(&line).into_owned()) });
            }
            line.push(byte[0]);
            if byte[0] == b'\n' {
                return Ok(Some(String::from_utf8_lossy(&line).into_owned()));
            }
        }
    }

    fn send(&mut self, line: &str) -> std::io::Result<()> {
        let data = format!("{line}\r\n");
        match self {
            Conn::Plain(s) => s.write_all(data.as_bytes()),
            Conn::Tls(s) => {
                s.write_all(data.as_bytes())?;
                s.flush()
            }
        }
    }
}

fn serve(
    conn: TcpStream,
    behaviour: SinkBehaviour,
    session: usize,
    mails: &Mutex<Vec<ReceivedMail>>,
    tls: Option<Arc<rustls::ServerConfig>>,
    implicit: bool,
) -> std::io::Result<()> {
    if behaviour == SinkBehaviour::Silent {
        std::thread::sleep(Duration::from_secs(60));
        return Ok(());
    }
    if behaviour == SinkBehaviour::Drip {
        let mut c = Conn::Plain(conn);
        for _ in 0..300 {
            c.send("220-sink.test still greeting")?;
            std::thread::sleep(Duration::from_millis(200));
        }
        return Ok(());
    }
    conn.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut c = match &tls {
        Some(config) if implicit => {
            let server = rustls::ServerConnection::new(config.clone()).expect("TLS session");
            Conn::Tls(Box::new(rustls::StreamOwned::new(server, conn)))
        }
        _ => Conn::Plain(conn),
    };
    c.send("220 sink.test ESMTP ready")?;
    let mut mail_from = String::new();
    let mut rcpt_to = Vec::new();
    let mut auth = None;
    let b64 = |s: &str| {
        String::from_utf8(base64::engine::general_purpose::STANDARD.decode(s.trim()).unwrap_or_default())
            .unwrap_or_default()
    };
    loop {
        let Some(line) = c.read_line()? else { return Ok(()) };
        let line = line.trim_end_matches(['\r', '\n']).to_string();
        let upper = line.to_ascii_uppercase();
        let in_tls = matches!(c, Conn::Tls(_));
        if upper.starts_with("EHLO") {
            c.send("250-sink.test greets you")?;
            if tls.is_some() && !in_tls {
                c.send("250-STARTTLS")?;
            }
            if behaviour == SinkBehaviour::LoginOnly {
                c.send("250-AUTH LOGIN")?;
            } else {
                c.send("250-AUTH PLAIN LOGIN")?;
            }
            c.send("250 8BITMIME")?;
        } else if upper == "STARTTLS" && !in_tls && tls.is_some() {
            c.send("220 2.0.0 go ahead")?;
            let Conn::Plain(tcp) = c else { unreachable!() };
            let server = rustls::ServerConnection::new(tls.clone().unwrap()).expect("TLS session");
            c = Conn::Tls(Box::new(rustls::StreamOwned::new(server, tcp)));
            // RFC 3207: forget everything learnt before the handshake.
            mail_from.clear();
            rcpt_to.clear();
            auth = None;
        } else if upper.starts_with("HELO") || upper == "NOOP" {
            c.send("250 OK")?;
        } else if upper.starts_with("AUTH PLAIN ") {
            let decoded = b64(&line[11..]);
            let parts: Vec<&str> = decoded.split('\0').collect();
            auth = Some(format!("PLAIN {} {}", parts.get(1).unwrap_or(&""), parts.get(2).unwrap_or(&"")));
            c.send("235 2.7.0 Authentication successful")?;
        } else if upper == "AUTH LOGIN" {
            c.send("334 VXNlcm5hbWU6")?;
            let user = c.read_line()?.unwrap_or_default();
            c.send("334 UGFzc3dvcmQ6")?;
            let pass = c.read_line()?.unwrap_or_default();
            auth = Some(format!("LOGIN {} {}", b64(&user), b64(&pass)));
            c.send("235 2.7.0 Authentication successful")?;
        } else if upper.starts_with("MAIL FROM:") {
            if let SinkBehaviour::FailFirst(n) = behaviour
                && session <= n
            {
                c.send("451 4.3.0 try again later")?;
                continue;
            }
            mail_from = line[10..].trim().trim_start_matches('<').trim_end_matches('>').to_string();
            c.send("250 2.1.0 OK")?;
        } else if upper.starts_with("RCPT TO:") {
            if let SinkBehaviour::RejectRcpt(reply) = behaviour {
                c.send(reply)?;
                continue;
            }
            rcpt_to.push(line[8..].trim().trim_start_matches('<').trim_end_matches('>').to_string());
            c.send("250 2.1.5 OK")?;
        } else if upper == "DATA" {
            if rcpt_to.is_empty() {
                c.send("554 5.5.1 no valid recipients")?;
                continue;
            }
            c.send("354 End data with <CR><LF>.<CR><LF>")?;
            let mut data = String::new();
            loop {
                let Some(l) = c.read_line()? else { return Ok(()) };
                if l == ".\r\n" {
                    break;
                }
                data.push_str(l.strip_prefix('.').unwrap_or(&l));
            }
            let data = data.strip_suffix("\r\n").unwrap_or(&data).to_string();
            mails.lock().unwrap().push(ReceivedMail {
                mail_from: std::mem::take(&mut mail_from),
                rcpt_to: std::mem::take(&mut rcpt_to),
                auth: auth.clone(),
                tls: in_tls,
                data,
            });
            c.send("250 2.0.0 queued")?;
        } else if upper == "RSET" {
            mail_from.clear();
            rcpt_to.clear();
            c.send("250 OK")?;
        } else if upper == "QUIT" {
            c.send("221 2.0.0 bye")?;
            return Ok(());
        } else {
            c.send("502 5.5.2 command not recognised")?;
        }
    }
}
