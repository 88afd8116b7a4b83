//! Who may add callbacks once a result moved on (Twisted's rules 1.5, 1.6,
//! 1.7 and 1.15): in twill the handle that could add them is gone, so no
//! callback is ever accepted and then skipped. These tests show the result
//! reaching the chain that took it, in the synchronous, asynchronous,
//! paused and failing cases, and what a Deferred awaited by reference holds
//! afterwards. That the old handle cannot be used at all is shown by the
//! `compile_fail` examples in `twill::defer`'s documentation.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use futures::future::FusedFuture;
use twill::defer::{
    fail, succeed, unhandled_failures, CancelledError, Deferred, Failure, PassedOnError,
};
use twill::testing::{assert_no_result, failure_result_of, success_result_of};

fn log() -> Rc<RefCell<Vec<String>>> {
    Rc::new(RefCell::new(Vec::new()))
}

#[test]
fn synchronous_inner_result_is_taken_over_at_once() {
    let inner = succeed("inner");
    let inner_fired = inner.resolver();
    let outer = Deferred::new();
    outer.add_callback(move |_: &str| inner);
    outer.callback("outer");
    assert_eq!(success_result_of(&outer), "inner");
    assert!(inner_fired.called());
    assert_eq!(outer.chained_to(), None);
}

#[test]
fn asynchronous_inner_result_arrives_when_it_fires() {
    let seen = log();
    let inner = Deferred::new();
    let fire_inner = inner.resolver();
    let inner_id = inner.id();
    let outer = Deferred::new();
    let s = seen.clone();
    outer
        .add_callback(move |_: i32| inner)
        .add_callback(move |n| {
            s.borrow_mut().push(format!("after inner: {n}"));
            Ok(n)
        });
    outer.callback(0);
    assert_no_result(&outer);
    assert_eq!(outer.chained_to(), Some(inner_id));
    assert!(seen.borrow().is_empty(), "the outer chain waits");
    fire_inner.callback(7);
    assert_eq!(*seen.borrow(), ["after inner: 7"]);
    assert_eq!(success_result_of(&outer), 7);
    assert_eq!(outer.chained_to(), None);
}

#[test]
fn inner_callbacks_added_before_the_hand_over_shape_the_value() {
    let inner = Deferred::new();
    let fire_inner = inner.resolver();
    inner.add_callback(|n: i32| Ok(n * 10));
    let outer = succeed(0).then(move |_| inner);
    fire_inner.callback(4);
    assert_eq!(success_result_of(&outer), 40);
}

#[test]
fn paused_inner_with_a_result_is_waited_for_until_unpaused() {
    let inner = succeed(5);
    let inner_control = inner.resolver();
    inner.pause();
    let outer = succeed(()).then(move |()| inner);
    assert_no_result(&outer);
    assert!(outer.chained_to().is_some());
    inner_control.unpause().unwrap();
    assert_eq!(success_result_of(&outer), 5);
}

#[test]
fn pausing_the_outer_does_not_stop_the_inner() {
    let ran = log();
    let inner = Deferred::new();
    let fire_inner = inner.resolver();
    let r = ran.clone();
    inner.add_callback(move |n: i32| {
        r.borrow_mut().push("inner callback".to_owned());
        Ok(n)
    });
    let outer = succeed(0);
    outer.add_callback(move |_| inner);
    outer.pause();
    fire_inner.callback(1);
    assert_eq!(*ran.borrow(), ["inner callback"]);
    assert_no_result(&outer);
    outer.unpause().unwrap();
    assert_eq!(success_result_of(&outer), 1);
}

#[test]
fn a_failing_inner_hands_its_very_failure_on_and_is_not_reported() {
    let before = unhandled_failures();
    let failure = Failure::new("inner failed");
    let inner: Deferred<i32> = fail(failure.clone());
    let outer = succeed(0);
    let seen = Rc::new(RefCell::new(None));
    let sink = seen.clone();
    outer.add_callback(move |_| inner).add_errback(move |f| {
        *sink.borrow_mut() = Some(f);
        Ok(-1)
    });
    assert_eq!(success_result_of(&outer), -1);
    assert!(seen.borrow().as_ref().unwrap().ptr_eq(&failure));
    drop(outer);
    assert_eq!(
        unhandled_failures(),
        before,
        "the inner's failure was handled by the outer"
    );
}

