//! A runtime pipeline: named stages added, removed and replaced while the
//! connection runs (Netty's `ChannelPipeline`), the dynamic sibling of the
//! typed [`Framed`](super::Framed).
//!
//! Messages between stages are [`Message`]s (`Box<dyn Any>`). Inbound
//! messages go from the first stage to the last, then to the
//! [`PipelineHandler`]; outbound messages written through the
//! [`PipelineContext`] go from the last stage to the first, then to the
//! transport, which takes bytes only. Each stage sees only the direction it
//! was built for, and a stage built from a typed codec passes messages of
//! other types through unchanged (as Netty's `MessageToMessageDecoder`).
//!
//! Removing or replacing a [`Decoder`] stage hands its unconsumed bytes to
//! the stage after it (for `replace`: to the new stage, which is in place
//! first), so a handler can switch protocols mid-stream (Netty §9.5). Done
//! from a handler callback (the usual upgrade), the bytes are decoded and
//! delivered right after the callback returns, in order, before anything
//! read later. Done from anywhere else (a timer, the code owning the
//! [`PipelineProtocol`]), they are decoded and delivered before `remove`
//! or `replace` returns, as Netty does.

use std::any::{type_name, Any};
use std::cell::{RefCell, RefMut};
use std::collections::VecDeque;
use std::fmt;
use std::net::SocketAddr;
use std::rc::{Rc, Weak};

use bytes::{Bytes, BytesMut};
use twill::{Protocol, Reason, Transport};

use super::{DecodeError, Decoder, EncodeError, Encoder, MessageDecoder, MessageEncoder};

mod protocol;

pub use protocol::{PipelineContext, PipelineHandler, PipelineProtocol};

/// A message between stages: anything, downcast by whoever expects a type.
pub type Message = Box<dyn Any>;

/// Boxes `message`, without boxing a [`Message`] twice.
fn boxed<T: Any>(message: T) -> Message {
    unnest(Box::new(message))
}

/// Unwraps a [`Message`] boxed twice (`Box::new(message)` in a closure).
fn unnest(message: Message) -> Message {
    match message.downcast::<Message>() {
        Ok(inner) => *inner,
        Err(message) => message,
    }
}

/// The bytes in `message`, if it is `Bytes`, `BytesMut` or `Vec<u8>`.
fn into_bytes(message: Message) -> Result<Bytes, Message> {
    let message = match message.downcast::<Bytes>() {
        Ok(bytes) => return Ok(*bytes),
        Err(other) => other,
    };
    let message = match message.downcast::<BytesMut>() {
        Ok(bytes) => return Ok(bytes.freeze()),
        Err(other) => other,
    };
    message
        .downcast::<Vec<u8>>()
        .map(|bytes| Bytes::from(*bytes))
}

/// The inbound side of a stage.
trait Inbound {
    fn push(&mut self, message: Message);
    /// One output, if there is one; `eof` once nothing more comes in.
    fn poll(&mut self, eof: bool) -> Result<Option<Message>, DecodeError>;
    /// What it holds, for the next stage (on removal).
    fn leftovers(&mut self) -> Vec<Message>;
    fn clear(&mut self);
    fn codec(&mut self) -> &mut dyn Any;
}

/// A [`Decoder`] with its own input buffer.
struct DecoderStage<D> {
    decoder: D,
    buffer: BytesMut,
    passed: VecDeque<Message>,
    /// Bytes arrived since `decode` last returned `None`.
    fresh: bool,
}

