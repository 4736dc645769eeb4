//! Checks a Provet custom-integration request: the brown button on Provet's reminders page,
//! set to "Send HTTP request", which POSTs the selected reminder ids to smshub (seed 001).
//!
//! # Verification (PROTOCOLS.md §1, "Custom integration verification hash")
//! Provet adds a parameter `verification`: an MD5 digest of the timestamp and the verification
//! salt. Provet's own example was not available, so smshub decides: verification = lowercase
//! hex MD5 of (the timestamp string exactly as received, followed by the salt), the timestamp in
//! a parameter `timestamp` holding Unix seconds. Both parameter names come from the config. The
//! hex digest is compared in constant time (case-insensitively), and the timestamp must be at
//! most `max_age` old and at most [`MAX_FUTURE_SKEW`] in the future. Provet's option "Include
//! payload in verification hash" is not supported: it must be off, and a request made with it
//! fails as a bad hash (the error says so).
//!
//! # Reminder ids
//! Seed 001: "The reminder ID for each selected reminder will be sent as parameters", under the
//! parameter name set in the integration ("Parameter name", e.g. `id`), optionally with a static
//! prefix in the value (`id=reminder_` sends `reminder_123`). The exact encoding of several ids
//! is not documented, so all of these are accepted and merged, in order, without duplicates:
//! - the parameter repeated: `id=1&id=2` (how a form with several values is usually encoded),
//! - comma-separated: `ids=1,2` or `id=1,2`,
//! - PHP/Rails style `id[]=1&id[]=2`.
//!
//! A value may carry a prefix of letters, `_` or `-` before its digits (`reminder_123` → 123).
//! The setup guide should tell the clinic to use the parameter name `id` and no prefix.
//!
//! Errors say what is wrong and never contain the salt or the expected digest.

use std::time::Duration;

use md5::{Digest, Md5};

use crate::config::CustomIntegrationConfig;

/// How far in the future a timestamp may be (clock difference between Provet and the box).
pub const MAX_FUTURE_SKEW: Duration = Duration::from_secs(5 * 60);

/// Most reminders one click may queue: a day's reminders of a busy clinic fit many times over,
/// and one request cannot make the box queue (and the SIM send) thousands.
pub const MAX_IDS: usize = 500;

/// Parameter names that carry reminder ids.
pub const ID_PARAMS: &[&str] = &["id", "ids", "id[]"];

/// Why a custom-integration request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("custom integration request has no `{param}` parameter: enable \"Add verification hash\" in Provet")]
    MissingTimestamp { param: String },
    #[error("custom integration request has no `{param}` parameter: enable \"Add verification hash\" in Provet")]
    MissingVerification { param: String },
    #[error("custom integration request has the parameter `{param}` more than once")]
    Repeated { param: String },
    #[error("custom integration request: `{param}` is not a Unix time in seconds: {reason}")]
    BadTimestamp { param: String, reason: String },
    #[error(
        "custom integration request: the verification hash does not match: check that the salt in smshub's config \
         equals Provet's \"Verification salt\" and that \"Include payload in verification hash\" is off"
    )]
    BadHash,
    #[error(
        "custom integration request is {age_s} s old, more than the allowed {max_age_s} s (custom_integration.max_age_s)"
    )]
    Stale { age_s: i64, max_age_s: u64 },
    #[error("custom integration request is timestamped {ahead_s} s in the future: check the clock of this box (NTP)")]
    Future { ahead_s: i64 },
    #[error("custom integration request carries no reminder id (expected `id`, `ids` or `id[]`)")]
    NoIds,
    #[error("custom integration request selects more than {max} reminders; select fewer per click")]
    TooManyIds { max: usize },
    #[error("custom integration request: `{param}` value {value:?} is not a reminder id")]
    BadId { param: String, value: String },
}

