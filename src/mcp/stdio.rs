//! MCP over stdin and stdout, with a thin layer in front of rmcp's transport so that every
//! message gets an answer or a documented refusal: a message over [`MAX_MESSAGE_BYTES`] is
//! refused (-32600) and skipped, and serving goes on; every line passes the checks of
//! [`front`](super::front) that every transport makes.
//!
//! Everything else passes to rmcp unchanged. One task owns stdout, so replies never interleave.
//! On end of input, SIGTERM or SIGINT, reading stops; rmcp finishes the calls in flight and the
//! function returns.

use serde_json::Value;
use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::{Notify, mpsc};

use super::McpServer;
use super::front::{Check, ClientMessage, INVALID_REQUEST, Lifecycle, check, error_line};
use super::result::{Encoded, Outputs, ServerMessage, encode};
use crate::service::Service;

/// The longest message read, in bytes. Longer ones are refused and skipped.
pub const MAX_MESSAGE_BYTES: usize = 4 << 20;

/// Serves MCP on stdin and stdout until the input ends or the process is asked to stop.
///
/// Pipes and sockets (how MCP clients start servers) are read and written without blocking,
/// on the runtime's own event loop; a terminal or a file falls back to tokio's standard streams,
/// which hand each read and write to a thread of their own.
pub async fn serve_stdio(service: Arc<Service>) -> std::io::Result<()> {
    let input = streams::stdin();
    let output = streams::stdout();
    serve_on(service, input, output).await
}

/// Serves MCP on any byte streams; see the module documentation.
pub async fn serve_on<R, W>(service: Arc<Service>, input: R, output: W) -> std::io::Result<()>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    use rmcp::ServiceExt;

    let outputs = Arc::new(Outputs::default().framing(service.frames_untrusted_data()));
    let server = McpServer::new(service, Arc::clone(&outputs));
    let lifecycle = Arc::new(Lifecycle::default());
    let output = Arc::new(Output {
        writer: tokio::sync::Mutex::new(Box::new(output)),
        large: tokio::sync::Semaphore::new(1),
        lifecycle: lifecycle.clone(),
    });
    let (forward, incoming) = mpsc::channel(64);
    let activity = Arc::new(Notify::new());
    let armed = tokio::spawn(super::armed::keep_a_timer_armed(Arc::clone(&activity)));
    let reader = tokio::spawn(read_client(input, forward, Arc::clone(&output), lifecycle, activity));
    match server.serve(Channel { incoming, output: Arc::clone(&output), outputs }).await {
        Ok(running) => {
            if let Err(error) = running.waiting().await {
                tracing::error!(%error, "the MCP session ended with an error");
            }
        }
        // The client left (or sent nothing valid) before initializing.
        Err(error) => tracing::info!(%error, "the MCP session ended before it was initialized"),
    }
    reader.abort();
    armed.abort();
    let _ = reader.await;
    output.shutdown().await
}

/// The one writer of the output: whole lines, one at a time, so replies never interleave.
///
/// A large result takes its turn among large results first (`large`), and only then waits for
/// the output: so a short message (a `ping`'s answer) waits at most for the one line being
/// written, never for every large result queued behind it.
struct Output {
    writer: tokio::sync::Mutex<Box<dyn AsyncWrite + Unpin + Send>>,
    large: tokio::sync::Semaphore,
    lifecycle: Arc<Lifecycle>,
}

impl Output {
    /// Writes a line the front layer made (with its newline).
    async fn write_line(&self, line: &[u8]) -> std::io::Result<()> {
        let mut writer = self.writer.lock().await;
        writer.write_all(line).await?;
        writer.flush().await
    }

    /// Writes a message whole. A large result takes its turn among large results first.
    async fn write(&self, message: Encoded) -> std::io::Result<()> {
        if let Encoded::Line(line) = &message {
            self.lifecycle.observe(line);
        }
        let _turn = if message.is_large() { self.large.acquire().await.ok() } else { None };
        let mut writer = self.writer.lock().await;
        message.write_to(&mut *writer).await?;
        writer.flush().await
        // The output is let go of before the turn: a short message waiting gets it first.
    }

