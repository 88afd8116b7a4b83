//! A runtime pipeline: named stages added, removed and replaced while the
//! connection runs (Netty's `ChannelPipeline`), the dynamic sibling of the
//! typed [`Framed`](super::Framed).
//!
//! Messages between stages are [`Message`]s (`Box<dyn Any>`). Inbound
//! events (messages, the end of each read, user [`Event`](twill::Event)s, decode errors,
//! the peer's EOF) go from the first stage to the last, then to the
//! [`PipelineHandler`]; outbound messages written through the
//! [`PipelineContext`] go from the last stage to the first, then to the
//! transport, which takes bytes only. A stage built from a codec sees only
//! the direction it was built for and passes messages of other types
//! through unchanged (as Netty's `MessageToMessageDecoder`); a
//! [`StageHandler`] of your own sees everything, both ways, as Netty's
//! `ChannelDuplexHandler`.
//!
//! A stage that fails to decode passes a
//! [`DecodeError`](crate::codec::DecodeError) on, and it
//! travels towards the handler through every later stage's
//! [`exception_caught`](StageHandler::exception_caught), where any of them
//! may handle it; one that is not
//! [recoverable](crate::codec::DecodeError::is_recoverable) closes the connection once
//! delivered.
//!
//! Removing or replacing a [`Decoder`](super::Decoder) stage hands its
//! unconsumed bytes to the stage after it (for `replace`: to the new
//! stage, which is in place first), so a handler, or the stage itself, can
//! switch protocols mid-stream (Netty's leftover hand-over). Done from a
//! handler or stage callback (the usual upgrade), the bytes are decoded and
//! delivered right after the callback returns, in order, before anything
//! read later. Done from anywhere else (a timer, the code owning the
//! [`PipelineProtocol`]), they are decoded and delivered before `remove`
//! or `replace` returns, as Netty does.
//!
//! # Pulling input
//!
//! With automatic reading [off](PipelineContext::set_auto_read), the
//! connection reads only when asked ([`PipelineContext::read`], travelling
//! through the stages' [`read`](StageHandler::read) to the transport): one
//! read per request, as Netty's `AUTO_READ=false`. A
//! [`FlowControlHandler`](crate::handler::FlowControlHandler) stage
//! goes further: it holds the messages one read produced and releases
//! exactly one per request.

use std::any::{Any, TypeId};
use std::cell::{RefCell, RefMut};
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::rc::{Rc, Weak};

use bytes::{Bytes, BytesMut};

mod context;
mod protocol;
mod run;
mod stage;

pub use context::{StageContext, StageHandler};
pub use protocol::{PipelineContext, PipelineHandler, PipelineProtocol};
pub use stage::Stage;

use context::{Inbound, Link};
use run::Entry;

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

/// Why a pipeline could not be changed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PipelineError {
    /// A stage already has this name.
    DuplicateName(String),
    /// No stage has this name (or, for
    /// [`remove_type`](Pipeline::remove_type), this type).
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

#[derive(Default)]
struct Stages {
    entries: Vec<Entry>,
    /// Signals for the handler.
    to_handler: VecDeque<Inbound>,
    next_id: u64,
    /// The connection, once there is one.
    link: Option<Rc<Link>>,
    /// The protocol's delivery loop, so that what a change made outside
    /// it hands over reaches the handler at once (it does nothing when
    /// already running).
    driver: Option<Weak<dyn Fn()>>,
    /// How many stages were named after each type (`Type#n`).
    generated: HashMap<&'static str, usize>,
    /// A stage consumed an unrecoverable error: close now.
    fatal: bool,
}

impl Stages {
    fn index(&self, name: &str) -> Result<usize, PipelineError> {
        self.entries
            .iter()
            .position(|entry| !entry.removing && entry.name == name)
            .ok_or_else(|| PipelineError::NoSuchStage(name.to_owned()))
    }

    fn check_free(&self, name: &str) -> Result<(), PipelineError> {
        match self.index(name) {
            Ok(_) => Err(PipelineError::DuplicateName(name.to_owned())),
            Err(_) => Ok(()),
        }
    }

    fn generate_name(&mut self, stage: &Stage) -> String {
        let base = stage.short_name();
        loop {
            let n = self.generated.entry(base).or_default();
            let name = format!("{base}#{n}");
            *n += 1;
            if self.check_free(&name).is_ok() {
                return name;
            }
        }
    }

