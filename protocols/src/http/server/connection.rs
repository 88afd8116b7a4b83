//! [`HttpServerProtocol`]: one connection of an [`HttpServer`](super::HttpServer).
//!
//! The connection reads requests one at a time. While the handler works
//! on one, or its answer is being written, later (pipelined) requests wait
//! undecoded in the input buffer, which stops the connection reading once
//! it holds [`PIPELINED_INPUT_MAX`]. A handler's Deferred may fire inside
//! the call (the answer is then written before the next request is
//! decoded, in the same read) or later (the next request is decoded then).

use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::header::{CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, HOST};
use http::response::Parts;
use http::{HeaderValue, Method, Request, Response, StatusCode, Version};
use twill::defer::{Deferred, Failure};
use twill::{DelayedCall, Protocol, ReactorTime, Reason, Transport};

use super::body::{Body, BodyWriter};
use super::{date, Config, ConnectionInfo, Handler};
use crate::codec::{Decoder, Encoder};
use crate::http::encoder::Stamp;
use crate::http::{
    is_keep_alive, Aggregated, Framing, HttpError, HttpRequestAggregator, HttpRequestDecoder,
    HttpResponseEncoder, ResponsePart,
};

/// How much of the requests that follow the one being answered is read
/// ahead; past it the connection stops reading until their turn.
pub const PIPELINED_INPUT_MAX: usize = 64 * 1024;

/// Bodies in memory larger than this are written a piece of this size at
/// a time, as the client reads.
const PACED_BODY: usize = 1 << 20;

/// How long a refused connection goes on reading (and dropping) what the
/// client sends before it closes.
pub const LINGER: Duration = Duration::from_secs(2);
/// How much a refused connection reads and drops before it closes.
pub const LINGER_MAX: usize = 64 << 20;

const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// One connection of an [`HttpServer`](super::HttpServer): decodes
/// requests, hands each to the server's [`Handler`] and writes the
/// answers in order. Made by the server (or by
/// [`HttpServer::protocol`](super::HttpServer::protocol) for tests).
pub struct HttpServerProtocol {
    conn: Rc<Conn>,
    /// What the reactor reads into; moved into the input buffer whole when
    /// that is empty, which it is between requests.
    scratch: BytesMut,
}

struct Conn {
    handler: Rc<dyn Handler>,
    config: Rc<Config>,
    state: RefCell<State>,
}

struct State {
    transport: Option<Transport>,
    clock: Option<Rc<dyn ReactorTime>>,
    info: Option<ConnectionInfo>,
    input: BytesMut,
    decoder: HttpRequestAggregator,
    phase: Phase,
    /// The client sent EOF: close once the requests it sent are answered.
    eof: bool,
    /// `process` is running; a call from inside it (an answer written at
    /// once) leaves the next request to its loop.
    processing: bool,
    reading_paused: bool,
    waiting_writable: bool,
    next_seq: u64,
    watchdog: Watchdog,
}

enum Phase {
    /// Reading a request (or waiting for one).
    Reading,
    /// A request is with the handler, or its answer is being written.
    Answering(Answer),
    /// A refusal was written and the writing side shut: what the client
    /// still sends is read and dropped (up to [`LINGER_MAX`], for
    /// [`LINGER`]), so that closing with unread input, which makes the
    /// kernel send a reset, cannot destroy the refusal before the client
    /// reads it.
    Lingering { dropped: usize },
    /// Closing, closed or upgraded: no more requests.
    Done,
}

struct Answer {
    seq: u64,
    method: Method,
    version: Version,
    keep_alive: bool,
    /// The handler's chain, cancelled if the connection ends first.
    pending: Option<Deferred<()>>,
}

