//! The event loop: [`Reactor`] and its thread-safe [`ReactorHandle`]. The
//! socket kinds it drives (TCP, Unix, UDP) live in [`crate::net`]; the loop
//! knows them only as sources of readiness.
//!
//! The loop is a callback loop directly on [`polling`], level-triggered:
//! one turn runs the calls queued from other threads, the timers that are
//! due, then waits for readiness and dispatches it synchronously to the
//! protocols (`data_received` is called from inside the loop, not from a
//! task). Writes made during a turn are flushed at its end, so pipelined
//! replies leave in one vectored write. `benches/README.md` shows why this
//! design and what it costs against a bare `polling` loop.

mod remote;
mod signals;
mod slab;
mod wait;

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::rc::{Rc, Weak};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use polling::Poller;

use crate::time::{DelayedCall, Pass, ReactorTime, TimeSource, TimerQueue};
use wait::Waiter;

pub use remote::{ReactorHandle, ReactorStopped};

use remote::Remote;
use slab::Slab;

/// Default connect timeout, as Twisted's `connectTCP`.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default time [`Reactor::stop`] waits for connections to close before
/// aborting them.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

/// Bytes read from a socket per readiness event at most (Twisted: 64 KiB).
const READ_BUFFER_SIZE: usize = 64 * 1024;
/// Below this much room the shared read buffer is replaced by a fresh one.
const READ_BUFFER_MIN: usize = 4 * 1024;

/// A phase of a system event, for [`Reactor::add_system_event_trigger`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Before the reactor acts on the event (for shutdown: while every
    /// connection is still open).
    Before,
    /// While it acts (for shutdown: after connections were closed).
    During,
    /// After it acted.
    After,
}

/// A system event, for [`Reactor::add_system_event_trigger`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SystemEvent {
    /// [`Reactor::run`] starts.
    Startup,
    /// The reactor stops.
    Shutdown,
}

/// Identifies a trigger, to remove it with
/// [`Reactor::remove_system_event_trigger`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TriggerId(u64);

