//! The one shutdown path: SIGTERM or SIGINT (via signal-hook, on a small thread) flips a
//! `watch` channel to `true`; every task of the node watches it.

use crate::{Error, Result};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use tokio::sync::watch;
use tracing::info;

/// Installs the handlers and returns the receiver that flips on the first signal.
pub fn on_signals() -> Result<watch::Receiver<bool>> {
    let (tx, rx) = watch::channel(false);
    let mut signals =
        Signals::new([SIGTERM, SIGINT]).map_err(|e| Error::io("installing signal handlers", e))?;
    std::thread::Builder::new()
        .name("paxos-signals".into())
        .spawn(move || {
            if let Some(signal) = signals.forever().next() {
                info!(signal, "shutdown requested");
                let _ = tx.send(true);
            }
        })
        .map_err(|e| Error::io("spawning the signal thread", e))?;
    Ok(rx)
}
