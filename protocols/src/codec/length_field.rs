//! [`LengthFieldBasedFrameDecoder`]: frames announced by a length field in
//! their header, with [`ByteOrder`] and the codecs' [`ConfigError`].

use std::error::Error;
use std::fmt;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::{DecodeError, Decoder};

/// The byte order of a length field. Network byte order (big-endian) is the
/// default, as in Netty.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ByteOrder {
    /// Most significant byte first (network byte order).
    #[default]
    BigEndian,
    /// Least significant byte first.
    LittleEndian,
}

impl ByteOrder {
    /// Reads `bytes` (at most 8) as an unsigned number.
    pub(crate) fn read(self, bytes: &[u8]) -> u64 {
        // The common sizes as single loads; 3 bytes byte by byte.
        match (self, bytes.len()) {
            (ByteOrder::BigEndian, 2) => u64::from(u16::from_be_bytes([bytes[0], bytes[1]])),
            (ByteOrder::LittleEndian, 2) => u64::from(u16::from_le_bytes([bytes[0], bytes[1]])),
            (ByteOrder::BigEndian, 4) => {
                u64::from(u32::from_be_bytes(bytes.try_into().expect("4 bytes")))
            }
            (ByteOrder::LittleEndian, 4) => {
                u64::from(u32::from_le_bytes(bytes.try_into().expect("4 bytes")))
            }
            (ByteOrder::BigEndian, 8) => u64::from_be_bytes(bytes.try_into().expect("8 bytes")),
            (ByteOrder::LittleEndian, 8) => u64::from_le_bytes(bytes.try_into().expect("8 bytes")),
            _ => {
                let fold = |value: u64, &byte: &u8| (value << 8) | u64::from(byte);
                match self {
                    ByteOrder::BigEndian => bytes.iter().fold(0, fold),
                    ByteOrder::LittleEndian => bytes.iter().rev().fold(0, fold),
                }
            }
        }
    }

    /// Appends the low `length` bytes of `value` (`length` at most 8).
    pub(crate) fn write(self, value: u64, length: usize, dst: &mut BytesMut) {
        // `length` is 1, 2, 3, 4 or 8; the common ones as fixed-size
        // stores.
        match (self, length) {
            (ByteOrder::BigEndian, 2) => dst.put_u16(value as u16),
            (ByteOrder::LittleEndian, 2) => dst.put_u16_le(value as u16),
            (ByteOrder::BigEndian, 4) => dst.put_u32(value as u32),
            (ByteOrder::LittleEndian, 4) => dst.put_u32_le(value as u32),
            (ByteOrder::BigEndian, 8) => dst.put_u64(value),
            (ByteOrder::LittleEndian, 8) => dst.put_u64_le(value),
            (ByteOrder::BigEndian, _) => dst.put_uint(value, length),
            (ByteOrder::LittleEndian, _) => dst.put_uint_le(value, length),
        }
    }
}

/// A codec was given a configuration it cannot work with (a length field of
/// 5 bytes, a maximum frame length of 0, an empty delimiter...). Returned by
/// the constructors and `build` methods of this module's codecs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    message: String,
}

impl ConfigError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        ConfigError {
            message: message.into(),
        }
    }

    /// What is wrong with the configuration.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid codec configuration: {}", self.message)
    }
}

impl Error for ConfigError {}

/// Checks a length field size: 1, 2, 3 or 4 bytes (unsigned) or 8 (signed).
pub(crate) fn check_length_field_length(length: usize) -> Result<(), ConfigError> {
    match length {
        1..=4 | 8 => Ok(()),
        _ => Err(ConfigError::new(format!(
            "length_field_length must be 1, 2, 3, 4 or 8, not {length}"
        ))),
    }
}

