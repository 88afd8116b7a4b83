//! `HttpServer` over 127.0.0.1 with a raw Rust client, and its timeouts
//! against a hand-advanced clock: keep-alive, pipelining in order with
//! late answers, HTTP/1.0, `100 Continue`, `HEAD`, errors that close,
//! handler failures that do not, streamed and file bodies, upgrades,
//! half-close, and clients that stop reading.

#![cfg(feature = "http")]

use std::cell::{Cell, RefCell};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::rc::Rc;
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use twill::defer::{succeed, Deferred};
use twill::task::Clock;
use twill::testing::StringTransport;
use twill::{Bytes, Protocol, Reactor, Transport};
use twill_protocols::http::{Body, BodyWriter, ConnectionInfo, HttpServer, StaticFiles, Upgrade};
use twill_test_support::files::TempDir;
use twill_test_support::reactor::{connect, serve};

// ------------------------------------------------------------ the client

/// A response as the client read it.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

struct Client {
    reader: BufReader<TcpStream>,
}

impl Client {
    fn new(addr: SocketAddr) -> Client {
        Client {
            reader: BufReader::new(connect(addr)),
        }
    }

    fn send(&mut self, data: &[u8]) {
        self.reader.get_mut().write_all(data).unwrap();
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.reader.read_line(&mut line).unwrap();
        line
    }

    /// Reads one response to a request with `method`.
    fn read(&mut self, method: &str) -> Answer {
        let status_line = self.line();
        assert!(status_line.starts_with("HTTP/1.1 "), "{status_line:?}");
        let status: u16 = status_line[9..12].parse().unwrap();
        let mut headers = Vec::new();
        loop {
            let line = self.line();
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(':').unwrap();
            headers.push((name.to_string(), value.trim().to_string()));
        }
        let mut answer = Answer {
            status,
            headers,
            body: Vec::new(),
        };
        if method == "HEAD" || status == 204 || status == 304 || status < 200 {
            return answer;
        }
        if answer.header("transfer-encoding") == Some("chunked") {
            loop {
                let size = usize::from_str_radix(self.line().trim(), 16).unwrap();
                let mut chunk = vec![0; size + 2];
                self.reader.read_exact(&mut chunk).unwrap();
                if size == 0 {
                    break;
                }
                answer.body.extend_from_slice(&chunk[..size]);
            }
        } else if let Some(len) = answer.header("content-length") {
            let mut body = vec![0; len.parse().unwrap()];
            self.reader.read_exact(&mut body).unwrap();
            answer.body = body;
        } else {
            self.reader.read_to_end(&mut answer.body).unwrap();
        }
        answer
    }

    /// Whether the server closed the connection (EOF or reset) with
    /// nothing more to read.
    fn closed(&mut self) -> bool {
        let mut rest = Vec::new();
        match self.reader.read_to_end(&mut rest) {
            Ok(_) => rest.is_empty(),
            Err(err) => err.kind() == std::io::ErrorKind::ConnectionReset,
        }
    }
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").into_bytes()
}

/// Runs `server` on a reactor and `client` against it, then stops.
fn with_server<H: twill_protocols::http::Handler>(
    server: HttpServer<H>,
    client: impl FnOnce(SocketAddr) + Send + 'static,
) {
    let reactor = Reactor::new().unwrap();
    serve(&reactor, server, move |addr, handle| {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| client(addr)));
        handle.stop();
        if let Err(panic) = outcome {
            std::panic::resume_unwind(panic);
        }
    });
}

fn hello(_: Request<Bytes>) -> Deferred<Response<Body>> {
    succeed(Response::new(Body::from("hello")))
}

// ------------------------------------------------------------ keep-alive and order

#[test]
fn keep_alive_answers_several_requests_on_one_connection() {
    with_server(HttpServer::new(hello), |addr| {
        let mut client = Client::new(addr);
        for _ in 0..3 {
            client.send(&get("/"));
            let answer = client.read("GET");
            assert_eq!(answer.status, 200);
            assert_eq!(answer.text(), "hello");
            assert_eq!(answer.header("server"), Some("twill"));
            assert!(answer.header("date").unwrap().ends_with(" GMT"));
            assert_eq!(answer.header("connection"), None);
        }
    });
}

