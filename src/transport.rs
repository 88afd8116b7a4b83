//! [`Transport`]: the handle a protocol writes and closes its connection
//! through.

use crate::net::{Address, PeerCredentials};
use std::error::Error;
use std::fmt;
use std::io;
use std::rc::Rc;

use bytes::{Bytes, BytesMut};

use crate::defer::{Deferred, Failure};
use crate::event::Event;

/// Default high watermark of the write buffer: above it the protocol is
/// told to [`pause_writing`](crate::Protocol::pause_writing).
pub const DEFAULT_HIGH_WATERMARK: usize = 64 * 1024;
/// Default low watermark: once the buffer drains to it the protocol is told
/// to [`resume_writing`](crate::Protocol::resume_writing).
pub const DEFAULT_LOW_WATERMARK: usize = 16 * 1024;
/// Default hard cap on the write buffer: past it the connection is aborted
/// with [`WriteBufferFull`].
///
/// 256 times the high watermark. A protocol that stops producing when told
/// to ([`pause_writing`](crate::Protocol::pause_writing)) overshoots the
/// high watermark by at most what it writes in one callback, far below
/// this; only a protocol that ignores a peer which does not read, or one
/// that writes a whole large body at once, comes near it. The first is the
/// case the cap is for; the second should raise it
/// ([`Transport::set_write_buffer_max`]) or send the body in pieces as the
/// buffer drains.
pub const DEFAULT_MAX_WRITE_BUFFER: usize = 16 * 1024 * 1024;

