//! What a received keyword does: STOP adds the sender to the opt-out list, START removes it,
//! and a configured auto-reply is queued as an outbound SMS (source `reply`). The message is
//! forwarded in any case, STOP included: the clinic's software decides what it means to it.
//!
//! The step runs in the [`super::deliver::Forwarders`] task, on every inbox row once, in
//! arrival order; each row's changes (keyword, opt-out, reply, rate-limit stamp, "done" mark)
//! are committed together, so a crash repeats nothing and skips nothing.
//!
//! Auto-replies are sent only when configured, only to numbers that can receive them
//! ([`may_auto_reply`]: never alphanumeric senders or short codes), at most once per
//! `reply_min_interval` per number, and never to an opted-out number — with one exception: the
//! STOP confirmation (`stop_reply`) itself, sent once when a number opts out (not again for a
//! repeated STOP, and not held back by the rate limit). It is queued with
//! source [`crate::outbound::OPTOUT_CONFIRMATION`], the only source the outbound pipeline lets
//! through to an opted-out number (carriers' and regulators' practice: confirm the opt-out,
//! then stay silent).
//!
//! `unknown_sender_reply` goes to a sender the clinic has never texted through this box (no
//! outbox row to that number, auto-replies not counted): smshub has no client list, and the
//! clinic's own SMS all go out through it, so "never texted" is the honest meaning of
//! "unknown". With `[keywords] unknown_sender = "not_in_provet"` a number Provet has a client
//! for counts as known too ([`super::provet_lookup`], looked up before the step, failing open).
//! It follows the same rules (configured, numeric senders only, rate-limited, never
//! to an opted-out number) and is only sent when no keyword reply was.

use crate::config::KeywordsConfig;
use crate::inbound::keywords::{Keyword, classify, may_auto_reply, reply_for};
use crate::inbound::reply_policy::{self, Verdict};
use crate::phone::{PhoneNumber, mask_number};
use crate::store::{Db, QueuedReply, RefusedReply, ReplyBatch, Result, now_ms};

/// What the keyword step decided for one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeywordAction {
    pub keyword: Option<Keyword>,
    /// `(true, number)`: add to the opt-out list; `(false, number)`: remove.
    pub optout: Option<(bool, String)>,
    pub reply: Option<QueuedReply>,
    /// Why a configured reply was not queued (for the debug log).
    pub reply_skipped: Option<&'static str>,
    /// A configured reply the sender cannot receive (alphanumeric, short code): recorded as
    /// refused.
    pub refused: Option<RefusedReply>,
}

/// The key a sender is kept under in the opt-out list: E.164 when it parses (so it matches
/// outbound recipients, which are always E.164), else as received.
pub fn optout_key(sender: &str, default_country: Option<&str>) -> String {
    PhoneNumber::parse(sender, default_country).map(|n| n.as_str().to_string()).unwrap_or_else(|_| sender.to_string())
}

/// The decision for a message from `sender` with `body`. `opted_out` is the sender's state
/// before this message; `last_reply` when it last got an auto-reply (unix ms). Pure.
pub fn decide(
    sender: &str,
    body: &str,
    opted_out: bool,
    last_reply: Option<i64>,
    now: i64,
    cfg: &KeywordsConfig,
    default_country: Option<&str>,
) -> KeywordAction {
    let keyword = classify(body);
    let key = optout_key(sender, default_country);
    let (optout, opted_out_after) = match keyword {
        Some(Keyword::Stop) => (Some((true, key)), true),
        Some(Keyword::Start) => (Some((false, key)), false),
        _ => (None, opted_out),
    };
    let mut action = KeywordAction { keyword, optout, reply: None, reply_skipped: None, refused: None };
    let Some(text) = keyword.and_then(|k| reply_for(k, cfg)) else {
        return action;
    };
    let interval = i64::try_from(cfg.reply_min_interval.as_millis()).unwrap_or(i64::MAX);
    let number = PhoneNumber::parse(sender, default_country);
    // The STOP confirmation goes once per opt-out: not again to a number that was already
    // out, and not held back by the rate limit (it answers a new request).
    let first_stop = keyword == Some(Keyword::Stop) && !opted_out;
    action.reply_skipped = if !may_auto_reply(sender) {
        action.refused = Some(RefusedReply {
            to: sender.to_string(),
            body: text.to_string(),
            reason: "the sender is alphanumeric, a short code or not a phone number".into(),
        });
        Some("the sender is alphanumeric or a short code")
    } else if opted_out_after && !first_stop {
        Some("the sender is opted out")
    } else if !first_stop && last_reply.is_some_and(|at| now.saturating_sub(at) < interval) {
        Some("the sender got an auto-reply within reply_min_interval")
    } else {
        match number {
            Ok(to) => {
                action.reply = Some(QueuedReply { to, body: text.to_string() });
                None
            }
            Err(_) => Some("the sender's number cannot be parsed (no default_country?)"),
        }
    };
    action
}

