//! Scheduled calls: [`DelayedCall`], the [`ReactorTime`] interface, and the
//! timer queue shared by the reactor and [`Clock`](crate::task::Clock).

use std::cell::{Cell, RefCell};
use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::fmt;
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

/// Something that knows the time and runs calls later: the reactor, or a
/// hand-advanced [`Clock`](crate::task::Clock) in tests.
///
/// This is Twisted's `IReactorTime`. Components that wait (reconnection
/// back-off, timeouts, looping calls) take an `Rc<dyn ReactorTime>` so a
/// test can hand them a `Clock` instead of the real reactor.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use twill::{task::Clock, ReactorTime};
///
/// fn arm(time: &dyn ReactorTime) -> twill::DelayedCall {
///     time.call_later(Duration::from_secs(5), Box::new(|| println!("five seconds later")))
/// }
///
/// let clock = Clock::new();
/// let call = arm(&clock);
/// assert!(call.active());
/// clock.advance(Duration::from_secs(5));
/// assert!(!call.active());
/// ```
pub trait ReactorTime {
    /// The current time on this clock (monotonic).
    fn now(&self) -> Instant;

    /// Runs `f` once, `delay` from now.
    fn call_later(&self, delay: Duration, f: Box<dyn FnOnce()>) -> DelayedCall;

    /// The calls that are scheduled and have neither run nor been cancelled,
    /// earliest first.
    fn delayed_calls(&self) -> Vec<DelayedCall>;
}

/// Why a [`DelayedCall`] could not be changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DelayedCallError {
    /// The call already ran (it is marked as called just before it runs, so
    /// cancelling a call from inside itself is this error too).
    AlreadyCalled,
    /// The call was cancelled before.
    AlreadyCancelled,
}

impl fmt::Display for DelayedCallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DelayedCallError::AlreadyCalled => {
                f.write_str("tried to change an already-called call")
            }
            DelayedCallError::AlreadyCancelled => {
                f.write_str("tried to change an already-cancelled call")
            }
        }
    }
}

impl std::error::Error for DelayedCallError {}

/// A call scheduled with `call_later`: Twisted's `IDelayedCall`.
///
/// Cloning gives another handle to the same call.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use twill::{task::Clock, DelayedCallError};
///
/// let clock = Clock::new();
/// let call = clock.call_later(Duration::from_secs(1), || unreachable!());
/// call.cancel().unwrap();
/// assert_eq!(call.cancel(), Err(DelayedCallError::AlreadyCancelled));
/// clock.advance(Duration::from_secs(2));
/// ```
#[derive(Clone)]
pub struct DelayedCall {
    entry: Rc<Entry>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    Pending,
    Called,
    Cancelled,
}

/// Heap key: due time in nanoseconds since the queue's epoch, then a
/// sequence number so calls due at the same instant run in the order they
/// were scheduled.
type Key = (u64, u64);

struct Entry {
    /// When the call should run, and its tie-break sequence number.
    due: Cell<Key>,
    /// The key of the one heap item that is live for this entry. It differs
    /// from `due` after a `reset`/`delay` to a later time: the item is then
    /// moved when it reaches the top of the heap, instead of on every reset
    /// (idle timeouts reset on every packet).
    queued: Cell<Key>,
    state: Cell<State>,
    func: Cell<Option<Box<dyn FnOnce()>>>,
    queue: Weak<TimerQueue>,
}

struct Item {
    key: Key,
    entry: Rc<Entry>,
}

impl PartialEq for Item {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}
impl Eq for Item {}
impl PartialOrd for Item {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Item {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key.cmp(&other.key)
    }
}

/// How [`TimerQueue::run_due`] runs a pass.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Pass {
    /// The reactor's: calls scheduled during the pass wait for the next one
    /// even when already due (so `call_later(0)` always yields to one I/O
    /// poll), and a panicking call is logged, not propagated.
    Reactor,
    /// `Clock::advance`: calls scheduled during the pass run in it if due,
    /// and a panic reaches the caller (a test's assertion fails the test),
    /// as in Twisted's `Clock.advance`.
    Clock,
}

/// Where a queue's time comes from.
pub(crate) enum TimeSource {
    /// `Instant::now()`.
    Monotonic,
    /// Moved forward by hand ([`Clock::advance`](crate::task::Clock::advance)).
    Manual(Cell<u64>),
}

