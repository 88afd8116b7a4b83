//! `LoopingCall` and `defer_later` (reference sections 4.1 and 1.16): every
//! LoopingCall test vector of Twisted's `test_task.py` named in the
//! reference, driven by `twill::task::Clock`, and the `deferLater` rules.
//!
//! Times are kept in milliseconds since the clock's creation so the
//! vectors read as Twisted's seconds.

mod support;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use twill::defer::{fail, CancelledError, Deferred, Failure, Resolver};
use twill::task::{defer_later, Clock, LoopingCall, LoopingCallError, WeakLoopingCall};
use twill::testing::{assert_no_result, failure_result_of, success_result_of};
use twill::{Panicked, Reactor, ReactorTime};

use support::run_bounded;

fn ms(m: u64) -> Duration {
    Duration::from_millis(m)
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// A clock and its start, to read times as milliseconds since then.
struct Time {
    clock: Clock,
    t0: Instant,
}

impl Time {
    fn new() -> Time {
        let clock = Clock::new();
        let t0 = clock.now();
        Time { clock, t0 }
    }

    fn ms(&self) -> u64 {
        (self.clock.now() - self.t0).as_millis() as u64
    }

    fn rc(&self) -> Rc<dyn ReactorTime> {
        Rc::new(self.clock.clone())
    }
}

/// A slot the loop's own function reads its handle from.
#[derive(Clone, Default)]
struct Me(Rc<RefCell<Option<WeakLoopingCall>>>);

impl Me {
    fn set(&self, lc: &LoopingCall) {
        *self.0.borrow_mut() = Some(lc.downgrade());
    }

    fn get(&self) -> LoopingCall {
        self.0
            .borrow()
            .as_ref()
            .and_then(WeakLoopingCall::upgrade)
            .expect("the loop is alive")
    }
}

#[derive(Debug)]
struct TestException(String);

impl std::fmt::Display for TestException {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TestException({})", self.0)
    }
}

impl std::error::Error for TestException {}

/// The LoopingCall a start Deferred fired with.
#[track_caller]
fn stopped_with(d: &Deferred<LoopingCall>) -> LoopingCall {
    success_result_of(d)
}

/// The failure a start Deferred failed with.
#[track_caller]
fn failed_with(d: &Deferred<LoopingCall>) -> Failure {
    failure_result_of(d)
}

// ---------------------------------------------------------------------------
// LoopingCall: Twisted's test vectors
// ---------------------------------------------------------------------------

/// testBasicFunction: interval 0.1, `pump([0.05, 0.1, 0.1])` -> 3 calls
/// with the function's arguments; `stop()` fires the Deferred with the
/// LoopingCall; nothing left pending.
#[test]
fn basic_function() {
    let time = Time::new();
    let calls = Rc::new(RefCell::new(Vec::new()));
    let log = calls.clone();
    let (a, b, d) = ("a", "b", "d");
    let lc = LoopingCall::new(move || {
        log.borrow_mut().push((a, b, d));
        Ok(())
    })
    .clock(time.rc());
    let started = lc.start(ms(100), true).unwrap();
    time.clock.pump(&[ms(50), ms(100), ms(100)]);
    assert_eq!(*calls.borrow(), [("a", "b", "d"); 3]);

    assert_no_result(&started);
    lc.stop().unwrap();
    assert!(stopped_with(&started) == lc);
    assert!(!lc.running());
    assert!(time.clock.delayed_calls().is_empty());
}

/// testDelayedStart: the same with `now = false` -> 2 calls.
#[test]
fn delayed_start() {
    let time = Time::new();
    let calls = Rc::new(Cell::new(0));
    let counter = calls.clone();
    let lc = LoopingCall::new(move || {
        counter.set(counter.get() + 1);
        Ok(())
    })
    .clock(time.rc());
    let started = lc.start(ms(100), false).unwrap();
    assert_eq!(calls.get(), 0);
    time.clock.pump(&[ms(50), ms(100), ms(100)]);
    assert_eq!(calls.get(), 2);

    lc.stop().unwrap();
    assert!(stopped_with(&started) == lc);
    assert!(time.clock.delayed_calls().is_empty());
}

