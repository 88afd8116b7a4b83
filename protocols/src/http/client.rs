//! [`HttpClient`]: requests over a pool of keep-alive connections, each
//! answered through a `Deferred` (Twisted's `Agent` with its
//! `HTTPConnectionPool`).

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::error::Error;
use std::fmt;
use std::io;
use std::rc::{Rc, Weak};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{CONNECTION, HOST, LOCATION};
use http::response::Parts;
use http::uri::{Scheme, Uri};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Version};
use twill::defer::{Deferred, Resolver};
use twill::{
    Address, ClientFactory, Connector, DelayedCall, Factory, Protocol, ReactorTime, Reason,
    Transport,
};

use super::aggregator::Trailers;
use super::error::HttpError;
use super::request_encoder::{HttpRequestEncoder, OutgoingRequest};
use super::response_decoder::{HttpResponseDecoder, IncomingResponse, ResponseBodyKind};
use crate::codec::{Decoder, Encoder};
use crate::handler::output::time_or_reactor;

/// The default and hard maximum of idle connections kept per host.
const DEFAULT_MAX_IDLE: usize = 8;
const HARD_MAX_IDLE: usize = 1024;
/// The default and hard maximum of open connections per host.
const DEFAULT_MAX_CONNECTIONS: usize = 8;
const HARD_MAX_CONNECTIONS: usize = 1024;
/// The default and hard maximum of requests waiting for a connection, per
/// host.
const DEFAULT_MAX_QUEUED: usize = 1024;
const HARD_MAX_QUEUED: usize = 1 << 20;
/// The default largest response body: 16 MiB.
const DEFAULT_MAX_BODY: u64 = 16 * 1024 * 1024;
/// The largest response body the client can be told to gather: 1 GiB.
const HARD_MAX_BODY: u64 = 1 << 30;
/// The most redirects a chain may be allowed.
const HARD_MAX_REDIRECTS: usize = 64;
/// The longest any of the timeouts may be set to: a day.
const HARD_MAX_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// Why a request of an [`HttpClient`] failed: the error inside the
/// [`Failure`](twill::defer::Failure) its `Deferred` fails with.
#[derive(Debug)]
#[non_exhaustive]
pub enum HttpClientError {
    /// The request cannot be sent: its URI is not absolute, or it would
    /// not encode (a CR, LF or NUL in a header value, say).
    InvalidRequest(String),
    /// The URI's scheme is not `http` (`https` included: this client
    /// speaks plain HTTP only).
    UnsupportedScheme(String),
    /// The connection could not be made (refused, unreachable, the name
    /// did not resolve).
    Connect(io::Error),
    /// The connection was not made within the connect timeout.
    ConnectTimeout,
    /// The server sent nothing for the response timeout while a response
    /// was awaited; the connection was closed.
    ResponseTimeout(Duration),
    /// The response broke HTTP/1.1's rules (the decoder's error); the
    /// connection was closed.
    Malformed(HttpError),
    /// The response body passed the client's limit; the connection was
    /// closed.
    BodyTooLarge {
        /// The limit, in bytes.
        limit: u64,
    },
    /// The connection ended before the response was complete.
    ConnectionLost {
        /// Whether any of the response had arrived.
        response_started: bool,
    },
    /// The host already had the most connections open and the most
    /// requests waiting for one.
    QueueFull {
        /// The limit of waiting requests.
        limit: usize,
    },
    /// Redirects were followed more times than allowed.
    TooManyRedirects {
        /// The limit.
        limit: usize,
    },
}

impl fmt::Display for HttpClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpClientError::InvalidRequest(why) => write!(f, "invalid request: {why}"),
            HttpClientError::UnsupportedScheme(scheme) => {
                write!(f, "unsupported scheme {scheme:?} (only http)")
            }
            HttpClientError::Connect(err) => write!(f, "could not connect: {err}"),
            HttpClientError::ConnectTimeout => f.write_str("connect timed out"),
            HttpClientError::ResponseTimeout(after) => {
                write!(f, "no response from the server within {after:?}")
            }
            HttpClientError::Malformed(err) => write!(f, "malformed response: {err}"),
            HttpClientError::BodyTooLarge { limit } => {
                write!(f, "response body over the limit of {limit} bytes")
            }
            HttpClientError::ConnectionLost { response_started } => {
                if *response_started {
                    f.write_str("connection lost in the middle of the response")
                } else {
                    f.write_str("connection lost before the response")
                }
            }
            HttpClientError::QueueFull { limit } => {
                write!(
                    f,
                    "{limit} requests already wait for a connection to this host"
                )
            }
            HttpClientError::TooManyRedirects { limit } => {
                write!(f, "more than {limit} redirects")
            }
        }
    }
}

impl Error for HttpClientError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            HttpClientError::Connect(err) => Some(err),
            HttpClientError::Malformed(err) => Some(err),
            _ => None,
        }
    }
}

