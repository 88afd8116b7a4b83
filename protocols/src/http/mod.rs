//! HTTP/1.1 for servers and clients (RFC 9112): Netty's `HttpServerCodec`,
//! `HttpClientCodec` and `HttpObjectAggregator` on `httparse` and the
//! `http` crate's types.
//!
//! - [`HttpRequestDecoder`] cuts the input into [`RequestPart`]s: a head
//!   (`http::Request<()>`, with its [`BodyKind`]), body chunks (`Bytes`
//!   split off the input, never copied or buffered whole) and an end (with
//!   the trailers of a chunked body).
//! - [`HttpRequestAggregator`] gathers them into whole
//!   `http::Request<Bytes>`s, bodies up to a maximum.
//! - [`HttpResponseEncoder`] writes [`ResponsePart`]s: a head
//!   (`http::Response<()>`, with its [`Framing`]), body chunks (chunked
//!   coding when streamed) and an end, or a whole `Response<Bytes>`.
//! - [`is_keep_alive`] and [`expects_continue`] read a request's head.
//! - [`HttpResponseDecoder`] and [`HttpRequestEncoder`], the client's
//!   codec: [`IncomingResponse`] parts (framed as the request's method says,
//!   bodies read until the close included) and [`OutgoingRequest`] parts.
//! - [`HttpClient`] sends whole requests over a pool of keep-alive
//!   connections and answers each with a `Deferred` (Twisted's `Agent`);
//!   see [A client](#a-client).
//!
//! # The message format
//!
//! ```text
//! request-line   = method SP request-target SP HTTP-version CRLF
//! header lines   = *( field-name ":" OWS field-value OWS CRLF )
//!                  CRLF
//! body           = Content-Length bytes
//!                / *( chunk-size [ ";" ext ] CRLF data CRLF )
//!                  "0" CRLF *( trailer-field CRLF ) CRLF
//!                / nothing (a request with neither field)
//! ```
//!
//! # Limits
//!
//! | limit | default | past it |
//! |---|---|---|
//! | request line | 8 KiB | 414 URI Too Long |
//! | header lines (and trailers), in bytes | 64 KiB | 431 Request Header Fields Too Large |
//! | header fields (and trailer fields) | 100 | 431 |
//! | chunk-size line | 4 KiB | 400 Bad Request |
//! | aggregated body | 1 MiB | 413 Content Too Large |
//!
//! Every refusal is an [`HttpError`] carrying the status to answer; the
//! decoders are then poisoned (the connection's framing is lost, so it
//! must close after the answer). The error arrives in the handler's
//! [`exception_caught`](crate::codec::Handler::exception_caught) inside a
//! [`DecodeError`](crate::codec::DecodeError);
//! [`HttpError::from_decode_error`] takes it out. A server answers it and
//! closes; the default closes without an answer.
//!
//! Left to the server layer: answering errors and `100 Continue`, `Date`
//! and `Server` fields, closing after a response when
//! [`is_keep_alive`] says so, refusing an HTTP/1.1 request without a
//! single `Host` (RFC 9112 §3.2), timeouts, and `Upgrade`/`CONNECT`.
//!
//! # Examples
//!
//! ```
//! use bytes::{Bytes, BytesMut};
//! use http::{Method, Response, StatusCode};
//! use twill_protocols::codec::{Decoder, Encoder};
//! use twill_protocols::http::{
//!     is_keep_alive, Aggregated, HttpRequestAggregator, HttpResponseEncoder, ResponsePart,
//! };
//!
//! let mut input = BytesMut::from(
//!     &b"POST /echo HTTP/1.1\r\nHost: example.com\r\nContent-Length: 5\r\n\r\nhello"[..],
//! );
//! let mut decoder = HttpRequestAggregator::default();
//! let Some(Aggregated::Request(request)) = decoder.decode(&mut input)? else {
//!     panic!("a whole request is there");
//! };
//! assert_eq!(request.method(), Method::POST);
//! assert_eq!(request.uri().path(), "/echo");
//! assert_eq!(&request.body()[..], b"hello");
//! assert!(is_keep_alive(&request));
//!
//! let response = Response::builder()
//!     .status(StatusCode::OK)
//!     .header("content-type", "text/plain")
//!     .body(request.body().clone())?;
//! let mut output = BytesMut::new();
//! HttpResponseEncoder::new().encode(
//!     ResponsePart::Full { response, request_method: request.method().clone() },
//!     &mut output,
//! )?;
//! assert_eq!(
//!     &output[..],
//!     b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 5\r\n\r\nhello"
//! );
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # A client
//!
//! [`HttpClient`] on the reactor's thread, here against a server that
//! answers every request with its path:
//!
//! ```
//! use bytes::Bytes;
//! use http::Request;
//! use twill::Reactor;
//! use twill_protocols::http::{Body, HttpClient, HttpServer};
//!
//! let reactor = Reactor::new()?;
//! let server = HttpServer::new(|request: Request<Bytes>| {
//!     twill::defer::succeed(http::Response::new(Body::from(request.uri().path().to_owned())))
//! });
//! let port = reactor.listen_tcp("127.0.0.1:0", server)?;
//! let base = format!("http://{}", port.host());
//!
//! let client = HttpClient::new().max_connections_per_host(4);
//! let done = client
//!     .get(&format!("{base}/first"))
//!     .then(move |first| {
//!         assert_eq!(&first.body()[..], b"/first");
//!         // The same connection again, from the pool.
//!         client.post(&format!("{base}/second"), "a body")
//!     });
//! done.add_both(|result| {
//!     twill::stop();
//!     result
//! });
//! reactor.run()?;
//! let second = done.result().unwrap().expect("the second response");
//! assert_eq!(&second.body()[..], b"/second");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod aggregator;
mod body;
mod client;
mod decoder;
mod encoder;
mod error;
mod request_encoder;
mod response_decoder;
mod server;

