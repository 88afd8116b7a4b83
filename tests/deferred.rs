//! Deferred's rules, one test each (Twisted's `defer` semantics in Rust's
//! types), plus the bridges to futures and threads.
//!
//! A `Deferred` is the one handle to its chain: whoever fires it from
//! elsewhere keeps a `Resolver`, and a Deferred returned from a callback,
//! given to `then` or to `chain_deferred` is moved there. The rules Twisted
//! states about callbacks added *after* a result left (they see `None`)
//! cannot be written in these types; what remains of them is awaiting by
//! reference, after which callbacks run with `PassedOnError`.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::time::Duration;

use futures::future::{poll_fn, FusedFuture};
use futures::FutureExt;
use twill::defer::{
    defer_to_thread, fail, maybe_deferred, succeed, unhandled_failures, AlreadyCalledError,
    CancelledError, ChainedToItselfError, Deferred, Failure, NotPausedError, PassedOnError,
    Resolver, TimeoutError,
};
use twill::task::Clock;
use twill::testing::{assert_no_result, failure_result_of, success_result_of};
use twill::{Panicked, Reactor};

type Log = Rc<RefCell<Vec<String>>>;

fn log() -> Log {
    Rc::default()
}

fn push(log: &Log, entry: impl Into<String>) {
    log.borrow_mut().push(entry.into());
}

#[derive(Debug, PartialEq)]
struct Oops(&'static str);

impl fmt::Display for Oops {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "oops: {}", self.0)
    }
}

impl std::error::Error for Oops {}

#[test]
fn callbacks_run_in_the_order_they_were_added() {
    let seen = log();
    let d = Deferred::new();
    for i in 0..5 {
        let seen = seen.clone();
        d.add_callback(move |n: i32| {
            push(&seen, format!("{i}:{n}"));
            Ok(n + 1)
        });
    }
    d.callback(10);
    assert_eq!(*seen.borrow(), ["0:10", "1:11", "2:12", "3:13", "4:14"]);
    assert_eq!(d.result().unwrap().unwrap(), 15);
}

#[test]
fn a_callback_added_after_firing_runs_at_once() {
    let d = succeed(7);
    let ran = Rc::new(Cell::new(0));
    let r = ran.clone();
    d.add_callback(move |n| {
        r.set(n);
        Ok(n)
    });
    assert_eq!(ran.get(), 7, "ran before add_callback returned");
}

#[test]
fn a_failing_callback_switches_to_the_error_path_and_an_errback_recovers() {
    let seen = log();
    let (a, b, c, e) = (seen.clone(), seen.clone(), seen.clone(), seen.clone());
    let d = Deferred::new();
    d.add_callback(move |n: i32| {
        push(&a, "cb1");
        if n > 0 {
            Err(Failure::from(Oops("positive")))
        } else {
            Ok(n)
        }
    })
    .add_callback(move |n| {
        push(&b, "cb2 skipped on the error path");
        Ok(n)
    })
    .add_errback(move |f| {
        push(&e, format!("eb: {f}"));
        Ok(-1)
    })
    .add_callback(move |n| {
        push(&c, format!("cb3: {n}"));
        Ok(n)
    });
    d.callback(1);
    assert_eq!(*seen.borrow(), ["cb1", "eb: oops: positive", "cb3: -1"]);
}

#[test]
fn an_errback_that_passes_the_failure_on_keeps_the_error_path() {
    let d: Deferred<i32> = Deferred::new();
    let hits = Rc::new(Cell::new(0));
    let h = hits.clone();
    d.add_errback(move |f| {
        h.set(h.get() + 1);
        Err(f)
    })
    .add_callback(|_| -> Result<i32, Failure> { unreachable!("still on the error path") });
    d.errback(Oops("first"));
    assert_eq!(hits.get(), 1);
    let failure = d.result().unwrap().unwrap_err();
    assert_eq!(failure.downcast_ref::<Oops>(), Some(&Oops("first")));
}

#[test]
fn add_callbacks_and_add_both_see_the_path_they_are_on() {
    let seen = log();
    let (a, b) = (seen.clone(), seen.clone());
    let d: Deferred<i32> = Deferred::new();
    d.add_callbacks(
        |n| Err(Failure::new(format!("got {n}"))),
        |_| -> Result<i32, Failure> { unreachable!() },
    )
    .add_both(move |r| {
        push(&a, format!("both: {}", r.as_ref().unwrap_err()));
        Ok(0)
    })
    .add_both(move |r| {
        push(&b, format!("both: {}", r.unwrap()));
        Ok(1)
    });
    d.callback(3);
    assert_eq!(*seen.borrow(), ["both: got 3", "both: 0"]);
}

