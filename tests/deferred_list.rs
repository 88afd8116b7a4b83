//! DeferredList, gather_results, FirstError and race, rule by rule
//! (Twisted's `defer.DeferredList`, `gatherResults`, `race`; reference
//! §1.13 and the list rules of §1.9).
//!
//! The lists take their inputs, so each test keeps a `Resolver` per input
//! to fire it. A failure the list delivers is the input's very failure
//! (`Failure::ptr_eq`); one arriving after the list fired is reported as
//! unhandled unless `consume_errors` is on.

mod support;

use std::cell::RefCell;
use std::fmt;
use std::rc::Rc;

use twill::defer::{
    fail, gather_results, gather_results_consume_errors, race, succeed, unhandled_failures,
    CancelledError, Deferred, DeferredList, Failure, FailureGroup, FirstError, Resolver,
};
use twill::testing::{assert_no_result, failure_result_of, success_result_of};

use support::{capture_logs, logged};

#[derive(Debug, PartialEq)]
struct Boom(u32);

impl fmt::Display for Boom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "boom {}", self.0)
    }
}

impl std::error::Error for Boom {}

type Log = Rc<RefCell<Vec<usize>>>;

/// `n` unfired Deferreds, and a resolver for each.
fn unfired<T: 'static>(n: usize) -> (Vec<Deferred<T>>, Vec<Resolver<T>>) {
    let ds: Vec<Deferred<T>> = (0..n).map(|_| Deferred::new()).collect();
    let rs = resolvers(&ds);
    (ds, rs)
}

fn resolvers<T: 'static>(ds: &[Deferred<T>]) -> Vec<Resolver<T>> {
    ds.iter().map(Deferred::resolver).collect()
}

/// A Deferred whose canceller records `index` in `log` (and does not fire
/// it, so the chain fails it with CancelledError).
fn cancellable<T: 'static>(log: &Log, index: usize) -> Deferred<T> {
    let log = log.clone();
    Deferred::with_canceller(move |_| log.borrow_mut().push(index))
}

/// Adds an errback that keeps (a handle to) the failure it sees and passes
/// it on unchanged.
fn keep_failure<T: 'static>(d: &Deferred<T>) -> Rc<RefCell<Option<Failure>>> {
    let seen = Rc::new(RefCell::new(None));
    let slot = seen.clone();
    d.add_errback(move |failure: Failure| {
        *slot.borrow_mut() = Some(failure.clone());
        Err(failure)
    });
    seen
}

fn values<T: Clone>(results: &[Result<T, Failure>]) -> Vec<Option<T>> {
    results.iter().map(|r| r.as_ref().ok().cloned()).collect()
}

// ---------------------------------------------------------------- DeferredList

#[test]
fn list_fires_when_all_inputs_fired_with_results_in_input_order() {
    let (ds, rs) = unfired::<u32>(3);
    let list = DeferredList::new(ds).build();
    rs[2].callback(2);
    rs[0].callback(0);
    assert_no_result(&list);
    rs[1].callback(1);
    let results = list.result().unwrap().unwrap();
    assert_eq!(values(&results), [Some(0), Some(1), Some(2)]);
}

#[test]
fn list_failure_is_an_err_entry_not_a_list_failure() {
    let (ds, rs) = unfired::<u32>(2);
    let list = DeferredList::new(ds).consume_errors(true).build();
    let boom = Failure::from(Boom(7));
    rs[0].errback(boom.clone());
    rs[1].callback(1);
    let results = list.result().unwrap().expect("the list itself succeeds");
    let failure = results[0].as_ref().unwrap_err();
    assert_eq!(failure.downcast_ref::<Boom>(), Some(&Boom(7)));
    assert!(failure.ptr_eq(&boom), "the input's very failure");
    assert_eq!(results[1].as_ref().unwrap(), &1);
}

#[test]
fn empty_list_fires_at_once_with_an_empty_vec() {
    let list = DeferredList::<u32>::new(Vec::new()).build();
    assert!(list.result().unwrap().unwrap().is_empty());
    let gathered = DeferredList::<u32>::new(Vec::new())
        .fire_on_one_errback(true)
        .build();
    assert!(gathered.result().unwrap().unwrap().is_empty());
}