/// test_callbackTimeSkips: interval 0.5; the function itself advances the
/// clock by 2 s, then 1 s, then 0 -> calls at 0, 2.5, 4 (2.0 and 3.5 are
/// "now", not the future, so they are skipped).
#[test]
fn callback_time_skips() {
    let time = Rc::new(Time::new());
    let times = Rc::new(RefCell::new(Vec::new()));
    let call_duration = Rc::new(Cell::new(secs(2)));
    let (log, inner, duration) = (times.clone(), time.clone(), call_duration.clone());
    let lc = LoopingCall::new(move || {
        log.borrow_mut().push(inner.ms());
        inner.clock.advance(duration.get());
        Ok(())
    })
    .clock(time.rc());

    let done = lc.start(ms(500), true).unwrap();
    assert_eq!(*times.borrow(), [0]);
    assert_eq!(time.ms(), 2000);

    // The grid point at 2 is the present, not the future: skipped.
    time.clock.advance(Duration::ZERO);
    assert_eq!(*times.borrow(), [0]);

    // 2.5 is in the future.
    call_duration.set(secs(1));
    time.clock.advance(ms(500));
    assert_eq!(*times.borrow(), [0, 2500]);
    assert_eq!(time.ms(), 3500);

    time.clock.advance(Duration::ZERO);
    assert_eq!(*times.borrow(), [0, 2500]);

    call_duration.set(Duration::ZERO);
    time.clock.advance(ms(500));
    assert_eq!(*times.borrow(), [0, 2500, 4000]);
    assert_eq!(time.ms(), 4000);
    lc.stop().unwrap();
    assert!(stopped_with(&done) == lc);
}

/// test_reactorTimeSkips: interval 0.5, an instant function; `advance(2)`
/// -> a call at 2; `advance(1)` -> a call at 3; `advance(0)` -> nothing.
#[test]
fn reactor_time_skips() {
    let time = Rc::new(Time::new());
    let times = Rc::new(RefCell::new(Vec::new()));
    let (log, inner) = (times.clone(), time.clone());
    let lc = LoopingCall::new(move || {
        log.borrow_mut().push(inner.ms());
        Ok(())
    })
    .clock(time.rc());

    let done = lc.start(ms(500), true).unwrap();
    assert_eq!(*times.borrow(), [0]);
    time.clock.advance(secs(2));
    assert_eq!(*times.borrow(), [0, 2000]);
    time.clock.advance(secs(1));
    assert_eq!(*times.borrow(), [0, 2000, 3000]);
    time.clock.advance(Duration::ZERO);
    assert_eq!(*times.borrow(), [0, 2000, 3000]);
    lc.stop().unwrap();
    assert!(stopped_with(&done) == lc);
}

/// What a `with_count` loop's function got: `(time in ms, count)` per call.
type Counts = Rc<RefCell<Vec<(u64, u64)>>>;

/// A `with_count` loop that records `(time in ms, count)`.
fn counting_loop(time: &Rc<Time>) -> (LoopingCall, Counts) {
    let calls = Rc::new(RefCell::new(Vec::new()));
    let (log, inner) = (calls.clone(), time.clone());
    let lc = LoopingCall::with_count(move |count| {
        log.borrow_mut().push((inner.ms(), count));
        Ok(())
    })
    .clock(time.rc());
    (lc, calls)
}

/// test_reactorTimeCountSkips: interval 0.5; calls `(0, 1)`, `(0.51, 1)`,
/// then after advancing 1.51 s, `(2.02, 3)`.
#[test]
fn reactor_time_count_skips() {
    let time = Rc::new(Time::new());
    let (lc, calls) = counting_loop(&time);
    let (interval, realistic_delay) = (500, 10);

    let done = lc.start(ms(interval), true).unwrap();
    assert_eq!(calls.borrow_mut().pop(), Some((0, 1)));

    time.clock.advance(ms(interval + realistic_delay));
    assert_eq!(
        calls.borrow_mut().pop(),
        Some((interval + realistic_delay, 1))
    );

    time.clock.advance(ms(interval * 3 + realistic_delay));
    assert_eq!(
        calls.borrow_mut().pop(),
        Some((interval * 4 + realistic_delay * 2, 3))
    );

    time.clock.advance(Duration::ZERO);
    assert!(calls.borrow().is_empty());
    lc.stop().unwrap();
    assert!(stopped_with(&done) == lc);
}