#[test]
fn a_panic_in_a_callback_becomes_a_failure() {
    let d = succeed(1);
    d.add_callback(|_| -> Result<i32, Failure> { panic!("callback exploded") });
    let failure = d.result().unwrap().unwrap_err();
    let panicked = failure
        .downcast_ref::<Panicked>()
        .expect("a Panicked failure");
    assert_eq!(panicked.message, "callback exploded");
}

#[test]
fn firing_twice_is_an_already_called_error() {
    let d = Deferred::new();
    d.callback(1);
    let err: AlreadyCalledError = d.try_callback(2).unwrap_err();
    assert!(err.to_string().contains("AlreadyCalledError"), "{err}");
    assert!(d.try_errback(Oops("late")).is_err());
    assert_eq!(d.result().unwrap().unwrap(), 1, "nothing changed");
    let d2: Deferred<i32> = Deferred::new();
    d2.errback(Oops("first"));
    assert!(matches!(d2.try_callback(1), Err(AlreadyCalledError { .. })));
    assert!(failure_result_of(&d2).check::<Oops>(), "nothing changed");
    // The resolver's firing follows the same rule: once, from any handle.
    let d3: Deferred<i32> = Deferred::new();
    let (first, second) = (d3.resolver(), d3.resolver());
    assert!(first.try_callback(1).is_ok());
    assert!(second.try_callback(2).is_err());
    assert!(second.try_errback(Oops("late")).is_err());
    assert!(d3.try_callback(3).is_err());
    assert_eq!(success_result_of(&d3), 1);
}

#[test]
#[should_panic(expected = "AlreadyCalledError")]
fn callback_panics_when_fired_twice() {
    let d = Deferred::new();
    d.callback(1);
    d.callback(2);
}

#[test]
#[should_panic(expected = "AlreadyCalledError")]
fn a_resolver_panics_when_fired_twice() {
    let d: Deferred<i32> = Deferred::new();
    let fire = d.resolver();
    d.callback(1);
    fire.errback(Oops("late"));
}

#[test]
fn a_callback_returning_an_unfired_deferred_makes_the_chain_wait_for_it() {
    let inner: Deferred<i32> = Deferred::new();
    // The inner Deferred's own callbacks, added before the outer chained to
    // it, shape the value the outer receives. None can be added after:
    // the inner handle is moved into the outer chain.
    inner.add_callback(|n| Ok(n * 10));
    let fire_inner = inner.resolver();
    let inner_id = inner.id();
    let seen = log();
    let s = seen.clone();
    let outer = succeed(1);
    outer.add_callback(move |_| inner).add_callback(move |n| {
        push(&s, format!("after inner: {n}"));
        Ok(n)
    });
    assert!(seen.borrow().is_empty(), "waits");
    assert_no_result(&outer);
    assert_eq!(outer.chained_to(), Some(inner_id));
    fire_inner.callback(4);
    assert_eq!(*seen.borrow(), ["after inner: 40"]);
    assert_eq!(outer.chained_to(), None);
    assert_eq!(success_result_of(&outer), 40);
}

#[test]
fn an_inner_failure_continues_down_the_outer_error_path() {
    let inner: Deferred<i32> = Deferred::new();
    let fire_inner = inner.resolver();
    let outer = succeed(1);
    outer
        .add_callback(move |_| inner)
        .add_callback(|_| -> Result<i32, Failure> { panic!("skipped on the error path") });
    let before = unhandled_failures();
    fire_inner.errback(Oops("inner"));
    drop(fire_inner);
    assert_eq!(
        unhandled_failures(),
        before,
        "the inner failure moved to the outer"
    );
    let failure = outer.result().unwrap().unwrap_err();
    assert!(failure.check::<Oops>());
}

#[test]
fn a_callback_returning_a_fired_deferred_takes_its_result_over() {
    let inner = succeed(5);
    let outer = succeed(0).then(move |_: i32| inner);
    assert_eq!(outer.result().unwrap().unwrap(), 5, "synchronously");
    // A failure taken over this way is the outer's now: the inner one,
    // dropped with the callback's step, does not report it.
    let before = unhandled_failures();
    let original = Failure::from(Oops("inner"));
    let inner: Deferred<i32> = fail(original.clone());
    let outer = succeed(0);
    outer.add_callback(move |_| inner);
    assert_eq!(unhandled_failures(), before, "the inner one gave it away");
    assert!(failure_result_of(&outer).ptr_eq(&original));
}

#[test]
fn a_callback_returning_its_own_deferred_is_an_error() {
    // The handle is moved into a slot the callback can reach: the one way
    // to hand a callback its own Deferred.
    let slot: Rc<RefCell<Option<Deferred<i32>>>> = Rc::default();
    let itself = slot.clone();
    let caught = Rc::new(Cell::new(false));
    let c = caught.clone();
    let d: Deferred<i32> = Deferred::new();
    let fire = d.resolver();
    d.add_callback(move |_| itself.borrow_mut().take().expect("in the slot"))
        .add_errback(move |f| {
            c.set(f.check::<ChainedToItselfError>());
            Ok(-1)
        });
    *slot.borrow_mut() = Some(d);
    fire.callback(1);
    assert!(caught.get(), "the chain went on with ChainedToItselfError");
}

