//! [`StreamReader`]: the reading half of a connection, for `async` code.

use std::cell::{RefCell, RefMut};
use std::fmt;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use futures::io::{AsyncBufRead, AsyncRead};

use super::closer::Closer;
use super::shared::Shared;
use super::ReadError;
use crate::Transport;

/// The reading half of a connection: asyncio's `StreamReader`.
///
/// The connection's bytes gather in the reader's buffer as they arrive,
/// and its reads take them out: [`read`](Self::read) what is there,
/// [`read_exact`](Self::read_exact) a count, [`read_until`](Self::read_until)
/// a delimiter, [`read_line`](Self::read_line). Each returns [`Bytes`]
/// split off the buffer, not copied. It is also a `futures`
/// [`AsyncRead`] and [`AsyncBufRead`], so `futures::io::copy`, TLS and
/// WebSocket crates built on those traits read from it.
///
/// # The limit
///
/// The buffer holds at most about its [limit](Self::set_limit) (64 KiB by
/// default, asyncio's) plus one read: past the limit the reader pauses the
/// transport's reading, and it resumes once reads bring the buffer down to
/// half the limit. A task that reads slowly therefore slows its peer down
/// (through TCP) instead of growing the server. A read that needs more than
/// the limit to finish ([`read_exact`](Self::read_exact) of a large count)
/// reads on until it has it. [`read_until`](Self::read_until) and
/// [`read_line`](Self::read_line) stop at the limit with
/// [`ReadError::LimitOverrun`] and leave the bytes in the buffer.
///
/// # Cancellation
///
/// Every read is cancel-safe: a read future dropped before it finished
/// (in a `select!` with a timeout, say) has taken nothing, and the next
/// read sees every byte.
///
/// # Ending
///
/// After the peer's EOF, reads return what is buffered, then empty
/// (`read`, `read_line`) or [`ReadError::Incomplete`]. If the connection
/// fails (a reset, a TLS error), they return what is buffered, then the
/// error. Dropping the reader throws away what it holds and whatever else
/// arrives; the connection closes once its [`StreamWriter`](super::StreamWriter)s
/// are dropped as well.
///
/// # Examples
///
/// ```
/// use twill::stream;
///
/// let reactor = twill::Reactor::new()?;
/// let port = stream::start_server("127.0.0.1:0", |mut reader, writer| async move {
///     // A name on a line, then a 4-byte code.
///     let name = reader.read_line().await.unwrap();
///     let code = reader.read_exact(4).await.unwrap();
///     let name = String::from_utf8_lossy(name.trim_ascii_end());
///     writer.write(format!("{name}: {}\n", String::from_utf8_lossy(&code)));
/// })?;
/// let addr = port.host();
/// twill::spawn(async move {
///     let (mut reader, writer) = stream::open_connection(addr).await.unwrap();
///     writer.write("ada\n1815");
///     let answer = reader.read_line().await.unwrap();
///     assert_eq!(&answer[..], b"ada: 1815\n");
///     twill::stop();
/// });
/// reactor.run()?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct StreamReader {
    shared: Rc<RefCell<Shared>>,
    /// Taken by `poll_fill_buf`, not yet consumed: the head of the stream.
    front: Bytes,
    closer: Rc<Closer>,
}

impl StreamReader {
    pub(crate) fn new(shared: Rc<RefCell<Shared>>, closer: Rc<Closer>) -> StreamReader {
        StreamReader {
            shared,
            front: Bytes::new(),
            closer,
        }
    }

    fn transport(&self) -> &Transport {
        &self.closer.transport
    }

    /// Reads up to `max` bytes: what is buffered (at most `max`), or waits
    /// for the next bytes to arrive. Empty at the end of the stream (or
    /// when `max` is 0). asyncio's `read(n)`.
    ///
    /// # Errors
    ///
    /// The connection's error, once what was buffered before it is read.
    pub async fn read(&mut self, max: usize) -> Result<Bytes, ReadError> {
        poll_fn(|cx| self.poll_read_bytes(cx, max)).await
    }

    /// Reads exactly `n` bytes, however many more than the
    /// [limit](Self::set_limit) that is. asyncio's `readexactly`.
    ///
    /// # Errors
    ///
    /// [`ReadError::Incomplete`] with the bytes that came if the stream
    /// ends first; the connection's error if it fails first (the bytes
    /// stay buffered).
    pub async fn read_exact(&mut self, n: usize) -> Result<Bytes, ReadError> {
        // A large read dropped before it finished must not leave its need
        // behind: the limit would stay lifted for no one.
        let _forget_need = ForgetNeed(self.shared.clone());
        poll_fn(|cx| self.poll_read_exact(cx, n)).await
    }

