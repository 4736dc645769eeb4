//! The simulator over a real pty: the client side opens the slave path with `open_serial`, as
//! the driver will, and talks plain bytes.

use super::*;
use crate::modem::tty::{TtyStream, open_serial};
use crate::pdu;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(10);

fn opts() -> SimOptions {
    SimOptions { seed: Some(1), report_delay_ms: 50, ..SimOptions::default() }
}

/// Reads until `buf` ends with one of the final results (or the prompt), or fails after WAIT.
async fn read_until(c: &mut TtyStream, done: impl Fn(&str) -> bool) -> String {
    let mut acc = Vec::new();
    let mut buf = [0u8; 512];
    loop {
        let s = String::from_utf8_lossy(&acc).into_owned();
        if done(&s) {
            return s;
        }
        let n =
            timeout(WAIT, c.read(&mut buf)).await.unwrap_or_else(|_| panic!("timed out; got so far: {s:?}")).unwrap();
        assert!(n > 0, "EOF; got so far: {s:?}");
        acc.extend_from_slice(&buf[..n]);
    }
}

fn is_final(s: &str) -> bool {
    s.ends_with("\r\nOK\r\n") || s.ends_with("\r\nERROR\r\n") || (s.contains("ERROR: ") && s.ends_with("\r\n"))
}

async fn at(c: &mut TtyStream, cmd: &str) -> String {
    c.write_all(format!("{cmd}\r").as_bytes()).await.unwrap();
    read_until(c, is_final).await
}

async fn send_part(c: &mut TtyStream, part: &pdu::SubmitPart) -> String {
    c.write_all(format!("AT+CMGS={}\r", part.tpdu_len).as_bytes()).await.unwrap();
    read_until(c, |s| s.ends_with("> ")).await;
    c.write_all(format!("{}\x1a", part.hex).as_bytes()).await.unwrap();
    read_until(c, is_final).await
}

fn submit(to: &str, text: &str, report: bool) -> Vec<pdu::SubmitPart> {
    pdu::encode_submit(to, text, &pdu::SubmitOptions { request_status_report: report, ..Default::default() }).unwrap()
}

#[tokio::test]
async fn basic_commands_over_a_real_pty() {
    let sim = start(SimOptions { echo: true, model: Model::Sim800, ..opts() }).await.unwrap();
    let mut c = open_serial(sim.pty_path(), 115200).unwrap();
    assert_eq!(at(&mut c, "ATE0").await, "ATE0\r\r\nOK\r\n");
    assert_eq!(at(&mut c, "AT").await, "\r\nOK\r\n");
    assert_eq!(at(&mut c, "AT+CGMI").await, "\r\nSIMCOM_Ltd\r\n\r\nOK\r\n");
    assert_eq!(at(&mut c, "AT+CMEE=1").await, "\r\nOK\r\n");
    assert_eq!(at(&mut c, "AT+NOPE").await, "\r\nERROR\r\n");
    sim.stop().await;
}

#[tokio::test]
async fn pdu_send_shows_up_decoded_in_the_sent_log_and_reports_arrive() {
    let sim = start(opts()).await.unwrap();
    let control = sim.control();
    let mut c = open_serial(sim.pty_path(), 115200).unwrap();
    at(&mut c, "AT+CNMI=2,1,0,1,0").await;
    let long = "Pitkä viesti 😀 ".repeat(10);
    let parts = submit("+358401234567", &long, true);
    assert!(parts.len() > 1);
    for (i, p) in parts.iter().enumerate() {
        assert_eq!(send_part(&mut c, p).await, format!("\r\n+CMGS: {i}\r\n\r\nOK\r\n"));
    }
    let sent = control.sent().await.unwrap();
    assert_eq!(sent.len(), parts.len());
    let text: String = sent.iter().map(|r| r["text"].as_str().unwrap().to_string()).collect();
    assert_eq!(text, long);
    assert_eq!(sent[0]["to"], "+358401234567");
    assert_eq!(sent[0]["encoding"], "ucs2");
    assert_eq!(sent[1]["concat"]["seq"], 2);
    assert_eq!(sent[1]["mr"], 1);
    assert!(sent[0]["at"].as_u64().unwrap() > 1_600_000_000_000);
    // One +CDS per part, asked for in each PDU.
    let reports = read_until(&mut c, |s| s.matches("+CDS: ").count() == parts.len()).await;
    assert!(reports.starts_with("\r\n+CDS: "), "{reports:?}");
    sim.stop().await;
}

