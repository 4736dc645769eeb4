//! Service centre time stamps (TS 23.040 9.2.3.11): seven semi-octet swapped BCD octets, local
//! date and time plus the offset from UTC in quarter hours. Bit 3 of the last octet is the sign
//! of the offset, so zones west of Greenwich (and India's +05:30, Nepal's +05:45) survive.

use super::PduError;
use super::hex::Reader;

/// A local date and time with its offset from UTC in quarter hours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timestamp {
    pub year: u16,
    pub month: u8,
    pub day: u8,
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
    /// Offset from UTC in quarter hours: +8 is UTC+02:00, -20 is UTC-05:00.
    pub offset_quarters: i8,
}

/// Largest offset the two BCD digits can hold.
const MAX_OFFSET_QUARTERS: i8 = 79;

impl Timestamp {
    /// RFC 3339 with the sender's offset, e.g. `1999-03-29T15:16:59+02:00`.
    pub fn to_rfc3339(&self) -> String {
        let minutes = i32::from(self.offset_quarters) * 15;
        let sign = if minutes < 0 { '-' } else { '+' };
        let minutes = minutes.abs();
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}{}{:02}:{:02}",
            self.year,
            self.month,
            self.day,
            self.hour,
            self.minute,
            self.second,
            sign,
            minutes / 60,
            minutes % 60
        )
    }

    /// The local time at `offset_quarters` of the instant `secs` after the Unix epoch.
    pub fn from_unix(secs: i64, offset_quarters: i8) -> Timestamp {
        let local = secs.saturating_add(i64::from(offset_quarters) * 900);
        let days = local.div_euclid(86_400);
        let of_day = local.rem_euclid(86_400);
        let (year, month, day) = civil_from_days(days);
        Timestamp {
            year: u16::try_from(year.clamp(0, 9999)).unwrap_or(0),
            month,
            day,
            hour: (of_day / 3600) as u8,
            minute: (of_day / 60 % 60) as u8,
            second: (of_day % 60) as u8,
            offset_quarters,
        }
    }

    /// Seconds since the Unix epoch of this local time.
    pub fn to_unix(&self) -> i64 {
        let days = days_from_civil(i64::from(self.year), i64::from(self.month), i64::from(self.day));
        days * 86_400 + i64::from(self.hour) * 3600 + i64::from(self.minute) * 60 + i64::from(self.second)
            - i64::from(self.offset_quarters) * 900
    }

    /// Whether the fields form a real date and time (what decode accepts and encode requires).
    fn check(&self) -> Result<(), &'static str> {
        if !(1..=12).contains(&self.month) {
            return Err("month out of range");
        }
        if self.day < 1 || self.day > days_in_month(self.year, self.month) {
            return Err("day out of range");
        }
        if self.hour > 23 || self.minute > 59 || self.second > 59 {
            return Err("time of day out of range");
        }
        if !(-MAX_OFFSET_QUARTERS..=MAX_OFFSET_QUARTERS).contains(&self.offset_quarters) {
            return Err("time zone out of range");
        }
        Ok(())
    }
}

fn is_leap(year: u16) -> bool {
    (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400)
}