/// An HTTP/1.1 client for the reactor thread: whole requests in, whole
/// responses out through a [`Deferred`], over a pool of keep-alive
/// connections (Twisted's `Agent` and `HTTPConnectionPool`, Netty's
/// `HttpClientCodec` underneath).
///
/// Clones share the pool. Configure it with the builder methods before
/// cloning (a clone made earlier keeps the configuration and pool it had).
///
/// # Connections
///
/// Each connection carries one request at a time (no pipelining). A
/// request takes an idle connection to its host (`host:port`) if there is
/// one, else opens one if the host has fewer than
/// [`max_connections_per_host`](Self::max_connections_per_host), else
/// waits in the host's queue for a connection to come free. The queue
/// holds at most [`max_queued_per_host`](Self::max_queued_per_host)
/// requests; past it a request fails at once with
/// [`HttpClientError::QueueFull`] (the memory a slow server makes the
/// client hold stays bounded).
///
/// After a complete response, the connection goes back to the pool
/// unless the response said `Connection: close`, was HTTP/1.0 without
/// `Connection: keep-alive`, or had its body ended by the close; it waits
/// there up to [`idle_timeout`](Self::idle_timeout), and at most
/// [`max_idle_per_host`](Self::max_idle_per_host) wait per host. A pooled
/// connection the server closes leaves the pool. A request of an
/// idempotent method (`GET`, `HEAD`, `PUT`, `DELETE`, `OPTIONS`, `TRACE`)
/// whose reused connection closes before any byte of the response is sent
/// again, once, on a new connection (the server may have closed it while
/// the request was on its way).
///
/// # Limits and defaults
///
/// | setting | default | hard maximum |
/// |---|---|---|
/// | idle connections per host | 8 | 1024 |
/// | open connections per host | 8 | 1024 |
/// | requests waiting per host | 1024 | 2^20 |
/// | idle timeout | 60 s | 1 day |
/// | response timeout (no byte from the server while one is awaited) | 30 s | 1 day |
/// | connect timeout | 10 s | 1 day |
/// | response body | 16 MiB | 1 GiB |
/// | redirects followed | 0 (off) | 64 |
///
/// # Errors
///
/// The `Deferred` fails with an [`HttpClientError`]; a failing connection
/// is closed, never reused. [`Deferred::cancel`] on a pending request
/// closes its connection (or takes it out of the queue), and the
/// `Deferred` fails with [`CancelledError`](twill::defer::CancelledError).
///
/// # Examples
///
/// ```
/// use bytes::Bytes;
/// use twill::{Protocol, Reactor, Transport};
/// use twill_protocols::http::HttpClient;
///
/// // A server that answers every connection with one response.
/// struct Hello(Option<Transport>);
/// impl Protocol for Hello {
///     fn connection_made(&mut self, transport: &Transport) {
///         self.0 = Some(transport.clone());
///     }
///     fn data_received(&mut self, data: Bytes) {
///         if data.windows(4).any(|w| w == b"\r\n\r\n") {
///             self.0.as_ref().unwrap().write("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello");
///         }
///     }
/// }
///
/// let reactor = Reactor::new()?;
/// let port = reactor.listen_tcp("127.0.0.1:0", |_| Hello(None))?;
/// let client = HttpClient::new();
/// let response = client.get(&format!("http://{}/greeting", port.host()));
/// response.add_both(|result| {
///     twill::stop();
///     result
/// });
/// reactor.run()?;
/// let response = response.result().unwrap().unwrap();
/// assert_eq!(response.status(), 200);
/// assert_eq!(&response.body()[..], b"hello");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct HttpClient {
    shared: Rc<Shared>,
}

impl fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpClient")
            .field("config", &self.shared.config)
            .field("hosts", &self.shared.hosts.borrow().len())
            .finish()
    }
}

#[derive(Clone)]
struct Config {
    max_idle_per_host: usize,
    max_connections_per_host: usize,
    max_queued_per_host: usize,
    idle_timeout: Duration,
    response_timeout: Duration,
    connect_timeout: Duration,
    max_response_body: u64,
    max_redirects: usize,
    clock: Option<Rc<dyn ReactorTime>>,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("max_idle_per_host", &self.max_idle_per_host)
            .field("max_connections_per_host", &self.max_connections_per_host)
            .field("max_queued_per_host", &self.max_queued_per_host)
            .field("idle_timeout", &self.idle_timeout)
            .field("response_timeout", &self.response_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("max_response_body", &self.max_response_body)
            .field("max_redirects", &self.max_redirects)
            .finish_non_exhaustive()
    }
}

struct Shared {
    config: Config,
    hosts: RefCell<HashMap<HostKey, Host>>,
}

type HostKey = (String, u16);

#[derive(Default)]
struct Host {
    idle: Vec<Rc<Conn>>,
    /// Connections connecting, busy or idle.
    open: usize,
    waiting: VecDeque<Exchange>,
}

