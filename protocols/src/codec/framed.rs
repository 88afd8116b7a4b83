//! [`Framed`]: a decoder, an encoder and a message-level [`Handler`] as one
//! twill `Protocol`.

use std::cell::RefCell;
use std::fmt;
use std::net::SocketAddr;
use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use twill::{Protocol, Reason, Transport};

use super::{undecodable, DecodeError, Decoder, Encoder};

/// A message-level protocol: what you write on top of a codec. Netty's
/// inbound handler; Twisted's `lineReceived` / `stringReceived` protocols.
///
/// Each method gets the [`Context`] to write replies through (encoded by the
/// [`Framed`]'s encoder); keep a clone to write later or from elsewhere.
pub trait Handler: 'static {
    /// What the decoder delivers.
    type Message;
    /// What [`Context::write`] takes.
    type Reply;

    /// The connection is up.
    fn connection_made(&mut self, ctx: &Context<Self::Reply>) {
        let _ = ctx;
    }

    /// A whole message arrived.
    fn message_received(&mut self, ctx: &Context<Self::Reply>, message: Self::Message);

    /// The decoder rejected the input. The default logs why and closes this
    /// connection (with [`Reason::Failed`] carrying the error); other
    /// connections are not affected. After an error that is not
    /// [recoverable](DecodeError::is_recoverable) the connection is closed
    /// whatever this method does.
    fn exception_caught(&mut self, ctx: &Context<Self::Reply>, error: DecodeError) {
        undecodable::close(ctx.transport(), error);
    }

    /// The peer closed its writing side; what it sent before was decoded
    /// (with [`Decoder::decode_eof`]) and delivered. Return `true` to keep
    /// writing on the half-open connection (see
    /// [`Protocol::eof_received`](twill::Protocol::eof_received)).
    fn eof_received(&mut self, ctx: &Context<Self::Reply>) -> bool {
        let _ = ctx;
        false
    }

    /// The connection is gone; called once, last. Writes through `ctx` are
    /// dropped now, but it still tells which connection this was (to
    /// announce a departure to the others, say).
    fn connection_lost(&mut self, ctx: &Context<Self::Reply>, reason: &Reason) {
        let _ = (ctx, reason);
    }

    /// The write buffer went over its high watermark.
    fn pause_writing(&mut self, ctx: &Context<Self::Reply>) {
        let _ = ctx;
    }

    /// The write buffer drained to its low watermark.
    fn resume_writing(&mut self, ctx: &Context<Self::Reply>) {
        let _ = ctx;
    }
}

/// A handler's view of its connection: writes messages through the
/// encoder. A cheap handle; clones write to the same connection.
pub struct Context<Out> {
    transport: Transport,
    encoder: Rc<RefCell<Box<dyn Encoder<Out>>>>,
}

impl<Out> Clone for Context<Out> {
    fn clone(&self) -> Self {
        Context {
            transport: self.transport.clone(),
            encoder: self.encoder.clone(),
        }
    }
}

impl<Out: 'static> Context<Out> {
    /// A context writing to `transport` through `encoder`.
    pub fn new(transport: Transport, encoder: impl Encoder<Out> + 'static) -> Context<Out> {
        Context {
            transport,
            encoder: Rc::new(RefCell::new(Box::new(encoder))),
        }
    }

    /// Encodes `message` and writes it. A message that cannot be encoded
    /// (e.g. too long for its length field) is a bug in the sender: it is
    /// logged and the connection is closed with that error, so nothing is
    /// dropped silently.
    pub fn write(&self, message: impl Into<Out>) {
        let message = message.into();
        let mut encoder = self.encoder.borrow_mut();
        // Encoded straight into the connection's write buffer.
        let encoded = self.transport.write_with(|buf| {
            let start = buf.len();
            let result = encoder.encode(message, buf);
            if result.is_err() {
                buf.truncate(start);
            }
            result
        });
        drop(encoder);
        if let Some(Err(err)) = encoded {
            log::error!("could not encode a message for {}: {err}", self.peer());
            self.transport.fail(err);
        }
    }

    /// Writes bytes as they are, past the encoder.
    pub fn write_bytes(&self, bytes: impl Into<Bytes>) {
        self.transport.write(bytes);
    }

    /// Closes the connection once what is written is sent.
    pub fn lose_connection(&self) {
        self.transport.lose_connection();
    }

    /// Closes the connection because of `error` (see
    /// [`Transport::fail`](twill::Transport::fail)).
    pub fn fail(&self, error: impl Into<Box<dyn std::error::Error + Send + Sync>>) {
        self.transport.fail(error);
    }

    /// The underlying transport.
    pub fn transport(&self) -> &Transport {
        &self.transport
    }

    /// The remote address.
    pub fn peer(&self) -> SocketAddr {
        self.transport.peer()
    }

    /// Whether this and `other` write to the same connection.
    pub fn same_connection(&self, other: &Context<Out>) -> bool {
        self.transport.same_connection(&other.transport)
    }
}

impl<Out> fmt::Debug for Context<Out> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context")
            .field("transport", &self.transport)
            .finish()
    }
}

