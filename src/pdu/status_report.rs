//! SMS-STATUS-REPORT (TS 23.040 9.2.2.3): the delivery report for a message we sent, matched to
//! the sent part by TP-MR.

use super::address::{Address, encode_originator, encode_smsc, read_tp_address};
use super::deliver::SIMULATED_SMSC;
use super::hex::{Reader, encode_hex};
use super::timestamp::{read_timestamp, write_timestamp};
use super::{PduError, Timestamp};

/// A status report. `status` is the raw TP-ST: 0x00..=0x1F delivered, 0x20..=0x3F still trying,
/// 0x40..=0x7F permanent failure (TS 23.040 9.2.3.15).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusReport {
    pub message_ref: u8,
    pub recipient: Address,
    pub scts: Timestamp,
    pub discharge_time: Timestamp,
    pub status: u8,
}

/// TP-MTI 10 with TP-MMS set (no more messages).
const FIRST_OCTET: u8 = 0x06;

/// Build a status report as the network would send it, with an SMSC field.
pub fn encode_status_report(
    message_ref: u8,
    recipient: &str,
    scts: &Timestamp,
    discharge: &Timestamp,
    status: u8,
) -> Result<String, PduError> {
    let mut pdu = encode_smsc(SIMULATED_SMSC)?;
    pdu.push(FIRST_OCTET);
    pdu.push(message_ref);
    pdu.extend_from_slice(&encode_originator(recipient)?);
    write_timestamp(scts, &mut pdu)?;
    write_timestamp(discharge, &mut pdu)?;
    pdu.push(status);
    Ok(encode_hex(&pdu))
}

/// Decode the TPDU of an SMS-STATUS-REPORT; `r` is just past the first octet. The optional
/// parameters after TP-ST (TP-PI, PID, DCS, UD) are not needed for matching and are ignored.
pub(crate) fn read_status_report(r: &mut Reader<'_>) -> Result<StatusReport, PduError> {
    let message_ref = r.u8("TP-MR")?;
    let recipient = read_tp_address(r, "TP-RA")?;
    let scts = read_timestamp(r, "TP-SCTS")?;
    let discharge_time = read_timestamp(r, "TP-DT")?;
    let status = r.u8("TP-ST")?;
    let _optional = r.rest();
    Ok(StatusReport { message_ref, recipient, scts, discharge_time, status })
}