/// What cancelling a request reaches, across its retries and redirects.
#[derive(Default)]
struct Ticket {
    cancelled: Cell<bool>,
    transport: RefCell<Option<Transport>>,
    connector: RefCell<Option<Connector>>,
}

impl Ticket {
    fn cancel(&self) {
        self.cancelled.set(true);
        if let Some(transport) = self.transport.borrow_mut().take() {
            transport.abort_connection();
        }
        if let Some(connector) = self.connector.borrow_mut().take() {
            connector.stop_connecting();
        }
    }
}

/// One request on its way, with where its answer goes.
struct Exchange {
    /// A request keeps its client's pool alive until it is answered, even
    /// if every handle was dropped (in a callback, say); idle connections
    /// do not.
    client: Rc<Shared>,
    request: Request<Bytes>,
    key: HostKey,
    resolver: Resolver<Response<Bytes>>,
    ticket: Rc<Ticket>,
    retried: bool,
    redirects_left: usize,
}

impl Exchange {
    fn fail(self, error: HttpClientError) {
        // A cancelled request fails with the cancellation, not with the
        // closing of its connection that the cancellation caused.
        if !self.ticket.cancelled.get() {
            let _ = self.resolver.try_errback(error);
        }
    }
}

/// The request being answered on a connection.
struct InFlight {
    exchange: Exchange,
    written: bool,
    response_started: bool,
    head: Option<Parts>,
    body: BytesMut,
    timer: Option<DelayedCall>,
}

/// One connection of the pool.
struct Conn {
    client: Weak<Shared>,
    key: HostKey,
    transport: RefCell<Option<Transport>>,
    decoder: RefCell<HttpResponseDecoder>,
    input: RefCell<BytesMut>,
    current: RefCell<Option<InFlight>>,
    /// It has answered a request already: a close before any response
    /// byte may be the server's idle close racing the request.
    reused: Cell<bool>,
    closed: Cell<bool>,
    idle_timer: RefCell<Option<DelayedCall>>,
}

impl Default for HttpClient {
    fn default() -> Self {
        HttpClient::new()
    }
}

impl HttpClient {
    /// A client with the defaults in the [table](Self#limits-and-defaults).
    pub fn new() -> Self {
        HttpClient {
            shared: Rc::new(Shared {
                config: Config {
                    max_idle_per_host: DEFAULT_MAX_IDLE,
                    max_connections_per_host: DEFAULT_MAX_CONNECTIONS,
                    max_queued_per_host: DEFAULT_MAX_QUEUED,
                    idle_timeout: Duration::from_secs(60),
                    response_timeout: Duration::from_secs(30),
                    connect_timeout: Duration::from_secs(10),
                    max_response_body: DEFAULT_MAX_BODY,
                    max_redirects: 0,
                    clock: None,
                },
                hosts: RefCell::new(HashMap::new()),
            }),
        }
    }

    fn configure(mut self, change: impl FnOnce(&mut Config)) -> Self {
        let mut config = self.shared.config.clone();
        change(&mut config);
        match Rc::get_mut(&mut self.shared) {
            Some(shared) => shared.config = config,
            None => {
                self.shared = Rc::new(Shared {
                    config,
                    hosts: RefCell::new(HashMap::new()),
                });
            }
        }
        self
    }

    /// The most idle connections kept open per host (0 to 1024; 0 turns
    /// keep-alive off).
    pub fn max_idle_per_host(self, max: usize) -> Self {
        self.configure(|c| c.max_idle_per_host = max.min(HARD_MAX_IDLE))
    }

    /// The most connections open to one host at once (1 to 1024).
    pub fn max_connections_per_host(self, max: usize) -> Self {
        self.configure(|c| c.max_connections_per_host = max.clamp(1, HARD_MAX_CONNECTIONS))
    }

    /// The most requests waiting for a connection to one host (0 to
    /// 2^20); past it requests fail with [`HttpClientError::QueueFull`].
    pub fn max_queued_per_host(self, max: usize) -> Self {
        self.configure(|c| c.max_queued_per_host = max.min(HARD_MAX_QUEUED))
    }

    /// How long an idle pooled connection is kept (at most a day).
    pub fn idle_timeout(self, timeout: Duration) -> Self {
        self.configure(|c| c.idle_timeout = timeout.min(HARD_MAX_TIMEOUT))
    }

    /// How long the server may stay silent while a response is awaited
    /// (for its head, and between reads of its body; at least 1 ms, at
    /// most a day).
    pub fn response_timeout(self, timeout: Duration) -> Self {
        self.configure(|c| {
            c.response_timeout = timeout.clamp(Duration::from_millis(1), HARD_MAX_TIMEOUT);
        })
    }

    /// How long a connection may take to be made (at least 1 ms, at most a
    /// day). It runs on the reactor's own timers, not the
    /// [`clock`](Self::clock).
    pub fn connect_timeout(self, timeout: Duration) -> Self {
        self.configure(|c| {
            c.connect_timeout = timeout.clamp(Duration::from_millis(1), HARD_MAX_TIMEOUT);
        })
    }

