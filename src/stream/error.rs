//! [`ReadError`]: why a [`StreamReader`](super::StreamReader) read did not
//! return what it was asked for.

use std::error::Error;
use std::fmt;
use std::io;

use bytes::Bytes;

/// Why a read of a [`StreamReader`](super::StreamReader) failed: asyncio's
/// `IncompleteReadError` and `LimitOverrunError`, or the connection's own
/// error.
///
/// It converts into an `io::Error` (`UnexpectedEof`, `InvalidData`, or the
/// connection's error), so `?` works in functions that return
/// `io::Result`.
///
/// ```
/// use std::io;
/// use twill::stream::ReadError;
///
/// let err = ReadError::LimitOverrun { consumed: 70_000, limit: 65_536 };
/// assert_eq!(io::Error::from(err).kind(), io::ErrorKind::InvalidData);
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum ReadError {
    /// The stream ended before the read could finish: before `expected`
    /// bytes ([`read_exact`](super::StreamReader::read_exact)) or before
    /// the delimiter ([`read_until`](super::StreamReader::read_until),
    /// where `expected` is `None`). `partial` holds what came, taken out
    /// of the reader. asyncio's `IncompleteReadError`.
    Incomplete {
        /// The bytes read before the end.
        partial: Bytes,
        /// How many bytes were asked for, if a count was.
        expected: Option<usize>,
    },
    /// The delimiter was not found within the reader's limit, or was found
    /// past it. Nothing was taken: the bytes stay in the reader, to read
    /// some other way (e.g. [`read`](super::StreamReader::read) them in
    /// pieces) or to skip. asyncio's `LimitOverrunError`.
    LimitOverrun {
        /// How many bytes to consume to get past the problem: up to the
        /// delimiter if it was found, else what is buffered.
        consumed: usize,
        /// The reader's [limit](super::StreamReader::set_limit).
        limit: usize,
    },
    /// The connection failed (reset, aborted, a TLS error...), or the read
    /// was asked for something impossible (an empty delimiter).
    Io(io::Error),
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Incomplete {
                partial,
                expected: Some(expected),
            } => write!(
                f,
                "stream ended after {} of {expected} expected bytes",
                partial.len()
            ),
            ReadError::Incomplete { partial, .. } => write!(
                f,
                "stream ended after {} bytes, before the delimiter",
                partial.len()
            ),
            ReadError::LimitOverrun { consumed, limit } => write!(
                f,
                "no delimiter within the limit of {limit} bytes ({consumed} bytes to consume)"
            ),
            ReadError::Io(err) => err.fmt(f),
        }
    }
}

impl Error for ReadError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            ReadError::Io(err) => Some(err),
            _ => None,
        }
    }
}

impl From<io::Error> for ReadError {
    fn from(err: io::Error) -> ReadError {
        ReadError::Io(err)
    }
}

impl From<ReadError> for io::Error {
    fn from(err: ReadError) -> io::Error {
        match err {
            ReadError::Io(err) => err,
            ReadError::Incomplete { .. } => io::Error::new(io::ErrorKind::UnexpectedEof, err),
            ReadError::LimitOverrun { .. } => io::Error::new(io::ErrorKind::InvalidData, err),
        }
    }
}
