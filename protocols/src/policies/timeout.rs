//! [`TimeoutProtocol`]: Twisted's `TimeoutMixin` (and `TimeoutProtocol`) as
//! a wrapper with a [`TimeoutHandle`].

use std::cell::{Cell, Ref, RefCell, RefMut};
use std::fmt;
use std::rc::{Rc, Weak};
use std::time::Duration;

use twill::{Bytes, DelayedCall, Protocol, ReactorTime, Reason, Transport};

use crate::handler::output::{time_or_reactor, OutputMeter};
use crate::handler::timer::{call_later_weak, guarded};

/// A [`Protocol`] under a [`TimeoutProtocol`]: what happens when its
/// timeout expires. Twisted's `TimeoutMixin.timeoutConnection`.
///
/// The default closes the connection gracefully; implement the trait with
/// no methods (`impl TimeoutAware for MyProtocol {}`) to keep it.
pub trait TimeoutAware: Protocol {
    /// The timeout expired; the countdown is over (restart it with
    /// [`TimeoutHandle::set_timeout`]). Default:
    /// [`transport.lose_connection()`](Transport::lose_connection).
    fn timeout_connection(&mut self, transport: &Transport) {
        transport.lose_connection();
    }
}

/// Wraps a [`TimeoutAware`] protocol with a countdown it controls through a
/// [`TimeoutHandle`]: Twisted's `TimeoutMixin`.
///
/// The countdown runs for the current period (none by default, or set with
/// [`timeout`](Self::timeout), Twisted's `timeOut` attribute) from
/// `connection_made`. The protocol moves it with the handle, given by
/// [`with_handle`](Self::with_handle):
/// [`set_timeout`](TimeoutHandle::set_timeout) changes the period
/// (restarting the countdown) or, with `None`, cancels it;
/// [`reset_timeout`](TimeoutHandle::reset_timeout) restarts it. When it
/// runs out, the protocol's
/// [`timeout_connection`](TimeoutAware::timeout_connection) is called
/// (default: close the connection). `connection_lost` stops it.
///
/// As in Twisted, the mixin does not reset itself: the protocol calls
/// `reset_timeout` when it sees activity it cares about. With
/// [`reset_on_activity`](Self::reset_on_activity) the wrapper does it on
/// every read and every write it sees (Twisted's `TimeoutFactory` /
/// `TimeoutProtocol`; writes are seen as described under
/// [Seeing writes](crate::handler#seeing-writes)).
///
/// # Examples
///
/// A protocol that gives a client 3 s between lines, Twisted's test
/// timeline:
///
/// ```
/// use std::{rc::Rc, time::Duration};
/// use twill::{task::Clock, testing::StringTransport, Bytes, Protocol};
/// use twill_protocols::policies::{TimeoutAware, TimeoutHandle, TimeoutProtocol};
///
/// struct Patient {
///     timeout: TimeoutHandle,
/// }
///
/// impl Protocol for Patient {
///     fn data_received(&mut self, _: Bytes) {
///         self.timeout.reset_timeout();
///     }
/// }
///
/// impl TimeoutAware for Patient {}
///
/// let clock = Clock::new();
/// let mut protocol = TimeoutProtocol::with_handle(|timeout| Patient { timeout })
///     .timeout(Duration::from_secs(3))
///     .clock(Rc::new(clock.clone()));
/// let recorder = StringTransport::new();
/// protocol.connection_made(&recorder.transport());
///
/// clock.advance(Duration::from_millis(2500));
/// protocol.data_received(Bytes::from_static(b"hi\r\n")); // expiry moves to 5.5 s
/// clock.advance(Duration::from_millis(2900));
/// assert!(!recorder.disconnecting());
/// clock.advance(Duration::from_millis(100));
/// assert!(recorder.disconnecting());
/// ```
pub struct TimeoutProtocol<P> {
    shared: Rc<Shared<P>>,
    time: Option<Rc<dyn ReactorTime>>,
}

struct Shared<P> {
    inner: RefCell<P>,
    state: Rc<State>,
}

