//! [`TrafficShapingHandler`]: Netty's `ChannelTrafficShapingHandler`, read
//! and write limits in bytes per second on one connection, with the
//! [`TrafficCounter`] statistics it keeps.

use std::cell::{Cell, Ref, RefCell, RefMut};
use std::fmt;
use std::rc::Rc;
use std::time::{Duration, Instant};

use twill::{Bytes, DelayedCall, Event, Protocol, ReactorTime, Reason, Transport};

use super::output::{at_least_a_millisecond, time_or_reactor, OutputMeter, ProducerPause};
use super::timer::{call_later_weak, guarded};
use super::traffic_counter::{Accounting, TrafficCounter, MINIMAL_WAIT};

/// Netty's `DEFAULT_CHECK_INTERVAL`.
const DEFAULT_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// Netty's `DEFAULT_MAX_TIME`.
const DEFAULT_MAX_TIME: Duration = Duration::from_secs(15);

/// Wraps any protocol and holds its connection to a read and a write limit
/// in bytes per second: Netty's `ChannelTrafficShapingHandler`.
///
/// Both limits are off (0) until set; the defaults are Netty's: statistics
/// every [`check_interval`](Self::check_interval) of 1 s, pauses of at most
/// [`max_time`](Self::max_time), 15 s, and no pause for a wait of 10 ms or
/// less.
///
/// # What happens at the limit
///
/// | | Netty | twill |
/// |---|---|---|
/// | reads over the read limit | auto-read off for the wait | [`Transport::pause_reading`] for the wait, `resume_reading` from a timer |
/// | writes over the write limit | each write queued and sent after its wait; the channel marked unwritable past 4 MiB or 4 s of queue | the inner protocol told [`pause_writing`](Protocol::pause_writing) for the wait, [`resume_writing`](Protocol::resume_writing) after; nothing held or dropped |
/// | a wait over `max_time` | cut to `max_time` | cut to `max_time` |
/// | a wait of 10 ms or less | ignored | ignored |
/// | limit 0 | unlimited | unlimited |
///
/// The wait is Netty's (`TrafficCounter.readTimeToWait` and
/// `writeTimeToWait`): the time the bytes counted in the current check
/// interval take at the limit, less the time the interval has run, plus
/// what was still to wait at the last check. Within 10 ms of a check the
/// last interval is counted in too. One difference: Netty's counter starts
/// as if an empty interval had just passed, which lets a new connection's
/// first burst through one check interval early; twill's counts only the
/// time the connection has been up. 3000 bytes at 1000 B/s right after
/// `connection_made` pause reading for 3 s here, 2 s in Netty.
///
/// # Reads
///
/// Every byte delivered to the inner protocol counts. They are delivered
/// through [`data_received`](Protocol::data_received): the handler does
/// not pass [`get_buffer`](Protocol::get_buffer) on, since its timers call
/// into the protocol too and must never find its input buffer lent out, so
/// a protocol that reads into its own buffer gets one copy per read here
/// (cheap beside the limit it is shaped to). The bytes that went over the limit are delivered; then reading
/// is paused for the wait, so the peer's further writes back up into the
/// kernel and then into the peer, and resumed from a timer.
///
/// The shaper resumes only the pause it made. A protocol that pauses
/// reading itself should do so through its [`ShapingHandle`] (from
/// [`with_handle`](Self::with_handle)): reading then stays paused until
/// the protocol resumes it, whatever the shaper does, and a resume through
/// the handle waits for the shaper's pause to end. twill's [`Transport`]
/// cannot say who paused reading, so a pause made on the transport
/// directly while the shaper holds reading is undone when the shaper's
/// wait ends.
///
/// # Writes: how twill departs from Netty
///
/// A wrapper cannot intercept what its inner protocol writes; it sees the
/// writes through the transport's counters (see
/// [Seeing writes](crate::handler#seeing-writes)): after each call into
/// the protocol, and when its timers run for writes made elsewhere. When
/// they go over the limit the protocol is told `pause_writing` for the
/// wait and `resume_writing` after it. This is merged with the transport's
/// own watermark pauses: the protocol hears one `pause_writing` when
/// either begins and one `resume_writing` when both are over.
///
/// Netty delays the writes themselves in a queue of its own. twill never
/// holds back or drops a write: the producer is paused instead, as
/// Twisted's [`ThrottlingFactory`](crate::policies::ThrottlingFactory)
/// throttles writes, so memory stays bounded by the transport's watermarks
/// and its hard cap ([`Transport::set_write_buffer_max`]) and there is no
/// second queue to bound (Netty's 4 MiB / 4 s). A protocol that ignores
/// `pause_writing` is not shaped: what it writes is sent as fast as the
/// peer reads it, and only counted.
///
/// A pull producer, which writes its next piece from
/// [`write_complete`](Protocol::write_complete), is shaped too: while the
/// shaper holds the producer, `write_complete` is held back, and it is
/// delivered (after `resume_writing`) when the hold ends, if the write
/// buffer is still empty then; otherwise the flush that empties it brings
/// a new one.
///
/// # Statistics
///
/// [`counter`](Self::counter) gives a [`TrafficCounter`]: bytes in the
/// current and the last check interval, since the connection was made,
/// and the throughputs of the last interval. A timer closes an interval
/// every `check_interval` while the connection is up (none with
/// `Duration::ZERO`: the current interval then lasts the whole
/// connection); `connection_lost` closes the last one and stops every
/// timer. The timers do not keep the handler alive.
///
/// # Examples
///
/// ```
/// use std::{rc::Rc, time::Duration};
/// use twill::{task::Clock, testing::StringTransport, Bytes, Protocol};
/// use twill_protocols::handler::TrafficShapingHandler;
///
/// struct Discard;
/// impl Protocol for Discard {
///     fn data_received(&mut self, _: Bytes) {}
/// }
///
/// let clock = Clock::new();
/// let mut handler = TrafficShapingHandler::new(Discard)
///     .read_limit(1000)
///     .clock(Rc::new(clock.clone()));
/// let recorder = StringTransport::new();
/// handler.connection_made(&recorder.transport());
///
/// handler.data_received(Bytes::from(vec![0; 3000])); // 3 s worth at once
/// assert!(recorder.reading_paused());
/// clock.advance(Duration::from_millis(2990));
/// assert!(recorder.reading_paused());
/// clock.advance(Duration::from_millis(10));
/// assert!(!recorder.reading_paused());
/// assert_eq!(handler.counter().cumulative_read_bytes(), 3000);
/// ```
///
/// It stacks with the other handlers:
///
/// ```
/// use twill::{Bytes, Protocol, Transport};
/// use twill_protocols::handler::{LoggingHandler, TrafficShapingHandler};
///
/// struct Echo(Option<Transport>);
/// impl Protocol for Echo {
///     fn connection_made(&mut self, transport: &Transport) {
///         self.0 = Some(transport.clone());
///     }
///     fn data_received(&mut self, data: Bytes) {
///         self.0.as_ref().unwrap().write(data);
///     }
/// }
///
/// let reactor = twill::Reactor::new()?;
/// reactor.listen_tcp("127.0.0.1:0", |_peer| {
///     LoggingHandler::new(TrafficShapingHandler::new(Echo(None)).read_limit(64 * 1024))
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct TrafficShapingHandler<P> {
    shared: Rc<Shared<P>>,
    time: Option<Rc<dyn ReactorTime>>,
}

