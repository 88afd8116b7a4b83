//! Producers and consumers: Twisted's `registerProducer`, and
//! [`FileSender`], which streams a file to a connection in bounded memory.
//!
//! A [`Producer`] registered on a [`Transport`] with
//! [`Transport::register_producer`] is driven by the transport's write
//! buffer:
//!
//! - a *push* (streaming) producer writes on its own; the transport calls
//!   its [`pause_producing`](Producer::pause_producing) when the buffer
//!   goes over the high watermark and
//!   [`resume_producing`](Producer::resume_producing) once it drains to
//!   the low one;
//! - a *pull* producer writes one piece each time it is asked: once at
//!   registration, then again and again while the transport is writable,
//!   and, once the buffer has gone over the high watermark, again when it
//!   drains to the low one.
//!
//! Either receives [`stop_producing`](Producer::stop_producing) when the
//! connection ends while it is registered.
//!
//! On a TLS connection the watermarks are those of the connection below
//! the TLS layer, which holds the ciphertext. What a push producer writes
//! before the handshake completes waits in the TLS layer and does not
//! pause it; a pull producer waits for that buffer to drain as for any
//! other.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::error::Error;
use std::fmt;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::ops::Range;
use std::rc::{Rc, Weak};

use bytes::{Bytes, BytesMut};

use crate::defer::{Deferred, Failure, Resolver};
use crate::transport::{SentWaiter, Transport, TransportImpl, WriteBufferFull};

/// Something that writes to a [`Transport`] under its control: Twisted's
/// `IPushProducer` / `IPullProducer`. See the [module](self) for how each
/// kind is driven.
///
/// The methods take `&self` because the transport calls them while the
/// producer may be anywhere in its own code (a push producer's timer, a
/// pull producer's `resume_producing` that unregisters itself): keep the
/// state in `Cell`s or a `RefCell`.
pub trait Producer {
    /// A push producer: stop writing until
    /// [`resume_producing`](Self::resume_producing). Never called on a
    /// pull producer.
    fn pause_producing(&self) {}
    /// A push producer: write again. A pull producer: write one piece now
    /// (or [`unregister`](Transport::unregister_producer) when there is
    /// nothing left). A pull producer that writes nothing and stays
    /// registered is not asked again, as in Twisted: the transport asks
    /// when what was written drains.
    fn resume_producing(&self);
    /// The connection ended: stop for good. The producer is already
    /// unregistered when this is called.
    fn stop_producing(&self);
}

/// Why [`Transport::register_producer`] refused a producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegisterError {
    /// A producer is registered already and was not unregistered
    /// (Twisted's `RuntimeError`).
    AlreadyRegistered,
    /// This transport does not drive producers (its
    /// [`TransportImpl::producer_slot`] is `None`).
    Unsupported,
}

impl fmt::Display for RegisterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegisterError::AlreadyRegistered => f.write_str(
                "cannot register a producer: the one registered before was never unregistered",
            ),
            RegisterError::Unsupported => f.write_str("this transport does not drive producers"),
        }
    }
}

impl Error for RegisterError {}

/// Where a transport keeps its registered [`Producer`]: what
/// [`TransportImpl::producer_slot`] returns. A transport of your own that
/// keeps one calls [`writing_paused`](Self::writing_paused) when its write
/// buffer goes over the high watermark and
/// [`connection_lost`](Self::connection_lost) when the connection ends;
/// resuming goes through its [`when_writable`](Transport::when_writable).
///
/// It also keeps what [`Transport::send_file`] copies (where it does not
/// use `sendfile(2)`) and what is written behind it, until the file is
/// written ([`TransportImpl::send_file_slot`]); `connection_lost` fails
/// those files with [`ConsumerGone`].
#[derive(Default)]
pub struct ProducerSlot {
    registered: RefCell<Option<Registration>>,
    /// Tells a registration from the one before it, so that a callback
    /// left waiting by an unregistered producer does nothing.
    next_id: Cell<u64>,
    /// [`Transport::send_file`] by copying: the files being read into the
    /// transport, and what was written after them, in order.
    held: RefCell<VecDeque<Held>>,
    /// The bytes among `held`.
    held_bytes: Cell<usize>,
    /// `pump` is on the stack.
    pumping: Cell<bool>,
}

