//! [`Deferred`]: a result that is not there yet, with a chain of callbacks
//! and errbacks, as Twisted's `twisted.internet.defer`.
//!
//! The rules are Twisted's: callbacks run in the order they were added; a
//! callback that fails (returns `Err`, or panics) switches the chain to the
//! error path, an errback that returns `Ok` switches it back; a callback may
//! return another `Deferred`, and the chain waits for it. A Deferred fires
//! once. One dropped while holding a failure no errback handled logs
//! `Unhandled error in Deferred: …`.
//!
//! In Rust's types: [`Deferred::add_callback`] keeps the value's type, and
//! [`Deferred::then`] changes it. A Deferred is also a `Future`
//! (`d.await` gives `Result<T, Failure>`), and [`Deferred::from_future`]
//! turns a future into a Deferred.

mod chain;
mod failure;
mod future;
mod list;
mod lock;
mod queue;

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use chain::{Chain, Outcome, Step};

pub use failure::{
    AlreadyCalledError, CancelledError, ChainedToItselfError, Failure, NotPausedError, TimeoutError,
};

pub use future::defer_to_thread;
pub use list::*;
pub use lock::*;
pub use queue::*;

use crate::time::ReactorTime;

/// A result that will come later, with the callbacks waiting for it:
/// Twisted's `Deferred`.
///
/// `Deferred<T>` is a cheap handle (clone it to fire it from one place and
/// add callbacks in another); every clone is the same Deferred. It lives on
/// one thread, like the reactor.
///
/// # Examples
///
/// ```
/// use std::{cell::RefCell, rc::Rc};
/// use twill::defer::{Deferred, Failure};
///
/// let log = Rc::new(RefCell::new(Vec::new()));
/// let (a, b) = (log.clone(), log.clone());
/// let d = Deferred::new();
/// d.add_callback(move |n: i64| {
///     a.borrow_mut().push(format!("square of {n} is {}", n * n));
///     Ok(n)
/// })
/// .add_errback(|f: Failure| Err(f))
/// .add_callback(move |n| {
///     b.borrow_mut().push(format!("twice {n} is {}", 2 * n));
///     Ok(n)
/// });
/// d.callback(5);
/// assert_eq!(*log.borrow(), ["square of 5 is 25", "twice 5 is 10"]);
/// ```
///
/// A callback can return another Deferred; the chain waits for it:
///
/// ```
/// use twill::defer::{succeed, Deferred};
///
/// let inner = Deferred::new();
/// let waiting = inner.clone();
/// let outer = succeed(1).then(move |n: i32| waiting.then(move |m: i32| Ok(n + m)));
/// assert!(outer.result().is_none());
/// inner.callback(41);
/// assert_eq!(outer.result().unwrap().unwrap(), 42);
/// ```
pub struct Deferred<T> {
    chain: Rc<Chain>,
    _type: PhantomData<*const T>,
}

impl<T> Clone for Deferred<T> {
    fn clone(&self) -> Self {
        Deferred {
            chain: self.chain.clone(),
            _type: PhantomData,
        }
    }
}

/// What a callback may return: `Result<T, Failure>` (a value, or a failure
/// for the error path), or a `Deferred<T>` to wait for.
pub trait IntoStep<T> {
    /// Converts into the chain's next step; `spare` is the box the previous
    /// value travelled in, reused when the types allow.
    #[doc(hidden)]
    fn into_step(self, spare: Option<chain::Value>) -> StepInner;
}

/// Opaque: the chain's next step.
#[doc(hidden)]
pub struct StepInner(Step);

impl fmt::Debug for StepInner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StepInner")
    }
}

impl<T: 'static> IntoStep<T> for Result<T, Failure> {
    fn into_step(self, spare: Option<chain::Value>) -> StepInner {
        StepInner(Step::Done(self.map(|value| put(value, spare))))
    }
}

impl<T: 'static> IntoStep<T> for Deferred<T> {
    fn into_step(self, _spare: Option<chain::Value>) -> StepInner {
        if self.chain.tail_type() != std::any::TypeId::of::<T>() {
            return StepInner(Step::Done(Err(Failure::new(format!(
                "a callback returned a Deferred whose chain no longer carries {}",
                std::any::type_name::<T>()
            )))));
        }
        StepInner(Step::Wait(self.chain))
    }
}

/// Values travel down a chain boxed as `Option<T>`, so a callback that keeps
/// the type hands its result on in the box its argument came in: no
/// allocation per step.
fn put<T: 'static>(value: T, spare: Option<chain::Value>) -> chain::Value {
    match spare {
        Some(mut slot) => match slot.downcast_mut::<Option<T>>() {
            Some(empty) => {
                *empty = Some(value);
                slot
            }
            None => Box::new(Some(value)),
        },
        None => Box::new(Some(value)),
    }
}

