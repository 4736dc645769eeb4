//! The one policy for every automatic SMS: keyword replies, the unknown-sender reply and TwiML
//! replies all pass here before they reach the outbox.
//!
//! Checked here, without the store (pure): who a reply may go to and how long it may be.
//! - Never to an alphanumeric sender, a short code (at most 6 digits without `+`, or anything
//!   [`may_auto_reply`] refuses) or a sender whose type of number is "network specific" (3) or
//!   "abbreviated" (6); a short code is never given a country code.
//! - A TwiML `to` other than the sender only to a prefix in `[replies] allowed_destinations`.
//! - At most `[replies] max_parts` PDUs.
//!
//! Counted by the store when the reply is queued, in the same transaction
//! ([`crate::store::ReplyLimits`]): `per_number_per_hour` and `per_hour`. This is what ends an
//! exchange with an auto-responder.
//!
//! A refused reply is not dropped: it is recorded as an outbox row `refused` with the reason.

use crate::config::RepliesConfig;
use crate::inbound::keywords::may_auto_reply;
use crate::phone::PhoneNumber;
use crate::store::{QueuedReply, RefusedReply, ReplyLimits};

/// Types of number that are not a phone a reply can reach (TS 23.040 9.1.2.5).
const TON_NETWORK_SPECIFIC: u8 = 3;
const TON_ABBREVIATED: u8 = 6;

/// What the policy says about one reply before counting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// May be queued (the counts are checked then).
    Queue(QueuedReply),
    Refuse(RefusedReply),
}

impl RepliesConfig {
    pub fn limits(&self) -> ReplyLimits {
        ReplyLimits { per_number_per_hour: self.per_number_per_hour, per_hour: self.per_hour }
    }
}

/// Whether `sender` (with its type of number, if known) can be replied to at all.
pub fn sender_reachable(sender: &str, sender_ton: Option<u8>) -> bool {
    may_auto_reply(sender) && !matches!(sender_ton, Some(TON_NETWORK_SPECIFIC | TON_ABBREVIATED))
}

/// The verdict on a reply with `body` to `sender`, or to `to` when a TwiML `<Message to=…>`
/// names another destination. Pure.
pub fn judge(
    sender: &str,
    sender_ton: Option<u8>,
    to: Option<&str>,
    body: &str,
    cfg: &RepliesConfig,
    default_country: Option<&str>,
) -> Verdict {
    let refuse = |target: &str, reason: String| {
        Verdict::Refuse(RefusedReply { to: target.to_string(), body: body.to_string(), reason })
    };
    let sender_number =
        sender_reachable(sender, sender_ton).then(|| PhoneNumber::parse(sender, default_country).ok()).flatten();
    let to = to.map(str::trim).filter(|t| !t.is_empty());
    let target = match to {
        None => match sender_number {
            Some(n) => n,
            None => return refuse(sender, "the sender is alphanumeric, a short code or not a phone number".into()),
        },
        Some(t) => {
            // A short code is refused by the parser, never given a country code.
            let n = match PhoneNumber::parse(t, default_country) {
                Ok(n) => n,
                Err(e @ crate::phone::PhoneError::ShortCode(_)) => {
                    return refuse(t, format!("the destination is a short code ({e})"));
                }
                Err(_) => return refuse(t, "the destination is not a phone number an SMS can be sent to".into()),
            };
            let is_sender = sender_number.as_ref() == Some(&n);
            if !is_sender && !cfg.allowed_destinations.iter().any(|p| n.as_str().starts_with(p.as_str())) {
                return refuse(t, "the destination is not the sender and not in [replies] allowed_destinations".into());
            }
            n
        }
    };
    if let Some(parts) = too_many_parts(body, cfg.max_parts) {
        return refuse(target.as_str(), format!("{parts} parts; [replies] max_parts is {}", cfg.max_parts));
    }
    Verdict::Queue(QueuedReply { to: target, body: body.to_string() })
}

/// The number of parts of `body` when it is more than `max`.
fn too_many_parts(body: &str, max: u32) -> Option<usize> {
    let max = usize::try_from(max).unwrap_or(usize::MAX);
    // No part holds more than 160 characters: a longer text is over without splitting it.
    if body.chars().count() > max.saturating_mul(160) {
        return Some(body.chars().count().div_ceil(153));
    }
    let parts = crate::pdu::split_text(body).map(|(_, p)| p.len()).unwrap_or(usize::MAX);
    (parts > max).then_some(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> RepliesConfig {
        RepliesConfig { allowed_destinations: vec!["+35840".into()], ..RepliesConfig::default() }
    }

    fn verdict(
        sender: &str,
        ton: Option<u8>,
        to: Option<&str>,
        body: &str,
        country: Option<&str>,
    ) -> Result<String, String> {
        match judge(sender, ton, to, body, &cfg(), country) {
            Verdict::Queue(q) => Ok(q.to.as_str().to_string()),
            Verdict::Refuse(r) => Err(r.reason),
        }
    }

    #[test]
    fn replies_go_to_reachable_senders_and_allowed_destinations_only() {
        let n = "+358501234567";
        assert_eq!(verdict(n, Some(1), None, "Thanks", None), Ok(n.into()));
        assert_eq!(verdict(n, Some(1), Some(n), "Thanks", None), Ok(n.into()), "to= the sender itself");
        assert_eq!(verdict(n, Some(1), Some("+358401111111"), "Copy", None), Ok("+358401111111".into()));
        let cases: &[(&str, Option<u8>, Option<&str>, &str)] = &[
            ("ExampleVet", Some(5), None, "alphanumeric"),
            ("16400", Some(0), None, "short code"),
            ("+358501234567", Some(3), None, "short code"),
            ("358501234567", Some(6), None, "short code"),
            (n, Some(1), Some("+19005550123"), "allowed_destinations"),
            (n, Some(1), Some("+882123456789"), "allowed_destinations"),
            (n, Some(1), Some("16400"), "short code"),
            (n, Some(1), Some("ExampleVet"), "not a phone number"),
        ];
        for (sender, ton, to, why) in cases {
            let v = verdict(sender, *ton, *to, "hi", None);
            assert!(v.as_ref().is_err_and(|e| e.contains(why)), "{sender} {to:?}: {v:?}");
        }
    }

    #[test]
    fn a_short_code_never_gets_a_country_code() {
        let v = verdict("16400", None, None, "hi", Some("358"));
        assert!(v.is_err(), "{v:?}");
        let v = verdict("+358501234567", Some(1), Some("16400"), "hi", Some("358"));
        assert!(v.is_err(), "{v:?}");
    }

    #[test]
    fn long_replies_are_refused_above_max_parts() {
        let n = "+358501234567";
        assert!(verdict(n, None, None, &"a".repeat(459), None).is_ok(), "3 parts of 153");
        let v = verdict(n, None, None, &"a".repeat(460), None);
        assert!(v.as_ref().is_err_and(|e| e.contains("4 parts")), "{v:?}");
        let v = verdict(n, None, None, &"x".repeat(30_000), None);
        assert!(v.as_ref().is_err_and(|e| e.contains("197 parts; [replies] max_parts is 3")), "{v:?}");
        let v = verdict(n, None, None, &"🐕".repeat(100), None);
        assert!(v.is_err(), "UCS-2 counts its own part size: {v:?}");
    }
}
