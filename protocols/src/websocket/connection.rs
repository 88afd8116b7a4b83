//! [`WebSocketProtocol`]: a [`WebSocketSession`] on a transport, with the
//! closing timer, keep-alive pings and flow control, calling a
//! [`WebSocketHandler`].

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::fmt;
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::{Rc, Weak};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use twill::{DelayedCall, Protocol, ReactorTime, Reason, Transport};

use super::config::WebSocketConfig;
use super::handle::{WebSocket, WebSocketHandler};
use super::message::Message;
use super::session::{Received, SessionState, WebSocketSession};
use super::{close_code, Role, WebSocketError};
use crate::codec::EncodeError;

/// What one connection shares between its protocol, its handles and its
/// timers.
pub(super) struct Shared {
    pub(super) role: Role,
    pub(super) subprotocol: Option<String>,
    closing_timeout: Duration,
    ping_interval: Option<Duration>,
    pong_timeout: Duration,
    time: Rc<dyn ReactorTime>,
    pub(super) transport: Transport,
    pub(super) session: RefCell<WebSocketSession>,
    /// Taken (and dropped, which breaks the cycle through a handle the
    /// handler keeps) after `on_close`.
    handler: RefCell<Option<Box<dyn WebSocketHandler>>>,
    /// What `on_close` will report, once known: the first of the peer's
    /// Close and this side's error.
    ending: RefCell<Option<(Option<u16>, String)>>,
    closing_timer: RefCell<Option<DelayedCall>>,
    ping_timer: RefCell<Option<DelayedCall>>,
    pong_timer: RefCell<Option<DelayedCall>>,
    pings_sent: Cell<u64>,
    pub(super) lost: Cell<bool>,
}

impl Shared {
    fn handle(self: &Rc<Self>) -> WebSocket {
        WebSocket {
            shared: self.clone(),
        }
    }

    pub(super) fn send(&self, message: Message) -> io::Result<()> {
        if self.lost.get() {
            return Err(not_connected());
        }
        let mut session = self.session.borrow_mut();
        match self.transport.write_with(|buf| session.send(message, buf)) {
            None => Err(not_connected()),
            Some(Ok(())) => Ok(()),
            Some(Err(EncodeError::Io(err))) => Err(err),
            Some(Err(err)) => Err(io::Error::new(io::ErrorKind::InvalidInput, err.to_string())),
        }
    }

    /// Writes a Close with `code` unless one was sent; arms the closing
    /// timer either way.
    pub(super) fn close(self: &Rc<Self>, code: u16, reason: &str) {
        if self.lost.get() {
            return;
        }
        let mut session = self.session.borrow_mut();
        self.transport
            .write_with(|buf| session.close(code, reason, buf));
        drop(session);
        self.arm_closing_timer();
    }

    /// Records what `on_close` reports, unless something came first.
    fn record_ending(&self, code: Option<u16>, reason: impl Into<String>) {
        self.ending
            .borrow_mut()
            .get_or_insert_with(|| (code, reason.into()));
    }

    /// This side is done: closes the TCP connection once the output is
    /// sent, at most the closing timeout from now.
    fn close_transport(self: &Rc<Self>) {
        self.transport.lose_connection();
        self.arm_closing_timer();
        // A closing transport is not writable: this runs once the
        // connection is over, right after `connection_lost`. It ends the
        // connection for a protocol that never received that call,
        // because the connection closed while it was being installed
        // (`Transport::set_protocol` refuses a closing connection, and
        // drops the protocol: hence a strong reference, which the
        // transport lets go of when it runs or is discarded).
        let shared = self.clone();
        self.transport
            .when_writable(move || shared.ended("the connection closed"));
    }

    /// The connection is over: stops the timers and calls `on_close`,
    /// once.
    fn ended(&self, why: &str) {
        if self.lost.replace(true) {
            return;
        }
        self.stop_timers();
        self.record_ending(None, format!("no close handshake: {why}"));
        let (code, reason) = self.ending.borrow().clone().expect("recorded just above");
        let handler = self.handler.borrow_mut().take();
        if let Some(mut handler) = handler {
            if let Err(payload) = catch_unwind(AssertUnwindSafe(|| handler.on_close(code, &reason)))
            {
                log::error!(
                    "WebSocket handler for {} panicked in on_close: {}",
                    self.transport.peer(),
                    panic_message(&*payload)
                );
            }
        }
    }

