//! The JSON shape of `smshub pdu decode|encode`. Other tools read these keys: keep them.

use serde_json::{Value, json};

use super::{DecodedPdu, Message, PduError, SubmitOptions, decode, encode_submit};

/// Decode and render as the CLI's JSON object: `type`, `smsc`, `number`, `text`, `encoding`,
/// `timestamp` (RFC 3339, null where the PDU has none), `concat`; status reports add
/// `message_ref`, `status` and `discharge_time`; submits add `message_ref`,
/// `status_report_requested` and `validity_minutes`.
pub fn decode_json(hex: &str, with_smsc: bool) -> Result<Value, PduError> {
    Ok(to_json(&decode(hex, with_smsc)?))
}

/// The CLI's JSON object for a decoded PDU.
pub fn to_json(pdu: &DecodedPdu) -> Value {
    match &pdu.message {
        Message::Deliver(d) => json!({
            "type": "deliver",
            "smsc": pdu.smsc,
            "number": d.sender.to_string(),
            "text": d.text,
            "encoding": d.encoding,
            "timestamp": d.timestamp.to_rfc3339(),
            "concat": d.concat,
        }),
        Message::Submit(s) => json!({
            "type": "submit",
            "smsc": pdu.smsc,
            "number": s.recipient.to_string(),
            "text": s.text,
            "encoding": s.encoding,
            "timestamp": null,
            "concat": s.concat,
            "message_ref": s.message_ref,
            "status_report_requested": s.status_report_requested,
            "validity_minutes": s.validity_minutes,
        }),
        Message::StatusReport(sr) => json!({
            "type": "status_report",
            "smsc": pdu.smsc,
            "number": sr.recipient.to_string(),
            "text": null,
            "encoding": null,
            "timestamp": sr.scts.to_rfc3339(),
            "concat": null,
            "message_ref": sr.message_ref,
            "status": sr.status,
            "discharge_time": sr.discharge_time.to_rfc3339(),
        }),
    }
}

/// Encode and render as the CLI's JSON array `[{"pdu": HEX, "length": N}]`, N being the TPDU
/// octet count for AT+CMGS.
pub fn encode_json(to: &str, text: &str, request_report: bool) -> Result<Value, PduError> {
    let opts = SubmitOptions { request_status_report: request_report, ..SubmitOptions::default() };
    let parts = encode_submit(to, text, &opts)?;
    Ok(Value::Array(parts.into_iter().map(|p| json!({"pdu": p.hex, "length": p.tpdu_len})).collect()))
}
