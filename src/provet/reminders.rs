//! Reminders and appointment reminders: their shape as Provet serves it, and how smshub turns
//! one into a number and a text (or refuses it with a reason). Facts and sources: docs/provet.md.
//!
//! # What is known (docs/provet.md §2)
//! - A reminder (`GET reminder/<id>/`) has **no `id` field**: its id is the last path segment of
//!   `url` (`…/api/0.1/reminder/2/`). Its text is `sms_text`, which may be empty; with
//!   `text_manually: false` the text comes from `reminder_template` (a URL), whose own `sms_text`
//!   holds placeholders such as `[[patient_name]]`. `phone_number` may be `""`: then the client's
//!   numbers apply (`GET phonenumber/?client__is=<id>`, `preferred_reminders` first). It also has
//!   `send_method` (4 = External: Provet does not send it), `planned_sending_date`,
//!   `expiry_date`, `client`, `patient`, `department` (URLs).
//! - A client has `no_sms`, `firstname`, `lastname`, `organization_name`; a patient `name`; a
//!   department `name`.
//! - List filters are `field__method=value` (`send_method__is=4`).
//! - Appointment reminders: `send_externally`, `mark_external_sending/`, `mark_sent/` (seed 000).
//!   Their other fields are not published anywhere we found; they are read like a reminder
//!   (`id` or `url`, `sms_text` or the older guesses `message`/`text`, `phone_number`, `client`).
//!
//! # Refusals
//! Everything Provet sends is treated as hostile: sizes, counts and lengths are bounded, and an
//! object that does not fit refuses that one reminder with a sentence saying why (a
//! [`ReminderError::Refused`]); nothing here panics on outside data. A refused reminder is never
//! sent: no text (empty `sms_text` and no usable template), a placeholder smshub cannot fill, no
//! usable number, `no_sms` on the client, `send_method` not 4, expired.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::client::{ProvetClient, ProvetError};
use super::http::Body;
use super::model::Fields;

/// `send_method` value meaning "External": Provet does not send it (the only documented value).
pub const SEND_METHOD_EXTERNAL: i64 = 4;

/// Fields tried, in order, for a reminder's SMS text (`sms_text` is the real one; the others are
/// the wave-1 guesses, still read for appointment reminders whose shape is unpublished).
const TEXT_FIELDS: &[&str] = &["sms_text", "message", "text"];

/// The longest text smshub sends for a reminder (ten concatenated GSM-7 parts); a longer one is
/// refused rather than cut.
pub const MAX_TEXT_CHARS: usize = 1530;

/// The longest template text read; a longer one is refused.
const MAX_TEMPLATE_CHARS: usize = 8000;

/// Longest value put into a placeholder (names); longer values are cut.
const MAX_VALUE_CHARS: usize = 100;

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

    fn path(self) -> &'static str {
        match self {
            ReminderKind::Reminder => "reminder",
            ReminderKind::AppointmentReminder => "appointment_reminder",
        }
    }
}

/// A reminder ready to send: the number as Provet stores it and the final text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReminderText {
    pub id: i64,
    pub kind: ReminderKind,
    /// As Provet stores it; parse with [`crate::phone::PhoneNumber::parse`].
    pub phone_number: String,
    pub text: String,
}

/// Why a reminder was not turned into a text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReminderError {
    /// A Provet call failed (retry, fail or settle as for any call).
    Provet(ProvetError),
    /// The reminder cannot or must not be sent; the sentence says why. Recorded, never retried.
    Refused(String),
}

impl From<ProvetError> for ReminderError {
    fn from(e: ProvetError) -> Self {
        ReminderError::Provet(e)
    }
}

impl std::fmt::Display for ReminderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReminderError::Provet(e) => e.fmt(f),
            ReminderError::Refused(why) => f.write_str(why),
        }
    }
}

