//! [`WebSocketClient`]: the client's opening handshake (RFC 6455 section
//! 4.1) over a TCP connection, then a [`WebSocketProtocol`].

use std::cell::{Cell, RefCell};
use std::error::Error;
use std::fmt;
use std::io;
use std::rc::{Rc, Weak};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use twill::defer::{Deferred, Resolver};
use twill::net::ToHostPort;
use twill::{
    Address, ClientFactory, Connector, DelayedCall, Event, Factory, Protocol, Reactor, Reason,
    Transport,
};

use super::config::WebSocketConfig;
use super::connection::WebSocketProtocol;
use super::handle::WebSocketHandler;
use super::handshake::{check_response, generate_key, HandshakeError, WEBSOCKET_VERSION};
use super::{Role, WebSocket};

/// The longest response head the client reads before giving up.
const MAX_RESPONSE_HEAD: usize = 16 * 1024;

/// The most header fields the client parses in the response head.
const MAX_RESPONSE_HEADERS: usize = 64;

/// How long the TCP connection may take, unless configured: 30 s.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// How long the server may take to answer the upgrade request, unless
/// configured: 10 s.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why [`WebSocketClient::connect`]'s Deferred failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum ClientError {
    /// The request could not be made from the client's settings (a path
    /// not starting with `/`, a line break in a header).
    InvalidRequest(String),
    /// The TCP connection failed: refused, unreachable, timed out.
    Connect(io::Error),
    /// The server answered with another status than 101: it refused the
    /// upgrade.
    Status(u16),
    /// The 101 response's headers do not complete the handshake (a wrong
    /// `Sec-WebSocket-Accept`, no `Upgrade: websocket`).
    Handshake(HandshakeError),
    /// The response is not HTTP, too long, or picked a subprotocol the
    /// client did not offer.
    BadResponse(String),
    /// No complete response within the handshake timeout.
    Timeout(Duration),
    /// The connection closed before the response was complete.
    Closed(String),
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::InvalidRequest(why) => write!(f, "invalid WebSocket request: {why}"),
            ClientError::Connect(err) => write!(f, "WebSocket connection failed: {err}"),
            ClientError::Status(status) => {
                write!(f, "the server refused the WebSocket upgrade with {status}")
            }
            ClientError::Handshake(err) => write!(f, "WebSocket handshake failed: {err}"),
            ClientError::BadResponse(why) => write!(f, "bad WebSocket handshake response: {why}"),
            ClientError::Timeout(after) => {
                write!(f, "no WebSocket handshake response within {after:?}")
            }
            ClientError::Closed(why) => {
                write!(
                    f,
                    "the connection closed during the WebSocket handshake: {why}"
                )
            }
        }
    }
}

impl Error for ClientError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            ClientError::Connect(err) => Some(err),
            ClientError::Handshake(err) => Some(err),
            _ => None,
        }
    }
}

/// Connects to a WebSocket server: Autobahn's `WebSocketClientFactory`
/// with `connectWS`, as a builder. [`connect`](Self::connect) opens the
/// TCP connection, sends the upgrade request (a fresh
/// `Sec-WebSocket-Key`), checks the `101 Switching Protocols` answer,
/// then runs a [`WebSocketProtocol`] calling the handler; its Deferred
/// fires with the [`WebSocket`] once the handler's `on_open` has run, or
/// fails with a [`ClientError`] (the handler is then never called).
/// Cancelling the Deferred before then gives the attempt up: it stops
/// connecting, or aborts the connection mid-handshake.
///
/// Bytes the server sent right behind its response go to the connection.
///
/// # Examples
///
/// ```no_run
/// use twill_protocols::websocket::{Message, WebSocket, WebSocketClient};
///
/// let reactor = twill::Reactor::new()?;
/// let print = |ws: &WebSocket, message: Message| {
///     println!("{message:?}");
///     let _ = ws.close(1000, "thanks");
/// };
/// WebSocketClient::new("example.com", "/chat")
///     .protocols(["chat.v1"])
///     .connect("127.0.0.1:8080", print)
///     .add_callback(|ws: WebSocket| {
///         ws.send_text("hello")?;
///         Ok(ws)
///     })
///     .add_errback(|failure| {
///         eprintln!("{failure}");
///         Err(failure)
///     });
/// reactor.run()?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct WebSocketClient {
    host: String,
    path: String,
    protocols: Vec<String>,
    headers: Vec<(String, String)>,
    config: WebSocketConfig,
    connect_timeout: Duration,
    handshake_timeout: Duration,
}

