//! Quirk profiles per modem family, their detection from `+CGMI`/`+CGMM`, and the read-only diagnosis
//! behind `smshub doctor`.
//!
//! A profile holds only what differs between families: the `+CMGS` timeout, extra init commands, the
//! `+CNMI`/`+CPMS` variant. Each value cites where it comes from; where the source is general knowledge
//! rather than a stored manual, it says UNCERTAIN so the next person knows what to verify on hardware.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::at::{AtClient, response_fields};

/// Which family a modem belongs to (config `profile = "auto" | "sim800" | ...`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProfileKind {
    /// Detect from `+CGMI`/`+CGMM` at init.
    #[default]
    Auto,
    Sim800,
    Sim7600,
    Ec25,
    E3372,
    Generic,
}

/// What the driver does differently per family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    pub kind: ProfileKind,
    /// How long a `+CMGS` may take after the PDU was written before the outcome counts as unknown.
    pub send_timeout: Duration,
    /// Sent after the common init (`ATE0`, `+CMEE=1`), before the PIN check. Failures are logged, not fatal.
    pub init_extras: &'static [&'static str],
    /// The `+CNMI` command: store incoming messages and announce them with `+CMTI`; status reports as
    /// `+CDSI` (ds=2) or `+CDS` (ds=1).
    pub cnmi: &'static str,
    /// The `+CNMI` with status reports routed directly (`+CDS`, ds=1), tried after `AT+CSMS=1` was
    /// accepted so each report is acknowledged with `AT+CNMA` once it is stored (no `+CMGR`/`+CMGD`
    /// per report). `None`: the family keeps [`Profile::cnmi`]. When the modem refuses `AT+CSMS=1`
    /// or this command, the driver falls back to `cnmi` by itself.
    pub cnmi_direct: Option<&'static str>,
    /// The `+CPMS` command: the three message stores.
    pub cpms: &'static str,
    /// Known bugs and field notes, shown by the doctor.
    pub notes: &'static [&'static str],
}

/// The default `+CNMI`: mode 2 (buffer URCs while the link is busy), mt=1 (store, announce with +CMTI),
/// no cell broadcast, ds=2 (status reports stored, announced with +CDSI), bfr=0 (flush buffered URCs).
/// Storing first means nothing is lost while smshub is down (PROTOCOLS.md §4, CNMI recommendation).
const CNMI_STORED: &str = "AT+CNMI=2,1,0,2,0";
/// The same, with status reports delivered directly as `+CDS` (ds=1). With `AT+CSMS=1` in force
/// each `+CDS` waits for our `AT+CNMA`; unacknowledged, the network resends it (27.005 §3.4.4, and
/// the ME stops routing to us: mt=ds=0). Inbound SMS stay mt=1: stored on the SIM first, deleted
/// only after our commit.
const CNMI_CDS: &str = "AT+CNMI=2,1,0,1,0";
const CPMS_SIM: &str = "AT+CPMS=\"SM\",\"SM\",\"SM\"";

