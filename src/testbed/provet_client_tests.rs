//! The client against [`FakeProvet`] over real HTTP on 127.0.0.1: tokens, retries that are part
//! of the protocol, error classification, pagination, timeouts and the `mark_failed` fallback.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::fake_provet::{Failure, FakeOptions, FakeProvet, Mark};
use crate::config::{ProvetConfig, Secret};
use crate::provet::{
    ClientConfigError, ListBounds, MarkFailedForm, ProvetClient, ProvetError, ReminderError, ReminderKind, ReminderText,
};

/// Upper bound for anything that should finish quickly; only there so a bug hangs no test.
const HANG_GUARD: Duration = Duration::from_secs(60);

async fn setup(opts: FakeOptions) -> (FakeProvet, ProvetClient) {
    let fake = FakeProvet::start(opts).await.unwrap();
    let client = ProvetClient::new(&fake.client_config("clinic")).unwrap();
    (fake, client)
}

async fn setup_default() -> (FakeProvet, ProvetClient) {
    setup(FakeOptions::default()).await
}

fn token_calls(fake: &FakeProvet) -> usize {
    fake.calls().iter().filter(|c| c.path.ends_with("/oauth2/token/")).count()
}

fn calls_to(fake: &FakeProvet, suffix: &str) -> Vec<super::fake_provet::RecordedCall> {
    fake.calls().into_iter().filter(|c| c.path.ends_with(suffix)).collect()
}

#[tokio::test]
async fn one_token_serves_many_calls() {
    let (fake, client) = setup_default().await;
    let ids: Vec<i64> = (0..3).map(|i| fake.add_sms("+358401234567", &format!("m{i}"))).collect();
    for _ in 0..5 {
        for id in &ids {
            assert_eq!(client.get_external_sms(*id).await.unwrap().id, *id);
        }
    }
    assert_eq!(client.list_external_sms().await.unwrap().len(), 3);
    assert_eq!(token_calls(&fake), 1);
    assert_eq!(fake.tokens_issued(), 1);
}

#[tokio::test]
async fn a_401_fetches_a_new_token_once_and_the_call_succeeds() {
    let (fake, client) = setup_default().await;
    let id = fake.add_sms("+358401234567", "hello");
    client.get_external_sms(id).await.unwrap();
    fake.fail_next(1, Failure::Unauthorized);
    let sms = client.get_external_sms(id).await.unwrap();
    assert_eq!(sms.message, "hello");
    assert_eq!(fake.tokens_issued(), 2);
    let gets: Vec<u16> = calls_to(&fake, &format!("/external_sms/{id}/")).iter().map(|c| c.status).collect();
    assert_eq!(gets, vec![200, 401, 200]);
}

#[tokio::test]
async fn a_second_401_with_a_fresh_token_is_an_auth_error_not_a_loop() {
    let (fake, client) = setup_default().await;
    let id = fake.add_sms("+358401234567", "hello");
    fake.fail_next(5, Failure::Unauthorized);
    let err = client.get_external_sms(id).await.unwrap_err();
    assert!(matches!(&err, ProvetError::Auth(m) if m.contains("freshly issued token")), "{err}");
    assert!(!err.is_retryable());
    assert_eq!(fake.tokens_issued(), 2);
    assert_eq!(calls_to(&fake, &format!("/external_sms/{id}/")).len(), 2);
}

#[tokio::test]
async fn tokens_expired_mid_run_are_replaced_transparently() {
    let (fake, client) = setup_default().await;
    let a = fake.add_sms("+358401234567", "a");
    let b = fake.add_sms("+358401234567", "b");
    client.get_external_sms(a).await.unwrap();
    fake.expire_tokens();
    client.get_external_sms(b).await.unwrap();
    client.mark_successful(a).await.unwrap();
    client.mark_successful(b).await.unwrap();
    assert_eq!(fake.tokens_issued(), 2);
    assert_eq!(fake.marks(), vec![(a, Mark::Successful), (b, Mark::Successful)]);
}

