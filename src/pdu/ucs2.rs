//! UCS-2 user data (TS 23.038 6.2.3). Phones actually send UTF-16 big-endian: characters outside
//! the Basic Multilingual Plane (emoji) are surrogate pairs and count as two units.

/// UTF-16 big-endian octets of `text`.
pub fn encode(text: &str) -> Vec<u8> {
    text.encode_utf16().flat_map(u16::to_be_bytes).collect()
}

/// UTF-16 code units of `text` (an emoji counts two).
pub fn unit_len(text: &str) -> usize {
    text.encode_utf16().count()
}

/// Text of UTF-16 big-endian octets. Lossy on purpose: a received message is never refused for
/// its text. A lone surrogate (a sender that split a pair across parts) or an odd trailing octet
/// becomes U+FFFD; the raw octets stay available to the caller for byte-level reassembly.
pub fn decode_lossy(octets: &[u8]) -> String {
    let units = octets.chunks(2).map(|pair| match *pair {
        [hi, lo] => u16::from_be_bytes([hi, lo]),
        _ => 0xFFFD,
    });
    char::decode_utf16(units).map(|r| r.unwrap_or(char::REPLACEMENT_CHARACTER)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emoji_is_a_surrogate_pair() {
        assert_eq!(encode("😀"), vec![0xD8, 0x3D, 0xDE, 0x00]);
        assert_eq!(unit_len("a😀"), 3);
        assert_eq!(decode_lossy(&[0xD8, 0x3D, 0xDE, 0x00, 0x00, 0x41]), "😀A");
    }

    #[test]
    fn broken_utf16_decodes_with_replacement_characters() {
        assert_eq!(decode_lossy(&[0xD8, 0x3D, 0x00, 0x41]), "\u{FFFD}A");
        assert_eq!(decode_lossy(&[0x00, 0x41, 0x00]), "A\u{FFFD}");
        assert_eq!(decode_lossy(&[0xDE, 0x00]), "\u{FFFD}");
    }
}
