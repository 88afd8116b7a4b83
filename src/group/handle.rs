//! [`GroupHandle`]: a reactor group from any thread.

use std::fmt;
use std::io;
use std::sync::Arc;

use super::placement::{Cursor, Placement};
use super::worker::WorkerHandle;
use crate::net::ToHostPort;
use crate::protocol::ClientFactory;
use crate::reactor::{ReactorHandle, ReactorStopped};

#[cfg(doc)]
use super::{worker_index, ReactorGroup};

/// A `Send + Sync + Clone` handle to a [`ReactorGroup`], from
/// [`ReactorGroup::handle`]: reaches every worker from any thread, a
/// worker's included.
#[derive(Clone)]
pub struct GroupHandle {
    pub(super) boss: ReactorHandle,
    pub(super) workers: Arc<[WorkerHandle]>,
    pub(super) cursor: Arc<Cursor>,
}

impl GroupHandle {
    /// The number of workers.
    pub fn len(&self) -> usize {
        self.workers.len()
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
        self.workers[index].clone()
    }

    /// Runs `f` once on every worker's thread (each at the start of its
    /// next turn; in no particular order between workers). On a worker,
    /// [`twill::reactor`](crate::reactor()) is that worker's reactor and
    /// [`worker_index`] its index.
    ///
    /// # Errors
    ///
    /// [`ReactorStopped`] if a worker has stopped; the others still run
    /// `f`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// use std::sync::Arc;
    /// use twill::group::ReactorGroup;
    ///
    /// let group = ReactorGroup::new(3)?;
    /// let ran = Arc::new(AtomicUsize::new(0));
    /// let (counter, stopper) = (ran.clone(), group.handle());
    /// group.broadcast(move || {
    ///     if counter.fetch_add(1, Ordering::SeqCst) == 2 {
    ///         stopper.stop();
    ///     }
    /// })?;
    /// group.run()?;
    /// assert_eq!(ran.load(Ordering::SeqCst), 3);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn broadcast(&self, f: impl Fn() + Send + Sync + 'static) -> Result<(), ReactorStopped> {
        let f = Arc::new(f);
        let mut result = Ok(());
        for worker in self.workers.iter() {
            let f = f.clone();
            if let Err(stopped) = worker.call_from_thread(move || f()) {
                result = Err(stopped);
            }
        }
        result
    }

    /// Connects to `addr` from the worker with the fewest connections (ties
    /// in turn), as [`WorkerHandle::connect_tcp`] does, and returns that
    /// worker.
    ///
    /// # Errors
    ///
    /// `addr` is not a host and port, or the workers have stopped.
    pub fn connect_tcp<F: ClientFactory>(
        &self,
        addr: impl ToHostPort,
        make_factory: impl FnOnce() -> F + Send + 'static,
    ) -> io::Result<WorkerHandle> {
        let index = self
            .cursor
            .choose(&self.workers, Placement::LeastConnections, |_| true)
            .ok_or_else(|| io::Error::new(io::ErrorKind::WouldBlock, "every worker is busy"))?;
        let worker = self.worker(index);
        worker.connect_tcp(addr, make_factory)?;
        Ok(worker)
    }

    /// Stops the group gracefully, from any thread.
    pub fn stop(&self) {
        self.boss.stop();
    }
}

impl fmt::Debug for GroupHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GroupHandle")
            .field("workers", &self.workers)
            .finish()
    }
}
