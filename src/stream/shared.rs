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

pub(crate) struct Shared {
    /// Read from the connection, not yet taken by the reader.
    pub(crate) buf: BytesMut,
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
            Reason::Failed(err) => err
                .downcast_ref::<io::Error>()
                .map_or(io::ErrorKind::Other, io::Error::kind),
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

impl Shared {
    pub(crate) fn new(unread: BytesMut) -> Shared {
        Shared {
            buf: unread,
            held: 0,
            limit: DEFAULT_LIMIT,
            need: 0,
            paused: false,
            eof: false,
            end: None,
            reader_gone: false,
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

    /// Appends what the connection read; pauses reading if the buffer is
    /// over the limit and the waiting read (if any) has what it needs.
    pub(crate) fn received(&mut self, data: BytesMut, transport: Option<&Transport>) {
        if self.reader_gone {
            return;
        }
        if self.buf.is_empty() {
            self.buf = data;
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
        if self.paused && self.buffered() < need {
            self.paused = false;
            transport.resume_reading();
        }
    }

    /// A read took bytes: reading resumes once the buffer is down to half
    /// the limit.
    pub(crate) fn consumed(&mut self, transport: &Transport) {
        self.need = 0;
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
