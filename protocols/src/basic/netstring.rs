//! Netstrings: [`NetstringDecoder`], [`NetstringEncoder`] and Twisted's
//! [`NetstringReceiver`].

use std::fmt;

use bytes::{Buf, Bytes, BytesMut};

use super::string_receiver::{
    string_receiver_wrapper, Framing, StringContext, StringProtocol, StringReceiver,
};
use crate::codec::{DecodeError, Decoder, EncodeError, Encoder};

/// Cuts D. J. Bernstein's netstrings, `<length>:<payload>,` (`b"5:hello,"`):
/// the framing of Twisted's `NetstringReceiver`, usable on its own in a
/// [`Framed`](crate::codec::Framed).
///
/// The length is `0` or decimal digits without a leading zero, sign or
/// space, at most `max_length`. It is checked as it arrives: a prefix that
/// cannot become valid (a non-digit, `0` followed by a digit, a value over
/// `max_length`) is an error at once, without waiting for the `:` (so a
/// huge digit string is never parsed). After the payload the next byte
/// must be `,` (that is how more data than announced is caught).
///
/// Every error is [`DecodeError::Corrupt`] and final, a too-long length
/// included (Twisted treats it as malformed too): there is no telling
/// where the next netstring starts, so the decoder then drops all further
/// input. Its messages are Twisted's.
///
/// # Examples
///
/// ```
/// use bytes::BytesMut;
/// use twill_protocols::basic::NetstringDecoder;
/// use twill_protocols::codec::Decoder;
///
/// let mut netstrings = NetstringDecoder::new(50);
/// let mut input = BytesMut::from(&b"4:1:a,,0:,3:ab"[..]);
/// assert_eq!(netstrings.decode(&mut input).unwrap().unwrap(), "1:a,");
/// assert_eq!(netstrings.decode(&mut input).unwrap().unwrap(), "");
/// assert_eq!(netstrings.decode(&mut input).unwrap(), None);
///
/// assert!(NetstringDecoder::new(50).decode(&mut BytesMut::from(&b"03:abc,"[..])).is_err());
/// assert!(NetstringDecoder::new(50).decode(&mut BytesMut::from(&b"51"[..])).is_err());
/// ```
#[derive(Debug, Clone)]
pub struct NetstringDecoder {
    max_length: usize,
    /// The announced length, once the `<length>:` prefix was read.
    payload: Option<usize>,
    /// After malformed input, everything is dropped.
    broken: bool,
}

const MISSING_LENGTH: &str = "The received netstring does not start with a length specification.";
const MISSING_COMMA: &str = "The received netstring is not terminated by a comma.";

impl NetstringDecoder {
    /// Netstrings of at most `max_length` bytes.
    pub fn new(max_length: usize) -> Self {
        NetstringDecoder {
            max_length,
            payload: None,
            broken: false,
        }
    }

    /// The longest netstring accepted.
    pub fn max_length(&self) -> usize {
        self.max_length
    }

    pub(crate) fn set_max_length(&mut self, max_length: usize) {
        self.max_length = max_length;
    }

    fn too_long(&self) -> DecodeError {
        DecodeError::Corrupt(format!(
            "The received netstring is longer than the maximum {} specified by MAX_LENGTH",
            self.max_length
        ))
    }

    /// Reads the `<length>:` prefix: `Ok(None)` if it is incomplete (but
    /// can still become valid).
    fn read_length(&self, src: &mut BytesMut) -> Result<Option<usize>, DecodeError> {
        let mut value: usize = 0;
        let mut colon = None;
        for (i, &byte) in src.iter().enumerate() {
            match byte {
                b':' if i > 0 => {
                    colon = Some(i);
                    break;
                }
                b'0'..=b'9' if i == 1 && src[0] == b'0' => {
                    return Err(DecodeError::Corrupt(MISSING_LENGTH.to_owned()));
                }
                b'0'..=b'9' => {
                    value = value
                        .checked_mul(10)
                        .and_then(|v| v.checked_add(usize::from(byte - b'0')))
                        .filter(|&v| v <= self.max_length)
                        .ok_or_else(|| self.too_long())?;
                }
                _ => return Err(DecodeError::Corrupt(MISSING_LENGTH.to_owned())),
            }
        }
        Ok(colon.map(|i| {
            src.advance(i + 1);
            value
        }))
    }

