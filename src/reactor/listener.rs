//! Listening TCP ports.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::{Rc, Weak};
use std::time::Duration;

use polling::{Event, PollMode, Poller};
use socket2::{Domain, Socket, Type};

use super::tcp::Conn;
use super::{Core, DynFactory, Source};
use crate::time::DelayedCall;

/// Connections accepted per readiness event at most, so a flood of new
/// connections does not starve established ones.
const ACCEPT_BATCH: usize = 64;
/// Listen backlog. Twisted's default is 50; a server that takes a thousand
/// connections at once needs more.
const BACKLOG: i32 = 1024;
/// After a failed accept (out of file descriptors, out of memory), accepting
/// pauses this long, doubling while it keeps failing, up to
/// `MAX_ACCEPT_BACKOFF`.
const MIN_ACCEPT_BACKOFF: Duration = Duration::from_millis(10);
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// A port listening for TCP connections, from
/// [`Reactor::listen_tcp`](super::Reactor::listen_tcp): Twisted's
/// `IListeningPort`.
///
/// Dropping the handle does not stop listening; call
/// [`stop_listening`](Self::stop_listening).
#[derive(Clone)]
pub struct ListeningPort {
    inner: Rc<PortInner>,
}

pub(crate) struct PortInner {
    core: Weak<Core>,
    me: Weak<PortInner>,
    key: usize,
    host: SocketAddr,
    listener: RefCell<Option<TcpListener>>,
    factory: RefCell<Box<dyn DynFactory>>,
    backoff: Cell<Duration>,
    resume: RefCell<Option<DelayedCall>>,
}

pub(super) fn listen(
    core: &Rc<Core>,
    addr: impl ToSocketAddrs,
    factory: Box<dyn DynFactory>,
    reuse_port: bool,
) -> io::Result<ListeningPort> {
    let mut last_err = None;
    let mut bound = None;
    for addr in addr.to_socket_addrs()? {
        match bind(addr, reuse_port) {
            Ok(listener) => {
                bound = Some(listener);
                break;
            }
            Err(err) => last_err = Some(err),
        }
    }
    let listener = match bound {
        Some(listener) => listener,
        None => {
            return Err(last_err.unwrap_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidInput, "address resolved to nothing")
            }))
        }
    };
    let host = listener.local_addr()?;
    let key = core.sources.borrow().vacant_key();
    let inner = Rc::new_cyclic(|me| PortInner {
        core: Rc::downgrade(core),
        me: me.clone(),
        key,
        host,
        listener: RefCell::new(None),
        factory: RefCell::new(factory),
        backoff: Cell::new(MIN_ACCEPT_BACKOFF),
        resume: RefCell::new(None),
    });
    // SAFETY: the listener is deleted from the poller before it is dropped,
    // in `stop_listening` or `discard`.
    unsafe {
        core.poller
            .add_with_mode(&listener, Event::readable(key), PollMode::Level)?
    };
    let inserted = core
        .sources
        .borrow_mut()
        .insert(Source::Listener(inner.clone()));
    debug_assert_eq!(inserted, key);
    *inner.listener.borrow_mut() = Some(listener);
    log::debug!("listening on {host}");
    if let Err(panic) = catch_unwind(AssertUnwindSafe(|| inner.factory.borrow_mut().start())) {
        log::error!("start_factory panicked: {}", crate::panic_message(&*panic));
    }
    Ok(ListeningPort { inner })
}

fn bind(addr: SocketAddr, reuse_port: bool) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    if reuse_port {
        set_reuse_port(&socket)?;
    }
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

#[cfg(all(
    unix,
    not(any(target_os = "solaris", target_os = "illumos", target_os = "cygwin"))
))]
fn set_reuse_port(socket: &Socket) -> io::Result<()> {
    socket.set_reuse_port(true)
}

#[cfg(not(all(
    unix,
    not(any(target_os = "solaris", target_os = "illumos", target_os = "cygwin"))
)))]
fn set_reuse_port(_socket: &Socket) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "SO_REUSEPORT is not available on this platform",
    ))
}

impl ListeningPort {
    /// The local address, with the real port when listening on port 0.
    pub fn host(&self) -> SocketAddr {
        self.inner.host
    }

    /// Stops accepting connections and closes the listening socket; the
    /// factory's `stop_factory` runs. Connections already accepted stay
    /// open. Calling it again does nothing.
    pub fn stop_listening(&self) {
        self.inner.stop_listening();
    }

