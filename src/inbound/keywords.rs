//! Keywords in received SMS: opt-out (STOP and its usual synonyms), opt-in (START), HELP, and
//! the appointment replies CONFIRM, CANCEL and RESCHEDULE.
//!
//! Only a message that is the keyword and nothing else counts ("Stop!" does, "please stop
//! calling" does not), because acting on a word inside a sentence would opt people out of
//! their pet's reminders by accident. Case, surrounding spaces and punctuation are ignored.
//!
//! Auto-replies go only to numbers that can receive them: never to alphanumeric senders (they
//! cannot be answered, and replying to a bank's "ExampleBank" name would go nowhere) or to
//! short codes (premium or service numbers: a reply may cost money or trigger another reply).

use crate::config::KeywordsConfig;

/// A recognised keyword.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Keyword {
    /// Add the sender to the opt-out list.
    Stop,
    /// Remove the sender from the opt-out list.
    Start,
    Help,
    Confirm,
    Cancel,
    Reschedule,
}

impl Keyword {
    /// The canonical name, as stored in the inbox.
    pub fn as_str(self) -> &'static str {
        match self {
            Keyword::Stop => "STOP",
            Keyword::Start => "START",
            Keyword::Help => "HELP",
            Keyword::Confirm => "CONFIRM",
            Keyword::Cancel => "CANCEL",
            Keyword::Reschedule => "RESCHEDULE",
        }
    }
}

/// The words and what they mean. STOPALL, UNSUBSCRIBE, END, QUIT, UNSTOP are the synonyms
/// carriers (and Twilio's default handling) treat the same way.
const WORDS: &[(&str, Keyword)] = &[
    ("STOP", Keyword::Stop),
    ("STOPALL", Keyword::Stop),
    ("UNSUBSCRIBE", Keyword::Stop),
    ("END", Keyword::Stop),
    ("QUIT", Keyword::Stop),
    ("START", Keyword::Start),
    ("UNSTOP", Keyword::Start),
    ("HELP", Keyword::Help),
    ("CONFIRM", Keyword::Confirm),
    ("CANCEL", Keyword::Cancel),
    ("RESCHEDULE", Keyword::Reschedule),
];

/// The keyword `body` is, if it is one: the whole message, ignoring case and anything that is
/// not a letter or digit at either end (spaces, punctuation, emoji).
pub fn classify(body: &str) -> Option<Keyword> {
    let word = body.trim_matches(|c: char| !c.is_alphanumeric());
    if word.is_empty() || word.len() > 16 {
        return None;
    }
    let upper = word.to_uppercase();
    WORDS.iter().find(|(w, _)| *w == upper).map(|(_, k)| *k)
}

/// The configured auto-reply for `keyword`, if there is one (an empty text counts as none).
pub fn reply_for(keyword: Keyword, cfg: &KeywordsConfig) -> Option<&str> {
    let text = match keyword {
        Keyword::Stop => &cfg.stop_reply,
        Keyword::Start => &cfg.start_reply,
        Keyword::Help => &cfg.help_reply,
        Keyword::Confirm => &cfg.confirm_reply,
        Keyword::Cancel => &cfg.cancel_reply,
        Keyword::Reschedule => &cfg.reschedule_reply,
    };
    text.as_deref().filter(|t| !t.trim().is_empty())
}

/// Whether an automatic reply may be sent to `sender` as the modem reported it: an
/// international number (`+` and 8 to 15 digits) or a national number of at least 9 digits.
/// Alphanumeric senders and short codes (up to 8 digits without `+`) get no auto-reply.
pub fn may_auto_reply(sender: &str) -> bool {
    let (plus, digits) = match sender.strip_prefix('+') {
        Some(rest) => (true, rest),
        None => (false, sender),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    if plus { (8..=15).contains(&digits.len()) && !digits.starts_with('0') } else { (9..=15).contains(&digits.len()) }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn keywords_are_recognised_as_whole_messages_only() {
        let cases: &[(&str, Option<Keyword>)] = &[
            ("STOP", Some(Keyword::Stop)),
            ("stop", Some(Keyword::Stop)),
            ("Stop!", Some(Keyword::Stop)),
            (" stop. ", Some(Keyword::Stop)),
            ("\n\tSTOP\r\n", Some(Keyword::Stop)),
            ("\"Stop\"", Some(Keyword::Stop)),
            ("STOP 🙏", Some(Keyword::Stop)),
            ("¡stop!", Some(Keyword::Stop)),
            ("StopAll", Some(Keyword::Stop)),
            ("unsubscribe", Some(Keyword::Stop)),
            ("End.", Some(Keyword::Stop)),
            ("quit", Some(Keyword::Stop)),
            ("START", Some(Keyword::Start)),
            ("unstop", Some(Keyword::Start)),
            ("Help?", Some(Keyword::Help)),
            ("confirm", Some(Keyword::Confirm)),
            ("Cancel!!!", Some(Keyword::Cancel)),
            ("reschedule", Some(Keyword::Reschedule)),
            ("please stop", None),
            ("stop please", None),
            ("STOP ALL", None),
            ("stopp", None),
            ("s.t.o.p", None),
            ("Stopped", None),
            ("I need help", None),
            ("", None),
            ("   ", None),
            ("!!!", None),
            ("😀", None),
            ("Kyllä", None),
        ];
        for (body, expected) in cases {
            assert_eq!(classify(body), *expected, "{body:?}");
        }
    }

    #[test]
    fn replies_come_from_config_and_empty_means_none() {
        let cfg = KeywordsConfig {
            help_reply: Some("Call 09 123 456".into()),
            stop_reply: Some("   ".into()),
            start_reply: None,
            confirm_reply: Some("See you!".into()),
            cancel_reply: Some("Cancelled".into()),
            reschedule_reply: Some("We will call you".into()),
            unknown_sender_reply: None,
            unknown_sender: Default::default(),
            reply_min_interval: Duration::from_secs(3600),
        };
        let cases: &[(Keyword, Option<&str>)] = &[
            (Keyword::Help, Some("Call 09 123 456")),
            (Keyword::Stop, None),
            (Keyword::Start, None),
            (Keyword::Confirm, Some("See you!")),
            (Keyword::Cancel, Some("Cancelled")),
            (Keyword::Reschedule, Some("We will call you")),
        ];
        for (k, expected) in cases {
            assert_eq!(reply_for(*k, &cfg), *expected, "{k:?}");
        }
        assert_eq!(reply_for(Keyword::Help, &KeywordsConfig::default()), None);
    }

    #[test]
    fn auto_replies_go_only_to_real_numbers() {
        let cases: &[(&str, bool)] = &[
            ("+358401234567", true),
            ("+61412345678", true),
            ("+14155550100", true),
            ("0401234567", true),
            ("0412345678", true),
            ("ExampleVet", false),
            ("Vet 24h", false),
            ("INFO", false),
            ("12345", false),
            ("19123456", false),
            ("+1234567", false),
            ("+0123456789", false),
            ("+1234567890123456", false),
            ("+", false),
            ("", false),
            ("+358 40 123", false),
        ];
        for (sender, expected) in cases {
            assert_eq!(may_auto_reply(sender), *expected, "{sender:?}");
        }
    }
}