    fn decode_one(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, DecodeError> {
        let length = match self.payload {
            Some(length) => length,
            None => match self.read_length(src)? {
                Some(length) => {
                    self.payload = Some(length);
                    length
                }
                None => return Ok(None),
            },
        };
        if src.len() <= length {
            return Ok(None);
        }
        if src[length] != b',' {
            return Err(DecodeError::Corrupt(MISSING_COMMA.to_owned()));
        }
        self.payload = None;
        let string = src.split_to(length).freeze();
        src.advance(1);
        Ok(Some(string))
    }
}

impl Decoder for NetstringDecoder {
    type Item = Bytes;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, DecodeError> {
        if self.broken {
            src.clear();
            return Ok(None);
        }
        let decoded = self.decode_one(src);
        if decoded.is_err() {
            self.broken = true;
        }
        decoded
    }
}

/// Writes each message as a netstring, `<length>:<payload>,`: the sending
/// side of [`NetstringDecoder`] (Twisted's `NetstringReceiver.sendString`).
///
/// # Examples
///
/// ```
/// use bytes::BytesMut;
/// use twill_protocols::basic::NetstringEncoder;
/// use twill_protocols::codec::Encoder;
///
/// let mut out = BytesMut::new();
/// NetstringEncoder.encode("hello", &mut out).unwrap();
/// assert_eq!(out, "5:hello,");
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct NetstringEncoder;

impl<B: AsRef<[u8]>> Encoder<B> for NetstringEncoder {
    fn encode(&mut self, item: B, dst: &mut BytesMut) -> Result<(), EncodeError> {
        frame(item.as_ref(), dst);
        Ok(())
    }
}

/// Appends `string` as a netstring to `dst`.
pub(crate) fn frame(string: &[u8], dst: &mut BytesMut) {
    let length = string.len().to_string();
    dst.reserve(length.len() + string.len() + 2);
    dst.extend_from_slice(length.as_bytes());
    dst.extend_from_slice(b":");
    dst.extend_from_slice(string);
    dst.extend_from_slice(b",");
}

/// A [`StringReceiver`] speaking netstrings as a twill
/// [`Protocol`](twill::Protocol): Twisted's `NetstringReceiver`.
///
/// Input is cut with a [`NetstringDecoder`] (`MAX_LENGTH` 99999 by
/// default); each netstring goes to
/// [`string_received`](StringReceiver::string_received). Malformed input
/// (bad length, missing comma, length over `MAX_LENGTH`) closes the
/// connection with that [`DecodeError`] as
/// [`Reason::Failed`](twill::Reason::Failed) (Twisted closes cleanly and
/// sets `brokenPeer`; see [`is_broken_peer`](Self::is_broken_peer)), and
/// nothing after it is parsed.
/// [`send_string`](StringContext::send_string) writes
/// `<length>:<payload>,` and never fails.
///
/// Unlike Twisted's, it can pause ([`StringContext::pause_producing`]), and
/// delivery stops once the transport is closing.
///
/// # Examples
///
/// ```
/// use bytes::Bytes;
/// use twill::testing::StringTransport;
/// use twill::Protocol;
/// use twill_protocols::basic::{NetstringReceiver, StringContext, StringReceiver};
///
/// struct Echo;
///
/// impl StringReceiver for Echo {
///     fn string_received(&mut self, ctx: &StringContext, string: Bytes) {
///         ctx.send_string(string).unwrap();
///     }
/// }
///
/// let transport = StringTransport::new();
/// let mut protocol = NetstringReceiver::new(Echo);
/// protocol.connection_made(&transport.transport());
/// protocol.data_received(Bytes::from_static(b"5:hello,1"));
/// protocol.data_received(Bytes::from_static(b":a,"));
/// assert_eq!(transport.value(), b"5:hello,1:a,");
///
/// protocol.data_received(Bytes::from_static(b"2:aaa,")); // more than announced
/// assert!(transport.disconnecting());
/// assert!(protocol.is_broken_peer());
/// ```
pub struct NetstringReceiver<R: StringReceiver> {
    inner: StringProtocol<R>,
}

impl<R: StringReceiver> NetstringReceiver<R> {
    /// Wraps `receiver`, with its type's
    /// [`MAX_LENGTH`](StringReceiver::MAX_LENGTH).
    pub fn new(receiver: R) -> Self {
        let decoder = NetstringDecoder::new(R::MAX_LENGTH);
        NetstringReceiver {
            inner: StringProtocol::new(Framing::Netstring(decoder), receiver),
        }
    }

    /// Whether the peer sent malformed input (Twisted's `brokenPeer`).
    pub fn is_broken_peer(&self) -> bool {
        self.inner.is_broken()
    }
}

string_receiver_wrapper!(NetstringReceiver<R>);

impl<R: StringReceiver> fmt::Debug for NetstringReceiver<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NetstringReceiver")
            .field("inner", &self.inner)
            .finish()
    }
}
