//! [`Deferred`]: a result that is not there yet, with a chain of callbacks
//! and errbacks, as Twisted's `twisted.internet.defer`.
//!
//! The rules are Twisted's: callbacks run in the order they were added; a
//! callback that fails (returns `Err`, or panics) switches the chain to the
//! error path, an errback that returns `Ok` switches it back; a callback may
//! return another `Deferred`, and the chain waits for it (or takes its
//! result at once if it has one). A Deferred fires once. One dropped while
//! holding a failure no errback handled logs `Unhandled error in Deferred:
//! …`.
//!
//! # In Rust's types
//!
//! A `Deferred<T>` is the one handle to its chain: it is not `Clone`.
//! Whoever fires it gets a [`Resolver`] ([`Deferred::resolver`]), which can
//! fire and pause it but not add callbacks. So a result that moves on
//! cannot leave a callback behind: a Deferred returned from a callback is
//! moved into the chain that waits for it, [`then`](Deferred::then) (which
//! changes the value's type) consumes the handle and gives the next one,
//! and so do [`chain_deferred`](Deferred::chain_deferred) and the
//! [lists](DeferredList). Where Twisted's Deferred goes on with `None` after
//! handing its result over, a twill one has no handle left to add a callback
//! with. The one way to keep a handle is to await it by reference
//! (`(&mut d).await`, `futures::select!`): callbacks added to it afterwards
//! run on the error path with [`PassedOnError`].
//!
//! So the type checker refuses what would otherwise lose a callback, or
//! meet a value of the wrong type. There is no second handle to go stale:
//!
//! ```compile_fail
//! let d = twill::defer::Deferred::<i32>::new();
//! let other = d.clone(); // a Deferred is not Clone; use d.resolver() to fire it elsewhere
//! ```
//!
//! and the handle `then` consumed cannot add a callback for the old type:
//!
//! ```compile_fail
//! let d = twill::defer::Deferred::<i32>::new();
//! let text = d.then(|n| Ok(n.to_string()));
//! d.add_callback(|n| Ok(n + 1)); // `d` moved into `then`
//! ```
//!
//! # Memory
//!
//! A chain lives while something can fire it (a [`Resolver`], a timer, a
//! driven future) and is freed when nothing can. Three waits are held
//! strongly, because cancelling may be the only thing that ends them: a
//! Deferred with a user's canceller returned from a callback (held by the
//! chain that waits on it), a Deferred with a pending
//! [`add_timeout`](Deferred::add_timeout) (held by the timer), and the
//! inputs of a [`DeferredList`] (held by the list). Such a wait that is
//! never fired and never cancelled is never freed; Twisted's garbage
//! collector would free it, Rust's reference counts cannot. A
//! `from_future` waiting on something that will never come is freed with
//! the thread's last reactor.
//!
//! # As a future
//!
//! A Deferred is also a `Future` (`d.await` gives `Result<T, Failure>`;
//! it is `Unpin` and fused, so `futures::select!` and `join!` take it), and
//! [`Deferred::from_future`] turns a future into a Deferred, driven as
//! Twisted drives a coroutine.

mod chain;
mod failure;
mod future;
mod list;
mod lock;
mod queue;

use std::cell::{Cell, OnceCell};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use chain::{Canceller, Core, ForwardCancel, Node, Outcome, Step};

pub use failure::{
    AlreadyCalledError, CancelledError, ChainedToItselfError, Failure, NotPausedError,
    PassedOnError, TimeoutError,
};

pub use future::{defer_to_thread, oneshot, SenderDropped};
pub use list::*;
pub use lock::*;
pub use queue::*;

use crate::time::ReactorTime;