impl WebSocketClient {
    /// A client for the resource `path` (`/chat?room=1`) on `host` (the
    /// `Host` header: a name, with `:port` unless it is the default).
    pub fn new(host: impl Into<String>, path: impl Into<String>) -> WebSocketClient {
        WebSocketClient {
            host: host.into(),
            path: path.into(),
            protocols: Vec::new(),
            headers: Vec::new(),
            config: WebSocketConfig::default(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
        }
    }

    /// The subprotocols to offer (`Sec-WebSocket-Protocol`), preferred
    /// first; the server picks one or none
    /// ([`WebSocket::protocol`] says which).
    pub fn protocols<I>(mut self, protocols: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        self.protocols = protocols.into_iter().map(Into::into).collect();
        self
    }

    /// A header to add to the upgrade request (`Origin`, `Authorization`).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The connection's options (limits, timers).
    pub fn config(mut self, config: WebSocketConfig) -> Self {
        self.config = config;
        self
    }

    /// How long the TCP connection may take (default 30 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long the server may take to answer the upgrade request once
    /// connected (default 10 s).
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// Connects to `addr` on the current thread's reactor; see the type's
    /// docs.
    ///
    /// # Panics
    ///
    /// If no reactor exists on this thread.
    pub fn connect(
        self,
        addr: impl ToHostPort,
        handler: impl WebSocketHandler,
    ) -> Deferred<WebSocket> {
        self.connect_with(&twill::reactor(), addr, handler)
    }

    /// Connects to `addr` on `reactor`.
    pub fn connect_with(
        self,
        reactor: &Reactor,
        addr: impl ToHostPort,
        handler: impl WebSocketHandler,
    ) -> Deferred<WebSocket> {
        let key = generate_key();
        let request = match self.request(&key) {
            Ok(request) => request,
            Err(err) => return twill::defer::fail(err),
        };
        let canceller: Rc<RefCell<Weak<Attempt>>> = Rc::default();
        let cancel = canceller.clone();
        let connected = Deferred::with_canceller(move |_| {
            if let Some(attempt) = cancel.borrow().upgrade() {
                attempt.cancel();
            }
        });
        let attempt = Rc::new(Attempt {
            resolver: RefCell::new(Some(connected.resolver())),
            failure: RefCell::new(None),
            cancelled: Cell::new(false),
            connector: RefCell::new(None),
            transport: RefCell::new(None),
        });
        *canceller.borrow_mut() = Rc::downgrade(&attempt);
        let kept = attempt.clone();
        let factory = Connecting {
            handshake: Some(ClientHandshake {
                key,
                request,
                offered: self.protocols,
                config: self.config,
                handshake_timeout: self.handshake_timeout,
                handler: Some(Box::new(handler)),
                attempt: attempt.clone(),
                head: BytesMut::new(),
                timer: None,
                transport: None,
                upgraded: None,
            }),
            attempt,
        };
        match reactor.connect_tcp_with_timeout(addr, self.connect_timeout, factory) {
            Ok(connector) => {
                if kept.transport.borrow().is_none() && !kept.cancelled.get() {
                    *kept.connector.borrow_mut() = Some(connector);
                }
            }
            Err(err) => connected.errback(ClientError::Connect(err)),
        }
        connected
    }

    /// The upgrade request's bytes.
    fn request(&self, key: &str) -> Result<Bytes, ClientError> {
        let clean = |text: &str| !text.bytes().any(|b| b == b'\r' || b == b'\n');
        if !self.path.starts_with('/') || self.path.contains(' ') || !clean(&self.path) {
            return Err(ClientError::InvalidRequest(format!(
                "the path {:?} must start with / and hold no spaces or line breaks",
                self.path
            )));
        }
        let headers_clean = clean(&self.host)
            && self.headers.iter().all(|(name, value)| {
                clean(name) && clean(value) && !name.is_empty() && !name.contains(':')
            })
            && self.protocols.iter().all(|p| clean(p) && !p.contains(','));
        if !headers_clean {
            return Err(ClientError::InvalidRequest(
                "a header name or value holds a line break (or a name a colon)".into(),
            ));
        }
        let mut request = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: {WEBSOCKET_VERSION}\r\n",
            self.path, self.host
        );
        if !self.protocols.is_empty() {
            request.push_str(&format!(
                "Sec-WebSocket-Protocol: {}\r\n",
                self.protocols.join(", ")
            ));
        }
        for (name, value) in &self.headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        Ok(Bytes::from(request))
    }
}