/// One timer per connection for every timeout: it holds the earliest
/// deadline it was set for, and when it fires it looks at the deadline
/// that is current then (moving a deadline later costs no timer call).
#[derive(Default)]
struct Watchdog {
    timer: Option<DelayedCall>,
    fires_at: Option<Instant>,
    deadline: Option<(Instant, Wait)>,
    /// `bytes_sent` when the client was last seen reading.
    sent_mark: u64,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Wait {
    /// For a next request on an idle keep-alive connection.
    Idle,
    /// For the rest of a request's head.
    Head,
    /// For more of a request's body.
    Body,
    /// For the client to read the answer.
    Reader,
    /// For the end of a lingering close.
    Linger,
}

// A request is moved once from the decoder to the handler; boxing it to
// shrink the enum would cost an allocation per request.
#[allow(clippy::large_enum_variant)]
enum Next {
    Stop,
    Again,
    Dispatch(Request<Bytes>),
}

impl HttpServerProtocol {
    pub(crate) fn new(handler: Rc<dyn Handler>, config: Rc<Config>) -> Self {
        let decoder = HttpRequestAggregator::new(
            HttpRequestDecoder::new()
                .max_request_line(config.max_request_line)
                .max_header_bytes(config.max_header_bytes)
                .max_headers(config.max_headers),
        )
        .max_body(config.max_body);
        HttpServerProtocol {
            conn: Rc::new(Conn {
                handler,
                config,
                state: RefCell::new(State {
                    transport: None,
                    clock: None,
                    info: None,
                    input: BytesMut::new(),
                    decoder,
                    phase: Phase::Reading,
                    eof: false,
                    processing: false,
                    reading_paused: false,
                    waiting_writable: false,
                    next_seq: 0,
                    watchdog: Watchdog::default(),
                }),
            }),
            scratch: BytesMut::new(),
        }
    }
}

impl std::fmt::Debug for HttpServerProtocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpServerProtocol").finish_non_exhaustive()
    }
}

impl Protocol for HttpServerProtocol {
    fn connection_made(&mut self, transport: &Transport) {
        transport.set_flow_control(true);
        let mut st = self.conn.state.borrow_mut();
        st.clock = Some(crate::handler::output::time_or_reactor(
            self.conn.config.clock.as_ref(),
        ));
        st.info = Some(ConnectionInfo {
            peer: transport.peer(),
            host: transport.host(),
        });
        st.transport = Some(transport.clone());
        let idle = self.conn.config.idle_timeout;
        self.conn.set_deadline(&mut st, Wait::Idle, idle);
    }

    fn data_received(&mut self, data: Bytes) {
        self.conn.state.borrow_mut().input.extend_from_slice(&data);
        self.conn.received();
    }

    fn get_buffer(&mut self) -> Option<&mut BytesMut> {
        Some(&mut self.scratch)
    }

    fn buffer_updated(&mut self, _appended: usize) {
        {
            let mut st = self.conn.state.borrow_mut();
            if st.input.is_empty() {
                std::mem::swap(&mut st.input, &mut self.scratch);
            } else {
                st.input.extend_from_slice(&self.scratch);
                self.scratch.clear();
            }
        }
        self.conn.received();
    }

    fn eof_received(&mut self) -> bool {
        let mut st = self.conn.state.borrow_mut();
        st.eof = true;
        match st.phase {
            // Nothing of a request: close now.
            Phase::Reading if st.input.is_empty() && !st.decoder.in_body() => false,
            // Requests read but not yet decoded (the connection was waiting
            // for the client to read): answer them, then close; half a
            // request is closed by `process`.
            Phase::Reading => {
                drop(st);
                self.conn.process();
                true
            }
            // Answer what it sent, then close (`process` does).
            Phase::Answering(_) => true,
            Phase::Lingering { .. } | Phase::Done => false,
        }
    }

    fn connection_lost(&mut self, _reason: &Reason) {
        let pending = {
            let mut st = self.conn.state.borrow_mut();
            st.transport = None;
            if let Some(timer) = st.watchdog.timer.take() {
                let _ = timer.cancel();
            }
            match std::mem::replace(&mut st.phase, Phase::Done) {
                Phase::Answering(answer) => answer.pending,
                _ => None,
            }
        };
        if let Some(pending) = pending {
            // A handler still working on the request may stop (its
            // canceller runs); one whose answer is being written is done.
            pending.cancel();
        }
    }
}

impl Conn {
    fn received(self: &Rc<Self>) {
        {
            let mut st = self.state.borrow_mut();
            let st = &mut *st;
            if let Phase::Lingering { dropped } = &mut st.phase {
                *dropped += st.input.len();
                st.input.clear();
                if *dropped > LINGER_MAX {
                    if let Some(transport) = &st.transport {
                        transport.lose_connection();
                    }
                }
                return;
            }
            if matches!(st.phase, Phase::Answering(_))
                && st.input.len() >= PIPELINED_INPUT_MAX
                && !st.reading_paused
            {
                st.reading_paused = true;
                if let Some(transport) = &st.transport {
                    transport.pause_reading();
                }
            }
        }
        self.process();
    }

