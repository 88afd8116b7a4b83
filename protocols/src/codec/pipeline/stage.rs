//! [`Stage`]: one element of a pipeline, built from a codec, a closure or
//! a [`StageHandler`], and the stage kinds behind it.

use std::any::{type_name, Any, TypeId};
use std::fmt;

use bytes::BytesMut;
use twill::Reason;

use super::context::{Inbound, StageContext, StageHandler};
use super::{boxed, into_bytes, unnest, Message};
use crate::codec::{DecodeError, Decoder, EncodeError, Encoder, MessageDecoder, MessageEncoder};

/// What the pipeline asks of a stage. Every kind implements it; the
/// defaults pass everything on.
pub(super) trait StageImpl {
    /// Takes one inbound signal.
    fn inbound(&mut self, ctx: &mut StageContext<'_>, signal: Inbound) {
        ctx.out.inbound.push(signal);
    }

    /// Whether the stage holds work it produces one piece at a time (a
    /// decoder's next frame): the pipeline asks for it before giving the
    /// stage its next signal.
    fn has_pending(&self) -> bool {
        false
    }

    /// Produces the next piece of pending work.
    fn produce(&mut self, ctx: &mut StageContext<'_>) {
        let _ = ctx;
    }

    fn write(&mut self, ctx: &mut StageContext<'_>, message: Message) -> Result<(), EncodeError> {
        ctx.write(message);
        Ok(())
    }

    fn read(&mut self, ctx: &mut StageContext<'_>) {
        ctx.read();
    }

    fn added(&mut self, ctx: &mut StageContext<'_>) {
        let _ = ctx;
    }

    /// Passes on what the stage still holds.
    fn removed(&mut self, ctx: &mut StageContext<'_>) {
        let _ = ctx;
    }

    fn connection_made(&mut self, ctx: &mut StageContext<'_>) {
        let _ = ctx;
    }

    fn connection_lost(&mut self, ctx: &mut StageContext<'_>, reason: &Reason) {
        let _ = (ctx, reason);
    }

    /// The codec (or handler) inside, if it is of type `want`.
    fn codec(&mut self, want: TypeId) -> Option<&mut dyn Any>;
}

/// `value` as `dyn Any` if it is of type `want`.
fn codec_if<T: Any>(value: &mut T, want: TypeId) -> Option<&mut dyn Any> {
    (TypeId::of::<T>() == want).then_some(value as &mut dyn Any)
}

/// A [`Decoder`] with its own input buffer, producing one frame at a time
/// so that the stages after it (and the handler) see each frame before the
/// next is cut: one of them may replace the decoder (a protocol upgrade).
struct DecoderStage<D> {
    decoder: D,
    buffer: BytesMut,
    /// Bytes arrived since `decode` last returned `None`.
    fresh: bool,
    /// The peer's EOF arrived: `decode_eof` from now on, and the EOF is
    /// passed on once the buffer is done.
    eof: bool,
    eof_pending: bool,
    /// After an unrecoverable error, input is dropped.
    failed: bool,
    /// A `read()` passed through, and no frame answered it yet.
    asked: bool,
}

