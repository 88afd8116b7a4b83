//! [`HttpRequestEncoder`]: HTTP/1.1 requests from a head, body chunks and
//! an end (the encoding half of Netty's `HttpClientCodec`).

use bytes::{BufMut, Bytes, BytesMut};
use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderMap, Method, Request, StatusCode, Version};

use super::encoder::{check_headers, check_value, decimal, put_field, put_hex, Framing};
use super::error::HttpError;
use crate::codec::{EncodeError, Encoder};

/// One part of a request for [`HttpRequestEncoder`]: a
/// [`Head`](Self::Head), [`Body`](Self::Body) parts and an
/// [`End`](Self::End); or a [`Full`](Self::Full) request in one part.
#[derive(Debug)]
pub enum OutgoingRequest {
    /// The request line and headers.
    Head {
        /// The method, target (the URI's path and query; `*` for an
        /// `OPTIONS` without a path, the authority for `CONNECT`), version
        /// (HTTP/1.0 or 1.1; anything else is written as 1.1) and headers.
        request: Request<()>,
        /// How the body is framed.
        framing: Framing,
    },
    /// Body bytes: with [`Framing::Length`], no more than the length in
    /// all; with [`Framing::Chunked`], one chunk each (empty ones skipped).
    Body(Bytes),
    /// The end of the body, with trailer fields (only with chunked
    /// coding).
    End(HeaderMap),
    /// A whole request with a body of known length. An empty body gets no
    /// `Content-Length` unless the method is one that carries a body
    /// (`POST`, `PUT`, `PATCH` and methods the `http` crate does not know).
    Full(Request<Bytes>),
}

/// Encodes HTTP/1.1 requests from [`OutgoingRequest`]s: the encoding half
/// of Netty's `HttpClientCodec`.
///
/// ```text
/// POST /upload?x=1 HTTP/1.1\r\n            method, path and query
/// host: example.com\r\n                    the head's headers
/// content-length: 5\r\n                    from the framing
/// \r\n
/// hello
/// ```
///
/// The encoder writes the `Content-Length` or `Transfer-Encoding` field of
/// the framing itself, dropping any the head carries. It adds no other
/// field: `Host` is the client's to set (RFC 9112 §3.2).
///
/// # Errors
///
/// An [`HttpError`] (status 500: the fault is the sender's), with nothing
/// written, for a CR, LF or NUL in a header value, a trailer value or the
/// target (request splitting), for parts out of order, for more body than
/// the `Content-Length` said or an end before all of it, for chunked
/// coding in an HTTP/1.0 request, and for [`Framing::UntilClose`] (a
/// request cannot end its body by closing).
///
/// # Examples
///
/// ```
/// use bytes::{Bytes, BytesMut};
/// use http::Request;
/// use twill_protocols::codec::Encoder;
/// use twill_protocols::http::{HttpRequestEncoder, OutgoingRequest};
///
/// let request = Request::post("http://example.com/echo")
///     .header("host", "example.com")
///     .body(Bytes::from_static(b"hello"))?;
/// let mut output = BytesMut::new();
/// HttpRequestEncoder::new().encode(OutgoingRequest::Full(request), &mut output)?;
/// assert_eq!(
///     &output[..],
///     b"POST /echo HTTP/1.1\r\nhost: example.com\r\ncontent-length: 5\r\n\r\nhello"
/// );
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Default)]
pub struct HttpRequestEncoder {
    state: Out,
}

#[derive(Debug, Default, Clone, Copy)]
enum Out {
    #[default]
    Idle,
    Length {
        remaining: u64,
    },
    Chunked,
}

impl HttpRequestEncoder {
    /// An encoder waiting for a request head.
    pub fn new() -> Self {
        HttpRequestEncoder::default()
    }

    /// Whether the encoder is between requests.
    pub fn is_idle(&self) -> bool {
        matches!(self.state, Out::Idle)
    }

    fn head(
        &mut self,
        request: &Request<()>,
        framing: Option<Framing>,
        dst: &mut BytesMut,
    ) -> Result<(), HttpError> {
        if !matches!(self.state, Out::Idle) {
            return Err(order("a head before the previous request ended"));
        }
        if framing == Some(Framing::UntilClose) {
            // Closing ends the client's sending and the server's answer
            // with it: a request body needs a length or chunks.
            return Err(fault("a request body cannot be ended by the close"));
        }
        check_headers(request.headers())?;
        let target = request_target(request);
        if target.is_empty() || target.contains(' ') || check_value(target.as_bytes()).is_err() {
            return Err(fault("space, CR, LF or NUL in the request target"));
        }
        let version = if request.version() == Version::HTTP_10 {
            if framing == Some(Framing::Chunked) {
                return Err(fault("chunked coding in an HTTP/1.0 request"));
            }
            "HTTP/1.0"
        } else {
            "HTTP/1.1"
        };
        let method = request.method().as_str();
        dst.reserve(method.len() + target.len() + 32 * (request.headers().len() + 2));
        dst.put_slice(method.as_bytes());
        dst.put_u8(b' ');
        dst.put_slice(target.as_bytes());
        dst.put_u8(b' ');
        dst.put_slice(version.as_bytes());
        dst.put_slice(b"\r\n");
        for (name, value) in request.headers() {
            if name == CONTENT_LENGTH || name == TRANSFER_ENCODING {
                continue;
            }
            put_field(dst, name.as_str().as_bytes(), value.as_bytes());
        }
        match framing {
            Some(Framing::Length(n)) => {
                put_field(dst, b"content-length", decimal(n, &mut [0; 20]));
            }
            Some(Framing::Chunked) => put_field(dst, b"transfer-encoding", b"chunked"),
            Some(Framing::UntilClose) | None => {}
        }
        dst.put_slice(b"\r\n");
        self.state = match framing {
            None | Some(Framing::UntilClose) => Out::Length { remaining: 0 },
            Some(Framing::Length(n)) => Out::Length { remaining: n },
            Some(Framing::Chunked) => Out::Chunked,
        };
        Ok(())
    }

