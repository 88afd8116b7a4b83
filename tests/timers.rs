//! Timer rules: Twisted's `IDelayedCall` and `task.Clock` (reference
//! sections 3.6 and 4.2), checked on `twill::task::Clock` and on the real
//! reactor.
//!
//! Reactor and clock callbacks catch panics, so the tests below record what
//! happens inside callbacks and assert after `run` / `advance` returns.

mod support;

use std::cell::{Cell, RefCell};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use twill::task::Clock;
use twill::{
    Bytes, DelayedCall, DelayedCallError, Phase, Protocol, Reactor, ReactorStopped, ReactorTime,
    SystemEvent, Transport,
};

use support::{capture_logs, logged, run_bounded};

/// How long any reactor-driven test may take before its watchdog stops it.
const LIMIT: Duration = Duration::from_secs(5);

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn ms(m: u64) -> Duration {
    Duration::from_millis(m)
}

/// What callbacks did, in order. `Arc<Mutex<…>>` so that calls made from
/// other threads can record too.
#[derive(Clone, Default)]
struct Trace(Arc<Mutex<Vec<String>>>);

impl Trace {
    fn push(&self, what: impl Into<String>) {
        self.0.lock().unwrap().push(what.into());
    }

    /// A callback that records `what`.
    fn note(&self, what: &str) -> impl FnOnce() + Send + 'static {
        let trace = self.clone();
        let what = what.to_owned();
        move || trace.push(what)
    }

    fn get(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

/// A counter a callback increments.
fn counter() -> Rc<Cell<u32>> {
    Rc::new(Cell::new(0))
}

fn bump(count: &Rc<Cell<u32>>) -> impl FnOnce() + 'static {
    let count = count.clone();
    move || count.set(count.get() + 1)
}

// ---------------------------------------------------------------------------
// Clock: ordering
// ---------------------------------------------------------------------------

#[test]
fn clock_runs_calls_due_at_the_same_instant_in_scheduling_order() {
    let clock = Clock::new();
    let order = Rc::new(RefCell::new(Vec::new()));
    for (i, delay) in [3, 1, 3, 2, 1, 3, 2].into_iter().enumerate() {
        let order = order.clone();
        clock.call_later(secs(delay), move || order.borrow_mut().push(i));
    }
    clock.advance(secs(3));
    assert_eq!(*order.borrow(), vec![1, 4, 3, 6, 0, 2, 5]);
}

#[test]
fn clock_runs_nothing_before_its_due_time_and_everything_due_once_advanced() {
    let clock = Clock::new();
    let start = clock.now();
    let runs = counter();
    let call = clock.call_later(secs(10), bump(&runs));
    assert_eq!(call.time(), start + secs(10));
    clock.advance(ms(9_999));
    assert_eq!(runs.get(), 0);
    assert_eq!(clock.now(), start + ms(9_999));
    clock.advance(ms(1));
    assert_eq!(runs.get(), 1);
    clock.advance(secs(100));
    assert_eq!(runs.get(), 1, "a call runs once");
}

#[test]
fn clock_advance_runs_calls_scheduled_by_calls_when_they_are_due() {
    let clock = Clock::new();
    let start = clock.now();
    let order = Rc::new(RefCell::new(Vec::new()));
    let later: Rc<RefCell<Option<DelayedCall>>> = Rc::default();
    {
        let (clock2, order, later) = (clock.clone(), order.clone(), later.clone());
        clock.call_later(secs(1), move || {
            order.borrow_mut().push("first");
            let (clock3, order2) = (clock2.clone(), order.clone());
            // Due now: runs in this same advance, and so does what it schedules.
            clock2.call_later(Duration::ZERO, move || {
                order2.borrow_mut().push("zero-delay from first");
                let order3 = order2.clone();
                clock3.call_later(Duration::ZERO, move || {
                    order3.borrow_mut().push("zero-delay from zero-delay");
                });
            });
            // Due one second later: waits for the next advance.
            let order4 = order.clone();
            *later.borrow_mut() = Some(clock2.call_later(secs(1), move || {
                order4.borrow_mut().push("one second after first");
            }));
        });
    }
    clock.advance(secs(1));
    assert_eq!(
        *order.borrow(),
        vec![
            "first",
            "zero-delay from first",
            "zero-delay from zero-delay"
        ]
    );
    let later = later.borrow().clone().expect("first ran");
    assert_eq!(later.time(), start + secs(2));
    assert!(later.active());
    clock.advance(secs(1));
    assert_eq!(order.borrow().last(), Some(&"one second after first"));
    assert_eq!(order.borrow().len(), 4);
}

#[test]
fn clock_advance_by_zero_runs_what_is_due_now() {
    let clock = Clock::new();
    let runs = counter();
    clock.call_later(Duration::ZERO, bump(&runs));
    assert_eq!(runs.get(), 0, "call_later never runs the call at once");
    clock.advance(Duration::ZERO);
    assert_eq!(runs.get(), 1);
}

