//! SIGTERM and SIGINT, for the transports to stop on.

/// SIGTERM or SIGINT, once asked for.
pub(crate) struct Stop {
    #[cfg(unix)]
    signals: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
}

impl Stop {
    pub(crate) fn new() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let signals = signal(SignalKind::terminate()).ok().zip(signal(SignalKind::interrupt()).ok());
            Stop { signals }
        }
        #[cfg(not(unix))]
        Stop {}
    }

    pub(crate) async fn requested(&mut self) {
        #[cfg(unix)]
        if let Some((terminate, interrupt)) = self.signals.as_mut() {
            tokio::select! {
                _ = terminate.recv() => {}
                _ = interrupt.recv() => {}
            }
            tracing::info!("asked to stop: finishing the calls in flight");
            return;
        }
        std::future::pending::<()>().await;
    }
}
