//! TP addresses (TS 23.040 9.1.2.5) and the SMSC address (TS 24.011 8.2.5.1).
//!
//! Both are semi-octet digit strings behind a type-of-address octet; they differ in the length
//! octet: a TP address counts useful semi-octets, the SMSC field counts octets (TOA included).
//! Alphanumeric senders (TON 5) carry GSM-7 text packed into the digit field.

use std::fmt;

use super::PduError;
use super::gsm7;
use super::hex::Reader;

/// Type of number of an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressKind {
    /// TON 1: Display puts a `+` in front.
    International,
    /// TON 2.
    National,
    /// TON 5: text such as a company name.
    Alphanumeric,
    /// Any other type-of-address octet, kept raw (TON/NPI); e.g. 0x81 "unknown", used for short
    /// codes and numbers dialled as written.
    Other(u8),
}

impl AddressKind {
    fn from_toa(toa: u8) -> AddressKind {
        match (toa >> 4) & 0x07 {
            1 => AddressKind::International,
            2 => AddressKind::National,
            5 => AddressKind::Alphanumeric,
            _ => AddressKind::Other(toa),
        }
    }
}

/// A phone number, short code or alphanumeric sender. `value` holds digits without `+`, or the
/// text for alphanumeric addresses.
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

/// Longest TP address: 20 semi-octets (TS 23.040 9.1.2.5: at most 12 octets with length and TOA).
const MAX_TP_SEMI_OCTETS: usize = 20;
/// Longest SMSC field: TOA + 10 octets of digits (TS 24.011 8.2.5.1).
const MAX_SMSC_OCTETS: usize = 11;
/// Alphanumeric addresses hold at most 11 GSM-7 characters (20 semi-octets).
const MAX_ALPHANUMERIC_SEPTETS: usize = 11;

/// Read a TP address (TP-OA, TP-DA, TP-RA).
pub(crate) fn read_tp_address(r: &mut Reader<'_>, what: &'static str) -> Result<Address, PduError> {
    let len_offset = r.offset();
    let semi_octets = usize::from(r.u8(what)?);
    if semi_octets > MAX_TP_SEMI_OCTETS {
        return Err(PduError::BadAddressLength {
            offset: len_offset,
            len: semi_octets,
            reason: "a TP address holds at most 20 semi-octets",
        });
    }
    let toa = r.u8(what)?;
    let digits_offset = r.offset();
    let octets = r.take(semi_octets.div_ceil(2), what)?;
    let kind = AddressKind::from_toa(toa);
    let value = if kind == AddressKind::Alphanumeric {
        let septets = semi_octets * 4 / 7;
        gsm7::from_septets(&gsm7::unpack(octets, 0, septets))
    } else {
        read_digits(octets, semi_octets, digits_offset, what)?
    };
    Ok(Address { kind, value })
}

/// Read the SMSC field; `None` when its length is zero (the modem's default SMSC).
pub(crate) fn read_smsc(r: &mut Reader<'_>) -> Result<Option<Address>, PduError> {
    const WHAT: &str = "SMSC address";
    let len_offset = r.offset();
    let len = usize::from(r.u8(WHAT)?);
    if len == 0 {
        return Ok(None);
    }
    if len > MAX_SMSC_OCTETS {
        return Err(PduError::BadAddressLength {
            offset: len_offset,
            len,
            reason: "the SMSC field holds at most 11 octets",
        });
    }
    let toa = r.u8(WHAT)?;
    let digits_offset = r.offset();
    let octets = r.take(len - 1, WHAT)?;
    // The length counts octets, so an odd digit count shows as a trailing F filler.
    let mut semi_octets = octets.len() * 2;
    if octets.last().is_some_and(|b| b >> 4 == 0x0F) {
        semi_octets -= 1;
    }
    let value = read_digits(octets, semi_octets, digits_offset, WHAT)?;
    Ok(Some(Address {
        kind: AddressKind::from_toa(toa),
        value,
    }))
}

/// Swapped semi-octet digits (TS 23.040 9.1.2.3); 0xA..0xE are `* # a b c`, 0xF only as the
/// final filler.
fn read_digits(
    octets: &[u8],
    semi_octets: usize,
    offset: usize,
    what: &'static str,
) -> Result<String, PduError> {
    let mut out = String::with_capacity(semi_octets);
    for i in 0..semi_octets {
        let octet = octets.get(i / 2).copied().unwrap_or(0xFF);
        let nibble = if i % 2 == 0 { octet & 0x0F } else { octet >> 4 };
        let ch = match nibble {
            0..=9 => char::from(b'0' + nibble),
            0x0A => '*',
            0x0B => '#',
            0x0C => 'a',
            0x0D => 'b',
            0x0E => 'c',
            // Some encoders count the filler in the length; as the last semi-octet it is harmless.
            0x0F if i + 1 == semi_octets => break,
            _ => {
                return Err(PduError::BadSemiOctet {
                    offset: offset + i / 2,
                    nibble,
                    what,
                });
            }
        };
        out.push(ch);
    }
    Ok(out)
}