/// Cuts input into frames whose header carries their length: Netty's
/// `LengthFieldBasedFrameDecoder`, with Netty's parameters and arithmetic.
///
/// ```text
///  <- length_field_offset -><- length_field_length ->
/// +------------------------+------------------------+--------------------+
/// |  bytes before the      |  LENGTH (1, 2, 3, 4 or |  rest of the frame |
/// |  length field          |  8 bytes, byte_order)  |                    |
/// +------------------------+------------------------+--------------------+
///  <------------------------------ frame length ------------------------->
///  <- initial_bytes_to_strip -> cut off the delivered frame
///
/// frame length = LENGTH + length_adjustment
///                       + length_field_offset + length_field_length
/// ```
///
/// The frame length counts every byte of the frame from its first header
/// byte, **before** stripping; a frame longer than `max_frame_length` is too
/// long (a frame of exactly `max_frame_length` is accepted). The delivered
/// frame is bytes `[initial_bytes_to_strip, frame length)` of the frame,
/// split off the input buffer (no copy; it keeps the buffer's allocation
/// alive while you hold it). Frames may be empty.
///
/// The length field is read unsigned when it has 1 to 4 bytes, and as a
/// signed 64-bit number when it has 8, as in Netty. `length_adjustment`
/// serves fields that count something other than "the bytes after me":
/// `-length_field_length` when the field counts itself, the size of a
/// header that follows the field when it does not count it, and so on.
///
/// Defaults (from [`builder`](Self::builder)): 4-byte big-endian field at
/// offset 0, no adjustment, nothing stripped (so frames keep their header,
/// as in Netty; tokio's `LengthDelimitedCodec` strips it by default), and
/// `fail_fast`. [`LengthFieldPrepender::matching_decoder`](super::LengthFieldPrepender::matching_decoder)
/// builds the decoder that undoes a prepender.
///
/// # Errors
///
/// - A frame longer than `max_frame_length`: [`DecodeError::TooLongFrame`]
///   with its frame length, which is recoverable: the frame is skipped,
///   including the part still to come ("discard mode", nothing of it is
///   buffered), and decoding goes on with the next frame. With `fail_fast`
///   (the default) the error comes as soon as the header is read; without,
///   once the whole frame has gone by. If the whole frame is already
///   buffered the error comes at once either way. There is one error per
///   too-long frame.
/// - A negative length (8-byte field), a frame length smaller than the
///   header up to the end of the length field, or a frame shorter than
///   `initial_bytes_to_strip`: [`DecodeError::Corrupt`]. There is no way
///   to find the next frame, so the decoder stops: from then on it drops
///   all input and returns `Ok(None)`.
/// - At EOF, an unfinished frame is [`DecodeError::Truncated`]; a too-long
///   frame being skipped without `fail_fast` is reported as
///   `TooLongFrame` (the peer never finished it, but it was too long).
///
/// When `decode` returns `Ok(None)`, fewer than `max_frame_length` bytes
/// are left in the buffer.
///
/// # Differences from Netty
///
/// - The configuration is checked by [`build`](LengthFieldBasedFrameDecoderBuilder::build):
///   the field size (Netty only fails at the first decode), and
///   `initial_bytes_to_strip <= max_frame_length` (Netty accepts a
///   configuration that can deliver no frame).
/// - A frame shorter than `initial_bytes_to_strip` is reported as soon as
///   its header is read, and stops the decoder like every corrupt input.
///   Netty keeps the cached length after this error and raises it again on
///   every read without consuming anything. Such a frame can only come
///   when `initial_bytes_to_strip` is more than `length_field_offset +
///   length_field_length + max(length_adjustment, 0)`, the shortest frame
///   the header allows; that configuration is accepted (none of Netty's
///   examples is one) but lets a peer stop the decoder with a small length.
/// - The arithmetic cannot overflow: an 8-byte length near `i64::MAX` plus
///   a positive adjustment is a too-long frame, not a wrapped negative
///   "corrupt" one. `TooLongFrame::length` saturates at `u64::MAX`.
/// - After a corrupt header the decoder does not try to go on from the
///   bytes after it (Netty skips the header and parses garbage).
/// - After a too-long frame, the frames behind it are decoded in the same
///   pass; Netty's exception leaves them waiting for the next read.
/// - At EOF leftover bytes are an error instead of being dropped silently.
///
/// For tokio's `LengthDelimitedCodec`, whose adjustment counts from the end
/// of the skipped prefix: `tokio.length_adjustment = length_adjustment +
/// length_field_offset + length_field_length - initial_bytes_to_strip` and
/// `num_skip = initial_bytes_to_strip`; tokio also compares the raw field,
/// not the whole frame, with its maximum.
///
/// # Examples
///
/// Netty's javadoc example 6: a one-byte header, a 2-byte length that
/// counts the bytes after a second one-byte header, and the first header
/// and length field stripped.
///
/// ```
/// use bytes::BytesMut;
/// use twill_protocols::codec::{Decoder, LengthFieldBasedFrameDecoder};
///
/// let mut decoder = LengthFieldBasedFrameDecoder::builder(1024)
///     .length_field_offset(1)
///     .length_field_length(2)
///     .length_adjustment(1)
///     .initial_bytes_to_strip(3)
///     .build()?;
/// let mut input = BytesMut::from(&b"\xca\x00\x0c\xfeHELLO, WORLD\xca\x00"[..]);
/// assert_eq!(decoder.decode(&mut input)?.unwrap(), &b"\xfeHELLO, WORLD"[..]);
/// assert_eq!(decoder.decode(&mut input)?, None); // waits for the rest
/// assert!(decoder.decode_eof(&mut input).is_err()); // truncated
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// Build once and clone for each connection: the decoder has per-connection
/// state.
#[derive(Debug, Clone)]
pub struct LengthFieldBasedFrameDecoder {
    byte_order: ByteOrder,
    max_frame_length: usize,
    length_field_offset: usize,
    length_field_length: usize,
    length_adjustment: i64,
    initial_bytes_to_strip: usize,
    fail_fast: bool,
    /// The length of the frame whose header was read, until it is complete.
    frame_length: Option<usize>,
    /// Skipping a too-long frame.
    discarding: Option<Discarding>,
    /// A corrupt header was seen: all input is dropped.
    failed: bool,
}

