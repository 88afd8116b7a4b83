//! The HTTP/1.1 client codec (feature `http`): response decoding at every
//! split point, the framing rules that depend on the request (HEAD, 1xx,
//! 204, 304), the smuggling checks and limits, and request encoding read
//! back by the server's decoder.
#![cfg(feature = "http")]

mod support;

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode};
use support::XorShift;
use twill_protocols::codec::{DecodeError, Decoder, Encoder};
use twill_protocols::http::{
    Framing, HttpError, HttpRequestDecoder, HttpRequestEncoder, HttpResponseDecoder,
    IncomingResponse, OutgoingRequest, RequestPart, ResponseBodyKind,
};

/// A response as the decoder's parts tell it, the body joined.
#[derive(Debug, PartialEq)]
struct Seen {
    status: u16,
    headers: Vec<(String, String)>,
    kind: ResponseBodyKind,
    body: Vec<u8>,
    trailers: Vec<(String, String)>,
}

/// The responses decoded, then the status of the error that stopped the
/// decoder, if any.
#[derive(Debug, PartialEq)]
struct Outcome {
    responses: Vec<Seen>,
    error: Option<u16>,
}

fn fields(map: &HeaderMap) -> Vec<(String, String)> {
    map.iter()
        .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned()))
        .collect()
}

fn status(err: &DecodeError) -> u16 {
    HttpError::from_decode_error(err)
        .unwrap_or_else(|| panic!("not an HttpError: {err}"))
        .status()
        .as_u16()
}

/// Feeds `chunks` to a fresh copy of `decoder` expecting one response per
/// method of `methods`, then EOF.
fn run(decoder: &HttpResponseDecoder, methods: &[Method], chunks: &[&[u8]]) -> Outcome {
    let mut decoder = decoder.clone();
    for method in methods {
        decoder.expect(method.clone()).unwrap();
    }
    let mut buf = BytesMut::new();
    let mut responses: Vec<Seen> = Vec::new();
    let take = |part: IncomingResponse, responses: &mut Vec<Seen>| match part {
        IncomingResponse::Head(head, kind) => responses.push(Seen {
            status: head.status().as_u16(),
            headers: fields(head.headers()),
            kind,
            body: Vec::new(),
            trailers: Vec::new(),
        }),
        IncomingResponse::Body(data) => {
            assert!(!data.is_empty(), "an empty body part");
            responses.last_mut().unwrap().body.extend_from_slice(&data);
        }
        IncomingResponse::End(data, trailers) => {
            let last = responses.last_mut().unwrap();
            last.body.extend_from_slice(&data);
            last.trailers = fields(&trailers);
        }
    };
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(part)) => take(part, &mut responses),
                Ok(None) => break,
                Err(err) => {
                    return Outcome {
                        responses,
                        error: Some(status(&err)),
                    }
                }
            }
        }
    }
    loop {
        match decoder.decode_eof(&mut buf) {
            Ok(Some(part)) => take(part, &mut responses),
            Ok(None) => break,
            Err(err) => {
                return Outcome {
                    responses,
                    error: Some(status(&err)),
                }
            }
        }
    }
    Outcome {
        responses,
        error: None,
    }
}

fn whole(methods: &[Method], input: &[u8]) -> Outcome {
    run(&HttpResponseDecoder::new(), methods, &[input])
}

/// The same outcome whole, byte by byte and at random splits.
fn at_every_split(decoder: &HttpResponseDecoder, methods: &[Method], input: &[u8]) -> Outcome {
    let expected = run(decoder, methods, &[input]);
    for_every_split(input, |chunks| {
        assert_eq!(run(decoder, methods, chunks), expected, "split {chunks:?}");
    });
    expected
}

/// The error whole, byte by byte and at random splits (the body parts
/// handed out before a body limit is passed depend on the splits).
fn error_at_every_split(decoder: &HttpResponseDecoder, input: &[u8]) -> Option<u16> {
    let expected = run(decoder, &[Method::GET], &[input]).error;
    for_every_split(input, |chunks| {
        assert_eq!(
            run(decoder, &[Method::GET], chunks).error,
            expected,
            "split {chunks:?}"
        );
    });
    expected
}

fn for_every_split(input: &[u8], mut check: impl FnMut(&[&[u8]])) {
    let bytes: Vec<&[u8]> = input.chunks(1).collect();
    check(&bytes);
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15 ^ input.len() as u64);
    for _ in 0..200 {
        check(&rng.chunks(input, 40));
    }
}