/// Builds Deferreds 0 (outermost) to `depth` (innermost), whose callback
/// each returns the next one; the innermost adds 1. Returns the outermost,
/// the resolvers of 0 to `depth - 1` (outermost first), and the innermost's.
fn nested_chain(depth: usize) -> (Deferred<usize>, Vec<Resolver<usize>>, Resolver<usize>) {
    let innermost: Deferred<usize> = Deferred::new();
    innermost.add_callback(|n| Ok(n + 1));
    let fire_innermost = innermost.resolver();
    let mut resolvers = Vec::with_capacity(depth);
    let mut next = innermost;
    for _ in 0..depth {
        let d = Deferred::new();
        resolvers.push(d.resolver());
        d.add_callback(move |_| next);
        next = d;
    }
    resolvers.reverse();
    (next, resolvers, fire_innermost)
}

const DEPTH: usize = 100_000;

#[test]
fn chains_of_100_000_nested_deferreds_do_not_overflow_the_stack() {
    let (outermost, resolvers, fire_innermost) = nested_chain(DEPTH);
    // Each fires and waits on the next, unfired one.
    for (i, fire) in resolvers.iter().enumerate() {
        fire.callback(i);
    }
    drop(resolvers);
    assert_no_result(&outermost);
    fire_innermost.callback(41);
    assert_eq!(outermost.result().unwrap().unwrap(), 42);
}

#[test]

fn dropping_a_long_unfired_chain_does_not_overflow_the_stack() {
    // Nothing fired: each Deferred is held by the callback of the one
    // before it.
    let (outermost, resolvers, fire_innermost) = nested_chain(DEPTH);
    drop(resolvers);
    drop(fire_innermost);
    drop(outermost);
}

#[test]
fn dropping_a_long_chain_waiting_on_its_innermost_does_not_overflow_the_stack() {
    // All fired but the innermost: each waits on the next.
    let (outermost, resolvers, fire_innermost) = nested_chain(DEPTH);
    for (i, fire) in resolvers.iter().enumerate() {
        fire.callback(i);
    }
    drop(resolvers);
    drop(outermost);
    drop(fire_innermost);
}

#[test]
fn chain_deferred_fires_the_other_and_100_000_links_run_iteratively() {
    let first: Deferred<u32> = Deferred::new();
    let fire = first.resolver();
    let mut last = first;
    for _ in 0..100_000 {
        let next = Deferred::new();
        last.chain_deferred(&next);
        last = next;
    }
    fire.callback(9);
    assert_eq!(last.result().unwrap().unwrap(), 9);
    // The first one's result moved on: its failure counts as handled.
    let before = unhandled_failures();
    let a: Deferred<u32> = Deferred::new();
    let fire_a = a.resolver();
    let b = Deferred::new();
    let a_id = a.id();
    a.chain_deferred(&b);
    assert_eq!(b.chained_to(), Some(a_id));
    fire_a.errback(Oops("moves to b"));
    drop(fire_a);
    assert_eq!(unhandled_failures(), before);
    assert_eq!(b.chained_to(), None);
    assert!(b.result().unwrap().is_err());
}

#[test]
fn chain_deferred_to_a_fired_deferred_fails_with_already_called() {
    // The source's chain ends with the AlreadyCalledError; with no handle
    // left to handle it, it is reported when the source goes.
    let before = unhandled_failures();
    let a = Deferred::new();
    let fire_a = a.resolver();
    let b = succeed(1);
    a.chain_deferred(&b);
    fire_a.callback(2);
    assert_eq!(unhandled_failures(), before);
    drop(fire_a);
    assert_eq!(unhandled_failures(), before + 1);
    assert_eq!(b.result().unwrap().unwrap(), 1, "b keeps its own result");
}

#[test]
fn a_paused_deferred_keeps_its_result_until_unpaused() {
    let d = Deferred::new();
    let ran = Rc::new(Cell::new(0));
    let r = ran.clone();
    d.add_callback(move |n: i32| {
        r.set(n);
        Ok(n)
    });
    d.pause();
    let fire = d.resolver();
    fire.pause();
    assert!(d.is_paused());
    d.callback(3);
    assert_eq!(ran.get(), 0);
    assert_no_result(&d);
    fire.unpause().unwrap();
    assert_eq!(ran.get(), 0, "still paused once");
    d.unpause().unwrap();
    assert_eq!(ran.get(), 3);
    assert!(!d.is_paused());
    assert_eq!(
        d.unpause(),
        Err(NotPausedError),
        "unbalanced unpause is an error"
    );
    assert_eq!(fire.unpause(), Err(NotPausedError));
}