/// A binary heap of scheduled calls with lazy cancellation.
pub(crate) struct TimerQueue {
    epoch: Instant,
    source: TimeSource,
    heap: RefCell<BinaryHeap<Reverse<Item>>>,
    next_seq: Cell<u64>,
    /// Heap items that no longer stand for a pending call.
    stale: Cell<usize>,
}

/// Rebuild the heap when this many items are stale and they are more than
/// half of it (Twisted's rule).
const COMPACT_MIN_STALE: usize = 50;

impl TimerQueue {
    pub(crate) fn new(source: TimeSource) -> Rc<TimerQueue> {
        Rc::new(TimerQueue {
            epoch: Instant::now(),
            source,
            heap: RefCell::new(BinaryHeap::new()),
            next_seq: Cell::new(0),
            stale: Cell::new(0),
        })
    }

    fn now_nanos(&self) -> u64 {
        match &self.source {
            TimeSource::Monotonic => duration_nanos(self.epoch.elapsed()),
            TimeSource::Manual(now) => now.get(),
        }
    }

    pub(crate) fn now(&self) -> Instant {
        self.instant(self.now_nanos())
    }

    fn instant(&self, nanos: u64) -> Instant {
        self.epoch + Duration::from_nanos(nanos)
    }

    /// Moves a manual clock forward. Does nothing for the monotonic source.
    pub(crate) fn advance(&self, by: Duration) {
        if let TimeSource::Manual(now) = &self.source {
            now.set(now.get().saturating_add(duration_nanos(by)));
        }
    }

    fn next_key(&self, delay: Duration) -> Key {
        let seq = self.next_seq.get();
        self.next_seq.set(seq + 1);
        (self.now_nanos().saturating_add(duration_nanos(delay)), seq)
    }

    pub(crate) fn call_later(
        self: &Rc<Self>,
        delay: Duration,
        f: Box<dyn FnOnce()>,
    ) -> DelayedCall {
        let key = self.next_key(delay);
        let entry = Rc::new(Entry {
            due: Cell::new(key),
            queued: Cell::new(key),
            state: Cell::new(State::Pending),
            func: Cell::new(Some(f)),
            queue: Rc::downgrade(self),
        });
        self.heap.borrow_mut().push(Reverse(Item {
            key,
            entry: entry.clone(),
        }));
        DelayedCall { entry }
    }

    fn mark_stale(&self) {
        let stale = self.stale.get() + 1;
        self.stale.set(stale);
        let mut heap = self.heap.borrow_mut();
        if stale > COMPACT_MIN_STALE && stale > heap.len() / 2 {
            let items = std::mem::take(&mut *heap).into_vec();
            *heap = items
                .into_iter()
                .filter(|Reverse(item)| item.is_live())
                .collect();
            self.stale.set(0);
        }
    }

    /// Removes stale items from the top and returns the key of the first
    /// live one.
    fn peek_live(&self) -> Option<Key> {
        let mut heap = self.heap.borrow_mut();
        while let Some(Reverse(top)) = heap.peek() {
            if top.is_live() {
                return Some(top.key);
            }
            heap.pop();
            self.stale.set(self.stale.get().saturating_sub(1));
        }
        None
    }

    /// The time until the earliest pending call (zero if it is overdue).
    pub(crate) fn time_to_next(&self) -> Option<Duration> {
        let (due, _) = self.peek_live()?;
        Some(Duration::from_nanos(due.saturating_sub(self.now_nanos())))
    }

    /// Runs every call that is due now, and returns how many ran.
    pub(crate) fn run_due(&self, pass: Pass) -> usize {
        let now = self.now_nanos();
        let limit = match pass {
            Pass::Reactor => self.next_seq.get(),
            Pass::Clock => u64::MAX,
        };
        let mut ran = 0;
        // Due calls (re)scheduled during this pass, to put back after it.
        let mut later = Vec::new();
        while let Some(key) = self.peek_live() {
            if key.0 > now {
                break;
            }
            let Reverse(item) = self.heap.borrow_mut().pop().expect("peeked");
            if key.1 >= limit {
                later.push(item);
                continue;
            }
            let entry = item.entry;
            let due = entry.due.get();
            if due != key {
                // Moved later since it was queued: put it where it belongs now.
                entry.queued.set(due);
                self.heap
                    .borrow_mut()
                    .push(Reverse(Item { key: due, entry }));
                continue;
            }
            entry.state.set(State::Called);
            let Some(f) = entry.func.take() else { continue };
            ran += 1;
            match pass {
                Pass::Clock => f(),
                Pass::Reactor => {
                    if let Err(panic) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
                        log::error!(
                            "panic in a timed call: {}; the reactor goes on",
                            crate::panic_message(&*panic)
                        );
                    }
                }
            }
        }
        self.heap
            .borrow_mut()
            .extend(later.into_iter().map(Reverse));
        ran
    }

    pub(crate) fn delayed_calls(&self) -> Vec<DelayedCall> {
        let heap = self.heap.borrow();
        let mut calls: Vec<_> = heap
            .iter()
            .filter(|Reverse(item)| item.is_live())
            .map(|Reverse(item)| item.entry.clone())
            .collect();
        calls.sort_by_key(|entry| entry.due.get());
        calls
            .into_iter()
            .map(|entry| DelayedCall { entry })
            .collect()
    }
}

