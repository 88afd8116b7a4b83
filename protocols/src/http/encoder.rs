//! [`HttpResponseEncoder`]: HTTP/1.1 responses from a head, body chunks and
//! an end (Netty's `HttpResponseEncoder`).

use bytes::{BufMut, Bytes, BytesMut};
use http::header::{CONTENT_LENGTH, DATE, SERVER, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, Version};

use super::error::HttpError;
use crate::codec::{EncodeError, Encoder};

/// How the body of a response is framed on the wire; the encoder writes
/// the matching `Content-Length` or `Transfer-Encoding` field itself
/// (dropping any the head carries, so the two cannot disagree).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// A body of exactly this many bytes: `Content-Length: n`.
    Length(u64),
    /// A body of unknown length, streamed: `Transfer-Encoding: chunked`,
    /// each [`Body`](ResponsePart::Body) part one chunk.
    Chunked,
    /// A body that ends when the server closes the connection: no
    /// framing field. The only way to stream a body of unknown length to
    /// an HTTP/1.0 client; the connection must close after it.
    UntilClose,
}

/// One part of a response for [`HttpResponseEncoder`]: a
/// [`Head`](Self::Head), [`Body`](Self::Body) parts and an
/// [`End`](Self::End); or a [`Full`](Self::Full) response in one part.
#[derive(Debug)]
pub enum ResponsePart {
    /// The status line and headers.
    Head {
        /// The status, version (HTTP/1.0 or 1.1; anything else is written
        /// as 1.1) and headers.
        response: Response<()>,
        /// How the body is framed.
        framing: Framing,
        /// The method of the request answered: no body is written after
        /// the head of a response to `HEAD`.
        request_method: Method,
    },
    /// Body bytes. With [`Framing::Length`], more than the length in all is
    /// an error; with [`Framing::Chunked`], each is a chunk (empty ones are
    /// skipped, since an empty chunk would end the body).
    Body(Bytes),
    /// The end of the body, with trailer fields (only with
    /// [`Framing::Chunked`]; with a length they must be empty).
    End(HeaderMap),
    /// A whole response with a body of known length: the head with
    /// `Content-Length`, then the body.
    Full {
        /// The response and its body.
        response: Response<Bytes>,
        /// The method of the request answered (`HEAD` gets no body).
        request_method: Method,
    },
}

/// Encodes HTTP/1.1 responses from [`ResponsePart`]s: Netty's
/// `HttpResponseEncoder`.
///
/// ```text
/// HTTP/1.1 200 OK\r\n                      status line, canonical reason
/// content-type: text/plain\r\n             the head's headers
/// transfer-encoding: chunked\r\n           from Framing::Chunked
/// \r\n
/// 5\r\nhello\r\n                           Body("hello"), one chunk
/// 0\r\nchecksum: abc\r\n\r\n               End(trailers)
/// ```
///
/// No body and no framing field follow a `1xx` or `204` head; no body
/// (but the framing field, describing the body a `GET` would get) follows
/// a `304` head or the answer to a `HEAD` request: [`Body`](ResponsePart::Body)
/// parts are dropped then.
///
/// # Errors
///
/// An [`HttpError`] (in [`EncodeError::Other`]), with nothing written,
/// for a header or trailer value holding CR, LF or NUL (header injection:
/// the `http` crate's checked constructors refuse them already, its
/// unchecked ones do not), for parts out of order (a body before a head),
/// for more body than the `Content-Length` said or an end before all of it,
/// for trailers without chunked coding, and for chunked coding in an
/// HTTP/1.0 response (left to the server layer: answering HTTP/1.0
/// clients, which know no chunks, with a body closed by the connection).
///
/// # Differences from Netty
///
/// Netty's encoder takes the framing from the `Content-Length` and
/// `Transfer-Encoding` fields the caller set (and writes whatever they
/// say); here the head says its [`Framing`] and the encoder writes the
/// field, checks the body against it and refuses CR and LF in values
/// (Netty validates values only when asked).
#[derive(Debug, Default)]
pub struct HttpResponseEncoder {
    state: Out,
    stamp: Option<Stamp>,
}