/// A reminder or appointment reminder as served (see the module doc).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reminder {
    pub id: i64,
    pub kind: ReminderKind,
    pub send_method: Option<i64>,
    /// Appointment reminders only; missing reads as false (the documented default).
    pub send_externally: bool,
    /// May be empty: then the client's numbers apply.
    pub phone_number: String,
    /// May be empty: then the template's text applies.
    pub sms_text: String,
    pub template: Option<i64>,
    pub client: Option<i64>,
    pub patient: Option<i64>,
    pub department: Option<i64>,
    /// `YYYY-MM-DD` as served (checked to be a date when used).
    pub planned_sending_date: Option<String>,
    pub expiry_date: Option<String>,
}

impl Reminder {
    /// Parses one reminder of `kind`; `what` names it in errors.
    pub fn from_json(value: &Value, kind: ReminderKind, what: &str) -> Result<Reminder, String> {
        let obj = Fields::new(value, what)?;
        let id = match obj.opt_i64("id")? {
            Some(id) => id,
            None => match obj.get("url") {
                Some(Value::String(url)) => id_from_url(url)
                    .ok_or_else(|| format!("{what}: `url` does not end in a numeric id, so the reminder has no id"))?,
                Some(v) => return Err(obj.wrong("url", "a string", v)),
                None => return Err(format!("{what}: neither `id` nor `url` is present, so the reminder has no id")),
            },
        };
        let send_externally = match obj.get("send_externally") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(v) => return Err(obj.wrong("send_externally", "a boolean", v)),
        };
        let sms_text = match obj.first_present(TEXT_FIELDS) {
            Some((_, Value::String(s))) => s.clone(),
            Some((name, v)) => return Err(obj.wrong(name, "a string", v)),
            None => String::new(),
        };
        Ok(Reminder {
            id,
            kind,
            send_method: obj.opt_i64("send_method")?,
            send_externally,
            phone_number: obj.opt_string("phone_number")?.unwrap_or_default(),
            sms_text,
            template: object_ref(&obj, "reminder_template")?,
            client: object_ref(&obj, "client")?,
            patient: object_ref(&obj, "patient")?,
            department: object_ref(&obj, "department")?,
            planned_sending_date: obj.opt_string("planned_sending_date")?,
            expiry_date: obj.opt_string("expiry_date")?,
        })
    }

    /// Whether Provet leaves this reminder to an external sender (`send_method == 4`).
    pub fn is_external(&self) -> bool {
        self.send_method == Some(SEND_METHOD_EXTERNAL)
    }

    /// The day after which the reminder must not be sent (`expiry_date`), as days since
    /// 1970-01-01; an unreadable date is a refusal, not "never expires".
    pub fn expiry_day(&self) -> Result<Option<i64>, String> {
        match self.expiry_date.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
            None => Ok(None),
            Some(s) => parse_day(s)
                .map(Some)
                .ok_or_else(|| format!("{} {}: `expiry_date` is not a date (YYYY-MM-DD)", self.kind.as_str(), self.id)),
        }
    }
}

/// The id at the end of an API URL (`…/api/0.1/reminder/2/` → 2): the last non-empty path
/// segment, digits only, positive, at most 18 digits (fits `i64`).
pub fn id_from_url(url: &str) -> Option<i64> {
    let path = url.split(['?', '#']).next().unwrap_or("");
    let last = path.trim_end_matches('/').rsplit('/').next()?;
    if last.is_empty() || last.len() > 18 || !last.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    last.parse().ok().filter(|&id: &i64| id > 0)
}

/// A link to another object: an integer id, a URL ending in one, or null/empty (none).
fn object_ref(obj: &Fields<'_>, field: &str) -> Result<Option<i64>, String> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => id_from_url(s)
            .map(Some)
            .ok_or_else(|| format!("{}: `{field}` is not a URL ending in a numeric id", obj.what())),
        Some(v @ Value::Number(n)) => {
            n.as_i64().filter(|&i| i > 0).map(Some).ok_or_else(|| obj.wrong(field, "a positive id", v))
        }
        Some(v) => Err(obj.wrong(field, "a URL", v)),
    }
}

