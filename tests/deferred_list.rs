//! DeferredList, gather_results, FirstError and race, rule by rule
//! (Twisted's `defer.DeferredList`, `gatherResults`, `race`; reference
//! §1.13 and the list rules of §1.9).

use std::cell::{Cell, RefCell};
use std::fmt;
use std::rc::Rc;

use twill::defer::{
    fail, gather_results, gather_results_consume_errors, race, succeed, unhandled_failures,
    CancelledError, Deferred, DeferredList, Failure, FailureGroup, FirstError, ListedFailure,
};

#[derive(Debug, PartialEq)]
struct Boom(u32);

impl fmt::Display for Boom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "boom {}", self.0)
    }
}

impl std::error::Error for Boom {}

type Log = Rc<RefCell<Vec<usize>>>;

/// A Deferred whose canceller records `index` in `log` (and does not fire
/// it, so the chain fails it with CancelledError).
fn cancellable<T: 'static>(log: &Log, index: usize) -> Deferred<T> {
    let log = log.clone();
    Deferred::with_canceller(move |_| log.borrow_mut().push(index))
}

fn values<T: Clone>(results: &[Result<T, Failure>]) -> Vec<Option<T>> {
    results.iter().map(|r| r.as_ref().ok().cloned()).collect()
}

// ---------------------------------------------------------------- DeferredList

#[test]
fn list_fires_when_all_inputs_fired_with_results_in_input_order() {
    let ds: Vec<Deferred<u32>> = (0..3).map(|_| Deferred::new()).collect();
    let list = DeferredList::new(ds.clone()).build();
    ds[2].callback(2);
    ds[0].callback(0);
    assert!(list.result().is_none(), "fired before every input did");
    ds[1].callback(1);
    let results = list.result().unwrap().unwrap();
    assert_eq!(values(&results), [Some(0), Some(1), Some(2)]);
}

#[test]
fn list_failure_is_an_err_entry_not_a_list_failure() {
    let ds: Vec<Deferred<u32>> = (0..2).map(|_| Deferred::new()).collect();
    let list = DeferredList::new(ds.clone()).consume_errors(true).build();
    ds[0].errback(Boom(7));
    ds[1].callback(1);
    let results = list.result().unwrap().expect("the list itself succeeds");
    let failure = results[0].as_ref().unwrap_err();
    assert_eq!(
        failure.downcast_ref::<Boom>(),
        Some(&Boom(7)),
        "the original failure"
    );
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
}

#[test]
fn already_fired_inputs_are_processed_while_building() {
    let list = DeferredList::new(vec![succeed(1), succeed(2)]).build();
    assert_eq!(values(&list.result().unwrap().unwrap()), [Some(1), Some(2)]);

    let pending = Deferred::<u32>::new();
    let failed = fail::<u32>(Boom(1));
    let list = DeferredList::new(vec![pending.clone(), failed])
        .fire_on_one_errback(true)
        .consume_errors(true)
        .build();
    assert!(list.called(), "errbacked inside the constructor");
    let failure = list.result().unwrap().unwrap_err();
    assert_eq!(failure.downcast_ref::<FirstError>().unwrap().index, 1);
    pending.callback(0);
}

#[test]
fn callbacks_already_on_inputs_run_before_the_list_sees_the_result() {
    let d = Deferred::new();
    d.add_callback(|n: u32| Ok(n * 10));
    let list = DeferredList::new(vec![d.clone()]).build();
    d.callback(4);
    assert_eq!(values(&list.result().unwrap().unwrap()), [Some(40)]);
}

#[test]
fn callbacks_added_to_inputs_later_see_the_value_the_list_passes_on() {
    let d = Deferred::new();
    let list = DeferredList::new(vec![d.clone()]).build();
    let seen = Rc::new(Cell::new(0));
    let sink = seen.clone();
    d.add_callback(move |n: u32| {
        sink.set(n);
        Ok(n)
    });
    d.callback(5);
    assert_eq!(seen.get(), 5);
    assert_eq!(values(&list.result().unwrap().unwrap()), [Some(5)]);
    assert_eq!(
        d.result().unwrap().unwrap(),
        5,
        "the input still holds its value"
    );
}

