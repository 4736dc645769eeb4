//! SMS-SUBMIT (TS 23.040 9.2.2.2): what we hand to the modem with AT+CMGS, and its decoding
//! (modems list sent and unsent messages from their storage as SUBMIT PDUs).

use super::address::{Address, encode_destination, read_tp_address};
use super::concat::{ConcatInfo, split_text};
use super::hex::{Reader, encode_hex};
use super::user_data::{concat_header, dcs_of_encoding, encoding_of_dcs, read_user_data, write_user_data};
use super::{Encoding, PduError};

/// A submitted message as decoded (e.g. read back from the modem's outbox).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submit {
    pub message_ref: u8,
    pub recipient: Address,
    pub encoding: Encoding,
    pub text: String,
    pub concat: Option<ConcatInfo>,
    pub status_report_requested: bool,
    /// Relative validity period in minutes; None when absent or in the absolute/enhanced format.
    pub validity_minutes: Option<u32>,
}

/// Options for [`encode_submit`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubmitOptions {
    /// Set TP-SRR: ask the network for a status report.
    pub request_status_report: bool,
    /// Relative validity period (TP-VPF = 10), rounded up to the next value the format can
    /// express (5-minute steps up to 12 h, then 30 minutes, days, weeks up to 63 weeks).
    pub validity_minutes: Option<u32>,
    /// The 8-bit reference of the concatenation IE for multipart messages; the caller picks a new
    /// one per message so the recipient does not mix parts of two messages.
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

/// TP-MTI of SMS-SUBMIT.
const MTI_SUBMIT: u8 = 0x01;
const VPF_RELATIVE: u8 = 0x10;
const SRR: u8 = 0x20;
const UDHI: u8 = 0x40;

/// Encode a text to `to` as one or more SMS-SUBMIT PDUs, GSM-7 when every character fits,
/// else UCS-2. TP-MR is 0: the modem assigns the real reference and returns it in +CMGS.
pub fn encode_submit(to: &str, text: &str, opts: &SubmitOptions) -> Result<Vec<SubmitPart>, PduError> {
    let destination = encode_destination(to)?;
    let vp = opts.validity_minutes.map(validity_to_vp).transpose()?;
    let (encoding, parts) = split_text(text)?;
    let total = u8::try_from(parts.len()).map_err(|_| PduError::TooManyParts { parts: parts.len() })?;
    let mut out = Vec::with_capacity(parts.len());
    for (seq, part) in (1u8..).zip(&parts) {
        let header =
            if total > 1 { concat_header(u16::from(opts.concat_reference), false, total, seq) } else { Vec::new() };
        let mut first = MTI_SUBMIT;
        if vp.is_some() {
            first |= VPF_RELATIVE;
        }
        if opts.request_status_report {
            first |= SRR;
        }
        if !header.is_empty() {
            first |= UDHI;
        }
        let mut tpdu = vec![first, 0x00];
        tpdu.extend_from_slice(&destination);
        tpdu.push(0x00); // TP-PID: plain SMS
        tpdu.push(dcs_of_encoding(encoding));
        if let Some(vp) = vp {
            tpdu.push(vp);
        }
        write_user_data(part, encoding, &header, &mut tpdu)?;
        out.push(SubmitPart { hex: format!("00{}", encode_hex(&tpdu)), tpdu_len: tpdu.len() });
    }
    Ok(out)
}

/// Decode the TPDU of an SMS-SUBMIT; `r` is just past the first octet.
pub(crate) fn read_submit(first: u8, r: &mut Reader<'_>) -> Result<Submit, PduError> {
    let message_ref = r.u8("TP-MR")?;
    let recipient = read_tp_address(r, "TP-DA")?;
    let _pid = r.u8("TP-PID")?;
    let encoding = encoding_of_dcs(r.u8("TP-DCS")?);
    let validity_minutes = match first & 0x18 {
        0x00 => None,
        0x10 => Some(vp_to_minutes(r.u8("TP-VP")?)),
        // Enhanced (0x08) and absolute (0x18) formats are 7 octets; we do not interpret them.
        _ => {
            r.take(7, "TP-VP")?;
            None
        }
    };
    let ud = read_user_data(r, encoding, first & UDHI != 0)?;
    Ok(Submit {
        message_ref,
        recipient,
        encoding,
        text: ud.text,
        concat: ud.concat,
        status_report_requested: first & SRR != 0,
        validity_minutes,
    })
}

/// Longest relative validity: 63 weeks.
const MAX_VALIDITY_MINUTES: u32 = 63 * 7 * 24 * 60;

/// Relative TP-VP (TS 23.040 9.2.3.12.1) for at least `minutes`.
fn validity_to_vp(minutes: u32) -> Result<u8, PduError> {
    let vp = match minutes {
        0..=720 => minutes.div_ceil(5).max(1) - 1,
        721..=1440 => 143 + (minutes - 720).div_ceil(30),
        1441..=43_200 => 166 + minutes.div_ceil(1440),
        43_201..=MAX_VALIDITY_MINUTES => 192 + minutes.div_ceil(10_080),
        _ => return Err(PduError::BadValidity { minutes }),
    };
    u8::try_from(vp).map_err(|_| PduError::BadValidity { minutes })
}

/// Minutes of a relative TP-VP.
fn vp_to_minutes(vp: u8) -> u32 {
    let vp = u32::from(vp);
    match vp {
        0..=143 => (vp + 1) * 5,
        144..=167 => 720 + (vp - 143) * 30,
        168..=196 => (vp - 166) * 1440,
        _ => (vp - 192) * 10_080,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validity_rounds_up_to_what_the_format_expresses() {
        let cases = [
            (0, 0x00, 5),
            (5, 0x00, 5),
            (6, 0x01, 10),
            (720, 143, 720),
            (721, 144, 750),
            (1440, 167, 1440),
            (1441, 168, 2880),
            (2880, 168, 2880),
            (4320, 169, 4320),
            (43_200, 196, 43_200),
            (43_201, 197, 50_400),
            (MAX_VALIDITY_MINUTES, 255, MAX_VALIDITY_MINUTES),
        ];
        for (minutes, vp, back) in cases {
            assert_eq!(validity_to_vp(minutes).unwrap(), vp, "{minutes} min");
            assert_eq!(vp_to_minutes(vp), back, "vp {vp}");
            assert!(back >= minutes);
        }
        assert_eq!(
            validity_to_vp(MAX_VALIDITY_MINUTES + 1).unwrap_err(),
            PduError::BadValidity { minutes: MAX_VALIDITY_MINUTES + 1 }
        );
    }
}