    /// Decodes and dispatches requests until one is being answered, the
    /// input runs out, or the connection cannot take more output.
    fn process(self: &Rc<Self>) {
        {
            let mut st = self.state.borrow_mut();
            if st.processing {
                return;
            }
            st.processing = true;
        }
        loop {
            let next = self.next();
            match next {
                Next::Stop => break,
                Next::Again => {}
                Next::Dispatch(request) => self.dispatch(request),
            }
        }
        self.state.borrow_mut().processing = false;
    }

    fn next(self: &Rc<Self>) -> Next {
        let mut st = self.state.borrow_mut();
        let st = &mut *st;
        if !matches!(st.phase, Phase::Reading) {
            return Next::Stop;
        }
        let Some(transport) = st.transport.clone() else {
            return Next::Stop;
        };
        if !transport.is_writable() {
            // Answers are not being read: decode no more until they are.
            if !st.waiting_writable {
                st.waiting_writable = true;
                let conn = Rc::downgrade(self);
                transport.when_writable(move || {
                    if let Some(conn) = conn.upgrade() {
                        conn.state.borrow_mut().waiting_writable = false;
                        conn.process();
                    }
                });
            }
            return Next::Stop;
        }
        if st.reading_paused && st.input.len() < PIPELINED_INPUT_MAX {
            st.reading_paused = false;
            transport.resume_reading();
        }
        if st.input.is_empty() && !st.decoder.in_body() {
            if st.eof {
                st.phase = Phase::Done;
                transport.lose_connection();
            }
            return Next::Stop;
        }
        match st.decoder.decode(&mut st.input) {
            Ok(Some(Aggregated::SendContinue)) => {
                transport.write(Bytes::from_static(CONTINUE));
                Next::Again
            }
            Ok(Some(Aggregated::Request(mut request))) => {
                if let Err(why) = check_host(&request) {
                    self.refuse(st, &transport, StatusCode::BAD_REQUEST, why);
                    return Next::Stop;
                }
                if let Some(info) = &st.info {
                    request.extensions_mut().insert(info.clone());
                }
                let seq = st.next_seq;
                st.next_seq += 1;
                st.phase = Phase::Answering(Answer {
                    seq,
                    method: request.method().clone(),
                    version: request.version(),
                    keep_alive: is_keep_alive(&request) && !st.eof,
                    pending: None,
                });
                Next::Dispatch(request)
            }
            Ok(None) => {
                if st.eof {
                    // Half a request, and the client is done sending.
                    st.phase = Phase::Done;
                    transport.lose_connection();
                } else if st.decoder.in_body() {
                    self.set_deadline(st, Wait::Body, self.config.idle_timeout);
                } else if !st.input.is_empty() && st.watchdog.waiting_for() != Some(Wait::Head) {
                    self.set_deadline(st, Wait::Head, self.config.header_timeout);
                }
                Next::Stop
            }
            Err(err) => {
                let (status, why) = match HttpError::from_decode_error(&err) {
                    Some(http) => (http.status(), http.reason().to_string()),
                    None => (StatusCode::BAD_REQUEST, err.to_string()),
                };
                self.refuse(st, &transport, status, why);
                Next::Stop
            }
        }
    }

    /// Answers a request that cannot be served with `status`, then closes
    /// (lingering: see [`Phase::Lingering`]).
    fn refuse(
        self: &Rc<Self>,
        st: &mut State,
        transport: &Transport,
        status: StatusCode,
        why: String,
    ) {
        log::debug!("HTTP request refused with {status}: {why}");
        st.phase = Phase::Lingering { dropped: 0 };
        st.input.clear();
        let mut response = plain_text(status, format!("{why}\n"));
        response
            .headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
        // A status line and a reason of our own: nothing the encoder refuses.
        let _ = write_full(transport, self.encoder(), response, Method::GET);
        transport.write_eof();
        if st.reading_paused {
            st.reading_paused = false;
            transport.resume_reading();
        }
        transport.set_flow_control(false);
        self.set_deadline(st, Wait::Linger, LINGER);
    }

