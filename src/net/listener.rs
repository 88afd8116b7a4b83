//! Listening ports for stream connections, TCP or Unix.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::{Rc, Weak};
use std::time::Duration;

use polling::{Event, PollMode, Poller};
use socket2::Socket;

use super::address::Address;
use super::connection::Conn;
use super::stream_socket::StreamSocket;
use super::DynFactory;
use crate::reactor::{Core, Source};
use crate::time::DelayedCall;

/// Connections accepted per readiness event at most, so a flood of new
/// connections does not starve established ones.
const ACCEPT_BATCH: usize = 64;
/// After a failed accept (out of file descriptors, out of memory), accepting
/// pauses this long, doubling while it keeps failing, up to
/// `MAX_ACCEPT_BACKOFF`.
const MIN_ACCEPT_BACKOFF: Duration = Duration::from_millis(10);
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// A port listening for stream connections, from
/// [`Reactor::listen_tcp`](crate::Reactor::listen_tcp) or
/// [`Reactor::listen_unix`](crate::Reactor::listen_unix): Twisted's
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
    host: Address,
    unix: bool,
    listener: RefCell<Option<Socket>>,
    serve: RefCell<Box<dyn Serve>>,
    backoff: Cell<Duration>,
    /// Accepting is paused because no worker could take a connection.
    waiting_for_room: Cell<bool>,
    resume: RefCell<Option<DelayedCall>>,
    /// Runs once the socket is closed (a Unix port removes its file).
    on_close: RefCell<Option<Box<dyn FnOnce()>>>,
}

/// What a listening port does with the connections it accepts: serve them
/// on its own reactor ([`Here`]), or hand them to another (a reactor
/// group's workers).
pub(crate) trait Serve {
    /// Whether a connection accepted now could be taken. While not, the
    /// port leaves its backlog to the kernel and looks again shortly.
    fn has_room(&self) -> bool {
        true
    }
    /// Takes a connection just accepted.
    fn serve(&mut self, core: &Rc<Core>, stream: StreamSocket, peer: Address, host: &Address);
    /// The port starts listening.
    fn start(&mut self);
    /// The port stops listening.
    fn stop(&mut self);
}

/// Serves each connection on the listening port's own reactor with a
/// protocol from the factory.
pub(crate) struct Here(pub(crate) Box<dyn DynFactory>);

impl Serve for Here {
    fn serve(&mut self, core: &Rc<Core>, stream: StreamSocket, peer: Address, host: &Address) {
        serve_with(core, &mut *self.0, stream, peer, host);
    }

    fn start(&mut self) {
        self.0.start();
    }

    fn stop(&mut self) {
        self.0.stop();
    }
}

/// Serves one accepted connection on `core` with a protocol from
/// `factory`: a refusal or a panic in `build_protocol` closes the socket.
pub(crate) fn serve_with(
    core: &Rc<Core>,
    factory: &mut dyn DynFactory,
    stream: StreamSocket,
    peer: Address,
    host: &Address,
) {
    let built = catch_unwind(AssertUnwindSafe(|| factory.build(peer.clone())));
    let protocol = match built {
        Ok(Some(protocol)) => protocol,
        Ok(None) => {
            log::debug!("factory on {host} refused {peer}");
            return;
        }
        Err(panic) => {
            log::error!(
                "build_protocol panicked for {peer} on {host}: {}; closing that connection",
                crate::panic_message(&*panic)
            );
            return;
        }
    };
    if let Err(err) = Conn::start(core, stream, peer.clone(), protocol, None) {
        log::error!("could not set up the connection from {peer}: {err}");
    }
}

/// Serves the connections `listener` (bound, listening, non-blocking)
/// accepts with protocols from `factory`, whose `start_factory` runs now.
pub(crate) fn listen(
    core: &Rc<Core>,
    listener: Socket,
    factory: Box<dyn DynFactory>,
    on_close: Option<Box<dyn FnOnce()>>,
) -> io::Result<ListeningPort> {
    listen_serving(core, listener, Box::new(Here(factory)), on_close)
}