impl<D: Decoder + 'static> StageImpl for DecoderStage<D>
where
    D::Item: 'static,
{
    fn inbound(&mut self, ctx: &mut StageContext<'_>, signal: Inbound) {
        match signal {
            Inbound::Message(message) => match into_bytes(message) {
                Ok(bytes) if !self.failed => {
                    self.buffer.extend_from_slice(&bytes);
                    self.fresh = true;
                }
                Ok(_) => {}
                Err(other) => ctx.out.inbound.push(Inbound::Message(other)),
            },
            Inbound::Eof => {
                self.eof = true;
                self.eof_pending = true;
            }
            Inbound::ReadComplete => {
                // Netty's rule for AUTO_READ off: a read that completed no
                // frame asks for another, or a partial frame would stall.
                if self.asked && !ctx.auto_read() {
                    ctx.read();
                }
                ctx.fire_read_complete();
            }
            other => ctx.out.inbound.push(other),
        }
    }

    fn has_pending(&self) -> bool {
        (self.fresh && !self.failed) || self.eof_pending
    }

    fn produce(&mut self, ctx: &mut StageContext<'_>) {
        if self.failed || !(self.fresh || self.eof) {
            self.finish_batch(ctx);
            return;
        }
        let before = self.buffer.len();
        let decoded = if self.eof {
            self.decoder.decode_eof(&mut self.buffer)
        } else {
            self.decoder.decode(&mut self.buffer)
        };
        match decoded {
            Ok(Some(_)) if self.buffer.len() == before => {
                let why = "the decoder produced a message without consuming input";
                self.fail(ctx, DecodeError::Corrupt(why.to_owned()));
            }
            Ok(Some(item)) => {
                self.asked = false;
                ctx.fire_message(item);
            }
            // Skipped bytes without a frame: decode again.
            Ok(None) if !self.eof && self.buffer.len() < before && !self.buffer.is_empty() => {}
            Ok(None) => self.finish_batch(ctx),
            // A recoverable error must skip input, or it would be reported
            // again forever.
            Err(error) if error.is_recoverable() && self.buffer.len() == before && !self.eof => {
                let why = format!("the decoder reported \"{error}\" without consuming input");
                self.fail(ctx, DecodeError::Corrupt(why));
            }
            Err(error) if !error.is_recoverable() => self.fail(ctx, error),
            Err(error) => {
                if self.eof {
                    // Nothing more comes: what is left cannot make a frame.
                    self.buffer.clear();
                }
                ctx.fire_exception(error);
            }
        }
    }

    fn read(&mut self, ctx: &mut StageContext<'_>) {
        self.asked = true;
        ctx.read();
    }

    fn removed(&mut self, ctx: &mut StageContext<'_>) {
        if !self.buffer.is_empty() {
            ctx.fire_message(self.buffer.split().freeze());
        }
        if self.eof_pending {
            self.eof_pending = false;
            ctx.fire_eof();
        }
    }

    fn codec(&mut self, want: TypeId) -> Option<&mut dyn Any> {
        codec_if(&mut self.decoder, want)
    }
}

impl<D> DecoderStage<D> {
    /// The buffer holds no more frames: pass a pending EOF on.
    fn finish_batch(&mut self, ctx: &mut StageContext<'_>) {
        self.fresh = false;
        if self.buffer.is_empty() && self.buffer.capacity() > 0 {
            self.buffer = BytesMut::new();
        }
        if self.eof_pending {
            self.eof_pending = false;
            ctx.fire_eof();
        }
    }

    fn fail(&mut self, ctx: &mut StageContext<'_>, error: DecodeError) {
        self.failed = true;
        self.fresh = false;
        self.buffer = BytesMut::new();
        ctx.fire_exception(error);
    }
}

/// A message-to-messages step (a message codec or a closure) on inbound
/// messages; other signals pass through.
struct InboundStep<C, F> {
    codec: C,
    run: F,
    out: Vec<Message>,
}

impl<C: 'static, F> StageImpl for InboundStep<C, F>
where
    F: FnMut(&mut C, Message, &mut Vec<Message>) -> Result<(), DecodeError>,
{
    fn inbound(&mut self, ctx: &mut StageContext<'_>, signal: Inbound) {
        let Inbound::Message(message) = signal else {
            ctx.out.inbound.push(signal);
            return;
        };
        let result = (self.run)(&mut self.codec, message, &mut self.out);
        for message in self.out.drain(..) {
            ctx.out.inbound.push(Inbound::Message(unnest(message)));
        }
        if let Err(error) = result {
            ctx.fire_exception(error);
        }
    }

    fn codec(&mut self, want: TypeId) -> Option<&mut dyn Any> {
        codec_if(&mut self.codec, want)
    }
}

/// A message-to-messages step on outbound messages; inbound signals pass
/// through.
struct OutboundStep<C, F> {
    codec: C,
    run: F,
    out: Vec<Message>,
}

impl<C: 'static, F> StageImpl for OutboundStep<C, F>
where
    F: FnMut(&mut C, Message, &mut Vec<Message>) -> Result<(), EncodeError>,
{
    fn write(&mut self, ctx: &mut StageContext<'_>, message: Message) -> Result<(), EncodeError> {
        let result = (self.run)(&mut self.codec, message, &mut self.out);
        for message in self.out.drain(..) {
            ctx.write(message);
        }
        result
    }

    fn codec(&mut self, want: TypeId) -> Option<&mut dyn Any> {
        codec_if(&mut self.codec, want)
    }
}

