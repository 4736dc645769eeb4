//! Every kind of config error names the file, the line, the key and what is wrong, and exits 2.

mod common;
use common::*;

fn check(dir: &TestDir, text: &str) -> (i32, String) {
    let cfg = dir.write("bad.toml", text, 0o600);
    let out = dir.smshub(&cfg, &["config", "check"]);
    (out.status.code().unwrap_or(-1), stderr(&out))
}

#[test]
fn a_missing_required_key_names_the_section_and_line() {
    let dir = TestDir::new();
    let (code, err) = check(
        &dir,
        "clinic_code = \"x\"\n\n[[provet]]\nname = \"hki\"\nbase_url = \"https://provetcloud.com/1/api/0.1/\"\nclient_secret = \"s\"\n",
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("bad.toml:3"), "line of the [[provet]] table: {err}");
    assert!(err.contains("provet.client_id"), "{err}");
    assert!(err.contains("missing required key"), "{err}");
}

#[test]
fn a_wrong_type_names_the_key_and_the_line() {
    let dir = TestDir::new();
    let (code, err) = check(&dir, "[[modem]]\nname = \"main\"\ndevice = \"/dev/null\"\nbaud = \"fast\"\n");
    assert_eq!(code, 2);
    assert!(err.contains("bad.toml:4"), "{err}");
    assert!(err.contains("modem.baud"), "{err}");
    assert!(err.contains("wrong type"), "{err}");
}

#[test]
fn an_unknown_key_gets_a_did_you_mean() {
    let dir = TestDir::new();
    let (code, err) = check(&dir, "clinic_cod = \"x\"\n");
    assert_eq!(code, 2);
    assert!(err.contains("bad.toml:1"), "{err}");
    assert!(err.contains("unknown key `clinic_cod`, did you mean `clinic_code`?"), "{err}");

    let (_, err) = check(&dir, "[http]\nlisten = \"127.0.0.1:0\"\n\n[[provet]]\nname = \"a\"\npoll_intervall_s = 5\n");
    assert!(err.contains("bad.toml:6"), "{err}");
    assert!(err.contains("provet.poll_intervall_s"), "{err}");
    assert!(err.contains("did you mean `poll_interval_s`?"), "{err}");
}

