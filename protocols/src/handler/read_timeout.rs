//! [`ReadTimeoutHandler`]: closes a connection that has sent nothing for a
//! while.

use std::cell::{Cell, RefCell};
use std::error::Error;
use std::fmt;
use std::rc::Rc;
use std::time::{Duration, Instant};

use twill::{Bytes, DelayedCall, Protocol, ReactorTime, Reason, Transport};

use super::output::{at_least_a_millisecond, time_or_reactor};

/// The error a [`ReadTimeoutHandler`] closes the connection with: Netty's
/// `ReadTimeoutException`. The inner protocol finds it in
/// [`Reason::Failed`] (downcast the error to check).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadTimeout {
    timeout: Duration,
}

impl ReadTimeout {
    /// The error for a connection that read nothing for `timeout`.
    pub fn new(timeout: Duration) -> ReadTimeout {
        ReadTimeout { timeout }
    }

    /// How long the connection read nothing.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}

impl fmt::Display for ReadTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "read timed out: nothing received for {:?}", self.timeout)
    }
}

impl Error for ReadTimeout {}

/// Wraps any protocol and closes its connection, with a [`ReadTimeout`]
/// error through [`Transport::fail`], when nothing is read for `timeout`:
/// Netty's `ReadTimeoutHandler`.
///
/// The countdown starts at `connection_made` and restarts at every
/// [`data_received`](Protocol::data_received); it stops at
/// `connection_lost`. The connection is closed once; the inner protocol
/// then gets `connection_lost` with [`Reason::Failed`] holding the
/// [`ReadTimeout`]. `Duration::ZERO` turns the handler off; a positive
/// timeout under a millisecond is raised to one.
///
/// Like [`Transport::fail`], the close is graceful: what was written is
/// sent first.
///
/// # Examples
///
/// ```
/// use std::{rc::Rc, time::Duration};
/// use twill::{task::Clock, testing::StringTransport, Bytes, Protocol};
/// use twill_protocols::handler::ReadTimeoutHandler;
///
/// struct Discard;
/// impl Protocol for Discard {
///     fn data_received(&mut self, _: Bytes) {}
/// }
///
/// let clock = Clock::new();
/// let mut handler =
///     ReadTimeoutHandler::new(Discard, Duration::from_secs(30)).clock(Rc::new(clock.clone()));
/// let recorder = StringTransport::new();
/// handler.connection_made(&recorder.transport());
/// clock.advance(Duration::from_secs(20));
/// handler.data_received(Bytes::from_static(b"still here"));
/// clock.advance(Duration::from_secs(20));
/// assert!(!recorder.disconnecting());
/// clock.advance(Duration::from_secs(10));
/// assert!(recorder.failure().unwrap().starts_with("read timed out"));
/// ```
pub struct ReadTimeoutHandler<P> {
    inner: P,
    state: Rc<State>,
    time: Option<Rc<dyn ReactorTime>>,
}

struct State {
    timeout: Duration,
    time: RefCell<Option<Rc<dyn ReactorTime>>>,
    transport: RefCell<Option<Transport>>,
    last_read: Cell<Option<Instant>>,
    call: RefCell<Option<DelayedCall>>,
    timed_out: Cell<bool>,
}

impl State {
    fn schedule(self: &Rc<Self>, delay: Duration) {
        let Some(time) = self.time.borrow().clone() else {
            return;
        };
        let weak = Rc::downgrade(self);
        let call = time.call_later(
            delay,
            Box::new(move || {
                if let Some(state) = weak.upgrade() {
                    state.fire();
                }
            }),
        );
        *self.call.borrow_mut() = Some(call);
    }

    fn fire(self: &Rc<Self>) {
        let (Some(time), Some(last)) = (self.time.borrow().clone(), self.last_read.get()) else {
            return;
        };
        let idle_for = time.now().saturating_duration_since(last);
        if idle_for < self.timeout {
            self.schedule(self.timeout - idle_for);
            return;
        }
        let Some(transport) = self.transport.borrow().clone() else {
            return;
        };
        if self.timed_out.replace(true) || transport.is_closing() {
            return;
        }
        log::debug!(
            "closing the connection with {}: nothing read for {:?}",
            transport.peer(),
            self.timeout
        );
        transport.fail(ReadTimeout::new(self.timeout));
    }
}

impl<P: Protocol> ReadTimeoutHandler<P> {
    /// Wraps `inner`, closing its connection after `timeout` without input.
    pub fn new(inner: P, timeout: Duration) -> Self {
        ReadTimeoutHandler {
            inner,
            state: Rc::new(State {
                timeout: at_least_a_millisecond(timeout),
                time: RefCell::new(None),
                transport: RefCell::new(None),
                last_read: Cell::new(None),
                call: RefCell::new(None),
                timed_out: Cell::new(false),
            }),
            time: None,
        }
    }

    /// Uses `time` for the countdown instead of the reactor.
    pub fn clock(mut self, time: Rc<dyn ReactorTime>) -> Self {
        self.time = Some(time);
        self
    }

    /// The timeout (zero: off).
    pub fn timeout(&self) -> Duration {
        self.state.timeout
    }

    /// Whether the handler closed the connection.
    pub fn timed_out(&self) -> bool {
        self.state.timed_out.get()
    }

    /// The wrapped protocol.
    pub fn inner(&self) -> &P {
        &self.inner
    }

    /// The wrapped protocol, mutably.
    pub fn inner_mut(&mut self) -> &mut P {
        &mut self.inner
    }
}

impl<P: Protocol> Protocol for ReadTimeoutHandler<P> {
    /// Starts the countdown, then passes the event on.
    ///
    /// # Panics
    ///
    /// With no [`clock`](Self::clock) given and no reactor on this thread.
    fn connection_made(&mut self, transport: &Transport) {
        if !self.state.timeout.is_zero() {
            let time = time_or_reactor(self.time.as_ref());
            self.state.last_read.set(Some(time.now()));
            *self.state.time.borrow_mut() = Some(time);
            *self.state.transport.borrow_mut() = Some(transport.clone());
            self.state.schedule(self.state.timeout);
        }
        self.inner.connection_made(transport);
    }

    fn data_received(&mut self, data: Bytes) {
        if let Some(time) = self.state.time.borrow().as_ref() {
            self.state.last_read.set(Some(time.now()));
        }
        self.inner.data_received(data);
    }

    fn eof_received(&mut self) -> bool {
        self.inner.eof_received()
    }

    fn connection_lost(&mut self, reason: &Reason) {
        if let Some(call) = self.state.call.borrow_mut().take() {
            let _ = call.cancel();
        }
        self.state.transport.borrow_mut().take();
        self.state.time.borrow_mut().take();
        self.inner.connection_lost(reason);
    }

    fn pause_writing(&mut self) {
        self.inner.pause_writing();
    }

    fn resume_writing(&mut self) {
        self.inner.resume_writing();
    }
}

impl<P> fmt::Debug for ReadTimeoutHandler<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadTimeoutHandler")
            .field("timeout", &self.state.timeout)
            .field("timed_out", &self.state.timed_out.get())
            .finish_non_exhaustive()
    }
}