#[test]
fn fire_on_one_callback_fires_with_the_first_value_and_its_index() {
    let ds: Vec<Deferred<&str>> = (0..3).map(|_| Deferred::new()).collect();
    let first = DeferredList::new(ds.clone())
        .consume_errors(true)
        .fire_on_one_callback();
    ds[0].errback(Boom(0));
    assert!(!first.called(), "a failure does not fire it");
    ds[2].callback("two");
    assert_eq!(first.result().unwrap().unwrap(), ("two", 2));
    // Later results change nothing.
    ds[1].callback("one");
    assert_eq!(ds[1].result().unwrap().unwrap(), "one");
}

#[test]
fn fire_on_one_callback_with_every_input_failed_gives_a_failure_group() {
    let ds: Vec<Deferred<u32>> = (0..3).map(|_| Deferred::new()).collect();
    let first = DeferredList::new(ds.clone())
        .consume_errors(true)
        .fire_on_one_callback();
    ds[2].errback(Boom(2));
    ds[0].errback(Boom(0));
    ds[1].errback(Boom(1));
    let failure = first.result().unwrap().unwrap_err();
    let group = failure.downcast_ref::<FailureGroup>().unwrap();
    let order: Vec<_> = group
        .failures
        .iter()
        .map(|f| f.downcast_ref::<Boom>().unwrap().0)
        .collect();
    assert_eq!(order, [0, 1, 2], "input order, not the order they failed");
}