struct State {
    period: Cell<Option<Duration>>,
    reset_on_activity: Cell<bool>,
    time: RefCell<Option<Rc<dyn ReactorTime>>>,
    transport: RefCell<Option<Transport>>,
    call: RefCell<Option<DelayedCall>>,
    /// Calls `timeout_connection` on the protocol; set while connected.
    expire: RefCell<Option<Rc<dyn Fn()>>>,
    meter: OutputMeter,
    /// The countdown ran out while the protocol was busy.
    overdue: Cell<bool>,
}

impl State {
    fn connected(&self) -> bool {
        self.expire.borrow().is_some()
    }

    fn pending(&self) -> bool {
        self.call.borrow().as_ref().is_some_and(DelayedCall::active)
    }

    fn cancel(&self) {
        if let Some(call) = self.call.borrow_mut().take() {
            let _ = call.cancel();
        }
    }

    /// Starts the countdown afresh for `period`.
    fn start(self: &Rc<Self>, period: Duration) {
        self.cancel();
        let Some(time) = self.time.borrow().clone() else {
            return;
        };
        let call = call_later_weak(&*time, period, self, |state| {
            state.call.borrow_mut().take();
            let expire = state.expire.borrow().clone();
            if let Some(expire) = expire {
                expire();
            }
        });
        *self.call.borrow_mut() = Some(call);
    }

    /// Restarts a running countdown with the current period.
    fn reset(&self) {
        let Some(period) = self.period.get() else {
            return;
        };
        if let Some(call) = self.call.borrow().as_ref().filter(|call| call.active()) {
            let _ = call.reset(period);
        }
    }
}

/// A protocol's handle on its [`TimeoutProtocol`]: Twisted's
/// `TimeoutMixin` methods. Clones share the countdown.
#[derive(Clone)]
pub struct TimeoutHandle {
    state: Rc<State>,
}

impl TimeoutHandle {
    /// Sets the period and returns the previous one (Twisted's
    /// `setTimeout`). `None` cancels the countdown; a period restarts it
    /// for that long (or starts it, if none was running). Before the
    /// connection is made, this sets the period it will start with; after
    /// it is lost, only the period is recorded.
    pub fn set_timeout(&self, period: Option<Duration>) -> Option<Duration> {
        let previous = self.state.period.replace(period);
        if self.state.connected() {
            match period {
                None => self.state.cancel(),
                Some(_) if self.state.pending() => self.state.reset(),
                Some(period) => self.state.start(period),
            }
        }
        previous
    }

    /// Restarts the countdown with the current period (Twisted's
    /// `resetTimeout`); does nothing if no countdown is running (never
    /// set, cancelled, or expired).
    pub fn reset_timeout(&self) {
        self.state.reset();
    }

    /// The current period.
    pub fn timeout(&self) -> Option<Duration> {
        self.state.period.get()
    }

    /// Whether a countdown is running.
    pub fn is_pending(&self) -> bool {
        self.state.pending()
    }
}

impl fmt::Debug for TimeoutHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TimeoutHandle")
            .field("timeout", &self.timeout())
            .field("pending", &self.is_pending())
            .finish()
    }
}

impl<P: TimeoutAware> Shared<P> {
    fn expire(self: &Rc<Self>) {
        let Some(transport) = self.state.transport.borrow().clone() else {
            return;
        };
        match self.inner.try_borrow_mut() {
            Ok(mut inner) => {
                log::debug!(
                    "timeout expired for the connection with {}",
                    transport.peer()
                );
                guarded(Some(transport.clone()), "timeout_connection", || {
                    inner.timeout_connection(&transport)
                });
            }
            // Expired inside one of the protocol's own callbacks (a test
            // advancing its clock from there): expire when it returns.
            Err(_) => self.state.overdue.set(true),
        }
    }

    /// Calls into the protocol; with `reset_on_activity`, what it wrote
    /// restarts the countdown.
    fn call_inner<R>(self: &Rc<Self>, f: impl FnOnce(&mut P) -> R) -> R {
        let transport = self.state.transport.borrow().clone();
        if let Some(transport) = &transport {
            self.state.meter.look(transport);
        }
        let result = f(&mut self.inner.borrow_mut());
        if let Some(transport) = &transport {
            if self.state.meter.added(transport) > 0 && self.state.reset_on_activity.get() {
                self.state.reset();
            }
        }
        if self.state.overdue.replace(false) {
            self.expire();
        }
        result
    }
}

