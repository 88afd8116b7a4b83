//! What a handler answers with: [`Body`], the [`BodyWriter`] a streamed
//! body is written through, and the [`Upgrade`] that hands a connection to
//! another protocol after a `101 Switching Protocols`.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::fs::File;
use std::ops::Range;
use std::rc::Rc;

use bytes::Bytes;
use http::HeaderMap;
use twill::producers::{Producer, RegisterError};
use twill::{Protocol, Transport};

use crate::codec::Encoder;
use crate::http::{HttpResponseEncoder, ResponsePart};

/// The body of a response.
///
/// | variant | framing on the wire |
/// |---|---|
/// | [`Empty`](Self::Empty), [`Full`](Self::Full) | `Content-Length` |
/// | [`File`](Self::File) | `Content-Length` of the range; sent with [`Transport::send_file`] (`sendfile(2)` on plain TCP) |
/// | [`Stream`](Self::Stream) | the `Content-Length` the response's headers give, else chunked (HTTP/1.1) or closed by the server (HTTP/1.0) |
/// | [`Upgrade`](Self::Upgrade) | none: after a `101` head the connection belongs to another protocol |
///
/// ```
/// use twill_protocols::http::Body;
///
/// let body = Body::from("hello");
/// assert_eq!(body.len(), Some(5));
/// assert_eq!(Body::Empty.len(), Some(0));
/// ```
#[derive(Default)]
pub enum Body {
    /// No body: `Content-Length: 0` (or nothing, for `204` and `304`).
    #[default]
    Empty,
    /// A body in memory.
    Full(Bytes),
    /// The bytes of `file` in `range`. [`StaticFiles`](super::StaticFiles)
    /// answers with these.
    File {
        /// The open file.
        file: File,
        /// Which bytes of it; past its end, the connection is aborted when
        /// the file runs out (the response's framing is then broken).
        range: Range<u64>,
    },
    /// A body written over time: the server calls the function with a
    /// [`BodyWriter`] once the head is written and it is this response's
    /// turn.
    Stream(Box<dyn FnOnce(BodyWriter)>),
    /// With a `101 Switching Protocols` response: the connection goes to
    /// another protocol once the head is written.
    Upgrade(Upgrade),
}

impl Body {
    /// A body written by `write` through a [`BodyWriter`]:
    /// `Body::Stream(Box::new(write))`.
    ///
    /// ```
    /// use twill_protocols::http::Body;
    ///
    /// let body = Body::stream(|writer| {
    ///     writer.write("one, ");
    ///     writer.write("two");
    ///     writer.finish();
    /// });
    /// assert_eq!(body.len(), None);
    /// ```
    pub fn stream(write: impl FnOnce(BodyWriter) + 'static) -> Body {
        Body::Stream(Box::new(write))
    }

    /// The length in bytes when it is known before sending.
    pub fn len(&self) -> Option<u64> {
        match self {
            Body::Empty => Some(0),
            Body::Full(bytes) => Some(bytes.len() as u64),
            Body::File { range, .. } => Some(range.end.saturating_sub(range.start)),
            Body::Stream(_) | Body::Upgrade(_) => None,
        }
    }

    /// Whether the body is known to be empty.
    pub fn is_empty(&self) -> bool {
        self.len() == Some(0)
    }
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Body::Empty => f.write_str("Empty"),
            Body::Full(bytes) => f.debug_tuple("Full").field(bytes).finish(),
            Body::File { range, .. } => f.debug_struct("File").field("range", range).finish(),
            Body::Stream(_) => f.write_str("Stream"),
            Body::Upgrade(_) => f.write_str("Upgrade"),
        }
    }
}

impl From<Bytes> for Body {
    fn from(bytes: Bytes) -> Body {
        Body::Full(bytes)
    }
}

impl From<&'static str> for Body {
    fn from(text: &'static str) -> Body {
        Body::Full(Bytes::from_static(text.as_bytes()))
    }
}

impl From<&'static [u8]> for Body {
    fn from(bytes: &'static [u8]) -> Body {
        Body::Full(Bytes::from_static(bytes))
    }
}

impl From<String> for Body {
    fn from(text: String) -> Body {
        Body::Full(Bytes::from(text))
    }
}

impl From<Vec<u8>> for Body {
    fn from(bytes: Vec<u8>) -> Body {
        Body::Full(Bytes::from(bytes))
    }
}

