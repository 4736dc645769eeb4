//! Errors of the PDU codec. Every decode error names the octet offset in the full input
//! (SMSC field included when present), so a bad PDU from the field can be diagnosed by hand.

use thiserror::Error;

/// What went wrong while encoding or decoding a PDU.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PduError {
    #[error("PDU hex has odd length {len}; every octet needs two hex digits")]
    OddLength { len: usize },
    #[error("bad hex digit {ch:?} at octet {offset}")]
    BadHex { offset: usize, ch: char },
    #[error("PDU is empty")]
    Empty,
    #[error("PDU truncated at octet {offset}: expected {needed} more octet(s) for {what}")]
    Truncated { offset: usize, needed: usize, what: &'static str },
    #[error("bad address length {len} at octet {offset}: {reason}")]
    BadAddressLength { offset: usize, len: usize, reason: &'static str },
    #[error("bad semi-octet 0x{nibble:X} at octet {offset} in {what}")]
    BadSemiOctet { offset: usize, nibble: u8, what: &'static str },
    #[error("unknown or reserved message type indicator (TP-MTI {mti}) at octet {offset}")]
    UnknownMti { offset: usize, mti: u8 },
    #[error("user data length {udl} at octet {offset} needs {needed} octets but only {available} remain")]
    UdlTooLong { offset: usize, udl: usize, needed: usize, available: usize },
    #[error("user data header length {udhl} at octet {offset} runs past the end of the user data")]
    UdhlPastEnd { offset: usize, udhl: usize },
    #[error("malformed information element 0x{iei:02X} at octet {offset}: {reason}")]
    BadInformationElement { offset: usize, iei: u8, reason: &'static str },
    #[error("bad timestamp at octet {offset}: {reason}")]
    BadTimestamp { offset: usize, reason: &'static str },
    #[error("unsupported data coding scheme 0x{dcs:02X} at octet {offset}")]
    UnsupportedDcs { offset: usize, dcs: u8 },
    #[error("invalid UCS-2 text at octet {offset}: {reason}")]
    BadUcs2 { offset: usize, reason: &'static str },
    #[error("trailing data after the PDU at octet {offset}")]
    TrailingData { offset: usize },
    #[error("invalid phone number {number:?}: {reason}")]
    InvalidNumber { number: String, reason: &'static str },
    #[error("text needs {parts} parts; at most 255 fit in a concatenated SMS")]
    TooManyParts { parts: usize },
    #[error("character {ch:?} is not in the GSM 7-bit alphabet")]
    NotGsm7 { ch: char },
    #[error("user data of {octets} octets does not fit one SMS (at most 140)")]
    PartTooLong { octets: usize },
    #[error("alphanumeric address {text:?} is longer than 11 GSM-7 characters or has characters outside GSM-7")]
    BadAlphanumeric { text: String },
    #[error("validity period of {minutes} minutes is outside 5 minutes .. 63 weeks")]
    BadValidity { minutes: u32 },
}