/// A [`StageHandler`] of the user's.
struct HandlerStage<H>(H);

impl<H: StageHandler> StageImpl for HandlerStage<H> {
    fn inbound(&mut self, ctx: &mut StageContext<'_>, signal: Inbound) {
        let handler = &mut self.0;
        match signal {
            Inbound::Message(message) => handler.message_received(ctx, message),
            Inbound::ReadComplete => handler.read_complete(ctx),
            Inbound::Event(event) => handler.event_received(ctx, event),
            Inbound::Error(error) => {
                let fatal = !error.is_recoverable();
                let before = ctx.out.inbound.len();
                handler.exception_caught(ctx, error);
                let passed_on = ctx.out.inbound[before..]
                    .iter()
                    .any(|signal| matches!(signal, Inbound::Error(_)));
                // Whoever handles an unrecoverable error, the connection
                // cannot go on: closed now if it stops here.
                ctx.out.fatal |= fatal && !passed_on;
            }
            Inbound::Eof => handler.eof_received(ctx),
            Inbound::Writability(writable) => handler.writability_changed(ctx, writable),
            Inbound::WriteComplete => handler.write_complete(ctx),
        }
    }

    fn has_pending(&self) -> bool {
        self.0.has_pending()
    }

    fn produce(&mut self, ctx: &mut StageContext<'_>) {
        let before = (ctx.out.inbound.len(), ctx.out.outbound.len());
        self.0.produce(ctx);
        let after = (ctx.out.inbound.len(), ctx.out.outbound.len());
        // It would be asked again forever: a bug in the stage, which closes
        // this connection (as a panic in any callback does), not the loop.
        assert!(
            after != before || !self.0.has_pending(),
            "{}::produce passed nothing on and has_pending is still true",
            std::any::type_name::<H>()
        );
    }

    fn write(&mut self, ctx: &mut StageContext<'_>, message: Message) -> Result<(), EncodeError> {
        self.0.write(ctx, message)
    }

    fn read(&mut self, ctx: &mut StageContext<'_>) {
        self.0.read(ctx);
    }

    fn added(&mut self, ctx: &mut StageContext<'_>) {
        self.0.handler_added(ctx);
    }

    fn removed(&mut self, ctx: &mut StageContext<'_>) {
        self.0.handler_removed(ctx);
    }

    fn connection_made(&mut self, ctx: &mut StageContext<'_>) {
        self.0.connection_made(ctx);
    }

    fn connection_lost(&mut self, ctx: &mut StageContext<'_>, reason: &Reason) {
        self.0.connection_lost(ctx, reason);
    }

    fn codec(&mut self, want: TypeId) -> Option<&mut dyn Any> {
        codec_if(&mut self.0, want)
    }
}

/// One stage that decodes with one kind and encodes with another.
struct Duplex {
    inbound: Box<dyn StageImpl>,
    outbound: Box<dyn StageImpl>,
}

impl StageImpl for Duplex {
    fn inbound(&mut self, ctx: &mut StageContext<'_>, signal: Inbound) {
        self.inbound.inbound(ctx, signal);
    }

    fn has_pending(&self) -> bool {
        self.inbound.has_pending()
    }

    fn produce(&mut self, ctx: &mut StageContext<'_>) {
        self.inbound.produce(ctx);
    }

    fn write(&mut self, ctx: &mut StageContext<'_>, message: Message) -> Result<(), EncodeError> {
        self.outbound.write(ctx, message)
    }

    fn read(&mut self, ctx: &mut StageContext<'_>) {
        self.inbound.read(ctx);
    }

    fn removed(&mut self, ctx: &mut StageContext<'_>) {
        self.inbound.removed(ctx);
    }

    fn codec(&mut self, want: TypeId) -> Option<&mut dyn Any> {
        match self.inbound.codec(want) {
            Some(codec) => Some(codec),
            None => self.outbound.codec(want),
        }
    }
}

