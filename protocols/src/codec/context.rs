//! [`Handler`], the message-level protocol a [`Framed`](super::Framed)
//! drives, and the [`Context`] it writes through.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::rc::Rc;
use twill::Address;

use bytes::Bytes;
use twill::defer::{Deferred, Failure};
use twill::{Event, Reason, Transport};

use super::{undecodable, DecodeError, EncodeError, Encoder};

/// A message-level protocol: what you write on top of a codec. Netty's
/// inbound handler; Twisted's `lineReceived` / `stringReceived` protocols.
///
/// Each method gets the [`Context`] to write replies through (encoded by the
/// [`Framed`](super::Framed)'s encoder); keep a clone to write later or
/// from elsewhere. For one connection the calls come in this order:
/// `connection_made`, then for each read the messages it completed
/// (`message_received` each) followed by one `read_complete`, with
/// `exception_caught`, `event_received`, `pause_writing`/`resume_writing`
/// and `write_complete` as they happen; then `eof_received` if the peer
/// closed its side; `connection_lost` last.
///
/// # Examples
///
/// Replies batched per read: a client that pipelines 100 requests in one
/// segment gets its 100 answers in one write.
///
/// ```
/// use bytes::Bytes;
/// use twill::{testing::StringTransport, Protocol};
/// use twill_protocols::codec::{Context, Decoder, Framed, Handler, LineBasedFrameDecoder, LineEncoder, StringDecoder};
///
/// #[derive(Default)]
/// struct Batched { answers: Vec<String> }
///
/// impl Handler for Batched {
///     type Message = String;
///     type Reply = String;
///     fn message_received(&mut self, _ctx: &Context<String>, line: String) {
///         self.answers.push(line.to_uppercase());
///     }
///     fn read_complete(&mut self, ctx: &Context<String>) {
///         ctx.write(self.answers.join("\n"));
///         self.answers.clear();
///     }
/// }
///
/// let decoder = LineBasedFrameDecoder::new(64).and_then(StringDecoder);
/// let mut framed = Framed::new(decoder, LineEncoder::new(), Batched::default());
/// let recorder = StringTransport::new();
/// framed.connection_made(&recorder.transport());
/// framed.data_received(Bytes::from("a\nb\nc\n"));
/// assert_eq!(recorder.value(), b"A\nB\nC\n");
/// ```
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

    /// The messages decoded from one read have all been delivered: the
    /// place to write replies gathered from them in one go (Netty's
    /// `channelReadComplete`). Called once per read that completed at
    /// least one message, and once after each message that
    /// [`Context::read`] released; Netty calls it after every read, even
    /// one that completed nothing.
    fn read_complete(&mut self, ctx: &Context<Self::Reply>) {
        let _ = ctx;
    }

    /// The decoder rejected the input. The default logs why and closes this
    /// connection (with [`Reason::Failed`] carrying the error); other
    /// connections are not affected. After an error that is not
    /// [recoverable](DecodeError::is_recoverable) the connection is closed
    /// whatever this method does.
    fn exception_caught(&mut self, ctx: &Context<Self::Reply>, error: DecodeError) {
        undecodable::close(ctx.transport(), error);
    }

    /// An event arrived (Netty's `userEventTriggered`): from a wrapper
    /// around the codec, such as an
    /// [`IdleStateEvent`](crate::handler::IdleStateEvent) from an
    /// [`IdleStateHandler`](crate::handler::IdleStateHandler), or fired
    /// with [`Context::fire_event`] or
    /// [`Transport::fire_event`](twill::Transport::fire_event). The
    /// default drops it, with a debug log.
    fn event_received(&mut self, ctx: &Context<Self::Reply>, event: Event) {
        log::debug!("unhandled event for {}: {event:?}", ctx.peer());
    }

    /// The peer closed its writing side; what it sent before was decoded
    /// (with [`Decoder::decode_eof`](super::Decoder::decode_eof)) and
    /// delivered. Return `true` to keep writing on the half-open
    /// connection (see
    /// [`Protocol::eof_received`](twill::Protocol::eof_received)).
    fn eof_received(&mut self, ctx: &Context<Self::Reply>) -> bool {
        let _ = ctx;
        false
    }

    /// The connection is gone; called once, last. Writes through `ctx` are
    /// dropped now, but it still tells which connection this was (to
    /// announce a departure to the others, say). Input still undecoded (an
    /// unfinished frame, or messages held while automatic reading was off)
    /// goes with the connection: only an EOF has it decoded.
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

    /// Everything written so far has reached the kernel (see
    /// [`Protocol::write_complete`](twill::Protocol::write_complete)).
    fn write_complete(&mut self, ctx: &Context<Self::Reply>) {
        let _ = ctx;
    }
}

