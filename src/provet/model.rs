//! The shapes Provet answers with, parsed from JSON by hand so that every error names the object
//! and the field (`external_sms 123: missing field `phone_number``).
//!
//! Why not plain `#[derive(Deserialize)]`: serde's "invalid type" errors do not say which field
//! was wrong, and the person reading the log needs exactly that. Unknown fields are ignored on
//! purpose: Provet adds fields to its API without notice, and a new field must not stop SMS.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// One SMS Provet wants the gateway to send (`GET external_sms/<id>/`, PROTOCOLS.md §1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExternalSms {
    pub id: i64,
    pub message: String,
    /// As Provet stores it; parse with [`crate::phone::PhoneNumber::parse`] before sending.
    pub phone_number: String,
    pub client_id: Option<i64>,
    pub consultation_id: Option<i64>,
    pub patient_ids: Vec<i64>,
    pub created_date: Option<String>,
}

impl ExternalSms {
    /// Parses one `external_sms` object. `what` names it in errors (e.g. `external_sms 123`).
    pub fn from_json(value: &Value, what: &str) -> Result<ExternalSms, String> {
        let obj = Fields::new(value, what)?;
        Ok(ExternalSms {
            id: obj.i64("id")?,
            message: obj.string("message")?,
            phone_number: obj.string("phone_number")?,
            client_id: obj.opt_i64("client_id")?,
            consultation_id: obj.opt_i64("consultation_id")?,
            patient_ids: obj.i64_list("patient_ids")?,
            created_date: obj.opt_string("created_date")?,
        })
    }
}

/// One page of a Provet list endpoint: `{count, num_pages?, next, previous, results}`
/// (developers.provetcloud.com/restapi/pagination.html).
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub count: Option<u64>,
    pub next: Option<String>,
    pub results: Vec<Value>,
}

impl Page {
    /// Parses a page; the items stay JSON so each can be parsed (and reported) on its own.
    pub fn from_json(value: &Value, what: &str) -> Result<Page, String> {
        let obj = Fields::new(value, what)?;
        let count = match obj.get("count") {
            None | Some(Value::Null) => None,
            Some(v) => Some(v.as_u64().ok_or_else(|| obj.wrong("count", "a non-negative integer", v))?),
        };
        let results = match obj.get("results") {
            Some(Value::Array(items)) => items.clone(),
            Some(other) => return Err(obj.wrong("results", "an array", other)),
            None => return Err(obj.missing("results")),
        };
        Ok(Page { count, next: obj.opt_string("next")?, results })
    }
}

/// A JSON object being read field by field, with errors that name `what` and the field.
pub(crate) struct Fields<'a> {
    what: &'a str,
    map: &'a Map<String, Value>,
}

impl<'a> Fields<'a> {
    pub(crate) fn new(value: &'a Value, what: &'a str) -> Result<Fields<'a>, String> {
        match value {
            Value::Object(map) => Ok(Fields { what, map }),
            other => Err(format!("{what}: expected a JSON object, got {}", kind(other))),
        }
    }

    /// What the object is, for messages (`external_sms 123`).
    pub(crate) fn what(&self) -> &str {
        self.what
    }

    pub(crate) fn get(&self, field: &str) -> Option<&'a Value> {
        self.map.get(field)
    }

    /// The first of `names` that is present and not null (for documented aliases).
    pub(crate) fn first_present(&self, names: &[&'static str]) -> Option<(&'static str, &'a Value)> {
        names.iter().find_map(|n| match self.map.get(*n) {
            None | Some(Value::Null) => None,
            Some(v) => Some((*n, v)),
        })
    }

    pub(crate) fn missing(&self, field: &str) -> String {
        format!("{}: missing field `{field}`", self.what)
    }

    pub(crate) fn wrong(&self, field: &str, expected: &str, got: &Value) -> String {
        format!("{}: field `{field}` should be {expected}, got {}", self.what, kind(got))
    }

    pub(crate) fn i64(&self, field: &str) -> Result<i64, String> {
        match self.map.get(field) {
            None | Some(Value::Null) => Err(self.missing(field)),
            Some(v) => v.as_i64().ok_or_else(|| self.wrong(field, "an integer", v)),
        }
    }

    pub(crate) fn opt_i64(&self, field: &str) -> Result<Option<i64>, String> {
        match self.map.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v.as_i64().map(Some).ok_or_else(|| self.wrong(field, "an integer or null", v)),
        }
    }

    pub(crate) fn string(&self, field: &str) -> Result<String, String> {
        match self.map.get(field) {
            None | Some(Value::Null) => Err(self.missing(field)),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(v) => Err(self.wrong(field, "a string", v)),
        }
    }

    pub(crate) fn opt_string(&self, field: &str) -> Result<Option<String>, String> {
        match self.map.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(v) => Err(self.wrong(field, "a string or null", v)),
        }
    }

    /// A list of integers; missing or null reads as empty (Provet leaves it out when empty).
    pub(crate) fn i64_list(&self, field: &str) -> Result<Vec<i64>, String> {
        match self.map.get(field) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(items)) => {
                items.iter().map(|v| v.as_i64().ok_or_else(|| self.wrong(field, "an array of integers", v))).collect()
            }
            Some(v) => Err(self.wrong(field, "an array of integers", v)),
        }
    }
}