#[test]
fn unpause_does_not_release_a_deferred_waiting_on_an_inner_one() {
    let inner: Deferred<i32> = Deferred::new();
    let fire_inner = inner.resolver();
    let outer = succeed(0);
    outer.add_callback(move |_| inner);
    assert_eq!(outer.unpause(), Err(NotPausedError));
    assert!(outer.result().is_none(), "still waiting");
    fire_inner.callback(8);
    assert_eq!(outer.result().unwrap().unwrap(), 8);
}

#[test]
fn a_paused_inner_deferred_with_a_result_is_waited_for() {
    let inner = succeed(2);
    inner.pause();
    let unpause_inner = inner.resolver();
    let outer = succeed(0).then(move |_: i32| inner);
    assert!(outer.result().is_none());
    assert!(outer.chained_to().is_some(), "it waits on the paused one");
    unpause_inner.unpause().unwrap();
    assert_eq!(outer.result().unwrap().unwrap(), 2);
}

#[test]
fn a_callback_adding_to_its_own_deferred_runs_it_after_itself() {
    // The callback reaches its own Deferred through a shared slot.
    let seen = log();
    let d = Deferred::new();
    let fire = d.resolver();
    let shared: Rc<RefCell<Option<Deferred<i32>>>> = Rc::default();
    let (handle, s) = (shared.clone(), seen.clone());
    d.add_callback(move |n: i32| {
        push(&s, "first");
        let s2 = s.clone();
        handle
            .borrow()
            .as_ref()
            .expect("in the slot")
            .add_callback(move |n| {
                push(&s2, "added from inside");
                Ok(n)
            });
        push(&s, "first returns");
        Ok(n)
    });
    let s3 = seen.clone();
    d.add_callback(move |n| {
        push(&s3, "second");
        Ok(n)
    });
    *shared.borrow_mut() = Some(d);
    fire.callback(0);
    assert_eq!(
        *seen.borrow(),
        ["first", "first returns", "second", "added from inside"]
    );
    let d = shared.borrow_mut().take().unwrap();
    assert_eq!(success_result_of(&d), 0);
}

#[test]
fn cancel_without_a_canceller_fails_with_cancelled_and_swallows_one_late_fire() {
    let d: Deferred<i32> = Deferred::new();
    let producer = d.resolver();
    d.cancel();
    assert_eq!(
        producer.try_callback(1),
        Ok(()),
        "the producer's late result is swallowed"
    );
    assert!(producer.try_callback(2).is_err(), "but only one");
    assert!(d.result().unwrap().unwrap_err().check::<CancelledError>());
}

#[test]
fn a_canceller_may_give_the_result_itself() {
    let d = Deferred::with_canceller(|r: &Resolver<&str>| r.callback("cancelled nicely"));
    d.cancel();
    assert_eq!(d.result().unwrap().unwrap(), "cancelled nicely");
}

#[test]
fn a_canceller_that_does_not_fire_leaves_cancelled_and_no_swallowing() {
    let calls = Rc::new(Cell::new(0));
    let c = calls.clone();
    let d: Deferred<i32> = Deferred::with_canceller(move |_| c.set(c.get() + 1));
    d.cancel();
    d.cancel();
    assert_eq!(calls.get(), 1, "the canceller runs once");
    assert!(d.try_callback(1).is_err());
    assert!(d.result().unwrap().unwrap_err().check::<CancelledError>());
}

#[test]
fn a_deferred_whose_canceller_panicked_stays_unfired() {
    let d: Deferred<i32> = Deferred::with_canceller(|_| panic!("the canceller fails"));
    let cancelled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| d.cancel()));
    assert!(cancelled.is_err());
    assert!(!d.called());
    assert_no_result(&d);
    d.callback(3);
    assert_eq!(success_result_of(&d), 3);
}

#[test]
fn cancelling_a_fired_deferred_does_nothing() {
    let d = Deferred::with_canceller(|_: &Resolver<i32>| unreachable!());
    d.callback(1);
    d.cancel();
    assert_eq!(d.result().unwrap().unwrap(), 1);
}

#[test]
fn cancelling_a_deferred_that_waits_on_an_inner_one_cancels_the_inner() {
    let cancelled = log();
    let c = cancelled.clone();
    let inner: Deferred<i32> = Deferred::with_canceller(move |_| push(&c, "inner canceller"));
    // The producer of the inner result keeps its resolver.
    let producer = inner.resolver();
    let c2 = cancelled.clone();
    let outer: Deferred<i32> = Deferred::with_canceller(move |_| push(&c2, "outer canceller"));
    outer.add_callback(move |_| inner);
    outer.callback(0);
    outer.cancel();
    assert_eq!(*cancelled.borrow(), ["inner canceller"]);
    assert!(outer
        .result()
        .unwrap()
        .unwrap_err()
        .check::<CancelledError>());
    assert!(producer.called(), "the inner one was cancelled");
}

