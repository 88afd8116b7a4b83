//! A reactor group's listening ports: a boss that accepts and hands each
//! connection to a worker, or a socket per worker with SO_REUSEPORT.
//!
//! Either way a worker keeps, per port, the factory `make_factory` built on
//! its thread, in a table of its own thread ([`WORKER_PORTS`]): the calls
//! that carry connections to it are `Send`, the factories are not.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::ToSocketAddrs;
use std::rc::{Rc, Weak};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use polling::Poller;

use super::placement::{Cursor, Placement, MAX_HANDOFFS_WAITING};
use super::worker::{HandoffTicket, WorkerHandle};
use crate::net::listener::{self, Serve};
use crate::net::stream_socket::StreamSocket;
use crate::net::tcp::{bind, bind_first, DEFAULT_BACKLOG};
use crate::net::{Address, DynFactory, ListeningPort, UnixAddress};
use crate::reactor::{Core, Reactor, Source};

/// Builds a factory on each worker's thread.
pub(crate) type MakeFactory = Arc<dyn Fn() -> Box<dyn DynFactory> + Send + Sync>;

static NEXT_PORT: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// A worker's side of each group port it serves, by port id.
    static WORKER_PORTS: RefCell<HashMap<u64, WorkerPort>> = RefCell::new(HashMap::new());
}

enum WorkerPort {
    /// Connections come from the boss.
    HandedOff(Rc<Served>),
    /// The worker listens itself (SO_REUSEPORT).
    Listening(ListeningPort),
}

/// A port listening on behalf of a whole [`ReactorGroup`](super::ReactorGroup),
/// from [`ReactorGroup::listen_tcp`](super::ReactorGroup::listen_tcp).
///
/// Dropping the handle does not stop listening; call
/// [`stop_listening`](Self::stop_listening) (or stop the group).
pub struct GroupPort {
    id: u64,
    host: Address,
    placement: Placement,
    /// The boss's listening socket; `None` with [`Placement::ReusePort`].
    boss: Option<ListeningPort>,
    /// The boss's reactor: once it stops, so has every worker's socket.
    group: Reactor,
    workers: Arc<[WorkerHandle]>,
    listening: std::cell::Cell<bool>,
}

impl GroupPort {
    fn new(
        id: u64,
        host: Address,
        placement: Placement,
        (group, boss): (&Reactor, Option<ListeningPort>),
        workers: &Arc<[WorkerHandle]>,
    ) -> GroupPort {
        GroupPort {
            id,
            host,
            placement,
            boss,
            group: group.clone(),
            workers: workers.clone(),
            listening: std::cell::Cell::new(true),
        }
    }

    /// The local address, with the real port when listening on port 0.
    pub fn host(&self) -> Address {
        self.host.clone()
    }

    /// How connections are spread over the workers.
    pub fn placement(&self) -> Placement {
        self.placement
    }

    /// Stops accepting connections: the listening socket(s) close, and
    /// every worker's factory for this port gets `stop_factory` once the
    /// connections already handed to it are served. Connections already
    /// accepted stay open. Calling it again does nothing.
    pub fn stop_listening(&self) {
        if !self.listening.replace(false) {
            return;
        }
        if let Some(boss) = &self.boss {
            boss.stop_listening();
        }
        let id = self.id;
        for worker in self.workers.iter() {
            let _ = worker.call_from_thread(move || close_worker_port(id));
        }
    }

    /// Whether the port is still listening: not once
    /// [`stop_listening`](Self::stop_listening) ran or the group stopped.
    pub fn is_listening(&self) -> bool {
        self.listening.get()
            && match &self.boss {
                Some(boss) => boss.is_listening(),
                None => !self.group.is_stopping(),
            }
    }
}

impl fmt::Debug for GroupPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GroupPort")
            .field("host", &self.host)
            .field("placement", &self.placement)
            .field("listening", &self.is_listening())
            .finish()
    }
}

/// Listens on `addr` for the group: see
/// [`ReactorGroup::listen_tcp_with`](super::ReactorGroup::listen_tcp_with).
pub(crate) fn listen_tcp(
    boss: &Reactor,
    workers: &Arc<[WorkerHandle]>,
    cursor: &Arc<Cursor>,
    addr: impl ToSocketAddrs,
    placement: Placement,
    make_factory: MakeFactory,
) -> io::Result<GroupPort> {
    refuse_if_stopped(boss)?;
    let id = NEXT_PORT.fetch_add(1, Ordering::Relaxed);
    let reuse_port = placement == Placement::ReusePort;
    let first = bind_first(addr, DEFAULT_BACKLOG, reuse_port)?;
    let local = first
        .local_addr()?
        .as_socket()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not an IP address"))?;
    let host = Address::Tcp(local);
    let boss_port = if reuse_port {
        // Bind every worker's socket here, so that an error comes back now.
        let mut sockets = vec![first];
        for _ in 1..workers.len() {
            sockets.push(bind(local, DEFAULT_BACKLOG, true)?);
        }
        for (worker, socket) in workers.iter().zip(sockets) {
            let make_factory = make_factory.clone();
            let host = host.clone();
            let _ = worker.call_from_thread(move || {
                // Without a factory the socket closes, and the kernel
                // leaves this worker out.
                let Some(factory) = make_on_worker(&make_factory, &host) else {
                    return;
                };
                let reactor = crate::reactor();
                match listener::listen(reactor.core(), socket, factory, None) {
                    Ok(port) => {
                        WORKER_PORTS.with(|ports| {
                            ports.borrow_mut().insert(id, WorkerPort::Listening(port))
                        });
                    }
                    Err(err) => log::error!("could not listen on {local}: {err}"),
                }
            });
        }
        None
    } else {
        let serving = serving_flags(workers);
        let hand_off = HandOff::boxed((id, &host), workers, cursor, placement, &serving);
        let port = listener::listen_serving(boss.core(), first, hand_off, None)?;
        open_worker_ports(id, &host, workers, make_factory, serving);
        Some(port)
    };
    Ok(GroupPort::new(
        id,
        host,
        placement,
        (boss, boss_port),
        workers,
    ))
}

