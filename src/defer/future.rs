//! Deferreds and Rust futures: awaiting a Deferred, [`Deferred::from_future`]
//! (Twisted's `ensureDeferred`), [`defer_to_thread`] and [`oneshot`].
//!
//! `from_future` drives its future as Twisted drives a coroutine: it polls
//! it at once, and when a Deferred it awaits fires, it polls it again right
//! there, inside that Deferred's `callback` (the Deferred knows its awaiter
//! is a driver because the driver's waker is the one it was polled with).
//! So a future that awaits only Deferreds needs no executor and no reactor:
//! a unit test with a [`Clock`](crate::task::Clock) runs it. A future that
//! awaits anything else (a thread, an `async-io` timer) hands its waker out;
//! the driver then also gets a task on the thread's executor, which the
//! reactor ticks, and wakes through it.
//!
//! Cancelling the Deferred cancels the Deferreds the future awaits at that
//! moment, innermost first through nested drivers; the future sees their
//! failure at its `.await` and may recover. Only a future that awaits no
//! Deferred is dropped.
//!
//! Ownership: the Deferreds a driver awaits hold it weakly; the thread's
//! executor module keeps every pending driver until it finishes, and drops
//! them all when the reactor is dropped. So a driver that can never finish
//! is freed with the reactor instead of living on in a cycle.

use std::any::Any;
use std::cell::{Cell, OnceCell, RefCell};
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Wake, Waker};

use super::chain::{self, Core, ForwardCancel, Node, Outcome, Resume, Waiter};
use super::{CancelledError, Deferred, Failure, Resolver};
use crate::executor;

/// What a Deferred being polled needs to know about the driver polling it.
trait DriverContext {
    /// The Deferred is awaited now: cancelling the driver cancels it.
    fn note_awaiting(&self, awaited: Weak<dyn Node>);
    /// Whether `waker` is the driver's own (not a combinator's).
    fn owns(&self, waker: &Waker) -> bool;
    /// The driver, to resume when the Deferred has its result.
    fn resume_handle(&self) -> Weak<dyn Resume>;
}

thread_local! {
    /// The driver polling its future right now, if any.
    static CURRENT: RefCell<Option<Rc<dyn DriverContext>>> = const { RefCell::new(None) };
}

/// `Future::poll` for a Deferred: its result if the chain has run to its
/// end, else `None` with the awaiter registered.
pub(crate) fn poll_deferred<T: 'static>(
    core: &Rc<Core<T>>,
    cx: &mut Context<'_>,
) -> Option<Outcome<T>> {
    core.poll_take(|| {
        CURRENT.with(|current| match &*current.borrow() {
            Some(driver) => {
                driver.note_awaiting(Rc::downgrade(core) as Weak<dyn Node>);
                if driver.owns(cx.waker()) {
                    Waiter::Driver(driver.resume_handle())
                } else {
                    Waiter::Waker(cx.waker().clone())
                }
            }
            None => Waiter::Waker(cx.waker().clone()),
        })
    })
}

