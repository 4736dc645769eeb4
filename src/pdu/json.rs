//! The JSON shape of `smshub pdu decode|encode`. Other tools read these keys: keep them.

use super::PduError;

/// Decode and render as the CLI's JSON object.
pub fn decode_json(hex: &str, with_smsc: bool) -> Result<serde_json::Value, PduError> {
    let _ = (hex, with_smsc);
    Err(PduError::NotImplemented {
        what: "decode_json",
    })
}

/// Encode and render as the CLI's JSON array `[{"pdu": HEX, "length": N}]`.
pub fn encode_json(
    to: &str,
    text: &str,
    request_report: bool,
) -> Result<serde_json::Value, PduError> {
    let _ = (to, text, request_report);
    Err(PduError::NotImplemented {
        what: "encode_json",
    })
}
