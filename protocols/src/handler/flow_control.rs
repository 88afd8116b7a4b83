//! [`FlowControlHandler`]: one message per `read()`, Netty's
//! `FlowControlHandler`, as a pipeline stage.

use std::collections::VecDeque;
use std::fmt;

use crate::codec::pipeline::{Message, StageContext, StageHandler};

/// A pipeline stage that lets the stages after it pull messages one at a
/// time: Netty's `FlowControlHandler`.
///
/// With automatic reading on it passes everything through, and turning
/// it back on releases what its queue holds. With it
/// [off](crate::codec::pipeline::PipelineContext::set_auto_read), every
/// message that reaches it waits in its queue until a
/// [`read()`](crate::codec::pipeline::PipelineContext::read) from after it
/// asks: each request releases exactly one message, even when one read
/// from the socket decoded a hundred. A request that finds the queue empty
/// goes on towards the transport, which reads once, and the next message to
/// arrive is passed straight on; several requests made before it arrives
/// still release one (Netty's rule).
///
/// The end of a read (`read_complete`) and the peer's EOF wait behind
/// queued messages too, so the handler sees them in order. When the stage
/// is removed, what it holds goes on to the next stage at once; when the
/// connection is lost, queued messages are dropped (Netty releases them),
/// with a debug log saying how many.
///
/// Memory: with reading off, the queue holds at most the messages one read
/// brought (the socket is read again only when a request finds it empty).
///
/// # Examples
///
/// ```
/// use bytes::Bytes;
/// use twill::{testing::StringTransport, Protocol};
/// use twill_protocols::codec::pipeline::*;
/// use twill_protocols::codec::LineBasedFrameDecoder;
/// use twill_protocols::handler::FlowControlHandler;
///
/// #[derive(Default)]
/// struct OneByOne { got: Vec<Bytes> }
/// impl PipelineHandler for OneByOne {
///     fn connection_made(&mut self, ctx: &PipelineContext) {
///         ctx.set_auto_read(false);
///         ctx.read();
///     }
///     fn message_received(&mut self, _ctx: &PipelineContext, message: Message) {
///         self.got.push(*message.downcast::<Bytes>().unwrap());
///     }
/// }
///
/// let pipeline = Pipeline::new();
/// pipeline
///     .add_last("lines", Stage::decoder(LineBasedFrameDecoder::new(64)))?
///     .add_last("flow", Stage::handler(FlowControlHandler::new()))?;
/// let mut protocol = PipelineProtocol::new(pipeline, OneByOne::default());
/// let recorder = StringTransport::new();
/// protocol.connection_made(&recorder.transport());
/// protocol.data_received(Bytes::from("1\n2\n3\n"));
/// assert_eq!(protocol.handler().got, ["1"]);
/// assert_eq!(protocol.pipeline().get::<FlowControlHandler>("flow").unwrap().queued(), 2);
/// # Ok::<(), PipelineError>(())
/// ```
#[derive(Default)]
pub struct FlowControlHandler {
    queue: VecDeque<Message>,
    /// A request found the queue empty: the next message goes straight
    /// on. Netty's `shouldConsume`: requests made while it is set do not
    /// add up.
    should_consume: bool,
    /// A `read_complete` waits behind the queue.
    complete_owed: bool,
    /// The EOF waits behind the queue.
    eof_owed: bool,
    /// Reading is automatic (again): the queue is handed out, one message
    /// per `produce`, while it stays automatic.
    draining: bool,
}

impl FlowControlHandler {
    /// A handler with an empty queue.
    pub fn new() -> FlowControlHandler {
        FlowControlHandler::default()
    }

    /// How many messages wait for a request.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Passes on what waited behind the queue, once it is empty.
    fn release_owed(&mut self, ctx: &mut StageContext<'_>) {
        if !self.queue.is_empty() {
            return;
        }
        if std::mem::take(&mut self.complete_owed) {
            ctx.fire_read_complete();
        }
        if std::mem::take(&mut self.eof_owed) {
            ctx.fire_eof();
        }
    }

    fn drain(&mut self, ctx: &mut StageContext<'_>) {
        for message in self.queue.drain(..) {
            ctx.fire_message(message);
        }
        self.release_owed(ctx);
    }
}

impl StageHandler for FlowControlHandler {
    fn has_pending(&self) -> bool {
        self.draining
    }

    /// While reading is automatic, hands out the next queued message: one
    /// at a time, so that a handler turning automatic reading off from a
    /// message stops the rest (Netty's `dequeue` loop).
    fn produce(&mut self, ctx: &mut StageContext<'_>) {
        let next = if ctx.auto_read() {
            self.queue.pop_front()
        } else {
            None
        };
        match next {
            Some(message) => ctx.fire_message(message),
            None => self.draining = false,
        }
        self.release_owed(ctx);
    }

    fn message_received(&mut self, ctx: &mut StageContext<'_>, message: Message) {
        if ctx.auto_read() && self.queue.is_empty() {
            ctx.fire_message(message);
        } else if ctx.auto_read() {
            // Behind what waits, which is being handed out.
            self.queue.push_back(message);
            self.draining = true;
        } else if self.should_consume && self.queue.is_empty() {
            self.should_consume = false;
            ctx.fire_message(message);
        } else {
            self.queue.push_back(message);
        }
    }

    fn read(&mut self, ctx: &mut StageContext<'_>) {
        if ctx.auto_read() {
            // Reading is automatic again: what waits goes on, one message
            // at a time, as Netty's dequeue does while AUTO_READ is on.
            self.draining = !self.queue.is_empty();
            ctx.read();
            return;
        }
        match self.queue.pop_front() {
            Some(message) => {
                ctx.fire_message(message);
                self.release_owed(ctx);
            }
            None => {
                self.should_consume = true;
                ctx.read();
            }
        }
    }

    fn read_complete(&mut self, ctx: &mut StageContext<'_>) {
        if self.queue.is_empty() {
            ctx.fire_read_complete();
        } else {
            self.complete_owed = true;
        }
    }

    fn eof_received(&mut self, ctx: &mut StageContext<'_>) {
        if self.queue.is_empty() {
            ctx.fire_eof();
        } else {
            self.eof_owed = true;
        }
    }

    fn connection_lost(&mut self, _ctx: &mut StageContext<'_>, _reason: &twill::Reason) {
        if !self.queue.is_empty() {
            log::debug!(
                "{} queued messages dropped: the connection is gone",
                self.queue.len()
            );
        }
        self.queue.clear();
        self.should_consume = false;
    }

    fn handler_removed(&mut self, ctx: &mut StageContext<'_>) {
        self.drain(ctx);
    }
}

impl fmt::Debug for FlowControlHandler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FlowControlHandler")
            .field("queued", &self.queue.len())
            .field("should_consume", &self.should_consume)
            .finish()
    }
}