#[tokio::test]
async fn wrong_cmgs_length_is_refused_with_304_over_the_pty() {
    let sim = start(opts()).await.unwrap();
    let mut c = open_serial(sim.pty_path(), 115200).unwrap();
    at(&mut c, "AT+CMEE=1").await;
    let mut part = submit("+358401234567", "hi", false).remove(0);
    part.tpdu_len += 1;
    assert_eq!(send_part(&mut c, &part).await, "\r\n+CMS ERROR: 304\r\n");
    assert!(sim.control().sent().await.unwrap().is_empty());
    sim.stop().await;
}

#[tokio::test]
async fn send_latency_delays_the_answer() {
    let sim = start(SimOptions { send_latency_ms: 300, ..opts() }).await.unwrap();
    let mut c = open_serial(sim.pty_path(), 115200).unwrap();
    let part = submit("+358401234567", "hi", false).remove(0);
    let t0 = std::time::Instant::now();
    assert_eq!(send_part(&mut c, &part).await, "\r\n+CMGS: 0\r\n\r\nOK\r\n");
    assert!(t0.elapsed() >= Duration::from_millis(300));
    sim.stop().await;
}

#[tokio::test]
async fn injected_message_is_stored_announced_read_and_deleted_over_the_pty() {
    let sim = start(opts()).await.unwrap();
    let control = sim.control();
    let mut c = open_serial(sim.pty_path(), 115200).unwrap();
    let ans = control.inject("+358401234567", "Hei 😀").await.unwrap();
    assert_eq!(ans["indices"], json!([1]));
    assert_eq!(read_until(&mut c, |s| s.ends_with("\r\n")).await, "\r\n+CMTI: \"SM\",1\r\n");
    let r = at(&mut c, "AT+CMGR=1").await;
    let pdu_line = r.split("\r\n").nth(2).unwrap();
    match pdu::decode(pdu_line, true).unwrap().message {
        pdu::Message::Deliver(d) => {
            assert_eq!(d.text, "Hei 😀");
            assert_eq!(d.sender.to_string(), "+358401234567");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(at(&mut c, "AT+CMGD=1").await, "\r\nOK\r\n");
    assert_eq!(at(&mut c, "AT+CMGL=4").await, "\r\nOK\r\n");
    sim.stop().await;
}

#[tokio::test]
async fn multipart_inject_in_given_order_and_alphanumeric_sender() {
    let sim = start(opts()).await.unwrap();
    let control = sim.control();
    let text = "A".repeat(400);
    let ans = control.request(json!({"cmd":"inject","from":"Klinikka","text":text,"order":[3,1,2]})).await.unwrap();
    assert_eq!(ans["parts"], 3, "{ans}");
    let st = control.request(json!({"cmd":"storage"})).await.unwrap();
    let seqs: Vec<u8> = st["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| match pdu::decode(m["pdu"].as_str().unwrap(), true).unwrap().message {
            pdu::Message::Deliver(d) => {
                assert_eq!(d.sender.to_string(), "Klinikka");
                d.concat.unwrap().seq
            }
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(seqs, vec![3, 1, 2]);
    let bad =
        control.request(json!({"cmd":"inject","from":"+358401234567","text":text,"order":[1,1,2]})).await.unwrap();
    assert_eq!(bad["ok"], false);
    sim.stop().await;
}

#[tokio::test]
async fn full_storage_queues_deliveries_until_the_client_deletes() {
    let sim = start(SimOptions { storage_slots: 3, storage_full: true, ..opts() }).await.unwrap();
    let control = sim.control();
    let mut c = open_serial(sim.pty_path(), 115200).unwrap();
    let ans = control.inject("+358401234567", "late").await.unwrap();
    assert_eq!(ans["indices"], json!([null]));
    assert_eq!(at(&mut c, "AT+CPMS?").await, "\r\n+CPMS: \"SM\",3,3,\"SM\",3,3,\"SM\",3,3\r\n\r\nOK\r\n");
    c.write_all(b"AT+CMGD=2\r").await.unwrap();
    // The network retries as soon as the slot is free: the URC follows the OK.
    assert_eq!(read_until(&mut c, |s| s.ends_with("+CMTI: \"SM\",2\r\n")).await, "\r\nOK\r\n\r\n+CMTI: \"SM\",2\r\n");
    let st = control.request(json!({"cmd":"storage"})).await.unwrap();
    assert_eq!(st["queued"], 0);
    assert_eq!(st["used"], 3);
    sim.stop().await;
}

#[tokio::test]
async fn pin_flow_counts_cpin_attempts() {
    let sim = start(SimOptions { pin: Some("1234".into()), ..opts() }).await.unwrap();
    let mut c = open_serial(sim.pty_path(), 115200).unwrap();
    at(&mut c, "AT+CMEE=1").await;
    for _ in 0..3 {
        assert_eq!(at(&mut c, "AT+CPIN=\"9999\"").await, "\r\n+CME ERROR: 16\r\n");
    }
    assert_eq!(at(&mut c, "AT+CPIN?").await, "\r\n+CPIN: SIM PUK\r\n\r\nOK\r\n");
    let stats = sim.control().request(json!({"cmd":"stats"})).await.unwrap();
    assert_eq!(stats["commands"]["AT+CPIN="], 3);
    assert_eq!(stats["commands"]["AT+CPIN?"], 1);
    sim.stop().await;
}

#[tokio::test]
async fn hung_modem_stops_answering_and_recovers_when_told() {
    let sim = start(SimOptions { hang_after: Some(1), ..opts() }).await.unwrap();
    let mut c = open_serial(sim.pty_path(), 115200).unwrap();
    assert_eq!(at(&mut c, "AT").await, "\r\nOK\r\n");
    c.write_all(b"AT\r").await.unwrap();
    let mut buf = [0u8; 64];
    assert!(timeout(Duration::from_millis(500), c.read(&mut buf)).await.is_err(), "a hung modem must not answer");
    sim.control().set(json!({"hang_after": null})).await.unwrap();
    assert_eq!(at(&mut c, "AT").await, "\r\nOK\r\n");
    sim.stop().await;
}

#[tokio::test]
async fn unplug_gives_the_client_eof_and_replug_moves_the_link_to_a_new_pty() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("modem");
    let sim = start(SimOptions { link: Some(link.clone()), ..opts() }).await.unwrap();
    assert_eq!(std::fs::read_link(&link).unwrap(), sim.pty_path());
    let mut c = open_serial(&link, 115200).unwrap();
    assert_eq!(at(&mut c, "AT").await, "\r\nOK\r\n");
    let control = sim.control();
    control.unplug().await.unwrap();
    let mut buf = [0u8; 16];
    // EOF (Ok(0)) or an error (EIO) are both fine; data is not.
    if let Ok(n) = timeout(WAIT, c.read(&mut buf)).await.unwrap() {
        assert_eq!(n, 0);
    }
    assert!(std::fs::symlink_metadata(&link).is_err(), "link removed");
    let err = open_serial(&link, 115200).unwrap_err();
    assert!(err.to_string().contains("is the modem plugged in"), "{err}");
    let new = control.replug().await.unwrap();
    assert_eq!(std::fs::read_link(&link).unwrap(), new);
    assert_eq!(sim.current_pty_path(), new);
    let mut c2 = open_serial(&link, 115200).unwrap();
    assert_eq!(at(&mut c2, "AT").await, "\r\nOK\r\n");
    sim.stop().await;
}

#[tokio::test]
async fn stale_link_is_replaced_but_a_regular_file_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("modem");
    std::os::unix::fs::symlink("/dev/nonexistent", &link).unwrap();
    let sim = start(SimOptions { link: Some(link.clone()), ..opts() }).await.unwrap();
    assert_eq!(std::fs::read_link(&link).unwrap(), sim.pty_path());
    sim.stop().await;
    let file = dir.path().join("file");
    std::fs::write(&file, b"keep").unwrap();
    let err = start(SimOptions { link: Some(file.clone()), ..opts() }).await.unwrap_err();
    assert!(err.to_string().contains("not a symlink"), "{err}");
    assert_eq!(std::fs::read(&file).unwrap(), b"keep");
}

#[tokio::test]
async fn control_socket_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("sim.sock");
    let sim = start(SimOptions { control: Some(sock.clone()), ..opts() }).await.unwrap();
    let mut client = SimClient::connect(&sock).await.unwrap();
    let ans = client.inject("+358401234567", "over the socket").await.unwrap();
    assert_eq!(ans["parts"], 1);
    let st: Value = client.request(json!({"cmd":"storage"})).await.unwrap();
    assert_eq!(st["used"], 1);
    let bad = client.request(json!({"cmd":"fly"})).await.unwrap();
    assert_eq!(bad["ok"], false);
    assert!(bad["error"].as_str().unwrap().contains("fly"), "{bad}");
    let bad = client.request(json!({"cmd":"set","garbage_rate":2.0})).await.unwrap();
    assert_eq!(bad["ok"], false);
    let bad = client.request(json!({"cmd":"set","no_such_fault":1})).await.unwrap();
    assert_eq!(bad["ok"], false);
    assert!(client.sent().await.unwrap().is_empty());
    let mut c = open_serial(sim.pty_path(), 115200).unwrap();
    let part = submit("+358401234567", "hi", false).remove(0);
    send_part(&mut c, &part).await;
    let sent = client.sent().await.unwrap();
    assert_eq!(sent[0]["text"], "hi");
    // A malformed PDU can be injected raw and is stored as is.
    let ans = client.request(json!({"cmd":"inject_pdu","pdu":"0791FFFF"})).await.unwrap();
    assert_eq!(ans["indices"], json!([2]));
    sim.stop().await;
    assert!(!sock.exists());
}

