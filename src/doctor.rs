//! `smshub doctor`: checks a clinic's IT person can read, each with ✓/✗ and a remedy in words.
//!
//! Read-only by design: it never writes to the database, never sends an SMS, and never tries a
//! SIM PIN (a wrong PIN tried by a diagnostic tool could lock the SIM).

use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use serde::Serialize;

use crate::config::Config;
use crate::modem::driver::{ModemState, ModemStatus};
use crate::store::Db;

/// One line of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remedy: Option<String>,
}

impl Check {
    /// A passed check (for callers outside this module).
    pub fn passed(name: impl Into<String>, detail: impl Into<String>) -> Check {
        Check::pass(name, detail)
    }
    /// A failed check with its remedy.
    pub fn failed(name: impl Into<String>, detail: impl Into<String>, remedy: impl Into<String>) -> Check {
        Check::fail(name, detail, remedy)
    }
    fn pass(name: impl Into<String>, detail: impl Into<String>) -> Check {
        Check { name: name.into(), ok: true, detail: detail.into(), remedy: None }
    }
    fn fail(name: impl Into<String>, detail: impl Into<String>, remedy: impl Into<String>) -> Check {
        Check { name: name.into(), ok: false, detail: detail.into(), remedy: Some(remedy.into()) }
    }
}

/// Runs every check for the config at `config_path`.
pub async fn run(config_path: &Path) -> Vec<Check> {
    let mut checks = Vec::new();
    let config = match Config::load(config_path) {
        Ok(c) => {
            checks.push(Check::pass("config", format!("{} is valid", config_path.display())));
            c
        }
        Err(e) => {
            checks.push(Check::fail(
                "config",
                e.to_string(),
                "fix the line named above; `smshub config check` shows the effective config",
            ));
            return checks;
        }
    };
    checks.extend(run_loaded(&config, None).await);
    checks
}

/// The checks after the config: `live` is the running daemon's modem statuses (the web UI's
/// doctor page): the daemon holds the ports, so each modem is judged by what its driver
/// reports instead of being opened.
pub async fn run_loaded(config: &Config, live: Option<&[(String, ModemStatus)]>) -> Vec<Check> {
    let mut checks = Vec::new();
    checks.push(check_database(&config.store.path));
    checks.push(check_free_space(&config.store.path, config.store.min_free_mb));
    for modem in &config.modems {
        if let Some(live) = live {
            checks.push(check_live_modem(&modem.name, live.iter().find(|(n, _)| *n == modem.name).map(|(_, s)| s)));
            continue;
        }
        let device = check_device(&modem.name, &modem.device);
        let usable = device.ok;
        checks.push(device);
        if usable {
            checks.extend(check_modem(modem).await);
        }
    }
    if config.modems.is_empty() {
        checks.push(Check::fail(
            "modem",
            "no [[modem]] is configured",
            "add a [[modem]] section with the device path (see smshub.example.toml)",
        ));
    }
    for p in &config.provet {
        checks.extend(check_provet(p).await);
    }
    for f in &config.forwarders {
        let url = match f {
            crate::config::ForwarderConfig::Twilio(t) => &t.url,
            crate::config::ForwarderConfig::Pbx(p) => &p.url,
        };
        checks.push(check_resolves(&format!("forwarder {}", f.name()), url).await);
    }
    checks
}

/// A modem the running daemon drives, judged by its driver's status.
fn check_live_modem(name: &str, status: Option<&ModemStatus>) -> Check {
    let check = format!("modem {name}");
    let remedy = "see the dashboard and `journalctl -u smshub`; check the USB cable or HAT, the SIM and the antenna";
    match status {
        None => Check::fail(check, "the daemon has not started this modem's driver", remedy),
        Some(st) if st.state == ModemState::Ready => {
            let signal = st.signal_dbm.map(|d| format!(", signal {d} dBm")).unwrap_or_default();
            Check::pass(check, format!("ready{signal}"))
        }
        Some(st) => Check::fail(check, st.state.to_string(), remedy),
    }
}

/// How long one AT query may take in `doctor` (a healthy modem answers in milliseconds).
const AT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// Talks to the modem with read-only queries (never a PIN) and turns the answers into checks.
async fn check_modem(modem: &crate::config::ModemConfig) -> Vec<Check> {
    let prefix = format!("modem {}", modem.name);
    let port = match crate::modem::tty::open_serial(&modem.device, modem.baud) {
        Ok(p) => p,
        Err(e) => {
            return vec![Check::fail(
                format!("{prefix}: port"),
                e.to_string(),
                "if the smshub service is running it holds the port: `sudo systemctl stop smshub`, run doctor, start it again (or read http://<box>:8080/status)",
            )];
        }
    };
    let (client, _urcs) = crate::modem::at::spawn(port);
    let d = crate::modem::profile::diagnose(&client, AT_TIMEOUT).await;
    diagnosis_checks(&prefix, &d)
}

