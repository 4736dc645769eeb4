//! Driver tests against a scripted fake modem over `tokio::io::duplex`.

use super::*;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

/// SMS-DELIVER "How are you?" with SMSC field (the classic example PDU from the dreamfabric pages).
pub(super) const DELIVER: &str = "07911326040000F0040B911346610089F60000208062917314080CC8F71D14969741F977FD07";
/// SMS-STATUS-REPORT with an empty SMSC field (first TPDU octet 0x06: MTI 2).
pub(super) const REPORT: &str = "0006D60B911326880736F4111011719551401110117195714000";

/// What the fake modem's SIM and network look like. Shared across reconnects, like a real SIM.
#[derive(Default)]
struct FakeSim {
    pin: Option<String>,
    unlocked: bool,
    creg_after: u32,
    creg_queries: u32,
    store: BTreeMap<u32, String>,
    total: u32,
    log: Vec<String>,
    next_mr: u8,
    cms_on_send: Option<u16>,
    hang_after_pdu: bool,
    no_prompt: bool,
    /// Log every command and answer none (a hung modem).
    silent: bool,
    /// Print power-up noise (with a SIM PIN state line) when the port opens.
    boot_noise: bool,
    /// Accept AT+CSMS=1 and CNMI ds=1 (phase 2+); otherwise both answer ERROR.
    csms1: bool,
    /// Direct deliveries waiting for AT+CNMA.
    acks_owed: u32,
    /// Answer ERROR to a line with a command before AT+CMGS.
    refuse_joined: bool,
}

impl FakeSim {
    fn new() -> Self {
        FakeSim { total: 30, unlocked: true, next_mr: 40, ..Default::default() }
    }
    fn count(&self, prefix: &str) -> usize {
        self.log.iter().filter(|l| l.starts_with(prefix)).count()
    }
    fn answer(&mut self, cmd: &str) -> String {
        const OK: &str = "\r\nOK\r\n";
        let ok = |body: &str| format!("\r\n{body}\r\n{OK}");
        let cpms = |s: &FakeSim| {
            let n = s.store.len();
            format!("{n},{t},{n},{t},{n},{t}", t = s.total)
        };
        match cmd {
            "AT" | "ATE0" | "AT+CMEE=1" | "AT+CSCLK=0" | "AT+CMGF=0" | "AT+CNMI=2,1,0,2,0" => OK.into(),
            "AT+CSMS=1" if self.csms1 => ok("+CSMS: 1,1,1"),
            "AT+CNMI=2,1,0,1,0" if self.csms1 => OK.into(),
            "AT+CNMA" | "AT+CNMA=2" if self.acks_owed > 0 => {
                self.acks_owed -= 1;
                OK.into()
            }
            "AT+CNMA" | "AT+CNMA=2" => "\r\n+CMS ERROR: 340\r\n".into(),
            "AT+CGMI" => ok("SIMCOM_Ltd"),
            "AT+CGMM" => ok("SIMCOM_SIM800L"),
            "AT+CGSN" => ok("861234567890123"),
            "AT+CIMI" if self.unlocked => ok("244911234567890"),
            "AT+CIMI" => "\r\n+CME ERROR: 11\r\n".into(),
            "AT+CPIN?" if self.unlocked => ok("+CPIN: READY"),
            "AT+CPIN?" => ok("+CPIN: SIM PIN"),
            "AT+CREG?" => {
                self.creg_queries += 1;
                let stat = if self.creg_queries > self.creg_after { 1 } else { 2 };
                ok(&format!("+CREG: 0,{stat}"))
            }
            "AT+CSQ" => ok("+CSQ: 20,99"),
            "AT+CSCA?" => ok("+CSCA: \"+358405202000\",145"),
            "AT+CPMS?" => {
                ok(&format!("+CPMS: \"SM\",{0},{1},\"SM\",{0},{1},\"SM\",{0},{1}", self.store.len(), self.total))
            }
            "AT+CMGL=4" => {
                let mut s = String::new();
                for (i, pdu) in &self.store {
                    s.push_str(&format!("\r\n+CMGL: {i},1,,{}\r\n{pdu}", pdu.len() / 2 - 8));
                }
                format!("{s}\r\n{OK}")
            }
            c if c.starts_with("AT+CPMS=") => ok(&format!("+CPMS: {}", cpms(self))),
            c if c.starts_with("AT+CPIN=") => {
                let given = c.trim_start_matches("AT+CPIN=").trim_matches('"');
                if Some(given) == self.pin.as_deref() {
                    self.unlocked = true;
                    OK.into()
                } else {
                    "\r\n+CME ERROR: 16\r\n".into()
                }
            }
            c if c.starts_with("AT+CMGR=") => {
                let i: u32 = c.trim_start_matches("AT+CMGR=").parse().unwrap();
                match self.store.get(&i) {
                    Some(pdu) => ok(&format!("+CMGR: 0,,{}\r\n{pdu}", pdu.len() / 2 - 8)),
                    None => OK.into(),
                }
            }
            c if c.starts_with("AT+CMGD=") => {
                let i: u32 = c.trim_start_matches("AT+CMGD=").parse().unwrap();
                self.store.remove(&i);
                OK.into()
            }
            _ => "\r\nERROR\r\n".into(),
        }
    }
}