#[tokio::test]
async fn explicit_report_for_a_sent_message_is_stored_with_cdsi() {
    let sim = start(opts()).await.unwrap();
    let control = sim.control();
    let mut c = open_serial(sim.pty_path(), 115200).unwrap();
    at(&mut c, "AT+CNMI=2,1,0,2,0").await;
    let part = submit("+358401234567", "hi", false).remove(0);
    send_part(&mut c, &part).await;
    let ans = control.request(json!({"cmd":"report","message_ref":0,"status":70})).await.unwrap();
    assert_eq!(ans["ok"], true, "{ans}");
    assert_eq!(read_until(&mut c, |s| s.ends_with("\r\n")).await, "\r\n+CDSI: \"SM\",1\r\n");
    let unknown = control.request(json!({"cmd":"report","message_ref":9})).await.unwrap();
    assert_eq!(unknown["ok"], false);
    sim.stop().await;
}

#[tokio::test]
async fn registration_change_at_runtime_is_announced_when_enabled() {
    let sim = start(SimOptions { not_registered: true, ..opts() }).await.unwrap();
    let mut c = open_serial(sim.pty_path(), 115200).unwrap();
    assert_eq!(at(&mut c, "AT+CREG=1").await, "\r\nOK\r\n");
    assert_eq!(at(&mut c, "AT+CREG?").await, "\r\n+CREG: 1,2\r\n\r\nOK\r\n");
    sim.control().set(json!({"registered": true})).await.unwrap();
    assert_eq!(read_until(&mut c, |s| s.ends_with("\r\n")).await, "\r\n+CREG: 1\r\n");
    sim.stop().await;
}