/// What a transport does: the trait behind every [`Transport`].
///
/// The reactor's connections implement it, and so do
/// [`StringTransport`](crate::testing::StringTransport), the in-memory
/// [`loopback`](crate::testing::loopback) pair and the TLS layer. Implement
/// it to give a protocol a transport of your own (an in-memory pipe, a
/// layer that transforms what is written); [`Transport::new`] turns it into
/// the handle protocols use. Each method is the one of [`Transport`] with
/// the same name, which documents what it must do; the `Transport` methods
/// do the argument checks (empty writes, `low <= high`) before calling
/// these.
///
/// ```
/// use std::{cell::RefCell, error::Error, io, net::SocketAddr, rc::Rc};
/// use twill::{Address, Bytes, BytesMut, Event, Transport};
/// use twill::transport::{SentWaiter, TransportImpl};
///
/// /// Keeps what is written; everything else does the least it can.
/// #[derive(Default)]
/// struct Sink(RefCell<Vec<u8>>);
///
/// impl TransportImpl for Sink {
///     fn write(&self, data: Bytes) { self.0.borrow_mut().extend_from_slice(&data) }
///     fn write_with(&self, fill: &mut dyn FnMut(&mut BytesMut) -> Option<Bytes>) -> bool {
///         let mut buf = BytesMut::new();
///         let body = fill(&mut buf);
///         self.write(buf.freeze());
///         if let Some(body) = body { self.write(body) }
///         true
///     }
///     fn lose_connection(&self, _: Option<Box<dyn Error + Send + Sync>>) {}
///     fn abort_connection(&self) {}
///     fn abort_with(&self, _: Box<dyn Error + Send + Sync>) {}
///     fn write_eof(&self) {}
///     fn set_reading(&self, _: bool) {}
///     fn peer(&self) -> Address { SocketAddr::from(([127, 0, 0, 1], 1)).into() }
///     fn host(&self) -> Address { SocketAddr::from(([127, 0, 0, 1], 2)).into() }
///     fn set_tcp_nodelay(&self, _: bool) -> io::Result<()> { Ok(()) }
///     fn tcp_nodelay(&self) -> io::Result<bool> { Ok(true) }
///     fn set_tcp_keepalive(&self, _: bool) -> io::Result<()> { Ok(()) }
///     fn tcp_keepalive(&self) -> io::Result<bool> { Ok(false) }
///     fn write_buffer_size(&self) -> usize { 0 }
///     fn bytes_written(&self) -> u64 { self.0.borrow().len() as u64 }
///     fn bytes_sent(&self) -> u64 { self.bytes_written() }
///     fn set_write_buffer_limits(&self, _: usize, _: usize) {}
///     fn set_write_buffer_max(&self, _: usize) {}
///     fn write_buffer_max(&self) -> usize { usize::MAX }
///     fn write_buffer_limits(&self) -> (usize, usize) { (usize::MAX, 0) }
///     fn is_writable(&self) -> bool { true }
///     fn when_writable(&self, f: Box<dyn FnOnce()>) { f() }
///     fn set_flow_control(&self, _: bool) {}
///     fn flow_control(&self) -> bool { false }
///     fn is_closing(&self) -> bool { false }
///     fn when_sent(&self, f: SentWaiter) { f(true) }
///     fn fire_event(&self, _: Event) {}
/// }
///
/// let sink = Rc::new(Sink::default());
/// let transport = Transport::new(sink.clone());
/// transport.write_sequence(["hello, ", "world"]);
/// assert_eq!(&sink.0.borrow()[..], b"hello, world");
/// ```
pub trait TransportImpl {
    /// Queues `data` (never empty): [`Transport::write`].
    fn write(&self, data: Bytes);
    /// As `write`, for bytes shared with other connections (a broadcast):
    /// an implementation may copy a small one rather than take a reference.
    fn write_shared(&self, data: &Bytes) {
        self.write(data.clone());
    }
    /// [`Transport::write_with_body`]: calls `fill` with the write buffer
    /// and queues the `Bytes` it returns right behind what it appended.
    /// Returns false (without calling `fill`) when writes are refused.
    fn write_with(&self, fill: &mut dyn FnMut(&mut BytesMut) -> Option<Bytes>) -> bool;
    /// [`Transport::lose_connection`], or [`Transport::fail`] with the error.
    fn lose_connection(&self, error: Option<Box<dyn Error + Send + Sync>>);
    /// [`Transport::abort_connection`].
    fn abort_connection(&self);
    /// [`Transport::write_eof`].
    fn write_eof(&self);
    /// [`Transport::resume_reading`] (`true`) or
    /// [`Transport::pause_reading`] (`false`).
    fn set_reading(&self, on: bool);
    /// [`Transport::peer`].
    fn peer(&self) -> Address;
    /// [`Transport::host`].
    fn host(&self) -> Address;
    /// [`Transport::set_tcp_nodelay`].
    fn set_tcp_nodelay(&self, on: bool) -> io::Result<()>;
    /// [`Transport::tcp_nodelay`].
    fn tcp_nodelay(&self) -> io::Result<bool>;
    /// [`Transport::set_tcp_keepalive`].
    fn set_tcp_keepalive(&self, on: bool) -> io::Result<()>;
    /// [`Transport::tcp_keepalive`].
    fn tcp_keepalive(&self) -> io::Result<bool>;
    /// [`Transport::write_buffer_size`].
    fn write_buffer_size(&self) -> usize;
    /// [`Transport::bytes_written`].
    fn bytes_written(&self) -> u64;
    /// [`Transport::bytes_sent`].
    fn bytes_sent(&self) -> u64;
    /// [`Transport::set_write_buffer_limits`], with `low <= high`.
    fn set_write_buffer_limits(&self, high: usize, low: usize);
    /// [`Transport::set_write_buffer_max`].
    fn set_write_buffer_max(&self, max: usize);
    /// [`Transport::write_buffer_max`].
    fn write_buffer_max(&self) -> usize;
    /// [`Transport::write_buffer_limits`].
    fn write_buffer_limits(&self) -> (usize, usize);
    /// [`Transport::is_writable`].
    fn is_writable(&self) -> bool;
    /// `is_closing`, `is_writable` and `write_buffer_size` in one look, as
    /// a [`BroadcastGroup`](crate::broadcast::BroadcastGroup) asks for each
    /// message.
    fn write_state(&self) -> WriteState {
        WriteState {
            closing: self.is_closing(),
            writable: self.is_writable(),
            buffered: self.write_buffer_size(),
        }
    }
    /// [`Transport::when_writable`].
    fn when_writable(&self, f: Box<dyn FnOnce()>);
    /// [`Transport::set_flow_control`].
    fn set_flow_control(&self, on: bool);
    /// [`Transport::flow_control`].
    fn flow_control(&self) -> bool;
    /// [`Transport::abort_with`].
    fn abort_with(&self, error: Box<dyn Error + Send + Sync>);
    /// [`Transport::is_closing`].
    fn is_closing(&self) -> bool;
    /// Runs `f(true)` once every byte written so far is sent, `f(false)`
    /// if the connection ends first: [`Transport::flushed`].
    fn when_sent(&self, f: SentWaiter);
    /// [`Transport::fire_event`].
    fn fire_event(&self, event: Event);
    /// Puts a layer between this connection and its protocol, for
    /// `Transport::start_tls`: `make` gets a transport that reaches this
    /// connection directly and returns the [`Interposer`] to install (or
    /// an error, returned as it is). From then on every handle to this
    /// transport reaches `upper`, for every method (`upper` passes on to
    /// the connection what it does not handle itself), and the
    /// protocol is replaced by what `wrap` makes of it once its running
    /// callback (if any) returns. The default refuses with
    /// `io::ErrorKind::Unsupported`.
    fn interpose(
        &self,
        make: Box<dyn FnOnce(Transport) -> io::Result<Interposer> + '_>,
    ) -> io::Result<()> {
        let _ = make;
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "this transport cannot take a layer under its protocol",
        ))
    }
    /// Replaces the connection's protocol: [`Transport::set_protocol`].
    /// The default refuses with `io::ErrorKind::Unsupported`.
    fn set_protocol(&self, protocol: Box<dyn crate::Protocol>) -> io::Result<()> {
        drop(protocol);
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "this transport cannot change its protocol",
        ))
    }
    /// What TLS negotiated, on a TLS transport: [`Transport::tls`].
    #[cfg(feature = "tls")]
    fn tls(&self) -> Option<crate::tls::TlsInfo> {
        None
    }
    /// [`Transport::peer_credentials`]. The default has none.
    fn peer_credentials(&self) -> Option<PeerCredentials> {
        None
    }
    /// Where [`Transport::register_producer`] keeps the producer. The
    /// default has none: the transport refuses producers.
    fn producer_slot(&self) -> Option<&crate::producers::ProducerSlot> {
        None
    }
    /// Where [`Transport::send_file`]'s copying path keeps what is written
    /// behind a file until the file is written: the
    /// [`producer_slot`](Self::producer_slot) unless overridden. A handle
    /// that reaches a connection below a layer (TLS) returns `None`, so
    /// that what the layer writes for the file is not held behind it.
    fn send_file_slot(&self) -> Option<&crate::producers::ProducerSlot> {
        self.producer_slot()
    }
    /// [`Transport::send_file`], called through `this` (the handle to
    /// this transport that it was called on). The default reads the range
    /// a 64 KiB piece at a time into the transport while it is writable,
    /// holding what is written meanwhile in the
    /// [`send_file_slot`](Self::send_file_slot) behind it; without a slot it
    /// fails with `io::ErrorKind::Unsupported`. The reactor's plain TCP
    /// and Unix connections override it with `sendfile(2)` on Linux.
    fn send_file(
        &self,
        this: &Transport,
        file: std::fs::File,
        range: std::ops::Range<u64>,
    ) -> Deferred<u64> {
        crate::producers::send_file_by_copy(this, file, range)
    }
}

