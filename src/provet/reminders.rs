//! Reminders and appointment reminders: the one place that holds smshub's assumptions about
//! their shape, because Provet does not document it (PROTOCOLS.md "Open questions" 3).
//!
//! # What is documented (seed 000, PROTOCOLS.md §1)
//! - A reminder with `send_method: 4` (External) is not sent by Provet, and no external_sms
//!   object is created for it. No endpoint to mark such a reminder sent is documented, so smshub
//!   cannot tell Provet it sent one: the store must remember which it sent.
//! - Appointment reminders have `send_externally` (default false).
//!   `POST appointment_reminder/<id>/mark_external_sending/` sets it to true (Provet then does
//!   not send it), and `POST appointment_reminder/<id>/mark_sent/` reports it sent.
//!
//! # What is assumed (and why)
//! - Endpoints: `GET reminder/<id>/`, `GET reminder/?send_method=4` (list) and
//!   `GET appointment_reminder/<id>/`, by analogy with `external_sms/<id>/` in the same API
//!   (Django REST Framework routes). The list filter may be ignored by Provet (DRF ignores unknown
//!   query parameters), so the list is filtered again here: only items that say
//!   `send_method: 4` are returned.
//! - `id`: an integer, as everywhere in the API.
//! - Recipient: a string field `phone_number` on the object itself, the name external_sms uses.
//!   Following `client` to the client object and picking one of its numbers was considered and
//!   rejected: that shape is undocumented too, and picking the wrong one of several numbers
//!   sends a reminder to a stranger. A missing `phone_number` is an error that says so.
//! - Text: the first present of `message` (external_sms's name), `sms_text`, `text`.
//! - `send_method`: an integer; only 4 is known (External).
//! - `send_externally`: a boolean; missing reads as false (the documented default).
//!
//! Unknown fields are ignored (Provet adds fields). When the real shape is known, only this
//! file and the fake's reminder JSON need to change.
//!
//! # A warning for periodic polling
//! A send_method-4 reminder has no documented "sent" state, so the list may include reminders
//! that were due long ago. A poller must not send everything it sees on its first run: it should
//! take the first list as a baseline, or rely on the custom-integration button (the documented
//! trigger, seed 001) instead.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::client::{ProvetClient, ProvetError};
use super::http::Body;
use super::model::Fields;

/// `send_method` value meaning "External": Provet does not send it (the only documented value).
pub const SEND_METHOD_EXTERNAL: i64 = 4;

/// Fields tried, in order, for a reminder's SMS text.
const TEXT_FIELDS: &[&str] = &["message", "sms_text", "text"];

/// Which kind of Provet object a reminder text came from; with the id and the instance it is
/// the unique key of a reminder in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReminderKind {
    /// `reminder/<id>/` with `send_method: 4`.
    Reminder,
    /// `appointment_reminder/<id>/`.
    AppointmentReminder,
}

impl ReminderKind {
    /// The name used in the store and in logs (`reminder`, `appointment_reminder`).
    pub fn as_str(self) -> &'static str {
        match self {
            ReminderKind::Reminder => "reminder",
            ReminderKind::AppointmentReminder => "appointment_reminder",
        }
    }

    /// The inverse of [`ReminderKind::as_str`].
    pub fn parse(s: &str) -> Option<ReminderKind> {
        match s {
            "reminder" => Some(ReminderKind::Reminder),
            "appointment_reminder" => Some(ReminderKind::AppointmentReminder),
            _ => None,
        }
    }
}

/// A reminder reduced to what the outbound pipeline needs, so it is handled like an external SMS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReminderText {
    pub id: i64,
    pub kind: ReminderKind,
    /// As Provet stores it; parse with [`crate::phone::PhoneNumber::parse`].
    pub phone_number: String,
    pub text: String,
}

/// A reminder (`reminder/<id>/`), with the assumed fields described in the module doc.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reminder {
    pub id: i64,
    pub send_method: Option<i64>,
    pub phone_number: String,
    pub text: String,
}

