//! The modem driver over a real pty against the simulator, one test per fault: each ends in the
//! right state with nothing lost.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use smshub::modem::driver::{self, Connector, DriverConfig, InboundEvent, ModemHandle, ModemIo, ModemState, SendError};
use smshub::testbed::modem_sim::{self as sim, SimHandle, SimOptions};
use tokio::sync::{mpsc, watch};

const LIMIT: Duration = Duration::from_secs(60);

struct Rig {
    sim: SimHandle,
    handle: ModemHandle,
    events: mpsc::Receiver<InboundEvent>,
    _stop: watch::Sender<bool>,
    _dir: tempfile::TempDir,
}

async fn rig(opts: SimOptions, cfg: DriverConfig) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let link: PathBuf = dir.path().join("modem");
    let sim = sim::start(SimOptions { link: Some(link.clone()), seed: Some(7), ..opts }).await.unwrap();
    let connector: Connector = Arc::new(move || {
        let link = link.clone();
        Box::pin(
            async move { smshub::modem::tty::open_serial(&link, 115_200).map(|s| Box::new(s) as Box<dyn ModemIo>) },
        )
    });
    let (stop, stop_rx) = watch::channel(false);
    let cfg = DriverConfig {
        command_timeout: Duration::from_secs(3),
        registration_timeout: Duration::from_secs(2),
        health_interval: Duration::from_secs(1),
        reopen_backoff_max: Duration::from_millis(500),
        ..cfg
    };
    let (handle, events, _task) = driver::spawn(cfg, connector, stop_rx);
    Rig { sim, handle, events, _stop: stop, _dir: dir }
}

async fn wait_state(handle: &ModemHandle, want: impl Fn(&ModemState) -> bool) -> ModemState {
    let mut status = handle.status();
    let result = tokio::time::timeout(LIMIT, async {
        loop {
            let s = status.borrow_and_update().state.clone();
            if want(&s) {
                return s;
            }
            if status.changed().await.is_err() {
                return s;
            }
        }
    })
    .await;
    result.unwrap_or_else(|_| panic!("state never reached; last: {:?}", handle.status().borrow().state))
}

fn part(text: &str) -> smshub::pdu::SubmitPart {
    smshub::pdu::encode_submit("+358401234567", text, &smshub::pdu::SubmitOptions::default()).unwrap().remove(0)
}

