//! The physical loopback rig (hardware/RIG.md): the driver against a REAL modem.
//!
//! These tests are `#[ignore]`d, so `cargo test` lists them as ignored rather than passing them.
//! Run them on the box with the modem (smshub service stopped):
//!
//! ```sh
//! SMSHUB_TEST_DEVICE=/dev/smshub-modem SMSHUB_TEST_PEER_NUMBER=+358401234567 \
//!     cargo test --release --test hardware_rig -- --ignored --nocapture
//! ```
//!
//! Run without `SMSHUB_TEST_DEVICE` they fail with that reason: a hardware test never passes
//! without hardware. Without `SMSHUB_TEST_PEER_NUMBER` the send and receive tests fail likewise.
//! `SMSHUB_TEST_PIN` is entered once if the SIM asks for it; the tests never guess a PIN.

use std::sync::Arc;
use std::time::Duration;

use smshub::modem::driver::{self, Connector, DriverConfig, InboundEvent, ModemHandle, ModemIo, ModemState};
use tokio::sync::{mpsc, watch};

fn env(name: &str) -> String {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v,
        _ => panic!("{name} is not set: this test needs the physical rig (hardware/RIG.md)"),
    }
}

struct RealModem {
    handle: ModemHandle,
    events: mpsc::Receiver<InboundEvent>,
    _stop: watch::Sender<bool>,
}

async fn real_modem() -> RealModem {
    let device = std::path::PathBuf::from(env("SMSHUB_TEST_DEVICE"));
    let connector: Connector = Arc::new(move || {
        let device = device.clone();
        Box::pin(
            async move { smshub::modem::tty::open_serial(&device, 115_200).map(|s| Box::new(s) as Box<dyn ModemIo>) },
        )
    });
    let cfg = DriverConfig {
        name: "rig".into(),
        pin: std::env::var("SMSHUB_TEST_PIN").ok().filter(|p| !p.is_empty()),
        registration_timeout: Duration::from_secs(120),
        ..DriverConfig::default()
    };
    let (stop, stop_rx) = watch::channel(false);
    let (handle, events, _task) = driver::spawn(cfg, connector, stop_rx);
    let mut status = handle.status();
    let ready = tokio::time::timeout(Duration::from_secs(180), async {
        loop {
            let state = status.borrow_and_update().state.clone();
            match state {
                ModemState::Ready => return Ok(()),
                ModemState::SimLocked(why) => {
                    return Err(format!("SIM locked: {why} (set SMSHUB_TEST_PIN; never guessed)"));
                }
                ModemState::Failed(why) => return Err(format!("modem failed: {why}")),
                _ => {}
            }
            if status.changed().await.is_err() {
                return Err("driver stopped".to_string());
            }
        }
    })
    .await;
    match ready {
        Ok(Ok(())) => {}
        Ok(Err(e)) => panic!("{e}"),
        Err(_) => panic!("modem not ready within 180 s: {:?}", handle.status().borrow().state),
    }
    RealModem { handle, events, _stop: stop }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the physical rig: SMSHUB_TEST_DEVICE (hardware/RIG.md)"]
async fn hardware_modem_registers_and_reports_its_health() {
    let m = real_modem().await;
    let s = m.handle.status().borrow().clone();
    eprintln!("identity: {:?}", s.identity);
    eprintln!(
        "registration: {:?}, signal: {:?} dBm, SMSC: {:?}, storage: {:?}",
        s.registration, s.signal_dbm, s.smsc, s.storage
    );
    assert!(s.registration.is_some_and(|r| r.registered()), "not registered: {:?}", s.registration);
    assert!(s.smsc.as_deref().is_some_and(|c| !c.is_empty()), "no SMSC on the SIM");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the physical rig: SMSHUB_TEST_DEVICE and SMSHUB_TEST_PEER_NUMBER (hardware/RIG.md)"]
async fn hardware_sends_gsm7_ucs2_and_multipart_to_the_peer() {
    let peer = env("SMSHUB_TEST_PEER_NUMBER");
    let m = real_modem().await;
    let texts = [
        "smshub rig: plain GSM-7 text [with escapes] {ok}".to_string(),
        "smshub rig: Unicode 🐕 Hyvää päivää".to_string(),
        format!("smshub rig: three parts. {}", "0123456789".repeat(33)),
    ];
    for text in &texts {
        let opts = smshub::pdu::SubmitOptions { concat_reference: fastrand::u8(..), ..Default::default() };
        let parts = smshub::pdu::encode_submit(&peer, text, &opts).expect("encodable");
        for (i, p) in parts.iter().enumerate() {
            let mr = m
                .handle
                .send_part(&p.hex, p.tpdu_len)
                .await
                .unwrap_or_else(|e| panic!("part {} of {text:?}: {e}", i + 1));
            eprintln!("sent part {}/{} (+CMGS: {mr})", i + 1, parts.len());
        }
    }
    eprintln!("check the peer: {} messages should have arrived, joined", texts.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the physical rig: SMSHUB_TEST_DEVICE and SMSHUB_TEST_PEER_NUMBER (hardware/RIG.md)"]
async fn hardware_receives_a_message_from_the_peer_and_deletes_it() {
    let _peer = env("SMSHUB_TEST_PEER_NUMBER");
    let mut m = real_modem().await;
    let nonce = format!("rig {}", fastrand::u32(1000..9999));
    eprintln!("send an SMS containing \"{nonce}\" from the peer to the modem's number within 5 minutes");
    let found = tokio::time::timeout(Duration::from_secs(300), async {
        loop {
            let Some(ev) = m.events.recv().await else { return false };
            if let InboundEvent::Stored { mem, index, pdu_hex } = ev {
                let text = match smshub::pdu::decode(&pdu_hex, true).map(|d| d.message) {
                    Ok(smshub::pdu::Message::Deliver(d)) => d.text,
                    _ => String::new(),
                };
                if text.contains(&nonce) {
                    m.handle.delete(&mem, index).await.expect("deleted after reading");
                    return true;
                }
            }
        }
    })
    .await;
    assert_eq!(found, Ok(true), "no message with {nonce:?} arrived");
}
