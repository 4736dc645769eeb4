//! TP addresses (TS 23.040 9.1.2.5) and the SMSC address (TS 24.011 8.2.5.1).

use std::fmt;

/// Type of number of an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressKind {
    International,
    National,
    Alphanumeric,
    /// Any other type-of-address octet, kept raw (TON/NPI).
    Other(u8),
}

/// A phone number, short code or alphanumeric sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    pub kind: AddressKind,
    pub value: String,
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            AddressKind::International => write!(f, "+{}", self.value),
            _ => f.write_str(&self.value),
        }
    }
}