#[test]
fn clock_pump_advances_by_each_step_in_turn() {
    let clock = Clock::new();
    let start = clock.now();
    let seen = Rc::new(RefCell::new(Vec::new()));
    for (name, delay) in [("a", ms(1_000)), ("b", ms(2_500)), ("c", ms(3_000))] {
        let (seen, clock2) = (seen.clone(), clock.clone());
        clock.call_later(delay, move || {
            seen.borrow_mut().push((name, clock2.now() - start));
        });
    }
    clock.pump(&[secs(1), secs(1), secs(1)]);
    assert_eq!(
        *seen.borrow(),
        vec![("a", secs(1)), ("b", secs(3)), ("c", secs(3))],
        "each call runs at the first step that reaches its due time"
    );
    assert_eq!(clock.now(), start + secs(3));
}

#[test]

fn clock_advance_propagates_a_panic_from_a_call() {
    let clock = Clock::new();
    let later = counter();
    clock.call_later(secs(1), || {
        panic!("an assertion failed inside a clock call")
    });
    clock.call_later(secs(2), bump(&later));
    let result = catch_unwind(AssertUnwindSafe(|| clock.advance(secs(1))));
    assert!(
        result.is_err(),
        "the panic should reach the caller of advance"
    );
    clock.advance(secs(1));
    assert_eq!(later.get(), 1, "the clock still works after the panic");
}

// ---------------------------------------------------------------------------
// DelayedCall: errors
// ---------------------------------------------------------------------------

#[test]
fn cancelling_twice_is_already_cancelled() {
    let clock = Clock::new();
    let runs = counter();
    let call = clock.call_later(secs(1), bump(&runs));
    assert_eq!(call.cancel(), Ok(()));
    assert_eq!(call.cancel(), Err(DelayedCallError::AlreadyCancelled));
    clock.advance(secs(2));
    assert_eq!(runs.get(), 0, "a cancelled call never runs");
}

#[test]
fn cancelling_after_the_call_ran_is_already_called() {
    let clock = Clock::new();
    let call = clock.call_later(secs(1), || {});
    clock.advance(secs(1));
    assert_eq!(call.cancel(), Err(DelayedCallError::AlreadyCalled));
}

#[test]
fn cancelling_a_call_from_inside_itself_is_already_called() {
    let clock = Clock::new();
    let me: Rc<RefCell<Option<DelayedCall>>> = Rc::default();
    let seen = Rc::new(RefCell::new(None));
    let call = {
        let (me, seen) = (me.clone(), seen.clone());
        clock.call_later(secs(1), move || {
            let me = me.borrow().clone().expect("handle stored before advance");
            *seen.borrow_mut() = Some((me.cancel(), me.called(), me.active(), me.cancelled()));
        })
    };
    *me.borrow_mut() = Some(call.clone());
    clock.advance(secs(1));
    assert_eq!(
        *seen.borrow(),
        Some((Err(DelayedCallError::AlreadyCalled), true, false, false)),
        "(cancel result, called, active, cancelled) seen from inside the call"
    );
    assert!(call.called());
}

#[test]
fn reset_and_delay_after_the_call_ran_are_already_called() {
    let clock = Clock::new();
    let runs = counter();
    let call = clock.call_later(secs(1), bump(&runs));
    clock.advance(secs(1));
    let due = call.time();
    assert_eq!(call.reset(secs(5)), Err(DelayedCallError::AlreadyCalled));
    assert_eq!(call.delay(secs(5)), Err(DelayedCallError::AlreadyCalled));
    assert_eq!(call.time(), due, "a failed reset/delay changes nothing");
    clock.advance(secs(10));
    assert_eq!(runs.get(), 1, "a failed reset does not run the call again");
    assert!(clock.delayed_calls().is_empty());
}

#[test]
fn reset_and_delay_after_cancel_are_already_cancelled() {
    let clock = Clock::new();
    let runs = counter();
    let call = clock.call_later(secs(1), bump(&runs));
    call.cancel().unwrap();
    assert_eq!(call.reset(secs(5)), Err(DelayedCallError::AlreadyCancelled));
    assert_eq!(call.delay(secs(5)), Err(DelayedCallError::AlreadyCancelled));
    clock.advance(secs(10));
    assert_eq!(
        runs.get(),
        0,
        "a failed reset does not revive a cancelled call"
    );
    assert!(clock.delayed_calls().is_empty());
}

#[test]
fn delayed_call_errors_say_what_went_wrong() {
    assert!(DelayedCallError::AlreadyCalled
        .to_string()
        .contains("called"));
    assert!(DelayedCallError::AlreadyCancelled
        .to_string()
        .contains("cancelled"));
}

// ---------------------------------------------------------------------------
// DelayedCall: state, reset, delay
// ---------------------------------------------------------------------------

#[test]
fn active_called_and_cancelled_report_the_calls_state() {
    let clock = Clock::new();
    let pending = clock.call_later(secs(1), || {});
    assert_eq!(
        (pending.active(), pending.called(), pending.cancelled()),
        (true, false, false)
    );
    let ran = clock.call_later(secs(1), || {});
    let cancelled = clock.call_later(secs(1), || {});
    cancelled.cancel().unwrap();
    pending.reset(secs(2)).unwrap();
    clock.advance(secs(1));
    assert_eq!(
        (ran.active(), ran.called(), ran.cancelled()),
        (false, true, false)
    );
    assert_eq!(
        (
            cancelled.active(),
            cancelled.called(),
            cancelled.cancelled()
        ),
        (false, false, true)
    );
    assert!(pending.active(), "reset keeps a call active");
    let copy = pending.clone();
    copy.cancel().unwrap();
    assert!(pending.cancelled(), "clones are handles to the same call");
}

