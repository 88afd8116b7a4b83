//! UTF-8 strings: [`StringDecoder`], [`StringEncoder`], [`LineEncoder`].

use bytes::{Bytes, BytesMut};

use super::{DecodeError, EncodeError, Encoder, MessageDecoder, MessageEncoder};

/// Turns each frame into a `String`, rejecting invalid UTF-8 with
/// [`DecodeError::Utf8`]: Netty's `StringDecoder` with UTF-8 (which
/// replaces bad bytes instead). It must sit behind a frame decoder, since a
/// character may be split across reads.
///
/// # Examples
///
/// ```
/// use bytes::Bytes;
/// use twill_protocols::codec::{MessageDecoder, StringDecoder};
///
/// assert_eq!(StringDecoder.decode_message(Bytes::from("héllo")).unwrap(), "héllo");
/// assert!(StringDecoder.decode_message(Bytes::from_static(b"\xff")).is_err());
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct StringDecoder;

impl MessageDecoder<Bytes> for StringDecoder {
    type Item = String;

    fn decode_message(&mut self, frame: Bytes) -> Result<String, DecodeError> {
        Ok(std::str::from_utf8(&frame)?.to_owned())
    }
}

/// Writes strings as their UTF-8 bytes: Netty's `StringEncoder`. As a
/// [`MessageEncoder`] it turns a string into `Bytes` for a frame encoder
/// after it.
#[derive(Debug, Clone, Copy, Default)]
pub struct StringEncoder;

impl<S: AsRef<str>> Encoder<S> for StringEncoder {
    fn encode(&mut self, item: S, dst: &mut BytesMut) -> Result<(), EncodeError> {
        dst.extend_from_slice(item.as_ref().as_bytes());
        Ok(())
    }
}

impl<S: AsRef<str>> MessageEncoder<S> for StringEncoder {
    type Item = Bytes;

    fn encode_message(&mut self, message: S) -> Result<Bytes, EncodeError> {
        Ok(Bytes::copy_from_slice(message.as_ref().as_bytes()))
    }
}

/// Writes each string followed by a line separator (`\n` by default):
/// Netty's `LineEncoder`.
///
/// # Examples
///
/// ```
/// use bytes::BytesMut;
/// use twill_protocols::codec::{Encoder, LineEncoder};
///
/// let mut out = BytesMut::new();
/// LineEncoder::crlf().encode("hi", &mut out).unwrap();
/// assert_eq!(&out[..], b"hi\r\n");
/// ```
#[derive(Debug, Clone, Copy)]
pub struct LineEncoder {
    separator: &'static str,
}

impl LineEncoder {
    /// Lines ending in `\n`.
    pub fn new() -> Self {
        LineEncoder { separator: "\n" }
    }

    /// Lines ending in `\r\n` (telnet, SMTP, Twisted's `LineReceiver`).
    pub fn crlf() -> Self {
        LineEncoder { separator: "\r\n" }
    }
}

impl Default for LineEncoder {
    fn default() -> Self {
        LineEncoder::new()
    }
}

impl<S: AsRef<str>> Encoder<S> for LineEncoder {
    fn encode(&mut self, item: S, dst: &mut BytesMut) -> Result<(), EncodeError> {
        let line = item.as_ref();
        dst.reserve(line.len() + self.separator.len());
        dst.extend_from_slice(line.as_bytes());
        dst.extend_from_slice(self.separator.as_bytes());
        Ok(())
    }
}
