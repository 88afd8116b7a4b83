//! Time helpers: [`LoopingCall`], [`defer_later`], and the hand-advanced
//! [`Clock`] for tests.

mod looping_call;

pub use looping_call::*;

use std::fmt;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::time::{DelayedCall, Pass, ReactorTime, TimeSource, TimerQueue};

/// A clock that only moves when told to: Twisted's `task.Clock`.
///
/// Hand it to anything that takes an `Rc<dyn ReactorTime>` (reconnection
/// back-off, timeouts) in place of the reactor, and test time-dependent
/// code without sleeping. Calls due at the same instant run in the order
/// they were scheduled.
///
/// # Examples
///
/// ```
/// use std::{cell::Cell, rc::Rc, time::Duration};
/// use twill::task::Clock;
///
/// let clock = Clock::new();
/// let fired = Rc::new(Cell::new(false));
/// let flag = fired.clone();
/// clock.call_later(Duration::from_secs(10), move || flag.set(true));
/// clock.advance(Duration::from_secs(9));
/// assert!(!fired.get());
/// clock.advance(Duration::from_secs(1));
/// assert!(fired.get());
/// ```
#[derive(Clone)]
pub struct Clock {
    queue: Rc<TimerQueue>,
}

impl Clock {
    /// A clock standing still at its creation time.
    pub fn new() -> Clock {
        Clock {
            queue: TimerQueue::new(TimeSource::Manual(std::cell::Cell::new(0))),
        }
    }

    /// The clock's current time.
    pub fn now(&self) -> Instant {
        self.queue.now()
    }

    /// Runs `f` when the clock has been advanced by `delay`.
    pub fn call_later(&self, delay: Duration, f: impl FnOnce() + 'static) -> DelayedCall {
        self.queue.call_later(delay, Box::new(f))
    }

    /// Moves time forward by `by` and runs every call that is then due,
    /// including calls they schedule that are due too (so a call that keeps
    /// rescheduling itself with a zero delay makes `advance` run forever, as
    /// in Twisted). A panic in a call reaches the caller, so an assertion
    /// inside one fails the test.
    pub fn advance(&self, by: Duration) {
        self.queue.advance(by);
        self.queue.run_due(Pass::Clock);
    }

    /// Advances by each of `steps` in turn, running what is due after each.
    pub fn pump(&self, steps: &[Duration]) {
        for &step in steps {
            self.advance(step);
        }
    }

    /// Pending calls, earliest first.
    pub fn delayed_calls(&self) -> Vec<DelayedCall> {
        self.queue.delayed_calls()
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

impl ReactorTime for Clock {
    fn now(&self) -> Instant {
        self.queue.now()
    }

    fn call_later(&self, delay: Duration, f: Box<dyn FnOnce()>) -> DelayedCall {
        self.queue.call_later(delay, f)
    }

    fn delayed_calls(&self) -> Vec<DelayedCall> {
        self.queue.delayed_calls()
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Clock")
            .field("pending", &self.delayed_calls().len())
            .finish()
    }
}