#[test]
fn empty_fire_on_one_callback_list_never_fires() {
    let list = DeferredList::<u32>::new(Vec::new()).fire_on_one_callback();
    assert!(!list.called());
    assert_no_result(&list);
}

#[test]
fn already_fired_inputs_are_processed_while_building() {
    let list = DeferredList::new(vec![succeed(1), succeed(2)]).build();
    assert_eq!(values(&list.result().unwrap().unwrap()), [Some(1), Some(2)]);

    let pending = Deferred::<u32>::new();
    let fire_pending = pending.resolver();
    let boom = Failure::from(Boom(1));
    let failed = fail::<u32>(boom.clone());
    let list = DeferredList::new(vec![pending, failed])
        .fire_on_one_errback(true)
        .consume_errors(true)
        .build();
    assert!(list.called(), "errbacked inside the constructor");
    let failure = list.result().unwrap().unwrap_err();
    let first = failure.downcast_ref::<FirstError>().unwrap();
    assert_eq!(first.index, 1);
    assert!(first.failure.ptr_eq(&boom));
    fire_pending.callback(0);
}

#[test]
fn callbacks_already_on_inputs_run_before_the_list_sees_the_result() {
    let d = Deferred::new();
    d.add_callback(|n: u32| Ok(n * 10));
    let fire = d.resolver();
    let list = DeferredList::new(vec![d]).build();
    fire.callback(4);
    assert_eq!(values(&list.result().unwrap().unwrap()), [Some(40)]);
}

/// Twisted's inputs go on after the list's pair (holding what it returned);
/// twill's list takes its inputs, so a value goes to the list itself, not a
/// copy: `T` need not be `Clone`, and nothing is left on the input.
#[test]
fn the_list_takes_the_value_itself_not_a_copy() {
    let d: Deferred<Rc<&str>> = Deferred::new();
    let fire = d.resolver();
    let list = DeferredList::new(vec![d]).build();
    let value = Rc::new("shared");
    fire.callback(value.clone());
    let results = list.result().unwrap().unwrap();
    let got = results[0].as_ref().unwrap();
    assert!(Rc::ptr_eq(got, &value), "the very value");
    assert_eq!(Rc::strong_count(&value), 2, "no copy left on the input");
    assert!(fire.called());
}

#[test]
fn errbacks_already_on_an_input_shape_what_the_list_sees() {
    // One recovers: the list sees a value.
    let recovers = Deferred::<u32>::new();
    recovers.add_errback(|failure: Failure| {
        failure.trap::<Boom>()?;
        Ok(99)
    });
    // One passes the failure on: the list sees the very same failure.
    let passes = Deferred::<u32>::new();
    let seen = keep_failure(&passes);
    let (fire_recovers, fire_passes) = (recovers.resolver(), passes.resolver());
    let list = DeferredList::new(vec![recovers, passes]).build();
    fire_recovers.errback(Boom(0));
    fire_passes.errback(Boom(1));
    let results = list.result().unwrap().unwrap();
    assert_eq!(results[0].as_ref().unwrap(), &99);
    let failure = results[1].as_ref().unwrap_err();
    let seen = seen.borrow_mut().take().expect("the errback ran");
    assert!(failure.ptr_eq(&seen));
}

#[test]
fn a_list_over_a_type_that_is_not_clone() {
    #[derive(Debug, PartialEq)]
    struct Token(u32); // not Clone

    let (ds, rs) = unfired::<Token>(3);
    let list = DeferredList::new(ds).build();
    rs[1].callback(Token(1));
    rs[0].errback(Boom(0));
    rs[2].callback(Token(2));
    let results = list.result().unwrap().unwrap();
    assert!(results[0].as_ref().unwrap_err().check::<Boom>());
    assert_eq!(results[1].as_ref().unwrap(), &Token(1));
    assert_eq!(results[2].as_ref().unwrap(), &Token(2));

    let (ds, rs) = unfired::<Token>(2);
    let first = DeferredList::new(ds).fire_on_one_callback();
    rs[1].callback(Token(7));
    let (token, index) = first.result().unwrap().unwrap();
    assert_eq!((token, index), (Token(7), 1));
    rs[0].callback(Token(0));

    let (ds, rs) = unfired::<Token>(2);
    let all = gather_results(ds);
    rs[1].callback(Token(11));
    rs[0].callback(Token(10));
    assert_eq!(all.result().unwrap().unwrap(), [Token(10), Token(11)]);
}

