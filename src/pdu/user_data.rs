//! TP-DCS, TP-UDL and TP-UD (TS 23.040 9.2.3.16, 9.2.3.24; TS 23.038 4): the alphabet, the user
//! data header with its information elements, and the text. Shared by SUBMIT and DELIVER.

use super::concat::ConcatInfo;
use super::hex::Reader;
use super::{Encoding, PduError, gsm7, ucs2};

/// IEI of the concatenation IE with an 8-bit reference.
pub(crate) const IEI_CONCAT_8: u8 = 0x00;
/// IEI of the concatenation IE with a 16-bit reference.
pub(crate) const IEI_CONCAT_16: u8 = 0x08;
/// IEI of the application port addressing IE, 8-bit ports (TS 23.040 9.2.3.24.3).
pub(crate) const IEI_PORTS_8: u8 = 0x04;
/// IEI of the application port addressing IE, 16-bit ports (TS 23.040 9.2.3.24.4).
pub(crate) const IEI_PORTS_16: u8 = 0x05;

/// Application ports of a port-addressed message (TS 23.040 9.2.3.24.3/4): the message is for
/// an application (a WAP push, a ring tone, an MMS notification), not text for a person.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppPorts {
    pub destination: u16,
    pub origin: u16,
}

/// TP-UD holds at most 140 octets (160 septets).
pub(crate) const MAX_UD_OCTETS: usize = 140;

/// Alphabet of a TP-DCS octet (TS 23.038 4). Reserved and unknown groups are read as GSM-7 as
/// the standard asks; compressed text cannot be read and is handed out as 8-bit data.
pub(crate) fn encoding_of_dcs(dcs: u8) -> Encoding {
    match dcs >> 4 {
        // General data coding and automatic deletion groups: bit 5 = compressed, bits 3..2 alphabet.
        0x0..=0x7 => {
            if dcs & 0x20 != 0 {
                return Encoding::EightBit;
            }
            match (dcs >> 2) & 0x03 {
                1 => Encoding::EightBit,
                2 => Encoding::Ucs2,
                _ => Encoding::Gsm7,
            }
        }
        // Message waiting indication, UCS-2 variant.
        0xE => Encoding::Ucs2,
        // Data coding / message class: bit 2 selects 8-bit.
        0xF if dcs & 0x04 != 0 => Encoding::EightBit,
        _ => Encoding::Gsm7,
    }
}

/// The DCS we send: class-less default alphabet or UCS-2.
pub(crate) fn dcs_of_encoding(encoding: Encoding) -> u8 {
    match encoding {
        Encoding::Gsm7 => 0x00,
        Encoding::EightBit => 0x04,
        Encoding::Ucs2 => 0x08,
    }
}

/// User data as decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UserData {
    pub text: String,
    /// After the UDH: septet values for GSM-7, octets for UCS-2 and 8-bit.
    pub data: Vec<u8>,
    pub concat: Option<ConcatInfo>,
    pub ports: Option<AppPorts>,
}

/// Read TP-UDL and TP-UD, which must end the PDU.
pub(crate) fn read_user_data(r: &mut Reader<'_>, encoding: Encoding, has_udh: bool) -> Result<UserData, PduError> {
    let udl_offset = r.offset();
    let udl = usize::from(r.u8("user data length")?);
    let octet_len = match encoding {
        Encoding::Gsm7 => (udl * 7).div_ceil(8),
        Encoding::Ucs2 | Encoding::EightBit => udl,
    };
    let ud_offset = r.offset();
    if octet_len > r.remaining() {
        return Err(PduError::UdlTooLong { offset: udl_offset, udl, needed: octet_len, available: r.remaining() });
    }
    let ud = r.take(octet_len, "user data")?;
    if r.remaining() > 0 {
        return Err(PduError::TrailingData { offset: r.offset() });
    }
    let (Header { concat, ports }, header_len) =
        if has_udh { read_header(ud, ud_offset)? } else { (Header::default(), 0) };
    let body = ud.get(header_len..).unwrap_or(&[]);
    let (text, data) = match encoding {
        Encoding::Gsm7 => {
            let header_septets = (header_len * 8).div_ceil(7);
            let fill_bits = header_septets * 7 - header_len * 8;
            let count = udl
                .checked_sub(header_septets)
                .ok_or(PduError::UdhlPastEnd { offset: ud_offset, udhl: header_len.saturating_sub(1) })?;
            let septets = gsm7::unpack(body, fill_bits, count);
            (gsm7::from_septets(&septets), septets)
        }
        Encoding::Ucs2 => (ucs2::decode_lossy(body), body.to_vec()),
        // Latin-1 view: lossless, readable when a sender put ASCII in 8-bit data.
        Encoding::EightBit => (body.iter().map(|&b| char::from(b)).collect(), body.to_vec()),
    };
    Ok(UserData { text, data, concat, ports })
}

/// The information elements of a UDH that smshub acts on.
#[derive(Debug, Default)]
struct Header {
    concat: Option<ConcatInfo>,
    ports: Option<AppPorts>,
}

