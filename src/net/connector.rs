//! Outgoing stream connections, TCP or Unix: [`Connector`].
//!
//! A connector runs one race per [`connect`](Connector::connect)
//! (see [`happy_eyeballs`](super::happy_eyeballs)): it resolves a name
//! through the reactor's resolver, then opens one socket per attempt, each
//! in the poller under its own key with its own small [`Source`], so the
//! loop tells the race which attempt is ready. The winner's key and socket
//! pass, still registered, to the connection.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use polling::{Event, PollMode, Poller};
use socket2::{Domain, SockAddr, Socket, Type};

use super::address::{Address, UnixAddress};
use super::connection::Conn;
use super::happy_eyeballs::{Attempts, Race, CONNECTION_ATTEMPT_DELAY};
use super::host_port::HostPort;
use super::resolve::resolver_for;
use super::stream_socket::StreamSocket;
use super::DynClientFactory;
use crate::protocol::Reason;
use crate::reactor::{Core, Source};
use crate::time::{DelayedCall, ReactorTime, TimeSource, TimerQueue};

/// Where a [`Connector`] is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectorState {
    /// Not connected, not trying.
    Disconnected,
    /// An attempt is under way.
    Connecting,
    /// Connected; the protocol is running.
    Connected,
}

/// Where a [`Connector`] connects.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Destination {
    /// A TCP host (an IP address, or a name resolved anew by each
    /// [`connect`](Connector::connect)) and port.
    Tcp(HostPort),
    /// A Unix domain socket.
    Unix(UnixAddress),
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Destination::Tcp(dest) => dest.fmt(f),
            Destination::Unix(dest) => write!(f, "unix:{dest}"),
        }
    }
}

impl PartialEq<std::net::SocketAddr> for Destination {
    /// A TCP destination given as that IP address and port.
    fn eq(&self, other: &std::net::SocketAddr) -> bool {
        match self {
            Destination::Tcp(dest) => dest.socket_addr() == Some(*other),
            Destination::Unix(_) => false,
        }
    }
}

/// An outgoing connection, from [`Reactor::connect_tcp`](crate::Reactor::connect_tcp)
/// or [`Reactor::connect_unix`](crate::Reactor::connect_unix):
/// Twisted's `IConnector`.
///
/// Its [`ClientFactory`](crate::ClientFactory) is told how each attempt
/// goes; calling [`connect`](Self::connect) from
/// `client_connection_failed` or `client_connection_lost` tries again with
/// the same factory (resolving the name again). The factory's
/// `start_factory` runs before the first attempt and `stop_factory` when an
/// attempt fails or a connection ends and no new attempt was started.
///
/// For a TCP host name, one `connect` races the host's addresses as RFC
/// 8305 says ([`happy_eyeballs`](super::happy_eyeballs)); the factory sees
/// one `started_connecting`, then one `build_protocol` for the winner or
/// one `client_connection_failed`.
#[derive(Clone)]
pub struct Connector {
    inner: Rc<ConnectorInner>,
}

pub(crate) struct ConnectorInner {
    core: Weak<Core>,
    me: Weak<ConnectorInner>,
    dest: Destination,
    timeout: Duration,
    /// The local address TCP attempts bind to first (Twisted's
    /// `bindAddress`).
    bind: Option<SocketAddr>,
    attempt_delay: Cell<Duration>,
    factory: RefCell<Box<dyn DynClientFactory>>,
    state: Cell<ConnectorState>,
    /// Counts `connect` calls: what an earlier one reports late is ignored.
    run: Cell<u64>,
    race: RefCell<Option<Rc<Race>>>,
    /// The sockets of the attempts in flight.
    pending: RefCell<Vec<PendingAttempt>>,
    /// While a race runs (the lookup included), the key of the source
    /// through which a stopping reactor stops it.
    race_key: Cell<Option<usize>>,
    /// Refuse a Unix socket whose lock file no live server holds
    /// (Twisted's client-side `lockfile=1`).
    check_lock: Cell<bool>,
    conn: RefCell<Option<Rc<Conn>>>,
    factory_started: Cell<bool>,
}

