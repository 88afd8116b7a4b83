//! [`StageHandler`]: a stage written by hand, with a callback per event as
//! Netty's `ChannelDuplexHandler`, and the [`StageContext`] it passes
//! things on through.

use std::any::Any;
use std::cell::Cell;
use std::fmt;
use twill::Address;

use twill::{Event, Reason, Transport};

use super::{boxed, Message, Pipeline};
use crate::codec::{DecodeError, EncodeError};

/// A pipeline stage that sees every event, in both directions: Netty's
/// `ChannelDuplexHandler`. Add one with [`Stage::handler`](super::Stage::handler).
///
/// Inbound events travel from the first stage to the last, then to the
/// [`PipelineHandler`](super::PipelineHandler); each method's default
/// passes its event on to the next stage unchanged, so a stage overrides
/// only what it acts on, and may consume an event (not pass it on), change
/// it, or pass on several. Outbound operations ([`write`](Self::write),
/// [`read`](Self::read)) travel from the last stage to the first, then to
/// the transport.
///
/// A stage never calls another directly: what it passes on through the
/// [`StageContext`] is delivered when its method returns, so a stage is
/// never re-entered and may change the pipeline (even remove itself) from
/// any of its methods.
///
/// # Examples
///
/// A stage that counts the messages going by and answers a `"count"`
/// request itself, without passing it on:
///
/// ```
/// use bytes::Bytes;
/// use twill::{testing::StringTransport, Protocol};
/// use twill_protocols::codec::pipeline::*;
/// use twill_protocols::codec::{LineBasedFrameDecoder, LineEncoder, StringDecoder};
///
/// #[derive(Default)]
/// struct Counter { seen: usize }
///
/// impl StageHandler for Counter {
///     fn message_received(&mut self, ctx: &mut StageContext<'_>, message: Message) {
///         match message.downcast::<String>() {
///             Ok(line) if *line == "count" => ctx.write(format!("{} so far", self.seen)),
///             Ok(line) => { self.seen += 1; ctx.fire_message(*line) }
///             Err(other) => ctx.fire_message(other),
///         }
///     }
/// }
///
/// struct Echo;
/// impl PipelineHandler for Echo {
///     fn message_received(&mut self, ctx: &PipelineContext, message: Message) {
///         ctx.write(*message.downcast::<String>().unwrap());
///     }
/// }
///
/// let pipeline = Pipeline::new();
/// pipeline
///     .add_last("lines", Stage::decoder(LineBasedFrameDecoder::new(64)))?
///     .add_last("utf8", Stage::message_decoder(StringDecoder))?
///     .add_last("counter", Stage::handler(Counter::default()))?
///     .add_first("encoder", Stage::encoder::<String, _>(LineEncoder::new()))?;
/// let mut protocol = PipelineProtocol::new(pipeline, Echo);
/// let recorder = StringTransport::new();
/// protocol.connection_made(&recorder.transport());
/// protocol.data_received(Bytes::from("a\nb\ncount\n"));
/// assert_eq!(recorder.value(), b"a\nb\n2 so far\n");
/// # Ok::<(), PipelineError>(())
/// ```
pub trait StageHandler: 'static {
    /// The stage is in a pipeline on a live connection: added while the
    /// connection runs, or at its start for the stages already there
    /// (Netty's `handlerAdded`). Called before any other method.
    fn handler_added(&mut self, ctx: &mut StageContext<'_>) {
        let _ = ctx;
    }

    /// The stage left the pipeline (removed, replaced, or the connection
    /// ended: then every stage, last to first): the last call. What it
    /// still holds for the stages after it, it passes on here
    /// ([`fire_message`](StageContext::fire_message)); a decoder stage
    /// hands over its unconsumed bytes this way.
    fn handler_removed(&mut self, ctx: &mut StageContext<'_>) {
        let _ = ctx;
    }

    /// The connection is up (Netty's `channelActive`), after every stage's
    /// `handler_added`.
    fn connection_made(&mut self, ctx: &mut StageContext<'_>) {
        let _ = ctx;
    }

    /// Whether the stage holds inbound work it passes on one piece at a
    /// time (a queue of messages): while this is true, the pipeline calls
    /// [`produce`](Self::produce) instead of giving the stage its next
    /// event. The default holds nothing.
    fn has_pending(&self) -> bool {
        false
    }

    /// Passes on the next piece of held work. The pipeline calls it only
    /// after the stages after this one, and the handler, have dealt with
    /// the previous piece, so they may change the pipeline or turn
    /// automatic reading off in between (as a decoder stage delivers one
    /// frame at a time). A call that passes nothing on must make
    /// [`has_pending`](Self::has_pending) false: one that does neither
    /// would be asked again forever, so the pipeline treats it as a panic
    /// in the stage, which closes the connection.
    fn produce(&mut self, ctx: &mut StageContext<'_>) {
        let _ = ctx;
    }

    /// An inbound message.
    fn message_received(&mut self, ctx: &mut StageContext<'_>, message: Message) {
        ctx.fire_message(message);
    }

    /// The messages from one read have all passed this stage (Netty's
    /// `channelReadComplete`).
    fn read_complete(&mut self, ctx: &mut StageContext<'_>) {
        ctx.fire_read_complete();
    }

    /// A user event ([`Event`]): fired at the connection, or by a stage
    /// before this one.
    fn event_received(&mut self, ctx: &mut StageContext<'_>, event: Event) {
        ctx.fire_event(event);
    }

    /// A stage before this one failed to decode its input (Netty's
    /// `exceptionCaught`). Pass it on to let the stages after this one,
    /// and finally the handler, see it; an error that is not
    /// [recoverable](DecodeError::is_recoverable) closes the connection
    /// whoever handles it.
    fn exception_caught(&mut self, ctx: &mut StageContext<'_>, error: DecodeError) {
        ctx.fire_exception(error);
    }

    /// The connection's write buffer went over its high watermark
    /// (`writable` false) or drained to its low one (true): Netty's
    /// `channelWritabilityChanged`. The handler hears it as
    /// `pause_writing` / `resume_writing`.
    fn writability_changed(&mut self, ctx: &mut StageContext<'_>, writable: bool) {
        ctx.fire_writability_changed(writable);
    }

    /// Everything written so far has reached the kernel (see
    /// [`Protocol::write_complete`](twill::Protocol::write_complete)).
    fn write_complete(&mut self, ctx: &mut StageContext<'_>) {
        ctx.fire_write_complete();
    }

    /// The peer closed its writing side, and everything it sent before has
    /// passed this stage.
    fn eof_received(&mut self, ctx: &mut StageContext<'_>) {
        ctx.fire_eof();
    }

    /// The connection is gone (Netty's `channelInactive`); `handler_removed`
    /// follows.
    fn connection_lost(&mut self, ctx: &mut StageContext<'_>, reason: &Reason) {
        let _ = (ctx, reason);
    }

    /// An outbound message, on its way to the transport. Write what goes on
    /// with [`StageContext::write`].
    ///
    /// # Errors
    ///
    /// The message cannot be encoded: the error is logged and closes the
    /// connection (Netty fails the write's promise).
    fn write(&mut self, ctx: &mut StageContext<'_>, message: Message) -> Result<(), EncodeError> {
        ctx.write(message);
        Ok(())
    }

    /// A stage after this one (or the handler) asks for more input while
    /// automatic reading is off (Netty's outbound `read`). The default asks
    /// the stages before this one, and finally the transport.
    fn read(&mut self, ctx: &mut StageContext<'_>) {
        ctx.read();
    }
}

