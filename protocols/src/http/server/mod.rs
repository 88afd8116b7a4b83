//! A small HTTP/1.1 server on the codecs: [`HttpServer`], a
//! [`Factory`](twill::Factory) whose connections decode requests, call a
//! [`Handler`] with each and write its answer, in order.
//!
//! The server is documented on [`HttpServer`].

mod body;
mod connection;
mod date;
mod range;
mod static_files;

use std::future::Future;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response};
use twill::defer::Deferred;
use twill::{Address, Factory, ReactorTime};

pub use body::{Body, BodyWriter, Upgrade};
pub use connection::{HttpServerProtocol, LINGER, LINGER_MAX, PIPELINED_INPUT_MAX};
pub use static_files::StaticFiles;

use super::{
    DEFAULT_MAX_BODY, DEFAULT_MAX_HEADERS, DEFAULT_MAX_HEADER_BYTES, DEFAULT_MAX_REQUEST_LINE,
};

/// How long a request's head may take to arrive, from its first byte.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a keep-alive connection may sit idle, a body go without a
/// byte, or an answer go unread.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// The longest [`HttpServer::header_timeout`] and
/// [`HttpServer::idle_timeout`] (a day): longer ones are cut to it, so
/// that "forever" (`Duration::MAX`) cannot overflow the clock.
const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 60 * 60);
/// The largest request body [`HttpServer::max_body`] accepts (the bodies
/// are held in memory).
pub const MAX_BODY_LIMIT: usize = 1 << 30;

/// Answers requests: Twisted's `Resource.render`, one function for the
/// whole server. Any `Fn(Request<Bytes>) -> Deferred<Response<Body>>` is
/// one; [`async_handler`] makes one of an `async` function.
///
/// The request's extensions carry the connection's [`ConnectionInfo`].
pub trait Handler: 'static {
    /// The answer to `request`, now or later.
    fn handle(&self, request: Request<Bytes>) -> Deferred<Response<Body>>;
}

impl<F> Handler for F
where
    F: Fn(Request<Bytes>) -> Deferred<Response<Body>> + 'static,
{
    fn handle(&self, request: Request<Bytes>) -> Deferred<Response<Body>> {
        self(request)
    }
}

/// A [`Handler`] of an `async` function; the future runs on the reactor's
/// executor (so this needs a reactor on the thread).
///
/// ```no_run
/// use http::{Request, Response};
/// use twill::Bytes;
/// use twill_protocols::http::{async_handler, Body, HttpServer};
///
/// let server = HttpServer::new(async_handler(|request: Request<Bytes>| async move {
///     Response::new(Body::from(format!("you asked for {}\n", request.uri())))
/// }));
/// ```
pub fn async_handler<F, Fut>(handler: F) -> AsyncHandler<F>
where
    F: Fn(Request<Bytes>) -> Fut + 'static,
    Fut: Future<Output = Response<Body>> + 'static,
{
    AsyncHandler(handler)
}

/// The [`Handler`] [`async_handler`] makes.
pub struct AsyncHandler<F>(F);

impl<F> std::fmt::Debug for AsyncHandler<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AsyncHandler")
    }
}

impl<F, Fut> Handler for AsyncHandler<F>
where
    F: Fn(Request<Bytes>) -> Fut + 'static,
    Fut: Future<Output = Response<Body>> + 'static,
{
    fn handle(&self, request: Request<Bytes>) -> Deferred<Response<Body>> {
        Deferred::from_future(async_ok((self.0)(request)))
    }
}

async fn async_ok<T>(future: impl Future<Output = T>) -> Result<T, twill::defer::Failure> {
    Ok(future.await)
}

/// Who a request came from, in each request's extensions.
///
/// ```
/// use http::Request;
/// use twill::Bytes;
/// use twill_protocols::http::ConnectionInfo;
///
/// fn peer_of(request: &Request<Bytes>) -> String {
///     match request.extensions().get::<ConnectionInfo>() {
///         Some(info) => info.peer.to_string(),
///         None => "unknown".into(),
///     }
/// }
/// assert_eq!(peer_of(&Request::new(Bytes::new())), "unknown");
/// ```
#[derive(Debug, Clone)]
pub struct ConnectionInfo {
    /// The client's address.
    pub peer: Address,
    /// The server's address the connection came in on.
    pub host: Address,
}