type Shared = Arc<Mutex<FakeSim>>;

enum Ctl {
    /// Write these bytes (a URC).
    Say(String),
    /// Close the port like a USB unplug.
    Unplug,
}

/// The modem end of a duplex pipe: answers commands from `sim`, the `> ` flow included.
async fn fake_modem(io: DuplexStream, sim: Shared, mut ctl: mpsc::UnboundedReceiver<Ctl>) {
    let (mut r, mut w) = tokio::io::split(io);
    if sim.lock().unwrap().boot_noise {
        let noise = b"\x00\xff\r\nRDY\r\n\r\n+CFUN: 1\r\n\r\n+CPIN: SIM PIN\r\n";
        let _ = w.write_all(noise).await;
    }
    let mut line = Vec::new();
    let mut in_pdu = false;
    let mut byte = [0u8; 1];
    loop {
        tokio::select! {
            c = ctl.recv() => match c {
                Some(Ctl::Say(s)) => {
                    if s.contains("+CDS: ") && s.trim_end().ends_with(|c: char| c.is_ascii_hexdigit()) {
                        sim.lock().unwrap().acks_owed += 1;
                    }
                    let _ = w.write_all(s.as_bytes()).await;
                }
                Some(Ctl::Unplug) | None => return,
            },
            n = r.read(&mut byte) => {
                if !matches!(n, Ok(1)) { return; }
                let b = byte[0];
                let reply = match b {
                    b'\r' if !in_pdu => {
                        let cmd = String::from_utf8_lossy(&line).trim().to_string();
                        line.clear();
                        if cmd.is_empty() { continue; }
                        let mut s = sim.lock().unwrap();
                        s.log.push(cmd.clone());
                        if s.silent { continue; }
                        if let Some(rest) = cmd.strip_prefix("AT+CNMA;") {
                            // An ack joined to a send: the ack runs first, an error ends the line.
                            if s.refuse_joined {
                                "\r\nERROR\r\n".to_string()
                            } else if s.acks_owed == 0 {
                                "\r\n+CMS ERROR: 340\r\n".to_string()
                            } else {
                                s.acks_owed -= 1;
                                assert!(rest.starts_with("+CMGS="), "{cmd}");
                                in_pdu = true;
                                "\r\n> ".to_string()
                            }
                        } else if cmd.starts_with("AT+CMGS=") {
                            if s.no_prompt { continue; }
                            in_pdu = true;
                            "\r\n> ".to_string()
                        } else {
                            s.answer(&cmd)
                        }
                    }
                    0x1a if in_pdu => {
                        in_pdu = false;
                        let pdu = String::from_utf8_lossy(&line).to_string();
                        line.clear();
                        let mut s = sim.lock().unwrap();
                        s.log.push(format!("PDU {pdu}"));
                        if s.hang_after_pdu { continue; }
                        match s.cms_on_send {
                            Some(code) => format!("\r\n+CMS ERROR: {code}\r\n"),
                            None => {
                                s.next_mr = s.next_mr.wrapping_add(1);
                                format!("\r\n+CMGS: {}\r\n\r\nOK\r\n", s.next_mr)
                            }
                        }
                    }
                    0x1b => {
                        in_pdu = false;
                        line.clear();
                        sim.lock().unwrap().log.push("ESC".into());
                        "\r\nOK\r\n".to_string()
                    }
                    b'\n' => continue,
                    _ => { line.push(b); continue; }
                };
                if w.write_all(reply.as_bytes()).await.is_err() { return; }
            }
        }
    }
}

