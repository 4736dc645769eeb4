//! A local SMTP sink for tests: listens on 127.0.0.1, speaks just enough SMTP for a mail
//! client (EHLO/HELO, AUTH PLAIN/LOGIN, MAIL, RCPT, DATA, RSET, NOOP, QUIT), and records every
//! accepted message. It offers no STARTTLS. Plain std threads, so it works from unit tests
//! (included with `#[path]`) and from end-to-end tests alike.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
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
}

/// One accepted message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMail {
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    /// "PLAIN user pass" or "LOGIN user pass", when the client authenticated.
    pub auth: Option<String>,
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
                std::thread::spawn(move || {
                    let _ = serve(conn, behaviour, session, &m);
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

fn serve(
    conn: TcpStream,
    behaviour: SinkBehaviour,
    session: usize,
    mails: &Mutex<Vec<ReceivedMail>>,
) -> std::io::Result<()> {
    if behaviour == SinkBehaviour::Silent {
        std::thread::sleep(Duration::from_secs(60));
        return Ok(());
    }
    conn.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut out = conn.try_clone()?;
    let mut reader = BufReader::new(conn);
    let mut send = |line: &str| -> std::io::Result<()> { out.write_all(format!("{line}\r\n").as_bytes()) };
    send("220 sink.test ESMTP ready")?;
    let mut mail_from = String::new();
    let mut rcpt_to = Vec::new();
    let mut auth = None;
    let b64 = |s: &str| {
        String::from_utf8(base64::engine::general_purpose::STANDARD.decode(s.trim()).unwrap_or_default())
            .unwrap_or_default()
    };
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let line = line.trim_end_matches(['\r', '\n']).to_string();
        let upper = line.to_ascii_uppercase();
        if upper.starts_with("EHLO") {
            send("250-sink.test greets you")?;
            send("250-AUTH PLAIN LOGIN")?;
            send("250 8BITMIME")?;
        } else if upper.starts_with("HELO") || upper == "NOOP" {
            send("250 OK")?;
        } else if let Some(token) = upper.strip_prefix("AUTH PLAIN ").map(|_| &line[11..]) {
            let decoded = b64(token);
            let parts: Vec<&str> = decoded.split('\0').collect();
            auth = Some(format!("PLAIN {} {}", parts.get(1).unwrap_or(&""), parts.get(2).unwrap_or(&"")));
            send("235 2.7.0 Authentication successful")?;
        } else if upper == "AUTH LOGIN" {
            send("334 VXNlcm5hbWU6")?;
            let mut user = String::new();
            reader.read_line(&mut user)?;
            send("334 UGFzc3dvcmQ6")?;
            let mut pass = String::new();
            reader.read_line(&mut pass)?;
            auth = Some(format!("LOGIN {} {}", b64(&user), b64(&pass)));
            send("235 2.7.0 Authentication successful")?;
        } else if upper.starts_with("MAIL FROM:") {
            if let SinkBehaviour::FailFirst(n) = behaviour
                && session <= n
            {
                send("451 4.3.0 try again later")?;
                continue;
            }
            mail_from = line[10..].trim().trim_start_matches('<').trim_end_matches('>').to_string();
            send("250 2.1.0 OK")?;
        } else if upper.starts_with("RCPT TO:") {
            if let SinkBehaviour::RejectRcpt(reply) = behaviour {
                send(reply)?;
                continue;
            }
            rcpt_to.push(line[8..].trim().trim_start_matches('<').trim_end_matches('>').to_string());
            send("250 2.1.5 OK")?;
        } else if upper == "DATA" {
            if rcpt_to.is_empty() {
                send("554 5.5.1 no valid recipients")?;
                continue;
            }
            send("354 End data with <CR><LF>.<CR><LF>")?;
            let mut data = String::new();
            loop {
                let mut l = String::new();
                if reader.read_line(&mut l)? == 0 {
                    return Ok(());
                }
                if l == ".\r\n" {
                    break;
                }
                let l = l.strip_prefix('.').unwrap_or(&l);
                data.push_str(l);
            }
            let data = data.strip_suffix("\r\n").unwrap_or(&data).to_string();
            mails.lock().unwrap().push(ReceivedMail {
                mail_from: std::mem::take(&mut mail_from),
                rcpt_to: std::mem::take(&mut rcpt_to),
                auth: auth.clone(),
                data,
            });
            send("250 2.0.0 queued")?;
        } else if upper == "RSET" {
            mail_from.clear();
            rcpt_to.clear();
            send("250 OK")?;
        } else if upper == "QUIT" {
            send("221 2.0.0 bye")?;
            return Ok(());
        } else {
            send("502 5.5.2 command not recognised")?;
        }
    }
}