/// The state of discard mode.
#[derive(Debug, Clone, Copy)]
struct Discarding {
    /// Bytes of the frame still to skip.
    remaining: u64,
    /// The frame's length, for the error.
    length: u64,
}

/// Configures a [`LengthFieldBasedFrameDecoder`]; from
/// [`LengthFieldBasedFrameDecoder::builder`].
#[derive(Debug, Clone)]
pub struct LengthFieldBasedFrameDecoderBuilder {
    byte_order: ByteOrder,
    max_frame_length: usize,
    length_field_offset: usize,
    length_field_length: usize,
    length_adjustment: i64,
    initial_bytes_to_strip: usize,
    fail_fast: bool,
}

impl LengthFieldBasedFrameDecoderBuilder {
    /// The byte order of the length field (default big-endian).
    pub fn byte_order(mut self, byte_order: ByteOrder) -> Self {
        self.byte_order = byte_order;
        self
    }

    /// How many bytes come before the length field (default 0).
    pub fn length_field_offset(mut self, offset: usize) -> Self {
        self.length_field_offset = offset;
        self
    }

    /// The size of the length field: 1, 2, 3 or 4 (unsigned) or 8 (signed)
    /// bytes (default 4).
    pub fn length_field_length(mut self, length: usize) -> Self {
        self.length_field_length = length;
        self
    }

    /// What to add to the length field's value to get the number of bytes
    /// after the length field (default 0).
    pub fn length_adjustment(mut self, adjustment: i64) -> Self {
        self.length_adjustment = adjustment;
        self
    }

    /// How many bytes to cut off the front of each delivered frame (default
    /// 0: the header stays).
    pub fn initial_bytes_to_strip(mut self, strip: usize) -> Self {
        self.initial_bytes_to_strip = strip;
        self
    }

    /// Whether a too-long frame is reported as soon as its header is read
    /// (default true) or once it has been skipped entirely.
    pub fn fail_fast(mut self, fail_fast: bool) -> Self {
        self.fail_fast = fail_fast;
        self
    }

