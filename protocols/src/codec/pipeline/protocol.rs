//! [`PipelineProtocol`]: a [`Pipeline`] and a [`PipelineHandler`] as one
//! twill `Protocol`, and the [`PipelineContext`] handlers write through.

use std::cell::{Cell, Ref};

use super::*;
use crate::codec::undecodable;

/// A handler's view of its connection: writes through the outbound stages
/// and reaches the [`Pipeline`] to change it. Clones are the same context.
pub struct PipelineContext {
    transport: Transport,
    pipeline: Pipeline,
}

impl Clone for PipelineContext {
    fn clone(&self) -> Self {
        PipelineContext {
            transport: self.transport.clone(),
            pipeline: self.pipeline.share(),
        }
    }
}

impl PipelineContext {
    /// Sends `message` through the outbound stages, last to first; what
    /// comes out must be bytes (`Bytes`, `BytesMut` or `Vec<u8>`). A
    /// message that cannot be encoded is logged and closes the connection
    /// with that error (as [`Context::write`](crate::codec::Context::write)).
    pub fn write(&self, message: impl Any) {
        let encoded = match self.pipeline.inner.try_borrow_mut() {
            Ok(mut stages) => stages.encode(boxed(message)),
            Err(_) => Err(EncodeError::Other("written from a stage".into())),
        };
        match encoded {
            Ok(chunks) => chunks
                .into_iter()
                .for_each(|chunk| self.transport.write(chunk)),
            Err(err) => {
                log::error!("could not encode a message for {}: {err}", self.peer());
                self.transport.fail(err);
            }
        }
    }

    /// The pipeline, to change it.
    pub fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }

    /// Closes the connection once what is written is sent.
    pub fn lose_connection(&self) {
        self.transport.lose_connection();
    }

    /// Closes the connection because of `error`.
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
}

impl fmt::Debug for PipelineContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PipelineContext")
            .field("transport", &self.transport)
            .field("pipeline", &self.pipeline)
            .finish()
    }
}

/// What sits after the last stage: Netty's last inbound handler. Messages
/// arrive as [`Message`]s; downcast them (`message.downcast::<String>()`).
pub trait PipelineHandler: 'static {
    /// The connection is up.
    fn connection_made(&mut self, ctx: &PipelineContext) {
        let _ = ctx;
    }

    /// A message came out of the last inbound stage. The handler may change
    /// the pipeline here: the next message is produced by the new stages.
    fn message_received(&mut self, ctx: &PipelineContext, message: Message);

    /// A stage rejected the input. The default logs why and closes this
    /// connection; after an error that is not
    /// [recoverable](DecodeError::is_recoverable) the connection is closed
    /// whatever this method does.
    fn exception_caught(&mut self, ctx: &PipelineContext, error: DecodeError) {
        undecodable::close(&ctx.transport, error);
    }

    /// The peer closed its writing side, after what it sent was decoded and
    /// delivered. Return `true` to keep writing (half-open).
    fn eof_received(&mut self, ctx: &PipelineContext) -> bool {
        let _ = ctx;
        false
    }

    /// The connection is gone; called once, last. Writes through `ctx` are
    /// dropped now, but it still tells which connection this was.
    fn connection_lost(&mut self, ctx: &PipelineContext, reason: &Reason) {
        let _ = (ctx, reason);
    }

    /// The write buffer went over its high watermark.
    fn pause_writing(&mut self, ctx: &PipelineContext) {
        let _ = ctx;
    }

    /// The write buffer drained to its low watermark.
    fn resume_writing(&mut self, ctx: &PipelineContext) {
        let _ = ctx;
    }
}

/// A [`Pipeline`] and a [`PipelineHandler`] as one twill [`Protocol`]:
/// bytes enter at the first stage, and what leaves the last inbound stage
/// goes to the handler. Decoding stops once the connection is closing; see
/// [`Pipeline`] for an example.
pub struct PipelineProtocol<H> {
    core: Rc<Core<H>>,
    /// What the pipeline calls (through a `Weak`) when a stage removed
    /// outside the delivery loop left bytes to deliver.
    driver: Option<Rc<dyn Fn()>>,
}

/// The state the pipeline's driver shares with the protocol.
struct Core<H> {
    pipeline: Pipeline,
    handler: RefCell<H>,
    ctx: RefCell<Option<PipelineContext>>,
    /// After an unrecoverable decode error, input is ignored.
    failed: Cell<bool>,
    /// EOF was received: stages get `decode_eof` from then on.
    eof: Cell<bool>,
    /// The handler is running (the delivery loop or another callback):
    /// leftovers handed over meanwhile are delivered when it returns.
    busy: Cell<bool>,
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

    /// Decodes and delivers what the stages hold, unless that is already
    /// going on further up the stack.
    fn run(&self) {
        if self.busy.get() || self.failed.get() {
            return;
        }
        let Some(ctx) = self.ctx.borrow().clone() else {
            return;
        };
        self.busy.set(true);
        // At EOF the stages get `decode_eof` one after another, each once
        // the ones before it have nothing left.
        let eof = self.eof.get();
        let mut eof_through = 0;
        while !self.failed.get() {
            if ctx.transport.is_closing() {
                self.pipeline.inner.borrow_mut().clear_inbound();
                break;
            }
            let step = self.pipeline.inner.borrow_mut().step(eof_through);
            match step {
                Step::Deliver(message) => self.handler.borrow_mut().message_received(&ctx, message),
                Step::Moved => {}
                Step::Failed(error) => {
                    let recoverable = error.is_recoverable();
                    self.handler.borrow_mut().exception_caught(&ctx, error);
                    if !recoverable {
                        self.give_up(&ctx);
                    }
                }
                Step::Idle if eof && eof_through < self.pipeline.inner.borrow().entries.len() => {
                    eof_through += 1;
                }
                Step::Idle => break,
            }
        }
        self.busy.set(false);
    }

    fn give_up(&self, ctx: &PipelineContext) {
        self.failed.set(true);
        self.pipeline.inner.borrow_mut().clear_inbound();
        undecodable::give_up(&ctx.transport, "unrecoverable decode error");
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
            eof: Cell::new(false),
            busy: Cell::new(false),
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
        let ctx = PipelineContext {
            transport: transport.clone(),
            pipeline: self.core.pipeline.share(),
        };
        *self.core.ctx.borrow_mut() = Some(ctx);
        self.call(|handler, ctx| handler.connection_made(ctx));
    }

    fn data_received(&mut self, data: Bytes) {
        if self.core.failed.get() {
            return;
        }
        self.core
            .pipeline
            .inner
            .borrow_mut()
            .hand_over(0, vec![Box::new(data)]);
        self.core.run();
    }

    fn eof_received(&mut self) -> bool {
        self.core.eof.set(true);
        self.core.run();
        let keep = self.core.call(|handler, ctx| handler.eof_received(ctx));
        self.core.run();
        keep.unwrap_or(false)
    }

    fn connection_lost(&mut self, reason: &Reason) {
        // Nothing is delivered any more: the driver goes.
        self.driver = None;
        self.core
            .call(|handler, ctx| handler.connection_lost(ctx, reason));
    }

    fn pause_writing(&mut self) {
        self.call(|handler, ctx| handler.pause_writing(ctx));
    }

    fn resume_writing(&mut self) {
        self.call(|handler, ctx| handler.resume_writing(ctx));
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