    /// Whether the port is still listening.
    pub fn is_listening(&self) -> bool {
        self.inner.listener.borrow().is_some()
    }
}

impl fmt::Debug for ListeningPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ListeningPort")
            .field("host", &self.inner.host)
            .field("listening", &self.is_listening())
            .finish()
    }
}

impl PortInner {
    pub(crate) fn accept_ready(self: &Rc<Self>) {
        let Some(core) = self.core.upgrade() else {
            return;
        };
        for _ in 0..ACCEPT_BATCH {
            let accepted = match self.listener.borrow().as_ref() {
                Some(listener) => listener.accept(),
                None => return,
            };
            match accepted {
                Ok((stream, peer)) => {
                    self.backoff.set(MIN_ACCEPT_BACKOFF);
                    self.serve(&core, stream, peer);
                }
                Err(err) => match err.kind() {
                    io::ErrorKind::WouldBlock => return,
                    // The peer gave up before we accepted: nothing to serve.
                    io::ErrorKind::ConnectionAborted
                    | io::ErrorKind::ConnectionReset
                    | io::ErrorKind::Interrupted => {}
                    _ => {
                        self.back_off(&core, err);
                        return;
                    }
                },
            }
        }
    }

    fn serve(&self, core: &Rc<Core>, stream: TcpStream, peer: SocketAddr) {
        let built = catch_unwind(AssertUnwindSafe(|| self.factory.borrow_mut().build(peer)));
        let protocol = match built {
            Ok(Some(protocol)) => protocol,
            Ok(None) => {
                log::debug!("factory on {} refused {peer}", self.host);
                return;
            }
            Err(panic) => {
                log::error!(
                    "build_protocol panicked for {peer} on {}: {}; closing that connection",
                    self.host,
                    crate::panic_message(&*panic)
                );
                return;
            }
        };
        if let Err(err) = Conn::start(core, stream, peer, protocol, None) {
            log::error!("could not set up the connection from {peer}: {err}");
        }
    }

    /// Accepting failed for a reason that will not go away at once (EMFILE,
    /// ENFILE, ENOBUFS, ENOMEM): with a level-triggered listener, retrying
    /// right away would spin a core. Stop watching the listener for a while.
    fn back_off(self: &Rc<Self>, core: &Rc<Core>, err: io::Error) {
        let delay = self.backoff.get();
        self.backoff.set((delay * 2).min(MAX_ACCEPT_BACKOFF));
        log::error!(
            "accept on {} failed: {err}; pausing accepts for {delay:?}",
            self.host
        );
        if let Some(listener) = self.listener.borrow().as_ref() {
            let _ = core
                .poller
                .modify_with_mode(listener, Event::none(self.key), PollMode::Level);
        }
        let port = Rc::downgrade(self);
        let resume = core.timers.call_later(
            delay,
            Box::new(move || {
                let Some(port) = port.upgrade() else { return };
                let Some(core) = port.core.upgrade() else {
                    return;
                };
                let listener = port.listener.borrow();
                if let Some(listener) = listener.as_ref() {
                    let _ = core.poller.modify_with_mode(
                        listener,
                        Event::readable(port.key),
                        PollMode::Level,
                    );
                }
            }),
        );
        *self.resume.borrow_mut() = Some(resume);
    }

    pub(crate) fn stop_listening(&self) {
        let Some(listener) = self.listener.borrow_mut().take() else {
            return;
        };
        if let Some(resume) = self.resume.borrow_mut().take() {
            let _ = resume.cancel();
        }
        if let Some(core) = self.core.upgrade() {
            let _ = core.poller.delete(&listener);
            core.sources.borrow_mut().remove(self.key);
        }
        drop(listener);
        log::debug!("stopped listening on {}", self.host);
        match (self.me.upgrade(), self.core.upgrade()) {
            // Called from inside this factory (e.g. `build_protocol`): stop
            // it once that call returns.
            (Some(me), Some(core)) if self.factory.try_borrow_mut().is_err() => {
                core.defer(move || me.stop_factory())
            }
            _ => self.stop_factory(),
        }
    }

    fn stop_factory(&self) {
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| self.factory.borrow_mut().stop())) {
            log::error!("stop_factory panicked: {}", crate::panic_message(&*panic));
        }
    }

    pub(crate) fn discard(&self, poller: &Poller) {
        if let Some(listener) = self.listener.borrow_mut().take() {
            let _ = poller.delete(&listener);
        }
    }
}
