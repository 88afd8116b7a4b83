//! Waiting on many Deferreds: [`DeferredList`], [`gather_results`] and
//! [`race`], as Twisted's `DeferredList`, `gatherResults` and `race`.

use std::cell::RefCell;
use std::error::Error;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::{Rc, Weak};

use super::chain::{self, ForwardCancel};
use super::{CancelHandle, Deferred, Failure, Resolver};

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
/// # The inputs
///
/// The list takes its inputs (Twisted's are left holding `None`): it
/// appends one callback/errback pair to each, at its current end, so
/// callbacks already on an input shape what the list sees, and nothing can
/// be added after the list's pair. So `T` need not be `Clone`.
///
/// A failure the list delivers is the input's very failure (a [`Failure`]
/// is a shared handle), to [`check`](Failure::check) or
/// [`trap`](Failure::trap): in the results, or inside the [`FirstError`].
/// It is then the list's consumer's to handle. A failure the list does not
/// deliver, because the list had already fired, is reported as unhandled
/// (`Unhandled error in Deferred`), unless
/// [`consume_errors`](Self::consume_errors) is on.
///
/// The list keeps its inputs alive until each has fired, so cancelling it
/// reaches their cancellers, and the inputs keep the list alive, so its
/// callbacks run even if nobody holds its handle. A list over inputs that
/// nobody will ever fire, dropped without being cancelled, is never freed.
///
/// # Examples
///
/// ```
/// use twill::defer::{Deferred, DeferredList, Failure};
///
/// let (a, b, c) = (Deferred::new(), Deferred::new(), Deferred::new());
/// let (fire_a, fire_b, fire_c) = (a.resolver(), b.resolver(), c.resolver());
/// let list = DeferredList::new(vec![a, b, c]).build();
/// fire_c.callback(3);
/// fire_b.errback(Failure::new("no b"));
/// assert!(list.result().is_none()); // a has not fired yet
/// fire_a.callback(1);
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
/// let fire_b = b.resolver();
/// let first = DeferredList::new(vec![a, b]).fire_on_one_callback();
/// fire_b.callback("b");
/// assert_eq!(first.result().unwrap().unwrap(), ("b", 1));
/// ```
#[must_use = "a DeferredList does nothing until `build` or `fire_on_one_callback`"]
pub struct DeferredList<T: 'static> {
    deferreds: Vec<Deferred<T>>,
    fire_on_one_errback: bool,
    consume_errors: bool,
}

impl<T: 'static> DeferredList<T> {
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

    /// Take the inputs' failures that arrive after the list fired, instead
    /// of reporting them as unhandled. Off by default; see
    /// [the inputs](Self#the-inputs).
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
    /// first value and its index (Twisted's `fireOnOneCallback`). Failures
    /// of inputs that failed before that value are reported as unhandled,
    /// unless [`consume_errors`](Self::consume_errors) is on. If every
    /// input fails (and `fire_on_one_errback` is off) it fails with a
    /// [`FailureGroup`] of the failures in index order, where Twisted fires
    /// with the list of failures. As Twisted's, it never fires over an
    /// empty list.
    pub fn fire_on_one_callback(self) -> Deferred<(T, usize)> {
        attach(self, Target::First).0
    }
}

impl<T: 'static> fmt::Debug for DeferredList<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeferredList")
            .field("deferreds", &self.deferreds.len())
            .field("fire_on_one_errback", &self.fire_on_one_errback)
            .field("consume_errors", &self.consume_errors)
            .finish()
    }
}

