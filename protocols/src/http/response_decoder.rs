//! [`HttpResponseDecoder`]: HTTP/1.x responses as a head, body chunks and
//! an end (the decoding half of Netty's `HttpClientCodec`).

use std::collections::VecDeque;

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, Method, Response, StatusCode, Version};

use super::body::{
    declared_framing, header_map, headers_too_large, BodyStep, ChunkedBody, Declared, Rescan,
};
use super::decoder::{DEFAULT_MAX_HEADERS, DEFAULT_MAX_HEADER_BYTES};
use super::error::HttpError;
use crate::codec::{DecodeError, Decoder};

/// The default longest status line: 8 KiB.
pub const DEFAULT_MAX_STATUS_LINE: usize = 8 * 1024;

/// The most requests [`HttpResponseDecoder::expect`] remembers at once:
/// a client never has more than this many outstanding on one connection.
pub const MAX_EXPECTED_RESPONSES: usize = 1024;

/// How the body of a decoded response is framed, told with its head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseBodyKind {
    /// No body: the response to `HEAD`, a `1xx`, `204` or `304`, or
    /// `Content-Length: 0`. No [`Body`](IncomingResponse::Body) or
    /// [`End`](IncomingResponse::End) follows.
    Empty,
    /// `Content-Length` bytes of body follow.
    Length(u64),
    /// A body in chunked transfer coding follows.
    Chunked,
    /// Neither framing field: the body is everything until the server
    /// closes the connection, which cannot be used again. The
    /// [`End`](IncomingResponse::End) comes from
    /// [`decode_eof`](Decoder::decode_eof).
    UntilClose,
}

/// One part of a response, as [`HttpResponseDecoder`] yields them: a
/// [`Head`](Self::Head), then (unless its [`ResponseBodyKind`] is `Empty`)
/// any number of [`Body`](Self::Body) chunks and one [`End`](Self::End).
#[derive(Debug)]
pub enum IncomingResponse {
    /// The status line and headers, and how the body is framed.
    Head(Response<()>, ResponseBodyKind),
    /// Body bytes as they arrived (split off the input, not copied); never
    /// empty.
    Body(Bytes),
    /// The end of the body: its last bytes (possibly empty) and the
    /// trailer fields of a chunked body (empty otherwise).
    End(Bytes, HeaderMap),
}

/// Decodes HTTP/1.0 and HTTP/1.1 responses (RFC 9112) into
/// [`IncomingResponse`]s: the decoding half of Netty's `HttpClientCodec`.
///
/// Whether a response has a body depends on the request it answers (none
/// after `HEAD`), so the client tells the decoder the method of each
/// request it sends, in order, with [`expect`](Self::expect). A response
/// that arrives with no request outstanding is an error.
///
/// ```text
/// HTTP/1.1 200 OK\r\n                  status line    ≤ max_status_line
/// Transfer-Encoding: chunked\r\n       header lines   ≤ max_header_bytes,
/// \r\n                                                  ≤ max_headers fields
/// 5\r\nhello\r\n                       → Body("hello")
/// 0\r\nChecksum: abc\r\n\r\n           → End("", trailers)
/// ```
///
/// The body is framed, as RFC 9112 §6.3 orders: not at all after `HEAD`
/// and for `1xx`, `204` and `304`; else by chunked coding, by
/// `Content-Length`, or (with neither) by the server closing the
/// connection ([`ResponseBodyKind::UntilClose`], ended in
/// [`decode_eof`](Decoder::decode_eof)).
///
/// Interim responses (`1xx` but `101`, e.g. `100 Continue`) are skipped,
/// unless [`informational`](Self::informational) asks for them: they then
/// come as heads of kind `Empty`, and the final response to the same
/// request follows. A `101 Switching Protocols` is final: after it the
/// connection speaks another protocol, and the decoder yields nothing
/// more, leaving the bytes after the head in the buffer for it.
///
/// # Errors
///
/// An [`HttpError`] (in [`DecodeError::Other`]), after which the decoder
/// is poisoned (the connection's framing is lost). Its status tells what
/// kind of fault it is, with the codes a server would answer a request
/// with the same fault (a proxy answers `502` to any of them):
///
/// | input | status |
/// |---|---|
/// | status line longer than `max_status_line` | 414 |
/// | header lines over `max_header_bytes`, or over `max_headers` fields | 431 |
/// | malformed status line, header name or value | 400 |
/// | `Content-Length` and `Transfer-Encoding` both, two `Content-Length`s, a bad one | 400 |
/// | a transfer coding other than `chunked` | 400 or 501 |
/// | a malformed chunk size or chunk end | 400 |
/// | a body over [`max_body`](Self::max_body) (from the head when its length says so) | 413 |
/// | a response with no request outstanding | 400 |
/// | the server closed in the middle of a response ([`decode_eof`](Decoder::decode_eof)) | 400 |
///
/// # Examples
///
/// ```
/// use bytes::BytesMut;
/// use http::Method;
/// use twill_protocols::codec::Decoder;
/// use twill_protocols::http::{HttpResponseDecoder, IncomingResponse, ResponseBodyKind};
///
/// let mut decoder = HttpResponseDecoder::new();
/// decoder.expect(Method::HEAD)?;
/// decoder.expect(Method::GET)?;
/// let mut input = BytesMut::from(
///     &b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n\
///        HTTP/1.1 100 Continue\r\n\r\n\
///        HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"[..],
/// );
/// // The answer to HEAD has no body, whatever its Content-Length says.
/// let Some(IncomingResponse::Head(head, ResponseBodyKind::Empty)) = decoder.decode(&mut input)?
/// else {
///     panic!("a head without a body");
/// };
/// assert_eq!(head.headers()["content-length"], "5");
/// // The 100 Continue is skipped; the GET's response follows.
/// assert!(matches!(
///     decoder.decode(&mut input)?,
///     Some(IncomingResponse::Head(_, ResponseBodyKind::Length(5)))
/// ));
/// let Some(IncomingResponse::End(body, _)) = decoder.decode(&mut input)? else {
///     panic!("the body");
/// };
/// assert_eq!(&body[..], b"hello");
/// assert_eq!(decoder.outstanding(), 0);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct HttpResponseDecoder {
    max_status_line: usize,
    max_header_bytes: usize,
    max_headers: usize,
    max_body: Option<u64>,
    informational: bool,
    expected: VecDeque<Method>,
    state: State,
    /// Body bytes of the current response so far, against `max_body`.
    body_seen: u64,
    rescan: Rescan,
}

