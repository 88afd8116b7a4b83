//! What a connection's [`StreamReaderProtocol`](super::StreamReaderProtocol),
//! its reader and its writer share: the bytes read and not yet taken, how
//! the connection ended, and who waits for what.

use std::io;
use std::rc::Rc;
use std::task::{Context, Waker};

use bytes::BytesMut;

use crate::{Reason, Transport};

/// asyncio's default `limit`: 64 KiB.
pub(crate) const DEFAULT_LIMIT: usize = 64 * 1024;

/// The most a waiting reader copies out of the reactor's read buffer
/// rather than keep a piece of it (and the whole 64 KiB of it) alive:
/// a leftover pins at most four times its size.
const SMALL_LEFTOVER: usize = 16 * 1024;

pub(crate) struct Shared {
    /// Read from the connection, not yet taken by the reader.
    pub(crate) buf: BytesMut,
    /// `buf` is an allocation of its own, not a piece of the reactor's
    /// read buffer (bytes appended to it are copied in).
    buf_is_own: bool,
    /// Taken by the reader's `poll_fill_buf` and not yet consumed: still
    /// counted against the limit.
    pub(crate) held: usize,
    pub(crate) limit: usize,
    /// How many buffered bytes the waiting read needs before it can
    /// finish; 0 when no read waits.
    need: usize,
    /// Whether this reader paused the transport's reading.
    paused: bool,
    /// The peer sent FIN.
    pub(crate) eof: bool,
    /// How the connection ended, once it has.
    pub(crate) end: Option<End>,
    /// The reader was dropped: what arrives is thrown away.
    pub(crate) reader_gone: bool,
    /// A writer shut the writing side (`write_eof`, `AsyncWrite::poll_close`):
    /// further writes are errors.
    pub(crate) write_shut: bool,
    /// A write came after the writing side was shut, and was dropped:
    /// `drain` says so.
    pub(crate) write_refused: bool,
    reader_waker: Option<Waker>,
    closed_wakers: Vec<Waker>,
}

/// How a connection ended, kept so that every reader, `drain` and
/// `wait_closed` can make an `io::Error` of it (a [`Reason`] cannot be
/// cloned).
#[derive(Clone, Debug)]
pub(crate) enum End {
    Clean,
    Failed {
        kind: io::ErrorKind,
        message: Rc<str>,
    },
}

impl End {
    pub(crate) fn of(reason: &Reason) -> End {
        let kind = match reason {
            Reason::Done => return End::Clean,
            Reason::Lost(err) => err.kind(),
            Reason::Aborted => io::ErrorKind::ConnectionAborted,
            Reason::Failed(err) => failure_kind(&**err),
        };
        End::Failed {
            kind,
            message: reason.to_string().into(),
        }
    }

    /// The error a read, `drain` or `wait_closed` reports; `None` for a
    /// clean end.
    pub(crate) fn error(&self) -> Option<io::Error> {
        match self {
            End::Clean => None,
            End::Failed { kind, message } => Some(io::Error::new(*kind, message.to_string())),
        }
    }
}

