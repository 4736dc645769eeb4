//! SMS-DELIVER (TS 23.040 9.2.2.1): what the network delivers to us. The encoder exists for the
//! modem simulator and tests: it builds what a network would deliver.

use super::address::{Address, encode_originator, encode_smsc, read_tp_address};
use super::concat::{ConcatInfo, LIMITS_8BIT_REF, LIMITS_16BIT_REF, split_with};
use super::hex::{Reader, encode_hex};
use super::timestamp::{read_timestamp, write_timestamp};
use super::user_data::{AppPorts, concat_header, dcs_of_encoding, encoding_of_dcs, read_user_data, write_user_data};
use super::{Encoding, PduError, Timestamp};

/// A received message (one part of it when concatenated).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deliver {
    pub sender: Address,
    pub timestamp: Timestamp,
    pub encoding: Encoding,
    pub text: String,
    /// User data after the UDH: septet values for GSM-7, octets for UCS-2 and 8-bit. Lets the
    /// caller reassemble at the octet level when a sender split a surrogate pair across parts.
    pub data: Vec<u8>,
    pub concat: Option<ConcatInfo>,
    /// Set for a port-addressed message (for an application, not a person: WAP push, MMS
    /// notification).
    pub ports: Option<AppPorts>,
}

/// The SMSC our simulated network delivers from.
pub const SIMULATED_SMSC: &str = "+358405202000";

const UDHI: u8 = 0x40;
/// TP-MTI 00 (deliver) with TP-MMS set: no more messages waiting.
const FIRST_OCTET: u8 = 0x04;

/// Build what a network would deliver: one hex PDU per part, each starting with an SMSC field.
/// `sender`: "+digits" international, "digits" national, anything else alphanumeric. Multipart
/// messages use the 16-bit reference IE when `concat_reference` > 255, else the 8-bit one.
pub fn encode_deliver(
    sender: &str,
    text: &str,
    timestamp: &Timestamp,
    concat_reference: u16,
) -> Result<Vec<String>, PduError> {
    let smsc = encode_smsc(SIMULATED_SMSC)?;
    let originator = encode_originator(sender)?;
    let sixteen_bit = concat_reference > 0xFF;
    let limits = if sixteen_bit { LIMITS_16BIT_REF } else { LIMITS_8BIT_REF };
    let (encoding, parts) = split_with(text, limits)?;
    let total = u8::try_from(parts.len()).map_err(|_| PduError::TooManyParts { parts: parts.len() })?;
    let mut out = Vec::with_capacity(parts.len());
    for (seq, part) in (1u8..).zip(&parts) {
        let header = if total > 1 { concat_header(concat_reference, sixteen_bit, total, seq) } else { Vec::new() };
        let mut pdu = smsc.clone();
        pdu.push(if header.is_empty() { FIRST_OCTET } else { FIRST_OCTET | UDHI });
        pdu.extend_from_slice(&originator);
        pdu.push(0x00); // TP-PID
        pdu.push(dcs_of_encoding(encoding));
        write_timestamp(timestamp, &mut pdu)?;
        write_user_data(part, encoding, &header, &mut pdu)?;
        out.push(encode_hex(&pdu));
    }
    Ok(out)
}

/// Decode the TPDU of an SMS-DELIVER; `r` is just past the first octet.
pub(crate) fn read_deliver(first: u8, r: &mut Reader<'_>) -> Result<Deliver, PduError> {
    let sender = read_tp_address(r, "TP-OA")?;
    let _pid = r.u8("TP-PID")?;
    let encoding = encoding_of_dcs(r.u8("TP-DCS")?);
    let timestamp = read_timestamp(r, "TP-SCTS")?;
    let ud = read_user_data(r, encoding, first & UDHI != 0)?;
    Ok(Deliver { sender, timestamp, encoding, text: ud.text, data: ud.data, concat: ud.concat, ports: ud.ports })
}
