//! [`IdleStateHandler`]: Netty's idle detection, told to the
//! protocol.

use std::cell::{Cell, Ref, RefCell, RefMut};
use std::fmt;
use std::rc::Rc;
use std::time::{Duration, Instant};

use twill::{Bytes, DelayedCall, Event, Protocol, ReactorTime, Reason, Transport};

use super::output::{at_least_a_millisecond, time_or_reactor, OutputMeter};
use super::timer::{call_later_weak, guarded};

/// Which way a connection has been idle: Netty's `IdleState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IdleState {
    /// Nothing was read for the reader idle time.
    ReaderIdle,
    /// Nothing was written for the writer idle time.
    WriterIdle,
    /// Nothing was read or written for the all idle time.
    AllIdle,
}

impl IdleState {
    fn index(self) -> usize {
        match self {
            IdleState::ReaderIdle => 0,
            IdleState::WriterIdle => 1,
            IdleState::AllIdle => 2,
        }
    }
}

impl fmt::Display for IdleState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IdleState::ReaderIdle => "READER_IDLE",
            IdleState::WriterIdle => "WRITER_IDLE",
            IdleState::AllIdle => "ALL_IDLE",
        })
    }
}

/// One idle notification: Netty's `IdleStateEvent`.
///
/// The first event of an idle streak (since the last activity of that
/// kind) [is first](Self::is_first); the ones that follow, one per idle
/// period while the connection stays idle, are not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IdleStateEvent {
    state: IdleState,
    first: bool,
}

impl IdleStateEvent {
    /// The first reader-idle event of a streak.
    pub const FIRST_READER_IDLE: IdleStateEvent = IdleStateEvent::new(IdleState::ReaderIdle, true);
    /// A later reader-idle event.
    pub const READER_IDLE: IdleStateEvent = IdleStateEvent::new(IdleState::ReaderIdle, false);
    /// The first writer-idle event of a streak.
    pub const FIRST_WRITER_IDLE: IdleStateEvent = IdleStateEvent::new(IdleState::WriterIdle, true);
    /// A later writer-idle event.
    pub const WRITER_IDLE: IdleStateEvent = IdleStateEvent::new(IdleState::WriterIdle, false);
    /// The first all-idle event of a streak.
    pub const FIRST_ALL_IDLE: IdleStateEvent = IdleStateEvent::new(IdleState::AllIdle, true);
    /// A later all-idle event.
    pub const ALL_IDLE: IdleStateEvent = IdleStateEvent::new(IdleState::AllIdle, false);

    /// An event of `state`, first of its streak or not.
    pub const fn new(state: IdleState, first: bool) -> IdleStateEvent {
        IdleStateEvent { state, first }
    }

    /// Which way the connection is idle.
    pub fn state(&self) -> IdleState {
        self.state
    }

    /// Whether this is the first event since the last activity.
    pub fn is_first(&self) -> bool {
        self.first
    }
}

impl fmt::Display for IdleStateEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first {
            write!(f, "IdleStateEvent({}, first)", self.state)
        } else {
            write!(f, "IdleStateEvent({})", self.state)
        }
    }
}

