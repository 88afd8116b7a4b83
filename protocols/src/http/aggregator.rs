//! [`HttpRequestAggregator`]: whole requests with their bodies (Netty's
//! `HttpObjectAggregator`).

use bytes::{Bytes, BytesMut};
use http::header::{CONTENT_LENGTH, EXPECT, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderValue, Request, StatusCode, Version};

use super::decoder::{BodyKind, HttpRequestDecoder, RequestPart};
use super::error::HttpError;
use crate::codec::{DecodeError, Decoder};

/// The default largest body [`HttpRequestAggregator`] gathers: 1 MiB.
pub const DEFAULT_MAX_BODY: usize = 1024 * 1024;

/// What [`HttpRequestAggregator`] yields.
// `SendContinue` is rare: boxing every request to shrink it would cost an
// allocation per request.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Aggregated {
    /// A whole request. A chunked body's `Transfer-Encoding` is replaced
    /// by the `Content-Length` of the body gathered; its trailers, if any,
    /// are in the request's extensions as [`Trailers`].
    Request(Request<Bytes>),
    /// The request being read asked `Expect: 100-continue` and its body
    /// fits: the server writes an interim `100 Continue` response now (or
    /// a final status, and then closes), and the request follows once its
    /// body has arrived.
    SendContinue,
}

/// The trailer fields of a chunked request, in its
/// [extensions](http::Request::extensions).
#[derive(Debug, Clone, Default)]
pub struct Trailers(pub HeaderMap);

/// Gathers the parts from an [`HttpRequestDecoder`] into whole
/// `http::Request<Bytes>`s, with bodies up to a maximum: Netty's
/// `HttpObjectAggregator`.
///
/// A `Content-Length` over the maximum is refused from the head, before
/// any of the body is read; a chunked body as soon as it passes the
/// maximum. So a connection holds at most the maximum body plus the
/// decoder's limits plus one read.
///
/// # Errors
///
/// The decoder's [`HttpError`]s, and:
///
/// | input | status |
/// |---|---|
/// | body over `max_body` | 413 |
/// | `Expect` other than `100-continue` (in HTTP/1.1) | 417 |
///
/// # Differences from Netty
///
/// Netty's aggregator writes `100 Continue` and `413` itself; here the
/// aggregator sits in a decoder with no way to write, so it yields
/// [`Aggregated::SendContinue`] and the errors carry their status, and the
/// server layer answers.
#[derive(Debug)]
pub struct HttpRequestAggregator {
    decoder: HttpRequestDecoder,
    max_body: usize,
    current: Option<(Request<()>, BytesMut)>,
    /// Poisoned: the connection must close, and the error repeats.
    failed: Option<HttpError>,
}

impl Default for HttpRequestAggregator {
    fn default() -> Self {
        HttpRequestAggregator::new(HttpRequestDecoder::new())
    }
}

impl HttpRequestAggregator {
    /// Aggregates what `decoder` decodes, bodies up to 1 MiB.
    pub fn new(decoder: HttpRequestDecoder) -> Self {
        HttpRequestAggregator {
            decoder,
            max_body: DEFAULT_MAX_BODY,
            current: None,
            failed: None,
        }
    }

    /// The largest body gathered, in bytes.
    pub fn max_body(mut self, max: usize) -> Self {
        self.max_body = max;
        self
    }

    /// Whether a head was decoded and its body is being gathered.
    pub(crate) fn in_body(&self) -> bool {
        self.current.is_some()
    }

    fn too_large(&self) -> HttpError {
        HttpError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("body over {} bytes", self.max_body),
        )
    }

    fn fail(&mut self, err: HttpError) -> DecodeError {
        self.current = None;
        self.failed = Some(err.clone());
        err.into()
    }

    fn head(
        &mut self,
        request: Request<()>,
        kind: BodyKind,
    ) -> Result<Option<Aggregated>, HttpError> {
        let continue_asked = expect_check(&request)?;
        match kind {
            BodyKind::Empty => {
                let (parts, ()) = request.into_parts();
                return Ok(Some(Aggregated::Request(Request::from_parts(
                    parts,
                    Bytes::new(),
                ))));
            }
            BodyKind::Length(n) if n > self.max_body as u64 => return Err(self.too_large()),
            BodyKind::Length(n) => {
                self.current = Some((request, BytesMut::with_capacity(n as usize)));
            }
            BodyKind::Chunked => self.current = Some((request, BytesMut::new())),
        }
        Ok(continue_asked.then_some(Aggregated::SendContinue))
    }

    fn add(&mut self, data: &[u8]) -> Result<(), HttpError> {
        let max = self.max_body;
        let Some((_, body)) = self.current.as_mut() else {
            return Err(HttpError::bad_request("body without a head"));
        };
        if body.len() + data.len() > max {
            return Err(self.too_large());
        }
        body.extend_from_slice(data);
        Ok(())
    }

    fn step(&mut self, src: &mut BytesMut) -> Result<Option<Aggregated>, DecodeError> {
        if let Some(err) = &self.failed {
            return Err(err.clone().into());
        }
        loop {
            let Some(part) = self.decoder.decode(src)? else {
                return Ok(None);
            };
            if let Some(out) = self.take(part)? {
                return Ok(Some(out));
            }
        }
    }

    fn take(&mut self, part: RequestPart) -> Result<Option<Aggregated>, HttpError> {
        match part {
            RequestPart::Head(request, kind) => self.head(request, kind),
            RequestPart::Body(data) => self.add(&data).map(|()| None),
            RequestPart::End(data, trailers) => {
                self.add(&data)?;
                let Some((request, body)) = self.current.take() else {
                    return Err(HttpError::bad_request("end without a head"));
                };
                let (mut parts, ()) = request.into_parts();
                parts.headers.remove(TRANSFER_ENCODING);
                parts
                    .headers
                    .insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
                if !trailers.is_empty() {
                    parts.extensions.insert(Trailers(trailers));
                }
                Ok(Some(Aggregated::Request(Request::from_parts(
                    parts,
                    body.freeze(),
                ))))
            }
        }
    }
}

impl Decoder for HttpRequestAggregator {
    type Item = Aggregated;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Aggregated>, DecodeError> {
        self.step(src)
            .map_err(|err| match HttpError::from_decode_error(&err) {
                Some(http) => {
                    let http = http.clone();
                    self.fail(http)
                }
                None => err,
            })
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Aggregated>, DecodeError> {
        if let Some(out) = self.decode(src)? {
            return Ok(Some(out));
        }
        loop {
            let Some(part) = self.decoder.decode_eof(src)? else {
                return Ok(None);
            };
            match self.take(part) {
                Ok(Some(out)) => return Ok(Some(out)),
                Ok(None) => {}
                Err(err) => return Err(self.fail(err)),
            }
        }
    }
}

/// Whether `100 Continue` is due: only an HTTP/1.1 request with a body
/// (RFC 9110 §10.1.1); any other expectation is refused with 417.
fn expect_check(request: &Request<()>) -> Result<bool, HttpError> {
    let Some(expect) = request.headers().get(EXPECT) else {
        return Ok(false);
    };
    if request.version() != Version::HTTP_11 {
        return Ok(false);
    }
    if expect.as_bytes().eq_ignore_ascii_case(b"100-continue") {
        Ok(true)
    } else {
        Err(HttpError::new(
            StatusCode::EXPECTATION_FAILED,
            "unsupported expectation",
        ))
    }
}
