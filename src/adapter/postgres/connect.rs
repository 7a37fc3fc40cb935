//! Connections to PostgreSQL, made here rather than by tokio-postgres, for two reasons:
//!
//! - **One message cannot take the memory.** tokio-postgres reads a whole backend message
//!   (a row, say) into memory before anyone sees it. Every connection reads through a
//!   [`Limited`] stream that follows the protocol's message framing and fails the connection
//!   as soon as a message's length header announces more than [`Connector`]'s limit: the
//!   message is never buffered, and the read that met it is refused with
//!   `RESULT_TOO_LARGE`.
//! - **TLS is negotiated here**, so that the limit sees the protocol and not ciphertext:
//!   `SSLRequest`, then rustls (certificate chain and host name always verified), then
//!   tokio-postgres over the result without TLS of its own. A cancel request goes the same
//!   way, on a connection of its own.
//!
//! Hosts are tried in order, as libpq does: `host` (a name, an address, or a Unix socket's
//! directory) with its `port`, or `hostaddr` when given (then `host` names the certificate).
//! TLS is never used over a Unix socket, as libpq does not either.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres::{CancelToken, Client, NoTls};
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::ServerName;

/// The port libpq uses when none is given.
const DEFAULT_PORT: u16 = 5432;
/// `SSLRequest`: length 8, code 80877103.
const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

/// Makes connections as the configuration says; see the module documentation.
pub(super) struct Connector {
    /// The configuration as given: hosts, ports, `sslmode`, timeouts, credentials.
    config: tokio_postgres::Config,
    /// The same, for tokio-postgres over a stream already secured here: without TLS.
    raw: tokio_postgres::Config,
    tls: TlsConnector,
    max_message: usize,
}

/// A pooled connection: the client, and what its stream saw.
pub(super) struct PgConnection {
    pub(super) client: Client,
    oversized: Arc<AtomicBool>,
    largest: Arc<AtomicUsize>,
}

impl PgConnection {
    /// Above this, a message leaves the connection's read buffer that large for as long as the
    /// connection lives (tokio-postgres never shrinks it).
    const LARGE_MESSAGE: usize = 1 << 20;

    /// Whether the connection was failed because a message from the server was larger than
    /// the limit.
    pub(super) fn refused_a_large_message(&self) -> bool {
        self.oversized.load(Ordering::Acquire)
    }

    /// Whether the connection has read a message of more than [`Self::LARGE_MESSAGE`] bytes,
    /// and so keeps a buffer that large: it is closed rather than pooled, so that the memory a
    /// large result used is given back.
    pub(super) fn holds_a_large_buffer(&self) -> bool {
        self.largest.load(Ordering::Relaxed) > Self::LARGE_MESSAGE
    }
}

impl std::ops::Deref for PgConnection {
    type Target = Client;

    fn deref(&self) -> &Client {
        &self.client
    }
}

/// Why a connection could not be made.
#[derive(Debug)]
pub(super) enum ConnectError {
    /// No host could be reached, or the stream failed.
    Io(io::Error),
    /// The server does not offer TLS and `sslmode` requires it.
    TlsRefused,
    /// The server refused the connection (authentication, no such database…).
    Postgres(tokio_postgres::Error),
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::Io(error) => write!(f, "{error}"),
            ConnectError::TlsRefused => f.write_str("the server does not offer TLS, which sslmode requires"),
            ConnectError::Postgres(error) => write!(f, "{error}"),
        }
    }
}

impl From<io::Error> for ConnectError {
    fn from(error: io::Error) -> Self {
        ConnectError::Io(error)
    }
}

impl std::error::Error for ConnectError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConnectError::Io(error) => Some(error),
            ConnectError::TlsRefused => None,
            ConnectError::Postgres(error) => Some(error),
        }
    }
}

impl Connector {
    /// A connector for `config`, verifying certificates with `tls`, failing any connection on
    /// a message longer than `max_message` bytes.
    /// The TLS mode connections are made with.
    #[cfg(test)]
    pub(super) fn ssl_mode(&self) -> SslMode {
        self.config.get_ssl_mode()
    }

    pub(super) fn new(config: tokio_postgres::Config, tls: rustls::ClientConfig, max_message: usize) -> Self {
        let mut raw = config.clone();
        raw.ssl_mode(SslMode::Disable);
        Connector { config, raw, tls: TlsConnector::from(Arc::new(tls)), max_message }
    }

    /// A new connection, its statements and rows read through the message limit.
    pub(super) async fn connect(&self) -> Result<PgConnection, ConnectError> {
        let stream = self.open().await?;
        let (oversized, largest) = (Arc::clone(&stream.oversized), Arc::clone(&stream.largest));
        let (client, connection) = self.raw.connect_raw(stream, NoTls).await.map_err(ConnectError::Postgres)?;
        tokio::spawn(async move {
            // Its error reaches the client's requests; a message refused as too large is also
            // told by the flag.
            let _ = connection.await;
        });
        Ok(PgConnection { client, oversized, largest })
    }