    /// Ends the connection with a Close carrying `code` (an error here),
    /// then closes the TCP connection.
    fn fail(self: &Rc<Self>, code: u16, reason: &str) {
        self.record_ending(Some(code), reason);
        self.close(code, reason);
        self.close_transport();
    }

    fn arm_closing_timer(self: &Rc<Self>) {
        if self.lost.get() || self.closing_timer.borrow().is_some() {
            return;
        }
        let call = call_later_weak(&*self.time, self.closing_timeout, self, |shared| {
            log::debug!(
                "WebSocket peer {} did not finish the close handshake within {:?}; aborting",
                shared.transport.peer(),
                shared.closing_timeout
            );
            shared.record_ending(None, "the close handshake timed out");
            shared.transport.abort_connection();
        });
        *self.closing_timer.borrow_mut() = Some(call);
    }

    fn schedule_ping(self: &Rc<Self>) {
        let Some(interval) = self.ping_interval else {
            return;
        };
        let call = call_later_weak(&*self.time, interval, self, |shared| {
            shared.keep_alive();
            shared.schedule_ping();
        });
        *self.ping_timer.borrow_mut() = Some(call);
    }

    /// The keep-alive tick: a ping, unless the last one is still waiting
    /// for its pong (its own timer decides).
    fn keep_alive(self: &Rc<Self>) {
        if self.lost.get() || self.pong_timer.borrow().is_some() {
            return;
        }
        if self.session.borrow().state() != SessionState::Open {
            return;
        }
        let count = self.pings_sent.get() + 1;
        self.pings_sent.set(count);
        let payload = Bytes::copy_from_slice(&count.to_be_bytes());
        if self.send(Message::Ping(payload)).is_err() {
            return;
        }
        let call = call_later_weak(&*self.time, self.pong_timeout, self, |shared| {
            shared.pong_timer.borrow_mut().take();
            log::debug!(
                "WebSocket peer {} did not answer a ping within {:?}; closing",
                shared.transport.peer(),
                shared.pong_timeout
            );
            shared.fail(close_code::INTERNAL_ERROR, "keep-alive ping timed out");
        });
        *self.pong_timer.borrow_mut() = Some(call);
    }

    fn pong_received(&self) {
        if let Some(call) = self.pong_timer.borrow_mut().take() {
            let _ = call.cancel();
        }
    }

    /// The peer's Close arrived (the session answered it if needed).
    fn peer_closed(self: &Rc<Self>, payload: Option<(u16, String)>) {
        match payload {
            Some((code, reason)) => self.record_ending(Some(code), reason),
            None => self.record_ending(None, "the peer closed with no code"),
        }
        match self.role {
            // The server closes the TCP connection first (RFC 6455 7.1.1).
            Role::Server => self.close_transport(),
            Role::Client => self.arm_closing_timer(),
        }
    }

    /// Calls the handler, turning a panic into a close with 1011.
    fn call_handler(
        self: &Rc<Self>,
        callback: &'static str,
        f: impl FnOnce(&mut dyn WebSocketHandler, &WebSocket),
    ) {
        let ws = self.handle();
        let result = {
            let mut slot = self.handler.borrow_mut();
            let Some(handler) = slot.as_mut() else {
                return;
            };
            catch_unwind(AssertUnwindSafe(|| f(handler.as_mut(), &ws)))
        };
        if let Err(payload) = result {
            let message = panic_message(&*payload);
            log::error!(
                "WebSocket handler for {} panicked in {callback}: {message}; closing that connection",
                self.transport.peer()
            );
            self.fail(
                close_code::INTERNAL_ERROR,
                &format!("handler panicked in {callback}"),
            );
        }
    }

    fn stop_timers(&self) {
        for timer in [&self.closing_timer, &self.ping_timer, &self.pong_timer] {
            if let Some(call) = timer.borrow_mut().take() {
                let _ = call.cancel();
            }
        }
    }
}

fn not_connected() -> io::Error {
    io::Error::new(
        io::ErrorKind::NotConnected,
        "the WebSocket connection is closing or closed",
    )
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "a panic with no message".to_owned()
    }
}