/// Connects to `addr` on the current thread's reactor and opens the
/// WebSocket at `path` on `host`, with the default options: shorthand for
/// [`WebSocketClient::new(host, path).connect(addr, handler)`](WebSocketClient::connect).
///
/// # Panics
///
/// If no reactor exists on this thread.
pub fn connect(
    addr: impl ToHostPort,
    host: impl Into<String>,
    path: impl Into<String>,
    handler: impl WebSocketHandler,
) -> Deferred<WebSocket> {
    WebSocketClient::new(host, path).connect(addr, handler)
}

/// One connection attempt's outcome, shared by its factory and protocol.
struct Attempt {
    resolver: RefCell<Option<Resolver<WebSocket>>>,
    /// Why the handshake failed, when the client closed the connection
    /// because of it.
    failure: RefCell<Option<ClientError>>,
    /// The Deferred was cancelled: the attempt is given up.
    cancelled: Cell<bool>,
    /// What a cancellation stops: the connector while connecting, the
    /// connection during the handshake.
    connector: RefCell<Option<Connector>>,
    transport: RefCell<Option<Transport>>,
}

impl Attempt {
    fn cancel(&self) {
        self.cancelled.set(true);
        if let Some(connector) = self.connector.borrow_mut().take() {
            connector.stop_connecting();
        }
        if let Some(transport) = self.transport.borrow_mut().take() {
            transport.abort_connection();
        }
    }

    fn fail(&self, error: ClientError) {
        self.connector.borrow_mut().take();
        self.transport.borrow_mut().take();
        let resolver = self.resolver.borrow_mut().take();
        if let Some(resolver) = resolver {
            resolver.errback(error);
        }
    }
}

/// The attempt's factory: builds the one handshake protocol.
struct Connecting {
    handshake: Option<ClientHandshake>,
    attempt: Rc<Attempt>,
}

impl Factory for Connecting {
    type Protocol = ClientHandshake;

    fn build_protocol(&mut self, _peer: Address) -> Option<ClientHandshake> {
        self.handshake.take()
    }
}

impl ClientFactory for Connecting {
    fn client_connection_failed(&mut self, _connector: &Connector, reason: &io::Error) {
        self.attempt.fail(ClientError::Connect(io::Error::new(
            reason.kind(),
            reason.to_string(),
        )));
    }

    fn client_connection_lost(&mut self, _connector: &Connector, reason: &Reason) {
        let failure = self.attempt.failure.borrow_mut().take();
        self.attempt
            .fail(failure.unwrap_or_else(|| ClientError::Closed(reason.to_string())));
    }
}

/// Sends the upgrade request and reads the response head; then passes
/// every callback to the [`WebSocketProtocol`] it made.
struct ClientHandshake {
    key: String,
    request: Bytes,
    offered: Vec<String>,
    config: WebSocketConfig,
    handshake_timeout: Duration,
    handler: Option<Box<dyn WebSocketHandler>>,
    attempt: Rc<Attempt>,
    head: BytesMut,
    timer: Option<DelayedCall>,
    transport: Option<Transport>,
    upgraded: Option<WebSocketProtocol>,
}

impl ClientHandshake {
    /// Gives up: the connection closes and the Deferred fails with `error`.
    fn fail(&mut self, transport: &Transport, error: ClientError) {
        self.cancel_timer();
        self.attempt.failure.borrow_mut().get_or_insert(error);
        transport.abort_connection();
    }

    fn cancel_timer(&mut self) {
        if let Some(timer) = self.timer.take() {
            let _ = timer.cancel();
        }
    }

    /// Parses the response head, if complete: its length, and the
    /// subprotocol the server picked.
    fn parse_head(&self) -> Result<Option<(usize, Option<String>)>, ClientError> {
        let mut fields = [httparse::EMPTY_HEADER; MAX_RESPONSE_HEADERS];
        let mut response = httparse::Response::new(&mut fields);
        let length = match response.parse(&self.head) {
            Ok(httparse::Status::Complete(length)) => length,
            Ok(httparse::Status::Partial) if self.head.len() > MAX_RESPONSE_HEAD => {
                return Err(ClientError::BadResponse(format!(
                    "the response head is longer than {MAX_RESPONSE_HEAD} bytes"
                )))
            }
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(err) => return Err(ClientError::BadResponse(err.to_string())),
        };
        let status = response.code.unwrap_or_default();
        if status != 101 {
            return Err(ClientError::Status(status));
        }
        let headers: Vec<(&str, String)> = response
            .headers
            .iter()
            .map(|field| {
                (
                    field.name,
                    String::from_utf8_lossy(field.value).into_owned(),
                )
            })
            .collect();
        check_response(&headers, &self.key).map_err(ClientError::Handshake)?;
        let mut picked = headers
            .iter()
            .filter(|(name, _)| name.eq_ignore_ascii_case("sec-websocket-protocol"))
            .map(|(_, value)| value.trim().to_owned());
        let protocol = picked.next();
        if let Some(protocol) = &protocol {
            if picked.next().is_some() || !self.offered.iter().any(|p| p == protocol) {
                return Err(ClientError::BadResponse(format!(
                    "the server picked the subprotocol {protocol:?}, which was not offered"
                )));
            }
        }
        let extensions = headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("sec-websocket-extensions"));
        if extensions {
            return Err(ClientError::BadResponse(
                "the server named extensions, and none was offered".into(),
            ));
        }
        Ok(Some((length, protocol)))
    }
}

