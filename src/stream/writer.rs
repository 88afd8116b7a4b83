//! [`StreamWriter`]: the writing half of a connection, for `async` code.

use crate::net::Address;
use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use futures::io::AsyncWrite;

use super::closer::Closer;
use super::shared::Shared;
use crate::Transport;

/// The writing half of a connection: asyncio's `StreamWriter`.
///
/// [`write`](Self::write) buffers and never blocks, as the
/// [`Transport`]'s does; [`drain`](Self::drain) is the backpressure: it
/// waits while the connection's write buffer is over its high watermark
/// (64 KiB by default), so a task that awaits it after its writes holds
/// at most about that much for a peer that does not read. It is also a
/// `futures` [`AsyncWrite`], whose `poll_write` waits the same way.
///
/// Clones are handles to the same connection (keep one in a chat room's
/// list, say). The connection closes, after sending what was written, once
/// the [`StreamReader`](super::StreamReader) and every clone of the writer
/// are dropped, or at [`close`](Self::close).
///
/// # Examples
///
/// ```
/// use twill::stream;
///
/// let reactor = twill::Reactor::new()?;
/// let port = stream::start_server("127.0.0.1:0", |_reader, writer| async move {
///     for i in 0..1000 {
///         writer.write(format!("line {i}\n"));
///         // Waits whenever the client is over 64 KiB behind.
///         if writer.drain().await.is_err() {
///             return; // the client went away
///         }
///     }
/// })?;
/// let addr = port.host();
/// twill::spawn(async move {
///     let (mut reader, _writer) = stream::open_connection(addr).await.unwrap();
///     let mut lines = 0;
///     while !reader.read_line().await.unwrap().is_empty() {
///         lines += 1;
///     }
///     assert_eq!(lines, 1000);
///     twill::stop();
/// });
/// reactor.run()?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct StreamWriter {
    shared: Rc<RefCell<Shared>>,
    closer: Rc<Closer>,
    /// The wait of an `AsyncWrite` call that returned `Pending`.
    waiting: Option<Rc<Wait>>,
}

impl StreamWriter {
    pub(crate) fn new(shared: Rc<RefCell<Shared>>, closer: Rc<Closer>) -> StreamWriter {
        StreamWriter {
            shared,
            closer,
            waiting: None,
        }
    }

    /// The connection's transport: for its options (watermarks,
    /// `set_tcp_nodelay`), `write_with` and the rest. Reading is the
    /// reader's to pause and resume; do not call `pause_reading` on it.
    pub fn transport(&self) -> &Transport {
        &self.closer.transport
    }

    /// Queues `data` to send; never blocks. Written after the connection
    /// closed or after [`write_eof`](Self::write_eof), it is dropped (as
    /// [`Transport::write`] says, with a warning in the log); [`drain`](Self::drain)
    /// and the `AsyncWrite` methods return an error then.
    pub fn write(&self, data: impl Into<Bytes>) {
        let data = data.into();
        if !data.is_empty() {
            let mut shared = self.shared.borrow_mut();
            if shared.write_shut {
                shared.write_refused = true;
            }
        }
        self.transport().write(data);
    }

    /// Waits until the connection's write buffer is under its high
    /// watermark again (at once if it is now). asyncio's `drain`.
    ///
    /// # Errors
    ///
    /// The connection is closing or closed, or something was written after
    /// [`write_eof`](Self::write_eof): written bytes cannot all leave. The
    /// error is the connection's (a reset, say), or `BrokenPipe`. After
    /// `write_eof` alone it waits as before, for what was written ahead
    /// of the EOF.
    pub async fn drain(&self) -> io::Result<()> {
        if self.shared.borrow().write_refused {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "a write came after write_eof and was dropped",
            ));
        }
        let mut waiting = None;
        poll_fn(|cx| poll_writable(self.transport(), &self.shared, &mut waiting, cx)).await
    }

    /// Shuts the writing side once what is buffered is sent (sends FIN);
    /// reading goes on. asyncio's `write_eof`. Later writes are dropped,
    /// and are errors (`BrokenPipe`) for `drain` and `AsyncWrite`.
    pub fn write_eof(&self) {
        self.shared.borrow_mut().write_shut = true;
        self.transport().write_eof();
    }

    /// `BrokenPipe` once the writing side is shut.
    fn check_not_shut(&self) -> io::Result<()> {
        if self.shared.borrow().write_shut {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the writing side is shut (write_eof)",
            ));
        }
        Ok(())
    }

    /// Closes the connection once what is buffered is sent, whoever else
    /// holds its streams. asyncio's `close`; [`wait_closed`](Self::wait_closed)
    /// waits for the end.
    ///
    /// This is not `futures`' `AsyncWriteExt::close`, which this method's
    /// name hides: that one shuts the writing side only (as
    /// [`write_eof`](Self::write_eof)) and is called as
    /// `AsyncWriteExt::close(&mut writer).await`.
    pub fn close(&self) {
        self.transport().lose_connection();
    }

    /// Whether the connection is closing or closed.
    pub fn is_closing(&self) -> bool {
        self.transport().is_closing()
    }

    /// Waits until the connection is over. asyncio's `wait_closed`.
    ///
    /// # Errors
    ///
    /// How it ended, if not cleanly: reset by the peer, aborted, failed.
    pub async fn wait_closed(&self) -> io::Result<()> {
        poll_fn(|cx| {
            let mut shared = self.shared.borrow_mut();
            match &shared.end {
                Some(end) => Poll::Ready(end.error().map_or(Ok(()), Err)),
                None => {
                    shared.wait_closed(cx);
                    Poll::Pending
                }
            }
        })
        .await
    }

    /// The peer's address. asyncio's `get_extra_info("peername")`.
    pub fn peer(&self) -> Address {
        self.transport().peer()
    }

    /// This side's address. asyncio's `get_extra_info("sockname")`.
    pub fn host(&self) -> Address {
        self.transport().host()
    }
}