    /// The largest response body gathered (at most 1 GiB); a larger one
    /// fails with [`HttpClientError::BodyTooLarge`] and its connection is
    /// closed.
    pub fn max_response_body(self, max: u64) -> Self {
        self.configure(|c| c.max_response_body = max.min(HARD_MAX_BODY))
    }

    /// Follows up to `max` redirects (`301`, `302`, `303`, `307`, `308`
    /// with a `Location`; at most 64) to `http` URIs: `303`, and `301` or
    /// `302` after a `POST`, become a `GET` without a body; `307` and `308`
    /// repeat the request. A longer chain fails with
    /// [`HttpClientError::TooManyRedirects`]. Off (0) by default: the
    /// redirect is the response.
    pub fn follow_redirects(self, max: usize) -> Self {
        self.configure(|c| c.max_redirects = max.min(HARD_MAX_REDIRECTS))
    }

    /// The clock of the response and idle timeouts: the reactor by
    /// default, a [`Clock`](twill::task::Clock) in tests.
    pub fn clock(self, clock: Rc<dyn ReactorTime>) -> Self {
        self.configure(|c| c.clock = Some(clock))
    }

    /// How many connections to `host` and `port` are idle in the pool.
    pub fn idle_connections(&self, host: &str, port: u16) -> usize {
        self.shared
            .hosts
            .borrow()
            .get(&(host.to_owned(), port))
            .map_or(0, |h| h.idle.len())
    }

    /// A `GET` of `uri` (`http://host[:port]/path`).
    pub fn get(&self, uri: &str) -> Deferred<Response<Bytes>> {
        match Request::get(uri).body(Bytes::new()) {
            Ok(request) => self.request(request),
            Err(err) => failed(HttpClientError::InvalidRequest(err.to_string())),
        }
    }

    /// A `POST` of `body` to `uri`.
    pub fn post(&self, uri: &str, body: impl Into<Bytes>) -> Deferred<Response<Bytes>> {
        match Request::post(uri).body(body.into()) {
            Ok(request) => self.request(request),
            Err(err) => failed(HttpClientError::InvalidRequest(err.to_string())),
        }
    }

    /// Sends `request` (its URI absolute: `http://host[:port]/path?query`)
    /// and fires with the whole response. Adds `Host` (unless the request
    /// has one) and the framing of the body; nothing else (no
    /// `User-Agent`). The request goes out as HTTP/1.1.
    ///
    /// Must be called on the thread of a running (or about to run)
    /// reactor, which makes the connections.
    pub fn request(&self, request: Request<Bytes>) -> Deferred<Response<Bytes>> {
        let (request, key) = match prepare(request) {
            Ok(prepared) => prepared,
            Err(err) => return failed(err),
        };
        let ticket = Rc::new(Ticket::default());
        let cancel = ticket.clone();
        let deferred = Deferred::with_canceller(move |_| cancel.cancel());
        let exchange = Exchange {
            client: self.shared.clone(),
            request,
            key,
            resolver: deferred.resolver(),
            ticket,
            retried: false,
            redirects_left: self.shared.config.max_redirects,
        };
        self.shared.dispatch(exchange);
        deferred
    }
}

fn failed(error: HttpClientError) -> Deferred<Response<Bytes>> {
    let deferred = Deferred::new();
    deferred.errback(error);
    deferred
}

/// Checks the URI, adds `Host`, and checks that the request encodes.
fn prepare(mut request: Request<Bytes>) -> Result<(Request<Bytes>, HostKey), HttpClientError> {
    let uri = request.uri();
    match uri.scheme() {
        Some(scheme) if *scheme == Scheme::HTTP => {}
        Some(scheme) => return Err(HttpClientError::UnsupportedScheme(scheme.to_string())),
        None => {
            return Err(HttpClientError::InvalidRequest(format!(
                "{uri} is not an absolute http URI"
            )))
        }
    }
    let Some(authority) = uri.authority() else {
        return Err(HttpClientError::InvalidRequest(format!(
            "{uri} has no host"
        )));
    };
    if authority.as_str().contains('@') {
        return Err(HttpClientError::InvalidRequest(
            "user information in the URI".to_owned(),
        ));
    }
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    if host.is_empty() {
        return Err(HttpClientError::InvalidRequest(format!(
            "{uri} has no host"
        )));
    }
    let key = (host.to_owned(), authority.port_u16().unwrap_or(80));
    if !request.headers().contains_key(HOST) {
        let value = HeaderValue::from_str(authority.as_str())
            .map_err(|err| HttpClientError::InvalidRequest(err.to_string()))?;
        request.headers_mut().insert(HOST, value);
    }
    *request.version_mut() = Version::HTTP_11;
    encode(&request).map_err(|err| HttpClientError::InvalidRequest(err.to_string()))?;
    Ok((request, key))
}