/// A socket connecting, registered in the poller under `key`.
struct PendingAttempt {
    index: usize,
    socket: Socket,
    key: usize,
}

impl Connector {
    /// Makes this connector refuse a Unix socket whose lock file no live
    /// server holds; see [`Reactor::listen_unix`](crate::Reactor::listen_unix).
    pub(crate) fn check_lock(&self) {
        self.inner.check_lock.set(true);
    }

    pub(super) fn new(
        core: &Rc<Core>,
        dest: Destination,
        timeout: Duration,
        factory: Box<dyn DynClientFactory>,
    ) -> Connector {
        Connector::with_bind(core, dest, timeout, None, factory)
    }

    /// A connector whose TCP attempts bind to `bind` before connecting.
    pub(super) fn with_bind(
        core: &Rc<Core>,
        dest: Destination,
        timeout: Duration,
        bind: Option<SocketAddr>,
        factory: Box<dyn DynClientFactory>,
    ) -> Connector {
        let inner = Rc::new_cyclic(|me| ConnectorInner {
            core: Rc::downgrade(core),
            me: me.clone(),
            dest,
            timeout,
            bind,
            attempt_delay: Cell::new(CONNECTION_ATTEMPT_DELAY),
            factory: RefCell::new(factory),
            state: Cell::new(ConnectorState::Disconnected),
            run: Cell::new(0),
            race: RefCell::new(None),
            pending: RefCell::new(Vec::new()),
            race_key: Cell::new(None),
            check_lock: Cell::new(false),
            conn: RefCell::new(None),
            factory_started: Cell::new(false),
        });
        Connector { inner }
    }

    /// Starts an attempt to connect: resolves the name (if the destination
    /// has one), then races its addresses. Does nothing (but log a warning)
    /// while connecting or connected.
    pub fn connect(&self) {
        self.inner.connect();
    }

    /// Abandons the attempt under way, the lookup and every socket
    /// included (a late answer of the resolver is ignored); the factory's
    /// `client_connection_failed` gets an `io::ErrorKind::Interrupted`
    /// error. Does nothing unless connecting.
    pub fn stop_connecting(&self) {
        self.inner.stop_connecting();
    }

    /// Closes the connection (flushing what is buffered), or abandons the
    /// attempt under way.
    pub fn disconnect(&self) {
        match self.inner.state.get() {
            ConnectorState::Connected => {
                if let Some(conn) = self.inner.conn.borrow().as_ref() {
                    conn.lose(None);
                }
            }
            ConnectorState::Connecting => self.inner.stop_connecting(),
            ConnectorState::Disconnected => {}
        }
    }

    /// Where this connector connects, as it was given.
    pub fn destination(&self) -> Destination {
        self.inner.dest.clone()
    }

    /// Where the connector is in its life.
    pub fn state(&self) -> ConnectorState {
        self.inner.state.get()
    }

    /// How long each attempt has before the next address is tried beside
    /// it ([`CONNECTION_ATTEMPT_DELAY`], 250 ms, unless changed here), from
    /// the next [`connect`](Self::connect) on.
    pub fn set_attempt_delay(&self, delay: Duration) {
        self.inner.attempt_delay.set(delay);
    }

    /// See [`set_attempt_delay`](Self::set_attempt_delay).
    pub fn attempt_delay(&self) -> Duration {
        self.inner.attempt_delay.get()
    }
}

impl fmt::Debug for Connector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connector")
            .field("destination", &self.inner.dest)
            .field("state", &self.inner.state.get())
            .finish()
    }
}