#[test]
fn cancel_drops_the_function_at_once() {
    struct Guard(Rc<Cell<bool>>);
    impl Drop for Guard {
        fn drop(&mut self) {
            self.0.set(true);
        }
    }
    let clock = Clock::new();
    let dropped = Rc::new(Cell::new(false));
    let guard = Guard(dropped.clone());
    let call = clock.call_later(secs(1), move || drop(guard));
    assert!(!dropped.get());
    call.cancel().unwrap();
    assert!(
        dropped.get(),
        "cancel releases what the function captured without waiting for the clock"
    );
}

#[test]
fn reset_to_later_moves_the_due_time_from_now() {
    let clock = Clock::new();
    let start = clock.now();
    let ran_at = Rc::new(Cell::new(None));
    let call = {
        let (clock2, ran_at) = (clock.clone(), ran_at.clone());
        clock.call_later(secs(5), move || ran_at.set(Some(clock2.now() - start)))
    };
    clock.advance(secs(2));
    call.reset(secs(10)).unwrap();
    assert_eq!(call.time(), start + secs(12), "reset counts from now");
    clock.advance(secs(3));
    assert_eq!(ran_at.get(), None, "not at the old due time");
    clock.advance(ms(6_999));
    assert_eq!(ran_at.get(), None);
    clock.advance(ms(1));
    assert_eq!(ran_at.get(), Some(secs(12)));
}

#[test]
fn reset_to_earlier_moves_the_due_time_from_now() {
    let clock = Clock::new();
    let start = clock.now();
    let ran_at = Rc::new(Cell::new(None));
    let runs = counter();
    let call = {
        let (clock2, ran_at, runs) = (clock.clone(), ran_at.clone(), runs.clone());
        clock.call_later(secs(10), move || {
            runs.set(runs.get() + 1);
            ran_at.set(Some(clock2.now() - start));
        })
    };
    clock.advance(secs(1));
    call.reset(secs(2)).unwrap();
    assert_eq!(call.time(), start + secs(3));
    clock.advance(ms(1_999));
    assert_eq!(ran_at.get(), None);
    clock.advance(ms(1));
    assert_eq!(ran_at.get(), Some(secs(3)));
    clock.advance(secs(20));
    assert_eq!(runs.get(), 1, "the old due time does not run it again");
}

#[test]
fn delay_pushes_the_due_time_back_from_the_current_due_time() {
    let clock = Clock::new();
    let start = clock.now();
    let ran_at = Rc::new(Cell::new(None));
    let call = {
        let (clock2, ran_at) = (clock.clone(), ran_at.clone());
        clock.call_later(secs(5), move || ran_at.set(Some(clock2.now() - start)))
    };
    clock.advance(secs(4));
    call.delay(secs(1)).unwrap();
    assert_eq!(
        call.time(),
        start + secs(6),
        "delay adds to the due time, not to now"
    );
    call.delay(secs(2)).unwrap();
    assert_eq!(call.time(), start + secs(8), "delays accumulate");
    clock.advance(secs(1));
    assert_eq!(ran_at.get(), None, "not at the original due time");
    clock.advance(ms(2_999));
    assert_eq!(ran_at.get(), None);
    clock.advance(ms(1));
    assert_eq!(ran_at.get(), Some(secs(8)));
}

#[test]
fn delayed_calls_lists_only_pending_calls_earliest_first() {
    let clock = Clock::new();
    let start = clock.now();
    let a = clock.call_later(secs(5), || {});
    let b = clock.call_later(secs(1), || {});
    let c = clock.call_later(secs(3), || {});
    let d = clock.call_later(secs(1), || {});
    a.reset(secs(2)).unwrap();
    b.delay(secs(3)).unwrap();
    c.cancel().unwrap();
    let times = |calls: Vec<DelayedCall>| -> Vec<Duration> {
        calls.iter().map(|call| call.time() - start).collect()
    };
    assert_eq!(
        times(clock.delayed_calls()),
        vec![secs(1), secs(2), secs(4)]
    );
    assert!(clock.delayed_calls().iter().all(DelayedCall::active));
    clock.advance(secs(2));
    assert!(d.called() && a.called());
    assert_eq!(times(clock.delayed_calls()), vec![secs(4)]);
    assert_eq!(
        times(ReactorTime::delayed_calls(&clock)),
        vec![secs(4)],
        "the ReactorTime view agrees"
    );
}

// ---------------------------------------------------------------------------
// Many changes: the lazily-cancelled heap stays correct
// ---------------------------------------------------------------------------

#[test]
fn ten_thousand_resets_leave_one_call_that_runs_once_at_its_last_due_time() {
    let clock = Clock::new();
    let start = clock.now();
    let runs = counter();
    let call = clock.call_later(secs(1), bump(&runs));
    for i in 0..10_000u64 {
        // Alternately later and earlier than the current due time.
        let delay = if i % 2 == 0 {
            ms(500 + i)
        } else {
            ms(10 + i % 100)
        };
        call.reset(delay).unwrap();
    }
    assert_eq!(call.time(), start + ms(109));
    assert_eq!(clock.delayed_calls().len(), 1);
    clock.advance(ms(108));
    assert_eq!(runs.get(), 0);
    clock.advance(ms(1));
    assert_eq!(runs.get(), 1);
    clock.advance(secs(100));
    assert_eq!(runs.get(), 1, "no stale copy of the call runs it again");
    assert!(clock.delayed_calls().is_empty());
}

