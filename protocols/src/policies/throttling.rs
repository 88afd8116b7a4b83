//! [`ThrottlingFactory`]: bandwidth limits over all of a factory's
//! connections, Twisted's `ThrottlingFactory`.

use std::cell::{Cell, Ref, RefCell, RefMut};
use std::fmt;
use std::rc::{Rc, Weak};
use std::time::Duration;
use twill::Address;

use twill::{Bytes, DelayedCall, Factory, Protocol, ReactorTime, Reason, Transport};

use crate::factory_wrapper::{forward_client_factory, Refusals};
use crate::handler::output::{time_or_reactor, OutputMeter, ProducerPause};
use crate::handler::timer::{call_later_weak, guarded};

/// The accounting window: Twisted checks once a second.
const WINDOW: Duration = Duration::from_secs(1);

/// Wraps any factory and holds all its connections together under a read
/// and a write limit in bytes per second, and a connection limit: Twisted's
/// `ThrottlingFactory`.
///
/// # Reads
///
/// Every byte delivered to a [`data_received`](Protocol::data_received)
/// counts in the current one-second window. As soon as the window's count
/// passes the read limit, reading is paused on every connection
/// ([`Transport::pause_reading`]; the peers' writes back up into the
/// kernel and then into the peers). At each window boundary the limit's
/// worth is taken off the count and what is left over carries into the new
/// window; once the count is back within the limit, reading resumes on
/// every connection. A burst of *n* times the limit thus keeps reading
/// paused for about *n* − 1 windows, as Twisted's pause of
/// `bytes / limit − 1` seconds. Connections made while reads are throttled
/// start paused.
///
/// twill's [`Transport`] cannot tell whether reading is paused, so resuming
/// also undoes a [`pause_reading`](Transport::pause_reading) the inner
/// protocol made itself during the throttle.
///
/// # Writes
///
/// Writes are counted from each connection's write counter (see
/// [Seeing writes](crate::handler#seeing-writes)): at once for writes made
/// in the inner protocol's callbacks, at the next look (the next callback
/// or window boundary) for writes made elsewhere. When the window's count passes the write
/// limit, every inner protocol is told
/// [`pause_writing`](Protocol::pause_writing), and
/// [`resume_writing`](Protocol::resume_writing) once a window boundary
/// brings the count back within the limit (carried over as for reads). This
/// is Twisted's pausing of each connection's registered producer: a twill
/// protocol is its own producer, so only protocols that stop writing when
/// told to are slowed down; nothing can hold back a write already made.
/// The transport's own watermark pauses are merged with the throttle's:
/// the inner protocol hears `pause_writing` once when either begins and
/// `resume_writing` once when both are over.
///
/// # Connections
///
/// Beyond [`max_connections`](Self::max_connections) (unlimited by
/// default) `build_protocol` returns `None` (the connection is closed at
/// once) without asking the inner factory.
///
/// # Time
///
/// The window timer starts with the first connection, on the
/// [`clock`](Self::clock) given or else the current thread's reactor, and
/// stops once there are no connections and nothing is left to carry over.
/// With neither limit set no timer runs.
///
/// # Examples
///
/// ```
/// use std::{net::SocketAddr, rc::Rc, time::Duration};
/// use twill::{task::Clock, testing::StringTransport, Address, Bytes, Factory, Protocol};
/// use twill_protocols::policies::ThrottlingFactory;
///
/// struct Discard;
/// impl Protocol for Discard {
///     fn data_received(&mut self, _: Bytes) {}
/// }
///
/// let clock = Clock::new();
/// let mut factory = ThrottlingFactory::new(|_peer: Address| Discard)
///     .read_limit(100)
///     .clock(Rc::new(clock.clone()));
/// let recorder = StringTransport::new();
/// let mut protocol = factory.build_protocol(recorder.transport().peer()).unwrap();
/// protocol.connection_made(&recorder.transport());
///
/// protocol.data_received(Bytes::from(vec![0; 250]));
/// assert!(recorder.reading_paused());
/// clock.advance(Duration::from_secs(1)); // 150 left over: still over
/// assert!(recorder.reading_paused());
/// clock.advance(Duration::from_secs(1)); // 50 left over
/// assert!(!recorder.reading_paused());
/// ```
pub struct ThrottlingFactory<F: Factory> {
    inner: F,
    throttle: Rc<Throttle<F::Protocol>>,
    refused: Refusals,
}

struct Throttle<P> {
    read_limit: Cell<Option<u64>>,
    write_limit: Cell<Option<u64>>,
    max_connections: Cell<usize>,
    clock: RefCell<Option<Rc<dyn ReactorTime>>>,
    /// The time source of the running window timer.
    ticker_time: RefCell<Option<Rc<dyn ReactorTime>>>,
    ticker: RefCell<Option<DelayedCall>>,
    read: Cell<u64>,
    written: Cell<u64>,
    reads_throttled: Cell<bool>,
    writes_throttled: Cell<bool>,
    conns: RefCell<Vec<Weak<Conn<P>>>>,
}