/// What waits behind a file sent by copying.
enum Held {
    File(CopiedFile),
    Bytes(Bytes),
    WriteEof,
    Close(Option<Box<dyn Error + Send + Sync>>),
    Sent(SentWaiter),
    Writable(Box<dyn FnOnce()>),
}

/// A file's range being read into a transport a chunk at a time.
struct CopiedFile {
    file: File,
    left: u64,
    sent: u64,
    resolver: Resolver<u64>,
}

struct Registration {
    id: u64,
    producer: Rc<dyn Producer>,
    streaming: bool,
    /// A push producer that the transport paused.
    paused: bool,
    /// A pull producer's `resume_producing` is running: the driver loop
    /// is on the stack and must not be entered again.
    driving: bool,
    /// `lose_connection` was called while a pull producer was registered:
    /// the close waits for `unregister_producer`.
    close_pending: bool,
    /// Weak: the transport owns the slot.
    transport: Weak<dyn TransportImpl>,
}

impl fmt::Debug for ProducerSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.registered.borrow();
        f.debug_struct("ProducerSlot")
            .field("registered", &st.is_some())
            .field("streaming", &st.as_ref().map(|r| r.streaming))
            .finish()
    }
}

impl ProducerSlot {
    /// The transport's write buffer went over its high watermark: a
    /// registered push producer is paused, and resumed once the transport
    /// is writable again.
    pub fn writing_paused(&self) {
        let (producer, transport, id) = {
            let mut st = self.registered.borrow_mut();
            match st.as_mut() {
                Some(reg) if reg.streaming && !reg.paused => {
                    reg.paused = true;
                    (reg.producer.clone(), reg.transport.clone(), reg.id)
                }
                _ => return,
            }
        };
        producer.pause_producing();
        if let Some(inner) = transport.upgrade() {
            let weak = Rc::downgrade(&inner);
            Transport::new(inner).when_writable(move || resume_push(&weak, id));
        }
    }

    /// The connection ended: a registered producer is forgotten and told
    /// to [stop](Producer::stop_producing), and the files
    /// [`Transport::send_file`] was copying fail with [`ConsumerGone`].
    pub fn connection_lost(&self) {
        let reg = self.registered.borrow_mut().take();
        if let Some(reg) = reg {
            reg.producer.stop_producing();
        }
        let held = std::mem::take(&mut *self.held.borrow_mut());
        self.held_bytes.set(0);
        for item in held {
            match item {
                Held::File(copied) => copied.resolver.errback(Failure::new(ConsumerGone)),
                Held::Sent(waiter) => waiter(false),
                Held::Writable(waiter) => waiter(),
                Held::Bytes(_) | Held::WriteEof | Held::Close(_) => {}
            }
        }
    }

    /// Drops the producer without a call: the connection is discarded
    /// with no callbacks (the reactor is shutting down).
    pub(crate) fn forget(&self) {
        let reg = self.registered.borrow_mut().take();
        drop(reg);
        let held = std::mem::take(&mut *self.held.borrow_mut());
        drop(held);
    }

    /// Whether a file is being copied into the transport: what is written
    /// now waits behind it.
    pub(crate) fn holding(&self) -> bool {
        !self.held.borrow().is_empty()
    }

    /// The bytes written behind a file being copied.
    pub(crate) fn held_bytes(&self) -> usize {
        self.held_bytes.get()
    }

