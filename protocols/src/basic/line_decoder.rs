//! [`LineDecoder`]: lines cut at one fixed delimiter, with Twisted's
//! `LineReceiver` or `LineOnlyReceiver` length rules.

use bytes::{Bytes, BytesMut};

use crate::codec::{DecodeError, Decoder};

/// Twisted's default line delimiter, `b"\r\n"`.
pub const DEFAULT_DELIMITER: &[u8] = b"\r\n";

/// Twisted's default longest line, 16384 bytes (without the delimiter).
pub const DEFAULT_MAX_LINE_LENGTH: usize = 16384;

/// Which of Twisted's two sets of length rules a [`LineDecoder`] follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rules {
    /// `LineReceiver`: an unterminated tail may reach
    /// `max_length + delimiter.len() - 1` bytes; a too-long line takes the
    /// whole buffer with it.
    LineReceiver,
    /// `LineOnlyReceiver`: an unterminated tail may not pass `max_length`
    /// (except by a partial delimiter); only the too-long line is dropped.
    LineOnly,
}

/// What [`LineDecoder::next_line`] found.
#[derive(Debug)]
pub(crate) enum LineStep {
    /// A line, delimiter stripped.
    Line(Bytes),
    /// The limit was passed: these bytes (see the rules) were taken out of
    /// the buffer and belong to `line_length_exceeded`.
    TooLong(Bytes),
}

/// Cuts input into lines at one fixed delimiter (`b"\r\n"` by default),
/// following the length rules of Twisted's `LineReceiver` or, with
/// [`line_only`](Self::line_only), of `LineOnlyReceiver`. It is the framing
/// inside [`LineReceiverProtocol`](super::LineReceiverProtocol) and
/// [`LineOnlyReceiverProtocol`](super::LineOnlyReceiverProtocol), usable on
/// its own in a [`Framed`](crate::codec::Framed).
///
/// Unlike [`LineBasedFrameDecoder`](crate::codec::LineBasedFrameDecoder)
/// (Netty's: `\n` with an optional `\r`), the delimiter is matched exactly
/// and may be any non-empty byte string: with `b"\r\n"` a bare `\n` is
/// data, with `b"\n"` a `\r` before it stays in the line.
///
/// `max_length` bounds a line without its delimiter; a line of exactly
/// `max_length` bytes is accepted. Past it:
///
/// * [`new`](Self::new), `LineReceiver`'s rules: a line longer than
///   `max_length`, or an unterminated tail of `max_length + delimiter.len()`
///   bytes or more, is too long, and **everything buffered** is dropped with
///   it (the callback gets the line, its delimiter and the rest of the
///   buffer). A tail of up to `max_length + delimiter.len() - 1` bytes
///   waits, so a maximum-length line whose delimiter is split across reads
///   is accepted. Nothing more is skipped: bytes arriving later are new
///   input.
/// * [`line_only`](Self::line_only), `LineOnlyReceiver`'s rules: a line
///   longer than `max_length` is too long and only that line is dropped; an
///   unterminated tail longer than `max_length` is too long at once, unless
///   the bytes past `max_length` are the start of the delimiter (Twisted
///   rejects that case too, so whether it accepts a maximum-length line
///   depends on how TCP cut it; twill accepts it). The rest of a too-long
///   tail is then skipped up to its delimiter.
///
/// In a [`Framed`](crate::codec::Framed) a too-long line is
/// [`DecodeError::TooLongFrame`] (recoverable: the bytes are gone and
/// decoding goes on). At EOF an unterminated tail is
/// [`DecodeError::Truncated`], as Twisted never delivers it.
///
/// # Examples
///
/// ```
/// use bytes::BytesMut;
/// use twill_protocols::basic::LineDecoder;
/// use twill_protocols::codec::Decoder;
///
/// let mut lines = LineDecoder::default(); // b"\r\n", 16384
/// let mut input = BytesMut::from(&b"hello\r\nbare\nlf\r\npart"[..]);
/// assert_eq!(lines.decode(&mut input).unwrap().unwrap(), "hello");
/// assert_eq!(lines.decode(&mut input).unwrap().unwrap(), "bare\nlf");
/// assert_eq!(lines.decode(&mut input).unwrap(), None);
/// assert_eq!(input, "part");
///
/// // LineReceiver's tolerance: "abcd" + "\r" may still become a line of 4.
/// let mut short = LineDecoder::new("\r\n", 4);
/// let mut input = BytesMut::from(&b"abcd\r"[..]);
/// assert_eq!(short.decode(&mut input).unwrap(), None);
/// input.extend_from_slice(b"\n");
/// assert_eq!(short.decode(&mut input).unwrap().unwrap(), "abcd");
/// ```
#[derive(Debug, Clone)]
pub struct LineDecoder {
    delimiter: Bytes,
    max_length: usize,
    rules: Rules,
    /// How much of the buffer was already searched for the delimiter.
    searched: usize,
    /// `LineOnly` rules: skipping the rest of a too-long unterminated line.
    discarding: bool,
}