/// test_countLengthyIntervalCounts: calls at T+d, 2.75T+d and 3T+d all get
/// count 1: only crossed grid points count.
#[test]
fn count_lengthy_interval_counts() {
    let time = Rc::new(Time::new());
    let (lc, calls) = counting_loop(&time);
    let (interval, realistic_delay) = (500, 10);

    let done = lc.start(ms(interval), true).unwrap();
    assert_eq!(calls.borrow_mut().pop(), Some((0, 1)));

    // About one interval later…
    time.clock.advance(ms(interval + realistic_delay));
    assert_eq!(
        calls.borrow_mut().pop(),
        Some((interval + realistic_delay, 1))
    );

    // …then something held the reactor up for 1.75 intervals…
    time.clock.advance(ms(interval * 7 / 4));
    assert_eq!(
        calls.borrow_mut().pop(),
        Some((interval * 11 / 4 + realistic_delay, 1))
    );

    // …and back to normal.
    time.clock.advance(ms(interval / 4));
    assert_eq!(
        calls.borrow_mut().pop(),
        Some((interval * 3 + realistic_delay, 1))
    );

    time.clock.advance(Duration::ZERO);
    assert!(calls.borrow().is_empty());
    lc.stop().unwrap();
    assert!(stopped_with(&done) == lc);
}

/// test_deferredWithCount: interval 0.2, `now = false`; the first call (at
/// 0.2, count 1) returns an unfired Deferred; `pump([0.2, 0.4])` -> no
/// other call; once it fires, `pump([0.2])` -> the second call, count 3.
#[test]
fn deferred_with_count() {
    let time = Time::new();
    let pending: Deferred<()> = Deferred::new();
    let fire_pending = pending.resolver();
    let counts = Rc::new(RefCell::new(Vec::new()));
    let (log, mut first) = (counts.clone(), Some(pending));
    let lc = LoopingCall::with_count(move |count| {
        log.borrow_mut().push(count);
        // The first call returns `pending`; the others succeed at once.
        first.take().unwrap_or_else(|| twill::defer::succeed(()))
    })
    .clock(time.rc());

    let done = lc.start(ms(200), false).unwrap();
    assert!(counts.borrow().is_empty());

    time.clock.pump(&[ms(200), ms(400)]);
    assert_eq!(*counts.borrow(), [1]);
    // Waiting on the Deferred: nothing is scheduled.
    assert!(time.clock.delayed_calls().is_empty());

    fire_pending.callback(());
    time.clock.pump(&[ms(200)]);
    assert_eq!(*counts.borrow(), [1, 3]);
    lc.stop().unwrap();
    assert!(stopped_with(&done) == lc);
}

/// test_reset: `start(2, now=False)`, `advance(1)`, `reset()`,
/// `advance(1)` -> not run; `advance(1)` -> run once.
#[test]
fn reset() {
    let time = Time::new();
    let ran = Rc::new(Cell::new(0));
    let counter = ran.clone();
    let lc = LoopingCall::new(move || {
        counter.set(counter.get() + 1);
        Ok(())
    })
    .clock(time.rc());

    let done = lc.start(secs(2), false).unwrap();
    time.clock.advance(secs(1));
    lc.reset().unwrap();
    time.clock.advance(secs(1));
    assert_eq!(ran.get(), 0);
    time.clock.advance(secs(1));
    assert_eq!(ran.get(), 1);
    lc.stop().unwrap();
    assert!(stopped_with(&done) == lc);
}

/// testStopAtOnce: started with `now = false` and interval 0, stopped at
/// once -> never ran, the Deferred fired, nothing pending.
#[test]
fn stop_at_once() {
    let time = Time::new();
    let ran = Rc::new(Cell::new(false));
    let flag = ran.clone();
    let lc = LoopingCall::new(move || {
        flag.set(true);
        Ok(())
    })
    .clock(time.rc());
    let started = lc.start(Duration::ZERO, false).unwrap();
    lc.stop().unwrap();
    assert!(stopped_with(&started) == lc);
    assert!(time.clock.delayed_calls().is_empty());
    time.clock.advance(secs(1));
    assert!(!ran.get());
}

/// testStoppingBeforeDelayedStart: the same with a long interval.
#[test]
fn stopping_before_delayed_start() {
    let time = Time::new();
    let lc =
        LoopingCall::new(|| -> Result<(), Failure> { panic!("must not run") }).clock(time.rc());
    let started = lc.start(secs(10), false).unwrap();
    lc.stop().unwrap();
    assert!(stopped_with(&started) == lc);
    assert!(time.clock.delayed_calls().is_empty());
    time.clock.advance(secs(60));
}