/// Listens as [`listen`] does, doing with each accepted connection what
/// `serve` does.
pub(crate) fn listen_serving(
    core: &Rc<Core>,
    listener: Socket,
    serve: Box<dyn Serve>,
    on_close: Option<Box<dyn FnOnce()>>,
) -> io::Result<ListeningPort> {
    let host = Address::from_sock_addr(&listener.local_addr()?);
    let unix = host.unix().is_some();
    let key = core.sources.borrow().vacant_key();
    let inner = Rc::new_cyclic(|me| PortInner {
        core: Rc::downgrade(core),
        me: me.clone(),
        key,
        host,
        unix,
        listener: RefCell::new(None),
        serve: RefCell::new(serve),
        backoff: Cell::new(MIN_ACCEPT_BACKOFF),
        waiting_for_room: Cell::new(false),
        resume: RefCell::new(None),
        on_close: RefCell::new(on_close),
    });
    // SAFETY: the listener is deleted from the poller before it is dropped,
    // in `stop_listening` or `discard`.
    unsafe {
        core.poller
            .add_with_mode(&listener, Event::readable(key), PollMode::Level)?
    };
    let inserted = core.sources.borrow_mut().insert(inner.clone());
    debug_assert_eq!(inserted, key);
    *inner.listener.borrow_mut() = Some(listener);
    log::debug!("listening on {}", inner.host);
    if let Err(panic) = catch_unwind(AssertUnwindSafe(|| inner.serve.borrow_mut().start())) {
        log::error!("start_factory panicked: {}", crate::panic_message(&*panic));
    }
    Ok(ListeningPort { inner })
}

impl ListeningPort {
    /// The local address, with the real port when listening on port 0.
    pub fn host(&self) -> Address {
        self.inner.host.clone()
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
    fn accept_ready(self: &Rc<Self>) {
        let Some(core) = self.core.upgrade() else {
            return;
        };
        for _ in 0..ACCEPT_BATCH {
            if !self.serve.borrow().has_room() {
                if !self.waiting_for_room.replace(true) {
                    log::warn!(
                        "{}: every worker is behind with the connections handed to it; \
                         accepting pauses until one catches up",
                        self.host
                    );
                }
                self.pause_accepting(&core, MIN_ACCEPT_BACKOFF);
                return;
            }
            self.waiting_for_room.set(false);
            let accepted = match self.listener.borrow().as_ref() {
                Some(listener) => listener.accept(),
                None => return,
            };
            match accepted {
                Ok((socket, peer)) => {
                    self.backoff.set(MIN_ACCEPT_BACKOFF);
                    let stream = StreamSocket::new(socket, self.unix);
                    self.serve(&core, stream, Address::from_sock_addr(&peer));
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

    fn serve(&self, core: &Rc<Core>, stream: StreamSocket, peer: Address) {
        self.serve
            .borrow_mut()
            .serve(core, stream, peer, &self.host);
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
        self.pause_accepting(core, delay);
    }

    /// Stops watching the listener for `delay`.
    fn pause_accepting(self: &Rc<Self>, core: &Rc<Core>, delay: Duration) {
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

    fn stop_listening(&self) {
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
        self.run_on_close();
        log::debug!("stopped listening on {}", self.host);
        match (self.me.upgrade(), self.core.upgrade()) {
            // Called from inside this factory (e.g. `build_protocol`): stop
            // it once that call returns.
            (Some(me), Some(core)) if self.serve.try_borrow_mut().is_err() => {
                core.defer(move || me.stop_factory())
            }
            _ => self.stop_factory(),
        }
    }

    fn stop_factory(&self) {
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| self.serve.borrow_mut().stop())) {
            log::error!("stop_factory panicked: {}", crate::panic_message(&*panic));
        }
    }

    fn run_on_close(&self) {
        if let Some(on_close) = self.on_close.borrow_mut().take() {
            if let Err(panic) = catch_unwind(AssertUnwindSafe(on_close)) {
                log::error!(
                    "cleaning up after {} panicked: {}",
                    self.host,
                    crate::panic_message(&*panic)
                );
            }
        }
    }

    fn discard(&self, poller: &Poller) {
        if let Some(listener) = self.listener.borrow_mut().take() {
            let _ = poller.delete(&listener);
            drop(listener);
            self.run_on_close();
        }
    }
}

impl Source for PortInner {
    fn ready(self: Rc<Self>, _readable: bool, _writable: bool) {
        self.accept_ready();
    }

    fn shut_down(&self) {
        self.stop_listening();
    }

    fn discard(&self, poller: &Poller) {
        PortInner::discard(self, poller);
    }
}
