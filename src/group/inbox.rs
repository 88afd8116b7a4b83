//! Messages to a protocol on another thread: an [`Inbox`] on the
//! receiver's reactor, and the `Send` [`InboxSender`]s other threads write
//! to.
//!
//! The queue is a bounded `VecDeque` behind a mutex; the receiving side is
//! a future on the receiver's thread (its `async-executor`), woken through
//! a `futures` `AtomicWaker` when the queue goes from empty to not empty,
//! and it takes every queued message at each wake. So a burst costs one
//! wake-up of the receiving reactor, not one per message.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use futures::task::AtomicWaker;

/// Why [`InboxSender::send`] did not deliver; the message comes back.
#[derive(PartialEq, Eq)]
pub enum SendError<T> {
    /// The inbox holds as many messages as its capacity: the receiver is
    /// behind. Drop the message (and count it), retry later, or give up on
    /// the receiver: the inbox never grows past its capacity.
    Full(T),
    /// The inbox was closed or dropped (its connection is gone, or its
    /// reactor stopped): no message will be delivered again.
    Closed(T),
}

impl<T> SendError<T> {
    /// The message that was not delivered.
    pub fn into_inner(self) -> T {
        match self {
            SendError::Full(message) | SendError::Closed(message) => message,
        }
    }

    /// Whether the inbox was full (rather than closed).
    pub fn is_full(&self) -> bool {
        matches!(self, SendError::Full(_))
    }
}

impl<T> fmt::Debug for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Full(_) => f.write_str("Full(..)"),
            SendError::Closed(_) => f.write_str("Closed(..)"),
        }
    }
}

impl<T> fmt::Display for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Full(_) => f.write_str("the inbox is full"),
            SendError::Closed(_) => f.write_str("the inbox is closed"),
        }
    }
}

impl<T> std::error::Error for SendError<T> {}

struct Shared<T> {
    queue: Mutex<VecDeque<T>>,
    /// Messages the receiver took from the queue and has not handled yet:
    /// they count against the capacity too.
    taken: AtomicUsize,
    capacity: usize,
    closed: AtomicBool,
    waker: AtomicWaker,
    /// Messages refused because the inbox was full.
    refused: AtomicU64,
}

impl<T> Shared<T> {
    /// Refuses further messages and drops the queued ones (outside the
    /// lock: dropping a message may run any code).
    fn close(&self) {
        let dropped = {
            let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
            self.closed.store(true, Ordering::Release);
            std::mem::take(&mut *queue)
        };
        drop(dropped);
        self.waker.wake();
    }
}

/// Messages handled in one go at most: the rest wait for the next turn of
/// the reactor, so a full inbox does not hold up its connections' I/O.
const BATCH: usize = 256;

/// The receiving end of a bounded message queue between threads: messages
/// sent from any thread through an [`InboxSender`] are handed, in the
/// order they were sent, to a handler that runs on the thread that made
/// the inbox (a reactor's thread), where it may touch protocols and
/// transports. It is how a protocol on one worker of a
/// [`ReactorGroup`](super::ReactorGroup) hears from the others, with no
/// lock around any protocol.
///
/// Memory is bounded: the inbox holds at most `capacity` messages not yet
/// handled, and [`send`](InboxSender::send) on a full one gives the message
/// back ([`SendError::Full`]). Dropping the inbox (or
/// [`close`](Self::close)) ends it: messages not yet handled are dropped,
/// and later sends fail with [`SendError::Closed`]. So does the stop of
/// its reactor.
///
/// A panic in the handler is logged and the next message is handled.
///
/// # Examples
///
/// A worker's thread sends to the main reactor:
///
/// ```
/// use std::cell::RefCell;
/// use std::rc::Rc;
/// use twill::group::Inbox;
/// use twill::Reactor;
///
/// let reactor = Reactor::new()?;
/// let seen = Rc::new(RefCell::new(Vec::new()));
/// let log = seen.clone();
/// let inbox = Inbox::new(16, move |n: u32| {
///     log.borrow_mut().push(n);
///     if n == 3 {
///         twill::stop();
///     }
/// });
/// let sender = inbox.sender();
/// std::thread::spawn(move || {
///     for n in 1..=3 {
///         sender.send(n).unwrap();
///     }
/// });
/// reactor.run()?;
/// assert_eq!(*seen.borrow(), [1, 2, 3]);
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct Inbox<T> {
    shared: Arc<Shared<T>>,
}