    /// The decoder.
    ///
    /// # Errors
    ///
    /// `max_frame_length` is 0, the length field is not 1, 2, 3, 4 or 8
    /// bytes, the length field does not end within `max_frame_length`, or
    /// `initial_bytes_to_strip` is more than `max_frame_length` (no frame
    /// could be delivered).
    pub fn build(self) -> Result<LengthFieldBasedFrameDecoder, ConfigError> {
        if self.max_frame_length == 0 {
            return Err(ConfigError::new("max_frame_length must be positive"));
        }
        check_length_field_length(self.length_field_length)?;
        let end = self
            .length_field_offset
            .checked_add(self.length_field_length);
        if end.is_none_or(|end| end > self.max_frame_length) {
            return Err(ConfigError::new(format!(
                "the length field (offset {} + length {}) must end within \
                 max_frame_length ({})",
                self.length_field_offset, self.length_field_length, self.max_frame_length
            )));
        }
        if self.initial_bytes_to_strip > self.max_frame_length {
            return Err(ConfigError::new(format!(
                "initial_bytes_to_strip ({}) is more than max_frame_length ({})",
                self.initial_bytes_to_strip, self.max_frame_length
            )));
        }
        Ok(LengthFieldBasedFrameDecoder {
            byte_order: self.byte_order,
            max_frame_length: self.max_frame_length,
            length_field_offset: self.length_field_offset,
            length_field_length: self.length_field_length,
            length_adjustment: self.length_adjustment,
            initial_bytes_to_strip: self.initial_bytes_to_strip,
            fail_fast: self.fail_fast,
            frame_length: None,
            discarding: None,
            failed: false,
        })
    }
}

impl LengthFieldBasedFrameDecoder {
    /// A builder for frames of at most `max_frame_length` bytes, header
    /// included (before stripping), with the defaults above. `usize::MAX`
    /// means no limit.
    pub fn builder(max_frame_length: usize) -> LengthFieldBasedFrameDecoderBuilder {
        LengthFieldBasedFrameDecoderBuilder {
            byte_order: ByteOrder::BigEndian,
            max_frame_length,
            length_field_offset: 0,
            length_field_length: 4,
            length_adjustment: 0,
            initial_bytes_to_strip: 0,
            fail_fast: true,
        }
    }

    /// Netty's five-argument constructor: big-endian, `fail_fast`; the same
    /// as the [`builder`](Self::builder) with these values.
    ///
    /// # Errors
    ///
    /// As [`build`](LengthFieldBasedFrameDecoderBuilder::build).
    pub fn new(
        max_frame_length: usize,
        length_field_offset: usize,
        length_field_length: usize,
        length_adjustment: i64,
        initial_bytes_to_strip: usize,
    ) -> Result<Self, ConfigError> {
        Self::builder(max_frame_length)
            .length_field_offset(length_field_offset)
            .length_field_length(length_field_length)
            .length_adjustment(length_adjustment)
            .initial_bytes_to_strip(initial_bytes_to_strip)
            .build()
    }

    /// The longest frame accepted, header included, before stripping.
    pub fn max_frame_length(&self) -> usize {
        self.max_frame_length
    }

    /// The byte order of the length field.
    pub fn byte_order(&self) -> ByteOrder {
        self.byte_order
    }

    /// How many bytes come before the length field.
    pub fn length_field_offset(&self) -> usize {
        self.length_field_offset
    }

    /// The size of the length field in bytes.
    pub fn length_field_length(&self) -> usize {
        self.length_field_length
    }

    /// What is added to the length field's value.
    pub fn length_adjustment(&self) -> i64 {
        self.length_adjustment
    }

    /// How many bytes are cut off the front of each frame.
    pub fn initial_bytes_to_strip(&self) -> usize {
        self.initial_bytes_to_strip
    }

    /// Whether a too-long frame is reported as soon as its header is read.
    pub fn is_fail_fast(&self) -> bool {
        self.fail_fast
    }

    fn length_field_end(&self) -> usize {
        self.length_field_offset + self.length_field_length
    }