    /// Reads up to and including `delimiter`. asyncio's `readuntil`.
    ///
    /// # Errors
    ///
    /// - [`ReadError::LimitOverrun`] if the delimiter starts past the
    ///   [limit](Self::set_limit), or more than the limit is buffered
    ///   without it; the bytes stay buffered.
    /// - [`ReadError::Incomplete`] with what came, if the stream ends
    ///   before the delimiter.
    /// - `ReadError::Io` (`InvalidInput`) for an empty delimiter, and the
    ///   connection's error if it fails first.
    ///
    /// To skip what overran the limit, read it away:
    /// `reader.read(consumed).await` takes exactly those bytes (they are
    /// buffered), and the next `read_until` starts after them.
    pub async fn read_until(&mut self, delimiter: &[u8]) -> Result<Bytes, ReadError> {
        let mut scanned = 0;
        poll_fn(|cx| self.poll_read_until(cx, delimiter, &mut scanned)).await
    }

    /// Reads a line, up to and including `\n`. At the end of the stream it
    /// returns the last, unfinished line, then empty. asyncio's
    /// `readline`.
    ///
    /// # Errors
    ///
    /// [`ReadError::LimitOverrun`] for a line longer than the
    /// [limit](Self::set_limit), which stays buffered (asyncio's
    /// `readline` throws it away; here nothing is lost), and the
    /// connection's error.
    pub async fn read_line(&mut self) -> Result<Bytes, ReadError> {
        match self.read_until(b"\n").await {
            Err(ReadError::Incomplete { partial, .. }) => Ok(partial),
            other => other,
        }
    }

    /// Whether the stream ended cleanly (the peer's EOF, or a clean
    /// close) and everything is read. asyncio's `at_eof`: after a failure
    /// (a reset) it stays false, and reads return the error.
    pub fn at_eof(&self) -> bool {
        let shared = self.shared.borrow();
        self.front.is_empty() && shared.buf.is_empty() && matches!(shared.finished(), Some(Ok(())))
    }

    /// How many bytes are buffered, read from the connection and not yet
    /// taken.
    pub fn buffered(&self) -> usize {
        self.shared.borrow().buffered()
    }

    /// The buffer's limit; see [the limit](Self#the-limit).
    pub fn limit(&self) -> usize {
        self.shared.borrow().limit
    }

    /// Sets the buffer's limit (64 KiB by default, at least 1): asyncio's
    /// `limit` argument.
    pub fn set_limit(&mut self, limit: usize) {
        let mut shared = self.shared.borrow_mut();
        shared.limit = limit.max(1);
        shared.consumed(&self.closer.transport);
    }