/// Hands the connection to another protocol after a `101 Switching
/// Protocols` head: how WebSocket (and any `Upgrade:` protocol) starts on
/// the HTTP server.
///
/// Once the head is written, the server calls `make` with the
/// connection's transport, gives the protocol it returns any bytes it had
/// already read past the request (its
/// [`data_received`](Protocol::data_received)), and hands it the
/// connection with [`Transport::set_protocol`]. The new protocol gets no
/// `connection_made`: it has the transport from `make`. On a response
/// that is not `101`, the upgrade is dropped unused.
///
/// ```
/// use http::{Response, StatusCode};
/// use twill::{Bytes, Protocol, Transport};
/// use twill_protocols::http::{Body, Upgrade};
///
/// /// Echoes raw bytes once the upgrade is done.
/// struct RawEcho(Transport);
/// impl Protocol for RawEcho {
///     fn data_received(&mut self, data: Bytes) {
///         self.0.write(data);
///     }
/// }
///
/// let response = Response::builder()
///     .status(StatusCode::SWITCHING_PROTOCOLS)
///     .header("upgrade", "raw-echo")
///     .header("connection", "upgrade")
///     .body(Body::Upgrade(Upgrade::new(|transport| {
///         Box::new(RawEcho(transport.clone()))
///     })))
///     .unwrap();
/// assert_eq!(response.status(), 101);
/// ```
pub struct Upgrade(Box<MakeProtocol>);

type MakeProtocol = dyn FnOnce(&Transport) -> Box<dyn Protocol>;

impl fmt::Debug for Upgrade {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Upgrade")
    }
}

impl Upgrade {
    /// An upgrade to the protocol `make` builds.
    pub fn new(make: impl FnOnce(&Transport) -> Box<dyn Protocol> + 'static) -> Upgrade {
        Upgrade(Box::new(make))
    }

    pub(crate) fn make(self, transport: &Transport) -> Box<dyn Protocol> {
        (self.0)(transport)
    }
}

/// Where a [`Body::Stream`] is written: Twisted's `Request.write` and
/// `Request.finish`, and the consumer a [`Producer`] streams into.
///
/// Each [`write`](Self::write) goes out as one chunk (or as raw bytes under
/// a `Content-Length` the response set, or on an HTTP/1.0 connection,
/// which the server then closes). [`finish`](Self::finish) ends the body;
/// the next pipelined response waits for it. Memory is the connection's
/// write buffer, bounded by its watermarks and hard cap: a writer that
/// does not wait for [`is_writable`](Self::is_writable) /
/// [`when_writable`](Self::when_writable), or register a
/// [`Producer`](Self::register_producer), will have its connection aborted
/// at the cap.
///
/// Clones share one body. Dropping the last clone without
/// [`finish`](Self::finish) aborts the connection, since the client could
/// not tell a cut body from a whole one; so does writing more than the
/// `Content-Length` said, or finishing short of it (logged).
///
/// ```
/// use http::{Request, Response};
/// use twill::Bytes;
/// use twill::task::Clock;
/// use twill::testing::StringTransport;
/// use twill::Protocol;
/// use twill_protocols::http::{Body, HttpServer};
///
/// let server = HttpServer::new(|_request: Request<Bytes>| {
///     twill::defer::succeed(Response::new(Body::stream(|writer| {
///         writer.write("hello, ");
///         writer.write("world");
///         writer.finish();
///     })))
/// })
/// .clock(std::rc::Rc::new(Clock::new()));
/// let mut protocol = server.protocol();
/// let recorder = StringTransport::new();
/// protocol.connection_made(&recorder.transport());
/// protocol.data_received(Bytes::from_static(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
/// let answer = String::from_utf8(recorder.value()).unwrap();
/// assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"));
/// assert!(answer.contains("transfer-encoding: chunked\r\n"));
/// assert!(answer.ends_with("\r\n\r\n7\r\nhello, \r\n5\r\nworld\r\n0\r\n\r\n"));
/// ```
#[derive(Clone)]
pub struct BodyWriter {
    shared: Rc<Shared>,
}

/// Told how a body ended: `Ok` finished, `Err` cut.
type BodyDone = dyn FnOnce(Result<(), String>);

struct Shared {
    transport: Transport,
    encoder: RefCell<HttpResponseEncoder>,
    finished: Cell<bool>,
    /// Told once how the body ended: `Ok` finished, `Err` aborted.
    done: RefCell<Option<Box<BodyDone>>>,
}