/// Waits for every Deferred and fires with their values in input order, or
/// fails with [`FirstError`] at the first failure: Twisted's
/// `gatherResults`. An empty list gives an empty `Vec` at once.
///
/// It is a [`DeferredList`] with `fire_on_one_errback` (and holds its
/// inputs as a list does, see [its inputs](DeferredList#the-inputs)):
/// cancelling it
/// cancels every input not yet fired; it then succeeds if all their
/// cancellers gave values, else fails with a `FirstError` (most often
/// wrapping [`CancelledError`](super::CancelledError)). Failures that
/// arrive after the first are reported as unhandled (see
/// [`DeferredList`]); [`gather_results_consume_errors`] takes them.
///
/// # Examples
///
/// ```
/// use twill::defer::{gather_results, gather_results_consume_errors, Deferred, FirstError, Failure};
///
/// let (a, b) = (Deferred::new(), Deferred::new());
/// let (fire_a, fire_b) = (a.resolver(), b.resolver());
/// let all = gather_results(vec![a, b]);
/// fire_b.callback(2);
/// fire_a.callback(1);
/// assert_eq!(all.result().unwrap().unwrap(), [1, 2]);
///
/// let (c, d) = (Deferred::<i32>::new(), Deferred::new());
/// let fire_d = d.resolver();
/// let all = gather_results_consume_errors(vec![c, d]);
/// fire_d.errback(Failure::new("no d"));
/// let failure = all.result().unwrap().unwrap_err();
/// let first = failure.downcast_ref::<FirstError>().unwrap();
/// assert_eq!(first.index, 1);
/// assert_eq!(first.to_string(), "FirstError[#1, no d]");
/// ```
pub fn gather_results<T: 'static>(deferreds: Vec<Deferred<T>>) -> Deferred<Vec<T>> {
    gather(DeferredList::new(deferreds))
}

/// As [`gather_results`], taking the inputs' failures (Twisted's
/// `gatherResults(..., consumeErrors=True)`): no input reports its failure
/// as unhandled.
pub fn gather_results_consume_errors<T: 'static>(deferreds: Vec<Deferred<T>>) -> Deferred<Vec<T>> {
    gather(DeferredList::new(deferreds).consume_errors(true))
}

/// [`gather_results`] over the Deferreds a `Stream` yields, once it ends:
/// the values in the order the stream gave their Deferreds. Cancelling it
/// while the stream is still running drops the stream; afterwards it
/// cancels the gathered Deferreds, as `gather_results` does.
///
/// # Examples
///
/// ```
/// use twill::defer::{gather_stream, succeed};
///
/// let deferreds = futures::stream::iter((1..=3).map(succeed));
/// let all = gather_stream(deferreds);
/// assert_eq!(all.result().unwrap().unwrap(), [1, 2, 3]);
/// ```
pub fn gather_stream<T: 'static>(
    deferreds: impl futures::Stream<Item = Deferred<T>> + 'static,
) -> Deferred<Vec<T>> {
    use futures::StreamExt;
    Deferred::from_future(async move {
        let deferreds = deferreds.collect::<Vec<_>>().await;
        gather_results(deferreds).await
    })
}

fn gather<T: 'static>(list: DeferredList<T>) -> Deferred<Vec<T>> {
    list.fire_on_one_errback(true)
        .build()
        .then(|results: Vec<Result<T, Failure>>| {
            // With fire_on_one_errback every result is a value; a loop
            // rather than `collect` allocates the Vec once.
            let mut values = Vec::with_capacity(results.len());
            for result in results {
                values.push(result?);
            }
            Ok(values)
        })
}

/// Fires with the index and value of the first Deferred to *succeed*, then
/// cancels all the others: Twisted's `race`. If they all fail it fails with
/// a [`FailureGroup`] of their failures in index order. Cancelling it
/// cancels every input still running. As Twisted's, it never fires over an
/// empty list.
///
/// It takes and holds its inputs, as [`DeferredList`] does: a value or
/// failure goes to the race, or is dropped without a report once the race
/// is decided.
///
/// # Examples
///
/// ```
/// use twill::defer::{race, Deferred};
///
/// let (slow, fast) = (Deferred::<&str>::new(), Deferred::new());
/// let (fire_slow, fire_fast) = (slow.resolver(), fast.resolver());
/// let first = race(vec![slow, fast]);
/// fire_fast.callback("fast");
/// assert_eq!(first.result().unwrap().unwrap(), (1, "fast"));
/// assert!(fire_slow.called()); // cancelled, its failure ignored
/// ```
pub fn race<T: 'static>(deferreds: Vec<Deferred<T>>) -> Deferred<(usize, T)> {
    let count = deferreds.len();
    let core = Rc::new(RefCell::new(RaceCore {
        members: deferreds.iter().map(|d| Some(d.cancel_handle())).collect(),
        failures: (0..count).map(|_| None).collect(),
        failed: 0,
        target: None,
    }));
    let target =
        Deferred::with_forwarding_canceller(Rc::downgrade(&core) as Weak<dyn ForwardCancel>);
    core.borrow_mut().target = Some(target.resolver());
    for (index, d) in deferreds.into_iter().enumerate() {
        let core = core.clone();
        d.end_with(move |outcome| {
            race_outcome(&core, index, outcome);
            None
        });
    }
    target
}

