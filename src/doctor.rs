//! `smshub doctor`: checks a clinic's IT person can read, each with ✓/✗ and a remedy in words.
//!
//! Read-only by design: it never writes to the database, never sends an SMS, and never tries a
//! SIM PIN (a wrong PIN tried by a diagnostic tool could lock the SIM).

use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use serde::Serialize;

use crate::config::Config;
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
    checks.push(check_database(&config.store.path));
    for modem in &config.modems {
        checks.push(check_device(&modem.name, &modem.device));
    }
    if config.modems.is_empty() {
        checks.push(Check::fail(
            "modem",
            "no [[modem]] is configured",
            "add a [[modem]] section with the device path (see smshub.example.toml)",
        ));
    }
    checks
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