/// A result that will come later, with the callbacks waiting for it:
/// Twisted's `Deferred`.
///
/// It lives on one thread, like the reactor. Fire it with
/// [`callback`](Self::callback) / [`errback`](Self::errback), here or
/// through a [`Resolver`] handed to whoever produces the result.
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
/// let fire_inner = inner.resolver();
/// let outer = succeed(1).then(move |n: i32| inner.then(move |m: i32| Ok(n + m)));
/// assert!(outer.result().is_none());
/// fire_inner.callback(41);
/// assert_eq!(outer.result().unwrap().unwrap(), 42);
/// ```
///
/// A handle moved into a chain cannot be used afterwards, so no callback
/// can be added behind a result that left:
///
/// ```compile_fail
/// use twill::defer::{succeed, Deferred};
///
/// let inner = succeed(1);
/// let outer = Deferred::new();
/// outer.add_callback(move |_: i32| inner);
/// inner.add_callback(|n| Ok(n)); // `inner` was moved into the callback
/// ```
#[must_use = "a Deferred does nothing by itself: add callbacks, await it, or fire it"]
pub struct Deferred<T: 'static> {
    /// Made when first needed: a Deferred made fired (`succeed`, `fail`)
    /// keeps its result in `ready` until then, so one whose result is
    /// taken at once (returned from a callback, awaited) costs no
    /// allocation.
    core: OnceCell<Rc<Core<T>>>,
    ready: Cell<Option<Outcome<T>>>,
    /// The first core of the chain, when this handle is a segment that
    /// `then` made: kept alive so that cancelling reaches its canceller.
    head: Option<Rc<dyn Node>>,
}

/// The producer's handle to a [`Deferred`]: fires it, and can pause it, but
/// cannot add callbacks. Cheap to clone; every clone fires the same
/// Deferred.
///
/// # Examples
///
/// ```
/// use twill::defer::Deferred;
///
/// let d = Deferred::new();
/// let fire = d.resolver();
/// let doubled = d.then(|n: i32| Ok(n * 2));
/// fire.callback(21);
/// assert_eq!(doubled.result().unwrap().unwrap(), 42);
/// ```
pub struct Resolver<T: 'static> {
    core: Rc<Core<T>>,
}

impl<T: 'static> Clone for Resolver<T> {
    fn clone(&self) -> Self {
        Resolver {
            core: self.core.clone(),
        }
    }
}

/// A Deferred's identity, for comparing and printing: what
/// [`Deferred::chained_to`] names. Prints as `Deferred at 0x…`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct DeferredId(usize);

impl fmt::Debug for DeferredId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Deferred at {:#x}", self.0)
    }
}

/// What a callback may return: `Result<T, Failure>` (a value, or a failure
/// for the error path), or a `Deferred<T>` to wait for.
pub trait IntoStep<T: 'static> {
    /// Converts into the chain's next step.
    #[doc(hidden)]
    fn into_step(self) -> StepInner<T>;
}

/// Opaque: the chain's next step.
#[doc(hidden)]
pub struct StepInner<T: 'static>(Step<T>);

impl<T: 'static> fmt::Debug for StepInner<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StepInner")
    }
}

impl<T: 'static> IntoStep<T> for Result<T, Failure> {
    fn into_step(self) -> StepInner<T> {
        StepInner(Step::Done(self))
    }
}

impl<T: 'static> IntoStep<T> for StepInner<T> {
    fn into_step(self) -> StepInner<T> {
        self
    }
}

impl<T: 'static> IntoStep<T> for Deferred<T> {
    fn into_step(self) -> StepInner<T> {
        StepInner(Step::Wait(self))
    }
}

fn step<T: 'static, R: IntoStep<T>>(r: R) -> Step<T> {
    r.into_step().0
}