#[test]
fn pipelined_requests_are_answered_in_order_even_when_the_first_answers_late() {
    let server = HttpServer::new(|request: Request<Bytes>| {
        let path = request.uri().path().to_string();
        let answer = Deferred::new();
        let resolver = answer.resolver();
        // The first answer comes last in time; it must still go first.
        let delay = if path == "/1" { 50 } else { 0 };
        twill::call_later(Duration::from_millis(delay), move || {
            resolver.callback(Response::new(Body::from(path)));
        });
        answer
    });
    with_server(server, |addr| {
        let mut client = Client::new(addr);
        let mut all = Vec::new();
        for i in 1..=4 {
            all.extend(get(&format!("/{i}")));
        }
        client.send(&all);
        for i in 1..=4 {
            assert_eq!(client.read("GET").text(), format!("/{i}"));
        }
    });
}

#[test]
fn http_1_0_closes_unless_it_asks_for_keep_alive() {
    with_server(HttpServer::new(hello), |addr| {
        let mut client = Client::new(addr);
        client.send(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        let answer = client.read("GET");
        assert_eq!(answer.header("connection"), Some("keep-alive"));
        client.send(b"GET / HTTP/1.0\r\n\r\n");
        let answer = client.read("GET");
        assert_eq!(answer.header("connection"), Some("close"));
        assert_eq!(answer.text(), "hello");
        assert!(client.closed());
    });
}

#[test]
fn connection_close_from_either_side_closes_after_the_answer() {
    let server = HttpServer::new(|request: Request<Bytes>| {
        let mut response = Response::new(Body::from("bye"));
        if request.uri().path() == "/server-closes" {
            response
                .headers_mut()
                .insert("connection", "close".parse().unwrap());
        }
        succeed(response)
    });
    with_server(server, |addr| {
        let mut client = Client::new(addr);
        client.send(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
        assert_eq!(client.read("GET").header("connection"), Some("close"));
        assert!(client.closed());

        let mut client = Client::new(addr);
        client.send(&get("/server-closes"));
        assert_eq!(client.read("GET").text(), "bye");
        assert!(client.closed());
    });
}

#[test]
fn a_client_that_half_closes_gets_every_answer_then_eof() {
    with_server(HttpServer::new(hello), |addr| {
        let mut client = Client::new(addr);
        let mut two = get("/");
        two.extend(get("/"));
        client.send(&two);
        client.reader.get_ref().shutdown(Shutdown::Write).unwrap();
        assert_eq!(client.read("GET").text(), "hello");
        assert_eq!(client.read("GET").text(), "hello");
        assert!(client.closed());
    });
}

// ------------------------------------------------------------ bodies

#[test]
fn request_bodies_by_length_and_chunked_reach_the_handler_whole() {
    let server = HttpServer::new(|request: Request<Bytes>| {
        let info = request.extensions().get::<ConnectionInfo>().cloned();
        assert!(info.is_some_and(|info| info.peer.to_string().starts_with("127.0.0.1:")));
        succeed(Response::new(Body::Full(request.into_body())))
    });
    with_server(server, |addr| {
        let mut client = Client::new(addr);
        client.send(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello");
        assert_eq!(client.read("POST").text(), "hello");
        client.send(
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n\
              3\r\nabc\r\n4;ext=1\r\ndefg\r\n0\r\nTrailer: x\r\n\r\n",
        );
        assert_eq!(client.read("POST").text(), "abcdefg");
    });
}

#[test]
fn expect_100_continue_is_answered_when_its_turn_comes() {
    let server = HttpServer::new(|request: Request<Bytes>| {
        succeed(Response::new(Body::Full(request.into_body())))
    })
    .max_body(16);
    with_server(server, |addr| {
        let mut client = Client::new(addr);
        client.send(
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n",
        );
        assert_eq!(client.line(), "HTTP/1.1 100 Continue\r\n");
        assert_eq!(client.line(), "\r\n");
        client.send(b"body");
        assert_eq!(client.read("POST").text(), "body");

        // Too large: 413 straight away, no 100, and the connection closes.
        client.send(
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 17\r\nExpect: 100-continue\r\n\r\n",
        );
        let answer = client.read("POST");
        assert_eq!(answer.status, 413);
        assert_eq!(answer.header("connection"), Some("close"));
        assert!(client.closed());
    });
}

#[test]
fn head_gets_the_length_but_no_body() {
    with_server(HttpServer::new(hello), |addr| {
        let mut client = Client::new(addr);
        client.send(b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n");
        let answer = client.read("HEAD");
        assert_eq!(answer.header("content-length"), Some("5"));
        // The next answer starts right after the head: no body was sent.
        client.send(&get("/"));
        assert_eq!(client.read("GET").text(), "hello");
    });
}

#[test]
fn streamed_bodies_are_chunked_for_1_1_and_closed_for_1_0() {
    let server = HttpServer::new(|_: Request<Bytes>| {
        succeed(Response::new(Body::stream(|writer: BodyWriter| {
            let later = writer.clone();
            writer.write("one ");
            twill::call_later(Duration::from_millis(5), move || {
                later.write("two");
                later.finish();
            });
        })))
    });
    with_server(server, |addr| {
        let mut client = Client::new(addr);
        client.send(&get("/"));
        let answer = client.read("GET");
        assert_eq!(answer.header("transfer-encoding"), Some("chunked"));
        assert_eq!(answer.text(), "one two");
        client.send(&get("/"));
        assert_eq!(
            client.read("GET").text(),
            "one two",
            "keep-alive after a stream"
        );

        let mut old = Client::new(addr);
        old.send(b"GET / HTTP/1.0\r\n\r\n");
        let answer = old.read("GET");
        assert_eq!(answer.header("transfer-encoding"), None);
        assert_eq!(answer.header("content-length"), None);
        assert_eq!(answer.text(), "one two");
    });
}

#[test]
fn a_writer_dropped_before_finish_aborts_rather_than_pass_a_cut_body_as_whole() {
    let server = HttpServer::new(|_: Request<Bytes>| {
        succeed(Response::new(Body::stream(|writer: BodyWriter| {
            writer.write("partial");
        })))
    });
    with_server(server, |addr| {
        let mut client = Client::new(addr);
        client.send(&get("/"));
        let mut everything = Vec::new();
        let _ = client.reader.read_to_end(&mut everything);
        // An abort drops what was buffered: the client sees at most part
        // of the body, never its last chunk.
        let text = String::from_utf8_lossy(&everything);
        assert!(!text.contains("0\r\n\r\n"), "no last chunk: {text}");
    });
}

// ------------------------------------------------------------ errors

#[test]
fn bad_requests_get_their_status_and_close_and_the_server_goes_on() {
    with_server(HttpServer::new(hello), |addr| {
        let cases: [(&[u8], u16); 5] = [
            (b"NONSENSE\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\n\r\n", 400), // no Host
            (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
            (
                b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
                400,
            ),
            (b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505),
        ];
        for (request, status) in cases {
            let mut client = Client::new(addr);
            client.send(request);
            let answer = client.read("GET");
            assert_eq!(
                answer.status,
                status,
                "{}",
                String::from_utf8_lossy(request)
            );
            assert_eq!(answer.header("connection"), Some("close"));
            assert!(client.closed());
        }
        let mut long = b"GET /".to_vec();
        long.extend(std::iter::repeat_n(b'a', 9 * 1024));
        long.extend(b" HTTP/1.1\r\nHost: a\r\n\r\n");
        let mut client = Client::new(addr);
        client.send(&long);
        assert_eq!(client.read("GET").status, 414);

        let mut client = Client::new(addr);
        client.send(&get("/"));
        assert_eq!(client.read("GET").text(), "hello", "still serving");
    });
}

#[test]
fn a_panicking_or_failing_handler_gets_500_and_the_connection_goes_on() {
    let server = HttpServer::new(|request: Request<Bytes>| match request.uri().path() {
        "/panic" => panic!("handler bug"),
        "/fail" => twill::defer::fail(twill::defer::Failure::new(std::io::Error::other("no"))),
        _ => hello(request),
    });
    with_server(server, |addr| {
        let mut client = Client::new(addr);
        client.send(&get("/panic"));
        assert_eq!(client.read("GET").status, 500);
        client.send(&get("/fail"));
        assert_eq!(client.read("GET").status, 500);
        client.send(&get("/"));
        assert_eq!(client.read("GET").text(), "hello");
    });
}

#[test]
fn header_values_with_line_breaks_never_reach_the_wire() {
    let server = HttpServer::new(|_: Request<Bytes>| {
        let mut response = Response::new(Body::from("x"));
        let evil = http::HeaderValue::from_maybe_shared(Bytes::from_static(b"a")).unwrap();
        response.headers_mut().insert("x-ok", evil);
        // SAFETY-free but unchecked: the http crate lets this through.
        let injected = unsafe {
            http::HeaderValue::from_maybe_shared_unchecked(Bytes::from_static(
                b"a\r\nSet-Cookie: owned=1",
            ))
        };
        response.headers_mut().insert("x-bad", injected);
        succeed(response)
    });
    with_server(server, |addr| {
        let mut client = Client::new(addr);
        client.send(&get("/"));
        let answer = client.read("GET");
        assert_eq!(answer.status, 500);
        assert!(answer.header("set-cookie").is_none());
    });
}

// ------------------------------------------------------------ files and upgrades

#[test]
fn static_files_with_ranges_conditions_and_a_large_file() {
    let dir = TempDir::new("http-static");
    let big: Vec<u8> = (0..3 * 1024 * 1024u32)
        .map(|i| (i * 7 % 251) as u8)
        .collect();
    dir.write("big.bin", &big);
    dir.write("a.txt", "0123456789");
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    dir.write("sub/index.html", "<p>index</p>");
    let files = StaticFiles::new(dir.path()).unwrap();
    with_server(HttpServer::new(files), move |addr| {
        let mut client = Client::new(addr);
        client.send(&get("/big.bin"));
        let answer = client.read("GET");
        assert_eq!(answer.status, 200);
        assert!(answer.body == big, "the whole file, byte for byte");

        client.send(b"GET /a.txt HTTP/1.1\r\nHost: a\r\nRange: bytes=2-4\r\n\r\n");
        let answer = client.read("GET");
        assert_eq!(answer.status, 206);
        assert_eq!(answer.header("content-range"), Some("bytes 2-4/10"));
        assert_eq!(answer.text(), "234");

        client.send(b"GET /a.txt HTTP/1.1\r\nHost: a\r\nRange: bytes=20-\r\n\r\n");
        let answer = client.read("GET");
        assert_eq!(answer.status, 416);
        assert_eq!(answer.header("content-range"), Some("bytes */10"));

        client.send(&get("/a.txt"));
        let answer = client.read("GET");
        let modified = answer.header("last-modified").unwrap().to_string();
        let etag = answer.header("etag").unwrap().to_string();
        client.send(
            format!("GET /a.txt HTTP/1.1\r\nHost: a\r\nIf-Modified-Since: {modified}\r\n\r\n")
                .as_bytes(),
        );
        assert_eq!(client.read("GET").status, 304);
        client.send(
            format!("GET /a.txt HTTP/1.1\r\nHost: a\r\nIf-None-Match: {etag}\r\n\r\n").as_bytes(),
        );
        assert_eq!(client.read("GET").status, 304);
        client.send(
            b"GET /a.txt HTTP/1.1\r\nHost: a\r\nIf-Modified-Since: Thu, 01 Jan 1970 00:00:00 GMT\r\n\r\n",
        );
        assert_eq!(client.read("GET").status, 200);

        client.send(b"HEAD /big.bin HTTP/1.1\r\nHost: a\r\n\r\n");
        let answer = client.read("HEAD");
        assert_eq!(answer.header("content-length"), Some("3145728"));

        for path in [
            "/../etc/passwd",
            "/%2e%2e/etc/passwd",
            "/sub/%2F..",
            "/nope",
        ] {
            client.send(&get(path));
            assert_eq!(client.read("GET").status, 404, "{path}");
        }
        client.send(&get("/sub"));
        let answer = client.read("GET");
        assert_eq!(answer.status, 301);
        assert_eq!(answer.header("location"), Some("/sub/"));
        client.send(&get("/sub/"));
        assert_eq!(client.read("GET").text(), "<p>index</p>");
        client.send(b"DELETE /a.txt HTTP/1.1\r\nHost: a\r\n\r\n");
        let answer = client.read("DELETE");
        assert_eq!(answer.status, 405);
        assert_eq!(answer.header("allow"), Some("GET, HEAD"));
    });
}

/// Echoes raw bytes, upper-cased: the protocol an upgrade switches to.
struct Shout(Transport);

impl Protocol for Shout {
    fn data_received(&mut self, data: Bytes) {
        self.0.write(data.to_ascii_uppercase());
    }
}

#[test]
fn an_upgrade_hands_the_connection_over_with_the_bytes_already_read() {
    let server = HttpServer::new(|_: Request<Bytes>| {
        let response = Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header("upgrade", "shout")
            .header("connection", "upgrade")
            .body(Body::Upgrade(Upgrade::new(|transport| {
                Box::new(Shout(transport.clone()))
            })))
            .unwrap();
        succeed(response)
    });
    with_server(server, |addr| {
        let mut client = Client::new(addr);
        // The first bytes of the new protocol come in the same write.
        client
            .send(b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: shout\r\nConnection: upgrade\r\n\r\nhi ");
        let answer = client.read("GET");
        assert_eq!(answer.status, 101);
        assert_eq!(answer.header("upgrade"), Some("shout"));
        let mut first = [0; 3];
        client.reader.read_exact(&mut first).unwrap();
        assert_eq!(&first, b"HI ");
        client.send(b"there");
        let mut next = [0; 5];
        client.reader.read_exact(&mut next).unwrap();
        assert_eq!(&next, b"THERE");
    });
}

// ------------------------------------------------------------ clients that do not read

#[test]
fn a_client_that_pipelines_and_never_reads_stops_the_handler_being_called() {
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = calls.clone();
    let big = Bytes::from(vec![b'x'; 1 << 20]);
    let server = HttpServer::new(move |_: Request<Bytes>| {
        counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        succeed(Response::new(Body::Full(big.clone())))
    });
    with_server(server, move |addr| {
        let stream = connect(addr);
        let mut writer = stream.try_clone().unwrap();
        writer
            .set_write_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        // Send requests until the server stops reading them.
        let request = get("/");
        let mut sent = 0;
        while sent < 100_000 && writer.write_all(&request).is_ok() {
            sent += 1;
        }
        let served = calls.load(std::sync::atomic::Ordering::SeqCst);
        // Each 1 MiB answer fills the socket buffers; the server answers
        // only while its write buffer drains below the high watermark.
        assert!(
            served < 64,
            "{served} answers made for a client that reads none"
        );
        assert!(sent > served, "the server stopped reading requests");
        drop(stream);

        let mut client = Client::new(addr);
        client.send(&get("/"));
        assert_eq!(client.read("GET").body.len(), 1 << 20, "others are served");
    });
}

// ------------------------------------------------------------ timeouts, on a clock

type PlainHandler = fn(Request<Bytes>) -> Deferred<Response<Body>>;

fn clocked(server: HttpServer<PlainHandler>) -> (impl Protocol, StringTransport, Clock) {
    let clock = Clock::new();
    let server = server
        .header_timeout(Duration::from_secs(5))
        .idle_timeout(Duration::from_secs(30))
        .clock(Rc::new(clock.clone()));
    let mut protocol = server.protocol();
    let recorder = StringTransport::new();
    protocol.connection_made(&recorder.transport());
    (protocol, recorder, clock)
}

#[test]
fn a_slow_head_is_cut_at_the_header_timeout_however_it_trickles() {
    let (mut protocol, recorder, clock) = clocked(HttpServer::new(hello as PlainHandler));
    protocol.data_received(Bytes::from_static(b"GET / HT"));
    for _ in 0..4 {
        clock.advance(Duration::from_secs(1));
        protocol.data_received(Bytes::from_static(b"X"));
    }
    assert!(!recorder.disconnecting());
    clock.advance(Duration::from_secs(1));
    let answer = String::from_utf8(recorder.value()).unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
        "{answer}"
    );
    // A lingering close: the writing side is shut at once, and what the
    // client still sends is read and dropped for two seconds.
    assert!(recorder.eof_written());
    protocol.data_received(Bytes::from_static(b"more of the head"));
    assert!(!recorder.disconnecting());
    clock.advance(Duration::from_secs(2));
    assert!(recorder.disconnecting());
}

#[test]
fn an_idle_keep_alive_connection_closes_and_a_busy_one_does_not() {
    let (mut protocol, recorder, clock) = clocked(HttpServer::new(hello as PlainHandler));
    for _ in 0..3 {
        clock.advance(Duration::from_secs(20));
        protocol.data_received(Bytes::from(get("/")));
    }
    assert!(
        !recorder.disconnecting(),
        "a request every 20 s keeps it open"
    );
    clock.advance(Duration::from_secs(30));
    assert!(recorder.disconnecting());
    assert_eq!(
        recorder
            .value()
            .windows(8)
            .filter(|w| w == b"HTTP/1.1")
            .count(),
        3,
        "closed silently, without an answer"
    );
}

#[test]
fn a_body_that_stops_arriving_gets_408() {
    let (mut protocol, recorder, clock) = clocked(HttpServer::new(hello as PlainHandler));
    protocol.data_received(Bytes::from_static(
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n12345",
    ));
    clock.advance(Duration::from_secs(29));
    protocol.data_received(Bytes::from_static(b"6"));
    clock.advance(Duration::from_secs(29));
    assert!(!recorder.disconnecting(), "each byte restarts the wait");
    clock.advance(Duration::from_secs(1));
    assert!(String::from_utf8(recorder.value())
        .unwrap()
        .starts_with("HTTP/1.1 408"));
    assert!(recorder.eof_written());
    assert!(!protocol.eof_received(), "the client's EOF ends the linger");
}

#[test]
fn a_client_that_stops_reading_its_answer_is_aborted_but_a_slow_handler_is_not() {
    let pending: Rc<RefCell<Option<twill::defer::Resolver<Response<Body>>>>> = Rc::default();
    let keep = pending.clone();
    let clock = Clock::new();
    let server = HttpServer::new(move |_: Request<Bytes>| {
        let answer = Deferred::new();
        *keep.borrow_mut() = Some(answer.resolver());
        answer
    })
    .idle_timeout(Duration::from_secs(30))
    .clock(Rc::new(clock.clone()));
    let mut protocol = server.protocol();
    let recorder = StringTransport::new();
    protocol.connection_made(&recorder.transport());
    protocol.data_received(Bytes::from(get("/")));
    clock.advance(Duration::from_secs(120));
    assert!(!recorder.disconnecting(), "the handler may take its time");

    let resolver = pending.borrow_mut().take().unwrap();
    resolver.callback(Response::new(Body::from(vec![b'x'; 100_000])));
    recorder.set_write_buffer_size(100_000); // nothing of it was read
    clock.advance(Duration::from_secs(31));
    assert!(recorder.aborted(), "no byte read in 30 s");
}

#[test]
fn a_handler_still_working_when_the_client_leaves_is_cancelled() {
    let cancelled = Rc::new(Cell::new(false));
    let flag = cancelled.clone();
    let server = HttpServer::new(move |_: Request<Bytes>| {
        let flag = flag.clone();
        Deferred::with_canceller(move |_| flag.set(true))
    })
    .clock(Rc::new(Clock::new()));
    let mut protocol = server.protocol();
    let recorder = StringTransport::new();
    protocol.connection_made(&recorder.transport());
    protocol.data_received(Bytes::from(get("/")));
    protocol.connection_lost(&twill::Reason::Done);
    assert!(cancelled.get());
}

#[test]
fn an_async_handler_answers_from_a_future() {
    let server = HttpServer::new(twill_protocols::http::async_handler(
        |request: Request<Bytes>| async move {
            let method = request.method().clone();
            let (send, later) = futures::channel::oneshot::channel();
            twill::call_later(Duration::from_millis(1), move || {
                let _ = send.send(method);
            });
            let method = later.await.unwrap();
            Response::new(Body::from(format!("{method}")))
        },
    ));
    with_server(server, |addr| {
        let mut client = Client::new(addr);
        client.send(&get("/"));
        assert_eq!(client.read("GET").text(), Method::GET.as_str());
    });
}

/// A pull producer writing `pieces` pieces of 64 KiB through a body's
/// writer, asked for each as the connection drains.
struct Pieces {
    writer: BodyWriter,
    left: Cell<u32>,
    most_buffered: Rc<Cell<usize>>,
}

impl twill::producers::Producer for Pieces {
    fn resume_producing(&self) {
        let left = self.left.get();
        if left == 0 {
            self.writer.unregister_producer();
            self.writer.finish();
            return;
        }
        self.left.set(left - 1);
        self.writer.write(vec![b'a' + (left % 26) as u8; 64 * 1024]);
        let buffered = self.writer.transport().write_buffer_size();
        self.most_buffered
            .set(self.most_buffered.get().max(buffered));
    }

    fn stop_producing(&self) {}
}

#[test]
fn a_pull_producer_streams_a_large_body_with_the_buffer_bounded() {
    let most_buffered = Rc::new(Cell::new(0));
    let seen = most_buffered.clone();
    let server = HttpServer::new(move |_: Request<Bytes>| {
        let most_buffered = seen.clone();
        succeed(Response::new(Body::stream(move |writer: BodyWriter| {
            let producer = Rc::new(Pieces {
                writer: writer.clone(),
                left: Cell::new(256), // 16 MiB
                most_buffered,
            });
            writer.register_producer(producer, false).unwrap();
        })))
    });
    let reactor = Reactor::new().unwrap();
    serve(&reactor, server, |addr, handle| {
        let mut client = Client::new(addr);
        client.send(&get("/"));
        let answer = client.read("GET");
        assert_eq!(answer.body.len(), 16 << 20);
        assert!(answer.body[..64 * 1024]
            .iter()
            .all(|&b| b == b'a' + (256 % 26) as u8));
        client.send(&get("/"));
        assert_eq!(
            client.read("GET").body.len(),
            16 << 20,
            "keep-alive after it"
        );
        handle.stop();
    });
    // The high watermark (64 KiB) plus one piece, never the body.
    assert!(most_buffered.get() <= 192 * 1024, "{}", most_buffered.get());
}

#[test]
fn a_refused_upload_still_reaches_a_client_that_reads_only_after_sending() {
    let server = HttpServer::new(hello).max_body(1024);
    with_server(server, |addr| {
        let mut client = Client::new(addr);
        let body = vec![b'u'; 4 << 20];
        client.send(
            format!(
                "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        );
        // The server refuses at the head; what follows it is read and
        // dropped, so this write completes and the answer is not reset
        // away before it is read.
        client.send(&body);
        let answer = client.read("POST");
        assert_eq!(answer.status, 413);
        assert_eq!(answer.header("connection"), Some("close"));
        client.reader.get_ref().shutdown(Shutdown::Write).unwrap();
        assert!(client.closed());
    });
}

#[test]
fn a_body_in_memory_larger_than_the_write_buffer_cap_is_sent_as_the_client_reads() {
    let body = Bytes::from(
        (0..24 << 20)
            .map(|i: u32| (i % 253) as u8)
            .collect::<Vec<u8>>(),
    );
    let expected = body.clone();
    let server =
        HttpServer::new(move |_: Request<Bytes>| succeed(Response::new(Body::Full(body.clone()))));
    with_server(server, move |addr| {
        let mut client = Client::new(addr);
        client.send(&get("/"));
        let answer = client.read("GET");
        assert!(answer.body == expected[..], "24 MiB, byte for byte");
        client.send(&get("/"));
        assert_eq!(client.read("GET").body.len(), 24 << 20);
    });
}
