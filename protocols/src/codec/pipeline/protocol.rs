//! [`PipelineProtocol`]: a [`Pipeline`] and a [`PipelineHandler`] as one
//! twill `Protocol`, and the [`PipelineContext`] handlers write through.

use std::any::Any;
use std::cell::{Cell, Ref, RefCell, RefMut};
use std::fmt;
use std::rc::Rc;
use twill::Address;

use bytes::Bytes;
use twill::defer::{Deferred, Failure};
use twill::{Event, Protocol, Reason, Transport};

use super::context::{Inbound, Link};
use super::run::Step;
use super::{boxed, Message, Pipeline};
use crate::codec::{undecodable, DecodeError};

/// A handler's view of its connection: writes through the outbound stages
/// and reaches the [`Pipeline`] to change it. Clones are the same context.
pub struct PipelineContext {
    link: Rc<Link>,
}

impl Clone for PipelineContext {
    fn clone(&self) -> Self {
        PipelineContext {
            link: self.link.clone(),
        }
    }
}

impl PipelineContext {
    /// Sends `message` through the outbound stages, last to first; what
    /// comes out must be bytes (`Bytes`, `BytesMut` or `Vec<u8>`). A
    /// message that cannot be encoded is logged and closes the connection
    /// with that error (as [`Context::write`](crate::codec::Context::write)).
    pub fn write(&self, message: impl Any) {
        let _ = self.send(boxed(message));
    }

    fn send(&self, message: Message) -> Result<(), crate::codec::EncodeError> {
        let end = self.link.pipeline.inner.borrow().entries.len();
        self.link.pipeline.write_below(end, message, &self.link)
    }

    /// Writes `message` as [`write`](Self::write) does and returns a
    /// Deferred that fires once the bytes the stages made of it by the time
    /// this returns (and everything written before) have reached the
    /// kernel; it fails with [`NotSent`](twill::transport::NotSent) if the
    /// connection ends first, or with the encoding error (the connection
    /// is closed then). A stage that holds the message back to write it
    /// later (Netty passes the promise along with the message) is not
    /// waited for: the Deferred covers what reached the transport.
    pub fn write_and_notify(&self, message: impl Any) -> Deferred<()> {
        match self.send(boxed(message)) {
            Ok(()) => self.link.transport.flushed(),
            Err(error) => twill::defer::fail(Failure::new(error)),
        }
    }

    /// Fires `event` at the connection: it enters the first stage and
    /// travels through every stage's
    /// [`event_received`](super::StageHandler::event_received) to the
    /// handler's (see [`Transport::fire_event`] for when).
    pub fn fire_event(&self, event: Event) {
        self.link.transport.fire_event(event);
    }

    /// Turns automatic reading off or on (Netty's `AUTO_READ`). While off,
    /// the connection reads from its socket only when asked with
    /// [`read`](Self::read), one read per request; what one read brings is
    /// decoded and delivered as usual, unless a
    /// [`FlowControlHandler`](crate::handler::FlowControlHandler) stage
    /// holds the messages back one by one. Turning it on reads again, and
    /// sends a [`read`](Self::read) through the stages (as Netty's
    /// `setAutoRead(true)` does), so that what a `FlowControlHandler` holds
    /// goes on now rather than when more input comes.
    pub fn set_auto_read(&self, on: bool) {
        let link = &self.link;
        if link.auto_read.replace(on) == on {
            return;
        }
        if on || link.demand.get() {
            link.transport.resume_reading();
        } else {
            link.transport.pause_reading();
        }
        if on {
            self.read();
        }
    }

    /// Whether reading is automatic (the default).
    pub fn auto_read(&self) -> bool {
        self.link.auto_read.get()
    }

    /// Asks for more input while automatic reading is off (Netty's
    /// `read()`): the request goes through the stages' `read`, last to
    /// first, and then to the transport, which reads once. Does nothing
    /// at the transport while reading is automatic.
    pub fn read(&self) {
        let end = self.link.pipeline.inner.borrow().entries.len();
        self.link.pipeline.read_below(end, &self.link);
        self.link.pipeline.drive();
    }

    /// The pipeline, to change it.
    pub fn pipeline(&self) -> &Pipeline {
        &self.link.pipeline
    }

    /// Closes the connection once what is written is sent.
    pub fn lose_connection(&self) {
        self.link.transport.lose_connection();
    }