impl<T: Send + 'static> Inbox<T> {
    /// An inbox holding at most `capacity` messages (at least 1), whose
    /// messages go to `handler` on this thread's reactor, once it runs.
    ///
    /// # Panics
    ///
    /// This thread has no reactor: nothing would ever take the messages.
    pub fn new(capacity: usize, handler: impl FnMut(T) + 'static) -> Inbox<T> {
        assert!(
            crate::reactor::Reactor::current().is_some(),
            "an Inbox needs a reactor on its thread to deliver its messages"
        );
        let shared = Arc::new(Shared {
            queue: Mutex::new(VecDeque::new()),
            taken: AtomicUsize::new(0),
            capacity: capacity.max(1),
            closed: AtomicBool::new(false),
            waker: AtomicWaker::new(),
            refused: AtomicU64::new(0),
        });
        let delivery = Delivery {
            shared: shared.clone(),
            handler: Box::new(handler),
            batch: VecDeque::new(),
        };
        crate::executor::spawn(delivery).detach();
        Inbox { shared }
    }
}

impl<T> Inbox<T> {
    /// A handle other threads send to; clone it freely.
    pub fn sender(&self) -> InboxSender<T> {
        InboxSender {
            shared: self.shared.clone(),
        }
    }

    /// Stops taking messages: the ones not yet handled are dropped, and
    /// senders get [`SendError::Closed`]. Dropping the inbox does the same.
    pub fn close(&self) {
        self.shared.close();
    }

    /// How many messages senders were refused because the inbox was full.
    pub fn refused(&self) -> u64 {
        self.shared.refused.load(Ordering::Relaxed)
    }
}

impl<T> Drop for Inbox<T> {
    fn drop(&mut self) {
        self.shared.close();
    }
}

impl<T> fmt::Debug for Inbox<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inbox")
            .field("capacity", &self.shared.capacity)
            .field("closed", &self.shared.closed.load(Ordering::Relaxed))
            .field("refused", &self.refused())
            .finish()
    }
}

/// Sends messages to an [`Inbox`] from any thread: `Send`, `Sync` and
/// cheap to clone.
pub struct InboxSender<T> {
    shared: Arc<Shared<T>>,
}

impl<T> InboxSender<T> {
    /// Queues `message` for the inbox's handler. Never blocks.
    ///
    /// # Errors
    ///
    /// [`SendError::Full`] when the inbox holds its capacity of messages
    /// (the message comes back, and the inbox counts it as refused);
    /// [`SendError::Closed`] once the inbox is closed.
    pub fn send(&self, message: T) -> Result<(), SendError<T>> {
        let was_empty = {
            let mut queue = self
                .shared
                .queue
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if self.shared.closed.load(Ordering::Acquire) {
                return Err(SendError::Closed(message));
            }
            if queue.len() + self.shared.taken.load(Ordering::Acquire) >= self.shared.capacity {
                self.shared.refused.fetch_add(1, Ordering::Relaxed);
                return Err(SendError::Full(message));
            }
            queue.push_back(message);
            queue.len() == 1
        };
        // The receiver takes the whole queue at each wake: only the first
        // message after that needs to wake it again.
        if was_empty {
            self.shared.waker.wake();
        }
        Ok(())
    }

    /// Whether the inbox is closed: sends will fail.
    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::Acquire)
    }

    /// Whether both senders reach the same inbox.
    pub fn same_inbox(&self, other: &InboxSender<T>) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }
}

impl<T> Clone for InboxSender<T> {
    fn clone(&self) -> Self {
        InboxSender {
            shared: self.shared.clone(),
        }
    }
}

impl<T> fmt::Debug for InboxSender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InboxSender")
            .field("closed", &self.is_closed())
            .finish()
    }
}

/// The receiving future, on the inbox's thread.
struct Delivery<T> {
    shared: Arc<Shared<T>>,
    handler: Box<dyn FnMut(T)>,
    /// The messages taken at the last wake and not yet handled.
    batch: VecDeque<T>,
}

// Nothing in it is pinned: the messages are moved in and out freely.
impl<T> Unpin for Delivery<T> {}

impl<T> Future for Delivery<T> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let mut handled = 0;
        loop {
            if this.shared.closed.load(Ordering::Acquire) {
                return Poll::Ready(());
            }
            if handled == BATCH {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            if let Some(message) = this.batch.pop_front() {
                handled += 1;
                this.shared.taken.fetch_sub(1, Ordering::Release);
                let handler = &mut this.handler;
                if let Err(panic) = catch_unwind(AssertUnwindSafe(|| handler(message))) {
                    log::error!(
                        "panic in an inbox's handler: {}",
                        crate::panic_message(&*panic)
                    );
                }
                continue;
            }
            this.shared.waker.register(cx.waker());
            let mut queue = this
                .shared
                .queue
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if queue.is_empty() {
                return Poll::Pending;
            }
            // Swap, so the queue keeps an allocation for the senders.
            std::mem::swap(&mut *queue, &mut this.batch);
            this.shared.taken.store(this.batch.len(), Ordering::Release);
        }
    }
}

impl<T> Drop for Delivery<T> {
    /// The reactor's futures are dropped when it goes: the inbox is closed
    /// then, so senders hear it.
    fn drop(&mut self) {
        self.shared.close();
    }
}