/// Wraps a protocol and tells it when nothing has been read, written, or
/// either, for a while: Netty's `IdleStateHandler`.
///
/// Each of the three periods (reader, writer, all) is off when
/// `Duration::ZERO`; a positive period shorter than a millisecond is raised
/// to one. The timers start at `connection_made` and stop at
/// `connection_lost`. When a period passes with no activity of its kind the
/// protocol's [`event_received`](Protocol::event_received) gets an
/// [`Event`] holding an [`IdleStateEvent`], then again every period while
/// the connection stays idle; activity starts a new streak whose first
/// event [is first](IdleStateEvent::is_first). A codec
/// [`Handler`](crate::codec::Handler) inside a
/// [`Framed`](crate::codec::Framed) gets it in its own
/// [`event_received`](crate::codec::Handler::event_received). The event
/// runs from the handler's timer, between the protocol's other callbacks;
/// writes made there count as write activity.
///
/// # What counts as activity
///
/// Reading is every [`data_received`](Protocol::data_received). Writing is
/// every byte written to the connection, read from the transport's counters
/// before and after each call into the protocol and at each timer (see
/// [Seeing writes](crate::handler#seeing-writes)); a write counts when it
/// is queued (Netty counts it when it completes). A write made outside the
/// protocol's callbacks is noticed at the next look; write through the
/// [`IdleHandle`] (given by [`with_handle`](Self::with_handle)) to have it
/// counted at its exact time.
///
/// With [`observe_output`](Self::observe_output), as in Netty, a writer- or
/// all-idle event after the first of a streak is not sent while the write
/// buffer changed size since the last check: a slow peer draining a big
/// write is not idle.
///
/// # Examples
///
/// A heartbeat: ping after 10 s without sending, hang up after 30 s
/// without hearing anything.
///
/// ```
/// use std::{rc::Rc, time::Duration};
/// use twill::{task::Clock, testing::StringTransport, Bytes, Event, Protocol, Transport};
/// use twill_protocols::handler::{IdleHandle, IdleState, IdleStateEvent, IdleStateHandler};
///
/// struct Heartbeat {
///     idle: IdleHandle,
/// }
///
/// impl Protocol for Heartbeat {
///     fn data_received(&mut self, _: Bytes) {}
///
///     fn event_received(&mut self, event: Event) {
///         let Some(idle) = event.downcast_ref::<IdleStateEvent>() else { return };
///         match idle.state() {
///             IdleState::WriterIdle => self.idle.write("ping\n"),
///             IdleState::ReaderIdle => self.idle.transport().unwrap().lose_connection(),
///             IdleState::AllIdle => {}
///         }
///     }
/// }
///
/// let secs = Duration::from_secs;
/// let clock = Clock::new();
/// let mut handler =
///     IdleStateHandler::with_handle(secs(30), secs(10), Duration::ZERO, |idle| Heartbeat { idle })
///         .clock(Rc::new(clock.clone()));
/// let recorder = StringTransport::new();
/// handler.connection_made(&recorder.transport());
///
/// clock.advance(secs(10));
/// assert_eq!(recorder.value(), b"ping\n");
/// handler.data_received(Bytes::from_static(b"pong\n"));
/// clock.pump(&[secs(10), secs(10)]);
/// assert_eq!(recorder.value(), b"ping\nping\nping\n");
/// assert!(!recorder.disconnecting());
/// clock.advance(secs(10)); // 30 s since the pong
/// assert!(recorder.disconnecting());
/// ```
pub struct IdleStateHandler<P> {
    shared: Rc<Shared<P>>,
    time: Option<Rc<dyn ReactorTime>>,
}

struct Shared<P> {
    inner: RefCell<P>,
    core: Rc<Core>,
    /// Events that came up while the protocol was busy: idle events, and
    /// events its connection passed on while it ran an idle event (from
    /// this handler's timer, outside the connection's own callbacks).
    held: RefCell<Vec<Event>>,
}

/// The state the handle shares: everything but the protocol.
struct Core {
    /// Reader, writer, all; zero = off.
    periods: [Duration; 3],
    observe_output: Cell<bool>,
    time: RefCell<Option<Rc<dyn ReactorTime>>>,
    transport: RefCell<Option<Transport>>,
    meter: OutputMeter,
    last_read: Cell<Instant>,
    last_write: Cell<Instant>,
    first: [Cell<bool>; 3],
    calls: [RefCell<Option<DelayedCall>>; 3],
    /// For `observe_output`: what the last check saw.
    checked_write: Cell<Instant>,
    checked_size: Cell<usize>,
}

/// A protocol's handle on its [`IdleStateHandler`]: write through it, or
/// report activity the handler cannot see. Clones share the handler.
#[derive(Clone)]
pub struct IdleHandle {
    core: Rc<Core>,
}

impl IdleHandle {
    /// Writes `data` to the connection and counts it as write activity.
    /// Before the connection is made or after it is lost the data is
    /// dropped, with a warning in the log.
    pub fn write(&self, data: impl Into<Bytes>) {
        let transport = self.core.transport.borrow().clone();
        match transport {
            Some(transport) => {
                transport.write(data);
                // Counted now, at its exact time: the next look must not
                // count it again.
                self.core.meter.look(&transport);
                self.core.stamp_write();
            }
            None => log::warn!("IdleHandle::write with no connection: the data is dropped"),
        }
    }

    /// Counts a read now (Netty's `resetReadTimeout`): the reader- and
    /// all-idle countdowns start again.
    pub fn reset_read_timeout(&self) {
        self.core.stamp_read();
    }

    /// Counts a write now (Netty's `resetWriteTimeout`): for writes the
    /// handler cannot see, e.g. made on the transport from a timer.
    pub fn reset_write_timeout(&self) {
        self.core.stamp_write();
    }

    /// The connection's transport, while it is up.
    pub fn transport(&self) -> Option<Transport> {
        self.core.transport.borrow().clone()
    }
}

impl fmt::Debug for IdleHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdleHandle")
            .field("connected", &self.core.transport.borrow().is_some())
            .finish()
    }
}