#[derive(Debug, Clone)]
enum State {
    Head,
    Length { remaining: u64 },
    Chunked(ChunkedBody),
    UntilClose,
    Upgraded,
    Failed(HttpError),
}

impl Default for HttpResponseDecoder {
    fn default() -> Self {
        HttpResponseDecoder::new()
    }
}

impl HttpResponseDecoder {
    /// A decoder with the default limits (status line 8 KiB, header lines
    /// 64 KiB, 100 fields, no body limit) that skips interim responses.
    pub fn new() -> Self {
        HttpResponseDecoder {
            max_status_line: DEFAULT_MAX_STATUS_LINE,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            max_headers: DEFAULT_MAX_HEADERS,
            max_body: None,
            informational: false,
            expected: VecDeque::new(),
            state: State::Head,
            body_seen: 0,
            rescan: Rescan::default(),
        }
    }

    /// The longest status line, without its CRLF (at least 16 bytes).
    pub fn max_status_line(mut self, max: usize) -> Self {
        self.max_status_line = max.max(16);
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

    /// The largest body of one response, or `None` for no limit (the
    /// default: the decoder holds no body, it hands out what arrives).
    pub fn max_body(mut self, max: Option<u64>) -> Self {
        self.max_body = max;
        self
    }

    /// Whether interim (`1xx`) responses are handed out as heads (by
    /// default they are skipped).
    pub fn informational(mut self, surface: bool) -> Self {
        self.informational = surface;
        self
    }

    /// A request with `method` was sent: the next response not yet
    /// expected answers it.
    ///
    /// # Errors
    ///
    /// An [`HttpError`] (status 500) if [`MAX_EXPECTED_RESPONSES`] are
    /// outstanding already.
    pub fn expect(&mut self, method: Method) -> Result<(), HttpError> {
        if self.expected.len() >= MAX_EXPECTED_RESPONSES {
            return Err(HttpError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "too many requests outstanding",
            ));
        }
        self.expected.push_back(method);
        Ok(())
    }

    /// How many requests await their response.
    pub fn outstanding(&self) -> usize {
        self.expected.len()
    }

    /// Whether the decoder is between responses (nothing of one seen yet,
    /// or the last one complete).
    pub fn is_idle(&self) -> bool {
        matches!(self.state, State::Head)
    }

    fn fail(&mut self, err: HttpError) -> DecodeError {
        self.state = State::Failed(err.clone());
        err.into()
    }

    fn count_body(&mut self, len: usize) -> Result<(), HttpError> {
        self.body_seen += len as u64;
        match self.max_body {
            Some(max) if self.body_seen > max => Err(body_too_large(max)),
            _ => Ok(()),
        }
    }

