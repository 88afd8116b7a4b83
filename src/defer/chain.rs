//! The typed callback chain behind every `Deferred<T>`, and Twisted's
//! iterative algorithm for running it.
//!
//! A [`Core<T>`] holds the current result (`Result<T, Failure>`, stored
//! inline) and a queue of links. Running it pops links until one blocks.
//! Three links hand the result to another core instead of to a callback:
//!
//! - `Then`: [`then`](super::Deferred::then) changed the value's type, so
//!   the chain goes on in a new core of the new type (a *segment*);
//! - `Resume`: a callback of another core returned this Deferred, and that
//!   core waits for the result here;
//! - `Fire`: [`chain_deferred`](super::Deferred::chain_deferred).
//!
//! Each of them ends this core's chain: the handle that could add more
//! links was consumed on the way (returned from the callback, or taken by
//! `then` / `chain_deferred`), so no callback is ever added behind a result
//! that already left. The core handed to is not run recursively: it is
//! returned to [`run_from`], which keeps an explicit stack, so 100,000
//! nested Deferreds use one stack frame, as in Twisted.
//!
//! Waiting on an inner Deferred is its own state (`Chained::WaitingOn`),
//! apart from the user's pause count, so an `unpause` cannot release a
//! waiting chain early (Twisted issue #12726).
//!
//! Ownership, so that nothing pending forms a cycle of strong references:
//! an inner core holds the core waiting on it (its `Resume` link) and a
//! core holds the segment after it (its `Then` link) strongly; the way back
//! (`waiting_on`, a segment's upstream) is weak. Whoever can fire a core
//! (a [`Resolver`](super::Resolver), a timer, a driven future) keeps
//! everything after it alive; a core nobody can fire any more is freed. One
//! exception: a core waits on an inner Deferred with a user's canceller
//! strongly, since cancelling may be the only way that Deferred ever fires
//! (so the two are freed only once it fires or is cancelled).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt;
use std::mem;
use std::panic::{catch_unwind, AssertUnwindSafe, Location};
use std::rc::{Rc, Weak};
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Waker;

use super::failure::{
    AlreadyCalledError, CancelledError, ChainedToItselfError, Failure, PassedOnError,
};
use super::Deferred;

pub(crate) type Outcome<T> = Result<T, Failure>;

/// What a callback produced.
pub(crate) enum Step<T: 'static> {
    /// A value or a failure: the chain goes on with it.
    Done(Outcome<T>),
    /// Another Deferred: the chain waits for its result.
    Wait(Deferred<T>),
    /// The result was taken (by a list, a race): the chain ends here.
    End,
}

pub(crate) type Pair<T> = Box<dyn FnOnce(Outcome<T>) -> Step<T>>;

/// A `then` link: the callback and the segment it fires.
pub(crate) trait ThenLink<T: 'static> {
    /// Runs the callback and hands its outcome to the next segment, which
    /// is returned to be run; or says why the segment refused it.
    fn run(self: Box<Self>, outcome: Outcome<T>) -> Result<Rc<dyn Node>, AlreadyCalledError>;
}

struct Then<U: 'static, F> {
    f: F,
    next: Rc<Core<U>>,
}

impl<T: 'static, U: 'static, F> ThenLink<T> for Then<U, F>
where
    F: FnOnce(Outcome<T>) -> Step<U>,
{
    fn run(self: Box<Self>, outcome: Outcome<T>) -> Result<Rc<dyn Node>, AlreadyCalledError> {
        let Then { f, next } = *self;
        let step = catch_unwind(AssertUnwindSafe(move || f(outcome)))
            .unwrap_or_else(|panic| Step::Done(Err(Failure::from_panic(&*panic))));
        next.deliver(step)?;
        Ok(next)
    }
}

enum Link<T: 'static> {
    /// A callback/errback pair, as one function that looks at the outcome.
    Pair(Pair<T>),
    /// The chain goes on in a segment of another type.
    Then(Box<dyn ThenLink<T>>),
    /// A core waits on this one: hand it the result here.
    Resume(Rc<Core<T>>),
    /// `chain_deferred`: fire that core with the result here.
    Fire(Rc<Core<T>>),
}