/// The request as it goes on the wire: the head, then the body as it is
/// (not copied).
fn encode(request: &Request<Bytes>) -> Result<Vec<Bytes>, HttpError> {
    let mut head = BytesMut::new();
    let tail = HttpRequestEncoder::new()
        .encode_parts(OutgoingRequest::Full(copy_request(request)), &mut head)
        .map_err(|err| {
            HttpError::from_encode_error(&err)
                .cloned()
                .unwrap_or_else(|| {
                    HttpError::new(StatusCode::INTERNAL_SERVER_ERROR, err.to_string())
                })
        })?;
    Ok([Some(head.freeze()), tail].into_iter().flatten().collect())
}

fn copy_request(request: &Request<Bytes>) -> Request<Bytes> {
    let mut copy = Request::new(request.body().clone());
    *copy.method_mut() = request.method().clone();
    *copy.uri_mut() = request.uri().clone();
    *copy.version_mut() = request.version();
    *copy.headers_mut() = request.headers().clone();
    copy
}

fn idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS | Method::TRACE
    )
}

fn has_token(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Whether the connection may carry another request after this response.
fn response_keeps_alive(parts: &Parts) -> bool {
    if has_token(&parts.headers, "close") {
        return false;
    }
    match parts.version {
        Version::HTTP_11 => true,
        Version::HTTP_10 => has_token(&parts.headers, "keep-alive"),
        _ => false,
    }
}

impl Shared {
    fn time(&self) -> Rc<dyn ReactorTime> {
        time_or_reactor(self.config.clock.as_ref())
    }

    /// Sends `exchange` on an idle connection, a new one, or queues it.
    fn dispatch(self: &Rc<Self>, exchange: Exchange) {
        if exchange.ticket.cancelled.get() {
            return;
        }
        let idle = {
            let mut hosts = self.hosts.borrow_mut();
            let host = hosts.entry(exchange.key.clone()).or_default();
            let mut found = None;
            while let Some(conn) = host.idle.pop() {
                let closing = conn
                    .transport
                    .borrow()
                    .as_ref()
                    .is_none_or(Transport::is_closing);
                if !conn.closed.get() && !closing {
                    found = Some(conn);
                    break;
                }
            }
            match found {
                Some(conn) => Some(conn),
                None if host.open < self.config.max_connections_per_host => {
                    host.open += 1;
                    None
                }
                None => {
                    host.waiting.retain(|e| !e.ticket.cancelled.get());
                    if host.waiting.len() >= self.config.max_queued_per_host {
                        drop(hosts);
                        exchange.fail(HttpClientError::QueueFull {
                            limit: self.config.max_queued_per_host,
                        });
                    } else {
                        host.waiting.push_back(exchange);
                    }
                    return;
                }
            }
        };
        match idle {
            Some(conn) => conn.start(exchange),
            None => self.connect(exchange),
        }
    }

    /// Opens a connection for `exchange`; the host's `open` count already
    /// includes it.
    fn connect(self: &Rc<Self>, exchange: Exchange) {
        let key = exchange.key.clone();
        let ticket = exchange.ticket.clone();
        let conn = Rc::new(Conn {
            client: Rc::downgrade(self),
            key: key.clone(),
            transport: RefCell::new(None),
            decoder: RefCell::new(
                HttpResponseDecoder::new().max_body(Some(self.config.max_response_body)),
            ),
            input: RefCell::new(BytesMut::new()),
            current: RefCell::new(Some(InFlight::new(exchange))),
            reused: Cell::new(false),
            closed: Cell::new(false),
            idle_timer: RefCell::new(None),
        });
        let factory = ConnectFactory {
            conn: Some(conn.clone()),
        };
        let reactor = twill::reactor();
        match reactor.connect_tcp_with_timeout(
            (key.0.as_str(), key.1),
            self.config.connect_timeout,
            factory,
        ) {
            Ok(connector) => {
                if conn.current.borrow().is_some() && !conn.closed.get() {
                    *ticket.connector.borrow_mut() = Some(connector);
                }
            }
            Err(err) => conn.connect_failed(&err),
        }
    }

    /// A connection ended or failed to open: one fewer open, and a waiting
    /// request may have its turn.
    fn connection_gone(self: &Rc<Self>, conn: &Rc<Conn>) {
        let next = {
            let mut hosts = self.hosts.borrow_mut();
            let Some(host) = hosts.get_mut(&conn.key) else {
                return;
            };
            host.idle.retain(|c| !Rc::ptr_eq(c, conn));
            host.open = host.open.saturating_sub(1);
            host.waiting.retain(|e| !e.ticket.cancelled.get());
            let next = host.waiting.pop_front();
            if next.is_some() {
                host.open += 1;
            } else if host.open == 0 {
                hosts.remove(&conn.key);
            }
            next
        };
        if let Some(exchange) = next {
            self.connect(exchange);
        }
    }

    /// A connection finished a response and may carry another: the next
    /// waiting request gets it, else it waits in the pool.
    fn release(self: &Rc<Self>, conn: &Rc<Conn>) {
        enum Then {
            Start(Box<Exchange>),
            Pool,
            Close,
        }
        let then = {
            let mut hosts = self.hosts.borrow_mut();
            let host = hosts.entry(conn.key.clone()).or_default();
            host.waiting.retain(|e| !e.ticket.cancelled.get());
            match host.waiting.pop_front() {
                Some(exchange) => Then::Start(Box::new(exchange)),
                None if host.idle.len() < self.config.max_idle_per_host => {
                    host.idle.push(conn.clone());
                    Then::Pool
                }
                None => Then::Close,
            }
        };
        match then {
            Then::Start(exchange) => conn.start(*exchange),
            Then::Pool => {
                let weak = Rc::downgrade(conn);
                let timer = self.time().call_later(
                    self.config.idle_timeout,
                    Box::new(move || {
                        if let Some(conn) = weak.upgrade() {
                            conn.close();
                        }
                    }),
                );
                *conn.idle_timer.borrow_mut() = Some(timer);
            }
            Then::Close => conn.close(),
        }
    }

    /// The response to a request that asked for a redirect, when they are
    /// followed: the next request, or the error of a chain too long.
    fn redirect(
        &self,
        exchange: &Exchange,
        response: &Response<Bytes>,
    ) -> Option<Result<Request<Bytes>, HttpClientError>> {
        let status = response.status();
        let is_redirect = matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308);
        if self.config.max_redirects == 0 || !is_redirect {
            return None;
        }
        let location = response.headers().get(LOCATION)?.to_str().ok()?;
        if exchange.redirects_left == 0 {
            return Some(Err(HttpClientError::TooManyRedirects {
                limit: self.config.max_redirects,
            }));
        }
        let target = resolve_location(exchange.request.uri(), location)?;
        if target.scheme() != Some(&Scheme::HTTP) {
            return None;
        }
        let old = &exchange.request;
        let to_get = status == StatusCode::SEE_OTHER
            || (matches!(status.as_u16(), 301 | 302) && old.method() == Method::POST);
        let mut next = copy_request(old);
        *next.uri_mut() = target;
        next.headers_mut().remove(HOST);
        if to_get {
            *next.method_mut() = if old.method() == Method::HEAD {
                Method::HEAD
            } else {
                Method::GET
            };
            *next.body_mut() = Bytes::new();
            next.headers_mut().remove(http::header::CONTENT_TYPE);
        }
        Some(prepare(next).map(|(request, _)| request))
    }
}