/// One connection, as the throttle reaches it.
struct Conn<P> {
    inner: RefCell<P>,
    transport: RefCell<Option<Transport>>,
    meter: OutputMeter,
    /// The transport's pauses merged with the throttle's.
    producer: ProducerPause,
}

/// The protocol a [`ThrottlingFactory`] builds: the inner factory's
/// protocol, counted and throttled with the factory's other connections.
pub struct ThrottledProtocol<P: Protocol> {
    conn: Rc<Conn<P>>,
    throttle: Weak<Throttle<P>>,
    registered: bool,
}

impl<P: Protocol> Conn<P> {
    /// Calls into the protocol and counts what was written, before (by
    /// others) and during the call.
    fn call<R>(&self, throttle: &Throttle<P>, f: impl FnOnce(&mut P) -> R) -> R {
        self.count_output(throttle);
        let result = f(&mut self.inner.borrow_mut());
        self.count_output(throttle);
        if self.producer.take_deferred() {
            self.sync_producer(throttle);
        }
        result
    }

    fn count_output(&self, throttle: &Throttle<P>) {
        if let Some(transport) = self.transport.borrow().as_ref() {
            let added = self.meter.added(transport) as u64;
            throttle.written.set(throttle.written.get() + added);
        }
    }

    /// Tells the protocol to pause or resume writing when the merged state
    /// (transport or throttle) changed.
    fn sync_producer(&self, throttle: &Throttle<P>) {
        if self.transport.borrow().is_none() {
            return;
        }
        let busy = self.inner.try_borrow_mut().is_err();
        // Also called from the throttle's timer, for every connection in
        // turn: one protocol's panic must close its own connection only.
        let transport = self.transport.borrow().clone();
        match self.producer.next(throttle.writes_throttled.get(), busy) {
            Some(true) => guarded(transport, "pause_writing", || {
                self.call(throttle, |inner| inner.pause_writing())
            }),
            Some(false) => guarded(transport, "resume_writing", || {
                self.call(throttle, |inner| inner.resume_writing())
            }),
            None => {}
        }
    }
}

impl<P: Protocol> Throttle<P> {
    fn live(&self) -> Vec<Rc<Conn<P>>> {
        self.conns
            .borrow()
            .iter()
            .filter_map(Weak::upgrade)
            .collect()
    }

    fn connection_count(&self) -> usize {
        self.conns.borrow().len()
    }

    /// Throttles reads or writes whose window count passed the limit.
    fn check(&self) {
        if let Some(limit) = self.read_limit.get() {
            if self.read.get() > limit && !self.reads_throttled.replace(true) {
                log::debug!(
                    "throttling reads: {} bytes read this second, the limit is {limit}",
                    self.read.get()
                );
                for conn in self.live() {
                    if let Some(transport) = conn.transport.borrow().as_ref() {
                        transport.pause_reading();
                    }
                }
            }
        }
        if let Some(limit) = self.write_limit.get() {
            if self.written.get() > limit && !self.writes_throttled.replace(true) {
                log::debug!(
                    "throttling writes: {} bytes written this second, the limit is {limit}",
                    self.written.get()
                );
                for conn in self.live() {
                    conn.sync_producer(self);
                }
            }
        }
    }

    fn ensure_ticker(self: &Rc<Self>) {
        if self.read_limit.get().is_none() && self.write_limit.get().is_none() {
            return;
        }
        if self
            .ticker
            .borrow()
            .as_ref()
            .is_some_and(DelayedCall::active)
        {
            return;
        }
        let time = time_or_reactor(self.clock.borrow().as_ref());
        *self.ticker_time.borrow_mut() = Some(time);
        self.schedule_tick();
    }

    fn schedule_tick(self: &Rc<Self>) {
        let Some(time) = self.ticker_time.borrow().clone() else {
            return;
        };
        let call = call_later_weak(&*time, WINDOW, self, Throttle::tick);
        *self.ticker.borrow_mut() = Some(call);
    }

