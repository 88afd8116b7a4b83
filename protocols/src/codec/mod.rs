//! The codec layer: [`Decoder`] and [`Encoder`] in the shape Rust users know
//! from `tokio-util`, Netty's decoders and encoders, and [`Framed`], which
//! turns a codec and a message-level [`Handler`] into a twill
//! [`Protocol`](twill::Protocol).
//!
//! Layers compose with types: a frame decoder cuts bytes into frames,
//! [`Decoder::and_then`] adds message decoders that turn each frame into
//! something else (bytes → `String` → your type); encoders compose the
//! other way with [`Encoder::after`].
//!
//! Every decoder has a maximum frame length; input past it is a
//! [`DecodeError`], never unbounded memory. Errors reach the handler's
//! [`exception_caught`](Handler::exception_caught), whose default closes
//! that connection only.
//!
//! # Backpressure
//!
//! [`Framed`], the [`pipeline`] and the Twisted framers in
//! [`basic`](crate::basic) turn the transport's
//! [flow control](twill::Transport::set_flow_control) on when the
//! connection is made: while the connection's write buffer is over its high
//! watermark (its replies cannot leave), it stops reading, and it reads
//! again once the buffer drains. A peer that sends requests and never reads
//! the answers then holds the server to about the high watermark (64 KiB)
//! plus the replies to one read, not to everything it sends. A handler that
//! must keep reading while its output is stuck (one that writes mostly to
//! *other* connections and wants to see a `quit` from this one, say) turns
//! it off in its `connection_made`:
//!
//! ```
//! use twill_protocols::codec::{Context, Handler};
//!
//! struct Relay;
//!
//! impl Handler for Relay {
//!     type Message = String;
//!     type Reply = String;
//!
//!     fn connection_made(&mut self, ctx: &Context<String>) {
//!         ctx.transport().set_flow_control(false);
//!     }
//!
//!     fn message_received(&mut self, _ctx: &Context<String>, _line: String) {}
//! }
//! ```
//!
//! Whatever the setting, the transport's hard cap
//! ([`set_write_buffer_max`](twill::Transport::set_write_buffer_max))
//! still bounds each connection, and a handler that broadcasts bounds its
//! fan-out with a [`BroadcastGroup`](twill::broadcast::BroadcastGroup).

mod context;
mod delimiter_based;
mod error;
mod fixed_length;
mod framed;
mod framed_read;
mod framed_write;
#[cfg(feature = "json")]
mod json;
mod length_field;
mod length_field_prepender;
mod line_based;
pub mod pipeline;
mod string;
pub(crate) mod undecodable;

use bytes::{Bytes, BytesMut};

pub use context::{Context, Handler};
pub use delimiter_based::*;
pub use error::{DecodeError, EncodeError};
pub use fixed_length::*;
pub use framed::Framed;
pub use framed_read::FramedRead;
pub use framed_write::FramedWrite;
#[cfg(feature = "json")]
pub use json::*;
pub use length_field::*;
pub use length_field_prepender::*;
pub use line_based::LineBasedFrameDecoder;
pub use string::{LineEncoder, LossyStringDecoder, StringDecoder, StringEncoder};

/// Cuts a byte stream into frames: Netty's `ByteToMessageDecoder`,
/// `tokio_util::codec::Decoder`.
///
/// [`decode`](Self::decode) is called with everything received and not yet
/// consumed; it removes one frame from the front of `src` and returns it,
/// or returns `Ok(None)` to wait for more bytes (leaving `src` as it was,
/// or having consumed bytes it skipped). [`Framed`] calls it in a loop until
/// it returns `None`.
pub trait Decoder {
    /// What one frame decodes to.
    type Item;

    /// Takes one frame off the front of `src`, if a whole one is there.
    ///
    /// # Errors
    ///
    /// A frame too long or corrupt input; see [`DecodeError`].
    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Self::Item>, DecodeError>;

    /// Called when the peer closed its side: decode what is left. The
    /// default decodes one more frame and reports leftover bytes as
    /// [`DecodeError::Truncated`] rather than dropping them silently.
    ///
    /// # Errors
    ///
    /// As [`decode`](Self::decode), and `Truncated` for bytes that do not
    /// make a frame.
    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Self::Item>, DecodeError> {
        match self.decode(src)? {
            Some(frame) => Ok(Some(frame)),
            None if src.is_empty() => Ok(None),
            None => Err(DecodeError::Truncated {
                remaining: src.len(),
            }),
        }
    }

    /// Adds a message decoder after this one: each frame goes through
    /// `next` (Netty's `MessageToMessageDecoder` after a frame decoder).
    fn and_then<M>(self, next: M) -> AndThen<Self, M>
    where
        Self: Sized,
        M: MessageDecoder<Self::Item>,
    {
        AndThen { first: self, next }
    }
}

/// Turns one decoded message into another: Netty's
/// `MessageToMessageDecoder`, e.g. [`StringDecoder`] (bytes → `String`).
pub trait MessageDecoder<In> {
    /// What it produces.
    type Item;

