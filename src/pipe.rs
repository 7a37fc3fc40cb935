//! Writing to pipes that may be full: the audit and log writer threads share these, so that
//! neither ever blocks a call on a reader that does not read.

use std::io::{self, Write};
use std::time::Duration;

/// Writes as much of `bytes` as a non-blocking output takes now, returning how much that was.
pub(crate) fn write_what_fits(out: &mut impl Write, bytes: &[u8]) -> io::Result<usize> {
    let mut written = 0;
    while written < bytes.len() {
        match out.write(&bytes[written..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => written += n,
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(written)
}

/// Writes all of `bytes` to an output that may be non-blocking, waiting while it takes
/// nothing: on the writer's own thread only.
pub(crate) fn write_all_waiting(out: &mut impl Write, mut bytes: &[u8], retry: Duration) -> io::Result<()> {
    while !bytes.is_empty() {
        let written = write_what_fits(out, bytes)?;
        bytes = &bytes[written..];
        if !bytes.is_empty() {
            std::thread::sleep(retry);
        }
    }
    Ok(())
}

/// A writer that blocks until opened, as a pipe that nobody reads does: for tests.
#[cfg(test)]
#[derive(Clone, Default)]
pub(crate) struct Unread(std::sync::Arc<UnreadState>);

#[cfg(test)]
#[derive(Default)]
pub(crate) struct UnreadState {
    /// Whether it is open, and what was written.
    state: std::sync::Mutex<(bool, Vec<u8>)>,
    opened: std::sync::Condvar,
}

#[cfg(test)]
impl Unread {
    pub(crate) fn open(&self) {
        self.0.state.lock().expect("lock").0 = true;
        self.0.opened.notify_all();
    }

    pub(crate) fn written(&self) -> Vec<u8> {
        self.0.state.lock().expect("lock").1.clone()
    }
}

#[cfg(test)]
impl Write for Unread {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let mut state = self.0.state.lock().expect("lock");
        while !state.0 {
            state = self.0.opened.wait(state).expect("wait");
        }
        state.1.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