#[test]

fn cancelling_reaches_the_canceller_of_an_inner_deferred_only_the_chain_holds() {
    // Twisted's outer Deferred holds the inner one it waits on as its
    // result, so `cancel` always reaches the inner canceller.
    let cancelled = log();
    let c = cancelled.clone();
    let inner: Deferred<i32> = Deferred::with_canceller(move |r: &Resolver<i32>| {
        push(&c, "inner canceller");
        r.callback(7);
    });
    let outer = succeed(0);
    outer.add_callback(move |_| inner);
    assert_no_result(&outer);
    outer.cancel();
    assert_eq!(*cancelled.borrow(), ["inner canceller"]);
    assert_eq!(success_result_of(&outer), 7, "the inner canceller's value");
}

#[test]
fn cancelling_what_then_returned_cancels_the_deferred_it_came_from() {
    let cancelled = log();
    let c = cancelled.clone();
    let d: Deferred<i32> = Deferred::with_canceller(move |_| push(&c, "first canceller"));
    let text = d.then(|n| Ok(n * 2)).then(|n| Ok(n.to_string()));
    text.cancel();
    assert_eq!(*cancelled.borrow(), ["first canceller"]);
    assert!(failure_result_of(&text).check::<CancelledError>());
}

#[test]
fn add_timeout_fails_with_timeout_error_when_the_result_is_late() {
    let clock = Clock::new();
    let d: Deferred<i32> = Deferred::new();
    d.add_timeout(Duration::from_secs(5), &clock);
    clock.advance(Duration::from_secs(4));
    assert!(d.result().is_none());
    clock.advance(Duration::from_secs(1));
    let failure = d.result().unwrap().unwrap_err();
    let timeout = failure
        .downcast_ref::<TimeoutError>()
        .expect("TimeoutError");
    assert_eq!(timeout.timeout, Duration::from_secs(5));
}

#[test]
fn add_timeout_cancels_its_timer_when_the_result_comes_in_time() {
    let clock = Clock::new();
    let d = Deferred::new();
    d.add_timeout(Duration::from_secs(5), &clock);
    d.callback(1);
    assert!(clock.delayed_calls().is_empty());
    assert_eq!(d.result().unwrap().unwrap(), 1);
}

#[test]
fn add_timeout_lets_a_cancellers_value_win_and_a_manual_cancel_stay_cancelled() {
    let clock = Clock::new();
    let d = Deferred::with_canceller(|r: &Resolver<i32>| r.callback(-1));
    d.add_timeout(Duration::from_secs(1), &clock);
    clock.advance(Duration::from_secs(1));
    assert_eq!(d.result().unwrap().unwrap(), -1);

    let manual: Deferred<i32> = Deferred::new();
    manual.add_timeout(Duration::from_secs(1), &clock);
    manual.cancel();
    assert!(manual
        .result()
        .unwrap()
        .unwrap_err()
        .check::<CancelledError>());
    assert!(clock.delayed_calls().is_empty());
}

#[test]
fn add_timeout_with_gives_the_timed_out_result_to_on_timeout_cancel() {
    let clock = Clock::new();
    let d: Deferred<&str> = Deferred::new();
    let seen = log();
    let s = seen.clone();
    d.add_timeout_with(Duration::from_secs(3), &clock, move |result, timeout| {
        push(
            &s,
            format!(
                "{timeout:?}: {}",
                result.unwrap_err().check::<CancelledError>()
            ),
        );
        Ok("gave up")
    });
    clock.advance(Duration::from_secs(3));
    assert_eq!(*seen.borrow(), ["3s: true"]);
    assert_eq!(success_result_of(&d), "gave up");
    assert!(clock.delayed_calls().is_empty());
    // In time, it is not called.
    let d: Deferred<&str> = Deferred::new();
    d.add_timeout_with(Duration::from_secs(3), &clock, |_, _| unreachable!());
    d.callback("in time");
    clock.advance(Duration::from_secs(3));
    assert_eq!(success_result_of(&d), "in time");
}

#[test]
fn then_changes_the_type_along_the_chain() {
    let d: Deferred<i32> = Deferred::new();
    let fire = d.resolver();
    let text = d.then(|n| Ok(n * 2)).then(|n| Ok(format!("<{n}>")));
    fire.callback(21);
    assert_eq!(text.result().unwrap().unwrap(), "<42>");
}