/// A handler's view of its connection: writes messages through the
/// encoder, and asks for input when reading is not automatic. A cheap
/// handle; clones write to the same connection.
pub struct Context<Out> {
    transport: Transport,
    shared: Rc<Shared<Out>>,
}

struct Shared<Out> {
    encoder: RefCell<Box<dyn Encoder<Out>>>,
    flow: Flow,
}

/// Who decides when messages are delivered: automatic reading, or the
/// handler's [`Context::read`] calls.
pub(crate) struct Flow {
    auto_read: Cell<bool>,
    /// `read()` calls not yet answered with a message.
    demand: Cell<usize>,
    /// The handler is running: a `read()` is seen when it returns.
    running: Cell<bool>,
}

impl Flow {
    /// Whether a message decoded now may be delivered.
    pub(crate) fn wants_message(&self) -> bool {
        self.auto_read.get() || self.demand.get() > 0
    }

    /// A message was delivered: one `read()` is answered.
    pub(crate) fn delivered(&self) {
        if !self.auto_read.get() {
            self.demand.set(self.demand.get().saturating_sub(1));
        }
    }

    pub(crate) fn set_running(&self, running: bool) -> bool {
        self.running.replace(running)
    }
}

/// What [`Context::read`] fires at the connection when the handler is not
/// running, so that the [`Framed`](super::Framed) delivers the message.
pub(crate) struct ReadRequest;

