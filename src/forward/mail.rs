//! The PBX fallback e-mail as text: headers and a UTF-8 body in base64, so the SMS arrives
//! intact whatever it contains (emoji, lines starting with a dot, CR/LF). Pure functions; the
//! sending is in [`super::smtp`].

use base64::Engine as _;

use super::InboundSms;
use super::pbx::message_id;
use crate::config::PbxForwarder;

/// The fallback e-mail as sent after DATA (CRLF line ends, not yet dot-stuffed).
pub fn compose_fallback_email(
    from: &str,
    to: &str,
    msg: &InboundSms,
    forwarder: &PbxForwarder,
    attempts: u32,
    now_unix: i64,
) -> Result<String, BadAddress> {
    check_address("from", from)?;
    check_address("to", to)?;
    let id = message_id(&msg.uid);
    let domain = from.rsplit_once('@').map(|(_, d)| d).unwrap_or("localhost");
    let times = if attempts == 1 { "once".to_string() } else { format!("{attempts} times") };
    let subject = format!("SMS from {} (webhook failed {times})", msg.from);
    let mut text = String::new();
    text.push_str(&format!(
        "smshub could not deliver this SMS to the webhook of forwarder \"{}\" ({}): it failed {times}, \
         so here it is by e-mail.\r\n\r\n",
        forwarder.name, forwarder.url
    ));
    text.push_str(&format!("From:        {}\r\n", msg.from));
    text.push_str(&format!("To:          {}\r\n", forwarder.sms_number));
    text.push_str(&format!("Received:    {} ({})\r\n", rfc5322_date(msg.received_at_unix), msg.received_at_unix));
    text.push_str(&format!("Message ID:  {id}\r\n"));
    text.push_str(&format!("Service ID:  {}\r\n", forwarder.service_id));
    text.push_str(&format!("SMS parts:   {}\r\n\r\n", msg.segments));
    text.push_str("--- message text ---\r\n");
    text.push_str(&msg.body);
    text.push_str("\r\n--- end of message text ---\r\n");

    let mut mail = String::new();
    mail.push_str(&format!("Date: {}\r\n", rfc5322_date(now_unix)));
    mail.push_str(&format!("From: smshub <{from}>\r\n"));
    mail.push_str(&format!("To: <{to}>\r\n"));
    mail.push_str(&format!("Subject: {}\r\n", encode_header_text(&subject)));
    // Stable per SMS: if the e-mail is ever sent twice, mail software can tell it is one message.
    mail.push_str(&format!("Message-ID: <pbx-fallback.{id}@{domain}>\r\n"));
    mail.push_str("MIME-Version: 1.0\r\n");
    mail.push_str("Content-Type: text/plain; charset=utf-8\r\n");
    mail.push_str("Content-Transfer-Encoding: base64\r\n");
    mail.push_str(&format!("X-Smshub-Forwarder: {}\r\n", forwarder.name));
    mail.push_str("\r\n");
    let encoded = base64::engine::general_purpose::STANDARD.encode(text.as_bytes());
    for chunk in encoded.as_bytes().chunks(76) {
        mail.push_str(std::str::from_utf8(chunk).unwrap_or(""));
        mail.push_str("\r\n");
    }
    Ok(mail)
}

/// An address we will put in an envelope and a header: no spaces, brackets or line breaks
/// (which could inject SMTP commands or headers), one `@`.
pub(crate) fn check_address(what: &'static str, addr: &str) -> Result<(), BadAddress> {
    let bad = addr.is_empty()
        || addr.chars().any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | ',' | '"'))
        || addr.matches('@').count() != 1
        || addr.starts_with('@')
        || addr.ends_with('@');
    if bad { Err(BadAddress { what, addr: addr.to_string() }) } else { Ok(()) }
}

/// An address that [`check_address`] refused; the SMTP client reports it as
/// `SmtpError::Refused` before any I/O.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} address {addr:?} is not a plain e-mail address")]
pub struct BadAddress {
    pub what: &'static str,
    pub addr: String,
}

/// Header text: as is when it is printable ASCII, else RFC 2047 encoded words (UTF-8, base64),
/// each under the 75-character limit (and the line under 78) and never splitting a character.
fn encode_header_text(text: &str) -> String {
    let clean: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if clean.is_ascii() {
        return clean;
    }
    let mut words = Vec::new();
    let mut chunk = String::new();
    for c in clean.chars() {
        if chunk.len() + c.len_utf8() > 39 {
            words.push(std::mem::take(&mut chunk));
        }
        chunk.push(c);
    }
    if !chunk.is_empty() {
        words.push(chunk);
    }
    words
        .iter()
        .map(|w| format!("=?UTF-8?B?{}?=", base64::engine::general_purpose::STANDARD.encode(w.as_bytes())))
        .collect::<Vec<_>>()
        .join("\r\n ")
}