impl Default for LineDecoder {
    /// `LineReceiver`'s defaults: `b"\r\n"`, 16384 bytes.
    fn default() -> Self {
        LineDecoder::new(DEFAULT_DELIMITER, DEFAULT_MAX_LINE_LENGTH)
    }
}

impl LineDecoder {
    /// Lines ending in `delimiter`, at most `max_length` bytes, with
    /// `LineReceiver`'s rules. `usize::MAX` means no limit.
    ///
    /// # Panics
    ///
    /// If `delimiter` is empty.
    pub fn new(delimiter: impl Into<Bytes>, max_length: usize) -> Self {
        LineDecoder {
            delimiter: checked_delimiter(delimiter.into()),
            max_length,
            rules: Rules::LineReceiver,
            searched: 0,
            discarding: false,
        }
    }

    /// Lines ending in `delimiter`, at most `max_length` bytes, with
    /// `LineOnlyReceiver`'s rules. `usize::MAX` means no limit.
    ///
    /// # Panics
    ///
    /// If `delimiter` is empty.
    pub fn line_only(delimiter: impl Into<Bytes>, max_length: usize) -> Self {
        LineDecoder {
            rules: Rules::LineOnly,
            ..LineDecoder::new(delimiter, max_length)
        }
    }

    /// The delimiter.
    pub fn delimiter(&self) -> &Bytes {
        &self.delimiter
    }

    /// The longest line accepted, without its delimiter.
    pub fn max_length(&self) -> usize {
        self.max_length
    }

    pub(crate) fn set_delimiter(&mut self, delimiter: Bytes) {
        self.delimiter = checked_delimiter(delimiter);
        self.reset();
    }

    pub(crate) fn set_max_length(&mut self, max_length: usize) {
        self.max_length = max_length;
    }

    /// Forgets how far the buffer was searched: call when the buffer was
    /// changed other than by appending.
    pub(crate) fn reset(&mut self) {
        self.searched = 0;
    }

