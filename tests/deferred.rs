//! Deferred's rules, one test each (Twisted's `defer` semantics in Rust's
//! types), plus the bridges to futures and threads.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::rc::Rc;
use std::time::Duration;

use twill::defer::{
    defer_to_thread, fail, maybe_deferred, succeed, unhandled_failures, AlreadyCalledError,
    CancelledError, ChainedToItselfError, Deferred, Failure, NotPausedError, TimeoutError,
};
use twill::task::Clock;
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
    assert_eq!(d.try_callback(2), Err(AlreadyCalledError));
    assert_eq!(d.try_errback(Oops("late")), Err(AlreadyCalledError));
    assert_eq!(d.result().unwrap().unwrap(), 1, "nothing changed");
    let d2: Deferred<i32> = Deferred::new();
    d2.errback(Oops("first"));
    assert_eq!(d2.try_callback(1), Err(AlreadyCalledError));
    let _ = d2.result();
}

#[test]
#[should_panic(expected = "AlreadyCalledError")]
fn callback_panics_when_fired_twice() {
    let d = Deferred::new();
    d.callback(1);
    d.callback(2);
}

#[test]
fn a_callback_returning_an_unfired_deferred_makes_the_chain_wait_for_it() {
    let inner: Deferred<i32> = Deferred::new();
    // The inner Deferred's own callbacks, added before the outer chained to
    // it, shape the value the outer receives; those added after run later.
    inner.add_callback(|n| Ok(n * 10));
    let waiting = inner.clone();
    let seen = log();
    let s = seen.clone();
    let outer = succeed(1);
    outer.add_callback(move |_| waiting).add_callback(move |n| {
        push(&s, format!("after inner: {n}"));
        Ok(n)
    });
    let s = seen.clone();
    inner.add_callback(move |n| {
        push(&s, "added to the inner after chaining: never runs");
        Ok(n)
    });
    assert!(seen.borrow().is_empty(), "waits");
    inner.callback(4);
    assert_eq!(*seen.borrow(), ["after inner: 40"]);
}

#[test]
fn an_inner_failure_continues_down_the_outer_error_path() {
    let inner: Deferred<i32> = Deferred::new();
    let waiting = inner.clone();
    let outer = succeed(1);
    outer.add_callback(move |_| waiting);
    let before = unhandled_failures();
    inner.errback(Oops("inner"));
    drop(inner);
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
    let stolen = inner.clone();
    let outer = succeed(0).then(move |_: i32| stolen);
    assert_eq!(outer.result().unwrap().unwrap(), 5, "synchronously");
    // The inner Deferred gave its result away: callbacks added now never run.
    let ran = Rc::new(Cell::new(false));
    let r = ran.clone();
    inner.add_callback(move |n| {
        r.set(true);
        Ok(n)
    });
    assert!(!ran.get());
}

#[test]
fn a_callback_returning_its_own_deferred_is_an_error() {
    let d: Deferred<i32> = Deferred::new();
    let itself = d.clone();
    d.add_callback(move |_| itself);
    d.callback(1);
    assert!(d
        .result()
        .unwrap()
        .unwrap_err()
        .check::<ChainedToItselfError>());
}

#[test]
fn chains_of_100_000_nested_deferreds_do_not_overflow_the_stack() {
    const DEPTH: usize = 100_000;
    // Each Deferred's callback returns the next, unfired one.
    let all: Vec<Deferred<usize>> = (0..=DEPTH).map(|_| Deferred::new()).collect();
    for i in 0..DEPTH {
        let next = all[i + 1].clone();
        all[i].add_callback(move |_| next);
    }
    all[DEPTH].add_callback(|n| Ok(n + 1));
    for (i, d) in all.iter().enumerate().take(DEPTH) {
        d.callback(i);
    }
    let outermost = all[0].clone();
    let innermost = all[DEPTH].clone();
    drop(all);
    assert!(outermost.result().is_none());
    innermost.callback(41);
    assert_eq!(outermost.result().unwrap().unwrap(), 42);
}

