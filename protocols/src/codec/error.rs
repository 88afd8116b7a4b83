//! The errors of decoders and encoders.

use std::error::Error;
use std::fmt;

/// Why input could not be decoded. Delivered to the handler's
/// [`exception_caught`](super::Handler::exception_caught).
#[derive(Debug)]
#[non_exhaustive]
pub enum DecodeError {
    /// A frame is longer than the decoder allows. The decoder has skipped
    /// it (or is skipping it), so decoding can go on after this error.
    TooLongFrame {
        /// The frame's length, or how much of it was seen when the decoder
        /// gave up (`fail_fast`).
        length: u64,
        /// The maximum the decoder allows.
        max: usize,
    },
    /// The input breaks the format (e.g. a negative or non-numeric length);
    /// there is no way to find the next frame.
    Corrupt(String),
    /// A frame is not valid UTF-8.
    Utf8(std::str::Utf8Error),
    /// The peer closed its side with these many bytes of an unfinished
    /// frame left.
    Truncated {
        /// The leftover bytes.
        remaining: usize,
    },
    /// A user decoder's own error.
    Other(Box<dyn Error + Send + Sync>),
    /// The connection failed while a [`FramedRead`](super::FramedRead)
    /// read it (reset, aborted, a TLS error).
    Io(std::io::Error),
}

impl DecodeError {
    /// Whether decoding can go on after this error: only a too-long frame,
    /// which the decoder skipped. After any other error the connection's
    /// input cannot be trusted.
    pub fn is_recoverable(&self) -> bool {
        matches!(self, DecodeError::TooLongFrame { .. })
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::TooLongFrame { length, max } => {
                write!(
                    f,
                    "frame length ({length}) exceeds the allowed maximum ({max})"
                )
            }
            DecodeError::Corrupt(why) => write!(f, "corrupt input: {why}"),
            DecodeError::Utf8(err) => write!(f, "frame is not valid UTF-8: {err}"),
            DecodeError::Truncated { remaining } => {
                write!(
                    f,
                    "connection closed with {remaining} bytes of an unfinished frame"
                )
            }
            DecodeError::Other(err) => err.fmt(f),
            DecodeError::Io(err) => write!(f, "reading failed: {err}"),
        }
    }
}

impl Error for DecodeError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            DecodeError::Utf8(err) => Some(err),
            DecodeError::Other(err) => Some(&**err),
            DecodeError::Io(err) => Some(err),
            _ => None,
        }
    }
}

impl From<std::io::Error> for DecodeError {
    fn from(err: std::io::Error) -> Self {
        DecodeError::Io(err)
    }
}

impl From<std::str::Utf8Error> for DecodeError {
    fn from(err: std::str::Utf8Error) -> Self {
        DecodeError::Utf8(err)
    }
}

/// Why a message could not be encoded.
#[derive(Debug)]
#[non_exhaustive]
pub enum EncodeError {
    /// The message is too long for the format (e.g. for its length field).
    TooLong {
        /// The message's length.
        length: usize,
        /// The most the format can carry.
        max: usize,
    },
    /// A user encoder's own error.
    Other(Box<dyn Error + Send + Sync>),
    /// The connection is closing or closed: a [`FramedWrite`](super::FramedWrite)
    /// cannot send.
    Io(std::io::Error),
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EncodeError::TooLong { length, max } => {
                write!(
                    f,
                    "message of {length} bytes is longer than the maximum of {max}"
                )
            }
            EncodeError::Other(err) => err.fmt(f),
            EncodeError::Io(err) => write!(f, "writing failed: {err}"),
        }
    }
}

impl Error for EncodeError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            EncodeError::Other(err) => Some(&**err),
            EncodeError::Io(err) => Some(err),
            EncodeError::TooLong { .. } => None,
        }
    }
}

impl From<std::io::Error> for EncodeError {
    fn from(err: std::io::Error) -> Self {
        EncodeError::Io(err)
    }
}
