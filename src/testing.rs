//! Helpers for testing protocols without sockets: [`StringTransport`], and
//! [`loopback`], two protocols connected in memory;
//! and for testing Deferreds: [`success_result_of`], [`failure_result_of`]
//! and [`assert_no_result`], Twisted's `SynchronousTestCase` assertions.
//!
//! Together with [`Clock`](crate::task::Clock), a protocol can be driven
//! by hand: call its methods with the bytes you choose, advance time, and
//! look at what it wrote and whether it asked to close.

use std::cell::{Cell, RefCell};
use std::error::Error;
use std::fmt;
use std::io;
use std::net::SocketAddr;

use crate::net::Address;
use std::rc::Rc;

use bytes::{Bytes, BytesMut};

use crate::event::Event;
use crate::transport::{SentWaiter, Transport, TransportImpl};

mod loopback;

pub use loopback::{loopback, Loopback};

/// An in-memory transport that records what a protocol writes: Twisted's
/// `StringTransport`.
///
/// [`transport`](Self::transport) gives the [`Transport`] to hand to the
/// protocol's `connection_made`; the `StringTransport` itself shows what
/// happened. Closing only records the request: no callback is made, so the
/// test decides when to call `connection_lost`.
///
/// # Examples
///
/// ```
/// use twill::testing::StringTransport;
///
/// let recorder = StringTransport::new();
/// let transport = recorder.transport();
/// transport.write("ping");
/// assert_eq!(recorder.value(), b"ping");
/// recorder.clear();
/// transport.abort_connection();
/// assert!(recorder.aborted());
/// ```
#[derive(Clone)]
pub struct StringTransport {
    inner: Rc<Recorder>,
}

struct Recorder {
    written: RefCell<Vec<u8>>,
    /// All bytes written, including those `clear` forgot.
    total_written: Cell<u64>,
    peer: Address,
    host: Address,
    disconnecting: Cell<bool>,
    aborted: Cell<bool>,
    failure: RefCell<Option<Box<dyn Error + Send + Sync>>>,
    eof_written: Cell<bool>,
    reading_paused: Cell<bool>,
    nodelay: Cell<bool>,
    keepalive: Cell<bool>,
    limits: Cell<(usize, usize)>,
    max: Cell<usize>,
    flow_control: Cell<bool>,
    /// What the test says is waiting to be sent.
    buffered: Cell<usize>,
    /// What the test let drain from `buffered`: counted as sent.
    drained: Cell<u64>,
    /// `buffered` went over the high watermark and has not been back to
    /// the low one since.
    over_high: Cell<bool>,
    writable_waiters: RefCell<Vec<Box<dyn FnOnce()>>>,
    /// `Transport::register_producer`'s producer.
    producers: crate::producers::ProducerSlot,
    /// `Transport::flushed` callers, waiting for `buffered` to reach zero.
    sent_waiters: RefCell<Vec<SentWaiter>>,
    events: RefCell<Vec<Event>>,
}

impl StringTransport {
    /// A transport whose peer is `127.0.0.1:54321` and host `127.0.0.1:12345`.
    pub fn new() -> StringTransport {
        StringTransport::with_addresses(
            SocketAddr::from(([127, 0, 0, 1], 54321)),
            SocketAddr::from(([127, 0, 0, 1], 12345)),
        )
    }

    /// A transport with the given peer and host addresses.
    pub fn with_addresses(peer: impl Into<Address>, host: impl Into<Address>) -> StringTransport {
        let (peer, host) = (peer.into(), host.into());
        StringTransport {
            inner: Rc::new(Recorder {
                written: RefCell::new(Vec::new()),
                total_written: Cell::new(0),
                peer,
                host,
                disconnecting: Cell::new(false),
                aborted: Cell::new(false),
                failure: RefCell::new(None),
                eof_written: Cell::new(false),
                reading_paused: Cell::new(false),
                nodelay: Cell::new(true),
                keepalive: Cell::new(false),
                limits: Cell::new((
                    crate::transport::DEFAULT_HIGH_WATERMARK,
                    crate::transport::DEFAULT_LOW_WATERMARK,
                )),
                max: Cell::new(crate::transport::DEFAULT_MAX_WRITE_BUFFER),
                flow_control: Cell::new(false),
                buffered: Cell::new(0),
                drained: Cell::new(0),
                over_high: Cell::new(false),
                writable_waiters: RefCell::new(Vec::new()),
                producers: Default::default(),
                sent_waiters: RefCell::new(Vec::new()),
                events: RefCell::new(Vec::new()),
            }),
        }
    }

