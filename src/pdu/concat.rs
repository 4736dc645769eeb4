//! Concatenated SMS: splitting a text into parts and the UDH information elements 0x00 / 0x08.

use super::{Encoding, PduError};

/// Concatenation information from a UDH: reference, total parts, this part's number (1-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ConcatInfo {
    #[serde(rename = "ref")]
    pub reference: u16,
    pub total: u8,
    pub seq: u8,
}

/// How a text is segmented: its encoding and the text of each part.
pub fn split_text(text: &str) -> Result<(Encoding, Vec<String>), PduError> {
    let _ = text;
    Err(PduError::NotImplemented { what: "split_text" })
}