/// The error of a [`DeferredList`] with `fire_on_one_errback`, and of
/// [`gather_results`]: the first input to fail, and its failure (Twisted's
/// `FirstError`; Twisted calls the failure `subFailure`).
///
/// Its `Display` is `FirstError[#index, failure]` and its `Debug`
/// `FirstError[#index, <Failure …>]`, as Twisted's `str` and `repr`. Two are
/// equal when their index and failure are (the same failure).
#[derive(Clone, PartialEq, Eq)]
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

impl fmt::Debug for FirstError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FirstError[#{}, {:?}]", self.index, self.failure)
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

/// The inputs whose result has not been seen yet.
fn pending(members: &[Option<CancelHandle>]) -> Vec<(usize, CancelHandle)> {
    let live = members.iter().enumerate();
    live.filter_map(|(i, d)| Some((i, d.as_ref()?.clone_handle())))
        .collect()
}

/// Cancels `inputs`, logging a panic and going on with the others.
fn cancel_all(inputs: Vec<(usize, CancelHandle)>, what: &str) {
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
enum Target<T: 'static> {
    All(Resolver<Vec<Result<T, Failure>>>),
    First(Resolver<(T, usize)>),
}

impl<T: 'static> Target<T> {
    fn called(&self) -> bool {
        match self {
            Target::All(d) => d.called(),
            Target::First(d) => d.called(),
        }
    }
}

struct ListCore<T: 'static> {
    results: Vec<Option<Result<T, Failure>>>,
    members: Vec<Option<CancelHandle>>,
    remaining: usize,
    fire_on_one_errback: bool,
    consume_errors: bool,
    target: Option<Target<T>>,
}

/// What to fire once the core is no longer borrowed.
enum Fire<T: 'static> {
    All(Resolver<Vec<Result<T, Failure>>>, Vec<Result<T, Failure>>),
    First(Resolver<(T, usize)>, T, usize),
    Fail(Target<T>, Failure),
}

impl<T: 'static> Fire<T> {
    fn run(self) {
        let refused = match self {
            Fire::All(d, results) => d.try_callback(results),
            Fire::First(d, value, index) => d.try_callback((value, index)),
            Fire::Fail(Target::All(d), failure) => d.try_errback(failure),
            Fire::Fail(Target::First(d), failure) => d.try_errback(failure),
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
        // Every input was seen: each slot holds its result (an exact-size
        // iterator, so the Vec is allocated once).
        let results = std::mem::take(&mut self.results)
            .into_iter()
            .map(|result| result.expect("every input was seen"));
        match self.target.take()? {
            Target::All(d) => Some(Fire::All(d, results.collect())),
            target @ Target::First(_) => {
                let failures = results.filter_map(Result::err).collect();
                let group = Failure::from(FailureGroup { failures });
                Some(Fire::Fail(target, group))
            }
        }
    }

    /// Records input `index`'s outcome; what to fire, and a failure the
    /// list did not take.
    fn record(
        &mut self,
        index: usize,
        outcome: Result<T, Failure>,
    ) -> (Option<Fire<T>>, Option<Failure>) {
        if !self.see(index) {
            let left = outcome.err().filter(|_| !self.consume_errors);
            return (None, left);
        }
        let fire = match outcome {
            Ok(value) => match self.target.take() {
                Some(Target::First(d)) => {
                    // Failures kept in case every input failed: with a
                    // winner, nobody gets them.
                    for earlier in std::mem::take(&mut self.results).into_iter().flatten() {
                        if let (Err(failure), false) = (earlier, self.consume_errors) {
                            chain::report_unhandled(&failure, None);
                        }
                    }
                    Some(Fire::First(d, value, index))
                }
                other => {
                    self.target = other;
                    self.results[index] = Some(Ok(value));
                    self.check_done()
                }
            },
            Err(failure) if self.fire_on_one_errback => {
                let target = self.target.take().expect("a waiting list has a target");
                Some(Fire::Fail(
                    target,
                    Failure::from(FirstError { index, failure }),
                ))
            }
            Err(failure) => {
                self.results[index] = Some(Err(failure));
                self.check_done()
            }
        };
        (fire, None)
    }
}