    /// The [`Transport`] to give the protocol under test.
    pub fn transport(&self) -> Transport {
        Transport::new(self.inner.clone())
    }

    /// Everything written since creation or the last [`clear`](Self::clear).
    pub fn value(&self) -> Vec<u8> {
        self.inner.written.borrow().clone()
    }

    /// Forgets what was written so far.
    pub fn clear(&self) {
        self.inner.written.borrow_mut().clear();
    }

    /// Whether the protocol asked to close (`lose_connection`, `fail` or
    /// `abort_connection`).
    pub fn disconnecting(&self) -> bool {
        self.inner.disconnecting.get()
    }

    /// Whether the protocol called `abort_connection`.
    pub fn aborted(&self) -> bool {
        self.inner.aborted.get()
    }

    /// The error the protocol closed with through
    /// [`Transport::fail`], if it did.
    pub fn failure(&self) -> Option<String> {
        self.inner
            .failure
            .borrow()
            .as_ref()
            .map(|err| err.to_string())
    }

    /// Whether the protocol called `write_eof`.
    pub fn eof_written(&self) -> bool {
        self.inner.eof_written.get()
    }

    /// Whether the protocol paused reading.
    pub fn reading_paused(&self) -> bool {
        self.inner.reading_paused.get()
    }

    /// The watermarks the protocol set (or the defaults): `(high, low)`.
    pub fn write_buffer_limits(&self) -> (usize, usize) {
        self.inner.limits.get()
    }

    /// Pretends `bytes` are waiting to be sent, as when the peer stops
    /// reading: [`Transport::write_buffer_size`] reports them,
    /// [`Transport::is_writable`] is false from when they go over the high
    /// watermark until they are back at the low one, and a write that takes them past the hard cap
    /// ([`Transport::set_write_buffer_max`]) aborts, as on a real
    /// connection. What the protocol writes is still recorded, not added.
    /// The protocol's `pause_writing` / `resume_writing` are not called:
    /// the test calls them. A registered push producer is paused and
    /// resumed, as on a real connection. Lowering the figure counts the difference as
    /// sent ([`Transport::bytes_sent`]), as a peer reading it would.
    ///
    /// Making it writable again (at or under the high watermark) runs what
    /// waits in [`Transport::when_writable`].
    pub fn set_write_buffer_size(&self, bytes: usize) {
        let before = self.inner.buffered.replace(bytes);
        let drained = before.saturating_sub(bytes) as u64;
        self.inner.drained.set(self.inner.drained.get() + drained);
        let (high, low) = self.inner.limits.get();
        if bytes > high {
            if !self.inner.over_high.replace(true) {
                self.inner.producers.writing_paused();
            }
        } else if bytes <= low {
            self.inner.over_high.set(false);
        }
        if self.inner.is_writable() {
            let waiters = std::mem::take(&mut *self.inner.writable_waiters.borrow_mut());
            for waiter in waiters {
                waiter();
            }
        }
        if bytes == 0 {
            let waiters = std::mem::take(&mut *self.inner.sent_waiters.borrow_mut());
            for waiter in waiters {
                waiter(true);
            }
        }
    }

    /// The events fired at this transport
    /// ([`Transport::fire_event`]) since the last call, oldest first. A
    /// test hands them to the protocol's `event_received` if it wants
    /// them delivered.
    pub fn take_events(&self) -> Vec<Event> {
        std::mem::take(&mut *self.inner.events.borrow_mut())
    }
}

