//! Seeing into Deferreds (Twisted's rules 1.10, 1.17, 1.18 and its test
//! helpers): `Debug` as Twisted's `repr`, debug mode's creation and firing
//! sites, `chained_to`, `add_timeout`'s `onTimeoutCancel` hook, failures
//! shared by identity, a panicking canceller, and the non-consuming
//! `success_result_of` / `failure_result_of` / `assert_no_result`.

use std::cell::{Cell, RefCell};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::time::Duration;

mod support;

use support::{capture_logs, logged};
use twill::defer::{
    fail, gather_results, get_debugging, set_debugging, succeed, unhandled_failures,
    CancelledError, Deferred, Failure, FirstError, TimeoutError,
};
use twill::task::Clock;
use twill::testing::{assert_no_result, failure_result_of, success_result_of};

#[test]
fn debug_is_twisted_repr() {
    let d: Deferred<&str> = Deferred::new();
    let unfired = format!("{d:?}");
    assert!(
        unfired.starts_with("<Deferred at 0x") && unfired.ends_with('>'),
        "{unfired}"
    );
    assert_eq!(unfired, format!("<{:?}>", d.id()));
    d.callback("orange");
    assert!(
        format!("{d:?}").ends_with(" current result: \"orange\">"),
        "{d:?}"
    );

    let failed: Deferred<()> = fail(Failure::new("no"));
    let text = format!("{failed:?}");
    assert!(text.contains(" current result: <Failure no>"), "{text}");
    let _ = failed.result();

    let inner: Deferred<i32> = Deferred::new();
    let inner_id = format!("{:?}", inner.id());
    let fire_inner = inner.resolver();
    let outer = succeed(0);
    outer.add_callback(move |_| inner);
    let text = format!("{outer:?}");
    assert!(
        text.ends_with(&format!(" waiting on {inner_id}>")),
        "{text} / {inner_id}"
    );
    fire_inner.callback(1);
}

#[test]
fn first_error_prints_its_index_and_failure() {
    let failure = Failure::from(CancelledError);
    let first = FirstError {
        index: 3,
        failure: failure.clone(),
    };
    assert_eq!(
        first.to_string(),
        "FirstError[#3, the Deferred was cancelled]"
    );
    assert_eq!(
        format!("{first:?}"),
        "FirstError[#3, <Failure CancelledError: the Deferred was cancelled>]"
    );
    assert_eq!(
        first,
        FirstError {
            index: 3,
            failure: failure.clone()
        }
    );
    assert_ne!(first, FirstError { index: 2, failure });
}

/// One test for everything debug mode does: the switch is global, so two
/// tests flipping it would race.
#[test]
fn debug_mode_names_where_a_deferred_was_made_and_first_fired() {
    capture_logs();
    set_debugging(true);
    assert!(get_debugging());
    let d = Deferred::new();
    d.callback(1);
    let err = d.try_callback(2).unwrap_err();
    let lost: Deferred<()> = Deferred::new();
    lost.errback(Failure::new("lost in debug mode"));
    drop(lost);
    set_debugging(false);
    let report = logged("lost in debug mode");
    assert_eq!(report.len(), 1, "{report:?}");
    assert!(report[0].starts_with("ERROR Unhandled error in Deferred: lost in debug mode"));
    assert!(report[0].contains("(debug:") && report[0].contains(" C: created at"));
    assert!(report[0].contains(" I: first fired at") && report[0].contains(file!()));
    let text = err.to_string();
    let here = file!();
    let created = text.find(" C: created at").expect("creator");
    let fired = text.find(" I: first fired at").expect("first invoker");
    assert!(created < fired, "{text}");
    assert!(
        text.matches(here).count() >= 2,
        "both sites are in this file: {text}"
    );

    let quiet = Deferred::new();
    quiet.callback(1);
    let err = quiet.try_callback(2).unwrap_err();
    assert_eq!(
        err.to_string(),
        "AlreadyCalledError: the Deferred was already fired"
    );
}

#[test]
fn chained_to_names_the_deferred_waited_on_until_it_resolves() {
    let inner: Deferred<i32> = Deferred::new();
    let (inner_id, fire_inner) = (inner.id(), inner.resolver());
    let outer = succeed(0);
    assert_eq!(outer.chained_to(), None);
    outer.add_callback(move |_| inner);
    assert_eq!(outer.chained_to(), Some(inner_id));
    fire_inner.callback(5);
    assert_eq!(outer.chained_to(), None);
    assert_eq!(success_result_of(&outer), 5);
}

#[test]
fn on_timeout_cancel_is_not_called_without_a_timeout() {
    let clock = Clock::new();
    let called = Rc::new(Cell::new(false));

    let early: Deferred<i32> = Deferred::new();
    let c = called.clone();
    early.add_timeout_with(Duration::from_secs(1), &clock, move |r, _| {
        c.set(true);
        r
    });
    early.callback(1);
    assert!(clock.delayed_calls().is_empty(), "the timer was cancelled");
    assert_eq!(success_result_of(&early), 1);

    let cancelled: Deferred<i32> = Deferred::new();
    let c = called.clone();
    cancelled.add_timeout_with(Duration::from_secs(1), &clock, move |r, _| {
        c.set(true);
        r
    });
    cancelled.cancel();
    assert!(
        failure_result_of(&cancelled).check::<CancelledError>(),
        "a manual cancel is not a timeout"
    );
    clock.advance(Duration::from_secs(2));
    assert!(!called.get());
}