    /// Polls for whatever [`parse`] makes of the buffered bytes: the
    /// building block of message streams (`twill-protocols`' codecs read
    /// through it without copying).
    ///
    /// `parse` gets the buffer and whether the stream has ended; it takes
    /// what it uses off the front and returns `Ok(Some(item))`, or
    /// `Ok(None)` when it needs more bytes. This returns `Ready(Ok(None))`
    /// once the stream has ended and `parse` (called with `true`) has no
    /// more items, and the connection's error if it failed. A `parse` that
    /// needs more than the [limit](Self::set_limit) gets it: reading goes
    /// on while it waits.
    ///
    /// [`parse`]: Self::poll_parse
    ///
    /// ```
    /// use std::future::poll_fn;
    /// use twill::stream;
    ///
    /// /// Frames of one length byte and a body.
    /// fn frame(buf: &mut twill::BytesMut, _eof: bool) -> std::io::Result<Option<twill::Bytes>> {
    ///     match buf.first() {
    ///         Some(&len) if buf.len() > len as usize => {
    ///             let frame = buf.split_to(1 + len as usize).freeze();
    ///             Ok(Some(frame.slice(1..)))
    ///         }
    ///         _ => Ok(None),
    ///     }
    /// }
    ///
    /// let reactor = twill::Reactor::new()?;
    /// let port = stream::start_server("127.0.0.1:0", |_reader, writer| async move {
    ///     writer.write(&b"\x02hi\x05there"[..]);
    /// })?;
    /// let addr = port.host();
    /// twill::spawn(async move {
    ///     let (mut reader, _writer) = stream::open_connection(addr).await.unwrap();
    ///     let mut frames = Vec::new();
    ///     while let Some(body) = poll_fn(|cx| reader.poll_parse(cx, frame)).await.unwrap() {
    ///         frames.push(body);
    ///     }
    ///     assert_eq!(frames, ["hi", "there"]);
    ///     twill::stop();
    /// });
    /// reactor.run()?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn poll_parse<T, E: From<io::Error>>(
        &mut self,
        cx: &mut Context<'_>,
        mut parse: impl FnMut(&mut BytesMut, bool) -> Result<Option<T>, E>,
    ) -> Poll<Result<Option<T>, E>> {
        let mut shared = take_back_front(&self.shared, &mut self.front);
        let transport = &self.closer.transport;
        let before = shared.buf.len();
        let parsed = parse(&mut shared.buf, false);
        // Whatever it returned, bytes it took (skipped ones too) may let
        // reading resume.
        if shared.buf.len() < before {
            shared.consumed(transport);
        }
        if let Some(item) = parsed? {
            return Poll::Ready(Ok(Some(item)));
        }
        match shared.finished() {
            None => {
                // How much more the parser needs is its secret: reading
                // goes on until the buffer has doubled before the limit
                // may pause it again, so a frame larger than the limit
                // costs a pause and a resume per doubling, not per read.
                let len = shared.buf.len();
                shared.wait(cx, len.saturating_mul(2).max(len + 1), transport);
                Poll::Pending
            }
            Some(Ok(())) => {
                let parsed = parse(&mut shared.buf, true);
                shared.consumed(transport);
                Poll::Ready(parsed)
            }
            Some(Err(err)) => Poll::Ready(Err(err.into())),
        }
    }

    fn poll_read_bytes(&mut self, cx: &Context<'_>, max: usize) -> Poll<Result<Bytes, ReadError>> {
        if max == 0 {
            return Poll::Ready(Ok(Bytes::new()));
        }
        if !self.front.is_empty() {
            let n = max.min(self.front.len());
            let bytes = self.front.split_to(n);
            self.after_front_consumed();
            return Poll::Ready(Ok(bytes));
        }
        let mut shared = self.shared.borrow_mut();
        let transport = &self.closer.transport;
        if !shared.buf.is_empty() {
            let bytes = if max >= shared.buf.len() {
                // All of it: no split, so no reference count to take on
                // the reactor's read buffer and none to drop.
                std::mem::take(&mut shared.buf).freeze()
            } else {
                shared.buf.split_to(max).freeze()
            };
            shared.consumed(transport);
            return Poll::Ready(Ok(bytes));
        }
        match shared.finished() {
            None => {
                shared.wait(cx, 1, transport);
                Poll::Pending
            }
            Some(Ok(())) => Poll::Ready(Ok(Bytes::new())),
            Some(Err(err)) => Poll::Ready(Err(err.into())),
        }
    }

    fn poll_read_exact(&mut self, cx: &Context<'_>, n: usize) -> Poll<Result<Bytes, ReadError>> {
        let mut shared = take_back_front(&self.shared, &mut self.front);
        let transport = &self.closer.transport;
        if shared.buf.len() >= n {
            let bytes = shared.buf.split_to(n).freeze();
            shared.consumed(transport);
            return Poll::Ready(Ok(bytes));
        }
        match shared.finished() {
            None => {
                shared.wait(cx, n, transport);
                Poll::Pending
            }
            Some(Ok(())) => {
                let partial = shared.buf.split().freeze();
                shared.consumed(transport);
                Poll::Ready(Err(ReadError::Incomplete {
                    partial,
                    expected: Some(n),
                }))
            }
            Some(Err(err)) => Poll::Ready(Err(err.into())),
        }
    }

    /// `scanned`: how far earlier polls of this read searched without
    /// finding the delimiter, so each byte is searched about once.
    fn poll_read_until(
        &mut self,
        cx: &Context<'_>,
        delimiter: &[u8],
        scanned: &mut usize,
    ) -> Poll<Result<Bytes, ReadError>> {
        if delimiter.is_empty() {
            return Poll::Ready(Err(ReadError::Io(io::Error::new(
                io::ErrorKind::InvalidInput,
                "read_until needs a delimiter of at least one byte",
            ))));
        }
        let mut shared = take_back_front(&self.shared, &mut self.front);
        let transport = &self.closer.transport;
        let limit = shared.limit;
        let len = shared.buf.len();
        // A delimiter may straddle what was searched and what came since.
        let from = (*scanned).min(len).saturating_sub(delimiter.len() - 1);
        if let Some(at) = find(&shared.buf[from..], delimiter).map(|i| i + from) {
            if at > limit {
                return Poll::Ready(Err(ReadError::LimitOverrun {
                    consumed: at,
                    limit,
                }));
            }
            let bytes = shared.buf.split_to(at + delimiter.len()).freeze();
            shared.consumed(transport);
            *scanned = 0;
            return Poll::Ready(Ok(bytes));
        }
        *scanned = len;
        // The earliest the delimiter can still start.
        let earliest = (len + 1).saturating_sub(delimiter.len());
        if earliest > limit {
            return Poll::Ready(Err(ReadError::LimitOverrun {
                consumed: earliest,
                limit,
            }));
        }
        match shared.finished() {
            None => {
                shared.wait(cx, len + 1, transport);
                Poll::Pending
            }
            Some(Ok(())) => {
                let partial = shared.buf.split().freeze();
                shared.consumed(transport);
                *scanned = 0;
                Poll::Ready(Err(ReadError::Incomplete {
                    partial,
                    expected: None,
                }))
            }
            Some(Err(err)) => Poll::Ready(Err(err.into())),
        }
    }

    fn after_front_consumed(&mut self) {
        let mut shared = self.shared.borrow_mut();
        shared.held = self.front.len();
        shared.consumed(&self.closer.transport);
    }
}

