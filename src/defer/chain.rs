//! The untyped callback chain behind every `Deferred<T>`, and Twisted's
//! iterative algorithm for running it.
//!
//! A chain holds its current result as `Result<Box<dyn Any>, Failure>` and a
//! queue of links. Running it pops links until one blocks. The subtle part is
//! a callback that returns another, unfired Deferred: the outer chain does
//! not recurse into the inner one. It records what it waits on and appends a
//! `Resume` link to the *end* of the inner chain; when the inner chain gets
//! there, it hands its result over and the outer chain is pushed on an
//! explicit stack (`run`), so 100,000 nested Deferreds use one stack frame.
//! `chain_deferred` works the same way through a `Fire` link.
//!
//! Waiting on an inner Deferred is its own state (`waiting_on`), apart from
//! the user's pause count, so an `unpause` cannot release a waiting chain
//! early (Twisted issue #12726).

use std::any::{Any, TypeId};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::mem;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::{Rc, Weak};
use std::task::Waker;

use super::failure::{
    AlreadyCalledError, CancelledError, ChainedToItselfError, Failure, NotPausedError,
};

pub(crate) type Value = Box<dyn Any>;
pub(crate) type Outcome = Result<Value, Failure>;

/// What a callback produced.
pub(crate) enum Step {
    /// A value or a failure: the chain goes on with it.
    Done(Outcome),
    /// Another Deferred: the chain waits for its result.
    Wait(Rc<Chain>),
}

pub(crate) type PairFn = Box<dyn FnOnce(Outcome) -> Step>;
pub(crate) type Canceller = Box<dyn FnOnce(&Rc<Chain>)>;

enum Link {
    /// A callback/errback pair, as one function that looks at the outcome.
    Pair(PairFn),
    /// A chain waits on this one: hand it the result here.
    Resume(Weak<Chain>),
    /// `chain_deferred`: fire that chain with the result here.
    Fire(Rc<Chain>),
}

/// The links, with the first one stored inline: most Deferreds get one or
/// two callbacks, and this saves the queue's allocation for them.
#[derive(Default)]
struct Links {
    first: Option<Link>,
    rest: VecDeque<Link>,
}

impl Links {
    fn push_back(&mut self, link: Link) {
        if self.first.is_none() && self.rest.is_empty() {
            self.first = Some(link);
        } else {
            self.rest.push_back(link);
        }
    }

    fn pop_front(&mut self) -> Option<Link> {
        self.first.take().or_else(|| self.rest.pop_front())
    }

    fn is_empty(&self) -> bool {
        self.first.is_none() && self.rest.is_empty()
    }

    fn into_iter(self) -> impl Iterator<Item = Link> {
        self.first.into_iter().chain(self.rest)
    }
}

enum Slot {
    /// Not fired yet, or a callback is running with the result.
    Empty,
    Ready(Outcome),
    /// Handed to a waiting chain or an `await`: later callbacks never run.
    Consumed,
}

pub(crate) struct Chain {
    st: RefCell<State>,
}

struct State {
    called: bool,
    slot: Slot,
    links: Links,
    /// The user's `pause` count.
    paused: u32,
    /// The Deferred a callback returned, until it hands its result back.
    waiting_on: Option<Rc<Chain>>,
    running: bool,
    canceller: Option<Canceller>,
    /// A canceller-less `cancel` swallows the one late firing to come.
    swallow_next_fire: bool,
    /// Futures awaiting the result (several clones may be awaited; the
    /// first to poll once it is ready takes it).
    wakers: Vec<Waker>,
    /// The type `callback` takes, and the type the last link produces.
    fire_type: (TypeId, &'static str),
    tail_type: (TypeId, &'static str),
}

thread_local! {
    static UNHANDLED: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// How many Deferreds on this thread were dropped holding a failure that no
/// errback handled (each was logged as `Unhandled error in Deferred`).
pub(crate) fn unhandled_count() -> u64 {
    UNHANDLED.with(|count| count.get())
}

enum Next {
    /// This chain can go no further now.
    Pop,
    /// Run that chain next, then come back.
    Push(Rc<Chain>),
}

impl Chain {
    pub(crate) fn new<T: 'static>() -> Rc<Chain> {
        let ty = (TypeId::of::<T>(), std::any::type_name::<T>());
        Rc::new(Chain {
            st: RefCell::new(State {
                called: false,
                slot: Slot::Empty,
                links: Links::default(),
                paused: 0,
                waiting_on: None,
                running: false,
                canceller: None,
                swallow_next_fire: false,
                wakers: Vec::new(),
                fire_type: ty,
                tail_type: ty,
            }),
        })
    }

    pub(crate) fn set_canceller(&self, canceller: Canceller) {
        self.st.borrow_mut().canceller = Some(canceller);
    }

    pub(crate) fn check_fire_type<T: 'static>(&self) {
        let (id, name) = self.st.borrow().fire_type;
        assert!(
            id == TypeId::of::<T>(),
            "this Deferred is fired with {name}, not {}",
            std::any::type_name::<T>()
        );
    }

    pub(crate) fn check_tail_type<T: 'static>(&self) {
        let (id, name) = self.st.borrow().tail_type;
        assert!(
            id == TypeId::of::<T>(),
            "this Deferred's chain now carries {name}, not {}: add callbacks through the handle `then` returned",
            std::any::type_name::<T>()
        );
    }