#[test]
fn fire_on_one_callback_fires_with_the_first_value_and_its_index() {
    let (ds, rs) = unfired::<&str>(3);
    let first = DeferredList::new(ds)
        .consume_errors(true)
        .fire_on_one_callback();
    rs[0].errback(Boom(0));
    assert!(!first.called(), "a failure does not fire it");
    rs[2].callback("two");
    assert_eq!(success_result_of(&first), ("two", 2));
    // Later results change nothing, and firing the input is still allowed.
    assert!(rs[1].try_callback("one").is_ok());
    assert_eq!(success_result_of(&first), ("two", 2));
}

#[test]
fn fire_on_one_callback_with_every_input_failed_gives_a_failure_group() {
    let (ds, rs) = unfired::<u32>(3);
    let first = DeferredList::new(ds)
        .consume_errors(true)
        .fire_on_one_callback();
    let booms: Vec<Failure> = (0..3).map(|i| Failure::from(Boom(i))).collect();
    for i in [2, 0, 1] {
        rs[i].errback(booms[i].clone());
    }
    let failure = first.result().unwrap().unwrap_err();
    let group = failure.downcast_ref::<FailureGroup>().unwrap();
    let order: Vec<_> = group
        .failures
        .iter()
        .map(|f| f.downcast_ref::<Boom>().unwrap().0)
        .collect();
    assert_eq!(order, [0, 1, 2], "input order, not the order they failed");
    assert!(group.failures.iter().zip(&booms).all(|(a, b)| a.ptr_eq(b)));
}

#[test]
fn fire_on_one_errback_fails_with_first_error_at_the_first_failure() {
    let before = unhandled_failures();
    let (ds, rs) = unfired::<u32>(3);
    let list = DeferredList::new(ds)
        .fire_on_one_errback(true)
        .consume_errors(true)
        .build();
    rs[0].callback(0);
    let boom = Failure::from(Boom(2));
    rs[2].errback(boom.clone());
    let failure = list.result().unwrap().unwrap_err();
    let first = failure.downcast_ref::<FirstError>().unwrap();
    assert_eq!(first.index, 2);
    assert!(first.failure.check::<Boom>());
    assert!(first.failure.ptr_eq(&boom), "the original failure");
    rs[1].errback(Boom(1)); // after the list fired: consumed
    drop((list, rs));
    assert_eq!(unhandled_failures(), before);
}

#[test]
fn first_error_display_names_the_index_and_the_failure_once() {
    let error = FirstError {
        index: 3,
        failure: Failure::new(Boom(9)),
    };
    assert_eq!(error.to_string(), "FirstError[#3, boom 9]");
    assert_eq!(error.failure.downcast_ref::<Boom>(), Some(&Boom(9)));
    assert_eq!(Failure::new(error).to_string(), "FirstError[#3, boom 9]");
}

#[test]
fn first_error_debug_is_twisted_s_repr() {
    let failure = Failure::from(Boom(9));
    let error = FirstError {
        index: 1,
        failure: failure.clone(),
    };
    let repr = format!("{error:?}");
    assert_eq!(repr, format!("FirstError[#1, {failure:?}]"));
    assert!(repr.starts_with("FirstError[#1, <Failure "), "{repr}");
    assert!(repr.ends_with("Boom: boom 9>]"), "{repr}");
}

#[test]
fn first_errors_are_equal_when_index_and_failure_are_the_same() {
    let failure = Failure::from(Boom(1));
    let error = FirstError {
        index: 0,
        failure: failure.clone(),
    };
    assert_eq!(error, error.clone());
    assert_eq!(
        error,
        FirstError {
            index: 0,
            failure: failure.clone()
        }
    );
    assert_ne!(
        error,
        FirstError {
            index: 1,
            failure: failure.clone()
        },
        "another index"
    );
    assert_ne!(
        error,
        FirstError {
            index: 0,
            failure: Failure::from(Boom(1))
        },
        "an equal-looking failure is another failure"
    );
}

#[test]
fn failure_group_display_lists_failures_in_order() {
    let group = FailureGroup {
        failures: vec![Failure::new(Boom(0)), Failure::new("late")],
    };
    assert_eq!(group.to_string(), "FailureGroup[#0: boom 0, #1: late]");
}