/// The checks a diagnosis implies. Pure, so each remedy is unit-tested.
pub fn diagnosis_checks(prefix: &str, d: &crate::modem::profile::Diagnosis) -> Vec<Check> {
    let mut out = Vec::new();
    if !d.responds {
        out.push(Check::fail(
            format!("{prefix}: answers AT"),
            "no answer to AT",
            "is this the AT port? USB modems have several (see hardware/README.md); for a UART HAT check baud, wiring and that the serial console is disabled; power-cycle the modem",
        ));
        return out;
    }
    out.push(Check::pass(format!("{prefix}: answers AT"), "OK"));
    let identity = [d.manufacturer.as_deref(), d.model.as_deref(), d.revision.as_deref()]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
    out.push(Check::pass(
        format!("{prefix}: identity"),
        format!(
            "{}{}{}",
            if identity.is_empty() { "unknown model".to_string() } else { identity },
            d.imei.as_ref().map(|i| format!(", IMEI {i}")).unwrap_or_default(),
            d.imsi_masked.as_ref().map(|i| format!(", IMSI {i}")).unwrap_or_default()
        ),
    ));
    let sim = format!("{prefix}: SIM");
    match d.sim.as_deref() {
        Some("READY") => out.push(Check::pass(sim, "present, no PIN needed (or already entered)")),
        Some("SIM PIN") => out.push(Check::fail(
            sim,
            "the SIM asks for its PIN",
            "set pin_file in this [[modem]] section; smshub enters it once per start (doctor never tries a PIN: three wrong ones lock the SIM)",
        )),
        Some("SIM PUK") => out.push(Check::fail(
            sim,
            "the SIM is PUK-locked (too many wrong PINs)",
            "unlock it in a phone with the PUK from the SIM card's holder, then check the configured PIN",
        )),
        Some(other) => out.push(Check::fail(sim, format!("SIM state {other}"), "check the SIM in a phone")),
        None => out.push(Check::fail(sim, "no SIM state (+CPIN? failed)", "is a SIM inserted and seated? power-cycle the modem after inserting it")),
    }
    let stats = [d.creg_stat, d.cereg_stat];
    let reg = format!("{prefix}: registration");
    let describe = |s: u8| match s {
        0 => "not registered, not searching",
        1 => "registered (home)",
        2 => "searching",
        3 => "registration denied",
        5 => "registered (roaming)",
        _ => "unknown",
    };
    if let Some(s) = stats.into_iter().flatten().find(|s| *s == 1 || *s == 5) {
        out.push(Check::pass(reg, describe(s)));
    } else {
        let detail = match (d.creg_stat, d.cereg_stat) {
            (Some(c), Some(e)) => format!("CS: {}, LTE: {}", describe(c), describe(e)),
            (Some(c), None) => describe(c).to_string(),
            (None, Some(e)) => format!("LTE: {}", describe(e)),
            (None, None) => "unknown (+CREG?/+CEREG? failed)".to_string(),
        };
        let remedy = if stats.contains(&Some(3)) {
            "the network refused the SIM: is it active and has SMS service? On LTE-only networks SMS needs SMS over IMS or SGs (hardware/README.md, AT+QCFG=\"ims\" / AT+CGSMS)"
        } else {
            "check the antenna and coverage, and that the SIM is active (try it in a phone)"
        };
        out.push(Check::fail(reg, detail, remedy));
    }
    let sig = format!("{prefix}: signal");
    match d.signal_dbm {
        Some(dbm) if dbm >= -85 => out.push(Check::pass(sig, format!("{dbm} dBm (good)"))),
        Some(dbm) if dbm >= -100 => out.push(Check::pass(sig, format!("{dbm} dBm (ok)"))),
        Some(dbm) => out.push(Check::fail(
            sig,
            format!("{dbm} dBm (bad)"),
            "move the antenna (near a window, away from metal) or use an external antenna",
        )),
        None => {
            out.push(Check::fail(sig, "unknown (+CSQ: 99)", "no signal: check the antenna connection and coverage"))
        }
    }
    let smsc = format!("{prefix}: SMSC");
    match d.smsc.as_deref() {
        Some(s) if !s.is_empty() => out.push(Check::pass(smsc, s.to_string())),
        _ => out.push(Check::fail(
            smsc,
            "no SMS centre number on the SIM",
            "ask the operator for it and set it with AT+CSCA=\"+...\" (stored on the SIM)",
        )),
    }
    let st = format!("{prefix}: SIM storage");
    match &d.storage {
        Some((mem, used, total)) if used < total => out.push(Check::pass(st, format!("{mem}: {used} used of {total}"))),
        Some((mem, used, total)) => out.push(Check::fail(
            st,
            format!("{mem}: full ({used} of {total})"),
            "new SMS cannot arrive: start smshub (it stores and deletes them), or delete old ones with AT+CMGD",
        )),
        None => out.push(Check::fail(st, "unknown (+CPMS? failed)", "the SIM may be busy or missing")),
    }
    out
}

