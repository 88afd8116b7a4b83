//! Outgoing stream connections, TCP or Unix: [`Connector`].

use std::cell::{Cell, RefCell};
use std::fmt;
use std::io;
use std::net::ToSocketAddrs;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::{Rc, Weak};
use std::time::Duration;

use polling::{Event, PollMode, Poller};
use socket2::{Domain, SockAddr, Socket, Type};

use super::address::{Address, UnixAddress};
use super::connection::Conn;
use super::host_port::HostPort;
use super::stream_socket::StreamSocket;
use super::DynClientFactory;
use crate::protocol::Reason;
use crate::reactor::{Core, Source};
use crate::time::DelayedCall;

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
    /// A TCP host (an IP address, or a name resolved for each attempt)
    /// and port.
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
/// the same factory. The factory's `start_factory` runs before the first
/// attempt and `stop_factory` when an attempt fails or a connection ends
/// and no new attempt was started.
#[derive(Clone)]
pub struct Connector {
    inner: Rc<ConnectorInner>,
}

pub(crate) struct ConnectorInner {
    core: Weak<Core>,
    me: Weak<ConnectorInner>,
    dest: Destination,
    timeout: Duration,
    factory: RefCell<Box<dyn DynClientFactory>>,
    state: Cell<ConnectorState>,
    attempt: RefCell<Option<Attempt>>,
    conn: RefCell<Option<Rc<Conn>>>,
    factory_started: Cell<bool>,
}

struct Attempt {
    socket: Socket,
    key: usize,
    timer: DelayedCall,
}

impl Connector {
    pub(super) fn new(
        core: &Rc<Core>,
        dest: Destination,
        timeout: Duration,
        factory: Box<dyn DynClientFactory>,
    ) -> Connector {
        let inner = Rc::new_cyclic(|me| ConnectorInner {
            core: Rc::downgrade(core),
            me: me.clone(),
            dest,
            timeout,
            factory: RefCell::new(factory),
            state: Cell::new(ConnectorState::Disconnected),
            attempt: RefCell::new(None),
            conn: RefCell::new(None),
            factory_started: Cell::new(false),
        });
        Connector { inner }
    }

    /// Starts an attempt to connect. Does nothing (but log a warning) while
    /// connecting or connected.
    pub fn connect(&self) {
        self.inner.connect();
    }

    /// Abandons the attempt under way; the factory's
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
}

impl fmt::Debug for Connector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connector")
            .field("destination", &self.inner.dest)
            .field("state", &self.inner.state.get())
            .finish()
    }
}

