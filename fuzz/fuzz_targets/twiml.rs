//! Feeds arbitrary bytes to the TwiML answer parser, with a Content-Type chosen by the first byte
//! (none, XML types, and types that are not XML). It must return an error, never panic, and what
//! it accepts must keep the bounds: at most MAX_MESSAGES replies, each with trimmed non-empty text,
//! and every error offset inside the body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use smshub::forward::twiml::{self, MAX_MESSAGES, TwimlError};

const CONTENT_TYPES: &[Option<&str>] = &[
    None,
    Some("text/xml"),
    Some("application/xml; charset=utf-8"),
    Some("application/twiml+xml"),
    Some("text/html"),
    Some(""),
];

fuzz_target!(|data: &[u8]| {
    let Some((&control, body)) = data.split_first() else { return };
    let content_type = CONTENT_TYPES[usize::from(control) % CONTENT_TYPES.len()];
    match twiml::parse(body, content_type) {
        Ok(t) => {
            assert!(t.replies.len() <= MAX_MESSAGES, "{} replies", t.replies.len());
            for reply in &t.replies {
                assert!(!reply.body.is_empty() && reply.body.trim() == reply.body, "{reply:?}");
                if let Some(to) = &reply.to {
                    assert!(!to.is_empty() && to.trim() == to, "{reply:?}");
                }
            }
        }
        Err(e) => {
            let offset = match &e {
                TwimlError::NotUtf8 { offset }
                | TwimlError::Forbidden { offset, .. }
                | TwimlError::TooManyMessages { offset, .. }
                | TwimlError::TooDeep { offset, .. }
                | TwimlError::Malformed { offset, .. } => *offset,
                TwimlError::TooLarge { .. } | TwimlError::NotXml(_) | TwimlError::TooManyNodes { .. } => 0,
            };
            assert!(offset <= body.len(), "offset {offset} past the end of {} bytes: {e}", body.len());
            let _ = e.to_string();
        }
    }
});