/// The `io::ErrorKind` that says what a protocol failure was, for code
/// that matches on kinds: a TLS handshake timeout is `TimedOut` as a TCP
/// connect timeout is, a certificate or protocol error `InvalidData`.
fn failure_kind(err: &(dyn std::error::Error + Send + Sync + 'static)) -> io::ErrorKind {
    if let Some(err) = err.downcast_ref::<io::Error>() {
        return err.kind();
    }
    #[cfg(feature = "tls")]
    if let Some(err) = err.downcast_ref::<crate::tls::TlsError>() {
        use crate::tls::TlsError;
        return match err {
            TlsError::HandshakeTimeout(_) => io::ErrorKind::TimedOut,
            TlsError::ClosedDuringHandshake | TlsError::Truncated => io::ErrorKind::UnexpectedEof,
            _ => io::ErrorKind::InvalidData,
        };
    }
    io::ErrorKind::Other
}

impl Shared {
    pub(crate) fn new(unread: BytesMut) -> Shared {
        Shared {
            buf_is_own: true,
            buf: unread,
            held: 0,
            limit: DEFAULT_LIMIT,
            need: 0,
            paused: false,
            eof: false,
            end: None,
            reader_gone: false,
            write_shut: false,
            write_refused: false,
            reader_waker: None,
            closed_wakers: Vec::new(),
        }
    }

    /// Bytes read and not consumed.
    pub(crate) fn buffered(&self) -> usize {
        self.buf.len() + self.held
    }

    /// Whether more bytes can come, and if not, how the stream ends:
    /// `None` while they can; `Some(Ok)` at EOF or after a clean close;
    /// `Some(Err)` once the connection failed. EOF wins over a failure that
    /// follows it.
    pub(crate) fn finished(&self) -> Option<io::Result<()>> {
        if self.eof {
            return Some(Ok(()));
        }
        let end = self.end.as_ref()?;
        Some(end.error().map_or(Ok(()), Err))
    }

    /// Appends what the connection read (`own`: in an allocation of its
    /// own, not a piece of the reactor's read buffer); pauses reading if
    /// the buffer is over the limit and the waiting read (if any) has what
    /// it needs.
    pub(crate) fn received(&mut self, data: BytesMut, own: bool, transport: Option<&Transport>) {
        if self.reader_gone {
            return;
        }
        if self.buf.is_empty() {
            self.buf = data;
            self.buf_is_own = own;
        } else {
            // O(1) when `data` was read just behind the buffered bytes, in
            // the same allocation: the usual case.
            self.buf.unsplit(data);
        }
        let buffered = self.buffered();
        if !self.paused && buffered > self.limit && buffered >= self.need {
            if let Some(transport) = transport {
                self.paused = true;
                transport.pause_reading();
            }
        }
        self.wake_reader();
    }

    /// A read cannot finish before `need` bytes are buffered: it waits,
    /// and reading resumes if the limit had paused it, so a read that
    /// needs more than the limit (a long `read_exact`, a decoder's large
    /// frame) is never starved.
    pub(crate) fn wait(&mut self, cx: &Context<'_>, need: usize, transport: &Transport) {
        match &self.reader_waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            _ => self.reader_waker = Some(cx.waker().clone()),
        }
        self.need = need;
        self.release_read_buffer();
        if self.paused && self.buffered() < need {
            self.paused = false;
            transport.resume_reading();
        }
    }

    /// While the reader waits, lets go of the reactor's shared read
    /// buffer, which every piece of it keeps alive (64 KiB): an empty
    /// buffer becomes no allocation at all, and a small unfinished message
    /// is copied into one of its own (as the reactor does for a protocol's
    /// leftover). A larger one is on its way to being read and keeps its
    /// piece for now.
    fn release_read_buffer(&mut self) {
        if self.buf.is_empty() {
            self.buf = BytesMut::new();
        } else if !self.buf_is_own && self.buf.len() <= SMALL_LEFTOVER {
            self.buf = BytesMut::from(&self.buf[..]);
            self.buf_is_own = true;
        }
    }

    /// No read waits any more (it finished, or was dropped before it did):
    /// what it needed no longer holds the limit off.
    pub(crate) fn no_read_waiting(&mut self) {
        self.need = 0;
    }

    /// A read took bytes: reading resumes once the buffer is down to half
    /// the limit.
    pub(crate) fn consumed(&mut self, transport: &Transport) {
        self.need = 0;
        if self.buf.is_empty() {
            // Read to the end: keep no piece of the reactor's read buffer
            // (even an empty one keeps all of it alive).
            self.buf = BytesMut::new();
        }
        if self.paused && self.buffered() <= self.limit / 2 {
            self.paused = false;
            transport.resume_reading();
        }
    }

    /// The reader is gone: drops what it left and reads (to throw away)
    /// whatever comes, so the peer's EOF is still seen.
    pub(crate) fn drop_reader(&mut self, transport: &Transport) {
        self.reader_gone = true;
        self.buf = BytesMut::new();
        self.held = 0;
        self.reader_waker = None;
        if self.paused {
            self.paused = false;
            transport.resume_reading();
        }
    }

    pub(crate) fn eof_received(&mut self) {
        self.eof = true;
        self.wake_reader();
    }

    pub(crate) fn connection_lost(&mut self, reason: &Reason) {
        self.end = Some(End::of(reason));
        self.wake_reader();
        for waker in self.closed_wakers.drain(..) {
            waker.wake();
        }
    }

    /// Wakes `cx`'s task when the connection ends.
    pub(crate) fn wait_closed(&mut self, cx: &Context<'_>) {
        if !self.closed_wakers.iter().any(|w| w.will_wake(cx.waker())) {
            self.closed_wakers.push(cx.waker().clone());
        }
    }

    fn wake_reader(&mut self) {
        if let Some(waker) = self.reader_waker.take() {
            waker.wake();
        }
    }
}