impl<T: 'static> Deferred<T> {
    /// A Deferred that has not fired.
    #[track_caller]
    pub fn new() -> Deferred<T> {
        Deferred::from_core(Core::new())
    }

    /// A Deferred whose [`cancel`](Self::cancel) calls `canceller` first (to
    /// stop the work; it may fire the Deferred through the resolver it is
    /// given); if the canceller does not fire it, it fails with
    /// [`CancelledError`]. A canceller that panics makes `cancel` panic with
    /// it and leaves the Deferred unfired, as Twisted's `cancel` raises
    /// what its canceller raised.
    #[track_caller]
    pub fn with_canceller(canceller: impl FnOnce(&Resolver<T>) + 'static) -> Deferred<T> {
        let d = Deferred::new();
        d.core().set_canceller(Canceller::Once(Box::new(canceller)));
        d
    }

    fn from_core(core: Rc<Core<T>>) -> Deferred<T> {
        Deferred {
            core: OnceCell::from(core),
            ready: Cell::new(None),
            head: None,
        }
    }

    fn segment(core: Rc<Core<T>>, head: Rc<dyn Node>) -> Deferred<T> {
        Deferred {
            core: OnceCell::from(core),
            ready: Cell::new(None),
            head: Some(head),
        }
    }

    /// A Deferred that already has `outcome`, its core made only if needed
    /// (at once in debug mode, to record where it was made).
    #[track_caller]
    fn from_ready(outcome: Outcome<T>) -> Deferred<T> {
        if chain::debugging() {
            return Deferred::from_core(Core::fired(outcome));
        }
        Deferred {
            core: OnceCell::new(),
            ready: Cell::new(Some(outcome)),
            head: None,
        }
    }

    /// The chain, made now for a Deferred made fired.
    #[inline]
    fn core(&self) -> &Rc<Core<T>> {
        match self.core.get() {
            Some(core) => core,
            None => self.make_core(),
        }
    }

    #[cold]
    fn make_core(&self) -> &Rc<Core<T>> {
        self.core.get_or_init(|| match self.ready.take() {
            Some(outcome) => Core::fired(outcome),
            // Its result was taken by an await.
            None => Core::passed_on(),
        })
    }

    /// The result of a Deferred made fired whose chain was never needed:
    /// taken by whoever takes the result over (an await, a chain the
    /// Deferred was returned to), without making the chain.
    pub(crate) fn take_ready(&self) -> Option<Outcome<T>> {
        match self.core.get() {
            Some(_) => None,
            None => self.ready.take(),
        }
    }

    /// A handle that fires this Deferred, for whoever produces the result.
    pub fn resolver(&self) -> Resolver<T> {
        Resolver {
            core: self.core().clone(),
        }
    }

    /// Fires the Deferred with a value: the callbacks run now.
    ///
    /// # Panics
    ///
    /// If it was fired before ([`AlreadyCalledError`]; see
    /// [`try_callback`](Self::try_callback)), unless it was cancelled
    /// without a canceller, which swallows one late firing.
    #[track_caller]
    pub fn callback(&self, value: T) {
        fire_or_panic(self.core(), Ok(value));
    }

    /// Fires the Deferred with a value, or says it was fired already.
    ///
    /// # Errors
    ///
    /// [`AlreadyCalledError`] if it was fired before.
    #[track_caller]
    pub fn try_callback(&self, value: T) -> Result<(), AlreadyCalledError> {
        self.core().fire(Ok(value))
    }

    /// Fires the Deferred with a failure: the errbacks run now.
    ///
    /// # Panics
    ///
    /// If it was fired before, as [`callback`](Self::callback).
    #[track_caller]
    pub fn errback(&self, failure: impl Into<Failure>) {
        fire_or_panic(self.core(), Err(failure.into()));
    }

    /// Fires the Deferred with a failure, or says it was fired already.
    ///
    /// # Errors
    ///
    /// [`AlreadyCalledError`] if it was fired before.
    #[track_caller]
    pub fn try_errback(&self, failure: impl Into<Failure>) -> Result<(), AlreadyCalledError> {
        self.core().fire(Err(failure.into()))
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
        self.core().add_pair(Box::new(move |outcome| match outcome {
            Ok(value) => step(callback(value)),
            Err(failure) => step(errback(failure)),
        }));
        self
    }

    /// Adds a callback for the success path; failures pass it by.
    pub fn add_callback<R: IntoStep<T>>(&self, callback: impl FnOnce(T) -> R + 'static) -> &Self {
        self.core().add_pair(Box::new(move |outcome| match outcome {
            Ok(value) => step(callback(value)),
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
        self.core().add_pair(Box::new(move |outcome| match outcome {
            Ok(value) => Step::Done(Ok(value)),
            Err(failure) => step(errback(failure)),
        }));
        self
    }

    /// Adds one function for both paths; it gets `Ok(value)` or
    /// `Err(failure)`.
    pub fn add_both<R: IntoStep<T>>(
        &self,
        f: impl FnOnce(Result<T, Failure>) -> R + 'static,
    ) -> &Self {
        self.core()
            .add_pair(Box::new(move |outcome| step(f(outcome))));
        self
    }

    /// Adds a callback that changes the value's type, and returns the
    /// Deferred that carries the new type. Failures pass by. Twisted's
    /// callbacks change the type of the same Deferred; here the handle
    /// says so, and the old one is gone.
    ///
    /// The new Deferred is fired by this one ([`chained_to`](Self::chained_to)
    /// names it until then), and cancelling it cancels this one. Pausing it
    /// holds only the callbacks added to it: to hold those before `then`
    /// too, pause this one first (or through its [`Resolver`]). Fire the
    /// chain through this one's resolver, taken before `then`: firing the
    /// new Deferred itself skips this one's callbacks, and what they hand
    /// on later is refused ([`AlreadyCalledError`], reported as unhandled).
    ///
    /// # Examples
    ///
    /// ```
    /// use twill::defer::succeed;
    ///
    /// let d = succeed(21).then(|n: i32| Ok(n * 2)).then(|n| Ok(format!("{n}!")));
    /// assert_eq!(d.result().unwrap().unwrap(), "42!");
    /// ```
    #[track_caller]
    pub fn then<U: 'static, R: IntoStep<U>>(self, f: impl FnOnce(T) -> R + 'static) -> Deferred<U> {
        self.then_both(move |outcome| match outcome {
            Ok(value) => f(value).into_step(),
            Err(failure) => StepInner(Step::Done(Err(failure))),
        })
    }

    /// As [`then`](Self::then), with one function for both paths.
    #[track_caller]
    pub fn then_both<U: 'static, R: IntoStep<U>>(
        self,
        f: impl FnOnce(Result<T, Failure>) -> R + 'static,
    ) -> Deferred<U> {
        let core = self.core().clone();
        let next = core.add_then(move |outcome| step(f(outcome)));
        let head = self.head.clone().unwrap_or(core);
        Deferred::segment(next, head)
    }

    /// Fires `other` with whatever reaches this point of the chain (value or
    /// failure): Twisted's `chainDeferred`. This chain ends there, so the
    /// handle is consumed; `other` names it in
    /// [`chained_to`](Self::chained_to) until it fires. Firing `other`
    /// yourself first makes this chain end with [`AlreadyCalledError`]
    /// (reported as unhandled). Unlike Twisted's, any number of links runs
    /// without recursion.
    pub fn chain_deferred(self, other: &Deferred<T>) {
        self.core().add_fire(other.core().clone());
    }

    /// Pauses the chain: a result that arrives is kept, and no callback runs
    /// until as many [`unpause`](Self::unpause) calls.
    pub fn pause(&self) {
        self.core().pause();
    }

    /// Undoes one [`pause`](Self::pause); the last one runs what waited.
    ///
    /// # Errors
    ///
    /// [`NotPausedError`] if the Deferred is not paused.
    pub fn unpause(&self) -> Result<(), NotPausedError> {
        self.core().unpause()
    }

    /// Cancels the work: runs the canceller if there is one; if the
    /// Deferred is still unfired then, it fails with [`CancelledError`].
    /// If it waits on a Deferred a callback returned, that one is cancelled
    /// instead; if `then` made it, the Deferred it came from is. Does
    /// nothing once the result is here.
    ///
    /// # Panics
    ///
    /// If the canceller panics: the panic goes on out of `cancel`, as
    /// Twisted's `cancel` raises, and the Deferred is left as the canceller
    /// left it (unfired, unless it fired it before panicking). The
    /// canceller is spent either way: a later `cancel` acts as if there had
    /// been none.
    pub fn cancel(&self) {
        chain::cancel_from(self.core().clone());
    }

    /// Cancels the Deferred if it has not fired within `timeout` on `clock`
    /// (the reactor, or a [`Clock`](crate::task::Clock) in tests); it then
    /// fails with [`TimeoutError`] (unless its canceller gave it another
    /// result). Covers the callbacks added before this call. Twisted's
    /// `addTimeout`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use twill::{defer::{Deferred, TimeoutError}, task::Clock};
    ///
    /// let clock = Clock::new();
    /// let d: Deferred<()> = Deferred::new();
    /// d.add_timeout(Duration::from_secs(5), &clock);
    /// clock.advance(Duration::from_secs(5));
    /// assert!(d.result().unwrap().unwrap_err().check::<TimeoutError>());
    /// ```
    pub fn add_timeout(&self, timeout: Duration, clock: &dyn ReactorTime) -> &Self {
        self.add_timeout_with(timeout, clock, |result, timeout| match result {
            Err(failure) if failure.check::<CancelledError>() => {
                Err(Failure::from(TimeoutError { timeout }))
            }
            other => other,
        })
    }

    /// As [`add_timeout`](Self::add_timeout), with Twisted's
    /// `onTimeoutCancel`: when the timeout cancelled the Deferred, the
    /// result (whatever the cancel gave) goes through
    /// `on_timeout_cancel(result, timeout)` instead of the default, which
    /// turns a [`CancelledError`] into a [`TimeoutError`].
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use twill::{defer::Deferred, task::Clock};
    ///
    /// let clock = Clock::new();
    /// let d: Deferred<&str> = Deferred::new();
    /// d.add_timeout_with(Duration::from_secs(1), &clock, |_, _| Ok("gave up"));
    /// clock.advance(Duration::from_secs(1));
    /// assert_eq!(d.result().unwrap().unwrap(), "gave up");
    /// ```
    pub fn add_timeout_with(
        &self,
        timeout: Duration,
        clock: &dyn ReactorTime,
        on_timeout_cancel: impl FnOnce(Result<T, Failure>, Duration) -> Result<T, Failure> + 'static,
    ) -> &Self {
        let timed_out = Rc::new(std::cell::Cell::new(false));
        // Held by the timer until it runs or is cancelled (when the result
        // comes): a timeout is what ends a wait nobody else would end.
        let (flag, target) = (timed_out.clone(), self.core().clone());
        let timer = clock.call_later(
            timeout,
            Box::new(move || {
                flag.set(true);
                chain::cancel_from(target);
            }),
        );
        self.add_both(move |result| {
            if timer.active() {
                let _ = timer.cancel();
            }
            if timed_out.get() {
                on_timeout_cancel(result, timeout)
            } else {
                result
            }
        })
    }

    /// Whether the Deferred was fired (its result may still be waiting on
    /// another Deferred, or paused).
    pub fn called(&self) -> bool {
        self.core().called()
    }

    /// Whether it is paused.
    pub fn is_paused(&self) -> bool {
        self.core().is_paused()
    }

    /// This Deferred's identity.
    pub fn id(&self) -> DeferredId {
        DeferredId(self.core().address())
    }

    /// What this Deferred is chained to, until that resolves (Twisted's
    /// `_chainedTo`): the Deferred a callback returned, while this one
    /// waits on it; or the one that will fire this one, after
    /// [`then`](Self::then) or [`chain_deferred`](Self::chain_deferred),
    /// until it does.
    ///
    /// # Examples
    ///
    /// ```
    /// use twill::defer::Deferred;
    ///
    /// let inner: Deferred<i32> = Deferred::new();
    /// let (inner_id, fire_inner) = (inner.id(), inner.resolver());
    /// let outer = Deferred::new();
    /// outer.add_callback(move |_: i32| inner);
    /// outer.callback(0);
    /// assert_eq!(outer.chained_to(), Some(inner_id));
    /// fire_inner.callback(1);
    /// assert_eq!(outer.chained_to(), None);
    /// ```
    pub fn chained_to(&self) -> Option<DeferredId> {
        self.core().chained_to().map(DeferredId)
    }

    /// Takes the result if the chain has run to its end. Afterwards the
    /// Deferred holds nothing (a failure counts as handled). For looking
    /// without taking, see [`testing`](crate::testing)'s
    /// `success_result_of` and `failure_result_of`.
    pub fn result(&self) -> Option<Result<T, Failure>> {
        if let Some(outcome) = self.take_ready() {
            return Some(outcome);
        }
        self.core().with_result(
            |st| match std::mem::replace(&mut st.slot, chain::Slot::PassedOn) {
                chain::Slot::Ready(outcome) => outcome,
                _ => unreachable!("with_result only gives a ready result"),
            },
        )
    }

    /// Looks at the result, if the chain has run to its end, without taking
    /// it. A failure looked at this way no longer counts as unhandled
    /// (until the chain's result changes). `f` may look at this Deferred
    /// but not change it (add callbacks, fire, pause): that panics.
    pub fn peek_result<R>(&self, f: impl FnOnce(Result<&T, &Failure>) -> R) -> Option<R> {
        self.core().peek(f)
    }
}