    fn too_long(&self, length: u64) -> DecodeError {
        DecodeError::TooLongFrame {
            length,
            max: self.max_frame_length,
        }
    }

    /// Stops the decoder after corrupt input.
    fn corrupt(&mut self, src: &mut BytesMut, why: String) -> DecodeError {
        self.failed = true;
        self.frame_length = None;
        self.discarding = None;
        src.clear();
        DecodeError::Corrupt(why)
    }

    /// Reads the header at the front of `src` (at least
    /// `length_field_end` bytes) and returns the frame length, or enters
    /// discard mode and returns the too-long error.
    fn read_header(&mut self, src: &mut BytesMut) -> Result<usize, DecodeError> {
        let end = self.length_field_end();
        let field = &src[self.length_field_offset..end];
        let unsigned = self.byte_order.read(field);
        let raw = if self.length_field_length == 8 {
            let signed = unsigned as i64;
            if signed < 0 {
                let why = format!("negative pre-adjustment length field: {signed}");
                return Err(self.corrupt(src, why));
            }
            i128::from(signed)
        } else {
            i128::from(unsigned)
        };
        let frame_length = raw + i128::from(self.length_adjustment) + end as i128;
        if frame_length < end as i128 {
            let why = format!(
                "adjusted frame length ({frame_length}) is less than the length field's end \
                 offset: {end}"
            );
            return Err(self.corrupt(src, why));
        }
        if frame_length > self.max_frame_length as i128 {
            let length = u64::try_from(frame_length).unwrap_or(u64::MAX);
            if frame_length <= src.len() as i128 {
                src.advance(frame_length as usize);
                return Err(self.too_long(length));
            }
            let remaining = u64::try_from(frame_length - src.len() as i128).unwrap_or(u64::MAX);
            src.clear();
            self.discarding = Some(Discarding { remaining, length });
            return Err(self.too_long(length));
        }
        let frame_length = frame_length as usize;
        if frame_length < self.initial_bytes_to_strip {
            let why = format!(
                "adjusted frame length ({frame_length}) is less than initial_bytes_to_strip: {}",
                self.initial_bytes_to_strip
            );
            return Err(self.corrupt(src, why));
        }
        Ok(frame_length)
    }
}

impl Decoder for LengthFieldBasedFrameDecoder {
    type Item = Bytes;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, DecodeError> {
        if self.failed {
            src.clear();
            return Ok(None);
        }
        loop {
            if let Some(discarding) = &mut self.discarding {
                let skip = discarding.remaining.min(src.len() as u64);
                src.advance(skip as usize);
                discarding.remaining -= skip;
                if discarding.remaining > 0 {
                    return Ok(None);
                }
                let length = discarding.length;
                self.discarding = None;
                if !self.fail_fast {
                    return Err(self.too_long(length));
                }
                continue;
            }
            let frame_length = match self.frame_length {
                Some(length) => length,
                None if src.len() < self.length_field_end() => return Ok(None),
                None => match self.read_header(src) {
                    Ok(length) => length,
                    // Discard mode: say so now (fail fast) or once skipped.
                    Err(DecodeError::TooLongFrame { .. })
                        if self.discarding.is_some() && !self.fail_fast =>
                    {
                        continue
                    }
                    Err(err) => return Err(err),
                },
            };
            if src.len() < frame_length {
                self.frame_length = Some(frame_length);
                return Ok(None);
            }
            self.frame_length = None;
            src.advance(self.initial_bytes_to_strip);
            return Ok(Some(
                src.split_to(frame_length - self.initial_bytes_to_strip)
                    .freeze(),
            ));
        }
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, DecodeError> {
        if let Some(frame) = self.decode(src)? {
            return Ok(Some(frame));
        }
        if let Some(discarding) = self.discarding.take() {
            if !self.fail_fast {
                return Err(self.too_long(discarding.length));
            }
        }
        if src.is_empty() {
            return Ok(None);
        }
        Err(DecodeError::Truncated {
            remaining: src.len(),
        })
    }
}