/// The JSON kind of a value, for error messages (never the value itself: it may be personal data).
pub(crate) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_documented_example_parses() {
        let v = json!({"id":123, "message":"test message", "phone_number":"+358401234567", "client_id":2,
            "consultation_id":null, "patient_ids":[4], "created_date":"2025-02-14"});
        let sms = ExternalSms::from_json(&v, "external_sms 123").unwrap();
        assert_eq!(
            sms,
            ExternalSms {
                id: 123,
                message: "test message".into(),
                phone_number: "+358401234567".into(),
                client_id: Some(2),
                consultation_id: None,
                patient_ids: vec![4],
                created_date: Some("2025-02-14".into()),
            }
        );
    }

    #[test]
    fn unknown_fields_are_ignored_and_optional_fields_may_be_absent() {
        let v = json!({"id":5, "message":"m", "phone_number":"+358401234567", "new_field": {"x": 1}});
        let sms = ExternalSms::from_json(&v, "external_sms 5").unwrap();
        assert_eq!(sms.client_id, None);
        assert!(sms.patient_ids.is_empty());
    }

    #[test]
    fn malformed_objects_are_refused_naming_the_field() {
        let cases: &[(Value, &str)] = &[
            (json!({"id":1, "message":"m"}), "external_sms 1: missing field `phone_number`"),
            (json!({"id":1, "message":"m", "phone_number":null}), "missing field `phone_number`"),
            (json!({"message":"m", "phone_number":"+1"}), "missing field `id`"),
            (json!({"id":"1", "message":"m", "phone_number":"+1"}), "field `id` should be an integer, got a string"),
            (json!({"id":1, "message":7, "phone_number":"+1"}), "field `message` should be a string, got a number"),
            (
                json!({"id":1, "message":"m", "phone_number":"+1", "patient_ids":[1,"x"]}),
                "field `patient_ids` should be an array of integers",
            ),
            (
                json!({"id":1, "message":"m", "phone_number":"+1", "client_id":"2"}),
                "field `client_id` should be an integer or null",
            ),
            (json!([1, 2]), "expected a JSON object, got an array"),
        ];
        for (value, expected) in cases {
            let err = ExternalSms::from_json(value, "external_sms 1").unwrap_err();
            assert!(err.contains(expected), "{value}: {err}");
        }
    }

    #[test]
    fn errors_do_not_echo_values() {
        let v = json!({"id":1, "message":"secret text", "phone_number":4012345});
        let err = ExternalSms::from_json(&v, "external_sms 1").unwrap_err();
        assert!(!err.contains("4012345"), "{err}");
    }

    #[test]
    fn pages_parse_with_and_without_num_pages() {
        let v = json!({"count": 3, "num_pages": 2, "next": "https://h/1/api/0.1/external_sms/?page=2",
            "previous": null, "results": [{"id": 1}]});
        let p = Page::from_json(&v, "external_sms list").unwrap();
        assert_eq!(p.count, Some(3));
        assert_eq!(p.next.as_deref(), Some("https://h/1/api/0.1/external_sms/?page=2"));
        assert_eq!(p.results.len(), 1);
        let v = json!({"next": null, "results": []});
        assert_eq!(Page::from_json(&v, "l").unwrap().next, None);
        let err = Page::from_json(&json!({"next": null}), "external_sms list").unwrap_err();
        assert_eq!(err, "external_sms list: missing field `results`");
        let err = Page::from_json(&json!({"results": {}}), "l").unwrap_err();
        assert!(err.contains("`results` should be an array"), "{err}");
    }
}