/// An inbound signal on its way through the stages.
pub(super) enum Inbound {
    Message(Message),
    ReadComplete,
    Event(Event),
    Error(DecodeError),
    Eof,
    Writability(bool),
    WriteComplete,
}

/// An outbound operation on its way to the transport.
pub(super) enum Outbound {
    Write(Message),
    Read,
}

/// What a stage passed on during one call, delivered when it returns.
#[derive(Default)]
pub(super) struct Outputs {
    pub(super) inbound: Vec<Inbound>,
    pub(super) outbound: Vec<Outbound>,
    /// A stage consumed an error that cannot be recovered from: the
    /// connection closes now.
    pub(super) fatal: bool,
}

/// What every stage of one connection shares: the transport, the pipeline,
/// and whether reading is automatic.
pub(super) struct Link {
    pub(super) transport: Transport,
    pub(super) pipeline: Pipeline,
    pub(super) auto_read: Cell<bool>,
    /// A `read()` reached the transport and no read answered it yet.
    pub(super) demand: Cell<bool>,
}

/// A stage's view of its connection, for one call: what it passes on goes
/// to the next stage (inbound) or the previous one (outbound) when the
/// call returns. Netty's `ChannelHandlerContext`.
pub struct StageContext<'a> {
    pub(super) name: &'a str,
    pub(super) link: &'a Link,
    pub(super) out: &'a mut Outputs,
}