#[test]
fn one_failure_can_fail_several_deferreds_and_stays_itself() {
    let failure = Failure::new("shared");
    let (a, b): (Deferred<()>, Deferred<()>) = (Deferred::new(), Deferred::new());
    a.errback(failure.clone());
    b.errback(failure.clone());
    assert!(failure_result_of(&a).ptr_eq(&failure));
    assert!(failure_result_of(&b).ptr_eq(&failure));
    assert_eq!(failure_result_of(&a), failure_result_of(&b));
    assert_ne!(
        Failure::new("shared"),
        failure,
        "equal text is not the same failure"
    );
    let trapped = failure.trap::<CancelledError>().unwrap_err();
    assert!(trapped.ptr_eq(&failure), "trap passes the same failure on");
}

#[test]
fn a_gathered_cancel_is_the_input_failure_itself() {
    let input: Deferred<i32> = Deferred::new();
    let seen = Rc::new(RefCell::new(None));
    let sink = seen.clone();
    input.add_errback(move |f| {
        *sink.borrow_mut() = Some(f.clone());
        Err(f)
    });
    let all = gather_results(vec![input]);
    all.cancel();
    let failure = failure_result_of(&all);
    let first = failure.downcast_ref::<FirstError>().unwrap();
    assert!(first.failure.check::<CancelledError>());
    assert!(first.failure.trap::<CancelledError>().is_ok());
    assert!(first.failure.ptr_eq(seen.borrow().as_ref().unwrap()));
}

#[test]
fn a_panicking_canceller_panics_out_of_cancel_and_leaves_the_deferred_unfired() {
    let d: Deferred<i32> = Deferred::with_canceller(|_| panic!("canceller broke"));
    let panic = catch_unwind(AssertUnwindSafe(|| d.cancel())).unwrap_err();
    assert_eq!(panic.downcast_ref::<&str>(), Some(&"canceller broke"));
    assert!(!d.called());
    assert_no_result(&d);
    // The canceller is spent: a second cancel fails it.
    d.cancel();
    assert!(failure_result_of(&d).check::<CancelledError>());
}

#[test]
fn result_helpers_look_without_taking() {
    let d = succeed(vec![1, 2]);
    assert_eq!(success_result_of(&d), [1, 2]);
    assert_eq!(success_result_of(&d), [1, 2]);
    assert_eq!(d.result().unwrap().unwrap(), [1, 2], "still there to take");

    let before = unhandled_failures();
    let failed: Deferred<()> = fail(Failure::new("looked at"));
    let first = failure_result_of(&failed);
    assert!(failure_result_of(&failed).ptr_eq(&first));
    drop(failed);
    assert_eq!(
        unhandled_failures(),
        before,
        "a failure a test looked at is handled"
    );
}

#[test]
#[should_panic(expected = "no result expected")]
fn assert_no_result_fails_on_a_result() {
    assert_no_result(&succeed(1));
}

#[test]
#[should_panic(expected = "found no result")]
fn success_result_of_fails_without_a_result() {
    let d: Deferred<i32> = Deferred::new();
    success_result_of(&d);
}

#[test]
#[should_panic(expected = "found failure result")]
fn success_result_of_fails_on_a_failure() {
    let d: Deferred<i32> = fail(Failure::new("x"));
    success_result_of(&d);
}

#[test]
#[should_panic(expected = "found success result")]
fn failure_result_of_fails_on_a_value() {
    failure_result_of(&succeed(1));
}

#[test]
fn a_timeout_ends_a_wait_on_a_deferred_nobody_else_holds() {
    let clock = Rc::new(Clock::new());
    let outer = succeed(0);
    let timer_clock = clock.clone();
    outer.add_callback(move |_| {
        let inner: Deferred<i32> = Deferred::new();
        inner.add_timeout(Duration::from_secs(5), &*timer_clock);
        inner
    });
    assert_no_result(&outer);
    clock.advance(Duration::from_secs(5));
    assert!(failure_result_of(&outer).check::<TimeoutError>());
}

#[test]
fn a_canceller_dropped_when_its_deferred_fires_may_touch_that_deferred() {
    /// Fails the work if it is abandoned: by then the Deferred has fired.
    struct FailOnDrop(twill::defer::Resolver<i32>, Rc<Cell<bool>>);
    impl Drop for FailOnDrop {
        fn drop(&mut self) {
            self.1
                .set(self.0.try_errback(Failure::new("abandoned")).is_err());
        }
    }
    let refused = Rc::new(Cell::new(false));
    let slot: Rc<RefCell<Option<FailOnDrop>>> = Rc::default();
    let owned = slot.clone();
    let d: Deferred<i32> = Deferred::with_canceller(move |_| drop(owned));
    *slot.borrow_mut() = Some(FailOnDrop(d.resolver(), refused.clone()));
    drop(slot); // the canceller holds the guard now
    d.add_callback(|n| Ok(n * 2));
    d.callback(5);
    assert!(
        refused.get(),
        "the guard ran after the firing, and was refused"
    );
    assert_eq!(success_result_of(&d), 10);
}

#[test]
fn a_failure_seen_once_does_not_hide_a_later_one() {
    let before = unhandled_failures();
    let d: Deferred<i32> = fail(Failure::new("first"));
    let _ = failure_result_of(&d);
    d.add_errback(|_| Err(Failure::new("second, unhandled")));
    drop(d);
    assert_eq!(unhandled_failures(), before + 1);
}

#[test]
fn peek_result_may_look_at_the_deferred_again() {
    let d = succeed(3);
    let inside = d.peek_result(|value| (value.copied().ok(), d.called(), format!("{d:?}")));
    let (value, called, text) = inside.unwrap();
    assert_eq!((value, called), (Some(3), true));
    assert!(text.contains("current result: 3"));
}