fn take<T: 'static>(slot: &mut chain::Value) -> T {
    slot.downcast_mut::<Option<T>>()
        .and_then(Option::take)
        .unwrap_or_else(|| {
            panic!(
                "a Deferred carried a value that is not {}",
                std::any::type_name::<T>()
            )
        })
}

fn outcome_to_result<T: 'static>(outcome: Outcome) -> Result<T, Failure> {
    outcome.map(|mut slot| take::<T>(&mut slot))
}

/// Runs a function for both paths, reusing the value's box.
fn on_both<T: 'static, U, R: IntoStep<U>>(
    outcome: Outcome,
    f: impl FnOnce(Result<T, Failure>) -> R,
) -> Step {
    match outcome {
        Ok(mut slot) => {
            let value = take::<T>(&mut slot);
            f(Ok(value)).into_step(Some(slot)).0
        }
        Err(failure) => f(Err(failure)).into_step(None).0,
    }
}

/// Runs a callback on the success path, reusing the value's box.
fn on_value<T: 'static, U, R: IntoStep<U>>(mut slot: chain::Value, f: impl FnOnce(T) -> R) -> Step {
    let value = take::<T>(&mut slot);
    f(value).into_step(Some(slot)).0
}

impl<T: 'static> Deferred<T> {
    /// A Deferred that has not fired.
    pub fn new() -> Deferred<T> {
        Deferred {
            chain: Chain::new::<T>(),
            _type: PhantomData,
        }
    }

    /// A Deferred whose [`cancel`](Self::cancel) calls `canceller` first (to
    /// stop the work); if the canceller does not fire it, it fails with
    /// [`CancelledError`].
    pub fn with_canceller(canceller: impl FnOnce(&Deferred<T>) + 'static) -> Deferred<T> {
        let d = Deferred::new();
        d.chain.set_canceller(Box::new(move |chain| {
            canceller(&Deferred {
                chain: chain.clone(),
                _type: PhantomData,
            })
        }));
        d
    }

    fn from_chain(chain: Rc<Chain>) -> Deferred<T> {
        Deferred {
            chain,
            _type: PhantomData,
        }
    }

    /// Fires the Deferred with a value: the callbacks run now.
    ///
    /// # Panics
    ///
    /// If it was fired before ([`AlreadyCalledError`]; see
    /// [`try_callback`](Self::try_callback)), unless it was cancelled
    /// without a canceller, which swallows one late firing.
    pub fn callback(&self, value: T) {
        if let Err(err) = self.try_callback(value) {
            panic!("{err}");
        }
    }

    /// Fires the Deferred with a value, or says it was fired already.
    ///
    /// # Errors
    ///
    /// [`AlreadyCalledError`] if it was fired before.
    pub fn try_callback(&self, value: T) -> Result<(), AlreadyCalledError> {
        self.chain.check_fire_type::<T>();
        self.chain.fire(Ok(put(value, None)))
    }

    /// Fires the Deferred with a failure: the errbacks run now.
    ///
    /// # Panics
    ///
    /// If it was fired before, as [`callback`](Self::callback).
    pub fn errback(&self, failure: impl Into<Failure>) {
        if let Err(err) = self.try_errback(failure) {
            panic!("{err}");
        }
    }

    /// Fires the Deferred with a failure, or says it was fired already.
    ///
    /// # Errors
    ///
    /// [`AlreadyCalledError`] if it was fired before.
    pub fn try_errback(&self, failure: impl Into<Failure>) -> Result<(), AlreadyCalledError> {
        self.chain.fire(Err(failure.into()))
    }

    /// Adds a callback and an errback as one step: `callback` runs on the
    /// success path, `errback` on the error path. Runs now if the result is
    /// already here.
    pub fn add_callbacks<R1, R2>(
        &self,
        callback: impl FnOnce(T) -> R1 + 'static,
        errback: impl FnOnce(Failure) -> R2 + 'static,
    ) -> &Self
    where
        R1: IntoStep<T>,
        R2: IntoStep<T>,
    {
        self.chain.check_tail_type::<T>();
        self.chain.add_pair(Box::new(move |outcome| match outcome {
            Ok(value) => on_value(value, callback),
            Err(failure) => errback(failure).into_step(None).0,
        }));
        self
    }

    /// Adds a callback for the success path; failures pass it by.
    pub fn add_callback<R: IntoStep<T>>(&self, callback: impl FnOnce(T) -> R + 'static) -> &Self {
        self.chain.check_tail_type::<T>();
        self.chain.add_pair(Box::new(move |outcome| match outcome {
            Ok(value) => on_value(value, callback),
            Err(failure) => Step::Done(Err(failure)),
        }));
        self
    }

    /// Adds an errback for the error path; values pass it by. Returning
    /// `Ok` recovers; returning `Err` passes a failure on.
    pub fn add_errback<R: IntoStep<T>>(
        &self,
        errback: impl FnOnce(Failure) -> R + 'static,
    ) -> &Self {
        self.chain.check_tail_type::<T>();
        self.chain.add_pair(Box::new(move |outcome| match outcome {
            Ok(value) => Step::Done(Ok(value)),
            Err(failure) => errback(failure).into_step(None).0,
        }));
        self
    }

    /// Adds one function for both paths; it gets `Ok(value)` or
    /// `Err(failure)`.
    pub fn add_both<R: IntoStep<T>>(
        &self,
        f: impl FnOnce(Result<T, Failure>) -> R + 'static,
    ) -> &Self {
        self.chain.check_tail_type::<T>();
        self.chain
            .add_pair(Box::new(move |outcome| on_both(outcome, f)));
        self
    }

    /// Adds a callback that changes the value's type, and returns the
    /// Deferred as a `Deferred<U>` (the same Deferred: Twisted's callbacks
    /// may change the type, Rust's handle says so). Failures pass by.
    ///
    /// # Examples
    ///
    /// ```
    /// use twill::defer::succeed;
    ///
    /// let d = succeed(21).then(|n: i32| Ok(n * 2)).then(|n| Ok(format!("{n}!")));
    /// assert_eq!(d.result().unwrap().unwrap(), "42!");
    /// ```
    pub fn then<U: 'static, R: IntoStep<U>>(self, f: impl FnOnce(T) -> R + 'static) -> Deferred<U> {
        self.chain.check_tail_type::<T>();
        self.chain.set_tail_type::<U>();
        self.chain.add_pair(Box::new(move |outcome| match outcome {
            Ok(value) => on_value(value, f),
            Err(failure) => Step::Done(Err(failure)),
        }));
        Deferred::from_chain(self.chain)
    }

    /// As [`then`](Self::then), with one function for both paths.
    pub fn then_both<U: 'static, R: IntoStep<U>>(
        self,
        f: impl FnOnce(Result<T, Failure>) -> R + 'static,
    ) -> Deferred<U> {
        self.chain.check_tail_type::<T>();
        self.chain.set_tail_type::<U>();
        self.chain
            .add_pair(Box::new(move |outcome| on_both(outcome, f)));
        Deferred::from_chain(self.chain)
    }

    /// Fires `other` with whatever reaches this point of the chain (value or
    /// failure); this chain then holds nothing more. Unlike Twisted's, any
    /// number of links runs without recursion.
    pub fn chain_deferred(&self, other: &Deferred<T>) -> &Self {
        self.chain.check_tail_type::<T>();
        other.chain.check_fire_type::<T>();
        self.chain.add_fire(other.chain.clone());
        self
    }

    /// Pauses the chain: a result that arrives is kept, and no callback runs
    /// until as many [`unpause`](Self::unpause) calls.
    pub fn pause(&self) {
        self.chain.pause();
    }

    /// Undoes one [`pause`](Self::pause); the last one runs what waited.
    ///
    /// # Errors
    ///
    /// [`NotPausedError`] if the Deferred is not paused.
    pub fn unpause(&self) -> Result<(), NotPausedError> {
        self.chain.unpause()
    }

    /// Cancels the work: runs the canceller if there is one; if the
    /// Deferred is still unfired then, it fails with [`CancelledError`].
    /// If it waits on a Deferred a callback returned, that one is cancelled
    /// instead. Does nothing once the result is here.
    pub fn cancel(&self) {
        self.chain.cancel();
    }

    /// Cancels the Deferred if it has not fired within `timeout` on the
    /// current reactor; it then fails with [`TimeoutError`] (unless its
    /// canceller gave it another result). Covers the callbacks added before
    /// this call.
    ///
    /// # Panics
    ///
    /// If no reactor exists on this thread; see
    /// [`add_timeout_on`](Self::add_timeout_on).
    pub fn add_timeout(&self, timeout: Duration) -> &Self {
        self.add_timeout_on(timeout, &crate::reactor())
    }

    /// As [`add_timeout`](Self::add_timeout), on the given clock (a
    /// [`Clock`](crate::task::Clock) in tests).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use twill::{defer::{Deferred, TimeoutError}, task::Clock};
    ///
    /// let clock = Clock::new();
    /// let d: Deferred<()> = Deferred::new();
    /// d.add_timeout_on(Duration::from_secs(5), &clock);
    /// clock.advance(Duration::from_secs(5));
    /// assert!(d.result().unwrap().unwrap_err().check::<TimeoutError>());
    /// ```
    pub fn add_timeout_on(&self, timeout: Duration, clock: &dyn ReactorTime) -> &Self {
        let timed_out = Rc::new(std::cell::Cell::new(false));
        let (flag, target) = (timed_out.clone(), self.clone());
        let timer = clock.call_later(
            timeout,
            Box::new(move || {
                flag.set(true);
                target.cancel();
            }),
        );
        self.add_both(move |result| {
            if timer.active() {
                let _ = timer.cancel();
            }
            match result {
                Err(failure) if timed_out.get() && failure.check::<CancelledError>() => {
                    Err(Failure::new(TimeoutError { timeout }))
                }
                other => other,
            }
        })
    }

    /// Whether the Deferred was fired (its result may still be waiting on
    /// another Deferred, or paused).
    pub fn called(&self) -> bool {
        self.chain.called()
    }

    /// Whether it is paused.
    pub fn is_paused(&self) -> bool {
        self.chain.is_paused()
    }

    /// Takes the result if the chain has run to its end: Twisted's
    /// `successResultOf` / `failureResultOf` for tests. Afterwards the
    /// Deferred holds nothing (its failure counts as handled).
    pub fn result(&self) -> Option<Result<T, Failure>> {
        self.chain.check_tail_type::<T>();
        self.chain.poll_take(None).map(outcome_to_result::<T>)
    }
}

