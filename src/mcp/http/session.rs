//! MCP sessions over HTTP: one rmcp service per session, fed through a channel, whose answers
//! are routed back to the POST that asked (or to the session's GET stream).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rmcp::model::{CallToolRequestParams, GetExtensions, JsonRpcMessage, RequestId, ServerResult};
use tokio::sync::{mpsc, oneshot};

use super::super::front::{ClientMessage, Lifecycle};
use super::super::result::{EncodeError, Outputs, ServerMessage, encode};
use super::super::{Caller, McpServer};
use super::Requester;
use crate::policy::{SessionContext, SessionError};
use crate::service::Service;

/// How the answers of one rmcp service find their way out: to the POST waiting for that id,
/// else to the GET stream, else nowhere.
#[derive(Default)]
pub(super) struct Router {
    /// The requests being answered, by id: each POST's way to its answer.
    pending: Mutex<HashMap<String, Waiter>>,
    stream: Mutex<Option<mpsc::Sender<Bytes>>>,
    pub(super) lifecycle: Lifecycle,
}

/// The key of a request id: its JSON text, so that `7` and `"7"` differ.
pub(super) fn id_key(id: &impl serde::Serialize) -> String {
    serde_json::to_string(id).unwrap_or_default()
}

/// A POST waiting for its answer.
struct Waiter {
    answer: oneshot::Sender<Vec<u8>>,
    /// Whether the transport answers it itself ([`Conversation::call_tool`]) rather than rmcp.
    direct: bool,
}

impl Router {
    /// Registers a POST waiting for the answer to `key`, which rmcp gives, or which the
    /// transport gives itself if `direct` (the receiver then only tells of a cancellation).
    /// `None` if a request with this id is being answered already.
    pub(super) fn expect(&self, key: String, direct: bool) -> Option<oneshot::Receiver<Vec<u8>>> {
        let mut pending = self.pending.lock().ok()?;
        if pending.contains_key(&key) {
            return None;
        }
        let (answer, receive) = oneshot::channel();
        pending.insert(key, Waiter { answer, direct });
        Some(receive)
    }

    /// Forgets a POST that no longer waits.
    pub(super) fn forget(&self, key: &str) -> bool {
        self.pending.lock().is_ok_and(|mut pending| pending.remove(key).is_some())
    }

    /// Cancels the request `key` if the transport is answering it itself: its receiver then
    /// closes. (rmcp cancels the requests it answers.)
    pub(super) fn cancel(&self, key: &str) -> bool {
        let Ok(mut pending) = self.pending.lock() else { return false };
        if !pending.get(key).is_some_and(|waiter| waiter.direct) {
            return false;
        }
        pending.remove(key).is_some()
    }

    fn waiting(&self) -> usize {
        self.pending.lock().map_or(0, |pending| pending.len())
    }

    /// Opens the GET stream. `None` if one is open already.
    pub(super) fn open_stream(&self) -> Option<mpsc::Receiver<Bytes>> {
        let mut stream = self.stream.lock().ok()?;
        if stream.as_ref().is_some_and(|open| !open.is_closed()) {
            return None;
        }
        let (send, receive) = mpsc::channel(16);
        *stream = Some(send);
        Some(receive)
    }

    fn close_stream(&self) {
        if let Ok(mut stream) = self.stream.lock() {
            *stream = None;
        }
    }

    fn deliver(&self, key: Option<String>, message: Vec<u8>) {
        if let Some(key) = key
            && let Some(waiting) = self.pending.lock().ok().and_then(|mut pending| pending.remove(&key))
        {
            let _ = waiting.answer.send(message);
            return;
        }
        let stream = self.stream.lock().ok().and_then(|stream| stream.clone());
        if let Some(stream) = stream {
            let mut event = Vec::with_capacity(message.len() + 16);
            event.extend_from_slice(b"event: message\ndata: ");
            event.extend_from_slice(&message);
            event.extend_from_slice(b"\n\n");
            // A stream that does not keep up loses the message rather than stall the session.
            let _ = stream.try_send(Bytes::from(event));
        }
    }
}

/// rmcp's side of one session (or of one stateless request).
struct Channel {
    incoming: mpsc::Receiver<Box<ClientMessage>>,
    outputs: Arc<Outputs>,
    router: Arc<Router>,
}

impl rmcp::transport::Transport<rmcp::RoleServer> for Channel {
    type Error = std::io::Error;