impl Reminder {
    /// Parses one reminder; `what` names it in errors.
    pub fn from_json(value: &Value, what: &str) -> Result<Reminder, String> {
        let obj = Fields::new(value, what)?;
        Ok(Reminder {
            id: obj.i64("id")?,
            send_method: obj.opt_i64("send_method")?,
            phone_number: obj.string("phone_number")?,
            text: text_field(&obj)?,
        })
    }

    /// Whether Provet leaves this reminder to an external sender (`send_method == 4`).
    pub fn is_external(&self) -> bool {
        self.send_method == Some(SEND_METHOD_EXTERNAL)
    }

    pub fn into_text(self) -> ReminderText {
        ReminderText { id: self.id, kind: ReminderKind::Reminder, phone_number: self.phone_number, text: self.text }
    }
}

/// An appointment reminder (`appointment_reminder/<id>/`), with the assumed fields described in
/// the module doc.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppointmentReminder {
    pub id: i64,
    pub send_externally: bool,
    pub phone_number: String,
    pub text: String,
}

impl AppointmentReminder {
    /// Parses one appointment reminder; `what` names it in errors.
    pub fn from_json(value: &Value, what: &str) -> Result<AppointmentReminder, String> {
        let obj = Fields::new(value, what)?;
        let send_externally = match obj.get("send_externally") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(v) => return Err(obj.wrong("send_externally", "a boolean", v)),
        };
        Ok(AppointmentReminder {
            id: obj.i64("id")?,
            send_externally,
            phone_number: obj.string("phone_number")?,
            text: text_field(&obj)?,
        })
    }

    pub fn into_text(self) -> ReminderText {
        ReminderText {
            id: self.id,
            kind: ReminderKind::AppointmentReminder,
            phone_number: self.phone_number,
            text: self.text,
        }
    }
}

fn text_field(obj: &Fields<'_>) -> Result<String, String> {
    match obj.first_present(TEXT_FIELDS) {
        Some((_, Value::String(s))) => Ok(s.clone()),
        Some((name, v)) => Err(obj.wrong(name, "a string", v)),
        None => Err(format!(
            "{}: missing field `message` (or `sms_text`, `text`; these names are assumed, see src/provet/reminders.rs)",
            obj.what()
        )),
    }
}

impl ProvetClient {
    /// `GET reminder/<id>/`.
    pub async fn get_reminder(&self, id: i64) -> Result<Reminder, ProvetError> {
        let what = format!("reminder {id}");
        let value = self.get_json(&format!("reminder/{id}/")).await?;
        let r = Reminder::from_json(&value, &what).map_err(ProvetError::BadResponse)?;
        check_id(r.id, id, &what)?;
        Ok(r)
    }

    /// `GET reminder/?send_method=4` and every `next` page, keeping only items that say
    /// `send_method: 4` (the filter may be ignored by the server). Items that do not parse are
    /// an error naming the item, not skipped: a skipped reminder is a reminder never sent.
    pub async fn list_external_reminders(&self) -> Result<Vec<Reminder>, ProvetError> {
        let path = format!("reminder/?send_method={SEND_METHOD_EXTERNAL}");
        let items = self.list_all(&path, "reminder list").await?;
        let mut out = Vec::new();
        for (i, v) in items.iter().enumerate() {
            if v.get("send_method").and_then(Value::as_i64) != Some(SEND_METHOD_EXTERNAL) {
                continue;
            }
            let what = match v.get("id").and_then(Value::as_i64) {
                Some(id) => format!("reminder {id} (list item {i})"),
                None => format!("reminder list item {i}"),
            };
            out.push(Reminder::from_json(v, &what).map_err(ProvetError::BadResponse)?);
        }
        Ok(out)
    }

    /// `GET appointment_reminder/<id>/`.
    pub async fn get_appointment_reminder(&self, id: i64) -> Result<AppointmentReminder, ProvetError> {
        let what = format!("appointment_reminder {id}");
        let value = self.get_json(&format!("appointment_reminder/{id}/")).await?;
        let r = AppointmentReminder::from_json(&value, &what).map_err(ProvetError::BadResponse)?;
        check_id(r.id, id, &what)?;
        Ok(r)
    }

    /// `POST appointment_reminder/<id>/mark_external_sending/`: Provet will not send it itself.
    pub async fn mark_external_sending(&self, id: i64) -> Result<(), ProvetError> {
        self.post(&format!("appointment_reminder/{id}/mark_external_sending/"), Body::Empty).await.map(drop)
    }