/// The shared state, with bytes that `poll_fill_buf` took into `front`
/// and left unconsumed put back at the front of the buffer (a copy, only
/// when a caller mixes `AsyncBufRead` with the other reads).
fn take_back_front<'a>(shared: &'a RefCell<Shared>, front: &mut Bytes) -> RefMut<'a, Shared> {
    let mut shared = shared.borrow_mut();
    if !front.is_empty() {
        let mut joined = BytesMut::with_capacity(front.len() + shared.buf.len());
        joined.extend_from_slice(front);
        joined.extend_from_slice(&shared.buf);
        shared.buf = joined;
        shared.held = 0;
        *front = Bytes::new();
    }
    shared
}

/// Clears the reader's need when a read ends, however it ends.
struct ForgetNeed(Rc<RefCell<Shared>>);

impl Drop for ForgetNeed {
    fn drop(&mut self) {
        if let Ok(mut shared) = self.0.try_borrow_mut() {
            shared.no_read_waiting();
        }
    }
}

/// Where `needle` first occurs in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    match needle {
        [byte] => haystack.iter().position(|b| b == byte),
        _ => haystack.windows(needle.len()).position(|w| w == needle),
    }
}

impl AsyncRead for StreamReader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if out.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if !this.front.is_empty() {
            let n = out.len().min(this.front.len());
            out[..n].copy_from_slice(&this.front[..n]);
            this.front.advance(n);
            this.after_front_consumed();
            return Poll::Ready(Ok(n));
        }
        let mut shared = this.shared.borrow_mut();
        let transport = &this.closer.transport;
        if !shared.buf.is_empty() {
            let n = out.len().min(shared.buf.len());
            out[..n].copy_from_slice(&shared.buf[..n]);
            shared.buf.advance(n);
            shared.consumed(transport);
            return Poll::Ready(Ok(n));
        }
        match shared.finished() {
            None => {
                shared.wait(cx, 1, transport);
                Poll::Pending
            }
            Some(Ok(())) => Poll::Ready(Ok(0)),
            Some(Err(err)) => Poll::Ready(Err(err)),
        }
    }
}

impl AsyncBufRead for StreamReader {
    fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        let this = self.get_mut();
        if this.front.is_empty() {
            let mut shared = this.shared.borrow_mut();
            if shared.buf.is_empty() {
                match shared.finished() {
                    None => {
                        shared.wait(cx, 1, &this.closer.transport);
                        return Poll::Pending;
                    }
                    Some(Ok(())) => {}
                    Some(Err(err)) => return Poll::Ready(Err(err)),
                }
            } else {
                this.front = shared.buf.split().freeze();
                shared.held = this.front.len();
            }
        }
        Poll::Ready(Ok(&this.front[..]))
    }

    fn consume(self: Pin<&mut Self>, amount: usize) {
        let this = self.get_mut();
        this.front.advance(amount.min(this.front.len()));
        this.after_front_consumed();
    }
}

impl Drop for StreamReader {
    fn drop(&mut self) {
        if let Ok(mut shared) = self.shared.try_borrow_mut() {
            shared.drop_reader(self.transport());
        }
    }
}

impl fmt::Debug for StreamReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamReader")
            .field("peer", &self.transport().peer())
            .field("buffered", &self.buffered())
            .field("at_eof", &self.at_eof())
            .finish()
    }
}