/// Parse the UDH at the start of `ud`; returns the concatenation and port IEs and the header
/// length (UDHL octet included). Unknown IEs are skipped.
fn read_header(ud: &[u8], ud_offset: usize) -> Result<(Header, usize), PduError> {
    let udhl = usize::from(*ud.first().ok_or(PduError::UdhlPastEnd { offset: ud_offset, udhl: 0 })?);
    let header = ud.get(1..1 + udhl).ok_or(PduError::UdhlPastEnd { offset: ud_offset, udhl })?;
    let mut concat = None;
    let mut ports = None;
    let mut pos = 0;
    while pos < header.len() {
        let offset = ud_offset + 1 + pos;
        let iei = header.get(pos).copied().unwrap_or(0);
        let len = usize::from(*header.get(pos + 1).ok_or(PduError::BadInformationElement {
            offset,
            iei,
            reason: "length octet missing",
        })?);
        let data = header.get(pos + 2..pos + 2 + len).ok_or(PduError::BadInformationElement {
            offset,
            iei,
            reason: "runs past the end of the header",
        })?;
        let info = match (iei, data) {
            (IEI_CONCAT_8, &[reference, total, seq]) => {
                Some(ConcatInfo { reference: u16::from(reference), total, seq })
            }
            (IEI_CONCAT_16, &[hi, lo, total, seq]) => {
                Some(ConcatInfo { reference: u16::from_be_bytes([hi, lo]), total, seq })
            }
            (IEI_PORTS_8, &[destination, origin]) => {
                ports = Some(AppPorts { destination: u16::from(destination), origin: u16::from(origin) });
                None
            }
            (IEI_PORTS_16, &[d_hi, d_lo, o_hi, o_lo]) => {
                ports = Some(AppPorts {
                    destination: u16::from_be_bytes([d_hi, d_lo]),
                    origin: u16::from_be_bytes([o_hi, o_lo]),
                });
                None
            }
            (IEI_PORTS_8, _) => {
                return Err(PduError::BadInformationElement {
                    offset,
                    iei,
                    reason: "application port IE with 8-bit ports must be 2 octets",
                });
            }
            (IEI_PORTS_16, _) => {
                return Err(PduError::BadInformationElement {
                    offset,
                    iei,
                    reason: "application port IE with 16-bit ports must be 4 octets",
                });
            }
            (IEI_CONCAT_8, _) => {
                return Err(PduError::BadInformationElement {
                    offset,
                    iei,
                    reason: "concatenation IE with 8-bit reference must be 3 octets",
                });
            }
            (IEI_CONCAT_16, _) => {
                return Err(PduError::BadInformationElement {
                    offset,
                    iei,
                    reason: "concatenation IE with 16-bit reference must be 4 octets",
                });
            }
            _ => None,
        };
        // TS 23.040 9.2.3.24.1: a zero total or sequence, or a sequence past the total, means the
        // whole IE is ignored.
        if let Some(info) = info.filter(|i| i.total > 0 && i.seq > 0 && i.seq <= i.total) {
            concat = Some(info);
        }
        pos += 2 + len;
    }
    Ok((Header { concat, ports }, 1 + udhl))
}

/// The UDH for one part of a concatenated message (UDHL included).
pub(crate) fn concat_header(reference: u16, sixteen_bit: bool, total: u8, seq: u8) -> Vec<u8> {
    if sixteen_bit {
        let [hi, lo] = reference.to_be_bytes();
        vec![6, IEI_CONCAT_16, 4, hi, lo, total, seq]
    } else {
        vec![5, IEI_CONCAT_8, 3, (reference & 0xFF) as u8, total, seq]
    }
}

/// Write TP-UDL and TP-UD for `text` (which must fit `encoding`) behind an optional header.
pub(crate) fn write_user_data(
    text: &str,
    encoding: Encoding,
    header: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), PduError> {
    let (udl, body) = match encoding {
        Encoding::Gsm7 => {
            let septets = gsm7::to_septets(text).ok_or_else(|| PduError::NotGsm7 {
                ch: text.chars().find(|&c| gsm7::encode_char(c).is_none()).unwrap_or('?'),
            })?;
            let header_septets = (header.len() * 8).div_ceil(7);
            let fill_bits = header_septets * 7 - header.len() * 8;
            (header_septets + septets.len(), gsm7::pack(&septets, fill_bits))
        }
        Encoding::Ucs2 => {
            let body = ucs2::encode(text);
            (header.len() + body.len(), body)
        }
        Encoding::EightBit => {
            let body: Vec<u8> = text.chars().map(|c| u8::try_from(c).unwrap_or(b'?')).collect();
            (header.len() + body.len(), body)
        }
    };
    let octets = header.len() + body.len();
    if octets > MAX_UD_OCTETS {
        return Err(PduError::PartTooLong { octets });
    }
    let udl = u8::try_from(udl).map_err(|_| PduError::PartTooLong { octets })?;
    out.push(udl);
    out.extend_from_slice(header);
    out.extend_from_slice(&body);
    Ok(())
}