/// `location` against `base`: an absolute URI as it is, an absolute path
/// on `base`'s host. Other relative forms are not followed.
fn resolve_location(base: &Uri, location: &str) -> Option<Uri> {
    if location.starts_with('/') && !location.starts_with("//") {
        let mut parts = base.clone().into_parts();
        parts.path_and_query = Some(location.parse().ok()?);
        return Uri::from_parts(parts).ok();
    }
    let uri: Uri = location.parse().ok()?;
    uri.scheme().is_some().then_some(uri)
}

impl InFlight {
    fn new(exchange: Exchange) -> Self {
        InFlight {
            exchange,
            written: false,
            response_started: false,
            head: None,
            body: BytesMut::new(),
            timer: None,
        }
    }
}

/// What a connection does once its borrows are let go.
enum Outcome {
    Done(Exchange, Response<Bytes>, bool),
    Failed(Exchange, HttpClientError),
    Retry(Exchange),
}

impl Conn {
    fn shared(&self) -> Option<Rc<Shared>> {
        let answering = self
            .current
            .borrow()
            .as_ref()
            .map(|f| f.exchange.client.clone());
        answering.or_else(|| self.client.upgrade())
    }

    /// Writes `exchange`'s request on this (connected) connection.
    fn start(self: &Rc<Self>, exchange: Exchange) {
        if let Some(timer) = self.idle_timer.borrow_mut().take() {
            let _ = timer.cancel();
        }
        *self.current.borrow_mut() = Some(InFlight::new(exchange));
        self.write_current();
    }

    fn write_current(self: &Rc<Self>) {
        let Some(transport) = self.transport.borrow().clone() else {
            return;
        };
        let encoded = {
            let mut current = self.current.borrow_mut();
            let Some(in_flight) = current.as_mut() else {
                return;
            };
            in_flight.written = true;
            *in_flight.exchange.ticket.transport.borrow_mut() = Some(transport.clone());
            in_flight.exchange.ticket.connector.borrow_mut().take();
            let method = in_flight.exchange.request.method().clone();
            let _ = self.decoder.borrow_mut().expect(method);
            encode(&in_flight.exchange.request)
        };
        match encoded {
            Ok(pieces) => {
                transport.write_sequence(pieces);
                self.arm_response_timer();
            }
            Err(err) => {
                // Checked when the request was made; a redirect's request
                // was checked too, so this is not expected.
                let taken = self.current.borrow_mut().take();
                if let Some(in_flight) = taken {
                    in_flight
                        .exchange
                        .fail(HttpClientError::InvalidRequest(err.to_string()));
                }
                self.close();
            }
        }
    }