#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) max_request_line: usize,
    pub(crate) max_header_bytes: usize,
    pub(crate) max_headers: usize,
    pub(crate) max_body: usize,
    pub(crate) header_timeout: Duration,
    pub(crate) idle_timeout: Duration,
    pub(crate) server: Option<HeaderValue>,
    pub(crate) clock: Option<Rc<dyn ReactorTime>>,
}

/// An HTTP/1.1 server: a [`Factory`] of [`HttpServerProtocol`]s that
/// call one [`Handler`] with each request and write its answer; the
/// builder methods set its limits.
///
/// What it does for the handler (RFC 9112 and RFC 9110):
///
/// - **Framing**: the request body is gathered (up to
///   [`max_body`](HttpServer::max_body), else `413`); the response gets
///   `Content-Length`, chunked coding, or (to an HTTP/1.0 client, for a
///   stream of unknown length) the end of the connection. No body follows
///   the head of an answer to `HEAD`, nor a `1xx`, `204` or `304`.
/// - **Keep-alive and pipelining**: requests on one connection are handled
///   one at a time, in order; the next is decoded once the answer to the
///   previous one is written (a pipelined request waits in the input
///   buffer, which stops growing at 64 KiB: the connection stops reading).
///   `Connection: close` in either message, or an HTTP/1.0 request without
///   `keep-alive`, closes the connection after the answer.
/// - **`Expect: 100-continue`**: `100 Continue` is sent when the request's
///   turn comes, unless its body is too large (`413` and close instead).
/// - **Errors**: a request the decoder refuses gets the status its
///   [`HttpError`](super::HttpError) carries (`400`, `414`, `431`, `413`,
///   `501`, `505`) and the connection closes; so does an HTTP/1.1 request
///   without exactly one `Host` (`400`). The close lingers: the writing
///   side is shut after the answer and what the client still sends (the
///   rest of a refused upload) is read and dropped for up to 2 s, since
///   closing on unread input makes the kernel send a reset that can
///   destroy the answer before the client reads it. A handler that panics or whose
///   Deferred fails gets a `500` (logged), and the connection goes on.
/// - **Timeouts**: [`header_timeout`](HttpServer::header_timeout) (30 s)
///   from a request's first byte to the end of its head, which cuts
///   slowloris clients (`408`, then close);
///   [`idle_timeout`](HttpServer::idle_timeout) (60 s) for an idle
///   keep-alive connection (closed), for a body that stops arriving
///   (`408`) and for a client that stops reading its answer (aborted).
/// - **Fields**: `Date` on every response, and `Server` unless turned off.
/// - **Bodies**: in memory, streamed through a [`BodyWriter`] (and a
///   [`Producer`](twill::producers::Producer)), or a file range sent with
///   [`Transport::send_file`](twill::Transport::send_file).
///   [`StaticFiles`] serves a folder with `Range` and `If-Modified-Since`.
/// - **Upgrades**: a `101` response with [`Body::Upgrade`] hands the
///   connection to another protocol (WebSocket).
///
/// # Examples
///
/// ```no_run
/// use http::{Method, Request, Response, StatusCode};
/// use twill::Bytes;
/// use twill_protocols::http::{Body, HttpServer};
///
/// let reactor = twill::Reactor::new()?;
/// let server = HttpServer::new(|request: Request<Bytes>| {
///     let response = match (request.method(), request.uri().path()) {
///         (&Method::GET, "/") => Response::new(Body::from("hello\n")),
///         (&Method::POST, "/echo") => Response::new(Body::Full(request.into_body())),
///         _ => Response::builder()
///             .status(StatusCode::NOT_FOUND)
///             .body(Body::from("not found\n"))
///             .unwrap(),
///     };
///     twill::defer::succeed(response)
/// });
/// reactor.listen_tcp("127.0.0.1:8080", server)?;
/// reactor.run()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// A connection can be driven in memory, with a hand-advanced clock for
/// the timeouts:
///
/// ```
/// use std::rc::Rc;
/// use http::{Request, Response};
/// use twill::task::Clock;
/// use twill::testing::StringTransport;
/// use twill::{Bytes, Protocol};
/// use twill_protocols::http::{Body, HttpServer};
///
/// let server = HttpServer::new(|_: Request<Bytes>| twill::defer::succeed(Response::new(Body::from("hi"))))
///     .server_name(None)
///     .clock(Rc::new(Clock::new()));
/// let mut protocol = server.protocol();
/// let recorder = StringTransport::new();
/// protocol.connection_made(&recorder.transport());
/// protocol.data_received(Bytes::from_static(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
/// let answer = String::from_utf8(recorder.value()).unwrap();
/// assert!(answer.starts_with("HTTP/1.1 200 OK\r\ndate: "));
/// assert!(answer.ends_with("\r\ncontent-length: 2\r\n\r\nhi"));
/// ```
pub struct HttpServer<H> {
    handler: Rc<H>,
    config: Rc<Config>,
}