/// The links, first in first out, with the first one stored inline: most
/// Deferreds get one or two callbacks, and this saves the queue's
/// allocation for them.
struct Links<T: 'static> {
    first: Option<Link<T>>,
    rest: VecDeque<Link<T>>,
}

impl<T: 'static> Links<T> {
    const EMPTY: Links<T> = Links {
        first: None,
        rest: VecDeque::new(),
    };

    fn push_back(&mut self, link: Link<T>) {
        if self.first.is_none() && self.rest.is_empty() {
            self.first = Some(link);
        } else {
            self.rest.push_back(link);
        }
    }

    fn pop_front(&mut self) -> Option<Link<T>> {
        self.first.take().or_else(|| self.rest.pop_front())
    }

    fn is_empty(&self) -> bool {
        self.first.is_none() && self.rest.is_empty()
    }
}

pub(crate) enum Slot<T: 'static> {
    /// Not fired yet, or a callback is running with the result.
    Empty,
    Ready(Outcome<T>),
    /// The result left: to another core, or to an `await`.
    PassedOn,
}

/// What this core is chained to, for cancelling and for `Debug`.
enum Chained {
    None,
    /// A callback returned that Deferred; this core waits for its result.
    /// Held weakly, so that a chain waiting on a Deferred nobody can fire
    /// is freed; but held strongly too (`Extra::keep`) when cancelling it
    /// would run a user's canceller, which may be the only thing that can
    /// fire it.
    WaitingOn {
        inner: Weak<dyn Node>,
    },
    /// That core will fire this one: `then`'s upstream (`cancel_up`: a
    /// cancel here is the upstream's), or a `chain_deferred` source.
    FiredBy {
        from: Weak<dyn Node>,
        cancel_up: bool,
    },
    /// The work this Deferred stands for (what a driven future awaits, a
    /// list's inputs) will fire it: a cancel is passed on to it, which
    /// fires the Deferred in its own time. If the work is gone, the
    /// Deferred fails with `CancelledError`.
    StandsFor(Weak<dyn ForwardCancel>),
}

/// Who waits for the result at the end of the chain.
pub(crate) enum Waiter {
    None,
    Waker(Waker),
    /// A future driven by `from_future`, resumed at once (Twisted resumes a
    /// coroutine inside the `callback` that fires what it awaits).
    Driver(Weak<dyn Resume>),
}

impl Waiter {
    fn notify(self) {
        match self {
            Waiter::None => {}
            Waiter::Waker(waker) => waker.wake(),
            Waiter::Driver(driver) => {
                if let Some(driver) = driver.upgrade() {
                    driver.resume();
                }
            }
        }
    }
}

/// A driven future, resumed when what it awaits has a result.
pub(crate) trait Resume {
    fn resume(self: Rc<Self>);
}

/// A user's canceller: Twisted's, given the Deferred to fire.
pub(crate) type UserCanceller<T> = Box<dyn FnOnce(&super::Resolver<T>)>;

pub(crate) enum Canceller<T: 'static> {
    None,
    Once(UserCanceller<T>),
}

/// Work that a cancel is passed on to: see [`Chained::StandsFor`].
pub(crate) trait ForwardCancel {
    fn forward_cancel(self: Rc<Self>);
}

static DEBUGGING: AtomicBool = AtomicBool::new(false);

/// Turns debug mode on or off: see [`set_debugging`](super::set_debugging).
pub(crate) fn set_debugging(on: bool) {
    DEBUGGING.store(on, Ordering::Relaxed);
}

pub(crate) fn debugging() -> bool {
    DEBUGGING.load(Ordering::Relaxed)
}

/// Where a Deferred was created and first fired, kept in debug mode.
pub(crate) struct DebugInfo {
    created: &'static Location<'static>,
    created_trace: std::backtrace::Backtrace,
    fired: Option<(&'static Location<'static>, std::backtrace::Backtrace)>,
}