fn open(dest: &SockAddr) -> io::Result<Socket> {
    let socket = Socket::new(dest.domain(), Type::STREAM, None)?;
    socket.set_nonblocking(true)?;
    if dest.domain() != Domain::UNIX {
        socket.set_nodelay(true)?;
    }
    match socket.connect(dest) {
        Ok(()) => Ok(socket),
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
        let Some(core) = self.core.upgrade() else {
            return;
        };
        self.state.set(ConnectorState::Connecting);
        if !self.factory_started.replace(true) {
            self.with_factory(|factory, _| factory.start());
        }
        self.with_factory(|factory, connector| factory.started_connecting(connector));
        if core.is_shutting_down() {
            let err = io::Error::new(io::ErrorKind::Interrupted, "the reactor is shutting down");
            self.defer_failure(&core, err);
            return;
        }
        match self.start_attempt(&core) {
            Ok(attempt) => *self.attempt.borrow_mut() = Some(attempt),
            Err(err) => self.defer_failure(&core, err),
        }
    }

    /// The OS address to connect to.
    fn target(&self) -> io::Result<SockAddr> {
        match &self.dest {
            Destination::Unix(addr) => addr.to_sock_addr(),
            Destination::Tcp(dest) => match dest.socket_addr() {
                Some(addr) => Ok(addr.into()),
                None => (dest.host(), dest.port())
                    .to_socket_addrs()?
                    .next()
                    .map(SockAddr::from)
                    .ok_or_else(|| {
                        io::Error::new(
                            io::ErrorKind::NotFound,
                            format!("{dest} resolved to nothing"),
                        )
                    }),
            },
        }
    }

    fn start_attempt(&self, core: &Rc<Core>) -> io::Result<Attempt> {
        let socket = open(&self.target()?)?;
        let key = core.sources.borrow().vacant_key();
        // SAFETY: the socket is deleted from the poller before it is
        // dropped: in `end_attempt`, or in `discard` when the reactor goes;
        // on success it passes, still registered, to the connection.
        unsafe {
            core.poller
                .add_with_mode(&socket, Event::writable(key), PollMode::Level)?
        };
        let me = self
            .me
            .upgrade()
            .expect("connector is alive while connecting");
        let inserted = core.sources.borrow_mut().insert(me);
        debug_assert_eq!(inserted, key);
        let weak = self.me.clone();
        let timeout = self.timeout;
        let timer = core.timers.call_later(
            timeout,
            Box::new(move || {
                if let Some(inner) = weak.upgrade() {
                    let err = io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("connection attempt timed out after {timeout:?}"),
                    );
                    inner.fail(err);
                }
            }),
        );
        Ok(Attempt { socket, key, timer })
    }

    /// Reports a failure that happened before the attempt reached the
    /// poller, after the `started_connecting` notification.
    /// Holds the connector until then: its user may have dropped every
    /// handle, and the factory must still hear how the attempt ended.
    fn defer_failure(&self, core: &Rc<Core>, err: io::Error) {
        let Some(inner) = self.me.upgrade() else {
            return;
        };
        core.defer(move || inner.fail(err));
    }

    fn end_attempt(&self) -> Option<Attempt> {
        let attempt = self.attempt.borrow_mut().take()?;
        let _ = attempt.timer.cancel();
        if let Some(core) = self.core.upgrade() {
            let _ = core.poller.delete(&attempt.socket);
            core.sources.borrow_mut().remove(attempt.key);
        }
        Some(attempt)
    }

    /// The socket under way became writable: connected, or failed.
    pub(crate) fn connect_ready(&self) {
        let Some(core) = self.core.upgrade() else {
            return;
        };
        let outcome = {
            let attempt = self.attempt.borrow();
            let Some(attempt) = attempt.as_ref() else {
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
        let peer = match outcome {
            Ok(peer) => peer,
            Err(err) if err.kind() == io::ErrorKind::NotConnected => {
                // Writable without an error and without a peer: the connect
                // failed and the error was already consumed.
                self.fail(io::Error::new(
                    io::ErrorKind::ConnectionRefused,
                    "connection refused",
                ));
                return;
            }
            Err(err) => {
                self.fail(err);
                return;
            }
        };
        let attempt = self.attempt.borrow_mut().take().expect("checked above");
        let _ = attempt.timer.cancel();
        let unix = matches!(self.dest, Destination::Unix(_));
        let stream = StreamSocket::new(attempt.socket, unix);
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
                self.fail(io::Error::new(io::ErrorKind::ConnectionAborted, why));
                return;
            }
        };
        let me = self
            .me
            .upgrade()
            .expect("connector is alive while connecting");
        if let Err(err) = Conn::start(
            &core,
            stream,
            peer.clone(),
            protocol,
            Some((me, attempt.key)),
        ) {
            log::error!("could not set up the connection to {peer}: {err}");
            self.fail(err);
        }
    }

    pub(crate) fn register_conn(&self, conn: Rc<Conn>) {
        *self.conn.borrow_mut() = Some(conn);
        self.state.set(ConnectorState::Connected);
    }

    fn fail(&self, err: io::Error) {
        drop(self.end_attempt());
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

    pub(crate) fn discard(&self, poller: &Poller) {
        if let Some(attempt) = self.attempt.borrow_mut().take() {
            let _ = poller.delete(&attempt.socket);
        }
    }
}

impl Source for ConnectorInner {
    fn ready(self: Rc<Self>, _readable: bool, _writable: bool) {
        self.connect_ready();
    }

    fn shut_down(&self) {
        self.stop_connecting();
    }

    fn discard(&self, poller: &Poller) {
        ConnectorInner::discard(self, poller);
    }
}