    async fn shutdown(&self) -> std::io::Result<()> {
        let mut writer = self.writer.lock().await;
        writer.flush().await
    }
}

/// rmcp's side of the session: the messages the reader checked and parsed, and the output.
struct Channel {
    incoming: mpsc::Receiver<ClientMessage>,
    output: Arc<Output>,
    outputs: Arc<Outputs>,
}

impl rmcp::transport::Transport<rmcp::RoleServer> for Channel {
    type Error = std::io::Error;

    fn send(
        &mut self,
        message: ServerMessage,
    ) -> impl std::future::Future<Output = Result<(), Self::Error>> + Send + 'static {
        let output = Arc::clone(&self.output);
        let message = encode(message, &self.outputs).map_err(std::io::Error::other);
        async move { output.write(message?).await }
    }

    fn receive(&mut self) -> impl std::future::Future<Output = Option<ClientMessage>> + Send {
        // A channel's receive is cancel-safe, as rmcp's select loop needs.
        self.incoming.recv()
    }

    async fn close(&mut self) -> Result<(), Self::Error> {
        self.incoming.close();
        Ok(())
    }
}

/// How reading one line ended.
enum Line {
    Complete,
    TooLong,
    End,
}

/// Reads one line into `line` (without its newline), keeping at most `max` bytes: a longer line
/// is consumed to its end and reported as too long.
async fn read_line<R: AsyncRead + Unpin>(reader: &mut BufReader<R>, line: &mut Vec<u8>, max: usize) -> Line {
    let mut too_long = false;
    loop {
        let available = match reader.fill_buf().await {
            Ok(available) => available,
            Err(_) => return Line::End,
        };
        if available.is_empty() {
            return if line.is_empty() && !too_long {
                Line::End
            } else if too_long {
                Line::TooLong
            } else {
                Line::Complete
            };
        }
        let (chunk, found) = match available.iter().position(|byte| *byte == b'\n') {
            Some(at) => (&available[..at], Some(at)),
            None => (available, None),
        };
        if !too_long {
            if line.len() + chunk.len() > max {
                too_long = true;
                line.clear();
            } else {
                line.extend_from_slice(chunk);
            }
        }
        let used = found.map_or(chunk.len(), |at| at + 1);
        reader.consume(used);
        if found.is_some() {
            return if too_long { Line::TooLong } else { Line::Complete };
        }
    }
}

/// Reads the client's messages, answering what rmcp would not, and passes the rest on.
async fn read_client<R>(
    input: R,
    forward: mpsc::Sender<ClientMessage>,
    output: Arc<Output>,
    lifecycle: Arc<Lifecycle>,
    activity: Arc<Notify>,
) where
    R: AsyncRead + Unpin,
{
    let mut reader = BufReader::new(input);
    let mut stop = super::stop::Stop::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        let read = tokio::select! {
            read = read_line(&mut reader, &mut line, MAX_MESSAGE_BYTES) => read,
            () = stop.requested() => break,
        };
        let reply = match read {
            Line::End => break,
            Line::TooLong => Some(error_line(
                Value::Null,
                INVALID_REQUEST,
                &format!("the message is longer than {MAX_MESSAGE_BYTES} bytes and was skipped"),
            )),
            Line::Complete => {
                let text = line.strip_suffix(b"\r").unwrap_or(&line);
                // A byte-order mark is not part of the message.
                let text = text.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(text);
                if text.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                match check(text, &lifecycle) {
                    Check::Forward(message) => {
                        activity.notify_one();
                        if forward.send(*message).await.is_err() {
                            break;
                        }
                        continue;
                    }
                    Check::Drop => continue,
                    Check::Reply(reply) => Some(reply),
                }
            }
        };
        if let Some(reply) = reply
            && output.write_line(&reply).await.is_err()
        {
            break;
        }
    }
    // Dropping the sender ends rmcp's input; it finishes what is in flight.
}

/// stdin and stdout as streams of the runtime's event loop, where the operating system allows.
mod streams {
    use tokio::io::{AsyncRead, AsyncWrite};