impl ProfileKind {
    /// The quirks of this family (`Auto` before detection behaves like `Generic`).
    pub fn profile(self) -> Profile {
        match self {
            ProfileKind::Sim800 => Profile {
                kind: self,
                // SIM800 Series AT Command Manual V1.09, p.121: +CMGS max response time 60 s.
                send_timeout: Duration::from_secs(60),
                // AT+CSCLK=0: no slow clock (sleep); with sleep enabled the UART drops the first bytes of
                // a command after idle (SIM800 manual V1.09, AT+CSCLK).
                init_extras: &["AT+CSCLK=0"],
                // SIM800 manual p.125 lists ds=2 (+CDSI) as supported.
                cnmi: CNMI_STORED,
                // SIM800 Series AT Command Manual V1.09 p.125: ds=1 routes reports as `+CDS: <length>`
                // + PDU. UNCERTAIN: whether its AT+CSMS takes service 1 and AT+CNMA acks a +CDS is not
                // in a stored source; the driver tries and keeps ds=2 on ERROR.
                cnmi_direct: Some(CNMI_CDS),
                cpms: CPMS_SIM,
                notes: &[
                    "SIM800L browns out on weak power supplies during transmit bursts (resets show as RDY/SMS Ready noise)",
                    "142-148 character texts gave +CMS ERROR: 325 through one library (zabsalahid/serialport-gsm #66)",
                    "2G only: does not work where 2G is shut down",
                ],
            },
            ProfileKind::Sim7600 => Profile {
                kind: self,
                // UNCERTAIN: SIM7500/SIM7600 Series AT Command Manual is not stored; use the 27.005 budget
                // of PROTOCOLS.md (>= 120 s per part).
                send_timeout: Duration::from_secs(120),
                init_extras: &[],
                cnmi: CNMI_STORED,
                // UNCERTAIN: no stored SIMCom SIM7600 manual; 27.005 behaviour assumed, tried at init,
                // ds=2 kept on ERROR.
                cnmi_direct: Some(CNMI_CDS),
                cpms: CPMS_SIM,
                notes: &[
                    "LTE module: check +CEREG, not only +CREG (botletics/SIM7000-LTE-Shield #103: +CREG denied, +CEREG registered, CMGS gave +CMS ERROR: 500)",
                ],
            },
            ProfileKind::Ec25 => Profile {
                kind: self,
                // Quectel EC25&EC21 AT Commands Manual p.142: AT+QCMGS (and by reference CMGS) 120 s,
                // determined by the network.
                send_timeout: Duration::from_secs(120),
                // AT+QURCCFG="urcport",... chooses where URCs go (usbat, usbmodem, uart1). It is NOT sent
                // by default: the right value depends on whether we talk over USB (ttyUSB2, "usbat") or
                // the UART of a HAT ("uart1"). Quectel EC25&EC21 AT Commands Manual, AT+QURCCFG.
                init_extras: &[],
                // EC25 manual p.139 CNMI: ds=2 supported.
                cnmi: CNMI_STORED,
                // Quectel EC25&EC21 AT Commands Manual, AT+CSMS (service 1) and AT+CNMA ("+CMS ERROR:
                // 340" for an ack nobody expects), PROTOCOLS.md §4; CNMI ds=1 on p.139.
                cnmi_direct: Some(CNMI_CDS),
                cpms: CPMS_SIM,
                notes: &[
                    "In LTE-only networks SMS needs SMS over SGs or IMS; sends timed out in 4G and worked in 2G until IMS (AT+QCFG=\"ims\") or AT+CGSMS was set (the-modem-distro/pinephone_modem_sdk #40)",
                    "URCs go to the port set by AT+QURCCFG=\"urcport\"; if +CMTI never arrives, check it (usbat for ttyUSB2, uart1 for a HAT UART)",
                ],
            },
            ProfileKind::E3372 => Profile {
                kind: self,
                // UNCERTAIN: no stored Huawei manual; 27.005 budget.
                send_timeout: Duration::from_secs(120),
                // UNCERTAIN (Huawei practice, not from a stored source): AT^CURC=0 stops the periodic
                // ^RSSI/^MODE/^BOOT reports that otherwise flood the AT port. They are harmless to the
                // digester (they become Urc::Other), so a failure of this command is only logged.
                init_extras: &["AT^CURC=0"],
                // UNCERTAIN: the E3372 in serial ("stick") firmware is said not to store status reports
                // reliably; take them directly as +CDS (also the fallback: without AT+CSMS=1 the +CDS
                // needs no ack, and a report missed while smshub is down is lost).
                cnmi: CNMI_CDS,
                cnmi_direct: Some(CNMI_CDS),
                cpms: CPMS_SIM,
                notes: &[
                    "Must run the serial (stick) firmware, not HiLink (HiLink has no AT port)",
                    "Sends unsolicited ^RSSI/^MODE/^BOOT lines unless AT^CURC=0",
                ],
            },
            ProfileKind::Generic | ProfileKind::Auto => Profile {
                kind: self,
                // PROTOCOLS.md §4: budget >= 120 s per part.
                send_timeout: Duration::from_secs(120),
                init_extras: &[],
                cnmi: CNMI_STORED,
                // 3GPP TS 27.005 §3.1 (+CSMS service 1), §3.4.1 (+CNMI ds=1), §3.4.4 (+CNMA): standard
                // commands, tried at init; a modem that answers ERROR keeps ds=2.
                cnmi_direct: Some(CNMI_CDS),
                cpms: CPMS_SIM,
                notes: &[],
            },
        }
    }
}

/// Pick the family from the `+CGMI` (manufacturer) and `+CGMM` (model) answers.
pub fn detect(manufacturer: &str, model: &str) -> ProfileKind {
    let m = manufacturer.to_ascii_uppercase();
    let model = model.to_ascii_uppercase();
    if model.contains("SIM800") || model.contains("SIM900") {
        ProfileKind::Sim800
    } else if model.contains("SIM7600")
        || model.contains("SIM7500")
        || model.contains("SIM7000")
        || model.contains("SIM7080")
    {
        ProfileKind::Sim7600
    } else if m.contains("QUECTEL") || model.starts_with("EC2") || model.starts_with("EG2") || model.starts_with("EC21")
    {
        ProfileKind::Ec25
    } else if m.contains("HUAWEI") || model.starts_with("E3372") || model.starts_with("E3276") {
        ProfileKind::E3372
    } else {
        ProfileKind::Generic
    }
}