/// The fields a server adds to every head its handler did not set them
/// in, written straight into the head rather than inserted into each
/// response's `HeaderMap`.
#[derive(Debug, Clone)]
pub(crate) struct Stamp {
    pub(crate) date: HeaderValue,
    pub(crate) server: Option<HeaderValue>,
}

#[derive(Debug, Default, Clone, Copy)]
enum Out {
    /// Between responses.
    #[default]
    Idle,
    /// After a head whose body is not written.
    Discard,
    Length {
        remaining: u64,
    },
    Chunked,
    UntilClose,
}

impl HttpResponseEncoder {
    /// An encoder waiting for a response head.
    pub fn new() -> Self {
        HttpResponseEncoder::default()
    }

    /// An encoder that adds `stamp`'s fields to each head lacking them.
    pub(crate) fn stamped(stamp: Stamp) -> Self {
        HttpResponseEncoder {
            state: Out::Idle,
            stamp: Some(stamp),
        }
    }

    fn head(
        &mut self,
        response: &Response<()>,
        framing: Framing,
        request_method: &Method,
        dst: &mut BytesMut,
    ) -> Result<(), HttpError> {
        if !matches!(self.state, Out::Idle) {
            return Err(order("a head before the previous response ended"));
        }
        check_headers(response.headers())?;
        let status = response.status();
        if response.version() == Version::HTTP_10 && framing == Framing::Chunked {
            // An HTTP/1.0 client knows no chunked coding; a stream of
            // unknown length goes to it unframed, closed by the server.
            return Err(HttpError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "chunked coding in an HTTP/1.0 response",
            ));
        }
        let version = if response.version() == Version::HTTP_10 {
            "HTTP/1.0"
        } else {
            "HTTP/1.1"
        };
        let no_framing = status.is_informational() || status == StatusCode::NO_CONTENT;
        let no_body =
            no_framing || status == StatusCode::NOT_MODIFIED || request_method == Method::HEAD;
        dst.reserve(64 + 32 * response.headers().len());
        dst.put_slice(version.as_bytes());
        dst.put_u8(b' ');
        dst.put_slice(status.as_str().as_bytes());
        dst.put_u8(b' ');
        dst.put_slice(status.canonical_reason().unwrap_or("").as_bytes());
        dst.put_slice(b"\r\n");
        for (name, value) in response.headers() {
            if name == CONTENT_LENGTH || name == TRANSFER_ENCODING {
                continue;
            }
            put_field(dst, name.as_str().as_bytes(), value.as_bytes());
        }
        if let Some(stamp) = &self.stamp {
            let headers = response.headers();
            if headers.is_empty() || !headers.contains_key(DATE) {
                put_field(dst, b"date", stamp.date.as_bytes());
            }
            if let Some(server) = &stamp.server {
                if headers.is_empty() || !headers.contains_key(SERVER) {
                    put_field(dst, b"server", server.as_bytes());
                }
            }
        }
        if !no_framing {
            match framing {
                Framing::Length(n) => put_field(dst, b"content-length", decimal(n, &mut [0; 20])),
                Framing::Chunked => put_field(dst, b"transfer-encoding", b"chunked"),
                Framing::UntilClose => {}
            }
        }
        dst.put_slice(b"\r\n");
        self.state = match framing {
            _ if no_body => Out::Discard,
            Framing::Length(n) => Out::Length { remaining: n },
            Framing::Chunked => Out::Chunked,
            Framing::UntilClose => Out::UntilClose,
        };
        Ok(())
    }

    fn body(&mut self, data: Bytes, dst: &mut BytesMut) -> Result<Option<Bytes>, HttpError> {
        match self.state {
            Out::Idle => Err(order("body before a head")),
            Out::Discard => Ok(None),
            Out::Length { remaining } => {
                let len = data.len() as u64;
                if len > remaining {
                    return Err(HttpError::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "more body than the Content-Length",
                    ));
                }
                self.state = Out::Length {
                    remaining: remaining - len,
                };
                Ok((!data.is_empty()).then_some(data))
            }
            Out::UntilClose => Ok((!data.is_empty()).then_some(data)),
            Out::Chunked => {
                if !data.is_empty() {
                    dst.reserve(20 + data.len());
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
            Out::Discard => {}
            Out::Length { remaining } => {
                if remaining > 0 {
                    return Err(HttpError::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!("response ended {remaining} bytes short of its Content-Length"),
                    ));
                }
                if !trailers.is_empty() {
                    return Err(order("trailers without chunked coding"));
                }
            }
            Out::UntilClose => {
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
        item: ResponsePart,
        dst: &mut BytesMut,
    ) -> Result<Option<Bytes>, HttpError> {
        match item {
            ResponsePart::Head {
                response,
                framing,
                request_method,
            } => self
                .head(&response, framing, &request_method, dst)
                .map(|()| None),
            ResponsePart::Body(data) => self.body(data, dst),
            ResponsePart::End(trailers) => self.end(&trailers, dst).map(|()| None),
            ResponsePart::Full {
                response,
                request_method,
            } => {
                let (parts, body) = response.into_parts();
                let head = Response::from_parts(parts, ());
                let framing = Framing::Length(body.len() as u64);
                self.head(&head, framing, &request_method, dst)?;
                let tail = self.body(body, dst)?;
                self.end(&HeaderMap::new(), dst)?;
                Ok(tail)
            }
        }
    }
}

impl Encoder<ResponsePart> for HttpResponseEncoder {
    fn encode(&mut self, item: ResponsePart, dst: &mut BytesMut) -> Result<(), EncodeError> {
        if let Some(tail) = self.encode_parts(item, dst)? {
            dst.extend_from_slice(&tail);
        }
        Ok(())
    }

    fn encode_parts(
        &mut self,
        item: ResponsePart,
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

fn order(what: &str) -> HttpError {
    HttpError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("response parts out of order: {what}"),
    )
}

/// `n` in decimal, written at the end of `digits`.
pub(super) fn decimal(mut n: u64, digits: &mut [u8; 20]) -> &[u8] {
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &digits[at..];
        }
    }
}

