//! The futures of one thread: an `async-executor` [`LocalExecutor`] per
//! thread, which the reactor ticks once per turn, and the futures that
//! [`Deferred::from_future`](crate::defer::Deferred::from_future) drives.
//!
//! Neither the reactor nor the Deferreds own this: `defer/` spawns here
//! without knowing about sockets, and the reactor only ticks it (through a
//! [`Ticker`]) and clears it when it is dropped ([`reset`]), which drops
//! every future still pending on the thread.
//!
//! Waking across threads: the reactor keeps the executor's `run` future
//! pending with a waker of its own. The executor wakes that waker when a
//! task is scheduled, from any thread; on the reactor's thread the waker
//! only raises a flag that the loop looks at, from another thread it also
//! wakes the poller.

use std::any::Any;
use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Wake, Waker};
use std::thread::ThreadId;

use async_executor::{LocalExecutor, Task};

thread_local! {
    /// How many leases (reactors) this thread has: the last one to go
    /// resets the thread's futures.
    static LEASES: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    static EXECUTOR: RefCell<Rc<LocalExecutor<'static>>> = RefCell::new(Rc::new(LocalExecutor::new()));
    static KEPT: RefCell<Kept> = RefCell::new(Kept::default());
}

/// Futures kept alive until they finish or the thread's futures are reset:
/// a slab of `Rc`s.
#[derive(Default)]
struct Kept {
    slots: Vec<Option<Rc<dyn Any>>>,
    free: Vec<usize>,
}

/// Spawns `future` on this thread's executor.
pub(crate) fn spawn<F>(future: F) -> Task<F::Output>
where
    F: Future + 'static,
    F::Output: 'static,
{
    let executor = EXECUTOR.with(|executor| executor.borrow().clone());
    executor.spawn(future)
}

/// Keeps `pending` alive until [`release`] or [`reset`]; returns its key.
pub(crate) fn keep(pending: Rc<dyn Any>) -> usize {
    KEPT.with(|kept| {
        let mut kept = kept.borrow_mut();
        match kept.free.pop() {
            Some(key) => {
                kept.slots[key] = Some(pending);
                key
            }
            None => {
                kept.slots.push(Some(pending));
                kept.slots.len() - 1
            }
        }
    })
}

/// Lets go of what [`keep`] kept under `key`.
pub(crate) fn release(key: usize) {
    let released = KEPT.with(|kept| {
        let mut kept = kept.borrow_mut();
        let released = kept.slots.get_mut(key).and_then(Option::take);
        if released.is_some() {
            kept.free.push(key);
        }
        released
    });
    // Dropped here, with nothing borrowed: dropping a future runs its code.
    drop(released);
}

/// Drops every future pending on this thread: the executor's tasks and the
/// driven futures. The thread's last [`Lease`] does, when it is dropped.
fn reset() {
    let old = EXECUTOR.with(|executor| {
        std::mem::replace(&mut *executor.borrow_mut(), Rc::new(LocalExecutor::new()))
    });
    let kept = KEPT.with(|kept| std::mem::take(&mut *kept.borrow_mut()));
    drop(old);
    drop(kept);
}

/// The running reactor's side: runs the thread's executor once per turn,
/// when something was scheduled. Made when a reactor starts running and
/// dropped when it stops, so the executor only wakes a running one.
pub(crate) struct Ticker {
    run: Pin<Box<dyn Future<Output = ()>>>,
    wake: Arc<LoopWake>,
    waker: Waker,
}

struct LoopWake {
    scheduled: AtomicBool,
    owner: ThreadId,
    notify: Box<dyn Fn() + Send + Sync>,
}

impl Wake for LoopWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.scheduled.store(true, Ordering::Release);
        if std::thread::current().id() != self.owner {
            (self.notify)();
        }
    }
}

impl Ticker {
    /// A ticker for this thread's executor; `notify` wakes the loop from
    /// another thread.
    pub(crate) fn new(notify: impl Fn() + Send + Sync + 'static) -> Ticker {
        let executor = EXECUTOR.with(|executor| executor.borrow().clone());
        let wake = Arc::new(LoopWake {
            // Polled once at the start, so the executor knows whom to wake.
            scheduled: AtomicBool::new(true),
            owner: std::thread::current().id(),
            notify: Box::new(notify),
        });
        Ticker {
            run: Box::pin(async move { executor.run(std::future::pending::<()>()).await }),
            waker: Waker::from(wake.clone()),
            wake,
        }
    }

    /// Runs the tasks scheduled since the last turn (at most a couple of
    /// hundred: the executor then yields, and the rest run next turn).
    pub(crate) fn tick(&mut self) {
        if self.wake.scheduled.swap(false, Ordering::Acquire) {
            let mut cx = Context::from_waker(&self.waker);
            let _ = self.run.as_mut().poll(&mut cx);
        }
    }

    /// Whether tasks were scheduled since the last [`tick`](Self::tick).
    pub(crate) fn has_work(&self) -> bool {
        self.wake.scheduled.load(Ordering::Acquire)
    }
}

/// Held by each reactor: when the thread's last one is dropped, so are the
/// futures still pending on the thread.
pub(crate) struct Lease(());

impl Lease {
    pub(crate) fn new() -> Lease {
        LEASES.with(|leases| leases.set(leases.get() + 1));
        Lease(())
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let left = LEASES.with(|leases| {
            leases.set(leases.get() - 1);
            leases.get()
        });
        if left == 0 {
            reset();
        }
    }
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Lease")
    }
}

impl std::fmt::Debug for Ticker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ticker")
            .field("has_work", &self.has_work())
            .finish()
    }
}
