//! Send and request outcomes, and the `+CMS ERROR` classification as data.

use crate::modem::at::AtError;

/// Why a part was not (certainly) sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The network or modem refused this message; sending it again will fail the same way.
    #[error("permanent send failure (+CMS ERROR: {code}): {reason}")]
    Permanent { code: u16, reason: String },
    /// Try again later.
    #[error("temporary send failure: {reason}")]
    Transient { reason: String },
    /// The PDU was written but no answer came: it may or may not have been sent. Never resend blindly.
    #[error("send outcome unknown: {reason}")]
    Unknown { reason: String },
    /// The modem is not ready; nothing was sent.
    #[error("modem not ready ({state}); nothing was sent")]
    NotReady { state: String },
}

/// Errors of non-send requests.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModemError {
    #[error("modem not ready ({state})")]
    NotReady { state: String },
    #[error(transparent)]
    At(#[from] AtError),
    #[error("the modem driver has stopped")]
    Stopped,
}

/// How `+CMS ERROR` codes of a send are treated (PROTOCOLS.md §4 "Retry policy", our classification,
/// not from a spec). Network causes 8 (operator barring), 10 (call barred), 21 (SM transfer rejected),
/// 29 (facility rejected), 30 (unknown subscriber) and 304/305 (invalid PDU/text parameter: the message
/// itself is wrong) are permanent. Everything else — 17, 22, 27, 38, 41, 42, 47, 314, 331, 332, 500, 513
/// and codes not listed — is transient: a retry later may work, and a wrong "permanent" would drop a
/// clinic's message for good.
pub const PERMANENT_CMS: &[(u16, &str)] = &[
    (8, "operator determined barring"),
    (10, "call barred"),
    (21, "short message transfer rejected"),
    (29, "facility rejected"),
    (30, "unknown subscriber"),
    (304, "invalid PDU mode parameter (malformed PDU or number)"),
    (305, "invalid text mode parameter"),
];

/// Descriptions of known transient codes (for the reason text only; unknown codes are transient too).
pub const TRANSIENT_CMS: &[(u16, &str)] = &[
    (17, "network failure"),
    (22, "congestion"),
    (27, "destination out of service"),
    (38, "network out of order"),
    (41, "temporary failure"),
    (42, "congestion"),
    (47, "resources unavailable"),
    (314, "SIM busy"),
    (322, "SIM memory full"),
    (331, "no network service"),
    (332, "network timeout"),
    (500, "unknown error"),
    (513, "lower layer failure"),
];

/// Classify a `+CMS ERROR` of a send.
pub fn classify_cms(code: u16) -> SendError {
    if let Some((_, why)) = PERMANENT_CMS.iter().find(|(c, _)| *c == code) {
        return SendError::Permanent { code, reason: (*why).to_string() };
    }
    let why = TRANSIENT_CMS.iter().find(|(c, _)| *c == code).map_or("unclassified code", |(_, w)| *w);
    SendError::Transient { reason: format!("+CMS ERROR: {code} ({why})") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cms_classification_table() {
        let permanent = [8, 10, 21, 29, 30, 304, 305];
        let transient = [17, 22, 27, 38, 41, 42, 47, 314, 322, 331, 332, 500, 513, 1, 999];
        for code in permanent {
            assert!(matches!(classify_cms(code), SendError::Permanent { code: c, .. } if c == code), "{code}");
        }
        for code in transient {
            assert!(matches!(classify_cms(code), SendError::Transient { .. }), "{code}");
        }
    }
}