impl<D: Decoder + 'static> Inbound for DecoderStage<D>
where
    D::Item: 'static,
{
    fn push(&mut self, message: Message) {
        match into_bytes(message) {
            Ok(bytes) => {
                self.buffer.extend_from_slice(&bytes);
                self.fresh = true;
            }
            Err(other) => self.passed.push_back(other),
        }
    }

    fn poll(&mut self, eof: bool) -> Result<Option<Message>, DecodeError> {
        while self.fresh || eof {
            let before = self.buffer.len();
            let decoded = if eof {
                self.decoder.decode_eof(&mut self.buffer)
            } else {
                self.decoder.decode(&mut self.buffer)
            };
            match decoded {
                Ok(Some(_)) if self.buffer.len() == before => {
                    self.clear();
                    let why = "the decoder produced a message without consuming input";
                    return Err(DecodeError::Corrupt(why.to_owned()));
                }
                Ok(Some(item)) => return Ok(Some(boxed(item))),
                Ok(None) if !eof && self.buffer.len() < before && !self.buffer.is_empty() => {}
                Ok(None) => {
                    self.fresh = false;
                    break;
                }
                // A recoverable error must skip input, or it would be
                // reported again forever.
                Err(error) if error.is_recoverable() && self.buffer.len() == before && !eof => {
                    self.clear();
                    let why = format!("the decoder reported \"{error}\" without consuming input");
                    return Err(DecodeError::Corrupt(why));
                }
                Err(error) => return Err(error),
            }
        }
        Ok(self.passed.pop_front())
    }

    fn leftovers(&mut self) -> Vec<Message> {
        let mut left = Vec::with_capacity(self.passed.len() + 1);
        if !self.buffer.is_empty() {
            left.push(Box::new(self.buffer.split().freeze()) as Message);
        }
        left.extend(self.passed.drain(..));
        left
    }

    fn clear(&mut self) {
        self.buffer.clear();
        self.passed.clear();
        self.fresh = false;
    }

    fn codec(&mut self) -> &mut dyn Any {
        &mut self.decoder
    }
}

/// A message-to-messages step (a message codec or a closure), inbound or
/// outbound depending on the error type of `run`.
struct Transform<C, F> {
    codec: C,
    run: F,
    pending: VecDeque<Message>,
    ready: VecDeque<Message>,
    out: Vec<Message>,
}

impl<C, F> Transform<C, F> {
    fn new(codec: C, run: F) -> Self {
        let (pending, ready, out) = (VecDeque::new(), VecDeque::new(), Vec::new());
        Transform {
            codec,
            run,
            pending,
            ready,
            out,
        }
    }
}

impl<C: 'static, F> Inbound for Transform<C, F>
where
    F: FnMut(&mut C, Message, &mut Vec<Message>) -> Result<(), DecodeError>,
{
    fn push(&mut self, message: Message) {
        self.pending.push_back(message);
    }

    fn poll(&mut self, _eof: bool) -> Result<Option<Message>, DecodeError> {
        while self.ready.is_empty() {
            let Some(input) = self.pending.pop_front() else {
                return Ok(None);
            };
            let result = (self.run)(&mut self.codec, input, &mut self.out);
            self.ready.extend(self.out.drain(..).map(unnest));
            result?;
        }
        Ok(self.ready.pop_front())
    }

    fn leftovers(&mut self) -> Vec<Message> {
        self.ready.drain(..).chain(self.pending.drain(..)).collect()
    }

    fn clear(&mut self) {
        self.pending.clear();
        self.ready.clear();
    }

    fn codec(&mut self) -> &mut dyn Any {
        &mut self.codec
    }
}

/// The outbound side of a stage.
trait Outbound {
    fn write(&mut self, message: Message, out: &mut Vec<Message>) -> Result<(), EncodeError>;
    fn codec(&mut self) -> &mut dyn Any;
}

