//! [`Failure`] and the errors Deferreds report.

use std::backtrace::Backtrace;
use std::error::Error;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// An error travelling down a Deferred's error path: Twisted's `Failure`.
///
/// It wraps any error; `?` converts any `std::error::Error` into one. Its
/// `Display` prints the error and its cause chain (`outer: inner: root`).
/// With `RUST_BACKTRACE=1` it also keeps the backtrace of where it was made.
///
/// A `Failure` is a shared handle: cloning it is cheap (one reference
/// count) and gives the *same* failure, so one failure can errback several
/// Deferreds, sit in a [`DeferredList`](super::DeferredList)'s results and
/// still be checked and trapped. Two failures are equal only when they are
/// the same failure ([`ptr_eq`](Self::ptr_eq)), as Twisted's compare by
/// identity. It is `Send` and `Sync`, so a thread can make one.
///
/// # Examples
///
/// ```
/// use std::io;
/// use twill::defer::Failure;
///
/// let failure = Failure::from(io::Error::new(io::ErrorKind::NotFound, "no such user"));
/// assert!(failure.check::<io::Error>());
/// assert_eq!(failure.downcast_ref::<io::Error>().unwrap().kind(), io::ErrorKind::NotFound);
/// assert_eq!(failure.to_string(), "no such user");
///
/// // trap: handle one kind of error, pass the others on, unchanged.
/// let other = Failure::new("something else");
/// let passed_on = other.trap::<io::Error>().unwrap_err();
/// assert!(passed_on.ptr_eq(&other));
/// ```
#[derive(Clone)]
pub struct Failure {
    inner: Arc<Inner>,
}

struct Inner {
    error: Box<dyn Error + Send + Sync + 'static>,
    /// The error's type, when the failure was made from a typed error.
    type_name: Option<&'static str>,
    backtrace: Backtrace,
}

impl Failure {
    /// Wraps an error, or a message (`&str`, `String`).
    pub fn new(error: impl Into<Box<dyn Error + Send + Sync + 'static>>) -> Failure {
        Failure::make(error.into(), None)
    }

    fn make(
        error: Box<dyn Error + Send + Sync + 'static>,
        type_name: Option<&'static str>,
    ) -> Failure {
        Failure {
            inner: Arc::new(Inner {
                error,
                type_name,
                backtrace: Backtrace::capture(),
            }),
        }
    }

    /// Whether the error is an `E` (Twisted's `check`).
    pub fn check<E: Error + 'static>(&self) -> bool {
        self.inner.error.is::<E>()
    }

    /// The error as an `E`, if it is one.
    pub fn downcast_ref<E: Error + 'static>(&self) -> Option<&E> {
        self.inner.error.downcast_ref::<E>()
    }

    /// The error as an `E`, or this failure to pass on (Twisted's `trap`:
    /// in an errback, `let e = failure.trap::<E>()?;` handles `E` and passes
    /// every other failure on, the very same one).
    ///
    /// # Errors
    ///
    /// A clone of this failure (the same failure), when its error is not
    /// an `E`.
    pub fn trap<E: Error + 'static>(&self) -> Result<&E, Failure> {
        self.downcast_ref::<E>().ok_or_else(|| self.clone())
    }

    /// The wrapped error.
    pub fn error(&self) -> &(dyn Error + Send + Sync + 'static) {
        &*self.inner.error
    }

    /// Whether `self` and `other` are the same failure (clones of one
    /// another), not merely equal-looking ones.
    pub fn ptr_eq(&self, other: &Failure) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// Where the failure was made (captured when `RUST_BACKTRACE` or
    /// `RUST_LIB_BACKTRACE` enables it).
    pub fn backtrace(&self) -> &Backtrace {
        &self.inner.backtrace
    }

    pub(crate) fn from_panic(payload: &(dyn std::any::Any + Send)) -> Failure {
        Failure::from_panic_in("a Deferred callback", payload)
    }

    /// A panic in `what` (named in the failure's text).
    pub(crate) fn from_panic_in(
        what: &'static str,
        payload: &(dyn std::any::Any + Send),
    ) -> Failure {
        Failure::from(crate::Panicked::from_payload(what, payload))
    }
}