#[test]
fn callbacks_added_after_an_await_by_reference_see_passed_on_error() {
    let mut d = succeed(3);
    assert!(!d.is_terminated());
    let taken = (&mut d).now_or_never().expect("ready");
    assert_eq!(taken.unwrap(), 3);
    assert!(d.is_terminated(), "fused: the result left");
    let seen = log();
    let (a, b) = (seen.clone(), seen.clone());
    d.add_callback(move |n| {
        push(&a, format!("callback: {n}"));
        Ok(n)
    })
    .add_errback(move |f| {
        push(&b, format!("errback: {}", f.check::<PassedOnError>()));
        Err(f)
    });
    assert_eq!(*seen.borrow(), ["errback: true"]);
    assert!(failure_result_of(&d).check::<PassedOnError>());
    // Awaiting it once more gives the same error.
    let mut again = succeed(4);
    assert_eq!((&mut again).now_or_never().unwrap().unwrap(), 4);
    let second = (&mut again).now_or_never().expect("ready");
    assert!(second.unwrap_err().check::<PassedOnError>());
}

#[test]
fn select_takes_deferreds_by_reference_and_leaves_the_loser_usable() {
    let mut slow: Deferred<i32> = Deferred::new();
    let fire_slow = slow.resolver();
    let mut fast = succeed(1);
    let winner = async {
        futures::select! {
            n = slow => n.map(|n| ("slow", n)),
            n = fast => n.map(|n| ("fast", n)),
        }
    }
    .now_or_never()
    .expect("fast is ready");
    assert_eq!(winner.unwrap(), ("fast", 1));
    assert!(fast.is_terminated());
    assert!(!slow.is_terminated());
    fire_slow.callback(2);
    assert_eq!(success_result_of(&slow), 2, "the loser kept its result");
}

#[test]
fn failure_checks_traps_and_prints_its_cause_chain() {
    #[derive(Debug)]
    struct Outer(std::io::Error);
    impl fmt::Display for Outer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("could not load the config")
        }
    }
    impl std::error::Error for Outer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }
    let failure = Failure::from(Outer(std::io::Error::other("disk on fire")));
    assert_eq!(
        failure.to_string(),
        "could not load the config: disk on fire"
    );
    assert!(failure.check::<Outer>());
    assert!(!failure.check::<Oops>());
    let passed_on = failure.trap::<Oops>().unwrap_err();
    assert!(
        passed_on.ptr_eq(&failure),
        "trap passes the same failure on"
    );
    let outer = passed_on.trap::<Outer>().unwrap();
    assert_eq!(outer.0.to_string(), "disk on fire");
}

#[test]
fn a_failure_travels_the_chain_as_the_same_failure() {
    let original = Failure::from(Oops("shared"));
    assert_eq!(original, original.clone(), "clones are the same failure");
    assert_ne!(
        Failure::new("same text"),
        Failure::new("same text"),
        "equal-looking failures are not the same one"
    );
    let received = Rc::new(RefCell::new(None));
    let r = received.clone();
    let d: Deferred<i32> = Deferred::new();
    d.add_errback(move |f| {
        *r.borrow_mut() = Some(f.clone());
        Err(f)
    })
    .add_errback(|f| f.trap::<std::io::Error>().map(|_| 0));
    d.errback(original.clone());
    assert!(received.borrow().as_ref().unwrap().ptr_eq(&original));
    let last = failure_result_of(&d);
    assert!(last.ptr_eq(&original), "a trap that misses passes it on");
    assert!(format!("{last:?}").starts_with("<Failure "), "{last:?}");
}

#[test]
fn a_dropped_deferred_with_an_unhandled_failure_is_reported_once() {
    let before = unhandled_failures();
    {
        let d: Deferred<i32> = Deferred::new();
        let resolver = d.resolver();
        d.errback(Oops("nobody handles me"));
        drop(d);
        assert_eq!(
            unhandled_failures(),
            before,
            "not while a resolver keeps it"
        );
        drop(resolver);
    }
    assert_eq!(unhandled_failures(), before + 1);
    // Handled failures are not reported.
    let d: Deferred<i32> = fail(Oops("handled"));
    d.add_errback(|_| Ok(0));
    drop(d);
    assert_eq!(unhandled_failures(), before + 1);
    // Nor one a test looked at.
    let d: Deferred<i32> = fail(Oops("looked at"));
    assert!(failure_result_of(&d).check::<Oops>());
    drop(d);
    assert_eq!(unhandled_failures(), before + 1);
}

