//! [`WebSocketSession`]: ping/pong and the close handshake over a
//! [`MessageCodec`], independent of any transport.

use std::io;

use bytes::{Bytes, BytesMut};

use super::message::{Message, MessageCodec};
use super::{close_code, WebSocketError};
use crate::codec::{Decoder, EncodeError, Encoder};

/// Where a [`WebSocketSession`] is in the close handshake.
///
/// ```text
///            close() sends Close               peer's Close arrives
///   Open ------------------------> CloseSent ------------------------> Closed
///     |                                                                  ^
///     | peer's Close arrives: the echo is written      a protocol error  |
///     +------------------------------------------------------------------+
///                                  (from Open: a Close with its code is written)
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SessionState {
    /// Messages flow both ways.
    Open,
    /// This side sent its Close and waits for the peer's: incoming data
    /// messages are dropped, nothing more is sent.
    CloseSent,
    /// Both Close frames went by, or an error ended the session: close the
    /// connection once the output is written. Input is dropped.
    Closed,
}

/// What [`WebSocketSession::receive`] hands to the application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// A text message.
    Text(String),
    /// A binary message.
    Binary(Bytes),
    /// A ping, already answered: its pong is in the output (unless this
    /// side had sent its Close).
    Ping(Bytes),
    /// A pong.
    Pong(Bytes),
    /// The peer's Close, with its code and reason. The session is
    /// [`Closed`](SessionState::Closed): write the output (the echoed
    /// Close, if the peer started the handshake) and close the connection.
    /// The RFC has the server close the TCP connection first (section
    /// 7.1.1): a client may give it a moment before closing its own side.
    Closed(Option<(u16, String)>),
}

/// Ping/pong and the close handshake (RFC 6455 sections 5.5 and 7) as a
/// state machine, what Netty's `WebSocketProtocolHandler` and
/// `WebSocketCloseFrameHandler` do in a pipeline: bytes in, messages for
/// the application and bytes to send out, no transport. A protocol feeds it what it reads and writes what it
/// puts in `out`; tests drive it in memory.
///
/// - A ping is answered with a pong carrying the same payload.
/// - The peer's Close is answered with a Close echoing its code (an empty
///   Close for an empty one); then the session is
///   [`Closed`](SessionState::Closed) and the caller closes the
///   connection.
/// - After [`close`](Self::close), data messages and pings are dropped
///   until the peer's Close arrives; [`send`](Self::send) refuses.
/// - A protocol error writes a Close with the error's code (1002, 1007,
///   1009) and closes the session; `receive` returns the error.
///
/// # Examples
///
/// ```
/// use bytes::BytesMut;
/// use twill_protocols::websocket::{
///     FrameCodec, Message, MessageCodec, Received, Role, SessionState, WebSocketSession,
/// };
/// use twill_protocols::codec::Encoder;
///
/// let mut server = WebSocketSession::new(MessageCodec::new(Role::Server));
/// let mut client = MessageCodec::new(Role::Client);
/// let mut wire = BytesMut::new();
/// client.encode(Message::Ping("are you there".into()), &mut wire)?;
/// client.encode(Message::Close(Some((1000, "bye".into()))), &mut wire)?;
///
/// let mut out = BytesMut::new();
/// assert_eq!(server.receive(&mut wire, &mut out)?, Some(Received::Ping("are you there".into())));
/// assert_eq!(
///     server.receive(&mut wire, &mut out)?,
///     Some(Received::Closed(Some((1000, "bye".into())))),
/// );
/// assert_eq!(server.state(), SessionState::Closed);
/// // The pong and the echoed close, unmasked: a server's frames.
/// assert_eq!(&out[..], b"\x8a\x0dare you there\x88\x02\x03\xe8");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct WebSocketSession {
    codec: MessageCodec,
    state: SessionState,
}

impl WebSocketSession {
    /// A session over `codec`, open.
    pub fn new(codec: MessageCodec) -> WebSocketSession {
        WebSocketSession {
            codec,
            state: SessionState::Open,
        }
    }

