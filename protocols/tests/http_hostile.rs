//! twill's HTTP/1.1 server ([`HttpServer`]) against hostile clients: raw
//! `TcpStream`s over 127.0.0.1 that break every limit, try request
//! smuggling and header injection, trickle their heads (slowloris),
//! pipeline large answers without reading them, split their requests at
//! random points, and reset in the middle of a body. Each test then checks
//! the server still serves a new connection.
//!
//! The statuses checked are those `HttpServer`'s and
//! `HttpRequestDecoder`'s docs give. Every read and write has a timeout
//! and the reactor runs under a watchdog, so a server that stops answering
//! fails a test instead of hanging it.
#![cfg(feature = "http")]

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{HeaderValue, Method, Request, Response, StatusCode};
use twill::defer::{succeed, Deferred};
use twill::task::Clock;
use twill::testing::StringTransport;
use twill::{Bytes, Protocol, Reactor, ReactorHandle};
use twill_protocols::http::{Body, BodyWriter, Handler, HttpServer};
use twill_test_support::reactor::serve;

/// How long a client read or write may take.
const WAIT: Duration = Duration::from_secs(10);

/// The size of `/big`'s answer.
const BIG: usize = 4 << 20;

// ------------------------------------------------------------ the server

/// The test server's handler: `/` answers `ok`, `POST /echo` echoes,
/// `/big` answers 4 MiB from memory, `/big-stream` the same through a
/// [`BodyWriter`] (noting how much the connection held when it started),
/// `/slow-stream` 16 MiB in 64 KiB pieces written only while the
/// connection takes them, `/inject` sets a header value with CRLF in it
/// (unchecked), `/panic` panics. Counts its calls.
struct Routes {
    calls: Arc<AtomicUsize>,
    /// The most bytes the connection's write buffer held when a
    /// `/big-stream` answer began.
    most_buffered: Arc<AtomicUsize>,
    big: Bytes,
}

impl Handler for Routes {
    fn handle(&self, request: Request<Bytes>) -> Deferred<Response<Body>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let response = match (request.method(), request.uri().path()) {
            (&Method::POST, "/echo") => Response::new(Body::Full(request.into_body())),
            (_, "/big") => Response::new(Body::Full(self.big.clone())),
            (_, "/big-stream") => {
                let (big, most_buffered) = (self.big.clone(), self.most_buffered.clone());
                Response::new(Body::stream(move |writer| {
                    let buffered = writer.transport().write_buffer_size();
                    most_buffered.fetch_max(buffered, Ordering::SeqCst);
                    writer.write(big);
                    writer.finish();
                }))
            }
            (_, "/slow-stream") => Response::new(Body::stream(|writer| write_pieces(writer, 256))),
            (_, "/panic") => panic!("a handler that panics"),
            (_, "/inject") => {
                let mut response = Response::new(Body::from("injected?\n"));
                // The checked constructors refuse CR and LF: a handler
                // could only get here by going around them.
                // SAFETY: the bytes break the http crate's rule for header
                // values (no CR or LF), which is what the encoder must
                // catch; it is not a memory-safety rule (the value is
                // plain bytes, read as bytes).
                let value = unsafe {
                    HeaderValue::from_maybe_shared_unchecked(Bytes::from_static(
                        b"a\r\nX-Injected: yes\r\n\r\nHTTP/1.1 200 OK",
                    ))
                };
                response.headers_mut().insert("x-note", value);
                response
            }
            (_, "/") => Response::new(Body::from("ok\n")),
            _ => Response::builder()
                .status(StatusCode::NOT_FOUND)
                .body(Body::from("not found\n"))
                .unwrap(),
        };
        succeed(response)
    }
}

fn routes(calls: &Arc<AtomicUsize>) -> Routes {
    Routes {
        calls: calls.clone(),
        most_buffered: Arc::default(),
        big: Bytes::from(vec![b'b'; BIG]),
    }
}

/// Writes `left` pieces of 64 KiB, each only once the connection takes
/// more, as a well-behaved streaming handler does.
fn write_pieces(writer: BodyWriter, mut left: usize) {
    while left > 0 {
        if !writer.is_open() {
            return;
        }
        if !writer.is_writable() {
            let again = writer.clone();
            writer.when_writable(move || write_pieces(again, left));
            return;
        }
        writer.write(vec![b's'; 64 * 1024]);
        left -= 1;
    }
    writer.finish();
}

/// Stops the reactor when dropped, so a client that panics ends the test
/// at once instead of at the watchdog.
struct StopOnDrop(ReactorHandle);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.stop();
    }
}