/// The inner protocol's handle on its [`TrafficShapingHandler`]: pause
/// reading without the shaper undoing it, and read the statistics. Clones
/// share the handler.
#[derive(Clone)]
pub struct ShapingHandle {
    core: Rc<Core>,
}

/// Which way traffic goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Way {
    Read,
    Write,
}

/// Everything but the protocol: what the [`ShapingHandle`] shares.
struct Core {
    read_limit: Cell<Option<u64>>,
    write_limit: Cell<Option<u64>>,
    check_interval: Cell<Duration>,
    max_time: Cell<Duration>,
    /// While the connection is up.
    time: RefCell<Option<Rc<dyn ReactorTime>>>,
    transport: RefCell<Option<Transport>>,
    meter: OutputMeter,
    acct: Accounting,
    /// The protocol paused reading through its handle.
    protocol_paused_reading: Cell<bool>,
    /// The shaper paused reading, until `read_timer` runs.
    reads_held: Cell<bool>,
    read_timer: RefCell<Option<DelayedCall>>,
    /// The shaper paused the producer, until `write_timer` runs.
    writes_held: Cell<bool>,
    write_timer: RefCell<Option<DelayedCall>>,
    /// The check-interval timer.
    tick: RefCell<Option<DelayedCall>>,
    producer: ProducerPause,
    /// A `write_complete` came while writes were held.
    write_complete_held: Cell<bool>,
}

