//! [`HttpRequestDecoder`]: HTTP/1.x requests as a head, body chunks and an
//! end (Netty's `HttpRequestDecoder`).

use std::mem::MaybeUninit;

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, Method, Request, StatusCode, Uri, Version};

use super::body::{
    declared_framing, header_map, headers_too_large, BodyStep, ChunkedBody, Declared, Rescan,
};
use super::error::HttpError;
use crate::codec::{DecodeError, Decoder};

/// The default longest request line (method, target and version): 8 KiB.
pub const DEFAULT_MAX_REQUEST_LINE: usize = 8 * 1024;
/// The default most bytes of header lines in a head (or of trailers): 64 KiB.
pub const DEFAULT_MAX_HEADER_BYTES: usize = 64 * 1024;
/// The default most header fields in a head (or trailers): 100.
pub const DEFAULT_MAX_HEADERS: usize = 100;

/// Up to this many field slots live on the stack while a head is parsed.
const INLINE_HEADERS: usize = 128;

/// How the body of a decoded request is framed, told with its head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// No body (no `Content-Length`, or `Content-Length: 0`): the head is
    /// the whole request and no [`Body`](RequestPart::Body) or
    /// [`End`](RequestPart::End) follows.
    Empty,
    /// `Content-Length` bytes of body follow.
    Length(u64),
    /// A body in chunked transfer coding follows, of unknown length.
    Chunked,
}

/// One part of a request, as [`HttpRequestDecoder`] yields them: a
/// [`Head`](Self::Head), then (unless its [`BodyKind`] is `Empty`) any
/// number of [`Body`](Self::Body) chunks and one [`End`](Self::End).
#[derive(Debug)]
pub enum RequestPart {
    /// The request line and headers, and how the body is framed.
    Head(Request<()>, BodyKind),
    /// Body bytes as they arrived (split off the input, not copied); never
    /// empty. Their cuts follow the reads, not the sender's chunks.
    Body(Bytes),
    /// The end of the body: its last bytes (possibly empty) and the
    /// trailer fields of a chunked body (empty otherwise).
    End(Bytes, HeaderMap),
}

/// Decodes HTTP/1.0 and HTTP/1.1 requests (RFC 9112) into
/// [`RequestPart`]s, heads parsed by `httparse`, with the `http` crate's
/// types: Netty's `HttpRequestDecoder`.
///
/// ```text
/// POST /upload HTTP/1.1\r\n            request line   ≤ max_request_line
/// Host: example.com\r\n                header lines   ≤ max_header_bytes,
/// Transfer-Encoding: chunked\r\n                        ≤ max_headers fields
/// \r\n
/// 5;ext=ignored\r\n                    chunk size (hex), extensions ignored
/// hello\r\n                            chunk data      → Body("hello")
/// 0\r\n                                last chunk
/// Checksum: abc\r\n                    trailers        → End("", trailers)
/// \r\n
/// ```
///
/// A body is framed by `Content-Length` or by chunked transfer coding; a
/// request with neither has no body. Body bytes are handed out as they
/// arrive, never buffered whole, so only the head (at most
/// `max_request_line + max_header_bytes`), a chunk-size line or the
/// trailers are ever held back, plus one read.
///
/// # Errors
///
/// Each refusal is an [`HttpError`] (in [`DecodeError::Other`]) with the
/// status to answer; the decoder is then poisoned and returns the same
/// error for ever, since the connection must be closed:
///
/// | input | status |
/// |---|---|
/// | request line longer than `max_request_line` | 414 |
/// | header lines over `max_header_bytes`, or over `max_headers` fields | 431 |
/// | malformed line, method, target, header name or value (bare CR, obs-fold) | 400 |
/// | `Content-Length` and `Transfer-Encoding` both (request smuggling) | 400 |
/// | two `Content-Length` fields, or one that is not a decimal number | 400 |
/// | `Transfer-Encoding` whose last coding is not `chunked`, or in HTTP/1.0 | 400 |
/// | a coding other than `chunked` (e.g. `gzip, chunked`) | 501 |
/// | a chunk size that is not hex or overflows 64 bits, data not followed by CRLF | 400 |
/// | a version other than HTTP/1.0 and HTTP/1.1 | 505 |
/// | the peer closed in the middle of a request ([`decode_eof`](Decoder::decode_eof)) | 400 |
///
/// # Differences from Netty
///
/// Netty hands out errors as a `DecoderResult` on a synthetic message and
/// reads on; here the error ends the connection. Netty's body chunks are
/// at most `maxChunkSize`; here they are whatever the read brought.
#[derive(Debug, Clone)]
pub struct HttpRequestDecoder {
    max_request_line: usize,
    max_header_bytes: usize,
    max_headers: usize,
    state: State,
    rescan: Rescan,
}

