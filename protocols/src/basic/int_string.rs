//! Length-prefixed strings: [`IntNDecoder`], [`IntNEncoder`] and
//! Twisted's `Int32StringReceiver`, `Int16StringReceiver` and
//! `Int8StringReceiver` ([`IntNStringReceiver`]).

use std::fmt;

use bytes::{Buf, Bytes, BytesMut};

use super::string_receiver::{
    string_receiver_wrapper, Framing, StringContext, StringProtocol, StringReceiver,
};
use super::StringTooLongError;
use crate::codec::{DecodeError, Decoder, EncodeError, Encoder};

/// Cuts strings prefixed by their length, an unsigned big-endian integer of
/// 1, 2 or 4 bytes: the framing of Twisted's `Int8StringReceiver`,
/// `Int16StringReceiver` and `Int32StringReceiver` (struct formats `!B`,
/// `!H`, `!I`), usable on its own in a [`Framed`](crate::codec::Framed).
///
/// ```text
/// input:   | 00 00 00 04 u b a r | 00 00 00 00 | 00 00
/// strings: "ubar"                 ""            (waiting)
/// ```
///
/// A length above `max_length` is [`DecodeError::TooLongFrame`] as soon as
/// the prefix is read; the announced bytes are then skipped as they arrive
/// (never buffered), so decoding can go on after it. (Twisted's receiver
/// keeps them buffered and stops; its default, and
/// [`IntNStringReceiver`]'s, closes the connection anyway.) A zero length
/// is an empty string.
///
/// # Examples
///
/// ```
/// use bytes::BytesMut;
/// use twill_protocols::basic::IntNDecoder;
/// use twill_protocols::codec::Decoder;
///
/// let mut int16 = IntNDecoder::new(2, 50);
/// let mut input = BytesMut::from(&b"\x00\x04ubar\x00\x00\x00"[..]);
/// assert_eq!(int16.decode(&mut input).unwrap().unwrap(), "ubar");
/// assert_eq!(int16.decode(&mut input).unwrap().unwrap(), "");
/// assert_eq!(int16.decode(&mut input).unwrap(), None);
/// assert!(int16.decode(&mut BytesMut::from(&b"\x00\x33"[..])).is_err()); // 51 > 50
/// ```
#[derive(Debug, Clone)]
pub struct IntNDecoder {
    prefix_length: usize,
    max_length: usize,
    /// Bytes of a too-long string still to skip.
    skipping: u64,
}

impl IntNDecoder {
    /// Strings with a `prefix_length`-byte prefix (1, 2 or 4), at most
    /// `max_length` bytes.
    ///
    /// # Panics
    ///
    /// If `prefix_length` is not 1, 2 or 4.
    pub fn new(prefix_length: usize, max_length: usize) -> Self {
        check_prefix_length(prefix_length);
        IntNDecoder {
            prefix_length,
            max_length,
            skipping: 0,
        }
    }

    /// The length of the prefix, in bytes.
    pub fn prefix_length(&self) -> usize {
        self.prefix_length
    }

    /// The longest string accepted.
    pub fn max_length(&self) -> usize {
        self.max_length
    }

    pub(crate) fn set_max_length(&mut self, max_length: usize) {
        self.max_length = max_length;
    }
}

impl Decoder for IntNDecoder {
    type Item = Bytes;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, DecodeError> {
        if self.skipping > 0 {
            let skip = self.skipping.min(src.len() as u64);
            src.advance(skip as usize);
            self.skipping -= skip;
            if self.skipping > 0 {
                return Ok(None);
            }
        }
        let p = self.prefix_length;
        if src.len() < p {
            return Ok(None);
        }
        let length = src[..p]
            .iter()
            .fold(0u64, |acc, &byte| acc << 8 | u64::from(byte));
        if length > self.max_length as u64 {
            src.advance(p);
            self.skipping = length;
            return Err(DecodeError::TooLongFrame {
                length,
                max: self.max_length,
            });
        }
        let length = length as usize;
        if src.len() - p < length {
            return Ok(None);
        }
        src.advance(p);
        Ok(Some(src.split_to(length).freeze()))
    }
}

/// Prefixes each message with its length, an unsigned big-endian integer
/// of 1, 2 or 4 bytes: the sending side of [`IntNDecoder`] (Twisted's
/// `IntNStringReceiver.sendString`).
///
/// A message of `2^(8 * prefix_length)` bytes or more cannot be announced:
/// [`EncodeError::TooLong`].
///
/// # Examples
///
/// ```
/// use bytes::BytesMut;
/// use twill_protocols::basic::IntNEncoder;
/// use twill_protocols::codec::Encoder;
///
/// let mut out = BytesMut::new();
/// IntNEncoder::new(4).encode(b"foo", &mut out).unwrap();
/// assert_eq!(out, b"\x00\x00\x00\x03foo"[..]);
/// assert!(IntNEncoder::new(1).encode(vec![0u8; 256], &mut out).is_err());
/// ```
#[derive(Debug, Clone, Copy)]
pub struct IntNEncoder {
    prefix_length: usize,
}

impl IntNEncoder {
    /// An encoder with a `prefix_length`-byte prefix (1, 2 or 4).
    ///
    /// # Panics
    ///
    /// If `prefix_length` is not 1, 2 or 4.
    pub fn new(prefix_length: usize) -> Self {
        check_prefix_length(prefix_length);
        IntNEncoder { prefix_length }
    }
}