impl Core {
    fn new() -> Core {
        Core {
            read_limit: Cell::new(None),
            write_limit: Cell::new(None),
            check_interval: Cell::new(DEFAULT_CHECK_INTERVAL),
            max_time: Cell::new(DEFAULT_MAX_TIME),
            time: RefCell::new(None),
            transport: RefCell::new(None),
            meter: OutputMeter::new(),
            acct: Accounting::new(),
            protocol_paused_reading: Cell::new(false),
            reads_held: Cell::new(false),
            read_timer: RefCell::new(None),
            writes_held: Cell::new(false),
            write_timer: RefCell::new(None),
            tick: RefCell::new(None),
            producer: ProducerPause::default(),
            write_complete_held: Cell::new(false),
        }
    }

    fn now(&self) -> Option<Instant> {
        self.time.borrow().as_ref().map(|time| time.now())
    }

    fn transport(&self) -> Option<Transport> {
        self.transport.borrow().clone()
    }

    fn timer(&self, way: Way) -> &RefCell<Option<DelayedCall>> {
        match way {
            Way::Read => &self.read_timer,
            Way::Write => &self.write_timer,
        }
    }

    fn reading_paused(&self) -> bool {
        self.protocol_paused_reading.get() || self.reads_held.get()
    }

    /// Sets one of the two reasons to pause reading (the protocol's, the
    /// shaper's), pausing or resuming the transport when the outcome
    /// changes.
    fn set_read_pause(&self, reason: &Cell<bool>, paused: bool) {
        let before = self.reading_paused();
        reason.set(paused);
        let after = self.reading_paused();
        if before == after {
            return;
        }
        if let Some(transport) = self.transport() {
            if after {
                transport.pause_reading();
            } else {
                transport.resume_reading();
            }
        }
    }

    fn counter(&self) -> TrafficCounter {
        self.acct.counter(self.check_interval.get())
    }
}

/// What the timers reach: the protocol and the core.
struct Shared<P> {
    inner: RefCell<P>,
    core: Rc<Core>,
}

impl<P: Protocol> Shared<P> {
    /// Calls into the protocol, looking at the output on both sides, then
    /// tells it what changed meanwhile.
    fn call_inner<R>(self: &Rc<Self>, f: impl FnOnce(&mut P) -> R) -> R {
        self.look_at_output();
        let result = f(&mut self.inner.borrow_mut());
        self.look_at_output();
        self.core.producer.take_deferred();
        self.settle();
        result
    }

    /// Tells the protocol to pause or resume writing if that changed, and
    /// passes on a `write_complete` held back while writes were held.
    fn settle(self: &Rc<Self>) {
        self.sync_producer();
        let core = &self.core;
        if core.writes_held.get()
            || !core.write_complete_held.get()
            || self.inner.try_borrow_mut().is_err()
        {
            return;
        }
        core.write_complete_held.set(false);
        if core
            .transport()
            .is_some_and(|transport| transport.write_buffer_size() == 0)
        {
            guarded(core.transport(), "write_complete", || {
                self.call_inner(|inner| inner.write_complete())
            });
        }
    }