/// Semi-octets of a digit string, swapped, with an F filler when the count is odd.
fn write_digits(digits: &str, out: &mut Vec<u8>) {
    let bytes = digits.as_bytes();
    for pair in bytes.chunks(2) {
        let lo = pair.first().map_or(0x0F, |d| d - b'0');
        let hi = pair.get(1).map_or(0x0F, |d| d - b'0');
        out.push(hi << 4 | lo);
    }
}

/// How an address given as text is sent: international, plain digits, or alphanumeric text.
enum ParsedNumber<'a> {
    International(&'a str),
    Digits(&'a str),
    Alphanumeric(&'a str),
}

fn parse_number(number: &str, allow_alphanumeric: bool) -> Result<ParsedNumber<'_>, PduError> {
    let invalid = |reason| PduError::InvalidNumber {
        number: number.to_string(),
        reason,
    };
    let (international, digits) = match number.strip_prefix('+') {
        Some(rest) => (true, rest),
        None => (false, number),
    };
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        if digits.len() > MAX_TP_SEMI_OCTETS {
            return Err(invalid("more than 20 digits"));
        }
        return Ok(if international {
            ParsedNumber::International(digits)
        } else {
            ParsedNumber::Digits(digits)
        });
    }
    if allow_alphanumeric && !number.is_empty() {
        return Ok(ParsedNumber::Alphanumeric(number));
    }
    Err(invalid(
        "expected +digits or digits (at most 20, no spaces)",
    ))
}

/// Encode a TP-DA for SMS-SUBMIT: "+digits" as international (TOA 0x91); plain digits with TON
/// "unknown" (0x81), the way phones send a number as dialled, which also suits short codes.
pub(crate) fn encode_destination(number: &str) -> Result<Vec<u8>, PduError> {
    match parse_number(number, false)? {
        ParsedNumber::International(d) => Ok(tp_address(d, 0x91)),
        ParsedNumber::Digits(d) => Ok(tp_address(d, 0x81)),
        ParsedNumber::Alphanumeric(_) => Err(PduError::InvalidNumber {
            number: number.to_string(),
            reason: "a recipient must be digits",
        }),
    }
}

/// Encode a TP-OA or TP-RA as a network would: "+digits" international (0x91), digits national
/// (0xA1), anything else alphanumeric (0xD0, GSM-7 packed, at most 11 characters).
pub(crate) fn encode_originator(number: &str) -> Result<Vec<u8>, PduError> {
    match parse_number(number, true)? {
        ParsedNumber::International(d) => Ok(tp_address(d, 0x91)),
        ParsedNumber::Digits(d) => Ok(tp_address(d, 0xA1)),
        ParsedNumber::Alphanumeric(text) => {
            let bad = || PduError::BadAlphanumeric {
                text: text.to_string(),
            };
            let septets = gsm7::to_septets(text).ok_or_else(bad)?;
            if septets.len() > MAX_ALPHANUMERIC_SEPTETS {
                return Err(bad());
            }
            let packed = gsm7::pack(&septets, 0);
            // Useful semi-octets: the bits used, rounded up to whole semi-octets.
            let semi_octets = (septets.len() * 7).div_ceil(4);
            let mut out = Vec::with_capacity(2 + packed.len());
            out.push(u8::try_from(semi_octets).map_err(|_| bad())?);
            out.push(0xD0);
            out.extend_from_slice(&packed);
            Ok(out)
        }
    }
}

fn tp_address(digits: &str, toa: u8) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + digits.len().div_ceil(2));
    // parse_number caps the digits at 20, so the length fits an octet.
    out.push(u8::try_from(digits.len()).unwrap_or(0));
    out.push(toa);
    write_digits(digits, &mut out);
    out
}