impl<E: Error + Send + Sync + 'static> From<E> for Failure {
    fn from(error: E) -> Failure {
        Failure::make(Box::new(error), Some(std::any::type_name::<E>()))
    }
}

/// A failure as an `io::Error`, so `?` on an awaited Deferred works in
/// functions that return `io::Result`: the same kind and text if the
/// failure holds an `io::Error` (a refused connection, say), else `Other`
/// with the failure's text.
///
/// ```
/// use std::io;
/// use twill::defer::Failure;
///
/// let refused = Failure::from(io::Error::from(io::ErrorKind::ConnectionRefused));
/// assert_eq!(io::Error::from(refused).kind(), io::ErrorKind::ConnectionRefused);
/// assert_eq!(io::Error::from(Failure::new("no")).kind(), io::ErrorKind::Other);
/// ```
impl From<Failure> for std::io::Error {
    fn from(failure: Failure) -> std::io::Error {
        let kind = failure
            .downcast_ref::<std::io::Error>()
            .map_or(std::io::ErrorKind::Other, std::io::Error::kind);
        std::io::Error::new(kind, failure.to_string())
    }
}

impl PartialEq for Failure {
    /// Identity, as Twisted's: see [`ptr_eq`](Failure::ptr_eq).
    fn eq(&self, other: &Failure) -> bool {
        self.ptr_eq(other)
    }
}

impl Eq for Failure {}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.inner.error)?;
        let mut source = self.inner.error.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

/// As Twisted's `repr`: `<Failure TYPE: text>`, the error's type name
/// (without its path) when it is known.
impl fmt::Debug for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.inner.type_name {
            Some(name) => write!(f, "<Failure {}: {self}>", short_type_name(name)),
            None => write!(f, "<Failure {self}>"),
        }
    }
}

/// `a::b::Name<c::D>` → `Name<c::D>`.
fn short_type_name(name: &str) -> &str {
    let path = name.split('<').next().unwrap_or(name);
    match path.rfind("::") {
        Some(at) => &name[at + 2..],
        None => name,
    }
}

/// A Deferred was fired a second time (Twisted's `AlreadyCalledError`).
///
/// With [`set_debugging`](super::set_debugging) on, it says where the
/// Deferred was created (`C:`) and first fired (`I:`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AlreadyCalledError {
    pub(crate) debug: Option<String>,
}

impl fmt::Display for AlreadyCalledError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AlreadyCalledError: the Deferred was already fired")?;
        if let Some(debug) = &self.debug {
            write!(f, "\n{debug}")?;
        }
        Ok(())
    }
}

impl Error for AlreadyCalledError {}

/// The Deferred was cancelled (Twisted's `CancelledError`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CancelledError;

impl fmt::Display for CancelledError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the Deferred was cancelled")
    }
}

impl Error for CancelledError {}

/// [`Deferred::add_timeout`](super::Deferred::add_timeout) fired before
/// the result came (Twisted's `defer.TimeoutError`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeoutError {
    /// The timeout that passed.
    pub timeout: Duration,
}

impl fmt::Display for TimeoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the Deferred timed out after {:?}", self.timeout)
    }
}

impl Error for TimeoutError {}

/// [`Deferred::unpause`](super::Deferred::unpause) without a matching
/// `pause`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotPausedError;

impl fmt::Display for NotPausedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("unpause() without a matching pause()")
    }
}

impl Error for NotPausedError {}

/// A callback returned the very Deferred it was added to, which would wait
/// forever (Twisted only warns).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainedToItselfError;

impl fmt::Display for ChainedToItselfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a callback returned the Deferred it was attached to")
    }
}

impl Error for ChainedToItselfError {}

/// What a Deferred holds once its result went to an `await` that polled it
/// by reference (`(&mut d).await`, `futures::select!`): callbacks added to
/// it afterwards run on the error path with this failure, and polling it
/// again gives it. Twisted's Deferred goes on with `None` there; a
/// `Deferred<T>` has no `T` left to give.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PassedOnError;

impl fmt::Display for PassedOnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the Deferred's result was already taken (by an await, or result())")
    }
}

impl Error for PassedOnError {}