    /// Takes the next line (or the too-long bytes) off the front of `src`;
    /// `None` to wait for more input.
    pub(crate) fn next_line(&mut self, src: &mut BytesMut) -> Option<LineStep> {
        let dlen = self.delimiter.len();
        if self.searched > src.len() {
            self.searched = 0;
        }
        loop {
            let from = self.searched.saturating_sub(dlen - 1);
            let found = find(&src[from..], &self.delimiter).map(|at| at + from);
            if self.discarding {
                match found {
                    Some(at) => {
                        let _ = src.split_to(at + dlen);
                        self.discarding = false;
                        self.searched = 0;
                        continue;
                    }
                    None => {
                        // Keep what may be the start of the delimiter.
                        let keep = (dlen - 1).min(src.len());
                        let _ = src.split_to(src.len() - keep);
                        self.searched = src.len();
                        return None;
                    }
                }
            }
            return match (found, self.rules) {
                (Some(at), Rules::LineReceiver) => {
                    self.searched = 0;
                    if at > self.max_length {
                        Some(LineStep::TooLong(src.split().freeze()))
                    } else {
                        let line = src.split_to(at).freeze();
                        let _ = src.split_to(dlen);
                        Some(LineStep::Line(line))
                    }
                }
                (Some(at), Rules::LineOnly) => {
                    self.searched = 0;
                    let line = src.split_to(at).freeze();
                    let _ = src.split_to(dlen);
                    if at > self.max_length {
                        Some(LineStep::TooLong(line))
                    } else {
                        Some(LineStep::Line(line))
                    }
                }
                (None, Rules::LineReceiver) => {
                    // checked: with a limit near usize::MAX ("no limit")
                    // no tail can reach it.
                    let limit = self.max_length.checked_add(dlen);
                    if limit.is_some_and(|limit| src.len() >= limit) {
                        self.searched = 0;
                        Some(LineStep::TooLong(src.split().freeze()))
                    } else {
                        self.searched = src.len();
                        None
                    }
                }
                (None, Rules::LineOnly) => {
                    if self.tail_may_be_a_line(src) {
                        self.searched = src.len();
                        None
                    } else {
                        let tail = src.split().freeze();
                        let keep = (dlen - 1).min(tail.len());
                        src.extend_from_slice(&tail[tail.len() - keep..]);
                        self.searched = src.len();
                        self.discarding = true;
                        Some(LineStep::TooLong(tail))
                    }
                }
            };
        }
    }

    /// `LineOnly` rules: whether a tail without a delimiter can still end as
    /// a line of at most `max_length` bytes.
    fn tail_may_be_a_line(&self, tail: &[u8]) -> bool {
        // ends_with first: it guarantees tail.len() >= k, so the
        // subtraction cannot underflow on a tail shorter than the delimiter.
        tail.len() <= self.max_length
            || (1..self.delimiter.len())
                .any(|k| tail.ends_with(&self.delimiter[..k]) && tail.len() - k <= self.max_length)
    }
}

impl Decoder for LineDecoder {
    type Item = Bytes;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, DecodeError> {
        match self.next_line(src) {
            None => Ok(None),
            Some(LineStep::Line(line)) => Ok(Some(line)),
            Some(LineStep::TooLong(data)) => {
                // The length of the offending line, as far as it is known.
                let length = match (self.rules, find(&data, &self.delimiter)) {
                    (Rules::LineReceiver, Some(at)) => at,
                    _ => data.len(),
                };
                Err(DecodeError::TooLongFrame {
                    length: length as u64,
                    max: self.max_length,
                })
            }
        }
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, DecodeError> {
        if let Some(line) = self.decode(src)? {
            return Ok(Some(line));
        }
        self.searched = 0;
        if std::mem::take(&mut self.discarding) || src.is_empty() {
            // What is left of a skipped line is not a truncated frame.
            src.clear();
            return Ok(None);
        }
        Err(DecodeError::Truncated {
            remaining: src.len(),
        })
    }
}

fn checked_delimiter(delimiter: Bytes) -> Bytes {
    assert!(!delimiter.is_empty(), "a line delimiter cannot be empty");
    delimiter
}

/// The first position of `needle` (non-empty) in `haystack`.
pub(crate) fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    match needle {
        [] => None,
        [byte] => memchr::memchr(*byte, haystack),
        _ => memchr::memmem::find(haystack, needle),
    }
}

#[cfg(test)]
mod tests {
    use super::find;

    #[test]
    fn find_finds_the_first_occurrence() {
        assert_eq!(find(b"abc\r\n", b"\r\n"), Some(3));
        assert_eq!(find(b"\r\r\n", b"\r\n"), Some(1));
        assert_eq!(find(b"\r", b"\r\n"), None);
        assert_eq!(find(b"", b"\n"), None);
        assert_eq!(find(b"xx\n", b"\n"), Some(2));
        assert_eq!(find(b"abab", b"bab"), Some(1));
    }
}