/// What [`TransportImpl::interpose`] installs.
pub struct Interposer {
    /// The transport that every handle to the connection reaches from now
    /// on.
    pub upper: Rc<dyn TransportImpl>,
    /// Wraps the connection's protocol.
    pub wrap: WrapProtocol,
}

/// Wraps a connection's protocol in a layer: [`Interposer::wrap`].
pub type WrapProtocol = Box<dyn FnOnce(Box<dyn crate::Protocol>) -> Box<dyn crate::Protocol>>;

impl fmt::Debug for Interposer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Interposer").finish_non_exhaustive()
    }
}

/// Told whether the bytes written before it were sent (`true`) or the
/// connection ended first (`false`): what [`TransportImpl::when_sent`]
/// takes.
pub type SentWaiter = Box<dyn FnOnce(bool)>;

/// A transport's state as a [`BroadcastGroup`](crate::broadcast::BroadcastGroup)
/// asks for it for each message: [`TransportImpl::write_state`].
#[derive(Debug, Clone, Copy)]
pub struct WriteState {
    /// [`Transport::is_closing`].
    pub closing: bool,
    /// [`Transport::is_writable`].
    pub writable: bool,
    /// [`Transport::write_buffer_size`].
    pub buffered: usize,
}

/// Why a connection was aborted when its write buffer passed its hard cap
/// ([`Transport::set_write_buffer_max`]): the peer is not reading what the
/// protocol writes. [`connection_lost`](crate::Protocol::connection_lost)
/// receives it in [`Reason::Failed`](crate::Reason::Failed).
///
/// ```
/// use twill::testing::StringTransport;
///
/// let recorder = StringTransport::new();
/// let transport = recorder.transport();
/// transport.set_write_buffer_limits(4, 2);
/// transport.set_write_buffer_max(8);
/// recorder.set_write_buffer_size(8); // the peer has read nothing
/// transport.write("more");
/// assert!(recorder.aborted());
/// assert_eq!(
///     recorder.failure().unwrap(),
///     "write buffer over 8 bytes: peer not reading"
/// );
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteBufferFull {
    /// The cap that was passed, in bytes.
    pub limit: usize,
}

impl fmt::Display for WriteBufferFull {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "write buffer over {} bytes: peer not reading",
            self.limit
        )
    }
}

impl Error for WriteBufferFull {}

/// Why a [`Transport::flushed`] Deferred failed: the connection ended
/// (closed, aborted or lost) before the bytes written ahead of it were
/// sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotSent;

impl fmt::Display for NotSent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the connection ended before the bytes written were sent")
    }
}

impl Error for NotSent {}

/// A connection as its protocol sees it: Twisted's `ITCPTransport`,
/// asyncio's `Transport`.
///
/// Cloning gives another handle to the same connection; keep one in the
/// protocol (from [`connection_made`](crate::Protocol::connection_made)) or
/// anywhere else on the reactor thread, e.g. in a list of clients to
/// broadcast to.
///
/// Writes never block and are never lost while the connection is open: they
/// are buffered and the reactor sends them when the socket can take them,
/// coalescing everything written in one turn of the loop into as few system
/// calls as it can. When the buffer goes over the high watermark (64 KiB by
/// default) the protocol's [`pause_writing`](crate::Protocol::pause_writing)
/// is called; when it drains to the low watermark (16 KiB),
/// [`resume_writing`](crate::Protocol::resume_writing).
///
/// # Examples
///
/// ```
/// use twill::testing::StringTransport;
///
/// let recorder = StringTransport::new();
/// let transport = recorder.transport();
/// transport.write("hello, ");
/// transport.write_sequence(["wor", "ld"]);
/// transport.lose_connection();
/// assert_eq!(recorder.value(), b"hello, world");
/// assert!(recorder.disconnecting());
/// ```
#[derive(Clone)]
pub struct Transport {
    inner: Rc<dyn TransportImpl>,
}

impl Transport {
    /// The handle for a transport of your own; see [`TransportImpl`].
    pub fn new(inner: Rc<dyn TransportImpl>) -> Transport {
        Transport { inner }
    }

    /// Queues `data` to be sent. Never blocks; empty data is ignored.
    ///
    /// `Bytes` (for example a piece of what
    /// [`data_received`](crate::Protocol::data_received) got) is queued
    /// without copying. Writes made after [`lose_connection`](Self::lose_connection)
    /// are still sent; after the connection is closed they are dropped with
    /// a warning in the log.
    pub fn write(&self, data: impl Into<Bytes>) {
        let data = data.into();
        if !data.is_empty() {
            if let Some(slot) = self.holding_slot() {
                slot.hold_bytes(data, &*self.inner);
                return;
            }
            self.inner.write(data);
        }
    }

    /// The producer slot, if a file sent by copying holds back what is
    /// written now ([`send_file`](Self::send_file)).
    fn holding_slot(&self) -> Option<&crate::producers::ProducerSlot> {
        self.inner.send_file_slot().filter(|slot| slot.holding())
    }