#[test]
fn fire_on_one_errback_fails_with_first_error_at_the_first_failure() {
    let ds: Vec<Deferred<u32>> = (0..3).map(|_| Deferred::new()).collect();
    let list = DeferredList::new(ds.clone())
        .fire_on_one_errback(true)
        .consume_errors(true)
        .build();
    ds[0].callback(0);
    ds[2].errback(Boom(2));
    let failure = list.result().unwrap().unwrap_err();
    let first = failure.downcast_ref::<FirstError>().unwrap();
    assert_eq!(first.index, 2);
    assert!(first.failure.check::<Boom>(), "the original failure");
    ds[1].errback(Boom(1)); // after the list fired: nothing happens
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
fn failure_group_display_lists_failures_in_order() {
    let group = FailureGroup {
        failures: vec![Failure::new(Boom(0)), Failure::new("late")],
    };
    assert_eq!(group.to_string(), "FailureGroup[#0: boom 0, #1: late]");
}

#[test]
fn without_consume_errors_the_input_still_holds_an_unhandled_failure() {
    let before = unhandled_failures();
    let d = Deferred::<u32>::new();
    let list = DeferredList::new(vec![d.clone()]).build();
    d.errback(Boom(1));
    let results = list.result().unwrap().unwrap();
    assert!(results[0].as_ref().unwrap_err().check::<Boom>());
    drop(results);
    assert_eq!(unhandled_failures(), before, "not reported while d lives");
    drop(d);
    assert_eq!(
        unhandled_failures(),
        before + 1,
        "d was dropped holding a failure"
    );
}

#[test]
fn without_consume_errors_errbacks_added_later_see_the_failure() {
    let d = Deferred::<u32>::new();
    let _list = DeferredList::new(vec![d.clone()]).build();
    d.errback(Boom(4));
    let seen = Rc::new(RefCell::new(None));
    let sink = seen.clone();
    d.add_errback(move |failure| {
        *sink.borrow_mut() = failure.downcast_ref::<ListedFailure>().cloned();
        Ok(0)
    });
    let listed = seen.borrow_mut().take().expect("the errback ran");
    assert_eq!(listed.index, 0);
    assert_eq!(listed.message, "boom 4");
    assert!(listed.to_string().starts_with("boom 4"));
}

#[test]
fn with_consume_errors_the_input_failure_is_handled() {
    let before = unhandled_failures();
    let d = Deferred::<u32>::new();
    let list = DeferredList::new(vec![d.clone()])
        .consume_errors(true)
        .build();
    d.errback(Boom(1));
    let ran = Rc::new(Cell::new(false));
    let flag = ran.clone();
    d.add_errback(move |failure| {
        flag.set(true);
        Err(failure)
    });
    assert!(!ran.get(), "errbacks added later do not see the failure");
    drop((d, list));
    assert_eq!(unhandled_failures(), before);
}

#[test]
fn failures_arriving_after_the_list_fired_stay_on_their_inputs() {
    let before = unhandled_failures();
    let ds: Vec<Deferred<u32>> = (0..2).map(|_| Deferred::new()).collect();
    let first = DeferredList::new(ds.clone()).fire_on_one_callback();
    ds[0].callback(0);
    assert_eq!(first.result().unwrap().unwrap(), (0, 0));
    ds[1].errback(Boom(1));
    let failure = ds[1].result().unwrap().unwrap_err();
    assert!(failure.check::<Boom>(), "the input keeps the original");
    drop(ds);
    assert_eq!(unhandled_failures(), before);
}

#[test]
fn cancelling_the_list_cancels_every_input_not_yet_fired() {
    let log = Log::default();
    let ds: Vec<Deferred<u32>> = (0..3).map(|i| cancellable(&log, i)).collect();
    let list = DeferredList::new(ds.clone()).consume_errors(true).build();
    ds[1].callback(1);
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
fn cancelling_a_list_that_fired_does_nothing() {
    let log = Log::default();
    let ds: Vec<Deferred<u32>> = (0..2).map(|i| cancellable(&log, i)).collect();
    let first = DeferredList::new(ds.clone()).fire_on_one_callback();
    ds[0].callback(0);
    first.cancel();
    assert!(log.borrow().is_empty());
    assert!(!ds[1].called());
    assert_eq!(first.result().unwrap().unwrap(), (0, 0));
    ds[1].callback(1);
}

#[test]
fn a_panicking_input_canceller_is_logged_and_the_others_are_still_cancelled() {
    let log = Log::default();
    let bad = Deferred::<u32>::with_canceller(|_| panic!("canceller bug"));
    let good = cancellable(&log, 1);
    let list = DeferredList::new(vec![bad.clone(), good.clone()])
        .consume_errors(true)
        .build();
    list.cancel();
    assert_eq!(*log.borrow(), [1]);
    let results = list.result().unwrap().unwrap();
    assert!(results
        .iter()
        .all(|r| r.as_ref().unwrap_err().check::<CancelledError>()));
}

#[test]
fn cancelling_the_list_reaches_an_input_waiting_on_an_inner_deferred() {
    let log = Log::default();
    let inner = cancellable::<u32>(&log, 7);
    let d = Deferred::<u32>::new();
    let waiting = inner.clone();
    d.add_callback(move |_| waiting);
    d.callback(0);
    let list = DeferredList::new(vec![d]).consume_errors(true).build();
    list.cancel();
    assert_eq!(*log.borrow(), [7]);
    let results = list.result().unwrap().unwrap();
    assert!(results[0].as_ref().unwrap_err().check::<CancelledError>());
}

// -------------------------------------------------------------- gather_results

#[test]
fn gather_results_gives_plain_values_in_input_order() {
    let ds: Vec<Deferred<u32>> = (0..3).map(|_| Deferred::new()).collect();
    let all = gather_results(ds.clone());
    for i in [1, 2, 0] {
        ds[i].callback(i as u32 * 10);
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
    let ds: Vec<Deferred<u32>> = (0..3).map(|_| Deferred::new()).collect();
    let all = gather_results_consume_errors(ds.clone());
    ds[0].callback(0);
    ds[2].errback(Boom(2));
    let failure = all.result().unwrap().unwrap_err();
    let first = failure.trap::<FirstError>().unwrap();
    assert_eq!(first.index, 2);
    assert_eq!(first.failure.downcast_ref::<Boom>(), Some(&Boom(2)));
    assert_eq!(first.to_string(), "FirstError[#2, boom 2]");
    ds[1].callback(1);
}

#[test]
fn gather_results_without_consume_errors_leaves_every_failure_unhandled() {
    let before = unhandled_failures();
    let ds: Vec<Deferred<u32>> = (0..2).map(|_| Deferred::new()).collect();
    let all = gather_results(ds.clone());
    ds[0].errback(Boom(0)); // taken by the gather; the input keeps a copy
    ds[1].errback(Boom(1)); // after the gather fired: stays on the input
    assert!(all.result().unwrap().is_err());
    drop(ds);
    assert_eq!(unhandled_failures(), before + 2);
}

#[test]
fn gather_results_consume_errors_leaves_nothing_unhandled() {
    let before = unhandled_failures();
    let ds: Vec<Deferred<u32>> = (0..2).map(|_| Deferred::new()).collect();
    let all = gather_results_consume_errors(ds.clone());
    ds[0].errback(Boom(0));
    ds[1].errback(Boom(1));
    assert!(all.result().unwrap().is_err());
    drop(ds);
    assert_eq!(unhandled_failures(), before);
}

#[test]
fn cancelling_gather_results_cancels_all_and_fails_with_first_error() {
    let log = Log::default();
    let ds: Vec<Deferred<u32>> = (0..3).map(|i| cancellable(&log, i)).collect();
    let all = gather_results_consume_errors(ds.clone());
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
        .map(|i| Deferred::with_canceller(move |d: &Deferred<u32>| d.callback(i * 100)))
        .collect();
    let all = gather_results(ds);
    all.cancel();
    assert_eq!(all.result().unwrap().unwrap(), [0, 100, 200]);
}

// ------------------------------------------------------------------------ race

#[test]
fn race_fires_with_the_first_success_and_cancels_the_others() {
    let log = Log::default();
    let ds: Vec<Deferred<&str>> = (0..3).map(|i| cancellable(&log, i)).collect();
    let winner = race(ds.clone());
    ds[1].callback("one");
    assert_eq!(winner.result().unwrap().unwrap(), (1, "one"));
    assert_eq!(*log.borrow(), [0, 2], "the winner is not cancelled");
}

#[test]
fn race_ignores_failures_before_the_first_success() {
    let ds: Vec<Deferred<u32>> = (0..2).map(|_| Deferred::new()).collect();
    let winner = race(ds.clone());
    ds[0].errback(Boom(0));
    assert!(!winner.called());
    ds[1].callback(1);
    assert_eq!(winner.result().unwrap().unwrap(), (1, 1));
}

#[test]
fn race_with_every_input_failed_gives_a_failure_group_in_index_order() {
    let ds: Vec<Deferred<u32>> = (0..3).map(|_| Deferred::new()).collect();
    let winner = race(ds.clone());
    for i in [2, 0, 1] {
        ds[i].errback(Boom(i as u32));
    }
    let failure = winner.result().unwrap().unwrap_err();
    let group = failure.trap::<FailureGroup>().unwrap();
    let order: Vec<_> = group
        .failures
        .iter()
        .map(|f| f.downcast_ref::<Boom>().unwrap().0)
        .collect();
    assert_eq!(order, [0, 1, 2]);
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
    let late_value = Deferred::<u32>::with_canceller(|d| d.callback(99));
    let first = Deferred::<u32>::new();
    let winner = race(vec![first.clone(), stubborn.clone(), late_value.clone()]);
    first.callback(1);
    assert_eq!(winner.result().unwrap().unwrap(), (0, 1));
    // stubborn was cancelled without a canceller: one late firing is
    // swallowed, then its CancelledError was consumed by the race.
    stubborn.errback(Boom(1));
    drop((stubborn, late_value, first, winner));
    assert_eq!(unhandled_failures(), before);
}

#[test]
fn race_needs_no_clone_and_of_nothing_never_fires() {
    struct Token(u32); // not Clone
    let ds: Vec<Deferred<Token>> = (0..2).map(|_| Deferred::new()).collect();
    let winner = race(ds.clone());
    ds[0].callback(Token(5));
    let (index, token) = winner.result().unwrap().unwrap();
    assert_eq!((index, token.0), (0, 5));

    let empty = race::<u32>(Vec::new());
    assert!(!empty.called());
}