    fn arm_response_timer(self: &Rc<Self>) {
        let Some(shared) = self.shared() else { return };
        let timeout = shared.config.response_timeout;
        let mut current = self.current.borrow_mut();
        let Some(in_flight) = current.as_mut() else {
            return;
        };
        if let Some(timer) = &in_flight.timer {
            if timer.reset(timeout).is_ok() {
                return;
            }
        }
        let weak = Rc::downgrade(self);
        in_flight.timer = Some(shared.time().call_later(
            timeout,
            Box::new(move || {
                if let Some(conn) = weak.upgrade() {
                    conn.response_timed_out(timeout);
                }
            }),
        ));
    }

    fn response_timed_out(self: &Rc<Self>, after: Duration) {
        let taken = self.current.borrow_mut().take();
        if let Some(in_flight) = taken {
            self.abort();
            in_flight
                .exchange
                .fail(HttpClientError::ResponseTimeout(after));
        }
    }

    fn close(&self) {
        self.closed.set(true);
        if let Some(timer) = self.idle_timer.borrow_mut().take() {
            let _ = timer.cancel();
        }
        if let Some(transport) = self.transport.borrow().as_ref() {
            transport.lose_connection();
        }
    }

    fn abort(&self) {
        self.closed.set(true);
        if let Some(transport) = self.transport.borrow().as_ref() {
            transport.abort_connection();
        }
    }

    fn connection_made(self: &Rc<Self>, transport: &Transport) {
        *self.transport.borrow_mut() = Some(transport.clone());
        let cancelled = self
            .current
            .borrow()
            .as_ref()
            .is_some_and(|f| f.exchange.ticket.cancelled.get());
        if cancelled {
            self.current.borrow_mut().take();
            self.abort();
            return;
        }
        self.write_current();
    }

    fn connect_failed(self: &Rc<Self>, err: &io::Error) {
        self.closed.set(true);
        let shared = self.shared();
        let taken = self.current.borrow_mut().take();
        if let Some(shared) = shared {
            shared.connection_gone(self);
        }
        if let Some(in_flight) = taken {
            in_flight.exchange.ticket.connector.borrow_mut().take();
            let error = match err.kind() {
                io::ErrorKind::TimedOut => HttpClientError::ConnectTimeout,
                _ => HttpClientError::Connect(io::Error::new(err.kind(), err.to_string())),
            };
            in_flight.exchange.fail(error);
        }
    }

    fn data_received(self: &Rc<Self>, data: &[u8]) {
        if self.current.borrow().is_none() {
            // Bytes with no request outstanding: the connection's framing
            // cannot be trusted any more.
            self.abort();
            return;
        }
        self.input.borrow_mut().extend_from_slice(data);
        if let Some(in_flight) = self.current.borrow_mut().as_mut() {
            in_flight.response_started = true;
        }
        self.arm_response_timer();
        self.decode(false);
    }

    /// Decodes what arrived; at the end of input (`eof`) too.
    fn decode(self: &Rc<Self>, eof: bool) -> Option<()> {
        loop {
            let part = {
                let mut input = self.input.borrow_mut();
                let mut decoder = self.decoder.borrow_mut();
                if eof {
                    decoder.decode_eof(&mut input)
                } else {
                    decoder.decode(&mut input)
                }
            };
            let outcome = match part {
                Ok(None) => return Some(()),
                Ok(Some(part)) => match self.take_part(part, eof) {
                    Some(outcome) => outcome,
                    None => continue,
                },
                Err(err) => {
                    let in_flight = self.current.borrow_mut().take()?;
                    self.abort();
                    let error = match HttpError::from_decode_error(&err) {
                        Some(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                            HttpClientError::BodyTooLarge {
                                limit: in_flight.exchange.client.config.max_response_body,
                            }
                        }
                        Some(e) if eof && e.reason().starts_with("connection closed") => {
                            HttpClientError::ConnectionLost {
                                response_started: true,
                            }
                        }
                        Some(e) => HttpClientError::Malformed(e.clone()),
                        None => HttpClientError::Malformed(HttpError::bad_request(err.to_string())),
                    };
                    Outcome::Failed(in_flight.exchange, error)
                }
            };
            self.finish(outcome);
            if self.current.borrow().is_none() {
                return Some(());
            }
        }
    }