impl<C: 'static, F> Outbound for Transform<C, F>
where
    F: FnMut(&mut C, Message, &mut Vec<Message>) -> Result<(), EncodeError>,
{
    fn write(&mut self, message: Message, out: &mut Vec<Message>) -> Result<(), EncodeError> {
        (self.run)(&mut self.codec, message, out)
    }

    fn codec(&mut self) -> &mut dyn Any {
        &mut self.codec
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

enum Kind {
    Inbound(Box<dyn Inbound>),
    Outbound(Box<dyn Outbound>),
}

/// One stage of a [`Pipeline`]: inbound (a decoder or a closure) or
/// outbound (an encoder or a closure), to add under a name.
pub struct Stage {
    kind: Kind,
    codec: &'static str,
}

impl Stage {
    fn new<C>(kind: Kind) -> Stage {
        let codec = type_name::<C>();
        Stage { kind, codec }
    }

    /// Cuts incoming bytes (`Bytes`, `BytesMut` or `Vec<u8>` messages) into
    /// items, keeping unconsumed bytes in its own buffer; other messages
    /// pass through. Removed or replaced, it hands those bytes on.
    pub fn decoder<D: Decoder + 'static>(decoder: D) -> Stage
    where
        D::Item: 'static,
    {
        let (buffer, passed) = (BytesMut::new(), VecDeque::new());
        let stage = DecoderStage {
            decoder,
            buffer,
            passed,
            fresh: false,
        };
        Stage::new::<D>(Kind::Inbound(Box::new(stage)))
    }

    /// Turns each incoming `In` into the decoder's item; messages of other
    /// types pass through unchanged.
    pub fn message_decoder<In: 'static, M: MessageDecoder<In> + 'static>(decoder: M) -> Stage
    where
        M::Item: 'static,
    {
        let run = |m: &mut M, message, out: &mut _| on(message, out, |i| m.decode_message(i));
        Stage::new::<M>(Kind::Inbound(Box::new(Transform::new(decoder, run))))
    }

    /// An inbound closure: it gets every incoming message and pushes what
    /// goes on (none, one or several) to its output.
    pub fn inbound<F>(f: F) -> Stage
    where
        F: FnMut(Message, &mut Vec<Message>) -> Result<(), DecodeError> + 'static,
    {
        let run = |f: &mut F, message, out: &mut _| f(message, out);
        Stage::new::<F>(Kind::Inbound(Box::new(Transform::new(f, run))))
    }

    /// Encodes each outgoing `In` to `Bytes`; other messages pass through.
    pub fn encoder<In: 'static, E: Encoder<In> + 'static>(encoder: E) -> Stage {
        let mut buf = BytesMut::new();
        let run = move |e: &mut E, message, out: &mut _| {
            on(message, out, |i| match e.encode(i, &mut buf) {
                Ok(()) => Ok(buf.split().freeze()),
                Err(error) => {
                    buf.clear(); // no half-encoded message before the next one
                    Err(error)
                }
            })
        };
        Stage::new::<E>(Kind::Outbound(Box::new(Transform::new(encoder, run))))
    }

    /// Turns each outgoing `In` into the encoder's item; other messages
    /// pass through.
    pub fn message_encoder<In: 'static, M: MessageEncoder<In> + 'static>(encoder: M) -> Stage
    where
        M::Item: 'static,
    {
        let run = |m: &mut M, message, out: &mut _| on(message, out, |i| m.encode_message(i));
        Stage::new::<M>(Kind::Outbound(Box::new(Transform::new(encoder, run))))
    }

    /// An outbound closure: it gets every outgoing message and pushes what
    /// goes on towards the transport.
    pub fn outbound<F>(f: F) -> Stage
    where
        F: FnMut(Message, &mut Vec<Message>) -> Result<(), EncodeError> + 'static,
    {
        let run = |f: &mut F, message, out: &mut _| f(message, out);
        Stage::new::<F>(Kind::Outbound(Box::new(Transform::new(f, run))))
    }

    /// Whether the stage handles incoming messages (else outgoing ones).
    pub fn is_inbound(&self) -> bool {
        matches!(self.kind, Kind::Inbound(_))
    }

    fn codec_mut(&mut self) -> &mut dyn Any {
        match &mut self.kind {
            Kind::Inbound(stage) => stage.codec(),
            Kind::Outbound(stage) => stage.codec(),
        }
    }
}

impl fmt::Debug for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let direction = ["outbound", "inbound"][usize::from(self.is_inbound())];
        write!(f, "Stage({direction} {})", self.codec)
    }
}

/// Why a pipeline could not be changed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PipelineError {
    /// A stage already has this name.
    DuplicateName(String),
    /// No stage has this name.
    NoSuchStage(String),
}

impl fmt::Display for PipelineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PipelineError::DuplicateName(name) => write!(f, "duplicate stage name: {name}"),
            PipelineError::NoSuchStage(name) => write!(f, "no stage named {name}"),
        }
    }
}

impl std::error::Error for PipelineError {}

struct Entry {
    name: String,
    stage: Stage,
}