impl<T: 'static> Deferred<T> {
    /// Drives `future` and fires the Deferred with its output: `Ok` calls
    /// back, `Err` errbacks, a panic errbacks with
    /// [`Panicked`](crate::Panicked). Twisted's `ensureDeferred` /
    /// `Deferred.fromCoroutine`.
    ///
    /// The future is polled at once, so one that completes without waiting
    /// has fired the Deferred when `from_future` returns; given a Deferred,
    /// `from_future` returns that Deferred. When a Deferred the future
    /// awaits fires, the future runs on at once, inside that `callback`,
    /// as a Twisted coroutine does; so with only Deferreds to await it needs
    /// no reactor (a [`Clock`](crate::task::Clock) will do in a test).
    /// Anything else it awaits wakes it through the thread's executor, which
    /// the reactor runs once per turn; so do combinators that poll with
    /// wakers of their own (`FuturesUnordered`, `join_all` over many
    /// futures). A driver resumed by a Deferred resumes the one awaiting it
    /// from inside, as Twisted's coroutines do: nesting `from_future`s
    /// thousands deep takes as much stack.
    ///
    /// Cancelling the Deferred cancels the Deferreds the future awaits at
    /// that moment (and so, through nested `from_future`s, innermost
    /// first); the future sees their failure ([`CancelledError`], or what
    /// their canceller gave) at its `.await`, and may recover from it or
    /// pass it on. Only a future that awaits no Deferred is dropped, the
    /// Deferred then failing with `CancelledError`. A future still pending
    /// when the reactor is dropped is dropped with it.
    ///
    /// # Examples
    ///
    /// Without a reactor, on a hand-driven clock:
    ///
    /// ```
    /// use std::time::Duration;
    /// use twill::{defer::Deferred, task::{defer_later, Clock}};
    ///
    /// let clock = Clock::new();
    /// let later = defer_later(&clock, Duration::from_secs(1), || Ok(20));
    /// let d = Deferred::from_future(async move {
    ///     let a: i32 = later.await?;
    ///     Ok(a + 22)
    /// });
    /// assert!(d.result().is_none());
    /// clock.advance(Duration::from_secs(1));
    /// assert_eq!(d.result().unwrap().unwrap(), 42);
    /// ```
    ///
    /// Cancelling reaches the awaited Deferred, and the future may recover:
    ///
    /// ```
    /// use twill::defer::{CancelledError, Deferred};
    ///
    /// let awaited: Deferred<i32> = Deferred::new();
    /// let d = Deferred::from_future(async move {
    ///     match awaited.await {
    ///         Err(f) if f.check::<CancelledError>() => Ok(-1),
    ///         other => other,
    ///     }
    /// });
    /// d.cancel();
    /// assert_eq!(d.result().unwrap().unwrap(), -1);
    /// ```
    #[track_caller]
    pub fn from_future<F>(future: F) -> Deferred<T>
    where
        F: Future<Output = Result<T, Failure>> + 'static,
    {
        let mut given = Some(future);
        if let Some(deferred) = (&mut given as &mut dyn Any).downcast_mut::<Option<Deferred<T>>>() {
            if let Some(deferred) = deferred.take() {
                return deferred;
            }
        }
        let future = given.take().expect("the future is still there");
        let driver = Rc::new_cyclic(|me: &Weak<Driver<T, F>>| Driver {
            future: RefCell::new(Some(future)),
            resolver: RefCell::new(None),
            early: RefCell::new(None),
            polling: Cell::new(false),
            repoll: Cell::new(false),
            cancel_requested: Cell::new(false),
            awaiting: RefCell::new(Vec::new()),
            own_waker: OnceCell::new(),
            shell: RefCell::new(None),
            kept: Cell::new(None),
            me: me.clone(),
        });
        driver.poll_now();
        // Done at once: no chain was needed to wait for it.
        if let Some(outcome) = driver.early.borrow_mut().take() {
            return Deferred::from_ready(outcome);
        }
        let d = Deferred::new();
        d.core()
            .set_stands_for(Rc::downgrade(&driver) as Weak<dyn ForwardCancel>);
        *driver.resolver.borrow_mut() = Some(d.resolver());
        d
    }
}

/// Drives one future for [`Deferred::from_future`].
struct Driver<T: 'static, F> {
    /// `None` once the future finished or was dropped. Pinned in place: the
    /// driver lives in an `Rc` and the future is never moved out of it, only
    /// dropped where it is (by assigning `None`).
    future: RefCell<Option<F>>,
    /// Taken when the Deferred is fired; there from the first time the
    /// future waits.
    resolver: RefCell<Option<Resolver<T>>>,
    /// The output of a future that finished in its first poll, before there
    /// was a Deferred to fire.
    early: RefCell<Option<Outcome<T>>>,
    polling: Cell<bool>,
    /// Resumed while polling: poll again.
    repoll: Cell<bool>,
    /// Cancelled while polling: cancel when the poll is over.
    cancel_requested: Cell<bool>,
    /// The Deferreds the last poll left pending.
    awaiting: RefCell<Vec<Weak<dyn Node>>>,
    /// The driver's own waker, made when the future first waits (its first
    /// poll uses a no-op waker).
    own_waker: OnceCell<(Arc<DriverWake>, Waker)>,
    /// The executor task that polls the future when a waker other than a
    /// Deferred's wakes it; made the first time one is handed out.
    shell: RefCell<Option<async_executor::Task<()>>>,
    /// The key under which the executor module keeps this driver alive.
    kept: Cell<Option<usize>>,
    me: Weak<Driver<T, F>>,
}

/// The driver's waker: forwards to its executor task, or remembers the
/// wake until there is one.
struct DriverWake {
    woken: AtomicBool,
    shell: Mutex<Option<Waker>>,
}