struct Trigger {
    id: TriggerId,
    phase: Phase,
    event: SystemEvent,
    call: Box<dyn FnOnce()>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RunState {
    NotStarted,
    Running,
    Stopping,
    Stopped,
}

/// Something in the poller: a listening socket, a connection, a connection
/// attempt, a datagram port. The loop knows its sources only through this
/// trait, so each socket kind lives in its own module of `net/`.
pub(crate) trait Source {
    /// The poller reported readiness for this source's key.
    fn ready(self: Rc<Self>, readable: bool, writable: bool);
    /// The reactor is stopping gracefully: stop listening, give up
    /// attempts, close connections once their writes are out.
    fn shut_down(&self);
    /// The graceful stop ran out of time: close at once.
    fn abort(&self) {}
    /// The reactor is going away: leave the poller (before the socket
    /// closes, as `polling` requires) and drop what holds the source alive.
    fn discard(&self, poller: &Poller);
    /// Sends what was written during this turn (see
    /// [`Core::mark_dirty`]).
    fn flush(&self) {}
}

/// The reactor's state, owned by its thread.
pub(crate) struct Core {
    pub(crate) poller: Arc<Poller>,
    pub(crate) timers: Rc<TimerQueue>,
    pub(crate) sources: RefCell<Slab<Rc<dyn Source>>>,
    /// Sources written to (or otherwise changed) in this turn.
    dirty: RefCell<Vec<Rc<dyn Source>>>,
    /// Work to do as soon as the current callback returns, before the next
    /// poll: notifications that must not re-enter a busy protocol or factory.
    soon: RefCell<VecDeque<Box<dyn FnOnce()>>>,
    /// Shared by every connection: reads land here and are split off as
    /// `Bytes`, so an idle connection holds no read buffer.
    read_buf: RefCell<BytesMut>,
    remote: Arc<Remote>,
    /// While a reactor exists, the thread's futures do: the last one to go
    /// drops those still pending.
    _futures: crate::executor::Lease,
    state: Cell<RunState>,
    /// Open connections, which a graceful stop waits for; shared, as a
    /// reactor group's boss reads its workers' to place connections.
    connections: Arc<AtomicUsize>,
    triggers: RefCell<Vec<Trigger>>,
    next_trigger: Cell<u64>,
    shutdown_timeout: Cell<Duration>,
}

thread_local! {
    static CURRENT: RefCell<Weak<Core>> = const { RefCell::new(Weak::new()) };
}

/// The event loop: Twisted's reactor.
///
/// A `Reactor` is a cheap handle (clone it freely) to a loop that belongs to
/// the thread that created it; it is neither `Send` nor `Sync`, and neither
/// are the protocols and transports it drives, so protocol state can be
/// plain `Rc<RefCell<…>>`. To reach it from another thread, take a
/// [`ReactorHandle`] with [`handle`](Self::handle).
///
/// The free functions [`twill::reactor`](crate::reactor()),
/// [`twill::call_later`](crate::call_later) and [`twill::stop`](crate::stop)
/// reach the reactor of the current thread, so protocol code does not need
/// to carry it around.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use twill::Reactor;
///
/// let reactor = Reactor::new()?;
/// let stopper = reactor.clone();
/// reactor.call_later(Duration::from_millis(10), move || stopper.stop());
/// reactor.run()?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone)]
pub struct Reactor {
    core: Rc<Core>,
}

impl Reactor {
    /// Creates a reactor on this thread. It becomes the thread's current
    /// reactor, the one the free functions ([`twill::call_later`](crate::call_later),
    /// …) reach, until another is created or run here.
    ///
    /// # Errors
    ///
    /// The OS poller could not be created.
    pub fn new() -> io::Result<Reactor> {
        let poller = Arc::new(Poller::new()?);
        let core = Rc::new(Core {
            remote: Arc::new(Remote::new(poller.clone())),
            _futures: crate::executor::Lease::new(),
            poller,
            timers: TimerQueue::new(TimeSource::Monotonic),
            sources: RefCell::new(Slab::new()),
            dirty: RefCell::new(Vec::new()),
            soon: RefCell::new(VecDeque::new()),
            read_buf: RefCell::new(BytesMut::new()),
            state: Cell::new(RunState::NotStarted),
            connections: Arc::new(AtomicUsize::new(0)),
            triggers: RefCell::new(Vec::new()),
            next_trigger: Cell::new(0),
            shutdown_timeout: Cell::new(DEFAULT_SHUTDOWN_TIMEOUT),
        });
        CURRENT.with(|current| *current.borrow_mut() = Rc::downgrade(&core));
        Ok(Reactor { core })
    }

    /// The reactor running (or most recently created) on this thread.
    pub(crate) fn current() -> Option<Reactor> {
        CURRENT
            .with(|current| current.borrow().upgrade())
            .map(|core| Reactor { core })
    }

    /// Runs the loop until [`stop`](Self::stop); SIGINT and SIGTERM stop it
    /// too. A reactor runs once, as in Twisted; make a new one to run again.
    ///
    /// Stopping is graceful: the shutdown triggers of phase
    /// [`Phase::Before`] run, listening stops, every connection is asked to
    /// [`lose_connection`](crate::Transport::lose_connection), and once they
    /// are all closed (or after the shutdown timeout, when the rest are
    /// aborted) the [`Phase::During`] and [`Phase::After`] triggers run and
    /// `run` returns.
    ///
    /// # Errors
    ///
    /// The reactor is already running or ran before, or the OS poller
    /// failed.
    pub fn run(&self) -> io::Result<()> {
        self.run_watching_signals(true)
    }

