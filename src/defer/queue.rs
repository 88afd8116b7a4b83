//! [`DeferredQueue`]: a queue whose `get` returns a Deferred, as Twisted's.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::error::Error;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use super::{succeed, Deferred, Resolver};

/// A queue of values for callbacks: Twisted's `DeferredQueue`.
///
/// [`get`](Self::get) returns a Deferred that fires with the oldest value,
/// at once if one is there, else when one is [`put`](Self::put) (the oldest
/// waiting `get` is served first). `size` bounds the values kept when
/// nobody waits ([`QueueOverflow`] past it), `backlog` the `get`s that wait
/// ([`QueueUnderflow`] past it); `None` means no bound, `Some(0)` refuses
/// every one. A waiting `get` can be cancelled: it leaves the queue and
/// fails with [`CancelledError`](super::CancelledError).
///
/// A `DeferredQueue` is a cheap handle: its clones are the same queue. It
/// lives on one thread.
///
/// # Examples
///
/// ```
/// use twill::defer::DeferredQueue;
///
/// let queue = DeferredQueue::new();
/// let first = queue.get()?; // nothing yet: it waits
/// queue.put("a")?; // goes straight to the waiting get
/// queue.put("b")?; // kept
/// assert_eq!(first.result().unwrap().unwrap(), "a");
/// assert_eq!(queue.pending(), 1);
/// assert_eq!(queue.get()?.result().unwrap().unwrap(), "b");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// With bounds:
///
/// ```
/// use twill::defer::{DeferredQueue, QueueUnderflow};
///
/// let queue = DeferredQueue::with_limits(Some(1), Some(0));
/// queue.put(1).unwrap();
/// assert_eq!(queue.put(2).unwrap_err().into_inner(), 2); // full
/// assert_eq!(queue.get().unwrap().result().unwrap().unwrap(), 1);
/// assert_eq!(queue.get().unwrap_err(), QueueUnderflow); // no waiting allowed
/// ```
pub struct DeferredQueue<T: 'static> {
    core: Rc<RefCell<Core<T>>>,
    /// The `get` this handle's `Stream` waits on, if any.
    next: Option<Deferred<T>>,
}

struct Core<T: 'static> {
    pending: VecDeque<T>,
    waiting: VecDeque<(u64, Resolver<T>)>,
    size: Option<usize>,
    backlog: Option<usize>,
    next_id: u64,
}

impl<T: 'static> DeferredQueue<T> {
    /// An unbounded queue.
    pub fn new() -> DeferredQueue<T> {
        DeferredQueue::with_limits(None, None)
    }

    /// A queue keeping at most `size` values and letting at most `backlog`
    /// `get`s wait (`None`: no bound).
    pub fn with_limits(size: Option<usize>, backlog: Option<usize>) -> DeferredQueue<T> {
        DeferredQueue {
            core: Rc::new(RefCell::new(Core {
                pending: VecDeque::new(),
                waiting: VecDeque::new(),
                size,
                backlog,
                next_id: 0,
            })),
            next: None,
        }
    }

    /// Adds a value: the oldest waiting `get` fires with it now (its
    /// callbacks run before `put` returns), else it is kept.
    ///
    /// # Errors
    ///
    /// [`QueueOverflow`], holding the value, if nobody waits and `size`
    /// values are kept already.
    pub fn put(&self, item: T) -> Result<(), QueueOverflow<T>> {
        loop {
            let waiter = {
                let mut st = self.core.borrow_mut();
                match st.waiting.pop_front() {
                    Some((_, waiter)) => waiter,
                    None if st.size.is_none_or(|size| st.pending.len() < size) => {
                        st.pending.push_back(item);
                        return Ok(());
                    }
                    None => return Err(QueueOverflow { item }),
                }
            };
            // A waiter someone else fired does not take the value.
            if !waiter.called() {
                waiter.callback(item);
                return Ok(());
            }
        }
    }

    /// Takes the oldest value: the Deferred has it now if one is kept, else
    /// waits for the next [`put`](Self::put). Cancelling a waiting `get`
    /// takes it out of the queue.
    ///
    /// # Errors
    ///
    /// [`QueueUnderflow`] if no value is kept and `backlog` `get`s wait
    /// already.
    pub fn get(&self) -> Result<Deferred<T>, QueueUnderflow> {
        self.get_within(true)
    }

    fn get_within(&self, backlog: bool) -> Result<Deferred<T>, QueueUnderflow> {
        let mut st = self.core.borrow_mut();
        if let Some(item) = st.pending.pop_front() {
            drop(st);
            return Ok(succeed(item));
        }
        if backlog
            && st
                .backlog
                .is_some_and(|backlog| st.waiting.len() >= backlog)
        {
            return Err(QueueUnderflow);
        }
        let id = st.next_id;
        st.next_id += 1;
        let weak = Rc::downgrade(&self.core);
        let waiter = Deferred::with_canceller(move |_| {
            if let Some(core) = weak.upgrade() {
                let mut st = core.borrow_mut();
                let gone = st.waiting.iter().position(|(w, _)| *w == id);
                let removed = gone.and_then(|at| st.waiting.remove(at));
                drop(st);
                drop(removed);
            }
        });
        st.waiting.push_back((id, waiter.resolver()));
        Ok(waiter)
    }

    /// Hands a value taken from the queue back: to the oldest waiting
    /// `get`, else first in line.
    fn give_back(&self, item: T) {
        loop {
            let waiter = self.core.borrow_mut().waiting.pop_front();
            match waiter {
                // A waiter someone else fired does not take the value.
                Some((_, waiter)) if waiter.called() => continue,
                Some((_, waiter)) => return waiter.callback(item),
                None => return self.core.borrow_mut().pending.push_front(item),
            }
        }
    }

    /// How many values are kept, waiting for a `get`.
    pub fn pending(&self) -> usize {
        self.core.borrow().pending.len()
    }

    /// How many `get`s wait for a value.
    pub fn waiting(&self) -> usize {
        self.core.borrow().waiting.len()
    }

    /// The most values kept (`None`: no bound).
    pub fn size(&self) -> Option<usize> {
        self.core.borrow().size
    }

    /// The most `get`s waiting (`None`: no bound).
    pub fn backlog(&self) -> Option<usize> {
        self.core.borrow().backlog
    }
}