/// testEveryIteration: interval 0; the function stops the loop on its
/// sixth call -> the Deferred fires after 6 calls.
#[test]
fn every_iteration() {
    let time = Time::new();
    let me = Me::default();
    let ran = Rc::new(Cell::new(0));
    let (handle, counter) = (me.clone(), ran.clone());
    let lc = LoopingCall::new(move || {
        counter.set(counter.get() + 1);
        if counter.get() > 5 {
            handle.get().stop().unwrap();
        }
        Ok(())
    })
    .clock(time.rc());
    me.set(&lc);

    let started = lc.start(Duration::ZERO, true).unwrap();
    assert_eq!(ran.get(), 1);
    // Every iteration is a `call_later(0)`: one advance runs them all.
    time.clock.advance(Duration::ZERO);
    assert_eq!(ran.get(), 6);
    assert!(stopped_with(&started) == lc);
    assert!(time.clock.delayed_calls().is_empty());
}

/// testWaitDeferred: the function is not scheduled again before the
/// Deferred it returned fires (that Deferred's own callback stops the
/// loop).
#[test]
fn wait_deferred() {
    let time = Rc::new(Time::new());
    let me = Me::default();
    let ran = Rc::new(Cell::new(0));
    let (handle, counter, inner) = (me.clone(), ran.clone(), time.clone());
    let lc = LoopingCall::new(move || {
        counter.set(counter.get() + 1);
        let d: Deferred<()> = Deferred::new();
        let lc = handle.clone();
        d.add_callback(move |()| {
            lc.get().stop().unwrap();
            Ok(())
        });
        let fire = d.resolver();
        inner.clock.call_later(secs(1), move || fire.callback(()));
        d
    })
    .clock(time.rc());
    me.set(&lc);

    let started = lc.start(ms(200), true).unwrap();
    time.clock.pump(&[ms(200), ms(800)]);
    assert_eq!(ran.get(), 1);
    assert!(stopped_with(&started) == lc);
    assert!(time.clock.delayed_calls().is_empty());
}

/// testFailurePropagation: the function's Deferred fails after 0.3 s -> the
/// start Deferred fails with that failure, and nothing is left pending.
#[test]
fn failure_propagation() {
    let time = Rc::new(Time::new());
    let inner = time.clone();
    let lc = LoopingCall::new(move || {
        let d: Deferred<()> = Deferred::new();
        let fire = d.resolver();
        inner.clock.call_later(ms(300), move || {
            fire.errback(TestException("later".into()));
        });
        d
    })
    .clock(time.rc());

    let started = lc.start(secs(1), true).unwrap();
    assert_no_result(&started);
    time.clock.pump(&[ms(300)]);
    let failure = failed_with(&started);
    assert!(failure.check::<TestException>(), "{failure}");
    assert!(!lc.running());
    assert!(time.clock.delayed_calls().is_empty());
}

/// testFailAndStop: the function stops the loop, then fails -> the start
/// Deferred fails with the function's error.
#[test]
fn fail_and_stop() {
    let time = Time::new();
    let me = Me::default();
    let handle = me.clone();
    let x = "bar";
    let lc = LoopingCall::new(move || -> Result<(), Failure> {
        handle.get().stop().unwrap();
        Err(TestException(x.into()).into())
    })
    .clock(time.rc());
    me.set(&lc);

    let started = lc.start(ms(100), true).unwrap();
    let failure = failed_with(&started);
    assert_eq!(
        failure
            .downcast_ref::<TestException>()
            .map(|e| e.0.as_str()),
        Some("bar")
    );
    assert!(!lc.running());
    assert!(time.clock.delayed_calls().is_empty());
}

// ---------------------------------------------------------------------------
// LoopingCall: errors and other rules
// ---------------------------------------------------------------------------