/// Runs an `HttpServer` of [`Routes`] (configured by `configure`) and
/// `client` against it; returns what the client returned and the
/// handler's call count. A panic in the client fails the test.
fn with_server<R: Send + 'static>(
    configure: impl FnOnce(HttpServer<Routes>) -> HttpServer<Routes>,
    client: impl FnOnce(SocketAddr, Arc<AtomicUsize>) -> R + Send + 'static,
) -> (R, usize) {
    with_routes(routes(&Arc::default()), configure, client)
}

/// [`with_server`] with the given routes (to read their counters after).
fn with_routes<R: Send + 'static>(
    routes: Routes,
    configure: impl FnOnce(HttpServer<Routes>) -> HttpServer<Routes>,
    client: impl FnOnce(SocketAddr, Arc<AtomicUsize>) -> R + Send + 'static,
) -> (R, usize) {
    let calls = routes.calls.clone();
    let reactor = Reactor::new().unwrap();
    let server = configure(HttpServer::new(routes).server_name(None));
    let seen = calls.clone();
    let outcome = serve(&reactor, server, move |addr, handle| {
        let _stop = StopOnDrop(handle);
        catch_unwind(AssertUnwindSafe(|| client(addr, seen)))
    });
    match outcome {
        Ok(value) => (value, calls.load(Ordering::SeqCst)),
        Err(panic) => resume_unwind(panic),
    }
}

// ------------------------------------------------------------ the clients

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&addr, WAIT).expect("connect");
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.set_write_timeout(Some(WAIT)).unwrap();
    stream.set_nodelay(true).unwrap();
    stream
}

/// Everything the server sends until it closes. A reset after its answer
/// counts as the close: the server closing with our unread request bytes
/// in its socket resets the connection, which is how a refusal may end.
fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0; 64 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(err) if err.kind() == ErrorKind::ConnectionReset => return got,
            Err(err) => panic!(
                "the server did not close within {WAIT:?}: {err} (after {:?})",
                text(&got)
            ),
        }
    }
}