    fn dispatch(self: &Rc<Self>, request: Request<Bytes>) {
        let seq = self.state.borrow().next_seq - 1;
        let handler = self.handler.clone();
        let answer = match catch_unwind(AssertUnwindSafe(|| handler.handle(request))) {
            Ok(answer) => answer,
            Err(panic) => {
                let panicked = twill::Panicked::from_payload("Handler::handle", &*panic);
                twill::defer::fail(Failure::new(panicked))
            }
        };
        if let Some(outcome) = answer.result() {
            // Answered at once (the usual case): no callback to chain.
            self.respond(seq, outcome);
            return;
        }
        let conn = Rc::downgrade(self);
        let chain = answer.then_both(move |outcome: Result<Response<Body>, Failure>| {
            if let Some(conn) = conn.upgrade() {
                conn.respond(seq, outcome);
            }
            Ok::<(), Failure>(())
        });
        let mut st = self.state.borrow_mut();
        let st = &mut *st;
        match &mut st.phase {
            Phase::Answering(answer) if answer.seq == seq && !chain.called() => {
                answer.pending = Some(chain);
                // The answer comes later: from now on, the wait is on the
                // handler and then on the client reading it.
                if let Some(transport) = &st.transport {
                    st.watchdog.sent_mark = transport.bytes_sent();
                }
                self.set_deadline(st, Wait::Reader, self.config.idle_timeout);
            }
            _ => {}
        }
    }

    fn respond(self: &Rc<Self>, seq: u64, outcome: Result<Response<Body>, Failure>) {
        let (transport, method, version, keep_alive) = {
            let mut st = self.state.borrow_mut();
            let Some(transport) = st.transport.clone() else {
                return;
            };
            match &mut st.phase {
                Phase::Answering(answer) if answer.seq == seq => {
                    answer.pending = None;
                    (
                        transport,
                        answer.method.clone(),
                        answer.version,
                        answer.keep_alive,
                    )
                }
                _ => return,
            }
        };
        let response = match outcome {
            Ok(response)
                if response.status().is_informational()
                    && response.status() != StatusCode::SWITCHING_PROTOCOLS =>
            {
                log::error!(
                    "HTTP handler answered {}: not a final status",
                    response.status()
                );
                plain(StatusCode::INTERNAL_SERVER_ERROR, "internal server error\n")
            }
            Ok(response) => response,
            Err(failure) => {
                log::error!("HTTP handler failed: {failure}");
                plain(StatusCode::INTERNAL_SERVER_ERROR, "internal server error\n")
            }
        };
        let (mut parts, body) = response.into_parts();
        let mut keep_alive = keep_alive && !says_close(&parts);
        let framing = match &body {
            Body::Stream(_) => match declared_length(&parts) {
                Some(n) => Framing::Length(n),
                None if version == Version::HTTP_11 => Framing::Chunked,
                None => {
                    keep_alive = false;
                    Framing::UntilClose
                }
            },
            other => Framing::Length(other.len().unwrap_or(0)),
        };
        parts.version = Version::HTTP_11;
        if keep_alive {
            if version == Version::HTTP_10 {
                parts
                    .headers
                    .insert(CONNECTION, HeaderValue::from_static("keep-alive"));
            }
        } else if parts.status != StatusCode::SWITCHING_PROTOCOLS {
            parts
                .headers
                .insert(CONNECTION, HeaderValue::from_static("close"));
        }

        match body {
            Body::Upgrade(upgrade) if parts.status == StatusCode::SWITCHING_PROTOCOLS => {
                let head = Response::from_parts(parts, ());
                let mut encoder = self.encoder();
                let written = transport.write_with(|buf| {
                    encoder.encode(
                        ResponsePart::Head {
                            response: head,
                            framing: Framing::Length(0),
                            request_method: method.clone(),
                        },
                        buf,
                    )
                });
                if let Some(Err(err)) = written {
                    log::error!("HTTP upgrade response refused: {err}");
                    self.abort(&transport);
                    return;
                }
                self.upgrade(&transport, upgrade);
            }
            Body::Empty | Body::Full(_) | Body::File { .. }
                if parts.status == StatusCode::NOT_MODIFIED =>
            {
                // RFC 9110 §8.6: a 304's Content-Length may only be the
                // length of the content a 200 would have had; `0` would
                // make caches store an empty representation. The
                // handler's own field is that length, or none goes out.
                let framing = declared_length(&parts).map_or(Framing::UntilClose, Framing::Length);
                if self
                    .write_head(&transport, parts, framing, &method)
                    .is_some()
                {
                    self.finish(seq, keep_alive);
                }
            }
            Body::Empty | Body::Upgrade(_) => {
                if parts.status == StatusCode::SWITCHING_PROTOCOLS {
                    log::error!("HTTP handler answered 101 without an upgrade");
                    self.abort(&transport);
                    return;
                }
                self.write_whole(&transport, parts, Bytes::new(), &method, seq, keep_alive);
            }
            Body::Full(bytes) if bytes.len() > PACED_BODY && has_body(parts.status, &method) => {
                if self
                    .write_head(&transport, parts, framing, &method)
                    .is_some()
                {
                    self.write_paced(transport, bytes, seq, keep_alive);
                }
            }
            Body::Full(bytes) => {
                self.write_whole(&transport, parts, bytes, &method, seq, keep_alive);
            }
            Body::File { file, range } => {
                let len = range.end.saturating_sub(range.start);
                let status = parts.status;
                let Some(_encoder) = self.write_head(&transport, parts, framing, &method) else {
                    return;
                };
                if len == 0 || !has_body(status, &method) {
                    self.finish(seq, keep_alive);
                    return;
                }
                let conn = Rc::downgrade(self);
                // `sendfile(2)` on plain TCP.
                let sent = transport.send_file(file, range);
                sent.add_callbacks(
                    move |n| {
                        if let Some(conn) = conn.upgrade() {
                            if n == len {
                                conn.finish(seq, keep_alive);
                            } else {
                                log::warn!("HTTP file body ended {} bytes short", len - n);
                                if let Some(t) = conn.transport() {
                                    conn.abort(&t);
                                }
                            }
                        }
                        Ok(n)
                    },
                    |failure| {
                        log::debug!("HTTP file body not sent: {failure}");
                        Ok(0)
                    },
                );
            }
            Body::Stream(write) => {
                let Some(encoder) = self.write_head(&transport, parts, framing, &method) else {
                    return;
                };
                let conn = Rc::downgrade(self);
                let writer = BodyWriter::new(transport.clone(), encoder, move |outcome| {
                    if let (Some(conn), Ok(())) = (conn.upgrade(), outcome) {
                        conn.finish(seq, keep_alive);
                    }
                });
                if let Err(panic) = catch_unwind(AssertUnwindSafe(|| write(writer))) {
                    let panicked = twill::Panicked::from_payload("Body::Stream", &*panic);
                    log::error!("HTTP body writer failed: {panicked}");
                }
            }
        }
    }