    /// Keeps `data` until the files ahead of it are written; aborts the
    /// connection if the held bytes and the write buffer together pass
    /// the hard cap, as a write would.
    pub(crate) fn hold_bytes(&self, data: Bytes, inner: &dyn TransportImpl) {
        let held = self.held_bytes.get() + data.len();
        let limit = inner.write_buffer_max();
        if held.saturating_add(inner.write_buffer_size()) > limit {
            log::warn!(
                "aborting the connection with {}: {}",
                inner.peer(),
                WriteBufferFull { limit }
            );
            inner.abort_with(Box::new(WriteBufferFull { limit }));
            return;
        }
        self.held_bytes.set(held);
        self.held.borrow_mut().push_back(Held::Bytes(data));
    }

    /// Keeps a half-close until the files ahead of it are written.
    pub(crate) fn hold_write_eof(&self) {
        self.held.borrow_mut().push_back(Held::WriteEof);
    }

    /// Keeps a close until the files ahead of it are written.
    pub(crate) fn hold_close(&self, error: Option<Box<dyn Error + Send + Sync>>) {
        self.held.borrow_mut().push_back(Held::Close(error));
    }

    /// Keeps a `flushed` waiter until the files ahead of it are written.
    pub(crate) fn hold_sent_waiter(&self, waiter: SentWaiter) {
        self.held.borrow_mut().push_back(Held::Sent(waiter));
    }

    /// Keeps a `when_writable` waiter until the files ahead of it are
    /// written.
    pub(crate) fn hold_writable_waiter(&self, waiter: Box<dyn FnOnce()>) {
        self.held.borrow_mut().push_back(Held::Writable(waiter));
    }

    /// Whether `lose_connection` must wait for the producer: a pull
    /// producer is registered. Marks the close as pending if so.
    pub(crate) fn defer_close(&self) -> bool {
        match self.registered.borrow_mut().as_mut() {
            Some(reg) if !reg.streaming => {
                reg.close_pending = true;
                true
            }
            _ => false,
        }
    }
}

fn resume_push(transport: &Weak<dyn TransportImpl>, id: u64) {
    let Some(inner) = transport.upgrade() else {
        return;
    };
    let Some(slot) = inner.producer_slot() else {
        return;
    };
    let producer = {
        let mut st = slot.registered.borrow_mut();
        match st.as_mut() {
            Some(reg) if reg.id == id && reg.paused => {
                reg.paused = false;
                reg.producer.clone()
            }
            _ => return,
        }
    };
    if !inner.is_closing() {
        producer.resume_producing();
    }
}

/// Asks a pull producer for pieces while the transport is writable, then
/// waits for it to be writable again.
fn drive_pull(transport: &Weak<dyn TransportImpl>, id: u64) {
    loop {
        let Some(inner) = transport.upgrade() else {
            return;
        };
        let Some(slot) = inner.producer_slot() else {
            return;
        };
        let producer = {
            let mut st = slot.registered.borrow_mut();
            match st.as_mut() {
                Some(reg) if reg.id == id && !reg.driving => {
                    reg.driving = true;
                    reg.producer.clone()
                }
                _ => return,
            }
        };
        let written = inner.bytes_written();
        producer.resume_producing();
        {
            let mut st = slot.registered.borrow_mut();
            match st.as_mut() {
                Some(reg) if reg.id == id => reg.driving = false,
                // Unregistered (or replaced) from inside.
                _ => return,
            }
        }
        if inner.bytes_written() == written {
            return;
        }
        if !inner.is_writable() {
            if inner.is_closing() {
                // Failed or aborted: `connection_lost` stops it.
                return;
            }
            let weak = transport.clone();
            inner.when_writable(Box::new(move || drive_pull(&weak, id)));
            return;
        }
    }
}

