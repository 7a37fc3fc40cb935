//! Log output off the event loop: each log line goes through a bounded queue to a thread of its
//! own, which writes it to stderr. A stderr that is slow, or that nobody reads, never stalls a
//! call: when the queue is full the line is dropped and counted, and once lines flow again one
//! more line says how many were dropped.
//!
//! Audit records do not go this way: they are never dropped (see [`crate::audit::AuditWriter`]).

use std::io::{self, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::time::{Duration, Instant};

use crate::pipe::write_all_waiting;

/// How often a line is tried again on a stderr that takes nothing.
const RETRY: Duration = Duration::from_millis(10);

/// A lossy, non-blocking log writer for `tracing_subscriber`; see the module documentation.
#[derive(Clone)]
pub struct LogWriter {
    queue: SyncSender<Message>,
    dropped: Arc<AtomicU64>,
}

enum Message {
    Line(Vec<u8>),
    /// Answered once every line before it is written.
    Flush(SyncSender<()>),
}

impl LogWriter {
    /// How many lines may wait, by default.
    pub const DEFAULT_QUEUE: usize = 8192;

    /// Log lines to stderr, with at most `queue` lines waiting.
    pub fn stderr(queue: usize) -> io::Result<LogWriter> {
        Self::spawn(io::stderr(), queue)
    }

    /// Log lines to `out`, on a thread of their own, with at most `queue` lines waiting.
    pub fn spawn(out: impl Write + Send + 'static, queue: usize) -> io::Result<LogWriter> {
        let (sender, receiver) = std::sync::mpsc::sync_channel(queue.max(1));
        let dropped = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&dropped);
        std::thread::Builder::new()
            .name("sqlwarden-log".into())
            .spawn(move || write_lines(out, &receiver, &counted))?;
        Ok(LogWriter { queue: sender, dropped })
    }

    /// How many lines were dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Waits until the lines queued so far are written, at most `within`. Whether they were.
    pub fn flush(&self, within: Duration) -> bool {
        let (done, wait) = std::sync::mpsc::sync_channel(1);
        let deadline = Instant::now() + within;
        let mut message = Message::Flush(done);
        loop {
            match self.queue.try_send(message) {
                Ok(()) => break,
                Err(TrySendError::Full(back)) if Instant::now() < deadline => {
                    message = back;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(_) => return false,
            }
        }
        wait.recv_timeout(deadline.saturating_duration_since(Instant::now())).is_ok()
    }

    fn send(&self, line: Vec<u8>) {
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = self.queue.try_send(Message::Line(line)) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogLine<'a>;

    fn make_writer(&'a self) -> LogLine<'a> {
        LogLine { writer: self, line: Vec::new() }
    }
}

/// One log line being formatted; it is queued whole when dropped.
pub struct LogLine<'a> {
    writer: &'a LogWriter,
    line: Vec<u8>,
}

impl Write for LogLine<'_> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.line.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for LogLine<'_> {
    fn drop(&mut self) {
        if !self.line.is_empty() {
            self.writer.send(std::mem::take(&mut self.line));
        }
    }
}

/// The thread: writes each line as it comes, and after lines were dropped, a line saying so.
fn write_lines(mut out: impl Write, queue: &Receiver<Message>, dropped: &AtomicU64) {
    let mut reported = 0;
    while let Ok(message) = queue.recv() {
        match message {
            // stderr may have been made non-blocking for audit: wait for room, on this thread.
            Message::Line(line) => {
                let _ = write_all_waiting(&mut out, &line, RETRY);
            }
            Message::Flush(done) => {
                let _ = out.flush();
                let _ = done.try_send(());
                continue;
            }
        }
        let now = dropped.load(Ordering::Relaxed);
        if now > reported {
            let note = format!(
                "{{\"level\":\"WARN\",\"fields\":{{\"message\":\"log lines were dropped: stderr was not read fast \
                 enough\",\"dropped\":{}}},\"target\":\"sqlwarden::logging\"}}\n",
                now - reported
            );
            if write_all_waiting(&mut out, note.as_bytes(), RETRY).is_ok() {
                reported = now;
            }
        }
    }
    let _ = out.flush();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipe::Unread;

    #[test]
    fn a_blocked_stderr_drops_and_counts_lines_without_blocking_the_logger() {
        use tracing_subscriber::fmt::MakeWriter;
        let unread = Unread::default();
        let writer = LogWriter::spawn(unread.clone(), 4).expect("spawns");
        let started = Instant::now();
        for n in 0..100 {
            writeln!(writer.make_writer(), "line {n}").expect("buffered");
        }
        assert!(started.elapsed() < Duration::from_secs(1), "never blocks: {:?}", started.elapsed());
        let dropped = writer.dropped();
        assert!((90..=96).contains(&dropped), "at most the queue and the line being written wait: {dropped}");
        unread.open();
        assert!(writer.flush(Duration::from_secs(5)));
        let text = String::from_utf8(unread.written()).expect("utf-8");
        let kept = text.lines().filter(|line| line.starts_with("line ")).count() as u64;
        assert_eq!(kept + dropped, 100, "every line is written or counted");
        let note = text.lines().find(|line| line.contains("dropped")).expect("a line says how many were dropped");
        let note: serde_json::Value = serde_json::from_str(note).expect("the note is JSON");
        assert_eq!(note["fields"]["dropped"], dropped);
    }
}