/// Applies `f` to `message` if it is an `In`, else passes it on.
fn on<In: 'static, T: Any, E>(
    message: Message,
    out: &mut Vec<Message>,
    f: impl FnOnce(In) -> Result<T, E>,
) -> Result<(), E> {
    out.push(match message.downcast::<In>() {
        Ok(input) => boxed(f(*input)?),
        Err(other) => other,
    });
    Ok(())
}

/// Which directions a stage handles.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) struct Directions {
    pub(super) inbound: bool,
    pub(super) outbound: bool,
}

const INBOUND: Directions = Directions {
    inbound: true,
    outbound: false,
};
const OUTBOUND: Directions = Directions {
    inbound: false,
    outbound: true,
};
const BOTH: Directions = Directions {
    inbound: true,
    outbound: true,
};

/// One stage of a [`Pipeline`](super::Pipeline), to add under a name: a
/// decoder, an encoder, both ([`codec`](Self::codec)), a closure, or a
/// [`StageHandler`] of your own.
pub struct Stage {
    pub(super) kind: Box<dyn StageImpl>,
    pub(super) directions: Directions,
    /// The codec's type name, for `Debug` and generated names.
    pub(super) type_name: &'static str,
    /// The types `Pipeline::get` and `remove_type` find it by.
    pub(super) types: Vec<TypeId>,
}

impl Stage {
    fn new<C: Any>(kind: Box<dyn StageImpl>, directions: Directions) -> Stage {
        Stage {
            kind,
            directions,
            type_name: type_name::<C>(),
            types: vec![TypeId::of::<C>()],
        }
    }

    /// Cuts incoming bytes (`Bytes`, `BytesMut` or `Vec<u8>` messages) into
    /// items, one at a time, keeping unconsumed bytes in its own buffer;
    /// other messages pass through. Removed or replaced, it hands those
    /// bytes on. Netty's `ByteToMessageDecoder`.
    pub fn decoder<D: Decoder + 'static>(decoder: D) -> Stage
    where
        D::Item: 'static,
    {
        Stage::new::<D>(Box::new(decoder_stage(decoder)), INBOUND)
    }

    /// Turns each incoming `In` into the decoder's item; messages of other
    /// types pass through unchanged.
    pub fn message_decoder<In: 'static, M: MessageDecoder<In> + 'static>(decoder: M) -> Stage
    where
        M::Item: 'static,
    {
        let run = |m: &mut M, message, out: &mut _| on(message, out, |i| m.decode_message(i));
        Stage::new::<M>(Box::new(inbound_step(decoder, run)), INBOUND)
    }

    /// An inbound closure: it gets every incoming message and pushes what
    /// goes on (none, one or several) to its output.
    pub fn inbound<F>(f: F) -> Stage
    where
        F: FnMut(Message, &mut Vec<Message>) -> Result<(), DecodeError> + 'static,
    {
        let run = |f: &mut F, message, out: &mut _| f(message, out);
        Stage::new::<F>(Box::new(inbound_step(f, run)), INBOUND)
    }

    /// Encodes each outgoing `In` to `Bytes`; other messages pass through.
    /// A body the encoder hands back whole (see
    /// [`Encoder::encode_parts`]) goes on as its own `Bytes`, uncopied.
    pub fn encoder<In: 'static, E: Encoder<In> + 'static>(encoder: E) -> Stage {
        Stage::new::<E>(Box::new(encoder_step::<In, E>(encoder)), OUTBOUND)
    }

    /// Turns each outgoing `In` into the encoder's item; other messages
    /// pass through.
    pub fn message_encoder<In: 'static, M: MessageEncoder<In> + 'static>(encoder: M) -> Stage
    where
        M::Item: 'static,
    {
        let run = |m: &mut M, message, out: &mut _| on(message, out, |i| m.encode_message(i));
        Stage::new::<M>(Box::new(outbound_step(encoder, run)), OUTBOUND)
    }

    /// An outbound closure: it gets every outgoing message and pushes what
    /// goes on towards the transport.
    pub fn outbound<F>(f: F) -> Stage
    where
        F: FnMut(Message, &mut Vec<Message>) -> Result<(), EncodeError> + 'static,
    {
        let run = |f: &mut F, message, out: &mut _| f(message, out);
        Stage::new::<F>(Box::new(outbound_step(f, run)), OUTBOUND)
    }

