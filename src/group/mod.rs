//! Several cores: a [`ReactorGroup`] of worker reactors, one thread each,
//! that share listening ports and talk to each other by message.
//!
//! This is Netty's boss/worker model with Twisted's reactor on each thread.
//! The thread that makes the group is the *boss*: its reactor
//! ([`ReactorGroup::boss`]) accepts connections and hands each to a worker
//! ([`Placement`]), never reading a byte of them, and it starts and stops
//! the workers. Each worker is a [`Reactor`] of its own, with its own
//! factories (built on its thread by the `make_factory` given to
//! [`listen_tcp`](ReactorGroup::listen_tcp)), protocols and transports,
//! none of them `Send`: a connection lives on one worker all its life, and
//! every callback for it runs there, in order, without locks.
//!
//! Between threads go closures ([`WorkerHandle::call_from_thread`],
//! [`ReactorGroup::broadcast`]) and typed messages: an [`Inbox`] on the
//! receiving thread, and the `Send` [`InboxSender`]s that reach it.
//!
//! # Examples
//!
//! An echo server on two workers, and a client connection placed on one of
//! them:
//!
//! ```
//! use std::io::{Read, Write};
//! use std::net::TcpStream;
//! use twill::group::ReactorGroup;
//! use twill::{Bytes, Protocol, Transport};
//!
//! struct Echo(Option<Transport>);
//!
//! impl Protocol for Echo {
//!     fn connection_made(&mut self, transport: &Transport) {
//!         self.0 = Some(transport.clone());
//!     }
//!     fn data_received(&mut self, data: Bytes) {
//!         self.0.as_ref().unwrap().write(data);
//!     }
//! }
//!
//! let group = ReactorGroup::new(2)?;
//! // One factory per worker, each built on its worker's thread.
//! let port = group.listen_tcp("127.0.0.1:0", || |_peer| Echo(None))?;
//! let addr = port.host();
//! let stopper = group.handle();
//! let client = std::thread::spawn(move || -> std::io::Result<Vec<u8>> {
//!     let mut stream = TcpStream::connect(addr)?;
//!     stream.write_all(b"ping")?;
//!     let mut echoed = [0; 4];
//!     stream.read_exact(&mut echoed)?;
//!     stopper.stop();
//!     Ok(echoed.to_vec())
//! });
//! group.run()?;
//! assert_eq!(client.join().unwrap()?, b"ping");
//! # Ok::<(), std::io::Error>(())
//! ```

mod handle;
mod inbox;
mod listen;
mod placement;
mod worker;

use std::cell::{Cell, RefCell};
use std::fmt;
use std::io;
use std::net::ToSocketAddrs;
use std::panic::AssertUnwindSafe;
use std::rc::Rc;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use polling::Poller;

use crate::net::{DynFactory, ToHostPort, UnixAddress};
use crate::protocol::{ClientFactory, Factory};
use crate::reactor::{
    Phase, Reactor, ReactorStopped, Source, SystemEvent, TriggerId, DEFAULT_SHUTDOWN_TIMEOUT,
};

pub use handle::GroupHandle;
pub use inbox::{Inbox, InboxSender, SendError};
pub use listen::GroupPort;
pub use placement::{Placement, UnknownPlacement, MAX_HANDOFFS_WAITING};
pub use worker::{worker_index, WorkerHandle};

use placement::Cursor;
use worker::{Finished, WorkerThread};

/// How long past its own shutdown timeout the group waits for a worker's
/// thread to end before it gives up on it.
const STOP_GRACE: Duration = Duration::from_secs(1);

