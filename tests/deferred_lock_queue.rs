//! DeferredLock, DeferredSemaphore and DeferredQueue, rule by rule
//! (Twisted's `defer.DeferredLock`, `DeferredSemaphore`, `DeferredQueue`;
//! reference §1.14 and the waiter rules of §1.9).

use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;

use twill::defer::{
    CancelledError, Deferred, DeferredLock, DeferredQueue, DeferredSemaphore, Failure,
    NotAcquiredError, QueueUnderflow, Resolver, ZeroTokensError,
};
use twill::testing::assert_no_result;

type Log = Rc<RefCell<Vec<&'static str>>>;

fn push(log: &Log, what: &'static str) -> impl FnOnce() -> Result<&'static str, Failure> {
    let log = log.clone();
    move || {
        log.borrow_mut().push(what);
        Ok(what)
    }
}

// ------------------------------------------------------------------ DeferredLock

#[test]
fn acquiring_a_free_lock_fires_at_once_and_locks_it() {
    let lock = DeferredLock::new();
    assert!(!lock.locked());
    let held = lock.acquire();
    assert!(held.result().unwrap().is_ok(), "fired synchronously");
    assert!(lock.locked());
}

#[test]
fn acquire_fires_with_the_lock_itself() {
    let lock = DeferredLock::new();
    let held = lock.acquire().result().unwrap().unwrap();
    held.release();
    assert!(!lock.locked(), "the handle is the same lock");
}

#[test]
fn waiting_acquires_get_the_lock_in_fifo_order() {
    let lock = DeferredLock::new();
    let log = Log::default();
    let _held = lock.acquire();
    for name in ["a", "b", "c"] {
        let log = log.clone();
        lock.acquire().add_callback(move |lock: DeferredLock| {
            log.borrow_mut().push(name);
            Ok(lock)
        });
    }
    assert_eq!(lock.waiting(), 3);
    for expected in [&["a"][..], &["a", "b"], &["a", "b", "c"]] {
        lock.release();
        assert_eq!(*log.borrow(), expected);
    }
    assert!(lock.locked(), "c still holds it");
}

#[test]
fn release_hands_the_lock_to_the_first_waiter_and_stays_locked() {
    let lock = DeferredLock::new();
    let _held = lock.acquire();
    let next = lock.acquire();
    assert!(!next.called());
    lock.release();
    assert!(next.called(), "fired inside release");
    assert!(lock.locked());
    assert_eq!(lock.waiting(), 0);
    lock.release();
    assert!(!lock.locked());
}

#[test]
fn releasing_an_unlocked_lock_is_an_error() {
    let lock = DeferredLock::new();
    assert_eq!(lock.try_release(), Err(NotAcquiredError));
    let panic = catch_unwind(AssertUnwindSafe(|| lock.release())).unwrap_err();
    let message = panic.downcast_ref::<String>().unwrap();
    assert!(
        message.contains("release() without a matching acquire()"),
        "{message}"
    );
    assert!(!lock.locked());
}

#[test]
fn cancelling_a_waiting_acquire_removes_it_and_fails_it_with_cancelled_error() {
    let lock = DeferredLock::new();
    let _held = lock.acquire();
    let cancelled = lock.acquire();
    let next = lock.acquire();
    cancelled.cancel();
    assert_eq!(lock.waiting(), 1);
    assert!(cancelled
        .result()
        .unwrap()
        .unwrap_err()
        .check::<CancelledError>());
    lock.release();
    assert!(next.called(), "the lock went past the cancelled acquire");
}

#[test]
fn cancelling_an_acquire_that_fired_does_nothing() {
    let lock = DeferredLock::new();
    let held = lock.acquire();
    held.cancel();
    assert!(held.result().unwrap().is_ok());
    assert!(lock.locked(), "still held: cancel does not release");
}

#[test]
fn run_acquires_calls_releases_and_returns_the_result() {
    let lock = DeferredLock::new();
    let inside = Rc::new(RefCell::new(None));
    let (probe, seen) = (lock.clone(), inside.clone());
    let d = lock.run(move || {
        *seen.borrow_mut() = Some(probe.locked());
        Ok::<_, Failure>(42)
    });
    assert_eq!(*inside.borrow(), Some(true), "f runs holding the lock");
    assert_eq!(d.result().unwrap().unwrap(), 42);
    assert!(!lock.locked());
}

#[test]
fn run_waits_for_the_lock_in_turn() {
    let lock = DeferredLock::new();
    let log = Log::default();
    let _held = lock.acquire();
    let first = lock.run(push(&log, "first"));
    let second = lock.run(push(&log, "second"));
    assert!(log.borrow().is_empty());
    lock.release();
    assert_eq!(*log.borrow(), ["first", "second"]);
    assert_eq!(first.result().unwrap().unwrap(), "first");
    assert_eq!(second.result().unwrap().unwrap(), "second");
    assert!(!lock.locked());
}

#[test]
fn run_holds_the_lock_until_a_returned_deferred_fires() {
    let lock = DeferredLock::new();
    let reply = Deferred::new();
    let fire_reply = reply.resolver();
    let d = lock.run(move || reply);
    assert!(lock.locked());
    assert_no_result(&d);
    fire_reply.callback("done");
    assert!(!lock.locked());
    assert_eq!(d.result().unwrap().unwrap(), "done");
}

#[test]
fn run_releases_when_the_function_fails() {
    let lock = DeferredLock::new();
    let d = lock.run(|| Err::<u32, _>(Failure::new("nope")));
    assert_eq!(d.result().unwrap().unwrap_err().to_string(), "nope");
    assert!(!lock.locked());
}

#[test]
fn run_releases_when_the_function_panics() {
    let lock = DeferredLock::new();
    let d = lock.run(|| -> Result<u32, Failure> { panic!("bug in f") });
    let failure = d.result().unwrap().unwrap_err();
    assert!(failure.to_string().contains("bug in f"), "{failure}");
    assert!(!lock.locked());
}

#[test]
fn cancelling_a_waiting_run_means_the_function_never_runs() {
    let lock = DeferredLock::new();
    let log = Log::default();
    let _held = lock.acquire();
    let d = lock.run(push(&log, "never"));
    d.cancel();
    assert!(d.result().unwrap().unwrap_err().check::<CancelledError>());
    lock.release();
    assert!(log.borrow().is_empty());
    assert!(!lock.locked());
}

#[test]
fn cancelling_a_running_run_cancels_its_deferred_and_releases() {
    let lock = DeferredLock::new();
    let reply = Deferred::<u32>::new();
    let fire_reply = reply.resolver();
    let d = lock.run(move || reply);
    assert!(lock.locked());
    d.cancel();
    assert!(fire_reply.called(), "the function's Deferred was cancelled");
    assert!(d.result().unwrap().unwrap_err().check::<CancelledError>());
    assert!(!lock.locked());
}

// -------------------------------------------------------------- DeferredSemaphore

#[test]
fn a_semaphore_needs_at_least_one_token() {
    assert_eq!(DeferredSemaphore::new(0).unwrap_err(), ZeroTokensError);
    let semaphore = DeferredSemaphore::new(3).unwrap();
    assert_eq!((semaphore.tokens(), semaphore.limit()), (3, 3));
}

#[test]
fn a_semaphore_lets_limit_holders_in_and_queues_the_rest() {
    let semaphore = DeferredSemaphore::new(2).unwrap();
    let a = semaphore.acquire();
    assert_eq!(semaphore.tokens(), 1);
    let b = semaphore.acquire();
    let c = semaphore.acquire();
    assert!(a.called() && b.called());
    assert!(!c.called());
    assert_eq!((semaphore.tokens(), semaphore.waiting()), (0, 1));
}

#[test]
fn semaphore_release_hands_the_token_to_the_first_waiter() {
    let semaphore = DeferredSemaphore::new(1).unwrap();
    let log = Log::default();
    let _held = semaphore.acquire();
    for name in ["first", "second"] {
        let log = log.clone();
        semaphore
            .acquire()
            .add_callback(move |s: DeferredSemaphore| {
                log.borrow_mut().push(name);
                Ok(s)
            });
    }
    semaphore.release();
    assert_eq!(*log.borrow(), ["first"]);
    assert_eq!(semaphore.tokens(), 0, "the token went to the waiter");
    semaphore.release();
    semaphore.release();
    assert_eq!(*log.borrow(), ["first", "second"]);
    assert_eq!(semaphore.tokens(), 1);
}

#[test]
fn releasing_a_semaphore_past_its_limit_is_an_error() {
    let semaphore = DeferredSemaphore::new(2).unwrap();
    assert_eq!(semaphore.try_release(), Err(NotAcquiredError));
    let _held = semaphore.acquire();
    assert_eq!(semaphore.try_release(), Ok(()));
    assert!(catch_unwind(AssertUnwindSafe(|| semaphore.release())).is_err());
    assert_eq!(semaphore.tokens(), 2);
}

#[test]
fn cancelling_a_waiting_semaphore_acquire_removes_it() {
    let semaphore = DeferredSemaphore::new(1).unwrap();
    let _held = semaphore.acquire();
    let cancelled = semaphore.acquire();
    cancelled.cancel();
    assert_eq!(semaphore.waiting(), 0);
    assert!(cancelled
        .result()
        .unwrap()
        .unwrap_err()
        .check::<CancelledError>());
    semaphore.release();
    assert_eq!(semaphore.tokens(), 1, "nobody took the token");
}

#[test]
fn semaphore_run_limits_concurrency_and_releases_on_failure() {
    let semaphore = DeferredSemaphore::new(2).unwrap();
    let replies: Vec<Deferred<u32>> = (0..3).map(|_| Deferred::new()).collect();
    let fire: Vec<Resolver<u32>> = replies.iter().map(Deferred::resolver).collect();
    let runs: Vec<Deferred<u32>> = replies
        .into_iter()
        .map(|reply| semaphore.run(move || reply))
        .collect();
    assert_eq!(semaphore.waiting(), 1);
    fire[0].errback(Failure::new("failed"));
    assert_eq!(semaphore.waiting(), 0, "the failure released a token");
    fire[1].callback(1);
    fire[2].callback(2);
    assert_eq!(semaphore.tokens(), 2);
    assert!(runs[0].result().unwrap().is_err());
    assert_eq!(runs[2].result().unwrap().unwrap(), 2);
}

// ---------------------------------------------------------------- DeferredQueue

#[test]
fn queue_gives_values_back_in_fifo_order() {
    let queue = DeferredQueue::new();
    for n in 0..3 {
        queue.put(n).unwrap();
    }
    assert_eq!(queue.pending(), 3);
    let got: Vec<u32> = (0..3)
        .map(|_| queue.get().unwrap().result().unwrap().unwrap())
        .collect();
    assert_eq!(got, [0, 1, 2]);
}

#[test]
fn waiting_gets_are_served_in_fifo_order() {
    let queue = DeferredQueue::new();
    let gets: Vec<Deferred<&str>> = (0..2).map(|_| queue.get().unwrap()).collect();
    assert_eq!(queue.waiting(), 2);
    queue.put("a").unwrap();
    assert!(gets[0].called() && !gets[1].called(), "fired inside put");
    queue.put("b").unwrap();
    assert_eq!(gets[0].result().unwrap().unwrap(), "a");
    assert_eq!(gets[1].result().unwrap().unwrap(), "b");
    assert_eq!((queue.pending(), queue.waiting()), (0, 0));
}

#[test]
fn put_past_size_overflows_and_hands_the_value_back() {
    let queue = DeferredQueue::with_limits(Some(2), None);
    queue.put(1).unwrap();
    queue.put(2).unwrap();
    let overflow = queue.put(3).unwrap_err();
    assert_eq!(
        overflow.to_string(),
        "QueueOverflow: the DeferredQueue is full"
    );
    assert_eq!(overflow.into_inner(), 3);
    assert_eq!(queue.pending(), 2);
}

#[test]
fn size_zero_overflows_unless_a_get_waits() {
    let queue = DeferredQueue::with_limits(Some(0), None);
    assert!(queue.put(1).is_err());
    let waiting = queue.get().unwrap();
    queue.put(2).unwrap();
    assert_eq!(waiting.result().unwrap().unwrap(), 2);
    assert!(queue.put(3).is_err());
}

#[test]
fn get_past_backlog_underflows() {
    let queue = DeferredQueue::<u32>::with_limits(None, Some(1));
    let _waiting = queue.get().unwrap();
    assert_eq!(queue.get().unwrap_err(), QueueUnderflow);
    assert_eq!(queue.waiting(), 1);
}

#[test]
fn backlog_zero_underflows_unless_a_value_is_kept() {
    let queue = DeferredQueue::with_limits(None, Some(0));
    assert_eq!(queue.get().unwrap_err(), QueueUnderflow);
    queue.put(7).unwrap();
    assert_eq!(queue.get().unwrap().result().unwrap().unwrap(), 7);
    assert!(queue.get().is_err());
}

#[test]
fn cancelling_a_waiting_get_removes_it_from_the_waiters() {
    let queue = DeferredQueue::new();
    let cancelled = queue.get().unwrap();
    let next = queue.get().unwrap();
    cancelled.cancel();
    assert_eq!(queue.waiting(), 1);
    assert!(cancelled
        .result()
        .unwrap()
        .unwrap_err()
        .check::<CancelledError>());
    queue.put("x").unwrap();
    assert_eq!(next.result().unwrap().unwrap(), "x", "the value skipped it");
    let last = queue.get().unwrap();
    last.cancel();
    queue.put("kept").unwrap();
    assert_eq!(queue.pending(), 1, "no waiter left: the value is kept");
}

#[test]
fn a_cancelled_get_frees_its_backlog_slot() {
    let queue = DeferredQueue::<u32>::with_limits(None, Some(1));
    queue.get().unwrap().cancel();
    assert!(queue.get().is_ok());
}