    fn send(
        &mut self,
        message: ServerMessage,
    ) -> impl std::future::Future<Output = Result<(), Self::Error>> + Send + 'static {
        let key = match &message {
            JsonRpcMessage::Response(response) => Some(id_key(&response.id)),
            JsonRpcMessage::Error(error) => error.id.as_ref().map(id_key),
            _ => None,
        };
        let encoded = encode(message, &self.outputs).map_err(std::io::Error::other);
        let router = Arc::clone(&self.router);
        async move {
            let bytes = encoded?.to_line();
            router.lifecycle.observe(&bytes);
            router.deliver(key, bytes);
            Ok(())
        }
    }

    async fn receive(&mut self) -> Option<ClientMessage> {
        // A channel's receive is cancel-safe, as rmcp's select loop needs.
        self.incoming.recv().await.map(|message| *message)
    }

    async fn close(&mut self) -> Result<(), Self::Error> {
        self.incoming.close();
        Ok(())
    }
}

/// One rmcp service and the way to it.
#[derive(Clone)]
pub(super) struct Conversation {
    /// Boxed: a channel holds its first block of slots from the start, and an idle session
    /// should cost little.
    forward: mpsc::Sender<Box<ClientMessage>>,
    pub(super) router: Arc<Router>,
    /// The handler rmcp runs, for the calls the transport answers itself.
    server: McpServer,
}

impl Conversation {
    /// Starts an rmcp service over `service` for one session.
    pub(super) fn start(service: Arc<Service>) -> Conversation {
        Conversation::with_router(service, Router::default())
    }

    /// Starts an rmcp service for one request of a stateless revision: there is no
    /// `initialize` to wait for (rmcp checks the request's own metadata).
    pub(super) fn start_stateless(service: Arc<Service>) -> Conversation {
        let router = Router { lifecycle: Lifecycle::opened(), ..Router::default() };
        Conversation::with_router(service, router)
    }

    fn with_router(service: Arc<Service>, router: Router) -> Conversation {
        use rmcp::ServiceExt;
        let outputs = Arc::new(Outputs::default().framing(service.frames_untrusted_data()));
        let router = Arc::new(router);
        let (forward, incoming) = mpsc::channel(64);
        let server = McpServer::for_http(service, Arc::clone(&outputs));
        let handler = server.clone();
        let channel = Channel { incoming, outputs, router: Arc::clone(&router) };
        tokio::spawn(async move {
            match server.serve(channel).await {
                Ok(running) => {
                    let _ = running.waiting().await;
                }
                Err(error) => tracing::debug!(%error, "an HTTP MCP session ended before it was initialized"),
            }
        });
        Conversation { forward, router, server: handler }
    }

    /// The protocol revision under which the transport answers a plain `tools/call` itself:
    /// once the session's `initialize` has settled on one.
    pub(super) fn answers_calls(&self) -> Option<&str> {
        self.router.lifecycle.negotiated()
    }

    /// Answers a `tools/call` of an initialized session on the POST's own task, as rmcp would
    /// answer it but without the hops through its service loop and the tasks it spawns: the
    /// same handler ([`McpServer::call`]), the result shaped for the negotiated `revision` as
    /// rmcp's request handler shapes it, and the one result encoder. Dropped before it is
    /// answered, the call is dropped, which stops its statement on the database.
    pub(super) async fn call_tool(
        &self,
        id: RequestId,
        params: CallToolRequestParams,
        caller: &Caller,
        revision: &str,
    ) -> Result<Vec<u8>, EncodeError> {
        let (session, origin) = self.server.caller_of(Some(caller), &id);
        let mut result = ServerResult::CallToolResult(self.server.call(params, session, origin).await);
        if revision >= rmcp::model::ProtocolVersion::V_2026_07_28.as_str() {
            result.fill_missing_cache_hints();
        } else {
            result.strip_result_type_for_legacy_peer();
            result.strip_non_object_output_for_legacy_peer();
        }
        let message: ServerMessage = JsonRpcMessage::response(result, id);
        Ok(encode(message, self.server.outputs())?.to_line())
    }

    /// Hands a checked message to rmcp, as `caller`. `false` if the service has ended.
    pub(super) async fn forward(&self, mut message: ClientMessage, caller: &Caller) -> bool {
        if let JsonRpcMessage::Request(request) = &mut message {
            request.request.extensions_mut().insert(caller.clone());
        }
        self.forward.send(Box::new(message)).await.is_ok()
    }
}

/// An MCP session: its conversation, and the principal it is bound to.
pub(super) struct Session {
    pub(super) id: Arc<str>,
    /// The identity and tenant the session was opened by; no other may use it.
    owner: (Box<str>, Box<str>),
    context: Mutex<Arc<SessionContext>>,
    pub(super) conversation: Conversation,
    last_used: Mutex<Instant>,
    /// Requests being answered: a session with any is not idle.
    busy: AtomicUsize,
}

