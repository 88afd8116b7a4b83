//! [`LoopingCall`]: call a function every interval, on a fixed grid; and
//! [`defer_later`]: a Deferred that fires with a function's result after a
//! delay. Twisted's `task.LoopingCall` and `task.deferLater`.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use crate::defer::{maybe_deferred, succeed, Deferred, Failure, IntoStep, Resolver};
use crate::reactor::Reactor;
use crate::time::{DelayedCall, ReactorTime};

/// The longest interval a [`LoopingCall`] accepts: what the timer queue can
/// represent (`u64::MAX` nanoseconds, about 584 years).
const MAX_INTERVAL: Duration = Duration::from_nanos(u64::MAX);

/// Calls a function repeatedly, every `interval`: Twisted's `LoopingCall`.
///
/// The calls keep to a fixed grid, `start time + k × interval`. A call
/// that ran long, or a reactor that was busy, does not cause a burst of
/// catch-up calls: grid points already past are skipped (use
/// [`with_count`](Self::with_count) to learn how many). An interval of zero
/// calls the function once per reactor turn (`call_later(0)`).
///
/// The function returns `Result<(), Failure>`, or a [`Deferred<()>`] to
/// wait for: the next call is scheduled only after that Deferred fires, so
/// calls never overlap. A failure (an `Err`, a failed Deferred, or a panic)
/// ends the loop.
///
/// [`start`](Self::start) returns a Deferred that fires with this
/// `LoopingCall` when the loop is [stopped](Self::stop), or fails with the
/// function's failure.
///
/// `LoopingCall` is a cheap handle (`Rc` inside): clones are the same
/// loop, so the function can hold one and stop its own loop. A running loop
/// keeps itself alive through its pending call, whether or not any handle
/// is left. A function that holds a clone of its own `LoopingCall` makes a
/// reference cycle that outlives the loop; hold a
/// [`downgrade`](Self::downgrade)d handle instead.
///
/// Time comes from the current thread's reactor, or from the
/// [`clock`](Self::clock) given (a [`Clock`](crate::task::Clock) in tests).
///
/// # Examples
///
/// ```
/// use std::{cell::Cell, rc::Rc, time::Duration};
/// use twill::task::{Clock, LoopingCall};
///
/// let clock = Clock::new();
/// let calls = Rc::new(Cell::new(0));
/// let counter = calls.clone();
/// let lc = LoopingCall::new(move || {
///     counter.set(counter.get() + 1);
///     Ok(())
/// })
/// .clock(Rc::new(clock.clone()));
///
/// let done = lc.start(Duration::from_secs(1), true)?;
/// assert_eq!(calls.get(), 1); // `now = true`: the first call is at once
/// clock.advance(Duration::from_secs(1));
/// clock.advance(Duration::from_millis(3500)); // 2 s and 3 s are skipped
/// assert_eq!(calls.get(), 3);
///
/// lc.stop()?;
/// assert!(done.result().unwrap().unwrap() == lc);
/// assert!(clock.delayed_calls().is_empty());
/// # Ok::<(), twill::task::LoopingCallError>(())
/// ```
///
/// A function that returns a Deferred (the next call waits for it), and a
/// loop that stops itself through a weak handle:
///
/// ```
/// use std::{cell::RefCell, rc::Rc, time::Duration};
/// use twill::defer::Deferred;
/// use twill::task::{defer_later, Clock, LoopingCall, WeakLoopingCall};
///
/// let clock = Clock::new();
/// let me: Rc<RefCell<Option<WeakLoopingCall>>> = Rc::default();
/// let calls = Rc::new(RefCell::new(Vec::new()));
/// let (handle, log, time) = (me.clone(), calls.clone(), clock.clone());
/// let lc = LoopingCall::new(move || -> Deferred<()> {
///     log.borrow_mut().push(time.now());
///     if log.borrow().len() == 3 {
///         let lc = handle.borrow().as_ref().and_then(WeakLoopingCall::upgrade);
///         lc.unwrap().stop().unwrap();
///     }
///     // Work that takes 5 s.
///     defer_later(&time, Duration::from_secs(5), || Ok(()))
/// })
/// .clock(Rc::new(clock.clone()));
/// *me.borrow_mut() = Some(lc.downgrade());
///
/// let t0 = clock.now();
/// let done = lc.start(Duration::from_secs(10), true)?;
/// clock.pump(&[Duration::from_secs(5); 5]);
/// let secs: Vec<u64> = calls.borrow().iter().map(|t| (*t - t0).as_secs()).collect();
/// assert_eq!(secs, [0, 10, 20]);
/// assert!(done.result().unwrap().is_ok()); // fired when the third call's work ended
/// # Ok::<(), twill::task::LoopingCallError>(())
/// ```
pub struct LoopingCall {
    shared: Rc<Shared>,
}

