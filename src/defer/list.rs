//! Waiting on many Deferreds: [`DeferredList`], [`gather_results`] and
//! [`race`], as Twisted's `DeferredList`, `gatherResults` and `race`.

use std::cell::RefCell;
use std::error::Error;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::{Rc, Weak};

use super::{fail, Deferred, Failure};

/// Builds a Deferred that waits for a list of Deferreds: Twisted's
/// `DeferredList`.
///
/// By default ([`build`](Self::build)) it fires once every input has fired,
/// with one `Result` per input in *input order* (not the order they fired
/// in); a failed input is an `Err` in the list, it does not fail the list.
/// [`fire_on_one_errback`](Self::fire_on_one_errback) fails it with a
/// [`FirstError`] at the first failure instead, and
/// [`fire_on_one_callback`](Self::fire_on_one_callback) fires it with the
/// first value. Inputs that fired before are processed while it is built,
/// so the result may be there when `build` returns. An empty list fires at
/// once with an empty `Vec`.
///
/// Cancelling the list's Deferred before it fired cancels every input whose
/// result has not reached it yet (a panic there is logged and the others are
/// still cancelled); the list then fires as its inputs make it fire. After
/// it fired, cancelling does nothing.
///
/// # What the inputs hold afterwards
///
/// The list appends one callback/errback pair to each input, at its current
/// end: callbacks already on an input shape what the list sees, callbacks
/// added later see what the pair passes on. A [`Failure`] cannot be copied,
/// and an input stays a `Deferred<T>`, so Twisted's rules are kept thus:
///
/// - A value is cloned into the list and passed on unchanged, hence
///   `T: Clone` (wrap a value that is not `Clone` in an `Rc`).
/// - A failure the list records is the original, to
///   [`check`](Failure::check) or [`trap`](Failure::trap). Without
///   [`consume_errors`](Self::consume_errors) the input goes on down its
///   error path with a [`ListedFailure`] of the same text: it is still
///   reported as unhandled if nobody handles it, and errbacks added later
///   see it. A failure arriving after the list fired is not recorded: the
///   input keeps the original.
/// - With `consume_errors` the list takes the failure and the input's chain
///   ends there: nothing is reported, callbacks added to it later never run
///   and awaiting it never completes (Twisted's input goes on with `None`,
///   which a `Deferred<T>` cannot hold).
///
/// # Examples
///
/// ```
/// use twill::defer::{Deferred, DeferredList, Failure};
///
/// let (a, b, c) = (Deferred::new(), Deferred::new(), Deferred::new());
/// let list = DeferredList::new(vec![a.clone(), b.clone(), c.clone()])
///     .consume_errors(true)
///     .build();
/// c.callback(3);
/// b.errback(Failure::new("no b"));
/// assert!(list.result().is_none()); // a has not fired yet
/// a.callback(1);
/// let results = list.result().unwrap().unwrap();
/// assert_eq!(results[0].as_ref().unwrap(), &1);
/// assert_eq!(results[1].as_ref().unwrap_err().to_string(), "no b");
/// assert_eq!(results[2].as_ref().unwrap(), &3);
/// ```
///
/// The first value wins with `fire_on_one_callback`:
///
/// ```
/// use twill::defer::{Deferred, DeferredList};
///
/// let (a, b) = (Deferred::new(), Deferred::new());
/// let first = DeferredList::new(vec![a.clone(), b.clone()]).fire_on_one_callback();
/// b.callback("b");
/// assert_eq!(first.result().unwrap().unwrap(), ("b", 1));
/// # a.callback("a");
/// ```
#[must_use = "a DeferredList does nothing until `build` or `fire_on_one_callback`"]
pub struct DeferredList<T> {
    deferreds: Vec<Deferred<T>>,
    fire_on_one_errback: bool,
    consume_errors: bool,
}

