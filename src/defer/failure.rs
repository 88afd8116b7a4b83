//! [`Failure`] and the errors Deferreds report.

use std::backtrace::Backtrace;
use std::error::Error;
use std::fmt;
use std::time::Duration;

/// An error travelling down a Deferred's error path: Twisted's `Failure`.
///
/// It wraps any error (`Box<dyn Error + Send + Sync>`); `?` converts any
/// `std::error::Error` into one. Its `Display` prints the error and its
/// cause chain (`outer: inner: root`). With `RUST_BACKTRACE=1` it also keeps
/// the backtrace of where it was made.
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
/// // trap: recover from one kind of error, pass the others on.
/// let other = Failure::new("something else");
/// assert!(other.trap::<io::Error>().is_err());
/// ```
pub struct Failure {
    // One pointer wide, so results that may hold a failure stay small on
    // the success path.
    inner: Box<Inner>,
}

struct Inner {
    error: Box<dyn Error + Send + Sync + 'static>,
    backtrace: Backtrace,
}

impl Failure {
    /// Wraps an error, or a message (`&str`, `String`).
    pub fn new(error: impl Into<Box<dyn Error + Send + Sync + 'static>>) -> Failure {
        Failure {
            inner: Box::new(Inner {
                error: error.into(),
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

    /// Takes the error out as an `E`, or gives the failure back unchanged
    /// (Twisted's `trap`: in an errback, `let e = failure.trap::<E>()?;`
    /// handles `E` and passes every other failure on).
    ///
    /// # Errors
    ///
    /// The failure itself, when its error is not an `E`.
    pub fn trap<E: Error + 'static>(self) -> Result<Box<E>, Failure> {
        let Inner { error, backtrace } = *self.inner;
        error.downcast::<E>().map_err(|error| Failure {
            inner: Box::new(Inner { error, backtrace }),
        })
    }

    /// The wrapped error.
    pub fn error(&self) -> &(dyn Error + Send + Sync + 'static) {
        &*self.inner.error
    }

    /// Unwraps the error.
    pub fn into_error(self) -> Box<dyn Error + Send + Sync + 'static> {
        self.inner.error
    }

    /// Where the failure was made (captured when `RUST_BACKTRACE` or
    /// `RUST_LIB_BACKTRACE` enables it).
    pub fn backtrace(&self) -> &Backtrace {
        &self.inner.backtrace
    }

    pub(crate) fn from_panic(payload: &(dyn std::any::Any + Send)) -> Failure {
        Failure::new(crate::Panicked {
            callback: "a Deferred callback",
            message: crate::panic_message(payload),
        })
    }
}

impl<E: Error + Send + Sync + 'static> From<E> for Failure {
    fn from(error: E) -> Failure {
        Failure::new(error)
    }
}

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

impl fmt::Debug for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Failure")
            .field("error", &self.inner.error)
            .finish()
    }
}

/// A Deferred was fired a second time (Twisted's `AlreadyCalledError`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlreadyCalledError;

impl fmt::Display for AlreadyCalledError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AlreadyCalledError: the Deferred was already fired")
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
