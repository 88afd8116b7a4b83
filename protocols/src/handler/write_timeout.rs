//! [`WriteTimeoutHandler`]: drops a connection whose writes do not go out
//! in time.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::error::Error;
use std::fmt;
use std::rc::Rc;
use std::time::{Duration, Instant};

use twill::{Bytes, Protocol, ReactorTime, Reason, Transport};

use super::output::OutputMeter;
use super::timer::Watch;

/// The error a [`WriteTimeoutHandler`] reports: Netty's
/// `WriteTimeoutException`. The inner protocol finds it in
/// [`Reason::Failed`] (downcast the error to check).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteTimeout {
    timeout: Duration,
}

impl WriteTimeout {
    /// The error for a write still not sent after `timeout`.
    pub fn new(timeout: Duration) -> WriteTimeout {
        WriteTimeout { timeout }
    }

    /// How long the write waited.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}

impl fmt::Display for WriteTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "write timed out: not sent within {:?}", self.timeout)
    }
}

impl Error for WriteTimeout {}

/// Wraps any protocol and drops its connection when something it wrote is
/// still unsent after `timeout`: Netty's `WriteTimeoutHandler`.
///
/// The handler reads the transport's [`bytes_written`](Transport::bytes_written)
/// and [`bytes_sent`](Transport::bytes_sent) counters (see
/// [Seeing writes](crate::handler#seeing-writes)). The buffer is first in,
/// first out: a write is sent once as many bytes have been sent as had been
/// written up to that write. A write not sent within
/// `timeout` of being made times the connection out. Unlike a plain "the
/// buffer stayed non-empty" rule, a producer that keeps the buffer between
/// its watermarks while the peer keeps reading is not timed out. Writes
/// made outside the protocol's callbacks are noticed only when the buffer
/// is looked at next (at the next callback or timer), and are timed from
/// then.
///
/// On a timeout the connection is aborted (the stuck data could never be
/// sent, so a graceful close would never finish), and the inner protocol's
/// `connection_lost` gets [`Reason::Failed`] holding a [`WriteTimeout`]
/// instead of [`Reason::Aborted`]. `Duration::ZERO` turns the handler off;
/// a positive timeout under a millisecond is raised to one.
///
/// [`StringTransport`](twill::testing::StringTransport) never holds
/// anything in its buffer, so nothing times out on it.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use twill::{Bytes, Protocol, Transport};
/// use twill_protocols::handler::WriteTimeoutHandler;
///
/// struct Firehose;
/// impl Protocol for Firehose {
///     fn connection_made(&mut self, transport: &Transport) {
///         transport.write(vec![0u8; 1 << 20]);
///     }
///     fn data_received(&mut self, _: Bytes) {}
/// }
///
/// let reactor = twill::Reactor::new()?;
/// let port = reactor.listen_tcp("127.0.0.1:0", |_peer| {
///     // A peer that does not take the megabyte within 10 s is dropped.
///     WriteTimeoutHandler::new(Firehose, Duration::from_secs(10))
/// })?;
/// # port.stop_listening();
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct WriteTimeoutHandler<P> {
    inner: P,
    state: Rc<State>,
    time: Option<Rc<dyn ReactorTime>>,
}

struct State {
    watch: Watch,
    meter: OutputMeter,
    /// Bytes seen entering the write buffer (plus what it held at first).
    entered: Cell<u64>,
    /// Writes not known to be sent: their deadline, and the value of
    /// `entered` just after them (sent once `entered - size` reaches it).
    pending: RefCell<VecDeque<(Instant, u64)>>,
}

impl State {
    /// Looks at the write buffer: records what entered it, and forgets the
    /// writes that are out.
    fn look(&self) {
        let (Some(now), Some(transport)) = (self.watch.now(), self.watch.transport()) else {
            return;
        };
        let look = self.meter.look(&transport);
        let mut pending = self.pending.borrow_mut();
        if look.added > 0 {
            let entered = self.entered.get() + look.added as u64;
            self.entered.set(entered);
            let deadline = now + self.watch.timeout();
            match pending.back_mut() {
                Some(last) if last.0 == deadline => last.1 = entered,
                _ => pending.push_back((deadline, entered)),
            }
        }
        let sent = self.entered.get().saturating_sub(look.size as u64);
        while pending.front().is_some_and(|&(_, end)| end <= sent) {
            pending.pop_front();
        }
    }