    /// Writes a response whose body is in memory, then ends it.
    fn write_whole(
        self: &Rc<Self>,
        transport: &Transport,
        parts: Parts,
        body: Bytes,
        method: &Method,
        seq: u64,
        keep_alive: bool,
    ) {
        if let Err(err) = write_full(
            transport,
            self.encoder(),
            Response::from_parts(parts, body),
            method.clone(),
        ) {
            log::error!("HTTP response refused by the encoder: {err}");
            let fallback = plain_text(StatusCode::INTERNAL_SERVER_ERROR, "internal server error\n");
            let _ = write_full(transport, self.encoder(), fallback, method.clone());
        }
        self.finish(seq, keep_alive);
    }

    /// Writes a large body in memory a piece at a time, as the client
    /// reads: queued whole, it could pass the write buffer's hard cap.
    /// The pieces share the body's memory; nothing is copied.
    fn write_paced(
        self: &Rc<Self>,
        transport: Transport,
        mut body: Bytes,
        seq: u64,
        keep_alive: bool,
    ) {
        while !body.is_empty() {
            if transport.is_closing() {
                return;
            }
            if !transport.is_writable() {
                let conn = Rc::downgrade(self);
                let again = transport.clone();
                transport.when_writable(move || {
                    if let Some(conn) = conn.upgrade() {
                        conn.write_paced(again, body, seq, keep_alive);
                    }
                });
                return;
            }
            let piece = body.split_to(body.len().min(PACED_BODY));
            transport.write(piece);
        }
        self.finish(seq, keep_alive);
    }

