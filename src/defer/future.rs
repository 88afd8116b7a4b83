//! Deferreds and Rust futures: [`Deferred::from_future`],
//! [`defer_to_thread`], and [`spawn`](crate::spawn).
//!
//! Futures run on the reactor's thread, polled between I/O events (an
//! `async-task` run queue the loop drains each turn), so they can hold
//! `Rc`s, await Deferreds and touch transports. A future woken from another
//! thread (a thread-pool result, an `async-io` timer) is queued there and
//! the loop is woken.

use std::cell::RefCell;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::rc::Rc;

use futures_lite::FutureExt;

use super::{Deferred, Failure};

impl<T: 'static> Deferred<T> {
    /// Runs `future` on the current reactor and fires the Deferred with its
    /// output: `Ok` calls back, `Err` errbacks, a panic errbacks with
    /// [`Panicked`](crate::Panicked). Twisted's `ensureDeferred` /
    /// `Deferred.fromCoroutine`.
    ///
    /// Cancelling the Deferred drops the future (Rust's way of cancelling
    /// it) and fails the Deferred with
    /// [`CancelledError`](super::CancelledError).
    ///
    /// # Panics
    ///
    /// If no reactor exists on this thread.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use twill::{defer::Deferred, task::defer_later, Reactor};
    ///
    /// let reactor = Reactor::new()?;
    /// let d = Deferred::from_future(async {
    ///     let a: i32 = defer_later(&twill::reactor(), Duration::from_millis(1), || Ok(20)).await?;
    ///     let b: i32 = defer_later(&twill::reactor(), Duration::from_millis(1), || Ok(22)).await?;
    ///     Ok(a + b)
    /// });
    /// d.add_both(|result| {
    ///     twill::stop();
    ///     result
    /// });
    /// reactor.run()?;
    /// assert_eq!(d.result().unwrap().unwrap(), 42);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn from_future<F>(future: F) -> Deferred<T>
    where
        F: Future<Output = Result<T, Failure>> + 'static,
    {
        let reactor = crate::reactor();
        let running: Rc<RefCell<Option<async_task::Task<()>>>> = Rc::default();
        let to_cancel = running.clone();
        // Dropping the task drops the future.
        let d = Deferred::with_canceller(move |_| drop(to_cancel.borrow_mut().take()));
        let fire = d.clone();
        let task = reactor.spawn_task(async move {
            let outcome = AssertUnwindSafe(future).catch_unwind().await;
            let fired = match outcome {
                Ok(Ok(value)) => fire.try_callback(value),
                Ok(Err(failure)) => fire.try_errback(failure),
                Err(panic) => fire.try_errback(Failure::from_panic(&*panic)),
            };
            if fired.is_err() {
                log::debug!("a future finished after its Deferred was fired");
            }
        });
        *running.borrow_mut() = Some(task);
        d
    }
}

/// Runs `f` on a thread pool (the `blocking` crate's) and fires the returned
/// Deferred with its result on the reactor thread: Twisted's
/// `deferToThread`. A panic in `f` errbacks with
/// [`Panicked`](crate::Panicked).
///
/// # Panics
///
/// If no reactor exists on this thread.
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
        let outcome =
            blocking::unblock(move || std::panic::catch_unwind(AssertUnwindSafe(f))).await;
        outcome.unwrap_or_else(|panic| Err(Failure::from_panic(&*panic)))
    })
}
