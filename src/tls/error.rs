//! Why a TLS connection failed or ended badly.

use std::error::Error;
use std::fmt;
use std::time::Duration;

/// Why a TLS connection failed: in [`Reason::Failed`](crate::Reason::Failed)
/// (a failed handshake, a protocol error, a handshake timeout) or inside
/// the `io::Error` of [`Reason::Lost`](crate::Reason::Lost) (the peer closed
/// without `close_notify`, [`TlsError::Truncated`]).
///
/// ```
/// use twill::tls::TlsError;
///
/// let truncated = TlsError::Truncated;
/// assert_eq!(
///     truncated.to_string(),
///     "the peer closed the connection without a TLS close_notify: the data may be truncated"
/// );
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum TlsError {
    /// The handshake failed: a bad or untrusted certificate, a name that
    /// does not match, no protocol or cipher in common, garbage. rustls's
    /// error says which; the peer was sent the matching alert.
    Handshake(rustls::Error),
    /// The peer sent something that is not TLS where a handshake was
    /// expected (plaintext to a TLS port, an HTTP request, say).
    NotTls,
    /// The handshake did not complete in time
    /// ([`TlsAcceptor::handshake_timeout`](super::TlsAcceptor::handshake_timeout)).
    HandshakeTimeout(Duration),
    /// After the handshake, the peer broke the protocol (a record that does
    /// not decrypt, an unexpected message).
    Protocol(rustls::Error),
    /// The peer closed the connection during the handshake.
    ClosedDuringHandshake,
    /// The peer closed the TCP connection without sending `close_notify`
    /// first: what it sent may have been cut short by an attacker or a
    /// crash. Reported in [`Reason::Lost`](crate::Reason::Lost), so it is
    /// never mistaken for a clean close.
    Truncated,
}

impl TlsError {
    /// The TLS error a connection ended with, if it ended with one: in
    /// [`Reason::Failed`](crate::Reason::Failed), or inside the
    /// `io::Error` of [`Reason::Lost`](crate::Reason::Lost).
    ///
    /// ```
    /// use std::io;
    /// use twill::{tls::TlsError, Reason};
    ///
    /// let cut = Reason::Lost(io::Error::new(io::ErrorKind::UnexpectedEof, TlsError::Truncated));
    /// assert!(matches!(TlsError::of(&cut), Some(TlsError::Truncated)));
    /// assert!(TlsError::of(&Reason::Done).is_none());
    /// ```
    pub fn of(reason: &crate::Reason) -> Option<&TlsError> {
        match reason {
            crate::Reason::Failed(err) => err.downcast_ref(),
            crate::Reason::Lost(err) => err.get_ref()?.downcast_ref(),
            _ => None,
        }
    }
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsError::Handshake(err) => write!(f, "TLS handshake failed: {err}"),
            TlsError::NotTls => f.write_str("TLS handshake failed: the peer does not speak TLS"),
            TlsError::HandshakeTimeout(after) => {
                write!(f, "TLS handshake did not complete within {after:?}")
            }
            TlsError::Protocol(err) => write!(f, "TLS protocol error: {err}"),
            TlsError::ClosedDuringHandshake => {
                f.write_str("the peer closed the connection during the TLS handshake")
            }
            TlsError::Truncated => f.write_str(
                "the peer closed the connection without a TLS close_notify: the data may be truncated",
            ),
        }
    }
}

impl Error for TlsError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            TlsError::Handshake(err) | TlsError::Protocol(err) => Some(err),
            _ => None,
        }
    }
}
