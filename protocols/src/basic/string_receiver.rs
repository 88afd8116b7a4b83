//! [`StringReceiver`]: what Twisted's `IntNStringReceiver`s and
//! `NetstringReceiver` have in common, and the protocol machinery behind
//! them.

use std::cell::{Ref, RefMut};
use std::error::Error;
use std::fmt;
use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use twill::{Reason, Transport};

use super::context::{connection_methods, producer_methods, Link};
use super::driver::{Connected, Core, Drive, Machine};
use super::int_string::IntNDecoder;
use super::netstring::NetstringDecoder;
use crate::codec::{undecodable, DecodeError, Decoder};

/// Twisted's default longest string for `IntNStringReceiver` and
/// `NetstringReceiver`: 99999 bytes.
pub const DEFAULT_MAX_STRING_LENGTH: usize = 99999;

/// A protocol of length-delimited strings: what you implement for
/// Twisted's `Int32StringReceiver`, `Int16StringReceiver`,
/// `Int8StringReceiver` ([`IntNStringReceiver`](super::IntNStringReceiver))
/// and `NetstringReceiver` ([`NetstringReceiver`](super::NetstringReceiver)),
/// which wrap it into a twill [`Protocol`](twill::Protocol).
///
/// [`MAX_LENGTH`](Self::MAX_LENGTH) (Twisted's, 99999 bytes) bounds a
/// received string; the wrappers' `with_max_length` and
/// [`StringContext::set_max_length`] change it per connection.
///
/// # Examples
///
/// ```
/// use bytes::Bytes;
/// use twill::testing::StringTransport;
/// use twill::Protocol;
/// use twill_protocols::basic::{Int32StringReceiver, StringContext, StringReceiver};
///
/// struct Reverse;
///
/// impl StringReceiver for Reverse {
///     fn string_received(&mut self, ctx: &StringContext, string: Bytes) {
///         let reversed: Vec<u8> = string.iter().rev().copied().collect();
///         ctx.send_string(reversed).unwrap();
///     }
/// }
///
/// let transport = StringTransport::new();
/// let mut protocol = Int32StringReceiver::new(Reverse);
/// protocol.connection_made(&transport.transport());
/// protocol.data_received(Bytes::from_static(b"\x00\x00\x00\x03abc\x00\x00"));
/// assert_eq!(transport.value(), b"\x00\x00\x00\x03cba");
/// ```
pub trait StringReceiver: 'static {
    /// The longest string accepted: Twisted's `MAX_LENGTH`, 99999.
    const MAX_LENGTH: usize = DEFAULT_MAX_STRING_LENGTH;

    /// The connection is up.
    fn connection_made(&mut self, ctx: &StringContext) {
        let _ = ctx;
    }

    /// A whole string arrived, framing removed.
    fn string_received(&mut self, ctx: &StringContext, string: Bytes);

    /// An `IntN` length prefix announced `length` bytes, more than the
    /// maximum: Twisted's `lengthLimitExceeded`. The default closes the
    /// connection. If it does not, the announced bytes are skipped and
    /// the strings after them delivered (Twisted would keep them
    /// buffered and stop). Netstrings never call this: a netstring too long
    /// is malformed input, which closes the connection.
    fn length_limit_exceeded(&mut self, ctx: &StringContext, length: u64) {
        let _ = length;
        ctx.lose_connection();
    }

    /// The peer closed its writing side; an unfinished string is not
    /// delivered. Return `true` to keep the half-open connection.
    fn eof_received(&mut self, ctx: &StringContext) -> bool {
        let _ = ctx;
        false
    }

    /// The connection is gone; called once, last.
    fn connection_lost(&mut self, reason: &Reason) {
        let _ = reason;
    }

    /// The write buffer went over its high watermark.
    fn pause_writing(&mut self, ctx: &StringContext) {
        let _ = ctx;
    }

    /// The write buffer drained to its low watermark.
    fn resume_writing(&mut self, ctx: &StringContext) {
        let _ = ctx;
    }
}

/// A string too long for its length prefix was given to
/// [`StringContext::send_string`]: Twisted's `StringTooLongError`. Nothing
/// was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StringTooLongError {
    /// The string's length.
    pub length: usize,
    /// The longest string the prefix can announce (255 for `Int8`, 65535
    /// for `Int16`, 4294967295 for `Int32`).
    pub max: u64,
}

impl fmt::Display for StringTooLongError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Try to send {} bytes whereas maximum is {}",
            self.length, self.max
        )
    }
}

impl Error for StringTooLongError {}