/// Twisted's input would go on holding the failure, unhandled; twill's
/// list delivers the input's very failure, and it is the list's consumer's
/// to handle: nothing is reported on the input's side.
#[test]
fn without_consume_errors_a_failure_the_list_delivers_is_not_reported() {
    let before = unhandled_failures();
    let d = Deferred::<u32>::new();
    let fire = d.resolver();
    let list = DeferredList::new(vec![d]).build();
    let boom = Failure::from(Boom(1));
    fire.errback(boom.clone());
    let results = list.result().unwrap().unwrap();
    let delivered = results[0].as_ref().unwrap_err();
    assert!(delivered.check::<Boom>());
    assert!(delivered.ptr_eq(&boom), "the input's very failure");
    drop((results, list, fire));
    assert_eq!(unhandled_failures(), before, "delivered, so not reported");
}

/// A failure the list cannot deliver, because it already fired, is
/// reported as unhandled when the input goes (Twisted: the input holds it,
/// unhandled).
#[test]
fn without_consume_errors_a_failure_after_the_list_fired_is_reported() {
    let before = unhandled_failures();
    let (ds, rs) = unfired::<u32>(2);
    let first = DeferredList::new(ds).fire_on_one_callback();
    rs[0].callback(0);
    assert_eq!(first.result().unwrap().unwrap(), (0, 0));
    rs[1].errback(Boom(1));
    drop((first, rs));
    assert_eq!(unhandled_failures(), before + 1);
}

#[test]
fn with_consume_errors_a_failure_after_the_list_fired_is_not_reported() {
    let before = unhandled_failures();
    let (ds, rs) = unfired::<u32>(2);
    let first = DeferredList::new(ds)
        .consume_errors(true)
        .fire_on_one_callback();
    rs[0].callback(0);
    assert_eq!(first.result().unwrap().unwrap(), (0, 0));
    rs[1].errback(Boom(1));
    drop((first, rs));
    assert_eq!(unhandled_failures(), before);
}

/// Twisted's input holds the failure unhandled when `consumeErrors` is off,
/// even if a later input wins a `fireOnOneCallback` list: a failure the
/// list takes and never delivers must not vanish.
#[test]

fn without_consume_errors_a_failure_before_the_winner_is_reported() {
    let before = unhandled_failures();
    let (ds, rs) = unfired::<u32>(2);
    let first = DeferredList::new(ds).fire_on_one_callback();
    rs[0].errback(Boom(0));
    rs[1].callback(1);
    assert_eq!(first.result().unwrap().unwrap(), (1, 1));
    drop((first, rs));
    assert_eq!(unhandled_failures(), before + 1);
}

#[test]
fn cancelling_the_list_cancels_every_input_not_yet_fired() {
    let log = Log::default();
    let ds: Vec<Deferred<u32>> = (0..3).map(|i| cancellable(&log, i)).collect();
    let rs = resolvers(&ds);
    let list = DeferredList::new(ds).consume_errors(true).build();
    rs[1].callback(1);
    list.cancel();
    assert_eq!(*log.borrow(), [0, 2], "the fired input is not cancelled");
    let results = list
        .result()
        .unwrap()
        .expect("the list fires with its inputs' results");
    assert!(results[0].as_ref().unwrap_err().check::<CancelledError>());
    assert_eq!(results[1].as_ref().unwrap(), &1);
    assert!(results[2].as_ref().unwrap_err().check::<CancelledError>());
}

#[test]
fn a_cancelled_input_gives_the_list_the_very_cancelled_error_its_errback_saw() {
    // Cancelled through the list.
    let d = Deferred::<u32>::new();
    let seen = keep_failure(&d);
    let list = DeferredList::new(vec![d]).build();
    list.cancel();
    let results = list.result().unwrap().unwrap();
    let delivered = results[0].as_ref().unwrap_err();
    assert!(delivered.check::<CancelledError>());
    let seen = seen.borrow_mut().take().expect("the input's errback ran");
    assert!(delivered.ptr_eq(&seen));

    // Cancelled before it was listed.
    let d = Deferred::<u32>::new();
    let seen = keep_failure(&d);
    d.cancel();
    let list = DeferredList::new(vec![d, succeed(1)]).build();
    let results = list.result().unwrap().unwrap();
    let delivered = results[0].as_ref().unwrap_err();
    assert!(delivered.check::<CancelledError>());
    assert!(delivered.ptr_eq(seen.borrow().as_ref().unwrap()));
    assert_eq!(results[1].as_ref().unwrap(), &1);
}