impl Transport {
    /// Registers `producer` to write to this connection under its control:
    /// Twisted's `registerProducer`. `streaming` says it is a push
    /// producer (paused and resumed by the write buffer's watermarks);
    /// otherwise it is a pull producer, asked for its first piece before
    /// this returns. See the [producers module](crate::producers).
    ///
    /// On a connection that is closing or closed the producer is told to
    /// [stop](Producer::stop_producing) at once, and `Ok` is returned.
    ///
    /// While a pull producer is registered,
    /// [`lose_connection`](Self::lose_connection) waits for
    /// [`unregister_producer`](Self::unregister_producer), which then
    /// closes the connection once the buffer drains; a push producer does
    /// not delay it, and receives `stop_producing` when the connection
    /// ends. Unlike Twisted, the connection keeps reading until then.
    ///
    /// # Errors
    ///
    /// [`RegisterError::AlreadyRegistered`] if a producer is registered
    /// already; [`RegisterError::Unsupported`] if the transport does not
    /// drive producers (the in-memory `loopback` pair).
    ///
    /// ```
    /// use std::{cell::Cell, rc::Rc};
    /// use twill::producers::{Producer, RegisterError};
    /// use twill::testing::StringTransport;
    ///
    /// struct Ticker(Cell<bool>);
    /// impl Producer for Ticker {
    ///     fn pause_producing(&self) { self.0.set(true) }
    ///     fn resume_producing(&self) { self.0.set(false) }
    ///     fn stop_producing(&self) {}
    /// }
    ///
    /// let recorder = StringTransport::new();
    /// let transport = recorder.transport();
    /// let ticker = Rc::new(Ticker(Cell::new(false)));
    /// transport.register_producer(ticker.clone(), true).unwrap();
    /// assert_eq!(
    ///     transport.register_producer(ticker.clone(), true),
    ///     Err(RegisterError::AlreadyRegistered)
    /// );
    /// recorder.set_write_buffer_size(100_000); // over the high watermark
    /// assert!(ticker.0.get(), "paused");
    /// recorder.set_write_buffer_size(0);
    /// assert!(!ticker.0.get(), "resumed");
    /// ```
    pub fn register_producer(
        &self,
        producer: Rc<dyn Producer>,
        streaming: bool,
    ) -> Result<(), RegisterError> {
        let inner = self.inner();
        let Some(slot) = inner.producer_slot() else {
            return Err(RegisterError::Unsupported);
        };
        if slot.registered.borrow().is_some() {
            return Err(RegisterError::AlreadyRegistered);
        }
        if inner.is_closing() {
            producer.stop_producing();
            return Ok(());
        }
        let id = slot.next_id.get() + 1;
        slot.next_id.set(id);
        let weak = Rc::downgrade(inner);
        *slot.registered.borrow_mut() = Some(Registration {
            id,
            producer,
            streaming,
            paused: false,
            driving: false,
            close_pending: false,
            transport: weak.clone(),
        });
        if streaming {
            if !inner.is_writable() {
                slot.writing_paused();
            }
        } else {
            drive_pull(&weak, id);
        }
        Ok(())
    }

    /// Forgets the registered producer, if any: Twisted's
    /// `unregisterProducer`. If [`lose_connection`](Self::lose_connection)
    /// was waiting for it, the connection now closes once the buffer
    /// drains.
    pub fn unregister_producer(&self) {
        let Some(slot) = self.inner().producer_slot() else {
            return;
        };
        let reg = slot.registered.borrow_mut().take();
        if reg.is_some_and(|reg| reg.close_pending) {
            self.inner().lose_connection(None);
        }
    }

    /// Whether a producer is registered.
    pub fn has_producer(&self) -> bool {
        self.inner()
            .producer_slot()
            .is_some_and(|slot| slot.registered.borrow().is_some())
    }
}

/// Why a [`FileSender`] transfer failed: the connection ended before the
/// whole file was written (Twisted's "Consumer asked us to stop
/// producing").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsumerGone;

impl fmt::Display for ConsumerGone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the connection ended before the whole file was written")
    }
}

impl Error for ConsumerGone {}