    /// Runs as [`run`](Self::run) does; a reactor group's workers leave
    /// the signals to the group, which stops them in order.
    pub(crate) fn run_watching_signals(&self, watch_signals: bool) -> io::Result<()> {
        let core = &self.core;
        match core.state.get() {
            RunState::NotStarted => {}
            RunState::Running | RunState::Stopping => {
                return Err(io::Error::other("the reactor is already running"));
            }
            RunState::Stopped => {
                return Err(io::Error::other(
                    "a reactor runs only once; create a new Reactor to run again",
                ));
            }
        }
        let previous = CURRENT.with(|current| current.replace(Rc::downgrade(core)));
        let _restore = RestoreCurrent(previous);
        let _signals = watch_signals.then(|| signals::register(self.handle()));
        core.state.set(RunState::Running);
        core.fire(SystemEvent::Startup);
        let result = core.run_loop();
        core.fire_phase(SystemEvent::Shutdown, Phase::During);
        core.fire_phase(SystemEvent::Shutdown, Phase::After);
        core.state.set(RunState::Stopped);
        core.remote.close();
        result
    }

    /// Stops the reactor gracefully (see [`run`](Self::run)). Does nothing
    /// if it is already stopping; before `run`, makes `run` stop right after
    /// startup.
    pub fn stop(&self) {
        self.core.remote.request_stop();
    }

    /// Whether [`run`](Self::run) is running and not stopping.
    pub fn is_running(&self) -> bool {
        self.core.state.get() == RunState::Running
    }

    /// Whether the reactor is stopping or has stopped.
    pub fn is_stopping(&self) -> bool {
        self.core.is_shutting_down()
    }

    /// A `Send + Clone` handle for other threads:
    /// [`call_from_thread`](ReactorHandle::call_from_thread) and
    /// [`stop`](ReactorHandle::stop).
    pub fn handle(&self) -> ReactorHandle {
        ReactorHandle::new(self.core.remote.clone())
    }

    /// The reactor's time (monotonic).
    pub fn now(&self) -> Instant {
        self.core.timers.now()
    }

    /// Runs `f` once on the reactor thread, `delay` from now. Calls due at
    /// the same instant run in the order they were scheduled; a call
    /// scheduled from a timed call runs after the next I/O poll even with a
    /// zero delay. A panic in `f` is logged and the loop goes on.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use twill::Reactor;
    ///
    /// let reactor = Reactor::new()?;
    /// let call = reactor.call_later(Duration::from_secs(3600), || unreachable!());
    /// assert!(call.active());
    /// call.cancel().unwrap();
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn call_later(&self, delay: Duration, f: impl FnOnce() + 'static) -> DelayedCall {
        self.core.timers.call_later(delay, Box::new(f))
    }

    /// Runs `f` now if the reactor is running, else when it starts.
    pub fn call_when_running(&self, f: impl FnOnce() + 'static) {
        if self.is_running() {
            f();
        } else {
            self.add_system_event_trigger(Phase::After, SystemEvent::Startup, f);
        }
    }

    /// Runs `f` at `phase` of `event`: e.g. `(Phase::Before,
    /// SystemEvent::Shutdown)` runs while every connection is still open.
    /// Triggers of one phase run in the order they were added; a panic in
    /// one is logged and the others still run.
    pub fn add_system_event_trigger(
        &self,
        phase: Phase,
        event: SystemEvent,
        f: impl FnOnce() + 'static,
    ) -> TriggerId {
        let id = TriggerId(self.core.next_trigger.get());
        self.core.next_trigger.set(id.0 + 1);
        self.core.triggers.borrow_mut().push(Trigger {
            id,
            phase,
            event,
            call: Box::new(f),
        });
        id
    }

    /// Removes a trigger that has not run. Returns whether it was there.
    pub fn remove_system_event_trigger(&self, id: TriggerId) -> bool {
        let mut triggers = self.core.triggers.borrow_mut();
        let before = triggers.len();
        triggers.retain(|t| t.id != id);
        triggers.len() != before
    }

    /// How long a graceful stop waits for connections to close before
    /// aborting them (10 s by default).
    pub fn set_shutdown_timeout(&self, timeout: Duration) {
        self.core.shutdown_timeout.set(timeout);
    }