/// testBadDelay has no counterpart (a `Duration` is never negative); an
/// interval longer than the clock can schedule is refused.
#[test]
fn start_refuses_an_interval_the_clock_cannot_schedule() {
    let time = Time::new();
    let lc = LoopingCall::new(|| Ok(())).clock(time.rc());
    assert_eq!(
        lc.start(Duration::MAX, true).unwrap_err(),
        LoopingCallError::InvalidInterval(Duration::MAX)
    );
    assert!(!lc.running());
    assert!(lc.interval().is_none());
    let limit = Duration::from_nanos(u64::MAX);
    let done = lc.start(limit, false).unwrap();
    assert_eq!(lc.interval(), Some(limit));
    lc.stop().unwrap();
    assert!(stopped_with(&done) == lc);
}

#[test]
fn start_stop_and_reset_say_when_the_loop_is_in_the_wrong_state() {
    let time = Time::new();
    let lc = LoopingCall::new(|| Ok(())).clock(time.rc());
    assert_eq!(lc.stop(), Err(LoopingCallError::NotRunning));
    assert_eq!(lc.reset(), Err(LoopingCallError::NotRunning));

    let first = lc.start(secs(1), true).unwrap();
    assert!(lc.running());
    assert_eq!(lc.interval(), Some(secs(1)));
    assert_eq!(
        lc.start(secs(1), true).unwrap_err(),
        LoopingCallError::AlreadyRunning
    );
    lc.stop().unwrap();
    assert_eq!(lc.stop(), Err(LoopingCallError::NotRunning));
    assert!(stopped_with(&first) == lc);

    // It can run again, with a new Deferred and a new grid.
    time.clock.advance(ms(300));
    let second = lc.start(secs(2), false).unwrap();
    assert_eq!(lc.interval(), Some(secs(2)));
    let pending = time.clock.delayed_calls();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].time() - time.t0, ms(2300));
    lc.stop().unwrap();
    assert!(stopped_with(&second) == lc);
}

#[test]
fn a_panic_in_the_function_fails_the_loop() {
    let time = Time::new();
    let calls = Rc::new(Cell::new(0));
    let counter = calls.clone();
    let lc = LoopingCall::new(move || -> Result<(), Failure> {
        counter.set(counter.get() + 1);
        if counter.get() == 2 {
            panic!("second call");
        }
        Ok(())
    })
    .clock(time.rc());
    let started = lc.start(secs(1), true).unwrap();
    time.clock.advance(secs(1));
    let failure = failed_with(&started);
    let panicked = failure
        .downcast_ref::<Panicked>()
        .expect("a Panicked failure");
    assert_eq!(panicked.message, "second call");
    assert!(!lc.running());
    time.clock.advance(secs(5));
    assert_eq!(calls.get(), 2);
    assert!(time.clock.delayed_calls().is_empty());
}

#[test]
fn an_err_from_the_function_fails_the_loop_and_can_be_handled() {
    let time = Time::new();
    let lc = LoopingCall::new(|| fail::<()>(Failure::new("gave up"))).clock(time.rc());
    let handled = Rc::new(RefCell::new(String::new()));
    let (sink, recovered) = (handled.clone(), lc.clone());
    let before = twill::defer::unhandled_failures();
    let started = lc.start(secs(1), true).unwrap();
    started.add_errback(move |failure| {
        *sink.borrow_mut() = failure.to_string();
        Ok(recovered)
    });
    drop(started);
    assert_eq!(*handled.borrow(), "gave up");
    assert!(!lc.running());
    assert_eq!(twill::defer::unhandled_failures(), before);
}

/// Stopped from inside the function while its Deferred is pending, the
/// loop cannot start again until that call completes; it can from the
/// start Deferred's callback.
#[test]
fn a_loop_stopped_mid_call_restarts_once_the_call_completes() {
    let time = Time::new();
    let work: Rc<RefCell<Vec<Resolver<()>>>> = Rc::default();
    let log = work.clone();
    let lc = LoopingCall::new(move || {
        let d = Deferred::new();
        log.borrow_mut().push(d.resolver());
        d
    })
    .clock(time.rc());
    let started = lc.start(secs(1), true).unwrap();
    lc.stop().unwrap();
    assert!(!lc.running());
    assert_no_result(&started); // the call is still under way
    assert_eq!(
        lc.start(secs(1), true).unwrap_err(),
        LoopingCallError::AlreadyRunning
    );

    let restarted = Rc::new(RefCell::new(None));
    let slot = restarted.clone();
    started.add_callback(move |lc| {
        *slot.borrow_mut() = Some(lc.start(secs(1), false).unwrap());
        Ok(lc)
    });
    let first = work.borrow()[0].clone();
    first.callback(());
    assert!(lc.running());
    assert!(stopped_with(&started) == lc);
    time.clock.advance(secs(1));
    assert_eq!(work.borrow().len(), 2);
    assert_eq!(lc.stop(), Ok(()));
    work.borrow()[1].callback(());
    let second = restarted.borrow_mut().take().unwrap();
    assert!(stopped_with(&second) == lc);
}

