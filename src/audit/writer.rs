//! The audit writer: audit lines written without ever stalling the event loop on a slow reader.
//!
//! How a batch is written depends on where audit goes:
//!
//! - **A pipe, a FIFO or a socket** (stderr, as an MCP client starts the server) is made
//!   non-blocking. A batch is written at once, on the caller's thread, when the pipe takes it
//!   whole; whatever it cannot take goes to a thread of the writer's own, through a bounded
//!   queue, and every batch after it follows the same way, in order, until the thread has
//!   written them all. A client that never drains stderr therefore costs each call at most the
//!   writer's deadline, and then a denial: never a hang.
//! - **A regular file** is written on the caller's thread: the kernel's page cache takes an
//!   append at once. (Handing every batch to a thread costs two thread wake-ups per call, a
//!   third of a point query's CPU here.)
//! - **Anything else** (a terminal, a writer given to [`AuditWriter::spawn`]) is written by the
//!   thread, batch by batch.
//!
//! The boundary waits for a queued batch at most the writer's deadline
//! ([`AuditWriter::DEFAULT_DEADLINE`] unless configured). When the queue is full, the writer has
//! stopped, the write fails or the deadline passes, the batch counts as not written and the call
//! it belongs to is denied. Batches waiting together are written with one `write`.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::future::Future;
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use super::chain::{ChainKey, Position, resume, seal};
use super::{AuditBatch, AuditError, AuditSink, write_lines};
use crate::pipe::{write_all_waiting, write_what_fits};

/// Writes audit batches without stalling its callers; see the [module documentation](crate::audit).
pub struct AuditWriter {
    output: Output,
    queue: SyncSender<Job>,
    deadline: Duration,
    /// Batches that could not be written.
    failed_writes: Arc<AtomicU64>,
    /// The hash chain (see [`chain`](super::chain)). Held while a batch is sealed and handed
    /// to the output, so that the chain's order is the order the lines are written in.
    chain: Mutex<Chain>,
}

/// The chain's state in one writer.
struct Chain {
    /// Where the next line goes.
    position: Position,
    key: Option<ChainKey>,
    /// Whether this writer has opened the chain (with an `open` record) yet.
    opened: bool,
    /// The output ends inside a line (a write cut short before this writer started): the first
    /// line written starts on a line of its own.
    torn: bool,
}

impl Chain {
    fn new(position: Position, torn: bool) -> Mutex<Chain> {
        Mutex::new(Chain { position, key: None, opened: false, torn })
    }
}

/// Where the lines go, and who writes them.
enum Output {
    /// A regular file, written on the caller's thread.
    Direct(Mutex<Appended>),
    /// Written on the caller's thread while the file takes them at once; `true` while the
    /// thread holds batches not yet written, which every later batch then queues behind.
    NonBlocking { file: Arc<File>, backlog: Arc<Mutex<bool>> },
    /// Written by the thread.
    Threaded,
}

/// An audit file, and what its rotation needs.
struct Appended {
    file: File,
    path: PathBuf,
    /// Its size as this writer has seen it.
    size: u64,
    /// Once the file holds this much, the chain is closed in it and goes on in a new file.
    max_bytes: Option<u64>,
}

/// One batch on its way to the thread, and where the thread says how it went.
struct Job {
    lines: Vec<u8>,
    ack: Arc<Ack>,
}

impl AuditWriter {
    /// How long a caller waits, by default, for a queued batch to be written.
    pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(1);
    /// How many batches may wait for the thread, by default.
    pub const DEFAULT_QUEUE: usize = 4096;
    /// The most bytes written with one `write`.
    const COALESCE_BYTES: usize = 64 << 10;
    /// How often the thread tries a non-blocking output that would not take more.
    const RETRY: Duration = Duration::from_millis(2);

    /// A writer to `out`, which the writer's thread writes batch by batch, with at most `queue`
    /// batches waiting and `deadline` for each to be written.
    pub fn spawn(out: impl Write + Send + 'static, queue: usize, deadline: Duration) -> io::Result<AuditWriter> {
        Self::start(Output::Threaded, Sink::Blocking(Box::new(out)), queue, deadline, Position::START)
    }