    pub(crate) fn core(&self) -> &Rc<Core> {
        &self.core
    }

    /// The count of open connections, readable from other threads.
    pub(crate) fn shared_connections(&self) -> Arc<AtomicUsize> {
        self.core.connections.clone()
    }
}

impl ReactorTime for Reactor {
    fn now(&self) -> Instant {
        self.core.timers.now()
    }

    fn call_later(&self, delay: Duration, f: Box<dyn FnOnce()>) -> DelayedCall {
        self.core.timers.call_later(delay, f)
    }

    fn delayed_calls(&self) -> Vec<DelayedCall> {
        self.core.timers.delayed_calls()
    }
}

impl fmt::Debug for Reactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reactor")
            .field("state", &self.core.state.get())
            .field("connections", &self.core.open_connections())
            .finish()
    }
}

struct RestoreCurrent(Weak<Core>);

impl Drop for RestoreCurrent {
    fn drop(&mut self) {
        let previous = std::mem::take(&mut self.0);
        CURRENT.with(|current| *current.borrow_mut() = previous);
    }
}

/// Rounds a wait up to whole milliseconds, so calls due within the same
/// millisecond share one wake-up instead of costing one each (a wake-up is
/// several system calls). Calls never run early; they may run up to 1 ms
/// late, as with Twisted's epoll reactor, whose timeouts are milliseconds.
fn round_up_to_millis(wait: Duration) -> Duration {
    const MILLI: u128 = 1_000_000;
    let nanos = wait.as_nanos().div_ceil(MILLI) * MILLI;
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

impl Core {
    fn run_loop(self: &Rc<Self>) -> io::Result<()> {
        let mut waiter = Waiter::new();
        let mut deadline = None;
        // Only while running: a reactor that is not running must not be the
        // one the executor wakes.
        let notify = self.poller.clone();
        let mut ticker = crate::executor::Ticker::new(move || {
            let _ = notify.notify();
        });
        loop {
            self.remote.run_calls();
            ticker.tick();
            if self.remote.stop_requested() && self.state.get() == RunState::Running {
                self.begin_shutdown();
                deadline = Some(Instant::now() + self.shutdown_timeout.get());
            }
            self.timers.run_due(Pass::Reactor);
            self.run_soon();
            if let Some(deadline) = deadline {
                if self.open_connections() == 0 {
                    return Ok(());
                }
                if Instant::now() >= deadline {
                    log::warn!(
                        "{} connection(s) still open at the shutdown deadline; aborting them",
                        self.open_connections()
                    );
                    self.abort_all();
                    self.run_soon();
                    return Ok(());
                }
            }
            let timeout = if !self.soon.borrow().is_empty()
                || ticker.has_work()
                || (self.remote.stop_requested() && self.state.get() == RunState::Running)
            {
                Some(Duration::ZERO)
            } else {
                let timer = self.timers.time_to_next();
                let shutdown = deadline.map(|d| d.saturating_duration_since(Instant::now()));
                match (timer, shutdown) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                }
                .map(round_up_to_millis)
            };
            for event in waiter.wait(&self.poller, timeout)? {
                let source = self.sources.borrow().get(event.key).cloned();
                if let Some(source) = source {
                    source.ready(event.readable, event.writable);
                }
            }
            self.run_soon();
            self.sources.borrow_mut().release_retired();
        }
    }

    /// Runs the deferred notifications and flushes every connection touched
    /// since the last call, until nothing is left (a flush can call a
    /// protocol, which can write again).
    pub(crate) fn run_soon(&self) {
        loop {
            let next = self.soon.borrow_mut().pop_front();
            if let Some(call) = next {
                call();
                continue;
            }
            let dirty = std::mem::take(&mut *self.dirty.borrow_mut());
            if dirty.is_empty() {
                return;
            }
            for source in &dirty {
                source.flush();
            }
            // Keep the allocation for the next turn.
            let mut slot = self.dirty.borrow_mut();
            if slot.is_empty() {
                let mut dirty = dirty;
                dirty.clear();
                *slot = dirty;
            }
        }
    }

    pub(crate) fn defer(&self, call: impl FnOnce() + 'static) {
        self.soon.borrow_mut().push_back(Box::new(call));
    }

    /// Has `source` flushed at the end of this turn (once per mark).
    pub(crate) fn mark_dirty(&self, source: Rc<dyn Source>) {
        self.dirty.borrow_mut().push(source);
    }

    /// A connection opened (a graceful stop waits for it).
    pub(crate) fn connection_opened(&self) {
        self.connections.fetch_add(1, Ordering::Relaxed);
    }

    /// A connection closed.
    pub(crate) fn connection_closed(&self) {
        self.connections.fetch_sub(1, Ordering::Relaxed);
    }

    fn open_connections(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }

    pub(crate) fn is_shutting_down(&self) -> bool {
        matches!(self.state.get(), RunState::Stopping | RunState::Stopped)
    }

    fn begin_shutdown(&self) {
        log::info!("reactor stopping");
        self.fire_phase(SystemEvent::Shutdown, Phase::Before);
        self.state.set(RunState::Stopping);
        let sources: Vec<Rc<dyn Source>> = self.sources.borrow().iter().cloned().collect();
        for source in sources {
            source.shut_down();
        }
    }

    fn abort_all(&self) {
        let sources: Vec<Rc<dyn Source>> = self.sources.borrow().iter().cloned().collect();
        for source in sources {
            source.abort();
        }
    }

    fn fire(&self, event: SystemEvent) {
        for phase in [Phase::Before, Phase::During, Phase::After] {
            self.fire_phase(event, phase);
        }
    }

    fn fire_phase(&self, event: SystemEvent, phase: Phase) {
        loop {
            let trigger = {
                let mut triggers = self.triggers.borrow_mut();
                let position = triggers
                    .iter()
                    .position(|t| t.event == event && t.phase == phase);
                position.map(|i| triggers.remove(i))
            };
            let Some(trigger) = trigger else { return };
            if let Err(panic) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(trigger.call))
            {
                log::error!(
                    "panic in a {phase:?} {event:?} trigger: {}",
                    crate::panic_message(&*panic)
                );
            }
        }
    }

    pub(crate) fn read_buffer(&self) -> std::cell::RefMut<'_, BytesMut> {
        let mut buf = self.read_buf.borrow_mut();
        if buf.len() < READ_BUFFER_MIN {
            *buf = BytesMut::zeroed(READ_BUFFER_SIZE);
        }
        buf
    }
}

impl Drop for Core {
    fn drop(&mut self) {
        // Connections hold their protocol, which holds their transport: end
        // those cycles, and take every socket out of the poller before it
        // closes (polling's contract for `add`).
        let sources: Vec<Rc<dyn Source>> = self.sources.get_mut().iter().cloned().collect();
        for source in sources {
            source.discard(&self.poller);
        }
        self.soon.get_mut().clear();
        self.dirty.get_mut().clear();
        self.remote.close();
    }
}

#[cfg(test)]
mod tests {
    use super::round_up_to_millis;
    use std::time::Duration;

    #[test]
    fn waits_round_up_to_whole_milliseconds_and_never_down() {
        let ms = Duration::from_millis;
        assert_eq!(round_up_to_millis(Duration::ZERO), Duration::ZERO);
        assert_eq!(round_up_to_millis(Duration::from_nanos(1)), ms(1));
        assert_eq!(round_up_to_millis(Duration::from_micros(999)), ms(1));
        assert_eq!(round_up_to_millis(ms(1)), ms(1));
        assert_eq!(round_up_to_millis(Duration::from_micros(1_001)), ms(2));
        assert_eq!(
            round_up_to_millis(Duration::MAX),
            Duration::from_nanos(u64::MAX)
        );
    }
}