    fn decode_head(&mut self, src: &mut BytesMut) -> Result<Option<IncomingResponse>, HttpError> {
        loop {
            if src.is_empty() {
                return Ok(None);
            }
            let line_end = memchr::memchr(b'\n', src);
            match line_end {
                Some(n) if n > self.max_status_line + 1 => return Err(status_line_too_long()),
                None if src.len() > self.max_status_line + 1 => return Err(status_line_too_long()),
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
            let mut headers = vec![httparse::EMPTY_HEADER; self.max_headers];
            let mut parsed = httparse::Response::new(&mut headers);
            let head_len = match parsed.parse(src) {
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
                Err(err) => return Err(HttpError::bad_request(format!("malformed head: {err}"))),
            };
            self.rescan.reset();
            if head_len - line_len > self.max_header_bytes {
                return Err(headers_too_large());
            }
            let status = StatusCode::from_u16(parsed.code.unwrap_or(0))
                .map_err(|_| HttpError::bad_request("invalid status code"))?;
            let version = match parsed.version {
                Some(0) => Version::HTTP_10,
                _ => Version::HTTP_11,
            };
            let map = header_map(parsed.headers)?;
            let Some(method) = self.expected.front().cloned() else {
                return Err(HttpError::bad_request(
                    "a response with no request outstanding",
                ));
            };
            let interim = status.is_informational() && status != StatusCode::SWITCHING_PROTOCOLS;
            let kind = if interim
                || method == Method::HEAD
                || status == StatusCode::NO_CONTENT
                || status == StatusCode::NOT_MODIFIED
                || status == StatusCode::SWITCHING_PROTOCOLS
            {
                ResponseBodyKind::Empty
            } else {
                match declared_framing(&map, version)? {
                    Declared::Nothing => ResponseBodyKind::UntilClose,
                    Declared::Length(0) => ResponseBodyKind::Empty,
                    Declared::Length(n) => ResponseBodyKind::Length(n),
                    Declared::Chunked => ResponseBodyKind::Chunked,
                }
            };
            src.advance(head_len);
            if interim && !self.informational {
                continue;
            }
            if let (ResponseBodyKind::Length(n), Some(max)) = (kind, self.max_body) {
                if n > max {
                    return Err(body_too_large(max));
                }
            }
            if !interim {
                self.expected.pop_front();
            }
            self.body_seen = 0;
            self.state = match kind {
                _ if status == StatusCode::SWITCHING_PROTOCOLS => State::Upgraded,
                ResponseBodyKind::Empty => State::Head,
                ResponseBodyKind::Length(n) => State::Length { remaining: n },
                ResponseBodyKind::Chunked => State::Chunked(ChunkedBody::new()),
                ResponseBodyKind::UntilClose => State::UntilClose,
            };
            let mut response = Response::new(());
            *response.status_mut() = status;
            *response.version_mut() = version;
            *response.headers_mut() = map;
            return Ok(Some(IncomingResponse::Head(response, kind)));
        }
    }

    fn step(&mut self, src: &mut BytesMut) -> Result<Option<IncomingResponse>, HttpError> {
        match self.state.clone() {
            State::Failed(err) => Err(err),
            State::Upgraded => Ok(None),
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
                    Ok(Some(IncomingResponse::End(data, HeaderMap::new())))
                } else {
                    self.state = State::Length { remaining: left };
                    Ok(Some(IncomingResponse::Body(data)))
                }
            }
            State::Chunked(mut body) => {
                let step = body.decode(src, self.max_header_bytes, self.max_headers)?;
                self.state = State::Chunked(body);
                match step {
                    None => Ok(None),
                    Some(BodyStep::Data(data)) => {
                        self.count_body(data.len())?;
                        Ok(Some(IncomingResponse::Body(data)))
                    }
                    Some(BodyStep::End(trailers)) => {
                        self.state = State::Head;
                        Ok(Some(IncomingResponse::End(Bytes::new(), trailers)))
                    }
                }
            }
            State::UntilClose => {
                if src.is_empty() {
                    return Ok(None);
                }
                self.count_body(src.len())?;
                Ok(Some(IncomingResponse::Body(src.split().freeze())))
            }
        }
    }
}

impl Decoder for HttpResponseDecoder {
    type Item = IncomingResponse;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<IncomingResponse>, DecodeError> {
        self.step(src).map_err(|err| self.fail(err))
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<IncomingResponse>, DecodeError> {
        if let Some(part) = self.decode(src)? {
            return Ok(Some(part));
        }
        match self.state {
            State::UntilClose => {
                self.state = State::Head;
                Ok(Some(IncomingResponse::End(Bytes::new(), HeaderMap::new())))
            }
            State::Head if src.is_empty() => Ok(None),
            State::Upgraded => Ok(None),
            _ => Err(self.fail(HttpError::bad_request(
                "connection closed in the middle of a response",
            ))),
        }
    }
}

fn status_line_too_long() -> HttpError {
    HttpError::new(StatusCode::URI_TOO_LONG, "status line too long")
}

fn body_too_large(max: u64) -> HttpError {
    HttpError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("response body over {max} bytes"),
    )
}