impl StageContext<'_> {
    /// Passes `message` to the next stage (Netty's `fireChannelRead`).
    pub fn fire_message(&mut self, message: impl Any) {
        self.out.inbound.push(Inbound::Message(boxed(message)));
    }

    /// Passes the end of a read batch on (Netty's `fireChannelReadComplete`).
    pub fn fire_read_complete(&mut self) {
        self.out.inbound.push(Inbound::ReadComplete);
    }

    /// Passes `event` to the next stage (Netty's `fireUserEventTriggered`).
    pub fn fire_event(&mut self, event: Event) {
        self.out.inbound.push(Inbound::Event(event));
    }

    /// Passes `error` to the next stage's
    /// [`exception_caught`](StageHandler::exception_caught) (Netty's
    /// `fireExceptionCaught`). An error that is not
    /// [recoverable](DecodeError::is_recoverable) closes the connection
    /// once the stages after this one and the handler have seen it.
    pub fn fire_exception(&mut self, error: DecodeError) {
        self.out.inbound.push(Inbound::Error(error));
    }

    /// Passes the peer's EOF on.
    pub fn fire_eof(&mut self) {
        self.out.inbound.push(Inbound::Eof);
    }

    /// Passes a writability change on (Netty's
    /// `fireChannelWritabilityChanged`).
    pub fn fire_writability_changed(&mut self, writable: bool) {
        self.out.inbound.push(Inbound::Writability(writable));
    }

    /// Passes a write completion on.
    pub fn fire_write_complete(&mut self) {
        self.out.inbound.push(Inbound::WriteComplete);
    }

    /// Writes `message` towards the transport, through the stages before
    /// this one (Netty's `ctx.write`). What reaches the transport must be
    /// bytes (`Bytes`, `BytesMut` or `Vec<u8>`).
    pub fn write(&mut self, message: impl Any) {
        self.out.outbound.push(Outbound::Write(boxed(message)));
    }

    /// Asks the stages before this one, and the transport, for more input
    /// (Netty's `ctx.read`); see
    /// [`PipelineContext::set_auto_read`](super::PipelineContext::set_auto_read).
    pub fn read(&mut self) {
        self.out.outbound.push(Outbound::Read);
    }

    /// Whether reading is automatic (see
    /// [`PipelineContext::set_auto_read`](super::PipelineContext::set_auto_read)).
    pub fn auto_read(&self) -> bool {
        self.link.auto_read.get()
    }

    /// This stage's name in the pipeline.
    pub fn name(&self) -> &str {
        self.name
    }

    /// The pipeline, to change it (a stage may remove or replace itself).
    pub fn pipeline(&self) -> &Pipeline {
        &self.link.pipeline
    }

    /// The connection's transport.
    pub fn transport(&self) -> &Transport {
        &self.link.transport
    }

    /// The remote address.
    pub fn peer(&self) -> Address {
        self.link.transport.peer()
    }
}

impl fmt::Debug for StageContext<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StageContext")
            .field("name", &self.name)
            .field("transport", &self.link.transport)
            .finish()
    }
}
