//! A group's worker: a reactor on a thread of its own, and the `Send`
//! handle ([`WorkerHandle`]) the rest of the group reaches it through.

use std::cell::Cell;
use std::fmt;
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::net::{HostPort, ToHostPort};
use crate::protocol::ClientFactory;
use crate::reactor::{Reactor, ReactorHandle, ReactorStopped};

thread_local! {
    static WORKER_INDEX: Cell<Option<usize>> = const { Cell::new(None) };
}

/// The index of the group worker this thread is (`0..group.len()`), or
/// `None` on a thread that is not a worker (the boss's included).
///
/// # Examples
///
/// ```
/// use twill::group::{worker_index, ReactorGroup};
///
/// let group = ReactorGroup::new(2)?;
/// assert_eq!(worker_index(), None);
/// group.worker(1).call_from_thread(|| {
///     assert_eq!(worker_index(), Some(1));
///     twill::stop(); // this worker stops, and the group with it
/// })?;
/// group.run()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn worker_index() -> Option<usize> {
    WORKER_INDEX.with(Cell::get)
}

/// A `Send + Sync + Clone` handle to one worker of a
/// [`ReactorGroup`](super::ReactorGroup), from
/// [`ReactorGroup::worker`](super::ReactorGroup::worker): runs code on the
/// worker's thread, opens client connections there, and tells how loaded
/// it is.
///
/// # Examples
///
/// ```
/// use std::sync::mpsc;
/// use twill::group::ReactorGroup;
///
/// let group = ReactorGroup::new(2)?;
/// let (tx, rx) = mpsc::channel();
/// let worker = group.worker(0);
/// worker.call_from_thread(move || {
///     tx.send(std::thread::current().name().map(str::to_owned)).unwrap();
///     twill::stop();
/// })?;
/// group.run()?;
/// assert_eq!(rx.recv()?.as_deref(), Some("twill-worker-0"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct WorkerHandle {
    index: usize,
    reactor: ReactorHandle,
    connections: Arc<AtomicUsize>,
    handoffs: Arc<AtomicUsize>,
}

impl WorkerHandle {
    /// This worker's index in its group.
    pub fn index(&self) -> usize {
        self.index
    }

    /// Runs `f` on the worker's thread, at the start of its next turn
    /// (before the group runs: once it does), as
    /// [`ReactorHandle::call_from_thread`] does. There `f` reaches the
    /// worker's reactor with [`twill::reactor`](crate::reactor()).
    ///
    /// # Errors
    ///
    /// [`ReactorStopped`] once the worker has stopped; `f` is dropped.
    pub fn call_from_thread(
        &self,
        f: impl FnOnce() + Send + 'static,
    ) -> Result<(), ReactorStopped> {
        self.reactor.call_from_thread(f)
    }

    /// Connects to `addr` from this worker, as
    /// [`Reactor::connect_tcp`] does, with a factory `make_factory` builds
    /// on the worker's thread; the connection's protocol runs there.
    ///
    /// A worker that stops before it gets to the call drops it: the
    /// factory is never made, and the attempt is logged as not started.
    ///
    /// # Errors
    ///
    /// `addr` is not a host and port (it is checked at once), or the
    /// worker has stopped. A failure to connect goes to the factory's
    /// `client_connection_failed`, on the worker.
    pub fn connect_tcp<F: ClientFactory>(
        &self,
        addr: impl ToHostPort,
        make_factory: impl FnOnce() -> F + Send + 'static,
    ) -> io::Result<()> {
        let mut attempt = PendingConnect {
            dest: Some(addr.to_host_port()?),
            worker: self.index,
            _ticket: self.hand_off(),
        };
        let sent = self.reactor.call_from_thread(move || {
            let Some(dest) = attempt.dest.take() else {
                return;
            };
            if let Err(err) = crate::reactor().connect_tcp(dest, make_factory()) {
                log::error!("could not connect: {err}");
            }
        });
        sent.map_err(|stopped| io::Error::new(io::ErrorKind::NotConnected, stopped))
    }

    /// The worker's open connections, and those handed to it that it has
    /// not yet taken: what [`Placement::LeastConnections`](super::Placement)
    /// compares. A snapshot; it changes as connections come and go.
    pub fn load(&self) -> usize {
        self.connections.load(Ordering::Relaxed) + self.handoffs_waiting()
    }

    /// Connections handed to this worker that it has not yet taken.
    pub(crate) fn handoffs_waiting(&self) -> usize {
        self.handoffs.load(Ordering::Relaxed)
    }

    /// Counts one more connection on its way to this worker; the worker
    /// counts it off with the returned guard when it takes it.
    pub(crate) fn hand_off(&self) -> HandoffTicket {
        self.handoffs.fetch_add(1, Ordering::Relaxed);
        HandoffTicket(self.handoffs.clone())
    }