/// Verifies `params` (the decoded form or query parameters, in order) and returns the selected
/// reminder ids. `now_unix` is the current Unix time in seconds.
pub fn verify(
    params: &[(String, String)],
    cfg: &CustomIntegrationConfig,
    now_unix: i64,
) -> Result<Vec<i64>, VerifyError> {
    verify_hash(params, cfg, cfg.max_age, now_unix)?;
    let ids = reminder_ids(params)?;
    if ids.is_empty() {
        return Err(VerifyError::NoIds);
    }
    Ok(ids)
}

/// Checks only the verification hash and the timestamp's age (at most `max_age` old, at most
/// [`MAX_FUTURE_SKEW`] ahead): the reminders button adds its ids, the side panel its client.
pub fn verify_hash(
    params: &[(String, String)],
    cfg: &CustomIntegrationConfig,
    max_age: Duration,
    now_unix: i64,
) -> Result<(), VerifyError> {
    let timestamp = single(params, &cfg.timestamp_param)?
        .ok_or_else(|| VerifyError::MissingTimestamp { param: cfg.timestamp_param.clone() })?;
    let received = single(params, &cfg.verification_param)?
        .ok_or_else(|| VerifyError::MissingVerification { param: cfg.verification_param.clone() })?;

    let expected = expected_hash(timestamp, cfg.salt.expose());
    if !constant_time_eq(expected.as_bytes(), received.trim().to_ascii_lowercase().as_bytes()) {
        return Err(VerifyError::BadHash);
    }

    let ts = parse_unix_seconds(timestamp)
        .map_err(|reason| VerifyError::BadTimestamp { param: cfg.timestamp_param.clone(), reason })?;
    let age = now_unix.saturating_sub(ts);
    let max_age = max_age.as_secs();
    if age > i64::try_from(max_age).unwrap_or(i64::MAX) {
        return Err(VerifyError::Stale { age_s: age, max_age_s: max_age });
    }
    let skew = i64::try_from(MAX_FUTURE_SKEW.as_secs()).unwrap_or(i64::MAX);
    if -age > skew {
        return Err(VerifyError::Future { ahead_s: -age });
    }
    Ok(())
}

/// The verification value Provet is expected to send: hex MD5 of timestamp + salt.
pub fn expected_hash(timestamp: &str, salt: &str) -> String {
    let digest = Md5::new().chain_update(timestamp.as_bytes()).chain_update(salt.as_bytes()).finalize();
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The value of a parameter that must appear at most once.
fn single<'a>(params: &'a [(String, String)], name: &str) -> Result<Option<&'a str>, VerifyError> {
    let mut found = None;
    for (k, v) in params {
        if k == name {
            if found.is_some() {
                return Err(VerifyError::Repeated { param: name.to_string() });
            }
            found = Some(v.as_str());
        }
    }
    Ok(found)
}

/// Unix seconds, integer or with a fraction (Python's `time.time()` has one); the fraction is
/// dropped.
fn parse_unix_seconds(s: &str) -> Result<i64, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("it is empty".into());
    }
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    if whole.is_empty() || whole.len() > 18 || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return Err("expected digits such as 1718000000".into());
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return Err("expected digits after the decimal point".into());
    }
    whole.parse::<i64>().map_err(|e| e.to_string())
}

/// All reminder ids in [`ID_PARAMS`], in order of appearance, without duplicates.
fn reminder_ids(params: &[(String, String)]) -> Result<Vec<i64>, VerifyError> {
    let mut ids = Vec::new();
    for (name, value) in params.iter().filter(|(k, _)| ID_PARAMS.contains(&k.as_str())) {
        for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let id = parse_id(part)
                .ok_or_else(|| VerifyError::BadId { param: name.clone(), value: part.chars().take(40).collect() })?;
            if !ids.contains(&id) {
                if ids.len() == MAX_IDS {
                    return Err(VerifyError::TooManyIds { max: MAX_IDS });
                }
                ids.push(id);
            }
        }
    }
    Ok(ids)
}