    /// Appends bytes made in place to the write buffer, with no `Bytes` of
    /// their own: `fill` gets the buffer and appends to it, exactly as an
    /// [`Encoder`](https://docs.rs/tokio-util/latest/tokio_util/codec/trait.Encoder.html)
    /// appends to its destination. The buffer may already hold bytes
    /// written before and not sent yet; `fill` must leave them alone, and
    /// must not use this transport (the buffer is borrowed while it runs:
    /// such a call panics, which fails the connection).
    ///
    /// This is how a codec encodes each message straight into the
    /// connection's buffer. Returns what `fill` returned, or `None` (without
    /// calling it) if the connection is closed, as [`write`](Self::write)
    /// would drop the data. If `fill` panics, nothing it appended is sent.
    ///
    /// ```
    /// use bytes::BufMut;
    /// use twill::testing::StringTransport;
    ///
    /// let recorder = StringTransport::new();
    /// let transport = recorder.transport();
    /// let payload = b"ping";
    /// transport.write_with(|buf| {
    ///     buf.put_u16(payload.len() as u16);
    ///     buf.put_slice(payload);
    /// });
    /// assert_eq!(recorder.value(), b"\x00\x04ping");
    /// ```
    pub fn write_with<R>(&self, fill: impl FnOnce(&mut BytesMut) -> R) -> Option<R> {
        self.write_with_body(|buf| (fill(buf), None))
    }

    /// As [`write_with`](Self::write_with), and `fill` may also return a
    /// `Bytes` to queue right behind what it appended, uncopied: a header
    /// encoded in place followed by the body it announces, in one call
    /// (and one look at the connection's state) instead of two. If `fill`
    /// panics, neither is sent.
    ///
    /// ```
    /// use bytes::{BufMut, Bytes};
    /// use twill::testing::StringTransport;
    ///
    /// let recorder = StringTransport::new();
    /// let transport = recorder.transport();
    /// let body = Bytes::from_static(b"ping");
    /// let sent = transport.write_with_body(|buf| {
    ///     buf.put_u16(body.len() as u16);
    ///     (body.len(), Some(body.clone()))
    /// });
    /// assert_eq!(sent, Some(4));
    /// assert_eq!(recorder.value(), b"\x00\x04ping");
    /// ```
    pub fn write_with_body<R>(
        &self,
        fill: impl FnOnce(&mut BytesMut) -> (R, Option<Bytes>),
    ) -> Option<R> {
        if let Some(slot) = self.holding_slot() {
            if self.inner.is_closing() {
                return None;
            }
            let mut buf = BytesMut::new();
            let (value, body) = fill(&mut buf);
            for piece in [Some(buf.freeze()), body].into_iter().flatten() {
                if !piece.is_empty() {
                    slot.hold_bytes(piece, &*self.inner);
                }
            }
            return Some(value);
        }
        let mut fill = Some(fill);
        let mut result = None;
        self.inner.write_with(&mut |buf| {
            let (value, body) = fill.take()?(buf);
            result = Some(value);
            body
        });
        result
    }

    /// Queues `data`, shared with other connections: a small one is copied
    /// behind what is queued with no reference count taken.
    pub(crate) fn write_shared(&self, data: &Bytes) {
        if !data.is_empty() {
            if let Some(slot) = self.holding_slot() {
                slot.hold_bytes(data.clone(), &*self.inner);
                return;
            }
            self.inner.write_shared(data);
        }
    }

    pub(crate) fn write_state(&self) -> WriteState {
        let mut state = self.inner.write_state();
        if let Some(slot) = self.holding_slot() {
            state.writable = false;
            state.buffered += slot.held_bytes();
        }
        state
    }

    /// Queues several pieces, sent together with one vectored write where
    /// the socket takes them.
    pub fn write_sequence<I>(&self, pieces: I)
    where
        I: IntoIterator,
        I::Item: Into<Bytes>,
    {
        for piece in pieces {
            self.write(piece);
        }
    }

    /// Closes the connection once everything buffered is sent; stops
    /// reading now. [`connection_lost`](crate::Protocol::connection_lost)
    /// follows, exactly once, with [`Reason::Done`](crate::Reason::Done).
    /// Calling it again does nothing.
    ///
    /// While a pull [`Producer`](crate::producers::Producer) is registered
    /// the close waits for
    /// [`unregister_producer`](Self::unregister_producer).
    pub fn lose_connection(&self) {
        if let Some(slot) = self.inner.producer_slot() {
            if slot.defer_close() {
                return;
            }
        }
        if let Some(slot) = self.holding_slot() {
            slot.hold_close(None);
            return;
        }
        self.inner.lose_connection(None);
    }

    /// Closes the connection because the protocol failed with `error`: as
    /// [`lose_connection`](Self::lose_connection), but `connection_lost`
    /// receives [`Reason::Failed`](crate::Reason::Failed) with the error.
    /// This is how a protocol (or a decoder wrapped around it) reports bad
    /// input from the peer.
    pub fn fail(&self, error: impl Into<Box<dyn Error + Send + Sync>>) {
        match self.holding_slot() {
            Some(slot) => slot.hold_close(Some(error.into())),
            None => self.inner.lose_connection(Some(error.into())),
        }
    }

    /// Closes the connection at once, discarding what is buffered; the peer
    /// sees a reset. `connection_lost` follows with
    /// [`Reason::Aborted`](crate::Reason::Aborted) after the current callback
    /// returns.
    pub fn abort_connection(&self) {
        self.inner.abort_connection();
    }

    /// Closes the connection at once, as
    /// [`abort_connection`](Self::abort_connection), because of `error`:
    /// `connection_lost` receives [`Reason::Failed`](crate::Reason::Failed)
    /// with it. For a peer that must go now, without waiting for what is
    /// buffered to be sent: one that stopped reading, say.
    pub fn abort_with(&self, error: impl Into<Box<dyn Error + Send + Sync>>) {
        self.inner.abort_with(error.into());
    }

    /// Half-closes: once everything buffered is sent, shuts down the writing
    /// side (the peer reads EOF) and keeps reading. Twisted's
    /// `loseWriteConnection`, asyncio's `write_eof`.
    pub fn write_eof(&self) {
        match self.holding_slot() {
            Some(slot) => slot.hold_write_eof(),
            None => self.inner.write_eof(),
        }
    }