    /// Delivers `bytes` read through `deliver`, then pauses reading if
    /// they went over the limit.
    fn read<R>(self: &Rc<Self>, bytes: usize, deliver: impl FnOnce(&mut P) -> R) -> R {
        let core = &self.core;
        let bytes = bytes as u64;
        let wait = match core.now() {
            Some(now) => core.acct.time_to_wait(
                &core.acct.read,
                bytes,
                core.read_limit.get(),
                core.max_time.get(),
                now,
            ),
            None => {
                core.acct.read.add(bytes);
                Duration::ZERO
            }
        };
        let result = self.call_inner(deliver);
        if wait >= MINIMAL_WAIT {
            self.hold(Way::Read, wait);
        }
        result
    }

    /// Counts what was written and sent since the last look; pauses the
    /// producer if the writes went over the limit.
    fn look_at_output(self: &Rc<Self>) {
        let core = &self.core;
        let (Some(transport), Some(now)) = (core.transport(), core.now()) else {
            return;
        };
        let look = core.meter.look(&transport);
        let acct = &core.acct;
        acct.sent
            .set(acct.sent.get().saturating_add(look.drained as u64));
        if look.added == 0 {
            return;
        }
        let wait = acct.time_to_wait(
            &acct.write,
            look.added as u64,
            core.write_limit.get(),
            core.max_time.get(),
            now,
        );
        if wait >= MINIMAL_WAIT {
            self.hold(Way::Write, wait);
        }
    }

    /// Holds traffic `way` back for `wait`, or longer if it already is.
    fn hold(self: &Rc<Self>, way: Way, wait: Duration) {
        let core = &self.core;
        let (Some(time), Some(transport)) = (core.time.borrow().clone(), core.transport()) else {
            return;
        };
        match way {
            Way::Read => core.set_read_pause(&core.reads_held, true),
            Way::Write => core.writes_held.set(true),
        }
        let slot = core.timer(way);
        let due = time.now() + wait;
        if let Some(call) = slot.borrow().as_ref().filter(|call| call.active()) {
            if call.time() < due {
                let _ = call.reset(wait);
            }
            return;
        }
        log::debug!(
            "{}: over the {} limit, pausing {} for {wait:?}",
            transport.peer(),
            match way {
                Way::Read => "read",
                Way::Write => "write",
            },
            match way {
                Way::Read => "reading",
                Way::Write => "the producer",
            },
        );
        let call = call_later_weak(&*time, wait, self, move |shared| shared.release(way));
        *slot.borrow_mut() = Some(call);
    }

    /// A hold's time is up: Netty's `ReopenReadTimerTask`, and the end of
    /// the wait of a delayed write.
    fn release(self: &Rc<Self>, way: Way) {
        let core = &self.core;
        match way {
            Way::Read => core.set_read_pause(&core.reads_held, false),
            Way::Write => {
                core.writes_held.set(false);
                // Writes made meanwhile (by a producer that did not stop,
                // or from elsewhere) may call for a longer hold.
                self.look_at_output();
                self.settle();
            }
        }
    }

    /// Tells the protocol to pause or resume writing when the merged state
    /// (transport or shaper) changed.
    fn sync_producer(self: &Rc<Self>) {
        if self.core.transport.borrow().is_none() {
            return;
        }
        let busy = self.inner.try_borrow_mut().is_err();
        // Also called from the shaper's timers, outside the connection's
        // own guard.
        let transport = self.core.transport();
        match self.core.producer.next(self.core.writes_held.get(), busy) {
            Some(true) => guarded(transport, "pause_writing", || {
                self.call_inner(|inner| inner.pause_writing())
            }),
            Some(false) => guarded(transport, "resume_writing", || {
                self.call_inner(|inner| inner.resume_writing())
            }),
            None => {}
        }
    }

    fn schedule_tick(self: &Rc<Self>) {
        let interval = self.core.check_interval.get();
        if interval.is_zero() {
            return;
        }
        let Some(time) = self.core.time.borrow().clone() else {
            return;
        };
        let call = call_later_weak(&*time, interval, self, Shared::tick);
        *self.core.tick.borrow_mut() = Some(call);
    }

    /// A check interval ended: Netty's `TrafficMonitoringTask`.
    fn tick(self: &Rc<Self>) {
        let Some(now) = self.core.now() else {
            return;
        };
        self.look_at_output();
        self.core.acct.roll(now);
        self.schedule_tick();
        self.settle();
    }