impl<T: 'static> Clone for DeferredQueue<T> {
    /// Another handle to the same queue (its `Stream` is its own: a clone
    /// does not share the `get` this one's stream waits on).
    fn clone(&self) -> Self {
        DeferredQueue {
            core: self.core.clone(),
            next: None,
        }
    }
}

/// The values, oldest first, for `async` code: each `poll_next` that finds
/// the queue empty makes one waiting `get` (it does not count against the
/// backlog), kept until a value arrives. The stream ends only if that `get`
/// is cancelled (cancelling a `from_future` cancels what its future
/// awaits). Dropping the handle takes its waiting `get` out of the queue,
/// and hands back a value that reached it, so no value is lost to it.
///
/// # Examples
///
/// ```
/// use futures::StreamExt;
/// use twill::defer::{Deferred, DeferredQueue};
///
/// let queue = DeferredQueue::new();
/// let mut stream = queue.clone();
/// let firsts = Deferred::from_future(async move {
///     let a = stream.next().await.unwrap();
///     let b = stream.next().await.unwrap();
///     Ok(vec![a, b])
/// });
/// queue.put("a").unwrap();
/// queue.put("b").unwrap();
/// assert_eq!(firsts.result().unwrap().unwrap(), ["a", "b"]);
/// ```
impl<T: 'static> futures::Stream for DeferredQueue<T> {
    type Item = T;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let this = self.get_mut();
        let mut next = match this.next.take() {
            Some(next) => next,
            None => this
                .get_within(false)
                .expect("a get without a backlog always waits"),
        };
        match Pin::new(&mut next).poll(cx) {
            Poll::Ready(Ok(item)) => Poll::Ready(Some(item)),
            // The get was cancelled: cancelling a `from_future` cancels what
            // its future awaits. The stream ends.
            Poll::Ready(Err(_)) => Poll::Ready(None),
            Poll::Pending => {
                this.next = Some(next);
                Poll::Pending
            }
        }
    }
}

impl<T: 'static> Drop for DeferredQueue<T> {
    fn drop(&mut self) {
        let Some(next) = self.next.take() else {
            return;
        };
        next.cancel();
        // A value had reached the get: it goes back, first in line. (The
        // CancelledError otherwise there is taken, so not reported.)
        if let Some(Ok(item)) = next.result() {
            self.give_back(item);
        }
    }
}

impl<T: 'static> Default for DeferredQueue<T> {
    fn default() -> Self {
        DeferredQueue::new()
    }
}

impl<T: 'static> fmt::Debug for DeferredQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.core.borrow();
        f.debug_struct("DeferredQueue")
            .field("pending", &st.pending.len())
            .field("waiting", &st.waiting.len())
            .field("size", &st.size)
            .field("backlog", &st.backlog)
            .finish()
    }
}

/// [`DeferredQueue::put`] found the queue full; the value is handed back.
pub struct QueueOverflow<T> {
    /// The value that was not queued.
    pub item: T,
}

impl<T> QueueOverflow<T> {
    /// The value that was not queued.
    pub fn into_inner(self) -> T {
        self.item
    }
}

impl<T> fmt::Debug for QueueOverflow<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueueOverflow").finish_non_exhaustive()
    }
}

impl<T> fmt::Display for QueueOverflow<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("QueueOverflow: the DeferredQueue is full")
    }
}

impl<T> Error for QueueOverflow<T> {}

/// [`DeferredQueue::get`] found the queue empty and its backlog of waiting
/// `get`s full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueUnderflow;

impl fmt::Display for QueueUnderflow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("QueueUnderflow: too many gets wait on the DeferredQueue")
    }
}

impl Error for QueueUnderflow {}
