//! The outbound state machine (DESIGN.md, "Message life (outbound)"), as data.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

/// Where an outbox message is in its life.
///
/// `received` (we know the Provet id) → `fetched` (text and number stored, parts encoded) →
/// `sending` (parts going to the modem) → `sent` | `failed` → `reported` (Provet marked, or
/// nothing to report for local messages). `failed` → `fetched` is the operator's retry.
/// `refused` is where an automatic reply the reply policy refused is recorded, with the reason:
/// it is inserted so and never changes (nothing is sent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OutboxState {
    Received,
    Fetched,
    Sending,
    Sent,
    Failed,
    Reported,
    Refused,
}

impl OutboxState {
    pub const ALL: [OutboxState; 7] = [
        OutboxState::Received,
        OutboxState::Fetched,
        OutboxState::Sending,
        OutboxState::Sent,
        OutboxState::Failed,
        OutboxState::Reported,
        OutboxState::Refused,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OutboxState::Received => "received",
            OutboxState::Fetched => "fetched",
            OutboxState::Sending => "sending",
            OutboxState::Sent => "sent",
            OutboxState::Failed => "failed",
            OutboxState::Reported => "reported",
            OutboxState::Refused => "refused",
        }
    }

    /// Whether the machine allows `self → next`.
    pub fn can_become(self, next: OutboxState) -> bool {
        use OutboxState::*;
        matches!(
            (self, next),
            (Received, Fetched)
                | (Received, Failed)     // fetch failed for good, or recipient opted out
                | (Received, Reported)   // Provet says it is already settled (404)
                | (Fetched, Sending)
                | (Fetched, Failed)      // opted out, cancelled, unencodable
                | (Sending, Sent)
                | (Sending, Failed)
                | (Sent, Reported)
                | (Failed, Reported)
                | (Failed, Fetched) // operator retry before it was reported
        )
    }
}

impl fmt::Display for OutboxState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for OutboxState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        OutboxState::ALL.into_iter().find(|st| st.as_str() == s).ok_or_else(|| format!("unknown outbox state {s:?}"))
    }
}

/// Where one part of an outbox message is.
///
/// `sending` is written *before* the PDU goes to the modem; a part found in `sending` at
/// start-up was in the crash window and becomes `unknown` (never resent blindly).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PartState {
    Pending,
    Sending,
    Acked,
    Failed,
    Unknown,
}

impl PartState {
    pub fn as_str(self) -> &'static str {
        match self {
            PartState::Pending => "pending",
            PartState::Sending => "sending",
            PartState::Acked => "acked",
            PartState::Failed => "failed",
            PartState::Unknown => "unknown",
        }
    }
}

impl FromStr for PartState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [PartState::Pending, PartState::Sending, PartState::Acked, PartState::Failed, PartState::Unknown]
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| format!("unknown part state {s:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_documented_transitions_are_allowed() {
        use OutboxState::*;
        let allowed: Vec<(OutboxState, OutboxState)> = OutboxState::ALL
            .iter()
            .flat_map(|a| OutboxState::ALL.iter().map(move |b| (*a, *b)))
            .filter(|(a, b)| a.can_become(*b))
            .collect();
        assert_eq!(allowed.len(), 10);
        assert!(!Reported.can_become(Fetched), "reported is final");
        assert!(!Sent.can_become(Sending), "a sent message is never sent again");
        assert!(!Sent.can_become(Failed));
        assert!(!Received.can_become(Sending), "nothing is sent before it is fetched");
        assert!(OutboxState::ALL.iter().all(|s| !Refused.can_become(*s) && !s.can_become(Refused)), "refused is final");
    }

    #[test]
    fn states_round_trip_through_their_names() {
        for s in OutboxState::ALL {
            assert_eq!(s.as_str().parse::<OutboxState>().unwrap(), s);
        }
        assert!("bogus".parse::<OutboxState>().is_err());
    }
}