    /// Audit to standard error, with the default queue and `deadline`. A pipe or socket is
    /// made non-blocking, unless stdout shares it (`2>&1`).
    pub fn stderr(deadline: Duration) -> io::Result<AuditWriter> {
        let file = File::from(io::stderr().as_fd().try_clone_to_owned()?);
        let shared_with_stdout = same_file(&file, &File::from(io::stdout().as_fd().try_clone_to_owned()?));
        match file.metadata()?.file_type() {
            kind if (kind.is_fifo() || kind.is_socket()) && !shared_with_stdout => {
                Self::non_blocking(file, deadline, Position::START)
            }
            _ => Self::spawn(io::stderr(), Self::DEFAULT_QUEUE, deadline),
        }
    }

    /// Audit appended to `path` (created if missing), with the default queue and `deadline`. A
    /// FIFO is opened non-blocking (it must have a reader already).
    pub fn append_to(path: impl AsRef<Path>, deadline: Duration) -> io::Result<AuditWriter> {
        let path = path.as_ref();
        let fifo = std::fs::metadata(path).is_ok_and(|metadata| metadata.file_type().is_fifo());
        let mut options = OpenOptions::new();
        options.create(true).append(true);
        if fifo {
            options.custom_flags(libc::O_NONBLOCK);
        } else {
            // Read too, to continue the chain the file holds.
            options.read(true);
        }
        let mut file = options.open(path)?;
        let kind = file.metadata()?.file_type();
        if kind.is_fifo() || kind.is_socket() {
            Self::non_blocking(file, deadline, Position::START)
        } else if kind.is_file() {
            lock_for_this_process(&file)?;
            let (position, torn) = resume(&mut file)?;
            let size = file.metadata()?.len();
            let appended = Appended { file, path: path.to_owned(), size, max_bytes: None };
            let (queue, _unused) = std::sync::mpsc::sync_channel(1);
            Ok(AuditWriter {
                output: Output::Direct(Mutex::new(appended)),
                queue,
                deadline,
                failed_writes: Arc::new(AtomicU64::new(0)),
                chain: Chain::new(position, torn),
            })
        } else {
            Self::spawn(file, Self::DEFAULT_QUEUE, deadline)
        }
    }

    fn non_blocking(file: File, deadline: Duration, position: Position) -> io::Result<AuditWriter> {
        let pipe = mio::unix::pipe::Sender::from(OwnedFd::from(file));
        pipe.set_nonblocking(true)?;
        let file = Arc::new(File::from(OwnedFd::from(pipe)));
        let backlog = Arc::new(Mutex::new(false));
        let sink = Sink::NonBlocking { file: Arc::clone(&file), backlog: Arc::clone(&backlog) };
        Self::start(Output::NonBlocking { file, backlog }, sink, Self::DEFAULT_QUEUE, deadline, position)
    }

    fn start(
        output: Output,
        sink: Sink,
        queue: usize,
        deadline: Duration,
        position: Position,
    ) -> io::Result<AuditWriter> {
        let (sender, receiver) = std::sync::mpsc::sync_channel(queue.max(1));
        let failed_writes = Arc::new(AtomicU64::new(0));
        let failures = Arc::clone(&failed_writes);
        std::thread::Builder::new()
            .name("sqlwarden-audit".into())
            .spawn(move || write_jobs(sink, &receiver, &failures))?;
        Ok(AuditWriter { output, queue: sender, deadline, failed_writes, chain: Chain::new(position, false) })
    }

    /// Signs the chain's hashes with `key` (HMAC-SHA-256), so that whoever can edit the audit
    /// cannot make a chain that verifies.
    pub fn with_key(self, key: ChainKey) -> AuditWriter {
        if let Ok(mut chain) = self.chain.lock() {
            chain.key = Some(key);
        }
        self
    }