impl Core {
    fn new(reader: Duration, writer: Duration, all: Duration) -> Rc<Core> {
        let now = Instant::now();
        Rc::new(Core {
            periods: [reader, writer, all].map(at_least_a_millisecond),
            observe_output: Cell::new(false),
            time: RefCell::new(None),
            transport: RefCell::new(None),
            meter: OutputMeter::new(),
            last_read: Cell::new(now),
            last_write: Cell::new(now),
            first: [Cell::new(true), Cell::new(true), Cell::new(true)],
            calls: [RefCell::new(None), RefCell::new(None), RefCell::new(None)],
            checked_write: Cell::new(now),
            checked_size: Cell::new(0),
        })
    }

    fn now(&self) -> Option<Instant> {
        self.time.borrow().as_ref().map(|time| time.now())
    }

    fn stamp_read(&self) {
        if let Some(now) = self.now() {
            self.last_read.set(now);
            self.first[0].set(true);
            self.first[2].set(true);
        }
    }

    fn stamp_write(&self) {
        if let Some(now) = self.now() {
            self.last_write.set(now);
            self.first[1].set(true);
            self.first[2].set(true);
        }
    }

    /// Reads the output counters; bytes written since the last look are
    /// write activity.
    fn look_at_output(&self) {
        let transport = self.transport.borrow().clone();
        if let Some(transport) = transport {
            if self.meter.added(&transport) > 0 {
                self.stamp_write();
            }
        }
    }

    /// Netty's `hasOutputChanged`: whether writing made progress since the
    /// last check. The first event of a streak is never held back.
    fn output_changed(&self, first: bool) -> bool {
        let last_write = self.last_write.get();
        let mut changed = self.checked_write.replace(last_write) != last_write;
        if let Some(transport) = self.transport.borrow().as_ref() {
            let size = transport.write_buffer_size();
            changed |= self.checked_size.replace(size) != size;
        }
        changed && !first
    }

    fn cancel_timers(&self) {
        for call in &self.calls {
            if let Some(call) = call.borrow_mut().take() {
                let _ = call.cancel();
            }
        }
    }
}

impl<P: Protocol> Shared<P> {
    /// Calls into the protocol, looking at the write buffer on both sides,
    /// then delivers the events that came up meanwhile.
    fn call_inner<R>(self: &Rc<Self>, f: impl FnOnce(&mut P) -> R) -> R {
        self.core.look_at_output();
        let result = f(&mut self.inner.borrow_mut());
        self.core.look_at_output();
        let held = std::mem::take(&mut *self.held.borrow_mut());
        for event in held {
            self.deliver(event);
        }
        result
    }

    fn schedule(self: &Rc<Self>, state: IdleState, delay: Duration) {
        let Some(time) = self.core.time.borrow().clone() else {
            return;
        };
        let call = call_later_weak(&*time, delay, self, move |shared| shared.fire(state));
        *self.core.calls[state.index()].borrow_mut() = Some(call);
    }

    /// A timer ran: Netty's `ReaderIdleTimeoutTask` and friends.
    fn fire(self: &Rc<Self>, state: IdleState) {
        let core = &self.core;
        let Some(now) = core.now() else { return };
        let closing = core.transport.borrow().as_ref().map(Transport::is_closing);
        if closing != Some(false) {
            // Closed or closing: connection_lost follows, nothing is idle.
            return;
        }
        core.look_at_output();
        let last = match state {
            IdleState::ReaderIdle => core.last_read.get(),
            IdleState::WriterIdle => core.last_write.get(),
            IdleState::AllIdle => core.last_read.get().max(core.last_write.get()),
        };
        let period = core.periods[state.index()];
        let idle_for = now.saturating_duration_since(last);
        if idle_for < period {
            self.schedule(state, period - idle_for);
            return;
        }
        self.schedule(state, period);
        let first = core.first[state.index()].replace(false);
        if state != IdleState::ReaderIdle && core.observe_output.get() && core.output_changed(first)
        {
            return;
        }
        self.deliver_from_timer(IdleStateEvent::new(state, first));
    }

    /// Delivers an idle event from the timer, under the connection's
    /// guard against a panicking protocol (see [`guarded`]).
    fn deliver_from_timer(self: &Rc<Self>, event: IdleStateEvent) {
        let transport = self.core.transport.borrow().clone();
        guarded(transport, "event_received", || {
            self.deliver(Event::new(event))
        });
    }

    fn deliver(self: &Rc<Self>, event: Event) {
        if self.core.transport.borrow().is_none() {
            return;
        }
        if self.inner.try_borrow_mut().is_err() {
            // The timer ran inside one of the protocol's own callbacks (a
            // test advancing its clock from there): tell it when it returns.
            self.held.borrow_mut().push(event);
            return;
        }
        self.call_inner(|inner| inner.event_received(event));
    }
}

