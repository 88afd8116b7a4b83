//! What requests and responses share on the wire: header fields checked
//! into a `HeaderMap`, the framing fields read as RFC 9112 §6.3 says
//! (refusing the ambiguities request smuggling lives on), and chunked
//! bodies with their trailers. The request and response decoders differ
//! only in their start lines and in what a missing framing field means.

use bytes::{Buf, Bytes, BytesMut};
use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Version};

use super::error::HttpError;

/// The longest chunk-size line (size and extensions) accepted: 4 KiB.
pub(super) const MAX_CHUNK_LINE: usize = 4 * 1024;

/// What the framing fields of a head declare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Declared {
    /// Neither `Content-Length` nor `Transfer-Encoding`.
    Nothing,
    /// `Content-Length: n`.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// One step of a body being decoded.
#[derive(Debug)]
pub(super) enum BodyStep {
    /// Body bytes as they arrived; never empty.
    Data(Bytes),
    /// The end of the body, with the trailer fields (possibly none).
    End(HeaderMap),
}

/// Remembers how much of an unfinished head (or trailer block) the last
/// parse saw: it is parsed again only once a new line has come, so a head
/// trickling in byte by byte costs a parse per line, not per byte.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Rescan {
    scanned: usize,
}

impl Rescan {
    /// Whether a line ended in `src` since the last parse.
    pub(super) fn new_line_since_last_parse(&self, src: &[u8]) -> bool {
        match src.get(self.scanned..) {
            Some(fresh) if self.scanned > 0 => memchr::memchr(b'\n', fresh).is_some(),
            _ => true,
        }
    }

    /// The last parse saw `len` bytes and wanted more.
    pub(super) fn saw(&mut self, len: usize) {
        self.scanned = len;
    }

    /// A head or trailer block is complete: the next one starts afresh.
    pub(super) fn reset(&mut self) {
        self.scanned = 0;
    }
}

/// A chunked body being decoded, trailers included.
#[derive(Debug, Clone)]
pub(super) struct ChunkedBody {
    state: Chunk,
    rescan: Rescan,
}

#[derive(Debug, Clone, Copy)]
enum Chunk {
    Size,
    Data { remaining: u64 },
    DataEnd,
    Trailers,
}

impl ChunkedBody {
    pub(super) fn new() -> Self {
        ChunkedBody {
            state: Chunk::Size,
            rescan: Rescan::default(),
        }
    }

    /// The next piece of the body in `src`, or `None` for more input;
    /// trailers are held to `max_header_bytes` and `max_headers`.
    pub(super) fn decode(
        &mut self,
        src: &mut BytesMut,
        max_header_bytes: usize,
        max_headers: usize,
    ) -> Result<Option<BodyStep>, HttpError> {
        loop {
            match self.state {
                Chunk::Size => {
                    let Some(lf) = memchr::memchr(b'\n', src) else {
                        if src.len() > MAX_CHUNK_LINE {
                            return Err(HttpError::bad_request("chunk-size line too long"));
                        }
                        return Ok(None);
                    };
                    if lf > MAX_CHUNK_LINE || lf == 0 || src[lf - 1] != b'\r' {
                        return Err(HttpError::bad_request("malformed chunk-size line"));
                    }
                    let size = parse_chunk_size(&src[..lf - 1])?;
                    src.advance(lf + 1);
                    self.state = if size == 0 {
                        Chunk::Trailers
                    } else {
                        Chunk::Data { remaining: size }
                    };
                }
                Chunk::Data { remaining } => {
                    if src.is_empty() {
                        return Ok(None);
                    }
                    let take = usize::try_from(remaining).map_or(src.len(), |r| r.min(src.len()));
                    let data = src.split_to(take).freeze();
                    let left = remaining - take as u64;
                    self.state = if left == 0 {
                        Chunk::DataEnd
                    } else {
                        Chunk::Data { remaining: left }
                    };
                    return Ok(Some(BodyStep::Data(data)));
                }
                Chunk::DataEnd => {
                    if src.len() < 2 {
                        if src.first().is_some_and(|&b| b != b'\r') {
                            return Err(HttpError::bad_request("chunk data not followed by CRLF"));
                        }
                        return Ok(None);
                    }
                    if &src[..2] != b"\r\n" {
                        return Err(HttpError::bad_request("chunk data not followed by CRLF"));
                    }
                    src.advance(2);
                    self.state = Chunk::Size;
                }
                Chunk::Trailers => {
                    return self
                        .decode_trailers(src, max_header_bytes, max_headers)
                        .map(|t| t.map(BodyStep::End))
                }
            }
        }
    }

    fn decode_trailers(
        &mut self,
        src: &mut BytesMut,
        max_header_bytes: usize,
        max_headers: usize,
    ) -> Result<Option<HeaderMap>, HttpError> {
        if src.starts_with(b"\r\n") {
            src.advance(2);
            return Ok(Some(HeaderMap::new()));
        }
        if src.len() < 2 && (src.is_empty() || src[0] == b'\r') {
            return Ok(None);
        }
        if !self.rescan.new_line_since_last_parse(src) {
            if src.len() > max_header_bytes {
                return Err(headers_too_large());
            }
            return Ok(None);
        }
        let mut headers = vec![httparse::EMPTY_HEADER; max_headers];
        match httparse::parse_headers(src, &mut headers) {
            Ok(httparse::Status::Complete((n, fields))) => {
                if n > max_header_bytes {
                    return Err(headers_too_large());
                }
                let mut trailers = header_map(fields)?;
                // Framing fields cannot be trailers (RFC 9110 §6.5.1).
                trailers.remove(CONTENT_LENGTH);
                trailers.remove(TRANSFER_ENCODING);
                src.advance(n);
                self.rescan.reset();
                Ok(Some(trailers))
            }
            Ok(httparse::Status::Partial) if src.len() > max_header_bytes => {
                Err(headers_too_large())
            }
            Ok(httparse::Status::Partial) => {
                self.rescan.saw(src.len());
                Ok(None)
            }
            Err(httparse::Error::TooManyHeaders) => Err(HttpError::new(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "too many trailer fields",
            )),
            Err(err) => Err(HttpError::bad_request(format!("malformed trailers: {err}"))),
        }
    }
}