fn seen(status: u16, kind: ResponseBodyKind, body: &[u8]) -> (u16, ResponseBodyKind, Vec<u8>) {
    (status, kind, body.to_vec())
}

fn summary(outcome: &Outcome) -> Vec<(u16, ResponseBodyKind, Vec<u8>)> {
    outcome
        .responses
        .iter()
        .map(|r| (r.status, r.kind, r.body.clone()))
        .collect()
}

const KEEP_ALIVE_SEQUENCE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello\
HTTP/1.1 100 Continue\r\n\r\n\
HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\nChecksum: xyz\r\n\r\n\
HTTP/1.1 200 OK\r\nContent-Length: 42\r\n\r\n\
HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n\
HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n\
HTTP/1.0 200 OK\r\n\r\nuntil the end";

fn sequence_methods() -> Vec<Method> {
    vec![
        Method::GET,
        Method::POST,
        Method::HEAD,
        Method::GET,
        Method::GET,
        Method::GET,
    ]
}

#[test]
fn a_keep_alive_sequence_decodes_the_same_at_every_split() {
    let outcome = at_every_split(
        &HttpResponseDecoder::new(),
        &sequence_methods(),
        KEEP_ALIVE_SEQUENCE,
    );
    assert_eq!(outcome.error, None);
    assert_eq!(
        summary(&outcome),
        vec![
            seen(200, ResponseBodyKind::Length(5), b"hello"),
            seen(201, ResponseBodyKind::Chunked, b"abc0123456789abcdef"),
            seen(200, ResponseBodyKind::Empty, b""),
            seen(204, ResponseBodyKind::Empty, b""),
            seen(304, ResponseBodyKind::Empty, b""),
            seen(200, ResponseBodyKind::UntilClose, b"until the end"),
        ]
    );
    assert_eq!(
        outcome.responses[1].trailers,
        vec![("checksum".to_owned(), "xyz".to_owned())]
    );
}

#[test]
fn interim_responses_are_surfaced_when_asked() {
    let decoder = HttpResponseDecoder::new().informational(true);
    let outcome = at_every_split(&decoder, &sequence_methods(), KEEP_ALIVE_SEQUENCE);
    assert_eq!(outcome.error, None);
    let statuses: Vec<u16> = outcome.responses.iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![200, 100, 201, 200, 204, 304, 200]);
    assert_eq!(outcome.responses[1].kind, ResponseBodyKind::Empty);
}

#[test]
fn a_body_read_until_close_ends_at_eof_only() {
    let mut decoder = HttpResponseDecoder::new();
    decoder.expect(Method::GET).unwrap();
    let mut input = BytesMut::from(&b"HTTP/1.1 200 OK\r\nServer: x\r\n\r\npart"[..]);
    assert!(matches!(
        decoder.decode(&mut input).unwrap(),
        Some(IncomingResponse::Head(_, ResponseBodyKind::UntilClose))
    ));
    assert!(
        matches!(decoder.decode(&mut input).unwrap(), Some(IncomingResponse::Body(b)) if b == "part")
    );
    assert!(decoder.decode(&mut input).unwrap().is_none());
    assert!(matches!(
        decoder.decode_eof(&mut input).unwrap(),
        Some(IncomingResponse::End(b, _)) if b.is_empty()
    ));
    assert!(decoder.decode_eof(&mut input).unwrap().is_none());
}

#[test]
fn a_switching_protocols_response_leaves_the_rest_to_the_next_protocol() {
    let mut decoder = HttpResponseDecoder::new();
    decoder.expect(Method::GET).unwrap();
    let mut input = BytesMut::from(
        &b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x02hi"[..],
    );
    assert!(matches!(
        decoder.decode(&mut input).unwrap(),
        Some(IncomingResponse::Head(h, ResponseBodyKind::Empty)) if h.status() == 101
    ));
    assert!(decoder.decode(&mut input).unwrap().is_none());
    assert_eq!(&input[..], b"\x81\x02hi");
}