    fn close_chain(&self, within: Duration) -> Result<(), AuditError> {
        self.write(super::control_line("close")).wait()?;
        self.flush(within)
    }

    /// How long a caller waits for a queued batch to be written.
    pub fn deadline(&self) -> Duration {
        self.deadline
    }

    /// How many batches could not be written (each was reported to whoever waited for it).
    pub fn failed_writes(&self) -> u64 {
        self.failed_writes.load(Ordering::Relaxed)
    }

    fn failed(&self, error: io::Error) -> Submitted {
        self.failed_writes.fetch_add(1, Ordering::Relaxed);
        Submitted::recorded(Err(AuditError::Io(error)))
    }

    fn enqueue(&self, lines: Vec<u8>) -> Submitted {
        let ack = Arc::new(Ack::default());
        match self.queue.try_send(Job { lines, ack: Arc::clone(&ack) }) {
            Ok(()) => Submitted(Outcome::Queued { ack, deadline: Instant::now() + self.deadline }),
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                Submitted::recorded(Err(AuditError::Unavailable))
            }
        }
    }

    /// Seals `lines` into the chain and writes them; the chain moves on only if they were
    /// written or queued. The first batch opens the chain.
    fn write(&self, mut lines: Vec<u8>) -> Submitted {
        let mut chain = self.chain.lock().unwrap_or_else(PoisonError::into_inner);
        if !chain.opened {
            let mut opened = super::control_line("open");
            opened.append(&mut lines);
            lines = opened;
        }
        let position = seal(&mut lines, chain.position, chain.key.as_ref());
        if chain.torn {
            lines.insert(0, b'\n');
        }
        let submitted = self.write_sealed(lines);
        if !submitted.has_failed() {
            chain.position = position;
            chain.opened = true;
            chain.torn = false;
            if let Err(error) = self.rotate_if_full(&mut chain) {
                // The chain goes on in the file it is in; the next batch tries again.
                tracing::warn!(%error, "the audit file could not be rotated");
            }
        }
        submitted
    }

    /// Rotates an audit file that has reached its `max_bytes`: the chain is closed in it, the
    /// file is renamed `PATH.SEQ` (the close record's sequence number, zero-padded, so that the
    /// names sort oldest first), and the chain goes on in a new file at `PATH`, whose open
    /// record follows the close.
    fn rotate_if_full(&self, chain: &mut Chain) -> io::Result<()> {
        let Output::Direct(appended) = &self.output else { return Ok(()) };
        let mut appended = appended.lock().unwrap_or_else(PoisonError::into_inner);
        if appended.max_bytes.is_none_or(|max| appended.size < max) {
            return Ok(());
        }
        let closed_at = chain.position.seq;
        Self::switch_file(&mut appended, chain, Some(closed_at))
    }

    /// Closes the chain in the current file (if it was opened there), renames the file to
    /// `PATH.SEQ` when `rename` names the close's sequence number, and opens `PATH` afresh.
    fn switch_file(appended: &mut Appended, chain: &mut Chain, rename: Option<u64>) -> io::Result<()> {
        if chain.opened {
            let mut close = super::control_line("close");
            let position = seal(&mut close, chain.position, chain.key.as_ref());
            appended.file.write_all(&close)?;
            chain.position = position;
            chain.opened = false;
        }
        if let Some(seq) = rename {
            let mut rotated = appended.path.clone().into_os_string();
            rotated.push(format!(".{seq:012}"));
            std::fs::rename(&appended.path, rotated)?;
        }
        let mut file = OpenOptions::new().create(true).append(true).read(true).open(&appended.path)?;
        if same_file(&file, &appended.file) {
            // Not renamed after all: the chain goes on in the file this writer holds.
            return Ok(());
        }
        lock_for_this_process(&file)?;
        // A file someone else put there (or left) is continued after, never before.
        let (_, torn) = resume(&mut file)?;
        chain.torn = torn;
        appended.size = file.metadata()?.len();
        appended.file = file;
        Ok(())
    }

    /// Rotates the audit file at `max_bytes` (see `rotate_if_full`); by default it never is.
    pub fn rotate_at(self, max_bytes: u64) -> AuditWriter {
        if let Output::Direct(appended) = &self.output {
            appended.lock().unwrap_or_else(PoisonError::into_inner).max_bytes = Some(max_bytes.max(1));
        }
        self
    }

    /// Closes the chain in the audit file and goes on in the file now at its path: for an
    /// outside rotation (logrotate renames the file, then sends SIGHUP). Other outputs are left
    /// as they are.
    pub fn reopen_file(&self) -> io::Result<()> {
        let Output::Direct(appended) = &self.output else { return Ok(()) };
        let mut chain = self.chain.lock().unwrap_or_else(PoisonError::into_inner);
        let mut appended = appended.lock().unwrap_or_else(PoisonError::into_inner);
        Self::switch_file(&mut appended, &mut chain, None)
    }

    fn write_sealed(&self, mut lines: Vec<u8>) -> Submitted {
        match &self.output {
            Output::Direct(appended) => {
                let mut appended = appended.lock().unwrap_or_else(PoisonError::into_inner);
                match appended.file.write_all(&lines) {
                    Ok(()) => {
                        appended.size += lines.len() as u64;
                        Submitted::recorded(Ok(()))
                    }
                    Err(error) => self.failed(error),
                }
            }
            Output::NonBlocking { file, backlog } => {
                let mut backlog = backlog.lock().unwrap_or_else(PoisonError::into_inner);
                if !*backlog {
                    match write_what_fits(&mut &**file, &lines) {
                        Ok(written) if written == lines.len() => return Submitted::recorded(Ok(())),
                        Ok(written) => {
                            lines.drain(..written);
                        }
                        Err(error) => return self.failed(error),
                    }
                }
                // Queued while the lock is held, so that the thread cannot declare the backlog
                // gone in between: batches stay in order.
                let queued = self.enqueue(lines);
                if !queued.has_failed() {
                    *backlog = true;
                }
                queued
            }
            Output::Threaded => self.enqueue(lines),
        }
    }
}