impl Wake for DriverWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let shell = self
            .shell
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        match shell {
            Some(shell) => shell.wake(),
            None => self.woken.store(true, Ordering::Release),
        }
    }
}

impl<T: 'static, F> Driver<T, F>
where
    F: Future<Output = Result<T, Failure>> + 'static,
{
    fn poll_now(self: &Rc<Self>) {
        if self.polling.get() {
            self.repoll.set(true);
            return;
        }
        loop {
            self.polling.set(true);
            self.repoll.set(false);
            self.awaiting.borrow_mut().clear();
            let polled = match self.own_waker.get() {
                Some((_, waker)) => self.poll_with(waker),
                None => {
                    // The first poll: most futures are done in it, or wait
                    // only on Deferreds, which resume the driver without a
                    // waker. One that waits gets a waker of its own and is
                    // polled again with it, so whatever it waits on keeps
                    // that one.
                    let polled = self.poll_with(Waker::noop());
                    if matches!(polled, Some(Ok(Poll::Pending))) {
                        self.own_waker.get_or_init(|| {
                            let wake = Arc::new(DriverWake {
                                woken: AtomicBool::new(false),
                                shell: Mutex::new(None),
                            });
                            (wake.clone(), Waker::from(wake))
                        });
                        self.repoll.set(true);
                    }
                    polled
                }
            };
            self.polling.set(false);
            let outcome = match polled {
                None => return,
                Some(Ok(Poll::Pending)) => {
                    if self.cancel_requested.take() {
                        return self.clone().forward_cancel();
                    }
                    if self.repoll.get() {
                        continue;
                    }
                    return self.after_pending();
                }
                Some(Ok(Poll::Ready(outcome))) => outcome,
                Some(Err(panic)) => Err(Failure::from_panic_in(
                    "a future given to Deferred::from_future",
                    &*panic,
                )),
            };
            self.drop_future();
            return self.finish(outcome);
        }
    }

    /// Polls the future once with `waker`, as the current driver.
    fn poll_with(self: &Rc<Self>, waker: &Waker) -> Option<std::thread::Result<Poll<Outcome<T>>>> {
        let context: Rc<dyn DriverContext> = self.clone();
        let outer = CURRENT.with(|current| current.borrow_mut().replace(context));
        let polled = {
            let mut slot = self.future.borrow_mut();
            slot.as_mut().map(|future| {
                // SAFETY: the future lives inside this driver's `Rc`
                // allocation and is never moved out of it: it is only ever
                // dropped in place, by assigning `None` to the slot.
                let future = unsafe { Pin::new_unchecked(future) };
                let mut cx = Context::from_waker(waker);
                catch_unwind(AssertUnwindSafe(|| future.poll(&mut cx)))
            })
        };
        CURRENT.with(|current| *current.borrow_mut() = outer);
        polled
    }

    /// The future waits: keep the driver alive, and give it an executor task
    /// if something other than a Deferred may wake it.
    fn after_pending(self: &Rc<Self>) {
        if self.kept.get().is_none() {
            self.kept.set(Some(executor::keep(self.clone())));
        }
        let Some((wake, _)) = self.own_waker.get() else {
            return;
        };
        // The driver and its `Waker` hold the `Arc`: a third holder is
        // something that will wake the future; so is a wake already made.
        let handed_out = Arc::strong_count(wake) > 2 || wake.woken.load(Ordering::Acquire);
        if handed_out && self.shell.borrow().is_none() {
            let task = executor::spawn(Shell(self.clone()));
            *self.shell.borrow_mut() = Some(task);
        }
    }

    fn drop_future(&self) {
        // Dropping runs the future's code: a resume meanwhile only notes it.
        self.polling.set(true);
        *self.future.borrow_mut() = None;
        self.polling.set(false);
    }

    fn finish(&self, outcome: Outcome<T>) {
        if let Some(key) = self.kept.take() {
            executor::release(key);
        }
        let shell = self.shell.borrow_mut().take();
        drop(shell);
        let resolver = self.resolver.borrow_mut().take();
        match resolver {
            Some(resolver) => {
                if resolver.core.fire(outcome).is_err() {
                    log::debug!("a future finished after its Deferred was fired");
                }
            }
            None => *self.early.borrow_mut() = Some(outcome),
        }
    }
}

impl<T: 'static, F> Resume for Driver<T, F>
where
    F: Future<Output = Result<T, Failure>> + 'static,
{
    fn resume(self: Rc<Self>) {
        self.poll_now();
    }
}