    /// `POST appointment_reminder/<id>/mark_sent/`.
    pub async fn mark_sent(&self, id: i64) -> Result<(), ProvetError> {
        self.post(&format!("appointment_reminder/{id}/mark_sent/"), Body::Empty).await.map(drop)
    }

    /// Fetches a reminder of either kind as a [`ReminderText`]. A `reminder` whose
    /// `send_method` is not 4 is refused: Provet sends those itself, and sending it here too
    /// would reach the client twice.
    pub async fn fetch_reminder_text(&self, kind: ReminderKind, id: i64) -> Result<ReminderText, ProvetError> {
        match kind {
            ReminderKind::Reminder => {
                let r = self.get_reminder(id).await?;
                if !r.is_external() {
                    return Err(ProvetError::BadResponse(format!(
                        "reminder {id}: send_method is {}, not {SEND_METHOD_EXTERNAL} (External); Provet sends it itself, so smshub does not",
                        r.send_method.map_or("missing".to_string(), |m| m.to_string())
                    )));
                }
                Ok(r.into_text())
            }
            ReminderKind::AppointmentReminder => Ok(self.get_appointment_reminder(id).await?.into_text()),
        }
    }
}

fn check_id(got: i64, asked: i64, what: &str) -> Result<(), ProvetError> {
    if got == asked { Ok(()) } else { Err(ProvetError::BadResponse(format!("{what}: the answer is for id {got}"))) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reminders_parse_with_any_of_the_assumed_text_fields() {
        for field in TEXT_FIELDS {
            let v = json!({"id": 3, "send_method": 4, "phone_number": "+358401234567", *field: "Rex is due", "x": 1});
            let r = Reminder::from_json(&v, "reminder 3").unwrap();
            assert_eq!(r.text, "Rex is due", "{field}");
            assert!(r.is_external());
        }
    }

    #[test]
    fn message_wins_over_the_other_text_fields() {
        let v = json!({"id": 3, "phone_number": "+1", "text": "b", "message": "a"});
        assert_eq!(Reminder::from_json(&v, "reminder 3").unwrap().text, "a");
    }

    #[test]
    fn reminders_missing_fields_are_refused_naming_them() {
        let cases: &[(Value, &str)] = &[
            (json!({"id": 3, "send_method": 4, "message": "m"}), "reminder 3: missing field `phone_number`"),
            (
                json!({"id": 3, "phone_number": "+1"}),
                "reminder 3: missing field `message` (or `sms_text`, `text`; these names are assumed",
            ),
            (json!({"id": 3, "phone_number": "+1", "message": 5}), "field `message` should be a string"),
            (json!({"id": 3, "phone_number": "+1", "message": "m", "send_method": "4"}), "`send_method` should be"),
            (json!({"phone_number": "+1", "message": "m"}), "missing field `id`"),
        ];
        for (v, expected) in cases {
            let err = Reminder::from_json(v, "reminder 3").unwrap_err();
            assert!(err.contains(expected), "{v}: {err}");
        }
    }

    #[test]
    fn appointment_reminders_default_send_externally_to_false() {
        let v = json!({"id": 9, "phone_number": "+358401234567", "message": "See you"});
        let a = AppointmentReminder::from_json(&v, "appointment_reminder 9").unwrap();
        assert!(!a.send_externally);
        let t = a.into_text();
        assert_eq!(t.kind, ReminderKind::AppointmentReminder);
        assert_eq!((t.id, t.text.as_str()), (9, "See you"));
        let v = json!({"id": 9, "phone_number": "+1", "message": "m", "send_externally": "yes"});
        let err = AppointmentReminder::from_json(&v, "appointment_reminder 9").unwrap_err();
        assert!(err.contains("`send_externally` should be a boolean"), "{err}");
    }

    #[test]
    fn reminder_kinds_round_trip_through_their_names() {
        for k in [ReminderKind::Reminder, ReminderKind::AppointmentReminder] {
            assert_eq!(ReminderKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(ReminderKind::parse("sms"), None);
    }
}