/// What the doctor found, each answer parsed where possible. Every query is read-only.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Diagnosis {
    /// Whether a plain `AT` was answered with OK.
    pub responds: bool,
    pub manufacturer: Option<String>,
    pub model: Option<String>,
    pub revision: Option<String>,
    pub imei: Option<String>,
    /// IMSI with everything after MCC+MNC (the first 5 digits) masked.
    pub imsi_masked: Option<String>,
    /// `+CPIN?` answer, e.g. `READY`, `SIM PIN`, `SIM PUK`.
    pub sim: Option<String>,
    pub creg_stat: Option<u8>,
    pub cereg_stat: Option<u8>,
    pub signal_dbm: Option<i32>,
    pub smsc: Option<String>,
    /// `+CPMS?` first store: (memory, used, total).
    pub storage: Option<(String, u32, u32)>,
    pub profile: Option<ProfileKind>,
    /// One entry per failed query: `"AT+CSQ: modem answered ERROR"`.
    pub errors: Vec<String>,
}

/// Mask an IMSI for display: the first 5 digits (MCC+MNC) stay, the rest become `*`.
pub fn mask_imsi(imsi: &str) -> String {
    imsi.chars().enumerate().map(|(i, c)| if i < 5 { c } else { '*' }).collect()
}

/// `+CSQ` rssi to dBm (27.007: 0 = -113 or less, 31 = -51 or more, 99 unknown).
pub fn rssi_to_dbm(rssi: u32) -> Option<i32> {
    match rssi {
        0..=31 => i32::try_from(rssi).ok().map(|r| -113 + 2 * r),
        _ => None,
    }
}

/// The first bare line of a response (`+CGMM` on most modems answers `SIMCOM_SIM800L`); some modems
/// prefix it (`+CGMM: EC25`), which is stripped.
pub fn first_value(lines: &[String], name: &str) -> Option<String> {
    lines.iter().find_map(|l| {
        let v = l.strip_prefix(name).and_then(|r| r.strip_prefix(':')).unwrap_or(l).trim();
        (!v.is_empty()).then(|| v.trim_matches('"').to_string())
    })
}

/// The registration stat of a `+CREG?`/`+CEREG?` answer (`+CREG: <n>,<stat>[,...]`).
pub fn registration_stat(lines: &[String], name: &str) -> Option<u8> {
    lines.iter().find_map(|l| {
        let f = response_fields(l, name)?;
        // Query form: <n>,<stat>; a modem with URCs enabled may show the URC form <stat> alone.
        let stat = if f.len() >= 2 { f.get(1)?.as_u32()? } else { f.first()?.as_u32()? };
        u8::try_from(stat).ok()
    })
}