/// Days since 1970-01-01 of a `YYYY-MM-DD` date (a longer ISO date-time is read by its date).
pub fn parse_day(s: &str) -> Option<i64> {
    let s = s.trim();
    let date = s.get(..10)?;
    let b = date.as_bytes();
    if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = date.get(r)?;
        part.bytes().all(|c| c.is_ascii_digit()).then(|| part.parse().ok())?
    };
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let days = crate::pdu::days_from_civil(y, m, d);
    // 2023-02-31 would silently become 2023-03-03: refuse dates that do not round-trip.
    (format_day(days) == date).then_some(days)
}

/// `YYYY-MM-DD` of days since 1970-01-01.
pub fn format_day(days: i64) -> String {
    let (y, m, d) = crate::pdu::civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Today (UTC) as days since 1970-01-01.
pub fn today() -> i64 {
    crate::store::now_ms().div_euclid(86_400_000)
}

/// A client as far as reminders need it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Client {
    pub id: i64,
    pub no_sms: bool,
    /// `firstname lastname`, else `organization_name`; empty when Provet has none.
    pub name: String,
    pub first_name: String,
    pub last_name: String,
}

impl Client {
    pub fn from_json(value: &Value, what: &str) -> Result<Client, String> {
        let obj = Fields::new(value, what)?;
        let id = match obj.opt_i64("id")? {
            Some(id) => id,
            None => obj.opt_string("url")?.as_deref().and_then(id_from_url).unwrap_or(0),
        };
        let no_sms = match obj.get("no_sms") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(v) => return Err(obj.wrong("no_sms", "a boolean", v)),
        };
        let first_name = bounded(&obj.opt_string("firstname")?.unwrap_or_default());
        let last_name = bounded(&obj.opt_string("lastname")?.unwrap_or_default());
        let org = bounded(&obj.opt_string("organization_name")?.unwrap_or_default());
        let full = format!("{first_name} {last_name}").trim().to_string();
        Ok(Client { id, no_sms, name: if full.is_empty() { org } else { full }, first_name, last_name })
    }
}

/// The values a template may ask for. `None`: smshub cannot fill it (unknown placeholder, or
/// the object it comes from is missing) and the reminder is refused.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Values {
    pub patient_name: Option<String>,
    pub client: Option<Client>,
    pub clinic_name: Option<String>,
    pub expiry_date: Option<String>,
    pub planned_sending_date: Option<String>,
}

/// Placeholders smshub can fill from the API.
pub const PLACEHOLDERS: &[&str] = &[
    "patient_name",
    "client_name",
    "client_firstname",
    "client_lastname",
    "clinic_name",
    "expiry_date",
    "planned_sending_date",
];

impl Values {
    fn get(&self, name: &str) -> Option<String> {
        let client = self.client.as_ref();
        match name {
            "patient_name" => self.patient_name.clone(),
            "client_name" => client.map(|c| c.name.clone()),
            "client_firstname" => client.map(|c| c.first_name.clone()),
            "client_lastname" => client.map(|c| c.last_name.clone()),
            "clinic_name" => self.clinic_name.clone(),
            "expiry_date" => self.expiry_date.clone(),
            "planned_sending_date" => self.planned_sending_date.clone(),
            _ => None,
        }
        .filter(|v| !v.trim().is_empty())
    }
}

/// The `[[name]]` placeholders of `text`, in order (names are `[a-z0-9_]`, at most 40 bytes;
/// anything else between brackets is text).
pub fn placeholders(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("[[") {
        let after = &rest[start + 2..];
        match after.find("]]") {
            Some(end) if is_name(&after[..end]) => {
                out.push(&after[..end]);
                rest = &after[end + 2..];
            }
            _ => rest = after,
        }
    }
    out
}

