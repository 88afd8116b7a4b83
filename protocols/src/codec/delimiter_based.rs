//! [`DelimiterBasedFrameDecoder`]: frames ending in one of several
//! delimiters, and the usual [`Delimiters`].

use bytes::{Buf, Bytes, BytesMut};

use super::{ConfigError, DecodeError, Decoder};

/// Netty's `Delimiters`: the usual delimiter sets for
/// [`DelimiterBasedFrameDecoder::new`].
#[derive(Debug, Clone, Copy)]
pub struct Delimiters;

impl Delimiters {
    /// `\r\n` and `\n`.
    pub fn line_delimiter() -> [&'static [u8]; 2] {
        [b"\r\n", b"\n"]
    }

    /// The NUL byte (`\0`), as in Flash XML sockets.
    pub fn nul_delimiter() -> [&'static [u8]; 1] {
        [b"\0"]
    }
}

/// Cuts input into frames ending in one of several delimiters: Netty's
/// `DelimiterBasedFrameDecoder`.
///
/// ```text
/// delimiters: "\r\n", "\n"
/// input:   | A B C \n | D E F \r \n | G H
/// frames:  "ABC", "DEF"                    (and "GH" at EOF)
/// ```
///
/// A frame ends at the first delimiter found in the input; where several
/// delimiters start at the same byte, the one listed first wins. So the
/// shortest possible frame is cut (`ABC\nDEF\r\n` is two frames, not one).
/// Delimiters are byte sequences; the input is not decoded. Frames are
/// split off the input buffer, without their delimiter unless
/// [`strip_delimiter`](Self::strip_delimiter) is off.
///
/// `max_frame_length` bounds a frame without its delimiter (a frame of
/// exactly `max_frame_length` bytes is accepted). A longer frame is
/// skipped up to and including its delimiter ("discard mode", nothing of it
/// is buffered) and reported as [`DecodeError::TooLongFrame`], which is
/// recoverable: decoding goes on with the next frame. With `fail_fast` (on
/// by default, as in Netty) the error comes as soon as the limit is passed,
/// its `length` being what was seen so far; without, once the delimiter
/// arrives, with the whole length. If the delimiter is already there the
/// error comes at once either way.
///
/// At EOF, an undelimited tail is delivered as a last frame, as
/// [`LineBasedFrameDecoder`](super::LineBasedFrameDecoder) does (Netty drops
/// it), or reported as too long if it is; the end of a too-long frame being
/// skipped is reported then if not already (without `fail_fast`).
///
/// When `decode` returns `Ok(None)`, at most `max_frame_length` plus the
/// longest delimiter's length minus one bytes are buffered.
///
/// # Differences from Netty
///
/// - A delimiter split across reads is found, and frames do not depend on
///   how the input was split: a tail that may be the start of a delimiter
///   is kept (in discard mode too), and a delimiter is not chosen while a
///   delimiter that would give a shorter frame (or start at the same byte
///   and be listed first) may still be completing. Netty can cut a frame
///   differently when a read ends in the middle of a delimiter, and
///   declares a frame of `max_frame_length` bytes too long when a read
///   ends after the first byte of its two-byte delimiter.
/// - Scanning resumes where it stopped instead of starting over at every
///   read.
/// - Without `fail_fast`, the reported length is the whole frame's (Netty
///   leaves out the part in the last read).
/// - There is no special case delegating `\r\n` + `\n` to the line decoder:
///   the result is the same frames, with this decoder's `fail_fast`
///   default.
/// - The undelimited tail at EOF (see above).
///
/// # Examples
///
/// ```
/// use bytes::BytesMut;
/// use twill_protocols::codec::{Decoder, DelimiterBasedFrameDecoder};
///
/// let mut decoder = DelimiterBasedFrameDecoder::new(80, [&b"\r\n"[..], b"\n"])?;
/// let mut input = BytesMut::from(&b"ABC\nDEF\r\nGH"[..]);
/// assert_eq!(decoder.decode(&mut input)?.unwrap(), "ABC");
/// assert_eq!(decoder.decode(&mut input)?.unwrap(), "DEF");
/// assert_eq!(decoder.decode(&mut input)?, None);
/// assert_eq!(decoder.decode_eof(&mut input)?.unwrap(), "GH");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct DelimiterBasedFrameDecoder {
    max_frame_length: usize,
    delimiters: Vec<Box<[u8]>>,
    strip_delimiter: bool,
    fail_fast: bool,
    /// No delimiter starts before this offset of the buffer.
    searched: usize,
    /// Skipping a too-long frame: how many of its bytes were dropped.
    discarding: Option<u64>,
}

/// Where the first frame of the buffer ends.
enum Search {
    /// At `at`, with a delimiter of `length` bytes.
    Found { at: usize, length: usize },
    /// Not yet known; the first `safe` bytes are frame content.
    Pending { safe: usize },
}