    /// Makes sure a timer runs at the earliest pending deadline.
    fn arm(self: &Rc<Self>) {
        if self.watch.is_scheduled() {
            return;
        }
        let Some(&(deadline, _)) = self.pending.borrow().front() else {
            return;
        };
        let Some(now) = self.watch.now() else { return };
        self.watch
            .schedule(deadline.saturating_duration_since(now), self, State::fire);
    }

    fn fire(self: &Rc<Self>) {
        self.look();
        let Some(now) = self.watch.now() else { return };
        let overdue = self
            .pending
            .borrow()
            .front()
            .is_some_and(|&(deadline, _)| deadline <= now);
        if !overdue {
            self.arm();
            return;
        }
        let Some(transport) = self.watch.transport() else {
            return;
        };
        self.pending.borrow_mut().clear();
        if !self.watch.mark_timed_out() {
            return;
        }
        log::warn!(
            "dropping the connection with {}: a write was not sent within {:?} ({} bytes waiting)",
            transport.peer(),
            self.watch.timeout(),
            transport.write_buffer_size()
        );
        transport.abort_connection();
    }
}

impl<P: Protocol> WriteTimeoutHandler<P> {
    /// Wraps `inner`, dropping its connection when a write waits longer
    /// than `timeout`.
    pub fn new(inner: P, timeout: Duration) -> Self {
        WriteTimeoutHandler {
            inner,
            state: Rc::new(State {
                watch: Watch::new(timeout),
                meter: OutputMeter::new(),
                entered: Cell::new(0),
                pending: RefCell::new(VecDeque::new()),
            }),
            time: None,
        }
    }

    /// Uses `time` for the deadlines instead of the reactor.
    pub fn clock(mut self, time: Rc<dyn ReactorTime>) -> Self {
        self.time = Some(time);
        self
    }

    /// The timeout (zero: off).
    pub fn timeout(&self) -> Duration {
        self.state.watch.timeout()
    }

    /// Whether the handler dropped the connection.
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

    fn call_inner<R>(&mut self, f: impl FnOnce(&mut P) -> R) -> R {
        self.state.look();
        let result = f(&mut self.inner);
        self.state.look();
        self.state.arm();
        result
    }
}

impl<P: Protocol> Protocol for WriteTimeoutHandler<P> {
    /// Starts watching the write buffer, then passes the event on.
    ///
    /// # Panics
    ///
    /// With no [`clock`](Self::clock) given and no reactor on this thread.
    fn connection_made(&mut self, transport: &Transport) {
        if self.state.watch.start(self.time.as_ref(), transport) {
            let held = self.state.meter.look(transport).size;
            self.state.entered.set(held as u64);
        }
        self.call_inner(|inner| inner.connection_made(transport));
    }

    fn data_received(&mut self, data: Bytes) {
        self.call_inner(|inner| inner.data_received(data));
    }

    fn eof_received(&mut self) -> bool {
        self.call_inner(|inner| inner.eof_received())
    }

    fn connection_lost(&mut self, reason: &Reason) {
        self.state.watch.stop();
        self.state.pending.borrow_mut().clear();
        if self.state.watch.timed_out() && matches!(reason, Reason::Aborted) {
            let timeout = WriteTimeout::new(self.state.watch.timeout());
            self.inner
                .connection_lost(&Reason::Failed(Box::new(timeout)));
        } else {
            self.inner.connection_lost(reason);
        }
    }

    fn pause_writing(&mut self) {
        self.call_inner(|inner| inner.pause_writing());
    }

    fn resume_writing(&mut self) {
        self.call_inner(|inner| inner.resume_writing());
    }

    fn write_complete(&mut self) {
        self.call_inner(|inner| inner.write_complete());
    }

    fn event_received(&mut self, event: twill::Event) {
        self.call_inner(|inner| inner.event_received(event));
    }
}

impl<P> fmt::Debug for WriteTimeoutHandler<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WriteTimeoutHandler")
            .field("timeout", &self.state.watch.timeout())
            .field("pending_writes", &self.state.pending.borrow().len())
            .field("timed_out", &self.state.watch.timed_out())
            .finish_non_exhaustive()
    }
}