impl<Out> Clone for Context<Out> {
    fn clone(&self) -> Self {
        Context {
            transport: self.transport.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<Out: 'static> Context<Out> {
    /// A context writing to `transport` through `encoder`.
    pub fn new(transport: Transport, encoder: impl Encoder<Out> + 'static) -> Context<Out> {
        let flow = Flow {
            auto_read: Cell::new(true),
            demand: Cell::new(0),
            running: Cell::new(false),
        };
        let shared = Shared {
            encoder: RefCell::new(Box::new(encoder)),
            flow,
        };
        Context {
            transport,
            shared: Rc::new(shared),
        }
    }

    pub(crate) fn flow(&self) -> &Flow {
        &self.shared.flow
    }

    /// Encodes `message` straight into the connection's write buffer; a
    /// body the encoder hands back as `Bytes` follows it uncopied.
    fn encode_and_write(&self, message: Out) -> Result<(), EncodeError> {
        let mut encoder = self.shared.encoder.borrow_mut();
        let encoded = self.transport.write_with_body(|buf| {
            let start = buf.len();
            match encoder.encode_parts(message, buf) {
                Ok(body) => (Ok(()), body),
                Err(err) => {
                    buf.truncate(start);
                    (Err(err), None)
                }
            }
        });
        drop(encoder);
        encoded.unwrap_or(Ok(()))
    }

    /// A message that cannot be encoded is a bug in the sender: logged,
    /// and the connection closed with it.
    fn encoding_failed(&self, err: &EncodeError) {
        log::error!("could not encode a message for {}: {err}", self.peer());
    }

    /// Encodes `message` and writes it. A message that cannot be encoded
    /// (e.g. too long for its length field) is a bug in the sender: it is
    /// logged and the connection is closed with that error, so nothing is
    /// dropped silently.
    pub fn write(&self, message: impl Into<Out>) {
        if let Err(err) = self.encode_and_write(message.into()) {
            self.encoding_failed(&err);
            self.transport.fail(err);
        }
    }

    /// Writes `message` as [`write`](Self::write) does, and returns a
    /// Deferred that fires once its bytes (and everything written before
    /// them) have reached the kernel: Netty's write promise. It fails with
    /// [`NotSent`](twill::transport::NotSent) if the connection ends
    /// first, or with the [`EncodeError`] if the message cannot be encoded
    /// (the connection is closed then, as by `write`).
    ///
    /// ```
    /// use twill::testing::{assert_no_result, success_result_of, StringTransport};
    /// use twill_protocols::codec::{Context, LineEncoder};
    ///
    /// let recorder = StringTransport::new();
    /// let ctx: Context<String> = Context::new(recorder.transport(), LineEncoder::new());
    /// recorder.set_write_buffer_size(1000); // the peer is slow
    /// let sent = ctx.write_and_notify("bye");
    /// assert_no_result(&sent);
    /// recorder.set_write_buffer_size(0);
    /// success_result_of(&sent);
    /// ```
    pub fn write_and_notify(&self, message: impl Into<Out>) -> Deferred<()> {
        match self.encode_and_write(message.into()) {
            Ok(()) => self.transport.flushed(),
            Err(err) => {
                self.encoding_failed(&err);
                // The Deferred gets the error; the connection closes with
                // an EncodeError too, as `write` closes it.
                let reason = match &err {
                    EncodeError::TooLong { length, max } => EncodeError::TooLong {
                        length: *length,
                        max: *max,
                    },
                    other => EncodeError::Other(other.to_string().into()),
                };
                self.transport.fail(reason);
                twill::defer::fail(Failure::new(err))
            }
        }
    }

    /// Writes bytes as they are, past the encoder.
    pub fn write_bytes(&self, bytes: impl Into<Bytes>) {
        self.transport.write(bytes);
    }

    /// Fires `event` at this connection: it goes through the protocol
    /// wrappers around the codec, if any, to the handler's
    /// [`event_received`](Handler::event_received); see
    /// [`Transport::fire_event`](twill::Transport::fire_event) for when.
    pub fn fire_event(&self, event: Event) {
        self.transport.fire_event(event);
    }

    /// Turns automatic reading off or on: Netty's `AUTO_READ`. While off,
    /// the connection reads nothing and the handler gets no message until
    /// it asks with [`read`](Self::read); messages that one read completed
    /// wait, undecoded, in the input buffer until asked for, and reading
    /// from the socket stops while nothing is asked (so the peer's further
    /// input waits in the kernel). An EOF waits behind them too. Turning it
    /// back on delivers what waits.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use twill::{testing::StringTransport, Protocol};
    /// use twill_protocols::codec::{Context, Framed, Handler, LineBasedFrameDecoder, LineEncoder};
    ///
    /// #[derive(Default)]
    /// struct OneAtATime { got: Vec<Bytes> }
    /// impl Handler for OneAtATime {
    ///     type Message = Bytes;
    ///     type Reply = String;
    ///     fn connection_made(&mut self, ctx: &Context<String>) {
    ///         ctx.set_auto_read(false);
    ///         ctx.read(); // the first message, when it comes
    ///     }
    ///     fn message_received(&mut self, _ctx: &Context<String>, line: Bytes) {
    ///         self.got.push(line);
    ///     }
    /// }
    ///
    /// let mut framed = Framed::new(LineBasedFrameDecoder::new(64), LineEncoder::new(), OneAtATime::default());
    /// let recorder = StringTransport::new();
    /// framed.connection_made(&recorder.transport());
    /// framed.data_received(Bytes::from("1\n2\n3\n"));
    /// assert_eq!(framed.handler().got, ["1"]);
    /// assert!(recorder.reading_paused(), "nothing asked: nothing read");
    /// ```
    pub fn set_auto_read(&self, on: bool) {
        let flow = self.flow();
        if flow.auto_read.replace(on) == on {
            return;
        }
        flow.demand.set(0);
        if on {
            self.request_delivery();
        }
    }

    /// Whether reading is automatic (the default).
    pub fn auto_read(&self) -> bool {
        self.flow().auto_read.get()
    }

    /// Asks for one more message while automatic reading is
    /// [off](Self::set_auto_read): Netty's `ctx.read()` behind a
    /// `FlowControlHandler`. The next message is delivered as soon as it is
    /// decoded: at once if a read already completed it (after the current
    /// callback returns, if called from one), else when it arrives.
    /// Several calls ask for as many messages. Does nothing while reading
    /// is automatic.
    ///
    /// Called from outside the handler's callbacks (a timer, another
    /// connection), the request reaches the [`Framed`](super::Framed) as an
    /// [`Event`] fired at the connection, through the protocol wrappers
    /// around it: a wrapper of your own must pass events on (see
    /// [`Protocol::event_received`](twill::Protocol::event_received)), as
    /// every wrapper in this crate does.
    pub fn read(&self) {
        let flow = self.flow();
        if flow.auto_read.get() {
            return;
        }
        flow.demand.set(flow.demand.get() + 1);
        self.request_delivery();
    }

    /// Has the framer deliver what waits: when the handler returns if it
    /// is running, else through an event now.
    fn request_delivery(&self) {
        if !self.flow().running.get() {
            self.transport.fire_event(Event::new(ReadRequest));
        }
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
    pub fn peer(&self) -> Address {
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
            .field("auto_read", &self.shared.flow.auto_read.get())
            .finish()
    }
}