impl Drop for TimerQueue {
    fn drop(&mut self) {
        // A pending call's closure may hold its own DelayedCall (a looping
        // call, a timeout): drop the closures so those cycles end with the
        // clock.
        for Reverse(item) in self.heap.get_mut().drain() {
            drop(item.entry.func.take());
        }
    }
}

impl Item {
    /// Whether this heap item still stands for a pending call.
    fn is_live(&self) -> bool {
        self.entry.state.get() == State::Pending && self.entry.queued.get() == self.key
    }
}

fn duration_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl DelayedCall {
    fn check_pending(&self) -> Result<(), DelayedCallError> {
        match self.entry.state.get() {
            State::Pending => Ok(()),
            State::Called => Err(DelayedCallError::AlreadyCalled),
            State::Cancelled => Err(DelayedCallError::AlreadyCancelled),
        }
    }

    /// Cancels the call and drops its function.
    ///
    /// # Errors
    ///
    /// [`DelayedCallError::AlreadyCalled`] if it ran (or is running),
    /// [`DelayedCallError::AlreadyCancelled`] if it was cancelled before.
    pub fn cancel(&self) -> Result<(), DelayedCallError> {
        self.check_pending()?;
        self.entry.state.set(State::Cancelled);
        drop(self.entry.func.take());
        if let Some(queue) = self.entry.queue.upgrade() {
            queue.mark_stale();
        }
        Ok(())
    }

    /// Reschedules the call to run `delay` from now (earlier or later).
    ///
    /// # Errors
    ///
    /// As [`cancel`](Self::cancel).
    pub fn reset(&self, delay: Duration) -> Result<(), DelayedCallError> {
        self.check_pending()?;
        let Some(queue) = self.entry.queue.upgrade() else {
            return Ok(());
        };
        self.move_to(&queue, queue.next_key(delay));
        Ok(())
    }

    /// Pushes the call back by `by` from its current due time.
    ///
    /// # Errors
    ///
    /// As [`cancel`](Self::cancel).
    pub fn delay(&self, by: Duration) -> Result<(), DelayedCallError> {
        self.check_pending()?;
        let Some(queue) = self.entry.queue.upgrade() else {
            return Ok(());
        };
        let (due, _) = self.entry.due.get();
        let (_, seq) = queue.next_key(Duration::ZERO);
        self.move_to(&queue, (due.saturating_add(duration_nanos(by)), seq));
        Ok(())
    }

    fn move_to(&self, queue: &TimerQueue, key: Key) {
        self.entry.due.set(key);
        if key < self.entry.queued.get() {
            // Earlier than the queued item: queue a new one; the old one is
            // skipped when it surfaces.
            self.entry.queued.set(key);
            queue.heap.borrow_mut().push(Reverse(Item {
                key,
                entry: self.entry.clone(),
            }));
            queue.mark_stale();
        }
    }

    /// Whether the call is still to run: neither called nor cancelled.
    pub fn active(&self) -> bool {
        self.entry.state.get() == State::Pending
    }

    /// Whether the call has run (or is running).
    pub fn called(&self) -> bool {
        self.entry.state.get() == State::Called
    }

    /// Whether the call was cancelled.
    pub fn cancelled(&self) -> bool {
        self.entry.state.get() == State::Cancelled
    }

    /// When the call is (or was) due, on its clock. Twisted's `getTime`.
    pub fn time(&self) -> Instant {
        let (due, _) = self.entry.due.get();
        match self.entry.queue.upgrade() {
            Some(queue) => queue.instant(due),
            None => Instant::now(),
        }
    }
}

impl fmt::Debug for DelayedCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DelayedCall")
            .field("state", &self.entry.state.get())
            .field("time", &self.time())
            .finish()
    }
}
