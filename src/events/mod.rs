//! Event webhooks (seed 003's envelope): what happened, posted to the clinic's own systems.
//!
//! The store writes each event in the transaction of the change it describes
//! (`store/events.rs`); this module turns a stored event into the envelope a receiver reads,
//! signs it, and delivers it ([`deliver::EventWebhooks`]), logging every attempt. `modem.rs`
//! watches each modem and writes `modem.online` / `modem.offline`.
//!
//! Envelope v2: `{"version": "2.0", "id": <uuid>, "type": ..., "created": <epoch s>,
//! "clinic_code": ..., "data": {...}}`; v1 has `account_code` instead of `clinic_code` and every
//! number inside `data` written as a string (seed 003 shows both). Exactly these six keys.
//! `X-Smshub-Signature: sha256=<hex HMAC-SHA256(secret, raw body)>`.

pub mod deliver;
pub mod modem;

use serde_json::Value;

use crate::config::EnvelopeVersion;
use crate::store::DueEvent;

/// The request body for `event` in `version`'s envelope.
pub fn envelope(version: EnvelopeVersion, clinic_code: &str, event: &DueEvent) -> String {
    let (code_key, data) = match version {
        EnvelopeVersion::V2 => ("clinic_code", event.data.clone()),
        EnvelopeVersion::V1 => ("account_code", numbers_as_strings(event.data.clone())),
    };
    let s = |v: &str| Value::String(v.to_string()).to_string();
    format!(
        "{{\"version\":{},\"id\":{},\"type\":{},\"created\":{},\"{code_key}\":{},\"data\":{}}}",
        s(version.as_str()),
        s(&event.uid),
        s(&event.event_type),
        event.created_at.div_euclid(1000),
        s(clinic_code),
        data
    )
}

/// v1 receivers read ids and times as strings ("28540", "1546950546").
fn numbers_as_strings(v: Value) -> Value {
    match v {
        Value::Number(n) => Value::String(n.to_string()),
        Value::Array(items) => Value::Array(items.into_iter().map(numbers_as_strings).collect()),
        Value::Object(map) => Value::Object(map.into_iter().map(|(k, v)| (k, numbers_as_strings(v))).collect()),
        other => other,
    }
}

/// `sha256=<lowercase hex HMAC-SHA256(secret, body)>`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let tag = ring::hmac::sign(&key, body);
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// `url` as the call log shows it: user info dropped and query values masked, since both may
/// hold a receiver's secret.
pub fn url_for_log(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let (authority, path) = match rest.find(['/', '?', '#']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (path, query) = path.split_once('?').map_or((path, None), |(p, q)| (p, Some(q)));
    let mut out = if scheme.is_empty() { host.to_string() } else { format!("{scheme}://{host}") };
    out.push_str(path);
    if let Some(q) = query {
        let q = q.split('#').next().unwrap_or("");
        let masked: Vec<String> =
            q.split('&').map(|kv| kv.split_once('=').map_or(kv.to_string(), |(k, _)| format!("{k}=****"))).collect();
        out.push('?');
        out.push_str(&masked.join("&"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event() -> DueEvent {
        DueEvent {
            event_id: 7,
            uid: "5c34979c-30dc-496c-8cd3-6eb9925862c1".into(),
            event_type: "sms.sent".into(),
            created_at: 1_546_950_556_789,
            data: json!({"id": 28540, "to": "+358401234567", "parts": 2, "nested": {"n": 1.5, "ok": true}, "none": null}),
            webhook: "w".into(),
            attempts: 0,
        }
    }

    #[test]
    fn the_v2_envelope_has_exactly_the_six_keys_in_order_with_numbers_as_numbers() {
        let body = envelope(EnvelopeVersion::V2, "vet-1", &event());
        assert!(body.starts_with(r#"{"version":"2.0","id":"5c34979c-30dc-496c-8cd3-6eb9925862c1","type":"sms.sent","created":1546950556,"clinic_code":"vet-1","data":{"#), "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v.as_object().unwrap().len(), 6);
        assert_eq!(v["data"]["id"], json!(28540));
        assert_eq!(v["data"]["nested"]["n"], json!(1.5));
    }

    #[test]
    fn the_v1_envelope_says_account_code_and_writes_numbers_as_strings() {
        let v: Value = serde_json::from_str(&envelope(EnvelopeVersion::V1, "vet-1", &event())).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys.len(), 6);
        assert!(keys.contains(&"account_code") && !keys.contains(&"clinic_code"));
        assert_eq!(v["version"], json!("1.0"));
        assert_eq!(v["created"], json!(1546950556), "the envelope's own time stays a number, as in seed 003");
        assert_eq!(v["data"]["id"], json!("28540"));
        assert_eq!(v["data"]["parts"], json!("2"));
        assert_eq!(v["data"]["nested"]["n"], json!("1.5"));
        assert_eq!(v["data"]["nested"]["ok"], json!(true));
        assert_eq!(v["data"]["none"], Value::Null);
    }

    #[test]
    fn hostile_strings_stay_inside_their_json_strings() {
        let mut e = event();
        e.uid = "\"},\"x\":\"".into();
        let v: Value = serde_json::from_str(&envelope(EnvelopeVersion::V2, "a\"b\\c\u{0}", &e)).unwrap();
        assert_eq!(v.as_object().unwrap().len(), 6);
        assert_eq!(v["clinic_code"], json!("a\"b\\c\u{0}"));
    }

    #[test]
    fn the_signature_is_hmac_sha256_in_lowercase_hex() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn urls_in_the_call_log_lose_user_info_and_query_values() {
        assert_eq!(
            url_for_log("https://u:p@example.org:8443/hook?token=abc&x=1#f"),
            "https://example.org:8443/hook?token=****&x=****"
        );
        assert_eq!(url_for_log("http://10.0.0.5/in"), "http://10.0.0.5/in");
        assert_eq!(url_for_log("http://host"), "http://host");
        assert_eq!(url_for_log("http://host?flag"), "http://host?flag");
    }
}