/// Cancels a Deferred whose handle was given away (to a list's pair),
/// keeping it alive meanwhile.
pub(crate) struct CancelHandle {
    node: Rc<dyn Node>,
    _head: Option<Rc<dyn Node>>,
}

impl CancelHandle {
    pub(crate) fn clone_handle(&self) -> CancelHandle {
        CancelHandle {
            node: self.node.clone(),
            _head: self._head.clone(),
        }
    }

    pub(crate) fn cancel(&self) {
        chain::cancel_from(self.node.clone());
    }
}

impl<T: 'static> Deferred<T> {
    /// A Deferred whose cancel is passed on to the work it stands for,
    /// which fires it in its own time (if the work is gone, the Deferred
    /// fails with [`CancelledError`]). Twisted's `DeferredList.cancel`.
    pub(crate) fn with_forwarding_canceller(work: Weak<dyn ForwardCancel>) -> Deferred<T> {
        let d = Deferred::new();
        d.core().set_stands_for(work);
        d
    }

    /// What keeps this Deferred's chain alive: its head, or itself.
    pub(crate) fn keepalive(&self) -> Rc<dyn Node> {
        match &self.head {
            Some(head) => head.clone(),
            None => self.core().clone(),
        }
    }

    pub(crate) fn cancel_handle(&self) -> CancelHandle {
        CancelHandle {
            node: self.core().clone(),
            _head: self.head.clone(),
        }
    }

    /// Ends the chain with `f`, which takes the result; a failure it gives
    /// back stays as the chain's result (reported if nobody handles it).
    pub(crate) fn end_with(self, f: impl FnOnce(Result<T, Failure>) -> Option<Failure> + 'static) {
        self.core()
            .add_pair(Box::new(move |outcome| match f(outcome) {
                None => Step::End,
                Some(failure) => Step::Done(Err(failure)),
            }));
    }
}