/// A handle to a [`LoopingCall`] that does not keep it alive: for the
/// loop's own function to hold without a reference cycle.
#[derive(Clone)]
pub struct WeakLoopingCall {
    shared: Weak<Shared>,
}

/// Why a [`LoopingCall`] could not be started, stopped or reset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoopingCallError {
    /// [`start`](LoopingCall::start) on a loop that is running, or that was
    /// stopped from inside a call that has not completed yet (its
    /// Deferred has not fired).
    AlreadyRunning,
    /// [`stop`](LoopingCall::stop) or [`reset`](LoopingCall::reset) on a
    /// loop that is not running.
    NotRunning,
    /// The interval is longer than the clock can schedule (`u64::MAX`
    /// nanoseconds). A `Duration` cannot be negative, so Twisted's other
    /// bad interval cannot happen.
    InvalidInterval(Duration),
    /// No [`clock`](LoopingCall::clock) was given and this thread has no
    /// reactor.
    NoReactor,
}

impl fmt::Display for LoopingCallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoopingCallError::AlreadyRunning => {
                f.write_str("tried to start an already running LoopingCall")
            }
            LoopingCallError::NotRunning => f.write_str("the LoopingCall is not running"),
            LoopingCallError::InvalidInterval(interval) => write!(
                f,
                "a LoopingCall interval must be at most {MAX_INTERVAL:?}, not {interval:?}"
            ),
            LoopingCallError::NoReactor => f.write_str(
                "no clock was given to the LoopingCall and no twill reactor exists on this thread",
            ),
        }
    }
}

impl std::error::Error for LoopingCallError {}

/// One call of the user's function, as a Deferred.
type Body = Box<dyn FnMut(&Shared) -> Deferred<()>>;

struct Shared {
    body: RefCell<Body>,
    state: RefCell<State>,
}

struct State {
    /// The clock given with [`LoopingCall::clock`].
    given_clock: Option<Rc<dyn ReactorTime>>,
    /// The clock of the current (or last) run.
    clock: Option<Rc<dyn ReactorTime>>,
    running: bool,
    /// A call of the function is under way (it runs, or its Deferred has
    /// not fired yet).
    busy: bool,
    interval: Option<Duration>,
    /// The origin of the grid.
    start_time: Option<Instant>,
    run_at_start: bool,
    /// The pending call, between calls of the function.
    call: Option<DelayedCall>,
    /// What `start` returned, until it fires.
    deferred: Option<Resolver<LoopingCall>>,
    /// [`LoopingCall::with_count`]: when the function was last called.
    last_time: Option<Instant>,
}

impl LoopingCall {
    /// A loop that will call `f` (not started yet; see
    /// [`start`](Self::start)). `f` returns `Result<(), Failure>`, or a
    /// `Deferred<()>` to wait for before the next call.
    pub fn new<R: IntoStep<()>>(mut f: impl FnMut() -> R + 'static) -> LoopingCall {
        LoopingCall::from_body(Box::new(move |_: &Shared| maybe_deferred(&mut f)))
    }

