//! SMS-STATUS-REPORT (TS 23.040 9.2.2.3): the delivery report for a message we sent.

use super::{Address, PduError, Timestamp};

/// A status report; `status` is the raw TP-ST (0x00..0x1F = delivered).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusReport {
    pub message_ref: u8,
    pub recipient: Address,
    pub scts: Timestamp,
    pub discharge_time: Timestamp,
    pub status: u8,
}

/// Build a status report as the network would send it, with an SMSC field.
pub fn encode_status_report(
    message_ref: u8,
    recipient: &str,
    scts: &Timestamp,
    discharge: &Timestamp,
    status: u8,
) -> Result<String, PduError> {
    let _ = (message_ref, recipient, scts, discharge, status);
    Err(PduError::NotImplemented {
        what: "encode_status_report",
    })
}