    /// Stops reading from the socket, so the peer's writes back up into the
    /// kernel's buffers and then the peer itself. Twisted's
    /// `pauseProducing`.
    pub fn pause_reading(&self) {
        self.inner.set_reading(false);
    }

    /// Starts reading again after [`pause_reading`](Self::pause_reading).
    pub fn resume_reading(&self) {
        self.inner.set_reading(true);
    }

    /// The remote address.
    pub fn peer(&self) -> Address {
        self.inner.peer()
    }

    /// The local address.
    pub fn host(&self) -> Address {
        self.inner.host()
    }

    /// On a Unix socket, the process at the other end: its pid, uid and
    /// gid as the kernel recorded them when it connected (`SO_PEERCRED`).
    /// `None` over TCP.
    pub fn peer_credentials(&self) -> Option<PeerCredentials> {
        self.inner.peer_credentials()
    }

    /// Sets TCP_NODELAY (on by default: small writes go out at once).
    ///
    /// # Errors
    ///
    /// The socket option could not be set, or the connection is closed.
    pub fn set_tcp_nodelay(&self, on: bool) -> io::Result<()> {
        self.inner.set_tcp_nodelay(on)
    }

    /// Whether TCP_NODELAY is set.
    ///
    /// # Errors
    ///
    /// The socket option could not be read, or the connection is closed.
    pub fn tcp_nodelay(&self) -> io::Result<bool> {
        self.inner.tcp_nodelay()
    }

    /// Sets SO_KEEPALIVE (off by default).
    ///
    /// # Errors
    ///
    /// The socket option could not be set, or the connection is closed.
    pub fn set_tcp_keepalive(&self, on: bool) -> io::Result<()> {
        self.inner.set_tcp_keepalive(on)
    }

    /// Whether SO_KEEPALIVE is set.
    ///
    /// # Errors
    ///
    /// The socket option could not be read, or the connection is closed.
    pub fn tcp_keepalive(&self) -> io::Result<bool> {
        self.inner.tcp_keepalive()
    }

    /// Bytes written but not yet handed to the kernel.
    pub fn write_buffer_size(&self) -> usize {
        let held = self.holding_slot().map_or(0, |slot| slot.held_bytes());
        self.inner.write_buffer_size() + held
    }

    /// Bytes accepted by [`write`](Self::write) (and `write_sequence`) since
    /// the connection was made, from anywhere. With
    /// [`bytes_sent`](Self::bytes_sent), this lets a wrapper around a
    /// protocol see its output exactly (idle detection, write timeouts,
    /// throttling) without intercepting the writes.
    pub fn bytes_written(&self) -> u64 {
        self.inner.bytes_written()
    }

    /// Bytes handed to the kernel since the connection was made.
    /// `bytes_written() - bytes_sent()` is what is buffered (or was
    /// discarded by an abort).
    pub fn bytes_sent(&self) -> u64 {
        self.inner.bytes_sent()
    }

    /// Sets the write buffer's watermarks (asyncio's
    /// `set_write_buffer_limits`); `low` is capped at `high`, and the hard
    /// cap ([`set_write_buffer_max`](Self::set_write_buffer_max)) is raised
    /// to `high` if it was below.
    pub fn set_write_buffer_limits(&self, high: usize, low: usize) {
        self.inner.set_write_buffer_limits(high, low.min(high));
    }

    /// The write buffer's watermarks, `(high, low)`.
    pub fn write_buffer_limits(&self) -> (usize, usize) {
        self.inner.write_buffer_limits()
    }

    /// Sets the write buffer's hard cap
    /// ([`DEFAULT_MAX_WRITE_BUFFER`] unless set): a write that takes the
    /// buffer past `max` bytes aborts the connection (the peer sees a
    /// reset), logged once, and
    /// [`connection_lost`](crate::Protocol::connection_lost) receives
    /// [`Reason::Failed`](crate::Reason::Failed) with [`WriteBufferFull`].
    /// The write that passed the cap and every later one are dropped with
    /// the buffer. `max` is raised to the high watermark if below it.
    /// `usize::MAX` means no cap.
    pub fn set_write_buffer_max(&self, max: usize) {
        self.inner.set_write_buffer_max(max);
    }

    /// The write buffer's hard cap.
    pub fn write_buffer_max(&self) -> usize {
        self.inner.write_buffer_max()
    }

    /// Whether writes are welcome: false from the moment the buffer went
    /// over the high watermark ([`pause_writing`](crate::Protocol::pause_writing))
    /// until it drains to the low one, and once the connection is closing.
    /// Netty's `Channel.isWritable`.
    pub fn is_writable(&self) -> bool {
        self.inner.is_writable() && self.holding_slot().is_none()
    }

    /// Runs `f` once the transport is [writable](Self::is_writable) again,
    /// or the connection is over: right after the protocol's
    /// [`resume_writing`](crate::Protocol::resume_writing), or after its
    /// [`connection_lost`](crate::Protocol::connection_lost). If it is
    /// writable now (or already over), `f` runs before this returns.
    /// asyncio's `await writer.drain()`, for code that is not the
    /// connection's protocol: a producer elsewhere, a
    /// [`BroadcastGroup`](crate::broadcast::BroadcastGroup).
    ///
    /// A panic in `f` is logged; the connection is not affected.
    ///
    /// ```
    /// use std::{cell::Cell, rc::Rc};
    /// use twill::testing::StringTransport;
    ///
    /// let recorder = StringTransport::new();
    /// let transport = recorder.transport();
    /// let ran = Rc::new(Cell::new(false));
    /// let flag = ran.clone();
    /// transport.when_writable(move || flag.set(true));
    /// assert!(ran.get(), "writable now: runs at once");
    /// ```
    pub fn when_writable(&self, f: impl FnOnce() + 'static) {
        match self.holding_slot() {
            Some(slot) => slot.hold_writable_waiter(Box::new(f)),
            None => self.inner.when_writable(Box::new(f)),
        }
    }