    /// A window ended: carry the excess over, and lift the throttles that
    /// are no longer needed.
    fn tick(self: &Rc<Self>) {
        self.ticker.borrow_mut().take();
        let conns = self.live();
        for conn in &conns {
            conn.count_output(self);
        }
        self.read
            .set(carry_over(self.read.get(), self.read_limit.get()));
        self.written
            .set(carry_over(self.written.get(), self.write_limit.get()));
        if self.reads_throttled.get() && Some(self.read.get()) <= self.read_limit.get() {
            self.reads_throttled.set(false);
            log::debug!("reads no longer throttled");
            for conn in &conns {
                if let Some(transport) = conn.transport.borrow().as_ref() {
                    transport.resume_reading();
                }
            }
        }
        if self.writes_throttled.get() && Some(self.written.get()) <= self.write_limit.get() {
            self.writes_throttled.set(false);
            log::debug!("writes no longer throttled");
            for conn in &conns {
                conn.sync_producer(self);
            }
        }
        // Producers that resumed may have written past the limit again.
        self.check();
        let busy = !conns.is_empty()
            || self.read.get() > 0
            || self.written.get() > 0
            || self.reads_throttled.get()
            || self.writes_throttled.get();
        if busy {
            self.schedule_tick();
        } else {
            self.ticker_time.borrow_mut().take();
        }
    }

    fn unregister(&self, conn: &Rc<Conn<P>>) {
        let me = Rc::downgrade(conn);
        self.conns.borrow_mut().retain(|c| !c.ptr_eq(&me));
    }
}

/// What is left of a window's count once the window's allowance is used.
fn carry_over(count: u64, limit: Option<u64>) -> u64 {
    limit.map_or(0, |limit| count.saturating_sub(limit))
}

impl<F: Factory> ThrottlingFactory<F> {
    /// Wraps `factory` with no limits: set them with the builder methods.
    pub fn new(factory: F) -> Self {
        ThrottlingFactory {
            inner: factory,
            throttle: Rc::new(Throttle {
                read_limit: Cell::new(None),
                write_limit: Cell::new(None),
                max_connections: Cell::new(usize::MAX),
                clock: RefCell::new(None),
                ticker_time: RefCell::new(None),
                ticker: RefCell::new(None),
                read: Cell::new(0),
                written: Cell::new(0),
                reads_throttled: Cell::new(false),
                writes_throttled: Cell::new(false),
                conns: RefCell::new(Vec::new()),
            }),
            refused: Refusals::default(),
        }
    }

    /// Reads at most `bytes_per_second` over all connections (Twisted's
    /// `readLimit`); 0 means no limit, as in Netty.
    pub fn read_limit(self, bytes_per_second: u64) -> Self {
        self.throttle
            .read_limit
            .set((bytes_per_second > 0).then_some(bytes_per_second));
        self
    }

    /// Lets the protocols write at most `bytes_per_second` over all
    /// connections (Twisted's `writeLimit`); 0 means no limit, as in
    /// Netty.
    pub fn write_limit(self, bytes_per_second: u64) -> Self {
        self.throttle
            .write_limit
            .set((bytes_per_second > 0).then_some(bytes_per_second));
        self
    }

    /// Allows at most `max` connections at once (Twisted's
    /// `maxConnectionCount`).
    pub fn max_connections(self, max: usize) -> Self {
        self.throttle.max_connections.set(max);
        self
    }

    /// Uses `time` for the window timer instead of the reactor.
    pub fn clock(self, time: Rc<dyn ReactorTime>) -> Self {
        *self.throttle.clock.borrow_mut() = Some(time);
        self
    }

    /// How many connections are open.
    pub fn connection_count(&self) -> usize {
        self.throttle.connection_count()
    }

    /// Bytes read in the current window, with what was carried over.
    pub fn read_this_window(&self) -> u64 {
        self.throttle.read.get()
    }

    /// Bytes seen written in the current window, with what was carried
    /// over.
    pub fn written_this_window(&self) -> u64 {
        self.throttle.written.get()
    }

    /// Whether reading is paused by the throttle.
    pub fn reads_throttled(&self) -> bool {
        self.throttle.reads_throttled.get()
    }

    /// Whether the protocols are told to pause writing by the throttle.
    pub fn writes_throttled(&self) -> bool {
        self.throttle.writes_throttled.get()
    }

    /// How many connections were refused over the connection limit.
    pub fn refused(&self) -> u64 {
        self.refused.count()
    }

    /// The wrapped factory.
    pub fn inner(&self) -> &F {
        &self.inner
    }

    /// The wrapped factory, mutably.
    pub fn inner_mut(&mut self) -> &mut F {
        &mut self.inner
    }
}

impl<F: Factory> Factory for ThrottlingFactory<F> {
    type Protocol = ThrottledProtocol<F::Protocol>;

    /// Builds the inner protocol unless the connection limit is reached,
    /// and starts the window timer with the first connection.
    ///
    /// # Panics
    ///
    /// With a limit set, no [`clock`](Self::clock) given and no reactor on
    /// this thread.
    fn build_protocol(&mut self, peer: Address) -> Option<Self::Protocol> {
        let throttle = &self.throttle;
        let open = throttle.connection_count();
        if open >= throttle.max_connections.get() {
            return self.refused.refuse(
                peer,
                format_args!("the maximum of {open} connections is reached"),
            );
        }
        let inner = self.inner.build_protocol(peer)?;
        let conn = Rc::new(Conn {
            inner: RefCell::new(inner),
            transport: RefCell::new(None),
            meter: OutputMeter::new(),
            producer: ProducerPause::default(),
        });
        throttle.conns.borrow_mut().push(Rc::downgrade(&conn));
        throttle.ensure_ticker();
        Some(ThrottledProtocol {
            conn,
            throttle: Rc::downgrade(throttle),
            registered: true,
        })
    }