    pub(crate) fn tail_type(&self) -> TypeId {
        self.st.borrow().tail_type.0
    }

    pub(crate) fn set_tail_type<T: 'static>(&self) {
        self.st.borrow_mut().tail_type = (TypeId::of::<T>(), std::any::type_name::<T>());
    }

    pub(crate) fn called(&self) -> bool {
        self.st.borrow().called
    }

    pub(crate) fn is_paused(&self) -> bool {
        self.st.borrow().paused > 0
    }

    pub(crate) fn is_waiting(&self) -> bool {
        self.st.borrow().waiting_on.is_some()
    }

    /// Fires the chain (`callback` / `errback`).
    pub(crate) fn fire(self: &Rc<Self>, outcome: Outcome) -> Result<(), AlreadyCalledError> {
        {
            let mut st = self.st.borrow_mut();
            if st.called {
                if mem::take(&mut st.swallow_next_fire) {
                    return Ok(());
                }
                return Err(AlreadyCalledError);
            }
            st.called = true;
            st.slot = Slot::Ready(outcome);
            st.canceller = None;
        }
        run(self.clone());
        Ok(())
    }

    pub(crate) fn add_pair(self: &Rc<Self>, pair: PairFn) {
        self.add_link(Link::Pair(pair));
    }

    /// `chain_deferred`: whatever reaches this point fires `other`.
    pub(crate) fn add_fire(self: &Rc<Self>, other: Rc<Chain>) {
        self.add_link(Link::Fire(other));
    }

    fn add_link(self: &Rc<Self>, link: Link) {
        {
            let mut st = self.st.borrow_mut();
            if matches!(st.slot, Slot::Consumed) {
                log::warn!(
                    "a callback was added to a Deferred whose result was already passed on; it will never run"
                );
                return;
            }
            st.links.push_back(link);
            if !st.called || st.running {
                return;
            }
        }
        run(self.clone());
    }

    pub(crate) fn pause(&self) {
        self.st.borrow_mut().paused += 1;
    }

    pub(crate) fn unpause(self: &Rc<Self>) -> Result<(), NotPausedError> {
        {
            let mut st = self.st.borrow_mut();
            if st.paused == 0 {
                return Err(NotPausedError);
            }
            st.paused -= 1;
            if st.paused > 0 || !st.called {
                return Ok(());
            }
        }
        run(self.clone());
        Ok(())
    }

    pub(crate) fn cancel(self: &Rc<Self>) {
        let (called, waiting_on) = {
            let st = self.st.borrow();
            (st.called, st.waiting_on.clone())
        };
        if called {
            // Waiting on an inner Deferred: cancelling that is what stops the
            // work. Otherwise the result is already here: nothing to do.
            if let Some(inner) = waiting_on {
                inner.cancel();
            }
            return;
        }
        let canceller = self.st.borrow_mut().canceller.take();
        match canceller {
            Some(canceller) => {
                if let Err(panic) = catch_unwind(AssertUnwindSafe(|| canceller(self))) {
                    log::error!(
                        "panic in a Deferred's canceller: {}",
                        crate::panic_message(&*panic)
                    );
                }
            }
            None => self.st.borrow_mut().swallow_next_fire = true,
        }
        if !self.called() {
            let _ = self.fire(Err(Failure::new(CancelledError)));
        }
    }

    /// Takes the result for an `await` (or for `result()`, with no waker),
    /// or registers the waker to be woken when it is ready.
    pub(crate) fn poll_take(&self, waker: Option<&Waker>) -> Option<Outcome> {
        let mut st = self.st.borrow_mut();
        let idle = st.links.is_empty() && !st.running && st.paused == 0 && st.waiting_on.is_none();
        match &st.slot {
            Slot::Ready(_) if idle => match mem::replace(&mut st.slot, Slot::Consumed) {
                Slot::Ready(outcome) => {
                    // Anyone else awaiting learns the result went elsewhere.
                    let others = mem::take(&mut st.wakers);
                    drop(st);
                    others.into_iter().for_each(Waker::wake);
                    Some(outcome)
                }
                _ => unreachable!(),
            },
            Slot::Consumed => Some(Err(Failure::new(
                "the Deferred's result was already passed on to another Deferred or await",
            ))),
            _ => {
                if let Some(waker) = waker {
                    if !st.wakers.iter().any(|w| w.will_wake(waker)) {
                        st.wakers.push(waker.clone());
                    }
                }
                None
            }
        }
    }

    /// Processes links until the chain blocks, finishes, or hands its result
    /// to another chain.
    fn step(self: &Rc<Self>) -> Next {
        let mut st = self.st.borrow_mut();
        if st.running
            || st.paused > 0
            || st.waiting_on.is_some()
            || !matches!(st.slot, Slot::Ready(_))
        {
            return Next::Pop;
        }
        st.running = true;
        loop {
            let Some(link) = st.links.pop_front() else {
                st.running = false;
                let wakers = mem::take(&mut st.wakers);
                drop(st);
                wakers.into_iter().for_each(Waker::wake);
                return Next::Pop;
            };
            let outcome = match mem::replace(&mut st.slot, Slot::Empty) {
                Slot::Ready(outcome) => outcome,
                _ => unreachable!("a running chain has a result"),
            };
            match link {
                Link::Pair(pair) => {
                    drop(st);
                    let step = catch_unwind(AssertUnwindSafe(move || pair(outcome)))
                        .unwrap_or_else(|panic| Step::Done(Err(Failure::from_panic(&*panic))));
                    st = self.st.borrow_mut();
                    match step {
                        Step::Done(outcome) => st.slot = Slot::Ready(outcome),
                        Step::Wait(inner) if Rc::ptr_eq(&inner, self) => {
                            st.slot = Slot::Ready(Err(Failure::new(ChainedToItselfError)));
                        }
                        Step::Wait(inner) => {
                            let mut inner_st = inner.st.borrow_mut();
                            if matches!(inner_st.slot, Slot::Consumed) {
                                // Its result went elsewhere: none comes here
                                // either.
                                st.slot = Slot::Consumed;
                                st.running = false;
                                return Next::Pop;
                            }
                            let ready = matches!(inner_st.slot, Slot::Ready(_))
                                && inner_st.paused == 0
                                && inner_st.waiting_on.is_none()
                                && !inner_st.running;
                            if ready {
                                // The inner result is here: take it over.
                                let slot = mem::replace(&mut inner_st.slot, Slot::Consumed);
                                st.slot = slot;
                            } else {
                                inner_st.links.push_back(Link::Resume(Rc::downgrade(self)));
                                drop(inner_st);
                                st.waiting_on = Some(inner);
                                st.running = false;
                                return Next::Pop;
                            }
                        }
                    }
                }
                Link::Resume(waiting) => match waiting.upgrade() {
                    Some(waiting) => {
                        st.slot = Slot::Consumed;
                        st.running = false;
                        drop(st);
                        let mut waiting_st = waiting.st.borrow_mut();
                        waiting_st.waiting_on = None;
                        waiting_st.slot = Slot::Ready(outcome);
                        drop(waiting_st);
                        return Next::Push(waiting);
                    }
                    // Nobody waits any more: keep the result (a failure is
                    // then reported when this chain is dropped).
                    None => st.slot = Slot::Ready(outcome),
                },
                Link::Fire(target) => {
                    let mut target_st = target.st.borrow_mut();
                    if target_st.called && !mem::take(&mut target_st.swallow_next_fire) {
                        drop(target_st);
                        st.slot = Slot::Ready(Err(Failure::new(AlreadyCalledError)));
                        // The result we failed to pass on is dropped here.
                        drop(outcome);
                        continue;
                    }
                    let fresh = !target_st.called;
                    if fresh {
                        target_st.called = true;
                        target_st.slot = Slot::Ready(outcome);
                        target_st.canceller = None;
                    }
                    drop(target_st);
                    st.slot = Slot::Consumed;
                    st.running = false;
                    drop(st);
                    return if fresh { Next::Push(target) } else { Next::Pop };
                }
            }
        }
    }
}