use http::header::{CONNECTION, EXPECT};
use http::{Request, Version};

pub use aggregator::{Aggregated, HttpRequestAggregator, Trailers, DEFAULT_MAX_BODY};
pub use client::{HttpClient, HttpClientError};
pub use decoder::{
    BodyKind, HttpRequestDecoder, RequestPart, DEFAULT_MAX_HEADERS, DEFAULT_MAX_HEADER_BYTES,
    DEFAULT_MAX_REQUEST_LINE,
};
pub use encoder::{Framing, HttpResponseEncoder, ResponsePart};
pub use error::HttpError;
pub use request_encoder::{HttpRequestEncoder, OutgoingRequest};
pub use response_decoder::{
    HttpResponseDecoder, IncomingResponse, ResponseBodyKind, DEFAULT_MAX_STATUS_LINE,
    MAX_EXPECTED_RESPONSES,
};
pub use server::{
    async_handler, AsyncHandler, Body, BodyWriter, ConnectionInfo, Handler, HttpServer,
    HttpServerProtocol, StaticFiles, Upgrade, DEFAULT_HEADER_TIMEOUT, DEFAULT_IDLE_TIMEOUT, LINGER,
    LINGER_MAX, MAX_BODY_LIMIT, PIPELINED_INPUT_MAX,
};

/// Whether the connection stays open after the answer to `request`
/// (RFC 9112 §9.3): in HTTP/1.1 unless it says `Connection: close`, in
/// HTTP/1.0 only if it says `Connection: keep-alive`.
pub fn is_keep_alive<B>(request: &Request<B>) -> bool {
    let has = |token: &str| {
        request
            .headers()
            .get_all(CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    if has("close") {
        return false;
    }
    match request.version() {
        Version::HTTP_11 => true,
        Version::HTTP_10 => has("keep-alive"),
        _ => false,
    }
}

/// Whether `request` waits for a `100 Continue` before sending its body:
/// an HTTP/1.1 `Expect: 100-continue` (RFC 9110 §10.1.1; HTTP/1.0 clients
/// do not wait, so it is ignored there).
pub fn expects_continue<B>(request: &Request<B>) -> bool {
    request.version() == Version::HTTP_11
        && request
            .headers()
            .get(EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
}