impl BodyWriter {
    pub(crate) fn new(
        transport: Transport,
        encoder: HttpResponseEncoder,
        done: impl FnOnce(Result<(), String>) + 'static,
    ) -> BodyWriter {
        BodyWriter {
            shared: Rc::new(Shared {
                transport,
                encoder: RefCell::new(encoder),
                finished: Cell::new(false),
                done: RefCell::new(Some(Box::new(done))),
            }),
        }
    }

    /// Sends `data` as the next piece of the body (nothing for an empty
    /// one). After [`finish`](Self::finish), or once the connection is
    /// gone, it is dropped.
    pub fn write(&self, data: impl Into<Bytes>) {
        let data = data.into();
        if self.shared.finished.get() || data.is_empty() || self.shared.transport.is_closing() {
            return;
        }
        let mut encoder = self.shared.encoder.borrow_mut();
        let result = self.shared.transport.write_with_body(|buf| {
            match encoder.encode_parts(ResponsePart::Body(data), buf) {
                Ok(tail) => (Ok(()), tail),
                Err(err) => (Err(err.to_string()), None),
            }
        });
        drop(encoder);
        if let Some(Err(why)) = result {
            self.shared.fail(why);
        }
    }

    /// Ends the body (with chunked coding, the last chunk). Later calls do
    /// nothing.
    pub fn finish(&self) {
        self.finish_with_trailers(HeaderMap::new());
    }

    /// Ends a chunked body with trailer fields (a body of known length
    /// takes none: the connection is aborted).
    pub fn finish_with_trailers(&self, trailers: HeaderMap) {
        if self.shared.finished.replace(true) {
            return;
        }
        let mut encoder = self.shared.encoder.borrow_mut();
        let result = self
            .shared
            .transport
            .write_with(|buf| encoder.encode(ResponsePart::End(trailers), buf));
        drop(encoder);
        match result {
            Some(Err(err)) => self.shared.fail(err.to_string()),
            _ => self.shared.end(Ok(())),
        }
    }

    /// Gives up on the body: the connection is aborted (the client sees a
    /// reset, not a body that looks whole). After [`finish`](Self::finish)
    /// it does nothing: the body is whole, and the connection may be
    /// carrying the next response.
    pub fn abort(&self) {
        if self.shared.finished.get() {
            return;
        }
        self.shared
            .fail("the body was aborted by its writer".to_string());
    }

    /// Whether the body is still being written: not finished or aborted,
    /// and the connection is open.
    pub fn is_open(&self) -> bool {
        !self.shared.finished.get() && !self.shared.transport.is_closing()
    }

    /// Whether writes are welcome now: the connection's
    /// [`is_writable`](Transport::is_writable).
    pub fn is_writable(&self) -> bool {
        self.shared.transport.is_writable()
    }

    /// Runs `f` once writes are welcome again, or the connection is over
    /// ([`Transport::when_writable`]).
    pub fn when_writable(&self, f: impl FnOnce() + 'static) {
        self.shared.transport.when_writable(f);
    }

    /// Registers a producer that writes the body through this writer
    /// (`Transport::register_producer` on the connection): a push producer
    /// is paused while the connection's buffer is over its high watermark,
    /// a pull producer is asked for more as it drains. Unregister it
    /// before [`finish`](Self::finish).
    pub fn register_producer(
        &self,
        producer: Rc<dyn Producer>,
        streaming: bool,
    ) -> Result<(), RegisterError> {
        self.shared.transport.register_producer(producer, streaming)
    }

    /// Unregisters the producer.
    pub fn unregister_producer(&self) {
        self.shared.transport.unregister_producer();
    }

    /// The connection's transport (to read its peer, say).
    pub fn transport(&self) -> &Transport {
        &self.shared.transport
    }
}

impl fmt::Debug for BodyWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BodyWriter")
            .field("open", &self.is_open())
            .finish()
    }
}

impl Shared {
    fn fail(&self, why: String) {
        self.finished.set(true);
        log::warn!("HTTP response body cut, connection aborted: {why}");
        self.transport.abort_connection();
        self.end(Err(why));
    }

    fn end(&self, outcome: Result<(), String>) {
        let done = self.done.borrow_mut().take();
        if let Some(done) = done {
            done(outcome);
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        if !self.finished.get() {
            self.fail("the body's writer was dropped before finish".to_string());
        }
    }
}
