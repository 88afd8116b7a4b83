//! [`HttpError`]: why a request was refused, with the status to answer.

use std::error::Error;
use std::fmt;

use http::StatusCode;

use crate::codec::{DecodeError, EncodeError};

/// Why the HTTP codec refused a message, with the status code a server
/// answers with before it closes the connection (`400`, `413`, `414`,
/// `431`, `501`, `505`).
///
/// The decoders hand it out inside [`DecodeError::Other`]; after one the
/// connection's input cannot be trusted (the decoder is poisoned and
/// returns the same error again). [`HttpError::from_decode_error`] gets it
/// back out. The encoder hands it out inside [`EncodeError::Other`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpError {
    status: StatusCode,
    reason: String,
}

impl HttpError {
    /// An error answered with `status`.
    pub fn new(status: StatusCode, reason: impl Into<String>) -> Self {
        HttpError {
            status,
            reason: reason.into(),
        }
    }

    pub(crate) fn bad_request(reason: impl Into<String>) -> Self {
        HttpError::new(StatusCode::BAD_REQUEST, reason)
    }

    /// The status code to answer with.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// What was wrong, for logs (not meant for the peer).
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// The `HttpError` inside a decoder's error, if it is one.
    pub fn from_decode_error(error: &DecodeError) -> Option<&HttpError> {
        match error {
            DecodeError::Other(inner) => inner.downcast_ref(),
            _ => None,
        }
    }

    /// The `HttpError` inside an encoder's error, if it is one.
    pub fn from_encode_error(error: &EncodeError) -> Option<&HttpError> {
        match error {
            EncodeError::Other(inner) => inner.downcast_ref(),
            _ => None,
        }
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HTTP {}: {}", self.status.as_u16(), self.reason)
    }
}

impl Error for HttpError {}

impl From<HttpError> for DecodeError {
    fn from(err: HttpError) -> Self {
        DecodeError::Other(Box::new(err))
    }
}

impl From<HttpError> for EncodeError {
    fn from(err: HttpError) -> Self {
        EncodeError::Other(Box::new(err))
    }
}