/// Encode an SMSC field for a "+digits" or "digits" number.
pub(crate) fn encode_smsc(number: &str) -> Result<Vec<u8>, PduError> {
    let (toa, digits) = match parse_number(number, false)? {
        ParsedNumber::International(d) => (0x91, d),
        ParsedNumber::Digits(d) => (0x81, d),
        ParsedNumber::Alphanumeric(_) => {
            return Err(PduError::InvalidNumber {
                number: number.to_string(),
                reason: "an SMSC must be digits",
            });
        }
    };
    let mut body = vec![toa];
    write_digits(digits, &mut body);
    if body.len() > MAX_SMSC_OCTETS {
        return Err(PduError::InvalidNumber {
            number: number.to_string(),
            reason: "an SMSC number has at most 20 digits",
        });
    }
    let mut out = Vec::with_capacity(1 + body.len());
    out.push(u8::try_from(body.len()).unwrap_or(0));
    out.extend_from_slice(&body);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pdu::hex::{decode_hex, encode_hex};

    fn read(hex: &str) -> Result<Address, PduError> {
        let bytes = decode_hex(hex).unwrap();
        let mut r = Reader::new(&bytes);
        read_tp_address(&mut r, "address")
    }

    #[test]
    fn tp_addresses_decode_by_type_of_number() {
        let cases = [
            (
                "0B917238880900F1",
                AddressKind::International,
                "27838890001",
                "+27838890001",
            ),
            (
                "0AA14050020200",
                AddressKind::National,
                "0405202000",
                "0405202000",
            ),
            ("05812143F5", AddressKind::Other(0x81), "12345", "12345"),
            ("04B12143", AddressKind::Other(0xB1), "1234", "1234"),
            (
                "0A81213A4B5C6D",
                AddressKind::Other(0x81),
                "12*3#4a5b6",
                "12*3#4a5b6",
            ),
        ];
        for (hex, kind, value, shown) in cases {
            let a = read(hex).unwrap();
            assert_eq!((a.kind, a.value.as_str()), (kind, value), "{hex}");
            assert_eq!(a.to_string(), shown);
        }
    }

    #[test]
    fn alphanumeric_sender_is_gsm7_packed() {
        // "Design@Home" as commonly shown in TS 23.040 tutorials: 11 chars, 20 semi-octets.
        let encoded = encode_originator("Design@Home").unwrap();
        assert_eq!(encode_hex(&encoded), "14D0C4F23C7D760390EF7619");
        let a = read("14D0C4F23C7D760390EF7619").unwrap();
        assert_eq!(a.kind, AddressKind::Alphanumeric);
        assert_eq!(a.to_string(), "Design@Home");
    }

    #[test]
    fn malformed_addresses_name_the_octet() {
        assert_eq!(
            read("15D0C4F23C7D760390EF761900").unwrap_err(),
            PduError::BadAddressLength {
                offset: 0,
                len: 21,
                reason: "a TP address holds at most 20 semi-octets"
            }
        );
        assert_eq!(
            read("0B917238880900").unwrap_err(),
            PduError::Truncated {
                offset: 2,
                needed: 1,
                what: "address"
            }
        );
        assert_eq!(
            read("0491F234").unwrap_err(),
            PduError::BadSemiOctet {
                offset: 2,
                nibble: 0xF,
                what: "address"
            }
        );
        assert_eq!(
            read_tp_address(&mut Reader::new(&[]), "address").unwrap_err(),
            PduError::Truncated {
                offset: 0,
                needed: 1,
                what: "address"
            }
        );
    }

    #[test]
    fn smsc_field_counts_octets_and_may_be_empty() {
        let bytes = decode_hex("07917283010010F5").unwrap();
        let smsc = read_smsc(&mut Reader::new(&bytes)).unwrap().unwrap();
        assert_eq!(smsc.to_string(), "+27381000015");
        assert_eq!(read_smsc(&mut Reader::new(&[0])).unwrap(), None);
        assert_eq!(
            read_smsc(&mut Reader::new(&[12])).unwrap_err(),
            PduError::BadAddressLength {
                offset: 0,
                len: 12,
                reason: "the SMSC field holds at most 11 octets"
            }
        );
        assert_eq!(
            encode_hex(&encode_smsc("+27381000015").unwrap()),
            "07917283010010F5"
        );
    }

    #[test]
    fn destinations_are_international_or_as_dialled() {
        assert_eq!(
            encode_hex(&encode_destination("+358401234567").unwrap()),
            "0C91534810325476"
        );
        assert_eq!(
            encode_hex(&encode_destination("+46708251358").unwrap()),
            "0B916407281553F8"
        );
        assert_eq!(
            encode_hex(&encode_destination("12345").unwrap()),
            "05812143F5"
        );
        for bad in ["", "+", "+35840 123", "abc", "123456789012345678901", "++1"] {
            assert!(encode_destination(bad).is_err(), "{bad:?}");
        }
        assert!(encode_originator("TooLongSender").is_err());
        assert!(
            encode_originator("Shop€").is_ok(),
            "extension characters count two"
        );
        assert!(encode_originator("Émile😀").is_err());
    }
}