    /// A loop whose function gets the number of grid intervals that passed
    /// since its previous call (Twisted's `LoopingCall.withCount`): 1 when
    /// it is on time, more when grid points were skipped. The first call
    /// gets 1, and so does every call with interval zero. After a
    /// [`reset`](Self::reset), intervals are counted on the new grid.
    pub fn with_count<R: IntoStep<()>>(mut f: impl FnMut(u64) -> R + 'static) -> LoopingCall {
        LoopingCall::from_body(Box::new(move |shared: &Shared| match shared.count() {
            // No grid point passed since the last call (Twisted's rule;
            // exact time makes it unreachable in practice): skip this call.
            0 => succeed(()),
            count => maybe_deferred(|| f(count)),
        }))
    }

    fn from_body(body: Body) -> LoopingCall {
        LoopingCall {
            shared: Rc::new(Shared {
                body: RefCell::new(body),
                state: RefCell::new(State {
                    given_clock: None,
                    clock: None,
                    running: false,
                    busy: false,
                    interval: None,
                    start_time: None,
                    run_at_start: false,
                    call: None,
                    deferred: None,
                    last_time: None,
                }),
            }),
        }
    }

    /// Schedules the calls on `clock` instead of the current thread's
    /// reactor (a [`Clock`](crate::task::Clock) in tests). Takes effect at
    /// the next [`start`](Self::start).
    pub fn clock(self, clock: Rc<dyn ReactorTime>) -> LoopingCall {
        self.shared.state.borrow_mut().given_clock = Some(clock);
        self
    }

    /// Starts calling the function every `interval`: at once if `now`,
    /// else first at `interval` from now.
    ///
    /// The Deferred returned fires with this `LoopingCall` when the loop is
    /// [stopped](Self::stop), or fails with the function's failure, which
    /// ends the loop. With `now`, the first call runs inside `start`, so
    /// the Deferred may have fired already when it is returned.
    ///
    /// # Errors
    ///
    /// [`LoopingCallError::AlreadyRunning`] if it runs already,
    /// [`LoopingCallError::InvalidInterval`] if `interval` is longer than
    /// the clock can schedule, [`LoopingCallError::NoReactor`] if no clock
    /// was given and this thread has no reactor.
    pub fn start(
        &self,
        interval: Duration,
        now: bool,
    ) -> Result<Deferred<LoopingCall>, LoopingCallError> {
        let (deferred, start_time) = {
            let mut st = self.shared.state.borrow_mut();
            if st.running || st.busy {
                return Err(LoopingCallError::AlreadyRunning);
            }
            if interval > MAX_INTERVAL {
                return Err(LoopingCallError::InvalidInterval(interval));
            }
            let clock = match &st.given_clock {
                Some(clock) => clock.clone(),
                None => Rc::new(Reactor::current().ok_or(LoopingCallError::NoReactor)?),
            };
            let start_time = clock.now();
            let deferred = Deferred::new();
            st.clock = Some(clock);
            st.running = true;
            st.interval = Some(interval);
            st.start_time = Some(start_time);
            st.run_at_start = now;
            st.last_time = None;
            st.deferred = Some(deferred.resolver());
            (deferred, start_time)
        };
        if now {
            self.run_once();
        } else {
            self.schedule_from(start_time);
        }
        Ok(deferred)
    }

    /// Stops the loop. If no call is under way, the pending call is
    /// cancelled and the Deferred [`start`](Self::start) returned fires
    /// now; from inside the function (or while its Deferred is pending),
    /// that Deferred fires when the current call completes, with its
    /// failure if it fails.
    ///
    /// # Errors
    ///
    /// [`LoopingCallError::NotRunning`] if the loop is not running.
    pub fn stop(&self) -> Result<(), LoopingCallError> {
        let mut st = self.shared.state.borrow_mut();
        if !st.running {
            return Err(LoopingCallError::NotRunning);
        }
        st.running = false;
        if let Some(call) = st.call.take() {
            let _ = call.cancel();
            let deferred = st.deferred.take();
            drop(st);
            if let Some(deferred) = deferred {
                self.fire(&deferred, Ok(()));
            }
        }
        Ok(())
    }