/// `reset` while a call is under way changes nothing; the grid goes on.
#[test]
fn reset_during_a_call_does_nothing() {
    let time = Rc::new(Time::new());
    let me = Me::default();
    let times = Rc::new(RefCell::new(Vec::new()));
    let (handle, log, inner) = (me.clone(), times.clone(), time.clone());
    let lc = LoopingCall::new(move || {
        log.borrow_mut().push(inner.ms());
        handle.get().reset().unwrap();
        Ok(())
    })
    .clock(time.rc());
    me.set(&lc);
    let done = lc.start(secs(1), true).unwrap();
    time.clock.pump(&[ms(1500), ms(1000)]);
    assert_eq!(*times.borrow(), [0, 1500, 2500]);
    let next = time.clock.delayed_calls();
    assert_eq!(next[0].time() - time.t0, secs(3));
    lc.stop().unwrap();
    assert!(stopped_with(&done) == lc);
}

#[test]
fn with_count_gives_one_for_interval_zero() {
    let time = Time::new();
    let me = Me::default();
    let counts = Rc::new(RefCell::new(Vec::new()));
    let (handle, log) = (me.clone(), counts.clone());
    let lc = LoopingCall::with_count(move |count| {
        log.borrow_mut().push(count);
        if log.borrow().len() == 4 {
            handle.get().stop().unwrap();
        }
        Ok(())
    })
    .clock(time.rc());
    me.set(&lc);
    let done = lc.start(Duration::ZERO, true).unwrap();
    time.clock.advance(secs(3));
    assert_eq!(*counts.borrow(), [1, 1, 1, 1]);
    assert!(stopped_with(&done) == lc, "stopped by its fourth call");
}

/// A delayed first call counts from the start; a restart counts from its
/// own start, not from the previous run's last call.
#[test]
fn with_count_counts_from_the_start_of_each_run() {
    let time = Rc::new(Time::new());
    let (lc, calls) = counting_loop(&time);
    let done = lc.start(secs(1), false).unwrap();
    time.clock.advance(ms(3500));
    assert_eq!(*calls.borrow(), [(3500, 3)]);
    lc.stop().unwrap();
    assert!(stopped_with(&done) == lc);

    time.clock.advance(secs(10));
    let done = lc.start(secs(1), true).unwrap();
    assert_eq!(*calls.borrow(), [(3500, 3), (13500, 1)]);
    time.clock.advance(secs(1));
    assert_eq!(calls.borrow().last(), Some(&(14500, 1)));
    lc.stop().unwrap();
    assert!(stopped_with(&done) == lc);
}

/// Interval 0 on the real reactor: one call per reactor turn, from the
/// current thread's reactor by default.
#[test]
fn interval_zero_runs_every_reactor_turn_on_the_default_reactor() {
    let reactor = Reactor::new().unwrap();
    let me = Me::default();
    let ran = Rc::new(Cell::new(0));
    let (handle, counter) = (me.clone(), ran.clone());
    let lc = LoopingCall::new(move || {
        counter.set(counter.get() + 1);
        if counter.get() == 100 {
            handle.get().stop().unwrap();
        }
        Ok(())
    });
    me.set(&lc);
    let stopped = Rc::new(Cell::new(false));
    let flag = stopped.clone();
    reactor.call_when_running(move || {
        lc.start(Duration::ZERO, true)
            .unwrap()
            .add_callback(move |lc| {
                flag.set(true);
                twill::stop();
                Ok(lc)
            });
    });
    run_bounded(&reactor, secs(5));
    assert_eq!(ran.get(), 100);
    assert!(stopped.get());
}

#[test]
fn without_a_clock_or_a_reactor_start_fails() {
    // Each test runs on its own thread: this one has no reactor.
    let lc = LoopingCall::new(|| Ok(()));
    assert_eq!(
        lc.start(secs(1), true).unwrap_err(),
        LoopingCallError::NoReactor
    );
    assert!(!lc.running());
}