impl<B: AsRef<[u8]>> Encoder<B> for IntNEncoder {
    fn encode(&mut self, item: B, dst: &mut BytesMut) -> Result<(), EncodeError> {
        frame(self.prefix_length, item.as_ref(), dst).map_err(|err| EncodeError::TooLong {
            length: err.length,
            max: usize::try_from(err.max).unwrap_or(usize::MAX),
        })
    }
}

fn check_prefix_length(prefix_length: usize) {
    assert!(
        matches!(prefix_length, 1 | 2 | 4),
        "an IntN prefix is 1, 2 or 4 bytes, not {prefix_length}"
    );
}

/// Appends `string` with its `prefix_length`-byte prefix to `dst`.
pub(crate) fn frame(
    prefix_length: usize,
    string: &[u8],
    dst: &mut BytesMut,
) -> Result<(), StringTooLongError> {
    let max = (1u64 << (8 * prefix_length)) - 1;
    let length = string.len() as u64;
    if length > max {
        return Err(StringTooLongError {
            length: string.len(),
            max,
        });
    }
    dst.reserve(prefix_length + string.len());
    dst.extend_from_slice(&length.to_be_bytes()[8 - prefix_length..]);
    dst.extend_from_slice(string);
    Ok(())
}

/// A [`StringReceiver`] with `N`-byte length prefixes as a twill
/// [`Protocol`](twill::Protocol): Twisted's `IntNStringReceiver`. Use the
/// aliases [`Int32StringReceiver`], [`Int16StringReceiver`] and
/// [`Int8StringReceiver`].
///
/// Input is cut with an [`IntNDecoder`]: each string goes to
/// [`string_received`](StringReceiver::string_received); a prefix above
/// `MAX_LENGTH` (99999 by default, so never for `Int8` and `Int16` unless
/// lowered) goes to
/// [`length_limit_exceeded`](StringReceiver::length_limit_exceeded)
/// (default: close) and the string is not delivered.
/// [`send_string`](StringContext::send_string) refuses strings the prefix
/// cannot announce (`Int16`: 65536 bytes and more; `Int8`: 256) with
/// [`StringTooLongError`].
///
/// Pausable like Twisted's: [`StringContext::pause_producing`] stops
/// delivering and reading, `resume_producing` delivers what was buffered.
/// Delivery stops once the transport is closing (Twisted's would deliver
/// the rest of the packet).
///
/// # Examples
///
/// ```
/// use bytes::Bytes;
/// use twill::testing::StringTransport;
/// use twill::Protocol;
/// use twill_protocols::basic::{Int16StringReceiver, StringContext, StringReceiver};
///
/// #[derive(Default)]
/// struct Collect(Vec<Bytes>);
///
/// impl StringReceiver for Collect {
///     fn string_received(&mut self, _: &StringContext, string: Bytes) {
///         self.0.push(string);
///     }
/// }
///
/// let transport = StringTransport::new();
/// let mut protocol = Int16StringReceiver::new(Collect::default()).with_max_length(50);
/// protocol.connection_made(&transport.transport());
/// protocol.data_received(Bytes::from_static(b"\x00\x04ubar\x00"));
/// protocol.data_received(Bytes::from_static(b"\x00"));
/// assert_eq!(protocol.receiver().0, ["ubar", ""]);
///
/// let ctx = protocol.context().unwrap();
/// ctx.send_string("foo").unwrap();
/// assert_eq!(transport.value(), b"\x00\x03foo");
/// assert!(ctx.send_string(vec![0u8; 65536]).is_err());
///
/// protocol.data_received(Bytes::from_static(b"\x10\x00")); // 4096 > 50
/// assert!(transport.disconnecting());
/// ```
pub struct IntNStringReceiver<R: StringReceiver, const N: usize> {
    inner: StringProtocol<R>,
}

/// Strings with a 4-byte big-endian length prefix: Twisted's
/// `Int32StringReceiver`.
pub type Int32StringReceiver<R> = IntNStringReceiver<R, 4>;

/// Strings with a 2-byte big-endian length prefix: Twisted's
/// `Int16StringReceiver`.
pub type Int16StringReceiver<R> = IntNStringReceiver<R, 2>;

/// Strings with a 1-byte length prefix: Twisted's `Int8StringReceiver`.
pub type Int8StringReceiver<R> = IntNStringReceiver<R, 1>;

impl<R: StringReceiver, const N: usize> IntNStringReceiver<R, N> {
    const PREFIX_LENGTH: usize = {
        assert!(
            N == 1 || N == 2 || N == 4,
            "an IntN prefix is 1, 2 or 4 bytes"
        );
        N
    };

    /// Wraps `receiver`, with its type's
    /// [`MAX_LENGTH`](StringReceiver::MAX_LENGTH).
    pub fn new(receiver: R) -> Self {
        let decoder = IntNDecoder::new(Self::PREFIX_LENGTH, R::MAX_LENGTH);
        IntNStringReceiver {
            inner: StringProtocol::new(Framing::IntN(decoder), receiver),
        }
    }
}

string_receiver_wrapper!(IntNStringReceiver<R, const N: usize>);

impl<R: StringReceiver, const N: usize> fmt::Debug for IntNStringReceiver<R, N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IntNStringReceiver")
            .field("prefix_length", &N)
            .field("inner", &self.inner)
            .finish()
    }
}