fn is_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 40 && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Fills every placeholder of `text`; a placeholder without a value refuses the whole text
/// (naming every such placeholder), because "Your [[patient_name]] is due" must not reach a client.
pub fn render(text: &str, values: &Values) -> Result<String, String> {
    let missing: Vec<&str> = placeholders(text).into_iter().filter(|p| values.get(p).is_none()).collect();
    if !missing.is_empty() {
        let mut names: Vec<String> = missing.iter().map(|m| format!("[[{m}]]")).collect();
        names.dedup();
        return Err(format!(
            "the text has placeholders smshub cannot fill: {} (it fills {})",
            names.join(", "),
            PLACEHOLDERS.iter().map(|p| format!("[[{p}]]")).collect::<Vec<_>>().join(", ")
        ));
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("[[") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find("]]").filter(|&end| is_name(&after[..end])) {
            Some(end) => {
                out.push_str(&values.get(&after[..end]).unwrap_or_default());
                rest = &after[end + 2..];
            }
            None => {
                out.push_str("[[");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// A name from Provet as it may appear in an SMS: control characters removed, at most
/// [`MAX_VALUE_CHARS`].
fn bounded(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(MAX_VALUE_CHARS).collect::<String>().trim().to_string()
}

impl ProvetClient {
    /// `GET reminder/<id>/` or `GET appointment_reminder/<id>/`.
    pub async fn get_reminder(&self, kind: ReminderKind, id: i64) -> Result<Reminder, ProvetError> {
        let what = format!("{} {id}", kind.as_str());
        let value = self.get_json(&format!("{}/{id}/", kind.path())).await?;
        let r = Reminder::from_json(&value, kind, &what).map_err(ProvetError::BadResponse)?;
        if r.id != id {
            return Err(ProvetError::BadResponse(format!("{what}: the answer is for id {}", r.id)));
        }
        Ok(r)
    }

    /// `GET reminder/?send_method__is=4&planned_sending_date__lte=<today>` and every `next`
    /// page, keeping only items that say `send_method: 4` (in case a filter is ignored). Each
    /// item is parsed on its own: `Err((id if readable, reason))` for one that does not parse.
    pub async fn list_due_reminders(&self, today: i64) -> Result<Vec<Result<Reminder, ListedError>>, ProvetError> {
        let path =
            format!("reminder/?send_method__is={SEND_METHOD_EXTERNAL}&planned_sending_date__lte={}", format_day(today));
        let items = self.list_all(&path, "reminder list").await?;
        let mut out = Vec::new();
        for (i, v) in items.iter().enumerate() {
            if v.get("send_method").and_then(Value::as_i64) != Some(SEND_METHOD_EXTERNAL) {
                continue;
            }
            let what = format!("reminder list item {i}");
            out.push(Reminder::from_json(v, ReminderKind::Reminder, &what).map_err(|reason| ListedError {
                id: v.get("url").and_then(Value::as_str).and_then(id_from_url),
                reason,
            }));
        }
        Ok(out)
    }

    /// `GET client/<id>/`.
    pub async fn get_client(&self, id: i64) -> Result<Client, ProvetError> {
        let what = format!("client {id}");
        let value = self.get_json(&format!("client/{id}/")).await?;
        Client::from_json(&value, &what).map_err(ProvetError::BadResponse)
    }

    /// Whether Provet has a client with this number: `GET client/?phonenumbers__icontains=<n>`
    /// (first page; any result counts).
    pub async fn has_client_with_number(&self, number: &str) -> Result<bool, ProvetError> {
        let q: String = form_urlencoded::byte_serialize(number.as_bytes()).collect();
        let what = "client search by number";
        let value = self.get_json(&format!("client/?phonenumbers__icontains={q}")).await?;
        let page = super::model::Page::from_json(&value, what).map_err(ProvetError::BadResponse)?;
        Ok(page.count.is_some_and(|c| c > 0) || !page.results.is_empty())
    }

    /// The `name` of `GET <path><id>/` (a patient or a department), bounded.
    async fn name_of(&self, path: &str, id: i64) -> Result<Option<String>, ProvetError> {
        let what = format!("{path} {id}");
        let value = self.get_json(&format!("{path}/{id}/")).await?;
        let obj = Fields::new(&value, &what).map_err(ProvetError::BadResponse)?;
        Ok(obj.opt_string("name").map_err(ProvetError::BadResponse)?.map(|n| bounded(&n)))
    }

    /// The template's `sms_text` (`GET remindertemplate/<id>/`), bounded.
    async fn template_text(&self, id: i64) -> Result<String, ReminderError> {
        let what = format!("reminder template {id}");
        let value = self.get_json(&format!("remindertemplate/{id}/")).await?;
        let obj = Fields::new(&value, &what).map_err(ProvetError::BadResponse)?;
        let text = obj.opt_string("sms_text").map_err(ProvetError::BadResponse)?.unwrap_or_default();
        if text.chars().count() > MAX_TEMPLATE_CHARS {
            return Err(ReminderError::Refused(format!(
                "{what}: its SMS text is longer than {MAX_TEMPLATE_CHARS} characters"
            )));
        }
        Ok(text)
    }

    /// A reminder turned into a number and a text, or refused with the reason (module doc).
    /// `r` is the reminder as fetched; the client, patient, department and template are fetched
    /// only when needed.
    pub async fn reminder_text(&self, r: &Reminder) -> Result<ReminderText, ReminderError> {
        let what = format!("{} {}", r.kind.as_str(), r.id);
        let refuse = |why: String| Err(ReminderError::Refused(format!("{what}: {why}")));
        let what = what.as_str();
        if r.kind == ReminderKind::Reminder && !r.is_external() {
            return refuse(format!(
                "send_method is {}, not {SEND_METHOD_EXTERNAL} (External); Provet sends it itself, so smshub does not",
                r.send_method.map_or("missing".to_string(), |m| m.to_string())
            ));
        }
        // A 404 on a linked object is this reminder's problem, not "already settled" (which is
        // what a 404 on the reminder itself means): refuse it, naming the object.
        let gone = |object: String| {
            move |e: ProvetError| match e {
                ProvetError::NotFound => {
                    ReminderError::Refused(format!("{what}: its {object} does not exist in Provet (404)"))
                }
                other => ReminderError::Provet(other),
            }
        };
        let client = match r.client {
            Some(id) => Some(self.get_client(id).await.map_err(gone(format!("client {id}")))?),
            None => None,
        };
        if client.as_ref().is_some_and(|c| c.no_sms) {
            return refuse("the client does not want SMS (no_sms is set in Provet)".into());
        }
        let text = if !r.sms_text.trim().is_empty() {
            r.sms_text.clone()
        } else if let Some(t) = r.template {
            let text = self.template_text(t).await.map_err(|e| match e {
                ReminderError::Refused(why) => ReminderError::Refused(format!("{what}: {why}")),
                ReminderError::Provet(e) => gone(format!("reminder template {t}"))(e),
            })?;
            if text.trim().is_empty() {
                return refuse(format!("its sms_text is empty and so is the SMS text of reminder template {t}"));
            }
            text
        } else {
            return refuse("its sms_text is empty and it has no reminder template: there is nothing to send".into());
        };
        let wanted = placeholders(&text);
        let mut values = Values {
            client,
            expiry_date: r.expiry_date.clone(),
            planned_sending_date: r.planned_sending_date.clone(),
            ..Values::default()
        };
        if wanted.contains(&"patient_name")
            && let Some(p) = r.patient
        {
            values.patient_name = self.name_of("patient", p).await.map_err(gone(format!("patient {p}")))?;
        }
        if wanted.contains(&"clinic_name")
            && let Some(d) = r.department
        {
            values.clinic_name = self.name_of("department", d).await.map_err(gone(format!("department {d}")))?;
        }
        let text = match render(&text, &values) {
            Ok(t) => t.trim().to_string(),
            Err(why) => return refuse(why),
        };
        if text.is_empty() {
            return refuse("its text is empty after filling the template".into());
        }
        if text.chars().count() > MAX_TEXT_CHARS {
            return refuse(format!("its text is longer than {MAX_TEXT_CHARS} characters"));
        }
        let phone_number = if !r.phone_number.trim().is_empty() {
            r.phone_number.clone()
        } else {
            let Some(c) = r.client else {
                return refuse("its phone_number is empty and it has no client to take a number from".into());
            };
            // Preferred first, empty ones left out: the first is the one.
            let numbers = self.client_phone_numbers(c).await.map_err(gone(format!("client {c}'s phone numbers")))?;
            match numbers.into_iter().next() {
                Some(n) => n.phone_number,
                None => return refuse(format!("its phone_number is empty and client {c} has no phone number")),
            }
        };
        Ok(ReminderText { id: r.id, kind: r.kind, phone_number, text })
    }

    /// `POST appointment_reminder/<id>/mark_external_sending/`: Provet will not send it itself.
    pub async fn mark_external_sending(&self, id: i64) -> Result<(), ProvetError> {
        self.post(&format!("appointment_reminder/{id}/mark_external_sending/"), Body::Empty).await.map(drop)
    }

    /// `POST appointment_reminder/<id>/mark_sent/`.
    pub async fn mark_sent(&self, id: i64) -> Result<(), ProvetError> {
        self.post(&format!("appointment_reminder/{id}/mark_sent/"), Body::Empty).await.map(drop)
    }
}

/// A listed reminder that did not parse: its id when the `url` gave one, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedError {
    pub id: Option<i64>,
    pub reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The fixture of EmCousin/provet-client `spec/fixtures/reminders/show.json`, trimmed.
    fn fixture() -> Value {
        json!({
            "url": "https://us.provetcloud.com/1234/api/0.1/reminder/2/",
            "department": "https://us.provetcloud.com/1234/api/0.1/department/1/",
            "reminder_template": null,
            "patient": "https://us.provetcloud.com/1234/api/0.1/patient/2/",
            "client": "https://us.provetcloud.com/1234/api/0.1/client/2/",
            "email_address": "anakin@example.com", "phone_number": "", "email_subject": "You have an appointment",
            "email_text": "", "sms_text": "", "post_text": "", "text_manually": false, "send_before": 3,
            "send_method": 1, "expiry_date": "2020-02-24", "planned_sending_date": "2020-02-21", "status": 0,
            "created": "2020-02-20T04:53:25-05:00", "recurring_type": null, "external_url": null
        })
    }

    #[test]
    fn the_public_fixture_parses_with_its_id_taken_from_the_url() {
        let r = Reminder::from_json(&fixture(), ReminderKind::Reminder, "reminder 2").unwrap();
        assert_eq!(r.id, 2);
        assert_eq!((r.client, r.patient, r.department, r.template), (Some(2), Some(2), Some(1), None));
        assert_eq!((r.phone_number.as_str(), r.sms_text.as_str()), ("", ""));
        assert!(!r.is_external());
        assert_eq!(r.expiry_day().unwrap(), parse_day("2020-02-24"));
    }

    #[test]
    fn ids_come_only_from_numeric_last_segments() {
        assert_eq!(id_from_url("https://h/1/api/0.1/reminder/2/"), Some(2));
        assert_eq!(id_from_url("https://h/1/api/0.1/reminder/17"), Some(17));
        assert_eq!(id_from_url("https://h/1/api/0.1/reminder/17/?x=1"), Some(17));
        for bad in ["", "/", "https://h/reminder/", "https://h/reminder/x1/", "https://h/r/-3/", "https://h/r/0/"] {
            assert_eq!(id_from_url(bad), None, "{bad}");
        }
        assert_eq!(id_from_url(&format!("https://h/r/{}/", "9".repeat(19))), None, "too long for i64");
        let mut v = fixture();
        v["url"] = json!("https://h/1/api/0.1/reminder/abc/");
        let err = Reminder::from_json(&v, ReminderKind::Reminder, "reminder list item 0").unwrap_err();
        assert!(err.contains("does not end in a numeric id"), "{err}");
        v.as_object_mut().unwrap().remove("url");
        let err = Reminder::from_json(&v, ReminderKind::Reminder, "x").unwrap_err();
        assert!(err.contains("neither `id` nor `url`"), "{err}");
    }

    #[test]
    fn hostile_fields_refuse_the_reminder_naming_the_field() {
        let cases: &[(&str, Value, &str)] = &[
            ("sms_text", json!(5), "field `sms_text` should be a string"),
            ("client", json!({"x": 1}), "field `client` should be a URL"),
            ("client", json!("https://h/client/x/"), "`client` is not a URL ending in a numeric id"),
            ("patient", json!(-3), "field `patient` should be a positive id, got a number"),
            ("send_method", json!("4"), "`send_method` should be"),
            ("url", json!(7), "field `url` should be a string"),
            ("send_externally", json!("yes"), "`send_externally` should be a boolean"),
        ];
        for (field, value, expected) in cases {
            let mut v = fixture();
            v[*field] = value.clone();
            let err = Reminder::from_json(&v, ReminderKind::Reminder, "reminder 2").unwrap_err();
            assert!(err.contains(expected), "{field}: {err}");
        }
        assert!(Reminder::from_json(&json!([1]), ReminderKind::Reminder, "r").is_err());
    }

    #[test]
    fn dates_are_checked_and_round_trip() {
        assert_eq!(parse_day("1970-01-02"), Some(1));
        assert_eq!(parse_day("2020-02-20T04:53:25-05:00"), parse_day("2020-02-20"));
        assert_eq!(format_day(parse_day("2024-02-29").unwrap()), "2024-02-29");
        for bad in
            ["2023-02-29", "2023-13-01", "2023-1-01", "20230101", "", "yesterday", "2023-02-3x", "２０２３-01-01"]
        {
            assert_eq!(parse_day(bad), None, "{bad}");
        }
        let mut v = fixture();
        v["expiry_date"] = json!("soon");
        let r = Reminder::from_json(&v, ReminderKind::Reminder, "reminder 2").unwrap();
        assert!(r.expiry_day().unwrap_err().contains("`expiry_date` is not a date"));
    }

    #[test]
    fn templates_render_known_placeholders_and_refuse_unknown_ones() {
        let values = Values {
            patient_name: Some("Rex".into()),
            client: Some(Client { id: 1, name: "Helmut Eldridge".into(), ..Client::default() }),
            clinic_name: Some("Clinic 1".into()),
            expiry_date: Some("2020-02-24".into()),
            planned_sending_date: None,
        };
        let t = "Hi [[client_name]], [[patient_name]] expires [[expiry_date]]. [[clinic_name]] [x] [[ not ]]";
        assert_eq!(render(t, &values).unwrap(), "Hi Helmut Eldridge, Rex expires 2020-02-24. Clinic 1 [x] [[ not ]]");
        // The public template fixture asks for [[clinic_telephone]] and [[onlinebooking_url]].
        let fixture =
            "Your [[patient_name]] needs an update. Please contact [[clinic_telephone]] or [[onlinebooking_url]].";
        let err = render(fixture, &values).unwrap_err();
        assert!(err.contains("[[clinic_telephone]], [[onlinebooking_url]]"), "{err}");
        // A known placeholder without a value is as unrenderable as an unknown one.
        let err = render("[[planned_sending_date]]", &values).unwrap_err();
        assert!(err.contains("[[planned_sending_date]]"), "{err}");
        assert_eq!(placeholders("[[a]]x[[b]] [[B]]"), ["a", "b"]);
        assert_eq!(render("[[", &values).unwrap(), "[[");
    }

    #[test]
    fn clients_and_numbers_parse_and_preferred_numbers_come_first() {
        let c =
            json!({"id": 1, "firstname": "Helmut", "lastname": "Eldridge\u{7}", "no_sms": false, "phone_numbers": []});
        let c = Client::from_json(&c, "client 1").unwrap();
        assert_eq!((c.name.as_str(), c.no_sms), ("Helmut Eldridge", false));
        let org = Client::from_json(&json!({"id": 2, "organization_name": "Farm Ltd", "no_sms": true}), "c").unwrap();
        assert_eq!((org.name.as_str(), org.no_sms), ("Farm Ltd", true));
        assert!(Client::from_json(&json!({"no_sms": "no"}), "client 3").unwrap_err().contains("`no_sms`"));
        let long = Client::from_json(&json!({"firstname": "x".repeat(10_000)}), "c").unwrap();
        assert_eq!(long.name.chars().count(), MAX_VALUE_CHARS);
    }

    #[test]
    fn reminder_kinds_round_trip_through_their_names() {
        for k in [ReminderKind::Reminder, ReminderKind::AppointmentReminder] {
            assert_eq!(ReminderKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(ReminderKind::parse("sms"), None);
    }
}