impl<T: Clone + 'static> DeferredList<T> {
    /// A list over `deferreds`, with every option off.
    pub fn new(deferreds: Vec<Deferred<T>>) -> DeferredList<T> {
        DeferredList {
            deferreds,
            fire_on_one_errback: false,
            consume_errors: false,
        }
    }

    /// Fail the list with [`FirstError`] (the original failure and its
    /// index) as soon as an input fails. Off by default.
    pub fn fire_on_one_errback(mut self, on: bool) -> Self {
        self.fire_on_one_errback = on;
        self
    }

    /// Take the inputs' failures: they are then not reported as unhandled,
    /// and the inputs' chains end there. Off by default; see
    /// [what the inputs hold](Self#what-the-inputs-hold-afterwards).
    pub fn consume_errors(mut self, on: bool) -> Self {
        self.consume_errors = on;
        self
    }

    /// Attaches to the inputs and returns the list's Deferred: all the
    /// results in input order, or [`FirstError`] with
    /// [`fire_on_one_errback`](Self::fire_on_one_errback).
    pub fn build(self) -> Deferred<Vec<Result<T, Failure>>> {
        let empty = self.deferreds.is_empty();
        let (list, core) = attach(self, Target::All);
        if empty {
            core.borrow_mut().target = None;
            list.callback(Vec::new());
        }
        list
    }

    /// Attaches to the inputs and returns a Deferred that fires with the
    /// first value and its index (Twisted's `fireOnOneCallback`). If every
    /// input fails (and `fire_on_one_errback` is off) it fails with a
    /// [`FailureGroup`] of the failures in index order, where Twisted fires
    /// with the list of failures. As Twisted's, it never fires over an
    /// empty list.
    pub fn fire_on_one_callback(self) -> Deferred<(T, usize)> {
        attach(self, Target::First).0
    }
}

impl<T> fmt::Debug for DeferredList<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeferredList")
            .field("deferreds", &self.deferreds)
            .field("fire_on_one_errback", &self.fire_on_one_errback)
            .field("consume_errors", &self.consume_errors)
            .finish()
    }
}

/// Waits for every Deferred and fires with their values in input order, or
/// fails with [`FirstError`] at the first failure: Twisted's
/// `gatherResults`. An empty list gives an empty `Vec` at once.
///
/// It is a [`DeferredList`] with `fire_on_one_errback`: cancelling it
/// cancels every input not yet fired; it then succeeds if all their
/// cancellers gave values, else fails with a `FirstError` (most often
/// wrapping [`CancelledError`](super::CancelledError)). Failures stay on the
/// inputs too (see [`DeferredList`]); use
/// [`gather_results_consume_errors`] to take them.
///
/// # Examples
///
/// ```
/// use twill::defer::{gather_results, Deferred, FirstError, Failure};
///
/// let (a, b) = (Deferred::new(), Deferred::new());
/// let all = gather_results(vec![a.clone(), b.clone()]);
/// b.callback(2);
/// a.callback(1);
/// assert_eq!(all.result().unwrap().unwrap(), [1, 2]);
///
/// let (c, d) = (Deferred::<i32>::new(), Deferred::new());
/// let all = gather_results(vec![c.clone(), d.clone()]);
/// d.errback(Failure::new("no d"));
/// let failure = all.result().unwrap().unwrap_err();
/// let first = failure.downcast_ref::<FirstError>().unwrap();
/// assert_eq!(first.index, 1);
/// assert_eq!(first.to_string(), "FirstError[#1, no d]");
/// ```
pub fn gather_results<T: Clone + 'static>(deferreds: Vec<Deferred<T>>) -> Deferred<Vec<T>> {
    gather(DeferredList::new(deferreds))
}

/// As [`gather_results`], taking the inputs' failures (Twisted's
/// `gatherResults(..., consumeErrors=True)`): no input reports its failure
/// as unhandled.
pub fn gather_results_consume_errors<T: Clone + 'static>(
    deferreds: Vec<Deferred<T>>,
) -> Deferred<Vec<T>> {
    gather(DeferredList::new(deferreds).consume_errors(true))
}

fn gather<T: Clone + 'static>(list: DeferredList<T>) -> Deferred<Vec<T>> {
    list.fire_on_one_errback(true)
        .build()
        .then(|results: Vec<Result<T, Failure>>| results.into_iter().collect::<Result<_, _>>())
}