#[test]
fn a_cancelled_gather_input_gives_the_very_cancelled_error_its_errback_saw() {
    let (a, b) = (Deferred::<u32>::new(), Deferred::<u32>::new());
    let seen = keep_failure(&a);
    let all = gather_results_consume_errors(vec![a, b]);
    all.cancel();
    let failure = failure_result_of(&all);
    let first = failure.downcast_ref::<FirstError>().unwrap();
    assert_eq!(first.index, 0);
    assert!(first.failure.check::<CancelledError>());
    let seen = seen.borrow_mut().take().expect("the input's errback ran");
    assert!(first.failure.ptr_eq(&seen));
}

#[test]
fn cancelling_a_list_that_fired_does_nothing() {
    let log = Log::default();
    let ds: Vec<Deferred<u32>> = (0..2).map(|i| cancellable(&log, i)).collect();
    let rs = resolvers(&ds);
    let first = DeferredList::new(ds).fire_on_one_callback();
    rs[0].callback(0);
    first.cancel();
    assert!(log.borrow().is_empty());
    assert!(!rs[1].called());
    assert_eq!(first.result().unwrap().unwrap(), (0, 0));
    rs[1].callback(1);
}

/// Twisted logs what a member's canceller raised and cancels the others.
#[test]
fn a_panicking_input_canceller_is_logged_and_the_others_are_still_cancelled() {
    capture_logs();
    let log = Log::default();
    let bad = Deferred::<u32>::with_canceller(|_| panic!("canceller bug 3f7a"));
    let fire_bad = bad.resolver();
    let good = cancellable(&log, 1);
    let fire_good = good.resolver();
    let list = DeferredList::new(vec![bad, good])
        .consume_errors(true)
        .build();
    list.cancel();
    assert_eq!(*log.borrow(), [1], "the other input's canceller ran");
    assert!(fire_good.called());
    let lines = logged("canceller bug 3f7a");
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("input #0"), "{}", lines[0]);
    assert!(!fire_bad.called(), "its cancel panicked before the errback");
}

/// The input whose canceller panicked is left unfired (Twisted's `cancel`
/// raised before its errback), and Twisted's `DeferredList.cancel` only
/// cancels the members: the list fires as its inputs make it fire, as
/// `DeferredList`'s documentation says.
#[test]

fn a_list_whose_input_canceller_panicked_waits_for_that_input() {
    capture_logs();
    let bad = Deferred::<u32>::with_canceller(|_| panic!("canceller bug 81c0"));
    let fire_bad = bad.resolver();
    let list = DeferredList::new(vec![bad, Deferred::new()]).build();
    list.cancel();
    assert!(!fire_bad.called());
    assert_no_result(&list);
    fire_bad.callback(5);
    let results = list.result().unwrap().unwrap();
    assert_eq!(results[0].as_ref().unwrap(), &5);
    assert!(results[1].as_ref().unwrap_err().check::<CancelledError>());
}

#[test]
fn cancelling_the_list_reaches_an_input_waiting_on_an_inner_deferred() {
    let log = Log::default();
    let inner = cancellable::<u32>(&log, 7);
    let fire_inner = inner.resolver(); // whoever would produce its result
    let d = Deferred::<u32>::new();
    d.add_callback(move |_| inner);
    d.callback(0);
    let list = DeferredList::new(vec![d]).consume_errors(true).build();
    list.cancel();
    assert_eq!(*log.borrow(), [7]);
    assert!(fire_inner.called());
    let results = list.result().unwrap().unwrap();
    assert!(results[0].as_ref().unwrap_err().check::<CancelledError>());
}

/// Twisted forwards `cancel` to the inner Deferred and runs its canceller,
/// whether or not anything else refers to the inner one; a canceller that
/// calls back makes the outer Deferred (and so the list) get its value.
#[test]

fn cancelling_the_list_runs_the_canceller_of_an_inner_deferred_nobody_else_holds() {
    let log = Log::default();
    let inner_log = log.clone();
    let inner = Deferred::<u32>::with_canceller(move |r: &Resolver<u32>| {
        inner_log.borrow_mut().push(7);
        r.callback(70);
    });
    let d = Deferred::<u32>::new();
    d.add_callback(move |_| inner);
    d.callback(0);
    let list = DeferredList::new(vec![d]).build();
    list.cancel();
    assert_eq!(*log.borrow(), [7]);
    let results = list.result().unwrap().unwrap();
    assert_eq!(results[0].as_ref().unwrap(), &70);
}