    /// Turns flow control on or off (off by default for a plain
    /// [`Protocol`](crate::Protocol); `twill-protocols`' codec layer turns
    /// it on). While on, the connection stops reading whenever it is not
    /// [writable](Self::is_writable), and reads again once the buffer
    /// drains: a protocol that answers what it reads then holds at most
    /// about the high watermark plus one read's replies for a peer that
    /// does not read its replies, and that peer's further requests wait in
    /// the kernel's buffers and then in the peer itself. This is Twisted's
    /// `transport.registerProducer(transport, True)`, and what asyncio's
    /// `await writer.drain()` does between reads.
    ///
    /// It is independent of [`pause_reading`](Self::pause_reading): the
    /// connection reads only when neither stops it.
    ///
    /// ```
    /// use twill::testing::StringTransport;
    ///
    /// let recorder = StringTransport::new();
    /// let transport = recorder.transport();
    /// assert!(!transport.flow_control());
    /// transport.set_flow_control(true);
    /// assert!(transport.flow_control());
    /// ```
    pub fn set_flow_control(&self, on: bool) {
        self.inner.set_flow_control(on);
    }

    /// Whether [flow control](Self::set_flow_control) is on.
    pub fn flow_control(&self) -> bool {
        self.inner.flow_control()
    }

    /// Whether the connection is closing or closed.
    pub fn is_closing(&self) -> bool {
        self.inner.is_closing()
    }

    /// A Deferred that fires once every byte written so far has been
    /// handed to the kernel, and fails with [`NotSent`] if the connection
    /// ends first: Netty's write promise, asyncio's `drain` for one point
    /// in the stream. Bytes written after this call do not delay it.
    ///
    /// The reactor fires it right after the flush that sends the last of
    /// those bytes, in the order the calls were made.
    /// [`StringTransport`](crate::testing::StringTransport) sends at once,
    /// unless the test holds bytes back with its `set_write_buffer_size`.
    ///
    /// ```
    /// use twill::testing::{assert_no_result, success_result_of, StringTransport};
    ///
    /// let recorder = StringTransport::new();
    /// let transport = recorder.transport();
    /// recorder.set_write_buffer_size(100); // the peer has not read yet
    /// transport.write("reply");
    /// let sent = transport.flushed();
    /// assert_no_result(&sent);
    /// recorder.set_write_buffer_size(0); // it read everything
    /// success_result_of(&sent);
    /// ```
    pub fn flushed(&self) -> Deferred<()> {
        let d = Deferred::new();
        let resolver = d.resolver();
        let waiter: SentWaiter = Box::new(move |sent| {
            if sent {
                resolver.callback(());
            } else {
                resolver.errback(Failure::new(NotSent));
            }
        });
        match self.holding_slot() {
            Some(slot) => slot.hold_sent_waiter(waiter),
            None => self.inner.when_sent(waiter),
        }
        d
    }

    /// Sends the bytes of `file` in `range` to the peer, after everything
    /// written before this call and before anything written after it
    /// (writes, `write_with`, other files, [`write_eof`](Self::write_eof),
    /// [`lose_connection`](Self::lose_connection)): Netty's
    /// `FileRegion`, Twisted's `FileSender` with the reactor's help.
    ///
    /// On Linux, a plain TCP or Unix connection hands the file to the
    /// kernel with `sendfile(2)`, from the file's descriptor straight to
    /// the socket: no byte passes through this process. A socket that
    /// cannot take more makes it wait for writability, as buffered writes
    /// do. Everywhere else (TLS, which must encrypt the bytes; the test
    /// transports; other systems) the range is read a 64 KiB piece at a
    /// time and written while the transport is writable, so memory stays
    /// at about the high watermark plus one piece, whatever the file's
    /// size; what is written meanwhile waits behind the file.
    ///
    /// The returned Deferred fires with the number of bytes sent
    /// (`range.end - range.start`) once the last of them is handed to the
    /// kernel (with `sendfile`) or written to the transport (copying;
    /// chain [`flushed`](Self::flushed) to know they left). An empty (or
    /// reversed) range fires at once with 0. It fails with:
    ///
    /// - an [`io::Error`] of kind [`UnexpectedEof`](io::ErrorKind::UnexpectedEof)
    ///   if the file ends before `range.end` (it shrank), or the error of
    ///   a failed read of the file: the connection is then **aborted**
    ///   (the peer sees a reset after part of the range), because the
    ///   peer's framing is broken, and
    ///   [`connection_lost`](crate::Protocol::connection_lost) receives
    ///   [`Reason::Failed`](crate::Reason::Failed) with that error;
    /// - [`ConsumerGone`](crate::producers::ConsumerGone) if the
    ///   connection ends (is lost, aborted, or reset by the peer) before
    ///   the range is sent, or was closing already.
    ///
    /// A pending file holds no memory and does not count toward
    /// [`write_buffer_size`](Self::write_buffer_size) or its hard cap
    /// ([`set_write_buffer_max`](Self::set_write_buffer_max)), but a
    /// transport with a file in flight is not
    /// [writable](Self::is_writable): with `sendfile` the protocol gets
    /// [`pause_writing`](crate::Protocol::pause_writing) as if the buffer
    /// were over its high watermark, and `resume_writing` (and
    /// [`when_writable`](Self::when_writable) callers) once the file is
    /// sent and the buffer is at its low watermark. Copying, the file's
    /// pieces pass through the buffer and pause and resume the protocol as
    /// any write does; what the protocol writes before the file is done
    /// counts toward `write_buffer_size` and the hard cap, and
    /// `when_writable` callers wait for the file. [`bytes_written`](Self::bytes_written)
    /// and [`bytes_sent`](Self::bytes_sent) count the file's bytes (with
    /// `sendfile`, `bytes_written` counts them all from this call).
    ///
    /// [`lose_connection`](Self::lose_connection) and
    /// [`write_eof`](Self::write_eof) wait for the file, as for buffered
    /// bytes; [`abort_connection`](Self::abort_connection) drops it, and
    /// the Deferred fails.
    ///
    /// ```
    /// use std::io::Write;
    /// use twill::testing::{success_result_of, StringTransport};
    ///
    /// let path = std::env::temp_dir().join(format!("send_file_doc_{}", std::process::id()));
    /// std::fs::File::create(&path)?.write_all(b"0123456789")?;
    /// let file = std::fs::File::open(&path)?;
    /// std::fs::remove_file(&path)?; // the open file stays readable
    /// let recorder = StringTransport::new();
    /// let transport = recorder.transport();
    /// transport.write("<");
    /// let sent = transport.send_file(file, 2..6);
    /// transport.write(">");
    /// assert_eq!(success_result_of(&sent), 4);
    /// assert_eq!(recorder.value(), b"<2345>");
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn send_file(&self, file: std::fs::File, range: std::ops::Range<u64>) -> Deferred<u64> {
        if range.start >= range.end {
            return crate::defer::succeed(0);
        }
        self.inner.send_file(self, file, range)
    }

