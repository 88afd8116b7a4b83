//! [`LineReceiver`]: Twisted's `LineReceiver`, lines and raw data.

use std::cell::{Ref, RefMut};
use std::fmt;
use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use twill::{Protocol, Reason, Transport};

use super::context::{connection_methods, producer_methods, Link};
use super::driver::{Connected, Core, Drive, Machine};
use super::line_decoder::{LineDecoder, LineStep, DEFAULT_DELIMITER, DEFAULT_MAX_LINE_LENGTH};

/// A line-oriented protocol that can switch to raw data and back:
/// Twisted's `LineReceiver`. Implement it and wrap it in a
/// [`LineReceiverProtocol`] to get a twill [`Protocol`].
///
/// In line mode each line (delimiter stripped) goes to
/// [`line_received`](Self::line_received); in raw mode every byte received
/// goes to [`raw_data_received`](Self::raw_data_received), in the pieces it
/// arrived in. The [`LineContext`] each method gets switches modes, sends
/// lines and pauses; a switch asked for inside a callback applies to the
/// rest of the buffered input at once: after
/// [`set_raw_mode`](LineContext::set_raw_mode) in `line_received`, what
/// followed that line in the same packet is the next `raw_data_received`.
///
/// The defaults are Twisted's: delimiter [`DELIMITER`](Self::DELIMITER)
/// `b"\r\n"` and [`MAX_LENGTH`](Self::MAX_LENGTH) 16384, overridable per
/// type here, per connection with [`LineReceiverProtocol::with_delimiter`]
/// and [`with_max_length`](LineReceiverProtocol::with_max_length), and at
/// any time through the context.
///
/// Twisted's "return a true value to stop" is
/// [`ctx.fail(error)`](LineContext::fail) (or `lose_connection`): once the
/// connection is closing nothing more is delivered.
///
/// # Examples
///
/// A receiver that reads a header line, then a body of the announced size
/// in raw mode, then goes back to lines:
///
/// ```
/// use bytes::Bytes;
/// use twill::testing::StringTransport;
/// use twill::Protocol;
/// use twill_protocols::basic::{LineContext, LineReceiver, LineReceiverProtocol};
///
/// #[derive(Default)]
/// struct Upload {
///     left: usize,
///     body: Vec<u8>,
/// }
///
/// impl LineReceiver for Upload {
///     fn line_received(&mut self, ctx: &LineContext, line: Bytes) {
///         match line.strip_prefix(b"SIZE ") {
///             Some(n) => {
///                 self.left = std::str::from_utf8(n).unwrap().parse().unwrap();
///                 ctx.set_raw_mode();
///             }
///             None => ctx.send_line([&b"echo: "[..], &line[..]].concat()),
///         }
///     }
///
///     fn raw_data_received(&mut self, ctx: &LineContext, data: Bytes) {
///         let take = self.left.min(data.len());
///         self.body.extend_from_slice(&data[..take]);
///         self.left -= take;
///         if self.left == 0 {
///             ctx.send_line(format!("got {} bytes", self.body.len()));
///             ctx.set_line_mode(&data[take..]); // the rest is lines again
///         }
///     }
/// }
///
/// let transport = StringTransport::new();
/// let mut protocol = LineReceiverProtocol::new(Upload::default());
/// protocol.connection_made(&transport.transport());
/// protocol.data_received(Bytes::from_static(b"SIZE 7\r\nab\r\ncdehi\r\n"));
/// assert_eq!(protocol.receiver().body, b"ab\r\ncde");
/// assert_eq!(transport.value(), b"got 7 bytes\r\necho: hi\r\n");
/// ```
pub trait LineReceiver: 'static {
    /// The line delimiter: Twisted's `delimiter`, `b"\r\n"`.
    const DELIMITER: &'static [u8] = DEFAULT_DELIMITER;

    /// The longest line, without its delimiter: Twisted's `MAX_LENGTH`,
    /// 16384.
    const MAX_LENGTH: usize = DEFAULT_MAX_LINE_LENGTH;

    /// The connection is up.
    fn connection_made(&mut self, ctx: &LineContext) {
        let _ = ctx;
    }

    /// A line arrived, without its delimiter.
    fn line_received(&mut self, ctx: &LineContext, line: Bytes);

    /// Bytes arrived in raw mode. The default (for receivers that never
    /// call [`set_raw_mode`](LineContext::set_raw_mode)) closes the
    /// connection with an error, as Twisted raises `NotImplementedError`.
    fn raw_data_received(&mut self, ctx: &LineContext, data: Bytes) {
        let _ = data;
        log::error!(
            "closing the connection with {}: raw mode without raw_data_received",
            ctx.peer()
        );
        ctx.fail("raw mode was set but raw_data_received is not implemented");
    }

    /// A line was too long (see [`LineReceiverProtocol`] for the rules).
    /// `data` is everything that was buffered, starting with the offending
    /// line: it may hold further lines, or only the start of the long
    /// line. It is out of the buffer; hand some back with
    /// [`set_line_mode(rest)`](LineContext::set_line_mode) to go on. The
    /// default closes the connection.
    fn line_length_exceeded(&mut self, ctx: &LineContext, data: Bytes) {
        let _ = data;
        ctx.lose_connection();
    }

    /// The peer closed its writing side. An unfinished line is not
    /// delivered (as in Twisted). Return `true` to keep the half-open
    /// connection (see [`Protocol::eof_received`]).
    fn eof_received(&mut self, ctx: &LineContext) -> bool {
        let _ = ctx;
        false
    }

    /// The connection is gone; called once, last.
    fn connection_lost(&mut self, reason: &Reason) {
        let _ = reason;
    }

    /// The write buffer went over its high watermark.
    fn pause_writing(&mut self, ctx: &LineContext) {
        let _ = ctx;
    }

    /// The write buffer drained to its low watermark.
    fn resume_writing(&mut self, ctx: &LineContext) {
        let _ = ctx;
    }
}