/// The `unknown_sender_reply` for a message that got no keyword reply, if every rule allows
/// it (see the module doc). `known`: the clinic has texted this number before. Pure.
pub fn unknown_sender_reply(
    sender: &str,
    opted_out: bool,
    known: bool,
    last_reply: Option<i64>,
    now: i64,
    cfg: &KeywordsConfig,
    default_country: Option<&str>,
) -> Option<QueuedReply> {
    let text = cfg.unknown_sender_reply.as_deref().filter(|t| !t.trim().is_empty())?;
    let interval = i64::try_from(cfg.reply_min_interval.as_millis()).unwrap_or(i64::MAX);
    if known || opted_out || !may_auto_reply(sender) || last_reply.is_some_and(|at| now.saturating_sub(at) < interval) {
        return None;
    }
    let to = PhoneNumber::parse(sender, default_country).ok()?;
    Some(QueuedReply { to, body: text.to_string() })
}

/// Runs the keyword step on every message not yet looked at. Returns how many auto-replies
/// were queued. Runs on the store thread (one writer), so the checks and the writes see the
/// same state.
pub fn apply_keywords(
    db: &Db,
    cfg: &KeywordsConfig,
    replies: &crate::config::RepliesConfig,
    default_country: Option<&str>,
    started_at: i64,
    provet_clients: &std::collections::HashSet<String>,
) -> Result<usize> {
    let mut queued = 0;
    loop {
        let batch = db.inbox_for_keywords(started_at, 50)?;
        if batch.is_empty() {
            return Ok(queued);
        }
        for c in batch {
            let id = c.inbox_id;
            let action = match (c.sender.as_deref(), c.body.as_deref()) {
                (Some(sender), Some(body)) => {
                    let key = optout_key(sender, default_country);
                    let opted_out = db.is_opted_out(&key)?;
                    let last = PhoneNumber::parse(sender, default_country)
                        .ok()
                        .map(|n| db.last_auto_reply(&n))
                        .transpose()?
                        .flatten();
                    let mut action = decide(sender, body, opted_out, last, now_ms(), cfg, default_country);
                    if action.keyword.is_none() && action.reply.is_none() && cfg.unknown_sender_reply.is_some() {
                        let known = provet_clients.contains(&key) || db.has_sent_to(&key)?;
                        action.reply =
                            unknown_sender_reply(sender, opted_out, known, last, now_ms(), cfg, default_country);
                    }
                    if let Some(k) = action.keyword {
                        tracing::info!(inbox_id = id, from = %mask_number(sender), keyword = k.as_str(), "keyword received");
                    }
                    if let Some(why) = action.reply_skipped {
                        tracing::debug!(inbox_id = id, from = %mask_number(sender), "no auto-reply: {why}");
                    }
                    action
                }
                _ => KeywordAction { keyword: None, optout: None, reply: None, reply_skipped: None, refused: None },
            };
            // The reply policy (type of number, length; the store counts) has the last word.
            let mut batch = ReplyBatch::default();
            batch.refused.extend(action.refused.clone());
            if let Some(reply) = &action.reply {
                let sender = c.sender.as_deref().unwrap_or_default();
                match reply_policy::judge(sender, c.sender_ton, None, &reply.body, replies, default_country) {
                    Verdict::Queue(q) => batch.queued.push(q),
                    Verdict::Refuse(r) => batch.refused.push(r),
                }
            }
            let optout = action.optout.as_ref().map(|(add, n)| (*add, n.as_str()));
            let recorded =
                db.record_keyword_step(id, action.keyword.map(Keyword::as_str), optout, &batch, &replies.limits())?;
            for outbox_id in recorded.queued {
                queued += 1;
                tracing::info!(inbox_id = id, outbox_id, "keyword auto-reply queued");
            }
            for (outbox_id, reason) in recorded.refused {
                tracing::info!(inbox_id = id, outbox_id, reason = %crate::phone::mask_numbers_in(&reason), "automatic reply refused by the reply policy (recorded)");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn cfg() -> KeywordsConfig {
        KeywordsConfig {
            help_reply: Some("Call 09 123 456".into()),
            stop_reply: Some("Bye".into()),
            start_reply: Some("Welcome back".into()),
            confirm_reply: Some("See you".into()),
            reply_min_interval: Duration::from_secs(3600),
            ..Default::default()
        }
    }

    const NOW: i64 = 1_800_000_000_000;
    const HOUR: i64 = 3_600_000;

    fn reply_of(a: &KeywordAction) -> Option<(&str, &str)> {
        a.reply.as_ref().map(|r| (r.to.as_str(), r.body.as_str()))
    }

    /// (sender, body, opted out before, last reply, expected opt-out change, expected reply)
    type Case<'a> = (&'a str, &'a str, bool, Option<i64>, Option<(bool, &'a str)>, Option<&'a str>);

    #[test]
    fn keywords_decide_opt_outs_and_replies() {
        let c = cfg();
        let n = "+358401234567";
        let cases: &[Case] = &[
            (n, "HELP", false, None, None, Some("Call 09 123 456")),
            (n, "help!", false, Some(NOW - 2 * HOUR), None, Some("Call 09 123 456")),
            (n, "HELP", false, Some(NOW - HOUR / 2), None, None),
            (n, "HELP", true, None, None, None),
            (n, "STOP", false, None, Some((true, n)), Some("Bye")),
            (n, "Unsubscribe", false, None, Some((true, n)), Some("Bye")),
            (n, "STOP", false, Some(NOW - HOUR / 2), Some((true, n)), Some("Bye")),
            (n, "STOP", true, None, Some((true, n)), None),
            (n, "START", true, None, Some((false, n)), Some("Welcome back")),
            (n, "confirm", false, None, None, Some("See you")),
            (n, "cancel", false, None, None, None),
            (n, "please help me", false, None, None, None),
            ("ExampleVet", "HELP", false, None, None, None),
            ("12345", "HELP", false, None, None, None),
            ("ExampleVet", "STOP", false, None, Some((true, "ExampleVet")), None),
        ];
        for (sender, body, opted, last, optout, reply) in cases {
            let a = decide(sender, body, *opted, *last, NOW, &c, None);
            assert_eq!(a.optout.as_ref().map(|(add, k)| (*add, k.as_str())), *optout, "{sender} {body}");
            assert_eq!(reply_of(&a).map(|(_, b)| b), *reply, "{sender} {body}");
            if let Some((to, _)) = reply_of(&a) {
                assert_eq!(to, *sender);
            }
        }
    }

    #[test]
    fn national_senders_are_kept_in_e164_when_a_country_is_configured() {
        let a = decide("0401234567", "STOP", false, None, NOW, &cfg(), Some("358"));
        assert_eq!(a.optout, Some((true, "+358401234567".to_string())));
        let a = decide("0401234567", "HELP", false, None, NOW, &cfg(), Some("358"));
        assert_eq!(reply_of(&a), Some(("+358401234567", "Call 09 123 456")));
        let a = decide("0401234567", "HELP", false, None, NOW, &cfg(), None);
        assert!(a.reply.is_none());
    }

    #[test]
    fn only_unknown_numeric_senders_get_the_unknown_sender_reply() {
        let c = KeywordsConfig { unknown_sender_reply: Some("This number only sends".into()), ..cfg() };
        let n = "+358401234567";
        let reply = |opted, known, last| unknown_sender_reply(n, opted, known, last, NOW, &c, None).map(|r| r.body);
        assert_eq!(reply(false, false, None).as_deref(), Some("This number only sends"));
        assert_eq!(reply(false, true, None), None, "a number the clinic has texted is known");
        assert_eq!(reply(true, false, None), None, "never to an opted-out number");
        assert_eq!(reply(false, false, Some(NOW - HOUR / 2)), None, "rate-limited");
        assert_eq!(unknown_sender_reply("ExampleVet", false, false, None, NOW, &c, None), None);
        assert_eq!(unknown_sender_reply(n, false, false, None, NOW, &cfg(), None), None, "off unless configured");
    }

    #[test]
    fn nothing_is_replied_when_no_reply_is_configured() {
        let a = decide("+358401234567", "HELP", false, None, NOW, &KeywordsConfig::default(), None);
        assert_eq!(a.keyword, Some(Keyword::Help));
        assert!(a.reply.is_none() && a.reply_skipped.is_none());
    }

    #[test]
    fn the_step_runs_once_per_message_and_rate_limits_replies_per_number() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("k.db")).unwrap();
        let started = now_ms();
        let store = |pdu: &str, sender: &str, text: &str| {
            let part = crate::store::NewInboxPart {
                modem: "m".into(),
                pdu: pdu.into(),
                sender: Some(sender.into()),
                text: Some(text.into()),
                ..Default::default()
            };
            db.store_inbound_part(&part, &[]).unwrap();
        };
        store("a", "+358401234567", "HELP");
        store("b", "+358401234567", "help");
        store("c", "+358409999999", "STOP");
        assert_eq!(
            apply_keywords(&db, &cfg(), &Default::default(), None, started, &Default::default()).unwrap(),
            2,
            "one HELP reply (the second is rate-limited) and the STOP confirmation"
        );
        assert!(db.is_opted_out("+358409999999").unwrap());
        assert_eq!(
            apply_keywords(&db, &cfg(), &Default::default(), None, started, &Default::default()).unwrap(),
            0,
            "nothing is looked at twice"
        );
        let replies = db.list_outbox(&crate::store::OutboxFilter::default()).unwrap();
        let sources: Vec<(&str, &str)> =
            replies.iter().map(|r| (r.source.as_str(), r.recipient.as_deref().unwrap_or(""))).collect();
        assert_eq!(
            sources,
            [(crate::outbound::OPTOUT_CONFIRMATION, "+358409999999"), ("reply", "+358401234567")],
            "newest first"
        );
    }
}