impl<H: Handler> HttpServer<H> {
    /// A server that answers with `handler`, with the default limits.
    pub fn new(handler: H) -> Self {
        HttpServer {
            handler: Rc::new(handler),
            config: Rc::new(Config {
                max_request_line: DEFAULT_MAX_REQUEST_LINE,
                max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
                max_headers: DEFAULT_MAX_HEADERS,
                max_body: DEFAULT_MAX_BODY,
                header_timeout: DEFAULT_HEADER_TIMEOUT,
                idle_timeout: DEFAULT_IDLE_TIMEOUT,
                server: Some(HeaderValue::from_static("twill")),
                clock: None,
            }),
        }
    }

    /// The longest request line (8 KiB by default); past it, `414`.
    pub fn max_request_line(mut self, max: usize) -> Self {
        Rc::make_mut(&mut self.config).max_request_line = max;
        self
    }

    /// The most bytes of header lines (64 KiB by default); past it, `431`.
    pub fn max_header_bytes(mut self, max: usize) -> Self {
        Rc::make_mut(&mut self.config).max_header_bytes = max;
        self
    }

    /// The most header fields (100 by default); past it, `431`.
    pub fn max_headers(mut self, max: usize) -> Self {
        Rc::make_mut(&mut self.config).max_headers = max;
        self
    }

    /// The largest request body, held in memory (1 MiB by default, at most
    /// [`MAX_BODY_LIMIT`]); past it, `413` and close.
    pub fn max_body(mut self, max: usize) -> Self {
        Rc::make_mut(&mut self.config).max_body = max.min(MAX_BODY_LIMIT);
        self
    }

    /// How long a request's head may take from its first byte (30 s; at
    /// most a day: longer is cut to that).
    pub fn header_timeout(mut self, timeout: Duration) -> Self {
        Rc::make_mut(&mut self.config).header_timeout = timeout.min(MAX_TIMEOUT);
        self
    }

    /// How long a connection may wait on its client: idle between
    /// requests, between bytes of a body, or with an answer it does not
    /// read (60 s; at most a day: longer is cut to that).
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        Rc::make_mut(&mut self.config).idle_timeout = timeout.min(MAX_TIMEOUT);
        self
    }

    /// The `Server` field's value (`twill` by default); `None` sends none.
    pub fn server_name(mut self, name: Option<HeaderValue>) -> Self {
        Rc::make_mut(&mut self.config).server = name;
        self
    }

    /// The clock the timeouts run on (the thread's reactor by default): a
    /// [`Clock`](twill::task::Clock) in tests.
    pub fn clock(mut self, clock: Rc<dyn ReactorTime>) -> Self {
        Rc::make_mut(&mut self.config).clock = Some(clock);
        self
    }

    /// A protocol for one connection, as the factory builds them: for
    /// tests against a [`StringTransport`](twill::testing::StringTransport).
    pub fn protocol(&self) -> HttpServerProtocol {
        HttpServerProtocol::new(self.handler.clone(), self.config.clone())
    }
}

impl<H> std::fmt::Debug for HttpServer<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpServer")
            .field("max_body", &self.config.max_body)
            .field("header_timeout", &self.config.header_timeout)
            .field("idle_timeout", &self.config.idle_timeout)
            .finish_non_exhaustive()
    }
}

impl<H: Handler> Factory for HttpServer<H> {
    type Protocol = HttpServerProtocol;

    fn build_protocol(&mut self, _peer: Address) -> Option<HttpServerProtocol> {
        Some(self.protocol())
    }
}