    /// Fires `event` at this connection's protocol: its
    /// [`event_received`](crate::Protocol::event_received) gets it. It is
    /// delivered once the code that fired it has returned: right after the
    /// protocol's current callback if it is running, else by the reactor
    /// before it next waits for I/O (a timer, a future or another
    /// connection fired it). Events arrive in the order they were fired,
    /// and a protocol is never re-entered, even by a wrapper's timer that
    /// is inside it when it fires one. An event for a closed connection is
    /// dropped, with a debug log.
    ///
    /// [`StringTransport`](crate::testing::StringTransport) has no
    /// protocol: it keeps the events for the test to look at.
    ///
    /// ```
    /// use twill::{testing::StringTransport, Event};
    ///
    /// struct Reload;
    /// let recorder = StringTransport::new();
    /// recorder.transport().fire_event(Event::new(Reload));
    /// assert!(recorder.take_events()[0].is::<Reload>());
    /// ```
    pub fn fire_event(&self, event: Event) {
        self.inner.fire_event(event);
    }

    /// Starts TLS on this connection (STARTTLS): Twisted's
    /// `transport.startTLS`, asyncio's `loop.start_tls`. What was written
    /// before this call goes out in plaintext, then the handshake, then
    /// everything written after it, encrypted; from the next read on, the
    /// protocol receives decrypted data. Every handle to this transport
    /// (the protocol's, and any clone elsewhere) now writes through TLS,
    /// and [`tls`](Self::tls) tells what was negotiated once the
    /// [`HandshakeCompleted`](crate::tls::HandshakeCompleted) event
    /// arrives. The protocol stays the same; from the end of the running
    /// callback it runs inside a [`TlsProtocol`](crate::tls::TlsProtocol).
    ///
    /// A server passes its [`TlsAcceptor`](crate::tls::TlsAcceptor) (or
    /// rustls's `ServerConfig`); a client
    /// [`StartTls::client`](crate::tls::StartTls::client).
    ///
    /// Call it where the protocol's own exchange says TLS starts (a server
    /// once it has answered the STARTTLS command, a client once it has
    /// read that answer), and drop whatever plaintext came after the
    /// command in the same read: a peer must wait for the answer before
    /// it starts TLS, and bytes it sent before that are not protected
    /// (accepting them allowed command injection in mail servers,
    /// CVE-2011-0411). A ClientHello sent without waiting reaches the
    /// protocol as plaintext, and the handshake times out.
    ///
    /// # Errors
    ///
    /// `Unsupported` if the transport cannot take a layer (a
    /// [`StringTransport`](crate::testing::StringTransport)),
    /// `AlreadyExists` if it runs TLS already, `NotConnected` if it is
    /// closing.
    ///
    /// # Examples
    ///
    /// An SMTP-like upgrade, both sides, connected in memory:
    ///
    /// ```
    /// use std::{cell::RefCell, rc::Rc};
    /// use twill::tls::{config, StartTls, TlsAcceptor, TlsConnector};
    /// use twill::{testing::loopback, Bytes, Protocol, Transport};
    /// # let made = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    /// # let certs = config::certs_from_pem(made.cert.pem().as_bytes())?;
    /// # let key = config::key_from_pem(made.signing_key.serialize_pem().as_bytes())?;
    /// # let acceptor = TlsAcceptor::new(config::server_config(certs.clone(), key)?);
    /// # let connector = TlsConnector::new(config::client_config_trusting(certs)?);
    ///
    /// /// Answers STARTTLS, then echoes (encrypted).
    /// struct Server {
    ///     transport: Option<Transport>,
    ///     tls: TlsAcceptor,
    /// }
    ///
    /// impl Protocol for Server {
    ///     fn connection_made(&mut self, transport: &Transport) {
    ///         self.transport = Some(transport.clone());
    ///     }
    ///     fn data_received(&mut self, data: Bytes) {
    ///         let transport = self.transport.as_ref().unwrap();
    ///         if &data[..] == b"STARTTLS\r\n" {
    ///             transport.write("220 go ahead\r\n"); // in plaintext
    ///             if let Err(err) = transport.start_tls(self.tls.clone()) {
    ///                 transport.fail(err);
    ///             }
    ///         } else {
    ///             transport.write(data); // encrypted
    ///         }
    ///     }
    /// }
    ///
    /// /// Asks for TLS, upgrades on the answer, then says hello.
    /// struct Client {
    ///     transport: Option<Transport>,
    ///     tls: Option<TlsConnector>,
    ///     got: Rc<RefCell<Vec<u8>>>,
    /// }
    ///
    /// impl Protocol for Client {
    ///     fn connection_made(&mut self, transport: &Transport) {
    ///         self.transport = Some(transport.clone());
    ///         transport.write("STARTTLS\r\n");
    ///     }
    ///     fn data_received(&mut self, data: Bytes) {
    ///         let transport = self.transport.as_ref().unwrap();
    ///         match self.tls.take() {
    ///             Some(tls) => {
    ///                 assert_eq!(&data[..], b"220 go ahead\r\n");
    ///                 transport.start_tls(StartTls::client(tls, "localhost").unwrap()).unwrap();
    ///                 transport.write("hello"); // encrypted
    ///             }
    ///             None => self.got.borrow_mut().extend_from_slice(&data),
    ///         }
    ///     }
    /// }
    ///
    /// let got = Rc::new(RefCell::new(Vec::new()));
    /// let pair = loopback(
    ///     Server { transport: None, tls: acceptor },
    ///     Client { transport: None, tls: Some(connector), got: got.clone() },
    /// );
    /// pair.flush();
    /// assert_eq!(&got.borrow()[..], b"hello");
    /// assert!(pair.client().tls().unwrap().handshake_complete);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    #[cfg(feature = "tls")]
    pub fn start_tls(&self, side: impl Into<crate::tls::StartTls>) -> io::Result<()> {
        crate::tls::start_tls(self, side.into())
    }