impl<T: 'static> Resolver<T> {
    /// As [`Deferred::callback`].
    ///
    /// # Panics
    ///
    /// If the Deferred was fired before.
    #[track_caller]
    pub fn callback(&self, value: T) {
        fire_or_panic(&self.core, Ok(value));
    }

    /// As [`Deferred::try_callback`].
    ///
    /// # Errors
    ///
    /// [`AlreadyCalledError`] if it was fired before.
    #[track_caller]
    pub fn try_callback(&self, value: T) -> Result<(), AlreadyCalledError> {
        self.core.fire(Ok(value))
    }

    /// As [`Deferred::errback`].
    ///
    /// # Panics
    ///
    /// If the Deferred was fired before.
    #[track_caller]
    pub fn errback(&self, failure: impl Into<Failure>) {
        fire_or_panic(&self.core, Err(failure.into()));
    }

    /// As [`Deferred::try_errback`].
    ///
    /// # Errors
    ///
    /// [`AlreadyCalledError`] if it was fired before.
    #[track_caller]
    pub fn try_errback(&self, failure: impl Into<Failure>) -> Result<(), AlreadyCalledError> {
        self.core.fire(Err(failure.into()))
    }

    /// Whether the Deferred was fired.
    pub fn called(&self) -> bool {
        self.core.called()
    }

    /// As [`Deferred::pause`].
    pub fn pause(&self) {
        self.core.pause();
    }

    /// As [`Deferred::unpause`].
    ///
    /// # Errors
    ///
    /// [`NotPausedError`] if the Deferred is not paused.
    pub fn unpause(&self) -> Result<(), NotPausedError> {
        self.core.unpause()
    }

    /// The Deferred's identity.
    pub fn id(&self) -> DeferredId {
        DeferredId(self.core.address())
    }
}