    /// Restarts the grid now: the pending call is moved to one interval
    /// from now. Does nothing while a call is under way.
    ///
    /// # Errors
    ///
    /// [`LoopingCallError::NotRunning`] if the loop is not running.
    pub fn reset(&self) -> Result<(), LoopingCallError> {
        let mut st = self.shared.state.borrow_mut();
        if !st.running {
            return Err(LoopingCallError::NotRunning);
        }
        if let Some(call) = st.call.take() {
            let _ = call.cancel();
            let now = st.clock.as_ref().expect("a running loop has a clock").now();
            st.start_time = Some(now);
            drop(st);
            self.schedule_from(now);
        }
        Ok(())
    }

    /// Whether the loop is running: started, and neither stopped nor
    /// failed.
    pub fn running(&self) -> bool {
        self.shared.state.borrow().running
    }

    /// The interval of the current (or last) run; `None` before the first
    /// [`start`](Self::start).
    pub fn interval(&self) -> Option<Duration> {
        self.shared.state.borrow().interval
    }

    /// A handle that does not keep the loop alive.
    pub fn downgrade(&self) -> WeakLoopingCall {
        WeakLoopingCall {
            shared: Rc::downgrade(&self.shared),
        }
    }

    /// One call of the function (Twisted's `LoopingCall.__call__`).
    fn run_once(&self) {
        {
            let mut st = self.shared.state.borrow_mut();
            st.call = None;
            st.busy = true;
        }
        let result = {
            let mut body = self.shared.body.borrow_mut();
            body(&self.shared)
        };
        let lc = self.clone();
        result.add_both(move |outcome| {
            lc.call_done(outcome);
            Ok(())
        });
    }

    /// The function's call completed with `outcome`.
    fn call_done(&self, outcome: Result<(), Failure>) {
        let mut st = self.shared.state.borrow_mut();
        st.busy = false;
        match outcome {
            Ok(()) if st.running => {
                let now = st.clock.as_ref().expect("a running loop has a clock").now();
                drop(st);
                self.schedule_from(now);
            }
            outcome => {
                st.running = false;
                let deferred = st.deferred.take();
                drop(st);
                match deferred {
                    Some(deferred) => self.fire(&deferred, outcome),
                    None => {
                        if let Err(failure) = outcome {
                            log::error!("Unhandled error in LoopingCall: {failure}");
                        }
                    }
                }
            }
        }
    }

    /// Fires the Deferred `start` returned (unless its holder fired it).
    fn fire(&self, deferred: &Resolver<LoopingCall>, outcome: Result<(), Failure>) {
        let fired = match outcome {
            Ok(()) => deferred.try_callback(self.clone()),
            Err(failure) => deferred.try_errback(failure),
        };
        if fired.is_err() {
            log::warn!("the Deferred of a LoopingCall was fired by someone else");
        }
    }

    /// Schedules the next call at the first grid point after `when`.
    fn schedule_from(&self, when: Instant) {
        let mut st = self.shared.state.borrow_mut();
        let interval = st.interval.expect("a running loop has an interval");
        let start_time = st.start_time.expect("a running loop has a start time");
        let delay = if interval.is_zero() {
            Duration::ZERO
        } else {
            // In (0, interval]: a call exactly on a grid point schedules the
            // next grid point, and points already past are skipped.
            let step = interval.as_nanos();
            let running_for = when.saturating_duration_since(start_time).as_nanos();
            let until_next = step - running_for % step;
            Duration::from_nanos(u64::try_from(until_next).unwrap_or(u64::MAX))
        };
        let clock = st.clock.clone().expect("a running loop has a clock");
        let lc = self.clone();
        st.call = Some(clock.call_later(delay, Box::new(move || lc.run_once())));
    }
}