/// Streams a file (any [`Read`]) to a [`Transport`] as a pull
/// [`Producer`]: Twisted's `FileSender`. Memory stays bounded by the
/// write buffer's high watermark plus one chunk, whatever the file's size.
/// For a [`File`] (or a range of one), [`Transport::send_file`] keeps the
/// order with the writes around it and, on Linux, lets the kernel send it
/// without reading it into memory.
///
/// ```
/// use twill::producers::FileSender;
/// use twill::testing::{success_result_of, StringTransport};
///
/// let recorder = StringTransport::new();
/// let sent = FileSender::begin_file_transfer(&b"Test content"[..], &recorder.transport());
/// assert_eq!(success_result_of(&sent), 12);
/// assert_eq!(recorder.value(), b"Test content");
/// ```
pub struct FileSender<R> {
    reader: RefCell<R>,
    transport: Transport,
    sent: Cell<u64>,
    resolver: RefCell<Option<Resolver<u64>>>,
}

impl FileSender<()> {
    /// How much is read per [`resume_producing`](Producer::resume_producing):
    /// 64 KiB rather than Twisted's 16 KiB, so that a transfer takes a
    /// quarter of the reads and reactor turns; one chunk is what the
    /// buffer can go over its high watermark by, and the default high
    /// watermark is this size.
    pub const CHUNK_SIZE: usize = 64 * 1024;

    /// Starts writing everything `reader` gives to `transport`. The
    /// Deferred fires with the number of bytes written once the reader
    /// reaches its end (the bytes are then in the write buffer; chain
    /// [`Transport::flushed`] to know they were sent), and fails with the
    /// read error if a read fails, with [`ConsumerGone`] if the
    /// connection ends first, or with [`RegisterError`] if a producer is
    /// registered already.
    pub fn begin_file_transfer<R: Read + 'static>(
        reader: R,
        transport: &Transport,
    ) -> Deferred<u64> {
        let d = Deferred::new();
        let sender = Rc::new(FileSender {
            reader: RefCell::new(reader),
            transport: transport.clone(),
            sent: Cell::new(0),
            resolver: RefCell::new(Some(d.resolver())),
        });
        if let Err(err) = transport.register_producer(sender.clone(), false) {
            sender.finish(Err(Failure::new(err)));
        }
        d
    }
}

impl<R> fmt::Debug for FileSender<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileSender")
            .field("sent", &self.sent.get())
            .field("done", &self.resolver.borrow().is_none())
            .finish_non_exhaustive()
    }
}

impl<R> FileSender<R> {
    fn finish(&self, result: Result<u64, Failure>) {
        let resolver = self.resolver.borrow_mut().take();
        if let Some(resolver) = resolver {
            match result {
                Ok(n) => resolver.callback(n),
                Err(failure) => resolver.errback(failure),
            }
        }
    }
}

impl<R: Read> Producer for FileSender<R> {
    fn resume_producing(&self) {
        if self.resolver.borrow().is_none() {
            return;
        }
        let read = read_chunk(&mut *self.reader.borrow_mut(), FileSender::CHUNK_SIZE);
        match read {
            Ok(chunk) if chunk.is_empty() => {
                self.transport.unregister_producer();
                self.finish(Ok(self.sent.get()));
            }
            Ok(chunk) => {
                self.sent.set(self.sent.get() + chunk.len() as u64);
                self.transport.write(chunk);
            }
            Err(err) => {
                self.transport.unregister_producer();
                self.finish(Err(Failure::new(err)));
            }
        }
    }

    fn stop_producing(&self) {
        self.finish(Err(Failure::new(ConsumerGone)));
    }
}

/// One read of at most `max` bytes (empty at the end), as a file is sent
/// by [`FileSender`] and by [`Transport::send_file`]'s copying path.
fn read_chunk(reader: &mut impl Read, max: usize) -> io::Result<Bytes> {
    let mut buf = BytesMut::zeroed(max);
    loop {
        match reader.read(&mut buf) {
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
            Ok(n) => {
                buf.truncate(n);
                return Ok(buf.freeze());
            }
        }
    }
}