    /// Closes the connection because of `error`.
    pub fn fail(&self, error: impl Into<Box<dyn std::error::Error + Send + Sync>>) {
        self.link.transport.fail(error);
    }

    /// The underlying transport.
    pub fn transport(&self) -> &Transport {
        &self.link.transport
    }

    /// The remote address.
    pub fn peer(&self) -> Address {
        self.link.transport.peer()
    }
}

impl fmt::Debug for PipelineContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PipelineContext")
            .field("transport", &self.link.transport)
            .field("pipeline", &self.link.pipeline)
            .finish()
    }
}

/// What sits after the last stage: Netty's last inbound handler. Messages
/// arrive as [`Message`]s; downcast them (`message.downcast::<String>()`).
pub trait PipelineHandler: 'static {
    /// The connection is up, after every stage's `connection_made`.
    fn connection_made(&mut self, ctx: &PipelineContext) {
        let _ = ctx;
    }

    /// A message came out of the last stage. The handler may change the
    /// pipeline here: the next message is produced by the new stages.
    fn message_received(&mut self, ctx: &PipelineContext, message: Message);

    /// The messages from one read have all been delivered: once per read
    /// that brought at least one (Netty's `channelReadComplete`, which
    /// comes after every read, even one that completed no message; stages
    /// see every one).
    fn read_complete(&mut self, ctx: &PipelineContext) {
        let _ = ctx;
    }

    /// A stage rejected the input and no stage after it handled the error.
    /// The default logs why and closes this connection; after an error
    /// that is not [recoverable](DecodeError::is_recoverable) the
    /// connection is closed whatever this method does.
    fn exception_caught(&mut self, ctx: &PipelineContext, error: DecodeError) {
        undecodable::close(&ctx.link.transport, error);
    }

    /// An event came through the stages (Netty's `userEventTriggered`).
    /// The default drops it, with a debug log.
    fn event_received(&mut self, ctx: &PipelineContext, event: Event) {
        log::debug!("unhandled event for {}: {event:?}", ctx.peer());
    }

    /// The peer closed its writing side, after what it sent was decoded and
    /// delivered. Return `true` to keep writing (half-open).
    fn eof_received(&mut self, ctx: &PipelineContext) -> bool {
        let _ = ctx;
        false
    }

    /// The connection is gone; called once, last. Writes through `ctx` are
    /// dropped now, but it still tells which connection this was. Bytes a
    /// decoder still held (an unfinished frame) are dropped with the
    /// connection; only an EOF has them decoded
    /// ([`decode_eof`](crate::codec::Decoder::decode_eof)), where Netty
    /// also decodes them when the channel goes inactive.
    fn connection_lost(&mut self, ctx: &PipelineContext, reason: &Reason) {
        let _ = (ctx, reason);
    }

    /// The write buffer went over its high watermark (after the stages'
    /// [`writability_changed`](super::StageHandler::writability_changed)).
    fn pause_writing(&mut self, ctx: &PipelineContext) {
        let _ = ctx;
    }

    /// The write buffer drained to its low watermark.
    fn resume_writing(&mut self, ctx: &PipelineContext) {
        let _ = ctx;
    }

    /// Everything written so far has reached the kernel (see
    /// [`Protocol::write_complete`]).
    fn write_complete(&mut self, ctx: &PipelineContext) {
        let _ = ctx;
    }
}

/// A [`Pipeline`] and a [`PipelineHandler`] as one twill [`Protocol`]:
/// bytes enter at the first stage, and what leaves the last stage goes to
/// the handler. Decoding stops once the connection is closing; see
/// [`Pipeline`] for an example.
pub struct PipelineProtocol<H> {
    core: Rc<Core<H>>,
    /// What the pipeline calls (through a `Weak`) when a change made
    /// outside the delivery loop left something to deliver.
    driver: Option<Rc<dyn Fn()>>,
}