/// Sends `request` on a new connection (a write cut short by the
/// server's close is fine) and returns all the server sent before closing.
fn exchange(addr: SocketAddr, request: &[u8]) -> Vec<u8> {
    let mut stream = connect(addr);
    if let Err(err) = stream.write_all(request) {
        assert!(
            matches!(
                err.kind(),
                ErrorKind::ConnectionReset | ErrorKind::BrokenPipe
            ),
            "write: {err}"
        );
    }
    read_until_closed(&mut stream)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The status codes of the responses in `answer`, in order (enough for
/// answers whose bodies do not hold status lines).
fn statuses(answer: &[u8]) -> Vec<u16> {
    text(answer)
        .match_indices("HTTP/1.1 ")
        .filter_map(|(at, _)| text(answer).get(at + 9..at + 12)?.parse().ok())
        .collect()
}

/// `answer` is one response with `status`, saying it closes.
fn assert_refused(answer: &[u8], status: u16) {
    let shown = text(answer);
    assert_eq!(statuses(answer), [status], "{shown}");
    assert!(shown.contains("\r\nconnection: close\r\n"), "{shown}");
}

/// A new connection still gets `ok`.
fn assert_serves(addr: SocketAddr) {
    let answer = exchange(
        addr,
        b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    let shown = text(&answer);
    assert!(shown.starts_with("HTTP/1.1 200 OK\r\n"), "{shown}");
    assert!(shown.ends_with("\r\n\r\nok\n"), "{shown}");
}

/// Sends each request on its own connection; each gets its status and a
/// close, and the server serves a new connection afterwards.
fn refusals(configure: fn(HttpServer<Routes>) -> HttpServer<Routes>, cases: Vec<(Vec<u8>, u16)>) {
    with_server(configure, move |addr, _| {
        for (request, status) in cases {
            let answer = exchange(addr, &request);
            let shown = text(&request[..request.len().min(200)]);
            assert_eq!(
                statuses(&answer),
                [status],
                "request {shown:?} got {}",
                text(&answer)
            );
            assert_refused(&answer, status);
            assert_serves(addr);
        }
    });
}

fn same(server: HttpServer<Routes>) -> HttpServer<Routes> {
    server
}

// ------------------------------------------------------------ limits

#[test]
fn a_request_line_over_8_kib_gets_414() {
    let long = format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(8 * 1024));
    // Past the limit with no line end yet: refused before the line ends.
    let endless = format!("GET /{}", "a".repeat(12 * 1024));
    refusals(same, vec![(long.into(), 414), (endless.into(), 414)]);
}

#[test]
fn a_header_block_over_64_kib_gets_431() {
    let mut request = b"GET / HTTP/1.1\r\nHost: t\r\n".to_vec();
    for n in 0..70 {
        request.extend(format!("X-Filler-{n}: {}\r\n", "f".repeat(1000)).as_bytes());
    }
    request.extend(b"\r\n");
    refusals(same, vec![(request, 431)]);
}

#[test]
fn over_100_header_fields_get_431() {
    let mut request = b"GET / HTTP/1.1\r\nHost: t\r\n".to_vec();
    for n in 0..100 {
        request.extend(format!("X-F{n}: v\r\n").as_bytes());
    }
    request.extend(b"\r\n");
    refusals(same, vec![(request, 431)]);
}

#[test]
fn exactly_100_header_fields_are_served() {
    let mut request = b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n".to_vec();
    for n in 0..98 {
        request.extend(format!("X-F{n}: v\r\n").as_bytes());
    }
    request.extend(b"\r\n");
    let (answer, _) = with_server(same, move |addr, _| exchange(addr, &request));
    assert_eq!(statuses(&answer), [200], "{}", text(&answer));
}

#[test]
fn a_body_over_max_body_gets_413_with_or_without_expect() {
    let length = b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1025\r\n\r\n".to_vec();
    let mut chunked =
        b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..3 {
        chunked.extend(b"200\r\n");
        chunked.extend([b'c'; 0x200]);
        chunked.extend(b"\r\n");
    }
    let (_, calls) = with_server(
        |server| server.max_body(1024),
        move |addr, _| {
            let mut plain = length.clone();
            plain.extend([b'x'; 1025]);
            assert_refused(&exchange(addr, &plain), 413);
            assert_serves(addr);
            assert_refused(&exchange(addr, &chunked), 413);
            assert_serves(addr);
            // With Expect: the head alone is refused: no 100 Continue, and
            // the client never has to send the body.
            let mut stream = connect(addr);
            stream
                .write_all(
                    b"POST /echo HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n\
                      Content-Length: 1025\r\n\r\n",
                )
                .unwrap();
            let answer = read_until_closed(&mut stream);
            assert!(!text(&answer).contains("100 Continue"), "{}", text(&answer));
            assert_refused(&answer, 413);
            assert_serves(addr);
        },
    );
    assert_eq!(calls, 3, "only the checks' requests reach the handler");
}

#[test]
fn a_body_within_max_body_with_expect_gets_100_continue_first() {
    let (answer, _) = with_server(
        |server| server.max_body(1024),
        |addr, _| {
            let mut stream = connect(addr);
            stream
                .write_all(
                    b"POST /echo HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n\
                      Connection: close\r\nContent-Length: 1024\r\n\r\n",
                )
                .unwrap();
            let mut interim = [0; 25];
            stream.read_exact(&mut interim).unwrap();
            assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
            stream.write_all(&[b'y'; 1024]).unwrap();
            read_until_closed(&mut stream)
        },
    );
    assert_eq!(statuses(&answer), [200]);
    assert!(answer.ends_with(&[b'y'; 1024]));
}

// ------------------------------------------------------------ smuggling

/// A request that a lenient parser could read as two: the second must
/// never be answered, which [`refusals`] checks (one status, then close).
fn smuggling(head: &str, body: &str) -> Vec<u8> {
    format!("POST /echo HTTP/1.1\r\nHost: t\r\n{head}\r\n{body}GET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n")
        .into_bytes()
}

#[test]
fn content_length_with_transfer_encoding_gets_400() {
    refusals(
        same,
        vec![
            (
                smuggling(
                    "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
                    "0\r\n\r\n",
                ),
                400,
            ),
            (
                smuggling(
                    "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
                    "0\r\n\r\n",
                ),
                400,
            ),
        ],
    );
}

#[test]
fn several_or_malformed_content_lengths_get_400() {
    refusals(
        same,
        vec![
            (
                smuggling("Content-Length: 5\r\nContent-Length: 6\r\n", "hello"),
                400,
            ),
            (
                smuggling("Content-Length: 5\r\nContent-Length: 5\r\n", "hello"),
                400,
            ),
            (smuggling("Content-Length: 5, 5\r\n", "hello"), 400),
            (smuggling("Content-Length: +5\r\n", "hello"), 400),
            (smuggling("Content-Length: -1\r\n", ""), 400),
            (smuggling("Content-Length: 0x5\r\n", "hello"), 400),
            (
                smuggling("Content-Length: 99999999999999999999999\r\n", ""),
                400,
            ),
        ],
    );
}

#[test]
fn transfer_codings_other_than_chunked_are_refused() {
    refusals(
        same,
        vec![
            (
                smuggling("Transfer-Encoding: gzip, chunked\r\n", "0\r\n\r\n"),
                501,
            ),
            (
                smuggling("Transfer-Encoding: x-unknown, chunked\r\n", "0\r\n\r\n"),
                501,
            ),
            (
                smuggling("Transfer-Encoding: chunked, gzip\r\n", "0\r\n\r\n"),
                400,
            ),
            (
                smuggling("Transfer-Encoding: identity\r\n", "0\r\n\r\n"),
                400,
            ),
            (
                smuggling("Transfer-Encoding: chunked, chunked\r\n", "0\r\n\r\n"),
                400,
            ),
            (
                smuggling("Transfer-Encoding: xchunked\r\n", "0\r\n\r\n"),
                400,
            ),
            (
                b"POST /echo HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_vec(),
                400,
            ),
        ],
    );
}

#[test]
fn invalid_chunk_sizes_get_400() {
    let chunked = |size_line: &str| {
        smuggling(
            "Transfer-Encoding: chunked\r\n",
            &format!("{size_line}\r\n0123456789abcdef\r\n0\r\n\r\n"),
        )
    };
    refusals(
        same,
        vec![
            (chunked("0x10"), 400),
            (chunked("-1"), 400),
            (chunked("+10"), 400),
            (chunked("10000000000000010"), 400),
            (chunked("ffffffffffffffffff"), 400),
            (chunked(" 10"), 400),
            (chunked("1 0"), 400),
            (chunked(""), 400),
            (chunked("g"), 400),
            (chunked("10;ext\rx"), 400),
            // Data longer than its size: no CRLF where the size ends it.
            (chunked("f"), 400),
        ],
    );
}

#[test]
fn chunk_extensions_and_whitespace_before_them_are_accepted() {
    let request = b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\
        Connection: close\r\n\r\n5 ;name=value\r\nhello\r\n6;a;b=\"c\"\r\n world\r\n0\r\n\r\n";
    let (answer, _) = with_server(same, move |addr, _| exchange(addr, request));
    let shown = text(&answer);
    assert!(shown.starts_with("HTTP/1.1 200 OK\r\n"), "{shown}");
    assert!(shown.ends_with("\r\n\r\nhello world"), "{shown}");
}

#[test]
fn obs_fold_bare_cr_and_nul_in_a_head_get_400() {
    refusals(
        same,
        vec![
            (
                b"GET / HTTP/1.1\r\nHost: t\r\nX-A: one\r\n two\r\n\r\n".to_vec(),
                400,
            ),
            (
                b"GET / HTTP/1.1\r\nHost: t\r\nX-A: one\r\n\ttwo\r\n\r\n".to_vec(),
                400,
            ),
            (b"GET / HTTP/1.1\r\n Host: t\r\n\r\n".to_vec(), 400),
            (b"GET / HTTP/1.1\rHost: t\r\n\r\n".to_vec(), 400),
            (
                b"GET / HTTP/1.1\r\nHost: t\r\nX-A: a\rb\r\n\r\n".to_vec(),
                400,
            ),
            (
                b"GET / HTTP/1.1\r\nHost: t\r\nX-A: a\0b\r\n\r\n".to_vec(),
                400,
            ),
            (b"GET /a\0b HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(), 400),
            (b"GET / HTTP/1.1\r\nHost: t\r\nX A: b\r\n\r\n".to_vec(), 400),
            (
                b"GET / HTTP/1.1\r\nHost: t\r\nX-A : b\r\n\r\n".to_vec(),
                400,
            ),
            (b"GET / HTTP/2.0\r\nHost: t\r\n\r\n".to_vec(), 505),
            (b"GET / HTTP/1.1 extra\r\nHost: t\r\n\r\n".to_vec(), 400),
        ],
    );
}

#[test]
fn bare_lf_line_ends_are_accepted_as_rfc_9112_allows() {
    // RFC 9112 §2.2: a recipient may take a bare LF as a line end (the
    // decoder does, through httparse); what it reads is what the client
    // meant, so nothing can be smuggled by it.
    let request = b"POST /echo HTTP/1.1\nHost: t\nContent-Length: 3\nConnection: close\n\nabc";
    let (answer, _) = with_server(same, move |addr, _| exchange(addr, request));
    let shown = text(&answer);
    assert!(shown.starts_with("HTTP/1.1 200 OK\r\n"), "{shown}");
    assert!(shown.ends_with("\r\n\r\nabc"), "{shown}");
}

#[test]
fn bare_lf_or_cr_in_chunked_framing_gets_400() {
    // The chunked framing is read strictly (CRLF only): lines that proxies
    // split differently are where smuggling lives.
    refusals(
        same,
        vec![
            (
                smuggling("Transfer-Encoding: chunked\r\n", "5\nhello\r\n0\r\n\r\n"),
                400,
            ),
            (
                smuggling("Transfer-Encoding: chunked\r\n", "5\r\nhello\n0\r\n\r\n"),
                400,
            ),
            (
                smuggling("Transfer-Encoding: chunked\r\n", "5\r\nhello\rx0\r\n\r\n"),
                400,
            ),
            (
                smuggling(
                    "Transfer-Encoding: chunked\r\n",
                    "5\r5\r\nhello\r\n0\r\n\r\n",
                ),
                400,
            ),
        ],
    );
}

#[test]
fn http_1_1_without_exactly_one_host_gets_400() {
    refusals(
        same,
        vec![
            (b"GET / HTTP/1.1\r\n\r\n".to_vec(), 400),
            (
                b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n".to_vec(),
                400,
            ),
            (
                b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n".to_vec(),
                400,
            ),
            (
                b"POST /echo HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello".to_vec(),
                400,
            ),
        ],
    );
    // HTTP/1.0 has no Host requirement.
    let (answer, _) = with_server(same, |addr, _| exchange(addr, b"GET / HTTP/1.0\r\n\r\n"));
    assert_eq!(statuses(&answer), [200], "{}", text(&answer));
}

#[test]
fn a_refused_request_answers_none_of_the_pipelined_ones_after_it() {
    let mut stream = Vec::new();
    stream.extend(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    stream.extend(b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n");
    stream.extend(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    let (answer, calls) = with_server(same, move |addr, _| exchange(addr, &stream));
    assert_eq!(statuses(&answer), [200, 400], "{}", text(&answer));
    assert_eq!(calls, 1);
}

// ------------------------------------------------------------ injection

/// In a debug build the http crate checks the unchecked constructor and
/// panics in the handler (a `500` through the panic path); in a release
/// build the value reaches the encoder, which refuses it (a `500` through
/// the encoder's fallback). Either way nothing of the value is sent.
#[test]
fn a_header_value_with_crlf_gets_a_500_and_nothing_injected() {
    let (answer, calls) = with_server(same, |addr, _| {
        exchange(
            addr,
            b"GET /inject HTTP/1.1\r\nHost: t\r\n\r\n\
              GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        )
    });
    let shown = text(&answer);
    // The 500, then the next request's answer on the same connection.
    assert_eq!(statuses(&answer), [500, 200], "{shown}");
    assert!(
        !shown.to_ascii_lowercase().contains("x-injected"),
        "{shown}"
    );
    assert!(!shown.contains("x-note"), "{shown}");
    assert!(!shown.contains("injected?"), "{shown}");
    assert_eq!(calls, 2);
}

// ------------------------------------------------------------ slow clients

#[test]
fn a_head_trickling_in_byte_by_byte_gets_408_at_header_timeout() {
    let timeout = Duration::from_millis(500);
    let ((answer, elapsed), calls) = with_server(
        |server| server.header_timeout(timeout),
        |addr, _| {
            let mut stream = connect(addr);
            let mut writer = stream.try_clone().unwrap();
            let started = Instant::now();
            // The slowloris: a byte per 100 ms of a head that never ends,
            // for longer than the test lets the server wait.
            let trickle = std::thread::spawn(move || {
                let head = b"GET / HTTP/1.1\r\nHost: t\r\nX-Slow: ";
                for byte in head.iter().chain([b'z'; 100].iter()) {
                    if writer.write_all(&[*byte]).is_err() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            });
            let answer = read_until_closed(&mut stream);
            let elapsed = started.elapsed();
            let _ = stream.shutdown(Shutdown::Both);
            trickle.join().unwrap();
            assert_serves(addr);
            (answer, elapsed)
        },
    );
    assert_refused(&answer, 408);
    assert!(
        elapsed >= timeout && elapsed < timeout * 6,
        "closed after {elapsed:?}"
    );
    println!("slowloris cut after {elapsed:?} (header_timeout {timeout:?})");
    assert_eq!(calls, 1);
}

#[test]
fn an_idle_keep_alive_connection_is_closed_at_idle_timeout() {
    let timeout = Duration::from_millis(500);
    let ((answer, elapsed), _) = with_server(
        |server| server.idle_timeout(timeout),
        |addr, _| {
            let mut stream = connect(addr);
            stream
                .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
                .unwrap();
            let answered = Instant::now();
            let answer = read_until_closed(&mut stream);
            (answer, answered.elapsed())
        },
    );
    let shown = text(&answer);
    assert!(shown.starts_with("HTTP/1.1 200 OK\r\n"), "{shown}");
    assert!(!shown.contains("connection: close"), "{shown}");
    assert!(
        elapsed >= timeout && elapsed < timeout * 6,
        "closed after {elapsed:?}"
    );
}

#[test]
fn a_body_that_stops_arriving_gets_408_at_idle_timeout() {
    let timeout = Duration::from_millis(500);
    let (answer, calls) = with_server(
        |server| server.idle_timeout(timeout),
        |addr, _| {
            let mut stream = connect(addr);
            stream
                .write_all(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nhalf")
                .unwrap();
            let answer = read_until_closed(&mut stream);
            assert_serves(addr);
            answer
        },
    );
    assert_refused(&answer, 408);
    assert_eq!(calls, 1);
}

/// Polls `calls` until it stays the same for `quiet` (bounded by [`WAIT`]).
/// Nothing tells a client the server has stopped doing something, so
/// showing it has means watching it not happen for a while.
fn settled(calls: &AtomicUsize, quiet: Duration) -> usize {
    let deadline = Instant::now() + WAIT;
    let mut last = (calls.load(Ordering::SeqCst), Instant::now());
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        let now = calls.load(Ordering::SeqCst);
        if now != last.0 {
            last = (now, Instant::now());
        } else if last.1.elapsed() >= quiet {
            return now;
        }
    }
    panic!("the handler kept being called: {} calls", last.0);
}

#[test]
fn a_client_pipelining_1000_large_answers_without_reading_is_held_back() {
    let (held, calls) = with_server(same, |addr, calls| {
        let mut greedy = connect(addr);
        let requests = b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n".repeat(1000);
        greedy.write_all(&requests).unwrap();
        let held = settled(&calls, Duration::from_millis(500));
        // Others are served meanwhile, and after the greedy one leaves.
        assert_serves(addr);
        drop(greedy);
        assert_serves(addr);
        held
    });
    println!("1000 pipelined 4 MiB requests, never read: {held} handler calls");
    // Each answer is written whole into the connection's buffer; the next
    // request is decoded only once the buffer drains to its low mark, so
    // what a client that never reads makes the server hold is about one
    // answer plus what the kernel's socket buffers take.
    assert!((1..=4).contains(&held), "{held} handler calls");
    assert_eq!(calls, held + 2);
}

#[test]
fn a_client_that_never_reads_its_answer_is_aborted_at_idle_timeout() {
    let timeout = Duration::from_millis(500);
    let (calls_after, calls) = with_server(
        |server| server.idle_timeout(timeout),
        move |addr, calls| {
            let mut greedy = connect(addr);
            greedy
                .write_all(&b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n".repeat(10))
                .unwrap();
            let held = settled(&calls, timeout * 3);
            // The server gave up on it: reading now finds the answers
            // it had buffered cut off by a reset or a close, well short of
            // the ten asked for.
            let got = drain(&mut greedy);
            assert!(got < 10 * BIG, "read {got} bytes");
            assert_serves(addr);
            held
        },
    );
    assert_eq!(calls, calls_after + 1);
}

/// Reads what is left on `stream` until it ends (EOF or reset).
fn drain(stream: &mut TcpStream) -> usize {
    let mut total = 0usize;
    let mut buf = vec![0; 1 << 20];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return total,
            Ok(n) => total += n,
        }
    }
}

#[test]
fn a_client_that_never_reads_one_large_answer_is_aborted_at_idle_timeout() {
    let timeout = Duration::from_millis(500);
    let (got, _) = with_server(
        |server| server.idle_timeout(timeout),
        move |addr, _| {
            let mut stalled = connect(addr);
            stalled
                .write_all(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n")
                .unwrap();
            // Not reading for several timeouts: nothing a client can wait
            // on shows the server giving up, so the test waits it out.
            std::thread::sleep(timeout * 4);
            drain(&mut stalled)
        },
    );
    assert!(got < BIG, "read all {got} bytes: the answer was not cut");
}

#[test]
fn a_pipelined_stream_answer_starts_only_once_the_last_one_drained() {
    let routes = routes(&Arc::default());
    let most_buffered = routes.most_buffered.clone();
    let (held, calls) = with_routes(routes, same, |addr, calls| {
        let mut greedy = connect(addr);
        let requests = b"GET /big-stream HTTP/1.1\r\nHost: t\r\n\r\n".repeat(1000);
        greedy.write_all(&requests).unwrap();
        let held = settled(&calls, Duration::from_millis(500));
        drop(greedy);
        assert_serves(addr);
        held
    });
    let most_buffered = most_buffered.load(Ordering::SeqCst);
    println!(
        "1000 pipelined 4 MiB streams, never read: {held} handler calls, \
         at most {most_buffered} bytes buffered when one began"
    );
    assert!((1..=4).contains(&held), "{held} handler calls");
    assert_eq!(calls, held + 1);
    // The connection's buffer had drained (below its low-water mark)
    // before each later answer began: a non-reader holds one answer.
    assert!(most_buffered < BIG / 4, "{most_buffered} bytes buffered");
}

#[test]
fn a_client_that_stops_reading_a_streamed_answer_is_aborted_at_idle_timeout() {
    let timeout = Duration::from_millis(500);
    let (got, _) = with_server(
        |server| server.idle_timeout(timeout),
        move |addr, _| {
            let mut stalled = connect(addr);
            stalled
                .write_all(b"GET /slow-stream HTTP/1.1\r\nHost: t\r\n\r\n")
                .unwrap();
            let mut head = [0; 17];
            stalled.read_exact(&mut head).unwrap();
            assert_eq!(&head, b"HTTP/1.1 200 OK\r\n");
            // Stop reading for longer than the timeout; the server must
            // give up on the answer rather than wait for ever.
            std::thread::sleep(timeout * 4);
            let total = drain(&mut stalled);
            assert_serves(addr);
            total
        },
    );
    assert!(
        got < 16 << 20,
        "read all {got} bytes: the stream was not cut"
    );
}

#[test]
fn a_panicking_handler_gets_a_500_and_the_connection_goes_on() {
    let (answer, calls) = with_server(same, |addr, _| {
        exchange(
            addr,
            b"GET /panic HTTP/1.1\r\nHost: t\r\n\r\n\
              GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        )
    });
    assert_eq!(statuses(&answer), [500, 200], "{}", text(&answer));
    assert_eq!(calls, 2);
}

#[test]
fn a_half_close_after_a_request_still_gets_the_answer() {
    let (answers, calls) = with_server(same, |addr, _| {
        let mut whole = connect(addr);
        whole
            .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\nGET /missing HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        whole.shutdown(Shutdown::Write).unwrap();
        let answered = read_until_closed(&mut whole);
        // Half a request and then EOF: nothing to answer; closed.
        let mut half = connect(addr);
        half.write_all(b"GET / HTTP/1.1\r\nHo").unwrap();
        half.shutdown(Shutdown::Write).unwrap();
        (answered, read_until_closed(&mut half))
    });
    assert_eq!(statuses(&answers.0), [200, 404], "{}", text(&answers.0));
    assert_eq!(text(&answers.1), "");
    assert_eq!(calls, 2);
}

// ------------------------------------------------------------ split points

/// A stream of pipelined requests with chunked bodies, extensions and
/// trailers, the last one closing.
fn pipelined_stream() -> Vec<u8> {
    let mut stream = Vec::new();
    stream.extend(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
    stream.extend(b"3;ext=1\r\none\r\n4\r\n two\r\n0\r\nChecksum: abc\r\nX-T: 1\r\n\r\n");
    stream.extend(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    stream.extend(b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\n");
    stream.extend(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\nhello world");
    stream.extend(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
    stream.extend(b"a\r\n0123456789\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\n\r\n");
    stream.extend(b"GET /missing HTTP/1.1\r\nHost: t\r\n\r\n");
    stream.extend(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    stream
}

const EXPECTED_BODIES: [&str; 7] = [
    "one two",
    "ok\n",
    "",
    "hello world",
    "0123456789abcdefghijklmnopqrstuvwxyz",
    "not found\n",
    "ok\n",
];

/// A small xorshift: random split points from a fixed seed, no crate.
struct XorShift(u64);

impl XorShift {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// `stream` cut into pieces of 1 to `max_piece` bytes.
fn pieces(stream: &[u8], seed: u64, max_piece: u64) -> Vec<&[u8]> {
    let mut random = XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut rest = stream;
    let mut out = Vec::new();
    while !rest.is_empty() {
        let n = (1 + random.below(max_piece) as usize).min(rest.len());
        let (piece, tail) = rest.split_at(n);
        out.push(piece);
        rest = tail;
    }
    out
}

/// The answer with each `date` field's value blanked (it is the only part
/// that changes from run to run, and has a fixed length).
fn without_dates(answer: &[u8]) -> String {
    let shown = text(answer);
    shown
        .split("\r\n")
        .map(|line| {
            if line.starts_with("date: ") {
                "date: -"
            } else {
                line
            }
        })
        .collect::<Vec<_>>()
        .join("\r\n")
}

/// The stream fed to one connection piece by piece (no sockets, so the
/// pieces arrive exactly as cut).
fn answer_in_pieces(pieces: &[&[u8]]) -> (String, bool) {
    let calls = Arc::new(AtomicUsize::new(0));
    let server = HttpServer::new(routes(&calls))
        .server_name(None)
        .clock(Rc::new(Clock::new()));
    let mut protocol = server.protocol();
    let recorder = StringTransport::new();
    protocol.connection_made(&recorder.transport());
    for piece in pieces {
        protocol.data_received(Bytes::copy_from_slice(piece));
    }
    (without_dates(&recorder.value()), recorder.disconnecting())
}

#[test]
fn random_split_points_give_the_same_answers() {
    let stream = pipelined_stream();
    let (whole, closed) = answer_in_pieces(&[&stream]);
    assert!(closed, "the last request asked to close");
    assert_eq!(
        statuses(whole.as_bytes()),
        [200, 200, 200, 200, 200, 404, 200]
    );
    let mut rest = whole.as_str();
    for body in EXPECTED_BODIES {
        let head_end = rest.find("\r\n\r\n").unwrap() + 4;
        let next = rest[head_end..]
            .find("HTTP/1.1 ")
            .map_or(rest.len(), |n| n + head_end);
        assert_eq!(&rest[head_end..next], body, "in {whole}");
        rest = &rest[next..];
    }
    for seed in 1..=200 {
        for max_piece in [2, 7, 40] {
            let cut = pieces(&stream, seed, max_piece);
            assert_eq!(
                answer_in_pieces(&cut),
                (whole.clone(), true),
                "seed {seed}, pieces of at most {max_piece}: {cut:?}"
            );
        }
    }
    // Byte by byte, the worst case.
    let bytes: Vec<&[u8]> = stream.chunks(1).collect();
    assert_eq!(answer_in_pieces(&bytes), (whole, true));
}

#[test]
fn random_split_points_over_tcp_give_the_same_answers() {
    let stream = pipelined_stream();
    let (whole, _) = answer_in_pieces(&[&stream]);
    let (answers, _) = with_server(same, move |addr, _| {
        (1..=20)
            .map(|seed| {
                let mut socket = connect(addr);
                for piece in pieces(&stream, seed, 64) {
                    socket.write_all(piece).unwrap();
                }
                without_dates(&read_until_closed(&mut socket))
            })
            .collect::<Vec<_>>()
    });
    for (seed, answer) in answers.iter().enumerate() {
        assert_eq!(answer, &whole, "seed {}", seed + 1);
    }
}

// ------------------------------------------------------------ resets

/// Closes `stream` with a reset (SO_LINGER 0) instead of a FIN.
fn reset(stream: TcpStream) {
    socket2::SockRef::from(&stream)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(stream);
}

#[test]
fn a_reset_in_the_middle_of_a_large_answer_leaves_the_server_serving() {
    let (_, calls) = with_server(same, |addr, _| {
        let mut stream = connect(addr);
        stream
            .write_all(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        let mut first = vec![0; 256 * 1024];
        stream.read_exact(&mut first).unwrap();
        assert!(first.starts_with(b"HTTP/1.1 200 OK\r\n"));
        reset(stream);
        assert_serves(addr);
        assert_serves(addr);
    });
    assert_eq!(calls, 3);
}

#[test]
fn a_reset_in_the_middle_of_a_request_body_leaves_the_server_serving() {
    let (_, calls) = with_server(same, |addr, _| {
        let mut stream = connect(addr);
        stream
            .write_all(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000\r\n\r\n")
            .unwrap();
        stream.write_all(&[b'p'; 100_000]).unwrap();
        reset(stream);
        let mut chunked = connect(addr);
        chunked
            .write_all(
                b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n0123",
            )
            .unwrap();
        reset(chunked);
        assert_serves(addr);
    });
    assert_eq!(calls, 1, "no half-received request reached the handler");
}