    /// Writes a head whose body follows; `None` (and the connection
    /// aborted) if the encoder refused it.
    fn write_head(
        &self,
        transport: &Transport,
        parts: Parts,
        framing: Framing,
        method: &Method,
    ) -> Option<HttpResponseEncoder> {
        let mut encoder = self.encoder();
        let head = Response::from_parts(parts, ());
        let written = transport.write_with(|buf| {
            encoder.encode(
                ResponsePart::Head {
                    response: head,
                    framing,
                    request_method: method.clone(),
                },
                buf,
            )
        });
        match written {
            Some(Err(err)) => {
                log::error!("HTTP response head refused by the encoder: {err}");
                self.abort(transport);
                None
            }
            _ => Some(encoder),
        }
    }

    /// The answer to request `seq` is written: on to the next request, or
    /// close.
    fn finish(self: &Rc<Self>, seq: u64, keep_alive: bool) {
        let transport = {
            let mut st = self.state.borrow_mut();
            match &st.phase {
                Phase::Answering(answer) if answer.seq == seq => {}
                _ => return,
            }
            let Some(transport) = st.transport.clone() else {
                return;
            };
            if keep_alive {
                st.phase = Phase::Reading;
                st.watchdog.sent_mark = transport.bytes_sent();
                if st.input.is_empty() {
                    self.set_deadline(&mut st, Wait::Idle, self.config.idle_timeout);
                } else if !transport.is_writable() {
                    // The next request waits for the client to read.
                    self.set_deadline(&mut st, Wait::Reader, self.config.idle_timeout);
                } else {
                    // The next request has begun: its head gets its own
                    // time, not what was left of an earlier head's.
                    self.set_deadline(&mut st, Wait::Head, self.config.header_timeout);
                }
                None
            } else {
                st.phase = Phase::Done;
                Some(transport)
            }
        };
        match transport {
            Some(transport) => transport.lose_connection(),
            None => self.process(),
        }
    }

    fn upgrade(&self, transport: &Transport, upgrade: super::Upgrade) {
        let leftover = {
            let mut st = self.state.borrow_mut();
            st.phase = Phase::Done;
            if let Some(timer) = st.watchdog.timer.take() {
                let _ = timer.cancel();
            }
            st.watchdog.deadline = None;
            if st.reading_paused {
                st.reading_paused = false;
                transport.resume_reading();
            }
            std::mem::take(&mut st.input)
        };
        // The new protocol starts from a plain transport and sets what it
        // wants in `make`.
        transport.set_flow_control(false);
        // A late answer runs in a Deferred's callback, which keeps a panic
        // from reaching the reactor: without this the connection would
        // stay open with nobody to read or close it.
        let made = catch_unwind(AssertUnwindSafe(|| {
            let mut protocol = upgrade.make(transport);
            if !leftover.is_empty() {
                protocol.data_received(leftover.freeze());
            }
            protocol
        }));
        let protocol = match made {
            Ok(protocol) => protocol,
            Err(panic) => {
                let panicked = twill::Panicked::from_payload("Upgrade", &*panic);
                log::error!("HTTP upgrade failed, connection aborted: {panicked}");
                transport.abort_connection();
                return;
            }
        };
        if let Err(err) = transport.set_protocol(protocol) {
            log::debug!("HTTP upgrade on a closing connection: {err}");
        }
    }

    fn abort(&self, transport: &Transport) {
        self.state.borrow_mut().phase = Phase::Done;
        transport.abort_connection();
    }

    fn transport(&self) -> Option<Transport> {
        self.state.borrow().transport.clone()
    }

    /// An encoder that adds `Date`, and `Server` as configured, to heads
    /// whose handler did not set them.
    fn encoder(&self) -> HttpResponseEncoder {
        HttpResponseEncoder::stamped(Stamp {
            date: date::now_value(),
            server: self.config.server.clone(),
        })
    }

    fn set_deadline(self: &Rc<Self>, st: &mut State, wait: Wait, after: std::time::Duration) {
        let Some(clock) = st.clock.clone() else {
            return;
        };
        let at = clock.now() + after;
        st.watchdog.deadline = Some((at, wait));
        if st.watchdog.fires_at.is_some_and(|fires| fires <= at) {
            return;
        }
        if let Some(timer) = st.watchdog.timer.take() {
            let _ = timer.cancel();
        }
        let conn = Rc::downgrade(self);
        st.watchdog.fires_at = Some(at);
        st.watchdog.timer = Some(clock.call_later(
            after,
            Box::new(move || {
                if let Some(conn) = conn.upgrade() {
                    conn.watchdog_fired();
                }
            }),
        ));
    }