impl Clone for StreamWriter {
    fn clone(&self) -> StreamWriter {
        StreamWriter::new(self.shared.clone(), self.closer.clone())
    }
}

/// The least an `AsyncWrite` call takes when the transport is writable,
/// however close to its high watermark the buffer is.
const MIN_WRITE: usize = 16 * 1024;

/// How much an `AsyncWrite` call takes now: what fits under the high
/// watermark, or [`MIN_WRITE`].
fn room(transport: &Transport) -> usize {
    let (high, _) = transport.write_buffer_limits();
    high.saturating_sub(transport.write_buffer_size())
        .max(MIN_WRITE)
}

/// One `when_writable` registration, waking whichever task polled last.
#[derive(Default)]
struct Wait {
    fired: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

/// Ready once `transport` is writable; an error once it is closing.
fn poll_writable(
    transport: &Transport,
    shared: &RefCell<Shared>,
    waiting: &mut Option<Rc<Wait>>,
    cx: &Context<'_>,
) -> Poll<io::Result<()>> {
    loop {
        if let Some(wait) = waiting {
            if !wait.fired.get() {
                *wait.waker.borrow_mut() = Some(cx.waker().clone());
                return Poll::Pending;
            }
            *waiting = None;
        }
        let state = transport.write_state();
        if state.closing {
            return Poll::Ready(Err(closed_error(shared)));
        }
        if state.writable {
            return Poll::Ready(Ok(()));
        }
        let wait = Rc::new(Wait::default());
        let woken = wait.clone();
        *waiting = Some(wait);
        // Runs at once if the transport became writable meanwhile: the
        // loop then sees `fired`.
        transport.when_writable(move || {
            woken.fired.set(true);
            if let Some(waker) = woken.waker.borrow_mut().take() {
                waker.wake();
            }
        });
    }
}

/// The error for writing to a connection that is closing or closed.
fn closed_error(shared: &RefCell<Shared>) -> io::Error {
    let shared = shared.borrow();
    shared
        .end
        .as_ref()
        .and_then(|end| end.error())
        .unwrap_or_else(|| io::Error::new(io::ErrorKind::BrokenPipe, "the connection is closed"))
}

impl AsyncWrite for StreamWriter {
    /// Takes as much of `data` as fits under the high watermark (at least
    /// 16 KiB), once the transport is writable: one large
    /// `write_all` goes out in pieces as the peer reads, never all queued
    /// at once (where it could pass the write buffer's hard cap).
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.check_not_shut()?;
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        std::task::ready!(poll_writable(
            &this.closer.transport,
            &this.shared,
            &mut this.waiting,
            cx
        ))?;
        let n = data.len().min(room(&this.closer.transport));
        this.closer
            .transport
            .write(Bytes::copy_from_slice(&data[..n]));
        Poll::Ready(Ok(n))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        pieces: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.check_not_shut()?;
        let total: usize = pieces.iter().map(|p| p.len()).sum();
        if total == 0 {
            return Poll::Ready(Ok(0));
        }
        std::task::ready!(poll_writable(
            &this.closer.transport,
            &this.shared,
            &mut this.waiting,
            cx
        ))?;
        let n = total.min(room(&this.closer.transport));
        let mut joined = Vec::with_capacity(n);
        for piece in pieces {
            let take = piece.len().min(n - joined.len());
            joined.extend_from_slice(&piece[..take]);
        }
        this.closer.transport.write(joined);
        Poll::Ready(Ok(n))
    }

    /// Ready once the write buffer is under its high watermark: what is
    /// buffered then is the reactor's to send, with nothing more for the
    /// caller to do (as a `TcpStream`'s kernel buffer).
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        poll_writable(&this.closer.transport, &this.shared, &mut this.waiting, cx)
    }

    /// Shuts the writing side ([`write_eof`](StreamWriter::write_eof)), as
    /// a `TcpStream`'s `poll_close` does; the connection closes when the
    /// reader and the writers are dropped.
    fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.shared.borrow().write_shut {
            this.write_eof();
        }
        Poll::Ready(Ok(()))
    }
}

impl fmt::Debug for StreamWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamWriter")
            .field("peer", &self.peer())
            .field("closing", &self.is_closing())
            .finish()
    }
}