#[test]
fn maybe_deferred_wraps_values_failures_deferreds_and_panics() {
    assert_eq!(
        maybe_deferred(|| Ok::<_, Failure>(1))
            .result()
            .unwrap()
            .unwrap(),
        1
    );
    assert!(maybe_deferred(|| Err::<i32, _>(Failure::new("no")))
        .result()
        .unwrap()
        .is_err());
    let pending: Deferred<i32> = Deferred::new();
    let (fire, pending_id) = (pending.resolver(), pending.id());
    let same = maybe_deferred(move || pending);
    assert_eq!(same.id(), pending_id, "the very Deferred");
    fire.callback(5);
    assert_eq!(same.result().unwrap().unwrap(), 5);
    let panicked = maybe_deferred(|| -> Result<i32, Failure> { panic!("in f") });
    assert!(panicked.result().unwrap().unwrap_err().check::<Panicked>());
}

/// Runs the reactor until `d` fires (or 10 s pass), and returns its result.
fn run_until<T: 'static>(reactor: &Reactor, d: &Deferred<T>) -> Result<T, Failure> {
    d.add_both(|result| {
        twill::stop();
        result
    });
    let watchdog = reactor.call_later(Duration::from_secs(10), twill::stop);
    reactor.run().unwrap();
    assert!(watchdog.active(), "the watchdog stopped the reactor");
    d.result().expect("fired")
}

#[test]
fn a_deferred_can_be_awaited_in_a_future_on_the_reactor() {
    let reactor = Reactor::new().unwrap();
    let d: Deferred<i32> = Deferred::new();
    let fire = d.resolver();
    reactor.call_later(Duration::from_millis(1), move || fire.callback(20));
    let failing: Deferred<i32> = Deferred::new();
    let fire_failure = failing.resolver();
    reactor.call_later(Duration::from_millis(2), move || {
        fire_failure.errback(Oops("late"))
    });
    let before = unhandled_failures();
    let both = Deferred::from_future(async move {
        let a = d.await?;
        let b = failing.await.or_else(|f| f.trap::<Oops>().map(|_| 22))?;
        Ok(a + b)
    });
    assert_eq!(run_until(&reactor, &both).unwrap(), 42);
    assert_eq!(unhandled_failures(), before, "await consumed the failure");
}

#[test]
fn from_future_on_deferreds_alone_runs_without_a_reactor() {
    let d: Deferred<i32> = Deferred::new();
    let fire = d.resolver();
    let seen = log();
    let s = seen.clone();
    let driven = Deferred::from_future(async move {
        push(&s, "started");
        let n = d.await?;
        push(&s, format!("resumed with {n}"));
        Ok(n + 1)
    });
    assert_eq!(*seen.borrow(), ["started"], "polled at once");
    assert_no_result(&driven);
    fire.callback(1);
    assert_eq!(
        *seen.borrow(),
        ["started", "resumed with 1"],
        "resumed inside callback"
    );
    assert_eq!(success_result_of(&driven), 2);
    // Given a Deferred, it gives that Deferred back.
    let given: Deferred<i32> = Deferred::new();
    let given_id = given.id();
    assert_eq!(Deferred::from_future(given).id(), given_id);
}

#[test]
fn from_future_errbacks_with_the_futures_error_or_panic() {
    let reactor = Reactor::new().unwrap();
    let d: Deferred<()> = Deferred::from_future(async { Err(Failure::from(Oops("async"))) });
    assert!(run_until(&reactor, &d).unwrap_err().check::<Oops>());
    let reactor = Reactor::new().unwrap();
    let d: Deferred<()> = Deferred::from_future(async { panic!("in a future") });
    assert!(run_until(&reactor, &d).unwrap_err().check::<Panicked>());
}

struct SetOnDrop(Rc<Cell<bool>>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.set(true);
    }
}

#[test]
fn cancelling_a_deferred_from_a_future_cancels_what_it_awaits_and_ends_the_future() {
    let reactor = Reactor::new().unwrap();
    let dropped = Rc::new(Cell::new(false));
    let guard = SetOnDrop(dropped.clone());
    let never: Deferred<i32> = Deferred::new();
    let d = Rc::new(Deferred::from_future(async move {
        let _guard = guard;
        never.await
    }));
    let cancel = d.clone();
    reactor.call_later(Duration::from_millis(1), move || cancel.cancel());
    assert!(run_until(&reactor, &d)
        .unwrap_err()
        .check::<CancelledError>());
    assert!(dropped.get());
}

#[test]
fn cancelling_a_future_that_awaits_no_deferred_drops_it() {
    let dropped = Rc::new(Cell::new(false));
    let guard = SetOnDrop(dropped.clone());
    let d: Deferred<i32> = Deferred::from_future(async move {
        let _guard = guard;
        futures::future::pending::<()>().await;
        Ok(0)
    });
    assert_no_result(&d);
    assert!(!dropped.get());
    d.cancel();
    assert!(dropped.get(), "dropped at once");
    assert!(failure_result_of(&d).check::<CancelledError>());
}