    /// Adds a part to the response being read; at its end, the outcome
    /// (`None` until then).
    fn take_part(self: &Rc<Self>, part: IncomingResponse, eof: bool) -> Option<Outcome> {
        let mut current = self.current.borrow_mut();
        let in_flight = current.as_mut()?;
        let (last, trailers) = match part {
            IncomingResponse::Head(head, kind) => {
                let (parts, ()) = head.into_parts();
                in_flight.head = Some(parts);
                if kind != ResponseBodyKind::Empty {
                    return None;
                }
                (Bytes::new(), HeaderMap::new())
            }
            IncomingResponse::Body(data) => {
                in_flight.body.extend_from_slice(&data);
                return None;
            }
            IncomingResponse::End(data, trailers) => (data, trailers),
        };
        let mut in_flight = current.take()?;
        drop(current);
        in_flight.body.extend_from_slice(&last);
        if let Some(timer) = in_flight.timer.take() {
            let _ = timer.cancel();
        }
        let parts = in_flight.head.take()?;
        let keep = !eof
            && response_keeps_alive(&parts)
            && self.input.borrow().is_empty()
            && self.decoder.borrow().is_idle()
            && !has_token(in_flight.exchange.request.headers(), "close");
        let mut response = Response::from_parts(parts, in_flight.body.split().freeze());
        if !trailers.is_empty() {
            response.extensions_mut().insert(Trailers(trailers));
        }
        Some(Outcome::Done(in_flight.exchange, response, keep))
    }

    /// Settles an exchange once no borrow is held: its callbacks may send
    /// the next request on this very connection.
    fn finish(self: &Rc<Self>, outcome: Outcome) {
        let shared = match &outcome {
            Outcome::Done(exchange, ..)
            | Outcome::Failed(exchange, _)
            | Outcome::Retry(exchange) => exchange.client.clone(),
        };
        match outcome {
            Outcome::Done(exchange, response, keep) => {
                exchange.ticket.transport.borrow_mut().take();
                self.reused.set(true);
                if keep && !self.closed.get() {
                    shared.release(self);
                } else {
                    self.close();
                }
                match shared.redirect(&exchange, &response) {
                    None => {
                        let _ = exchange.resolver.try_callback(response);
                    }
                    Some(Err(err)) => exchange.fail(err),
                    Some(Ok(request)) => {
                        let key = request_key(&request);
                        shared.dispatch(Exchange {
                            client: shared.clone(),
                            request,
                            key,
                            resolver: exchange.resolver,
                            ticket: exchange.ticket,
                            retried: false,
                            redirects_left: exchange.redirects_left - 1,
                        });
                    }
                }
            }
            Outcome::Failed(exchange, error) => {
                exchange.ticket.transport.borrow_mut().take();
                exchange.fail(error);
            }
            Outcome::Retry(mut exchange) => {
                exchange.ticket.transport.borrow_mut().take();
                exchange.retried = true;
                shared.dispatch(exchange);
            }
        }
    }

    fn connection_lost(self: &Rc<Self>, reason: &Reason) {
        self.closed.set(true);
        if let Some(timer) = self.idle_timer.borrow_mut().take() {
            let _ = timer.cancel();
        }
        if let Some(shared) = self.shared() {
            shared.connection_gone(self);
        }
        let started = self
            .current
            .borrow()
            .as_ref()
            .map(|f| (f.response_started, f.written));
        let Some((started, written)) = started else {
            return;
        };
        if started && reason.is_clean() {
            // The end of a body read until the close, or a response cut
            // short: the decoder tells which.
            self.decode(true);
        }
        let Some(mut in_flight) = self.current.borrow_mut().take() else {
            return;
        };
        if let Some(timer) = in_flight.timer.take() {
            let _ = timer.cancel();
        }
        let retry = !started
            && written
            && self.reused.get()
            && !in_flight.exchange.retried
            && idempotent(in_flight.exchange.request.method());
        let outcome = if retry {
            Outcome::Retry(in_flight.exchange)
        } else {
            Outcome::Failed(
                in_flight.exchange,
                HttpClientError::ConnectionLost {
                    response_started: started,
                },
            )
        };
        self.finish(outcome);
    }
}

fn request_key(request: &Request<Bytes>) -> HostKey {
    let authority = request.uri().authority();
    let host = authority.map_or("", |a| a.host());
    let host = host.trim_start_matches('[').trim_end_matches(']');
    (
        host.to_owned(),
        authority.and_then(|a| a.port_u16()).unwrap_or(80),
    )
}

/// Builds the protocol of the one connection it was made for.
struct ConnectFactory {
    conn: Option<Rc<Conn>>,
}

impl Factory for ConnectFactory {
    type Protocol = ConnProtocol;

    fn build_protocol(&mut self, _peer: Address) -> Option<ConnProtocol> {
        self.conn.clone().map(|conn| ConnProtocol { conn })
    }
}

impl ClientFactory for ConnectFactory {
    fn client_connection_failed(&mut self, _connector: &Connector, reason: &io::Error) {
        if let Some(conn) = self.conn.take() {
            conn.connect_failed(reason);
        }
    }
}

/// The protocol of a pooled connection.
struct ConnProtocol {
    conn: Rc<Conn>,
}

impl Protocol for ConnProtocol {
    fn connection_made(&mut self, transport: &Transport) {
        self.conn.connection_made(transport);
    }

    fn data_received(&mut self, data: Bytes) {
        self.conn.data_received(&data);
    }

    fn connection_lost(&mut self, reason: &Reason) {
        self.conn.connection_lost(reason);
    }
}