#[test]
fn ten_thousand_delays_accumulate_on_one_call() {
    let clock = Clock::new();
    let start = clock.now();
    let runs = counter();
    let call = clock.call_later(secs(1), bump(&runs));
    for _ in 0..10_000 {
        call.delay(ms(1)).unwrap();
    }
    assert_eq!(call.time(), start + secs(11));
    clock.advance(ms(10_999));
    assert_eq!(runs.get(), 0);
    clock.advance(ms(1));
    assert_eq!(runs.get(), 1);
}

#[test]
fn ten_thousand_cancels_leave_only_the_pending_calls_which_run_in_order() {
    let clock = Clock::new();
    let start = clock.now();
    let ran = Rc::new(RefCell::new(Vec::new()));
    let mut calls = Vec::new();
    // Scheduled in a scrambled order of due times.
    for n in 0..10_000u64 {
        let i = (n * 7_919) % 10_000;
        let ran = ran.clone();
        calls.push((
            i,
            clock.call_later(ms(i + 1), move || ran.borrow_mut().push(i)),
        ));
    }
    for (i, call) in &calls {
        if i % 3 != 0 {
            call.cancel().unwrap();
        }
    }
    let keep: Vec<u64> = (0..10_000).filter(|i| i % 3 == 0).collect();
    let pending = clock.delayed_calls();
    assert_eq!(pending.len(), keep.len());
    let times: Vec<Duration> = pending.iter().map(|call| call.time() - start).collect();
    let expected: Vec<Duration> = keep.iter().map(|i| ms(i + 1)).collect();
    assert_eq!(times, expected, "pending calls, earliest first");
    clock.advance(secs(20));
    assert_eq!(*ran.borrow(), keep);
    assert!(clock.delayed_calls().is_empty());
}

/// xorshift64*: a fixed, reproducible sequence.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum ModelState {
    Pending,
    Called,
    Cancelled,
}

/// A call as the rules say it should be: due time in nanoseconds from the
/// clock's start, and the order it was (re)scheduled in, for ties.
struct ModelCall {
    due: u64,
    seq: u64,
    state: ModelState,
}

#[test]
fn twenty_thousand_random_schedules_cancels_resets_and_delays_agree_with_a_simple_model() {
    let clock = Clock::new();
    let start = clock.now();
    let ran = Rc::new(RefCell::new(Vec::new()));
    let mut handles: Vec<DelayedCall> = Vec::new();
    let mut model: Vec<ModelCall> = Vec::new();
    let mut expected_runs: Vec<usize> = Vec::new();
    let mut rng = Rng(0x0123_4567_89ab_cdef);
    let (mut now, mut seq) = (0u64, 0u64);

    for step in 0..20_000 {
        let op = rng.below(100);
        if op < 40 || handles.is_empty() {
            let delay = rng.below(1_000_000_000);
            let id = handles.len();
            let ran = ran.clone();
            handles.push(clock.call_later(Duration::from_nanos(delay), move || {
                ran.borrow_mut().push(id)
            }));
            model.push(ModelCall {
                due: now + delay,
                seq,
                state: ModelState::Pending,
            });
            seq += 1;
        } else if op < 85 {
            let id = rng.below(handles.len() as u64) as usize;
            let amount = rng.below(1_000_000_000);
            let expected = match model[id].state {
                ModelState::Pending => Ok(()),
                ModelState::Called => Err(DelayedCallError::AlreadyCalled),
                ModelState::Cancelled => Err(DelayedCallError::AlreadyCancelled),
            };
            let call = &handles[id];
            let result = match op {
                40..=59 => call.cancel(),
                60..=74 => call.reset(Duration::from_nanos(amount)),
                _ => call.delay(Duration::from_nanos(amount)),
            };
            assert_eq!(result, expected, "step {step}: operation {op} on call {id}");
            if result.is_ok() {
                let m = &mut model[id];
                match op {
                    40..=59 => m.state = ModelState::Cancelled,
                    60..=74 => (m.due, m.seq) = (now + amount, seq),
                    _ => (m.due, m.seq) = (m.due + amount, seq),
                }
                seq += 1;
            }
        } else {
            let by = rng.below(300_000_000);
            now += by;
            let mut due: Vec<usize> = (0..model.len())
                .filter(|&i| model[i].state == ModelState::Pending && model[i].due <= now)
                .collect();
            due.sort_by_key(|&i| (model[i].due, model[i].seq));
            for &i in &due {
                model[i].state = ModelState::Called;
            }
            let before = expected_runs.len();
            expected_runs.extend(due);
            clock.advance(Duration::from_nanos(by));
            let ran = ran.borrow();
            assert_eq!(ran.len(), expected_runs.len(), "step {step}: how many ran");
            assert_eq!(
                ran[before..],
                expected_runs[before..],
                "step {step}: which ran, in what order"
            );
        }

        if step % 1_000 == 999 {
            let mut pending: Vec<&ModelCall> = model
                .iter()
                .filter(|m| m.state == ModelState::Pending)
                .collect();
            pending.sort_by_key(|m| (m.due, m.seq));
            let expected: Vec<Instant> = pending
                .iter()
                .map(|m| start + Duration::from_nanos(m.due))
                .collect();
            let listed: Vec<Instant> = clock
                .delayed_calls()
                .iter()
                .map(DelayedCall::time)
                .collect();
            assert_eq!(listed, expected, "step {step}: delayed_calls()");
            for (id, (call, m)) in handles.iter().zip(&model).enumerate() {
                let state = (call.active(), call.called(), call.cancelled());
                let want = match m.state {
                    ModelState::Pending => (true, false, false),
                    ModelState::Called => (false, true, false),
                    ModelState::Cancelled => (false, false, true),
                };
                assert_eq!(state, want, "step {step}: state of call {id}");
            }
        }
    }
    assert!(
        expected_runs.len() > 1_000,
        "the scenario exercises running calls"
    );
}