/// A non-blocking socket connecting to `dest`, bound to `bind` first.
fn open(dest: &SockAddr, bind: Option<SocketAddr>) -> io::Result<Socket> {
    let socket = Socket::new(dest.domain(), Type::STREAM, None)?;
    socket.set_nonblocking(true)?;
    if dest.domain() != Domain::UNIX {
        socket.set_nodelay(true)?;
    }
    if let Some(bind) = bind {
        socket.bind(&bind.into()).map_err(|err| {
            io::Error::new(err.kind(), format!("could not bind to {bind}: {err}"))
        })?;
    }
    match socket.connect(dest) {
        Ok(()) => Ok(socket),
        // A Unix connect never waits: EAGAIN means the server is there
        // but its queue of connections to accept is full.
        Err(err) if dest.domain() == Domain::UNIX && err.kind() == io::ErrorKind::WouldBlock => {
            Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                "the server is busy: its queue of connections to accept is full",
            ))
        }
        Err(err)
            if err.kind() == io::ErrorKind::WouldBlock
                || err.raw_os_error() == Some(EINPROGRESS) =>
        {
            Ok(socket)
        }
        Err(err) => Err(err),
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
const EINPROGRESS: i32 = 115;
#[cfg(not(any(target_os = "linux", target_os = "android")))]
const EINPROGRESS: i32 = 36;

impl ConnectorInner {
    fn handle(&self) -> Option<Connector> {
        self.me.upgrade().map(|inner| Connector { inner })
    }

    /// Runs `f` on the factory now if it is free, else as soon as the
    /// callback that holds it returns (a factory is never re-entered).
    fn with_factory(&self, f: impl FnOnce(&mut dyn DynClientFactory, &Connector) + 'static) {
        let Some(connector) = self.handle() else {
            return;
        };
        let run = move || {
            let inner = connector.inner.clone();
            let mut factory = inner.factory.borrow_mut();
            if let Err(panic) = catch_unwind(AssertUnwindSafe(|| f(&mut **factory, &connector))) {
                log::error!(
                    "client factory for {} panicked: {}",
                    inner.dest,
                    crate::panic_message(&*panic)
                );
            }
        };
        match (self.factory.try_borrow_mut(), self.core.upgrade()) {
            (Ok(factory), _) => {
                drop(factory);
                run();
            }
            (Err(_), Some(core)) => core.defer(run),
            (Err(_), None) => {}
        }
    }

    fn connect(&self) {
        if self.state.get() != ConnectorState::Disconnected {
            log::warn!(
                "connect() to {} ignored: already {:?}",
                self.dest,
                self.state.get()
            );
            return;
        }
        let (Some(core), Some(me)) = (self.core.upgrade(), self.me.upgrade()) else {
            return;
        };
        self.state.set(ConnectorState::Connecting);
        let run = self.run.get() + 1;
        self.run.set(run);
        if !self.factory_started.replace(true) {
            self.with_factory(|factory, _| factory.start());
        }
        self.with_factory(|factory, connector| factory.started_connecting(connector));
        if core.is_shutting_down() {
            let err = io::Error::new(io::ErrorKind::Interrupted, "the reactor is shutting down");
            self.report_failure(run, err);
            return;
        }
        let attempts: Rc<dyn Attempts> = Rc::new(RunAttempts { connector: me, run });
        let time: Rc<dyn ReactorTime> = Rc::new(LoopTime {
            core: self.core.clone(),
        });
        let race = Race::new(
            time,
            self.attempt_delay.get(),
            self.timeout,
            self.dest.to_string(),
            &attempts,
        );
        // From here the race's deadline keeps this connector alive.
        drop(attempts);
        *self.race.borrow_mut() = Some(race.clone());
        let key = core.sources.borrow_mut().insert(Rc::new(RaceSource {
            connector: self.me.clone(),
        }));
        self.race_key.set(Some(key));
        match &self.dest {
            Destination::Unix(addr) => match self.unix_target(addr) {
                Ok(addr) => race.begin(vec![addr]),
                Err(err) => {
                    self.end_race();
                    self.report_failure(run, err);
                }
            },
            Destination::Tcp(dest) => match dest.socket_addr() {
                Some(addr) => race.begin(vec![addr.into()]),
                None => {
                    let lookup = resolver_for(&core).resolve(dest.host(), dest.port());
                    race.resolve(dest.host(), lookup);
                }
            },
        }
    }

