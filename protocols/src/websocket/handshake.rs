//! The opening handshake's helpers (RFC 6455 section 4): the
//! `Sec-WebSocket-Key`/`Sec-WebSocket-Accept` pair and the check of a
//! client's upgrade request headers.

use std::error::Error;
use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use sha1::{Digest, Sha1};

use super::frame::KeyGenerator;

/// The GUID the RFC appends to the client's key before hashing.
const ACCEPT_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The protocol version this module speaks (`Sec-WebSocket-Version`).
pub const WEBSOCKET_VERSION: &str = "13";

/// The `Sec-WebSocket-Accept` value answering a client's
/// `Sec-WebSocket-Key`: base64 of the SHA-1 of the key followed by the
/// RFC's GUID.
///
/// ```
/// use twill_protocols::websocket::accept_key;
///
/// assert_eq!(accept_key("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
/// ```
pub fn accept_key(key: &str) -> String {
    let mut sha1 = Sha1::new();
    sha1.update(key.trim().as_bytes());
    sha1.update(ACCEPT_GUID.as_bytes());
    STANDARD.encode(sha1.finalize())
}

/// Whether `key` is a valid `Sec-WebSocket-Key`: the base64 of 16 bytes
/// (24 characters with padding). Surrounding whitespace, which HTTP allows
/// around header values, is ignored.
pub fn is_valid_key(key: &str) -> bool {
    let key = key.trim();
    key.len() == 24 && STANDARD.decode(key).is_ok_and(|bytes| bytes.len() == 16)
}

/// A fresh random `Sec-WebSocket-Key` for a client's request.
pub fn generate_key() -> String {
    let mut keys = KeyGenerator::new();
    let mut nonce = [0u8; 16];
    nonce[..8].copy_from_slice(&keys.next_u64().to_ne_bytes());
    nonce[8..].copy_from_slice(&keys.next_u64().to_ne_bytes());
    STANDARD.encode(nonce)
}

/// Why a client's upgrade request is refused; see [`check_request`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HandshakeError {
    /// No `Upgrade` header naming `websocket`.
    NotAnUpgrade,
    /// No `Connection` header with the `Upgrade` token.
    NoConnectionUpgrade,
    /// `Sec-WebSocket-Version` is missing or not 13: answer
    /// `426 Upgrade Required` with `Sec-WebSocket-Version: 13`.
    UnsupportedVersion,
    /// `Sec-WebSocket-Key` is missing, repeated or not the base64 of 16
    /// bytes.
    BadKey,
    /// The server's `Sec-WebSocket-Accept` is missing, repeated or does not
    /// answer the client's key.
    BadAccept,
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HandshakeError::NotAnUpgrade => "no `Upgrade: websocket` header",
            HandshakeError::NoConnectionUpgrade => "no `Connection: Upgrade` header",
            HandshakeError::UnsupportedVersion => "Sec-WebSocket-Version is not 13",
            HandshakeError::BadKey => "Sec-WebSocket-Key is missing or invalid",
            HandshakeError::BadAccept => "Sec-WebSocket-Accept does not answer the key",
        })
    }
}

impl Error for HandshakeError {}

/// Whether the comma-separated header value `list` holds `token`, compared
/// ignoring ASCII case (`Connection: keep-alive, Upgrade`).
fn has_token(list: &str, token: &str) -> bool {
    list.split(',')
        .any(|item| item.trim().eq_ignore_ascii_case(token))
}

/// Checks the headers of a client's opening handshake (a `GET` request;
/// the method and the request line are the HTTP layer's to check) and
/// returns the `Sec-WebSocket-Accept` value for the `101 Switching
/// Protocols` response. Header names are compared ignoring ASCII case;
/// `Upgrade` and `Connection` may be lists, and may be repeated.
///
/// # Errors
///
/// The first of these that fails: `Upgrade` names `websocket`,
/// `Connection` names `Upgrade`, `Sec-WebSocket-Version` is `13`, and
/// there is exactly one valid `Sec-WebSocket-Key`.
///
/// ```
/// use twill_protocols::websocket::check_request;
///
/// let headers = [
///     ("Host", "server.example.com"),
///     ("Upgrade", "websocket"),
///     ("Connection", "Upgrade"),
///     ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
///     ("Origin", "http://example.com"),
///     ("Sec-WebSocket-Version", "13"),
/// ];
/// assert_eq!(check_request(&headers)?, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
/// # Ok::<(), twill_protocols::websocket::HandshakeError>(())
/// ```
pub fn check_request<N, V>(headers: &[(N, V)]) -> Result<String, HandshakeError>
where
    N: AsRef<str>,
    V: AsRef<str>,
{
    check_upgrade(headers)?;
    if !header_values(headers, "sec-websocket-version").any(|v| v.trim() == WEBSOCKET_VERSION) {
        return Err(HandshakeError::UnsupportedVersion);
    }
    let mut keys = header_values(headers, "sec-websocket-key");
    match (keys.next(), keys.next()) {
        (Some(key), None) if is_valid_key(key) => Ok(accept_key(key)),
        _ => Err(HandshakeError::BadKey),
    }
}

/// The values of the headers named `name`, in any case.
fn header_values<'a, N, V>(headers: &'a [(N, V)], name: &'a str) -> impl Iterator<Item = &'a str>
where
    N: AsRef<str>,
    V: AsRef<str>,
{
    headers
        .iter()
        .filter(move |(n, _)| n.as_ref().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_ref())
}

/// `Upgrade` names `websocket` and `Connection` names `Upgrade`: what both
/// sides of the opening handshake check first.
fn check_upgrade<N, V>(headers: &[(N, V)]) -> Result<(), HandshakeError>
where
    N: AsRef<str>,
    V: AsRef<str>,
{
    if !header_values(headers, "upgrade").any(|v| has_token(v, "websocket")) {
        return Err(HandshakeError::NotAnUpgrade);
    }
    if !header_values(headers, "connection").any(|v| has_token(v, "upgrade")) {
        return Err(HandshakeError::NoConnectionUpgrade);
    }
    Ok(())
}

/// Checks the headers of a server's `101 Switching Protocols` response to
/// a client that sent `key` (the status line is the HTTP layer's to
/// check): `Upgrade` names `websocket`, `Connection` names `Upgrade`, and
/// there is exactly one `Sec-WebSocket-Accept`, equal to
/// [`accept_key(key)`](accept_key).
///
/// # Errors
///
/// The first check that fails.
///
/// ```
/// use twill_protocols::websocket::{accept_key, check_response, generate_key};
///
/// let key = generate_key();
/// let accept = accept_key(&key);
/// let headers = [
///     ("Upgrade", "websocket"),
///     ("Connection", "Upgrade"),
///     ("Sec-WebSocket-Accept", accept.as_str()),
/// ];
/// check_response(&headers, &key)?;
/// # Ok::<(), twill_protocols::websocket::HandshakeError>(())
/// ```
pub fn check_response<N, V>(headers: &[(N, V)], key: &str) -> Result<(), HandshakeError>
where
    N: AsRef<str>,
    V: AsRef<str>,
{
    check_upgrade(headers)?;
    let mut accepts = header_values(headers, "sec-websocket-accept");
    match (accepts.next(), accepts.next()) {
        (Some(accept), None) if accept.trim() == accept_key(key) => Ok(()),
        _ => Err(HandshakeError::BadAccept),
    }
}
