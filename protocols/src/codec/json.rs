//! JSON: [`JsonObjectDecoder`] cuts a stream into top-level JSON values,
//! [`JsonDecoder`] and [`JsonEncoder`] convert them with serde (feature
//! `json`).

use std::marker::PhantomData;

use bytes::{BufMut, Bytes, BytesMut};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{DecodeError, Decoder, EncodeError, Encoder, MessageDecoder};

/// Default longest object: 1 MiB, as Netty.
pub const DEFAULT_MAX_OBJECT_LENGTH: usize = 1024 * 1024;

/// Cuts a byte stream into top-level JSON objects and arrays: Netty's
/// `JsonObjectDecoder`.
///
/// ```text
/// input:   |{"a":1}  [1,|2] {"s":"}"}|
/// frames:  {"a":1}   [1,2]  {"s":"}"}
/// ```
///
/// It counts `{`/`[` against `}`/`]` outside strings (honouring `\"`
/// escapes) and does not validate further: pair it with [`JsonDecoder`].
/// Whitespace between values is skipped; anything else outside a value is
/// [`DecodeError::Corrupt`]. A value longer than `max_object_length` (1 MiB
/// by default) is [`DecodeError::TooLongFrame`]; the decoder then drops all
/// further input, as there is no reliable way to find where the next value
/// starts (the handler's default closes the connection).
///
/// # Examples
///
/// ```
/// use bytes::BytesMut;
/// use twill_protocols::codec::{Decoder, JsonObjectDecoder};
///
/// let mut json = JsonObjectDecoder::new();
/// let mut input = BytesMut::from(&br#" {"s":"}"} [1,2"#[..]);
/// assert_eq!(json.decode(&mut input).unwrap().unwrap(), r#"{"s":"}"}"#);
/// assert_eq!(json.decode(&mut input).unwrap(), None);
/// input.extend_from_slice(b"]");
/// assert_eq!(json.decode(&mut input).unwrap().unwrap(), "[1,2]");
/// ```
#[derive(Debug, Clone)]
pub struct JsonObjectDecoder {
    max_object_length: usize,
    /// How far the current value was scanned, and the scanner's state there.
    scanned: usize,
    depth: usize,
    in_string: bool,
    escaped: bool,
    /// After a too-long value, all further input is dropped.
    discarding: bool,
}

impl JsonObjectDecoder {
    /// Values of at most 1 MiB.
    pub fn new() -> Self {
        JsonObjectDecoder::with_max_object_length(DEFAULT_MAX_OBJECT_LENGTH)
    }

    /// Values of at most `max` bytes; `usize::MAX` means no limit.
    pub fn with_max_object_length(max: usize) -> Self {
        JsonObjectDecoder {
            max_object_length: max,
            scanned: 0,
            depth: 0,
            in_string: false,
            escaped: false,
            discarding: false,
        }
    }
}

impl Default for JsonObjectDecoder {
    fn default() -> Self {
        JsonObjectDecoder::new()
    }
}

impl Decoder for JsonObjectDecoder {
    type Item = Bytes;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, DecodeError> {
        if self.discarding {
            src.clear();
            return Ok(None);
        }
        if self.scanned > src.len() {
            // The buffer shrank behind the decoder's back (a pipeline stage
            // handed its bytes on and was added again): scan from the start.
            self.scanned = 0;
            self.depth = 0;
            self.in_string = false;
            self.escaped = false;
        }
        if self.depth == 0 {
            // Between values: skip whitespace, expect an opening bracket.
            let skip = src.iter().take_while(|b| b.is_ascii_whitespace()).count();
            let _ = src.split_to(skip);
            match src.first() {
                None => return Ok(None),
                Some(b'{' | b'[') => {
                    self.depth = 1;
                    self.scanned = 1;
                }
                Some(&other) => {
                    src.clear();
                    self.discarding = true;
                    return Err(DecodeError::Corrupt(format!(
                        "invalid JSON: byte 0x{other:02x} outside a value"
                    )));
                }
            }
        }
        // One byte past the limit is enough to know a value is too long;
        // saturating, as usize::MAX means "no limit" (wrapping to 0 would
        // stop the scan before it starts).
        let end = src.len().min(self.max_object_length.saturating_add(1));
        while self.scanned < end {
            let byte = src[self.scanned];
            self.scanned += 1;
            if self.in_string {
                match byte {
                    _ if self.escaped => self.escaped = false,
                    b'\\' => self.escaped = true,
                    b'"' => self.in_string = false,
                    _ => {}
                }
                continue;
            }
            match byte {
                b'"' => self.in_string = true,
                b'{' | b'[' => self.depth += 1,
                b'}' | b']' => {
                    self.depth -= 1;
                    if self.depth == 0 && self.scanned <= self.max_object_length {
                        let end = self.scanned;
                        self.scanned = 0;
                        return Ok(Some(src.split_to(end).freeze()));
                    }
                }
                _ => {}
            }
        }
        if self.scanned > self.max_object_length {
            // No way to find where the next value starts: drop the input
            // from here on (the default handler closes the connection).
            let length = self.scanned as u64;
            src.clear();
            self.discarding = true;
            return Err(DecodeError::TooLongFrame {
                length,
                max: self.max_object_length,
            });
        }
        Ok(None)
    }
}

/// Deserializes each frame into a `T` with serde_json (a bad document is
/// [`DecodeError::Other`] carrying serde's error).
#[derive(Debug)]
pub struct JsonDecoder<T> {
    _type: PhantomData<fn() -> T>,
}

impl<T> JsonDecoder<T> {
    /// A decoder of `T`s.
    pub fn new() -> Self {
        JsonDecoder { _type: PhantomData }
    }
}

impl<T> Default for JsonDecoder<T> {
    fn default() -> Self {
        JsonDecoder::new()
    }
}

impl<T> Clone for JsonDecoder<T> {
    fn clone(&self) -> Self {
        JsonDecoder::new()
    }
}

impl<T: DeserializeOwned> MessageDecoder<Bytes> for JsonDecoder<T> {
    type Item = T;

    fn decode_message(&mut self, frame: Bytes) -> Result<T, DecodeError> {
        serde_json::from_slice(&frame).map_err(|err| DecodeError::Other(Box::new(err)))
    }
}

/// Serializes messages as compact JSON with serde_json.
///
/// # Examples
///
/// ```
/// use bytes::BytesMut;
/// use twill_protocols::codec::{Encoder, JsonEncoder};
///
/// let mut out = BytesMut::new();
/// JsonEncoder.encode(vec![1, 2], &mut out).unwrap();
/// assert_eq!(&out[..], b"[1,2]");
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonEncoder;

impl<T: Serialize> Encoder<T> for JsonEncoder {
    fn encode(&mut self, item: T, dst: &mut BytesMut) -> Result<(), EncodeError> {
        serde_json::to_writer(dst.writer(), &item).map_err(|err| EncodeError::Other(Box::new(err)))
    }
}