#[test]
fn calls_whose_handles_are_dropped_run_in_order_while_finished_ones_make_room() {
    // Handles dropped at once (fire and forget), a third of the calls
    // cancelled first: the queue reuses what finished calls leave behind
    // while their stale entries are still queued, and must never mistake
    // one call for another.
    let clock = Clock::new();
    let ran = Rc::new(RefCell::new(Vec::new()));
    let mut rng = Rng(0x5eed);
    let mut pending: Vec<(u64, u64, usize)> = Vec::new();
    let mut expected: Vec<usize> = Vec::new();
    let (mut now, mut seq) = (0u64, 0u64);
    for round in 0..60 {
        for i in 0..500 {
            let id = round * 500 + i;
            let delay = rng.below(10_000_000);
            let ran = ran.clone();
            let call = clock.call_later(Duration::from_nanos(delay), move || {
                ran.borrow_mut().push(id)
            });
            if rng.below(3) == 0 {
                call.cancel().unwrap();
            } else {
                pending.push((now + delay, seq, id));
            }
            seq += 1;
        }
        let by = rng.below(8_000_000);
        now += by;
        pending.sort_unstable();
        let due = pending.partition_point(|&(d, _, _)| d <= now);
        expected.extend(pending.drain(..due).map(|(_, _, id)| id));
        clock.advance(Duration::from_nanos(by));
        assert_eq!(*ran.borrow(), expected, "round {round}");
    }
    clock.advance(Duration::from_secs(1));
    pending.sort_unstable();
    expected.extend(pending.iter().map(|&(_, _, id)| id));
    assert_eq!(*ran.borrow(), expected);
    assert!(clock.delayed_calls().is_empty());
}

#[test]
fn a_call_moved_later_within_a_long_pass_still_runs_in_due_order() {
    // A pass over many due calls takes them out of the queue in bulk; one
    // moved later (but still due) by an earlier call must keep its place.
    let clock = Clock::new();
    let ran = Rc::new(RefCell::new(Vec::new()));
    let calls: Vec<DelayedCall> = (1..=600u64)
        .map(|i| {
            let ran = ran.clone();
            clock.call_later(ms(i), move || ran.borrow_mut().push(i))
        })
        .collect();
    let moved = calls[399].clone();
    let ran2 = ran.clone();
    clock.call_later(Duration::from_micros(500), move || {
        ran2.borrow_mut().push(0);
        moved.delay(Duration::from_micros(1_500)).unwrap();
    });
    clock.advance(ms(1_000));
    let mut want: Vec<u64> = (0..=600).filter(|&i| i != 400).collect();
    want.insert(want.iter().position(|&i| i == 401).unwrap() + 1, 400);
    assert_eq!(*ran.borrow(), want);
}

#[test]
fn a_handle_outliving_its_clock_reports_a_call_that_will_never_run() {
    let clock = Clock::new();
    let call = clock.call_later(secs(1), || unreachable!());
    drop(clock);
    assert!(!call.active());
    assert!(call.cancelled());
    assert_eq!(call.cancel(), Err(DelayedCallError::AlreadyCancelled));
    let copy = call.clone();
    drop(call);
    assert!(copy.cancelled());
}

// ---------------------------------------------------------------------------
// The real reactor
// ---------------------------------------------------------------------------

#[test]
fn reactor_runs_calls_in_due_order_and_equal_delays_in_scheduling_order() {
    let reactor = Reactor::new().unwrap();
    let trace = Trace::default();
    for i in 0..40 {
        let delay = if i % 2 == 0 { ms(20) } else { ms(10) };
        reactor.call_later(delay, trace.note(&i.to_string()));
    }
    let last = trace.note("stop");
    reactor.call_later(ms(20), move || {
        last();
        twill::stop();
    });
    run_bounded(&reactor, LIMIT);
    let mut expected: Vec<String> = (0..40)
        .filter(|i| i % 2 == 1)
        .map(|i| i.to_string())
        .collect();
    expected.extend((0..40).filter(|i| i % 2 == 0).map(|i| i.to_string()));
    expected.push("stop".into());
    assert_eq!(trace.get(), expected);
}