    /// The OS address of a Unix destination, once its lock is checked if
    /// the connector was asked to.
    fn unix_target(&self, addr: &UnixAddress) -> io::Result<SockAddr> {
        let target = addr.to_sock_addr()?;
        if let (true, UnixAddress::Path(path)) = (self.check_lock.get(), addr) {
            if !super::unix::lock_is_held(path)? {
                return Err(io::Error::new(
                    io::ErrorKind::ConnectionRefused,
                    format!("no server holds the lock of {}", path.display()),
                ));
            }
        }
        Ok(target)
    }

    /// Ends the race under way, if any: its timers, its attempts, and the
    /// source that lets a stopping reactor stop it.
    fn end_race(&self) {
        let race = self.race.borrow_mut().take();
        if let Some(race) = race {
            race.cancel();
        }
        let leftover: Vec<usize> = self.pending.borrow().iter().map(|a| a.index).collect();
        for index in leftover {
            self.close_attempt(index);
        }
        if let (Some(key), Some(core)) = (self.race_key.take(), self.core.upgrade()) {
            core.sources.borrow_mut().remove(key);
        }
    }

    /// Reports a failure of run `run` once the current callback returns,
    /// never from inside `connect` (as Twisted defers it with
    /// `callLater(0)`), and only if that run is still the one under way.
    fn report_failure(&self, run: u64, err: io::Error) {
        // Held strongly: once the race is over, nothing else may hold the
        // connector (its user need not keep the handle).
        let (Some(core), Some(inner)) = (self.core.upgrade(), self.me.upgrade()) else {
            return;
        };
        core.defer(move || {
            if inner.run.get() == run {
                inner.fail(err);
            }
        });
    }

