//! WebSocket (RFC 6455): connections for servers and clients, and the
//! codecs underneath. Autobahn's `WebSocketServerProtocol` and
//! `WebSocketClientProtocol` in twill's model; Netty's
//! `WebSocket13FrameDecoder`/`WebSocket13FrameEncoder` and
//! `WebSocketServerProtocolHandler`. Behind the `websocket` feature (which
//! turns on `http`).
//!
//! The layers, top down; each is usable alone:
//!
//! - [`accept`] / [`WebSocketAcceptor`] (server) and [`connect`] /
//!   [`WebSocketClient`] (client) run the opening handshake, over an
//!   [`HttpServer`](crate::http::HttpServer) request or a TCP connection
//!   of their own, and install a [`WebSocketProtocol`].
//! - [`WebSocketProtocol`] is the [`Protocol`](twill::Protocol) on the
//!   connection: it calls your [`WebSocketHandler`] (`on_open`,
//!   `on_message`, `on_close`), which sends through a [`WebSocket`]
//!   handle. It adds the closing timer, keep-alive pings, flow control and
//!   fault isolation; [`WebSocketConfig`] sets its options.
//! - [`WebSocketSession`] answers pings and runs the close handshake; it
//!   returns the bytes to send and never touches a transport.
//! - [`MessageCodec`] reassembles fragmented messages into [`Message`]s,
//!   checks text for UTF-8 and parses close payloads, with a maximum
//!   message size.
//! - [`FrameCodec`] decodes and encodes single frames (the frame format is
//!   drawn in its docs), enforcing the masking rules of its [`Role`] and a
//!   maximum frame payload.
//!
//! The opening handshake's WebSocket-specific parts are also there on
//! their own: [`check_request`], [`check_response`], [`accept_key`] and
//! [`generate_key`], over plain `(name, value)` header pairs.
//!
//! # A server and a client
//!
//! An echo server at `/echo` on an [`HttpServer`](crate::http::HttpServer),
//! and a client that sends one message and closes when it comes back:
//!
//! ```
//! use std::{cell::RefCell, rc::Rc};
//! use http::Request;
//! use twill::Bytes;
//! use twill_protocols::http::HttpServer;
//! use twill_protocols::websocket::{self, Message, WebSocket, WebSocketHandler};
//!
//! let reactor = twill::Reactor::new()?;
//!
//! let server = HttpServer::new(|request: Request<Bytes>| {
//!     let echo = |ws: &WebSocket, message: Message| {
//!         let _ = ws.send(message);
//!     };
//!     twill::defer::succeed(websocket::accept(&request, echo))
//! });
//! let port = reactor.listen_tcp("127.0.0.1:0", server)?;
//!
//! /// Says hello, and closes once the echo is back.
//! struct Hello(Rc<RefCell<Vec<String>>>);
//!
//! impl WebSocketHandler for Hello {
//!     fn on_open(&mut self, ws: &WebSocket) {
//!         ws.send_text("hello").unwrap();
//!     }
//!     fn on_message(&mut self, ws: &WebSocket, message: Message) {
//!         self.0.borrow_mut().push(format!("{message:?}"));
//!         ws.close(1000, "thanks").unwrap();
//!     }
//!     fn on_close(&mut self, code: Option<u16>, _reason: &str) {
//!         self.0.borrow_mut().push(format!("closed {code:?}"));
//!         twill::stop();
//!     }
//! }
//!
//! let seen = Rc::new(RefCell::new(Vec::new()));
//! let addr = port.host().tcp().unwrap();
//! drop(websocket::connect(addr, "127.0.0.1", "/echo", Hello(seen.clone())));
//! reactor.run()?;
//! assert_eq!(*seen.borrow(), ["Text(\"hello\")", "closed Some(1000)"]);
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! # Limits
//!
//! | limit | default | hard maximum | past it |
//! |---|---|---|---|
//! | frame payload ([`FrameCodecBuilder::max_frame_payload`]) | 1 MiB | 16 MiB | close code 1009, from the frame's header, before any of its payload is buffered |
//! | message size ([`MessageCodecBuilder::max_message_size`]) | 1 MiB | 64 MiB | close code 1009, from the header of the frame that would pass it |
//! | control frame payload | 125 bytes | (the RFC's) | close code 1002 |
//! | a connection's write buffer ([`WebSocketConfigBuilder::write_buffer_max`]) | the transport's, 16 MiB | - | the connection is aborted; see [`WebSocketProtocol`] for flow control |
//! | waiting for the peer's Close ([`WebSocketConfigBuilder::closing_timeout`]) | 5 s | 10 min | the connection is aborted |
//! | a keep-alive ping's pong ([`WebSocketConfigBuilder::pong_timeout`]) | 20 s (pings off by default) | - | close code 1011 |
//!
//! # Errors
//!
//! Decoding errors are [`WebSocketError`]s inside
//! [`DecodeError::Other`]; each carries
//! the close code to send ([`WebSocketError::from_decode_error`] gets it
//! back). None is recoverable: the WebSocket connection must be closed.
//!
//! # The codecs alone
//!
//! A client writes a masked text message; the server's session reads it
//! and both sides go through the close handshake, all in memory:
//!
//! ```
//! use bytes::BytesMut;
//! use twill_protocols::websocket::{
//!     close_code, Message, MessageCodec, Received, Role, SessionState, WebSocketSession,
//! };
//!
//! let mut client = WebSocketSession::new(MessageCodec::new(Role::Client));
//! let mut server = WebSocketSession::new(MessageCodec::new(Role::Server));
//!
//! let mut to_server = BytesMut::new();
//! client.send(Message::Text("Hello".into()), &mut to_server)?;
//! client.close(close_code::NORMAL, "done", &mut to_server);
//! assert_eq!(to_server[1] & 0x80, 0x80, "a client's frames are masked");
//!
//! let mut to_client = BytesMut::new();
//! assert_eq!(
//!     server.receive(&mut to_server, &mut to_client)?,
//!     Some(Received::Text("Hello".into()))
//! );
//! assert_eq!(
//!     server.receive(&mut to_server, &mut to_client)?,
//!     Some(Received::Closed(Some((1000, "done".into()))))
//! );
//! assert_eq!(server.state(), SessionState::Closed); // now close the TCP connection
//!
//! let mut nothing = BytesMut::new();
//! assert_eq!(
//!     client.receive(&mut to_client, &mut nothing)?,
//!     Some(Received::Closed(Some((1000, String::new()))))
//! );
//! assert_eq!(client.state(), SessionState::Closed);
//! assert!(nothing.is_empty(), "no echo of an echo");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Differences from Netty
//!
//! - Text is checked for UTF-8 as fragments arrive in the message codec,
//!   not in a separate `Utf8FrameValidator` handler.
//! - No extensions (permessage-deflate) yet: RSV bits are always an error.

