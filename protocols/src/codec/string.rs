//! UTF-8 strings: [`StringDecoder`] (strict), [`LossyStringDecoder`],
//! [`StringEncoder`], [`LineEncoder`].

use bytes::{Bytes, BytesMut};

use super::{ConfigError, DecodeError, EncodeError, Encoder, MessageDecoder, MessageEncoder};

/// Turns each frame into a `String`, rejecting invalid UTF-8 with
/// [`DecodeError::Utf8`]: Netty's `StringDecoder` with UTF-8. It must sit
/// behind a frame decoder, since a character may be split across reads.
///
/// For Netty's behaviour, where malformed bytes become U+FFFD
/// (`�`) and the frame is delivered anyway, use [`LossyStringDecoder`].
///
/// # Differences from Netty
///
/// Netty replaces malformed input; this decoder rejects the frame, because
/// a peer sending something other than UTF-8 is usually a bug or an attack
/// that the handler should see ([`DecodeError::Utf8`] is not recoverable:
/// the default handler closes the connection). Only UTF-8 is supported.
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

/// Turns each frame into a `String`, replacing malformed UTF-8 with
/// U+FFFD (`�`): Netty's `StringDecoder` with UTF-8, which never fails.
/// The strict [`StringDecoder`] rejects such a frame instead.
///
/// Each maximal run of bytes that cannot start or continue a character
/// becomes one U+FFFD, as the Unicode standard recommends
/// ([`String::from_utf8_lossy`]): a multi-byte sequence cut short is one
/// replacement, an overlong encoding or a surrogate one per byte. Valid
/// input decodes exactly as with `StringDecoder`, with the one copy the
/// `String` needs and no other.
///
/// Like `StringDecoder`, it must sit behind a frame decoder: a character
/// split across two frames becomes replacements in both.
///
/// # Examples
///
/// ```
/// use bytes::{Bytes, BytesMut};
/// use twill_protocols::codec::{Decoder, LineBasedFrameDecoder, LossyStringDecoder, MessageDecoder};
///
/// let mut lossy = LossyStringDecoder;
/// assert_eq!(lossy.decode_message(Bytes::from("héllo")).unwrap(), "héllo");
/// assert_eq!(lossy.decode_message(Bytes::from_static(b"a\xffb")).unwrap(), "a\u{FFFD}b");
///
/// let mut lines = LineBasedFrameDecoder::new(80).and_then(LossyStringDecoder);
/// let mut input = BytesMut::from(&b"caf\xe9\n"[..]); // Latin-1, not UTF-8
/// assert_eq!(lines.decode(&mut input).unwrap().unwrap(), "caf\u{FFFD}");
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct LossyStringDecoder;

impl MessageDecoder<Bytes> for LossyStringDecoder {
    type Item = String;

    fn decode_message(&mut self, frame: Bytes) -> Result<String, DecodeError> {
        // Borrowed (copied once by `into_owned`) when valid; built once,
        // with the replacements, when not.
        Ok(String::from_utf8_lossy(&frame).into_owned())
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

/// Writes each string followed by a line separator: Netty's
/// `LineEncoder`. The separator is `\n` ([`new`](Self::new)), `\r\n`
/// ([`crlf`](Self::crlf)) or any non-empty byte sequence
/// ([`with_separator`](Self::with_separator)).
///
/// ```text
/// separator:  "||"
/// items:      "a"   ""   "bc"
/// output:     a||   ||   bc||
/// ```
///
/// An empty string makes an empty line: the separator alone.
///
/// # Differences from Netty
///
/// - The default separator is `\n` on every platform (Netty's is the
///   platform's line separator), and the text is always UTF-8.
/// - Netty's `LineSeparator` is a string; here the separator is bytes, so
///   it may be anything (`\0`, `\r\n\r\n`), valid UTF-8 or not.
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
///
/// let mut nul = LineEncoder::with_separator("\0")?;
/// nul.encode("one", &mut out).unwrap();
/// assert_eq!(&out[..], b"hi\r\none\0");
/// # Ok::<(), twill_protocols::codec::ConfigError>(())
/// ```
#[derive(Debug, Clone)]
pub struct LineEncoder {
    separator: Bytes,
}

impl LineEncoder {
    /// Lines ending in `\n`.
    pub fn new() -> Self {
        LineEncoder {
            separator: Bytes::from_static(b"\n"),
        }
    }

    /// Lines ending in `\r\n` (telnet, SMTP, Twisted's `LineReceiver`).
    pub fn crlf() -> Self {
        LineEncoder {
            separator: Bytes::from_static(b"\r\n"),
        }
    }

    /// Lines ending in `separator`, any bytes: `"\0"`, `b"||"`,
    /// `Bytes` read from a configuration. A `&'static` separator is not
    /// copied.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] if `separator` is empty: the lines could not be told
    /// apart on the other side.
    pub fn with_separator(separator: impl Into<Bytes>) -> Result<Self, ConfigError> {
        let separator = separator.into();
        if separator.is_empty() {
            return Err(ConfigError::new("the line separator must not be empty"));
        }
        Ok(LineEncoder { separator })
    }

    /// The bytes written after each line.
    pub fn separator(&self) -> &[u8] {
        &self.separator
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
        dst.extend_from_slice(&self.separator);
        Ok(())
    }
}