#[test]
fn an_unreadable_file_is_named() {
    let dir = TestDir::new();
    let missing = dir.path().join("nope.toml");
    let out = dir.smshub(&missing, &["config", "check"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("nope.toml: cannot read the config file"), "{err}");
}

#[test]
fn a_secret_file_readable_by_everyone_is_refused() {
    let dir = TestDir::new();
    let secret = dir.write("provet-secret", "s3cr3t\n", 0o644);
    let text = format!(
        "[[provet]]\nname = \"hki\"\nbase_url = \"https://provetcloud.com/1/api/0.1/\"\nclient_id = \"id\"\nclient_secret_file = \"{}\"\n",
        secret.display()
    );
    let (code, err) = check(&dir, &text);
    assert_eq!(code, 2);
    assert!(err.contains("bad.toml:5"), "{err}");
    assert!(err.contains("provet[0].client_secret_file"), "{err}");
    assert!(err.contains("insecure permissions"), "{err}");
    assert!(err.contains("chmod 640"), "{err}");
    assert!(!err.contains("s3cr3t"), "the secret itself is never printed: {err}");
}

#[test]
fn an_inline_secret_in_a_world_readable_config_is_refused() {
    let dir = TestDir::new();
    let cfg = dir.write(
        "open.toml",
        "[[provet]]\nname = \"hki\"\nbase_url = \"https://provetcloud.com/1/api/0.1/\"\nclient_id = \"id\"\nclient_secret = \"s3cr3t\"\n",
        0o644,
    );
    let out = dir.smshub(&cfg, &["config", "check"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("open.toml:5: client_secret: insecure permissions"), "{err}");
}

#[test]
fn bad_values_are_explained() {
    let dir = TestDir::new();
    let cases: &[(&str, &str)] = &[
        ("[http]\nlisten = \"localhost\"\n", "bad.toml:2: http.listen: \"localhost\" is not an address:port"),
        ("[logging]\nformat = \"syslog\"\n", "logging.format"),
        (
            "[[provet]]\nname = \"a\"\nbase_url = \"http://provet.local/1/api/0.1/\"\nclient_id = \"x\"\nclient_secret = \"y\"\n",
            "provet[0].base_url: \"http://provet.local/1/api/0.1/\" is plain http",
        ),
        (
            "[[modem]]\nname = \"a\"\ndevice = \"/dev/null\"\npin = \"12\"\n",
            "bad.toml:4: modem[0].pin: a SIM PIN is 4 to 8 digits",
        ),
        (
            "[[forward]]\nkind = \"pbx\"\nurl = \"https://x.example/in\"\nservice_id = \"1\"\nsms_number = \"+61412345678\"\nfallback_email = \"a@b.example\"\n",
            "smtp: missing",
        ),
        (
            "[[modem]]\nname = \"a\"\ndevice = \"/dev/null\"\n[[modem]]\nname = \"a\"\ndevice = \"/dev/null\"\n",
            "modem name \"a\" is used twice",
        ),
        ("default_country = \"FI\"\n", "bad.toml:1: default_country: \"FI\" is not a country calling code"),
        ("[custom_integration]\nsalt = \"short\"\n", "bad.toml:2: custom_integration.salt: too short: use at least 16"),
        (
            "[custom_integration]\nsalt = \"0123456789abcdef\"\npanel_max_age_s = 10\n",
            "bad.toml:3: custom_integration.panel_max_age_s: 10 is out of range",
        ),
        (
            "[custom_integration]\nsalt = \"0123456789abcdef\"\nframe_ancestors = [\"https://provet.example/path\"]\n",
            "bad.toml:3: custom_integration.frame_ancestors: \"https://provet.example/path\" is not an origin",
        ),
        (
            "[custom_integration]\nsalt = \"0123456789abcdef\"\nclient_param = \"a b\"\n",
            "bad.toml:3: custom_integration.client_param: give a parameter name",
        ),
        (
            "[[provet]]\nname = \"a\"\nbase_url = \"https://provetcloud.com/1/api/0.1/\"\nclient_id = \"x\"\nclient_secret = \"y\"\n\
             [provet.custom_integration]\nsalt = \"0123456789abcdef\"\nmax_age_s = 5\n",
            "bad.toml:8: provet.custom_integration.max_age_s: 5 is out of range",
        ),
        ("[admin]\nlisten = \"127.0.0.1:8080\"\n", "admin.listen: 127.0.0.1:8080 overlaps [http] listen 0.0.0.0:8080"),
        ("[admin]\npublic_url = \"https://x\"\n", "admin.public_url: belongs in [http]"),
        ("[http]\nmax_header_bytes = 100\n", "http.max_header_bytes: 100 is out of range: allowed 8192 to 1048576"),
        ("[http]\nmax_connections = 0\n", "http.max_connections: 0 is out of range"),
        ("[http]\ntrusted_proxies = [\"proxy.local\"]\n", "http.trusted_proxies: \"proxy.local\" is not an IP address"),
        ("[http]\ntls_cert_file = \"/nonexistent/cert.pem\"\n", "http.tls_key_file: missing"),
        (
            "[admin]\ntls_cert_file = \"/nonexistent/cert.pem\"\ntls_key_file = \"/nonexistent/key.pem\"\n",
            "admin.tls_cert_file: cannot read the certificate file /nonexistent/cert.pem",
        ),
        (
            "[smtp]\nhost = \"mail.example\"\ntls = \"none\"\nfrom = \"a@b.example\"\nusername = \"u\"\npassword = \"p\"\n",
            "bad.toml:3: smtp.tls: \"none\" with a username or password would send them in clear text",
        ),
        (
            "[replies]\nallowed_destinations = [\"358\"]\n",
            "bad.toml:2: replies.allowed_destinations: \"358\" is not an E.164 prefix",
        ),
        ("[replies]\nmax_parts = 0\n", "bad.toml:2: replies.max_parts: 0 is out of range"),
        ("[api]\nper_hour = 0\n", "bad.toml:2: api.per_hour: 0 is out of range: allowed 1 to 100000"),
        ("[api]\nper_hour = 100001\n", "bad.toml:2: api.per_hour: 100001 is out of range"),
        ("[api]\nper_day = 5\n", "api.per_day"),
        ("[http]\nsocket = \"/run/x.sock\"\n", "bad.toml:2: http.socket: belongs in [admin]"),
    ];
    for (text, expected) in cases {
        let (code, err) = check(&dir, text);
        assert_eq!(code, 2, "{text}: {err}");
        assert!(err.contains(expected), "expected {expected:?} in {err:?}");
    }
}

#[test]
fn credentials_come_from_the_systemd_credentials_directory() {
    let dir = TestDir::new();
    let creds = dir.path().join("creds");
    std::fs::create_dir(&creds).unwrap();
    std::fs::write(creds.join("provet-secret"), "from-credential\n").unwrap();
    let cfg = dir.write(
        "c.toml",
        "[[provet]]\nname = \"hki\"\nbase_url = \"https://provetcloud.com/1/api/0.1/\"\nclient_id = \"id\"\nclient_secret_credential = \"provet-secret\"\n",
        0o600,
    );
    let out = smshub_command()
        .args(["--config", cfg.to_str().unwrap(), "config", "check", "--json"])
        .env("CREDENTIALS_DIRECTORY", &creds)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["provet"][0]["client_secret"], "****");
    assert_eq!(v["provet"][0]["token_url"], "https://provetcloud.com/1/oauth2/token/");

    let out = dir.smshub(&cfg, &["config", "check"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("$CREDENTIALS_DIRECTORY is not set"), "{}", stderr(&out));
}

#[test]
fn config_check_masks_every_secret() {
    let dir = TestDir::new();
    let cfg = dir.write(
        "c.toml",
        "[[modem]]\nname = \"m\"\ndevice = \"/dev/null\"\npin = \"4321\"\n\n\
         [[provet]]\nname = \"hki\"\nbase_url = \"https://provetcloud.com/1/api/0.1/\"\nclient_id = \"id\"\nclient_secret = \"secret-one\"\nwebhook_token = \"webhook-token-0123456789\"\n\n\
         [[forward]]\nkind = \"twilio\"\nurl = \"https://x.example/sms\"\naccount_sid = \"AC0123456789abcdef0123456789abcdef\"\nauth_token = \"auth-token-two\"\nto_number = \"+358401234567\"\n\n\
         [smtp]\nhost = \"mail.example\"\nfrom = \"a@b.example\"\npassword = \"smtp-password-three\"\n\n\
         [custom_integration]\nsalt = \"salt-four-0123456789\"\n",
        0o600,
    );
    let out = dir.smshub(&cfg, &["config", "check"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let printed = stdout(&out);
    for secret in [
        "4321",
        "secret-one",
        "webhook-token-0123456789",
        "auth-token-two",
        "smtp-password-three",
        "salt-four-0123456789",
    ] {
        assert!(!printed.contains(secret), "{secret} leaked: {printed}");
    }
    // The top-level salt is printed twice: as the default and as the instance's button salt.
    assert_eq!(printed.matches("\"****\"").count(), 7, "{printed}");
}

#[test]
fn the_shipped_example_config_is_valid() {
    let dir = TestDir::new();
    let example = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/smshub.example.toml")).unwrap();
    for name in [
        "provet-secret",
        "provet-webhook-token",
        "twilio-token",
        "smtp-password",
        "provet-ci-salt",
        "event-webhook-secret",
    ] {
        dir.write(name, "0123456789abcdef0123\n", 0o600);
    }
    let text = example.replace("/etc/smshub/", &format!("{}/", dir.path().display()));
    let cfg = dir.write("example.toml", &text, 0o640);
    let out = dir.smshub(&cfg, &["config", "check", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["modems"][0]["name"], "main");
    assert_eq!(v["forwarders"].as_array().unwrap().len(), 2);
    assert_eq!(v["outbound"]["on_unknown_outcome"], "mark_failed");
    assert_eq!(v["event_webhooks"][0]["version"], "2.0");
    assert_eq!(v["event_webhooks"][0]["secret"], "****");
    assert_eq!(v["event_webhooks"][0]["types"].as_array().unwrap().len(), 9, "all types by default");
}

#[test]
fn event_webhook_mistakes_are_named_with_line_and_key() {
    let dir = TestDir::new();
    let hook = |extra: &str| {
        format!(
            "clinic_code = \"vet-1\"\n[[event_webhook]]\nname = \"app\"\nurl = \"https://app.example/ev\"\nsecret = \"0123456789abcdef\"\n{extra}"
        )
    };
    let cases: Vec<(String, &str)> = vec![
        (hook("").replace("clinic_code = \"vet-1\"\n", ""), "clinic_code: missing: every event carries it"),
        (
            hook("types = [\"sms.sent\", \"sms.teleported\"]\n"),
            "bad.toml:6: event_webhook[0].types: \"sms.teleported\" is not an event type; known: sms.received",
        ),
        (hook("types = []\n"), "event_webhook[0].types: empty"),
        (hook("version = \"3\"\n"), "bad.toml:6: event_webhook[0].version: \"3\": use \"2.0\""),
        (hook("").replace("0123456789abcdef", "short"), "event_webhook[0].secret: shorter than 16 characters"),
        (hook("").replace("secret = \"0123456789abcdef\"\n", ""), "event_webhook[0].secret: missing"),
        (
            hook("").replace("https://app.example/ev", "ftp://app.example/ev"),
            "event_webhook[0].url: \"ftp://app.example/ev\" is not an http(s) URL",
        ),
        (hook("give_up_after_s = 18446744073709551615\n"), "bad.toml:6: event_webhook[0].give_up_after_s"),
        (
            hook("retry_initial_s = 100\nretry_max_s = 10\n"),
            "event_webhook[0].retry_max_s: smaller than retry_initial_s",
        ),
        (hook("sekret = \"x\"\n"), "sekret"),
        (
            format!(
                "{}\n[[event_webhook]]\nname = \"app\"\nurl = \"https://b.example/\"\nsecret = \"0123456789abcdef\"\n",
                hook("")
            ),
            "event webhook name \"app\" is used twice",
        ),
    ];
    for (text, expected) in &cases {
        let (code, err) = check(&dir, text);
        assert_eq!(code, 2, "{text}: {err}");
        assert!(err.contains(expected), "{text}\nexpected {expected:?} in: {err}");
    }
}

#[test]
fn durations_out_of_range_are_refused_before_start_with_line_and_key() {
    let dir = TestDir::new();
    let cases: &[(&str, &str)] = &[
        (
            "[[modem]]\nname = \"a\"\ndevice = \"/dev/null\"\nsend_timeout_s = 18446744073709551615\n",
            "bad.toml:4: modem[0].send_timeout_s: 18446744073709551615 is out of range: allowed 1 to 3600 s",
        ),
        (
            "[[provet]]\nname = \"a\"\nbase_url = \"https://provetcloud.com/1/api/0.1/\"\nclient_id = \"x\"\nclient_secret = \"y\"\nretry_max_s = 99999999999\n",
            "bad.toml:6: provet[0].retry_max_s: 99999999999 is out of range",
        ),
        ("[inbound]\nconcat_timeout_s = 0\n", "bad.toml:2: inbound.concat_timeout_s: 0 is out of range"),
        ("[keywords]\nreply_min_interval_s = 18446744073709551615\n", "keywords.reply_min_interval_s"),
        ("[http]\nmax_body_bytes = 18446744073709551615\n", "bad.toml:2: http.max_body_bytes"),
        (
            "[[forward]]\nkind = \"twilio\"\nurl = \"https://x.example/sms\"\naccount_sid = \"AC0123456789abcdef0123456789abcdef\"\nauth_token = \"t\"\nto_number = \"+358401234567\"\ngive_up_after_s = 18446744073709551615\n",
            "bad.toml:7: forward[0].give_up_after_s",
        ),
    ];
    for (text, expected) in cases {
        let (code, err) = check(&dir, text);
        assert_eq!(code, 2, "{text}: {err}");
        assert!(err.contains(expected), "expected {expected:?} in {err:?}");
    }
    // `run` refuses it the same way instead of panicking at start.
    let cfg = dir.write("bad.toml", cases[0].0, 0o600);
    let out = dir.smshub(&cfg, &["run"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("modem[0].send_timeout_s"), "{}", stderr(&out));
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
}