impl AuditSink for AuditWriter {
    /// Writes the batch, or hands it to the thread and blocks until it is written, at most the
    /// deadline. The boundary uses [`submit`](AuditSink::submit), which never blocks on a reader.
    fn record(&self, batch: &AuditBatch<'_>) -> Result<(), AuditError> {
        self.submit(batch).wait()
    }

    fn submit(&self, batch: &AuditBatch<'_>) -> Submitted {
        let mut lines = Vec::with_capacity(256 * batch.records.len().max(1));
        match write_lines(&mut lines, batch) {
            Ok(start) => {
                lines.drain(..start);
                self.write(lines)
            }
            Err(error) => Submitted::recorded(Err(error.into())),
        }
    }

    /// Closes the chain with a `close` record, then waits for every batch to be written, at
    /// most `within`. A chain that is not closed shows, to `sqlwarden audit verify`, as a
    /// crash or a cut tail.
    fn close(&self, within: Duration) -> Result<(), AuditError> {
        self.close_chain(within)
    }

    fn reopen(&self) -> Result<(), AuditError> {
        self.reopen_file().map_err(AuditError::Io)
    }

    /// Waits until every batch handed over before this call is written, at most `within`.
    fn flush(&self, within: Duration) -> Result<(), AuditError> {
        if let Output::Direct(_) = self.output {
            return Ok(());
        }
        let ack = Arc::new(Ack::default());
        let deadline = Instant::now() + within;
        let mut job = Job { lines: Vec::new(), ack: Arc::clone(&ack) };
        // A full queue drains as the thread works: keep offering until the deadline.
        loop {
            match self.queue.try_send(job) {
                Ok(()) => break,
                Err(TrySendError::Full(pending)) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5));
                    job = pending;
                }
                Err(_) => return Err(AuditError::Unavailable),
            }
        }
        Submitted(Outcome::Queued { ack, deadline }).wait()
    }
}

impl fmt::Debug for AuditWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditWriter").field("deadline", &self.deadline).finish_non_exhaustive()
    }
}