async fn send(handle: &ModemHandle, text: &str) -> Result<u8, SendError> {
    let p = part(text);
    handle.send_part(&p.hex, p.tpdu_len).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_bytes_and_interleaved_urcs_lose_nothing() {
    let r =
        rig(SimOptions { garbage_rate: 0.3, interleave_urcs: true, ..SimOptions::default() }, DriverConfig::default())
            .await;
    wait_state(&r.handle, |s| *s == ModemState::Ready).await;
    for i in 0..10 {
        send(&r.handle, &format!("message {i}")).await.unwrap_or_else(|e| panic!("send {i}: {e}"));
    }
    let sent = r.sim.control().sent().await.unwrap();
    let texts: Vec<&str> = sent.iter().map(|s| s["text"].as_str().unwrap()).collect();
    assert_eq!(texts, (0..10).map(|i| format!("message {i}")).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_modem_gives_an_unknown_outcome_then_recovers() {
    let mut r =
        rig(SimOptions::default(), DriverConfig { send_timeout: Duration::from_secs(3), ..DriverConfig::default() })
            .await;
    wait_state(&r.handle, |s| *s == ModemState::Ready).await;
    r.sim.control().set(json!({"hang_after": 0})).await.unwrap();
    // The modem stops answering: no prompt (nothing sent) or no +CMGS (outcome unknown), or the
    // driver already noticed and is recovering. Never a silent success.
    match send(&r.handle, "into the void").await {
        Err(SendError::Unknown { .. }) | Err(SendError::Transient { .. }) | Err(SendError::NotReady { .. }) => {}
        other => panic!("expected a failure, got {other:?}"),
    }
    r.sim.control().set(json!({"hang_after": null})).await.unwrap();
    wait_state(&r.handle, |s| *s == ModemState::Ready).await;
    let mr = tokio::time::timeout(LIMIT, async {
        loop {
            match send(&r.handle, "after recovery").await {
                Ok(mr) => return mr,
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    })
    .await
    .expect("sends work again after the modem answers");
    let sent = r.sim.control().sent().await.unwrap();
    assert!(sent.iter().any(|s| s["text"] == "after recovery" && s["mr"] == u64::from(mr)), "{sent:?}");
    while r.events.try_recv().is_ok() {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_right_pin_unlocks_the_sim_once() {
    let r = rig(
        SimOptions { pin: Some("1234".into()), ..SimOptions::default() },
        DriverConfig { pin: Some("1234".into()), ..DriverConfig::default() },
    )
    .await;
    wait_state(&r.handle, |s| *s == ModemState::Ready).await;
    send(&r.handle, "unlocked").await.unwrap();
    let stats = r.sim.control().stats().await.unwrap();
    assert_eq!(stats["commands"]["AT+CPIN="], 1, "{stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_pin_is_tried_once_and_never_again() {
    let r = rig(
        SimOptions { pin: Some("1234".into()), ..SimOptions::default() },
        DriverConfig { pin: Some("9999".into()), ..DriverConfig::default() },
    )
    .await;
    let state = wait_state(&r.handle, |s| matches!(s, ModemState::SimLocked(_))).await;
    assert!(matches!(send(&r.handle, "x").await, Err(SendError::NotReady { .. })), "{state:?}");
    tokio::time::sleep(Duration::from_secs(3)).await; // several health ticks
    let stats = r.sim.control().stats().await.unwrap();
    assert_eq!(stats["commands"]["AT+CPIN="], 1, "a PUK lock is a disaster: {stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unregistered_modem_refuses_sends_until_it_registers() {
    let r = rig(SimOptions { not_registered: true, ..SimOptions::default() }, DriverConfig::default()).await;
    wait_state(&r.handle, |s| *s != ModemState::Opening && *s != ModemState::Initializing).await;
    assert!(matches!(send(&r.handle, "too early").await, Err(SendError::NotReady { .. })));
    r.sim.control().set(json!({"registered": true})).await.unwrap();
    wait_state(&r.handle, |s| *s == ModemState::Ready).await;
    send(&r.handle, "registered now").await.unwrap();
    let sent = r.sim.control().sent().await.unwrap();
    assert_eq!(sent.len(), 1, "nothing was sent while unregistered: {sent:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_sim_is_drained_and_waiting_messages_arrive() {
    let mut r =
        rig(SimOptions { storage_slots: 3, storage_full: true, ..SimOptions::default() }, DriverConfig::default())
            .await;
    wait_state(&r.handle, |s| *s == ModemState::Ready).await;
    r.sim.control().inject("+358401111111", "queued in the network").await.unwrap();
    let mut texts = Vec::new();
    let deadline = tokio::time::Instant::now() + LIMIT;
    while !texts.iter().any(|t: &String| t == "queued in the network") {
        let ev = tokio::time::timeout_at(deadline, r.events.recv()).await.expect("events keep coming").unwrap();
        if let InboundEvent::Stored { mem, index, pdu_hex } = ev {
            texts.extend(text_of(&pdu_hex));
            r.handle.delete(&mem, index).await.unwrap();
        }
    }
    assert!(texts.len() >= 4, "the three stored fillers and the waiting one: {texts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unplug_and_replug_reconnects_and_delivers_what_arrived_meanwhile() {
    let mut r = rig(SimOptions::default(), DriverConfig::default()).await;
    wait_state(&r.handle, |s| *s == ModemState::Ready).await;
    r.sim.control().unplug().await.unwrap();
    wait_state(&r.handle, |s| *s == ModemState::Unplugged || *s == ModemState::Recovering).await;
    assert!(send(&r.handle, "while unplugged").await.is_err());
    r.sim.control().inject("+358402222222", "sent while unplugged").await.unwrap();
    r.sim.control().replug().await.unwrap();
    wait_state(&r.handle, |s| *s == ModemState::Ready).await;
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        let ev = tokio::time::timeout_at(deadline, r.events.recv())
            .await
            .expect("the message arrives after replug")
            .unwrap();
        if let InboundEvent::Stored { pdu_hex, mem, index } = ev {
            r.handle.delete(&mem, index).await.unwrap();
            if text_of(&pdu_hex).as_deref() == Some("sent while unplugged") {
                break;
            }
        }
    }
    send(&r.handle, "after replug").await.unwrap();
}

fn text_of(pdu_hex: &str) -> Option<String> {
    match smshub::pdu::decode(pdu_hex, true).ok()?.message {
        smshub::pdu::Message::Deliver(d) => Some(d.text),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_received_sms_the_database_refuses_is_retried_until_stored_and_only_then_deleted() {
    let r = rig(SimOptions::default(), DriverConfig::default()).await;
    wait_state(&r.handle, |s| *s == ModemState::Ready).await;
    let db_path = r._dir.path().join("in.db");
    let store = smshub::store::Store::open(&db_path).unwrap();
    // The database refuses new parts, as a full disk would (a second connection, as an operator's).
    let admin = rusqlite::Connection::open(&db_path).unwrap();
    admin
        .execute_batch(
            "CREATE TRIGGER refuse BEFORE INSERT ON inbox_parts BEGIN SELECT RAISE(ABORT, 'disk full'); END;",
        )
        .unwrap();
    let (_shutdown, signal) = smshub::shutdown::Shutdown::new();
    let receiver = smshub::inbound::receive::ModemReceiver {
        modem_name: "sim".into(),
        modem: r.handle.clone(),
        store: store.clone(),
        forwarders: vec![],
        concat_timeout: Duration::from_secs(600),
        wake_forward: Arc::new(tokio::sync::Notify::new()),
        metrics: Default::default(),
    };
    tokio::spawn(receiver.run(r.events, signal));
    r.sim.control().inject("+358401111111", "kept through the outage").await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let storage = r.sim.control().storage().await.unwrap();
    assert_eq!(storage["used"], 1, "not stored, so not deleted: {storage}");
    admin.execute_batch("DROP TRIGGER refuse;").unwrap();
    let stored = tokio::time::timeout(LIMIT, async {
        loop {
            let rows = store.call(|db| db.list_inbox(10)).await.unwrap();
            if !rows.is_empty() {
                return rows;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("stored once the database accepts it again");
    assert_eq!(stored.len(), 1);
    let emptied = tokio::time::timeout(LIMIT, async {
        while r.sim.control().storage().await.unwrap()["used"] != 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(emptied.is_ok(), "deleted from the SIM after it was stored");
}