    fn start_factory(&mut self) {
        self.inner.start_factory();
    }

    fn stop_factory(&mut self) {
        self.inner.stop_factory();
    }
}

forward_client_factory!(ThrottlingFactory);

impl<F: Factory> fmt::Debug for ThrottlingFactory<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let throttle = &self.throttle;
        f.debug_struct("ThrottlingFactory")
            .field("read_limit", &throttle.read_limit.get())
            .field("write_limit", &throttle.write_limit.get())
            .field("max_connections", &throttle.max_connections.get())
            .field("connections", &throttle.connection_count())
            .field("read", &throttle.read.get())
            .field("written", &throttle.written.get())
            .field("reads_throttled", &throttle.reads_throttled.get())
            .field("writes_throttled", &throttle.writes_throttled.get())
            .finish_non_exhaustive()
    }
}

impl<P: Protocol> ThrottledProtocol<P> {
    /// The wrapped protocol.
    ///
    /// # Panics
    ///
    /// If called from inside the protocol's own callbacks.
    pub fn inner(&self) -> Ref<'_, P> {
        self.conn.inner.borrow()
    }

    /// The wrapped protocol, mutably.
    ///
    /// # Panics
    ///
    /// If called from inside the protocol's own callbacks.
    pub fn inner_mut(&mut self) -> RefMut<'_, P> {
        self.conn.inner.borrow_mut()
    }

    /// Calls into the protocol, counting its writes, then applies the
    /// limits.
    fn call_inner<R>(&self, f: impl FnOnce(&mut P) -> R) -> R {
        match self.throttle.upgrade() {
            Some(throttle) => {
                let result = self.conn.call(&throttle, f);
                throttle.check();
                result
            }
            None => f(&mut self.conn.inner.borrow_mut()),
        }
    }

    fn unregister(&mut self) {
        if std::mem::take(&mut self.registered) {
            if let Some(throttle) = self.throttle.upgrade() {
                throttle.unregister(&self.conn);
            }
        }
    }
}

impl<P: Protocol> Protocol for ThrottledProtocol<P> {
    fn connection_made(&mut self, transport: &Transport) {
        *self.conn.transport.borrow_mut() = Some(transport.clone());
        self.conn.meter.look(transport);
        let throttle = self.throttle.upgrade();
        if throttle.as_ref().is_some_and(|t| t.reads_throttled.get()) {
            transport.pause_reading();
        }
        self.call_inner(|inner| inner.connection_made(transport));
        if let Some(throttle) = throttle {
            self.conn.sync_producer(&throttle);
        }
    }

    fn data_received(&mut self, data: Bytes) {
        if let Some(throttle) = self.throttle.upgrade() {
            throttle.read.set(throttle.read.get() + data.len() as u64);
        }
        self.call_inner(|inner| inner.data_received(data));
    }

    fn eof_received(&mut self) -> bool {
        self.call_inner(|inner| inner.eof_received())
    }

    fn connection_lost(&mut self, reason: &Reason) {
        self.unregister();
        self.conn.transport.borrow_mut().take();
        self.conn.inner.borrow_mut().connection_lost(reason);
    }

    fn pause_writing(&mut self) {
        self.conn.producer.set_transport(true);
        match self.throttle.upgrade() {
            Some(throttle) => self.conn.sync_producer(&throttle),
            None => self.conn.inner.borrow_mut().pause_writing(),
        }
    }

    fn resume_writing(&mut self) {
        self.conn.producer.set_transport(false);
        match self.throttle.upgrade() {
            Some(throttle) => {
                self.conn.sync_producer(&throttle);
                throttle.check();
            }
            None => self.conn.inner.borrow_mut().resume_writing(),
        }
    }

    fn write_complete(&mut self) {
        self.conn.inner.borrow_mut().write_complete();
    }

    fn event_received(&mut self, event: twill::Event) {
        self.conn.inner.borrow_mut().event_received(event);
    }
}

impl<P: Protocol> Drop for ThrottledProtocol<P> {
    fn drop(&mut self) {
        self.unregister();
    }
}

impl<P: Protocol> fmt::Debug for ThrottledProtocol<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThrottledProtocol")
            .field("connected", &self.conn.transport.borrow().is_some())
            .field("told_paused", &self.conn.producer.told_paused())
            .finish_non_exhaustive()
    }
}