impl<T: 'static> Default for Deferred<T> {
    #[track_caller]
    fn default() -> Self {
        Deferred::new()
    }
}

/// A Deferred never pins its value: it is moved out, never polled.
impl<T> Unpin for Deferred<T> {}

impl<T: 'static> Future for Deferred<T> {
    type Output = Result<T, Failure>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Some(outcome) = self.take_ready() {
            return Poll::Ready(outcome);
        }
        match future::poll_deferred(self.core(), cx) {
            Some(outcome) => Poll::Ready(outcome),
            None => Poll::Pending,
        }
    }
}

impl<T: 'static> futures::future::FusedFuture for Deferred<T> {
    fn is_terminated(&self) -> bool {
        match self.core.get() {
            Some(core) => core.is_passed_on(),
            None => {
                let ready = self.ready.take();
                let taken = ready.is_none();
                self.ready.set(ready);
                taken
            }
        }
    }
}

/// A Deferred made failed whose chain was never needed reports its failure
/// here, as its chain would have.
impl<T> Drop for Deferred<T> {
    fn drop(&mut self) {
        if let Some(Err(failure)) = self.ready.get_mut() {
            chain::report_unhandled(failure, None);
        }
    }
}

/// As Twisted's `repr`: `<Deferred at 0x… current result: 42>`,
/// `<Deferred at 0x… waiting on Deferred at 0x…>`, or `<Deferred at 0x…>`
/// while it has nothing.
impl<T: fmt::Debug + 'static> fmt::Debug for Deferred<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.core().describe(f, |value, f| write!(f, "{value:?}"))
    }
}