/// N worker reactors on N threads, started and stopped together, sharing
/// listening ports: see the [module](self) documentation.
///
/// The group belongs to the thread that made it (the boss); its
/// [`handle`](Self::handle) is `Send`. [`run`](Self::run) runs the boss's
/// reactor on this thread until the group stops: on [`stop`](Self::stop),
/// SIGINT or SIGTERM, or when a worker stops or dies.
///
/// Stopping is graceful and group-wide: the boss's
/// [`Phase::Before`] shutdown triggers run while every connection on every
/// worker is still open; then the boss stops listening and every worker
/// stops as [`Reactor::run`] describes (its own triggers, then its
/// connections closed after their writes); once all of them have ended,
/// the boss's [`Phase::During`] and [`Phase::After`] triggers run and
/// `run` returns.
///
/// # Examples
///
/// ```
/// use twill::group::ReactorGroup;
///
/// let group = ReactorGroup::new(4)?;
/// assert_eq!(group.len(), 4);
/// group.broadcast(|| log::info!("worker {:?} is up", twill::group::worker_index()))?;
/// group.boss().call_later(std::time::Duration::from_millis(10), twill::stop);
/// group.run()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct ReactorGroup {
    boss: Reactor,
    handle: GroupHandle,
    threads: RefCell<Vec<WorkerThread>>,
    finished: mpsc::Receiver<Finished>,
    shutdown_timeout: Cell<Duration>,
    ran: Cell<bool>,
}