impl<T: 'static, F> ForwardCancel for Driver<T, F>
where
    F: Future<Output = Result<T, Failure>> + 'static,
{
    /// Cancels what the future awaits, or drops a future that awaits no
    /// Deferred.
    fn forward_cancel(self: Rc<Self>) {
        if self.polling.get() {
            self.cancel_requested.set(true);
            return;
        }
        if self.future.borrow().is_none() {
            return;
        }
        let awaited: Vec<Rc<dyn Node>> = self
            .awaiting
            .borrow()
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        if awaited.is_empty() {
            self.drop_future();
            return self.finish(Err(Failure::from(CancelledError)));
        }
        for deferred in awaited {
            chain::cancel_from(deferred);
        }
    }
}

impl<T: 'static, F> DriverContext for Driver<T, F>
where
    F: Future<Output = Result<T, Failure>> + 'static,
{
    fn note_awaiting(&self, awaited: Weak<dyn Node>) {
        self.awaiting.borrow_mut().push(awaited);
    }

    fn owns(&self, waker: &Waker) -> bool {
        match self.own_waker.get() {
            Some((_, own)) => waker.will_wake(own),
            None => waker.will_wake(Waker::noop()),
        }
    }

    fn resume_handle(&self) -> Weak<dyn Resume> {
        self.me.clone()
    }
}

/// The executor task of a driver: polls its future when woken.
struct Shell<T: 'static, F>(Rc<Driver<T, F>>);

impl<T: 'static, F> Future for Shell<T, F>
where
    F: Future<Output = Result<T, Failure>> + 'static,
{
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let driver = &self.0;
        let (wake, _) = driver
            .own_waker
            .get()
            .expect("a driver has its own waker before its task is made");
        {
            let mut shell = wake.shell.lock().unwrap_or_else(PoisonError::into_inner);
            if !shell.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *shell = Some(cx.waker().clone());
            }
        }
        wake.woken.store(false, Ordering::Release);
        driver.poll_now();
        if driver.future.borrow().is_none() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

/// Runs `f` on a thread pool (the `blocking` crate's) and fires the returned
/// Deferred with its result on this thread: Twisted's `deferToThread`. A
/// panic in `f` errbacks with [`Panicked`](crate::Panicked). The result
/// arrives through the thread's executor, so a reactor must run.
///
/// # Examples
///
/// ```
/// use twill::{defer::defer_to_thread, Reactor};
///
/// let reactor = Reactor::new()?;
/// let d = defer_to_thread(|| Ok((1..=10u64).product::<u64>()));
/// d.add_both(|result| {
///     twill::stop();
///     result
/// });
/// reactor.run()?;
/// assert_eq!(d.result().unwrap().unwrap(), 3628800);
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn defer_to_thread<T, F>(f: F) -> Deferred<T>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, Failure> + Send + 'static,
{
    Deferred::from_future(async move {
        let outcome = blocking::unblock(move || catch_unwind(AssertUnwindSafe(f))).await;
        outcome.unwrap_or_else(|panic| Err(Failure::from_panic(&*panic)))
    })
}

/// A Deferred fired from any thread: send its result through the returned
/// `futures` oneshot sender. The result arrives through the thread's
/// executor (a reactor must run); a sender dropped without sending fails
/// the Deferred with [`SenderDropped`]. Cancelling the Deferred drops the
/// receiver, which the sender sees (`Sender::is_canceled`).
///
/// # Examples
///
/// ```
/// use twill::{defer::oneshot, Reactor};
///
/// let reactor = Reactor::new()?;
/// let (d, sender) = oneshot::<u64>();
/// std::thread::spawn(move || sender.send(Ok(7)));
/// d.add_both(|result| {
///     twill::stop();
///     result
/// });
/// reactor.run()?;
/// assert_eq!(d.result().unwrap().unwrap(), 7);
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn oneshot<T: Send + 'static>() -> (
    Deferred<T>,
    futures::channel::oneshot::Sender<Result<T, Failure>>,
) {
    let (sender, receiver) = futures::channel::oneshot::channel();
    let d = Deferred::from_future(async move {
        receiver
            .await
            .unwrap_or_else(|_| Err(Failure::from(SenderDropped)))
    });
    (d, sender)
}

/// The sender of a [`oneshot`] Deferred was dropped without sending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderDropped;

impl std::fmt::Display for SenderDropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the sender of a oneshot Deferred was dropped without sending")
    }
}

impl std::error::Error for SenderDropped {}