/// Fires with the index and value of the first Deferred to *succeed*, then
/// cancels all the others: Twisted's `race`. If they all fail it fails with
/// a [`FailureGroup`] of their failures in index order. Cancelling it
/// cancels every input still running. As Twisted's, it never fires over an
/// empty list.
///
/// It consumes its inputs (Twisted's leave `None` in them): a value or
/// failure goes to the race, or is dropped without a report once the race
/// is decided, and the inputs' chains end there. So `T` need not be
/// `Clone`.
///
/// # Examples
///
/// ```
/// use twill::defer::{race, Deferred};
///
/// let (slow, fast) = (Deferred::<&str>::new(), Deferred::new());
/// let first = race(vec![slow.clone(), fast.clone()]);
/// fast.callback("fast");
/// assert_eq!(first.result().unwrap().unwrap(), (1, "fast"));
/// assert!(slow.called()); // cancelled, its failure ignored
/// ```
pub fn race<T: 'static>(deferreds: Vec<Deferred<T>>) -> Deferred<(usize, T)> {
    let count = deferreds.len();
    let core = Rc::new(RefCell::new(RaceCore {
        members: deferreds.iter().cloned().map(Some).collect(),
        failures: (0..count).map(|_| None).collect(),
        failed: 0,
        target: None,
    }));
    let weak = Rc::downgrade(&core);
    let target = Deferred::with_canceller(move |_| {
        if let Some(core) = Weak::upgrade(&weak) {
            let inputs = pending(&core.borrow().members);
            cancel_all(inputs, "race");
        }
    });
    core.borrow_mut().target = Some(target.clone());
    for (index, d) in deferreds.into_iter().enumerate() {
        let (on_value, on_failure) = (core.clone(), core.clone());
        d.add_callbacks(
            move |value| race_value(&on_value, index, value),
            move |failure| race_failure(&on_failure, index, failure),
        );
    }
    target
}

/// The error of a [`DeferredList`] with `fire_on_one_errback`, and of
/// [`gather_results`]: the first input to fail, and its failure (Twisted's
/// `FirstError`; Twisted calls the failure `subFailure`).
///
/// Its `Display` is `FirstError[#index, failure]`; its
/// [`source`](Error::source) is the failure's error, so a [`Failure`]
/// holding a `FirstError` prints the failure's text twice.
#[derive(Debug)]
pub struct FirstError {
    /// The index of the input that failed.
    pub index: usize,
    /// Its original failure.
    pub failure: Failure,
}

impl fmt::Display for FirstError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FirstError[#{}, {}]", self.index, self.failure)
    }
}

/// No `source`: the Display already carries the sub-failure and its causes.
impl Error for FirstError {}

/// Every input failed: the error of [`race`] and of
/// [`DeferredList::fire_on_one_callback`], with the failures in input order
/// (Twisted's `FailureGroup`).
#[derive(Debug)]
pub struct FailureGroup {
    /// The inputs' failures, in input order.
    pub failures: Vec<Failure>,
}

impl fmt::Display for FailureGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FailureGroup[")?;
        for (index, failure) in self.failures.iter().enumerate() {
            let sep = if index == 0 { "" } else { ", " };
            write!(f, "{sep}#{index}: {failure}")?;
        }
        f.write_str("]")
    }
}

impl Error for FailureGroup {}

/// What an input of a [`DeferredList`] without `consume_errors` holds once
/// the list took its failure: a failure with the same text, so the input
/// still goes down its error path and is reported as unhandled if nobody
/// handles it. The original is in the list's results (or its
/// [`FirstError`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedFailure {
    /// The input's index in the list.
    pub index: usize,
    /// The original failure's text (with its causes).
    pub message: String,
}

impl fmt::Display for ListedFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (the failure itself went to a DeferredList, as #{})",
            self.message, self.index
        )
    }
}

impl Error for ListedFailure {}

/// A `Deferred<T>` whose result was already taken. A callback returning it
/// ends its chain the same way: the chain holds nothing (no unhandled
/// report), later callbacks never run, and an `await` on it fails with
/// "already passed on".
fn taken<T: 'static>() -> Deferred<T> {
    let d = Deferred::new();
    let _ = d.try_errback(Failure::new("taken by a DeferredList or race"));
    let _ = d.result();
    d
}