/// Takes the audit file for this process alone (an advisory lock, released when the file is
/// closed): two processes appending to one file would interleave their chains, which then
/// verify as broken. A second server on the same file refuses to start instead.
fn lock_for_this_process(file: &File) -> io::Result<()> {
    use rustix::fs::{FlockOperation, flock};
    match flock(file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(()),
        Err(error) if error == rustix::io::Errno::WOULDBLOCK => Err(io::Error::new(
            io::ErrorKind::WouldBlock,
            "another process writes this audit file (give each server a file of its own)",
        )),
        Err(error) => Err(error.into()),
    }
}

/// Whether two open files are the same file.
fn same_file(a: &File, b: &File) -> bool {
    match (a.metadata(), b.metadata()) {
        (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
        _ => false,
    }
}

/// What the thread writes to.
enum Sink {
    Blocking(Box<dyn Write + Send>),
    NonBlocking { file: Arc<File>, backlog: Arc<Mutex<bool>> },
}

/// The writer thread: takes batches as they come, writes those waiting together with one
/// `write`, and tells each one how it went. It ends when every sender is gone.
fn write_jobs(mut sink: Sink, queue: &Receiver<Job>, failures: &AtomicU64) {
    let mut lines = Vec::with_capacity(AuditWriter::COALESCE_BYTES);
    let mut acks = Vec::new();
    let mut next = None;
    loop {
        let job = match next.take() {
            Some(job) => job,
            None => match queue.recv() {
                Ok(job) => job,
                Err(_) => return,
            },
        };
        lines.clear();
        lines.extend_from_slice(&job.lines);
        acks.push(job.ack);
        while lines.len() < AuditWriter::COALESCE_BYTES {
            let Ok(job) = queue.try_recv() else { break };
            lines.extend_from_slice(&job.lines);
            acks.push(job.ack);
        }
        let written = match &mut sink {
            Sink::Blocking(out) => out.write_all(&lines).and_then(|()| out.flush()),
            Sink::NonBlocking { file, .. } => write_all_waiting(&mut &**file, &lines, AuditWriter::RETRY),
        }
        .map_err(|error| error.kind());
        if let Err(kind) = written {
            failures.fetch_add(acks.len() as u64, Ordering::Relaxed);
            tracing::error!(error = %io::Error::from(kind), batches = acks.len(), "cannot write audit records");
        }
        for ack in acks.drain(..) {
            ack.set(written);
        }
        if let Sink::NonBlocking { backlog, .. } = &sink {
            // Callers write directly again once nothing waits here; they queue under this lock,
            // so a batch queued meanwhile is seen, and written before any later one.
            let mut backlog = backlog.lock().unwrap_or_else(PoisonError::into_inner);
            match queue.try_recv() {
                Ok(job) => next = Some(job),
                Err(_) => *backlog = false,
            }
        }
    }
}

/// What an [`AuditSink`] says of a batch it was handed: recorded already (or refused), or on
/// its way, with a deadline to wait for it.
#[must_use = "a submitted batch counts as written only once `written` says so"]
pub struct Submitted(Outcome);

enum Outcome {
    Recorded(Result<(), AuditError>),
    Queued { ack: Arc<Ack>, deadline: Instant },
}

impl Submitted {
    /// A batch whose fate is known: written, or refused with this error.
    pub fn recorded(result: Result<(), AuditError>) -> Self {
        Submitted(Outcome::Recorded(result))
    }

    /// Whether the batch is known already not to be written (refused, queue full, writer gone).
    pub fn has_failed(&self) -> bool {
        self.failure().is_some()
    }

    /// Why the batch is known already not to be written, if it is.
    pub fn failure(&self) -> Option<&AuditError> {
        match &self.0 {
            Outcome::Recorded(Err(error)) => Some(error),
            _ => None,
        }
    }

    /// Waits until the batch is written, or says why it was not: the write failed, the writer
    /// is gone, or its deadline passed. Needs a tokio runtime with its timer when the batch is
    /// on its way.
    pub async fn written(self) -> Result<(), AuditError> {
        match self.0 {
            Outcome::Recorded(result) => result,
            Outcome::Queued { ack, deadline } => {
                match tokio::time::timeout_at(deadline.into(), Acknowledged(&ack)).await {
                    Ok(result) => result,
                    Err(_) => Err(AuditError::TimedOut),
                }
            }
        }
    }

    /// [`written`](Self::written), blocking the thread: for callers outside a runtime.
    pub fn wait(self) -> Result<(), AuditError> {
        match self.0 {
            Outcome::Recorded(result) => result,
            Outcome::Queued { ack, deadline } => ack.wait_until(deadline),
        }
    }
}

impl fmt::Debug for Submitted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Outcome::Recorded(result) => f.debug_tuple("Submitted::Recorded").field(result).finish(),
            Outcome::Queued { deadline, .. } => {
                f.debug_struct("Submitted::Queued").field("deadline", deadline).finish()
            }
        }
    }
}