/// Runs `fire` on `owner` after `delay`, unless `owner` is gone by then.
fn call_later_weak(
    time: &dyn ReactorTime,
    delay: Duration,
    owner: &Rc<Shared>,
    fire: impl FnOnce(&Rc<Shared>) + 'static,
) -> DelayedCall {
    let weak: Weak<Shared> = Rc::downgrade(owner);
    time.call_later(
        delay,
        Box::new(move || {
            if let Some(owner) = weak.upgrade() {
                fire(&owner);
            }
        }),
    )
}

/// The [`Protocol`] that speaks WebSocket (RFC 6455) on a connection whose
/// opening handshake is done, calling a [`WebSocketHandler`]: what
/// [`accept`](super::accept) and [`WebSocketClient`](super::WebSocketClient)
/// install after the handshake, and what a protocol of your own can hand
/// the connection to with
/// [`Transport::set_protocol`] (calling its `connection_made` first).
///
/// # What it does
///
/// - Pings are answered with pongs; the close handshake is run by its
///   [`WebSocketSession`]. After the close handshake a server closes the
///   TCP connection; a client waits for the server to close it.
/// - A protocol error by the peer (the codec's [`WebSocketError`]s) is
///   answered with a Close carrying its code (1002, 1007, 1009), then the
///   TCP connection is closed.
/// - The closing timer: once this side has sent a Close (or, as a client,
///   received the peer's), the peer has the closing timeout to finish the
///   handshake and the TCP close; then the connection is aborted.
/// - Keep-alive pings (off by default): every ping interval a ping, if
///   the last one was answered; a ping with no pong within the pong
///   timeout closes the connection with code 1011 (the Close is written,
///   the TCP connection closed, and aborted after the closing timeout if
///   the Close cannot even be sent).
/// - A panic in the handler: logged, code 1011, that connection only.
///
/// # Memory and flow control
///
/// A peer can make this side buffer three things, each bounded:
///
/// | what | bound | past it |
/// |---|---|---|
/// | a frame or message being received | max frame payload, max message size | close code 1009, from the frame's header, before its payload is read |
/// | replies the connection makes itself (pongs, the echoed Close) | the transport's high watermark plus one read's worth: flow control is on, so the connection stops reading while the write buffer is over the high watermark, and a peer that does not read its pongs is not read either | - |
/// | what the application sends | the transport's hard cap ([`WebSocketConfigBuilder::write_buffer_max`](super::WebSocketConfigBuilder::write_buffer_max)) | the connection is aborted; see [`WebSocket`]'s flow control |
///
/// # Examples
///
/// An echo server without HTTP, for the shape: `connection_made` is where
/// the connection starts (a real server gets there through
/// [`accept`](super::accept)):
///
/// ```
/// use twill::testing::StringTransport;
/// use twill::Protocol;
/// use twill_protocols::websocket::{Message, Role, WebSocket, WebSocketConfig, WebSocketProtocol};
///
/// let reactor = twill::Reactor::new()?;
/// let echo = |ws: &WebSocket, message: Message| {
///     let _ = ws.send(message);
/// };
/// let mut protocol = WebSocketProtocol::new(Role::Server, WebSocketConfig::default(), echo);
/// let recorder = StringTransport::new();
/// protocol.connection_made(&recorder.transport());
/// // A masked text frame "Hi", as a client sends it.
/// protocol.data_received(twill::Bytes::from_static(b"\x81\x82\x00\x00\x00\x00Hi"));
/// assert_eq!(recorder.value(), b"\x81\x02Hi");
/// # drop(reactor);
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct WebSocketProtocol {
    waiting: Option<(Role, WebSocketConfig, Box<dyn WebSocketHandler>)>,
    subprotocol: Option<String>,
    shared: Option<Rc<Shared>>,
    input: BytesMut,
}

impl WebSocketProtocol {
    /// The protocol for `role`'s side of a connection, with `config`,
    /// calling `handler`. It starts at `connection_made`.
    pub fn new(
        role: Role,
        config: WebSocketConfig,
        handler: impl WebSocketHandler,
    ) -> WebSocketProtocol {
        WebSocketProtocol::with_boxed_handler(role, config, Box::new(handler))
    }

    pub(crate) fn with_boxed_handler(
        role: Role,
        config: WebSocketConfig,
        handler: Box<dyn WebSocketHandler>,
    ) -> WebSocketProtocol {
        WebSocketProtocol {
            waiting: Some((role, config, handler)),
            subprotocol: None,
            shared: None,
            input: BytesMut::new(),
        }
    }

