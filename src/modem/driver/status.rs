//! The status values the driver publishes (a `watch` channel): state in words a clinic's IT person
//! reads, identity, signal, registration, storage.

use serde::Serialize;

use crate::modem::profile::ProfileKind;

/// Where the modem is in its life.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum ModemState {
    Opening,
    Initializing,
    WaitingForRegistration,
    Ready,
    Recovering,
    Unplugged,
    SimLocked(String),
    Failed(String),
}

impl std::fmt::Display for ModemState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ModemState::Opening => write!(f, "opening the modem port"),
            ModemState::Initializing => write!(f, "setting up the modem"),
            ModemState::WaitingForRegistration => write!(f, "waiting for the mobile network"),
            ModemState::Ready => write!(f, "ready"),
            ModemState::Recovering => write!(f, "modem stopped answering; recovering"),
            ModemState::Unplugged => {
                write!(f, "modem not connected (unplugged or restarting); retrying")
            }
            ModemState::SimLocked(why) => write!(f, "SIM card locked: {why}"),
            ModemState::Failed(why) => write!(f, "modem setup failed: {why}"),
        }
    }
}

/// What the modem reported about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Identity {
    pub manufacturer: Option<String>,
    pub model: Option<String>,
    pub imei: Option<String>,
    /// MCC+MNC kept, the rest masked.
    pub imsi_masked: Option<String>,
    pub profile: ProfileKind,
}

/// Registration stats (27.007: 1 home, 5 roaming count as registered).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Registration {
    /// `+CREG` stat (circuit switched).
    pub cs: Option<u8>,
    /// `+CEREG` stat (LTE).
    pub eps: Option<u8>,
}

impl Registration {
    /// Either counts: on LTE-only modules +CREG may say denied while +CEREG says registered.
    pub fn registered(&self) -> bool {
        [self.cs, self.eps].iter().any(|s| matches!(s, Some(1) | Some(5)))
    }
}

/// Message storage use (the receive store).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Storage {
    pub used: u32,
    pub total: u32,
}

/// Everything the rest of the program may know about the modem.
#[derive(Debug, Clone, Serialize)]
pub struct ModemStatus {
    pub state: ModemState,
    pub identity: Option<Identity>,
    pub signal_dbm: Option<i32>,
    pub registration: Option<Registration>,
    pub storage: Option<Storage>,
    pub smsc: Option<String>,
    pub last_error: Option<String>,
    /// Updated on every turn of the driver loop; the watchdog checks it.
    #[serde(skip)]
    pub last_progress: std::time::Instant,
}

impl ModemStatus {
    pub(crate) fn new() -> Self {
        ModemStatus {
            state: ModemState::Opening,
            identity: None,
            signal_dbm: None,
            registration: None,
            storage: None,
            smsc: None,
            last_error: None,
            last_progress: std::time::Instant::now(),
        }
    }
}