    pub(crate) fn reactor(&self) -> &ReactorHandle {
        &self.reactor
    }
}

impl fmt::Debug for WorkerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkerHandle")
            .field("index", &self.index)
            .field("load", &self.load())
            .finish()
    }
}

/// One connection on its way to a worker: counted until dropped, on the
/// worker as it takes the connection or wherever the handoff fails.
pub(crate) struct HandoffTicket(Arc<AtomicUsize>);

impl Drop for HandoffTicket {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A connection a worker is asked to open, counted in its load until the
/// worker gets to it; dropped unopened (the worker stopped first), it says
/// so.
struct PendingConnect {
    dest: Option<HostPort>,
    worker: usize,
    _ticket: HandoffTicket,
}

impl Drop for PendingConnect {
    fn drop(&mut self) {
        if let Some(dest) = &self.dest {
            log::warn!(
                "the connection to {dest} was not started: worker {} stopped first",
                self.worker
            );
        }
    }
}

/// How a worker's thread ended.
pub(crate) struct Finished {
    pub(crate) index: usize,
    /// `None` when its reactor stopped as asked; else what went wrong.
    pub(crate) failure: Option<String>,
}

/// The group's side of a worker thread.
pub(crate) struct WorkerThread {
    pub(crate) handle: WorkerHandle,
    /// Dropping it (unsent) ends a worker that never ran.
    start: Option<mpsc::Sender<Duration>>,
    pub(crate) join: Option<JoinHandle<()>>,
}

impl WorkerThread {
    /// Starts worker `index`'s thread and its reactor, which waits for
    /// [`start`](Self::start) to run. When the thread ends, for whatever
    /// reason, `on_finish` is told, on that thread.
    pub(crate) fn spawn(
        index: usize,
        on_finish: impl FnOnce(Finished) + Send + 'static,
    ) -> io::Result<WorkerThread> {
        let (ready_tx, ready_rx) = mpsc::channel();
        let (start_tx, start_rx) = mpsc::channel::<Duration>();
        let join = std::thread::Builder::new()
            .name(format!("twill-worker-{index}"))
            .spawn(move || {
                let mut report = FinishReport {
                    on_finish: Some(Box::new(on_finish)),
                    finished: Finished {
                        index,
                        failure: Some("its thread panicked".to_owned()),
                    },
                };
                WORKER_INDEX.with(|w| w.set(Some(index)));
                let reactor = match Reactor::new() {
                    Ok(reactor) => reactor,
                    Err(err) => {
                        let _ = ready_tx.send(Err(err));
                        report.finished.failure = None;
                        return;
                    }
                };
                let _ = ready_tx.send(Ok((reactor.handle(), reactor.shared_connections())));
                let Ok(shutdown_timeout) = start_rx.recv() else {
                    // The group was dropped without running.
                    report.finished.failure = None;
                    return;
                };
                reactor.set_shutdown_timeout(shutdown_timeout);
                let ran = catch_unwind(AssertUnwindSafe(|| reactor.run_watching_signals(false)));
                report.finished.failure = match ran {
                    Ok(Ok(())) => None,
                    Ok(Err(err)) => Some(format!("its reactor failed: {err}")),
                    Err(panic) => Some(format!(
                        "a panic escaped its reactor: {}",
                        crate::panic_message(&*panic)
                    )),
                };
                // Its connections and futures go before the group hears.
                drop(reactor);
            })?;
        let (reactor, connections) = ready_rx
            .recv()
            .map_err(|_| io::Error::other("a worker thread ended as it started"))??;
        Ok(WorkerThread {
            handle: WorkerHandle {
                index,
                reactor,
                connections,
                handoffs: Arc::new(AtomicUsize::new(0)),
            },
            start: Some(start_tx),
            join: Some(join),
        })
    }

    /// Lets the worker's reactor run.
    pub(crate) fn start(&mut self, shutdown_timeout: Duration) {
        if let Some(start) = self.start.take() {
            let _ = start.send(shutdown_timeout);
        }
    }

    /// Ends a worker that never ran.
    pub(crate) fn abandon(&mut self) {
        self.start = None;
    }
}

/// Tells the group how the worker's thread ended, even when it unwinds.
struct FinishReport {
    on_finish: Option<Box<dyn FnOnce(Finished) + Send>>,
    finished: Finished,
}

impl Drop for FinishReport {
    fn drop(&mut self) {
        if let Some(on_finish) = self.on_finish.take() {
            let finished = Finished {
                index: self.finished.index,
                failure: self.finished.failure.take(),
            };
            on_finish(finished);
        }
    }
}
