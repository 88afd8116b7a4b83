//! The event loop: [`Reactor`], its thread-safe [`ReactorHandle`], TCP
//! listening ports and connectors.
//!
//! The loop is a callback loop directly on [`polling`], level-triggered:
//! one turn runs the calls queued from other threads, the timers that are
//! due, then waits for readiness and dispatches it synchronously to the
//! protocols (`data_received` is called from inside the loop, not from a
//! task). Writes made during a turn are flushed at its end, so pipelined
//! replies leave in one vectored write. `benches/README.md` shows why this
//! design and what it costs against a bare `polling` loop.

mod connector;
mod listener;
mod remote;
mod signals;
mod slab;
mod tcp;
mod wait;
mod write_buffer;

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use polling::Poller;

use crate::protocol::{ClientFactory, Factory, Protocol, Reason};
use crate::time::{DelayedCall, Pass, ReactorTime, TimeSource, TimerQueue};
use wait::Waiter;

pub use connector::{Connector, ConnectorState};
pub use listener::ListeningPort;
pub use remote::{ReactorHandle, ReactorStopped};

use connector::ConnectorInner;
use listener::PortInner;
use remote::Remote;
use slab::Slab;
use tcp::Conn;

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

/// What a poller key stands for.
#[derive(Clone)]
pub(crate) enum Source {
    Listener(Rc<PortInner>),
    Conn(Rc<Conn>),
    Connecting(Rc<ConnectorInner>),
}

/// A [`Factory`] behind a trait object.
pub(crate) trait DynFactory {
    fn build(&mut self, peer: SocketAddr) -> Option<Box<dyn Protocol>>;
    fn start(&mut self);
    fn stop(&mut self);
}

impl<F: Factory> DynFactory for F {
    fn build(&mut self, peer: SocketAddr) -> Option<Box<dyn Protocol>> {
        self.build_protocol(peer)
            .map(|p| Box::new(p) as Box<dyn Protocol>)
    }
    fn start(&mut self) {
        self.start_factory()
    }
    fn stop(&mut self) {
        self.stop_factory()
    }
}

/// A [`ClientFactory`] behind a trait object.
pub(crate) trait DynClientFactory: DynFactory {
    fn started_connecting(&mut self, connector: &Connector);
    fn connection_failed(&mut self, connector: &Connector, reason: &io::Error);
    fn connection_lost(&mut self, connector: &Connector, reason: &Reason);
}

impl<F: ClientFactory> DynClientFactory for F {
    fn started_connecting(&mut self, connector: &Connector) {
        ClientFactory::started_connecting(self, connector)
    }
    fn connection_failed(&mut self, connector: &Connector, reason: &io::Error) {
        self.client_connection_failed(connector, reason)
    }
    fn connection_lost(&mut self, connector: &Connector, reason: &Reason) {
        self.client_connection_lost(connector, reason)
    }
}

/// The reactor's state, owned by its thread.
pub(crate) struct Core {
    poller: Arc<Poller>,
    timers: Rc<TimerQueue>,
    sources: RefCell<Slab<Source>>,
    /// Connections written to (or otherwise changed) in this turn.
    dirty: RefCell<Vec<Rc<Conn>>>,
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
    connections: Cell<usize>,
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
            connections: Cell::new(0),
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
        let _signals = signals::register(self.handle());
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

    /// Listens for TCP connections on `addr` (IPv4 or IPv6; port 0 picks a
    /// free port, read it from [`ListeningPort::host`]) and serves each with
    /// a protocol from `factory`. The factory's `start_factory` runs now.
    ///
    /// # Errors
    ///
    /// The address could not be resolved or bound.
    ///
    /// # Examples
    ///
    /// ```
    /// use bytes::Bytes;
    /// use twill::{Protocol, Reactor};
    ///
    /// struct Discard;
    /// impl Protocol for Discard {
    ///     fn data_received(&mut self, _: Bytes) {}
    /// }
    ///
    /// let reactor = Reactor::new()?;
    /// let port = reactor.listen_tcp("127.0.0.1:0", |_peer| Discard)?;
    /// assert_ne!(port.host().port(), 0);
    /// port.stop_listening();
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn listen_tcp(
        &self,
        addr: impl std::net::ToSocketAddrs,
        factory: impl Factory,
    ) -> io::Result<ListeningPort> {
        listener::listen(&self.core, addr, Box::new(factory), false)
    }