/// The endpoints smshub reads and the Provet permission each needs (seed 000, docs/provet.md).
pub const PROVET_PERMISSIONS: &[(&str, &str, &str)] = &[
    ("external_sms/", "External message API: Read/Write", "fetching and marking external SMS"),
    ("appointment_reminder/", "Appointments: Read/Write", "appointment reminders"),
    ("client/", "Patients and clients: Read/Write", "reminder numbers, no_sms and names"),
];

async fn check_provet(p: &crate::config::ProvetConfig) -> Vec<Check> {
    let name = format!("provet {}", p.name);
    let client = match crate::provet::ProvetClient::new(p) {
        Ok(c) => c,
        Err(e) => return vec![Check::fail(name, e.to_string(), "fix base_url / token_url in the [[provet]] section")],
    };
    if let Err(e) = client.token_ok().await {
        return vec![Check::fail(
            name,
            e.to_string(),
            "check the network, token_url, client_id and the client secret (Provet support issues them)",
        )];
    }
    let mut out = vec![Check::pass(&name, format!("{} reachable, credentials obtain a token", p.token_url))];
    for (path, permission, used_for) in PROVET_PERMISSIONS {
        let check = format!("{name}: permission {permission}");
        out.push(match client.probe(path).await {
            Ok(()) => Check::pass(check, format!("present (GET {path} answered; needed for {used_for})")),
            Err(crate::provet::ProvetError::Permanent { status: 403, .. }) => Check::fail(
                check,
                format!("missing: GET {path} answered 403 Forbidden; {used_for} will fail"),
                format!(
                    "in Provet, add \"{permission}\" to the permission group of the API application's virtual user"
                ),
            ),
            Err(crate::provet::ProvetError::NotFound) if *path == "external_sms/" => Check::fail(
                check,
                format!("GET {path} answered 404: external SMS sending is not enabled for this Provet instance"),
                "ask Provet support to enable external SMS sending (docs/provet.md, step 1)",
            ),
            Err(e) => Check::fail(
                check,
                format!("could not check: {e}"),
                "check the network and base_url, then run doctor again",
            ),
        });
    }
    out
}

async fn check_resolves(name: &str, url: &str) -> Check {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = if authority.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()) {
        authority.to_string()
    } else {
        format!("{authority}:{}", if url.starts_with("https") { 443 } else { 80 })
    };
    let lookup = tokio::time::timeout(std::time::Duration::from_secs(5), tokio::net::lookup_host(host_port.clone()));
    match lookup.await.map(|r| r.map(|mut addrs| addrs.next().is_some())) {
        Ok(Ok(true)) => Check::pass(name, format!("{authority} resolves")),
        Ok(Ok(false)) => Check::fail(name, format!("{authority} has no address"), "check the URL's host name"),
        Ok(Err(e)) => {
            Check::fail(name, format!("{authority} does not resolve: {e}"), "check the URL and the box's DNS settings")
        }
        Err(_) => Check::fail(name, format!("resolving {authority} timed out"), "check the box's DNS settings"),
    }
}

fn check_database(path: &Path) -> Check {
    let name = "database";
    if !path.exists() {
        let dir = path.parent().unwrap_or(Path::new("."));
        return if dir.is_dir() {
            Check::pass(name, format!("{} does not exist yet; `smshub run` creates it", path.display()))
        } else {
            Check::fail(
                name,
                format!("directory {} does not exist", dir.display()),
                "create it (the package and the systemd unit's StateDirectory do), or set store.path",
            )
        };
    }
    let db = match Db::open_existing_read_only(path) {
        Ok(db) => db,
        Err(e) => {
            return Check::fail(
                name,
                e.to_string(),
                "check the file's owner and mode (user smshub must read and write it)",
            );
        }
    };
    match db.integrity_check() {
        Ok(Ok(())) => match db.schema_version() {
            Ok(v) if v > crate::store::SCHEMA_VERSION => Check::fail(
                name,
                format!(
                    "{} has schema version {v}, newer than this smshub ({})",
                    path.display(),
                    crate::store::SCHEMA_VERSION
                ),
                "install the newer smshub again, or restore a backup",
            ),
            Ok(v) => Check::pass(name, format!("{} opens, integrity ok, schema version {v}", path.display())),
            Err(e) => Check::fail(name, e.to_string(), "restore the database from a backup"),
        },
        Ok(Err(problems)) => Check::fail(
            name,
            format!("integrity_check found: {}", problems.join("; ")),
            "stop smshub, copy the file aside, and restore a backup (or let smshub create a new one)",
        ),
        Err(e) => Check::fail(name, e.to_string(), "restore the database from a backup"),
    }
}