    /// Records the subprotocol the opening handshake settled on, for
    /// [`WebSocket::protocol`].
    pub fn with_subprotocol(mut self, protocol: Option<String>) -> WebSocketProtocol {
        self.subprotocol = protocol;
        self
    }

    /// The handle on the connection, once it is made.
    pub fn websocket(&self) -> Option<WebSocket> {
        self.shared.as_ref().map(Shared::handle)
    }

    /// Decodes what the input holds, handing messages to the handler.
    fn process(&mut self) {
        let Some(shared) = self.shared.clone() else {
            self.input.clear();
            return;
        };
        loop {
            if shared.lost.get() {
                self.input.clear();
                return;
            }
            let input = &mut self.input;
            let received = {
                let mut session = shared.session.borrow_mut();
                if session.state() == SessionState::Closed {
                    input.clear();
                    return;
                }
                let mut result = None;
                shared
                    .transport
                    .write_with(|out| result = Some(session.receive(input, out)));
                match result {
                    Some(result) => result,
                    // The connection is closed: nothing more to do.
                    None => {
                        input.clear();
                        return;
                    }
                }
            };
            match received {
                Ok(None) => return,
                Ok(Some(Received::Text(text))) => {
                    shared.call_handler("on_message", |handler, ws| {
                        handler.on_message(ws, Message::Text(text))
                    });
                }
                Ok(Some(Received::Binary(data))) => {
                    shared.call_handler("on_message", |handler, ws| {
                        handler.on_message(ws, Message::Binary(data))
                    });
                }
                Ok(Some(Received::Ping(_))) => {}
                Ok(Some(Received::Pong(_))) => shared.pong_received(),
                Ok(Some(Received::Closed(payload))) => shared.peer_closed(payload),
                Err(err) => protocol_error(&shared, err),
            }
        }
    }
}

fn protocol_error(shared: &Rc<Shared>, err: WebSocketError) {
    log::debug!(
        "WebSocket peer {} broke the protocol: {err}",
        shared.transport.peer()
    );
    // The session has written the Close with the error's code.
    shared.record_ending(Some(err.code()), err.reason());
    shared.close_transport();
}

impl Protocol for WebSocketProtocol {
    fn connection_made(&mut self, transport: &Transport) {
        let Some((role, config, handler)) = self.waiting.take() else {
            return;
        };
        transport.set_flow_control(true);
        if let Some(max) = config.write_buffer_max() {
            transport.set_write_buffer_max(max);
        }
        let shared = Rc::new(Shared {
            role,
            subprotocol: self.subprotocol.take(),
            closing_timeout: config.closing_timeout(),
            ping_interval: config.ping_interval(),
            pong_timeout: config.pong_timeout(),
            time: config.time(),
            transport: transport.clone(),
            session: RefCell::new(WebSocketSession::new(config.codec(role))),
            handler: RefCell::new(Some(handler)),
            ending: RefCell::new(None),
            closing_timer: RefCell::new(None),
            ping_timer: RefCell::new(None),
            pong_timer: RefCell::new(None),
            pings_sent: Cell::new(0),
            lost: Cell::new(false),
        });
        self.shared = Some(shared.clone());
        shared.schedule_ping();
        shared.call_handler("on_open", |handler, ws| handler.on_open(ws));
    }

    fn data_received(&mut self, data: Bytes) {
        if self.input.is_empty() {
            // Most reads hold whole frames: take the read's buffer as is.
            self.input = BytesMut::from(data);
        } else {
            self.input.extend_from_slice(&data);
        }
        self.process();
    }

    fn get_buffer(&mut self) -> Option<&mut BytesMut> {
        Some(&mut self.input)
    }

    fn buffer_updated(&mut self, _appended: usize) {
        self.process();
    }

    fn connection_lost(&mut self, reason: &Reason) {
        self.input = BytesMut::new();
        if let Some(shared) = &self.shared {
            shared.ended(&reason.to_string());
        }
    }
}

impl fmt::Debug for WebSocketProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebSocketProtocol")
            .field("websocket", &self.websocket())
            .field("buffered_input", &self.input.len())
            .finish()
    }
}