    /// What TLS negotiated on this connection, if it runs TLS: the
    /// protocol version, cipher suite, ALPN protocol, server name and the
    /// peer's certificates. asyncio's `get_extra_info("ssl_object")`.
    #[cfg(feature = "tls")]
    pub fn tls(&self) -> Option<crate::tls::TlsInfo> {
        self.inner.tls()
    }

    #[cfg(feature = "tls")]
    pub(crate) fn when_sent(&self, f: SentWaiter) {
        self.inner.when_sent(f);
    }

    #[cfg(feature = "tls")]
    pub(crate) fn interpose(
        &self,
        make: Box<dyn FnOnce(Transport) -> io::Result<Interposer> + '_>,
    ) -> io::Result<()> {
        self.inner.interpose(make)
    }

    /// Gives the connection to another protocol: asyncio's
    /// `transport.set_protocol`. From the end of the running protocol
    /// callback (at once, if none is running), every callback goes to
    /// `protocol`, and the old protocol is dropped with no more calls (no
    /// `connection_lost`). `protocol` gets no `connection_made` either:
    /// give it this transport when you make it. Bytes the old protocol read
    /// and did not use are its to pass on.
    /// [`stream::hand_over`](crate::stream::hand_over) is built on it.
    ///
    /// On a TLS connection the protocol inside the TLS layer is the one
    /// replaced: the new one gets the decrypted bytes and writes through
    /// TLS (called from outside any callback, it takes over before the
    /// reactor next waits).
    ///
    /// # Errors
    ///
    /// `NotConnected` if the connection is closing; `Unsupported` if the
    /// transport has no protocol to replace (a
    /// [`StringTransport`](crate::testing::StringTransport)).
    ///
    /// ```
    /// use std::{cell::RefCell, rc::Rc};
    /// use twill::{testing::loopback, Bytes, Protocol, Transport};
    ///
    /// /// Records what it gets.
    /// struct Tape(Rc<RefCell<Vec<u8>>>);
    /// impl Protocol for Tape {
    ///     fn data_received(&mut self, data: Bytes) {
    ///         self.0.borrow_mut().extend_from_slice(&data);
    ///     }
    /// }
    ///
    /// /// Says hello, then gives the connection to a `Tape`.
    /// struct Hello(Rc<RefCell<Vec<u8>>>);
    /// impl Protocol for Hello {
    ///     fn connection_made(&mut self, transport: &Transport) {
    ///         transport.write("hello");
    ///         transport.set_protocol(Box::new(Tape(self.0.clone()))).unwrap();
    ///     }
    ///     fn data_received(&mut self, _: Bytes) {
    ///         unreachable!("replaced before any data came");
    ///     }
    /// }
    ///
    /// /// Answers each read.
    /// struct Answer;
    /// impl Protocol for Answer {
    ///     fn connection_made(&mut self, transport: &Transport) {
    ///         transport.write("hi");
    ///     }
    ///     fn data_received(&mut self, _: Bytes) {}
    /// }
    ///
    /// let taped = Rc::new(RefCell::new(Vec::new()));
    /// let pair = loopback(Answer, Hello(taped.clone()));
    /// pair.flush();
    /// assert_eq!(&taped.borrow()[..], b"hi");
    /// ```
    pub fn set_protocol(&self, protocol: Box<dyn crate::Protocol>) -> io::Result<()> {
        self.inner.set_protocol(protocol)
    }

    pub(crate) fn inner(&self) -> &Rc<dyn TransportImpl> {
        &self.inner
    }

    /// Whether two handles are for the same connection.
    pub fn same_connection(&self, other: &Transport) -> bool {
        std::ptr::addr_eq(Rc::as_ptr(&self.inner), Rc::as_ptr(&other.inner))
    }
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transport")
            .field("peer", &self.peer())
            .field("host", &self.host())
            .field("closing", &self.is_closing())
            .finish()
    }
}