/// Run read-only queries and collect what the modem says. Never enters a PIN, never changes a setting.
pub async fn diagnose(client: &AtClient, timeout: Duration) -> Diagnosis {
    let mut d = Diagnosis::default();
    let ask = async |cmd: &str, errors: &mut Vec<String>| -> Option<Vec<String>> {
        match client.command(cmd, timeout).await {
            Ok(lines) => Some(lines),
            Err(e) => {
                errors.push(format!("{cmd}: {e}"));
                None
            }
        }
    };
    let mut errors = Vec::new();
    d.responds = ask("AT", &mut errors).await.is_some();
    if !d.responds {
        // One more try: a modem waking from sleep may drop the first command.
        d.responds = ask("AT", &mut errors).await.is_some();
    }
    if !d.responds {
        // Every further query would only time out too.
        d.errors = errors;
        return d;
    }
    if let Some(l) = ask("AT+CGMI", &mut errors).await {
        d.manufacturer = first_value(&l, "+CGMI");
    }
    if let Some(l) = ask("AT+CGMM", &mut errors).await {
        d.model = first_value(&l, "+CGMM");
    }
    if let Some(l) = ask("AT+CGMR", &mut errors).await {
        d.revision = first_value(&l, "+CGMR");
    }
    if let Some(l) = ask("AT+CGSN", &mut errors).await {
        d.imei = first_value(&l, "+CGSN");
    }
    if let Some(l) = ask("AT+CIMI", &mut errors).await {
        d.imsi_masked = first_value(&l, "+CIMI").map(|i| mask_imsi(&i));
    }
    if let Some(l) = ask("AT+CPIN?", &mut errors).await {
        d.sim = first_value(&l, "+CPIN");
    }
    if let Some(l) = ask("AT+CREG?", &mut errors).await {
        d.creg_stat = registration_stat(&l, "+CREG");
    }
    if let Some(l) = ask("AT+CEREG?", &mut errors).await {
        d.cereg_stat = registration_stat(&l, "+CEREG");
    }
    if let Some(l) = ask("AT+CSQ", &mut errors).await {
        d.signal_dbm = l
            .iter()
            .find_map(|l| response_fields(l, "+CSQ"))
            .and_then(|f| f.first().and_then(|x| x.as_u32()))
            .and_then(rssi_to_dbm);
    }
    if let Some(l) = ask("AT+CSCA?", &mut errors).await {
        d.smsc = l
            .iter()
            .find_map(|l| response_fields(l, "+CSCA"))
            .and_then(|f| f.first().map(|x| x.as_str().to_string()))
            .filter(|s| !s.is_empty());
    }
    if let Some(l) = ask("AT+CPMS?", &mut errors).await {
        d.storage = parse_cpms_query(&l);
    }
    if let (Some(m), Some(model)) = (&d.manufacturer, &d.model) {
        d.profile = Some(detect(m, model));
    }
    d.errors = errors;
    d
}

