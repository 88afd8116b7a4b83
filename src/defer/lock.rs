//! [`DeferredLock`] and [`DeferredSemaphore`]: Twisted's locks for
//! callbacks, on one thread.
//!
//! Acquiring gives a Deferred that fires when the lock (or a token) is held:
//! at once if it is free, else when a [`release`](DeferredLock::release)
//! hands it over, first come first served. Cancelling a waiting acquire
//! takes it out of the queue.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::error::Error;
use std::fmt;
use std::rc::Rc;

use super::{maybe_deferred, succeed, Deferred, Failure, IntoStep, Resolver};

/// A lock for callbacks: Twisted's `DeferredLock`.
///
/// [`acquire`](Self::acquire) returns a Deferred that fires with the lock
/// once it is held: at once if the lock is free, else when the holder
/// [`release`](Self::release)s it, in the order the acquires were made.
/// [`run`](Self::run) does all three steps around a function.
///
/// A `DeferredLock` is a cheap handle: its clones are the same lock. It
/// lives on one thread.
///
/// # Examples
///
/// ```
/// use std::{cell::RefCell, rc::Rc};
/// use twill::defer::{Deferred, DeferredLock, Failure};
///
/// let lock = DeferredLock::new();
/// let log = Rc::new(RefCell::new(Vec::new()));
/// let reply = Deferred::new();
/// let fire_reply = reply.resolver();
///
/// // The first job holds the lock until `reply` fires...
/// let (waiting, first) = (reply, log.clone());
/// let one = lock.run(move || {
///     first.borrow_mut().push("one starts");
///     waiting
/// });
/// // ...so the second waits for it.
/// let second = log.clone();
/// let two = lock.run(move || {
///     second.borrow_mut().push("two starts");
///     Ok::<_, Failure>(2)
/// });
/// assert_eq!(*log.borrow(), ["one starts"]);
/// assert!(lock.locked());
///
/// fire_reply.callback(1);
/// assert_eq!(*log.borrow(), ["one starts", "two starts"]);
/// assert_eq!(one.result().unwrap().unwrap(), 1);
/// assert_eq!(two.result().unwrap().unwrap(), 2);
/// assert!(!lock.locked());
/// ```
#[derive(Clone)]
pub struct DeferredLock {
    core: Shared<DeferredLock>,
}

impl DeferredLock {
    /// An unlocked lock.
    pub fn new() -> DeferredLock {
        DeferredLock {
            core: Core::shared(1),
        }
    }

    /// Whether someone holds the lock.
    pub fn locked(&self) -> bool {
        self.core.borrow().tokens == 0
    }

    /// How many acquires wait for the lock.
    pub fn waiting(&self) -> usize {
        self.core.borrow().waiting.len()
    }

    /// Takes the lock: the Deferred fires with the lock now if it is free,
    /// else when the acquires before this one have had it and released it.
    /// Cancelling it while it waits takes it out of the queue and fails it
    /// with [`CancelledError`](super::CancelledError); once it fired,
    /// cancelling does nothing (the lock is held: release it).
    pub fn acquire(&self) -> Deferred<DeferredLock> {
        acquire(&self.core, self)
    }

    /// Releases the lock: the first waiting acquire, if any, gets it now
    /// (its callbacks run before `release` returns), else it is unlocked.
    ///
    /// # Panics
    ///
    /// If the lock is not locked; see [`try_release`](Self::try_release).
    pub fn release(&self) {
        if let Err(err) = self.try_release() {
            panic!("DeferredLock::release: {err}");
        }
    }

    /// As [`release`](Self::release), or says the lock is not locked.
    ///
    /// # Errors
    ///
    /// [`NotAcquiredError`] if the lock is not locked.
    pub fn try_release(&self) -> Result<(), NotAcquiredError> {
        release(&self.core, self)
    }

    /// Acquires the lock, calls `f` as [`maybe_deferred`] does, and releases
    /// the lock when `f`'s result is there, value, failure or panic alike.
    /// The Deferred fires with `f`'s result. Cancelling it while it waits
    /// for the lock means `f` never runs; while `f`'s Deferred runs, it
    /// cancels that.
    pub fn run<U: 'static, R: IntoStep<U>>(&self, f: impl FnOnce() -> R + 'static) -> Deferred<U> {
        run(&self.core, self, f)
    }
}

impl Default for DeferredLock {
    fn default() -> Self {
        DeferredLock::new()
    }
}

impl fmt::Debug for DeferredLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeferredLock")
            .field("locked", &self.locked())
            .field("waiting", &self.waiting())
            .finish()
    }
}

/// A semaphore for callbacks: Twisted's `DeferredSemaphore`. Up to
/// [`limit`](Self::limit) holders at once; the others wait, first come
/// first served.
///
/// The rules are [`DeferredLock`]'s, with a number of tokens instead of one
/// lock. A `DeferredSemaphore` is a cheap handle: its clones are the same
/// semaphore. It lives on one thread.
///
/// # Examples
///
/// At most two jobs at a time:
///
/// ```
/// use twill::defer::{Deferred, DeferredSemaphore};
///
/// let semaphore = DeferredSemaphore::new(2)?;
/// let mut replies = Vec::new();
/// let jobs: Vec<Deferred<u32>> = (0..3)
///     .map(|_| {
///         let reply = Deferred::new();
///         replies.push(reply.resolver());
///         semaphore.run(move || reply)
///     })
///     .collect();
/// assert_eq!((semaphore.tokens(), semaphore.waiting()), (0, 1));
///
/// replies[1].callback(1); // the third job starts
/// assert_eq!((semaphore.tokens(), semaphore.waiting()), (0, 0));
/// replies[0].callback(0);
/// replies[2].callback(2);
/// assert_eq!(semaphore.tokens(), semaphore.limit());
/// assert_eq!(jobs[2].result().unwrap().unwrap(), 2);
/// # Ok::<(), twill::defer::ZeroTokensError>(())
/// ```
#[derive(Clone)]
pub struct DeferredSemaphore {
    core: Shared<DeferredSemaphore>,
}