// -------------------------------------------------------------- gather_results

#[test]
fn gather_results_gives_plain_values_in_input_order() {
    let (ds, rs) = unfired::<u32>(3);
    let all = gather_results(ds);
    for i in [1, 2, 0] {
        assert_no_result(&all);
        rs[i].callback(i as u32 * 10);
    }
    assert_eq!(all.result().unwrap().unwrap(), [0, 10, 20]);
}

#[test]
fn gather_results_of_nothing_is_an_empty_vec() {
    assert!(gather_results::<u32>(Vec::new())
        .result()
        .unwrap()
        .unwrap()
        .is_empty());
}

#[test]
fn gather_results_fails_with_first_error_index_and_sub_failure() {
    let (ds, rs) = unfired::<u32>(3);
    let all = gather_results_consume_errors(ds);
    rs[0].callback(0);
    let boom = Failure::from(Boom(2));
    rs[2].errback(boom.clone());
    let failure = all.result().unwrap().unwrap_err();
    let first = failure.trap::<FirstError>().unwrap();
    assert_eq!(first.index, 2);
    assert_eq!(first.failure.downcast_ref::<Boom>(), Some(&Boom(2)));
    assert!(first.failure.ptr_eq(&boom), "the original failure");
    assert_eq!(first.to_string(), "FirstError[#2, boom 2]");
    rs[1].callback(1);
}

/// The first failure reaches the consumer inside the FirstError; one after
/// the gather fired is reported when its input goes.
#[test]
fn gather_results_without_consume_errors_reports_failures_after_it_fired() {
    let before = unhandled_failures();
    let (ds, rs) = unfired::<u32>(3);
    let all = gather_results(ds);
    rs[0].errback(Boom(0)); // delivered inside the FirstError
    rs[1].errback(Boom(1)); // after the gather fired
    rs[2].errback(Boom(2)); // after the gather fired
    let failure = all.result().unwrap().unwrap_err();
    assert_eq!(failure.downcast_ref::<FirstError>().unwrap().index, 0);
    drop(all);
    drop(rs);
    assert_eq!(unhandled_failures(), before + 2);
}

#[test]
fn gather_results_consume_errors_leaves_nothing_unhandled() {
    let before = unhandled_failures();
    let (ds, rs) = unfired::<u32>(3);
    let all = gather_results_consume_errors(ds);
    rs[0].errback(Boom(0));
    rs[1].errback(Boom(1));
    rs[2].errback(Boom(2));
    assert!(all.result().unwrap().is_err());
    drop(all);
    drop(rs);
    assert_eq!(unhandled_failures(), before);
}

/// Dropped without anyone taking its result, a gather reports its own
/// FirstError; without `consume_errors` each input failure that came after
/// it fired is reported too.
#[test]
fn dropping_a_gather_whose_inputs_failed_after_it_fired() {
    let before = unhandled_failures();
    let (ds, rs) = unfired::<u32>(2);
    let all = gather_results(ds);
    rs[0].errback(Boom(0));
    rs[1].errback(Boom(1));
    drop((all, rs));
    assert_eq!(
        unhandled_failures(),
        before + 2,
        "the gather's and input 1's"
    );

    let before = unhandled_failures();
    let (ds, rs) = unfired::<u32>(2);
    let all = gather_results_consume_errors(ds);
    rs[0].errback(Boom(0));
    rs[1].errback(Boom(1));
    drop((all, rs));
    assert_eq!(unhandled_failures(), before + 1, "the gather's own only");
}

#[test]
fn cancelling_gather_results_cancels_all_and_fails_with_first_error() {
    let log = Log::default();
    let ds: Vec<Deferred<u32>> = (0..3).map(|i| cancellable(&log, i)).collect();
    let all = gather_results_consume_errors(ds);
    all.cancel();
    assert_eq!(*log.borrow(), [0, 1, 2]);
    let failure = all.result().unwrap().unwrap_err();
    let first = failure.downcast_ref::<FirstError>().unwrap();
    assert_eq!(first.index, 0);
    assert!(first.failure.check::<CancelledError>());
}