fn days_in_month(year: u16, month: u8) -> u8 {
    match month {
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(year) => 29,
        2 => 28,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
pub(crate) fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Inverse of [`days_from_civil`].
pub(crate) fn civil_from_days(z: i64) -> (i64, u8, u8) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Read a 7-octet time stamp (TP-SCTS, TP-DT).
pub(crate) fn read_timestamp(r: &mut Reader<'_>, what: &'static str) -> Result<Timestamp, PduError> {
    let start = r.offset();
    let octets = r.take(7, what)?;
    let bcd = |i: usize| -> Result<u8, PduError> {
        let octet = octets.get(i).copied().unwrap_or(0);
        let (tens, units) = (octet & 0x0F, octet >> 4);
        for nibble in [tens, units] {
            if nibble > 9 {
                return Err(PduError::BadSemiOctet { offset: start + i, nibble, what });
            }
        }
        Ok(tens * 10 + units)
    };
    let yy = bcd(0)?;
    let zone = octets.get(6).copied().unwrap_or(0);
    let (tens, units) = (zone & 0x07, zone >> 4);
    if units > 9 {
        return Err(PduError::BadSemiOctet { offset: start + 6, nibble: units, what });
    }
    // tens <= 7 and units <= 9, so the value is at most 79 and fits an i8.
    let quarters = (tens * 10 + units) as i8;
    let ts = Timestamp {
        // Two-digit years: 90..99 are the 1990s (the classic test PDUs), the rest this century.
        year: if yy >= 90 { 1900 } else { 2000 } + u16::from(yy),
        month: bcd(1)?,
        day: bcd(2)?,
        hour: bcd(3)?,
        minute: bcd(4)?,
        second: bcd(5)?,
        offset_quarters: if zone & 0x08 != 0 { -quarters } else { quarters },
    };
    ts.check().map_err(|reason| PduError::BadTimestamp { offset: start, reason })?;
    Ok(ts)
}

/// Write a 7-octet time stamp; the year is sent modulo 100.
pub(crate) fn write_timestamp(ts: &Timestamp, out: &mut Vec<u8>) -> Result<(), PduError> {
    ts.check().map_err(|reason| PduError::BadTimestamp { offset: out.len(), reason })?;
    let swap = |v: u8| (v % 10) << 4 | (v / 10 % 10);
    out.push(swap((ts.year % 100) as u8));
    out.extend([ts.month, ts.day, ts.hour, ts.minute, ts.second].map(swap));
    let mut zone = swap(ts.offset_quarters.unsigned_abs());
    if ts.offset_quarters < 0 {
        zone |= 0x08;
    }
    out.push(zone);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pdu::hex::decode_hex;

    fn read(hex: &str) -> Result<Timestamp, PduError> {
        let bytes = decode_hex(hex).unwrap();
        read_timestamp(&mut Reader::new(&bytes), "SCTS")
    }

    #[test]
    fn time_zones_in_quarter_hours_with_sign() {
        let cases = [
            // The classic example: 29 March 1999 15:16:59, GMT+2.
            ("99309251619580", "1999-03-29T15:16:59+02:00"),
            ("21302190000000", "2012-03-12T09:00:00+00:00"),
            // 0x29: low nibble 9 = sign bit + tens 1, units 2 -> -12 quarters.
            ("24011270453529", "2042-10-21T07:54:53-03:00"),
            ("52117140000069", "2025-11-17T04:00:00-04:00"),
            ("42017140000022", "2024-10-17T04:00:00+05:30"),
            ("42017140000032", "2024-10-17T04:00:00+05:45"),
        ];
        for (hex, want) in cases {
            assert_eq!(read(hex).unwrap().to_rfc3339(), want, "{hex}");
        }
    }

    #[test]
    fn writing_then_reading_gives_the_same_stamp() {
        for q in [-48i8, -20, -1, 0, 1, 22, 23, 56, 79] {
            let ts = Timestamp::from_unix(1_700_000_000, q);
            let mut out = Vec::new();
            write_timestamp(&ts, &mut out).unwrap();
            let back = read_timestamp(&mut Reader::new(&out), "t").unwrap();
            assert_eq!(back, ts);
            assert_eq!(back.to_unix(), 1_700_000_000);
        }
    }

    #[test]
    fn unix_conversion_matches_known_dates() {
        let ts = Timestamp::from_unix(0, 0);
        assert_eq!(ts.to_rfc3339(), "1970-01-01T00:00:00+00:00");
        let ts = Timestamp::from_unix(951_782_400, 0); // leap day 2000
        assert_eq!(ts.to_rfc3339(), "2000-02-29T00:00:00+00:00");
        let ts = Timestamp::from_unix(1_700_000_000, -20);
        assert_eq!(ts.to_rfc3339(), "2023-11-14T17:13:20-05:00");
        assert_eq!(ts.to_unix(), 1_700_000_000);
    }

    #[test]
    fn impossible_dates_and_bad_digits_are_rejected() {
        assert_eq!(
            read("99309251619A80").unwrap_err(),
            PduError::BadSemiOctet { offset: 5, nibble: 0xA, what: "SCTS" }
        );
        assert_eq!(
            read("99039251619580").unwrap_err(),
            PduError::BadTimestamp { offset: 0, reason: "month out of range" }
        );
        assert_eq!(
            read("99209251619580").unwrap_err(),
            PduError::BadTimestamp { offset: 0, reason: "day out of range" }
        );
        assert_eq!(
            read("993092516195F0").unwrap_err(),
            PduError::BadSemiOctet { offset: 6, nibble: 0xF, what: "SCTS" }
        );
        assert_eq!(read("993092516195").unwrap_err(), PduError::Truncated { offset: 0, needed: 1, what: "SCTS" });
    }
}