#[derive(Default)]
struct Stages {
    entries: Vec<Entry>,
    /// Messages for the handler (leftovers with no inbound stage after).
    to_handler: VecDeque<Message>,
    /// The protocol's delivery loop, so that leftovers handed over outside
    /// it reach the handler at once (it does nothing when already running).
    driver: Option<Weak<dyn Fn()>>,
}

/// What [`Stages::step`] did.
enum Step {
    Deliver(Message),
    Moved,
    Failed(DecodeError),
    Idle,
}

impl Stages {
    fn index(&self, name: &str) -> Result<usize, PipelineError> {
        self.entries
            .iter()
            .position(|entry| entry.name == name)
            .ok_or_else(|| PipelineError::NoSuchStage(name.to_owned()))
    }

    fn check_free(&self, name: &str) -> Result<(), PipelineError> {
        match self.index(name) {
            Ok(_) => Err(PipelineError::DuplicateName(name.to_owned())),
            Err(_) => Ok(()),
        }
    }

    /// Gives `message` to the first inbound stage at or after `from`;
    /// returns it if there is none (it is for the handler).
    fn forward(&mut self, from: usize, message: Message) -> Option<Message> {
        for entry in self.entries.iter_mut().skip(from) {
            if let Kind::Inbound(stage) = &mut entry.stage.kind {
                stage.push(message);
                return None;
            }
        }
        Some(message)
    }

    fn hand_over(&mut self, from: usize, messages: Vec<Message>) {
        for message in messages {
            if let Some(message) = self.forward(from, message) {
                self.to_handler.push_back(message);
            }
        }
    }

    /// Gives what `old` (taken out at `at`) held to the stages from `at`.
    ///
    /// They are queued, not decoded here: the handler must see each message
    /// before the stages produce the next one (it may change the pipeline
    /// again, a second upgrade), and only the protocol's loop can deliver
    /// to it (see `Pipeline::drive`). Appended to the next stage's input
    /// (behind what it holds, which came earlier), they are decoded by
    /// that loop before any later read, which is appended behind them.
    fn hand_over_leftovers(&mut self, at: usize, mut old: Stage) -> Stage {
        if let Kind::Inbound(stage) = &mut old.kind {
            let left = stage.leftovers();
            self.hand_over(at, left);
        }
        old
    }

    /// One unit of inbound work, nearest the handler first, so that the
    /// handler sees each message (and may change the pipeline) before the
    /// stages before it produce more. Stages before `eof_through` have
    /// seen the end of their input.
    fn step(&mut self, eof_through: usize) -> Step {
        if let Some(message) = self.to_handler.pop_front() {
            return Step::Deliver(message);
        }
        for i in (0..self.entries.len()).rev() {
            let Kind::Inbound(stage) = &mut self.entries[i].stage.kind else {
                continue;
            };
            match stage.poll(i < eof_through) {
                Ok(Some(message)) => {
                    return match self.forward(i + 1, message) {
                        Some(message) => Step::Deliver(message),
                        None => Step::Moved,
                    }
                }
                Ok(None) => {}
                Err(error) => return Step::Failed(error),
            }
        }
        Step::Idle
    }

    fn clear_inbound(&mut self) {
        self.to_handler.clear();
        for entry in &mut self.entries {
            if let Kind::Inbound(stage) = &mut entry.stage.kind {
                stage.clear();
            }
        }
    }

    /// Runs `message` through the outbound stages, last to first.
    fn encode(&mut self, message: Message) -> Result<Vec<Bytes>, EncodeError> {
        let mut batch = vec![message];
        for entry in self.entries.iter_mut().rev() {
            if let Kind::Outbound(stage) = &mut entry.stage.kind {
                let mut next = Vec::with_capacity(batch.len());
                for message in batch {
                    stage.write(message, &mut next)?;
                }
                batch = next.into_iter().map(unnest).collect();
            }
        }
        batch
            .into_iter()
            .map(|message| {
                into_bytes(message).map_err(|_| {
                    let why = "a message that is not bytes reached the head of the pipeline";
                    EncodeError::Other(why.into())
                })
            })
            .collect()
    }
}

