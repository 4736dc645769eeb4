//! GSM 7-bit default alphabet and its extension table (TS 23.038 6.2.1), and septet packing
//! (TS 23.038 6.1.2.1.1) including the fill bits that align text after a user data header.
//!
//! Characters of the extension table (€ [ ] { } \ ^ ~ | and form feed) are sent as two septets,
//! ESC (0x1B) followed by the code, which is why they count twice towards the 160/153 limits.

/// The escape septet that switches one character to the extension table.
pub const ESCAPE: u8 = 0x1B;

/// The default alphabet, indexed by septet value. 0x1B is the escape and never encoded as a
/// character; on decode a lone escape is shown as a space, as the standard asks.
const DEFAULT: [char; 128] = [
    '@', '£', '$', '¥', 'è', 'é', 'ù', 'ì', 'ò', 'Ç', '\n', 'Ø', 'ø', '\r', 'Å', 'å', //
    'Δ', '_', 'Φ', 'Γ', 'Λ', 'Ω', 'Π', 'Ψ', 'Σ', 'Θ', 'Ξ', ' ', 'Æ', 'æ', 'ß', 'É', //
    ' ', '!', '"', '#', '¤', '%', '&', '\'', '(', ')', '*', '+', ',', '-', '.', '/', //
    '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', ':', ';', '<', '=', '>', '?', //
    '¡', 'A', 'B', 'C', 'D', 'E', 'F', 'G', 'H', 'I', 'J', 'K', 'L', 'M', 'N', 'O', //
    'P', 'Q', 'R', 'S', 'T', 'U', 'V', 'W', 'X', 'Y', 'Z', 'Ä', 'Ö', 'Ñ', 'Ü', '§', //
    '¿', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o', //
    'p', 'q', 'r', 's', 't', 'u', 'v', 'w', 'x', 'y', 'z', 'ä', 'ö', 'ñ', 'ü', 'à', //
];

/// The extension table: (septet after ESC, character).
const EXTENSION: [(u8, char); 10] = [
    (0x0A, '\u{0C}'),
    (0x14, '^'),
    (0x28, '{'),
    (0x29, '}'),
    (0x2F, '\\'),
    (0x3C, '['),
    (0x3D, '~'),
    (0x3E, ']'),
    (0x40, '|'),
    (0x65, '€'),
];

/// Septets of one character: one from the default table, or ESC + code from the extension table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Septets {
    One(u8),
    Escaped(u8),
}

impl Septets {
    /// How many septets the character takes in the message.
    pub fn count(self) -> usize {
        match self {
            Septets::One(_) => 1,
            Septets::Escaped(_) => 2,
        }
    }
}

/// The septets for `c`, or None when `c` is not in the default alphabet or its extension.
pub fn encode_char(c: char) -> Option<Septets> {
    if c == ' ' {
        return Some(Septets::One(0x20));
    }
    if let Some(i) = DEFAULT.iter().position(|&d| d == c) {
        // The 0x1B slot holds a space placeholder; spaces were handled above.
        return u8::try_from(i).ok().map(Septets::One);
    }
    EXTENSION
        .iter()
        .find(|&&(_, e)| e == c)
        .map(|&(code, _)| Septets::Escaped(code))
}

/// Septet count of `text`, or None when some character does not fit GSM-7.
pub fn septet_len(text: &str) -> Option<usize> {
    text.chars()
        .map(|c| encode_char(c).map(Septets::count))
        .sum()
}

/// The septet values of `text`, or None when some character does not fit GSM-7.
pub fn to_septets(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len());
    for c in text.chars() {
        match encode_char(c)? {
            Septets::One(s) => out.push(s),
            Septets::Escaped(s) => {
                out.push(ESCAPE);
                out.push(s);
            }
        }
    }
    Some(out)
}

/// Text of septet values. An escape followed by a code the extension table does not define shows
/// the default-table character (TS 23.038 6.2.1.1); a trailing lone escape is a space.
pub fn from_septets(septets: &[u8]) -> String {
    let mut out = String::with_capacity(septets.len());
    let mut iter = septets.iter().map(|s| s & 0x7F);
    while let Some(s) = iter.next() {
        if s == ESCAPE {
            match iter.next() {
                Some(code) => {
                    let ext = EXTENSION.iter().find(|&&(e, _)| e == code).map(|&(_, c)| c);
                    out.push(ext.unwrap_or_else(|| default_char(code)));
                }
                None => out.push(' '),
            }
        } else {
            out.push(default_char(s));
        }
    }
    out
}

