//! Concatenated SMS (TS 23.040 9.2.3.24.1/.8): how a text is split into parts, as phones do it.
//!
//! One part holds 160 GSM-7 septets or 70 UCS-2 units. A longer text gets a 6-octet UDH (8-bit
//! reference IE) in every part, leaving 153 septets or 67 units; with the 7-octet 16-bit IE it is
//! 152 / 66. Splits fall between characters, so an escape sequence (2 septets) or a surrogate pair
//! (2 units) is never cut in half.

use super::{Encoding, PduError, gsm7};

/// Concatenation information from a UDH: reference, total parts, this part's number (1-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ConcatInfo {
    #[serde(rename = "ref")]
    pub reference: u16,
    pub total: u8,
    pub seq: u8,
}

/// Most parts a concatenated message can have: the total is one octet.
pub const MAX_PARTS: usize = 255;

/// Capacity of one part, in septets (GSM-7) or UTF-16 units (UCS-2).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub gsm7_single: usize,
    pub gsm7_part: usize,
    pub ucs2_single: usize,
    pub ucs2_part: usize,
}

/// Parts with the 8-bit reference IE (what phones send, and what we send).
pub(crate) const LIMITS_8BIT_REF: Limits = Limits {
    gsm7_single: 160,
    gsm7_part: 153,
    ucs2_single: 70,
    ucs2_part: 67,
};
/// Parts with the 16-bit reference IE (one octet more header).
pub(crate) const LIMITS_16BIT_REF: Limits = Limits {
    gsm7_single: 160,
    gsm7_part: 152,
    ucs2_single: 70,
    ucs2_part: 66,
};

/// How a text is segmented (1 part, or n parts with the 8-bit reference UDH): its encoding (GSM-7
/// when every character fits, else UCS-2) and the text of each part.
pub fn split_text(text: &str) -> Result<(Encoding, Vec<String>), PduError> {
    split_with(text, LIMITS_8BIT_REF)
}

pub(crate) fn split_with(text: &str, limits: Limits) -> Result<(Encoding, Vec<String>), PduError> {
    let (encoding, single, part) = if gsm7::septet_len(text).is_some() {
        (Encoding::Gsm7, limits.gsm7_single, limits.gsm7_part)
    } else {
        (Encoding::Ucs2, limits.ucs2_single, limits.ucs2_part)
    };
    // Cost of each character in its encoding's units: escapes and surrogate pairs count two.
    let cost = |c: char| match encoding {
        Encoding::Gsm7 => gsm7::encode_char(c).map_or(1, gsm7::Septets::count),
        _ => c.len_utf16(),
    };
    let total: usize = text.chars().map(cost).sum();
    if total <= single {
        return Ok((encoding, vec![text.to_string()]));
    }
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut used = 0;
    for c in text.chars() {
        let n = cost(c);
        if used + n > part {
            parts.push(std::mem::take(&mut current));
            used = 0;
        }
        current.push(c);
        used += n;
    }
    parts.push(current);
    if parts.len() > MAX_PARTS {
        return Err(PduError::TooManyParts { parts: parts.len() });
    }
    Ok((encoding, parts))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pdu::ucs2;

    fn counts(text: &str) -> (Encoding, Vec<usize>) {
        let (enc, parts) = split_text(text).unwrap();
        let sizes = parts
            .iter()
            .map(|p| match enc {
                Encoding::Gsm7 => gsm7::septet_len(p).unwrap(),
                _ => ucs2::unit_len(p),
            })
            .collect();
        (enc, sizes)
    }

    #[test]
    fn parts_are_counted_as_phones_count_them() {
        let cases: Vec<(String, Encoding, Vec<usize>)> = vec![
            (String::new(), Encoding::Gsm7, vec![0]),
            ("a".repeat(160), Encoding::Gsm7, vec![160]),
            ("a".repeat(161), Encoding::Gsm7, vec![153, 8]),
            ("a".repeat(306), Encoding::Gsm7, vec![153, 153]),
            ("a".repeat(307), Encoding::Gsm7, vec![153, 153, 1]),
            ("€".repeat(80), Encoding::Gsm7, vec![160]),
            ("€".repeat(81), Encoding::Gsm7, vec![152, 10]),
            // 152 plain septets then an escape: the € moves to the next part whole.
            (
                format!("{}€{}", "a".repeat(152), "b".repeat(7)),
                Encoding::Gsm7,
                vec![152, 9],
            ),
            ("ç".repeat(70), Encoding::Ucs2, vec![70]),
            ("ç".repeat(71), Encoding::Ucs2, vec![67, 4]),
            ("😀".repeat(35), Encoding::Ucs2, vec![70]),
            ("😀".repeat(36), Encoding::Ucs2, vec![66, 6]),
            // 66 units then an emoji: the pair is not split.
            (
                format!("{}😀{}", "ç".repeat(66), "ç".repeat(3)),
                Encoding::Ucs2,
                vec![66, 5],
            ),
        ];
        for (text, enc, sizes) in cases {
            assert_eq!(
                counts(&text),
                (enc, sizes),
                "text of {} chars",
                text.chars().count()
            );
        }
    }

    #[test]
    fn one_non_gsm_character_makes_the_whole_text_ucs2() {
        assert_eq!(split_text("hello ç").unwrap().0, Encoding::Ucs2);
        assert_eq!(split_text("hello Ç").unwrap().0, Encoding::Gsm7);
    }

    #[test]
    fn more_than_255_parts_is_an_error() {
        assert_eq!(split_text(&"a".repeat(153 * 255)).unwrap().1.len(), 255);
        assert_eq!(
            split_text(&"a".repeat(153 * 255 + 1)).unwrap_err(),
            PduError::TooManyParts { parts: 256 }
        );
        assert_eq!(
            split_text(&"ç".repeat(67 * 300)).unwrap_err(),
            PduError::TooManyParts { parts: 300 }
        );
    }

    #[test]
    fn sixteen_bit_reference_leaves_one_octet_less() {
        let (_, parts) = split_with(&"a".repeat(161), LIMITS_16BIT_REF).unwrap();
        assert_eq!(
            parts.iter().map(String::len).collect::<Vec<_>>(),
            vec![152, 9]
        );
    }
}
