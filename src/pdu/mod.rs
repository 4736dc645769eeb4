//! PDU codec for SMS (3GPP TS 23.040 / TS 23.038): encode SMS-SUBMIT, decode SMS-DELIVER,
//! SMS-SUBMIT and SMS-STATUS-REPORT, with or without the leading SMSC address field.
//!
//! Pure code, no I/O: the modem driver hands hex strings in and out. Submodules:
//! - [`gsm7`] / [`ucs2`]: text alphabets and septet packing (with UDH fill bits),
//! - `address`, `timestamp`: the TP fields shared by all message types,
//! - `submit`, `deliver`, `status_report`: one module per TPDU type,
//! - `concat`: how a text is split into parts; `user_data`: DCS, UDH and its IEs,
//! - `json`: the shape printed by `smshub pdu decode|encode` (other tools read these keys).

mod address;
mod concat;
mod deliver;
mod error;
pub mod gsm7;
mod hex;
mod json;
mod status_report;
mod submit;
mod timestamp;
pub(crate) use timestamp::{civil_from_days, days_from_civil};
pub mod ucs2;
mod user_data;

#[cfg(test)]
mod tests;

pub use address::{Address, AddressKind};
pub use concat::{ConcatInfo, split_text};
pub use deliver::{Deliver, SIMULATED_SMSC, encode_deliver};
pub use error::PduError;
pub use json::{decode_json, encode_json, to_json};
pub use status_report::{StatusReport, encode_status_report};
pub use submit::{Submit, SubmitOptions, SubmitPart, encode_submit};
pub use timestamp::Timestamp;
pub use user_data::AppPorts;

/// Character set of the user data, from the TP-DCS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Encoding {
    #[serde(rename = "gsm7")]
    Gsm7,
    #[serde(rename = "ucs2")]
    Ucs2,
    #[serde(rename = "8bit")]
    EightBit,
}

impl Encoding {
    /// The name used in JSON and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Gsm7 => "gsm7",
            Encoding::Ucs2 => "ucs2",
            Encoding::EightBit => "8bit",
        }
    }
}

/// A decoded PDU: the SMSC address (when the input had the field and it was not empty) and the TPDU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedPdu {
    pub smsc: Option<String>,
    pub message: Message,
}

/// The TPDU types we understand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Deliver(Deliver),
    Submit(Submit),
    StatusReport(StatusReport),
}

/// Decode a PDU given as hex. `with_smsc`: the input starts with the SMSC address field, as modems
/// print it in +CMGR/+CMGL/+CMT. Errors name the octet offset in the full input.
///
/// TP-MTI is read as the modem shows stored messages: 00 DELIVER (received), 01 SUBMIT (sent),
/// 10 STATUS-REPORT; 11 is reserved and rejected.
pub fn decode(hex: &str, with_smsc: bool) -> Result<DecodedPdu, PduError> {
    let bytes = hex::decode_hex(hex)?;
    let mut r = hex::Reader::new(&bytes);
    let smsc = if with_smsc { address::read_smsc(&mut r)?.map(|a| a.to_string()) } else { None };
    let first_offset = r.offset();
    let first = r.u8("first octet (TP-MTI)")?;
    let message = match first & 0x03 {
        0x00 => Message::Deliver(deliver::read_deliver(first, &mut r)?),
        0x01 => Message::Submit(submit::read_submit(first, &mut r)?),
        0x02 => Message::StatusReport(status_report::read_status_report(&mut r)?),
        mti => {
            return Err(PduError::UnknownMti { offset: first_offset, mti });
        }
    };
    Ok(DecodedPdu { smsc, message })
}
