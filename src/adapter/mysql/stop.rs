//! Stopping a statement the caller no longer waits for: the connection is killed from a
//! separate connection (`KILL`, never `KILL QUERY`: the id could already serve another caller),
//! and the call's quota slot is held until the process list no longer shows it.

use super::*;

/// A connection running a statement for a call. Dropped before the statement is known to have
/// ended (the deadline passed, the caller went away, a write was abandoned), it stops the
/// statement from another connection: see [`Stopper::stop`]. The connection is never returned
/// to the pool meanwhile, so that its id cannot come to serve another caller.
pub(super) struct Running {
    /// The connection's id on the server.
    pub(super) id: u32,
    pub(super) conn: Option<Conn>,
    pub(super) stopper: Option<Stopper>,
}

impl Running {
    pub(super) fn conn(&mut self) -> &mut Conn {
        // Taken out only by `finish` or `take`, after which the value is not used again.
        self.conn.as_mut().expect("a running connection holds its connection until it ends")
    }

    /// The statement has ended: the connection is the caller's again, with the slot hold.
    pub(super) fn finish(mut self) -> (Conn, SlotHold) {
        let hold = self.stopper.take().map_or_else(SlotHold::none, |stopper| stopper.hold);
        (self.conn.take().expect("a running connection holds its connection until it ends"), hold)
    }

    /// The connection, leaving the stopper armed without it: dropping this value then stops
    /// the connection's thread on the server by its id.
    pub(super) fn take(&mut self) -> Conn {
        self.conn.take().expect("a running connection holds its connection until it ends")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let Some(stopper) = self.stopper.take() else { return };
        let conn = self.conn.take();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(stopper.stop(self.id, conn));
        }
    }
}

/// Connections of our own, opened to stop abandoned statements, at most this many at once: a
/// burst of cancelled calls cannot open an unbounded number of extra connections.
pub(super) const SIDE_CONNECTIONS: usize = 4;

/// How long an abandoned statement is waited for before its slot is released anyway.
pub(super) const MAX_STOP_WAIT: Duration = Duration::from_secs(600);

/// What it takes to stop an abandoned statement.
pub(super) struct Stopper {
    pub(super) opts: Opts,
    /// The budget of side connections.
    pub(super) side: Arc<tokio::sync::Semaphore>,
    /// The call's quota slot, kept until the server has let go of the statement.
    pub(super) hold: SlotHold,
}

impl Stopper {
    /// Kills connection `id` from a connection of its own (`KILL`, never `KILL QUERY`: the
    /// statement stops and its transaction is rolled back), then waits until the server's
    /// process list no longer shows it: MySQL and MariaDB only notice a kill between steps of
    /// their work, and a long step (a function over a large value) goes on until it ends.
    /// Until then the call's quota slot stays taken, at most [`MAX_STOP_WAIT`].
    pub(super) async fn stop(self, id: u32, conn: Option<Conn>) {
        let stopped = async {
            let _side = self.side.acquire().await;
            tokio::time::timeout(MAX_STOP_WAIT, kill_and_wait(id, &self.opts)).await
        };
        match stopped.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(error = %scrub(&error), "could not stop an abandoned MySQL statement"),
            Err(_) => tracing::warn!(
                wait_s = MAX_STOP_WAIT.as_secs(),
                "an abandoned MySQL statement still runs; its quota slot is released"
            ),
        }
        if let Some(conn) = conn {
            let _ = tokio::time::timeout(Duration::from_secs(5), conn.disconnect()).await;
        }
        drop(self.hold);
    }
}

/// `KILL id`, then waits until the process list no longer shows `id`.
pub(super) async fn kill_and_wait(id: u32, opts: &Opts) -> Result<(), mysql_async::Error> {
    let mut conn = Conn::new(opts.clone()).await?;
    match conn.query_drop(format!("KILL {id}")).await {
        // Unknown thread: it has ended already.
        Err(mysql_async::Error::Server(error)) if error.code == 1094 => {}
        other => other?,
    }
    let mut pause = Duration::from_millis(10);
    while conn.exec_first::<u64, _, _>(STILL_RUNNING, (id,)).await?.is_some() {
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(250));
    }
    conn.disconnect().await
}

pub(super) const STILL_RUNNING: &str = "SELECT ID FROM information_schema.PROCESSLIST WHERE ID = ?";