/// How strings are framed on a connection.
#[derive(Debug)]
pub(crate) enum Framing {
    IntN(IntNDecoder),
    Netstring(NetstringDecoder),
}

/// The parser state of a string receiver, shared with its contexts.
pub(crate) struct StringState {
    buffer: BytesMut,
    framing: Framing,
    /// After malformed input nothing more is parsed.
    broken: bool,
}

pub(crate) enum StringEvent {
    String(Bytes),
    LengthExceeded(u64),
    Malformed(DecodeError),
}

impl Machine for StringState {
    type Event = StringEvent;

    fn next_event(&mut self) -> Option<StringEvent> {
        loop {
            if self.broken || self.buffer.is_empty() {
                return None;
            }
            let before = self.buffer.len();
            let decoded = match &mut self.framing {
                Framing::IntN(decoder) => decoder.decode(&mut self.buffer),
                Framing::Netstring(decoder) => decoder.decode(&mut self.buffer),
            };
            return match decoded {
                Ok(Some(string)) => Some(StringEvent::String(string)),
                // Skipped bytes (the rest of a too-long string): look again.
                Ok(None) if self.buffer.len() < before => continue,
                Ok(None) => None,
                Err(DecodeError::TooLongFrame { length, .. }) => {
                    Some(StringEvent::LengthExceeded(length))
                }
                Err(error) => {
                    self.broken = true;
                    self.buffer.clear();
                    Some(StringEvent::Malformed(error))
                }
            };
        }
    }
}

fn dispatch<R: StringReceiver>(receiver: &mut R, ctx: &StringContext, event: StringEvent) {
    match event {
        StringEvent::String(string) => receiver.string_received(ctx, string),
        StringEvent::LengthExceeded(length) => receiver.length_limit_exceeded(ctx, length),
        StringEvent::Malformed(error) => undecodable::close(ctx.transport(), error),
    }
}

/// A [`StringReceiver`]'s handle on its connection: sends strings with the
/// connection's framing, pauses. Passed to every callback; clones act on
/// the same connection.
#[derive(Clone)]
pub struct StringContext {
    link: Link<StringState>,
}

impl Connected<StringState> for StringContext {
    fn new(link: Link<StringState>) -> Self {
        StringContext { link }
    }

    fn link(&self) -> &Link<StringState> {
        &self.link
    }
}

impl StringContext {
    /// Frames `string` (length prefix, or netstring) and writes it in one
    /// write: Twisted's `sendString`.
    ///
    /// # Errors
    ///
    /// [`StringTooLongError`] if the string is too long for an `IntN`
    /// prefix (`len >= 2^(8 * N)`); nothing is written then. Netstrings
    /// have no limit.
    pub fn send_string(&self, string: impl AsRef<[u8]>) -> Result<(), StringTooLongError> {
        let string = string.as_ref();
        let mut out = BytesMut::new();
        match &self.link.state().borrow().framing {
            Framing::IntN(decoder) => {
                super::int_string::frame(decoder.prefix_length(), string, &mut out)?
            }
            Framing::Netstring(_) => super::netstring::frame(string, &mut out),
        }
        self.transport().write(out.freeze());
        Ok(())
    }

    producer_methods!();

    /// The longest string accepted.
    pub fn max_length(&self) -> usize {
        match &self.link.state().borrow().framing {
            Framing::IntN(decoder) => decoder.max_length(),
            Framing::Netstring(decoder) => decoder.max_length(),
        }
    }

    /// Changes the longest string accepted, from the next string on.
    pub fn set_max_length(&self, max_length: usize) {
        self.link.state().borrow_mut().set_max_length(max_length);
    }

    /// The connection's transport.
    pub fn transport(&self) -> &Transport {
        self.link.transport()
    }

    connection_methods!();
}

impl fmt::Debug for StringContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StringContext")
            .field("transport", self.transport())
            .field("framing", &self.link.state().borrow().framing)
            .field("paused", &self.is_paused())
            .finish()
    }
}

impl StringState {
    fn set_max_length(&mut self, max_length: usize) {
        match &mut self.framing {
            Framing::IntN(decoder) => decoder.set_max_length(max_length),
            Framing::Netstring(decoder) => decoder.set_max_length(max_length),
        }
    }
}

/// The protocol behind [`IntNStringReceiver`](super::IntNStringReceiver)
/// and [`NetstringReceiver`](super::NetstringReceiver).
pub(crate) struct StringProtocol<R: StringReceiver> {
    core: Rc<Core<StringState, R, StringContext>>,
}