impl fmt::Display for DebugInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, " C: created at {}\n{}", self.created, self.created_trace)?;
        if let Some((at, trace)) = &self.fired {
            write!(f, "\n I: first fired at {at}\n{trace}")?;
        }
        Ok(())
    }
}

pub(crate) struct Core<T: 'static> {
    st: RefCell<State<T>>,
}

pub(crate) struct State<T: 'static> {
    pub(crate) slot: Slot<T>,
    links: Links<T>,
    called: bool,
    running: bool,
    /// The user's `pause` count.
    paused: u32,
    /// A canceller-less `cancel` swallows the one late firing to come.
    swallow_next_fire: bool,
    /// A test looked at the failure (`failure_result_of`): not unhandled.
    failure_seen: bool,
    chained: Chained,
    waiter: Waiter,
    /// What few Deferreds have, out of line to keep the common one small.
    extra: Option<Box<Extra<T>>>,
}

struct Extra<T: 'static> {
    canceller: Canceller<T>,
    debug: Option<DebugInfo>,
    /// The inner Deferred waited on, when only this chain keeps it.
    keep: Option<Rc<dyn Node>>,
}

thread_local! {
    static UNHANDLED: Cell<u64> = const { Cell::new(0) };
}

/// How many Deferreds on this thread were dropped holding a failure that no
/// errback handled (each was logged as `Unhandled error in Deferred`).
pub(crate) fn unhandled_count() -> u64 {
    UNHANDLED.with(Cell::get)
}

/// Logs and counts a failure nobody handled.
pub(crate) fn report_unhandled(failure: &Failure, debug: Option<&DebugInfo>) {
    UNHANDLED.with(|count| count.set(count.get() + 1));
    match debug {
        Some(debug) => log::error!("Unhandled error in Deferred: {failure}\n(debug:\n{debug})"),
        None => log::error!("Unhandled error in Deferred: {failure}"),
    }
}

/// How a run of a chain's links ended.
enum Ran {
    /// The result went to that core: run it next.
    HandedOn(Rc<dyn Node>),
    /// Every link ran: tell whoever waits for the result.
    Finished(Waiter),
    /// The chain waits, or ended.
    Stopped,
}

/// A core seen without its type: what running, cancelling and dropping a
/// chain of several types needs.
pub(crate) trait Node {
    /// Runs links until the chain blocks or hands its result to another
    /// core, which is returned to run next.
    fn step(self: Rc<Self>) -> Option<Rc<dyn Node>>;
    /// One step of `cancel`: what to cancel instead of this core, if
    /// anything.
    fn cancel_step(self: Rc<Self>) -> Option<Rc<dyn Node>>;
    /// Whether cancelling it now would run a user's canceller (its own, or
    /// its head's for a segment that has not fired).
    fn cancel_runs_user_canceller(&self) -> bool;
    /// Identity, for `Debug` and `chained_to`.
    fn address(&self) -> usize;
}

/// Runs `start`, then the core it hands its result to, and so on: a loop,
/// not recursion. A core that hands its result on has nothing left to run
/// (no link can follow a hand-over), so no stack is needed.
pub(crate) fn run_from(start: Rc<dyn Node>) {
    let mut current = start;
    while let Some(next) = current.step() {
        current = next;
    }
}

/// Cancels `start`, or what it stands for: the Deferred it waits on, or
/// the unfired upstream of a segment.
pub(crate) fn cancel_from(start: Rc<dyn Node>) {
    let mut current = start;
    while let Some(next) = current.cancel_step() {
        current = next;
    }
}