    /// Listens as [`listen_tcp`](Self::listen_tcp) does, with SO_REUSEPORT:
    /// reactors on several threads may each listen on the same address and
    /// port, and the kernel spreads incoming connections across them. This
    /// is how a twill server uses several cores: one reactor per thread,
    /// each with its own listening socket, factory and connections (bind the
    /// first with port 0 if you like, then the others to the port it got).
    ///
    /// # Errors
    ///
    /// As `listen_tcp`; `Unsupported` where the platform has no
    /// SO_REUSEPORT.
    ///
    /// # Examples
    ///
    /// ```
    /// use bytes::Bytes;
    /// use twill::{Protocol, Reactor};
    ///
    /// struct Discard;
    /// impl Protocol for Discard {
    ///     fn data_received(&mut self, _: Bytes) {}
    /// }
    ///
    /// let reactor = Reactor::new()?;
    /// let first = reactor.listen_tcp_reuse_port("127.0.0.1:0", |_peer| Discard)?;
    /// let addr = first.host();
    /// let worker = std::thread::spawn(move || -> std::io::Result<u16> {
    ///     let reactor = Reactor::new()?;
    ///     let port = reactor.listen_tcp_reuse_port(addr, |_peer| Discard)?;
    ///     Ok(port.host().port())
    /// });
    /// assert_eq!(worker.join().unwrap()?, addr.port());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn listen_tcp_reuse_port(
        &self,
        addr: impl std::net::ToSocketAddrs,
        factory: impl Factory,
    ) -> io::Result<ListeningPort> {
        listener::listen(&self.core, addr, Box::new(factory), true)
    }

    /// Connects to `addr` with a 30 s timeout; see
    /// [`connect_tcp_with_timeout`](Self::connect_tcp_with_timeout).
    ///
    /// # Errors
    ///
    /// As `connect_tcp_with_timeout`.
    pub fn connect_tcp(
        &self,
        addr: impl std::net::ToSocketAddrs,
        factory: impl ClientFactory,
    ) -> io::Result<Connector> {
        self.connect_tcp_with_timeout(addr, DEFAULT_CONNECT_TIMEOUT, factory)
    }

    /// Connects to `addr` (resolved now, blocking: pass an IP address to
    /// avoid a DNS lookup), giving up after `timeout`. How the attempt goes
    /// is reported to `factory` (see [`ClientFactory`]); the returned
    /// [`Connector`] retries, stops or disconnects.
    ///
    /// # Errors
    ///
    /// `addr` did not resolve to any address. Failures to connect are
    /// reported to the factory instead.
    pub fn connect_tcp_with_timeout(
        &self,
        addr: impl std::net::ToSocketAddrs,
        timeout: Duration,
        factory: impl ClientFactory,
    ) -> io::Result<Connector> {
        let dest = addr.to_socket_addrs()?.next().ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "address resolved to nothing")
        })?;
        let connector = connector::Connector::new(&self.core, dest, timeout, Box::new(factory));
        connector.connect();
        Ok(connector)
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
            .field("connections", &self.core.connections.get())
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
                if self.connections.get() == 0 {
                    return Ok(());
                }
                if Instant::now() >= deadline {
                    log::warn!(
                        "{} connection(s) still open at the shutdown deadline; aborting them",
                        self.connections.get()
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
                match source {
                    Some(Source::Conn(conn)) => conn.ready(event.readable, event.writable),
                    Some(Source::Listener(port)) => port.accept_ready(),
                    Some(Source::Connecting(connector)) => connector.connect_ready(),
                    None => {}
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
            for conn in &dirty {
                conn.flush();
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

    pub(crate) fn mark_dirty(&self, conn: Rc<Conn>) {
        self.dirty.borrow_mut().push(conn);
    }

    pub(crate) fn is_shutting_down(&self) -> bool {
        matches!(self.state.get(), RunState::Stopping | RunState::Stopped)
    }

    fn begin_shutdown(&self) {
        log::info!("reactor stopping");
        self.fire_phase(SystemEvent::Shutdown, Phase::Before);
        self.state.set(RunState::Stopping);
        let sources: Vec<Source> = self.sources.borrow().iter().cloned().collect();
        for source in sources {
            match source {
                Source::Listener(port) => port.stop_listening(),
                Source::Conn(conn) => conn.lose(None),
                Source::Connecting(connector) => connector.stop_connecting(),
            }
        }
    }

    fn abort_all(&self) {
        let sources: Vec<Source> = self.sources.borrow().iter().cloned().collect();
        for source in sources {
            if let Source::Conn(conn) = source {
                conn.abort(Reason::Aborted);
            }
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
        let sources: Vec<Source> = self.sources.get_mut().iter().cloned().collect();
        for source in sources {
            match source {
                Source::Conn(conn) => conn.discard(&self.poller),
                Source::Listener(port) => port.discard(&self.poller),
                Source::Connecting(connector) => connector.discard(&self.poller),
            }
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