    /// Opens attempt `index` of run `run` and registers it with the poller.
    fn open_attempt(&self, run: u64, index: usize, addr: &SockAddr) -> io::Result<()> {
        let Some(core) = self.core.upgrade() else {
            return Err(io::Error::other("the reactor is gone"));
        };
        if core.is_shutting_down() {
            return Err(io::Error::new(
                io::ErrorKind::Interrupted,
                "the reactor is shutting down",
            ));
        }
        if let Some(bind) = self.bind {
            if Domain::for_address(bind) != addr.domain() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "cannot connect to {} from {bind}: another address family",
                        Address::from_sock_addr(addr)
                    ),
                ));
            }
        }
        let socket = open(addr, self.bind)?;
        let key = core.sources.borrow().vacant_key();
        // SAFETY: the socket is deleted from the poller before it is
        // dropped: in `close_attempt`, or in `discard_attempt` when the
        // reactor goes; the winner passes, still registered, to its
        // connection.
        unsafe {
            core.poller
                .add_with_mode(&socket, Event::writable(key), PollMode::Level)?
        };
        let source = Rc::new(AttemptSource {
            connector: self.me.clone(),
            run,
            index,
        });
        let inserted = core.sources.borrow_mut().insert(source);
        debug_assert_eq!(inserted, key);
        log::debug!(
            "connecting to {} ({}), attempt {index}",
            self.dest,
            Address::from_sock_addr(addr)
        );
        self.pending
            .borrow_mut()
            .push(PendingAttempt { index, socket, key });
        Ok(())
    }

    fn take_attempt(&self, index: usize) -> Option<PendingAttempt> {
        let mut pending = self.pending.borrow_mut();
        let position = pending.iter().position(|a| a.index == index)?;
        Some(pending.swap_remove(position))
    }

    /// Takes attempt `index` out of the poller and closes its socket.
    fn close_attempt(&self, index: usize) {
        let Some(attempt) = self.take_attempt(index) else {
            return;
        };
        if let Some(core) = self.core.upgrade() {
            let _ = core.poller.delete(&attempt.socket);
            core.sources.borrow_mut().remove(attempt.key);
        }
    }

    /// The socket of attempt `index` became writable: connected, or failed.
    fn attempt_ready(&self, run: u64, index: usize) {
        if run != self.run.get() {
            return;
        }
        let outcome = {
            let pending = self.pending.borrow();
            let Some(attempt) = pending.iter().find(|a| a.index == index) else {
                return;
            };
            match attempt.socket.take_error() {
                Ok(Some(err)) | Err(err) => Err(err),
                Ok(None) => attempt
                    .socket
                    .peer_addr()
                    .map(|peer| Address::from_sock_addr(&peer)),
            }
        };
        let race = self.race.borrow().clone();
        match outcome {
            Ok(peer) => {
                if race.is_some_and(|race| race.attempt_connected(index)) {
                    self.race.borrow_mut().take();
                    if let (Some(key), Some(core)) = (self.race_key.take(), self.core.upgrade()) {
                        core.sources.borrow_mut().remove(key);
                    }
                    self.connected(index, peer);
                } else {
                    self.close_attempt(index);
                }
            }
            Err(err) => {
                let err = if err.kind() == io::ErrorKind::NotConnected {
                    // Writable without an error and without a peer: the
                    // connect failed and the error was already consumed.
                    io::Error::new(io::ErrorKind::ConnectionRefused, "connection refused")
                } else {
                    err
                };
                self.close_attempt(index);
                if let Some(race) = race {
                    race.attempt_failed(index, err);
                }
            }
        }
    }

    /// Attempt `index` won: its socket becomes the connection.
    fn connected(&self, index: usize, peer: Address) {
        let (Some(core), Some(attempt)) = (self.core.upgrade(), self.take_attempt(index)) else {
            return;
        };
        let unix = matches!(self.dest, Destination::Unix(_));
        let stream = StreamSocket::new(attempt.socket, unix);
        // Connected from here, as in Twisted: `stop_connecting` from inside
        // `build_protocol` no longer applies.
        self.state.set(ConnectorState::Connected);
        let built = catch_unwind(AssertUnwindSafe(|| {
            self.factory.borrow_mut().build(peer.clone())
        }));
        let protocol = match built {
            Ok(Some(protocol)) => protocol,
            refused => {
                let why = match refused {
                    Err(panic) => {
                        let message = crate::panic_message(&*panic);
                        log::error!("build_protocol panicked for {peer}: {message}");
                        format!("build_protocol panicked: {message}")
                    }
                    _ => "the factory built no protocol".to_owned(),
                };
                let _ = core.poller.delete(&stream);
                core.sources.borrow_mut().remove(attempt.key);
                drop(stream);
                self.state.set(ConnectorState::Connecting);
                self.fail(io::Error::new(io::ErrorKind::ConnectionAborted, why));
                return;
            }
        };
        let Some(me) = self.me.upgrade() else { return };
        if let Err(err) = Conn::start(
            &core,
            stream,
            peer.clone(),
            protocol,
            Some((me, attempt.key)),
        ) {
            log::error!("could not set up the connection to {peer}: {err}");
            self.state.set(ConnectorState::Connecting);
            self.fail(err);
        }
    }

    pub(crate) fn register_conn(&self, conn: Rc<Conn>) {
        *self.conn.borrow_mut() = Some(conn);
        self.state.set(ConnectorState::Connected);
    }

    fn fail(&self, err: io::Error) {
        self.end_race();
        if self.state.get() != ConnectorState::Connecting {
            return;
        }
        log::debug!("connection to {} failed: {err}", self.dest);
        self.state.set(ConnectorState::Disconnected);
        self.with_factory(move |factory, connector| {
            factory.connection_failed(connector, &err);
            connector.inner.stop_factory_if_idle(factory);
        });
    }

    pub(crate) fn connection_lost(&self, reason: Reason) {
        self.conn.borrow_mut().take();
        self.state.set(ConnectorState::Disconnected);
        self.with_factory(move |factory, connector| {
            factory.connection_lost(connector, &reason);
            connector.inner.stop_factory_if_idle(factory);
        });
    }

    /// After a failure or a loss: unless the factory's callback started a new
    /// attempt, the factory is done.
    fn stop_factory_if_idle(&self, factory: &mut dyn DynClientFactory) {
        if self.state.get() == ConnectorState::Disconnected && self.factory_started.replace(false) {
            factory.stop();
        }
    }

    pub(crate) fn stop_connecting(&self) {
        if self.state.get() == ConnectorState::Connecting {
            self.fail(io::Error::new(
                io::ErrorKind::Interrupted,
                "connection attempt stopped",
            ));
        }
    }

    /// The reactor is going away: attempt `index` leaves the poller before
    /// its socket closes.
    fn discard_attempt(&self, index: usize, poller: &Poller) {
        if let Some(attempt) = self.take_attempt(index) {
            let _ = poller.delete(&attempt.socket);
        }
    }
}