#[test]
fn reactor_timers_can_be_cancelled_reset_and_delayed() {
    let reactor = Reactor::new().unwrap();
    let trace = Trace::default();
    let reset = reactor.call_later(secs(3600), trace.note("reset from an hour to 10 ms"));
    reset.reset(ms(10)).unwrap();
    let cancelled = reactor.call_later(ms(5), trace.note("cancelled"));
    cancelled.cancel().unwrap();
    let delayed = reactor.call_later(ms(5), trace.note("delayed from 5 ms to 15 ms"));
    delayed.delay(ms(10)).unwrap();
    let last = trace.note("stop at 30 ms");
    reactor.call_later(ms(30), move || {
        last();
        twill::stop();
    });
    assert_eq!(ReactorTime::delayed_calls(&reactor).len(), 3);
    run_bounded(&reactor, LIMIT);
    assert_eq!(
        trace.get(),
        vec![
            "reset from an hour to 10 ms",
            "delayed from 5 ms to 15 ms",
            "stop at 30 ms"
        ]
    );
    assert!(reset.called() && delayed.called() && cancelled.cancelled());
}

#[test]
fn reactor_call_time_is_its_delay_from_the_reactors_now() {
    let reactor = Reactor::new().unwrap();
    let before = reactor.now();
    let call = reactor.call_later(secs(60), || {});
    let after = reactor.now();
    assert!(call.time() >= before + secs(60) && call.time() <= after + secs(60));
    call.cancel().unwrap();
    assert!(ReactorTime::delayed_calls(&reactor).is_empty());
}

#[test]
fn a_zero_delay_call_scheduled_by_a_timed_call_runs_in_a_later_turn_not_in_the_same_timer_pass() {
    let reactor = Reactor::new().unwrap();
    let trace = Trace::default();
    let handle = reactor.handle();
    {
        let trace = trace.clone();
        reactor.call_later(Duration::ZERO, move || {
            trace.push("A (timed)");
            // Runs at the start of the next turn.
            handle
                .call_from_thread(trace.note("X (queued by A from the reactor thread)"))
                .unwrap();
            // Already due, but must wait for the next timer pass.
            let note = trace.note("C (zero delay, scheduled by A)");
            twill::call_later(Duration::ZERO, move || {
                note();
                twill::stop();
            });
        });
    }
    reactor.call_later(Duration::ZERO, trace.note("B (timed, due with A)"));
    run_bounded(&reactor, LIMIT);
    assert_eq!(
        trace.get(),
        vec![
            "A (timed)",
            "B (timed, due with A)",
            "X (queued by A from the reactor thread)",
            "C (zero delay, scheduled by A)"
        ]
    );
}

#[test]

fn delaying_a_due_call_from_a_timed_call_does_not_hold_back_other_due_calls() {
    let reactor = Reactor::new().unwrap();
    let trace = Trace::default();
    let handle = reactor.handle();
    let b: Rc<RefCell<Option<DelayedCall>>> = Rc::default();
    {
        let (trace, b) = (trace.clone(), b.clone());
        reactor.call_later(Duration::ZERO, move || {
            trace.push("A");
            handle
                .call_from_thread(trace.note("X (next turn)"))
                .unwrap();
            let b = b.borrow().clone().unwrap();
            b.delay(Duration::from_nanos(1)).unwrap();
        });
    }
    *b.borrow_mut() = Some(reactor.call_later(Duration::ZERO, trace.note("B (delayed by A)")));
    let note = trace.note("C (due with A, untouched)");
    reactor.call_later(Duration::ZERO, move || {
        note();
        later_stop();
    });
    run_bounded(&reactor, LIMIT);
    let trace = trace.get();
    let at = |what: &str| trace.iter().position(|t| t.starts_with(what));
    let (c, x) = (at("C").expect("C ran"), at("X").expect("X ran"));
    assert!(
        c < x,
        "C was due in the first pass and should run in it: {trace:?}"
    );
}

/// Stops the reactor once the calls queued so far have run.
fn later_stop() {
    twill::call_later(ms(5), twill::stop);
}

/// Records how many times the zero-delay chain had run when data arrived.
struct StopOnData {
    spins: Rc<Cell<u64>>,
    seen: Rc<Cell<Option<u64>>>,
    transport: Option<Transport>,
}

impl Protocol for StopOnData {
    fn connection_made(&mut self, transport: &Transport) {
        self.transport = Some(transport.clone());
    }
    fn data_received(&mut self, _data: Bytes) {
        if self.seen.get().is_none() {
            self.seen.set(Some(self.spins.get()));
            if let Some(transport) = &self.transport {
                transport.abort_connection();
            }
            twill::stop();
        }
    }
}