impl<T: 'static> Core<T> {
    #[track_caller]
    pub(crate) fn new() -> Rc<Core<T>> {
        Rc::new(Core {
            st: RefCell::new(State {
                slot: Slot::Empty,
                links: Links::EMPTY,
                called: false,
                running: false,
                paused: 0,
                swallow_next_fire: false,
                failure_seen: false,
                chained: Chained::None,
                waiter: Waiter::None,
                extra: debugging().then(|| {
                    Box::new(Extra {
                        canceller: Canceller::None,
                        keep: None,
                        debug: Some(DebugInfo {
                            created: Location::caller(),
                            created_trace: std::backtrace::Backtrace::force_capture(),
                            fired: None,
                        }),
                    })
                }),
            }),
        })
    }

    /// A core whose result an await already took.
    pub(crate) fn passed_on() -> Rc<Core<T>> {
        let core = Core::new();
        {
            let mut st = core.st.borrow_mut();
            st.called = true;
            st.slot = Slot::PassedOn;
        }
        core
    }

    /// A core that already holds `outcome` (`succeed`, `fail`): nothing to
    /// run yet.
    #[track_caller]
    pub(crate) fn fired(outcome: Outcome<T>) -> Rc<Core<T>> {
        let core = Core::new();
        {
            let mut st = core.st.borrow_mut();
            st.called = true;
            st.slot = Slot::Ready(outcome);
            if let Some(debug) = st.debug_mut() {
                debug.fired = Some((
                    Location::caller(),
                    std::backtrace::Backtrace::force_capture(),
                ));
            }
        }
        core
    }

    pub(crate) fn set_canceller(&self, canceller: Canceller<T>) {
        self.st.borrow_mut().extra().canceller = canceller;
    }

    /// A Deferred for work that fires it, and takes its cancel.
    pub(crate) fn set_stands_for(&self, work: Weak<dyn ForwardCancel>) {
        self.st.borrow_mut().chained = Chained::StandsFor(work);
    }

    /// A segment, fired by `upstream` (`then`) or by a `chain_deferred`.
    pub(crate) fn set_fired_by(&self, from: Weak<dyn Node>, cancel_up: bool) {
        self.st.borrow_mut().chained = Chained::FiredBy { from, cancel_up };
    }

    pub(crate) fn called(&self) -> bool {
        self.st.borrow().called
    }

    pub(crate) fn is_paused(&self) -> bool {
        self.st.borrow().paused > 0
    }

    pub(crate) fn chained_to(&self) -> Option<usize> {
        match &self.st.borrow().chained {
            Chained::None => None,
            Chained::StandsFor(_) => None,
            Chained::WaitingOn { inner: to, .. } | Chained::FiredBy { from: to, .. } => {
                Some(to.as_ptr() as *const () as usize)
            }
        }
    }

    /// Fires the chain (`callback` / `errback`).
    #[track_caller]
    pub(crate) fn fire(self: &Rc<Self>, outcome: Outcome<T>) -> Result<(), AlreadyCalledError> {
        self.fire_at(outcome, Location::caller())
    }

    fn fire_at(
        self: &Rc<Self>,
        outcome: Outcome<T>,
        at: &'static Location<'static>,
    ) -> Result<(), AlreadyCalledError> {
        let canceller = {
            let mut st = self.st.borrow_mut();
            let Some(canceller) = st.claim()? else {
                return Ok(());
            };
            st.slot = Slot::Ready(outcome);
            if let Some(debug) = st.debug_mut() {
                debug.fired = Some((at, std::backtrace::Backtrace::force_capture()));
            }
            canceller
        };
        // Dropped with nothing borrowed: its captures' `Drop` may be user
        // code touching this Deferred.
        drop(canceller);
        self.run();
        Ok(())
    }

    /// Takes what a `then` callback or a `chain_deferred` source hands
    /// over, without running it: the caller's run loop does.
    fn deliver(self: &Rc<Self>, step: Step<T>) -> Result<(), AlreadyCalledError> {
        let mut st = self.st.borrow_mut();
        if let Some(canceller) = st.claim()? {
            self.settle(&mut st, step);
            drop(st);
            drop(canceller);
        }
        Ok(())
    }

    /// Runs the chain, and every chain it hands its result to.
    pub(crate) fn run(self: &Rc<Self>) {
        if let Some(next) = self.step_typed() {
            run_from(next);
        }
    }

    pub(crate) fn add_pair(self: &Rc<Self>, pair: Pair<T>) {
        self.add_link(Link::Pair(pair));
    }

    pub(crate) fn add_then<U: 'static>(
        self: &Rc<Self>,
        f: impl FnOnce(Outcome<T>) -> Step<U> + 'static,
    ) -> Rc<Core<U>> {
        let next = Core::<U>::new();
        next.set_fired_by(Rc::downgrade(self) as Weak<dyn Node>, true);
        self.add_link(Link::Then(Box::new(Then {
            f,
            next: next.clone(),
        })));
        next
    }

    /// `chain_deferred`: whatever reaches this point fires `target`.
    pub(crate) fn add_fire(self: &Rc<Self>, target: Rc<Core<T>>) {
        target.set_fired_by(Rc::downgrade(self) as Weak<dyn Node>, false);
        self.add_link(Link::Fire(target));
    }

    fn add_link(self: &Rc<Self>, link: Link<T>) {
        {
            let mut st = self.st.borrow_mut();
            if matches!(st.slot, Slot::PassedOn) {
                // An await took the result: what comes after sees that.
                st.slot = Slot::Ready(Err(Failure::from(PassedOnError)));
            }
            st.links.push_back(link);
            if !st.called || st.running {
                return;
            }
        }
        self.run();
    }

    pub(crate) fn pause(&self) {
        self.st.borrow_mut().paused += 1;
    }

    pub(crate) fn unpause(self: &Rc<Self>) -> Result<(), super::NotPausedError> {
        {
            let mut st = self.st.borrow_mut();
            if st.paused == 0 {
                return Err(super::NotPausedError);
            }
            st.paused -= 1;
            if st.paused > 0 || !st.called {
                return Ok(());
            }
        }
        self.run();
        Ok(())
    }

    /// The result, if the chain has run to its end, for `f` to take.
    pub(crate) fn with_result<R>(&self, f: impl FnOnce(&mut State<T>) -> R) -> Option<R> {
        let mut st = self.st.borrow_mut();
        if st.is_idle() && matches!(st.slot, Slot::Ready(_)) {
            Some(f(&mut st))
        } else {
            None
        }
    }

    /// Looks at the result, if the chain has run to its end, under a shared
    /// borrow; marks a failure seen.
    pub(crate) fn peek<R>(&self, f: impl FnOnce(Result<&T, &Failure>) -> R) -> Option<R> {
        let (seen, failed) = {
            let st = self.st.borrow();
            if !st.is_idle() {
                return None;
            }
            match &st.slot {
                Slot::Ready(Ok(value)) => (f(Ok(value)), false),
                Slot::Ready(Err(failure)) => (f(Err(failure)), true),
                _ => return None,
            }
        };
        if failed {
            self.st.borrow_mut().failure_seen = true;
        }
        Some(seen)
    }

    /// Whether the result has left for an `await`.
    pub(crate) fn is_passed_on(&self) -> bool {
        matches!(self.st.borrow().slot, Slot::PassedOn)
    }

    /// Takes the result for an `await`, or registers who waits for it.
    pub(crate) fn poll_take(&self, waiter: impl FnOnce() -> Waiter) -> Option<Outcome<T>> {
        let mut st = self.st.borrow_mut();
        if st.is_idle() {
            match mem::replace(&mut st.slot, Slot::PassedOn) {
                Slot::Ready(outcome) => return Some(outcome),
                Slot::PassedOn => return Some(Err(Failure::from(PassedOnError))),
                Slot::Empty => st.slot = Slot::Empty,
            }
        }
        st.waiter = waiter();
        None
    }

    /// The current result's shape, for `Debug`.
    pub(crate) fn describe(
        &self,
        f: &mut fmt::Formatter<'_>,
        show: impl FnOnce(&T, &mut fmt::Formatter<'_>) -> fmt::Result,
    ) -> fmt::Result {
        let st = self.st.borrow();
        write!(f, "<Deferred at {:#x}", self.address())?;
        if let Chained::WaitingOn { inner, .. } = &st.chained {
            write!(
                f,
                " waiting on Deferred at {:#x}",
                inner.as_ptr() as *const () as usize
            )?;
        } else {
            match &st.slot {
                Slot::Ready(Ok(value)) => {
                    f.write_str(" current result: ")?;
                    show(value, f)?;
                }
                Slot::Ready(Err(failure)) => write!(f, " current result: {failure:?}")?,
                Slot::PassedOn => f.write_str(" current result: passed on")?,
                Slot::Empty => {}
            }
        }
        if st.paused > 0 {
            f.write_str(" (paused)")?;
        }
        f.write_str(">")
    }

    /// Steps a chain of this type; see [`Node::step`].
    fn step_typed(self: &Rc<Self>) -> Option<Rc<dyn Node>> {
        {
            let mut st = self.st.borrow_mut();
            if st.running || st.paused > 0 || st.is_waiting() || !matches!(st.slot, Slot::Ready(_))
            {
                return None;
            }
            st.running = true;
        }
        loop {
            // One unwind guard for the whole run rather than one per
            // callback: a panicking callback leaves the chain running, with
            // no result, and its failure goes on down the error path.
            match catch_unwind(AssertUnwindSafe(|| self.run_links())) {
                Ok(Ran::HandedOn(next)) => return Some(next),
                Ok(Ran::Finished(waiter)) => {
                    waiter.notify();
                    return None;
                }
                Ok(Ran::Stopped) => return None,
                Err(panic) => {
                    self.st.borrow_mut().slot = Slot::Ready(Err(Failure::from_panic(&*panic)))
                }
            }
        }
    }

    /// The loop of [`step_typed`](Self::step_typed), with the chain marked
    /// running and a result in the slot.
    fn run_links(self: &Rc<Self>) -> Ran {
        let mut st = self.st.borrow_mut();
        loop {
            let Some(link) = st.links.pop_front() else {
                st.running = false;
                return Ran::Finished(mem::replace(&mut st.waiter, Waiter::None));
            };
            // The result changes: a failure seen before is not this one.
            st.failure_seen = false;
            let outcome = match mem::replace(&mut st.slot, Slot::Empty) {
                Slot::Ready(outcome) => outcome,
                // A step ended the chain: nothing can have been added after.
                other => {
                    st.slot = other;
                    st.running = false;
                    return Ran::Stopped;
                }
            };
            match link {
                Link::Pair(pair) => {
                    drop(st);
                    let step = pair(outcome);
                    st = self.st.borrow_mut();
                    match step {
                        // The common case, kept in this loop.
                        Step::Done(outcome) => st.slot = Slot::Ready(outcome),
                        step => {
                            if self.settle(&mut st, step) {
                                st.running = false;
                                return Ran::Stopped;
                            }
                        }
                    }
                }
                Link::Then(then) => {
                    st.slot = Slot::PassedOn;
                    drop(st);
                    let handed = then.run(outcome);
                    st = self.st.borrow_mut();
                    match handed {
                        Ok(next) => {
                            st.running = false;
                            return Ran::HandedOn(next);
                        }
                        // The segment was fired by someone else: keep the
                        // error, reported if nobody handles it.
                        Err(refused) => st.slot = Slot::Ready(Err(Failure::from(refused))),
                    }
                }
                Link::Resume(waiting) => {
                    st.slot = Slot::PassedOn;
                    st.running = false;
                    drop(st);
                    waiting.resume_with(outcome);
                    return Ran::HandedOn(waiting);
                }
                Link::Fire(target) => match target.deliver(Step::Done(outcome)) {
                    Ok(()) => {
                        st.slot = Slot::PassedOn;
                        st.running = false;
                        return Ran::HandedOn(target);
                    }
                    Err(refused) => st.slot = Slot::Ready(Err(Failure::from(refused))),
                },
            }
        }
    }

    /// Puts a callback's step in place: a value or failure goes on; a
    /// Deferred with a result that is free to take is taken over (Twisted's
    /// "steal"); any other Deferred is waited on. Returns whether the chain
    /// now waits.
    fn settle(self: &Rc<Self>, st: &mut State<T>, step: Step<T>) -> bool {
        let inner = match step {
            Step::Done(outcome) => {
                st.slot = Slot::Ready(outcome);
                return false;
            }
            Step::End => {
                st.slot = Slot::PassedOn;
                return false;
            }
            Step::Wait(inner) => inner,
        };
        if let Some(outcome) = inner.take_ready() {
            // Made fired and never looked at: take its result as it is.
            st.slot = Slot::Ready(outcome);
            return false;
        }
        if Rc::ptr_eq(inner.core(), self) {
            st.slot = Slot::Ready(Err(Failure::from(ChainedToItselfError)));
            return false;
        }
        let mut inner_st = inner.core().st.borrow_mut();
        if inner_st.is_idle() {
            match &inner_st.slot {
                Slot::Ready(_) => {
                    st.slot = mem::replace(&mut inner_st.slot, Slot::PassedOn);
                    return false;
                }
                // An await took its result: nothing will come.
                Slot::PassedOn => {
                    st.slot = Slot::Ready(Err(Failure::from(PassedOnError)));
                    return false;
                }
                Slot::Empty => {}
            }
        }
        inner_st.links.push_back(Link::Resume(self.clone()));
        drop(inner_st);
        if inner.core().cancel_runs_user_canceller() {
            st.extra().keep = Some(inner.keepalive());
        }
        st.chained = Chained::WaitingOn {
            inner: Rc::downgrade(inner.core()) as Weak<dyn Node>,
        };
        true
    }

    /// The inner core this one waited on hands over its result.
    fn resume_with(&self, outcome: Outcome<T>) {
        let mut st = self.st.borrow_mut();
        st.chained = Chained::None;
        let kept = st.extra.as_mut().and_then(|extra| extra.keep.take());
        st.slot = Slot::Ready(outcome);
        drop(st);
        drop(kept);
    }

    fn cancel_head(self: &Rc<Self>) {
        let canceller = {
            let mut st = self.st.borrow_mut();
            match st.take_canceller() {
                Canceller::None => {
                    st.swallow_next_fire = true;
                    Canceller::None
                }
                once => once,
            }
        };
        match canceller {
            Canceller::Once(canceller) => {
                // A panic here goes on out of `cancel`, the Deferred unfired,
                // as Twisted's `cancel` raises what its canceller raised.
                canceller(&super::Resolver { core: self.clone() });
            }
            Canceller::None => {}
        }
        if !self.called() {
            let _ = self.fire(Err(Failure::from(CancelledError)));
        }
    }
}