impl DeferredSemaphore {
    /// A semaphore with `tokens` tokens, all free.
    ///
    /// # Errors
    ///
    /// [`ZeroTokensError`] if `tokens` is 0 (Twisted's `ValueError`).
    pub fn new(tokens: usize) -> Result<DeferredSemaphore, ZeroTokensError> {
        if tokens == 0 {
            return Err(ZeroTokensError);
        }
        Ok(DeferredSemaphore {
            core: Core::shared(tokens),
        })
    }

    /// How many tokens are free now.
    pub fn tokens(&self) -> usize {
        self.core.borrow().tokens
    }

    /// How many tokens there are in all.
    pub fn limit(&self) -> usize {
        self.core.borrow().limit
    }

    /// How many acquires wait for a token.
    pub fn waiting(&self) -> usize {
        self.core.borrow().waiting.len()
    }

    /// Takes a token: as [`DeferredLock::acquire`].
    pub fn acquire(&self) -> Deferred<DeferredSemaphore> {
        acquire(&self.core, self)
    }

    /// Gives a token back, to the first waiting acquire if any: as
    /// [`DeferredLock::release`].
    ///
    /// # Panics
    ///
    /// If every token is free; see [`try_release`](Self::try_release).
    pub fn release(&self) {
        if let Err(err) = self.try_release() {
            panic!("DeferredSemaphore::release: {err}");
        }
    }

    /// As [`release`](Self::release), or says no token is held.
    ///
    /// # Errors
    ///
    /// [`NotAcquiredError`] if every token is free.
    pub fn try_release(&self) -> Result<(), NotAcquiredError> {
        release(&self.core, self)
    }

    /// Runs `f` holding a token: as [`DeferredLock::run`].
    pub fn run<U: 'static, R: IntoStep<U>>(&self, f: impl FnOnce() -> R + 'static) -> Deferred<U> {
        run(&self.core, self, f)
    }
}

impl fmt::Debug for DeferredSemaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeferredSemaphore")
            .field("tokens", &self.tokens())
            .field("limit", &self.limit())
            .field("waiting", &self.waiting())
            .finish()
    }
}

/// A [`DeferredLock`] or [`DeferredSemaphore`] was released more times than
/// it was acquired (Twisted asserts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotAcquiredError;

impl fmt::Display for NotAcquiredError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("release() without a matching acquire()")
    }
}

impl Error for NotAcquiredError {}

/// [`DeferredSemaphore::new`] was given no tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ZeroTokensError;

impl fmt::Display for ZeroTokensError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a DeferredSemaphore needs at least one token")
    }
}

impl Error for ZeroTokensError {}

/// The state both handles share; `H` is the handle waiters get.
struct Core<H: 'static> {
    tokens: usize,
    limit: usize,
    waiting: VecDeque<(u64, Resolver<H>)>,
    next_id: u64,
}

type Shared<H> = Rc<RefCell<Core<H>>>;

impl<H: 'static> Core<H> {
    fn shared(tokens: usize) -> Shared<H> {
        Rc::new(RefCell::new(Core {
            tokens,
            limit: tokens,
            waiting: VecDeque::new(),
            next_id: 0,
        }))
    }
}

fn acquire<H: Clone + 'static>(core: &Shared<H>, handle: &H) -> Deferred<H> {
    let mut st = core.borrow_mut();
    if st.tokens > 0 {
        st.tokens -= 1;
        drop(st);
        return succeed(handle.clone());
    }
    let id = st.next_id;
    st.next_id += 1;
    let weak = Rc::downgrade(core);
    let waiter = Deferred::with_canceller(move |_| {
        if let Some(core) = weak.upgrade() {
            let mut st = core.borrow_mut();
            let gone = st.waiting.iter().position(|(w, _)| *w == id);
            let removed = gone.and_then(|at| st.waiting.remove(at));
            drop(st);
            drop(removed);
        }
        // Still unfired: the chain fails it with CancelledError.
    });
    st.waiting.push_back((id, waiter.resolver()));
    waiter
}

fn release<H: Clone + 'static>(core: &Shared<H>, handle: &H) -> Result<(), NotAcquiredError> {
    loop {
        let waiter = {
            let mut st = core.borrow_mut();
            if st.tokens >= st.limit {
                return Err(NotAcquiredError);
            }
            match st.waiting.pop_front() {
                Some((_, waiter)) => waiter,
                None => {
                    st.tokens += 1;
                    return Ok(());
                }
            }
        };
        // A waiter someone else fired does not take the token.
        if !waiter.called() {
            waiter.callback(handle.clone());
            return Ok(());
        }
    }
}

fn run<H: Clone + 'static, U: 'static, R: IntoStep<U>>(
    core: &Shared<H>,
    handle: &H,
    f: impl FnOnce() -> R + 'static,
) -> Deferred<U> {
    let (core_, handle_) = (core.clone(), handle.clone());
    acquire(core, handle).then(move |_held: H| {
        let d = maybe_deferred(f);
        d.add_both(move |result: Result<U, Failure>| {
            if let Err(err) = release(&core_, &handle_) {
                if let Err(failure) = &result {
                    log::error!("the function run under a lock failed: {failure}");
                }
                return Err(Failure::new(err));
            }
            result
        });
        d
    })
}