/// An ordered list of named [`Stage`]s that can change at run time:
/// Netty's `ChannelPipeline`. Build one per connection (a pipeline holds
/// that connection's buffers) and wrap it with a handler in a
/// [`PipelineProtocol`]; the handler reaches it through
/// [`PipelineContext::pipeline`].
///
/// Names are unique. Methods take `&self` so that the handler can change
/// the pipeline while it runs; stages themselves must not touch it.
///
/// # Examples
///
/// Lines to strings, strings to lines, and a switch to raw bytes at run
/// time: on `raw`, the handler takes the string decoder out.
///
/// ```
/// use bytes::Bytes;
/// use twill::{testing::StringTransport, Protocol};
/// use twill_protocols::codec::pipeline::*;
/// use twill_protocols::codec::{LineBasedFrameDecoder, LineEncoder, StringDecoder};
///
/// struct Shout;
/// impl PipelineHandler for Shout {
///     fn message_received(&mut self, ctx: &PipelineContext, message: Message) {
///         match message.downcast::<String>() {
///             Ok(line) if *line == "raw" => drop(ctx.pipeline().remove("utf8")),
///             Ok(line) => ctx.write(line.to_uppercase()),
///             Err(message) => ctx.write(*message.downcast::<Bytes>().unwrap()),
///         }
///     }
/// }
///
/// let pipeline = Pipeline::new();
/// pipeline
///     .add_last("lines", Stage::decoder(LineBasedFrameDecoder::new(64)))?
///     .add_last("utf8", Stage::message_decoder(StringDecoder))?
///     .add_first("encoder", Stage::encoder::<String, _>(LineEncoder::new()))?;
/// assert_eq!(pipeline.names(), ["encoder", "lines", "utf8"]);
/// assert_eq!(
///     pipeline.add_last("utf8", Stage::message_decoder(StringDecoder)).unwrap_err(),
///     PipelineError::DuplicateName("utf8".into())
/// );
/// assert_eq!(pipeline.get::<LineBasedFrameDecoder>("lines").unwrap().max_length(), 64);
///
/// let mut protocol = PipelineProtocol::new(pipeline, Shout);
/// let transport = StringTransport::new();
/// protocol.connection_made(&transport.transport());
/// protocol.data_received(Bytes::from("hi\nraw\nlow\n"));
/// assert_eq!(transport.value(), b"HI\nlow");
/// assert_eq!(protocol.pipeline().names(), ["encoder", "lines"]);
/// # Ok::<(), PipelineError>(())
/// ```
pub struct Pipeline {
    inner: Rc<RefCell<Stages>>,
}

impl Pipeline {
    /// An empty pipeline: bytes go straight to the handler.
    pub fn new() -> Pipeline {
        Pipeline {
            inner: Rc::new(RefCell::new(Stages::default())),
        }
    }

    fn share(&self) -> Pipeline {
        Pipeline {
            inner: self.inner.clone(),
        }
    }

    fn insert(
        &self,
        at: Result<usize, PipelineError>,
        name: String,
        stage: Stage,
    ) -> Result<&Self, PipelineError> {
        let mut stages = self.inner.borrow_mut();
        stages.check_free(&name)?;
        let at = at?;
        stages.entries.insert(at, Entry { name, stage });
        Ok(self)
    }

    fn position(&self, base: &str, offset: usize) -> Result<usize, PipelineError> {
        self.inner.borrow().index(base).map(|i| i + offset)
    }

    /// Adds `stage` first (nearest the transport); fails with
    /// [`PipelineError::DuplicateName`] if `name` is taken.
    pub fn add_first(&self, name: impl Into<String>, stage: Stage) -> Result<&Self, PipelineError> {
        self.insert(Ok(0), name.into(), stage)
    }

    /// Adds `stage` last (nearest the handler); fails with
    /// [`PipelineError::DuplicateName`] if `name` is taken.
    pub fn add_last(&self, name: impl Into<String>, stage: Stage) -> Result<&Self, PipelineError> {
        let end = self.inner.borrow().entries.len();
        self.insert(Ok(end), name.into(), stage)
    }