/// The inputs whose result has not been seen yet.
fn pending<T>(members: &[Option<Deferred<T>>]) -> Vec<(usize, Deferred<T>)> {
    let live = members.iter().enumerate();
    live.filter_map(|(i, d)| Some((i, d.clone()?))).collect()
}

/// Cancels `inputs`, logging a panic and going on with the others.
fn cancel_all<T: 'static>(inputs: Vec<(usize, Deferred<T>)>, what: &str) {
    for (index, d) in inputs {
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| d.cancel())) {
            log::error!(
                "panic while cancelling input #{index} of a {what}: {}",
                crate::panic_message(&*panic)
            );
        }
    }
}

/// The list's Deferred, until it fires.
enum Target<T> {
    All(Deferred<Vec<Result<T, Failure>>>),
    First(Deferred<(T, usize)>),
}

impl<T: 'static> Target<T> {
    fn called(&self) -> bool {
        match self {
            Target::All(d) => d.called(),
            Target::First(d) => d.called(),
        }
    }

    fn errback(self, failure: Failure) {
        let refused = match self {
            Target::All(d) => d.try_errback(failure),
            Target::First(d) => d.try_errback(failure),
        };
        if refused.is_err() {
            log::warn!(
                "a DeferredList's Deferred was fired by someone else; its failure is dropped"
            );
        }
    }
}

struct ListCore<T> {
    results: Vec<Option<Result<T, Failure>>>,
    members: Vec<Option<Deferred<T>>>,
    remaining: usize,
    fire_on_one_errback: bool,
    target: Option<Target<T>>,
}

/// What to fire once the core is no longer borrowed.
enum Fire<T> {
    All(Deferred<Vec<Result<T, Failure>>>, Vec<Result<T, Failure>>),
    First(Deferred<(T, usize)>, T, usize),
    Fail(Target<T>, Failure),
}

impl<T: 'static> Fire<T> {
    fn run(self) {
        let refused = match self {
            Fire::All(d, results) => d.try_callback(results),
            Fire::First(d, value, index) => d.try_callback((value, index)),
            Fire::Fail(target, failure) => return target.errback(failure),
        };
        if refused.is_err() {
            log::warn!(
                "a DeferredList's Deferred was fired by someone else; its result is dropped"
            );
        }
    }
}

impl<T: 'static> ListCore<T> {
    /// Marks input `index` as seen; whether the list still waits for it.
    fn see(&mut self, index: usize) -> bool {
        self.members[index] = None;
        if self.target.as_ref().is_some_and(Target::called) {
            // Cancelled, or fired by someone else.
            self.target = None;
        }
        if self.target.is_some() {
            self.remaining -= 1;
        }
        self.target.is_some()
    }

    /// Fires if every input has been seen.
    fn check_done(&mut self) -> Option<Fire<T>> {
        if self.remaining > 0 {
            return None;
        }
        let results = std::mem::take(&mut self.results).into_iter().flatten();
        match self.target.take()? {
            Target::All(d) => Some(Fire::All(d, results.collect())),
            target @ Target::First(_) => {
                let failures = results.filter_map(Result::err).collect();
                let group = Failure::new(FailureGroup { failures });
                Some(Fire::Fail(target, group))
            }
        }
    }
}

fn attach<T: Clone + 'static, U: 'static>(
    list: DeferredList<T>,
    wrap: impl FnOnce(Deferred<U>) -> Target<T>,
) -> (Deferred<U>, Rc<RefCell<ListCore<T>>>) {
    let DeferredList {
        deferreds,
        fire_on_one_errback,
        consume_errors,
    } = list;
    let core = Rc::new(RefCell::new(ListCore {
        results: (0..deferreds.len()).map(|_| None).collect(),
        members: deferreds.iter().cloned().map(Some).collect(),
        remaining: deferreds.len(),
        fire_on_one_errback,
        target: None,
    }));
    let weak = Rc::downgrade(&core);
    let target = Deferred::with_canceller(move |_| {
        if let Some(core) = Weak::upgrade(&weak) {
            let inputs = pending(&core.borrow().members);
            cancel_all(inputs, "DeferredList");
        }
    });
    core.borrow_mut().target = Some(wrap(target.clone()));
    for (index, d) in deferreds.into_iter().enumerate() {
        let (on_value, on_failure) = (core.clone(), core.clone());
        d.add_callbacks(
            move |value: T| {
                list_value(&on_value, index, &value);
                Ok(value)
            },
            move |failure| match list_failure(&on_failure, index, failure) {
                _ if consume_errors => taken(),
                Ok(message) => fail(ListedFailure { index, message }),
                Err(failure) => fail(failure),
            },
        );
    }
    (target, core)
}