impl Session {
    /// Whether `identity` of `tenant` is the principal the session was opened by.
    pub(super) fn is_owned_by(&self, identity: &str, tenant: &str) -> bool {
        *self.owner.0 == *identity && *self.owner.1 == *tenant
    }

    /// The caller of a request on this session by `requester` (its owner): the session's own
    /// context while the token stands for exactly what it was bound from; a context bound anew,
    /// and kept, once its scopes or claims have changed (a refreshed token, say).
    pub(super) fn caller(&self, requester: &Requester) -> Result<Caller, SessionError> {
        let mut held = self.context.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if !requester.is_bound_to(&held) {
            *held = requester.bind()?;
        }
        Ok(Caller { session: Arc::clone(&held), mcp_session: Some(Arc::clone(&self.id)) })
    }

    /// The caller of the request that opened the session: the context it was opened with.
    pub(super) fn caller_as_opened(&self) -> Caller {
        let held = self.context.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        Caller { session: Arc::clone(&held), mcp_session: Some(Arc::clone(&self.id)) }
    }

    /// Marks a request begun; the guard marks it ended.
    pub(super) fn begin(self: &Arc<Self>) -> Busy {
        self.busy.fetch_add(1, Ordering::AcqRel);
        self.touch();
        Busy(Arc::clone(self))
    }

    fn touch(&self) {
        if let Ok(mut last) = self.last_used.lock() {
            *last = Instant::now();
        }
    }

    fn is_idle(&self, idle: Duration) -> bool {
        self.busy.load(Ordering::Acquire) == 0
            && self.conversation.router.waiting() == 0
            && self.last_used.lock().is_ok_and(|last| last.elapsed() >= idle)
    }
}

/// A request being answered on a session.
pub(super) struct Busy(Arc<Session>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::AcqRel);
        self.0.touch();
    }
}

/// Why a session could not be opened.
pub(super) enum OpenError {
    Full,
    Entropy,
}

/// The open sessions, by id.
pub(super) struct Sessions {
    open: Mutex<HashMap<Arc<str>, Arc<Session>>>,
    max: usize,
    idle: Duration,
}

impl Sessions {
    pub(super) fn new(max: usize, idle: Duration) -> Sessions {
        Sessions { open: Mutex::new(HashMap::new()), max, idle }
    }

    /// Opens a session for `context`, with a fresh random id.
    pub(super) fn open(&self, service: Arc<Service>, context: Arc<SessionContext>) -> Result<Arc<Session>, OpenError> {
        let mut random = [0u8; 16];
        getrandom::fill(&mut random).map_err(|_| OpenError::Entropy)?;
        let id: Arc<str> = hex::encode(random).into();
        let mut open = self.open.lock().map_err(|_| OpenError::Full)?;
        if open.len() >= self.max {
            return Err(OpenError::Full);
        }
        let session = Arc::new(Session {
            id: Arc::clone(&id),
            owner: (context.identity().into(), context.tenant().into()),
            context: Mutex::new(context),
            conversation: Conversation::start(service),
            last_used: Mutex::new(Instant::now()),
            busy: AtomicUsize::new(0),
        });
        open.insert(id, Arc::clone(&session));
        Ok(session)
    }

    pub(super) fn get(&self, id: &str) -> Option<Arc<Session>> {
        self.open.lock().ok()?.get(id).cloned()
    }

    /// Closes a session: its rmcp service ends once the calls in flight are answered.
    pub(super) fn close(&self, id: &str) -> bool {
        let removed = self.open.lock().ok().and_then(|mut open| open.remove(id));
        if let Some(session) = &removed {
            session.conversation.router.close_stream();
        }
        removed.is_some()
    }

    /// Closes every session idle for longer than the limit.
    pub(super) fn expire_idle(&self) -> usize {
        let idle: Vec<Arc<str>> = match self.open.lock() {
            Ok(open) => open.values().filter(|session| session.is_idle(self.idle)).map(|s| Arc::clone(&s.id)).collect(),
            Err(_) => return 0,
        };
        for id in &idle {
            self.close(id);
        }
        idle.len()
    }

    /// Closes every session (at shutdown).
    pub(super) fn close_all(&self) {
        let ids: Vec<Arc<str>> = self.open.lock().map(|open| open.keys().cloned().collect()).unwrap_or_default();
        for id in ids {
            self.close(&id);
        }
    }

    pub(super) fn len(&self) -> usize {
        self.open.lock().map_or(0, |open| open.len())
    }

    pub(super) fn idle_limit(&self) -> Duration {
        self.idle
    }
}