/// `n` in lower-case hexadecimal, as a chunk size.
pub(super) fn put_hex(dst: &mut BytesMut, n: usize) {
    let digits = (usize::BITS - n.leading_zeros()).div_ceil(4).max(1);
    for i in (0..digits).rev() {
        dst.put_u8(b"0123456789abcdef"[(n >> (4 * i)) & 0xf]);
    }
}

pub(super) fn put_field(dst: &mut BytesMut, name: &[u8], value: &[u8]) {
    dst.put_slice(name);
    dst.put_slice(b": ");
    dst.put_slice(value);
    dst.put_slice(b"\r\n");
}

pub(super) fn check_headers(headers: &HeaderMap) -> Result<(), HttpError> {
    for (name, value) in headers {
        check_value(value.as_bytes()).map_err(|()| {
            HttpError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("CR, LF or NUL in the value of {name} (header injection)"),
            )
        })?;
    }
    Ok(())
}

/// A value with CR or LF would end its line and start a field (or a body)
/// of the value's choosing; NUL is refused by many peers.
pub(super) fn check_value(value: &[u8]) -> Result<(), ()> {
    if memchr::memchr3(b'\r', b'\n', 0, value).is_some() {
        Err(())
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_written_without_allocating() {
        for n in [0, 7, 10, 99, 1234567890, u64::MAX] {
            assert_eq!(decimal(n, &mut [0; 20]), n.to_string().as_bytes());
        }
        for n in [1, 9, 15, 16, 255, 4096, 0xabcdef, usize::MAX] {
            let mut out = BytesMut::new();
            put_hex(&mut out, n);
            assert_eq!(&out[..], format!("{n:x}").as_bytes());
        }
    }

    #[test]
    fn values_with_line_breaks_are_refused() {
        assert!(check_value(b"plain value\twith tab").is_ok());
        for bad in [&b"a\r\nSet-Cookie: x=1"[..], b"a\rb", b"a\nb", b"a\0b"] {
            assert!(check_value(bad).is_err(), "{bad:?}");
        }
    }
}