#[test]
fn dropping_a_long_unfired_chain_does_not_overflow_the_stack() {
    let mut outer = succeed(0usize);
    for _ in 0..100_000 {
        let inner: Deferred<usize> = Deferred::new();
        let waiting = inner.clone();
        outer.add_callback(move |_| waiting);
        outer = inner;
    }
    drop(outer);
}

#[test]
fn chain_deferred_fires_the_other_and_100_000_links_run_iteratively() {
    let first: Deferred<u32> = Deferred::new();
    let mut last = first.clone();
    for _ in 0..100_000 {
        let next = Deferred::new();
        last.chain_deferred(&next);
        last = next;
    }
    first.callback(9);
    assert_eq!(last.result().unwrap().unwrap(), 9);
    // The first one's result moved on: its failure would count as handled.
    let before = unhandled_failures();
    let a: Deferred<u32> = Deferred::new();
    let b = Deferred::new();
    a.chain_deferred(&b);
    a.errback(Oops("moves to b"));
    drop(a);
    assert_eq!(unhandled_failures(), before);
    assert!(b.result().unwrap().is_err());
}

#[test]
fn chain_deferred_to_a_fired_deferred_fails_with_already_called() {
    let a = Deferred::new();
    let b = succeed(1);
    a.chain_deferred(&b);
    a.callback(2);
    assert!(a
        .result()
        .unwrap()
        .unwrap_err()
        .check::<AlreadyCalledError>());
    assert_eq!(b.result().unwrap().unwrap(), 1);
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
    d.pause();
    d.callback(3);
    assert_eq!(ran.get(), 0);
    d.unpause().unwrap();
    assert_eq!(ran.get(), 0, "still paused once");
    d.unpause().unwrap();
    assert_eq!(ran.get(), 3);
    assert_eq!(
        d.unpause(),
        Err(NotPausedError),
        "unbalanced unpause is an error"
    );
}

#[test]
fn unpause_does_not_release_a_deferred_waiting_on_an_inner_one() {
    let inner: Deferred<i32> = Deferred::new();
    let waiting = inner.clone();
    let outer = succeed(0);
    outer.add_callback(move |_| waiting);
    assert_eq!(outer.unpause(), Err(NotPausedError));
    assert!(outer.result().is_none(), "still waiting");
    inner.callback(8);
    assert_eq!(outer.result().unwrap().unwrap(), 8);
}

#[test]
fn a_paused_inner_deferred_with_a_result_is_waited_for() {
    let inner = succeed(2);
    inner.pause();
    let waiting = inner.clone();
    let outer = succeed(0).then(move |_: i32| waiting);
    assert!(outer.result().is_none());
    inner.unpause().unwrap();
    assert_eq!(outer.result().unwrap().unwrap(), 2);
}

