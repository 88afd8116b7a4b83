//! What twill users reach for above raw bytes: Netty's frame decoders and
//! encoders, and (on them) Twisted's framing protocols, layered as
//! [`Protocol`](twill::Protocol) wrappers around your own message-level
//! [`Handler`](codec::Handler).
//!
//! With the `http` feature, `twill_protocols::http` holds the HTTP/1.1
//! server codec: a request decoder and aggregator and a response encoder.
//! With the `websocket` feature, [`websocket`] holds the WebSocket
//! (RFC 6455) frame and message codecs and the close handshake.
//!
//! # Examples
//!
//! A line-based upper-casing server: the decoder cuts lines (at most 1024
//! bytes, `\n` or `\r\n`), the string decoder checks UTF-8, and the handler
//! sees whole `String`s; replies are encoded as lines.
//!
//! ```
//! use twill_protocols::codec::{
//!     Context, Decoder, Framed, Handler, LineBasedFrameDecoder, LineEncoder, StringDecoder,
//! };
//!
//! struct Upper;
//!
//! impl Handler for Upper {
//!     type Message = String;
//!     type Reply = String;
//!     fn message_received(&mut self, ctx: &Context<String>, line: String) {
//!         ctx.write(line.to_uppercase());
//!     }
//! }
//!
//! let reactor = twill::Reactor::new()?;
//! let port = reactor.listen_tcp("127.0.0.1:0", |_peer| {
//!     Framed::new(
//!         LineBasedFrameDecoder::new(1024).and_then(StringDecoder),
//!         LineEncoder::new(),
//!         Upper,
//!     )
//! })?;
//! # port.stop_listening();
//! # Ok::<(), std::io::Error>(())
//! ```

#![warn(missing_docs, missing_debug_implementations, rust_2018_idioms)]
#![forbid(unsafe_code)]

pub mod basic;
pub mod codec;
mod factory_wrapper;
pub mod handler;
#[cfg(feature = "http")]
pub mod http;
pub mod policies;
#[cfg(feature = "websocket")]
pub mod websocket;