/// A [`Decoder`], an [`Encoder`] and a [`Handler`] as one twill
/// [`Protocol`]: bytes in are cut into messages for the handler, messages
/// out are encoded.
///
/// The reactor reads straight into the input buffer (see
/// [`Protocol::get_buffer`]), and frames are split off it: no copy of the
/// input at all, and an idle connection keeps no buffer.
/// Decoding stops as soon as the handler closes the connection: the rest of
/// the input is not delivered. While the replies cannot leave, the
/// connection stops reading (see [Backpressure](super#backpressure)). At EOF the decoder's
/// [`decode_eof`](Decoder::decode_eof) sees what is left, so a truncated
/// frame is an error, not silence.
pub struct Framed<D, E, H: Handler> {
    decoder: D,
    buffer: BytesMut,
    encoder: Option<E>,
    ctx: Option<Context<H::Reply>>,
    handler: H,
    /// After an unrecoverable decode error, input is ignored.
    failed: bool,
}

impl<D, E, H> Framed<D, E, H>
where
    D: Decoder<Item = H::Message> + 'static,
    E: Encoder<H::Reply> + 'static,
    H: Handler,
{
    /// Wraps `handler` with a decoder for its input and an encoder for its
    /// replies.
    pub fn new(decoder: D, encoder: E, handler: H) -> Self {
        Framed {
            decoder,
            buffer: BytesMut::new(),
            encoder: Some(encoder),
            ctx: None,
            handler,
            failed: false,
        }
    }

    /// The handler.
    pub fn handler(&self) -> &H {
        &self.handler
    }

    /// The handler, mutably.
    pub fn handler_mut(&mut self) -> &mut H {
        &mut self.handler
    }

    /// The handler and its context, once the connection is made.
    pub fn handler_and_context(&mut self) -> Option<(&mut H, &Context<H::Reply>)> {
        let ctx = self.ctx.as_ref()?;
        Some((&mut self.handler, ctx))
    }

    /// Frees the input buffer once everything in it is decoded, so an idle
    /// connection holds no memory for input (the next read allocates).
    fn release_empty_buffer(&mut self) {
        if self.buffer.is_empty() && self.buffer.capacity() > 0 {
            self.buffer = BytesMut::new();
        }
    }

    fn decode_all(&mut self, eof: bool) {
        let Some(ctx) = self.ctx.clone() else { return };
        while !self.failed {
            if ctx.transport().is_closing() {
                self.buffer.clear();
                return;
            }
            let before = self.buffer.len();
            let decoded = if eof {
                self.decoder.decode_eof(&mut self.buffer)
            } else {
                self.decoder.decode(&mut self.buffer)
            };
            match decoded {
                // A decoder that yields without consuming would be asked
                // again forever (Netty: "decode() did not read anything but
                // decoded a message").
                Ok(Some(_)) if self.buffer.len() == before => {
                    self.give_up(
                        &ctx,
                        "the decoder produced a message without consuming input",
                    );
                }
                Ok(Some(message)) => self.handler.message_received(&ctx, message),
                Ok(None) if !eof && self.buffer.len() < before && !self.buffer.is_empty() => {}
                Ok(None) => return,
                Err(error) => {
                    // A recoverable error must skip input, or it would be
                    // reported again forever.
                    let recoverable = error.is_recoverable() && (self.buffer.len() < before || eof);
                    self.handler.exception_caught(&ctx, error);
                    if !recoverable {
                        self.give_up(&ctx, "unrecoverable decode error");
                    }
                }
            }
        }
    }

    fn give_up(&mut self, ctx: &Context<H::Reply>, why: &str) {
        self.failed = true;
        self.buffer.clear();
        undecodable::give_up(ctx.transport(), why);
    }
}

impl<D, E, H> Protocol for Framed<D, E, H>
where
    D: Decoder<Item = H::Message> + 'static,
    E: Encoder<H::Reply> + 'static,
    H: Handler,
    H::Reply: 'static,
{
    fn connection_made(&mut self, transport: &Transport) {
        let encoder = self.encoder.take().expect("connection_made is called once");
        let ctx = Context::new(transport.clone(), encoder);
        // On before the handler runs, so it can turn it off.
        transport.set_flow_control(true);
        self.handler.connection_made(&ctx);
        self.ctx = Some(ctx);
    }

    fn data_received(&mut self, data: Bytes) {
        if self.failed {
            return;
        }
        self.buffer.extend_from_slice(&data);
        self.buffer_updated(data.len());
    }

    fn get_buffer(&mut self) -> Option<&mut BytesMut> {
        // After a decode error, input goes to `data_received`, which drops it.
        (!self.failed).then_some(&mut self.buffer)
    }

    fn buffer_updated(&mut self, _appended: usize) {
        self.decode_all(false);
        self.release_empty_buffer();
    }

    fn eof_received(&mut self) -> bool {
        self.decode_all(true);
        match &self.ctx {
            Some(ctx) => self.handler.eof_received(ctx),
            None => false,
        }
    }

    fn connection_lost(&mut self, reason: &Reason) {
        if let Some(ctx) = &self.ctx {
            self.handler.connection_lost(ctx, reason);
        }
    }

    fn pause_writing(&mut self) {
        if let Some(ctx) = &self.ctx {
            self.handler.pause_writing(ctx);
        }
    }

    fn resume_writing(&mut self) {
        if let Some(ctx) = &self.ctx {
            self.handler.resume_writing(ctx);
        }
    }
}

impl<D: fmt::Debug, E, H: Handler> fmt::Debug for Framed<D, E, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Framed")
            .field("decoder", &self.decoder)
            .field("buffered", &self.buffer.len())
            .field("failed", &self.failed)
            .finish()
    }
}