/// Listens on a Unix socket for the group: see
/// [`ReactorGroup::listen_unix`](super::ReactorGroup::listen_unix).
pub(crate) fn listen_unix(
    boss: &Reactor,
    workers: &Arc<[WorkerHandle]>,
    cursor: &Arc<Cursor>,
    address: UnixAddress,
    mode: u32,
    placement: Placement,
    make_factory: MakeFactory,
) -> io::Result<GroupPort> {
    if placement == Placement::ReusePort {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "a Unix socket cannot be shared with SO_REUSEPORT; use a boss placement",
        ));
    }
    refuse_if_stopped(boss)?;
    let id = NEXT_PORT.fetch_add(1, Ordering::Relaxed);
    let serving = serving_flags(workers);
    let host = Address::Unix(address.clone());
    let hand_off = HandOff::boxed((id, &host), workers, cursor, placement, &serving);
    let port = boss.listen_unix_serving(address, mode, DEFAULT_BACKLOG, true, hand_off)?;
    open_worker_ports(id, &host, workers, make_factory, serving);
    Ok(GroupPort::new(
        id,
        host,
        placement,
        (boss, Some(port)),
        workers,
    ))
}

/// Has each worker build its factory for port `id`, on its thread. Called
/// once the boss listens, from the boss's thread, so each worker gets this
/// call before any connection the boss hands it. A worker that could not
/// build one is marked as not serving the port.
fn open_worker_ports(
    id: u64,
    host: &Address,
    workers: &[WorkerHandle],
    make: MakeFactory,
    serving: Arc<[AtomicBool]>,
) {
    for (index, worker) in workers.iter().enumerate() {
        let (make, host, serving) = (make.clone(), host.clone(), serving.clone());
        let _ = worker.call_from_thread(move || match make_on_worker(&make, &host) {
            Some(factory) => open_worker_port(id, host, factory),
            None => serving[index].store(false, Ordering::Relaxed),
        });
    }
}

/// One flag per worker, all up: which workers serve a port.
fn serving_flags(workers: &[WorkerHandle]) -> Arc<[AtomicBool]> {
    workers.iter().map(|_| AtomicBool::new(true)).collect()
}

/// Builds this worker's factory; a panic in `make_factory` is logged and
/// leaves the worker out of the port.
fn make_on_worker(make: &MakeFactory, host: &Address) -> Option<Box<dyn DynFactory>> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| make())) {
        Ok(factory) => Some(factory),
        Err(panic) => {
            log::error!(
                "making the factory for {host} panicked on worker {}: {}; \
                 that worker serves no connection of it",
                super::worker_index().unwrap_or_default(),
                crate::panic_message(&*panic)
            );
            None
        }
    }
}

/// A port cannot be opened for a group that has stopped: no one would
/// accept on it.
fn refuse_if_stopped(boss: &Reactor) -> io::Result<()> {
    if boss.is_stopping() {
        return Err(io::Error::other("the reactor group has stopped"));
    }
    Ok(())
}

/// The boss's side: hands each accepted connection to a worker.
struct HandOff(Arc<Route>);

/// Where a port's connections may go.
struct Route {
    port: u64,
    host: Address,
    placement: Placement,
    workers: Arc<[WorkerHandle]>,
    cursor: Arc<Cursor>,
    /// Which workers have a factory for this port.
    serving: Arc<[AtomicBool]>,
}

impl HandOff {
    fn boxed(
        (port, host): (u64, &Address),
        workers: &Arc<[WorkerHandle]>,
        cursor: &Arc<Cursor>,
        placement: Placement,
        serving: &Arc<[AtomicBool]>,
    ) -> Box<dyn Serve> {
        Box::new(HandOff(Arc::new(Route {
            port,
            host: host.clone(),
            placement,
            workers: workers.clone(),
            cursor: cursor.clone(),
            serving: serving.clone(),
        })))
    }
}

impl Route {
    fn serves(&self, worker: usize) -> bool {
        self.serving[worker].load(Ordering::Relaxed)
    }