    type Reader = Box<dyn AsyncRead + Unpin + Send>;
    type Writer = Box<dyn AsyncWrite + Unpin + Send>;

    pub(super) fn stdin() -> Reader {
        #[cfg(unix)]
        if let Some(reader) = unix::stdin() {
            return reader;
        }
        Box::new(tokio::io::stdin())
    }

    pub(super) fn stdout() -> Writer {
        #[cfg(unix)]
        if let Some(writer) = unix::stdout() {
            return writer;
        }
        Box::new(tokio::io::stdout())
    }

    /// A pipe or a Unix socket is duplicated and made non-blocking. Anything else (a terminal,
    /// a file), and a stream open on the same file as stderr (`2>&1`: logs and audit lines on
    /// stderr expect blocking writes), is left to tokio's standard streams.
    #[cfg(unix)]
    mod unix {
        use std::fs::File;
        use std::os::fd::{AsFd, OwnedFd};
        use std::os::unix::fs::{FileTypeExt, MetadataExt};

        use super::{Reader, Writer};

        enum Kind {
            Pipe(File),
            Socket(tokio::net::UnixStream),
        }

        fn open(file: File) -> Option<Kind> {
            let kind = file.metadata().ok()?.file_type();
            if kind.is_fifo() {
                return Some(Kind::Pipe(file));
            }
            if !kind.is_socket() {
                return None;
            }
            let socket = std::os::unix::net::UnixStream::from(OwnedFd::from(file));
            // Refuses a socket of another family.
            socket.local_addr().ok()?;
            socket.set_nonblocking(true).ok()?;
            tokio::net::UnixStream::from_std(socket).ok().map(Kind::Socket)
        }

        /// Duplicates `fd`, unless it is open on the same file as stderr.
        fn duplicate(fd: std::os::fd::BorrowedFd<'_>) -> Option<File> {
            let file = File::from(fd.try_clone_to_owned().ok()?);
            let stderr = File::from(std::io::stderr().as_fd().try_clone_to_owned().ok()?);
            let (this, err) = (file.metadata().ok()?, stderr.metadata().ok()?);
            ((this.dev(), this.ino()) != (err.dev(), err.ino())).then_some(file)
        }

        pub(super) fn stdin() -> Option<Reader> {
            match open(duplicate(std::io::stdin().as_fd())?)? {
                Kind::Pipe(file) => Some(Box::new(tokio::net::unix::pipe::Receiver::from_file(file).ok()?)),
                Kind::Socket(socket) => Some(Box::new(socket)),
            }
        }

        pub(super) fn stdout() -> Option<Writer> {
            match open(duplicate(std::io::stdout().as_fd())?)? {
                Kind::Pipe(file) => Some(Box::new(tokio::net::unix::pipe::Sender::from_file(file).ok()?)),
                Kind::Socket(socket) => Some(Box::new(socket)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn long_lines_are_skipped_whole_and_reading_goes_on() {
        let input = format!("{}\nshort\n", "x".repeat(100));
        let mut reader = BufReader::with_capacity(16, input.as_bytes());
        let mut line = Vec::new();
        assert!(matches!(read_line(&mut reader, &mut line, 50).await, Line::TooLong));
        line.clear();
        assert!(matches!(read_line(&mut reader, &mut line, 50).await, Line::Complete));
        assert_eq!(line, b"short");
        line.clear();
        assert!(matches!(read_line(&mut reader, &mut line, 50).await, Line::End));
        // A line of exactly the maximum is read whole, across several buffer fills.
        let exact = format!("{}\n{}\n", "y".repeat(50), "z".repeat(51));
        let mut reader = BufReader::with_capacity(8, exact.as_bytes());
        line.clear();
        assert!(matches!(read_line(&mut reader, &mut line, 50).await, Line::Complete));
        assert_eq!(line.len(), 50);
        line.clear();
        assert!(matches!(read_line(&mut reader, &mut line, 50).await, Line::TooLong), "one byte more is too long");
        line.clear();
        let mut unterminated = BufReader::new("tail".as_bytes());
        assert!(matches!(read_line(&mut unterminated, &mut line, 50).await, Line::Complete));
        assert_eq!(line, b"tail");
    }
}
