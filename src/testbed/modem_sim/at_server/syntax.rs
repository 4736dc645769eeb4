//! Pure helpers for AT command syntax: splitting command lines and parameters, the stats key of
//! a command, PDU lengths, and the texts of verbose error codes.

use crate::pdu;

/// The key under which `stats` counts a command: the name plus `=`/`?`, e.g. "AT+CPIN=".
pub fn stats_key(cmd: &str) -> String {
    let upper = cmd.to_ascii_uppercase();
    match upper.find(['=', '?', ';']) {
        Some(i) => {
            let end = if upper.get(i..).is_some_and(|r| r.starts_with("=?")) {
                i + 2
            } else if upper.get(i..).is_some_and(|r| r.starts_with(';')) {
                i
            } else {
                i + 1
            };
            upper.get(..end).unwrap_or(&upper).to_string()
        }
        None => upper,
    }
}

/// Splits what follows "AT" at top-level semicolons (not inside quotes).
pub fn split_commands(body: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in body.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                cur.push(c);
            }
            ';' if !quoted => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    out.push(cur);
    out.into_iter().map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect()
}

/// Splits a parameter list at commas outside quotes; quotes are kept (see [`unquote`]).
pub fn split_args(args: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in args.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                cur.push(c);
            }
            ',' if !quoted => out.push(std::mem::take(&mut cur).trim().to_string()),
            _ => cur.push(c),
        }
    }
    out.push(cur.trim().to_string());
    out
}

pub fn unquote(s: &str) -> String {
    let t = s.trim();
    t.strip_prefix('"').and_then(|t| t.strip_suffix('"')).unwrap_or(t).to_string()
}

pub fn num_arg(a: &[String], i: usize) -> Option<u64> {
    a.get(i).and_then(|s| unquote(s).parse().ok())
}

/// Octets after the SMSC field of a hex PDU, as AT+CMGS/+CMGR/+CMGL count them.
pub fn tpdu_len(hex: &str) -> Option<usize> {
    if hex.is_empty() || !hex.len().is_multiple_of(2) || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let smsc_len = usize::from_str_radix(hex.get(0..2)?, 16).ok()?;
    (hex.len() / 2).checked_sub(1 + smsc_len).filter(|n| *n > 0)
}

/// Text-mode view of a stored PDU: the header fields after `<stat>` and the text line.
pub fn text_mode_view(hex: &str) -> (String, String) {
    match pdu::decode(hex, true).map(|d| d.message) {
        Ok(pdu::Message::Deliver(d)) => {
            let t = &d.timestamp;
            let sign = if t.offset_quarters < 0 { '-' } else { '+' };
            let head = format!(
                "\"{}\",,\"{:02}/{:02}/{:02},{:02}:{:02}:{:02}{sign}{:02}\"",
                d.sender,
                t.year % 100,
                t.month,
                t.day,
                t.hour,
                t.minute,
                t.second,
                t.offset_quarters.unsigned_abs()
            );
            (head, d.text)
        }
        Ok(pdu::Message::StatusReport(r)) => {
            (format!("{},\"{}\"", r.message_ref, r.recipient), format!("status {}", r.status))
        }
        Ok(pdu::Message::Submit(s)) => (format!("\"{}\"", s.recipient), s.text),
        Err(_) => ("\"\",,\"\"".into(), String::new()),
    }
}

pub fn cme_text(code: u16) -> &'static str {
    match code {
        3 => "operation not allowed",
        4 => "operation not supported",
        10 => "SIM not inserted",
        11 => "SIM PIN required",
        12 => "SIM PUK required",
        13 => "SIM failure",
        14 => "SIM busy",
        16 => "incorrect password",
        20 => "memory full",
        21 => "invalid index",
        30 => "no network service",
        _ => "unknown",
    }
}

pub fn cms_text(code: u16) -> Option<&'static str> {
    Some(match code {
        302 => "operation not allowed",
        304 => "invalid PDU mode parameter",
        305 => "invalid text mode parameter",
        311 => "SIM PIN required",
        313 => "SIM failure",
        316 => "SIM PUK required",
        321 => "invalid memory index",
        322 => "memory full",
        331 => "no network service",
        340 => "no +CNMA acknowledgement expected",
        500 => "unknown error",
        _ => return None,
    })
}