    fn watchdog_fired(self: &Rc<Self>) {
        let mut st = self.state.borrow_mut();
        let st = &mut *st;
        st.watchdog.timer = None;
        st.watchdog.fires_at = None;
        let (Some((at, wait)), Some(clock), Some(transport)) =
            (st.watchdog.deadline, st.clock.clone(), st.transport.clone())
        else {
            return;
        };
        let now = clock.now();
        if now < at {
            self.set_deadline(st, wait, at - now);
            return;
        }
        if wait == Wait::Linger {
            st.phase = Phase::Done;
            transport.lose_connection();
            return;
        }
        // A file in flight is not in the write buffer, but keeps the
        // transport from being writable until it is sent.
        let output_waits = transport.write_buffer_size() > 0
            || (!transport.is_writable() && !matches!(st.phase, Phase::Reading));
        // Whatever else it waits for, a connection whose answers are not
        // being read waits on its reader first (a pipelined request is
        // decoded only once they are).
        if output_waits {
            // Answers are waiting for the client to read them.
            let sent = transport.bytes_sent();
            if sent == st.watchdog.sent_mark {
                log::debug!("HTTP client stopped reading its answers, connection aborted");
                st.phase = Phase::Done;
                transport.abort_connection();
            } else {
                st.watchdog.sent_mark = sent;
                self.set_deadline(st, wait, self.config.idle_timeout);
            }
            return;
        }
        match (wait, &st.phase) {
            (Wait::Idle, Phase::Reading) if st.input.is_empty() && !st.decoder.in_body() => {
                log::debug!("HTTP keep-alive connection idle, closed");
                st.phase = Phase::Done;
                transport.lose_connection();
            }
            (Wait::Head | Wait::Body | Wait::Idle, Phase::Reading) => {
                let why = if wait == Wait::Body {
                    "the request's body stopped arriving"
                } else {
                    "the request's head took too long"
                };
                self.refuse(st, &transport, StatusCode::REQUEST_TIMEOUT, why.to_string());
            }
            (_, Phase::Answering(_)) => {
                // Nothing waits to be read: the handler is still working,
                // which is its business, not the client's.
                self.set_deadline(st, Wait::Reader, self.config.idle_timeout);
            }
            _ => {}
        }
    }
}

impl Watchdog {
    fn waiting_for(&self) -> Option<Wait> {
        self.deadline.map(|(_, wait)| wait)
    }
}

/// RFC 9112 §3.2: an HTTP/1.1 request carries exactly one `Host`.
fn check_host<B>(request: &Request<B>) -> Result<(), String> {
    if request.version() != Version::HTTP_11 {
        return Ok(());
    }
    match request.headers().get_all(HOST).iter().count() {
        1 => Ok(()),
        0 => Err("an HTTP/1.1 request without Host".into()),
        _ => Err("a request with several Host fields".into()),
    }
}

/// Whether a body follows the head (RFC 9110 §6.4.1).
fn has_body(status: StatusCode, method: &Method) -> bool {
    !(status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
        || method == Method::HEAD)
}

fn says_close(parts: &Parts) -> bool {
    parts
        .headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("close"))
}

fn declared_length(parts: &Parts) -> Option<u64> {
    parts
        .headers
        .get(CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn plain(status: StatusCode, text: impl Into<Bytes>) -> Response<Body> {
    plain_text(status, text).map(Body::Full)
}

fn plain_text(status: StatusCode, text: impl Into<Bytes>) -> Response<Bytes> {
    let mut response = Response::new(text.into());
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn write_full(
    transport: &Transport,
    mut encoder: HttpResponseEncoder,
    response: Response<Bytes>,
    request_method: Method,
) -> Result<(), crate::codec::EncodeError> {
    transport
        .write_with_body(|buf| {
            match encoder.encode_parts(
                ResponsePart::Full {
                    response,
                    request_method,
                },
                buf,
            ) {
                Ok(tail) => (Ok(()), tail),
                Err(err) => (Err(err), None),
            }
        })
        .unwrap_or(Ok(()))
}
