//! [`LineBasedFrameDecoder`]: lines ending in `\n` or `\r\n`.

use bytes::{Bytes, BytesMut};

use super::{DecodeError, Decoder};

/// Cuts input into lines: Netty's `LineBasedFrameDecoder`.
///
/// ```text
/// input:   | h i \r \n | b y e \n | p a r t
/// frames:  "hi", "bye"            (and "part" at EOF)
/// ```
///
/// A line ends at `\n`; a `\r` just before it is part of the delimiter, a
/// lone `\r` is data. `max_length` bounds a line without its delimiter (a
/// line of exactly `max_length` bytes is accepted). A longer line is
/// skipped and reported as [`DecodeError::TooLongFrame`]; the decoder can
/// go on with the next line, but the default
/// [`Handler::exception_caught`](super::Handler::exception_caught) closes
/// the connection (override it to carry on). With `fail_fast` (off by default, as in Netty) the
/// error comes as soon as the limit is passed, else once the end of the
/// long line arrives. Scanning resumes where it stopped, so a long line
/// arriving in small pieces is scanned once.
///
/// At EOF, an unterminated last line is delivered (unlike Netty, which drops
/// it silently).
///
/// # Examples
///
/// ```
/// use bytes::BytesMut;
/// use twill_protocols::codec::{Decoder, LineBasedFrameDecoder};
///
/// let mut lines = LineBasedFrameDecoder::new(80);
/// let mut input = BytesMut::from(&b"hi\r\nbye\npart"[..]);
/// assert_eq!(lines.decode(&mut input).unwrap().unwrap(), "hi");
/// assert_eq!(lines.decode(&mut input).unwrap().unwrap(), "bye");
/// assert_eq!(lines.decode(&mut input).unwrap(), None);
/// assert_eq!(lines.decode_eof(&mut input).unwrap().unwrap(), "part");
/// ```
#[derive(Debug, Clone)]
pub struct LineBasedFrameDecoder {
    max_length: usize,
    strip_delimiter: bool,
    fail_fast: bool,
    /// How far the buffer was already searched for `\n`.
    searched: usize,
    /// Skipping a too-long line: how many of its bytes were dropped.
    discarding: Option<u64>,
}

impl LineBasedFrameDecoder {
    /// Lines of at most `max_length` bytes, delimiters stripped, errors
    /// reported at the end of a too-long line. `usize::MAX` means no limit.
    pub fn new(max_length: usize) -> Self {
        LineBasedFrameDecoder {
            max_length,
            strip_delimiter: true,
            fail_fast: false,
            searched: 0,
            discarding: None,
        }
    }

    /// Whether frames leave out their delimiter (default true).
    pub fn strip_delimiter(mut self, strip: bool) -> Self {
        self.strip_delimiter = strip;
        self
    }

    /// Whether a too-long line is reported as soon as it passes the limit
    /// (default false: once its end arrives).
    pub fn fail_fast(mut self, fail_fast: bool) -> Self {
        self.fail_fast = fail_fast;
        self
    }

    /// The longest line accepted, without its delimiter.
    pub fn max_length(&self) -> usize {
        self.max_length
    }

    fn too_long(&self, length: u64) -> DecodeError {
        DecodeError::TooLongFrame {
            length,
            max: self.max_length,
        }
    }
}

impl Decoder for LineBasedFrameDecoder {
    type Item = Bytes;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, DecodeError> {
        // The buffer may have shrunk behind the decoder's back (a pipeline
        // stage handed its bytes on and was added again): never index past
        // its end.
        let from = self.searched.min(src.len());
        let found = memchr::memchr(b'\n', &src[from..]);
        let Some(at) = found.map(|i| i + from) else {
            // A trailing "\r" may be the first half of a "\r\n" split across
            // reads: it is not counted yet, so that neither the limit nor a
            // reported length depends on where the input was cut.
            let pending_cr = usize::from(src.last() == Some(&b'\r'));
            let content = src.len() - pending_cr;
            if let Some(discarded) = &mut self.discarding {
                *discarded += content as u64;
                let _ = src.split_to(content);
                self.searched = src.len();
                return Ok(None);
            }
            // Compared without arithmetic on the limit, which may be
            // usize::MAX ("no limit").
            if content > self.max_length {
                let dropped = content as u64;
                let _ = src.split_to(content);
                self.searched = src.len();
                self.discarding = Some(dropped);
                if self.fail_fast {
                    return Err(self.too_long(dropped));
                }
                return Ok(None);
            }
            self.searched = src.len();
            return Ok(None);
        };
        self.searched = 0;
        let delimiter = if at > 0 && src[at - 1] == b'\r' { 2 } else { 1 };
        let length = at + 1 - delimiter;
        if let Some(discarded) = self.discarding.take() {
            let _ = src.split_to(at + 1);
            let total = discarded + at as u64 + 1 - delimiter as u64;
            if self.fail_fast {
                // Reported when the limit was passed. Go on with the next
                // line (not discarding now, so this recurses once), so that
                // `Ok(None)` still means "more input needed".
                return self.decode(src);
            }
            return Err(self.too_long(total));
        }
        if length > self.max_length {
            let _ = src.split_to(at + 1);
            return Err(self.too_long(length as u64));
        }
        if self.strip_delimiter {
            let line = src.split_to(length).freeze();
            let _ = src.split_to(delimiter);
            Ok(Some(line))
        } else {
            Ok(Some(src.split_to(at + 1).freeze()))
        }
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, DecodeError> {
        if let Some(line) = self.decode(src)? {
            return Ok(Some(line));
        }
        self.searched = 0;
        if let Some(discarded) = self.discarding.take() {
            // The end of the too-long line never came.
            let total = discarded + src.len() as u64;
            src.clear();
            return if self.fail_fast {
                Ok(None)
            } else {
                Err(self.too_long(total))
            };
        }
        if src.is_empty() {
            return Ok(None);
        }
        if src.len() > self.max_length {
            let length = src.len() as u64;
            src.clear();
            return Err(self.too_long(length));
        }
        Ok(Some(src.split().freeze()))
    }
}