impl<P: TimeoutAware> TimeoutProtocol<P> {
    /// Wraps `inner`, with no timeout until one is set.
    pub fn new(inner: P) -> Self {
        Self::with_handle(|_| inner)
    }

    /// Wraps the protocol `build` makes with the [`TimeoutHandle`] it is
    /// given.
    pub fn with_handle(build: impl FnOnce(TimeoutHandle) -> P) -> Self {
        let state = Rc::new(State {
            period: Cell::new(None),
            reset_on_activity: Cell::new(false),
            time: RefCell::new(None),
            transport: RefCell::new(None),
            call: RefCell::new(None),
            expire: RefCell::new(None),
            meter: OutputMeter::new(),
            overdue: Cell::new(false),
        });
        let inner = build(TimeoutHandle {
            state: state.clone(),
        });
        TimeoutProtocol {
            shared: Rc::new(Shared {
                inner: RefCell::new(inner),
                state,
            }),
            time: None,
        }
    }

    /// The period the countdown starts with at `connection_made`
    /// (Twisted's `timeOut`).
    pub fn timeout(self, period: Duration) -> Self {
        self.shared.state.period.set(Some(period));
        self
    }

    /// Restarts the countdown on every read and every write seen (off by
    /// default, as in `TimeoutMixin`; on, this is Twisted's
    /// `TimeoutProtocol`).
    pub fn reset_on_activity(self, on: bool) -> Self {
        self.shared.state.reset_on_activity.set(on);
        self
    }

    /// Uses `time` for the countdown instead of the reactor.
    pub fn clock(mut self, time: Rc<dyn ReactorTime>) -> Self {
        self.time = Some(time);
        self
    }

    /// A handle on the countdown, as [`with_handle`](Self::with_handle)
    /// gives the protocol.
    pub fn handle(&self) -> TimeoutHandle {
        TimeoutHandle {
            state: self.shared.state.clone(),
        }
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

impl<P: TimeoutAware> Protocol for TimeoutProtocol<P> {
    /// Starts the countdown if a period is set, then passes the event on.
    ///
    /// # Panics
    ///
    /// With no [`clock`](Self::clock) given and no reactor on this thread.
    fn connection_made(&mut self, transport: &Transport) {
        let state = &self.shared.state;
        *state.time.borrow_mut() = Some(time_or_reactor(self.time.as_ref()));
        *state.transport.borrow_mut() = Some(transport.clone());
        let weak: Weak<Shared<P>> = Rc::downgrade(&self.shared);
        *state.expire.borrow_mut() = Some(Rc::new(move || {
            if let Some(shared) = weak.upgrade() {
                shared.expire();
            }
        }));
        if let Some(period) = state.period.get() {
            state.start(period);
        }
        self.shared
            .call_inner(|inner| inner.connection_made(transport));
    }

    fn data_received(&mut self, data: Bytes) {
        if self.shared.state.reset_on_activity.get() {
            self.shared.state.reset();
        }
        self.shared.call_inner(|inner| inner.data_received(data));
    }

    fn eof_received(&mut self) -> bool {
        self.shared.call_inner(|inner| inner.eof_received())
    }

    fn connection_lost(&mut self, reason: &Reason) {
        let state = &self.shared.state;
        state.cancel();
        state.expire.borrow_mut().take();
        state.transport.borrow_mut().take();
        state.time.borrow_mut().take();
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

    fn event_received(&mut self, event: twill::Event) {
        self.shared.call_inner(|inner| inner.event_received(event));
    }
}

impl<P> fmt::Debug for TimeoutProtocol<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = &self.shared.state;
        f.debug_struct("TimeoutProtocol")
            .field("timeout", &state.period.get())
            .field("pending", &state.pending())
            .field("reset_on_activity", &state.reset_on_activity.get())
            .finish_non_exhaustive()
    }
}