/// The parser state of a [`LineReceiverProtocol`], shared with its
/// contexts.
pub(crate) struct LineState {
    buffer: BytesMut,
    decoder: LineDecoder,
    line_mode: bool,
}

pub(crate) enum LineEvent {
    Line(Bytes),
    Raw(Bytes),
    TooLong(Bytes),
}

impl Machine for LineState {
    type Event = LineEvent;

    fn next_event(&mut self) -> Option<LineEvent> {
        if self.buffer.is_empty() {
            return None;
        }
        if !self.line_mode {
            self.decoder.reset();
            return Some(LineEvent::Raw(self.buffer.split().freeze()));
        }
        self.decoder
            .next_line(&mut self.buffer)
            .map(|step| match step {
                LineStep::Line(line) => LineEvent::Line(line),
                LineStep::TooLong(data) => LineEvent::TooLong(data),
            })
    }
}

fn dispatch<R: LineReceiver>(receiver: &mut R, ctx: &LineContext, event: LineEvent) {
    match event {
        LineEvent::Line(line) => receiver.line_received(ctx, line),
        LineEvent::Raw(data) => receiver.raw_data_received(ctx, data),
        LineEvent::TooLong(data) => receiver.line_length_exceeded(ctx, data),
    }
}

/// A [`LineReceiver`]'s handle on its connection and its parser: sends
/// lines, switches between line and raw mode, pauses. Passed to every
/// callback; clones (kept to use later, from timers or other connections)
/// act on the same connection.
#[derive(Clone)]
pub struct LineContext {
    link: Link<LineState>,
}

impl Connected<LineState> for LineContext {
    fn new(link: Link<LineState>) -> Self {
        LineContext { link }
    }

    fn link(&self) -> &Link<LineState> {
        &self.link
    }
}

impl LineContext {
    /// Writes `line` followed by the delimiter, in one write: Twisted's
    /// `sendLine`.
    pub fn send_line(&self, line: impl AsRef<[u8]>) {
        let line = line.as_ref();
        let out = {
            let state = self.link.state().borrow();
            let delimiter = state.decoder.delimiter();
            let mut out = BytesMut::with_capacity(line.len() + delimiter.len());
            out.extend_from_slice(line);
            out.extend_from_slice(delimiter);
            out
        };
        self.transport().write(out.freeze());
    }

    /// From now on bytes, including what is still buffered, go to
    /// [`raw_data_received`](LineReceiver::raw_data_received): Twisted's
    /// `setRawMode`.
    pub fn set_raw_mode(&self) {
        self.link.state().borrow_mut().line_mode = false;
    }