impl Default for StringTransport {
    fn default() -> Self {
        StringTransport::new()
    }
}

impl fmt::Debug for StringTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StringTransport")
            .field("written", &Bytes::from(self.value()))
            .field("disconnecting", &self.disconnecting())
            .finish()
    }
}

impl TransportImpl for Recorder {
    fn write(&self, data: Bytes) {
        if self.aborted.get() {
            return;
        }
        let max = self.max.get();
        if self.buffered.get().saturating_add(data.len()) > max {
            self.abort_with(Box::new(crate::transport::WriteBufferFull { limit: max }));
            return;
        }
        self.total_written
            .set(self.total_written.get() + data.len() as u64);
        self.written.borrow_mut().extend_from_slice(&data);
    }

    fn write_with(&self, fill: &mut dyn FnMut(&mut BytesMut) -> Option<Bytes>) -> bool {
        let mut buf = BytesMut::new();
        let body = fill(&mut buf);
        if !buf.is_empty() {
            self.write(buf.freeze());
        }
        if let Some(body) = body.filter(|body| !body.is_empty()) {
            self.write(body);
        }
        true
    }

    fn lose_connection(&self, error: Option<Box<dyn Error + Send + Sync>>) {
        self.disconnecting.set(true);
        if error.is_some() && self.failure.borrow().is_none() {
            *self.failure.borrow_mut() = error;
        }
    }

    fn abort_connection(&self) {
        self.disconnecting.set(true);
        self.aborted.set(true);
        self.producers.connection_lost();
        let waiters = std::mem::take(&mut *self.writable_waiters.borrow_mut());
        for waiter in waiters {
            waiter();
        }
        // What the test held back is never sent now.
        let waiters = std::mem::take(&mut *self.sent_waiters.borrow_mut());
        for waiter in waiters {
            waiter(false);
        }
    }

    fn abort_with(&self, error: Box<dyn Error + Send + Sync>) {
        if self.failure.borrow().is_none() {
            *self.failure.borrow_mut() = Some(error);
        }
        self.abort_connection();
    }

    fn write_eof(&self) {
        self.eof_written.set(true);
    }

    fn set_reading(&self, on: bool) {
        self.reading_paused.set(!on);
    }

    fn peer(&self) -> Address {
        self.peer.clone()
    }

    fn host(&self) -> Address {
        self.host.clone()
    }

    fn set_tcp_nodelay(&self, on: bool) -> io::Result<()> {
        self.nodelay.set(on);
        Ok(())
    }

    fn tcp_nodelay(&self) -> io::Result<bool> {
        Ok(self.nodelay.get())
    }

    fn set_tcp_keepalive(&self, on: bool) -> io::Result<()> {
        self.keepalive.set(on);
        Ok(())
    }

    fn tcp_keepalive(&self) -> io::Result<bool> {
        Ok(self.keepalive.get())
    }

    fn write_buffer_size(&self) -> usize {
        self.buffered.get()
    }

    fn bytes_written(&self) -> u64 {
        self.total_written.get()
    }

    fn bytes_sent(&self) -> u64 {
        // Everything written is "sent" at once, and so is what the test
        // lets drain.
        self.total_written.get() + self.drained.get()
    }

    fn set_write_buffer_limits(&self, high: usize, low: usize) {
        self.limits.set((high, low));
        self.max.set(self.max.get().max(high));
    }

    fn set_write_buffer_max(&self, max: usize) {
        self.max.set(max.max(self.limits.get().0));
    }

    fn write_buffer_max(&self) -> usize {
        self.max.get()
    }

    fn write_buffer_limits(&self) -> (usize, usize) {
        self.limits.get()
    }

    fn producer_slot(&self) -> Option<&crate::producers::ProducerSlot> {
        Some(&self.producers)
    }

    fn is_writable(&self) -> bool {
        !self.disconnecting.get() && !self.over_high.get()
    }