    /// The connection is gone: counts the last writes, closes the last
    /// interval, and stops the timers.
    fn stop(&self) {
        let core = &self.core;
        for slot in [&core.read_timer, &core.write_timer, &core.tick] {
            let call = slot.borrow_mut().take();
            if let Some(call) = call {
                let _ = call.cancel();
            }
        }
        if let (Some(transport), Some(now)) = (core.transport(), core.now()) {
            let look = core.meter.look(&transport);
            let acct = &core.acct;
            acct.write.add(look.added as u64);
            acct.sent
                .set(acct.sent.get().saturating_add(look.drained as u64));
            acct.roll(now);
        }
        core.reads_held.set(false);
        core.writes_held.set(false);
        core.write_complete_held.set(false);
        core.transport.borrow_mut().take();
        core.time.borrow_mut().take();
    }
}

impl<P: Protocol> TrafficShapingHandler<P> {
    /// Wraps `inner` with no limits: set them with
    /// [`read_limit`](Self::read_limit) and
    /// [`write_limit`](Self::write_limit).
    pub fn new(inner: P) -> Self {
        Self::with_handle(|_| inner)
    }

    /// As [`new`](Self::new), building the protocol with a
    /// [`ShapingHandle`] on this handler.
    pub fn with_handle(build: impl FnOnce(ShapingHandle) -> P) -> Self {
        let core = Rc::new(Core::new());
        let inner = build(ShapingHandle { core: core.clone() });
        TrafficShapingHandler {
            shared: Rc::new(Shared {
                inner: RefCell::new(inner),
                core,
            }),
            time: None,
        }
    }

    /// Reads at most `bytes_per_second` on average (Netty's `readLimit`);
    /// 0, the default, means no limit.
    pub fn read_limit(self, bytes_per_second: u64) -> Self {
        self.shared
            .core
            .read_limit
            .set((bytes_per_second > 0).then_some(bytes_per_second));
        self
    }

    /// Lets the protocol write at most `bytes_per_second` on average
    /// (Netty's `writeLimit`), by pausing it; 0, the default, means no
    /// limit.
    pub fn write_limit(self, bytes_per_second: u64) -> Self {
        self.shared
            .core
            .write_limit
            .set((bytes_per_second > 0).then_some(bytes_per_second));
        self
    }

    /// Closes an accounting period for the [statistics](Self::counter)
    /// every `interval` (Netty's `checkInterval`, 1 s by default);
    /// `Duration::ZERO` keeps no periods, and a positive interval under a
    /// millisecond is raised to one. The limits then apply to the average
    /// over the period so far, or over the last one just after a check.
    pub fn check_interval(self, interval: Duration) -> Self {
        self.shared
            .core
            .check_interval
            .set(at_least_a_millisecond(interval));
        self
    }

    /// The longest a single pause may last (Netty's `maxTime`, 15 s by
    /// default). A wait of 10 ms or less is never taken, so a `max` that
    /// short turns shaping off.
    pub fn max_time(self, max: Duration) -> Self {
        self.shared.core.max_time.set(max);
        self
    }

    /// Uses `time` for the timers instead of the reactor.
    pub fn clock(mut self, time: Rc<dyn ReactorTime>) -> Self {
        self.time = Some(time);
        self
    }

    /// A handle on this handler, as [`with_handle`](Self::with_handle)
    /// gives the protocol.
    pub fn handle(&self) -> ShapingHandle {
        ShapingHandle {
            core: self.shared.core.clone(),
        }
    }

    /// The statistics so far.
    pub fn counter(&self) -> TrafficCounter {
        self.shared.core.counter()
    }

    /// Whether the shaper holds reading paused now.
    pub fn reads_shaped(&self) -> bool {
        self.shared.core.reads_held.get()
    }

    /// Whether the shaper holds the producer paused now (the protocol may
    /// be paused by the transport too).
    pub fn writes_shaped(&self) -> bool {
        self.shared.core.writes_held.get()
    }