/// One run of a connector, as its race sees it. The race's deadline holds
/// it, and through it the connector, while the race runs.
struct RunAttempts {
    connector: Rc<ConnectorInner>,
    run: u64,
}

impl Attempts for RunAttempts {
    fn start(&self, index: usize, addr: &SockAddr) -> io::Result<()> {
        self.connector.open_attempt(self.run, index, addr)
    }

    fn abandon(&self, index: usize) {
        self.connector.close_attempt(index);
    }

    fn failed(&self, err: io::Error) {
        self.connector.report_failure(self.run, err);
    }
}

/// One attempt's entry in the poller: which connector, run and attempt its
/// key stands for.
struct AttemptSource {
    connector: Weak<ConnectorInner>,
    run: u64,
    index: usize,
}

impl Source for AttemptSource {
    fn ready(self: Rc<Self>, _readable: bool, _writable: bool) {
        if let Some(connector) = self.connector.upgrade() {
            connector.attempt_ready(self.run, self.index);
        }
    }

    fn shut_down(&self) {
        if let Some(connector) = self.connector.upgrade() {
            connector.stop_connecting();
        }
    }

    fn discard(&self, poller: &Poller) {
        if let Some(connector) = self.connector.upgrade() {
            connector.discard_attempt(self.index, poller);
        }
    }
}

/// A race's place among the reactor's sources, with no socket of its own:
/// what lets a stopping reactor stop a connector that is still looking its
/// name up, as it stops one whose attempts are in the poller.
struct RaceSource {
    connector: Weak<ConnectorInner>,
}

impl Source for RaceSource {
    fn ready(self: Rc<Self>, _readable: bool, _writable: bool) {}

    fn shut_down(&self) {
        if let Some(connector) = self.connector.upgrade() {
            connector.stop_connecting();
        }
    }

    fn discard(&self, _poller: &Poller) {}
}

/// The reactor's timers as a [`ReactorTime`], held weakly: a race's timers
/// must not keep its reactor alive.
struct LoopTime {
    core: Weak<Core>,
}

impl ReactorTime for LoopTime {
    fn now(&self) -> Instant {
        self.core
            .upgrade()
            .map_or_else(Instant::now, |core| core.timers.now())
    }

    fn call_later(&self, delay: Duration, f: Box<dyn FnOnce()>) -> DelayedCall {
        match self.core.upgrade() {
            Some(core) => core.timers.call_later(delay, f),
            // The reactor is gone: a call on a queue that goes at once,
            // which never runs.
            None => TimerQueue::new(TimeSource::Monotonic).call_later(delay, f),
        }
    }

    fn delayed_calls(&self) -> Vec<DelayedCall> {
        self.core
            .upgrade()
            .map_or_else(Vec::new, |core| core.timers.delayed_calls())
    }
}