impl<T: 'static> State<T> {
    /// Marks the Deferred fired. Gives the canceller, spent now, for the
    /// caller to drop once nothing is borrowed; `None` if this firing is
    /// the one a canceller-less cancel swallows; or says it was fired
    /// before.
    fn claim(&mut self) -> Result<Option<Canceller<T>>, AlreadyCalledError> {
        if self.called {
            if mem::take(&mut self.swallow_next_fire) {
                return Ok(None);
            }
            return Err(AlreadyCalledError {
                debug: self.debug().map(|debug| debug.to_string()),
            });
        }
        self.called = true;
        self.chained = Chained::None;
        Ok(Some(self.take_canceller()))
    }

    fn extra(&mut self) -> &mut Extra<T> {
        self.extra.get_or_insert_with(|| {
            Box::new(Extra {
                canceller: Canceller::None,
                debug: None,
                keep: None,
            })
        })
    }

    fn canceller(&self) -> Option<&Canceller<T>> {
        self.extra.as_ref().map(|extra| &extra.canceller)
    }

    fn take_canceller(&mut self) -> Canceller<T> {
        match &mut self.extra {
            Some(extra) => mem::replace(&mut extra.canceller, Canceller::None),
            None => Canceller::None,
        }
    }

    fn debug(&self) -> Option<&DebugInfo> {
        self.extra.as_ref().and_then(|extra| extra.debug.as_ref())
    }

    fn debug_mut(&mut self) -> Option<&mut DebugInfo> {
        self.extra.as_mut().and_then(|extra| extra.debug.as_mut())
    }

    fn is_waiting(&self) -> bool {
        matches!(self.chained, Chained::WaitingOn { .. })
    }

    /// Not running, not paused, not waiting, nothing left to run.
    fn is_idle(&self) -> bool {
        !self.running && self.paused == 0 && !self.is_waiting() && self.links.is_empty()
    }
}