    /// Where the session is in the close handshake.
    pub fn state(&self) -> SessionState {
        self.state
    }

    /// The codec underneath.
    pub fn codec(&self) -> &MessageCodec {
        &self.codec
    }

    /// Decodes from `src` until there is something for the application,
    /// writing to `out` what must be sent in reply (pongs, the echoed
    /// Close). `Ok(None)`: more input is needed, or the session is closed.
    ///
    /// # Errors
    ///
    /// The peer broke the protocol: the Close with the error's code is in
    /// `out` (if this side had not sent its Close yet), the session is
    /// closed, and the caller closes the connection once `out` is written.
    pub fn receive(
        &mut self,
        src: &mut BytesMut,
        out: &mut BytesMut,
    ) -> Result<Option<Received>, WebSocketError> {
        loop {
            if self.state == SessionState::Closed {
                src.clear();
                return Ok(None);
            }
            let message = match self.codec.decode(src) {
                Ok(Some(message)) => message,
                Ok(None) => return Ok(None),
                Err(err) => {
                    let err = WebSocketError::from_decode_error(err);
                    if self.state == SessionState::Open {
                        self.write(Message::Close(Some((err.code(), String::new()))), out);
                    }
                    self.state = SessionState::Closed;
                    return Err(err);
                }
            };
            let closing = self.state == SessionState::CloseSent;
            match message {
                Message::Close(payload) => {
                    if !closing {
                        let echo = payload.as_ref().map(|(code, _)| (*code, String::new()));
                        self.write(Message::Close(echo), out);
                    }
                    self.state = SessionState::Closed;
                    return Ok(Some(Received::Closed(payload)));
                }
                Message::Ping(data) => {
                    if closing {
                        continue;
                    }
                    self.write(Message::Pong(data.clone()), out);
                    return Ok(Some(Received::Ping(data)));
                }
                Message::Pong(data) => return Ok(Some(Received::Pong(data))),
                // The application has said it is done: what the peer sent
                // before it saw our Close is dropped.
                Message::Text(_) | Message::Binary(_) if closing => continue,
                Message::Text(text) => return Ok(Some(Received::Text(text))),
                Message::Binary(data) => return Ok(Some(Received::Binary(data))),
            }
        }
    }

    /// Writes `message` to `out`; a [`Message::Close`] is the same as
    /// [`close`](Self::close).
    ///
    /// # Errors
    ///
    /// The session is closing or closed ([`EncodeError::Io`], `NotConnected`),
    /// or a control message's payload is over 125 bytes.
    pub fn send(&mut self, message: Message, out: &mut BytesMut) -> Result<(), EncodeError> {
        if self.state != SessionState::Open {
            return Err(EncodeError::Io(io::Error::new(
                io::ErrorKind::NotConnected,
                "the WebSocket close handshake has begun",
            )));
        }
        if let Message::Close(payload) = message {
            let (code, reason) = payload.unwrap_or((close_code::NORMAL, String::new()));
            self.close(code, &reason, out);
            return Ok(());
        }
        self.codec.encode(message, out)
    }

    /// Starts the close handshake: writes a Close with `code` and `reason`
    /// (cut to fit 123 bytes) to `out`. Returns false, writing nothing, if
    /// this side already sent its Close.
    pub fn close(&mut self, code: u16, reason: &str, out: &mut BytesMut) -> bool {
        if self.state != SessionState::Open {
            return false;
        }
        self.write(Message::Close(Some((code, reason.to_owned()))), out);
        self.state = SessionState::CloseSent;
        true
    }

    /// Writes a control message this session made itself (always valid).
    fn write(&mut self, message: Message, out: &mut BytesMut) {
        // Pongs echo pings of at most 125 bytes and closes are cut to fit,
        // so this cannot fail; a failure would only drop the reply.
        if let Err(err) = self.codec.encode(message, out) {
            log::warn!("WebSocket control frame not sent: {err}");
        }
    }
}
