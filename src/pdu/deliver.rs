//! SMS-DELIVER (TS 23.040 9.2.2.1): what the network delivers to us.

use super::{Address, ConcatInfo, Encoding, PduError, Timestamp};

/// A received message (one part of it when concatenated).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deliver {
    pub sender: Address,
    pub timestamp: Timestamp,
    pub encoding: Encoding,
    pub text: String,
    pub data: Vec<u8>,
    pub concat: Option<ConcatInfo>,
}

/// Build what a network would deliver: one hex PDU per part, each with an SMSC field.
pub fn encode_deliver(
    sender: &str,
    text: &str,
    timestamp: &Timestamp,
    concat_reference: u16,
) -> Result<Vec<String>, PduError> {
    let _ = (sender, text, timestamp, concat_reference);
    Err(PduError::NotImplemented {
        what: "encode_deliver",
    })
}
