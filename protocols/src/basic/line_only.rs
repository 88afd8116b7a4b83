//! [`LineOnlyReceiver`]: Twisted's `LineOnlyReceiver`, lines only.

use std::fmt;

use bytes::{Bytes, BytesMut};
use twill::{Protocol, Reason, Transport};

use super::context::connection_methods;
use super::line_decoder::{LineDecoder, LineStep, DEFAULT_DELIMITER, DEFAULT_MAX_LINE_LENGTH};

/// A protocol that receives only lines: Twisted's `LineOnlyReceiver`, the
/// lighter [`LineReceiver`](super::LineReceiver) without raw mode or
/// pausing. Wrap it in a [`LineOnlyReceiverProtocol`].
///
/// The defaults are Twisted's: [`DELIMITER`](Self::DELIMITER) `b"\r\n"`,
/// [`MAX_LENGTH`](Self::MAX_LENGTH) 16384.
///
/// # Examples
///
/// ```
/// use bytes::Bytes;
/// use twill::testing::StringTransport;
/// use twill::Protocol;
/// use twill_protocols::basic::{LineOnlyContext, LineOnlyReceiver, LineOnlyReceiverProtocol};
///
/// struct Count(usize);
///
/// impl LineOnlyReceiver for Count {
///     const DELIMITER: &'static [u8] = b"\n";
///     fn line_received(&mut self, ctx: &LineOnlyContext, line: Bytes) {
///         self.0 += 1;
///         ctx.send_line(format!("{}: {}", self.0, line.len()));
///     }
/// }
///
/// let transport = StringTransport::new();
/// let mut protocol = LineOnlyReceiverProtocol::new(Count(0));
/// protocol.connection_made(&transport.transport());
/// protocol.data_received(Bytes::from_static(b"one\ntwo\r\nthr"));
/// assert_eq!(transport.value(), b"1: 3\n2: 4\n");
/// ```
pub trait LineOnlyReceiver: 'static {
    /// The line delimiter: Twisted's `delimiter`, `b"\r\n"`.
    const DELIMITER: &'static [u8] = DEFAULT_DELIMITER;

    /// The longest line, without its delimiter: Twisted's `MAX_LENGTH`,
    /// 16384.
    const MAX_LENGTH: usize = DEFAULT_MAX_LINE_LENGTH;

    /// The connection is up.
    fn connection_made(&mut self, ctx: &LineOnlyContext) {
        let _ = ctx;
    }

    /// A line arrived, without its delimiter.
    fn line_received(&mut self, ctx: &LineOnlyContext, line: Bytes);

    /// A line was too long: `line` is that line (when its delimiter came)
    /// or the unterminated tail that passed the limit. The default closes
    /// the connection.
    fn line_length_exceeded(&mut self, ctx: &LineOnlyContext, line: Bytes) {
        let _ = line;
        ctx.lose_connection();
    }

    /// The peer closed its writing side; an unfinished line is not
    /// delivered. Return `true` to keep the half-open connection.
    fn eof_received(&mut self, ctx: &LineOnlyContext) -> bool {
        let _ = ctx;
        false
    }

    /// The connection is gone; called once, last.
    fn connection_lost(&mut self, reason: &Reason) {
        let _ = reason;
    }

    /// The write buffer went over its high watermark.
    fn pause_writing(&mut self, ctx: &LineOnlyContext) {
        let _ = ctx;
    }

    /// The write buffer drained to its low watermark.
    fn resume_writing(&mut self, ctx: &LineOnlyContext) {
        let _ = ctx;
    }
}

/// A [`LineOnlyReceiver`]'s handle on its connection. Clones write to the
/// same connection.
#[derive(Clone)]
pub struct LineOnlyContext {
    transport: Transport,
    delimiter: Bytes,
}

impl LineOnlyContext {
    /// Writes `line` followed by the delimiter, in one write: Twisted's
    /// `sendLine`.
    pub fn send_line(&self, line: impl AsRef<[u8]>) {
        let line = line.as_ref();
        let mut out = BytesMut::with_capacity(line.len() + self.delimiter.len());
        out.extend_from_slice(line);
        out.extend_from_slice(&self.delimiter);
        self.transport.write(out.freeze());
    }

    /// The line delimiter.
    pub fn delimiter(&self) -> &Bytes {
        &self.delimiter
    }

    /// The connection's transport.
    pub fn transport(&self) -> &Transport {
        &self.transport
    }

    connection_methods!();
}

impl fmt::Debug for LineOnlyContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LineOnlyContext")
            .field("transport", &self.transport)
            .field("delimiter", &self.delimiter)
            .finish()
    }
}