#[derive(Debug, Clone)]
enum State {
    Head,
    Length { remaining: u64 },
    Chunked(ChunkedBody),
    Failed(HttpError),
}

impl Default for HttpRequestDecoder {
    fn default() -> Self {
        HttpRequestDecoder::new()
    }
}

impl HttpRequestDecoder {
    /// A decoder with the default limits (request line 8 KiB, header lines
    /// 64 KiB, 100 fields).
    pub fn new() -> Self {
        HttpRequestDecoder {
            max_request_line: DEFAULT_MAX_REQUEST_LINE,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            max_headers: DEFAULT_MAX_HEADERS,
            state: State::Head,
            rescan: Rescan::default(),
        }
    }

    /// The longest request line, without its CRLF (at least 16 bytes).
    pub fn max_request_line(mut self, max: usize) -> Self {
        self.max_request_line = max.max(16);
        self
    }

    /// The most bytes of header lines in a head, or of trailer lines (at
    /// least 64).
    pub fn max_header_bytes(mut self, max: usize) -> Self {
        self.max_header_bytes = max.max(64);
        self
    }

    /// The most header fields in a head, or trailer fields (at least 1).
    pub fn max_headers(mut self, max: usize) -> Self {
        self.max_headers = max.max(1);
        self
    }

    /// Whether the decoder is between requests (nothing of a request seen
    /// yet, or the last one complete).
    pub fn is_idle(&self) -> bool {
        matches!(self.state, State::Head)
    }

    fn fail(&mut self, err: HttpError) -> DecodeError {
        self.state = State::Failed(err.clone());
        err.into()
    }

