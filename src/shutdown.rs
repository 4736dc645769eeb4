//! Graceful shutdown: one small contract instead of flags sprinkled everywhere.
//!
//! [`Shutdown::trigger`] is called once (on SIGTERM/SIGINT); every task holds a
//! [`ShutdownSignal`] and, when it fires, stops taking new work, finishes or parks what it has
//! in flight, and returns. The daemon then waits for the tasks for a bounded time.

use tokio::sync::watch;

/// The sending side: owned by the daemon's main loop.
pub struct Shutdown {
    tx: watch::Sender<bool>,
}

/// The receiving side: cheap to clone, one per task.
#[derive(Clone)]
pub struct ShutdownSignal {
    rx: watch::Receiver<bool>,
}

impl Shutdown {
    pub fn new() -> (Shutdown, ShutdownSignal) {
        let (tx, rx) = watch::channel(false);
        (Shutdown { tx }, ShutdownSignal { rx })
    }

    /// Asks every task to stop. Idempotent.
    pub fn trigger(&self) {
        self.tx.send_replace(true);
    }
}

impl ShutdownSignal {
    /// Resolves once shutdown was asked for (at once if it already was).
    pub async fn wait(&mut self) {
        // An error means the sender is gone, which also means: stop.
        let _ = self.rx.wait_for(|stop| *stop).await;
    }

    pub fn is_triggered(&self) -> bool {
        *self.rx.borrow()
    }

    /// The raw receiver, for components that take a `watch::Receiver<bool>` (the modem driver).
    pub fn receiver(&self) -> watch::Receiver<bool> {
        self.rx.clone()
    }
}

/// SIGTERM and SIGINT handlers. Installed before the daemon says it is ready, so a stop that
/// arrives right after READY=1 is a clean stop, not a kill by the default signal action.
pub struct StopSignals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl StopSignals {
    pub fn install() -> std::io::Result<StopSignals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(StopSignals { term: signal(SignalKind::terminate())?, int: signal(SignalKind::interrupt())? })
    }

    /// Waits for either signal and says which arrived.
    pub async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_clone_sees_the_trigger() {
        let (shutdown, signal) = Shutdown::new();
        let mut a = signal.clone();
        let waiter = tokio::spawn(async move { a.wait().await });
        assert!(!signal.is_triggered());
        shutdown.trigger();
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter).await.unwrap().unwrap();
        assert!(signal.is_triggered());
        let mut late = signal.clone();
        late.wait().await; // already triggered: returns at once
    }
}