impl Protocol for ClientHandshake {
    fn connection_made(&mut self, transport: &Transport) {
        self.transport = Some(transport.clone());
        self.attempt.connector.borrow_mut().take();
        if self.attempt.cancelled.get() {
            transport.abort_connection();
            return;
        }
        *self.attempt.transport.borrow_mut() = Some(transport.clone());
        transport.write(self.request.clone());
        let closer = transport.clone();
        let attempt = Rc::downgrade(&self.attempt);
        let timeout = self.handshake_timeout;
        let timer = self.config.time().call_later(
            timeout,
            Box::new(move || {
                if let Some(attempt) = attempt.upgrade() {
                    attempt
                        .failure
                        .borrow_mut()
                        .get_or_insert(ClientError::Timeout(timeout));
                }
                closer.abort_connection();
            }),
        );
        self.timer = Some(timer);
    }

    fn data_received(&mut self, data: Bytes) {
        if let Some(upgraded) = &mut self.upgraded {
            return upgraded.data_received(data);
        }
        let Some(transport) = self.transport.clone() else {
            return;
        };
        if self.handler.is_none() {
            // The handshake failed: the connection is going.
            return;
        }
        self.head.extend_from_slice(&data);
        let (length, protocol) = match self.parse_head() {
            Ok(Some(parsed)) => parsed,
            Ok(None) => return,
            Err(err) => {
                self.handler = None;
                self.fail(&transport, err);
                return;
            }
        };
        self.cancel_timer();
        // Open: a cancellation can no longer reach the attempt.
        self.attempt.transport.borrow_mut().take();
        let rest = self.head.split_off(length);
        let handler = self.handler.take().expect("the handshake completes once");
        let mut upgraded =
            WebSocketProtocol::with_boxed_handler(Role::Client, self.config.clone(), handler)
                .with_subprotocol(protocol);
        upgraded.connection_made(&transport);
        let resolver = self.attempt.resolver.borrow_mut().take();
        if let (Some(resolver), Some(ws)) = (resolver, upgraded.websocket()) {
            resolver.callback(ws);
        }
        if !rest.is_empty() {
            upgraded.data_received(rest.freeze());
        }
        self.upgraded = Some(upgraded);
    }

    fn get_buffer(&mut self) -> Option<&mut BytesMut> {
        self.upgraded.as_mut()?.get_buffer()
    }

    fn buffer_updated(&mut self, appended: usize) {
        if let Some(upgraded) = &mut self.upgraded {
            upgraded.buffer_updated(appended);
        }
    }

    fn eof_received(&mut self) -> bool {
        match &mut self.upgraded {
            Some(upgraded) => upgraded.eof_received(),
            None => false,
        }
    }

    fn connection_lost(&mut self, reason: &Reason) {
        self.cancel_timer();
        self.attempt.transport.borrow_mut().take();
        if let Some(upgraded) = &mut self.upgraded {
            upgraded.connection_lost(reason);
        }
    }

    fn pause_writing(&mut self) {
        if let Some(upgraded) = &mut self.upgraded {
            upgraded.pause_writing();
        }
    }

    fn resume_writing(&mut self) {
        if let Some(upgraded) = &mut self.upgraded {
            upgraded.resume_writing();
        }
    }

    fn write_complete(&mut self) {
        if let Some(upgraded) = &mut self.upgraded {
            upgraded.write_complete();
        }
    }

    fn event_received(&mut self, event: Event) {
        match &mut self.upgraded {
            Some(upgraded) => upgraded.event_received(event),
            None => log::debug!("WebSocket handshake: unhandled event {event:?}"),
        }
    }
}