    /// Asks the server, on a connection of its own, to cancel what `token`'s connection runs.
    pub(super) async fn cancel(&self, token: &CancelToken) -> Result<(), ConnectError> {
        let stream = self.open().await?;
        token.cancel_query_raw(stream, NoTls).await.map_err(ConnectError::Postgres)
    }

    /// A stream to the first host that answers, secured as `sslmode` says.
    async fn open(&self) -> Result<Limited<Box<dyn Stream>>, ConnectError> {
        let hosts = self.config.get_hosts();
        let addresses = self.config.get_hostaddrs();
        let ports = self.config.get_ports();
        let count = hosts.len().max(addresses.len()).max(1);
        let timeout = self.config.get_connect_timeout().copied().unwrap_or(Duration::from_secs(5));
        let mut last = None;
        for index in 0..count {
            let host = hosts.get(index);
            let port = ports.get(index).or(ports.first()).copied().unwrap_or(DEFAULT_PORT);
            let attempt = async {
                let stream: Box<dyn Stream> = match (addresses.get(index), host) {
                    (Some(address), _) => Box::new(tcp((*address, port)).await?),
                    (None, Some(Host::Tcp(name))) => Box::new(tcp((name.as_str(), port)).await?),
                    (None, Some(Host::Unix(directory))) => {
                        let path = directory.join(format!(".s.PGSQL.{port}"));
                        // libpq does not use TLS over a Unix socket.
                        return Ok(Box::new(tokio::net::UnixStream::connect(path).await?) as Box<dyn Stream>);
                    }
                    (None, None) => Box::new(tcp(("localhost", port)).await?),
                };
                let name = match (host, addresses.get(index)) {
                    (Some(Host::Tcp(name)), _) => name.clone(),
                    (_, Some(address)) => address.to_string(),
                    _ => "localhost".to_owned(),
                };
                self.secure(stream, name).await
            };
            match tokio::time::timeout(timeout, attempt).await {
                Ok(Ok(stream)) => return Ok(Limited::new(stream, self.max_message)),
                Ok(Err(error)) => last = Some(error),
                Err(_) => last = Some(ConnectError::Io(io::ErrorKind::TimedOut.into())),
            }
        }
        Err(last.unwrap_or_else(|| ConnectError::Io(io::ErrorKind::NotFound.into())))
    }

    /// TLS over `stream` as `sslmode` says: `disable` never, `prefer` when the server offers
    /// it, `require` always (or no connection).
    async fn secure(&self, mut stream: Box<dyn Stream>, name: String) -> Result<Box<dyn Stream>, ConnectError> {
        let mode = self.config.get_ssl_mode();
        if mode == SslMode::Disable {
            return Ok(stream);
        }
        stream.write_all(&SSL_REQUEST).await.map_err(ConnectError::Io)?;
        let mut answer = [0u8; 1];
        stream.read_exact(&mut answer).await.map_err(ConnectError::Io)?;
        match (answer[0], mode) {
            (b'S', _) => {
                let name = ServerName::try_from(name)
                    .map_err(|error| ConnectError::Io(io::Error::new(io::ErrorKind::InvalidInput, error)))?;
                let secured = self.tls.connect(name, stream).await.map_err(ConnectError::Io)?;
                Ok(Box::new(secured))
            }
            (b'N', SslMode::Prefer) => Ok(stream),
            (b'N', _) => Err(ConnectError::TlsRefused),
            _ => Err(ConnectError::Io(io::Error::new(io::ErrorKind::InvalidData, "unexpected answer to SSLRequest"))),
        }
    }
}

/// A TCP connection without Nagle's delay, as tokio-postgres makes them.
async fn tcp(address: impl tokio::net::ToSocketAddrs) -> io::Result<tokio::net::TcpStream> {
    let stream = tokio::net::TcpStream::connect(address).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// What a connection runs over: TCP, a Unix socket, or TLS over TCP.
pub(super) trait Stream: AsyncRead + AsyncWrite + Unpin + Send + Sync {}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + Sync> Stream for S {}

/// A stream that follows the PostgreSQL backend protocol's message framing (a type byte, then
/// a four-byte length that counts itself) and fails as soon as a length announces a message
/// body longer than `max`, before the message is read: the caller learns it from
/// `oversized`. Writes pass through.
pub(super) struct Limited<S> {
    inner: S,
    max: usize,
    /// The header bytes seen of the message being read, when its body has not started.
    header: [u8; 5],
    header_len: usize,
    /// What is left of the current message's body.
    body_left: usize,
    oversized: Arc<AtomicBool>,
    /// The longest message body seen.
    largest: Arc<AtomicUsize>,
}

/// The error a [`Limited`] stream fails with.
#[derive(Debug)]
pub(super) struct OversizedMessage {
    pub(super) length: usize,
    pub(super) max: usize,
}

impl fmt::Display for OversizedMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the server sent a message of {} bytes, more than the {} allowed", self.length, self.max)
    }
}

impl std::error::Error for OversizedMessage {}

impl<S> Limited<S> {
    pub(super) fn new(inner: S, max: usize) -> Self {
        Limited {
            inner,
            max,
            header: [0; 5],
            header_len: 0,
            body_left: 0,
            oversized: Arc::default(),
            largest: Arc::default(),
        }
    }

