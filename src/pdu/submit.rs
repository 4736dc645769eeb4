//! SMS-SUBMIT (TS 23.040 9.2.2.2): what we hand to the modem with AT+CMGS.

use super::{Address, ConcatInfo, Encoding, PduError};

/// A submitted message as decoded (e.g. read back from the modem's outbox).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submit {
    pub message_ref: u8,
    pub recipient: Address,
    pub encoding: Encoding,
    pub text: String,
    pub concat: Option<ConcatInfo>,
    pub status_report_requested: bool,
    pub validity_minutes: Option<u32>,
}

/// Options for [`encode_submit`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubmitOptions {
    /// Set TP-SRR: ask the network for a status report.
    pub request_status_report: bool,
    /// Relative validity period (TP-VPF = 10); rounded up to what the format can express.
    pub validity_minutes: Option<u32>,
    /// The 8-bit reference of the concatenation IE for multipart messages.
    pub concat_reference: u8,
}

/// One part ready for AT+CMGS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubmitPart {
    /// The whole PDU in hex, starting with "00" (empty SMSC field: use the modem's SMSC).
    pub hex: String,
    /// Octets after the SMSC field: the `<length>` of AT+CMGS.
    pub tpdu_len: usize,
}

/// Encode a text to `to` as one or more SMS-SUBMIT PDUs.
pub fn encode_submit(
    to: &str,
    text: &str,
    opts: &SubmitOptions,
) -> Result<Vec<SubmitPart>, PduError> {
    let _ = (to, text, opts);
    Err(PduError::NotImplemented {
        what: "encode_submit",
    })
}