    /// Back to lines: Twisted's `setLineMode(extra)`. `extra` (bytes a
    /// `raw_data_received` did not consume; pass `b""` for none) is parsed
    /// as if just received: inside a callback it is appended to the
    /// buffer (copied, as in Twisted) and read once the callback returns;
    /// outside one it is parsed now.
    pub fn set_line_mode(&self, extra: impl AsRef<[u8]>) {
        let extra = extra.as_ref();
        {
            let mut state = self.link.state().borrow_mut();
            state.line_mode = true;
            state.buffer.extend_from_slice(extra);
        }
        if !extra.is_empty() {
            self.link.drive();
        }
    }

    /// Whether the receiver is in line mode (the initial mode).
    pub fn is_line_mode(&self) -> bool {
        self.link.state().borrow().line_mode
    }

    /// Empties the buffer and returns what was in it: Twisted's
    /// `clearLineBuffer`. From `line_received`, this drops the rest of
    /// the current packet.
    pub fn clear_line_buffer(&self) -> Bytes {
        let mut state = self.link.state().borrow_mut();
        state.decoder.reset();
        state.buffer.split().freeze()
    }

    producer_methods!();

    /// The line delimiter.
    pub fn delimiter(&self) -> Bytes {
        self.link.state().borrow().decoder.delimiter().clone()
    }

    /// Changes the delimiter, for the rest of the input and for
    /// [`send_line`](Self::send_line).
    ///
    /// # Panics
    ///
    /// If `delimiter` is empty.
    pub fn set_delimiter(&self, delimiter: impl Into<Bytes>) {
        self.link
            .state()
            .borrow_mut()
            .decoder
            .set_delimiter(delimiter.into());
    }

    /// The longest line accepted, without its delimiter.
    pub fn max_length(&self) -> usize {
        self.link.state().borrow().decoder.max_length()
    }

    /// Changes the longest line accepted.
    pub fn set_max_length(&self, max_length: usize) {
        self.link
            .state()
            .borrow_mut()
            .decoder
            .set_max_length(max_length);
    }

    /// The connection's transport.
    pub fn transport(&self) -> &Transport {
        self.link.transport()
    }

    connection_methods!();
}

impl fmt::Debug for LineContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LineContext")
            .field("transport", self.transport())
            .field("line_mode", &self.is_line_mode())
            .field("paused", &self.is_paused())
            .finish()
    }
}

/// A [`LineReceiver`] as a twill [`Protocol`]: Twisted's `LineReceiver`
/// machinery.
///
/// Input is cut with a [`LineDecoder`] (Twisted's `LineReceiver` rules):
///
/// * A line of exactly `MAX_LENGTH` bytes is accepted; a longer one goes,
///   with everything buffered after it, to
///   [`line_length_exceeded`](LineReceiver::line_length_exceeded) (by
///   default: close).
/// * An unterminated tail is tolerated up to
///   `MAX_LENGTH + delimiter.len() - 1` bytes (a maximum-length line whose
///   delimiter is split across packets is fine); at
///   `MAX_LENGTH + delimiter.len()` it is too long, and goes to
///   `line_length_exceeded` whole.
/// * Delivery stops as soon as the transport is closing: lines after the
///   one that closed the connection are never delivered.
/// * Delivery is a flat loop: a callback never runs inside another, and
///   mode switches, [`set_line_mode(extra)`](LineContext::set_line_mode),
///   [`clear_line_buffer`](LineContext::clear_line_buffer) and pausing
///   asked for inside a callback apply to the rest of the buffer when it
///   returns (Twisted's re-entrancy guard; thousands of mode switches in
///   one packet take no stack).
/// * While paused, input is buffered; [`resume_producing`](LineContext::resume_producing)
///   delivers it.
///
/// Where Twisted would stop parsing after `line_length_exceeded` even if
/// the callback handed bytes back with `set_line_mode(rest)`, they are
/// parsed at once, so the result does not depend on how the input was
/// split.
///
/// # Examples
///
/// ```
/// use bytes::Bytes;
/// use twill::testing::StringTransport;
/// use twill::Protocol;
/// use twill_protocols::basic::{LineContext, LineReceiver, LineReceiverProtocol};
///
/// struct Shout;
///
/// impl LineReceiver for Shout {
///     fn line_received(&mut self, ctx: &LineContext, line: Bytes) {
///         if line == "quit" {
///             ctx.lose_connection();
///         } else {
///             ctx.send_line(line.to_ascii_uppercase());
///         }
///     }
/// }
///
/// let transport = StringTransport::new();
/// let mut protocol = LineReceiverProtocol::new(Shout);
/// protocol.connection_made(&transport.transport());
/// protocol.data_received(Bytes::from_static(b"hel"));
/// protocol.data_received(Bytes::from_static(b"lo\r\nquit\r\nlost\r\n"));
/// assert_eq!(transport.value(), b"HELLO\r\n");
/// assert!(transport.disconnecting());
/// ```
pub struct LineReceiverProtocol<R: LineReceiver> {
    core: Rc<Core<LineState, R, LineContext>>,
}