#[test]
fn a_self_rescheduling_zero_delay_call_does_not_starve_io() {
    const SPIN_LIMIT: u64 = 200_000;
    fn spin(count: Rc<Cell<u64>>) {
        count.set(count.get() + 1);
        if count.get() < SPIN_LIMIT {
            twill::call_later(Duration::ZERO, move || spin(count));
        }
    }
    let reactor = Reactor::new().unwrap();
    let spins = Rc::new(Cell::new(0));
    let seen = Rc::new(Cell::new(None));
    let port = {
        let (spins, seen) = (spins.clone(), seen.clone());
        reactor
            .listen_tcp("127.0.0.1:0", move |_peer| StopOnData {
                spins: spins.clone(),
                seen: seen.clone(),
                transport: None,
            })
            .unwrap()
    };
    // Connected and written before the reactor runs: the I/O is ready from
    // the first poll.
    let mut client = std::net::TcpStream::connect(port.host()).unwrap();
    std::io::Write::write_all(&mut client, b"ping").unwrap();
    {
        let spins = spins.clone();
        reactor.call_when_running(move || spin(spins));
    }
    run_bounded(&reactor, LIMIT);
    let at = seen.get().expect("data_received ran");
    assert!(
        at < 1_000,
        "the zero-delay chain ran {at} times before the ready data was read: \
         calls scheduled during a timer pass must wait for an I/O poll"
    );
}

#[test]
fn a_panicking_timed_call_is_logged_and_the_reactor_goes_on() {
    capture_logs();
    let reactor = Reactor::new().unwrap();
    let trace = Trace::default();
    reactor.call_later(Duration::ZERO, || {
        panic!("deliberate panic 5d1c in a timed call")
    });
    reactor.call_later(Duration::ZERO, trace.note("same pass, after the panic"));
    let last = trace.note("10 ms later");
    reactor.call_later(ms(10), move || {
        last();
        twill::stop();
    });
    run_bounded(&reactor, LIMIT);
    assert_eq!(
        trace.get(),
        vec!["same pass, after the panic", "10 ms later"]
    );
    let lines = logged("deliberate panic 5d1c");
    assert_eq!(lines.len(), 1, "logged once: {lines:?}");
    assert!(
        lines[0].starts_with("ERROR"),
        "logged as an error: {lines:?}"
    );
}

#[test]
fn free_functions_reach_the_reactor_of_the_current_thread() {
    let outer = Reactor::new().unwrap();
    let (pending, called, running_inside) = std::thread::spawn(|| {
        let reactor = Reactor::new().unwrap();
        let call = twill::call_later(ms(1), twill::stop);
        let pending = ReactorTime::delayed_calls(&reactor).len();
        let running_inside = Rc::new(Cell::new(None));
        {
            let running_inside = running_inside.clone();
            twill::call_when_running(move || {
                running_inside.set(Some(twill::reactor().is_running()))
            });
        }
        run_bounded(&reactor, LIMIT);
        (pending, call.called(), running_inside.get())
    })
    .join()
    .expect("reactor thread");
    assert_eq!(
        pending, 1,
        "twill::call_later scheduled on that thread's reactor"
    );
    assert!(called, "and that reactor ran it");
    assert_eq!(running_inside, Some(true));

    assert!(
        ReactorTime::delayed_calls(&outer).is_empty(),
        "another thread's call_later did not land here"
    );
    let call = twill::call_later(secs(3600), || {});
    assert_eq!(ReactorTime::delayed_calls(&outer).len(), 1);
    assert!(!twill::reactor().is_running());
    call.cancel().unwrap();
}

#[test]
fn call_when_running_runs_at_startup_before_the_first_timer() {
    let reactor = Reactor::new().unwrap();
    let trace = Trace::default();
    reactor.call_later(Duration::ZERO, trace.note("timer"));
    {
        let trace = trace.clone();
        reactor.call_when_running(move || {
            trace.push("startup");
            // While running, call_when_running runs at once.
            twill::reactor().call_when_running(trace.note("nested, at once"));
            trace.push("after nested");
            twill::stop();
        });
    }
    assert!(trace.get().is_empty(), "nothing runs before run()");
    run_bounded(&reactor, LIMIT);
    assert_eq!(
        trace.get(),
        vec!["startup", "nested, at once", "after nested", "timer"]
    );
}

#[test]
fn system_event_triggers_run_phase_by_phase_and_removed_ones_do_not_run() {
    let reactor = Reactor::new().unwrap();
    let trace = Trace::default();
    let add =
        |phase, event, what: &str| reactor.add_system_event_trigger(phase, event, trace.note(what));
    // Added out of order on purpose.
    add(Phase::After, SystemEvent::Shutdown, "shutdown after");
    add(Phase::During, SystemEvent::Shutdown, "shutdown during");
    add(Phase::Before, SystemEvent::Shutdown, "shutdown before 1");
    let removed = add(Phase::Before, SystemEvent::Shutdown, "removed");
    add(Phase::Before, SystemEvent::Shutdown, "shutdown before 2");
    add(Phase::After, SystemEvent::Startup, "startup after");
    add(Phase::During, SystemEvent::Startup, "startup during");
    add(Phase::Before, SystemEvent::Startup, "startup before");
    assert!(reactor.remove_system_event_trigger(removed));
    assert!(
        !reactor.remove_system_event_trigger(removed),
        "a trigger is removed once"
    );
    let stop = trace.note("timer stops the reactor");
    reactor.call_later(Duration::ZERO, move || {
        stop();
        twill::stop();
    });
    run_bounded(&reactor, LIMIT);
    assert_eq!(
        trace.get(),
        vec![
            "startup before",
            "startup during",
            "startup after",
            "timer stops the reactor",
            "shutdown before 1",
            "shutdown before 2",
            "shutdown during",
            "shutdown after",
        ]
    );
}