/// [`Transport::send_file`] where `sendfile(2)` is not used (TLS, test
/// transports, systems other than Linux): the range is read a
/// [`FileSender::CHUNK_SIZE`] piece at a time while the transport is
/// writable, as [`FileSender`] reads, and what is written meanwhile waits
/// in the transport's [`ProducerSlot`] behind it.
pub(crate) fn send_file_by_copy(
    transport: &Transport,
    mut file: File,
    range: Range<u64>,
) -> Deferred<u64> {
    let d = Deferred::new();
    let resolver = d.resolver();
    let inner = transport.inner();
    let Some(slot) = inner.send_file_slot() else {
        resolver.errback(Failure::new(io::Error::new(
            io::ErrorKind::Unsupported,
            "this transport cannot send files",
        )));
        return d;
    };
    if inner.is_closing() {
        resolver.errback(Failure::new(ConsumerGone));
        return d;
    }
    if let Err(err) = file.seek(SeekFrom::Start(range.start)) {
        resolver.errback(Failure::new(err));
        return d;
    }
    slot.held.borrow_mut().push_back(Held::File(CopiedFile {
        file,
        left: range.end - range.start,
        sent: 0,
        resolver,
    }));
    pump(&Rc::downgrade(inner));
    d
}

/// Writes what the slot holds, in order: file chunks while the transport
/// is writable (then waits for it to be writable again), and what was
/// written behind each file once it is done.
fn pump(transport: &Weak<dyn TransportImpl>) {
    let Some(inner) = transport.upgrade() else {
        return;
    };
    let Some(slot) = inner.send_file_slot() else {
        return;
    };
    if slot.pumping.replace(true) {
        return;
    }
    /// Lets the next `pump` in, even after a panic in a waiter run here.
    struct Pumping<'a>(&'a Cell<bool>);
    impl Drop for Pumping<'_> {
        fn drop(&mut self) {
            self.0.set(false);
        }
    }
    let _pumping = Pumping(&slot.pumping);
    loop {
        let item = slot.held.borrow_mut().pop_front();
        let Some(item) = item else { break };
        match item {
            Held::File(mut copied) => {
                if !inner.is_writable() {
                    slot.held.borrow_mut().push_front(Held::File(copied));
                    if !inner.is_closing() {
                        let weak = transport.clone();
                        inner.when_writable(Box::new(move || pump(&weak)));
                    }
                    break;
                }
                let max = copied.left.min(FileSender::CHUNK_SIZE as u64) as usize;
                match read_chunk(&mut copied.file, max) {
                    Ok(chunk) if chunk.is_empty() => {
                        let short = || {
                            io::Error::new(
                                io::ErrorKind::UnexpectedEof,
                                format!("the file ended {} bytes before its range", copied.left),
                            )
                        };
                        inner.abort_with(Box::new(short()));
                        copied.resolver.errback(Failure::new(short()));
                    }
                    Ok(chunk) => {
                        copied.left -= chunk.len() as u64;
                        copied.sent += chunk.len() as u64;
                        inner.write(chunk);
                        if copied.left == 0 {
                            copied.resolver.callback(copied.sent);
                        } else {
                            slot.held.borrow_mut().push_front(Held::File(copied));
                        }
                    }
                    Err(err) => {
                        inner.abort_with(Box::new(io::Error::new(err.kind(), err.to_string())));
                        copied.resolver.errback(Failure::new(err));
                    }
                }
            }
            Held::Bytes(data) => {
                slot.held_bytes.set(slot.held_bytes.get() - data.len());
                inner.write(data);
            }
            Held::WriteEof => inner.write_eof(),
            Held::Close(error) => inner.lose_connection(error),
            Held::Sent(waiter) => inner.when_sent(waiter),
            Held::Writable(waiter) => inner.when_writable(waiter),
        }
    }
}