impl<T: 'static> Node for Core<T> {
    fn step(self: Rc<Self>) -> Option<Rc<dyn Node>> {
        self.step_typed()
    }

    fn cancel_step(self: Rc<Self>) -> Option<Rc<dyn Node>> {
        enum Target {
            Inner(Weak<dyn Node>),
            Upstream(Weak<dyn Node>),
            Work(Weak<dyn ForwardCancel>),
            Here,
            Nothing,
        }
        let target = {
            let st = self.st.borrow();
            match &st.chained {
                Chained::WaitingOn { inner, .. } => Target::Inner(inner.clone()),
                _ if st.called => Target::Nothing,
                Chained::FiredBy {
                    from,
                    cancel_up: true,
                } => Target::Upstream(from.clone()),
                Chained::StandsFor(work) => Target::Work(work.clone()),
                _ => Target::Here,
            }
        };
        match target {
            Target::Inner(inner) => inner.upgrade().or_else(|| {
                // The inner Deferred is gone, so it can never fire: this
                // core gets what cancelling it would have given.
                self.resume_with(Err(Failure::from(CancelledError)));
                self.run();
                None
            }),
            Target::Upstream(upstream) => upstream.upgrade().or_else(|| {
                self.cancel_head();
                None
            }),
            Target::Work(work) => {
                match work.upgrade() {
                    Some(work) => work.forward_cancel(),
                    None => self.cancel_head(),
                }
                None
            }
            Target::Here => {
                self.cancel_head();
                None
            }
            Target::Nothing => None,
        }
    }

    fn cancel_runs_user_canceller(&self) -> bool {
        let st = self.st.borrow();
        match &st.chained {
            _ if st.called => false,
            Chained::FiredBy {
                from,
                cancel_up: true,
            } => from
                .upgrade()
                .is_some_and(|upstream| upstream.cancel_runs_user_canceller()),
            _ => matches!(st.canceller(), Some(Canceller::Once(_))),
        }
    }

    fn address(&self) -> usize {
        self as *const Self as *const () as usize
    }
}