#[test]
fn an_asynchronously_failing_inner_goes_down_the_outer_error_path() {
    let inner: Deferred<i32> = Deferred::new();
    let fire_inner = inner.resolver();
    let outer = succeed(0);
    outer
        .add_callback(move |_| inner)
        .add_callback(|_| -> Result<i32, Failure> { panic!("skipped on the error path") });
    fire_inner.errback(CancelledError);
    assert!(failure_result_of(&outer).check::<CancelledError>());
}

#[test]
fn an_errback_may_return_a_deferred_too() {
    let inner = Deferred::new();
    let fire_inner = inner.resolver();
    let outer: Deferred<i32> = fail(Failure::new("first"));
    outer.add_errback(move |_| inner);
    fire_inner.callback(3);
    assert_eq!(success_result_of(&outer), 3);
}

#[test]
fn then_hands_the_value_to_the_next_handle_and_cancels_through_it() {
    let cancelled = Rc::new(RefCell::new(false));
    let flag = cancelled.clone();
    let head: Deferred<i32> = Deferred::with_canceller(move |_| *flag.borrow_mut() = true);
    let head_id = head.id();
    let tail = head.then(|n| Ok(n.to_string()));
    assert_eq!(
        tail.chained_to(),
        Some(head_id),
        "the segment waits for its head"
    );
    tail.cancel();
    assert!(
        *cancelled.borrow(),
        "cancelling the tail reached the head's canceller"
    );
    assert!(failure_result_of(&tail).check::<CancelledError>());
    assert_eq!(tail.chained_to(), None);
}

#[test]
fn chain_deferred_fires_the_other_with_what_reaches_that_point() {
    let source = Deferred::new();
    let fire_source = source.resolver();
    source.add_callback(|n: i32| Ok(n + 1));
    let target = Deferred::new();
    target.add_callback(|n| Ok(n * 2));
    let source_id = source.id();
    source.chain_deferred(&target);
    assert_eq!(target.chained_to(), Some(source_id));
    fire_source.callback(1);
    assert_eq!(success_result_of(&target), 4);
    assert_eq!(target.chained_to(), None);
}

#[test]
fn chain_deferred_into_a_fired_deferred_reports_already_called() {
    let before = unhandled_failures();
    let source = Deferred::new();
    let fire_source = source.resolver();
    let target = succeed(0);
    source.chain_deferred(&target);
    fire_source.callback(1);
    drop(fire_source);
    assert_eq!(
        success_result_of(&target),
        0,
        "the target keeps its own result"
    );
    assert_eq!(
        unhandled_failures(),
        before + 1,
        "the refused result is not lost silently"
    );
}

#[test]
fn a_deferred_awaited_by_reference_is_terminated_and_later_callbacks_see_passed_on() {
    let mut d = succeed(3);
    assert!(!d.is_terminated());
    // What `(&mut d).await` and `futures::select!` do: poll by reference.
    let mut cx = Context::from_waker(Waker::noop());
    match Pin::new(&mut d).poll(&mut cx) {
        Poll::Ready(Ok(3)) => {}
        other => panic!("expected the value, got {other:?}"),
    }
    assert!(d.is_terminated());
    let seen = Rc::new(RefCell::new(None));
    let sink = seen.clone();
    d.add_callback(|_| -> Result<i32, Failure> { panic!("no value is left") })
        .add_errback(move |f| {
            *sink.borrow_mut() = Some(f.check::<PassedOnError>());
            Ok(0)
        });
    assert_eq!(*seen.borrow(), Some(true));
    assert_eq!(success_result_of(&d), 0);
}

#[test]
fn a_callback_added_while_the_chain_runs_runs_after_the_current_one() {
    let order = log();
    let d = Rc::new(Deferred::new());
    let (o1, o2, inner) = (order.clone(), order.clone(), d.clone());
    d.add_callback(move |n: i32| {
        o1.borrow_mut().push("first".to_owned());
        let o3 = o2.clone();
        inner.add_callback(move |n| {
            o3.borrow_mut().push("added inside".to_owned());
            Ok(n)
        });
        o2.borrow_mut().push("first returns".to_owned());
        Ok(n)
    });
    d.callback(1);
    assert_eq!(*order.borrow(), ["first", "first returns", "added inside"]);
}