struct Harness {
    handle: ModemHandle,
    inbound: mpsc::Receiver<InboundEvent>,
    join: tokio::task::JoinHandle<()>,
    shutdown: watch::Sender<bool>,
    ctls: mpsc::UnboundedReceiver<mpsc::UnboundedSender<Ctl>>,
    ctl: Option<mpsc::UnboundedSender<Ctl>>,
    connects: Arc<AtomicUsize>,
    sim: Shared,
}

fn config() -> DriverConfig {
    DriverConfig {
        name: "test".into(),
        command_timeout: Duration::from_secs(5),
        send_timeout: Duration::from_secs(5),
        registration_timeout: Duration::from_secs(15),
        health_interval: Duration::from_secs(3600),
        reopen_backoff_max: Duration::from_millis(100),
        ..DriverConfig::default()
    }
}

fn start(sim: FakeSim, cfg: DriverConfig) -> Harness {
    let sim = Arc::new(Mutex::new(sim));
    let connects = Arc::new(AtomicUsize::new(0));
    let (ctl_tx, ctls) = mpsc::unbounded_channel();
    let (s2, c2) = (sim.clone(), connects.clone());
    let connector: Connector = Arc::new(move || {
        let (sim, connects, ctl_tx) = (s2.clone(), c2.clone(), ctl_tx.clone());
        Box::pin(async move {
            connects.fetch_add(1, Ordering::SeqCst);
            let (ours, theirs) = tokio::io::duplex(8192);
            let (tx, rx) = mpsc::unbounded_channel();
            let _ = ctl_tx.send(tx);
            tokio::spawn(fake_modem(theirs, sim, rx));
            Ok(Box::new(ours) as Box<dyn ModemIo>)
        })
    });
    let (shutdown, shutdown_rx) = watch::channel(false);
    let (handle, inbound, join) = spawn(cfg, connector, shutdown_rx);
    Harness { handle, inbound, join, shutdown, ctls, ctl: None, connects, sim }
}

const WAIT: Duration = Duration::from_secs(30);

impl Harness {
    async fn wait_state(&self, want: impl Fn(&ModemState) -> bool) -> ModemState {
        let mut rx = self.handle.status();
        let s = tokio::time::timeout(WAIT, rx.wait_for(|s| want(&s.state)))
            .await
            .expect("state not reached in time")
            .unwrap();
        s.state.clone()
    }
    async fn ctl(&mut self) -> mpsc::UnboundedSender<Ctl> {
        // Always the newest connection's control.
        while let Ok(c) = self.ctls.try_recv() {
            self.ctl = Some(c);
        }
        if self.ctl.is_none() {
            self.ctl = self.ctls.recv().await;
        }
        self.ctl.clone().unwrap()
    }
    async fn next_event(&mut self) -> InboundEvent {
        tokio::time::timeout(WAIT, self.inbound.recv()).await.expect("no inbound event").unwrap()
    }
    fn sim(&self) -> std::sync::MutexGuard<'_, FakeSim> {
        self.sim.lock().unwrap()
    }
}

#[tokio::test]
async fn init_reaches_ready_and_drains_stored_messages_on_start() {
    let mut sim = FakeSim::new();
    sim.store.insert(1, DELIVER.into());
    sim.store.insert(2, REPORT.into());
    let mut h = start(sim, config());
    h.wait_state(|s| *s == ModemState::Ready).await;
    assert_eq!(h.next_event().await, InboundEvent::Stored { mem: "SM".into(), index: 1, pdu_hex: DELIVER.into() });
    assert_eq!(
        h.next_event().await,
        InboundEvent::StatusReport { pdu_hex: REPORT.into(), stored: Some(("SM".into(), 2)) }
    );
    let status = h.handle.status().borrow().clone();
    let id = status.identity.unwrap();
    assert_eq!(id.profile, ProfileKind::Sim800);
    assert_eq!(id.imsi_masked.as_deref(), Some("24491**********"));
    assert_eq!(status.smsc.as_deref(), Some("+358405202000"));
    assert_eq!(status.storage, Some(Storage { used: 2, total: 30 }));
    let sim = h.sim();
    for cmd in ["ATE0", "AT+CMEE=1", "AT+CSCLK=0", "AT+CMGF=0", "AT+CNMI=2,1,0,2,0", "AT+CMGL=4"] {
        assert_eq!(sim.count(cmd), 1, "{cmd} in {:?}", sim.log);
    }
    assert_eq!(sim.count("AT+CPIN="), 0);
    assert_eq!(sim.count("AT+CMGD"), 0, "the driver must never delete on its own");
}

