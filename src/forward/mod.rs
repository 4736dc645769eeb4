//! Forwarders: each received SMS is handed to the clinic's software in a shape it already
//! understands, as if a known service had received it.
//!
//! - [`twilio`]: Twilio's inbound-SMS webhook (form fields + `X-Twilio-Signature`); the TwiML
//!   answer ([`twiml`]) may ask for replies, which the caller queues as outbound SMS.
//! - [`pbx`]: URL Networks' "receive SMS via webhook" form; only HTTP 200 counts, and after the
//!   last failed attempt the message goes out by e-mail ([`mail`] writes it, [`smtp`] sends it).
//! - [`http_client`]: the one HTTP client both use, with a timeout on every call and a bound on
//!   the size of the answer.
//!
//! This module does no bookkeeping: one call is one attempt, answered with a
//! [`DeliveryOutcome`]. The inbound pipeline stores the outcome and decides when to try again
//! (with [`backoff`]), so a crash between attempts loses nothing.

pub mod http_client;
pub mod mail;
pub mod pbx;
pub mod smtp;
pub mod twilio;
pub mod twiml;

pub use http_client::{ForwardClient, HttpReply, PostError};
pub use pbx::deliver_pbx;
pub use twilio::deliver_twilio;
pub use twiml::TwimlReply;

/// One received SMS as the forwarders see it (joined from its parts, decoded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundSms {
    /// The inbox's stable id for the message. Webhook ids (Twilio `MessageSid`, PBX
    /// `message_id`) are derived from it, so every retry carries the same id and the receiver
    /// can recognise a duplicate.
    pub uid: String,
    /// The sender: E.164 (`+358…`), a national number, or an alphanumeric name.
    pub from: String,
    /// The number the SMS was sent to: the receiving modem's `[[modem]] number`, when the
    /// config names it. It is the forward's Twilio `To` / PBX `sms_number`; without it the
    /// forwarder's configured number is used (the default, and right for a single-SIM box).
    pub to: Option<String>,
    /// The text, decoded.
    pub body: String,
    /// How many SMS parts it arrived in.
    pub segments: u32,
    /// When the (first part of the) message was received, Unix seconds.
    pub received_at_unix: i64,
}

/// What one delivery attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// The receiver accepted it. `replies` are the TwiML `<Message>`s to send back (Twilio
    /// only; always empty for PBX).
    Delivered { status: u16, replies: Vec<TwimlReply> },
    /// It did not work. `status` is the HTTP status when there was an answer. `error` says
    /// what happened, for the delivery log. `retryable` is false only when trying again
    /// cannot help (e.g. the configured URL is not a URL).
    Failed { status: Option<u16>, error: String, retryable: bool },
}

impl DeliveryOutcome {
    pub fn is_delivered(&self) -> bool {
        matches!(self, DeliveryOutcome::Delivered { .. })
    }
}

pub use crate::retry::backoff;

/// Lowercase hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// SHA-256 of `data`.
pub(crate) fn sha256(data: &[u8]) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// Fixtures shared by the forwarders' unit tests.
#[cfg(test)]
pub(crate) mod test_support {
    use std::time::Duration;

    use super::InboundSms;
    use crate::config::PbxForwarder;

    pub fn forwarder() -> PbxForwarder {
        PbxForwarder {
            name: "pbx1".into(),
            url: "https://clinic.example/sms/in".into(),
            service_id: "12345".into(),
            sms_number: "+61412000000".into(),
            fallback_email: Some("frontdesk@example-clinic.au".into()),
            max_attempts: 10,
            retry_initial: Duration::from_secs(1),
            retry_max: Duration::from_secs(10),
        }
    }

    pub fn sms(body: &str) -> InboundSms {
        InboundSms {
            uid: "in-9".into(),
            from: "+61400111222".into(),
            to: None,
            body: body.into(),
            segments: 3,
            received_at_unix: 1_576_391_654,
        }
    }

    /// A body that tries every way of being mangled: non-ASCII, emoji, a lone dot line, a line
    /// starting with a dot, CR/LF, trailing spaces.
    pub const AWKWARD: &str = "Hei! Koira 🐶 voi huonosti.\n.\n..and a dot line\r\nÅÄÖ åäö €  \nend.";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_and_hex_match_a_known_digest() {
        assert_eq!(hex(&sha256(b"abc")), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