#[tokio::test]
async fn dropping_the_handle_closes_the_pty() {
    let sim = start(opts()).await.unwrap();
    let mut c = open_serial(sim.pty_path(), 115200).unwrap();
    drop(sim);
    let mut buf = [0u8; 16];
    // EOF (Ok(0)) or an error (EIO) are both fine; data is not.
    if let Ok(n) = timeout(WAIT, c.read(&mut buf)).await.unwrap() {
        assert_eq!(n, 0);
    }
}

#[tokio::test]
async fn run_returns_when_shutdown_is_signalled() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("run.sock");
    let (tx, rx) = watch::channel(false);
    let task = tokio::spawn(run(SimOptions { control: Some(sock.clone()), ..opts() }, rx));
    // The control socket answering proves the simulator is up.
    let mut client = timeout(WAIT, async {
        loop {
            if let Ok(c) = SimClient::connect(&sock).await {
                break c;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap();
    assert_eq!(client.stats().await.unwrap()["plugged"], true);
    tx.send(true).unwrap();
    timeout(WAIT, task).await.unwrap().unwrap().unwrap();
    assert!(!sock.exists());
}

/// Not a test: runs a simulator for third-party clients (gammu) to poke at.
/// `SIM_LINK=/tmp/sim/modem SIM_CONTROL=/tmp/sim/ctl SIM_SECONDS=300 cargo test --lib
/// testbed::modem_sim::tests::manual_simulator -- --ignored --nocapture`
#[tokio::test]
#[ignore = "manual: keeps a simulator running for SIM_SECONDS"]
async fn manual_simulator() {
    let env = |k: &str| std::env::var(k).ok();
    let sim = start(SimOptions {
        link: env("SIM_LINK").map(PathBuf::from),
        control: env("SIM_CONTROL").map(PathBuf::from),
        echo: true,
        model: Model::Sim800,
        ..opts()
    })
    .await
    .unwrap();
    println!("pty: {}", sim.pty_path().display());
    let secs = env("SIM_SECONDS").and_then(|s| s.parse().ok()).unwrap_or(120);
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let stats = sim.control().stats().await.unwrap();
    println!("stats: {stats}");
    let sent = sim.control().sent().await.unwrap();
    println!("sent: {}", Value::Array(sent));
    sim.stop().await;
}

#[derive(clap::Parser, Debug)]
struct Cli {
    #[command(flatten)]
    sim: SimOptions,
}

#[test]
fn cli_flags_parse_and_rates_outside_zero_to_one_are_refused() {
    use clap::{CommandFactory, Parser};
    Cli::command().debug_assert();
    let cli = Cli::try_parse_from([
        "sim",
        "--link",
        "/tmp/m",
        "--storage-slots",
        "5",
        "--cms-error",
        "42",
        "--cms-error-rate",
        "0.5",
        "--cms-error-on-send",
        "3",
        "--hang-after",
        "7",
        "--garbage-rate",
        "0.1",
        "--interleave-urcs",
        "--pin",
        "1234",
        "--not-registered",
        "--storage-full",
        "--echo",
        "--model",
        "ec25",
        "--seed",
        "9",
    ])
    .unwrap();
    let o = cli.sim;
    assert_eq!(o.link, Some(PathBuf::from("/tmp/m")));
    assert_eq!((o.storage_slots, o.cms_error, o.cms_error_on_send), (5, 42, Some(3)));
    assert_eq!((o.hang_after, o.model, o.seed), (Some(7), Model::Ec25, Some(9)));
    assert!(o.interleave_urcs && o.not_registered && o.storage_full && o.echo);
    assert!(Cli::try_parse_from(["sim", "--cms-error-rate", "1.5"]).is_err());
    assert!(Cli::try_parse_from(["sim", "--model", "nokia"]).is_err());
    let d = Cli::try_parse_from(["sim"]).unwrap().sim;
    assert_eq!(d.storage_slots, SimOptions::default().storage_slots);
    assert_eq!(d.report_delay_ms, SimOptions::default().report_delay_ms);
    assert_eq!(
        (d.cds_ack_timeout_ms, d.cds_resends, d.no_csms1),
        (SimOptions::default().cds_ack_timeout_ms, SimOptions::default().cds_resends, false)
    );
    let o =
        Cli::try_parse_from(["sim", "--cds-ack-timeout-ms", "700", "--cds-resends", "0", "--no-csms1"]).unwrap().sim;
    assert_eq!((o.cds_ack_timeout_ms, o.cds_resends, o.no_csms1), (700, 0, true));
    assert!(Cli::try_parse_from(["sim", "--cds-resends", "-1"]).is_err());
}

#[tokio::test]
async fn a_client_that_never_reads_does_not_block_control_or_stop() {
    let sim = start(opts()).await.unwrap();
    let control = sim.control();
    let mut silent = open_serial(sim.pty_path(), 115200).unwrap();
    // Direct delivery (+CMT with the whole PDU): 600 messages are far more than a pty buffers.
    silent.write_all(b"AT+CNMI=2,2,0,0,0\r").await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    for _ in 0..600 {
        control.inject("+358401234567", &"x".repeat(150)).await.unwrap();
    }
    let stats = timeout(WAIT, control.stats()).await.unwrap().unwrap();
    assert_eq!(stats["commands"]["AT+CNMI="], 1);
    timeout(Duration::from_secs(30), sim.stop()).await.unwrap();
}
