//! Service centre time stamps (TS 23.040 9.2.3.11): semi-octet date and time with a time zone in
//! quarter hours, which may be negative.

/// A local date and time with its offset from UTC in quarter hours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timestamp {
    pub year: u16,
    pub month: u8,
    pub day: u8,
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
    pub offset_quarters: i8,
}

impl Timestamp {
    pub fn to_rfc3339(&self) -> String {
        String::new()
    }
    pub fn from_unix(secs: i64, offset_quarters: i8) -> Timestamp {
        let _ = secs;
        Timestamp {
            year: 1970,
            month: 1,
            day: 1,
            hour: 0,
            minute: 0,
            second: 0,
            offset_quarters,
        }
    }
    pub fn to_unix(&self) -> i64 {
        0
    }
}