fn attach<T: 'static, U: 'static>(
    list: DeferredList<T>,
    wrap: impl FnOnce(Resolver<U>) -> Target<T>,
) -> (Deferred<U>, Rc<RefCell<ListCore<T>>>) {
    let DeferredList {
        deferreds,
        fire_on_one_errback,
        consume_errors,
    } = list;
    let core = Rc::new(RefCell::new(ListCore {
        results: (0..deferreds.len()).map(|_| None).collect(),
        members: deferreds.iter().map(|d| Some(d.cancel_handle())).collect(),
        remaining: deferreds.len(),
        fire_on_one_errback,
        consume_errors,
        target: None,
    }));
    let target =
        Deferred::with_forwarding_canceller(Rc::downgrade(&core) as Weak<dyn ForwardCancel>);
    core.borrow_mut().target = Some(wrap(target.resolver()));
    for (index, d) in deferreds.into_iter().enumerate() {
        let core = core.clone();
        d.end_with(move |outcome| {
            let (fire, left) = core.borrow_mut().record(index, outcome);
            if let Some(fire) = fire {
                fire.run();
            }
            left
        });
    }
    (target, core)
}

/// Cancelling the list cancels its inputs that have not fired.
impl<T: 'static> ForwardCancel for RefCell<ListCore<T>> {
    fn forward_cancel(self: Rc<Self>) {
        let inputs = pending(&self.borrow().members);
        cancel_all(inputs, "DeferredList");
    }
}

/// Cancelling the race cancels its inputs that have not fired.
impl<T: 'static> ForwardCancel for RefCell<RaceCore<T>> {
    fn forward_cancel(self: Rc<Self>) {
        let inputs = pending(&self.borrow().members);
        cancel_all(inputs, "race");
    }
}

struct RaceCore<T: 'static> {
    members: Vec<Option<CancelHandle>>,
    failures: Vec<Option<Failure>>,
    failed: usize,
    target: Option<Resolver<(usize, T)>>,
}

impl<T: 'static> RaceCore<T> {
    /// Marks input `index` as seen; whether the race is still undecided.
    fn see(&mut self, index: usize) -> bool {
        self.members[index] = None;
        if self.target.as_ref().is_some_and(Resolver::called) {
            self.target = None;
        }
        self.target.is_some()
    }
}

fn race_outcome<T: 'static>(
    core: &Rc<RefCell<RaceCore<T>>>,
    index: usize,
    outcome: Result<T, Failure>,
) {
    let mut st = core.borrow_mut();
    if !st.see(index) {
        // Decided: ignored without a report, as Twisted.
        return;
    }
    match outcome {
        Ok(value) => {
            let target = st.target.take().expect("an undecided race has a target");
            let losers = pending(&st.members);
            drop(st);
            // Twisted's order: cancel the losers, then fire.
            cancel_all(losers, "race");
            if target.try_callback((index, value)).is_err() {
                log::warn!("a race's Deferred was fired by someone else; its winner is dropped");
            }
        }
        Err(failure) => {
            st.failures[index] = Some(failure);
            st.failed += 1;
            if st.failed < st.failures.len() {
                return;
            }
            let failures = std::mem::take(&mut st.failures).into_iter().flatten();
            let group = FailureGroup {
                failures: failures.collect(),
            };
            let target = st.target.take().expect("an undecided race has a target");
            drop(st);
            if target.try_errback(group).is_err() {
                log::warn!("a race's Deferred was fired by someone else; its failures are dropped");
            }
        }
    }
}