    /// Queues inbound signals for the stage at `at`, or the handler.
    fn push_inbound(&mut self, at: usize, signals: Vec<Inbound>) {
        let inbox = match self.entries.get_mut(at) {
            Some(entry) => &mut entry.inbox,
            None => &mut self.to_handler,
        };
        inbox.extend(signals);
    }

    fn clear_inbound(&mut self) {
        self.to_handler.clear();
        for entry in &mut self.entries {
            entry.inbox.clear();
        }
    }

    fn live(&self) -> impl DoubleEndedIterator<Item = &Entry> {
        self.entries.iter().filter(|entry| !entry.removing)
    }
}

/// An ordered list of named [`Stage`]s that can change at run time:
/// Netty's `ChannelPipeline`. Build one per connection (a pipeline holds
/// that connection's buffers) and wrap it with a handler in a
/// [`PipelineProtocol`]; the handler reaches it through
/// [`PipelineContext::pipeline`], a stage through
/// [`StageContext::pipeline`].
///
/// Names are unique; [`add`](Self::add) makes one up (`TypeName#0`).
/// Methods take `&self` so that handlers and stages can change the
/// pipeline while it runs, a stage even removing or replacing itself.
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
///             Ok(line) if *line == "raw" => ctx.pipeline().remove("utf8").unwrap(),
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

    fn insert_named(
        &self,
        at: impl FnOnce(&[Entry]) -> Result<usize, PipelineError>,
        name: String,
        stage: Stage,
    ) -> Result<&Self, PipelineError> {
        self.inner.borrow().check_free(&name)?;
        self.insert_entry(at, Some(name), stage)?;
        self.drive();
        Ok(self)
    }

    /// Adds `stage` first (nearest the transport); fails with
    /// [`PipelineError::DuplicateName`] if `name` is taken. On a live
    /// connection the stage's `handler_added` runs before this returns.
    pub fn add_first(&self, name: impl Into<String>, stage: Stage) -> Result<&Self, PipelineError> {
        self.insert_named(|_| Ok(0), name.into(), stage)
    }

    /// Adds `stage` last (nearest the handler); fails with
    /// [`PipelineError::DuplicateName`] if `name` is taken.
    pub fn add_last(&self, name: impl Into<String>, stage: Stage) -> Result<&Self, PipelineError> {
        self.insert_named(|entries| Ok(entries.len()), name.into(), stage)
    }

    /// Adds `stage` last under a name made from its type, `TypeName#0`,
    /// `TypeName#1`, ... (Netty's generated names), and returns the name.
    ///
    /// ```
    /// use twill_protocols::codec::pipeline::{Pipeline, Stage};
    /// use twill_protocols::codec::{LineBasedFrameDecoder, StringDecoder};
    ///
    /// let pipeline = Pipeline::new();
    /// assert_eq!(pipeline.add(Stage::decoder(LineBasedFrameDecoder::new(80))), "LineBasedFrameDecoder#0");
    /// assert_eq!(pipeline.add(Stage::message_decoder(StringDecoder)), "StringDecoder#0");
    /// assert_eq!(pipeline.add(Stage::message_decoder(StringDecoder)), "StringDecoder#1");
    /// ```
    pub fn add(&self, stage: Stage) -> String {
        let name = self
            .insert_entry(|entries| Ok(entries.len()), None, stage)
            .expect("a generated name is free and the end is a place");
        self.drive();
        name
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
        self.insert_named(|entries| position(entries, base), name.into(), stage)
    }

    /// Adds `stage` just after the stage named `base`; fails as
    /// [`add_before`](Self::add_before).
    pub fn add_after(
        &self,
        base: &str,
        name: impl Into<String>,
        stage: Stage,
    ) -> Result<&Self, PipelineError> {
        self.insert_named(
            |entries| position(entries, base).map(|i| i + 1),
            name.into(),
            stage,
        )
    }

    /// Removes the stage named `name`. What it still held (a decoder's
    /// unconsumed bytes, as one `Bytes`; what a [`StageHandler`] passes on
    /// from its `handler_removed`; the signals that waited for it) goes to
    /// the next stage, or to the handler, ahead of anything that comes
    /// later; see the [module docs](self) for when it is delivered. A stage
    /// may remove itself from its own callback: the removal completes when
    /// the callback returns. Fails with [`PipelineError::NoSuchStage`].
    pub fn remove(&self, name: &str) -> Result<(), PipelineError> {
        let at = self.inner.borrow().index(name)?;
        self.remove_at(at);
        Ok(())
    }

    /// Removes the first stage (nearest the transport) and returns its
    /// name; `None` if the pipeline is empty.
    pub fn remove_first(&self) -> Option<String> {
        let name = self.first()?;
        self.remove(&name).ok()?;
        Some(name)
    }

    /// Removes the last stage (nearest the handler) and returns its name;
    /// `None` if the pipeline is empty.
    pub fn remove_last(&self) -> Option<String> {
        let name = self.last()?;
        self.remove(&name).ok()?;
        Some(name)
    }

    /// Removes the first stage whose codec (or [`StageHandler`]) is a `T`,
    /// and returns its name (Netty's `remove(Class)`); fails with
    /// [`PipelineError::NoSuchStage`] naming the type.
    pub fn remove_type<T: Any>(&self) -> Result<String, PipelineError> {
        let found = self
            .inner
            .borrow()
            .live()
            .find(|entry| entry.types.contains(&TypeId::of::<T>()))
            .map(|entry| entry.name.clone());
        let name = found
            .ok_or_else(|| PipelineError::NoSuchStage(std::any::type_name::<T>().to_owned()))?;
        self.remove(&name)?;
        Ok(name)
    }

    fn remove_at(&self, at: usize) {
        let mut stages = self.inner.borrow_mut();
        if stages.entries[at].stage.is_none() {
            // Running: it finishes, then its removal completes.
            stages.entries[at].removing = true;
            return;
        }
        let entry = stages.entries.remove(at);
        drop(stages);
        self.finish_removal(at, entry);
        self.drive();
    }

    /// Lets the protocol deliver what a change handed over, now that the
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

    /// Puts `stage`, named `new_name`, in place of the stage named `old`.
    /// The new stage is in place (its `handler_added` run) before the old
    /// one is taken out, so what the old one held (see
    /// [`remove`](Self::remove)) goes to the new one: a protocol upgrade
    /// loses no bytes. So do the writes the old one makes from its
    /// `handler_removed`, on their way to the transport. A stage may
    /// replace itself. Fails with
    /// [`PipelineError::NoSuchStage`] if `old` is not there,
    /// [`PipelineError::DuplicateName`] if another stage is `new_name`.
    pub fn replace(
        &self,
        old: &str,
        new_name: impl Into<String>,
        stage: Stage,
    ) -> Result<(), PipelineError> {
        let new_name = new_name.into();
        {
            let stages = self.inner.borrow();
            stages.index(old)?;
            if new_name != old {
                stages.check_free(&new_name)?;
            }
        }
        // In place before the old one goes, so that it takes what the old
        // one hands over. `index` finds the old one first while both have
        // the same name.
        self.insert_entry(
            |entries| position(entries, old).map(|i| i + 1),
            Some(new_name),
            stage,
        )?;
        let at = self.inner.borrow().index(old)?;
        self.inner.borrow_mut().entries[at].replaced = true;
        self.remove_at(at);
        Ok(())
    }

    /// The stages' names, first to last.
    pub fn names(&self) -> Vec<String> {
        let stages = self.inner.borrow();
        stages.live().map(|entry| entry.name.clone()).collect()
    }

    /// The first stage's name (nearest the transport).
    pub fn first(&self) -> Option<String> {
        self.inner.borrow().live().next().map(|e| e.name.clone())
    }

    /// The last stage's name (nearest the handler).
    pub fn last(&self) -> Option<String> {
        self.inner
            .borrow()
            .live()
            .next_back()
            .map(|e| e.name.clone())
    }

    /// The codec (decoder, encoder, closure or [`StageHandler`]) of the
    /// stage named `name`, if it is a `T` (and the stage is not running).
    /// Drop the guard before changing the pipeline.
    pub fn get<T: Any>(&self, name: &str) -> Option<RefMut<'_, T>> {
        RefMut::filter_map(self.inner.borrow_mut(), |stages| {
            let entry = stages
                .entries
                .iter_mut()
                .find(|entry| !entry.removing && entry.name == name)?;
            let codec = entry.stage.as_mut()?.codec(TypeId::of::<T>())?;
            codec.downcast_mut::<T>()
        })
        .ok()
    }
}

/// Prints as its text, unquoted.
struct Raw(String);

impl fmt::Debug for Raw {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where the stage named `base` is.
fn position(entries: &[Entry], base: &str) -> Result<usize, PipelineError> {
    entries
        .iter()
        .position(|entry| !entry.removing && entry.name == base)
        .ok_or_else(|| PipelineError::NoSuchStage(base.to_owned()))
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
            .live()
            .map(|entry| (&entry.name, Raw(entry.directions.describe(entry.type_name))));
        f.debug_map().entries(entries).finish()
    }
}