impl<P: Protocol> IdleStateHandler<P> {
    /// Wraps `inner` with the given reader, writer and all idle times
    /// (`Duration::ZERO` turns one off).
    pub fn new(inner: P, reader_idle: Duration, writer_idle: Duration, all_idle: Duration) -> Self {
        Self::with_handle(reader_idle, writer_idle, all_idle, |_| inner)
    }

    /// As [`new`](Self::new), building the protocol with an [`IdleHandle`]
    /// on this handler.
    pub fn with_handle(
        reader_idle: Duration,
        writer_idle: Duration,
        all_idle: Duration,
        build: impl FnOnce(IdleHandle) -> P,
    ) -> Self {
        let core = Core::new(reader_idle, writer_idle, all_idle);
        let inner = build(IdleHandle { core: core.clone() });
        IdleStateHandler {
            shared: Rc::new(Shared {
                inner: RefCell::new(inner),
                core,
                held: RefCell::new(Vec::new()),
            }),
            time: None,
        }
    }

    /// Holds back writer- and all-idle events (after the first of a streak)
    /// while the write buffer keeps changing: Netty's `observeOutput`. Off
    /// by default.
    pub fn observe_output(self, on: bool) -> Self {
        self.shared.core.observe_output.set(on);
        self
    }

    /// Uses `time` for the timers instead of the reactor.
    pub fn clock(mut self, time: Rc<dyn ReactorTime>) -> Self {
        self.time = Some(time);
        self
    }

    /// A handle on this handler, as [`with_handle`](Self::with_handle)
    /// gives the protocol.
    pub fn handle(&self) -> IdleHandle {
        IdleHandle {
            core: self.shared.core.clone(),
        }
    }

    /// The reader idle time (zero: off).
    pub fn reader_idle_time(&self) -> Duration {
        self.shared.core.periods[0]
    }

    /// The writer idle time (zero: off).
    pub fn writer_idle_time(&self) -> Duration {
        self.shared.core.periods[1]
    }

    /// The all idle time (zero: off).
    pub fn all_idle_time(&self) -> Duration {
        self.shared.core.periods[2]
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

impl<P: Protocol> Protocol for IdleStateHandler<P> {
    /// Starts the timers, then passes the event on.
    ///
    /// # Panics
    ///
    /// With no [`clock`](Self::clock) given and no reactor on this thread.
    fn connection_made(&mut self, transport: &Transport) {
        let core = &self.shared.core;
        let time = time_or_reactor(self.time.as_ref());
        let now = time.now();
        *core.time.borrow_mut() = Some(time);
        *core.transport.borrow_mut() = Some(transport.clone());
        core.meter.look(transport);
        core.last_read.set(now);
        core.last_write.set(now);
        core.checked_write.set(now);
        core.checked_size.set(transport.write_buffer_size());
        for state in [
            IdleState::ReaderIdle,
            IdleState::WriterIdle,
            IdleState::AllIdle,
        ] {
            let period = core.periods[state.index()];
            if !period.is_zero() {
                self.shared.schedule(state, period);
            }
        }
        self.shared
            .call_inner(|inner| inner.connection_made(transport));
    }

    fn data_received(&mut self, data: Bytes) {
        self.shared.call_inner(|inner| inner.data_received(data));
        self.shared.core.stamp_read();
    }

    fn eof_received(&mut self) -> bool {
        self.shared.call_inner(|inner| inner.eof_received())
    }

    fn connection_lost(&mut self, reason: &Reason) {
        let core = &self.shared.core;
        core.cancel_timers();
        core.transport.borrow_mut().take();
        core.time.borrow_mut().take();
        self.shared.inner.borrow_mut().connection_lost(reason);
    }

    fn pause_writing(&mut self) {
        self.shared.call_inner(|inner| inner.pause_writing());
    }

    fn resume_writing(&mut self) {
        self.shared.call_inner(|inner| inner.resume_writing());
    }

    fn write_complete(&mut self) {
        self.shared.call_inner(|inner| inner.write_complete());
    }

    fn event_received(&mut self, event: Event) {
        if self.shared.inner.try_borrow_mut().is_err() {
            // The protocol fired it at its own connection from an idle
            // event, which runs from this handler's timer, so the
            // connection did not know it was busy: it gets the event when
            // that call returns, never re-entered.
            self.shared.held.borrow_mut().push(event);
            return;
        }
        self.shared.call_inner(|inner| inner.event_received(event));
    }
}

impl<P> fmt::Debug for IdleStateHandler<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let core = &self.shared.core;
        f.debug_struct("IdleStateHandler")
            .field("reader_idle", &core.periods[0])
            .field("writer_idle", &core.periods[1])
            .field("all_idle", &core.periods[2])
            .field("observe_output", &core.observe_output.get())
            .field("connected", &core.transport.borrow().is_some())
            .finish_non_exhaustive()
    }
}
