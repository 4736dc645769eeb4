//! Queueing a message a person typed (web UI send page and conversation reply, the Provet side
//! panel): the one path with its policy, so every such send is checked the same way.
//!
//! 1. The text must not be empty and must fit in [`MAX_PARTS`] parts (the encoder's split).
//! 2. In one store transaction ([`crate::store::Db::queue_staff_send`]): refused if the number
//!    is on the opt-out list, or if the `[replies]` limits (`per_number_per_hour`, `per_hour`,
//!    counted over staff sends apart from automatic replies) are reached; else an outbox row
//!    with `source` in state `fetched`.
//! 3. The senders are woken.

use crate::config::RepliesConfig;
use crate::outbound::Wake;
use crate::pdu::{self, Encoding};
use crate::phone::PhoneNumber;
use crate::store::{LocalRefusal, OutboxId, Store, StoreError};

/// Parts of one message a person may send (a long letter is not an SMS).
pub const MAX_PARTS: usize = 10;

/// Where a person's message came from: the outbox `source`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalSource {
    /// The admin web UI (send page, conversation reply).
    Ui,
    /// The Provet side panel or new window.
    Panel,
}

impl LocalSource {
    pub fn as_str(self) -> &'static str {
        match self {
            LocalSource::Ui => "ui",
            LocalSource::Panel => "panel",
        }
    }
}

/// Why a message was not queued, in words for the person who typed it.
#[derive(Debug, thiserror::Error)]
pub enum LocalSendError {
    #[error("the message is empty")]
    Empty,
    #[error("the message needs {parts} SMS parts; at most {MAX_PARTS} are allowed, so shorten it")]
    TooLong { parts: usize },
    #[error("not sent: {0}")]
    Refused(LocalRefusal),
    #[error("smshub could not store the message ({0}); nothing was sent, try again")]
    Store(#[from] StoreError),
}

/// How a text will travel: the number of parts and the encoding, and for UCS-2 the first
/// character that forces it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartCount {
    pub parts: usize,
    pub encoding: Encoding,
    pub forced_by: Option<char>,
}

impl PartCount {
    /// What the encoder will do with `text` (the same split the sender uses).
    pub fn of(text: &str) -> PartCount {
        match pdu::split_text(text) {
            Ok((encoding, parts)) => {
                let forced_by = (encoding == Encoding::Ucs2)
                    .then(|| text.chars().find(|c| pdu::gsm7::encode_char(*c).is_none()))
                    .flatten();
                PartCount { parts: parts.len(), encoding, forced_by }
            }
            Err(_) => PartCount { parts: usize::MAX, encoding: Encoding::Ucs2, forced_by: None },
        }
    }

    /// "2 parts, UCS-2 — the 😀 forces UCS-2", "1 part, GSM-7".
    pub fn words(&self) -> String {
        let parts = if self.parts == 1 { "1 part".to_string() } else { format!("{} parts", self.parts) };
        match (self.encoding, self.forced_by) {
            (Encoding::Ucs2, Some(c)) => format!("{parts}, UCS-2 — the {c} forces UCS-2"),
            (Encoding::Ucs2, None) => format!("{parts}, UCS-2"),
            _ => format!("{parts}, GSM-7"),
        }
    }
}

/// Queues `text` to `to` from `source` after the checks above, and wakes the senders.
pub async fn queue_local_send(
    store: &Store,
    wake: &Wake,
    replies: &RepliesConfig,
    source: LocalSource,
    to: &PhoneNumber,
    text: &str,
) -> Result<OutboxId, LocalSendError> {
    if text.trim().is_empty() {
        return Err(LocalSendError::Empty);
    }
    // Bounded before the split: more characters than MAX_PARTS full GSM-7 parts is too long.
    let chars = text.chars().count();
    if chars > MAX_PARTS * 160 {
        return Err(LocalSendError::TooLong { parts: chars.div_ceil(153) });
    }
    let count = PartCount::of(text);
    if count.parts > MAX_PARTS {
        return Err(LocalSendError::TooLong { parts: count.parts });
    }
    let (limits, to2, body) = (replies.limits(), to.clone(), text.to_string());
    let queued = store.call(move |db| db.queue_staff_send(source.as_str(), &to2, &body, &limits)).await?;
    match queued {
        Ok(id) => {
            tracing::info!(outbox_id = id, to = %to.masked(), source = source.as_str(), parts = count.parts, "message queued by staff");
            Wake::all(&wake.send);
            Ok(id)
        }
        Err(refusal) => Err(LocalSendError::Refused(refusal)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_part_count_names_the_character_that_forces_ucs2() {
        assert_eq!(PartCount::of("hello").words(), "1 part, GSM-7");
        assert_eq!(PartCount::of(&"a".repeat(161)).words(), "2 parts, GSM-7");
        let emoji = format!("{}😀", "a".repeat(70));
        assert_eq!(PartCount::of(&emoji).words(), "2 parts, UCS-2 — the 😀 forces UCS-2");
        assert_eq!(PartCount::of("€ is GSM-7 with an escape").encoding, Encoding::Gsm7);
        assert_eq!(PartCount::of("").parts, 1);
    }

    #[tokio::test]
    async fn empty_long_and_opted_out_texts_are_refused_and_a_good_one_is_queued() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db")).unwrap();
        let (wake, replies) = (Wake::default(), RepliesConfig::default());
        let to = PhoneNumber::parse("+358401234567", None).unwrap();
        let send = |text: String| {
            let (store, wake, replies, to) = (store.clone(), wake.clone(), replies.clone(), to.clone());
            async move { queue_local_send(&store, &wake, &replies, LocalSource::Ui, &to, &text).await }
        };
        assert!(matches!(send("  ".into()).await, Err(LocalSendError::Empty)));
        assert!(matches!(send("x".repeat(10_000)).await, Err(LocalSendError::TooLong { .. })));
        assert!(matches!(send("ж".repeat(671)).await, Err(LocalSendError::TooLong { parts: 11 })));
        let id = send("hello".into()).await.unwrap();
        let row = store.call(move |db| db.get_outbox(id)).await.unwrap().unwrap();
        assert_eq!(row.summary.source, "ui");
        store.call(|db| db.add_optout("+358401234567", "cli")).await.unwrap();
        let err = send("again".into()).await.unwrap_err();
        assert!(err.to_string().contains("opt-out list"), "{err}");
    }
}