    /// One stage that decodes incoming bytes with `decoder` and encodes
    /// outgoing `In`s with `encoder`: Netty's `ByteToMessageCodec` (a
    /// duplex stage, added, replaced and removed as one).
    ///
    /// ```
    /// use twill_protocols::codec::pipeline::{Pipeline, Stage};
    /// use twill_protocols::codec::{LineBasedFrameDecoder, LineEncoder};
    ///
    /// let pipeline = Pipeline::new();
    /// let lines = Stage::codec::<String, _, _>(LineBasedFrameDecoder::new(80), LineEncoder::new());
    /// assert!(lines.is_inbound() && lines.is_outbound());
    /// pipeline.add_last("lines", lines)?;
    /// assert!(pipeline.get::<LineEncoder>("lines").is_some());
    /// # Ok::<(), twill_protocols::codec::pipeline::PipelineError>(())
    /// ```
    pub fn codec<In: 'static, D, E>(decoder: D, encoder: E) -> Stage
    where
        D: Decoder + 'static,
        D::Item: 'static,
        E: Encoder<In> + 'static,
    {
        let duplex = Duplex {
            inbound: Box::new(decoder_stage(decoder)),
            outbound: Box::new(encoder_step::<In, E>(encoder)),
        };
        let mut stage = Stage::new::<D>(Box::new(duplex), BOTH);
        stage.types.push(TypeId::of::<E>());
        stage
    }

    /// A stage of your own: every event, both directions (see
    /// [`StageHandler`]).
    pub fn handler<H: StageHandler>(handler: H) -> Stage {
        Stage::new::<H>(Box::new(HandlerStage(handler)), BOTH)
    }

    /// Whether the stage handles incoming messages.
    pub fn is_inbound(&self) -> bool {
        self.directions.inbound
    }

    /// Whether the stage handles outgoing messages.
    pub fn is_outbound(&self) -> bool {
        self.directions.outbound
    }

    /// The name a stage gets when added without one: its codec's type
    /// name without the path (Netty's `SimpleClassName#0`).
    pub(super) fn short_name(&self) -> &'static str {
        let name = self.type_name.split('<').next().unwrap_or(self.type_name);
        name.rsplit("::").next().unwrap_or(name)
    }
}

fn decoder_stage<D>(decoder: D) -> DecoderStage<D> {
    DecoderStage {
        decoder,
        buffer: BytesMut::new(),
        fresh: false,
        eof: false,
        eof_pending: false,
        failed: false,
        asked: false,
    }
}

fn inbound_step<C, F>(codec: C, run: F) -> InboundStep<C, F> {
    InboundStep {
        codec,
        run,
        out: Vec::new(),
    }
}

fn outbound_step<C, F>(codec: C, run: F) -> OutboundStep<C, F> {
    OutboundStep {
        codec,
        run,
        out: Vec::new(),
    }
}

/// Encodes `In`s: the head in a buffer of the stage's, the body the
/// encoder hands back as its own `Bytes`.
fn encoder_step<In: 'static, E: Encoder<In> + 'static>(encoder: E) -> impl StageImpl {
    let mut buf = BytesMut::new();
    let run = move |e: &mut E, message: Message, out: &mut Vec<Message>| {
        match message.downcast::<In>() {
            Ok(item) => match e.encode_parts(*item, &mut buf) {
                Ok(body) => {
                    if !buf.is_empty() {
                        out.push(Box::new(buf.split().freeze()));
                    }
                    if let Some(body) = body {
                        out.push(Box::new(body));
                    }
                    Ok(())
                }
                Err(error) => {
                    buf.clear(); // no half-encoded message before the next one
                    Err(error)
                }
            },
            Err(other) => {
                out.push(other);
                Ok(())
            }
        }
    };
    outbound_step(encoder, run)
}

impl Directions {
    /// `Stage(inbound some::Type)`, as a stage prints.
    pub(super) fn describe(self, type_name: &str) -> String {
        let direction = match (self.inbound, self.outbound) {
            (true, true) => "duplex",
            (true, false) => "inbound",
            _ => "outbound",
        };
        format!("Stage({direction} {type_name})")
    }
}

impl fmt::Debug for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.directions.describe(self.type_name))
    }
}