/// Runs `start` and every chain it hands a result to, with an explicit
/// stack instead of recursion (which only allocates once a chain hands its
/// result on).
fn run(start: Rc<Chain>) {
    let mut current = start;
    let mut stack = Vec::new();
    loop {
        match current.step() {
            Next::Pop => match stack.pop() {
                Some(below) => current = below,
                None => return,
            },
            Next::Push(next) => stack.push(std::mem::replace(&mut current, next)),
        }
    }
}

impl Drop for Chain {
    fn drop(&mut self) {
        let st = self.st.get_mut();
        if let Slot::Ready(Err(failure)) = &st.slot {
            UNHANDLED.with(|count| count.set(count.get() + 1));
            log::error!("Unhandled error in Deferred: {failure}");
        }
        // Deep chains of Deferreds waiting on each other would drop
        // recursively, one stack frame per link: unlink them here and drop
        // them one by one.
        if st.waiting_on.is_none() && st.links.is_empty() {
            return;
        }
        let mut pending = take_children(st);
        while let Some(child) = pending.pop() {
            if let Ok(chain) = Rc::try_unwrap(child) {
                let mut chain = chain;
                pending.extend(take_children(chain.st.get_mut()));
            }
        }
    }
}

fn take_children(st: &mut State) -> Vec<Rc<Chain>> {
    let mut children: Vec<Rc<Chain>> = st.waiting_on.take().into_iter().collect();
    for link in mem::take(&mut st.links).into_iter() {
        if let Link::Fire(target) = link {
            children.push(target);
        }
    }
    children
}
