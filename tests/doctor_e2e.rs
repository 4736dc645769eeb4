//! `smshub doctor` against the simulator in its fault modes: each gives the right ✗ and remedy.

mod common;
use common::*;

fn doctor(dir: &TestDir, sim: &Sim) -> (i32, serde_json::Value, String) {
    let cfg = dir.config(&format!("[[modem]]\nname = \"sim\"\ndevice = \"{}\"\n", sim.link.display()));
    let out = dir.smshub(&cfg, &["doctor", "--json"]);
    let json: serde_json::Value =
        serde_json::from_str(&stdout(&out)).unwrap_or_else(|e| panic!("{e}: {}", stdout(&out)));
    let text = stdout(&dir.smshub(&cfg, &["doctor"]));
    (out.status.code().unwrap_or(-1), json, text)
}

fn check<'a>(json: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    json.as_array().unwrap().iter().find(|c| c["name"] == name).unwrap_or_else(|| panic!("no check {name}: {json}"))
}

#[test]
fn a_healthy_simulated_modem_passes_every_check() {
    let dir = TestDir::new();
    let sim = Sim::start(dir.path(), &["--model", "ec25"]);
    let (code, json, text) = doctor(&dir, &sim);
    assert_eq!(code, 0, "{text}");
    assert!(json.as_array().unwrap().iter().all(|c| c["ok"] == true), "{text}");
    assert!(text.contains("✓ modem sim: answers AT"), "{text}");
    assert!(text.contains("dBm"), "{text}");
    assert!(text.contains("checks passed"), "{text}");
}

#[test]
fn a_sim_asking_for_a_pin_is_reported_and_no_pin_is_tried() {
    let dir = TestDir::new();
    let sim = Sim::start(dir.path(), &["--pin", "1234"]);
    let (code, json, text) = doctor(&dir, &sim);
    assert_eq!(code, 1, "{text}");
    let c = check(&json, "modem sim: SIM");
    assert_eq!(c["ok"], false);
    assert!(c["remedy"].as_str().unwrap().contains("pin_file"), "{c}");
    let stats = sim.request(serde_json::json!({"cmd": "stats"}));
    assert!(stats["commands"].get("AT+CPIN=").is_none(), "doctor must never send a PIN: {stats}");
}

#[test]
fn a_modem_that_is_not_registered_gets_the_network_remedy() {
    let dir = TestDir::new();
    let sim = Sim::start(dir.path(), &["--not-registered"]);
    let (code, json, text) = doctor(&dir, &sim);
    assert_eq!(code, 1, "{text}");
    let c = check(&json, "modem sim: registration");
    assert_eq!(c["ok"], false, "{c}");
    assert!(c["remedy"].as_str().unwrap().contains("antenna"), "{c}");
}

#[test]
fn a_modem_that_does_not_answer_is_reported() {
    let dir = TestDir::new();
    let sim = Sim::start(dir.path(), &["--hang-after", "0"]);
    let (code, json, text) = doctor(&dir, &sim);
    assert_eq!(code, 1, "{text}");
    let c = check(&json, "modem sim: answers AT");
    assert_eq!(c["ok"], false, "{c}");
    assert!(c["remedy"].as_str().unwrap().contains("AT port"), "{c}");
}

#[test]
fn full_sim_storage_is_reported() {
    let dir = TestDir::new();
    let sim = Sim::start(dir.path(), &["--storage-full"]);
    let (code, json, text) = doctor(&dir, &sim);
    assert_eq!(code, 1, "{text}");
    let c = check(&json, "modem sim: SIM storage");
    assert_eq!(c["ok"], false, "{c}");
    assert!(c["detail"].as_str().unwrap().contains("full"), "{c}");
}

#[test]
fn a_missing_device_names_the_path() {
    let dir = TestDir::new();
    let cfg = dir.config("[[modem]]\nname = \"m\"\ndevice = \"/dev/does-not-exist-smshub\"\n");
    let out = dir.smshub(&cfg, &["doctor"]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(text.contains("✗ modem m: device: /dev/does-not-exist-smshub does not exist"), "{text}");
}

#[test]
fn a_provet_token_missing_a_permission_is_named_with_the_remedy() {
    use smshub::testbed::fake_provet::{FakeOptions, FakeProvet};
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let fake = rt.block_on(FakeProvet::start(FakeOptions::default())).unwrap();
    fake.deny("client");
    let dir = TestDir::new();
    let sim = Sim::start(dir.path(), &[]);
    let cfg = dir.config(&format!(
        "[[modem]]\nname = \"sim\"\ndevice = \"{}\"\n\n[[provet]]\nname = \"clinic\"\nbase_url = \"{}\"\ntoken_url = \"{}\"\n\
         client_id = \"{}\"\nclient_secret = \"{}\"\nallow_insecure_http = true\n",
        sim.link.display(),
        fake.base_url(),
        fake.token_url(),
        fake.options().client_id,
        fake.options().client_secret,
    ));
    let out = dir.smshub(&cfg, &["doctor", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(check(&json, "provet clinic")["ok"], true);
    assert_eq!(check(&json, "provet clinic: permission External message API: Read/Write")["ok"], true);
    assert_eq!(check(&json, "provet clinic: permission Appointments: Read/Write")["ok"], true);
    let c = check(&json, "provet clinic: permission Patients and clients: Read/Write");
    assert_eq!(c["ok"], false, "{c}");
    assert!(c["detail"].as_str().unwrap().starts_with("missing: GET client/ answered 403"), "{c}");
    assert!(
        c["remedy"].as_str().unwrap().contains("add \"Patients and clients: Read/Write\" to the permission group"),
        "{c}"
    );
    let text = stdout(&dir.smshub(&cfg, &["doctor"]));
    assert!(text.contains("Patients and clients"), "{text}");
    drop(fake);
}