pub(super) fn headers_too_large() -> HttpError {
    HttpError::new(
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        "header section too large",
    )
}

/// The fields as a `HeaderMap`; the `http` crate's checks refuse control
/// characters (a CR or LF smuggled into a value) that `httparse` let by.
pub(super) fn header_map(fields: &[httparse::Header<'_>]) -> Result<HeaderMap, HttpError> {
    let mut map = HeaderMap::with_capacity(fields.len());
    for field in fields {
        let name = HeaderName::from_bytes(field.name.as_bytes())
            .map_err(|_| HttpError::bad_request("invalid header name"))?;
        let value = HeaderValue::from_bytes(field.value)
            .map_err(|_| HttpError::bad_request("invalid header value"))?;
        map.append(name, value);
    }
    Ok(map)
}

/// RFC 9112 §6.3: what the framing fields declare, refusing every
/// ambiguity a proxy on the way might resolve differently (request and
/// response smuggling).
pub(super) fn declared_framing(
    headers: &HeaderMap,
    version: Version,
) -> Result<Declared, HttpError> {
    let has_te = headers.contains_key(TRANSFER_ENCODING);
    let mut lengths = headers.get_all(CONTENT_LENGTH).iter();
    let length = lengths.next();
    if lengths.next().is_some() {
        return Err(HttpError::bad_request("more than one Content-Length"));
    }
    if has_te {
        if length.is_some() {
            return Err(HttpError::bad_request(
                "both Content-Length and Transfer-Encoding",
            ));
        }
        if version == Version::HTTP_10 {
            return Err(HttpError::bad_request("Transfer-Encoding in HTTP/1.0"));
        }
        let mut codings = Vec::new();
        for value in headers.get_all(TRANSFER_ENCODING) {
            let value = value
                .to_str()
                .map_err(|_| HttpError::bad_request("invalid Transfer-Encoding"))?;
            codings.extend(value.split(',').map(str::trim).filter(|c| !c.is_empty()));
        }
        return match codings.as_slice() {
            [c] if c.eq_ignore_ascii_case("chunked") => Ok(Declared::Chunked),
            [.., last] if last.eq_ignore_ascii_case("chunked") => {
                if codings
                    .iter()
                    .filter(|c| c.eq_ignore_ascii_case("chunked"))
                    .count()
                    > 1
                {
                    Err(HttpError::bad_request("chunked applied more than once"))
                } else {
                    Err(HttpError::new(
                        StatusCode::NOT_IMPLEMENTED,
                        "unsupported transfer coding",
                    ))
                }
            }
            _ => Err(HttpError::bad_request(
                "Transfer-Encoding whose final coding is not chunked",
            )),
        };
    }
    match length {
        None => Ok(Declared::Nothing),
        Some(value) => match parse_decimal(value.as_bytes()) {
            Some(n) => Ok(Declared::Length(n)),
            None => Err(HttpError::bad_request("invalid Content-Length")),
        },
    }
}

/// Digits only: no sign, no spaces, no list (`"5, 5"`), no overflow.
fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &d| {
        if d.is_ascii_digit() {
            n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
        } else {
            None
        }
    })
}

/// `chunk-size [ BWS ";" chunk-ext ]`, the extensions ignored.
fn parse_chunk_size(line: &[u8]) -> Result<u64, HttpError> {
    let end = line
        .iter()
        .position(|&b| b == b';' || b == b' ' || b == b'\t')
        .unwrap_or(line.len());
    let (digits, rest) = line.split_at(end);
    let rest_ok = rest.iter().find(|&&b| b != b' ' && b != b'\t');
    if !matches!(rest_ok, None | Some(b';')) || digits.is_empty() {
        return Err(HttpError::bad_request("invalid chunk size"));
    }
    if rest.contains(&b'\r') {
        return Err(HttpError::bad_request("CR in chunk extension"));
    }
    digits
        .iter()
        .try_fold(0u64, |n, &d| {
            let digit = (d as char).to_digit(16)?;
            n.checked_mul(16)?.checked_add(u64::from(digit))
        })
        .ok_or_else(|| HttpError::bad_request("invalid chunk size"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_sizes() {
        assert_eq!(parse_chunk_size(b"1a").unwrap(), 26);
        assert_eq!(parse_chunk_size(b"A;name=value").unwrap(), 10);
        assert_eq!(parse_chunk_size(b"5 ;x").unwrap(), 5);
        assert_eq!(parse_chunk_size(b"ffffffffffffffff").unwrap(), u64::MAX);
        for bad in [
            &b""[..],
            b"g",
            b"-1",
            b"+1",
            b"ffffffffffffffffff",
            b"5 x",
            b";x",
        ] {
            assert!(parse_chunk_size(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn decimals() {
        assert_eq!(parse_decimal(b"0"), Some(0));
        assert_eq!(parse_decimal(b"18446744073709551615"), Some(u64::MAX));
        for bad in [
            &b""[..],
            b"-1",
            b"+1",
            b" 1",
            b"1,1",
            b"18446744073709551616",
        ] {
            assert_eq!(parse_decimal(bad), None, "{bad:?}");
        }
    }
}
