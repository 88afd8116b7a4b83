//! [`LengthFieldPrepender`]: writes each message after a length field.

use bytes::{Bytes, BytesMut};

use super::length_field::check_length_field_length;
use super::{ByteOrder, ConfigError, EncodeError, Encoder, LengthFieldBasedFrameDecoder};

/// Bodies up to this many bytes are copied after their header by
/// [`Encoder::encode_parts`]; longer ones are handed over whole. The
/// transport copies writes this small into its buffer anyway.
const COPY_MAX: usize = 512;

/// Writes each message after a field holding its length: Netty's
/// `LengthFieldPrepender`.
///
/// ```text
/// message:  | H E L L O |                       (5 bytes)
/// output:   | 00 05 | H E L L O |               (new(2), the defaults)
///           | 00 07 | H E L L O |               (.length_includes_length_field_length(true))
/// ```
///
/// The field holds `message length + length_adjustment`, plus the field's
/// own size with `length_includes_length_field_length`, in `byte_order`
/// (big-endian by default) on 1, 2, 3, 4 or 8 bytes.
///
/// It encodes anything that turns into [`Bytes`] (`Bytes`, `BytesMut`,
/// `Vec<u8>`, `String`, `&'static str`, ...); put a message encoder in
/// front with [`Encoder::after`] for other types. Through
/// [`Encoder::encode_parts`] (what [`Framed`](super::Framed) and the
/// pipeline use) a message longer than 512 bytes follows its header as its
/// own `Bytes`, uncopied; a shorter one is copied after the header, as the
/// write buffer would copy it anyway.
///
/// [`matching_decoder`](Self::matching_decoder) gives the
/// [`LengthFieldBasedFrameDecoder`] that undoes it. Mind the signs if you
/// configure one by hand: both add their `length_adjustment`, so a
/// prepender with adjustment `a` is undone by a decoder with adjustment
/// `-a` (and `-a - length_field_length` when the field counts itself).
///
/// # Errors
///
/// [`EncodeError::TooLong`] when the value does not fit the field (at most
/// 255, 65 535, 16 777 215, 4 294 967 295 or `i64::MAX`); `max` is then the
/// longest message that fits. [`EncodeError::Other`] when the value would be
/// negative (a negative `length_adjustment` larger than the message). Nothing
/// is written in either case.
///
/// # Examples
///
/// ```
/// use bytes::BytesMut;
/// use twill_protocols::codec::{Decoder, Encoder, LengthFieldPrepender};
///
/// let mut prepender = LengthFieldPrepender::new(2)?;
/// let mut wire = BytesMut::new();
/// prepender.encode(&b"HELLO"[..], &mut wire)?;
/// assert_eq!(&wire[..], b"\x00\x05HELLO");
///
/// let mut decoder = prepender.matching_decoder(1024)?;
/// assert_eq!(decoder.decode(&mut wire)?.unwrap(), "HELLO");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy)]
pub struct LengthFieldPrepender {
    length_field_length: usize,
    byte_order: ByteOrder,
    length_adjustment: i64,
    length_includes_length_field_length: bool,
}

impl LengthFieldPrepender {
    /// A big-endian length field of `length_field_length` bytes holding the
    /// message length.
    ///
    /// # Errors
    ///
    /// `length_field_length` is not 1, 2, 3, 4 or 8.
    pub fn new(length_field_length: usize) -> Result<Self, ConfigError> {
        check_length_field_length(length_field_length)?;
        Ok(LengthFieldPrepender {
            length_field_length,
            byte_order: ByteOrder::BigEndian,
            length_adjustment: 0,
            length_includes_length_field_length: false,
        })
    }

    /// The byte order of the field (default big-endian).
    pub fn byte_order(mut self, byte_order: ByteOrder) -> Self {
        self.byte_order = byte_order;
        self
    }

    /// What to add to the message length (default 0).
    pub fn length_adjustment(mut self, adjustment: i64) -> Self {
        self.length_adjustment = adjustment;
        self
    }

    /// Whether the field also counts its own bytes (default false).
    pub fn length_includes_length_field_length(mut self, includes: bool) -> Self {
        self.length_includes_length_field_length = includes;
        self
    }

    /// The size of the length field in bytes.
    pub fn length_field_length(&self) -> usize {
        self.length_field_length
    }

    /// A decoder for what this writes, delivering the messages without the
    /// length field, for frames of at most `max_frame_length` bytes length
    /// field included.
    ///
    /// # Errors
    ///
    /// `max_frame_length` is smaller than the length field.
    pub fn matching_decoder(
        &self,
        max_frame_length: usize,
    ) -> Result<LengthFieldBasedFrameDecoder, ConfigError> {
        let own = if self.length_includes_length_field_length {
            self.length_field_length as i64
        } else {
            0
        };
        let adjustment = self
            .length_adjustment
            .checked_neg()
            .and_then(|negated| negated.checked_sub(own))
            .ok_or_else(|| {
                ConfigError::new(format!(
                    "length_adjustment {} cannot be negated",
                    self.length_adjustment
                ))
            })?;
        LengthFieldBasedFrameDecoder::builder(max_frame_length)
            .byte_order(self.byte_order)
            .length_field_length(self.length_field_length)
            .length_adjustment(adjustment)
            .initial_bytes_to_strip(self.length_field_length)
            .build()
    }

    /// The largest value the field holds.
    fn field_max(&self) -> i128 {
        match self.length_field_length {
            8 => i128::from(i64::MAX),
            n => (1i128 << (8 * n)) - 1,
        }
    }

    /// The added part of the field's value.
    fn overhead(&self) -> i128 {
        let own = if self.length_includes_length_field_length {
            self.length_field_length as i128
        } else {
            0
        };
        i128::from(self.length_adjustment) + own
    }

    /// Writes the field for a message of `length` bytes.
    fn encode_header(&self, length: usize, dst: &mut BytesMut) -> Result<(), EncodeError> {
        let value = length as i128 + self.overhead();
        if value < 0 {
            return Err(EncodeError::Other(
                format!(
                    "length field value would be negative: message of {length} bytes \
                     + adjustment {} = {value}",
                    self.overhead()
                )
                .into(),
            ));
        }
        if value > self.field_max() {
            let max = (self.field_max() - self.overhead()).clamp(0, usize::MAX as i128);
            return Err(EncodeError::TooLong {
                length,
                max: max as usize,
            });
        }
        self.byte_order
            .write(value as u64, self.length_field_length, dst);
        Ok(())
    }
}

impl<B: Into<Bytes>> Encoder<B> for LengthFieldPrepender {
    fn encode(&mut self, item: B, dst: &mut BytesMut) -> Result<(), EncodeError> {
        let message = item.into();
        dst.reserve(self.length_field_length + message.len());
        self.encode_header(message.len(), dst)?;
        dst.extend_from_slice(&message);
        Ok(())
    }

    /// The header goes into `dst`; a message longer than 512 bytes is
    /// handed back as the `Bytes` it came in (or was turned
    /// into without a copy: a `Vec<u8>`, a `String`), so a large body is
    /// never copied on the way out. A short one is copied after the header:
    /// cheaper than a buffer of its own in the write queue.
    fn encode_parts(&mut self, item: B, dst: &mut BytesMut) -> Result<Option<Bytes>, EncodeError> {
        let message = item.into();
        if message.len() <= COPY_MAX {
            self.encode(message, dst)?;
            return Ok(None);
        }
        self.encode_header(message.len(), dst)?;
        Ok(Some(message))
    }
}