    /// Adds `stage` just before the stage named `base`; fails with
    /// [`PipelineError::DuplicateName`] if `name` is taken,
    /// [`PipelineError::NoSuchStage`] if `base` is not there.
    pub fn add_before(
        &self,
        base: &str,
        name: impl Into<String>,
        stage: Stage,
    ) -> Result<&Self, PipelineError> {
        self.insert(self.position(base, 0), name.into(), stage)
    }

    /// Adds `stage` just after the stage named `base`; fails as
    /// [`add_before`](Self::add_before).
    pub fn add_after(
        &self,
        base: &str,
        name: impl Into<String>,
        stage: Stage,
    ) -> Result<&Self, PipelineError> {
        self.insert(self.position(base, 1), name.into(), stage)
    }

    /// Removes the stage named `name` and returns it. What an inbound stage
    /// still held (a decoder's unconsumed bytes, as one `Bytes`, then the
    /// messages it had not passed on) goes to the next inbound stage, or to
    /// the handler, ahead of anything that comes later; see the
    /// [module docs](crate::codec::pipeline) for when it is delivered. Fails with
    /// [`PipelineError::NoSuchStage`].
    ///
    /// The returned stage keeps its codec's state: a decoder that held
    /// bytes may have scanned part of them, so to decode with it again add
    /// a new stage with a fresh decoder rather than this one.
    pub fn remove(&self, name: &str) -> Result<Stage, PipelineError> {
        let old = {
            let mut stages = self.inner.borrow_mut();
            let at = stages.index(name)?;
            let old = stages.entries.remove(at).stage;
            stages.hand_over_leftovers(at, old)
        };
        self.drive();
        Ok(old)
    }

    /// Lets the protocol deliver what a removal handed over, now that the
    /// pipeline is not borrowed.
    fn drive(&self) {
        let driver = self.inner.borrow().driver.as_ref().and_then(Weak::upgrade);
        if let Some(driver) = driver {
            driver();
        }
    }

    fn set_driver(&self, driver: Weak<dyn Fn()>) {
        self.inner.borrow_mut().driver = Some(driver);
    }

    /// Puts `stage`, named `new_name`, in place of the stage named `old`,
    /// and returns the old one. The new stage is in place before the old
    /// one is taken out, so what the old one held (see
    /// [`remove`](Self::remove)) goes to the new one if it is inbound: a
    /// protocol upgrade loses no bytes. Fails with
    /// [`PipelineError::NoSuchStage`] if `old` is not there,
    /// [`PipelineError::DuplicateName`] if another stage is `new_name`.
    pub fn replace(
        &self,
        old: &str,
        new_name: impl Into<String>,
        stage: Stage,
    ) -> Result<Stage, PipelineError> {
        let new_name = new_name.into();
        let mut stages = self.inner.borrow_mut();
        let at = stages.index(old)?;
        if new_name != old {
            stages.check_free(&new_name)?;
        }
        let new = Entry {
            name: new_name,
            stage,
        };
        let old = std::mem::replace(&mut stages.entries[at], new).stage;
        let old = stages.hand_over_leftovers(at, old);
        drop(stages);
        self.drive();
        Ok(old)
    }

    /// The stages' names, first to last.
    pub fn names(&self) -> Vec<String> {
        let stages = self.inner.borrow();
        stages
            .entries
            .iter()
            .map(|entry| entry.name.clone())
            .collect()
    }

    /// The codec (decoder, encoder or closure) of the stage named `name`,
    /// if it is a `T`. Drop the guard before changing the pipeline.
    pub fn get<T: Any>(&self, name: &str) -> Option<RefMut<'_, T>> {
        RefMut::filter_map(self.inner.borrow_mut(), |stages| {
            let entry = stages.entries.iter_mut().find(|entry| entry.name == name)?;
            entry.stage.codec_mut().downcast_mut::<T>()
        })
        .ok()
    }
}

impl Default for Pipeline {
    fn default() -> Self {
        Pipeline::new()
    }
}

impl fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Ok(stages) = self.inner.try_borrow() else {
            return f.write_str("Pipeline(<busy>)");
        };
        let entries = stages
            .entries
            .iter()
            .map(|entry| (&entry.name, &entry.stage));
        f.debug_map().entries(entries).finish()
    }
}