thread_local! {
    /// Whether a core is being dropped on this thread right now.
    static DROPPING: Cell<bool> = const { Cell::new(false) };
    /// What cores dropped meanwhile held: dropped by the outermost drop.
    static LATER: RefCell<Vec<Box<dyn std::any::Any>>> = const { RefCell::new(Vec::new()) };
}

/// Deep chains (a callback holding the next Deferred, a core waiting on the
/// next) would drop recursively, one stack frame per link. So a core
/// dropped while another is being dropped leaves its links, canceller and
/// what it is chained to on a list, which the outermost drop empties in a
/// loop: 100,000 nested Deferreds drop in constant stack.
impl<T: 'static> Drop for Core<T> {
    fn drop(&mut self) {
        let st = self.st.get_mut();
        if let Slot::Ready(Err(failure)) = &st.slot {
            if !st.failure_seen {
                report_unhandled(failure, st.debug());
            }
        }
        if st.links.is_empty() && st.extra.is_none() && matches!(st.chained, Chained::None) {
            return;
        }
        let held = (
            mem::replace(&mut st.links, Links::EMPTY),
            st.extra.take(),
            mem::replace(&mut st.chained, Chained::None),
        );
        if DROPPING.with(Cell::get) {
            // While the thread ends there is no list: what is held is then
            // dropped with the refused closure.
            let held: Box<dyn std::any::Any> = Box::new(held);
            let _ = LATER.try_with(move |later| later.borrow_mut().push(held));
            return;
        }
        struct Outermost;
        impl Drop for Outermost {
            fn drop(&mut self) {
                DROPPING.with(|dropping| dropping.set(false));
            }
        }
        DROPPING.with(|dropping| dropping.set(true));
        let _outermost = Outermost;
        drop(held);
        while let Ok(batch) = LATER.try_with(|later| mem::take(&mut *later.borrow_mut())) {
            if batch.is_empty() {
                break;
            }
            drop(batch);
        }
    }
}