    /// Follows the framing over bytes just read.
    fn track(&mut self, mut bytes: &[u8]) -> Result<(), OversizedMessage> {
        while !bytes.is_empty() {
            if self.body_left > 0 {
                let skipped = self.body_left.min(bytes.len());
                self.body_left -= skipped;
                bytes = &bytes[skipped..];
                continue;
            }
            let wanted = (5 - self.header_len).min(bytes.len());
            self.header[self.header_len..self.header_len + wanted].copy_from_slice(&bytes[..wanted]);
            self.header_len += wanted;
            bytes = &bytes[wanted..];
            if self.header_len == 5 {
                self.header_len = 0;
                let length = u32::from_be_bytes([self.header[1], self.header[2], self.header[3], self.header[4]]);
                // The length counts its own four bytes; a shorter one is tokio-postgres's to refuse.
                let body = (length as usize).saturating_sub(4);
                if body > self.max {
                    self.oversized.store(true, Ordering::Release);
                    return Err(OversizedMessage { length: body, max: self.max });
                }
                self.body_left = body;
                self.largest.fetch_max(body, Ordering::Relaxed);
            }
        }
        Ok(())
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Limited<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        let read = &buf.filled()[before..];
        match this.track(read) {
            Ok(()) => Poll::Ready(Ok(())),
            Err(oversized) => {
                // Nothing of the message goes further.
                buf.set_filled(before);
                Poll::Ready(Err(io::Error::other(oversized)))
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Limited<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// The pool's view of a connector: it makes connections and keeps only those still open.
impl deadpool::managed::Manager for Connector {
    type Type = PgConnection;
    type Error = ConnectError;

    async fn create(&self) -> Result<PgConnection, ConnectError> {
        self.connect().await
    }

    async fn recycle(
        &self,
        connection: &mut PgConnection,
        _: &deadpool::managed::Metrics,
    ) -> deadpool::managed::RecycleResult<ConnectError> {
        if connection.client.is_closed() {
            return Err(deadpool::managed::RecycleError::message("the connection is closed"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A backend message: type, length (counting itself), body.
    fn message(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut bytes = vec![kind];
        bytes.extend_from_slice(&(u32::try_from(body.len() + 4).expect("small")).to_be_bytes());
        bytes.extend_from_slice(body);
        bytes
    }

    #[tokio::test]
    async fn messages_up_to_the_limit_pass_whole_and_a_longer_one_fails_before_its_body() {
        let mut wire = message(b'D', &[7; 100]);
        wire.extend(message(b'C', b"SELECT 1\0"));
        wire.extend(message(b'D', &[9; 101]));
        // Read in pieces of every size, headers split across reads included.
        for piece in [1, 2, 3, 5, 7, 64, 4096] {
            let chunks: Vec<Vec<u8>> = wire.chunks(piece).map(<[u8]>::to_vec).collect();
            let mut reader = tokio_test_reader(chunks);
            let mut limited = Limited::new(&mut reader, 100);
            let flag = Arc::clone(&limited.oversized);
            let mut seen = Vec::new();
            let error = limited.read_to_end(&mut seen).await.expect_err("the third message is too long");
            let oversized = error.get_ref().and_then(|inner| inner.downcast_ref::<OversizedMessage>());
            assert!(matches!(oversized, Some(OversizedMessage { length: 101, max: 100 })), "{error}");
            assert!(flag.load(Ordering::Acquire));
            let first_two = 105 + 14;
            assert!(seen.len() <= first_two + 5, "piece {piece}: the long body was never passed on ({})", seen.len());
            assert!(wire.starts_with(&seen), "piece {piece}: what was passed on is the stream as it came");
        }
    }

    #[tokio::test]
    async fn a_stream_of_messages_within_the_limit_is_passed_on_unchanged() {
        let wire: Vec<u8> = (0..50u8).flat_map(|n| message(b'D', &vec![n; usize::from(n) * 3])).collect();
        let mut reader = tokio_test_reader(wire.chunks(13).map(<[u8]>::to_vec).collect());
        let mut limited = Limited::new(&mut reader, 150);
        let mut seen = Vec::new();
        limited.read_to_end(&mut seen).await.expect("every message fits");
        assert_eq!(seen, wire);
        assert!(!limited.oversized.load(Ordering::Acquire));
        assert_eq!(limited.largest.load(Ordering::Relaxed), 49 * 3, "the longest body is known");
    }

    /// A reader handing out the chunks one read at a time.
    fn tokio_test_reader(chunks: Vec<Vec<u8>>) -> impl AsyncRead + Unpin {
        struct Chunks(std::collections::VecDeque<Vec<u8>>);
        impl AsyncRead for Chunks {
            fn poll_read(mut self: Pin<&mut Self>, _: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
                if let Some(mut chunk) = self.0.pop_front() {
                    let room = buf.remaining().min(chunk.len());
                    buf.put_slice(&chunk[..room]);
                    if room < chunk.len() {
                        self.0.push_front(chunk.split_off(room));
                    }
                }
                Poll::Ready(Ok(()))
            }
        }
        Chunks(chunks.into())
    }
}