    fn decode_head(&mut self, src: &mut BytesMut) -> Result<Option<RequestPart>, HttpError> {
        // RFC 9112 §2.2: empty lines before a request line are ignored.
        while src.starts_with(b"\r\n") || src.starts_with(b"\n") {
            src.advance(if src[0] == b'\r' { 2 } else { 1 });
        }
        if src.is_empty() || src[..] == b"\r"[..] {
            return Ok(None);
        }
        let line_end = memchr::memchr(b'\n', src);
        match line_end {
            Some(n) if n > self.max_request_line + 1 => return Err(line_too_long()),
            None if src.len() > self.max_request_line + 1 => return Err(line_too_long()),
            None => return Ok(None),
            Some(_) => {}
        }
        let line_len = line_end.unwrap_or(0) + 1;
        if !self.rescan.new_line_since_last_parse(src) {
            if src.len() - line_len > self.max_header_bytes {
                return Err(headers_too_large());
            }
            return Ok(None);
        }
        // Slots for the fields, left uninitialized: a zeroed array of the
        // maximum would cost more than parsing a small head.
        let mut inline = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; INLINE_HEADERS];
        let mut spilled = Vec::new();
        let slots = if self.max_headers <= INLINE_HEADERS {
            &mut inline[..self.max_headers]
        } else {
            spilled.resize_with(self.max_headers, MaybeUninit::uninit);
            &mut spilled[..]
        };
        let mut req = httparse::Request::new(&mut []);
        let head_len = match req.parse_with_uninit_headers(src, slots) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => {
                if src.len() - line_len > self.max_header_bytes {
                    return Err(headers_too_large());
                }
                self.rescan.saw(src.len());
                return Ok(None);
            }
            Err(httparse::Error::TooManyHeaders) => {
                return Err(HttpError::new(
                    StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                    format!("more than {} header fields", self.max_headers),
                ))
            }
            Err(httparse::Error::Version) if names_a_version(&src[..line_len]) => {
                return Err(HttpError::new(
                    StatusCode::HTTP_VERSION_NOT_SUPPORTED,
                    "not HTTP/1.0 or HTTP/1.1",
                ))
            }
            Err(err) => return Err(HttpError::bad_request(format!("malformed head: {err}"))),
        };
        self.rescan.reset();
        if head_len - line_len > self.max_header_bytes {
            return Err(headers_too_large());
        }
        let method = Method::from_bytes(req.method.unwrap_or("").as_bytes())
            .map_err(|_| HttpError::bad_request("invalid method"))?;
        let uri: Uri = req
            .path
            .unwrap_or("")
            .parse()
            .map_err(|_| HttpError::bad_request("invalid request target"))?;
        let version = match req.version {
            Some(0) => Version::HTTP_10,
            _ => Version::HTTP_11,
        };
        let map = header_map(req.headers)?;
        let kind = match declared_framing(&map, version)? {
            Declared::Nothing | Declared::Length(0) => BodyKind::Empty,
            Declared::Length(n) => BodyKind::Length(n),
            Declared::Chunked => BodyKind::Chunked,
        };
        src.advance(head_len);
        let mut request = Request::new(());
        *request.method_mut() = method;
        *request.uri_mut() = uri;
        *request.version_mut() = version;
        *request.headers_mut() = map;
        self.state = match kind {
            BodyKind::Empty => State::Head,
            BodyKind::Length(n) => State::Length { remaining: n },
            BodyKind::Chunked => State::Chunked(ChunkedBody::new()),
        };
        Ok(Some(RequestPart::Head(request, kind)))
    }

    fn step(&mut self, src: &mut BytesMut) -> Result<Option<RequestPart>, HttpError> {
        match self.state.clone() {
            State::Failed(err) => Err(err),
            State::Head => self.decode_head(src),
            State::Length { remaining } => {
                if src.is_empty() {
                    return Ok(None);
                }
                let take = usize::try_from(remaining).map_or(src.len(), |r| r.min(src.len()));
                let data = src.split_to(take).freeze();
                let left = remaining - take as u64;
                if left == 0 {
                    self.state = State::Head;
                    Ok(Some(RequestPart::End(data, HeaderMap::new())))
                } else {
                    self.state = State::Length { remaining: left };
                    Ok(Some(RequestPart::Body(data)))
                }
            }
            State::Chunked(mut body) => {
                let step = body.decode(src, self.max_header_bytes, self.max_headers)?;
                self.state = State::Chunked(body);
                Ok(step.map(|step| match step {
                    BodyStep::Data(data) => RequestPart::Body(data),
                    BodyStep::End(trailers) => {
                        self.state = State::Head;
                        RequestPart::End(Bytes::new(), trailers)
                    }
                }))
            }
        }
    }
}

impl Decoder for HttpRequestDecoder {
    type Item = RequestPart;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<RequestPart>, DecodeError> {
        self.step(src).map_err(|err| self.fail(err))
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<RequestPart>, DecodeError> {
        if let Some(part) = self.decode(src)? {
            return Ok(Some(part));
        }
        let idle =
            matches!(self.state, State::Head) && src.iter().all(|&b| b == b'\r' || b == b'\n');
        if idle {
            src.clear();
            return Ok(None);
        }
        Err(self.fail(HttpError::bad_request(
            "connection closed in the middle of a request",
        )))
    }
}

/// Whether the request line is three words ending in a well-formed
/// `HTTP/x.y` that is just not one spoken here (505), rather than garbage
/// (400).
fn names_a_version(line: &[u8]) -> bool {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let words: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
    matches!(words[..], [method, target, version]
        if !method.is_empty() && !target.is_empty() && names_version(version))
}

fn names_version(word: &[u8]) -> bool {
    matches!(word, [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
        if major.is_ascii_digit() && minor.is_ascii_digit())
}

fn line_too_long() -> HttpError {
    HttpError::new(StatusCode::URI_TOO_LONG, "request line too long")
}