impl<R: StringReceiver> StringProtocol<R> {
    pub(crate) fn new(framing: Framing, receiver: R) -> Self {
        let state = StringState {
            buffer: BytesMut::new(),
            framing,
            broken: false,
        };
        StringProtocol {
            core: Core::new(state, receiver, dispatch::<R>),
        }
    }

    pub(crate) fn set_max_length(&self, max_length: usize) {
        self.core.state.borrow_mut().set_max_length(max_length);
    }

    pub(crate) fn receiver(&self) -> Ref<'_, R> {
        self.core.receiver.borrow()
    }

    pub(crate) fn receiver_mut(&self) -> RefMut<'_, R> {
        self.core.receiver.borrow_mut()
    }

    pub(crate) fn context(&self) -> Option<StringContext> {
        self.core.context().cloned()
    }

    pub(crate) fn buffered(&self) -> usize {
        self.core.state.borrow().buffer.len()
    }

    pub(crate) fn is_broken(&self) -> bool {
        self.core.state.borrow().broken
    }

    pub(crate) fn connection_made(&mut self, transport: &Transport) {
        self.core
            .connect(transport, |receiver, ctx| receiver.connection_made(ctx));
    }

    pub(crate) fn data_received(&mut self, data: Bytes) {
        {
            let mut state = self.core.state.borrow_mut();
            if state.broken {
                return;
            }
            state.buffer.extend_from_slice(&data);
        }
        self.core.drive();
    }

    pub(crate) fn eof_received(&mut self) -> bool {
        self.core
            .call(|receiver, ctx| receiver.eof_received(ctx))
            .unwrap_or(false)
    }

    pub(crate) fn connection_lost(&mut self, reason: &Reason) {
        self.core
            .call_last(|receiver| receiver.connection_lost(reason));
    }

    pub(crate) fn pause_writing(&mut self) {
        self.core.call(|receiver, ctx| receiver.pause_writing(ctx));
    }

    pub(crate) fn resume_writing(&mut self) {
        self.core.call(|receiver, ctx| receiver.resume_writing(ctx));
    }
}

impl<R: StringReceiver> fmt::Debug for StringProtocol<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.core.state.borrow();
        f.debug_struct("StringProtocol")
            .field("framing", &state.framing)
            .field("buffered", &state.buffer.len())
            .field("paused", &self.core.paused.get())
            .field("broken", &state.broken)
            .finish()
    }
}

/// Adds to a wrapper of a [`StringProtocol`] (held in its `inner` field)
/// the methods the string receivers share, and a [`Protocol`](twill::Protocol)
/// impl that passes every event on.
macro_rules! string_receiver_wrapper {
    ($wrapper:ident<R $(, const $n:ident: usize)?>) => {
        impl<R: StringReceiver $(, const $n: usize)?> $wrapper<R $(, $n)?> {
            /// Uses `max_length` instead of the type's.
            pub fn with_max_length(self, max_length: usize) -> Self {
                self.inner.set_max_length(max_length);
                self
            }

            /// The receiver.
            ///
            /// # Panics
            ///
            /// If called from inside one of the receiver's own callbacks.
            pub fn receiver(&self) -> std::cell::Ref<'_, R> {
                self.inner.receiver()
            }

            /// The receiver, mutably.
            ///
            /// # Panics
            ///
            /// If called from inside one of the receiver's own callbacks.
            pub fn receiver_mut(&self) -> std::cell::RefMut<'_, R> {
                self.inner.receiver_mut()
            }

            /// The receiver's context, once connected: to send, pause or resume
            /// from outside the callbacks.
            pub fn context(&self) -> Option<StringContext> {
                self.inner.context()
            }

            /// How many bytes are buffered, not yet delivered.
            pub fn buffered(&self) -> usize {
                self.inner.buffered()
            }
        }

        impl<R: StringReceiver $(, const $n: usize)?> twill::Protocol for $wrapper<R $(, $n)?> {
            fn connection_made(&mut self, transport: &twill::Transport) {
                self.inner.connection_made(transport);
            }

            fn data_received(&mut self, data: bytes::Bytes) {
                self.inner.data_received(data);
            }

            fn eof_received(&mut self) -> bool {
                self.inner.eof_received()
            }

            fn connection_lost(&mut self, reason: &twill::Reason) {
                self.inner.connection_lost(reason);
            }

            fn pause_writing(&mut self) {
                self.inner.pause_writing();
            }

            fn resume_writing(&mut self) {
                self.inner.resume_writing();
            }
        }
    };
}

pub(crate) use string_receiver_wrapper;