impl ReactorGroup {
    /// A group of `workers` worker reactors, each on a thread of its own
    /// (named `twill-worker-I`), waiting for [`run`](Self::run); the
    /// calling thread's new reactor is the boss.
    ///
    /// # Errors
    ///
    /// `workers` is 0 (`InvalidInput`), or a thread or a poller could not
    /// be created.
    pub fn new(workers: usize) -> io::Result<ReactorGroup> {
        if workers == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a reactor group needs at least one worker",
            ));
        }
        let boss = Reactor::new()?;
        let (finished_tx, finished) = mpsc::channel();
        let mut threads = Vec::with_capacity(workers);
        for index in 0..workers {
            let boss_handle = boss.handle();
            let finished_tx = finished_tx.clone();
            let thread = WorkerThread::spawn(index, move |finished: Finished| {
                let failure = finished.failure.clone();
                let _ = boss_handle.call_from_thread(move || worker_ended(index, failure));
                let _ = finished_tx.send(finished);
            })?;
            threads.push(thread);
        }
        let handle = GroupHandle {
            boss: boss.handle(),
            workers: threads.iter().map(|t| t.handle.clone()).collect(),
            cursor: Arc::new(Cursor::default()),
        };
        let stopper = Rc::new(StopWorkers(handle.workers.clone()));
        boss.core().sources.borrow_mut().insert(stopper);
        Ok(ReactorGroup {
            boss,
            handle,
            threads: RefCell::new(threads),
            finished,
            shutdown_timeout: Cell::new(DEFAULT_SHUTDOWN_TIMEOUT),
            ran: Cell::new(false),
        })
    }

    /// A group with a worker per core the system lets this process use
    /// ([`std::thread::available_parallelism`]; 1 when it cannot tell).
    ///
    /// # Errors
    ///
    /// As [`new`](Self::new).
    pub fn per_core() -> io::Result<ReactorGroup> {
        ReactorGroup::new(std::thread::available_parallelism().map_or(1, usize::from))
    }

    /// The number of workers.
    pub fn len(&self) -> usize {
        self.handle.len()
    }

    /// Always `false`: a group has at least one worker.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Worker `index`'s handle.
    ///
    /// # Panics
    ///
    /// `index` is not below [`len`](Self::len).
    pub fn worker(&self, index: usize) -> WorkerHandle {
        self.handle.worker(index)
    }

    /// Every worker's handle, in order.
    pub fn workers(&self) -> &[WorkerHandle] {
        &self.handle.workers
    }

    /// The boss: this thread's reactor, which accepts for the group's
    /// ports and runs the group-wide triggers. Timers and inboxes made on
    /// it run on this thread. Its shutdown timeout is the group's
    /// ([`set_shutdown_timeout`](Self::set_shutdown_timeout)), set as the
    /// group runs.
    pub fn boss(&self) -> &Reactor {
        &self.boss
    }

    /// A `Send + Sync + Clone` handle to the group, for other threads and
    /// for the workers themselves.
    pub fn handle(&self) -> GroupHandle {
        self.handle.clone()
    }

    /// Listens on `addr` for the whole group, with
    /// [`Placement::LeastConnections`]: see
    /// [`listen_tcp_with`](Self::listen_tcp_with).
    ///
    /// # Errors
    ///
    /// The address could not be resolved or bound.
    pub fn listen_tcp<F: Factory>(
        &self,
        addr: impl ToSocketAddrs,
        make_factory: impl Fn() -> F + Send + Sync + 'static,
    ) -> io::Result<GroupPort> {
        self.listen_tcp_with(addr, Placement::default(), make_factory)
    }

    /// Listens for TCP connections on `addr` for the whole group, and
    /// serves each on one worker, placed as `placement` says. Each worker
    /// serves the port with a factory of its own, which `make_factory`
    /// builds on the worker's thread (as the worker starts running, or at
    /// once if it runs); its `start_factory` runs there, and its
    /// `stop_factory` when the port stops listening or the group stops.
    ///
    /// With a boss placement, the socket is this thread's (the boss's),
    /// and a worker behind with the connections handed to it
    /// ([`MAX_HANDOFFS_WAITING`]) gets no more until it catches up. With
    /// [`Placement::ReusePort`], every worker listens on a socket of its
    /// own, all bound here so that an error shows at once.
    ///
    /// # Errors
    ///
    /// The address could not be resolved or bound; `Unsupported` for
    /// `ReusePort` where the platform lacks it.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::cell::Cell;
    /// use std::rc::Rc;
    /// use twill::group::{Placement, ReactorGroup};
    /// use twill::{Bytes, Factory, Protocol};
    ///
    /// struct Discard;
    /// impl Protocol for Discard {
    ///     fn data_received(&mut self, _: Bytes) {}
    /// }
    ///
    /// // Per-worker state is plain Rc/Cell: the factory never leaves its thread.
    /// struct Counting(Rc<Cell<u64>>);
    /// impl Factory for Counting {
    ///     type Protocol = Discard;
    ///     fn build_protocol(&mut self, _peer: twill::Address) -> Option<Discard> {
    ///         self.0.set(self.0.get() + 1);
    ///         Some(Discard)
    ///     }
    /// }
    ///
    /// let group = ReactorGroup::new(2)?;
    /// let port = group.listen_tcp_with("127.0.0.1:0", Placement::RoundRobin, || {
    ///     Counting(Rc::new(Cell::new(0)))
    /// })?;
    /// assert!(port.is_listening());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn listen_tcp_with<F: Factory>(
        &self,
        addr: impl ToSocketAddrs,
        placement: Placement,
        make_factory: impl Fn() -> F + Send + Sync + 'static,
    ) -> io::Result<GroupPort> {
        listen::listen_tcp(
            &self.boss,
            &self.handle.workers,
            &self.handle.cursor,
            addr,
            placement,
            make_factory_box(make_factory),
        )
    }

    /// Listens on a Unix domain socket for the whole group, as
    /// [`Reactor::listen_unix`] does (the socket file made with `mode`,
    /// locked while the port listens, removed when it stops), the boss
    /// handing each connection to a worker as `placement` says, each
    /// worker serving with a factory `make_factory` builds on its thread.
    ///
    /// # Errors
    ///
    /// As `Reactor::listen_unix`; `Unsupported` for
    /// [`Placement::ReusePort`], which Unix sockets do not have.
    ///
    /// # Examples
    ///
    /// ```
    /// use twill::group::{Placement, ReactorGroup};
    /// use twill::net::DEFAULT_UNIX_MODE;
    /// # use twill::{Bytes, Protocol};
    /// # struct Discard;
    /// # impl Protocol for Discard { fn data_received(&mut self, _: Bytes) {} }
    ///
    /// let dir = std::env::temp_dir().join(format!("twill-group-doc-{}", std::process::id()));
    /// std::fs::create_dir_all(&dir)?;
    /// let path = dir.join("discard.sock");
    /// let group = ReactorGroup::new(2)?;
    /// let port = group.listen_unix(&path, DEFAULT_UNIX_MODE, Placement::RoundRobin, || {
    ///     |_peer| Discard
    /// })?;
    /// assert!(path.exists());
    /// port.stop_listening();
    /// assert!(!path.exists());
    /// # std::fs::remove_dir(&dir)?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn listen_unix<F: Factory>(
        &self,
        address: impl Into<UnixAddress>,
        mode: u32,
        placement: Placement,
        make_factory: impl Fn() -> F + Send + Sync + 'static,
    ) -> io::Result<GroupPort> {
        listen::listen_unix(
            &self.boss,
            &self.handle.workers,
            &self.handle.cursor,
            address.into(),
            mode,
            placement,
            make_factory_box(make_factory),
        )
    }

    /// Connects to `addr` from the worker with the fewest connections:
    /// see [`GroupHandle::connect_tcp`].
    ///
    /// # Errors
    ///
    /// As `GroupHandle::connect_tcp`.
    pub fn connect_tcp<F: ClientFactory>(
        &self,
        addr: impl ToHostPort,
        make_factory: impl FnOnce() -> F + Send + 'static,
    ) -> io::Result<WorkerHandle> {
        self.handle.connect_tcp(addr, make_factory)
    }

    /// Runs `f` once on every worker's thread: see
    /// [`GroupHandle::broadcast`].
    ///
    /// # Errors
    ///
    /// As `GroupHandle::broadcast`.
    pub fn broadcast(&self, f: impl Fn() + Send + Sync + 'static) -> Result<(), ReactorStopped> {
        self.handle.broadcast(f)
    }

    /// Runs the group: starts every worker's reactor, then runs the boss's
    /// on this thread until the group has stopped (see the type's
    /// documentation). A group runs once.
    ///
    /// # Errors
    ///
    /// The group ran before; the boss's poller failed; or a worker ended
    /// on its own, by a panic that escaped its reactor or a failure of its
    /// poller (the message names the worker and the cause), or did not end
    /// in time. The group still stopped every other worker first.
    pub fn run(&self) -> io::Result<()> {
        if self.ran.replace(true) {
            return Err(io::Error::other(
                "a reactor group runs only once; create a new one to run again",
            ));
        }
        let timeout = self.shutdown_timeout.get();
        self.boss.set_shutdown_timeout(timeout + STOP_GRACE);
        let mut threads = self.threads.borrow_mut();
        for thread in threads.iter_mut() {
            // The boss's graceful stop waits for each running worker as it
            // would for a connection.
            self.boss.core().connection_opened();
            thread.start(timeout);
        }
        // Whatever ends the boss (a panic too), no worker outlives the run.
        let ran = std::panic::catch_unwind(AssertUnwindSafe(|| self.boss.run()));
        // After a graceful stop the boss has waited for the workers
        // already; otherwise they have only begun to stop.
        let wait = match &ran {
            Ok(Ok(())) => STOP_GRACE,
            _ => timeout + STOP_GRACE,
        };
        let failures = self.end_workers(&mut threads, wait);
        match ran {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(Err(err)) => Err(err),
            Ok(Ok(())) if failures.is_empty() => Ok(()),
            Ok(Ok(())) => Err(io::Error::other(failures.join("; "))),
        }
    }

    /// Stops every worker and waits up to `wait` for their threads to end
    /// (a worker that never ran ends at once); says what went wrong with
    /// each that failed or did not end, whose thread is left behind.
    fn end_workers(&self, threads: &mut [WorkerThread], wait: Duration) -> Vec<String> {
        for thread in threads.iter_mut() {
            thread.handle.reactor().stop();
            thread.abandon();
        }
        let mut failures = Vec::new();
        let deadline = Instant::now() + wait;
        while threads.iter().any(|t| t.join.is_some()) {
            let wait = deadline.saturating_duration_since(Instant::now());
            let Ok(finished) = self.finished.recv_timeout(wait) else {
                break;
            };
            let thread = &mut threads[finished.index];
            if let Some(join) = thread.join.take() {
                let _ = join.join();
            }
            if let Some(failure) = finished.failure {
                failures.push(format!("worker {}: {failure}", finished.index));
            }
        }
        for thread in threads.iter_mut() {
            if thread.join.take().is_some() {
                log::error!(
                    "worker {} did not stop in time; leaving its thread behind",
                    thread.handle.index()
                );
                failures.push(format!("worker {}: did not stop", thread.handle.index()));
            }
        }
        failures
    }

    /// Stops the group gracefully (see the type's documentation), from the
    /// boss's thread; [`GroupHandle::stop`] does from any thread.
    pub fn stop(&self) {
        self.boss.stop();
    }

    /// Runs `f` at `phase` of `event` for the whole group, on the boss's
    /// thread: e.g. `(Phase::Before, SystemEvent::Shutdown)` runs while
    /// every worker's connections are still open, `(Phase::After,
    /// SystemEvent::Shutdown)` once every worker has stopped. A worker's
    /// own triggers are its reactor's: add them there (from
    /// [`broadcast`](Self::broadcast), say, with
    /// [`twill::reactor`](crate::reactor())).
    ///
    /// [`SystemEvent::Startup`] triggers run as the boss starts; the
    /// workers start at the same moment on their own threads, so a worker
    /// may not have made its factories yet.
    pub fn add_system_event_trigger(
        &self,
        phase: Phase,
        event: SystemEvent,
        f: impl FnOnce() + 'static,
    ) -> TriggerId {
        self.boss.add_system_event_trigger(phase, event, f)
    }

    /// Removes a trigger that has not run. Returns whether it was there.
    pub fn remove_system_event_trigger(&self, id: TriggerId) -> bool {
        self.boss.remove_system_event_trigger(id)
    }

    /// How long a graceful stop lets each worker's connections close
    /// before aborting them (10 s by default). Set it before
    /// [`run`](Self::run).
    pub fn set_shutdown_timeout(&self, timeout: Duration) {
        self.shutdown_timeout.set(timeout);
    }
}