impl DelimiterBasedFrameDecoder {
    /// Frames of at most `max_frame_length` bytes (without delimiter) ending
    /// in one of `delimiters`, delimiters stripped, `fail_fast`.
    /// `usize::MAX` means no limit.
    ///
    /// # Errors
    ///
    /// `max_frame_length` is 0, there are no delimiters, or one is empty.
    pub fn new<I>(max_frame_length: usize, delimiters: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
    {
        if max_frame_length == 0 {
            return Err(ConfigError::new("max_frame_length must be positive"));
        }
        let delimiters: Vec<Box<[u8]>> = delimiters
            .into_iter()
            .map(|delimiter| Box::from(delimiter.as_ref()))
            .collect();
        if delimiters.is_empty() {
            return Err(ConfigError::new("at least one delimiter is needed"));
        }
        if delimiters.iter().any(|delimiter| delimiter.is_empty()) {
            return Err(ConfigError::new("delimiters must not be empty"));
        }
        Ok(DelimiterBasedFrameDecoder {
            max_frame_length,
            delimiters,
            strip_delimiter: true,
            fail_fast: true,
            searched: 0,
            discarding: None,
        })
    }

    /// Lines ending in `\r\n` or `\n` ([`Delimiters::line_delimiter`]).
    ///
    /// # Errors
    ///
    /// `max_frame_length` is 0.
    pub fn line_delimiter(max_frame_length: usize) -> Result<Self, ConfigError> {
        Self::new(max_frame_length, Delimiters::line_delimiter())
    }

    /// Frames ending in a NUL byte ([`Delimiters::nul_delimiter`]).
    ///
    /// # Errors
    ///
    /// `max_frame_length` is 0.
    pub fn nul_delimiter(max_frame_length: usize) -> Result<Self, ConfigError> {
        Self::new(max_frame_length, Delimiters::nul_delimiter())
    }

    /// Whether frames leave out their delimiter (default true).
    pub fn strip_delimiter(mut self, strip: bool) -> Self {
        self.strip_delimiter = strip;
        self
    }

    /// Whether a too-long frame is reported as soon as it passes the limit
    /// (default true) or once its delimiter arrives.
    pub fn fail_fast(mut self, fail_fast: bool) -> Self {
        self.fail_fast = fail_fast;
        self
    }

    /// The longest frame accepted, without its delimiter.
    pub fn max_frame_length(&self) -> usize {
        self.max_frame_length
    }

    /// The delimiters, in order of preference.
    pub fn delimiters(&self) -> impl Iterator<Item = &[u8]> {
        self.delimiters.iter().map(|delimiter| &**delimiter)
    }

    fn too_long(&self, length: u64) -> DecodeError {
        DecodeError::TooLongFrame {
            length,
            max: self.max_frame_length,
        }
    }

    /// Finds the end of the first frame of `buffer`, scanning from
    /// `self.searched`: the first place where a delimiter starts, or may be
    /// starting (the rest of the buffer is a proper prefix of it); at the
    /// same place, the first delimiter listed. At EOF, delimiters cannot
    /// complete any more.
    fn search(&self, buffer: &[u8], eof: bool) -> Search {
        let from = self.searched.min(buffer.len());
        for at in from..buffer.len() {
            let rest = &buffer[at..];
            for delimiter in &self.delimiters {
                if delimiter[0] != rest[0] {
                    continue;
                }
                if rest.starts_with(delimiter) {
                    return Search::Found {
                        at,
                        length: delimiter.len(),
                    };
                }
                if !eof && delimiter.starts_with(rest) {
                    return Search::Pending { safe: at };
                }
            }
        }
        Search::Pending { safe: buffer.len() }
    }
}

impl DelimiterBasedFrameDecoder {
    /// `decode`; at EOF, only what complete delimiters end (`decode_eof`
    /// deals with the rest).
    fn decode_frame(
        &mut self,
        src: &mut BytesMut,
        eof: bool,
    ) -> Result<Option<Bytes>, DecodeError> {
        loop {
            match self.search(src, eof) {
                Search::Found { at, length } => {
                    self.searched = 0;
                    if let Some(discarded) = self.discarding.take() {
                        src.advance(at + length);
                        if self.fail_fast {
                            // Reported when the limit was passed.
                            continue;
                        }
                        return Err(self.too_long(discarded + at as u64));
                    }
                    if at > self.max_frame_length {
                        src.advance(at + length);
                        return Err(self.too_long(at as u64));
                    }
                    let frame = if self.strip_delimiter {
                        let frame = src.split_to(at);
                        src.advance(length);
                        frame
                    } else {
                        src.split_to(at + length)
                    };
                    return Ok(Some(frame.freeze()));
                }
                Search::Pending { .. } if eof => return Ok(None),
                Search::Pending { safe } => {
                    if let Some(discarded) = &mut self.discarding {
                        *discarded += safe as u64;
                        src.advance(safe);
                        self.searched = 0;
                        return Ok(None);
                    }
                    if safe > self.max_frame_length {
                        src.advance(safe);
                        self.searched = 0;
                        self.discarding = Some(safe as u64);
                        if self.fail_fast {
                            return Err(self.too_long(safe as u64));
                        }
                        return Ok(None);
                    }
                    self.searched = safe;
                    return Ok(None);
                }
            }
        }
    }
}

impl Decoder for DelimiterBasedFrameDecoder {
    type Item = Bytes;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, DecodeError> {
        self.decode_frame(src, false)
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, DecodeError> {
        if let Some(frame) = self.decode_frame(src, true)? {
            return Ok(Some(frame));
        }
        self.searched = 0;
        let tail = src.len();
        if let Some(discarded) = self.discarding.take() {
            src.clear();
            if self.fail_fast {
                return Ok(None);
            }
            return Err(self.too_long(discarded + tail as u64));
        }
        if tail == 0 {
            return Ok(None);
        }
        if tail > self.max_frame_length {
            src.clear();
            return Err(self.too_long(tail as u64));
        }
        Ok(Some(src.split().freeze()))
    }
}