#[test]
fn cancelling_gather_results_succeeds_if_every_canceller_gives_a_value() {
    let ds: Vec<Deferred<u32>> = (0..3)
        .map(|i| Deferred::with_canceller(move |r: &Resolver<u32>| r.callback(i * 100)))
        .collect();
    let all = gather_results(ds);
    assert_no_result(&all);
    all.cancel();
    assert_eq!(all.result().unwrap().unwrap(), [0, 100, 200]);
}

// ------------------------------------------------------------------------ race

#[test]
fn race_fires_with_the_first_success_and_cancels_the_others() {
    let log = Log::default();
    let ds: Vec<Deferred<&str>> = (0..3).map(|i| cancellable(&log, i)).collect();
    let rs = resolvers(&ds);
    let winner = race(ds);
    rs[1].callback("one");
    assert_eq!(winner.result().unwrap().unwrap(), (1, "one"));
    assert_eq!(*log.borrow(), [0, 2], "the winner is not cancelled");
    assert!(rs[0].called() && rs[2].called());
}

#[test]
fn race_ignores_failures_before_the_first_success() {
    let (ds, rs) = unfired::<u32>(2);
    let winner = race(ds);
    rs[0].errback(Boom(0));
    assert!(!winner.called());
    rs[1].callback(1);
    assert_eq!(winner.result().unwrap().unwrap(), (1, 1));
}

#[test]
fn race_with_every_input_failed_gives_a_failure_group_in_index_order() {
    let (ds, rs) = unfired::<u32>(3);
    let winner = race(ds);
    let booms: Vec<Failure> = (0..3).map(|i| Failure::from(Boom(i))).collect();
    for i in [2, 0, 1] {
        rs[i].errback(booms[i].clone());
    }
    let failure = winner.result().unwrap().unwrap_err();
    let group = failure.trap::<FailureGroup>().unwrap();
    let order: Vec<_> = group
        .failures
        .iter()
        .map(|f| f.downcast_ref::<Boom>().unwrap().0)
        .collect();
    assert_eq!(order, [0, 1, 2]);
    assert!(group.failures.iter().zip(&booms).all(|(a, b)| a.ptr_eq(b)));
}

#[test]
fn cancelling_the_race_cancels_every_input() {
    let log = Log::default();
    let ds: Vec<Deferred<u32>> = (0..3).map(|i| cancellable(&log, i)).collect();
    let winner = race(ds);
    winner.cancel();
    assert_eq!(*log.borrow(), [0, 1, 2]);
    let failure = winner.result().unwrap().unwrap_err();
    let group = failure.downcast_ref::<FailureGroup>().unwrap();
    assert_eq!(group.failures.len(), 3);
    assert!(group.failures.iter().all(|f| f.check::<CancelledError>()));
}

#[test]
fn race_results_after_the_winner_are_ignored_without_a_report() {
    let before = unhandled_failures();
    // A loser whose canceller does not fire it; it fails later on its own.
    let stubborn = Deferred::<u32>::new();
    let late_value = Deferred::<u32>::with_canceller(|r| r.callback(99));
    let first = Deferred::<u32>::new();
    let (fire_stubborn, fire_late, fire_first) =
        (stubborn.resolver(), late_value.resolver(), first.resolver());
    let winner = race(vec![first, stubborn, late_value]);
    fire_first.callback(1);
    assert_eq!(winner.result().unwrap().unwrap(), (0, 1));
    assert!(fire_late.called(), "its canceller gave it a value");
    // stubborn was cancelled without a canceller: one late firing is
    // swallowed, and its CancelledError was dropped by the race.
    assert!(fire_stubborn.try_errback(Boom(1)).is_ok());
    drop((fire_stubborn, fire_late, fire_first, winner));
    assert_eq!(unhandled_failures(), before);
}

#[test]
fn race_needs_no_clone_and_of_nothing_never_fires() {
    struct Token(u32); // not Clone
    let (ds, rs) = unfired::<Token>(2);
    let winner = race(ds);
    rs[0].callback(Token(5));
    let (index, token) = winner.result().unwrap().unwrap();
    assert_eq!((index, token.0), (0, 5));

    let empty = race::<u32>(Vec::new());
    assert!(!empty.called());
    assert_no_result(&empty);
}