    fn body(&mut self, data: Bytes, dst: &mut BytesMut) -> Result<Option<Bytes>, HttpError> {
        match self.state {
            Out::Idle => Err(order("body before a head")),
            Out::Length { remaining } => {
                let len = data.len() as u64;
                if len > remaining {
                    return Err(fault("more body than the Content-Length"));
                }
                self.state = Out::Length {
                    remaining: remaining - len,
                };
                Ok((!data.is_empty()).then_some(data))
            }
            Out::Chunked => {
                if !data.is_empty() {
                    dst.reserve(data.len() + 20);
                    put_hex(dst, data.len());
                    dst.put_slice(b"\r\n");
                    dst.put_slice(&data);
                    dst.put_slice(b"\r\n");
                }
                Ok(None)
            }
        }
    }

    fn end(&mut self, trailers: &HeaderMap, dst: &mut BytesMut) -> Result<(), HttpError> {
        match self.state {
            Out::Idle => return Err(order("end before a head")),
            Out::Length { remaining } => {
                if remaining > 0 {
                    return Err(fault(&format!(
                        "request ended {remaining} bytes short of its Content-Length"
                    )));
                }
                if !trailers.is_empty() {
                    return Err(order("trailers without chunked coding"));
                }
            }
            Out::Chunked => {
                check_headers(trailers)?;
                dst.put_slice(b"0\r\n");
                for (name, value) in trailers {
                    put_field(dst, name.as_str().as_bytes(), value.as_bytes());
                }
                dst.put_slice(b"\r\n");
            }
        }
        self.state = Out::Idle;
        Ok(())
    }

    fn encode_part(
        &mut self,
        item: OutgoingRequest,
        dst: &mut BytesMut,
    ) -> Result<Option<Bytes>, HttpError> {
        match item {
            OutgoingRequest::Head { request, framing } => {
                self.head(&request, Some(framing), dst).map(|()| None)
            }
            OutgoingRequest::Body(data) => self.body(data, dst),
            OutgoingRequest::End(trailers) => self.end(&trailers, dst).map(|()| None),
            OutgoingRequest::Full(request) => {
                let (parts, body) = request.into_parts();
                let head = Request::from_parts(parts, ());
                let framing = if body.is_empty() && !carries_body(head.method()) {
                    None
                } else {
                    Some(Framing::Length(body.len() as u64))
                };
                self.head(&head, framing, dst)?;
                let tail = self.body(body, dst)?;
                self.end(&HeaderMap::new(), dst)?;
                Ok(tail)
            }
        }
    }
}

impl Encoder<OutgoingRequest> for HttpRequestEncoder {
    fn encode(&mut self, item: OutgoingRequest, dst: &mut BytesMut) -> Result<(), EncodeError> {
        if let Some(tail) = self.encode_parts(item, dst)? {
            dst.extend_from_slice(&tail);
        }
        Ok(())
    }

    fn encode_parts(
        &mut self,
        item: OutgoingRequest,
        dst: &mut BytesMut,
    ) -> Result<Option<Bytes>, EncodeError> {
        let mark = dst.len();
        let saved = self.state;
        self.encode_part(item, dst).map_err(|err| {
            // Nothing of a refused part reaches the wire.
            dst.truncate(mark);
            self.state = saved;
            err.into()
        })
    }
}

/// The request-target of RFC 9112 §3.2: origin form (path and query),
/// authority form for `CONNECT`, asterisk form for a server-wide
/// `OPTIONS`.
fn request_target<B>(request: &Request<B>) -> String {
    let uri = request.uri();
    if request.method() == Method::CONNECT {
        return uri.authority().map(|a| a.to_string()).unwrap_or_default();
    }
    match uri.path_and_query() {
        Some(pq) if pq.as_str() == "*" || pq.as_str().starts_with('/') => pq.to_string(),
        Some(pq) if !pq.as_str().is_empty() => format!("/{pq}"),
        _ if request.method() == Method::OPTIONS => "*".to_owned(),
        _ => "/".to_owned(),
    }
}

/// Whether an empty body still gets `Content-Length: 0`: for the methods
/// whose requests are expected to carry one.
fn carries_body(method: &Method) -> bool {
    !matches!(
        *method,
        Method::GET
            | Method::HEAD
            | Method::DELETE
            | Method::OPTIONS
            | Method::TRACE
            | Method::CONNECT
    )
}

fn fault(what: &str) -> HttpError {
    HttpError::new(StatusCode::INTERNAL_SERVER_ERROR, what.to_owned())
}

fn order(what: &str) -> HttpError {
    fault(&format!("request parts out of order: {what}"))
}
