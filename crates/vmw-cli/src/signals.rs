//! The signals that stop a long command (a launch, a snapshot): Ctrl-C,
//! `kill` and CI cancellation, `timeout`, and a closed terminal.

use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::error::EXIT_INTERRUPTED;

/// SIGINT, SIGTERM and SIGHUP, listened for from creation on.
pub(crate) struct Stops {
    int: Signal,
    term: Signal,
    hup: Signal,
}

impl Stops {
    /// Listens for SIGINT, SIGTERM and SIGHUP from now on.
    pub(crate) fn listen() -> std::io::Result<Self> {
        Ok(Self {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    /// The next signal, with the exit code it calls for (128 + its
    /// number) and its name.
    pub(crate) async fn next(&mut self) -> (u8, &'static str) {
        tokio::select! {
            _ = self.int.recv() => (EXIT_INTERRUPTED, "SIGINT"),
            _ = self.term.recv() => (143, "SIGTERM"),
            _ = self.hup.recv() => (129, "SIGHUP"),
        }
    }
}