#[test]
fn smuggling_and_malformed_responses_are_refused() {
    let cases: &[(&str, &[u8], u16)] = &[
        (
            "both framings",
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            400,
        ),
        (
            "differing lengths",
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
            400,
        ),
        (
            "same length twice",
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
            400,
        ),
        (
            "signed length",
            b"HTTP/1.1 200 OK\r\nContent-Length: +3\r\n\r\nabc",
            400,
        ),
        (
            "bad chunk size",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            400,
        ),
        (
            "overflowing chunk size",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1ffffffffffffffff\r\n",
            400,
        ),
        (
            "chunk without CRLF",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\naXY",
            400,
        ),
        (
            "gzip then chunked",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            501,
        ),
        (
            "chunked in HTTP/1.0",
            b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            400,
        ),
        ("garbage status line", b"HTTP/1.1 abc OK\r\n\r\n", 400),
        ("not HTTP", b"SSH-2.0-OpenSSH_9.0\r\n\r\n", 400),
        ("two-digit status", b"HTTP/1.1 20 OK\r\n\r\n", 400),
        (
            "bare LF in a value",
            b"HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n",
            400,
        ),
        (
            "cut in the middle of a body",
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",
            400,
        ),
        (
            "cut in the middle of a head",
            b"HTTP/1.1 200 OK\r\nX: y",
            400,
        ),
    ];
    for (what, input, expected) in cases {
        let outcome = at_every_split(&HttpResponseDecoder::new(), &[Method::GET], input);
        assert_eq!(outcome.error, Some(*expected), "{what}: {outcome:?}");
        assert!(outcome.responses.len() <= 1, "{what}");
    }
}