fn list_value<T: Clone + 'static>(core: &Rc<RefCell<ListCore<T>>>, index: usize, value: &T) {
    let fire = {
        let mut st = core.borrow_mut();
        if !st.see(index) {
            return;
        }
        match st.target.take() {
            Some(Target::First(d)) => Some(Fire::First(d, value.clone(), index)),
            other => {
                st.target = other;
                st.results[index] = Some(Ok(value.clone()));
                st.check_done()
            }
        }
    };
    if let Some(fire) = fire {
        fire.run();
    }
}

/// Records a failure: `Ok(its text)` if the list took it, else gives it
/// back.
fn list_failure<T: 'static>(
    core: &Rc<RefCell<ListCore<T>>>,
    index: usize,
    failure: Failure,
) -> Result<String, Failure> {
    let message = failure.to_string();
    let fire = {
        let mut st = core.borrow_mut();
        if !st.see(index) {
            return Err(failure);
        }
        if st.fire_on_one_errback {
            let target = st.target.take().expect("a waiting list has a target");
            Some(Fire::Fail(
                target,
                Failure::new(FirstError { index, failure }),
            ))
        } else {
            st.results[index] = Some(Err(failure));
            st.check_done()
        }
    };
    if let Some(fire) = fire {
        fire.run();
    }
    Ok(message)
}

struct RaceCore<T> {
    members: Vec<Option<Deferred<T>>>,
    failures: Vec<Option<Failure>>,
    failed: usize,
    target: Option<Deferred<(usize, T)>>,
}

impl<T: 'static> RaceCore<T> {
    /// Marks input `index` as seen; the race's Deferred if still undecided.
    fn see(&mut self, index: usize) -> Option<&Deferred<(usize, T)>> {
        self.members[index] = None;
        if self.target.as_ref().is_some_and(Deferred::called) {
            self.target = None;
        }
        self.target.as_ref()
    }
}

fn race_value<T: 'static>(core: &Rc<RefCell<RaceCore<T>>>, index: usize, value: T) -> Deferred<T> {
    let decided = {
        let mut st = core.borrow_mut();
        if st.see(index).is_some() {
            st.target
                .take()
                .map(|target| (target, pending(&st.members)))
        } else {
            None
        }
    };
    if let Some((target, losers)) = decided {
        // Twisted's order: cancel the losers, then fire.
        cancel_all(losers, "race");
        if target.try_callback((index, value)).is_err() {
            log::warn!("a race's Deferred was fired by someone else; its winner is dropped");
        }
    }
    taken()
}

fn race_failure<T: 'static>(
    core: &Rc<RefCell<RaceCore<T>>>,
    index: usize,
    failure: Failure,
) -> Deferred<T> {
    let lost = {
        let mut st = core.borrow_mut();
        if st.see(index).is_none() {
            // Decided: ignored without a report, as Twisted.
            return taken();
        }
        st.failures[index] = Some(failure);
        st.failed += 1;
        if st.failed < st.failures.len() {
            return taken();
        }
        let failures = std::mem::take(&mut st.failures).into_iter().flatten();
        let group = FailureGroup {
            failures: failures.collect(),
        };
        st.target.take().map(|target| (target, group))
    };
    if let Some((target, group)) = lost {
        if target.try_errback(group).is_err() {
            log::warn!("a race's Deferred was fired by someone else; its failures are dropped");
        }
    }
    taken()
}