/// The writer's word on one batch, awaited by a task or a thread.
#[derive(Default)]
struct Ack {
    state: Mutex<AckState>,
    done: Condvar,
}

#[derive(Default)]
struct AckState {
    outcome: Option<Result<(), io::ErrorKind>>,
    waker: Option<Waker>,
}

impl Ack {
    fn set(&self, outcome: Result<(), io::ErrorKind>) {
        let waker = {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            state.outcome = Some(outcome);
            state.waker.take()
        };
        self.done.notify_all();
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    fn wait_until(&self, deadline: Instant) -> Result<(), AuditError> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(outcome) = state.outcome {
                return outcome.map_err(|kind| AuditError::Io(kind.into()));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(AuditError::TimedOut);
            }
            state = self.done.wait_timeout(state, left).unwrap_or_else(PoisonError::into_inner).0;
        }
    }
}

/// Resolves when the writer has said how the batch went.
struct Acknowledged<'a>(&'a Ack);

impl Future for Acknowledged<'_> {
    type Output = Result<(), AuditError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.0.state.lock().unwrap_or_else(PoisonError::into_inner);
        match state.outcome {
            Some(outcome) => Poll::Ready(outcome.map_err(|kind| AuditError::Io(kind.into()))),
            None => {
                match &mut state.waker {
                    Some(waker) => waker.clone_from(cx.waker()),
                    None => state.waker = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{AuditDecision, AuditRecord, Stage};
    use crate::pipe::Unread;
    use std::time::SystemTime;

    fn batch_of(records: &[AuditRecord]) -> AuditBatch<'_> {
        AuditBatch { session: None, tool: "t", records, read: None, origin: None }
    }

    fn record() -> AuditRecord {
        AuditRecord {
            timestamp: SystemTime::UNIX_EPOCH,
            stage: Stage::Resolve,
            decision: AuditDecision::Allow,
            code: None,
            duration: Duration::ZERO,
            rows_affected: None,
        }
    }

    #[tokio::test]
    async fn batches_are_written_in_order_and_acknowledged() {
        let gate = Unread::default();
        gate.open();
        let writer = AuditWriter::spawn(gate.clone(), 16, Duration::from_secs(5)).expect("spawns");
        let records = [record()];
        for _ in 0..3 {
            writer.submit(&batch_of(&records)).written().await.expect("written");
        }
        let text = String::from_utf8(gate.written()).expect("utf-8");
        assert_eq!(text.lines().count(), 1 + 3, "the chain's open record, and the three");
        assert!(text.lines().next().is_some_and(|line| line.contains(r#""audit":"open""#)));
        assert!(text.lines().all(|line| serde_json::from_str::<serde_json::Value>(line).is_ok()));
        assert!(writer.flush(Duration::from_secs(5)).is_ok());
        assert_eq!(writer.failed_writes(), 0);
    }

    #[tokio::test]
    async fn a_stalled_writer_times_out_and_a_full_queue_refuses_at_once() {
        let gate = Unread::default();
        let writer = AuditWriter::spawn(gate.clone(), 2, Duration::from_millis(100)).expect("spawns");
        let records = [record()];
        // The first batch is taken by the thread, which then blocks; two more fill the queue.
        let first = writer.submit(&batch_of(&records));
        let started = Instant::now();
        assert!(matches!(first.written().await, Err(AuditError::TimedOut)));
        assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
        let mut accepted = 1;
        for _ in 0..5 {
            accepted += usize::from(!writer.submit(&batch_of(&records)).has_failed());
        }
        assert!(accepted <= 3, "a full queue refuses without waiting ({accepted} accepted)");
        assert!(matches!(writer.record(&batch_of(&records)), Err(AuditError::Unavailable)), "still full");
        // Once the pipe drains, every accepted batch is written: nothing is lost.
        gate.open();
        assert!(writer.flush(Duration::from_secs(5)).is_ok());
        // Each accepted batch, and the chain's open record.
        assert_eq!(String::from_utf8(gate.written()).expect("utf-8").lines().count(), 1 + accepted);
    }

    #[tokio::test]
    async fn a_pipe_is_written_at_once_until_it_is_full_then_in_order_by_the_thread() {
        use std::io::Read;
        let (mut reader, pipe) = std::io::pipe().expect("pipe");
        let writer =
            AuditWriter::non_blocking(File::from(OwnedFd::from(pipe)), Duration::from_millis(100), Position::START)
                .expect("starts");
        let records = [record()];
        let first = writer.submit(&batch_of(&records));
        assert_eq!(format!("{first:?}"), "Submitted::Recorded(Ok(()))", "an empty pipe takes a batch at once");
        // Nobody reads: the pipe fills, and then batches wait for the thread.
        let mut direct = 1;
        let queued = loop {
            let submitted = writer.submit(&batch_of(&records));
            if format!("{submitted:?}").starts_with("Submitted::Queued") {
                break submitted;
            }
            direct += 1;
            assert!(direct < 100_000, "a pipe holds far less");
        };
        let started = Instant::now();
        assert!(matches!(queued.written().await, Err(AuditError::TimedOut)), "denied by the deadline, not hung");
        assert!(started.elapsed() < Duration::from_secs(2));
        let behind = writer.submit(&batch_of(&records));
        assert!(format!("{behind:?}").starts_with("Submitted::Queued"), "later batches queue behind the backlog");
        // The reader comes back: everything accepted is written, whole lines, in order.
        let reading = std::thread::spawn(move || {
            let mut text = String::new();
            reader.read_to_string(&mut text).expect("reads");
            text
        });
        writer.flush(Duration::from_secs(5)).expect("flushed");
        // Once the reader has made room, batches are written at once again (until then, one
        // may still queue behind a pipe the reader has not emptied yet, and is written).
        let mut later = 0;
        let again = Instant::now();
        loop {
            let after = writer.submit(&batch_of(&records));
            later += 1;
            if format!("{after:?}") == "Submitted::Recorded(Ok(()))" {
                break;
            }
            // Queued: written by the thread, in order (the count below says so).
            assert!(again.elapsed() < Duration::from_secs(5), "the backlog never went: {after:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        drop(writer);
        let text = reading.join().expect("reader");
        assert_eq!(text.lines().count(), 1 + direct + 2 + later, "the chain's open record, and each batch");
        assert!(text.lines().all(|line| serde_json::from_str::<serde_json::Value>(line).is_ok()), "no torn lines");
    }

    struct Broken;

    impl Write for Broken {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::other("disk full"))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_failed_write_is_reported_and_counted() {
        let writer = AuditWriter::spawn(Broken, 4, Duration::from_secs(5)).expect("spawns");
        let records = [record()];
        assert!(matches!(writer.submit(&batch_of(&records)).written().await, Err(AuditError::Io(_))));
        assert!(matches!(writer.record(&batch_of(&records)), Err(AuditError::Io(_))));
        assert_eq!(writer.failed_writes(), 2);
    }
}