mod client;
mod config;
mod connection;
mod frame;
mod handle;
mod handshake;
mod message;
mod server;
mod session;

use std::error::Error;
use std::fmt;

use crate::codec::DecodeError;

pub use client::{
    connect, ClientError, WebSocketClient, DEFAULT_CONNECT_TIMEOUT, DEFAULT_HANDSHAKE_TIMEOUT,
};
pub use config::{
    WebSocketConfig, WebSocketConfigBuilder, DEFAULT_CLOSING_TIMEOUT, DEFAULT_PONG_TIMEOUT,
    MAX_CLOSING_TIMEOUT,
};
pub use connection::WebSocketProtocol;
pub use frame::{
    apply_mask, Frame, FrameCodec, FrameCodecBuilder, OpCode, DEFAULT_MAX_FRAME_PAYLOAD,
    HARD_MAX_FRAME_PAYLOAD, MAX_CONTROL_PAYLOAD,
};
pub use handle::{WebSocket, WebSocketHandler};
pub use handshake::{
    accept_key, check_request, check_response, generate_key, is_valid_key, HandshakeError,
    WEBSOCKET_VERSION,
};
pub use message::{
    is_valid_close_code, parse_close_payload, Message, MessageCodec, MessageCodecBuilder,
    DEFAULT_MAX_MESSAGE_SIZE, HARD_MAX_MESSAGE_SIZE,
};
pub use server::{accept, WebSocketAcceptor};
pub use session::{Received, SessionState, WebSocketSession};