#[test]
fn a_response_nobody_asked_for_is_refused() {
    assert_eq!(
        whole(&[], b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").error,
        Some(400)
    );
    let two = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK\r\n\r\n";
    let outcome = whole(&[Method::GET], two);
    assert_eq!(outcome.responses.len(), 1);
    assert_eq!(outcome.error, Some(400));
}

#[test]
fn limits_refuse_long_lines_many_fields_and_large_bodies() {
    let long_line = format!("HTTP/1.1 200 {}\r\n\r\n", "x".repeat(200));
    let decoder = HttpResponseDecoder::new().max_status_line(100);
    assert_eq!(
        at_every_split(&decoder, &[Method::GET], long_line.as_bytes()).error,
        Some(414)
    );

    let many = format!("HTTP/1.1 200 OK\r\n{}\r\n", "a: b\r\n".repeat(20));
    let decoder = HttpResponseDecoder::new().max_headers(10);
    assert_eq!(
        at_every_split(&decoder, &[Method::GET], many.as_bytes()).error,
        Some(431)
    );
    let decoder = HttpResponseDecoder::new().max_header_bytes(64);
    assert_eq!(
        at_every_split(&decoder, &[Method::GET], many.as_bytes()).error,
        Some(431)
    );

    let chunk_line = format!(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;{}\r\n",
        "e".repeat(5000)
    );
    assert_eq!(
        whole(&[Method::GET], chunk_line.as_bytes()).error,
        Some(400)
    );

    let decoder = HttpResponseDecoder::new().max_body(Some(10));
    let declared = b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n";
    let outcome = run(&decoder, &[Method::GET], &[declared]);
    assert_eq!(outcome.error, Some(413));
    assert!(outcome.responses.is_empty(), "refused from the head");

    let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nabcdef\r\n6\r\nghijkl\r\n0\r\n\r\n";
    assert_eq!(error_at_every_split(&decoder, chunked), Some(413));
    let until_close = b"HTTP/1.1 200 OK\r\n\r\n0123456789abc";
    assert_eq!(error_at_every_split(&decoder, until_close), Some(413));
    let fits = b"HTTP/1.1 200 OK\r\n\r\n0123456789";
    assert_eq!(at_every_split(&decoder, &[Method::GET], fits).error, None);
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = XorShift(0x1234_5678);
    let alphabet = b"HTTP/1.0 2345\r\n:;abcCLTE-chunked0f";
    for _ in 0..2000 {
        let len = rng.below(120) as usize;
        let mut input = b"HTTP/1.1 200 OK\r\n".to_vec();
        input.extend((0..len).map(|_| alphabet[rng.below(alphabet.len() as u64) as usize]));
        let chunks = rng.chunks(&input, 16);
        let _ = run(
            &HttpResponseDecoder::new(),
            &[Method::GET, Method::HEAD],
            &chunks,
        );
    }
}

fn encode(item: OutgoingRequest, encoder: &mut HttpRequestEncoder) -> Vec<u8> {
    let mut out = BytesMut::new();
    encoder.encode(item, &mut out).unwrap();
    out.to_vec()
}

#[test]
fn requests_encode_with_their_framing() {
    let mut encoder = HttpRequestEncoder::new();
    let get = Request::get("http://example.com/a/b?q=1")
        .header("host", "example.com")
        .header("content-length", "99")
        .body(Bytes::new())
        .unwrap();
    assert_eq!(
        encode(OutgoingRequest::Full(get), &mut encoder),
        b"GET /a/b?q=1 HTTP/1.1\r\nhost: example.com\r\n\r\n"
    );
    let post = Request::post("http://example.com")
        .body(Bytes::new())
        .unwrap();
    assert_eq!(
        encode(OutgoingRequest::Full(post), &mut encoder),
        b"POST / HTTP/1.1\r\ncontent-length: 0\r\n\r\n"
    );

    let head = Request::put("/upload").body(()).unwrap();
    let mut wire = encode(
        OutgoingRequest::Head {
            request: head,
            framing: Framing::Chunked,
        },
        &mut encoder,
    );
    assert!(!encoder.is_idle());
    wire.extend(encode(
        OutgoingRequest::Body(Bytes::from_static(b"hello")),
        &mut encoder,
    ));
    wire.extend(encode(OutgoingRequest::Body(Bytes::new()), &mut encoder));
    let mut trailers = HeaderMap::new();
    trailers.insert("checksum", HeaderValue::from_static("abc"));
    wire.extend(encode(OutgoingRequest::End(trailers), &mut encoder));
    assert!(encoder.is_idle());
    assert_eq!(
        wire,
        b"PUT /upload HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nchecksum: abc\r\n\r\n"
    );

    // What the encoder writes, the server's decoder reads back.
    let mut decoder = HttpRequestDecoder::new();
    let mut input = BytesMut::from(&wire[..]);
    let Some(RequestPart::Head(request, _)) = decoder.decode(&mut input).unwrap() else {
        panic!("a head");
    };
    assert_eq!(request.method(), Method::PUT);
    assert!(
        matches!(decoder.decode(&mut input).unwrap(), Some(RequestPart::Body(b)) if b == "hello")
    );
    let Some(RequestPart::End(_, trailers)) = decoder.decode(&mut input).unwrap() else {
        panic!("an end");
    };
    assert_eq!(trailers["checksum"], "abc");
}

#[test]
fn the_request_encoder_refuses_what_would_break_the_framing() {
    let mut encoder = HttpRequestEncoder::new();
    let mut out = BytesMut::new();
    let refused = |result: Result<(), twill_protocols::codec::EncodeError>| {
        let err = result.expect_err("refused");
        assert_eq!(
            HttpError::from_encode_error(&err).unwrap().status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    };
    refused(encoder.encode(OutgoingRequest::Body(Bytes::from_static(b"x")), &mut out));
    refused(encoder.encode(OutgoingRequest::End(HeaderMap::new()), &mut out));
    let head = || Request::post("/").body(()).unwrap();
    encoder
        .encode(
            OutgoingRequest::Head {
                request: head(),
                framing: Framing::Length(3),
            },
            &mut out,
        )
        .unwrap();
    let written = out.len();
    refused(encoder.encode(
        OutgoingRequest::Body(Bytes::from_static(b"toolong")),
        &mut out,
    ));
    refused(encoder.encode(OutgoingRequest::End(HeaderMap::new()), &mut out));
    assert_eq!(out.len(), written, "nothing of a refused part is written");
    refused(encoder.encode(
        OutgoingRequest::Head {
            request: head(),
            framing: Framing::Length(0),
        },
        &mut out,
    ));
    encoder
        .encode(OutgoingRequest::Body(Bytes::from_static(b"abc")), &mut out)
        .unwrap();
    encoder
        .encode(OutgoingRequest::End(HeaderMap::new()), &mut out)
        .unwrap();

    let old = Request::post("/")
        .version(http::Version::HTTP_10)
        .body(())
        .unwrap();
    refused(encoder.encode(
        OutgoingRequest::Head {
            request: old,
            framing: Framing::Chunked,
        },
        &mut out,
    ));
    refused(encoder.encode(
        OutgoingRequest::Head {
            request: head(),
            framing: Framing::UntilClose,
        },
        &mut out,
    ));
    // The http crate refuses CR and LF in values and targets already.
    assert!(Request::get("/").header("x", "a\r\nb: c").body(()).is_err());
    assert!(Request::get("/a b").body(()).is_err());
}