/// `+CPMS: "SM",3,30,"SM",3,30,"SM",3,30` (query form) → ("SM", 3, 30). The set form answers
/// `+CPMS: 3,30,3,30,3,30` without names; then the memory is reported as an empty string.
pub fn parse_cpms_query(lines: &[String]) -> Option<(String, u32, u32)> {
    let f = lines.iter().find_map(|l| response_fields(l, "+CPMS"))?;
    match f.first()? {
        super::at::Field::Quoted(mem) => Some((mem.clone(), f.get(1)?.as_u32()?, f.get(2)?.as_u32()?)),
        super::at::Field::Bare(_) => Some((String::new(), f.first()?.as_u32()?, f.get(1)?.as_u32()?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modem::at::fields;

    #[test]
    fn detection_table() {
        let cases = [
            ("SIMCOM_Ltd", "SIMCOM_SIM800L", ProfileKind::Sim800),
            ("SIMCOM INCORPORATED", "SIMCOM_SIM7600E-H", ProfileKind::Sim7600),
            ("Quectel", "EC25", ProfileKind::Ec25),
            ("Quectel", "EG25", ProfileKind::Ec25),
            ("huawei", "E3372", ProfileKind::E3372),
            ("Telit", "LE910C1-EU", ProfileKind::Generic),
            ("", "", ProfileKind::Generic),
        ];
        for (m, model, want) in cases {
            assert_eq!(detect(m, model), want, "{m:?} {model:?}");
        }
    }

    #[test]
    fn inbound_sms_stay_stored_in_both_routings_of_every_family() {
        for kind in
            [ProfileKind::Sim800, ProfileKind::Sim7600, ProfileKind::Ec25, ProfileKind::E3372, ProfileKind::Generic]
        {
            let p = kind.profile();
            for cnmi in [Some(p.cnmi), p.cnmi_direct].into_iter().flatten() {
                let f = fields(cnmi.trim_start_matches("AT+CNMI="));
                let mt = f.get(1).and_then(|x| x.as_u32());
                let ds = f.get(3).and_then(|x| x.as_u32());
                assert_eq!(mt, Some(1), "{kind:?} {cnmi}: SMS must be stored first (mt=1), never +CMT");
                assert!(matches!(ds, Some(1 | 2)), "{kind:?} {cnmi}: status reports must be routed");
            }
            if let Some(direct) = p.cnmi_direct {
                assert!(direct.ends_with(",1,0"), "{kind:?}: the direct variant has ds=1");
            }
        }
    }

    #[test]
    fn send_timeouts_follow_the_manuals() {
        assert_eq!(ProfileKind::Sim800.profile().send_timeout, Duration::from_secs(60));
        assert_eq!(ProfileKind::Ec25.profile().send_timeout, Duration::from_secs(120));
    }

    #[test]
    fn imsi_is_masked_after_mcc_mnc() {
        assert_eq!(mask_imsi("244911234567890"), "24491**********");
        assert_eq!(mask_imsi("123"), "123");
    }

    #[test]
    fn rssi_table() {
        let cases = [(0, Some(-113)), (2, Some(-109)), (31, Some(-51)), (32, None), (99, None)];
        for (rssi, want) in cases {
            assert_eq!(rssi_to_dbm(rssi), want, "rssi {rssi}");
        }
    }

    #[test]
    fn answer_parsers_table() {
        let l = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(registration_stat(&l(&["+CREG: 0,5"]), "+CREG"), Some(5));
        assert_eq!(registration_stat(&l(&["+CREG: 2,1,\"1A2B\",\"00C3\""]), "+CREG"), Some(1));
        assert_eq!(registration_stat(&l(&["+CREG: x"]), "+CREG"), None);
        assert_eq!(registration_stat(&l(&[]), "+CEREG"), None);
        assert_eq!(parse_cpms_query(&l(&["+CPMS: \"SM\",3,30,\"SM\",3,30,\"SM\",3,30"])), Some(("SM".into(), 3, 30)));
        assert_eq!(parse_cpms_query(&l(&["+CPMS: 3,30,3,30,3,30"])), Some((String::new(), 3, 30)));
        assert_eq!(parse_cpms_query(&l(&["+CPMS: \"SM\""])), None);
        assert_eq!(first_value(&l(&["SIMCOM_SIM800L"]), "+CGMM"), Some("SIMCOM_SIM800L".into()));
        assert_eq!(first_value(&l(&["+CGMM: EC25"]), "+CGMM"), Some("EC25".into()));
        assert_eq!(first_value(&l(&["+CPIN: SIM PIN"]), "+CPIN"), Some("SIM PIN".into()));
    }

    /// A modem that answers every query and records what it was asked.
    async fn answering_modem(io: tokio::io::DuplexStream, log: std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
        let (r, mut w) = tokio::io::split(io);
        let mut r = BufReader::new(r);
        loop {
            let mut v = Vec::new();
            if r.read_until(b'\r', &mut v).await.unwrap_or(0) == 0 {
                return;
            }
            let cmd = String::from_utf8_lossy(&v).trim().to_string();
            log.lock().unwrap().push(cmd.clone());
            let body = match cmd.as_str() {
                "AT+CGMI" => "Quectel\r\n",
                "AT+CGMM" => "EC25\r\n",
                "AT+CGMR" => "EC25EFAR06A06M4G\r\n",
                "AT+CGSN" => "861234567890123\r\n",
                "AT+CIMI" => "505013456789012\r\n",
                "AT+CPIN?" => "+CPIN: SIM PIN\r\n",
                "AT+CREG?" => "+CREG: 0,3\r\n",
                "AT+CEREG?" => "+CEREG: 0,1\r\n",
                "AT+CSQ" => "+CSQ: 99,99\r\n",
                "AT+CSCA?" => "+CSCA: \"\",129\r\n",
                "AT+CPMS?" => "+CPMS: \"SM\",30,30,\"SM\",30,30,\"SM\",30,30\r\n",
                _ => "",
            };
            let reply =
                if cmd == "AT+CIMI" { "\r\n+CME ERROR: 11\r\n".to_string() } else { format!("\r\n{body}\r\nOK\r\n") };
            if w.write_all(reply.as_bytes()).await.is_err() {
                return;
            }
        }
    }

    #[tokio::test]
    async fn diagnosis_only_queries_and_reports_what_it_found() {
        let (a, b) = tokio::io::duplex(4096);
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        tokio::spawn(answering_modem(b, log.clone()));
        let (client, _urcs) = crate::modem::at::spawn(a);
        let d = diagnose(&client, Duration::from_secs(10)).await;
        assert!(d.responds);
        assert_eq!(d.model.as_deref(), Some("EC25"));
        assert_eq!(d.profile, Some(ProfileKind::Ec25));
        assert_eq!(d.sim.as_deref(), Some("SIM PIN"));
        assert_eq!((d.creg_stat, d.cereg_stat), (Some(3), Some(1)));
        assert_eq!(d.signal_dbm, None);
        assert_eq!(d.smsc, None);
        assert_eq!(d.storage, Some(("SM".into(), 30, 30)));
        assert_eq!(d.imsi_masked, None);
        assert_eq!(d.errors.len(), 1, "{:?}", d.errors);
        assert!(d.errors[0].starts_with("AT+CIMI"));
        let log = log.lock().unwrap();
        assert!(log.iter().all(|c| !c.contains('=')), "a diagnosis must not set anything: {log:?}");
    }
}
