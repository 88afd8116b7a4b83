//! [`ReadTimeoutHandler`]: closes a connection that has sent nothing for a
//! while.

use std::cell::Cell;
use std::error::Error;
use std::fmt;
use std::rc::Rc;
use std::time::{Duration, Instant};

use twill::{Bytes, BytesMut, Protocol, ReactorTime, Reason, Transport};

use super::timer::Watch;

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
    watch: Watch,
    last_read: Cell<Option<Instant>>,
}

impl State {
    fn schedule(self: &Rc<Self>, delay: Duration) {
        self.watch.schedule(delay, self, State::fire);
    }

    fn fire(self: &Rc<Self>) {
        let (Some(now), Some(last)) = (self.watch.now(), self.last_read.get()) else {
            return;
        };
        let timeout = self.watch.timeout();
        let idle_for = now.saturating_duration_since(last);
        if idle_for < timeout {
            self.schedule(timeout - idle_for);
            return;
        }
        let Some(transport) = self.watch.transport() else {
            return;
        };
        if !self.watch.mark_timed_out() || transport.is_closing() {
            return;
        }
        log::debug!(
            "closing the connection with {}: nothing read for {timeout:?}",
            transport.peer()
        );
        transport.fail(ReadTimeout::new(timeout));
    }
}

impl<P: Protocol> ReadTimeoutHandler<P> {
    /// Wraps `inner`, closing its connection after `timeout` without input.
    pub fn new(inner: P, timeout: Duration) -> Self {
        ReadTimeoutHandler {
            inner,
            state: Rc::new(State {
                watch: Watch::new(timeout),
                last_read: Cell::new(None),
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
        self.state.watch.timeout()
    }

    /// Whether the handler closed the connection.
    pub fn timed_out(&self) -> bool {
        self.state.watch.timed_out()
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

impl<P> ReadTimeoutHandler<P> {
    fn stamp_read(&self) {
        if let Some(now) = self.state.watch.now() {
            self.state.last_read.set(Some(now));
        }
    }
}

impl<P: Protocol> Protocol for ReadTimeoutHandler<P> {
    /// Starts the countdown, then passes the event on.
    ///
    /// # Panics
    ///
    /// With no [`clock`](Self::clock) given and no reactor on this thread.
    fn connection_made(&mut self, transport: &Transport) {
        if self.state.watch.start(self.time.as_ref(), transport) {
            self.state.last_read.set(self.state.watch.now());
            self.state.schedule(self.state.watch.timeout());
        }
        self.inner.connection_made(transport);
    }

    fn data_received(&mut self, data: Bytes) {
        self.stamp_read();
        self.inner.data_received(data);
    }

    fn get_buffer(&mut self) -> Option<&mut BytesMut> {
        self.inner.get_buffer()
    }

    fn buffer_updated(&mut self, appended: usize) {
        self.stamp_read();
        self.inner.buffer_updated(appended);
    }

    fn eof_received(&mut self) -> bool {
        self.inner.eof_received()
    }

    fn connection_lost(&mut self, reason: &Reason) {
        self.state.watch.stop();
        self.inner.connection_lost(reason);
    }

    fn pause_writing(&mut self) {
        self.inner.pause_writing();
    }

    fn resume_writing(&mut self) {
        self.inner.resume_writing();
    }

    fn write_complete(&mut self) {
        self.inner.write_complete();
    }

    fn event_received(&mut self, event: twill::Event) {
        self.inner.event_received(event);
    }
}

impl<P> fmt::Debug for ReadTimeoutHandler<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadTimeoutHandler")
            .field("timeout", &self.state.watch.timeout())
            .field("timed_out", &self.state.watch.timed_out())
            .finish_non_exhaustive()
    }
}
