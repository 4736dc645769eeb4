//! The faults the simulator can inject, set by flags at start and changed at runtime through the
//! control channel (`{"cmd":"set", ...}`).

use std::time::Duration;

use serde::Deserialize;

/// Current fault settings of a running simulator.
#[derive(Debug, Clone, PartialEq)]
pub struct Faults {
    /// Time between Ctrl-Z and the +CMGS answer (the network's round trip).
    pub send_latency: Duration,
    /// The +CMS ERROR code injected sends fail with.
    pub cms_error: u16,
    /// Chance (0..1) that any send fails with `cms_error`.
    pub cms_error_rate: f64,
    /// The Nth send (1-based, counted from start) fails with `cms_error`.
    pub cms_error_on_send: Option<u64>,
    /// Stop answering once this many commands have been seen in total.
    pub hang_at: Option<u64>,
    /// Chance (0..1) that stray bytes precede a response.
    pub garbage_rate: f64,
    /// Put an unsolicited result code into every response and next to every `> ` prompt.
    pub interleave_urcs: bool,
    /// Answer a status-report request in a submitted PDU with a "delivered" report by itself.
    pub auto_report: bool,
    /// Delay before such an automatic report.
    pub report_delay: Duration,
    /// With `AT+CSMS=1`: how long a `+CDS` waits for `AT+CNMA` before the network resends it.
    pub cds_ack_timeout: Duration,
    /// How many times an unacknowledged `+CDS` is resent before the report is stored (`+CDSI`).
    pub cds_resends: u32,
    /// Whether `AT+CSMS=1` (phase 2+, acknowledgements with `+CNMA`) is supported; when not, it
    /// answers `+CMS ERROR: 303` (plain `ERROR` with CMEE=0), as a phase 2 modem does.
    pub csms1: bool,
    /// The next this many acknowledgements are lost on the radio path: `AT+CNMA` answers OK, but
    /// the network never got the RP-ACK and delivers the same report again after `cds_ack_timeout`.
    pub lose_acks: u32,
}

/// `{"cmd":"set", ...}`: every field optional; `null` clears the optional ones.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultUpdate {
    pub send_latency_ms: Option<u64>,
    pub cms_error: Option<u16>,
    pub cms_error_rate: Option<f64>,
    #[serde(default, deserialize_with = "some_or_null")]
    pub cms_error_on_send: Option<Option<u64>>,
    /// Hang after this many *more* commands; `null` makes a hung modem answer again.
    #[serde(default, deserialize_with = "some_or_null")]
    pub hang_after: Option<Option<u64>>,
    pub garbage_rate: Option<f64>,
    pub interleave_urcs: Option<bool>,
    pub auto_report: Option<bool>,
    pub report_delay_ms: Option<u64>,
    /// Network registration (+CREG/+CEREG/+CGREG stat 1, or 2 = searching).
    pub registered: Option<bool>,
    /// Signal quality for +CSQ (0..31, 99 unknown).
    pub csq: Option<u8>,
    pub cds_ack_timeout_ms: Option<u64>,
    pub cds_resends: Option<u32>,
    pub csms1: Option<bool>,
    pub lose_acks: Option<u32>,
}

/// Lets a present `null` mean "clear" while an absent key means "leave as is".
fn some_or_null<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// Parses a probability flag value and insists it is within 0..=1.
pub fn parse_rate(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|_| format!("{s:?} is not a number; give a rate between 0 and 1"))?;
    check_rate(v)
}

pub fn check_rate(v: f64) -> Result<f64, String> {
    if (0.0..=1.0).contains(&v) { Ok(v) } else { Err(format!("rate {v} is outside 0..1")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_outside_zero_to_one_are_rejected() {
        assert_eq!(parse_rate("0.25"), Ok(0.25));
        assert!(parse_rate("1.5").is_err());
        assert!(parse_rate("-0.1").is_err());
        assert!(parse_rate("often").is_err());
    }

    #[test]
    fn null_clears_and_absent_keeps() {
        let u: FaultUpdate = serde_json::from_str(r#"{"hang_after":null}"#).unwrap();
        assert_eq!(u.hang_after, Some(None));
        let u: FaultUpdate = serde_json::from_str(r#"{"hang_after":3}"#).unwrap();
        assert_eq!(u.hang_after, Some(Some(3)));
        let u: FaultUpdate = serde_json::from_str(r#"{}"#).unwrap();
        assert_eq!(u.hang_after, None);
        assert!(serde_json::from_str::<FaultUpdate>(r#"{"hang_afterr":1}"#).is_err());
        let u: FaultUpdate =
            serde_json::from_str(r#"{"cds_ack_timeout_ms":100,"cds_resends":1,"csms1":false,"lose_acks":2}"#).unwrap();
        assert_eq!(
            (u.cds_ack_timeout_ms, u.cds_resends, u.csms1, u.lose_acks),
            (Some(100), Some(1), Some(false), Some(2))
        );
        assert!(serde_json::from_str::<FaultUpdate>(r#"{"lose_acks":-1}"#).is_err());
    }
}
