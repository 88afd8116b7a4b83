//! Reaching the reactor from other threads: [`ReactorHandle`].

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use polling::Poller;

type RemoteCall = Box<dyn FnOnce() + Send>;

/// The part of the reactor other threads may touch.
pub(crate) struct Remote {
    poller: Arc<Poller>,
    /// `None` once the reactor has stopped: later calls are refused.
    calls: Mutex<Option<Vec<RemoteCall>>>,
    stop: AtomicBool,
}

impl Remote {
    pub(crate) fn new(poller: Arc<Poller>) -> Remote {
        Remote {
            poller,
            calls: Mutex::new(Some(Vec::new())),
            stop: AtomicBool::new(false),
        }
    }

    pub(crate) fn request_stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.poller.notify();
    }

    pub(crate) fn stop_requested(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Runs the calls queued so far, in the order they were queued; calls
    /// queued meanwhile wait for the next turn.
    pub(crate) fn run_calls(&self) {
        let calls = {
            let mut queue = self.calls.lock().unwrap_or_else(PoisonError::into_inner);
            match queue.as_mut() {
                Some(queue) if !queue.is_empty() => std::mem::take(queue),
                _ => return,
            }
        };
        for call in calls {
            if let Err(panic) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(call)) {
                log::error!(
                    "panic in a call from another thread: {}",
                    crate::panic_message(&*panic)
                );
            }
        }
    }

    /// The reactor has stopped: refuse further calls, and say how many
    /// queued ones will never run.
    pub(crate) fn close(&self) {
        let left = self
            .calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(left) = left.filter(|left| !left.is_empty()) {
            log::warn!(
                "{} call(s) from other threads arrived as the reactor stopped and were not run",
                left.len()
            );
        }
    }
}

/// The error of [`ReactorHandle::call_from_thread`] once the reactor has
/// stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReactorStopped;

impl fmt::Display for ReactorStopped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the reactor has stopped")
    }
}

impl std::error::Error for ReactorStopped {}

/// A handle to a reactor that can be sent to and used from any thread,
/// from [`Reactor::handle`](super::Reactor::handle).
///
/// # Examples
///
/// ```
/// use twill::Reactor;
///
/// let reactor = Reactor::new()?;
/// let handle = reactor.handle();
/// let worker = std::thread::spawn(move || {
///     let answer = 6 * 7; // blocking work here
///     handle
///         .call_from_thread(move || {
///             assert_eq!(answer, 42);
///             twill::stop();
///         })
///         .unwrap();
/// });
/// reactor.run()?;
/// worker.join().unwrap();
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone)]
pub struct ReactorHandle {
    remote: Arc<Remote>,
}

impl ReactorHandle {
    pub(crate) fn new(remote: Arc<Remote>) -> ReactorHandle {
        ReactorHandle { remote }
    }

    /// Runs `f` on the reactor thread, at the start of its next turn; calls
    /// run in the order they were made. The only way for another thread to
    /// touch protocols and transports.
    ///
    /// # Errors
    ///
    /// [`ReactorStopped`] if the reactor has stopped; `f` is dropped.
    pub fn call_from_thread(
        &self,
        f: impl FnOnce() + Send + 'static,
    ) -> Result<(), ReactorStopped> {
        {
            let mut queue = self
                .remote
                .calls
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            queue.as_mut().ok_or(ReactorStopped)?.push(Box::new(f));
        }
        let _ = self.remote.poller.notify();
        Ok(())
    }

    /// Stops the reactor gracefully, as [`Reactor::stop`](super::Reactor::stop).
    pub fn stop(&self) {
        self.remote.request_stop();
    }
}

impl fmt::Debug for ReactorHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReactorHandle")
            .field("stop_requested", &self.remote.stop_requested())
            .finish()
    }
}