/// The state the pipeline's driver shares with the protocol.
struct Core<H> {
    pipeline: Pipeline,
    handler: RefCell<H>,
    ctx: RefCell<Option<PipelineContext>>,
    /// After an unrecoverable decode error, input is ignored.
    failed: Cell<bool>,
    /// The handler or the loop is running: what is handed over meanwhile
    /// is delivered when it returns.
    busy: Cell<bool>,
    /// Messages delivered since the last `read_complete`.
    delivered: Cell<usize>,
    /// The EOF reached the handler: what it answered.
    eof_answer: Cell<Option<bool>>,
    /// `eof_received` returned before the EOF reached the handler (a stage
    /// holds it back): close when it does, unless the handler keeps it.
    eof_late: Cell<bool>,
}

impl<H: PipelineHandler> Core<H> {
    /// Runs `f` on the handler, marked busy.
    fn call<R>(&self, f: impl FnOnce(&mut H, &PipelineContext) -> R) -> Option<R> {
        let ctx = self.ctx.borrow().clone()?;
        let was_busy = self.busy.replace(true);
        let result = f(&mut self.handler.borrow_mut(), &ctx);
        self.busy.set(was_busy);
        Some(result)
    }

    /// Runs the stages and delivers what reaches the handler, unless that
    /// is already going on further up the stack.
    fn run(&self) {
        if self.busy.get() || self.failed.get() {
            return;
        }
        let Some(ctx) = self.ctx.borrow().clone() else {
            return;
        };
        self.busy.set(true);
        while !self.failed.get() {
            if ctx.link.transport.is_closing() {
                self.pipeline.inner.borrow_mut().clear_inbound();
                break;
            }
            match self.pipeline.step() {
                Step::Handler(signal) => self.deliver(&ctx, signal),
                Step::Ran => {
                    if std::mem::take(&mut self.pipeline.inner.borrow_mut().fatal) {
                        self.give_up(&ctx);
                    }
                }
                Step::Idle => break,
            }
        }
        self.busy.set(false);
    }

    fn deliver(&self, ctx: &PipelineContext, signal: Inbound) {
        let mut handler = self.handler.borrow_mut();
        match signal {
            Inbound::Message(message) => {
                self.delivered.set(self.delivered.get() + 1);
                handler.message_received(ctx, message);
            }
            Inbound::ReadComplete => {
                if self.delivered.replace(0) > 0 {
                    handler.read_complete(ctx);
                }
            }
            Inbound::Event(event) => handler.event_received(ctx, event),
            Inbound::Error(error) => {
                let fatal = !error.is_recoverable();
                handler.exception_caught(ctx, error);
                if fatal {
                    drop(handler);
                    self.give_up(ctx);
                }
            }
            Inbound::Writability(false) => handler.pause_writing(ctx),
            Inbound::Writability(true) => handler.resume_writing(ctx),
            Inbound::WriteComplete => handler.write_complete(ctx),
            Inbound::Eof => {
                let keep = handler.eof_received(ctx);
                self.eof_answer.set(Some(keep));
                if self.eof_late.get() && !keep {
                    ctx.lose_connection();
                }
            }
        }
    }

    fn give_up(&self, ctx: &PipelineContext) {
        self.failed.set(true);
        self.pipeline.inner.borrow_mut().clear_inbound();
        undecodable::give_up(&ctx.link.transport, "unrecoverable decode error");
    }

    /// Queues `signal` at the first stage (or the handler) and runs.
    fn push(&self, signal: Inbound) {
        self.pipeline
            .inner
            .borrow_mut()
            .push_inbound(0, vec![signal]);
        self.run();
    }
}

impl<H: PipelineHandler> PipelineProtocol<H> {
    /// Runs `pipeline` for `handler`.
    pub fn new(pipeline: Pipeline, handler: H) -> Self {
        let core = Rc::new(Core {
            pipeline,
            handler: RefCell::new(handler),
            ctx: RefCell::new(None),
            failed: Cell::new(false),
            busy: Cell::new(false),
            delivered: Cell::new(0),
            eof_answer: Cell::new(None),
            eof_late: Cell::new(false),
        });
        let weak = Rc::downgrade(&core);
        let driver: Rc<dyn Fn()> = Rc::new(move || {
            if let Some(core) = weak.upgrade() {
                core.run();
            }
        });
        core.pipeline.set_driver(Rc::downgrade(&driver));
        PipelineProtocol {
            core,
            driver: Some(driver),
        }
    }

    /// The pipeline.
    pub fn pipeline(&self) -> &Pipeline {
        &self.core.pipeline
    }

