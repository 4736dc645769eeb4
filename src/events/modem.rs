//! `modem.online` / `modem.offline`: written when the daemon sees a modem become ready or stop
//! being ready. Not a database change, so there is no transaction to share; the event is written
//! when the change is seen (a crash in between loses nothing the next start would not see again).
//!
//! At start a modem takes a few seconds to open, set up and register; `offline` is written then
//! only if it is still not ready after [`START_GRACE`], so a normal start is just `online`.

use std::time::Duration;

use tokio::sync::watch;

use crate::modem::driver::{ModemState, ModemStatus};
use crate::shutdown::ShutdownSignal;
use crate::store::Store;

/// How long a modem may take to become ready at start before it is reported offline.
pub const START_GRACE: Duration = Duration::from_secs(60);

/// Watches one modem's status until shutdown.
pub async fn watch_modem(
    name: String,
    mut status: watch::Receiver<ModemStatus>,
    store: Store,
    mut shutdown: ShutdownSignal,
) {
    let mut reported: Option<bool> = None;
    let grace = tokio::time::sleep(START_GRACE);
    tokio::pin!(grace);
    let mut grace_over = false;
    loop {
        let state = status.borrow_and_update().state.clone();
        let online = state == ModemState::Ready;
        let report = match reported {
            Some(was) => was != online,
            None => online || grace_over,
        };
        if report {
            let (n, text) = (name.clone(), state.to_string());
            match store.call(move |db| db.emit_modem_state(&n, online, &text)).await {
                Ok(()) => reported = Some(online),
                Err(e) => tracing::error!(modem = %name, error = %e, "writing a modem event failed"),
            }
        }
        tokio::select! {
            _ = shutdown.wait() => break,
            changed = status.changed() => if changed.is_err() { break },
            _ = &mut grace, if !grace_over => grace_over = true,
        }
    }
}
