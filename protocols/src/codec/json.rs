//! JSON: [`JsonObjectDecoder`] cuts a stream into top-level JSON values,
//! [`JsonDecoder`] and [`JsonEncoder`] convert them with serde (feature
//! `json`).

use std::marker::PhantomData;

use bytes::{Buf, BufMut, Bytes, BytesMut};
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
/// # Streaming array elements
///
/// With [`stream_array_elements(true)`](Self::stream_array_elements), a
/// top-level array is not delivered whole: each of its elements is a frame
/// of its own, as soon as the comma or bracket after it arrives, without
/// the whitespace around it. Elements may be any value (objects, arrays,
/// strings, numbers, literals); arrays inside an element are not split.
/// Top-level objects are still delivered whole. A huge array of records
/// can then be handled record by record, with only one in memory.
///
/// ```text
/// input:   |[ {"a":1} , "x,]" ,|[1,[2]], null ]  {"b":2}|
/// frames:    {"a":1}    "x,]"   [1,[2]]  null    {"b":2}
/// ```
///
/// The maximum then bounds each element, counted from its first
/// non-blank byte to the comma or bracket that ends it (trailing
/// whitespace included).
///
/// # Differences from Netty
///
/// - The maximum bounds the value being cut, wherever it is in the input;
///   Netty compares it with everything buffered.
/// - While streaming, an element that is empty once trimmed (the inside of
///   `[]`, or `[1,,2]`) is not delivered; Netty delivers an empty buffer.
/// - At EOF inside a streamed array, the unfinished array is reported as
///   [`DecodeError::Truncated`] even if its elements so far were
///   delivered; Netty drops it silently.
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
///
/// let mut elements = JsonObjectDecoder::new().stream_array_elements(true);
/// let mut input = BytesMut::from(&br#"[ {"id":1}, [2, 3],"#[..]);
/// assert_eq!(elements.decode(&mut input).unwrap().unwrap(), r#"{"id":1}"#);
/// assert_eq!(elements.decode(&mut input).unwrap().unwrap(), "[2, 3]");
/// assert_eq!(elements.decode(&mut input).unwrap(), None);
/// input.extend_from_slice(b" \"four\" ]");
/// assert_eq!(elements.decode(&mut input).unwrap().unwrap(), "\"four\"");
/// ```
#[derive(Debug, Clone)]
pub struct JsonObjectDecoder {
    max_object_length: usize,
    stream_array_elements: bool,
    /// How far the current value (or array element) was scanned, and the
    /// scanner's state there.
    scanned: usize,
    depth: usize,
    in_string: bool,
    escaped: bool,
    /// Inside a top-level array whose elements are cut out one by one; its
    /// `[` is consumed, and `depth` 1 is the array's own level.
    in_array: bool,
    /// After a too-long value, all further input is dropped.
    discarding: bool,
}

/// Where a streamed array element ends, when the scan found it.
enum Cut {
    /// At a comma: more elements follow.
    Comma,
    /// At the bracket closing the array.
    Close,
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
            stream_array_elements: false,
            scanned: 0,
            depth: 0,
            in_string: false,
            escaped: false,
            in_array: false,
            discarding: false,
        }
    }

    /// Whether the elements of a top-level array are delivered one by one
    /// (off by default): Netty's `streamArrayElements`. See
    /// [Streaming array elements](Self#streaming-array-elements).
    pub fn stream_array_elements(mut self, on: bool) -> Self {
        self.stream_array_elements = on;
        self
    }

    /// Forgets where the scan was: the next byte starts a value.
    fn reset(&mut self) {
        self.scanned = 0;
        self.depth = 0;
        self.in_string = false;
        self.escaped = false;
        self.in_array = false;
    }

    /// Gives up on the input: nothing can be trusted to start a value.
    fn corrupt(&mut self, src: &mut BytesMut) {
        src.clear();
        self.reset();
        self.discarding = true;
    }

    /// Scans on through the current value or element, to at most one byte
    /// past the maximum; returns where an element ends (`Some` only while
    /// streaming an array), or the end of a value, as the index one past
    /// its closing bracket, in `scanned`.
    fn scan(&mut self, src: &[u8]) -> Option<Cut> {
        // One byte past the limit is enough to know a value is too long
        // (and a streamed element of exactly the limit has its comma
        // there); saturating, as usize::MAX means "no limit" (wrapping to 0
        // would stop the scan before it starts).
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
                b',' if self.in_array && self.depth == 1 => return Some(Cut::Comma),
                b'}' | b']' => {
                    self.depth -= 1;
                    if self.depth == 0 {
                        return Some(Cut::Close);
                    }
                }
                _ => {}
            }
        }
        None
    }

    /// The too-long error for the value being scanned, after which all
    /// input is dropped: there is no way to find where the next value
    /// starts (the default handler closes the connection).
    fn too_long(&mut self, src: &mut BytesMut) -> DecodeError {
        let length = self.scanned as u64;
        self.corrupt(src);
        DecodeError::TooLongFrame {
            length,
            max: self.max_object_length,
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
            self.reset();
        }
        loop {
            if self.in_array {
                if self.scanned == 0 {
                    // Blanks before an element are not part of it.
                    let skip = src.iter().take_while(|b| b.is_ascii_whitespace()).count();
                    src.advance(skip);
                }
                let Some(cut) = self.scan(src) else {
                    if self.scanned > self.max_object_length {
                        return Err(self.too_long(src));
                    }
                    return Ok(None);
                };
                let mut element = src.split_to(self.scanned - 1);
                src.advance(1); // the comma or bracket
                let content = element
                    .iter()
                    .rposition(|b| !b.is_ascii_whitespace())
                    .map_or(0, |last| last + 1);
                element.truncate(content);
                self.scanned = 0;
                if let Cut::Close = cut {
                    self.reset();
                }
                if element.is_empty() {
                    continue;
                }
                return Ok(Some(element.freeze()));
            }
            if self.depth == 0 {
                // Between values: skip whitespace, expect an opening bracket.
                let skip = src.iter().take_while(|b| b.is_ascii_whitespace()).count();
                src.advance(skip);
                match src.first() {
                    None => return Ok(None),
                    Some(b'[') if self.stream_array_elements => {
                        src.advance(1);
                        self.in_array = true;
                        self.depth = 1;
                        continue;
                    }
                    Some(b'{' | b'[') => {
                        self.depth = 1;
                        self.scanned = 1;
                    }
                    Some(&other) => {
                        self.corrupt(src);
                        return Err(DecodeError::Corrupt(format!(
                            "invalid JSON: byte 0x{other:02x} outside a value"
                        )));
                    }
                }
            }
            return match self.scan(src) {
                Some(_) if self.scanned <= self.max_object_length => {
                    let end = self.scanned;
                    self.scanned = 0;
                    Ok(Some(src.split_to(end).freeze()))
                }
                _ if self.scanned > self.max_object_length => Err(self.too_long(src)),
                _ => Ok(None),
            };
        }
    }

    /// As the default, and an array being streamed is unfinished even when
    /// all of its elements so far were delivered (nothing is left in
    /// `src`): [`DecodeError::Truncated`].
    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, DecodeError> {
        match self.decode(src)? {
            Some(frame) => Ok(Some(frame)),
            None if src.is_empty() && !self.in_array => Ok(None),
            None => {
                let remaining = src.len();
                self.corrupt(src);
                Err(DecodeError::Truncated { remaining })
            }
        }
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
