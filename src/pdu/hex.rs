//! Hex reading and writing, and a bounds-checked octet reader whose errors carry the octet offset
//! in the full input (SMSC field included), so every decode error can point at the bad octet.

use super::PduError;

/// Parse a hex string (either case; surrounding whitespace ignored, as modems end lines with CR LF).
pub fn decode_hex(text: &str) -> Result<Vec<u8>, PduError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(PduError::Empty);
    }
    if !text.len().is_multiple_of(2) {
        // Report a bad digit first if there is one: it is the more useful message.
        if let Some((i, ch)) = text.char_indices().find(|(_, c)| !c.is_ascii_hexdigit()) {
            return Err(PduError::BadHex { offset: i / 2, ch });
        }
        return Err(PduError::OddLength { len: text.len() });
    }
    let mut out = Vec::with_capacity(text.len() / 2);
    let mut hi: Option<u8> = None;
    for (i, ch) in text.char_indices() {
        let nibble = ch
            .to_digit(16)
            .ok_or(PduError::BadHex { offset: i / 2, ch })? as u8;
        match hi.take() {
            None => hi = Some(nibble),
            Some(h) => out.push(h << 4 | nibble),
        }
    }
    Ok(out)
}

/// Uppercase hex, as modems expect after AT+CMGS.
pub fn encode_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0x0F)]));
    }
    s
}

/// Reads octets front to back; never panics, every short read is a [`PduError::Truncated`].
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, pos: 0 }
    }

    /// Offset of the next octet in the full input.
    pub fn offset(&self) -> usize {
        self.pos
    }

    pub fn remaining(&self) -> usize {
        self.bytes.len().saturating_sub(self.pos)
    }

    pub fn u8(&mut self, what: &'static str) -> Result<u8, PduError> {
        let b = *self.bytes.get(self.pos).ok_or(PduError::Truncated {
            offset: self.pos,
            needed: 1,
            what,
        })?;
        self.pos += 1;
        Ok(b)
    }

    pub fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], PduError> {
        let end = self.pos.checked_add(n);
        let slice =
            end.and_then(|end| self.bytes.get(self.pos..end))
                .ok_or(PduError::Truncated {
                    offset: self.pos,
                    needed: n.saturating_sub(self.remaining()),
                    what,
                })?;
        self.pos += n;
        Ok(slice)
    }

    /// Everything left.
    pub fn rest(&mut self) -> &'a [u8] {
        let rest = self.bytes.get(self.pos..).unwrap_or(&[]);
        self.pos = self.bytes.len();
        rest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_in_uppercase() {
        assert_eq!(decode_hex("00ff7A").unwrap(), vec![0x00, 0xFF, 0x7A]);
        assert_eq!(encode_hex(&[0x00, 0xFF, 0x7A]), "00FF7A");
    }

    #[test]
    fn malformed_hex_is_rejected_with_the_octet() {
        let cases = [
            ("", PduError::Empty),
            ("   ", PduError::Empty),
            ("0", PduError::OddLength { len: 1 }),
            ("00112", PduError::OddLength { len: 5 }),
            ("0011G2", PduError::BadHex { offset: 2, ch: 'G' }),
            ("001 22", PduError::BadHex { offset: 1, ch: ' ' }),
            (
                "00é1",
                PduError::BadHex {
                    offset: 1, ch: 'é'
                },
            ),
        ];
        for (input, want) in cases {
            assert_eq!(decode_hex(input).unwrap_err(), want, "input {input:?}");
        }
    }

    #[test]
    fn reader_reports_truncation_at_the_offset() {
        let mut r = Reader::new(&[1, 2, 3]);
        assert_eq!(r.u8("a").unwrap(), 1);
        assert_eq!(
            r.take(5, "b").unwrap_err(),
            PduError::Truncated {
                offset: 1,
                needed: 3,
                what: "b"
            }
        );
        assert_eq!(
            r.take(usize::MAX, "c").unwrap_err(),
            PduError::Truncated {
                offset: 1,
                needed: usize::MAX - 2,
                what: "c"
            }
        );
        assert_eq!(r.take(2, "d").unwrap(), &[2, 3]);
        assert_eq!(
            r.u8("e").unwrap_err(),
            PduError::Truncated {
                offset: 3,
                needed: 1,
                what: "e"
            }
        );
    }
}