/// Which side of the connection a codec is on. It decides the masking
/// rules: a client masks every frame it sends and a server none, and each
/// rejects frames from the other that break the rule (1002).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The side that accepted the connection: expects masked frames,
    /// sends unmasked ones.
    Server,
    /// The side that opened the connection: expects unmasked frames,
    /// sends masked ones.
    Client,
}

/// The close codes (RFC 6455 section 7.4.1) this module sends, and the
/// others the RFC defines.
pub mod close_code {
    /// 1000: the purpose of the connection is fulfilled.
    pub const NORMAL: u16 = 1000;
    /// 1001: the endpoint is going away (server shutting down, page left).
    pub const GOING_AWAY: u16 = 1001;
    /// 1002: the peer broke the protocol.
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// 1003: a kind of data the endpoint cannot accept.
    pub const UNSUPPORTED_DATA: u16 = 1003;
    /// 1005: no code in the Close frame; for APIs, never sent.
    pub const NO_STATUS: u16 = 1005;
    /// 1006: the connection closed without a Close frame; for APIs, never
    /// sent.
    pub const ABNORMAL: u16 = 1006;
    /// 1007: a message's data does not match its type (text that is not
    /// UTF-8).
    pub const INVALID_PAYLOAD: u16 = 1007;
    /// 1008: a message breaks the endpoint's policy.
    pub const POLICY_VIOLATION: u16 = 1008;
    /// 1009: a message too big to process.
    pub const MESSAGE_TOO_BIG: u16 = 1009;
    /// 1010: the client needed an extension the server did not negotiate.
    pub const MANDATORY_EXTENSION: u16 = 1010;
    /// 1011: the server met an unexpected condition.
    pub const INTERNAL_ERROR: u16 = 1011;
}

/// A breach of the WebSocket protocol by the peer, with the close code to
/// send it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebSocketError {
    code: u16,
    reason: String,
}

impl WebSocketError {
    /// An error to be answered with a Close frame carrying `code`.
    pub fn new(code: u16, reason: impl Into<String>) -> WebSocketError {
        WebSocketError {
            code,
            reason: reason.into(),
        }
    }

    /// The close code to send (1002, 1007 or 1009 from this module's
    /// codecs).
    pub fn code(&self) -> u16 {
        self.code
    }

    /// What went wrong, for logs (not sent: it may be longer than a Close
    /// frame allows).
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// The WebSocket error inside a codec's `DecodeError`. Errors from
    /// other decoders map to the nearest code: a too-long frame to 1009,
    /// bad UTF-8 to 1007, anything else to 1002.
    pub fn from_decode_error(err: DecodeError) -> WebSocketError {
        match err {
            DecodeError::Other(other) => match other.downcast::<WebSocketError>() {
                Ok(err) => *err,
                Err(other) => WebSocketError::new(close_code::PROTOCOL_ERROR, other.to_string()),
            },
            DecodeError::TooLongFrame { .. } => {
                WebSocketError::new(close_code::MESSAGE_TOO_BIG, err.to_string())
            }
            DecodeError::Utf8(_) => {
                WebSocketError::new(close_code::INVALID_PAYLOAD, err.to_string())
            }
            other => WebSocketError::new(close_code::PROTOCOL_ERROR, other.to_string()),
        }
    }

    /// The close code of a codec's `DecodeError`, if it is a WebSocket
    /// error.
    pub fn code_of(err: &DecodeError) -> Option<u16> {
        match err {
            DecodeError::Other(other) => other.downcast_ref::<WebSocketError>().map(|e| e.code),
            _ => None,
        }
    }
}

impl fmt::Display for WebSocketError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "WebSocket protocol error ({}): {}",
            self.code, self.reason
        )
    }
}

impl Error for WebSocketError {}