#[test]
fn defer_to_thread_runs_elsewhere_and_fires_on_the_reactor_thread() {
    let reactor = Reactor::new().unwrap();
    let here = std::thread::current().id();
    let d = defer_to_thread(move || Ok(std::thread::current().id()));
    let on_reactor = Rc::new(Cell::new(false));
    let flag = on_reactor.clone();
    d.add_callback(move |id| {
        flag.set(std::thread::current().id() == here);
        Ok(id)
    });
    let worker = run_until(&reactor, &d).unwrap();
    assert_ne!(worker, here, "ran on a pool thread");
    assert!(on_reactor.get(), "callbacks ran on the reactor thread");
}

#[test]
fn defer_to_thread_reports_errors_and_panics() {
    let reactor = Reactor::new().unwrap();
    let d = defer_to_thread(|| -> Result<(), Failure> { Err(Oops("worker").into()) });
    assert!(run_until(&reactor, &d).unwrap_err().check::<Oops>());
    drop(reactor);
    let reactor = Reactor::new().unwrap();
    let d = defer_to_thread(|| -> Result<(), Failure> { panic!("worker panicked") });
    assert!(run_until(&reactor, &d).unwrap_err().check::<Panicked>());
}

#[test]

fn defer_to_thread_delivers_on_a_second_reactor_while_the_first_is_alive() {
    let slow = |n| {
        move || {
            std::thread::sleep(Duration::from_millis(50));
            Ok(n)
        }
    };
    let first = Reactor::new().unwrap();
    let d = defer_to_thread(slow(1));
    assert_eq!(run_until(&first, &d).unwrap(), 1);
    // `first` stays alive: `Reactor::new` makes the new one current.
    let second = Reactor::new().unwrap();
    let d = defer_to_thread(slow(2));
    assert_eq!(run_until(&second, &d).unwrap(), 2);
    drop(first);
}

#[test]
fn spawned_futures_run_on_the_reactor_and_a_panic_stays_in_its_future() {
    let reactor = Reactor::new().unwrap();
    let seen = log();
    twill::spawn(async { panic!("this future fails") });
    let s = seen.clone();
    let d: Deferred<&str> = Deferred::new();
    let fire = d.resolver();
    twill::spawn(async move {
        let word = d.await.unwrap();
        push(&s, word);
        twill::stop();
    });
    reactor.call_later(Duration::from_millis(1), move || {
        fire.callback("still running")
    });
    let watchdog = reactor.call_later(Duration::from_secs(10), twill::stop);
    reactor.run().unwrap();
    assert!(watchdog.active());
    assert_eq!(*seen.borrow(), ["still running"]);
}

#[test]

fn a_callback_returning_a_deferred_whose_result_went_elsewhere_gets_passed_on_error() {
    let mut elsewhere = succeed(1);
    assert_eq!((&mut elsewhere).now_or_never().unwrap().unwrap(), 1);
    let outer = succeed(0).then(move |_: i32| elsewhere);
    assert!(failure_result_of(&outer).check::<PassedOnError>());
}

/// Awaits the Deferred in `shared` by reference, borrowing it only while
/// polling, so that the test can look at it meanwhile.
fn await_shared(shared: Rc<RefCell<Deferred<i32>>>) -> impl Future<Output = Result<i32, Failure>> {
    poll_fn(move |cx| Pin::new(&mut *shared.borrow_mut()).poll(cx))
}

#[test]
fn peeking_at_a_pending_deferred_does_not_strand_the_future_awaiting_it() {
    let reactor = Reactor::new().unwrap();
    let d: Deferred<i32> = Deferred::new();
    let fire = d.resolver();
    let shared = Rc::new(RefCell::new(d));
    let awaited = Deferred::from_future(await_shared(shared.clone()));
    let peek = shared.clone();
    reactor.call_later(Duration::from_millis(1), move || {
        let d = peek.borrow();
        assert!(d.result().is_none());
        assert!(d.peek_result(|_| ()).is_none());
        assert_no_result(&d);
    });
    reactor.call_later(Duration::from_millis(2), move || fire.callback(7));
    assert_eq!(run_until(&reactor, &awaited).unwrap(), 7);
    assert!(shared.borrow().is_terminated());
}

#[test]
fn of_two_futures_awaiting_one_deferred_by_reference_one_gets_the_result() {
    let d: Deferred<i32> = Deferred::new();
    let fire = d.resolver();
    let shared = Rc::new(RefCell::new(d));
    let first = Deferred::from_future(await_shared(shared.clone()));
    assert_no_result(&first);
    fire.callback(1);
    assert_eq!(success_result_of(&first), 1);
    // The result left with the first await: the second finishes too, with
    // PassedOnError.
    let second = Deferred::from_future(await_shared(shared.clone()));
    assert!(failure_result_of(&second).check::<PassedOnError>());
}