impl<T: 'static> Default for Deferred<T> {
    fn default() -> Self {
        Deferred::new()
    }
}

impl<T: 'static> Future for Deferred<T> {
    type Output = Result<T, Failure>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.chain.poll_take(Some(cx.waker())) {
            Some(outcome) => Poll::Ready(outcome_to_result::<T>(outcome)),
            None => Poll::Pending,
        }
    }
}

impl<T> fmt::Debug for Deferred<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Deferred")
            .field("called", &self.chain.called())
            .field("paused", &self.chain.is_paused())
            .field("waiting", &self.chain.is_waiting())
            .finish()
    }
}

/// A Deferred that already has `value`: callbacks added run at once.
pub fn succeed<T: 'static>(value: T) -> Deferred<T> {
    let d = Deferred::new();
    d.callback(value);
    d
}

/// A Deferred that already failed with `failure`.
pub fn fail<T: 'static>(failure: impl Into<Failure>) -> Deferred<T> {
    let d = Deferred::new();
    d.errback(failure);
    d
}

/// Calls `f` now and gives its outcome as a Deferred: a value or failure
/// becomes a fired Deferred, a Deferred is returned as it is, and a panic
/// becomes a failure. Twisted's `maybeDeferred`.
///
/// # Examples
///
/// ```
/// use twill::defer::{maybe_deferred, Failure};
///
/// let ok = maybe_deferred(|| Ok::<_, Failure>(3));
/// assert_eq!(ok.result().unwrap().unwrap(), 3);
/// let panicked = maybe_deferred(|| -> Result<i32, Failure> { panic!("boom") });
/// assert!(panicked.result().unwrap().is_err());
/// ```
pub fn maybe_deferred<T: 'static, R: IntoStep<T>>(f: impl FnOnce() -> R) -> Deferred<T> {
    let step = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        .map(|r| r.into_step(None).0)
        .unwrap_or_else(|panic| Step::Done(Err(Failure::from_panic(&*panic))));
    match step {
        Step::Done(outcome) => {
            let d = Deferred::new();
            let _ = d.chain.fire(outcome);
            d
        }
        Step::Wait(chain) => Deferred::from_chain(chain),
    }
}

/// How many Deferreds this thread dropped holding a failure that no errback
/// handled; each was also logged as `Unhandled error in Deferred`. Tests
/// compare it before and after to assert that nothing went unhandled.
///
/// # Examples
///
/// ```
/// use twill::defer::{fail, unhandled_failures, Failure};
///
/// let before = unhandled_failures();
/// drop(fail::<()>(Failure::new("nobody listens")));
/// assert_eq!(unhandled_failures(), before + 1);
/// ```
pub fn unhandled_failures() -> u64 {
    chain::unhandled_count()
}