#[test]
fn a_callback_adding_to_its_own_deferred_runs_it_after_itself() {
    let seen = log();
    let d = Deferred::new();
    let (handle, s) = (d.clone(), seen.clone());
    d.add_callback(move |n: i32| {
        push(&s, "first");
        let s2 = s.clone();
        handle.add_callback(move |n| {
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
    d.callback(0);
    assert_eq!(
        *seen.borrow(),
        ["first", "first returns", "second", "added from inside"]
    );
}

#[test]
fn cancel_without_a_canceller_fails_with_cancelled_and_swallows_one_late_fire() {
    let d: Deferred<i32> = Deferred::new();
    d.cancel();
    assert_eq!(
        d.try_callback(1),
        Ok(()),
        "the producer's late result is swallowed"
    );
    assert_eq!(d.try_callback(2), Err(AlreadyCalledError), "but only one");
    assert!(d.result().unwrap().unwrap_err().check::<CancelledError>());
}

#[test]
fn a_canceller_may_give_the_result_itself() {
    let d = Deferred::with_canceller(|d: &Deferred<&str>| d.callback("cancelled nicely"));
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
    assert_eq!(d.try_callback(1), Err(AlreadyCalledError));
    assert!(d.result().unwrap().unwrap_err().check::<CancelledError>());
}

#[test]
fn cancelling_a_fired_deferred_does_nothing() {
    let d = Deferred::with_canceller(|_: &Deferred<i32>| unreachable!());
    d.callback(1);
    d.cancel();
    assert_eq!(d.result().unwrap().unwrap(), 1);
}

#[test]
fn cancelling_a_deferred_that_waits_on_an_inner_one_cancels_the_inner() {
    let cancelled = log();
    let c = cancelled.clone();
    let inner: Deferred<i32> = Deferred::with_canceller(move |_| push(&c, "inner canceller"));
    let waiting = inner.clone();
    let c2 = cancelled.clone();
    let outer: Deferred<i32> = Deferred::with_canceller(move |_| push(&c2, "outer canceller"));
    outer.add_callback(move |_| waiting);
    outer.callback(0);
    outer.cancel();
    assert_eq!(*cancelled.borrow(), ["inner canceller"]);
    assert!(outer
        .result()
        .unwrap()
        .unwrap_err()
        .check::<CancelledError>());
}

#[test]
fn add_timeout_fails_with_timeout_error_when_the_result_is_late() {
    let clock = Clock::new();
    let d: Deferred<i32> = Deferred::new();
    d.add_timeout_on(Duration::from_secs(5), &clock);
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
    d.add_timeout_on(Duration::from_secs(5), &clock);
    d.callback(1);
    assert!(clock.delayed_calls().is_empty());
    assert_eq!(d.result().unwrap().unwrap(), 1);
}

#[test]
fn add_timeout_lets_a_cancellers_value_win_and_a_manual_cancel_stay_cancelled() {
    let clock = Clock::new();
    let d = Deferred::with_canceller(|d: &Deferred<i32>| d.callback(-1));
    d.add_timeout_on(Duration::from_secs(1), &clock);
    clock.advance(Duration::from_secs(1));
    assert_eq!(d.result().unwrap().unwrap(), -1);

    let manual: Deferred<i32> = Deferred::new();
    manual.add_timeout_on(Duration::from_secs(1), &clock);
    manual.cancel();
    assert!(manual
        .result()
        .unwrap()
        .unwrap_err()
        .check::<CancelledError>());
    assert!(clock.delayed_calls().is_empty());
}

#[test]
fn then_changes_the_type_along_the_chain() {
    let d: Deferred<i32> = Deferred::new();
    let fire = d.clone();
    let text = d.then(|n| Ok(n * 2)).then(|n| Ok(format!("<{n}>")));
    fire.callback(21);
    assert_eq!(text.result().unwrap().unwrap(), "<42>");
}

#[test]
#[should_panic(expected = "add callbacks through the handle `then` returned")]
fn adding_callbacks_through_a_stale_handle_is_refused() {
    let d: Deferred<i32> = Deferred::new();
    let stale = d.clone();
    let _text = d.then(|n| Ok(n.to_string()));
    stale.add_callback(Ok);
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
    let failure = failure.trap::<Oops>().unwrap_err();
    let outer = failure.trap::<Outer>().unwrap();
    assert_eq!(outer.0.to_string(), "disk on fire");
}

#[test]
fn a_dropped_deferred_with_an_unhandled_failure_is_reported_once() {
    let before = unhandled_failures();
    {
        let d: Deferred<i32> = Deferred::new();
        let clone = d.clone();
        d.errback(Oops("nobody handles me"));
        drop(d);
        assert_eq!(unhandled_failures(), before, "not while a handle is alive");
        drop(clone);
    }
    assert_eq!(unhandled_failures(), before + 1);
    // Handled failures are not reported.
    let d: Deferred<i32> = fail(Oops("handled"));
    d.add_errback(|_| Ok(0));
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
    let same = maybe_deferred(|| pending.clone());
    pending.callback(5);
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
    let fire = d.clone();
    reactor.call_later(Duration::from_millis(1), move || fire.callback(20));
    let failing: Deferred<i32> = Deferred::new();
    let fire_failure = failing.clone();
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
fn from_future_errbacks_with_the_futures_error_or_panic() {
    let reactor = Reactor::new().unwrap();
    let d: Deferred<()> = Deferred::from_future(async { Err(Failure::from(Oops("async"))) });
    assert!(run_until(&reactor, &d).unwrap_err().check::<Oops>());
    let reactor = Reactor::new().unwrap();
    let d: Deferred<()> = Deferred::from_future(async { panic!("in a future") });
    assert!(run_until(&reactor, &d).unwrap_err().check::<Panicked>());
}

#[test]
fn cancelling_a_deferred_from_a_future_drops_the_future() {
    struct SetOnDrop(Rc<Cell<bool>>);
    impl Drop for SetOnDrop {
        fn drop(&mut self) {
            self.0.set(true);
        }
    }
    let reactor = Reactor::new().unwrap();
    let dropped = Rc::new(Cell::new(false));
    let guard = SetOnDrop(dropped.clone());
    let never: Deferred<i32> = Deferred::new();
    let d = Deferred::from_future(async move {
        let _guard = guard;
        never.await
    });
    let cancel = d.clone();
    reactor.call_later(Duration::from_millis(1), move || cancel.cancel());
    assert!(run_until(&reactor, &d)
        .unwrap_err()
        .check::<CancelledError>());
    assert!(dropped.get());
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
    let reactor = Reactor::new().unwrap();
    let d = defer_to_thread(|| -> Result<(), Failure> { panic!("worker panicked") });
    assert!(run_until(&reactor, &d).unwrap_err().check::<Panicked>());
}

#[test]
fn spawned_futures_run_on_the_reactor_and_a_panic_stays_in_its_future() {
    let reactor = Reactor::new().unwrap();
    let seen = log();
    twill::spawn(async { panic!("this future fails") });
    let s = seen.clone();
    let d: Deferred<&str> = Deferred::new();
    let waiting = d.clone();
    twill::spawn(async move {
        let word = waiting.await.unwrap();
        push(&s, word);
        twill::stop();
    });
    reactor.call_later(Duration::from_millis(1), move || {
        d.callback("still running")
    });
    let watchdog = reactor.call_later(Duration::from_secs(10), twill::stop);
    reactor.run().unwrap();
    assert!(watchdog.active());
    assert_eq!(*seen.borrow(), ["still running"]);
}

#[test]
fn a_callback_returning_a_deferred_whose_result_went_elsewhere_ends_the_chain() {
    let elsewhere = succeed(1);
    assert_eq!(elsewhere.result().unwrap().unwrap(), 1);
    let outer = succeed(0).then(move |_: i32| elsewhere);
    let error = outer.result().unwrap().unwrap_err();
    assert!(error.to_string().contains("already passed on"), "{error}");
}

#[test]
fn peeking_at_a_pending_deferred_does_not_strand_the_future_awaiting_it() {
    let reactor = Reactor::new().unwrap();
    let d: Deferred<i32> = Deferred::new();
    // A Deferred is a future: from_future polls it like any other.
    let awaited = Deferred::from_future(d.clone());
    let peek = d.clone();
    reactor.call_later(Duration::from_millis(1), move || {
        assert!(peek.result().is_none())
    });
    let fire = d.clone();
    reactor.call_later(Duration::from_millis(2), move || fire.callback(7));
    assert_eq!(run_until(&reactor, &awaited).unwrap(), 7);
}

#[test]
fn two_futures_awaiting_one_deferred_both_finish_and_one_gets_the_result() {
    let reactor = Reactor::new().unwrap();
    let d: Deferred<i32> = Deferred::new();
    let (a, b) = (d.clone(), d.clone());
    let both = Deferred::from_future(async move {
        let first = Deferred::from_future(async move { Ok(a.await.is_ok()) });
        let second = Deferred::from_future(async move { Ok(b.await.is_ok()) });
        Ok((first.await?, second.await?))
    });
    let fire = d.clone();
    reactor.call_later(Duration::from_millis(1), move || fire.callback(1));
    let (first, second) = run_until(&reactor, &both).unwrap();
    assert!(
        first != second,
        "exactly one awaiter gets the value: {first} {second}"
    );
}