/// `123` or `prefix_123` (a Provet "prefixed parameter value": a letter, then letters,
/// `_` or `-`) → 123.
fn parse_id(s: &str) -> Option<i64> {
    let digits_at = s.find(|c: char| c.is_ascii_digit())?;
    let (prefix, digits) = s.split_at(digits_at);
    let prefix_ok = prefix.is_empty()
        || (prefix.starts_with(|c: char| c.is_ascii_alphabetic())
            && prefix.chars().all(|c| c.is_ascii_alphabetic() || c == '_' || c == '-'));
    if !prefix_ok {
        return None;
    }
    if digits.len() > 18 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<i64>().ok().filter(|id| *id > 0)
}

/// Compares without an early exit, so the time taken does not tell how much of a guess matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    const NOW: i64 = 1_718_000_000;
    const SALT: &str = "s3cret-salt";

    fn cfg() -> CustomIntegrationConfig {
        CustomIntegrationConfig {
            salt: Secret::new(SALT),
            max_age: Duration::from_secs(12 * 3600),
            timestamp_param: "timestamp".into(),
            verification_param: "verification".into(),
            panel_max_age: crate::config::DEFAULT_PANEL_MAX_AGE,
            client_param: "id".into(),
            frame_ancestors: Vec::new(),
        }
    }

    fn signed(ts: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut p = vec![("timestamp".to_string(), ts.to_string()), ("verification".into(), expected_hash(ts, SALT))];
        p.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        p
    }

    fn params(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn more_than_max_ids_is_refused_without_reading_them_all() {
        let ts = NOW.to_string();
        let many: String = (1..=MAX_IDS + 1).map(|i| i.to_string()).collect::<Vec<_>>().join(",");
        assert_eq!(verify(&signed(&ts, &[("ids", &many)]), &cfg(), NOW), Err(VerifyError::TooManyIds { max: MAX_IDS }));
        let enough: String = (1..=MAX_IDS).map(|i| i.to_string()).collect::<Vec<_>>().join(",");
        assert_eq!(verify(&signed(&ts, &[("ids", &enough)]), &cfg(), NOW).map(|ids| ids.len()), Ok(MAX_IDS));
        let repeated = vec!["7"; 10_000].join(",");
        assert_eq!(verify(&signed(&ts, &[("ids", &repeated)]), &cfg(), NOW), Ok(vec![7]), "repeats are not counted");
    }

    #[test]
    fn expected_hash_is_md5_of_timestamp_then_salt() {
        // Computed independently: printf '%s' '1718000000s3cret-salt' | md5sum
        assert_eq!(expected_hash("1718000000", SALT), "e1be17849496cfdd8c3fe08969b309e3");
        // RFC 1321 test vector, to pin the algorithm itself.
        assert_eq!(expected_hash("abc", ""), "900150983cd24fb0d6963f7d28e17f72");
    }

    #[test]
    fn verification_table() {
        let now = NOW.to_string();
        let hour_ago = (NOW - 3600).to_string();
        let stale = (NOW - 13 * 3600).to_string();
        let soon = (NOW + 120).to_string();
        let future = (NOW + 600).to_string();
        let with_fraction = format!("{NOW}.25");
        let bad_hash = params(&[("timestamp", &now), ("verification", &"0".repeat(32)), ("id", "1")]);
        let upper = params(&[
            ("timestamp", &now),
            ("verification", &expected_hash(&now, SALT).to_ascii_uppercase()),
            ("id", "1"),
        ]);
        let wrong_salt = params(&[("timestamp", &now), ("verification", &expected_hash(&now, "other")), ("id", "1")]);
        let mut twice = signed(&now, &[("id", "1")]);
        twice.push(("timestamp".into(), now.clone()));
        type Params = Vec<(String, String)>;
        type Expect = Result<Vec<i64>, &'static str>;
        let cases: Vec<(&str, Params, Expect)> = vec![
            ("valid, one id", signed(&now, &[("id", "5")]), Ok(vec![5])),
            ("valid, an hour old", signed(&hour_ago, &[("id", "5")]), Ok(vec![5])),
            ("valid, slightly in the future", signed(&soon, &[("id", "5")]), Ok(vec![5])),
            ("valid, fractional timestamp", signed(&with_fraction, &[("id", "5")]), Ok(vec![5])),
            ("valid, uppercase hex", upper, Ok(vec![1])),
            ("repeated id", signed(&now, &[("id", "1"), ("id", "2"), ("id", "3")]), Ok(vec![1, 2, 3])),
            ("comma-separated ids", signed(&now, &[("ids", "4, 5,6,")]), Ok(vec![4, 5, 6])),
            ("comma-separated in id", signed(&now, &[("id", "7,8")]), Ok(vec![7, 8])),
            ("bracket form", signed(&now, &[("id[]", "9"), ("id[]", "10")]), Ok(vec![9, 10])),
            ("mixed forms, duplicates merged", signed(&now, &[("id", "1"), ("ids", "2,1")]), Ok(vec![1, 2])),
            ("prefixed value", signed(&now, &[("id", "reminder_42")]), Ok(vec![42])),
            ("stale", signed(&stale, &[("id", "1")]), Err("46800 s old, more than the allowed 43200 s")),
            ("future", signed(&future, &[("id", "1")]), Err("600 s in the future")),
            ("bad hash", bad_hash, Err("verification hash does not match")),
            ("wrong salt", wrong_salt, Err("verification hash does not match")),
            ("missing timestamp", params(&[("verification", "x"), ("id", "1")]), Err("no `timestamp` parameter")),
            ("missing verification", params(&[("timestamp", &now), ("id", "1")]), Err("no `verification` parameter")),
            ("timestamp twice", twice, Err("`timestamp` more than once")),
            ("no ids", signed(&now, &[("other", "1")]), Err("carries no reminder id")),
            ("empty ids", signed(&now, &[("ids", "")]), Err("carries no reminder id")),
            ("bad id", signed(&now, &[("id", "12x")]), Err("`id` value \"12x\" is not a reminder id")),
            ("negative id", signed(&now, &[("id", "-3")]), Err("is not a reminder id")),
            ("zero id", signed(&now, &[("id", "0")]), Err("is not a reminder id")),
            ("iso timestamp", signed("2024-06-10T06:13:20Z", &[("id", "1")]), Err("not a Unix time in seconds")),
            ("empty timestamp", signed("", &[("id", "1")]), Err("it is empty")),
        ];
        for (name, p, expected) in cases {
            let got = verify(&p, &cfg(), NOW);
            match (&got, &expected) {
                (Ok(ids), Ok(want)) => assert_eq!(ids, want, "{name}"),
                (Err(e), Err(want)) => {
                    let text = e.to_string();
                    assert!(text.contains(want), "{name}: {text}");
                    assert!(!text.contains(SALT), "{name}: the salt leaks: {text}");
                }
                _ => panic!("{name}: got {got:?}, expected {expected:?}"),
            }
        }
    }

    #[test]
    fn parameter_names_come_from_the_config() {
        let mut c = cfg();
        c.timestamp_param = "ts".into();
        c.verification_param = "hash".into();
        let now = NOW.to_string();
        let p = params(&[("ts", &now), ("hash", &expected_hash(&now, SALT)), ("id", "3")]);
        assert_eq!(verify(&p, &c, NOW), Ok(vec![3]));
        let err = verify(&signed(&now, &[("id", "3")]), &c, NOW).unwrap_err();
        assert_eq!(err, VerifyError::MissingTimestamp { param: "ts".into() });
    }

    #[test]
    fn the_timestamp_is_hashed_exactly_as_received() {
        // "0001718000000" is the same instant, but a different string: its own hash works, the
        // hash of the canonical form does not.
        let padded = format!("000{NOW}");
        assert_eq!(verify(&signed(&padded, &[("id", "1")]), &cfg(), NOW), Ok(vec![1]));
        let p =
            params(&[("timestamp", &padded), ("verification", &expected_hash(&NOW.to_string(), SALT)), ("id", "1")]);
        assert_eq!(verify(&p, &cfg(), NOW), Err(VerifyError::BadHash));
    }

    #[test]
    fn constant_time_eq_compares_whole_slices() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(constant_time_eq(b"", b""));
    }
}