    /// Decodes one message.
    ///
    /// # Errors
    ///
    /// The message is malformed (e.g. not UTF-8).
    fn decode_message(&mut self, message: In) -> Result<Self::Item, DecodeError>;
}

impl<In, Out, F> MessageDecoder<In> for F
where
    F: FnMut(In) -> Result<Out, DecodeError>,
{
    type Item = Out;

    fn decode_message(&mut self, message: In) -> Result<Out, DecodeError> {
        self(message)
    }
}

/// A frame decoder followed by a message decoder, from
/// [`Decoder::and_then`].
#[derive(Debug, Clone)]
pub struct AndThen<D, M> {
    first: D,
    next: M,
}

impl<D, M> Decoder for AndThen<D, M>
where
    D: Decoder,
    M: MessageDecoder<D::Item>,
{
    type Item = M::Item;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<M::Item>, DecodeError> {
        match self.first.decode(src)? {
            Some(frame) => self.next.decode_message(frame).map(Some),
            None => Ok(None),
        }
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<M::Item>, DecodeError> {
        match self.first.decode_eof(src)? {
            Some(frame) => self.next.decode_message(frame).map(Some),
            None => Ok(None),
        }
    }
}

/// Writes messages as bytes: Netty's `MessageToByteEncoder`,
/// `tokio_util::codec::Encoder`.
pub trait Encoder<Item> {
    /// Appends the encoding of `item` to `dst`.
    ///
    /// # Errors
    ///
    /// The item cannot be encoded (e.g. too long for a length field).
    fn encode(&mut self, item: Item, dst: &mut BytesMut) -> Result<(), EncodeError>;

    /// As [`encode`](Self::encode), but the end of the encoding may be left
    /// out of `dst` and returned as `Bytes` of its own, which the caller
    /// writes right after `dst`'s new bytes without copying them: an
    /// encoder that puts a header before a body the caller already holds as
    /// `Bytes` hands the body over as it is (Netty's `LengthFieldPrepender`
    /// emits header and body as two buffers). [`Framed`] and the
    /// [`pipeline`] encode through this method. The default encodes
    /// everything into `dst`.
    ///
    /// # Errors
    ///
    /// As [`encode`](Self::encode); nothing is appended to `dst` then.
    ///
    /// # Examples
    ///
    /// ```
    /// use bytes::{Bytes, BytesMut};
    /// use twill_protocols::codec::{Encoder, LengthFieldPrepender};
    ///
    /// let body = Bytes::from(vec![7u8; 4096]);
    /// let mut head = BytesMut::new();
    /// let tail = LengthFieldPrepender::new(4)?.encode_parts(body.clone(), &mut head)?;
    /// assert_eq!(&head[..], [0, 0, 16, 0]);
    /// assert_eq!(tail.unwrap().as_ptr(), body.as_ptr(), "the very same bytes");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn encode_parts(
        &mut self,
        item: Item,
        dst: &mut BytesMut,
    ) -> Result<Option<Bytes>, EncodeError> {
        self.encode(item, dst).map(|()| None)
    }

    /// Puts a message encoder in front of this one: items go through
    /// `first`, and what it produces is encoded by `self` (e.g. a
    /// [`StringEncoder`] before a length prepender).
    fn after<In, M>(self, first: M) -> After<M, Self>
    where
        Self: Sized,
        M: MessageEncoder<In>,
    {
        After { first, then: self }
    }
}

/// Turns one outgoing message into another before it is encoded: Netty's
/// `MessageToMessageEncoder`.
pub trait MessageEncoder<In> {
    /// What it produces.
    type Item;

    /// Encodes one message.
    ///
    /// # Errors
    ///
    /// The message cannot be encoded.
    fn encode_message(&mut self, message: In) -> Result<Self::Item, EncodeError>;
}

impl<In, Out, F> MessageEncoder<In> for F
where
    F: FnMut(In) -> Result<Out, EncodeError>,
{
    type Item = Out;

    fn encode_message(&mut self, message: In) -> Result<Out, EncodeError> {
        self(message)
    }
}

/// A message encoder followed by an encoder, from [`Encoder::after`].
#[derive(Debug, Clone)]
pub struct After<M, E> {
    first: M,
    then: E,
}

impl<In, M, E> Encoder<In> for After<M, E>
where
    M: MessageEncoder<In>,
    E: Encoder<M::Item>,
{
    fn encode(&mut self, item: In, dst: &mut BytesMut) -> Result<(), EncodeError> {
        let message = self.first.encode_message(item)?;
        self.then.encode(message, dst)
    }

    fn encode_parts(&mut self, item: In, dst: &mut BytesMut) -> Result<Option<Bytes>, EncodeError> {
        let message = self.first.encode_message(item)?;
        self.then.encode_parts(message, dst)
    }
}

/// Passes bytes through unchanged: the encoder for handlers that write
/// ready-made frames.
#[derive(Debug, Clone, Copy, Default)]
pub struct BytesEncoder;

impl<B: AsRef<[u8]>> Encoder<B> for BytesEncoder {
    fn encode(&mut self, item: B, dst: &mut BytesMut) -> Result<(), EncodeError> {
        dst.extend_from_slice(item.as_ref());
        Ok(())
    }
}
