//! What an application sees of a WebSocket connection: the
//! [`WebSocketHandler`] it implements and the [`WebSocket`] handle it
//! sends through.

use std::fmt;
use std::io;
use std::rc::Rc;

use bytes::Bytes;
use twill::{Address, Transport};

use super::connection::Shared;
use super::message::{is_valid_close_code, Message};
use super::session::SessionState;
use super::{close_code, Role};

/// What an application implements to use a WebSocket connection:
/// Autobahn's `onOpen`, `onMessage` and `onClose`. Each connection has its
/// own handler.
///
/// A closure `|ws: &WebSocket, message: Message| ...` is a handler with
/// only `on_message`.
///
/// A panic in any of these closes that connection only: it is logged, a
/// Close frame with code 1011 is sent, and `on_close` follows (reporting
/// 1011) like for any other end.
pub trait WebSocketHandler: 'static {
    /// The connection is open (the opening handshake is done). Keep a
    /// clone of `ws` to send later.
    fn on_open(&mut self, ws: &WebSocket) {
        let _ = ws;
    }

    /// A whole message arrived: [`Message::Text`] or [`Message::Binary`]
    /// (pings are answered, and the close handshake run, by the
    /// connection).
    fn on_message(&mut self, ws: &WebSocket, message: Message);

    /// The connection is over; called exactly once, last, whatever ended
    /// it. `code` is:
    ///
    /// - the code of the peer's Close frame, once it arrived (whichever
    ///   side began the close handshake); `None` if it had no code;
    /// - the code this side closed with because of an error: the peer's
    ///   protocol error (1002, 1007, 1009), a panic in this handler
    ///   (1011), a keep-alive ping with no answer (1011);
    /// - `None` when the connection ended with no Close frame from the
    ///   peer and no error here: a reset, an EOF, a peer that did not
    ///   answer this side's Close within the closing timeout, an abort at
    ///   the write buffer's hard cap.
    ///
    /// `reason` is the peer's reason, or says what happened.
    fn on_close(&mut self, code: Option<u16>, reason: &str) {
        let _ = (code, reason);
    }
}

impl<F> WebSocketHandler for F
where
    F: FnMut(&WebSocket, Message) + 'static,
{
    fn on_message(&mut self, ws: &WebSocket, message: Message) {
        self(ws, message)
    }
}

/// A handle on an open WebSocket connection, to send messages, ping and
/// close it: Autobahn's `sendMessage`/`sendClose`, the browser's
/// `WebSocket`. Clones (cheap: an `Rc` inside) refer to the same
/// connection; a clone kept after the connection is over refuses to send.
///
/// # Flow control
///
/// Sends go to the transport's write buffer, which is bounded: past its
/// hard cap ([`WebSocketConfigBuilder::write_buffer_max`](super::WebSocketConfigBuilder::write_buffer_max),
/// else the transport's 16 MiB) the connection is aborted and `on_close`
/// follows. An application that sends more than the peer reads should
/// watch [`is_writable`](Self::is_writable) (false over the high
/// watermark, 64 KiB by default) and send the rest in
/// [`when_writable`](Self::when_writable), or look at
/// [`buffered_amount`](Self::buffered_amount) as a browser's code does.
#[derive(Clone)]
pub struct WebSocket {
    pub(super) shared: Rc<Shared>,
}

impl WebSocket {
    /// Sends a text message.
    ///
    /// # Errors
    ///
    /// `NotConnected` once the close handshake has begun or the connection
    /// is over.
    pub fn send_text(&self, text: impl Into<String>) -> io::Result<()> {
        self.send(Message::Text(text.into()))
    }

    /// Sends a binary message.
    ///
    /// # Errors
    ///
    /// As [`send_text`](Self::send_text).
    pub fn send_binary(&self, data: impl Into<Bytes>) -> io::Result<()> {
        self.send(Message::Binary(data.into()))
    }

    /// Sends `message`, as one frame. A [`Message::Close`] is
    /// [`close`](Self::close) (with 1000 for a close with no code).
    ///
    /// # Errors
    ///
    /// `NotConnected` once the close handshake has begun or the connection
    /// is over; `InvalidInput` for a ping or pong over 125 bytes or a close
    /// code that must not be sent.
    pub fn send(&self, message: Message) -> io::Result<()> {
        if let Message::Close(payload) = message {
            let (code, reason) = payload.unwrap_or((close_code::NORMAL, String::new()));
            return self.close(code, &reason);
        }
        self.shared.send(message)
    }

    /// Sends a ping with `payload` (at most 125 bytes); the peer's pong
    /// is not reported.
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send).
    pub fn ping(&self, payload: impl Into<Bytes>) -> io::Result<()> {
        self.send(Message::Ping(payload.into()))
    }

    /// Begins the close handshake: sends a Close frame with `code` and
    /// `reason` (cut to fit a frame) and waits for the peer's, at most the
    /// closing timeout; then the connection closes and `on_close` follows.
    /// Does nothing if the handshake has already begun.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a code that must not be sent (see
    /// [`is_valid_close_code`](super::is_valid_close_code)).
    pub fn close(&self, code: u16, reason: &str) -> io::Result<()> {
        if !is_valid_close_code(code) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("close code {code} must not be sent"),
            ));
        }
        self.shared.close(code, reason);
        Ok(())
    }

    /// Whether messages can be sent: the connection is up and the close
    /// handshake has not begun.
    pub fn is_open(&self) -> bool {
        !self.shared.lost.get()
            && !self.shared.transport.is_closing()
            && self.shared.session.borrow().state() == SessionState::Open
    }

    /// The connection's transport.
    pub fn transport(&self) -> &Transport {
        &self.shared.transport
    }

    /// The peer's address.
    pub fn peer(&self) -> Address {
        self.shared.transport.peer()
    }

    /// The side of the connection this is.
    pub fn role(&self) -> Role {
        self.shared.role
    }

    /// The subprotocol the opening handshake settled on
    /// (`Sec-WebSocket-Protocol`), if any.
    pub fn protocol(&self) -> Option<&str> {
        self.shared.subprotocol.as_deref()
    }

    /// Bytes sent but not yet handed to the kernel: the browser's
    /// `bufferedAmount`.
    pub fn buffered_amount(&self) -> usize {
        self.shared.transport.write_buffer_size()
    }

    /// Whether sends are welcome: false while the write buffer is over its
    /// high watermark, and once the connection is closing.
    pub fn is_writable(&self) -> bool {
        self.shared.transport.is_writable()
    }

    /// Runs `f` once sends are welcome again (at once if they are now), or
    /// once the connection is over; see
    /// [`Transport::when_writable`].
    pub fn when_writable(&self, f: impl FnOnce() + 'static) {
        self.shared.transport.when_writable(f);
    }

    /// Whether two handles are for the same connection.
    pub fn same_connection(&self, other: &WebSocket) -> bool {
        Rc::ptr_eq(&self.shared, &other.shared)
    }
}

impl fmt::Debug for WebSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebSocket")
            .field("role", &self.shared.role)
            .field("peer", &self.shared.transport.peer())
            .field("state", &self.shared.session.borrow().state())
            .finish()
    }
}
