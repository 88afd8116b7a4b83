//! Who may add callbacks once a result moved on (Twisted's rules 1.5, 1.6
//! and 1.7): in twill the handle that could add them is gone, so no
//! callback is ever accepted and then skipped. The synchronous,
//! asynchronous, paused and failing hand-overs are in `deferred.rs`; here,
//! what the producer's resolver and `chained_to` show around them, pauses
//! on either side, errbacks returning Deferreds, and the hand-overs of
//! `then` and `chain_deferred`. That the old handle cannot be used at all
//! is shown by the `compile_fail` examples in `twill::defer`'s
//! documentation.

use std::cell::RefCell;
use std::rc::Rc;

use twill::defer::{fail, succeed, CancelledError, Deferred, Failure};
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