impl Drop for ReactorGroup {
    fn drop(&mut self) {
        // Workers that never ran end at once; any still running (run
        // unwound before it could stop them) get the shutdown timeout.
        let wait = self.shutdown_timeout.get() + STOP_GRACE;
        let mut threads = std::mem::take(self.threads.get_mut());
        for failure in self.end_workers(&mut threads, wait) {
            log::error!("{failure}");
        }
    }
}

impl fmt::Debug for ReactorGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReactorGroup")
            .field("workers", &self.handle.workers)
            .finish()
    }
}

/// `make_factory` behind a trait object, for every worker to call.
fn make_factory_box<F: Factory>(
    make_factory: impl Fn() -> F + Send + Sync + 'static,
) -> listen::MakeFactory {
    Arc::new(move || Box::new(make_factory()) as Box<dyn DynFactory>)
}

/// On the boss: a worker's thread ended. Before the group stops, that
/// stops it.
fn worker_ended(index: usize, failure: Option<String>) {
    let boss = crate::reactor();
    boss.core().connection_closed();
    match failure {
        Some(failure) => log::error!("worker {index} died: {failure}; stopping the group"),
        None if boss.is_running() => log::info!("worker {index} stopped; stopping the group"),
        None => return,
    }
    boss.stop();
}

/// In the boss's table of sources: a graceful stop of the boss stops every
/// worker, after the boss's own `Before` triggers.
struct StopWorkers(Arc<[WorkerHandle]>);

impl Source for StopWorkers {
    fn ready(self: Rc<Self>, _readable: bool, _writable: bool) {}

    fn shut_down(&self) {
        for worker in self.0.iter() {
            worker.reactor().stop();
        }
    }

    fn discard(&self, _poller: &Poller) {}
}
