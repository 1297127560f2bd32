//! The console's stop signals, listened for from before a server says it listens.

/// SIGTERM and Ctrl-C (SIGINT) — on Windows Ctrl-C, Ctrl-Break, the console window closing and
/// the machine shutting down — listened for from creation: made before the listening lines are
/// printed, so a supervisor (or a test) that stops pfgate as soon as it says it listens gets the
/// graceful stop, not the default action of a signal nobody handles yet. (As a Windows service,
/// the SCM's stop arrives through [`crate::cli::host::Lifecycle`] instead.)
pub(crate) struct StopSignal {
    #[cfg(unix)]
    signals: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
    #[cfg(windows)]
    signals: Option<WindowsConsoleSignals>,
}

#[cfg(windows)]
type WindowsConsoleSignals = (
    tokio::signal::windows::CtrlC,
    tokio::signal::windows::CtrlBreak,
    tokio::signal::windows::CtrlClose,
    tokio::signal::windows::CtrlShutdown,
);

impl StopSignal {
    /// Installs the handlers (inside a runtime).
    pub(crate) fn install() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let signals = signal(SignalKind::terminate())
                .and_then(|t| signal(SignalKind::interrupt()).map(|i| (t, i)))
                .ok();
            Self { signals }
        }
        #[cfg(windows)]
        {
            use tokio::signal::windows::{ctrl_break, ctrl_c, ctrl_close, ctrl_shutdown};
            let signals = match (ctrl_c(), ctrl_break(), ctrl_close(), ctrl_shutdown()) {
                (Ok(c), Ok(b), Ok(close), Ok(shutdown)) => Some((c, b, close, shutdown)),
                _ => None,
            };
            Self { signals }
        }
        #[cfg(not(any(unix, windows)))]
        Self {}
    }

    /// Until one of the signals arrives.
    pub(crate) async fn wait(self) {
        #[cfg(unix)]
        if let Some((mut term, mut int)) = self.signals {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            return;
        }
        #[cfg(windows)]
        if let Some((mut c, mut brk, mut close, mut shutdown)) = self.signals {
            tokio::select! {
                _ = c.recv() => {}
                _ = brk.recv() => {}
                _ = close.recv() => {}
                _ = shutdown.recv() => {}
            }
            return;
        }
        let _ = tokio::signal::ctrl_c().await;
    }
}