    /// The handler. Drop the guard before the protocol runs again.
    pub fn handler(&self) -> Ref<'_, H> {
        self.core.handler.borrow()
    }

    /// The handler, mutably.
    pub fn handler_mut(&mut self) -> RefMut<'_, H> {
        self.core.handler.borrow_mut()
    }

    /// Runs `f` on the handler, then delivers what it left queued (a stage
    /// it removed from this callback).
    fn call(&self, f: impl FnOnce(&mut H, &PipelineContext)) {
        self.core.call(f);
        self.core.run();
    }
}

impl<H: PipelineHandler> Protocol for PipelineProtocol<H> {
    fn connection_made(&mut self, transport: &Transport) {
        // On before the handler runs, so it can turn it off.
        transport.set_flow_control(true);
        let link = Rc::new(Link {
            transport: transport.clone(),
            pipeline: self.core.pipeline.share(),
            auto_read: Cell::new(true),
            demand: Cell::new(false),
        });
        self.core.pipeline.inner.borrow_mut().link = Some(link.clone());
        *self.core.ctx.borrow_mut() = Some(PipelineContext { link });
        let pipeline = &self.core.pipeline;
        // Stages run from here on with the handler marked busy, so what
        // they pass on waits for the loop below.
        self.core.busy.set(true);
        pipeline.for_each_stage(|stage, ctx| stage.added(ctx));
        pipeline.for_each_stage(|stage, ctx| stage.connection_made(ctx));
        self.core.busy.set(false);
        self.call(|handler, ctx| handler.connection_made(ctx));
    }

    fn data_received(&mut self, data: Bytes) {
        if self.core.failed.get() {
            return;
        }
        if let Some(ctx) = self.core.ctx.borrow().as_ref() {
            let link = &ctx.link;
            // This read answers the request that let it happen.
            link.demand.set(false);
            if !link.auto_read.get() {
                link.transport.pause_reading();
            }
        }
        {
            let mut stages = self.core.pipeline.inner.borrow_mut();
            stages.push_inbound(0, vec![Inbound::Message(Box::new(data))]);
            stages.push_inbound(0, vec![Inbound::ReadComplete]);
        }
        self.core.run();
    }

    fn eof_received(&mut self) -> bool {
        self.core.push(Inbound::Eof);
        let closing = self.core.failed.get()
            || (self.core.ctx.borrow().as_ref()).is_some_and(|ctx| ctx.transport().is_closing());
        match self.core.eof_answer.get() {
            Some(keep) => keep,
            None if closing => {
                // Decoding failed on the way (a truncated frame, say):
                // the handler still hears that the peer is done.
                if self.core.failed.get() {
                    self.core.call(|handler, ctx| handler.eof_received(ctx));
                }
                false
            }
            None => {
                // A stage holds the EOF back behind messages the handler
                // has not asked for yet: stay open until it gets there.
                self.core.eof_late.set(true);
                true
            }
        }
    }

    fn connection_lost(&mut self, reason: &Reason) {
        // Nothing is delivered any more: the driver goes.
        self.driver = None;
        let pipeline = &self.core.pipeline;
        pipeline.inner.borrow_mut().clear_inbound();
        self.core.busy.set(true);
        pipeline.for_each_stage(|stage, ctx| stage.connection_lost(ctx, reason));
        self.core.busy.set(false);
        self.core
            .call(|handler, ctx| handler.connection_lost(ctx, reason));
        // The pipeline is torn down: every stage hears `handler_removed`,
        // last to first (Netty's tail-to-head teardown), and what they pass
        // on has nowhere to go.
        self.core.busy.set(true);
        pipeline.for_each_stage_from_last(|stage, ctx| stage.removed(ctx));
        pipeline.inner.borrow_mut().clear_inbound();
    }

    fn pause_writing(&mut self) {
        self.core.push(Inbound::Writability(false));
    }

    fn resume_writing(&mut self) {
        self.core.push(Inbound::Writability(true));
    }

    fn write_complete(&mut self) {
        self.core.push(Inbound::WriteComplete);
    }

    fn event_received(&mut self, event: Event) {
        self.core.push(Inbound::Event(event));
    }
}

impl<H> fmt::Debug for PipelineProtocol<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PipelineProtocol")
            .field("pipeline", &self.core.pipeline)
            .field("failed", &self.core.failed.get())
            .finish()
    }
}