/// A running loop keeps itself alive through its pending call; dropping
/// every handle does not stop it.
#[test]
fn a_running_loop_outlives_its_handles() {
    let time = Time::new();
    let ran = Rc::new(Cell::new(0));
    let counter = ran.clone();
    let lc = LoopingCall::new(move || {
        counter.set(counter.get() + 1);
        Ok(())
    })
    .clock(time.rc());
    let weak = lc.downgrade();
    drop(lc.start(secs(1), true).unwrap());
    drop(lc);
    time.clock.pump(&[secs(1), secs(1)]);
    assert_eq!(ran.get(), 3);
    weak.upgrade().expect("still alive").stop().unwrap();
    assert!(time.clock.delayed_calls().is_empty());
    assert!(weak.upgrade().is_none(), "freed once stopped");
}

// ---------------------------------------------------------------------------
// defer_later
// ---------------------------------------------------------------------------

#[test]
fn defer_later_fires_with_the_value_after_the_delay() {
    let time = Time::new();
    let d = defer_later(&time.clock, secs(3), || Ok::<_, Failure>(42));
    time.clock.advance(ms(2999));
    assert_no_result(&d);
    time.clock.advance(ms(1));
    assert_eq!(d.result().unwrap().unwrap(), 42);
    assert!(time.clock.delayed_calls().is_empty());
}

#[test]
fn defer_later_waits_for_a_deferred_the_function_returns() {
    let time = Time::new();
    let inner: Deferred<&str> = Deferred::new();
    let fire_inner = inner.resolver();
    let d = defer_later(&time.clock, secs(1), move || inner);
    time.clock.advance(secs(1));
    assert_no_result(&d);
    fire_inner.callback("later");
    assert_eq!(d.result().unwrap().unwrap(), "later");
}

#[test]
fn defer_later_fails_with_the_function_s_failure() {
    let time = Time::new();
    let d = defer_later(&time.clock, secs(1), || -> Result<(), Failure> {
        Err(TestException("nope".into()).into())
    });
    time.clock.advance(secs(1));
    let failure = d.result().unwrap().unwrap_err();
    assert!(failure.check::<TestException>());
}

#[test]
fn defer_later_turns_a_panic_into_a_failure() {
    let time = Time::new();
    let d = defer_later(&time.clock, secs(1), || -> Result<u8, Failure> {
        panic!("in defer_later")
    });
    // The panic does not reach `advance`.
    time.clock.advance(secs(1));
    let failure = d.result().unwrap().unwrap_err();
    assert_eq!(
        failure
            .downcast_ref::<Panicked>()
            .map(|p| p.message.as_str()),
        Some("in defer_later")
    );
}

#[test]
fn cancelling_defer_later_cancels_the_timer_and_never_calls_the_function() {
    let time = Time::new();
    let called = Rc::new(Cell::new(false));
    let flag = called.clone();
    let d = defer_later(&time.clock, secs(1), move || {
        flag.set(true);
        Ok::<_, Failure>(())
    });
    assert_eq!(time.clock.delayed_calls().len(), 1);
    d.cancel();
    assert!(time.clock.delayed_calls().is_empty());
    let failure = d.result().unwrap().unwrap_err();
    assert!(failure.check::<CancelledError>());
    time.clock.advance(secs(5));
    assert!(!called.get());
}

#[test]
fn defer_later_with_zero_delay_fires_on_the_next_advance() {
    let time = Time::new();
    let d = defer_later(&time.clock, Duration::ZERO, || Ok::<_, Failure>("soon"));
    assert_no_result(&d); // never synchronously
    time.clock.advance(Duration::ZERO);
    assert_eq!(d.result().unwrap().unwrap(), "soon");
}

#[test]
fn defer_later_on_the_reactor() {
    let reactor = Reactor::new().unwrap();
    let started = std::time::Instant::now();
    let got = Rc::new(Cell::new(None));
    let sink = got.clone();
    defer_later(&reactor, ms(50), || Ok::<_, Failure>(7)).add_callback(move |n| {
        sink.set(Some(n));
        twill::stop();
        Ok(n)
    });
    run_bounded(&reactor, secs(5));
    assert_eq!(got.get(), Some(7));
    assert!(started.elapsed() >= ms(50));
}