#[test]
fn is_running_is_true_from_startup_until_the_shutdown_begins() {
    let reactor = Reactor::new().unwrap();
    let seen = Rc::new(RefCell::new(Vec::new()));
    let probe = |what: &'static str| {
        let seen = seen.clone();
        move || {
            seen.borrow_mut()
                .push((what, twill::reactor().is_running()))
        }
    };
    reactor.add_system_event_trigger(
        Phase::Before,
        SystemEvent::Shutdown,
        probe("before shutdown"),
    );
    reactor.add_system_event_trigger(Phase::After, SystemEvent::Shutdown, probe("after shutdown"));
    reactor.call_when_running(probe("startup"));
    reactor.call_when_running(twill::stop);
    assert!(!reactor.is_running());
    run_bounded(&reactor, LIMIT);
    assert_eq!(
        *seen.borrow(),
        vec![
            ("startup", true),
            ("before shutdown", true),
            ("after shutdown", false)
        ]
    );
    assert!(!reactor.is_running());
}

#[test]
fn a_panicking_trigger_is_logged_and_the_other_triggers_still_run() {
    capture_logs();
    let reactor = Reactor::new().unwrap();
    let trace = Trace::default();
    reactor.add_system_event_trigger(Phase::Before, SystemEvent::Shutdown, || {
        panic!("deliberate panic 9e2b in a trigger")
    });
    reactor.add_system_event_trigger(
        Phase::Before,
        SystemEvent::Shutdown,
        trace.note("next before-shutdown trigger"),
    );
    reactor.add_system_event_trigger(
        Phase::After,
        SystemEvent::Shutdown,
        trace.note("after-shutdown trigger"),
    );
    reactor.call_when_running(twill::stop);
    run_bounded(&reactor, LIMIT);
    assert_eq!(
        trace.get(),
        vec!["next before-shutdown trigger", "after-shutdown trigger"]
    );
    assert_eq!(logged("deliberate panic 9e2b").len(), 1);
}

#[test]
fn call_from_thread_runs_on_the_reactor_thread_in_fifo_order() {
    let reactor = Reactor::new().unwrap();
    let seen: Arc<Mutex<Vec<(usize, ThreadId)>>> = Arc::default();
    let handle = reactor.handle();
    let sender = {
        let seen = seen.clone();
        std::thread::spawn(move || {
            for i in 0..200 {
                let seen = seen.clone();
                handle
                    .call_from_thread(move || {
                        seen.lock().unwrap().push((i, std::thread::current().id()));
                        if i == 199 {
                            twill::stop();
                        }
                    })
                    .expect("the reactor is not stopped yet");
            }
        })
    };
    run_bounded(&reactor, LIMIT);
    sender.join().unwrap();
    let seen = seen.lock().unwrap();
    let order: Vec<usize> = seen.iter().map(|(i, _)| *i).collect();
    assert_eq!(order, (0..200).collect::<Vec<_>>());
    let here = std::thread::current().id();
    assert!(
        seen.iter().all(|(_, thread)| *thread == here),
        "ran on the reactor thread"
    );
}

#[test]
fn call_from_thread_after_the_reactor_stopped_is_reactor_stopped() {
    let reactor = Reactor::new().unwrap();
    let handle = reactor.handle();
    reactor.call_when_running(twill::stop);
    run_bounded(&reactor, LIMIT);
    let from_other_thread = {
        let handle = handle.clone();
        std::thread::spawn(move || handle.call_from_thread(|| {}))
            .join()
            .unwrap()
    };
    assert_eq!(from_other_thread, Err(ReactorStopped));
    assert_eq!(handle.call_from_thread(|| {}), Err(ReactorStopped));
    assert!(!ReactorStopped.to_string().is_empty());
}

#[test]
fn stop_before_run_makes_run_return_promptly_after_startup_and_shutdown() {
    let reactor = Reactor::new().unwrap();
    let trace = Trace::default();
    reactor.call_later(secs(3600), trace.note("an hour later"));
    let _port = reactor
        .listen_tcp("127.0.0.1:0", |_peer| StopOnData {
            spins: Rc::default(),
            seen: Rc::default(),
            transport: None,
        })
        .unwrap();
    reactor.call_when_running(trace.note("startup"));
    reactor.add_system_event_trigger(Phase::After, SystemEvent::Shutdown, trace.note("shutdown"));
    reactor.stop();
    let started = Instant::now();
    run_bounded(&reactor, LIMIT);
    assert!(
        started.elapsed() < secs(2),
        "run took {:?} after an early stop()",
        started.elapsed()
    );
    assert_eq!(trace.get(), vec!["startup", "shutdown"]);
    assert!(!reactor.is_running());
}

#[test]
fn a_reactor_runs_once() {
    let reactor = Reactor::new().unwrap();
    let nested = Rc::new(Cell::new(None));
    {
        let nested = nested.clone();
        reactor.call_when_running(move || {
            nested.set(Some(twill::reactor().run().is_err()));
            twill::stop();
        });
    }
    run_bounded(&reactor, LIMIT);
    assert_eq!(nested.get(), Some(true), "run() while running is an error");
    assert!(reactor.run().is_err(), "run() after it ran is an error");
}
