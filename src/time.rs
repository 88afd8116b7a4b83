//! Scheduled calls: [`DelayedCall`], the [`ReactorTime`] interface, and the
//! timer queue shared by the reactor and [`Clock`](crate::task::Clock).

use std::cell::{Cell, RefCell};
use std::cmp::Reverse;
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
pub struct DelayedCall {
    queue: Weak<TimerQueue>,
    slot: u32,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    Pending,
    Called,
    Cancelled,
}

/// One scheduled call, in the queue's slab. A slot lives until its call is
/// over (called or cancelled) and no [`DelayedCall`] handle refers to it;
/// then it is reused.
struct Slot {
    func: Option<Box<dyn FnOnce()>>,
    /// When the call should run, in nanoseconds since the queue's epoch.
    due: u64,
    /// The sequence number of the one heap item that stands for this call.
    /// After a `reset`/`delay` to a later time, `due` is later than that
    /// item's: the item is moved when it reaches the top of the heap,
    /// instead of on every reset (idle timeouts reset on every packet).
    queued: u64,
    /// Live `DelayedCall` handles.
    handles: u32,
    state: State,
}

/// A heap item: 16 bytes, so a heap of a million calls is 16 MB and a
/// comparison touches nothing else.
///
/// Calls due at the same nanosecond run in the order they were scheduled:
/// `seq` is the low 32 bits of a 64-bit counter, so that holds for any two
/// calls scheduled fewer than 2³² calls apart.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
struct Item {
    due: u64,
    seq: u32,
    slot: u32,
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

/// Scheduled calls: a slab of [`Slot`]s and a binary min-heap of [`Item`]s
/// with lazy cancellation.
pub(crate) struct TimerQueue {
    epoch: Instant,
    source: TimeSource,
    slots: RefCell<Vec<Slot>>,
    free: RefCell<Vec<u32>>,
    heap: RefCell<BinaryHeap<Reverse<Item>>>,
    next_seq: Cell<u64>,
    /// Heap items that no longer stand for a pending call.
    stale: Cell<usize>,
}

/// Rebuild the heap when this many items are stale and they are more than
/// half of it (Twisted's rule).
const COMPACT_MIN_STALE: usize = 50;

/// After this many calls in one pass, the rest of the due calls are taken
/// out of the heap at once and sorted, instead of popped one by one: a sort
/// walks memory in order, while each pop from a large heap misses the
/// cache at every level.
const BULK_AFTER: usize = 256;

impl TimerQueue {
    pub(crate) fn new(source: TimeSource) -> Rc<TimerQueue> {
        Rc::new(TimerQueue {
            epoch: Instant::now(),
            source,
            slots: RefCell::new(Vec::new()),
            free: RefCell::new(Vec::new()),
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

    fn next_seq(&self) -> u64 {
        let seq = self.next_seq.get();
        self.next_seq.set(seq + 1);
        seq
    }

    fn due_in(&self, delay: Duration) -> u64 {
        self.now_nanos().saturating_add(duration_nanos(delay))
    }

    /// Queues a heap item for `slot` due at `due`, making it the slot's
    /// live one.
    fn enqueue(&self, slots: &mut [Slot], slot: u32, due: u64) {
        let seq = self.next_seq();
        slots[slot as usize].queued = seq;
        self.heap.borrow_mut().push(Reverse(Item {
            due,
            seq: seq as u32,
            slot,
        }));
    }

    pub(crate) fn call_later(
        self: &Rc<Self>,
        delay: Duration,
        f: Box<dyn FnOnce()>,
    ) -> DelayedCall {
        let due = self.due_in(delay);
        let mut slots = self.slots.borrow_mut();
        let fresh = Slot {
            func: Some(f),
            due,
            queued: 0,
            handles: 1,
            state: State::Pending,
        };
        let slot = match self.free.borrow_mut().pop() {
            Some(slot) => {
                slots[slot as usize] = fresh;
                slot
            }
            None => {
                let slot = u32::try_from(slots.len()).expect("fewer than 2^32 pending calls");
                slots.push(fresh);
                slot
            }
        };
        self.enqueue(&mut slots, slot, due);
        DelayedCall {
            queue: Rc::downgrade(self),
            slot,
        }
    }

    /// Frees `slot` if its call is over and no handle refers to it.
    fn release_if_done(&self, slots: &mut [Slot], slot: u32) {
        let s = &slots[slot as usize];
        if s.handles == 0 && s.state != State::Pending {
            self.free.borrow_mut().push(slot);
        }
    }

    fn mark_stale(&self) {
        let stale = self.stale.get() + 1;
        self.stale.set(stale);
        let mut heap = self.heap.borrow_mut();
        if stale > COMPACT_MIN_STALE && stale > heap.len() / 2 {
            let slots = self.slots.borrow();
            let items = std::mem::take(&mut *heap).into_vec();
            *heap = items
                .into_iter()
                .filter(|Reverse(item)| is_live(&slots, item))
                .collect();
            self.stale.set(0);
        }
    }

    /// Removes stale items from the top and returns the first live one.
    fn peek_live(&self) -> Option<Item> {
        let mut heap = self.heap.borrow_mut();
        let slots = self.slots.borrow();
        while let Some(&Reverse(top)) = heap.peek() {
            if is_live(&slots, &top) {
                return Some(top);
            }
            heap.pop();
            self.stale.set(self.stale.get().saturating_sub(1));
        }
        None
    }

    /// The time until the earliest pending call (zero if it is overdue).
    pub(crate) fn time_to_next(&self) -> Option<Duration> {
        let top = self.peek_live()?;
        Some(Duration::from_nanos(
            top.due.saturating_sub(self.now_nanos()),
        ))
    }

    /// Takes every item due by `now` out of the heap, live ones sorted, and
    /// drops the stale ones.
    fn take_due(&self, now: u64) -> Vec<Item> {
        let mut heap = self.heap.borrow_mut();
        let slots = self.slots.borrow();
        let (mut due, rest): (Vec<Item>, Vec<Item>) = std::mem::take(&mut *heap)
            .into_vec()
            .into_iter()
            .map(|Reverse(item)| item)
            .partition(|item| item.due <= now);
        let before = due.len();
        due.retain(|item| is_live(&slots, item));
        self.stale
            .set(self.stale.get().saturating_sub(before - due.len()));
        due.sort_unstable();
        *heap = rest.into_iter().map(Reverse).collect();
        due
    }

    /// Runs every call that is due now, and returns how many ran.
    pub(crate) fn run_due(&self, pass: Pass) -> usize {
        let now = self.now_nanos();
        let limit = match pass {
            Pass::Reactor => self.next_seq.get(),
            Pass::Clock => u64::MAX,
        };
        let mut ran = 0;
        let mut popped = 0;
        // Due calls (re)scheduled during this pass, to put back after it.
        let mut later = Vec::new();
        // Due items taken out in bulk, earliest last.
        let mut bulk: Vec<Item> = Vec::new();
        loop {
            let item = match bulk.pop() {
                Some(item) => item,
                None => {
                    match self.peek_live() {
                        Some(top) if top.due <= now => {}
                        _ => break,
                    }
                    popped += 1;
                    if popped > BULK_AFTER {
                        bulk = self.take_due(now);
                        bulk.reverse();
                        popped = 0;
                        continue;
                    }
                    let Reverse(item) = self.heap.borrow_mut().pop().expect("peeked");
                    item
                }
            };
            let f = {
                let mut slots = self.slots.borrow_mut();
                if !is_live(&slots, &item) {
                    // Cancelled or moved by a call that ran in this pass.
                    self.stale.set(self.stale.get().saturating_sub(1));
                    continue;
                }
                let slot = &mut slots[item.slot as usize];
                if slot.queued >= limit {
                    later.push(item);
                    continue;
                }
                if slot.due != item.due {
                    // Moved later since it was queued: put it where it
                    // belongs now, and the rest of a bulk back with it,
                    // so the heap keeps them in order.
                    let due = slot.due;
                    self.heap.borrow_mut().extend(bulk.drain(..).map(Reverse));
                    self.enqueue(&mut slots, item.slot, due);
                    continue;
                }
                slot.state = State::Called;
                let f = slot.func.take();
                self.release_if_done(&mut slots, item.slot);
                f
            };
            let Some(f) = f else { continue };
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

    pub(crate) fn delayed_calls(self: &Rc<Self>) -> Vec<DelayedCall> {
        let mut items: Vec<Item> = {
            let heap = self.heap.borrow();
            let slots = self.slots.borrow();
            heap.iter()
                .map(|Reverse(item)| *item)
                .filter(|item| is_live(&slots, item))
                .collect()
        };
        let mut slots = self.slots.borrow_mut();
        items.sort_by_key(|item| (slots[item.slot as usize].due, item.seq));
        items
            .into_iter()
            .map(|item| {
                slots[item.slot as usize].handles += 1;
                DelayedCall {
                    queue: Rc::downgrade(self),
                    slot: item.slot,
                }
            })
            .collect()
    }
}

impl Drop for TimerQueue {
    fn drop(&mut self) {
        // A pending call's closure may hold its own DelayedCall (a looping
        // call, a timeout): drop the closures so those cycles end with the
        // clock. Their handles find the queue gone and do nothing.
        let funcs: Vec<_> = self
            .slots
            .get_mut()
            .iter_mut()
            .filter_map(|slot| slot.func.take())
            .collect();
        drop(funcs);
    }
}

/// Whether `item` still stands for a pending call.
fn is_live(slots: &[Slot], item: &Item) -> bool {
    let slot = &slots[item.slot as usize];
    slot.state == State::Pending && slot.queued as u32 == item.seq
}

fn duration_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl DelayedCall {
    /// Runs `f` on this call's slot, or returns `None` if the queue is gone
    /// (its reactor or clock was dropped; the call never ran and never
    /// will).
    fn with_slot<R>(&self, f: impl FnOnce(&TimerQueue, &mut Vec<Slot>) -> R) -> Option<R> {
        let queue = self.queue.upgrade()?;
        let mut slots = queue.slots.borrow_mut();
        Some(f(&queue, &mut slots))
    }

    fn state(&self) -> State {
        self.with_slot(|_, slots| slots[self.slot as usize].state)
            .unwrap_or(State::Cancelled)
    }

    fn check_pending(&self) -> Result<(), DelayedCallError> {
        match self.state() {
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
    /// [`DelayedCallError::AlreadyCancelled`] if it was cancelled before
    /// (or its reactor or clock is gone).
    pub fn cancel(&self) -> Result<(), DelayedCallError> {
        self.check_pending()?;
        let Some(queue) = self.queue.upgrade() else {
            return Ok(());
        };
        let func = {
            let mut slots = queue.slots.borrow_mut();
            let slot = &mut slots[self.slot as usize];
            slot.state = State::Cancelled;
            slot.func.take()
        };
        queue.mark_stale();
        // The function may hold handles of its own: dropped with no borrow
        // held.
        drop(func);
        Ok(())
    }

    /// Reschedules the call to run `delay` from now (earlier or later).
    ///
    /// # Errors
    ///
    /// As [`cancel`](Self::cancel).
    pub fn reset(&self, delay: Duration) -> Result<(), DelayedCallError> {
        self.check_pending()?;
        if let Some(queue) = self.queue.upgrade() {
            self.move_to(&queue, queue.due_in(delay));
        }
        Ok(())
    }

    /// Pushes the call back by `by` from its current due time.
    ///
    /// # Errors
    ///
    /// As [`cancel`](Self::cancel).
    pub fn delay(&self, by: Duration) -> Result<(), DelayedCallError> {
        self.check_pending()?;
        if let Some(queue) = self.queue.upgrade() {
            let due = queue.slots.borrow()[self.slot as usize].due;
            self.move_to(&queue, due.saturating_add(duration_nanos(by)));
        }
        Ok(())
    }

    fn move_to(&self, queue: &TimerQueue, due: u64) {
        let earlier = {
            let mut slots = queue.slots.borrow_mut();
            let earlier = due < slots[self.slot as usize].due;
            slots[self.slot as usize].due = due;
            if earlier {
                // Queue a new item; the old one is skipped when it
                // surfaces. A later time needs nothing now: the queued
                // item is moved when it reaches the top.
                queue.enqueue(&mut slots, self.slot, due);
            }
            earlier
        };
        if earlier {
            queue.mark_stale();
        }
    }

    /// Whether the call is still to run: neither called nor cancelled.
    pub fn active(&self) -> bool {
        self.state() == State::Pending
    }

    /// Whether the call has run (or is running).
    pub fn called(&self) -> bool {
        self.state() == State::Called
    }

    /// Whether the call was cancelled (a call whose reactor or clock is
    /// gone counts as cancelled: it will never run).
    pub fn cancelled(&self) -> bool {
        self.state() == State::Cancelled
    }

    /// When the call is (or was) due, on its clock. Twisted's `getTime`.
    /// If the reactor or clock is gone, that is now.
    pub fn time(&self) -> Instant {
        self.with_slot(|queue, slots| queue.instant(slots[self.slot as usize].due))
            .unwrap_or_else(Instant::now)
    }
}

impl Clone for DelayedCall {
    fn clone(&self) -> Self {
        self.with_slot(|_, slots| slots[self.slot as usize].handles += 1);
        DelayedCall {
            queue: self.queue.clone(),
            slot: self.slot,
        }
    }
}

impl Drop for DelayedCall {
    fn drop(&mut self) {
        self.with_slot(|queue, slots| {
            slots[self.slot as usize].handles -= 1;
            queue.release_if_done(slots, self.slot);
        });
    }
}

impl fmt::Debug for DelayedCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DelayedCall")
            .field("state", &self.state())
            .field("time", &self.time())
            .finish()
    }
}