    /// Hands a connection to a worker that serves the port.
    fn hand_off(self: &Arc<Self>, stream: StreamSocket, peer: Address) {
        let chosen = self
            .cursor
            .choose(&self.workers, self.placement, |i| self.serves(i));
        let Some(index) = chosen else {
            // `has_room` lets a connection through without a worker only
            // when none serves the port.
            log::error!(
                "no worker serves {} (none could make its factory); \
                 closing the connection from {peer}",
                self.host
            );
            return;
        };
        let worker = &self.workers[index];
        let ticket = worker.hand_off();
        let route = self.clone();
        let sent = worker.call_from_thread(move || serve_handed(route, ticket, stream, peer));
        if sent.is_err() {
            log::warn!("worker {index} has stopped; a connection handed to it was closed");
        }
    }
}

impl Serve for HandOff {
    /// While no worker serves the port at all, connections are taken (and
    /// closed) rather than left to wait in the backlog.
    fn has_room(&self) -> bool {
        let route = &self.0;
        let mut serving = (0..route.workers.len())
            .filter(|&i| route.serves(i))
            .peekable();
        serving.peek().is_none()
            || serving.any(|i| route.workers[i].handoffs_waiting() < MAX_HANDOFFS_WAITING)
    }

    fn serve(&mut self, _core: &Rc<Core>, stream: StreamSocket, peer: Address, _host: &Address) {
        self.0.hand_off(stream, peer);
    }

    // The workers' factories start and stop on their own threads.
    fn start(&mut self) {}

    fn stop(&mut self) {}
}

/// A worker's factory for a port whose boss hands it connections.
struct Served {
    core: Weak<Core>,
    key: usize,
    id: u64,
    host: Address,
    factory: RefCell<Box<dyn DynFactory>>,
}

fn open_worker_port(id: u64, host: Address, factory: Box<dyn DynFactory>) {
    let reactor = crate::reactor();
    let core = reactor.core();
    let key = core.sources.borrow().vacant_key();
    let served = Rc::new(Served {
        core: Rc::downgrade(core),
        key,
        id,
        host,
        factory: RefCell::new(factory),
    });
    // In the reactor's table (without a socket in its poller), so that a
    // graceful stop stops the factory as it would a listening port's.
    let inserted = core.sources.borrow_mut().insert(served.clone());
    debug_assert_eq!(inserted, key);
    WORKER_PORTS.with(|ports| {
        ports
            .borrow_mut()
            .insert(id, WorkerPort::HandedOff(served.clone()))
    });
    call_factory(&served, "start_factory", |f| f.start());
}

/// On the worker: serves a connection the boss accepted.
fn serve_handed(route: Arc<Route>, ticket: HandoffTicket, stream: StreamSocket, peer: Address) {
    drop(ticket);
    let served = WORKER_PORTS.with(|ports| match ports.borrow().get(&route.port) {
        Some(WorkerPort::HandedOff(served)) => Some(served.clone()),
        _ => None,
    });
    let Some(served) = served else {
        let here = super::worker_index().unwrap_or_default();
        if !route.serves(here) {
            // Handed here before this worker found it could not make its
            // factory: on to one that could.
            route.hand_off(stream, peer);
        } else {
            log::debug!("a connection from {peer} arrived after its port stopped; closing it");
        }
        return;
    };
    let Some(core) = served.core.upgrade() else {
        return;
    };
    if core.is_shutting_down() {
        return;
    }
    let Ok(mut factory) = served.factory.try_borrow_mut() else {
        // Only a factory that runs the reactor's loop from inside itself
        // gets here.
        log::error!(
            "the factory for {} is busy; closing the connection from {peer}",
            served.host
        );
        return;
    };
    listener::serve_with(&core, &mut **factory, stream, peer, &served.host);
}

/// On the worker: the port stopped listening.
fn close_worker_port(id: u64) {
    let port = WORKER_PORTS.with(|ports| ports.borrow_mut().remove(&id));
    match port {
        Some(WorkerPort::HandedOff(served)) => served.close(),
        Some(WorkerPort::Listening(port)) => port.stop_listening(),
        None => {}
    }
}

fn call_factory(served: &Served, what: &str, f: impl FnOnce(&mut dyn DynFactory)) {
    let called = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        f(&mut **served.factory.borrow_mut())
    }));
    if let Err(panic) = called {
        log::error!(
            "{what} panicked for {}: {}",
            served.host,
            crate::panic_message(&*panic)
        );
    }
}

impl Served {
    fn close(&self) {
        let Some(core) = self.core.upgrade() else {
            return;
        };
        if core.sources.borrow_mut().remove(self.key).is_none() {
            return;
        }
        WORKER_PORTS.with(|ports| ports.borrow_mut().remove(&self.id));
        call_factory(self, "stop_factory", |f| f.stop());
    }
}

impl Source for Served {
    fn ready(self: Rc<Self>, _readable: bool, _writable: bool) {}

    fn shut_down(&self) {
        self.close();
    }

    fn discard(&self, _poller: &Poller) {}
}
