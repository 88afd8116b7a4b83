//! [`FixedLengthFrameDecoder`]: frames of one fixed size.

use bytes::{Bytes, BytesMut};

use super::{ConfigError, DecodeError, Decoder};

/// Cuts input into frames of exactly `frame_length` bytes: Netty's
/// `FixedLengthFrameDecoder`.
///
/// ```text
/// frame_length 3
/// input:   | A B C D E F G H |
/// frames:  "ABC", "DEF"            (and an error at EOF: "GH" is truncated)
/// ```
///
/// Frames are split off the input buffer (no copy). When `decode` returns
/// `Ok(None)`, fewer than `frame_length` bytes are buffered. At EOF a
/// shorter tail is [`DecodeError::Truncated`] (the default
/// [`decode_eof`](Decoder::decode_eof); Netty drops it silently).
///
/// # Examples
///
/// ```
/// use bytes::BytesMut;
/// use twill_protocols::codec::{DecodeError, Decoder, FixedLengthFrameDecoder};
///
/// let mut decoder = FixedLengthFrameDecoder::new(3)?;
/// let mut input = BytesMut::from(&b"ABCDEFGH"[..]);
/// assert_eq!(decoder.decode(&mut input)?.unwrap(), "ABC");
/// assert_eq!(decoder.decode(&mut input)?.unwrap(), "DEF");
/// assert_eq!(decoder.decode(&mut input)?, None);
/// assert!(matches!(
///     decoder.decode_eof(&mut input),
///     Err(DecodeError::Truncated { remaining: 2 })
/// ));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy)]
pub struct FixedLengthFrameDecoder {
    frame_length: usize,
}

impl FixedLengthFrameDecoder {
    /// Frames of `frame_length` bytes.
    ///
    /// # Errors
    ///
    /// `frame_length` is 0.
    pub fn new(frame_length: usize) -> Result<Self, ConfigError> {
        if frame_length == 0 {
            return Err(ConfigError::new("frame_length must be positive"));
        }
        Ok(FixedLengthFrameDecoder { frame_length })
    }

    /// The length of every frame.
    pub fn frame_length(&self) -> usize {
        self.frame_length
    }
}

impl Decoder for FixedLengthFrameDecoder {
    type Item = Bytes;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, DecodeError> {
        if src.len() < self.frame_length {
            return Ok(None);
        }
        Ok(Some(src.split_to(self.frame_length).freeze()))
    }
}