fn default_char(septet: u8) -> char {
    DEFAULT
        .get(usize::from(septet & 0x7F))
        .copied()
        .unwrap_or(' ')
}

/// Pack septets into octets, least significant bit first, after `fill_bits` zero bits (the fill
/// that aligns the text to a septet boundary after a user data header).
pub fn pack(septets: &[u8], fill_bits: usize) -> Vec<u8> {
    let total_bits = fill_bits + 7 * septets.len();
    let mut out = vec![0u8; total_bits.div_ceil(8)];
    for (i, &s) in septets.iter().enumerate() {
        let bit = fill_bits + 7 * i;
        let value = u16::from(s & 0x7F) << (bit % 8);
        let [lo, hi] = value.to_le_bytes();
        if let Some(o) = out.get_mut(bit / 8) {
            *o |= lo;
        }
        if hi != 0
            && let Some(o) = out.get_mut(bit / 8 + 1)
        {
            *o |= hi;
        }
    }
    out
}

/// Unpack `count` septets from `octets`, skipping `fill_bits` first. Missing octets read as zero;
/// callers check the length against the UDL before calling.
pub fn unpack(octets: &[u8], fill_bits: usize, count: usize) -> Vec<u8> {
    (0..count)
        .map(|i| {
            let bit = fill_bits + 7 * i;
            let lo = octets.get(bit / 8).copied().unwrap_or(0);
            let hi = octets.get(bit / 8 + 1).copied().unwrap_or(0);
            let word = u16::from_le_bytes([lo, hi]);
            ((word >> (bit % 8)) & 0x7F) as u8
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pdu::hex::{decode_hex, encode_hex};

    #[test]
    fn hellohello_packs_as_in_the_classic_example() {
        let septets = to_septets("hellohello").unwrap();
        assert_eq!(encode_hex(&pack(&septets, 0)), "E8329BFD4697D9EC37");
        let octets = decode_hex("E8329BFD4697D9EC37").unwrap();
        assert_eq!(from_septets(&unpack(&octets, 0, 10)), "hellohello");
    }

    #[test]
    fn eight_septets_fill_seven_octets_exactly() {
        // "12345678": TS 23.038 example of 8 septets in 7 octets.
        let septets = to_septets("12345678").unwrap();
        assert_eq!(encode_hex(&pack(&septets, 0)), "31D98C56B3DD70");
    }

    #[test]
    fn fill_bits_shift_the_text_after_a_header() {
        // After a 6-octet UDH (48 bits) one fill bit makes 49 = 7 septets.
        let septets = to_septets("hi").unwrap();
        let packed = pack(&septets, 1);
        // 'h' = 0x68 shifted left by 1 = 0xD0; 'i' = 0x69 at bit 8 => 0x69.
        assert_eq!(packed, vec![0xD0, 0x69]);
        assert_eq!(unpack(&packed, 1, 2), septets);
        // Six fill bits (after a 7-octet UDH with the 16-bit reference IE: 56 bits + 0 fill is
        // 8 septets, so use a made-up 5 to exercise the spill into the next octet).
        for fill in 0..7 {
            let packed = pack(&septets, fill);
            assert_eq!(unpack(&packed, fill, 2), septets, "fill {fill}");
            assert_eq!(packed.len(), (fill + 14).div_ceil(8));
        }
    }

    #[test]
    fn extension_characters_take_two_septets() {
        assert_eq!(septet_len("€[]{}\\^~|\u{0C}"), Some(20));
        assert_eq!(to_septets("€").unwrap(), vec![0x1B, 0x65]);
        assert_eq!(from_septets(&[0x1B, 0x65, 0x1B, 0x3C]), "€[");
        assert_eq!(septet_len("ç"), None);
        assert_eq!(septet_len("Ç@£"), Some(3));
    }

    #[test]
    fn every_default_character_round_trips() {
        for s in 0u8..128 {
            if s == ESCAPE {
                continue;
            }
            let text = from_septets(&[s]);
            assert_eq!(to_septets(&text).unwrap(), vec![s], "septet {s:#x}");
        }
    }

    #[test]
    fn unknown_escape_codes_fall_back_to_the_default_table_and_lone_escape_is_space() {
        assert_eq!(from_septets(&[0x1B, 0x41]), "A");
        assert_eq!(from_septets(&[0x41, 0x1B]), "A ");
    }
}