/// `Sun, 15 Dec 2019 06:34:14 +0000` for Unix seconds `t` (UTC).
pub fn rfc5322_date(t: i64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let weekday = DAYS.get(usize::try_from(days.rem_euclid(7)).unwrap_or(0)).unwrap_or(&"Thu");
    let month = MONTHS.get(usize::try_from(m - 1).unwrap_or(0)).unwrap_or(&"Jan");
    format!("{weekday}, {d:02} {month} {y} {:02}:{:02}:{:02} +0000", secs / 3600, secs / 60 % 60, secs % 60)
}

/// Year, month (1–12), day of the proleptic Gregorian calendar for days since 1970-01-01,
/// counted in 400-year eras of 146 097 days whose years start on 1 March (so the leap day
/// is the last day of a year).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468; // days from 0000-03-01
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153; // month counted from March
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forward::test_support::{AWKWARD, forwarder, sms};
    #[test]
    fn dates_are_rfc5322_in_utc() {
        let cases: &[(i64, &str)] = &[
            (0, "Thu, 01 Jan 1970 00:00:00 +0000"),
            (1_576_391_654, "Sun, 15 Dec 2019 06:34:14 +0000"),
            (951_782_400, "Tue, 29 Feb 2000 00:00:00 +0000"),
            (4_107_542_399, "Sun, 28 Feb 2100 23:59:59 +0000"),
            (4_107_542_400, "Mon, 01 Mar 2100 00:00:00 +0000"),
            (-1, "Wed, 31 Dec 1969 23:59:59 +0000"),
        ];
        for (t, expected) in cases {
            assert_eq!(rfc5322_date(*t), *expected, "{t}");
        }
    }

    #[test]
    fn the_email_carries_the_sms_intact_with_mime_headers() {
        let mail = compose_fallback_email(
            "smshub@example-clinic.au",
            "frontdesk@example-clinic.au",
            &sms(AWKWARD),
            &forwarder(),
            10,
            1_700_000_000,
        )
        .unwrap();
        let (head, body) = mail.split_once("\r\n\r\n").unwrap();
        for needle in [
            "Date: Tue, 14 Nov 2023 22:13:20 +0000",
            "From: smshub <smshub@example-clinic.au>",
            "To: <frontdesk@example-clinic.au>",
            "Subject: SMS from +61400111222 (webhook failed 10 times)",
            &format!("Message-ID: <pbx-fallback.{}@example-clinic.au>", message_id("in-9")),
            "MIME-Version: 1.0",
            "Content-Type: text/plain; charset=utf-8",
            "Content-Transfer-Encoding: base64",
        ] {
            assert!(head.lines().any(|l| l == needle), "missing {needle:?} in\n{head}");
        }
        assert!(body.lines().all(|l| l.len() <= 76 && l.is_ascii()), "{body}");
        let text =
            String::from_utf8(base64::engine::general_purpose::STANDARD.decode(body.replace("\r\n", "")).unwrap())
                .unwrap();
        assert!(text.contains(&format!("--- message text ---\r\n{AWKWARD}\r\n--- end of message text ---")), "{text}");
        assert!(text.contains("failed 10 times"), "{text}");
        assert!(text.contains("Received:    Sun, 15 Dec 2019 06:34:14 +0000 (1576391654)"), "{text}");
        assert!(text.contains("From:        +61400111222"), "{text}");
        assert!(text.contains(&message_id("in-9")), "{text}");
    }

    #[test]
    fn non_ascii_senders_get_an_encoded_subject_and_no_header_injection() {
        let mut m = sms("x");
        m.from = "Eläinklinikka\r\nBcc: evil@example.com".into();
        let mail = compose_fallback_email("a@b.fi", "c@d.fi", &m, &forwarder(), 1, 0).unwrap();
        let head = mail.split_once("\r\n\r\n").unwrap().0;
        assert!(!head.lines().any(|l| l.starts_with("Bcc")), "{head}");
        let subject: Vec<&str> = head
            .lines()
            .skip_while(|l| !l.starts_with("Subject:"))
            .take_while(|l| l.starts_with("Subject:") || l.starts_with(' '))
            .collect();
        let decoded: String = subject
            .iter()
            .flat_map(|l| l.split_whitespace())
            .filter_map(|w| w.strip_prefix("=?UTF-8?B?").and_then(|w| w.strip_suffix("?=")))
            .map(|w| String::from_utf8(base64::engine::general_purpose::STANDARD.decode(w).unwrap()).unwrap())
            .collect();
        assert_eq!(decoded, "SMS from Eläinklinikka  Bcc: evil@example.com (webhook failed once)");
        assert!(subject.iter().all(|l| l.len() <= 78), "{subject:?}");
    }

    #[test]
    fn bad_addresses_are_refused_before_any_io() {
        for addr in ["", "no-at-sign", "a@b@c", "x@y\r\nRCPT TO:<z@w>", "<a@b.fi>", "a b@c.fi"] {
            let e = compose_fallback_email("ok@x.fi", addr, &sms("x"), &forwarder(), 1, 0).unwrap_err();
            assert_eq!(e, BadAddress { what: "to", addr: addr.to_string() });
        }
    }
}