impl<R: LineReceiver> LineReceiverProtocol<R> {
    /// Wraps `receiver`, with its type's [`DELIMITER`](LineReceiver::DELIMITER)
    /// and [`MAX_LENGTH`](LineReceiver::MAX_LENGTH).
    pub fn new(receiver: R) -> Self {
        let state = LineState {
            buffer: BytesMut::new(),
            decoder: LineDecoder::new(R::DELIMITER, R::MAX_LENGTH),
            line_mode: true,
        };
        LineReceiverProtocol {
            core: Core::new(state, receiver, dispatch::<R>),
        }
    }

    /// Uses `delimiter` instead of the type's.
    ///
    /// # Panics
    ///
    /// If `delimiter` is empty.
    pub fn with_delimiter(self, delimiter: impl Into<Bytes>) -> Self {
        self.core
            .state
            .borrow_mut()
            .decoder
            .set_delimiter(delimiter.into());
        self
    }

    /// Uses `max_length` instead of the type's.
    pub fn with_max_length(self, max_length: usize) -> Self {
        self.core
            .state
            .borrow_mut()
            .decoder
            .set_max_length(max_length);
        self
    }

    /// The receiver.
    ///
    /// # Panics
    ///
    /// If called from inside one of the receiver's own callbacks.
    pub fn receiver(&self) -> Ref<'_, R> {
        self.core.receiver.borrow()
    }

    /// The receiver, mutably.
    ///
    /// # Panics
    ///
    /// If called from inside one of the receiver's own callbacks.
    pub fn receiver_mut(&self) -> RefMut<'_, R> {
        self.core.receiver.borrow_mut()
    }

    /// The receiver's context, once connected: to pause, resume or switch
    /// modes from outside the callbacks.
    pub fn context(&self) -> Option<LineContext> {
        self.core.context().cloned()
    }

    /// How many bytes are buffered, not yet delivered.
    pub fn buffered(&self) -> usize {
        self.core.state.borrow().buffer.len()
    }
}

impl<R: LineReceiver> Protocol for LineReceiverProtocol<R> {
    fn connection_made(&mut self, transport: &Transport) {
        self.core
            .connect(transport, |receiver, ctx| receiver.connection_made(ctx));
    }

    fn data_received(&mut self, data: Bytes) {
        self.core.state.borrow_mut().buffer.extend_from_slice(&data);
        self.core.drive();
    }

    fn eof_received(&mut self) -> bool {
        self.core
            .call(|receiver, ctx| receiver.eof_received(ctx))
            .unwrap_or(false)
    }

    fn connection_lost(&mut self, reason: &Reason) {
        self.core
            .call_last(|receiver| receiver.connection_lost(reason));
    }

    fn pause_writing(&mut self) {
        self.core.call(|receiver, ctx| receiver.pause_writing(ctx));
    }

    fn resume_writing(&mut self) {
        self.core.call(|receiver, ctx| receiver.resume_writing(ctx));
    }
}

impl<R: LineReceiver> fmt::Debug for LineReceiverProtocol<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.core.state.borrow();
        f.debug_struct("LineReceiverProtocol")
            .field("decoder", &state.decoder)
            .field("buffered", &state.buffer.len())
            .field("line_mode", &state.line_mode)
            .field("paused", &self.core.paused.get())
            .finish()
    }
}