#[tokio::test]
async fn correct_pin_is_entered_once_and_modem_becomes_ready() {
    let mut sim = FakeSim::new();
    sim.pin = Some("1234".into());
    sim.unlocked = false;
    let h = start(sim, DriverConfig { pin: Some("1234".into()), ..config() });
    h.wait_state(|s| *s == ModemState::Ready).await;
    assert_eq!(h.sim().count("AT+CPIN="), 1);
}

#[tokio::test]
async fn wrong_pin_locks_the_driver_and_is_never_sent_again_even_after_replug() {
    let mut sim = FakeSim::new();
    sim.pin = Some("1234".into());
    sim.unlocked = false;
    let cfg = DriverConfig { pin: Some("0000".into()), health_interval: Duration::from_millis(100), ..config() };
    let mut h = start(sim, cfg);
    let state = h.wait_state(|s| matches!(s, ModemState::SimLocked(_))).await;
    assert!(state.to_string().contains("refused the configured PIN"), "{state}");
    // Let the locked loop re-check +CPIN? a few times, then unplug and replug.
    tokio::time::sleep(Duration::from_millis(400)).await;
    h.ctl().await.send(Ctl::Unplug).unwrap();
    tokio::time::timeout(WAIT, async {
        while h.connects.load(Ordering::SeqCst) < 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap();
    h.wait_state(|s| matches!(s, ModemState::SimLocked(_))).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sim = h.sim();
    assert_eq!(sim.count("AT+CPIN="), 1, "{:?}", sim.log);
    assert!(sim.count("AT+CPIN?") >= 3);
}

#[tokio::test]
async fn sim_pin_without_configured_pin_is_locked_and_sends_are_refused() {
    let mut sim = FakeSim::new();
    sim.pin = Some("1234".into());
    sim.unlocked = false;
    let h = start(sim, config());
    let state = h.wait_state(|s| matches!(s, ModemState::SimLocked(_))).await;
    assert!(state.to_string().contains("none is configured"), "{state}");
    let err = h.handle.send_part("0011", 1).await.unwrap_err();
    assert!(matches!(err, SendError::NotReady { .. }), "{err:?}");
    assert_eq!(h.sim().count("AT+CPIN="), 0);
    assert_eq!(h.sim().count("AT+CMGS"), 0);
}

#[tokio::test]
async fn registration_is_waited_for_before_ready() {
    let mut sim = FakeSim::new();
    sim.creg_after = 3;
    let h = start(sim, config());
    h.wait_state(|s| *s == ModemState::Ready).await;
    assert!(h.sim().count("AT+CREG?") >= 4);
    let reg = h.handle.status().borrow().registration.unwrap();
    assert!(reg.registered());
}

#[tokio::test]
async fn not_registered_after_timeout_goes_on_but_refuses_sends() {
    let mut sim = FakeSim::new();
    sim.creg_after = u32::MAX;
    let h = start(sim, DriverConfig { registration_timeout: Duration::from_millis(300), ..config() });
    h.wait_state(|s| *s == ModemState::WaitingForRegistration).await;
    // Init went on to the storage setup anyway.
    tokio::time::timeout(WAIT, async {
        while h.sim().count("AT+CMGL=4") == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap();
    let err = h.handle.send_part("0011", 1).await.unwrap_err();
    assert!(matches!(err, SendError::NotReady { .. }), "{err:?}");
    // A registration URC makes it ready.
    let mut h = h;
    h.ctl().await.send(Ctl::Say("\r\n+CREG: 5\r\n".into())).unwrap();
    h.wait_state(|s| *s == ModemState::Ready).await;
}

#[tokio::test]
async fn cmti_is_read_and_deleted_only_on_request() {
    let mut h = start(FakeSim::new(), config());
    h.wait_state(|s| *s == ModemState::Ready).await;
    h.sim().store.insert(5, DELIVER.into());
    h.ctl().await.send(Ctl::Say("\r\n+CMTI: \"SM\",5\r\n".into())).unwrap();
    assert_eq!(h.next_event().await, InboundEvent::Stored { mem: "SM".into(), index: 5, pdu_hex: DELIVER.into() });
    assert_eq!(h.sim().count("AT+CMGD"), 0);
    // Not emitted again while it waits for deletion, even when the storage is listed again.
    h.handle.request_drain().await;
    h.handle.delete("SM", 5).await.unwrap();
    assert!(h.inbound.try_recv().is_err(), "pending index emitted twice");
    assert_eq!(h.sim().count("AT+CMGD=5"), 1);
    assert!(h.sim().store.is_empty());
}

#[tokio::test]
async fn cds_status_report_and_cmt_are_handed_out_directly() {
    let mut h = start(FakeSim::new(), config());
    h.wait_state(|s| *s == ModemState::Ready).await;
    let ctl = h.ctl().await;
    ctl.send(Ctl::Say(format!("\r\n+CDS: 25\r\n{REPORT}\r\n"))).unwrap();
    assert_eq!(h.next_event().await, InboundEvent::StatusReport { pdu_hex: REPORT.into(), stored: None });
    ctl.send(Ctl::Say(format!("\r\n+CMT: ,30\r\n{DELIVER}\r\n"))).unwrap();
    assert_eq!(h.next_event().await, InboundEvent::Direct { pdu_hex: DELIVER.into() });
}

#[tokio::test]
async fn send_returns_the_reference_and_cms_errors_are_classified() {
    let h = start(FakeSim::new(), config());
    h.wait_state(|s| *s == ModemState::Ready).await;
    assert_eq!(h.handle.send_part("0011000B91", 10).await, Ok(41));
    assert_eq!(h.sim().count("PDU 0011000B91"), 1);
    h.sim().cms_on_send = Some(304);
    assert!(matches!(h.handle.send_part("0011", 1).await, Err(SendError::Permanent { code: 304, .. })));
    h.sim().cms_on_send = Some(38);
    assert!(matches!(h.handle.send_part("0011", 1).await, Err(SendError::Transient { .. })));
    assert_eq!(h.handle.status().borrow().state, ModemState::Ready);
}

#[tokio::test]
async fn sends_are_spaced_by_the_minimum_interval() {
    let h = start(FakeSim::new(), DriverConfig { min_send_interval: Duration::from_millis(300), ..config() });
    h.wait_state(|s| *s == ModemState::Ready).await;
    let t0 = Instant::now();
    h.handle.send_part("00", 1).await.unwrap();
    h.handle.send_part("00", 1).await.unwrap();
    assert!(t0.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn send_abandoned_by_its_caller_before_it_started_is_not_sent() {
    let h = start(FakeSim::new(), DriverConfig { min_send_interval: Duration::from_millis(600), ..config() });
    h.wait_state(|s| *s == ModemState::Ready).await;
    h.handle.send_part("00AA", 2).await.unwrap();
    // The second send waits out the minimum interval inside the driver; its caller gives up meanwhile.
    let abandoned = tokio::time::timeout(Duration::from_millis(100), h.handle.send_part("00BB", 2)).await;
    assert!(abandoned.is_err());
    // A later send goes through (and proves the driver got past the abandoned one).
    h.handle.send_part("00CC", 2).await.unwrap();
    let sim = h.sim();
    assert_eq!(sim.count("PDU 00BB"), 0, "{:?}", sim.log);
    assert_eq!(sim.count("PDU 00CC"), 1, "{:?}", sim.log);
}

#[tokio::test]
async fn timeout_after_the_pdu_is_unknown_and_the_modem_is_reinitialised() {
    let mut sim = FakeSim::new();
    sim.hang_after_pdu = true;
    let h = start(sim, DriverConfig { send_timeout: Duration::from_millis(300), ..config() });
    h.wait_state(|s| *s == ModemState::Ready).await;
    let err = h.handle.send_part("0011", 1).await.unwrap_err();
    assert!(matches!(err, SendError::Unknown { .. }), "{err:?}");
    h.wait_state(|s| *s == ModemState::Ready).await;
    let sim = h.sim();
    assert_eq!(sim.count("PDU 0011"), 1, "never resent: {:?}", sim.log);
    assert_eq!(sim.count("ATE0"), 2, "re-init after the probe: {:?}", sim.log);
}

#[tokio::test]
async fn a_modem_that_hangs_mid_send_gets_one_probe_then_is_reopened() {
    // The pool's hand-over time is the prompt wait plus this one probe (not three).
    let cfg = DriverConfig {
        prompt_timeout: Duration::from_millis(300),
        probe_timeout: Duration::from_millis(300),
        reopen_backoff_max: Duration::from_secs(5),
        ..config()
    };
    let h = start(FakeSim::new(), cfg);
    h.wait_state(|s| *s == ModemState::Ready).await;
    // The driver reads the signal right after init; silence only after that answer, so the
    // hang meets the send and not that read.
    let mut rx = h.handle.status();
    tokio::time::timeout(WAIT, rx.wait_for(|s| s.signal_dbm.is_some())).await.expect("signal read").unwrap();
    h.sim().silent = true;
    let err = h.handle.send_part("0011", 1).await.unwrap_err();
    assert!(matches!(&err, SendError::Transient { reason } if reason.contains("nothing was sent")), "{err:?}");
    assert_ne!(h.handle.status().borrow().state, ModemState::Ready, "not ready once the answer comes");
    let sim = h.sim();
    let after: Vec<&String> = sim.log.iter().skip_while(|l| !l.starts_with("AT+CMGS=")).skip(1).collect();
    assert_eq!(after.iter().filter(|l| l.as_str() == "AT").count(), 1, "one probe: {:?}", sim.log);
    assert_eq!(sim.count("PDU"), 0);
}

#[tokio::test]
async fn missing_prompt_aborts_with_esc_and_nothing_is_sent() {
    let mut sim = FakeSim::new();
    sim.no_prompt = true;
    let h = start(sim, DriverConfig { prompt_timeout: Duration::from_millis(500), ..config() });
    h.wait_state(|s| *s == ModemState::Ready).await;
    let err = h.handle.send_part("0011", 1).await.unwrap_err();
    match &err {
        SendError::Transient { reason } => {
            assert!(reason.contains("nothing was sent"), "{reason}")
        }
        other => panic!("expected transient, got {other:?}"),
    }
    h.wait_state(|s| *s == ModemState::Ready).await;
    let sim = h.sim();
    assert_eq!(sim.count("ESC"), 1);
    assert_eq!(sim.count("PDU"), 0);
}

#[tokio::test]
async fn unplug_goes_unplugged_then_reconnects_and_drains_again() {
    let mut h = start(FakeSim::new(), config());
    h.wait_state(|s| *s == ModemState::Ready).await;
    let mut status = h.handle.status();
    h.sim().store.insert(7, DELIVER.into());
    h.ctl().await.send(Ctl::Unplug).unwrap();
    tokio::time::timeout(WAIT, status.wait_for(|s| s.state == ModemState::Unplugged)).await.unwrap().unwrap();
    h.wait_state(|s| *s == ModemState::Ready).await;
    assert!(h.connects.load(Ordering::SeqCst) >= 2);
    assert_eq!(h.next_event().await, InboundEvent::Stored { mem: "SM".into(), index: 7, pdu_hex: DELIVER.into() });
}

#[tokio::test]
async fn connector_failures_back_off_and_retry() {
    let attempts = Arc::new(AtomicUsize::new(0));
    let a = attempts.clone();
    let connector: Connector = Arc::new(move || {
        let a = a.clone();
        Box::pin(async move {
            a.fetch_add(1, Ordering::SeqCst);
            Err(io::Error::new(io::ErrorKind::NotFound, "no /dev/ttyUSB2"))
        })
    });
    let (shutdown, rx) = watch::channel(false);
    let (handle, _inbound, join) = spawn(config(), connector, rx);
    let mut st = handle.status();
    tokio::time::timeout(WAIT, st.wait_for(|s| s.state == ModemState::Unplugged)).await.unwrap().unwrap();
    tokio::time::timeout(WAIT, async {
        while attempts.load(Ordering::SeqCst) < 3 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap();
    assert!(handle.status().borrow().last_error.as_deref().unwrap().contains("no /dev/ttyUSB2"));
    shutdown.send(true).unwrap();
    tokio::time::timeout(WAIT, join).await.unwrap().unwrap();
}

#[tokio::test]
async fn modem_restart_announced_by_rdy_triggers_reinit() {
    let mut h = start(FakeSim::new(), config());
    h.wait_state(|s| *s == ModemState::Ready).await;
    h.ctl().await.send(Ctl::Say("\r\nRDY\r\n".into())).unwrap();
    tokio::time::timeout(WAIT, async {
        while h.sim().count("ATE0") < 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap();
    h.wait_state(|s| *s == ModemState::Ready).await;
}

#[tokio::test]
async fn health_check_reports_signal_and_catches_a_lost_cmti() {
    let mut h = start(FakeSim::new(), DriverConfig { health_interval: Duration::from_millis(200), ..config() });
    h.wait_state(|s| *s == ModemState::Ready).await;
    // A message arrives but its +CMTI is lost (no URC sent).
    h.sim().store.insert(9, DELIVER.into());
    assert_eq!(h.next_event().await, InboundEvent::Stored { mem: "SM".into(), index: 9, pdu_hex: DELIVER.into() });
    assert_eq!(h.handle.status().borrow().signal_dbm, Some(-73));
    // Handed out once only, although every later health check sees it still stored.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(h.inbound.try_recv().is_err());
}

#[tokio::test]
async fn storage_full_on_send_hands_out_stored_messages() {
    let mut h = start(FakeSim::new(), config());
    h.wait_state(|s| *s == ModemState::Ready).await;
    h.sim().store.insert(3, DELIVER.into());
    h.sim().cms_on_send = Some(322);
    let err = h.handle.send_part("0011", 1).await.unwrap_err();
    assert!(matches!(err, SendError::Transient { .. }), "{err:?}");
    assert_eq!(h.next_event().await, InboundEvent::Stored { mem: "SM".into(), index: 3, pdu_hex: DELIVER.into() });
}

#[tokio::test]
async fn boot_noise_before_init_is_not_taken_for_a_restart() {
    let mut sim = FakeSim::new();
    sim.boot_noise = true;
    let h = start(sim, config());
    h.wait_state(|s| *s == ModemState::Ready).await;
    // A send goes through the serve loop, so the stale URCs have been looked at by then.
    h.handle.send_part("00", 1).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let sim = h.sim();
    assert_eq!(sim.count("ATE0"), 1, "{:?}", sim.log);
    drop(sim);
    assert_eq!(h.handle.status().borrow().state, ModemState::Ready);
}

#[tokio::test]
async fn shutdown_stops_the_driver() {
    let h = start(FakeSim::new(), config());
    h.wait_state(|s| *s == ModemState::Ready).await;
    h.shutdown.send(true).unwrap();
    tokio::time::timeout(WAIT, h.join).await.unwrap().unwrap();
}

#[test]
fn state_words_are_for_people() {
    assert_eq!(ModemState::Unplugged.to_string(), "modem not connected (unplugged or restarting); retrying");
    assert!(ModemState::SimLocked("x".into()).to_string().starts_with("SIM card locked"));
}

fn phase2plus() -> FakeSim {
    FakeSim { csms1: true, ..FakeSim::new() }
}

async fn wait_log(h: &Harness, what: &str, n: usize) {
    let ok = tokio::time::timeout(WAIT, async {
        while h.sim().log.iter().filter(|l| *l == what).count() < n {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(ok.is_ok(), "{what:?} not seen {n} times: {:?}", h.sim().log);
}

#[tokio::test]
async fn direct_report_is_acknowledged_only_after_the_verdict_and_rides_on_the_next_send() {
    let mut h = start(phase2plus(), config());
    h.wait_state(|s| *s == ModemState::Ready).await;
    assert!(h.sim().log.iter().any(|l| l == "AT+CNMI=2,1,0,1,0"), "{:?}", h.sim().log);
    assert_eq!(h.sim().count("AT+CNMI=2,1,0,2,0"), 0);
    h.ctl().await.send(Ctl::Say(format!("\r\n+CDS: 25\r\n{REPORT}\r\n"))).unwrap();
    assert_eq!(h.next_event().await, InboundEvent::StatusReport { pdu_hex: REPORT.into(), stored: None });
    tokio::time::sleep(ACK_HOLD_FOR_TESTS).await;
    assert_eq!(h.sim().count("AT+CNMA"), 0, "no ack before the consumer's verdict");
    h.handle.acknowledge(Ack::Stored).await;
    assert_eq!(h.handle.send_part("0011000B91", 10).await, Ok(41));
    assert_eq!(h.sim().count("AT+CNMA;+CMGS=10"), 1, "{:?}", h.sim().log);
    assert_eq!(h.sim().acks_owed, 0);
    // Judged twice: the second verdict finds nothing owed and sends nothing.
    h.handle.acknowledge(Ack::Stored).await;
    assert_eq!(h.handle.send_part("0011000B91", 10).await, Ok(42));
    assert_eq!(h.sim().count("AT+CNMA"), 1, "{:?}", h.sim().log);
}

#[tokio::test]
async fn an_ack_with_no_send_to_ride_on_goes_alone_and_a_negative_one_at_once() {
    let mut h = start(phase2plus(), config());
    h.wait_state(|s| *s == ModemState::Ready).await;
    let ctl = h.ctl().await;
    ctl.send(Ctl::Say(format!("\r\n+CDS: 25\r\n{REPORT}\r\n"))).unwrap();
    h.next_event().await;
    h.handle.acknowledge(Ack::Stored).await;
    wait_log(&h, "AT+CNMA", 1).await;
    ctl.send(Ctl::Say("\r\n+CDS: 3\r\n0006D1\r\n".into())).unwrap();
    h.next_event().await;
    h.handle.acknowledge(Ack::Unusable).await;
    wait_log(&h, "AT+CNMA=2", 1).await;
    assert_eq!(h.sim().acks_owed, 0);
}

#[tokio::test]
async fn a_cds_without_its_pdu_is_not_acknowledged_and_indications_are_set_again() {
    let cfg = DriverConfig { health_interval: Duration::from_millis(300), ..config() };
    let mut h = start(phase2plus(), cfg);
    h.wait_state(|s| *s == ModemState::Ready).await;
    let ctl = h.ctl().await;
    for hostile in
        ["\r\n+CDS: 25\r\nNOT HEX\r\n", "\r\n+CDS: 999999999999999999999\r\n\r\nRING\r\n", "\r\n+CDS: 25\r\n0006D\r\n"]
    {
        ctl.send(Ctl::Say(hostile.into())).unwrap();
    }
    wait_log(&h, "AT+CNMI=2,1,0,1,0", 2).await;
    assert_eq!(h.sim().count("AT+CNMA"), 0);
    assert!(h.inbound.try_recv().is_err(), "nothing to hand out");
    assert_eq!(h.handle.status().borrow().state, ModemState::Ready);
}

#[tokio::test]
async fn a_phase_2_modem_keeps_reports_stored_and_owes_no_ack() {
    let mut h = start(FakeSim::new(), config());
    h.wait_state(|s| *s == ModemState::Ready).await;
    assert_eq!(h.sim().count("AT+CSMS=1"), 1);
    assert_eq!(h.sim().count("AT+CNMI=2,1,0,2,0"), 1, "{:?}", h.sim().log);
    // A +CDS anyway (the modem ignores ds): handed out, and no ack is sent for it.
    h.ctl().await.send(Ctl::Say(format!("\r\n+CDS: 25\r\n{REPORT}\r\n"))).unwrap();
    h.next_event().await;
    h.handle.acknowledge(Ack::Stored).await;
    assert_eq!(h.handle.send_part("0011000B91", 10).await, Ok(41));
    tokio::time::sleep(ACK_HOLD_FOR_TESTS).await;
    assert_eq!(h.sim().count("AT+CNMA"), 0, "{:?}", h.sim().log);
}

/// A little longer than the driver's ack hold.
const ACK_HOLD_FOR_TESTS: Duration = Duration::from_millis(1200);

#[tokio::test]
async fn a_modem_that_refuses_an_ack_joined_to_a_send_gets_them_apart_from_then_on() {
    let mut h = start(FakeSim { refuse_joined: true, ..phase2plus() }, config());
    h.wait_state(|s| *s == ModemState::Ready).await;
    let ctl = h.ctl().await;
    ctl.send(Ctl::Say(format!("\r\n+CDS: 25\r\n{REPORT}\r\n"))).unwrap();
    h.next_event().await;
    h.handle.acknowledge(Ack::Stored).await;
    assert_eq!(h.handle.send_part("0011000B91", 10).await, Ok(41), "sent after the refusal");
    let log: Vec<String> = h.sim().log.iter().filter(|l| l.contains("CNMA") || l.contains("CMGS")).cloned().collect();
    assert_eq!(log, ["AT+CNMA;+CMGS=10", "AT+CNMA", "AT+CMGS=10"]);
    assert_eq!(h.sim().count("PDU "), 1, "the PDU went out once");
    ctl.send(Ctl::Say(format!("\r\n+CDS: 25\r\n{REPORT}\r\n"))).unwrap();
    h.next_event().await;
    h.handle.acknowledge(Ack::Stored).await;
    assert_eq!(h.handle.send_part("0011000B91", 10).await, Ok(42));
    wait_log(&h, "AT+CNMA", 2).await;
    assert_eq!(h.sim().count("AT+CNMA;"), 1, "not joined again: {:?}", h.sim().log);
}