/// A [`LineOnlyReceiver`] as a twill [`Protocol`].
///
/// Input is cut with a [`LineDecoder::line_only`], Twisted's
/// `LineOnlyReceiver` rules:
///
/// * A line of exactly `MAX_LENGTH` bytes is accepted; a longer one goes
///   (alone) to [`line_length_exceeded`](LineOnlyReceiver::line_length_exceeded)
///   (by default: close).
/// * An unterminated tail longer than `MAX_LENGTH` is too long at once,
///   with no delimiter allowance (unlike `LineReceiver`: `b"abcde"` with
///   `MAX_LENGTH` 4 closes) — except that bytes past the limit that are the
///   start of the delimiter wait for the rest of it, so a maximum-length
///   line is accepted however TCP cut it (Twisted rejects it when its
///   delimiter is split; that is the one deliberate difference).
/// * Delivery stops as soon as the transport is closing.
///
/// With a `line_length_exceeded` that does not close, Twisted drops the
/// lines after a too-long one in the same packet, and reports a long
/// unterminated tail again with every packet; here only the too-long line
/// is dropped (an unterminated one up to its delimiter), it is reported
/// once, and the following lines are delivered.
pub struct LineOnlyReceiverProtocol<R: LineOnlyReceiver> {
    receiver: R,
    decoder: LineDecoder,
    buffer: BytesMut,
    ctx: Option<LineOnlyContext>,
}

impl<R: LineOnlyReceiver> LineOnlyReceiverProtocol<R> {
    /// Wraps `receiver`, with its type's
    /// [`DELIMITER`](LineOnlyReceiver::DELIMITER) and
    /// [`MAX_LENGTH`](LineOnlyReceiver::MAX_LENGTH).
    pub fn new(receiver: R) -> Self {
        LineOnlyReceiverProtocol {
            receiver,
            decoder: LineDecoder::line_only(R::DELIMITER, R::MAX_LENGTH),
            buffer: BytesMut::new(),
            ctx: None,
        }
    }

    /// Uses `delimiter` instead of the type's (set it before the
    /// connection is made).
    ///
    /// # Panics
    ///
    /// If `delimiter` is empty.
    pub fn with_delimiter(mut self, delimiter: impl Into<Bytes>) -> Self {
        self.decoder.set_delimiter(delimiter.into());
        self
    }

    /// Uses `max_length` instead of the type's.
    pub fn with_max_length(mut self, max_length: usize) -> Self {
        self.decoder.set_max_length(max_length);
        self
    }

    /// The receiver.
    pub fn receiver(&self) -> &R {
        &self.receiver
    }

    /// The receiver, mutably.
    pub fn receiver_mut(&mut self) -> &mut R {
        &mut self.receiver
    }
}

impl<R: LineOnlyReceiver> Protocol for LineOnlyReceiverProtocol<R> {
    fn connection_made(&mut self, transport: &Transport) {
        let ctx = LineOnlyContext {
            transport: transport.clone(),
            delimiter: self.decoder.delimiter().clone(),
        };
        // On before the receiver runs, so it can turn it off.
        transport.set_flow_control(true);
        self.receiver.connection_made(&ctx);
        self.ctx = Some(ctx);
    }

    fn data_received(&mut self, data: Bytes) {
        let Some(ctx) = &self.ctx else { return };
        self.buffer.extend_from_slice(&data);
        while !ctx.transport.is_closing() {
            match self.decoder.next_line(&mut self.buffer) {
                None => return,
                Some(LineStep::Line(line)) => self.receiver.line_received(ctx, line),
                Some(LineStep::TooLong(line)) => self.receiver.line_length_exceeded(ctx, line),
            }
        }
    }

    fn eof_received(&mut self) -> bool {
        match &self.ctx {
            Some(ctx) => self.receiver.eof_received(ctx),
            None => false,
        }
    }

    fn connection_lost(&mut self, reason: &Reason) {
        self.receiver.connection_lost(reason);
    }

    fn pause_writing(&mut self) {
        if let Some(ctx) = &self.ctx {
            self.receiver.pause_writing(ctx);
        }
    }

    fn resume_writing(&mut self) {
        if let Some(ctx) = &self.ctx {
            self.receiver.resume_writing(ctx);
        }
    }
}

impl<R: LineOnlyReceiver> fmt::Debug for LineOnlyReceiverProtocol<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LineOnlyReceiverProtocol")
            .field("decoder", &self.decoder)
            .field("buffered", &self.buffer.len())
            .finish()
    }
}