impl<T: fmt::Debug + 'static> fmt::Debug for Resolver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Resolver for ")?;
        self.core.describe(f, |value, f| write!(f, "{value:?}"))
    }
}

/// `callback` / `errback`: Twisted raises `AlreadyCalledError`, Rust panics
/// with it.
#[track_caller]
fn fire_or_panic<T: 'static>(core: &Rc<Core<T>>, outcome: Outcome<T>) {
    if let Err(err) = core.fire(outcome) {
        panic!("{err}");
    }
}

/// A Deferred that already has `value`: callbacks added run at once.
#[track_caller]
pub fn succeed<T: 'static>(value: T) -> Deferred<T> {
    Deferred::from_ready(Ok(value))
}

/// A Deferred that already failed with `failure`.
#[track_caller]
pub fn fail<T: 'static>(failure: impl Into<Failure>) -> Deferred<T> {
    Deferred::from_ready(Err(failure.into()))
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
#[track_caller]
pub fn maybe_deferred<T: 'static, R: IntoStep<T>>(f: impl FnOnce() -> R) -> Deferred<T> {
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        .map(step)
        .unwrap_or_else(|panic| Step::Done(Err(Failure::from_panic(&*panic))));
    match outcome {
        Step::Done(outcome) => Deferred::from_ready(outcome),
        Step::Wait(d) => d,
        Step::End => unreachable!("only the lists end a chain"),
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

/// Turns Twisted's debug mode on or off (`setDebugging`), for every thread:
/// Deferreds created while it is on record where they were created and
/// first fired (source location and backtrace), and
/// [`AlreadyCalledError`] and the `Unhandled error in Deferred` report
/// print both (` C:` creator, ` I:` first invoker). Off by default; when
/// off it costs one relaxed atomic load per Deferred.
///
/// # Examples
///
/// ```
/// use twill::defer::{set_debugging, Deferred};
///
/// set_debugging(true);
/// let d = Deferred::new();
/// d.callback(1);
/// let err = d.try_callback(2).unwrap_err();
/// set_debugging(false);
/// let text = err.to_string();
/// assert!(text.contains(" C: created at") && text.contains(" I: first fired at"));
/// ```
pub fn set_debugging(on: bool) {
    chain::set_debugging(on);
}

/// Whether debug mode is on ([`set_debugging`]).
pub fn get_debugging() -> bool {
    chain::debugging()
}