/// The same rule as `/healthz`: the database's filesystem has at least `[store] min_free_mb`.
fn check_free_space(path: &Path, min_free_mb: u64) -> Check {
    let name = "free space";
    match crate::store::disk_problem(path, min_free_mb) {
        None => {
            let free = crate::store::free_bytes(path).map(|b| b / (1024 * 1024)).unwrap_or(0);
            Check::pass(name, format!("{free} MB free for the database (minimum {min_free_mb} MB)"))
        }
        Some(problem) => Check::fail(
            name,
            problem,
            "free space (old logs, `smshub store purge`), or lower [store] min_free_mb if the card is small",
        ),
    }
}

fn check_device(modem: &str, device: &Path) -> Check {
    let name = format!("modem {modem}: device");
    if !device.exists() {
        return Check::fail(
            name,
            format!("{} does not exist", device.display()),
            "plug the modem in and check `ls -l /dev/ttyUSB* /dev/serial/by-id/`; see hardware/README.md for the udev rule that creates /dev/smshub-modem",
        );
    }
    match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(nix::libc::O_NOCTTY | nix::libc::O_NONBLOCK)
        .open(device)
    {
        Ok(_) => Check::pass(name, format!("{} exists and opens", device.display())),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Check::fail(
            name,
            format!("{}: permission denied", device.display()),
            "add the user to group dialout (`sudo usermod -aG dialout smshub`) and restart the service",
        ),
        Err(e) => Check::fail(
            name,
            format!("{}: {e}", device.display()),
            "is another program (ModemManager?) using the modem? see hardware/README.md",
        ),
    }
}

/// Prints the report as ✓/✗ lines.
pub fn print(checks: &[Check]) {
    for c in checks {
        println!("{} {}: {}", if c.ok { "✓" } else { "✗" }, c.name, c.detail);
        if let Some(r) = &c.remedy {
            println!("    → {r}");
        }
    }
    let failed = checks.iter().filter(|c| !c.ok).count();
    if failed == 0 {
        println!("all {} checks passed", checks.len());
    } else {
        println!("{failed} of {} checks failed", checks.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modem::profile::Diagnosis;

    fn healthy() -> Diagnosis {
        Diagnosis {
            responds: true,
            sim: Some("READY".into()),
            creg_stat: Some(1),
            signal_dbm: Some(-71),
            smsc: Some("+358405202000".into()),
            storage: Some(("SM".into(), 3, 30)),
            ..Diagnosis::default()
        }
    }

    fn find<'a>(checks: &'a [Check], suffix: &str) -> &'a Check {
        checks.iter().find(|c| c.name.ends_with(suffix)).unwrap()
    }

    #[test]
    fn a_healthy_diagnosis_passes() {
        let checks = diagnosis_checks("modem m", &healthy());
        assert!(checks.iter().all(|c| c.ok), "{checks:?}");
        assert_eq!(find(&checks, "signal").detail, "-71 dBm (good)");
    }

    #[test]
    fn lte_only_registration_counts_and_denial_gets_the_ims_hint() {
        let mut d = healthy();
        d.creg_stat = Some(3);
        d.cereg_stat = Some(5);
        assert!(find(&diagnosis_checks("m", &d), "registration").ok, "EPS registration is enough");
        d.cereg_stat = Some(3);
        let checks = diagnosis_checks("m", &d);
        let reg = find(&checks, "registration");
        assert!(!reg.ok);
        assert!(reg.remedy.as_deref().unwrap().contains("IMS"), "{reg:?}");
    }

    #[test]
    fn signal_words_follow_the_dbm() {
        for (dbm, word, ok) in [(-60, "good", true), (-95, "ok", true), (-107, "bad", false)] {
            let mut d = healthy();
            d.signal_dbm = Some(dbm);
            let checks = diagnosis_checks("m", &d);
            let c = find(&checks, "signal");
            assert!(c.detail.contains(word) && c.ok == ok, "{c:?}");
        }
    }

    #[test]
    fn a_puk_locked_sim_says_so() {
        let mut d = healthy();
        d.sim = Some("SIM PUK".into());
        let checks = diagnosis_checks("m", &d);
        let c = find(&checks, "SIM");
        assert!(!c.ok && c.detail.contains("PUK"), "{c:?}");
    }
}
