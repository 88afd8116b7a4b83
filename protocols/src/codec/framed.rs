//! [`Framed`]: a decoder, an encoder and a message-level [`Handler`] as one
//! twill `Protocol`.

use std::fmt;

use bytes::{Bytes, BytesMut};
use twill::{Event, Protocol, Reason, Transport};

use super::context::ReadRequest;
use super::{undecodable, Context, Decoder, Encoder, Handler};

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
///
/// With [automatic reading](Context::set_auto_read) turned off, messages
/// are decoded and delivered only as the handler asks for them
/// ([`Context::read`]); the rest wait as bytes in the input buffer, and
/// the connection does not read while nothing is asked.
pub struct Framed<D, E, H: Handler> {
    decoder: D,
    buffer: BytesMut,
    encoder: Option<E>,
    ctx: Option<Context<H::Reply>>,
    handler: H,
    /// After an unrecoverable decode error, input is ignored.
    failed: bool,
    /// The peer's EOF came while messages waited for `read()`: it is
    /// delivered after them.
    eof_held: bool,
    /// Reading is paused because the handler asked for nothing.
    reading_held: bool,
}

/// Why [`Framed::decode_all`] stopped.
#[derive(PartialEq, Eq)]
enum Stop {
    /// The input is used up (or the connection is going).
    Drained,
    /// The handler asked for no more messages.
    NotAsked,
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
            eof_held: false,
            reading_held: false,
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

    /// Runs `f` on the handler, marked as running so that a `read()` it
    /// makes is answered when it returns rather than through an event.
    fn call<R>(
        handler: &mut H,
        ctx: &Context<H::Reply>,
        f: impl FnOnce(&mut H, &Context<H::Reply>) -> R,
    ) -> R {
        let was = ctx.flow().set_running(true);
        let result = f(handler, ctx);
        ctx.flow().set_running(was);
        result
    }

    /// Decodes and delivers messages while there is input and the handler
    /// wants them; returns how many it delivered and why it stopped.
    fn decode_all(&mut self, ctx: &Context<H::Reply>, eof: bool) -> (usize, Stop) {
        let mut delivered = 0;
        while !self.failed {
            if ctx.transport().is_closing() {
                self.buffer.clear();
                break;
            }
            if !ctx.flow().wants_message() {
                return (delivered, Stop::NotAsked);
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
                        ctx,
                        "the decoder produced a message without consuming input",
                    );
                }
                Ok(Some(message)) => {
                    ctx.flow().delivered();
                    delivered += 1;
                    Self::call(&mut self.handler, ctx, |h, ctx| {
                        h.message_received(ctx, message)
                    });
                }
                Ok(None) if !eof && self.buffer.len() < before && !self.buffer.is_empty() => {}
                Ok(None) => break,
                Err(error) => {
                    // A recoverable error must skip input, or it would be
                    // reported again forever.
                    let recoverable = error.is_recoverable() && (self.buffer.len() < before || eof);
                    Self::call(&mut self.handler, ctx, |h, ctx| {
                        h.exception_caught(ctx, error)
                    });
                    if !recoverable {
                        self.give_up(ctx, "unrecoverable decode error");
                    }
                }
            }
        }
        (delivered, Stop::Drained)
    }

    /// Delivers what the input holds (as far as the handler asks), then
    /// `read_complete`, a held EOF if its turn came, and sets reading.
    fn deliver(&mut self) {
        let Some(ctx) = self.ctx.clone() else { return };
        let (delivered, stop) = self.decode_all(&ctx, self.eof_held);
        if delivered > 0 && !self.failed {
            Self::call(&mut self.handler, &ctx, |h, ctx| h.read_complete(ctx));
        }
        if self.eof_held && stop == Stop::Drained {
            self.eof_held = false;
            let keep = Self::call(&mut self.handler, &ctx, |h, ctx| h.eof_received(ctx));
            if !keep {
                ctx.lose_connection();
            }
        }
        self.set_reading(&ctx);
        self.release_empty_buffer();
    }

    /// Reads from the socket only while the handler wants messages: with
    /// automatic reading on, always (as far as this framer goes). A hold
    /// is made again each time: a wrapper (a shaper ending its own pause)
    /// may have resumed reading behind this framer's back, and input
    /// nobody asked for must not keep coming.
    fn set_reading(&mut self, ctx: &Context<H::Reply>) {
        let wanted = ctx.flow().wants_message() && !self.eof_held;
        if wanted && !self.reading_held {
            return;
        }
        self.reading_held = !wanted;
        if wanted {
            ctx.transport().resume_reading();
        } else {
            ctx.transport().pause_reading();
        }
    }

    /// After a callback that was not about input: delivers what a
    /// `read()` or `set_auto_read(true)` in it asked for.
    fn after_callback(&mut self) {
        let Some(ctx) = &self.ctx else { return };
        if ctx.flow().wants_message() && (!self.buffer.is_empty() || self.eof_held) {
            self.deliver();
        } else {
            let ctx = ctx.clone();
            self.set_reading(&ctx);
        }
    }

    fn give_up(&mut self, ctx: &Context<H::Reply>, why: &str) {
        self.failed = true;
        self.buffer.clear();
        undecodable::give_up(ctx.transport(), why);
    }

    /// Runs a handler callback that is not about input.
    fn notify(&mut self, f: impl FnOnce(&mut H, &Context<H::Reply>)) {
        let Some(ctx) = &self.ctx else { return };
        Self::call(&mut self.handler, ctx, f);
        self.after_callback();
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
        self.ctx = Some(ctx);
        self.notify(|h, ctx| h.connection_made(ctx));
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
        self.deliver();
    }

    fn eof_received(&mut self) -> bool {
        let Some(ctx) = self.ctx.clone() else {
            return false;
        };
        let (delivered, stop) = self.decode_all(&ctx, true);
        if delivered > 0 && !self.failed {
            Self::call(&mut self.handler, &ctx, |h, ctx| h.read_complete(ctx));
        }
        if stop == Stop::NotAsked {
            // Messages wait for `read()`: the EOF waits behind them, and
            // the connection stays open until it is delivered.
            self.eof_held = true;
            self.set_reading(&ctx);
            return true;
        }
        Self::call(&mut self.handler, &ctx, |h, ctx| h.eof_received(ctx))
    }

    fn connection_lost(&mut self, reason: &Reason) {
        if let Some(ctx) = &self.ctx {
            Self::call(&mut self.handler, ctx, |h, ctx| {
                h.connection_lost(ctx, reason)
            });
        }
    }

    fn pause_writing(&mut self) {
        self.notify(|h, ctx| h.pause_writing(ctx));
    }

    fn resume_writing(&mut self) {
        self.notify(|h, ctx| h.resume_writing(ctx));
    }

    fn write_complete(&mut self) {
        self.notify(|h, ctx| h.write_complete(ctx));
    }

    fn event_received(&mut self, event: Event) {
        match event.downcast::<ReadRequest>() {
            Ok(ReadRequest) => self.after_callback(),
            Err(event) => self.notify(|h, ctx| h.event_received(ctx, event)),
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