#[tokio::test]
async fn tokens_are_renewed_a_minute_before_they_expire() {
    // expires_in 61 s leaves 1 s of cache; after that the client must fetch a new token
    // by itself, without first being refused with a 401.
    let (fake, client) = setup(FakeOptions { token_expires_in: 61, ..FakeOptions::default() }).await;
    let id = fake.add_sms("+358401234567", "a");
    client.get_external_sms(id).await.unwrap();
    client.get_external_sms(id).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    client.get_external_sms(id).await.unwrap();
    assert_eq!(fake.tokens_issued(), 2);
    assert!(fake.calls().iter().all(|c| c.status != 401), "{:?}", fake.calls());
}

#[tokio::test]
async fn concurrent_calls_share_one_token_fetch() {
    let (fake, client) = setup_default().await;
    let id = fake.add_sms("+358401234567", "a");
    let client = Arc::new(client);
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let c = client.clone();
            tokio::spawn(async move { c.get_external_sms(id).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(fake.tokens_issued(), 1);
}

#[tokio::test]
async fn lists_follow_next_across_three_pages() {
    let (fake, client) = setup(FakeOptions { page_size: 2, ..FakeOptions::default() }).await;
    let ids: Vec<i64> = (0..5).map(|i| fake.add_sms("+358401234567", &format!("m{i}"))).collect();
    let listed: Vec<i64> = client.list_external_sms().await.unwrap().iter().map(|s| s.id).collect();
    assert_eq!(listed, ids);
    let pages: Vec<String> =
        fake.calls().into_iter().filter(|c| c.path.contains("/external_sms/")).map(|c| c.path).collect();
    assert_eq!(
        pages,
        vec!["/4321/api/0.1/external_sms/", "/4321/api/0.1/external_sms/?page=2", "/4321/api/0.1/external_sms/?page=3"]
    );
}

#[tokio::test]
async fn an_empty_list_is_one_call() {
    let (fake, client) = setup_default().await;
    assert!(client.list_external_sms().await.unwrap().is_empty());
    assert_eq!(calls_to(&fake, "/external_sms/").len(), 1);
}

#[tokio::test]
async fn a_next_link_to_another_host_is_refused() {
    let (fake, client) = setup(FakeOptions { page_size: 1, ..FakeOptions::default() }).await;
    fake.add_sms("+358401234567", "a");
    fake.add_sms("+358401234567", "b");
    fake.set_next_base(Some("http://attacker.example:8080/4321/api/0.1/".into()));
    let err = client.list_external_sms().await.unwrap_err();
    assert!(matches!(&err, ProvetError::BadResponse(m) if m.contains("another host (attacker.example:8080)")), "{err}");
    // The same host under another port is another server too.
    let other_port = format!("http://127.0.0.1:{}/4321/api/0.1/", fake.addr().port().wrapping_add(1));
    fake.set_next_base(Some(other_port));
    assert!(matches!(client.list_external_sms().await, Err(ProvetError::BadResponse(_))));
}

#[tokio::test]
async fn a_429_surfaces_retry_after_in_seconds_or_as_a_date() {
    let (fake, client) = setup_default().await;
    let id = fake.add_sms("+358401234567", "a");
    fake.fail_next(1, Failure::RateLimited { retry_after: Some("7".into()) });
    let err = client.get_external_sms(id).await.unwrap_err();
    assert_eq!(err, ProvetError::RateLimited { retry_after: Some(Duration::from_secs(7)) });
    assert!(err.is_retryable());

    let in_a_minute = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(90));
    fake.fail_next(1, Failure::RateLimited { retry_after: Some(in_a_minute) });
    match client.get_external_sms(id).await {
        Err(ProvetError::RateLimited { retry_after: Some(d) }) => {
            assert!(d > Duration::from_secs(60) && d <= Duration::from_secs(90), "{d:?}")
        }
        other => panic!("{other:?}"),
    }

    fake.fail_next(1, Failure::RateLimited { retry_after: None });
    assert_eq!(client.get_external_sms(id).await, Err(ProvetError::RateLimited { retry_after: None }));
    // And the next call goes through.
    assert_eq!(client.get_external_sms(id).await.unwrap().id, id);
}

#[tokio::test]
async fn server_errors_are_transient_and_other_4xx_permanent() {
    let (fake, client) = setup_default().await;
    let id = fake.add_sms("+358401234567", "a");
    for code in [500, 502, 503, 504] {
        fake.fail_next(1, Failure::Status(code));
        let err = client.get_external_sms(id).await.unwrap_err();
        assert!(matches!(&err, ProvetError::Transient(m) if m.contains(&code.to_string())), "{code}: {err}");
        assert!(err.is_retryable());
    }
    fake.fail_next(1, Failure::Status(403));
    match client.mark_successful(id).await {
        Err(ProvetError::Permanent { status: 403, body_excerpt }) => assert!(body_excerpt.contains("injected")),
        other => panic!("{other:?}"),
    }
    assert!(fake.marks().is_empty());
}

#[tokio::test]
async fn unknown_and_already_marked_sms_are_not_found() {
    let (fake, client) = setup_default().await;
    assert_eq!(client.get_external_sms(999).await, Err(ProvetError::NotFound));
    let id = fake.add_sms("+358401234567", "a");
    client.mark_successful(id).await.unwrap();
    assert_eq!(client.mark_successful(id).await, Err(ProvetError::NotFound));
    assert_eq!(client.mark_failed(id, "x").await, Err(ProvetError::NotFound));
    assert_eq!(client.get_external_sms(id).await, Err(ProvetError::NotFound));
    assert_eq!(fake.marks(), vec![(id, Mark::Successful)]);
}

#[tokio::test]
async fn a_stalled_call_times_out_as_transient() {
    let fake = FakeProvet::start(FakeOptions::default()).await.unwrap();
    let cfg = ProvetConfig { request_timeout: Duration::from_secs(1), ..fake.client_config("clinic") };
    let client = ProvetClient::new(&cfg).unwrap();
    let id = fake.add_sms("+358401234567", "a");
    client.get_external_sms(id).await.unwrap();

    fake.fail_next(1, Failure::Stall);
    let err = tokio::time::timeout(HANG_GUARD, client.get_external_sms(id)).await.unwrap().unwrap_err();
    assert!(matches!(&err, ProvetError::Transient(m) if m.contains("no complete answer within 1 s")), "{err}");

    // A stalled token endpoint too (the token has to be fetched again first).
    fake.expire_tokens();
    fake.fail_next_token(1, Failure::Stall);
    let err = tokio::time::timeout(HANG_GUARD, client.get_external_sms(id)).await.unwrap().unwrap_err();
    assert!(matches!(&err, ProvetError::Transient(m) if m.contains("token")), "{err}");

    // Everything stalls: still bounded.
    fake.set_stall(true);
    let err = tokio::time::timeout(HANG_GUARD, client.list_external_sms()).await.unwrap().unwrap_err();
    assert!(err.is_retryable(), "{err}");
    fake.set_stall(false);
    assert_eq!(client.get_external_sms(id).await.unwrap().id, id);
    fake.stop().await;
}

#[tokio::test]
async fn slow_answers_within_the_timeout_succeed() {
    let (fake, client) = setup_default().await;
    let id = fake.add_sms("+358401234567", "a");
    fake.set_latency(Duration::from_millis(200));
    assert_eq!(client.get_external_sms(id).await.unwrap().id, id);
}

#[tokio::test]
async fn a_refused_json_mark_failed_falls_back_to_an_empty_post_and_remembers_it() {
    let (fake, client) = setup_default().await;
    fake.reject_json_mark_failed(true);
    let a = fake.add_sms("+358401234567", "a");
    let b = fake.add_sms("+358401234567", "b");
    assert_eq!(client.mark_failed_form(), None);

    client.mark_failed(a, "+CMS ERROR: 21").await.unwrap();
    let tries: Vec<(u16, String)> =
        calls_to(&fake, &format!("/external_sms/{a}/mark_failed/")).into_iter().map(|c| (c.status, c.body)).collect();
    assert_eq!(tries, vec![(400, r#"{"reason":"+CMS ERROR: 21"}"#.to_string()), (200, String::new())]);
    assert_eq!(client.mark_failed_form(), Some(MarkFailedForm::Empty));

    client.mark_failed(b, "+CMS ERROR: 21").await.unwrap();
    let tries: Vec<(u16, String)> =
        calls_to(&fake, &format!("/external_sms/{b}/mark_failed/")).into_iter().map(|c| (c.status, c.body)).collect();
    assert_eq!(tries, vec![(200, String::new())]);
    assert_eq!(
        fake.marks(),
        vec![
            (a, Mark::Failed { reason: None, body: String::new() }),
            (b, Mark::Failed { reason: None, body: String::new() }),
        ]
    );
}

#[tokio::test]
async fn an_accepted_json_mark_failed_carries_the_reason() {
    let (fake, client) = setup_default().await;
    let a = fake.add_sms("+358401234567", "a");
    let long = "x".repeat(500);
    client.mark_failed(a, &long).await.unwrap();
    assert_eq!(client.mark_failed_form(), Some(MarkFailedForm::Json));
    match &fake.marks()[..] {
        [(id, Mark::Failed { reason: Some(r), .. })] => {
            assert_eq!(*id, a);
            assert_eq!(r.chars().count(), 200, "the reason is cut to 200 characters");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_remembered_empty_form_is_used_directly() {
    let (fake, client) = setup_default().await;
    client.set_mark_failed_form(Some(MarkFailedForm::Empty));
    let a = fake.add_sms("+358401234567", "a");
    client.mark_failed(a, "reason").await.unwrap();
    assert_eq!(fake.marks(), vec![(a, Mark::Failed { reason: None, body: String::new() })]);
    assert_eq!(calls_to(&fake, "/mark_failed/").len(), 1);
}

#[tokio::test]
async fn malformed_answers_are_bad_responses_naming_the_field() {
    let (fake, client) = setup_default().await;
    fake.put_raw_sms(77, serde_json::json!({"id": 77, "message": "x"}));
    let err = client.get_external_sms(77).await.unwrap_err();
    assert_eq!(err, ProvetError::BadResponse("external_sms 77: missing field `phone_number`".into()));
    assert!(!err.is_retryable());

    let err = client.list_external_sms().await.unwrap_err();
    assert!(
        matches!(&err, ProvetError::BadResponse(m) if m.contains("external_sms 77 (list item 0): missing field `phone_number`")),
        "{err}"
    );

    fake.put_raw_sms(78, serde_json::json!({"id": 5, "message": "x", "phone_number": "+358401234567"}));
    let err = client.get_external_sms(78).await.unwrap_err();
    assert!(matches!(&err, ProvetError::BadResponse(m) if m.contains("the answer is for id 5")), "{err}");
}

#[tokio::test]
async fn wrong_credentials_are_an_auth_error() {
    let fake = FakeProvet::start(FakeOptions::default()).await.unwrap();
    let cfg = ProvetConfig { client_secret: Secret::new("wrong"), ..fake.client_config("clinic") };
    let client = ProvetClient::new(&cfg).unwrap();
    let err = client.token_ok().await.unwrap_err();
    assert!(matches!(&err, ProvetError::Auth(m) if m.contains("HTTP 401 (invalid_client)")), "{err}");
    assert!(!err.to_string().contains("wrong"));
    let err = client.list_external_sms().await.unwrap_err();
    assert!(matches!(err, ProvetError::Auth(_)), "{err}");

    let good = ProvetClient::new(&fake.client_config("clinic")).unwrap();
    good.token_ok().await.unwrap();
}

#[tokio::test]
async fn token_endpoint_failures_are_classified() {
    let (fake, client) = setup_default().await;
    fake.fail_next_token(1, Failure::Status(503));
    assert!(matches!(client.token_ok().await, Err(ProvetError::Transient(_))));
    fake.fail_next_token(1, Failure::RateLimited { retry_after: Some("3".into()) });
    assert_eq!(client.token_ok().await, Err(ProvetError::RateLimited { retry_after: Some(Duration::from_secs(3)) }));
    client.token_ok().await.unwrap();
}

#[tokio::test]
async fn a_wrong_token_url_is_an_auth_error_that_says_so() {
    let fake = FakeProvet::start(FakeOptions::default()).await.unwrap();
    let cfg =
        ProvetConfig { token_url: format!("http://{}/4321/oauth2/tokn/", fake.addr()), ..fake.client_config("clinic") };
    let client = ProvetClient::new(&cfg).unwrap();
    let err = client.token_ok().await.unwrap_err();
    assert!(matches!(&err, ProvetError::Auth(m) if m.contains("check token_url")), "{err}");
}

#[tokio::test]
async fn nothing_listens_is_transient() {
    let fake = FakeProvet::start(FakeOptions::default()).await.unwrap();
    let cfg = fake.client_config("clinic");
    fake.stop().await;
    let client = ProvetClient::new(&cfg).unwrap();
    let err = tokio::time::timeout(HANG_GUARD, client.list_external_sms()).await.unwrap().unwrap_err();
    assert!(matches!(err, ProvetError::Transient(_)), "{err}");
}

#[tokio::test]
async fn plain_http_needs_allow_insecure_http() {
    let fake = FakeProvet::start(FakeOptions::default()).await.unwrap();
    let cfg = ProvetConfig { allow_insecure_http: false, ..fake.client_config("clinic") };
    let err = ProvetClient::new(&cfg).unwrap_err();
    assert!(matches!(err, ClientConfigError::InsecureHttp { key: "base_url", .. }), "{err}");
    let cfg = ProvetConfig { base_url: "ftp://x/".into(), ..fake.client_config("clinic") };
    assert!(matches!(ProvetClient::new(&cfg), Err(ClientConfigError::BadUrl { .. })));
}

#[tokio::test]
async fn appointment_reminders_are_marked_for_external_sending_then_sent() {
    let (fake, client) = setup_default().await;
    let id = fake.add_appointment_reminder("+358401234567", "See you tomorrow at 10");
    assert_eq!(
        client.mark_sent(id).await,
        Err(ProvetError::Permanent {
            status: 400,
            body_excerpt: r#"{"detail":"send_externally is false: call mark_external_sending first"}"#.into()
        })
    );
    client.mark_external_sending(id).await.unwrap();
    let r = client.get_reminder(ReminderKind::AppointmentReminder, id).await.unwrap();
    assert!(r.send_externally);
    let text = client.reminder_text(&r).await.unwrap();
    assert_eq!((text.phone_number.as_str(), text.text.as_str()), ("+358401234567", "See you tomorrow at 10"));
    client.mark_sent(id).await.unwrap();
    assert_eq!(fake.marks(), vec![(id, Mark::ExternalSending), (id, Mark::Sent)]);
    assert_eq!(client.mark_sent(999).await, Err(ProvetError::NotFound));
}

#[tokio::test]
async fn only_due_external_reminders_are_listed_with_the_documented_filter_syntax() {
    let (fake, client) = setup(FakeOptions { page_size: 2, ..FakeOptions::default() }).await;
    let ext1 = fake.add_reminder("+358401234567", "Vaccination due", 4);
    let own = fake.add_reminder("+358401234567", "Provet sends this", 1);
    let ext2 = fake.add_reminder("+358401234568", "Deworming due", 4);
    let ext3 = fake.add_reminder("+358401234569", "Check-up due", 4);
    let later = fake.add_reminder_with(serde_json::json!({"sms_text": "x", "planned_sending_date": "2999-01-01"}));
    let today = crate::provet::reminders::today();
    let listed: Vec<i64> = client.list_due_reminders(today).await.unwrap().into_iter().map(|r| r.unwrap().id).collect();
    assert_eq!(listed, vec![ext1, ext2, ext3], "not {own} (Provet's own) nor {later} (not yet due)");
    let calls = fake.calls();
    assert!(calls.iter().any(|c| c.path.contains("send_method__is=4") && c.path.contains("page=2")), "{calls:?}");
    assert!(calls.iter().all(|c| !c.path.contains("send_method=4")), "the unqualified filter is gone");

    let r = client.get_reminder(ReminderKind::Reminder, ext2).await.unwrap();
    let t = client.reminder_text(&r).await.unwrap();
    assert_eq!((t.id, t.kind, t.text.as_str()), (ext2, ReminderKind::Reminder, "Deworming due"));
    let r = client.get_reminder(ReminderKind::Reminder, own).await.unwrap();
    let err = client.reminder_text(&r).await.unwrap_err();
    assert!(matches!(&err, ReminderError::Refused(m) if m.contains("send_method is 1, not 4")), "{err}");
    assert_eq!(client.get_reminder(ReminderKind::Reminder, 12345).await, Err(ProvetError::NotFound));
}

#[tokio::test]
async fn reminder_texts_come_from_templates_and_numbers_from_the_client() {
    let (fake, client) = setup_default().await;
    let clinic = fake.add_department("Kamu Vet");
    let helmut = fake.add_client("Helmut", "Eldridge", false, &[("+358401111111", false), ("+358402222222", true)]);
    let nosms = fake.add_client("No", "Sms", true, &[("+358403333333", true)]);
    let nonumber = fake.add_client("No", "Number", false, &[]);
    let rex = fake.add_patient("Rex");
    let tpl = fake.add_template("Hi [[client_name]], [[patient_name]] is due by [[expiry_date]]. [[clinic_name]]");
    let bad_tpl = fake.add_template("Book at [[onlinebooking_url]]");
    let reminder = |fields: serde_json::Value| fake.add_reminder_with(fields);
    let templated = reminder(serde_json::json!({"reminder_template": tpl, "client": helmut, "patient": rex,
        "department": clinic, "text_manually": false, "expiry_date": "2999-02-24"}));
    let unrenderable = reminder(serde_json::json!({"reminder_template": bad_tpl, "client": helmut}));
    let empty = reminder(serde_json::json!({"client": helmut}));
    let refused_by_client = reminder(serde_json::json!({"sms_text": "hi", "client": nosms}));
    let no_number = reminder(serde_json::json!({"sms_text": "hi", "client": nonumber}));
    let deleted_client = reminder(serde_json::json!({"sms_text": "hi", "client": 99_999}));
    let deleted_template = reminder(serde_json::json!({"reminder_template": 99_998, "client": helmut}));
    let resolve = |id| {
        let client = &client;
        async move {
            let r = client.get_reminder(ReminderKind::Reminder, id).await.unwrap();
            client.reminder_text(&r).await
        }
    };
    let t = resolve(templated).await.unwrap();
    assert_eq!(t.text, "Hi Helmut Eldridge, Rex is due by 2999-02-24. Kamu Vet");
    assert_eq!(t.phone_number, "+358402222222", "the preferred number");
    let refused = |r: Result<ReminderText, ReminderError>| match r {
        Err(ReminderError::Refused(why)) => why,
        other => panic!("{other:?}"),
    };
    assert!(refused(resolve(unrenderable).await).contains("[[onlinebooking_url]]"));
    assert!(refused(resolve(empty).await).contains("sms_text is empty and it has no reminder template"));
    assert!(refused(resolve(refused_by_client).await).contains("no_sms"));
    assert!(refused(resolve(no_number).await).contains("has no phone number"));
    // A 404 on a linked object refuses the reminder (it does not settle it as "already marked").
    assert!(refused(resolve(deleted_client).await).contains("its client 99999 does not exist in Provet"));
    assert!(refused(resolve(deleted_template).await).contains("its reminder template 99998 does not exist"));
    assert!(fake.calls().iter().any(|c| c.path.ends_with(&format!("phonenumber/?client__is={helmut}"))));
}

/// A writer that collects everything tracing writes, to look for secrets in it.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn logs_at_info_carry_no_secrets_tokens_numbers_or_bodies() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    tracing::subscriber::with_default(subscriber, || {
        rt.block_on(async {
            let (fake, client) = setup_default().await;
            fake.reject_json_mark_failed(true);
            let a = fake.add_sms("+358401234567", "private text about Rex");
            client.get_external_sms(a).await.unwrap();
            fake.expire_tokens();
            client.list_external_sms().await.unwrap();
            client.mark_failed(a, "modem said no").await.unwrap();
            let _ = ProvetClient::new(&fake.client_config("clinic"));
        })
    });
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("fetched a new Provet access token"), "the capture works: {logs}");
    assert!(logs.contains("allow_insecure_http"), "{logs}");
    for forbidden in ["fake-client-secret", "fake-token-", "Bearer", "Basic", "358401234567", "private text"] {
        assert!(!logs.contains(forbidden), "{forbidden:?} in logs:\n{logs}");
    }
}

#[tokio::test]
async fn one_malformed_list_item_does_not_hide_the_others() {
    let (fake, client) = setup_default().await;
    let a = fake.add_sms("+358401234567", "a");
    fake.put_raw_sms(50, serde_json::json!({"id": 50, "message": "x", "phone_number": null}));
    let b = fake.add_sms("+358401234567", "b");
    let items = client.list_external_sms_items().await.unwrap();
    let good: Vec<i64> = items.iter().filter_map(|i| i.as_ref().ok().map(|s| s.id)).collect();
    assert_eq!(good, vec![a, b]);
    let bad: Vec<&crate::provet::ItemError> = items.iter().filter_map(|i| i.as_ref().err()).collect();
    assert_eq!(bad.len(), 1);
    assert_eq!(bad[0].id, Some(50));
    assert!(bad[0].reason.contains("missing field `phone_number`"), "{}", bad[0].reason);
    // The strict list refuses the whole answer.
    assert!(matches!(client.list_external_sms().await, Err(ProvetError::BadResponse(_))));
}

/// A bare HTTP call, to check the fake itself without the client's help.
async fn raw(method: &str, url: &str, auth: Option<&str>, body: &str) -> (u16, String) {
    use http_body_util::{BodyExt, Full};
    use hyper::body::Bytes;
    let client: hyper_util::client::legacy::Client<_, Full<Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build(hyper_util::client::legacy::connect::HttpConnector::new());
    let mut req = hyper::Request::builder().method(method).uri(url);
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    let resp = client.request(req.body(Full::new(Bytes::from(body.to_string()))).unwrap()).await.unwrap();
    let status = resp.status().as_u16();
    let text = String::from_utf8(resp.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    (status, text)
}

#[tokio::test]
async fn the_fake_token_endpoint_checks_credentials_and_grant_type() {
    use base64::Engine;
    let fake = FakeProvet::start(FakeOptions::default()).await.unwrap();
    let basic = |id: &str, secret: &str| {
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}")))
    };
    let good = basic("smshub-test", "fake-client-secret");
    let form = "grant_type=client_credentials&scope=restapi";
    assert_eq!(raw("POST", &fake.token_url(), None, form).await.0, 401);
    assert_eq!(raw("POST", &fake.token_url(), Some(&basic("smshub-test", "nope")), form).await.0, 401);
    let (status, body) = raw("POST", &fake.token_url(), Some(&good), "grant_type=password").await;
    assert_eq!((status, body.contains("unsupported_grant_type")), (400, true));
    let (status, body) = raw("POST", &fake.token_url(), Some(&good), form).await;
    assert_eq!(status, 200, "{body}");
    let token: serde_json::Value = serde_json::from_str(&body).unwrap();
    let bearer = format!("Bearer {}", token["access_token"].as_str().unwrap());
    let list = format!("{}external_sms/", fake.base_url());
    assert_eq!(raw("GET", &list, None, "").await.0, 401);
    assert_eq!(raw("GET", &list, Some("Bearer made-up"), "").await.0, 401);
    assert_eq!(raw("GET", &list, Some(&bearer), "").await.0, 200);
    assert_eq!(raw("GET", &format!("{list}?page=9"), Some(&bearer), "").await.0, 404);
    assert_eq!(raw("DELETE", &format!("{list}1/"), Some(&bearer), "").await.0, 405);
    assert_eq!(raw("GET", &format!("{}nothing/", fake.base_url()), Some(&bearer), "").await.0, 404);
}

#[tokio::test]
async fn stopping_the_fake_ends_stalled_calls() {
    let fake = FakeProvet::start(FakeOptions::default()).await.unwrap();
    let cfg = ProvetConfig { request_timeout: Duration::from_secs(3600), ..fake.client_config("clinic") };
    let client = ProvetClient::new(&cfg).unwrap();
    fake.set_stall(true);
    let call = tokio::spawn(async move { client.token_ok().await });
    // Wait until the stalled call has reached the fake, then stop it.
    for _ in 0..600 {
        if !fake.calls().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(fake.calls().len(), 1);
    fake.stop().await;
    let result = tokio::time::timeout(HANG_GUARD, call).await.unwrap().unwrap();
    assert!(matches!(result, Err(ProvetError::Transient(_))), "{result:?}");
}

#[tokio::test]
async fn a_listing_stops_at_its_page_and_byte_bounds_and_keeps_what_it_read() {
    let (fake, client) = setup_default().await;
    fake.set_page_size(1);
    for i in 0..12 {
        fake.add_sms("+358401234567", &format!("m{i}"));
    }
    let small = |pages, bytes| ListBounds { max_pages: pages, max_bytes: bytes, deadline: Duration::from_secs(30) };
    let client = client.with_list_bounds(small(5, usize::MAX));
    let got = tokio::time::timeout(HANG_GUARD, client.list_external_sms()).await.unwrap().unwrap();
    assert_eq!(got.len(), 5, "five pages of one");
    let client = client.with_list_bounds(small(100, 1));
    let got = client.list_external_sms().await.unwrap();
    assert_eq!(got.len(), 1, "the first page is already over one byte");
    let client = client.with_list_bounds(small(100, usize::MAX));
    assert_eq!(client.list_external_sms().await.unwrap().len(), 12, "unbounded enough: everything");
}

#[tokio::test]
async fn a_listing_that_drips_stops_at_its_overall_deadline() {
    let (fake, client) = setup_default().await;
    fake.set_page_size(1);
    for i in 0..50 {
        fake.add_sms("+358401234567", &format!("m{i}"));
    }
    fake.set_latency(Duration::from_millis(300));
    let client = client.with_list_bounds(ListBounds {
        max_pages: 1000,
        max_bytes: usize::MAX,
        deadline: Duration::from_secs(2),
    });
    let started = std::time::Instant::now();
    let got = tokio::time::timeout(HANG_GUARD, client.list_external_sms()).await.unwrap().unwrap();
    assert!(!got.is_empty() && got.len() < 50, "cut short with what was read: {}", got.len());
    assert!(started.elapsed() < Duration::from_secs(10), "bounded by the deadline, not by 50 pages × latency");
    fake.set_stall(true);
    let err = client.list_external_sms().await.unwrap_err();
    assert!(matches!(err, ProvetError::Transient(_)), "no first page in time: {err}");
}