    /// The wrapped protocol.
    ///
    /// # Panics
    ///
    /// If called from inside the protocol's own callbacks.
    pub fn inner(&self) -> Ref<'_, P> {
        self.shared.inner.borrow()
    }

    /// The wrapped protocol, mutably.
    ///
    /// # Panics
    ///
    /// If called from inside the protocol's own callbacks.
    pub fn inner_mut(&mut self) -> RefMut<'_, P> {
        self.shared.inner.borrow_mut()
    }
}

impl ShapingHandle {
    /// Pauses reading for the protocol's own reasons: reading stays paused
    /// until [`resume_reading`](Self::resume_reading), whatever the shaper
    /// does. Before the connection is made, it starts paused.
    pub fn pause_reading(&self) {
        let core = &self.core;
        core.set_read_pause(&core.protocol_paused_reading, true);
    }

    /// Undoes [`pause_reading`](Self::pause_reading): reading resumes now,
    /// or when the shaper's own pause ends.
    pub fn resume_reading(&self) {
        let core = &self.core;
        core.set_read_pause(&core.protocol_paused_reading, false);
    }

    /// The statistics so far.
    pub fn counter(&self) -> TrafficCounter {
        self.core.counter()
    }

    /// The connection's transport, while it is up.
    pub fn transport(&self) -> Option<Transport> {
        self.core.transport()
    }
}

impl<P: Protocol> Protocol for TrafficShapingHandler<P> {
    /// Starts the statistics timer, then passes the event on.
    ///
    /// # Panics
    ///
    /// With no [`clock`](Self::clock) given and no reactor on this thread.
    fn connection_made(&mut self, transport: &Transport) {
        let core = &self.shared.core;
        let time = time_or_reactor(self.time.as_ref());
        core.acct.start(time.now());
        *core.time.borrow_mut() = Some(time);
        *core.transport.borrow_mut() = Some(transport.clone());
        core.meter.look(transport);
        if core.reading_paused() {
            transport.pause_reading();
        }
        self.shared.schedule_tick();
        self.shared
            .call_inner(|inner| inner.connection_made(transport));
    }

    fn data_received(&mut self, data: Bytes) {
        let bytes = data.len();
        self.shared.read(bytes, |inner| inner.data_received(data));
    }

    fn eof_received(&mut self) -> bool {
        self.shared.call_inner(|inner| inner.eof_received())
    }

    /// Closes the last accounting period and stops the timers, then passes
    /// the event on.
    fn connection_lost(&mut self, reason: &Reason) {
        self.shared.stop();
        self.shared.inner.borrow_mut().connection_lost(reason);
    }

    /// The transport's write buffer is over its high watermark: passed on
    /// unless the shaper has the protocol paused already.
    fn pause_writing(&mut self) {
        self.shared.core.producer.set_transport(true);
        self.shared.sync_producer();
    }

    /// The transport's write buffer drained: passed on unless the shaper
    /// still holds the protocol paused.
    fn resume_writing(&mut self) {
        self.shared.core.producer.set_transport(false);
        self.shared.sync_producer();
    }

    /// The write buffer emptied: passed on, or held back while the shaper
    /// holds the producer (see [Writes](Self#writes-how-twill-departs-from-netty)).
    fn write_complete(&mut self) {
        if self.shared.core.writes_held.get() {
            self.shared.core.write_complete_held.set(true);
        } else {
            self.shared.call_inner(|inner| inner.write_complete());
        }
    }

    fn event_received(&mut self, event: Event) {
        self.shared.call_inner(|inner| inner.event_received(event));
    }
}

impl<P> fmt::Debug for TrafficShapingHandler<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let core = &self.shared.core;
        f.debug_struct("TrafficShapingHandler")
            .field("read_limit", &core.read_limit.get())
            .field("write_limit", &core.write_limit.get())
            .field("check_interval", &core.check_interval.get())
            .field("max_time", &core.max_time.get())
            .field("reads_shaped", &core.reads_held.get())
            .field("writes_shaped", &core.writes_held.get())
            .field("connected", &core.transport.borrow().is_some())
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for ShapingHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShapingHandle")
            .field("connected", &self.core.transport.borrow().is_some())
            .field("reading_paused", &self.core.protocol_paused_reading.get())
            .finish()
    }
}