    fn when_writable(&self, f: Box<dyn FnOnce()>) {
        if self.is_writable() || self.disconnecting.get() {
            f();
        } else {
            self.writable_waiters.borrow_mut().push(f);
        }
    }

    fn set_flow_control(&self, on: bool) {
        self.flow_control.set(on);
    }

    fn flow_control(&self) -> bool {
        self.flow_control.get()
    }

    fn is_closing(&self) -> bool {
        self.disconnecting.get()
    }

    fn when_sent(&self, f: SentWaiter) {
        if self.aborted.get() {
            f(false);
        } else if self.buffered.get() == 0 {
            f(true);
        } else {
            self.sent_waiters.borrow_mut().push(f);
        }
    }

    fn fire_event(&self, event: Event) {
        self.events.borrow_mut().push(event);
    }
}

/// The value `d` has, cloned; `d` keeps it: Twisted's `successResultOf`,
/// without taking the result, so a test can look twice.
///
/// # Panics
///
/// If `d` has no result yet (or its chain is paused or waiting), or has a
/// failure.
///
/// # Examples
///
/// ```
/// use twill::defer::succeed;
/// use twill::testing::success_result_of;
///
/// let d = succeed(3);
/// assert_eq!(success_result_of(&d), 3);
/// assert_eq!(success_result_of(&d), 3); // still there
/// ```
#[track_caller]
pub fn success_result_of<T: Clone + 'static>(d: &crate::defer::Deferred<T>) -> T {
    match d.peek_result(|outcome| outcome.cloned().map_err(Clone::clone)) {
        Some(Ok(value)) => value,
        Some(Err(failure)) => panic!(
            "success result expected on {}, found failure result instead: {failure:?}",
            describe(d)
        ),
        None => panic!(
            "success result expected on {}, found no result instead",
            describe(d)
        ),
    }
}

/// The failure `d` has (the same failure: [`Failure`](crate::defer::Failure)
/// is a shared handle), which then no longer counts as unhandled; `d`
/// keeps it: Twisted's `failureResultOf`. Check its type with
/// [`check`](crate::defer::Failure::check).
///
/// # Panics
///
/// If `d` has no result yet (or its chain is paused or waiting), or has a
/// value.
///
/// # Examples
///
/// ```
/// use twill::defer::{CancelledError, Deferred};
/// use twill::testing::failure_result_of;
///
/// let d: Deferred<()> = Deferred::new();
/// d.cancel();
/// assert!(failure_result_of(&d).check::<CancelledError>());
/// ```
#[track_caller]
pub fn failure_result_of<T: 'static>(d: &crate::defer::Deferred<T>) -> crate::defer::Failure {
    match d.peek_result(|outcome| outcome.map(|_| ()).map_err(Clone::clone)) {
        Some(Err(failure)) => failure,
        Some(Ok(())) => panic!(
            "failure result expected on {}, found success result instead",
            describe(d)
        ),
        None => panic!(
            "failure result expected on {}, found no result instead",
            describe(d)
        ),
    }
}

/// Asserts that `d` has no result yet: Twisted's `assertNoResult`.
///
/// # Panics
///
/// If `d` has a result (value or failure) at the end of its chain.
///
/// # Examples
///
/// ```
/// use twill::defer::Deferred;
/// use twill::testing::assert_no_result;
///
/// let d: Deferred<i32> = Deferred::new();
/// assert_no_result(&d);
/// ```
#[track_caller]
pub fn assert_no_result<T: 'static>(d: &crate::defer::Deferred<T>) {
    if let Some(found) = d.peek_result(|outcome| match outcome {
        Ok(_) => "a success result".to_owned(),
        Err(failure) => format!("a failure result {failure:?}"),
    }) {
        panic!(
            "no result expected on {}, found {found} instead",
            describe(d)
        );
    }
}

fn describe<T: 'static>(d: &crate::defer::Deferred<T>) -> String {
    format!("{:?}", d.id())
}