impl Shared {
    /// [`LoopingCall::with_count`]: the grid intervals since the last call
    /// (0: do not call).
    fn count(&self) -> u64 {
        let mut st = self.state.borrow_mut();
        let now = st.clock.as_ref().expect("a running loop has a clock").now();
        let interval = st.interval.expect("a running loop has an interval");
        if interval.is_zero() {
            st.last_time = Some(now);
            return 1;
        }
        let start = st.start_time.expect("a running loop has a start time");
        let step = interval.as_nanos() as i128;
        // Twisted's `int(elapsed / interval)`, which truncates toward zero.
        let interval_of = |t: Instant| -> i128 {
            let elapsed = if t >= start {
                (t - start).as_nanos() as i128
            } else {
                -((start - t).as_nanos() as i128)
            };
            elapsed / step
        };
        let last = match st.last_time {
            Some(t) => interval_of(t),
            // The first call: one interval before the start when it is
            // made at once, else the start.
            None if st.run_at_start => -1,
            None => 0,
        };
        let count = interval_of(now) - last;
        if count > 0 {
            st.last_time = Some(now);
            u64::try_from(count).unwrap_or(u64::MAX)
        } else {
            0
        }
    }
}

impl Clone for LoopingCall {
    fn clone(&self) -> Self {
        LoopingCall {
            shared: self.shared.clone(),
        }
    }
}

/// Two handles are equal when they are the same loop.
impl PartialEq for LoopingCall {
    fn eq(&self, other: &Self) -> bool {
        Rc::ptr_eq(&self.shared, &other.shared)
    }
}

impl Eq for LoopingCall {}

impl fmt::Debug for LoopingCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.shared.state.borrow();
        f.debug_struct("LoopingCall")
            .field("running", &st.running)
            .field("interval", &st.interval)
            .field("call", &st.call)
            .finish()
    }
}

impl WeakLoopingCall {
    /// The loop, if it still exists.
    pub fn upgrade(&self) -> Option<LoopingCall> {
        self.shared.upgrade().map(|shared| LoopingCall { shared })
    }
}

impl fmt::Debug for WeakLoopingCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WeakLoopingCall")
            .field("alive", &(self.shared.strong_count() > 0))
            .finish()
    }
}

/// A Deferred that fires, `delay` from now on `clock`, with what `f`
/// returns: a value, a failure, or the result of a Deferred it returns. A
/// panic in `f` becomes a failure. Twisted's `task.deferLater`.
///
/// Cancelling the Deferred before `f` runs cancels the timer: `f` is never
/// called, no call is left pending on `clock`, and the Deferred fails with
/// [`CancelledError`](crate::defer::CancelledError).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use twill::{defer::{CancelledError, Failure}, task::{defer_later, Clock}};
///
/// let clock = Clock::new();
/// let d = defer_later(&clock, Duration::from_secs(3), || Ok::<_, Failure>("done"));
/// clock.advance(Duration::from_secs(2));
/// assert!(d.result().is_none());
/// clock.advance(Duration::from_secs(1));
/// assert_eq!(d.result().unwrap().unwrap(), "done");
///
/// let never = defer_later(&clock, Duration::from_secs(3), || -> Result<(), Failure> {
///     unreachable!()
/// });
/// never.cancel();
/// assert!(clock.delayed_calls().is_empty());
/// assert!(never.result().unwrap().unwrap_err().check::<CancelledError>());
/// ```
pub fn defer_later<T: 'static, R: IntoStep<T>>(
    clock: &dyn ReactorTime,
    delay: Duration,
    f: impl FnOnce() -> R + 'static,
) -> Deferred<T> {
    let timer: Rc<Cell<Option<DelayedCall>>> = Rc::default();
    let pending = timer.clone();
    let elapsed: Deferred<()> = Deferred::with_canceller(move |_| {
        if let Some(call) = pending.take() {
            let _ = call.cancel();
        }
    });
    let trigger = elapsed.resolver();
    timer.set(Some(clock.call_later(
        delay,
        Box::new(move || {
            let _ = trigger.try_callback(());
        }),
    )));
    elapsed.then(move |()| f())
}
